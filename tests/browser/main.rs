//! End-to-end tests of the appliance's web UI in a real headless browser
//! (Debian's chromium through chromedriver, driven with fantoccini), against
//! an `ioclab serve` each test starts on a temporary data directory, and
//! no-JavaScript checks with a plain HTTP client.
//!
//! Under CI=true a test that cannot run (no chromium, no root or eBPF for
//! the live lab) fails; elsewhere it skips with a printed reason. A failing
//! test leaves a screenshot and the page's source in target/browser-artifacts/.

mod appliance;
mod class;
#[path = "../common/mod.rs"]
mod common;
mod harness;
mod http;
mod instructor;

use std::time::Duration;

use appliance::{Appliance, TRAINEE};
use fantoccini::Locator;
use harness::{cannot_run, doing, ensure, eventually, log_in, Browser};

/// The scenario trainees start first.
const SCENARIO: &str = "dns-ioc-why-kunai-rocks";
/// Long enough for a live run of the scenario on a busy machine: a guard against a hang.
pub(crate) const RUN_LIMIT: Duration = Duration::from_secs(300);

/// The stages a passing run of [`SCENARIO`] goes through, as the run page names them.
const STAGES: &[&str] = &["sandbox", "misp", "publish", "export", "agent", "detection"];

/// A trainee logs in, starts dns-ioc-why-kunai-rocks on the live lab from
/// the catalogue, watches its run page until the run ends, and sees every
/// stage pass and the detection of why.kunai.rocks; the run page is then
/// fetched without JavaScript (the browser's session, a plain HTTP client)
/// and says the same. The run page's screenshot is kept
/// (target/browser-artifacts/run-page.png, the README's picture). Then the
/// trainee answers a question; the instructor logs in, sees the trainee's score
/// on the dashboard and resets the class (score 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trainee_runs_dns_ioc_live_and_sees_the_detection() {
    let Some(app) = live_appliance() else { return };
    let Some(browser) = Browser::start().await else { return };
    let web = app.web.clone();
    let instructor_pw = app.instructor_pw.clone().expect("the first start prints the instructor's password");
    let run_path = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let run_path_out = run_path.clone();
    let session_cookie = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let cookie_out = session_cookie.clone();
    browser
        .run("trainee-live-run", |c| async move {
            log_in(&c, &web, TRAINEE.0, TRAINEE.1).await?;
            let url = start_from_catalogue(&c, SCENARIO).await?;
            *run_path_out.lock().unwrap() = url.clone();
            // the pipeline lights up through SSE: the page is never reloaded (a mark set
            // on its window survives) while its stages change
            c.goto(&format!("{web}{url}/pipeline")).await.map_err(doing("the pipeline page"))?;
            c.execute("window.ioclabTestMark = 1; return 1;", vec![]).await.map_err(doing("marking the page"))?;
            let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Vec<(String, String)>>::new()));
            let last = eventually(RUN_LIMIT, "every stage of the run to end on the pipeline page", || {
                let c = c.clone();
                let seen = seen.clone();
                async move {
                    let states = stage_states(&c).await?;
                    let mut seen = seen.lock().unwrap();
                    if seen.last() != Some(&states) {
                        seen.push(states.clone());
                    }
                    let over = !states.is_empty()
                        && states.iter().all(|(_, st)| ["passed", "failed", "skipped"].contains(&st.as_str()));
                    Ok(over.then_some(states))
                }
            })
            .await?;
            let mark = c.execute("return window.ioclabTestMark || 0;", vec![]).await.map_err(doing("the mark"))?;
            ensure(mark == serde_json::json!(1), || "the pipeline page was reloaded: no live update".into())?;
            let seen = seen.lock().unwrap().clone();
            ensure(seen.len() > 1 && seen[0] != last, || {
                format!("the stages never changed on the open page (seen: {seen:?})")
            })?;
            for stage in STAGES {
                ensure(last.iter().any(|(n, st)| n == stage && st == "passed"), || {
                    format!("{stage} did not pass on the pipeline page: {last:?}")
                })?;
            }
            // the README's picture of the run page
            let png = c.screenshot().await.map_err(doing("the run page's screenshot"))?;
            let dir = harness::artifacts_dir();
            std::fs::create_dir_all(&dir).map_err(doing("the artifacts folder"))?;
            std::fs::write(dir.join("run-page.png"), png).map_err(doing("keeping the screenshot"))?;
            // the detection event, one click away, its detection section highlighted
            c.find(Locator::LinkText("Detection"))
                .await
                .map_err(doing("the Detection link"))?
                .click()
                .await
                .map_err(doing("opening the detection"))?;
            let hl =
                c.wait().for_element(Locator::Css("section.detection pre.hl")).await.map_err(doing("the detection"))?;
            let text = hl.text().await.map_err(doing("the detection section"))?;
            ensure(text.contains("why.kunai.rocks"), || format!("the highlighted detection names no IoC: {text}"))?;
            // a question: a hint (its cost shown before), a wrong then a right answer, the score
            questions(&c, &format!("{web}{url}/questions")).await?;
            // every event of the run on its events page
            c.goto(&format!("{web}{url}")).await.map_err(doing("the run's events"))?;
            let page = c.source().await.map_err(doing("the events page"))?;
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
            ensure(page.contains("passed"), || "the run did not pass".to_string())?;
            // the instructor sees the trainee's score on the dashboard and resets the class
            c.find(Locator::XPath("//nav//button[normalize-space(.)='Log out']"))
                .await
                .map_err(doing("the log out button"))?
                .click()
                .await
                .map_err(doing("logging out"))?;
            log_in(&c, &web, "instructor", &instructor_pw).await?;
            c.goto(&format!("{web}/dashboard")).await.map_err(doing("the dashboard"))?;
            let before = instructor::dashboard_score(&c, TRAINEE.0).await?;
            ensure(before == "8", || format!("the dashboard shows the trainee's 8 points: {before:?}"))?;
            // the live run's lab state goes with the class reset: its MISP event and sandbox task
            let actions = instructor::reset_class(&c, &web).await?;
            for made in ["MISP event", "sandbox task"] {
                ensure(actions.iter().any(|a| a.starts_with(made) && a.contains(": deleted")), || {
                    format!("the reset deletes the run's {made}: {actions:#?}")
                })?;
            }
            c.goto(&format!("{web}/dashboard")).await.map_err(doing("the dashboard after the reset"))?;
            let after = instructor::dashboard_score(&c, TRAINEE.0).await?;
            ensure(after == "0", || format!("the class reset: the trainee's score {after:?}"))?;
            // the instructor's session, for the checks without JavaScript
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
    let pipeline = plain.get(&app.web, &format!("{path}/pipeline"));
    assert_eq!(pipeline.status, 200, "the pipeline without JS: {}", pipeline.body);
    for stage in STAGES {
        assert!(
            pipeline.body.contains(&format!("<span class=\"name\">{stage}</span>")),
            "{stage} missing from the pipeline without JS"
        );
    }
    assert!(!pipeline.body.contains("class=\"stage running"), "a finished run shows no running stage");
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
    for s in std::fs::read_dir(appliance::scenarios()).unwrap().flatten() {
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

/// Starts `scenario` with its start button on the catalogue (the home page,
/// open), and gives the path of the run page it leads to.
async fn start_from_catalogue(c: &fantoccini::Client, scenario: &str) -> Result<String, String> {
    let start = format!("//form[input[@name='scenario' and @value='{scenario}']]//button[@type='submit']");
    let button = c.find(Locator::XPath(&start)).await.map_err(doing("the catalogue's start button"))?;
    button.click().await.map_err(doing("starting the scenario"))?;
    eventually(Duration::from_secs(60), "the run page after Start", || {
        let c = c.clone();
        async move {
            let u = c.current_url().await.map_err(doing("the URL"))?;
            Ok(u.path().starts_with("/runs/").then(|| u.path().to_string()))
        }
    })
    .await
}

/// The pipeline page's stages: (name, state) in order, read in one script
/// (the live updates swap the elements between two WebDriver calls).
pub(crate) async fn stage_states(c: &fantoccini::Client) -> Result<Vec<(String, String)>, String> {
    const READ: &str = "return Array.from(document.querySelectorAll('ol.pipeline li.stage')).map(function (li) { \
        return [li.querySelector('.name').textContent.trim(), li.querySelector('.state').textContent.trim()]; });";
    let v = c.execute(READ, vec![]).await.map_err(doing("the pipeline's stages"))?;
    serde_json::from_value(v).map_err(doing("the pipeline's stages as pairs"))
}

/// An appliance running the live lab; None (after failing under CI=true)
/// where it can only replay (no root or eBPF).
pub(crate) fn live_appliance() -> Option<Appliance> {
    let app = Appliance::start(false);
    if app.live {
        return Some(app);
    }
    let why = app.printed.lines().find(|l| l.contains("REPLAY")).unwrap_or("not live").trim().to_string();
    app.stop();
    cannot_run(&format!("ioclab serve cannot run live here: {why}"))
}

/// On the run's questions page, question `ioc-domain`: takes its hint (the
/// button shows the cost first), answers wrong (an attempt is used, no
/// points), then right: the question is solved and the score is what the
/// page said it was worth after the hint.
async fn questions(c: &fantoccini::Client, url: &str) -> Result<(), String> {
    const Q: &str = "section#q-ioc-domain";
    c.goto(url).await.map_err(doing("the questions page"))?;
    let score = |c: fantoccini::Client| async move {
        let t = c.find(Locator::Css("p.score strong")).await.map_err(doing("the score"))?;
        t.text().await.map_err(doing("the score"))?.trim().parse::<i64>().map_err(doing("the score as a number"))
    };
    ensure(score(c.clone()).await? == 0, || "a fresh run scores 0".into())?;
    let hint = c
        .find(Locator::XPath("//section[@id='q-ioc-domain']//button[starts-with(normalize-space(.), 'Take a hint')]"))
        .await
        .map_err(doing("the hint button"))?;
    let label = hint.text().await.map_err(doing("the hint button's label"))?;
    ensure(label.contains("costs 2 points"), || format!("the hint's cost before taking it: {label:?}"))?;
    hint.click().await.map_err(doing("taking the hint"))?;
    let shown = c
        .wait()
        .for_element(Locator::Css(&format!("{Q} p.hint")))
        .await
        .map_err(doing("the hint"))?
        .text()
        .await
        .map_err(doing("the hint's text"))?;
    ensure(shown.contains("MISP event"), || format!("the hint: {shown:?}"))?;
    let answer = |c: fantoccini::Client, value: &'static str| async move {
        let field =
            c.find(Locator::Css(&format!("{Q} input[name=answer]"))).await.map_err(doing("the answer field"))?;
        field.send_keys(value).await.map_err(doing("typing an answer"))?;
        c.find(Locator::Css(&format!("{Q} button[type=submit]")))
            .await
            .map_err(doing("the answer button"))?
            .click()
            .await
            .map_err(doing("answering"))?;
        c.wait().for_element(Locator::Css(Q)).await.map_err(doing("the page after answering")).map(|_| ())
    };
    answer(c.clone(), "example.org").await?;
    let meta = text_of(c, &format!("{Q} p.meta")).await?;
    ensure(meta.contains("attempts left: 2"), || format!("a wrong answer uses an attempt: {meta:?}"))?;
    ensure(score(c.clone()).await? == 0, || "a wrong answer scores nothing".into())?;
    let worth: i64 = meta
        .split("worth ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("what the question is worth: {meta:?}"))?;
    ensure(worth == 8, || format!("10 points less the hint's 2: {meta:?}"))?;
    answer(c.clone(), "why.kunai.rocks").await?;
    let meta = text_of(c, &format!("{Q} p.meta")).await?;
    ensure(meta.contains("solved"), || format!("the right answer solves it: {meta:?}"))?;
    let total = score(c.clone()).await?;
    ensure(total == worth, || format!("the score after the right answer: {total}, the question was worth {worth}"))
}

/// The text of the first element matching `css`.
async fn text_of(c: &fantoccini::Client, css: &str) -> Result<String, String> {
    let e = c.find(Locator::Css(css)).await.map_err(|e| format!("{css}: {e}"))?;
    e.text().await.map_err(|e| format!("the text of {css}: {e}"))
}
