//! Passwords and API tokens: argon2 hashes (never the secret itself is
//! stored) and generated secrets that read well on a printed sheet.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::Rng;

/// Letters and digits that cannot be mistaken for each other on paper (no 0/O, 1/l/I).
const READABLE: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";

/// An argon2id hash of `secret` in PHC format (salt included).
pub fn hash(secret: &str) -> String {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .expect("argon2 with default parameters hashes")
        .to_string()
}

/// Whether `secret` matches `phc` (false for a malformed hash).
pub fn verify(secret: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default().verify_password(secret.as_bytes(), &h).is_ok(),
        Err(_) => false,
    }
}

/// A new password: three groups of four readable characters (`abcd-efgh-jkmn`, ~70 bits).
pub fn generate() -> String {
    let mut rng = rand::rngs::OsRng;
    let group = |rng: &mut rand::rngs::OsRng| -> String {
        (0..4).map(|_| READABLE[rng.gen_range(0..READABLE.len())] as char).collect()
    };
    format!("{}-{}-{}", group(&mut rng), group(&mut rng), group(&mut rng))
}

/// A new API token: 32 random bytes, hex.
pub fn token() -> String {
    let bytes: [u8; 32] = rand::rngs::OsRng.gen();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of a token, hex: tokens are long random secrets, so a fast
/// hash suffices and lets a request find its user by lookup.
pub fn token_digest(token: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash("abcd-efgh-jkmn");
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify("abcd-efgh-jkmn", &h));
        assert!(!verify("abcd-efgh-jkmm", &h));
        assert!(!verify("abcd-efgh-jkmn", "not a hash"));
    }

    #[test]
    fn generated_secrets_differ_and_read_well() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert_eq!(a.len(), 14);
        assert!(a.chars().all(|c| c == '-' || READABLE.contains(&(c as u8))), "{a}");
        assert_eq!(token().len(), 64);
        assert_eq!(token_digest("x"), token_digest("x"));
        assert_ne!(token_digest("x"), token_digest("y"));
    }
}
