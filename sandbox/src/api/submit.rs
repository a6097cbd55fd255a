//! A submission's form (multipart for files, urlencoded or multipart for
//! URLs), checked before anything is stored: what is wrong is a 400 with
//! a message, and nothing changes.

use std::collections::BTreeMap;

/// Largest sample accepted unless configured otherwise.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 32 << 20;

/// Longest analysis a task may ask for, seconds.
pub const MAX_TIMEOUT_S: u64 = 3600;

/// What is wrong with a submission.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadSubmission(pub String);

fn bad(msg: impl Into<String>) -> BadSubmission {
    BadSubmission(msg.into())
}

/// A file name as submitted, checked: no path, no NUL, no control characters.
pub fn check_filename(name: &str) -> Result<String, BadSubmission> {
    if name.is_empty() {
        return Err(bad("the file has no name"));
    }
    if name.contains('\0') {
        return Err(bad("the file name contains a NUL byte"));
    }
    if name.contains('/') || name.contains('\\') || name == "." || name == ".." {
        return Err(bad(format!(
            "the file name {name:?} is a path (it contains / or \\ or is . or ..); give the name only"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(bad(format!("the file name {name:?} contains control characters")));
    }
    if name.len() > 255 {
        return Err(bad(format!("the file name is {} bytes long; at most 255", name.len())));
    }
    Ok(name.to_string())
}

/// The form fields of a task, parsed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskForm {
    /// Package.
    pub package: Option<String>,
    /// Seconds.
    pub timeout: Option<u64>,
    /// Priority.
    pub priority: i64,
    /// `key=value,...` as given.
    pub options: String,
    /// The options, parsed.
    pub options_map: BTreeMap<String, String>,
    /// Machine.
    pub machine: Option<String>,
    /// Platform.
    pub platform: Option<String>,
    /// Tags.
    pub tags: String,
    /// Custom text.
    pub custom: Option<String>,
    /// Owner.
    pub owner: Option<String>,
    /// Memory dump flag.
    pub memory: bool,
    /// Run the whole timeout.
    pub enforce_timeout: bool,
    /// `unique`: refuse a sample already submitted.
    pub unique: bool,
}

/// Cuckoo's boolean form values.
fn flag(name: &str, v: &str) -> Result<bool, BadSubmission> {
    match v.trim().to_ascii_lowercase().as_str() {
        "" | "0" | "false" | "no" | "off" => Ok(false),
        "1" | "true" | "yes" | "on" => Ok(true),
        other => Err(bad(format!("{name}: {other:?} is not a boolean (1/0, true/false)"))),
    }
}

/// `key=value,key2=value2` (a key alone means `1`).
pub fn parse_options(text: &str) -> Result<BTreeMap<String, String>, BadSubmission> {
    let mut out = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (k, v) = item.split_once('=').unwrap_or((item, "1"));
        let k = k.trim();
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.') {
            return Err(bad(format!("options: {item:?} is not key=value")));
        }
        out.insert(k.to_string(), v.trim().to_string());
    }
    Ok(out)
}

impl TaskForm {
    /// Reads the known fields of a form; unknown fields are ignored, as Cuckoo does.
    pub fn from_fields(fields: &BTreeMap<String, String>) -> Result<TaskForm, BadSubmission> {
        let get = |k: &str| fields.get(k).map(|v| v.trim()).filter(|v| !v.is_empty()).map(str::to_string);
        let int = |k: &str| -> Result<Option<i64>, BadSubmission> {
            get(k).map(|v| v.parse::<i64>().map_err(|_| bad(format!("{k}: {v:?} is not an integer")))).transpose()
        };
        let timeout = match int("timeout")? {
            None | Some(0) => None,
            Some(t) if t < 0 || t as u64 > MAX_TIMEOUT_S => {
                return Err(bad(format!("timeout: {t} s is out of range (1 to {MAX_TIMEOUT_S})")))
            }
            Some(t) => Some(t as u64),
        };
        let options = get("options").unwrap_or_default();
        Ok(TaskForm {
            package: get("package"),
            timeout,
            priority: int("priority")?.unwrap_or(1),
            options_map: parse_options(&options)?,
            options,
            machine: get("machine"),
            platform: get("platform"),
            tags: get("tags").unwrap_or_default(),
            custom: get("custom"),
            owner: get("owner"),
            memory: flag("memory", fields.get("memory").map(String::as_str).unwrap_or(""))?,
            enforce_timeout: flag("enforce_timeout", fields.get("enforce_timeout").map(String::as_str).unwrap_or(""))?,
            unique: flag("unique", fields.get("unique").map(String::as_str).unwrap_or(""))?,
        })
    }

    /// Whether the task asks to run the sample as root (`options=root=1` or `user=root`).
    pub fn as_root(&self) -> bool {
        self.options_map.get("user").is_some_and(|u| u == "root")
            || self.options_map.get("root").is_some_and(|v| flag("root", v).unwrap_or(false))
    }
}

/// A URL task's target: http or https, no spaces, a host.
pub fn check_url(url: &str) -> Result<String, BadSubmission> {
    let url = url.trim();
    if url.is_empty() {
        return Err(bad("No URL provided"));
    }
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| bad(format!("the URL {url:?} is not http:// or https://")))?;
    if rest.is_empty() || rest.starts_with('/') || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad(format!("the URL {url:?} has no host or contains spaces")));
    }
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn file_names() {
        assert_eq!(check_filename("dropper.sh").unwrap(), "dropper.sh");
        assert_eq!(check_filename("a..b").unwrap(), "a..b");
        for bad in ["", "../x", "a/../../etc/passwd", "x\0y", "..", ".", "a\\b", "a\nb", &"x".repeat(256)] {
            assert!(check_filename(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn forms() {
        let f = |pairs: &[(&str, &str)]| {
            TaskForm::from_fields(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
        };
        let t = f(&[("timeout", "30"), ("options", "user=root, procmemdump"), ("enforce_timeout", "1"), ("x", "y")])
            .unwrap();
        assert_eq!(t.timeout, Some(30));
        assert!(t.as_root() && t.enforce_timeout);
        assert_eq!(t.options_map["procmemdump"], "1");
        assert_eq!(f(&[]).unwrap().timeout, None);
        for (k, v) in [
            ("timeout", "abc"),
            ("timeout", "99999"),
            ("timeout", "-5"),
            ("priority", "x"),
            ("options", "=x"),
            ("memory", "maybe"),
        ] {
            let e = f(&[(k, v)]).unwrap_err();
            assert!(e.0.starts_with(k), "{k}={v}: {e}");
        }
    }

    #[test]
    fn urls() {
        assert_eq!(check_url(" http://why.kunai.rocks/x ").unwrap(), "http://why.kunai.rocks/x");
        for bad in ["", "ftp://x", "http://", "http:///x", "https://a b", "javascript:alert(1)"] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        /// A name that passes is a single path component that stays inside any folder it is joined to.
        #[test]
        fn accepted_names_stay_in_their_folder(name in "\\PC{0,40}") {
            if let Ok(n) = check_filename(&name) {
                let joined = std::path::Path::new("/store").join(&n);
                prop_assert_eq!(joined.parent(), Some(std::path::Path::new("/store")));
                prop_assert!(!n.contains('\0'));
            } else {
                prop_assert!(name.is_empty() || name.contains(['/', '\\', '\0']) || name == "." || name == ".."
                    || name.chars().any(char::is_control) || name.len() > 255);
            }
        }

        /// Options never panic; what parses re-renders to the same map.
        #[test]
        fn options_parse_or_explain(text in "[a-z=, _.]{0,40}") {
            if let Ok(map) = parse_options(&text) {
                let rendered = map.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
                prop_assert_eq!(parse_options(&rendered).unwrap(), map);
            }
        }
    }
}
