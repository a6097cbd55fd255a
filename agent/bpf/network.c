/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Network: TCP connects, data sent, and DNS responses received, on IPv4 and
 * IPv6 TCP/UDP sockets.
 *
 * No syscall tracepoints: attaching one puts every syscall of every task on
 * the slow path. The socket layer's own tracepoints fire in the calling
 * process after each send/receive (sock_send_length, sock_recv_length) and
 * on TCP state changes (inet_sock_set_state); the user buffer of the call in
 * progress comes from the registers saved at syscall entry.
 */
#include "kernel_net.h"

/* Set by the loader: sends smaller than this make no record (Kunai's send_data_min_len). */
const volatile __u64 send_data_min_len = 1;
/* Set by the loader: 0 when send_data is disabled (sends then only teach dns_sockets). */
const volatile __u8 send_records = 1;

/* Who started a TCP connect, by socket cookie: the handshake ends in softirq
 * context, where the current task is not the caller. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct ioclab_header);
} connecting SEC(".maps");

/* Unconnected UDP sockets that sent to port 53, by cookie: their next
 * receives are DNS responses from that server. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct ioclab_endpoint);
} dns_sockets SEC(".maps");

/* A header is too big for the stack next to the rest: built here, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ioclab_header);
} header_scratch SEC(".maps");

static __always_inline bool inet_flow(struct sock *sk)
{
	__u16 family = sk->__sk_common.skc_family;
	__u16 proto = sk->sk_protocol;

	return (family == AF_INET || family == AF_INET6) && (proto == IPPROTO_TCP || proto == IPPROTO_UDP);
}

static __always_inline void fill_socket(struct ioclab_net *ev, struct sock *sk)
{
	ev->family = sk->__sk_common.skc_family;
	ev->type = sk->sk_type;
	ev->proto = sk->sk_protocol;
	ev->cookie = bpf_get_socket_cookie(sk);
	if (ev->family == AF_INET) {
		__builtin_memset(ev->src.addr, 0, 16);
		__builtin_memset(ev->dst.addr, 0, 16);
		*(__u32 *)ev->src.addr = sk->__sk_common.skc_rcv_saddr;
		*(__u32 *)ev->dst.addr = sk->__sk_common.skc_daddr;
	} else {
		bpf_probe_read_kernel(ev->src.addr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_probe_read_kernel(ev->dst.addr, 16, &sk->__sk_common.skc_v6_daddr);
	}
	ev->src.port = sk->__sk_common.skc_num;
	ev->dst.port = bpf_ntohs(sk->__sk_common.skc_dport);
	ev->connected = 0;
	ev->size = 0;
	ev->data_len = 0;
}

/* Where the data of the send/receive in progress is in user memory: one
 * buffer, or an iovec array (readv/writev, a msghdr's). */
struct user_data {
	void *buf;
	struct user_iovec *iov;
	__u64 iovcnt;
};

/* iovecs of one call walked, at most: scatter reads of a DNS answer use a few. */
#define IOCLAB_MAX_IOV 8

/* Bytes gathered from several iovecs before they go into a record: twice
 * the largest copy, so that a copy at any offset below IOCLAB_DNS_LEN of
 * up to IOCLAB_DNS_LEN bytes stays inside (what the verifier checks). */
struct gather {
	__u8 bytes[2 * IOCLAB_DNS_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gather);
} gather_scratch SEC(".maps");

/* Copies the first `want` bytes (at most `cap`, a constant per call) of the
 * call's data to `out`, walking the iovecs in order, never reading one
 * past its length; returns the bytes copied (0 when none could be read). */
static __always_inline __u32 copy_data(void *out, __u64 want, __u32 cap, struct user_data *d)
{
	if (want > cap)
		want = cap;
	if (d->buf) {
		__u32 len = want;
		barrier_var(len);
		if (len > cap)
			len = cap;
		return bpf_probe_read_user(out, len, d->buf) == 0 ? len : 0;
	}
	__u32 zero = 0;
	struct gather *g = bpf_map_lookup_elem(&gather_scratch, &zero);
	if (!g || !d->iov)
		return 0;
	__u32 off = 0;
	for (int i = 0; i < IOCLAB_MAX_IOV; i++) {
		struct user_iovec iov;
		if (i >= d->iovcnt || off >= want || bpf_probe_read_user(&iov, sizeof(iov), &d->iov[i]))
			break;
		__u64 n = want - off;
		if (iov.iov_len < n)
			n = iov.iov_len;
		__u32 at = off & (IOCLAB_DNS_LEN - 1);
		__u32 len = n & (2 * IOCLAB_DNS_LEN - 1);
		if (len > IOCLAB_DNS_LEN)
			len = IOCLAB_DNS_LEN;
		if (len && bpf_probe_read_user(&g->bytes[at], len, iov.iov_base))
			break;
		off += len;
	}
	__u32 len = off;
	barrier_var(len);
	if (len > cap)
		len = cap;
	return bpf_probe_read_kernel(out, len, g->bytes) == 0 ? len : 0;
}

#ifdef IOCLAB_HAVE_SYSCALL_ARGS
/* Set by the loader: 1 when the syscall-exit program runs (a file or system
 * event is on, as by default). sendmmsg/recvmmsg fire the socket tracepoints
 * once per message, and only a per-call count tells which message of the
 * vector is in progress: the count lives here and sys_exit ends it. Without
 * sys_exit there is no end of call to see, and only single-message calls
 * are sampled. */
const volatile __u8 mmsg_at_exit = 0;

/* The sendmmsg/recvmmsg in progress per thread: its vector and the index of
 * the message the next socket tracepoint is about. */
struct mmsg_call {
	__u64 vec;
	__u32 next;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct mmsg_call);
} mmsg_calls SEC(".maps");

/* The msghdr of the message the socket tracepoint is about, in user memory;
 * NULL when the syscall has none or it cannot be told. Called once per
 * tracepoint of an mmsg call (it advances the call's message count). */
static __always_inline struct user_msghdr_abi *syscall_msghdr(struct pt_regs *regs)
{
	switch (SYSCALL_NR(regs)) {
	case NR_recvmsg:
	case NR_sendmsg:
		return (struct user_msghdr_abi *)SYSCALL_ARG2(regs);
	case NR_recvmmsg:
	case NR_sendmmsg:
		break;
	default:
		return NULL;
	}
	__u64 vec = SYSCALL_ARG2(regs), vlen = SYSCALL_ARG3(regs);
	if (!mmsg_at_exit)
		return vlen == 1 ? (struct user_msghdr_abi *)vec : NULL;
	__u64 id = bpf_get_current_pid_tgid();
	struct mmsg_call *call = bpf_map_lookup_elem(&mmsg_calls, &id);
	__u32 k = 0;
	if (call && call->vec == vec) {
		k = call->next;
		call->next = k + 1;
	} else {
		struct mmsg_call first = { .vec = vec, .next = 1 };
		bpf_map_update_elem(&mmsg_calls, &id, &first, BPF_ANY);
	}
	if (k >= vlen)
		return NULL;
	return &((struct user_mmsghdr_abi *)vec)[k].msg_hdr;
}

/* At the exit of a sendmmsg/recvmmsg (from files.c's sys_exit): the call's count ends. */
static __always_inline void mmsg_done(void)
{
	__u64 id = bpf_get_current_pid_tgid();
	bpf_map_delete_elem(&mmsg_calls, &id);
}

/* The data of the call in progress; false when the syscall has none to
 * read (sendfile, splice, io_uring...). `umsg`: syscall_msghdr's answer. */
static __always_inline bool syscall_data(struct pt_regs *regs, struct user_msghdr_abi *umsg, struct user_data *d)
{
	struct user_msghdr_abi msg;

	d->buf = NULL;
	d->iov = NULL;
	d->iovcnt = 0;
	switch (SYSCALL_NR(regs)) {
	case NR_read:
	case NR_write:
	case NR_recvfrom:
	case NR_sendto:
		d->buf = (void *)SYSCALL_ARG2(regs);
		return d->buf != NULL;
	case NR_readv:
	case NR_writev:
		d->iov = (struct user_iovec *)SYSCALL_ARG2(regs);
		d->iovcnt = SYSCALL_ARG3(regs);
		return d->iov != NULL;
	}
	if (!umsg || bpf_probe_read_user(&msg, sizeof(msg), umsg) || !msg.msg_iov)
		return false;
	d->iov = msg.msg_iov;
	d->iovcnt = msg.msg_iovlen;
	return true;
}
/* The destination named by an unconnected send (sendto's address, a msghdr's msg_name). */
static __always_inline bool syscall_dest(struct pt_regs *regs, struct user_msghdr_abi *umsg,
					 struct ioclab_endpoint *dst)
{
	struct user_sockaddr_inet sa;
	struct user_msghdr_abi msg;
	void *name = NULL;

	if (SYSCALL_NR(regs) == NR_sendto)
		name = (void *)SYSCALL_ARG5(regs);
	else if (umsg && bpf_probe_read_user(&msg, sizeof(msg), umsg) == 0)
		name = msg.msg_name;
	if (!name || bpf_probe_read_user(&sa, sizeof(sa), name))
		return false;
	__builtin_memset(dst->addr, 0, 16);
	if (sa.family == AF_INET)
		*(__u32 *)dst->addr = sa.v4;
	else if (sa.family == AF_INET6)
		__builtin_memcpy(dst->addr, sa.v6, 16);
	else
		return false;
	dst->port = bpf_ntohs(sa.port);
	return true;
}
#else
static __always_inline void *syscall_msghdr(void *regs) { return NULL; }
static __always_inline bool syscall_data(void *regs, void *umsg, struct user_data *d) { return false; }
static __always_inline bool syscall_dest(void *regs, void *umsg, struct ioclab_endpoint *dst) { return false; }
#endif

static __always_inline void fill_current(struct ioclab_header *h, __u32 kind)
{
	struct task_struct *task = bpf_get_current_task_btf();

	fill_header(h, kind, task, task->real_parent);
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(ioclab_sock_send, struct sock *sk, int ret, int flags)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
	/* before any early return: each message of an mmsg call counts */
	struct user_msghdr_abi *umsg = syscall_msghdr(regs);

	if (ret <= 0 || !inet_flow(sk))
		return 0;

	bool connected = sk->__sk_common.skc_dport != 0;
	struct ioclab_endpoint dst;
	bool named = !connected && syscall_dest(regs, umsg, &dst);
	/* a DNS query: userspace keeps its id, and only an answer carrying it
	 * teaches names, so a query always makes a record (send_data or not) */
	bool query = connected ? sk->__sk_common.skc_dport == bpf_htons(53) : named && dst.port == 53;

	if (query && named && sk->sk_protocol == IPPROTO_UDP) {
		/* an unconnected socket that asked a server: its next receives are answers */
		__u64 cookie = bpf_get_socket_cookie(sk);
		bpf_map_update_elem(&dns_sockets, &cookie, &dst, BPF_ANY);
	}
	if (!query && (!send_records || ret < send_data_min_len))
		return 0;

	struct ioclab_net *ev = reserve(sizeof(*ev) + IOCLAB_SEND_SAMPLE);
	if (!ev)
		return 0;
	fill_current(&ev->hdr, IOCLAB_KIND_SEND);
	fill_socket(ev, sk);
	ev->size = ret;
	ev->connected = connected;
	if (named)
		ev->dst = dst;

	struct user_data d;
	if (syscall_data(regs, umsg, &d))
		ev->data_len = copy_data((void *)(ev + 1), ret, IOCLAB_SEND_SAMPLE, &d);
	submit(ev);
	return 0;
}

/* A DNS answer of `ret` bytes, in a record with room for `cap` (a constant
 * per call: the ring reserves fixed sizes). What does not fit is left out:
 * `size` > `data_len` tells userspace the answer was cut. */
static __always_inline void dns_record(struct sock *sk, int ret, struct user_data *d, struct ioclab_endpoint *server,
				       __u32 cap)
{
	struct ioclab_net *ev = reserve(sizeof(*ev) + cap);
	if (!ev)
		return;
	fill_current(&ev->hdr, IOCLAB_KIND_DNS);
	fill_socket(ev, sk);
	ev->size = ret;
	if (server)
		ev->dst = *server;
	ev->connected = !server;
	ev->data_len = copy_data((void *)(ev + 1), ret, cap, d);
	submit(ev);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(ioclab_sock_recv, struct sock *sk, int ret, int flags)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
	/* before any early return: each message of an mmsg call counts */
	struct user_msghdr_abi *umsg = syscall_msghdr(regs);

	if (ret <= 0 || (flags & MSG_PEEK) || !inet_flow(sk))
		return 0;

	struct ioclab_endpoint *server = NULL;
	if (sk->__sk_common.skc_dport != bpf_htons(53)) {
		if (sk->sk_protocol != IPPROTO_UDP)
			return 0;
		__u64 cookie = bpf_get_socket_cookie(sk);
		server = bpf_map_lookup_elem(&dns_sockets, &cookie);
		if (!server)
			return 0;
	}
	/* a DNS answer is only worth its bytes */
	struct user_data d;
	if (!syscall_data(regs, umsg, &d))
		return 0;

	if (ret <= IOCLAB_DNS_SMALL)
		dns_record(sk, ret, &d, server, IOCLAB_DNS_SMALL);
	else
		dns_record(sk, ret, &d, server, IOCLAB_DNS_LEN);
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(ioclab_sock_state, struct sock *sk, int oldstate, int newstate)
{
	/* a connection changes state about ten times, both ends counted: only
	 * the start and the end of a connect() matter, and the cookie is made
	 * (a shared counter) only for those */
	if (sk->sk_protocol != IPPROTO_TCP || (newstate != TCP_SYN_SENT && oldstate != TCP_SYN_SENT))
		return 0;
	__u64 cookie = bpf_get_socket_cookie(sk);

	if (newstate == TCP_SYN_SENT) {
		/* connect() in the calling process: remember who */
		__u32 zero = 0;
		struct ioclab_header *h = bpf_map_lookup_elem(&header_scratch, &zero);
		if (!h)
			return 0;
		fill_current(h, IOCLAB_KIND_CONNECT);
		bpf_map_update_elem(&connecting, &cookie, h, BPF_ANY);
		return 0;
	}
	/* the handshake ended (ESTABLISHED, or CLOSE when refused) */
	struct ioclab_header *caller = bpf_map_lookup_elem(&connecting, &cookie);
	if (!caller)
		return 0;
	struct ioclab_net *ev = reserve(sizeof(*ev));
	if (ev) {
		ev->hdr = *caller;
		fill_socket(ev, sk);
		ev->connected = newstate == TCP_ESTABLISHED;
		submit(ev);
	}
	bpf_map_delete_elem(&connecting, &cookie);
	return 0;
}
