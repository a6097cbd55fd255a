//! A sandbox report as the pages show it (target, signatures with their
//! marks, dropped files, network): the run's report page and the sandbox's
//! task page share it, and the template `report_body.html`, which draws the
//! process tree and the contacts from `<base>/tree.svg` and `<base>/contacts.svg`.

use std::path::Path;

use ioclab_sandbox::report::Report;
use serde::Serialize;

/// A signature as the report page lists it.
#[derive(Debug, Clone, Serialize)]
pub struct SignatureRow {
    /// Its name.
    pub name: String,
    /// Its severity (1-5).
    pub severity: u32,
    /// What it means.
    pub description: String,
    /// What it matched, as JSON.
    pub marks: Vec<String>,
}

/// A dropped file.
#[derive(Debug, Clone, Serialize)]
pub struct DroppedRow {
    /// Where the sample wrote it.
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// Its SHA-256.
    pub sha256: String,
}

/// A network contact the report lists: DNS queries and HTTP requests.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkRow {
    /// `dns` or `http`.
    pub kind: &'static str,
    /// The name asked, or the URL.
    pub what: String,
    /// The answers, or the method.
    pub detail: String,
}

/// The report's parts the pages show.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReportView {
    /// The target: its file name or URL.
    pub target: String,
    /// The sample's SHA-256 (empty for URLs).
    pub sha256: String,
    /// Cuckoo's score.
    pub score: f64,
    /// Signatures, as the report orders them.
    pub signatures: Vec<SignatureRow>,
    /// Dropped files.
    pub dropped: Vec<DroppedRow>,
    /// Hosts contacted (`ip (name)`).
    pub hosts: Vec<String>,
    /// DNS queries and HTTP requests.
    pub network: Vec<NetworkRow>,
}

/// Reads the report at `path`, or says why not (the path, and where the JSON is wrong).
pub fn read_report(path: &Path) -> Result<Report, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("no sandbox report yet ({}: {e})", path.display()))?;
    serde_json::from_str(&text)
        .map_err(|e| format!("{}: line {}, column {}: {e}", path.display(), e.line(), e.column()))
}

impl ReportView {
    /// What the pages show of `r`.
    pub fn of(r: &Report) -> ReportView {
        let mut v = ReportView { score: r.info.score, ..ReportView::default() };
        if let Some(f) = &r.target.file {
            v.target = f.name.clone();
            v.sha256 = f.sha256.as_ref().map(|h| h.to_string()).unwrap_or_default();
        } else if let Some(u) = &r.target.url {
            v.target = u.clone();
        }
        v.signatures = r
            .signatures
            .iter()
            .map(|s| SignatureRow {
                name: s.name.clone(),
                severity: s.severity,
                description: s.description.clone(),
                marks: s.marks.iter().map(|m| serde_json::to_string(m).unwrap_or_default()).collect(),
            })
            .collect();
        v.dropped = r
            .dropped
            .iter()
            .map(|d| DroppedRow {
                path: d.filepath.clone(),
                size: d.file.size,
                sha256: d.file.sha256.as_ref().map(|h| h.to_string()).unwrap_or_default(),
            })
            .collect();
        v.hosts = r
            .network
            .hosts
            .iter()
            .map(|h| match &h.hostname {
                Some(n) if !n.is_empty() => format!("{} ({n})", h.ip),
                _ => h.ip.clone(),
            })
            .collect();
        let dns = r.network.dns.iter().map(|d| NetworkRow {
            kind: "dns",
            what: d.request.clone(),
            detail: d.answers.iter().map(|a| a.data.clone()).collect::<Vec<_>>().join(", "),
        });
        let http = r.network.http.iter().map(|h| NetworkRow {
            kind: "http",
            what: if h.uri.is_empty() { format!("{}{}", h.host, h.path) } else { h.uri.clone() },
            detail: h.method.clone(),
        });
        v.network = dns.chain(http).collect();
        v
    }
}
