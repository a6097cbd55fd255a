/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Kernel types the network programs read (CO-RE, like kernel.h), and the
 * userspace ABI structs of the socket syscalls, which never change layout.
 */
#ifndef IOCLAB_KERNEL_NET_H
#define IOCLAB_KERNEL_NET_H

#include "kernel.h"
#include <bpf/bpf_endian.h>

struct in6_addr {
	__u8 s6_addr[16];
} CORE;

struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
} CORE;

struct sock {
	struct sock_common __sk_common;
	__u16 sk_protocol;
	__u16 sk_type;
} CORE;

/* The user registers saved at syscall entry (bpf_task_pt_regs): they give
 * the syscall number and the user buffers of the call in progress. */
#if defined(__TARGET_ARCH_x86)
struct pt_regs {
	unsigned long r9;
	unsigned long r10;
	unsigned long r8;
	unsigned long dx;
	unsigned long si;
	unsigned long di;
	unsigned long orig_ax;
} CORE;
#define SYSCALL_NR(regs) ((regs)->orig_ax)
#define SYSCALL_ARG2(regs) ((regs)->si)
#define SYSCALL_ARG3(regs) ((regs)->dx)
#define SYSCALL_ARG5(regs) ((regs)->r8)
#define NR_read 0
#define NR_write 1
#define NR_readv 19
#define NR_writev 20
#define NR_sendto 44
#define NR_recvfrom 45
#define NR_sendmsg 46
#define NR_recvmsg 47
#define NR_recvmmsg 299
#define NR_sendmmsg 307
#define IOCLAB_HAVE_SYSCALL_ARGS 1
#endif

/* Userspace ABI (not relocated). */
struct user_iovec {
	void *iov_base;
	__u64 iov_len;
};

struct user_msghdr_abi {
	void *msg_name;
	int msg_namelen;
	struct user_iovec *msg_iov;
	__u64 msg_iovlen;
	void *msg_control;
	__u64 msg_controllen;
	unsigned int msg_flags;
};

/* One entry of a sendmmsg/recvmmsg vector: the kernel writes msg_len after each message. */
struct user_mmsghdr_abi {
	struct user_msghdr_abi msg_hdr;
	unsigned int msg_len;
};

/* sockaddr_in and sockaddr_in6 overlaid: family, port, then the address. */
struct user_sockaddr_inet {
	__u16 family;
	__be16 port;
	union {
		__be32 v4;                 /* sockaddr_in.sin_addr */
		struct {
			__u32 flowinfo;
			__u8 v6[16];       /* sockaddr_in6.sin6_addr */
		};
	};
	__u32 scope_id;
};

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_CLOSE 7
#define MSG_PEEK 2

#endif
