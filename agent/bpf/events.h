/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The event ABI between the ioclab eBPF programs and userspace: every record
 * written to the `events` ring buffer starts with struct ioclab_header.
 * This is the one definition; agent/src/bpf/abi.rs mirrors it and a test
 * compares both layouts field by field (offsets come from this header,
 * compiled for the host by build.rs).
 */
#ifndef IOCLAB_EVENTS_H
#define IOCLAB_EVENTS_H

#include <linux/types.h>

#define IOCLAB_COMM_LEN 16
/* Usable bytes of a resolved path (a power of two: offsets are masked with it). */
#define IOCLAB_PATH_LEN 1024
/* Slack after a path: one name (at most 255 bytes) is copied before the next bounds check. */
#define IOCLAB_NAME_PAD 256
/* Directory levels walked when resolving a path. */
#define IOCLAB_PATH_DEPTH 48
#define IOCLAB_ARGV_LEN 1024

enum ioclab_kind {
	IOCLAB_KIND_EXEC = 1,
	IOCLAB_KIND_CLONE = 2,
	IOCLAB_KIND_EXIT = 3,
	IOCLAB_KIND_SCRIPT = 4, /* a script's interpreter opened the script (files.c) */
	/* 10-19: network records (network.c) */
	IOCLAB_KIND_CONNECT = 10, /* a TCP handshake ended (connected or not) */
	IOCLAB_KIND_SEND = 11,    /* data sent on an IPv4/IPv6 TCP or UDP socket */
	IOCLAB_KIND_DNS = 12,     /* a DNS response (peer port 53) reached a process */
	/* 20-49: file and system records (files.c) */
	IOCLAB_KIND_FILE = 20,      /* a syscall on one file: open, close after writing, mmap */
	IOCLAB_KIND_PATHS = 21,     /* rename, unlink: names as the process gave them */
	IOCLAB_KIND_SYS = 22,       /* kill, ptrace, prctl, mprotect, modules, BPF */
	IOCLAB_KIND_THROTTLED = 23, /* a task's file events went over max_eps_fs */
	IOCLAB_KIND_MODULE = 24,    /* init_module / finit_module (modules.c) */
};

/* A task as userspace needs it for `info.task` / `info.parent_task`. */
struct ioclab_task {
	__u64 start_boottime; /* ns since boot of the thread-group leader: with tgid, the process identity */
	__u32 pid;            /* thread id */
	__u32 tgid;           /* process id */
	__u32 uid;
	__u32 gid;
	__u32 flags;          /* task->flags (PF_*) */
	__u32 mnt_ns;         /* inode number of the mount namespace */
	__u8 zombie;
	__u8 _pad[7];
	char comm[IOCLAB_COMM_LEN];
};

struct ioclab_header {
	__u32 kind;    /* enum ioclab_kind */
	__u32 _pad;
	__u64 time_ns; /* bpf_ktime_get_boot_ns() */
	__u64 cgroup_id; /* cgroup v2 id of the task that made the record (the sandbox tells its tasks apart by it) */
	struct ioclab_task task;
	struct ioclab_task parent;
};

/*
 * A path resolved from dentries: the string is data[start .. start + len]
 * (the programs build it backwards in a scratch buffer, then copy it here).
 */
struct ioclab_path {
	__u16 start;
	__u16 len;
	__u8 truncated; /* deeper than IOCLAB_PATH_DEPTH or longer than IOCLAB_PATH_LEN */
	__u8 deleted;   /* unlinked, or a pseudo file (memfd): /proc shows " (deleted)" after it */
	__u8 _pad[2];
	char data[IOCLAB_PATH_LEN + IOCLAB_NAME_PAD];
};

/* The identity of an opened file: userspace caches hashes by (dev, ino, size,
 * mtime, ctime) and hashes only a file it opened with this identity. ctime,
 * unlike mtime, cannot be set back from userspace: any write moves it. */
struct ioclab_file {
	__u64 ino;
	__s64 size;
	__s64 mtime_sec;
	__u32 mtime_nsec;
	__u32 dev;
	__s64 ctime_sec;
	__u32 ctime_nsec;
	__u32 _pad;
	struct ioclab_path path;
};

/* sched_process_exec: a process replaced its image. */
struct ioclab_exec {
	struct ioclab_header hdr;
	struct ioclab_file exe;    /* the binary that runs: for a script, its interpreter */
	__u32 argv_len;            /* bytes of argv (NUL-separated arguments) */
	__u32 filename_len;        /* bytes of filename, without NUL */
	__u8 is_script;            /* the kernel ran `filename` through an interpreter (#!) */
	__u8 argv_truncated;
	__u8 _pad[6];
	char argv[IOCLAB_ARGV_LEN];
	char filename[IOCLAB_PATH_LEN]; /* the name given to execve (the script, for scripts) */
	struct ioclab_path cwd;         /* working directory, only for a script named by a relative path */
};

/* The file a script's interpreter opened by the name given to execve: the
 * script's identity, which the exec cannot give (the kernel releases the
 * script's file before sched_process_exec, keeping only the interpreter's).
 * What the interpreter opened is what it runs, whatever the name names by
 * the time userspace looks. */
struct ioclab_script {
	struct ioclab_header hdr;
	__u64 exec_time_ns; /* hdr.time_ns of the exec record it belongs to */
	__s32 fd;           /* the descriptor the open returned */
	__u8 exact;         /* opened by the very name given to execve; else by cwd + "/" + that name */
	__u8 _pad[3];
	struct ioclab_file file;
};

/* Script execs of one process followed at once until their interpreters
 * open them (a power of two): they chain when `#!/usr/bin/env python3`
 * reaches a pyenv shim, itself a script. Past this many, the oldest gives way. */
#define IOCLAB_SCRIPT_MARKS 4

/* sched_process_fork of a new process (threads are not reported). */
struct ioclab_clone {
	struct ioclab_header hdr; /* task is the child, parent the caller */
	__u64 flags;              /* clone flags of the syscall that created it */
};

/* sched_process_exit of a thread; group_dead when it was the last one of its process. */
struct ioclab_exit {
	struct ioclab_header hdr;
	__s32 exit_code; /* task->exit_code: status << 8, or the signal that killed it */
	__u8 group_dead;
	__u8 _pad[3];
};

/* Network: bytes of a received DNS message copied to userspace (EDNS
 * answers rarely exceed 1232 bytes), and of sent data sampled for entropy. */
#define IOCLAB_DNS_LEN 2048
/* Most answers fit in a classic 512-byte UDP message: their records reserve
 * only that much, so a DNS storm fills the ring four times slower. */
#define IOCLAB_DNS_SMALL 512
#define IOCLAB_SEND_SAMPLE 256

/* One end of a flow: IPv4 in the first 4 bytes of addr (network order). */
struct ioclab_endpoint {
	__u8 addr[16];
	__u16 port; /* host order */
	__u8 _pad[2];
};

/* connect, send and DNS records: the socket, the flow, then `data_len`
 * bytes of data after the struct (the DNS message, or a sample of what was
 * sent). */
struct ioclab_net {
	struct ioclab_header hdr;
	__u64 cookie; /* the socket's cookie: identifies it across records */
	__s64 size;   /* bytes the send/receive call moved */
	struct ioclab_endpoint src;
	struct ioclab_endpoint dst;
	__u16 family; /* AF_INET, AF_INET6 */
	__u16 type;   /* SOCK_STREAM, SOCK_DGRAM */
	__u16 proto;  /* IPPROTO_TCP, IPPROTO_UDP */
	__u8 connected;
	__u8 _pad;
	__u32 data_len;
	__u32 _pad2;
};

/* A socket's kind (bpf_socket_filter). */
struct ioclab_sock {
	__u16 family;
	__u16 type;
	__u16 proto;
	__u16 _pad;
};

/* What a file/system record reports (ioclab_syscall.op). */
enum ioclab_op {
	IOCLAB_OP_OPEN = 1,           /* file: open/creat; see f_mode */
	IOCLAB_OP_CLOSE_WRITABLE = 2, /* file: close of a file open for writing */
	IOCLAB_OP_MMAP_EXEC = 3,      /* file: mmap of a file with PROT_EXEC */
	IOCLAB_OP_MPROTECT_EXEC = 4,  /* sys: mprotect adding PROT_EXEC */
	IOCLAB_OP_RENAME = 5,         /* paths */
	IOCLAB_OP_UNLINK = 6,         /* paths */
	IOCLAB_OP_KILL = 7,           /* sys: target = the signalled task, args[0] = signal */
	IOCLAB_OP_PTRACE = 8,         /* sys: args = request, pid */
	IOCLAB_OP_PRCTL = 9,          /* sys: args = option, arg2..arg5 */
	IOCLAB_OP_MODULE = 10,        /* file (finit_module) or sys (init_module); text = module args */
	IOCLAB_OP_BPF_PROG = 11,      /* sys: prog id, type, tag... in prog */
	IOCLAB_OP_SOCK_FILTER = 12,   /* sys: socket filter attached: data = classic BPF, or prog */
};

/* Bits of the `file_events` global: which records userspace wants. */
#define IOCLAB_WANT_CREATE (1 << 0)
#define IOCLAB_WANT_READ (1 << 1)
#define IOCLAB_WANT_READ_CONFIG (1 << 2)
#define IOCLAB_WANT_WRITE (1 << 3)
#define IOCLAB_WANT_WRITE_CONFIG (1 << 4)
#define IOCLAB_WANT_RENAME (1 << 5)
#define IOCLAB_WANT_UNLINK (1 << 6)
#define IOCLAB_WANT_WRITE_CLOSE (1 << 7)
#define IOCLAB_WANT_MMAP_EXEC (1 << 8)
#define IOCLAB_WANT_MPROTECT_EXEC (1 << 9)
#define IOCLAB_WANT_PTRACE (1 << 10)
#define IOCLAB_WANT_PRCTL (1 << 11)
#define IOCLAB_WANT_MODULE (1 << 12)
#define IOCLAB_WANT_BPF_PROG (1 << 13)
#define IOCLAB_WANT_SOCK_FILTER (1 << 14)

/* The syscall a file/system record comes from. */
struct ioclab_syscall {
	struct ioclab_header hdr;
	__u32 op;  /* enum ioclab_op */
	__u32 nr;  /* syscall number */
	__s64 ret; /* its result */
	__u64 args[6];
};

/* IOCLAB_KIND_FILE: the syscall and the file it used. */
struct ioclab_file_rec {
	struct ioclab_syscall sc;
	__u32 f_mode;
	__u32 config; /* the file is under a configuration directory (config_dirs.c) */
	struct ioclab_file file;
};

#define IOCLAB_NAME_LEN 256

/* IOCLAB_KIND_PATHS: names as given, and the directory each is relative to
 * (cwd or the dirfd; empty when the name is absolute). */
struct ioclab_paths_rec {
	struct ioclab_syscall sc;
	__u32 name_len[2];
	char name[2][IOCLAB_NAME_LEN];
	struct ioclab_path base[2];
};

#define IOCLAB_SYS_DATA 512

/* IOCLAB_KIND_SYS. */
struct ioclab_sys_rec {
	struct ioclab_syscall sc;
	struct ioclab_task target; /* kill: the signalled task */
	__u32 prog_id;             /* bpf prog load / SO_ATTACH_BPF: the program */
	__u32 prog_type;
	__u32 prog_verified_insns;
	__u32 data_len;            /* bytes in data */
	__u8 prog_tag[8];
	char prog_name[16];
	char text[64];             /* attached function, module arguments */
	struct ioclab_sock sock;   /* bpf_socket_filter: the socket */
	__u8 data[IOCLAB_SYS_DATA]; /* classic BPF filter of SO_ATTACH_FILTER */
};

/* IOCLAB_KIND_THROTTLED: file events of hdr.task dropped this second
 * (dropped = 0, sent when the throttle kicks in), or how many were dropped
 * in a throttled second now over (sent at the task's next file event in a
 * later second, or when its process exits). */
struct ioclab_throttled {
	struct ioclab_header hdr;
	__u64 limit;
	__u64 dropped;
};

/* A module's name (the kernel's MODULE_NAME_LEN is 56). */
#define IOCLAB_MODNAME_LEN 64
#define IOCLAB_MODARGS_LEN 256

/* IOCLAB_KIND_MODULE: a kernel module load, loaded or refused. sc.op is
 * IOCLAB_OP_MODULE, sc.nr tells init_module from finit_module. */
struct ioclab_module_rec {
	struct ioclab_syscall sc;
	struct ioclab_file file; /* finit_module: the module file (userspace reads its .modinfo) */
	__u32 args_len;          /* bytes of args, without NUL */
	__u32 name_len;          /* init_module: bytes of name (0: no name= in the image's .modinfo) */
	__u8 has_file;           /* finit_module and the fd was an open file */
	__u8 _pad[7];
	char args[IOCLAB_MODARGS_LEN];       /* the module parameters given */
	char name[IOCLAB_MODNAME_LEN];       /* init_module: name= of the image's .modinfo */
};

/* The configuration directories of read_config / write_config, one list
 * for the eBPF side (name prefixes, config_dirs.c) and userspace (their
 * device and inode, agent/src/bpf/config_dirs.rs; a test compares both).
 * Both spellings of merged-/usr directories are listed: names are compared
 * as given. */
#define IOCLAB_CONFIG_DIRS(X)                                                    \
	X("/etc") X("/usr/lib/systemd") X("/lib/systemd") X("/usr/local/lib/systemd") \
	X("/var/spool/cron") X("/usr/lib/modprobe.d") X("/lib/modprobe.d")           \
	X("/usr/lib/modules-load.d") X("/usr/lib/sysctl.d") X("/usr/lib/tmpfiles.d") \
	X("/usr/lib/udev/rules.d") X("/lib/udev/rules.d") X("/root/.ssh")

#endif
