//! Detonation -> Report: the task's Kunai lines become processes, calls,
//! the process tree and the summary; the fake internet's log becomes
//! `network`; the signatures run over both and give the score.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ioclab_agent::events::written::WrittenEvent;
use ioclab_agent::events::{EventData, EventKind};
use serde_json::Value;

use super::behavior::{Behavior, Call, Process, ProcessNode, Summary};
use super::network::{DeadHost, Dns, DnsAnswer, DomainIp, Flow, Http, NetHost, Network, Tls};
use super::signature::{Mark, Signature, Ttp};
use super::{Debug, Dropped, FileInfo, Info, Machine, Report, Target, CUCKOO_VERSION};
use crate::detonation::{self, Detonation, FileFacts, Job};
use crate::signatures::{self, Evidence, Hit, TaskEvent};

/// Cap on the marks of one signature (Cuckoo caps them too; `markcount` keeps the total).
const MAX_MARKS: usize = 50;

/// The report of `det`, the detonation of `job`.
pub fn build(job: &Job, det: &Detonation) -> Report {
    let mut errors = det.errors.clone();
    let events = read_events(&det.events, &mut errors);
    let behavior = behavior(&events, &det.network);
    let network = network(&det.network, &events);
    let sample_name = match &job.target {
        detonation::Target::File { name, .. } => Some(name.as_str()),
        detonation::Target::Url(_) => None,
    };
    let evidence = Evidence { events: &events, network: &det.network, sample_name };
    let signatures = signatures(&evidence, &behavior);
    let score = Report::cuckoo_score(&signatures);
    Report {
        info: Info {
            id: det.task_id,
            started: det.started,
            ended: det.ended,
            duration: (det.ended - det.started).max(0.0).round() as u64,
            category: category(job).into(),
            package: det.package.clone(),
            options: options(job),
            platform: "linux".into(),
            version: CUCKOO_VERSION.into(),
            score,
            machine: Machine {
                name: "ioclab".into(),
                label: "namespaces".into(),
                manager: "namespaces".into(),
                started_on: datetime(det.started),
                shutdown_on: datetime(det.ended),
            },
            timed_out: det.timed_out,
            exit_code: det.exit_code,
        },
        target: target(job, det.sample.as_ref()),
        behavior,
        network,
        dropped: det
            .dropped
            .iter()
            .map(|d| Dropped {
                file: file_info(signatures::basename(&d.guest_path), &d.stored.to_string_lossy(), &d.facts),
                filepath: d.guest_path.clone(),
                pids: d.pids.clone(),
                truncated: d.truncated,
            })
            .collect(),
        signatures,
        debug: Debug { errors: with_outcome(errors, det, job) },
        malscore: None,
        misp: Vec::new(),
        misp_lookup_error: None,
        misp_error: None,
    }
}

fn category(job: &Job) -> &'static str {
    match job.target {
        detonation::Target::File { .. } => "file",
        detonation::Target::Url(_) => "url",
    }
}

/// `info.options`: the task's options, plus `route=none` and who the sample ran as.
fn options(job: &Job) -> String {
    let mut opts = job.options.clone();
    opts.insert("user".into(), if job.as_root { "root" } else { "sandbox" }.into());
    opts.insert("enforce_timeout".into(), u8::from(job.enforce_timeout).to_string());
    opts.into_iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

fn with_outcome(mut errors: Vec<String>, det: &Detonation, job: &Job) -> Vec<String> {
    if det.timed_out && !job.enforce_timeout {
        errors.push(format!("the analysis hit the {} s timeout: the task's processes were killed", job.timeout_s));
    }
    errors
}

/// `YYYY-MM-DD HH:MM:SS`, as Cuckoo writes machine times.
fn datetime(epoch: f64) -> String {
    let t = ioclab_agent::events::time::UtcTime((epoch * 1e9) as i128).to_string();
    t[..19].replacen('T', " ", 1)
}

fn file_info(name: &str, path: &str, f: &FileFacts) -> FileInfo {
    FileInfo {
        name: name.to_string(),
        path: path.to_string(),
        size: f.size,
        md5: Some(f.md5),
        sha1: Some(f.sha1),
        sha256: Some(f.sha256),
        sha512: Some(f.sha512),
        ssdeep: f.ssdeep.clone().unwrap_or_default(),
        kind: f.kind.clone(),
    }
}

fn target(job: &Job, sample: Option<&FileFacts>) -> Target {
    match (&job.target, sample) {
        (detonation::Target::File { name, .. }, Some(f)) => {
            Target { category: "file".into(), file: Some(file_info(name, "binary", f)), url: None }
        }
        (detonation::Target::File { name, .. }, None) => Target {
            category: "file".into(),
            file: Some(FileInfo { name: name.clone(), path: "binary".into(), ..Default::default() }),
            url: None,
        },
        (detonation::Target::Url(url), _) => Target { category: "url".into(), file: None, url: Some(url.clone()) },
    }
}

/// Parses the task's lines; a bad line is an error in the report, not a failed task.
fn read_events(lines: &[String], errors: &mut Vec<String>) -> Vec<TaskEvent> {
    let mut out = Vec::with_capacity(lines.len());
    let mut bad = 0usize;
    for (n, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match WrittenEvent::parse(line) {
            Ok(ev) => {
                // the sensor's own events are not the sample's behaviour
                if ev.data.kind().is_agent_event() {
                    continue;
                }
                out.push(TaskEvent {
                    index: out.len(),
                    pid: ev.task.tgid.max(0) as u32,
                    ppid: ev.parent_task.tgid.max(0) as u32,
                    comm: ev.task.name,
                    time: ev.utc_time.epoch_secs(),
                    data: ev.data,
                    uuid: ev.uuid.to_string(),
                })
            }
            Err(e) => {
                bad += 1;
                if bad <= 10 {
                    errors.push(format!("kunai.jsonl line {}: {e}", n + 1));
                }
            }
        }
    }
    if bad > 10 {
        errors.push(format!("kunai.jsonl: {} more bad lines", bad - 10));
    }
    out
}

fn call_category(kind: EventKind) -> &'static str {
    use EventKind as K;
    match kind {
        K::Execve | K::ExecveScript | K::Exit | K::ExitGroup | K::Clone | K::Prctl | K::Kill | K::Ptrace => "process",
        K::Connect | K::DnsQuery | K::SendData | K::BpfSocketFilter => "network",
        K::Read
        | K::ReadConfig
        | K::Write
        | K::WriteConfig
        | K::WriteClose
        | K::FileCreate
        | K::FileRename
        | K::FileUnlink
        | K::FileScan => "file",
        K::MmapExec | K::MprotectExec => "memory",
        _ => "system",
    }
}

fn call_status(data: &EventData) -> bool {
    match data {
        EventData::Connect(d) => d.connected,
        EventData::FileUnlink(d) => d.success,
        EventData::Prctl(d) => d.success,
        EventData::InitModule(d) => d.loaded,
        EventData::BpfProgLoad(d) => d.loaded,
        EventData::BpfSocketFilter(d) => d.attached,
        _ => true,
    }
}

/// The event's `data` as the call's arguments (ancestors dropped: the tree says it).
fn call_of(e: &TaskEvent) -> Call {
    let mut arguments: BTreeMap<String, Value> = match serde_json::to_value(&e.data) {
        Ok(Value::Object(map)) => map.into_iter().collect(),
        _ => BTreeMap::new(),
    };
    arguments.remove("ancestors");
    Call {
        category: call_category(e.data.kind()).into(),
        api: e.data.kind().name().into(),
        time: e.time,
        status: call_status(&e.data),
        arguments,
        uuid: e.uuid.clone(),
    }
}

fn command_line_of(data: &EventData) -> Option<&str> {
    match data {
        EventData::Execve(d) => Some(&d.command_line),
        EventData::ExecveScript(d) => Some(&d.command_line),
        EventData::Clone(d) => Some(&d.command_line),
        _ => None,
    }
}

fn behavior(events: &[TaskEvent], net: &detonation::NetworkLog) -> Behavior {
    let mut order: Vec<u32> = Vec::new();
    let mut procs: HashMap<u32, Process> = HashMap::new();
    for e in events {
        let p = procs.entry(e.pid).or_insert_with(|| {
            order.push(e.pid);
            Process {
                pid: e.pid,
                ppid: e.ppid,
                process_name: e.comm.clone(),
                first_seen: e.time,
                track: true,
                ..Default::default()
            }
        });
        if let Some(cmd) = command_line_of(&e.data) {
            p.command_line = cmd.to_string();
        }
        if let Some(exe) = signatures::executed_path(&e.data) {
            p.process_path = exe.to_string();
            p.process_name = e.comm.clone();
        } else if let EventData::Clone(d) = &e.data {
            p.process_path = d.exe.path.to_string();
        }
        p.calls.push(call_of(e));
    }
    let processes: Vec<Process> = order.iter().filter_map(|pid| procs.remove(pid)).collect();
    let processtree = tree(&processes);
    let summary = summary(events, net);
    Behavior { processes, processtree, summary }
}

fn tree(processes: &[Process]) -> Vec<ProcessNode> {
    let pids: BTreeSet<u32> = processes.iter().map(|p| p.pid).collect();
    let mut children: HashMap<u32, Vec<&Process>> = HashMap::new();
    for p in processes {
        children.entry(p.ppid).or_default().push(p);
    }
    fn node(p: &Process, children: &HashMap<u32, Vec<&Process>>, depth: usize) -> ProcessNode {
        ProcessNode {
            pid: p.pid,
            ppid: p.ppid,
            process_name: p.process_name.clone(),
            command_line: p.command_line.clone(),
            first_seen: p.first_seen,
            track: p.track,
            // a pid reused as its own ancestor cannot loop: the depth is bounded
            children: if depth > 64 {
                Vec::new()
            } else {
                children
                    .get(&p.pid)
                    .into_iter()
                    .flatten()
                    .filter(|c| c.pid != p.pid)
                    .map(|c| node(c, children, depth + 1))
                    .collect()
            },
        }
    }
    processes.iter().filter(|p| !pids.contains(&p.ppid) || p.ppid == p.pid).map(|p| node(p, &children, 0)).collect()
}

fn push_unique(list: &mut Vec<String>, value: &str) {
    if !value.is_empty() && !list.iter().any(|v| v == value) {
        list.push(value.to_string());
    }
}

fn http_url(h: &detonation::HttpRequest) -> String {
    let scheme = if h.dst.port() == 443 || h.dst.port() == 8443 { "https" } else { "http" };
    let default = matches!((scheme, h.dst.port()), ("http", 80) | ("https", 443));
    let host = if h.host.is_empty() { h.dst.ip().to_string() } else { h.host.clone() };
    let authority = if default || host.contains(':') { host } else { format!("{host}:{}", h.dst.port()) };
    format!("{scheme}://{authority}{}", h.path)
}

fn summary(events: &[TaskEvent], net: &detonation::NetworkLog) -> Summary {
    let mut s = Summary::default();
    // which process sent each HTTP request: its local port, as the connect event saw it
    let mut port_owner: HashMap<u16, u32> = HashMap::new();
    let mut writers: BTreeSet<u32> = BTreeSet::new();
    for e in events {
        match &e.data {
            EventData::FileCreate(d) => push_unique(&mut s.file_created, &d.path),
            EventData::Write(d) | EventData::WriteConfig(d) | EventData::WriteClose(d) => {
                push_unique(&mut s.file_written, &d.path);
                writers.insert(e.pid);
            }
            EventData::ReadConfig(d) | EventData::Read(d) => push_unique(&mut s.file_read, &d.path),
            EventData::FileUnlink(d) if d.success => push_unique(&mut s.file_deleted, &d.path),
            EventData::FileRename(d) => {
                let m = super::behavior::Moved { src: d.old.to_string(), dst: d.new.to_string() };
                if !s.file_moved.contains(&m) {
                    s.file_moved.push(m);
                }
            }
            EventData::Execve(d) => push_unique(&mut s.command_line, &d.command_line),
            EventData::ExecveScript(d) => push_unique(&mut s.command_line, &d.command_line),
            EventData::DnsQuery(d) => push_unique(&mut s.resolves_host, &d.query),
            EventData::Connect(d) => {
                push_unique(&mut s.connects_ip, &d.dst.ip);
                if let Some(h) =
                    d.dst.hostname.as_deref().filter(|h| *h != "?" && h.parse::<std::net::IpAddr>().is_err())
                {
                    push_unique(&mut s.connects_host, h);
                }
                port_owner.insert(d.src.port, e.pid);
            }
            _ => {}
        }
        if matches!(e.data, EventData::FileCreate(_)) {
            writers.insert(e.pid);
        }
    }
    for q in &net.dns {
        push_unique(&mut s.resolves_host, &q.name);
    }
    for f in net.tcp.iter().chain(&net.udp) {
        push_unique(&mut s.connects_ip, &f.dst.ip().to_string());
    }
    for h in &net.http {
        let url = http_url(h);
        push_unique(&mut s.fetches_url, &url);
        if !h.host.is_empty() && h.host.parse::<std::net::IpAddr>().is_err() {
            push_unique(&mut s.connects_host, h.host.split(':').next().unwrap_or_default());
        }
        // a GET whose process also wrote a file: saved the response
        if h.method == "GET" && port_owner.get(&h.src.port()).is_some_and(|pid| writers.contains(pid)) {
            push_unique(&mut s.downloads_file, &url);
        }
    }
    s
}

fn network(net: &detonation::NetworkLog, events: &[TaskEvent]) -> Network {
    let mut n = Network::default();
    let mut hosts: BTreeSet<String> = BTreeSet::new();
    let mut domains: Vec<DomainIp> = Vec::new();
    for q in &net.dns {
        n.dns.push(Dns {
            request: q.name.clone(),
            kind: q.qtype.clone(),
            answers: q
                .answers
                .iter()
                .map(|(kind, data)| DnsAnswer { kind: kind.clone(), data: data.clone() })
                .collect(),
            time: q.time,
        });
        let ip = q.answers.iter().find(|(k, _)| k == "A" || k == "AAAA").map(|(_, d)| d.clone()).unwrap_or_default();
        match domains.iter_mut().find(|d| d.domain == q.name) {
            Some(d) if d.ip.is_empty() => d.ip = ip,
            Some(_) => {}
            None => domains.push(DomainIp { domain: q.name.clone(), ip }),
        }
    }
    // HTTP requests, grouped like Cuckoo's `count`
    for h in &net.http {
        let url = http_url(h);
        let ua = h.user_agent.clone().unwrap_or_default();
        if let Some(prev) = n.http.iter_mut().find(|p| p.uri == url && p.method == h.method && p.user_agent == ua) {
            prev.count += 1;
            continue;
        }
        n.http.push(Http {
            host: if h.host.is_empty() { h.dst.ip().to_string() } else { h.host.clone() },
            port: h.dst.port().into(),
            uri: url,
            path: h.path.clone(),
            method: h.method.clone(),
            user_agent: ua,
            version: "1.1".into(),
            count: 1,
            body: String::new(),
            body_size: h.body_size,
            body_sha256: h.body_sha256.map(|s| s.to_string()).unwrap_or_default(),
            time: h.time,
        });
        hosts.insert(h.dst.ip().to_string());
    }
    let flow = |f: &detonation::Flow| Flow {
        src: f.src.ip().to_string(),
        sport: f.src.port().into(),
        dst: f.dst.ip().to_string(),
        dport: f.dst.port().into(),
        time: f.time,
        bytes: f.bytes,
    };
    for t in &net.tls {
        let hello = detonation::Flow { time: t.time, src: t.src, dst: t.dst, bytes: 0, head: Vec::new() };
        n.tls.push(Tls { flow: flow(&hello), sni: t.sni.clone().unwrap_or_default() });
    }
    n.tcp = net.tcp.iter().map(flow).collect();
    n.udp = net.udp.iter().map(flow).collect();
    for f in net.tcp.iter().chain(&net.udp) {
        hosts.insert(f.dst.ip().to_string());
    }
    let mut dead: BTreeSet<DeadHost> = BTreeSet::new();
    for d in &net.dead_hosts {
        dead.insert(DeadHost { ip: d.ip().to_string(), port: d.port() });
        hosts.insert(d.ip().to_string());
    }
    n.dead_hosts = dead.into_iter().collect();
    // connects the sensor saw that no sink logged (e.g. refused before a sink answered)
    for e in events {
        if let EventData::Connect(d) = &e.data {
            if d.dst.port != 53 && d.dst.ip.parse::<std::net::IpAddr>().is_ok_and(|ip| !ip.is_loopback()) {
                hosts.insert(d.dst.ip.to_string());
            }
        }
    }
    n.hosts = hosts.into_iter().map(|ip| NetHost { ip, hostname: None }).collect();
    n.domains = domains;
    n
}

fn signatures(evidence: &Evidence<'_>, behavior: &Behavior) -> Vec<Signature> {
    // where each event sits among its process's calls
    let mut position: Vec<(u32, usize)> = Vec::with_capacity(evidence.events.len());
    let mut seen: HashMap<u32, usize> = HashMap::new();
    for e in evidence.events {
        let cid = seen.entry(e.pid).or_insert(0);
        position.push((e.pid, *cid));
        *cid += 1;
    }
    let call = |pid: u32, cid: usize| -> Option<&Call> {
        behavior.processes.iter().find(|p| p.pid == pid).and_then(|p| p.calls.get(cid))
    };
    signatures::run(evidence)
        .into_iter()
        .map(|(meta, hits)| {
            let markcount = hits.len() as u64;
            let marks = hits
                .into_iter()
                .take(MAX_MARKS)
                .filter_map(|h| match h {
                    Hit::Event(i) => {
                        let (pid, cid) = *position.get(i)?;
                        Some(Mark::Call { pid, cid, call: call(pid, cid)?.clone() })
                    }
                    Hit::Ioc { category, ioc, description } => {
                        Some(Mark::Ioc { category: category.into(), ioc, description })
                    }
                })
                .collect();
            Signature {
                name: meta.name.into(),
                description: meta.description.into(),
                severity: meta.severity,
                families: Vec::new(),
                ttp: meta
                    .ttp
                    .iter()
                    .map(|(id, short, long)| (id.to_string(), Ttp { short: short.to_string(), long: long.to_string() }))
                    .collect(),
                marks,
                markcount,
                references: Vec::new(),
            }
        })
        .collect()
}
