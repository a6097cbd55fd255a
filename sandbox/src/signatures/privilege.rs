//! Interference with other processes and the kernel: ptrace, kernel
//! modules, eBPF programs.

use ioclab_agent::events::EventData;

use super::{Evidence, Hit, Meta, Rule};

pub(super) const RULES: &[&dyn Rule] = &[&PtraceOther, &KernelModule, &BpfLoad];

/// ptrace of another process (injection, credential theft from memory).
pub struct PtraceOther;

impl Rule for PtraceOther {
    fn meta(&self) -> Meta {
        Meta {
            name: "ptrace_other_process",
            description: "Attaches to another process with ptrace (code injection or memory reading)",
            severity: 4,
            ttp: &[("T1055.008", "Ptrace System Calls", "Adversaries may inject code into processes through ptrace.")],
        }
    }

    fn check(&self, ev: &Evidence<'_>) -> Vec<Hit> {
        ev.events
            .iter()
            .filter(|e| matches!(&e.data, EventData::Ptrace(d) if d.target.task.tgid as u32 != e.pid && d.target.task.tgid != 0))
            .map(|e| Hit::Event(e.index))
            .collect()
    }
}

/// A kernel module load, successful or not (a rootkit's first step).
pub struct KernelModule;

impl Rule for KernelModule {
    fn meta(&self) -> Meta {
        Meta {
            name: "loads_kernel_module",
            description: "Tries to load a kernel module",
            severity: 5,
            ttp: &[
                (
                    "T1547.006",
                    "Kernel Modules and Extensions",
                    "Adversaries may load kernel modules to run code in the kernel.",
                ),
                ("T1014", "Rootkit", "Adversaries may hide their presence with a rootkit."),
            ],
        }
    }

    fn check(&self, ev: &Evidence<'_>) -> Vec<Hit> {
        ev.events.iter().filter(|e| matches!(&e.data, EventData::InitModule(_))).map(|e| Hit::Event(e.index)).collect()
    }
}

/// An eBPF program loaded or a socket filter attached (kernel-level hooks and sniffers).
pub struct BpfLoad;

impl Rule for BpfLoad {
    fn meta(&self) -> Meta {
        Meta {
            name: "loads_bpf_program",
            description: "Loads an eBPF program or attaches a socket filter (kernel hooks, packet sniffing)",
            severity: 3,
            ttp: &[(
                "T1040",
                "Network Sniffing",
                "Adversaries may sniff network traffic, e.g. with BPF socket filters.",
            )],
        }
    }

    fn check(&self, ev: &Evidence<'_>) -> Vec<Hit> {
        ev.events
            .iter()
            .filter(|e| matches!(&e.data, EventData::BpfProgLoad(_) | EventData::BpfSocketFilter(_)))
            .map(|e| Hit::Event(e.index))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::Task;
    use super::*;
    use serde_json::json;

    #[test]
    fn ptrace() {
        let t =
            Task::new().ev(5, 4, "gdb", "ptrace", json!({"mode": "0x10", "target": {"task": {"tgid": 77, "pid": 77}}}));
        assert_eq!(t.marked(&PtraceOther), vec![0]);
        // tracing itself (PTRACE_TRACEME shows the process as its own target)
        let t = Task::new().ev(5, 4, "x", "ptrace", json!({"mode": "0x10", "target": {"task": {"tgid": 5, "pid": 6}}}));
        assert!(t.check(&PtraceOther).is_empty());
    }

    #[test]
    fn kernel_module() {
        let t = Task::new().ev(
            5,
            4,
            "insmod",
            "init_module",
            json!({"syscall": "finit_module", "module_name": "rk", "loaded": false}),
        );
        assert_eq!(t.marked(&KernelModule), vec![0]);
        let t = Task::new().file(5, "read_config", "/etc/modules").exec(6, 5, "/sbin/lsmod", "lsmod");
        assert!(t.check(&KernelModule).is_empty());
    }

    #[test]
    fn bpf() {
        let t = Task::new().ev(5, 4, "x", "bpf_socket_filter", json!({"attached": true}));
        assert_eq!(t.marked(&BpfLoad), vec![0]);
        let t = Task::new().exec(6, 5, "/usr/bin/bpftool", "bpftool prog list");
        assert!(t.check(&BpfLoad).is_empty());
    }
}
