//! What every handler shares: the accounts, the runs (and through them the
//! lab engine), the login limiter and what the appliance prints on its pages.

use std::sync::Arc;

use crate::endpoints::view::EndpointView;
use crate::limit::LoginLimiter;
use crate::runs::{Engine, Runs};
use crate::users::UserDb;

/// The handlers' state; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
    services: Arc<Services>,
    endpoints: Option<EndpointView>,
}

/// The appliance's embedded services the MISP and sandbox pages work on;
/// `None` where the service does not run (a test appliance, replay mode's sandbox).
#[derive(Clone, Default)]
pub struct Services {
    /// The embedded MISP's store (the one its REST API serves).
    pub misp: Option<ioclab_intel::store::Store>,
    /// The sandbox's Cuckoo API state: its task store and the queue submissions go to.
    pub sandbox: Option<ioclab_sandbox::api::AppState>,
}

struct Inner {
    users: UserDb,
    runs: Runs,
    limiter: LoginLimiter,
    links: Links,
}

/// The other services of the appliance, shown on the pages.
#[derive(Debug, Clone, Default)]
pub struct Links {
    /// The embedded MISP's URL.
    pub misp: Option<String>,
    /// The sandbox's Cuckoo API URL.
    pub sandbox: Option<String>,
}

impl AppState {
    /// The state over `users` and `runs`.
    pub fn new(users: UserDb, runs: Runs, limiter: LoginLimiter, links: Links) -> AppState {
        AppState { inner: Arc::new(Inner { users, runs, limiter, links }), services: Arc::default(), endpoints: None }
    }

    /// The same state with the MISP and sandbox `services`.
    pub fn with_services(self, services: Services) -> AppState {
        AppState { services: Arc::new(services), ..self }
    }

    /// The same state with the remote endpoints' store (the class pages).
    pub fn with_endpoints(self, endpoints: EndpointView) -> AppState {
        AppState { endpoints: Some(endpoints), ..self }
    }

    /// The remote endpoints, when their listener runs.
    pub fn endpoints(&self) -> Option<&EndpointView> {
        self.endpoints.as_ref()
    }

    /// The embedded MISP's store, when it runs.
    pub fn misp(&self) -> Option<&ioclab_intel::store::Store> {
        self.services.misp.as_ref()
    }

    /// The sandbox, when it runs.
    pub fn sandbox(&self) -> Option<&ioclab_sandbox::api::AppState> {
        self.services.sandbox.as_ref()
    }

    /// The accounts.
    pub fn users(&self) -> &UserDb {
        &self.inner.users
    }

    /// The runs and the catalogue.
    pub fn runs(&self) -> &Runs {
        &self.inner.runs
    }

    /// The login limiter.
    pub fn limiter(&self) -> &LoginLimiter {
        &self.inner.limiter
    }

    /// The other services' URLs.
    pub fn links(&self) -> &Links {
        &self.inner.links
    }

    /// Why the appliance plays replays instead of live runs (the banner of every page), if it does.
    pub fn replay_reason(&self) -> Option<&str> {
        match self.inner.runs.engine() {
            Engine::Live(_) => None,
            Engine::Replay { reason } => Some(reason),
        }
    }
}
