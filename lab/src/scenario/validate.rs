//! The rules serde cannot check: references between parts, files and
//! hashes, addresses. Each problem is a diagnostic at the node it is about.

use std::collections::BTreeSet;
use std::path::{Component, Path};

use ioclab_agent::events::EventKind;
use ioclab_agent::hashes::Sha256;

use super::answers::{AnswerFile, AnswerRule};
use super::expect::EndpointRole;
use super::load::{Diagnostic, Seg, Severity, Source};
use super::network::{address_allowed, record_address, ServiceKind};
use super::questions::{QuestionType, Unlock};
use super::steps::Command;
use super::Scenario;

/// Builds key paths tersely: `p(&["steps", 0, "run"])`.
fn p(parts: &[PathPart<'_>]) -> Vec<Seg> {
    parts
        .iter()
        .map(|x| match x {
            PathPart::K(k) => Seg::Key(k.to_string()),
            PathPart::I(i) => Seg::Index(*i),
        })
        .collect()
}

/// One part of a key path given to [`p`].
enum PathPart<'a> {
    K(&'a str),
    I(usize),
}
use PathPart::{I, K};

/// Collects diagnostics about one file.
struct Found<'s> {
    source: &'s Source,
    diags: Vec<Diagnostic>,
}

impl Found<'_> {
    fn error(&mut self, path: Vec<Seg>, message: String) {
        self.diags.push(self.source.at(&path, Severity::Error, message));
    }
    fn warn(&mut self, path: Vec<Seg>, message: String) {
        self.diags.push(self.source.at(&path, Severity::Warning, message));
    }
    /// A warning about a mapping entry, at its key.
    fn warn_key(&mut self, path: Vec<Seg>, message: String) {
        self.diags.push(self.source.at_key(&path, Severity::Warning, message));
    }

    /// Duplicate ids in the list at `at` (`at[i].id`).
    fn unique<'a>(&mut self, at: &[PathPart<'_>], ids: impl Iterator<Item = &'a str>) {
        let mut seen = BTreeSet::new();
        for (i, id) in ids.enumerate() {
            if !seen.insert(id) {
                let list = p(at);
                let mut path = list.clone();
                path.extend([Seg::Index(i), Seg::Key("id".into())]);
                self.error(
                    path,
                    format!("duplicate id {id:?}: ids must be unique in `{}`", super::load::path_text(&list)),
                );
            }
        }
    }

    /// `#{name}` placeholders against the declared input arguments.
    fn placeholders(&mut self, at: &[PathPart<'_>], cmd: &Command) {
        let used: BTreeSet<&str> = cmd.placeholders().into_iter().map(|(_, n)| n).collect();
        for name in &used {
            if !cmd.args.contains_key(*name) {
                let mut path = p(at);
                path.push(Seg::Key("command".into()));
                let declared: Vec<&str> = cmd.args.keys().map(String::as_str).collect();
                self.error(
                    path,
                    format!("#{{{name}}} is used but not declared in `args` (declared: {})", list(&declared)),
                );
            }
        }
        for name in cmd.args.keys() {
            if !used.contains(name.as_str()) {
                let mut path = p(at);
                path.extend([Seg::Key("args".into()), Seg::Key(name.clone())]);
                self.warn_key(path, format!("argument {name:?} is declared but the command never uses #{{{name}}}"));
            }
        }
    }

    /// A file of the scenario: inside its folder, present, with this hash.
    fn file(&mut self, dir: &Path, at: &[PathPart<'_>], file: &Path, sha256: Option<&Sha256>) {
        let mut file_path = p(at);
        file_path.push(Seg::Key("file".into()));
        if file.is_absolute() || file.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
            self.error(
                file_path,
                format!("{}: must be a path inside the scenario's folder (relative, no `..`)", file.display()),
            );
            return;
        }
        let full = dir.join(file);
        let facts = match ioclab_sandbox::sample::facts(&full) {
            Ok(f) => f,
            Err(e) => {
                self.error(file_path, format!("missing asset {}: {e}", full.display()));
                return;
            }
        };
        if let Some(want) = sha256 {
            if facts.sha256 != *want {
                let mut path = p(at);
                path.push(Seg::Key("sha256".into()));
                self.error(path, format!("sha256 mismatch for {}: the file has {}", file.display(), facts.sha256));
            }
        }
    }
}

/// Whether two scenario-relative paths name the same file (`./a` is `a`).
fn same_file(a: &Path, b: &Path) -> bool {
    let parts = |p: &Path| {
        p.components().filter(|c| !matches!(c, Component::CurDir)).map(|c| c.as_os_str().to_owned()).collect::<Vec<_>>()
    };
    parts(a) == parts(b)
}

fn list(items: &[&str]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

/// Whether `name` is a Kunai event the agent knows.
fn known_event(name: &str) -> bool {
    EventKind::ALL.iter().any(|k| k.name() == name)
}

fn event_names() -> String {
    EventKind::ALL.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")
}

/// Every problem of a parsed scenario whose folder is `dir`.
pub fn scenario(source: &Source, dir: &Path, s: &Scenario) -> Vec<Diagnostic> {
    let mut f = Found { source, diags: Vec::new() };
    // canonical, so `ioclab lab check .` inside the folder knows its name too
    let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    if let Some(folder) = canonical.file_name().and_then(|n| n.to_str()) {
        if folder != s.id.as_str() {
            f.error(p(&[K("id")]), format!("id {:?} differs from its folder's name {folder:?}", s.id.as_str()));
        }
    }

    for (i, record) in s.network.dns.iter().enumerate() {
        if let Some(ip) = record_address(record) {
            if !address_allowed(ip) {
                f.error(
                    p(&[K("network"), K("dns"), I(i), K("value")]),
                    format!("{ip} would lead off the machine: lab records must point at loopback (127.0.0.0/8 or ::1)"),
                );
            }
        }
    }
    for (i, service) in s.network.services.iter().enumerate() {
        if !address_allowed(service.address) {
            f.error(
                p(&[K("network"), K("services"), I(i), K("address")]),
                format!("{} is not loopback: lab services listen on 127.0.0.0/8 or ::1 only", service.address),
            );
        }
    }
    f.unique(&[K("network"), K("services")], s.network.services.iter().map(|x| x.id.as_str()));
    for (i, service) in s.network.services.iter().enumerate() {
        let at = |key: &'static str| p(&[K("network"), K("services"), I(i), K(key)]);
        let only = |what: &str, kind: ServiceKind| {
            format!("`{what}` is only for `kind: {}` (this service is `{}`)", kind.name(), service.kind.name())
        };
        if service.kind != ServiceKind::HttpSink {
            if service.body.is_some() {
                f.error(at("body"), only("body", ServiceKind::HttpSink));
            }
            if service.content_type.is_some() {
                f.error(at("content_type"), only("content_type", ServiceKind::HttpSink));
            }
        }
        if service.kind != ServiceKind::C2 && service.send.is_some() {
            f.error(at("send"), only("send", ServiceKind::C2));
        }
        if let Some(body) = &service.body {
            // served to the sample and the endpoint: hashed like every other file
            if !s.assets.iter().any(|a| same_file(&a.file, body)) {
                f.error(at("body"), format!("{} is not in `assets`: declare it there with its sha256", body.display()));
            }
        }
    }

    f.file(dir, &[K("sample")], &s.sample.file, Some(&s.sample.sha256));
    if let Some(report) = &s.sample.report {
        f.file(dir, &[K("sample"), K("report")], report, None);
    }
    for (i, asset) in s.assets.iter().enumerate() {
        f.file(dir, &[K("assets"), I(i)], &asset.file, Some(&asset.sha256));
    }

    f.unique(&[K("steps")], s.steps.iter().map(|x| x.id.as_str()));
    for (i, step) in s.steps.iter().enumerate() {
        f.placeholders(&[K("steps"), I(i), K("run")], &step.run);
    }
    for (i, cmd) in s.cleanup.iter().enumerate() {
        f.placeholders(&[K("cleanup"), I(i)], cmd);
    }

    let iocs: Vec<&str> = s.expect.iocs.iter().map(|i| i.value.as_str()).collect();
    for (i, absent) in s.expect.absent.iter().enumerate() {
        // compared as the agent matches them (case, trailing dot)
        if s.expect.iocs.iter().any(|e| e.value.value() == absent.value.value()) {
            f.error(
                p(&[K("expect"), K("absent"), I(i), K("value")]),
                format!(
                    "{:?} is also in `expect.iocs`: the export cannot both hold it and not hold it",
                    absent.value.as_str()
                ),
            );
        }
    }
    f.unique(&[K("expect"), K("detections")], s.expect.detections.iter().map(|x| x.id.as_str()));
    for (i, det) in s.expect.detections.iter().enumerate() {
        if !known_event(&det.event) {
            f.error(
                p(&[K("expect"), K("detections"), I(i), K("event")]),
                format!("{:?} is not a Kunai event (one of: {})", det.event, event_names()),
            );
        }
        if !iocs.contains(&det.ioc.as_str()) {
            f.error(
                p(&[K("expect"), K("detections"), I(i), K("ioc")]),
                format!(
                    "{:?} is not one of `expect.iocs` ({}): the agent could never match it",
                    det.ioc.as_str(),
                    list(&iocs)
                ),
            );
        }
    }

    if s.expect.endpoint == EndpointRole::Trainee {
        // the trainee's machine is there to be watched: something must run on it, and be awaited
        if s.expect.detections.is_empty() {
            f.error(
                p(&[K("expect"), K("endpoint")]),
                "`endpoint: trainee` awaits detections on the trainee's machine, but `expect.detections` is empty"
                    .into(),
            );
        }
        if s.steps.is_empty() {
            f.error(
                p(&[K("expect"), K("endpoint")]),
                "`endpoint: trainee` needs `steps`: the commands sent to (or run by) the trainee".into(),
            );
        }
    }

    f.unique(&[K("questions")], s.questions.iter().map(|x| x.id.as_str()));
    let detections: Vec<&str> = s.expect.detections.iter().map(|d| d.id.as_str()).collect();
    for (i, q) in s.questions.iter().enumerate() {
        match (q.kind, q.choices.is_empty()) {
            (QuestionType::Choice, true) => {
                f.error(p(&[K("questions"), I(i), K("type")]), "a choice question needs `choices`".into())
            }
            (QuestionType::Choice, false) => {}
            (_, false) => {
                f.error(p(&[K("questions"), I(i), K("choices")]), "`choices` are only for `type: choice`".into())
            }
            (_, true) => {}
        }
        let hint_cost: u32 = q.hints.iter().map(|h| h.cost).sum();
        if hint_cost > q.points {
            f.warn(
                p(&[K("questions"), I(i), K("hints")]),
                format!("the hints cost {hint_cost} points, more than the question's {}", q.points),
            );
        }
        for (j, unlock) in q.unlock.iter().enumerate() {
            if let Unlock::Detection { detection } = unlock {
                if !detections.contains(&detection.as_str()) {
                    f.error(
                        p(&[K("questions"), I(i), K("unlock"), I(j), K("detection")]),
                        format!("no expected detection {:?} (known: {})", detection.as_str(), list(&detections)),
                    );
                }
            }
        }
    }
    f.diags
}

/// Every problem of `answers.yaml` given its scenario.
pub fn answers(source: &Source, s: &Scenario, a: &AnswerFile) -> Vec<Diagnostic> {
    let mut f = Found { source, diags: Vec::new() };
    let questions: Vec<&str> = s.questions.iter().map(|q| q.id.as_str()).collect();
    for (id, answer) in &a.answers {
        let at = |rest: &[&str]| {
            let mut v = vec![Seg::Key("answers".into()), Seg::Key(id.to_string())];
            v.extend(rest.iter().map(|k| Seg::Key(k.to_string())));
            v
        };
        let Some(q) = s.questions.iter().find(|q| q.id == *id) else {
            let message = format!("no question {:?} in scenario.yaml (questions: {})", id.as_str(), list(&questions));
            f.diags.push(source.at_key(&at(&[]), Severity::Error, message));
            continue;
        };
        match &answer.rule {
            AnswerRule::Exact { value, .. } if q.kind == QuestionType::Choice && !q.choices.contains(value) => {
                f.error(at(&["rule", "value"]), format!("{value:?} is not one of the question's choices"))
            }
            AnswerRule::Event { event, .. } if !known_event(event) => {
                f.error(at(&["rule", "event"]), format!("{event:?} is not a Kunai event (one of: {})", event_names()))
            }
            _ => {}
        }
        if let Some(sol) = &answer.solution {
            if sol.penalty > q.points {
                f.warn(
                    at(&["solution", "penalty"]),
                    format!("penalty {} exceeds the question's {} points", sol.penalty, q.points),
                );
            }
        }
    }
    for q in &s.questions {
        if !a.answers.contains_key(&q.id) {
            f.error(vec![Seg::Key("answers".into())], format!("question {:?} has no answer", q.id.as_str()));
        }
    }
    f.diags
}
