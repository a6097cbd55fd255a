//! One test per validation rule: a shipped scenario, broken one way, gives
//! the expected error at the expected FILE:LINE:COLUMN.

use std::path::{Path, PathBuf};

use ioclab_lab::scenario::load::{self, Diagnostic};
use ioclab_lab::scenario::Severity;

const GOOD: &str = "dns-ioc-why-kunai-rocks";

fn shipped(id: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../lab-scenarios").join(id)
}

/// A copy of the good scenario in a temp folder named after it.
fn copy() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(GOOD);
    std::fs::create_dir(&dir).unwrap();
    for e in std::fs::read_dir(shipped(GOOD)).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            continue; // the committed replay/: a run, not a file of the scenario
        }
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    (tmp, dir)
}

fn edit(file: &Path, from: &str, to: &str) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains(from), "{from:?} not in {}", file.display());
    let new = text.replacen(from, to, 1);
    std::fs::write(file, &new).unwrap();
    new
}

/// Line (from 1) of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle:?} not found")) + 1
}

/// Loads `dir`, expecting errors; returns the one whose message holds `what`.
fn error(dir: &Path, what: &str) -> Diagnostic {
    let diags = load::load(dir).expect_err("the broken scenario loaded");
    let d = diags.iter().find(|d| d.message.contains(what) && d.severity == Severity::Error);
    d.unwrap_or_else(|| panic!("no error containing {what:?} in {diags:#?}")).clone()
}

/// Asserts `d` is at `file`:`line`:`column` with key path `path`.
fn at(d: &Diagnostic, file: &Path, line: usize, column: usize, path: &str) {
    assert_eq!((d.file.as_path(), d.line, d.column, d.path.as_str()), (file, line, column, path), "{d}");
    let shown = d.to_string();
    assert!(shown.starts_with(&format!("{}:{line}:{column}: error: ", file.display())), "{shown}");
}

#[test]
fn shipped_scenarios_load_without_warnings() {
    let all = load::find(&shipped("")).unwrap();
    assert!(all.iter().any(|p| p.ends_with(GOOD)), "{all:?}");
    for dir in all {
        let l = load::load(&dir).unwrap_or_else(|d| panic!("{}: {d:#?}", dir.display()));
        assert!(l.warnings.is_empty(), "{:#?}", l.warnings);
        assert!(l.answers.is_some(), "{} ships no answers.yaml", dir.display());
    }
}

#[test]
fn unknown_key_is_an_error_at_the_key() {
    let (_t, dir) = copy();
    let f = dir.join("scenario.yaml");
    let text = edit(&f, "    trigger: {on: stage", "    triger: {on: stage");
    let d = error(&dir, "unknown field `triger`");
    at(&d, &f, line_of(&text, "triger"), 5, "steps[0].triger");
    assert!(d.message.contains("expected one of `id`, `description`, `run`, `trigger`"), "{d}");
}

#[test]
fn undeclared_argument_is_an_error_and_unused_one_a_warning() {
    let (_t, dir) = copy();
    let f = dir.join("scenario.yaml");
    let text = edit(&f, "dig #{domain}", "dig #{name}");
    let d = error(&dir, "#{name} is used but not declared");
    at(&d, &f, line_of(&text, "dig #{name}"), 16, "steps[0].run.command");

    let (_t, dir) = copy();
    let f = dir.join("scenario.yaml");
    let text = edit(&f, "dig #{domain}", "dig why.kunai.rocks");
    let l = load::load(&dir).expect("an unused argument is only a warning");
    let w = &l.warnings[0];
    let at = (w.severity, w.line, w.column, w.path.as_str());
    assert_eq!(at, (Severity::Warning, line_of(&text, "domain: {"), 9, "steps[0].run.args.domain"), "{w}");
}

#[test]
fn bad_attack_id_is_an_error_at_the_id() {
    let (_t, dir) = copy();
    let f = dir.join("scenario.yaml");
    let text = edit(&f, "  - T1568\n", "  - T1568.1\n");
    let d = error(&dir, "not an ATT&CK technique id");
    at(&d, &f, line_of(&text, "T1568.1"), 5, "attack[1]");
}

#[test]
fn missing_asset_is_an_error_at_its_file() {
    let (_t, dir) = copy();
    let f = dir.join("scenario.yaml");
    std::fs::remove_file(dir.join("sample.sh")).unwrap();
    let text = std::fs::read_to_string(&f).unwrap();
    let d = error(&dir, "missing asset");
    at(&d, &f, line_of(&text, "file: sample.sh"), 9, "sample.file");
}

#[test]
fn asset_outside_the_folder_is_an_error() {
    let (_t, dir) = copy();
    let f = dir.join("scenario.yaml");
    let text = edit(&f, "file: sample.sh", "file: ../sample.sh");
    let d = error(&dir, "inside the scenario's folder");
    at(&d, &f, line_of(&text, "file: ../sample.sh"), 9, "sample.file");
}

#[test]
fn sha256_mismatch_is_an_error_at_the_hash() {
    let (_t, dir) = copy();
    let f = dir.join("scenario.yaml");
    let mut sample = std::fs::read_to_string(dir.join("sample.sh")).unwrap();
    sample.push_str("# changed\n");
    std::fs::write(dir.join("sample.sh"), sample).unwrap();
    let text = std::fs::read_to_string(&f).unwrap();
    let d = error(&dir, "sha256 mismatch");
    at(&d, &f, line_of(&text, "  sha256: "), 11, "sample.sha256");
}

#[test]
fn duplicate_step_and_question_ids_are_errors() {
    let (_t, dir) = copy();
    let f = dir.join("scenario.yaml");
    let text = edit(&f, "  - id: dns-event", "  - id: ioc-domain");
    let d = error(&dir, "duplicate id \"ioc-domain\"");
    let second = text.lines().enumerate().filter(|(_, l)| l.contains("- id: ioc-domain")).nth(1).unwrap().0 + 1;
    at(&d, &f, second, 9, "questions[1].id");

    let (_t, dir) = copy();
    let f = dir.join("scenario.yaml");
    let step = "  - id: dig\n    description: The blog's experiment, on the endpoint, against the lab resolver.\n    run:\n      executor: sh\n      command: \"dig why.kunai.rocks\"\n";
    let text = edit(&f, "expect:\n", &format!("{}expect:\n", step));
    let d = error(&dir, "duplicate id \"dig\"");
    at(
        &d,
        &f,
        text.lines().collect::<Vec<_>>().iter().rposition(|l| *l == "  - id: dig").unwrap() + 1,
        9,
        "steps[1].id",
    );
}

#[test]
fn unlock_on_an_unknown_detection_or_stage_is_an_error() {
    let (_t, dir) = copy();
    let f = dir.join("scenario.yaml");
    let text = edit(&f, "detection: dig-detected}]", "detection: dig-seen}]");
    let d = error(&dir, "no expected detection \"dig-seen\"");
    let col = text.lines().nth(line_of(&text, "dig-seen") - 1).unwrap().find("dig-seen").unwrap() + 1;
    at(&d, &f, line_of(&text, "dig-seen"), col, "questions[2].unlock[0].detection");

    let (_t, dir) = copy();
    let f = dir.join("scenario.yaml");
    let text = edit(&f, "{after: stage, stage: misp}", "{after: stage, stage: mips}");
    let d = error(&dir, "unknown variant `mips`");
    assert_eq!(d.line, line_of(&text, "mips"), "{d}");
}

#[test]
fn addresses_off_the_machine_are_errors() {
    let (_t, dir) = copy();
    let f = dir.join("scenario.yaml");
    let text = edit(&f, "type: A, value: 127.0.66.80}", "type: A, value: 10.0.0.1}");
    let d = error(&dir, "would lead off the machine");
    let line = line_of(&text, "10.0.0.1");
    at(&d, &f, line, text.lines().nth(line - 1).unwrap().find("10.0.0.1").unwrap() + 1, "network.dns[1].value");

    let (_t, dir) = copy();
    let f = dir.join("scenario.yaml");
    let text = edit(&f, "address: 127.0.66.80", "address: 0.0.0.0");
    let d = error(&dir, "is not loopback");
    assert_eq!((d.line, d.path.as_str()), (line_of(&text, "0.0.0.0"), "network.services[0].address"), "{d}");
}

#[test]
fn dns_record_with_an_unknown_key_is_an_error() {
    let (_t, dir) = copy();
    let f = dir.join("scenario.yaml");
    let text = edit(&f, "type: CNAME, value:", "type: CNAME, ttl: 60, value:");
    let d = error(&dir, "unknown field `ttl`");
    assert_eq!((d.line, d.path.as_str()), (line_of(&text, "ttl: 60"), "network.dns[0]"), "{d}");
}

#[test]
fn detection_must_name_a_kunai_event_and_an_expected_ioc() {
    let (_t, dir) = copy();
    let f = dir.join("scenario.yaml");
    let text = edit(&f, "event: dns_query\n", "event: dns_request\n");
    let d = error(&dir, "is not a Kunai event");
    at(&d, &f, line_of(&text, "dns_request"), 14, "expect.detections[0].event");

    let (_t, dir) = copy();
    let f = dir.join("scenario.yaml");
    let text = edit(&f, "ioc: why.kunai.rocks", "ioc: kunai.rocks");
    let d = error(&dir, "is not one of `expect.iocs`");
    at(&d, &f, line_of(&text, "ioc: kunai.rocks"), 12, "expect.detections[0].ioc");
}

#[test]
fn a_choice_question_needs_choices() {
    let (_t, dir) = copy();
    let f = dir.join("scenario.yaml");
    let text = edit(&f, "    choices: [execve, dns_query, connect, file_create]\n", "");
    let d = error(&dir, "needs `choices`");
    at(&d, &f, line_of(&text, "type: choice"), 11, "questions[1].type");
}

#[test]
fn answers_live_apart_and_are_checked_against_the_questions() {
    // an answer inside scenario.yaml is an unknown key: trainees see that file
    let (_t, dir) = copy();
    let f = dir.join("scenario.yaml");
    let text = edit(
        &f,
        "    type: text\n    points: 10\n    attempts: 3",
        "    type: text\n    answer: why.kunai.rocks\n    points: 10\n    attempts: 3",
    );
    let d = error(&dir, "unknown field `answer`");
    at(&d, &f, line_of(&text, "answer: why"), 5, "questions[0].answer");

    let (_t, dir) = copy();
    let a = dir.join("answers.yaml");
    let text = edit(&a, "  dns-event:", "  dns-events:");
    let d = error(&dir, "no question \"dns-events\"");
    at(&d, &a, line_of(&text, "dns-events:"), 3, "answers.dns-events");
    error(&dir, "question \"dns-event\" has no answer");
}

#[test]
fn a_bad_regex_answer_is_an_error_when_loaded() {
    let (_t, dir) = copy();
    let a = dir.join("answers.yaml");
    let text = edit(&a, "pattern: \"(?is)", "pattern: \"(unclosed(?is)");
    let d = error(&dir, "regex parse error");
    assert_eq!((d.file.as_path(), d.line), (a.as_path(), line_of(&text, "(unclosed")), "{d}");
    assert!(d.message.contains("(unclosed(?is)"), "the error quotes the pattern: {d}");
    assert!(d.path.starts_with("answers.why-match.rule"), "{d}");
}

#[test]
fn a_choice_answer_must_be_one_of_the_choices_and_events_must_exist() {
    let (_t, dir) = copy();
    let a = dir.join("answers.yaml");
    let text = edit(&a, "{kind: exact, value: dns_query}", "{kind: exact, value: dns}");
    let d = error(&dir, "not one of the question's choices");
    assert_eq!((d.line, d.path.as_str()), (line_of(&text, "value: dns}"), "answers.dns-event.rule.value"));

    let (_t, dir) = copy();
    let a = dir.join("answers.yaml");
    edit(&a, "{kind: event, event: dns_query", "{kind: event, event: dns_answer");
    error(&dir, "\"dns_answer\" is not a Kunai event");
}

#[test]
fn the_id_must_be_the_folder_name() {
    let (t, dir) = copy();
    let moved = t.path().join("renamed");
    std::fs::rename(&dir, &moved).unwrap();
    let d = error(&moved, "differs from its folder's name");
    assert_eq!((d.line, d.column, d.path.as_str()), (1, 5, "id"));
}

#[test]
fn every_error_is_reported_not_only_the_first() {
    let (_t, dir) = copy();
    let f = dir.join("scenario.yaml");
    edit(&f, "dig #{domain}", "dig #{name}");
    edit(&f, "address: 127.0.66.80", "address: 192.168.1.1");
    let diags = load::load(&dir).unwrap_err();
    assert!(diags.len() >= 2, "{diags:#?}");
    assert!(diags.windows(2).all(|w| (w[0].line, w[0].column) <= (w[1].line, w[1].column)), "sorted by place");
}

#[test]
fn the_folder_name_is_checked_for_relative_paths_too() {
    let (t, dir) = copy();
    let moved = t.path().join("renamed");
    std::fs::rename(&dir, &moved).unwrap();
    // `.` and a bare `scenario.yaml` have no name of their own: the check must not be skipped
    std::env::set_current_dir(&moved).unwrap();
    for path in [".", "scenario.yaml"] {
        let diags = load::load(Path::new(path)).expect_err(path);
        assert!(
            diags.iter().any(|d| d.message.contains("differs from its folder's name \"renamed\"")),
            "{path}: {diags:#?}"
        );
    }
}

#[test]
fn an_absent_value_must_not_be_expected_too() {
    // a value the export must not hold, which it must also hold: impossible
    let (_t, dir) = copy();
    let f = dir.join("scenario.yaml");
    let text = edit(&f, "expect:\n", "expect:\n  absent:\n    - value: 8.8.8.8\n    - value: Why.Kunai.Rocks.\n");
    let d = error(&dir, "is also in `expect.iocs`");
    at(&d, &f, line_of(&text, "value: Why.Kunai.Rocks."), 14, "expect.absent[1].value");
    assert!(d.message.contains("\"Why.Kunai.Rocks.\""), "{d}");

    // alone, an absent value loads, and must be an IoC value the agent could match
    let (_t, dir) = copy();
    let f = dir.join("scenario.yaml");
    edit(&f, "expect:\n", "expect:\n  absent:\n    - value: 8.8.8.8\n    - value: google.com\n");
    let l = load::load(&dir).expect("absent values alone are fine");
    let absent: Vec<&str> = l.scenario.expect.absent.iter().map(|a| a.value.as_str()).collect();
    assert_eq!(absent, ["8.8.8.8", "google.com"]);

    let (_t, dir) = copy();
    let f = dir.join("scenario.yaml");
    let text = edit(&f, "expect:\n", "expect:\n  absent:\n    - value: not a value\n");
    let d = error(&dir, "not a value");
    assert_eq!((d.line, d.path.as_str()), (line_of(&text, "value: not a value"), "expect.absent[0].value"), "{d}");
}

#[test]
fn service_options_belong_to_their_kind_and_served_files_are_assets() {
    let (_t, dir) = copy();
    let f = dir.join("scenario.yaml");
    let text = edit(&f, "port: 80}", "port: 80, send: \"id\\n\"}");
    let d = error(&dir, "`send` is only for `kind: c2`");
    assert_eq!((d.line, d.path.as_str()), (line_of(&text, "send: "), "network.services[0].send"), "{d}");

    // a served body must be pinned by its sha256 like every other file
    let (_t, dir) = copy();
    let f = dir.join("scenario.yaml");
    std::fs::write(dir.join("page.html"), "<p>lab</p>\n").unwrap();
    let text = edit(&f, "port: 80}", "port: 80, body: ./page.html}");
    let d = error(&dir, "page.html is not in `assets`");
    assert_eq!((d.line, d.path.as_str()), (line_of(&text, "body: "), "network.services[0].body"), "{d}");
    let sha = ioclab_sandbox::sample::facts(&dir.join("page.html")).unwrap().sha256;
    edit(&f, "misp:\n", &format!("assets:\n  - {{file: page.html, sha256: {sha}}}\nmisp:\n"));
    load::load(&dir).expect("a body listed in assets loads");

    let (_t, dir) = copy();
    let f = dir.join("scenario.yaml");
    let text = edit(
        &f,
        "kind: http_sink, address: 127.0.66.80, port: 80}",
        "kind: c2, address: 127.0.66.80, port: 80, content_type: text/plain}",
    );
    let d = error(&dir, "`content_type` is only for `kind: http_sink` (this service is `c2`)");
    assert_eq!(d.line, line_of(&text, "content_type"), "{d}");
}

#[test]
fn an_endpoint_is_the_lab_or_the_trainee_and_a_trainee_one_needs_steps_and_detections() {
    // the default: the lab's own endpoint
    let l = load::load(&shipped(GOOD)).unwrap();
    assert_eq!(l.scenario.expect.endpoint, ioclab_lab::scenario::EndpointRole::Lab);

    let (_t, dir) = copy();
    let f = dir.join("scenario.yaml");
    edit(&f, "expect:\n", "expect:\n  endpoint: trainee\n");
    let l = load::load(&dir).expect("a trainee endpoint with steps and detections loads");
    assert_eq!(l.scenario.expect.endpoint, ioclab_lab::scenario::EndpointRole::Trainee);

    let (_t, dir) = copy();
    let f = dir.join("scenario.yaml");
    let text = edit(&f, "expect:\n", "expect:\n  endpoint: laptop\n");
    let d = error(&dir, "unknown variant `laptop`");
    assert_eq!((d.line, d.path.as_str()), (line_of(&text, "endpoint: laptop"), "expect.endpoint"), "{d}");
    assert!(d.message.contains("lab") && d.message.contains("trainee"), "the choices are named: {d}");

    // nothing to run on the trainee's machine: an error at the field
    let (_t, dir) = copy();
    let f = dir.join("scenario.yaml");
    let text = std::fs::read_to_string(&f).unwrap();
    let (head, rest) = text.split_once("steps:\n").unwrap();
    let tail = &rest[rest.find("\nexpect:\n").unwrap() + 1..];
    let text = format!("{head}{}", tail.replacen("expect:\n", "expect:\n  endpoint: trainee\n", 1));
    std::fs::write(&f, &text).unwrap();
    let d = error(&dir, "`endpoint: trainee` needs `steps`");
    at(&d, &f, line_of(&text, "endpoint: trainee"), 13, "expect.endpoint");

    // nothing awaited there: an error too
    let (_t, dir) = copy();
    let f = dir.join("scenario.yaml");
    let text = std::fs::read_to_string(&f).unwrap();
    let start = text.find("  detections:\n").unwrap();
    let end = text[start..].find("\nquestions:").map(|i| start + i + 1).unwrap();
    let text = format!("{}{}", &text[..start], &text[end..]).replacen("expect:\n", "expect:\n  endpoint: trainee\n", 1);
    // the questions unlocked by the removed detection unlock after the steps instead
    let text = text.replace("{after: detection, detection: dig-detected}", "{after: stage, stage: steps}");
    std::fs::write(&f, &text).unwrap();
    let d = error(&dir, "`expect.detections` is empty");
    at(&d, &f, line_of(&text, "endpoint: trainee"), 13, "expect.endpoint");
}
