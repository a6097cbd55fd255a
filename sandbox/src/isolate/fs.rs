//! The task's file system: a size-capped tmpfs on the host holds the
//! private writable folders (/tmp, /var/tmp, /dev/shm, /home, /root), the
//! sandbox's resolv.conf and the sample's output, so they can be read after
//! the task's mount namespace is gone; the mount plan builds the root the
//! sample sees: host system folders read-only (their secrets masked), those
//! private folders and a private /var, a minimal /dev, an empty /run and
//! (mounted inside the pid namespace) a fresh /proc. The host's /var is not
//! shown: it holds services' sockets and state; a private one catches the
//! sample's writes there (cron spools...) as dropped files.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::detonation::DetonateError;

/// Host folders the sample sees read-only (those the host has).
pub const SYSTEM_DIRS: &[&str] = &["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "opt"];

/// Host files hidden (an empty file bound over them): secrets a sample run as root could read.
pub const MASKED: &[&str] = &["/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-", "/etc/ssh"];

/// Private writable folders: (path in the sandbox, folder in the staging tmpfs, mode).
pub const PRIVATE_DIRS: &[(&str, &str, u32)] = &[
    ("/tmp", "tmp", 0o1777),
    ("/var", "var", 0o755),
    ("/var/tmp", "var_tmp", 0o1777),
    ("/dev/shm", "shm", 0o1777),
    ("/home", "home", 0o755),
    ("/root", "root_home", 0o700),
];

/// Device nodes bound from the host into the sandbox's /dev.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DetonateError {
    let what = what.into();
    move |source| DetonateError::Io { what, source }
}

pub(crate) fn cstr(p: impl AsRef<Path>) -> CString {
    // paths built here never hold NUL; a host path with one cannot be opened anyway
    CString::new(p.as_ref().as_os_str().as_bytes()).unwrap_or_default()
}

/// The host side of one task's file system: a tmpfs mounted at
/// `<state dir>/task-<server pid>-<task id>-<n>`; dropping it unmounts and removes it.
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
}

impl Staging {
    /// Mounts the staging tmpfs (`size_bytes` at most) and lays out the private folders.
    pub fn create(state_dir: &Path, task_id: u64, size_bytes: u64, uid: u32, gid: u32) -> Result<Self, DetonateError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let name = format!("task-{}-{task_id}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        let dir = state_dir.join(name);
        fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let staging = Staging { dir };
        let opts = cstr(format!("size={size_bytes},mode=0755"));
        let target = cstr(&staging.dir);
        // SAFETY: valid NUL-terminated strings.
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                opts.as_ptr().cast(),
            )
        };
        if rc != 0 {
            return Err(DetonateError::Io {
                what: format!("mounting the task's tmpfs on {}", staging.dir.display()),
                source: std::io::Error::last_os_error(),
            });
        }
        for (_, sub, mode) in PRIVATE_DIRS {
            let p = staging.rw(sub);
            fs::create_dir_all(&p).map_err(io(format!("creating {}", p.display())))?;
            fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).map_err(io(format!("chmod {}", p.display())))?;
        }
        // the private /var: mount point of /var/tmp, and where cron and logs expect folders
        for d in ["tmp", "spool/cron/crontabs", "log", "lib", "cache"] {
            let p = staging.rw("var").join(d);
            fs::create_dir_all(&p).map_err(io(format!("creating {}", p.display())))?;
        }
        let run = staging.rw("var").join("run");
        std::os::unix::fs::symlink("/run", &run).map_err(io(format!("creating {}", run.display())))?;
        let home = staging.rw("home").join("sandbox");
        fs::create_dir(&home).map_err(io(format!("creating {}", home.display())))?;
        chown(&home, Some(uid), Some(gid)).map_err(io(format!("chown {}", home.display())))?;
        fs::create_dir(staging.root()).map_err(io("creating the sandbox root's mount point"))?;
        fs::write(staging.masked(), "").map_err(io("creating the mask file"))?;
        Ok(staging)
    }

    /// Its folder on the host.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A private folder's host side (`sub` from [`PRIVATE_DIRS`]).
    pub fn rw(&self, sub: &str) -> PathBuf {
        self.dir.join("rw").join(sub)
    }

    /// Mount point of the sandbox's root (mounted in the task's mount namespace only).
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// The sandbox's /etc/resolv.conf, host side.
    pub fn resolv_conf(&self) -> PathBuf {
        self.dir.join("resolv.conf")
    }

    /// An empty file bound over masked host files.
    pub fn masked(&self) -> PathBuf {
        self.dir.join("masked")
    }

    /// Where the sample's stdout and stderr go.
    pub fn output(&self) -> PathBuf {
        self.dir.join("output.log")
    }

    /// Maps a host path inside a private folder to the path the sample saw.
    pub fn guest_path(&self, host: &Path) -> Option<String> {
        PRIVATE_DIRS.iter().find_map(|(guest, sub, _)| {
            let rel = host.strip_prefix(self.rw(sub)).ok()?;
            Some(if rel.as_os_str().is_empty() { guest.to_string() } else { format!("{guest}/{}", rel.display()) })
        })
    }
}

fn unmount_and_remove(dir: &Path) -> std::io::Result<()> {
    let c = cstr(dir);
    // SAFETY: valid path; MNT_DETACH cannot fail for a busy mount.
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    fs::remove_dir_all(dir)
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Err(e) = unmount_and_remove(&self.dir) {
            tracing::error!("cannot remove the task folder {}: {e}", self.dir.display());
        }
    }
}

/// Unmounts and removes the staging folders of servers that are gone.
pub fn sweep(state_dir: &Path) -> Vec<String> {
    let mut removed = Vec::new();
    let Ok(entries) = fs::read_dir(state_dir) else { return removed };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("task-") && !super::cgroup::owner_alive(&name) && unmount_and_remove(&e.path()).is_ok() {
            removed.push(name);
        }
    }
    removed
}

/// One step of building the sandbox's root, run by the namespace's first
/// process (everything is prepared here, before fork).
#[derive(Debug)]
pub enum Op {
    /// mount(2).
    Mount {
        /// Source (a path for binds, the fs name otherwise).
        src: Option<CString>,
        /// Mount point.
        target: CString,
        /// File system type.
        fstype: Option<CString>,
        /// MS_* flags.
        flags: libc::c_ulong,
        /// Options.
        data: Option<CString>,
    },
    /// mkdir(2).
    Mkdir(CString, libc::mode_t),
    /// symlink(2): (target, link).
    Symlink(CString, CString),
    /// An empty file to bind a device onto.
    Touch(CString),
}

fn bind(src: &Path, target: &Path, read_only: bool, flags: libc::c_ulong) -> [Op; 2] {
    let ro = if read_only { libc::MS_RDONLY } else { 0 };
    [
        Op::Mount { src: Some(cstr(src)), target: cstr(target), fstype: None, flags: libc::MS_BIND, data: None },
        // a bind takes its flags at a remount
        Op::Mount {
            src: None,
            target: cstr(target),
            fstype: None,
            flags: libc::MS_BIND | libc::MS_REMOUNT | ro | flags,
            data: None,
        },
    ]
}

fn tmpfs(target: &Path, opts: &str) -> Op {
    Op::Mount {
        src: Some(c"tmpfs".into()),
        target: cstr(target),
        fstype: Some(c"tmpfs".into()),
        flags: libc::MS_NOSUID | libc::MS_NODEV,
        data: Some(cstr(opts)),
    }
}

/// The steps that build the sandbox root at `staging.root()`, in order.
pub fn plan(staging: &Staging) -> Vec<Op> {
    let root = staging.root();
    let mut ops = vec![tmpfs(&root, "size=1m,mode=0755")];
    for d in SYSTEM_DIRS {
        let host = Path::new("/").join(d);
        let Ok(meta) = fs::symlink_metadata(&host) else { continue };
        if meta.file_type().is_symlink() {
            // merged /usr: /bin -> usr/bin
            if let Ok(t) = fs::read_link(&host) {
                ops.push(Op::Symlink(cstr(t), cstr(root.join(d))));
            }
        } else if meta.is_dir() {
            ops.push(Op::Mkdir(cstr(root.join(d)), 0o755));
            ops.extend(bind(&host, &root.join(d), true, libc::MS_NOSUID | libc::MS_NODEV));
        }
    }
    for dir in ["dev", "proc", "run"] {
        ops.push(Op::Mkdir(cstr(root.join(dir)), 0o755));
    }
    ops.push(tmpfs(&root.join("run"), "size=1m,mode=0755"));
    ops.push(tmpfs(&root.join("dev"), "size=64k,mode=0755"));
    for dev in DEVICES {
        let target = root.join("dev").join(dev);
        ops.push(Op::Touch(cstr(&target)));
        ops.extend(bind(&Path::new("/dev").join(dev), &target, false, libc::MS_NOSUID | libc::MS_NOEXEC));
    }
    for (link, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        ops.push(Op::Symlink(cstr(to), cstr(root.join("dev").join(link))));
    }
    for (guest, sub, _) in PRIVATE_DIRS {
        let target = root.join(guest.trim_start_matches('/'));
        if !guest.starts_with("/var/") {
            // /var/tmp: the private /var has it
            ops.push(Op::Mkdir(cstr(&target), 0o755));
        }
        ops.extend(bind(&staging.rw(sub), &target, false, libc::MS_NOSUID | libc::MS_NODEV));
    }
    for m in MASKED {
        let target = root.join(m.trim_start_matches('/'));
        match fs::symlink_metadata(m) {
            Ok(meta) if meta.is_dir() => ops.push(tmpfs(&target, "size=4k,mode=0755")),
            Ok(meta) if meta.is_file() => {
                ops.extend(bind(&staging.masked(), &target, true, libc::MS_NOSUID | libc::MS_NODEV))
            }
            _ => {}
        }
    }
    // the host's /etc is bound read-only: the resolver's address is bound over its resolv.conf
    ops.extend(bind(&staging.resolv_conf(), &root.join("etc/resolv.conf"), true, libc::MS_NOSUID | libc::MS_NODEV));
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_paths_map_back() {
        let s = Staging { dir: PathBuf::from("/nonexistent/ioclab-test") };
        assert_eq!(s.guest_path(&s.rw("tmp").join("a/b")), Some("/tmp/a/b".into()));
        assert_eq!(s.guest_path(&s.rw("var_tmp").join("x")), Some("/var/tmp/x".into()));
        assert_eq!(s.guest_path(Path::new("/etc/passwd")), None);
        std::mem::forget(s); // nothing mounted
    }
}
