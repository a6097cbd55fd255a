//! Users, their organisation, and API keys: 40 characters `[a-zA-Z0-9]`,
//! shown once, stored as SHA-256.

use rand::Rng;
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{Store, StoreError};
use crate::model::now;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Admin,
    /// Read and write events.
    User,
}

impl Role {
    /// The name stored and shown.
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "admin" => Ok(Role::Admin),
            "user" => Ok(Role::User),
            other => Err(format!("unknown role {other:?} (admin or user)")),
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

/// The organisation users belong to (the appliance serves one).
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

impl Store {
    async fn org_id(&self) -> Result<i64, StoreError> {
        sqlx::query("INSERT OR IGNORE INTO orgs (uuid, name) VALUES (?1, ?2)")
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(ORG_NAME)
            .execute(self.pool())
            .await?;
        Ok(sqlx::query("SELECT id FROM orgs WHERE name = ?1").bind(ORG_NAME).fetch_one(self.pool()).await?.get(0))
    }

    /// Creates a key for `email` (the user is created, or its role updated);
    /// returns the key, which is not stored and cannot be shown again.
    pub async fn create_key(&self, email: &str, role: Role) -> Result<String, StoreError> {
        let email = email.trim();
        if !email.contains('@') || email.len() < 3 {
            return Err(StoreError::Invalid(format!("{email:?} is not an e-mail address")));
        }
        let org = self.org_id().await?;
        sqlx::query(
            "INSERT INTO users (email, org_id, role, created) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT(email) DO UPDATE SET role = excluded.role",
        )
        .bind(email)
        .bind(org)
        .bind(role.name())
        .bind(now())
        .execute(self.pool())
        .await?;
        let uid: i64 =
            sqlx::query("SELECT id FROM users WHERE email = ?1").bind(email).fetch_one(self.pool()).await?.get(0);
        let key = new_key();
        sqlx::query("INSERT INTO api_keys (user_id, key_sha256, key_end, created) VALUES (?1, ?2, ?3, ?4)")
            .bind(uid)
            .bind(key_hash(&key))
            .bind(&key[36..])
            .bind(now())
            .execute(self.pool())
            .await?;
        Ok(key)
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
            role: if r.get::<String, _>(2) == "admin" { Role::Admin } else { Role::User },
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
}
