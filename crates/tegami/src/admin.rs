//! The faces of the administrative commands: domains, accounts, aliases (`ops::directory`)
//! and the integrity check (`ops::check`). They open the store directly, so they work
//! whether or not the server is running. `domain records` prints what a domain needs in
//! DNS and, with `--check`, what DNS answers.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use ops::Ops;
use ops::config::Config;
use ops::directory::{CheckedRecord, DkimRequest};

use crate::Command;

#[derive(Subcommand)]
pub enum AccountCommand {
    /// Create an account (its domain must exist) with an INBOX.
    Add {
        address: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Make it an administrator of the server (the web console's operator screens).
        #[arg(long)]
        admin: bool,
    },
    /// List accounts with their message count and size (and "admin" for administrators).
    List,
    /// Make an account an administrator of the server, or no longer one.
    Admin {
        address: String,
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// Show an account's storage quota, or set it: bytes or a size such as 500M or 2G;
    /// "none" lets its domain's default apply (`tegami domain quota`).
    Quota {
        address: String,
        size: Option<String>,
    },
    /// Remove an account and all of its mail.
    Remove { address: String },
    /// Set a new password.
    Password {
        address: String,
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Subcommand)]
pub enum AliasCommand {
    /// Create an alias delivering to each target (accounts or other aliases).
    Add {
        address: String,
        #[arg(required = true)]
        targets: Vec<String>,
    },
    List,
    Remove {
        address: String,
    },
}

#[derive(Subcommand)]
pub enum DomainCommand {
    Add {
        name: String,
    },
    List,
    Remove {
        name: String,
    },
    /// Show or set the storage quota of the domain's accounts that have none of their own
    /// (a size such as 1G, or "none").
    Quota {
        name: String,
        size: Option<String>,
    },
    /// Print the DKIM TXT record to publish, making the domain's signing key if needed.
    Dkim {
        name: String,
        /// The selector of a new key (default: "tg" and the date and time, so newer keys
        /// sort later; the newest key signs).
        #[arg(long)]
        selector: Option<String>,
        /// Make a new key even though one exists (a key rotation).
        #[arg(long)]
        new: bool,
    },
    /// Print every DNS record the domain needs, ready to paste into its zone; with
    /// --check, compare each with what DNS answers (exit 1 when one is missing or wrong).
    Records(RecordsArgs),
}

#[derive(clap::Args)]
pub struct RecordsArgs {
    name: String,
    /// Query DNS ([dns] servers, or the system's resolver) and say what is missing or wrong.
    #[arg(long)]
    check: bool,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

pub fn run(data: &Path, config: &Config, command: Command) -> anyhow::Result<ExitCode> {
    let ops = Ops::open(data, config.clone())?;
    match command {
        Command::Domain(DomainCommand::Add { name }) => {
            let name = ops.domain_add(&name)?;
            println!("added domain {name}");
        }
        Command::Domain(DomainCommand::List) => {
            for name in ops.domains()? {
                println!("{name}");
            }
        }
        Command::Domain(DomainCommand::Dkim {
            name,
            selector,
            new,
        }) => {
            let request = DkimRequest {
                domain: name,
                selector,
                new,
            };
            return crate::send::dkim(&ops, &request);
        }
        Command::Domain(DomainCommand::Quota { name, size }) => {
            if let Some(size) = size {
                ops.domain_quota_set(&name, ops::quota::parse_limit(&size)?)?;
            }
            let limit = ops.domain_quota(&name)?;
            println!(
                "{name}: accounts without their own quota are limited to {}",
                ops::quota::show_limit(limit)
            );
        }
        Command::Domain(DomainCommand::Remove { name }) => {
            ops.domain_remove(&name)?;
            println!("removed domain {name}");
        }
        Command::Account(AccountCommand::Add {
            address,
            password_stdin,
            admin,
        }) => {
            let password = read_password(password_stdin)?;
            let address = ops.account_add(&address, &password, admin)?;
            let role = if admin { " (administrator)" } else { "" };
            println!("added account {address}{role}");
        }
        Command::Account(AccountCommand::List) => {
            for account in ops.accounts()? {
                let role = if account.admin { "\tadmin" } else { "" };
                let quota = match account.quota {
                    Some(limit) => format!("\tquota {limit} bytes"),
                    None => String::new(),
                };
                println!(
                    "{}\t{} messages\t{} bytes{quota}{role}",
                    account.address, account.messages, account.bytes
                );
            }
        }
        Command::Account(AccountCommand::Admin { address, state }) => {
            let admin = state == "on";
            ops.account_admin(&address, admin)?;
            let now = if admin { "is now" } else { "is no longer" };
            println!("{address} {now} an administrator");
        }
        Command::Account(AccountCommand::Quota { address, size }) => {
            let shown = match size {
                Some(size) => ops.account_quota_set(&address, ops::quota::parse_limit(&size)?)?,
                None => ops.account_quota(&address)?,
            };
            let used = store::human_bytes(shown.quota.used);
            let line = match (shown.quota.limit, shown.own) {
                (None, _) => format!("{address}: {used} used, no quota"),
                (Some(limit), own) => format!(
                    "{address}: {used} used of {} ({} %), {}",
                    store::human_bytes(limit),
                    shown.quota.percent().unwrap_or(0),
                    if own.is_some() {
                        "its own quota"
                    } else {
                        "its domain's default"
                    }
                ),
            };
            println!("{line}");
        }
        Command::Account(AccountCommand::Remove { address }) => {
            ops.account_remove(&address)?;
            println!("removed account {address} and its mail");
        }
        Command::Account(AccountCommand::Password {
            address,
            password_stdin,
        }) => {
            let password = read_password(password_stdin)?;
            ops.account_password(&address, &password)?;
            println!("password changed for {address}");
        }
        Command::Alias(AliasCommand::Add { address, targets }) => {
            let address = ops.alias_add(&address, &targets)?;
            println!("added alias {address} -> {}", targets.join(", "));
        }
        Command::Alias(AliasCommand::List) => {
            for alias in ops.aliases()? {
                println!("{}\t{}", alias.address, alias.targets.join(", "));
            }
        }
        Command::Alias(AliasCommand::Remove { address }) => {
            ops.alias_remove(&address)?;
            println!("removed alias {address}");
        }
        Command::Check {
            recover_orphans: true,
            account,
            mailbox,
            ..
        } => {
            let account = account.context("--recover-orphans needs --account ADDRESS")?;
            return crate::check::run_recover_orphans(&ops, &account, &mailbox);
        }
        Command::Check { repair, .. } => return crate::check::run_check(&ops, repair),
        Command::Optimize => return crate::check::run_optimize(&ops),
        Command::Domain(DomainCommand::Records(_))
        | Command::Serve(_)
        | Command::Maint(_)
        | Command::Doctor { .. }
        | Command::Backup(_)
        | Command::Restore(_)
        | Command::Plan(_)
        | Command::Stats(_)
        | Command::Import(_)
        | Command::Export(_)
        | Command::Archive(_)
        | Command::Index(_)
        | Command::Retention(_)
        | Command::Queue(_)
        | Command::List(_)
        | Command::Subscriber(_)
        | Command::Campaign(_)
        | Command::Sequence(_)
        | Command::Suppression(_)
        | Command::Acme(_)
        | Command::Witness(_) => {
            unreachable!("dispatched in main")
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `tegami domain records NAME [--check] [--json]`.
pub fn records(data: &Path, config: &Config, args: RecordsArgs) -> anyhow::Result<ExitCode> {
    let ops = Ops::open(data, config.clone())?;
    let needed = ops.domain_records(&args.name)?;
    if !args.check {
        if args.json {
            println!("{}", pretty(&needed.listing())?);
        } else {
            print!("{}", needed.zone());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let checked = needed.check(config)?;
    if args.json {
        println!("{}", pretty(&checked)?);
    } else {
        print!("{}", render_check(&checked.records));
    }
    Ok(if checked.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A report as indented JSON, its keys in alphabetical order as they have always been.
fn pretty(report: &impl serde::Serialize) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(&serde_json::to_value(
        report,
    )?)?)
}

/// One line per record: status, type, name, and what was found against what is expected.
fn render_check(checked: &[CheckedRecord]) -> String {
    let width = checked
        .iter()
        .map(|c| c.record.name.len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    let mut counts = [0usize; 5];
    for CheckedRecord {
        record, verdict, ..
    } in checked
    {
        counts[verdict.status as usize] += 1;
        let expected = record
            .expected
            .as_ref()
            .map(|v| v.zone_data())
            .unwrap_or_else(|| "?".into());
        let mut line = format!(
            "{:<8} {:<5} {:<width$}  ",
            verdict.status.as_str(),
            record.rtype.as_str(),
            record.name
        );
        match verdict.status {
            dns_records::Status::Ok if record.expected.is_none() => line.push_str("none"),
            dns_records::Status::Ok => line.push_str(&expected),
            dns_records::Status::Present => {
                line.push_str(&format!("found {}", verdict.found.join(", ")))
            }
            _ => {
                if !verdict.found.is_empty() {
                    line.push_str(&format!("found {}; ", verdict.found.join(", ")));
                }
                line.push_str(&format!("expected {expected}"));
            }
        }
        if !verdict.detail.is_empty() {
            line.push_str(&format!(" ({})", verdict.detail));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let [ok, missing, wrong, present, error] = counts;
    out.push_str(&format!(
        "{} records: {ok} ok, {missing} missing, {wrong} wrong, {present} present (not compared), {error} not answered\n",
        checked.len()
    ));
    out
}

/// Reads a password from standard input: the first line, without its line ending.
fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if !from_stdin {
        if !stdin.is_terminal() {
            bail!("no password given; pipe it in with --password-stdin");
        }
        eprint!("Password (shown as typed; prefer --password-stdin): ");
        std::io::stderr().flush()?;
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        bail!("the password is empty; give one on standard input");
    }
    Ok(password)
}
