//! The `index` commands over `ops::text_index`: `index rebuild [--account A]` and `index
//! check`, in text or JSON.

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;
use ops::Ops;
use ops::config::Config;

#[derive(Subcommand)]
pub enum IndexCommand {
    /// Index live mail again from the messages (online; SEARCH scans what is not indexed
    /// yet meanwhile).
    Rebuild {
        /// Only this account's mailboxes (default: everything).
        #[arg(long)]
        account: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Compare the index with the live messages: covered, waiting, missing, expunged.
    Check {
        #[arg(long)]
        json: bool,
    },
}

pub fn run(data: &Path, config: &Config, command: IndexCommand) -> anyhow::Result<ExitCode> {
    let ops = Ops::open(data, config.clone())?;
    match command {
        IndexCommand::Rebuild { account, json } => {
            let report = ops.index_rebuild(account.as_deref(), &crate::progress::terminal())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "indexed {} messages ({} bodies) in {:.1} s",
                    report.messages, report.bodies, report.seconds
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        IndexCommand::Check { json } => {
            let report = ops.index_check(&crate::progress::terminal())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{}", report.line());
            }
            Ok(if report.healthy {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
