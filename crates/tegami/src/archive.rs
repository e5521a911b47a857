//! The `archive` and `retention` commands: their arguments, and the text and JSON they show.
//! The operations (and the daily automatic archiving and retention the server runs) are in
//! `ops::archive`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use ops::Ops;
use ops::archive::{CreateRequest, ExportFormat, ExportRequest, SearchRequest};
use store::human_bytes;

use ops::config::Config;

#[derive(Subcommand)]
pub enum ArchiveCommand {
    /// Move mail older than a date into a new read-only archive (online; resumes an
    /// interrupted run first).
    Create {
        /// Messages whose internal date is before this day (local midnight) are archived.
        #[arg(long, value_name = "YYYY-MM-DD")]
        before: String,
        /// Only this account's mail (default: every account).
        #[arg(long)]
        account: Option<String>,
        /// The archive's name in listings and in IMAP ("Archive/<label>/INBOX").
        #[arg(long)]
        label: Option<String>,
        /// Show what would be archived and the space needed; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// The archives: id, label, accounts, period, messages, size, state, directory.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Full-text and header search in one archive.
    Search {
        id: u32,
        /// Words that must all occur (subject, addresses or text); CJK runs match anywhere.
        query: Vec<String>,
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        subject: Option<String>,
        /// Internal date on or after this day.
        #[arg(long, value_name = "YYYY-MM-DD")]
        since: Option<String>,
        /// Internal date before this day.
        #[arg(long, value_name = "YYYY-MM-DD")]
        until: Option<String>,
        #[arg(long)]
        account: Option<String>,
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// Export an archive's message list as CSV, or its messages as mboxrd.
    Export {
        id: u32,
        /// date, account, mailbox, from, to, subject, size, message id: one row a message.
        #[arg(long, value_name = "FILE", required_unless_present = "mbox")]
        csv: Option<PathBuf>,
        /// The messages themselves, importable with `tegami import mbox`.
        #[arg(long, value_name = "FILE", conflicts_with = "csv")]
        mbox: Option<PathBuf>,
        #[arg(long)]
        account: Option<String>,
        /// Only this mailbox (with --mbox).
        #[arg(long)]
        mailbox: Option<String>,
    },
    /// Verify archives: database, full-text index, every body against its hash.
    Check { id: Option<u32> },
    /// Run the configured automatic archiving rules that are due now.
    Auto,
}

#[derive(Subcommand)]
pub enum RetentionCommand {
    /// Remove mail older than each configured mailbox's age, now.
    Run {
        #[arg(long)]
        dry_run: bool,
    },
}

pub fn run(data: &Path, config: &Config, command: ArchiveCommand) -> anyhow::Result<ExitCode> {
    let ops = Ops::open(data, config.clone())?;
    Ok(archive(&ops, command)?)
}

fn archive(ops: &Ops, command: ArchiveCommand) -> ops::Result<ExitCode> {
    match command {
        ArchiveCommand::Create {
            before,
            account,
            label,
            dry_run,
            json,
        } => {
            let request = CreateRequest {
                before,
                account,
                label,
            };
            if dry_run {
                show_plan(&ops.archive_plan(&request)?);
            } else {
                create(ops, &request, json)?;
            }
        }
        ArchiveCommand::List { json } => list(&ops.archive_list()?, json),
        ArchiveCommand::Search {
            id,
            query,
            from,
            to,
            subject,
            since,
            until,
            account,
            limit,
            json,
        } => {
            let hits = ops.archive_search(&SearchRequest {
                id,
                words: query,
                from,
                to,
                subject,
                since,
                until,
                account,
                limit,
            })?;
            if json {
                println!("{}", to_json(&hits));
            } else {
                for m in &hits {
                    println!(
                        "{}  {}  {}  ({} {} UID {})",
                        m.day, m.from, m.subject, m.account, m.mailbox, m.uid
                    );
                }
                eprintln!("{} messages found", hits.len());
            }
        }
        ArchiveCommand::Export {
            id,
            csv,
            mbox,
            account,
            mailbox,
        } => {
            let format = match (csv, mbox) {
                (Some(file), _) => ExportFormat::Csv(file),
                (_, Some(file)) => ExportFormat::Mbox(file),
                _ => return Err(ops::Error::invalid("say where: --csv FILE or --mbox FILE")),
            };
            let request = ExportRequest {
                id,
                format,
                account,
                mailbox,
            };
            let report = ops.archive_export(&request, &crate::progress::terminal())?;
            match request.format {
                ExportFormat::Csv(_) => println!(
                    "archive {id}: {} messages listed in {}",
                    report.messages,
                    report.file.display()
                ),
                ExportFormat::Mbox(_) => println!(
                    "archive {id}: {} messages ({}) exported to {}",
                    report.messages,
                    human_bytes(report.bytes),
                    report.file.display()
                ),
            }
        }
        ArchiveCommand::Check { id } => {
            let report = ops.archive_check(id, &crate::progress::terminal())?;
            if report.archives.is_empty() {
                println!("no archives to check");
            }
            for a in &report.archives {
                println!("{}", a.line());
                for problem in &a.problems {
                    println!("  {problem}");
                }
            }
            if !report.is_healthy() {
                return Ok(ExitCode::FAILURE);
            }
        }
        ArchiveCommand::Auto => {
            let lines = ops.archive_auto()?;
            if lines.is_empty() {
                println!("no automatic archiving due");
            }
            for line in lines {
                println!("{line}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_retention(
    data: &Path,
    config: &Config,
    command: RetentionCommand,
) -> anyhow::Result<ExitCode> {
    let RetentionCommand::Run { dry_run } = command;
    let ops = Ops::open(data, config.clone())?;
    let report = ops.retention_run(dry_run)?;
    if report.rules.is_empty() {
        println!("no retention configured (add a [retention] table, such as Trash = 30)");
    }
    for rule in &report.rules {
        println!("{}", rule.line);
    }
    Ok(ExitCode::SUCCESS)
}

fn to_json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

fn show_plan(plan: &ops::archive::PlanReport) {
    println!(
        "would archive {} messages ({}) of {} account(s) before {}",
        plan.messages,
        human_bytes(plan.bytes),
        plan.accounts.len(),
        plan.before
    );
    println!(
        "space needed: {} (+ {} kept free); free: {}{}",
        human_bytes(plan.needed_bytes),
        human_bytes(plan.reserve_bytes),
        human_bytes(plan.free_bytes),
        if plan.copies_bodies {
            "; bodies are copied (the archive is on another file system)"
        } else {
            "; bodies are hard-linked, not copied"
        }
    );
}

fn create(ops: &Ops, request: &CreateRequest, json: bool) -> ops::Result<()> {
    let report = ops.archive_create(request, &crate::progress::terminal())?;
    if !json {
        for line in &report.resumed_lines {
            println!("{line}");
        }
    }
    for skipped in &report.skipped {
        eprintln!("tegami: skipped {skipped}");
    }
    if json {
        println!("{}", to_json(&report));
    } else {
        println!("{}", report.line);
    }
    Ok(())
}

fn list(infos: &[ops::archive::ListEntry], json: bool) {
    if json {
        println!("{}", to_json(&infos));
        return;
    }
    if infos.is_empty() {
        println!("no archives (make one with `tegami archive create --before YYYY-MM-DD`)");
        return;
    }
    println!(
        "{:<4} {:<16} {:<28} {:<23} {:>9} {:>10} {:<9} DIRECTORY",
        "ID", "LABEL", "ACCOUNTS", "PERIOD", "MESSAGES", "SIZE", "STATE"
    );
    for a in infos {
        let accounts = match a.accounts.as_slice() {
            [] => "-".to_string(),
            [one] => one.clone(),
            [first, rest @ ..] => format!("{first} +{}", rest.len()),
        };
        println!(
            "{:<4} {:<16} {:<28} {:<23} {:>9} {:>10} {:<9} {}",
            a.id,
            a.label,
            accounts,
            format!("{} .. {}", a.first, a.last),
            a.messages,
            human_bytes(a.bytes),
            a.state,
            a.dir
        );
    }
}
