//! The read side of the class view: each remote endpoint with what the
//! instructor watches (last seen, events per second, losses, detections),
//! and an endpoint's stored events a page at a time, newest first.
//!
//! The queries read the tables of [`super::db`]; the indexes they need
//! are made here ([`EndpointView::open`]) so that a page costs a few index
//! lookups, not a scan of every event the class ever sent.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ioclab_agent::remote::pin::Fingerprint;
use serde::Serialize;
use sqlx::sqlite::SqlitePool;
use sqlx::Row;

use super::db::{EndpointDb, EndpointError, EndpointRow};
use crate::users::UserName;

/// An endpoint not heard from for longer than this is shown stale (agents ship at least every few seconds).
pub const STALE_AFTER_SECS: i64 = 30;
/// Events per second are counted over this last stretch.
pub const RATE_WINDOW_SECS: i64 = 60;
/// Most events in one page of an endpoint's events.
pub const MAX_PAGE: u32 = 500;

/// What the class view's queries need beyond the store's own: the rate
/// over the last minute, the detections (few rows: partial) and the
/// losses (`event_loss`, rarer still).
const INDEXES: &[&str] = &[
    "CREATE INDEX IF NOT EXISTS endpoint_events_received ON endpoint_events (token, endpoint, received)",
    "CREATE INDEX IF NOT EXISTS endpoint_events_detections ON endpoint_events (token, endpoint) WHERE detection = 1",
    "CREATE INDEX IF NOT EXISTS endpoint_events_losses ON endpoint_events (token, endpoint) WHERE name = 'event_loss'",
];

/// What the class view adds to each endpoint of [`EndpointDb::endpoints`]:
/// its counts; `?1`: the rate window's start. The losses name their index:
/// on few rows the planner would take the rate's and read every event of
/// the endpoint.
const COUNTS_SQL: &str = "SELECT t.name AS token, e.endpoint AS endpoint, t.revoked IS NOT NULL AS revoked,
        (SELECT COUNT(*) FROM endpoint_events v
          WHERE v.token = e.token AND v.endpoint = e.endpoint AND v.received > ?1) AS recent,
        (SELECT COUNT(*) FROM endpoint_events v
          WHERE v.token = e.token AND v.endpoint = e.endpoint AND v.detection = 1) AS detections,
        (SELECT COUNT(*) FROM endpoint_events v INDEXED BY endpoint_events_losses
          WHERE v.token = e.token AND v.endpoint = e.endpoint AND v.name = 'event_loss') AS losses,
        (SELECT COALESCE(SUM(CAST(json_extract(v.line, '$.data.lost') AS INTEGER)), 0)
          FROM endpoint_events v INDEXED BY endpoint_events_losses
          WHERE v.token = e.token AND v.endpoint = e.endpoint AND v.name = 'event_loss') AS lost
     FROM endpoints e JOIN endpoint_tokens t ON t.id = e.token";

/// A page of an endpoint's events: `?1` token name, `?2` endpoint, `?3` below this id, `?4` how many.
fn events_sql(detections: bool) -> String {
    // the index named: without statistics the planner may take another and sort
    let (index, only) = match detections {
        true => ("endpoint_events_detections", " AND detection = 1"),
        false => ("endpoint_events_by_token", ""),
    };
    format!(
        "SELECT id, uuid, name, detection, received, line FROM endpoint_events INDEXED BY {index}
         WHERE token = (SELECT id FROM endpoint_tokens WHERE name = ?1) AND endpoint = ?2 AND id < ?3{only}
         ORDER BY id DESC LIMIT ?4"
    )
}

/// The endpoint store as the class pages see it, with where agents reach the appliance.
#[derive(Debug, Clone)]
pub struct EndpointView {
    db: EndpointDb,
    listen: SocketAddr,
    fingerprint: Fingerprint,
    // set when the appliance stops: the live streams of the class pages end
    closed: Arc<AtomicBool>,
}

/// One endpoint of the class: the store's row and what the class view counts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassEndpoint {
    /// Its token, group, name, agent version, last batch, events and last push.
    #[serde(flatten)]
    pub row: EndpointRow,
    /// Seconds since its last batch or report.
    pub ago: i64,
    /// Not heard from for longer than [`STALE_AFTER_SECS`].
    pub stale: bool,
    /// Events per second over the last [`RATE_WINDOW_SECS`].
    pub per_second: f64,
    /// Its `event_loss` events (the agent dropped events, and said so).
    pub losses: i64,
    /// The events they say were lost.
    pub lost: i64,
    /// Its events that matched an IoC.
    pub detections: i64,
    /// Its token is revoked: what it sends is refused.
    pub revoked: bool,
}

impl ClassEndpoint {
    /// `last_seen` as UTC text.
    pub fn last_seen_text(&self) -> String {
        ioclab_lab::run::folder::utc_stamp(self.row.last_seen)
    }

    /// How long ago it was last seen, for people: `12 s`, `5 min`, `3 h`, `2 days`.
    pub fn ago_text(&self) -> String {
        match self.ago.max(0) {
            s @ 0..=119 => format!("{s} s"),
            s @ 120..=7199 => format!("{} min", s / 60),
            s @ 7200..=172_799 => format!("{} h", s / 3600),
            s => format!("{} days", s / 86_400),
        }
    }

    /// The endpoint's page.
    pub fn href(&self) -> String {
        endpoint_href(&self.row.token, &self.row.endpoint)
    }
}

/// An endpoint's counts, from [`COUNTS_SQL`].
#[derive(Default)]
struct Counts {
    recent: i64,
    losses: i64,
    lost: i64,
    detections: i64,
    revoked: bool,
}

/// The page of `token`'s endpoint `endpoint` (the name percent-encoded: it is the agent's).
pub fn endpoint_href(token: &UserName, endpoint: &str) -> String {
    format!("/class/endpoints/{token}/{}", encode_segment(endpoint))
}

/// `s` as one URL path segment.
pub fn encode_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Which of an endpoint's events, and from where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventsQuery {
    /// Only the events that matched an IoC.
    pub detections: bool,
    /// Only events older than this id (the previous page's `next`).
    pub before: Option<i64>,
    /// At most this many (1 to [`MAX_PAGE`]).
    pub limit: u32,
}

/// One stored event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredEvent {
    /// Its row id: the cursor of the pages.
    pub id: i64,
    /// `info.event.uuid`.
    pub uuid: String,
    /// `info.event.name`.
    pub name: String,
    /// Whether it matched an IoC.
    pub detection: bool,
    /// When the appliance stored it, epoch seconds.
    pub received: i64,
    /// The event's JSON line, as the agent sent it.
    pub line: String,
}

/// A page of an endpoint's events, newest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventsPage {
    /// The events.
    pub events: Vec<StoredEvent>,
    /// The `before` of the next page; `None` on the last.
    pub next: Option<i64>,
}

/// What changes the class list: compared between two looks to tell a page to refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Generation {
    last_event: i64,
    last_seen: i64,
    endpoints: i64,
    tokens: i64,
    revoked: i64,
}

impl EndpointView {
    /// The view over `db`, whose listener is `listen` with certificate
    /// `fingerprint`; makes the indexes its queries use.
    pub async fn open(db: EndpointDb, listen: SocketAddr, fingerprint: Fingerprint) -> Result<Self, EndpointError> {
        for sql in INDEXES {
            sqlx::query(sql).execute(db.pool()).await.map_err(|e| db.error(e))?;
        }
        Ok(EndpointView { db, listen, fingerprint, closed: Arc::default() })
    }

    /// Ends the class pages' live streams (the appliance stops: its graceful stop waits for open streams).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    /// Whether [`EndpointView::close`] was called.
    pub fn closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// The store.
    pub fn db(&self) -> &EndpointDb {
        &self.db
    }

    /// The certificate's fingerprint agents pin.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The URL agents give as `--appliance`: the listener's address, or,
    /// when it listens on every address, `host` (the name the browser used
    /// to reach the web UI, without its port) with the listener's port.
    pub fn appliance_url(&self, host: Option<&str>) -> String {
        let ip = self.listen.ip();
        let port = self.listen.port();
        match host.and_then(host_name) {
            Some(h) if ip.is_unspecified() => format!("https://{h}:{port}"),
            _ if ip.is_ipv6() => format!("https://[{ip}]:{port}"),
            _ => format!("https://{ip}:{port}"),
        }
    }

    /// The agent's command line for the token whose secret is `secret`.
    pub fn agent_command(&self, host: Option<&str>, secret: &str) -> String {
        format!(
            "sudo ioclab agent --appliance {} --token {secret} --fingerprint {}",
            self.appliance_url(host),
            self.fingerprint
        )
    }

    fn pool(&self) -> &SqlitePool {
        self.db.pool()
    }

    /// Every endpoint, by trainee or team then name, as of `now` (epoch seconds).
    pub async fn endpoints(&self, now: i64) -> Result<Vec<ClassEndpoint>, EndpointError> {
        let rows = self.db.endpoints().await?;
        let counted = sqlx::query(COUNTS_SQL)
            .bind(now - RATE_WINDOW_SECS)
            .fetch_all(self.pool())
            .await
            .map_err(|e| self.db.error(e))?;
        let mut counts = HashMap::with_capacity(counted.len());
        for r in &counted {
            let get = |e| self.db.error(e);
            let key: (String, String) = (r.try_get("token").map_err(get)?, r.try_get("endpoint").map_err(get)?);
            let c = Counts {
                recent: r.try_get("recent").map_err(get)?,
                losses: r.try_get("losses").map_err(get)?,
                lost: r.try_get("lost").map_err(get)?,
                detections: r.try_get("detections").map_err(get)?,
                revoked: r.try_get("revoked").map_err(get)?,
            };
            counts.insert(key, c);
        }
        Ok(rows
            .into_iter()
            .map(|row| {
                // an endpoint that joined between the two reads has no counts yet
                let c = counts.remove(&(row.token.to_string(), row.endpoint.clone())).unwrap_or_default();
                ClassEndpoint {
                    ago: now - row.last_seen,
                    stale: now - row.last_seen > STALE_AFTER_SECS,
                    per_second: c.recent as f64 / RATE_WINDOW_SECS as f64,
                    losses: c.losses,
                    lost: c.lost,
                    detections: c.detections,
                    revoked: c.revoked,
                    row,
                }
            })
            .collect())
    }

    /// Whether `token` has an endpoint named `endpoint`.
    pub async fn exists(&self, token: &UserName, endpoint: &str) -> Result<bool, EndpointError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM endpoints e JOIN endpoint_tokens t ON t.id = e.token
             WHERE t.name = ? AND e.endpoint = ?",
        )
        .bind(token.as_str())
        .bind(endpoint)
        .fetch_one(self.pool())
        .await
        .map_err(|e| self.db.error(e))?;
        Ok(n > 0)
    }

    /// A page of `token`'s endpoint `endpoint`'s events, newest first.
    pub async fn events(&self, token: &UserName, endpoint: &str, q: EventsQuery) -> Result<EventsPage, EndpointError> {
        let limit = q.limit.clamp(1, MAX_PAGE);
        let sql = events_sql(q.detections);
        let rows = sqlx::query(&sql)
            .bind(token.as_str())
            .bind(endpoint)
            .bind(q.before.unwrap_or(i64::MAX))
            .bind(i64::from(limit) + 1)
            .fetch_all(self.pool())
            .await
            .map_err(|e| self.db.error(e))?;
        let mut events = Vec::with_capacity(rows.len());
        for r in &rows {
            let get = |e| self.db.error(e);
            events.push(StoredEvent {
                id: r.try_get("id").map_err(get)?,
                uuid: r.try_get("uuid").map_err(get)?,
                name: r.try_get("name").map_err(get)?,
                detection: r.try_get("detection").map_err(get)?,
                received: r.try_get("received").map_err(get)?,
                line: r.try_get("line").map_err(get)?,
            });
        }
        let next = if events.len() > limit as usize {
            events.truncate(limit as usize);
            events.last().map(|e| e.id)
        } else {
            None
        };
        Ok(EventsPage { events, next })
    }

    /// What the class list shows has changed since `before` when this differs from it.
    pub async fn generation(&self) -> Result<Generation, EndpointError> {
        let r = sqlx::query(
            "SELECT (SELECT COALESCE(MAX(id), 0) FROM endpoint_events) AS last_event,
                    (SELECT COALESCE(MAX(last_seen), 0) FROM endpoints) AS last_seen,
                    (SELECT COUNT(*) FROM endpoints) AS endpoints,
                    (SELECT COUNT(*) FROM endpoint_tokens) AS tokens,
                    (SELECT COUNT(revoked) FROM endpoint_tokens) AS revoked",
        )
        .fetch_one(self.pool())
        .await
        .map_err(|e| self.db.error(e))?;
        let get = |e| self.db.error(e);
        Ok(Generation {
            last_event: r.try_get("last_event").map_err(get)?,
            last_seen: r.try_get("last_seen").map_err(get)?,
            endpoints: r.try_get("endpoints").map_err(get)?,
            tokens: r.try_get("tokens").map_err(get)?,
            revoked: r.try_get("revoked").map_err(get)?,
        })
    }
}

/// The host part of an HTTP `Host` header (`name`, `name:port`, `[v6]:port`), if it is a plausible host name.
fn host_name(host: &str) -> Option<String> {
    let h = if let Some(rest) = host.strip_prefix('[') {
        format!("[{}]", rest.split(']').next()?)
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h).to_string()
    };
    let ok = !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    ok.then_some(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_header_gives_the_host_without_its_port() {
        assert_eq!(host_name("lab.example:8000").as_deref(), Some("lab.example"));
        assert_eq!(host_name("192.168.56.10").as_deref(), Some("192.168.56.10"));
        assert_eq!(host_name("[fd00::1]:8000").as_deref(), Some("[fd00::1]"));
        assert_eq!(host_name("evil\"host"), None);
        assert_eq!(host_name(""), None);
    }

    #[test]
    fn endpoint_names_are_encoded_as_one_segment() {
        let t: UserName = "alice".parse().unwrap();
        assert_eq!(endpoint_href(&t, "pc 01/x"), "/class/endpoints/alice/pc%2001%2Fx");
    }

    #[test]
    fn last_seen_reads_as_a_duration() {
        let row = EndpointRow {
            token: "alice".parse().unwrap(),
            group: None,
            endpoint: "pc".into(),
            agent_version: String::new(),
            last_seen: 0,
            events: 0,
            last_push: None,
        };
        let at = |ago| ClassEndpoint {
            row: row.clone(),
            ago,
            stale: false,
            per_second: 0.0,
            losses: 0,
            lost: 0,
            detections: 0,
            revoked: false,
        };
        let texts: Vec<String> = [-3, 59, 119, 120, 7199, 7200, 172_800].map(|s| at(s).ago_text()).to_vec();
        assert_eq!(texts, ["0 s", "59 s", "119 s", "2 min", "119 min", "2 h", "2 days"]);
    }

    /// SQLite's plan for `sql`: one line per step.
    async fn plan(pool: &SqlitePool, sql: &str) -> String {
        let rows = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}")).fetch_all(pool).await.unwrap();
        rows.iter().map(|r| r.get::<String, _>("detail")).collect::<Vec<_>>().join("\n")
    }

    #[tokio::test]
    async fn the_pages_read_through_indexes_not_a_scan_of_every_event() {
        let dir = tempfile::tempdir().unwrap();
        let db = EndpointDb::open(&dir.path().join("web.db")).await.unwrap();
        let view = EndpointView::open(db, "127.0.0.1:8443".parse().unwrap(), Fingerprint::of(b"x")).await.unwrap();
        let detections = plan(view.pool(), &events_sql(true)).await;
        let all = plan(view.pool(), &events_sql(false)).await;
        assert!(detections.contains("endpoint_events_detections"), "{detections}");
        assert!(!detections.contains("TEMP B-TREE") && !all.contains("TEMP B-TREE"), "no sort: {detections}\n{all}");
        assert!(all.contains("USING INDEX endpoint_events_by_token"), "{all}");
        let list = plan(view.pool(), COUNTS_SQL).await;
        for index in ["endpoint_events_received", "endpoint_events_detections", "endpoint_events_losses"] {
            assert!(list.contains(index), "{index} in {list}");
        }
        assert!(!list.contains("SCAN v") && !all.contains("SCAN endpoint_events"), "{list}\n{all}");
    }
}
