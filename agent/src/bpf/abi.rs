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
pub const KIND_CONNECT: u32 = 10;
pub const KIND_SEND: u32 = 11;
pub const KIND_DNS: u32 = 12;

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
    pub _pad: [u8; 3],
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

/// Marker for the plain-old-data records above: any bit pattern is valid.
///
/// # Safety
/// Only for `repr(C)` structs made of integers and byte arrays.
pub unsafe trait Record: Copy {}
unsafe impl Record for Header {}
unsafe impl Record for Exec {}
unsafe impl Record for Clone {}
unsafe impl Record for Exit {}
unsafe impl Record for Net {}

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
            "ioclab_header.task" => field!(Header, task),
            "ioclab_header.parent" => field!(Header, parent),
            "ioclab_path" => (0, size_of::<Path>()),
            "ioclab_path.start" => field!(Path, start),
            "ioclab_path.len" => field!(Path, len),
            "ioclab_path.truncated" => field!(Path, truncated),
            "ioclab_path.data" => field!(Path, data),
            "ioclab_file" => (0, size_of::<File>()),
            "ioclab_file.ino" => field!(File, ino),
            "ioclab_file.size" => field!(File, size),
            "ioclab_file.mtime_sec" => field!(File, mtime_sec),
            "ioclab_file.mtime_nsec" => field!(File, mtime_nsec),
            "ioclab_file.dev" => field!(File, dev),
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
                "IOCLAB_KIND_CONNECT" => KIND_CONNECT as u64,
                "IOCLAB_KIND_SEND" => KIND_SEND as u64,
                "IOCLAB_KIND_DNS" => KIND_DNS as u64,
                "IOCLAB_DNS_LEN" => DNS_LEN as u64,
                "IOCLAB_SEND_SAMPLE" => SEND_SAMPLE as u64,
                other => panic!("{other} has no Rust mirror"),
            };
            assert_eq!(rust, *value, "{name}");
        }
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
        let mut p = Path { start: 1020, len: 500, truncated: 0, _pad: [0; 3], data: [b'a'; PATH_LEN + NAME_PAD] };
        assert_eq!(p.bytes().len(), 4);
        p.start = 5000;
        assert!(p.bytes().is_empty());
    }
}
