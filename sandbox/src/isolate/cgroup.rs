//! One cgroup per task: memory and process limits, the id the eBPF sensor
//! tags the task's records with, and the kill switch. Works on pure cgroup
//! v2 (Debian 12) and on the hybrid layout (v1 controllers plus a v2
//! `unified` mount): there the limits live in the v1 `memory` and `pids`
//! hierarchies and the v2 one gives the id (`bpf_get_current_cgroup_id`
//! reads the v2 hierarchy) and `cgroup.kill`.
//!
//! Task cgroups are named `task-<server pid>-<task id>-<n>` under
//! `ioclab-sandbox/` in each hierarchy, so a restarted server can tell the
//! leftovers of a dead one (its pid is gone) from those of a live one.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::detonation::DetonateError;

/// Folder of the sandbox's cgroups in each hierarchy.
pub const PARENT: &str = "ioclab-sandbox";

/// Where the cgroup hierarchies are mounted.
#[derive(Debug, Clone)]
pub struct CgroupLayout {
    /// The v2 hierarchy (the whole tree on pure v2, `unified` on hybrid).
    unified: PathBuf,
    /// Pure v2: limits are set in `unified`.
    pure_v2: bool,
    /// Hybrid: the v1 memory hierarchy.
    v1_memory: Option<PathBuf>,
    /// Hybrid: the v1 pids hierarchy.
    v1_pids: Option<PathBuf>,
}

/// Limits of one task.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Memory, bytes.
    pub memory_bytes: u64,
    /// Processes and threads.
    pub max_pids: u32,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DetonateError {
    let what = what.into();
    move |source| DetonateError::Io { what, source }
}

fn write(path: &Path, value: &str) -> Result<(), DetonateError> {
    fs::write(path, value).map_err(io(format!("writing {value:?} to {}", path.display())))
}

impl CgroupLayout {
    /// Finds the hierarchies under /sys/fs/cgroup.
    pub fn detect() -> Result<Self, DetonateError> {
        Self::detect_at(Path::new("/sys/fs/cgroup"))
    }

    fn detect_at(root: &Path) -> Result<Self, DetonateError> {
        if root.join("cgroup.controllers").exists() {
            return Ok(CgroupLayout { unified: root.into(), pure_v2: true, v1_memory: None, v1_pids: None });
        }
        let unified = root.join("unified");
        if !unified.join("cgroup.procs").exists() {
            return Err(DetonateError::Unsupported(format!(
                "no cgroup v2 hierarchy at {} or {} (the sensor tells a task's processes apart by their v2 cgroup)",
                root.display(),
                unified.display()
            )));
        }
        let v1 = |name: &str| Some(root.join(name)).filter(|p| p.join("cgroup.procs").exists());
        let (v1_memory, v1_pids) = (v1("memory"), v1("pids"));
        if v1_memory.is_none() || v1_pids.is_none() {
            return Err(DetonateError::Unsupported(format!(
                "hybrid cgroups without the v1 memory and pids controllers under {}",
                root.display()
            )));
        }
        Ok(CgroupLayout { unified, pure_v2: false, v1_memory, v1_pids })
    }

    /// The `ioclab-sandbox` folder of every hierarchy used, the v2 one first.
    fn parents(&self) -> Vec<PathBuf> {
        let mut v = vec![self.unified.join(PARENT)];
        v.extend(self.v1_memory.iter().chain(&self.v1_pids).map(|p| p.join(PARENT)));
        v
    }

    /// Creates the cgroup of a task, with its limits set.
    pub fn create(&self, task_id: u64, limits: Limits) -> Result<TaskCgroup, DetonateError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let name = format!("task-{}-{task_id}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        for parent in self.parents() {
            fs::create_dir_all(&parent).map_err(io(format!("creating {}", parent.display())))?;
        }
        if self.pure_v2 {
            // controllers must be enabled from the root down to the parent
            for dir in [self.unified.clone(), self.unified.join(PARENT)] {
                let want = ["memory", "pids"];
                let have = fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
                for c in want.iter().filter(|c| !have.split_whitespace().any(|h| h == **c)) {
                    write(&dir.join("cgroup.subtree_control"), &format!("+{c}"))?;
                }
            }
        }
        let mut cg = TaskCgroup { dirs: Vec::new(), id: 0 };
        for parent in self.parents() {
            let dir = parent.join(&name);
            fs::create_dir(&dir).map_err(io(format!("creating cgroup {}", dir.display())))?;
            cg.dirs.push(dir);
        }
        cg.id = fs::metadata(&cg.dirs[0]).map_err(io(format!("stat {}", cg.dirs[0].display())))?.ino();
        let mem = limits.memory_bytes.to_string();
        let pids = limits.max_pids.to_string();
        if self.pure_v2 {
            write(&cg.dirs[0].join("memory.max"), &mem)?;
            // no swap: the limit is the limit (absent when the kernel has no swap accounting)
            let _ = fs::write(cg.dirs[0].join("memory.swap.max"), "0");
            // an OOM kills the whole task, not one process of it
            let _ = fs::write(cg.dirs[0].join("memory.oom.group"), "1");
            write(&cg.dirs[0].join("pids.max"), &pids)?;
        } else {
            write(&cg.dirs[1].join("memory.limit_in_bytes"), &mem)?;
            write(&cg.dirs[2].join("pids.max"), &pids)?;
        }
        Ok(cg)
    }

    /// Kills and removes the task cgroups left by servers that are gone
    /// (killed mid-task); returns their names.
    pub fn sweep(&self) -> Vec<String> {
        let mut removed = Vec::new();
        for parent in self.parents() {
            let Ok(entries) = fs::read_dir(&parent) else { continue };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if owner_alive(&name) {
                    continue;
                }
                let cg = TaskCgroup { dirs: vec![e.path()], id: 0 };
                cg.kill_all();
                if cg.remove_dirs().is_ok() && !removed.contains(&name) {
                    removed.push(name);
                }
            }
        }
        removed
    }
}

/// Whether the server that made `task-<pid>-...` still runs (names that
/// are not ours are left alone).
pub(crate) fn owner_alive(name: &str) -> bool {
    let Some(pid) = name.strip_prefix("task-").and_then(|r| r.split('-').next()).and_then(|p| p.parse::<u32>().ok())
    else {
        return true;
    };
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The cgroup of one task; dropping it kills what is left in it and removes it.
#[derive(Debug)]
pub struct TaskCgroup {
    /// The v2 folder first, then the v1 ones (hybrid).
    dirs: Vec<PathBuf>,
    id: u64,
}

impl TaskCgroup {
    /// The v2 cgroup id (the sensor's `cgroup_id`).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The `cgroup.procs` files a process writes itself into, one per hierarchy.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Its v2 folder.
    pub fn path(&self) -> &Path {
        &self.dirs[0]
    }

    /// The processes in it now.
    pub fn pids(&self) -> Vec<i32> {
        let mut pids: Vec<i32> = Vec::new();
        for d in &self.dirs {
            let text = fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
            pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Kills every process in it and waits (up to 10 s) until none is left:
    /// `cgroup.kill` where the kernel has it (5.14), else SIGKILL to each
    /// listed process until the list stays empty (a fork bomb is bounded by
    /// pids.max and cannot outrun it).
    pub fn kill_all(&self) -> bool {
        let kill_file = self.dirs[0].join("cgroup.kill");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if kill_file.exists() {
                let _ = fs::write(&kill_file, "1");
            }
            let pids = self.pids();
            if pids.is_empty() {
                return true;
            }
            for pid in pids {
                // SAFETY: kill has no memory effects; pid comes from the task's own cgroup.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            if Instant::now() > deadline {
                tracing::error!("processes left in {} after 10 s of SIGKILL", self.dirs[0].display());
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn remove_dirs(&self) -> std::io::Result<()> {
        let mut last = Ok(());
        for d in &self.dirs {
            // a cgroup whose last process was just reaped can stay busy a moment
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match fs::remove_dir(d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) if Instant::now() > deadline => {
                        last = Err(e);
                        break;
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }
        last
    }

    /// Kills what is left and removes the cgroup.
    pub fn remove(mut self) -> Result<(), DetonateError> {
        self.kill_all();
        let r = self.remove_dirs().map_err(io(format!("removing cgroup {}", self.dirs[0].display())));
        self.dirs.clear();
        r
    }
}

impl Drop for TaskCgroup {
    fn drop(&mut self) {
        if !self.dirs.is_empty() {
            self.kill_all();
            if let Err(e) = self.remove_dirs() {
                tracing::error!("cannot remove cgroup {}: {e}", self.dirs[0].display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_told_apart_by_pid() {
        assert!(owner_alive(&format!("task-{}-3-0", std::process::id())));
        assert!(!owner_alive(&format!("task-{}-3-0", u32::MAX - 1)));
        assert!(owner_alive("something-else"), "foreign names are left alone");
    }

    #[test]
    fn layouts_are_detected() {
        let d = tempfile::tempdir().unwrap();
        assert!(CgroupLayout::detect_at(d.path()).is_err());
        fs::write(d.path().join("cgroup.controllers"), "memory pids").unwrap();
        assert!(CgroupLayout::detect_at(d.path()).unwrap().pure_v2);
        fs::remove_file(d.path().join("cgroup.controllers")).unwrap();
        for h in ["unified", "memory", "pids"] {
            fs::create_dir(d.path().join(h)).unwrap();
            fs::write(d.path().join(h).join("cgroup.procs"), "").unwrap();
        }
        let l = CgroupLayout::detect_at(d.path()).unwrap();
        assert!(!l.pure_v2);
        assert_eq!(l.parents().len(), 3);
    }
}
