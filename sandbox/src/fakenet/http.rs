//! The head of an HTTP/1 request as a sink reads it (outside input: errors
//! say what was wrong, never a panic).

/// What a sink keeps of a request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Method.
    pub method: String,
    /// Request target as sent.
    pub path: String,
    /// `Host` header.
    pub host: Option<String>,
    /// `User-Agent` header.
    pub user_agent: Option<String>,
    /// `Content-Length`, when given.
    pub content_length: Option<u64>,
    /// `Transfer-Encoding: chunked`.
    pub chunked: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
    /// Bytes of the head (request line and headers, final blank line included).
    pub len: usize,
}

/// Why a request head was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("HTTP request head: {0}")]
pub struct HttpError(pub String);

/// Longest head accepted.
pub const MAX_HEAD: usize = 64 * 1024;

/// Whether `buf` starts like an HTTP/1 request (a method token, then a space).
pub fn looks_like_http(buf: &[u8]) -> bool {
    const METHODS: &[&[u8]] =
        &[b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE ", b"OPTIONS ", b"PATCH ", b"CONNECT ", b"TRACE "];
    METHODS.iter().any(|m| buf.starts_with(m) || (buf.len() < m.len() && m.starts_with(buf) && !buf.is_empty()))
}

/// Parses a request head; `Ok(None)`: more bytes are needed.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(HttpError(format!("longer than {MAX_HEAD} bytes")))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(HttpError(format!("{e} (within the first {} bytes)", buf.len().min(MAX_HEAD)))),
    };
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
    };
    let content_length = match header("content-length") {
        Some(v) => Some(v.parse::<u64>().map_err(|_| HttpError(format!("Content-Length {v:?} is not a number")))?),
        None => None,
    };
    Ok(Some(Head {
        method: req.method.unwrap_or_default().to_string(),
        path: req.path.unwrap_or_default().to_string(),
        host: header("host"),
        user_agent: header("user-agent"),
        content_length,
        chunked: header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")),
        expect_continue: header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")),
        len,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_post_head() {
        let req = b"POST /gate.php?id=1 HTTP/1.1\r\nHost: why.kunai.rocks\r\nUser-Agent: curl/8.0\r\nContent-Length: 5\r\n\r\nhello";
        let h = parse_head(req).unwrap().unwrap();
        assert_eq!(h.method, "POST");
        assert_eq!(h.path, "/gate.php?id=1");
        assert_eq!(h.host.as_deref(), Some("why.kunai.rocks"));
        assert_eq!(h.user_agent.as_deref(), Some("curl/8.0"));
        assert_eq!(h.content_length, Some(5));
        assert_eq!(&req[h.len..], b"hello");
    }

    #[test]
    fn partial_bad_and_oversized_heads() {
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\nHost: a").unwrap(), None);
        assert!(parse_head(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n").unwrap_err().0.contains("\"x\""));
        assert!(parse_head(b"\x00\x01 / HTTP/1.1\r\n\r\n").is_err());
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD + 10, b'a');
        assert!(parse_head(&big).unwrap_err().0.contains("longer"));
    }

    #[test]
    fn sniffing() {
        assert!(looks_like_http(b"GET / HTTP/1.1"));
        assert!(looks_like_http(b"PO"));
        assert!(!looks_like_http(b"\x16\x03\x01"));
        assert!(!looks_like_http(b"SSH-2.0"));
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = parse_head(&bytes);
            let _ = looks_like_http(&bytes);
        }
    }
}
