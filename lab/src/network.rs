//! The lab network: the sandbox's fake internet ([`ioclab_sandbox::fakenet`],
//! shared, not copied) with a way to run endpoint commands inside it.
//!
//! A command started by [`LabNetwork::spawn`] joins the fake internet's
//! network namespace (loopback only, every address local) and a private
//! mount namespace whose `/etc/resolv.conf` names the lab resolver. The
//! engine enforces this, not the scenario: there is no way out to configure.
//! [`LabNetwork::stop`] (or dropping it) kills whatever still runs inside,
//! so a background process cannot outlive the network.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, Ordering};

use ioclab_sandbox::detonation::{DnsRecord, DnsRecordData, NetworkLog};
use ioclab_sandbox::fakenet::{self, FakeNet, FakeNetConfig, FakeNetError, Service, ServiceKind};

/// Why the lab network could not start or run a command.
#[derive(Debug, thiserror::Error)]
pub enum LabNetError {
    /// The fake internet did not start.
    #[error(transparent)]
    FakeNet(#[from] FakeNetError),
    /// A file or process step failed.
    #[error("lab network: {what}: {source}")]
    Io {
        /// The step.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

/// What the lab network answers.
#[derive(Debug, Clone, Default)]
pub struct LabNetConfig {
    /// DNS records answered before the sink address (CNAME chains are followed).
    pub records: Vec<DnsRecord>,
    /// Services answering instead of the sinks: HTTP pages, C2 listeners.
    pub services: Vec<Service>,
}

impl LabNetConfig {
    /// The network a loaded scenario declares: its records, and its services
    /// as the fake internet runs them. An HTTP sink answers with its `body`
    /// file (read from the scenario's folder) or else a page naming the
    /// scenario; a C2 listener sends its `send` text, then keeps its clients
    /// connected. The sandbox's detonation and the endpoint steps get the
    /// same services from here.
    pub fn from_scenario(loaded: &crate::scenario::Loaded) -> Result<Self, LabNetError> {
        let read = |file: &Path, service: &str| {
            let path = loaded.dir.join(file);
            std::fs::read(&path).map_err(io(format!("reading {} (body of service {service})", path.display())))
        };
        Self::from_network(&loaded.scenario.id, &loaded.scenario.network, &read)
    }

    /// The network `network` of scenario `id` declares, an HTTP sink's
    /// `body` file read by `read_body(file, service id)` (an endpoint that
    /// only got the order, not the scenario's folder, refuses it).
    pub fn from_network(
        id: &crate::scenario::ScenarioId,
        network: &crate::scenario::LabNetwork,
        read_body: &BodyReader,
    ) -> Result<Self, LabNetError> {
        use crate::scenario::ServiceKind as Kind;
        let mut services = Vec::with_capacity(network.services.len());
        for s in &network.services {
            let kind = match s.kind {
                Kind::HttpSink => {
                    let (body, default_type) = match &s.body {
                        Some(file) => (read_body(file, s.id.as_str())?, "application/octet-stream"),
                        None => (format!("<html><body>ioclab lab: {id}</body></html>\n").into_bytes(), "text/html"),
                    };
                    ServiceKind::Http { body, content_type: s.content_type.as_deref().unwrap_or(default_type).into() }
                }
                Kind::C2 => ServiceKind::C2 { send: s.send.clone().unwrap_or_default().into_bytes() },
            };
            services.push(Service { ip: Some(s.address), port: s.port, kind });
        }
        Ok(LabNetConfig { records: network.dns.clone(), services })
    }
}

/// How [`LabNetConfig::from_network`] reads an HTTP sink's `body` file: (file, service id) -> its bytes.
pub type BodyReader<'a> = dyn Fn(&Path, &str) -> Result<Vec<u8>, LabNetError> + 'a;

/// A running lab network; [`LabNetwork::stop`] returns what it saw.
#[derive(Debug)]
pub struct LabNetwork {
    net: Option<FakeNet>,
    /// The resolv.conf bound over `/etc/resolv.conf` of the commands inside.
    resolv: PathBuf,
    config: LabNetConfig,
}

/// Where the lab networks keep their resolv.conf files.
const STATE_DIR: &str = "/run/ioclab-lab";

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LabNetError {
    let what = what.into();
    move |source| LabNetError::Io { what, source }
}

impl LabNetwork {
    /// Starts the fake internet with `config`'s records; returns once it answers.
    pub fn start(config: LabNetConfig) -> Result<Self, LabNetError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        std::fs::create_dir_all(STATE_DIR).map_err(io(format!("creating {STATE_DIR}")))?;
        let resolv = Path::new(STATE_DIR).join(format!(
            "resolv-{}-{}.conf",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&resolv, fakenet::resolv_conf()).map_err(io(format!("writing {}", resolv.display())))?;
        let net = match FakeNet::start(FakeNetConfig {
            records: config.records.clone(),
            services: config.services.clone(),
            ..Default::default()
        }) {
            Ok(n) => n,
            Err(e) => {
                let _ = std::fs::remove_file(&resolv);
                return Err(e.into());
            }
        };
        Ok(LabNetwork { net: Some(net), resolv, config })
    }

    /// The records it answers.
    pub fn records(&self) -> &[DnsRecord] {
        &self.config.records
    }

    /// The services it runs.
    pub fn services(&self) -> &[Service] {
        &self.config.services
    }

    fn net(&self) -> &FakeNet {
        self.net.as_ref().expect("the fake internet lives until stop or drop")
    }

    /// The network namespace's fd (for setns, and to tell it apart in tests).
    pub fn netns_fd(&self) -> std::os::fd::RawFd {
        self.net().netns().fd()
    }

    /// Whether IPv6 addresses are local inside too.
    pub fn has_ipv6(&self) -> bool {
        self.net().netns().has_ipv6()
    }

    /// Makes `cmd` run inside: the lab's network namespace, and a private mount
    /// namespace where `/etc/resolv.conf` is the lab resolver's. SIGINT and
    /// SIGQUIT are back to their defaults (the caller may ignore them while it waits).
    pub fn command(&self, cmd: &mut Command) -> Result<(), LabNetError> {
        self.net().netns().command(cmd);
        let source = CString::new(self.resolv.as_os_str().as_bytes())
            .map_err(|_| LabNetError::Io { what: "resolv.conf path".into(), source: std::io::Error::other("NUL") })?;
        // SAFETY: only async-signal-safe calls (unshare, mount, signal) on data prepared beforehand.
        unsafe {
            cmd.pre_exec(move || {
                if libc::unshare(libc::CLONE_NEWNS) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // nothing mounted from here on reaches the host
                let none = std::ptr::null();
                if libc::mount(none, c"/".as_ptr(), none, libc::MS_REC | libc::MS_PRIVATE, none.cast()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::mount(source.as_ptr(), c"/etc/resolv.conf".as_ptr(), none, libc::MS_BIND, none.cast()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                libc::signal(libc::SIGQUIT, libc::SIG_DFL);
                Ok(())
            });
        }
        Ok(())
    }

    /// Starts `cmd` inside (see [`LabNetwork::command`]).
    pub fn spawn(&self, cmd: &mut Command) -> Result<Child, LabNetError> {
        self.command(cmd)?;
        let program = cmd.get_program().to_string_lossy().into_owned();
        cmd.spawn().map_err(io(format!("starting {program} in the lab network")))
    }

    /// What it saw so far.
    pub fn log(&self) -> NetworkLog {
        self.net().log()
    }

    /// Kills every process still inside, stops the servers and returns what they saw.
    pub fn stop(mut self) -> NetworkLog {
        self.kill_inside();
        let log = self.net.take().map(FakeNet::stop).unwrap_or_default();
        let _ = std::fs::remove_file(&self.resolv);
        log
    }

    /// SIGKILLs the processes in the lab namespace (not the servers' thread:
    /// it is a thread of this process, which stays in the host's namespace).
    fn kill_inside(&self) {
        let Some(net) = &self.net else { return };
        let Some(want) = ns_link(net.netns().fd()) else { return };
        // a process may fork while we kill: go round until none is left
        for _ in 0..50 {
            let pids = processes_in(&want);
            if pids.is_empty() {
                return;
            }
            for pid in pids {
                // SAFETY: kill has no memory preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        tracing::warn!("processes still in the lab network after 50 rounds of SIGKILL");
    }
}

impl Drop for LabNetwork {
    fn drop(&mut self) {
        self.kill_inside();
        self.net.take();
        let _ = std::fs::remove_file(&self.resolv);
    }
}

/// `net:[inode]` of the namespace behind `fd`, as /proc shows it.
fn ns_link(fd: std::os::fd::RawFd) -> Option<String> {
    std::fs::read_link(format!("/proc/self/fd/{fd}")).ok().map(|l| l.to_string_lossy().into_owned())
}

/// Live processes (not zombies) in the network namespace `link`.
fn processes_in(link: &str) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/ns/net")).is_ok_and(|l| l.to_string_lossy() == link))
        .filter(|pid| !is_zombie(*pid))
        .collect()
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('Z')))
        .unwrap_or(true)
}

/// One line per record, `name TYPE value`, for banners.
pub fn describe_record(r: &DnsRecord) -> String {
    match &r.data {
        DnsRecordData::A(a) => format!("{} A {a}", r.name),
        DnsRecordData::AAAA(a) => format!("{} AAAA {a}", r.name),
        DnsRecordData::CNAME(c) => format!("{} CNAME {c}", r.name),
    }
}

/// One line per service, `ip:port kind`, for banners.
pub fn describe_service(s: &Service) -> String {
    let at = match s.ip {
        Some(ip) => std::net::SocketAddr::new(ip, s.port).to_string(),
        None => format!("*:{}", s.port),
    };
    match &s.kind {
        ServiceKind::Http { body, content_type } => format!("{at} HTTP ({} bytes of {content_type})", body.len()),
        ServiceKind::C2 { send } => format!("{at} C2 (sends {} bytes, keeps the connection open)", send.len()),
    }
}

/// A few lines saying what the network saw: queries, connections, requests.
pub fn summary(log: &NetworkLog) -> String {
    let mut out = format!(
        "lab network log: {} DNS queries, {} TCP connections to sinks, {} HTTP requests, {} TLS hellos, {} UDP datagrams, {} refused connections\n",
        log.dns.len(),
        log.tcp.len(),
        log.http.len(),
        log.tls.len(),
        log.udp.len(),
        log.dead_hosts.len()
    );
    for q in &log.dns {
        let answers: Vec<&str> = q.answers.iter().map(|(_, v)| v.as_str()).collect();
        out += &format!("  dns  {} {} -> {}\n", q.name, q.qtype, answers.join(", "));
    }
    for f in &log.tcp {
        out += &format!("  tcp  {} -> {} ({} bytes)\n", f.src, f.dst, f.bytes);
    }
    for h in &log.http {
        out += &format!("  http {} http://{}{} (to {})\n", h.method, h.host, h.path, h.dst);
    }
    for t in &log.tls {
        out += &format!("  tls  {} -> {} (server name {})\n", t.src, t.dst, t.sni.as_deref().unwrap_or("none"));
    }
    for d in &log.dead_hosts {
        out += &format!("  refused {d} (no sink on that port)\n");
    }
    out
}
