//! `ioclab serve` started on a temporary data directory with a trainee
//! account, everything on loopback ports: shared by the browser tests and
//! the web benchmark (benches/web.rs includes this file).

#![allow(dead_code)] // each user takes part

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The binary under test.
fn ioclab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ioclab"))
}

/// A child killed when dropped (a failed assertion included).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `ioclab serve` with a trainee account.
pub struct Appliance {
    child: Killed,
    /// The web UI's base URL, without the final `/`.
    pub web: String,
    /// The first instructor's password (printed on the first start only).
    pub instructor_pw: Option<String>,
    /// The trainee's API token.
    pub token: String,
    /// Everything it printed before serving.
    pub printed: String,
    /// Whether it runs scenarios live (agent, sandbox, MISP) rather than replays.
    pub live: bool,
    stderr: PathBuf,
    /// The data directory (removed with the appliance).
    dir: tempfile::TempDir,
}

/// The trainee every appliance gets.
pub const TRAINEE: (&str, &str) = ("alice", "alice-password-1");

/// The shipped scenario catalogue.
pub fn scenarios() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("lab-scenarios")
}

impl Appliance {
    /// Starts `ioclab serve` (live unless `replay`) on a fresh data directory
    /// holding [`TRAINEE`], and waits until it serves.
    pub fn start(replay: bool) -> Appliance {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let out = ioclab()
            .args(["users", "--data"])
            .arg(&data)
            .args(["add", TRAINEE.0, "--password", TRAINEE.1, "--token"])
            .output()
            .unwrap();
        let printed = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "ioclab users add: {}", String::from_utf8_lossy(&out.stderr));
        let token = printed.split("API token: ").nth(1).expect("a token").trim().to_string();
        Appliance::again(dir, token, replay)
    }

    /// Starts `ioclab serve` again on the data directory of a stopped appliance.
    pub fn again(dir: tempfile::TempDir, token: String, replay: bool) -> Appliance {
        let data = dir.path().join("data");
        let config = dir.path().join("appliance.toml");
        std::fs::write(
            &config,
            "listen = \"127.0.0.1:0\"\nmisp_listen = \"127.0.0.1:0\"\nsandbox_listen = \"127.0.0.1:0\"\nendpoints_listen = \"127.0.0.1:0\"\nreplay_speed = 20.0\n",
        )
        .unwrap();
        let stderr = dir.path().join("serve.stderr");
        let mut cmd = ioclab();
        cmd.arg("serve").arg("--config").arg(&config).arg("--data").arg(&data).arg("--dir").arg(scenarios());
        if replay {
            cmd.arg("--replay");
        }
        cmd.env("RUST_LOG", "info").stdout(Stdio::piped()).stderr(std::fs::File::create(&stderr).unwrap());
        let mut child = Killed(cmd.spawn().unwrap());
        let mut out = BufReader::new(child.0.stdout.take().unwrap());
        let mut printed = String::new();
        loop {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap() == 0 {
                panic!(
                    "ioclab serve ended before serving:\n{printed}\n{}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                );
            }
            printed.push_str(&line);
            if line.starts_with("Ctrl-C stops everything") {
                break;
            }
        }
        let after = |label: &str| -> String {
            let line =
                printed.lines().find(|l| l.contains(label)).unwrap_or_else(|| panic!("no {label:?}:\n{printed}"));
            line.split(label).nth(1).unwrap().split_whitespace().next().unwrap().to_string()
        };
        let web = after("web UI:").trim_end_matches('/').to_string();
        let instructor_pw = printed.contains("first login: ").then(|| after("first login: instructor / "));
        let live = printed.contains("mode:        live");
        Appliance { child, web, instructor_pw, printed, live, stderr, dir, token }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// Sends SIGINT, waits for a clean exit, and gives back the data directory.
    pub fn stop(mut self) -> tempfile::TempDir {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.0.id() as i32, libc::SIGINT) };
        let status = self.child.0.wait().unwrap();
        assert!(status.success(), "ioclab serve after SIGINT: {status}\n{}", self.log());
        let Appliance { dir, .. } = self;
        dir
    }
}
