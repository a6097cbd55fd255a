//! End-to-end tests of the appliance's web UI in a real headless browser
//! (Debian's chromium through chromedriver, driven with fantoccini), against
//! an `ioclab serve` each test starts on a temporary data directory, and
//! no-JavaScript checks with a plain HTTP client.
//!
//! Under CI=true a test that cannot run (no chromium, no root or eBPF for
//! the live lab) fails; elsewhere it skips with a printed reason. A failing
//! test leaves a screenshot and the page's source in target/browser-artifacts/.

#[path = "../common/mod.rs"]
mod common;
mod harness;
mod http;

use std::time::Duration;

use fantoccini::Locator;
use harness::{cannot_run, doing, ensure, eventually, log_in, Appliance, Browser, TRAINEE};

/// The scenario trainees start first.
const SCENARIO: &str = "dns-ioc-why-kunai-rocks";
/// Long enough for a live run of the scenario on a busy machine: a guard against a hang.
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// The stages a passing run of [`SCENARIO`] goes through, as the run page names them.
const STAGES: &[&str] = &["sandbox", "misp", "publish", "export", "agent", "detection"];

/// A trainee logs in, starts dns-ioc-why-kunai-rocks on the live lab from
/// the catalogue, watches its run page until the run ends, and sees every
/// stage pass and the detection of why.kunai.rocks; the run page is then
/// fetched without JavaScript (the browser's session, a plain HTTP client)
/// and says the same. The run page's screenshot is kept
/// (target/browser-artifacts/run-page.png, the README's picture).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trainee_runs_dns_ioc_live_and_sees_the_detection() {
    let app = Appliance::start(false);
    if !app.live {
        let why = app.printed.lines().find(|l| l.contains("REPLAY")).unwrap_or("not live").trim().to_string();
        app.stop();
        cannot_run::<()>(&format!("ioclab serve cannot run live here: {why}"));
        return;
    }
    let Some(browser) = Browser::start().await else { return };
    let web = app.web.clone();
    let run_path = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let run_path_out = run_path.clone();
    let session_cookie = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let cookie_out = session_cookie.clone();
    browser
        .run("trainee-live-run", |c| async move {
            log_in(&c, &web, TRAINEE.0, TRAINEE.1).await?;
            // the catalogue is the home page: the scenario's card and its start button
            let start = format!("//form[input[@name='scenario' and @value='{SCENARIO}']]//button[@type='submit']");
            let button = c.find(Locator::XPath(&start)).await.map_err(doing("the catalogue's start button"))?;
            button.click().await.map_err(doing("starting the scenario"))?;
            let url = eventually(Duration::from_secs(60), "the run page after Start", || {
                let c = c.clone();
                async move {
                    let u = c.current_url().await.map_err(doing("the URL"))?;
                    Ok(u.path().starts_with("/runs/").then(|| u.path().to_string()))
                }
            })
            .await?;
            *run_path_out.lock().unwrap() = url.clone();
            // the run page lights up as the run goes; without live updates it is refreshed
            let page = eventually(RUN_LIMIT, "the run to finish on its page", || {
                let c = c.clone();
                async move {
                    let html = c.source().await.map_err(doing("the run page"))?;
                    if html.contains("<td>finished</td>") {
                        return Ok(Some(html));
                    }
                    // a page with a script updates itself (SSE); one without is refreshed
                    if !html.contains("<script") {
                        tokio::time::sleep(Duration::from_millis(800)).await;
                        c.refresh().await.map_err(doing("refreshing the run page"))?;
                    }
                    Ok(None)
                }
            })
            .await?;
            let rows = c.find_all(Locator::Css("table.events tbody tr")).await.map_err(doing("the event rows"))?;
            let mut table = Vec::new();
            for r in &rows {
                table.push(r.text().await.map_err(doing("an event row"))?);
            }
            for stage in STAGES {
                ensure(table.iter().any(|t| t.contains("stage finished") && t.contains(stage)), || {
                    format!("no finished {stage} stage on the run page:\n{}", table.join("\n"))
                })?;
            }
            let failed = c.find_all(Locator::Css("table.events tr.failed")).await.map_err(doing("failed rows"))?;
            ensure(failed.is_empty(), || format!("failed rows on the run page:\n{}", table.join("\n")))?;
            let detection = c
                .find(Locator::Css("table.events tr.detection"))
                .await
                .map_err(doing("the detection row"))?
                .text()
                .await
                .map_err(doing("the detection"))?;
            ensure(detection.contains("dns_query") || detection.contains("why.kunai.rocks"), || {
                format!("the detection row names no DNS query: {detection}")
            })?;
            ensure(page.contains("passed"), || "the run did not pass".to_string())?;
            // the README's picture of the run page
            let png = c.screenshot().await.map_err(doing("the run page's screenshot"))?;
            let dir = harness::artifacts_dir();
            std::fs::create_dir_all(&dir).map_err(doing("the artifacts folder"))?;
            std::fs::write(dir.join("run-page.png"), png).map_err(doing("keeping the screenshot"))?;
            let cookies = c.get_all_cookies().await.map_err(doing("the session cookie"))?;
            *cookie_out.lock().unwrap() =
                cookies.iter().find(|k| k.name() == "ioclab_session").map(|k| format!("{}={}", k.name(), k.value()));
            Ok(())
        })
        .await;

    // without JavaScript: the same session, a plain client, the same rows
    let path = run_path.lock().unwrap().clone();
    let cookie = session_cookie.lock().unwrap().clone();
    let mut plain = http::Plain { cookie };
    let page = plain.get(&app.web, &path);
    assert_eq!(page.status, 200, "{path} without JS: {}", page.body);
    for stage in STAGES {
        assert!(page.body.contains(&format!("<td>{stage}</td>")), "{stage} missing from {path} without JS");
    }
    assert!(page.body.contains("class=\"detection\""), "the detection row without JS:\n{}", page.body);
    app.stop();
}

/// Without JavaScript, the pages work: a plain HTTP client gets the login
/// form with its CSRF token, logs in as a trainee, reads the catalogue
/// (every shipped scenario with its start form) and the runs page, and is
/// sent back to the login page after logging out.
#[test]
fn pages_work_without_javascript() {
    let app = Appliance::start(true);
    let mut c = http::Plain::default();
    let login = c.get(&app.web, "/login");
    assert_eq!(login.status, 200);
    assert!(login.body.contains("<form method=\"post\" action=\"/login\""), "{}", login.body);
    let csrf = http::csrf_of(&login.body);
    let wrong =
        c.request(&app.web, "POST", "/login", Some(&[("csrf", &csrf), ("name", TRAINEE.0), ("password", "no")]));
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("Wrong user name or password"), "{}", wrong.body);
    let ok = c.request(
        &app.web,
        "POST",
        "/login",
        Some(&[("csrf", &http::csrf_of(&wrong.body)), ("name", TRAINEE.0), ("password", TRAINEE.1)]),
    );
    assert!((300..400).contains(&ok.status), "login answers a redirect: {} {}", ok.status, ok.body);
    let home = c.get(&app.web, ok.header("location").unwrap_or("/"));
    assert_eq!(home.status, 200);
    assert!(home.body.contains(&format!("{} (trainee)", TRAINEE.0)), "{}", home.body);
    for s in std::fs::read_dir(harness::scenarios()).unwrap().flatten() {
        let id = s.file_name().to_string_lossy().into_owned();
        if s.path().join("scenario.yaml").is_file() {
            assert!(
                home.body.contains(&format!("name=\"scenario\" value=\"{id}\"")),
                "the catalogue's start form for {id}:\n{}",
                home.body
            );
        }
    }
    assert!(!home.body.contains("<script"), "the catalogue needs no script");
    let runs = c.get(&app.web, "/runs");
    assert_eq!(runs.status, 200, "{}", runs.body);
    let out = c.request(&app.web, "POST", "/logout", Some(&[("csrf", &http::csrf_of(&home.body))]));
    assert!((300..400).contains(&out.status), "{}", out.status);
    let after = c.get(&app.web, "/");
    assert!((300..400).contains(&after.status) || after.status == 401, "logged out, / is not served: {}", after.status);
    app.stop();
}
