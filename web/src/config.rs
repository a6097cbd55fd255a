//! `appliance.toml`: the one configuration file of `ioclab serve`. Every
//! key has a default; `ioclab serve config --dump` prints them all with
//! their documentation ([`ApplianceConfig::dump`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The appliance's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApplianceConfig {
    /// Where the web UI listens.
    pub listen: SocketAddr,
    /// Where the embedded MISP's REST API listens (PyMISP, misp-to-kunai, misp-modules).
    pub misp_listen: SocketAddr,
    /// Where the sandbox's Cuckoo 2.0 REST API listens.
    pub sandbox_listen: SocketAddr,
    /// Where remote endpoints' agents send their events (TLS, self-signed, pinned).
    pub endpoints_listen: SocketAddr,
    /// The lab's data directory (MISP store, sandbox, runs, web.db).
    pub data: PathBuf,
    /// The scenario catalogue's folder.
    pub scenarios: PathBuf,
    /// Minutes without a request after which a session ends.
    pub session_idle_minutes: i64,
    /// Failed logins allowed per account within `login_window_minutes`.
    pub login_failures_per_account: usize,
    /// Failed logins allowed per client address within `login_window_minutes`.
    pub login_failures_per_address: usize,
    /// The window of the login limits, in minutes.
    pub login_window_minutes: u64,
    /// Replay speed in replay mode (1: as recorded, 4: four times faster).
    pub replay_speed: f64,
    /// The largest sample the sandbox accepts (submit page and Cuckoo API), MiB.
    pub sandbox_max_upload_mib: u64,
    /// Endpoint events the pages keep in memory (summaries; live events whole); older ones are counted on /endpoint.
    pub endpoint_events_in_memory: usize,
}

impl Default for ApplianceConfig {
    fn default() -> ApplianceConfig {
        ApplianceConfig {
            listen: "127.0.0.1:8000".parse().expect("literal address"),
            misp_listen: "127.0.0.1:8001".parse().expect("literal address"),
            sandbox_listen: "127.0.0.1:8090".parse().expect("literal address"),
            endpoints_listen: "127.0.0.1:8443".parse().expect("literal address"),
            data: PathBuf::from(ioclab_lab::data_dir::DEFAULT_DATA_DIR),
            scenarios: PathBuf::from("lab-scenarios"),
            session_idle_minutes: 8 * 60,
            login_failures_per_account: 5,
            login_failures_per_address: 30,
            login_window_minutes: 10,
            replay_speed: 1.0,
            sandbox_max_upload_mib: 32,
            endpoint_events_in_memory: crate::feed::DEFAULT_MEMORY_EVENTS,
        }
    }
}

/// Why the configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// It could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not valid TOML for these keys.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where and why (line, column, key).
        message: String,
    },
    /// A value is out of range.
    #[error("{path}: {key}: {message}")]
    Value {
        /// The file.
        path: PathBuf,
        /// The key.
        key: &'static str,
        /// Why.
        message: String,
    },
}

/// The largest `sandbox_max_upload_mib` (uploads are held in memory while they are read).
const MAX_UPLOAD_MIB: u64 = 1024;

impl ApplianceConfig {
    /// `sandbox_max_upload_mib` in bytes.
    pub fn sandbox_max_upload_bytes(&self) -> u64 {
        self.sandbox_max_upload_mib << 20
    }
}

/// One key of the dump: its name, documentation and default (TOML).
const DOCS: &[(&str, &str)] = &[
    ("listen", "Where the web UI listens (loopback by default; 0.0.0.0:8000 for a VM whose browser is on the host)."),
    ("misp_listen", "Where the embedded MISP's REST API listens (PyMISP, misp-to-kunai, misp-modules use it)."),
    (
        "sandbox_listen",
        "Where the sandbox's Cuckoo 2.0 REST API listens (no path prefix: Cuckoo clients need the root).",
    ),
    (
        "endpoints_listen",
        "Where remote endpoints' agents send their events (TLS with a self-signed certificate they pin; 0.0.0.0:8443 for a class network).",
    ),
    (
        "data",
        "The lab's data directory: MISP store and keys, sandbox, agent IoC file, runs, web.db (accounts, sessions).",
    ),
    ("scenarios", "The scenario catalogue's folder."),
    ("session_idle_minutes", "Minutes without a request after which a session ends."),
    ("login_failures_per_account", "Failed logins allowed per account within login_window_minutes."),
    ("login_failures_per_address", "Failed logins allowed per client address within login_window_minutes."),
    ("login_window_minutes", "The window of the login limits, in minutes."),
    ("replay_speed", "Replay speed in replay mode (1: as recorded, 4: four times faster)."),
    (
        "sandbox_max_upload_mib",
        "The largest sample the sandbox accepts, MiB: the web's submit page (413 above it) and the Cuckoo API.",
    ),
    (
        "endpoint_events_in_memory",
        "Endpoint events the pages keep in memory (a summary each, a few hundred bytes; live events whole): the newest of each source; /endpoint counts the older ones, which stay in their run's events.jsonl.",
    ),
];

impl ApplianceConfig {
    /// Reads `path`; missing keys keep their defaults.
    pub fn read(path: &Path) -> Result<ApplianceConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        Self::parse(&text, path)
    }

    /// Parses `text` (read from `path`, for messages).
    pub fn parse(text: &str, path: &Path) -> Result<ApplianceConfig, ConfigError> {
        let c: ApplianceConfig =
            toml::from_str(text).map_err(|e| ConfigError::Parse { path: path.into(), message: e.to_string() })?;
        let bad = |key, message: &str| ConfigError::Value { path: path.into(), key, message: message.into() };
        if c.session_idle_minutes < 1 {
            return Err(bad("session_idle_minutes", "must be at least 1"));
        }
        if c.login_failures_per_account == 0 || c.login_failures_per_address == 0 {
            return Err(bad("login_failures_per_account", "login limits must be at least 1"));
        }
        if !(c.replay_speed.is_finite() && c.replay_speed > 0.0) {
            return Err(bad("replay_speed", "must be a number above 0"));
        }
        if !(1..=MAX_UPLOAD_MIB).contains(&c.sandbox_max_upload_mib) {
            return Err(bad("sandbox_max_upload_mib", &format!("must be from 1 to {MAX_UPLOAD_MIB}")));
        }
        if c.endpoint_events_in_memory == 0 {
            return Err(bad("endpoint_events_in_memory", "must be at least 1"));
        }
        Ok(c)
    }

    /// Every key with its documentation and its default, as a commented TOML file.
    pub fn dump() -> String {
        "# ioclab serve --config appliance.toml: every key, with its default.\n".to_string()
            + &ApplianceConfig::default().documented()
    }

    /// Every key with its documentation and this configuration's value (TOML,
    /// reads back as `self`): what `ioclab install` writes.
    pub fn documented(&self) -> String {
        let values = toml::Value::try_from(self).expect("the configuration serialises");
        let table = values.as_table().expect("a table");
        let mut out = String::new();
        for (key, doc) in DOCS {
            let value = table.get(*key).map(|v| v.to_string()).unwrap_or_default();
            out.push_str(&format!("\n# {doc}\n{key} = {value}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dump_documents_every_key_and_reads_back_as_the_defaults() {
        let dump = ApplianceConfig::dump();
        let keys = toml::Value::try_from(ApplianceConfig::default()).unwrap();
        for key in keys.as_table().unwrap().keys() {
            assert!(DOCS.iter().any(|(k, _)| k == key), "key {key} has no documentation");
        }
        assert_eq!(ApplianceConfig::parse(&dump, Path::new("dump")).unwrap(), ApplianceConfig::default());
    }

    #[test]
    fn a_documented_configuration_reads_back_as_itself() {
        let c = ApplianceConfig {
            listen: "0.0.0.0:8000".parse().unwrap(),
            data: "/srv/lab".into(),
            ..ApplianceConfig::default()
        };
        assert_eq!(ApplianceConfig::parse(&c.documented(), Path::new("x")).unwrap(), c);
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let e = ApplianceConfig::parse("listen = 5\n", Path::new("a.toml")).unwrap_err().to_string();
        assert!(e.starts_with("a.toml:") && e.contains("listen"), "{e}");
        let e = ApplianceConfig::parse("nope = 1\n", Path::new("a.toml")).unwrap_err().to_string();
        assert!(e.contains("nope"), "{e}");
        let e = ApplianceConfig::parse("replay_speed = 0.0\n", Path::new("a.toml")).unwrap_err().to_string();
        assert!(e.contains("replay_speed"), "{e}");
        let e = ApplianceConfig::parse("sandbox_max_upload_mib = 0\n", Path::new("a.toml")).unwrap_err().to_string();
        assert!(e.contains("sandbox_max_upload_mib"), "{e}");
        let c = ApplianceConfig::parse("sandbox_max_upload_mib = 2\n", Path::new("a.toml")).unwrap();
        assert_eq!(c.sandbox_max_upload_bytes(), 2 << 20);
        let e = ApplianceConfig::parse("endpoint_events_in_memory = 0\n", Path::new("a.toml")).unwrap_err().to_string();
        assert!(e.contains("endpoint_events_in_memory"), "{e}");
        let c = ApplianceConfig::parse("endpoint_events_in_memory = 5000\n", Path::new("a.toml")).unwrap();
        assert_eq!(c.endpoint_events_in_memory, 5000);
    }
}
