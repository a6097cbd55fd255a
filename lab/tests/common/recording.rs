//! Recording fixtures for the replay, record and scoring tests (the lab
//! crate's and `ioclab lab replay`'s, tests/lab_replay.rs).

#![allow(dead_code)] // each test file uses its own part

use std::path::Path;

/// The hand-made run folder of malicious-script-dropper, relative to the workspace.
pub const FIXTURE: &str = "lab/tests/fixtures/recording-dropper";

/// Copies folder `from` into `to` (created), recursively.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}
