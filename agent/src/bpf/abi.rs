//! Rust mirror of bpf/events.h, the records the eBPF programs write to the
//! ring buffer. A test compares every offset and size with the C compiler's.

#![allow(missing_docs)]

pub const COMM_LEN: usize = 16;
pub const PATH_LEN: usize = 1024;
pub const NAME_PAD: usize = 256;
pub const ARGV_LEN: usize = 1024;

pub const KIND_EXEC: u32 = 1;
pub const KIND_CLONE: u32 = 2;
pub const KIND_EXIT: u32 = 3;
pub const KIND_SCRIPT: u32 = 4;
/// Script execs of one process followed at once until their interpreters open them.
pub const SCRIPT_MARKS: usize = 4;
pub const KIND_CONNECT: u32 = 10;
pub const KIND_SEND: u32 = 11;
pub const KIND_DNS: u32 = 12;

pub const KIND_FILE: u32 = 20;
pub const KIND_PATHS: u32 = 21;
pub const KIND_SYS: u32 = 22;
pub const KIND_THROTTLED: u32 = 23;

pub const NAME_LEN: usize = 256;
pub const SYS_DATA: usize = 512;

pub const OP_OPEN: u32 = 1;
pub const OP_CLOSE_WRITABLE: u32 = 2;
pub const OP_MMAP_EXEC: u32 = 3;
pub const OP_MPROTECT_EXEC: u32 = 4;
pub const OP_RENAME: u32 = 5;
pub const OP_UNLINK: u32 = 6;
pub const OP_KILL: u32 = 7;
pub const OP_PTRACE: u32 = 8;
pub const OP_PRCTL: u32 = 9;
pub const OP_MODULE: u32 = 10;
pub const OP_BPF_PROG: u32 = 11;
pub const OP_SOCK_FILTER: u32 = 12;

/// Bits of the `file_events` global of files.c.
pub const WANT_CREATE: u64 = 1 << 0;
pub const WANT_READ: u64 = 1 << 1;
pub const WANT_READ_CONFIG: u64 = 1 << 2;
pub const WANT_WRITE: u64 = 1 << 3;
pub const WANT_WRITE_CONFIG: u64 = 1 << 4;
pub const WANT_RENAME: u64 = 1 << 5;
pub const WANT_UNLINK: u64 = 1 << 6;
pub const WANT_WRITE_CLOSE: u64 = 1 << 7;
pub const WANT_MMAP_EXEC: u64 = 1 << 8;
pub const WANT_MPROTECT_EXEC: u64 = 1 << 9;
pub const WANT_PTRACE: u64 = 1 << 10;
pub const WANT_PRCTL: u64 = 1 << 11;
pub const WANT_MODULE: u64 = 1 << 12;
pub const WANT_BPF_PROG: u64 = 1 << 13;
pub const WANT_SOCK_FILTER: u64 = 1 << 14;

pub const DNS_LEN: usize = 2048;
pub const SEND_SAMPLE: usize = 256;

/// A task (`struct ioclab_task`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Task {
    pub start_boottime: u64,
    pub pid: u32,
    pub tgid: u32,
    pub uid: u32,
    pub gid: u32,
    pub flags: u32,
    pub mnt_ns: u32,
    pub zombie: u8,
    pub _pad: [u8; 7],
    pub comm: [u8; COMM_LEN],
}

/// Common header of every record (`struct ioclab_header`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Header {
    pub kind: u32,
    pub _pad: u32,
    pub time_ns: u64,
    /// cgroup v2 id of the task that made the record.
    pub cgroup_id: u64,
    pub task: Task,
    pub parent: Task,
}

/// A resolved path: `data[start .. start + len]` (`struct ioclab_path`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Path {
    pub start: u16,
    pub len: u16,
    pub truncated: u8,
    pub deleted: u8,
    pub _pad: [u8; 2],
    pub data: [u8; PATH_LEN + NAME_PAD],
}

/// An opened file's identity and path (`struct ioclab_file`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct File {
    pub ino: u64,
    pub size: i64,
    pub mtime_sec: i64,
    pub mtime_nsec: u32,
    pub dev: u32,
    pub ctime_sec: i64,
    pub ctime_nsec: u32,
    pub _pad: u32,
    pub path: Path,
}

/// `struct ioclab_exec`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Exec {
    pub hdr: Header,
    pub exe: File,
    pub argv_len: u32,
    pub filename_len: u32,
    pub is_script: u8,
    pub argv_truncated: u8,
    pub _pad: [u8; 6],
    pub argv: [u8; ARGV_LEN],
    pub filename: [u8; PATH_LEN],
    pub cwd: Path,
}

/// `struct ioclab_script`: the file a script's interpreter opened by the script's name.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Script {
    pub hdr: Header,
    pub exec_time_ns: u64,
    pub fd: i32,
    pub exact: u8,
    pub _pad: [u8; 3],
    pub file: File,
}

/// `struct ioclab_clone`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Clone {
    pub hdr: Header,
    pub flags: u64,
}

/// `struct ioclab_exit`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Exit {
    pub hdr: Header,
    pub exit_code: i32,
    pub group_dead: u8,
    pub _pad: [u8; 3],
}

/// One end of a flow (`struct ioclab_endpoint`): IPv4 in the first 4 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Endpoint {
    pub addr: [u8; 16],
    pub port: u16,
    pub _pad: [u8; 2],
}

/// connect / send / DNS records (`struct ioclab_net`), followed by `data_len` bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Net {
    pub hdr: Header,
    pub cookie: u64,
    pub size: i64,
    pub src: Endpoint,
    pub dst: Endpoint,
    pub family: u16,
    pub kind: u16,
    pub proto: u16,
    pub connected: u8,
    pub _pad: u8,
    pub data_len: u32,
    pub _pad2: u32,
}

/// A socket's kind (`struct ioclab_sock`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Sock {
    pub family: u16,
    pub kind: u16,
    pub proto: u16,
    pub _pad: u16,
}

/// The syscall of a file/system record (`struct ioclab_syscall`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Syscall {
    pub hdr: Header,
    pub op: u32,
    pub nr: u32,
    pub ret: i64,
    pub args: [u64; 6],
}

/// `struct ioclab_file_rec`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FileRec {
    pub sc: Syscall,
    pub f_mode: u32,
    pub config: u32,
    pub file: File,
}

/// `struct ioclab_paths_rec`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PathsRec {
    pub sc: Syscall,
    pub name_len: [u32; 2],
    pub name: [[u8; NAME_LEN]; 2],
    pub base: [Path; 2],
}

/// `struct ioclab_sys_rec`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SysRec {
    pub sc: Syscall,
    pub target: Task,
    pub prog_id: u32,
    pub prog_type: u32,
    pub prog_verified_insns: u32,
    pub data_len: u32,
    pub prog_tag: [u8; 8],
    pub prog_name: [u8; 16],
    pub text: [u8; 64],
    pub sock: Sock,
    pub data: [u8; SYS_DATA],
}

/// `struct ioclab_throttled`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Throttled {
    pub hdr: Header,
    pub limit: u64,
    pub dropped: u64,
}

// Kernel module loads (bpf/modules.c).
pub const KIND_MODULE: u32 = 24;
pub const MODNAME_LEN: usize = 64;
pub const MODARGS_LEN: usize = 256;

/// `struct ioclab_module_rec`: init_module / finit_module.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ModuleRec {
    pub sc: Syscall,
    pub file: File,
    pub args_len: u32,
    pub name_len: u32,
    pub has_file: u8,
    pub _pad: [u8; 7],
    pub args: [u8; MODARGS_LEN],
    pub name: [u8; MODNAME_LEN],
}

/// Marker for the plain-old-data records above: any bit pattern is valid.
///
/// # Safety
/// Only for `repr(C)` structs made of integers and byte arrays.
pub unsafe trait Record: Copy {}
unsafe impl Record for Header {}
unsafe impl Record for Exec {}
unsafe impl Record for Script {}
unsafe impl Record for Clone {}
unsafe impl Record for Exit {}
unsafe impl Record for Net {}
unsafe impl Record for FileRec {}
unsafe impl Record for PathsRec {}
unsafe impl Record for SysRec {}
unsafe impl Record for Throttled {}
unsafe impl Record for ModuleRec {}

/// A record of all zeroes (a valid value of any [`Record`]).
pub fn zeroed<T: Record>() -> T {
    // SAFETY: T is plain old data (Record): all zeroes is a valid T.
    unsafe { std::mem::zeroed() }
}

/// Copies a record out of ring-buffer bytes; `None` when the bytes are too short.
pub fn read<T: Record>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < std::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: length checked, T is plain old data (Record), read_unaligned has no alignment need.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const T) })
}

/// Borrows a record in place (ring-buffer records are 8-byte aligned), so a
/// 5 KB exec record is not copied to be read; `None` when too short or misaligned.
pub fn view<T: Record>(bytes: &[u8]) -> Option<&T> {
    let aligned = bytes.as_ptr().align_offset(std::mem::align_of::<T>()) == 0;
    if bytes.len() < std::mem::size_of::<T>() || !aligned {
        return None;
    }
    // SAFETY: length and alignment checked; any bit pattern is a valid T (Record).
    Some(unsafe { &*(bytes.as_ptr() as *const T) })
}

impl Path {
    /// The resolved path bytes (empty when the kernel side did not resolve one).
    pub fn bytes(&self) -> &[u8] {
        let start = self.start as usize;
        let end = (start + self.len as usize).min(PATH_LEN);
        self.data.get(start..end).unwrap_or(&[])
    }
}

/// Bytes of a NUL-terminated C string in a fixed buffer.
pub fn c_str(buf: &[u8]) -> &[u8] {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    &buf[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    include!(concat!(env!("OUT_DIR"), "/abi_layout.rs"));

    macro_rules! field {
        ($t:ty, $f:ident) => {{
            let v = std::mem::MaybeUninit::<$t>::uninit();
            // SAFETY: only the address of the field is taken, never read.
            let size = unsafe { size_of_val(&(*v.as_ptr()).$f) };
            (offset_of!($t, $f), size)
        }};
    }

    fn rust_layout(name: &str) -> Option<(usize, usize)> {
        Some(match name {
            "ioclab_task" => (0, size_of::<Task>()),
            "ioclab_task.start_boottime" => field!(Task, start_boottime),
            "ioclab_task.pid" => field!(Task, pid),
            "ioclab_task.tgid" => field!(Task, tgid),
            "ioclab_task.uid" => field!(Task, uid),
            "ioclab_task.gid" => field!(Task, gid),
            "ioclab_task.flags" => field!(Task, flags),
            "ioclab_task.mnt_ns" => field!(Task, mnt_ns),
            "ioclab_task.zombie" => field!(Task, zombie),
            "ioclab_task.comm" => field!(Task, comm),
            "ioclab_header" => (0, size_of::<Header>()),
            "ioclab_header.kind" => field!(Header, kind),
            "ioclab_header.time_ns" => field!(Header, time_ns),
            "ioclab_header.cgroup_id" => field!(Header, cgroup_id),
            "ioclab_header.task" => field!(Header, task),
            "ioclab_header.parent" => field!(Header, parent),
            "ioclab_path" => (0, size_of::<Path>()),
            "ioclab_path.start" => field!(Path, start),
            "ioclab_path.len" => field!(Path, len),
            "ioclab_path.truncated" => field!(Path, truncated),
            "ioclab_path.deleted" => field!(Path, deleted),
            "ioclab_path.data" => field!(Path, data),
            "ioclab_file" => (0, size_of::<File>()),
            "ioclab_file.ino" => field!(File, ino),
            "ioclab_file.size" => field!(File, size),
            "ioclab_file.mtime_sec" => field!(File, mtime_sec),
            "ioclab_file.mtime_nsec" => field!(File, mtime_nsec),
            "ioclab_file.dev" => field!(File, dev),
            "ioclab_file.ctime_sec" => field!(File, ctime_sec),
            "ioclab_file.ctime_nsec" => field!(File, ctime_nsec),
            "ioclab_file.path" => field!(File, path),
            "ioclab_exec" => (0, size_of::<Exec>()),
            "ioclab_exec.hdr" => field!(Exec, hdr),
            "ioclab_exec.exe" => field!(Exec, exe),
            "ioclab_exec.argv_len" => field!(Exec, argv_len),
            "ioclab_exec.filename_len" => field!(Exec, filename_len),
            "ioclab_exec.is_script" => field!(Exec, is_script),
            "ioclab_exec.argv_truncated" => field!(Exec, argv_truncated),
            "ioclab_exec.argv" => field!(Exec, argv),
            "ioclab_exec.filename" => field!(Exec, filename),
            "ioclab_exec.cwd" => field!(Exec, cwd),
            "ioclab_script" => (0, size_of::<Script>()),
            "ioclab_script.hdr" => field!(Script, hdr),
            "ioclab_script.exec_time_ns" => field!(Script, exec_time_ns),
            "ioclab_script.fd" => field!(Script, fd),
            "ioclab_script.exact" => field!(Script, exact),
            "ioclab_script.file" => field!(Script, file),
            "ioclab_clone" => (0, size_of::<Clone>()),
            "ioclab_clone.hdr" => field!(Clone, hdr),
            "ioclab_clone.flags" => field!(Clone, flags),
            "ioclab_exit" => (0, size_of::<Exit>()),
            "ioclab_exit.hdr" => field!(Exit, hdr),
            "ioclab_exit.exit_code" => field!(Exit, exit_code),
            "ioclab_exit.group_dead" => field!(Exit, group_dead),
            "ioclab_endpoint" => (0, size_of::<Endpoint>()),
            "ioclab_endpoint.addr" => field!(Endpoint, addr),
            "ioclab_endpoint.port" => field!(Endpoint, port),
            "ioclab_net" => (0, size_of::<Net>()),
            "ioclab_net.hdr" => field!(Net, hdr),
            "ioclab_net.cookie" => field!(Net, cookie),
            "ioclab_net.size" => field!(Net, size),
            "ioclab_net.src" => field!(Net, src),
            "ioclab_net.dst" => field!(Net, dst),
            "ioclab_net.family" => field!(Net, family),
            "ioclab_net.type" => field!(Net, kind),
            "ioclab_net.proto" => field!(Net, proto),
            "ioclab_net.connected" => field!(Net, connected),
            "ioclab_net.data_len" => field!(Net, data_len),
            "ioclab_sock" => (0, size_of::<Sock>()),
            "ioclab_sock.family" => field!(Sock, family),
            "ioclab_sock.type" => field!(Sock, kind),
            "ioclab_sock.proto" => field!(Sock, proto),
            "ioclab_syscall" => (0, size_of::<Syscall>()),
            "ioclab_syscall.hdr" => field!(Syscall, hdr),
            "ioclab_syscall.op" => field!(Syscall, op),
            "ioclab_syscall.nr" => field!(Syscall, nr),
            "ioclab_syscall.ret" => field!(Syscall, ret),
            "ioclab_syscall.args" => field!(Syscall, args),
            "ioclab_file_rec" => (0, size_of::<FileRec>()),
            "ioclab_file_rec.sc" => field!(FileRec, sc),
            "ioclab_file_rec.f_mode" => field!(FileRec, f_mode),
            "ioclab_file_rec.config" => field!(FileRec, config),
            "ioclab_file_rec.file" => field!(FileRec, file),
            "ioclab_paths_rec" => (0, size_of::<PathsRec>()),
            "ioclab_paths_rec.sc" => field!(PathsRec, sc),
            "ioclab_paths_rec.name_len" => field!(PathsRec, name_len),
            "ioclab_paths_rec.name" => field!(PathsRec, name),
            "ioclab_paths_rec.base" => field!(PathsRec, base),
            "ioclab_sys_rec" => (0, size_of::<SysRec>()),
            "ioclab_sys_rec.sc" => field!(SysRec, sc),
            "ioclab_sys_rec.target" => field!(SysRec, target),
            "ioclab_sys_rec.prog_id" => field!(SysRec, prog_id),
            "ioclab_sys_rec.prog_type" => field!(SysRec, prog_type),
            "ioclab_sys_rec.prog_verified_insns" => field!(SysRec, prog_verified_insns),
            "ioclab_sys_rec.data_len" => field!(SysRec, data_len),
            "ioclab_sys_rec.prog_tag" => field!(SysRec, prog_tag),
            "ioclab_sys_rec.prog_name" => field!(SysRec, prog_name),
            "ioclab_sys_rec.text" => field!(SysRec, text),
            "ioclab_sys_rec.sock" => field!(SysRec, sock),
            "ioclab_sys_rec.data" => field!(SysRec, data),
            "ioclab_throttled" => (0, size_of::<Throttled>()),
            "ioclab_throttled.hdr" => field!(Throttled, hdr),
            "ioclab_throttled.limit" => field!(Throttled, limit),
            "ioclab_throttled.dropped" => field!(Throttled, dropped),
            "ioclab_module_rec" => (0, size_of::<ModuleRec>()),
            "ioclab_module_rec.sc" => field!(ModuleRec, sc),
            "ioclab_module_rec.file" => field!(ModuleRec, file),
            "ioclab_module_rec.args_len" => field!(ModuleRec, args_len),
            "ioclab_module_rec.name_len" => field!(ModuleRec, name_len),
            "ioclab_module_rec.has_file" => field!(ModuleRec, has_file),
            "ioclab_module_rec.args" => field!(ModuleRec, args),
            "ioclab_module_rec.name" => field!(ModuleRec, name),
            _ => return None,
        })
    }

    #[test]
    fn rust_mirror_matches_c_layout() {
        for (name, offset, size) in C_LAYOUT {
            let rust = rust_layout(name).unwrap_or_else(|| panic!("{name} has no Rust mirror"));
            assert_eq!(rust, (*offset, *size), "{name}: Rust (offset, size) differs from C");
        }
        assert!(C_LAYOUT.len() >= 40, "layout table unexpectedly short");
    }

    #[test]
    fn constants_match() {
        for (name, value) in C_CONSTANTS {
            let rust = match *name {
                "IOCLAB_COMM_LEN" => COMM_LEN as u64,
                "IOCLAB_PATH_LEN" => PATH_LEN as u64,
                "IOCLAB_NAME_PAD" => NAME_PAD as u64,
                "IOCLAB_ARGV_LEN" => ARGV_LEN as u64,
                "IOCLAB_KIND_EXEC" => KIND_EXEC as u64,
                "IOCLAB_KIND_CLONE" => KIND_CLONE as u64,
                "IOCLAB_KIND_EXIT" => KIND_EXIT as u64,
                "IOCLAB_KIND_SCRIPT" => KIND_SCRIPT as u64,
                "IOCLAB_SCRIPT_MARKS" => SCRIPT_MARKS as u64,
                "IOCLAB_KIND_CONNECT" => KIND_CONNECT as u64,
                "IOCLAB_KIND_SEND" => KIND_SEND as u64,
                "IOCLAB_KIND_DNS" => KIND_DNS as u64,
                "IOCLAB_DNS_LEN" => DNS_LEN as u64,
                "IOCLAB_SEND_SAMPLE" => SEND_SAMPLE as u64,
                "IOCLAB_KIND_FILE" => KIND_FILE as u64,
                "IOCLAB_KIND_PATHS" => KIND_PATHS as u64,
                "IOCLAB_KIND_SYS" => KIND_SYS as u64,
                "IOCLAB_KIND_THROTTLED" => KIND_THROTTLED as u64,
                "IOCLAB_NAME_LEN" => NAME_LEN as u64,
                "IOCLAB_SYS_DATA" => SYS_DATA as u64,
                "IOCLAB_OP_OPEN" => OP_OPEN as u64,
                "IOCLAB_OP_CLOSE_WRITABLE" => OP_CLOSE_WRITABLE as u64,
                "IOCLAB_OP_MMAP_EXEC" => OP_MMAP_EXEC as u64,
                "IOCLAB_OP_MPROTECT_EXEC" => OP_MPROTECT_EXEC as u64,
                "IOCLAB_OP_RENAME" => OP_RENAME as u64,
                "IOCLAB_OP_UNLINK" => OP_UNLINK as u64,
                "IOCLAB_OP_KILL" => OP_KILL as u64,
                "IOCLAB_OP_PTRACE" => OP_PTRACE as u64,
                "IOCLAB_OP_PRCTL" => OP_PRCTL as u64,
                "IOCLAB_OP_MODULE" => OP_MODULE as u64,
                "IOCLAB_OP_BPF_PROG" => OP_BPF_PROG as u64,
                "IOCLAB_OP_SOCK_FILTER" => OP_SOCK_FILTER as u64,
                "IOCLAB_WANT_CREATE" => WANT_CREATE,
                "IOCLAB_WANT_READ" => WANT_READ,
                "IOCLAB_WANT_READ_CONFIG" => WANT_READ_CONFIG,
                "IOCLAB_WANT_WRITE" => WANT_WRITE,
                "IOCLAB_WANT_WRITE_CONFIG" => WANT_WRITE_CONFIG,
                "IOCLAB_WANT_RENAME" => WANT_RENAME,
                "IOCLAB_WANT_UNLINK" => WANT_UNLINK,
                "IOCLAB_WANT_WRITE_CLOSE" => WANT_WRITE_CLOSE,
                "IOCLAB_WANT_MMAP_EXEC" => WANT_MMAP_EXEC,
                "IOCLAB_WANT_MPROTECT_EXEC" => WANT_MPROTECT_EXEC,
                "IOCLAB_WANT_PTRACE" => WANT_PTRACE,
                "IOCLAB_WANT_PRCTL" => WANT_PRCTL,
                "IOCLAB_WANT_MODULE" => WANT_MODULE,
                "IOCLAB_WANT_BPF_PROG" => WANT_BPF_PROG,
                "IOCLAB_WANT_SOCK_FILTER" => WANT_SOCK_FILTER,
                "IOCLAB_KIND_MODULE" => KIND_MODULE as u64,
                "IOCLAB_MODNAME_LEN" => MODNAME_LEN as u64,
                "IOCLAB_MODARGS_LEN" => MODARGS_LEN as u64,
                other => panic!("{other} has no Rust mirror"),
            };
            assert_eq!(rust, *value, "{name}");
        }
    }

    #[test]
    fn config_dirs_match() {
        assert_eq!(C_CONFIG_DIRS, super::super::config_dirs::CONFIG_DIRS, "IOCLAB_CONFIG_DIRS and CONFIG_DIRS differ");
    }

    #[test]
    fn short_records_are_refused() {
        assert!(read::<Exec>(&[0u8; 10]).is_none());
        let words = vec![0u64; size_of::<Exec>() / 8 + 1];
        // SAFETY: viewing initialised u64s as bytes.
        let bytes = unsafe { std::slice::from_raw_parts(words.as_ptr() as *const u8, words.len() * 8) };
        assert!(view::<Exec>(bytes).is_some());
        assert!(view::<Exec>(&bytes[1..]).is_none(), "misaligned");
        assert!(view::<Exec>(&bytes[..100]).is_none(), "short");
        let bytes = vec![0u8; size_of::<Exit>()];
        assert!(read::<Exit>(&bytes).is_some());
    }

    #[test]
    fn path_bytes_stay_in_bounds() {
        let mut p =
            Path { start: 1020, len: 500, truncated: 0, deleted: 0, _pad: [0; 2], data: [b'a'; PATH_LEN + NAME_PAD] };
        assert_eq!(p.bytes().len(), 4);
        p.start = 5000;
        assert!(p.bytes().is_empty());
    }
}
