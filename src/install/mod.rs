//! `ioclab install` and `ioclab uninstall`: the binary, the scenario
//! catalogue, `/etc/ioclab/appliance.toml`, the data directory and the
//! systemd unit, laid out under a root (`/`, or a staging folder for tests
//! and packaging). Every step says what it found and did, so a second run
//! reports "already installed" or "already absent" and changes nothing.

pub mod config;
pub mod files;
pub mod systemd;
pub mod unit;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};

/// Where the files go. Paths are as seen on the installed machine; `root`
/// prefixes them all on disk (`/` normally).
#[derive(Debug, Clone)]
pub struct Layout {
    /// The staging root (`/` for a real install).
    pub root: PathBuf,
    /// The prefix of `bin/ioclab` and `share/ioclab/`.
    pub prefix: PathBuf,
    /// The lab's data directory (state).
    pub data: PathBuf,
}

/// The systemd unit's name.
pub const UNIT_NAME: &str = "ioclab.service";
/// The configuration file, as seen on the installed machine.
pub const CONFIG_PATH: &str = "/etc/ioclab/appliance.toml";
/// Where units written by an administrator live.
pub const UNIT_DIR: &str = "/etc/systemd/system";

impl Layout {
    /// Checks that the paths are absolute and name no `..`.
    pub fn new(root: PathBuf, prefix: PathBuf, data: PathBuf) -> Result<Layout, InstallError> {
        for (what, p) in [("--root", &root), ("--prefix", &prefix), ("--data", &data)] {
            if !p.is_absolute() || p.components().any(|c| c == Component::ParentDir) {
                return Err(InstallError::BadPath { what, path: p.clone() });
            }
        }
        if data == Path::new("/") {
            return Err(InstallError::BadPath { what: "--data", path: data });
        }
        Ok(Layout { root, prefix, data })
    }

    /// Whether this installs onto the running system (not a staging root).
    pub fn is_live(&self) -> bool {
        self.root == Path::new("/")
    }

    /// `path` (as seen on the installed machine) on disk, under the root.
    pub fn on_disk(&self, path: &Path) -> PathBuf {
        self.root.join(path.strip_prefix("/").unwrap_or(path))
    }

    /// The installed binary, as seen on the installed machine.
    pub fn binary(&self) -> PathBuf {
        self.prefix.join("bin/ioclab")
    }

    /// The installed scenario catalogue, as seen on the installed machine.
    pub fn scenarios(&self) -> PathBuf {
        self.share().join("scenarios")
    }

    fn share(&self) -> PathBuf {
        self.prefix.join("share/ioclab")
    }

    /// The unit file, as seen on the installed machine.
    pub fn unit(&self) -> PathBuf {
        Path::new(UNIT_DIR).join(UNIT_NAME)
    }
}

/// What `ioclab install` is given.
#[derive(Debug, Clone)]
pub struct InstallPlan {
    /// Where.
    pub layout: Layout,
    /// The binary to copy (the running one).
    pub binary: PathBuf,
    /// The scenario catalogue to copy.
    pub scenarios: PathBuf,
    /// Where the web UI listens, written into a new configuration file.
    pub listen: Option<SocketAddr>,
    /// Also write and start the systemd unit.
    pub systemd: bool,
}

/// What `ioclab uninstall` is given.
#[derive(Debug, Clone)]
pub struct UninstallPlan {
    /// Where.
    pub layout: Layout,
    /// Also remove an edited configuration and the data directory.
    pub purge: bool,
}

/// What one step found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It was not there: installed now.
    Created,
    /// It was there, different: replaced.
    Updated,
    /// It was there, the same: nothing to do.
    AlreadyInstalled,
    /// An edited configuration file: left as it is.
    KeptEdited,
    /// It was there: removed now.
    Removed,
    /// It was not there: nothing to remove.
    AlreadyAbsent,
    /// Left on purpose (the data without --purge).
    Kept,
}

impl Outcome {
    /// Whether the step changed something on disk.
    pub fn changed(self) -> bool {
        matches!(self, Outcome::Created | Outcome::Updated | Outcome::Removed)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Created => "installed",
            Outcome::Updated => "updated",
            Outcome::AlreadyInstalled => "already installed",
            Outcome::KeptEdited => "kept (edited by hand; --purge removes it)",
            Outcome::Removed => "removed",
            Outcome::AlreadyAbsent => "already absent",
            Outcome::Kept => "kept (--purge removes it)",
        })
    }
}

/// One line of the report: what, where, and the outcome.
#[derive(Debug, Clone)]
pub struct Step {
    /// What the file is ("binary", "unit", ...).
    pub what: &'static str,
    /// Its path as seen on the installed machine.
    pub path: PathBuf,
    /// What happened.
    pub outcome: Outcome,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<10} {:<40} {}", self.what, self.path.display(), self.outcome)
    }
}

/// Why an install or uninstall stopped.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// A path option that cannot be used.
    #[error("{what} {path:?}: must be an absolute path without `..` (and --data not /)")]
    BadPath {
        /// The option.
        what: &'static str,
        /// Its value.
        path: PathBuf,
    },
    /// The scenario catalogue to copy is missing.
    #[error(
        "no scenario catalogue at {0}: run from the repository's checkout or pass --scenarios DIR \
         (the folder holding one folder per scenario)"
    )]
    NoScenarios(PathBuf),
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path (on disk).
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `--purge` of a folder that is not the lab's alone.
    #[error("uninstall --purge: refusing to delete {0} (a system folder, not a data directory of its own)")]
    PurgeRefused(PathBuf),
    /// `systemctl` failed.
    #[error("`systemctl {args}` failed ({status}): {stderr}")]
    Systemctl {
        /// Its arguments.
        args: String,
        /// Its exit status.
        status: String,
        /// What it said.
        stderr: String,
    },
}

/// Installs; returns the steps in order. `systemctl` runs only on a live
/// root where systemd is the init (see [`systemd::Systemd`]).
pub fn install(plan: &InstallPlan, init: &systemd::Systemd) -> Result<Vec<Step>, InstallError> {
    let l = &plan.layout;
    if !plan.scenarios.is_dir() {
        return Err(InstallError::NoScenarios(plan.scenarios.clone()));
    }
    let mut steps = Vec::new();
    let binary = files::install_file(&plan.binary, &l.on_disk(&l.binary()), 0o755)?;
    steps.push(Step { what: "binary", path: l.binary(), outcome: binary });
    let scenarios = files::install_tree(&plan.scenarios, &l.on_disk(&l.scenarios()))?;
    steps.push(Step { what: "scenarios", path: l.scenarios(), outcome: scenarios });
    let cfg = config::install(&l.on_disk(Path::new(CONFIG_PATH)), &config::initial(l, plan.listen))?;
    steps.push(Step { what: "config", path: CONFIG_PATH.into(), outcome: cfg });
    let data = files::create_dir(&l.on_disk(&l.data), 0o750)?;
    steps.push(Step { what: "data", path: l.data.clone(), outcome: data });
    if plan.systemd {
        let unit = files::write_file(&l.on_disk(&l.unit()), unit::text(l).as_bytes(), 0o644)?;
        steps.push(Step { what: "unit", path: l.unit(), outcome: unit });
        if init.runs() {
            let restart = [binary, scenarios, unit].contains(&Outcome::Updated);
            init.start(unit.changed(), restart)?;
        }
    }
    Ok(steps)
}

/// Uninstalls; returns the steps in order.
pub fn uninstall(plan: &UninstallPlan, init: &systemd::Systemd) -> Result<Vec<Step>, InstallError> {
    let l = &plan.layout;
    if plan.purge && !purgeable(&l.data) {
        return Err(InstallError::PurgeRefused(l.data.clone()));
    }
    let mut steps = Vec::new();
    let unit_path = l.on_disk(&l.unit());
    if init.runs() && unit_path.exists() {
        init.stop()?;
    }
    let unit = files::remove_file(&unit_path)?;
    if init.runs() && unit.changed() {
        init.reload()?;
    }
    steps.push(Step { what: "unit", path: l.unit(), outcome: unit });
    steps.push(Step { what: "binary", path: l.binary(), outcome: files::remove_file(&l.on_disk(&l.binary()))? });
    let scenarios = files::remove_tree(&l.on_disk(&l.scenarios()))?;
    files::remove_empty_dir(&l.on_disk(&l.share()))?;
    steps.push(Step { what: "scenarios", path: l.scenarios(), outcome: scenarios });
    let cfg_path = l.on_disk(Path::new(CONFIG_PATH));
    let cfg = config::uninstall(&cfg_path, plan.purge)?;
    files::remove_empty_dir(cfg_path.parent().expect("a file in /etc/ioclab"))?;
    steps.push(Step { what: "config", path: CONFIG_PATH.into(), outcome: cfg });
    let data = if plan.purge { files::remove_tree(&l.on_disk(&l.data))? } else { Outcome::Kept };
    let data = if data == Outcome::Kept && !l.on_disk(&l.data).exists() { Outcome::AlreadyAbsent } else { data };
    steps.push(Step { what: "data", path: l.data.clone(), outcome: data });
    Ok(steps)
}

/// Folders `--purge` never deletes, whatever `--data` says: a typo must not wipe a system.
const NEVER_PURGED: &[&str] =
    &["/etc", "/usr", "/usr/local", "/var", "/var/lib", "/var/log", "/home", "/root", "/srv", "/opt", "/tmp", "/boot"];

/// Whether `data` may be deleted whole: two levels deep at least, and not a system folder.
fn purgeable(data: &Path) -> bool {
    data.components().count() >= 3 && !NEVER_PURGED.iter().any(|p| data == Path::new(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_deletes_a_data_folder_of_its_own_never_a_system_one() {
        assert!(purgeable(Path::new("/var/lib/ioclab")));
        assert!(purgeable(Path::new("/srv/ioclab")));
        for p in ["/var", "/var/lib", "/home", "/usr/local", "/data"] {
            assert!(!purgeable(Path::new(p)), "{p}");
        }
    }

    #[test]
    fn paths_must_be_absolute_and_data_not_the_root() {
        let ok = |r: &str, p: &str, d: &str| Layout::new(r.into(), p.into(), d.into()).is_ok();
        assert!(ok("/", "/usr/local", "/var/lib/ioclab"));
        assert!(!ok("stage", "/usr/local", "/var/lib/ioclab"));
        assert!(!ok("/", "usr/local", "/var/lib/ioclab"));
        assert!(!ok("/", "/usr/local", "/var/lib/../.."));
        assert!(!ok("/", "/usr/local", "/"));
    }

    #[test]
    fn a_staging_root_prefixes_every_path() {
        let l = Layout::new("/tmp/stage".into(), "/usr/local".into(), "/var/lib/ioclab".into()).unwrap();
        assert_eq!(l.on_disk(&l.binary()), Path::new("/tmp/stage/usr/local/bin/ioclab"));
        assert_eq!(l.on_disk(&l.unit()), Path::new("/tmp/stage/etc/systemd/system/ioclab.service"));
        assert!(!l.is_live());
        let live = Layout::new("/".into(), "/opt/ioclab".into(), "/srv/lab".into()).unwrap();
        assert_eq!(live.on_disk(&live.scenarios()), Path::new("/opt/ioclab/share/ioclab/scenarios"));
        assert!(live.is_live());
    }
}
