//! A report as one MISP event, built whole before anything is sent: Cuckoo's
//! reporting module (`mode` hashes/ipaddr/url, signatures as comments) plus
//! dropped files as `file` objects, ATT&CK galaxy tags and the sample as a
//! `malware-sample`. Every value goes through MISP's own normalisation
//! (`ioclab_intel::model::types`) and the filters (`ioc_blacklist`, the
//! safelist, the warninglists); what is left out is kept with the reason.
//!
//! Identifiers are derived, not random: the event's uuid from the sandbox's
//! name and the task id, each attribute's from the event and its value. So
//! re-reporting a task finds its event and its attributes again (an update,
//! never a second event), on the embedded store and on a real MISP alike.

use std::collections::BTreeSet;

use ioclab_intel::model::levels::{Analysis, Distribution, ThreatLevel};
use ioclab_intel::model::{date_of, host_of, now, types};
use ioclab_intel::warninglists::Warninglists;
use serde::Serialize;
use sha1::{Digest, Sha1};

use super::config::ReportingMisp;
use super::{safelist, zip};
use crate::report::{Dropped, Report, Signature};

/// Attributes and objects inherit the event's distribution (MISP's "5").
const INHERIT: &str = "5";
/// The namespace of ioclab's derived uuids (a fixed random uuid).
const NAMESPACE: &str = "6f1c1e9a-3b8e-4d55-9a57-0e6c2b1d8f42";
/// MISP's `file` object template (misp-objects `objects/file/definition.json`).
const FILE_TEMPLATE: (&str, &str) = ("688c46fb-5edb-40a3-8273-1af7923e2215", "25");
/// Marks quoted per signature comment (the count says how many there were).
const MARKS_SHOWN: usize = 10;
/// A mark of an unknown shape is quoted up to this many characters.
const OTHER_MARK_CHARS: usize = 200;

/// A tag on the event or an attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tag {
    /// Its name (`tlp:white`, `misp-galaxy:mitre-attack-pattern="Cron - T1053.003"`).
    pub name: String,
}

/// An attribute, at the event's top level or in an object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attribute {
    /// Derived from the event and the value (stable across re-reports).
    pub uuid: String,
    /// MISP type.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// MISP category.
    pub category: &'static str,
    /// The value, normalised as MISP stores it.
    pub value: String,
    /// The IDS flag: exported to detection tools.
    pub to_ids: bool,
    /// Where it comes from, for the analyst.
    pub comment: String,
    /// Always "inherit the event's".
    pub distribution: &'static str,
    /// Its relation inside an object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_relation: Option<&'static str>,
    /// Attachment bytes, base64 (`malware-sample`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Its tags.
    #[serde(rename = "Tag", skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
}

/// A MISP object (here: a dropped file).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Object {
    /// Derived from the event and the file's hash.
    pub uuid: String,
    /// Template name.
    pub name: &'static str,
    /// Template meta-category.
    #[serde(rename = "meta-category")]
    pub meta_category: &'static str,
    /// Template uuid.
    pub template_uuid: &'static str,
    /// Template version.
    pub template_version: &'static str,
    /// Where it comes from.
    pub comment: String,
    /// Always "inherit the event's".
    pub distribution: &'static str,
    /// Its attributes.
    #[serde(rename = "Attribute")]
    pub attributes: Vec<Attribute>,
}

/// The event, as `events/add` and `events/edit` take it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Derived from the sandbox's name and the task id.
    pub uuid: String,
    /// Title.
    pub info: String,
    /// The analysis' day (YYYY-MM-DD).
    pub date: String,
    /// Who may see it.
    pub distribution: Distribution,
    /// How bad it is.
    pub threat_level_id: ThreatLevel,
    /// How far its analysis went.
    pub analysis: Analysis,
    /// Sent unpublished; publishing is a separate, later call.
    pub published: bool,
    /// The configured tags and the ATT&CK techniques of the signatures.
    #[serde(rename = "Tag")]
    pub tags: Vec<Tag>,
    /// Top-level attributes.
    #[serde(rename = "Attribute")]
    pub attributes: Vec<Attribute>,
    /// Objects.
    #[serde(rename = "Object")]
    pub objects: Vec<Object>,
}

impl Event {
    /// The request body: `{"Event": {...}}`.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "Event": self })
    }

    /// Every attribute, objects' included.
    pub fn all_attributes(&self) -> impl Iterator<Item = &Attribute> {
        self.attributes.iter().chain(self.objects.iter().flat_map(|o| o.attributes.iter()))
    }
}

/// Why a value was left out of the event.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// On `ioc_blacklist`.
    Blacklist,
    /// On the built-in safelist.
    Safelist(&'static str),
    /// On MISP warninglists (their names).
    Warninglist(Vec<String>),
    /// MISP would refuse it.
    Invalid(String),
    /// The sample could not be attached.
    NoSample(String),
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Blacklist => f.write_str("on ioc_blacklist"),
            Reason::Safelist(why) => write!(f, "on the safelist ({why})"),
            Reason::Warninglist(names) => write!(f, "on warninglist {}", names.join("; ")),
            Reason::Invalid(why) => write!(f, "not valid for MISP: {why}"),
            Reason::NoSample(why) => write!(f, "sample not attached: {why}"),
        }
    }
}

/// A value left out, with its type and why.
#[derive(Debug, Clone, PartialEq)]
pub struct LeftOut {
    /// The MISP type it would have had.
    pub kind: &'static str,
    /// The value.
    pub value: String,
    /// Why.
    pub reason: Reason,
    /// What happened instead, when something did (`the domain is sent alone`).
    pub note: Option<String>,
}

impl std::fmt::Display for LeftOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.kind, self.value, self.reason)?;
        if let Some(n) = &self.note {
            write!(f, " ({n})")?;
        }
        Ok(())
    }
}

/// The event and what was left out of it.
#[derive(Debug, Clone)]
pub struct Built {
    /// The event to send.
    pub event: Event,
    /// Values not in it, in report order.
    pub left_out: Vec<LeftOut>,
}

/// The report scores below `min_malscore`: no event.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("not sent to MISP: score {score} is below min_malscore {min}")]
pub struct BelowMinScore {
    /// The report's score (CAPE's malscore when present, else Cuckoo's score).
    pub score: f64,
    /// The configured minimum.
    pub min: f64,
}

/// The name identifying this sandbox in event uuids: `sandbox_name`, else the hostname.
pub fn sandbox_identity(cfg: &ReportingMisp) -> String {
    let name = cfg.sandbox_name.trim();
    if !name.is_empty() {
        return name.to_string();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "ioclab".into())
}

/// A name-based (version 5) uuid of `name` in the uuid `namespace`.
pub fn derived_uuid(namespace: &str, name: &str) -> String {
    let ns: Vec<u8> = namespace
        .bytes()
        .filter(u8::is_ascii_hexdigit)
        .collect::<Vec<_>>()
        .chunks(2)
        .filter_map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
        .collect();
    let digest = Sha1::new().chain_update(&ns).chain_update(name.as_bytes()).finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// The uuid of the event of task `task_id` of the sandbox `identity`.
pub fn event_uuid(identity: &str, task_id: u64) -> String {
    derived_uuid(NAMESPACE, &format!("cuckoo-task/{identity}/{task_id}"))
}

/// The ATT&CK galaxy tag MISP attaches for technique `id` named `name`
/// (its cluster values read `Name - Txxxx`).
pub fn attack_tag(id: &str, name: &str) -> String {
    let name = name.trim();
    if name.is_empty() {
        format!("misp-galaxy:mitre-attack-pattern=\"{id}\"")
    } else {
        format!("misp-galaxy:mitre-attack-pattern=\"{name} - {id}\"")
    }
}

/// The filters every value passes, and the values left out.
struct Filter<'a> {
    cfg: &'a ReportingMisp,
    lists: &'a Warninglists,
    seen: BTreeSet<(&'static str, String)>,
    left_out: Vec<LeftOut>,
}

/// The parts of a value that name hosts (for the blacklist and the safelist).
fn host_parts(kind: &str, value: &str) -> Vec<String> {
    match kind {
        "url" => vec![host_of(value)],
        "domain" | "hostname" | "ip-dst" | "ip-src" => vec![value.to_string()],
        "domain|ip" => value.split('|').map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

impl Filter<'_> {
    /// The value as MISP stores it, or why it stays out.
    fn verdict(&self, kind: &'static str, raw: &str, to_ids: bool) -> Result<String, Reason> {
        let value = types::normalise(kind, raw).map_err(|e| Reason::Invalid(e.to_string()))?;
        let parts: Vec<&str> = if kind.contains('|') || kind == "malware-sample" {
            value.split('|').collect()
        } else {
            vec![value.as_str()]
        };
        let hosts = host_parts(kind, &value);
        let bl = &self.cfg.ioc_blacklist;
        if bl.contains(&value) || parts.iter().any(|p| bl.contains(p)) || hosts.iter().any(|h| bl.contains(h)) {
            return Err(Reason::Blacklist);
        }
        // an explicit allow list: the operator says this value is an indicator here
        let al = &self.cfg.allow;
        if al.contains(&value) || parts.iter().any(|p| al.contains(p)) || hosts.iter().any(|h| al.contains(h)) {
            return Ok(value);
        }
        if self.cfg.safelist {
            if let Some(why) = hosts.iter().find_map(|h| safelist::reason(h)) {
                return Err(Reason::Safelist(why));
            }
        }
        // MISP checks the IDS attributes only
        if self.cfg.warninglists && to_ids {
            let hits = self.lists.check_attribute(kind, &value);
            if !hits.is_empty() {
                let mut names: Vec<String> = hits.into_iter().map(|h| h.name).collect();
                names.dedup();
                return Err(Reason::Warninglist(names));
            }
        }
        Ok(value)
    }

    /// The value if it passes and is new; otherwise `None` (left out: recorded).
    fn admit(&mut self, kind: &'static str, raw: &str, to_ids: bool) -> Option<String> {
        match self.verdict(kind, raw, to_ids) {
            Ok(v) => self.seen.insert((kind, v.clone())).then_some(v),
            Err(reason) => {
                self.left_out.push(LeftOut { kind, value: raw.trim().to_string(), reason, note: None });
                None
            }
        }
    }
}

/// Builds the event of `report` under `cfg`; `sample` is the sample's bytes
/// (needed with `upload_sample`), `identity` the sandbox's name.
pub fn build(
    report: &Report,
    cfg: &ReportingMisp,
    lists: &Warninglists,
    sample: Option<&[u8]>,
    identity: &str,
) -> Result<Built, BelowMinScore> {
    let score = report.malscore.unwrap_or(report.info.score);
    if score < cfg.min_malscore {
        return Err(BelowMinScore { score, min: cfg.min_malscore });
    }
    let task = report.info.id;
    let uuid = event_uuid(identity, task);
    let mut b = Builder {
        uuid: uuid.clone(),
        filter: Filter { cfg, lists, seen: BTreeSet::new(), left_out: Vec::new() },
        attributes: Vec::new(),
    };
    if cfg.mode.hashes {
        b.sample_hashes(report);
    }
    if cfg.upload_sample {
        b.sample_file(report, sample);
    }
    if cfg.mode.ipaddr {
        b.addresses(report);
    }
    if cfg.mode.url {
        b.urls(report);
    }
    let objects = b.dropped(&report.dropped);
    let mut tags: Vec<Tag> = Vec::new();
    let mut tag = |name: String| {
        if !tags.iter().any(|t| t.name == name) {
            tags.push(Tag { name });
        }
    };
    for t in &cfg.tag.0 {
        tag(t.clone());
    }
    for s in &report.signatures {
        for (id, ttp) in &s.ttp {
            tag(attack_tag(id, &ttp.short));
        }
    }
    b.signatures(&report.signatures);
    let started = report.info.started as i64;
    let event = Event {
        uuid,
        info: cfg.title.replace("{task_id}", &task.to_string()),
        date: date_of(if started > 0 { started } else { now() }),
        distribution: cfg.distribution,
        threat_level_id: cfg.threat_level,
        analysis: cfg.analysis,
        published: false,
        tags,
        attributes: b.attributes,
        objects,
    };
    Ok(Built { event, left_out: b.filter.left_out })
}

struct Builder<'a> {
    uuid: String,
    filter: Filter<'a>,
    attributes: Vec<Attribute>,
}

/// Text MISP accepts: no NUL (the store refuses it) and no other control characters but newlines and tabs.
fn clean(text: &str) -> String {
    text.chars().map(|c| if c.is_control() && c != '\n' && c != '\t' { ' ' } else { c }).collect()
}

impl Builder<'_> {
    fn attribute(
        &self,
        kind: &'static str,
        category: &'static str,
        value: String,
        to_ids: bool,
        comment: String,
    ) -> Attribute {
        Attribute {
            uuid: derived_uuid(&self.uuid, &format!("{kind}|{value}")),
            kind,
            category,
            value,
            to_ids,
            comment,
            distribution: INHERIT,
            object_relation: None,
            data: None,
            tags: Vec::new(),
        }
    }

    fn push(&mut self, kind: &'static str, category: &'static str, raw: &str, comment: &str) {
        if let Some(v) = self.filter.admit(kind, raw, true) {
            let a = self.attribute(kind, category, v, true, comment.to_string());
            self.attributes.push(a);
        }
    }

    fn sample_name(report: &Report) -> String {
        report.target.file.as_ref().map(|f| f.name.trim()).filter(|n| !n.is_empty()).unwrap_or("sample").to_string()
    }

    /// `hashes`: the sample's `filename|md5/sha1/sha256`.
    fn sample_hashes(&mut self, report: &Report) {
        let Some(f) = &report.target.file else { return };
        let name = Self::sample_name(report);
        let comment = "File submitted to the sandbox";
        let hashes = [
            ("filename|md5", f.md5.map(|h| h.to_string())),
            ("filename|sha1", f.sha1.map(|h| h.to_string())),
            ("filename|sha256", f.sha256.map(|h| h.to_string())),
        ];
        for (kind, hash) in hashes {
            if let Some(h) = hash {
                self.push(kind, "Payload delivery", &format!("{name}|{h}"), comment);
            }
        }
    }

    /// `upload_sample`: the sample zipped as MISP stores it.
    fn sample_file(&mut self, report: &Report, sample: Option<&[u8]>) {
        let name = Self::sample_name(report);
        let missing = |why: String| LeftOut {
            kind: "malware-sample",
            value: name.clone(),
            reason: Reason::NoSample(why),
            note: None,
        };
        let Some(bytes) = sample else {
            let why = if report.target.file.is_some() {
                "the sample's file was not found"
            } else {
                "the task analysed a URL, not a file"
            };
            self.filter.left_out.push(missing(why.into()));
            return;
        };
        let md5: String = md5::Md5::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
        if let Some(want) = report.target.file.as_ref().and_then(|f| f.md5) {
            if want.to_string() != md5 {
                self.filter.left_out.push(missing(format!("the file given has md5 {md5}, the report's sample {want}")));
                return;
            }
        }
        let Some(value) = self.filter.admit("malware-sample", &format!("{name}|{md5}"), true) else { return };
        match zip::misp_sample_zip(bytes, &md5, &name) {
            Ok(z) => {
                use base64::Engine;
                let mut a = self.attribute(
                    "malware-sample",
                    "Payload delivery",
                    value,
                    true,
                    "The sample (zip, password infected)".into(),
                );
                a.data = Some(base64::engine::general_purpose::STANDARD.encode(z));
                self.attributes.push(a);
            }
            Err(e) => self.filter.left_out.push(missing(e.to_string())),
        }
    }

    /// `ipaddr`: `domain|ip` per resolved name (the name alone when its
    /// address is left out or missing), `ip-dst` for the other contacted hosts.
    fn addresses(&mut self, report: &Report) {
        let mut covered = BTreeSet::new();
        for d in &report.network.domains {
            let (domain, ip) = (d.domain.trim(), d.ip.trim());
            if domain.is_empty() {
                continue;
            }
            if !ip.is_empty() {
                covered.insert(ip.to_string());
            }
            let ip_verdict = if ip.is_empty() { None } else { Some(self.filter.verdict("ip-dst", ip, true)) };
            match ip_verdict {
                Some(Ok(_)) => {
                    self.push("domain|ip", "Network activity", &format!("{domain}|{ip}"), "Resolved by the sample")
                }
                Some(Err(reason)) => {
                    // the name is the indicator; the address (a sink, a CDN...) is not
                    let before = self.attributes.len();
                    self.push(
                        "domain",
                        "Network activity",
                        domain,
                        &format!("Resolved by the sample (to {ip}, left out)"),
                    );
                    let note = if self.attributes.len() > before {
                        "the domain is sent alone"
                    } else {
                        "the domain is left out too"
                    };
                    self.filter.left_out.push(LeftOut {
                        kind: "ip-dst",
                        value: ip.to_string(),
                        reason,
                        note: Some(format!("resolved from {domain}: {note}")),
                    });
                }
                None => self.push("domain", "Network activity", domain, "Resolved by the sample (no address)"),
            }
        }
        for h in &report.network.hosts {
            if !covered.contains(h.ip.trim()) {
                self.push("ip-dst", "Network activity", &h.ip, "Contacted by the sample");
            }
        }
    }

    /// `url`: the task's URL and the URLs of HTTP requests.
    fn urls(&mut self, report: &Report) {
        if let Some(u) = &report.target.url {
            self.push("url", "Network activity", u, "URL submitted to the sandbox");
        }
        for h in &report.network.http {
            let url = if !h.uri.trim().is_empty() {
                h.uri.clone()
            } else if h.port == 80 || h.port == 0 {
                format!("http://{}{}", h.host, h.path)
            } else {
                format!("http://{}:{}{}", h.host, h.port, h.path)
            };
            let comment = format!("HTTP {} by the sample", h.method);
            self.push("url", "Network activity", &url, comment.trim());
        }
    }

    /// Dropped files as `file` objects; a file none of whose hashes passes is left out whole.
    fn dropped(&mut self, dropped: &[Dropped]) -> Vec<Object> {
        let mut objects = Vec::new();
        let mut seen = BTreeSet::new();
        for d in dropped {
            let f = &d.file;
            let hashes = [
                ("md5", f.md5.map(|h| h.to_string())),
                ("sha1", f.sha1.map(|h| h.to_string())),
                ("sha256", f.sha256.map(|h| h.to_string())),
            ];
            let Some(key) = hashes.iter().rev().find_map(|(_, h)| h.clone()) else { continue };
            if !seen.insert(key.clone()) {
                continue; // the same content written twice: one object
            }
            let uuid = derived_uuid(&self.uuid, &format!("dropped/{key}"));
            let member =
                |relation: &'static str, kind: &'static str, category: &'static str, value: String, to_ids: bool| {
                    Attribute {
                        uuid: derived_uuid(&uuid, &format!("{relation}|{value}")),
                        kind,
                        category,
                        value,
                        to_ids,
                        comment: String::new(),
                        distribution: INHERIT,
                        object_relation: Some(relation),
                        data: None,
                        tags: Vec::new(),
                    }
                };
            let mut attributes = Vec::new();
            for (kind, h) in hashes {
                let Some(h) = h else { continue };
                match self.filter.verdict(kind, &h, true) {
                    Ok(v) => attributes.push(member(kind, kind, "Artifacts dropped", v, true)),
                    Err(reason) => {
                        let note = Some(format!("dropped file {}", d.filepath));
                        self.filter.left_out.push(LeftOut { kind, value: h, reason, note });
                    }
                }
            }
            if attributes.is_empty() {
                continue;
            }
            let name = if f.name.trim().is_empty() {
                d.filepath.rsplit('/').next().unwrap_or_default()
            } else {
                f.name.trim()
            };
            if !name.is_empty() {
                attributes.push(member("filename", "filename", "Artifacts dropped", clean(name), false));
            }
            if !d.filepath.trim().is_empty() {
                let ids = self.filter.cfg.dropped_path_ids;
                attributes.push(member("path", "text", "Other", clean(d.filepath.trim()), ids));
            }
            attributes.push(member("size-in-bytes", "size-in-bytes", "Other", f.size.to_string(), false));
            objects.push(Object {
                uuid,
                name: "file",
                meta_category: "file",
                template_uuid: FILE_TEMPLATE.0,
                template_version: FILE_TEMPLATE.1,
                comment: "Dropped by the sample".into(),
                distribution: INHERIT,
                attributes,
            });
        }
        objects
    }

    /// Each signature as a `comment` (Internal reference, not IDS) quoting
    /// its marks, tagged with its ATT&CK techniques.
    fn signatures(&mut self, signatures: &[Signature]) {
        for s in signatures {
            let value = clean(&signature_text(s));
            let mut a =
                self.attribute("comment", "Internal reference", value, false, format!("Sandbox signature {}", s.name));
            a.uuid = derived_uuid(&self.uuid, &format!("signature|{}", s.name));
            a.tags = s.ttp.iter().map(|(id, t)| Tag { name: attack_tag(id, &t.short) }).collect();
            self.attributes.push(a);
        }
    }
}

/// A signature for a human: name, severity, description, ATT&CK, families and its first marks.
pub fn signature_text(s: &Signature) -> String {
    use std::fmt::Write;
    let mut out = format!("{} (severity {}): {}", s.name, s.severity, s.description.trim());
    if !s.ttp.is_empty() {
        let ttps: Vec<String> = s
            .ttp
            .iter()
            .map(|(id, t)| if t.short.is_empty() { id.clone() } else { format!("{id} {}", t.short) })
            .collect();
        let _ = write!(out, "\nATT&CK: {}", ttps.join(", "));
    }
    if !s.families.is_empty() {
        let _ = write!(out, "\nfamilies: {}", s.families.join(", "));
    }
    let total = (s.markcount as usize).max(s.marks.len());
    if total > 0 {
        let _ = write!(out, "\nmarks ({} of {total}):", s.marks.len().min(MARKS_SHOWN));
        for m in s.marks.iter().take(MARKS_SHOWN) {
            let _ = write!(out, "\n  {}", m.one_line(OTHER_MARK_CHARS));
        }
    }
    out
}

#[cfg(test)]
mod tests;
