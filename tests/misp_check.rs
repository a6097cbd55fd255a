//! `ioclab misp check` explains each failure with its likely cause and fix:
//! bad key, wrong base URL, a proxy from the environment answering 502/504
//! instead of MISP (HTTP and HTTPS), and a gateway with no proxy set. Every
//! server here is on loopback; the proxy variables are set in the child only.
//! `ioclab sandbox to-misp` gives the same diagnosis.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::Command;

use common::{ioclab, misp_config, misp_key, misp_serve, output, run};

/// `cmd` with exactly these proxy variables (the test's own are not passed on).
fn with_proxies<'a>(cmd: &'a mut Command, proxy_env: &[(&str, &str)]) -> &'a mut Command {
    for v in
        ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy", "no_proxy"]
    {
        cmd.env_remove(v);
    }
    cmd.envs(proxy_env.iter().copied())
}

/// `ioclab misp check -c cfg` with exactly these proxy variables; exit code and stderr.
fn check(cfg: &std::path::Path, proxy_env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd: Command = ioclab();
    cmd.args(["misp", "check", "-c"]).arg(cfg);
    let (code, _, err) = output(with_proxies(&mut cmd, proxy_env));
    (code, err)
}

/// A loopback HTTP server answering every request with `status`, as a proxy
/// or a gateway would; returns its address and the request lines it got.
fn gateway(status: &'static str) -> (String, std::thread::JoinHandle<Vec<String>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let handle = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut first = String::new();
        reader.read_line(&mut first).unwrap();
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap() > 2 {
            line.clear();
        }
        let body = format!("<html><body>{status}</body></html>");
        write!(
            conn,
            "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        vec![first.trim_end().to_string()]
    });
    (addr, handle)
}

#[test]
fn check_names_bad_key_and_wrong_base_url() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("misp.db");
    let key = misp_key(&db, "analyst@lab.example", "user");
    let (_server, url) = misp_serve(&db);

    let cfg = misp_config(dir.path(), &url, &key);
    let (code, out, err) = run(&["misp", "check", "-c", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("role user: may add events, not publish them"), "{out}");

    let (code, err) = check(&misp_config(dir.path(), &url, &"k".repeat(40)), &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("Authentication failed"), "MISP's words: {err}");
    assert!(err.contains("likely cause: authentication failed: MISP refused the API key"), "{err}");
    assert!(err.contains("what to do:") && err.contains("keys create"), "{err}");

    let (code, err) = check(&misp_config(dir.path(), &format!("{url}/misp"), &key), &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("has the path \"/misp\""), "{err}");
    assert!(err.contains(&format!("set the url to {url} ")), "{err}");
}

#[test]
fn check_blames_the_proxy_of_the_environment_and_says_no_proxy() {
    let dir = tempfile::tempdir().unwrap();
    // the "MISP" is a closed loopback port: only the proxy can answer
    let misp = format!("127.0.0.1:{}", common::free_port());
    for (status, scheme, var) in
        [("502 Bad Gateway", "http", "HTTP_PROXY"), ("504 Gateway Timeout", "https", "HTTPS_PROXY")]
    {
        let (proxy, requests) = gateway(status);
        let cfg = misp_config(dir.path(), &format!("{scheme}://{misp}"), &"k".repeat(40));
        let (code, err) = check(&cfg, &[(var, &format!("http://{proxy}"))]);
        let seen = requests.join().unwrap();
        assert_eq!(code, 1, "{err}");
        // plain HTTP is forwarded; HTTPS is tunnelled with CONNECT
        let want = if scheme == "http" {
            format!("GET http://{misp}/servers/getVersion HTTP/1.1")
        } else {
            format!("CONNECT {misp} HTTP/1.1")
        };
        assert_eq!(seen, vec![want], "{err}");
        assert!(err.contains(&format!("{var}=http://{proxy} is set and NO_PROXY is not set")), "{err}");
        assert!(err.contains("export NO_PROXY=127.0.0.1"), "{err}");
    }

    // NO_PROXY naming the host: straight to the (closed) port, no proxy blamed
    let cfg = misp_config(dir.path(), &format!("http://{misp}"), &"k".repeat(40));
    let (code, err) = check(&cfg, &[("HTTP_PROXY", "http://127.0.0.1:9"), ("NO_PROXY", "127.0.0.1")]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("nothing listens on that host and port") && !err.contains("PROXY"), "{err}");
}

#[test]
fn check_without_proxy_blames_the_gateway_in_front_of_misp() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, requests) = gateway("502 Bad Gateway");
    let (code, err) = check(&misp_config(dir.path(), &format!("http://{addr}"), &"k".repeat(40)), &[]);
    assert_eq!(requests.join().unwrap(), vec!["GET /servers/getVersion HTTP/1.1".to_string()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("HTTP 502 from a gateway"), "{err}");
    assert!(err.contains("no proxy is set in the environment"), "{err}");
}

/// `ioclab sandbox to-misp` fails with the words of `misp check`: a `user`
/// key asked to publish is told the role it needs; a proxy variable is named.
#[test]
fn to_misp_failures_carry_the_same_diagnosis() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("misp.db");
    let key = misp_key(&db, "sandbox@lab.example", "user");
    let (_server, url) = misp_serve(&db);
    let toml = dir.path().join("sandbox.toml");
    std::fs::write(&toml, format!("[reporting.misp]\nurl = \"{url}\"\napikey = \"{key}\"\npublish = true\n")).unwrap();
    let report = concat!(env!("CARGO_MANIFEST_DIR"), "/sandbox/tests/fixtures/misp_report.json");
    let to_misp = |proxy_env: &[(&str, &str)]| {
        let mut cmd = ioclab();
        cmd.args(["sandbox", "to-misp", "-c"]).arg(&toml).arg(report);
        output(with_proxies(&mut cmd, proxy_env))
    };
    let (code, out, err) = to_misp(&[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("/events/publish/") && err.contains("HTTP 403"), "{err}");
    assert!(err.contains("Likely cause: the key was accepted but its role may not do this"), "{err}");
    assert!(err.contains("--role publisher"), "the role needed is named: {err}");

    let (proxy, requests) = gateway("504 Gateway Timeout");
    let (code, out, err) = to_misp(&[("HTTP_PROXY", &format!("http://{proxy}"))]);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(requests.join().unwrap(), vec![format!("POST {url}/events/add HTTP/1.1")]);
    assert!(err.contains(&format!("HTTP_PROXY=http://{proxy} is set and NO_PROXY is not set")), "{err}");
}
