/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Whether an opened file lies under a configuration directory
 * (IOCLAB_CONFIG_DIRS in events.h), for read_config / write_config.
 *
 * Fast path, for a clean absolute name (no "//", "/." or "/.."): compare it
 * with the directories as prefixes. Otherwise (a relative name, "..", a name
 * too long to look at) decide on the opened file itself: its parent
 * directories' (device, inode) are looked up in config_dirs, which
 * userspace fills at load time (agent/src/bpf/config_dirs.rs). So
 * "cd /etc && echo x >> passwd", openat(dirfd, "passwd") and
 * "/tmp/../etc/passwd" are all caught, while the common case costs one read
 * of the name. Not caught: an absolute symlink path such as /tmp/l -> /etc/passwd.
 * Included by files.c.
 */

/* Directory levels looked at above an opened file by the slow path:
 * /etc/systemd/system/multi-user.target.wants/x.service is 4 under /etc. */
#define IOCLAB_CONFIG_DEPTH 6
/* Bytes of the name looked at by the fast path. */
#define IOCLAB_NAME_PEEK 128

struct config_dir_key {
	__u64 ino;
	__u32 dev;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct config_dir_key);
	__type(value, __u8);
} config_dirs SEC(".maps");

struct name_peek {
	char buf[IOCLAB_NAME_PEEK];
};

/* Per CPU: 128 bytes is too much for the stack of the sys_exit program. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct name_peek);
} name_peek SEC(".maps");

static __noinline bool under_config_dir(struct file *file)
{
	struct dentry *d = BPF_CORE_READ(file, f_path.dentry);
	struct config_dir_key key = {};

	/* the dentry's inode, not f_inode: on overlayfs f_inode is the inode of
	 * the layer below, while the directories above are overlay inodes, as
	 * stat() shows them to userspace */
	key.dev = BPF_CORE_READ(d, d_inode, i_sb, s_dev);
#pragma unroll
	for (int i = 0; i < IOCLAB_CONFIG_DEPTH; i++) {
		struct dentry *parent = BPF_CORE_READ(d, d_parent);
		if (!parent || parent == d)
			return false; /* the root of the file system */
		d = parent;
		key.ino = BPF_CORE_READ(d, d_inode, i_ino);
		if (bpf_map_lookup_elem(&config_dirs, &key))
			return true;
	}
	return false;
}

/* Whether name (NUL-terminated in buf) is dir or below it; n = strlen(dir), a constant. */
static __always_inline bool name_below(const char *buf, const char *dir, int n)
{
#pragma unroll
	for (int i = 0; i < n; i++)
		if (buf[i] != dir[i])
			return false;
	return buf[n] == '/' || buf[n] == 0;
}

/* 1: under a configuration directory, 0: not, -1: the name cannot tell.
 * Not inlined: on_open is inlined at each open syscall of the switch. */
static __noinline int config_by_name(const char *name)
{
	__u32 zero = 0;
	struct name_peek *p = bpf_map_lookup_elem(&name_peek, &zero);
	if (!p)
		return -1;
	long n = bpf_probe_read_user_str(p->buf, sizeof(p->buf), name);
	if (n <= 1 || p->buf[0] != '/')
		return -1;
	bool complete = n < IOCLAB_NAME_PEEK;
#pragma unroll
	for (int i = 0; i < IOCLAB_NAME_PEEK - 1; i++) {
		if (p->buf[i] == 0)
			break;
		if (p->buf[i] == '/' && (p->buf[i + 1] == '/' || p->buf[i + 1] == '.'))
			return -1; /* "//", "/./", "/../" or a dot file: let the file tell */
	}
#define BELOW(dir)                                      \
	if (name_below(p->buf, dir, sizeof(dir) - 1))   \
		return 1;
	IOCLAB_CONFIG_DIRS(BELOW)
#undef BELOW
	return complete ? 0 : -1;
}

static __always_inline bool config_file(struct file *file, const char *name)
{
	int by_name = config_by_name(name);
	if (by_name >= 0)
		return by_name;
	return under_config_dir(file);
}
