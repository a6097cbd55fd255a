//! Reading scenario files: YAML into the typed model, every problem a
//! [`Diagnostic`] at FILE:LINE:COLUMN with the key path and what was expected.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::answers::AnswerFile;
use super::{validate, Scenario, ANSWERS_FILE, SCENARIO_FILE};

/// How bad a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Worth fixing; the scenario still runs.
    Warning,
    /// The scenario cannot run.
    Error,
}

/// One problem in a scenario file, at a place in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file.
    pub file: PathBuf,
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
    /// The key path (`steps[0].run.command`), empty for the whole file.
    pub path: String,
    /// What is wrong and what was expected.
    pub message: String,
    /// Error or warning.
    pub severity: Severity,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}:{}:{}: {sev}: ", self.file.display(), self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// A scenario that loaded without errors.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Its folder (assets are relative to it).
    pub dir: PathBuf,
    /// The scenario.
    pub scenario: Scenario,
    /// `answers.yaml`, when present.
    pub answers: Option<AnswerFile>,
    /// Warnings found on the way.
    pub warnings: Vec<Diagnostic>,
}

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// Formats a key path as `steps[0].run.command`.
pub fn path_text(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) if s.is_empty() => s.push_str(k),
            Seg::Key(k) => {
                s.push('.');
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// A file's text, for locating diagnostics in it.
#[derive(Debug, Clone)]
pub struct Source {
    /// The file.
    pub file: PathBuf,
    /// Its text.
    pub text: String,
}

impl Source {
    /// Reads `file`; a read error is a diagnostic at 1:1.
    pub fn read(file: &Path) -> Result<Source, Diagnostic> {
        match std::fs::read_to_string(file) {
            Ok(text) => Ok(Source { file: file.to_path_buf(), text }),
            Err(e) => Err(Diagnostic {
                file: file.to_path_buf(),
                line: 1,
                column: 1,
                path: String::new(),
                message: format!("cannot read: {e}"),
                severity: Severity::Error,
            }),
        }
    }

    /// A diagnostic at the node `path` (or the nearest enclosing one that exists).
    pub fn at(&self, path: &[Seg], severity: Severity, message: impl Into<String>) -> Diagnostic {
        self.diagnostic(path, false, severity, message.into())
    }

    /// A diagnostic at the key that ends `path` (for a mapping entry that should not be there).
    pub fn at_key(&self, path: &[Seg], severity: Severity, message: impl Into<String>) -> Diagnostic {
        self.diagnostic(path, true, severity, message.into())
    }

    fn diagnostic(&self, path: &[Seg], key: bool, severity: Severity, message: String) -> Diagnostic {
        let found = locate_node(&self.text, path, key);
        let (line, column) =
            found.or_else(|| (0..path.len()).rev().find_map(|n| locate(&self.text, &path[..n]))).unwrap_or((1, 1));
        Diagnostic { file: self.file.clone(), line, column, path: path_text(path), message, severity }
    }

    /// Parses the text as `T`, strictly.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, Diagnostic> {
        let de = serde_yaml_ng::Deserializer::from_str(&self.text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            let inner = e.into_inner();
            let (line, column) = match inner.location() {
                Some(l) => (l.line(), l.column()),
                None => end_of(&self.text),
            };
            let mut message = inner.to_string();
            if let Some(i) = message.rfind(" at line ") {
                message.truncate(i);
            }
            let message = message.strip_prefix(&format!("{path}: ")).map(str::to_string).unwrap_or(message);
            Diagnostic { file: self.file.clone(), line, column, path, message, severity: Severity::Error }
        })
    }
}

/// Line and column just past the last character.
fn end_of(text: &str) -> (usize, usize) {
    let line = text.matches('\n').count() + 1;
    let column = text.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The scenario file of `path`: `path` itself, or `path/scenario.yaml` for a folder.
pub fn scenario_file(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(SCENARIO_FILE)
    } else {
        path.to_path_buf()
    }
}

/// The scenario folders under `dir` (those holding a `scenario.yaml`), sorted.
pub fn find(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join(SCENARIO_FILE).is_file())
        .collect();
    found.sort();
    Ok(found)
}

/// Loads and validates the scenario at `path` (its folder or its `scenario.yaml`)
/// and its `answers.yaml` if present: every error found, or the scenario with its warnings.
pub fn load(path: &Path) -> Result<Loaded, Vec<Diagnostic>> {
    let file = scenario_file(path);
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let source = Source::read(&file).map_err(|d| vec![d])?;
    let scenario: Scenario = source.parse().map_err(|d| vec![d])?;
    let mut diags = validate::scenario(&source, &dir, &scenario);
    let answers_path = dir.join(ANSWERS_FILE);
    let answers = if answers_path.exists() {
        match Source::read(&answers_path).and_then(|s| s.parse::<AnswerFile>().map(|a| (s, a))) {
            Ok((s, a)) => {
                diags.extend(validate::answers(&s, &scenario, &a));
                Some(a)
            }
            Err(d) => {
                diags.push(d);
                None
            }
        }
    } else {
        None
    };
    if diags.iter().any(|d| d.severity == Severity::Error) {
        diags.sort_by_key(|d| (d.file.clone(), d.line, d.column));
        return Err(diags);
    }
    Ok(Loaded { dir, scenario, answers, warnings: diags })
}

/// Where the node at `path` starts in `text` (line, column from 1), if it exists.
///
/// The YAML deserializer stamps any error raised while reading a node with
/// that node's position: walking to the node and failing there finds it,
/// without a second YAML parser.
pub fn locate(text: &str, path: &[Seg]) -> Option<(usize, usize)> {
    locate_node(text, path, false)
}

/// [`locate`], or with `key`, where the key ending `path` is.
fn locate_node(text: &str, path: &[Seg], key: bool) -> Option<(usize, usize)> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    match (Seek { path, key }).deserialize(de) {
        Err(e) if e.to_string().contains(HERE) => e.location().map(|l| (l.line(), l.column())),
        _ => None,
    }
}

/// The error [`Seek`] raises where it stops.
const HERE: &str = "\u{0}ioclab-locate-here";

/// Walks to the node at a path (or to its last key) and fails there.
struct Seek<'p> {
    path: &'p [Seg],
    key: bool,
}

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'p> Seek<'p> {
    fn here<E: de::Error>(&self) -> Result<(), E> {
        if self.path.is_empty() {
            Err(E::custom(HERE))
        } else {
            Ok(())
        }
    }

    fn next(&self) -> Seek<'p> {
        Seek { path: &self.path[1..], key: self.key }
    }
}

macro_rules! scalar_visits {
    ($($m:ident: $t:ty),*) => {$(
        fn $m<E: de::Error>(self, _: $t) -> Result<(), E> {
            self.here()
        }
    )*};
}

impl<'de> Visitor<'de> for Seek<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }
    scalar_visits!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_f64: f64, visit_str: &str, visit_i128: i128, visit_u128: u128);
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.here()
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.here()
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.here()?;
        let stop = match &self.path[0] {
            Seg::Key(k) if self.key && self.path.len() == 1 => Some(k.as_str()),
            _ => None,
        };
        while let Some(key) = map.next_key_seed(KeySeed { stop })? {
            match &self.path[0] {
                Seg::Key(k) if *k == key.0 => return map.next_value_seed(self.next()),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.here()?;
        let mut i = 0;
        loop {
            if self.path[0] == Seg::Index(i) {
                return seq.next_element_seed(self.next()).map(|_| ());
            }
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }
}

/// A mapping key as text (YAML keys may be numbers or booleans too).
struct KeyText(String);

/// Reads a mapping key, failing at it when it is `stop`.
struct KeySeed<'k> {
    stop: Option<&'k str>,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = KeyText;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<KeyText, D::Error> {
        struct V<'k>(Option<&'k str>);
        impl<'de> Visitor<'de> for V<'_> {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyText, E> {
                if self.0 == Some(v) {
                    return Err(E::custom(HERE));
                }
                Ok(KeyText(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<KeyText, E> {
                Ok(KeyText(String::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<KeyText, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(KeyText(String::new()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<KeyText, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(KeyText(String::new()))
            }
        }
        // as a string: the deserializer stamps a key's own position on errors then
        d.deserialize_str(V(self.stop))
    }
}
