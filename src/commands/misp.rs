//! `ioclab misp`: the embedded MISP-compatible store, its API keys, IoC
//! export to the agent (misp-to-kunai's superset), warninglists, and a check
//! of a MISP connection.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use ioclab_intel::client::ClientError;
use ioclab_intel::export::config::ExportConfig;
use ioclab_intel::export::output::Target;
use ioclab_intel::export::{self, ExportOptions};
use ioclab_intel::model::date_of;
use ioclab_intel::server::{self, AppState};
use ioclab_intel::store::keys::KeyRequest;
use ioclab_intel::store::{Role, Store};
use ioclab_intel::warninglists::Warninglists;

/// Where the embedded store keeps its data unless `--db` says otherwise.
const DEFAULT_DB: &str = "/var/lib/ioclab/misp.db";

/// Arguments of `ioclab misp`.
#[derive(Args)]
pub struct MispArgs {
    #[command(subcommand)]
    command: MispCommand,
}

#[derive(Subcommand)]
enum MispCommand {
    /// Serve the embedded MISP-compatible store (PyMISP and misp-to-kunai work against it).
    #[command(after_help = "\
Examples:
  ioclab misp keys create --email trainer@lab.example --role publisher   a key, printed alone
  ioclab misp serve                                          http://127.0.0.1:8080
  python3 -c 'from pymisp import PyMISP; print(PyMISP(\"http://127.0.0.1:8080\", KEY, False).misp_instance_version)'

Only loopback is served by default; --listen 0.0.0.0:8080 opens it to the lab network.")]
    Serve {
        /// Address and port to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// SQLite database (created if missing).
        #[arg(long, default_value = DEFAULT_DB)]
        db: PathBuf,
    },
    /// Manage API keys of the embedded store.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Export IoCs from a MISP to a file the agent loads (misp-to-kunai's options, and more).
    #[command(after_help = "\
Examples:
  ioclab misp export -c config.toml -o /var/lib/ioclab/iocs.json --reload-agent
  ioclab misp export -c config.toml -l 30 --all --tags tlp:white,apt -o iocs.json
  ioclab misp export -c config.toml -o iocs.json --sync      also drop IoCs deleted in MISP
  ioclab misp export -c config.toml --no-warninglists        see what the warninglists filter out

config.toml is misp-to-kunai's:
  [misp]
  name = \"lab-misp\"          # written as `source` in each IoC
  url = \"http://127.0.0.1:8080\"
  key = \"<40-character API key>\"
  ssl = true                  # false for a self-signed lab certificate
  enable = true
  # ca_file = \"/etc/ioclab/misp-ca.pem\"   (ioclab extension)

  [[misp-feeds]]
  name = \"circl\"
  url = \"https://www.circl.lu/doc/misp/feed-osint\"
  enable = false

The output is replaced atomically (temporary file + rename), so an agent
reloading it never reads half a file.")]
    Export(ExportArgs),
    /// Check values against the shipped warninglists (known benign values).
    Warninglist {
        #[command(subcommand)]
        command: WarninglistCommand,
    },
    /// Check a MISP connection: version, user, role, or what is wrong.
    Check {
        /// misp-to-kunai's config.toml ([misp] url, key, ssl).
        #[arg(short, long)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create an API key (and its user if new); prints the key alone on stdout.
    #[command(after_help = "\
Examples:
  ioclab misp keys create --email trainee1@lab.example                    a user of the organisation ioclab
  ioclab misp keys create --email trainer@lab.example --role publisher    may also publish
  ioclab misp keys create --email red@lab.example --org \"red team\"        another organisation
  ioclab misp keys create --email trainee1@lab.example --role publisher --change-role

Roles (MISP's): user adds events and edits, tags and deletes its organisation's;
publisher may also publish them; admin may do everything on every event.
A user's keys share its role and organisation: a second key for an e-mail gets
the role it has, and another --role is refused unless --change-role says to
change it for all of that user's keys.")]
    Create {
        /// The user's e-mail.
        #[arg(long)]
        email: String,
        /// user, publisher or admin (default: user for a new user, its role for an existing one).
        #[arg(long)]
        role: Option<Role>,
        /// The organisation of a new user (default: ioclab).
        #[arg(long)]
        org: Option<String>,
        /// Change the role of an existing user, and so of all its keys.
        #[arg(long, requires = "role")]
        change_role: bool,
        /// SQLite database of the store.
        #[arg(long, default_value = DEFAULT_DB)]
        db: PathBuf,
    },
    /// List the keys: id, user, organisation, role, the key's last 4 characters, creation date.
    List {
        /// SQLite database of the store.
        #[arg(long, default_value = DEFAULT_DB)]
        db: PathBuf,
    },
    /// Revoke keys by id (as `keys list` shows it); they stop working at once.
    #[command(after_help = "Example:\n  ioclab misp keys list\n  ioclab misp keys revoke 3")]
    Revoke {
        /// Key ids.
        #[arg(required = true)]
        ids: Vec<i64>,
        /// SQLite database of the store.
        #[arg(long, default_value = DEFAULT_DB)]
        db: PathBuf,
    },
}

#[derive(Subcommand)]
enum WarninglistCommand {
    /// Print, for each value, the lists it is on; exit 1 if any is.
    #[command(after_help = "Example:\n  ioclab misp warninglist check 8.8.8.8 google.com why.kunai.rocks")]
    Check {
        /// Values to check.
        #[arg(required = true)]
        values: Vec<String>,
        /// Only the lists for this attribute type (e.g. ip-dst, domain|ip).
        #[arg(long = "type")]
        kind: Option<String>,
    },
}

/// `ioclab misp export` flags (misp-to-kunai's, then ioclab's).
#[derive(Args)]
struct ExportArgs {
    /// misp-to-kunai's config.toml.
    #[arg(short, long)]
    config: PathBuf,
    /// Accepted for misp-to-kunai compatibility (TLS warnings are not printed anyway).
    #[arg(short, long)]
    silent: bool,
    /// Events changed in the last DAYS days.
    #[arg(short, long, default_value_t = 1, value_name = "DAYS")]
    last: u32,
    /// Output file (default: stdout).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Start the output from scratch instead of adding to it.
    #[arg(long)]
    overwrite: bool,
    /// Unpublished events too.
    #[arg(long)]
    all: bool,
    /// Only events with one of these tags (comma separated).
    #[arg(long, value_delimiter = ',')]
    tags: Vec<String>,
    /// Attributes without the IDS flag too.
    #[arg(long)]
    no_to_ids: bool,
    /// Run again every --wait seconds.
    #[arg(long)]
    service: bool,
    /// Seconds between runs with --service.
    #[arg(long, default_value_t = 60)]
    wait: u64,
    /// Keep values that are on a warninglist (they are dropped by default).
    #[arg(long)]
    no_warninglists: bool,
    /// Also remove IoCs whose attribute was deleted in MISP or lost its IDS flag.
    #[arg(long)]
    sync: bool,
    /// Send SIGHUP to running `ioclab agent` processes after writing, so they reload their IoCs.
    #[arg(long)]
    reload_agent: bool,
    /// Only misp-to-kunai's types (md5, sha1, sha256, domain, hostname, ip-dst, path), for comparisons.
    #[arg(long, hide = true)]
    shared_types_only: bool,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

async fn open_store(db: &Path) -> anyhow::Result<Store> {
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    Store::open(db).await.with_context(|| format!("cannot open the store {}", db.display()))
}

/// Runs `ioclab misp ...`.
pub fn run(args: MispArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        MispCommand::Serve { listen, db } => runtime()?.block_on(async {
            let store = open_store(&db).await?;
            tracing::info!(
                "store {}; create a key with: ioclab misp keys create --email you@lab --db {}",
                db.display(),
                db.display()
            );
            let state = AppState { store, warninglists: Arc::new(Warninglists::shipped()) };
            server::serve(state, listen).await.with_context(|| format!("cannot serve on {listen}"))?;
            Ok(ExitCode::SUCCESS)
        }),
        MispCommand::Keys { command } => runtime()?.block_on(keys(command)),
        MispCommand::Export(a) => export_cmd(a),
        MispCommand::Warninglist { command: WarninglistCommand::Check { values, kind } } => {
            let lists = Warninglists::embedded();
            let mut any = false;
            for v in values {
                let hits = match &kind {
                    Some(k) => lists.check_attribute(k, &v),
                    None => lists.check(&v),
                };
                if hits.is_empty() {
                    println!("{v}: on no warninglist");
                } else {
                    any = true;
                    for h in hits {
                        println!("{v}: {} ({})", h.name, h.slug);
                    }
                }
            }
            Ok(if any { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
        MispCommand::Check { config } => runtime()?.block_on(check(&config)),
    }
}

/// `ioclab misp check`: what the MISP says about itself and the key, or the
/// diagnosis of what failed (the same words the export and the sandbox print).
async fn check(config: &Path) -> anyhow::Result<ExitCode> {
    let cfg = ExportConfig::from_file(config)?;
    let report = async {
        let c = cfg.misp.client()?;
        let v = c.get("/servers/getVersion").await?;
        let me = c.get("/users/view/me").await?;
        Ok::<_, ClientError>((v, me))
    };
    let (v, me) = match report.await {
        Ok(answers) => answers,
        Err(e) => {
            eprintln!("ioclab misp check: {:#}", e.diagnose());
            return Ok(ExitCode::FAILURE);
        }
    };
    println!("MISP {} at {}", v["version"].as_str().unwrap_or("?"), cfg.misp.url);
    let can = |perm: &str| me["Role"][perm].as_bool().unwrap_or(false);
    println!(
        "user {} (organisation {}), role {}: {}",
        me["User"]["email"].as_str().unwrap_or("?"),
        me["Organisation"]["name"].as_str().unwrap_or("?"),
        me["Role"]["name"].as_str().unwrap_or("?"),
        if can("perm_publish") { "may add and publish events" } else { "may add events, not publish them" }
    );
    if !cfg.misp.ssl {
        println!("warning: TLS certificates are not verified (ssl = false)");
    }
    Ok(ExitCode::SUCCESS)
}

async fn keys(command: KeysCommand) -> anyhow::Result<ExitCode> {
    match command {
        KeysCommand::Create { email, role, org, change_role, db } => {
            let store = open_store(&db).await?;
            let req = KeyRequest { email: &email, role, org: org.as_deref(), change_role };
            println!("{}", store.create_key_with(&req).await?);
        }
        KeysCommand::List { db } => {
            let store = open_store(&db).await?;
            println!("{:>4}  {:<30}  {:<16}  {:<9}  {:<8}  CREATED", "ID", "E-MAIL", "ORGANISATION", "ROLE", "KEY");
            for k in store.keys().await? {
                println!(
                    "{:>4}  {:<30}  {:<16}  {:<9}  ...{:<5}  {}",
                    k.id,
                    k.email,
                    k.org,
                    k.role.name(),
                    k.key_end,
                    date_of(k.created)
                );
            }
        }
        KeysCommand::Revoke { ids, db } => {
            let store = open_store(&db).await?;
            for id in ids {
                let k = store.revoke_key(id).await?;
                eprintln!("revoked key {} (...{}) of {}", k.id, k.key_end, k.email);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn export_cmd(a: ExportArgs) -> anyhow::Result<ExitCode> {
    let cfg = ExportConfig::from_file(&a.config)?;
    let opts = ExportOptions {
        last_days: Some(a.last),
        all: a.all,
        tags: a.tags.clone(),
        to_ids_only: !a.no_to_ids,
        warninglists: !a.no_warninglists,
        allow: vec![],
        sync: a.sync,
        overwrite: a.overwrite,
        shared_only: a.shared_types_only,
        output: a.output.clone(),
    };
    let rt = runtime()?;
    // parsing the shipped lists takes tens of ms: only when they are used
    let none = Warninglists::empty();
    let lists = if opts.warninglists { Warninglists::embedded() } else { &none };
    loop {
        let report = rt.block_on(export::export(&cfg, &opts, lists))?;
        for (line, hit) in &report.warned {
            tracing::info!(
                "left out {} {} (event {}): on warninglist {}",
                line.kind,
                line.value,
                line.event_uuid,
                hit.name
            );
        }
        for line in &report.removed {
            tracing::info!("removed {} {}: its attribute was deleted or lost its IDS flag", line.kind, line.value);
        }
        eprintln!(
            "ioclab misp export: {} events, {} new IoCs, {} kept, {} removed by --sync, {} left out by warninglists{}",
            report.events,
            report.added,
            report.kept,
            report.removed.len(),
            report.warned.len(),
            a.output.as_ref().map(|p| format!(" -> {}", p.display())).unwrap_or_default()
        );
        // only a replaced file is worth reloading (not standard output)
        if a.reload_agent && matches!(Target::new(a.output.as_deref()), Target::File(_)) {
            let n = signal_agents()?;
            eprintln!("ioclab misp export: asked {n} running agent(s) to reload their IoCs");
        }
        if !a.service {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_secs(a.wait));
    }
}

/// Sends SIGHUP to every running `ioclab agent`; returns how many.
fn signal_agents() -> anyhow::Result<usize> {
    let mut n = 0;
    for entry in std::fs::read_dir("/proc").context("reading /proc")?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let mut args = cmdline.split(|&b| b == 0);
        let exe = args.next().unwrap_or_default();
        let is_ioclab = Path::new(std::str::from_utf8(exe).unwrap_or("")).file_name().is_some_and(|f| f == "ioclab");
        if is_ioclab && args.next() == Some(b"agent".as_slice()) {
            // SAFETY: kill(2) with a pid read from /proc and a valid signal.
            if unsafe { libc::kill(pid, libc::SIGHUP) } == 0 {
                n += 1;
            }
        }
    }
    Ok(n)
}
