//! Live attacks on the hashes of execve events: a hash is the hash of the
//! file the kernel executed, or there is none and `error` says why; and no
//! file an attacker chooses can stall the agent.

mod common;

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use common::*;
use serde_json::Value;

/// A copy of `base` with `tag` appended (an ELF runs the same with data
/// after it): a binary whose hash no other file has.
fn variant(dir: &Path, name: impl AsRef<Path>, base: &str, tag: &str) -> PathBuf {
    let p = dir.join(name);
    let mut bytes = std::fs::read(base).unwrap();
    bytes.extend_from_slice(format!("ioclab-test-{}-{tag}", std::process::id()).as_bytes());
    std::fs::write(&p, bytes).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// Processes killed and reaped when the test ends, passed or not.
#[derive(Default)]
struct Kids(Vec<Child>);

impl Kids {
    /// Spawns `cmd` as the leader of its own process group (killed whole at the end).
    fn spawn(&mut self, cmd: &mut Command) -> u32 {
        let c = cmd.process_group(0).spawn().unwrap();
        let pid = c.id();
        self.0.push(c);
        pid
    }
}

impl Drop for Kids {
    fn drop(&mut self) {
        for c in &mut self.0 {
            // SAFETY: kill has no memory preconditions; the group is the child's own.
            unsafe { libc::kill(-(c.id() as i32), libc::SIGKILL) };
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Makes an agent that hashes on its event thread (the code before the
/// worker) busy for seconds, so the next attacks happen before it looks:
/// a fresh 200 MB binary (sparse). The agent under test hashes it aside.
fn keep_an_inline_hasher_busy(dir: &Path) {
    let big = dir.join("big-true");
    std::fs::copy("/bin/true", &big).unwrap();
    std::fs::OpenOptions::new().write(true).open(&big).unwrap().set_len(200 << 20).unwrap();
    assert!(Command::new(&big).status().unwrap().success());
}

fn hashing_config() -> ioclab_agent::config::Config {
    let mut c = config();
    c.max_hash_size = 1 << 30;
    c
}

fn exe_of(e: &Value) -> &Value {
    &e["data"]["exe"]
}

/// Runs `check`; if it fails, an agent stuck in a file (the bug under test)
/// is left behind rather than joined, so the test fails instead of hanging.
fn or_abandon(agent: LiveAgent, check: impl FnOnce(&LiveAgent)) -> LiveAgent {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&agent))) {
        Ok(()) => agent,
        Err(e) => {
            std::mem::forget(agent);
            std::panic::resume_unwind(e)
        }
    }
}

/// The agent still writes events: a fresh `/bin/true` is reported.
fn still_writing(agent: &LiveAgent) {
    let pid = Command::new("/bin/true").spawn().unwrap().id();
    agent.wait_for("execve of a later /bin/true", is("execve", pid));
}

#[test]
fn a_binary_replaced_after_it_ran_is_hashed_as_it_ran_or_not_at_all() {
    let Some(agent) = start(hashing_config()) else { return };
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        variant(dir.path(), "a", "/bin/true", "a"),
        variant(dir.path(), "b", "/bin/true", "b"),
        variant(dir.path(), "c", "/bin/true", "c"),
    );
    let shas = [digest("sha256sum", &a), digest("sha256sum", &b), digest("sha256sum", &c)];
    keep_an_inline_hasher_busy(dir.path());
    // the issue's sequence: rewritten in place twice, then replaced by rename
    let out = Command::new("/bin/sh")
        .current_dir(dir.path())
        .args(["-c", "cp a r1; ./r1; cp b r1; ./r1; cp c r1.new; mv r1.new r1; ./r1"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let r1 = dir.path().join("r1");
    let execs = |agent: &LiveAgent| -> Vec<Value> {
        agent
            .events()
            .into_iter()
            .filter(|e| name(e) == "execve" && exe_of(e)["path"] == r1.to_str().unwrap())
            .collect()
    };
    let t0 = std::time::Instant::now();
    while execs(&agent).len() < 3 {
        assert!(t0.elapsed().as_secs() < 60, "three execve of r1: {:?}", execs(&agent));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for (e, sha) in execs(&agent).iter().zip(&shas) {
        let exe = exe_of(e);
        if exe["sha256"] != "" {
            assert_eq!(&exe["sha256"], sha.as_str(), "the hash of the file that ran: {exe}");
        } else {
            assert!(exe["error"].as_str().unwrap().starts_with("not hashed"), "{exe}");
        }
    }

    // running processes: replaced by rename while they run, their hash is theirs
    let mut kids = Kids::default();
    let mal = variant(dir.path(), "mal", "/bin/sleep", "mal");
    let benign = variant(dir.path(), "benign", "/bin/sleep", "benign");
    let mal_sha = digest("sha256sum", &mal);
    keep_an_inline_hasher_busy(dir.path());
    let pid = kids.spawn(Command::new(&mal).arg("30"));
    std::fs::rename(&benign, &mal).unwrap();
    let e = agent.wait_for("execve of mal", is("execve", pid));
    let exe = exe_of(&e);
    assert_eq!(exe["sha256"], mal_sha, "{exe}");
    assert_eq!(exe["size"], std::fs::metadata(format!("/proc/{pid}/exe")).unwrap().len());
}

#[test]
fn a_same_size_rewrite_with_its_mtime_restored_is_hashed_again() {
    let Some(agent) = start(hashing_config()) else { return };
    let dir = tempfile::tempdir().unwrap();
    let one = variant(dir.path(), "one", "/bin/true", "AAAA");
    let two = variant(dir.path(), "two", "/bin/true", "BBBB");
    let x = dir.path().join("x");
    std::fs::copy(&one, &x).unwrap();
    assert!(Command::new("cp").arg("-p").arg(&x).arg(dir.path().join("ref")).status().unwrap().success());
    let pid = Command::new(&x).spawn().unwrap().id();
    let first = agent.wait_for("first execve of x", is("execve", pid));
    assert_eq!(exe_of(&first)["sha256"], digest("sha256sum", &one));

    // same size, same mtime: only ctime tells
    std::fs::write(&x, std::fs::read(&two).unwrap()).unwrap();
    assert!(Command::new("touch").arg("-r").arg(dir.path().join("ref")).arg(&x).status().unwrap().success());
    let pid = Command::new(&x).spawn().unwrap().id();
    let second = agent.wait_for("second execve of x", is("execve", pid));
    assert_eq!(exe_of(&second)["sha256"], digest("sha256sum", &two), "not the cached hash of the old content");
}

/// `Command` running `/proc/self/fd/3` where fd 3 is a memfd named `name` holding `content`.
fn memfd_exec(name: &'static str, content: Vec<u8>) -> Command {
    let mut cmd = Command::new("/proc/self/fd/3");
    // SAFETY: the closure runs between fork and exec and makes only syscalls.
    unsafe {
        cmd.pre_exec(move || {
            let c = std::ffi::CString::new(name).unwrap();
            let fd = libc::memfd_create(c.as_ptr(), 0);
            if fd < 0 || libc::write(fd, content.as_ptr().cast(), content.len()) != content.len() as isize {
                return Err(std::io::Error::last_os_error());
            }
            if fd != 3 && (libc::dup2(fd, 3) < 0 || libc::close(fd) < 0) {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    cmd
}

#[test]
fn a_memfd_script_named_proc_self_fd_is_the_process_s_not_the_agent_s() {
    let Some(agent) = start(hashing_config()) else { return };
    let dir = tempfile::tempdir().unwrap();
    let body = b"#!/bin/sh\nexec sleep 30\n".to_vec();
    let plain = dir.path().join("body");
    std::fs::write(&plain, &body).unwrap();
    let mut kids = Kids::default();
    let pid = kids.spawn(&mut memfd_exec("ioclab-script", body));
    let e = agent.wait_for("execve_script from a memfd", is("execve_script", pid));
    let exe = exe_of(&e);
    assert_eq!(exe["sha256"], digest("sha256sum", &plain), "{exe}");
    assert_eq!(exe["path"], "/memfd:ioclab-script (deleted)");
}

#[test]
fn a_memfd_binary_is_named_like_proc_shows_it_and_hashed() {
    let Some(agent) = start(hashing_config()) else { return };
    let mut kids = Kids::default();
    let sleep = std::fs::read(realpath("/bin/sleep")).unwrap();
    let pid = kids.spawn(memfd_exec("ioclab-exe", sleep).arg("30"));
    let e = agent.wait_for("execve from a memfd", is("execve", pid));
    let exe = exe_of(&e);
    assert_eq!(exe["path"], "/memfd:ioclab-exe (deleted)", "{exe}");
    assert_eq!(exe["sha256"], digest("sha256sum", &realpath("/bin/sleep")), "{exe}");
    let link = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(exe["path"], link.to_str().unwrap(), "as /proc shows it");
}

#[test]
fn a_binary_deleted_before_or_right_after_it_starts_is_still_hashed() {
    let Some(agent) = start(hashing_config()) else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut kids = Kids::default();

    // unlinked before the exec, run through its descriptor
    let gone = variant(dir.path(), "gone", "/bin/sleep", "gone");
    let sha = digest("sha256sum", &gone);
    let name = std::ffi::CString::new(gone.as_os_str().as_bytes()).unwrap();
    let mut cmd = Command::new("/proc/self/fd/3");
    cmd.arg("30");
    // SAFETY: only syscalls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(name.as_ptr(), libc::O_RDONLY);
            if fd < 0 || libc::unlink(name.as_ptr()) < 0 || (fd != 3 && libc::dup2(fd, 3) < 0) {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    let pid = kids.spawn(&mut cmd);
    let e = agent.wait_for("execve of an unlinked binary", is("execve", pid));
    assert_eq!(exe_of(&e)["path"], format!("{} (deleted)", gone.display()));
    assert_eq!(exe_of(&e)["sha256"], sha);

    // unlinked right after it started
    let brief = variant(dir.path(), "brief", "/bin/sleep", "brief");
    let sha = digest("sha256sum", &brief);
    let pid = kids.spawn(Command::new(&brief).arg("30"));
    std::fs::remove_file(&brief).unwrap();
    let e = agent.wait_for("execve of a binary deleted after it started", is("execve", pid));
    let exe = exe_of(&e);
    assert_eq!(exe["sha256"], sha, "{exe}");
    let path = exe["path"].as_str().unwrap();
    assert!(path == brief.to_str().unwrap() || path == format!("{} (deleted)", brief.display()), "{path}");
}

#[test]
fn a_non_utf8_name_is_opened_by_its_bytes_and_its_hash_ioc_fires() {
    let dir = tempfile::tempdir().unwrap();
    let name = std::ffi::OsStr::from_bytes(b"tru\xffe");
    let bin = variant(dir.path(), name, "/bin/true", "non-utf8");
    // sha256sum prints the name: digest a UTF-8 link to the same file
    std::fs::hard_link(&bin, dir.path().join("ascii")).unwrap();
    let sha = digest("sha256sum", &dir.path().join("ascii"));
    let Some(agent) = start(with_ioc(hashing_config(), dir.path(), &sha, 7)) else { return };
    let pid = Command::new(&bin).spawn().unwrap().id();
    let e = agent.wait_for("detected execve of the non-UTF-8 name", is("execve", pid));
    assert_eq!(exe_of(&e)["sha256"], sha);
    assert_eq!(e["detection"]["iocs"][0], sha.as_str());
    assert_eq!(exe_of(&e)["path"], format!("{}/tru\u{fffd}e", dir.path().display()), "shown lossily");
}

/// Directories made at `/` for a decoy, removed when the test ends.
struct AtRoot(Vec<PathBuf>);

impl Drop for AtRoot {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

/// A decoy at `/` + the last `keep` components of `real` (what a kernel
/// path cut to its tail would name).
fn decoy_for(real: &Path, keep: usize, roots: &mut AtRoot) -> PathBuf {
    let parts: Vec<_> = real.components().skip(1).collect();
    let tail: PathBuf = parts[parts.len() - keep..].iter().collect();
    let decoy = Path::new("/").join(tail);
    std::fs::create_dir_all(decoy.parent().unwrap()).unwrap();
    roots.0.push(Path::new("/").join(parts[parts.len() - keep]));
    std::fs::copy("/bin/true", &decoy).unwrap();
    decoy
}

#[test]
fn truncated_paths_are_marked_and_never_opened_by_their_tail() {
    let Some(agent) = start(hashing_config()) else { return };
    let dir = tempfile::tempdir().unwrap();
    let me = std::process::id();
    let mut roots = AtRoot(Vec::new());
    let mut kids = Kids::default();

    // over 1,023 bytes: the kernel keeps "/" + the last 5 directories + "/r1" (1,008 bytes)
    let mut long = dir.path().to_path_buf();
    for i in 0..6 {
        long.push(format!("{:x<200}", format!("ioclab-{me}-long{i}-")));
    }
    // deeper than 48 directories: the walk keeps r1 and the 47 directories above it
    let mut deep = dir.path().to_path_buf();
    for i in 0..60 {
        deep.push(format!("ioclab{me}d{i}"));
    }
    for (d, keep) in [(long, vec![6]), (deep, vec![47, 48, 49])] {
        std::fs::create_dir_all(&d).unwrap();
        let real = variant(&d, "r1", "/bin/sleep", "deep");
        for k in keep {
            decoy_for(&real, k, &mut roots);
        }
        let pid = kids.spawn(Command::new(&real).arg("30"));
        let e = agent.wait_for("execve of a binary with a truncated path", is("execve", pid));
        let exe = exe_of(&e);
        let path = exe["path"].as_str().unwrap();
        assert!(path.starts_with('…') && path.ends_with("/r1"), "marked as a tail: {path}");
        assert_eq!(exe["sha256"], digest("sha256sum", &real), "hashed through the process, not the decoy: {exe}");
    }

    // arguments over the kernel's 1,024 bytes: the command line says it is cut
    let pid = Command::new("/bin/true").arg("x".repeat(2000)).spawn().unwrap().id();
    let e = agent.wait_for("execve with long arguments", is("execve", pid));
    let cl = e["data"]["command_line"].as_str().unwrap();
    assert!(cl.ends_with('…') && cl.len() < 1100, "{}", &cl[cl.len().saturating_sub(20)..]);
}

#[test]
fn a_script_run_as_its_own_stdin_never_makes_the_agent_read_its_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let s = script(dir.path(), "in.sh", "exec sleep 30");
    // the agent's stdin on a pipe nobody writes to, as `make run` leaves it
    let mut fds = [0; 2];
    // SAFETY: pipe fills two fds; dup/dup2 on valid fds.
    let saved = unsafe {
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        let saved = libc::dup(0);
        libc::dup2(fds[0], 0);
        saved
    };
    let restore = || {
        // SAFETY: closing the pipe's write end (a blocked reader then sees EOF) and restoring stdin.
        unsafe {
            libc::close(fds[1]);
            libc::dup2(saved, 0);
            libc::close(saved);
            libc::close(fds[0]);
        }
    };
    let Some(agent) = start(hashing_config()) else {
        restore();
        return;
    };
    let mut kids = Kids::default();
    let pid = kids
        .spawn(Command::new("/bin/sh").args(["-c", "exec /proc/self/fd/0"]).stdin(std::fs::File::open(&s).unwrap()));
    let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let e = agent.wait_for("execve_script read from stdin", is("execve_script", pid));
        assert_eq!(exe_of(&e)["sha256"], digest("sha256sum", &s), "{}", exe_of(&e));
        assert_eq!(exe_of(&e)["path"], s.to_str().unwrap());
        still_writing(&agent);
    }));
    restore();
    if let Err(e) = checked {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn a_binary_swapped_for_a_symlink_to_dev_zero_never_stalls_the_agent() {
    let Some(agent) = start(hashing_config()) else { return };
    let dir = tempfile::tempdir().unwrap();
    let mal = variant(dir.path(), "mal", "/bin/sleep", "zero");
    let sha = digest("sha256sum", &mal);
    let link = dir.path().join("link");
    std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
    keep_an_inline_hasher_busy(dir.path());
    let mut kids = Kids::default();
    let pid = kids.spawn(Command::new(&mal).arg("30"));
    std::fs::rename(&link, &mal).unwrap();
    let agent = or_abandon(agent, |agent| {
        let e = agent.wait_for("execve of the swapped binary", is("execve", pid));
        assert_eq!(exe_of(&e)["sha256"], sha, "{}", exe_of(&e));
        still_writing(agent);
    });
    agent.stop();
}

/// Fresh binaries of 64 MB (sparse), each its own file.
fn bigs(dir: &Path, n: usize) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            let b = variant(dir, format!("big{i}"), "/bin/true", &format!("big{i}"));
            std::fs::OpenOptions::new().write(true).open(&b).unwrap().set_len(64 << 20).unwrap();
            b
        })
        .collect()
}

#[test]
fn big_new_binaries_do_not_hold_back_the_events_after_them() {
    // events wait for their hashes as long as it takes (config()): only theirs wait
    let Some(agent) = start(hashing_config()) else { return };
    let dir = tempfile::tempdir().unwrap();
    let big_pids: Vec<u32> = bigs(dir.path(), 4).iter().map(|b| Command::new(b).spawn().unwrap().id()).collect();
    let small = variant(dir.path(), "small", "/bin/true", "small");
    let small_pid = Command::new(&small).spawn().unwrap().id();
    let true_pid = Command::new("/bin/true").spawn().unwrap().id();
    let e = agent.wait_for("execve of the small binary", is("execve", small_pid));
    assert_eq!(exe_of(&e)["sha256"], digest("sha256sum", &small), "read before the 256 MB queued ahead of it");
    agent.wait_for("exit_group of /bin/true", is("exit_group", true_pid));
    let events = agent.events();
    let at = |pid: u32| events.iter().position(|e| is("execve", pid)(e));
    let small_at = at(small_pid).unwrap();
    for pid in big_pids {
        assert!(at(pid).is_none_or(|i| i > small_at), "the big binaries' execve come after");
    }
}

#[test]
fn an_event_not_hashed_within_the_budget_is_marked_and_later_ones_carry_the_hashes() {
    let mut c = hashing_config();
    c.hash_budget_ms = 1; // 64 MB are never read in 1 ms
    let Some(agent) = start(c) else { return };
    let dir = tempfile::tempdir().unwrap();
    let big = bigs(dir.path(), 1).remove(0);
    let pid = Command::new(&big).spawn().unwrap().id();
    let e = agent.wait_for("execve of the big binary", is("execve", pid));
    let exe = exe_of(&e);
    assert!(exe["sha256"] == "" && exe["error"].as_str().unwrap().contains("1 ms budget"), "{exe}");
    assert_eq!(exe["path"], big.to_str().unwrap());

    let sha = digest("sha256sum", &big);
    let t0 = std::time::Instant::now();
    let hashed = |events: Vec<Value>| {
        events.iter().any(|e| {
            name(e) == "execve" && exe_of(e)["path"] == big.to_str().unwrap() && exe_of(e)["sha256"] == sha.as_str()
        })
    };
    // runs it again until an execve of it carries the hashes read meanwhile
    while !hashed(agent.events()) {
        Command::new(&big).status().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(t0.elapsed().as_secs() < 300, "never hashed");
    }
}

#[test]
fn a_stop_writes_the_events_still_waiting_for_hashes_at_once() {
    let Some(agent) = start(hashing_config()) else { return };
    let dir = tempfile::tempdir().unwrap();
    let huge = variant(dir.path(), "huge", "/bin/true", "huge");
    // 1 GB: the stop comes long before it is read
    std::fs::OpenOptions::new().write(true).open(&huge).unwrap().set_len(1 << 30).unwrap();
    let pid = Command::new(&huge).spawn().unwrap().id();
    agent.wait_for("exit_group of the huge binary", is("exit_group", pid));
    let (_, events) = agent.stop();
    let e = events.iter().find(|e| is("execve", pid)(e)).expect("its execve is written at the stop");
    let error = exe_of(e)["error"].as_str().unwrap_or_default();
    assert!(error.contains("agent stopped"), "{}", exe_of(e));
}

/// Writes an executable script run by `interpreter` (a `#!` line).
fn script_with(dir: &Path, name: &str, interpreter: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!{interpreter}\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// Waits until `path` exists and holds a line; returns it.
fn wait_line(path: &Path) -> String {
    let t0 = std::time::Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if s.ends_with('\n') {
                return s.trim().to_string();
            }
        }
        assert!(t0.elapsed().as_secs() < 30, "{} never written", path.display());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_script_swapped_around_its_interpreter_s_open_is_hashed_as_the_interpreter_read_it() {
    let Some(agent) = start(hashing_config()) else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut kids = Kids::default();

    // swapped after the exec, before the interpreter opens it: the new file
    // runs. The interpreter starts reading its script a second late.
    let slow = script(d, "slowsh", "sleep 1\nexec /bin/sh \"$@\"");
    let ran = d.join("ran");
    let body = |tag: &str| format!("echo {tag} > {}\nexec sleep 30", ran.display());
    let s = script_with(d, "s.sh", slow.to_str().unwrap(), &body("first"));
    let other = script_with(d, "other.sh", slow.to_str().unwrap(), &body("second"));
    let second = digest("sha256sum", &other);
    let pid = kids.spawn(&mut Command::new(&s));
    // the agent has seen the exec by now; the interpreter is still asleep
    std::thread::sleep(std::time::Duration::from_millis(300));
    std::fs::rename(&other, &s).unwrap();
    let e = agent.wait_for("execve_script of the swapped script", is("execve_script", pid));
    assert_eq!(wait_line(&ran), "second", "the file swapped in is the one that ran");
    assert_eq!(exe_of(&e)["sha256"], second, "{}", exe_of(&e));
    assert_eq!(exe_of(&e)["path"], s.to_str().unwrap());

    // swapped once the interpreter has it open: the first file runs (and is
    // reached through the interpreter's descriptor, its name now another's)
    let moved = d.join("moved");
    let a = d.join("a.sh");
    let b = script(d, "b.sh", "exit 0 # the decoy");
    let a = script(
        d,
        "a.sh",
        &format!("mv -f {} {}\necho moved > {}\nsleep 30 & wait", b.display(), a.display(), moved.display()),
    );
    let first = digest("sha256sum", &a);
    let pid = kids.spawn(&mut Command::new(&a));
    assert_eq!(wait_line(&moved), "moved");
    let e = agent.wait_for("execve_script of the script renamed over", is("execve_script", pid));
    assert_eq!(exe_of(&e)["sha256"], first, "{}", exe_of(&e));
}

/// `cmd` run in a mount namespace of its own (private: nothing mounted
/// there reaches the host), after `setup` ran in it.
fn in_own_mount_ns(cmd: &mut Command, setup: impl Fn() -> std::io::Result<()> + Send + Sync + 'static) -> &mut Command {
    // SAFETY: only syscalls between fork and exec (`setup` too).
    unsafe {
        cmd.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWNS) != 0
                || libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            setup()
        })
    }
}

fn c_path(p: &Path) -> std::ffi::CString {
    std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// A namespace setup that bind-mounts `src` over `dst`.
fn bind_mount(src: &Path, dst: &Path) -> impl Fn() -> std::io::Result<()> + Send + Sync + 'static {
    let (src, dst) = (c_path(src), c_path(dst));
    move || {
        // SAFETY: valid C strings.
        let r = unsafe { libc::mount(src.as_ptr(), dst.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

/// A namespace setup that mounts a tmpfs on `dir` and writes `content` to
/// `file` in it: a file only that namespace has.
fn tmpfs_holding(
    dir: &Path,
    file: &Path,
    content: &'static [u8],
) -> impl Fn() -> std::io::Result<()> + Send + Sync + 'static {
    let (cdir, cfile, tmpfs) = (c_path(dir), c_path(file), c"tmpfs");
    move || {
        // SAFETY: valid C strings and buffer; plain syscalls.
        unsafe {
            if libc::mount(tmpfs.as_ptr(), cdir.as_ptr(), tmpfs.as_ptr(), 0, std::ptr::null()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let fd = libc::open(cfile.as_ptr(), libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC, 0o755);
            if fd < 0
                || libc::write(fd, content.as_ptr().cast(), content.len()) != content.len() as isize
                || libc::close(fd) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

#[test]
fn a_script_of_a_namespace_with_no_process_left_is_read_under_its_lent_root() {
    use std::os::fd::AsRawFd;
    let Some(agent) = start(hashing_config()) else { return };
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let script = sub.join("gone.sh");
    const BODY: &[u8] = b"#!/bin/sh\nexit 0 # only in a namespace whose processes are all gone\n";
    let plain = dir.path().join("plain");
    std::fs::write(&plain, BODY).unwrap();

    // the namespace, made by a holder that then ends (as the lab makes its
    // steps' namespace): the test keeps it and lends its root to the agent
    let mut holder = Command::new("sleep");
    holder.arg("600");
    let mut holder = in_own_mount_ns(&mut holder, tmpfs_holding(&sub, &script, BODY)).spawn().unwrap();
    let ns = std::fs::File::open(format!("/proc/{}/ns/mnt", holder.id())).unwrap();
    let lent = agent.control.roots.lend_of(holder.id()).unwrap();
    holder.kill().unwrap();
    holder.wait().unwrap();

    // the script exits at once: when the agent reads it, neither it nor any
    // process of its namespace (whose root would lead there) is left
    let ns_fd = ns.as_raw_fd();
    let mut cmd = Command::new(&script);
    // SAFETY: setns only, between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(ns_fd, libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    assert!(child.wait().unwrap().success());
    let e = agent.wait_for("execve_script of a namespace with no process left", is("execve_script", pid));
    assert_eq!(exe_of(&e)["sha256"], digest("sha256sum", &plain), "{}", exe_of(&e));
    drop(lent);
}

#[test]
fn a_script_in_another_mount_namespace_is_hashed_as_that_namespace_sees_it() {
    let Some(agent) = start(hashing_config()) else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut kids = Kids::default();

    // a file bind-mounted over the script's name in the namespace
    let host = script(d, "ns.sh", "exec sleep 30 # the host's");
    let inner = script(d, "inner", "exec sleep 30 # the namespace's");
    let inner_sha = digest("sha256sum", &inner);
    let pid = kids.spawn(in_own_mount_ns(&mut Command::new(&host), bind_mount(&inner, &host)));
    let e = agent.wait_for("execve_script under a bind mount", is("execve_script", pid));
    assert_eq!(exe_of(&e)["sha256"], inner_sha, "{}", exe_of(&e));
    assert_eq!(exe_of(&e)["path"], host.to_str().unwrap());

    // a private tmpfs holding its own file of the host file's name
    let sub = d.join("sub");
    std::fs::create_dir(&sub).unwrap();
    let host2 = script(&sub, "t.sh", "exec sleep 30 # the host's tmp");
    let own = b"#!/bin/sh\nexec sleep 30 # only in the namespace's tmpfs\n";
    let plain = d.join("own");
    std::fs::write(&plain, own).unwrap();
    let private_tmp = tmpfs_holding(&sub, &host2, own);
    let pid = kids.spawn(in_own_mount_ns(&mut Command::new(&host2), private_tmp));
    let e = agent.wait_for("execve_script from a private tmpfs", is("execve_script", pid));
    assert_eq!(exe_of(&e)["sha256"], digest("sha256sum", &plain), "{}", exe_of(&e));
    assert_ne!(exe_of(&e)["sha256"], digest("sha256sum", &host2));

    // gone before the agent looks: hashed as the namespace saw it, or not at
    // all, never the host's file
    let short = script(d, "short.sh", "exit 0 # the host's, never run");
    let short_inner = script(d, "short-inner", "exit 0 # the namespace's");
    let pid = kids.spawn(in_own_mount_ns(&mut Command::new(&short), bind_mount(&short_inner, &short)));
    let e = agent.wait_for("execve_script of a short script under a bind mount", is("execve_script", pid));
    let exe = exe_of(&e);
    assert_ne!(exe["sha256"], digest("sha256sum", &short), "{exe}");
    assert!(exe["sha256"] == digest("sha256sum", &short_inner).as_str() || exe["error"].is_string(), "{exe}");
}

#[test]
fn a_script_its_interpreter_never_opens_has_no_hash_and_says_why() {
    let Some(agent) = start(hashing_config()) else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // /bin/true ignores the script it is given and exits: the event comes at
    // its exit, long before the budget (600 s in tests)
    let never = script_with(d, "never.sh", "/bin/true", "echo never read");
    let pid = Command::new(&never).spawn().unwrap().id();
    let e = agent.wait_for("execve_script of a script never opened", is("execve_script", pid));
    let exe = exe_of(&e);
    assert_eq!(exe["sha256"], "", "{exe}");
    assert!(exe["error"].as_str().unwrap_or_default().contains("did not open"), "{exe}");
}

/// An interpreter line that opens its script by its canonical absolute name.
const CANONICAL: &str =
    "/usr/bin/env -S python3 -c \"import os,sys; exec(open(os.path.realpath(sys.argv[1])).read())\"";

#[test]
fn scripts_of_common_interpreters_are_hashed_through_env_and_wrapper_shims() {
    let Some(agent) = start(hashing_config()) else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // env execs the interpreter; python3 may be a pyenv shim (a script
    // itself, exec'ing more) before the real python opens the script by an
    // absolute name it makes of the relative one
    let cases = [
        ("env.sh", "/usr/bin/env sh", "exit 0"),
        ("b.bash", "/bin/bash", "exit 0"),
        ("p.pl", "/usr/bin/perl", "exit 0;"),
        ("p.py", "/usr/bin/env python3", "import sys; sys.exit(0)"),
        // an interpreter that opens the canonical name (as Node.js does: /dir/c.py for ./c.py)
        ("c.py", CANONICAL, "import sys; sys.exit(0)"),
    ];
    for (name, interpreter, body) in cases {
        let s = script_with(d, name, interpreter, body);
        let child = Command::new(format!("./{name}")).current_dir(d).spawn().unwrap();
        let pid = child.id();
        assert!(child.wait_with_output().unwrap().status.success(), "{name}");
        // the shim's own exec is another execve_script of the process
        let e = agent.wait_for(name, |e| is("execve_script", pid)(e) && exe_of(e)["path"] == s.to_str().unwrap());
        assert_eq!(exe_of(&e)["sha256"], digest("sha256sum", &s), "{name}: {}", exe_of(&e));
    }
}

#[test]
fn with_the_process_events_alone_a_script_is_not_hashed_by_its_name() {
    // no syscall program attached: the interpreter's open is not seen
    let mut c = hashing_config();
    for (name, switch) in c.events.iter_mut() {
        switch.enable = ["execve", "execve_script", "exit", "exit_group", "clone"].contains(&name.as_str());
    }
    let Some(agent) = start(c) else { return };
    let dir = tempfile::tempdir().unwrap();
    let s = script(dir.path(), "plain.sh", "exit 0");
    let pid = Command::new(&s).spawn().unwrap().id();
    let e = agent.wait_for("execve_script with the process events alone", is("execve_script", pid));
    let exe = exe_of(&e);
    assert_eq!(exe["sha256"], "", "{exe}");
    assert!(exe["error"].as_str().unwrap_or_default().contains("seen only with a file or system event"), "{exe}");
    assert_eq!(exe["path"], s.to_str().unwrap());
}
