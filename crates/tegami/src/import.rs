//! The `import` and `export` commands: their arguments and the lines they print. The work
//! (mbox and Maildir++ in, mboxrd and Maildir++ out, through the store's durable append) is
//! in `ops::mailbox_io`. They open the store directly, so they work whether or not the
//! server is running.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use ops::Ops;
use ops::config::Config;
use ops::mailbox_io::{MaildirExport, MaildirImport, MboxExport, MboxImport};

#[derive(Subcommand)]
pub enum ImportCommand {
    /// Import an mbox file (mboxrd, mboxo, mboxcl), repairing damage and reporting skips.
    Mbox {
        file: PathBuf,
        #[arg(long)]
        account: String,
        /// The target mailbox, created if missing.
        #[arg(long, default_value = "INBOX")]
        mailbox: String,
    },
    /// Import a Maildir (cur/ and new/) and its Maildir++ folders (.Name → Name, . → /,
    /// \2e → .).
    Maildir {
        dir: PathBuf,
        #[arg(long)]
        account: String,
    },
}

#[derive(Subcommand)]
pub enum ExportCommand {
    /// Export one mailbox as an mboxrd file (written durably, replacing FILE whole).
    Mbox {
        #[arg(long)]
        account: String,
        #[arg(long, default_value = "INBOX")]
        mailbox: String,
        file: PathBuf,
    },
    /// Export every mailbox (or only --mailbox) as a Maildir++ tree in DIR, which must be
    /// new or empty (INBOX → DIR, A/B → DIR/.A.B, "." in a name → \2e).
    Maildir {
        #[arg(long)]
        account: String,
        dir: PathBuf,
        #[arg(long)]
        mailbox: Option<String>,
    },
}

pub fn run_import(
    data: &Path,
    config: &Config,
    command: ImportCommand,
) -> anyhow::Result<ExitCode> {
    let ops = Ops::open(data, config.clone())?;
    let progress = crate::progress::terminal();
    let report = match command {
        ImportCommand::Mbox {
            file,
            account,
            mailbox,
        } => ops.import_mbox(
            &MboxImport {
                file,
                account,
                mailbox,
            },
            &progress,
        ),
        ImportCommand::Maildir { dir, account } => {
            ops.import_maildir(&MaildirImport { dir, account }, &progress)
        }
    }?;
    for skipped in &report.skipped {
        println!("skipped {skipped}");
    }
    for repaired in &report.repaired {
        println!("repaired {repaired}");
    }
    println!("{}", report.summary);
    if let Some(e) = &report.log_error {
        eprintln!("tegami: cannot write log/import.log: {e}");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_export(
    data: &Path,
    config: &Config,
    command: ExportCommand,
) -> anyhow::Result<ExitCode> {
    let ops = Ops::open(data, config.clone())?;
    let progress = crate::progress::terminal();
    let report = match command {
        ExportCommand::Mbox {
            account,
            mailbox,
            file,
        } => ops.export_mbox(
            &MboxExport {
                account,
                mailbox,
                file,
            },
            &progress,
        ),
        ExportCommand::Maildir {
            account,
            dir,
            mailbox,
        } => ops.export_maildir(
            &MaildirExport {
                account,
                dir,
                mailbox,
            },
            &progress,
        ),
    }?;
    for note in &report.notes {
        println!("{note}");
    }
    println!("{}", report.summary);
    if let Some(e) = &report.log_error {
        eprintln!("tegami: cannot write log/import.log: {e}");
    }
    Ok(ExitCode::SUCCESS)
}
