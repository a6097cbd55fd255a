//! Dropped files: every regular file left in the task's private folders
//! (the sample itself excepted, unless it changed), hashed whole and kept
//! under `files/` in the task folder, cut at a size cap.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::detonation::DroppedFile;
use crate::isolate::fs::{Staging, PRIVATE_DIRS};
use crate::sample;
use ioclab_agent::hashes::Sha256;

/// Limits on what is kept.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// Bytes kept of one file.
    pub bytes: u64,
    /// Files kept.
    pub files: usize,
}

/// Events that name a file the task wrote.
const WRITE_EVENTS: &[&str] = &["file_create", "write", "write_close", "file_rename"];

/// Files below `dir`, depth first, without following symlinks.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            walk(&e.path(), out);
        } else if t.is_file() {
            out.push(e.path());
        }
    }
}

/// Pids of the processes whose events name `guest` as written.
fn writers(events: &[String], guest: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for line in events.iter().filter(|l| l.contains(guest)) {
        let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
        let name = v["info"]["event"]["name"].as_str().unwrap_or("");
        let path = v["data"]["path"].as_str().or_else(|| v["data"]["new"]["path"].as_str());
        if WRITE_EVENTS.contains(&name) && path == Some(guest) {
            if let Some(p) = v["info"]["task"]["tgid"].as_u64() {
                if !pids.contains(&(p as u32)) {
                    pids.push(p as u32);
                }
            }
        }
    }
    pids
}

/// Collects the dropped files into `task_dir/files/`.
pub fn collect(
    staging: &Staging,
    task_dir: &Path,
    sample: Option<Sha256>,
    events: &[String],
    caps: Caps,
    errors: &mut Vec<String>,
) -> Vec<DroppedFile> {
    let mut files = Vec::new();
    for (_, sub, _) in PRIVATE_DIRS {
        walk(&staging.rw(sub), &mut files);
    }
    let store = task_dir.join("files");
    let mut out = Vec::new();
    for host in files {
        let Some(guest) = staging.guest_path(&host) else { continue };
        let facts = match sample::facts(&host) {
            Ok(f) => f,
            Err(e) => {
                errors.push(format!("dropped file {guest}: {e}"));
                continue;
            }
        };
        if Some(facts.sha256) == sample {
            continue; // the sample as submitted
        }
        if out.len() >= caps.files {
            errors.push(format!("more than {} dropped files: {guest} and later ones not kept", caps.files));
            break;
        }
        let stored = PathBuf::from("files").join(facts.sha256.to_string());
        let copied = std::fs::create_dir_all(&store).and_then(|_| {
            let src = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(&host)?;
            let mut dst = std::fs::File::create(task_dir.join(&stored))?;
            std::io::copy(&mut src.take(caps.bytes), &mut dst)
        });
        if let Err(e) = copied {
            errors.push(format!("dropped file {guest}: keeping a copy: {e}"));
            continue;
        }
        let truncated = facts.size > caps.bytes;
        if truncated {
            errors.push(format!("dropped file {guest}: {} bytes, only the first {} kept", facts.size, caps.bytes));
        }
        out.push(DroppedFile { pids: writers(events, &guest), guest_path: guest, stored, facts, truncated });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers_come_from_write_events_of_that_path() {
        let ev = |name: &str, path: &str, pid: u32| {
            format!(r#"{{"data":{{"path":"{path}"}},"info":{{"event":{{"name":"{name}"}},"task":{{"tgid":{pid}}}}}}}"#)
        };
        let events = vec![
            ev("write_close", "/tmp/x", 10),
            ev("read", "/tmp/x", 11),
            ev("file_create", "/tmp/x", 12),
            ev("write_close", "/tmp/xy", 13),
            ev("write_close", "/tmp/x", 10),
        ];
        assert_eq!(writers(&events, "/tmp/x"), vec![10, 12]);
    }
}
