//! Isolation of one task: its own pid, mount, uts and ipc namespaces, the
//! fake internet's network namespace, a cgroup with limits, a root built
//! from read-only host folders and private tmpfs ones, and an unprivileged
//! user. All of it is namespaces on the host's kernel, not a VM.
//!
//! Three processes, forked from the thread that waits for them:
//! - the *keeper*, in the host's pid namespace: dies with that thread
//!   (PR_SET_PDEATHSIG), joins the task cgroup, enters the namespaces;
//! - the *init*, pid 1 of the new pid namespace: dies with the keeper,
//!   builds the root, mounts /proc, starts the sample and reaps every
//!   orphan until none is left; when it dies the kernel kills every other
//!   process of the namespace;
//! - the *sample*, which drops privileges and execs.
//!
//! Only the keeper is waited for: killing it (or the server) ends the task.

pub mod cgroup;
pub mod fs;

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Instant;

use crate::detonation::DetonateError;

/// Capabilities a sample run as root loses anyway: those that reach the
/// host through the shared kernel (modules, raw I/O, mounts and most of
/// CAP_SYS_ADMIN, open_by_handle_at, BPF, clock, reboot).
const ROOT_DROPPED_CAPS: &[u32] = &[
    2,  // CAP_DAC_READ_SEARCH (open_by_handle_at escapes)
    12, // CAP_NET_ADMIN
    16, // CAP_SYS_MODULE
    17, // CAP_SYS_RAWIO
    21, // CAP_SYS_ADMIN
    22, // CAP_SYS_BOOT
    25, // CAP_SYS_TIME
    27, // CAP_MKNOD
    30, // CAP_AUDIT_CONTROL
    32, // CAP_MAC_OVERRIDE
    33, // CAP_MAC_ADMIN
    34, // CAP_SYSLOG
    38, // CAP_PERFMON
    39, // CAP_BPF
];

/// What to run and where.
#[derive(Debug)]
pub struct Spec {
    /// The program execve'd (a path inside the sandbox).
    pub exe: CString,
    /// Its arguments, argv[0] included.
    pub argv: Vec<CString>,
    /// Its environment.
    pub env: Vec<CString>,
    /// Working directory inside the sandbox.
    pub workdir: CString,
    /// User and group the sample runs as.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Host name inside.
    pub hostname: CString,
    /// Steps building the root (see [`fs::plan`]), and the root itself.
    pub mounts: Vec<fs::Op>,
    /// The new root.
    pub root: CString,
    /// The network namespace to enter.
    pub netns: RawFd,
    /// The task cgroup's `cgroup.procs` files.
    pub cgroup_procs: Vec<std::path::PathBuf>,
    /// Receives the sample's stdout and stderr.
    pub output: File,
}

/// The running task, seen from the server.
#[derive(Debug)]
pub struct Task {
    keeper: libc::pid_t,
    pidfd: OwnedFd,
    reaped: Option<i32>,
}

fn last_err(what: &str) -> DetonateError {
    DetonateError::Io { what: what.into(), source: std::io::Error::last_os_error() }
}

/// Writes `msg` and the current errno to the error pipe, then leaves.
fn die(err_fd: RawFd, msg: &str) -> ! {
    let e = std::io::Error::last_os_error();
    let text = format!("{msg}: {e}");
    // SAFETY: writing a buffer we own; _exit never returns.
    unsafe {
        libc::write(err_fd, text.as_ptr().cast(), text.len());
        libc::_exit(127)
    }
}

fn exit_code(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    }
}

/// Starts the task; returns once the sample has been exec'd (or failed to be).
pub fn spawn(spec: &Spec) -> Result<Task, DetonateError> {
    let mut procs = Vec::new();
    for p in &spec.cgroup_procs {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(p)
            .map_err(|source| DetonateError::Io { what: format!("opening {}", p.display()), source })?;
        procs.push(f);
    }
    let devnull = File::open("/dev/null").map_err(|source| DetonateError::Io { what: "/dev/null".into(), source })?;
    let mut fds = [0; 2];
    // SAFETY: fds is a 2-int array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(last_err("pipe2"));
    }
    // SAFETY: both fds were just created and are owned here.
    let (err_r, err_w) = unsafe { (File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let server = std::process::id() as libc::pid_t;
    let env: Vec<*const libc::c_char> = spec.env.iter().map(|s| s.as_ptr()).chain([std::ptr::null()]).collect();
    let argv: Vec<*const libc::c_char> = spec.argv.iter().map(|s| s.as_ptr()).chain([std::ptr::null()]).collect();

    // SAFETY: the child runs only the code below (syscalls, and glibc's
    // fork-safe malloc for error messages) and leaves by _exit or execve.
    let keeper = unsafe { libc::fork() };
    if keeper < 0 {
        return Err(last_err("fork"));
    }
    if keeper == 0 {
        let err = err_w.as_raw_fd();
        // SAFETY: in the child; see above.
        let ctx = Ctx { spec, devnull: devnull.as_raw_fd(), err, argv: &argv, env: &env };
        unsafe {
            keeper_main(&ctx, &procs, server);
        }
    }
    drop(err_w);
    // SAFETY: pidfd_open of our own child.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, keeper, 0) } as RawFd;
    if pidfd < 0 {
        let e = last_err("pidfd_open (Linux 5.3 or later)");
        // SAFETY: our child.
        unsafe {
            libc::kill(keeper, libc::SIGKILL);
            libc::waitpid(keeper, std::ptr::null_mut(), 0);
        }
        return Err(e);
    }
    // SAFETY: just opened.
    let mut task = Task { keeper, pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) }, reaped: None };
    let mut msg = String::new();
    use std::io::Read;
    let _ = (&err_r).read_to_string(&mut msg);
    if !msg.is_empty() {
        task.kill();
        task.reap();
        return Err(DetonateError::Io { what: "starting the sample".into(), source: std::io::Error::other(msg) });
    }
    Ok(task)
}

/// What the forked processes share (prepared before fork).
struct Ctx<'a> {
    spec: &'a Spec,
    /// stdin of the sample.
    devnull: RawFd,
    /// Write end of the error pipe.
    err: RawFd,
    argv: &'a [*const libc::c_char],
    env: &'a [*const libc::c_char],
}

/// The keeper: joins the cgroup and the namespaces, forks the init, waits for it.
unsafe fn keeper_main(c: &Ctx, procs: &[File], server: libc::pid_t) -> ! {
    let (spec, err) = (c.spec, c.err);
    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
    // named in the events (the sample's fork shows its parent's name until it execs)
    libc::prctl(libc::PR_SET_NAME, c"ioclab-keeper".as_ptr());
    // another task's pipe or sockets, inherited from a fork in another thread, would be held for this whole task
    let mut keep = [c.devnull, err, spec.netns, spec.output.as_raw_fd(), -1, -1, -1];
    for (slot, f) in keep[4..].iter_mut().zip(procs) {
        *slot = f.as_raw_fd();
    }
    close_all_but(&mut keep);
    if libc::getppid() != server {
        libc::_exit(127); // the server died before the line above
    }
    for f in procs {
        // "0": the writing process
        if libc::write(f.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
            die(err, "joining the task cgroup");
        }
    }
    if libc::setns(spec.netns, libc::CLONE_NEWNET) != 0 {
        die(err, "entering the fake internet's network namespace");
    }
    if libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC) != 0 {
        die(err, "unshare (mount, pid, uts, ipc namespaces)");
    }
    // nothing mounted from here on propagates to the host
    if libc::mount(std::ptr::null(), c"/".as_ptr(), std::ptr::null(), libc::MS_REC | libc::MS_PRIVATE, std::ptr::null())
        != 0
    {
        die(err, "making the mount namespace private");
    }
    if libc::sethostname(spec.hostname.as_ptr(), spec.hostname.as_bytes().len()) != 0 {
        die(err, "sethostname");
    }
    fork_and_wait(err, "fork of the namespace's init", false, || init_main(c))
}

/// Forks `child`, closes the error pipe, then waits: for that child only,
/// or (`reap_all`, an init's duty) for every process until none is left;
/// leaves with the child's exit code.
unsafe fn fork_and_wait(err: RawFd, what: &str, reap_all: bool, child: impl FnOnce()) -> ! {
    let pid = libc::fork();
    if pid < 0 {
        die(err, what);
    }
    if pid == 0 {
        child(); // execs or leaves by _exit
        libc::_exit(127);
    }
    libc::close(err);
    let mut code = 255;
    let mut status = 0;
    loop {
        let r = libc::waitpid(if reap_all { -1 } else { pid }, &mut status, 0);
        if r == pid {
            code = exit_code(status);
            if !reap_all {
                libc::_exit(code);
            }
        } else if r < 0 && *libc::__errno_location() != libc::EINTR {
            // ECHILD: the child and every orphan it left are gone
            libc::_exit(code);
        }
    }
}

/// Closes every fd from 3 up but those in `keep` (-1: unused slot).
unsafe fn close_all_but(keep: &mut [RawFd]) {
    keep.sort_unstable();
    let mut from: u32 = 3;
    for &fd in keep.iter().filter(|fd| **fd >= 3) {
        let fd = fd as u32;
        if fd > from {
            libc::syscall(libc::SYS_close_range, from, fd - 1, 0u32);
        }
        from = from.max(fd + 1);
    }
    libc::syscall(libc::SYS_close_range, from, u32::MAX, 0u32);
}

/// Pid 1 of the task: builds the root, starts the sample, reaps everything.
unsafe fn init_main(c: &Ctx) -> ! {
    let (spec, err) = (c.spec, c.err);
    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
    libc::prctl(libc::PR_SET_NAME, c"ioclab-init".as_ptr());
    for op in &spec.mounts {
        run_op(op, err);
    }
    // pivot_root(".", ".") stacks the old root under the new one: detach it
    if libc::chdir(spec.root.as_ptr()) != 0
        || libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) != 0
        || libc::umount2(c".".as_ptr(), libc::MNT_DETACH) != 0
        || libc::chdir(c"/".as_ptr()) != 0
    {
        die(err, "pivot_root into the sandbox root");
    }
    let proc_flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    if libc::mount(c"proc".as_ptr(), c"/proc".as_ptr(), c"proc".as_ptr(), proc_flags, std::ptr::null()) != 0 {
        die(err, "mounting /proc");
    }
    let ro = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;
    if libc::mount(std::ptr::null(), c"/".as_ptr(), std::ptr::null(), ro, std::ptr::null()) != 0 {
        die(err, "making / read-only");
    }
    fork_and_wait(err, "fork of the sample", true, || sample_main(c))
}

unsafe fn run_op(op: &fs::Op, err: RawFd) {
    let opt = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
    match op {
        fs::Op::Mount { src, target, fstype, flags, data } => {
            if libc::mount(opt(src), target.as_ptr(), opt(fstype), *flags, opt(data).cast()) != 0 {
                die(err, &format!("mount {:?} on {:?}", src, target));
            }
        }
        fs::Op::Mkdir(p, mode) => {
            if libc::mkdir(p.as_ptr(), *mode) != 0 && *libc::__errno_location() != libc::EEXIST {
                die(err, &format!("mkdir {p:?}"));
            }
        }
        fs::Op::Symlink(target, link) => {
            if libc::symlink(target.as_ptr(), link.as_ptr()) != 0 {
                die(err, &format!("symlink {link:?}"));
            }
        }
        fs::Op::Touch(p) => {
            let fd = libc::open(p.as_ptr(), libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC, 0o644);
            if fd < 0 {
                die(err, &format!("creating {p:?}"));
            }
            libc::close(fd);
        }
    }
}

/// The sample: its own session, stdio, no privileges (unless root was asked), then exec.
unsafe fn sample_main(c: &Ctx) -> ! {
    let (spec, err) = (c.spec, c.err);
    libc::setsid();
    let out = spec.output.as_raw_fd();
    if libc::dup2(c.devnull, 0) < 0 || libc::dup2(out, 1) < 0 || libc::dup2(out, 2) < 0 {
        die(err, "stdio");
    }
    let no_core = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    libc::setrlimit(libc::RLIMIT_CORE, &no_core);
    if spec.uid == 0 {
        for cap in ROOT_DROPPED_CAPS {
            // EINVAL: a capability this kernel does not know
            libc::prctl(libc::PR_CAPBSET_DROP, *cap as libc::c_ulong);
        }
    } else if libc::setgroups(0, std::ptr::null()) != 0
        || libc::setresgid(spec.gid, spec.gid, spec.gid) != 0
        || libc::setresuid(spec.uid, spec.uid, spec.uid) != 0
        || libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
    {
        die(err, "dropping privileges");
    }
    if libc::chdir(spec.workdir.as_ptr()) != 0 {
        die(err, "chdir");
    }
    // nothing of the server's reaches the sample; the error pipe closes at exec
    libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC);
    libc::execve(spec.exe.as_ptr(), c.argv.as_ptr(), c.env.as_ptr());
    die(err, &format!("execve {:?}", spec.exe));
}

impl Task {
    /// The keeper's pid (host namespace).
    pub fn keeper_pid(&self) -> u32 {
        self.keeper as u32
    }

    /// Waits until the task ends by itself or `deadline` passes; true if it ended.
    pub fn wait_until(&self, deadline: Instant) -> bool {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut pfd = libc::pollfd { fd: self.pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            let ms = left.as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd.
            let r = unsafe { libc::poll(&mut pfd, 1, ms) };
            if r > 0 {
                return true;
            }
            if r == 0 || Instant::now() >= deadline {
                return false;
            }
        }
    }

    /// Kills the keeper: its death kills the init, whose death kills the namespace.
    pub fn kill(&self) {
        if self.reaped.is_none() {
            // SAFETY: the pidfd names our own child, not a recycled pid.
            unsafe { libc::syscall(libc::SYS_pidfd_send_signal, self.pidfd.as_raw_fd(), libc::SIGKILL, 0, 0) };
        }
    }

    /// Waits for the keeper; returns the sample's exit code (128+N: signal N).
    pub fn reap(&mut self) -> i32 {
        if let Some(c) = self.reaped {
            return c;
        }
        let mut status = 0;
        loop {
            // SAFETY: our child.
            let r = unsafe { libc::waitpid(self.keeper, &mut status, 0) };
            if r == self.keeper || (r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR)) {
                break;
            }
        }
        let code = exit_code(status);
        self.reaped = Some(code);
        code
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        self.kill();
        self.reap();
    }
}
