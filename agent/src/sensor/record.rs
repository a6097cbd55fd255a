//! Kernel records decoded into owned Rust values: the hand-off between the
//! ring-buffer reader and the processor.

use std::net::{IpAddr, SocketAddr};

use crate::bpf::abi;
use crate::enrich::filemeta::FileKey;

/// One record from the kernel, or a note from the reader.
#[derive(Debug)]
pub enum Record {
    /// A process replaced its image.
    Exec(Box<Exec>),
    /// A script's interpreter opened the script.
    Script(Box<ScriptOpen>),
    /// A new process.
    Clone {
        /// task = the child, parent = the caller.
        hdr: abi::Header,
        /// Clone flags.
        flags: u64,
    },
    /// A thread or process ended.
    Exit {
        /// The task that exited.
        hdr: abi::Header,
        /// task->exit_code.
        exit_code: i32,
        /// The last thread of its process.
        group_dead: bool,
    },
    /// A network record: connect, send or DNS response.
    Net(Box<Net>),
    /// A file or system record (open, rename, kill, prctl, BPF...).
    FileSys(Box<FileSys>),
    /// The kernel side dropped records since the previous note.
    Lost {
        /// Records read since the previous note.
        read: u64,
        /// Records dropped since then.
        lost: u64,
        /// Records read per second over that time.
        eps: f64,
    },
    /// A record the reader could not decode.
    Malformed {
        /// What was wrong.
        reason: String,
    },
}

impl Record {
    /// Whether this record came from the kernel (counts toward `read`).
    pub fn is_kernel_record(&self) -> bool {
        matches!(
            self,
            Record::Exec(_)
                | Record::Script(_)
                | Record::Clone { .. }
                | Record::Exit { .. }
                | Record::Net(_)
                | Record::FileSys(_)
        )
    }
}

/// A decoded `struct ioclab_exec`.
#[derive(Debug)]
pub struct Exec {
    /// Header.
    pub hdr: abi::Header,
    /// Identity of the binary that runs (the interpreter, for scripts).
    pub exe_key: FileKey,
    /// Its resolved path, as the kernel's bytes (opened by them, shown lossily).
    pub exe_path: Vec<u8>,
    /// The path resolution hit a limit: `exe_path` is only its tail.
    pub exe_truncated: bool,
    /// The binary was unlinked when it started, or has no name (memfd).
    pub exe_deleted: bool,
    /// Arguments, NUL-separated.
    pub argv: Vec<u8>,
    /// The kernel kept only the first bytes of the arguments.
    pub argv_truncated: bool,
    /// The name given to execve, as the kernel's bytes.
    pub filename: Vec<u8>,
    /// `filename` filled its buffer: only its start.
    pub filename_truncated: bool,
    /// Ran through an interpreter.
    pub is_script: bool,
    /// Working directory, for scripts named by a relative path.
    pub cwd: Option<Vec<u8>>,
}

/// A decoded `struct ioclab_script`: what a script's interpreter opened
/// by the script's name.
#[derive(Debug)]
pub struct ScriptOpen {
    /// Header (the interpreter's task).
    pub hdr: abi::Header,
    /// `hdr.time_ns` of the exec it belongs to.
    pub exec_time_ns: u64,
    /// The descriptor the open returned.
    pub fd: i32,
    /// Opened by the very name given to execve (else by cwd + "/" + it).
    pub exact: bool,
    /// Identity of the opened file.
    pub key: FileKey,
    /// Its resolved path, as the kernel's bytes.
    pub path: Vec<u8>,
    /// The path resolution hit a limit: `path` is only its tail.
    pub truncated: bool,
    /// Unlinked, or a pseudo file (memfd).
    pub deleted: bool,
}

/// What a network record reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetKind {
    /// A TCP handshake ended.
    Connect,
    /// Data sent.
    Send,
    /// A DNS response received.
    Dns,
}

/// A decoded `struct ioclab_net` and the data after it.
#[derive(Debug)]
pub struct Net {
    /// Which record.
    pub kind: NetKind,
    /// Header (the task that connected, sent or received).
    pub hdr: abi::Header,
    /// The socket's cookie.
    pub cookie: u64,
    /// Bytes sent or received.
    pub size: i64,
    /// AF_INET / AF_INET6.
    pub family: u16,
    /// SOCK_STREAM / SOCK_DGRAM.
    pub sock_type: u16,
    /// IP protocol number.
    pub proto: u16,
    /// Local end.
    pub src: SocketAddr,
    /// Remote end (the DNS server, for DNS records).
    pub dst: SocketAddr,
    /// connect: the handshake succeeded; send: the socket is connected.
    pub connected: bool,
    /// The DNS message, or a sample of the data sent.
    pub data: Vec<u8>,
}

/// A decoded file/system record.
#[derive(Debug)]
pub struct FileSys {
    /// Header (the acting task).
    pub hdr: abi::Header,
    /// `abi::OP_*`.
    pub op: u32,
    /// The syscall's result.
    pub ret: i64,
    /// Its arguments.
    pub args: [u64; 6],
    /// What the op carries.
    pub detail: FileSysDetail,
}

/// The op-specific part of a [`FileSys`] record.
#[derive(Debug)]
pub enum FileSysDetail {
    /// One file (open, close, mmap).
    File {
        /// FMODE_* bits of the open file.
        f_mode: u32,
        /// The file is under a configuration directory (`crate::bpf::config_dirs`).
        config: bool,
        /// Identity, for the hash cache.
        key: FileKey,
        /// Resolved path.
        path: String,
        /// Path resolution hit a limit.
        truncated: bool,
        /// Unlinked, or a pseudo file (memfd).
        deleted: bool,
    },
    /// rename (two names) or unlink (one), made absolute.
    Paths(Vec<String>),
    /// kill, ptrace, prctl, mprotect, BPF.
    Sys(Box<abi::SysRec>),
    /// The task's file events are being throttled at `limit` a second.
    Throttled {
        /// max_eps_fs.
        limit: u64,
        /// 0: the throttle kicks in; else how many a throttled second now over dropped.
        dropped: u64,
    },
    /// init_module / finit_module.
    Module(Box<ModuleLoad>),
}

/// A decoded `struct ioclab_module_rec`.
#[derive(Debug)]
pub struct ModuleLoad {
    /// finit_module (from a file), else init_module (from memory).
    pub finit: bool,
    /// finit_module: the module file's resolved path.
    pub path: Option<String>,
    /// The module parameters given.
    pub args: String,
    /// init_module: `name=` of the image's .modinfo section (None when not found).
    pub name: Option<String>,
}

/// x86_64 number of finit_module (the syscall programs are x86_64 only).
const NR_FINIT_MODULE: u32 = 313;

fn module_load(m: &abi::ModuleRec) -> Record {
    let args_len = (m.args_len as usize).min(abi::MODARGS_LEN);
    let name_len = (m.name_len as usize).min(abi::MODNAME_LEN);
    let load = ModuleLoad {
        finit: m.sc.nr == NR_FINIT_MODULE,
        path: (m.has_file != 0).then(|| lossy(m.file.path.bytes())),
        args: lossy(abi::c_str(&m.args[..args_len])),
        name: (name_len > 0).then(|| lossy(abi::c_str(&m.name[..name_len]))),
    };
    file_sys(&m.sc, FileSysDetail::Module(Box::new(load)))
}

const AF_INET6: u16 = 10;

fn endpoint(family: u16, e: &abi::Endpoint) -> SocketAddr {
    let ip = if family == AF_INET6 {
        IpAddr::from(e.addr)
    } else {
        IpAddr::from([e.addr[0], e.addr[1], e.addr[2], e.addr[3]])
    };
    SocketAddr::new(ip, e.port)
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `v` = `b`, in `v`'s allocation.
fn set_bytes(v: &mut Vec<u8>, b: &[u8]) {
    v.clear();
    v.extend_from_slice(b);
}

/// The boxes of decoded exec and network records, given back once their
/// event is made ([`Record::recycle`]): with their buffers' capacity kept, a
/// steady stream of records decodes without allocating. Per thread: records
/// are decoded and processed on the agent's one thread.
mod pool {
    use std::cell::RefCell;
    use std::net::{Ipv4Addr, SocketAddr};

    use super::{Exec, Net, NetKind};

    /// Boxes kept per kind, at most: a batch's worth would keep megabytes of
    /// DNS buffers; a few hundred cover the records in flight in a steady stream.
    pub(super) const KEEP: usize = 256;

    // the boxes themselves are what is reused: records carry them (Record::Exec(Box<Exec>))
    thread_local! {
        #[allow(clippy::vec_box)]
        pub(super) static EXECS: RefCell<Vec<Box<Exec>>> = const { RefCell::new(Vec::new()) };
        #[allow(clippy::vec_box)]
        pub(super) static NETS: RefCell<Vec<Box<Net>>> = const { RefCell::new(Vec::new()) };
    }

    pub(super) fn take_exec() -> Box<Exec> {
        EXECS.with(|p| p.borrow_mut().pop()).unwrap_or_else(|| {
            Box::new(Exec {
                hdr: crate::bpf::abi::zeroed(),
                exe_key: Default::default(),
                exe_path: Vec::new(),
                exe_truncated: false,
                exe_deleted: false,
                argv: Vec::new(),
                argv_truncated: false,
                filename: Vec::new(),
                filename_truncated: false,
                is_script: false,
                cwd: None,
            })
        })
    }

    pub(super) fn take_net() -> Box<Net> {
        NETS.with(|p| p.borrow_mut().pop()).unwrap_or_else(|| {
            let any = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
            Box::new(Net {
                kind: NetKind::Connect,
                hdr: crate::bpf::abi::zeroed(),
                cookie: 0,
                size: 0,
                family: 0,
                sock_type: 0,
                proto: 0,
                src: any,
                dst: any,
                connected: false,
                data: Vec::new(),
            })
        })
    }

    pub(super) fn give<T>(pool: &'static std::thread::LocalKey<RefCell<Vec<Box<T>>>>, b: Box<T>) {
        pool.with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < KEEP {
                p.push(b);
            }
        })
    }
}

impl Record {
    /// Gives the record's buffers back for the next records to decode into.
    pub fn recycle(self) {
        match self {
            Record::Exec(e) => pool::give(&pool::EXECS, e),
            Record::Net(n) => pool::give(&pool::NETS, n),
            _ => {}
        }
    }
}

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Record {
    let Some(hdr) = abi::read::<abi::Header>(bytes) else {
        return Record::Malformed { reason: format!("record of {} bytes is shorter than its header", bytes.len()) };
    };
    let short =
        |what: &str| Record::Malformed { reason: format!("{what} record of {} bytes is too short", bytes.len()) };
    match hdr.kind {
        abi::KIND_EXEC => {
            let copy;
            let e = match abi::view::<abi::Exec>(bytes) {
                Some(e) => e,
                None => match abi::read::<abi::Exec>(bytes) {
                    Some(e) => {
                        copy = e;
                        &copy
                    }
                    None => return short("exec"),
                },
            };
            let argv_len = (e.argv_len as usize).min(abi::ARGV_LEN);
            let filename_len = (e.filename_len as usize).min(abi::PATH_LEN);
            let cwd = e.cwd.len;
            let mut x = pool::take_exec();
            x.hdr = e.hdr;
            x.exe_key = FileKey::of_kernel(&e.exe);
            set_bytes(&mut x.exe_path, e.exe.path.bytes());
            x.exe_truncated = e.exe.path.truncated != 0;
            x.exe_deleted = e.exe.path.deleted != 0;
            set_bytes(&mut x.argv, &e.argv[..argv_len]);
            x.argv_truncated = e.argv_truncated != 0;
            set_bytes(&mut x.filename, &e.filename[..filename_len]);
            // the kernel copies at most PATH_LEN - 1 bytes and a NUL
            x.filename_truncated = filename_len >= abi::PATH_LEN - 1;
            x.is_script = e.is_script != 0;
            x.cwd = (cwd > 0).then(|| e.cwd.bytes().to_vec());
            Record::Exec(x)
        }
        abi::KIND_SCRIPT => match abi::view::<abi::Script>(bytes).copied().or_else(|| abi::read(bytes)) {
            Some(o) => Record::Script(Box::new(ScriptOpen {
                hdr: o.hdr,
                exec_time_ns: o.exec_time_ns,
                fd: o.fd,
                exact: o.exact != 0,
                key: FileKey::of_kernel(&o.file),
                path: o.file.path.bytes().to_vec(),
                truncated: o.file.path.truncated != 0,
                deleted: o.file.path.deleted != 0,
            })),
            None => short("script"),
        },
        abi::KIND_CLONE => match abi::read::<abi::Clone>(bytes) {
            Some(c) => Record::Clone { hdr: c.hdr, flags: c.flags },
            None => short("clone"),
        },
        abi::KIND_EXIT => match abi::read::<abi::Exit>(bytes) {
            Some(x) => Record::Exit { hdr: x.hdr, exit_code: x.exit_code, group_dead: x.group_dead != 0 },
            None => short("exit"),
        },
        abi::KIND_CONNECT | abi::KIND_SEND | abi::KIND_DNS => {
            let Some(n) = abi::read::<abi::Net>(bytes) else { return short("network") };
            let kind = match hdr.kind {
                abi::KIND_CONNECT => NetKind::Connect,
                abi::KIND_SEND => NetKind::Send,
                _ => NetKind::Dns,
            };
            let rest = &bytes[std::mem::size_of::<abi::Net>()..];
            let len = (n.data_len as usize).min(rest.len()).min(abi::DNS_LEN);
            let mut x = pool::take_net();
            x.kind = kind;
            x.hdr = n.hdr;
            x.cookie = n.cookie;
            x.size = n.size;
            x.family = n.family;
            x.sock_type = n.kind;
            x.proto = n.proto;
            x.src = endpoint(n.family, &n.src);
            x.dst = endpoint(n.family, &n.dst);
            x.connected = n.connected != 0;
            x.data.clear();
            x.data.extend_from_slice(&rest[..len]);
            Record::Net(x)
        }
        abi::KIND_FILE => match abi::view::<abi::FileRec>(bytes).copied().or_else(|| abi::read(bytes)) {
            Some(f) => file_sys(
                &f.sc,
                FileSysDetail::File {
                    f_mode: f.f_mode,
                    config: f.config != 0,
                    key: FileKey::of_kernel(&f.file),
                    path: lossy(f.file.path.bytes()),
                    truncated: f.file.path.truncated != 0,
                    deleted: f.file.path.deleted != 0,
                },
            ),
            None => short("file"),
        },
        abi::KIND_PATHS => match abi::view::<abi::PathsRec>(bytes) {
            Some(p) => {
                let n = if p.sc.op == abi::OP_RENAME { 2 } else { 1 };
                let names = (0..n)
                    .map(|i| {
                        let len = (p.name_len[i] as usize).min(abi::NAME_LEN);
                        let name = lossy(&p.name[i][..len]);
                        let base = lossy(p.base[i].bytes());
                        join_path(&base, &name)
                    })
                    .collect();
                file_sys(&p.sc, FileSysDetail::Paths(names))
            }
            None => short("paths"),
        },
        abi::KIND_SYS => match abi::read::<abi::SysRec>(bytes) {
            Some(s) => file_sys(&s.sc, FileSysDetail::Sys(Box::new(s))),
            None => short("sys"),
        },
        abi::KIND_THROTTLED => match abi::read::<abi::Throttled>(bytes) {
            Some(t) => Record::FileSys(Box::new(FileSys {
                hdr: t.hdr,
                op: 0,
                ret: 0,
                args: [0; 6],
                detail: FileSysDetail::Throttled { limit: t.limit, dropped: t.dropped },
            })),
            None => short("throttled"),
        },
        abi::KIND_MODULE => match abi::view::<abi::ModuleRec>(bytes) {
            Some(m) => module_load(m),
            None => abi::read::<abi::ModuleRec>(bytes).map_or_else(|| short("module"), |m| module_load(&m)),
        },
        other => Record::Malformed { reason: format!("unknown record kind {other}") },
    }
}

fn file_sys(sc: &abi::Syscall, detail: FileSysDetail) -> Record {
    Record::FileSys(Box::new(FileSys { hdr: sc.hdr, op: sc.op, ret: sc.ret, args: sc.args, detail }))
}

/// `name` as the kernel resolves it: absolute names as they are, relative
/// ones against `base` (the cwd or the dirfd's directory); `.` and `..`
/// folded lexically.
pub fn join_path(base: &str, name: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    let full = if name.starts_with('/') || base.is_empty() { name.to_string() } else { format!("{base}/{name}") };
    for c in full.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_absolute() {
        assert_eq!(join_path("/tmp/d", "x.txt"), "/tmp/d/x.txt");
        assert_eq!(join_path("/tmp/d", "../y"), "/tmp/y");
        assert_eq!(join_path("/home", "/etc/./passwd"), "/etc/passwd");
        assert_eq!(join_path("", "rel"), "/rel");
        assert_eq!(join_path("/", ".."), "/");
    }

    fn exec_bytes(argv: &[u8], script_cwd: Option<&[u8]>) -> Vec<u64> {
        let mut e: abi::Exec = abi::zeroed();
        e.hdr.kind = abi::KIND_EXEC;
        e.argv[..argv.len()].copy_from_slice(argv);
        e.argv_len = argv.len() as u32;
        if let Some(cwd) = script_cwd {
            e.is_script = 1;
            e.cwd.start = 0;
            e.cwd.len = cwd.len() as u16;
            e.cwd.data[..cwd.len()].copy_from_slice(cwd);
        }
        // u64 storage: ring-buffer records are 8-byte aligned
        let mut words = vec![0u64; std::mem::size_of::<abi::Exec>().div_ceil(8)];
        let bytes = words_as_bytes_mut(&mut words);
        bytes[..std::mem::size_of::<abi::Exec>()].copy_from_slice(as_bytes(&e));
        words
    }

    fn as_bytes(e: &abi::Exec) -> &[u8] {
        // SAFETY: viewing a plain-old-data record as its bytes.
        unsafe { std::slice::from_raw_parts(e as *const abi::Exec as *const u8, std::mem::size_of::<abi::Exec>()) }
    }

    fn words_as_bytes_mut(w: &mut [u64]) -> &mut [u8] {
        // SAFETY: u64s viewed as bytes, any value valid.
        unsafe { std::slice::from_raw_parts_mut(w.as_mut_ptr() as *mut u8, w.len() * 8) }
    }

    fn words_as_bytes(w: &[u64]) -> &[u8] {
        // SAFETY: as above.
        unsafe { std::slice::from_raw_parts(w.as_ptr() as *const u8, w.len() * 8) }
    }

    #[test]
    fn a_recycled_record_keeps_nothing_of_the_previous_one() {
        let script = exec_bytes(b"/bin/sh\0./long-script-name.sh\0--with --args\0", Some(b"/tmp/somewhere"));
        let Record::Exec(first) = decode(words_as_bytes(&script)) else { panic!("exec") };
        assert!(first.is_script);
        assert_eq!(first.cwd.as_deref(), Some(&b"/tmp/somewhere"[..]));
        Record::Exec(first).recycle();
        let plain = exec_bytes(b"/bin/true\0", None);
        let Record::Exec(second) = decode(words_as_bytes(&plain)) else { panic!("exec") };
        assert!(!second.is_script);
        assert_eq!(second.cwd, None);
        assert_eq!(second.argv, b"/bin/true\0");
        assert!(second.exe_path.is_empty());
        assert!(second.argv.capacity() >= 40, "the recycled buffer was reused");
    }

    #[test]
    fn garbage_never_panics() {
        assert!(matches!(decode(&[]), Record::Malformed { .. }));
        let mut b = vec![0xffu8; std::mem::size_of::<abi::Exec>()];
        b[..4].copy_from_slice(&abi::KIND_EXEC.to_ne_bytes());
        // every length field is 0xff...: must be clamped, not trusted
        assert!(matches!(decode(&b), Record::Exec(_)));
        b[..4].copy_from_slice(&77u32.to_ne_bytes());
        assert!(matches!(decode(&b), Record::Malformed { .. }));
        let hdr_only = vec![0u8; std::mem::size_of::<abi::Header>()];
        let mut c = hdr_only.clone();
        c[..4].copy_from_slice(&abi::KIND_CLONE.to_ne_bytes());
        assert!(matches!(decode(&c), Record::Malformed { .. }));
        // a network record claiming more data than it carries
        let mut n = vec![0xffu8; std::mem::size_of::<abi::Net>() + 3];
        n[..4].copy_from_slice(&abi::KIND_DNS.to_ne_bytes());
        match decode(&n) {
            Record::Net(net) => assert_eq!(net.data.len(), 3),
            other => panic!("{other:?}"),
        }
        // file/system records full of 0xff: lengths clamped
        let mut b = vec![0xffu8; std::mem::size_of::<abi::Script>()];
        b[..4].copy_from_slice(&abi::KIND_SCRIPT.to_ne_bytes());
        assert!(matches!(decode(&b), Record::Script(s) if s.path.len() <= abi::PATH_LEN));
        assert!(matches!(decode(&b[..200]), Record::Malformed { .. }));
        for kind in [abi::KIND_FILE, abi::KIND_PATHS, abi::KIND_SYS, abi::KIND_THROTTLED] {
            let mut b = vec![0xffu8; std::mem::size_of::<abi::PathsRec>()];
            b[..4].copy_from_slice(&kind.to_ne_bytes());
            assert!(matches!(decode(&b), Record::FileSys(_)), "kind {kind}");
            assert!(matches!(decode(&b[..100]), Record::Malformed { .. }), "short kind {kind}");
        }
    }
}
