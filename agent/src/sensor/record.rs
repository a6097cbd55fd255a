//! Kernel records decoded into owned Rust values: the hand-off between the
//! ring-buffer reader and the processor.

use crate::bpf::abi;
use crate::enrich::filemeta::FileKey;

/// One record from the kernel, or a note from the reader.
#[derive(Debug)]
pub enum Record {
    /// A process replaced its image.
    Exec(Box<Exec>),
    /// A new process.
    Clone {
        /// task = the child, parent = the caller.
        hdr: abi::Header,
        /// Clone flags.
        flags: u64,
    },
    /// A thread or process ended.
    Exit {
        /// The task that exited.
        hdr: abi::Header,
        /// task->exit_code.
        exit_code: i32,
        /// The last thread of its process.
        group_dead: bool,
    },
    /// The kernel side dropped records since the previous note.
    Lost {
        /// Records read since the previous note.
        read: u64,
        /// Records dropped since then.
        lost: u64,
        /// Records read per second over that time.
        eps: f64,
    },
    /// A record the reader could not decode.
    Malformed {
        /// What was wrong.
        reason: String,
    },
}

impl Record {
    /// Whether this record came from the kernel (counts toward `read`).
    pub fn is_kernel_record(&self) -> bool {
        matches!(self, Record::Exec(_) | Record::Clone { .. } | Record::Exit { .. })
    }
}

/// A decoded `struct ioclab_exec`.
#[derive(Debug)]
pub struct Exec {
    /// Header.
    pub hdr: abi::Header,
    /// Identity of the binary that runs (the interpreter, for scripts).
    pub exe_key: FileKey,
    /// Its resolved path.
    pub exe_path: String,
    /// The path resolution hit a limit.
    pub exe_truncated: bool,
    /// Arguments, NUL-separated.
    pub argv: Vec<u8>,
    /// The name given to execve.
    pub filename: String,
    /// Ran through an interpreter.
    pub is_script: bool,
    /// Working directory, for scripts named by a relative path.
    pub cwd: Option<String>,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Record {
    let Some(hdr) = abi::read::<abi::Header>(bytes) else {
        return Record::Malformed { reason: format!("record of {} bytes is shorter than its header", bytes.len()) };
    };
    let short =
        |what: &str| Record::Malformed { reason: format!("{what} record of {} bytes is too short", bytes.len()) };
    match hdr.kind {
        abi::KIND_EXEC => {
            let copy;
            let e = match abi::view::<abi::Exec>(bytes) {
                Some(e) => e,
                None => match abi::read::<abi::Exec>(bytes) {
                    Some(e) => {
                        copy = e;
                        &copy
                    }
                    None => return short("exec"),
                },
            };
            let argv_len = (e.argv_len as usize).min(abi::ARGV_LEN);
            let filename_len = (e.filename_len as usize).min(abi::PATH_LEN);
            let cwd = e.cwd.len;
            Record::Exec(Box::new(Exec {
                hdr: e.hdr,
                exe_key: FileKey {
                    dev: e.exe.dev,
                    ino: e.exe.ino,
                    size: e.exe.size,
                    mtime_sec: e.exe.mtime_sec,
                    mtime_nsec: e.exe.mtime_nsec,
                },
                exe_path: lossy(e.exe.path.bytes()),
                exe_truncated: e.exe.path.truncated != 0,
                argv: e.argv[..argv_len].to_vec(),
                filename: lossy(&e.filename[..filename_len]),
                is_script: e.is_script != 0,
                cwd: (cwd > 0).then(|| lossy(e.cwd.bytes())),
            }))
        }
        abi::KIND_CLONE => match abi::read::<abi::Clone>(bytes) {
            Some(c) => Record::Clone { hdr: c.hdr, flags: c.flags },
            None => short("clone"),
        },
        abi::KIND_EXIT => match abi::read::<abi::Exit>(bytes) {
            Some(x) => Record::Exit { hdr: x.hdr, exit_code: x.exit_code, group_dead: x.group_dead != 0 },
            None => short("exit"),
        },
        other => Record::Malformed { reason: format!("unknown record kind {other}") },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_never_panics() {
        assert!(matches!(decode(&[]), Record::Malformed { .. }));
        let mut b = vec![0xffu8; std::mem::size_of::<abi::Exec>()];
        b[..4].copy_from_slice(&abi::KIND_EXEC.to_ne_bytes());
        // every length field is 0xff...: must be clamped, not trusted
        assert!(matches!(decode(&b), Record::Exec(_)));
        b[..4].copy_from_slice(&77u32.to_ne_bytes());
        assert!(matches!(decode(&b), Record::Malformed { .. }));
        let hdr_only = vec![0u8; std::mem::size_of::<abi::Header>()];
        let mut c = hdr_only.clone();
        c[..4].copy_from_slice(&abi::KIND_CLONE.to_ne_bytes());
        assert!(matches!(decode(&c), Record::Malformed { .. }));
    }
}
