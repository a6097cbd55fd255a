//! ioclab's endpoint agent: an eBPF sensor that writes Kunai-compatible JSON
//! events and matches them against IoCs in Kunai's IoC file format.
//!
//! Data flows one way: `bpf` (kernel programs and their loader) →
//! `sensor` (ring-buffer reader, then enrichment from `enrich`) → IoC `ioc`
//! matching → output. `replay` runs the same matcher over recorded logs.

#![warn(missing_docs)]

pub mod bpf;
pub mod config;
pub mod enrich;
pub mod events;
pub mod hashes;
pub mod ioc;
pub mod net;
pub mod remote;
pub mod replay;
pub mod sensor;
