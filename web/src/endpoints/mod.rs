//! Remote endpoints: trainee machines whose agents ship their events to the
//! appliance (`ioclab agent --appliance URL --token T --fingerprint F`).
//!
//! [`db`] holds the enrolment tokens (only their digests) and the events
//! received, in `web.db`; [`ingest`] is the HTTP API the agents post
//! batches to; [`tls`] is its listener, behind a self-signed certificate
//! made at first start that agents pin by fingerprint; [`view`] is what
//! the class pages read. The batch format is
//! the agent's (`ioclab_agent::remote::wire`): one definition for both sides.

pub mod db;
pub mod ingest;
pub mod tls;
pub mod view;

pub use db::{Applied, EndpointDb, EndpointError, EndpointRow, EnrolToken, LastPush, Push, PushTarget};

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ioclab_agent::remote::pin::Fingerprint;

/// The endpoint listener's certificate and key: `<data>/endpoints/`.
pub fn cert_dir(data_root: &Path) -> PathBuf {
    data_root.join("endpoints")
}

/// Why the endpoint listener did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The certificate.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The store.
    #[error(transparent)]
    Db(#[from] EndpointError),
    /// The address.
    #[error("listening on {addr} for endpoints (is another program using it? set endpoints_listen): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A started endpoint listener.
#[derive(Debug)]
pub struct Started {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its certificate's fingerprint, for agents' `--fingerprint`.
    pub fingerprint: Fingerprint,
    /// The store it serves: pushes made through it (the dashboard's) wake
    /// the waiting long-polls at once, without the 500 ms look at the table.
    pub db: EndpointDb,
}

/// Starts the endpoint listener on `listen` (a task of the current runtime)
/// with the store in `web_db` and the certificate under `data_root`; it stops when `shutdown` completes.
pub async fn start(
    data_root: &Path,
    web_db: &Path,
    listen: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Started, StartError> {
    let cert = tls::ApplianceCert::load_or_create(&cert_dir(data_root))?;
    let config = cert.server_config()?;
    let db = EndpointDb::open(web_db).await?;
    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|source| StartError::Bind { addr: listen, source })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind { addr: listen, source })?;
    tokio::spawn(tls::serve(listener, ingest::router(db.clone()), config, shutdown));
    Ok(Started { addr, fingerprint: cert.fingerprint(), db })
}
