//! Userspace enrichment of kernel events: file metadata and hashes
//! (`filemeta`), and the process table that gives command lines, executables
//! and ancestors (`proctable`).

pub mod bpfprog;
pub mod filemeta;
pub mod hasher;
pub mod modinfo;
pub mod proctable;
pub mod resolved;
