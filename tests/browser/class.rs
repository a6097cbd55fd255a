//! The class on one screen, in the browser: the instructor makes an
//! enrolment token, copies the agent's command line from the page, and
//! watches the endpoint appear on the open class page when a batch is
//! posted with it (to the appliance's TLS listener, pinned by the
//! fingerprint the page gave).

use std::time::Duration;

use fantoccini::Locator;
use ioclab_agent::remote::orders::OrderClient;
use ioclab_agent::remote::ship::{Appliance as Target, Shipper};
use ioclab_agent::remote::synthetic;
use ioclab_agent::remote::wire::{BatchHeader, OrderDone, OrderKind};

use crate::appliance::Appliance;
use crate::harness::{doing, ensure, eventually, log_in, Browser};

/// The IoC the instructor pushes.
const IOC: &str =
    r#"{"uuid": "6c3c1d1e-0000-4000-8000-0000000000b1", "source": "class", "value": "why.kunai.rocks", "severity": 4}"#;

/// The value after `flag` in `command`.
fn arg<'a>(command: &'a str, flag: &str) -> Result<&'a str, String> {
    let mut words = command.split_whitespace();
    words.find(|w| *w == flag).and_then(|_| words.next()).ok_or_else(|| format!("no {flag} in {command:?}"))
}

/// Where the agent of `command` sends.
fn target_of(command: &str) -> Result<Target, String> {
    Ok(Target {
        url: arg(command, "--appliance")?.parse().map_err(doing("the appliance URL"))?,
        token: arg(command, "--token")?.to_string(),
        fingerprint: arg(command, "--fingerprint")?.parse().map_err(doing("the fingerprint"))?,
    })
}

/// Sends one batch of `events` from `endpoint` as the agent of `command` would.
async fn ship_as(command: &str, endpoint: &str, events: &[String]) -> Result<(), String> {
    let target = target_of(command)?;
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
/// posted with the command line the token's page showed. Then they push
/// an IoC to `pc-blue` from the push form: the endpoint's waiting
/// long-poll gets it, reports it applied, and the push page says so.
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
            let mut events: Vec<String> = (0..5).map(|n| synthetic::file_create("pc-blue", n)).collect();
            let mut detected: serde_json::Value =
                serde_json::from_str(&synthetic::file_create("pc-blue", 5)).map_err(doing("an event"))?;
            detected["detection"] = serde_json::json!({"iocs": ["why.kunai.rocks"], "severity": 4});
            events.push(detected.to_string());
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

            // pc-blue waits for its orders while the instructor pushes
            let orders = OrderClient::new(&target_of(&command)?, "pc-blue").map_err(doing("the order client"))?;
            let waiting = tokio::spawn({
                let orders = orders.clone();
                async move { orders.next(0).await }
            });
            c.goto(&format!("{web}/class/push")).await.map_err(doing("the push page"))?;
            let option = "select[name=target] option[value='endpoint:team-blue/pc-blue']";
            c.find(Locator::Css(option))
                .await
                .map_err(doing("pc-blue as a target"))?
                .click()
                .await
                .map_err(doing("choosing pc-blue"))?;
            c.find(Locator::Css("input[name=label]"))
                .await
                .map_err(doing("the label"))?
                .send_keys("day 1")
                .await
                .map_err(doing("typing the label"))?;
            c.find(Locator::Css("textarea[name=lines]"))
                .await
                .map_err(doing("the IoC lines"))?
                .send_keys(IOC)
                .await
                .map_err(doing("typing the IoC"))?;
            c.find(Locator::XPath("//button[normalize-space(.)='Push']"))
                .await
                .map_err(doing("the push button"))?
                .click()
                .await
                .map_err(doing("pushing"))?;
            let order = waiting.await.map_err(doing("the long-poll"))?.map_err(doing("the long-poll"))?;
            let order = order.ok_or("the long-poll ended without the push")?;
            #[allow(irrefutable_let_patterns)] // orders of other kinds are coming (steps)
            let OrderKind::Iocs { label, lines } = &order.kind
            else {
                return Err(format!("not an IoC order: {order:?}"));
            };
            ensure(label == "day 1" && lines.trim() == IOC, || format!("the order: {order:?}"))?;
            let done = OrderDone { ok: true, message: "1 IoCs from 1 file(s)".into() };
            orders.done(order.id, &done).await.map_err(doing("reporting the push"))?;
            eventually(Duration::from_secs(60), "the push applied by pc-blue on the push page", || {
                let c = c.clone();
                let web = web.clone();
                async move {
                    c.goto(&format!("{web}/class/push")).await.map_err(doing("the push page"))?;
                    let table = c.find(Locator::Css("table.pushes")).await.map_err(doing("the pushes"))?;
                    let text = table.text().await.map_err(doing("the pushes"))?;
                    Ok(text.contains("team-blue/pc-blue applied").then_some(()))
                }
            })
            .await?;
            // the class page as the instructor sees it now (target/browser-artifacts/class-page.png, the README's picture)
            c.goto(&format!("{web}/class")).await.map_err(doing("the class page"))?;
            let page = c.source().await.map_err(doing("the class page"))?;
            ensure(page.contains("applied"), || "the class page shows pc-blue's push applied".into())?;
            let png = c.screenshot().await.map_err(doing("the class page's screenshot"))?;
            let dir = crate::harness::artifacts_dir();
            std::fs::create_dir_all(&dir).map_err(doing("the artifacts folder"))?;
            std::fs::write(dir.join("class-page.png"), png).map_err(doing("keeping the screenshot"))?;
            Ok(())
        })
        .await;
    app.stop();
}
