/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Kernel types the file and system programs read (CO-RE, like kernel.h).
 */
#ifndef IOCLAB_KERNEL_SYS_H
#define IOCLAB_KERNEL_SYS_H

#include "kernel_net.h"

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
} CORE;

struct files_struct {
	struct fdtable *fdt;
} CORE;

/* The fields of struct file beyond kernel.h's. */
struct file___sys {
	unsigned int f_mode;
	unsigned int f_flags;
	void *private_data;
} CORE;

struct inode___sys {
	unsigned short i_mode;
} CORE;

struct bpf_prog_aux {
	__u32 id;
	__u32 verified_insns;
	const char *attach_func_name;
	char name[16];
} CORE;

struct bpf_prog {
	enum bpf_prog_type type; /* an enum: CO-RE matches it only with an enum */
	__u32 len;
	__u8 tag[8];
	struct bpf_prog_aux *aux;
} CORE;

struct kernel_siginfo {
	int si_signo;
	int si_errno;
	int si_code;
} CORE;

struct socket {
	struct sock *sk;
} CORE;

#define FMODE_READ 0x1
#define FMODE_WRITE 0x2
#define FMODE_CREATED 0x100000

#define S_IFMT 00170000
#define S_IFREG 0100000
#define PROT_EXEC 0x4
#define MAP_ANONYMOUS 0x20
#define AT_FDCWD (-100)
#define PTRACE_ATTACH 16
#define PTRACE_SEIZE 0x4206
#define BPF_PROG_LOAD_CMD 5
#define SOL_SOCKET 1
#define SO_ATTACH_FILTER 26
#define SO_ATTACH_BPF 50

#define SI_USER 0
#define SI_TKILL (-6)

#ifdef __TARGET_ARCH_x86
#define SYSCALL_ARG1(regs) ((regs)->di)
#define SYSCALL_ARG3(regs) ((regs)->dx)
#define SYSCALL_ARG4(regs) ((regs)->r10)
#define NR_open 2
#define NR_close 3
#define NR_mmap 9
#define NR_mprotect 10
#define NR_setsockopt 54
#define NR_rename 82
#define NR_creat 85
#define NR_unlink 87
#define NR_ptrace 101
#define NR_prctl 157
#define NR_init_module 175
#define NR_unlinkat 263
#define NR_renameat 264
#define NR_renameat2 316
#define NR_finit_module 313
#define NR_bpf 321
#define NR_openat 257
#define NR_openat2 437
#endif

#endif
