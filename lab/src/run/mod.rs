//! Runs of a scenario: the typed stream of stage events every run emits
//! (live or replayed, the web renders the same stream), and the run folder
//! that keeps each run's artifacts.
//!
//! This is the contract between the parts of the lab: the live engine and
//! the replayer write it, reset reads what a run created from it, scoring
//! and the web read what a run saw from it.

pub mod event;
pub mod folder;
pub mod log;
pub mod timeline;

pub use event::{AskedStep, Mode, RunEvent, RunEventKind, StageResult, StreamName};
pub use folder::{Created, Manifest, RunFolder, RunId};
pub use log::RunLog;
