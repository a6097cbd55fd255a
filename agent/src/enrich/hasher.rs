//! Hashing off the event path: one worker thread reads and hashes new
//! files while the agent's thread goes on reading the ring and writing
//! events. The agent's thread keeps the cache (a hit costs no hand-off);
//! only misses go to the worker, through a bounded queue.
//!
//! The worker interleaves the files it holds, a slice of each in turn, new
//! files first: a small binary is hashed within milliseconds even while
//! several big ones are read, and a flood of big ones fills the queue (then
//! files are reported unhashed) instead of memory.

use std::collections::{HashMap, HashSet, VecDeque};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;

use super::filemeta::{error_meta, renamed, thread_cpu_us, CacheStats, FileKey, HashCache, Hashing, Source, CHUNK};
use crate::events::{FileMeta, FileRef, Text};

/// Files queued or being hashed, at most: each holds an open descriptor and
/// about a kilobyte of digest state.
pub const MAX_IN_FLIGHT: usize = 64;

/// Bytes of one file read before the worker turns to the next (~1 ms).
const SLICE: usize = 4 * CHUNK;

/// A file to hash: its identity, how events name it, where to read it.
struct Job {
    key: FileKey,
    path: Text,
    sources: Vec<Source>,
}

/// What the worker shares with the agent's thread.
struct Shared {
    stop: AtomicBool,
    hashed: AtomicU64,
    cpu_us: AtomicU64,
    /// An eventfd the worker signals when a result is ready.
    wake: OwnedFd,
}

/// The answer to [`Hashes::lookup`].
#[derive(Debug)]
pub enum Lookup {
    /// Known now: cached hashes, or why there are none.
    Ready(FileRef),
    /// Being hashed: ask [`Hashes::finished`] once [`Hashes::poll`] has run.
    Pending,
}

/// The cache, the worker and the files in flight, owned by the agent's thread.
pub struct Hashes {
    cache: HashCache,
    jobs: SyncSender<Job>,
    results: Receiver<(FileKey, FileMeta)>,
    shared: Arc<Shared>,
    in_flight: HashSet<FileKey>,
    /// Results of files events still wait for (errors included: they are not cached).
    finished: HashMap<FileKey, FileRef>,
    max_size: u64,
}

impl Hashes {
    /// Starts the worker; the cache keeps `capacity` files, files over
    /// `max_size` bytes are not hashed.
    pub fn new(capacity: usize, max_size: u64) -> std::io::Result<Self> {
        // SAFETY: eventfd has no memory preconditions; the fd is owned below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd was just created and nothing else owns it.
        let wake = unsafe { OwnedFd::from_raw_fd(fd) };
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            hashed: AtomicU64::new(0),
            cpu_us: AtomicU64::new(0),
            wake,
        });
        let (jobs, job_rx) = mpsc::sync_channel(MAX_IN_FLIGHT);
        let (result_tx, results) = mpsc::channel();
        let s = shared.clone();
        std::thread::Builder::new().name("ioclab-hash".into()).spawn(move || work(job_rx, result_tx, s, max_size))?;
        Ok(Hashes {
            cache: HashCache::new(capacity),
            jobs,
            results,
            shared,
            in_flight: HashSet::new(),
            finished: HashMap::new(),
            max_size,
        })
    }

    /// The eventfd that becomes readable when a result is ready (poll it
    /// with the ring, then call [`Hashes::poll`]).
    pub fn wake_fd(&self) -> RawFd {
        self.shared.wake.as_raw_fd()
    }

    /// The metadata of the file `key` names: from the cache, or asked of the
    /// worker (`sources` are only built then).
    pub fn lookup(&mut self, key: FileKey, path: &Text, sources: impl FnOnce() -> Vec<Source>) -> Lookup {
        if let Some(meta) = self.cache.get(&key, path) {
            return Lookup::Ready(meta);
        }
        if self.in_flight.contains(&key) {
            return Lookup::Pending;
        }
        let size = key.size.max(0) as u64;
        if size > self.max_size {
            let mut meta =
                error_meta(path, &format!("not hashed: {size} bytes is over the {} bytes limit", self.max_size));
            meta.size = size;
            return Lookup::Ready(meta.into());
        }
        if self.in_flight.len() >= MAX_IN_FLIGHT {
            let why = format!("not hashed: {MAX_IN_FLIGHT} new files were being hashed already");
            return Lookup::Ready(error_meta(path, &why).into());
        }
        match self.jobs.try_send(Job { key, path: path.clone(), sources: sources() }) {
            Ok(()) => {
                self.in_flight.insert(key);
                Lookup::Pending
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                Lookup::Ready(error_meta(path, "not hashed: the hashing worker is not taking files").into())
            }
        }
    }

    /// Whether files are being hashed.
    pub fn busy(&self) -> bool {
        !self.in_flight.is_empty()
    }

    /// Clears the worker's wakeup (after poll(2) saw it).
    pub fn woken(&self) {
        let mut n = 0u64;
        // SAFETY: reads 8 bytes into a u64 from a nonblocking eventfd.
        unsafe { libc::read(self.shared.wake.as_raw_fd(), &mut n as *mut u64 as *mut libc::c_void, 8) };
    }

    /// Takes the worker's results: hashes into the cache, every result kept
    /// for [`Hashes::finished`] until [`Hashes::forget_finished`].
    pub fn poll(&mut self) {
        while let Ok((key, meta)) = self.results.try_recv() {
            self.in_flight.remove(&key);
            let meta = FileRef::rendered(Arc::new(meta));
            self.cache.put(key, &meta);
            self.finished.insert(key, meta);
        }
    }

    /// The result for `key`, if its file was hashed (or failed), named `path`.
    pub fn finished(&mut self, key: &FileKey, path: &Text) -> Option<FileRef> {
        match self.finished.get(key) {
            // keep the worker's name when it only adds " (deleted)"
            Some(m) if m.path.strip_prefix(&**path).is_some_and(|rest| rest.is_empty() || rest == " (deleted)") => {
                Some(m.clone())
            }
            Some(m) => Some(renamed(m, path)),
            None => self.cache.get(key, path),
        }
    }

    /// Drops the results kept for waiting events (none waits any more).
    pub fn forget_finished(&mut self) {
        self.finished.clear();
    }

    /// Drops the results no waiting event needs, once they are many (events
    /// keep waiting, one after another, through a long storm).
    pub fn trim_finished(&mut self, needed: impl Fn(&FileKey) -> bool) {
        if self.finished.len() > 2 * MAX_IN_FLIGHT {
            self.finished.retain(|k, _| needed(k));
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.cache.hits(),
            hashed: self.shared.hashed.load(Ordering::Relaxed),
            hash_cpu_us: self.shared.cpu_us.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Hashes {
    /// Stops the worker at its next slice without waiting for it: a stop
    /// never waits for a file to be read.
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

/// The worker: takes new files first, then reads a slice of the oldest
/// until all are done; exits when the agent's side is dropped.
fn work(jobs: Receiver<Job>, results: Sender<(FileKey, FileMeta)>, shared: Arc<Shared>, max_size: u64) {
    let mut active: VecDeque<(FileKey, Hashing)> = VecDeque::new();
    let mut buf = vec![0u8; CHUNK];
    let send = |key: FileKey, meta: FileMeta| {
        if results.send((key, meta)).is_ok() {
            let one = 1u64;
            // SAFETY: writes 8 bytes from a u64 to the eventfd.
            unsafe { libc::write(shared.wake.as_raw_fd(), &one as *const u64 as *const libc::c_void, 8) };
        }
    };
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let job = if active.is_empty() {
            match jobs.recv() {
                Ok(j) => Some(j),
                Err(_) => return,
            }
        } else {
            match jobs.try_recv() {
                Ok(j) => Some(j),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => return,
            }
        };
        let t0 = thread_cpu_us();
        if let Some(job) = job {
            match Hashing::start(&job.path, job.key, &job.sources, max_size) {
                Ok(h) => active.push_front((job.key, h)),
                Err(meta) => send(job.key, *meta),
            }
        } else if let Some((key, mut h)) = active.pop_front() {
            match h.step(&mut buf, SLICE) {
                Some(meta) => {
                    if meta.error.is_none() {
                        shared.hashed.fetch_add(1, Ordering::Relaxed);
                    }
                    send(key, meta)
                }
                None => active.push_back((key, h)),
            }
        }
        shared.cpu_us.fetch_add(thread_cpu_us().saturating_sub(t0), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    fn key(p: &std::path::Path) -> FileKey {
        FileKey::from_metadata(&std::fs::metadata(p).unwrap())
    }

    /// Waits for the worker's answer about `k` (tests only: the agent polls).
    fn wait(h: &mut Hashes, k: &FileKey, path: &Text) -> FileRef {
        let t0 = Instant::now();
        loop {
            h.poll();
            if let Some(m) = h.finished(k, path) {
                return m;
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "no answer from the worker");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_small_file_is_not_stuck_behind_a_big_one() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::File::create(&big).unwrap().set_len(256 << 20).unwrap();
        let small = dir.path().join("small");
        std::fs::write(&small, b"abc").unwrap();
        let mut h = Hashes::new(16, u64::MAX).unwrap();
        let (kb, ks) = (key(&big), key(&small));
        let (pb, ps): (Text, Text) = (big.to_str().unwrap().into(), small.to_str().unwrap().into());
        assert!(matches!(h.lookup(kb, &pb, || vec![Source::Resolved(big.clone())]), Lookup::Pending));
        assert!(matches!(h.lookup(ks, &ps, || vec![Source::Resolved(small.clone())]), Lookup::Pending));
        let m = wait(&mut h, &ks, &ps);
        assert_eq!(m.sha256.unwrap().to_string(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        h.poll();
        assert!(h.finished(&kb, &pb).is_none(), "the big file (256 MB) is still being read");
        // the same file asked again while in flight is not queued twice
        assert!(matches!(h.lookup(kb, &pb, || panic!("queued twice")), Lookup::Pending));
        let m = wait(&mut h, &kb, &pb);
        assert_eq!(m.size, 256 << 20);
        assert!(matches!(h.lookup(kb, &pb, || panic!("cached")), Lookup::Ready(_)));
        assert_eq!(h.stats().hashed, 2);
    }

    #[test]
    fn the_queue_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = Hashes::new(16, u64::MAX).unwrap();
        let mut refused = 0;
        for i in 0..(MAX_IN_FLIGHT + 10) {
            let p = dir.path().join(format!("f{i}"));
            std::fs::File::create(&p).unwrap().set_len(64 << 20).unwrap();
            let path: Text = p.to_str().unwrap().into();
            if let Lookup::Ready(m) = h.lookup(key(&p), &path, || vec![Source::Resolved(p.clone())]) {
                assert!(m.error.as_deref().unwrap().contains("being hashed already"), "{m:?}");
                refused += 1;
            }
        }
        assert!(refused >= 10, "{refused}");
    }

    #[test]
    fn an_error_is_an_answer_and_is_not_cached() {
        let mut h = Hashes::new(16, u64::MAX).unwrap();
        let k = FileKey { ino: 1, size: 3, ..Default::default() };
        let path: Text = "/nonexistent/ioclab".into();
        let p = PathBuf::from(&*path);
        assert!(matches!(h.lookup(k, &path, || vec![Source::Resolved(p.clone())]), Lookup::Pending));
        let m = wait(&mut h, &k, &path);
        assert!(m.error.as_deref().unwrap().contains("No such file"), "{m:?}");
        h.forget_finished();
        assert!(matches!(h.lookup(k, &path, || vec![Source::Resolved(p.clone())]), Lookup::Pending));
    }
}
