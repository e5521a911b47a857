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
    CampaignAction, CampaignId, CampaignState, HistoryRef, List, ListId, NewCampaign, NewStep,
    NewSubscriber, Newsletters, Outcome, SequenceId, StepId, StoreError, Subscriber, SubscriberId,
    SubscriberStatus,
};

/// A field of an admin request, so each face can name it its own way (a JSON key, a
/// command-line flag) in the one message the rule words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    ListName,
    FromAddress,
    SendMinute,
}

impl Field {
    /// The field's key in the JSON API's request bodies.
    pub fn key(self) -> &'static str {
        match self {
            Field::ListName => "name",
            Field::FromAddress => "from_address",
            Field::SendMinute => "send_minute",
        }
    }

    /// The command line's word for it (`tegami list add NAME --from ...`).
    pub fn flag(self) -> &'static str {
        match self {
            Field::ListName => "the list name",
            Field::FromAddress => "--from",
            Field::SendMinute => "--at",
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

fn parse_csv(text: &[u8]) -> Result<ParsedCsv> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text);
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| {
            AdminError::Unreadable(format!(
                "the CSV file has no header row (email,name,...): {e}"
            ))
        })?
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
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
}

/// Schedules a campaign to every active subscriber of its list.
pub fn campaign_add(
    store: &dyn Newsletters,
    request: CampaignRequest,
    default_rate: u32,
    now: i64,
) -> Result<CampaignId> {
    let list = store.list(&request.list)?;
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
    })?)
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
) -> Result<CampaignState> {
    let transition = store.campaign_apply(id, action)?;
    match transition.refusal(id, action) {
        Some(refused) => Err(AdminError::Refused(refused)),
        None => Ok(action.target()),
    }
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
