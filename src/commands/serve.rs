//! `ioclab serve`: the appliance in one process: the lab engine (endpoint
//! agent and sandbox sharing one set of eBPF programs, embedded MISP, task
//! store), the MISP REST API and the sandbox's Cuckoo API on their own
//! listeners, and the web UI. Without root or eBPF it serves in replay mode.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use ioclab_lab::data_dir::DataDir;
use ioclab_lab::engine::lock::DataLock;
use ioclab_lab::engine::misp::EmbeddedMisp;
use ioclab_lab::engine::{EngineError, Lab, LabConfig};
use ioclab_lab::replay::Speed;
use ioclab_sandbox::api::AppState as SandboxState;
use ioclab_web::config::ApplianceConfig;
use ioclab_web::limit::{LimitConfig, LoginLimiter};
use ioclab_web::runs::{Engine, Runs};
use ioclab_web::state::{AppState, Links, Services};
use ioclab_web::users::{Role, UserDb, UserName};

/// The help's examples.
const EXAMPLES: &str = "\
Prints the URLs of the web UI, the MISP API and the sandbox API, the MISP and
sandbox API keys, and the instructor's password the first time (then use
`ioclab users reset-password instructor`). Ctrl-C stops everything.

Examples:
  sudo ioclab serve                              the appliance on http://127.0.0.1:8000
  sudo ioclab serve --listen 0.0.0.0:8000        reachable from the VM's host
  ioclab serve --data /tmp/lab                   not root: replay mode (recorded runs)
  ioclab serve --config appliance.toml
  ioclab serve config --dump > appliance.toml    every key, its doc and default";

/// Arguments of `ioclab serve`.
#[derive(Args)]
#[command(after_help = EXAMPLES)]
pub struct ServeArgs {
    #[command(subcommand)]
    command: Option<ServeCommand>,
    /// The appliance's configuration file (TOML; `ioclab serve config --dump` shows every key).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where the web UI listens (overrides `listen`).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// The lab's data directory (overrides `data`).
    #[arg(long = "data", env = "IOCLAB_DATA", value_name = "DIR")]
    data: Option<PathBuf>,
    /// The scenario catalogue (overrides `scenarios`).
    #[arg(long = "dir", env = "IOCLAB_SCENARIOS", value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Replay mode even where the live lab could run (a demo without eBPF).
    #[arg(long)]
    replay: bool,
}

#[derive(Subcommand)]
enum ServeCommand {
    /// The configuration file.
    Config {
        /// Print every key with its documentation and default.
        #[arg(long)]
        dump: bool,
    },
}

/// The name of the account made on the first start.
const FIRST_INSTRUCTOR: &str = "instructor";

/// Runs `ioclab serve`.
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    if let Some(ServeCommand::Config { dump }) = args.command {
        if !dump {
            bail!("`ioclab serve config` needs --dump (prints every key of appliance.toml)");
        }
        print!("{}", ApplianceConfig::dump());
        return Ok(ExitCode::SUCCESS);
    }
    let mut cfg = match &args.config {
        Some(p) => ApplianceConfig::read(p)?,
        None => ApplianceConfig::default(),
    };
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    if let Some(d) = args.data {
        cfg.data = d;
    }
    if let Some(d) = args.dir {
        cfg.scenarios = d;
    }
    let data = DataDir::new(&cfg.data);
    std::fs::create_dir_all(data.root()).with_context(|| {
        format!("creating the data directory {} (set --data or IOCLAB_DATA)", data.root().display())
    })?;

    let parts = open_lab(&data, &cfg, args.replay)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("ioclab-web").build()?;
    let result = rt.block_on(serve(cfg, data, &parts));
    // the web's runtime first (its tasks hold the lab), then the lab (its own runtime, outside any async context)
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    drop(parts);
    result
}

/// What serves besides the web: the live lab, or in replay mode the MISP alone and the data lock.
struct Parts {
    engine: Engine,
    misp_url: String,
    misp_keys: ioclab_lab::engine::misp::LabKeys,
    misp_store: ioclab_intel::store::Store,
    sandbox: Option<(ioclab_sandbox::api::db::TaskDb, Arc<dyn ioclab_sandbox::detonation::Detonator>)>,
    // replay mode: held for as long as the appliance serves
    _replay: Option<(EmbeddedMisp, DataLock, tokio::runtime::Runtime)>,
}

fn open_lab(data: &DataDir, cfg: &ApplianceConfig, force_replay: bool) -> anyhow::Result<Parts> {
    let reason = if force_replay {
        "started with --replay".to_string()
    } else {
        match Lab::open_with_misp(LabConfig { data: data.clone() }, Some(cfg.misp_listen)) {
            Ok(lab) => {
                let lab = Arc::new(lab);
                return Ok(Parts {
                    misp_url: lab.misp_url().to_string(),
                    misp_keys: lab.misp_keys().clone(),
                    misp_store: lab.misp_store().clone(),
                    sandbox: Some((lab.tasks().clone(), lab.detonator())),
                    engine: Engine::Live(lab),
                    _replay: None,
                });
            }
            Err(EngineError::Lock(e)) => bail!(e),
            Err(e @ (EngineError::Unsupported(_) | EngineError::Setup(_))) => e.to_string(),
            Err(e) => return Err(e).context("starting the lab"),
        }
    };
    let lock = DataLock::take(data.root())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("ioclab-misp")
        .build()?;
    let misp = EmbeddedMisp::start_on(&rt, &data.misp_db(), &data.misp_keys(), cfg.misp_listen)?;
    Ok(Parts {
        engine: Engine::Replay { reason },
        misp_url: misp.url.clone(),
        misp_keys: misp.keys.clone(),
        misp_store: misp.store.clone(),
        sandbox: None,
        _replay: Some((misp, lock, rt)),
    })
}

async fn serve(cfg: ApplianceConfig, data: DataDir, parts: &Parts) -> anyhow::Result<ExitCode> {
    let users = UserDb::open(&ioclab_web::web_db(&data)).await?;
    let first_password = first_instructor(&users).await?;
    let speed = Speed::Times(cfg.replay_speed);
    let runs = Runs::open(users.pool().clone(), data.clone(), cfg.scenarios.clone(), parts.engine.clone())
        .await?
        .with_replay_speed(speed)
        .with_feed_memory(cfg.endpoint_events_in_memory);
    // the stored endpoint events indexed while the banner prints, not on the first page
    runs.warm_feed().await?;
    let limiter = LoginLimiter::new(LimitConfig {
        per_account: cfg.login_failures_per_account,
        per_address: cfg.login_failures_per_address,
        window: std::time::Duration::from_secs(cfg.login_window_minutes * 60),
    });

    let (sandbox_url, sandbox_key, sandbox_state) = match &parts.sandbox {
        Some((tasks, detonator)) => {
            let (url, key, st) = start_sandbox_api(tasks.clone(), detonator.clone(), &data, &cfg).await?;
            (Some(url), Some(key), Some(st))
        }
        None => (None, None, None),
    };
    // remote endpoints (issue 16): their TLS ingest listener, stopped with the runtime
    let endpoints = ioclab_web::endpoints::start(
        data.root(),
        &ioclab_web::web_db(&data),
        cfg.endpoints_listen,
        std::future::pending(),
    )
    .await?;
    let links = Links { misp: Some(parts.misp_url.clone()), sandbox: sandbox_url.clone() };
    let services = Services { misp: Some(parts.misp_store.clone()), sandbox: sandbox_state };
    // the class pages (issue 16): the endpoints' store, and where agents reach this appliance
    let class =
        ioclab_web::endpoints::view::EndpointView::open(endpoints.db.clone(), endpoints.addr, endpoints.fingerprint)
            .await?;
    let state =
        AppState::new(users, runs.clone(), limiter, links).with_services(services).with_endpoints(class.clone());
    let sessions = ioclab_web::session_layer(&state, cfg.session_idle_minutes).await?;
    let app = ioclab_web::router(state, sessions);
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("listening on {} (is another program using it? set --listen)", cfg.listen))?;
    let web = listener.local_addr()?;

    // listening for Ctrl-C and SIGTERM before saying so: a signal right after the banner stops cleanly
    let stop = shutdown_signal()?;
    println!("ioclab appliance");
    match &parts.engine {
        Engine::Live(_) => println!("  mode:        live (endpoint agent, sandbox, MISP)"),
        Engine::Replay { reason } => println!("  mode:        REPLAY: runs play recorded scenarios ({reason})"),
    }
    println!("  web UI:      http://{web}/   <- point the browser here");
    println!(
        "  MISP API:    {}  (key for PyMISP: {}; publisher: {})",
        parts.misp_url, parts.misp_keys.user, parts.misp_keys.publisher
    );
    match (&sandbox_url, &sandbox_key) {
        (Some(u), Some(k)) => println!("  sandbox API: {u}  (Cuckoo 2.0; key: {k})"),
        _ => println!("  sandbox API: off in replay mode"),
    }
    println!(
        "  endpoints:   https://{}  (ioclab agent --appliance URL --token T --fingerprint {})",
        endpoints.addr, endpoints.fingerprint
    );
    println!("  data:        {}", data.root().display());
    if let Some(pw) = &first_password {
        println!("  first login: {FIRST_INSTRUCTOR} / {pw}   (shown once; `ioclab users reset-password {FIRST_INSTRUCTOR}` makes a new one)");
    }
    println!("Ctrl-C stops everything.");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();

    // at the signal, the runs stop first: their event streams (SSE) end, so the server's graceful stop can finish
    let stopper = runs.clone();
    let shutdown = async move {
        stop.await;
        eprintln!("stopping: the runs, then the lab");
        class.close();
        let _ = tokio::task::spawn_blocking(move || stopper.stop_all()).await;
    };
    let server =
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).with_graceful_shutdown(shutdown);
    server.await.context("serving the web UI")?;
    Ok(ExitCode::SUCCESS)
}

/// Makes the first instructor when there is none; their password, to print once.
async fn first_instructor(users: &UserDb) -> anyhow::Result<Option<String>> {
    if users.has_instructor().await? {
        return Ok(None);
    }
    let name: UserName = FIRST_INSTRUCTOR.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    let pw = ioclab_web::password::generate();
    match users.add(&name, Role::Instructor, &pw).await {
        Ok(()) => Ok(Some(pw)),
        // a trainee named "instructor": promote nobody, say how to make one
        Err(ioclab_web::users::UserError::Exists(_)) => {
            bail!("no instructor account, and the name {FIRST_INSTRUCTOR} is taken: `ioclab users add NAME --role instructor`")
        }
        Err(e) => Err(e.into()),
    }
}

/// The sandbox's Cuckoo API on its own listener (Cuckoo clients join paths at the root).
async fn start_sandbox_api(
    tasks: ioclab_sandbox::api::db::TaskDb,
    detonator: Arc<dyn ioclab_sandbox::detonation::Detonator>,
    data: &DataDir,
    cfg: &ApplianceConfig,
) -> anyhow::Result<(String, String, SandboxState)> {
    use ioclab_sandbox::api::{auth, ApiConfig};
    let storage = data.sandbox();
    let (token, _) = auth::load_or_create(&storage)
        .with_context(|| format!("reading or creating the sandbox API token in {}", storage.display()))?;
    let config = ApiConfig {
        storage,
        token: Some(token.clone()),
        max_file_bytes: cfg.sandbox_max_upload_bytes(),
        ..ApiConfig::default()
    };
    let listen = cfg.sandbox_listen;
    let state = SandboxState::start(tasks, config, detonator).await.context("the sandbox task queue")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen} for the sandbox API (set sandbox_listen)"))?;
    let url = format!("http://{}", listener.local_addr()?);
    let router = ioclab_sandbox::api::router(state.clone());
    let limits = ioclab_intel::connections::ConnLimits::default();
    // on the web's runtime: it stops with the appliance
    tokio::spawn(async move {
        let never = std::future::pending::<()>();
        if let Err(e) = ioclab_intel::connections::serve(listener, router, limits, never).await {
            tracing::error!("sandbox API: {e}");
        }
    });
    Ok((url, token, state))
}

/// Resolves at SIGINT (Ctrl-C) or SIGTERM; the handlers are in place when it returns.
pub(crate) fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt()).context("listening for Ctrl-C")?;
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    Ok(async move {
        tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
    })
}
