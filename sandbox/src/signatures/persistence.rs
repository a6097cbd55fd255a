//! Persistence and configuration tampering: cron, systemd, shell start-up
//! files, the dynamic loader's preload list, /etc and ~/.ssh.

use super::{writes_matching, Evidence, Hit, Meta, Rule};

pub(super) const RULES: &[&dyn Rule] = &[&Cron, &Systemd, &ShellProfile, &LdPreload, &EtcOrSsh];

fn is_cron(p: &str) -> bool {
    p.starts_with("/etc/cron") || p.starts_with("/var/spool/cron/") || p == "/etc/anacrontab"
}

fn is_systemd_or_init(p: &str) -> bool {
    ["/etc/systemd/", "/lib/systemd/system/", "/usr/lib/systemd/system/", "/etc/init.d/", "/etc/rc.local", "/etc/init/"]
        .iter()
        .any(|d| p.starts_with(d))
        || p.contains("/.config/systemd/user/")
}

fn is_shell_profile(p: &str) -> bool {
    let base = super::basename(p);
    p.starts_with("/etc/profile")
        || p == "/etc/bash.bashrc"
        || ((p.starts_with("/home/") || p.starts_with("/root/"))
            && matches!(base, ".bashrc" | ".profile" | ".bash_profile" | ".bash_login" | ".zshrc" | ".bash_logout"))
}

fn is_ssh(p: &str) -> bool {
    p.contains("/.ssh/") || p.starts_with("/etc/ssh/")
}

/// Writes a cron table.
pub struct Cron;

impl Rule for Cron {
    fn meta(&self) -> Meta {
        Meta {
            name: "persistence_cron",
            description: "Installs a cron job (writes a crontab or /etc/cron.*)",
            severity: 4,
            ttp: &[("T1053.003", "Cron", "Adversaries may abuse cron to run their code at start-up or on a schedule.")],
        }
    }
    fn check(&self, ev: &Evidence<'_>) -> Vec<Hit> {
        writes_matching(ev, is_cron)
    }
}

/// Writes a systemd unit or an init script.
pub struct Systemd;

impl Rule for Systemd {
    fn meta(&self) -> Meta {
        Meta {
            name: "persistence_systemd",
            description: "Installs a systemd unit or an init script",
            severity: 4,
            ttp: &[(
                "T1543.002",
                "Systemd Service",
                "Adversaries may create or modify systemd services to run their code.",
            )],
        }
    }
    fn check(&self, ev: &Evidence<'_>) -> Vec<Hit> {
        writes_matching(ev, is_systemd_or_init)
    }
}

/// Writes a shell start-up file.
pub struct ShellProfile;

impl Rule for ShellProfile {
    fn meta(&self) -> Meta {
        Meta {
            name: "persistence_shell_profile",
            description: "Modifies a shell start-up file (.bashrc, .profile, /etc/profile.d)",
            severity: 3,
            ttp: &[(
                "T1546.004",
                "Unix Shell Configuration Modification",
                "Adversaries may run their code when a shell starts.",
            )],
        }
    }
    fn check(&self, ev: &Evidence<'_>) -> Vec<Hit> {
        writes_matching(ev, is_shell_profile)
    }
}

/// Writes /etc/ld.so.preload: every program then loads the attacker's library.
pub struct LdPreload;

impl Rule for LdPreload {
    fn meta(&self) -> Meta {
        Meta {
            name: "ld_preload_hijack",
            description: "Writes /etc/ld.so.preload (a library loaded into every program)",
            severity: 5,
            ttp: &[(
                "T1574.006",
                "Dynamic Linker Hijacking",
                "Adversaries may make the dynamic linker load their library.",
            )],
        }
    }
    fn check(&self, ev: &Evidence<'_>) -> Vec<Hit> {
        writes_matching(ev, |p| p == "/etc/ld.so.preload")
    }
}

/// Writes under /etc or an ~/.ssh folder (the cases above have their own signature).
pub struct EtcOrSsh;

impl Rule for EtcOrSsh {
    fn meta(&self) -> Meta {
        Meta {
            name: "modifies_system_config",
            description: "Writes a file under /etc or ~/.ssh (system configuration, accounts, SSH keys)",
            severity: 3,
            ttp: &[
                ("T1098.004", "SSH Authorized Keys", "Adversaries may add their SSH key to keep access."),
                (
                    "T1222.002",
                    "Linux and Mac File and Directory Permissions Modification",
                    "Adversaries may change system files to keep access or evade defences.",
                ),
            ],
        }
    }
    fn check(&self, ev: &Evidence<'_>) -> Vec<Hit> {
        writes_matching(ev, |p| {
            (p.starts_with("/etc/") || is_ssh(p))
                && !is_cron(p)
                && !is_systemd_or_init(p)
                && !is_shell_profile(p)
                && p != "/etc/ld.so.preload"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::Task;
    use super::*;

    #[test]
    fn cron() {
        let t =
            Task::new().file(5, "write_config", "/etc/crontab").file(5, "file_create", "/var/spool/cron/crontabs/root");
        assert_eq!(t.marked(&Cron), vec![0, 1]);
        let t = Task::new().rename(5, "/tmp/x", "/etc/cron.d/job");
        assert_eq!(t.marked(&Cron), vec![0]);
        let t = Task::new().file(5, "read_config", "/etc/crontab").file(5, "file_create", "/tmp/crontab");
        assert!(t.check(&Cron).is_empty());
    }

    #[test]
    fn systemd() {
        let t = Task::new().file(5, "file_create", "/etc/systemd/system/evil.service");
        assert_eq!(t.marked(&Systemd), vec![0]);
        let t = Task::new().file(5, "write_config", "/root/.config/systemd/user/x.service");
        assert_eq!(t.marked(&Systemd), vec![0]);
        let t = Task::new().file(5, "read_config", "/etc/systemd/system.conf").file(5, "file_create", "/tmp/x.service");
        assert!(t.check(&Systemd).is_empty());
    }

    #[test]
    fn shell_profile() {
        let t = Task::new().file(5, "write", "/home/user/.bashrc").file(5, "file_create", "/etc/profile.d/x.sh");
        assert_eq!(t.marked(&ShellProfile), vec![0, 1]);
        let t = Task::new().file(5, "read_config", "/home/user/.bashrc").file(5, "file_create", "/tmp/.bashrc");
        assert!(t.check(&ShellProfile).is_empty());
    }

    #[test]
    fn ld_preload() {
        let t = Task::new().file(5, "write_config", "/etc/ld.so.preload");
        assert_eq!(t.marked(&LdPreload), vec![0]);
        assert!(t.check(&EtcOrSsh).is_empty(), "counted once, by the specific signature");
        let t = Task::new().file(5, "read_config", "/etc/ld.so.preload");
        assert!(t.check(&LdPreload).is_empty());
    }

    #[test]
    fn etc_or_ssh() {
        let t = Task::new()
            .file(5, "write_config", "/etc/passwd")
            .file(5, "file_create", "/root/.ssh/authorized_keys")
            .file(5, "write", "/home/u/.ssh/config");
        assert_eq!(t.marked(&EtcOrSsh), vec![0, 1, 2]);
        let t = Task::new().file(5, "read_config", "/etc/passwd").file(5, "file_create", "/tmp/etc/passwd").file(
            5,
            "write_config",
            "/etc/crontab",
        );
        assert!(t.check(&EtcOrSsh).is_empty());
    }
}
