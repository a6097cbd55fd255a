//! The systemd unit of `ioclab serve`. The service runs as root, but only
//! with the capabilities below in its bounding set: each one names the code
//! that needs it. `tests/install.rs` starts the appliance and detonates a
//! sample under exactly this set.

use std::fmt::Write;

use super::{Layout, CONFIG_PATH};

/// The capabilities the appliance keeps, and why.
pub const CAPABILITIES: &[(&str, &str)] = &[
    (
        "CAP_BPF",
        "load the sensor's eBPF programs and maps (agent/src/bpf; CAP_SYS_ADMIN implies \
         it, named so neither the kernel nor the agent's check relies on that fallback)",
    ),
    ("CAP_PERFMON", "attach them to tracepoints and let them read kernel memory (idem)"),
    (
        "CAP_SYS_ADMIN",
        "the sandbox's and the lab network's namespaces (unshare, setns), their mounts \
         (tmpfs, bind, pivot_root) and the sandbox's hostname",
    ),
    ("CAP_NET_ADMIN", "`ip` sets up the fake internet's links, addresses and routes"),
    (
        "CAP_NET_RAW",
        "the fake internet's packet socket on its loopback sees UDP datagrams and SYNs to ports without a sink",
    ),
    ("CAP_NET_BIND_SERVICE", "the fake internet's DNS (53) and sinks (21, 22, 25, 80, 443) in its namespace"),
    ("CAP_SETUID", "samples run as the sandbox's own unprivileged user (setresuid)"),
    ("CAP_SETGID", "... and group (setresgid, setgroups)"),
    ("CAP_CHOWN", "hand the sample and its home to that user"),
    (
        "CAP_KILL",
        "kill a sample's processes, which run as that user, one by one where the \
         kernel has no cgroup.kill (before 5.14)",
    ),
    (
        "CAP_DAC_OVERRIDE",
        "read what a sample wrote with its own permissions (dropped files) and delete its \
         home afterwards",
    ),
    (
        "CAP_SYS_PTRACE",
        "the agent reads /proc/PID/exe, fd and root of every user's processes to \
         hash what they run and the scripts they open",
    ),
];

/// The unit's text for `layout`.
pub fn text(layout: &Layout) -> String {
    let binary = layout.binary();
    let binary = binary.display();
    let data = layout.data.display();
    let mut caps = String::new();
    for (cap, why) in CAPABILITIES {
        let _ = writeln!(caps, "#   {cap}: {why}");
    }
    let set: Vec<&str> = CAPABILITIES.iter().map(|(c, _)| *c).collect();
    // StateDirectory= only names folders under /var/lib; another --data is created by install
    let state = match layout.data.strip_prefix("/var/lib") {
        Ok(rel) if !rel.as_os_str().is_empty() => {
            format!("StateDirectory={}\nStateDirectoryMode=0750\n", rel.display())
        }
        _ => format!("# --data {data} is not under /var/lib: `ioclab install` created it\n"),
    };
    format!(
        "\
# Written by `ioclab install --systemd`; `ioclab uninstall` removes it.
# Settings: {CONFIG_PATH}. Logs: journalctl -u ioclab.
[Unit]
Description=ioclab appliance: lab engine, endpoint agent, sandbox, MISP and web UI
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart={binary} serve --config {CONFIG_PATH}
Restart=on-failure
RestartSec=2s
# SIGTERM stops the runs, then the lab; give them time
TimeoutStopSec=30s
WorkingDirectory={data}
{state}UMask=0027
# BPF maps are charged to RLIMIT_MEMLOCK before Linux 5.11: systemd lifts it,
# so the service needs no CAP_SYS_RESOURCE
LimitMEMLOCK=infinity

# Root, with only these capabilities:
{caps}CapabilityBoundingSet={}
NoNewPrivileges=yes
# The namespaces the sandbox and the lab network create; no user namespaces
# for samples
RestrictNamespaces=mnt pid uts ipc net
# inet for the web, MISP and sandbox APIs and samples, netlink for `ip`,
# packet for the fake internet's capture, unix
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK AF_PACKET
SystemCallArchitectures=native
LockPersonality=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
# Deliberately absent:
#   ProtectSystem, ProtectHome, PrivateTmp, PrivateDevices, ReadWritePaths,
#   ProtectKernelTunables, ProtectKernelModules, ProtectKernelLogs,
#   ProtectControlGroups: each gives the service its own
#   mount namespace, and the agent then sees host paths through a different
#   root (it resolves a finished script's path in its own root when the
#   process shared its mount namespace); the sandbox also writes cgroup files
#   under /sys/fs/cgroup.
#   SystemCallFilter, MemoryDenyWriteExecute: the lab's samples make the
#   syscalls the sensor is there to see (init_module, mprotect to exec, ptrace);
#   seccomp would stop them before their tracepoint.
#   ProtectClock, DeviceAllow: a device allow-list would block the sandbox's /dev.

[Install]
WantedBy=multi-user.target
",
        set.join(" "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(data: &str) -> String {
        text(&Layout::new("/".into(), "/opt/ioclab".into(), data.into()).unwrap())
    }

    #[test]
    fn the_unit_runs_the_installed_binary_with_the_bounding_set_of_the_table() {
        let u = unit("/var/lib/ioclab");
        assert!(u.contains("\nExecStart=/opt/ioclab/bin/ioclab serve --config /etc/ioclab/appliance.toml\n"), "{u}");
        assert!(u.contains("\nRestart=on-failure\n"));
        assert!(u.contains("\nStateDirectory=ioclab\n"));
        let set = u.lines().find_map(|l| l.strip_prefix("CapabilityBoundingSet=")).unwrap();
        assert_eq!(set.split(' ').count(), CAPABILITIES.len());
        for (cap, _) in CAPABILITIES {
            assert!(set.split(' ').any(|c| c == *cap), "{cap}");
            assert!(u.contains(&format!("#   {cap}: ")), "{cap} is explained");
        }
        assert!(!set.contains("CAP_SYS_MODULE") && !set.contains("CAP_SYS_RESOURCE"));
    }

    #[test]
    fn a_data_folder_outside_var_lib_is_no_state_directory() {
        assert!(unit("/var/lib/ioclab/lab").contains("\nStateDirectory=ioclab/lab\n"));
        let u = unit("/srv/lab");
        assert!(!u.contains("StateDirectory="), "{u}");
        assert!(u.contains("\nWorkingDirectory=/srv/lab\n"));
        assert!(!unit("/var/lib").contains("StateDirectory="));
    }
}
