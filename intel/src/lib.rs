//! ioclab's MISP connector: MISP's data model (`model`), an embedded
//! MISP-compatible store persisted in SQLite (`store`) and served over HTTP
//! (`server`), and the export of IoCs to the agent (`export`).

#![warn(missing_docs)]

pub mod client;
pub mod connections;
pub mod diagnose;
pub mod export;
pub mod model;
pub mod server;
pub mod store;
pub mod warninglists;
