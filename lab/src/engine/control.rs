//! The instructor's side of a run: publish the MISP event, click to run a
//! step, or stop the run. The web calls these; the run waits on them.

use std::collections::BTreeSet;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The click of a trainee's "I ran them" (not a step id: those have no `@`).
pub const RAN_STEPS: &str = "@ran-steps";

#[derive(Debug, Default)]
struct State {
    publish: bool,
    clicked: BTreeSet<String>,
    cancelled: bool,
}

/// What an instructor asked of a run; cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct RunControl {
    inner: Arc<(Mutex<State>, Condvar)>,
}

/// What a wait on the instructor ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// What was waited for happened.
    Done,
    /// The run was stopped.
    Cancelled,
    /// Time to look again (the caller polls something else meanwhile).
    Timeout,
}

impl RunControl {
    fn update(&self, f: impl FnOnce(&mut State)) {
        let (lock, cv) = &*self.inner;
        f(&mut lock.lock().unwrap_or_else(|e| e.into_inner()));
        cv.notify_all();
    }

    /// The instructor publishes the run's MISP event (the run does it with the instructor's key).
    pub fn publish(&self) {
        self.update(|s| s.publish = true);
    }

    /// The instructor clicks: step `step` (triggered `on: instructor`) may run.
    pub fn click(&self, step: &str) {
        self.update(|s| {
            s.clicked.insert(step.to_string());
        });
    }

    /// The trainee says they ran the steps they were asked to run on their endpoint.
    pub fn ran_steps(&self) {
        self.click(RAN_STEPS);
    }

    /// Stops the run: what waits gives up, the run ends failed.
    pub fn cancel(&self) {
        self.update(|s| s.cancelled = true);
    }

    /// Whether the run was stopped.
    pub fn cancelled(&self) -> bool {
        self.inner.0.lock().unwrap_or_else(|e| e.into_inner()).cancelled
    }

    fn wait(&self, timeout: Duration, done: impl Fn(&State) -> bool) -> Wake {
        let (lock, cv) = &*self.inner;
        let deadline = Instant::now() + timeout;
        let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if s.cancelled {
                return Wake::Cancelled;
            }
            if done(&s) {
                return Wake::Done;
            }
            let now = Instant::now();
            if now >= deadline {
                return Wake::Timeout;
            }
            s = cv.wait_timeout(s, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Waits up to `timeout` for [`RunControl::publish`].
    pub fn wait_publish(&self, timeout: Duration) -> Wake {
        self.wait(timeout, |s| s.publish)
    }

    /// Waits up to `timeout` for a click on `step`.
    pub fn wait_click(&self, step: &str, timeout: Duration) -> Wake {
        self.wait(timeout, |s| s.clicked.contains(step))
    }

    /// Sleeps `timeout` unless the run is stopped meanwhile.
    pub fn sleep(&self, timeout: Duration) -> Wake {
        match self.wait(timeout, |_| false) {
            Wake::Cancelled => Wake::Cancelled,
            _ => Wake::Done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_end_on_the_action_on_cancel_or_at_their_timeout() {
        let c = RunControl::default();
        assert_eq!(c.wait_publish(Duration::from_millis(5)), Wake::Timeout);
        let other = c.clone();
        let t = std::thread::spawn(move || other.publish());
        assert_eq!(c.wait_publish(Duration::from_secs(60)), Wake::Done);
        t.join().unwrap();
        c.click("dig");
        assert_eq!(c.wait_click("dig", Duration::ZERO), Wake::Done);
        assert_eq!(c.wait_click("other", Duration::ZERO), Wake::Timeout);
        c.cancel();
        assert_eq!(c.wait_click("other", Duration::from_secs(60)), Wake::Cancelled);
        assert_eq!(c.sleep(Duration::from_secs(60)), Wake::Cancelled);
        assert!(c.cancelled());
    }
}
