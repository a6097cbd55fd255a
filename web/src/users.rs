//! The appliance's accounts, in SQLite (`<data>/web.db`): a name, a role,
//! an argon2 password hash and, optionally, the digest of an API token.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::Row;

use crate::password;

/// What an account may do; the server checks it on every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs scenarios for themselves, sees their own runs and scores.
    Trainee,
    /// Everything: every run, publishing, the class, answers.
    Instructor,
}

impl Role {
    /// The role's name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Trainee => "trainee",
            Role::Instructor => "instructor",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "trainee" => Ok(Role::Trainee),
            "instructor" => Ok(Role::Instructor),
            other => Err(format!("unknown role {other:?}: trainee or instructor")),
        }
    }
}

/// A login name: 1 to 32 of `a-z 0-9 . _ -`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserName(String);

impl UserName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for UserName {
    type Err = String;
    fn from_str(s: &str) -> Result<UserName, String> {
        let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-');
        let first_ok = s.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if s.is_empty() || s.len() > 32 || !first_ok || !s.chars().all(ok_char) {
            return Err(format!(
                "invalid user name {s:?}: 1 to 32 of a-z, 0-9, '.', '_', '-', starting with a letter or digit"
            ));
        }
        Ok(UserName(s.to_string()))
    }
}

impl TryFrom<String> for UserName {
    type Error = String;
    fn try_from(s: String) -> Result<UserName, String> {
        s.parse()
    }
}

impl From<UserName> for String {
    fn from(n: UserName) -> String {
        n.0
    }
}

/// An account, without its secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// The login name.
    pub name: UserName,
    /// The role.
    pub role: Role,
    /// Whether it has an API token.
    pub has_token: bool,
    /// When it was made, epoch seconds.
    pub created: i64,
}

/// Why the user store failed.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The database failed.
    #[error("the account store {path}: {source}")]
    Db {
        /// The database file.
        path: String,
        /// Why.
        source: sqlx::Error,
    },
    /// The name is taken.
    #[error("user {0} already exists")]
    Exists(UserName),
    /// No such user.
    #[error("no user {0} (see `ioclab users list`)")]
    Unknown(UserName),
}

/// The accounts.
#[derive(Debug, Clone)]
pub struct UserDb {
    pool: SqlitePool,
    path: String,
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('trainee', 'instructor')),
    password TEXT NOT NULL,
    token TEXT UNIQUE,
    created INTEGER NOT NULL
)";

/// Epoch seconds now (the stores' timestamps).
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

impl UserDb {
    /// Opens (or makes) the store at `path`.
    pub async fn open(path: &Path) -> Result<UserDb, UserError> {
        let shown = path.display().to_string();
        let db = |source| UserError::Db { path: shown.clone(), source };
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await.map_err(db)?;
        sqlx::query(SCHEMA).execute(&pool).await.map_err(db)?;
        Ok(UserDb { pool, path: shown })
    }

    /// The pool (the sessions share the file).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    fn err(&self, source: sqlx::Error) -> UserError {
        UserError::Db { path: self.path.clone(), source }
    }

    /// Adds a user with `password`.
    pub async fn add(&self, name: &UserName, role: Role, password: &str) -> Result<(), UserError> {
        let hash = password::hash(password);
        let r = sqlx::query("INSERT INTO users (name, role, password, created) VALUES (?, ?, ?, ?)")
            .bind(name.as_str())
            .bind(role.as_str())
            .bind(hash)
            .bind(now())
            .execute(&self.pool)
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(UserError::Exists(name.clone())),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Every user, by name.
    pub async fn list(&self) -> Result<Vec<User>, UserError> {
        let rows = sqlx::query("SELECT name, role, token IS NOT NULL AS has_token, created FROM users ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(rows.iter().filter_map(row_user).collect())
    }

    /// One user.
    pub async fn get(&self, name: &UserName) -> Result<Option<User>, UserError> {
        let row = sqlx::query("SELECT name, role, token IS NOT NULL AS has_token, created FROM users WHERE name = ?")
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(row.as_ref().and_then(row_user))
    }

    /// Whether any instructor exists (the first run makes one).
    pub async fn has_instructor(&self) -> Result<bool, UserError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = 'instructor'")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(n > 0)
    }

    /// The user when `password` is theirs.
    pub async fn verify(&self, name: &UserName, password: &str) -> Result<Option<User>, UserError> {
        let hash: Option<String> = sqlx::query_scalar("SELECT password FROM users WHERE name = ?")
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        match hash {
            Some(h) if password::verify(password, &h) => self.get(name).await,
            Some(_) => Ok(None),
            None => {
                // same work as a wrong password: timing does not tell which names exist
                let _ = password::verify(password, dummy_hash());
                Ok(None)
            }
        }
    }

    /// Runs `sql` on `name`'s row (its last parameter is the name, `value` the one before, if any).
    async fn change(&self, sql: &str, value: Option<String>, name: &UserName) -> Result<(), UserError> {
        let mut q = sqlx::query(sql);
        if let Some(v) = value {
            q = q.bind(v);
        }
        let r = q.bind(name.as_str()).execute(&self.pool).await.map_err(|e| self.err(e))?;
        if r.rows_affected() == 0 {
            return Err(UserError::Unknown(name.clone()));
        }
        Ok(())
    }

    /// Sets a new password.
    pub async fn set_password(&self, name: &UserName, password: &str) -> Result<(), UserError> {
        self.change("UPDATE users SET password = ? WHERE name = ?", Some(password::hash(password)), name).await
    }

    /// Gives `name` a new API token (the old one stops working) and returns it.
    pub async fn new_token(&self, name: &UserName) -> Result<String, UserError> {
        let token = password::token();
        self.change("UPDATE users SET token = ? WHERE name = ?", Some(password::token_digest(&token)), name).await?;
        Ok(token)
    }

    /// The user whose API token is `token`.
    pub async fn by_token(&self, token: &str) -> Result<Option<User>, UserError> {
        let row = sqlx::query("SELECT name, role, 1 AS has_token, created FROM users WHERE token = ?")
            .bind(password::token_digest(token))
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(row.as_ref().and_then(row_user))
    }

    /// Removes a user.
    pub async fn remove(&self, name: &UserName) -> Result<(), UserError> {
        self.change("DELETE FROM users WHERE name = ?", None, name).await
    }
}

/// An argon2 hash of a random password nobody knows (made once).
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| password::hash(&password::token()))
}

fn row_user(r: &sqlx::sqlite::SqliteRow) -> Option<User> {
    Some(User {
        name: r.try_get::<String, _>("name").ok()?.parse().ok()?,
        role: r.try_get::<String, _>("role").ok()?.parse().ok()?,
        has_token: r.try_get::<bool, _>("has_token").ok()?,
        created: r.try_get("created").ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!("alice".parse::<UserName>().is_ok());
        assert!("trainee-07".parse::<UserName>().is_ok());
        for bad in ["", "Alice", "-x", "a b", "a<script>", &"x".repeat(33)] {
            assert!(bad.parse::<UserName>().is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn add_verify_token_reset_remove() {
        let dir = tempfile::tempdir().unwrap();
        let db = UserDb::open(&dir.path().join("web.db")).await.unwrap();
        let alice: UserName = "alice".parse().unwrap();
        assert!(!db.has_instructor().await.unwrap());
        db.add(&alice, Role::Instructor, "pw-one").await.unwrap();
        assert!(matches!(db.add(&alice, Role::Trainee, "x").await, Err(UserError::Exists(_))));
        assert!(db.has_instructor().await.unwrap());
        assert_eq!(db.verify(&alice, "pw-one").await.unwrap().unwrap().role, Role::Instructor);
        assert!(db.verify(&alice, "pw-two").await.unwrap().is_none());
        assert!(db.verify(&"bob".parse().unwrap(), "pw-one").await.unwrap().is_none());
        let token = db.new_token(&alice).await.unwrap();
        assert_eq!(db.by_token(&token).await.unwrap().unwrap().name, alice);
        assert!(db.by_token("nope").await.unwrap().is_none());
        db.set_password(&alice, "pw-two").await.unwrap();
        assert!(db.verify(&alice, "pw-two").await.unwrap().is_some());
        assert!(db.verify(&alice, "pw-one").await.unwrap().is_none());
        db.remove(&alice).await.unwrap();
        assert!(db.list().await.unwrap().is_empty());
        assert!(matches!(db.remove(&alice).await, Err(UserError::Unknown(_))));
    }
}
