//! One module per subcommand.

pub mod agent;
pub mod endpoints;
pub mod install;
pub mod ioc;
pub mod lab;
pub mod lab_record;
pub mod lab_replay;
pub mod lab_reset;
pub mod lab_run;
pub mod misp;
pub mod replay;
pub mod sandbox;
pub mod serve;
pub mod users;

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;

/// Opens `path` for appending (never truncating earlier events), or stdout for None or "-".
pub fn output(path: Option<&Path>) -> anyhow::Result<Box<dyn Write + Send>> {
    match path {
        None => Ok(Box::new(BufWriter::with_capacity(64 * 1024, std::io::stdout()))),
        Some(p) if p == Path::new("-") => Ok(Box::new(BufWriter::with_capacity(64 * 1024, std::io::stdout()))),
        Some(p) => {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("cannot open {} for writing", p.display()))?;
            Ok(Box::new(BufWriter::with_capacity(64 * 1024, f)))
        }
    }
}
