//! `ioclab ioc`: IoC file tools.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use ioclab_agent::ioc::loader::check_files;

/// Work with IoC files.
#[derive(Args)]
pub struct IocArgs {
    #[command(subcommand)]
    command: IocCommand,
}

#[derive(Subcommand)]
enum IocCommand {
    /// List every bad line of IoC files as FILE:LINE: REASON; exit 1 if there is any.
    #[command(after_help = "\
An IoC line looks like:
  {\"uuid\": \"...\", \"source\": \"misp\", \"value\": \"why.kunai.rocks\", \"severity\": 4}
value: a domain (matches its subdomains too), an IPv4/IPv6 address, an md5/sha1/sha256/sha512
digest or an absolute path; severity: 0 to 10.")]
    Check {
        /// IoC files (plain or .gz).
        #[arg(value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
    },
}

/// Runs `ioclab ioc ...`.
pub fn run(args: IocArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        IocCommand::Check { files } => {
            let report = check_files(&files)?;
            for bad in &report.bad {
                println!("{bad}");
            }
            eprintln!("{} IoCs ok, {} bad lines in {} file(s)", report.loaded, report.bad.len(), files.len());
            Ok(if report.bad.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}
