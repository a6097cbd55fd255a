//! The batch format between a remote agent and the appliance.
//!
//! A batch is the body of `POST /v1/batches` (bearer token of the
//! enrolment): JSON lines, the first a [`BatchHeader`], each next one a
//! Kunai event exactly as the agent writes it. The appliance answers an
//! [`Ack`] only once the batch is stored; events whose `info.event.uuid`
//! it already holds are counted as duplicates, not stored again, so an
//! agent resends a batch whose ack it did not get without harm.
//!
//! Orders go the other way: the agent long-polls `GET /v1/orders?endpoint=NAME&after=ID`
//! (same bearer token) and gets the newest [`Order`] for it with an id
//! above `after` (200), or 204 after [`ORDERS_WAIT`] without one; once it
//! applied (or refused) the order it posts an [`OrderDone`] to
//! `/v1/orders/{id}/done` ([`order_done_path`]).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The ingest path, under the appliance's endpoint listener.
pub const BATCH_PATH: &str = "/v1/batches";
/// The orders path: the agent long-polls it.
pub const ORDERS_PATH: &str = "/v1/orders";
/// How long the appliance holds a long-poll without an order before answering 204.
pub const ORDERS_WAIT: std::time::Duration = std::time::Duration::from_secs(25);
/// Most bytes in one order body (an IoC set of a few hundred thousand lines).
pub const MAX_ORDER_BYTES: usize = 64 * 1024 * 1024;
/// Most events in one batch (the agent seals batches well before).
pub const MAX_BATCH_EVENTS: usize = 10_000;
/// Most bytes in one batch body.
pub const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// The first line of a batch: which batch, from which endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchHeader {
    /// The batch's id (the spool's id and a sequence number), for logs and errors.
    pub batch: String,
    /// The endpoint's name (`--name`, by default the host name).
    pub endpoint: String,
    /// The agent's version.
    pub agent_version: String,
}

/// One event of a batch: what the appliance indexes, and the line itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireEvent {
    /// `info.event.uuid`: the key duplicates are dropped by.
    pub uuid: Uuid,
    /// `info.event.name` (execve, connect, event_loss...).
    pub name: String,
    /// Whether the event carries a `detection` section (an IoC matched).
    pub detection: bool,
    /// The event's JSON line, unchanged (without its newline).
    pub line: String,
}

/// A parsed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Its header.
    pub header: BatchHeader,
    /// Its events, in order.
    pub events: Vec<WireEvent>,
}

/// The appliance's answer to a stored batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The batch's id, from its header.
    pub batch: String,
    /// Events stored now.
    pub stored: u64,
    /// Events the appliance already had (a resent batch).
    pub duplicates: u64,
}

/// Why a batch was refused: names the batch and the line (1-based; the header is line 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("batch {batch}, line {line}: {message}")]
pub struct BatchError {
    /// The batch's id, or `(no header)` when the header itself is bad.
    pub batch: String,
    /// The line, 1-based.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Only what the appliance reads of an event; the rest stays in the line.
#[derive(Deserialize)]
struct EventProbe {
    info: InfoProbe,
    #[serde(default)]
    detection: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct InfoProbe {
    event: EventIdProbe,
}

#[derive(Deserialize)]
struct EventIdProbe {
    uuid: Uuid,
    name: String,
}

impl BatchHeader {
    /// The header as its JSON line (with the newline).
    pub fn to_line(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).expect("a header of strings serialises");
        v.push(b'\n');
        v
    }
}

impl Batch {
    /// Parses a batch body; any bad line refuses the whole batch.
    pub fn parse(body: &[u8]) -> Result<Batch, BatchError> {
        const NO_HEADER: &str = "(no header)";
        let err = |batch: &str, line: usize, message: String| BatchError { batch: batch.to_string(), line, message };
        if body.len() > MAX_BATCH_BYTES {
            return Err(err(NO_HEADER, 1, format!("{} bytes, more than the {MAX_BATCH_BYTES} allowed", body.len())));
        }
        let text = std::str::from_utf8(body).map_err(|e| {
            let line = 1 + body[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count();
            err(NO_HEADER, line, format!("not UTF-8: {e}"))
        })?;
        let mut lines = text.split('\n');
        let first = lines.next().unwrap_or_default();
        let header: BatchHeader = serde_json::from_str(first)
            .map_err(|e| err(NO_HEADER, 1, format!("not a batch header {{batch, endpoint, agent_version}}: {e}")))?;
        if header.batch.is_empty() || header.endpoint.is_empty() {
            return Err(err(NO_HEADER, 1, "the header's batch and endpoint must not be empty".into()));
        }
        let mut events = Vec::new();
        for (i, line) in lines.enumerate() {
            let n = i + 2;
            if line.is_empty() {
                continue;
            }
            if events.len() == MAX_BATCH_EVENTS {
                return Err(err(&header.batch, n, format!("more than {MAX_BATCH_EVENTS} events")));
            }
            let probe: EventProbe = serde_json::from_str(line).map_err(|e| {
                err(&header.batch, n, format!("not a Kunai event with info.event.uuid and info.event.name: {e}"))
            })?;
            events.push(WireEvent {
                uuid: probe.info.event.uuid,
                name: probe.info.event.name,
                detection: probe.detection.is_some(),
                line: line.to_string(),
            });
        }
        Ok(Batch { header, events })
    }
}

/// Where the agent reports order `id` done: `/v1/orders/{id}/done`.
pub fn order_done_path(id: u64) -> String {
    format!("{ORDERS_PATH}/{id}/done")
}

/// The query of a long-poll: `?endpoint=NAME&after=ID`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrdersQuery {
    /// The endpoint's name, as in its batches' header.
    pub endpoint: String,
    /// The last order the agent applied (0: none yet); only newer ones are answered.
    #[serde(default)]
    pub after: u64,
}

/// An order from the appliance to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// The order's id (the push's id on the appliance), increasing.
    pub id: u64,
    /// What to do; in the JSON its `kind` field sits next to `id`.
    #[serde(flatten)]
    pub kind: OrderKind,
}

/// What an order asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OrderKind {
    /// Use this IoC set from now on, instead of the previous pushed one
    /// (a whole set, not a diff: the newest push wins).
    Iocs {
        /// What the instructor called it (`--label`), for logs and lists.
        label: String,
        /// The IoC file's lines (Kunai's format, one JSON object a line).
        lines: String,
    },
}

/// The agent's report on an order, the body of `POST /v1/orders/{id}/done`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderDone {
    /// Whether the order is in effect (the IoCs are loaded).
    pub ok: bool,
    /// What happened: the load's counts, or why it was refused.
    pub message: String,
}

/// A body that is not the JSON expected, with where it went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}, line {line}, column {column}: {message}")]
pub struct BodyError {
    /// Which body: `order` or `order report`.
    pub what: &'static str,
    /// The line, 1-based (0 when the whole body is at fault, e.g. too big).
    pub line: usize,
    /// The column, 1-based.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

fn parse_body<T: serde::de::DeserializeOwned>(what: &'static str, body: &[u8]) -> Result<T, BodyError> {
    if body.len() > MAX_ORDER_BYTES {
        let message = format!("{} bytes, more than the {MAX_ORDER_BYTES} allowed", body.len());
        return Err(BodyError { what, line: 0, column: 0, message });
    }
    serde_json::from_slice(body).map_err(|e| BodyError {
        what,
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })
}

impl Order {
    /// Parses an order body (the answer of a long-poll).
    pub fn parse(body: &[u8]) -> Result<Order, BodyError> {
        parse_body("order", body)
    }
}

impl OrderDone {
    /// Parses an order report body.
    pub fn parse(body: &[u8]) -> Result<OrderDone, BodyError> {
        parse_body("order report", body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn event(uuid: &str) -> String {
        format!(
            r#"{{"data":{{"path":"/tmp/x"}},"info":{{"event":{{"source":"kunai","id":88,"name":"file_create","uuid":"{uuid}","batch":3}},"utc_time":"2026-11-30T12:00:00.000000000Z"}}}}"#
        )
    }

    fn header() -> String {
        r#"{"batch":"spool-7","endpoint":"pc-01","agent_version":"0.1.0"}"#.to_string()
    }

    #[test]
    fn a_batch_parses_with_its_events() {
        let u = "5d0c9a3e-2f1a-4a57-9c1e-1b2c3d4e5f60";
        let body = format!("{}\n{}\n", header(), event(u));
        let b = Batch::parse(body.as_bytes()).unwrap();
        assert_eq!(b.header.batch, "spool-7");
        assert_eq!(b.events.len(), 1);
        assert_eq!(b.events[0].uuid.to_string(), u);
        assert_eq!(b.events[0].name, "file_create");
        assert!(!b.events[0].detection);
        assert_eq!(b.events[0].line, event(u));
    }

    #[test]
    fn errors_name_the_batch_and_the_line() {
        let body = format!("{}\n{}\n{{\"info\":{{}}}}\n", header(), event("5d0c9a3e-2f1a-4a57-9c1e-1b2c3d4e5f60"));
        let e = Batch::parse(body.as_bytes()).unwrap_err();
        assert_eq!((e.batch.as_str(), e.line), ("spool-7", 3));
        assert!(e.to_string().starts_with("batch spool-7, line 3: "), "{e}");
        let e = Batch::parse(b"{\"batch\":1}\n").unwrap_err();
        assert_eq!((e.batch.as_str(), e.line), ("(no header)", 1));
        let bad_uuid = format!("{}\n{}\n", header(), event("not-a-uuid"));
        assert_eq!(Batch::parse(bad_uuid.as_bytes()).unwrap_err().line, 2);
    }

    #[test]
    fn orders_and_reports_round_trip_with_the_kind_beside_the_id() {
        let order = Order {
            id: 7,
            kind: OrderKind::Iocs {
                label: "day 2".into(),
                lines: "{\"value\":\"kunai.rocks\",\"severity\":4}\n".into(),
            },
        };
        let json = serde_json::to_string(&order).unwrap();
        assert!(json.starts_with(r#"{"id":7,"kind":"iocs","label":"day 2","lines":"#), "{json}");
        assert_eq!(Order::parse(json.as_bytes()).unwrap(), order);
        let done = OrderDone { ok: false, message: "refused: no IoC".into() };
        assert_eq!(OrderDone::parse(serde_json::to_string(&done).unwrap().as_bytes()).unwrap(), done);
        assert_eq!(order_done_path(7), "/v1/orders/7/done");
        let q: OrdersQuery = serde_json::from_str(r#"{"endpoint":"pc-01"}"#).unwrap();
        assert_eq!(q.after, 0);
    }

    #[test]
    fn a_bad_order_names_the_line_and_column() {
        let e = Order::parse(b"{\"id\": 3,\n \"kind\": \"reboot\"}").unwrap_err();
        assert_eq!((e.what, e.line), ("order", 2), "{e}");
        assert!(e.to_string().starts_with("order, line 2, column "), "{e}");
        assert!(e.message.contains("reboot"), "{e}");
        let e = OrderDone::parse(b"{\"ok\": true}").unwrap_err();
        assert!(e.to_string().contains("message"), "{e}");
    }

    proptest! {
        #[test]
        fn any_order_body_is_an_order_or_an_error_naming_a_place(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Err(e) = Order::parse(&body) {
                let lines = body.iter().filter(|&&b| b == b'\n').count() + 1;
                prop_assert!(e.line >= 1 && e.line <= lines, "{e} of {lines} lines");
                prop_assert!(e.to_string().starts_with("order, line "), "{}", e);
            }
        }

        #[test]
        fn a_damaged_order_is_refused_at_its_place(keep in 0usize..80, junk in "[^\n]{0,10}") {
            let good = serde_json::to_string(&Order { id: 1, kind: OrderKind::Iocs { label: "l".into(), lines: "x".into() } }).unwrap();
            let damaged = format!("{}{junk}", &good[..keep.min(good.len())]);
            match Order::parse(damaged.as_bytes()) {
                Ok(o) => prop_assert_eq!(o.id, 1),
                Err(e) => prop_assert!(e.line == 1 && e.column <= damaged.len() + 1, "{}", e),
            }
        }

        #[test]
        fn any_bytes_give_a_batch_or_an_error_naming_a_line(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            match Batch::parse(&body) {
                Ok(b) => prop_assert!(!b.header.batch.is_empty()),
                Err(e) => {
                    let lines = body.iter().filter(|&&b| b == b'\n').count() + 1;
                    prop_assert!(e.line >= 1 && e.line <= lines, "{e} of {lines} lines");
                }
            }
        }

        #[test]
        fn a_damaged_event_line_is_named(keep in 0usize..200, junk in "[^\n]{0,20}") {
            let good = event("5d0c9a3e-2f1a-4a57-9c1e-1b2c3d4e5f60");
            let damaged = format!("{}{junk}", &good[..keep.min(good.len())]);
            let body = format!("{}\n{good}\n{damaged}\n{good}\n", header());
            match Batch::parse(body.as_bytes()) {
                Ok(b) => prop_assert!(b.events.len() >= 2),
                Err(e) => {
                    prop_assert_eq!(e.batch, "spool-7");
                    prop_assert_eq!(e.line, 3);
                }
            }
        }
    }
}
