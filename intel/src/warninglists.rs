//! MISP warninglists: known-benign values (public DNS resolvers, cloud
//! ranges, top sites, empty-file hashes...) that make false-positive IoCs.
//! The shipped subset is in `intel/data/warninglists/` (CC0), embedded in
//! the binary; all five of MISP's match types are supported.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::model::host_of;

/// (file name, JSON) of every shipped list.
const SHIPPED: &[(&str, &str)] = &[
    ("public-dns-v4", include_str!("../data/warninglists/public-dns-v4.json")),
    ("public-dns-v6", include_str!("../data/warninglists/public-dns-v6.json")),
    ("rfc1918", include_str!("../data/warninglists/rfc1918.json")),
    ("rfc5735", include_str!("../data/warninglists/rfc5735.json")),
    ("rfc6598", include_str!("../data/warninglists/rfc6598.json")),
    ("rfc3849", include_str!("../data/warninglists/rfc3849.json")),
    ("multicast", include_str!("../data/warninglists/multicast.json")),
    ("ipv6-linklocal", include_str!("../data/warninglists/ipv6-linklocal.json")),
    ("google", include_str!("../data/warninglists/google.json")),
    ("cloudflare", include_str!("../data/warninglists/cloudflare.json")),
    ("empty-hashes", include_str!("../data/warninglists/empty-hashes.json")),
    ("eicar.com", include_str!("../data/warninglists/eicar.com.json")),
    ("tlds", include_str!("../data/warninglists/tlds.json")),
    ("amazon-aws", include_str!("../data/warninglists/amazon-aws.json")),
    ("microsoft-azure", include_str!("../data/warninglists/microsoft-azure.json")),
    ("alexa", include_str!("../data/warninglists/alexa.json")),
    ("automated-malware-analysis", include_str!("../data/warninglists/automated-malware-analysis.json")),
    ("common-contact-emails", include_str!("../data/warninglists/common-contact-emails.json")),
];

/// A list file as MISP publishes it.
#[derive(Deserialize)]
struct ListFile {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    list: Vec<String>,
    #[serde(default)]
    matching_attributes: Vec<String>,
}

/// Networks of one family, grouped by prefix length: a lookup masks the
/// address once per length present instead of scanning every network.
#[derive(Default)]
struct Networks {
    v4: Vec<(u8, HashSet<u32>)>,
    v6: Vec<(u8, HashSet<u128>)>,
}

fn mask4(a: u32, len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        a & (u32::MAX << (32 - len))
    }
}

fn mask6(a: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        a & (u128::MAX << (128 - len))
    }
}

impl Networks {
    fn add(&mut self, entry: &str) -> bool {
        let (ip, len) = match entry.split_once('/') {
            Some((ip, len)) => (ip, len.parse::<u8>().ok()),
            None => (entry, None),
        };
        match ip.trim().parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) => {
                let len = len.unwrap_or(32).min(32);
                let set = match self.v4.iter_mut().find(|(l, _)| *l == len) {
                    Some((_, s)) => s,
                    None => {
                        self.v4.push((len, HashSet::new()));
                        &mut self.v4.last_mut().expect("just pushed").1
                    }
                };
                set.insert(mask4(u32::from(a), len));
                true
            }
            Ok(IpAddr::V6(a)) => {
                let len = len.unwrap_or(128).min(128);
                let set = match self.v6.iter_mut().find(|(l, _)| *l == len) {
                    Some((_, s)) => s,
                    None => {
                        self.v6.push((len, HashSet::new()));
                        &mut self.v6.last_mut().expect("just pushed").1
                    }
                };
                set.insert(mask6(u128::from(a), len));
                true
            }
            Err(_) => false,
        }
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(a) => self.v4.iter().any(|(len, set)| set.contains(&mask4(u32::from(a), *len))),
            IpAddr::V6(a) => self.v6.iter().any(|(len, set)| set.contains(&mask6(u128::from(a), *len))),
        }
    }
}

/// How a list matches, with its entries prepared for it.
enum Matcher {
    /// The value equals an entry (case-insensitive).
    String(HashSet<String>),
    /// An entry is contained in the value.
    Substring(Vec<String>),
    /// The value's host, or one of its parent domains, is an entry.
    Hostname(HashSet<String>),
    /// The value is an IP address inside one of the networks.
    Cidr(Networks),
    /// A regular expression matches the value.
    Regex(Vec<regex::Regex>),
}

/// One warninglist.
pub struct Warninglist {
    /// Its number (1-based, in shipped order).
    pub id: u32,
    /// File name, e.g. `public-dns-v4`.
    pub slug: &'static str,
    /// Its name, e.g. "List of known IPv4 public DNS resolvers".
    pub name: String,
    /// MISP match type: string, substring, hostname, cidr or regex.
    pub kind: String,
    /// Attribute types it applies to (empty: all).
    pub matching_attributes: Vec<String>,
    matcher: Matcher,
}

/// A value found in a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The list's id.
    pub id: u32,
    /// The list's name.
    pub name: String,
    /// The list's file name.
    pub slug: &'static str,
    /// The value (or part of a composite value) that matched.
    pub matched: String,
}

/// A MISP regex entry (`/pattern/flags`) for the regex crate.
fn compile(entry: &str) -> Option<regex::Regex> {
    let (pattern, flags) = match entry.strip_prefix('/').and_then(|r| r.rsplit_once('/')) {
        Some((p, f)) => (p, f),
        None => (entry, ""),
    };
    let ci = if flags.contains('i') { "(?i)" } else { "" };
    regex::Regex::new(&format!("{ci}{pattern}")).ok()
}

impl Matcher {
    fn new(kind: &str, entries: &[String]) -> Option<Self> {
        let lower = || entries.iter().map(|e| e.trim().to_ascii_lowercase()).collect::<HashSet<_>>();
        Some(match kind {
            "string" => Matcher::String(lower()),
            "substring" => {
                Matcher::Substring(entries.iter().map(|e| e.to_ascii_lowercase()).filter(|e| !e.is_empty()).collect())
            }
            "hostname" => Matcher::Hostname(entries.iter().map(|e| host_of(e)).collect()),
            "cidr" => {
                let mut n = Networks::default();
                for e in entries {
                    n.add(e);
                }
                Matcher::Cidr(n)
            }
            "regex" => Matcher::Regex(entries.iter().filter_map(|e| compile(e)).collect()),
            _ => return None,
        })
    }

    fn matches(&self, value: &str) -> bool {
        match self {
            Matcher::String(set) => set.contains(&value.trim().to_ascii_lowercase()),
            Matcher::Substring(subs) => {
                let v = value.to_ascii_lowercase();
                subs.iter().any(|s| v.contains(s.as_str()))
            }
            Matcher::Hostname(set) => {
                let host = host_of(value);
                let mut rest = host.as_str();
                loop {
                    if set.contains(rest) {
                        return true;
                    }
                    match rest.split_once('.') {
                        Some((_, parent)) => rest = parent,
                        None => return false,
                    }
                }
            }
            Matcher::Cidr(n) => {
                let v = value.trim();
                let ip = v.split_once('/').map_or(v, |(ip, _)| ip);
                ip.parse::<IpAddr>().is_ok_and(|ip| n.contains(ip))
            }
            Matcher::Regex(res) => res.iter().any(|r| r.is_match(value)),
        }
    }
}

/// Why a list file could not be used.
#[derive(Debug, thiserror::Error)]
#[error("warninglist {slug}: {reason}")]
pub struct ListError {
    /// The list.
    pub slug: String,
    /// What is wrong.
    pub reason: String,
}

/// A set of warninglists.
pub struct Warninglists {
    lists: Vec<Warninglist>,
}

impl Warninglists {
    /// Parses lists from (file name, JSON) pairs.
    pub fn parse(files: &[(&'static str, &str)]) -> Result<Self, ListError> {
        let mut lists = Vec::with_capacity(files.len());
        for (i, (slug, json)) in files.iter().enumerate() {
            let err = |reason: String| ListError { slug: slug.to_string(), reason };
            let f: ListFile = serde_json::from_str(json).map_err(|e| err(e.to_string()))?;
            let matcher = Matcher::new(&f.kind, &f.list).ok_or_else(|| err(format!("unknown type {:?}", f.kind)))?;
            lists.push(Warninglist {
                id: i as u32 + 1,
                slug,
                name: f.name,
                kind: f.kind,
                matching_attributes: f.matching_attributes,
                matcher,
            });
        }
        Ok(Warninglists { lists })
    }

    /// The lists shipped in the binary (parsed once).
    pub fn embedded() -> &'static Warninglists {
        static LISTS: OnceLock<Warninglists> = OnceLock::new();
        LISTS.get_or_init(Warninglists::shipped)
    }

    /// The shipped lists, as a set of one's own (a server keeps it in its state).
    pub fn shipped() -> Self {
        // the shipped files are tested to parse: a failure is a build defect
        Warninglists::parse(SHIPPED).unwrap_or_else(|e| panic!("shipped {e}"))
    }

    /// No list at all.
    pub fn empty() -> Self {
        Warninglists { lists: Vec::new() }
    }

    /// The lists.
    pub fn lists(&self) -> &[Warninglist] {
        &self.lists
    }

    /// Every list `value` is on, whatever the attribute type (MISP's checkValue).
    pub fn check(&self, value: &str) -> Vec<Hit> {
        self.lists
            .iter()
            .filter(|l| l.matcher.matches(value))
            .map(|l| Hit { id: l.id, name: l.name.clone(), slug: l.slug, matched: value.to_string() })
            .collect()
    }

    /// The lists an attribute of `kind` with `value` is on, as MISP checks
    /// IDS attributes: only lists for that type, composite values (`a|b`)
    /// tested part by part.
    pub fn check_attribute(&self, kind: &str, value: &str) -> Vec<Hit> {
        let mut hits = Vec::new();
        for l in &self.lists {
            if !l.matching_attributes.is_empty() && !l.matching_attributes.iter().any(|m| m == kind) {
                continue;
            }
            let parts: Vec<&str> = if kind.contains('|') { value.split('|').collect() } else { vec![value] };
            if let Some(p) = parts.iter().find(|p| l.matcher.matches(p)) {
                hits.push(Hit { id: l.id, name: l.name.clone(), slug: l.slug, matched: p.to_string() });
            }
        }
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn slugs(h: &[Hit]) -> Vec<&str> {
        h.iter().map(|h| h.slug).collect()
    }

    #[test]
    fn shipped_lists_parse_and_classic_false_positives_hit() {
        let w = Warninglists::embedded();
        assert_eq!(w.lists().len(), SHIPPED.len());
        assert!(slugs(&w.check("8.8.8.8")).contains(&"public-dns-v4"), "cidr");
        assert!(slugs(&w.check("10.1.2.3")).contains(&"rfc1918"), "cidr");
        assert!(slugs(&w.check("2001:4860:4860::8888")).contains(&"public-dns-v6"), "cidr v6");
        assert!(slugs(&w.check("google.com")).contains(&"google"), "string");
        assert!(slugs(&w.check("www.google.com")).contains(&"alexa"), "hostname: parent domain");
        assert!(slugs(&w.check("https://www.google.com/search?q=x")).contains(&"alexa"), "hostname of a URL");
        assert!(slugs(&w.check("d41d8cd98f00b204e9800998ecf8427e")).contains(&"empty-hashes"), "string: empty md5");
        assert!(w.check("why.kunai.rocks").is_empty());
        assert!(
            w.check("185.199.108.153").is_empty() || !slugs(&w.check("185.199.108.153")).contains(&"public-dns-v4")
        );
    }

    #[test]
    fn all_five_match_types() {
        let files: &[(&'static str, &str)] = &[
            ("s", r#"{"name":"S","type":"string","list":["Exact.Example"],"matching_attributes":["domain"]}"#),
            ("sub", r#"{"name":"Sub","type":"substring","list":["sandbox"],"matching_attributes":[]}"#),
            (
                "h",
                r#"{"name":"H","type":"hostname","list":["corp.example"],"matching_attributes":["hostname","domain|ip"]}"#,
            ),
            (
                "c",
                r#"{"name":"C","type":"cidr","list":["192.0.2.0/24","2001:db8::/32"],"matching_attributes":["ip-dst","domain|ip"]}"#,
            ),
            ("r", r#"{"name":"R","type":"regex","list":["/^\\+33[0-9]{9}$/i"],"matching_attributes":[]}"#),
        ];
        let w = Warninglists::parse(files).unwrap();
        assert_eq!(slugs(&w.check("exact.example")), ["s"]);
        assert_eq!(slugs(&w.check("my-sandbox-host")), ["sub"]);
        assert_eq!(slugs(&w.check("a.b.corp.example")), ["h"]);
        assert_eq!(slugs(&w.check("192.0.2.77")), ["c"]);
        assert_eq!(slugs(&w.check("2001:db8::5")), ["c"]);
        assert_eq!(slugs(&w.check("+33123456789")), ["r"]);
        // by attribute type: only the lists for that type, composite values part by part
        assert!(w.check_attribute("hostname", "exact.example").is_empty(), "string list is for domain only");
        let hits = w.check_attribute("domain|ip", "x.corp.example|198.51.100.1");
        assert_eq!(slugs(&hits), ["h"]);
        assert_eq!(hits[0].matched, "x.corp.example");
        assert_eq!(slugs(&w.check_attribute("domain|ip", "evil.example|192.0.2.1")), ["c"]);
        assert!(Warninglists::parse(&[("bad", r#"{"name":"B","type":"fuzzy","list":[]}"#)]).is_err());
        assert!(Warninglists::parse(&[("bad", "not json")]).is_err());
    }

    proptest! {
        #[test]
        fn checking_any_value_never_panics(v in "\\PC{0,60}") {
            let w = Warninglists::embedded();
            let _ = w.check(&v);
            let _ = w.check_attribute("domain|ip", &v);
            let _ = w.check_attribute("ip-dst", &v);
        }
    }
}
