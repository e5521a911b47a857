//! The administrative commands: domains, accounts, aliases and the integrity check. They
//! open the store directly, so they work whether or not the server is running. `domain
//! records` asks `dns-records` which records a domain needs and, with `--check`, DNS.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use store::prelude::*;

use anyhow::{Context, bail};
use clap::Subcommand;
use store::SqliteStore;

use crate::Command;
use ops::config::Config;

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
            if !crate::check::recover_orphans(&store, data, &clock, &account, &mailbox)? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Check { repair, .. } => {
            let clock = gate::Clock::system().map_err(anyhow::Error::msg)?;
            let outcome =
                crate::check::check(&store, data, &clock, repair, crate::check::Trigger::Manual)?;
            if !outcome.healthy {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Optimize => {
            let clock = gate::Clock::system().map_err(anyhow::Error::msg)?;
            crate::check::optimize(&store, data, &clock, crate::check::Trigger::Manual)?;
        }
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
        | Command::Retention(_)
        | Command::Queue(_)
        | Command::List(_)
        | Command::Subscriber(_)
        | Command::Campaign(_)
        | Command::Sequence(_)
        | Command::Acme(_)
        | Command::Witness(_) => {
            unreachable!("dispatched in main")
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The inputs of a domain's records, from the config and the domain's DKIM key.
fn records_setup(data: &Path, config: &Config, domain: &str) -> anyhow::Result<dns_records::Setup> {
    let dir = data.join("dkim");
    let dkim = outbound::dkim_record(&dir, domain)
        .with_context(|| format!("cannot read the DKIM keys in {}", dir.display()))?
        .map(|r| (r.name, r.value));
    Ok(dns_records::Setup {
        domain: domain.to_string(),
        mx_host: config.hostname.clone(),
        client_host: config.clients.host.clone(),
        ipv4: config.server.public_ipv4,
        ipv6: config.server.public_ipv6,
        dkim,
        report_address: config
            .server
            .report_address
            .clone()
            .unwrap_or_else(|| format!("postmaster@{domain}")),
        mta_sts_mode: config.server.mta_sts_mode,
        ports: config.clients.ports,
    })
}

/// `tegami domain records NAME [--check] [--json]`.
pub fn records(data: &Path, config: &Config, args: RecordsArgs) -> anyhow::Result<ExitCode> {
    let store = SqliteStore::open(data)
        .with_context(|| format!("cannot open the store in {}", data.display()))?;
    let domain = args.name.trim_end_matches('.').to_ascii_lowercase();
    if !store
        .domains()?
        .iter()
        .any(|d| d.eq_ignore_ascii_case(&domain))
    {
        bail!(
            "{domain} is not one of this server's domains; add it first with `tegami domain add {domain}`"
        );
    }
    drop(store);
    let setup = records_setup(data, config, &domain)?;
    let records = dns_records::records(&setup);
    let policy = dns_records::mta_sts_policy(&setup.mx_host, setup.mta_sts_mode);
    if !args.check {
        if args.json {
            let out = serde_json::json!({
                "domain": domain,
                "mta_sts_policy": policy,
                "records": records.iter().map(|r| {
                    let mut v = serde_json::to_value(r).expect("records serialise");
                    v["zone"] = r.zone_line().into();
                    v
                }).collect::<Vec<_>>(),
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            print!("{}", render_zone(&setup, &records, &policy));
        }
        return Ok(ExitCode::SUCCESS);
    }

    let resolver =
        outbound::resolver(&config.dns_servers).context("cannot set up DNS resolution")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // All questions at once: with a DNS server that does not answer, the command takes one
    // resolver timeout, not one per record.
    let answers: Vec<dns_records::Answer> = runtime.block_on(async {
        let tasks: Vec<_> = records
            .iter()
            .map(|record| {
                let resolver = resolver.clone();
                let name = record.name.clone();
                let rtype = record.rtype;
                tokio::spawn(async move {
                    // A record whose name is not known (no DKIM key yet) is not asked for.
                    if name.contains('<') {
                        dns_records::Answer::NoRecords
                    } else {
                        dns_records::lookup(&resolver.0, &name, rtype).await
                    }
                })
            })
            .collect();
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(
                task.await
                    .unwrap_or_else(|e| dns_records::Answer::Failed(e.to_string())),
            );
        }
        answers
    });
    let verdicts: Vec<dns_records::Verdict> = records
        .iter()
        .zip(&answers)
        .map(|(record, answer)| dns_records::compare(record, answer))
        .collect();
    let problems = verdicts.iter().filter(|v| v.status.is_problem()).count();
    if args.json {
        let out = serde_json::json!({
            "domain": domain,
            "ok": problems == 0,
            "records": records.iter().zip(&verdicts).map(|(r, v)| {
                let mut out = serde_json::to_value(r).expect("records serialise");
                out["zone"] = r.zone_line().into();
                out["status"] = v.status.as_str().into();
                out["found"] = serde_json::to_value(&v.found).expect("strings serialise");
                out["detail"] = v.detail.clone().into();
                out
            }).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", render_check(&records, &verdicts));
    }
    Ok(if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The records as a zone-file fragment: grouped, each under a one-line comment.
fn render_zone(
    setup: &dns_records::Setup,
    records: &[dns_records::Record],
    policy: &str,
) -> String {
    let domain = &setup.domain;
    let mut out = format!(
        "; DNS records for {domain}: paste them into its zone.\n\
         ; Mail host {}; mail clients connect to {}.\n\
         ; Once published, `tegami domain records {domain} --check` compares them with DNS.\n",
        setup.mx_host, setup.client_host
    );
    if !setup.mx_host.contains('.') {
        out.push_str(&format!(
            "; WARNING: the host name {:?} is not a public name: set `hostname` in the config.\n",
            setup.mx_host
        ));
    }
    let mut group = None;
    for record in records {
        if group != Some(record.group) {
            group = Some(record.group);
            out.push_str(&format!("\n; == {} ==\n", record.group.title()));
        }
        out.push_str(&format!("; {}\n{}\n", record.why, record.zone_line()));
    }
    out.push_str(&format!(
        "\n; The MTA-STS policy is served by tegami's HTTP listener at /.well-known/mta-sts.txt.\n\
         ; Senders fetch it from https://mta-sts.{domain}/.well-known/mta-sts.txt, so in\n\
         ; production that name needs HTTPS on port 443 with a valid certificate (a reverse\n\
         ; proxy in front of the HTTP listener). The policy:\n"
    ));
    for line in policy.lines() {
        out.push_str(&format!(";   {line}\n"));
    }
    out
}

/// One line per record: status, type, name, and what was found against what is expected.
fn render_check(records: &[dns_records::Record], verdicts: &[dns_records::Verdict]) -> String {
    let width = records.iter().map(|r| r.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    let mut counts = [0usize; 5];
    for (record, verdict) in records.iter().zip(verdicts) {
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
        records.len()
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
