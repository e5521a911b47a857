//! Read-only archives: old mail moved out of the live store into `archive/<id>/`.
//!
//! ```text
//! archive/<id>/archive.db         metadata and a full-text index (SQLite, rollback journal)
//! archive/<id>/blobs/ab/<sha256>  the bodies, hard links to the live store's files when the
//!                                 archive was made (copied when it is on another disk)
//! archive/<id>.partial/           an archive being built; it holds nothing the live store
//!                                 has given up yet, so a crash may simply throw it away
//! archive/.lock                   held by whoever creates or finishes an archive
//! ```
//!
//! An archive never changes once it is complete, so backups take it once and readers need
//! no locks beyond SQLite's own. This module is the format and the read side (list,
//! IMAP view, search, export, check); the move out of the live store belongs to the backend
//! (`sqlite/archive.rs`), because only it can delete rows and the archive's record of them
//! in one transaction.
//!
//! Each archive shows itself to its accounts over IMAP as read-only mailboxes
//! `<prefix>/<label>/<mailbox>`. Their ids are negative ([`ArchiveMailbox`]), so the store
//! routes any call naming one here and refuses every write to it.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

pub use crate::sqlite::archive_file::Archive;
pub(crate) use crate::sqlite::archive_file::{create_schema, meta, set_meta};

use crate::{
    AccountId, BlobId, Flags, MailboxCounts, MailboxId, MailboxInfo, MessageMeta, Result,
    StoreError,
};

/// The archive format this build writes and reads (`meta.format`).
pub const FORMAT: &str = "1";

/// The most text of one message that goes into the index: enough for any letter, not a
/// megabyte of a log file pasted into a mail.
pub const MAX_INDEXED_TEXT: usize = 256 * 1024;

/// How many mailboxes one archive may hold: the bits of a virtual mailbox id left for them.
const MAILBOX_BITS: u32 = 24;

/// Where an archive is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveState {
    /// Built and durable; the live store is still giving up the messages it holds. A rerun
    /// (or the server at start) finishes the move.
    Moving,
    /// Done; never changes again.
    Complete,
}

impl ArchiveState {
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveState::Moving => "moving",
            ArchiveState::Complete => "complete",
        }
    }
}

/// One archive, as `archive list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveInfo {
    pub id: u32,
    pub label: String,
    pub accounts: Vec<String>,
    /// Internal dates of the oldest and newest message (Unix seconds).
    pub first: Option<i64>,
    pub last: Option<i64>,
    /// Every message with an internal date before this went (Unix seconds).
    pub before: i64,
    pub messages: u64,
    /// The messages' bytes, and the bytes of the directory on disk (bodies counted once).
    pub bytes: u64,
    pub disk_bytes: u64,
    pub state: ArchiveState,
    pub created: i64,
    pub dir: PathBuf,
}

/// What an archive remembers of a message besides its body, for listings and search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedMessage {
    pub account: String,
    pub mailbox: String,
    pub uid: u32,
    pub internal_date: i64,
    pub size: u64,
    pub flags: Flags,
    pub keywords: Vec<String>,
    pub blob: BlobId,
    pub sent_date: Option<i64>,
    pub from: String,
    pub to: String,
    pub subject: String,
    pub message_id: String,
}

/// The header fields and text of a message an archive keeps and indexes. The store does not
/// parse mail: whoever archives hands in a function that makes one of these from the bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Document {
    pub sent_date: Option<i64>,
    pub from: String,
    pub to: String,
    pub subject: String,
    pub message_id: String,
    /// The decoded text of the message, cut at [`MAX_INDEXED_TEXT`] bytes.
    pub text: String,
}

/// `archive search`: every given condition must hold.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    /// Words (or runs of CJK characters) that must all occur in subject, addresses or text.
    pub text: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub subject: Option<String>,
    /// Internal date at or after, and before (Unix seconds).
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub account: Option<String>,
    pub limit: Option<usize>,
}

/// What `archive check` found in one archive.
#[derive(Debug, Clone, Default)]
pub struct ArchiveCheck {
    pub id: u32,
    pub messages: u64,
    pub blobs: u64,
    pub bytes: u64,
    /// Each problem in one line, naming the file or the message.
    pub problems: Vec<String>,
}

impl ArchiveCheck {
    pub fn is_healthy(&self) -> bool {
        self.problems.is_empty()
    }
}

/// A mailbox of an archive, as IMAP addresses it: negative ids, so they never meet a live one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ArchiveMailbox {
    pub archive: u32,
    pub row: i64,
}

impl ArchiveMailbox {
    pub fn id(self) -> MailboxId {
        MailboxId(-((i64::from(self.archive) << MAILBOX_BITS) | self.row))
    }

    pub fn from_id(id: MailboxId) -> Option<ArchiveMailbox> {
        if id.0 >= 0 {
            return None;
        }
        let n = -id.0;
        Some(ArchiveMailbox {
            archive: u32::try_from(n >> MAILBOX_BITS).ok()?,
            row: n & ((1 << MAILBOX_BITS) - 1),
        })
    }
}

/// Text as the index stores it: CJK characters stand apart, so that each is a token and a
/// run of them is found as a phrase.
pub(crate) fn index_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    let mut last_cjk = false;
    for c in text.chars() {
        let cjk = is_cjk(c);
        if (cjk || last_cjk)
            && !c.is_whitespace()
            && !out.ends_with(char::is_whitespace)
            && !out.is_empty()
        {
            out.push(' ');
        }
        out.push(c);
        last_cjk = cjk;
    }
    out
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // hiragana, katakana
        | 0x3400..=0x4DBF    // CJK extension A
        | 0x4E00..=0x9FFF    // CJK unified ideographs
        | 0xF900..=0xFAFF    // compatibility ideographs
        | 0xFF66..=0xFF9F    // half-width katakana
        | 0xAC00..=0xD7AF    // hangul syllables
        | 0x20000..=0x2FFFF) // the supplementary ideographs
}

/// A full-text query in FTS5 syntax from what a user typed: every word must occur; each
/// word is a quoted phrase (so no word is taken as an operator), CJK spaced as indexed.
/// `None` when nothing searchable remains.
pub(crate) fn fts_query(column: Option<&str>, words: &str) -> Option<String> {
    let phrases: Vec<String> = words
        .split_whitespace()
        .map(|w| {
            let spaced = index_text(w);
            format!("\"{}\"", spaced.trim().replace('"', "\"\""))
        })
        .filter(|p| p.len() > 2)
        .collect();
    if phrases.is_empty() {
        return None;
    }
    let joined = phrases.join(" AND ");
    Some(match column {
        Some(column) => format!("{column} : ({joined})"),
        None => joined,
    })
}

/// The bytes of the files below a directory (hard links counted where they are).
pub(crate) fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

/// The archives of a data directory, opened once and found again when the directory
/// changes (another process may make one while the server runs).
pub struct Archives {
    root: PathBuf,
    prefix: RwLock<String>,
    cache: Mutex<(Option<SystemTime>, Vec<Arc<Archive>>)>,
}

/// The IMAP prefix archives appear under unless the config names another.
pub const DEFAULT_PREFIX: &str = "Archive";

impl Archives {
    pub(crate) fn new(data_dir: &Path) -> Archives {
        Archives {
            root: data_dir.join("archive"),
            prefix: RwLock::new(DEFAULT_PREFIX.to_string()),
            cache: Mutex::new((None, Vec::new())),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The first level of the IMAP names archives appear under (`Archive/2024/INBOX`).
    pub fn set_prefix(&self, prefix: &str) {
        *self.prefix.write().unwrap_or_else(|p| p.into_inner()) =
            prefix.trim_matches('/').to_string();
    }

    fn prefix(&self) -> String {
        self.prefix
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every finished archive (moving or complete), by id.
    pub fn list(&self) -> Vec<Arc<Archive>> {
        self.scan(false)
    }

    /// The list, read from the directory again when `fresh` or when the root's mtime moved.
    /// The mtime alone can miss a rename made in the same clock tick as the last change,
    /// so a caller that did not find what it knows must exist asks for a fresh look.
    fn scan(&self, fresh: bool) -> Vec<Arc<Archive>> {
        let modified = fs::metadata(&self.root).and_then(|m| m.modified()).ok();
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if fresh || modified.is_none() || cache.0 != modified {
            let mut found: Vec<Arc<Archive>> = Vec::new();
            let mut complete = true;
            for (id, dir) in numbered_dirs(&self.root) {
                let known = cache.1.iter().find(|a| a.id() == id).cloned();
                match known.map_or_else(|| Archive::open(&dir).map(Arc::new), Ok) {
                    Ok(archive) => found.push(archive),
                    Err(e) => {
                        complete = false;
                        tracing::warn!(archive = %dir.display(), error = %e, "cannot open archive")
                    }
                }
            }
            // One that could not be opened is tried again next time, not forgotten.
            *cache = (modified.filter(|_| complete), found);
        }
        cache.1.clone()
    }

    pub fn get(&self, id: u32) -> Result<Arc<Archive>> {
        self.list()
            .into_iter()
            .find(|a| a.id() == id)
            .ok_or_else(|| StoreError::NotFound {
                what: format!("archive {id} (see `tegami archive list`)"),
            })
    }

    /// The IMAP folder of each archive under the prefix: its label, made unique with the id
    /// when two archives share one, and without "/".
    fn folders(&self) -> Vec<(Arc<Archive>, String)> {
        let mut seen: HashMap<String, u32> = HashMap::new();
        let mut out = Vec::new();
        for archive in self.list() {
            let label = archive
                .label()
                .unwrap_or_else(|_| archive.id().to_string())
                .replace('/', "-");
            let folder = if seen.contains_key(&label) {
                format!("{label} #{}", archive.id())
            } else {
                label.clone()
            };
            seen.insert(label, archive.id());
            out.push((archive, folder));
        }
        out
    }

    /// The read-only mailboxes an account sees, named under the prefix.
    pub(crate) fn mailboxes(&self, account: AccountId) -> Result<Vec<MailboxInfo>> {
        let prefix = self.prefix();
        let mut out = Vec::new();
        for (archive, folder) in self.folders() {
            let generation = archive.generation()?;
            for (row, name, uid_validity, uid_next) in archive.mailboxes_of(account)? {
                out.push(MailboxInfo {
                    id: ArchiveMailbox {
                        archive: archive.id(),
                        row,
                    }
                    .id(),
                    account,
                    name: format!("{prefix}/{folder}/{name}"),
                    uid_validity,
                    uid_next,
                    special_use: None,
                    modseq: generation,
                    read_only: true,
                });
            }
        }
        Ok(out)
    }

    /// Whether a mailbox name lies inside an archive's folder (writes there are refused).
    pub(crate) fn owns_name(&self, name: &str) -> bool {
        let prefix = self.prefix();
        let Some(rest) = name.strip_prefix(&prefix).and_then(|r| r.strip_prefix('/')) else {
            return false;
        };
        let folder = rest.split('/').next().unwrap_or("");
        self.folders().iter().any(|(_, f)| f == folder)
    }

    pub(crate) fn mailbox(&self, account: AccountId, name: &str) -> Result<Option<MailboxInfo>> {
        if !self.owns_name(name) {
            return Ok(None);
        }
        Ok(self
            .mailboxes(account)?
            .into_iter()
            .find(|m| m.name == name))
    }

    fn archive_of(&self, mailbox: ArchiveMailbox) -> Result<Arc<Archive>> {
        self.get(mailbox.archive).map_err(|_| gone(mailbox))
    }

    pub(crate) fn mailbox_by_id(&self, mailbox: ArchiveMailbox) -> Result<MailboxInfo> {
        let archive = self.archive_of(mailbox)?;
        let (account, _, _, _) = archive
            .mailbox_row(mailbox.row)?
            .ok_or_else(|| gone(mailbox))?;
        self.mailboxes(account)?
            .into_iter()
            .find(|m| m.id == mailbox.id())
            .ok_or_else(|| gone(mailbox))
    }

    pub(crate) fn messages(&self, mailbox: ArchiveMailbox) -> Result<Vec<MessageMeta>> {
        self.archive_of(mailbox)?.messages(mailbox.row)
    }

    pub(crate) fn messages_newest(
        &self,
        mailbox: ArchiveMailbox,
        window: &crate::NewestFirst,
    ) -> Result<(Vec<MessageMeta>, usize)> {
        self.archive_of(mailbox)?
            .messages_newest(mailbox.row, window)
    }

    pub(crate) fn counts(&self, mailbox: ArchiveMailbox) -> Result<MailboxCounts> {
        self.archive_of(mailbox)?.counts(mailbox.row)
    }

    /// Every finished archive, read from the directory now: one the caller must not miss
    /// (an archive is numbered before its move takes mail out of the live store, so a list
    /// made after a message was found gone from there has it).
    pub(crate) fn list_fresh(&self) -> Vec<Arc<Archive>> {
        self.scan(true)
    }

    /// A body that left the live store: the first archive that holds it.
    /// Looked for again in a fresh list when the cached one lacks it: a message the archive
    /// run just moved must be found the first time a client asks.
    pub(crate) fn read_blob(&self, blob: &BlobId) -> Option<Result<Vec<u8>>> {
        let holder = |archives: Vec<Arc<Archive>>| archives.into_iter().find(|a| a.has_blob(blob));
        let archive = holder(self.list()).or_else(|| holder(self.scan(true)))?;
        Some(archive.read_blob(blob))
    }
}

fn gone(mailbox: ArchiveMailbox) -> StoreError {
    StoreError::NotFound {
        what: format!("archive mailbox {}", mailbox.id().0),
    }
}

/// The directories `archive/<digits>` (finished archives), by id.
pub(crate) fn numbered_dirs(root: &Path) -> Vec<(u32, PathBuf)> {
    let mut out: Vec<(u32, PathBuf)> = fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some((name.parse().ok()?, e.path()))
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cjk_characters_stand_apart_and_latin_words_do_not() {
        assert_eq!(index_text("請求書 invoice"), "請 求 書 invoice");
        assert_eq!(index_text("abcカナdef"), "abc カ ナ def");
        assert_eq!(index_text("plain words"), "plain words");
    }

    #[test]
    fn queries_are_phrases_all_required_and_never_operators() {
        assert_eq!(
            fts_query(None, "invoice 請求書").as_deref(),
            Some("\"invoice\" AND \"請 求 書\"")
        );
        assert_eq!(
            fts_query(Some("subject"), "OR \"x").as_deref(),
            Some("subject : (\"OR\" AND \"\"\"x\")")
        );
        assert_eq!(fts_query(None, "   "), None);
    }

    #[test]
    fn virtual_mailbox_ids_round_trip_and_never_meet_live_ones() {
        let m = ArchiveMailbox {
            archive: 7,
            row: 12345,
        };
        assert!(m.id().0 < 0);
        assert_eq!(ArchiveMailbox::from_id(m.id()), Some(m));
        assert_eq!(ArchiveMailbox::from_id(MailboxId(5)), None);
    }
}
