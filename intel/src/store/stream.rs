//! Search answers produced while the client reads them: attributes in
//! chunks of `chunk_rows` (each chunk one SQLite-rendered row, the next one
//! asked for by keyset, `a.id > last`), events one at a time. A search's
//! memory is one chunk, whatever the size of the answer (a `{}` search on
//! 184,000 attributes built 67 MiB in memory, and 1.5 GB at peak). The
//! search holds its slot and its connection until the answer is sent or its
//! client leaves (the body is dropped, and with it the search: see
//! [`super::bounded`]).

use axum::body::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};
use serde_json::Value;
use sqlx::{QueryBuilder, Row, Sqlite};

use super::bounded::Bounded;
use super::filter::{self, Filters};
use super::{csv, render, Store, StoreError};

/// An answer in pieces, for `axum::body::Body::from_stream`.
pub type Chunks = BoxStream<'static, Result<Bytes, StoreError>>;

/// How rendered rows become an answer.
struct Framing {
    prefix: String,
    /// Between the rows of a chunk.
    sep: &'static str,
    /// Between two chunks.
    between: &'static str,
    /// After each chunk.
    after: &'static str,
    suffix: &'static str,
}

/// The answer formats of /attributes/restSearch served here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `{"response":{"Attribute":[...]}}`
    Json,
    /// MISP's CSV export.
    Csv,
}

/// The chunks of one attribute search, asked for one after the other.
struct AttributeChunks {
    bounded: Bounded,
    filters: Filters,
    line: String,
    from: &'static str,
    sep: &'static str,
    chunk_rows: i64,
    last_id: i64,
    offset: i64,
    left: Option<i64>,
    done: bool,
}

impl AttributeChunks {
    /// The next chunk's rendered rows, or None at the end.
    async fn next(&mut self) -> Result<Option<String>, StoreError> {
        let n = self.left.map_or(self.chunk_rows, |l| l.min(self.chunk_rows));
        if self.done || n <= 0 {
            self.done = true;
            return Ok(None);
        }
        let mut q = QueryBuilder::<Sqlite>::new("SELECT group_concat(j, ");
        q.push_bind(self.sep).push(format!(
            "), max(id), count(*) FROM (SELECT a.id AS id, {} AS j FROM {} WHERE a.id > ",
            self.line, self.from
        ));
        q.push_bind(self.last_id);
        filter::push_attribute_filters(&mut q, &self.filters);
        q.push(" ORDER BY a.id LIMIT ").push_bind(n).push(" OFFSET ").push_bind(self.offset).push(")");
        let r = q.build().fetch_one(self.bounded.conn()).await.map_err(StoreError::from);
        let row = self.bounded.settle(r)?;
        let (text, last, count): (Option<String>, Option<i64>, i64) = (row.get(0), row.get(1), row.get(2));
        self.offset = 0;
        self.last_id = last.unwrap_or(self.last_id);
        self.left = self.left.map(|l| l - count);
        self.done = count < n;
        Ok(text.filter(|_| count > 0))
    }
}

/// What yields the next rendered piece of an answer.
type NextFn<S> = for<'a> fn(&'a mut S) -> futures_util::future::BoxFuture<'a, Result<Option<String>, StoreError>>;

/// The stream of `framing` around the chunks `next` yields; `first` is
/// already computed (its errors became the answer's status).
fn framed<S: Send + 'static>(framing: Framing, first: Option<String>, state: S, next: NextFn<S>) -> Chunks {
    let mut head = framing.prefix;
    let any = first.is_some();
    if let Some(first) = first {
        head.push_str(&first);
        head.push_str(framing.after);
    }
    let (between, after, suffix) = (framing.between, framing.after, framing.suffix);
    let rest = stream::unfold((state, any, false), move |(mut state, any, finished)| async move {
        if finished {
            return None;
        }
        match next(&mut state).await {
            Ok(Some(text)) => {
                let mut piece = String::with_capacity(text.len() + 2);
                if any {
                    piece.push_str(between);
                }
                piece.push_str(&text);
                piece.push_str(after);
                Some((Ok(Bytes::from(piece)), (state, true, false)))
            }
            Ok(None) => Some((Ok(Bytes::from_static(suffix.as_bytes())), (state, any, true))),
            Err(e) => {
                tracing::warn!("search stopped while its answer was sent: {e}");
                Some((Err(e), (state, any, true)))
            }
        }
    });
    stream::once(async move { Ok(Bytes::from(head)) }).chain(rest).boxed()
}

impl Store {
    /// An attribute search's answer (`format`), streamed in chunks.
    pub async fn stream_attributes(&self, f: Filters, format: Format) -> Result<Chunks, StoreError> {
        let (line, from, framing) = match format {
            Format::Json => (
                filter::attribute_json_sql(&f),
                "attributes a JOIN events e ON e.id = a.event_id",
                Framing {
                    prefix: "{\"response\":{\"Attribute\":[".into(),
                    sep: ",",
                    between: ",",
                    after: "",
                    suffix: "]}}",
                },
            ),
            Format::Csv => {
                let cols = csv::columns(&f);
                let (line, objects) = csv::line_sql(&cols)?;
                let from = if objects {
                    "attributes a JOIN events e ON e.id = a.event_id LEFT JOIN objects o ON o.id = a.object_id"
                } else {
                    "attributes a JOIN events e ON e.id = a.event_id"
                };
                let prefix = if f.headerless { String::new() } else { csv::header(&cols) + "\n" };
                (line, from, Framing { prefix, sep: "\n", between: "", after: "\n", suffix: "" })
            }
        };
        let bounded = self.bounded().await?;
        let mut chunks = AttributeChunks {
            bounded,
            offset: f.offset()?,
            left: f.limit,
            filters: f,
            line,
            from,
            sep: framing.sep,
            chunk_rows: i64::from(self.limits().chunk_rows.max(1)),
            last_id: 0,
            done: false,
        };
        let first = chunks.next().await?;
        Ok(framed(framing, first, chunks, |c| Box::pin(c.next())))
    }

    /// Events matching `filters` with their attributes, for /events/restSearch: streamed one event at a time.
    pub async fn stream_events(&self, f: &Filters) -> Result<Chunks, StoreError> {
        let mut b = self.bounded().await?;
        let r = filter::event_ids(b.conn(), f).await;
        let ids = b.settle(r)?;
        let mut state = (b, ids.into_iter());
        let first = next_event(&mut state).await?;
        let framing = Framing { prefix: "{\"response\":[".into(), sep: "", between: ",", after: "", suffix: "]}" };
        Ok(framed(framing, first, state, |s| Box::pin(next_event(s))))
    }

    /// Events matching `filters`, for /events/index: flat event objects.
    pub async fn index(&self, filters: &Filters) -> Result<Vec<Value>, StoreError> {
        let mut b = self.bounded().await?;
        if filters.minimal {
            let r = filter::minimal_index(b.conn(), filters).await;
            return b.settle(r);
        }
        let r = filter::event_ids(b.conn(), filters).await;
        let ids = b.settle(r)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let r = render::event(b.conn(), id, false).await;
            if let Some(e) = b.settle(r)?.get_mut("Event").map(Value::take) {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Attributes matching `filters` as MISP's JSON array (the streamed answer, collected: tests, small searches).
    pub async fn search_attributes_json(&self, filters: &Filters) -> Result<String, StoreError> {
        let body = collect(self.stream_attributes(filters.clone(), Format::Json).await?).await?;
        let inner = body.strip_prefix("{\"response\":{\"Attribute\":").and_then(|b| b.strip_suffix("}}"));
        Ok(inner.unwrap_or("[]").to_string())
    }

    /// Attributes matching `filters` as MISP's CSV export (`returnFormat: "csv"`), collected.
    pub async fn search_attributes_csv(&self, filters: &Filters) -> Result<String, StoreError> {
        collect(self.stream_attributes(filters.clone(), Format::Csv).await?).await
    }

    /// (id, type, value) of the attributes matching `filters` (for warninglist checks).
    pub async fn search_attribute_values(&self, filters: &Filters) -> Result<Vec<(i64, String, String)>, StoreError> {
        let mut b = self.bounded().await?;
        let r = filter::attribute_values(b.conn(), filters).await;
        b.settle(r)
    }

    /// Attributes matching `filters`, typed: what the SQLite-rendered answers
    /// of /attributes/restSearch are tested against.
    pub async fn search_attributes(&self, filters: &Filters) -> Result<Vec<render::AttributeOut>, StoreError> {
        let mut conn = self.reader().acquire().await?;
        filter::attributes(&mut conn, filters).await
    }
}

/// The next event of an events search, rendered.
async fn next_event(state: &mut (Bounded, std::vec::IntoIter<i64>)) -> Result<Option<String>, StoreError> {
    let Some(id) = state.1.next() else { return Ok(None) };
    let r = render::event(state.0.conn(), id, true).await;
    let ev = state.0.settle(r)?;
    Ok(Some(ev.to_string()))
}

/// A whole streamed answer as text.
async fn collect(mut chunks: Chunks) -> Result<String, StoreError> {
    let mut out = String::new();
    while let Some(piece) = chunks.next().await {
        out.push_str(&String::from_utf8_lossy(&piece?));
    }
    Ok(out)
}
