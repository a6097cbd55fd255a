//! IoC reloads (SIGHUP): one worker thread loads the files, one load at a
//! time. Requests made while a load runs coalesce into one more load after
//! it, so the set in use is always the newest load's, never an older one
//! that happened to finish last. A load with no valid IoC or with bad lines
//! (a truncated download, an HTML error page) is refused and the previous
//! set stays, unless `scanner.accept_partial_iocs` says otherwise. Every
//! outcome is handed back to the event loop, which writes it as an event.
//!
//! Besides SIGHUP, an embedding program asks for loads through [`Reloads`]
//! (a remote agent, after writing the IoCs the appliance pushed): its
//! ticket tells which finished load read the files after the ask.
//! The pushed file may be absent (nothing pushed yet): it is then skipped.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

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
        match self.applied() {
            Ok(r) => EventData::IocReload(IocReloadData {
                iocs: r.loaded as u64,
                files: r.per_file.len() as u64,
                bad_lines: r.bad.len() as u64,
                duplicates: (r.duplicates.len() + r.repeated_files.len()) as u64,
            }),
            Err((code, message)) => EventData::Error(ErrorData { code, message }),
        }
    }

    /// The applied load's report, or the `error.code` and message of a
    /// load that left the previous IoCs in use.
    fn applied(&self) -> Result<&LoadReport, (u64, String)> {
        match self {
            Outcome::Applied(r) => Ok(r),
            Outcome::Refused(r) => Err((
                ERROR_RELOAD_REFUSED,
                format!(
                    "IoC reload refused, keeping the previous IoCs: {} ({}); \
                     fix the files or set scanner.accept_partial_iocs",
                    r.counts(),
                    r.refusal().unwrap_or_else(|| "refused".into())
                ),
            )),
            Outcome::Failed(e) => {
                Err((ERROR_RELOAD_FAILED, format!("IoC reload failed, keeping the previous IoCs: {e}")))
            }
        }
    }

    /// The outcome as whoever asked for the load sees it.
    fn report(&self) -> Report {
        match self.applied() {
            Ok(r) => Report { applied: true, message: format!("IoCs loaded: {}", r.counts()) },
            Err((_, message)) => Report { applied: false, message },
        }
    }
}

/// How a load went, as whoever asked for it sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Whether the new set is in use.
    pub applied: bool,
    /// The load's counts, or why the previous IoCs stay.
    pub message: String,
}

#[derive(Debug, Default)]
struct Requests {
    pending: bool,
    stop: bool,
    /// Asks made through [`Reloads::ask`].
    asked: u64,
    /// The newest ask a finished load started after.
    served: u64,
    /// That load's report.
    last: Option<Report>,
}

/// Requests for IoC loads, shared by the reload worker and those asking
/// (the sensor's loop on SIGHUP, an embedding program through `Control`).
#[derive(Debug, Default, Clone)]
pub struct Reloads(Arc<(Mutex<Requests>, Condvar)>);

impl Reloads {
    fn lock(&self) -> std::sync::MutexGuard<'_, Requests> {
        self.0 .0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks for a load (now, or once more after the one running); returns a ticket for [`Reloads::wait`].
    pub fn ask(&self) -> u64 {
        let mut r = self.lock();
        r.pending = true;
        r.asked += 1;
        let ticket = r.asked;
        drop(r);
        self.0 .1.notify_all();
        ticket
    }

    /// Waits up to `timeout` for a load that read the files after the ask
    /// of `ticket`; `None` if none came, or the agent stopped.
    pub fn wait(&self, ticket: u64, timeout: Duration) -> Option<Report> {
        let until = Instant::now() + timeout;
        let mut r = self.lock();
        while r.served < ticket {
            if r.stop {
                return None;
            }
            let left = until.checked_duration_since(Instant::now())?;
            r = self.0 .1.wait_timeout(r, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        r.last.clone()
    }

    /// Takes the pending request (waiting for one); `None` once stopped. Returns the asks it serves.
    fn next(&self) -> Option<u64> {
        let mut r = self.lock();
        while !r.pending && !r.stop {
            r = self.0 .1.wait(r).unwrap_or_else(|p| p.into_inner());
        }
        if r.stop {
            return None;
        }
        r.pending = false;
        Some(r.asked)
    }

    fn finished(&self, serving: u64, report: Report) {
        let mut r = self.lock();
        r.served = r.served.max(serving);
        r.last = Some(report);
        drop(r);
        self.0 .1.notify_all();
    }

    /// No more loads: the worker ends, and waits end at once (the agent stopped).
    pub fn stop(&self) {
        self.lock().stop = true;
        self.0 .1.notify_all();
    }
}

/// The reload worker: [`Reloader::request`] asks for a load,
/// [`Reloader::outcomes`] returns what finished.
pub struct Reloader {
    requests: Reloads,
    outcomes: Receiver<Outcome>,
}

/// The files one load reads: `paths`, and `pushed` if it exists.
pub(crate) fn present(paths: &[PathBuf], pushed: Option<&Path>) -> Vec<PathBuf> {
    let mut all = paths.to_vec();
    all.extend(pushed.filter(|p| p.exists()).map(Path::to_path_buf));
    all
}

impl Reloader {
    /// Starts the worker for `paths` and the `pushed` file (skipped while
    /// absent); a load it accepts replaces `target`. Loads are asked through `requests`.
    pub fn spawn(
        paths: Vec<PathBuf>,
        pushed: Option<PathBuf>,
        accept_partial: bool,
        target: Arc<ArcSwapOption<IocSet>>,
        requests: Reloads,
    ) -> std::io::Result<Self> {
        let (tx, outcomes) = channel();
        let r = requests.clone();
        std::thread::Builder::new().name("ioclab-reload".into()).spawn(move || {
            while let Some(serving) = r.next() {
                let outcome = load(&present(&paths, pushed.as_deref()), accept_partial, &target);
                r.finished(serving, outcome.report());
                if tx.send(outcome).is_err() {
                    return;
                }
            }
        })?;
        Ok(Reloader { requests, outcomes })
    }

    /// Asks for a load: run now, or once more after the one running.
    pub fn request(&self) {
        self.requests.ask();
    }

    /// The loads finished since the last call, in order.
    pub fn outcomes(&self) -> impl Iterator<Item = Outcome> + '_ {
        self.outcomes.try_iter()
    }
}

impl Drop for Reloader {
    fn drop(&mut self) {
        // a load in progress finishes on its own; nothing waits for it
        self.requests.stop();
    }
}

/// One load: the new set replaces `target` if accepted.
fn load(paths: &[PathBuf], accept_partial: bool, target: &ArcSwapOption<IocSet>) -> Outcome {
    match load_files(paths) {
        Ok((set, report)) if report.complete() || accept_partial => {
            target.store(Some(Arc::new(set)));
            Outcome::Applied(report)
        }
        Ok((_, report)) => Outcome::Refused(report),
        Err(e) => Outcome::Failed(e.to_string()),
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

    /// Makes a FIFO at `path`: a load reading it waits until the test feeds it.
    fn fifo(path: &std::path::Path) -> PathBuf {
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string; mkfifo has no other precondition.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        path.to_path_buf()
    }

    /// Writes `text` to the FIFO: the worker's read of it blocks until then.
    fn feed(fifo: &std::path::Path, text: &str) {
        std::fs::OpenOptions::new().write(true).open(fifo).unwrap().write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn requests_during_a_load_make_one_more_load_and_the_newest_wins() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = fifo(&dir.path().join("iocs.fifo"));
        let target = Arc::new(ArcSwapOption::empty());
        let r = Reloader::spawn(vec![fifo.clone()], None, false, target.clone(), Reloads::default()).unwrap();
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
    fn a_ticket_waits_for_a_load_that_read_the_files_after_its_ask() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = fifo(&dir.path().join("pushed.fifo"));
        let reloads = Reloads::default();
        let target = Arc::new(ArcSwapOption::empty());
        let _r = Reloader::spawn(vec![], Some(fifo.clone()), false, target.clone(), reloads.clone()).unwrap();
        let first = reloads.ask();
        // the first load now waits on the FIFO: an ask meanwhile needs the next load
        std::thread::sleep(Duration::from_millis(100));
        let second = reloads.ask();
        feed(&fifo, &line("old.example"));
        assert_eq!(reloads.wait(first, Duration::from_secs(10)).map(|r| r.applied), Some(true));
        assert_eq!(
            reloads.wait(second, Duration::from_millis(300)),
            None,
            "the load that began before the ask does not answer it"
        );
        feed(&fifo, &format!("{}{}", line("new.example"), line("newer.example")));
        let report = reloads.wait(second, Duration::from_secs(10)).expect("the next load answers");
        assert!(report.applied && report.message.contains("2 IoCs"), "{report:?}");
        assert_eq!(target.load().as_ref().unwrap().len(), 2);
    }

    #[test]
    fn an_absent_pushed_file_is_skipped_and_an_empty_load_refused() {
        let dir = tempfile::tempdir().unwrap();
        let pushed = dir.path().join("pushed-iocs.json");
        let reloads = Reloads::default();
        let target = Arc::new(ArcSwapOption::empty());
        let reloader = Reloader::spawn(vec![], Some(pushed.clone()), false, target.clone(), reloads.clone()).unwrap();
        let report = reloads.wait(reloads.ask(), Duration::from_secs(10)).unwrap();
        assert!(!report.applied && report.message.contains("no IoC"), "nothing pushed yet: {report:?}");
        assert!(target.load().is_none());
        std::fs::write(&pushed, line("kunai.rocks")).unwrap();
        let report = reloads.wait(reloads.ask(), Duration::from_secs(10)).unwrap();
        assert!(report.applied, "{report:?}");
        assert_eq!(target.load().as_ref().unwrap().len(), 1);
        // the agent stops: a wait ends at once rather than at its timeout
        drop(reloader);
        let asked = reloads.ask();
        let t = Instant::now();
        assert_eq!(reloads.wait(asked, Duration::from_secs(600)), None);
        assert!(t.elapsed() < Duration::from_secs(600));
    }

    #[test]
    fn a_bad_load_keeps_the_previous_set_unless_partial_loads_are_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("iocs.json");
        std::fs::write(&p, line("kunai.rocks")).unwrap();
        let (set, _) = load_files(std::slice::from_ref(&p)).unwrap();
        let target = Arc::new(ArcSwapOption::from_pointee(set));
        let r = Reloader::spawn(vec![p.clone()], None, false, target.clone(), Reloads::default()).unwrap();
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

        let partial = Reloader::spawn(vec![p.clone()], None, true, target.clone(), Reloads::default()).unwrap();
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
