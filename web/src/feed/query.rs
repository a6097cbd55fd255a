//! What a reader asks of the feed, from the query string of `/endpoint`
//! and `/api/events`: filters, a cursor and a page size.

use serde::Deserialize;

use super::cursor::{Cursor, CursorError};
use super::summary::Summary;

/// Events per page unless `limit` says otherwise.
pub const DEFAULT_LIMIT: usize = 500;
/// The largest page.
pub const MAX_LIMIT: usize = 5000;

/// The query string as it comes (a GET form: shareable URLs, no CSRF needed).
#[derive(Debug, Default, Deserialize)]
pub struct Params {
    /// Event name (`execve`, `dns_query`...), exact.
    #[serde(default)]
    pub name: String,
    /// Part of the process name, executable or command line.
    #[serde(default)]
    pub process: String,
    /// Only events carrying a `detection` (`on`, `true` or `1`).
    #[serde(default)]
    pub detections: Option<String>,
    /// Only this run's events.
    #[serde(default)]
    pub run: Option<String>,
    /// The position of the last event of the previous page.
    #[serde(default)]
    pub before: Option<String>,
    /// At most this many events ([`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// Which events pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    /// Event name, exact (empty: any).
    pub name: String,
    /// Part of the process name, executable or command line (empty: any).
    pub process: String,
    /// Only events carrying a detection.
    pub detections: bool,
}

impl Filters {
    /// Whether the event `s` summarises passes.
    pub fn keep(&self, s: &Summary) -> bool {
        (self.name.is_empty() || *s.name == *self.name)
            && (self.process.is_empty()
                || [&s.task, &s.exe, &s.command_line].iter().any(|f| f.contains(self.process.as_str())))
            && (!self.detections || s.detection)
    }

    /// Whether any filter is set.
    pub fn any(&self) -> bool {
        !self.name.is_empty() || !self.process.is_empty() || self.detections
    }
}

/// A page asked of the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedQuery {
    /// The filters.
    pub filters: Filters,
    /// Start below this event (the newest first).
    pub before: Option<Cursor>,
    /// At most this many events.
    pub limit: usize,
}

impl Params {
    /// The page these parameters ask for; a bad cursor is refused, saying why.
    pub fn query(&self) -> Result<FeedQuery, CursorError> {
        let detections =
            self.detections.as_deref().is_some_and(|d| !matches!(d.trim(), "" | "0" | "false" | "off" | "no"));
        Ok(FeedQuery {
            filters: Filters { name: self.name.trim().into(), process: self.process.trim().into(), detections },
            before: self.before.as_deref().filter(|b| !b.is_empty()).map(str::parse).transpose()?,
            limit: self.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn summary() -> Summary {
        Summary {
            name: "execve".into(),
            task: "dig".into(),
            exe: "/usr/bin/dig".into(),
            command_line: "dig why.kunai.rocks".into(),
            ..Summary::default()
        }
    }

    #[test]
    fn filters_keep_what_they_say() {
        let s = summary();
        let f =
            |name: &str, process: &str, detections| Filters { name: name.into(), process: process.into(), detections };
        assert!(f("", "", false).keep(&s));
        assert!(f("execve", "", false).keep(&s));
        assert!(!f("dns_query", "", false).keep(&s));
        assert!(f("", "kunai.rocks", false).keep(&s));
        assert!(f("", "/usr/bin/dig", false).keep(&s));
        assert!(!f("", "curl", false).keep(&s));
        assert!(!f("", "", true).keep(&s));
        assert!(f("", "", true).keep(&Summary { detection: true, ..s }));
    }

    #[test]
    fn params_read_the_forms_and_the_apis_spelling() {
        let p = |q: &str| -> Params { serde_urlencoded_like(q) };
        assert!(p("detections=on").query().unwrap().filters.detections);
        assert!(p("detections=true").query().unwrap().filters.detections);
        assert!(!p("detections=false").query().unwrap().filters.detections);
        assert!(!p("detections=").query().unwrap().filters.detections);
        assert_eq!(p("limit=0").query().unwrap().limit, 1);
        assert_eq!(p("limit=99999").query().unwrap().limit, MAX_LIMIT);
        assert_eq!(p("").query().unwrap().limit, DEFAULT_LIMIT);
        assert_eq!(p("before=").query().unwrap().before, None);
        assert_eq!(p("before=live:3").query().unwrap().before.unwrap().n, 3);
        assert!(p("before=live").query().is_err());
    }

    // the query string as axum's Query reads it
    fn serde_urlencoded_like(q: &str) -> Params {
        let uri: axum::http::Uri = format!("/endpoint?{q}").parse().unwrap();
        axum::extract::Query::<Params>::try_from_uri(&uri).unwrap().0
    }

    fn percent_encoded(s: &str) -> String {
        s.bytes().map(|b| format!("%{b:02X}")).collect()
    }

    proptest! {
        #[test]
        fn any_before_in_a_query_string_is_a_page_or_a_clear_refusal(before in "\\PC{0,30}", raw in "[ -~]{0,30}") {
            // percent-encoded (any text) and raw (whatever a URL bar sends)
            for q in [format!("before={}", percent_encoded(&before)), format!("name=x&before={raw}")] {
                let Ok(uri) = format!("/endpoint?{q}").parse::<axum::http::Uri>() else { continue };
                let Ok(params) = axum::extract::Query::<Params>::try_from_uri(&uri) else { continue };
                match params.0.query() {
                    Ok(page) => prop_assert!(page.before.is_some() || params.0.before.as_deref().is_none_or(str::is_empty)),
                    Err(e) => prop_assert!(e.to_string().contains("before=")),
                }
            }
        }
    }
}
