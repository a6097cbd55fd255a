//! `ioclab lab`: scenarios (list, check, schema) and the lab network (shell).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use ioclab_lab::scenario::{load, schema, Severity};

/// Arguments of `ioclab lab`.
#[derive(Args)]
pub struct LabArgs {
    #[command(subcommand)]
    command: LabCommand,
}

/// Where scenarios are found.
#[derive(Args)]
struct ScenarioDir {
    /// The folder holding one sub-folder per scenario.
    #[arg(long, env = "IOCLAB_SCENARIOS", default_value = "lab-scenarios")]
    dir: PathBuf,
}

#[derive(Subcommand)]
enum LabCommand {
    /// List the scenarios: id, title, level, duration, ATT&CK techniques.
    #[command(
        after_help = "Examples:\n  ioclab lab list\n  ioclab lab list --dir ~/my-scenarios\n  IOCLAB_SCENARIOS=/srv/lab ioclab lab list"
    )]
    List {
        #[command(flatten)]
        dir: ScenarioDir,
    },
    /// Validate scenario files; prints each problem as FILE:LINE:COLUMN and exits 1 on errors.
    #[command(after_help = "Checks: unknown keys, types, undeclared #{args}, ATT&CK ids, missing assets and sha256\n\
mismatches, duplicate ids, unlock conditions naming unknown detections, lab addresses\n\
that are not loopback, and answers.yaml against the questions.\n\n\
Examples:\n  ioclab lab check                          # every scenario under lab-scenarios/\n  \
ioclab lab check lab-scenarios/dns-ioc-why-kunai-rocks\n  \
ioclab lab check my-draft/scenario.yaml")]
    Check {
        /// Scenario folders or scenario.yaml files (none: every scenario under --dir).
        paths: Vec<PathBuf>,
        #[command(flatten)]
        dir: ScenarioDir,
    },
    /// Print the JSON Schema of scenario.yaml (or answers.yaml), for editor completion.
    #[command(
        after_help = "Examples:\n  ioclab lab schema > scenario.schema.json\n  ioclab lab schema --answers > answers.schema.json\n\n\
Then, at the top of a scenario.yaml (yaml-language-server, e.g. VS Code's YAML extension):\n  \
# yaml-language-server: $schema=./scenario.schema.json"
    )]
    Schema {
        /// The schema of answers.yaml instead.
        #[arg(long)]
        answers: bool,
    },
}

/// Runs `ioclab lab`.
pub fn run(args: LabArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        LabCommand::List { dir } => list(&dir.dir),
        LabCommand::Check { paths, dir } => check(paths, &dir.dir),
        LabCommand::Schema { answers } => {
            let s = if answers { schema::answers() } else { schema::scenario() };
            println!("{}", serde_json::to_string_pretty(&s)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn scenarios_in(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    load::find(dir)
        .with_context(|| format!("cannot read the scenario folder {} (set --dir or IOCLAB_SCENARIOS)", dir.display()))
}

fn list(dir: &Path) -> anyhow::Result<ExitCode> {
    let mut code = ExitCode::SUCCESS;
    println!("{:<32} {:<12} {:>5}  {:<36} TITLE", "ID", "LEVEL", "MIN", "ATT&CK");
    for path in scenarios_in(dir)? {
        match load::load(&path) {
            Ok(l) => {
                let s = &l.scenario;
                let attack: Vec<&str> = s.attack.iter().map(|a| a.as_str()).collect();
                println!(
                    "{:<32} {:<12} {:>5}  {:<36} {}",
                    s.id.as_str(),
                    s.level.to_string(),
                    s.duration_minutes,
                    attack.join(","),
                    s.title
                );
            }
            Err(diags) => {
                eprintln!(
                    "{}: invalid scenario ({} errors; run `ioclab lab check {}`)",
                    path.display(),
                    diags.len(),
                    path.display()
                );
                code = ExitCode::FAILURE;
            }
        }
    }
    Ok(code)
}

fn check(paths: Vec<PathBuf>, dir: &Path) -> anyhow::Result<ExitCode> {
    let paths = if paths.is_empty() { scenarios_in(dir)? } else { paths };
    if paths.is_empty() {
        anyhow::bail!("no scenario under {} (a scenario is a folder holding scenario.yaml)", dir.display());
    }
    let (mut errors, mut warnings) = (0, 0);
    for path in &paths {
        let diags = match load::load(path) {
            Ok(l) => {
                println!("ok {}", l.scenario.id.as_str());
                l.warnings
            }
            Err(d) => d,
        };
        for d in diags {
            match d.severity {
                Severity::Error => errors += 1,
                Severity::Warning => warnings += 1,
            }
            println!("{d}");
        }
    }
    println!("{} scenario(s) checked: {errors} error(s), {warnings} warning(s)", paths.len());
    Ok(if errors > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
