//! The instructor's actions in the browser: resetting the class (with its
//! confirmation box) and reading a trainee's score on the dashboard (the
//! live test uses [`reset_class`] too), and publishing the MISP event a
//! live run waits for.

use std::time::Duration;

use fantoccini::{Client, Locator};

use crate::appliance::{Appliance, TRAINEE};
use crate::harness::{doing, ensure, eventually, log_in, Browser};
use crate::{stage_states, RUN_LIMIT, SCENARIO};

/// `trainee`'s score on the dashboard (open it first).
pub async fn dashboard_score(c: &Client, trainee: &str) -> Result<String, String> {
    let cell = format!("//tr[td[1][normalize-space(.)='{trainee}']]/td[3]");
    let cell = c.find(Locator::XPath(&cell)).await.map_err(doing("the trainee's score"))?;
    Ok(cell.text().await.map_err(doing("the trainee's score"))?.trim().to_string())
}

/// Clicks the element at `xpath`; `what` names it in a failure.
async fn click(c: &Client, what: &str, xpath: &str) -> Result<(), String> {
    c.find(Locator::XPath(xpath)).await.map_err(|e| format!("{what}: {e}"))?.click().await.map_err(doing(what))
}

/// Resets the whole class from the dashboard: a click on the button alone
/// does nothing (the confirmation box is required), then with the box
/// ticked the reset's page says what it did: its actions, one line each.
pub async fn reset_class(c: &Client, web: &str) -> Result<Vec<String>, String> {
    c.goto(&format!("{web}/dashboard")).await.map_err(doing("the dashboard"))?;
    let form = "//form[input[@name='trainee' and @value=''] and .//button[normalize-space(.)='Reset the whole class']]";
    let button = format!("{form}//button");
    click(c, "clicking reset unconfirmed", &button).await?;
    // the browser refuses the unticked form: still the dashboard
    let url = c.current_url().await.map_err(doing("the URL"))?;
    ensure(url.path() == "/dashboard", || format!("an unconfirmed reset left the dashboard for {url}"))?;
    click(c, "ticking the confirmation box", &format!("{form}//input[@name='confirm']")).await?;
    click(c, "resetting the class", &button).await?;
    // the click navigates: the dashboard's own h1 may still be found (then go
    // stale) until the reset's page is there
    eventually(Duration::from_secs(60), "the reset's page (h1 'Reset of the whole class')", || {
        let c = c.clone();
        async move {
            let Ok(h1) = c.find(Locator::Css("h1")).await else { return Ok(None) };
            Ok(h1.text().await.ok().filter(|t| t.contains("Reset of the whole class")).map(|_| ()))
        }
    })
    .await?;
    let mut actions = Vec::new();
    for li in c.find_all(Locator::Css("ul.actions li")).await.map_err(doing("the reset's actions"))? {
        actions.push(li.text().await.map_err(doing("a reset action"))?);
    }
    ensure(!actions.iter().any(|a| a.contains("FAILED")), || format!("reset actions failed: {actions:#?}"))?;
    Ok(actions)
}

/// On a replay appliance, a trainee starts dns-ioc-why-kunai-rocks and
/// scores 8 points on a question; the instructor sees them on the
/// dashboard, resets the class through its confirmation, and sees 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instructor_resets_the_class_from_the_dashboard() {
    let app = Appliance::start(true);
    let Some(browser) = Browser::start().await else { return };
    let web = app.web.clone();
    let instructor_pw = app.instructor_pw.clone().expect("the first start prints the instructor's password");
    browser
        .run("instructor-class-reset", |c| async move {
            log_in(&c, &web, TRAINEE.0, TRAINEE.1).await?;
            let run = crate::start_from_catalogue(&c, SCENARIO).await?;
            // the question unlocks once the replay passed its MISP stage
            let questions = format!("{web}{run}/questions");
            eventually(Duration::from_secs(120), "question ioc-domain to unlock", || {
                let (c, url) = (c.clone(), questions.clone());
                async move {
                    c.goto(&url).await.map_err(doing("the questions page"))?;
                    let field = c.find_all(Locator::Css("section#q-ioc-domain input[name=answer]")).await;
                    Ok(field.map_err(doing("the answer field"))?.first().map(|_| ()))
                }
            })
            .await?;
            crate::questions(&c, &questions).await?;
            click(&c, "logging out", "//nav//button[normalize-space(.)='Log out']").await?;
            log_in(&c, &web, "instructor", &instructor_pw).await?;
            c.goto(&format!("{web}/dashboard")).await.map_err(doing("the dashboard"))?;
            let before = dashboard_score(&c, TRAINEE.0).await?;
            ensure(before == "8", || format!("the dashboard shows the trainee's 8 points: {before:?}"))?;
            let actions = reset_class(&c, &web).await?;
            ensure(actions.iter().any(|a| a.starts_with("run ") && a.contains("reset")), || {
                format!("the trainee's run is reset: {actions:#?}")
            })?;
            c.goto(&format!("{web}/dashboard")).await.map_err(doing("the dashboard after the reset"))?;
            let after = dashboard_score(&c, TRAINEE.0).await?;
            ensure(after == "0", || format!("after the class reset, the trainee's score: {after:?}"))
        })
        .await;
    app.stop();
}

/// The scenario whose MISP event is left unpublished: its run waits for an instructor.
const WAITING: &str = "malicious-script-dropper";

/// Live: the instructor starts malicious-script-dropper, whose run waits in
/// its publish stage; on the MISP pages the instructor opens the run's
/// unpublished event and clicks Publish; the run then goes on and passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instructor_publishes_the_misp_event_a_live_run_waits_for() {
    let Some(app) = crate::live_appliance() else { return };
    let Some(browser) = Browser::start().await else { return };
    let web = app.web.clone();
    let instructor_pw = app.instructor_pw.clone().expect("the first start prints the instructor's password");
    browser
        .run("instructor-publish", |c| async move {
            log_in(&c, &web, "instructor", &instructor_pw).await?;
            let run = crate::start_from_catalogue(&c, WAITING).await?;
            let pipeline = format!("{web}{run}/pipeline");
            c.goto(&pipeline).await.map_err(doing("the pipeline page"))?;
            eventually(RUN_LIMIT, "the run to wait in its publish stage", || {
                let c = c.clone();
                async move {
                    let states = stage_states(&c).await?;
                    if let Some((name, _)) = states.iter().find(|(_, st)| st == "failed") {
                        return Err(format!("stage {name} failed before the publish: {states:?}"));
                    }
                    Ok(states.iter().any(|(n, st)| n == "publish" && st == "waiting").then_some(()))
                }
            })
            .await?;
            // the run's event, unpublished, on the MISP pages
            c.goto(&format!("{web}/misp")).await.map_err(doing("the MISP events"))?;
            let row = "//tr[.//span[normalize-space(.)='not published']]//td[1]/a";
            click(&c, "opening the unpublished event", row).await?;
            click(&c, "clicking Publish", "//form[contains(@class, 'publish')]//button[normalize-space(.)='Publish']")
                .await?;
            // the click navigates back to the event, now published: no Publish form
            eventually(Duration::from_secs(60), "the event page to show the event published", || {
                let c = c.clone();
                async move {
                    let page = c.source().await.map_err(doing("the event after Publish"))?;
                    Ok((!page.contains(">Publish</button>") && page.contains(">published<")).then_some(()))
                }
            })
            .await?;
            // the run goes on from its publish stage, to the detection
            c.goto(&pipeline).await.map_err(doing("the pipeline page again"))?;
            let last = eventually(RUN_LIMIT, "the run to end after the publish", || {
                let c = c.clone();
                async move {
                    let states = stage_states(&c).await?;
                    let over = !states.is_empty()
                        && states.iter().all(|(_, st)| ["passed", "failed", "skipped"].contains(&st.as_str()));
                    Ok(over.then_some(states))
                }
            })
            .await?;
            ensure(last.iter().all(|(_, st)| st != "failed"), || {
                format!("a stage failed after the publish: {last:?}")
            })?;
            ensure(last.iter().any(|(n, st)| n == "publish" && st == "passed"), || {
                format!("the publish stage did not pass: {last:?}")
            })
        })
        .await;
    app.stop();
}
