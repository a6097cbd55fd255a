//! The fake internet on its own, as the lab network uses it: set up, used
//! by ordinary tools, torn down, without a detonation.

mod common;

use std::process::Command;

use common::*;
use ioclab_sandbox::detonation::{DnsRecord, DnsRecordData};
use ioclab_sandbox::fakenet::{FakeNet, FakeNetConfig};

fn run_inside(net: &FakeNet, program: &str, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(program);
    cmd.args(args);
    net.netns().command(&mut cmd);
    let out = cmd.output().unwrap_or_else(|e| panic!("{program}: {e}"));
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

#[test]
fn the_lab_network_comes_up_answers_and_goes_away() {
    if !can_isolate() {
        return;
    }
    let records = vec![
        DnsRecord { name: "why.kunai.rocks".into(), data: DnsRecordData::CNAME("kunai-project.github.io".into()) },
        DnsRecord { name: "kunai-project.github.io".into(), data: DnsRecordData::A([127, 0, 66, 80].into()) },
    ];
    let net = FakeNet::start(FakeNetConfig { records, ..Default::default() }).expect("fake internet");
    let ino = ns_inode(net.netns().fd());

    // the blog's experiment, offline: a public resolver answers with the scenario's records
    let (ok, out) = run_inside(&net, "dig", &["+short", "+time=3", "+tries=1", "@1.1.1.1", "why.kunai.rocks"]);
    assert!(ok, "{out}");
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["kunai-project.github.io.", "127.0.66.80"]);

    // over TCP too, and every other name gets the sink
    let (ok, out) =
        run_inside(&net, "dig", &["+short", "+tcp", "+time=3", "+tries=1", "@9.9.9.9", "evil.example", "AAAA"]);
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "2001:db8::1");

    // only loopback; every address is local, so nothing has a way out
    let (_, links) = run_inside(&net, "ip", &["-o", "link"]);
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains(": lo:"), "{links}");
    let (_, route) = run_inside(&net, "ip", &["route", "get", "8.8.8.8"]);
    assert!(route.starts_with("local 8.8.8.8 dev lo"), "{route}");

    // a host listener is out of reach: 127.0.0.1 inside is the namespace's own
    let host = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    host.set_nonblocking(true).unwrap();
    let port = host.local_addr().unwrap().port().to_string();
    let url = format!("http://127.0.0.1:{port}/");
    let (ok, _) = run_inside(&net, "curl", &["-s", "-m", "5", &url]);
    assert!(!ok, "nothing listens on that port inside");
    assert!(matches!(host.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock));

    // the HTTP sink answers and records, TLS gives its server name
    let (ok, page) = run_inside(&net, "curl", &["-s", "-m", "5", "-A", "lab/1.0", "http://why.kunai.rocks/index.html"]);
    assert!(ok && page.contains("ioclab sink"), "{page}");
    let _ = run_inside(&net, "curl", &["-s", "-k", "-m", "5", "https://secret.example/"]);

    let log = net.stop();
    let get = log.http.iter().find(|h| h.host == "why.kunai.rocks").expect("HTTP logged");
    assert_eq!((get.path.as_str(), get.user_agent.as_deref()), ("/index.html", Some("lab/1.0")));
    assert_eq!(get.dst.to_string(), "127.0.66.80:80");
    assert!(log.tls.iter().any(|t| t.sni.as_deref() == Some("secret.example")), "{:?}", log.tls);
    assert!(log.dead_hosts.iter().any(|a| a.port().to_string() == port), "{:?}", log.dead_hosts);
    assert!(log.dns.iter().any(|q| q.name == "why.kunai.rocks"));

    // torn down: nothing holds the namespace any more
    assert!(netns_in_use(ino).is_empty(), "{:?}", netns_in_use(ino));
}
