//! Sandbox ↔ MISP: the `sandbox.toml` settings of Cuckoo's two MISP modules
//! (`config`), reports turned into MISP events and sent once (`event`, `push`).

pub mod config;

pub use config::{ProcessingMisp, ReportingMisp, SandboxToml};
