//! The newsletter admin rules, in one place for every face: what is checked before a list,
//! a subscriber, a campaign or a sequence is made or changed, which status a new subscriber
//! gets, how a CSV file becomes subscribers (and subscribers a CSV file), the defaults of a
//! campaign, and the operator's campaign actions. The JSON API (`http.rs`) calls these
//! directly; the CLI reaches them through `ops::newsletter` (ops depends on this crate, so
//! the rules live here, below both).
//!
//! A campaign's state machine itself is the store's (`CampaignAction::allowed_from`, applied
//! in one conditional write); here an action is only named and its refusal worded.

use std::collections::BTreeMap;

use serde::Serialize;
use store::{
    CampaignAction, CampaignEdit, CampaignId, CampaignState, Edited, HistoryRef, List, ListId,
    Mailing, NewCampaign, NewStep, NewSubscriber, Newsletters, Otherwise, Outbound, Outcome,
    Segment, SequenceId, StepCondition, StepId, StoreError, Subscriber, SubscriberId,
    SubscriberStatus, Suppression, SuppressionReason, check_address,
};

use crate::NewsletterConfig;
use crate::message::{Letter, build_message};
use crate::template::{Rendered, Vars, render_parts};

/// A field of an admin request, so each face can name it its own way (a JSON key, a
/// command-line flag) in the one message the rule words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    ListName,
    FromAddress,
    SendMinute,
    SuppressionReason,
    TestRecipient,
    Subject,
}

impl Field {
    /// The field's key in the JSON API's request bodies.
    pub fn key(self) -> &'static str {
        match self {
            Field::ListName => "name",
            Field::FromAddress => "from_address",
            Field::SendMinute => "send_minute",
            Field::SuppressionReason => "reason",
            Field::TestRecipient => "to",
            Field::Subject => "subject",
        }
    }

    /// The command line's word for it (`tegami list add NAME --from ...`).
    pub fn flag(self) -> &'static str {
        match self {
            Field::ListName => "the list name",
            Field::FromAddress => "--from",
            Field::SendMinute => "--at",
            Field::SuppressionReason => "--reason",
            Field::TestRecipient => "--to",
            Field::Subject => "--subject",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The request breaks a rule; `problem` follows the field's name ("{field} {problem}").
    #[error("{} {problem}", field.key())]
    Invalid { field: Field, problem: String },
    /// The input as a whole is unusable (a CSV file without a header row).
    #[error("{0}")]
    Unreadable(String),
    /// The campaign's current state does not allow the action.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type Result<T, E = AdminError> = std::result::Result<T, E>;

fn invalid(field: Field, problem: impl Into<String>) -> AdminError {
    AdminError::Invalid {
        field,
        problem: problem.into(),
    }
}

// Lists.

/// A list to make.
#[derive(Debug, Clone, Default)]
pub struct NewList {
    pub name: String,
    /// The From address of its mail (one of the server's domains, to be DKIM-signed).
    pub from_address: String,
    pub from_name: String,
    /// Subscribers from the public form confirm by mail before they get anything.
    pub double_opt_in: bool,
}

/// Makes a list: it needs a name and a From address.
pub fn list_add(store: &dyn Newsletters, list: &NewList, now: i64) -> Result<ListId> {
    if list.name.trim().is_empty() {
        return Err(invalid(Field::ListName, "must not be empty"));
    }
    if !list.from_address.contains('@') {
        return Err(invalid(
            Field::FromAddress,
            format!(
                "{:?} is not an address (like news@example.com)",
                list.from_address
            ),
        ));
    }
    Ok(store.list_add(
        &list.name,
        &list.from_address,
        &list.from_name,
        list.double_opt_in,
        now,
    )?)
}

/// A list with its subscribers by status, as both faces show it.
#[derive(Debug, Clone, Serialize)]
pub struct ListView {
    pub id: i64,
    pub name: String,
    pub from_address: String,
    pub from_name: String,
    pub double_opt_in: bool,
    pub created: i64,
    pub subscribers: BTreeMap<&'static str, u64>,
}

/// Every list, by name, with its counts.
pub fn lists(store: &dyn Newsletters) -> Result<Vec<ListView>> {
    let mut out = Vec::new();
    for list in store.lists()? {
        let subscribers = store.subscriber_counts(list.id)?;
        out.push(ListView {
            id: list.id.0,
            name: list.name,
            from_address: list.from_address,
            from_name: list.from_name,
            double_opt_in: list.double_opt_in,
            created: list.created,
            subscribers,
        });
    }
    Ok(out)
}

// Subscribers.

/// A subscriber to add by hand (the CLI, the JSON API).
#[derive(Debug, Clone, Default)]
pub struct SubscriberRequest {
    pub email: String,
    pub name: String,
    pub attributes: BTreeMap<String, String>,
    /// The caller vouches for the address: active at once even on a double opt-in list.
    pub confirmed: bool,
}

/// The status a subscriber added by the operator starts in: active when the operator says
/// it is confirmed or the list has no double opt-in, else waiting for a confirmation.
pub fn added_status(list: &List, confirmed: bool) -> SubscriberStatus {
    if confirmed || !list.double_opt_in {
        SubscriberStatus::Active
    } else {
        SubscriberStatus::Unconfirmed
    }
}

/// Adds one subscriber to the list named `list`; returns its id and status.
pub fn subscriber_add(
    store: &dyn Newsletters,
    list: &str,
    request: SubscriberRequest,
    now: i64,
) -> Result<(SubscriberId, SubscriberStatus)> {
    let list = store.list(list)?;
    let status = added_status(&list, request.confirmed);
    let id = store.subscriber_add(
        list.id,
        NewSubscriber {
            email: request.email,
            name: request.name,
            attributes: request.attributes,
            status,
        },
        now,
    )?;
    Ok((id, status))
}

/// One subscriber of the named list, by address (any case).
pub fn subscriber_of(
    store: &dyn Newsletters,
    list: &str,
    email: &str,
) -> Result<(List, Subscriber)> {
    let list = store.list(list)?;
    let subscriber = store.subscriber_by_email(list.id, email)?;
    Ok((list, subscriber))
}

/// Forgets one subscriber of the named list.
pub fn subscriber_remove(
    store: &dyn Newsletters,
    list: &str,
    email: &str,
) -> Result<(List, Subscriber)> {
    let (list, subscriber) = subscriber_of(store, list, email)?;
    store.subscriber_remove(subscriber.id)?;
    Ok((list, subscriber))
}

/// Unsubscribes one subscriber of the named list (kept, marked unsubscribed).
pub fn subscriber_unsubscribe(
    store: &dyn Newsletters,
    list: &str,
    email: &str,
    now: i64,
) -> Result<(List, Subscriber)> {
    let (list, subscriber) = subscriber_of(store, list, email)?;
    store.subscriber_set_status(subscriber.id, SubscriberStatus::Unsubscribed, None, now)?;
    Ok((list, subscriber))
}

/// What a reader asks for on the unsubscribe page: this list only (also RFC 8058's
/// one-click), or every list, now and later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveScope {
    ThisList,
    Everywhere,
}

/// A reader leaves through their unsubscribe link: the subscriber is unsubscribed (counted
/// against `about`, the mail the link came in), and with [`LeaveScope::Everywhere`] their
/// address goes on the global suppression list as "unsubscribed", so that no list's
/// campaign or step mail reaches it again, including lists they join later by mistake.
/// A subscriber removed since is as unsubscribed as can be: `Ok` all the same.
pub fn reader_unsubscribe(
    store: &dyn Newsletters,
    subscriber: SubscriberId,
    about: Option<HistoryRef>,
    scope: LeaveScope,
    now: i64,
) -> Result<()> {
    let s = match store.subscriber(subscriber) {
        Ok(s) => s,
        Err(StoreError::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if s.status != SubscriberStatus::Unsubscribed {
        store.subscriber_set_status(s.id, SubscriberStatus::Unsubscribed, about, now)?;
    }
    if scope == LeaveScope::Everywhere {
        store.suppress(
            &s.email,
            SuppressionReason::Unsubscribed,
            Some("asked on the unsubscribe page to leave every list"),
            now,
        )?;
    }
    Ok(())
}

/// A subscriber as both faces show it.
#[derive(Debug, Clone, Serialize)]
pub struct SubscriberView {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub status: &'static str,
    pub attributes: BTreeMap<String, String>,
    pub created: i64,
    pub confirmed: Option<i64>,
    pub hard_bounces: u32,
    pub soft_bounces: u32,
}

impl From<Subscriber> for SubscriberView {
    fn from(s: Subscriber) -> Self {
        SubscriberView {
            id: s.id.0,
            email: s.email,
            name: s.name,
            status: s.status.as_str(),
            attributes: s.attributes,
            created: s.created,
            confirmed: s.confirmed,
            hard_bounces: s.hard_bounces,
            soft_bounces: s.soft_bounces,
        }
    }
}

/// Every subscriber of a list, in id order, read page by page.
pub fn all_subscribers(store: &dyn Newsletters, list: ListId) -> Result<Vec<Subscriber>> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = store.subscribers(list, after, 5000)?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some(last.id);
        all.extend(page);
    }
    Ok(all)
}

// CSV import and export.

/// What an import did: rows added, rows already on the list, and every refused row with its
/// line number and why, in line order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub added: u64,
    pub present: u64,
    pub bad: Vec<(u64, String)>,
}

/// Imports "email,name,attr..." CSV (a header row first) into the named list. Rows the CSV
/// reader cannot make sense of, or without an address, are refused by line number; the
/// store judges the addresses themselves. Imported subscribers are active on a list
/// without double opt-in, unconfirmed on one with it.
pub fn import_csv(
    store: &dyn Newsletters,
    list: &str,
    text: &[u8],
    now: i64,
) -> Result<ImportReport> {
    let list = store.list(list)?;
    let parsed = parse_csv(text)?;
    let lines: Vec<u64> = parsed.rows.iter().map(|(line, _)| *line).collect();
    let rows: Vec<NewSubscriber> = parsed
        .rows
        .into_iter()
        .map(|(_, mut s)| {
            s.status = added_status(&list, false);
            s
        })
        .collect();
    let counts = store.subscriber_import(list.id, rows, now)?;
    let mut bad = parsed.bad;
    bad.extend(
        counts
            .invalid
            .iter()
            .map(|(index, reason)| (lines[*index], reason.clone())),
    );
    bad.sort();
    Ok(ImportReport {
        added: counts.added,
        present: counts.present,
        bad,
    })
}

/// The named list's subscribers as CSV (email, name, status, then every attribute any of
/// them has, in name order): what [`import_csv`] reads back. Returns the bytes and the
/// number of subscribers.
pub fn export_csv(store: &dyn Newsletters, list: &str) -> Result<(Vec<u8>, usize)> {
    let list = store.list(list)?;
    let all = all_subscribers(store, list.id)?;
    let mut keys: Vec<&String> = all.iter().flat_map(|s| s.attributes.keys()).collect();
    keys.sort();
    keys.dedup();
    let cannot = |e: csv::Error| AdminError::Unreadable(format!("cannot write the CSV: {e}"));
    let mut out = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["email", "name", "status"];
    header.extend(keys.iter().map(|k| k.as_str()));
    out.write_record(&header).map_err(cannot)?;
    for s in &all {
        let mut row = vec![s.email.as_str(), s.name.as_str(), s.status.as_str()];
        row.extend(
            keys.iter()
                .map(|k| s.attributes.get(*k).map(String::as_str).unwrap_or("")),
        );
        out.write_record(&row).map_err(cannot)?;
    }
    let bytes = out
        .into_inner()
        .map_err(|e| AdminError::Unreadable(format!("cannot write the CSV: {e}")))?;
    Ok((bytes, all.len()))
}

/// A CSV import: the good rows with their line numbers, and the lines refused here.
struct ParsedCsv {
    rows: Vec<(u64, NewSubscriber)>,
    bad: Vec<(u64, String)>,
}

/// A CSV reader of an uploaded or imported file (rows may differ in length, fields are
/// trimmed) and its header row in lower case; `expected` names the columns for the error.
fn csv_with_header<'a>(
    text: &'a [u8],
    expected: &str,
) -> Result<(csv::Reader<&'a [u8]>, Vec<String>)> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text);
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| {
            AdminError::Unreadable(format!("the CSV file has no header row ({expected}): {e}"))
        })?
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    Ok((reader, header))
}

fn parse_csv(text: &[u8]) -> Result<ParsedCsv> {
    let (mut reader, header) = csv_with_header(text, "email,name,...")?;
    let Some(email_at) = header.iter().position(|h| h == "email") else {
        return Err(AdminError::Unreadable(format!(
            "the CSV header has no \"email\" column (found: {})",
            header.join(",")
        )));
    };
    let name_at = header.iter().position(|h| h == "name");
    let mut parsed = ParsedCsv {
        rows: Vec::new(),
        bad: Vec::new(),
    };
    // Line numbers come from byte offsets: the reader's own line count skips blank lines.
    let mut lines = LineCounter::new(text);
    let mut record = csv::StringRecord::new();
    loop {
        let at = reader.position().byte();
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = lines.line_at(e.position().map_or(at, |p| p.byte()));
                parsed.bad.push((line, format!("unreadable: {e}")));
                continue;
            }
        }
        let line = lines.line_at(record.position().map_or(at, |p| p.byte()));
        if record.iter().all(|f| f.is_empty()) {
            continue;
        }
        let email = record.get(email_at).unwrap_or("").to_string();
        if email.is_empty() {
            parsed.bad.push((line, "no email address".into()));
            continue;
        }
        let mut attributes = BTreeMap::new();
        for (i, value) in record.iter().enumerate() {
            if i != email_at
                && Some(i) != name_at
                && !value.is_empty()
                && let Some(key) = header.get(i)
            {
                attributes.insert(key.clone(), value.to_string());
            }
        }
        parsed.rows.push((
            line,
            NewSubscriber {
                email,
                name: name_at
                    .and_then(|i| record.get(i))
                    .unwrap_or("")
                    .to_string(),
                attributes,
                status: SubscriberStatus::Unconfirmed,
            },
        ));
    }
    Ok(parsed)
}

/// Turns byte offsets, met in ascending order, into 1-based line numbers.
struct LineCounter<'a> {
    text: &'a [u8],
    offset: usize,
    line: u64,
}

impl<'a> LineCounter<'a> {
    fn new(text: &'a [u8]) -> Self {
        LineCounter {
            text,
            offset: 0,
            line: 1,
        }
    }

    /// The line of the first byte at or after `byte` that is not a line end: a record's
    /// position is where the reader began, before the blank lines it skipped.
    fn line_at(&mut self, byte: u64) -> u64 {
        let mut byte = (byte as usize).min(self.text.len());
        while byte < self.text.len() && matches!(self.text[byte], b'\r' | b'\n') {
            byte += 1;
        }
        if byte > self.offset {
            self.line += self.text[self.offset..byte]
                .iter()
                .filter(|&&b| b == b'\n')
                .count() as u64;
            self.offset = byte;
        }
        self.line
    }
}

// The suppression list.

/// A suppression as both faces show it; `at` in Unix seconds.
#[derive(Debug, Clone, Serialize)]
pub struct SuppressionView {
    pub address: String,
    pub reason: &'static str,
    pub at: i64,
    pub note: Option<String>,
}

impl From<Suppression> for SuppressionView {
    fn from(s: Suppression) -> Self {
        SuppressionView {
            address: s.address,
            reason: s.reason.as_str(),
            at: s.at,
            note: s.note,
        }
    }
}

/// A reason by name, or the rule's words for a wrong one.
pub fn suppression_reason(name: &str) -> Result<SuppressionReason> {
    SuppressionReason::parse(name).ok_or_else(|| {
        let names: Vec<&str> = SuppressionReason::ALL.iter().map(|r| r.as_str()).collect();
        invalid(
            Field::SuppressionReason,
            format!("{name:?} is not one of {}", names.join(", ")),
        )
    })
}

/// Puts an address on the suppression list by hand; `false` when it was there already
/// (its first entry stays).
pub fn suppress(
    store: &dyn Newsletters,
    address: &str,
    reason: SuppressionReason,
    note: Option<&str>,
    now: i64,
) -> Result<bool> {
    Ok(store.suppress(address, reason, note, now)?)
}

/// The whole suppression list in address order, read page by page.
pub fn all_suppressions(store: &dyn Newsletters) -> Result<Vec<Suppression>> {
    let mut all: Vec<Suppression> = Vec::new();
    loop {
        let after = all.last().map(|s| s.address.clone());
        let page = store.suppressions(after.as_deref(), 5000)?;
        if page.is_empty() {
            return Ok(all);
        }
        all.extend(page);
    }
}

/// The suppression list as CSV, "address,reason,at,note" with `at` in RFC 3339 (UTC):
/// what [`import_suppressions_csv`] reads back. Returns the bytes and the number of rows.
pub fn export_suppressions_csv(store: &dyn Newsletters) -> Result<(Vec<u8>, usize)> {
    let all = all_suppressions(store)?;
    let cannot = |e: csv::Error| AdminError::Unreadable(format!("cannot write the CSV: {e}"));
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(["address", "reason", "at", "note"])
        .map_err(cannot)?;
    for s in &all {
        let at = jiff::Timestamp::from_second(s.at)
            .map(|t| t.to_string())
            .unwrap_or_else(|_| s.at.to_string());
        out.write_record([
            s.address.as_str(),
            s.reason.as_str(),
            at.as_str(),
            s.note.as_deref().unwrap_or(""),
        ])
        .map_err(cannot)?;
    }
    let bytes = out
        .into_inner()
        .map_err(|e| AdminError::Unreadable(format!("cannot write the CSV: {e}")))?;
    Ok((bytes, all.len()))
}

/// Imports a suppression list: CSV with a header row naming an "address" (or "email")
/// column and, optionally, "reason", "at" (RFC 3339 or Unix seconds) and "note" — what
/// [`export_suppressions_csv`] writes, or a subscriber export, whose "email" column is
/// read and the rest ignored. A row without a reason takes `reason`; without a time, `now`.
/// Bad rows are reported by line, as a subscriber import does.
pub fn import_suppressions_csv(
    store: &dyn Newsletters,
    text: &[u8],
    reason: SuppressionReason,
    now: i64,
) -> Result<ImportReport> {
    let (mut reader, header) = csv_with_header(text, "address,reason,at,note")?;
    let column = |name: &str| header.iter().position(|h| h == name);
    let Some(address_at) = column("address").or_else(|| column("email")) else {
        return Err(AdminError::Unreadable(format!(
            "the CSV header has no \"address\" column (found: {})",
            header.join(",")
        )));
    };
    let (reason_at, time_at, note_at) = (column("reason"), column("at"), column("note"));
    let mut rows: Vec<Suppression> = Vec::new();
    let mut lines: Vec<u64> = Vec::new();
    let mut bad: Vec<(u64, String)> = Vec::new();
    let mut counter = LineCounter::new(text);
    let mut record = csv::StringRecord::new();
    loop {
        let at = reader.position().byte();
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = counter.line_at(e.position().map_or(at, |p| p.byte()));
                bad.push((line, format!("unreadable: {e}")));
                continue;
            }
        }
        let line = counter.line_at(record.position().map_or(at, |p| p.byte()));
        if record.iter().all(|f| f.is_empty()) {
            continue;
        }
        let get = |i: Option<usize>| i.and_then(|i| record.get(i)).filter(|v| !v.is_empty());
        let Some(address) = get(Some(address_at)) else {
            bad.push((line, "no address".into()));
            continue;
        };
        let row_reason = match get(reason_at) {
            None => reason,
            Some(name) => match SuppressionReason::parse(name) {
                Some(r) => r,
                None => {
                    bad.push((line, format!("{name:?} is not a suppression reason")));
                    continue;
                }
            },
        };
        let when = match get(time_at) {
            None => now,
            Some(text) => match parse_time(text) {
                Some(t) => t,
                None => {
                    bad.push((
                        line,
                        format!("{text:?} is not a time (RFC 3339 or Unix seconds)"),
                    ));
                    continue;
                }
            },
        };
        lines.push(line);
        rows.push(Suppression {
            address: address.to_string(),
            reason: row_reason,
            at: when,
            note: get(note_at).map(str::to_string),
        });
    }
    let counts = store.suppress_many(rows)?;
    bad.extend(
        counts
            .invalid
            .iter()
            .map(|(index, why)| (lines[*index], why.clone())),
    );
    bad.sort();
    Ok(ImportReport {
        added: counts.added,
        present: counts.present,
        bad,
    })
}

/// RFC 3339 ("2026-01-01T09:00:00Z") or Unix seconds.
fn parse_time(text: &str) -> Option<i64> {
    text.parse::<i64>()
        .ok()
        .or_else(|| text.parse::<jiff::Timestamp>().ok().map(|t| t.as_second()))
}

// Campaigns.

/// A campaign to schedule; what is left out takes the defaults.
#[derive(Debug, Clone, Default)]
pub struct CampaignRequest {
    /// The list's name.
    pub list: String,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    /// Unix seconds; default now.
    pub send_at: Option<i64>,
    /// Default: the configured `[newsletter] rate_per_second`.
    pub rate_per_second: Option<u32>,
    /// Default: no limit of its own (0).
    pub rate_per_domain: Option<u32>,
    /// More lists by name; an address on several gets one mail.
    pub also: Vec<String>,
    /// Segment terms ([`store::Segment`]); none: every active subscriber.
    pub segment: Vec<String>,
}

/// Reads segment terms as every face takes them, one by one.
pub fn parse_segment<S: AsRef<str>>(terms: &[S]) -> Result<Segment> {
    Segment::parse(terms).map_err(AdminError::Unreadable)
}

/// The lists named by `also`, checked: each known, none twice, none the campaign's own.
fn other_lists(store: &dyn Newsletters, first: &List, also: &[String]) -> Result<Vec<ListId>> {
    let mut ids: Vec<ListId> = Vec::new();
    for name in also {
        let list = store.list(name.trim())?;
        if list.id == first.id || ids.contains(&list.id) {
            return Err(AdminError::Unreadable(format!(
                "the list '{}' is named twice for one campaign",
                list.name
            )));
        }
        ids.push(list.id);
    }
    Ok(ids)
}

/// An edit given a new audience by name: `lists` (the first first) and `segment` terms,
/// each `None` to keep what the campaign has; an empty segment selects everyone.
pub fn with_audience(
    store: &dyn Newsletters,
    mut edit: CampaignEdit,
    lists: Option<&[String]>,
    segment: Option<&[String]>,
) -> Result<CampaignEdit> {
    if let Some(names) = lists {
        let Some((first, also)) = names.split_first() else {
            return Err(AdminError::Unreadable(
                "a campaign needs at least one list".into(),
            ));
        };
        let first = store.list(first.trim())?;
        edit.lists = Some((first.id, other_lists(store, &first, also)?));
    }
    if let Some(terms) = segment {
        edit.segment = Some(parse_segment(terms)?);
    }
    Ok(edit)
}

/// Schedules a campaign to the active subscribers of its lists who match its segment.
pub fn campaign_add(
    store: &dyn Newsletters,
    request: CampaignRequest,
    default_rate: u32,
    now: i64,
) -> Result<CampaignId> {
    let list = store.list(&request.list)?;
    let segment = parse_segment(&request.segment)?;
    let also = other_lists(store, &list, &request.also)?;
    Ok(store.campaign_add(NewCampaign {
        list: list.id,
        subject: request.subject,
        text: request.text,
        html: request.html,
        send_at: request.send_at.unwrap_or(now),
        state: CampaignState::Scheduled,
        rate_per_second: request.rate_per_second.unwrap_or(default_rate),
        rate_per_domain: request.rate_per_domain.unwrap_or(0),
        created: now,
        also,
        segment,
    })?)
}

/// A campaign's audience as the faces show it: its lists by name, its segment, and how
/// many different addresses it selects now.
#[derive(Debug, Clone, Serialize)]
pub struct Audience {
    /// The campaign's lists, its first list first.
    pub lists: Vec<String>,
    /// The segment's terms; empty for every active subscriber.
    pub segment: Vec<String>,
    /// Different addresses among the lists' active subscribers that match the segment now
    /// (the suppression list may still skip some when they are mailed).
    pub count: u64,
}

/// Who campaign `id` goes to, counted now.
pub fn campaign_audience(store: &dyn Newsletters, id: CampaignId) -> Result<Audience> {
    let campaign = store.campaign(id)?;
    let lists = campaign.lists();
    let count = store.segment_count(&lists, &campaign.segment)?;
    let mut names = Vec::with_capacity(lists.len());
    for list in &lists {
        names.push(store.list_by_id(*list)?.name);
    }
    Ok(Audience {
        lists: names,
        segment: campaign.segment.texts(),
        count,
    })
}

/// A campaign's totals: the size of each outcome's set (who), so a click counted twice by
/// one reader is one here; the daily totals keep every click.
pub fn campaign_totals(
    store: &dyn Newsletters,
    id: CampaignId,
) -> Result<BTreeMap<&'static str, u64>> {
    let about = HistoryRef::Campaign(id);
    let mut totals = BTreeMap::new();
    for outcome in Outcome::ALL {
        totals.insert(outcome.as_str(), store.count(about, outcome)?);
    }
    Ok(totals)
}

/// The operator's actions on a campaign, by name ("pause", "resume", "cancel"); the
/// sender's own steps are not among them.
pub fn campaign_action(name: &str) -> Option<CampaignAction> {
    [
        CampaignAction::Pause,
        CampaignAction::Resume,
        CampaignAction::Cancel,
    ]
    .into_iter()
    .find(|a| a.as_str() == name)
}

/// Applies an operator's action, if the campaign's state at that moment allows it (the
/// store decides in one conditional write); returns the state it is in now.
pub fn campaign_apply(
    store: &dyn Newsletters,
    id: CampaignId,
    action: CampaignAction,
    now: i64,
) -> Result<CampaignState> {
    let transition = store.campaign_apply(id, action, now)?;
    match transition.refusal(id, action) {
        Some(refused) => Err(AdminError::Refused(refused)),
        None => Ok(action.target()),
    }
}

/// Changes what a campaign sends, when or how fast, while it has not started (a draft or
/// scheduled); a draft given its start is scheduled. Refused once sending began: readers
/// have the mail as it was, so a changed mail is a copy ([`campaign_copy`]).
pub fn campaign_edit(
    store: &dyn Newsletters,
    id: CampaignId,
    edit: CampaignEdit,
    now: i64,
) -> Result<()> {
    if edit == CampaignEdit::default() {
        return Err(AdminError::Unreadable(
            "nothing to change: give a subject, templates, a start, rates, lists or a segment"
                .into(),
        ));
    }
    if edit.subject.as_deref().is_some_and(|s| s.trim().is_empty()) {
        return Err(invalid(Field::Subject, "must not be empty"));
    }
    match store.campaign_edit(id, edit, now)? {
        Edited::Changed => Ok(()),
        Edited::Refused { current } => Err(AdminError::Refused(format!(
            "campaign {} is {}; only a draft or scheduled campaign can be edited, before \
             sending begins (copy it to send a changed one)",
            id.0,
            current.as_str()
        ))),
    }
}

/// A new campaign from any campaign, in any state: the same list, subject, templates and
/// rates, scheduled at `send_at`, or a draft without one (nothing goes out until it is
/// given a start with [`campaign_edit`]). It has its own totals and history.
pub fn campaign_copy(
    store: &dyn Newsletters,
    id: CampaignId,
    send_at: Option<i64>,
    now: i64,
) -> Result<CampaignId> {
    let from = store.campaign(id)?;
    Ok(store.campaign_add(NewCampaign {
        list: from.list,
        subject: from.subject,
        text: from.text,
        html: from.html,
        send_at: send_at.unwrap_or(now),
        state: if send_at.is_some() {
            CampaignState::Scheduled
        } else {
            CampaignState::Draft
        },
        rate_per_second: from.rate_per_second,
        rate_per_domain: from.rate_per_domain,
        created: now,
        also: from.also,
        segment: from.segment,
    })?)
}

// Previews and test mails.

/// The unsubscribe link of a preview or test mail: the real one would unsubscribe the
/// reader whose data the operator borrowed, so this one names no token and does nothing.
pub fn sample_unsubscribe_url(config: &NewsletterConfig) -> String {
    format!("{}/unsubscribe/test", config.base_url.trim_end_matches('/'))
}

/// A campaign's mail rendered for one reader, through the sender's own render path
/// ([`render_parts`]) but harmless to open: links stay the originals (a sent mail's go
/// through `base_url/c/<token>`, which would count the operator's clicks), the unsubscribe
/// link is [`sample_unsubscribe_url`], and there is no open pixel.
#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    pub campaign: i64,
    /// Whose data filled the templates: a subscriber's address, or none for a sample
    /// reader without a name or attributes (so the templates' defaults show).
    pub subscriber: Option<String>,
    #[serde(flatten)]
    pub rendered: Rendered,
    /// Its lists, segment, and how many it selects now.
    pub audience: Audience,
}

/// Renders campaign `id` (in any state, a draft too) for the subscriber of its list with
/// address `subscriber`, or for a sample reader at `sample_address` without a name or
/// attributes when none is chosen.
pub fn campaign_preview(
    store: &dyn Newsletters,
    config: &NewsletterConfig,
    id: CampaignId,
    subscriber: Option<&str>,
    sample_address: &str,
) -> Result<Preview> {
    let campaign = store.campaign(id)?;
    let reader = match subscriber {
        Some(email) => Some(reader_on(store, &campaign.lists(), email.trim())?),
        None => None,
    };
    let no_attributes = BTreeMap::new();
    let unsubscribe_url = sample_unsubscribe_url(config);
    let vars = Vars {
        name: reader.as_ref().map_or("", |r| r.name.as_str()),
        email: reader.as_ref().map_or(sample_address, |r| r.email.as_str()),
        attributes: reader.as_ref().map_or(&no_attributes, |r| &r.attributes),
        unsubscribe_url: &unsubscribe_url,
        links: &[],
    };
    let rendered = render_parts(
        &campaign.subject,
        &campaign.text,
        campaign.html.as_deref(),
        &vars,
    );
    Ok(Preview {
        campaign: id.0,
        subscriber: reader.map(|r| r.email),
        rendered,
        audience: campaign_audience(store, id)?,
    })
}

/// The subscriber at `email` on the first of `lists` that has one; NotFound (naming the
/// first list's lookup) when none has.
fn reader_on(store: &dyn Newsletters, lists: &[ListId], email: &str) -> Result<Subscriber> {
    let mut first_error = None;
    for list in lists {
        match store.subscriber_by_email(*list, email) {
            Ok(s) => return Ok(s),
            Err(e @ StoreError::NotFound { .. }) => {
                first_error.get_or_insert(e);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(first_error
        .unwrap_or_else(|| StoreError::NotFound {
            what: format!("subscriber {email}"),
        })
        .into())
}

/// The address of the sample reader a preview without a chosen subscriber renders for.
pub const SAMPLE_ADDRESS: &str = "reader@example.com";

/// What [`campaign_test`] sends: the preview, "[TEST] " before its subject.
pub const TEST_SUBJECT_PREFIX: &str = "[TEST] ";

/// Sends one test mail of campaign `id` to `to`, rendered as [`campaign_preview`] renders
/// it (for `subscriber`, or a sample reader at `to`), its subject prefixed
/// [`TEST_SUBJECT_PREFIX`]. It goes through the outbound queue like any mail, but from the
/// list's own address rather than a VERP one and outside `enqueue_mails`, so it is in no
/// campaign total or history and a bounce of it touches no subscriber.
pub fn campaign_test(
    store: &dyn Mailing,
    config: &NewsletterConfig,
    id: CampaignId,
    to: &str,
    subscriber: Option<&str>,
    now: i64,
) -> Result<Preview> {
    let to = check_address(to).map_err(|problem| invalid(Field::TestRecipient, problem))?;
    let mut preview = campaign_preview(store, config, id, subscriber, &to)?;
    preview.rendered.subject = format!("{TEST_SUBJECT_PREFIX}{}", preview.rendered.subject);
    let campaign = store.campaign(id)?;
    let list = store.list_by_id(campaign.list)?;
    let message = build_message(&Letter {
        from_address: &list.from_address,
        from_name: &list.from_name,
        to_address: &to,
        to_name: "",
        subject: &preview.rendered.subject,
        text: &preview.rendered.text,
        html: preview.rendered.html.as_deref(),
        list_name: &list.name,
        domain: &config.bounce_domain,
        unsubscribe_url: &sample_unsubscribe_url(config),
        date: now,
    });
    let envelope = Outbound {
        sender: list.from_address.clone(),
        recipients: vec![to],
        account: None,
    };
    store.accept(&message, &[], Some(&envelope))?;
    Ok(preview)
}

// Sequences.

/// A step-mail sequence to make.
#[derive(Debug, Clone, Default)]
pub struct SequenceRequest {
    /// The list's name.
    pub list: String,
    pub name: String,
    /// The zone whose clock the steps' times of day follow; default UTC.
    pub time_zone: Option<String>,
    /// Subscribers who joined before now take part too (from now on).
    pub join_existing: bool,
}

pub fn sequence_add(
    store: &dyn Newsletters,
    request: &SequenceRequest,
    now: i64,
) -> Result<SequenceId> {
    let list = store.list(&request.list)?;
    Ok(store.sequence_add(
        list.id,
        &request.name,
        request.time_zone.as_deref().unwrap_or("UTC"),
        request.join_existing,
        now,
    )?)
}

/// Appends a step to a sequence: its time of day is a minute of the day (below 1440).
/// A step's condition and what it does otherwise, as every face takes them: a term such as
/// `clicked:3` or `not-opened:3` (empty or none: always sent), and `skip` or `wait`
/// (default skip; only meaningful with a condition).
pub fn step_condition(
    condition: Option<&str>,
    otherwise: Option<&str>,
) -> Result<(Option<StepCondition>, Otherwise)> {
    let condition = match condition.map(str::trim) {
        None | Some("") => None,
        Some(text) => Some(StepCondition::parse(text).map_err(AdminError::Unreadable)?),
    };
    let otherwise = match otherwise.map(str::trim) {
        None | Some("") => Otherwise::default(),
        Some(text) => Otherwise::parse(text).ok_or_else(|| {
            AdminError::Unreadable(format!(
                "'{text}': a step whose condition does not hold is skipped (skip) or waited \
                 at (wait)"
            ))
        })?,
    };
    if condition.is_none() && otherwise == Otherwise::Wait {
        return Err(AdminError::Unreadable(
            "wait needs a condition to wait for (clicked:STEP, ...)".into(),
        ));
    }
    Ok((condition, otherwise))
}

pub fn step_add(store: &dyn Newsletters, sequence: SequenceId, step: NewStep) -> Result<StepId> {
    if step.send_minute >= 1440 {
        return Err(invalid(
            Field::SendMinute,
            "must be below 1440 (minutes after midnight)",
        ));
    }
    Ok(store.step_add(sequence, step)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_keep_their_line_numbers_and_bad_rows_are_named() {
        let text = b"email,name,plan\n\
            a@example.com,Alice,gold\n\
            ,Nobody,\n\
            \n\
            \"b@example.com\",\"Bob, Jr.\",\n";
        let parsed = parse_csv(text).unwrap();
        let rows: Vec<(u64, &str, &str)> = parsed
            .rows
            .iter()
            .map(|(l, s)| (*l, s.email.as_str(), s.name.as_str()))
            .collect();
        assert_eq!(
            rows,
            [
                (2, "a@example.com", "Alice"),
                (5, "b@example.com", "Bob, Jr.")
            ]
        );
        assert_eq!(parsed.rows[0].1.attributes["plan"], "gold");
        assert!(parsed.rows[1].1.attributes.is_empty());
        assert_eq!(parsed.bad, [(3, "no email address".to_string())]);
    }

    #[test]
    fn a_csv_without_an_email_column_is_refused() {
        let e = parse_csv(b"mail,name\na@b.c,A\n")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("email"), "{e}");
    }

    #[test]
    fn only_the_operators_actions_have_names() {
        assert_eq!(campaign_action("pause"), Some(CampaignAction::Pause));
        assert_eq!(campaign_action("resume"), Some(CampaignAction::Resume));
        assert_eq!(campaign_action("cancel"), Some(CampaignAction::Cancel));
        assert_eq!(campaign_action("start"), None);
        assert_eq!(campaign_action("finish"), None);
    }

    #[test]
    fn a_confirmed_subscriber_or_a_single_opt_in_list_starts_active() {
        let mut list = List {
            id: ListId(1),
            name: "news".into(),
            from_address: "news@example.com".into(),
            from_name: String::new(),
            double_opt_in: true,
            created: 0,
        };
        assert_eq!(added_status(&list, false), SubscriberStatus::Unconfirmed);
        assert_eq!(added_status(&list, true), SubscriberStatus::Active);
        list.double_opt_in = false;
        assert_eq!(added_status(&list, false), SubscriberStatus::Active);
    }
}
