//! `ioclab install` and `ioclab uninstall` for real, into a staging root:
//! twice each (the second run changes nothing and says so), the files, their
//! modes and the unit (checked by `systemd-analyze verify`), an edited
//! configuration kept, nothing left after `--purge`. And the unit's
//! capability set: the appliance and a detonation work under exactly it,
//! and lose what a dropped capability gives.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{in_ci, ioclab, output, Reaped};
use ioclab_web::config::ApplianceConfig;

fn scenarios() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("lab-scenarios")
}

fn install(root: &Path, extra: &[&str]) -> String {
    let (code, out, err) =
        output(ioclab().arg("install").arg("--root").arg(root).arg("--scenarios").arg(scenarios()).args(extra));
    assert_eq!(code, 0, "install failed:\n{out}\n{err}");
    out
}

fn uninstall(root: &Path, extra: &[&str]) -> String {
    let (code, out, err) = output(ioclab().arg("uninstall").arg("--root").arg(root).args(extra));
    assert_eq!(code, 0, "uninstall failed:\n{out}\n{err}");
    out
}

/// The outcome printed for `what` ("binary", "unit"...).
fn outcome<'a>(out: &'a str, what: &str) -> &'a str {
    let line =
        out.lines().find(|l| l.split_whitespace().next() == Some(what)).unwrap_or_else(|| panic!("{what}: {out}"));
    line.split_whitespace().skip(2).collect::<Vec<_>>().join(" ").leak()
}

/// Every file and folder under `root`: its mode, and its content's length and first bytes.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
    let mut m = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let content = if meta.is_file() { std::fs::read(&p).unwrap() } else { Vec::new() };
            if meta.is_dir() {
                stack.push(p.clone());
            }
            m.insert(p.strip_prefix(root).unwrap().to_path_buf(), (meta.permissions().mode() & 0o7777, content));
        }
    }
    m
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o7777
}

/// `systemd-analyze verify` of the staged `units`, with the system's units copied into the root.
fn verify_units(root: &Path, units_to_check: &[&str]) {
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        assert!(!in_ci(), "CI=true and systemd-analyze is missing (scripts/setup.sh installs systemd)");
        eprintln!("SKIPPED (not in CI): systemd-analyze verify: no systemd-analyze here");
        return;
    }
    let units = root.join("usr/lib/systemd/system");
    std::fs::create_dir_all(&units).unwrap();
    for dir in ["/usr/lib/systemd/system", "/lib/systemd/system"] {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_file()) {
                let _ = std::fs::copy(e.path(), units.join(e.file_name()));
            }
        }
    }
    let out =
        Command::new("systemd-analyze").arg("verify").arg("--root").arg(root).args(units_to_check).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {err}");
    for unit in units_to_check {
        assert!(!err.contains(unit), "systemd-analyze has remarks on {unit}: {err}");
    }
    std::fs::remove_dir_all(root.join("usr/lib")).unwrap();
}

#[test]
fn install_twice_then_uninstall_twice_leaves_nothing_but_an_edited_config_until_purge() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let out = install(root, &["--systemd", "--listen", "0.0.0.0:8000"]);
    for what in ["binary", "scenarios", "config", "data", "unit"] {
        assert_eq!(outcome(&out, what), "installed", "{out}");
    }
    assert!(out.contains("systemd not touched"), "a staging root never calls systemctl: {out}");

    let bin = root.join("usr/local/bin/ioclab");
    assert_eq!(mode(&bin), 0o755);
    assert_eq!(std::fs::read(&bin).unwrap(), std::fs::read(env!("CARGO_BIN_EXE_ioclab")).unwrap());
    let (code, version, _) = output(Command::new(&bin).arg("--version"));
    assert!(code == 0 && version.starts_with("ioclab "), "the copy runs: {version}");
    let catalogue = root.join("usr/local/share/ioclab/scenarios");
    assert_eq!(
        std::fs::read(catalogue.join("persistence-cron/scenario.yaml")).unwrap(),
        std::fs::read(scenarios().join("persistence-cron/scenario.yaml")).unwrap()
    );
    assert_eq!(
        mode(&catalogue.join("persistence-cron/sample.sh")),
        mode(&scenarios().join("persistence-cron/sample.sh"))
    );
    let config_path = root.join("etc/ioclab/appliance.toml");
    assert_eq!(mode(&config_path), 0o644);
    let config = ApplianceConfig::read(&config_path).unwrap();
    assert_eq!(config.listen, "0.0.0.0:8000".parse().unwrap());
    assert_eq!(config.scenarios, Path::new("/usr/local/share/ioclab/scenarios"), "the installed catalogue");
    assert_eq!(config.data, Path::new("/var/lib/ioclab"));
    assert_eq!(mode(&root.join("var/lib/ioclab")), 0o750);
    let unit_path = root.join("etc/systemd/system/ioclab.service");
    assert_eq!(mode(&unit_path), 0o644);
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    for line in [
        "ExecStart=/usr/local/bin/ioclab serve --config /etc/ioclab/appliance.toml",
        "Restart=on-failure",
        "StateDirectory=ioclab",
        "NoNewPrivileges=yes",
        "WantedBy=multi-user.target",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} in the unit:\n{unit}");
    }
    verify_units(root, &["ioclab.service"]);

    let before = snapshot(root);
    let out = install(root, &["--systemd", "--listen", "127.0.0.1:9000"]);
    for what in ["binary", "scenarios", "config", "data", "unit"] {
        assert_eq!(outcome(&out, what), "already installed", "{out}");
    }
    assert!(snapshot(root) == before, "a second install changed files");

    // an administrator's edit survives install and uninstall
    std::fs::write(&config_path, std::fs::read_to_string(&config_path).unwrap().replace("0.0.0.0:8000", "0.0.0.0:80"))
        .unwrap();
    std::fs::write(root.join("var/lib/ioclab/web.db"), "accounts").unwrap();
    let out = install(root, &["--systemd", "--listen", "127.0.0.1:9000"]);
    assert!(outcome(&out, "config").starts_with("kept (edited"), "{out}");
    assert!(out.contains("--listen was not written"), "{out}");
    assert!(std::fs::read_to_string(&config_path).unwrap().contains("0.0.0.0:80\""));

    let out = uninstall(root, &[]);
    for what in ["unit", "binary", "scenarios"] {
        assert_eq!(outcome(&out, what), "removed", "{out}");
    }
    assert!(outcome(&out, "config").starts_with("kept (edited"), "{out}");
    assert!(outcome(&out, "data").starts_with("kept"), "{out}");
    assert!(!bin.exists() && !unit_path.exists() && !root.join("usr/local/share/ioclab").exists());
    assert!(config_path.exists() && root.join("var/lib/ioclab/web.db").exists());
    let out = uninstall(root, &[]);
    for what in ["unit", "binary", "scenarios"] {
        assert_eq!(outcome(&out, what), "already absent", "{out}");
    }

    let out = uninstall(root, &["--purge"]);
    assert_eq!(outcome(&out, "config"), "removed", "{out}");
    assert_eq!(outcome(&out, "data"), "removed", "{out}");
    let out = uninstall(root, &["--purge"]);
    for what in ["unit", "binary", "scenarios", "config", "data"] {
        assert_eq!(outcome(&out, what), "already absent", "{out}");
    }
    // only the standard empty folders remain (usr/local/bin, etc/systemd/system, var/lib)
    let left: Vec<_> = snapshot(root).into_keys().filter(|p| !root.join(p).is_dir() || p.ends_with("ioclab")).collect();
    assert!(left.is_empty(), "left after uninstall --purge: {left:?}");
}

#[test]
fn an_untouched_config_goes_with_uninstall_and_the_data_stays() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    install(root, &["--prefix", "/opt/ioclab", "--data", "/srv/ioclab"]);
    assert!(root.join("opt/ioclab/bin/ioclab").is_file() && root.join("srv/ioclab").is_dir());
    assert!(!root.join("etc/systemd/system/ioclab.service").exists(), "no unit without --systemd");
    let out = uninstall(root, &["--prefix", "/opt/ioclab", "--data", "/srv/ioclab"]);
    assert_eq!(outcome(&out, "config"), "removed", "{out}");
    assert!(!root.join("etc/ioclab").exists(), "its emptied folder too");
    assert!(root.join("srv/ioclab").is_dir(), "data only with --purge");
    let (code, _, err) = output(ioclab().args(["install", "--root"]).arg(root).args(["--scenarios", "/nonexistent"]));
    assert_ne!(code, 0);
    assert!(err.contains("no scenario catalogue at /nonexistent"), "{err}");
    let (code, _, err) = output(ioclab().args(["uninstall", "--purge", "--data", "/", "--root"]).arg(root));
    assert_ne!(code, 0);
    assert!(err.contains("--data"), "{err}");
    std::fs::create_dir_all(root.join("var/lib/other")).unwrap();
    let (code, _, err) = output(ioclab().args(["uninstall", "--purge", "--data", "/var/lib", "--root"]).arg(root));
    assert_ne!(code, 0);
    assert!(err.contains("refusing to delete /var/lib"), "{err}");
    assert!(root.join("var/lib/other").is_dir());
}

/// Runs scripts/vagrant/NAME with `env`, the staging root and the binary under test.
fn vagrant_script(name: &str, root: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/vagrant").join(name);
    let (code, out, err) = output(
        Command::new("bash")
            .arg(script)
            .args(args)
            .env("IOCLAB_INSTALL_ROOT", root)
            .env("IOCLAB_BIN", env!("CARGO_BIN_EXE_ioclab"))
            .envs(env.iter().copied()),
    );
    assert_eq!(code, 0, "{name}:\n{out}\n{err}");
    out
}

#[test]
fn the_vagrant_provisioning_installs_the_service_and_joins_an_endpoint_for_real_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let out = vagrant_script("service.sh", root, &[], &[]);
    assert_eq!(outcome(&out, "unit"), "installed", "{out}");
    let config_path = root.join("etc/ioclab/appliance.toml");
    let config = std::fs::read_to_string(&config_path).unwrap();
    assert!(config.contains("\nlisten = \"0.0.0.0:8000\"\n"), "{config}");
    // the endpoint listener's key comes with the remote endpoints; where it exists it leaves loopback
    let opened = config.contains("\nendpoints_listen = ");
    if opened {
        assert!(config.contains("\nendpoints_listen = \"0.0.0.0:"), "{config}");
    }
    let out = vagrant_script("service.sh", root, &[], &[]);
    for what in ["binary", "scenarios", "data", "unit"] {
        assert_eq!(outcome(&out, what), "already installed", "{out}");
    }
    let want = if opened { "kept (edited by hand; --purge removes it)" } else { "already installed" };
    assert_eq!(outcome(&out, "config"), want, "{out}");

    let enrol = [
        ("IOCLAB_APPLIANCE", "https://192.168.56.10:8443"),
        ("IOCLAB_FINGERPRINT", "AB:CD"),
        ("IOCLAB_ENDPOINT_TOKEN", "tok-secret-1"),
    ];
    let out = vagrant_script("join.sh", root, &["endpoint-7"], &enrol);
    assert!(out.contains("endpoint-7: ioclab-agent configured"), "{out}");
    let out = vagrant_script("join.sh", root, &["endpoint-7"], &enrol);
    assert!(out.contains("endpoint-7: ioclab-agent already configured"), "{out}");
    let env_file = root.join("etc/ioclab/agent.env");
    assert_eq!(mode(&env_file), 0o600, "the token is root's only");
    assert!(std::fs::read_to_string(&env_file).unwrap().contains("IOCLAB_ENDPOINT_TOKEN=tok-secret-1\n"));
    let unit = std::fs::read_to_string(root.join("etc/systemd/system/ioclab-agent.service")).unwrap();
    assert!(!unit.contains("tok-secret-1"), "no token in the unit");
    assert!(unit.lines().any(|l| l
        == "ExecStart=/usr/local/bin/ioclab agent --appliance ${IOCLAB_APPLIANCE} --fingerprint ${IOCLAB_FINGERPRINT} --name endpoint-7"));
    let out =
        vagrant_script("join.sh", root, &["endpoint-7"], &[enrol[0], enrol[1], ("IOCLAB_ENDPOINT_TOKEN", "tok-2")]);
    assert!(out.contains("endpoint-7: ioclab-agent configured"), "a new token is a change: {out}");
    verify_units(root, &["ioclab.service", "ioclab-agent.service"]);
}

/// Skips (or fails under CI) when the live lab cannot run here.
fn live_or_skip(what: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let btf = Path::new("/sys/kernel/btf/vmlinux").exists();
    let setpriv = Command::new("setpriv").arg("--version").output().is_ok();
    if root && btf && setpriv {
        return true;
    }
    let why = format!("root: {root}, BTF: {btf}, setpriv: {setpriv}");
    assert!(!in_ci(), "CI=true and {what} cannot run: {why}");
    eprintln!("SKIPPED (not in CI): {what}: {why}");
    false
}

/// `program` run as the appliance's unit runs it, as far as can be without
/// systemd: root with only `caps` (the unit's names) in its bounding set, no
/// new privileges, the unit's umask.
fn with_caps(caps: &[&str], program: &Path) -> Command {
    use std::os::unix::process::CommandExt;
    let set: String = caps.iter().map(|c| format!(",+{}", c.trim_start_matches("CAP_").to_lowercase())).collect();
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--bounding-set=-all{set}")).arg("--no-new-privs").arg(program);
    // SAFETY: umask is async-signal-safe and touches nothing else.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0o027);
            Ok(())
        })
    };
    cmd
}

/// A sample that writes a file only its own user may read, from a script.
const SAMPLE: &str = "#!/bin/sh\numask 077\nmkdir -p \"$HOME/.cache\"\necho secret > \"$HOME/.cache/private.bin\"\n";

/// Whether a detonation under `caps` reports the file the sample kept to itself.
fn detonate(caps: &[&str], bin: &Path, dir: &Path, label: &str) -> bool {
    let sample = dir.join("sample.sh");
    std::fs::write(&sample, SAMPLE).unwrap();
    std::fs::set_permissions(&sample, std::fs::Permissions::from_mode(0o755)).unwrap();
    let report = dir.join(format!("analysis-{label}"));
    let (code, out, err) =
        output(with_caps(caps, bin).args(["sandbox", "run", "--timeout", "20", "-o"]).arg(&report).arg(&sample));
    assert_eq!(code, 0, "detonation {label}: {out}\n{err}");
    assert!(out.contains("dropped files"), "{label}: {out}");
    out.contains("/home/sandbox/.cache/private.bin")
}

#[test]
fn the_units_capabilities_serve_live_and_detonate_and_each_tested_one_is_needed() {
    if !live_or_skip("the capability test (eBPF, namespaces, setpriv)") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    install(&root, &["--systemd"]);
    let unit = std::fs::read_to_string(root.join("etc/systemd/system/ioclab.service")).unwrap();
    let caps: Vec<&str> =
        unit.lines().find_map(|l| l.strip_prefix("CapabilityBoundingSet=")).unwrap().split(' ').collect();
    assert!(
        unit.lines().any(|l| l == "UMask=0027") && unit.lines().any(|l| l == "NoNewPrivileges=yes"),
        "the unit runs it as with_caps does"
    );
    let bin = root.join("usr/local/bin/ioclab");

    // the service's command reaches live mode (eBPF loaded, lab network and sandbox set up)
    let config = tmp.path().join("appliance.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:0\"\nmisp_listen = \"127.0.0.1:0\"\nsandbox_listen = \"127.0.0.1:0\"\nendpoints_listen = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let mut serve = with_caps(&caps, &bin);
    serve
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .arg("--data")
        .arg(tmp.path().join("data"))
        .arg("--dir")
        .arg(root.join("usr/local/share/ioclab/scenarios"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = Reaped(serve.spawn().unwrap());
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let mode = lines.by_ref().map_while(Result::ok).find(|l| l.trim_start().starts_with("mode:"));
    assert!(mode.as_deref().is_some_and(|m| m.contains("live")), "serve under the unit's capabilities: {mode:?}");
    // SAFETY: our child; SIGINT stops it as Ctrl-C would.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGINT) };
    assert!(child.0.wait().unwrap().success(), "serve stops clean on SIGINT");

    assert!(detonate(&caps, &bin, tmp.path(), "all"), "under the unit's set the report has the sample's private file");
    let without = |cap: &str| caps.iter().copied().filter(|c| *c != cap).collect::<Vec<_>>();
    assert!(
        !detonate(&without("CAP_DAC_OVERRIDE"), &bin, tmp.path(), "no-dac"),
        "without CAP_DAC_OVERRIDE the sample's private file is missed"
    );
    let (code, _, err) = output(
        with_caps(&without("CAP_NET_RAW"), &bin)
            .args(["sandbox", "run", "-o"])
            .arg(tmp.path().join("x"))
            .arg(tmp.path().join("sample.sh")),
    );
    assert!(code != 0 && err.contains("packet socket"), "without CAP_NET_RAW the fake internet cannot start: {err}");

    // a workshop endpoint's agent (join.sh's unit) loads its programs under that unit's smaller set
    let enrol =
        [("IOCLAB_APPLIANCE", "https://192.0.2.1:8443"), ("IOCLAB_FINGERPRINT", "AB"), ("IOCLAB_ENDPOINT_TOKEN", "t")];
    vagrant_script("join.sh", &root, &["endpoint-1"], &enrol);
    let unit = std::fs::read_to_string(root.join("etc/systemd/system/ioclab-agent.service")).unwrap();
    let agent_caps: Vec<&str> =
        unit.lines().find_map(|l| l.strip_prefix("CapabilityBoundingSet=")).unwrap().split(' ').collect();
    let mut agent = with_caps(&agent_caps, &bin);
    agent.arg("agent").arg("-o").arg(tmp.path().join("agent.jsonl")).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = Reaped(agent.spawn().unwrap());
    let said: Vec<String> = BufReader::new(child.0.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .take_while(|l| !l.contains("agent ready"))
        .collect();
    assert!(child.0.try_wait().unwrap().is_none(), "the agent stopped under {agent_caps:?}: {said:?}");
}
