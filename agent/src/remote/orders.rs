//! Orders from the appliance: the agent long-polls for the newest one,
//! applies it, and reports how it went.
//!
//! An IoC order is kept in the agent's state as the pushed IoC file
//! ([`PushedIocs`]), written atomically and only once the agent's own IoC
//! parser accepts it whole, so the file always holds the last good push
//! and a restarted agent matches it from its first event.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::ship::{answer, chain, Appliance, ShipError};
use super::wire::{order_done_path, Order, OrderDone, OrderKind, OrdersQuery, ORDERS_PATH};
use crate::ioc::loader::check_data;

/// The order half of a remote agent: long-polls and reports.
#[derive(Clone)]
pub struct OrderClient {
    client: reqwest::Client,
    base: reqwest::Url,
    url: reqwest::Url,
    token: String,
    endpoint: String,
}

impl OrderClient {
    /// A client for `endpoint`'s orders at `appliance`, trusting only its pinned certificate.
    pub fn new(appliance: &Appliance, endpoint: &str) -> Result<OrderClient, ShipError> {
        let (client, url) = appliance.client(ORDERS_PATH)?;
        Ok(OrderClient {
            client,
            base: appliance.url.clone(),
            url,
            token: appliance.token.clone(),
            endpoint: endpoint.into(),
        })
    }

    fn unreachable(&self, e: reqwest::Error) -> ShipError {
        ShipError::Unreachable { url: self.url.to_string(), reason: chain(&e) }
    }

    /// One long-poll: the newest order above `after`, or `None` when the appliance had none in its wait.
    pub async fn next(&self, after: u64) -> Result<Option<Order>, ShipError> {
        let query = OrdersQuery { endpoint: self.endpoint.clone(), after };
        let resp = self
            .client
            .get(self.url.clone())
            .bearer_auth(&self.token)
            .query(&query)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        match answer(resp, &self.url, &[200, 204]).await? {
            (204, _) => Ok(None),
            (status, text) => Order::parse(text.as_bytes())
                .map(Some)
                .map_err(|e| ShipError::Status { status, body: format!("not an order: {e}") }),
        }
    }

    /// Reports order `id` done (applied or refused).
    pub async fn done(&self, id: u64, done: &OrderDone) -> Result<(), ShipError> {
        let url = self.base.join(&order_done_path(id)).map_err(|e| ShipError::Unreachable {
            url: self.base.to_string(),
            reason: format!("not a base URL: {e}"),
        })?;
        let resp = self
            .client
            .post(url.clone())
            .bearer_auth(&self.token)
            .query(&[("endpoint", &self.endpoint)])
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(done).expect("a report of a bool and a string serialises"))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        answer(resp, &url, &[200, 204]).await.map(|_| ())
    }
}

/// The pushed IoC file in the agent's state. Its first line, a comment the
/// IoC parser skips, names the push it holds: `# ioclab push ID: LABEL`.
#[derive(Debug, Clone)]
pub struct PushedIocs {
    path: PathBuf,
}

const HEADER: &str = "# ioclab push ";

impl PushedIocs {
    /// The pushed IoC file of a remote agent whose spool is `spool`: `<spool>/../pushed-iocs.json`.
    pub fn beside(spool: &Path) -> PushedIocs {
        let dir = spool.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        PushedIocs { path: dir.join("pushed-iocs.json") }
    }

    /// The file (absent until the first push).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The id of the push the file holds; 0 when there is none.
    pub fn applied(&self) -> u64 {
        let Ok(f) = std::fs::File::open(&self.path) else { return 0 };
        let mut first = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(f), &mut first);
        first.strip_prefix(HEADER).and_then(|r| r.split(':').next()).and_then(|id| id.trim().parse().ok()).unwrap_or(0)
    }

    /// Checks push `id`'s `lines` with the agent's IoC parser and, if every
    /// line is good, makes them the file (tmp file, fsync, rename, fsync of
    /// the folder). A refused set leaves the previous file as it was.
    pub fn write(&self, id: u64, label: &str, lines: &str) -> Result<(), String> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let tmp = dir.join(format!(".pushed-iocs.{id}.tmp"));
        let label = label.replace(['\n', '\r'], " ");
        // checked before anything is written: a refused set leaves no trace
        let report = check_data(Path::new(&format!("push {id} ({label})")), lines.as_bytes());
        if let Some(why) = report.refusal() {
            return Err(format!("push {id} ({label}) refused, keeping the previous IoCs: {why}"));
        }
        let io = |e: std::io::Error| format!("{}: {e}", tmp.display());
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        let written = write!(f, "{HEADER}{id}: {label}\n{lines}").and_then(|_| f.sync_all());
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(e));
        }
        std::fs::rename(&tmp, &self.path).map_err(|e| format!("{}: {e}", self.path.display()))?;
        // the rename itself reaches the disk with the folder
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| format!("{}: {e}", dir.display()))
    }
}

/// How an agent loads a written IoC file: asks the sensor for a reload and
/// waits for its outcome (`Err` with the reason when refused).
pub type Reload = dyn Fn() -> Result<String, String> + Send + Sync;

/// Applies `order`: writes its IoCs to `pushed`, then `reload`s.
pub fn apply(order: &Order, pushed: &PushedIocs, reload: &Reload) -> OrderDone {
    let OrderKind::Iocs { label, lines } = &order.kind;
    let result = pushed.write(order.id, label, lines).and_then(|()| reload());
    match result {
        Ok(message) => OrderDone { ok: true, message },
        Err(message) => OrderDone { ok: false, message },
    }
}

/// Resolves once `stop` is set (looked at every 100 ms).
async fn stopped(stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Long-polls orders until `stop` is set; applies each and reports it,
/// retrying the report until the appliance takes it. Errors are logged
/// once per kind and retried with a pause growing to 5 s.
pub async fn run(client: &OrderClient, pushed: &PushedIocs, reload: std::sync::Arc<Reload>, stop: &AtomicBool) {
    let mut after = pushed.applied();
    let mut pause = Duration::from_millis(100);
    let mut last_error: Option<String> = None;
    let mut report: Option<(u64, OrderDone)> = None;
    while !stop.load(Ordering::Relaxed) {
        let step = async {
            if let Some((id, done)) = &report {
                client.done(*id, done).await?;
                return Ok(None);
            }
            client.next(after).await
        };
        let result = tokio::select! {
            r = step => r,
            _ = stopped(stop) => return,
        };
        match result {
            Ok(got) => {
                if last_error.take().is_some() {
                    tracing::info!("appliance orders reachable again");
                }
                pause = Duration::from_millis(100);
                if report.take().is_some() {
                    continue;
                }
                let Some(order) = got else { continue };
                let OrderKind::Iocs { label, .. } = &order.kind;
                tracing::info!("IoC push {} ({label}) from the appliance", order.id);
                let (o, p, r) = (order.clone(), pushed.clone(), reload.clone());
                let done = match tokio::task::spawn_blocking(move || apply(&o, &p, &*r)).await {
                    Ok(d) => d,
                    Err(e) => OrderDone { ok: false, message: format!("applying the push failed: {e}") },
                };
                match done.ok {
                    true => tracing::info!("IoC push {}: {}", order.id, done.message),
                    false => tracing::error!("IoC push {}: {}", order.id, done.message),
                }
                after = order.id;
                report = Some((order.id, done));
            }
            Err(e) => {
                let msg = e.to_string();
                if last_error.as_deref() != Some(msg.as_str()) {
                    tracing::warn!("orders: {msg}; retrying");
                    last_error = Some(msg);
                }
                if matches!(e, ShipError::Rejected(_) | ShipError::Status { status: 404, .. }) {
                    // the appliance will never take this report (its push is gone): drop it
                    report = None;
                }
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stopped(stop) => return,
                }
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(id: u64, lines: &str) -> Order {
        Order { id, kind: OrderKind::Iocs { label: format!("push {id}"), lines: lines.into() } }
    }

    #[test]
    fn a_good_push_replaces_the_file_and_a_bad_one_leaves_it() {
        let dir = tempfile::tempdir().unwrap();
        let pushed = PushedIocs::beside(&dir.path().join("spool"));
        assert_eq!(pushed.path(), dir.path().join("pushed-iocs.json"));
        assert_eq!(pushed.applied(), 0, "nothing pushed yet");
        let reload: Box<Reload> = Box::new(|| Ok("IoCs loaded".to_string()));
        let good = "{\"value\":\"kunai.rocks\",\"severity\":4}\n";
        let done = apply(&order(3, good), &pushed, &*reload);
        assert!(done.ok, "{done:?}");
        assert_eq!(pushed.applied(), 3);
        let text = std::fs::read_to_string(pushed.path()).unwrap();
        assert!(text.ends_with(good) && text.starts_with("# ioclab push 3: push 3\n"), "{text}");
        let (set, report) = crate::ioc::loader::load_files(&[pushed.path().to_path_buf()]).unwrap();
        assert_eq!((set.len(), report.bad.len()), (1, 0), "the header line is a comment to the parser");

        for bad in ["", "<html>404</html>\n", "{\"value\":\"a.example\",\"severity\":4}\n{\"value\":\"trunc"] {
            let done = apply(&order(4, bad), &pushed, &*reload);
            assert!(!done.ok, "{bad:?} was taken");
            assert!(done.message.contains("push 4") && done.message.contains("refused"), "{}", done.message);
            assert_eq!(std::fs::read_to_string(pushed.path()).unwrap(), text, "{bad:?} touched the file");
        }
        let e = apply(&order(4, "{\"value\":\"a.example\",\"severity\":4}\nbroken\n"), &pushed, &*reload);
        assert!(e.message.contains("push 4 (push 4):2: "), "the line of the pushed set: {}", e.message);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("pushed-iocs.json")], "no tmp file left");

        let refused: Box<Reload> = Box::new(|| Err("IoC reload refused".to_string()));
        let done = apply(&order(5, good), &pushed, &*refused);
        assert_eq!(done, OrderDone { ok: false, message: "IoC reload refused".into() });
    }
}
