//! ioclab's embedded detonation sandbox: runs a Linux sample (ELF or script)
//! isolated on the appliance's own kernel, watched by the ioclab eBPF sensor,
//! and describes what it did as a Cuckoo 2.0-shaped report served over
//! Cuckoo's REST API.
//!
//! Data flows one way: a [`Job`] goes to a [`Detonator`] (isolation, fake
//! internet, sensor subscription), which returns a [`Detonation`] (raw
//! facts: events, network log, dropped files); the report builder turns that
//! into a Cuckoo report; the API queues jobs and serves the reports.

#![warn(missing_docs)]

pub mod api;
pub mod client;
pub mod detonation;
pub mod dropped;
pub mod fakenet;
pub mod isolate;
pub mod misp;
pub mod report;
pub mod runner;
pub mod sample;
pub mod signatures;

pub use detonation::{DetonateError, Detonation, Detonator, Job};
pub use report::Report;
