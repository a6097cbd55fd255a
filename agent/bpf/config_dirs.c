/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Whether an opened file lies under a configuration directory (read_config /
 * write_config). Decided on the opened file's dentries, not on the name the
 * process gave: "cd /etc && echo x >> passwd", openat(dirfd, "passwd"),
 * "/tmp/../etc/passwd" or a symlink to /etc/passwd are all caught.
 *
 * Userspace fills config_dirs with the (device, inode) of each directory of
 * its list (agent/src/bpf/config_dirs.rs) at load time; here the file's
 * parent directories are looked up, at most IOCLAB_CONFIG_DEPTH levels up.
 * Included by files.c.
 */

/* Directory levels looked at above an opened file:
 * /etc/systemd/system/multi-user.target.wants/x.service is 4 under /etc. */
#define IOCLAB_CONFIG_DEPTH 6

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

static __always_inline bool under_config_dir(struct file *file)
{
	struct dentry *d = BPF_CORE_READ(file, f_path.dentry);
	struct config_dir_key key = {};

	key.dev = BPF_CORE_READ(file, f_inode, i_sb, s_dev);
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
