//! What the browser tests share: `ioclab serve` started on a temporary data
//! directory, Debian's chromedriver and a headless chromium session driven
//! through WebDriver (fantoccini), and the artifacts of a failure (a
//! screenshot and the page's source under target/browser-artifacts/).
//!
//! Nothing leaves loopback: the appliance listens on 127.0.0.1, and chromium
//! gets a dead proxy for every other address and no background networking.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::common::{free_port, in_ci, wait_listening, Reaped};

/// Where failures leave their screenshot and page source.
pub fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("browser-artifacts")
}

/// Fails under CI=true, otherwise prints why the test skips; `None` to return.
pub fn cannot_run<T>(why: &str) -> Option<T> {
    assert!(!in_ci(), "CI=true and this browser test cannot run: {why}");
    eprintln!("SKIPPED (not in CI): {why}");
    None
}

/// Finds a program in PATH or in Debian's places.
fn program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> =
        std::env::split_paths(&path).chain(["/usr/bin", "/usr/lib/chromium"].map(PathBuf::from)).collect();
    names.iter().flat_map(|n| dirs.iter().map(move |d| d.join(n))).find(|p| p.is_file())
}

/// chromedriver and a headless chromium session.
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    _driver: Reaped,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// A headless session, or `None` (outside CI) when chromium or chromedriver is missing.
    pub async fn start() -> Option<Browser> {
        let Some(driver) = program(&["chromedriver"]) else {
            return cannot_run("no chromedriver (scripts/setup.sh installs Debian's chromium-driver)");
        };
        let Some(chromium) = program(&["chromium", "chromium-browser"]) else {
            return cannot_run("no chromium (scripts/setup.sh installs Debian's chromium)");
        };
        let port = free_port();
        let log = artifacts_dir().join("chromedriver.log");
        std::fs::create_dir_all(artifacts_dir()).unwrap();
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", driver.display()));
        let driver_child = Reaped(child);
        wait_listening(port, "chromedriver");
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                    // nothing but loopback: every other address goes to a dead proxy
                    "--proxy-server=127.0.0.1:9",
                    "--proxy-bypass-list=<-loopback>;127.0.0.1;localhost",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-default-apps",
                    "--no-first-run",
                    "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider",
                ]
            }
        });
        let caps = match caps {
            serde_json::Value::Object(m) => m,
            _ => unreachable!(),
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| panic!("a chromium session through chromedriver: {e}; see {}", log.display()));
        Some(Browser { client, _driver: driver_child, _profile: profile })
    }

    /// Runs `body` with the session; when it fails or panics, keeps a screenshot
    /// and the page source as `target/browser-artifacts/<name>.{png,html}`, then panics.
    pub async fn run<F, Fut>(self, name: &str, body: F)
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let task = tokio::spawn(body(self.client.clone()));
        let failure = match task.await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(e) => Some(match e.try_into_panic() {
                Ok(p) => p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "a panic".into()),
                Err(e) => e.to_string(),
            }),
        };
        if let Some(failure) = failure {
            let kept = keep_artifacts(&self.client, name).await;
            let _ = self.client.close().await;
            panic!("{name}: {failure}\n(artifacts: {kept})");
        }
        self.client.close().await.unwrap();
    }
}

/// Saves the page's screenshot and source; says where (or why not).
async fn keep_artifacts(c: &Client, name: &str) -> String {
    let dir = artifacts_dir();
    let _ = std::fs::create_dir_all(&dir);
    let mut kept = Vec::new();
    match c.screenshot().await {
        Ok(png) => {
            let p = dir.join(format!("{name}.png"));
            if std::fs::write(&p, png).is_ok() {
                kept.push(p.display().to_string());
            }
        }
        Err(e) => kept.push(format!("no screenshot: {e}")),
    }
    if let Ok(html) = c.source().await {
        let url = c.current_url().await.map(|u| u.to_string()).unwrap_or_default();
        let p = dir.join(format!("{name}.html"));
        if std::fs::write(&p, format!("<!-- {url} -->\n{html}")).is_ok() {
            kept.push(p.display().to_string());
        }
    }
    kept.join(", ")
}

/// `Err(what)` unless `ok`.
pub fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(what())
    }
}

/// A WebDriver error as a test failure naming what was being done.
pub fn doing<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// Logs in through the login form and checks the page says who is logged in.
pub async fn log_in(c: &Client, base: &str, name: &str, password: &str) -> Result<(), String> {
    c.goto(&format!("{base}/login")).await.map_err(doing("opening /login"))?;
    let form = c.find(Locator::Css("form.login")).await.map_err(doing("the login form"))?;
    form.find(Locator::Css("input[name=name]"))
        .await
        .map_err(doing("the name field"))?
        .send_keys(name)
        .await
        .map_err(doing("typing the name"))?;
    form.find(Locator::Css("input[name=password]"))
        .await
        .map_err(doing("the password field"))?
        .send_keys(password)
        .await
        .map_err(doing("typing the password"))?;
    form.find(Locator::Css("button[type=submit]"))
        .await
        .map_err(doing("the login button"))?
        .click()
        .await
        .map_err(doing("logging in"))?;
    let who = c.wait().for_element(Locator::Css("nav .who")).await.map_err(doing("the logged-in nav"))?;
    let text = who.text().await.map_err(doing("reading the nav"))?;
    ensure(text.contains(name), || format!("logged in as {name}, the nav says {text:?}"))
}

/// Polls `check` every 200 ms until it gives `Some`, for at most `limit` (a guard against a hang, not a timing check).
pub async fn eventually<T, Fut>(limit: Duration, what: &str, mut check: impl FnMut() -> Fut) -> Result<T, String>
where
    Fut: Future<Output = Result<Option<T>, String>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if start.elapsed() > limit {
            return Err(format!("still waiting after {limit:?}: {what}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
