//! `sandbox.toml`: the MISP modules' settings under Cuckoo's names
//! (`[processing.misp]` from processing.conf, `[reporting.misp]` from
//! reporting.conf) plus ioclab's additions. Each key's meaning is its doc
//! comment, which `ioclab sandbox config --dump` and the README table print:
//! one source of truth.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use ioclab_intel::client::{ClientError, MispClient};
use ioclab_intel::model::levels::{Analysis, Distribution, ThreatLevel};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where the appliance looks for `sandbox.toml` when no `-c` is given.
pub const DEFAULT_PATH: &str = "/etc/ioclab/sandbox.toml";
/// The embedded MISP (`ioclab misp serve`'s default listener).
pub const EMBEDDED_MISP_URL: &str = "http://127.0.0.1:8080";
/// Cuckoo's default event title; `{task_id}` is replaced by the task's id.
pub const DEFAULT_TITLE: &str = "Cuckoo Sandbox analysis #{task_id}";

/// One key of a section as `config --dump` and the README show it.
#[derive(Debug, Clone)]
pub struct KeyDoc {
    /// The key in `sandbox.toml`.
    pub key: &'static str,
    /// The same setting in Cuckoo (`processing.conf [misp] maxioc`), or `""` for ioclab's own.
    pub cuckoo: &'static str,
    /// What it does (the field's doc comment).
    pub meaning: String,
    /// The default as TOML (`key = value`), or `None` when unset by default.
    pub default: Option<String>,
}

/// `key = value` as TOML, or `None` when the value is unset (`None` fields).
fn toml_line<T: Serialize>(key: &str, value: &T) -> Option<String> {
    let mut one = std::collections::BTreeMap::new();
    one.insert(key, value);
    toml::to_string(&one).ok().map(|s| s.trim_end().to_string()).filter(|s| !s.is_empty())
}

/// Declares a section: the struct (fields documented by their doc
/// comments), its `Default` and its key table built from the same comments.
macro_rules! section {
    ($(#[doc = $sdoc:literal])* $name:ident [$table:literal] {
        $( $(#[doc = $doc:literal])+ [$cuckoo:expr] $(#[serde($($serde:tt)*)])* $field:ident : $ty:ty = $default:expr, )*
    }) => {
        $(#[doc = $sdoc])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            $( $(#[doc = $doc])+ $(#[serde($($serde)*)])* pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                $name { $( $field: $default, )* }
            }
        }

        impl $name {
            /// The section's table name in `sandbox.toml`.
            pub const TABLE: &'static str = $table;

            /// Every key with its Cuckoo name, meaning and default.
            pub fn keys() -> Vec<KeyDoc> {
                let d = $name::default();
                vec![$( KeyDoc {
                    key: stringify!($field),
                    cuckoo: $cuckoo,
                    meaning: [$($doc),+].iter().map(|l| l.trim()).collect::<Vec<_>>().join(" "),
                    default: toml_line(stringify!($field), &d.$field),
                }, )*]
            }
        }
    };
}

/// Adds the keys both MISP sections share (where MISP is and how to log in).
macro_rules! misp_section {
    ($(#[doc = $sdoc:literal])* $name:ident [$table:literal] ($conf:literal) { $($rest:tt)* }) => {
        section! {
            $(#[doc = $sdoc])* $name [$table] {
                $($rest)*
                /// Base URL of the MISP (the default is the embedded one, `ioclab misp serve`).
                [concat!($conf, " [misp] url")] url: String = EMBEDDED_MISP_URL.to_string(),
                /// The API key (40 characters). Leave empty and use `apikey_file` to keep it out of this file.
                [concat!($conf, " [misp] apikey")] apikey: String = String::new(),
                /// A file holding the API key (what `ioclab misp keys create` prints), read when `apikey` is empty.
                [""] apikey_file: Option<PathBuf> = None,
                /// Verify MISP's TLS certificate (false for a lab MISP with a self-signed one).
                [""] #[serde(alias = "verify_ssl")] ssl: bool = true,
                /// A CA certificate (PEM) to trust besides the system's.
                [""] ca_file: Option<PathBuf> = None,
                /// Values never sent to or looked up in MISP: domains, IPs, URLs or hashes (a comma list, as the Cuckoo patch takes, or a TOML array).
                [concat!($conf, " [misp] ioc_blacklist (patch)")] ioc_blacklist: List = List::default(),
            }
        }

        impl $name {
            /// Where this section's MISP is and how to log in.
            pub fn connection(&self) -> Connection<'_> {
                Connection {
                    table: Self::TABLE,
                    url: &self.url,
                    apikey: &self.apikey,
                    apikey_file: self.apikey_file.as_deref(),
                    ssl: self.ssl,
                    ca_file: self.ca_file.as_deref(),
                }
            }
        }
    };
}

misp_section! {
    /// `[processing.misp]`: look the report's IoCs up in MISP (Cuckoo's processing module).
    ProcessingMisp ["processing.misp"] ("processing.conf") {
        /// Look up the report's hashes, hosts and domains in MISP and add the events that know them to the report (`misp`).
        ["processing.conf [misp] enabled"] enabled: bool = false,
        /// At most this many values are looked up, taken in a stable order: sample, dropped files, network.
        ["processing.conf [misp] maxioc"] maxioc: usize = 100,
        /// A hit counts only when the matching MISP attribute has the IDS flag.
        ["processing.conf [misp] only_ids (patch)"] only_ids: bool = true,
    }
}

misp_section! {
    /// `[reporting.misp]`: turn each report into a MISP event (Cuckoo's reporting module).
    ReportingMisp ["reporting.misp"] ("reporting.conf") {
        /// Send each report to MISP as an event, after every detonation (`ioclab sandbox to-misp` works either way).
        ["reporting.conf [misp] enabled"] enabled: bool = false,
        /// What goes in the event: `hashes` (the sample's), `ipaddr` (domain|ip and contacted hosts), `url` (HTTP requests); space or comma separated.
        ["reporting.conf [misp] mode"] mode: Modes = Modes::ALL,
        /// Who may see the event: 0 your organisation, 1 this community, 2 connected communities, 3 all, 4 a sharing group.
        ["reporting.conf [misp] distribution"] distribution: Distribution = Distribution::Organisation,
        /// Analysis state: 0 initial, 1 ongoing, 2 completed.
        ["reporting.conf [misp] analysis"] analysis: Analysis = Analysis::Initial,
        /// Threat level: 1 high, 2 medium, 3 low, 4 undefined.
        ["reporting.conf [misp] threat_level"] #[serde(alias = "threat_level_id")] threat_level: ThreatLevel = ThreatLevel::Undefined,
        /// Reports scoring below this (Cuckoo's score, or CAPE's malscore) are not sent.
        ["reporting.conf [misp] min_malscore"] min_malscore: f64 = 0.0,
        /// Tag(s) attached to the event (a comma list or a TOML array).
        ["reporting.conf [misp] tag"] tag: List = List(vec!["Cuckoo".to_string()]),
        /// Attach the sample itself as a `malware-sample` attribute (zipped, password `infected`).
        ["reporting.conf [misp] upload_sample"] upload_sample: bool = false,
        /// Publish the event at once; by default it waits, unpublished, for a human to review it.
        [""] publish: bool = false,
        /// The event's title; `{task_id}` is replaced by the task's id.
        [""] title: String = DEFAULT_TITLE.to_string(),
        /// Leave out values on a MISP warninglist (the lists `ioclab misp export` uses).
        [""] warninglists: bool = true,
        /// Leave out values on the built-in Cuckoo-style safelist (OS update and certificate hosts, local addresses).
        [""] safelist: bool = true,
        /// Mark the `path` of dropped files' `file` objects as IDS, so exports carry them as path IoCs (off: Cuckoo sends no paths, and a path alone is a weak indicator).
        [""] dropped_path_ids: bool = false,
        /// Values kept even when the safelist or a warninglist would leave them out: addresses a lab declares as its own (its C2 on loopback is an indicator there). The blacklist still wins.
        [""] allow: List = List::default(),
        /// This sandbox's name in the events' identity (the event uuid derives from it and the task id, so re-reporting a task updates its event); empty: this machine's hostname.
        [""] sandbox_name: String = String::new(),
    }
}

/// `[processing]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Processing {
    /// MISP lookups.
    pub misp: ProcessingMisp,
}

/// `[reporting]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Reporting {
    /// MISP events.
    pub misp: ReportingMisp,
}

/// The whole `sandbox.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxToml {
    /// Processing modules (add to the report).
    pub processing: Processing,
    /// Reporting modules (send the report somewhere).
    pub reporting: Reporting,
}

/// A list given as a comma-separated string (Cuckoo's way) or a TOML array.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct List(pub Vec<String>);

impl List {
    /// Whether `value` is on the list (case-insensitive: hosts and hashes are).
    pub fn contains(&self, value: &str) -> bool {
        self.0.iter().any(|v| v.eq_ignore_ascii_case(value.trim()))
    }
}

impl Serialize for List {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for List {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        let items = match Raw::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected a comma-separated string or an array of strings"))?
        {
            Raw::One(s) => s.split(',').map(str::to_string).collect(),
            Raw::Many(v) => v,
        };
        Ok(List(items.into_iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()))
    }
}

/// Cuckoo's reporting `mode`: which IoC families go in the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Modes {
    /// `hashes`: the sample's `filename|md5/sha1/sha256`.
    pub hashes: bool,
    /// `ipaddr`: `domain|ip` of resolved names and `ip-dst` of other contacted hosts.
    pub ipaddr: bool,
    /// `url`: the URLs of HTTP requests.
    pub url: bool,
}

impl Modes {
    /// Cuckoo's default, `ipaddr hashes url`.
    pub const ALL: Modes = Modes { hashes: true, ipaddr: true, url: true };
    /// The mode names, as Cuckoo spells them.
    pub const NAMES: [&'static str; 3] = ["ipaddr", "hashes", "url"];

    /// Parses `ipaddr hashes url` (spaces or commas).
    pub fn parse(s: &str) -> Result<Modes, String> {
        let mut m = Modes { hashes: false, ipaddr: false, url: false };
        for word in s.split([' ', ',', '\t']).filter(|w| !w.is_empty()) {
            match word {
                "hashes" => m.hashes = true,
                "ipaddr" => m.ipaddr = true,
                "url" => m.url = true,
                other => return Err(format!("unknown mode {other:?} (the modes are: {})", Self::NAMES.join(", "))),
            }
        }
        Ok(m)
    }
}

impl std::fmt::Display for Modes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let on = [self.ipaddr, self.hashes, self.url];
        let names: Vec<&str> = Self::NAMES.iter().zip(on).filter(|(_, on)| *on).map(|(n, _)| *n).collect();
        f.write_str(&names.join(" "))
    }
}

impl Serialize for Modes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Modes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Modes::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Where one section's MISP is and how to log in.
#[derive(Debug, Clone, Copy)]
pub struct Connection<'a> {
    /// The section, for error messages.
    pub table: &'static str,
    /// Base URL.
    pub url: &'a str,
    /// The key, when given inline.
    pub apikey: &'a str,
    /// The key's file.
    pub apikey_file: Option<&'a Path>,
    /// Verify TLS.
    pub ssl: bool,
    /// Extra CA.
    pub ca_file: Option<&'a Path>,
}

/// How to get a key for the embedded MISP, for error messages.
pub const KEY_HOWTO: &str = "for the embedded MISP create one with \
`ioclab misp keys create --email sandbox@lab.example --role publisher > /etc/ioclab/misp-sandbox.key` \
and set apikey_file = \"/etc/ioclab/misp-sandbox.key\"; for another MISP take it from My Profile → Auth keys";

/// The API key could not be found.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Neither `apikey` nor `apikey_file` is set.
    #[error("[{table}] has no API key: set `apikey` or `apikey_file` in sandbox.toml; {KEY_HOWTO}")]
    Missing {
        /// The section.
        table: &'static str,
    },
    /// The key file is unreadable or empty.
    #[error("[{table}] apikey_file {}: {why}; {KEY_HOWTO}", path.display())]
    File {
        /// The section.
        table: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
    /// The client could not be built (CA file...).
    #[error("[{table}]: {source}")]
    Client {
        /// The section.
        table: &'static str,
        /// Why.
        source: ClientError,
    },
}

impl Connection<'_> {
    /// The API key: `apikey`, else the first line of `apikey_file`.
    pub fn api_key(&self) -> Result<String, KeyError> {
        if !self.apikey.trim().is_empty() {
            return Ok(self.apikey.trim().to_string());
        }
        let Some(path) = self.apikey_file else {
            return Err(KeyError::Missing { table: self.table });
        };
        let file_error = |why: String| KeyError::File { table: self.table, path: path.to_path_buf(), why };
        let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
        match text.lines().map(str::trim).find(|l| !l.is_empty()) {
            Some(key) => Ok(key.to_string()),
            None => Err(file_error("the file is empty".into())),
        }
    }

    /// A MISP client for this connection.
    pub fn client(&self) -> Result<MispClient, KeyError> {
        let key = self.api_key()?;
        MispClient::new(self.url, &key, self.ssl, self.ca_file)
            .map_err(|source| KeyError::Client { table: self.table, source })
    }
}

/// A `sandbox.toml` that cannot be used: the file, the key and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Unreadable.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not TOML, or a key has the wrong name or value.
    #[error("{}: {}{message}", path.display(), key.as_ref().map(|k| format!("key `{k}`: ")).unwrap_or_default())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The dotted key (`reporting.misp.distribution`), when known.
        key: Option<String>,
        /// What is wrong and, when known, the line.
        message: String,
    },
}

impl SandboxToml {
    /// Reads `path`, or [`DEFAULT_PATH`] when `None` (the defaults when that file does not exist).
    pub fn load(path: Option<&Path>) -> Result<SandboxToml, ConfigError> {
        match path {
            Some(p) => Self::from_file(p),
            None if Path::new(DEFAULT_PATH).exists() => Self::from_file(Path::new(DEFAULT_PATH)),
            None => Ok(SandboxToml::default()),
        }
    }

    /// Reads and checks a file.
    pub fn from_file(path: &Path) -> Result<SandboxToml, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        Self::from_toml(&text, path)
    }

    /// Parses TOML text; `path` names it in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<SandboxToml, ConfigError> {
        let parse_error = |key: Option<String>, e: &toml::de::Error| {
            let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            ConfigError::Parse {
                path: path.into(),
                key,
                message: match line {
                    Some(l) => format!("{} (line {l})", e.message().trim_end()),
                    None => e.message().trim_end().to_string(),
                },
            }
        };
        let de = toml::Deserializer::parse(text).map_err(|e| parse_error(None, &e))?;
        let config: SandboxToml = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            parse_error(Some(key).filter(|k| k != "."), e.inner())
        })?;
        config.check().map_err(|(key, message)| ConfigError::Parse { path: path.into(), key: Some(key), message })?;
        Ok(config)
    }

    /// What serde cannot say: URLs and score ranges.
    fn check(&self) -> Result<(), (String, String)> {
        for (table, url) in
            [(ProcessingMisp::TABLE, &self.processing.misp.url), (ReportingMisp::TABLE, &self.reporting.misp.url)]
        {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err((format!("{table}.url"), format!("{url:?} must start with http:// or https://")));
            }
        }
        let score = self.reporting.misp.min_malscore;
        if !score.is_finite() || score < 0.0 {
            return Err(("reporting.misp.min_malscore".into(), format!("{score} must be a number ≥ 0")));
        }
        Ok(())
    }

    /// The settings as TOML, API keys replaced by `********` (for printing).
    pub fn to_toml_redacted(&self) -> String {
        let mut c = self.clone();
        for key in [&mut c.processing.misp.apikey, &mut c.reporting.misp.apikey] {
            if !key.is_empty() {
                *key = "********".into();
            }
        }
        toml::to_string(&c).unwrap_or_else(|e| format!("# cannot print the settings: {e}\n"))
    }

    /// Every section's keys: (table, keys).
    pub fn sections() -> Vec<(&'static str, Vec<KeyDoc>)> {
        vec![(ProcessingMisp::TABLE, ProcessingMisp::keys()), (ReportingMisp::TABLE, ReportingMisp::keys())]
    }

    /// The README's table: each key, Cuckoo's name for it, its default and meaning.
    pub fn markdown_table() -> String {
        let mut out = String::from("| `sandbox.toml` | Cuckoo 2.0 | default | meaning |\n|---|---|---|---|\n");
        for (table, keys) in Self::sections() {
            for k in keys {
                let cuckoo = match k.cuckoo.split_once(" [misp] ") {
                    Some((file, key)) => match key.strip_suffix(" (patch)") {
                        Some(key) => format!("{file} `[misp] {key}` (the post's patch)"),
                        None => format!("{file} `[misp] {key}`"),
                    },
                    None => "— (ioclab)".to_string(),
                };
                let default = k
                    .default
                    .as_deref()
                    .and_then(|l| l.split_once(" = "))
                    .map(|(_, v)| format!("`{v}`"))
                    .unwrap_or_else(|| "not set".into());
                let _ = writeln!(
                    out,
                    "| `[{table}] {}` | {cuckoo} | {default} | {} |",
                    k.key,
                    k.meaning.replace('|', "\\|")
                );
            }
        }
        out
    }

    /// `config --dump`: a commented `sandbox.toml` with every key at its default.
    pub fn dump() -> String {
        let mut out = String::from("# sandbox.toml: every key at its default (ioclab sandbox config --dump)\n");
        for (table, keys) in Self::sections() {
            let _ = writeln!(out, "\n[{table}]");
            for k in keys {
                let _ = writeln!(out, "# {}", k.meaning);
                if !k.cuckoo.is_empty() {
                    let _ = writeln!(out, "# Cuckoo: {}", k.cuckoo);
                }
                match k.default {
                    Some(line) => {
                        let _ = writeln!(out, "{line}");
                    }
                    None => {
                        let _ = writeln!(out, "# {} = (not set)", k.key);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(text: &str) -> Result<SandboxToml, ConfigError> {
        SandboxToml::from_toml(text, Path::new("sandbox.toml"))
    }

    #[test]
    fn defaults_point_at_the_embedded_misp_with_cuckoos_values() {
        let c = parse("").unwrap();
        let r = &c.reporting.misp;
        assert_eq!(r.url, EMBEDDED_MISP_URL);
        assert_eq!(r.mode, Modes::ALL);
        assert_eq!(
            (r.distribution, r.analysis, r.threat_level),
            (Distribution::Organisation, Analysis::Initial, ThreatLevel::Undefined)
        );
        assert_eq!(r.tag.0, vec!["Cuckoo"]);
        assert!(!r.enabled && !r.publish && !r.upload_sample && r.warninglists && r.safelist);
        let p = &c.processing.misp;
        assert_eq!((p.maxioc, p.only_ids, p.enabled), (100, true, false));
    }

    #[test]
    fn cuckoo_keys_and_their_spellings() {
        let c = parse(
            "[reporting.misp]\nenabled = true\nmode = \"hashes,url\"\ndistribution = 1\nthreat_level_id = 2\n\
             tag = \"Cuckoo, tlp:amber\"\nioc_blacklist = \"8.8.8.8,www.google.com\"\nmin_malscore = 2.5\n\
             [processing.misp]\nioc_blacklist = [\"1.1.1.1\"]\nmaxioc = 1000\nonly_ids = false\n",
        )
        .unwrap();
        let r = &c.reporting.misp;
        assert_eq!(r.mode, Modes { hashes: true, ipaddr: false, url: true });
        assert_eq!(r.threat_level, ThreatLevel::Medium);
        assert_eq!(r.tag.0, vec!["Cuckoo", "tlp:amber"]);
        assert!(r.ioc_blacklist.contains("WWW.google.com"));
        assert_eq!(c.processing.misp.ioc_blacklist.0, vec!["1.1.1.1"]);
        assert_eq!(c.processing.misp.maxioc, 1000);
    }

    #[test]
    fn errors_name_the_file_the_key_and_the_line() {
        let e = parse("[reporting.misp]\n\ndistribution = 7\n").unwrap_err().to_string();
        assert!(e.starts_with("sandbox.toml: key `reporting.misp.distribution`"), "{e}");
        assert!(e.contains("0 your organisation") && e.contains("line 3"), "{e}");
        let e = parse("[reporting.misp]\nmode = \"ipaddr dns\"\n").unwrap_err().to_string();
        assert!(e.contains("reporting.misp.mode") && e.contains("\"dns\""), "{e}");
        let e = parse("[reporting.misp]\ntreat_level = 1\n").unwrap_err().to_string();
        assert!(e.contains("treat_level"), "{e}");
        let e = parse("[processing.misp]\nurl = \"misp.lab\"\n").unwrap_err().to_string();
        assert!(e.contains("processing.misp.url") && e.contains("http://"), "{e}");
        let e = parse("[reporting.misp\n").unwrap_err().to_string();
        assert!(e.starts_with("sandbox.toml: ") && e.contains("line 1"), "{e}");
    }

    #[test]
    fn the_key_comes_from_apikey_or_its_file_or_the_error_says_how_to_make_one() {
        let mut r = ReportingMisp::default();
        let e = r.connection().api_key().unwrap_err().to_string();
        assert!(e.contains("[reporting.misp]") && e.contains("ioclab misp keys create"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "\n  abc123  \n").unwrap();
        r.apikey_file = Some(file.clone());
        assert_eq!(r.connection().api_key().unwrap(), "abc123");
        std::fs::write(&file, "").unwrap();
        assert!(r.connection().api_key().unwrap_err().to_string().contains("empty"));
        r.apikey = "inline".into();
        assert_eq!(r.connection().api_key().unwrap(), "inline");
    }

    #[test]
    fn dump_lists_every_field_with_its_meaning_and_parses_back_to_the_defaults() {
        let dump = SandboxToml::dump();
        for (table, keys) in SandboxToml::sections() {
            assert!(dump.contains(&format!("[{table}]")));
            for k in keys {
                assert!(!k.meaning.is_empty(), "{} has no meaning", k.key);
                assert!(dump.contains(&k.meaning), "{}", k.key);
            }
        }
        // every field of the structs appears (serde's view of them)
        let fields = toml::Value::try_from(SandboxToml::default()).unwrap();
        for section in ["processing", "reporting"] {
            for key in fields[section]["misp"].as_table().unwrap().keys() {
                assert!(dump.contains(&format!("\n{key} = ")), "{key} missing from the dump");
            }
        }
        assert!(dump.contains("# apikey_file = (not set)"));
        assert!(dump.contains("Cuckoo: reporting.conf [misp] threat_level"));
        assert_eq!(parse(&dump).unwrap(), SandboxToml::default());
        let mut c = SandboxToml::default();
        c.reporting.misp.apikey = "secret-key".into();
        let shown = c.to_toml_redacted();
        assert!(!shown.contains("secret-key") && shown.contains("********"), "{shown}");
    }

    /// The README's table is this one (regenerate it from the failure message after changing a key).
    #[test]
    fn the_readme_table_is_the_config() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
        let table = SandboxToml::markdown_table();
        assert!(readme.contains(&table), "README.md lacks the sandbox.toml table; it should read:\n{table}");
    }

    proptest! {
        #[test]
        fn any_text_is_a_config_or_an_error_naming_the_file(t in "\\PC{0,200}") {
            if let Err(e) = parse(&t) {
                prop_assert!(e.to_string().starts_with("sandbox.toml: "));
            }
        }

        #[test]
        fn any_value_of_a_reporting_key_is_a_config_or_an_error_naming_the_key(
            key in prop::sample::select(vec!["mode", "distribution", "analysis", "threat_level", "min_malscore", "tag", "ioc_blacklist", "url", "enabled"]),
            value in prop_oneof![Just("1".to_string()), Just("-3".to_string()), Just("\"x\"".to_string()), Just("[1, 2]".to_string()), Just("nan".to_string()), "\"\\PC{0,12}\"".prop_map(|s| s.replace('\\', ""))],
        ) {
            if let Err(ConfigError::Parse { key: Some(k), .. }) = parse(&format!("[reporting.misp]\n{key} = {value}\n")) {
                prop_assert_eq!(k, format!("reporting.misp.{key}"));
            }
        }
    }
}
