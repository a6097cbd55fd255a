/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Files and system: opens (file_create, read/write and *_config), closes
 * of files open for writing, renames, unlinks, executable mmap/mprotect,
 * ptrace, prctl, BPF program loads and socket filters from the exit of their
 * syscall; kill from signal_generate.
 *
 * One program on sys_exit (tp_btf) serves every syscall: at exit the saved
 * user registers still hold the arguments, so no entry hook and no map of
 * calls in flight are needed. Attached only when an event it feeds is on:
 * any syscall tracepoint puts every syscall of every task on the slow path.
 */
#include "kernel_sys.h"

#ifdef __TARGET_ARCH_x86

/* Set by the loader. */
const volatile __u64 file_events = 0; /* IOCLAB_WANT_* */
const volatile __u32 agent_tgid = 0;  /* the agent's own syscalls are not reported */
const volatile __u64 max_eps_fs = 0;  /* file events per task and second; 0: no limit */

struct throttle {
	__u64 window; /* second since boot */
	__u64 count;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct throttle);
} fs_throttle SEC(".maps");

/* A THROTTLED record: dropped = 0 when the throttle kicks in, else how many
 * file events a throttled second now over lost. */
static __always_inline void throttled(struct task_struct *task, __u64 dropped)
{
	struct ioclab_throttled *ev = reserve(sizeof(*ev));
	if (!ev)
		return;
	fill_header(&ev->hdr, IOCLAB_KIND_THROTTLED, task, task->real_parent);
	ev->limit = max_eps_fs;
	ev->dropped = dropped;
	submit(ev);
}

/* Whether a file event of `task` may go out: at most max_eps_fs a second per
 * process, so a file storm cannot drown the other events. The first event
 * over the limit in a second makes a THROTTLED record; the count of dropped
 * ones follows at the first file event of a later second (or at exit). */
static __always_inline bool file_budget(struct task_struct *task)
{
	if (!max_eps_fs)
		return true;
	__u32 tgid = task->tgid;
	__u64 window = bpf_ktime_get_boot_ns() / 1000000000ULL;
	struct throttle *t = bpf_map_lookup_elem(&fs_throttle, &tgid);
	if (!t) {
		struct throttle fresh = { .window = window, .count = 1 };
		bpf_map_update_elem(&fs_throttle, &tgid, &fresh, BPF_ANY);
		return true;
	}
	if (t->window != window) {
		__u64 last = t->count;
		t->window = window;
		t->count = 0;
		if (last > max_eps_fs)
			throttled(task, last - max_eps_fs);
	}
	__u64 n = __sync_fetch_and_add(&t->count, 1) + 1;
	if (n <= max_eps_fs)
		return true;
	if (n == max_eps_fs + 1)
		throttled(task, 0);
	return false;
}

/* The end of a process: how many file events its last throttled second
 * lost, if that was not said yet; its throttle entry is freed. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(ioclab_fs_exit, struct task_struct *task)
{
	if (!max_eps_fs || task->signal->live.counter != 0)
		return 0; /* not the last thread of its process */
	__u32 tgid = task->tgid;
	struct throttle *t = bpf_map_lookup_elem(&fs_throttle, &tgid);
	if (!t)
		return 0;
	if (t->count > max_eps_fs)
		throttled(task, t->count - max_eps_fs);
	bpf_map_delete_elem(&fs_throttle, &tgid);
	return 0;
}

/* The open file behind `fd` in `task`, or NULL. */
static __always_inline struct file *fd_file(struct task_struct *task, long fd)
{
	if (fd < 0)
		return NULL;
	struct fdtable *fdt = task->files->fdt;
	if (!fdt || fd >= fdt->max_fds)
		return NULL;
	struct file **fds = fdt->fd;
	struct file *f = NULL;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd & 0xffffff]);
	return f;
}

static __always_inline bool regular(struct file *file)
{
	struct inode___sys *inode = (void *)BPF_CORE_READ(file, f_inode);
	return (BPF_CORE_READ(inode, i_mode) & S_IFMT) == S_IFREG;
}

/* fill_file for a file pointer read from memory (not a trusted BTF argument). */
static __always_inline void fill_file_read(struct ioclab_file *f, struct file *file)
{
	struct inode *inode = BPF_CORE_READ(file, f_inode);

	f->ino = BPF_CORE_READ(inode, i_ino);
	f->size = BPF_CORE_READ(inode, i_size);
	f->dev = BPF_CORE_READ(inode, i_sb, s_dev);
	read_times(f, inode);
	resolve_path(&f->path, BPF_CORE_READ(file, f_path.dentry), BPF_CORE_READ(file, f_path.mnt));
}

static __always_inline void fill_syscall(struct ioclab_syscall *sc, __u32 kind, __u32 op, struct task_struct *task,
					 struct pt_regs *regs, long ret)
{
	fill_header(&sc->hdr, kind, task, task->real_parent);
	sc->op = op;
	sc->nr = SYSCALL_NR(regs);
	sc->ret = ret;
	sc->args[0] = regs->di;
	sc->args[1] = regs->si;
	sc->args[2] = regs->dx;
	sc->args[3] = regs->r10;
	sc->args[4] = regs->r8;
	sc->args[5] = regs->r9;
}

static __always_inline void file_record(struct task_struct *task, struct pt_regs *regs, long ret, __u32 op,
					struct file *file, __u32 f_mode, bool config)
{
	struct ioclab_file_rec *ev = reserve(sizeof(*ev));
	if (!ev)
		return;
	fill_syscall(&ev->sc, IOCLAB_KIND_FILE, op, task, regs, ret);
	ev->f_mode = f_mode;
	ev->config = config;
	fill_file_read(&ev->file, file);
	submit(ev);
}

#include "config_dirs.c"

static __always_inline void on_open(struct task_struct *task, struct pt_regs *regs, long ret, const char *name)
{
	__u64 want = file_events;
	if (ret < 0 || !(want & (IOCLAB_WANT_CREATE | IOCLAB_WANT_READ | IOCLAB_WANT_READ_CONFIG | IOCLAB_WANT_WRITE |
				 IOCLAB_WANT_WRITE_CONFIG)))
		return;
	struct file *file = fd_file(task, ret);
	if (!file || !regular(file))
		return;
	__u32 f_mode = BPF_CORE_READ((struct file___sys *)file, f_mode);
	bool wr = f_mode & FMODE_WRITE, rd = f_mode & FMODE_READ;
	bool config = (want & (IOCLAB_WANT_READ_CONFIG | IOCLAB_WANT_WRITE_CONFIG)) && config_file(file, name);
	bool emit = ((f_mode & FMODE_CREATED) && (want & IOCLAB_WANT_CREATE)) ||
		    (config && ((wr && (want & IOCLAB_WANT_WRITE_CONFIG)) || (rd && (want & IOCLAB_WANT_READ_CONFIG)))) ||
		    (wr && (want & IOCLAB_WANT_WRITE)) || (rd && (want & IOCLAB_WANT_READ));
	if (!emit || !file_budget(task))
		return;
	file_record(task, regs, ret, IOCLAB_OP_OPEN, file, f_mode, config);
}

/* Whether `file`, opened as `name` (n bytes, in buf), is the script of
 * mark `m`: opened by the very name given to execve, or (interpreters that
 * make a relative name absolute: Python keeps its "./", Node.js drops it)
 * by "<dir>/" + that name, and for a name of the working directory itself,
 * a file of that directory. Compares the end of the name kept in the mark. */
static __always_inline bool names_script(const char *buf, long n, struct script_mark *m, struct file *file,
					 bool *exact)
{
	__u32 len = m->len, tail = m->tail, cmp = tail;
	*exact = n == len;
	if (!*exact) {
		cmp = len - m->skip; /* skip is 0 unless the whole name is kept */
		if (cmp > tail || !m->relative || buf[0] != '/' || n <= cmp ||
		    buf[(n - cmp - 1) & (IOCLAB_PATH_LEN - 1)] != '/')
			return false;
		if (m->single && (__u64)BPF_CORE_READ(file, f_path.dentry, d_parent) != m->cwd)
			return false;
	}
	__u32 off = tail - cmp;
	for (__u32 i = 0; i < IOCLAB_NAME_LEN - 1; i++) {
		if (i >= cmp)
			break;
		if (buf[(n - cmp + i) & (IOCLAB_PATH_LEN - 1)] != m->name[(off + i) & (IOCLAB_NAME_LEN - 1)])
			return false;
	}
	return true;
}

/* An open by a process whose script's interpreter has not opened the
 * script yet: if it opened it (for reading, a regular file, by its name),
 * the identity of what it opened goes up, once per script exec. */
static __always_inline void script_opened(struct task_struct *task, long ret, const char *name)
{
	if (ret < 0 || !follow_scripts)
		return;
	__u32 tgid = task->tgid;
	struct script_marks_of *ms = bpf_map_lookup_elem(&script_marks, &tgid);
	if (!ms)
		return;
	if (ms->start_boottime != task->group_leader->start_boottime) {
		bpf_map_delete_elem(&script_marks, &tgid);
		return;
	}
	struct file *file = fd_file(task, ret);
	if (!file || !regular(file) || !(BPF_CORE_READ((struct file___sys *)file, f_mode) & FMODE_READ))
		return;
	__u32 zero = 0;
	struct path_scratch *buf = bpf_map_lookup_elem(&scratch, &zero);
	if (!buf)
		return;
	long n = bpf_probe_read_user_str(buf->data, IOCLAB_PATH_LEN, name);
	if (n <= 1)
		return;
	bool exact = false;
	struct script_mark *m = NULL;
	for (int i = 0; i < IOCLAB_SCRIPT_MARKS; i++) {
		if (ms->m[i].len && names_script(buf->data, n - 1, &ms->m[i], file, &exact)) {
			m = &ms->m[i];
			break;
		}
	}
	if (!m)
		return;
	__u64 exec_time_ns = m->exec_time_ns;
	m->len = 0;

	struct ioclab_script *ev = reserve(sizeof(*ev));
	if (!ev)
		return;
	fill_header(&ev->hdr, IOCLAB_KIND_SCRIPT, task, task->real_parent);
	ev->exec_time_ns = exec_time_ns;
	ev->fd = ret;
	ev->exact = exact;
	fill_file_read(&ev->file, file);
	submit(ev);
}

/* The directory a name given to an *at() syscall is relative to: empty for
 * an absolute name, the cwd for AT_FDCWD, else the directory open as dirfd. */
static __always_inline void name_base(struct ioclab_path *base, struct task_struct *task, long dirfd, const char *name)
{
	base->len = 0;
	base->start = 0;
	base->truncated = 0;
	if (name[0] == '/')
		return;
	if (dirfd == AT_FDCWD) {
		resolve_path(base, task->fs->pwd.dentry, task->fs->pwd.mnt);
		return;
	}
	struct file *dir = fd_file(task, dirfd);
	if (dir)
		resolve_path(base, BPF_CORE_READ(dir, f_path.dentry), BPF_CORE_READ(dir, f_path.mnt));
}

/* rename and unlink: names as given (1 or 2) with their base directories. */
static __always_inline void on_paths(struct task_struct *task, struct pt_regs *regs, long ret, __u32 op,
				     long dirfd0, const char *name0, long dirfd1, const char *name1)
{
	if (!file_budget(task))
		return;
	struct ioclab_paths_rec *ev = reserve(sizeof(*ev));
	if (!ev)
		return;
	fill_syscall(&ev->sc, IOCLAB_KIND_PATHS, op, task, regs, ret);
	long n = bpf_probe_read_user_str(ev->name[0], IOCLAB_NAME_LEN, name0);
	ev->name_len[0] = n > 0 ? n - 1 : 0;
	name_base(&ev->base[0], task, dirfd0, ev->name[0]);
	ev->name_len[1] = 0;
	ev->base[1].len = 0;
	if (name1) {
		n = bpf_probe_read_user_str(ev->name[1], IOCLAB_NAME_LEN, name1);
		ev->name_len[1] = n > 0 ? n - 1 : 0;
		name_base(&ev->base[1], task, dirfd1, ev->name[1]);
	}
	submit(ev);
}

/* The zeroed parts of a sys record that the op at hand does not fill. */
static __always_inline struct ioclab_sys_rec *sys_record(struct task_struct *task, struct pt_regs *regs, long ret,
							  __u32 op)
{
	struct ioclab_sys_rec *ev = reserve(sizeof(*ev));
	if (!ev)
		return NULL;
	fill_syscall(&ev->sc, IOCLAB_KIND_SYS, op, task, regs, ret);
	__builtin_memset(&ev->target, 0, sizeof(ev->target));
	ev->prog_id = 0;
	ev->prog_type = 0;
	ev->prog_verified_insns = 0;
	ev->data_len = 0;
	__builtin_memset(ev->prog_tag, 0, sizeof(ev->prog_tag));
	__builtin_memset(ev->prog_name, 0, sizeof(ev->prog_name));
	ev->text[0] = 0;
	__builtin_memset(&ev->sock, 0, sizeof(ev->sock));
	return ev;
}

/* The BPF program behind an fd: its identity, for userspace to name and hash. */
static __always_inline void fill_prog(struct ioclab_sys_rec *ev, struct task_struct *task, long fd)
{
	struct file *file = fd_file(task, fd);
	if (!file)
		return;
	struct bpf_prog *prog = BPF_CORE_READ((struct file___sys *)file, private_data);
	if (!prog)
		return;
	ev->prog_id = BPF_CORE_READ(prog, aux, id);
	ev->prog_type = BPF_CORE_READ(prog, type);
	ev->prog_verified_insns = BPF_CORE_READ(prog, aux, verified_insns);
	bpf_probe_read_kernel(ev->prog_tag, sizeof(ev->prog_tag), &prog->tag);
	struct bpf_prog_aux *aux = BPF_CORE_READ(prog, aux);
	bpf_probe_read_kernel(ev->prog_name, sizeof(ev->prog_name), &aux->name);
	const char *func = BPF_CORE_READ(aux, attach_func_name);
	if (func)
		bpf_probe_read_kernel_str(ev->text, sizeof(ev->text), func);
}

static __always_inline void on_bpf(struct task_struct *task, struct pt_regs *regs, long ret)
{
	if (regs->di != BPF_PROG_LOAD_CMD)
		return;
	struct ioclab_sys_rec *ev = sys_record(task, regs, ret, IOCLAB_OP_BPF_PROG);
	if (!ev)
		return;
	if (ret >= 0) {
		fill_prog(ev, task, ret);
	} else {
		/* refused: what the caller asked for (union bpf_attr: prog_type at 0, prog_name at 48) */
		const char *attr = (const char *)regs->si;
		bpf_probe_read_user(&ev->prog_type, sizeof(ev->prog_type), attr);
		bpf_probe_read_user(ev->prog_name, sizeof(ev->prog_name), attr + 48);
	}
	submit(ev);
}

static __always_inline void on_setsockopt(struct task_struct *task, struct pt_regs *regs, long ret)
{
	long optname = regs->dx;
	if (regs->si != SOL_SOCKET || (optname != SO_ATTACH_FILTER && optname != SO_ATTACH_BPF))
		return;
	struct ioclab_sys_rec *ev = sys_record(task, regs, ret, IOCLAB_OP_SOCK_FILTER);
	if (!ev)
		return;
	struct file *file = fd_file(task, regs->di);
	if (file) {
		struct socket *sock = BPF_CORE_READ((struct file___sys *)file, private_data);
		struct sock *sk = BPF_CORE_READ(sock, sk);
		ev->sock.family = BPF_CORE_READ(sk, __sk_common.skc_family);
		ev->sock.type = BPF_CORE_READ(sk, sk_type);
		ev->sock.proto = BPF_CORE_READ(sk, sk_protocol);
	}
	const void *optval = (const void *)regs->r10;
	if (optname == SO_ATTACH_BPF) {
		int fd = -1;
		bpf_probe_read_user(&fd, sizeof(fd), optval);
		fill_prog(ev, task, fd);
	} else {
		/* struct sock_fprog { unsigned short len; struct sock_filter *filter; } */
		struct {
			__u16 len;
			__u16 _pad[3];
			const void *filter;
		} prog = {};
		bpf_probe_read_user(&prog, sizeof(prog), optval);
		__u32 bytes = prog.len * 8;
		if (bytes > IOCLAB_SYS_DATA)
			bytes = IOCLAB_SYS_DATA;
		if (prog.filter && bpf_probe_read_user(ev->data, bytes, prog.filter) == 0)
			ev->data_len = bytes;
	}
	submit(ev);
}

#include "modules.c"

SEC("tp_btf/sys_exit")
int BPF_PROG(ioclab_sys_exit, struct pt_regs *regs, long ret)
{
	long nr = SYSCALL_NR(regs);
	__u64 want = file_events;

	switch (nr) {
	case NR_open:
	case NR_creat:
	case NR_openat:
	case NR_openat2:
	case NR_mmap:
	case NR_mprotect:
	case NR_rename:
	case NR_renameat:
	case NR_renameat2:
	case NR_unlink:
	case NR_unlinkat:
	case NR_ptrace:
	case NR_prctl:
	case NR_bpf:
	case NR_setsockopt:
	case NR_init_module:
	case NR_finit_module:
		break;
	case NR_recvmmsg:
	case NR_sendmmsg:
		mmsg_done();
		return 0;
	default:
		return 0;
	}
	struct task_struct *task = bpf_get_current_task_btf();
	if (task->tgid == agent_tgid)
		return 0;

	switch (nr) {
	case NR_open:
	case NR_creat:
		script_opened(task, ret, (const char *)SYSCALL_ARG1(regs));
		on_open(task, regs, ret, (const char *)SYSCALL_ARG1(regs));
		break;
	case NR_openat:
	case NR_openat2:
		script_opened(task, ret, (const char *)SYSCALL_ARG2(regs));
		on_open(task, regs, ret, (const char *)SYSCALL_ARG2(regs));
		break;
	case NR_mmap: {
		/* a file mapped executable: its hashes say what code the process loaded */
		if (!(want & IOCLAB_WANT_MMAP_EXEC) || (unsigned long)ret >= (unsigned long)-4095)
			break;
		if (!(SYSCALL_ARG3(regs) & PROT_EXEC) || (SYSCALL_ARG4(regs) & MAP_ANONYMOUS))
			break;
		struct file *file = fd_file(task, (int)SYSCALL_ARG5(regs));
		if (file)
			file_record(task, regs, ret, IOCLAB_OP_MMAP_EXEC, file, 0, false);
		break;
	}
	case NR_mprotect:
		if ((want & IOCLAB_WANT_MPROTECT_EXEC) && ret == 0 && (SYSCALL_ARG3(regs) & PROT_EXEC)) {
			struct ioclab_sys_rec *ev = sys_record(task, regs, ret, IOCLAB_OP_MPROTECT_EXEC);
			if (ev)
				submit(ev);
		}
		break;
	case NR_rename:
		if ((want & IOCLAB_WANT_RENAME) && ret == 0)
			on_paths(task, regs, ret, IOCLAB_OP_RENAME, AT_FDCWD, (const char *)SYSCALL_ARG1(regs), AT_FDCWD,
				 (const char *)SYSCALL_ARG2(regs));
		break;
	case NR_renameat:
	case NR_renameat2:
		if ((want & IOCLAB_WANT_RENAME) && ret == 0)
			on_paths(task, regs, ret, IOCLAB_OP_RENAME, (int)SYSCALL_ARG1(regs),
				 (const char *)SYSCALL_ARG2(regs), (int)SYSCALL_ARG3(regs),
				 (const char *)SYSCALL_ARG4(regs));
		break;
	case NR_unlink:
		if (want & IOCLAB_WANT_UNLINK)
			on_paths(task, regs, ret, IOCLAB_OP_UNLINK, AT_FDCWD, (const char *)SYSCALL_ARG1(regs), 0, NULL);
		break;
	case NR_unlinkat:
		if (want & IOCLAB_WANT_UNLINK)
			on_paths(task, regs, ret, IOCLAB_OP_UNLINK, (int)SYSCALL_ARG1(regs),
				 (const char *)SYSCALL_ARG2(regs), 0, NULL);
		break;
	case NR_ptrace: {
		long request = SYSCALL_ARG1(regs);
		if ((want & IOCLAB_WANT_PTRACE) && (request == PTRACE_ATTACH || request == PTRACE_SEIZE)) {
			struct ioclab_sys_rec *ev = sys_record(task, regs, ret, IOCLAB_OP_PTRACE);
			if (ev)
				submit(ev);
		}
		break;
	}
	case NR_prctl:
		if (want & IOCLAB_WANT_PRCTL) {
			struct ioclab_sys_rec *ev = sys_record(task, regs, ret, IOCLAB_OP_PRCTL);
			if (ev)
				submit(ev);
		}
		break;
	case NR_bpf:
		if (want & IOCLAB_WANT_BPF_PROG)
			on_bpf(task, regs, ret);
		break;
	case NR_setsockopt:
		if (want & IOCLAB_WANT_SOCK_FILTER)
			on_setsockopt(task, regs, ret);
		break;
	case NR_init_module:
	case NR_finit_module:
		if (want & IOCLAB_WANT_MODULE)
			on_module(task, regs, ret, nr);
		break;
	}
	return 0;
}

/* write_close: at the entry of close(), while the fd still names the file. */
SEC("tp_btf/sys_enter")
int BPF_PROG(ioclab_sys_enter, struct pt_regs *regs, long id)
{
	if (id != NR_close)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	if (task->tgid == agent_tgid)
		return 0;
	struct file *file = fd_file(task, (int)SYSCALL_ARG1(regs));
	if (!file || !regular(file))
		return 0;
	__u32 f_mode = BPF_CORE_READ((struct file___sys *)file, f_mode);
	if (!(f_mode & FMODE_WRITE) || !file_budget(task))
		return 0;
	file_record(task, regs, 0, IOCLAB_OP_CLOSE_WRITABLE, file, f_mode, false);
	return 0;
}

#endif /* __TARGET_ARCH_x86 */

/* kill(), tkill(), tgkill(): a signal one task sends another. Signals the
 * kernel generates itself (SIGCHLD, faults, timers) are not reported. */
SEC("tp_btf/signal_generate")
int BPF_PROG(ioclab_signal, int sig, struct kernel_siginfo *info, struct task_struct *target, int group, int result)
{
	/* SEND_SIG_NOINFO (0) and SEND_SIG_PRIV (1) are not pointers: kernel senders */
	if ((unsigned long)info <= 1)
		return 0;
	int code = BPF_CORE_READ(info, si_code);
	if (code != SI_USER && code != SI_TKILL)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	struct ioclab_sys_rec *ev = reserve(sizeof(*ev));
	if (!ev)
		return 0;
	fill_header(&ev->sc.hdr, IOCLAB_KIND_SYS, task, task->real_parent);
	ev->sc.op = IOCLAB_OP_KILL;
	ev->sc.nr = 0;
	ev->sc.ret = result;
	__builtin_memset(ev->sc.args, 0, sizeof(ev->sc.args));
	ev->sc.args[0] = sig;
	fill_task(&ev->target, target);
	ev->prog_id = 0;
	ev->prog_type = 0;
	ev->prog_verified_insns = 0;
	ev->data_len = 0;
	ev->text[0] = 0;
	submit(ev);
	return 0;
}
