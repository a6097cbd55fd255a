/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Process lifecycle: exec, fork (new processes only) and exit.
 * BTF tracepoints only: they need no tracefs, cost less than classic
 * tracepoints and are allowed under kernel lockdown (kprobes, fentry and
 * LSM programs are not, on the lab machines).
 */

/* Set by the loader: the syscall-exit program follows what scripts'
 * interpreters open (files.c, script_opened). */
const volatile __u8 follow_scripts = 0;

/* A script exec whose interpreter has not opened the script yet: the name
 * given to execve, matched against the names the process opens. */
struct script_mark {
	__u64 exec_time_ns;
	__u64 cwd;  /* the working directory's dentry at the exec (compared, never read) */
	__u32 len;  /* bytes of the name; 0: a free slot */
	__u16 tail; /* bytes of its end kept in name */
	__u8 relative;
	__u8 skip;   /* bytes of leading "./" of a relative name kept whole */
	__u8 single; /* past them, a relative name has no '/': the script is in cwd itself */
	__u8 _pad[7];
	char name[IOCLAB_NAME_LEN];
};

/* The marks of a process. They stay across execs that are not scripts
 * (`#!/usr/bin/env sh`: env execs the shell that opens it). */
struct script_marks_of {
	__u64 start_boottime; /* the process's: marks left by a dead process whose pid came back are stale */
	__u32 next;           /* slot of the next mark */
	__u32 _pad;
	struct script_mark m[IOCLAB_SCRIPT_MARKS];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32); /* tgid */
	__type(value, struct script_marks_of);
} script_marks SEC(".maps");

static __always_inline void fill_mark(struct script_mark *m, struct task_struct *task, struct ioclab_exec *ev,
				      __u32 len)
{
	__u32 start = len > IOCLAB_NAME_LEN - 1 ? len - (IOCLAB_NAME_LEN - 1) : 0;
	__u32 tail = len - start;
	m->exec_time_ns = ev->hdr.time_ns;
	m->cwd = (__u64)task->fs->pwd.dentry;
	m->len = len;
	m->tail = tail;
	m->relative = ev->filename[0] != '/';
	bpf_probe_read_kernel(m->name, tail & (IOCLAB_NAME_LEN - 1), &ev->filename[start & (IOCLAB_PATH_LEN - 1)]);
	/* a relative name kept whole: its "./" prefixes, and whether a '/' follows them
	 * (interpreters that make it absolute drop the "./": Node.js) */
	__u32 skip = 0;
	bool single = m->relative && tail == len;
	for (int i = 0; i < 8 && single; i++) {
		if (skip + 2 >= len || m->name[skip & (IOCLAB_NAME_LEN - 1)] != '.' ||
		    m->name[(skip + 1) & (IOCLAB_NAME_LEN - 1)] != '/')
			break;
		skip += 2;
	}
	for (__u32 i = 0; i < IOCLAB_NAME_LEN - 1 && single; i++) {
		if (i >= len)
			break;
		if (i >= skip && m->name[i & (IOCLAB_NAME_LEN - 1)] == '/')
			single = false;
	}
	m->skip = single ? skip : 0;
	m->single = single;
}

static __always_inline void mark_script(struct task_struct *task, struct ioclab_exec *ev)
{
	__u32 len = ev->filename_len;
	if (len == 0 || len >= IOCLAB_PATH_LEN - 1)
		return; /* empty or cut: nothing to match */
	__u32 tgid = task->tgid;
	__u64 start_boottime = task->group_leader->start_boottime;
	struct script_marks_of *ms = bpf_map_lookup_elem(&script_marks, &tgid);
	if (ms && ms->start_boottime == start_boottime) {
		fill_mark(&ms->m[ms->next & (IOCLAB_SCRIPT_MARKS - 1)], task, ev, len);
		ms->next += 1;
		return;
	}
	__u32 zero = 0;
	/* built in the path scratch (too big for the stack), not in use until cwd is resolved */
	ms = bpf_map_lookup_elem(&scratch, &zero);
	if (!ms)
		return;
	ms->start_boottime = start_boottime;
	ms->next = 1;
	for (int i = 1; i < IOCLAB_SCRIPT_MARKS; i++)
		ms->m[i].len = 0;
	fill_mark(&ms->m[0], task, ev, len);
	bpf_map_update_elem(&script_marks, &tgid, ms, BPF_ANY);
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(ioclab_exec, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
	struct ioclab_exec *ev = reserve(sizeof(*ev));
	if (!ev)
		return 0;

	fill_header(&ev->hdr, IOCLAB_KIND_EXEC, task, task->real_parent);
	fill_file(&ev->exe, bprm->file);

	const char *filename = bprm->filename;
	long n = bpf_probe_read_kernel_str(ev->filename, sizeof(ev->filename), filename);
	ev->filename_len = n > 0 ? n - 1 : 0;
	ev->is_script = filename != bprm->interp;

	unsigned long arg_start = task->mm->arg_start;
	unsigned long arg_end = task->mm->arg_end;
	__u64 argv_len = arg_end - arg_start;
	ev->argv_truncated = argv_len > IOCLAB_ARGV_LEN;
	if (argv_len > IOCLAB_ARGV_LEN)
		argv_len = IOCLAB_ARGV_LEN;
	if (bpf_probe_read_user(ev->argv, argv_len, (void *)arg_start) < 0)
		argv_len = 0;
	ev->argv_len = argv_len;

	if (ev->is_script && follow_scripts)
		mark_script(task, ev);

	ev->cwd.len = 0;
	if (ev->is_script && ev->filename[0] != '/')
		resolve_path(&ev->cwd, task->fs->pwd.dentry, task->fs->pwd.mnt);

	submit(ev);
	return 0;
}

/* The clone flags as the new process shows them: what it shares with its
 * parent, and its exit signal. Reading them here rather than at syscall
 * entry avoids syscall tracepoints, which put every syscall of every task on
 * the slow path. */
static __always_inline __u64 effective_clone_flags(struct task_struct *parent, struct task_struct *child)
{
	__u64 flags = child->exit_signal & 0xff;
	struct nsproxy *pns = parent->nsproxy, *cns = child->nsproxy;

	if (child->mm == parent->mm)
		flags |= CLONE_VM;
	if (child->fs == parent->fs)
		flags |= CLONE_FS;
	if (child->files == parent->files)
		flags |= CLONE_FILES;
	if (child->sighand == parent->sighand)
		flags |= CLONE_SIGHAND;
	if (cns->mnt_ns != pns->mnt_ns)
		flags |= CLONE_NEWNS;
	if (cns->uts_ns != pns->uts_ns)
		flags |= CLONE_NEWUTS;
	if (cns->ipc_ns != pns->ipc_ns)
		flags |= CLONE_NEWIPC;
	if (cns->net_ns != pns->net_ns)
		flags |= CLONE_NEWNET;
	if (cns->cgroup_ns != pns->cgroup_ns)
		flags |= CLONE_NEWCGROUP;
	return flags;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(ioclab_fork, struct task_struct *parent, struct task_struct *child)
{
	if (child->pid != child->tgid)
		return 0; /* a new thread, not a new process */
	if (child->flags & PF_KTHREAD)
		return 0;

	struct ioclab_clone *ev = reserve(sizeof(*ev));
	if (!ev)
		return 0;
	fill_header(&ev->hdr, IOCLAB_KIND_CLONE, child, parent);
	ev->flags = effective_clone_flags(parent, child);
	submit(ev);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(ioclab_exit, struct task_struct *task)
{
	if (task->flags & PF_KTHREAD)
		return 0;

	struct ioclab_exit *ev = reserve(sizeof(*ev));
	if (!ev)
		return 0;
	fill_header(&ev->hdr, IOCLAB_KIND_EXIT, task, task->real_parent);
	ev->exit_code = task->exit_code;
	ev->group_dead = task->signal->live.counter == 0;
	submit(ev);
	return 0;
}
