//! Live file and system events: each produced by a real action of the test
//! (or of a child it starts), checked field by field.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

fn data_is(kind: &'static str, pid: u32, field: &'static str, value: String) -> impl Fn(&Value) -> bool {
    move |e| is(kind, pid)(e) && e["data"][field] == value.as_str()
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

#[test]
fn create_write_rename_unlink_by_absolute_and_relative_names() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = realpath(tmp.path().to_str().unwrap());
    let mut c = config();
    // write and write_close are off by default, as in Kunai
    c.events.insert("write".into(), ioclab_agent::config::EventSwitch { enable: true });
    c.events.insert("write_close".into(), ioclab_agent::config::EventSwitch { enable: true });
    let Some(agent) = start(c) else { return };

    let (a, b) = (dir.join("a.txt"), dir.join("b.txt"));
    let me = in_child(|| {
        let mut f = std::fs::File::create(&a).unwrap();
        f.write_all(b"hello").unwrap();
        drop(f);
        std::fs::rename(&a, &b).unwrap();
        std::fs::remove_file(&b).unwrap();
        assert!(std::fs::remove_file(&b).is_err());
    });

    agent.wait_for("file_create", data_is("file_create", me, "path", s(&a)));
    agent.wait_for("write", data_is("write", me, "path", s(&a)));
    agent.wait_for("write_close", data_is("write_close", me, "path", s(&a)));
    let r = agent.wait_for("file_rename", data_is("file_rename", me, "old", s(&a)));
    assert_eq!(r["data"]["new"], s(&b));
    let unlinks: Vec<Value> =
        agent.events().into_iter().filter(|e| is("file_unlink", me)(e) && e["data"]["path"] == s(&b)).collect();
    assert_eq!(unlinks.len(), 2, "{unlinks:?}");
    assert_eq!(unlinks[0]["data"]["success"], true);
    assert_eq!(unlinks[1]["data"]["success"], false, "the second unlink failed");

    // relative names are made absolute against the process's working directory
    let child = Command::new("sh")
        .arg("-c")
        .arg("cd \"$1\" && : > rel && mv rel ./sub-rel && rm ../$(basename \"$1\")/sub-rel")
        .arg("sh")
        .arg(&dir)
        .spawn()
        .unwrap();
    let pid = child.id();
    child.wait_with_output().unwrap();
    agent.wait_for("relative file_create", data_is("file_create", pid, "path", s(&dir.join("rel"))));
    let mv = agent.wait_for("relative rename", |e| name(e) == "file_rename" && e["data"]["old"] == s(&dir.join("rel")));
    assert_eq!(mv["data"]["new"], s(&dir.join("sub-rel")));
    agent.wait_for("relative unlink", |e| name(e) == "file_unlink" && e["data"]["path"] == s(&dir.join("sub-rel")));
}

#[test]
fn config_files_read_and_written() {
    // a directory of our own under /etc, removed at the end
    let etc = tempfile::Builder::new().prefix("ioclab-test-").tempdir_in("/etc").unwrap();
    let conf = etc.path().join("app.conf");
    let Some(agent) = start(config()) else { return };
    let me = in_child(|| {
        std::fs::write(&conf, "key = value\n").unwrap();
        assert_eq!(std::fs::read_to_string(&conf).unwrap(), "key = value\n");
    });
    agent.wait_for("write_config", data_is("write_config", me, "path", s(&conf)));
    agent.wait_for("read_config", data_is("read_config", me, "path", s(&conf)));
    agent.wait_for("file_create", data_is("file_create", me, "path", s(&conf)));
    let (_, events) = agent.stop();
    assert!(
        !events.iter().any(|e| is("write", me)(e) && e["data"]["path"] == s(&conf)),
        "a config write is write_config, not write (which is off by default anyway)"
    );
}

#[test]
fn mmap_exec_hashes_the_mapped_file_and_mprotect_exec() {
    let dir = tempfile::tempdir().unwrap();
    let copy = realpath(dir.path().to_str().unwrap()).join("true-copy");
    std::fs::copy("/bin/true", &copy).unwrap();
    let sha = digest("sha256sum", &copy);
    let Some(agent) = start(config()) else { return };

    // the child maps the file, and an anonymous page it then makes executable;
    // it writes the page's address to a pipe
    let mut fds = [0; 2];
    // SAFETY: a pipe for the child's answer.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let me = in_child(|| {
        let f = std::fs::File::open(&copy).unwrap();
        use std::os::fd::AsRawFd;
        // SAFETY: fresh private mappings in the child, which exits right after.
        let page = unsafe {
            let m = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_EXEC,
                libc::MAP_PRIVATE,
                f.as_raw_fd(),
                0,
            );
            assert_ne!(m, libc::MAP_FAILED);
            let page = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(page, libc::MAP_FAILED);
            assert_eq!(libc::mprotect(page, 4096, libc::PROT_READ | libc::PROT_EXEC), 0);
            page as usize
        };
        // SAFETY: writing 8 bytes to the pipe's write end.
        unsafe { libc::write(fds[1], (&page as *const usize).cast(), 8) };
    });
    let mut page = 0usize;
    // SAFETY: reading the 8 bytes the child wrote.
    unsafe { libc::read(fds[0], (&mut page as *mut usize).cast(), 8) };
    let ev = agent.wait_for("mmap_exec", |e| is("mmap_exec", me)(e) && e["data"]["mapped"]["path"] == s(&copy));
    assert_eq!(ev["data"]["mapped"]["sha256"], sha);
    assert_eq!(ev["data"]["mapped"]["size"], std::fs::metadata(&copy).unwrap().len());
    let addr = format!("0x{page:x}");
    let mp = agent.wait_for("mprotect_exec", data_is("mprotect_exec", me, "addr", addr));
    assert_eq!(mp["data"]["prot"], format!("0x{:x}", libc::PROT_READ | libc::PROT_EXEC));
}

#[test]
fn kill_ptrace_and_prctl() {
    let Some(agent) = start(config()) else { return };

    let mut victim = Command::new("sleep").arg("30").spawn().unwrap();
    let vpid = victim.id();
    // the agent has seen the victim's exec (spawn returns as soon as exec starts)
    agent.wait_for("the victim's execve", is("execve", vpid));
    let me = in_child(|| {
        // SAFETY: seize, then signal, a process of the test; name the child itself.
        unsafe {
            assert_eq!(libc::ptrace(libc::PTRACE_SEIZE, vpid as libc::pid_t, 0, 0), 0, "ptrace seize");
            assert_eq!(libc::kill(vpid as libc::pid_t, libc::SIGTERM), 0);
            assert_eq!(libc::prctl(libc::PR_SET_NAME, c"ioclab-prctl".as_ptr()), 0);
        }
    });
    let _ = victim.wait();

    let k = agent.wait_for("kill", |e| is("kill", me)(e) && e["data"]["target"]["task"]["pid"] == vpid);
    assert_eq!(k["data"]["signal"], "SIGTERM");
    assert!(k["data"]["target"]["exe"]["path"].as_str().unwrap().ends_with("/sleep"), "{}", k["data"]["target"]);
    assert_eq!(k["data"]["target"]["command_line"], "sleep 30");
    let p = agent.wait_for("ptrace", |e| is("ptrace", me)(e) && e["data"]["target"]["task"]["pid"] == vpid);
    assert_eq!(p["data"]["mode"], format!("0x{:x}", libc::PTRACE_SEIZE));
    assert!(p["data"]["target"]["exe"]["path"].as_str().unwrap().ends_with("/sleep"));
    let pr = agent.wait_for("prctl", |e| is("prctl", me)(e) && e["data"]["option"] == "PR_SET_NAME");
    assert_eq!(pr["data"]["success"], true);
}

#[test]
fn bpf_program_and_socket_filter() {
    let Some(agent) = start(config()) else { return };

    // a classic BPF filter of one instruction: accept the whole packet
    let filter: [u8; 8] = [0x06, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00];
    #[repr(C)]
    struct SockFprog {
        len: u16,
        filter: *const u8,
    }
    let me = in_child(|| {
        let prog = SockFprog { len: 1, filter: filter.as_ptr() };
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        use std::os::fd::AsRawFd;
        // SAFETY: setsockopt with a valid sock_fprog for the call's duration.
        let r = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                &prog as *const _ as *const libc::c_void,
                std::mem::size_of::<SockFprog>() as u32,
            )
        };
        assert_eq!(r, 0, "SO_ATTACH_FILTER");

        // an eBPF socket filter program: r0 = 0; exit
        let insns: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];
        let license = c"GPL";
        let mut attr = [0u8; 128];
        attr[0..4].copy_from_slice(&1u32.to_ne_bytes()); // BPF_PROG_TYPE_SOCKET_FILTER
        attr[4..8].copy_from_slice(&2u32.to_ne_bytes());
        attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
        attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
        attr[48..56].copy_from_slice(b"ioclab_t");
        // SAFETY: bpf(BPF_PROG_LOAD) with a zeroed attr holding valid pointers.
        let fd = unsafe { libc::syscall(libc::SYS_bpf, 5, attr.as_ptr(), attr.len()) };
        assert!(fd >= 0, "BPF_PROG_LOAD: {}", std::io::Error::last_os_error());
        // keep the program loaded while the agent fetches its instructions by id
        // (a program whose last fd is closed is gone, and its digests with it)
        std::thread::sleep(std::time::Duration::from_secs(1));
    });

    let f = agent.wait_for("bpf_socket_filter", |e| is("bpf_socket_filter", me)(e));
    let d = &f["data"];
    assert_eq!(d["attached"], true);
    assert_eq!(d["socket"]["domain"], "AF_INET");
    assert_eq!(d["socket"]["type"], "SOCK_DGRAM");
    assert_eq!(d["filter"]["len"], 1);
    use sha2::Digest;
    let want: String = sha2::Sha256::digest(filter).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(d["filter"]["sha256"], want);

    let p = agent.wait_for("bpf_prog_load", |e| is("bpf_prog_load", me)(e) && e["data"]["name"] == "ioclab_t");
    let d = &p["data"];
    assert_eq!(d["loaded"], true);
    assert_eq!(d["prog_type"]["name"], "BPF_PROG_TYPE_SOCKET_FILTER");
    assert!(d["id"].as_u64().unwrap() > 0);
    assert_eq!(d["tag"].as_str().unwrap().len(), 16);
    assert_eq!(d["bpf_prog"]["size"], 16, "two instructions as the kernel keeps them");
}

#[test]
fn a_file_storm_is_throttled_with_one_error_and_process_events_still_flow() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config();
    c.max_eps_fs = 50;
    let Some(agent) = start(c) else { return };
    let child = Command::new("sh")
        .arg("-c")
        .arg("cd \"$1\" && i=0; while [ $i -lt 400 ]; do : > f$i; i=$((i+1)); done; /bin/true")
        .arg("sh")
        .arg(dir.path())
        .spawn()
        .unwrap();
    let pid = child.id();
    child.wait_with_output().unwrap();
    let err = agent.wait_for("throttle error", is("error", pid));
    let msg = err["data"]["message"].as_str().unwrap();
    assert!(msg.contains("throttled") && msg.contains(&format!("pid {pid}")) && msg.contains("50"), "{msg}");
    // the storm's process still shows its exec of /bin/true
    agent
        .wait_for("process events after the storm", |e| name(e) == "execve" && e["info"]["parent_task"]["tgid"] == pid);
    let (_, events) = agent.stop();
    let created = events.iter().filter(|e| is("file_create", pid)(e)).count();
    // the shell's start (read_config of ld.so.cache) counts in the same budget
    assert!((40..400).contains(&created), "{created} file_create of 400: capped at 50 a second");
    // the errors that say the throttle kicks in (the others count what it dropped: live_throttle.rs)
    let errors = events
        .iter()
        .filter(|e| is("error", pid)(e) && !e["data"]["message"].as_str().unwrap().contains("dropped in a second"))
        .count();
    assert!(errors <= 1 + created / 50, "one error per throttled second, got {errors}");
}

#[test]
fn iocs_on_a_created_path_and_on_a_mapped_file_hash() {
    let dir = tempfile::tempdir().unwrap();
    let root = realpath(dir.path().to_str().unwrap());
    let dropped = root.join("payload.bin");
    let lib = root.join("evil.so");
    std::fs::copy("/bin/true", &lib).unwrap();
    let sha = digest("sha256sum", &lib);
    let iocs = root.join("iocs.json");
    std::fs::write(
        &iocs,
        format!(
            "{{\"uuid\":\"1\",\"source\":\"t\",\"value\":\"{}\",\"severity\":6}}\n{{\"uuid\":\"2\",\"source\":\"t\",\"value\":\"{sha}\",\"severity\":7}}\n",
            dropped.display()
        ),
    )
    .unwrap();
    let mut c = config();
    c.scanner.iocs = vec![iocs];
    let Some(agent) = start(c) else { return };
    let me = in_child(|| {
        std::fs::write(&dropped, b"x").unwrap();
        let f = std::fs::File::open(&lib).unwrap();
        use std::os::fd::AsRawFd;
        // SAFETY: a private read+exec mapping in the child, which exits right after.
        let m = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_EXEC,
                libc::MAP_PRIVATE,
                f.as_raw_fd(),
                0,
            )
        };
        assert_ne!(m, libc::MAP_FAILED);
    });
    let c = agent.wait_for("detected file_create", |e| is("file_create", me)(e) && !e["detection"].is_null());
    assert_eq!(c["detection"]["iocs"][0], s(&dropped));
    let m2 = agent.wait_for("detected mmap_exec", |e| is("mmap_exec", me)(e) && !e["detection"].is_null());
    assert_eq!(m2["detection"]["iocs"][0], sha);
    assert_eq!(m2["detection"]["severity"], 7);
}
