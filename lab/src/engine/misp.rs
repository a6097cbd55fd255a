//! The lab's embedded MISP: the store at `data.misp_db()` served by intel's
//! MISP REST API on `127.0.0.1:<ephemeral>`, in-process, and the lab's two
//! keys kept in `data.misp_keys()` (mode 0600): `user` for the sandbox
//! (adds events), `publisher` for the instructor (publishes them).

use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ioclab_intel::client::MispClient;
use ioclab_intel::server::{self, AppState, ConnLimits};
use ioclab_intel::store::keys::Role;
use ioclab_intel::store::Store;
use ioclab_intel::warninglists::Warninglists;
use serde::{Deserialize, Serialize};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

use super::EngineError;

/// The e-mail of the sandbox's MISP user.
pub const SANDBOX_EMAIL: &str = "sandbox@ioclab.lab";
/// The e-mail of the instructor's MISP user.
pub const INSTRUCTOR_EMAIL: &str = "instructor@ioclab.lab";

/// `misp-keys.json`: the lab's keys to its embedded MISP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabKeys {
    /// Role `user`: what the sandbox adds events with.
    pub user: String,
    /// Role `publisher`: what the instructor publishes with.
    pub publisher: String,
}

impl LabKeys {
    /// The keys in `path`, when the file is there and readable.
    pub fn read(path: &Path) -> Result<Option<LabKeys>, EngineError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                EngineError::Setup(format!("{}: {e} (delete it: the lab makes new keys)", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(EngineError::io(path, e)),
        }
    }

    /// Writes them, readable by the owner only.
    fn write(&self, path: &Path) -> Result<(), EngineError> {
        let tmp = path.with_extension("json.tmp");
        let mut f = std::fs::File::options()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| EngineError::io(&tmp, e))?;
        let text = serde_json::to_vec_pretty(self).expect("keys serialise");
        f.write_all(&text).map_err(|e| EngineError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| EngineError::io(path, e))
    }
}

/// The embedded MISP, served while it lives.
pub struct EmbeddedMisp {
    /// The store (the same one the API serves).
    pub store: Store,
    /// The API's base URL (`http://127.0.0.1:<port>`).
    pub url: String,
    /// The lab's keys.
    pub keys: LabKeys,
    stop: Option<oneshot::Sender<()>>,
    db: PathBuf,
}

impl std::fmt::Debug for EmbeddedMisp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedMisp").field("url", &self.url).field("db", &self.db).finish_non_exhaustive()
    }
}

impl EmbeddedMisp {
    /// Opens the store at `db`, makes sure the keys in `keys_file` work
    /// (new ones when missing or unknown to the store) and serves the API on `rt`.
    pub fn start(rt: &Runtime, db: &Path, keys_file: &Path) -> Result<EmbeddedMisp, EngineError> {
        Self::start_on(rt, db, keys_file, SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// The same, serving on `listen` (`ioclab serve` prints a fixed address for PyMISP).
    pub fn start_on(
        rt: &Runtime,
        db: &Path,
        keys_file: &Path,
        listen: SocketAddr,
    ) -> Result<EmbeddedMisp, EngineError> {
        rt.block_on(async {
            let store = Store::open(db).await.map_err(|e| EngineError::Setup(format!("{}: {e}", db.display())))?;
            let keys = ensure_keys(&store, keys_file).await?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|e| EngineError::Setup(format!("listening on {listen} for the embedded MISP: {e}")))?;
            let addr = listener.local_addr().map_err(|e| EngineError::Setup(e.to_string()))?;
            let state = AppState { store: store.clone(), warninglists: Arc::new(Warninglists::shipped()) };
            let (stop, stopped) = oneshot::channel::<()>();
            tokio::spawn(async move {
                let stop = async {
                    let _ = stopped.await;
                };
                if let Err(e) = server::serve_on(listener, state, ConnLimits::default(), stop).await {
                    tracing::error!("embedded MISP: {e}");
                }
            });
            Ok(EmbeddedMisp { store, url: format!("http://{addr}"), keys, stop: Some(stop), db: db.to_path_buf() })
        })
    }

    /// A client with the key of `role` (`user`: the sandbox, `publisher`: the instructor).
    pub fn client(&self, role: Role) -> Result<MispClient, EngineError> {
        let key = match role {
            Role::Publisher | Role::Admin => &self.keys.publisher,
            Role::User => &self.keys.user,
        };
        MispClient::new(&self.url, key, true, None).map_err(|e| EngineError::Setup(format!("MISP client: {e}")))
    }
}

impl Drop for EmbeddedMisp {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// The keys of `keys_file` when the store knows both; otherwise new ones, written there.
async fn ensure_keys(store: &Store, keys_file: &Path) -> Result<LabKeys, EngineError> {
    if let Some(keys) = LabKeys::read(keys_file)? {
        let known = |k: &str| {
            let k = k.to_string();
            async move { store.user_for_key(&k).await.ok().flatten().is_some() }
        };
        if known(&keys.user).await && known(&keys.publisher).await {
            return Ok(keys);
        }
        tracing::warn!("{}: keys unknown to the store (a new misp.db?): making new ones", keys_file.display());
    }
    let create = |email: &'static str, role: Role| async move {
        store
            .create_key(email, role)
            .await
            .map_err(|e| EngineError::Setup(format!("creating the lab's {} key: {e}", role.name())))
    };
    let keys = LabKeys {
        user: create(SANDBOX_EMAIL, Role::User).await?,
        publisher: create(INSTRUCTOR_EMAIL, Role::Publisher).await?,
    };
    keys.write(keys_file)?;
    Ok(keys)
}
