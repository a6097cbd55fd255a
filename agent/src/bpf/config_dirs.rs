//! The configuration directories of `read_config` / `write_config`: a file
//! opened below one of them makes a `*_config` event instead of `read` /
//! `write`. The kernel side compares a clean absolute name with them as
//! prefixes; for any other name (relative, with `..`) it compares the
//! opened file's parent directories (up to 6 levels) with them by device
//! and inode, which this module gives it.

use aya::maps::HashMap;
use aya::Ebpf;

use super::BpfError;
use crate::enrich::filemeta::FileKey;

/// Where Linux keeps configuration an attacker changes to persist or to
/// gain privileges: system configuration, systemd units shipped by packages,
/// cron tables, kernel module and sysctl settings, udev rules, root's SSH
/// keys. The same list as IOCLAB_CONFIG_DIRS in bpf/events.h (a test checks).
pub const CONFIG_DIRS: &[&str] = &[
    "/etc",
    "/usr/lib/systemd",
    "/lib/systemd",
    "/usr/local/lib/systemd",
    "/var/spool/cron",
    "/usr/lib/modprobe.d",
    "/lib/modprobe.d",
    "/usr/lib/modules-load.d",
    "/usr/lib/sysctl.d",
    "/usr/lib/tmpfiles.d",
    "/usr/lib/udev/rules.d",
    "/lib/udev/rules.d",
    "/root/.ssh",
];

/// Key of the `config_dirs` map (`struct config_dir_key` in bpf/config_dirs.c).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigDirKey {
    /// Inode number of the directory.
    pub ino: u64,
    /// Its device, in the kernel's encoding.
    pub dev: u32,
    _pad: u32,
}

// SAFETY: repr(C) integers, no padding left uninitialised (the pad is a field).
unsafe impl aya::Pod for ConfigDirKey {}

/// The keys of the directories of `dirs` that exist now (a directory created
/// later is not covered until the agent restarts); one per directory, even
/// when several paths name it (/lib and /usr/lib on merged-/usr systems).
pub fn keys(dirs: &[&str]) -> Vec<ConfigDirKey> {
    let mut keys: Vec<ConfigDirKey> = Vec::new();
    for dir in dirs {
        let Ok(meta) = std::fs::metadata(dir) else { continue };
        if !meta.is_dir() {
            continue;
        }
        let k = FileKey::from_metadata(&meta);
        let key = ConfigDirKey { ino: k.ino, dev: k.dev, _pad: 0 };
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys
}

/// Fills the kernel side's `config_dirs` map; returns how many directories.
/// Without the map (programs built for another architecture) there is nothing to do.
pub fn fill(ebpf: &mut Ebpf) -> Result<usize, BpfError> {
    let Some(map) = ebpf.map_mut("config_dirs") else { return Ok(0) };
    let mut map: HashMap<_, ConfigDirKey, u8> =
        HashMap::try_from(map).map_err(|e| BpfError::Map("config_dirs", e.to_string()))?;
    let keys = keys(CONFIG_DIRS);
    for key in &keys {
        map.insert(key, 1, 0).map_err(|e| BpfError::Map("config_dirs", e.to_string()))?;
    }
    Ok(keys.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn existing_directories_only_and_no_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap().to_string();
        let file = dir.path().join("f");
        std::fs::write(&file, b"").unwrap();
        let again = format!("{d}/.");
        let keys = keys(&[&d, &again, file.to_str().unwrap(), "/nonexistent/ioclab"]);
        assert_eq!(keys.len(), 1, "a file, a missing path and a second name of the same directory add nothing");
        assert_eq!(keys[0].ino, std::fs::metadata(&d).map(|m| std::os::unix::fs::MetadataExt::ino(&m)).unwrap());
        assert!(CONFIG_DIRS.contains(&"/etc"));
        assert_eq!(std::mem::size_of::<ConfigDirKey>(), 16, "same size as struct config_dir_key");
    }
}
