/* Host program run by build.rs: prints the layout of every ABI struct in
 * events.h as a Rust table, so a test can compare it with agent/src/bpf/abi.rs. */
#include <stddef.h>
#include <stdio.h>
#include "events.h"

#define FIELD(s, f) \
	printf("    (\"%s.%s\", %zu, %zu),\n", #s, #f, offsetof(struct s, f), sizeof(((struct s *)0)->f))
#define SIZE(s) printf("    (\"%s\", 0, %zu),\n", #s, sizeof(struct s))

int main(void)
{
	printf("/// (struct.field, offset, size) as compiled from bpf/events.h.\n");
	printf("pub const C_LAYOUT: &[(&str, usize, usize)] = &[\n");
	SIZE(ioclab_task);
	FIELD(ioclab_task, start_boottime);
	FIELD(ioclab_task, pid);
	FIELD(ioclab_task, tgid);
	FIELD(ioclab_task, uid);
	FIELD(ioclab_task, gid);
	FIELD(ioclab_task, flags);
	FIELD(ioclab_task, mnt_ns);
	FIELD(ioclab_task, zombie);
	FIELD(ioclab_task, comm);
	SIZE(ioclab_header);
	FIELD(ioclab_header, kind);
	FIELD(ioclab_header, time_ns);
	FIELD(ioclab_header, task);
	FIELD(ioclab_header, parent);
	SIZE(ioclab_path);
	FIELD(ioclab_path, start);
	FIELD(ioclab_path, len);
	FIELD(ioclab_path, truncated);
	FIELD(ioclab_path, data);
	SIZE(ioclab_file);
	FIELD(ioclab_file, ino);
	FIELD(ioclab_file, size);
	FIELD(ioclab_file, mtime_sec);
	FIELD(ioclab_file, mtime_nsec);
	FIELD(ioclab_file, dev);
	FIELD(ioclab_file, path);
	SIZE(ioclab_exec);
	FIELD(ioclab_exec, hdr);
	FIELD(ioclab_exec, exe);
	FIELD(ioclab_exec, argv_len);
	FIELD(ioclab_exec, filename_len);
	FIELD(ioclab_exec, is_script);
	FIELD(ioclab_exec, argv_truncated);
	FIELD(ioclab_exec, argv);
	FIELD(ioclab_exec, filename);
	FIELD(ioclab_exec, cwd);
	SIZE(ioclab_clone);
	FIELD(ioclab_clone, hdr);
	FIELD(ioclab_clone, flags);
	SIZE(ioclab_exit);
	FIELD(ioclab_exit, hdr);
	FIELD(ioclab_exit, exit_code);
	FIELD(ioclab_exit, group_dead);
	SIZE(ioclab_endpoint);
	FIELD(ioclab_endpoint, addr);
	FIELD(ioclab_endpoint, port);
	SIZE(ioclab_net);
	FIELD(ioclab_net, hdr);
	FIELD(ioclab_net, cookie);
	FIELD(ioclab_net, size);
	FIELD(ioclab_net, src);
	FIELD(ioclab_net, dst);
	FIELD(ioclab_net, family);
	FIELD(ioclab_net, type);
	FIELD(ioclab_net, proto);
	FIELD(ioclab_net, connected);
	FIELD(ioclab_net, data_len);
	printf("];\n");
	printf("/// Constants of bpf/events.h.\n");
	printf("pub const C_CONSTANTS: &[(&str, u64)] = &[\n");
	printf("    (\"IOCLAB_COMM_LEN\", %d),\n", IOCLAB_COMM_LEN);
	printf("    (\"IOCLAB_PATH_LEN\", %d),\n", IOCLAB_PATH_LEN);
	printf("    (\"IOCLAB_NAME_PAD\", %d),\n", IOCLAB_NAME_PAD);
	printf("    (\"IOCLAB_ARGV_LEN\", %d),\n", IOCLAB_ARGV_LEN);
	printf("    (\"IOCLAB_KIND_EXEC\", %d),\n", IOCLAB_KIND_EXEC);
	printf("    (\"IOCLAB_KIND_CLONE\", %d),\n", IOCLAB_KIND_CLONE);
	printf("    (\"IOCLAB_KIND_EXIT\", %d),\n", IOCLAB_KIND_EXIT);
	printf("    (\"IOCLAB_KIND_CONNECT\", %d),\n", IOCLAB_KIND_CONNECT);
	printf("    (\"IOCLAB_KIND_SEND\", %d),\n", IOCLAB_KIND_SEND);
	printf("    (\"IOCLAB_KIND_DNS\", %d),\n", IOCLAB_KIND_DNS);
	printf("    (\"IOCLAB_DNS_LEN\", %d),\n", IOCLAB_DNS_LEN);
	printf("    (\"IOCLAB_SEND_SAMPLE\", %d),\n", IOCLAB_SEND_SAMPLE);
	printf("];\n");
	return 0;
}
