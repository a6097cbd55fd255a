//! The loader never panics, whatever the text, and every error it returns
//! points inside the file.

use std::path::{Path, PathBuf};

use ioclab_lab::scenario::load::{self, Diagnostic, Source};
use ioclab_lab::scenario::{AnswerFile, Scenario};
use proptest::prelude::*;

fn good_text() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../lab-scenarios/dns-ioc-why-kunai-rocks/scenario.yaml"),
    )
    .unwrap()
}

/// Every diagnostic names the file and a place inside the text (or just past it).
fn located(d: &Diagnostic, file: &Path, text: &str) {
    assert_eq!(d.file, file);
    let lines: Vec<&str> = text.split('\n').collect();
    assert!(d.line >= 1 && d.line <= lines.len() + 1, "{d} (file has {} lines)", lines.len());
    assert!(d.column >= 1, "{d}");
    if let Some(l) = lines.get(d.line - 1) {
        assert!(d.column <= l.chars().count() + 2, "{d}: line is {l:?}");
    }
}

/// Parses `text` as a scenario and as answers, then validates it in a scratch folder.
fn check(text: &str) {
    let file = PathBuf::from("mutated/scenario.yaml");
    let source = Source { file: file.clone(), text: text.to_string() };
    if let Err(d) = source.parse::<AnswerFile>() {
        located(&d, &file, text);
    }
    match source.parse::<Scenario>() {
        Err(d) => located(&d, &file, text),
        Ok(_) => {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("dns-ioc-why-kunai-rocks");
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join("scenario.yaml"), text).unwrap();
            if let Err(diags) = load::load(&dir) {
                for d in &diags {
                    located(d, &dir.join("scenario.yaml"), text);
                }
            }
        }
    }
}

/// Small edits of a valid scenario: the likeliest mistakes of an author.
#[derive(Debug, Clone)]
enum Edit {
    DeleteLine(usize),
    DuplicateLine(usize),
    Truncate(usize),
    Insert(usize, String),
    Indent(usize, bool),
}

fn apply(text: &str, edit: &Edit) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let n = lines.len();
    if n == 0 && !matches!(edit, Edit::Insert(..)) {
        return text.to_string(); // an earlier edit emptied it: nothing to edit by line
    }
    match edit {
        Edit::DeleteLine(i) => {
            lines.remove(i % n);
        }
        Edit::DuplicateLine(i) => {
            let l = lines[i % n].clone();
            lines.insert(i % n, l);
        }
        Edit::Truncate(i) => return text.chars().take(i % (text.chars().count() + 1)).collect(),
        Edit::Insert(i, s) => {
            let mut chars: Vec<char> = text.chars().collect();
            let at = i % (chars.len() + 1);
            chars.splice(at..at, s.chars());
            return chars.into_iter().collect();
        }
        Edit::Indent(i, more) => {
            let l = &mut lines[i % n];
            if *more {
                l.insert(0, ' ');
            } else if l.starts_with(' ') {
                l.remove(0);
            }
        }
    }
    lines.join("\n")
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::DeleteLine),
        any::<usize>().prop_map(Edit::DuplicateLine),
        any::<usize>().prop_map(Edit::Truncate),
        (
            any::<usize>(),
            prop_oneof![
                Just(":".to_string()),
                Just("- ".to_string()),
                Just("#{x}".to_string()),
                Just("\n  extra: 1\n".to_string()),
                Just("&a ".to_string()),
                Just("*a".to_string()),
                Just("!tag ".to_string()),
                Just("\t".to_string()),
                "[ -~\\n]{0,8}",
            ]
        )
            .prop_map(|(i, s)| Edit::Insert(i, s)),
        (any::<usize>(), any::<bool>()).prop_map(|(i, m)| Edit::Indent(i, m)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_text_is_an_error_with_a_place_or_a_scenario(text in "(?s).{0,400}") {
        check(&text);
    }

    #[test]
    fn yaml_like_text_never_panics(text in "([a-z_]{1,8}: [ -~]{0,12}\\n|  - [ -~]{0,10}\\n|- \\n|  [a-z]{1,5}: \\n){0,30}") {
        check(&text);
    }

    #[test]
    fn edited_scenarios_never_panic(edits in proptest::collection::vec(edit(), 1..4)) {
        let mut text = good_text();
        for e in &edits {
            text = apply(&text, e);
        }
        check(&text);
    }
}

#[test]
fn deep_nesting_and_aliases_are_errors_not_crashes() {
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    check(&deep);
    let bomb = "a: &a [x, x, x, x]\nb: &b [*a, *a, *a, *a]\nc: &c [*b, *b, *b, *b]\nd: [*c, *c, *c, *c]\n";
    check(bomb);
    check("id: x\n---\nid: y\n");
    check("");
}
