//! What the kernel says about a loaded BPF program, fetched by its id: the
//! instructions as the kernel keeps them (for the `bpf_prog` digests), and
//! readable names for program types.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// bpf(2) commands and the leading fields of their attributes (uapi linux/bpf.h).
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

#[repr(C)]
#[derive(Default)]
struct GetFdById {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetInfo {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The head of struct bpf_prog_info: all that is needed here.
#[repr(C)]
#[derive(Default)]
struct ProgInfoHead {
    kind: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: attr points to a properly sized, initialised bpf_attr prefix for cmd.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// The translated instructions of program `id` (8 bytes each).
pub fn xlated_insns(id: u32) -> io::Result<Vec<u8>> {
    let fd = bpf(BPF_PROG_GET_FD_BY_ID, &mut GetFdById { prog_id: id, ..Default::default() })? as i32;
    // SAFETY: fd was just returned by the kernel and is ours to close.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut head = ProgInfoHead::default();
    let mut get = GetInfo {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of::<ProgInfoHead>() as u32,
        info: &mut head as *mut _ as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut get)?;
    let mut insns = vec![0u8; head.xlated_prog_len as usize];
    let mut head2 = ProgInfoHead {
        xlated_prog_len: insns.len() as u32,
        xlated_prog_insns: insns.as_mut_ptr() as u64,
        ..Default::default()
    };
    let mut get = GetInfo {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of::<ProgInfoHead>() as u32,
        info: &mut head2 as *mut _ as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut get)?;
    insns.truncate(head2.xlated_prog_len as usize);
    Ok(insns)
}

/// `BPF_PROG_TYPE_*` name of a program type number.
pub fn prog_type_name(t: u32) -> String {
    const NAMES: &[&str] = &[
        "UNSPEC",
        "SOCKET_FILTER",
        "KPROBE",
        "SCHED_CLS",
        "SCHED_ACT",
        "TRACEPOINT",
        "XDP",
        "PERF_EVENT",
        "CGROUP_SKB",
        "CGROUP_SOCK",
        "LWT_IN",
        "LWT_OUT",
        "LWT_XMIT",
        "SOCK_OPS",
        "SK_SKB",
        "CGROUP_DEVICE",
        "SK_MSG",
        "RAW_TRACEPOINT",
        "CGROUP_SOCK_ADDR",
        "LWT_SEG6LOCAL",
        "LIRC_MODE2",
        "SK_REUSEPORT",
        "FLOW_DISSECTOR",
        "CGROUP_SYSCTL",
        "RAW_TRACEPOINT_WRITABLE",
        "CGROUP_SOCKOPT",
        "TRACING",
        "STRUCT_OPS",
        "EXT",
        "LSM",
        "SK_LOOKUP",
        "SYSCALL",
        "NETFILTER",
    ];
    match NAMES.get(t as usize) {
        Some(n) => format!("BPF_PROG_TYPE_{n}"),
        None => format!("BPF_PROG_TYPE_{t}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names() {
        assert_eq!(prog_type_name(1), "BPF_PROG_TYPE_SOCKET_FILTER");
        assert_eq!(prog_type_name(26), "BPF_PROG_TYPE_TRACING");
        assert_eq!(prog_type_name(999), "BPF_PROG_TYPE_999");
    }
}
