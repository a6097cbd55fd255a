//! `ioclab endpoints`: enrolment tokens for remote endpoints, the endpoint
//! listener's fingerprint, and that listener alone (`serve`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use ioclab_lab::run::folder::utc_stamp;
use ioclab_web::endpoints::{self, EndpointDb, PushTarget};
use ioclab_web::users::UserName;

use super::lab::DataArg;

/// Arguments of `ioclab endpoints`.
#[derive(Args)]
#[command(after_help = "\
Examples:
  ioclab endpoints token create --name team-blue     prints the token once
  ioclab endpoints token create --name alice --group blue
                                                     alice's endpoint, in group blue
  ioclab endpoints token list
  ioclab endpoints token revoke team-blue            its agents get 401 from now on
  ioclab endpoints fingerprint                       what agents pass as --fingerprint
  ioclab endpoints push iocs.json --all              every agent loads it within a second
  ioclab endpoints push iocs.json --group blue --label day-2
  ioclab endpoints push iocs.json --endpoint alice/pc-07
  ioclab endpoints pushes                            which endpoints applied each push
  ioclab endpoints serve --listen 0.0.0.0:8443       the endpoint listener alone

Then, on the trainee's machine:
  sudo ioclab agent --appliance https://10.0.0.1:8443 --token TOKEN --fingerprint FP")]
pub struct EndpointsArgs {
    #[command(subcommand)]
    command: EndpointsCommand,
    #[command(flatten)]
    data: DataArg,
}

#[derive(Subcommand)]
enum EndpointsCommand {
    /// Enrolment tokens: create, list, revoke.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Print the SHA-256 fingerprint of the endpoint certificate (made if there is none yet).
    Fingerprint,
    /// Push an IoC file to endpoints: their agents load it within a second (a set: it replaces the previous push).
    #[command(group = clap::ArgGroup::new("target").required(true).args(["all", "group", "endpoint"]))]
    Push {
        /// The IoC file (Kunai's format, one JSON object a line, as misp-to-kunai and a lab run's export write); every line must be good.
        file: PathBuf,
        /// To every endpoint, those that join later too.
        #[arg(long)]
        all: bool,
        /// To the endpoints of the tokens in this group (`token create --group`).
        #[arg(long, value_name = "GROUP")]
        group: Option<UserName>,
        /// To one endpoint: its token's name and its agent's --name.
        #[arg(long, value_name = "TOKEN/NAME", value_parser = parse_endpoint)]
        endpoint: Option<(UserName, String)>,
        /// A name for the push in lists and logs (default: the file's name).
        #[arg(long, value_name = "LABEL")]
        label: Option<String>,
    },
    /// List the IoC pushes, newest first, and which endpoints applied them.
    Pushes,
    /// Run the endpoint listener alone (`ioclab serve` runs it with everything else).
    Serve {
        /// Where agents connect (loopback by default; 0.0.0.0:8443 for a class network).
        #[arg(long, default_value = "127.0.0.1:8443", value_name = "ADDR")]
        listen: SocketAddr,
    },
}

fn parse_endpoint(s: &str) -> Result<(UserName, String), String> {
    let (token, name) = s.split_once('/').ok_or("expected TOKEN/NAME, e.g. alice/pc-07")?;
    if name.is_empty() {
        return Err("the endpoint name after / is empty".into());
    }
    Ok((token.parse()?, name.to_string()))
}

/// The IoC file's text, once the agent's own parser accepts every line of it.
fn checked_iocs(file: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading the IoC file {}", file.display()))?;
    let report = ioclab_agent::ioc::loader::check_data(file, text.as_bytes());
    if let Some(why) = report.refusal() {
        anyhow::bail!("{}: {why}: nothing pushed (`ioclab ioc check` lists every bad line)", file.display());
    }
    Ok(text)
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a token for one endpoint (or a team's); prints it once, only its hash is kept.
    Create {
        /// Whose endpoint: a trainee or team name (a-z, 0-9, '.', '_', '-'); default endpoint-NN.
        #[arg(long)]
        name: Option<UserName>,
        /// Its group (a team, a room): `ioclab endpoints push FILE --group G` reaches every endpoint of the group.
        #[arg(long, value_name = "GROUP")]
        group: Option<UserName>,
    },
    /// List the tokens: name, created, revoked, events received, group.
    List,
    /// Revoke a token: its agents are refused (401) from now on; their events stay.
    Revoke {
        /// The token's name.
        name: UserName,
    },
}

/// Runs `ioclab endpoints`.
pub fn run(args: EndpointsArgs) -> anyhow::Result<ExitCode> {
    let dir = args.data.dir();
    std::fs::create_dir_all(dir.root())
        .with_context(|| format!("creating the data directory {} (set --data)", dir.root().display()))?;
    let web_db = ioclab_web::web_db(&dir);
    match args.command {
        EndpointsCommand::Fingerprint => {
            let cert = endpoints::tls::ApplianceCert::load_or_create(&endpoints::cert_dir(dir.root()))?;
            println!("{}", cert.fingerprint());
            Ok(ExitCode::SUCCESS)
        }
        EndpointsCommand::Serve { listen } => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(async {
                let stop = super::serve::shutdown_signal()?;
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                let started = endpoints::start(dir.root(), &web_db, listen, async {
                    let _ = rx.await;
                })
                .await?;
                println!("endpoint listener: https://{}", started.addr);
                println!("fingerprint:       {}", started.fingerprint);
                use std::io::Write as _;
                let _ = std::io::stdout().flush();
                stop.await;
                let _ = tx.send(());
                Ok(ExitCode::SUCCESS)
            })
        }
        EndpointsCommand::Push { file, all: _, group, endpoint, label } => {
            let lines = checked_iocs(&file)?;
            let target = match (group, endpoint) {
                (Some(g), _) => PushTarget::Group(g),
                (_, Some((token, endpoint))) => PushTarget::Endpoint { token, endpoint },
                (None, None) => PushTarget::All,
            };
            let label = label.unwrap_or_else(|| {
                file.file_name().map_or_else(|| file.display().to_string(), |n| n.to_string_lossy().into_owned())
            });
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let id =
                rt.block_on(async { EndpointDb::open(&web_db).await?.push_iocs(&target, &label, &lines).await })?;
            println!("push {id} ({label}) to {target}: agents load it as they ask (`ioclab endpoints pushes`)");
            Ok(ExitCode::SUCCESS)
        }
        EndpointsCommand::Pushes => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let pushes = rt.block_on(async { EndpointDb::open(&web_db).await?.pushes().await })?;
            println!("{:<6} {:<17} {:<24} {:<10} LABEL", "PUSH", "CREATED", "TARGET", "BYTES");
            for p in pushes {
                println!(
                    "{:<6} {:<17} {:<24} {:<10} {}",
                    p.id,
                    utc_stamp(p.created),
                    p.target.to_string(),
                    p.bytes,
                    p.label
                );
                for a in p.applied {
                    let how = if a.ok { "applied" } else { "REFUSED" };
                    println!("       {how} by {}/{} at {}: {}", a.token, a.endpoint, utc_stamp(a.at), a.message);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        EndpointsCommand::Token { command } => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async {
                let db = EndpointDb::open(&web_db).await?;
                match command {
                    TokenCommand::Create { name, group } => {
                        let (token, secret) = db.create_token_in(name, group).await?;
                        println!("{} token: {secret}", token.name);
                        println!("(shown once; the appliance keeps only its hash)");
                    }
                    TokenCommand::List => {
                        println!("{:<24} {:<17} {:<17} {:<8} GROUP", "NAME", "CREATED", "REVOKED", "EVENTS");
                        for t in db.tokens().await? {
                            let revoked = t.revoked.map_or("-".to_string(), utc_stamp);
                            let group = t.group.as_ref().map_or("-", |g| g.as_str());
                            println!(
                                "{:<24} {:<17} {:<17} {:<8} {group}",
                                t.name.as_str(),
                                utc_stamp(t.created),
                                revoked,
                                t.events
                            );
                        }
                    }
                    TokenCommand::Revoke { name } => {
                        db.revoke(&name).await?;
                        println!("revoked {name}");
                    }
                }
                Ok(ExitCode::SUCCESS)
            })
        }
    }
}
