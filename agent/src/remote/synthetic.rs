//! Synthetic Kunai events, for the shipping tests and the class load
//! benchmark: endpoints that send without eBPF.

use serde_json::json;

/// A `file_create` event line (no newline) from host `host`, numbered `n`, with a fresh uuid.
pub fn file_create(host: &str, n: u64) -> String {
    json!({
        "data": {"ancestors": "/usr/lib/systemd/systemd|/usr/bin/bash", "command_line": "touch", "exe": {"path": "/usr/bin/touch"},
                 "path": format!("/tmp/synthetic-{n}")},
        "info": {
            "host": {"uuid": "00000000-0000-0000-0000-000000000000", "name": host, "container": null},
            "event": {"source": "kunai", "id": 88, "name": "file_create", "uuid": uuid::Uuid::new_v4().to_string(), "batch": n},
            "task": {"name": "touch", "pid": 4242, "tgid": 4242, "guuid": "4242-synthetic", "uid": 1000, "gid": 1000,
                     "namespaces": {"mnt": 4026531841u64}, "flags": "0x400000", "zombie": false},
            "utc_time": "2026-11-30T12:00:00.000000000Z"
        }
    })
    .to_string()
}
