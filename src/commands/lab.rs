//! `ioclab lab`: scenarios (list, check, schema) and the lab network (shell).

use std::process::{Command, ExitCode};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use ioclab_lab::network::{self, LabNetConfig, LabNetwork};
use ioclab_lab::record_arg::parse_record_arg;
use ioclab_sandbox::fakenet;

/// Arguments of `ioclab lab`.
#[derive(Args)]
pub struct LabArgs {
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Subcommand)]
enum LabCommand {
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
}

#[derive(Args)]
struct ShellArgs {
    /// A scenario folder (or its scenario.yaml), or a scenario id under ./lab-scenarios: its network's records and services.
    scenario: Option<String>,
    /// A DNS record, NAME=TYPE:VALUE with TYPE A, AAAA or CNAME (repeatable; added to the scenario's).
    #[arg(long = "record", value_name = "NAME=TYPE:VALUE", value_parser = parse_record_arg)]
    records: Vec<ioclab_sandbox::detonation::DnsRecord>,
    /// Run this command (with the shell's -c) instead of an interactive shell, and exit with its status.
    #[arg(short = 'c', value_name = "COMMAND")]
    command: Option<String>,
}

/// Runs `ioclab lab`.
pub fn run(args: LabArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        LabCommand::Shell(a) => shell(a),
    }
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

/// Where the scenario ids of `ioclab lab shell ID` live.
const SCENARIOS_DIR: &str = "lab-scenarios";

/// Loads the scenario `arg` (a folder, its scenario.yaml, or an id under
/// ./lab-scenarios) and returns its id and network.
fn scenario_network(arg: &str) -> anyhow::Result<(String, ioclab_lab::scenario::LabNetwork)> {
    let given = std::path::Path::new(arg);
    let path = if given.exists() { given.to_path_buf() } else { std::path::Path::new(SCENARIOS_DIR).join(arg) };
    if !path.exists() {
        bail!("scenario {arg:?}: no such folder, nor {} (run from the folder holding lab-scenarios/)", path.display());
    }
    match ioclab_lab::scenario::load::load(&path) {
        Ok(l) => Ok((l.scenario.id.to_string(), l.scenario.network)),
        Err(diags) => {
            for d in &diags {
                eprintln!("{d}");
            }
            bail!("scenario {arg:?}: {} error(s) in {}", diags.len(), path.display())
        }
    }
}

fn shell(a: ShellArgs) -> anyhow::Result<ExitCode> {
    let mut config = match &a.scenario {
        Some(s) => {
            let (id, network) = scenario_network(s)?;
            eprintln!("scenario {id}");
            LabNetConfig::from_scenario(&network, &id)
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
