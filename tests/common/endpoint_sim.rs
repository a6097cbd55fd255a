//! Simulated remote endpoints without eBPF: events written into the agent's
//! real on-disk [`Spool`] at a set rate, and shipped by its real
//! [`Shipper`], each acknowledged batch reported. Shared by the SIGKILL test
//! (tests/endpoints.rs) and the class load benchmark (benches/class_load.rs
//! includes this file).

#![allow(dead_code)] // each user takes part

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ioclab_agent::remote::ship::{ShipError, Shipper};
use ioclab_agent::remote::spool::Spool;
use ioclab_agent::remote::wire::Ack;

/// How often a producer writes: its rate is kept per tick, late ticks catch up.
const TICK: Duration = Duration::from_millis(10);

/// Writes the lines `make(0)`, `make(1)`... (each without its newline) into
/// `spool` as the sensor's output does, `per_sec` lines a second, until
/// `count` lines are written or `stop` is set; then seals the last batch.
/// Returns how many lines were written.
pub async fn produce(
    spool: &Spool,
    per_sec: u64,
    count: u64,
    stop: &AtomicBool,
    mut make: impl FnMut(u64) -> String,
) -> u64 {
    use std::io::Write;
    let mut w = spool.writer();
    let start = Instant::now();
    let mut n = 0;
    while n < count && !stop.load(Ordering::Relaxed) {
        // the lines due by now: a late tick writes what the previous ones missed
        let due = ((start.elapsed().as_secs_f64() * per_sec as f64) as u64 + 1).min(count);
        let mut chunk = Vec::with_capacity(((due - n) as usize) * 600);
        while n < due {
            chunk.extend_from_slice(make(n).as_bytes());
            chunk.push(b'\n');
            n += 1;
        }
        w.write_all(&chunk).expect("the spool takes the lines (bound not reached)");
        tokio::time::sleep(TICK).await;
    }
    spool.seal_now().expect("sealing the last batch");
    n
}

/// Ships `spool`'s sealed batches, oldest first, with `shipper` (one at a
/// time, as the agent does) until `finished()` says no more lines come and
/// the spool is empty. Each acknowledged batch's body goes to `acked` with
/// its ack; each failed send to `failed`, and is retried after a pause.
pub async fn ship(
    shipper: &Shipper,
    spool: &Spool,
    finished: impl Fn() -> bool,
    mut acked: impl FnMut(&str, &Ack),
    mut failed: impl FnMut(&ShipError),
) {
    loop {
        spool.seal_if_due().expect("sealing a due batch");
        let Some(batch) = spool.oldest() else {
            if finished() && spool.is_empty() {
                return;
            }
            tokio::time::sleep(TICK).await;
            continue;
        };
        let body = std::fs::read_to_string(&batch.path).expect("reading a sealed batch");
        match shipper.send_oldest(spool).await {
            Ok(Some((sealed, ack))) => {
                assert_eq!(sealed, batch, "only this task removes batches");
                acked(&body, &ack);
            }
            Ok(None) => unreachable!("only this task removes batches"),
            Err(e) => {
                failed(&e);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The events of a batch body: its lines after the header.
pub fn events(body: &str) -> impl Iterator<Item = &str> {
    body.lines().skip(1).filter(|l| !l.is_empty())
}

/// An event line's `info.event.uuid`.
pub fn uuid_of(line: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(line).expect("an event line is JSON");
    v["info"]["event"]["uuid"].as_str().expect("an event has info.event.uuid").to_string()
}
