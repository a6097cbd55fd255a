//! The fake internet, shared by the sandbox and the lab network: a network
//! namespace where every address is local ([`netns`]), a resolver answering
//! given records first and the sink address otherwise ([`dns`]), TCP sinks
//! that record what clients send (HTTP requests, TLS server names, first
//! bytes), and a packet tap on `lo` that records UDP datagrams and
//! connection attempts to ports no sink serves (`dead_hosts`).
//!
//! The servers run on one thread of the calling process that entered the
//! namespace by fd (setns): nothing listens on the host. Processes join it
//! through [`NetNs::command`] or, for the sandbox, by setns on [`NetNs::fd`].

pub mod dns;
pub mod http;
pub mod netns;
pub mod packets;
pub mod services;
pub mod sinks;
pub mod tls;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub use netns::NetNs;
pub use services::{Service, ServiceKind};

use crate::detonation::{DnsRecord, NetworkLog};

/// TCP ports with a sink; 53 is the resolver's.
pub const SINK_PORTS: &[u16] = &[21, 22, 25, 80, 443, 1337, 4444, 8080, 8443];
/// The resolver's port (UDP and TCP, every address).
pub const DNS_PORT: u16 = 53;
/// Where the resolver says it is (any address would do: all are local).
pub const RESOLVER_V4: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 53);
/// Default answer of A questions without a record: TEST-NET-1 (RFC 5737),
/// which can never be a real host.
pub const DEFAULT_SINK_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// Default answer of AAAA questions: the documentation prefix (RFC 3849).
pub const DEFAULT_SINK_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

/// Why the fake internet could not start.
#[derive(Debug, thiserror::Error)]
pub enum FakeNetError {
    /// A setup step failed.
    #[error("fake internet: {what}: {source}")]
    Setup {
        /// The step.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

/// What the fake internet answers.
#[derive(Debug, Clone)]
pub struct FakeNetConfig {
    /// Records answered before the sink address.
    pub records: Vec<DnsRecord>,
    /// Answer of A questions without a record.
    pub sink_v4: Ipv4Addr,
    /// Answer of AAAA questions without a record.
    pub sink_v6: Ipv6Addr,
    /// Services answering instead of the sinks (HTTP pages, C2 listeners).
    pub services: Vec<Service>,
}

impl Default for FakeNetConfig {
    fn default() -> Self {
        FakeNetConfig { records: Vec::new(), sink_v4: DEFAULT_SINK_V4, sink_v6: DEFAULT_SINK_V6, services: Vec::new() }
    }
}

/// The contents of the resolv.conf of whatever runs inside.
pub fn resolv_conf() -> String {
    format!("# ioclab fake internet: every name resolves, nothing leaves\nnameserver {RESOLVER_V4}\n")
}

/// A running fake internet; [`FakeNet::stop`] returns what it saw.
#[derive(Debug)]
pub struct FakeNet {
    ns: NetNs,
    log: Arc<Mutex<NetworkLog>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Epoch seconds now.
pub fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Locks the log, even one a panicking server thread left poisoned.
pub(crate) fn lock(log: &Mutex<NetworkLog>) -> std::sync::MutexGuard<'_, NetworkLog> {
    log.lock().unwrap_or_else(|e| e.into_inner())
}

/// `::ffff:a.b.c.d` as `a.b.c.d`: dual-stack sockets report IPv4 peers mapped.
pub(crate) fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

impl FakeNet {
    /// Creates a namespace and starts the resolver, the sinks, the services and
    /// the tap in it; returns once they all listen.
    pub fn start(config: FakeNetConfig) -> Result<Self, FakeNetError> {
        let ns = NetNs::new()?;
        let log = Arc::new(Mutex::new(NetworkLog::default()));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let ns_fd = ns.fd();
        let (log2, zone) =
            (log.clone(), dns::Zone { records: config.records, sink_v4: config.sink_v4, sink_v6: config.sink_v6 });
        let services = config.services;
        let thread = std::thread::Builder::new()
            .name("ioclab-fakenet".into())
            .spawn(move || {
                let run = || -> Result<(tokio::runtime::Runtime, sinks::Servers), FakeNetError> {
                    // SAFETY: a valid namespace fd, kept open by the FakeNet that waits for this thread.
                    if unsafe { libc::setns(ns_fd, libc::CLONE_NEWNET) } != 0 {
                        return Err(FakeNetError::Setup {
                            what: "setns into the fake internet".into(),
                            source: std::io::Error::last_os_error(),
                        });
                    }
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|source| {
                        FakeNetError::Setup { what: "starting the fake internet's runtime".into(), source }
                    })?;
                    let servers = rt.block_on(sinks::Servers::bind(services))?;
                    Ok((rt, servers))
                };
                match run() {
                    Ok((rt, servers)) => {
                        let _ = ready_tx.send(Ok(()));
                        rt.block_on(servers.serve(Arc::new(zone), log2, stop_rx));
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .map_err(|source| FakeNetError::Setup { what: "starting the fake internet's thread".into(), source })?;
        let ready = ready_rx.recv().unwrap_or_else(|_| {
            Err(FakeNetError::Setup { what: "fake internet thread".into(), source: std::io::Error::other("died") })
        });
        let mut net = FakeNet { ns, log, stop: Some(stop_tx), thread: Some(thread) };
        if let Err(e) = ready {
            net.shutdown();
            return Err(e);
        }
        Ok(net)
    }

    /// Its network namespace.
    pub fn netns(&self) -> &NetNs {
        &self.ns
    }

    /// What it saw so far.
    pub fn log(&self) -> NetworkLog {
        lock(&self.log).clone()
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Stops the servers (the namespace goes with its last user) and returns what they saw.
    pub fn stop(mut self) -> NetworkLog {
        self.shutdown();
        self.log()
    }
}

impl Drop for FakeNet {
    fn drop(&mut self) {
        self.shutdown();
    }
}
