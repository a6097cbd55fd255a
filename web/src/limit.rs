//! Login rate limiting: after too many failed logins for one account, or
//! from one client address, within a window, further attempts are refused
//! (even with the right password) until the oldest failure ages out.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many failures, over what window.
#[derive(Debug, Clone, Copy)]
pub struct LimitConfig {
    /// Failed logins allowed per account in the window.
    pub per_account: usize,
    /// Failed logins allowed per client address in the window (a classroom may share one NAT).
    pub per_address: usize,
    /// The window.
    pub window: Duration,
}

impl Default for LimitConfig {
    fn default() -> LimitConfig {
        LimitConfig { per_account: 5, per_address: 30, window: Duration::from_secs(600) }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Account(String),
    Address(IpAddr),
}

/// The failures seen.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    config: LimitConfig,
    failures: Mutex<HashMap<Key, VecDeque<Instant>>>,
}

/// A refused attempt: how long to wait, for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocked {
    /// Until the oldest failure ages out.
    pub retry_after: Duration,
}

impl Blocked {
    /// The message shown at the login form.
    pub fn message(&self) -> String {
        let minutes = self.retry_after.as_secs().div_ceil(60).max(1);
        format!(
            "Too many failed logins for this account or from this computer. Try again in {minutes} minute{}, or ask your instructor to reset your password.",
            if minutes == 1 { "" } else { "s" }
        )
    }
}

impl LoginLimiter {
    /// A limiter with `config`.
    pub fn new(config: LimitConfig) -> LoginLimiter {
        LoginLimiter { config, failures: Mutex::default() }
    }

    fn keys(account: &str, address: Option<IpAddr>) -> Vec<(Key, bool)> {
        let mut keys = vec![(Key::Account(account.to_string()), true)];
        if let Some(a) = address {
            keys.push((Key::Address(a), false));
        }
        keys
    }

    /// Whether `account` from `address` may try now.
    pub fn check(&self, account: &str, address: Option<IpAddr>) -> Result<(), Blocked> {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        for (key, is_account) in Self::keys(account, address) {
            let Some(q) = map.get_mut(&key) else { continue };
            while q.front().is_some_and(|t| now.duration_since(*t) >= self.config.window) {
                q.pop_front();
            }
            let max = if is_account { self.config.per_account } else { self.config.per_address };
            if q.len() >= max {
                let oldest = *q.front().expect("len >= max >= 1");
                return Err(Blocked { retry_after: self.config.window.saturating_sub(now.duration_since(oldest)) });
            }
        }
        Ok(())
    }

    /// Records a failed login.
    pub fn failed(&self, account: &str, address: Option<IpAddr>) {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        for (key, _) in Self::keys(account, address) {
            map.entry(key).or_default().push_back(now);
        }
    }

    /// A successful login clears its account's failures (not its address's).
    pub fn succeeded(&self, account: &str) {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(&Key::Account(account.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_is_blocked_after_its_failures_and_others_are_not() {
        let l = LoginLimiter::new(LimitConfig { per_account: 3, per_address: 5, window: Duration::from_secs(60) });
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..3 {
            assert!(l.check("alice", Some(ip)).is_ok());
            l.failed("alice", Some(ip));
        }
        let b = l.check("alice", Some(ip)).unwrap_err();
        assert!(b.retry_after <= Duration::from_secs(60));
        assert!(b.message().contains("Try again in 1 minute"), "{}", b.message());
        assert!(l.check("bob", Some(ip)).is_ok(), "another account from the same address");
        l.failed("bob", Some(ip));
        l.failed("carol", Some(ip));
        assert!(l.check("dave", Some(ip)).is_err(), "the address is over its limit");
        assert!(l.check("dave", Some("127.0.0.2".parse().unwrap())).is_ok());
    }

    #[test]
    fn failures_age_out() {
        let l = LoginLimiter::new(LimitConfig { per_account: 1, per_address: 9, window: Duration::from_millis(1) });
        l.failed("alice", None);
        std::thread::sleep(Duration::from_millis(5));
        assert!(l.check("alice", None).is_ok());
    }
}
