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
digest or an absolute path (spelled as the kernel does: /usr/bin//sleep/ is read
as /usr/bin/sleep); severity: 0 to 10. Dotted numbers that are not an IP address
(127.000.066.081: leading zeros) are bad lines. A line repeating an IoC (same
uuid and value) is a warning: its severity counts once.")]
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
            // harmless (counted once) but worth knowing: warnings, not failures
            for dup in &report.duplicates {
                eprintln!("warning: {dup}");
            }
            for twice in &report.repeated_files {
                eprintln!("warning: {}: named twice, read once", twice.display());
            }
            eprintln!(
                "{} IoCs ok, {} bad lines, {} duplicates in {} file(s)",
                report.loaded,
                report.bad.len(),
                report.duplicates.len(),
                files.len()
            );
            Ok(if report.bad.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}
