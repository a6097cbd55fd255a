//! `ioclab misp export` against pykunai's `misp-to-kunai`, on the same
//! embedded store holding 100,000 attributes, in one run: times, ratio, and
//! whether both wrote the same IoCs on misp-to-kunai's types.
//!
//! Needs the venv of scripts/setup.sh (`.venv/`, with pykunai). Run with `make bench`.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use ioclab_intel::store::Role;
use serde_json::json;

const EVENTS: usize = 100;
const PER_EVENT: usize = 1_000;

/// Attribute `i` of event `e`: types in rotation, values unique.
fn attribute(e: usize, i: usize) -> serde_json::Value {
    let n = e * PER_EVENT + i;
    let (t, v) = match n % 8 {
        0 => ("md5", format!("{:032x}", n as u128 * 0x9e37_79b9)),
        1 => ("sha1", format!("{:040x}", n as u128 * 0x9e37_79b9_7f4a)),
        2 => ("sha256", format!("{:064x}", n as u128 * 0x9e37_79b9_7f4a_7c15)),
        3 => ("domain", format!("c2-{n}.bench.example")),
        4 => ("hostname", format!("host{n}.bench.example")),
        5 => ("ip-dst", format!("45.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255)),
        6 => ("url", format!("https://dl{n}.bench.example/payload")),
        _ => ("filename", format!("dropper-{n}.exe")),
    };
    json!({"type": t, "value": v, "to_ids": n % 10 != 0})
}

fn ioc_set(p: &Path) -> BTreeSet<(String, String, String, u64)> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| {
            let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
            (s("type"), s("uuid"), s("value"), v["severity"].as_u64().unwrap_or(0))
        })
        .collect()
}

fn main() {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv");
    let m2k = venv.join("bin/misp-to-kunai");
    if !m2k.exists() {
        eprintln!("misp_export: {} is missing (run scripts/setup.sh); skipped", m2k.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("misp.db");
    let t = Instant::now();
    let key = common::seed_store(&db, Role::Admin, EVENTS, |e| {
        let attrs: Vec<_> = (0..PER_EVENT).map(|i| attribute(e, i)).collect();
        json!({"info": format!("bench {e}"), "published": true, "Attribute": attrs})
    });
    let seed_s = t.elapsed().as_secs_f64();

    let (mut server, port) = common::misp_serve(&db);
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!("misp-feeds = []\n\n[misp]\nname = \"bench\"\nurl = \"http://127.0.0.1:{port}\"\nkey = \"{key}\"\nssl = false\nenable = true\n"),
    )
    .unwrap();

    // the server's share: the attribute search (CSV) the export makes, body read, nothing parsed
    let t = Instant::now();
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
            "-H",
            &format!("Authorization: {key}"),
            "-H",
            "Content-Type: application/json",
        ])
        .arg("-d")
        .arg(
            json!({"published": true, "to_ids": true, "returnFormat": "csv",
                "requested_attributes": ioclab_intel::export::iocs::CSV_COLUMNS,
                "type": ioclab_intel::export::iocs::EXPORTED_TYPES})
            .to_string(),
        )
        .arg(format!("http://127.0.0.1:{port}/attributes/restSearch"))
        .output()
        .unwrap();
    let server_s = t.elapsed().as_secs_f64();
    let bytes = String::from_utf8_lossy(&out.stdout).parse::<f64>().unwrap_or(0.0);

    let (theirs, ours) = (dir.path().join("m2k.json"), dir.path().join("ours.json"));
    let t = Instant::now();
    let st = Command::new(&m2k).arg("-c").arg(&cfg).arg("-o").arg(&theirs).stderr(Stdio::null()).status().unwrap();
    let m2k_s = t.elapsed().as_secs_f64();
    assert!(st.success(), "misp-to-kunai failed");
    let t = Instant::now();
    let st = Command::new(env!("CARGO_BIN_EXE_ioclab"))
        .args(["misp", "export", "-c"])
        .arg(&cfg)
        .arg("-o")
        .arg(&ours)
        .args(["--overwrite", "--no-warninglists", "--shared-types-only"])
        .env("IOCLAB_LOG", "warn")
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let ours_s = t.elapsed().as_secs_f64();
    assert!(st.success(), "ioclab misp export failed");
    let _ = server.kill();
    let _ = server.wait();

    let (a, b) = (ioc_set(&theirs), ioc_set(&ours));
    let ratio = m2k_s / ours_s;
    println!("misp_export.attributes {} in {EVENTS} events (seeded in {seed_s:.1} s)", EVENTS * PER_EVENT);
    println!("misp_export.misp_to_kunai_s {m2k_s:.2}  ({} IoCs)", a.len());
    println!("misp_export.ioclab_s {ours_s:.3}  ({} IoCs)", b.len());
    println!("misp_export.server_restsearch_s {server_s:.3}  ({:.1} MB of CSV)", bytes / 1e6);
    println!("misp_export.speedup {ratio:.1}x  (target >= 20x) {}", if ratio >= 20.0 { "MET" } else { "MISSED" });
    println!("misp_export.same_iocs_on_shared_types {}", if a == b { "yes" } else { "NO" });
}
