//! File metadata and hashes (`md5`, `sha1`, `sha256`, `sha512`, `magic`),
//! cached by file identity so a binary run a thousand times is read once.

use std::fs::File;
use std::io::Read;
use std::num::NonZeroUsize;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use lru::LruCache;
use md5::Digest as _;

use crate::events::{FileMeta, FileRef, Text};
use crate::hashes::{Md5, Sha1, Sha256, Sha512};

/// What identifies a file's content without reading it: if none of these
/// changed, the hashes have not either.
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
        }
    }
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

/// Bounded LRU cache of file metadata keyed by [`FileKey`].
pub struct HashCache {
    cache: LruCache<FileKey, FileRef>,
    max_size: u64,
    stats: CacheStats,
}

const MAGIC_BYTES: usize = 8192;

impl HashCache {
    /// A cache of at most `capacity` files; files larger than `max_size`
    /// bytes are not hashed (their metadata says so in `error`).
    pub fn new(capacity: usize, max_size: u64) -> Self {
        HashCache {
            cache: LruCache::new(NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN)),
            max_size,
            stats: CacheStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// Metadata of the file at `path`. `key` is the identity the kernel saw;
    /// without it the file is stat'ed first. A cached entry found under another
    /// path (a hard link) is returned with this path.
    ///
    /// While a file is hashed, `meanwhile` is called between chunks (the agent
    /// reads its ring buffer there); it returns the CPU µs it took, which are
    /// not counted as hashing.
    pub fn get(&mut self, path: &str, key: Option<FileKey>, meanwhile: &mut dyn FnMut() -> u64) -> FileRef {
        let key = match key {
            Some(k) => k,
            None => match std::fs::metadata(path) {
                Ok(m) => FileKey::from_metadata(&m),
                Err(e) => return error_meta(&path.into(), &e.to_string()).into(),
            },
        };
        if let Some(meta) = self.cache.get(&key) {
            self.stats.hits += 1;
            // the common case: same file, same name, nothing to allocate
            if *meta.path == *path {
                return meta.clone();
            }
            return FileMeta { path: path.into(), ..(**meta).clone() }.into();
        }
        let path: Text = path.into();
        let path = &path;
        self.stats.hashed += 1;
        let t0 = thread_cpu_us();
        let mut other_us = 0;
        let meta = FileRef::rendered(Arc::new(hash_file(path, self.max_size, &mut || other_us += meanwhile())));
        self.stats.hash_cpu_us += thread_cpu_us().saturating_sub(t0).saturating_sub(other_us);
        if meta.error.is_none() {
            self.cache.put(key, meta.clone());
        }
        meta
    }
}

fn error_meta(path: &Text, error: &str) -> FileMeta {
    FileMeta { path: path.clone(), error: Some(error.into()), ..Default::default() }
}

/// Reads and hashes a file (all four digests in one pass) and names its
/// type, calling `between_chunks` after each 64 KB.
pub fn hash_file(path: &Text, max_size: u64, between_chunks: &mut dyn FnMut()) -> FileMeta {
    let mut file = match File::open(&**path) {
        Ok(f) => f,
        Err(e) => return error_meta(path, &e.to_string()),
    };
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    if size > max_size {
        let mut meta = error_meta(path, &format!("not hashed: {size} bytes is over the {max_size} bytes limit"));
        meta.size = size;
        return meta;
    }
    let (mut md5, mut sha1, mut sha256, mut sha512) =
        (md5::Md5::new(), sha1::Sha1::new(), sha2::Sha256::new(), sha2::Sha512::new());
    let mut head = Vec::with_capacity(MAGIC_BYTES);
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return error_meta(path, &e.to_string()),
        };
        let chunk = &buf[..n];
        if head.len() < MAGIC_BYTES {
            let take = (MAGIC_BYTES - head.len()).min(n);
            head.extend_from_slice(&chunk[..take]);
        }
        md5.update(chunk);
        sha1.update(chunk);
        sha256.update(chunk);
        sha512.update(chunk);
        total += n as u64;
        between_chunks();
    }
    FileMeta {
        path: path.clone(),
        magic: magic(&head).into(),
        md5: Some(Md5(md5.finalize().into())),
        sha1: Some(Sha1(sha1.finalize().into())),
        sha256: Some(Sha256(sha256.finalize().into())),
        sha512: Some(Sha512(sha512.finalize().into())),
        size: total,
        error: None,
    }
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
    use std::io::Write;

    fn text(p: &std::path::Path) -> Text {
        p.to_str().unwrap().into()
    }

    #[test]
    fn hashes_known_content() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"abc").unwrap();
        let m = hash_file(&text(f.path()), u64::MAX, &mut || {});
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
        let m = hash_file(&"/nonexistent/ioclab".into(), u64::MAX, &mut || {});
        assert!(m.error.as_deref().unwrap().contains("No such file"));
        assert!(m.sha256.is_none());
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["sha256"], "");
    }

    #[test]
    fn too_large_is_not_hashed() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&[0u8; 100]).unwrap();
        let m = hash_file(&text(f.path()), 10, &mut || {});
        assert!(m.error.as_deref().unwrap().contains("limit"));
        assert_eq!(m.size, 100);
    }

    #[test]
    fn cache_hits_until_content_changes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"one").unwrap();
        let path = text(&p);
        let mut c = HashCache::new(16, u64::MAX);
        let a = c.get(&path, None, &mut || 0);
        let b = c.get(&path, None, &mut || 0);
        assert!(Arc::ptr_eq(a.meta(), b.meta()));
        assert_eq!(c.stats().hashed, 1);
        assert_eq!(c.stats().hits, 1);
        std::fs::write(&p, b"two, longer").unwrap();
        let d = c.get(&path, None, &mut || 0);
        assert_ne!(a.sha256, d.sha256);
        assert_eq!(c.stats().hashed, 2);
    }

    #[test]
    fn hashing_a_big_file_lets_the_caller_work_between_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big");
        std::fs::write(&p, vec![7u8; 1 << 20]).unwrap();
        let mut c = HashCache::new(4, u64::MAX);
        let mut calls = 0;
        let m = c.get(&text(&p), None, &mut || {
            calls += 1;
            0
        });
        assert_eq!(m.size, 1 << 20);
        assert_eq!(calls, 16, "once per 64 KB chunk");
        c.get(&text(&p), None, &mut || panic!("a cache hit reads nothing"));
    }

    #[test]
    fn cache_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = HashCache::new(2, u64::MAX);
        for i in 0..5 {
            let p = dir.path().join(format!("f{i}"));
            std::fs::write(&p, format!("{i}")).unwrap();
            c.get(&text(&p), None, &mut || 0);
        }
        assert_eq!(c.cache.len(), 2);
    }
}
