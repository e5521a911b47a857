//! The administrative commands: domains, accounts, aliases and the integrity check. They
//! open the store directly, so they work whether or not the server is running.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use store::{SqliteStore, Store};

use crate::Command;

#[derive(Subcommand)]
pub enum AccountCommand {
    /// Create an account (its domain must exist) with an INBOX.
    Add {
        address: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List accounts with their message count and size.
    List,
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
}

pub fn run(data: &Path, command: Command) -> anyhow::Result<ExitCode> {
    let store = SqliteStore::open(data)
        .with_context(|| format!("cannot open the store in {}", data.display()))?;
    match command {
        Command::Domain(DomainCommand::Add { name }) => {
            store.add_domain(&name)?;
            println!("added domain {}", name.to_lowercase());
        }
        Command::Domain(DomainCommand::List) => {
            for name in store.domains()? {
                println!("{name}");
            }
        }
        Command::Domain(DomainCommand::Dkim {
            name,
            selector,
            new,
        }) => {
            let ours = store
                .domains()?
                .iter()
                .any(|d| d.eq_ignore_ascii_case(name.trim_end_matches('.')));
            if !ours {
                anyhow::bail!(
                    "{name} is not one of this server's domains; add it first with `tegami domain add {name}`"
                );
            }
            return crate::send::dkim(data, &name, selector, new);
        }
        Command::Domain(DomainCommand::Remove { name }) => {
            store.remove_domain(&name)?;
            println!("removed domain {name}");
        }
        Command::Account(AccountCommand::Add {
            address,
            password_stdin,
        }) => {
            let password = read_password(password_stdin)?;
            store.add_account(&address, &password)?;
            println!("added account {}", address.to_lowercase());
        }
        Command::Account(AccountCommand::List) => {
            for account in store.accounts()? {
                println!(
                    "{}\t{} messages\t{} bytes",
                    account.address, account.messages, account.bytes
                );
            }
        }
        Command::Account(AccountCommand::Remove { address }) => {
            store.remove_account(&address)?;
            println!("removed account {address} and its mail");
        }
        Command::Account(AccountCommand::Password {
            address,
            password_stdin,
        }) => {
            let password = read_password(password_stdin)?;
            store.set_password(&address, &password)?;
            println!("password changed for {address}");
        }
        Command::Alias(AliasCommand::Add { address, targets }) => {
            store.add_alias(&address, &targets)?;
            println!(
                "added alias {} -> {}",
                address.to_lowercase(),
                targets.join(", ")
            );
        }
        Command::Alias(AliasCommand::List) => {
            for alias in store.aliases()? {
                println!("{}\t{}", alias.address, alias.targets.join(", "));
            }
        }
        Command::Alias(AliasCommand::Remove { address }) => {
            store.remove_alias(&address)?;
            println!("removed alias {address}");
        }
        Command::Check {
            recover_orphans: true,
            account,
            mailbox,
            ..
        } => {
            let clock = gate::Clock::system().map_err(anyhow::Error::msg)?;
            let account = account.context("--recover-orphans needs --account ADDRESS")?;
            if !crate::ops::recover_orphans(&store, data, &clock, &account, &mailbox)? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Check { repair, .. } => {
            let clock = gate::Clock::system().map_err(anyhow::Error::msg)?;
            let outcome =
                crate::ops::check(&store, data, &clock, repair, crate::ops::Trigger::Manual)?;
            if !outcome.healthy {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Optimize => {
            let clock = gate::Clock::system().map_err(anyhow::Error::msg)?;
            crate::ops::optimize(&store, data, &clock, crate::ops::Trigger::Manual)?;
        }
        Command::Serve(_)
        | Command::Maint(_)
        | Command::Doctor { .. }
        | Command::Backup(_)
        | Command::Restore(_)
        | Command::Plan(_)
        | Command::Stats(_)
        | Command::Import(_)
        | Command::Export(_)
        | Command::Archive(_)
        | Command::Retention(_)
        | Command::Queue(_)
        | Command::List(_)
        | Command::Subscriber(_)
        | Command::Campaign(_)
        | Command::Sequence(_) => {
            unreachable!("dispatched in main")
        }
    }
    Ok(ExitCode::SUCCESS)
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
