/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Process lifecycle: exec, fork (new processes only) and exit.
 * BTF tracepoints only: they need no tracefs, cost less than classic
 * tracepoints and are allowed under kernel lockdown (kprobes, fentry and
 * LSM programs are not, on the lab machines).
 */

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
