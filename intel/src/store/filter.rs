//! The filters of /events/index and the restSearch endpoints, parsed from a
//! request body, and the SQL they become.
//!
//! A filter value is a string, a list, or `{"OR": [...], "AND": [...],
//! "NOT": [...]}`, read as MISP reads them: only a bare string names several
//! values (restSearch separates them with `&&`, /events/index with `|`, see
//! [`Syntax`]), and in a bare string or a plain list a `!` prefix negates a
//! value. Items of a list are never split, so `["filename|md5"]` is one type;
//! the lists of `OR`, `AND` and `NOT` are taken literally, so `{"OR": ["!x"]}`
//! searches the value `!x`. Time filters take a Unix time (int or float), a duration
//! back from now ("7d", "12h", "30m", "45s", "2w"), or a `[from, to]` pair.

#![allow(missing_docs)] // filter fields are named after MISP's filters, listed in the module doc

use serde_json::{Map, Value};
use sqlx::sqlite::SqliteConnection;
use sqlx::{QueryBuilder, Row, Sqlite};

use super::limits::MAX_FILTER_VALUES;
use super::render::{self, AttributeOut, ATTRIBUTE_COLUMNS};
use super::StoreError;
use crate::model::now;

/// One filter's values: any of `any`, all of `all`, none of `none`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cond {
    /// At least one must match (when not empty).
    pub any: Vec<String>,
    /// Every one must match.
    pub all: Vec<String>,
    /// None may match.
    pub none: Vec<String>,
}

/// How a bare string filter separates several values: MISP's restSearch
/// splits `"a&&!b"`, its /events/index `"a|!b"` (there a type such as
/// `filename|md5` is given in a list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// /events/restSearch and /attributes/restSearch: `&&`.
    RestSearch,
    /// /events/index: `|`.
    Index,
}

impl Cond {
    /// A bare string: the values its endpoint's separator splits it into.
    fn push_split(&mut self, s: &str, syntax: Syntax) {
        let sep = match syntax {
            Syntax::RestSearch => "&&",
            Syntax::Index => "|",
        };
        s.split(sep).map(str::trim).for_each(|part| self.push_item(part));
    }

    /// One value of a plain list (or a bare string's part): `!` negates it, nothing else is special.
    fn push_item(&mut self, s: &str) {
        match s.strip_prefix('!') {
            Some(neg) if !neg.is_empty() => self.none.push(neg.to_string()),
            Some(_) => {}
            None if !s.is_empty() => self.any.push(s.to_string()),
            None => {}
        }
    }

    fn is_empty(&self) -> bool {
        self.any.is_empty() && self.all.is_empty() && self.none.is_empty()
    }
}

/// A time range, Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// Inclusive lower bound.
    pub from: i64,
    /// Inclusive upper bound.
    pub to: Option<i64>,
}

/// Every filter the store understands.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub kind: Cond,
    pub uuid: Cond,
    pub category: Cond,
    pub value: Cond,
    pub tags: Cond,
    pub eventid: Cond,
    pub eventinfo: Option<String>,
    pub threatlevel: Cond,
    pub distribution: Cond,
    pub analysis: Cond,
    pub org: Cond,
    pub to_ids: Option<bool>,
    pub published: Option<bool>,
    /// None: not deleted; Some(true): deleted only; Some(false) with `all_deleted`: both.
    pub deleted: Option<bool>,
    pub all_deleted: bool,
    pub timestamp: Option<Range>,
    pub event_timestamp: Option<Range>,
    pub publish_timestamp: Option<Range>,
    pub date_from: Option<String>,
    pub date_to: Option<String>,
    pub limit: Option<i64>,
    pub page: Option<i64>,
    pub return_format: Option<String>,
    pub include_event_uuid: bool,
    pub enforce_warninglist: bool,
    /// /events/index: id, uuid, timestamps, published and creator org only.
    pub minimal: bool,
    /// CSV columns (MISP's `requested_attributes`); None: MISP's default set.
    pub requested_attributes: Option<Vec<String>>,
    /// CSV object columns (`requested_obj_attributes`, without the `object_` prefix).
    pub requested_obj_attributes: Option<Vec<String>>,
    /// CSV without its header line.
    pub headerless: bool,
    /// Attribute ids left out (set by the server for `enforceWarninglist`, never from a body).
    pub exclude_ids: Vec<i64>,
}

/// A list of names: a string or an array of strings.
fn names(v: &Value, what: &str) -> Result<Option<Vec<String>>, StoreError> {
    let bad = || StoreError::Invalid(format!("filter {what}: expected a list of field names, got {v}"));
    Ok(match v {
        Value::Null => None,
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(a) => {
            Some(a.iter().map(|x| x.as_str().map(str::to_string).ok_or_else(bad)).collect::<Result<_, _>>()?)
        }
        _ => return Err(bad()),
    })
}

fn cond(v: &Value, what: &str, syntax: Syntax) -> Result<Cond, StoreError> {
    let mut c = Cond::default();
    let scalar = |v: &Value| -> Result<String, StoreError> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok((*b as u8).to_string()),
            other => Err(StoreError::Invalid(format!("filter {what}: unexpected {other}"))),
        }
    };
    match v {
        Value::Null => {}
        Value::Array(items) => {
            for i in items {
                c.push_item(&scalar(i)?);
            }
        }
        Value::Object(m) => {
            for (k, items) in m {
                let list: Vec<String> = match items {
                    Value::Array(a) => a.iter().map(scalar).collect::<Result<_, _>>()?,
                    other => vec![scalar(other)?],
                };
                match k.to_ascii_uppercase().as_str() {
                    "OR" => c.any.extend(list),
                    "AND" => c.all.extend(list),
                    "NOT" => c.none.extend(list),
                    other => return Err(StoreError::Invalid(format!("filter {what}: unknown operator {other:?}"))),
                }
            }
        }
        other => c.push_split(&scalar(other)?, syntax),
    }
    Ok(c)
}

fn flag(v: &Value, what: &str) -> Result<Option<bool>, StoreError> {
    Ok(match v {
        Value::Null => None,
        Value::Bool(b) => Some(*b),
        Value::Number(n) => Some(n.as_f64().unwrap_or(0.0) != 0.0),
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => match s.as_str() {
            "1" | "true" => Some(true),
            "0" | "false" => Some(false),
            _ => return Err(StoreError::Invalid(format!("filter {what}: {s:?} is not a boolean"))),
        },
        other => return Err(StoreError::Invalid(format!("filter {what}: {other} is not a boolean"))),
    })
}

/// A point in time: Unix seconds (int, float, numeric string) or a duration back from now.
fn instant(v: &Value, what: &str) -> Result<i64, StoreError> {
    let bad = || StoreError::Invalid(format!("filter {what}: {v} is not a time (Unix seconds, or 7d, 12h, 30m)"));
    match v {
        // MISP casts floats with (int)
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)).ok_or_else(bad),
        Value::String(s) => {
            let s = s.trim();
            if let Ok(f) = s.parse::<f64>() {
                return Ok(f as i64);
            }
            // the unit is the last character (which may be any character in a bad value)
            let (at, unit) = s.char_indices().last().ok_or_else(bad)?;
            let n: i64 = s[..at].parse().map_err(|_| bad())?;
            let secs = match unit {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                'w' => 604_800,
                _ => return Err(bad()),
            };
            n.checked_mul(secs).and_then(|back| now().checked_sub(back)).ok_or_else(bad)
        }
        _ => Err(bad()),
    }
}

fn range(v: &Value, what: &str) -> Result<Option<Range>, StoreError> {
    Ok(match v {
        Value::Null => None,
        Value::Array(a) if a.len() == 2 => Some(Range { from: instant(&a[0], what)?, to: Some(instant(&a[1], what)?) }),
        Value::Array(_) => return Err(StoreError::Invalid(format!("filter {what}: a range is [from, to]"))),
        other => Some(Range { from: instant(other, what)?, to: None }),
    })
}

/// `limit` or `page`: a whole number, 0 or more (0 or absent: MISP's "not
/// given", so no limit and the first page). Negative, fractional or
/// non-numeric values are refused rather than read as "everything".
fn count(v: &Value, what: &str) -> Result<Option<i64>, StoreError> {
    let bad = || StoreError::Invalid(format!("filter {what}: {v} is not a whole number >= 0"));
    let n = match v {
        Value::Null => return Ok(None),
        Value::String(s) if s.trim().is_empty() => return Ok(None),
        Value::Number(n) => n.as_i64().ok_or_else(bad)?,
        Value::String(s) => s.trim().parse::<i64>().map_err(|_| bad())?,
        _ => return Err(bad()),
    };
    match n {
        0 => Ok(None),
        n if n > 0 => Ok(Some(n)),
        _ => Err(bad()),
    }
}

impl Filters {
    /// Reads the filters of a restSearch body (a JSON object; unknown keys are ignored, as MISP does).
    pub fn from_body(body: &Value) -> Result<Self, StoreError> {
        Self::parse(body, Syntax::RestSearch)
    }

    /// Reads the filters of an /events/index body (bare strings split on `|`).
    pub fn from_index_body(body: &Value) -> Result<Self, StoreError> {
        Self::parse(body, Syntax::Index)
    }

    fn parse(body: &Value, syntax: Syntax) -> Result<Self, StoreError> {
        let cond = |v: &Value, what: &str| cond(v, what, syntax);
        let empty = Map::new();
        let m = match body {
            Value::Object(m) => m,
            Value::Null => &empty,
            other => return Err(StoreError::Invalid(format!("filters must be a JSON object, got {other}"))),
        };
        let mut f = Filters::default();
        for (k, v) in m {
            match k.as_str() {
                "type" => f.kind = cond(v, k)?,
                "uuid" => f.uuid = cond(v, k)?,
                "category" => f.category = cond(v, k)?,
                "value" => f.value = cond(v, k)?,
                "tags" | "tag" | "searchall_tag" => f.tags = cond(v, k)?,
                "eventid" | "event_id" => f.eventid = cond(v, k)?,
                "eventinfo" => f.eventinfo = v.as_str().map(str::to_string),
                "threatlevel" | "threat_level_id" => f.threatlevel = cond(v, k)?,
                "distribution" => f.distribution = cond(v, k)?,
                "analysis" => f.analysis = cond(v, k)?,
                "org" => f.org = cond(v, k)?,
                "to_ids" => f.to_ids = flag(v, k)?,
                "published" => f.published = flag(v, k)?,
                "deleted" => match v {
                    Value::Array(a) if a.len() >= 2 => f.all_deleted = true,
                    other => f.deleted = flag(other, k)?,
                },
                "timestamp" | "attribute_timestamp" => f.timestamp = range(v, k)?,
                "event_timestamp" => f.event_timestamp = range(v, k)?,
                "publish_timestamp" | "last" => f.publish_timestamp = range(v, k)?,
                "from" | "datefrom" => f.date_from = v.as_str().map(str::to_string),
                "to" | "dateuntil" => f.date_to = v.as_str().map(str::to_string),
                "limit" => f.limit = count(v, k)?,
                "page" => f.page = count(v, k)?,
                "returnFormat" => f.return_format = v.as_str().map(str::to_string),
                "includeEventUuid" => f.include_event_uuid = flag(v, k)?.unwrap_or(false),
                "enforceWarninglist" => f.enforce_warninglist = flag(v, k)?.unwrap_or(false),
                "requested_attributes" => f.requested_attributes = names(v, k)?,
                "requested_obj_attributes" => f.requested_obj_attributes = names(v, k)?,
                "minimal" => f.minimal = flag(v, k)?.unwrap_or(false),
                "headerless" => f.headerless = flag(v, k)?.unwrap_or(false),
                _ => {}
            }
        }
        f.check_sizes()?;
        Ok(f)
    }

    /// The caps on what one request may ask: values per filter, and a page
    /// whose first row is a 64-bit number.
    fn check_sizes(&self) -> Result<(), StoreError> {
        for (what, c) in [
            ("type", &self.kind),
            ("uuid", &self.uuid),
            ("category", &self.category),
            ("value", &self.value),
            ("tags", &self.tags),
            ("eventid", &self.eventid),
            ("threatlevel", &self.threatlevel),
            ("distribution", &self.distribution),
            ("analysis", &self.analysis),
            ("org", &self.org),
        ] {
            let n = c.any.len() + c.all.len() + c.none.len();
            if n > MAX_FILTER_VALUES {
                return Err(StoreError::Invalid(format!(
                    "filter {what}: {n} values, over the limit of {MAX_FILTER_VALUES} per filter: split the request"
                )));
            }
        }
        self.offset().map(|_| ())
    }

    /// Rows skipped before the page: (page - 1) × limit, refused when it overflows.
    pub fn offset(&self) -> Result<i64, StoreError> {
        match self.limit {
            None => Ok(0),
            Some(limit) => (self.page.unwrap_or(1) - 1).checked_mul(limit).ok_or_else(|| {
                StoreError::Invalid(format!(
                    "filter page: page {} of {limit} rows starts past the last possible row",
                    self.page.unwrap_or(1)
                ))
            }),
        }
    }
}

/// A list bound as one JSON array: any number of values is one parameter
/// and one `json_each`, never an expression per value (SQLite refuses
/// expressions deeper than 1,000 terms, and OR chains are slow).
fn json_list(values: &[String]) -> String {
    serde_json::to_string(values).unwrap_or_else(|_| "[]".into())
}

/// `col` matches one of `values` (`%` in a value: LIKE, as MISP does).
fn push_match_any(q: &mut QueryBuilder<'_, Sqlite>, col: &str, values: &[String]) {
    let (like, exact): (Vec<String>, Vec<String>) = values.iter().cloned().partition(|v| v.contains('%'));
    q.push("(");
    if !exact.is_empty() {
        // IN over json_each: SQLite looks each value up in the column's index
        q.push(format!("{col} IN (SELECT value FROM json_each(")).push_bind(json_list(&exact)).push("))");
    }
    if !like.is_empty() {
        if !exact.is_empty() {
            q.push(" OR ");
        }
        q.push(format!("EXISTS (SELECT 1 FROM json_each("))
            .push_bind(json_list(&like))
            .push(format!(") p WHERE {col} LIKE p.value)"));
    }
    q.push(")");
}

/// Adds `AND col matches one of any AND col matches each of all AND col matches none of none`.
fn push_cond(q: &mut QueryBuilder<'_, Sqlite>, col: &str, c: &Cond) {
    push_cond_with(q, c, &|q, values| push_match_any(q, col, values));
}

/// [`push_cond`] with `matches` writing "the row matches one of these values".
fn push_cond_with(
    q: &mut QueryBuilder<'_, Sqlite>,
    c: &Cond,
    matches: &dyn Fn(&mut QueryBuilder<'_, Sqlite>, &[String]),
) {
    if !c.any.is_empty() {
        q.push(" AND ");
        matches(q, &c.any);
    }
    for v in &c.all {
        q.push(" AND ");
        matches(q, std::slice::from_ref(v));
    }
    if !c.none.is_empty() {
        q.push(" AND NOT ");
        matches(q, &c.none);
    }
}

/// The `value` filter as MISP applies it: a composite attribute
/// (`filename|md5`, `domain|ip`...) matches by its whole value or by either
/// part (MISP's `value1`/`value2`), so the bare md5 of a sample finds the
/// `filename|md5` a sandbox report became. Each part is looked up in its
/// partial expression index (migration 0004): the terms repeat the indexes'
/// expressions and their `instr(...) > 0` condition, and `+a.type` keeps
/// SQLite from preferring the type index (every composite attribute).
fn push_value_cond(q: &mut QueryBuilder<'_, Sqlite>, c: &Cond) {
    push_cond_with(q, c, &|q, values| {
        let composite: Vec<String> = crate::model::types::TYPES
            .iter()
            .filter(|(t, _, _)| t.contains('|'))
            .map(|(t, _, _)| format!("'{t}'"))
            .collect();
        let is_composite = format!("instr(a.value, '|') > 0 AND +a.type IN ({})", composite.join(", "));
        q.push("(");
        push_match_any(q, "a.value", values);
        for part in ["substr(a.value, 1, instr(a.value, '|') - 1)", "substr(a.value, instr(a.value, '|') + 1)"] {
            q.push(format!(" OR ({is_composite} AND "));
            push_match_any(q, part, values);
            q.push(")");
        }
        q.push(")");
    });
}

/// Tag conditions. Tag names are resolved to ids once per statement (an
/// uncorrelated `IN` over `json_each`, which SQLite evaluates once into an
/// index, instead of a correlated subquery per tag and row); `tagged` writes
/// the SQL true when the row carries one of the tags of the list it is given
/// (a JSON array, pushed with [`push_tag_ids`]). Unknown names match
/// nothing, so a filter naming only unknown tags returns nothing, as in MISP.
fn push_tags(q: &mut QueryBuilder<'_, Sqlite>, c: &Cond, tagged: &dyn Fn(&mut QueryBuilder<'_, Sqlite>, &str)) {
    if !c.any.is_empty() {
        q.push(" AND ");
        tagged(q, &json_list(&c.any));
    }
    for t in &c.all {
        q.push(" AND ");
        tagged(q, &json_list(std::slice::from_ref(t)));
    }
    if !c.none.is_empty() {
        q.push(" AND NOT ");
        tagged(q, &json_list(&c.none));
    }
}

/// `(SELECT id FROM tags WHERE name IN names)`, `names` a JSON array.
fn push_tag_ids(q: &mut QueryBuilder<'_, Sqlite>, names: &str) {
    q.push("(SELECT t.id FROM tags t WHERE t.name IN (SELECT value FROM json_each(")
        .push_bind(names.to_string())
        .push(")))");
}

fn push_range(q: &mut QueryBuilder<'_, Sqlite>, col: &str, r: &Option<Range>) {
    if let Some(r) = r {
        q.push(format!(" AND {col} >= ")).push_bind(r.from);
        if let Some(to) = r.to {
            q.push(format!(" AND {col} <= ")).push_bind(to);
        }
    }
}

fn push_event_filters(q: &mut QueryBuilder<'_, Sqlite>, f: &Filters) {
    if let Some(p) = f.published {
        q.push(" AND e.published = ").push_bind(p);
    }
    push_cond(q, "CAST(e.id AS TEXT)", &f.eventid);
    push_cond(q, "CAST(e.threat_level_id AS TEXT)", &f.threatlevel);
    push_cond(q, "CAST(e.distribution AS TEXT)", &f.distribution);
    push_cond(q, "CAST(e.analysis AS TEXT)", &f.analysis);
    if !f.org.is_empty() {
        q.push(" AND EXISTS (SELECT 1 FROM orgs o WHERE o.id = e.orgc_id");
        push_cond(q, "o.name", &f.org);
        q.push(")");
    }
    if let Some(info) = &f.eventinfo {
        let pat = if info.contains('%') { info.clone() } else { format!("%{info}%") };
        q.push(" AND e.info LIKE ").push_bind(pat);
    }
    push_range(q, "e.publish_timestamp", &f.publish_timestamp);
    if let Some(d) = &f.date_from {
        q.push(" AND e.date >= ").push_bind(d.clone());
    }
    if let Some(d) = &f.date_to {
        q.push(" AND e.date <= ").push_bind(d.clone());
    }
}

fn push_page(q: &mut QueryBuilder<'_, Sqlite>, f: &Filters) {
    if let Some(limit) = f.limit {
        // checked when the filters were read
        q.push(" LIMIT ").push_bind(limit).push(" OFFSET ").push_bind(f.offset().unwrap_or(i64::MAX));
    }
}

/// Ids of the events that match, in id order.
pub async fn event_ids(conn: &mut SqliteConnection, f: &Filters) -> Result<Vec<i64>, StoreError> {
    let mut q = QueryBuilder::<Sqlite>::new("SELECT e.id FROM events e WHERE 1 = 1");
    push_event_filters(&mut q, f);
    // for events, `timestamp` is the event's
    push_range(&mut q, "e.timestamp", &f.timestamp.or(f.event_timestamp));
    push_tags(&mut q, &f.tags, &|q, names| {
        q.push("e.id IN (SELECT et.event_id FROM event_tags et WHERE et.tag_id IN ");
        push_tag_ids(q, names);
        q.push(")");
    });
    // attribute filters select the events that have such an attribute
    if !(f.kind.is_empty() && f.value.is_empty() && f.category.is_empty() && f.to_ids.is_none()) {
        q.push(" AND EXISTS (SELECT 1 FROM attributes a WHERE a.event_id = e.id AND a.deleted = 0");
        push_cond(&mut q, "a.type", &f.kind);
        push_value_cond(&mut q, &f.value);
        push_cond(&mut q, "a.category", &f.category);
        if let Some(t) = f.to_ids {
            q.push(" AND a.to_ids = ").push_bind(t);
        }
        q.push(")");
    }
    q.push(" ORDER BY e.id");
    push_page(&mut q, f);
    Ok(q.build().fetch_all(conn).await?.iter().map(|r| r.get(0)).collect())
}

/// WHERE clauses (after `WHERE ...`) of an attribute search over `attributes a JOIN events e`.
pub(super) fn push_attribute_filters(q: &mut QueryBuilder<'_, Sqlite>, f: &Filters) {
    match (f.all_deleted, f.deleted) {
        (true, _) => {}
        (false, Some(true)) => {
            q.push(" AND a.deleted = 1");
        }
        _ => {
            q.push(" AND a.deleted = 0");
        }
    }
    push_cond(q, "a.type", &f.kind);
    push_cond(q, "a.uuid", &f.uuid);
    push_value_cond(q, &f.value);
    push_cond(q, "a.category", &f.category);
    if let Some(t) = f.to_ids {
        q.push(" AND a.to_ids = ").push_bind(t);
    }
    push_event_filters(q, f);
    push_range(q, "a.timestamp", &f.timestamp);
    push_range(q, "e.timestamp", &f.event_timestamp);
    if !f.exclude_ids.is_empty() {
        let ids = serde_json::to_string(&f.exclude_ids).unwrap_or_else(|_| "[]".into());
        q.push(" AND a.id NOT IN (SELECT value FROM json_each(").push_bind(ids).push("))");
    }
    // attribute scope: a tag of the event or of the attribute
    push_tags(q, &f.tags, &|q, names| {
        q.push("(e.id IN (SELECT et.event_id FROM event_tags et WHERE et.tag_id IN ");
        push_tag_ids(q, names);
        q.push(") OR a.id IN (SELECT at.attribute_id FROM attribute_tags at WHERE at.tag_id IN ");
        push_tag_ids(q, names);
        q.push("))");
    });
}

/// WHERE clauses (after `WHERE 1 = 1`), order and page of an attribute search
/// over `attributes a JOIN events e`.
pub(super) fn push_attribute_search(q: &mut QueryBuilder<'_, Sqlite>, f: &Filters) {
    push_attribute_filters(q, f);
    q.push(" ORDER BY a.id");
    push_page(q, f);
}

/// One attribute of a search as MISP's JSON object, rendered by SQLite
/// itself over `attributes a JOIN events e`: a chunk of them crosses sqlx as
/// one row instead of one row each (sqlx's per-row cost, 15-25 µs here,
/// dominated big exports). The same as [`attributes`] gives, typed.
pub(super) fn attribute_json_sql(f: &Filters) -> String {
    let flag = |col: &str| format!("json(CASE WHEN {col} THEN 'true' ELSE 'false' END)");
    // Objects are assembled as text (the main fields' object without its closing
    // brace, then Tag, Event and `}`): json_patch or json() would parse each again.
    format!(
        "rtrim(json_object(\
         'id', CAST(a.id AS TEXT), 'event_id', CAST(a.event_id AS TEXT), \
         'object_id', CAST(COALESCE(a.object_id, 0) AS TEXT), 'object_relation', a.object_relation, \
         'category', a.category, 'type', a.type, 'value', a.value, 'to_ids', {to_ids}, 'uuid', a.uuid, \
         'timestamp', CAST(a.timestamp AS TEXT), 'distribution', CAST(a.distribution AS TEXT), \
         'sharing_group_id', '0', 'comment', a.comment, 'deleted', {deleted}, \
         'disable_correlation', {dc}, 'first_seen', a.first_seen, 'last_seen', a.last_seen), '}}') \
         || CASE WHEN EXISTS (SELECT 1 FROM attribute_tags x WHERE x.attribute_id = a.id) THEN ',\"Tag\":' || \
           (SELECT json_group_array(json_object('id', CAST(t.id AS TEXT), 'name', t.name, 'colour', t.colour, \
            'local', {local})) FROM attribute_tags at JOIN tags t ON t.id = at.tag_id WHERE at.attribute_id = a.id) \
         ELSE '' END || ',\"Event\":' || json_object('org_id', CAST(e.org_id AS TEXT), \
           'distribution', CAST(e.distribution AS TEXT), 'id', CAST(e.id AS TEXT), 'info', e.info, \
           'orgc_id', CAST(e.orgc_id AS TEXT), 'uuid', e.uuid){event_uuid} || '}}'",
        to_ids = flag("a.to_ids"),
        deleted = flag("a.deleted"),
        dc = flag("a.disable_correlation"),
        local = flag("at.local"),
        event_uuid = if f.include_event_uuid { " || ',\"event_uuid\":' || json_quote(e.uuid)" } else { "" },
    )
}

/// /events/index with `minimal`: MISP's short entries, rendered by SQLite.
pub async fn minimal_index(conn: &mut SqliteConnection, f: &Filters) -> Result<Vec<Value>, StoreError> {
    let ids = serde_json::to_string(&event_ids(&mut *conn, f).await?).unwrap_or_else(|_| "[]".into());
    let list: String = sqlx::query(
        "SELECT COALESCE(json_group_array(json(j)), '[]') FROM (SELECT json_object('id', CAST(e.id AS TEXT), \
         'timestamp', CAST(e.timestamp AS TEXT), 'sighting_timestamp', '0', \
         'published', json(CASE WHEN e.published THEN 'true' ELSE 'false' END), 'uuid', e.uuid, 'orgc_uuid', o.uuid) AS j \
         FROM json_each(?1) x JOIN events e ON e.id = x.value JOIN orgs o ON o.id = e.orgc_id ORDER BY e.id)",
    )
    .bind(ids)
    .fetch_one(conn)
    .await?
    .get(0);
    serde_json::from_str(&list).map_err(|e| StoreError::Invalid(format!("event index: {e}")))
}

/// (id, type, value) of the attributes that match.
pub async fn attribute_values(
    conn: &mut SqliteConnection,
    f: &Filters,
) -> Result<Vec<(i64, String, String)>, StoreError> {
    let mut q = QueryBuilder::<Sqlite>::new(
        "SELECT a.id, a.type, a.value FROM attributes a JOIN events e ON e.id = a.event_id WHERE 1 = 1",
    );
    push_attribute_search(&mut q, f);
    Ok(q.build().fetch_all(conn).await?.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
}

/// The attributes that match, as restSearch returns them (each with an `Event` summary).
pub async fn attributes(conn: &mut SqliteConnection, f: &Filters) -> Result<Vec<AttributeOut>, StoreError> {
    let mut q = QueryBuilder::<Sqlite>::new(format!(
        "SELECT {ATTRIBUTE_COLUMNS} FROM attributes a JOIN events e ON e.id = a.event_id WHERE 1 = 1"
    ));
    push_attribute_search(&mut q, f);
    let rows = q.build().fetch_all(&mut *conn).await?;
    let mut tags = if rows.is_empty() { Default::default() } else { render::attribute_tags(conn, None).await? };
    Ok(rows
        .iter()
        .map(|r| {
            let t = tags.remove(&r.get::<i64, _>(0)).unwrap_or_default();
            render::attribute_row(r, t, true, f.include_event_uuid)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn filter_shapes() {
        let f = Filters::from_body(&json!({"type": "ip-dst&&!domain", "tags": {"OR": ["a", "b"], "NOT": ["c"]},
            "to_ids": 1, "last": "7d", "timestamp": [10, 20], "limit": "5"}))
        .unwrap();
        assert_eq!(f.kind.any, ["ip-dst"]);
        assert_eq!(f.kind.none, ["domain"]);
        assert_eq!(f.tags.any, ["a", "b"]);
        assert_eq!(f.tags.none, ["c"]);
        assert_eq!(f.to_ids, Some(true));
        let last = f.publish_timestamp.unwrap();
        assert!((now() - 7 * 86_400 - last.from).abs() <= 2);
        assert_eq!(f.timestamp, Some(Range { from: 10, to: Some(20) }));
        assert_eq!(f.limit, Some(5));
        assert!(Filters::from_body(&json!({"last": "7x"})).is_err());
        assert!(Filters::from_body(&json!({"tags": {"XOR": ["a"]}})).is_err());
        assert!(Filters::from_body(&json!([1, 2])).is_err());
        assert_eq!(
            Filters::from_body(&json!({"timestamp": 1727780000.9})).unwrap().timestamp.unwrap().from,
            1727780000
        );
    }

    #[test]
    fn only_bare_strings_are_split_and_operator_lists_are_literal() {
        // composite types and values in a list stay whole (they were split on `|`)
        let f = Filters::from_body(&json!({"type": ["filename|md5", "domain|ip", "!ip-dst|port"],
            "value": ["x.exe|d41d8cd98f00b204e9800998ecf8427e"]}))
        .unwrap();
        assert_eq!(f.kind.any, ["filename|md5", "domain|ip"]);
        assert_eq!(f.kind.none, ["ip-dst|port"], "a plain list item is negated by `!`, as MISP does");
        assert_eq!(f.value.any, ["x.exe|d41d8cd98f00b204e9800998ecf8427e"]);
        // restSearch: a bare string is split on `&&` only
        let f = Filters::from_body(&json!({"type": "filename|sha1", "value": "a&&!b"})).unwrap();
        assert_eq!(f.kind.any, ["filename|sha1"]);
        assert_eq!((f.value.any, f.value.none), (vec!["a".to_string()], vec!["b".to_string()]));
        // /events/index: a bare string is split on `|`, a list is not
        let f = Filters::from_index_body(&json!({"tags": "tlp:white|!tlp:red", "org": ["a|b"]})).unwrap();
        assert_eq!((f.tags.any, f.tags.none), (vec!["tlp:white".to_string()], vec!["tlp:red".to_string()]));
        assert_eq!(f.org.any, ["a|b"]);
        // OR, AND and NOT take their values literally: `!` and `|` searchable
        let f = Filters::from_index_body(&json!({"value": {"OR": ["!bang", "a|b"], "AND": ["!c"], "NOT": ["d|e"]}}))
            .unwrap();
        assert_eq!(
            f.value,
            Cond { any: vec!["!bang".into(), "a|b".into()], all: vec!["!c".into()], none: vec!["d|e".into()] }
        );
    }

    #[tokio::test]
    async fn composite_values_and_bang_values_are_found_in_lists() {
        use crate::store::{Role, Store};
        let store = Store::in_memory().await.unwrap();
        let key = store.create_key("t@lab.example", Role::User).await.unwrap();
        let user = store.user_for_key(&key).await.unwrap().unwrap();
        let ev = serde_json::from_value(json!({"info": "composites", "Attribute": [
            {"type": "filename|md5", "value": "x.exe|d41d8cd98f00b204e9800998ecf8427e"},
            {"type": "domain|ip", "value": "evil.example|203.0.113.5"},
            {"type": "text", "value": "!important"},
            {"type": "domain", "value": "plain.example"},
        ]}))
        .unwrap();
        store.add_event(&user, ev).await.unwrap();
        let found = |body: Value| {
            let store = store.clone();
            async move {
                let f = Filters::from_body(&body).unwrap();
                let mut v: Vec<String> =
                    store.search_attributes(&f).await.unwrap().into_iter().map(|a| a.value).collect();
                v.sort();
                v
            }
        };
        assert_eq!(
            found(json!({"type": ["filename|md5", "domain|ip"]})).await,
            ["evil.example|203.0.113.5", "x.exe|d41d8cd98f00b204e9800998ecf8427e"]
        );
        assert_eq!(found(json!({"value": ["evil.example|203.0.113.5"]})).await, ["evil.example|203.0.113.5"]);
        assert_eq!(found(json!({"type": "filename|md5"})).await, ["x.exe|d41d8cd98f00b204e9800998ecf8427e"]);
        assert_eq!(found(json!({"value": {"OR": ["!important"]}})).await, ["!important"]);
    }

    /// A value search is index lookups, whole value and both parts of
    /// composites, never a scan of the attributes (100,000 of them took 70 ms
    /// a request when the parts were compared row by row).
    #[tokio::test]
    async fn value_searches_use_the_indexes_of_both_parts() {
        use crate::store::Store;
        let store = Store::in_memory().await.unwrap();
        let f = Filters::from_body(&json!({"value": ["d41d8cd98f00b204e9800998ecf8427e", "c2.example"]})).unwrap();
        let mut q = QueryBuilder::<Sqlite>::new(
            "EXPLAIN QUERY PLAN SELECT a.id FROM attributes a JOIN events e ON e.id = a.event_id WHERE 1 = 1",
        );
        push_attribute_search(&mut q, &f);
        let mut conn = store.pool().acquire().await.unwrap();
        let plan: Vec<String> =
            q.build().fetch_all(&mut *conn).await.unwrap().iter().map(|r| r.get::<String, _>(3)).collect();
        let plan = plan.join("\n");
        for index in ["attributes_value ", "attributes_value1 ", "attributes_value2 "] {
            assert!(plan.contains(&format!("USING INDEX {index}")), "{index}not used:\n{plan}");
        }
        assert!(!plan.contains("SCAN a"), "{plan}");
    }

    #[tokio::test]
    async fn sqlite_rendered_json_equals_the_typed_results() {
        use crate::store::{Role, Store};
        let store = Store::in_memory().await.unwrap();
        let key = store.create_key("t@lab.example", Role::User).await.unwrap();
        let user = store.user_for_key(&key).await.unwrap().unwrap();
        let ev = serde_json::from_value(json!({"info": "i \"quoted\"", "published": true, "Attribute": [
            {"type": "domain", "value": "a.example", "to_ids": true, "Tag": [{"name": "tlp:red"}]},
            {"type": "text", "value": "line\nbreak \u{e9}", "to_ids": false, "comment": "c"},
        ], "Object": [{"name": "file", "Attribute": [{"type": "sha1", "object_relation": "sha1", "value": "a".repeat(40)}]}]}))
        .unwrap();
        store.add_event(&user, ev).await.unwrap();
        for body in [json!({}), json!({"includeEventUuid": true, "to_ids": true}), json!({"type": "text", "limit": 1})]
        {
            let f = Filters::from_body(&body).unwrap();
            let typed = serde_json::to_value(store.search_attributes(&f).await.unwrap()).unwrap();
            let sqlite: Value = serde_json::from_str(&store.search_attributes_json(&f).await.unwrap()).unwrap();
            assert_eq!(sqlite, typed, "{body}");
        }
    }

    proptest! {
        #[test]
        fn any_filter_body_is_an_error_or_filters_never_a_panic(k in "(type|tags|last|timestamp|limit|to_ids|deleted|value)", v in any::<i64>(), s in "\\PC{0,10}") {
            let _ = Filters::from_body(&json!({k.clone(): s}));
            let _ = Filters::from_body(&json!({k.clone(): v}));
            let _ = Filters::from_body(&json!({k: [s, v]}));
        }
    }
}
