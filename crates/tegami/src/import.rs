//! The `import` and `export` commands: mbox (read with repair by `mbox.rs`) and Maildir into
//! a mailbox through the store's durable append, a mailbox out to mboxrd, and an account out
//! to a Maildir++ tree that `import maildir` reads back whole. They open the store directly,
//! so they work whether or not the server is running.
//!
//! Maildir++ folder names: the root is INBOX and `A/B` is `.A.B`, so a "." inside a name
//! level cannot be written as itself. Both directions use the convention of Dovecot's
//! listescape plugin: "." is written `\2e` and `\` is written `\5c`, and import decodes any
//! `\XX` (two hex digits) back to its byte. A message file is
//! `<internal date>.<uid, 10 digits>_<hash>.tegami:2,<flags>`, its mtime is the internal date (import
//! reads the date from the mtime, as Dovecot does), and keywords are the letters a–z of the
//! folder's `dovecot-keywords` file. Bodies are written as stored (CRLF), so a round trip
//! keeps every byte.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use store::prelude::*;

use anyhow::{Context, bail};
use clap::Subcommand;
use store::{
    AccountId, BlobId, Flags, MailboxInfo, MessageMeta, NewMessage, SqliteStore, StoreError,
};

use mailfile::maildir::{self, folder_for, mailbox_for, maildir_flags, maildir_info};
use mailfile::mbox::{self, Item};

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

/// One mailbox being filled, with how many copies of each content hash it held before the
/// import: each source message first claims one of those (a re-import appends nothing),
/// while a source holding the same message twice, as a mailbox may, gives it twice.
struct Target {
    mailbox: MailboxInfo,
    present: HashMap<BlobId, u32>,
    /// Messages read but not yet stored: they go in batches ([`SqliteStore::append_batch`]),
    /// one flush of the disk for many messages instead of three each.
    pending: Vec<NewMessage>,
    pending_bytes: usize,
}

/// A batch is stored when it reaches either bound: few enough messages that a kill loses
/// little work, bytes bounded so memory stays flat whatever the file's size.
const BATCH_MESSAGES: usize = 500;
const BATCH_BYTES: usize = 8 << 20;

fn open_or_create(
    store: &SqliteStore,
    account: AccountId,
    name: &str,
) -> anyhow::Result<MailboxInfo> {
    match store.mailbox(account, name) {
        Ok(m) => Ok(m),
        Err(StoreError::NotFound { .. }) => store
            .create_mailbox(account, name)
            .with_context(|| format!("cannot create mailbox {name}")),
        Err(e) => Err(e).with_context(|| format!("cannot open mailbox {name}")),
    }
}

impl Target {
    fn open(store: &SqliteStore, account: AccountId, name: &str) -> anyhow::Result<Target> {
        let mailbox = open_or_create(store, account, name)?;
        let mut present = HashMap::new();
        for m in store.messages(mailbox.id)? {
            *present.entry(m.blob).or_insert(0) += 1;
        }
        Ok(Target {
            mailbox,
            present,
            pending: Vec::new(),
            pending_bytes: 0,
        })
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
        if let Some(copies) = self.present.get_mut(&blob).filter(|c| **c > 0) {
            *copies -= 1;
            tally.present += 1;
            return Ok(());
        }
        self.pending.push(NewMessage {
            bytes: bytes.to_vec(),
            flags,
            keywords: keywords.to_vec(),
            internal_date: date,
        });
        self.pending_bytes += bytes.len();
        tally.imported += 1;
        tally.bytes += bytes.len() as u64;
        if self.pending.len() >= BATCH_MESSAGES || self.pending_bytes >= BATCH_BYTES {
            self.flush(store)?;
        }
        Ok(())
    }

    /// Stores what is pending, durably; called at every batch bound and at the end.
    fn flush(&mut self, store: &SqliteStore) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        store
            .append_batch(self.mailbox.id, batch)
            .with_context(|| format!("cannot append to {}", self.mailbox.name))?;
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
    // Opened at the first message, so an input with none leaves no empty mailbox behind.
    let mut target: Option<Target> = None;
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
                let target = match &mut target {
                    Some(target) => target,
                    None => target.insert(Target::open(store, account, mailbox)?),
                };
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
    let Some(mut target) = target else {
        // A file with no message in it is the wrong file, not an empty import.
        let skipped = match tally.skipped.first() {
            Some(first) => format!("; skipped {first}"),
            None => String::new(),
        };
        bail!(
            "{} holds no mail message ({len} bytes read{skipped}); an mbox file starts each \
             message with a \"From \" line followed by mail headers (a Maildir is imported \
             with `tegami import maildir`)",
            file.display()
        );
    };
    target.flush(store)
}

/// The folders of a Maildir++ tree: the root is INBOX, `.A.B` is `A/B` (see [`mailbox_for`]).
/// Dovecot's `dovecot-keywords` file of a folder (none when it cannot be read).
fn dovecot_keywords(dir: &Path) -> Vec<(char, String)> {
    fs::read_to_string(dir.join("dovecot-keywords"))
        .map(|text| maildir::keywords(&text))
        .unwrap_or_default()
}

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
            subs.push((mailbox_for(folder), entry.path()));
        }
    }
    subs.sort();
    folders.extend(subs);
    Ok(folders)
}

fn import_maildir(
    store: &SqliteStore,
    account: AccountId,
    dir: &Path,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let folders = maildir_folders(dir)?;
    // Every folder becomes a mailbox, even an empty one, so that an exported tree comes
    // back with the same mailboxes.
    for (mailbox, _) in &folders {
        open_or_create(store, account, mailbox)?;
    }
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
            if let Some(mut done) = target.take() {
                done.flush(store)?;
            }
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
        let Some((bytes, nuls)) = maildir::message(&raw) else {
            tally
                .skipped
                .push(format!("{}: not a message (no header)", path.display()));
            continue;
        };
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
        let date = path.metadata().and_then(|m| m.modified()).ok().map(|t| {
            match t.duration_since(UNIX_EPOCH) {
                Ok(d) => d.as_secs() as i64,
                Err(e) => -(e.duration().as_secs_f64().ceil() as i64),
            }
        });
        if let Some(t) = target.as_mut() {
            t.add(store, tally, &bytes, flags, &words, date)?;
        }
    }
    if let Some(mut done) = target {
        done.flush(store)?;
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(())
}

pub fn run_export(data: &Path, command: ExportCommand) -> anyhow::Result<ExitCode> {
    let store = SqliteStore::open(data)
        .with_context(|| format!("cannot open the store in {}", data.display()))?;
    let summary = match command {
        ExportCommand::Mbox {
            account,
            mailbox,
            file,
        } => export_mbox(&store, &account, &mailbox, &file)?,
        ExportCommand::Maildir {
            account,
            dir,
            mailbox,
        } => {
            let account = account_id(&store, &account)?;
            export_maildir(&store, account, mailbox.as_deref(), &dir)?
        }
    };
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

fn export_mbox(
    store: &SqliteStore,
    account: &str,
    mailbox: &str,
    file: &Path,
) -> anyhow::Result<String> {
    let account = account_id(store, account)?;
    let mb = store
        .mailbox(account, mailbox)
        .with_context(|| format!("no mailbox {mailbox}"))?;
    let messages = store.messages(mb.id)?;
    let bar = progress(messages.iter().map(|m| m.size).sum(), "exporting");
    let result = replace_file(file, |out| {
        let mut bytes = 0;
        for m in &messages {
            let body = store.read_blob(&m.blob)?;
            mbox::write_message(out, &body, m.internal_date)?;
            bytes += body.len() as u64;
            if let Some(bar) = &bar {
                bar.inc(body.len() as u64);
            }
        }
        Ok(bytes)
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let bytes = result?;
    Ok(format!(
        "export {mailbox} to {}: {} messages ({bytes} bytes)",
        file.display(),
        messages.len()
    ))
}

/// Writes a file whole or not at all: a temporary file beside it, fsynced, renamed over it.
pub(crate) fn replace_file<T>(
    file: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
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
    let result = (|| -> anyhow::Result<T> {
        let mut out = BufWriter::new(File::create(&tmp)?);
        let value = write(&mut out)?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(value)
    })();
    match result {
        Ok(value) => {
            fs::rename(&tmp, file)
                .with_context(|| format!("cannot rename into {}", file.display()))?;
            File::open(&dir)?.sync_all()?;
            Ok(value)
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e.context(format!("cannot write {}", file.display())))
        }
    }
}

/// A file written whole into `tmp/` of a Maildir folder, fsynced with its mtime set, then
/// renamed to `to`: a reader of the tree never sees half a file.
fn write_durably(
    tmp_dir: &Path,
    to: &Path,
    bytes: &[u8],
    mtime: Option<SystemTime>,
) -> anyhow::Result<()> {
    let name = to.file_name().context("a file name")?;
    let tmp = tmp_dir.join(name);
    let result = (|| -> std::io::Result<()> {
        let mut f = File::create_new(&tmp)?;
        f.write_all(bytes)?;
        if let Some(t) = mtime {
            f.set_modified(t)?;
        }
        f.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", tmp.display()));
    }
    fs::rename(&tmp, to)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), to.display()))
}

fn epoch_time(secs: i64) -> SystemTime {
    let d = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot fsync {}", dir.display()))
}

fn export_maildir(
    store: &SqliteStore,
    account: AccountId,
    only: Option<&str>,
    dir: &Path,
) -> anyhow::Result<String> {
    let mailboxes = match only {
        Some(name) => vec![
            store
                .mailbox(account, name)
                .with_context(|| format!("no mailbox {name}"))?,
        ],
        // The live mailboxes: archived mail has `archive export` (an archive's read-only
        // folders imported back would become live mail again).
        None => store
            .mailboxes(account)?
            .into_iter()
            .filter(|m| !m.read_only)
            .collect(),
    };
    // An export only ever fills a directory of its own, so that it cannot mix with (or
    // be mistaken for) mail that was there before.
    let created = match fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} is not empty (export maildir writes only into a new or empty \
                     directory: name one that does not exist yet)",
                    dir.display()
                );
            }
            false
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            true
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    let mut plan: Vec<(MailboxInfo, Vec<MessageMeta>)> = Vec::new();
    for mb in mailboxes {
        let messages = store.messages(mb.id)?;
        plan.push((mb, messages));
    }
    let bar = progress(
        plan.iter().flat_map(|(_, ms)| ms).map(|m| m.size).sum(),
        "exporting",
    );
    let mut folders = vec![dir.to_path_buf()];
    let (mut messages, mut bytes) = (0u64, 0u64);
    let mut notes = Vec::new();
    let result = (|| -> anyhow::Result<()> {
        // The root is a Maildir even when INBOX is not exported, so that the tree is one.
        for sub in ["cur", "new", "tmp"] {
            fs::create_dir_all(dir.join(sub))?;
        }
        for (mb, list) in &plan {
            let folder = match folder_for(&mb.name) {
                None => dir.to_path_buf(),
                Some(name) => {
                    let folder = dir.join(name);
                    for sub in ["cur", "new", "tmp"] {
                        fs::create_dir_all(folder.join(sub))?;
                    }
                    write_durably(
                        &folder.join("tmp"),
                        &folder.join("maildirfolder"),
                        b"",
                        None,
                    )?;
                    folders.push(folder.clone());
                    folder
                }
            };
            let all: BTreeSet<&String> = list.iter().flat_map(|m| &m.keywords).collect();
            let letters: Vec<String> = all.iter().take(26).map(|k| k.to_string()).collect();
            if all.len() > 26 {
                let dropped: Vec<&str> = all.iter().skip(26).map(|k| k.as_str()).collect();
                notes.push(format!(
                    "{}: keywords beyond the 26 letters a-z not exported: {}",
                    mb.name,
                    dropped.join(" ")
                ));
            }
            if !letters.is_empty() {
                let text: String = letters
                    .iter()
                    .enumerate()
                    .map(|(i, k)| format!("{i} {k}\n"))
                    .collect();
                write_durably(
                    &folder.join("tmp"),
                    &folder.join("dovecot-keywords"),
                    text.as_bytes(),
                    None,
                )?;
            }
            for m in list {
                let body = store.read_blob(&m.blob)?;
                let hash = m.blob.to_string();
                // The UID is zero-padded so that import, which takes a folder's files in
                // name order, keeps the UID order of messages with the same date.
                let name = format!(
                    "{}.{:010}_{}.tegami:2,{}",
                    m.internal_date,
                    m.uid,
                    &hash[..hash.len().min(8)],
                    maildir_info(m.flags, &m.keywords, &letters)
                );
                write_durably(
                    &folder.join("tmp"),
                    &folder.join("cur").join(name),
                    &body,
                    Some(epoch_time(m.internal_date)),
                )?;
                messages += 1;
                bytes += body.len() as u64;
                if let Some(bar) = &bar {
                    bar.inc(body.len() as u64);
                }
            }
        }
        for folder in &folders {
            for sub in ["cur", "new", "tmp"] {
                sync_dir(&folder.join(sub))?;
            }
            sync_dir(folder)?;
        }
        if created && let Some(parent) = dir.parent() {
            sync_dir(if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            })?;
        }
        Ok(())
    })();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    result.with_context(|| {
        format!(
            "export to {} stopped after {messages} messages (remove the directory before \
             exporting again)",
            dir.display()
        )
    })?;
    for note in &notes {
        println!("{note}");
    }
    let mut summary = format!(
        "export maildir to {}: {} mailboxes, {messages} messages ({bytes} bytes)",
        dir.display(),
        plan.len()
    );
    if !notes.is_empty() {
        summary += &format!(", {}", notes.join("; "));
    }
    Ok(summary)
}
