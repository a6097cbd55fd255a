//! Sandbox ↔ MISP: the `sandbox.toml` settings of Cuckoo's two MISP modules
//! (`config`), reports turned into MISP events and sent once (`event`, `push`),
//! and MISP's knowledge looked up into reports (`lookup`).

pub mod config;
pub mod event;
pub mod lookup;
pub mod push;
pub mod safelist;
pub mod zip;

pub use config::{ProcessingMisp, ReportingMisp, SandboxToml};
