//! misp-to-kunai's `config.toml`: `[misp] name, url, key, ssl, enable` and
//! `[[misp-feeds]] name, url, enable`, plus ioclab's optional `ca_file`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// `[misp]`.
#[derive(Debug, Clone, Deserialize)]
pub struct MispConfig {
    /// Source name written in every IoC line (`source`).
    pub name: String,
    /// Base URL, e.g. `https://misp.lab.example`.
    pub url: String,
    /// API key.
    pub key: String,
    /// Verify TLS certificates (false for lab servers with self-signed ones).
    #[serde(default = "yes")]
    pub ssl: bool,
    /// Whether to pull from this MISP.
    #[serde(default = "yes")]
    pub enable: bool,
    /// A CA certificate (PEM) to trust besides the system's (ioclab extension).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The largest answer read from this MISP or its feeds, MiB (ioclab extension).
    #[serde(default = "default_answer_mib")]
    pub max_answer_mib: usize,
}

fn default_answer_mib() -> usize {
    crate::client::DEFAULT_ANSWER_LIMIT >> 20
}

impl MispConfig {
    /// A client for this MISP as configured (TLS, CA file, answer limit).
    pub fn client(&self) -> Result<crate::client::MispClient, crate::client::ClientError> {
        Ok(crate::client::MispClient::new(&self.url, &self.key, self.ssl, self.ca_file.as_deref())?
            .with_answer_limit(self.max_answer_mib.saturating_mul(1 << 20)))
    }
}

/// `[[misp-feeds]]`: a MISP feed (manifest.json and one JSON file per event).
#[derive(Debug, Clone, Deserialize)]
pub struct FeedConfig {
    /// Source name written in its IoC lines.
    pub name: String,
    /// Base URL of the feed.
    pub url: String,
    /// Whether to pull it.
    #[serde(default = "yes")]
    pub enable: bool,
}

fn yes() -> bool {
    true
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
pub struct ExportConfig {
    /// The MISP instance.
    pub misp: MispConfig,
    /// Feeds.
    #[serde(rename = "misp-feeds", default)]
    pub feeds: Vec<FeedConfig>,
}

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Unreadable.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not the expected TOML (the message has the line and column).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What and where.
        message: String,
    },
}

impl ExportConfig {
    /// Reads and checks a config file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        Self::from_toml(&text).map_err(|message| ConfigError::Parse { path: path.into(), message })
    }

    /// Parses the TOML text.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let c: ExportConfig = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
        if c.misp.enable && !(c.misp.url.starts_with("http://") || c.misp.url.starts_with("https://")) {
            return Err(format!("[misp] url {:?} must start with http:// or https://", c.misp.url));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn misp_to_kunai_config() {
        let c = ExportConfig::from_toml(
            "[misp]\nname = \"lab\"\nurl = \"https://misp.lab\"\nkey = \"k\"\nssl = false\nenable = true\n\n\
             [[misp-feeds]]\nname = \"circl\"\nurl = \"http://127.0.0.1:9/feed\"\nenable = false\n",
        )
        .unwrap();
        assert_eq!(c.misp.name, "lab");
        assert!(!c.misp.ssl);
        assert_eq!(c.feeds.len(), 1);
        assert!(!c.feeds[0].enable);
        let e = ExportConfig::from_toml("[misp]\nname = \"x\"\nurl = 5\n").unwrap_err();
        assert!(e.contains("line"), "{e}");
        assert!(ExportConfig::from_toml("[misp]\nname=\"x\"\nurl=\"ftp://x\"\nkey=\"k\"\n").is_err());
    }

    proptest! {
        #[test]
        fn any_text_is_an_error_or_a_config(t in "\\PC{0,200}") {
            let _ = ExportConfig::from_toml(&t);
        }
    }
}
