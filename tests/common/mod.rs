//! What the command-line tests outside cli.rs share: running `ioclab`,
//! children reaped when a test ends, the embedded MISP on a loopback port.

#![allow(dead_code)] // each test file uses its own part

pub mod endpoint_sim;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn ioclab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ioclab"))
}

/// Runs `ioclab args`: exit code, stdout, stderr.
pub fn run(args: &[&str]) -> (i32, String, String) {
    output(ioclab().args(args))
}

/// Runs a prepared command: exit code, stdout, stderr.
pub fn output(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A child killed when the test ends, failed assertions included.
pub struct Reaped(pub std::process::Child);

impl std::ops::Deref for Reaped {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free loopback TCP port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until something listens on the loopback `port`.
pub fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A key made by `ioclab misp keys create --role role` in the store `db`.
pub fn misp_key(db: &Path, email: &str, role: &str) -> String {
    let (code, key, err) =
        run(&["misp", "keys", "create", "--email", email, "--role", role, "--db", db.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let key = key.trim().to_string();
    assert_eq!(key.len(), 40, "the key alone on stdout: {key:?}");
    key
}

/// `ioclab misp serve` on a free loopback port over the store `db`; returns it and its URL.
pub fn misp_serve(db: &Path) -> (Reaped, String) {
    let port = free_port();
    let server = Reaped(
        ioclab()
            .args(["misp", "serve", "--listen", &format!("127.0.0.1:{port}"), "--db", db.to_str().unwrap()])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_listening(port, "ioclab misp serve");
    (server, format!("http://127.0.0.1:{port}"))
}

/// misp-to-kunai's config.toml for the MISP at `url`, written in `dir`.
pub fn misp_config(dir: &Path, url: &str, key: &str) -> std::path::PathBuf {
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        format!("[misp]\nname = \"lab-misp\"\nurl = \"{url}\"\nkey = \"{key}\"\nssl = true\nenable = true\n"),
    )
    .unwrap();
    cfg
}
