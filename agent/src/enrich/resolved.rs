//! Names each process resolved, learned from the DNS answers it received:
//! `dst.hostname` of its later `connect` and `send_data` events.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::events::Text;

/// Addresses a process keeps at most; a process resolving more starts over
/// (a crawler must not grow the agent without bound).
const PER_PROCESS: usize = 1024;

/// Processes with names; beyond this the oldest-looking entries go (exits
/// normally remove them long before).
const PROCESSES: usize = 16384;

/// (tgid, start time in ns) identifies a process across pid reuse.
type ProcessKey = (u32, u64);

/// Per-process address → name maps.
#[derive(Default)]
pub struct ResolvedNames {
    names: HashMap<ProcessKey, HashMap<IpAddr, Text, ahash::RandomState>, ahash::RandomState>,
}

fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

impl ResolvedNames {
    /// Records that `process` resolved `name` to each of `addresses`.
    pub fn learn(&mut self, process: ProcessKey, name: &str, addresses: &[IpAddr]) {
        if addresses.is_empty() {
            return;
        }
        if self.names.len() >= PROCESSES && !self.names.contains_key(&process) {
            self.names.clear();
        }
        let map = self.names.entry(process).or_default();
        if map.len() + addresses.len() > PER_PROCESS {
            map.clear();
        }
        let name: Text = name.into();
        for ip in addresses {
            map.insert(canonical(*ip), name.clone());
        }
    }

    /// The name `process` resolved to `ip`, if it did.
    pub fn name(&self, process: ProcessKey, ip: IpAddr) -> Option<&Text> {
        self.names.get(&process)?.get(&canonical(ip))
    }

    /// Forgets an exited process.
    pub fn forget(&mut self, process: ProcessKey) {
        self.names.remove(&process);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_per_process_and_forgotten() {
        let mut r = ResolvedNames::default();
        let ip: IpAddr = "127.0.66.80".parse().unwrap();
        r.learn((10, 1), "why.kunai.rocks", &[ip]);
        assert_eq!(r.name((10, 1), ip).map(|t| &**t), Some("why.kunai.rocks"));
        assert_eq!(r.name((10, 1), "::ffff:127.0.66.80".parse().unwrap()).map(|t| &**t), Some("why.kunai.rocks"));
        assert!(r.name((11, 1), ip).is_none(), "another process");
        assert!(r.name((10, 2), ip).is_none(), "a reused pid");
        r.forget((10, 1));
        assert!(r.name((10, 1), ip).is_none());
    }

    #[test]
    fn bounded() {
        let mut r = ResolvedNames::default();
        for i in 0..5000u32 {
            r.learn((1, 1), "x", &[IpAddr::from(i.to_be_bytes())]);
        }
        assert!(r.names[&(1, 1)].len() <= PER_PROCESS);
    }
}
