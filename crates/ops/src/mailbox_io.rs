//! Mail in and out of the store: an mbox file (read with repair by `mailfile::mbox`) or a
//! Maildir++ tree into an account through the store's durable batched append, a mailbox out
//! to mboxrd, and an account out to a Maildir++ tree that the Maildir import reads back
//! whole. Each run appends its summary line to `log/import.log`.
//!
//! Maildir++ folder names: the root is INBOX and `A/B` is `.A.B`, so a "." inside a name
//! level cannot be written as itself. Both directions use the convention of Dovecot's
//! listescape plugin: "." is written `\2e` and `\` is written `\5c`, and import decodes any
//! `\XX` (two hex digits) back to its byte. A message file is
//! `<internal date>.<uid, 10 digits>_<hash>.tegami:2,<flags>`, its mtime is the internal date
//! (import reads the date from the mtime, as Dovecot does), and keywords are the letters a–z
//! of the folder's `dovecot-keywords` file. Bodies are written as stored (CRLF), so a round
//! trip keeps every byte.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use store::{AccountId, BlobId, Flags, MailboxInfo, MessageMeta, NewMessage, StoreError};

use mailfile::maildir::{self, folder_for, mailbox_for, maildir_flags, maildir_info};
use mailfile::mbox::{self, Item};

use crate::archive::chain_text;
use crate::error::{Error, IoContext, Result};
use crate::progress::{Reporter, Unit};
use crate::{Ops, files};

/// `import mbox`: one file into one mailbox (created if missing) of an account.
#[derive(Debug, Clone)]
pub struct MboxImport {
    pub file: PathBuf,
    pub account: String,
    pub mailbox: String,
}

/// `import maildir`: a Maildir and its Maildir++ folders into an account.
#[derive(Debug, Clone)]
pub struct MaildirImport {
    pub dir: PathBuf,
    pub account: String,
}

/// `export mbox`: one mailbox to one mboxrd file, replaced whole.
#[derive(Debug, Clone)]
pub struct MboxExport {
    pub account: String,
    pub mailbox: String,
    pub file: PathBuf,
}

/// `export maildir`: every live mailbox (or one) to a Maildir++ tree in a new or empty
/// directory.
#[derive(Debug, Clone)]
pub struct MaildirExport {
    pub account: String,
    pub dir: PathBuf,
    pub mailbox: Option<String>,
}

/// What an import did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    pub source: PathBuf,
    pub imported: u64,
    /// Messages the mailbox already held (a re-import appends nothing).
    pub present: u64,
    pub bytes: u64,
    /// What could not be imported and why ("bytes 10..20: ...", "<file>: ...").
    pub skipped: Vec<String>,
    /// What was imported after a repair, and which.
    pub repaired: Vec<String>,
    /// The summary line, as logged.
    pub summary: String,
    /// Why `log/import.log` could not be written, if it could not.
    pub log_error: Option<String>,
}

/// What an export did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExportReport {
    pub mailboxes: u64,
    pub messages: u64,
    pub bytes: u64,
    /// What the format could not carry (keywords beyond a–z), one line each.
    pub notes: Vec<String>,
    /// The summary line, as logged.
    pub summary: String,
    /// Why `log/import.log` could not be written, if it could not.
    pub log_error: Option<String>,
}

impl ImportReport {
    fn summarize(&mut self) {
        let mut line = format!(
            "import {}: imported {} messages ({} bytes), {} already present, {} repaired, skipped {}",
            self.source.display(),
            self.imported,
            self.bytes,
            self.present,
            self.repaired.len(),
            self.skipped.len()
        );
        if !self.skipped.is_empty() {
            line += &format!(": {}", self.skipped.join("; "));
        }
        self.summary = line;
    }
}

impl Ops {
    /// Imports an mbox file (mboxrd, mboxo, mboxcl), repairing damage and reporting skips.
    /// A file holding no message at all is refused: it is the wrong file.
    pub fn import_mbox(&self, request: &MboxImport, progress: &Reporter) -> Result<ImportReport> {
        let account = self.account_id(&request.account)?;
        let mut report = ImportReport {
            source: request.file.clone(),
            ..ImportReport::default()
        };
        let result = import_mbox(
            self,
            account,
            &request.mailbox,
            &request.file,
            &mut report,
            progress,
        );
        progress.finish();
        result?;
        self.finish_import(report)
    }

    /// Imports a Maildir (cur/ and new/) and its Maildir++ folders (.Name → Name, . → /,
    /// \2e → .); every folder becomes a mailbox, even an empty one.
    pub fn import_maildir(
        &self,
        request: &MaildirImport,
        progress: &Reporter,
    ) -> Result<ImportReport> {
        let account = self.account_id(&request.account)?;
        let mut report = ImportReport {
            source: request.dir.clone(),
            ..ImportReport::default()
        };
        let result = import_maildir(self, account, &request.dir, &mut report, progress);
        progress.finish();
        result?;
        self.finish_import(report)
    }

    /// Exports one mailbox as an mboxrd file, written durably, replacing the file whole.
    pub fn export_mbox(&self, request: &MboxExport, progress: &Reporter) -> Result<ExportReport> {
        let store = self.store();
        let account = self.account_id(&request.account)?;
        let mailbox = &request.mailbox;
        let mb = store
            .mailbox(account, mailbox)
            .map_err(|e| store_context(e, format!("no mailbox {mailbox}")))?;
        let messages = store.messages(mb.id)?;
        progress.phase(
            "exporting",
            Unit::Bytes,
            Some(messages.iter().map(|m| m.size).sum()),
        );
        let file = &request.file;
        let cannot_write =
            |e: Error| Error::failed(format!("cannot write {}: {}", file.display(), e.one_line()));
        let result = files::replace_file(file, |out| {
            let mut bytes = 0;
            for m in &messages {
                let body = store
                    .read_blob(&m.blob)
                    .map_err(|e| cannot_write(e.into()))?;
                mbox::write_message(out, &body, m.internal_date)
                    .map_err(|e| Error::failed(format!("cannot write {}: {e}", file.display())))?;
                bytes += body.len() as u64;
                progress.advance(bytes);
            }
            Ok(bytes)
        });
        progress.finish();
        let bytes = result?;
        let summary = format!(
            "export {mailbox} to {}: {} messages ({bytes} bytes)",
            file.display(),
            messages.len()
        );
        Ok(self.finish_export(ExportReport {
            mailboxes: 1,
            messages: messages.len() as u64,
            bytes,
            notes: Vec::new(),
            summary,
            log_error: None,
        }))
    }

    /// Exports every live mailbox (or only `mailbox`) as a Maildir++ tree. The directory must
    /// be new or empty, so an export never mixes with mail that was there before.
    pub fn export_maildir(
        &self,
        request: &MaildirExport,
        progress: &Reporter,
    ) -> Result<ExportReport> {
        let account = self.account_id(&request.account)?;
        let report = export_maildir(
            self,
            account,
            request.mailbox.as_deref(),
            &request.dir,
            progress,
        );
        progress.finish();
        Ok(self.finish_export(report?))
    }

    fn account_id(&self, address: &str) -> Result<AccountId> {
        match self
            .store()
            .accounts()?
            .into_iter()
            .find(|a| a.address.eq_ignore_ascii_case(address))
        {
            Some(a) => Ok(a.id),
            None => Err(Error::not_found(format!("no account {address}"))),
        }
    }

    fn finish_import(&self, mut report: ImportReport) -> Result<ImportReport> {
        report.summarize();
        report.log_error = self.log_import(&report.summary);
        Ok(report)
    }

    fn finish_export(&self, mut report: ExportReport) -> ExportReport {
        report.log_error = self.log_import(&report.summary);
        report
    }

    /// Appends to `log/import.log`; a failure is reported, not fatal (the mail is in).
    fn log_import(&self, line: &str) -> Option<String> {
        gate::oplog::append(
            &self.data().join("log"),
            "import.log",
            &self.clock().now(),
            line,
        )
        .err()
        .map(|e| e.to_string())
    }
}

/// A store error under a context, as one line (NotFound stays NotFound).
fn store_context(e: StoreError, context: impl std::fmt::Display) -> Error {
    let text = format!("{context}: {}", chain_text(&e));
    match e {
        StoreError::NotFound { .. } => Error::NotFound(text),
        _ => Error::Failed(text),
    }
}

/// One mailbox being filled, with how many copies of each content hash it held before the
/// import: each source message first claims one of those (a re-import appends nothing),
/// while a source holding the same message twice, as a mailbox may, gives it twice.
struct Target {
    mailbox: MailboxInfo,
    present: HashMap<BlobId, u32>,
    /// Messages read but not yet stored: they go in batches (`append_batch`), one flush of
    /// the disk for many messages instead of three each.
    pending: Vec<NewMessage>,
    pending_bytes: usize,
}

/// A batch is stored when it reaches either bound: few enough messages that a kill loses
/// little work, bytes bounded so memory stays flat whatever the file's size.
const BATCH_MESSAGES: usize = 500;
const BATCH_BYTES: usize = 8 << 20;

fn open_or_create(ops: &Ops, account: AccountId, name: &str) -> Result<MailboxInfo> {
    let store = ops.store();
    match store.mailbox(account, name) {
        Ok(m) => Ok(m),
        Err(StoreError::NotFound { .. }) => store
            .create_mailbox(account, name)
            .map_err(|e| store_context(e, format!("cannot create mailbox {name}"))),
        Err(e) => Err(store_context(e, format!("cannot open mailbox {name}"))),
    }
}

impl Target {
    fn open(ops: &Ops, account: AccountId, name: &str) -> Result<Target> {
        let mailbox = open_or_create(ops, account, name)?;
        let mut present = HashMap::new();
        for m in ops.store().messages(mailbox.id)? {
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
        ops: &Ops,
        report: &mut ImportReport,
        bytes: &[u8],
        flags: Flags,
        keywords: &[String],
        date: Option<i64>,
    ) -> Result<()> {
        let blob = BlobId::of(bytes);
        if let Some(copies) = self.present.get_mut(&blob).filter(|c| **c > 0) {
            *copies -= 1;
            report.present += 1;
            return Ok(());
        }
        self.pending.push(NewMessage {
            bytes: bytes.to_vec(),
            flags,
            keywords: keywords.to_vec(),
            internal_date: date,
        });
        self.pending_bytes += bytes.len();
        report.imported += 1;
        report.bytes += bytes.len() as u64;
        if self.pending.len() >= BATCH_MESSAGES || self.pending_bytes >= BATCH_BYTES {
            self.flush(ops)?;
        }
        Ok(())
    }

    /// Stores what is pending, durably; called at every batch bound and at the end.
    fn flush(&mut self, ops: &Ops) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        // The batched append is not behind a role trait yet.
        ops.sqlite()
            .append_batch(self.mailbox.id, batch)
            .map_err(|e| store_context(e, format!("cannot append to {}", self.mailbox.name)))?;
        Ok(())
    }
}

fn import_mbox(
    ops: &Ops,
    account: AccountId,
    mailbox: &str,
    file: &Path,
    report: &mut ImportReport,
    progress: &Reporter,
) -> Result<()> {
    let f = File::open(file).io_context(|| format!("cannot open {}", file.display()))?;
    let len = f
        .metadata()
        .io_context(|| format!("cannot read {}", file.display()))?
        .len();
    // Opened at the first message, so an input with none leaves no empty mailbox behind.
    let mut target: Option<Target> = None;
    progress.phase("importing", Unit::Bytes, Some(len));
    let mut reader = mbox::Reader::new(BufReader::with_capacity(1 << 16, f));
    while let Some(item) = reader.next() {
        match item.io_context(|| format!("cannot read {}", file.display()))? {
            Item::Message(m) => {
                if !m.notes.is_empty() {
                    report.repaired.push(format!(
                        "bytes {}..{}: {}",
                        m.offset,
                        m.end,
                        m.notes.join(", ")
                    ));
                }
                let target = match &mut target {
                    Some(target) => target,
                    None => target.insert(Target::open(ops, account, mailbox)?),
                };
                target.add(ops, report, &m.bytes, m.flags, &[], m.internal_date)?;
            }
            Item::Skipped {
                offset,
                end,
                reason,
            } => report
                .skipped
                .push(format!("bytes {offset}..{end}: {reason}")),
        }
        progress.advance(reader.position());
    }
    let Some(mut target) = target else {
        // A file with no message in it is the wrong file, not an empty import.
        let skipped = match report.skipped.first() {
            Some(first) => format!("; skipped {first}"),
            None => String::new(),
        };
        return Err(Error::invalid(format!(
            "{} holds no mail message ({len} bytes read{skipped}); an mbox file starts each \
             message with a \"From \" line followed by mail headers (a Maildir is imported \
             with `tegami import maildir`)",
            file.display()
        )));
    };
    target.flush(ops)
}

/// Dovecot's `dovecot-keywords` file of a folder (none when it cannot be read).
fn dovecot_keywords(dir: &Path) -> Vec<(char, String)> {
    fs::read_to_string(dir.join("dovecot-keywords"))
        .map(|text| maildir::keywords(&text))
        .unwrap_or_default()
}

/// The folders of a Maildir++ tree: the root is INBOX, `.A.B` is `A/B` (see [`mailbox_for`]).
fn maildir_folders(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut folders = vec![("INBOX".to_string(), dir.to_path_buf())];
    let mut subs = Vec::new();
    let cannot_read = || format!("cannot read {}", dir.display());
    for entry in fs::read_dir(dir).io_context(cannot_read)? {
        let entry = entry.io_context(cannot_read)?;
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
    ops: &Ops,
    account: AccountId,
    dir: &Path,
    report: &mut ImportReport,
    progress: &Reporter,
) -> Result<()> {
    let folders = maildir_folders(dir)?;
    // Every folder becomes a mailbox, even an empty one, so that an exported tree comes
    // back with the same mailboxes.
    for (mailbox, _) in &folders {
        open_or_create(ops, account, mailbox)?;
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
    progress.phase("importing", Unit::Bytes, Some(total));
    let mut read = 0u64;
    let mut target: Option<Target> = None;
    let mut keywords = (PathBuf::new(), Vec::new());
    for (mailbox, folder, path) in files {
        if target.as_ref().is_none_or(|t| t.mailbox.name != mailbox) {
            if let Some(mut done) = target.take() {
                done.flush(ops)?;
            }
            target = Some(Target::open(ops, account, &mailbox)?);
        }
        if keywords.0 != folder {
            keywords = (folder.clone(), dovecot_keywords(&folder));
        }
        let raw = match fs::read(&path) {
            Ok(raw) => raw,
            Err(e) => {
                report.skipped.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        read += raw.len() as u64;
        progress.advance(read);
        let Some((bytes, nuls)) = maildir::message(&raw) else {
            report
                .skipped
                .push(format!("{}: not a message (no header)", path.display()));
            continue;
        };
        if nuls > 0 {
            report
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
            t.add(ops, report, &bytes, flags, &words, date)?;
        }
    }
    if let Some(mut done) = target {
        done.flush(ops)?;
    }
    Ok(())
}

/// A file written whole into `tmp/` of a Maildir folder, fsynced with its mtime set, then
/// renamed to `to`: a reader of the tree never sees half a file.
fn write_durably(tmp_dir: &Path, to: &Path, bytes: &[u8], mtime: Option<SystemTime>) -> Result<()> {
    let name = to
        .file_name()
        .ok_or_else(|| Error::invalid(format!("{} needs a file name", to.display())))?;
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
        return Err(e).io_context(|| format!("cannot write {}", tmp.display()));
    }
    fs::rename(&tmp, to)
        .io_context(|| format!("cannot rename {} to {}", tmp.display(), to.display()))
}

fn epoch_time(secs: i64) -> SystemTime {
    let d = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .io_context(|| format!("cannot fsync {}", dir.display()))
}

/// A directory for the tree: created when missing, refused when it holds anything.
/// Returns whether it was created (then its parent is synced at the end).
fn claim_dir(dir: &Path) -> Result<bool> {
    match fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::conflict(format!(
                    "{} is not empty (export maildir writes only into a new or empty \
                     directory: name one that does not exist yet)",
                    dir.display()
                )));
            }
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).io_context(|| format!("cannot create {}", dir.display()))?;
            Ok(true)
        }
        Err(e) => Err(e).io_context(|| format!("cannot read {}", dir.display())),
    }
}

/// `create_dir_all` whose failure says only what the OS said, as the tree's other steps do
/// under the export's one context.
fn make_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| Error::failed(e.to_string()))
}

fn export_maildir(
    ops: &Ops,
    account: AccountId,
    only: Option<&str>,
    dir: &Path,
    progress: &Reporter,
) -> Result<ExportReport> {
    let store = ops.store();
    let mailboxes = match only {
        Some(name) => vec![
            store
                .mailbox(account, name)
                .map_err(|e| store_context(e, format!("no mailbox {name}")))?,
        ],
        // The live mailboxes: archived mail has `archive export` (an archive's read-only
        // folders imported back would become live mail again).
        None => store
            .mailboxes(account)?
            .into_iter()
            .filter(|m| !m.read_only)
            .collect(),
    };
    let created = claim_dir(dir)?;
    let mut plan: Vec<(MailboxInfo, Vec<MessageMeta>)> = Vec::new();
    for mb in mailboxes {
        let messages = store.messages(mb.id)?;
        plan.push((mb, messages));
    }
    progress.phase(
        "exporting",
        Unit::Bytes,
        Some(plan.iter().flat_map(|(_, ms)| ms).map(|m| m.size).sum()),
    );
    let mut folders = vec![dir.to_path_buf()];
    let (mut messages, mut bytes) = (0u64, 0u64);
    let mut notes = Vec::new();
    let result = (|| -> Result<()> {
        // The root is a Maildir even when INBOX is not exported, so that the tree is one.
        for sub in ["cur", "new", "tmp"] {
            make_dir(&dir.join(sub))?;
        }
        for (mb, list) in &plan {
            let folder = match folder_for(&mb.name) {
                None => dir.to_path_buf(),
                Some(name) => {
                    let folder = dir.join(name);
                    for sub in ["cur", "new", "tmp"] {
                        make_dir(&folder.join(sub))?;
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
                progress.advance(bytes);
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
    if let Err(e) = result {
        return Err(Error::failed(format!(
            "export to {} stopped after {messages} messages (remove the directory before \
             exporting again): {}",
            dir.display(),
            e.one_line()
        )));
    }
    let mut summary = format!(
        "export maildir to {}: {} mailboxes, {messages} messages ({bytes} bytes)",
        dir.display(),
        plan.len()
    );
    if !notes.is_empty() {
        summary += &format!(", {}", notes.join("; "));
    }
    Ok(ExportReport {
        mailboxes: plan.len() as u64,
        messages,
        bytes,
        notes,
        summary,
        log_error: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_lists_what_was_skipped() {
        let mut report = ImportReport {
            source: PathBuf::from("in.mbox"),
            imported: 2,
            present: 1,
            bytes: 300,
            skipped: vec!["bytes 0..9: no header".into()],
            repaired: vec!["bytes 9..99: x".into()],
            ..ImportReport::default()
        };
        report.summarize();
        assert_eq!(
            report.summary,
            "import in.mbox: imported 2 messages (300 bytes), 1 already present, 1 repaired, \
             skipped 1: bytes 0..9: no header"
        );
    }

    #[test]
    fn an_export_directory_must_be_new_or_empty() {
        let root = tempfile::tempdir().unwrap();
        let fresh = root.path().join("new");
        assert!(claim_dir(&fresh).unwrap(), "a missing directory is created");
        assert!(
            !claim_dir(&fresh).unwrap(),
            "an empty one is taken as it is"
        );
        fs::write(fresh.join("x"), b"x").unwrap();
        let e = claim_dir(&fresh).unwrap_err();
        assert!(matches!(e, Error::Conflict(_)), "{e:?}");
        assert!(e.to_string().contains("is not empty"), "{e}");
    }

    #[test]
    fn a_written_file_has_its_bytes_and_mtime_and_no_temporary_left() {
        let root = tempfile::tempdir().unwrap();
        let tmp = root.path().join("tmp");
        fs::create_dir(&tmp).unwrap();
        let to = root.path().join("msg");
        write_durably(&tmp, &to, b"hello", Some(epoch_time(86_400))).unwrap();
        assert_eq!(fs::read(&to).unwrap(), b"hello");
        let mtime = fs::metadata(&to).unwrap().modified().unwrap();
        assert_eq!(mtime, UNIX_EPOCH + Duration::from_secs(86_400));
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
        assert_eq!(epoch_time(-5), UNIX_EPOCH - Duration::from_secs(5));
    }

    fn installation() -> (tempfile::TempDir, Ops) {
        let root = tempfile::tempdir().unwrap();
        let ops = Ops::open(root.path(), crate::Config::load(None).unwrap()).unwrap();
        ops.store().add_domain("example.com").unwrap();
        ops.store()
            .add_account("a@example.com", "secret-1")
            .unwrap();
        ops.store()
            .add_account("b@example.com", "secret-2")
            .unwrap();
        (root, ops)
    }

    fn quiet() -> Reporter {
        crate::progress::silent()
    }

    #[test]
    fn an_mbox_goes_in_once_and_comes_out_byte_for_byte() {
        let (root, ops) = installation();
        let file = root.path().join("in.mbox");
        fs::write(
            &file,
            "From x@example.org Mon Jan  4 10:00:00 2021\nSubject: one\n\nfirst\n\n\
             From x@example.org Tue Jan  5 10:00:00 2021\nSubject: two\n\n>From quoted\n",
        )
        .unwrap();
        let request = MboxImport {
            file: file.clone(),
            account: "A@example.com".into(),
            mailbox: "Old".into(),
        };
        let first = ops.import_mbox(&request, &quiet()).unwrap();
        assert_eq!((first.imported, first.present), (2, 0), "{first:?}");
        assert!(first.log_error.is_none());
        let again = ops.import_mbox(&request, &quiet()).unwrap();
        assert_eq!((again.imported, again.present), (0, 2), "{again:?}");
        let log = fs::read_to_string(root.path().join("log/import.log")).unwrap();
        assert_eq!(log.lines().count(), 2, "{log}");

        let out = root.path().join("out.mbox");
        let export = MboxExport {
            account: "a@example.com".into(),
            mailbox: "Old".into(),
            file: out.clone(),
        };
        let report = ops.export_mbox(&export, &quiet()).unwrap();
        assert_eq!(report.messages, 2);
        let back = MboxImport {
            file: out,
            account: "b@example.com".into(),
            mailbox: "INBOX".into(),
        };
        assert_eq!(ops.import_mbox(&back, &quiet()).unwrap().imported, 2);
        let bodies = |account: &str, mailbox: &str| -> Vec<Vec<u8>> {
            let store = ops.store();
            let id = ops.account_id(account).unwrap();
            let mb = store.mailbox(id, mailbox).unwrap();
            store
                .messages(mb.id)
                .unwrap()
                .iter()
                .map(|m| store.read_blob(&m.blob).unwrap())
                .collect()
        };
        assert_eq!(
            bodies("a@example.com", "Old"),
            bodies("b@example.com", "INBOX")
        );
    }

    #[test]
    fn a_file_without_mail_and_an_unknown_account_are_refused() {
        let (root, ops) = installation();
        let file = root.path().join("notes.txt");
        fs::write(&file, "just some text\n").unwrap();
        let mut request = MboxImport {
            file,
            account: "a@example.com".into(),
            mailbox: "INBOX".into(),
        };
        let e = ops.import_mbox(&request, &quiet()).unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{e:?}");
        assert!(e.to_string().contains("holds no mail message"), "{e}");
        request.account = "nobody@example.com".into();
        let e = ops.import_mbox(&request, &quiet()).unwrap_err();
        assert!(matches!(e, Error::NotFound(_)), "{e:?}");
    }

    #[test]
    fn a_maildir_tree_comes_back_with_its_folders_and_messages() {
        let (root, ops) = installation();
        let file = root.path().join("in.mbox");
        fs::write(
            &file,
            "From x@example.org Mon Jan  4 10:00:00 2021\nSubject: one\n\nfirst\n",
        )
        .unwrap();
        for mailbox in ["INBOX", "Lists/rust.users"] {
            let request = MboxImport {
                file: file.clone(),
                account: "a@example.com".into(),
                mailbox: mailbox.into(),
            };
            ops.import_mbox(&request, &quiet()).unwrap();
        }
        let tree = root.path().join("tree");
        let export = MaildirExport {
            account: "a@example.com".into(),
            dir: tree.clone(),
            mailbox: None,
        };
        let report = ops.export_maildir(&export, &quiet()).unwrap();
        assert_eq!(report.messages, 2, "{report:?}");
        assert!(tree.join(".Lists.rust\\2eusers/cur").is_dir());
        let e = ops.export_maildir(&export, &quiet()).unwrap_err();
        assert!(matches!(e, Error::Conflict(_)), "{e:?}");

        let import = MaildirImport {
            dir: tree,
            account: "b@example.com".into(),
        };
        let report = ops.import_maildir(&import, &quiet()).unwrap();
        assert_eq!(
            (report.imported, report.skipped.len()),
            (2, 0),
            "{report:?}"
        );
        let id = ops.account_id("b@example.com").unwrap();
        let names: BTreeSet<String> = ops
            .store()
            .mailboxes(id)
            .unwrap()
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert!(names.contains("Lists/rust.users"), "{names:?}");
    }
}
