//! IoC reloads (SIGHUP): one worker thread loads the files, one load at a
//! time. Requests made while a load runs coalesce into one more load after
//! it, so the set in use is always the newest load's, never an older one
//! that happened to finish last. A load with no valid IoC or with bad lines
//! (a truncated download, an HTML error page) is refused and the previous
//! set stays, unless `scanner.accept_partial_iocs` says otherwise. Every
//! outcome is handed back to the event loop, which writes it as an event.

use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};

use arc_swap::ArcSwapOption;

use crate::events::{ErrorData, EventData, IocReloadData};
use crate::ioc::loader::{load_files, LoadReport};
use crate::ioc::IocSet;

/// `error.code` of a reload refused (bad lines or no IoC): the previous IoCs stay.
pub const ERROR_RELOAD_REFUSED: u64 = 3;
/// `error.code` of a reload that could not read a file: the previous IoCs stay.
pub const ERROR_RELOAD_FAILED: u64 = 4;

/// What one load did.
#[derive(Debug)]
pub enum Outcome {
    /// The new set is in use.
    Applied(LoadReport),
    /// The files were read but the load was refused; the previous set stays.
    Refused(LoadReport),
    /// A file could not be read; the previous set stays.
    Failed(String),
}

impl Outcome {
    /// The event that reports it: `ioc_reload`, or `error` when the previous IoCs stay.
    pub fn event_data(&self) -> EventData {
        match self {
            Outcome::Applied(r) => EventData::IocReload(IocReloadData {
                iocs: r.loaded as u64,
                files: r.per_file.len() as u64,
                bad_lines: r.bad.len() as u64,
                duplicates: (r.duplicates.len() + r.repeated_files.len()) as u64,
            }),
            Outcome::Refused(r) => {
                let why = match r.bad.first() {
                    Some(first) => format!("first bad line {first}"),
                    None => "no IoC in the files".into(),
                };
                EventData::Error(ErrorData {
                    code: ERROR_RELOAD_REFUSED,
                    message: format!(
                        "IoC reload refused, keeping the previous IoCs: {} ({why}); \
                         fix the files or set scanner.accept_partial_iocs",
                        r.counts()
                    ),
                })
            }
            Outcome::Failed(e) => EventData::Error(ErrorData {
                code: ERROR_RELOAD_FAILED,
                message: format!("IoC reload failed, keeping the previous IoCs: {e}"),
            }),
        }
    }
}

#[derive(Default)]
struct Requests {
    pending: bool,
    stop: bool,
}

/// The reload worker: [`Reloader::request`] asks for a load,
/// [`Reloader::outcomes`] returns what finished.
pub struct Reloader {
    requests: Arc<(Mutex<Requests>, Condvar)>,
    outcomes: Receiver<Outcome>,
}

impl Reloader {
    /// Starts the worker for `paths`; a load it accepts replaces `target`.
    pub fn spawn(
        paths: Vec<PathBuf>,
        accept_partial: bool,
        target: Arc<ArcSwapOption<IocSet>>,
    ) -> std::io::Result<Self> {
        let requests = Arc::new((Mutex::new(Requests::default()), Condvar::new()));
        let (tx, outcomes) = channel();
        let r = requests.clone();
        std::thread::Builder::new()
            .name("ioclab-reload".into())
            .spawn(move || worker(&paths, accept_partial, &target, &r, &tx))?;
        Ok(Reloader { requests, outcomes })
    }

    /// Asks for a load: run now, or once more after the one running.
    pub fn request(&self) {
        let (lock, cv) = &*self.requests;
        lock.lock().unwrap_or_else(|p| p.into_inner()).pending = true;
        cv.notify_one();
    }

    /// The loads finished since the last call, in order.
    pub fn outcomes(&self) -> impl Iterator<Item = Outcome> + '_ {
        self.outcomes.try_iter()
    }
}

impl Drop for Reloader {
    fn drop(&mut self) {
        // a load in progress finishes on its own; nothing waits for it
        let (lock, cv) = &*self.requests;
        lock.lock().unwrap_or_else(|p| p.into_inner()).stop = true;
        cv.notify_one();
    }
}

fn worker(
    paths: &[PathBuf],
    accept_partial: bool,
    target: &ArcSwapOption<IocSet>,
    requests: &(Mutex<Requests>, Condvar),
    outcomes: &Sender<Outcome>,
) {
    let (lock, cv) = requests;
    loop {
        {
            let mut r = lock.lock().unwrap_or_else(|p| p.into_inner());
            while !r.pending && !r.stop {
                r = cv.wait(r).unwrap_or_else(|p| p.into_inner());
            }
            if r.stop {
                return;
            }
            r.pending = false;
        }
        let outcome = match load_files(paths) {
            Ok((set, report)) if report.complete() || accept_partial => {
                target.store(Some(Arc::new(set)));
                Outcome::Applied(report)
            }
            Ok((_, report)) => Outcome::Refused(report),
            Err(e) => Outcome::Failed(e.to_string()),
        };
        if outcomes.send(outcome).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::{Duration, Instant};

    fn next(r: &Reloader) -> Outcome {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(o) = r.outcomes().next() {
                return o;
            }
            assert!(Instant::now() < deadline, "no reload outcome within 10 s");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn line(value: &str) -> String {
        format!("{{\"value\":\"{value}\",\"severity\":3}}\n")
    }

    /// Writes `text` to the FIFO: the worker's read of it blocks until then.
    fn feed(fifo: &std::path::Path, text: &str) {
        std::fs::OpenOptions::new().write(true).open(fifo).unwrap().write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn requests_during_a_load_make_one_more_load_and_the_newest_wins() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("iocs.fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string; mkfifo has no other precondition.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let target = Arc::new(ArcSwapOption::empty());
        let r = Reloader::spawn(vec![fifo.clone()], false, target.clone()).unwrap();
        r.request();
        // the first load now waits on the FIFO; three more requests meanwhile
        std::thread::sleep(Duration::from_millis(100));
        for _ in 0..3 {
            r.request();
        }
        feed(&fifo, &line("old.example"));
        assert!(matches!(next(&r), Outcome::Applied(_)));
        feed(&fifo, &format!("{}{}", line("new.example"), line("newer.example")));
        match next(&r) {
            Outcome::Applied(report) => assert_eq!(report.loaded, 2),
            other => panic!("{other:?}"),
        }
        std::thread::sleep(Duration::from_millis(200));
        assert!(r.outcomes().next().is_none(), "three requests during a load made one more load, not three");
        assert_eq!(target.load().as_ref().unwrap().len(), 2, "the newest load is in use");
    }

    #[test]
    fn a_bad_load_keeps_the_previous_set_unless_partial_loads_are_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("iocs.json");
        std::fs::write(&p, line("kunai.rocks")).unwrap();
        let (set, _) = load_files(std::slice::from_ref(&p)).unwrap();
        let target = Arc::new(ArcSwapOption::from_pointee(set));
        let r = Reloader::spawn(vec![p.clone()], false, target.clone()).unwrap();
        for bad in ["", "<html><body>404</body></html>\n", &format!("{}{{\"value\":\"trunc", line("a.example"))] {
            std::fs::write(&p, bad).unwrap();
            r.request();
            let o = next(&r);
            assert!(matches!(o, Outcome::Refused(_)), "{bad:?}: {o:?}");
            let EventData::Error(e) = o.event_data() else { panic!("a refused load is an error event") };
            assert_eq!(e.code, ERROR_RELOAD_REFUSED);
            assert!(e.message.contains("keeping the previous IoCs"), "{}", e.message);
            assert_eq!(target.load().as_ref().unwrap().len(), 1, "{bad:?} replaced the working set");
        }
        std::fs::remove_file(&p).unwrap();
        r.request();
        let o = next(&r);
        assert!(matches!(o, Outcome::Failed(_)), "{o:?}");
        assert!(matches!(o.event_data(), EventData::Error(ErrorData { code: ERROR_RELOAD_FAILED, .. })));

        let partial = Reloader::spawn(vec![p.clone()], true, target.clone()).unwrap();
        std::fs::write(&p, format!("{}not json\n", line("a.example"))).unwrap();
        partial.request();
        let o = next(&partial);
        let EventData::IocReload(d) = o.event_data() else { panic!("{o:?}") };
        assert_eq!((d.iocs, d.files, d.bad_lines), (1, 1, 1));
        struct A;
        impl crate::ioc::Observables for A {
            fn observables(&self, v: &mut dyn FnMut(crate::ioc::Observable<'_>)) {
                v(crate::ioc::Observable::Domain("a.example"))
            }
        }
        assert!(target.load().as_ref().unwrap().scan(&A).is_some(), "the partial load is in use");
    }
}
