//! `info.task` and `info.parent_task`, rendered once per distinct kernel task
//! state: a process's events repeat the same fields (a connect storm's
//! thousands of events, the parent of every spawned child), and rendering
//! them was about a fifth of the agent's userspace time per event.

use crate::bpf::abi;
use crate::events::{TaskInfo, TaskJson};

/// Direct-mapped by thread id: a collision or a changed field (exec renames
/// the task, exit sets flags) only costs a new rendering.
pub struct TaskCache {
    slots: Vec<Option<(abi::Task, TaskJson)>>,
    scratch: Vec<u8>,
}

const SLOTS: usize = 1024;

/// The fields an event shows (padding left out: the kernel does not clear it).
fn same(a: &abi::Task, b: &abi::Task) -> bool {
    a.pid == b.pid
        && a.tgid == b.tgid
        && a.start_boottime == b.start_boottime
        && a.uid == b.uid
        && a.gid == b.gid
        && a.flags == b.flags
        && a.mnt_ns == b.mnt_ns
        && a.zombie == b.zombie
        && a.comm == b.comm
}

impl Default for TaskCache {
    fn default() -> Self {
        TaskCache { slots: vec![None; SLOTS], scratch: Vec::with_capacity(256) }
    }
}

impl TaskCache {
    /// The rendering of `t`, made with `info` when `t` is not the cached task of its slot.
    pub fn get(&mut self, t: &abi::Task, info: impl FnOnce() -> TaskInfo) -> TaskJson {
        let slot = &mut self.slots[t.pid as usize % SLOTS];
        match slot {
            Some((cached, json)) if same(cached, t) => json.clone(),
            _ => {
                let json = TaskJson::render(&info(), &mut self.scratch);
                *slot = Some((*t, json.clone()));
                json
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(pid: u32, comm: &[u8]) -> abi::Task {
        // SAFETY: abi::Task is plain old data; all zeroes is valid.
        let mut t: abi::Task = unsafe { std::mem::zeroed() };
        t.pid = pid;
        t.tgid = pid;
        t.comm[..comm.len()].copy_from_slice(comm);
        t
    }

    fn info(t: &abi::Task) -> TaskInfo {
        TaskInfo { name: String::from_utf8_lossy(abi::c_str(&t.comm)).into(), pid: t.pid as i32, ..Default::default() }
    }

    #[test]
    fn same_task_same_rendering_and_changes_render_again() {
        let mut c = TaskCache::default();
        let t = task(42, b"sh");
        let a = c.get(&t, || info(&t));
        let b = c.get(&t, || panic!("a cached task is not rendered again"));
        assert!(std::sync::Arc::ptr_eq(&a.shared(), &b.shared()));
        assert!(a.as_str().contains("\"name\":\"sh\""), "{}", a.as_str());

        let mut renamed = t;
        renamed.comm = task(42, b"true").comm; // an exec
        let mut padded = renamed;
        padded._pad = [9; 7]; // padding the kernel left as it was
        let r = c.get(&renamed, || info(&renamed));
        assert!(r.as_str().contains("\"name\":\"true\""));
        c.get(&padded, || panic!("padding is not a change"));
        let colliding = task(42 + SLOTS as u32, b"other");
        assert!(c.get(&colliding, || info(&colliding)).as_str().contains("other"));
        assert!(c.get(&renamed, || info(&renamed)).as_str().contains("true"), "evicted, rendered again");
    }
}
