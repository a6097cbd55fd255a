//! A network namespace held by a file descriptor only (never bound under
//! /run/netns): it disappears with its last process and its last fd, so a
//! killed server leaves none behind. Inside: loopback only, with a local
//! route for every address, so a connection to any IP lands on a local
//! listener and no packet has anywhere else to go.

use std::io::Write as _;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use super::FakeNetError;

/// A network namespace: loopback up, every IPv4 (and IPv6, when the kernel has it) address local.
#[derive(Debug)]
pub struct NetNs {
    fd: OwnedFd,
    ipv6: bool,
}

fn os_err(what: &str) -> FakeNetError {
    FakeNetError::Setup { what: what.into(), source: std::io::Error::last_os_error() }
}

/// The routing commands run inside: all of IPv4 (and IPv6) is local on `lo`.
const ROUTES_V4: &str = "link set lo up\nroute add local 0.0.0.0/0 dev lo\n";
const ROUTES_V6: &str = "-6 route add local ::/0 dev lo\n";

impl NetNs {
    /// Creates and configures a new namespace.
    pub fn new() -> Result<Self, FakeNetError> {
        // a short-lived thread unshares its own network namespace: the caller's stays as it was
        let fd = std::thread::spawn(|| -> Result<OwnedFd, FakeNetError> {
            // SAFETY: affects this thread only.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(os_err("unshare(CLONE_NEWNET) (needs root)"));
            }
            // SAFETY: a path to open; the fd is owned below.
            let fd = unsafe { libc::open(c"/proc/thread-self/ns/net".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
            if fd < 0 {
                return Err(os_err("opening /proc/thread-self/ns/net"));
            }
            // SAFETY: just opened.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        })
        .join()
        .map_err(|_| FakeNetError::Setup {
            what: "netns thread".into(),
            source: std::io::Error::other("panicked"),
        })??;
        let mut ns = NetNs { fd, ipv6: false };
        ns.ip_batch(ROUTES_V4)?;
        // a kernel without IPv6 (or with it disabled) keeps an IPv4-only fake internet
        ns.ipv6 = ns.ip_batch(ROUTES_V6).is_ok();
        Ok(ns)
    }

    /// The namespace's fd (for setns).
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Whether IPv6 addresses are local too.
    pub fn has_ipv6(&self) -> bool {
        self.ipv6
    }

    /// Makes `cmd` run inside the namespace (for `ioclab lab shell` and tests).
    pub fn command(&self, cmd: &mut Command) {
        let fd = self.fd();
        // SAFETY: setns is async-signal-safe; fd stays open while self lives
        // (the caller spawns while holding self).
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }

    /// Moves the calling thread into the namespace for good (a thread made for it).
    pub fn enter_this_thread(&self) -> Result<(), FakeNetError> {
        // SAFETY: valid namespace fd.
        if unsafe { libc::setns(self.fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(os_err("setns into the fake internet"));
        }
        Ok(())
    }

    fn ip_batch(&self, script: &str) -> Result<(), FakeNetError> {
        let mut cmd = Command::new("ip");
        cmd.args(["-batch", "-"]).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
        self.command(&mut cmd);
        let err = |e| FakeNetError::Setup { what: "running ip (iproute2)".into(), source: e };
        let mut child = cmd.spawn().map_err(err)?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(script.as_bytes()).map_err(err)?;
        }
        let out = child.wait_with_output().map_err(err)?;
        if !out.status.success() {
            return Err(FakeNetError::Setup {
                what: format!("ip -batch: {}", script.trim().replace('\n', "; ")),
                source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
            });
        }
        Ok(())
    }
}
