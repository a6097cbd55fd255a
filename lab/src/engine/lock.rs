//! One lab per data directory: an exclusive `flock` on `<data>/lab.lock`,
//! held while the [`Lab`](super::Lab) lives (the kernel drops it when the
//! process dies, so a killed lab never leaves a stale lock).

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The lock file's name in the data directory.
pub const LOCK_FILE: &str = "lab.lock";

/// A held lock; released when dropped.
#[derive(Debug)]
pub struct DataLock {
    _file: File,
    path: PathBuf,
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another lab holds it.
    #[error(
        "the lab data directory {dir} is in use by another ioclab lab (pid {holder}); stop it, or give another --data"
    )]
    Taken {
        /// The data directory.
        dir: PathBuf,
        /// What the lock file says about its holder.
        holder: String,
    },
    /// The file could not be opened or locked.
    #[error("{path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl DataLock {
    /// Takes the lock of `dir` (created if missing), or says who holds it.
    pub fn take(dir: &Path) -> Result<DataLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| LockError::Io { path: path.clone(), source };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = File::options().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let holder = if holder.is_empty() { "unknown".to_string() } else { holder.to_string() };
                return Err(LockError::Taken { dir: dir.to_path_buf(), holder });
            }
            return Err(io(err));
        }
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .map_err(io)?;
        Ok(DataLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lab_on_the_same_data_is_refused_and_told_who_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let held = DataLock::take(dir.path()).unwrap();
        let err = DataLock::take(dir.path()).unwrap_err().to_string();
        assert!(err.contains("in use by another ioclab lab"), "{err}");
        assert!(err.contains(&format!("pid {}", std::process::id())), "{err}");
        drop(held);
        DataLock::take(dir.path()).expect("free again once dropped");
    }
}
