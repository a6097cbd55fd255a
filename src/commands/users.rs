//! `ioclab users`: the appliance's accounts (instructors and trainees) in
//! `<data>/web.db`, managed from the lab machine's shell.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use ioclab_web::password;
use ioclab_web::users::{Role, UserDb, UserName};

use super::lab::DataArg;

/// Arguments of `ioclab users`.
#[derive(Args)]
pub struct UsersArgs {
    #[command(subcommand)]
    command: UsersCommand,
    #[command(flatten)]
    data: DataArg,
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Add one account; prints its password (generated unless --password is given).
    #[command(
        after_help = "Examples:\n  ioclab users add alice --role instructor\n  ioclab users add bob --token   (also prints an API token)"
    )]
    Add {
        /// The login name (a-z, 0-9, '.', '_', '-').
        name: UserName,
        /// trainee or instructor.
        #[arg(long, default_value = "trainee")]
        role: Role,
        /// The password (default: a generated one, printed).
        #[arg(long)]
        password: Option<String>,
        /// Also make an API token (for `Authorization: Bearer` on /api/).
        #[arg(long)]
        token: bool,
    },
    /// Add a class of trainees at once and print a sheet of logins and passwords.
    #[command(
        after_help = "Examples:\n  ioclab users add-class --count 20 > class-sheet.txt\n  ioclab users add-class --count 12 --prefix blue"
    )]
    AddClass {
        /// How many trainees.
        #[arg(long)]
        count: u32,
        /// Their names: PREFIX-01, PREFIX-02...
        #[arg(long, default_value = "trainee")]
        prefix: String,
    },
    /// List the accounts.
    List,
    /// Give an account a new password (printed).
    ResetPassword {
        /// The login name.
        name: UserName,
        /// The new password (default: a generated one).
        #[arg(long)]
        password: Option<String>,
    },
    /// Give an account a new API token (printed once; the old one stops working).
    Token {
        /// The login name.
        name: UserName,
    },
    /// Remove an account (its sessions end at their next request).
    Remove {
        /// The login name.
        name: UserName,
    },
}

/// Runs `ioclab users`.
pub fn run(args: UsersArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(run_async(args))
}

async fn run_async(args: UsersArgs) -> anyhow::Result<ExitCode> {
    let dir = args.data.dir();
    std::fs::create_dir_all(dir.root())
        .with_context(|| format!("creating the data directory {}", dir.root().display()))?;
    let db = UserDb::open(&ioclab_web::web_db(&dir)).await?;
    match args.command {
        UsersCommand::Add { name, role, password, token } => {
            let pw = password.unwrap_or_else(password::generate);
            db.add(&name, role, &pw).await?;
            println!("{name} ({role}) password: {pw}");
            if token {
                println!("{name} API token: {}", db.new_token(&name).await?);
            }
        }
        UsersCommand::AddClass { count, prefix } => {
            anyhow::ensure!((1..=500).contains(&count), "--count must be between 1 and 500");
            let width = count.to_string().len().max(2);
            let mut sheet = Vec::new();
            for i in 1..=count {
                let name: UserName = format!("{prefix}-{i:0width$}")
                    .parse()
                    .map_err(|e: String| anyhow::anyhow!("--prefix {prefix:?}: {e}"))?;
                let pw = password::generate();
                db.add(&name, Role::Trainee, &pw).await?;
                sheet.push((name, pw));
            }
            println!("{:<24} PASSWORD", "LOGIN");
            for (name, pw) in sheet {
                println!("{:<24} {pw}", name.as_str());
            }
        }
        UsersCommand::List => {
            println!("{:<24} {:<11} TOKEN", "NAME", "ROLE");
            for u in db.list().await? {
                println!("{:<24} {:<11} {}", u.name.as_str(), u.role.as_str(), if u.has_token { "yes" } else { "no" });
            }
        }
        UsersCommand::ResetPassword { name, password } => {
            let pw = password.unwrap_or_else(password::generate);
            db.set_password(&name, &pw).await?;
            println!("{name} password: {pw}");
        }
        UsersCommand::Token { name } => println!("{name} API token: {}", db.new_token(&name).await?),
        UsersCommand::Remove { name } => {
            db.remove(&name).await?;
            println!("removed {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
