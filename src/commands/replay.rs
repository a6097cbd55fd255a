//! `ioclab replay`: IoC matching over recorded logs.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use ioclab_agent::replay::replay;
use ioclab_agent::sensor::load_iocs;

/// Arguments of `ioclab replay`.
#[derive(Args)]
#[command(after_help = "\
Examples:
  ioclab replay -i iocs.json events.json
  ioclab replay -i iocs.json -i more.json --min-severity 5 day1.json.gz day2.json.gz
  ioclab replay -i iocs.json events.json | jq .detection")]
pub struct ReplayArgs {
    /// IoC file (Kunai's format); repeatable.
    #[arg(short, long = "iocs", value_name = "IOCS", required = true)]
    iocs: Vec<PathBuf>,
    /// Write only detections of at least this severity (0-10).
    #[arg(short = 's', long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=10))]
    min_severity: u8,
    /// Write matching events to this file instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Recorded logs.
    #[arg(value_name = "LOGS", required = true)]
    logs: Vec<PathBuf>,
}

/// How many bad lines are shown before only counting them.
const SHOWN: usize = 20;

/// Runs `ioclab replay ...`.
pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let (iocs, _) = load_iocs(&args.iocs)?;
    let mut out = super::output(args.output.as_deref())?;
    let summary = replay(&args.logs, &iocs, args.min_severity, &mut *out)?;
    for bad in summary.bad.iter().take(SHOWN) {
        eprintln!("warning: {bad}");
    }
    if summary.bad.len() > SHOWN {
        eprintln!("warning: ... and {} more bad lines", summary.bad.len() - SHOWN);
    }
    eprintln!("replay: {} events read, {} matched, {} bad lines", summary.events, summary.matched, summary.bad.len());
    Ok(ExitCode::SUCCESS)
}
