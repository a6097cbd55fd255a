//! Taps: consumers other than the endpoint output (the sandbox, one tap per
//! detonation) that share the one loaded set of programs. A consumer
//! subscribes to a cgroup (v2 id, as `bpf_get_current_cgroup_id` gives it)
//! and receives that cgroup's events as Kunai JSON lines; those events go
//! to the tap only, never to the endpoint output, so a detonation is never
//! an endpoint detection.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The set of taps of one running sensor; cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct Taps {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Subscriptions, few: a linear scan is the cheapest lookup.
    subs: Mutex<Vec<Subscription>>,
    /// `subs.len()`, read without the lock on every event.
    active: AtomicUsize,
    /// The taps are the only consumers: other events are not even serialised.
    only: AtomicBool,
    next_id: AtomicUsize,
}

#[derive(Debug)]
struct Subscription {
    id: usize,
    cgroup_id: u64,
    tx: Sender<String>,
}

impl Taps {
    /// Starts receiving the events of the processes in cgroup `cgroup_id`
    /// (from now on); they stop going to the endpoint output.
    pub fn subscribe(&self, cgroup_id: u64) -> Tap {
        let (tx, rx) = channel();
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let mut subs = self.inner.subs.lock().unwrap_or_else(|e| e.into_inner());
        subs.push(Subscription { id, cgroup_id, tx });
        self.inner.active.store(subs.len(), Ordering::Release);
        Tap { id, rx, taps: self.clone() }
    }

    /// Makes the taps the sensor's only consumers (a sensor run for the
    /// sandbox alone): the events no tap wants are dropped unwritten.
    pub fn set_only(&self, only: bool) {
        self.inner.only.store(only, Ordering::Relaxed);
    }

    /// Whether events no tap wants are dropped.
    pub(crate) fn only(&self) -> bool {
        self.inner.only.load(Ordering::Relaxed)
    }

    fn unsubscribe(&self, id: usize) {
        let mut subs = self.inner.subs.lock().unwrap_or_else(|e| e.into_inner());
        subs.retain(|s| s.id != id);
        self.inner.active.store(subs.len(), Ordering::Release);
    }

    /// Whether an event of `cgroup_id` belongs to a tap (one atomic load when none is open).
    pub(crate) fn wants(&self, cgroup_id: u64) -> bool {
        cgroup_id != 0
            && self.inner.active.load(Ordering::Acquire) > 0
            && self.inner.subs.lock().unwrap_or_else(|e| e.into_inner()).iter().any(|s| s.cgroup_id == cgroup_id)
    }

    /// Hands `line` to the taps of `cgroup_id`.
    pub(crate) fn send(&self, cgroup_id: u64, line: &str) {
        let subs = self.inner.subs.lock().unwrap_or_else(|e| e.into_inner());
        for s in subs.iter().filter(|s| s.cgroup_id == cgroup_id) {
            // a consumer that went away without unsubscribing: nothing to do
            let _ = s.tx.send(line.to_owned());
        }
    }
}

/// One subscription; dropping it unsubscribes.
#[derive(Debug)]
pub struct Tap {
    id: usize,
    rx: Receiver<String>,
    taps: Taps,
}

impl Tap {
    /// The next event line, waiting up to `timeout`; `None` when none came.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<String> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// Every line received so far, without waiting.
    pub fn drain(&self) -> Vec<String> {
        self.rx.try_iter().collect()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.taps.unsubscribe(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tap_gets_its_cgroup_only_and_stops_when_dropped() {
        let taps = Taps::default();
        assert!(!taps.wants(7), "no tap: nothing is taken from the endpoint output");
        let tap = taps.subscribe(7);
        assert!(taps.wants(7));
        assert!(!taps.wants(8));
        assert!(!taps.wants(0), "records without a cgroup id are never tapped");
        taps.send(7, "{\"a\":1}");
        taps.send(8, "{\"b\":2}");
        assert_eq!(tap.drain(), vec!["{\"a\":1}".to_string()]);
        drop(tap);
        assert!(!taps.wants(7));
        assert!(!taps.only());
        taps.clone().set_only(true);
        assert!(taps.only(), "clones share the setting");
    }
}
