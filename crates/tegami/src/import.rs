//! The `import` and `export` commands: mbox (read with repair by `mbox.rs`) and Maildir into
//! a mailbox through the store's durable append, and a mailbox out to mboxrd. They open the
//! store directly, so they work whether or not the server is running.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use store::{AccountId, BlobId, Flags, MailboxInfo, SqliteStore, Store, StoreError};

use crate::mbox::{self, Item};

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
    /// Import a Maildir (cur/ and new/) and its Maildir++ folders (.Name → Name, . → /).
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
}

/// What an import did, for the summary line and `log/import.log`.
#[derive(Default)]
struct Tally {
    imported: u64,
    present: u64,
    bytes: u64,
    skipped: Vec<String>,
    repaired: Vec<String>,
}

impl Tally {
    fn summary(&self, source: &Path) -> String {
        let mut line = format!(
            "import {}: imported {} messages ({} bytes), {} already present, {} repaired, skipped {}",
            source.display(),
            self.imported,
            self.bytes,
            self.present,
            self.repaired.len(),
            self.skipped.len()
        );
        if !self.skipped.is_empty() {
            line += &format!(": {}", self.skipped.join("; "));
        }
        line
    }
}

/// One mailbox being filled: the content hashes it holds, so nothing is appended twice.
struct Target {
    mailbox: MailboxInfo,
    present: HashSet<BlobId>,
}

impl Target {
    fn open(store: &SqliteStore, account: AccountId, name: &str) -> anyhow::Result<Target> {
        let mailbox = match store.mailbox(account, name) {
            Ok(m) => m,
            Err(StoreError::NotFound { .. }) => store
                .create_mailbox(account, name)
                .with_context(|| format!("cannot create mailbox {name}"))?,
            Err(e) => return Err(e).with_context(|| format!("cannot open mailbox {name}")),
        };
        let present = store
            .messages(mailbox.id)?
            .into_iter()
            .map(|m| m.blob)
            .collect();
        Ok(Target { mailbox, present })
    }

    fn add(
        &mut self,
        store: &SqliteStore,
        tally: &mut Tally,
        bytes: &[u8],
        flags: Flags,
        keywords: &[String],
        date: Option<i64>,
    ) -> anyhow::Result<()> {
        let blob = BlobId::of(bytes);
        if self.present.contains(&blob) {
            tally.present += 1;
            return Ok(());
        }
        store
            .append(self.mailbox.id, bytes, flags, keywords, date)
            .with_context(|| format!("cannot append to {}", self.mailbox.name))?;
        self.present.insert(blob);
        tally.imported += 1;
        tally.bytes += bytes.len() as u64;
        Ok(())
    }
}

fn account_id(store: &SqliteStore, address: &str) -> anyhow::Result<AccountId> {
    match store
        .accounts()?
        .into_iter()
        .find(|a| a.address.eq_ignore_ascii_case(address))
    {
        Some(a) => Ok(a.id),
        None => bail!("no account {address}"),
    }
}

fn progress(len: u64, what: &str) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
        "{what} {{wide_bar}} {{bytes}}/{{total_bytes}} ({{bytes_per_sec}}, {{eta}} left)"
    )) {
        bar.set_style(style);
    }
    Some(bar)
}

pub fn run_import(data: &Path, command: ImportCommand) -> anyhow::Result<ExitCode> {
    let store = SqliteStore::open(data)
        .with_context(|| format!("cannot open the store in {}", data.display()))?;
    let mut tally = Tally::default();
    let source = match &command {
        ImportCommand::Mbox {
            file,
            account,
            mailbox,
        } => {
            let account = account_id(&store, account)?;
            import_mbox(&store, account, mailbox, file, &mut tally)?;
            file.clone()
        }
        ImportCommand::Maildir { dir, account } => {
            let account = account_id(&store, account)?;
            import_maildir(&store, account, dir, &mut tally)?;
            dir.clone()
        }
    };
    for line in tally.skipped.iter().map(|s| format!("skipped {s}")) {
        println!("{line}");
    }
    for line in &tally.repaired {
        println!("repaired {line}");
    }
    let summary = tally.summary(&source);
    println!("{summary}");
    if let Err(e) = gate::oplog::append(
        &data.join("log"),
        "import.log",
        &jiff::Zoned::now(),
        &summary,
    ) {
        eprintln!("tegami: cannot write log/import.log: {e}");
    }
    Ok(ExitCode::SUCCESS)
}

fn import_mbox(
    store: &SqliteStore,
    account: AccountId,
    mailbox: &str,
    file: &Path,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let f = File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let len = f.metadata()?.len();
    let mut target = Target::open(store, account, mailbox)?;
    let bar = progress(len, "importing");
    let mut reader = mbox::Reader::new(BufReader::with_capacity(1 << 16, f));
    while let Some(item) = reader.next() {
        match item.with_context(|| format!("cannot read {}", file.display()))? {
            Item::Message(m) => {
                if !m.notes.is_empty() {
                    tally.repaired.push(format!(
                        "bytes {}..{}: {}",
                        m.offset,
                        m.end,
                        m.notes.join(", ")
                    ));
                }
                target.add(store, tally, &m.bytes, m.flags, &[], m.internal_date)?;
            }
            Item::Skipped {
                offset,
                end,
                reason,
            } => tally
                .skipped
                .push(format!("bytes {offset}..{end}: {reason}")),
        }
        if let Some(bar) = &bar {
            bar.set_position(reader.position());
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(())
}

/// The folders of a Maildir++ tree: the root is INBOX, `.A.B` is `A/B`.
fn maildir_folders(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut folders = vec![("INBOX".to_string(), dir.to_path_buf())];
    let mut subs = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(folder) = name.strip_prefix('.')
            && !folder.is_empty()
            && !folder.starts_with('.')
            && entry.path().join("cur").is_dir()
        {
            subs.push((folder.replace('.', "/"), entry.path()));
        }
    }
    subs.sort();
    folders.extend(subs);
    Ok(folders)
}

/// Dovecot's `dovecot-keywords`: line `N name` gives the letter `a` + N.
fn dovecot_keywords(dir: &Path) -> Vec<(char, String)> {
    let Ok(text) = fs::read_to_string(dir.join("dovecot-keywords")) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let (n, name) = line.split_once(' ')?;
            let n: u8 = n.parse().ok()?;
            (n < 26).then(|| ((b'a' + n) as char, name.trim().to_string()))
        })
        .collect()
}

/// System flags and keywords from a file name's `:2,` info.
fn maildir_flags(name: &str, keywords: &[(char, String)]) -> (Flags, Vec<String>) {
    let mut flags = 0;
    let mut words = Vec::new();
    if let Some((_, info)) = name.rsplit_once(":2,") {
        for c in info.chars() {
            flags |= match c {
                'S' => Flags::SEEN,
                'R' => Flags::ANSWERED,
                'F' => Flags::FLAGGED,
                'T' => Flags::DELETED,
                'D' => Flags::DRAFT,
                _ => 0,
            };
            if let Some((_, word)) = keywords.iter().find(|(k, _)| *k == c) {
                words.push(word.clone());
            }
        }
    }
    words.sort();
    words.dedup();
    (Flags(flags), words)
}

/// LF or mixed line ends become CRLF, as SMTP delivers messages.
fn to_crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32);
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' && (i == 0 || bytes[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

fn import_maildir(
    store: &SqliteStore,
    account: AccountId,
    dir: &Path,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let folders = maildir_folders(dir)?;
    let mut files = Vec::new();
    for (mailbox, path) in &folders {
        for sub in ["cur", "new"] {
            let Ok(entries) = fs::read_dir(path.join(sub)) else {
                continue;
            };
            let mut names: Vec<PathBuf> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            names.sort();
            files.extend(
                names
                    .into_iter()
                    .map(|p| (mailbox.clone(), path.clone(), p)),
            );
        }
    }
    let total: u64 = files
        .iter()
        .map(|(_, _, p)| p.metadata().map_or(0, |m| m.len()))
        .sum();
    let bar = progress(total, "importing");
    let mut target: Option<Target> = None;
    let mut keywords = (PathBuf::new(), Vec::new());
    for (mailbox, folder, path) in files {
        if target.as_ref().is_none_or(|t| t.mailbox.name != mailbox) {
            target = Some(Target::open(store, account, &mailbox)?);
        }
        if keywords.0 != folder {
            keywords = (folder.clone(), dovecot_keywords(&folder));
        }
        let raw = match fs::read(&path) {
            Ok(raw) => raw,
            Err(e) => {
                tally.skipped.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        if let Some(bar) = &bar {
            bar.inc(raw.len() as u64);
        }
        let nuls = raw.iter().filter(|&&b| b == 0).count();
        let cleaned: Vec<u8> = raw.into_iter().filter(|&b| b != 0).collect();
        if !cleaned
            .split(|&b| b == b'\n')
            .next()
            .is_some_and(|l| l.contains(&b':'))
        {
            tally
                .skipped
                .push(format!("{}: not a message (no header)", path.display()));
            continue;
        }
        if nuls > 0 {
            tally
                .repaired
                .push(format!("{}: {nuls} NUL bytes removed", path.display()));
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (flags, words) = maildir_flags(&name, &keywords.1);
        let date = path
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64);
        let bytes = to_crlf(&cleaned);
        if let Some(t) = target.as_mut() {
            t.add(store, tally, &bytes, flags, &words, date)?;
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(())
}

pub fn run_export(data: &Path, command: ExportCommand) -> anyhow::Result<ExitCode> {
    let ExportCommand::Mbox {
        account,
        mailbox,
        file,
    } = command;
    let store = SqliteStore::open(data)
        .with_context(|| format!("cannot open the store in {}", data.display()))?;
    let account = account_id(&store, &account)?;
    let mb = store
        .mailbox(account, &mailbox)
        .with_context(|| format!("no mailbox {mailbox}"))?;
    let messages = store.messages(mb.id)?;
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = file
        .file_name()
        .context("the export needs a file name")?
        .to_string_lossy()
        .into_owned();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let bar = progress(messages.iter().map(|m| m.size).sum(), "exporting");
    let result = (|| -> anyhow::Result<u64> {
        let mut out = BufWriter::new(File::create(&tmp)?);
        let mut bytes = 0;
        for m in &messages {
            let body = store.read_blob(&m.blob)?;
            mbox::write_message(&mut out, &body, m.internal_date)?;
            bytes += body.len() as u64;
            if let Some(bar) = &bar {
                bar.inc(body.len() as u64);
            }
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(bytes)
    })();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let bytes = match result {
        Ok(bytes) => bytes,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e.context(format!("cannot write {}", file.display())));
        }
    };
    fs::rename(&tmp, &file).with_context(|| format!("cannot rename into {}", file.display()))?;
    File::open(&dir)?.sync_all()?;
    let summary = format!(
        "export {mailbox} to {}: {} messages ({bytes} bytes)",
        file.display(),
        messages.len()
    );
    println!("{summary}");
    if let Err(e) = gate::oplog::append(
        &data.join("log"),
        "import.log",
        &jiff::Zoned::now(),
        &summary,
    ) {
        eprintln!("tegami: cannot write log/import.log: {e}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maildir_info_maps_to_flags_and_keywords() {
        let keywords = vec![('a', "$Forwarded".to_string())];
        let (flags, words) = maildir_flags("123.abc.host:2,FRSTa", &keywords);
        assert_eq!(
            flags.0,
            Flags::FLAGGED | Flags::ANSWERED | Flags::SEEN | Flags::DELETED
        );
        assert_eq!(words, vec!["$Forwarded".to_string()]);
        assert_eq!(maildir_flags("123.abc.host", &keywords).0.0, 0);
    }

    #[test]
    fn line_ends_become_crlf() {
        assert_eq!(to_crlf(b"a\nb\r\nc\n"), b"a\r\nb\r\nc\r\n");
    }
}
