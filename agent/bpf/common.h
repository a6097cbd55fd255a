/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What every ioclab eBPF program shares: the ring buffer and its loss
 * counter, the reader wakeup policy, task headers and path resolution.
 * Included once, by sensor.bpf.c.
 */
#ifndef IOCLAB_COMMON_H
#define IOCLAB_COMMON_H

#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "events.h"

/* Set by the loader. Below this many unread bytes the reader is not woken:
 * it drains the ring on a short timer instead (one wakeup per event costs
 * more than the event itself). */
const volatile __u64 wakeup_bytes = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20); /* resized by the loader */
} events SEC(".maps");

/* Records that did not fit in the ring, per CPU: read by userspace and
 * reported as `event_loss`, never dropped silently. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

static __always_inline void *reserve(__u64 size)
{
	void *ev = bpf_ringbuf_reserve(&events, size, 0);
	if (!ev) {
		__u32 zero = 0;
		__u64 *count = bpf_map_lookup_elem(&lost, &zero);
		if (count)
			*count += 1;
	}
	return ev;
}

/* What the reader does, set by userspace before it sleeps and cleared by
 * the record that wakes it: a sleeping reader is woken once, by the first
 * record that finds it asleep and worth waking. Deciding on a crossing of
 * the threshold instead would miss it when records of two CPUs pass it
 * together, and leave the reader to its timer with the ring filling. */
#define READER_RUNNING 0
#define READER_BUSY_SLEEP 1 /* drains on a short timer: wake when wakeup_bytes are unread */
#define READER_IDLE_SLEEP 2 /* found nothing to read: wake at the first record */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} reader_state SEC(".maps");

/* Submits a record, waking the reader when it sleeps idle, or sleeps on
 * its timer with wakeup_bytes unread; otherwise the reader, running or on
 * its timer, gets the record without a wakeup (one per record would cost
 * more than the record). */
static __always_inline void submit(void *ev)
{
	__u32 zero = 0;
	__u32 *state = bpf_map_lookup_elem(&reader_state, &zero);
	bool wake = false;

	if (state && *state != READER_RUNNING &&
	    (*state == READER_IDLE_SLEEP || bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes)) {
		*state = READER_RUNNING;
		wake = true;
	}
	bpf_ringbuf_submit(ev, wake ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
}

/* tp_btf arguments are BTF pointers: plain loads (relocated by CO-RE) cost a
 * fraction of bpf_probe_read calls, and a NULL along the way reads as 0. */
static __always_inline void fill_task(struct ioclab_task *t, struct task_struct *task)
{
	t->start_boottime = task->group_leader->start_boottime;
	t->pid = task->pid;
	t->tgid = task->tgid;
	t->uid = task->cred->uid.val;
	t->gid = task->cred->gid.val;
	t->flags = task->flags;
	t->mnt_ns = task->nsproxy->mnt_ns->ns.inum;
	t->zombie = (task->exit_state & EXIT_ZOMBIE) != 0;
	__builtin_memcpy(t->comm, task->comm, sizeof(t->comm));
}

static __always_inline void fill_header(struct ioclab_header *h, __u32 kind,
					struct task_struct *task, struct task_struct *parent)
{
	h->kind = kind;
	h->time_ns = bpf_ktime_get_boot_ns();
	h->cgroup_id = bpf_get_current_cgroup_id();
	fill_task(&h->task, task);
	fill_task(&h->parent, parent);
}

/* Scratch space for one path, per CPU (tracepoint programs run with
 * preemption disabled, so one program at a time uses it). */
struct path_scratch {
	char data[IOCLAB_PATH_LEN + IOCLAB_NAME_PAD];
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct path_scratch);
} scratch SEC(".maps");

struct walk {
	struct path_scratch *buf;
	struct dentry *dentry;
	struct vfsmount *vfsmnt;
	struct mount *mnt;
	__u32 off;
	__u8 complete;
	__u8 pseudo;
};

/* One step of the walk up to the root of the global mount tree: either
 * prepend "/<name>" or cross from a mount's root to its mount point. */
static long walk_step(__u32 index, struct walk *w)
{
	/* Locals, not w->...: BPF_CORE_READ must not relocate struct walk. */
	struct dentry *dentry = w->dentry;
	struct vfsmount *vfsmnt = w->vfsmnt;
	struct mount *mnt = w->mnt;
	struct dentry *parent = BPF_CORE_READ(dentry, d_parent);
	struct dentry *mnt_root = BPF_CORE_READ(vfsmnt, mnt_root);
	/* its own parent but not a mount's root: a pseudo file (memfd, anonymous
	 * inode) or a disconnected dentry, named "/<name>" as /proc shows it */
	bool pseudo = dentry == parent && dentry != mnt_root;

	if (!pseudo && (dentry == mnt_root || dentry == parent)) {
		struct mount *mnt_parent = BPF_CORE_READ(mnt, mnt_parent);
		if (dentry != mnt_root || mnt_parent == mnt || !mnt_parent) {
			w->complete = 1;
			return 1;
		}
		w->dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
		w->mnt = mnt_parent;
		w->vfsmnt = __builtin_preserve_access_index(&mnt_parent->mnt);
		return 0;
	}
	const unsigned char *name = BPF_CORE_READ(dentry, d_name.name);
	__u32 len = BPF_CORE_READ(dentry, d_name.len) & (IOCLAB_NAME_PAD - 1);
	if (len + 1 > w->off)
		return 1;
	w->off -= len + 1;
	__u32 at = w->off & (IOCLAB_PATH_LEN - 1);
	w->buf->data[at] = '/';
	bpf_probe_read_kernel(&w->buf->data[at + 1], len, name);
	if (pseudo) {
		w->pseudo = 1;
		w->complete = 1;
		return 1;
	}
	w->dentry = parent;
	return 0;
}

/* Resolves (dentry, vfsmnt) to an absolute path in out. bpf_loop keeps the
 * verifier's work independent of the walk's depth. */
static __always_inline void resolve_path(struct ioclab_path *out, struct dentry *dentry,
					 struct vfsmount *vfsmnt)
{
	__u32 zero = 0;
	struct walk w = {
		.buf = bpf_map_lookup_elem(&scratch, &zero),
		.dentry = dentry,
		.vfsmnt = vfsmnt,
		.mnt = (void *)vfsmnt - bpf_core_field_offset(struct mount, mnt),
		.off = IOCLAB_PATH_LEN,
	};

	out->start = 0;
	out->len = 0;
	out->truncated = 1;
	out->deleted = 0;
	if (!w.buf || !dentry)
		return;
	bpf_loop(IOCLAB_PATH_DEPTH, walk_step, &w, 0);
	if (w.off == IOCLAB_PATH_LEN) {
		w.off -= 1;
		w.buf->data[IOCLAB_PATH_LEN - 1] = '/';
	}
	/* copy only the path, to the start of out->data */
	__u32 len = (IOCLAB_PATH_LEN - w.off) & (IOCLAB_PATH_LEN - 1);
	if (w.off == 0)
		len = IOCLAB_PATH_LEN - 1; /* full buffer: keep it within bounds, truncated */
	bpf_probe_read_kernel(out->data, len, &w.buf->data[w.off & (IOCLAB_PATH_LEN - 1)]);
	out->truncated = !w.complete || w.off == 0;
	/* d_unlinked(): unhashed and not a root; pseudo files are never linked */
	out->deleted = w.pseudo ||
		       (BPF_CORE_READ(dentry, d_parent) != dentry && !BPF_CORE_READ(dentry, d_hash.pprev));
	out->start = 0;
	out->len = len;
}

/* One timestamp of an inode, whichever way this kernel stores it: split
 * fields (6.11), __i_<name> timespec64 (6.6-6.10), i_<name> before. */
#define READ_INODE_TIME(sec, nsec, inode, split_sec, split_nsec, v66, old)             \
	do {                                                                            \
		if (bpf_core_field_exists(inode->split_sec)) {                                \
			sec = BPF_CORE_READ(inode, split_sec);                                      \
			nsec = BPF_CORE_READ(inode, split_nsec);                                    \
		} else if (bpf_core_field_exists(((struct inode___v66 *)inode)->v66)) {       \
			sec = BPF_CORE_READ((struct inode___v66 *)inode, v66.tv_sec);               \
			nsec = BPF_CORE_READ((struct inode___v66 *)inode, v66.tv_nsec);             \
		} else {                                                                      \
			sec = BPF_CORE_READ((struct inode___old *)inode, old.tv_sec);               \
			nsec = BPF_CORE_READ((struct inode___old *)inode, old.tv_nsec);             \
		}                                                                             \
	} while (0)

/* ctime and mtime of an inode. ctime moves at every change and userspace
 * cannot set it back (touch -r sets mtime only): with the size, it tells a
 * rewritten file from the one seen. Bit 31 of a 6.13+ ctime_nsec is the
 * multigrain "queried" flag, not time. */
static __always_inline void read_times(struct ioclab_file *f, struct inode *inode)
{
	READ_INODE_TIME(f->mtime_sec, f->mtime_nsec, inode, i_mtime_sec, i_mtime_nsec, __i_mtime, i_mtime);
	READ_INODE_TIME(f->ctime_sec, f->ctime_nsec, inode, i_ctime_sec, i_ctime_nsec, __i_ctime, i_ctime);
	f->ctime_nsec &= 0x7fffffff;
}

static __always_inline void fill_file(struct ioclab_file *f, struct file *file)
{
	struct inode *inode = file->f_inode;

	f->ino = inode->i_ino;
	f->size = inode->i_size;
	f->dev = inode->i_sb->s_dev;
	read_times(f, inode);
	resolve_path(&f->path, file->f_path.dentry, file->f_path.mnt);
}

#endif
