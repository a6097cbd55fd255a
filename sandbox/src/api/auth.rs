//! Cuckoo 2.0.7's API token: generated on first start (kept in the
//! storage folder, printed once), then required as `Authorization: Bearer <token>`.

use std::io::Write;
use std::path::{Path, PathBuf};

use rand::Rng;

/// The message and status Cuckoo 2.0.7 answers a missing or wrong token with.
pub const AUTH_REQUIRED: &str = "Authentication in the form of an 'Authorization: Bearer <TOKEN>' header is required";

/// Where the token is kept.
pub fn token_path(storage: &Path) -> PathBuf {
    storage.join("api_token")
}

/// The token, and whether it was created now (then the caller prints it, once).
pub fn load_or_create(storage: &Path) -> std::io::Result<(String, bool)> {
    let path = token_path(storage);
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok((t.trim().to_string(), false)),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    }
    std::fs::create_dir_all(storage)?;
    // 22 characters of [A-Za-z0-9]: about 131 bits, like Cuckoo's generated token
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rngs::OsRng;
    let token: String = (0..22).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect();
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
    f.write_all(token.as_bytes())?;
    Ok((token, true))
}

/// Whether `header` (the `Authorization` value) carries `token`, compared in constant time.
pub fn accepts(token: &str, header: Option<&[u8]>) -> bool {
    let expected = format!("Bearer {token}");
    let Some(got) = header else { return false };
    got.len() == expected.len() && got.iter().zip(expected.as_bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let (t1, new1) = load_or_create(dir.path()).unwrap();
        let (t2, new2) = load_or_create(dir.path()).unwrap();
        assert!(new1 && !new2);
        assert_eq!(t1, t2);
        assert_eq!(t1.len(), 22);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(token_path(dir.path())).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn only_the_exact_bearer_header_passes() {
        assert!(accepts("abc", Some(b"Bearer abc")));
        for bad in [&b"bearer abc"[..], b"Bearer abd", b"Bearer abc ", b"Token abc", b"abc", b""] {
            assert!(!accepts("abc", Some(bad)), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(!accepts("abc", None));
    }
}
