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
	/* 10-19: network records (network.c) */
	IOCLAB_KIND_CONNECT = 10, /* a TCP handshake ended (connected or not) */
	IOCLAB_KIND_SEND = 11,    /* data sent on an IPv4/IPv6 TCP or UDP socket */
	IOCLAB_KIND_DNS = 12,     /* a DNS response (peer port 53) reached a process */
	/* 20-49: file and system records (files.c) */
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
	__u8 _pad[3];
	char data[IOCLAB_PATH_LEN + IOCLAB_NAME_PAD];
};

/* The identity of an opened file: userspace caches hashes by (dev, ino, size, mtime). */
struct ioclab_file {
	__u64 ino;
	__s64 size;
	__s64 mtime_sec;
	__u32 mtime_nsec;
	__u32 dev;
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

#endif
