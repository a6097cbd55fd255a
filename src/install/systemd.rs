//! The init system: `systemctl` is called only when installing onto the
//! running system and systemd is its init (`/run/systemd/system` exists, as
//! sd_booted(3) checks); a staging root or a container without systemd gets
//! the files only, and the command line says how to start the service.

use std::path::Path;
use std::process::Command;

use super::{InstallError, Layout, UNIT_NAME};

/// Whether and how to talk to systemd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Systemd {
    /// systemd runs this machine and the install targets it.
    Running,
    /// Not systemd, or a staging root: never call `systemctl`.
    Absent,
}

impl Systemd {
    /// Decides for `layout`.
    pub fn detect(layout: &Layout) -> Systemd {
        if layout.is_live() && Path::new("/run/systemd/system").is_dir() {
            Systemd::Running
        } else {
            Systemd::Absent
        }
    }

    /// Whether `systemctl` is to be called.
    pub fn runs(&self) -> bool {
        *self == Systemd::Running
    }

    /// After the unit is written: reload if it changed, enable and start,
    /// restart if a file the running service uses changed.
    pub fn start(&self, reload: bool, restart: bool) -> Result<(), InstallError> {
        if reload {
            self.reload()?;
        }
        systemctl(&["enable", "--now", UNIT_NAME])?;
        if restart {
            systemctl(&["restart", UNIT_NAME])?;
        }
        Ok(())
    }

    /// Before the unit is removed: stop and disable it.
    pub fn stop(&self) -> Result<(), InstallError> {
        systemctl(&["disable", "--now", UNIT_NAME])
    }

    /// `systemctl daemon-reload`.
    pub fn reload(&self) -> Result<(), InstallError> {
        systemctl(&["daemon-reload"])
    }
}

fn systemctl(args: &[&str]) -> Result<(), InstallError> {
    let joined = args.join(" ");
    let out = Command::new("systemctl").args(args).output().map_err(|source| InstallError::Io {
        what: "running systemctl for",
        path: UNIT_NAME.into(),
        source,
    })?;
    if out.status.success() {
        return Ok(());
    }
    Err(InstallError::Systemctl {
        args: joined,
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}
