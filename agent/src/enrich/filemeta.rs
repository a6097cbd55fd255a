//! File metadata and hashes (`md5`, `sha1`, `sha256`, `sha512`, `magic`),
//! cached by file identity so a binary run a thousand times is read once.
//!
//! A hash is only ever that of the file the kernel saw: a file is read only
//! after its opened descriptor shows the identity the kernel recorded (a
//! regular file, same device, inode, size, mtime and ctime), and it is
//! checked again once read. Names are opened as `O_PATH` first, so a FIFO, a
//! tty or a device swapped in is never opened for reading, and reads stop at
//! the size `fstat` gave.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::num::NonZeroUsize;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use lru::LruCache;
use md5::Digest as _;

use crate::bpf::abi;
use crate::events::{FileMeta, FileRef, Text};
use crate::hashes::{Md5, Sha1, Sha256, Sha512};

/// What identifies a file's content without reading it: if none of these
/// changed, the hashes have not either. ctime is what tells a file rewritten
/// in place with its size and mtime restored (`touch -r`): no system call
/// sets it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FileKey {
    /// Device, in the kernel's encoding (major << 20 | minor).
    pub dev: u32,
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: i64,
    /// Modification time, seconds.
    pub mtime_sec: i64,
    /// Modification time, nanoseconds.
    pub mtime_nsec: u32,
    /// Change time (inode or content), seconds.
    pub ctime_sec: i64,
    /// Change time, nanoseconds.
    pub ctime_nsec: u32,
}

impl FileKey {
    /// The key of an open file's metadata.
    pub fn from_metadata(m: &std::fs::Metadata) -> Self {
        let dev = m.dev();
        // userspace dev_t → the kernel's internal encoding used by the eBPF side
        let (major, minor) = (libc::major(dev), libc::minor(dev));
        FileKey {
            dev: (major << 20) | (minor & 0xfffff),
            ino: m.ino(),
            size: m.size() as i64,
            mtime_sec: m.mtime(),
            mtime_nsec: m.mtime_nsec() as u32,
            ctime_sec: m.ctime(),
            ctime_nsec: m.ctime_nsec() as u32,
        }
    }

    /// The key the kernel recorded for a file it executed, mapped or loaded.
    pub fn of_kernel(f: &abi::File) -> Self {
        FileKey {
            dev: f.dev,
            ino: f.ino,
            size: f.size,
            mtime_sec: f.mtime_sec,
            mtime_nsec: f.mtime_nsec,
            ctime_sec: f.ctime_sec,
            ctime_nsec: f.ctime_nsec,
        }
    }

    /// Why an opened file is not the one this key names, if it is not.
    pub fn mismatch(&self, m: &std::fs::Metadata) -> Option<String> {
        if !m.file_type().is_file() {
            return Some("not a regular file".into());
        }
        let k = FileKey::from_metadata(m);
        if (k.dev, k.ino) != (self.dev, self.ino) {
            return Some("another file is there now".into());
        }
        // unlinking a file (or renaming another over it) moves its ctime: an
        // unlinked file, reached through the process that runs or maps it,
        // needs only its size and mtime unchanged; nothing can open it by
        // name to rewrite it any more
        let ctime_only = (k.size, k.mtime_sec, k.mtime_nsec) == (self.size, self.mtime_sec, self.mtime_nsec);
        if k != *self && !(ctime_only && m.nlink() == 0) {
            return Some("the file changed since (size or times differ)".into());
        }
        None
    }
}

/// Where a file may be read from. Each is tried in turn; the first that
/// opens as the expected file (see [`FileKey::mismatch`]) is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A path the kernel resolved from the file itself: opened without
    /// following a final symlink (whatever a symlink there points to, it is
    /// not the file that ran).
    Resolved(PathBuf),
    /// A name looked up as the process would: symlinks followed, which
    /// includes the `/proc/<pid>/...` links (`exe`, `fd/N`, `map_files/A-B`)
    /// that reach a file no name reaches any more (deleted, memfd).
    Lookup(PathBuf),
    /// A name resolved in a process's own view: `path` looked up under
    /// `root` (`/proc/<pid>/root`: its root directory, in its mount
    /// namespace), never above it and through no `/proc` magic link; a
    /// final symlink is not followed.
    InRoot {
        /// The directory `path` is resolved in (as if it were `/`).
        root: PathBuf,
        /// The name, absolute in that root.
        path: PathBuf,
    },
    /// Every descriptor a process holds (`/proc/<pid>/fd`): the first that
    /// is the file is read (an interpreter may move its script's descriptor).
    Descriptors(PathBuf),
    /// As `InRoot`, under a root directory held open rather than named (a
    /// mount namespace's root lent to the agent, alive with no process in it).
    InHeldRoot {
        /// The directory `path` is resolved in (as if it were `/`).
        root: HeldDir,
        /// The name, absolute in that root.
        path: PathBuf,
    },
}

/// A directory descriptor shared by the sources that use it.
#[derive(Debug, Clone)]
pub struct HeldDir(pub std::sync::Arc<File>);

impl PartialEq for HeldDir {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for HeldDir {}

impl Source {
    /// The path opened (for `InRoot`, the name in its root).
    pub fn path(&self) -> &Path {
        match self {
            Source::Resolved(p) | Source::Lookup(p) | Source::Descriptors(p) => p,
            Source::InRoot { path, .. } | Source::InHeldRoot { path, .. } => path,
        }
    }

    /// Opens the source only if it is the file `key` names, and for reading
    /// only then: the first open is `O_PATH` (no device or FIFO is opened,
    /// nothing blocks), the second reopens that very inode.
    fn open_checked(&self, key: &FileKey) -> Result<File, String> {
        let o_path = |p: &Path, nofollow: i32| {
            std::fs::OpenOptions::new().read(true).custom_flags(libc::O_PATH | nofollow).open(p)
        };
        let handle = match self {
            Source::Resolved(p) => o_path(p, libc::O_NOFOLLOW),
            Source::Lookup(p) => o_path(p, 0),
            Source::InRoot { root, path } => o_path(root, libc::O_DIRECTORY).and_then(|dir| open_in_root(&dir, path)),
            Source::InHeldRoot { root, path } => open_in_root(&root.0, path),
            Source::Descriptors(dir) => return self.first_descriptor(dir, key),
        }
        .map_err(|e| e.to_string())?;
        let meta = handle.metadata().map_err(|e| e.to_string())?;
        if let Some(why) = key.mismatch(&meta) {
            return Err(why);
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(format!("/proc/self/fd/{}", handle.as_raw_fd()))
            .map_err(|e| e.to_string())?;
        match file.metadata() {
            Ok(m) if key.mismatch(&m).is_none() => Ok(file),
            Ok(_) => Err("the file changed while it was opened".into()),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl Source {
    /// The first descriptor in `dir` that is the file `key` names.
    fn first_descriptor(&self, dir: &Path, key: &FileKey) -> Result<File, String> {
        let entries = std::fs::read_dir(dir).map_err(|e| e.to_string())?;
        entries
            .flatten()
            .find_map(|fd| Source::Lookup(fd.path()).open_checked(key).ok())
            .ok_or_else(|| "no descriptor of the process is the file".to_string())
    }
}

/// `path` opened `O_PATH` under the directory `root` as
/// `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` does: absolute names
/// and `..` stay inside it, symlinks resolve inside it, and a final symlink
/// is not followed.
fn open_in_root(root: &File, path: &Path) -> std::io::Result<File> {
    use std::os::fd::FromRawFd;
    let name = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "a NUL in the name"))?;
    // SAFETY: open_how is plain data; all zeroes is valid.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: valid fd, C string and open_how of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            name.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    Ok(unsafe { File::from_raw_fd(fd as i32) })
}

/// A path from the kernel's bytes, as they are (not through a lossy string).
pub fn path_of(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(bytes))
}

/// Counters of the cache, for benchmarks and the agent's exit summary.
#[derive(Debug, Clone, Copy, Default)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Files read and hashed.
    pub hashed: u64,
    /// CPU time spent reading and hashing them, µs.
    pub hash_cpu_us: u64,
}

/// CPU time of the calling thread, µs.
pub fn thread_cpu_us() -> u64 {
    (crate::events::time::clock_ns(libc::CLOCK_THREAD_CPUTIME_ID) / 1000) as u64
}

/// Bounded LRU cache of file metadata keyed by [`FileKey`]: only
/// successfully hashed files, each under the identity it was read with.
pub struct HashCache {
    cache: LruCache<FileKey, FileRef>,
    hits: u64,
}

const MAGIC_BYTES: usize = 8192;

impl HashCache {
    /// A cache of at most `capacity` files.
    pub fn new(capacity: usize) -> Self {
        HashCache { cache: LruCache::new(NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN)), hits: 0 }
    }

    /// Lookups answered so far.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// The cached metadata of `key`, named `path` (a cached entry found
    /// under another name, a hard link, is returned with this one).
    pub fn get(&mut self, key: &FileKey, path: &Text) -> Option<FileRef> {
        let meta = self.cache.get(key)?;
        self.hits += 1;
        Some(renamed(meta, path))
    }

    /// Keeps `meta` if it holds hashes.
    pub fn put(&mut self, key: FileKey, meta: &FileRef) {
        if meta.error.is_none() && meta.sha256.is_some() {
            self.cache.put(key, meta.clone());
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }
}

/// `meta` named `path`; the same allocation when the name is already that
/// (the common case: same file, same name).
pub fn renamed(meta: &FileRef, path: &Text) -> FileRef {
    if *meta.path == **path {
        return meta.clone();
    }
    FileMeta { path: path.clone(), ..(**meta).clone() }.into()
}

/// Metadata without hashes, saying why.
pub fn error_meta(path: &Text, error: &str) -> FileMeta {
    FileMeta { path: path.clone(), error: Some(error.into()), ..Default::default() }
}

/// A file being hashed: opened as the expected file, read a slice at a time
/// (the hashing worker interleaves files so a small one is not stuck behind
/// a big one), never past the size it had when opened.
pub struct Hashing {
    file: File,
    key: FileKey,
    path: Text,
    size: u64,
    read: u64,
    md5: md5::Md5,
    sha1: sha1::Sha1,
    sha256: sha2::Sha256,
    sha512: sha2::Sha512,
    head: Vec<u8>,
}

impl Hashing {
    /// Opens the first of `sources` that is the file `key` names. `path` is
    /// how events name it. Files over `max_size` bytes are not read.
    pub fn start(path: &Text, key: FileKey, sources: &[Source], max_size: u64) -> Result<Hashing, Box<FileMeta>> {
        let size = key.size.max(0) as u64;
        if size > max_size {
            let mut meta = error_meta(path, &format!("not hashed: {size} bytes is over the {max_size} bytes limit"));
            meta.size = size;
            return Err(meta.into());
        }
        let mut why = Vec::new();
        for src in sources {
            match src.open_checked(&key) {
                Ok(file) => {
                    return Ok(Hashing {
                        file,
                        key,
                        path: deleted_name(src, path),
                        size,
                        read: 0,
                        md5: md5::Md5::new(),
                        sha1: sha1::Sha1::new(),
                        sha256: sha2::Sha256::new(),
                        sha512: sha2::Sha512::new(),
                        head: Vec::with_capacity(MAGIC_BYTES.min(size as usize)),
                    })
                }
                Err(e) => why.push(format!("{}: {e}", src.path().display())),
            }
        }
        if why.is_empty() {
            why.push("no name reaches it".into());
        }
        Err(error_meta(path, &format!("not hashed: the file that ran cannot be read ({})", why.join("; "))).into())
    }

    /// Reads and hashes up to `slice` more bytes through `buf`; the file's
    /// metadata once it is read in full (or could not be).
    pub fn step(&mut self, buf: &mut [u8], slice: usize) -> Option<FileMeta> {
        let mut done = 0;
        while done < slice {
            let want = (self.size - self.read).min(buf.len() as u64) as usize;
            if want == 0 {
                return Some(self.finish());
            }
            let n = match self.file.read(&mut buf[..want]) {
                Ok(0) => return Some(self.failed("the file shrank while it was read")),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Some(self.failed(&e.to_string())),
            };
            let chunk = &buf[..n];
            if self.head.len() < MAGIC_BYTES {
                let take = (MAGIC_BYTES - self.head.len()).min(n);
                self.head.extend_from_slice(&chunk[..take]);
            }
            self.md5.update(chunk);
            self.sha1.update(chunk);
            self.sha256.update(chunk);
            self.sha512.update(chunk);
            self.read += n as u64;
            done += n;
        }
        None
    }

    fn failed(&self, why: &str) -> FileMeta {
        error_meta(&self.path, &format!("not hashed: {why}"))
    }

    fn finish(&mut self) -> FileMeta {
        // what was read is the file's content only if nothing changed it meanwhile
        match self.file.metadata() {
            Ok(m) if self.key.mismatch(&m).is_none() => {}
            Ok(_) => return self.failed("the file changed while it was read"),
            Err(e) => return self.failed(&e.to_string()),
        }
        FileMeta {
            path: self.path.clone(),
            magic: magic(&self.head).into(),
            md5: Some(Md5(std::mem::take(&mut self.md5).finalize().into())),
            sha1: Some(Sha1(std::mem::take(&mut self.sha1).finalize().into())),
            sha256: Some(Sha256(std::mem::take(&mut self.sha256).finalize().into())),
            sha512: Some(Sha512(std::mem::take(&mut self.sha512).finalize().into())),
            size: self.read,
            error: None,
        }
    }
}

/// `path`, with " (deleted)" when the file was reached through a /proc link
/// that says so (the binary was deleted or replaced after it started).
fn deleted_name(src: &Source, path: &Text) -> Text {
    const DELETED: &str = " (deleted)";
    if let Source::Lookup(link) = src {
        if link.starts_with("/proc") && !path.ends_with(DELETED) {
            if let Ok(target) = std::fs::read_link(link) {
                if target.as_os_str().as_bytes().ends_with(DELETED.as_bytes()) {
                    return format!("{path}{DELETED}").as_str().into();
                }
            }
        }
    }
    path.clone()
}

/// Hashes the file `key` names from the first source that is it, in one go.
pub fn hash_now(path: &Text, key: FileKey, sources: &[Source], max_size: u64) -> FileMeta {
    match Hashing::start(path, key, sources, max_size) {
        Ok(mut h) => {
            let mut buf = vec![0u8; CHUNK];
            loop {
                if let Some(meta) = h.step(&mut buf, usize::MAX) {
                    return meta;
                }
            }
        }
        Err(meta) => *meta,
    }
}

/// Bytes read at a time.
pub const CHUNK: usize = 64 * 1024;

/// The identity of the file at `path` now (symlinks followed): only for a
/// file the agent names itself (its own executable), never for one a
/// process ran (the kernel gives those).
pub fn key_of(path: &Path) -> std::io::Result<FileKey> {
    std::fs::metadata(path).map(|m| FileKey::from_metadata(&m))
}

/// MIME type of content from its first bytes.
pub fn magic(head: &[u8]) -> &'static str {
    if let Some(t) = infer::get(head) {
        return t.mime_type();
    }
    if head.starts_with(b"#!") {
        return "text/x-shellscript";
    }
    if head.is_empty() {
        return "application/x-empty";
    }
    if std::str::from_utf8(head).is_ok() || head.iter().all(|b| b.is_ascii()) {
        "text/plain"
    } else {
        "application/octet-stream"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    fn text(p: &Path) -> Text {
        p.to_str().unwrap().into()
    }

    fn key(p: &Path) -> FileKey {
        FileKey::from_metadata(&std::fs::metadata(p).unwrap())
    }

    fn hash(p: &Path) -> FileMeta {
        hash_now(&text(p), key(p), &[Source::Resolved(p.to_path_buf())], u64::MAX)
    }

    #[test]
    fn hashes_known_content() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"abc").unwrap();
        let m = hash(f.path());
        assert_eq!(m.md5.unwrap().to_string(), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(m.sha1.unwrap().to_string(), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(m.sha256.unwrap().to_string(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(m.sha512.unwrap().to_string().starts_with("ddaf35a193617aba"));
        assert_eq!(m.size, 3);
        assert_eq!(&*m.magic, "text/plain");
        assert!(m.error.is_none());
    }

    #[test]
    fn magic_of_elf_and_script() {
        let elf = std::fs::read("/bin/true").unwrap();
        assert!(
            magic(&elf[..64]).contains("executable") || magic(&elf[..64]).contains("sharedlib"),
            "{}",
            magic(&elf[..64])
        );
        assert_eq!(magic(b"#!/bin/sh\necho hi\n"), "text/x-shellscript");
    }

    #[test]
    fn missing_file_gives_error_not_panic() {
        let p = Path::new("/nonexistent/ioclab");
        let m = hash_now(&text(p), FileKey::default(), &[Source::Resolved(p.into())], u64::MAX);
        assert!(m.error.as_deref().unwrap().contains("No such file"), "{m:?}");
        assert!(m.sha256.is_none());
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["sha256"], "");
    }

    #[test]
    fn too_large_is_not_hashed() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&[0u8; 100]).unwrap();
        let m = hash_now(&text(f.path()), key(f.path()), &[Source::Resolved(f.path().into())], 10);
        assert!(m.error.as_deref().unwrap().contains("limit"));
        assert_eq!(m.size, 100);
    }

    #[test]
    fn another_file_at_the_name_is_not_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r1");
        std::fs::write(&p, b"one").unwrap();
        let seen = key(&p);
        // replaced by rename: another inode
        std::fs::write(dir.path().join("new"), b"two").unwrap();
        std::fs::rename(dir.path().join("new"), &p).unwrap();
        let m = hash_now(&text(&p), seen, &[Source::Resolved(p.clone())], u64::MAX);
        assert!(m.sha256.is_none() && m.error.as_deref().unwrap().contains("another file"), "{m:?}");
    }

    #[test]
    fn a_same_size_rewrite_with_mtime_restored_is_another_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"one").unwrap();
        let before = std::fs::metadata(&p).unwrap();
        let seen = FileKey::from_metadata(&before);
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&p, b"two").unwrap();
        let f = std::fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(before.modified().unwrap()).unwrap();
        let now = key(&p);
        assert_eq!((now.size, now.mtime_sec, now.mtime_nsec), (seen.size, seen.mtime_sec, seen.mtime_nsec));
        assert_ne!(now, seen, "ctime tells them apart");
        let m = hash_now(&text(&p), seen, &[Source::Resolved(p.clone())], u64::MAX);
        assert!(m.sha256.is_none(), "{m:?}");
    }

    #[test]
    fn a_symlink_to_a_device_is_never_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("mal");
        std::os::unix::fs::symlink("/dev/zero", &p).unwrap();
        let zero = key(Path::new("/dev/zero"));
        // even with the identity of /dev/zero itself: not a regular file
        for src in [Source::Resolved(p.clone()), Source::Lookup(p.clone())] {
            let m = hash_now(&text(&p), zero, &[src], u64::MAX);
            assert!(m.error.as_deref().unwrap().contains("not a regular file"), "{m:?}");
        }
    }

    #[test]
    fn a_fifo_is_never_opened_for_reading() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fifo");
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let m = hash_now(&text(&p), key(&p), &[Source::Lookup(p.clone())], u64::MAX);
        assert!(m.error.as_deref().unwrap().contains("not a regular file"), "{m:?}");
    }

    #[test]
    fn the_second_source_is_used_when_the_first_is_not_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"decoy").unwrap();
        std::fs::write(&b, b"abc").unwrap();
        let m = hash_now(&text(&a), key(&b), &[Source::Resolved(a.clone()), Source::Lookup(b.clone())], u64::MAX);
        assert_eq!(m.size, 3, "{m:?}");
        assert_eq!(m.path, text(&a), "named as the event names it");
    }

    #[test]
    fn a_file_growing_while_read_is_read_to_its_size_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("grows");
        std::fs::write(&p, vec![1u8; 3 * CHUNK]).unwrap();
        let k = key(&p);
        let mut h = Hashing::start(&text(&p), k, &[Source::Resolved(p.clone())], u64::MAX).ok().unwrap();
        let mut buf = vec![0u8; CHUNK];
        assert!(h.step(&mut buf, CHUNK).is_none());
        std::fs::OpenOptions::new().append(true).open(&p).unwrap().write_all(&[2u8; 100]).unwrap();
        let m = loop {
            if let Some(m) = h.step(&mut buf, CHUNK) {
                break m;
            }
        };
        assert!(m.sha256.is_none() && m.error.as_deref().unwrap().contains("changed while"), "{m:?}");
    }

    #[test]
    fn a_name_in_a_root_never_leaves_it() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir(r.join("etc")).unwrap();
        std::fs::write(r.join("etc/s.sh"), b"abc").unwrap();
        let inside = key(&r.join("etc/s.sh"));
        let in_root = |p: &str| Source::InRoot { root: r.to_path_buf(), path: p.into() };
        // absolute names and .. are the root's
        for p in ["/etc/s.sh", "/../../etc/s.sh"] {
            let m = hash_now(&"/etc/s.sh".into(), inside, &[in_root(p)], u64::MAX);
            assert_eq!(m.size, 3, "{p}: {m:?}");
        }
        // a symlink out of the root resolves inside it: the host's file is never reached
        std::os::unix::fs::symlink("/etc/hostname", r.join("etc/up")).unwrap();
        std::fs::create_dir(r.join("dir")).unwrap();
        std::os::unix::fs::symlink("/etc", r.join("dir/link")).unwrap();
        let host = key(Path::new("/etc/hostname"));
        for p in ["/etc/up", "/dir/link/hostname"] {
            let m = hash_now(&"/x".into(), host, &[in_root(p)], u64::MAX);
            assert!(m.sha256.is_none(), "{p}: {m:?}");
        }
        // /proc magic links are not followed
        let me = key(Path::new("/proc/self/exe"));
        let proc_root = Source::InRoot { root: "/".into(), path: "/proc/self/exe".into() };
        let m = hash_now(&"/x".into(), me, &[proc_root], u64::MAX);
        assert!(m.sha256.is_none(), "{m:?}");
    }

    #[test]
    fn any_descriptor_of_a_process_holding_the_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("held");
        std::fs::write(&p, b"abc").unwrap();
        let k = key(&p);
        let held = std::fs::File::open(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
        let m = hash_now(&"/held".into(), k, &[Source::Descriptors("/proc/self/fd".into())], u64::MAX);
        assert_eq!(m.size, 3, "{m:?}");
        drop(held);
        let m = hash_now(&"/held".into(), k, &[Source::Descriptors("/proc/self/fd".into())], u64::MAX);
        assert!(m.error.as_deref().unwrap().contains("no descriptor"), "{m:?}");
    }

    #[test]
    fn cache_keeps_only_hashes() {
        let mut c = HashCache::new(2);
        let k = FileKey { ino: 1, ..Default::default() };
        c.put(k, &error_meta(&"/x".into(), "no").into());
        assert!(c.get(&k, &"/x".into()).is_none());
        for i in 0..5 {
            let meta = FileMeta { path: "/y".into(), sha256: Some(Sha256([i; 32])), ..Default::default() };
            c.put(FileKey { ino: i as u64, ..Default::default() }, &meta.into());
        }
        assert_eq!(c.len(), 2, "bounded");
        let hit = c.get(&FileKey { ino: 4, ..Default::default() }, &"/hardlink".into()).unwrap();
        assert_eq!(&*hit.path, "/hardlink");
    }

    fn arb_key() -> impl Strategy<Value = FileKey> {
        (
            any::<u32>(),
            any::<u64>(),
            0i64..1 << 40,
            any::<i64>(),
            0u32..1_000_000_000,
            any::<i64>(),
            0u32..1_000_000_000,
        )
            .prop_map(|(dev, ino, size, ms, mn, cs, cn)| FileKey {
                dev,
                ino,
                size,
                mtime_sec: ms,
                mtime_nsec: mn,
                ctime_sec: cs,
                ctime_nsec: cn,
            })
    }

    proptest! {
        /// A real file matches its own key and no key differing in any field.
        #[test]
        fn identity_is_every_field(other in arb_key(), field in 0usize..7) {
            let f = tempfile::NamedTempFile::new().unwrap();
            let m = std::fs::metadata(f.path()).unwrap();
            let own = FileKey::from_metadata(&m);
            prop_assert!(own.mismatch(&m).is_none());
            let mut k = own;
            match field {
                0 => k.dev = other.dev,
                1 => k.ino = other.ino,
                2 => k.size = other.size,
                3 => k.mtime_sec = other.mtime_sec,
                4 => k.mtime_nsec = other.mtime_nsec,
                5 => k.ctime_sec = other.ctime_sec,
                _ => k.ctime_nsec = other.ctime_nsec,
            }
            prop_assert_eq!(k.mismatch(&m).is_none(), k == own);
        }
    }
}
