//! Live max_eps_fs throttle: a file storm is cut in the kernel, the `error`
//! events say when it kicks in and how many file events it dropped, and the
//! accounting adds up exactly.

mod common;

use common::*;
use serde_json::Value;

/// The number of a "N dropped" throttle message, None for other messages.
fn dropped(e: &Value) -> Option<u64> {
    let msg = e["data"]["message"].as_str()?;
    let (head, _) = msg.split_once(" dropped in a second")?;
    head.rsplit(' ').next()?.parse().ok()
}

#[test]
fn throttle_reports_how_many_file_events_it_dropped() {
    const CREATES: u64 = 300;
    const LIMIT: u64 = 40;
    let dir = tempfile::tempdir().unwrap();
    let root = realpath(dir.path().to_str().unwrap());
    let mut c = config();
    c.max_eps_fs = LIMIT;
    let Some(agent) = start(c) else { return };

    // one file event per create (write is off, write_close too); nothing else in the child counts
    let pid = in_child(|| {
        for i in 0..CREATES {
            std::fs::File::create(root.join(format!("f{i}"))).unwrap();
        }
    });
    agent.wait_for("exit_group of the storm", is("exit_group", pid));
    // the count of the last throttled second is sent at exit, before exit_group
    let (_, events) = agent.stop();
    let errors: Vec<&Value> = events.iter().filter(|e| is("error", pid)(e)).collect();
    let kicks = errors.iter().filter(|e| dropped(e).is_none()).count();
    let lost: u64 = errors.iter().filter_map(|e| dropped(e)).sum();
    let created = events.iter().filter(|e| is("file_create", pid)(e)).count() as u64;

    assert!(kicks >= 1, "an error when the throttle kicks in: {errors:?}");
    for e in &errors {
        let msg = e["data"]["message"].as_str().unwrap();
        assert!(msg.contains(&format!("(pid {pid})")) && msg.contains(&format!("max_eps_fs = {LIMIT}")), "{msg}");
        assert_eq!(e["info"]["event"]["id"], 1000);
    }
    assert!((LIMIT..CREATES).contains(&created), "{created} file_create written of {CREATES}");
    assert_eq!(created + lost, CREATES, "every create is either written or counted as dropped: {errors:?}");
    assert!(created <= LIMIT * (kicks as u64 + 1), "at most {LIMIT} a second");
}
