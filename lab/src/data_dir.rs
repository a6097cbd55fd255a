//! Where the lab keeps its state: one data directory holding the embedded
//! MISP store, the sandbox's task store, the agent's IoC file and the runs.
//! The engine writes there, reset undoes from there, `ioclab serve` (next)
//! uses the same layout.
//!
//! ```text
//! <data>/
//!   misp.db            the embedded MISP store (SQLite)
//!   misp-keys.json     the lab's MISP keys (sandbox: user, instructor: publisher), mode 0600
//!   sandbox/           the sandbox's storage (sandbox.db, analyses/<id>/, binaries/)
//!   agent/iocs.json    the IoC file the endpoint agent loads (and reloads)
//!   runs/<run-id>/     one folder per run (see crate::run::folder)
//! ```

use std::path::{Path, PathBuf};

/// The default data directory (the service's state, `/var/lib/ioclab`).
pub const DEFAULT_DATA_DIR: &str = "/var/lib/ioclab";

/// The lab's data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The data directory at `root` (not created).
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into() }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The embedded MISP store.
    pub fn misp_db(&self) -> PathBuf {
        self.root.join("misp.db")
    }

    /// The lab's MISP keys.
    pub fn misp_keys(&self) -> PathBuf {
        self.root.join("misp-keys.json")
    }

    /// The sandbox's storage folder (its `sandbox.db` inside).
    pub fn sandbox(&self) -> PathBuf {
        self.root.join("sandbox")
    }

    /// The sandbox's task database (`ioclab sandbox serve`'s default under its storage).
    pub fn sandbox_db(&self) -> PathBuf {
        self.sandbox().join("sandbox.db")
    }

    /// The IoC file the endpoint agent loads.
    pub fn agent_iocs(&self) -> PathBuf {
        self.root.join("agent").join("iocs.json")
    }

    /// The runs' folders.
    pub fn runs(&self) -> PathBuf {
        self.root.join("runs")
    }
}
