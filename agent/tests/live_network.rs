//! Live network events: each produced by real traffic on loopback addresses
//! (never any other address), checked field by field.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;

use common::dns_server;
use common::*;
use serde_json::Value;

fn iocs_file(dir: &std::path::Path, values: &[&str]) -> std::path::PathBuf {
    let p = dir.join("iocs.json");
    let lines: String = values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{{\"uuid\":\"u{i}\",\"source\":\"test\",\"value\":\"{v}\",\"severity\":5}}\n"))
        .collect();
    std::fs::write(&p, lines).unwrap();
    p
}

fn dig(server: Ipv4Addr, extra: &[&str]) -> u32 {
    let child = Command::new("dig")
        .arg(format!("@{server}"))
        .args([dns_server::NAME, "+tries=1", "+time=3"])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("dig (from dnsutils, installed by scripts/setup.sh)");
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("127.0.66.80"), "dig got the test server's answer: {text}");
    pid
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect()
}

fn check_community_id(v: &Value) {
    let id = v.as_str().unwrap();
    assert!(id.starts_with("1:") && id.len() == 30, "community_id {id}");
}

#[test]
fn dig_with_the_ioc_loaded_gives_one_detected_dns_query() {
    let server_ip = Ipv4Addr::new(127, 0, 53, 53);
    let _server = dns_server::start(server_ip);
    let dir = tempfile::tempdir().unwrap();
    let mut c = config();
    c.scanner.iocs = vec![iocs_file(dir.path(), &["why.kunai.rocks"])];
    let Some(agent) = start(c) else { return };

    let pid = dig(server_ip, &[]);
    let ev = agent.wait_for("dns_query from dig", is("dns_query", pid));
    let (_, events) = agent.stop();

    let d = &ev["data"];
    assert_eq!(ev["info"]["event"]["id"], 61);
    assert_eq!(d["query"], "why.kunai.rocks");
    assert_eq!(d["query_type"], "A");
    assert_eq!(strs(&d["response"]), ["kunai-project.github.io", "127.0.66.80"]);
    assert_eq!(d["dns_server"]["ip"], "127.0.53.53");
    assert_eq!(d["dns_server"]["port"], 53);
    assert_eq!(d["dns_server"]["public"], false);
    assert_eq!(d["dns_server"]["is_v6"], false);
    assert_eq!(d["socket"]["domain"], "AF_INET");
    assert_eq!(d["socket"]["type"], "SOCK_DGRAM");
    assert_eq!(d["socket"]["proto"], "UDP");
    assert_eq!(d["src"]["ip"], "127.0.0.1");
    assert!(d["src"]["port"].as_u64().unwrap() > 0);
    assert!(d["exe"]["path"].as_str().unwrap().ends_with("/dig"), "{}", d["exe"]);
    check_community_id(&d["community_id"]);
    assert_eq!(strs(&ev["detection"]["iocs"]), ["why.kunai.rocks"]);
    assert_eq!(ev["detection"]["severity"], 5);

    let from_dig: Vec<&Value> = events.iter().filter(|e| tgid(e) == pid as i64).collect();
    assert_eq!(from_dig.len(), 1, "exactly one detection for dig: {from_dig:?}");
}

#[test]
fn dns_over_tcp_and_names_learned_per_process() {
    let server_ip = Ipv4Addr::new(127, 0, 53, 54);
    let _server = dns_server::start(server_ip);
    let Some(agent) = start(config()) else { return };
    let pid = dig(server_ip, &["+tcp"]);
    let ev = agent.wait_for("dns_query over TCP", is("dns_query", pid));
    let d = &ev["data"];
    assert_eq!(d["socket"]["type"], "SOCK_STREAM");
    assert_eq!(d["socket"]["proto"], "TCP");
    assert_eq!(d["query"], "why.kunai.rocks");
    assert_eq!(strs(&d["response"]), ["kunai-project.github.io", "127.0.66.80"]);
    assert_eq!(d["dns_server"]["ip"], "127.0.53.54");
    // dig's TCP connect to the server, with its outcome
    let conn = agent.wait_for("connect from dig", is("connect", pid));
    assert_eq!(conn["data"]["dst"]["ip"], "127.0.53.54");
    assert_eq!(conn["data"]["dst"]["port"], 53);
    assert_eq!(conn["data"]["connected"], true);
    assert_eq!(conn["data"]["dst"]["hostname"], "?", "dig had resolved nothing before connecting");
}

/// A one-shot HTTP server on `ip`:port; returns the port.
fn http_server(ip: Ipv4Addr) -> u16 {
    let l = TcpListener::bind((ip, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut c, _)) = l.accept() {
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            let _ = c.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\nhello\n");
        }
    });
    port
}

#[test]
fn curl_by_name_gives_connect_and_send_data_with_the_resolved_hostname() {
    let server_ip = Ipv4Addr::new(127, 0, 53, 55);
    let _server = dns_server::start(server_ip);
    let port = http_server(dns_server::ADDRESS);
    let dir = tempfile::tempdir().unwrap();
    // curl resolves through the system resolver: give it one that points at
    // the test server, in a mount namespace of its own (the host's is untouched)
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, format!("nameserver {server_ip}\noptions attempts:1 timeout:3\n")).unwrap();
    let Some(agent) = start(config()) else { return };
    let url = format!("http://{}:{port}/", dns_server::NAME);
    let child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!("mount --bind {} /etc/resolv.conf && exec curl -sS --max-time 5 {url}", resolv.display()))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("unshare (util-linux) and curl");
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n", "curl fetched the page");

    let q = agent.wait_for("curl's dns_query", is("dns_query", pid));
    assert_eq!(q["data"]["query"], "why.kunai.rocks");
    let conn = agent.wait_for("curl's connect", is("connect", pid));
    let d = &conn["data"];
    assert_eq!(d["dst"]["ip"], "127.0.66.80");
    assert_eq!(d["dst"]["port"], port);
    assert_eq!(d["dst"]["hostname"], "why.kunai.rocks");
    assert_eq!(d["dst"]["public"], false);
    assert_eq!(d["connected"], true);
    assert_eq!(d["socket"]["type"], "SOCK_STREAM");
    assert!(d["exe"]["path"].as_str().unwrap().ends_with("/curl"));
    check_community_id(&d["community_id"]);
    let send = agent.wait_for("curl's HTTP request", |e| is("send_data", pid)(e) && e["data"]["dst"]["port"] == port);
    let s = &send["data"];
    assert_eq!(s["dst"]["hostname"], "why.kunai.rocks");
    assert_eq!(s["connected"], true);
    assert_eq!(s["community_id"], d["community_id"], "same flow as the connect");
    assert!(s["data_size"].as_u64().unwrap() > 20, "an HTTP request line and headers");
    let e = s["data_entropy"].as_f64().unwrap();
    assert!(e > 3.0 && e < 6.5, "entropy of ASCII HTTP headers: {e}");
}

#[test]
fn refused_connect_ipv6_and_udp_sends_from_this_process() {
    let me = std::process::id();
    let Some(agent) = start(config()) else { return };

    // a closed port: the handshake fails
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    assert!(TcpStream::connect(("127.0.0.1", closed_port)).is_err());

    // IPv6 loopback
    let l6 = TcpListener::bind("[::1]:0").unwrap();
    let port6 = l6.local_addr().unwrap().port();
    let _c6 = TcpStream::connect(("::1", port6)).unwrap();

    // an unconnected UDP send of 256 distinct bytes: entropy 8
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let data: Vec<u8> = (0..=255).collect();
    tx.send_to(&data, rx.local_addr().unwrap()).unwrap();
    let rx_port = rx.local_addr().unwrap().port();

    let refused =
        agent.wait_for("refused connect", |e| is("connect", me)(e) && e["data"]["dst"]["port"] == closed_port);
    assert_eq!(refused["data"]["connected"], false);
    assert_eq!(refused["data"]["dst"]["ip"], "127.0.0.1");

    let v6 = agent.wait_for("IPv6 connect", |e| is("connect", me)(e) && e["data"]["dst"]["port"] == port6);
    assert_eq!(v6["data"]["dst"]["ip"], "::1");
    assert_eq!(v6["data"]["dst"]["is_v6"], true);
    assert_eq!(v6["data"]["socket"]["domain"], "AF_INET6");
    assert_eq!(v6["data"]["connected"], true);

    let udp = agent.wait_for("UDP send_data", |e| is("send_data", me)(e) && e["data"]["dst"]["port"] == rx_port);
    let d = &udp["data"];
    assert_eq!(d["data_size"], 256);
    assert!((d["data_entropy"].as_f64().unwrap() - 8.0).abs() < 1e-3, "{}", d["data_entropy"]);
    assert_eq!(d["connected"], false);
    assert_eq!(d["socket"]["proto"], "UDP");
    assert_eq!(d["dst"]["ip"], "127.0.0.1");
    assert_eq!(d["dst"]["hostname"], "?");
}

#[test]
fn ioc_on_a_destination_ip_detects_the_connect() {
    let me = std::process::id();
    let target = Ipv4Addr::new(127, 0, 66, 81);
    let l = TcpListener::bind((target, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let mut c = config();
    c.scanner.iocs = vec![iocs_file(dir.path(), &["127.0.66.81"])];
    let Some(agent) = start(c) else { return };
    let mut s = TcpStream::connect((target, port)).unwrap();
    s.write_all(b"beacon").unwrap();
    let conn = agent.wait_for("detected connect", |e| is("connect", me)(e) && e["data"]["dst"]["port"] == port);
    assert_eq!(strs(&conn["detection"]["iocs"]), ["127.0.66.81"]);
    let send = agent.wait_for("detected send_data", |e| is("send_data", me)(e) && e["data"]["dst"]["port"] == port);
    assert_eq!(send["data"]["data_size"], 6);
    assert_eq!(strs(&send["detection"]["iocs"]), ["127.0.66.81"]);
}

/// A DNS query for why.kunai.rocks of type `qtype`, id `id`.
fn query(id: u16, qtype: hickory_proto::rr::RecordType) -> Vec<u8> {
    query_for(dns_server::NAME, id, qtype)
}

/// A DNS query for `name`.
fn query_for(name: &str, id: u16, qtype: hickory_proto::rr::RecordType) -> Vec<u8> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::Name;
    use std::str::FromStr;
    let mut m = Message::new();
    m.set_id(id).set_recursion_desired(true);
    m.add_query(Query::query(Name::from_str(&format!("{name}.")).unwrap(), qtype));
    m.to_vec().unwrap()
}

/// A DNS answer with id `id`: `name` has address `ip`.
fn answer_for(name: &str, id: u16, ip: Ipv4Addr) -> Vec<u8> {
    use hickory_proto::op::{Message, MessageType, Query};
    use hickory_proto::rr::{rdata::A, Name, RData, Record, RecordType};
    use std::str::FromStr;
    let name = Name::from_str(&format!("{name}.")).unwrap();
    let mut m = Message::new();
    m.set_id(id).set_message_type(MessageType::Response);
    m.add_query(Query::query(name.clone(), RecordType::A));
    m.add_answer(Record::from_rdata(name, 60, RData::A(A(ip))));
    m.to_vec().unwrap()
}

/// Shannon entropy of bytes, in bits per byte (what send_data reports).
fn shannon(data: &[u8]) -> f64 {
    let mut counts = [0usize; 256];
    data.iter().for_each(|&b| counts[b as usize] += 1);
    let n = data.len() as f64;
    counts.iter().filter(|&&c| c > 0).map(|&c| c as f64 / n).map(|p| -p * p.log2()).sum()
}

/// One mmsghdr per iovec, each naming `to` when given.
fn mmsg_vector(iovs: &mut [libc::iovec], to: Option<&mut libc::sockaddr_in>) -> Vec<libc::mmsghdr> {
    let (name, namelen) = match to {
        Some(to) => (to as *mut _ as *mut libc::c_void, std::mem::size_of::<libc::sockaddr_in>() as u32),
        None => (std::ptr::null_mut(), 0),
    };
    iovs.iter_mut()
        .map(|iov| {
            // SAFETY: a zeroed mmsghdr is valid (null pointers, zero lengths).
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_name = name;
            m.msg_hdr.msg_namelen = namelen;
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect()
}

/// sendmmsg of `queries` to `server` from the unconnected `sock`, then
/// recvmmsg of up to `vlen` answers (after they all arrived); returns how many came.
fn mmsg_round_trip(sock: &UdpSocket, server: std::net::SocketAddr, queries: &[Vec<u8>], vlen: usize) -> usize {
    use std::os::fd::AsRawFd;
    let std::net::SocketAddr::V4(v4) = server else { panic!("IPv4 server") };
    let mut to = libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(*v4.ip()).to_be() },
        sin_zero: [0; 8],
    };
    let mut iovs: Vec<libc::iovec> =
        queries.iter().map(|q| libc::iovec { iov_base: q.as_ptr() as *mut _, iov_len: q.len() }).collect();
    let mut msgs = mmsg_vector(&mut iovs, Some(&mut to));
    // SAFETY: valid socket; the vector, its buffers and `to` outlive the call.
    let sent = unsafe { libc::sendmmsg(sock.as_raw_fd(), msgs.as_mut_ptr(), msgs.len() as u32, 0) };
    assert_eq!(sent, queries.len() as i32, "sendmmsg: {}", std::io::Error::last_os_error());
    std::thread::sleep(std::time::Duration::from_millis(300));

    let mut bufs = vec![[0u8; 512]; vlen];
    let mut iovs: Vec<libc::iovec> =
        bufs.iter_mut().map(|b| libc::iovec { iov_base: b.as_mut_ptr() as *mut _, iov_len: b.len() }).collect();
    let mut msgs = mmsg_vector(&mut iovs, None);
    // SAFETY: valid socket, vector and length; no timeout.
    let got = unsafe {
        libc::recvmmsg(sock.as_raw_fd(), msgs.as_mut_ptr(), vlen as u32, libc::MSG_DONTWAIT, std::ptr::null_mut())
    };
    assert!(got > 0, "recvmmsg: {}", std::io::Error::last_os_error());
    got as usize
}

#[test]
fn sendmmsg_and_recvmmsg_report_each_message_with_its_own_bytes() {
    use hickory_proto::rr::RecordType;
    let server_ip = Ipv4Addr::new(127, 0, 53, 57);
    let server = dns_server::start(server_ip);
    let me = std::process::id();
    // the default config: file and system events on, so the syscall-exit hook
    // that tells the messages of one call apart is attached
    let Some(agent) = start(config()) else { return };

    let queries = [query(0x0000, RecordType::A), query(0xabcd, RecordType::TXT)];
    assert_eq!(queries[0].len(), queries[1].len(), "same size: only their bytes tell them apart");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    assert_eq!(mmsg_round_trip(&sock, server.addr, &queries, 2), 2);

    let from_sock = |kind: &'static str| move |e: &Value| is(kind, me)(e) && e["data"]["src"]["port"] == port;
    agent.wait_for("second dns_query", |e| from_sock("dns_query")(e) && e["data"]["query_type"] == "TXT");
    let (_, events) = agent.stop();

    let mut sends: Vec<f64> = events
        .iter()
        .filter(|e| from_sock("send_data")(e))
        .map(|e| {
            assert_eq!(e["data"]["data_size"], queries[0].len());
            assert_eq!(e["data"]["dst"]["ip"], "127.0.53.57");
            e["data"]["data_entropy"].as_f64().unwrap()
        })
        .collect();
    sends.sort_by(f64::total_cmp);
    let mut expected: Vec<f64> = queries.iter().map(|q| shannon(q)).collect();
    expected.sort_by(f64::total_cmp);
    assert!((expected[0] - expected[1]).abs() > 1e-3, "the two queries differ in entropy: {expected:?}");
    assert_eq!(sends.len(), 2, "one send_data per message: {sends:?}");
    for (got, want) in sends.iter().zip(&expected) {
        assert!((got - want).abs() < 1e-4, "each send_data samples its own message: {sends:?} vs {expected:?}");
    }

    let answers: Vec<&Value> = events.iter().filter(|e| from_sock("dns_query")(e)).collect();
    let mut types: Vec<&str> = answers.iter().map(|e| e["data"]["query_type"].as_str().unwrap()).collect();
    types.sort();
    assert_eq!(types, ["A", "TXT"], "one dns_query per answer, each from its own bytes");
    let a = answers.iter().find(|e| e["data"]["query_type"] == "A").unwrap();
    assert_eq!(strs(&a["data"]["response"]), [dns_server::CNAME_TARGET, "127.0.66.80"]);
    assert_eq!(a["data"]["dns_server"]["ip"], "127.0.53.57");
}

#[test]
fn without_the_syscall_hook_only_single_message_mmsg_calls_are_read() {
    use hickory_proto::rr::RecordType;
    let server_ip = Ipv4Addr::new(127, 0, 53, 58);
    let server = dns_server::start(server_ip);
    let me = std::process::id();
    let mut c = config();
    for (name, switch) in c.events.iter_mut() {
        switch.enable = matches!(name.as_str(), "execve" | "clone" | "exit_group" | "send_data" | "dns_query");
    }
    let Some(agent) = start(c) else { return };

    // two messages per call: which one a socket tracepoint is about cannot be told
    let batch = UdpSocket::bind("127.0.0.1:0").unwrap();
    let batch_port = batch.local_addr().unwrap().port();
    let queries = [query(0x0000, RecordType::A), query(0xabcd, RecordType::TXT)];
    assert_eq!(mmsg_round_trip(&batch, server.addr, &queries, 2), 2);
    // one message per call: read as any recvmsg
    let single = UdpSocket::bind("127.0.0.1:0").unwrap();
    let single_port = single.local_addr().unwrap().port();
    assert_eq!(mmsg_round_trip(&single, server.addr, &queries[1..], 1), 1);

    let on = |kind: &'static str, port: u16| move |e: &Value| is(kind, me)(e) && e["data"]["src"]["port"] == port;
    let single_answer = agent.wait_for("single-message dns_query", on("dns_query", single_port));
    assert_eq!(single_answer["data"]["query_type"], "TXT");
    let (_, events) = agent.stop();

    let single_send = events.iter().find(|e| on("send_data", single_port)(e)).expect("single-message send_data");
    assert!((single_send["data"]["data_entropy"].as_f64().unwrap() - shannon(&queries[1])).abs() < 1e-4);
    // the batch: sends reported, by size, without a sample to misattribute; answers not parsed
    let batch_sends: Vec<&Value> = events.iter().filter(|e| on("send_data", batch_port)(e)).collect();
    assert_eq!(batch_sends.len(), 2);
    for s in batch_sends {
        assert_eq!(s["data"]["data_size"], queries[0].len());
        assert_eq!(s["data"]["data_entropy"], 0.0, "no sample: {s}");
    }
    assert!(
        !events.iter().any(on("dns_query", batch_port)),
        "no dns_query from a two-message recvmmsg (it could name the wrong message)"
    );
}

/// The default config without file hashing: what these tests check comes
/// right after a process's own DNS traffic, and must not wait behind the
/// hashing of the big new binaries a busy build machine makes.
fn config_no_hashing() -> ioclab_agent::config::Config {
    let mut c = config();
    c.max_hash_size = 0;
    c
}

/// The dns_query of this process whose socket has local port `port`.
fn dns_query_on(agent: &LiveAgent, port: u16) -> Value {
    let me = std::process::id();
    agent.wait_for("dns_query on the test socket", |e| is("dns_query", me)(e) && e["data"]["src"]["port"] == port)
}

#[test]
fn answers_over_2048_bytes_give_a_dns_query_with_the_records_that_fit_marked_truncated() {
    use hickory_proto::rr::RecordType;
    let server = dns_server::start(Ipv4Addr::new(127, 0, 53, 59));
    let Some(agent) = start(config_no_hashing()) else { return };
    let mut buf = vec![0u8; 16384];

    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    udp.send_to(&query_for(dns_server::BIG_NAME, 0x1111, RecordType::TXT), server.addr).unwrap();
    let (n, _) = udp.recv_from(&mut buf).unwrap();
    assert!(n > 4000, "the test answer is over 4 KB: {n}");

    let mut tcp = TcpStream::connect(server.addr).unwrap();
    let q = query_for(dns_server::BIG_NAME, 0x2222, RecordType::TXT);
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    tcp.write_all(&framed).unwrap();
    // the whole answer is then waiting in the socket: one read takes it, prefix and all
    std::thread::sleep(std::time::Duration::from_millis(300));
    let n = tcp.read(&mut buf).unwrap();
    assert!(n > 4000, "one read of the whole framed answer: {n}");

    for (sock, proto) in [(udp.local_addr().unwrap(), "UDP"), (tcp.local_addr().unwrap(), "TCP")] {
        let ev = dns_query_on(&agent, sock.port());
        let d = &ev["data"];
        assert_eq!(d["socket"]["proto"], proto);
        assert_eq!(d["query"], dns_server::BIG_NAME);
        assert_eq!(d["query_type"], "TXT");
        assert_eq!(d["truncated"], true, "{proto}: {d}");
        let response = strs(&d["response"]);
        assert!(response.len() >= 8 && response.len() < dns_server::BIG_RECORDS, "{proto}: {response:?}");
        for (i, r) in response.iter().enumerate() {
            assert!(r.contains(&dns_server::big_record(i)), "{proto}: record {i} is {r}");
        }
    }
}

#[test]
fn an_answer_read_with_a_scatter_recvmsg_is_read_from_each_iovec() {
    use hickory_proto::rr::RecordType;
    use std::os::fd::AsRawFd;
    let server = dns_server::start(Ipv4Addr::new(127, 0, 53, 60));
    let Some(agent) = start(config_no_hashing()) else { return };
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.send_to(&query(0x3333, RecordType::A), server.addr).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));

    // the header in one buffer, the question in the next, the answers in a third
    let mut parts = [vec![0u8; 12], vec![0u8; 21], vec![0u8; 512]];
    let mut iovs: Vec<libc::iovec> =
        parts.iter_mut().map(|p| libc::iovec { iov_base: p.as_mut_ptr() as *mut _, iov_len: p.len() }).collect();
    // SAFETY: a zeroed msghdr is valid; it points at the iovecs, which outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iovs.as_mut_ptr();
    msg.msg_iovlen = iovs.len();
    // SAFETY: a valid socket and msghdr.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
    assert!(n > 33, "the answer spans the three buffers: {n} ({})", std::io::Error::last_os_error());

    let ev = dns_query_on(&agent, sock.local_addr().unwrap().port());
    let d = &ev["data"];
    assert_eq!(d["query"], dns_server::NAME);
    assert_eq!(strs(&d["response"]), [dns_server::CNAME_TARGET, "127.0.66.80"]);
    assert_eq!(d["truncated"], false);
}

#[test]
fn an_answer_to_no_query_of_its_socket_teaches_no_hostname() {
    use hickory_proto::rr::RecordType;
    const NAME: &str = "spoof.kunai.rocks";
    let (forged_ip, real_ip) = (Ipv4Addr::new(127, 0, 66, 90), Ipv4Addr::new(127, 0, 66, 91));
    let me = std::process::id();
    // a "server" this test speaks for: it answers when and what the test says
    let server = UdpSocket::bind((Ipv4Addr::new(127, 0, 53, 61), 53)).unwrap();
    server.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    let Some(agent) = start(config_no_hashing()) else { return };

    let victim = UdpSocket::bind("127.0.0.1:0").unwrap();
    victim.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    victim.send_to(&query_for(NAME, 0x1000, RecordType::A), server.local_addr().unwrap()).unwrap();
    let mut buf = [0u8; 512];
    let (_, client) = server.recv_from(&mut buf).unwrap();
    // first a forged answer (another id), then the real one (the query's id)
    server.send_to(&answer_for(NAME, 0x2000, forged_ip), client).unwrap();
    victim.recv_from(&mut buf).unwrap();
    server.send_to(&answer_for(NAME, 0x1000, real_ip), client).unwrap();
    victim.recv_from(&mut buf).unwrap();

    let mut ports = Vec::new();
    for ip in [forged_ip, real_ip] {
        let l = TcpListener::bind((ip, 0)).unwrap();
        ports.push(l.local_addr().unwrap().port());
        TcpStream::connect(l.local_addr().unwrap()).unwrap();
    }
    let conn = |port: u16| agent.wait_for("connect", move |e| is("connect", me)(e) && e["data"]["dst"]["port"] == port);
    assert_eq!(conn(ports[0])["data"]["dst"]["hostname"], "?", "the forged answer named {forged_ip}");
    assert_eq!(conn(ports[1])["data"]["dst"]["hostname"], NAME, "the real answer names {real_ip}");
    let (_, events) = agent.stop();
    let port = victim.local_addr().unwrap().port();
    let answers = events.iter().filter(|e| is("dns_query", me)(e) && e["data"]["src"]["port"] == port).count();
    assert_eq!(answers, 2, "both answers are still reported as dns_query");
}
