//! The endpoint listener's TLS: a self-signed certificate made at first
//! start and kept in the data directory (`endpoints/cert.pem`,
//! `endpoints/key.pem`, the key readable by its owner only), and the accept
//! loop serving the ingest API over it. Agents pin the certificate's
//! SHA-256 fingerprint, so no certificate authority is needed.

use std::future::Future;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use ioclab_agent::remote::pin::{provider, Fingerprint};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Why the certificate could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not a PEM certificate or key.
    #[error("{path}: {message} (delete both endpoints/*.pem to make a new certificate; agents then need the new fingerprint)")]
    Pem {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// Generating or using the certificate failed.
    #[error("the endpoint certificate: {0}")]
    Certificate(String),
}

/// The appliance's endpoint certificate and key.
#[derive(Debug)]
pub struct ApplianceCert {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

impl ApplianceCert {
    /// Reads the certificate in `dir`, making it first if there is none.
    pub fn load_or_create(dir: &Path) -> Result<ApplianceCert, TlsError> {
        let cert_path = dir.join("cert.pem");
        let key_path = dir.join("key.pem");
        if !cert_path.exists() || !key_path.exists() {
            create(dir, &cert_path, &key_path)?;
        }
        let pem =
            |path: &Path, e: rustls::pki_types::pem::Error| TlsError::Pem { path: path.into(), message: e.to_string() };
        let cert = CertificateDer::from_pem_file(&cert_path).map_err(|e| pem(&cert_path, e))?;
        let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| pem(&key_path, e))?;
        Ok(ApplianceCert { cert, key })
    }

    /// The fingerprint agents pin (`--fingerprint`).
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.cert)
    }

    /// The TLS server configuration.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let c = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(vec![self.cert.clone()], self.key.clone_key()))
            .map_err(|e| TlsError::Certificate(e.to_string()))?;
        Ok(Arc::new(c))
    }
}

fn create(dir: &Path, cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        names.push(host.trim().to_string());
    }
    let made = rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Certificate(e.to_string()))?;
    // the key first, owner-only; the certificate last: a crash between leaves no certificate without key
    let mut key = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(key_path)
        .map_err(io(key_path))?;
    key.write_all(made.key_pair.serialize_pem().as_bytes()).map_err(io(key_path))?;
    key.sync_all().map_err(io(key_path))?;
    std::fs::write(cert_path, made.cert.pem()).map_err(io(cert_path))?;
    tracing::info!("made the endpoint certificate {}", cert_path.display());
    Ok(())
}

/// Serves `router` over TLS on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(config);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // out of descriptors and the like: pause instead of spinning
                    tracing::warn!("endpoint listener: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!("endpoint {peer}: TLS handshake failed: {e}");
                    return;
                }
            };
            if let Err(e) =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await
            {
                tracing::debug!("endpoint {peer}: {e}");
            }
        });
    }
}
