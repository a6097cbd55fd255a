//! `ioclab install` and `ioclab uninstall`: the appliance as a service.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::install::{self, systemd::Systemd, InstallPlan, Layout, UninstallPlan, CONFIG_PATH, UNIT_NAME};

const INSTALL_EXAMPLES: &str = "\
Copies this binary to PREFIX/bin/ioclab and the scenario catalogue to
PREFIX/share/ioclab/scenarios, writes /etc/ioclab/appliance.toml if there is
none (an existing one is never overwritten), creates the data directory, and
with --systemd writes /etc/systemd/system/ioclab.service and, where systemd
runs, enables and starts it. Running it again changes only what differs.

Examples:
  sudo ioclab install --systemd                          the service, web UI on 127.0.0.1:8000
  sudo ioclab install --systemd --listen 0.0.0.0:8000    reachable from other machines (a VM's host)
  sudo ioclab install --prefix /opt/ioclab --data /srv/ioclab
  ioclab install --systemd --root /tmp/stage             everything under /tmp/stage, systemd untouched";

const UNINSTALL_EXAMPLES: &str = "\
Stops and disables the service where systemd runs, then removes the unit, the
binary and the catalogue. The configuration goes only if unchanged since
`ioclab install` wrote it, the data directory (MISP store, runs, accounts)
only with --purge.

Examples:
  sudo ioclab uninstall                 keeps the data and an edited appliance.toml
  sudo ioclab uninstall --purge         removes them too";

/// Where the files go (shared by install and uninstall).
#[derive(Args)]
pub struct LayoutArgs {
    /// Prefix of bin/ioclab and share/ioclab/.
    #[arg(long, value_name = "DIR", default_value = "/usr/local")]
    prefix: PathBuf,
    /// The data directory (MISP store, runs, accounts).
    #[arg(long, value_name = "DIR", default_value = ioclab_lab::data_dir::DEFAULT_DATA_DIR)]
    data: PathBuf,
    /// Install under this folder instead of / (staging, tests, packaging); never calls systemctl.
    #[arg(long, env = "IOCLAB_INSTALL_ROOT", value_name = "DIR", default_value = "/")]
    root: PathBuf,
}

impl LayoutArgs {
    fn layout(self) -> anyhow::Result<Layout> {
        Ok(Layout::new(self.root, self.prefix, self.data)?)
    }
}

/// Arguments of `ioclab install`.
#[derive(Args)]
#[command(after_help = INSTALL_EXAMPLES)]
pub struct InstallArgs {
    #[command(flatten)]
    layout: LayoutArgs,
    /// Also install the systemd unit (and start it where systemd runs).
    #[arg(long)]
    systemd: bool,
    /// Where the web UI listens, written into a new appliance.toml.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// The scenario catalogue to install.
    #[arg(long, value_name = "DIR", default_value = "lab-scenarios")]
    scenarios: PathBuf,
}

/// Arguments of `ioclab uninstall`.
#[derive(Args)]
#[command(after_help = UNINSTALL_EXAMPLES)]
pub struct UninstallArgs {
    #[command(flatten)]
    layout: LayoutArgs,
    /// Also remove the data directory and an edited appliance.toml.
    #[arg(long)]
    purge: bool,
}

fn print(steps: &[install::Step]) {
    for s in steps {
        println!("{s}");
    }
}

/// Runs `ioclab install`.
pub fn install(args: InstallArgs) -> anyhow::Result<ExitCode> {
    let layout = args.layout.layout()?;
    let binary = std::env::current_exe().context("finding the running binary to copy")?;
    let init = Systemd::detect(&layout);
    let plan = InstallPlan { layout, binary, scenarios: args.scenarios, listen: args.listen, systemd: args.systemd };
    let steps = install::install(&plan, &init)?;
    print(&steps);
    let l = &plan.layout;
    if steps.iter().any(|s| s.what == "config" && s.outcome == install::Outcome::KeptEdited) && args.listen.is_some() {
        println!("note: {CONFIG_PATH} was edited, so --listen was not written into it");
    }
    if !plan.systemd {
        println!("run it: sudo {} serve --config {CONFIG_PATH}", l.binary().display());
    } else if init.runs() {
        println!("{UNIT_NAME}: enabled and running (systemctl status ioclab; journalctl -u ioclab)");
    } else if l.is_live() {
        println!(
            "systemd is not running here (no /run/systemd/system): the unit is installed for a systemd boot;\n\
             now start it by hand: sudo {} serve --config {CONFIG_PATH}",
            l.binary().display()
        );
    } else {
        println!(
            "staged under {}: systemd not touched (on the target: systemctl daemon-reload; systemctl enable --now ioclab)",
            l.root.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `ioclab uninstall`.
pub fn uninstall(args: UninstallArgs) -> anyhow::Result<ExitCode> {
    let layout = args.layout.layout()?;
    let init = Systemd::detect(&layout);
    let steps = install::uninstall(&UninstallPlan { layout, purge: args.purge }, &init)?;
    print(&steps);
    Ok(ExitCode::SUCCESS)
}
