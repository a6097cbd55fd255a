//! What the agent says about itself and its machine: `info.host` and the
//! `start` event.

use sha2::Digest as _;
use uuid::Uuid;

use crate::config::Config;
use crate::events::{ConfigDigest, EventData, FileMeta, HostInfo, SensorInfo, StartData, SystemInfo};

fn read_trim(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// The host: configured uuid, else one derived from /etc/machine-id (stable across restarts).
pub fn host_info(config: &Config) -> HostInfo {
    let uuid = config.host_uuid.unwrap_or_else(|| match read_trim("/etc/machine-id") {
        Some(id) => Uuid::new_v5(&Uuid::NAMESPACE_OID, id.as_bytes()),
        None => Uuid::new_v4(),
    });
    let name = read_trim("/proc/sys/kernel/hostname").unwrap_or_else(|| "localhost".into());
    HostInfo { uuid, name, container: None }
}

fn uname_field(f: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = f.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The agent's own executable is hashed up to this size: a release build is
/// a few tens of MB; a debug build (hundreds of MB) would delay the start
/// event by seconds, and gets the usual "not hashed: over the limit" error.
pub const OWN_EXE_HASH_MAX: u64 = 64 << 20;

/// The agent's own executable with its hashes (`start.kunai.exe`), read
/// through /proc/self/exe: the very file running, even if its path was
/// replaced. Started in a thread while the eBPF programs load: a debug
/// build is hundreds of MB.
pub fn own_exe(max_hash_size: u64) -> std::thread::JoinHandle<FileMeta> {
    std::thread::spawn(move || {
        let path = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default();
        use crate::enrich::filemeta::{error_meta, hash_now, key_of, Source};
        let path: crate::events::Text = path.into();
        let link = std::path::Path::new("/proc/self/exe");
        match key_of(link) {
            Ok(key) => hash_now(&path, key, &[Source::Lookup(link.into())], max_hash_size),
            Err(e) => error_meta(&path, &e.to_string()),
        }
    })
}

/// `data` of the `start` event.
pub fn start_data(config: &Config, exe: FileMeta) -> EventData {
    // SAFETY: zeroed utsname is valid; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    unsafe { libc::uname(&mut u) };
    let uptime: f64 =
        read_trim("/proc/uptime").and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok())).unwrap_or(0.0);
    let now = crate::events::time::UtcTime::now();
    let boot = crate::events::time::UtcTime(now.0 - (uptime * 1e9) as i128);
    EventData::Start(StartData {
        system: SystemInfo {
            uptime,
            boot_time: boot.to_string(),
            sysname: uname_field(&u.sysname),
            release: uname_field(&u.release),
            version: uname_field(&u.version),
            machine: uname_field(&u.machine),
            domainname: uname_field(&u.domainname),
        },
        kunai: SensorInfo {
            name: "ioclab".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            exe,
            config: ConfigDigest { sha256: format!("{:x}", sha2::Sha256::digest(config.to_yaml().as_bytes())) },
        },
    })
}
