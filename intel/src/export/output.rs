//! Where an export writes: standard output (`-`, `/dev/stdout`: written in
//! place), or a regular file, replaced atomically with its owner and mode
//! kept. Anything else (symbolic link, FIFO, device, directory, socket) is
//! refused: replacing it would destroy what it is, and root following a link
//! planted in a shared directory would write where another user chose.
//!
//! The temporary file is created exclusively (`O_EXCL`) under a random name
//! in the target's directory, so nothing planted there can redirect it; the
//! rename replaces whatever is at the path without following it, and the file
//! and the directory are synced before the export reports success.

use std::fs::{File, Metadata, OpenOptions, Permissions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// An export's destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The process's standard output, written in place.
    Stdout,
    /// A regular file (existing or not) at this path, replaced atomically.
    File(PathBuf),
}

/// Names that mean "this process's standard output": written in place, never replaced.
const STDOUT_NAMES: &[&str] = &["-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"];

impl Target {
    /// The target an `-o` option names (None: standard output).
    pub fn new(path: Option<&Path>) -> Self {
        match path {
            None => Target::Stdout,
            Some(p) if STDOUT_NAMES.iter().any(|n| p == Path::new(n)) => Target::Stdout,
            Some(p) => Target::File(p.to_path_buf()),
        }
    }
}

/// An output that cannot be used or written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// Reading, writing, syncing or renaming failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The target exists and is not a regular file.
    #[error("{path} is {what}, not a regular file: refusing to replace it; {hint}")]
    NotRegular {
        /// The target.
        path: PathBuf,
        /// What it is.
        what: &'static str,
        /// What to do instead.
        hint: &'static str,
    },
    /// The new file cannot be given the owner of the one it replaces.
    #[error(
        "{path}: cannot keep its owner {uid}:{gid} on the new file ({source}); run the export as that user or as root"
    )]
    Owner {
        /// The target.
        path: PathBuf,
        /// Its owner.
        uid: u32,
        /// Its group.
        gid: u32,
        /// Why.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OutputError + '_ {
    move |source| OutputError::Io { path: path.into(), source }
}

/// Refuses anything but a regular file, naming what it is.
fn check_regular(path: &Path, meta: &Metadata) -> Result<(), OutputError> {
    let t = meta.file_type();
    let (what, hint) = if t.is_file() {
        return Ok(());
    } else if t.is_symlink() {
        ("a symbolic link", "give the path of the file it points to, if that is the one meant")
    } else if t.is_fifo() {
        ("a FIFO", "write to standard output (-o - or no -o) and redirect it")
    } else if t.is_char_device() || t.is_block_device() {
        ("a device", "write to standard output (-o - or no -o) and redirect it")
    } else if t.is_dir() {
        ("a directory", "name a file in it")
    } else {
        ("a socket or other special file", "name a regular file")
    };
    Err(OutputError::NotRegular { path: path.into(), what, hint })
}

/// The regular file now at a target.
#[derive(Debug)]
pub struct Current {
    /// Its content (empty unless asked for).
    pub text: String,
    /// Its owner and mode, kept on the file that replaces it.
    pub meta: Metadata,
}

/// The regular file at `path`, read (`read`) or not, or None when there is
/// none; an error for anything else. Opened without following a link and
/// without blocking on a FIFO, and checked again once open (it could have been
/// swapped since the first look).
pub fn current(path: &Path, read: bool) -> Result<Option<Current>, OutputError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    check_regular(path, &meta)?;
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            // swapped for a link since the first look
            Some(libc::ELOOP) => OutputError::NotRegular {
                path: path.into(),
                what: "a symbolic link",
                hint: "give the path of the file it points to, if that is the one meant",
            },
            _ => io(path)(e),
        })?;
    let meta = f.metadata().map_err(io(path))?;
    check_regular(path, &meta)?;
    let mut text = String::new();
    if read {
        f.read_to_string(&mut text).map_err(io(path))?;
    }
    Ok(Some(Current { text, meta }))
}

/// Replaces the file at `path` with what `write` writes: a reader (the agent
/// reloading) sees the old file or the new one, never half of one. The new
/// file gets the owner and mode of `existing` (the file it replaces), or
/// 0644 less the umask.
pub fn replace(
    path: &Path,
    existing: Option<&Metadata>,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), OutputError> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let Some(name) = path.file_name() else {
        return Err(OutputError::NotRegular { path: path.into(), what: "a directory", hint: "name a file in it" });
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".tmp")
        .permissions(Permissions::from_mode(0o644))
        .tempfile_in(dir)
        .map_err(io(dir))?;
    if let Some(m) = existing {
        let mine = tmp.as_file().metadata().map_err(io(tmp.path()))?;
        if (mine.uid(), mine.gid()) != (m.uid(), m.gid()) {
            std::os::unix::fs::fchown(tmp.as_file(), Some(m.uid()), Some(m.gid()))
                .map_err(|source| OutputError::Owner { path: path.into(), uid: m.uid(), gid: m.gid(), source })?;
        }
        // after the owner: chown clears the set-id bits
        tmp.as_file().set_permissions(Permissions::from_mode(m.mode() & 0o7777)).map_err(io(tmp.path()))?;
    }
    {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
        write(&mut out).and_then(|_| out.flush()).map_err(io(path))?;
    }
    tmp.as_file().sync_all().map_err(io(path))?;
    // what is at the path now is replaced, never followed; still, refuse
    // rather than replace something that became special meanwhile
    match std::fs::symlink_metadata(path) {
        Ok(m) => check_regular(path, &m)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(path)(e)),
    }
    tmp.persist(path).map_err(|e| io(path)(e.error))?;
    // the rename is durable once the directory is
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;

    fn write_text(path: &Path, text: &'static str) -> Result<(), OutputError> {
        let existing = current(path, false)?;
        replace(path, existing.as_ref().map(|c| &c.meta), |w| w.write_all(text.as_bytes()))
    }

    fn in_ci() -> bool {
        std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
    }

    #[test]
    fn replaces_the_whole_file_or_nothing() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("iocs.json");
        write_text(&p, "one\n").unwrap();
        write_text(&p, "two\n").unwrap();
        let failed = replace(&p, None, |w| {
            w.write_all(b"half")?;
            Err(std::io::Error::other("the export failed half way"))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two\n");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1, "no temporary file left");
    }

    #[test]
    fn stdout_names_are_written_in_place() {
        for n in ["-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"] {
            assert_eq!(Target::new(Some(Path::new(n))), Target::Stdout, "{n}");
        }
        assert_eq!(Target::new(None), Target::Stdout);
        assert_eq!(Target::new(Some(Path::new("iocs.json"))), Target::File("iocs.json".into()));
    }

    #[test]
    fn a_symlink_target_is_refused_and_left_as_it_is() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, "secret\n").unwrap();
        let link = d.path().join("iocs.json");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let err = current(&link, true).unwrap_err().to_string();
        assert!(err.contains("symbolic link") && err.contains("iocs.json"), "{err}");
        let err = replace(&link, None, |w| w.write_all(b"x")).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link is still a link");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "secret\n");
    }

    #[test]
    fn a_fifo_or_a_directory_is_refused_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("iocs.fifo");
        let c = CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let err = current(&fifo, true).unwrap_err().to_string();
        assert!(err.contains("a FIFO"), "{err}");
        assert!(write_text(&fifo, "x").is_err());
        assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
        let err = write_text(d.path(), "x").unwrap_err().to_string();
        assert!(err.contains("a directory"), "{err}");
    }

    #[test]
    fn a_device_node_is_refused_and_kept() {
        // SAFETY: no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(!in_ci(), "CI=true but not root: cannot make a device node");
            eprintln!("SKIPPED (not in CI): mknod needs root");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let dev = d.path().join("full");
        let c = CString::new(dev.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid path; the node is /dev/full's (1, 7) in a private directory.
        assert_eq!(unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 7)) }, 0);
        let err = write_text(&dev, "x").unwrap_err().to_string();
        assert!(err.contains("a device"), "{err}");
        let m = std::fs::symlink_metadata(&dev).unwrap();
        assert!(m.file_type().is_char_device() && m.rdev() == libc::makedev(1, 7), "still the device node");
    }

    #[test]
    fn a_planted_symlink_cannot_redirect_the_temporary_file() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, "theirs\n").unwrap();
        let p = d.path().join("iocs.json");
        // links at the names a temporary file used to get, and at plausible others
        let pid = std::process::id();
        for name in [format!(".iocs.json.tmp-{pid}"), ".iocs.json.tmp".into(), "iocs.json.tmp".into()] {
            std::os::unix::fs::symlink(&victim, d.path().join(name)).unwrap();
        }
        write_text(&p, "ours\n").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "theirs\n", "the victim is untouched");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "ours\n");
        assert!(std::fs::symlink_metadata(&p).unwrap().file_type().is_file());
    }

    #[test]
    fn owner_and_mode_are_kept() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("iocs.json");
        std::fs::write(&p, "old\n").unwrap();
        std::fs::set_permissions(&p, Permissions::from_mode(0o640)).unwrap();
        // SAFETY: no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        if root {
            std::os::unix::fs::chown(&p, Some(4242), Some(4343)).unwrap();
        }
        write_text(&p, "new\n").unwrap();
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new\n");
        assert_eq!(m.mode() & 0o7777, 0o640, "mode kept");
        if root {
            assert_eq!((m.uid(), m.gid()), (4242, 4343), "owner kept");
        } else {
            assert!(!in_ci(), "CI=true but not root: cannot test the owner");
            eprintln!("SKIPPED (not in CI): keeping another owner needs root");
        }
        // a new file: 0644 less the umask, never wider
        let fresh = d.path().join("fresh.json");
        write_text(&fresh, "x\n").unwrap();
        assert_eq!(std::fs::metadata(&fresh).unwrap().mode() & 0o133, 0, "not executable nor group/world writable");
    }
}
