//! The pictures of the pages, drawn on the server as SVG: a sandbox
//! report's process tree, its contacts (processes → hosts) and a run's
//! flow timeline. Every text goes through [`esc`]; the pages serve them as
//! `image/svg+xml` behind `<img>`, where a browser runs no script anyway.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use ioclab_sandbox::report::{Process, Report};

use crate::pipeline::{StageState, StageView};

/// Escapes text for XML (element content and attribute values).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // control characters are not XML: shown as a replacement
            c if (c as u32) < 0x20 && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// Shortens `s` to `max` characters (with an ellipsis), for labels.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

const FONT: &str = "font-family=\"DejaVu Sans, sans-serif\" font-size=\"16\"";
const ROW: u32 = 34;
const INDENT: u32 = 28;

fn open(width: u32, height: u32, title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" role=\"img\" {FONT}><title>{}</title>\
         <rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>",
        esc(title)
    )
}

/// One edge of a picture: from node index to node index.
pub type Edge = (usize, usize);

/// A process tree laid out as rows: each process under its parent, indented by depth.
#[derive(Debug, Clone, PartialEq)]
pub struct Tree {
    /// `(pid, label, depth)` in drawing order (depth first).
    pub nodes: Vec<(u32, String, u32)>,
    /// Parent → child, as indices into `nodes`.
    pub edges: Vec<Edge>,
}

/// The process tree of `processes` (roots: processes whose parent is not in the list).
pub fn tree_of(processes: &[Process]) -> Tree {
    let pids: BTreeSet<u32> = processes.iter().map(|p| p.pid).collect();
    let mut children: BTreeMap<u32, Vec<&Process>> = BTreeMap::new();
    let mut roots = Vec::new();
    for p in processes {
        if p.ppid != p.pid && pids.contains(&p.ppid) {
            children.entry(p.ppid).or_default().push(p);
        } else {
            roots.push(p);
        }
    }
    let mut tree = Tree { nodes: Vec::new(), edges: Vec::new() };
    let mut seen = BTreeSet::new();
    // explicit stack: a report with a pid cycle or a deep chain cannot overflow it
    let mut stack: Vec<(&Process, u32, Option<usize>)> = roots.into_iter().rev().map(|p| (p, 0, None)).collect();
    while let Some((p, depth, parent)) = stack.pop() {
        if !seen.insert(p.pid) {
            continue;
        }
        let idx = tree.nodes.len();
        let label = if p.command_line.is_empty() {
            format!("{} ({})", p.process_name, p.pid)
        } else {
            format!("{} ({}): {}", p.process_name, p.pid, p.command_line)
        };
        tree.nodes.push((p.pid, label, depth));
        if let Some(parent) = parent {
            tree.edges.push((parent, idx));
        }
        if let Some(kids) = children.get(&p.pid) {
            for k in kids.iter().rev() {
                stack.push((k, depth + 1, Some(idx)));
            }
        }
    }
    tree
}

/// The process tree of `report` as SVG.
pub fn process_tree(report: &Report) -> String {
    let tree = tree_of(&report.behavior.processes);
    let height = (tree.nodes.len().max(1) as u32) * ROW + 20;
    let mut s = open(1000, height, "Process tree");
    if tree.nodes.is_empty() {
        s.push_str("<text x=\"10\" y=\"30\">No process recorded.</text>");
    }
    for &(parent, child) in &tree.edges {
        let (_, _, pd) = tree.nodes[parent];
        let x = 18 + pd * INDENT;
        let y1 = 10 + parent as u32 * ROW + 26;
        let y2 = 10 + child as u32 * ROW + ROW / 2;
        let x2 = 10 + (pd + 1) * INDENT;
        let _ = write!(
            s,
            "<path class=\"edge\" d=\"M{x} {y1} V{y2} H{x2}\" fill=\"none\" stroke=\"#555\" stroke-width=\"2\"/>"
        );
    }
    for (i, (pid, label, depth)) in tree.nodes.iter().enumerate() {
        let x = 10 + depth * INDENT;
        let y = 10 + i as u32 * ROW;
        let _ = write!(
            s,
            "<g class=\"node\" data-pid=\"{pid}\"><rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"26\" rx=\"4\" \
             fill=\"#e8f0fe\" stroke=\"#0047ab\"/><text x=\"{tx}\" y=\"{ty}\">{}</text></g>",
            esc(&clip(label, 90)),
            w = 980 - x,
            tx = x + 6,
            ty = y + 19,
        );
    }
    s.push_str("</svg>");
    s
}

/// Who a report's processes talked to: process labels, host labels and process → host edges.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Contacts {
    /// Processes that made contact (`name (pid)`).
    pub processes: Vec<String>,
    /// Hosts contacted (`hostname ip:port`, or a DNS name asked).
    pub hosts: Vec<String>,
    /// Process index → host index.
    pub edges: Vec<Edge>,
}

fn host_label(call_api: &str, args: &BTreeMap<String, serde_json::Value>) -> Option<String> {
    let s = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).unwrap_or("").to_string();
    match call_api {
        "connect" | "send_data" => {
            let dst = args.get("dst")?;
            let ip = s(dst.get("ip"));
            let port = dst.get("port").and_then(|p| p.as_u64()).map(|p| format!(":{p}")).unwrap_or_default();
            let name = s(dst.get("hostname"));
            let addr = format!("{ip}{port}");
            Some(if name.is_empty() || name == "?" { addr } else { format!("{name} {addr}") })
        }
        "dns_query" => {
            let q = s(args.get("query"));
            (!q.is_empty()).then(|| format!("DNS {q}"))
        }
        _ => None,
    }
}

/// The contacts of `report`: each process's `connect`, `send_data` and `dns_query` calls.
pub fn contacts_of(report: &Report) -> Contacts {
    let mut c = Contacts::default();
    let mut hosts: BTreeMap<String, usize> = BTreeMap::new();
    let mut edges = BTreeSet::new();
    for p in &report.behavior.processes {
        let mut mine = Vec::new();
        for call in &p.calls {
            if let Some(h) = host_label(&call.api, &call.arguments) {
                let next = hosts.len();
                let hi = *hosts.entry(h.clone()).or_insert_with(|| {
                    c.hosts.push(h);
                    next
                });
                mine.push(hi);
            }
        }
        if !mine.is_empty() {
            let pi = c.processes.len();
            c.processes.push(format!("{} ({})", p.process_name, p.pid));
            edges.extend(mine.into_iter().map(|h| (pi, h)));
        }
    }
    c.edges = edges.into_iter().collect();
    c
}

/// The contacts of `report` as SVG: processes on the left, hosts on the right.
pub fn contacts(report: &Report) -> String {
    let c = contacts_of(report);
    let rows = c.processes.len().max(c.hosts.len()).max(1) as u32;
    let mut s = open(1000, rows * ROW + 20, "Network contacts: processes to hosts");
    if c.edges.is_empty() {
        s.push_str("<text x=\"10\" y=\"30\">No network contact recorded.</text>");
    }
    for &(p, h) in &c.edges {
        let _ = write!(
            s,
            "<line class=\"edge\" x1=\"330\" y1=\"{}\" x2=\"570\" y2=\"{}\" stroke=\"#b00020\" stroke-width=\"2\"/>",
            10 + p as u32 * ROW + 13,
            10 + h as u32 * ROW + 13
        );
    }
    for (i, p) in c.processes.iter().enumerate() {
        let y = 10 + i as u32 * ROW;
        let _ = write!(
            s,
            "<g class=\"process\"><rect x=\"10\" y=\"{y}\" width=\"320\" height=\"26\" rx=\"4\" fill=\"#e8f0fe\" \
             stroke=\"#0047ab\"/><text x=\"16\" y=\"{}\">{}</text></g>",
            y + 19,
            esc(&clip(p, 32))
        );
    }
    for (i, h) in c.hosts.iter().enumerate() {
        let y = 10 + i as u32 * ROW;
        let _ = write!(
            s,
            "<g class=\"host\"><rect x=\"570\" y=\"{y}\" width=\"420\" height=\"26\" rx=\"4\" fill=\"#fff3f3\" \
             stroke=\"#b00020\"/><text x=\"576\" y=\"{}\">{}</text></g>",
            y + 19,
            esc(&clip(h, 42))
        );
    }
    s.push_str("</svg>");
    s
}

fn colour(state: &StageState) -> &'static str {
    match state {
        StageState::Pending => "#ddd",
        StageState::Running => "#0047ab",
        StageState::Waiting => "#e0a000",
        StageState::Passed => "#0a6b2b",
        StageState::Failed => "#b00020",
        StageState::Skipped => "#999",
    }
}

/// The flow timeline of a run's stages as SVG: one bar per stage over the run's duration.
pub fn flow_timeline(stages: &[StageView]) -> String {
    let end = stages.iter().filter_map(|s| s.finished_ms.or(s.started_ms)).max().unwrap_or(0).max(1) as f64;
    let mut s = open(1000, stages.len() as u32 * ROW + 50, "Flow timeline of the run's stages");
    let scale = |ms: u64| 150.0 + (ms as f64 / end) * 820.0;
    for (i, st) in stages.iter().enumerate() {
        let y = 10 + i as u32 * ROW;
        let _ = write!(s, "<text x=\"10\" y=\"{}\">{}</text>", y + 19, esc(&st.stage));
        if let Some(start) = st.started_ms {
            let x1 = scale(start);
            let x2 = scale(st.finished_ms.unwrap_or(end as u64)).max(x1 + 4.0);
            let _ = write!(
                s,
                "<rect class=\"bar {}\" x=\"{x1:.1}\" y=\"{y}\" width=\"{:.1}\" height=\"26\" fill=\"{}\"><title>{}</title></rect>",
                st.state.class(),
                x2 - x1,
                colour(&st.state),
                esc(&format!("{}: {}", st.stage, st.state.class()))
            );
        }
    }
    let _ = write!(
        s,
        "<text x=\"150\" y=\"{y}\">0 s</text><text x=\"970\" y=\"{y}\" text-anchor=\"end\">{:.1} s</text>",
        end / 1000.0,
        y = stages.len() as u32 * ROW + 40
    );
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use ioclab_sandbox::report::Call;
    use serde_json::json;

    fn proc(pid: u32, ppid: u32, name: &str, cmd: &str) -> Process {
        Process { pid, ppid, process_name: name.into(), command_line: cmd.into(), ..Process::default() }
    }

    fn call(api: &str, args: serde_json::Value) -> Call {
        let arguments = args.as_object().unwrap().clone().into_iter().collect();
        Call { api: api.into(), arguments, ..Call::default() }
    }

    #[test]
    fn the_tree_of_a_known_report_has_its_nodes_and_edges() {
        // sh(10) -> curl(11), sh(10) -> dig(12) -> helper(13); orphan(99) has an unknown parent
        let procs = vec![
            proc(10, 1, "sh", "sh sample.sh"),
            proc(11, 10, "curl", ""),
            proc(12, 10, "dig", "dig why.kunai.rocks"),
            proc(13, 12, "helper", ""),
            proc(99, 50, "orphan", ""),
        ];
        let t = tree_of(&procs);
        let pids: Vec<(u32, u32)> = t.nodes.iter().map(|(p, _, d)| (*p, *d)).collect();
        assert_eq!(pids, vec![(10, 0), (11, 1), (12, 1), (13, 2), (99, 0)]);
        let edges: Vec<(u32, u32)> = t.edges.iter().map(|&(a, b)| (t.nodes[a].0, t.nodes[b].0)).collect();
        assert_eq!(edges, vec![(10, 11), (10, 12), (12, 13)]);
        assert_eq!(t.nodes[2].1, "dig (12): dig why.kunai.rocks");
        let report = Report {
            behavior: ioclab_sandbox::report::Behavior { processes: procs, ..Default::default() },
            ..Default::default()
        };
        let svg = process_tree(&report);
        assert_eq!(svg.matches("class=\"node\"").count(), 5);
        assert_eq!(svg.matches("class=\"edge\"").count(), 3);
    }

    #[test]
    fn a_pid_cycle_draws_each_process_once() {
        let t = tree_of(&[proc(1, 2, "a", ""), proc(2, 1, "b", "")]);
        assert!(t.nodes.len() <= 2);
        // both have a parent in the list: neither is a root, so nothing loops forever
        let t = tree_of(&[proc(5, 5, "self", "")]);
        assert_eq!(t.nodes.len(), 1);
    }

    #[test]
    fn contacts_link_each_process_to_the_hosts_it_reached() {
        let mut sh = proc(10, 1, "sh", "");
        sh.calls = vec![call("read", json!({"path": "/etc/hosts"}))];
        let mut dig = proc(12, 10, "dig", "");
        dig.calls = vec![
            call("dns_query", json!({"query": "why.kunai.rocks"})),
            call("connect", json!({"dst": {"hostname": "why.kunai.rocks", "ip": "10.0.0.1", "port": 443}})),
            call("send_data", json!({"dst": {"hostname": "why.kunai.rocks", "ip": "10.0.0.1", "port": 443}})),
        ];
        let report = Report {
            behavior: ioclab_sandbox::report::Behavior { processes: vec![sh, dig], ..Default::default() },
            ..Default::default()
        };
        let c = contacts_of(&report);
        assert_eq!(c.processes, vec!["dig (12)"]);
        assert_eq!(c.hosts, vec!["DNS why.kunai.rocks", "why.kunai.rocks 10.0.0.1:443"]);
        assert_eq!(c.edges, vec![(0, 0), (0, 1)]);
        assert_eq!(contacts(&report).matches("class=\"edge\"").count(), 2);
    }

    #[test]
    fn markup_in_a_label_is_text() {
        let report = Report {
            behavior: ioclab_sandbox::report::Behavior {
                processes: vec![proc(1, 0, "<b>x</b>", "sh -c '<script>alert(1)</script>'")],
                ..Default::default()
            },
            ..Default::default()
        };
        let svg = process_tree(&report);
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;"));
        assert!(!svg.contains("<b>"));
        assert_eq!(esc("a\u{1}&\"'"), "a\u{fffd}&amp;&quot;&#39;");
    }

    #[test]
    fn the_flow_timeline_draws_a_bar_per_started_stage() {
        let stages = vec![
            StageView::test("sandbox", StageState::Passed, Some(0), Some(500)),
            StageView::test("misp", StageState::Running, Some(500), None),
            StageView::test("publish", StageState::Pending, None, None),
        ];
        let svg = flow_timeline(&stages);
        assert_eq!(svg.matches("<rect class=\"bar").count(), 2);
        assert!(svg.contains("bar passed"));
        assert!(svg.contains("bar running"));
        assert!(svg.contains(">publish</text>"));
    }
}
