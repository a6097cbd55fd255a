//! The agent's configuration, in Kunai's YAML shape (`events.<name>.enable`,
//! `output.path`, `scanner.iocs`, `scanner.min_severity`, ...).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::events::EventKind;

/// The whole configuration; every field has a default.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `info.host.uuid`; derived from /etc/machine-id when unset.
    pub host_uuid: Option<uuid::Uuid>,
    /// `info.event.source`: keep "kunai" for tools that expect Kunai's output.
    pub event_source: String,
    /// Kernel ring buffer capacity, in exec-sized events.
    pub max_buffered_events: u32,
    /// Bytes waiting in the ring buffer before the reader is woken at once
    /// (at most a quarter of the ring); below that it drains every `poll_interval_ms`.
    pub wakeup_bytes: u64,
    /// Longest wait, in ms, before buffered events are read (bounds latency).
    pub poll_interval_ms: u64,
    /// Files larger than this (bytes) are not hashed.
    pub max_hash_size: u64,
    /// How many files' hashes are kept.
    pub hash_cache_size: usize,
    /// How long, in ms, an event waits for a new file to be hashed; past
    /// it the event is written without hashes (its `error` says so) and
    /// later events of the file carry them.
    pub hash_budget_ms: u64,
    /// Sends of fewer bytes make no `send_data` event (Kunai's option).
    pub send_data_min_len: u64,
    /// File events (create, read/write, rename, unlink, write_close) per
    /// process and second; over it they are dropped for the rest of the
    /// second, one `error` event says so and another how many were dropped
    /// (Kunai's option; 0: no limit).
    pub max_eps_fs: u64,
    /// Where events go.
    pub output: OutputConfig,
    /// IoC matching.
    pub scanner: ScannerConfig,
    /// Per-event switches, by Kunai event name.
    pub events: BTreeMap<String, EventSwitch>,
}

/// `output:`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct OutputConfig {
    /// A file to append JSON lines to; stdout when unset or "-".
    pub path: Option<PathBuf>,
}

/// `scanner:`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ScannerConfig {
    /// IoC files (Kunai's format, one JSON object a line).
    pub iocs: Vec<PathBuf>,
    /// Matching events below this severity are not written.
    pub min_severity: u8,
    /// On reload (SIGHUP), switch to IoC files even when they hold no valid
    /// IoC or some bad lines (truncated, empty, HTML...). Off: such a load
    /// is refused with an `error` event and the previous IoCs stay in use.
    pub accept_partial_iocs: bool,
    /// With IoC files, write the events that match none too (ioclab's
    /// addition: the lab keeps the events of its steps' processes, matched
    /// or not). Off, as in Kunai: only matches are written.
    pub write_unmatched: bool,
}

/// `events.<name>:`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EventSwitch {
    /// Whether the event is written.
    pub enable: bool,
}

/// How long an event waits for its file's hashes by default, ms (`hash_budget_ms`).
pub const DEFAULT_HASH_BUDGET_MS: u64 = 1000;

impl Default for Config {
    fn default() -> Self {
        Config {
            host_uuid: None,
            event_source: "kunai".into(),
            max_buffered_events: 512,
            // a quarter of the default ring: at network-storm rates (~100 MB/s
            // of records) it wakes the reader every ~10 ms with 3 MB still free
            wakeup_bytes: 1 << 20,
            // each drain of a busy reader costs a wakeup, tens of µs on a VM:
            // 30 ms instead of 10 took the exec storm's CPU per event down
            // ~15% (1.28-1.40 vs 1.59-1.64 µs, A/B), latency staying < 50 ms
            poll_interval_ms: 30,
            max_hash_size: 256 << 20,
            hash_cache_size: 4096,
            // a 50 MB binary is read in about this on a loaded VM; only its own event waits
            hash_budget_ms: DEFAULT_HASH_BUDGET_MS,
            send_data_min_len: 1,
            max_eps_fs: 2048,
            output: OutputConfig::default(),
            scanner: ScannerConfig::default(),
            events: EventKind::ALL
                .iter()
                .filter(|k| k.produced() && !k.is_agent_event())
                .map(|k| (k.name().to_string(), EventSwitch { enable: k.enabled_by_default() }))
                .collect(),
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML is malformed or has a wrong field (the message has line and column).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What and where.
        message: String,
    },
    /// A value is out of range.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// Reads a YAML file; fields not given keep their defaults.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        Self::from_yaml(&text, path)
    }

    /// Parses YAML text (`origin` names it in errors).
    pub fn from_yaml(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let mut config: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            serde_yaml_ng::from_str(text)
                .map_err(|e| ConfigError::Parse { path: origin.into(), message: e.to_string() })?
        };
        let invalid = |message: String| ConfigError::Invalid { path: origin.into(), message };
        for name in config.events.keys() {
            let kind: EventKind =
                name.parse().map_err(|e: crate::events::UnknownEvent| invalid(format!("events: {e}")))?;
            if !kind.produced() || kind.is_agent_event() {
                return Err(invalid(format!(
                    "events: {name:?} is not produced by this version of ioclab (see `ioclab agent config --list-events`)"
                )));
            }
        }
        // events the file does not name keep their defaults
        for (name, switch) in Config::default().events {
            config.events.entry(name).or_insert(switch);
        }
        if config.scanner.min_severity > crate::ioc::MAX_SEVERITY {
            return Err(invalid(format!("scanner.min_severity: {} is over 10", config.scanner.min_severity)));
        }
        if config.max_buffered_events == 0 || config.poll_interval_ms == 0 || config.poll_interval_ms > 1000 {
            return Err(invalid("max_buffered_events must be > 0 and poll_interval_ms in 1..=1000".into()));
        }
        Ok(config)
    }

    /// The configuration as YAML (`ioclab agent config --dump`).
    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(self).unwrap_or_default()
    }

    /// Whether events of `kind` are written.
    pub fn enabled(&self, kind: EventKind) -> bool {
        if kind.is_agent_event() {
            return true;
        }
        self.events.get(kind.name()).map(|s| s.enable).unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_text_gives_a_config_or_an_error_naming_the_file(text in "\\PC{0,200}") {
            if let Err(e) = Config::from_yaml(&text, Path::new("fuzz.yaml")) {
                prop_assert!(e.to_string().starts_with("fuzz.yaml: "));
            }
        }

        #[test]
        fn yaml_shaped_noise_never_panics(key in "[a-z_]{1,12}", value in "[ -~]{0,20}", nested in any::<bool>()) {
            let text = if nested { format!("events:\n  {key}:\n    enable: {value}\n") } else { format!("{key}: {value}\n") };
            let _ = Config::from_yaml(&text, Path::new("fuzz.yaml"));
        }
    }

    #[test]
    fn dump_parses_back_to_defaults() {
        let d = Config::default();
        let back = Config::from_yaml(&d.to_yaml(), Path::new("dump")).unwrap();
        assert_eq!(back, d);
        assert!(d.enabled(EventKind::Execve));
        assert!(d.enabled(EventKind::Start));
    }

    #[test]
    fn partial_file_keeps_other_defaults() {
        let c = Config::from_yaml(
            "events:\n  clone:\n    enable: false\nscanner:\n  iocs: [/tmp/i.json]\n  min_severity: 3\noutput:\n  path: /tmp/out.json\n",
            Path::new("c.yaml"),
        )
        .unwrap();
        assert!(!c.enabled(EventKind::Clone));
        assert!(c.enabled(EventKind::Execve));
        assert_eq!(c.scanner.min_severity, 3);
        assert_eq!(c.output.path.as_deref(), Some(Path::new("/tmp/out.json")));
    }

    #[test]
    fn errors_name_file_and_place() {
        let e =
            Config::from_yaml("events:\n  execve:\n    enable: maybe\n", Path::new("c.yaml")).unwrap_err().to_string();
        assert!(e.starts_with("c.yaml: "), "{e}");
        assert!(e.contains("line 3"), "{e}");
        let e = Config::from_yaml("events:\n  nope:\n    enable: true\n", Path::new("c.yaml")).unwrap_err().to_string();
        assert!(e.contains("unknown event \"nope\""), "{e}");
        let e = Config::from_yaml("outptu: {}\n", Path::new("c.yaml")).unwrap_err().to_string();
        assert!(e.contains("outptu"), "{e}");
        let e = Config::from_yaml("scanner:\n  min_severity: 11\n", Path::new("c.yaml")).unwrap_err().to_string();
        assert!(e.contains("min_severity"), "{e}");
    }
}
