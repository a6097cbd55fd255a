//! The fake internet's servers, all on one tokio thread inside the
//! namespace: TCP sinks, the resolver (UDP and TCP 53) and the packet tap.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::Digest as _;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

use super::dns::Zone;
use super::packets::{self, Packet};
use super::services::{self, Service, ServiceKind};
use super::{canonical, http, lock, now, tls, FakeNetError, DNS_PORT, SINK_PORTS};
use crate::detonation::{Flow, HttpRequest, NetworkLog, TlsHello};
use ioclab_agent::hashes::Sha256;

/// Bytes of a flow's start kept.
const HEAD_BYTES: usize = 256;
/// How long a sink waits for a client that sends nothing.
const IDLE: Duration = Duration::from_secs(10);
/// Longest request body hashed (the rest is counted, not hashed).
const MAX_BODY: u64 = 64 << 20;

/// Bound sockets, before serving.
pub struct Servers {
    tcp: Vec<(u16, TcpListener)>,
    services: Arc<Vec<Service>>,
    dns_udp: AsyncFd<OwnedFd>,
    tap: AsyncFd<OwnedFd>,
}

fn setup(what: impl Into<String>) -> impl FnOnce(io::Error) -> FakeNetError {
    let what = what.into();
    move |source| FakeNetError::Setup { what, source }
}

fn bind_tcp(port: u16) -> io::Result<TcpListener> {
    // dual stack when the kernel has IPv6, IPv4 only otherwise
    let std = std::net::TcpListener::bind(("::", port)).or_else(|_| std::net::TcpListener::bind(("0.0.0.0", port)))?;
    std.set_nonblocking(true)?;
    TcpListener::from_std(std)
}

fn os_check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A nonblocking IPv4 UDP socket on 0.0.0.0:`port` that learns each
/// datagram's destination (IP_PKTINFO), so answers leave from the address
/// the sample asked (1.1.1.1 answers as 1.1.1.1).
fn bind_udp_pktinfo(port: u16) -> io::Result<OwnedFd> {
    // SAFETY: plain socket calls on an fd owned right away.
    unsafe {
        let fd = os_check(libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0))?;
        let fd = OwnedFd::from_raw_fd(fd);
        let one: libc::c_int = 1;
        let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        os_check(libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_PKTINFO,
            (&one as *const i32).cast(),
            len,
        ))?;
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr { s_addr: 0 },
            sin_zero: [0; 8],
        };
        let salen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        os_check(libc::bind(fd.as_raw_fd(), (&sa as *const libc::sockaddr_in).cast(), salen))?;
        Ok(fd)
    }
}

/// A packet socket on `lo` seeing every packet (without link header).
fn bind_tap() -> io::Result<OwnedFd> {
    let all = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket calls on an fd owned right away.
    unsafe {
        let fd = os_check(libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            all as i32,
        ))?;
        let fd = OwnedFd::from_raw_fd(fd);
        let lo = libc::if_nametoindex(c"lo".as_ptr());
        if lo == 0 {
            return Err(io::Error::last_os_error());
        }
        let mut sa: libc::sockaddr_ll = std::mem::zeroed();
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_protocol = all;
        sa.sll_ifindex = lo as i32;
        let salen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        os_check(libc::bind(fd.as_raw_fd(), (&sa as *const libc::sockaddr_ll).cast(), salen))?;
        Ok(fd)
    }
}

fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd owns the fd and nothing else closes or replaces it.
    unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)
}

impl Servers {
    /// Binds every socket (in the namespace of the calling thread): the sinks',
    /// the resolver's, and every address of the ports `services` add.
    pub async fn bind(services: Vec<Service>) -> Result<Self, FakeNetError> {
        if let Some(s) = services.iter().find(|s| s.port == DNS_PORT) {
            return Err(FakeNetError::Setup {
                what: format!("service on {:?} port {}", s.ip, s.port),
                source: io::Error::other("port 53 is the resolver's"),
            });
        }
        let mut ports: Vec<u16> = SINK_PORTS.iter().copied().chain([DNS_PORT]).collect();
        ports.extend(services.iter().map(|s| s.port).filter(|p| !SINK_PORTS.contains(p)));
        ports.sort_unstable();
        ports.dedup();
        let mut tcp = Vec::new();
        for port in ports {
            tcp.push((port, bind_tcp(port).map_err(setup(format!("listening on TCP port {port}")))?));
        }
        let services = Arc::new(services);
        let dns_udp = register(bind_udp_pktinfo(DNS_PORT).map_err(setup("binding UDP port 53"))?)
            .map_err(setup("registering UDP port 53"))?;
        let tap = register(bind_tap().map_err(setup("packet socket on lo"))?)
            .map_err(setup("registering the packet socket"))?;
        Ok(Servers { tcp, services, dns_udp, tap })
    }

    /// Serves until `stop` fires (or its sender is dropped).
    pub async fn serve(self, zone: Arc<Zone>, log: Arc<Mutex<NetworkLog>>, stop: tokio::sync::oneshot::Receiver<()>) {
        let served: Arc<Vec<u16>> = Arc::new(self.tcp.iter().map(|(p, _)| *p).collect());
        for (port, listener) in self.tcp {
            let (zone, log, services) = (zone.clone(), log.clone(), self.services.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else { continue };
                    let (zone, log, services) = (zone.clone(), log.clone(), services.clone());
                    tokio::spawn(async move {
                        if port == DNS_PORT {
                            dns_tcp(stream, &zone, &log).await;
                        } else {
                            sink(stream, port, &log, &services).await;
                        }
                    });
                }
            });
        }
        tokio::spawn(dns_udp(self.dns_udp, zone, log.clone()));
        tokio::spawn(tap(self.tap, log, served));
        let _ = stop.await;
    }
}

/// What servers that speak first say.
fn banner(port: u16) -> Option<&'static [u8]> {
    match port {
        21 => Some(b"220 ioclab FTP ready\r\n"),
        22 => Some(b"SSH-2.0-OpenSSH_9.2p1\r\n"),
        25 => Some(b"220 mail.example ESMTP ready\r\n"),
        _ => None,
    }
}

/// The page the sinks answer HTTP requests with.
const SINK_PAGE: (&[u8], &str) = (b"<html><body>ioclab sink</body></html>\n", "text/html");

/// One TCP connection to a sink, or to the service placed on its address.
async fn sink(mut s: TcpStream, port: u16, log: &Mutex<NetworkLog>, services: &[Service]) {
    let (Ok(src), Ok(dst)) = (s.peer_addr(), s.local_addr()) else { return };
    let (src, dst) = (canonical(src), canonical(dst));
    let service = services::find(services, dst);
    let page = match service.map(|s| &s.kind) {
        Some(ServiceKind::Http { body, content_type }) => (body.as_slice(), content_type.as_str()),
        _ => SINK_PAGE,
    };
    let idx = {
        let mut l = lock(log);
        l.tcp.push(Flow { time: now(), src, dst, bytes: 0, head: Vec::new() });
        l.tcp.len() - 1
    };
    let record = |buf: &[u8], total: u64| {
        let mut l = lock(log);
        let f = &mut l.tcp[idx];
        f.bytes = total;
        if f.head.len() < HEAD_BYTES {
            f.head = buf[..buf.len().min(HEAD_BYTES)].to_vec();
        }
    };
    if let Some(ServiceKind::C2 { send }) = service.map(|s| &s.kind) {
        return c2(s, send, &record).await;
    }
    if let Some(b) = banner(port) {
        let _ = s.write_all(b).await;
    }
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    let mut total = 0u64;
    loop {
        let n = match timeout(IDLE, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return,
        };
        total += n as u64;
        let room = http::MAX_HEAD.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..n.min(room)]);
        record(&buf, total);
        if tls::looks_like_tls(&buf) {
            let want =
                5 + u16::from_be_bytes([buf.get(3).copied().unwrap_or(0), buf.get(4).copied().unwrap_or(0)]) as usize;
            if buf.len() < want.min(http::MAX_HEAD) {
                continue;
            }
            let sni = tls::client_hello_sni(&buf).unwrap_or_else(|e| {
                tracing::debug!("sink {dst} from {src}: {e}");
                None
            });
            lock(log).tls.push(TlsHello { time: now(), src, dst, sni });
            // no certificate to offer: a fatal handshake_failure alert ends it at once
            let _ = s.write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]).await;
            return;
        }
        if http::looks_like_http(&buf) {
            match http::parse_head(&buf) {
                Ok(None) if room > n => continue,
                Ok(Some(head)) => {
                    total = http_request(&mut s, head, &buf, total, &mut chunk, (src, dst), log, &record, page).await;
                    record(&buf, total);
                    return;
                }
                Ok(None) | Err(_) => break,
            }
        }
        break;
    }
    // whatever else it sends is counted
    while let Ok(Ok(n)) = timeout(IDLE, s.read(&mut chunk)).await {
        if n == 0 {
            break;
        }
        total += n as u64;
        record(&buf, total);
    }
}

/// Reads the body of a request whose head is in `buf`, answers 200 and
/// logs it; returns the bytes received in all.
#[allow(clippy::too_many_arguments)]
async fn http_request(
    s: &mut TcpStream,
    head: http::Head,
    buf: &[u8],
    mut total: u64,
    chunk: &mut [u8],
    (src, dst): (SocketAddr, SocketAddr),
    log: &Mutex<NetworkLog>,
    record: &impl Fn(&[u8], u64),
    (page, content_type): (&[u8], &str),
) -> u64 {
    if head.expect_continue {
        let _ = s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
    }
    let mut hasher = sha2::Sha256::new();
    let first = &buf[head.len.min(buf.len())..];
    let mut body = first.len() as u64;
    hasher.update(first);
    let done = |body: u64, tail: &[u8]| match head.content_length {
        Some(n) => body >= n,
        // chunked: the last chunk; no length: nothing more (a GET)
        None => !head.chunked || tail.ends_with(b"0\r\n\r\n"),
    };
    let mut tail = first.to_vec();
    while !done(body, &tail) {
        let n = match timeout(IDLE, s.read(chunk)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => break,
        };
        total += n as u64;
        if body < MAX_BODY {
            hasher.update(&chunk[..n]);
        }
        body += n as u64;
        tail = chunk[n.saturating_sub(5)..n].to_vec();
        record(buf, total);
    }
    let resp = format!(
        "HTTP/1.1 200 OK\r\nServer: ioclab-sink\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        page.len()
    );
    let _ = s.write_all(resp.as_bytes()).await;
    let _ = s.write_all(page).await;
    let _ = s.shutdown().await;
    lock(log).http.push(HttpRequest {
        time: now(),
        src,
        dst,
        method: head.method,
        host: head.host.unwrap_or_else(|| dst.ip().to_string()),
        path: head.path,
        user_agent: head.user_agent,
        body_size: body,
        body_sha256: (body > 0 && body <= MAX_BODY).then(|| Sha256(hasher.finalize().into())),
    });
    total
}

/// A C2 connection: `send` first, then whatever the client sends is logged
/// (its first bytes and its size) until it closes; no idle timeout, the
/// connection lasts as long as the client (or the fake internet) does.
async fn c2(mut s: TcpStream, send: &[u8], record: &impl Fn(&[u8], u64)) {
    if !send.is_empty() && s.write_all(send).await.is_err() {
        return;
    }
    let (mut head, mut total) = (Vec::with_capacity(HEAD_BYTES), 0u64);
    let mut chunk = vec![0u8; 16 * 1024];
    while let Ok(n) = s.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        total += n as u64;
        let room = HEAD_BYTES.saturating_sub(head.len());
        head.extend_from_slice(&chunk[..n.min(room)]);
        record(&head, total);
    }
}

/// DNS over TCP: length-prefixed messages until the client closes.
async fn dns_tcp(mut s: TcpStream, zone: &Zone, log: &Mutex<NetworkLog>) {
    let peer = s.peer_addr().map(|a| canonical(a).to_string()).unwrap_or_default();
    loop {
        let mut len = [0u8; 2];
        if !matches!(timeout(IDLE, s.read_exact(&mut len)).await, Ok(Ok(_))) {
            return;
        }
        let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
        if !matches!(timeout(IDLE, s.read_exact(&mut msg)).await, Ok(Ok(_))) {
            return;
        }
        match zone.answer(&msg, &peer, now()) {
            Ok((resp, q)) => {
                lock(log).dns.push(q);
                let mut framed = (resp.len() as u16).to_be_bytes().to_vec();
                framed.extend(resp);
                if s.write_all(&framed).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::debug!("{e}");
                return;
            }
        }
    }
}

/// A message header for one buffer, an IPv4 peer and `control_len` bytes of control data.
fn msghdr(
    peer: &mut libc::sockaddr_in,
    iov: &mut libc::iovec,
    control: &mut [u64],
    control_len: usize,
) -> libc::msghdr {
    // SAFETY: an all-zero msghdr is valid; the fields set point at the caller's buffers.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (peer as *mut libc::sockaddr_in).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control_len.min(std::mem::size_of_val(control));
    msg
}

/// A datagram with the address it was sent to.
fn recv_pktinfo(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, SocketAddrV4, Ipv4Addr)> {
    // SAFETY: msghdr points at buffers that outlive the call; control
    // messages are read with the CMSG macros within msg_controllen.
    unsafe {
        let mut from: libc::sockaddr_in = std::mem::zeroed();
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        let mut control = [0u64; 16];
        let len = std::mem::size_of_val(&control);
        let mut msg = msghdr(&mut from, &mut iov, &mut control, len);
        let n = libc::recvmsg(fd, &mut msg, 0);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut dst = Ipv4Addr::UNSPECIFIED;
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::IPPROTO_IP && (*c).cmsg_type == libc::IP_PKTINFO {
                let info = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::in_pktinfo);
                dst = Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        let src = SocketAddrV4::new(Ipv4Addr::from(u32::from_be(from.sin_addr.s_addr)), u16::from_be(from.sin_port));
        Ok((n as usize, src, dst))
    }
}

/// Sends `buf` to `to` from address `from`.
fn send_from(fd: RawFd, buf: &[u8], to: SocketAddrV4, from: Ipv4Addr) -> io::Result<()> {
    // SAFETY: as in recv_pktinfo; the control buffer holds one in_pktinfo.
    unsafe {
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_port = to.port().to_be();
        sa.sin_addr.s_addr = u32::from(*to.ip()).to_be();
        let mut iov = libc::iovec { iov_base: buf.as_ptr() as *mut _, iov_len: buf.len() };
        let mut control = [0u64; 8];
        let len = libc::CMSG_SPACE(std::mem::size_of::<libc::in_pktinfo>() as u32) as usize;
        let msg = msghdr(&mut sa, &mut iov, &mut control, len);
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::IPPROTO_IP;
        (*c).cmsg_type = libc::IP_PKTINFO;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::in_pktinfo>() as u32) as usize;
        let mut info: libc::in_pktinfo = std::mem::zeroed();
        info.ipi_spec_dst.s_addr = u32::from(from).to_be();
        std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut libc::in_pktinfo, info);
        if libc::sendmsg(fd, &msg, 0) < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// DNS over UDP, answered from the address asked.
async fn dns_udp(sock: AsyncFd<OwnedFd>, zone: Arc<Zone>, log: Arc<Mutex<NetworkLog>>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok(mut guard) = sock.readable().await else { return };
        let got = guard.try_io(|fd| recv_pktinfo(fd.as_raw_fd(), &mut buf));
        let Ok(Ok((n, src, dst))) = got else { continue };
        match zone.answer(&buf[..n], &src.to_string(), now()) {
            Ok((resp, q)) => {
                lock(&log).dns.push(q);
                if let Err(e) = send_from(sock.as_raw_fd(), &resp, src, dst) {
                    tracing::debug!("DNS answer to {src}: {e}");
                }
            }
            Err(e) => tracing::debug!("{e}"),
        }
    }
}

/// The packet tap: UDP datagrams (DNS aside) and SYNs to ports without a sink.
async fn tap(sock: AsyncFd<OwnedFd>, log: Arc<Mutex<NetworkLog>>, served: Arc<Vec<u16>>) {
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok(mut guard) = sock.readable().await else { return };
        let got = guard.try_io(|fd| {
            // SAFETY: recvfrom into our buffer and a sockaddr_ll of the right size.
            unsafe {
                let mut from: libc::sockaddr_ll = std::mem::zeroed();
                let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                let n = libc::recvfrom(
                    fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&mut from as *mut libc::sockaddr_ll).cast(),
                    &mut len,
                );
                if n < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok((n as usize, from.sll_pkttype))
            }
        });
        let Ok(Ok((n, pkttype))) = got else { continue };
        // loopback shows each packet twice, leaving and arriving: keep one
        if pkttype != libc::PACKET_OUTGOING {
            continue;
        }
        let pkt = &buf[..n];
        match packets::parse(pkt) {
            Some(Packet::Syn { dst, .. }) if !served.contains(&dst.port()) => {
                let mut l = lock(&log);
                if !l.dead_hosts.contains(&dst) {
                    l.dead_hosts.push(dst);
                }
            }
            Some(Packet::Udp { src, dst, payload }) if dst.port() != DNS_PORT && src.port() != DNS_PORT => {
                let mut l = lock(&log);
                match l.udp.iter_mut().find(|f| f.src == src && f.dst == dst) {
                    Some(f) => f.bytes += payload.len() as u64,
                    None => l.udp.push(Flow {
                        time: now(),
                        src,
                        dst,
                        bytes: payload.len() as u64,
                        head: payload[..payload.len().min(HEAD_BYTES)].to_vec(),
                    }),
                }
            }
            _ => {}
        }
    }
}
