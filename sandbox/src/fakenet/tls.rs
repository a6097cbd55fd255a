//! The server name of a TLS ClientHello (RFC 8446 §4.1.2, RFC 6066 §3),
//! read by a sink from the first record a client sends. Outside input:
//! every length is checked, errors name the field, nothing panics.

/// Why a ClientHello could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("TLS ClientHello: {0}")]
pub struct TlsError(pub String);

/// Whether `buf` starts like a TLS handshake record.
pub fn looks_like_tls(buf: &[u8]) -> bool {
    buf.len() >= 2 && buf[0] == 0x16 && buf[1] == 0x03
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], TlsError> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.buf.len());
        let end = end.ok_or_else(|| TlsError(format!("{what} runs past the end (offset {})", self.at)))?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self, what: &str) -> Result<usize, TlsError> {
        Ok(self.take(1, what)?[0] as usize)
    }
    fn u16(&mut self, what: &str) -> Result<usize, TlsError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]) as usize)
    }
    fn u24(&mut self, what: &str) -> Result<usize, TlsError> {
        let b = self.take(3, what)?;
        Ok(((b[0] as usize) << 16) | ((b[1] as usize) << 8) | b[2] as usize)
    }
    fn vec8(&mut self, what: &str) -> Result<&'a [u8], TlsError> {
        let n = self.u8(what)?;
        self.take(n, what)
    }
    fn vec16(&mut self, what: &str) -> Result<&'a [u8], TlsError> {
        let n = self.u16(what)?;
        self.take(n, what)
    }
}

/// The SNI host name of the ClientHello at the start of `buf` (`None`: no
/// server_name extension). Only the first record is read.
pub fn client_hello_sni(buf: &[u8]) -> Result<Option<String>, TlsError> {
    let mut rec = Reader { buf, at: 0 };
    if rec.u8("record type")? != 0x16 {
        return Err(TlsError("not a handshake record".into()));
    }
    rec.take(2, "record version")?;
    let body = rec.vec16("record")?;
    let mut hs = Reader { buf: body, at: 0 };
    if hs.u8("handshake type")? != 1 {
        return Err(TlsError("not a ClientHello".into()));
    }
    let len = hs.u24("handshake length")?;
    let hello = hs.take(len, "ClientHello (split over records?)")?;
    let mut h = Reader { buf: hello, at: 0 };
    h.take(2 + 32, "version and random")?;
    h.vec8("session id")?;
    h.vec16("cipher suites")?;
    h.vec8("compression methods")?;
    if h.at == hello.len() {
        return Ok(None); // no extensions
    }
    let exts = h.vec16("extensions")?;
    let mut e = Reader { buf: exts, at: 0 };
    while e.at < exts.len() {
        let ty = e.u16("extension type")?;
        let data = e.vec16("extension")?;
        if ty != 0 {
            continue;
        }
        let mut list = Reader { buf: data, at: 0 };
        let names = list.vec16("server name list")?;
        let mut n = Reader { buf: names, at: 0 };
        while n.at < names.len() {
            let kind = n.u8("server name type")?;
            let name = n.vec16("server name")?;
            if kind == 0 {
                let s = std::str::from_utf8(name).map_err(|_| TlsError("server name is not UTF-8".into()))?;
                return Ok(Some(s.to_ascii_lowercase()));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A minimal ClientHello naming `sni`.
    pub(crate) fn hello(sni: &str) -> Vec<u8> {
        let mut name = vec![0u8];
        name.extend((sni.len() as u16).to_be_bytes());
        name.extend(sni.as_bytes());
        let mut ext = (0u16).to_be_bytes().to_vec();
        let list_len = (name.len() as u16).to_be_bytes();
        ext.extend(((name.len() + 2) as u16).to_be_bytes());
        ext.extend(list_len);
        ext.extend(name);
        let mut body = vec![3, 3];
        body.extend([7u8; 32]);
        body.push(0); // session id
        body.extend([0, 2, 0x13, 0x01]); // one suite
        body.extend([1, 0]); // null compression
        body.extend((ext.len() as u16).to_be_bytes());
        body.extend(ext);
        let mut hs = vec![1, 0, (body.len() >> 8) as u8, body.len() as u8];
        hs.extend(body);
        let mut rec = vec![0x16, 3, 1];
        rec.extend((hs.len() as u16).to_be_bytes());
        rec.extend(hs);
        rec
    }

    #[test]
    fn reads_the_server_name() {
        assert_eq!(client_hello_sni(&hello("Why.Kunai.Rocks")).unwrap().as_deref(), Some("why.kunai.rocks"));
    }

    #[test]
    fn truncated_and_foreign_records() {
        let h = hello("a.example");
        let e = client_hello_sni(&h[..h.len() - 3]).unwrap_err();
        assert!(e.0.contains("past the end"), "{e}");
        assert!(client_hello_sni(b"GET / HTTP/1.1\r\n").is_err());
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = client_hello_sni(&bytes);
        }

        #[test]
        fn mutated_hellos_never_panic(i in 0usize..200, b in any::<u8>()) {
            let mut h = hello("why.kunai.rocks");
            let i = i % h.len();
            h[i] = b;
            let _ = client_hello_sni(&h);
        }
    }
}
