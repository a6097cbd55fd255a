//! Users, their organisation and role, and API keys: 40 characters
//! `[a-zA-Z0-9]`, shown once, stored as SHA-256.
//!
//! What the store models of MISP's access rules: each user belongs to one
//! organisation and has one role, shared by all its keys. `user` adds events,
//! and edits, tags and deletes the events of its own organisation; `publisher`
//! may also publish and unpublish them; `admin` (MISP's site admin) may do all
//! of it on any event. Every key reads every event and adds sightings.

use rand::Rng;
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{Store, StoreError};
use crate::model::now;

/// What a user may do (MISP's default roles of the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// MISP's site admin: everything, on every event.
    Admin,
    /// A user who may also publish its organisation's events.
    Publisher,
    /// Adds events; edits, tags and deletes its organisation's events.
    User,
}

impl Role {
    /// The name stored and shown.
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Publisher => "publisher",
            Role::User => "user",
        }
    }

    /// MISP's id of its default role of this name.
    pub fn misp_id(self) -> &'static str {
        match self {
            Role::Admin => "1",
            Role::User => "3",
            Role::Publisher => "4",
        }
    }

    /// MISP's `perm_publish`.
    pub fn can_publish(self) -> bool {
        matches!(self, Role::Admin | Role::Publisher)
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "admin" => Ok(Role::Admin),
            "publisher" => Ok(Role::Publisher),
            "user" => Ok(Role::User),
            other => Err(format!("unknown role {other:?} (admin, publisher or user)")),
        }
    }
}

/// The user behind an API key.
#[derive(Debug, Clone)]
pub struct User {
    /// User id.
    pub id: i64,
    /// E-mail (MISP's login).
    pub email: String,
    /// Role.
    pub role: Role,
    /// Organisation id.
    pub org_id: i64,
    /// Organisation name.
    pub org_name: String,
    /// Organisation uuid.
    pub org_uuid: String,
}

impl User {
    /// MISP's rule for editing, tagging and deleting an event: a site admin
    /// any, others the events their organisation created.
    pub fn may_modify(&self, event_org: i64) -> bool {
        self.role == Role::Admin || self.org_id == event_org
    }

    /// Publishing and unpublishing: the right to modify the event and `perm_publish`.
    pub fn may_publish(&self, event_org: i64) -> bool {
        self.role.can_publish() && self.may_modify(event_org)
    }
}

/// The organisation of users created without one.
pub const ORG_NAME: &str = "ioclab";

fn key_hash(key: &str) -> String {
    Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random key: 40 characters from [a-zA-Z0-9], like MISP's.
pub fn new_key() -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rngs::OsRng;
    (0..40).map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char).collect()
}

/// A key to create, and its user if new.
#[derive(Debug, Clone, Default)]
pub struct KeyRequest<'a> {
    /// The user's e-mail.
    pub email: &'a str,
    /// The role; None: the user's own, or `user` for a new user.
    pub role: Option<Role>,
    /// The organisation; None: the user's own, or [`ORG_NAME`] for a new user.
    pub org: Option<&'a str>,
    /// Allow `role` to change the role of an existing user (and so of all its keys).
    pub change_role: bool,
}

/// A key as `keys list` shows it (the key itself is never stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// Key id (what `keys revoke` takes).
    pub id: i64,
    /// Its user's e-mail.
    pub email: String,
    /// Its user's organisation.
    pub org: String,
    /// Its user's role.
    pub role: Role,
    /// The key's last four characters, as MISP shows them.
    pub key_end: String,
    /// Creation time, Unix seconds.
    pub created: i64,
}

/// The role stored for a user (an unknown name gets the least rights).
fn stored_role(name: &str) -> Role {
    name.parse().unwrap_or(Role::User)
}

impl Store {
    /// The id of the organisation `name`, created if new.
    async fn org_id(&self, tx: &mut sqlx::SqliteConnection, name: &str) -> Result<i64, StoreError> {
        sqlx::query("INSERT OR IGNORE INTO orgs (uuid, name) VALUES (?1, ?2)")
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(name)
            .execute(&mut *tx)
            .await?;
        Ok(sqlx::query("SELECT id FROM orgs WHERE name = ?1").bind(name).fetch_one(&mut *tx).await?.get(0))
    }

    /// Creates a key for `email` with `role` (the user is created if new;
    /// an existing user must have that role already); returns the key, which
    /// is not stored and cannot be shown again.
    pub async fn create_key(&self, email: &str, role: Role) -> Result<String, StoreError> {
        self.create_key_with(&KeyRequest { email, role: Some(role), ..Default::default() }).await
    }

    /// Creates a key as `req` says. A role or organisation other than the
    /// existing user's is refused (a user's keys share them), unless
    /// `change_role` allows the role to change for all its keys.
    pub async fn create_key_with(&self, req: &KeyRequest<'_>) -> Result<String, StoreError> {
        let email = req.email.trim();
        if !email.contains('@') || email.len() < 3 {
            return Err(StoreError::Invalid(format!("{email:?} is not an e-mail address")));
        }
        if req.org.is_some_and(|o| o.trim().is_empty()) {
            return Err(StoreError::Invalid("the organisation name is empty".into()));
        }
        // IMMEDIATE: the write lock first, so that reading the user then writing never fails on the upgrade
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let existing = sqlx::query(
            "SELECT u.id, u.role, o.name, (SELECT count(*) FROM api_keys k WHERE k.user_id = u.id) \
             FROM users u JOIN orgs o ON o.id = u.org_id WHERE u.email = ?1",
        )
        .bind(email)
        .fetch_optional(&mut *tx)
        .await?;
        let uid: i64 = match existing {
            Some(r) => {
                let (uid, role, org, keys): (i64, Role, String, i64) =
                    (r.get(0), stored_role(r.get(1)), r.get(2), r.get(3));
                if let Some(wanted) = req.org.map(str::trim).filter(|o| *o != org) {
                    return Err(StoreError::Invalid(format!(
                        "{email} is a user of the organisation {org:?}, not {wanted:?}: its keys share its organisation"
                    )));
                }
                match req.role.filter(|r| *r != role) {
                    Some(wanted) if req.change_role => {
                        sqlx::query("UPDATE users SET role = ?1 WHERE id = ?2")
                            .bind(wanted.name())
                            .bind(uid)
                            .execute(&mut *tx)
                            .await?;
                    }
                    Some(wanted) => {
                        return Err(StoreError::Invalid(format!(
                            "{email} has the role {} ({keys} key(s)); a new key gets that role. Changing it to {} \
                             changes it for all of its keys: ask for that explicitly (--change-role)",
                            role.name(),
                            wanted.name()
                        )))
                    }
                    None => {}
                }
                uid
            }
            None => {
                let org = self.org_id(&mut tx, req.org.map(str::trim).unwrap_or(ORG_NAME)).await?;
                sqlx::query("INSERT INTO users (email, org_id, role, created) VALUES (?1, ?2, ?3, ?4) RETURNING id")
                    .bind(email)
                    .bind(org)
                    .bind(req.role.unwrap_or(Role::User).name())
                    .bind(now())
                    .fetch_one(&mut *tx)
                    .await?
                    .get(0)
            }
        };
        let key = new_key();
        sqlx::query("INSERT INTO api_keys (user_id, key_sha256, key_end, created) VALUES (?1, ?2, ?3, ?4)")
            .bind(uid)
            .bind(key_hash(&key))
            .bind(&key[36..])
            .bind(now())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(key)
    }

    /// Every key, oldest first.
    pub async fn keys(&self) -> Result<Vec<KeyInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT k.id, u.email, o.name, u.role, k.key_end, k.created FROM api_keys k \
             JOIN users u ON u.id = k.user_id JOIN orgs o ON o.id = u.org_id ORDER BY k.id",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| KeyInfo {
                id: r.get(0),
                email: r.get(1),
                org: r.get(2),
                role: stored_role(r.get(3)),
                key_end: r.get(4),
                created: r.get(5),
            })
            .collect())
    }

    /// The organisation that created the event `key` (id or uuid).
    pub async fn event_org(&self, key: &str) -> Result<i64, StoreError> {
        let id = self.event_id(key).await?;
        Ok(sqlx::query("SELECT orgc_id FROM events WHERE id = ?1").bind(id).fetch_one(self.pool()).await?.get(0))
    }

    /// The organisation that created the event with this uuid, or the event
    /// of the attribute with this uuid.
    pub async fn owner_org(&self, uuid: &str) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "SELECT orgc_id FROM events WHERE uuid = ?1 UNION ALL \
             SELECT e.orgc_id FROM attributes a JOIN events e ON e.id = a.event_id WHERE a.uuid = ?1 LIMIT 1",
        )
        .bind(uuid.to_ascii_lowercase())
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| r.get(0)).ok_or_else(|| StoreError::NotFound("Invalid Target.".into()))
    }

    /// Revokes the key `id`; what it was.
    pub async fn revoke_key(&self, id: i64) -> Result<KeyInfo, StoreError> {
        let info = self.keys().await?.into_iter().find(|k| k.id == id);
        let Some(info) = info else {
            return Err(StoreError::NotFound(format!("no key with id {id} (ioclab misp keys list shows them)")));
        };
        sqlx::query("DELETE FROM api_keys WHERE id = ?1").bind(id).execute(self.pool()).await?;
        Ok(info)
    }

    /// The user whose key this is, if any.
    pub async fn user_for_key(&self, key: &str) -> Result<Option<User>, StoreError> {
        if key.len() != 40 || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Ok(None);
        }
        let r = sqlx::query(
            "SELECT u.id, u.email, u.role, o.id, o.name, o.uuid FROM api_keys k JOIN users u ON u.id = k.user_id \
             JOIN orgs o ON o.id = u.org_id WHERE k.key_sha256 = ?1",
        )
        .bind(key_hash(key))
        .fetch_optional(self.pool())
        .await?;
        Ok(r.map(|r| User {
            id: r.get(0),
            email: r.get(1),
            role: stored_role(r.get(2)),
            org_id: r.get(3),
            org_name: r.get(4),
            org_uuid: r.get(5),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_are_40_alphanumerics_stored_hashed() {
        let store = Store::in_memory().await.unwrap();
        let key = store.create_key("trainer@lab.example", Role::Admin).await.unwrap();
        assert_eq!(key.len(), 40);
        assert!(key.bytes().all(|b| b.is_ascii_alphanumeric()));
        let u = store.user_for_key(&key).await.unwrap().unwrap();
        assert_eq!(u.email, "trainer@lab.example");
        assert_eq!(u.role, Role::Admin);
        let stored: String =
            sqlx::query("SELECT key_sha256 FROM api_keys").fetch_one(store.pool()).await.unwrap().get(0);
        assert_ne!(stored, key, "the key itself is not stored");
        assert!(store.user_for_key(&new_key()).await.unwrap().is_none());
        assert!(store.user_for_key("short").await.unwrap().is_none());
        assert!(store.create_key("not-an-email", Role::User).await.is_err());
    }

    fn req(email: &str, role: Option<Role>) -> KeyRequest<'_> {
        KeyRequest { email, role, ..Default::default() }
    }

    #[tokio::test]
    async fn a_new_user_is_a_user_of_the_lab_organisation() {
        let store = Store::in_memory().await.unwrap();
        let key = store.create_key_with(&req("new@lab.example", None)).await.unwrap();
        let u = store.user_for_key(&key).await.unwrap().unwrap();
        assert_eq!((u.role, u.org_name.as_str()), (Role::User, ORG_NAME));
    }

    #[tokio::test]
    async fn another_key_never_changes_the_role_of_the_first() {
        let store = Store::in_memory().await.unwrap();
        let admin = store.create_key("t@lab.example", Role::Admin).await.unwrap();
        // the same role, or none: a second key of the same user
        let second = store.create_key_with(&req("t@lab.example", None)).await.unwrap();
        assert_eq!(store.user_for_key(&second).await.unwrap().unwrap().role, Role::Admin);
        store.create_key("t@lab.example", Role::Admin).await.unwrap();
        // another role: refused, and the first key keeps its role
        let err = store.create_key("t@lab.example", Role::User).await.unwrap_err().to_string();
        assert!(err.contains("has the role admin") && err.contains("--change-role"), "{err}");
        assert_eq!(store.user_for_key(&admin).await.unwrap().unwrap().role, Role::Admin);
        assert_eq!(store.keys().await.unwrap().len(), 3, "no key made by the refused request");
        // asked explicitly: all its keys change
        let ask = KeyRequest { change_role: true, ..req("t@lab.example", Some(Role::Publisher)) };
        store.create_key_with(&ask).await.unwrap();
        assert_eq!(store.user_for_key(&admin).await.unwrap().unwrap().role, Role::Publisher);
        // another organisation: refused
        let ask = KeyRequest { org: Some("other"), ..req("t@lab.example", None) };
        let err = store.create_key_with(&ask).await.unwrap_err().to_string();
        assert!(err.contains("organisation \"ioclab\""), "{err}");
    }

    #[tokio::test]
    async fn keys_are_listed_and_revoked() {
        let store = Store::in_memory().await.unwrap();
        let a = store.create_key("a@lab.example", Role::Admin).await.unwrap();
        let ask = KeyRequest { org: Some("red team"), ..req("b@lab.example", None) };
        let b = store.create_key_with(&ask).await.unwrap();
        let list = store.keys().await.unwrap();
        let shown: Vec<(&str, &str, Role, &str)> =
            list.iter().map(|k| (k.email.as_str(), k.org.as_str(), k.role, k.key_end.as_str())).collect();
        assert_eq!(
            shown,
            [("a@lab.example", ORG_NAME, Role::Admin, &a[36..]), ("b@lab.example", "red team", Role::User, &b[36..])]
        );
        let gone = store.revoke_key(list[1].id).await.unwrap();
        assert_eq!(gone.email, "b@lab.example");
        assert!(store.user_for_key(&b).await.unwrap().is_none(), "a revoked key no longer authenticates");
        assert!(store.user_for_key(&a).await.unwrap().is_some());
        let err = store.revoke_key(list[1].id).await.unwrap_err().to_string();
        assert!(err.contains("no key with id"), "{err}");
    }

    #[tokio::test]
    async fn a_store_made_before_the_publisher_role_keeps_its_users_and_keys() {
        use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("old.db");
        let opts = SqliteConnectOptions::new().filename(&path).create_if_missing(true).foreign_keys(true);
        let pool = SqlitePool::connect_with(opts).await.unwrap();
        let mut first = sqlx::migrate!("../migrations");
        first.migrations = first.iter().take(1).cloned().collect::<Vec<_>>().into();
        first.run(&pool).await.unwrap();
        let key = new_key();
        for sql in [
            "INSERT INTO orgs (uuid, name) VALUES ('0b0e9b5e-0000-4000-8000-000000000000', 'ioclab')",
            "INSERT INTO users (email, org_id, role, created) VALUES ('old@lab.example', 1, 'admin', 0)",
        ] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        sqlx::query("INSERT INTO api_keys (user_id, key_sha256, key_end, created) VALUES (1, ?1, ?2, 0)")
            .bind(key_hash(&key))
            .bind(&key[36..])
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;

        let store = Store::open(&path).await.unwrap();
        let u = store.user_for_key(&key).await.unwrap().unwrap();
        assert_eq!((u.email.as_str(), u.role), ("old@lab.example", Role::Admin));
        store.create_key("p@lab.example", Role::Publisher).await.unwrap();
        let orphan =
            sqlx::query("INSERT INTO api_keys (user_id, key_sha256, key_end, created) VALUES (99, 'x', 'x', 0)")
                .execute(store.pool())
                .await;
        assert!(orphan.is_err(), "api_keys still refers to users");
    }

    #[test]
    fn modify_and_publish_rules() {
        let user = |role, org_id| User {
            id: 1,
            email: "x@lab.example".into(),
            role,
            org_id,
            org_name: "o".into(),
            org_uuid: "u".into(),
        };
        assert!(user(Role::User, 1).may_modify(1));
        assert!(!user(Role::User, 2).may_modify(1));
        assert!(!user(Role::User, 1).may_publish(1));
        assert!(user(Role::Publisher, 1).may_publish(1));
        assert!(!user(Role::Publisher, 2).may_publish(1));
        assert!(user(Role::Admin, 2).may_modify(1) && user(Role::Admin, 2).may_publish(1));
    }
}
