//! `ioclab lab`: scenarios (list, check, schema) and the lab network (shell).

use std::process::ExitCode;

use clap::{Args, Subcommand};

/// Arguments of `ioclab lab`.
#[derive(Args)]
pub struct LabArgs {
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Subcommand)]
enum LabCommand {}

/// Runs `ioclab lab`.
pub fn run(args: LabArgs) -> anyhow::Result<ExitCode> {
    match args.command {}
}
