//! What a failed MISP request means and what to do about it: the one place
//! that turns a [`ClientError`] into advice. `ioclab misp check`, the IoC
//! export and the sandbox's reporting to MISP all print these words.
//!
//! Also here: reading MISP's error envelope
//! (`{"name", "message", "url", "errors"}`, `errors` being a string or field
//! names mapped to lists of messages, nested under `Event`, `Object`,
//! `attribute_<n>`...) and finding which attribute of the request it blames.

use std::fmt;

use axum::http::Uri;
use serde::Serialize;
use serde_json::Value;

use crate::client::ClientError;
use crate::store::Role;

/// The kind of failure, for callers that act on it (retry, ask for a key...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    /// The client could not be built (CA file, TLS setup).
    Setup,
    /// No connection: refused, unknown host, timeout.
    Unreachable,
    /// The TLS handshake failed (certificate not trusted, not TLS at all).
    Tls,
    /// MISP refused the API key.
    BadKey,
    /// The key works, but its role may not do this.
    NoPermission,
    /// The base URL does not lead to MISP's API.
    WrongBaseUrl,
    /// What the request names does not exist (an event id, say).
    NotFound,
    /// A proxy from the environment answered instead of MISP.
    Proxy,
    /// A gateway in front of MISP answered 502/503/504.
    Gateway,
    /// MISP itself failed (5xx).
    ServerError,
    /// MISP refused what was sent (validation, duplicate).
    Rejected,
    /// Any other HTTP error.
    Http,
    /// The answer was over the client's size limit.
    TooLarge,
    /// The answer was not JSON.
    NotJson,
}

/// A failed request explained: what failed, the likely cause, what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnosis {
    /// The kind of failure.
    pub problem: Problem,
    /// The request and what came back (`POST http://…/events/add: HTTP 403`).
    pub what_failed: String,
    /// Why, as far as the answer and the environment tell.
    pub likely_cause: String,
    /// The fix to try first.
    pub what_to_do: String,
}

impl fmt::Display for Diagnosis {
    /// One line by default (`{}`: for logs and a report's `misp_error`), three lines with `{:#}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            write!(f, "{}\n  likely cause: {}\n  what to do: {}", self.what_failed, self.likely_cause, self.what_to_do)
        } else {
            write!(f, "{}. Likely cause: {}. What to do: {}", self.what_failed, self.likely_cause, self.what_to_do)
        }
    }
}

/// One message of MISP's `errors`, with where it points (`Event.info`,
/// `attribute_0.value`, or empty when `errors` is a plain string).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Dotted path of keys in `errors`.
    pub place: String,
    /// The message.
    pub message: String,
}

/// The attribute of the request an error points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Culprit {
    /// Where it is in the request (`Attribute 2`, `Object 0, Attribute 1`).
    pub place: String,
    /// Its `type`.
    pub kind: String,
    /// Its `value`.
    pub value: String,
}

impl fmt::Display for Culprit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} {:?})", self.place, self.kind, self.value)
    }
}

/// MISP's error envelope as far as it was understood.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refusal {
    /// `name`.
    pub name: String,
    /// `message`.
    pub message: String,
    /// `errors`, flattened.
    pub errors: Vec<FieldError>,
}

impl Refusal {
    /// Reads an error body; `None` when it is not MISP's JSON envelope.
    pub fn parse(body: &[u8]) -> Option<Refusal> {
        let v: Value = serde_json::from_slice(body).ok()?;
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let (name, message) = match (text("name"), text("message")) {
            (None, None) => return None,
            (n, m) => (n.clone().or(m.clone()).unwrap_or_default(), m.or(n).unwrap_or_default()),
        };
        let mut errors = Vec::new();
        if let Some(e) = v.get("errors") {
            flatten(e, String::new(), &mut errors);
        }
        Some(Refusal { name, message, errors })
    }

    /// Whether MISP refused the key itself (as opposed to what the key asked).
    pub(crate) fn is_authentication(&self) -> bool {
        let s = format!("{} {}", self.name, self.message).to_ascii_lowercase();
        s.contains("authentication") || s.contains("auth key") || s.contains("api key")
    }

    /// Whether this is MISP's "no permission" (the key was accepted).
    pub(crate) fn is_permission(&self) -> bool {
        let s = format!("{} {}", self.name, self.message).to_ascii_lowercase();
        s.contains("permission") || s.contains("not allowed") || s.contains("not authorised")
    }

    /// Whether this is a refusal of what was sent (validation, duplicate).
    pub(crate) fn is_validation(&self) -> bool {
        !self.errors.is_empty() || self.name.starts_with("Could not") || self.message.contains("already exists")
    }

    /// The messages as one text: `message` then each `place: message`.
    fn details(&self) -> String {
        let mut s = self.message.clone();
        for e in &self.errors {
            let item = if e.place.is_empty() { e.message.clone() } else { format!("{}: {}", e.place, e.message) };
            if !s.contains(&item) {
                if !s.is_empty() {
                    s.push_str("; ");
                }
                s.push_str(&item);
            }
        }
        s
    }
}

/// `errors` flattened to `(dotted path, message)` pairs; lists of messages
/// under a field are its messages, not positions.
fn flatten(v: &Value, place: String, out: &mut Vec<FieldError>) {
    match v {
        Value::String(s) => out.push(FieldError { place, message: s.clone() }),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let p = if item.is_string() { place.clone() } else { join(&place, &i.to_string()) };
                flatten(item, p, out);
            }
        }
        Value::Object(m) => {
            for (k, item) in m {
                flatten(item, join(&place, k), out);
            }
        }
        Value::Null => {}
        other => out.push(FieldError { place, message: other.to_string() }),
    }
}

fn join(place: &str, key: &str) -> String {
    if place.is_empty() {
        key.to_string()
    } else {
        format!("{place}.{key}")
    }
}

/// The attribute of `sent` (an event, `{"Event": event}`, an attribute or a
/// list of them) that `refusal` points at: MISP's `attribute_<n>` /
/// `Attribute.<n>` keys, or the store's `Object <i>: Attribute <j>: ...`.
pub fn culprit(refusal: &Refusal, sent: &Value) -> Option<Culprit> {
    let re = regex::Regex::new(r"(?i)(?:object[ _.](\d+)\W+)?attribute[ _.](\d+)").expect("constant regex");
    let texts = std::iter::once(&refusal.message).chain(refusal.errors.iter().flat_map(|e| [&e.place, &e.message]));
    for text in texts {
        let Some(c) = re.captures(text) else { continue };
        let j: usize = c[2].parse().ok()?;
        let event = sent.get("Event").unwrap_or(sent);
        let (attr, place) = match c.get(1).and_then(|m| m.as_str().parse::<usize>().ok()) {
            Some(i) => (event["Object"][i]["Attribute"].get(j), format!("Object {i}, Attribute {j}")),
            None if event.is_array() => (event.get(j), format!("Attribute {j}")),
            None => (event["Attribute"].get(j), format!("Attribute {j}")),
        };
        let attr = attr?;
        let field = |k: &str| attr.get(k).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string));
        return Some(Culprit {
            place,
            kind: field("type").unwrap_or_default(),
            value: field("value").unwrap_or_default(),
        });
    }
    None
}

/// The proxy a request to a URL goes through, read from the environment as
/// the client does (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY and their
/// lower-case forms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyUse {
    /// The proxy, without credentials.
    pub proxy: String,
    /// The variable naming it.
    pub variable: &'static str,
    /// The host the request was for (what NO_PROXY should name).
    pub host: String,
    /// NO_PROXY's value, if set.
    pub no_proxy: Option<String>,
}

impl ProxyUse {
    /// The proxy the environment sends `url` through, if any.
    pub fn for_url(url: &str) -> Option<ProxyUse> {
        let uri: Uri = url.parse().ok()?;
        let intercept = hyper_util::client::proxy::matcher::Matcher::from_env().intercept(&uri)?;
        let p = intercept.uri();
        let proxy = format!(
            "{}://{}",
            p.scheme_str().unwrap_or("http"),
            p.authority().map(|a| a.as_str().rsplit('@').next().unwrap_or_default()).unwrap_or_default()
        );
        let https = uri.scheme_str() == Some("https");
        let candidates: &[&'static str] = if https {
            &["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
        } else {
            &["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
        };
        let variable = candidates.iter().copied().find(|v| std::env::var(v).is_ok_and(|s| !s.is_empty()))?;
        let no_proxy = ["NO_PROXY", "no_proxy"].iter().find_map(|v| std::env::var(v).ok());
        Some(ProxyUse { proxy, variable, host: uri.host().unwrap_or_default().to_string(), no_proxy })
    }

    /// "HTTPS_PROXY=http://proxy:3128 is set and NO_PROXY ... does not name host".
    fn sentence(&self) -> String {
        let np = match &self.no_proxy {
            Some(v) => format!("NO_PROXY ({v:?}) does not name {}", self.host),
            None => "NO_PROXY is not set".to_string(),
        };
        format!("{}={} is set and {np}, so the request went through that proxy", self.variable, self.proxy)
    }

    fn fix(&self) -> String {
        let now = self.no_proxy.as_deref().filter(|v| !v.is_empty());
        let new = now.map_or_else(|| self.host.clone(), |v| format!("{v},{}", self.host));
        format!("add the MISP host to NO_PROXY (export NO_PROXY={new}), or make the proxy able to reach it")
    }
}

/// The role the embedded store (and MISP's default roles) need for `path`.
fn role_needed(path: &str) -> (Role, &'static str) {
    if path.starts_with("/events/publish") || path.starts_with("/events/unpublish") {
        (Role::Publisher, "publishing needs perm_publish")
    } else if path.starts_with("/events/add") {
        (Role::Publisher, "adding needs perm_add (role user), and adding an event marked published needs perm_publish")
    } else if path.starts_with("/events/edit")
        || path.starts_with("/events/delete")
        || path.starts_with("/tags/")
        || path.starts_with("/attributes/")
    {
        (
            Role::Admin,
            "changing an event needs a key of the organisation that created it, or an admin (perm_site_admin) for another organisation's",
        )
    } else {
        (Role::Admin, "this endpoint needs more rights than the key's role gives")
    }
}

/// The API path of a request URL and the base before it (the API lives at
/// the root of a MISP: `/servers/`, `/events/`... right after the host).
fn split_api_path(url: &str) -> (String, String) {
    const ROOTS: &[&str] = &[
        "/servers/",
        "/users/",
        "/events/",
        "/attributes/",
        "/tags/",
        "/sightings/",
        "/warninglists/",
        "/objects/",
        "/feeds/",
    ];
    let Ok(uri) = url.parse::<Uri>() else { return (url.to_string(), String::new()) };
    let path = uri.path();
    let cut = ROOTS.iter().filter_map(|r| path.find(r)).min().unwrap_or(path.len());
    let origin = format!("{}://{}", uri.scheme_str().unwrap_or("http"), uri.authority().map_or("", |a| a.as_str()));
    (format!("{origin}{}", &path[..cut]), path[cut..].to_string())
}

impl Diagnosis {
    /// Explains `err`, reading the proxy variables of this process.
    pub fn of(err: &ClientError) -> Diagnosis {
        let proxy = err.url().and_then(ProxyUse::for_url);
        Diagnosis::with_proxy(err, proxy.as_ref())
    }

    /// Explains `err`, the request having gone through `proxy` (if any).
    pub fn with_proxy(err: &ClientError, proxy: Option<&ProxyUse>) -> Diagnosis {
        use ClientError as E;
        let via = |s: String| match proxy {
            Some(p) => format!("{s} (through the proxy {} from {})", p.proxy, p.variable),
            None => s,
        };
        let d = |problem, what: String, cause: String, todo: String| Diagnosis {
            problem,
            what_failed: what,
            likely_cause: cause,
            what_to_do: todo,
        };
        match err {
            E::Setup(detail) => d(
                Problem::Setup,
                format!("setting up the MISP client: {detail}"),
                "the CA file (ca_file) cannot be read or is not a PEM certificate".into(),
                "check the ca_file path and that it holds a PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
            ),
            E::Unreachable { url, detail } => match proxy {
                Some(p) => d(
                    Problem::Proxy,
                    via(format!("{url}: cannot connect ({detail})")),
                    format!("{}, and the proxy cannot be reached or cannot reach MISP", p.sentence()),
                    p.fix(),
                ),
                None => d(
                    Problem::Unreachable,
                    format!("{url}: cannot connect ({detail})"),
                    unreachable_cause(detail),
                    "check that MISP is running and that the URL's scheme, host and port are right (try: curl -k <url>/servers/getVersion)".into(),
                ),
            },
            E::Tls { url, detail } => d(
                Problem::Tls,
                via(format!("{url}: TLS failure ({detail})")),
                tls_cause(detail),
                "for a lab MISP with a self-signed certificate set `ssl = false` in the MISP section of the config, \
                 or trust its CA with `ca_file = \"/path/to/ca.pem\"`; if MISP speaks plain HTTP, use http:// in the URL"
                    .into(),
            ),
            E::Auth { url, status, message } => d(
                Problem::BadKey,
                via(format!("{url}: HTTP {status} ({message})")),
                "authentication failed: MISP refused the API key (wrong, revoked or expired, or its user may not use the API)"
                    .into(),
                "check the key (40 characters, from MISP: My Profile → Auth keys; for the embedded store: \
                 ioclab misp keys list / keys create)"
                    .into(),
            ),
            E::Forbidden { url, message } => {
                let (_, path) = split_api_path(url);
                let (role, why) = role_needed(&path);
                let role = role.name();
                d(
                    Problem::NoPermission,
                    via(format!("{url}: HTTP 403 ({message})")),
                    format!("the key was accepted but its role may not do this: {why}"),
                    format!(
                        "use a key whose role allows it (at least `{role}`; for the embedded store: \
                         ioclab misp keys create --email <you> --role {role} [--change-role])"
                    ),
                )
            }
            E::NotFound { url, message } => {
                let (base, path) = split_api_path(url);
                let base_path = base.split_once("://").map_or("", |(_, rest)| rest.find('/').map_or("", |i| &rest[i..]));
                match message {
                    Some(m) if !is_route_missing(m, &path) => d(
                        Problem::NotFound,
                        via(format!("{url}: HTTP 404 ({m})")),
                        "MISP answered, but what the request names does not exist (deleted event, wrong id)".into(),
                        "check the id or uuid in the request".into(),
                    ),
                    _ if !base_path.is_empty() && base_path != "/" => d(
                        Problem::WrongBaseUrl,
                        via(format!("{url}: HTTP 404")),
                        format!("the base URL {base} has the path {base_path:?}, but MISP's API is at the root of its host"),
                        format!(
                            "set the url to {} (no /events or other path), unless this MISP really lives under {base_path}",
                            base.trim_end_matches(base_path)
                        ),
                    ),
                    _ => d(
                        Problem::WrongBaseUrl,
                        via(format!("{url}: HTTP 404")),
                        "the server there has no such MISP endpoint: it is not MISP, or MISP lives under a path".into(),
                        "check the url: the MISP root, e.g. https://misp.example (the page you log in on)".into(),
                    ),
                }
            }
            E::Gateway { url, status, message } => match proxy {
                Some(p) => d(
                    Problem::Proxy,
                    via(format!("{url}: HTTP {status} from a gateway{}", paren(message))),
                    p.sentence(),
                    p.fix(),
                ),
                None => d(
                    Problem::Gateway,
                    format!("{url}: HTTP {status} from a gateway{}", paren(message)),
                    "no proxy is set in the environment, so a reverse proxy or load balancer in front of MISP \
                     could not get an answer from it (MISP down, or too slow: 504 is a timeout)"
                        .into(),
                    "check MISP's web server and PHP workers on the MISP host; for 504 on big requests, \
                     raise the gateway's timeout or ask for less (smaller limit, fewer days)"
                        .into(),
                ),
            },
            E::Http { url, status, message } if err.is_duplicate() => d(
                Problem::Rejected,
                via(format!("{url}: HTTP {status} ({message})")),
                "what was sent has the uuid of an object MISP already holds".into(),
                "update it (events/edit with its uuid) instead of adding it again".into(),
            ),
            E::Rejected { url, status, refusal, culprit } => {
                let on = culprit.as_ref().map(|c| format!(" on {c}")).unwrap_or_default();
                d(
                    Problem::Rejected,
                    via(format!("{url}: HTTP {status}, {}", refusal.name)),
                    format!("MISP refused what was sent{on}: {}", refusal.details()),
                    if culprit.is_some() {
                        "fix or leave out that attribute (its value does not fit its type), then send the event again"
                            .into()
                    } else {
                        "fix the field MISP names, then send again".into()
                    },
                )
            }
            E::Http { url, status: 503, message } => d(
                Problem::ServerError,
                via(format!("{url}: HTTP 503 ({message})")),
                "MISP is overloaded, or its database is locked by another writer".into(),
                "retry in a few seconds (the answer's Retry-After says when); if it lasts, look at MISP's load".into(),
            ),
            E::Http { url, status, message } if *status >= 500 => d(
                Problem::ServerError,
                via(format!("{url}: HTTP {status}{}", paren(message))),
                "MISP failed while handling the request (a bug, a full disk, a database problem)".into(),
                "look at MISP's error log (app/tmp/logs/error.log; for the embedded store, the output of \
                 ioclab misp serve) for the error id, then retry"
                    .into(),
            ),
            E::Http { url, status, message } => d(
                Problem::Http,
                via(format!("{url}: HTTP {status}{}", paren(message))),
                if *status == 407 {
                    "the proxy wants credentials".into()
                } else {
                    "MISP did not accept the request".into()
                },
                if *status == 407 {
                    "put them in the proxy variable (http://user:password@proxy:port) or add the MISP host to NO_PROXY"
                        .into()
                } else {
                    "read MISP's message above; check the request and the MISP version".into()
                },
            ),
            E::TooLarge { url, limit } => d(
                Problem::TooLarge,
                format!("{url}: the answer is larger than the {} limit", crate::client::size(*limit)),
                "the request matched more data than the client reads".into(),
                "if that much is expected, raise `max_answer_mib` in the MISP section; otherwise ask for less".into(),
            ),
            E::NotJson { url, detail } => d(
                Problem::NotJson,
                via(format!("{url}: the answer is not JSON ({detail})")),
                "something other than MISP's API answered: a login page, a captive portal, or another server".into(),
                "open the URL in a browser and check it is the MISP root".into(),
            ),
        }
    }
}

fn paren(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(" ({message})")
    }
}

/// Whether a 404's message says the route, not the object, is missing.
fn is_route_missing(message: &str, path: &str) -> bool {
    let m = message.to_ascii_lowercase();
    // paths without an id are endpoints every MISP has
    let fixed = !path.split('/').any(|seg| !seg.is_empty() && seg.chars().any(|c| c.is_ascii_digit()));
    m == "not found"
        || m.contains("not an endpoint")
        || (fixed && !m.contains("already exists") && !m.contains("invalid"))
}

fn unreachable_cause(detail: &str) -> String {
    let d = detail.to_ascii_lowercase();
    if d.contains("refused") {
        "nothing listens on that host and port (MISP stopped, or the port is wrong)".into()
    } else if d.contains("dns") || d.contains("resolve") || d.contains("lookup") || d.contains("name or service") {
        "the host name does not resolve (typo, or a name only known inside another network)".into()
    } else if d.contains("timed out") || d.contains("timeout") {
        "no answer in time: a firewall drops the packets, or the host is down".into()
    } else {
        "the network path to MISP is broken".into()
    }
}

fn tls_cause(detail: &str) -> String {
    let d = detail.to_ascii_lowercase();
    if d.contains("unknownissuer") || d.contains("unknown issuer") || d.contains("self") {
        "MISP's certificate is not signed by a CA this machine trusts (self-signed, or a private CA)".into()
    } else if d.contains("notvalidforname") || d.contains("not valid for name") {
        "the certificate is for another name than the URL's host".into()
    } else if d.contains("expired") {
        "the certificate has expired".into()
    } else if d.contains("corrupt") || d.contains("invalidcontenttype") || d.contains("record") {
        "the server does not speak TLS on that port (plain HTTP?)".into()
    } else {
        "the TLS handshake with MISP failed".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn reads_misp_save_fail_response() {
        // MISP's RestResponse::saveFailResponse for /attributes/add with two attributes
        let body = json!({"saved": false, "name": "Could not add Attributes", "message": "Could not add Attributes",
            "url": "/attributes/add", "errors": {"attribute_1": {"value": ["Checksum has an invalid length or format (expected: 64 hexadecimal characters). Please double check the value or select type \"other\"."]}}});
        let r = Refusal::parse(body.to_string().as_bytes()).unwrap();
        assert!(r.is_validation());
        assert_eq!(r.errors.len(), 1);
        assert_eq!(r.errors[0].place, "attribute_1.value");
        let sent = json!([{"type": "ip-dst", "value": "192.0.2.1"}, {"type": "sha256", "value": "abc"}]);
        let c = culprit(&r, &sent).unwrap();
        assert_eq!((c.place.as_str(), c.kind.as_str(), c.value.as_str()), ("Attribute 1", "sha256", "abc"));
        let e = ClientError::Rejected {
            url: "https://misp/attributes/add/3".into(),
            status: 403,
            refusal: Box::new(r),
            culprit: Some(Box::new(c)),
        };
        let d = Diagnosis::with_proxy(&e, None);
        assert!(d.likely_cause.contains("attribute_1.value: Checksum has an invalid length"), "{d:#}");
        assert!(d.likely_cause.contains("Attribute 1 (sha256 \"abc\")"), "{d:#}");

        // errors as a string, and an event-level one
        let r = Refusal::parse(br#"{"name":"Could not add Event","message":"Could not add Event","url":"/events/add","errors":{"Event":{"info":["Info cannot be empty."]}}}"#).unwrap();
        assert_eq!(r.details(), "Could not add Event; Event.info: Info cannot be empty.");
        let r = Refusal::parse(br#"{"name":"x","message":"x","errors":"Event blocked."}"#).unwrap();
        assert_eq!(r.errors, vec![FieldError { place: String::new(), message: "Event blocked.".into() }]);
        // the embedded store's own form, inside an object
        let r = Refusal { message: "Object 0: Attribute 1: bad".into(), ..Default::default() };
        let sent = json!({"Event": {"Object": [{"Attribute": [{}, {"type": "ip-dst", "value": "x"}]}]}});
        assert_eq!(culprit(&r, &sent).unwrap().place, "Object 0, Attribute 1");
        // not MISP's envelope
        assert_eq!(Refusal::parse(b"<html>502</html>"), None);
        assert_eq!(Refusal::parse(b"{\"a\":1}"), None);
    }

    #[test]
    fn a_proxy_in_the_way_is_named_with_the_no_proxy_fix() {
        let proxy = ProxyUse {
            proxy: "http://127.0.0.1:3128".into(),
            variable: "HTTPS_PROXY",
            host: "misp.lab".into(),
            no_proxy: Some("localhost".into()),
        };
        for e in [
            ClientError::Gateway { url: "https://misp.lab/events/add".into(), status: 504, message: String::new() },
            ClientError::Unreachable { url: "https://misp.lab/events/add".into(), detail: "tunnel failed".into() },
        ] {
            let d = Diagnosis::with_proxy(&e, Some(&proxy));
            assert_eq!(d.problem, Problem::Proxy, "{d:#}");
            assert!(d.likely_cause.contains("HTTPS_PROXY=http://127.0.0.1:3128"), "{d:#}");
            assert!(d.likely_cause.contains("NO_PROXY (\"localhost\") does not name misp.lab"), "{d:#}");
            assert!(d.what_to_do.contains("NO_PROXY=localhost,misp.lab"), "{d:#}");
        }
        // without a proxy, a 502 is a gateway in front of MISP
        let e = ClientError::Gateway { url: "https://misp.lab/x".into(), status: 502, message: String::new() };
        let d = Diagnosis::with_proxy(&e, None);
        assert_eq!(d.problem, Problem::Gateway, "{d:#}");
        assert!(d.likely_cause.contains("no proxy is set"), "{d:#}");
    }

    #[test]
    fn the_display_forms() {
        let e = ClientError::Http { url: "http://m/x".into(), status: 500, message: "internal error 1234abcd".into() };
        let d = Diagnosis::with_proxy(&e, None);
        assert_eq!(d.problem, Problem::ServerError);
        assert!(!d.to_string().contains('\n'));
        assert_eq!(format!("{d:#}").lines().count(), 3);
        assert!(format!("{d:#}").contains("  what to do: "), "{d:#}");
        // the embedded store's 503 (busy) asks for a retry, not a bug hunt
        let e = ClientError::Http { url: "http://m/x".into(), status: 503, message: "the store is busy".into() };
        assert!(Diagnosis::with_proxy(&e, None).what_to_do.starts_with("retry"));
    }

    proptest! {
        /// Error bodies come from outside: any bytes are read without panicking.
        #[test]
        fn any_error_body_is_read_without_panic(body in proptest::collection::vec(any::<u8>(), 0..300),
                                                 json_ish in "\\{\"(name|message|errors)\":(\"[a-z 0-9_]{0,20}\"|\\{\"attribute_[0-9]{1,3}\":\\[\"x\"\\]\\}|\\[\\]|null|7)\\}") {
            let _ = Refusal::parse(&body);
            if let Some(r) = Refusal::parse(json_ish.as_bytes()) {
                let _ = culprit(&r, &json!([{"type": "a"}]));
                let _ = r.details();
            }
        }
    }
}
