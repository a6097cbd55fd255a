//! The class on one screen, in the browser: the instructor makes an
//! enrolment token, copies the agent's command line from the page, and
//! watches the endpoint appear on the open class page when a batch is
//! posted with it (to the appliance's TLS listener, pinned by the
//! fingerprint the page gave).

use std::time::Duration;

use fantoccini::Locator;
use ioclab_agent::remote::ship::{Appliance as Target, Shipper};
use ioclab_agent::remote::synthetic;
use ioclab_agent::remote::wire::BatchHeader;

use crate::appliance::Appliance;
use crate::harness::{doing, ensure, eventually, log_in, Browser};

/// The value after `flag` in `command`.
fn arg<'a>(command: &'a str, flag: &str) -> Result<&'a str, String> {
    let mut words = command.split_whitespace();
    words.find(|w| *w == flag).and_then(|_| words.next()).ok_or_else(|| format!("no {flag} in {command:?}"))
}

/// Sends one batch of `events` from `endpoint` as the agent of `command` would.
async fn ship_as(command: &str, endpoint: &str, events: &[String]) -> Result<(), String> {
    let target = Target {
        url: arg(command, "--appliance")?.parse().map_err(doing("the appliance URL"))?,
        token: arg(command, "--token")?.to_string(),
        fingerprint: arg(command, "--fingerprint")?.parse().map_err(doing("the fingerprint"))?,
    };
    let mut body =
        BatchHeader { batch: "browser-1".into(), endpoint: endpoint.into(), agent_version: "0.1.test".into() }
            .to_line();
    for e in events {
        body.extend_from_slice(e.as_bytes());
        body.push(b'\n');
    }
    let shipper = Shipper::new(&target).map_err(doing("the shipper"))?;
    let ack = shipper.send(body).await.map_err(doing("sending the batch"))?;
    ensure(ack.stored == events.len() as u64, || format!("stored {} of {}", ack.stored, events.len()))
}

/// On a replay appliance, the instructor makes the token `team-blue` on
/// the web, opens the class page, and sees `pc-blue` appear there (the
/// page not reloaded: the live stream swaps the list) once a batch is
/// posted with the command line the token's page showed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instructor_makes_a_token_and_sees_the_endpoint_join() {
    let app = Appliance::start(true);
    let Some(browser) = Browser::start().await else { return };
    let web = app.web.clone();
    let instructor_pw = app.instructor_pw.clone().expect("the first start prints the instructor's password");
    browser
        .run("instructor-class-endpoints", |c| async move {
            log_in(&c, &web, "instructor", &instructor_pw).await?;
            c.goto(&format!("{web}/class/tokens")).await.map_err(doing("the tokens page"))?;
            c.find(Locator::Css("input[name=name]"))
                .await
                .map_err(doing("the token's name field"))?
                .send_keys("team-blue")
                .await
                .map_err(doing("typing the name"))?;
            c.find(Locator::XPath("//button[normalize-space(.)='Make the token']"))
                .await
                .map_err(doing("the make button"))?
                .click()
                .await
                .map_err(doing("making the token"))?;
            let command = eventually(Duration::from_secs(60), "the token's page with its command line", || {
                let c = c.clone();
                async move {
                    let Ok(pre) = c.find(Locator::Css("pre#command")).await else { return Ok(None) };
                    Ok(pre.text().await.ok())
                }
            })
            .await?;
            ensure(command.starts_with("sudo ioclab agent --appliance https://127.0.0.1:"), || {
                format!("the command line: {command}")
            })?;

            c.goto(&format!("{web}/class")).await.map_err(doing("the class page"))?;
            let empty = c.source().await.map_err(doing("the class page"))?;
            ensure(!empty.contains("pc-blue"), || "pc-blue listed before it sent anything".into())?;
            c.execute("window.ioclabTestMark = 1; return 1;", vec![]).await.map_err(doing("marking the page"))?;
            let events: Vec<String> = (0..5).map(|n| synthetic::file_create("pc-blue", n)).collect();
            ship_as(&command, "pc-blue", &events).await?;
            let row = eventually(Duration::from_secs(60), "pc-blue on the class page", || {
                let c = c.clone();
                async move {
                    let rows = c.find_all(Locator::Css("table.endpoints tbody tr")).await.map_err(doing("the rows"))?;
                    for r in rows {
                        let text = r.text().await.unwrap_or_default();
                        if text.contains("pc-blue") {
                            return Ok(Some(text));
                        }
                    }
                    Ok(None)
                }
            })
            .await?;
            ensure(row.contains("team-blue") && row.contains("0.1.test"), || format!("the row: {row}"))?;
            let mark = c.execute("return window.ioclabTestMark || 0;", vec![]).await.map_err(doing("the mark"))?;
            ensure(mark == serde_json::json!(1), || "the class page was reloaded: no live update".into())?;
            Ok(())
        })
        .await;
    app.stop();
}
