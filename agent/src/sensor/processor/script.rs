//! The script of an execve_script: its identity comes from the kernel when
//! the interpreter opens it by the name given to execve (a `Script` record,
//! files.c), never from whatever the name reaches when the agent looks.
//! The event waits for that record (within the hash budget) like it waits
//! for hashes; it is written without a hash, saying why, when the
//! interpreter never opens the script.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use super::{slot, Processor, Slot};
use crate::bpf::abi;
use crate::enrich::filemeta::{self, HeldDir, Source};
use crate::events::{EventData, FileRef, Text};
use crate::sensor::record::{join_path, Exec, ScriptOpen};

/// An execve_script waiting for its interpreter to open the script.
#[derive(Debug)]
pub(crate) struct ScriptWait {
    tgid: u32,
    /// `time_ns` of the exec: tells this exec's script from a later one's.
    exec_time_ns: u64,
    /// How the event names the script.
    path: Text,
    /// For a relative name, where the script is (cwd + name): an
    /// interpreter that opens `<dir>/<name>` must have opened that.
    expected: Option<String>,
}

impl ScriptWait {
    /// What an exec of a script waits for; `path` is how the event names it.
    pub(crate) fn new(e: &Exec, path: Text) -> Self {
        let expected = (!e.filename.starts_with(b"/")).then(|| {
            let cwd = e.cwd.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
            join_path(&cwd, &String::from_utf8_lossy(&e.filename))
        });
        ScriptWait { tgid: e.hdr.task.tgid, exec_time_ns: e.hdr.time_ns, path, expected }
    }

    /// Why the script was not hashed, in the event.
    pub(crate) fn fail(self, data: &mut EventData, why: &str) {
        if let Some(f) = slot(data, Slot::Exe) {
            *f = filemeta::error_meta(&self.path, why).into();
        }
    }
}

/// Where the worker may read the script the interpreter opened, all in the
/// process's own view: its descriptor, any descriptor holding the file (an
/// interpreter may move it), the name in its root; once it is gone, the
/// name in the root of a live process of the same mount namespace (its
/// parent, or the agent itself), or in its root lent to the agent (`lent`),
/// never in another namespace. Every source is identity-checked against
/// what the kernel saw opened.
pub(crate) fn script_sources(o: &ScriptOpen, own_mnt_ns: u32, lent: Option<Arc<File>>) -> Vec<Source> {
    let (task, parent) = (&o.hdr.task, &o.hdr.parent);
    let fds = format!("/proc/{}/fd", task.tgid);
    let mut v = vec![Source::Lookup(format!("{fds}/{}", o.fd).into()), Source::Descriptors(fds.into())];
    if !o.truncated && !o.deleted && o.path.starts_with(b"/") {
        let path = filemeta::path_of(&o.path);
        let mut roots = vec![format!("/proc/{}/root", task.tgid)];
        if parent.mnt_ns == task.mnt_ns {
            roots.push(format!("/proc/{}/root", parent.tgid));
        }
        if task.mnt_ns == own_mnt_ns {
            roots.push("/".into());
        }
        v.extend(roots.into_iter().map(|root| Source::InRoot { root: PathBuf::from(root), path: path.clone() }));
        if let Some(root) = lent {
            v.push(Source::InHeldRoot { root: HeldDir(root), path });
        }
    }
    v
}

/// The inode number of the agent's own mount namespace (0 if unknown:
/// then no process counts as sharing it).
pub(crate) fn own_mnt_ns() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/mnt").map(|m| m.ino() as u32).unwrap_or(0)
}

impl Processor {
    /// An exec of a script by `tgid`: past [`abi::SCRIPT_MARKS`] scripts
    /// not opened yet, the kernel forgets the oldest, so it never will be.
    pub(crate) fn script_replaced(&mut self, tgid: u32) {
        let oldest = match self.scripts.get(&tgid) {
            Some(times) if times.len() >= abi::SCRIPT_MARKS => times[0],
            _ => return,
        };
        let why = format!(
            "not hashed: the process ran {} other scripts before its interpreter opened this one",
            abi::SCRIPT_MARKS
        );
        self.fail_scripts(tgid, |t| t == oldest, &why);
    }

    /// The end of a process: its scripts, if not opened yet, never will be.
    pub(crate) fn script_process_ended(&mut self, tgid: u32) {
        if self.scripts.contains_key(&tgid) {
            let why = "not hashed: the interpreter did not open the script (its process ended first)";
            self.fail_scripts(tgid, |_| true, why);
        }
    }

    fn fail_scripts(&mut self, tgid: u32, which: impl Fn(u64) -> bool, why: &str) {
        for w in self.pending.iter_mut() {
            if w.script.as_ref().is_some_and(|s| s.tgid == tgid && which(s.exec_time_ns)) {
                if let Some(s) = w.script.take() {
                    s.fail(&mut w.ev.data, why);
                }
            }
        }
        if let Some(times) = self.scripts.get_mut(&tgid) {
            times.retain(|t| !which(*t));
            if times.is_empty() {
                self.scripts.remove(&tgid);
            }
        }
    }

    /// No record is awaited for `s` any more.
    pub(crate) fn forget_script(&mut self, s: &ScriptWait) {
        if let Some(times) = self.scripts.get_mut(&s.tgid) {
            times.retain(|t| *t != s.exec_time_ns);
            if times.is_empty() {
                self.scripts.remove(&s.tgid);
            }
        }
    }

    /// A script's interpreter opened it: its event now waits for the hashes
    /// of what was opened (or says why there are none).
    pub(crate) fn script_opened(&mut self, o: &ScriptOpen) {
        let tgid = o.hdr.task.tgid;
        if !self.scripts.get(&tgid).is_some_and(|times| times.contains(&o.exec_time_ns)) {
            return;
        }
        let waiting =
            |w: &super::Waiting| w.script.as_ref().is_some_and(|s| s.tgid == tgid && s.exec_time_ns == o.exec_time_ns);
        let Some(i) = self.pending.iter().position(waiting) else { return };
        let Some(mut w) = self.pending.remove(i) else { return };
        if let Some(s) = w.script.take() {
            self.forget_script(&s);
            let meta = match opened_elsewhere(&s, o) {
                Some(why) => filemeta::error_meta(&s.path, &why).into(),
                None => {
                    let own = self.mnt_ns;
                    let lent = self.roots.get(o.hdr.task.mnt_ns);
                    self.file_ref(o.key, &s.path, || script_sources(o, own, lent), Slot::Exe, &mut w.waits)
                }
            };
            if let Some(f) = slot(&mut w.ev.data, Slot::Exe) {
                *f = meta;
            }
        }
        self.pending.insert(i, w);
    }

    /// Holds `ev` until its script is opened (then hashed), or its deadline.
    pub(crate) fn emit_waiting_script(&mut self, ev: crate::events::Event, waits: super::Waits, script: ScriptWait) {
        self.scripts.entry(script.tgid).or_default().push(script.exec_time_ns);
        self.pending.push_back(super::Waiting {
            ev,
            waits,
            script: Some(script),
            deadline: std::time::Instant::now() + self.budget,
        });
    }
}

/// Why an open by "<dir>/<name>" (an interpreter that made the relative
/// name absolute) is not the script, if it is not: the file opened must be
/// at cwd + name. An exact match of the name needs no check.
fn opened_elsewhere(s: &ScriptWait, o: &ScriptOpen) -> Option<String> {
    let expected = s.expected.as_deref().filter(|_| !o.exact)?;
    let opened = String::from_utf8_lossy(&o.path);
    if o.truncated || o.deleted || opened != expected {
        return Some(format!("not hashed: the interpreter opened {opened}, not the script at {expected}"));
    }
    None
}

/// A placeholder for a script whose identity is not known yet.
pub(crate) fn unknown(path: &Text) -> FileRef {
    crate::events::FileMeta { path: path.clone(), ..Default::default() }.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opened(path: &[u8], exact: bool, task_ns: u32, parent_ns: u32) -> ScriptOpen {
        let mut hdr: abi::Header = abi::zeroed();
        (hdr.task.tgid, hdr.task.mnt_ns, hdr.parent.tgid, hdr.parent.mnt_ns) = (42, task_ns, 7, parent_ns);
        ScriptOpen {
            hdr,
            exec_time_ns: 1,
            fd: 3,
            exact,
            key: Default::default(),
            path: path.to_vec(),
            truncated: false,
            deleted: false,
        }
    }

    fn wait(expected: Option<&str>) -> ScriptWait {
        ScriptWait { tgid: 42, exec_time_ns: 1, path: "/d/x.py".into(), expected: expected.map(String::from) }
    }

    #[test]
    fn an_absolute_open_of_a_relative_name_must_be_the_file_in_the_cwd() {
        let w = wait(Some("/d/x.py"));
        assert_eq!(opened_elsewhere(&w, &opened(b"/d/x.py", false, 1, 1)), None);
        // a library of the same name opened first (python's encodings/utf_8.py for "utf_8.py")
        let why = opened_elsewhere(&w, &opened(b"/usr/lib/x.py", false, 1, 1)).unwrap();
        assert!(why.contains("not the script at /d/x.py"), "{why}");
        // the very name given: nothing to check
        assert_eq!(opened_elsewhere(&w, &opened(b"/elsewhere/x.py", true, 1, 1)), None);
        assert_eq!(opened_elsewhere(&wait(None), &opened(b"/a", false, 1, 1)), None);
    }

    #[test]
    fn a_script_is_read_only_in_its_process_s_view() {
        let lent = Arc::new(File::open("/").unwrap());
        let with_lent = |o: &ScriptOpen, own| -> Vec<String> {
            script_sources(o, own, Some(lent.clone()))
                .iter()
                .map(|s| match s {
                    Source::InRoot { root, path } => format!("{}:{}", root.display(), path.display()),
                    Source::InHeldRoot { path, .. } => format!("lent:{}", path.display()),
                    other => other.path().display().to_string(),
                })
                .collect()
        };
        let roots = |o: &ScriptOpen, own| -> Vec<String> {
            script_sources(o, own, None)
                .iter()
                .map(|s| match s {
                    Source::InRoot { root, path } => format!("{}:{}", root.display(), path.display()),
                    other => other.path().display().to_string(),
                })
                .collect()
        };
        let o = opened(b"/tmp/s.sh", true, 5, 5);
        assert_eq!(
            roots(&o, 5),
            ["/proc/42/fd/3", "/proc/42/fd", "/proc/42/root:/tmp/s.sh", "/proc/7/root:/tmp/s.sh", "/:/tmp/s.sh"]
        );
        // another namespace than the agent's and its parent's: only through the process
        assert_eq!(
            roots(&opened(b"/tmp/s.sh", true, 6, 5), 5),
            ["/proc/42/fd/3", "/proc/42/fd", "/proc/42/root:/tmp/s.sh"]
        );
        // a name that is not one (cut, deleted, memfd) only through descriptors
        let mut cut = opened(b"/s.sh", true, 5, 5);
        cut.truncated = true;
        assert_eq!(roots(&cut, 5), ["/proc/42/fd/3", "/proc/42/fd"]);
        // a namespace whose root is lent: also by name under that root, last
        assert_eq!(
            with_lent(&opened(b"/tmp/s.sh", true, 6, 5), 5),
            ["/proc/42/fd/3", "/proc/42/fd", "/proc/42/root:/tmp/s.sh", "lent:/tmp/s.sh"]
        );
        assert_eq!(with_lent(&cut, 5), ["/proc/42/fd/3", "/proc/42/fd"]);
    }
}
