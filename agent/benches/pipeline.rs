//! Userspace cost per event without the kernel: synthetic ring-buffer records
//! (a fork, an exec of /bin/true, an exit, over and over) decoded, enriched,
//! serialised and written to a sink. Deterministic enough to compare changes;
//! `exec_storm` measures the real thing.

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwapOption;
use ioclab_agent::bpf::abi;
use ioclab_agent::config::Config;
use ioclab_agent::enrich::proctable::ProcessTable;
use ioclab_agent::events::{Host, HostInfo};
use ioclab_agent::sensor::record::{decode, Record};
use ioclab_agent::sensor::{Processor, Stats};

fn bytes_of<T: Copy>(v: &T) -> Vec<u64> {
    // u64 storage keeps the 8-byte alignment ring-buffer records have
    let mut words = vec![0u64; std::mem::size_of::<T>().div_ceil(8)];
    // SAFETY: copying a plain-old-data value into a buffer at least as large.
    unsafe {
        std::ptr::copy_nonoverlapping(
            v as *const T as *const u8,
            words.as_mut_ptr() as *mut u8,
            std::mem::size_of::<T>(),
        )
    };
    words
}

fn as_bytes(w: &[u64]) -> &[u8] {
    // SAFETY: viewing initialised u64s as bytes.
    unsafe { std::slice::from_raw_parts(w.as_ptr() as *const u8, w.len() * 8) }
}

fn task(pid: u32, comm: &[u8]) -> abi::Task {
    // SAFETY: abi::Task is plain old data; all zeroes is valid.
    let mut t: abi::Task = unsafe { std::mem::zeroed() };
    t.pid = pid;
    t.tgid = pid;
    t.start_boottime = pid as u64 * 10_000_000;
    t.flags = 0x400000;
    t.mnt_ns = 4026531841;
    t.comm[..comm.len()].copy_from_slice(comm);
    t
}

fn main() {
    let truth = std::fs::canonicalize("/bin/true").unwrap();
    let meta = std::fs::metadata(&truth).unwrap();
    let me = std::process::id();

    let mut exec: abi::Exec = unsafe { std::mem::zeroed() };
    let mut clone: abi::Clone = unsafe { std::mem::zeroed() };
    let mut exit: abi::Exit = unsafe { std::mem::zeroed() };
    let path = truth.to_str().unwrap().as_bytes();
    exec.exe.path.start = (abi::PATH_LEN - path.len()) as u16;
    exec.exe.path.len = path.len() as u16;
    exec.exe.path.data[abi::PATH_LEN - path.len()..abi::PATH_LEN].copy_from_slice(path);
    exec.exe.ino = meta.ino();
    exec.exe.size = meta.size() as i64;
    exec.exe.mtime_sec = meta.mtime();
    exec.exe.mtime_nsec = meta.mtime_nsec() as u32;
    exec.exe.ctime_sec = meta.ctime();
    exec.exe.ctime_nsec = meta.ctime_nsec() as u32;
    exec.exe.dev = ((libc::major(meta.dev())) << 20) | libc::minor(meta.dev());
    exec.argv[..10].copy_from_slice(b"/bin/true\0");
    exec.argv_len = 10;
    exec.filename[..9].copy_from_slice(b"/bin/true");
    exec.filename_len = 9;

    let config = Arc::new(Config::default());
    let host = Arc::new(Host::new(HostInfo { uuid: uuid::Uuid::nil(), name: "bench".into(), container: None }));
    let mut procs = ProcessTable::new(uuid::Uuid::nil());
    procs.seed_from_proc().unwrap();
    let stats = Arc::new(Stats::default());
    let mut p = Processor::new(
        config,
        host,
        procs,
        Arc::new(ArcSwapOption::empty()),
        Box::new(std::io::sink()) as Box<dyn std::io::Write + Send>,
        stats.clone(),
    )
    .unwrap();

    const SPAWNS: u32 = 100_000;
    const BATCH: u32 = 100;
    let mut records: Vec<Record> = Vec::with_capacity(3 * BATCH as usize);
    let t = Instant::now();
    for i in 0..SPAWNS {
        let pid = 1_000_000 + i;
        let time = 1_000_000_000 + i as u64 * 1000;
        clone.hdr.kind = abi::KIND_CLONE;
        clone.hdr.time_ns = time;
        clone.hdr.task = task(pid, b"exec_storm");
        clone.hdr.parent = task(me, b"exec_storm");
        clone.flags = 0x4111;
        exec.hdr.kind = abi::KIND_EXEC;
        exec.hdr.time_ns = time + 100;
        exec.hdr.task = task(pid, b"true");
        exec.hdr.parent = task(me, b"exec_storm");
        exit.hdr.kind = abi::KIND_EXIT;
        exit.hdr.time_ns = time + 200;
        exit.hdr.task = task(pid, b"true");
        exit.hdr.parent = task(me, b"exec_storm");
        exit.group_dead = 1;
        for r in [bytes_of(&clone), bytes_of(&exec), bytes_of(&exit)] {
            records.push(decode(as_bytes(&r)));
        }
        if records.len() >= 3 * BATCH as usize {
            p.batch(&mut records, i as u64);
        }
    }
    p.batch(&mut records, 0);
    p.finish();
    let ns = t.elapsed().as_nanos() as f64 / (3 * SPAWNS) as f64;
    assert_eq!(stats.written(), 3 * SPAWNS as u64);
    println!("pipeline.userspace_ns_per_event {ns:.0}  (decode + enrich + JSON + write to a sink; includes building the test records)");
}
