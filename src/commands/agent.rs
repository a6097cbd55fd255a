//! `ioclab agent`: run the sensor, or show its configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use ioclab_agent::config::Config;
use ioclab_agent::events::EventKind;
use ioclab_agent::remote::pin::Fingerprint;
use ioclab_agent::sensor::output::Output;
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
  sudo ioclab agent --appliance https://10.0.0.1:8443 --token T --fingerprint FP
                                                     a trainee's machine reporting to the class appliance
  sudo kill -HUP $(pidof ioclab)                     reload the IoC files, reopen -o FILE
  sudo ioclab agent | head -1                        the start event, then the agent stops

Events are switched on and off in the config file (events.<name>.enable);
ioclab agent config --list-events shows them all. File events are limited
to max_eps_fs per process and second (an `error` event says when).

On SIGHUP the IoC files are read again, one load at a time: an `ioc_reload`
event says the new set is in use; a load with bad lines or no IoC is refused
with an `error` event and the previous IoCs stay (--accept-partial-iocs takes
it anyway). Events the output cannot take (full disk) are counted and
reported by an `event_loss` event once writing works again.

With --appliance, events are sealed in batches in the spool (--spool) and
sent over TLS to the appliance, which must present the certificate of
--fingerprint; a batch leaves the spool only once the appliance has stored
it. While the appliance is away the spool grows up to --spool-max-mib; then
events are dropped, counted, and reported by an `event_loss` event.
Every event is sent (detections marked). IoC sets the instructor pushes
(`ioclab endpoints push`) are checked, kept in pushed-iocs.json beside the
spool (a restarted agent matches them at once), loaded with the -i files,
and reported back to the appliance (loaded, or refused and why)."
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
    #[command(flatten)]
    remote: RemoteArgs,
    /// At exit, print counters (events read, written, lost; CPU time; peak memory) as JSON on stderr.
    #[arg(long)]
    stats: bool,
}

/// A remote endpoint: events go to a class appliance instead of stdout or a file.
#[derive(Args)]
#[group(id = "remote", multiple = true, requires_all = ["appliance", "token", "fingerprint"])]
struct RemoteArgs {
    /// Send the events to this appliance's endpoint listener (https://HOST:8443), spooled on disk until acknowledged.
    #[arg(long, value_name = "URL", conflicts_with = "output")]
    appliance: Option<ioclab_agent::remote::ship::Url>,
    /// The enrolment token (`ioclab endpoints token create` on the appliance).
    #[arg(long, env = "IOCLAB_ENDPOINT_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The appliance certificate's SHA-256 fingerprint, as `ioclab serve` prints it: no other certificate is accepted.
    #[arg(long, value_name = "FP")]
    fingerprint: Option<Fingerprint>,
    /// This endpoint's name on the appliance (default: the host name).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// The spool: batches wait here until the appliance acknowledges them.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/ioclab/spool")]
    spool: PathBuf,
    /// The spool's bound in MiB; beyond it events are dropped, counted and reported (`event_loss`).
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    spool_max_mib: u64,
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
    let mut control = Control::default();
    let remote = match args.remote.appliance.clone() {
        Some(url) => {
            // what the sensor's "writing ... to" message names: the spool replaces -o and output.path
            config.output.path = Some(args.remote.spool.clone());
            // the appliance wants the whole stream, detections marked
            config.scanner.write_unmatched = true;
            Some(remote::start(url, args.remote, &control)?)
        }
        None => None,
    };
    control.pushed_iocs = remote.as_ref().map(|r| r.pushed.clone());
    let out = match &remote {
        Some(r) => Output::from(Box::new(r.spool.writer()) as Box<dyn std::io::Write + Send>),
        None => {
            let path = config.output.path.as_deref();
            Output::open(path).with_context(|| {
                format!("cannot open {} for writing", path.unwrap_or(std::path::Path::new("-")).display())
            })?
        }
    };

    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // a second Ctrl-C while stopping exits at once
        signal_hook::flag::register_conditional_shutdown(sig, 130, control.stop.clone())?;
        signal_hook::flag::register(sig, control.stop.clone())?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, control.reload.clone())?;

    let reloads = control.reloads.clone();
    let summary = sensor::run(config, out, control).context("ioclab agent");
    // a push being applied gets its answer now, even if the sensor never started its reloader
    reloads.stop();
    if let Some(r) = remote {
        r.stop();
    }
    let summary = summary?;
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

/// The remote half of the agent: the spool and the thread shipping it.
mod remote {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use anyhow::Context;
    use ioclab_agent::remote::orders::{self, OrderClient, PushedIocs, Reload};
    use ioclab_agent::remote::ship::{Appliance, Shipper};
    use ioclab_agent::remote::spool::{Spool, SpoolLimits};
    use ioclab_agent::sensor::Control;

    use super::RemoteArgs;

    /// How long a stopping agent waits for the spool to empty; what is left is sent at the next start.
    const DRAIN: Duration = Duration::from_secs(5);
    /// How long an IoC push waits for the sensor's reload (it is the
    /// sensor's own IoC load: a large set takes seconds on a busy machine).
    const RELOAD_WAIT: Duration = Duration::from_secs(120);

    pub(super) struct Remote {
        pub(super) spool: Spool,
        stop: Arc<AtomicBool>,
        thread: std::thread::JoinHandle<()>,
        orders: std::thread::JoinHandle<()>,
        /// The pushed IoC file, for the sensor.
        pub(super) pushed: std::path::PathBuf,
    }

    /// The sensor's reload, as the order thread applies a push: ask, wait for the load that read the new file.
    fn reload_through(control: &Control) -> Arc<Reload> {
        let reloads = control.reloads.clone();
        Arc::new(move || {
            let ticket = reloads.ask();
            match reloads.wait(ticket, RELOAD_WAIT) {
                Some(r) if r.applied => Ok(r.message),
                Some(r) => Err(r.message),
                None => Err(format!(
                    "the agent did not reload the IoCs (stopping, or more than {} s)",
                    RELOAD_WAIT.as_secs()
                )),
            }
        })
    }

    fn host_name() -> String {
        std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default()
    }

    /// Starts shipping the spool and taking orders; sets `control.pushed_iocs` for the sensor.
    pub(super) fn start(
        url: ioclab_agent::remote::ship::Url,
        args: RemoteArgs,
        control: &Control,
    ) -> anyhow::Result<Remote> {
        let appliance = Appliance {
            url,
            token: args.token.context("--appliance needs --token")?,
            fingerprint: args.fingerprint.context("--appliance needs --fingerprint")?,
        };
        let name = args.name.unwrap_or_else(host_name);
        anyhow::ensure!(!name.is_empty(), "no host name: set --name");
        let limits =
            SpoolLimits { max_bytes: args.spool_max_mib.saturating_mul(1024 * 1024), ..SpoolLimits::default() };
        let spool = Spool::open(&args.spool, &name, limits)?;
        let shipper = Shipper::new(&appliance)?;
        let stop = Arc::new(AtomicBool::new(false));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let thread = {
            let (spool, stop) = (spool.clone(), stop.clone());
            std::thread::Builder::new()
                .name("ioclab-ship".into())
                .spawn(move || rt.block_on(shipper.run(&spool, &stop)))?
        };
        let pushed = PushedIocs::beside(&args.spool);
        let orders = {
            let client = OrderClient::new(&appliance, &name)?;
            let (pushed, stop, reload) = (pushed.clone(), stop.clone(), reload_through(control));
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            std::thread::Builder::new()
                .name("ioclab-orders".into())
                .spawn(move || rt.block_on(orders::run(&client, &pushed, reload, &stop)))?
        };
        tracing::info!(
            "sending events to {} as {name} (spool {}); IoCs it pushes go to {}",
            appliance.url,
            args.spool.display(),
            pushed.path().display()
        );
        Ok(Remote { spool, stop, thread, orders, pushed: pushed.path().to_path_buf() })
    }

    impl Remote {
        /// Seals the last batch and gives the shipper a moment to send it.
        pub(super) fn stop(self) {
            if let Err(e) = self.spool.seal_now() {
                tracing::error!("{e}");
            }
            let until = Instant::now() + DRAIN;
            while !self.spool.is_empty() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(50));
            }
            let (n, bytes) = self.spool.pending();
            if n > 0 {
                tracing::warn!("{n} batches ({bytes} bytes) stay in the spool: sent at the next start");
            }
            self.stop.store(true, Ordering::Relaxed);
            let _ = self.thread.join();
            let _ = self.orders.join();
        }
    }
}
