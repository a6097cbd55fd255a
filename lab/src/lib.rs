//! ioclab's lab engine: what a scenario is (`lab-scenarios/<id>/scenario.yaml`),
//! the lab network its endpoint steps run in (the sandbox's fake internet,
//! shared), and the runs that drive one IoC through every stage:
//! sample → sandbox report → MISP event → IoC export → endpoint agent → detection.
//!
//! It sits above the agent, intel and sandbox crates and below the web UI,
//! which only renders what this crate does.

#![warn(missing_docs)]

pub mod data_dir;
pub mod engine;
pub mod network;
pub mod record;
pub mod record_arg;
pub mod replay;
pub mod reset;
pub mod run;
pub mod scenario;
pub mod scoring;
