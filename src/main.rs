//! `ioclab`: the lab appliance's command line.

mod commands;
mod install;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// ioclab — a SOC training lab that shows, for real and end to end, how
/// indicators of compromise travel:
/// sample → sandbox report → MISP event → IoC export → endpoint agent → detection.
#[derive(Parser)]
#[command(name = "ioclab", version, about, long_about = None, after_help = "\
Examples:
  sudo ioclab agent                          processes, network, files: JSON lines on stdout
  sudo ioclab agent -i iocs.json -o det.json write only the events that match an IoC
  ioclab replay -i iocs.json events.json.gz  test IoCs on a recorded log, no root needed
  ioclab ioc check iocs.json                 find the bad lines of an IoC file
  ioclab misp serve                          a MISP-compatible server for PyMISP, offline
  ioclab misp export -c config.toml -o iocs.json --reload-agent
                                             IoCs from MISP to the agent (misp-to-kunai's options)
  sudo ioclab sandbox run ./dropper.sh       detonate a sample, isolated; Cuckoo-shaped report
  sudo ioclab sandbox serve                  Cuckoo 2.0-compatible sandbox API on :8090
  sudo ioclab serve                          the appliance: web UI on http://127.0.0.1:8000
  ioclab users add-class --count 20          trainee accounts, a sheet of passwords
  sudo ioclab install --systemd              the appliance as a service (ioclab uninstall removes it)
  ioclab endpoints token create --name pc-07 enrol a trainee's machine (see `ioclab agent --help`)

Logs go to stderr; set IOCLAB_LOG=debug for more.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the eBPF endpoint sensor: Kunai-compatible JSON events, matched against IoCs.
    ///
    /// The agent loads eBPF programs into the kernel (run it as root, or with
    /// CAP_BPF and CAP_PERFMON) and writes one JSON event per line in Kunai's
    /// format: processes (execve, execve_script, clone, exit, exit_group),
    /// network (connect, dns_query, send_data), files (file_create, file_rename,
    /// file_unlink, read_config, write_config; read, write and write_close when
    /// switched on), code loading (mmap_exec, mprotect_exec, init_module,
    /// bpf_prog_load, bpf_socket_filter) and process interference (kill,
    /// ptrace, prctl), plus
    /// its own start, errors and event losses. `ioclab agent config
    /// --list-events` shows them with their switches. Given IoC files, it writes
    /// only the events that match them, with a `detection` section.
    ///
    /// Ctrl-C or SIGTERM flush and stop; SIGHUP reloads the IoC files without
    /// losing events.
    Agent(commands::agent::AgentArgs),
    /// Match recorded event logs (JSON lines, plain or .gz) against IoCs, without root.
    ///
    /// Runs the agent's IoC matcher over logs the agent (or Kunai) wrote and
    /// prints the matching events with their `detection` section: how to test
    /// IoCs before a session, on any machine.
    Replay(commands::replay::ReplayArgs),
    /// Work with IoC files (Kunai's format: one JSON object a line).
    Ioc(commands::ioc::IocArgs),
    /// MISP: an embedded MISP-compatible server, IoC export to the agent, warninglists.
    ///
    /// `ioclab misp serve` runs a MISP-compatible API (the subset PyMISP and
    /// misp-to-kunai use) on SQLite, so the lab works offline; `ioclab misp
    /// export` pulls IoCs from it or from a real MISP into the agent's IoC file.
    Misp(commands::misp::MispArgs),
    /// Sandbox: detonate Linux samples isolated, Cuckoo 2.0-compatible reports and API.
    ///
    /// `ioclab sandbox run FILE` detonates once (namespaces on this machine's
    /// kernel, a fake internet, the eBPF sensor) and prints what the sample
    /// did; `ioclab sandbox serve` queues submissions behind Cuckoo 2.0.7's REST
    /// API; `submit`, `status` and `report` are its clients (they also work
    /// against a real Cuckoo 2.0).
    Sandbox(commands::sandbox::SandboxArgs),
    /// Lab: scenarios that move one IoC from a sample to a detection, and the lab network.
    ///
    /// `ioclab lab list` shows the scenarios, `ioclab lab check` validates
    /// scenario files, `ioclab lab shell` opens a shell inside the lab
    /// network (the sandbox's fake internet: nothing leaves the machine).
    Lab(commands::lab::LabArgs),
    /// The appliance: agent, sandbox, MISP, lab engine and web UI in one process (`make run`).
    ///
    /// Prints the URLs to point a browser, PyMISP and Cuckoo clients at, the
    /// API keys, and the instructor's password on the first start. Without
    /// root or eBPF it serves in replay mode (recorded runs), and says so.
    Serve(commands::serve::ServeArgs),
    /// The appliance's accounts: instructors and trainees (`<data>/web.db`).
    ///
    /// `add`, `add-class --count 20` (prints a sheet of logins and passwords),
    /// `list`, `reset-password`, `token` (an API token for /api/), `remove`.
    Users(commands::users::UsersArgs),
    /// Install the appliance as a service: binary, scenarios, appliance.toml, systemd unit.
    Install(commands::install::InstallArgs),
    /// Remove what `ioclab install` installed (the data and an edited config only with --purge).
    Uninstall(commands::install::UninstallArgs),
    /// Remote endpoints: enrolment tokens for trainees' agents, the appliance's endpoint listener.
    ///
    /// `token create [--name N]` prints a token (once) for `ioclab agent
    /// --appliance URL --token T --fingerprint F` on a trainee machine;
    /// `token list`, `token revoke NAME`; `fingerprint` prints what agents
    /// pin; `serve` runs the endpoint listener alone (`ioclab serve` runs it too).
    Endpoints(commands::endpoints::EndpointsArgs),
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("IOCLAB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,aya=warn,aya_obj=warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();

    let cli = Cli::parse();
    let result = match cli.command {
        Command::Agent(args) => commands::agent::run(args),
        Command::Replay(args) => commands::replay::run(args),
        Command::Ioc(args) => commands::ioc::run(args),
        Command::Misp(args) => commands::misp::run(args),
        Command::Sandbox(args) => commands::sandbox::run(args),
        Command::Lab(args) => commands::lab::run(args),
        Command::Serve(args) => commands::serve::run(args),
        Command::Users(args) => commands::users::run(args),
        Command::Install(args) => commands::install::install(args),
        Command::Uninstall(args) => commands::install::uninstall(args),
        Command::Endpoints(args) => commands::endpoints::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ioclab: {e:#}");
            ExitCode::FAILURE
        }
    }
}
