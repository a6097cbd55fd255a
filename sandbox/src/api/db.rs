//! Tasks and samples in SQLite (schema: migrations/sandbox/), in Cuckoo
//! 2.0.7's shapes.

use std::path::Path;

use ioclab_agent::hashes::Sha256;
use serde_json::{json, Value};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{Row, SqlitePool};

use crate::detonation::FileFacts;

/// A database problem.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite refused.
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// A task's status, as Cuckoo names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Waiting in the queue.
    Pending,
    /// Being detonated.
    Running,
    /// Detonated, report not written yet.
    Completed,
    /// Report written.
    Reported,
    /// The detonation could not run (reason in `errors`).
    FailedAnalysis,
    /// The report could not be built or written.
    FailedReporting,
}

impl Status {
    /// Cuckoo's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Running => "running",
            Status::Completed => "completed",
            Status::Reported => "reported",
            Status::FailedAnalysis => "failed_analysis",
            Status::FailedReporting => "failed_reporting",
        }
    }
}

/// What a submission asks for.
#[derive(Debug, Clone, Default)]
pub struct NewTask {
    /// `file` or `url`.
    pub category: &'static str,
    /// File name or URL.
    pub target: String,
    /// The stored sample, for file tasks.
    pub sample: Option<FileFacts>,
    /// Package name.
    pub package: Option<String>,
    /// `key=value,...`.
    pub options: String,
    /// Seconds.
    pub timeout: u64,
    /// Cuckoo's priority (higher first).
    pub priority: i64,
    /// Free text.
    pub custom: Option<String>,
    /// Who submitted.
    pub owner: Option<String>,
    /// Requested machine.
    pub machine: Option<String>,
    /// Requested platform.
    pub platform: Option<String>,
    /// Comma-separated tags.
    pub tags: String,
    /// Cuckoo's `memory` (full memory dump) flag.
    pub memory: bool,
    /// Run the whole timeout.
    pub enforce_timeout: bool,
}

/// A task row, as the queue needs it.
#[derive(Debug, Clone)]
pub struct TaskRow {
    /// Id.
    pub id: i64,
    /// `file` or `url`.
    pub category: String,
    /// File name or URL.
    pub target: String,
    /// SHA-256 of the sample, for file tasks.
    pub sha256: Option<String>,
    /// Package.
    pub package: Option<String>,
    /// `key=value,...`.
    pub options: String,
    /// Seconds.
    pub timeout: u64,
    /// Run the whole timeout.
    pub enforce_timeout: bool,
    /// Current status.
    pub status: String,
}

/// The database.
#[derive(Clone)]
pub struct TaskDb {
    pool: SqlitePool,
}

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// `YYYY-MM-DD HH:MM:SS`, Cuckoo's date format in task views.
pub fn datetime(epoch: f64) -> String {
    let t = ioclab_agent::events::time::UtcTime((epoch * 1e9) as i128).to_string();
    t[..19].replacen('T', " ", 1)
}

impl TaskDb {
    /// Opens (creating it if needed) the database at `path` and migrates it.
    pub async fn open(path: &Path) -> Result<Self, DbError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(std::time::Duration::from_secs(10));
        Self::connect(opts, 4).await
    }

    /// A private in-memory database (tests).
    pub async fn in_memory() -> Result<Self, DbError> {
        Self::connect(SqliteConnectOptions::new().in_memory(true), 1).await
    }

    async fn connect(opts: SqliteConnectOptions, max: u32) -> Result<Self, DbError> {
        let pool = SqlitePoolOptions::new().max_connections(max).connect_with(opts).await?;
        sqlx::migrate!("../migrations/sandbox").run(&pool).await?;
        Ok(TaskDb { pool })
    }

    /// Records a sample (once per SHA-256) and returns its id.
    async fn sample_id(&self, f: &FileFacts) -> Result<i64, DbError> {
        sqlx::query(
            "INSERT INTO samples (file_size, file_type, md5, sha1, sha256, sha512, ssdeep) VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(f.size as i64)
        .bind(&f.kind)
        .bind(f.md5.to_string())
        .bind(f.sha1.to_string())
        .bind(f.sha256.to_string())
        .bind(f.sha512.to_string())
        .bind(&f.ssdeep)
        .execute(&self.pool)
        .await?;
        Ok(sqlx::query("SELECT id FROM samples WHERE sha256 = ?")
            .bind(f.sha256.to_string())
            .fetch_one(&self.pool)
            .await?
            .get(0))
    }

    /// Adds a pending task; returns its id.
    pub async fn create(&self, t: &NewTask) -> Result<i64, DbError> {
        self.insert(t, None).await
    }

    /// Adds a task already `reported` (an imported report), with its analysis times; returns its id.
    /// One statement: the queue never sees it pending.
    pub async fn create_reported(&self, t: &NewTask, started: f64, ended: f64) -> Result<i64, DbError> {
        // epoch 0 means the report did not say: the import time stands in
        let (started, ended) = if started > 0.0 { (started, ended.max(started)) } else { (now(), now()) };
        self.insert(t, Some((started, ended))).await
    }

    async fn insert(&self, t: &NewTask, reported: Option<(f64, f64)>) -> Result<i64, DbError> {
        let sample_id = match &t.sample {
            Some(f) => Some(self.sample_id(f).await?),
            None => None,
        };
        let id = sqlx::query(
            "INSERT INTO tasks (category, target, sample_id, package, options, timeout, priority, custom, owner, machine,
                                platform, tags, memory, enforce_timeout, added_on, status, started_on, completed_on)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(t.category)
        .bind(&t.target)
        .bind(sample_id)
        .bind(&t.package)
        .bind(&t.options)
        .bind(t.timeout as i64)
        .bind(t.priority)
        .bind(&t.custom)
        .bind(&t.owner)
        .bind(&t.machine)
        .bind(&t.platform)
        .bind(&t.tags)
        .bind(t.memory)
        .bind(t.enforce_timeout)
        .bind(now())
        .bind(if reported.is_some() { Status::Reported } else { Status::Pending }.as_str())
        .bind(reported.map(|r| r.0))
        .bind(reported.map(|r| r.1))
        .execute(&self.pool)
        .await?
        .last_insert_rowid();
        Ok(id)
    }

    /// The task in Cuckoo's `/tasks/view` shape, `None` when unknown.
    pub async fn view(&self, id: i64) -> Result<Option<Value>, DbError> {
        let rows = self.views("WHERE t.id = ?", Some(id), i64::MAX, 0).await?;
        Ok(rows.into_iter().next())
    }

    /// Tasks in Cuckoo's shape, oldest first.
    pub async fn list(&self, limit: i64, offset: i64) -> Result<Vec<Value>, DbError> {
        self.views("", None, limit, offset).await
    }

    async fn views(&self, filter: &str, id: Option<i64>, limit: i64, offset: i64) -> Result<Vec<Value>, DbError> {
        let sql = format!(
            "SELECT t.id, t.category, t.target, t.package, t.options, t.timeout, t.priority, t.custom, t.owner, t.machine,
                    t.platform, t.tags, t.memory, t.enforce_timeout, t.added_on, t.started_on, t.completed_on, t.status,
                    t.errors, s.id, s.file_size, s.file_type, s.md5, s.sha1, s.sha256, s.sha512, s.ssdeep
             FROM tasks t LEFT JOIN samples s ON s.id = t.sample_id {filter} ORDER BY t.id LIMIT ? OFFSET ?"
        );
        let mut q = sqlx::query(&sql);
        if let Some(id) = id {
            q = q.bind(id);
        }
        let rows = q.bind(limit).bind(offset).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(task_view).collect())
    }

    /// A stored sample in Cuckoo's `/files/view` shape, by `md5`, `sha256` or `id`.
    pub async fn sample(&self, column: &str, value: &str) -> Result<Option<Value>, DbError> {
        let column = match column {
            "md5" => "md5",
            "sha256" => "sha256",
            _ => "id",
        };
        let sql = format!(
            "SELECT id, file_size, file_type, md5, sha1, sha256, sha512, ssdeep FROM samples WHERE {column} = ?"
        );
        let row = sqlx::query(&sql).bind(value.to_ascii_lowercase()).fetch_optional(&self.pool).await?;
        Ok(row.map(|r| {
            json!({"id": r.get::<i64, _>(0), "file_size": r.get::<i64, _>(1), "file_type": r.get::<String, _>(2),
                   "md5": r.get::<String, _>(3), "sha1": r.get::<String, _>(4), "sha256": r.get::<String, _>(5),
                   "sha512": r.get::<String, _>(6), "ssdeep": r.get::<Option<String>, _>(7)})
        }))
    }

    /// Whether a sample with this SHA-256 is known.
    pub async fn has_sample(&self, sha256: &Sha256) -> Result<bool, DbError> {
        Ok(sqlx::query("SELECT 1 FROM samples WHERE sha256 = ?")
            .bind(sha256.to_string())
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    /// Takes the next pending task (highest priority, then oldest) and marks it running.
    pub async fn claim_next(&self) -> Result<Option<TaskRow>, DbError> {
        let row = sqlx::query(
            "UPDATE tasks SET status = 'running', started_on = ?
             WHERE id = (SELECT id FROM tasks WHERE status = 'pending' ORDER BY priority DESC, id LIMIT 1)
             RETURNING id",
        )
        .bind(now())
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => self.row(r.get(0)).await,
            None => Ok(None),
        }
    }

    /// A task as the queue needs it.
    pub async fn row(&self, id: i64) -> Result<Option<TaskRow>, DbError> {
        let r = sqlx::query(
            "SELECT t.id, t.category, t.target, s.sha256, t.package, t.options, t.timeout, t.enforce_timeout, t.status
             FROM tasks t LEFT JOIN samples s ON s.id = t.sample_id WHERE t.id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(r.map(|r| TaskRow {
            id: r.get(0),
            category: r.get(1),
            target: r.get(2),
            sha256: r.get(3),
            package: r.get(4),
            options: r.get(5),
            timeout: r.get::<i64, _>(6).max(0) as u64,
            enforce_timeout: r.get(7),
            status: r.get(8),
        }))
    }

    /// Moves a task to `status`, adding `error` to its errors when given.
    pub async fn set_status(&self, id: i64, status: Status, error: Option<&str>) -> Result<(), DbError> {
        let completed = matches!(status, Status::Completed | Status::FailedAnalysis).then(now);
        sqlx::query(
            "UPDATE tasks SET status = ?, completed_on = COALESCE(?, completed_on),
                 errors = CASE WHEN ? IS NULL THEN errors ELSE json_insert(errors, '$[#]', ?) END
             WHERE id = ?",
        )
        .bind(status.as_str())
        .bind(completed)
        .bind(error)
        .bind(error)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// At start: tasks a killed server left running cannot finish; they fail with the reason.
    pub async fn fail_interrupted(&self) -> Result<Vec<i64>, DbError> {
        let rows = sqlx::query(
            "UPDATE tasks SET status = 'failed_analysis', completed_on = ?,
                 errors = json_insert(errors, '$[#]', 'the server stopped during the analysis (its processes were killed with it); submit the sample again')
             WHERE status IN ('running', 'completed') RETURNING id",
        )
        .bind(now())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Deletes a task that is not running; `Ok(false)` when there is no such task.
    pub async fn delete(&self, id: i64) -> Result<Option<bool>, DbError> {
        let status: Option<String> = sqlx::query("SELECT status FROM tasks WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.get(0));
        match status.as_deref() {
            None => Ok(None),
            Some("running") => Ok(Some(false)),
            Some(_) => {
                sqlx::query("DELETE FROM tasks WHERE id = ? AND status != 'running'")
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                Ok(Some(true))
            }
        }
    }

    /// Task counts by status.
    pub async fn counts(&self) -> Result<Value, DbError> {
        let rows = sqlx::query("SELECT status, COUNT(*) FROM tasks GROUP BY status").fetch_all(&self.pool).await?;
        let mut out = json!({"total": 0, "pending": 0, "running": 0, "completed": 0, "reported": 0});
        let mut total = 0i64;
        for r in rows {
            let (status, n): (String, i64) = (r.get(0), r.get(1));
            total += n;
            out[status] = json!(n);
        }
        out["total"] = json!(total);
        Ok(out)
    }
}

fn task_view(r: &sqlx::sqlite::SqliteRow) -> Value {
    let date = |i: usize| r.get::<Option<f64>, _>(i).map(datetime);
    let errors: Vec<String> = serde_json::from_str(&r.get::<String, _>(18)).unwrap_or_default();
    let sample = match r.get::<Option<i64>, _>(19) {
        Some(sid) => json!({"id": sid, "file_size": r.get::<i64, _>(20), "file_type": r.get::<String, _>(21),
            "md5": r.get::<String, _>(22), "sha1": r.get::<String, _>(23), "sha256": r.get::<String, _>(24),
            "sha512": r.get::<String, _>(25), "ssdeep": r.get::<Option<String>, _>(26)}),
        None => Value::Null,
    };
    let tags: Vec<&str> = r.get::<&str, _>(11).split(',').map(str::trim).filter(|t| !t.is_empty()).collect();
    json!({
        "id": r.get::<i64, _>(0), "category": r.get::<String, _>(1), "target": r.get::<String, _>(2),
        "package": r.get::<Option<String>, _>(3), "options": r.get::<String, _>(4), "timeout": r.get::<i64, _>(5),
        "priority": r.get::<i64, _>(6), "custom": r.get::<Option<String>, _>(7), "owner": r.get::<Option<String>, _>(8),
        "machine": r.get::<Option<String>, _>(9), "platform": r.get::<Option<String>, _>(10), "tags": tags,
        "memory": r.get::<bool, _>(12), "enforce_timeout": r.get::<bool, _>(13), "added_on": date(14),
        "started_on": date(15), "completed_on": date(16), "status": r.get::<String, _>(17),
        "duration": match (r.get::<Option<f64>, _>(15), r.get::<Option<f64>, _>(16)) {
            (Some(a), Some(b)) => json!((b - a).max(0.0).round() as i64),
            _ => Value::Null,
        },
        "errors": errors, "sample_id": sample.get("id").cloned().unwrap_or(Value::Null), "sample": sample,
        "guest": {}, "route": "none", "processing": null, "clock": date(14),
    })
}
