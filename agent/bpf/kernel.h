/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The few kernel types the ioclab programs read, declared by hand with
 * preserve_access_index: CO-RE relocates every field access against the
 * running kernel's BTF, so only names matter here, never offsets or sizes.
 * A hand-written subset keeps the build independent of the build machine's
 * kernel (no vmlinux.h generated with bpftool).
 */
#ifndef IOCLAB_KERNEL_H
#define IOCLAB_KERNEL_H

#include <linux/types.h>
#include <linux/bpf.h>

#define CORE __attribute__((preserve_access_index))

typedef __u32 u32;
typedef __u64 u64;
typedef int pid_t;
typedef _Bool bool;
#define true 1
#define false 0

typedef struct { int counter; } CORE atomic_t;
typedef struct { __u32 val; } CORE kuid_t;
typedef struct { __u32 val; } CORE kgid_t;

struct qstr {
	union {
		struct {
			__u32 hash;
			__u32 len;
		};
		__u64 hash_len;
	};
	const unsigned char *name;
} CORE;

struct super_block {
	__u32 s_dev;
} CORE;

struct timespec64 {
	__s64 tv_sec;
	long tv_nsec;
} CORE;

struct inode {
	unsigned long i_ino;
	struct super_block *i_sb;
	__s64 i_size;
	__s64 i_mtime_sec; /* since 6.11 */
	__u32 i_mtime_nsec;
	__s64 i_ctime_sec;
	__u32 i_ctime_nsec; /* bit 31: "ctime queried" flag of multigrain timestamps (6.13) */
} CORE;

/* The same inode before 6.11: mtime and ctime were timespec64s, renamed to
 * __i_mtime / __i_ctime in 6.6-6.7. */
struct inode___v66 {
	struct timespec64 __i_mtime;
	struct timespec64 __i_ctime;
} CORE;
struct inode___old {
	struct timespec64 i_mtime;
	struct timespec64 i_ctime;
} CORE;

struct hlist_bl_node {
	struct hlist_bl_node *next, **pprev;
} CORE;

struct dentry {
	struct hlist_bl_node d_hash; /* unhashed (pprev NULL) once unlinked */
	struct dentry *d_parent;
	struct qstr d_name;
	struct inode *d_inode;
} CORE;

struct vfsmount {
	struct dentry *mnt_root;
} CORE;

struct mount {
	struct mount *mnt_parent;
	struct dentry *mnt_mountpoint;
	struct vfsmount mnt;
} CORE;

struct path {
	struct vfsmount *mnt;
	struct dentry *dentry;
} CORE;

struct file {
	struct path f_path;
	struct inode *f_inode;
} CORE;

struct fs_struct {
	struct path root;
	struct path pwd;
} CORE;

struct ns_common {
	unsigned int inum;
} CORE;

struct mnt_namespace {
	struct ns_common ns;
} CORE;

struct nsproxy {
	struct mnt_namespace *mnt_ns;
	void *uts_ns;
	void *ipc_ns;
	void *net_ns;
	void *cgroup_ns;
} CORE;

struct cred {
	kuid_t uid;
	kgid_t gid;
} CORE;

struct mm_struct {
	unsigned long arg_start;
	unsigned long arg_end;
} CORE;

struct signal_struct {
	atomic_t live;
} CORE;

struct task_struct {
	unsigned int flags;
	int exit_state;
	int exit_code;
	pid_t pid;
	pid_t tgid;
	struct task_struct *real_parent;
	struct task_struct *group_leader;
	__u64 start_boottime;
	const struct cred *cred;
	char comm[16];
	struct fs_struct *fs;
	struct nsproxy *nsproxy;
	struct signal_struct *signal;
	struct mm_struct *mm;
	int exit_signal;
	struct files_struct *files;
	struct sighand_struct *sighand;
} CORE;

struct linux_binprm {
	struct file *file;
	const char *filename;
	const char *interp;
} CORE;

#define PF_KTHREAD 0x00200000
#define EXIT_ZOMBIE 0x00000020
#define CLONE_VM 0x00000100
#define CLONE_FS 0x00000200
#define CLONE_FILES 0x00000400
#define CLONE_SIGHAND 0x00000800
#define CLONE_NEWNS 0x00020000
#define CLONE_NEWCGROUP 0x02000000
#define CLONE_NEWUTS 0x04000000
#define CLONE_NEWIPC 0x08000000
#define CLONE_NEWNET 0x40000000

struct files_struct;
struct sighand_struct;

#endif
