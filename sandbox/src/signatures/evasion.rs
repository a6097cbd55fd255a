//! Defence evasion: the sample deleting itself, processes renaming
//! themselves, shell history and logs wiped.

use std::collections::HashSet;

use ioclab_agent::events::EventData;

use super::{basename, executed_path, writes_matching, Evidence, Hit, Meta, Rule};

pub(super) const RULES: &[&dyn Rule] = &[&SelfDelete, &ProcessRename, &HistoryOrLogTamper];

/// The sample deletes its own file (the submitted file, or the program a process runs as).
pub struct SelfDelete;

impl Rule for SelfDelete {
    fn meta(&self) -> Meta {
        Meta {
            name: "deletes_itself",
            description: "The sample deletes its own file after starting",
            severity: 3,
            ttp: &[("T1070.004", "File Deletion", "Adversaries may delete the files they leave to hide their tracks.")],
        }
    }

    fn check(&self, ev: &Evidence<'_>) -> Vec<Hit> {
        // every path some process of the task runs as
        let mut running: HashSet<&str> = HashSet::new();
        let mut hits = Vec::new();
        for e in ev.events {
            if let Some(p) = executed_path(&e.data) {
                running.insert(p);
            }
            if let EventData::FileUnlink(d) = &e.data {
                let own = running.contains(&*d.path) || ev.sample_name.is_some_and(|n| basename(&d.path) == n);
                if d.success && own {
                    hits.push(Hit::Event(e.index));
                }
            }
        }
        hits
    }
}

/// A process changes its name (prctl PR_SET_NAME), to look like another program.
pub struct ProcessRename;

impl Rule for ProcessRename {
    fn meta(&self) -> Meta {
        Meta {
            name: "process_renames_itself",
            description: "A process changes its own name with prctl(PR_SET_NAME), to pass for another program",
            severity: 3,
            ttp: &[(
                "T1036.004",
                "Masquerade Task or Service",
                "Adversaries may give their process the name of a legitimate task.",
            )],
        }
    }

    fn check(&self, ev: &Evidence<'_>) -> Vec<Hit> {
        ev.events
            .iter()
            .filter(|e| matches!(&e.data, EventData::Prctl(d) if d.option == "PR_SET_NAME" && d.success))
            .map(|e| Hit::Event(e.index))
            .collect()
    }
}

fn is_history_or_log(p: &str) -> bool {
    let base = basename(p);
    matches!(base, ".bash_history" | ".zsh_history" | ".sh_history" | ".ash_history" | "wtmp" | "btmp" | "lastlog")
        || p.starts_with("/var/log/")
}

/// Shell history or system logs deleted or overwritten.
pub struct HistoryOrLogTamper;

impl Rule for HistoryOrLogTamper {
    fn meta(&self) -> Meta {
        Meta {
            name: "clears_history_or_logs",
            description: "Deletes or overwrites shell history or system logs",
            severity: 3,
            ttp: &[
                ("T1070.003", "Clear Command History", "Adversaries may clear the command history of a shell."),
                ("T1070.002", "Clear Linux or Mac System Logs", "Adversaries may clear system logs."),
            ],
        }
    }

    fn check(&self, ev: &Evidence<'_>) -> Vec<Hit> {
        let mut hits: Vec<Hit> = ev
            .events
            .iter()
            .filter(|e| matches!(&e.data, EventData::FileUnlink(d) if is_history_or_log(&d.path)))
            .map(|e| Hit::Event(e.index))
            .collect();
        hits.extend(writes_matching(ev, |p| is_history_or_log(p) && !p.starts_with("/var/log/")));
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::Task;
    use super::*;
    use serde_json::json;

    #[test]
    fn self_deletion() {
        let t = Task::new().exec(5, 4, "/tmp/job/dropper", "./dropper").unlink(5, "/tmp/job/dropper");
        assert_eq!(t.marked(&SelfDelete), vec![1]);
        // the submitted file, deleted by the shell running it
        let t = Task::new().exec(5, 4, "/bin/sh", "sh /home/sandbox/sample").unlink(5, "/home/sandbox/sample");
        assert_eq!(t.marked(&SelfDelete), vec![1]);
        // a script run directly (shebang), removing itself
        let t = Task::new().script(5, 4, "/var/tmp/job.sh", "/bin/bash").unlink(6, "/var/tmp/job.sh");
        assert_eq!(t.marked(&SelfDelete), vec![1]);
        // another file, or a failed unlink: no
        let t = Task::new().exec(5, 4, "/tmp/job/dropper", "./dropper").unlink(5, "/tmp/job/other");
        assert!(t.check(&SelfDelete).is_empty());
        let t = Task::new().exec(5, 4, "/tmp/d", "./d").ev(
            5,
            4,
            "d",
            "file_unlink",
            json!({"path": "/tmp/d", "success": false}),
        );
        assert!(t.check(&SelfDelete).is_empty());
    }

    #[test]
    fn prctl_rename() {
        let t = Task::new().ev(
            5,
            4,
            "kworker/0:1",
            "prctl",
            json!({"option": "PR_SET_NAME", "arg2": "0x7ffd", "success": true}),
        );
        assert_eq!(t.marked(&ProcessRename), vec![0]);
        let t = Task::new().ev(5, 4, "x", "prctl", json!({"option": "PR_SET_PDEATHSIG", "success": true}));
        assert!(t.check(&ProcessRename).is_empty());
        let t = Task::new().ev(5, 4, "x", "prctl", json!({"option": "PR_SET_NAME", "success": false}));
        assert!(t.check(&ProcessRename).is_empty());
    }

    #[test]
    fn history_and_logs() {
        let t = Task::new()
            .unlink(5, "/root/.bash_history")
            .file(5, "write", "/home/u/.bash_history")
            .unlink(5, "/var/log/auth.log");
        assert_eq!(t.marked(&HistoryOrLogTamper), vec![0, 2, 1]);
        let t = Task::new().file(5, "read_config", "/root/.bash_history").unlink(5, "/tmp/history");
        assert!(t.check(&HistoryOrLogTamper).is_empty());
    }
}
