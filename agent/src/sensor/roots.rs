//! Roots of mount namespaces lent to the agent by the program that embeds
//! it (the lab lends its steps' namespace): a script run there is read in
//! that namespace's view even after every process of it has ended, where
//! `/proc/<pid>/root` no longer leads anywhere.

use std::collections::HashMap;
use std::fs::File;
use std::sync::{Arc, Mutex};

/// The lent roots, by mount namespace inode; cheap to clone, shared with
/// the agent's processor.
#[derive(Debug, Clone, Default)]
pub struct NsRoots {
    lent: Arc<Mutex<HashMap<u32, Arc<File>>>>,
}

/// A root lent to the agent: given back (closed by the agent) when dropped.
#[must_use = "the root is given back as soon as this is dropped"]
#[derive(Debug)]
pub struct LentRoot {
    roots: NsRoots,
    mnt_ns: u32,
    /// The namespace itself when [`NsRoots::lend_of`] opened it: a namespace
    /// with no process and no holder is torn down, its mounts detached from
    /// the root, which would then show what lies under them.
    _ns: Option<File>,
}

impl NsRoots {
    /// Lends `root`, a directory descriptor of the root of mount namespace
    /// `mnt_ns` (its inode, as in events' `namespaces.mnt`), until the
    /// returned guard drops. The agent only resolves names under it, as the
    /// namespace's processes would.
    pub fn lend(&self, mnt_ns: u64, root: File) -> LentRoot {
        // the kernel side reports the inode's low 32 bits
        let mnt_ns = mnt_ns as u32;
        self.lent.lock().unwrap_or_else(|p| p.into_inner()).insert(mnt_ns, Arc::new(root));
        LentRoot { roots: self.clone(), mnt_ns, _ns: None }
    }

    /// Lends the root of the mount namespace live process `pid` is in, and
    /// holds that namespace (its mounts) until the guard drops.
    pub fn lend_of(&self, pid: u32) -> std::io::Result<LentRoot> {
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        let named = |path: String| move |e: std::io::Error| std::io::Error::new(e.kind(), format!("{path}: {e}"));
        let ns_path = format!("/proc/{pid}/ns/mnt");
        let ns = File::open(&ns_path).map_err(named(ns_path.clone()))?;
        let mnt_ns = ns.metadata().map_err(named(ns_path))?.ino();
        let root = format!("/proc/{pid}/root");
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(&root)
            .map_err(named(root))?;
        let mut lent = self.lend(mnt_ns, dir);
        lent._ns = Some(ns);
        Ok(lent)
    }

    /// The root lent for `mnt_ns`, if any.
    pub(crate) fn get(&self, mnt_ns: u32) -> Option<Arc<File>> {
        self.lent.lock().unwrap_or_else(|p| p.into_inner()).get(&mnt_ns).cloned()
    }
}

impl Drop for LentRoot {
    fn drop(&mut self) {
        // a read in progress keeps its own reference: it finishes, then the fd closes
        self.roots.lent.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.mnt_ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lent_root_is_found_until_its_guard_drops() {
        let roots = NsRoots::default();
        assert!(roots.get(7).is_none());
        let guard = roots.lend(7 | (1 << 32), File::open("/").unwrap());
        let root = roots.get(7).expect("lent under the low 32 bits");
        drop(guard);
        assert!(roots.get(7).is_none());
        // a reader that took it before keeps a working descriptor
        assert!(root.metadata().unwrap().is_dir());
    }

    #[test]
    fn a_process_s_root_is_lent_under_its_namespace_and_a_gone_one_is_named() {
        use std::os::unix::fs::MetadataExt;
        let roots = NsRoots::default();
        let own = std::fs::metadata("/proc/self/ns/mnt").unwrap().ino() as u32;
        let lent = roots.lend_of(std::process::id()).unwrap();
        assert_eq!(roots.get(own).unwrap().metadata().unwrap().ino(), std::fs::metadata("/").unwrap().ino());
        drop(lent);
        let err = roots.lend_of(u32::MAX).unwrap_err().to_string();
        assert!(err.contains(&format!("/proc/{}/ns/mnt", u32::MAX)), "{err}");
    }
}
