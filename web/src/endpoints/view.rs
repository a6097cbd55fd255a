//! The read side of the class view: each remote endpoint with what the
//! instructor watches (last seen, events per second, losses, detections),
//! and an endpoint's stored events a page at a time, newest first.
//!
//! The queries read the tables of [`super::db`]; the indexes they need
//! are made here ([`EndpointView::open`]) so that a page costs a few index
//! lookups, not a scan of every event the class ever sent.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ioclab_agent::remote::pin::Fingerprint;
use serde::Serialize;
use sqlx::sqlite::SqlitePool;
use sqlx::Row;

use super::db::{EndpointDb, EndpointError};
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

/// Every endpoint with its counts; `?1`: the rate window's start. The
/// losses name their index: on few rows the planner would take the rate's
/// and read every event of the endpoint.
const LIST_SQL: &str =
    "SELECT t.name AS token, t.grp AS grp, e.push AS push, e.push_ok AS push_ok, e.push_message AS push_message,
            e.endpoint, e.agent_version, e.last_seen, e.events, t.revoked IS NOT NULL AS revoked,
                (SELECT COUNT(*) FROM endpoint_events v
                  WHERE v.token = e.token AND v.endpoint = e.endpoint AND v.received > ?1) AS recent,
                (SELECT COUNT(*) FROM endpoint_events v
                  WHERE v.token = e.token AND v.endpoint = e.endpoint AND v.detection = 1) AS detections,
                (SELECT COUNT(*) FROM endpoint_events v INDEXED BY endpoint_events_losses
                  WHERE v.token = e.token AND v.endpoint = e.endpoint AND v.name = 'event_loss') AS losses,
                (SELECT COALESCE(SUM(CAST(json_extract(v.line, '$.data.lost') AS INTEGER)), 0)
                  FROM endpoint_events v INDEXED BY endpoint_events_losses
                  WHERE v.token = e.token AND v.endpoint = e.endpoint AND v.name = 'event_loss') AS lost
             FROM endpoints e JOIN endpoint_tokens t ON t.id = e.token
             ORDER BY t.name, e.endpoint";

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

/// One endpoint of the class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointRow {
    /// The enrolment token it sends with: the trainee or team.
    pub token: UserName,
    /// The token's group, if any.
    pub group: Option<UserName>,
    /// The endpoint's name (the agent's `--name`, by default its host name).
    pub endpoint: String,
    /// The agent's version, from its last batch.
    pub agent_version: String,
    /// Its last batch, epoch seconds.
    pub last_seen: i64,
    /// Not heard from for longer than [`STALE_AFTER_SECS`].
    pub stale: bool,
    /// Events stored from it.
    pub events: i64,
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
    /// The last IoC push it reported on: its id, whether it applied it, its agent's message.
    pub push: Option<(i64, bool, String)>,
}

impl EndpointRow {
    /// `last_seen` as UTC text.
    pub fn last_seen_text(&self) -> String {
        ioclab_lab::run::folder::utc_stamp(self.last_seen)
    }

    /// The endpoint's page.
    pub fn href(&self) -> String {
        endpoint_href(&self.token, &self.endpoint)
    }
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
    pub async fn endpoints(&self, now: i64) -> Result<Vec<EndpointRow>, EndpointError> {
        let rows = sqlx::query(LIST_SQL)
            .bind(now - RATE_WINDOW_SECS)
            .fetch_all(self.pool())
            .await
            .map_err(|e| self.db.error(e))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let get = |e| self.db.error(e);
            let token: String = r.try_get("token").map_err(get)?;
            let last_seen: i64 = r.try_get("last_seen").map_err(get)?;
            let recent: i64 = r.try_get("recent").map_err(get)?;
            out.push(EndpointRow {
                token: token.parse().map_err(|e: String| self.db.error(sqlx::Error::Decode(e.into())))?,
                endpoint: r.try_get("endpoint").map_err(get)?,
                agent_version: r.try_get("agent_version").map_err(get)?,
                stale: now - last_seen > STALE_AFTER_SECS,
                last_seen,
                events: r.try_get("events").map_err(get)?,
                per_second: recent as f64 / RATE_WINDOW_SECS as f64,
                losses: r.try_get("losses").map_err(get)?,
                lost: r.try_get("lost").map_err(get)?,
                detections: r.try_get("detections").map_err(get)?,
                revoked: r.try_get("revoked").map_err(get)?,
                group: r.try_get::<Option<String>, _>("grp").map_err(get)?.and_then(|g| g.parse().ok()),
                push: match r.try_get::<Option<i64>, _>("push").map_err(get)? {
                    Some(id) => Some((
                        id,
                        r.try_get::<Option<bool>, _>("push_ok").map_err(get)?.unwrap_or(false),
                        r.try_get::<Option<String>, _>("push_message").map_err(get)?.unwrap_or_default(),
                    )),
                    None => None,
                },
            });
        }
        Ok(out)
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
        let list = plan(view.pool(), LIST_SQL).await;
        for index in ["endpoint_events_received", "endpoint_events_detections", "endpoint_events_losses"] {
            assert!(list.contains(index), "{index} in {list}");
        }
        assert!(!list.contains("SCAN v") && !all.contains("SCAN endpoint_events"), "{list}\n{all}");
    }
}
