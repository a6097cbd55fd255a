//! The shipped scenario set as a whole: what the appliance promises trainers
//! (the spec's scenarios, enough ATT&CK techniques, every question type),
//! and what keeps the endpoint safe (samples say they are harmless lab
//! imitations; endpoint steps and cleanup write only lab paths).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use ioclab_lab::scenario::{load, Command, Loaded, QuestionType};

fn shipped() -> Vec<Loaded> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../lab-scenarios");
    let all: Vec<Loaded> = load::find(&dir)
        .unwrap()
        .into_iter()
        .map(|d| load::load(&d).unwrap_or_else(|e| panic!("{}: {e:#?}", d.display())))
        .collect();
    assert!(!all.is_empty());
    all
}

#[test]
fn the_set_has_the_specs_scenarios_twelve_techniques_and_every_question_type() {
    let all = shipped();
    let ids: BTreeSet<&str> = all.iter().map(|l| l.scenario.id.as_str()).collect();
    for spec in [
        "dns-ioc-why-kunai-rocks",
        "malicious-script-dropper",
        "reverse-shell-c2",
        "false-positive-warninglist",
        "persistence-cron",
    ] {
        assert!(ids.contains(spec), "the spec's {spec} is not shipped: {ids:?}");
    }
    assert!(ids.len() >= 8, "{ids:?}");
    let techniques: BTreeSet<&str> = all.iter().flat_map(|l| l.scenario.attack.iter().map(|a| a.as_str())).collect();
    assert!(techniques.len() >= 12, "{} techniques: {techniques:?}", techniques.len());
    let types: BTreeSet<String> =
        all.iter().flat_map(|l| l.scenario.questions.iter().map(|q| format!("{:?}", q.kind))).collect();
    for t in [QuestionType::Text, QuestionType::Choice, QuestionType::PickEvent, QuestionType::Flag] {
        assert!(types.contains(&format!("{t:?}")), "no {t:?} question in the set: {types:?}");
    }
    // each scenario teaches with questions and is checked by detections
    for l in &all {
        let s = &l.scenario;
        assert!(s.questions.len() >= 3 && s.questions.iter().any(|q| !q.hints.is_empty()), "{}", s.id);
        assert!(!s.expect.detections.is_empty() && !s.objectives.is_empty(), "{}", s.id);
    }
}

/// The first lines of `path`, as text.
fn head(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    String::from_utf8_lossy(&bytes[..bytes.len().min(600)]).into_owned()
}

#[test]
fn every_sample_says_at_the_top_that_it_is_a_harmless_lab_imitation() {
    for l in shipped() {
        let sample = l.dir.join(&l.scenario.sample.file);
        let bytes = std::fs::read(&sample).unwrap();
        // a binary's statement is in its source, shipped beside it as an asset
        let text: PathBuf = if bytes.starts_with(b"\x7fELF") {
            let source = l
                .scenario
                .assets
                .iter()
                .map(|a| l.dir.join(&a.file))
                .find(|f| f.file_stem() == sample.file_stem() && f.extension().is_some_and(|e| e == "c"));
            source.unwrap_or_else(|| panic!("{}: an ELF sample without its C source in assets", sample.display()))
        } else {
            sample.clone()
        };
        assert!(
            head(&text).contains("HARMLESS LAB SAMPLE"),
            "{}: no HARMLESS LAB SAMPLE comment on top",
            text.display()
        );
        for a in &l.scenario.assets {
            let f = l.dir.join(&a.file);
            if f.extension().is_some_and(|e| e == "sh") {
                assert!(head(&f).contains("HARMLESS"), "{}: a lab script says it is harmless", f.display());
            }
        }
    }
}

/// Absolute paths a command (rendered with its defaults) names.
fn absolute_paths(cmd: &Command) -> Vec<String> {
    let rendered = cmd.render(&BTreeMap::new());
    rendered
        .split(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == ';' || c == '&' || c == '|')
        .filter(|t| t.starts_with('/'))
        .map(str::to_string)
        .collect()
}

/// On the endpoint, steps run on the real file system (only the network and
/// resolv.conf are the lab's): a path they are given must be a lab's.
fn lab_path(p: &str) -> bool {
    (p.starts_with("/tmp/") || p.starts_with("/dev/shm/")) && p.contains("ioclab")
}

#[test]
fn endpoint_steps_and_cleanup_write_only_lab_paths() {
    let mut seen = 0;
    for l in shipped() {
        let s = &l.scenario;
        let commands =
            s.steps.iter().map(|st| (st.id.as_str(), &st.run)).chain(s.cleanup.iter().map(|c| ("cleanup", c)));
        for (what, cmd) in commands {
            for p in absolute_paths(cmd) {
                seen += 1;
                assert!(lab_path(&p), "{} {what}: {p} is not a lab path (/tmp/ or /dev/shm/, named ioclab)", s.id);
            }
        }
    }
    assert!(seen >= 5, "the check saw the scenarios' lab paths ({seen})");
}

#[test]
fn the_lab_path_check_catches_a_real_system_path() {
    let cmd: Command = serde_yaml_ng::from_str(
        "command: \"./sample.sh #{crontab}\"\nargs:\n  crontab: {description: x, default: /etc/cron.d/ioclab}\n",
    )
    .unwrap();
    assert_eq!(absolute_paths(&cmd), ["/etc/cron.d/ioclab"]);
    assert!(!lab_path("/etc/cron.d/ioclab") && !lab_path("/root/.ssh/authorized_keys") && !lab_path("/tmp/x"));
    assert!(lab_path("/tmp/ioclab-lab-home") && lab_path("/dev/shm/.ioclab-kworker"));
}

#[test]
fn answers_taken_from_events_can_be_given_from_each_committed_replay() {
    use ioclab_lab::run::RunFolder;
    use ioclab_lab::scenario::AnswerRule;
    use ioclab_lab::scoring::run_data::{field_text, RunData};
    let mut checked = 0;
    for l in shipped() {
        let replay = l.dir.join("replay");
        if !replay.is_dir() {
            continue;
        }
        let run = RunData::read(&RunFolder::open(&replay)).unwrap();
        for (id, answer) in &l.answers.as_ref().unwrap().answers {
            if let AnswerRule::Event { event, field, detected } = &answer.rule {
                checked += 1;
                // an event of that name whose field has one value: what a trainee's pick is judged by
                let given = run.events_named(event, *detected).find_map(|e| field_text(e, field));
                assert!(
                    given.is_some(),
                    "{} {id}: no {event} event{} with a value in {field} in the replay",
                    l.scenario.id,
                    if *detected { " carrying a detection" } else { "" }
                );
            }
        }
    }
    assert!(checked >= 6, "event answers checked: {checked}");
}
