//! The `tegami` command: thin glue between the command line, the config, the store and the
//! protocol servers. Every failure ends as one line on stderr and a non-zero exit code.

mod acme_cmd;
mod admin;
mod alerts;
mod archive;
mod backup;

mod check;
mod ddns;
mod doctor;
mod import;
mod index;
mod logging;
mod maint;
mod newsletter;
mod pipe;
mod plan;
mod progress;
mod queue;
mod schedule;
mod send;
mod serve;
mod service;
mod services;
mod stats;
mod witness;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ops::config;

#[derive(Parser)]
#[command(
    name = "tegami",
    version,
    about = "A self-hosted mail server that keeps itself healthy"
)]
struct Cli {
    /// The data directory: database, message blobs, logs.
    #[arg(
        long,
        global = true,
        default_value = service::DEFAULT_DATA,
        env = "TEGAMI_DATA"
    )]
    data: PathBuf,
    /// A TOML config file (see tegami.example.toml); without one, the defaults apply.
    #[arg(long, global = true, env = "TEGAMI_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the mail server.
    Serve(serve::Listeners),
    /// Manage mail accounts.
    #[command(subcommand)]
    Account(admin::AccountCommand),
    /// Manage aliases (one address delivering to one or more others).
    #[command(subcommand)]
    Alias(admin::AliasCommand),
    /// Manage the domains this server receives mail for.
    #[command(subcommand)]
    Domain(admin::DomainCommand),
    /// Check the integrity of the metadata and of every message blob.
    Check {
        /// Fix what can be fixed without losing mail (reference counts, indexes), quarantine
        /// damaged blobs, and move unreferenced message bodies to quarantine/orphans/.
        #[arg(long, conflicts_with = "recover_orphans")]
        repair: bool,
        /// Instead of checking, put every unreferenced message body (in blobs/ or in
        /// quarantine/orphans/) into a mailbox of --account, as unread mail.
        #[arg(long, requires = "account")]
        recover_orphans: bool,
        /// The account that receives the recovered bodies.
        #[arg(long, value_name = "ADDRESS", requires = "recover_orphans")]
        account: Option<String>,
        /// The mailbox they go to (created if missing).
        #[arg(long, value_name = "NAME", default_value = "Recovered")]
        mailbox: String,
    },
    /// Optimise the database: statistics, WAL checkpoint, free pages, orphan blobs.
    Optimize,
    /// Maintenance mode: refuse clients politely while the operator works.
    #[command(subcommand)]
    Maint(maint::MaintCommand),
    /// Diagnose the installation: directories, space, database, listeners, certificates.
    Doctor {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Backups, online and verified: create, list, verify, prune.
    #[command(subcommand)]
    Backup(backup::BackupCommand),
    /// Replace the data directory with a backup (the server must be stopped).
    Restore(backup::RestoreArgs),
    /// Size the volumes a deployment needs, step by step.
    Plan(plan::PlanArgs),
    /// Usage per account, disk use and growth, and the forecast of when space runs out.
    #[command(subcommand)]
    Stats(stats::StatsCommand),
    /// Import mail from an mbox file or a Maildir, repairing damage and reporting skips.
    #[command(subcommand)]
    Import(import::ImportCommand),
    /// Export a mailbox as an mboxrd file, or an account as a Maildir++ tree.
    #[command(subcommand)]
    Export(import::ExportCommand),
    /// Read-only archives of old mail: create, list, search, export, check.
    #[command(subcommand)]
    Archive(archive::ArchiveCommand),
    /// The full-text index of live mail that IMAP SEARCH uses: rebuild, check.
    #[command(subcommand)]
    Index(index::IndexCommand),
    /// Remove mail older than each mailbox's configured age ([retention] in the config).
    #[command(subcommand)]
    Retention(archive::RetentionCommand),
    /// The outbound queue: list, show, retry, remove, flush.
    #[command(subcommand)]
    Queue(queue::QueueCommand),
    /// Mailing lists for newsletters and step mail.
    #[command(subcommand)]
    List(newsletter::ListCommand),
    /// Subscribers of a list: add, import and export CSV, unsubscribe, history.
    #[command(subcommand)]
    Subscriber(newsletter::SubscriberCommand),
    /// Newsletter campaigns: create, pause, resume, cancel, totals.
    #[command(subcommand)]
    Campaign(newsletter::CampaignCommand),
    /// Step-mail sequences: mails sent N days after someone subscribes.
    #[command(subcommand)]
    Sequence(newsletter::SequenceCommand),
    /// The global suppression list: addresses no campaign or step mail goes to (bounced,
    /// complained, unsubscribed everywhere, or added by hand); import and export CSV.
    #[command(subcommand)]
    Suppression(newsletter::SuppressionCommand),
    /// ACME certificates: `acme status`.
    #[command(subcommand)]
    Acme(acme_cmd::AcmeCommand),
    /// Heartbeats received from other servers: their address history.
    #[command(subcommand)]
    Witness(witness::WitnessCommand),
}

/// A listener address given on the command line overrides the config file.
fn override_addr(flag: Option<SocketAddr>, configured: &mut SocketAddr) {
    if let Some(addr) = flag {
        *configured = addr;
    }
}

/// Pins glibc's mmap threshold at 1 MiB. By default glibc raises the threshold after the
/// first large block is freed, and from then on serves every password hash's 19 MiB from the
/// heap, where fragmentation kept it: measured, resident memory grew by 19 MiB per POP3
/// login without bound. With the threshold fixed, large blocks always go back to the kernel.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tame_allocator() {
    const M_MMAP_THRESHOLD: std::ffi::c_int = -3;
    unsafe extern "C" {
        fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
    }
    // SAFETY: mallopt only sets an allocator tunable; it is called before any other thread
    // exists, and a failure leaves the default behaviour in place.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, 1 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tame_allocator() {}

fn newsletter_command(
    data: &std::path::Path,
    config: &config::Config,
    command: newsletter::Command,
) -> anyhow::Result<ExitCode> {
    logging::init_stderr("warn");
    newsletter::run(data, config, command)
}

/// One line: the error and its causes, outermost first; and a failing exit code.
fn fail(e: anyhow::Error) -> ExitCode {
    let causes: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    eprintln!("tegami: {}", causes.join(": "));
    ExitCode::FAILURE
}

/// A relative data directory must exist unless it is the quick-start default; a missing one
/// is created 0700 (serve creates its own, for the user it will run as). `doctor` reports
/// what it finds, `plan` needs no store, and `restore` builds the directory it is given.
fn data_dir_rules(cli: &Cli) -> anyhow::Result<()> {
    if matches!(
        cli.command,
        Command::Doctor { .. } | Command::Plan(_) | Command::Restore(_)
    ) {
        return Ok(());
    }
    service::check_data_dir(&cli.data)?;
    if !matches!(cli.command, Command::Serve(_)) {
        service::create_data_dir(&cli.data, None)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    tame_allocator();
    pipe::install();
    let cli = Cli::parse();
    if let Err(e) = data_dir_rules(&cli) {
        return fail(e);
    }
    // Every command validates the config it runs under, even one that reads nothing from it
    // today: a broken file must stop `check` or `account list` as surely as `serve`, not be
    // found at the next restart. (`serve` reads it again itself, with its listener flags.)
    let config = match config::Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(e) => return fail(e.into()),
    };
    let result = match cli.command {
        Command::Serve(listeners) => serve::run(&cli.data, cli.config.as_deref(), listeners),
        Command::Maint(command) => {
            logging::init_stderr("warn");
            maint::run(&cli.data, command)
        }
        Command::Backup(command) => {
            logging::init_stderr("warn");
            backup::run(&cli.data, &config, command)
        }
        Command::Restore(args) => {
            logging::init_stderr("warn");
            backup::restore(&cli.data, &config, args)
        }
        Command::Stats(command) => {
            logging::init_stderr("warn");
            stats::run(&cli.data, &config, command)
        }
        Command::Plan(args) => {
            logging::init_stderr("warn");
            plan::run(&cli.data, &config, args)
        }
        Command::Import(command) => {
            logging::init_stderr("warn");
            import::run_import(&cli.data, &config, command)
        }
        Command::Export(command) => {
            logging::init_stderr("warn");
            import::run_export(&cli.data, &config, command)
        }
        Command::Archive(command) => {
            logging::init_stderr("warn");
            archive::run(&cli.data, &config, command)
        }
        Command::Index(command) => {
            logging::init_stderr("warn");
            index::run(&cli.data, &config, command)
        }
        Command::Retention(command) => {
            logging::init_stderr("warn");
            archive::run_retention(&cli.data, &config, command)
        }
        Command::Queue(command) => {
            logging::init_stderr("warn");
            queue::run(&cli.data, &config, command)
        }
        Command::List(c) => newsletter_command(&cli.data, &config, newsletter::Command::List(c)),
        Command::Subscriber(c) => {
            newsletter_command(&cli.data, &config, newsletter::Command::Subscriber(c))
        }
        Command::Campaign(c) => {
            newsletter_command(&cli.data, &config, newsletter::Command::Campaign(c))
        }
        Command::Sequence(c) => {
            newsletter_command(&cli.data, &config, newsletter::Command::Sequence(c))
        }
        Command::Suppression(c) => {
            newsletter_command(&cli.data, &config, newsletter::Command::Suppression(c))
        }
        Command::Acme(command) => {
            logging::init_stderr("warn");
            acme_cmd::run(&cli.data, &config, command)
        }
        Command::Domain(admin::DomainCommand::Records(args)) => {
            logging::init_stderr("warn");
            admin::records(&cli.data, &config, args)
        }
        Command::Witness(command) => {
            logging::init_stderr("warn");
            witness::run(&cli.data, command)
        }
        Command::Doctor { json } => {
            logging::init_stderr("warn");
            doctor::run(&cli.data, &config, json)
        }
        command => {
            logging::init_stderr("warn");
            admin::run(&cli.data, &config, command)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => fail(e),
    }
}
