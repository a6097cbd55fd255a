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
