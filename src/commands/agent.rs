//! `ioclab agent`: run the sensor, or show its configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use ioclab_agent::config::Config;
use ioclab_agent::events::EventKind;
use ioclab_agent::sensor::{self, Control};

/// Arguments of `ioclab agent` (the help text is on the subcommand in main.rs).
#[derive(Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "\
Examples:
  sudo ioclab agent                                  every event on stdout
  sudo ioclab agent -i iocs.json -o /var/log/ioclab.json
  ioclab agent config --dump > agent.yaml            the settings, to edit
  sudo ioclab agent -c agent.yaml                    run with them
  sudo kill -HUP $(pidof ioclab)                     reload the IoC files, reopen -o FILE
  sudo ioclab agent | head -1                        the start event, then the agent stops

Events are switched on and off in the config file (events.<name>.enable);
ioclab agent config --list-events shows them all. File events are limited
to max_eps_fs per process and second (an `error` event says when).

On SIGHUP the IoC files are read again, one load at a time: an `ioc_reload`
event says the new set is in use; a load with bad lines or no IoC is refused
with an `error` event and the previous IoCs stay (--accept-partial-iocs takes
it anyway). Events the output cannot take (full disk) are counted and
reported by an `event_loss` event once writing works again."
)]
pub struct AgentArgs {
    #[command(subcommand)]
    command: Option<AgentCommand>,
    /// Configuration file (YAML, Kunai's shape); flags override it.
    #[arg(short, long, value_name = "CONFIG")]
    config: Option<PathBuf>,
    /// IoC file (one JSON object a line, Kunai's format); repeatable. With IoCs, only matching events are written.
    #[arg(short, long = "iocs", value_name = "IOCS")]
    iocs: Vec<PathBuf>,
    /// Append events to this file instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Write only detections of at least this severity (0-10).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(0..=10))]
    min_severity: Option<u8>,
    /// On reload, use IoC files even with bad lines or no IoC (default: keep the previous IoCs).
    #[arg(long)]
    accept_partial_iocs: bool,
    /// At exit, print counters (events read, written, lost; CPU time; peak memory) as JSON on stderr.
    #[arg(long)]
    stats: bool,
}

#[derive(Subcommand)]
enum AgentCommand {
    /// Show the configuration: defaults, or a file's settings merged over them.
    Config(ConfigArgs),
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["dump", "list_events"]))]
struct ConfigArgs {
    /// Print the whole configuration as YAML (a starting point for -c).
    #[arg(long)]
    dump: bool,
    /// List the event types with their id and whether they are on by default.
    #[arg(long)]
    list_events: bool,
    /// Configuration file to merge over the defaults.
    #[arg(short, long, value_name = "CONFIG")]
    config: Option<PathBuf>,
}

fn load_config(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    Ok(match path {
        Some(p) => Config::from_file(p)?,
        None => Config::default(),
    })
}

/// Runs `ioclab agent ...`.
pub fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    if let Some(AgentCommand::Config(c)) = args.command {
        let config = load_config(c.config.as_ref())?;
        if c.dump {
            print!("{}", config.to_yaml());
        } else {
            println!("{:<4}  {:<18} enabled", "id", "name");
            for k in EventKind::ALL.iter().filter(|k| k.produced()) {
                let on = if k.is_agent_event() { "always".to_string() } else { config.enabled(*k).to_string() };
                println!("{:<4}  {:<18} {on}", k.id(), k.name());
            }
        }
        return Ok(ExitCode::SUCCESS);
    }

    let mut config = load_config(args.config.as_ref())?;
    config.scanner.iocs.extend(args.iocs);
    if let Some(o) = args.output {
        config.output.path = Some(o);
    }
    if let Some(s) = args.min_severity {
        config.scanner.min_severity = s;
    }
    config.scanner.accept_partial_iocs |= args.accept_partial_iocs;
    let path = config.output.path.as_deref();
    let out = ioclab_agent::sensor::output::Output::open(path)
        .with_context(|| format!("cannot open {} for writing", path.unwrap_or(std::path::Path::new("-")).display()))?;

    let control = Control::default();
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // a second Ctrl-C while stopping exits at once
        signal_hook::flag::register_conditional_shutdown(sig, 130, control.stop.clone())?;
        signal_hook::flag::register(sig, control.stop.clone())?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, control.reload.clone())?;

    let summary = sensor::run(config, out, control).context("ioclab agent")?;
    tracing::info!(
        "stopped: {} events read, {} written, {} lost ({} of them by the output)",
        summary.read,
        summary.written,
        summary.lost,
        summary.output_lost
    );
    if args.stats {
        eprintln!("{}", serde_json::to_string(&summary)?);
    }
    Ok(ExitCode::SUCCESS)
}
