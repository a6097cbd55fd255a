//! Certificate pinning: the appliance's certificate is self-signed (a class
//! network has no PKI), so the agent accepts exactly the certificate whose
//! SHA-256 fingerprint the appliance printed, and nothing else — no silent
//! man in the middle.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

/// The SHA-256 of a certificate (DER), shown as `openssl x509 -fingerprint -sha256` does: `AB:CD:...`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER certificate.
    pub fn of(der: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(der).into())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl FromStr for Fingerprint {
    type Err = String;
    /// Accepts `AB:CD:...`, plain hex, either case, with an optional `sha256:`
    /// or openssl's `sha256 Fingerprint=` in front.
    fn from_str(s: &str) -> Result<Fingerprint, String> {
        let t = s.trim();
        let lower = t.to_ascii_lowercase();
        let t = ["sha256 fingerprint=", "sha256:"]
            .iter()
            .find_map(|p| lower.starts_with(p).then(|| &t[p.len()..]))
            .unwrap_or(t);
        let hex: Vec<u8> = t.bytes().filter(|&b| b != b':').collect();
        let bad = || {
            format!("invalid fingerprint {s:?}: 64 hex digits (32 bytes, colons allowed) expected, as the appliance prints it")
        };
        if hex.len() != 64 {
            return Err(bad());
        }
        let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        let mut out = [0u8; 32];
        for (i, pair) in hex.chunks(2).enumerate() {
            out[i] = digit(pair[0]).zip(digit(pair[1])).map(|(h, l)| h << 4 | l).ok_or_else(bad)?;
        }
        Ok(Fingerprint(out))
    }
}

/// The crypto the agent and the appliance use (ring: no C toolchain beyond what is built already).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts only the certificate with the pinned fingerprint (the handshake's
/// signature is still checked against it: holding the certificate is not enough).
#[derive(Debug)]
pub struct PinnedVerifier {
    pin: Fingerprint,
    provider: Arc<CryptoProvider>,
}

impl PinnedVerifier {
    /// A verifier for `pin`.
    pub fn new(pin: Fingerprint) -> PinnedVerifier {
        PinnedVerifier { pin, provider: provider() }
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = Fingerprint::of(end_entity);
        if got == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the appliance's certificate has fingerprint {got}, not the pinned {} (--fingerprint): \
                 another server, or a man in the middle; nothing was sent",
                self.pin
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS client configuration that trusts only the pinned certificate.
pub fn client_config(pin: Fingerprint) -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedVerifier::new(pin)))
        .with_no_client_auth()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_text_is_a_fingerprint_or_an_error_naming_it(s in "\\PC{0,120}") {
            if let Err(e) = s.parse::<Fingerprint>() {
                prop_assert!(e.contains(&format!("{s:?}")), "{e}");
            }
        }

        #[test]
        fn a_shown_fingerprint_reads_back(bytes in any::<[u8; 32]>()) {
            let f = Fingerprint(bytes);
            prop_assert_eq!(f.to_string().parse::<Fingerprint>(), Ok(f));
        }
    }

    #[test]
    fn fingerprints_parse_in_the_shapes_people_paste() {
        let f = Fingerprint::of(b"certificate");
        let shown = f.to_string();
        assert_eq!(shown.len(), 32 * 3 - 1);
        for s in [
            shown.clone(),
            shown.to_lowercase(),
            shown.replace(':', ""),
            format!("sha256 Fingerprint={shown}"),
            format!("SHA256:{shown}"),
        ] {
            assert_eq!(s.parse::<Fingerprint>(), Ok(f), "{s}");
        }
        for bad in ["", "AB:CD", &shown[3..], &format!("ZZ{}", &shown[2..])] {
            assert!(bad.parse::<Fingerprint>().is_err(), "{bad}");
        }
    }
}
