/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Kernel module loads: init_module (an ELF image in the caller's memory) and
 * finit_module (an open .ko file), reported at the exit of the syscall with
 * its result, refused loads included (an attempt is what a SOC wants to see).
 * Included by files.c: on_module runs in its sys_exit program, after the
 * syscall-number filter, so it adds no cost to other syscalls.
 *
 * The module's name is in its .modinfo section ("name=...", among
 * NUL-separated key=value entries). For init_module the image is only in
 * user memory during the call, so the section is located here (ELF section
 * headers) and its entries scanned for the name. For finit_module userspace
 * reads the file.
 */

/* Section headers looked at for .modinfo (modules have about 20 to 40). */
#define IOCLAB_ELF_SHDRS 128
/* .modinfo reads looked at for name= (an entry, or 63 bytes of a long one). */
#define IOCLAB_MODINFO_READS 4096
#define IOCLAB_MODINFO_WINDOW 64
#define ELF_SHDR_SIZE 64

/* The first fields of an Elf64_Shdr. */
struct elf_shdr_head {
	__u32 name;
	__u32 type;
	__u64 flags;
	__u64 addr;
	__u64 offset;
	__u64 size;
};

struct modinfo_walk {
	const char *image;
	__u64 len;
	__u64 shoff;
	__u64 stroff;
	__u64 strsize;
	__u64 shnum;
	__u64 off;  /* of .modinfo, once found */
	__u64 size; /* of .modinfo; 0 while not found */
};

static long modinfo_step(__u32 i, struct modinfo_walk *w)
{
	struct elf_shdr_head sh;
	char name[9];

	if (i >= w->shnum)
		return 1;
	if (bpf_probe_read_user(&sh, sizeof(sh), w->image + w->shoff + (__u64)i * ELF_SHDR_SIZE))
		return 1;
	if ((__u64)sh.name + sizeof(name) > w->strsize)
		return 0;
	if (bpf_probe_read_user(name, sizeof(name), w->image + w->stroff + sh.name))
		return 0;
	if (name[0] != '.' || name[1] != 'm' || name[2] != 'o' || name[3] != 'd' || name[4] != 'i' ||
	    name[5] != 'n' || name[6] != 'f' || name[7] != 'o' || name[8] != 0)
		return 0;
	if (sh.offset < w->len && sh.size <= w->len - sh.offset) {
		w->off = sh.offset;
		w->size = sh.size;
	}
	return 1;
}

struct name_scan {
	const char *at;  /* the next read */
	const char *end; /* of .modinfo */
	struct ioclab_module_rec *ev;
	__u8 mid;        /* the last read stopped inside a long entry */
};

/* One read of .modinfo: an entry, or the next 63 bytes of a long one. */
static long name_step(__u32 i, struct name_scan *s)
{
	char buf[IOCLAB_MODINFO_WINDOW];

	if (s->at >= s->end)
		return 1;
	long n = bpf_probe_read_user_str(buf, sizeof(buf), s->at);
	if (n <= 0)
		return 1;
	if (!s->mid && n > 6 && buf[0] == 'n' && buf[1] == 'a' && buf[2] == 'm' && buf[3] == 'e' && buf[4] == '=') {
		__builtin_memcpy(s->ev->name, &buf[5], IOCLAB_MODINFO_WINDOW - 5);
		s->ev->name_len = n - 6;
		return 1;
	}
	/* a full window may end inside an entry: the rest of it is no entry start */
	s->mid = n == IOCLAB_MODINFO_WINDOW;
	s->at += s->mid ? IOCLAB_MODINFO_WINDOW - 1 : n;
	return 0;
}

/* Finds name= in the image's .modinfo section; every offset is checked
 * against the length the caller gave. */
static __always_inline void find_module_name(struct ioclab_module_rec *ev, const char *image, __u64 len)
{
	struct {
		unsigned char ident[16];
		__u16 type, machine;
		__u32 version;
		__u64 entry, phoff, shoff;
		__u32 flags;
		__u16 ehsize, phentsize, phnum, shentsize, shnum, shstrndx;
	} eh;
	struct elf_shdr_head str;

	if (len < sizeof(eh) || bpf_probe_read_user(&eh, sizeof(eh), image))
		return;
	if (eh.ident[0] != 0x7f || eh.ident[1] != 'E' || eh.ident[2] != 'L' || eh.ident[3] != 'F' ||
	    eh.ident[4] != 2 /* ELFCLASS64 */ || eh.shentsize != ELF_SHDR_SIZE || eh.shstrndx >= eh.shnum)
		return;
	if (eh.shoff > len || (__u64)eh.shnum * ELF_SHDR_SIZE > len - eh.shoff)
		return;
	if (bpf_probe_read_user(&str, sizeof(str), image + eh.shoff + (__u64)eh.shstrndx * ELF_SHDR_SIZE))
		return;
	if (str.offset > len || str.size > len - str.offset)
		return;

	struct modinfo_walk w = {
		.image = image,
		.len = len,
		.shoff = eh.shoff,
		.stroff = str.offset,
		.strsize = str.size,
		.shnum = eh.shnum,
	};
	bpf_loop(IOCLAB_ELF_SHDRS, modinfo_step, &w, 0);
	if (!w.size)
		return;
	struct name_scan scan = { .at = image + w.off, .end = image + w.off + w.size, .ev = ev };
	bpf_loop(IOCLAB_MODINFO_READS, name_step, &scan, 0);
}

static __always_inline void on_module(struct task_struct *task, struct pt_regs *regs, long ret, long nr)
{
	struct ioclab_module_rec *ev = reserve(sizeof(*ev));
	if (!ev)
		return;
	fill_syscall(&ev->sc, IOCLAB_KIND_MODULE, IOCLAB_OP_MODULE, task, regs, ret);
	ev->has_file = 0;
	ev->name_len = 0;
	ev->file.path.len = 0;
	ev->file.path.start = 0;
	ev->file.path.truncated = 0;

	const char *params;
	if (nr == NR_finit_module) {
		/* finit_module(fd, params, flags) */
		params = (const char *)SYSCALL_ARG2(regs);
		struct file *file = fd_file(task, (int)SYSCALL_ARG1(regs));
		if (file) {
			fill_file_read(&ev->file, file);
			ev->has_file = 1;
		}
	} else {
		/* init_module(image, len, params) */
		params = (const char *)SYSCALL_ARG3(regs);
		find_module_name(ev, (const char *)SYSCALL_ARG1(regs), SYSCALL_ARG2(regs));
	}
	long n = bpf_probe_read_user_str(ev->args, sizeof(ev->args), params);
	ev->args_len = n > 0 ? n - 1 : 0;
	submit(ev);
}
