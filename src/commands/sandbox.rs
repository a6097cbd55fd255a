//! `ioclab sandbox`: detonate a sample once, serve the Cuckoo-compatible
//! API, talk to that API (or a real Cuckoo 2.0, or a CAPEv2) as a client,
//! and import reports written elsewhere (MISP lookup, local task store).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use ioclab_intel::warninglists::Warninglists;
use ioclab_sandbox::api::db::TaskDb;
use ioclab_sandbox::api::queue::TaskLimits;
use ioclab_sandbox::api::{self, auth, ApiConfig, AppState};
use ioclab_sandbox::client::{Backend, BackendKind, SubmitOptions, TaskStatus};
use ioclab_sandbox::detonation::{Detonator, Job, Target};
use ioclab_sandbox::misp::{self, lookup, ReportingMisp, SandboxToml};
use ioclab_sandbox::report::{self, Report};
use ioclab_sandbox::runner::{Sandbox, SandboxConfig};

/// Where `ioclab sandbox serve` keeps its data unless told otherwise.
const DEFAULT_STORAGE: &str = "/var/lib/ioclab/sandbox";

/// Arguments of `ioclab sandbox`.
#[derive(Args)]
pub struct SandboxArgs {
    #[command(subcommand)]
    command: SandboxCommand,
}

/// Which API a sandbox speaks.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BackendArg {
    /// Cuckoo 2.0's REST API: ioclab's own server, or a real Cuckoo 2.0 (`Authorization: Bearer`).
    Cuckoo,
    /// CAPEv2's /apiv2/ (`Authorization: Token`).
    Cape,
}

/// Where a client finds the API.
#[derive(Args)]
struct ApiTarget {
    /// The API the sandbox speaks.
    #[arg(long, value_enum, default_value = "cuckoo")]
    backend: BackendArg,
    /// Base URL of the API (default: ioclab's http://127.0.0.1:8090; with --backend cape, http://127.0.0.1:8000, CAPE's web root).
    #[arg(long, env = "IOCLAB_SANDBOX_URL")]
    url: Option<String>,
    /// API token: Cuckoo's Bearer token or CAPE's API key (default: the one `ioclab sandbox serve` keeps in its storage folder, when readable).
    #[arg(long, env = "IOCLAB_SANDBOX_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl ApiTarget {
    fn kind(&self) -> BackendKind {
        match self.backend {
            BackendArg::Cuckoo => BackendKind::Cuckoo,
            BackendArg::Cape => BackendKind::Cape,
        }
    }

    fn url(&self) -> String {
        self.url.clone().unwrap_or_else(|| self.kind().default_url().to_string())
    }

    fn client(&self) -> Backend {
        // ioclab's own server's token, when this user can read it and none was given
        let token = self.token.clone().or_else(|| {
            (self.kind() == BackendKind::Cuckoo)
                .then(|| std::fs::read_to_string(auth::token_path(Path::new(DEFAULT_STORAGE))).ok())
                .flatten()
                .map(|t| t.trim().to_string())
        });
        Backend::new(self.kind(), &self.url(), token)
    }
}

#[derive(Subcommand)]
enum SandboxCommand {
    /// Detonate one sample now, isolated, and print what it did (needs root and eBPF).
    #[command(after_help = "\
Examples:
  sudo ioclab sandbox run ./dropper.sh                     report in ./dropper.sh.analysis/
  sudo ioclab sandbox run ./sample.elf --timeout 30 -o /tmp/a1 -- --verbose
  sudo ioclab sandbox run ./installer.sh --root            the sample runs as root inside the sandbox

The sample runs in fresh pid/mount/net/uts/ipc namespaces on this machine's own
kernel (not a VM), with a private /tmp, a fake internet (every name resolves,
common ports answer, nothing leaves), and is watched by the ioclab eBPF sensor.
The folder holds reports/report.json (Cuckoo 2.0.7's layout), the sample as
`binary`, dropped files under files/ and the events as kunai.jsonl.gz.")]
    Run {
        /// The sample (ELF binary or script).
        file: PathBuf,
        /// Arguments given to the sample.
        #[arg(last = true)]
        args: Vec<String>,
        /// Wall-clock limit, seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// Folder for the report and artifacts (default: FILE.analysis next to the current directory).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Run the sample as root inside the sandbox (default: an unprivileged user).
        #[arg(long)]
        root: bool,
        /// Package that runs it (sh, bash, python, elf...; default: chosen from the content).
        #[arg(long)]
        package: Option<String>,
        /// sandbox.toml: with [processing.misp] enabled = true the report's IoCs are looked up in MISP, with [reporting.misp] enabled = true it goes to MISP (default: /etc/ioclab/sandbox.toml when it exists).
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Serve the Cuckoo 2.0.7-compatible REST API (misp-modules and Cuckoo clients work against it).
    #[command(after_help = "\
Examples:
  sudo ioclab sandbox serve                                 http://127.0.0.1:8090, token printed once
  sudo ioclab sandbox serve --listen 0.0.0.0:8090 --workers 4
  sudo ioclab sandbox serve --no-auth                       closed lab network only
  curl -H \"Authorization: Bearer $TOKEN\" -F file=@dropper.sh http://127.0.0.1:8090/tasks/create/file

On first start a token is generated, printed once and kept in STORAGE/api_token;
clients send it as `Authorization: Bearer <token>`, as with Cuckoo 2.0.7.
Tasks a killed server left running are marked failed_analysis at start.")]
    Serve {
        /// Address and port to listen on.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: SocketAddr,
        /// SQLite database of tasks (default: STORAGE/sandbox.db).
        #[arg(long)]
        db: Option<PathBuf>,
        /// Samples, task folders and the API token.
        #[arg(long, default_value = DEFAULT_STORAGE)]
        storage: PathBuf,
        /// No token: anyone who reaches the port may submit.
        #[arg(long)]
        no_auth: bool,
        /// Detonations run at once.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Largest sample accepted, MiB.
        #[arg(long, default_value_t = 32)]
        max_file_mb: u64,
        /// Memory limit of each task, MiB.
        #[arg(long, default_value_t = 512)]
        memory_mb: u64,
        /// Process limit of each task.
        #[arg(long, default_value_t = 256)]
        max_pids: u32,
        /// sandbox.toml: with [processing.misp] enabled = true each report's IoCs are looked up in MISP, with [reporting.misp] enabled = true it goes to MISP (default: /etc/ioclab/sandbox.toml when it exists).
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Submit a file to ioclab, a real Cuckoo 2.0 or a CAPEv2; print the task id (or, with --wait, the summary).
    #[command(after_help = "\
Examples:
  ioclab sandbox submit dropper.sh --wait
  ioclab sandbox submit sample.elf --timeout 120 --options user=root
  ioclab sandbox submit x.sh --url http://cuckoo.lab:8090 --token $TOKEN         a real Cuckoo 2.0
  ioclab sandbox submit x.exe --backend cape --url http://cape.lab:8000 --token $KEY --wait -o x.json
                                                                         CAPEv2; keep its report

With --wait the status is polled (every --poll seconds, printed when it
changes) until the report is ready or the task failed, then the report is
downloaded and summarised. A report saved with -o can be imported later with
`ioclab sandbox import` (MISP lookup, local task store).")]
    Submit {
        /// The sample.
        file: PathBuf,
        /// Wait for the report and print its summary.
        #[arg(long)]
        wait: bool,
        /// With --wait: seconds between two status polls.
        #[arg(long, default_value_t = 2.0, requires = "wait")]
        poll: f64,
        /// With --wait: give up after this many seconds (the task goes on in the sandbox).
        #[arg(long, default_value_t = 3600, requires = "wait")]
        max_wait: u64,
        /// With --wait: also save the downloaded report.json here.
        #[arg(short, long, requires = "wait")]
        output: Option<PathBuf>,
        /// Analysis timeout, seconds (default: the server's).
        #[arg(long)]
        timeout: Option<u64>,
        /// Package that runs it.
        #[arg(long)]
        package: Option<String>,
        /// Cuckoo options, key=value,...
        #[arg(long)]
        options: Option<String>,
        #[command(flatten)]
        api: ApiTarget,
    },
    /// Show a task's status, or the server's and every task's.
    #[command(after_help = "\
Examples:
  ioclab sandbox status        the server and every task
  ioclab sandbox status 3      task 3: status, times, errors
  ioclab sandbox status 3 --backend cape --url http://cape.lab:8000 --token $KEY")]
    Status {
        /// Task id.
        id: Option<i64>,
        #[command(flatten)]
        api: ApiTarget,
    },
    /// Print a task's report.json, or save its whole folder (bzip2 tarball).
    #[command(after_help = "\
Examples:
  ioclab sandbox report 3 | jq .signatures
  ioclab sandbox report 3 --summary
  ioclab sandbox report 3 --all -o task3.tar.bz2     what misp-modules' cuckooimport reads
  ioclab sandbox report 3 --backend cape --url http://cape.lab:8000 -o cape3.json")]
    Report {
        /// Task id.
        id: i64,
        /// Print the summary instead of the JSON.
        #[arg(long, conflicts_with = "all")]
        summary: bool,
        /// Fetch the task's folder as a bzip2 tarball (needs -o).
        #[arg(long, requires = "output")]
        all: bool,
        /// Write to this file instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        api: ApiTarget,
    },
    /// Import a report.json from a real Cuckoo 2.0 or CAPEv2 (or an earlier ioclab): look its IoCs up in MISP, keep it as a local task, print its summary.
    #[command(after_help = "\
Examples:
  sudo ioclab sandbox import cape-279601.json             task N of the local store, summary printed
  ioclab sandbox import report.json --no-store            only the summary (and the MISP matches)
  sudo ioclab sandbox import report.json -c lab.toml      MISP lookup with lab.toml's [processing.misp]
  ioclab sandbox to-misp --task N                          then: the imported report as a MISP event

A trainer gets what a sample detonated here gives: the report is read by the
one parser of Cuckoo 2.0 and CAPEv2 shapes (unknown keys ignored; a report it
cannot read is named with the JSON path of the problem); its sample and
dropped-file hashes, contacted hosts and resolved domains are looked up in
MISP when `[processing.misp] enabled` (matches under `misp`); and it becomes
a `reported` task of the local store (STORAGE/sandbox.db), its report
rewritten in Cuckoo 2.0's shape, so `ioclab sandbox report N`, the API
(misp-modules' cuckooimport) and `to-misp --task N` work on it.")]
    Import {
        /// The report.json.
        report: PathBuf,
        /// Only print the summary; keep nothing.
        #[arg(long)]
        no_store: bool,
        /// The local store's folder (where `ioclab sandbox serve` keeps its tasks).
        #[arg(long, default_value = DEFAULT_STORAGE)]
        storage: PathBuf,
        /// Its SQLite database (default: STORAGE/sandbox.db).
        #[arg(long)]
        db: Option<PathBuf>,
        /// sandbox.toml with `[processing.misp]` (default: /etc/ioclab/sandbox.toml when it exists).
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
    },
    /// Send a report to MISP as one event (Cuckoo's reporting module), or update the task's event.
    #[command(
        name = "to-misp",
        after_help = "\
Examples:
  ioclab sandbox to-misp task3.analysis/reports/report.json        the embedded MISP, settings from /etc/ioclab/sandbox.toml
  ioclab sandbox to-misp --task 3 -c sandbox.toml                  a task of `ioclab sandbox serve` (or a real Cuckoo)
  ioclab sandbox to-misp cape-report.json -c sandbox.toml          a real Cuckoo 2.0 or CAPEv2 report

The event is built whole, then sent in one events/add: unpublished (for a
human to review) unless [reporting.misp] publish = true, with the configured
tag(s), distribution, threat level and analysis. Its uuid derives from the
sandbox's name and the task id, so sending a task again updates its event
instead of adding a second one. Values on ioc_blacklist, the safelist or a
MISP warninglist are left out and listed with the reason.
`ioclab sandbox config --dump` shows every [reporting.misp] key."
    )]
    #[command(group(clap::ArgGroup::new("source").required(true).args(["report", "task"])))]
    ToMisp {
        /// A report.json (Cuckoo 2.0, CAPEv2 or ioclab's).
        report: Option<PathBuf>,
        /// A task of the sandbox API instead of a file.
        #[arg(long)]
        task: Option<i64>,
        /// sandbox.toml (default: /etc/ioclab/sandbox.toml when it exists, else the defaults).
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// The sample, for upload_sample (default: the task's `binary`).
        #[arg(long)]
        sample: Option<PathBuf>,
        #[command(flatten)]
        api: ApiTarget,
    },
    /// Show sandbox.toml: every key with its default and meaning (--dump), or a file's effective settings.
    #[command(after_help = "\
Examples:
  ioclab sandbox config --dump > /etc/ioclab/sandbox.toml      a starting point, every key commented
  ioclab sandbox config -c ./sandbox.toml                      check a file, print what it amounts to

sandbox.toml holds Cuckoo's two MISP modules under their processing.conf and
reporting.conf names: [processing.misp] (look the report's IoCs up in MISP) and
[reporting.misp] (send the report to MISP as an event). Without -c,
/etc/ioclab/sandbox.toml is read when it exists.")]
    Config {
        /// Print every key with its default and meaning (a valid sandbox.toml).
        #[arg(long, conflicts_with = "config")]
        dump: bool,
        /// The file to check (default: /etc/ioclab/sandbox.toml when it exists).
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")
}

/// Runs `ioclab sandbox`.
pub fn run(args: SandboxArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        SandboxCommand::Run { file, args, timeout, output, root, package, config } => {
            let misp = SandboxToml::load(config.as_deref())?;
            run_once(&file, args, timeout, output, root, package, &misp)
        }
        SandboxCommand::Serve { listen, db, storage, no_auth, workers, max_file_mb, memory_mb, max_pids, config } => {
            let misp = SandboxToml::load(config.as_deref())?;
            for (enabled, connection, what) in [
                (misp.processing.misp.enabled, misp.processing.misp.connection(), "reports are looked up in"),
                (misp.reporting.misp.enabled, misp.reporting.misp.connection(), "reports go to"),
            ] {
                if enabled {
                    // a missing key is said now, not after the first detonation
                    connection.api_key()?;
                    eprintln!("{what} MISP at {}", connection.url);
                }
            }
            let token = if no_auth {
                tracing::warn!("--no-auth: anyone who reaches {listen} can submit samples");
                None
            } else {
                let (token, created) = auth::load_or_create(&storage)
                    .with_context(|| format!("reading or creating the API token in {}", storage.display()))?;
                if created {
                    println!("API token (shown once; kept in {}): {token}", auth::token_path(&storage).display());
                } else {
                    eprintln!("API token: in {}", auth::token_path(&storage).display());
                }
                Some(token)
            };
            let detonator: Arc<dyn Detonator> = Arc::new(
                Sandbox::new(SandboxConfig::default()).context("the sandbox cannot detonate on this machine")?,
            );
            let config = ApiConfig {
                misp,
                storage: storage.clone(),
                token,
                max_file_bytes: max_file_mb << 20,
                workers,
                limits: TaskLimits { memory_bytes: memory_mb << 20, max_pids, ..TaskLimits::default() },
            };
            let db_path = db.unwrap_or_else(|| storage.join("sandbox.db"));
            runtime()?.block_on(async {
                let db = TaskDb::open(&db_path).await.with_context(|| format!("opening {}", db_path.display()))?;
                let state = AppState::start(db, config, detonator).await?;
                api::serve(state, listen).await.with_context(|| format!("serving on {listen}"))?;
                Ok(ExitCode::SUCCESS)
            })
        }
        SandboxCommand::Submit { file, wait, poll, max_wait, output, timeout, package, options, api } => runtime()?
            .block_on(async {
                let client = api.client();
                let id = client.submit_file(&file, &SubmitOptions { timeout, package, options }).await?;
                if !wait {
                    println!("{id}");
                    return Ok(ExitCode::SUCCESS);
                }
                eprintln!("task {id} submitted to {}; waiting for its report", api.url());
                let every = Duration::from_secs_f64(poll.max(0.05));
                let status = client
                    .wait(id, every, Duration::from_secs(max_wait), |s, waited| {
                        eprintln!("task {id}: {s} ({} s)", waited.as_secs())
                    })
                    .await?;
                if status != TaskStatus::Reported {
                    print_task(&client.task(id).await?);
                    return Ok(ExitCode::FAILURE);
                }
                let bytes = client.report_bytes(id).await?;
                let r = Report::from_slice(&bytes, &client.report_url(id))?;
                if let Some(p) = &output {
                    std::fs::write(p, &bytes).with_context(|| format!("writing {}", p.display()))?;
                    eprintln!("report saved to {} ({} bytes)", p.display(), bytes.len());
                }
                print!("{}", summary(&r, &client.report_url(id)));
                Ok(ExitCode::SUCCESS)
            }),
        SandboxCommand::Status { id, api } => runtime()?.block_on(async {
            let client = api.client();
            match id {
                Some(id) => print_task(&client.task(id).await?),
                None => {
                    let s = client.server_status().await?;
                    println!(
                        "{} ({} {}): {} tasks: {} pending, {} running, {} completed, {} reported",
                        api.url(),
                        if api.kind() == BackendKind::Cape { "CAPE" } else { "Cuckoo" },
                        s["version"].as_str().unwrap_or("?"),
                        s["tasks"]["total"],
                        s["tasks"]["pending"],
                        s["tasks"]["running"],
                        s["tasks"]["completed"],
                        s["tasks"]["reported"]
                    );
                    for t in client.tasks().await? {
                        println!(
                            "{:>5}  {:<16} {:<5} {}",
                            t["id"],
                            t["status"].as_str().unwrap_or("?"),
                            t["category"].as_str().unwrap_or("?"),
                            t["target"].as_str().unwrap_or("?")
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }),
        SandboxCommand::Report { id, summary: want_summary, all, output, api } => runtime()?.block_on(async {
            let client = api.client();
            let bytes = if all {
                match &client {
                    Backend::Cuckoo(c) => c.report_all(id).await?,
                    Backend::Cape(_) => {
                        bail!("--all is Cuckoo's task archive; from CAPE the report comes as JSON only")
                    }
                }
            } else if want_summary {
                let r = client.report(id).await?;
                bytes::Bytes::from(summary(&r, &client.report_url(id)))
            } else {
                client.report_bytes(id).await?
            };
            match output {
                Some(p) => {
                    std::fs::write(&p, &bytes).with_context(|| format!("writing {}", p.display()))?;
                    eprintln!("wrote {} ({} bytes)", p.display(), bytes.len());
                }
                None => {
                    use std::io::Write;
                    std::io::stdout().write_all(&bytes)?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }),
        SandboxCommand::Import { report: path, no_store, storage, db, config } => {
            let misp = SandboxToml::load(config.as_deref())?;
            let mut r = Report::from_file(&path)?;
            runtime()?.block_on(async {
                match lookup::enrich(&mut r, &misp.processing.misp).await {
                    None => eprintln!("MISP lookup: off ([processing.misp] enabled = false)"),
                    Some(Ok(o)) => eprintln!(
                        "MISP lookup: {} values asked in {} requests ({} on ioc_blacklist, {} past maxioc): {} events matched",
                        o.candidates.values.len(),
                        o.requests,
                        o.candidates.blacklisted.len(),
                        o.candidates.over_max.len(),
                        o.hits.len()
                    ),
                    // the reason is in the report, and so in its summary
                    Some(Err(_)) => {}
                }
                let at = if no_store {
                    path.display().to_string()
                } else {
                    let db_path = db.unwrap_or_else(|| storage.join("sandbox.db"));
                    let tasks = TaskDb::open(&db_path).await.with_context(|| {
                        format!("opening the local task store {} (--no-store only prints)", db_path.display())
                    })?;
                    let origin = path.display().to_string();
                    let id = api::import::import(&tasks, &storage, r.clone(), &origin).await?;
                    r.info.id = id as u64;
                    format!(
                        "{} (task {id}: `ioclab sandbox report {id}`, `ioclab sandbox to-misp --task {id}`)",
                        api::queue::report_path(&storage, id).display()
                    )
                };
                print!("{}", summary(&r, &at));
                Ok(ExitCode::SUCCESS)
            })
        }
        SandboxCommand::ToMisp { report, task, config, sample, api } => {
            let cfg = SandboxToml::load(config.as_deref())?.reporting.misp;
            runtime()?.block_on(to_misp(report, task, &cfg, sample, &api))
        }
        SandboxCommand::Config { dump, config } => {
            if dump {
                print!("{}", SandboxToml::dump());
            } else {
                let c = SandboxToml::load(config.as_deref())?;
                print!("{}", c.to_toml_redacted());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `ioclab sandbox to-misp`.
async fn to_misp(
    path: Option<PathBuf>,
    task: Option<i64>,
    cfg: &ReportingMisp,
    sample: Option<PathBuf>,
    api: &ApiTarget,
) -> anyhow::Result<ExitCode> {
    let report = match (&path, task) {
        (Some(p), _) => Report::from_file(p)?,
        (None, Some(id)) => api.client().report(id).await?,
        (None, None) => bail!("give a report.json or --task ID"),
    };
    let sample_bytes = if !cfg.upload_sample {
        None
    } else if let Some(s) = &sample {
        Some(std::fs::read(s).with_context(|| format!("reading the sample {}", s.display()))?)
    } else if let Some(p) = &path {
        // a task folder: reports/report.json next to binary
        let binary = p.parent().and_then(Path::parent).map(|d| d.join("binary"));
        binary.and_then(|b| std::fs::read(b).ok())
    } else {
        match report.target.file.as_ref().and_then(|f| f.sha256) {
            Some(sha) => match api.client() {
                Backend::Cuckoo(c) => c.sample(&sha.to_string()).await.ok().map(|b| b.to_vec()),
                // CAPE serves samples elsewhere (files/get/...): give --sample
                Backend::Cape(_) => None,
            },
            None => None,
        }
    };
    let outcome =
        match misp::push::report_to_misp(&report, cfg, Warninglists::embedded(), sample_bytes.as_deref()).await {
            Ok(o) => o,
            Err(e) => bail!("{}", misp::push::misp_error(&e, report.info.id)),
        };
    println!("{outcome}");
    if let misp::push::Outcome::Sent { built, .. } = &outcome {
        let tags: Vec<&str> = built.event.tags.iter().map(|t| t.name.as_str()).collect();
        println!("  uuid {}  tags: {}", built.event.uuid, tags.join(", "));
        if !built.left_out.is_empty() {
            println!("left out ({}):", built.left_out.len());
            for l in &built.left_out {
                println!("  {l}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_task(t: &serde_json::Value) {
    let s = |k: &str| t[k].as_str().unwrap_or("-").to_string();
    println!("task {}: {} ({} {})", t["id"], s("status"), s("category"), s("target"));
    println!("  added {}  started {}  completed {}", s("added_on"), s("started_on"), s("completed_on"));
    for e in t["errors"].as_array().into_iter().flatten() {
        println!("  error: {}", e.as_str().unwrap_or_default());
    }
}

fn run_once(
    file: &Path,
    args: Vec<String>,
    timeout: u64,
    output: Option<PathBuf>,
    root: bool,
    package: Option<String>,
    misp: &SandboxToml,
) -> anyhow::Result<ExitCode> {
    let meta = std::fs::metadata(file).with_context(|| format!("{}", file.display()))?;
    if !meta.is_file() {
        bail!("{} is not a file", file.display());
    }
    if meta.len() == 0 {
        bail!("{} is empty: nothing to run", file.display());
    }
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).context("the sample has no file name")?;
    let dir = output.unwrap_or_else(|| PathBuf::from(format!("{name}.analysis")));
    std::fs::create_dir_all(dir.join("reports")).with_context(|| format!("creating {}", dir.display()))?;
    let binary = dir.join("binary");
    std::fs::copy(file, &binary).with_context(|| format!("copying the sample to {}", binary.display()))?;
    let job = Job {
        task_id: 1,
        target: Target::File { path: binary, name },
        args,
        package,
        timeout_s: timeout,
        enforce_timeout: false,
        memory_bytes: 512 << 20,
        max_pids: 256,
        as_root: root,
        dns: Vec::new(),
        services: Vec::new(),
        options: Default::default(),
    };
    let sandbox = Sandbox::new(SandboxConfig::default()).context("the sandbox cannot detonate on this machine")?;
    let det = sandbox.detonate(&job, &dir)?;
    let mut r = report::build(&job, &det);
    runtime()?.block_on(lookup::enrich(&mut r, &misp.processing.misp));
    let reporting = &misp.reporting.misp;
    let sample = if reporting.upload_sample { std::fs::read(dir.join("binary")).ok() } else { None };
    let sent = runtime()?.block_on(misp::push::after_detonation(&mut r, reporting, sample.as_deref()));
    let path = dir.join("reports").join("report.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&r)?).with_context(|| format!("writing {}", path.display()))?;
    print!("{}", summary(&r, &path.display().to_string()));
    if let (Some(line), None) = (sent, &r.misp_error) {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// What a trainer reads first: score, signatures, contacts, drops, and where the report is.
fn summary(r: &Report, report_at: &str) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let target = r.target.file.as_ref().map(|f| f.name.clone()).or_else(|| r.target.url.clone()).unwrap_or_default();
    let _ = writeln!(
        out,
        "task {}: {} ({}, {} s{})",
        r.info.id,
        target,
        r.info.package,
        r.info.duration,
        if r.info.timed_out { ", timed out" } else { "" }
    );
    if let Some(f) = &r.target.file {
        let _ = writeln!(out, "  sha256 {}", f.sha256.map(|h| h.to_string()).unwrap_or_default());
    }
    let _ = writeln!(out, "score {:.1}", r.info.score);
    let _ = writeln!(out, "signatures ({}):", r.signatures.len());
    for s in &r.signatures {
        let ttps: Vec<&str> = s.ttp.keys().map(String::as_str).collect();
        let _ = writeln!(out, "  [{}] {:<28} {} ({})", s.severity, s.name, s.description, ttps.join(", "));
        for m in s.marks.iter().take(3) {
            let _ = writeln!(out, "      {}", m.one_line(200));
        }
    }
    let n = &r.network;
    let _ = writeln!(out, "network:");
    for d in &n.domains {
        let _ = writeln!(out, "  resolved {} -> {}", d.domain, if d.ip.is_empty() { "-" } else { &d.ip });
    }
    for h in &n.http {
        let _ = writeln!(
            out,
            "  {} {} ({})",
            h.method,
            h.uri,
            if h.user_agent.is_empty() { "no user agent" } else { &h.user_agent }
        );
    }
    for f in &n.tcp {
        let _ = writeln!(out, "  tcp {}:{} ({} bytes)", f.dst, f.dport, f.bytes);
    }
    for f in &n.udp {
        let _ = writeln!(out, "  udp {}:{} ({} bytes)", f.dst, f.dport, f.bytes);
    }
    for d in &n.dead_hosts {
        let _ = writeln!(out, "  refused {}:{}", d.ip, d.port);
    }
    let _ = writeln!(out, "dropped files ({}):", r.dropped.len());
    for d in &r.dropped {
        let _ = writeln!(
            out,
            "  {} {} bytes sha256 {}{}",
            d.filepath,
            d.file.size,
            d.file.sha256.map(|h| h.to_string()).unwrap_or_default(),
            if d.truncated { " (copy truncated)" } else { "" }
        );
    }
    if !r.misp.is_empty() {
        let _ = writeln!(out, "known to MISP ({} events):", r.misp.len());
    }
    for h in &r.misp {
        let level = h.level.map(|l| l.meaning().to_string()).unwrap_or_else(|| "level ?".into());
        let _ = writeln!(out, "  event {} ({}, {level}) {}: {}", h.event_id, h.date, h.info, h.iocs.join(", "));
        let _ = writeln!(out, "      {}", h.url);
    }
    if let Some(e) = &r.misp_lookup_error {
        let _ = writeln!(out, "MISP lookup failed: {e}");
    }
    for e in &r.debug.errors {
        let _ = writeln!(out, "note: {e}");
    }
    if let Some(e) = &r.misp_error {
        let _ = writeln!(out, "misp: {e}");
    }
    let _ = writeln!(out, "report: {report_at}");
    out
}
