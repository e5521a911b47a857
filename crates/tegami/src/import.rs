//! The `import` and `export` commands: their arguments and the lines they print. The work
//! (mbox and Maildir++ in, mboxrd and Maildir++ out, through the store's durable append) is
//! in `ops::mailbox_io`. They open the store directly, so they work whether or not the
//! server is running.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use ops::Ops;
use ops::config::Config;
use ops::mailbox_io::{MaildirExport, MaildirImport, MboxExport, MboxImport};

use crate::archive::failure;

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

/// Import and export take nothing from the config file (they never have): the defaults
/// give the store the same settings a bare open gave it.
fn open(data: &Path) -> anyhow::Result<Ops> {
    let config = Config::load(None)?;
    Ops::open(data, config).map_err(failure)
}

pub fn run_import(data: &Path, command: ImportCommand) -> anyhow::Result<ExitCode> {
    let ops = open(data)?;
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
    }
    .map_err(failure)?;
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

pub fn run_export(data: &Path, command: ExportCommand) -> anyhow::Result<ExitCode> {
    let ops = open(data)?;
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
    }
    .map_err(failure)?;
    for note in &report.notes {
        println!("{note}");
    }
    println!("{}", report.summary);
    if let Some(e) = &report.log_error {
        eprintln!("tegami: cannot write log/import.log: {e}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes a file whole or not at all, for `newsletter.rs` until it calls
/// `ops::files::replace_file` itself: its writer's error comes back as it was, under
/// "cannot write FILE", as before.
pub(crate) fn replace_file<T>(
    file: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let mut failed = None;
    let result = ops::files::replace_file(file, |out| {
        write(out).map_err(|e| {
            let text = format!("{e:#}");
            failed = Some(e);
            ops::Error::failed(text)
        })
    });
    match (result, failed) {
        (Ok(value), _) => Ok(value),
        (Err(_), Some(e)) => Err(e.context(format!("cannot write {}", file.display()))),
        (Err(e), None) => Err(failure(e)),
    }
}
