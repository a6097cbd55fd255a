//! `ioclab lab`: scenarios (list, check, schema) and the lab network (shell).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use ioclab_lab::network::{self, LabNetConfig, LabNetwork};
use ioclab_lab::record_arg::parse_record_arg;
use ioclab_lab::scenario::{load, schema, Severity};
use ioclab_sandbox::fakenet;

/// Arguments of `ioclab lab`.
#[derive(Args)]
pub struct LabArgs {
    #[command(subcommand)]
    command: LabCommand,
}

/// Where scenarios are found.
#[derive(Args)]
pub(crate) struct ScenarioDir {
    /// The folder holding one sub-folder per scenario.
    #[arg(long, env = "IOCLAB_SCENARIOS", default_value = "lab-scenarios")]
    pub(crate) dir: PathBuf,
}

/// Where the lab keeps its state (MISP store, sandbox tasks, agent IoCs, runs).
#[derive(Args, Clone)]
pub(crate) struct DataArg {
    /// The lab's data directory (created when missing).
    #[arg(long = "data", env = "IOCLAB_DATA", default_value = ioclab_lab::data_dir::DEFAULT_DATA_DIR)]
    pub(crate) data: PathBuf,
}

impl DataArg {
    /// The data directory's layout.
    pub(crate) fn dir(&self) -> ioclab_lab::data_dir::DataDir {
        ioclab_lab::data_dir::DataDir::new(&self.data)
    }
}

#[derive(Subcommand)]
enum LabCommand {
    /// List the scenarios: id, title, level, duration, ATT&CK techniques.
    #[command(
        after_help = "Examples:\n  ioclab lab list\n  ioclab lab list --dir ~/my-scenarios\n  IOCLAB_SCENARIOS=/srv/lab ioclab lab list"
    )]
    List {
        #[command(flatten)]
        dir: ScenarioDir,
    },
    /// Validate scenario files; prints each problem as FILE:LINE:COLUMN and exits 1 on errors.
    #[command(after_help = "Checks: unknown keys, types, undeclared #{args}, ATT&CK ids, missing assets and sha256\n\
mismatches, duplicate ids, unlock conditions naming unknown detections, lab addresses\n\
that are not loopback, and answers.yaml against the questions.\n\n\
Examples:\n  ioclab lab check                          # every scenario under lab-scenarios/\n  \
ioclab lab check lab-scenarios/dns-ioc-why-kunai-rocks\n  \
ioclab lab check my-draft/scenario.yaml")]
    Check {
        /// Scenario folders or scenario.yaml files (none: every scenario under --dir).
        paths: Vec<PathBuf>,
        #[command(flatten)]
        dir: ScenarioDir,
    },
    /// Print the JSON Schema of scenario.yaml (or answers.yaml), for editor completion.
    #[command(
        after_help = "Examples:\n  ioclab lab schema > scenario.schema.json\n  ioclab lab schema --answers > answers.schema.json\n\n\
Then, at the top of a scenario.yaml (yaml-language-server, e.g. VS Code's YAML extension):\n  \
# yaml-language-server: $schema=./scenario.schema.json"
    )]
    Schema {
        /// The schema of answers.yaml instead.
        #[arg(long)]
        answers: bool,
    },
    /// A shell inside the lab network: the fake internet, offline (needs root).
    #[command(after_help = "\
Every name resolves (the given records first, anything else to the sink 192.0.2.1),
every IPv4 address is local to the network, and sinks answer on common ports
(HTTP 80/8080, TLS 443/8443, 21, 22, 25, 1337, 4444). Nothing leaves the machine.

Examples:
  sudo ioclab lab shell dns-ioc-why-kunai-rocks   the scenario's network (./lab-scenarios/<id>)
  sudo ioclab lab shell --record why.kunai.rocks=CNAME:kunai-project.github.io \\
                        --record kunai-project.github.io=A:127.0.66.80
      then type: dig why.kunai.rocks   (the blog's experiment, offline)
  sudo ioclab lab shell -c 'curl -s http://evil.example/'   one command, its exit status")]
    Shell(ShellArgs),
    /// Undo what runs created: cleanup commands, MISP events, sandbox tasks, the agent's IoCs.
    #[command(after_help = super::lab_reset::AFTER_HELP)]
    Reset(super::lab_reset::ResetArgs),
    /// Run a scenario live: sandbox, MISP, export, agent, endpoint steps, detections (needs root and eBPF).
    Run(super::lab_run::RunArgs),
    /// Play a scenario's recorded run (no root, no eBPF): the same timeline as a live run.
    #[command(after_help = super::lab_replay::EXAMPLES)]
    Replay(super::lab_replay::ReplayArgs),
    /// Store a finished live run as the scenario's replay (lab-scenarios/<id>/replay/).
    #[command(after_help = super::lab_record::EXAMPLES)]
    Record(super::lab_record::RecordArgs),
}

#[derive(Args)]
struct ShellArgs {
    /// A scenario folder (or its scenario.yaml), or a scenario id under --dir: its network's records and services.
    scenario: Option<String>,
    /// A DNS record, NAME=TYPE:VALUE with TYPE A, AAAA or CNAME (repeatable; added to the scenario's).
    #[arg(long = "record", value_name = "NAME=TYPE:VALUE", value_parser = parse_record_arg)]
    records: Vec<ioclab_sandbox::detonation::DnsRecord>,
    /// Run this command (with the shell's -c) instead of an interactive shell, and exit with its status.
    #[arg(short = 'c', value_name = "COMMAND")]
    command: Option<String>,
    #[command(flatten)]
    dir: ScenarioDir,
}

/// Runs `ioclab lab`.
pub fn run(args: LabArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        LabCommand::List { dir } => list(&dir.dir),
        LabCommand::Check { paths, dir } => check(paths, &dir.dir),
        LabCommand::Schema { answers } => {
            let s = if answers { schema::answers() } else { schema::scenario() };
            println!("{}", serde_json::to_string_pretty(&s)?);
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Shell(a) => shell(a),
        LabCommand::Reset(a) => super::lab_reset::run(a),
        LabCommand::Run(a) => super::lab_run::run(a),
        LabCommand::Replay(a) => super::lab_replay::run(a),
        LabCommand::Record(a) => super::lab_record::run(a),
    }
}

fn scenarios_in(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    load::find(dir)
        .with_context(|| format!("cannot read the scenario folder {} (set --dir or IOCLAB_SCENARIOS)", dir.display()))
}

fn list(dir: &Path) -> anyhow::Result<ExitCode> {
    let mut code = ExitCode::SUCCESS;
    println!("{:<32} {:<12} {:>5}  {:<36} TITLE", "ID", "LEVEL", "MIN", "ATT&CK");
    for path in scenarios_in(dir)? {
        match load::load(&path) {
            Ok(l) => {
                let s = &l.scenario;
                let attack: Vec<&str> = s.attack.iter().map(|a| a.as_str()).collect();
                println!(
                    "{:<32} {:<12} {:>5}  {:<36} {}",
                    s.id.as_str(),
                    s.level.to_string(),
                    s.duration_minutes,
                    attack.join(","),
                    s.title
                );
            }
            Err(diags) => {
                eprintln!(
                    "{}: invalid scenario ({} errors; run `ioclab lab check {}`)",
                    path.display(),
                    diags.len(),
                    path.display()
                );
                code = ExitCode::FAILURE;
            }
        }
    }
    Ok(code)
}

fn check(paths: Vec<PathBuf>, dir: &Path) -> anyhow::Result<ExitCode> {
    let paths = if paths.is_empty() { scenarios_in(dir)? } else { paths };
    if paths.is_empty() {
        anyhow::bail!("no scenario under {} (a scenario is a folder holding scenario.yaml)", dir.display());
    }
    let (mut errors, mut warnings) = (0, 0);
    for path in &paths {
        let diags = match load::load(path) {
            Ok(l) => {
                println!("ok {}", l.scenario.id.as_str());
                l.warnings
            }
            Err(d) => d,
        };
        for d in diags {
            match d.severity {
                Severity::Error => errors += 1,
                Severity::Warning => warnings += 1,
            }
            println!("{d}");
        }
    }
    println!("{} scenario(s) checked: {errors} error(s), {warnings} warning(s)", paths.len());
    Ok(if errors > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// The user's shell, else bash, else sh.
fn user_shell() -> String {
    if let Ok(s) = std::env::var("SHELL") {
        if !s.is_empty() && std::path::Path::new(&s).exists() {
            return s;
        }
    }
    for s in ["/bin/bash", "/usr/bin/bash"] {
        if std::path::Path::new(s).exists() {
            return s.into();
        }
    }
    "/bin/sh".into()
}

/// Loads the scenario `arg` (a folder, its scenario.yaml, or an id under
/// the scenario folder `dir`), printing its diagnostics when it is invalid.
pub(crate) fn load_scenario(arg: &str, dir: &Path) -> anyhow::Result<load::Loaded> {
    let given = Path::new(arg);
    let path = if given.exists() { given.to_path_buf() } else { dir.join(arg) };
    if !path.exists() {
        bail!("scenario {arg:?}: no such folder, nor {} (set --dir or IOCLAB_SCENARIOS)", path.display());
    }
    load::load(&path).map_err(|diags| {
        for d in &diags {
            eprintln!("{d}");
        }
        anyhow::anyhow!("scenario {arg:?}: {} error(s) in {}", diags.len(), path.display())
    })
}

fn shell(a: ShellArgs) -> anyhow::Result<ExitCode> {
    let mut config = match &a.scenario {
        Some(s) => {
            let loaded = load_scenario(s, &a.dir.dir)?;
            eprintln!("scenario {}", loaded.scenario.id);
            LabNetConfig::from_scenario(&loaded)?
        }
        None => LabNetConfig::default(),
    };
    // the command line's records come first: the resolver answers the first match
    config.records.splice(0..0, a.records);
    let net = LabNetwork::start(config).context("starting the lab network (needs root)")?;
    let sh = user_shell();
    let mut banner = String::from("ioclab lab network: a fake internet in its own network namespace.\n");
    if net.records().is_empty() {
        banner += "  records: none\n";
    } else {
        banner += "  records:\n";
        for r in net.records() {
            banner += &format!("    {}\n", network::describe_record(r));
        }
    }
    for s in net.services() {
        banner += &format!("  service: {}\n", network::describe_service(s));
    }
    banner += &format!(
        "  every other name -> {} (AAAA {}); every address is local; sinks on TCP {:?}\n  nothing leaves this machine. ",
        fakenet::DEFAULT_SINK_V4,
        fakenet::DEFAULT_SINK_V6,
        fakenet::SINK_PORTS
    );
    banner += if a.command.is_some() { "Running one command.\n" } else { "Type `exit` (or Ctrl-D) to leave.\n" };
    eprint!("{banner}");

    let mut cmd = Command::new(&sh);
    if let Some(c) = &a.command {
        cmd.arg("-c").arg(c);
    }
    cmd.env("IOCLAB_LAB", "1");
    // the shell gets Ctrl-C; ioclab must live on to tear the network down
    // SAFETY: setting signal dispositions of this process; the child resets them.
    let old = unsafe { (libc::signal(libc::SIGINT, libc::SIG_IGN), libc::signal(libc::SIGQUIT, libc::SIG_IGN)) };
    let status = net
        .spawn(&mut cmd)
        .map_err(anyhow::Error::from)
        .and_then(|mut child| child.wait().with_context(|| format!("waiting for {sh}")));
    // SAFETY: restoring what was there.
    unsafe {
        libc::signal(libc::SIGINT, old.0);
        libc::signal(libc::SIGQUIT, old.1);
    }
    let log = net.stop();
    eprint!("{}", network::summary(&log));
    let status = status?;
    use std::os::unix::process::ExitStatusExt as _;
    let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}
