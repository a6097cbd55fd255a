//! The real [`Detonator`]: isolates each job ([`crate::isolate`]), puts it
//! on the fake internet ([`crate::fakenet`]), and takes its behaviour from
//! the ioclab eBPF sensor through a tap on the task's cgroup.

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ioclab_agent::sensor::roots::NsRoots;
use ioclab_agent::sensor::tap::{Tap, Taps};
use ioclab_agent::sensor::{self, Control};
use serde_json::Value;

use crate::detonation::{DetonateError, Detonation, Detonator, Job, Target};
use crate::dropped;
use crate::fakenet::{self, FakeNet, FakeNetConfig};
use crate::isolate::cgroup::{CgroupLayout, Limits, TaskCgroup};
use crate::isolate::fs::{cstr, plan, Staging};
use crate::isolate::{self, Spec};
use crate::sample;

/// The unprivileged user samples run as by default: `nobody`/`nogroup`
/// (65534), which owns nothing on a Debian host.
pub const SANDBOX_UID: u32 = 65534;
/// Its group.
pub const SANDBOX_GID: u32 = 65534;

/// Where the sensor comes from.
#[derive(Debug, Clone, Default)]
pub enum SensorSource {
    /// The sandbox loads and runs its own set of programs (`ioclab sandbox`).
    #[default]
    Own,
    /// It taps a sensor that already runs (`ioclab serve`, with the endpoint agent).
    Shared {
        /// The sensor's taps: a task's events go to the task only.
        taps: Taps,
        /// Where the sandbox lends the sensor each task's root.
        roots: NsRoots,
    },
}

/// How the sandbox runs.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Per-task staging tmpfs mounts live here (swept at start).
    pub state_dir: PathBuf,
    /// The eBPF sensor.
    pub sensor: SensorSource,
    /// User the sample runs as (unless the job asks for root).
    pub uid: u32,
    /// Its group.
    pub gid: u32,
    /// Size of the task's private tmpfs (/tmp, /var/tmp, /dev/shm, /home, /root together).
    pub tmpfs_bytes: u64,
    /// Bytes of a dropped file kept (the hashes cover the whole file).
    pub dropped_max_bytes: u64,
    /// Dropped files kept per task.
    pub dropped_max_files: usize,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            state_dir: PathBuf::from("/run/ioclab-sandbox"),
            sensor: SensorSource::Own,
            uid: SANDBOX_UID,
            gid: SANDBOX_GID,
            tmpfs_bytes: 256 << 20,
            dropped_max_bytes: 16 << 20,
            dropped_max_files: 200,
        }
    }
}

/// A sensor the sandbox runs itself; stopped when dropped.
struct OwnSensor {
    control: Control,
    thread: Option<JoinHandle<()>>,
}

impl Drop for OwnSensor {
    fn drop(&mut self) {
        self.control.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Discards the endpoint output of the sandbox's own sensor; notes its first line (the `start` event).
struct Discard(Arc<AtomicBool>);

impl Write for Discard {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.store(true, Ordering::Relaxed);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The real detonator: namespaces, cgroup, fake internet, eBPF sensor.
pub struct Sandbox {
    config: SandboxConfig,
    taps: Taps,
    roots: NsRoots,
    cgroups: CgroupLayout,
    _own: Option<OwnSensor>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox").field("config", &self.config).finish_non_exhaustive()
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DetonateError {
    let what = what.into();
    move |source| DetonateError::Io { what, source }
}

impl Sandbox {
    /// Checks the machine, removes what a killed server left (task cgroups
    /// and staging mounts whose server is gone), and starts the sensor
    /// (unless a shared one is given).
    pub fn new(config: SandboxConfig) -> Result<Sandbox, DetonateError> {
        // SAFETY: no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(DetonateError::Unsupported("not root (namespaces, cgroups and eBPF need it)".into()));
        }
        let cgroups = CgroupLayout::detect()?;
        for name in cgroups.sweep().into_iter().chain(crate::isolate::fs::sweep(&config.state_dir)) {
            tracing::warn!("removed {name}, left by a sandbox server that is gone");
        }
        std::fs::create_dir_all(&config.state_dir).map_err(io(format!("creating {}", config.state_dir.display())))?;
        let (taps, roots, own) = match &config.sensor {
            SensorSource::Shared { taps, roots } => (taps.clone(), roots.clone(), None),
            SensorSource::Own => {
                let own = start_sensor()?;
                (own.control.taps.clone(), own.control.roots.clone(), Some(own))
            }
        };
        Ok(Sandbox { config, taps, roots, cgroups, _own: own })
    }

    /// The taps of the sensor in use.
    pub fn taps(&self) -> &Taps {
        &self.taps
    }
}

/// Nice value of the sandbox's own sensor thread.
const SENSOR_NICE: libc::c_int = -10;

/// Largest file the sandbox's own sensor hashes: system binaries fit.
const OWN_SENSOR_MAX_HASH: u64 = 16 << 20;

fn start_sensor() -> Result<OwnSensor, DetonateError> {
    let control = Control::default();
    // nothing reads this sensor's endpoint output: only the tasks' events are rendered
    control.taps.set_only(true);
    let ready = Arc::new(AtomicBool::new(false));
    let (c, r) = (control.clone(), ready.clone());
    let (err_tx, err_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("ioclab-sandbox-sensor".into())
        .spawn(move || {
            // the tasks wait for its events: it keeps up with the host ahead of ordinary work
            // SAFETY: setpriority of this thread (tid), no memory involved.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, SENSOR_NICE) };
            let config = ioclab_agent::config::Config {
                // the host's big new binaries (a build's) would delay the task's events while hashed
                max_hash_size: OWN_SENSOR_MAX_HASH,
                ..Default::default()
            };
            if let Err(e) = sensor::run(config, Box::new(Discard(r)) as Box<dyn std::io::Write + Send>, c) {
                let _ = err_tx.send(e.to_string());
            }
        })
        .map_err(io("starting the sensor thread"))?;
    let mut own = OwnSensor { control, thread: Some(thread) };
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ready.load(Ordering::Relaxed) {
        if let Ok(e) = err_rx.try_recv() {
            return Err(DetonateError::Unsupported(format!("the eBPF sensor cannot run: {e}")));
        }
        if own.thread.as_ref().is_some_and(|t| t.is_finished()) || Instant::now() > deadline {
            own.thread = None;
            return Err(DetonateError::Unsupported("the eBPF sensor stopped before it was ready".into()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(own)
}

/// A file name safe to create in /tmp.
fn safe_name(name: &str) -> String {
    let n: String = name.chars().filter(|c| *c != '/' && *c != '\0').collect();
    if n.is_empty() || n == "." || n == ".." {
        "sample".into()
    } else {
        n
    }
}

fn cstrings(v: &[String]) -> Result<Vec<CString>, DetonateError> {
    v.iter().map(|s| CString::new(s.as_str())).collect::<Result<_, _>>().map_err(|_| DetonateError::Io {
        what: "arguments".into(),
        source: std::io::Error::other("an argument holds NUL"),
    })
}

/// What runs: (program, argv, package name, sample facts, sample's path on the host).
type Plan = (String, Vec<String>, String, Option<crate::detonation::FileFacts>, Option<(PathBuf, String)>);

fn target_plan(job: &Job) -> Result<Plan, DetonateError> {
    match &job.target {
        Target::File { path, name } => {
            let mut head = Vec::with_capacity(4096);
            std::fs::File::open(path)
                .and_then(|f| f.take(4096).read_to_end(&mut head))
                .map_err(io(format!("reading the sample {}", path.display())))?;
            let pkg = sample::choose(job.package.as_deref(), &head, name)?;
            let facts = sample::facts(path).map_err(io(format!("hashing the sample {}", path.display())))?;
            let name = safe_name(name);
            let guest = format!("/tmp/{name}");
            let (exe, mut argv) = match &pkg.interpreter {
                None => (guest.clone(), vec![guest.clone()]),
                Some(i) => (i.clone(), vec![i.clone(), guest.clone()]),
            };
            argv.extend(job.args.iter().cloned());
            Ok((exe, argv, pkg.name, Some(facts), Some((path.clone(), name))))
        }
        Target::Url(url) => {
            let argv = vec!["curl".into(), "-sSL".into(), url.clone()];
            Ok(("/usr/bin/curl".into(), argv, "curl".into(), None, None))
        }
    }
}

impl Detonator for Sandbox {
    fn detonate(&self, job: &Job, task_dir: &Path) -> Result<Detonation, DetonateError> {
        std::fs::create_dir_all(task_dir).map_err(io(format!("creating {}", task_dir.display())))?;
        let (exe, argv, package, sample_facts, sample_src) = target_plan(job)?;
        let (uid, gid) = if job.as_root { (0, 0) } else { (self.config.uid, self.config.gid) };
        let home = if job.as_root { "/root" } else { "/home/sandbox" };

        let staging = Staging::create(&self.config.state_dir, job.task_id, self.config.tmpfs_bytes, uid, gid)?;
        if let Some((src, name)) = &sample_src {
            let dst = staging.rw("tmp").join(name);
            std::fs::copy(src, &dst).map_err(io(format!("copying the sample to {}", dst.display())))?;
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755)).map_err(io("chmod sample"))?;
            chown(&dst, Some(uid), Some(gid)).map_err(io("chown sample"))?;
        }
        std::fs::write(staging.resolv_conf(), fakenet::resolv_conf()).map_err(io("writing resolv.conf"))?;
        let output = std::fs::File::create(staging.output()).map_err(io("creating the output file"))?;

        let limits = Limits { memory_bytes: job.memory_bytes, max_pids: job.max_pids };
        let cgroup = self.cgroups.create(job.task_id, limits)?;
        let tap = self.taps.subscribe(cgroup.id());
        let net = FakeNet::start(FakeNetConfig {
            records: job.dns.clone(),
            services: job.services.clone(),
            ..Default::default()
        })
        .map_err(|e| DetonateError::Io {
            what: "starting the fake internet".into(),
            source: std::io::Error::other(e),
        })?;

        let env = vec![
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            format!("HOME={home}"),
            format!("USER={}", if job.as_root { "root" } else { "nobody" }),
            "LANG=C.UTF-8".into(),
            "TERM=dumb".into(),
        ];
        let spec = Spec {
            exe: CString::new(exe).map_err(|_| io("program")(std::io::Error::other("NUL in the program path")))?,
            argv: cstrings(&argv)?,
            env: cstrings(&env)?,
            workdir: c"/tmp".into(),
            uid,
            gid,
            hostname: c"sandbox".into(),
            mounts: plan(&staging),
            root: cstr(staging.root()),
            netns: net.netns().fd(),
            cgroup_procs: cgroup.procs_files(),
            output,
        };
        let mut errors = Vec::new();
        let mut task = isolate::spawn(&spec)?;
        // the task's root (the keeper's, moved by the init's pivot_root), lent
        // to the sensor: a script that ends at once, with its parents, is
        // still read as the task saw it; a task already gone lends nothing
        let lent = self.roots.lend_of(task.keeper_pid());
        if let Err(e) = &lent {
            tracing::debug!("task {}: its root was not lent to the sensor: {e}", job.task_id);
        }
        let started = fakenet::now();
        let deadline = Instant::now() + Duration::from_secs(job.timeout_s.max(1));
        let ended_alone = task.wait_until(deadline);
        if !ended_alone {
            task.kill();
        } else if job.enforce_timeout {
            std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        }
        let keeper_code = task.reap();
        let keeper = task.keeper_pid();
        drop(task);
        if !cgroup.kill_all() {
            errors.push("processes were left in the task cgroup after 10 s of SIGKILL".into());
        }
        let ended = fakenet::now();

        let (events, root_pid, root_exit) = collect_events(&tap, &cgroup, keeper, &mut errors);
        // every event is written, hashes included: the root goes back before the staging is unmounted
        drop(lent);
        drop(tap);
        let network = net.stop();
        let exit_code = root_exit.or((ended_alone).then_some(keeper_code));
        let dropped = dropped::collect(
            &staging,
            task_dir,
            sample_facts.as_ref().map(|f| f.sha256),
            &events,
            dropped::Caps { bytes: self.config.dropped_max_bytes, files: self.config.dropped_max_files },
            &mut errors,
        );
        copy_output(&staging.output(), &task_dir.join("output.log"), &mut errors);
        if let Err(e) = cgroup.remove() {
            errors.push(e.to_string());
        }
        drop(staging);
        write_events(&task_dir.join("kunai.jsonl.gz"), &events).map_err(io("writing kunai.jsonl.gz"))?;
        Ok(Detonation {
            task_id: job.task_id,
            started,
            ended,
            package,
            sample: sample_facts,
            root_pid,
            exit_code,
            timed_out: !ended_alone,
            events,
            network,
            dropped,
            errors,
        })
    }
}

/// Bytes of the sample's output kept.
const OUTPUT_MAX: u64 = 1 << 20;

fn copy_output(from: &Path, to: &Path, errors: &mut Vec<String>) {
    let r = std::fs::File::open(from).and_then(|f| {
        let mut out = std::fs::File::create(to)?;
        std::io::copy(&mut f.take(OUTPUT_MAX), &mut out)
    });
    if let Err(e) = r {
        errors.push(format!("keeping the sample's output: {e}"));
    }
}

fn write_events(path: &Path, events: &[String]) -> std::io::Result<()> {
    let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(path)?, flate2::Compression::default());
    for e in events {
        gz.write_all(e.as_bytes())?;
        gz.write_all(b"\n")?;
    }
    gz.finish()?.sync_all()
}

fn tgid(e: &Value, who: &str) -> Option<u32> {
    e["info"][who]["tgid"].as_u64().map(|v| v as u32)
}

fn event_name(e: &Value) -> &str {
    e["info"]["event"]["name"].as_str().unwrap_or("")
}

/// How long the sensor may take to deliver a task's last events (it
/// watches the whole host: a big new binary elsewhere is hashed first).
const SENSOR_DRAIN: Duration = Duration::from_secs(120);

/// Longest an event can be held for its hashes after the events behind it
/// (the sensor's hash budget), and a margin.
const HASH_WAIT: Duration = Duration::from_millis(ioclab_agent::config::DEFAULT_HASH_BUDGET_MS + 250);

/// The task's events, once all are in: a marker process joins the (now
/// empty) task cgroup and exits; the ring buffer is ordered, so its exit
/// arriving means every earlier record of the task has. The sandbox's
/// own processes (the keeper and the namespace's init) and the marker are
/// left out. Returns (lines, the sample's host pid, its exit code).
fn collect_events(
    tap: &Tap,
    cgroup: &TaskCgroup,
    keeper: u32,
    errors: &mut Vec<String>,
) -> (Vec<String>, Option<u32>, Option<i32>) {
    let marker = spawn_marker(cgroup);
    let mut lines: Vec<(String, Value)> = Vec::new();
    let deadline = Instant::now() + SENSOR_DRAIN;
    while let Some(marker) = marker {
        let Some(line) = tap.recv_timeout(deadline.saturating_duration_since(Instant::now())) else {
            errors.push(format!("the sensor did not deliver the task's last events within {SENSOR_DRAIN:?}"));
            break;
        };
        let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if tgid(&v, "task") == Some(marker) {
            if event_name(&v) == "exit_group" {
                break;
            }
            continue;
        }
        lines.push((line, v));
    }
    if marker.is_none() {
        errors.push("the marker process could not join the task cgroup: the task's last events may be missing".into());
    }
    // an event waiting for its file's hashes is written at its deadline at
    // the latest, after the events behind it: the marker's exit can pass it
    let late_until = Instant::now() + HASH_WAIT;
    while let Some(line) = tap.recv_timeout(late_until.saturating_duration_since(Instant::now())) {
        let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if marker.is_none() || tgid(&v, "task") != marker {
            lines.push((line, v));
        }
    }
    // back in the order they happened (same-width RFC 3339 times, from one clock)
    lines.sort_by(|(_, a), (_, b)| a["info"]["utc_time"].as_str().cmp(&b["info"]["utc_time"].as_str()));
    // the namespace's init is the keeper's child
    let init = lines
        .iter()
        .find(|(_, v)| event_name(v) == "clone" && tgid(v, "parent_task") == Some(keeper))
        .and_then(|(_, v)| tgid(v, "task"));
    let plumbing = |v: &Value| {
        let t = tgid(v, "task");
        t == Some(keeper) || (t.is_some() && t == init)
    };
    let lines: Vec<(String, Value)> = lines.into_iter().filter(|(_, v)| !plumbing(v) && !v.is_null()).collect();
    let first_exec = lines.iter().position(|(_, v)| event_name(v).starts_with("execve"));
    let root = first_exec.and_then(|i| tgid(&lines[i].1, "task"));
    // what the sample's process did before its exec is the sandbox's setup (dropping privileges)
    let lines: Vec<(String, Value)> = lines
        .into_iter()
        .enumerate()
        .filter(|(i, (_, v))| {
            !(first_exec.is_some_and(|f| *i < f) && tgid(v, "task") == root && event_name(v) != "clone")
        })
        .map(|(_, l)| l)
        .collect();
    let exit = lines
        .iter()
        .find(|(_, v)| event_name(v) == "exit_group" && tgid(v, "task") == root && root.is_some())
        .and_then(|(_, v)| v["data"]["error_code"].as_i64())
        .map(|c| c as i32);
    (lines.into_iter().map(|(l, _)| l).collect(), root, exit)
}

/// Forks a process that joins the task cgroup and exits at once; returns its pid.
fn spawn_marker(cgroup: &TaskCgroup) -> Option<u32> {
    let files: Vec<std::fs::File> =
        cgroup.procs_files().iter().filter_map(|p| std::fs::OpenOptions::new().write(true).open(p).ok()).collect();
    // SAFETY: the child only writes to fds it inherited and leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return None;
    }
    if pid == 0 {
        use std::os::fd::AsRawFd;
        let mut code = 0;
        for (i, f) in files.iter().enumerate() {
            // SAFETY: writing a static buffer.
            if unsafe { libc::write(f.as_raw_fd(), b"0".as_ptr().cast(), 1) } != 1 {
                code = 10 + i as i32 * 1000 + std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
            }
        }
        // SAFETY: leaving the child.
        unsafe { libc::_exit(code.min(255)) };
    }
    let mut status = 0;
    // SAFETY: our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        tracing::error!("the marker process could not join the task cgroup (status {status:#x})");
        return None;
    }
    Some(pid as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_safe() {
        assert_eq!(safe_name("a/../b"), "a..b");
        assert_eq!(safe_name(".."), "sample");
        assert_eq!(safe_name(""), "sample");
        assert_eq!(safe_name("x\0y"), "xy");
    }
}
