//! `ioclab sandbox`: detonate a sample once, serve the Cuckoo-compatible
//! API, and talk to that API (or a real Cuckoo 2.0) as a client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use ioclab_sandbox::api::db::TaskDb;
use ioclab_sandbox::api::queue::TaskLimits;
use ioclab_sandbox::api::{self, auth, ApiConfig, AppState};
use ioclab_sandbox::client::{CuckooClient, SubmitOptions};
use ioclab_sandbox::detonation::{Detonator, Job, Target};
use ioclab_sandbox::misp::SandboxToml;
use ioclab_sandbox::report::{self, Mark, Report};
use ioclab_sandbox::runner::{Sandbox, SandboxConfig};

/// Where `ioclab sandbox serve` keeps its data unless told otherwise.
const DEFAULT_STORAGE: &str = "/var/lib/ioclab/sandbox";
/// Cuckoo's API port.
const DEFAULT_URL: &str = "http://127.0.0.1:8090";

/// Arguments of `ioclab sandbox`.
#[derive(Args)]
pub struct SandboxArgs {
    #[command(subcommand)]
    command: SandboxCommand,
}

/// Where a client finds the API.
#[derive(Args)]
struct ApiTarget {
    /// Base URL of the Cuckoo API (ioclab's or a real Cuckoo 2.0's).
    #[arg(long, env = "IOCLAB_SANDBOX_URL", default_value = DEFAULT_URL)]
    url: String,
    /// API token (default: the one `ioclab sandbox serve` keeps in its storage folder, when readable).
    #[arg(long, env = "IOCLAB_SANDBOX_TOKEN", hide_env_values = true)]
    token: Option<String>,
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
    },
    /// Submit a file to the API; print the task id (or, with --wait, the summary).
    #[command(after_help = "\
Examples:
  ioclab sandbox submit dropper.sh --wait
  ioclab sandbox submit sample.elf --timeout 120 --options user=root
  ioclab sandbox submit x.sh --url http://cuckoo.lab:8090 --token $TOKEN     a real Cuckoo 2.0")]
    Submit {
        /// The sample.
        file: PathBuf,
        /// Wait for the report and print its summary.
        #[arg(long)]
        wait: bool,
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
  ioclab sandbox status 3      task 3: status, times, errors")]
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
  ioclab sandbox report 3 --all -o task3.tar.bz2     what misp-modules' cuckooimport reads")]
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
        SandboxCommand::Run { file, args, timeout, output, root, package } => {
            run_once(&file, args, timeout, output, root, package)
        }
        SandboxCommand::Serve { listen, db, storage, no_auth, workers, max_file_mb, memory_mb, max_pids } => {
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
                misp: Default::default(),
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
        SandboxCommand::Submit { file, wait, timeout, package, options, api } => runtime()?.block_on(async {
            let client = client(&api);
            let id = client.submit_file(&file, &SubmitOptions { timeout, package, options }).await?;
            if !wait {
                println!("{id}");
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!("task {id} submitted; waiting for its report");
            let task = loop {
                let task = client.task(id).await?;
                match task["status"].as_str().unwrap_or_default() {
                    "reported" | "failed_analysis" | "failed_processing" | "failed_reporting" => break task,
                    _ => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            };
            if task["status"] != "reported" {
                print_task(&task);
                return Ok(ExitCode::FAILURE);
            }
            let r = client.report(id).await?;
            print!("{}", summary(&r, &format!("{}/tasks/report/{id}", api.url.trim_end_matches('/'))));
            Ok(ExitCode::SUCCESS)
        }),
        SandboxCommand::Status { id, api } => runtime()?.block_on(async {
            let client = client(&api);
            match id {
                Some(id) => print_task(&client.task(id).await?),
                None => {
                    let s = client.status().await?;
                    println!(
                        "{} (Cuckoo {}): {} tasks: {} pending, {} running, {} completed, {} reported",
                        api.url,
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
            let client = client(&api);
            let bytes = if all {
                client.report_all(id).await?
            } else if want_summary {
                let r = client.report(id).await?;
                bytes::Bytes::from(summary(&r, &format!("{}/tasks/report/{id}", api.url.trim_end_matches('/'))))
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

fn client(api: &ApiTarget) -> CuckooClient {
    // the local server's token, when this user can read it and none was given
    let token = api.token.clone().or_else(|| {
        std::fs::read_to_string(auth::token_path(Path::new(DEFAULT_STORAGE))).ok().map(|t| t.trim().to_string())
    });
    CuckooClient::new(&api.url, token)
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
        options: Default::default(),
    };
    let sandbox = Sandbox::new(SandboxConfig::default()).context("the sandbox cannot detonate on this machine")?;
    let det = sandbox.detonate(&job, &dir)?;
    let r = report::build(&job, &det);
    let path = dir.join("reports").join("report.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&r)?).with_context(|| format!("writing {}", path.display()))?;
    print!("{}", summary(&r, &path.display().to_string()));
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
            let what = match m {
                Mark::Call { pid, call, .. } => format!("pid {pid} {} {}", call.api, mark_detail(call)),
                Mark::Ioc { category, ioc, .. } => format!("{category} {ioc}"),
                Mark::Other(v) => v.to_string(),
            };
            let _ = writeln!(out, "      {what}");
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
    for e in &r.debug.errors {
        let _ = writeln!(out, "note: {e}");
    }
    let _ = writeln!(out, "report: {report_at}");
    out
}

fn mark_detail(call: &report::Call) -> String {
    ["path", "new", "query", "command_line"]
        .iter()
        .find_map(|k| call.arguments.get(*k).and_then(|v| v.as_str()).filter(|s| !s.is_empty()).map(str::to_string))
        .or_else(|| call.arguments.get("dst").map(|d| format!("{}:{}", d["ip"].as_str().unwrap_or("?"), d["port"])))
        .unwrap_or_default()
}
