//! A user's own mail, as the web console shows it: their mailboxes (the read-only archive
//! mailboxes too), a page of a mailbox's messages with a search by header fields, words and
//! dates, one message ready for display (headers, text, HTML, attachments), one attachment,
//! the archive viewer's search and its CSV, and changing one's own password.
//!
//! Every function takes the signed-in account and answers only about that account's mail:
//! a mailbox of someone else is "not found", exactly like one that does not exist.
//!
//! A live mailbox has no index, so its search reads messages: newest first, at most
//! [`SCAN`] of them per page, and the page says where to go on (a cursor), so no request
//! reads more than that however large the mailbox. An archive's mailbox is searched in the
//! archive's full-text index instead.

use std::collections::HashSet;

use imap_mime::Message;
use store::archive::SearchQuery;
use store::{AccountId, BlobId, Flags, MailboxId, MailboxInfo, MessageMeta, NewestFirst};

use crate::Ops;
use crate::archive::{SearchHit, SearchRequest};
use crate::error::{Error, Result};

/// Messages on one page of a list or a search.
pub const PAGE: usize = 50;
/// The most messages one page of a live search reads.
pub const SCAN: usize = 2_000;
/// The most hits an archive search of one mailbox takes from the index at once.
const INDEX_HITS: usize = 20_000;
/// The most rows one CSV export holds: more is a search to narrow, not a file to send.
pub const CSV_ROWS: usize = 100_000;
/// The most messages a live mailbox's CSV export reads (each is parsed to be searched).
pub const CSV_READ: usize = 200_000;
/// Message rows asked of the store at a time while an export reads a mailbox.
const CSV_BATCH: usize = 100;
/// The highest page number asked for that is taken as it is (a larger one shows this page):
/// far beyond any mailbox, and small enough that no page arithmetic overflows.
const MAX_PAGE: usize = 1_000_000;
/// The longest search field a user may type.
const MAX_FIELD: usize = 512;
/// The longest file name an attachment is offered under (in characters).
const MAX_FILE_NAME: usize = 120;

/// What a password change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordChange {
    Changed,
    /// The current password given was wrong; nothing changed.
    WrongCurrent,
}

/// One of a user's mailboxes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxRow {
    pub id: MailboxId,
    pub name: String,
    pub messages: u32,
    pub unseen: u32,
    /// A mailbox of an archive: read-only, searched in the archive's index.
    pub archive: bool,
}

/// A search: every condition given must hold. Days are `YYYY-MM-DD` in the server's time
/// zone; `since` is inclusive, `until` exclusive, on the internal (arrival) date.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub from: Option<String>,
    /// To or Cc.
    pub to: Option<String>,
    pub subject: Option<String>,
    /// Words that must all occur in the headers or the text.
    pub text: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
}

impl Filter {
    /// Empty fields count as not given; each field has a limit.
    pub fn new(
        from: Option<String>,
        to: Option<String>,
        subject: Option<String>,
        text: Option<String>,
        since: Option<String>,
        until: Option<String>,
    ) -> Result<Filter> {
        let field = |name: &str, value: Option<String>| -> Result<Option<String>> {
            let value = value
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty());
            if value.as_ref().is_some_and(|v| v.len() > MAX_FIELD) {
                return Err(Error::invalid(format!(
                    "the {name} field is longer than {MAX_FIELD} bytes"
                )));
            }
            Ok(value)
        };
        Ok(Filter {
            from: field("from", from)?,
            to: field("to", to)?,
            subject: field("subject", subject)?,
            text: field("text", text)?,
            since: field("since", since)?,
            until: field("until", until)?,
        })
    }

    pub fn is_empty(&self) -> bool {
        *self == Filter::default()
    }

    fn has_headers_or_text(&self) -> bool {
        self.from.is_some() || self.to.is_some() || self.subject.is_some() || self.text.is_some()
    }
}

/// One message in a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub uid: u32,
    /// The internal (arrival) date, Unix seconds.
    pub date: i64,
    pub from: String,
    pub subject: String,
    pub size: u64,
    pub seen: bool,
}

/// Where a list continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The list is complete on this page.
    End,
    /// Page number `n` (counting from 1).
    Page(usize),
    /// A live search goes on with the messages whose UID is below this one.
    Before(u32),
}

/// One page of a mailbox's messages, newest first.
#[derive(Debug, Clone)]
pub struct Listing {
    pub mailbox: MailboxRow,
    pub rows: Vec<Row>,
    /// The messages the list has in all, when known (not for a live search).
    pub total: Option<usize>,
    pub page: usize,
    pub next: Next,
    /// A live search that stopped at [`SCAN`] messages read: how many it read.
    pub scanned: Option<usize>,
}

/// Which page to show: a page number, or for a live search the cursor of [`Next::Before`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct At {
    pub page: usize,
    pub before: Option<u32>,
}

/// One message as the reader shows it.
#[derive(Debug, Clone)]
pub struct MessageView {
    pub mailbox: MailboxRow,
    pub uid: u32,
    pub internal_date: i64,
    pub size: u64,
    pub from: String,
    pub to: String,
    pub cc: String,
    /// The Date: header as written.
    pub date: String,
    pub subject: String,
    pub message_id: String,
    pub text: Option<String>,
    pub has_html: bool,
    pub attachments: Vec<AttachmentInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentInfo {
    /// Its place among the message's attachments, from 0: what [`Ops::mail_attachment`] takes.
    pub index: usize,
    /// A file name safe to offer (see [`safe_file_name`]).
    pub name: String,
    pub content_type: String,
    pub size: u64,
}

/// An attachment to download.
#[derive(Debug, Clone)]
pub struct Download {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// An archive that holds some of the user's mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveChoice {
    pub id: u32,
    pub label: String,
}

/// One page of the archive viewer's search, oldest first (as `archive search` lists).
#[derive(Debug, Clone)]
pub struct ArchivePage {
    pub hits: Vec<SearchHit>,
    pub page: usize,
    pub more: bool,
}

impl Ops {
    /// The account's mailboxes, live ones first by name, then the archives' read-only ones.
    pub fn mail_mailboxes(&self, account: AccountId) -> Result<Vec<MailboxRow>> {
        let store = self.store();
        let mut rows = Vec::new();
        for mailbox in store.mailboxes(account)? {
            rows.push(self.mailbox_row(mailbox)?);
        }
        rows.sort_by(|a, b| (a.archive, &a.name).cmp(&(b.archive, &b.name)));
        Ok(rows)
    }

    /// One page of a mailbox, newest first; with a filter, only the messages it finds.
    pub fn mail_list(
        &self,
        account: AccountId,
        address: &str,
        mailbox: MailboxId,
        filter: &Filter,
        at: At,
    ) -> Result<Listing> {
        let info = self.own_mailbox(account, mailbox)?;
        let row = self.mailbox_row(info.clone())?;
        let (since, until) = self.days(filter)?;
        let dated = NewestFirst {
            since,
            until,
            ..NewestFirst::default()
        };
        let page = at.page.clamp(1, MAX_PAGE);
        if !filter.has_headers_or_text() {
            let window = NewestFirst {
                skip: (page - 1).saturating_mul(PAGE),
                limit: PAGE,
                ..dated
            };
            let (metas, total) = self.store().messages_newest(mailbox, &window)?;
            return self.listing_page(row, &metas, total, page);
        }
        if info.read_only {
            let every = NewestFirst {
                limit: usize::MAX,
                ..dated
            };
            let (metas, _) = self.store().messages_newest(mailbox, &every)?;
            return self.archive_mailbox_search(row, &info, address, &metas, filter, page);
        }
        // One more than may be read, to know whether the scan stopped short of the end.
        let window = NewestFirst {
            below_uid: at.before,
            limit: SCAN + 1,
            ..dated
        };
        let (metas, _) = self.store().messages_newest(mailbox, &window)?;
        let mut rows = Vec::new();
        let mut read = 0;
        let mut next = Next::End;
        let mut last = None;
        for meta in &metas {
            if let Some(last) = last
                && (rows.len() == PAGE || read == SCAN)
            {
                next = Next::Before(last);
                break;
            }
            read += 1;
            last = Some(meta.uid);
            let raw = self.store().read_blob(&meta.blob)?;
            let message = Message::parse(&raw);
            if matches(&message, filter) {
                rows.push(row_of(meta, &message));
            }
        }
        Ok(Listing {
            mailbox: row,
            rows,
            total: None,
            page,
            next,
            scanned: (read == SCAN).then_some(read),
        })
    }

    /// The messages of a mailbox that a search finds, newest first, as CSV in the columns of
    /// `archive export --csv`: at most [`CSV_ROWS`] rows from at most [`CSV_READ`] messages
    /// read, the second figure returned saying whether the export stopped at a bound.
    pub fn mail_csv(
        &self,
        account: AccountId,
        address: &str,
        mailbox: MailboxId,
        filter: &Filter,
    ) -> Result<(Vec<u8>, bool)> {
        let info = self.own_mailbox(account, mailbox)?;
        let (since, until) = self.days(filter)?;
        let mut hits = Vec::new();
        let mut read = 0;
        let mut window = NewestFirst {
            since,
            until,
            limit: CSV_BATCH,
            ..NewestFirst::default()
        };
        'pages: loop {
            let (metas, _) = self.store().messages_newest(mailbox, &window)?;
            for meta in &metas {
                if hits.len() == CSV_ROWS || read == CSV_READ {
                    break 'pages Ok((search_csv(&hits)?, true));
                }
                read += 1;
                let raw = self.store().read_blob(&meta.blob)?;
                let message = Message::parse(&raw);
                if matches(&message, filter) {
                    hits.push(hit_of(address, &info.name, meta, &message, self.clock()));
                }
            }
            match metas.last() {
                Some(last) if metas.len() == window.limit => window.below_uid = Some(last.uid),
                _ => break Ok((search_csv(&hits)?, false)),
            }
        }
    }

    /// One message of the account, parsed for display.
    pub fn mail_message(
        &self,
        account: AccountId,
        mailbox: MailboxId,
        uid: u32,
    ) -> Result<MessageView> {
        let info = self.own_mailbox(account, mailbox)?;
        let (meta, raw) = self.message_bytes(mailbox, uid)?;
        let message = Message::parse(&raw);
        let field = |name: &str| message.header_text(name).unwrap_or_default();
        let shown = message.displayed();
        Ok(MessageView {
            mailbox: self.mailbox_row(info)?,
            uid,
            internal_date: meta.internal_date,
            size: meta.size,
            from: field("From"),
            to: field("To"),
            cc: field("Cc"),
            date: field("Date"),
            subject: field("Subject"),
            message_id: field("Message-ID"),
            text: shown.text,
            has_html: shown.html.is_some(),
            attachments: shown
                .attachments
                .iter()
                .enumerate()
                .map(|(index, a)| AttachmentInfo {
                    index,
                    name: safe_file_name(a.name.as_deref(), index),
                    content_type: a.content_type.clone(),
                    size: a.bytes.len() as u64,
                })
                .collect(),
        })
    }

    /// A message's HTML part, as written but for `http-equiv` (see [`inert_html`]). The face
    /// must serve it where no script runs and nothing remote loads; this does not sanitise.
    pub fn mail_html(&self, account: AccountId, mailbox: MailboxId, uid: u32) -> Result<String> {
        self.own_mailbox(account, mailbox)?;
        let (_, raw) = self.message_bytes(mailbox, uid)?;
        let html = Message::parse(&raw)
            .displayed()
            .html
            .ok_or_else(|| Error::not_found(format!("message {uid} has no HTML part")))?;
        Ok(inert_html(&html))
    }

    /// One attachment, decoded, under a safe file name.
    pub fn mail_attachment(
        &self,
        account: AccountId,
        mailbox: MailboxId,
        uid: u32,
        index: usize,
    ) -> Result<Download> {
        self.own_mailbox(account, mailbox)?;
        let (_, raw) = self.message_bytes(mailbox, uid)?;
        let attachment = Message::parse(&raw)
            .displayed()
            .attachments
            .into_iter()
            .nth(index)
            .ok_or_else(|| Error::not_found(format!("message {uid} has no attachment {index}")))?;
        Ok(Download {
            name: safe_file_name(attachment.name.as_deref(), index),
            bytes: attachment.bytes,
        })
    }

    /// The archives holding some of this address's mail, oldest first.
    pub fn mail_archives(&self, address: &str) -> Result<Vec<ArchiveChoice>> {
        let mut out = Vec::new();
        for archive in self.sqlite().archives().list() {
            let mine = archive.search(&SearchQuery {
                account: Some(address.to_string()),
                limit: Some(1),
                ..SearchQuery::default()
            })?;
            if !mine.is_empty() {
                out.push(ArchiveChoice {
                    id: archive.id(),
                    label: archive.label()?,
                });
            }
        }
        Ok(out)
    }

    /// One page of the archive viewer: `archive search` of one archive, restricted to the
    /// user's own mail.
    pub fn mail_archive_search(
        &self,
        address: &str,
        id: u32,
        filter: &Filter,
        page: usize,
    ) -> Result<ArchivePage> {
        let page = page.clamp(1, MAX_PAGE);
        let skip = (page - 1).saturating_mul(PAGE);
        let mut hits =
            self.archive_search(&search_request(address, id, filter, skip + PAGE + 1))?;
        let more = hits.len() > skip + PAGE;
        hits.truncate(skip + PAGE);
        let hits = hits.split_off(skip.min(hits.len()));
        Ok(ArchivePage { hits, page, more })
    }

    /// The archive viewer's search result as CSV: the columns and the rows of `archive
    /// export --csv` for the messages found.
    pub fn mail_archive_csv(&self, address: &str, id: u32, filter: &Filter) -> Result<Vec<u8>> {
        let hits = self.archive_search(&search_request(address, id, filter, CSV_ROWS + 1))?;
        if hits.len() > CSV_ROWS {
            return Err(Error::invalid(format!(
                "the search finds more than {CSV_ROWS} messages; narrow it (dates, sender) to export it"
            )));
        }
        search_csv(&hits)
    }

    /// The live view of an archived message the viewer found (archive `id`, the mailbox's
    /// name inside the archive, UID): the read-only mailbox it appears in, so the reader can
    /// open it like any other message.
    pub fn mail_archive_locate(
        &self,
        account: AccountId,
        id: u32,
        mailbox: &str,
        uid: u32,
    ) -> Result<MailboxId> {
        let archive = self.sqlite().archives().get(id)?;
        let suffix = format!("/{mailbox}");
        for candidate in self.store().mailboxes(account)? {
            if !candidate.read_only || !candidate.name.ends_with(&suffix) {
                continue;
            }
            let metas = self.store().messages(candidate.id)?;
            let Ok(at) = metas.binary_search_by_key(&uid, |m| m.uid) else {
                continue;
            };
            // Two archives may both hold a mailbox of this name with this UID: the one
            // whose body this archive keeps is the message asked for.
            if archive.read_blob(&metas[at].blob).is_ok() {
                return Ok(candidate.id);
            }
        }
        Err(Error::not_found(format!(
            "no message {uid} of {mailbox} in archive {id}"
        )))
    }

    /// Changes an account's own password, given its current one. A wrong current password
    /// is an answer, not an error: the face counts it as a failed sign-in.
    pub fn mail_change_password(
        &self,
        address: &str,
        current: &str,
        new: &str,
    ) -> Result<PasswordChange> {
        if current.len() > MAX_PASSWORD || self.store().authenticate(address, current)?.is_none() {
            return Ok(PasswordChange::WrongCurrent);
        }
        if new.len() > MAX_PASSWORD {
            return Err(Error::invalid(format!(
                "the new password is longer than {MAX_PASSWORD} bytes"
            )));
        }
        self.account_password(address, new)?;
        Ok(PasswordChange::Changed)
    }

    fn own_mailbox(&self, account: AccountId, mailbox: MailboxId) -> Result<MailboxInfo> {
        match self.store().mailbox_by_id(mailbox) {
            Ok(info) if info.account == account => Ok(info),
            Ok(_) | Err(store::StoreError::NotFound { .. }) => {
                Err(Error::not_found(format!("no mailbox {}", mailbox.0)))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn mailbox_row(&self, info: MailboxInfo) -> Result<MailboxRow> {
        let counts = self.store().mailbox_counts(info.id)?;
        Ok(MailboxRow {
            id: info.id,
            name: info.name,
            messages: counts.messages,
            unseen: counts.unseen,
            archive: info.read_only,
        })
    }

    fn message_bytes(&self, mailbox: MailboxId, uid: u32) -> Result<(MessageMeta, Vec<u8>)> {
        let at_uid = NewestFirst {
            below_uid: uid.checked_add(1),
            limit: 1,
            ..NewestFirst::default()
        };
        let (metas, _) = self.store().messages_newest(mailbox, &at_uid)?;
        let meta = metas
            .into_iter()
            .find(|m| m.uid == uid)
            .ok_or_else(|| Error::not_found(format!("no message {uid} in this mailbox")))?;
        let raw = self.store().read_blob(&meta.blob)?;
        Ok((meta, raw))
    }

    /// A page of the mailbox from its rows (`metas`, already the page) and the number of
    /// messages in all.
    fn listing_page(
        &self,
        row: MailboxRow,
        metas: &[MessageMeta],
        total: usize,
        page: usize,
    ) -> Result<Listing> {
        let skip = (page - 1).saturating_mul(PAGE);
        let mut rows = Vec::new();
        for meta in metas {
            let raw = self.store().read_blob(&meta.blob)?;
            rows.push(row_of(meta, &Message::parse(header_block(&raw))));
        }
        Ok(Listing {
            mailbox: row,
            rows,
            total: Some(total),
            page,
            next: if skip + PAGE < total {
                Next::Page(page + 1)
            } else {
                Next::End
            },
            scanned: None,
        })
    }

    /// An archive mailbox's search, in the index of every archive holding the user's mail;
    /// a hit counts when it is a message of this very mailbox (same name, UID and body).
    fn archive_mailbox_search(
        &self,
        row: MailboxRow,
        info: &MailboxInfo,
        address: &str,
        metas: &[MessageMeta],
        filter: &Filter,
        page: usize,
    ) -> Result<Listing> {
        let here: HashSet<(u32, BlobId)> = metas.iter().map(|m| (m.uid, m.blob)).collect();
        let query = SearchQuery {
            text: filter.text.clone(),
            from: filter.from.clone(),
            to: filter.to.clone(),
            subject: filter.subject.clone(),
            account: Some(address.to_string()),
            limit: Some(INDEX_HITS),
            ..SearchQuery::default()
        };
        let mut found: Vec<(i64, Row)> = Vec::new();
        for archive in self.sqlite().archives().list() {
            for m in archive.search(&query)? {
                let name_matches = info
                    .name
                    .strip_suffix(m.mailbox.as_str())
                    .is_some_and(|rest| rest.ends_with('/'));
                if name_matches && here.contains(&(m.uid, m.blob)) {
                    found.push((
                        m.internal_date,
                        Row {
                            uid: m.uid,
                            date: m.internal_date,
                            from: m.from,
                            subject: m.subject,
                            size: m.size,
                            seen: m.flags.0 & Flags::SEEN != 0,
                        },
                    ));
                }
            }
        }
        // The dates were applied to `metas` already, and so through `here`.
        found.sort_by_key(|(date, row)| std::cmp::Reverse((*date, row.uid)));
        let total = found.len();
        let skip = (page - 1).saturating_mul(PAGE);
        let rows = found
            .into_iter()
            .skip(skip)
            .take(PAGE)
            .map(|(_, r)| r)
            .collect();
        Ok(Listing {
            mailbox: row,
            rows,
            total: Some(total),
            page,
            next: if skip + PAGE < total {
                Next::Page(page + 1)
            } else {
                Next::End
            },
            scanned: None,
        })
    }

    fn days(&self, filter: &Filter) -> Result<(Option<i64>, Option<i64>)> {
        let day = |d: &Option<String>| {
            d.as_deref()
                .map(|d| crate::archive::day_start(d, self.clock()))
                .transpose()
        };
        Ok((day(&filter.since)?, day(&filter.until)?))
    }
}

/// The longest password the console takes (as the sign-in form).
const MAX_PASSWORD: usize = 1024;

fn search_request(address: &str, id: u32, filter: &Filter, limit: usize) -> SearchRequest {
    SearchRequest {
        id,
        words: filter
            .text
            .as_deref()
            .map(|t| t.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default(),
        from: filter.from.clone(),
        to: filter.to.clone(),
        subject: filter.subject.clone(),
        since: filter.since.clone(),
        until: filter.until.clone(),
        // The viewer shows a user their own mail only, whatever the request says.
        account: Some(address.to_string()),
        limit: Some(limit),
    }
}

/// Whether a live message meets the header and text conditions (dates are checked on the
/// metadata before the message is read). Words must all occur, like the archive's search.
fn matches(message: &Message<'_>, filter: &Filter) -> bool {
    let all_words = |text: &str, found: &dyn Fn(&str) -> bool| text.split_whitespace().all(found);
    filter
        .from
        .as_deref()
        .is_none_or(|f| all_words(f, &|w| message.header_contains("From", w)))
        && filter.to.as_deref().is_none_or(|t| {
            all_words(t, &|w| {
                message.header_contains("To", w) || message.header_contains("Cc", w)
            })
        })
        && filter
            .subject
            .as_deref()
            .is_none_or(|s| all_words(s, &|w| message.header_contains("Subject", w)))
        && filter
            .text
            .as_deref()
            .is_none_or(|t| all_words(t, &|w| message.text_contains(w)))
}

/// The top header of a message, blank line included: all a list row shows, so a large
/// attachment is not parsed to show a subject.
fn header_block(raw: &[u8]) -> &[u8] {
    let crlf = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4);
    let lf = raw.windows(2).position(|w| w == b"\n\n").map(|at| at + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => &raw[..a.min(b)],
        (Some(end), None) | (None, Some(end)) => &raw[..end],
        (None, None) => raw,
    }
}

/// A found message as a row of the archive's CSV.
fn hit_of(
    address: &str,
    mailbox: &str,
    meta: &MessageMeta,
    message: &Message<'_>,
    clock: &gate::Clock,
) -> SearchHit {
    let header = |name| message.header_text(name).unwrap_or_default();
    SearchHit {
        account: address.to_string(),
        date: crate::archive::rfc3339(meta.internal_date, clock),
        from: header("From"),
        mailbox: mailbox.to_string(),
        message_id: header("Message-ID"),
        size: meta.size,
        subject: header("Subject"),
        to: header("To"),
        uid: meta.uid,
        day: String::new(),
    }
}

fn row_of(meta: &MessageMeta, message: &Message<'_>) -> Row {
    Row {
        uid: meta.uid,
        date: meta.internal_date,
        from: message.header_text("From").unwrap_or_default(),
        subject: message.header_text("Subject").unwrap_or_default(),
        size: meta.size,
        seen: meta.flags.0 & Flags::SEEN != 0,
    }
}

/// The header and rows of `archive export --csv`, for a search's hits.
pub fn search_csv(hits: &[SearchHit]) -> Result<Vec<u8>> {
    let failed = |e: csv::Error| Error::failed(format!("cannot write the CSV: {e}"));
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record(crate::archive::CSV_COLUMNS)
        .map_err(failed)?;
    for h in hits {
        csv.write_record([
            h.date.as_str(),
            &h.account,
            &h.mailbox,
            &h.from,
            &h.to,
            &h.subject,
            &h.size.to_string(),
            &h.message_id,
        ])
        .map_err(failed)?;
    }
    csv.into_inner()
        .map_err(|e| Error::failed(format!("cannot write the CSV: {e}")))
}

/// A file name to offer an attachment under: the sender's name without anything that
/// means something to a file system or a shell (path separators, control characters,
/// quotes, reserved characters, leading dots), at most [`MAX_FILE_NAME`] characters;
/// `attachment-N` when nothing is left.
pub fn safe_file_name(name: Option<&str>, index: usize) -> String {
    let cleaned: String = name
        .unwrap_or("")
        .chars()
        .map(|c| {
            if c.is_control()
                || matches!(
                    c,
                    '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|' | '%' | ';'
                )
                || c == '\u{202e}'
                || c == '\u{202d}'
            {
                '_'
            } else {
                c
            }
        })
        .collect();
    let trimmed = cleaned.trim_matches(|c: char| c == '.' || c.is_whitespace());
    let mut out: String = trimmed.chars().take(MAX_FILE_NAME).collect();
    out = out
        .trim_end_matches(|c: char| c == '.' || c.is_whitespace())
        .to_string();
    if out.chars().all(|c| c == '_') {
        out = format!("attachment-{}", index + 1);
    }
    out
}

/// HTML with every `http-equiv` attribute renamed, so that no `<meta http-equiv=refresh>`
/// sends the frame to a remote address: a sandbox still lets a document navigate itself.
/// Renaming can only take meaning away; text that mentions the word changes harmlessly.
pub fn inert_html(html: &str) -> String {
    const NEEDLE: &str = "http-equiv";
    let lower = html.to_ascii_lowercase();
    let mut out = String::with_capacity(html.len());
    let mut from = 0;
    while let Some(at) = lower[from..].find(NEEDLE) {
        let at = from + at;
        out.push_str(&html[from..at]);
        out.push_str("data-inert");
        from = at + NEEDLE.len();
    }
    out.push_str(&html[from..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_lose_paths_controls_and_reserved_characters() {
        assert_eq!(safe_file_name(Some("report.pdf"), 0), "report.pdf");
        assert_eq!(
            safe_file_name(Some("../../etc/passwd"), 0),
            "_.._etc_passwd"
        );
        assert_eq!(
            safe_file_name(Some("<script>alert(1)</script>.html"), 0),
            "_script_alert(1)__script_.html"
        );
        assert_eq!(safe_file_name(Some("a\"b\r\nc;d"), 0), "a_b__c_d");
        assert_eq!(safe_file_name(Some("受領書.pdf"), 0), "受領書.pdf");
        assert_eq!(
            safe_file_name(Some("evil\u{202e}fdp.exe"), 0),
            "evil_fdp.exe"
        );
        assert_eq!(safe_file_name(Some("..."), 2), "attachment-3");
        assert_eq!(safe_file_name(None, 0), "attachment-1");
        assert_eq!(
            safe_file_name(Some(&"x".repeat(500)), 0).len(),
            MAX_FILE_NAME
        );
    }

    #[test]
    fn a_list_row_parses_only_the_top_header() {
        assert_eq!(
            header_block(b"Subject: a\r\n\r\nbody\r\n\r\nmore"),
            b"Subject: a\r\n\r\n"
        );
        assert_eq!(header_block(b"Subject: a\n\nbody"), b"Subject: a\n\n");
        assert_eq!(header_block(b"Subject: a"), b"Subject: a");
    }

    #[test]
    fn http_equiv_is_renamed_in_any_case() {
        assert_eq!(
            inert_html("<META HTTP-EQUIV=\"refresh\" content=\"0;url=http://x\"><p>ok</p>"),
            "<META data-inert=\"refresh\" content=\"0;url=http://x\"><p>ok</p>"
        );
        assert_eq!(
            inert_html("<p>日本語 http-Equiv</p>"),
            "<p>日本語 data-inert</p>"
        );
    }

    #[test]
    fn filters_drop_empty_fields_and_refuse_long_ones() {
        let f = Filter::new(Some(" ".into()), None, Some("x".into()), None, None, None).unwrap();
        assert_eq!(f.from, None);
        assert_eq!(f.subject.as_deref(), Some("x"));
        assert!(Filter::new(Some("a".repeat(600)), None, None, None, None, None).is_err());
        assert!(Filter::default().is_empty());
    }

    #[test]
    fn live_search_needs_every_word_in_its_field() {
        let raw = b"From: Tanaka <tanaka@ext.test>\r\nTo: a@example.com\r\nCc: b@example.com\r\n\
            Subject: Monthly report\r\n\r\nThe zebra quartz text\r\n";
        let m = Message::parse(raw);
        let f = |from: Option<&str>,
                 to: Option<&str>,
                 subject: Option<&str>,
                 text: Option<&str>| Filter {
            from: from.map(Into::into),
            to: to.map(Into::into),
            subject: subject.map(Into::into),
            text: text.map(Into::into),
            ..Filter::default()
        };
        assert!(matches(&m, &f(Some("tanaka"), None, None, None)));
        assert!(matches(&m, &f(None, Some("b@example"), None, None)));
        assert!(matches(&m, &f(None, None, Some("report monthly"), None)));
        assert!(!matches(&m, &f(None, None, Some("report weekly"), None)));
        assert!(matches(&m, &f(None, None, None, Some("zebra quartz"))));
        assert!(!matches(&m, &f(Some("sato"), None, None, None)));
    }

    #[test]
    fn the_csv_has_the_export_columns() {
        let hit = SearchHit {
            account: "a@example.com".into(),
            date: "2020-05-01T10:00:00+00:00".into(),
            from: "X <x@y>".into(),
            mailbox: "INBOX".into(),
            message_id: "<1@y>".into(),
            size: 12,
            subject: "a, \"b\"".into(),
            to: "<a@example.com>".into(),
            uid: 3,
            day: "2020-05-01".into(),
        };
        let csv = String::from_utf8(search_csv(&[hit]).unwrap()).unwrap();
        assert_eq!(
            csv,
            "date,account,mailbox,from,to,subject,size,message_id\n\
             2020-05-01T10:00:00+00:00,a@example.com,INBOX,X <x@y>,<a@example.com>,\"a, \"\"b\"\"\",12,<1@y>\n"
        );
    }

    fn store_with_mail() -> (tempfile::TempDir, Ops, AccountId, AccountId) {
        let dir = tempfile::tempdir().unwrap();
        let ops = Ops::open(dir.path(), crate::Config::load(None).unwrap()).unwrap();
        ops.domain_add("example.com").unwrap();
        ops.account_add("alice@example.com", "alice-pw", false)
            .unwrap();
        ops.account_add("bob@example.com", "bob-pw", false).unwrap();
        let store = ops.store();
        let alice = store
            .authenticate("alice@example.com", "alice-pw")
            .unwrap()
            .unwrap();
        let bob = store
            .authenticate("bob@example.com", "bob-pw")
            .unwrap()
            .unwrap();
        for i in 0..120 {
            let raw = format!(
                "From: Sender {i} <s{i}@ext.test>\r\nTo: alice@example.com\r\n\
                 Subject: note {i}{}\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
                 --b\r\nContent-Type: text/html\r\n\r\n<meta http-equiv=refresh content=0><p>{i}</p>\r\n\
                 --b\r\nContent-Type: application/octet-stream\r\n\
                 Content-Disposition: attachment; filename=\"../f{i}.bin\"\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--b--\r\n",
                if i % 7 == 0 { " zebra" } else { "" }
            );
            store.deliver(raw.as_bytes(), &[alice]).unwrap();
        }
        (dir, ops, alice, bob)
    }

    #[test]
    fn a_user_reads_pages_messages_and_attachments_of_their_own_mailboxes_only() {
        let (_dir, ops, alice, bob) = store_with_mail();
        let boxes = ops.mail_mailboxes(alice).unwrap();
        let inbox = boxes.iter().find(|b| b.name == "INBOX").unwrap();
        assert_eq!((inbox.messages, inbox.archive), (120, false));
        let list = ops
            .mail_list(
                alice,
                "alice@example.com",
                inbox.id,
                &Filter::default(),
                At::default(),
            )
            .unwrap();
        assert_eq!(list.rows.len(), PAGE);
        assert_eq!(list.total, Some(120));
        assert_eq!(list.rows[0].subject, "note 119 zebra");
        assert_eq!(list.next, Next::Page(2));
        let last = ops
            .mail_list(
                alice,
                "alice@example.com",
                inbox.id,
                &Filter::default(),
                At {
                    page: 3,
                    before: None,
                },
            )
            .unwrap();
        assert_eq!((last.rows.len(), last.next), (20, Next::End));

        let view = ops.mail_message(alice, inbox.id, list.rows[0].uid).unwrap();
        assert_eq!(view.subject, "note 119 zebra");
        assert!(view.has_html);
        assert_eq!(view.attachments.len(), 1);
        assert_eq!(view.attachments[0].name, "_f119.bin");
        let file = ops.mail_attachment(alice, inbox.id, view.uid, 0).unwrap();
        assert_eq!(file.bytes, [0, 1, 2]);
        let html = ops.mail_html(alice, inbox.id, view.uid).unwrap();
        assert!(!html.contains("http-equiv"), "{html}");

        // Bob asks for Alice's mailbox and message: not found, as if they did not exist.
        for e in [
            ops.mail_list(
                bob,
                "bob@example.com",
                inbox.id,
                &Filter::default(),
                At::default(),
            )
            .err(),
            ops.mail_message(bob, inbox.id, view.uid).err(),
            ops.mail_attachment(bob, inbox.id, view.uid, 0).err(),
            ops.mail_html(bob, inbox.id, view.uid).err(),
        ] {
            assert!(matches!(e, Some(Error::NotFound(_))), "{e:?}");
        }
    }

    #[test]
    fn a_page_number_past_the_end_is_an_empty_page_not_a_panic() {
        let (_dir, ops, alice, _) = store_with_mail();
        let boxes = ops.mail_mailboxes(alice).unwrap();
        let inbox = boxes.iter().find(|b| b.name == "INBOX").unwrap().id;
        let far = At {
            page: usize::MAX,
            before: None,
        };
        let list = ops
            .mail_list(alice, "alice@example.com", inbox, &Filter::default(), far)
            .unwrap();
        assert!(list.rows.is_empty() && list.next == Next::End, "{list:?}");
    }

    #[test]
    fn a_live_mailboxs_csv_holds_every_hit_across_batches_and_only_the_owners() {
        let (_dir, ops, alice, bob) = store_with_mail();
        let inbox = ops
            .mail_mailboxes(alice)
            .unwrap()
            .into_iter()
            .find(|b| b.name == "INBOX")
            .unwrap();
        let filter = Filter {
            subject: Some("zebra".into()),
            ..Filter::default()
        };
        let (csv, stopped) = ops
            .mail_csv(alice, "alice@example.com", inbox.id, &filter)
            .unwrap();
        assert!(!stopped);
        let mut reader = csv::Reader::from_reader(csv.as_slice());
        assert_eq!(
            reader.headers().unwrap().iter().collect::<Vec<_>>(),
            crate::archive::CSV_COLUMNS
        );
        let subjects: Vec<String> = reader
            .records()
            .map(|r| r.unwrap()[5].to_string())
            .collect();
        // 119, 112, ..., 0: the 120 messages span two batches of the store's rows.
        let expected: Vec<String> = (0..120)
            .rev()
            .filter(|i| i % 7 == 0)
            .map(|i| format!("note {i} zebra"))
            .collect();
        assert_eq!(subjects, expected);
        assert!(matches!(
            ops.mail_csv(bob, "bob@example.com", inbox.id, &filter),
            Err(Error::NotFound(_))
        ));
    }

    #[test]
    fn a_live_search_goes_on_from_its_cursor() {
        let (_dir, ops, alice, _) = store_with_mail();
        let inbox = ops
            .mail_mailboxes(alice)
            .unwrap()
            .into_iter()
            .find(|b| b.name == "INBOX")
            .unwrap();
        let filter = Filter {
            subject: Some("zebra".into()),
            ..Filter::default()
        };
        let found = ops
            .mail_list(alice, "alice@example.com", inbox.id, &filter, At::default())
            .unwrap();
        // 0, 7, ..., 119: 18 messages.
        assert_eq!(found.rows.len(), 18);
        assert_eq!(found.next, Next::End);
        assert!(found.rows.iter().all(|r| r.subject.ends_with("zebra")));
        let wide = Filter {
            from: Some("ext.test".into()),
            ..Filter::default()
        };
        let first = ops
            .mail_list(alice, "alice@example.com", inbox.id, &wide, At::default())
            .unwrap();
        let Next::Before(cursor) = first.next else {
            panic!("{:?}", first.next)
        };
        let second = ops
            .mail_list(
                alice,
                "alice@example.com",
                inbox.id,
                &wide,
                At {
                    page: 1,
                    before: Some(cursor),
                },
            )
            .unwrap();
        assert_eq!(second.rows.len(), PAGE);
        assert_eq!(second.rows[0].uid, cursor - 1);
        assert!(first.rows.iter().all(|r| r.uid >= cursor));
    }

    #[test]
    fn a_password_changes_only_with_the_current_one() {
        let (_dir, ops, alice, _) = store_with_mail();
        let wrong = ops.mail_change_password("alice@example.com", "wrong", "new-pw");
        assert_eq!(wrong.unwrap(), PasswordChange::WrongCurrent);
        let empty = ops.mail_change_password("alice@example.com", "alice-pw", "");
        assert!(
            matches!(empty, Err(Error::Store(store::StoreError::Invalid(_)))),
            "{empty:?}"
        );
        let changed = ops.mail_change_password("alice@example.com", "alice-pw", "new-pw");
        assert_eq!(changed.unwrap(), PasswordChange::Changed);
        let store = ops.store();
        assert_eq!(
            store.authenticate("alice@example.com", "new-pw").unwrap(),
            Some(alice)
        );
        assert_eq!(
            store.authenticate("alice@example.com", "alice-pw").unwrap(),
            None
        );
    }
}
