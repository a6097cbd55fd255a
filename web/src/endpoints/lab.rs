//! A trainee's enrolled endpoint as the lab engine's
//! [`RemoteEndpoint`]: a run on it (`expect.endpoint: trainee`) pushes its
//! IoCs through the endpoint store's push (the agent's IoC order) and waits
//! for the agent's report, and reads the endpoint's stored events by row id.
//! Its steps go to the agent (a steps order) only when the agent polls with
//! `--allow-steps`; the run then waits for the agent's outcome.
//!
//! Whose endpoints: a trainee's are those enrolled with the token named as
//! their login (`ioclab endpoints token create --name alice`); an
//! instructor may start a run on any.

use std::time::{Duration, Instant};

use ioclab_agent::remote::wire::OrderKind;
use ioclab_lab::engine::remote::{RemoteEndpoint, RemoteError, RemoteEvent, StepsOrder};
use serde::Serialize;
use sqlx::Row;

use super::db::{EndpointDb, EndpointError, PushTarget};
use crate::users::UserName;

/// How often a wait for the agent's report looks again.
const POLL: Duration = Duration::from_millis(200);

/// One enrolled endpoint: its token's name and its own (`--name`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct EndpointRef {
    /// The token's name (the trainee's login, or a team).
    pub token: UserName,
    /// The endpoint's name.
    pub endpoint: String,
}

impl std::fmt::Display for EndpointRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.token, self.endpoint)
    }
}

impl EndpointRef {
    /// Reads `token/endpoint` (the form's value).
    pub fn parse(text: &str) -> Option<EndpointRef> {
        let (token, endpoint) = text.split_once('/')?;
        if endpoint.is_empty() {
            return None;
        }
        Some(EndpointRef { token: token.parse().ok()?, endpoint: endpoint.to_string() })
    }
}

/// The endpoints that reported with a live token, of `token` only when given, sorted.
pub async fn endpoints_of(db: &EndpointDb, token: Option<&UserName>) -> Result<Vec<EndpointRef>, EndpointError> {
    let rows = sqlx::query(
        "SELECT t.name, e.endpoint FROM endpoints e JOIN endpoint_tokens t ON t.id = e.token
         WHERE t.revoked IS NULL AND (?1 IS NULL OR t.name = ?1) ORDER BY t.name, e.endpoint",
    )
    .bind(token.map(UserName::as_str))
    .fetch_all(db.pool())
    .await
    .map_err(|e| db.error(e))?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            Some(EndpointRef { token: r.try_get::<String, _>(0).ok()?.parse().ok()?, endpoint: r.try_get(1).ok()? })
        })
        .collect())
}

/// An enrolled endpoint a run targets, over the endpoint store. Its calls
/// block on `rt` (the engine calls them from its run threads).
#[derive(Debug, Clone)]
pub struct TraineeEndpoint {
    db: EndpointDb,
    target: EndpointRef,
    rt: tokio::runtime::Handle,
}

impl TraineeEndpoint {
    /// `target` in `db`; blocking calls run on `rt`.
    pub fn new(db: EndpointDb, target: EndpointRef, rt: tokio::runtime::Handle) -> TraineeEndpoint {
        TraineeEndpoint { db, target, rt }
    }

    fn err(e: impl std::fmt::Display) -> RemoteError {
        RemoteError(e.to_string())
    }
}

impl RemoteEndpoint for TraineeEndpoint {
    fn name(&self) -> String {
        self.target.to_string()
    }

    fn push_iocs(&self, label: &str, lines: &str, timeout: Duration) -> Result<String, RemoteError> {
        let target = PushTarget::Endpoint { token: self.target.token.clone(), endpoint: self.target.endpoint.clone() };
        let id = self.rt.block_on(self.db.push_iocs(&target, label, lines)).map_err(Self::err)?;
        let deadline = Instant::now() + timeout;
        loop {
            let pushes = self.rt.block_on(self.db.pushes()).map_err(Self::err)?;
            let report = pushes.iter().find(|p| p.id == id).and_then(|p| {
                p.applied.iter().find(|a| a.token == self.target.token && a.endpoint == self.target.endpoint).cloned()
            });
            match report {
                Some(a) if a.ok => return Ok(a.message),
                Some(a) => return Err(RemoteError(format!("the agent refused the IoCs: {}", a.message))),
                None if Instant::now() >= deadline => {
                    return Err(RemoteError(format!(
                        "its agent did not report applying push {id} within {} s (is it running?)",
                        timeout.as_secs()
                    )))
                }
                None => std::thread::sleep(POLL),
            }
        }
    }

    fn current_iocs(&self) -> Result<String, RemoteError> {
        let tokens = self.rt.block_on(self.db.tokens()).map_err(Self::err)?;
        let Some(token) = tokens.iter().find(|t| t.name == self.target.token) else {
            return Err(RemoteError(format!("no enrolment token {}", self.target.token)));
        };
        // the order its agent would get from scratch: the newest push targeting it
        let order = self.rt.block_on(self.db.push_for(token, &self.target.endpoint, 0)).map_err(Self::err)?;
        Ok(match order.map(|o| o.kind) {
            Some(OrderKind::Iocs { lines, .. }) => lines,
            _ => String::new(),
        })
    }

    fn position(&self) -> Result<u64, RemoteError> {
        let max: Option<i64> = self
            .rt
            .block_on(
                sqlx::query_scalar(
                    "SELECT MAX(e.id) FROM endpoint_events e JOIN endpoint_tokens t ON t.id = e.token
                     WHERE t.name = ? AND e.endpoint = ?",
                )
                .bind(self.target.token.as_str())
                .bind(&self.target.endpoint)
                .fetch_one(self.db.pool()),
            )
            .map_err(Self::err)?;
        Ok(max.unwrap_or(0).max(0) as u64)
    }

    fn events_after(&self, position: u64, limit: usize) -> Result<Vec<RemoteEvent>, RemoteError> {
        let rows = self
            .rt
            .block_on(
                sqlx::query(
                    "SELECT e.id, e.line FROM endpoint_events e JOIN endpoint_tokens t ON t.id = e.token
                     WHERE t.name = ? AND e.endpoint = ? AND e.id > ? ORDER BY e.id LIMIT ?",
                )
                .bind(self.target.token.as_str())
                .bind(&self.target.endpoint)
                .bind(position.min(i64::MAX as u64) as i64)
                .bind(limit.min(i64::MAX as usize) as i64)
                .fetch_all(self.db.pool()),
            )
            .map_err(Self::err)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: i64 = r.try_get(0).map_err(Self::err)?;
            let line: String = r.try_get(1).map_err(Self::err)?;
            // stored lines were parsed when the batch came in: one that no longer parses is skipped, said
            match serde_json::from_str(&line) {
                Ok(event) => out.push(RemoteEvent { position: id as u64, event }),
                Err(e) => tracing::warn!("endpoint {}: stored event {id} is not JSON: {e}", self.target),
            }
        }
        Ok(out)
    }

    fn allows_steps(&self) -> bool {
        match self.rt.block_on(self.db.allows_steps(&self.target.token, &self.target.endpoint)) {
            Ok(allowed) => allowed,
            Err(e) => {
                // unknown: the trainee is asked to run them, which is always safe
                tracing::warn!("endpoint {}: whether it allows steps: {e}", self.target);
                false
            }
        }
    }

    fn run_steps(&self, order: &StepsOrder, timeout: Duration) -> Result<String, RemoteError> {
        let body = serde_json::to_string(order).map_err(Self::err)?;
        // not handed out within the wait, the order is never sent: no stale steps later
        let id = self
            .rt
            .block_on(self.db.queue_steps(&self.target.token, &self.target.endpoint, &body, timeout))
            .map_err(Self::err)?;
        let deadline = Instant::now() + timeout;
        loop {
            match self.rt.block_on(self.db.steps_done(id)).map_err(Self::err)? {
                Some(done) if done.ok => return Ok(done.message),
                Some(done) => return Err(RemoteError(format!("its agent did not run them: {}", done.message))),
                None if Instant::now() >= deadline => {
                    let _ = self.rt.block_on(self.db.withdraw_steps(id));
                    return Err(RemoteError(format!(
                        "its agent did not report steps order {id} within {} s (is it running?)",
                        timeout.as_secs()
                    )));
                }
                None => std::thread::sleep(POLL),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ioclab_agent::remote::wire::{Batch, BatchHeader, OrderDone, OrdersQuery};

    // IoC sets the agents' check takes (an empty or non-IoC set is refused before it is stored)
    const R1: &str = "{\"value\":\"r1.example\",\"severity\":4}\n";
    const R2: &str = "{\"value\":\"r2.example\",\"severity\":4}\n";
    const BOB: &str = "{\"value\":\"bob.example\",\"severity\":4}\n";

    fn event(n: u32) -> String {
        format!(
            r#"{{"info":{{"event":{{"name":"execve","uuid":"00000000-0000-4000-8000-{n:012}"}}}},"data":{{"n":{n}}}}}"#
        )
    }

    async fn ship(db: &EndpointDb, token: &super::super::EnrolToken, endpoint: &str, ns: &[u32]) {
        let header = BatchHeader { batch: format!("b{}", ns[0]), endpoint: endpoint.into(), agent_version: "t".into() };
        let mut body = header.to_line();
        for n in ns {
            body.extend(event(*n).into_bytes());
            body.push(b'\n');
        }
        db.store_batch(token, Batch::parse(&body).unwrap()).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_endpoint_reads_its_own_events_waits_for_its_report_and_never_takes_steps() {
        let dir = tempfile::tempdir().unwrap();
        let db = EndpointDb::open(&dir.path().join("web.db")).await.unwrap();
        let (alice, _) = db.create_token(Some("alice".parse().unwrap())).await.unwrap();
        let (bob, _) = db.create_token(Some("bob".parse().unwrap())).await.unwrap();
        ship(&db, &alice, "laptop", &[1]).await;
        ship(&db, &bob, "laptop", &[2]).await;
        ship(&db, &alice, "desktop", &[3]).await;
        let listed = endpoints_of(&db, Some(&"alice".parse().unwrap())).await.unwrap();
        assert_eq!(listed.iter().map(ToString::to_string).collect::<Vec<_>>(), ["alice/desktop", "alice/laptop"]);
        assert_eq!(endpoints_of(&db, None).await.unwrap().len(), 3);

        let target = EndpointRef::parse("alice/laptop").unwrap();
        let e = TraineeEndpoint::new(db.clone(), target, tokio::runtime::Handle::current());
        let (from, none) = {
            let e = e.clone();
            tokio::task::spawn_blocking(move || (e.position().unwrap(), e.events_after(u64::MAX >> 1, 10).unwrap()))
                .await
                .unwrap()
        };
        assert!(none.is_empty());
        ship(&db, &alice, "laptop", &[4, 5]).await;
        ship(&db, &bob, "laptop", &[6]).await;
        let after = {
            let e = e.clone();
            tokio::task::spawn_blocking(move || e.events_after(from, 10).unwrap()).await.unwrap()
        };
        let ns: Vec<u64> = after.iter().map(|r| r.event["data"]["n"].as_u64().unwrap()).collect();
        assert_eq!(ns, [4, 5], "alice's laptop's events after the start only");
        assert!(after[0].position < after[1].position);

        // no report: the wait ends, naming the push
        let waited = {
            let e = e.clone();
            tokio::task::spawn_blocking(move || e.push_iocs("run r1", R1, Duration::from_millis(300))).await.unwrap()
        };
        assert!(waited.unwrap_err().0.contains("did not report applying push 1"));
        // the agent's report (as ingest records it) ends the wait with its message
        let pushing = {
            let e = e.clone();
            tokio::task::spawn_blocking(move || e.push_iocs("run r2", R2, Duration::from_secs(60)))
        };
        let order = loop {
            if let Some(o) = db.push_for(&alice, "laptop", 1).await.unwrap() {
                break o;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let done = OrderDone { ok: true, message: "3 IoCs loaded".into() };
        db.record_done(&alice, "laptop", order.id, &done).await.unwrap();
        assert_eq!(pushing.await.unwrap().unwrap(), "3 IoCs loaded");
        // its set now: the newest push targeting it (a later one to another endpoint is not)
        let other = PushTarget::Endpoint { token: "bob".parse().unwrap(), endpoint: "laptop".into() };
        db.push_iocs(&other, "bob's", BOB).await.unwrap();
        let current = {
            let e = e.clone();
            tokio::task::spawn_blocking(move || e.current_iocs().unwrap()).await.unwrap()
        };
        assert_eq!(current, R2);

        // its agent never said --allow-steps: no steps for it
        let (allowed, refused) = tokio::task::spawn_blocking(move || {
            (e.allows_steps(), e.run_steps(&steps_order(), Duration::from_secs(1)).unwrap_err())
        })
        .await
        .unwrap();
        assert!(!allowed);
        assert!(refused.0.contains("did not join with --allow-steps"), "{refused}");
    }

    fn steps_order() -> StepsOrder {
        StepsOrder {
            scenario: "dns-ioc-why-kunai-rocks".parse().unwrap(),
            run: "r7".into(),
            network: Default::default(),
            steps: vec![ioclab_lab::engine::remote::OrderedStep {
                id: "dig".parse().unwrap(),
                executor: ioclab_lab::scenario::Executor::Sh,
                command: "dig why.kunai.rocks".into(),
                timeout_secs: 10,
            }],
        }
    }

    fn poll(endpoint: &str, allow_steps: bool) -> OrdersQuery {
        OrdersQuery { endpoint: endpoint.into(), after: 0, allow_steps }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_steps_order_goes_once_to_its_own_endpoint_that_allows_steps_and_waits_for_its_report() {
        let dir = tempfile::tempdir().unwrap();
        let db = EndpointDb::open(&dir.path().join("web.db")).await.unwrap();
        let (alice, _) = db.create_token(Some("alice".parse().unwrap())).await.unwrap();
        let (bob, _) = db.create_token(Some("bob".parse().unwrap())).await.unwrap();
        let e = TraineeEndpoint::new(
            db.clone(),
            EndpointRef::parse("alice/laptop").unwrap(),
            tokio::runtime::Handle::current(),
        );
        let blocking = |e: &TraineeEndpoint| {
            let e = e.clone();
            tokio::task::spawn_blocking(move || {
                (e.allows_steps(), e.run_steps(&steps_order(), Duration::from_millis(300)))
            })
        };
        // never announced, then announced without the flag: refused, nothing queued
        for announce in [None, Some(false)] {
            if let Some(a) = announce {
                db.announce(&alice, "laptop", a).await.unwrap();
            }
            let (allowed, ran) = blocking(&e).await.unwrap();
            assert!(!allowed);
            assert!(ran.unwrap_err().0.contains("did not join with --allow-steps"), "{announce:?}");
            assert!(db.order_for(&alice, &poll("laptop", true)).await.unwrap().is_none(), "a refused order was queued");
        }
        // alice's laptop allows steps now
        db.announce(&alice, "laptop", true).await.unwrap();
        let running = {
            let e = e.clone();
            tokio::task::spawn_blocking(move || {
                (e.allows_steps(), e.run_steps(&steps_order(), Duration::from_secs(60)))
            })
        };
        let order = loop {
            // the other endpoint of alice, bob's laptop and a poll without the flag get nothing
            assert!(db.order_for(&alice, &poll("desktop", true)).await.unwrap().is_none());
            assert!(db.order_for(&bob, &poll("laptop", true)).await.unwrap().is_none());
            assert!(db.order_for(&alice, &poll("laptop", false)).await.unwrap().is_none());
            if let Some(o) = db.order_for(&alice, &poll("laptop", true)).await.unwrap() {
                break o;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let OrderKind::Steps { order: body } = &order.kind else { panic!("not a steps order: {order:?}") };
        let sent: StepsOrder = serde_json::from_value(body.clone()).unwrap();
        assert_eq!((sent.run.as_str(), sent.steps.len()), ("r7", 1));
        assert!(db.order_for(&alice, &poll("laptop", true)).await.unwrap().is_none(), "handed out twice");
        // only its own endpoint's report counts, and only once
        let done = OrderDone { ok: true, message: "dig exited 0".into() };
        assert!(!db.record_steps_done(&bob, "laptop", order.id, &done).await.unwrap());
        assert!(db.record_steps_done(&alice, "laptop", order.id, &done).await.unwrap());
        assert!(!db.record_steps_done(&alice, "laptop", order.id, &done).await.unwrap(), "answered twice");
        let (allowed, ran) = running.await.unwrap();
        assert!(allowed);
        assert_eq!(ran.unwrap(), "dig exited 0");

        // not taken in time: withdrawn, never sent to an agent polling later
        let (_, ran) = blocking(&e).await.unwrap();
        assert!(ran.unwrap_err().0.contains("did not report steps order"));
        assert!(db.order_for(&alice, &poll("laptop", true)).await.unwrap().is_none(), "a stale steps order was sent");
        // and an IoC push is not hidden by steps: it still comes
        let target = PushTarget::Endpoint { token: "alice".parse().unwrap(), endpoint: "laptop".into() };
        let push = db.push_iocs(&target, "day 1", "{\"value\":\"kunai.rocks\",\"severity\":4}\n").await.unwrap();
        assert_eq!(db.order_for(&alice, &poll("laptop", true)).await.unwrap().unwrap().id, push as u64);
    }
}
