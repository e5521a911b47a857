//! `Newsletters` for SQLite: lists, subscribers, campaigns, sequences and steps, the
//! exactly-once enqueueing of rendered mail and the step-mail schedule.
//!
//! History (bitmaps, daily totals, raw events) is in `history.rs`; this file records into
//! it from inside its own writer requests, so a status change or a bounce and its history
//! commit together.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use roaring::RoaringBitmap;
use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteStore;
use super::history::{self, bump_daily, insert_event, load_set, member, record_in, save_set};
use super::queue::{Envelope, insert_queued, snapshot};
use super::suppressions::{suppress_in, suppressed_in};
use crate::{
    BouncePolicy, BounceRouter, Campaign, CampaignAction, CampaignEdit, CampaignId, CampaignState,
    DailyTotal, Edited, HistoryEvent, HistoryRef, ImportCounts, List, ListId, Mail, NewCampaign,
    NewStep, NewSubscriber, Newsletters, Otherwise, Outcome, Result, Segment, Sequence, SequenceId,
    Step, StepCondition, StepId, StoreError, Subscriber, SubscriberId, SubscriberStatus,
    Suppression, SuppressionReason, Transition, suppression_key,
};

/// Rows per transaction in an import: big enough to share the fsync, small enough not to
/// hold the writer for long.
const IMPORT_BATCH: usize = 1000;

const LIST_COLUMNS: &str = "id, name, from_address, from_name, double_opt_in, created";
const SUBSCRIBER_COLUMNS: &str = "id, list_id, email, name, attributes, status, created, \
     confirmed, hard_bounces, soft_bounces";

/// A campaign's next subscribers after a cursor, in id order. `+list_id` keeps the planner
/// off the (list, email) index: through it every batch would gather and sort the whole list
/// again; walking the rowids from the cursor reads each subscriber once per campaign.
const PENDING_WHERE: &str = "WHERE +list_id IN (SELECT value FROM json_each(?1))
         AND status = 'active' AND id > ?2 ORDER BY id";
/// The last two are the segment's lines and the other lists' ids, comma-separated in order.
const CAMPAIGN_COLUMNS: &str = "id, list_id, subject, text, html, send_at, state, \
     rate_per_second, rate_per_domain, created, segment, \
     (SELECT group_concat(list_id) FROM (SELECT list_id FROM nl_campaign_lists \
      WHERE campaign_id = nl_campaigns.id ORDER BY position))";
const SEQUENCE_COLUMNS: &str = "id, list_id, name, time_zone, join_existing, created";
const STEP_COLUMNS: &str =
    "id, sequence_id, position, days_after, send_minute, subject, text, html, condition, otherwise";

/// Lists as a JSON array of ids, for `IN (SELECT value FROM json_each(?))`: one prepared
/// statement for any number of lists.
fn list_ids_json(lists: &[ListId]) -> String {
    let ids: Vec<String> = lists.iter().map(|l| l.0.to_string()).collect();
    format!("[{}]", ids.join(","))
}

/// The history sets a segment reads, each loaded once.
fn segment_sets(
    conn: &Connection,
    segment: &Segment,
) -> Result<BTreeMap<(CampaignId, Outcome), RoaringBitmap>> {
    let mut sets = BTreeMap::new();
    for (campaign, outcome) in segment.sets() {
        sets.insert(
            (campaign, outcome),
            load_set(conn, HistoryRef::Campaign(campaign), outcome)?,
        );
    }
    Ok(sets)
}

/// Whether `subscriber` (active, matching) is the one row of its address that a campaign
/// to `lists` mails: no row of the same address (in any case) on those lists is done
/// already, and none on an earlier list is active and matching. SQLite's NOCASE, which the
/// lists' unique index uses too, folds ASCII only, as the lists themselves do.
fn first_of_address(
    conn: &Connection,
    subscriber: &Subscriber,
    lists: &[ListId],
    segment: &Segment,
    sets: &BTreeMap<(CampaignId, Outcome), RoaringBitmap>,
    done: &RoaringBitmap,
) -> Result<bool> {
    let rank = |list: ListId| lists.iter().position(|l| *l == list);
    let mine = rank(subscriber.list);
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SUBSCRIBER_COLUMNS} FROM nl_subscribers
         WHERE list_id IN (SELECT value FROM json_each(?1)) AND email = ?2 COLLATE NOCASE
             AND id != ?3"
    ))?;
    let mut rows = stmt.query(params![
        list_ids_json(lists),
        subscriber.email,
        subscriber.id.0
    ])?;
    while let Some(row) = rows.next()? {
        let other = subscriber_row(row)?;
        if u32::try_from(other.id.0).is_ok_and(|id| done.contains(id)) {
            return Ok(false);
        }
        if rank(other.list) < mine
            && other.status == SubscriberStatus::Active
            && segment.matches(&other, sets)
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A campaign's state, read in the writer's transaction before a move or an edit decides
/// whether it may happen.
fn campaign_state(conn: &Connection, id: CampaignId) -> Result<CampaignState> {
    conn.query_row(
        "SELECT state FROM nl_campaigns WHERE id = ?1",
        [id.0],
        |row| {
            let state: String = row.get(0)?;
            CampaignState::parse(&state)
                .ok_or_else(|| bad_column(0, format!("unknown campaign state '{state}'")))
        },
    )
    .optional()?
    .ok_or_else(|| not_found(format!("campaign {}", id.0)))
}

fn bad_column(index: usize, what: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, what.into())
}

fn list_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<List> {
    Ok(List {
        id: ListId(r.get(0)?),
        name: r.get(1)?,
        from_address: r.get(2)?,
        from_name: r.get(3)?,
        double_opt_in: r.get(4)?,
        created: r.get(5)?,
    })
}

fn subscriber_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Subscriber> {
    let attributes: String = r.get(4)?;
    let status: String = r.get(5)?;
    Ok(Subscriber {
        id: SubscriberId(r.get(0)?),
        list: ListId(r.get(1)?),
        email: r.get(2)?,
        name: r.get(3)?,
        attributes: decode_attributes(&attributes),
        status: SubscriberStatus::parse(&status)
            .ok_or_else(|| bad_column(5, format!("unknown subscriber status '{status}'")))?,
        created: r.get(6)?,
        confirmed: r.get(7)?,
        hard_bounces: r.get(8)?,
        soft_bounces: r.get(9)?,
    })
}

fn campaign_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Campaign> {
    let state: String = r.get(6)?;
    let segment: String = r.get(10)?;
    let also: Option<String> = r.get(11)?;
    Ok(Campaign {
        id: CampaignId(r.get(0)?),
        list: ListId(r.get(1)?),
        subject: r.get(2)?,
        text: r.get(3)?,
        html: r.get(4)?,
        send_at: r.get(5)?,
        state: CampaignState::parse(&state)
            .ok_or_else(|| bad_column(6, format!("unknown campaign state '{state}'")))?,
        rate_per_second: r.get(7)?,
        rate_per_domain: r.get(8)?,
        created: r.get(9)?,
        segment: Segment::parse_lines(&segment).map_err(|e| bad_column(10, e))?,
        also: also
            .unwrap_or_default()
            .split(',')
            .filter(|id| !id.is_empty())
            .map(|id| {
                id.parse()
                    .map(ListId)
                    .map_err(|_| bad_column(11, format!("bad list id '{id}'")))
            })
            .collect::<rusqlite::Result<_>>()?,
    })
}

fn sequence_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Sequence> {
    Ok(Sequence {
        id: SequenceId(r.get(0)?),
        list: ListId(r.get(1)?),
        name: r.get(2)?,
        time_zone: r.get(3)?,
        join_existing: r.get(4)?,
        created: r.get(5)?,
    })
}

fn step_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Step> {
    Ok(Step {
        id: StepId(r.get(0)?),
        sequence: SequenceId(r.get(1)?),
        position: r.get(2)?,
        days_after: r.get(3)?,
        send_minute: r.get(4)?,
        subject: r.get(5)?,
        text: r.get(6)?,
        html: r.get(7)?,
        condition: {
            let text: String = r.get(8)?;
            if text.is_empty() {
                None
            } else {
                Some(StepCondition::parse(&text).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(8, Type::Text, e.into())
                })?)
            }
        },
        otherwise: Otherwise::parse(&r.get::<_, String>(9)?).unwrap_or_default(),
    })
}

/// Attributes as text: one `key\tvalue` per line, with `\\`, `\t` and `\n` escaped. The
/// store has no JSON dependency and needs none for a flat map of strings.
fn encode_attributes(attributes: &BTreeMap<String, String>) -> String {
    fn escape(out: &mut String, s: &str) {
        for c in s.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
    }
    let mut out = String::new();
    for (key, value) in attributes {
        escape(&mut out, key);
        out.push('\t');
        escape(&mut out, value);
        out.push('\n');
    }
    out
}

fn decode_attributes(text: &str) -> BTreeMap<String, String> {
    fn unescape(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        }
        out
    }
    text.lines()
        .filter_map(|line| line.split_once('\t'))
        .map(|(k, v)| (unescape(k), unescape(v)))
        .collect()
}

/// An address as stored: trimmed, domain in lower case; `Invalid` with the reason if it is
/// not one (see [`crate::check_address`]).
fn normalize_email(email: &str) -> Result<String> {
    crate::check_address(email).map_err(StoreError::Invalid)
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

fn not_found(what: String) -> StoreError {
    StoreError::NotFound { what }
}

/// Inserts one subscriber; `Ok(None)` when its address is already on the list.
fn insert_subscriber(
    conn: &Connection,
    list: ListId,
    email: &str,
    row: &NewSubscriber,
    now: i64,
) -> Result<Option<SubscriberId>> {
    let confirmed = (row.status == SubscriberStatus::Active).then_some(now);
    let inserted = conn
        .prepare_cached(
            "INSERT INTO nl_subscribers (list_id, email, name, attributes, status, created, confirmed)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            list.0,
            email,
            row.name,
            encode_attributes(&row.attributes),
            row.status.as_str(),
            now,
            confirmed
        ]);
    match inserted {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let id = conn.last_insert_rowid();
    // Ids are the members of 32-bit history bitmaps; four billion subscribers are far
    // away, but a wrong id would be silent, so refuse instead (the request rolls back).
    if u32::try_from(id).is_err() {
        return Err(StoreError::Invalid(
            "subscriber ids are exhausted (the history bitmaps hold 32-bit ids)".into(),
        ));
    }
    Ok(Some(SubscriberId(id)))
}

fn subscriber_in(conn: &Connection, id: SubscriberId) -> Result<Subscriber> {
    conn.prepare_cached(&format!(
        "SELECT {SUBSCRIBER_COLUMNS} FROM nl_subscribers WHERE id = ?1"
    ))?
    .query_row([id.0], subscriber_row)
    .optional()?
    .ok_or_else(|| not_found(format!("subscriber {}", id.0)))
}

/// The body of [`Newsletters::bounce`], for use inside any writer request (the queue's
/// settlement records the failures it learns with it).
pub(super) fn bounce_in(
    conn: &Connection,
    about: HistoryRef,
    subscriber: SubscriberId,
    hard: bool,
    detail: Option<&str>,
    policy: BouncePolicy,
    now: i64,
) -> Result<Subscriber> {
    subscriber_in(conn, subscriber)?;
    let outcome = if hard {
        Outcome::HardBounce
    } else {
        Outcome::SoftBounce
    };
    record_in(conn, about, subscriber, outcome, detail, now)?;
    let disable = if hard {
        conn.execute(
            "UPDATE nl_subscribers SET hard_bounces = hard_bounces + 1 WHERE id = ?1",
            [subscriber.0],
        )?;
        let hard_bounces: u32 = conn.query_row(
            "SELECT hard_bounces FROM nl_subscribers WHERE id = ?1",
            [subscriber.0],
            |r| r.get(0),
        )?;
        policy.hard_limit > 0 && hard_bounces >= policy.hard_limit
    } else {
        conn.execute(
            "UPDATE nl_subscribers SET soft_bounces = soft_bounces + 1 WHERE id = ?1",
            [subscriber.0],
        )?;
        policy.soft_limit > 0
            && soft_bounced_mails(conn, subscriber, policy.soft_days, now)? >= policy.soft_limit
    };
    if disable {
        // An unsubscribed address stays unsubscribed: that was the reader's choice.
        conn.execute(
            "UPDATE nl_subscribers SET status = 'bounced'
             WHERE id = ?1 AND status IN ('active', 'unconfirmed')",
            [subscriber.0],
        )?;
        // The first feed of the suppression list: an address that bounced enough to be
        // disabled on this list cannot take mail on any other either, and a mailbox
        // provider counts every further attempt against our reputation. Even when this
        // subscriber had unsubscribed, the address itself is bad.
        let email: String = conn.query_row(
            "SELECT email FROM nl_subscribers WHERE id = ?1",
            [subscriber.0],
            |r| r.get(0),
        )?;
        let note = format!(
            "{} {}: {}",
            about.kind(),
            about.id(),
            detail.unwrap_or(if hard { "hard bounce" } else { "soft bounces" })
        );
        suppress_in(
            conn,
            &suppression_key(&email),
            SuppressionReason::Bounced,
            Some(&note),
            now,
        )?;
    }
    subscriber_in(conn, subscriber)
}

/// The body of [`Newsletters::complaint`]. The second feed of the suppression list: a
/// reader who reported our mail as spam must get nothing more from this server, on any
/// list; mailbox providers stop delivering for senders who keep mailing complainers.
fn complaint_in(
    conn: &Connection,
    about: HistoryRef,
    subscriber: SubscriberId,
    detail: Option<&str>,
    now: i64,
) -> Result<Subscriber> {
    let found = subscriber_in(conn, subscriber)?;
    record_in(conn, about, subscriber, Outcome::Complaint, detail, now)?;
    let note = format!("{} {}: complaint", about.kind(), about.id());
    suppress_in(
        conn,
        &suppression_key(&found.email),
        SuppressionReason::Complained,
        Some(&note),
        now,
    )?;
    Ok(found)
}

/// How many different campaigns or steps the subscriber soft-bounced on, among those with
/// soft bounces on the last `days` days (today included). The daily totals name those
/// mails (a few rows a day) and their soft-bounce sets say whether this subscriber is
/// among them, so no row per bounce is kept or scanned.
fn soft_bounced_mails(
    conn: &Connection,
    subscriber: SubscriberId,
    days: u32,
    now: i64,
) -> Result<u32> {
    let since = history::day_of(now) - i64::from(days.max(1)) + 1;
    let mails: Vec<(String, i64)> = conn
        .prepare_cached(
            "SELECT DISTINCT kind, ref FROM history_daily WHERE day >= ?1 AND outcome = ?2",
        )?
        .query_map(params![since, Outcome::SoftBounce.as_str()], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let id = member(subscriber)?;
    let mut count = 0;
    for (kind, reference) in mails {
        let Some(about) = HistoryRef::from_parts(&kind, reference) else {
            continue;
        };
        if load_set(conn, about, Outcome::SoftBounce)?.contains(id) {
            count += 1;
        }
    }
    Ok(count)
}

/// Refuses a campaign's lists when one is named twice (the store's own guard; the faces
/// name the list in their words first).
fn distinct_lists(first: ListId, also: &[ListId]) -> Result<()> {
    let mut seen = vec![first];
    for list in also {
        if seen.contains(list) {
            return Err(StoreError::Invalid(format!(
                "list {} is named twice for one campaign",
                list.0
            )));
        }
        seen.push(*list);
    }
    Ok(())
}

/// Writes a campaign's lists after its first, in order.
fn other_lists(conn: &Connection, id: CampaignId, also: &[ListId]) -> Result<()> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO nl_campaign_lists (campaign_id, position, list_id) VALUES (?1, ?2, ?3)",
    )?;
    for (position, list) in also.iter().enumerate() {
        insert.execute(params![id.0, position as i64, list.0])?;
    }
    Ok(())
}

fn list_exists(conn: &Connection, list: ListId) -> Result<()> {
    let found: Option<i64> = conn
        .prepare_cached("SELECT id FROM nl_lists WHERE id = ?1")?
        .query_row([list.0], |r| r.get(0))
        .optional()?;
    found
        .map(|_| ())
        .ok_or_else(|| not_found(format!("list {}", list.0)))
}

fn steps_of(conn: &Connection, sequence: SequenceId) -> Result<Vec<Step>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {STEP_COLUMNS} FROM nl_steps WHERE sequence_id = ?1 ORDER BY position"
        ))?
        .query_map([sequence.0], step_row)?
        .collect::<rusqlite::Result<_>>()?)
}

fn time_zone(name: &str) -> Result<TimeZone> {
    TimeZone::get(name).map_err(|e| StoreError::Invalid(format!("time zone '{name}': {e}")))
}

/// When a step is due for a subscriber who started at `start`: `days_after` calendar days
/// after the start's date in the zone, at `send_minute` there (a minute that a DST change
/// skips is taken as the one after the gap, as jiff's "compatible" rule does).
fn due_at(zone: &TimeZone, start: i64, step: &Step) -> Result<i64> {
    let invalid = |e: jiff::Error| StoreError::Invalid(format!("step {} timing: {e}", step.id.0));
    let date = Timestamp::from_second(start)
        .map_err(invalid)?
        .to_zoned(zone.clone())
        .date()
        .checked_add(i64::from(step.days_after).days())
        .map_err(invalid)?;
    let minute = i8::try_from(step.send_minute % 60).unwrap_or(0);
    let hour = i8::try_from(step.send_minute / 60).unwrap_or(0);
    let due = date
        .at(hour, minute, 0, 0)
        .to_zoned(zone.clone())
        .map_err(invalid)?;
    Ok(due.timestamp().as_second())
}

/// Every sequence, oldest first.
fn all_sequences(conn: &Connection) -> Result<Vec<Sequence>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {SEQUENCE_COLUMNS} FROM nl_sequences ORDER BY id"
        ))?
        .query_map([], sequence_row)?
        .collect::<rusqlite::Result<_>>()?)
}

/// Which due steps [`due_steps`] looks for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Due {
    /// Steps to send: no condition, or one that holds.
    Send,
    /// Steps to pass over: a condition that does not hold, on a step that says skip.
    Skip,
}

/// The (step, subscriber) pairs due at `now`, at most `limit`, of the kind asked for. A
/// subscriber's next step is the first it has not been sent, suppressed for or skipped;
/// it is due once its start + `days_after` days at `send_minute` in the sequence's zone
/// has come. A step whose condition does not hold is neither sent nor skipped while it
/// says wait: the subscriber stays there.
fn due_steps(
    conn: &Connection,
    now: i64,
    limit: usize,
    want: Due,
) -> Result<Vec<(Step, SubscriberId)>> {
    let sequences = all_sequences(conn)?;
    let mut due: Vec<(Step, SubscriberId)> = Vec::new();
    for sequence in sequences {
        if due.len() >= limit {
            break;
        }
        let steps = steps_of(conn, sequence.id)?;
        // Only a step with a condition that says skip can pass anyone over: a sequence
        // without one is not scanned for skips at all.
        let skips = steps
            .iter()
            .any(|s| s.condition.is_some() && s.otherwise == Otherwise::Skip);
        if steps.is_empty() || (want == Due::Skip && !skips) {
            continue;
        }
        let existing_upto: i64 = conn
            .prepare_cached("SELECT existing_upto FROM nl_sequences WHERE id = ?1")?
            .query_row([sequence.id.0], |r| r.get(0))?;
        let zone = match time_zone(&sequence.time_zone) {
            Ok(zone) => zone,
            Err(e) => {
                tracing::warn!(sequence = sequence.id.0, error = %e, "sequence skipped");
                continue;
            }
        };
        // One bitmap per step, read once per call: the whole schedule of a list is then
        // one scan of its active subscribers. A step is done for a subscriber once queued,
        // found suppressed when it was to be queued, or passed over by its condition.
        let done: Vec<RoaringBitmap> = steps
            .iter()
            .map(|s| {
                let about = HistoryRef::Step(s.id);
                Ok(load_set(conn, about, Outcome::Sent)?
                    | load_set(conn, about, Outcome::Suppressed)?
                    | load_set(conn, about, Outcome::Skipped)?)
            })
            .collect::<Result<_>>()?;
        // The set each condition reads, also once per call.
        let conditions: Vec<Option<(StepCondition, RoaringBitmap)>> = steps
            .iter()
            .map(|s| {
                s.condition
                    .map(|c| Ok((c, load_set(conn, HistoryRef::Step(c.step), c.outcome)?)))
                    .transpose()
            })
            .collect::<Result<_>>()?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, coalesce(confirmed, created) FROM nl_subscribers
             WHERE list_id = ?1 AND status = 'active' ORDER BY id",
        )?;
        let mut rows = stmt.query([sequence.list.0])?;
        while due.len() < limit {
            let Some(row) = rows.next()? else { break };
            let id: i64 = row.get(0)?;
            let mut start: i64 = row.get(1)?;
            // On the list and started when the sequence was made: an existing subscriber,
            // who joins only if asked to.
            if id <= existing_upto && start <= sequence.created {
                if !sequence.join_existing {
                    continue;
                }
                start = sequence.created;
            }
            let Ok(bit) = u32::try_from(id) else { continue };
            // The first step not done yet: the ones before it all are, so steps go out in
            // order and never twice.
            let Some(next) = done.iter().position(|s| !s.contains(bit)) else {
                continue;
            };
            let step = &steps[next];
            if due_at(&zone, start, step)? > now {
                continue;
            }
            let holds = conditions[next]
                .as_ref()
                .is_none_or(|(c, set)| c.holds(set.contains(bit)));
            let wanted = match want {
                Due::Send => holds,
                Due::Skip => !holds && step.otherwise == Otherwise::Skip,
            };
            if wanted {
                due.push((step.clone(), SubscriberId(id)));
            }
        }
    }
    Ok(due)
}

/// The wall clock, for the queue rows of [`Newsletters::enqueue_mails`].
fn wall_clock() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl SqliteStore {
    fn list_by_name(&self, name: &str) -> Result<List> {
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {LIST_COLUMNS} FROM nl_lists WHERE name = ?1"
            ))?
            .query_row([name], list_row)
            .optional()?
            .ok_or_else(|| not_found(format!("list '{name}'")))
        })
    }
}

impl Newsletters for SqliteStore {
    fn list_add(
        &self,
        name: &str,
        from_address: &str,
        from_name: &str,
        double_opt_in: bool,
        now: i64,
    ) -> Result<ListId> {
        let name = name.trim().to_string();
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(StoreError::Invalid(format!(
                "'{name}' is not a list name (no spaces, not empty)"
            )));
        }
        let from_address = normalize_email(from_address)?;
        let from_name = from_name.trim().to_string();
        self.write(move |ctx| {
            let inserted = ctx.conn.execute(
                "INSERT INTO nl_lists (name, from_address, from_name, double_opt_in, created)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![name, from_address, from_name, double_opt_in, now],
            );
            match inserted {
                Ok(_) => Ok(ListId(ctx.conn.last_insert_rowid())),
                Err(e) if is_unique_violation(&e) => Err(StoreError::AlreadyExists {
                    what: format!("list '{name}'"),
                }),
                Err(e) => Err(e.into()),
            }
        })
    }

    fn lists(&self) -> Result<Vec<List>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {LIST_COLUMNS} FROM nl_lists ORDER BY name"
                ))?
                .query_map([], list_row)?
                .collect::<rusqlite::Result<_>>()?)
        })
    }

    fn list(&self, name: &str) -> Result<List> {
        self.list_by_name(name.trim())
    }

    fn list_by_id(&self, id: ListId) -> Result<List> {
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {LIST_COLUMNS} FROM nl_lists WHERE id = ?1"
            ))?
            .query_row([id.0], list_row)
            .optional()?
            .ok_or_else(|| not_found(format!("list {}", id.0)))
        })
    }

    fn list_remove(&self, name: &str) -> Result<()> {
        let list = self.list_by_name(name.trim())?;
        self.write(move |ctx| {
            let conn = ctx.conn;
            let campaigns: Vec<i64> = conn
                .prepare("SELECT id FROM nl_campaigns WHERE list_id = ?1")?
                .query_map([list.id.0], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            for id in campaigns {
                history::forget(conn, HistoryRef::Campaign(CampaignId(id)))?;
            }
            let steps: Vec<i64> = conn
                .prepare(
                    "SELECT s.id FROM nl_steps s JOIN nl_sequences q ON q.id = s.sequence_id
                     WHERE q.list_id = ?1",
                )?
                .query_map([list.id.0], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            for id in steps {
                history::forget(conn, HistoryRef::Step(StepId(id)))?;
            }
            // Subscribers, campaigns, sequences and steps go by ON DELETE CASCADE.
            conn.execute("DELETE FROM nl_lists WHERE id = ?1", [list.id.0])?;
            Ok(())
        })
    }

    fn subscriber_add(
        &self,
        list: ListId,
        subscriber: NewSubscriber,
        now: i64,
    ) -> Result<SubscriberId> {
        let email = normalize_email(&subscriber.email)?;
        self.write(move |ctx| {
            list_exists(ctx.conn, list)?;
            insert_subscriber(ctx.conn, list, &email, &subscriber, now)?.ok_or_else(|| {
                StoreError::AlreadyExists {
                    what: format!("subscriber '{email}'"),
                }
            })
        })
    }

    fn subscriber_import(
        &self,
        list: ListId,
        rows: Vec<NewSubscriber>,
        now: i64,
    ) -> Result<ImportCounts> {
        let mut counts = ImportCounts::default();
        let mut valid = Vec::with_capacity(rows.len());
        for (index, row) in rows.into_iter().enumerate() {
            match normalize_email(&row.email) {
                Ok(email) => valid.push((email, row)),
                Err(e) => counts.invalid.push((index, e.to_string())),
            }
        }
        self.read(|conn| list_exists(conn, list))?;
        let mut rows = valid.into_iter().peekable();
        while rows.peek().is_some() {
            let batch: Vec<_> = rows.by_ref().take(IMPORT_BATCH).collect();
            let (added, present) = self.write(move |ctx| {
                list_exists(ctx.conn, list)?;
                let (mut added, mut present) = (0u64, 0u64);
                for (email, row) in &batch {
                    match insert_subscriber(ctx.conn, list, email, row, now)? {
                        Some(_) => added += 1,
                        None => present += 1,
                    }
                }
                Ok((added, present))
            })?;
            counts.added += added;
            counts.present += present;
        }
        Ok(counts)
    }

    fn subscribers(
        &self,
        list: ListId,
        after: Option<SubscriberId>,
        limit: usize,
    ) -> Result<Vec<Subscriber>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {SUBSCRIBER_COLUMNS} FROM nl_subscribers
                     WHERE list_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
                ))?
                .query_map(
                    params![list.0, after.map_or(0, |a| a.0), limit],
                    subscriber_row,
                )?
                .collect::<rusqlite::Result<_>>()?)
        })
    }

    fn subscriber(&self, id: SubscriberId) -> Result<Subscriber> {
        self.read(|conn| subscriber_in(conn, id))
    }

    fn subscriber_by_email(&self, list: ListId, email: &str) -> Result<Subscriber> {
        let email = email.trim();
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {SUBSCRIBER_COLUMNS} FROM nl_subscribers
                 WHERE list_id = ?1 AND email = ?2 COLLATE NOCASE"
            ))?
            .query_row(params![list.0, email], subscriber_row)
            .optional()?
            .ok_or_else(|| not_found(format!("subscriber '{email}'")))
        })
    }

    fn subscriber_set_status(
        &self,
        id: SubscriberId,
        status: SubscriberStatus,
        from: Option<HistoryRef>,
        now: i64,
    ) -> Result<()> {
        self.write(move |ctx| {
            let conn = ctx.conn;
            subscriber_in(conn, id)?;
            conn.prepare_cached(
                "UPDATE nl_subscribers SET status = ?2,
                     confirmed = CASE WHEN ?2 = 'active' THEN coalesce(confirmed, ?3)
                                      ELSE confirmed END
                 WHERE id = ?1",
            )?
            .execute(params![id.0, status.as_str(), now])?;
            if status == SubscriberStatus::Unsubscribed {
                match from {
                    Some(about) => {
                        record_in(conn, about, id, Outcome::Unsubscribe, None, now)?;
                    }
                    None => insert_event(
                        conn,
                        now,
                        None,
                        Some(id),
                        Outcome::Unsubscribe.as_str(),
                        None,
                    )?,
                }
            }
            Ok(())
        })
    }

    fn subscriber_remove(&self, id: SubscriberId) -> Result<()> {
        self.write(move |ctx| {
            let removed = ctx
                .conn
                .execute("DELETE FROM nl_subscribers WHERE id = ?1", [id.0])?;
            if removed == 0 {
                return Err(not_found(format!("subscriber {}", id.0)));
            }
            Ok(())
        })
    }

    fn subscriber_counts(&self, list: ListId) -> Result<BTreeMap<&'static str, u64>> {
        self.read(|conn| {
            let mut counts: BTreeMap<&'static str, u64> = SubscriberStatus::ALL
                .iter()
                .map(|s| (s.as_str(), 0))
                .collect();
            let mut stmt = conn.prepare_cached(
                "SELECT status, count(*) FROM nl_subscribers WHERE list_id = ?1 GROUP BY status",
            )?;
            let mut rows = stmt.query([list.0])?;
            while let Some(row) = rows.next()? {
                let status: String = row.get(0)?;
                if let Some(status) = SubscriberStatus::parse(&status) {
                    counts.insert(status.as_str(), row.get(1)?);
                }
            }
            Ok(counts)
        })
    }

    fn campaign_add(&self, campaign: NewCampaign) -> Result<CampaignId> {
        distinct_lists(campaign.list, &campaign.also)?;
        self.write(move |ctx| {
            list_exists(ctx.conn, campaign.list)?;
            for list in &campaign.also {
                list_exists(ctx.conn, *list)?;
            }
            ctx.conn.execute(
                "INSERT INTO nl_campaigns (list_id, subject, text, html, send_at, state,
                     rate_per_second, rate_per_domain, created, segment)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    campaign.list.0,
                    campaign.subject,
                    campaign.text,
                    campaign.html,
                    campaign.send_at,
                    campaign.state.as_str(),
                    campaign.rate_per_second,
                    campaign.rate_per_domain,
                    campaign.created,
                    campaign.segment.to_lines()
                ],
            )?;
            let id = ctx.conn.last_insert_rowid();
            other_lists(ctx.conn, CampaignId(id), &campaign.also)?;
            Ok(CampaignId(id))
        })
    }

    fn campaign_work_at(&self) -> Result<Option<i64>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT min(CASE state WHEN 'sending' THEN -9223372036854775808 ELSE send_at END)
                     FROM nl_campaigns WHERE state IN ('scheduled', 'sending')",
                )?
                .query_row([], |r| r.get(0))?)
        })
    }

    fn campaigns(&self) -> Result<Vec<Campaign>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {CAMPAIGN_COLUMNS} FROM nl_campaigns ORDER BY id DESC"
                ))?
                .query_map([], campaign_row)?
                .collect::<rusqlite::Result<_>>()?)
        })
    }

    fn campaign(&self, id: CampaignId) -> Result<Campaign> {
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {CAMPAIGN_COLUMNS} FROM nl_campaigns WHERE id = ?1"
            ))?
            .query_row([id.0], campaign_row)
            .optional()?
            .ok_or_else(|| not_found(format!("campaign {}", id.0)))
        })
    }

    fn campaign_apply(
        &self,
        id: CampaignId,
        action: CampaignAction,
        now: i64,
    ) -> Result<Transition> {
        self.write(move |ctx| {
            // Read and conditional update in the writer's one transaction: nothing else
            // writes in between, and the UPDATE's own condition says so a second time.
            let from = campaign_state(ctx.conn, id)?;
            if !action.allowed_from().contains(&from) {
                return Ok(Transition::Refused { current: from });
            }
            let to = action.target();
            let changed = ctx.conn.execute(
                "UPDATE nl_campaigns SET state = ?2 WHERE id = ?1 AND state = ?3",
                params![id.0, to.as_str(), from.as_str()],
            )?;
            debug_assert_eq!(changed, 1);
            // The action log says who moved the campaign and when, in the same
            // transaction as the move, whichever face or the sender asked for it.
            insert_event(
                ctx.conn,
                now,
                Some(HistoryRef::Campaign(id)),
                None,
                "action",
                Some(&format!(
                    "{}: {} -> {}",
                    action.as_str(),
                    from.as_str(),
                    to.as_str()
                )),
            )?;
            Ok(Transition::Moved { from, to })
        })
    }

    fn campaign_edit(&self, id: CampaignId, edit: CampaignEdit, now: i64) -> Result<Edited> {
        if let Some((first, also)) = &edit.lists {
            distinct_lists(*first, also)?;
        }
        self.write(move |ctx| {
            let current = campaign_state(ctx.conn, id)?;
            if !CampaignState::EDITABLE.contains(&current) {
                return Ok(Edited::Refused { current });
            }
            if let Some((first, also)) = &edit.lists {
                for list in std::iter::once(first).chain(also) {
                    list_exists(ctx.conn, *list)?;
                }
                ctx.conn
                    .prepare_cached("DELETE FROM nl_campaign_lists WHERE campaign_id = ?1")?
                    .execute([id.0])?;
                other_lists(ctx.conn, id, also)?;
            }
            let changed: Vec<&str> = [
                ("subject", edit.subject.is_some()),
                ("text", edit.text.is_some()),
                ("html", edit.html.is_some()),
                ("send_at", edit.send_at.is_some()),
                ("rate_per_second", edit.rate_per_second.is_some()),
                ("rate_per_domain", edit.rate_per_domain.is_some()),
                ("lists", edit.lists.is_some()),
                ("segment", edit.segment.is_some()),
            ]
            .into_iter()
            .filter_map(|(name, set)| set.then_some(name))
            .collect();
            // A draft given its start is scheduled: the time is what it was waiting for.
            let to = match (current, edit.send_at) {
                (CampaignState::Draft, Some(_)) => CampaignState::Scheduled,
                _ => current,
            };
            let updated = ctx.conn.execute(
                "UPDATE nl_campaigns SET state = ?9, subject = coalesce(?2, subject),
                     text = coalesce(?3, text), html = coalesce(?4, html),
                     send_at = coalesce(?5, send_at),
                     rate_per_second = coalesce(?6, rate_per_second),
                     rate_per_domain = coalesce(?7, rate_per_domain),
                     list_id = coalesce(?10, list_id), segment = coalesce(?11, segment)
                 WHERE id = ?1 AND state = ?8",
                params![
                    id.0,
                    edit.subject,
                    edit.text,
                    edit.html,
                    edit.send_at,
                    edit.rate_per_second,
                    edit.rate_per_domain,
                    current.as_str(),
                    to.as_str(),
                    edit.lists.as_ref().map(|(first, _)| first.0),
                    edit.segment.as_ref().map(Segment::to_lines)
                ],
            )?;
            debug_assert_eq!(updated, 1);
            let moved = if to == current {
                String::new()
            } else {
                format!("; {} -> {}", current.as_str(), to.as_str())
            };
            insert_event(
                ctx.conn,
                now,
                Some(HistoryRef::Campaign(id)),
                None,
                "action",
                Some(&format!("edit: {}{moved}", changed.join(", "))),
            )?;
            Ok(Edited::Changed)
        })
    }

    fn campaign_pending(
        &self,
        id: CampaignId,
        after: Option<SubscriberId>,
        limit: usize,
    ) -> Result<Vec<Subscriber>> {
        let campaign = self.campaign(id)?;
        let lists = campaign.lists();
        self.read(|conn| {
            snapshot(conn, |conn| {
                // Done: queued, or found suppressed when it was to be queued.
                let mut done = load_set(conn, HistoryRef::Campaign(id), Outcome::Sent)?;
                done |= load_set(conn, HistoryRef::Campaign(id), Outcome::Suppressed)?;
                let sets = segment_sets(conn, &campaign.segment)?;
                // Streams the lists in id order and stops at `limit`: the ones already
                // done are skipped without a query each.
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {SUBSCRIBER_COLUMNS} FROM nl_subscribers {PENDING_WHERE}"
                ))?;
                let mut rows =
                    stmt.query(params![list_ids_json(&lists), after.map_or(0, |a| a.0)])?;
                let mut pending = Vec::new();
                while pending.len() < limit {
                    let Some(row) = rows.next()? else { break };
                    let id: i64 = row.get(0)?;
                    if u32::try_from(id).is_ok_and(|id| done.contains(id)) {
                        continue;
                    }
                    let subscriber = subscriber_row(row)?;
                    if !campaign.segment.matches(&subscriber, &sets) {
                        continue;
                    }
                    if lists.len() > 1
                        && !first_of_address(
                            conn,
                            &subscriber,
                            &lists,
                            &campaign.segment,
                            &sets,
                            &done,
                        )?
                    {
                        continue;
                    }
                    pending.push(subscriber);
                }
                Ok(pending)
            })
        })
    }

    fn segment_count(&self, lists: &[ListId], segment: &Segment) -> Result<u64> {
        self.read(|conn| {
            snapshot(conn, |conn| {
                let sets = segment_sets(conn, segment)?;
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {SUBSCRIBER_COLUMNS} FROM nl_subscribers
                     WHERE list_id IN (SELECT value FROM json_each(?1)) AND status = 'active'"
                ))?;
                let mut rows = stmt.query([list_ids_json(lists)])?;
                let mut count = 0u64;
                // Only a campaign to several lists can meet an address twice.
                let mut seen = std::collections::HashSet::new();
                while let Some(row) = rows.next()? {
                    let subscriber = subscriber_row(row)?;
                    if !segment.matches(&subscriber, &sets) {
                        continue;
                    }
                    if lists.len() > 1 && !seen.insert(subscriber.email.to_ascii_lowercase()) {
                        continue;
                    }
                    count += 1;
                }
                Ok(count)
            })
        })
    }

    fn enqueue_mails(&self, about: HistoryRef, mails: &[Mail], now: i64) -> Result<usize> {
        let mut checked = Vec::with_capacity(mails.len());
        for mail in mails {
            let envelope = Envelope::new(&mail.envelope)?.ok_or_else(|| {
                StoreError::Invalid(format!(
                    "the mail for subscriber {} has no recipient",
                    mail.subscriber.0
                ))
            })?;
            let keys: Vec<String> = mail
                .envelope
                .recipients
                .iter()
                .map(|r| suppression_key(r))
                .collect();
            checked.push((
                member(mail.subscriber)?,
                envelope,
                mail.message.clone(),
                keys,
            ));
        }
        // Queue rows are due at once. A clock ahead of the wall clock (tests that simulate
        // days) must not hold them back from a queue that runs on the wall clock.
        let due = now.min(wall_clock());
        self.write(move |ctx| {
            let conn = ctx.conn;
            let mut sent = load_set(conn, about, Outcome::Sent)?;
            let mut suppressed = load_set(conn, about, Outcome::Suppressed)?;
            // Every recipient of the batch in one lookup (a few, for a big batch), inside
            // the transaction that queues: nothing can be suppressed between the check and
            // the queueing.
            let keys: Vec<String> = checked
                .iter()
                .flat_map(|(_, _, _, keys)| keys.iter().cloned())
                .collect();
            let barred = suppressed_in(conn, &keys)?;
            let mut queued = 0usize;
            let mut skipped = 0u64;
            for (subscriber, envelope, body, keys) in &checked {
                // The ledger: someone in the set is never queued again, whatever crashed
                // between an earlier batch and this one.
                if sent.contains(*subscriber) || suppressed.contains(*subscriber) {
                    continue;
                }
                if keys.iter().any(|k| barred.contains(k)) {
                    suppressed.insert(*subscriber);
                    skipped += 1;
                    continue;
                }
                sent.insert(*subscriber);
                insert_queued(conn, envelope, body, due, true)?;
                queued += 1;
            }
            if queued > 0 {
                save_set(conn, about, Outcome::Sent, &sent)?;
                bump_daily(conn, now, about, Outcome::Sent, queued as u64)?;
            }
            if skipped > 0 {
                save_set(conn, about, Outcome::Suppressed, &suppressed)?;
                bump_daily(conn, now, about, Outcome::Suppressed, skipped)?;
            }
            Ok(queued)
        })
    }

    fn sequence_add(
        &self,
        list: ListId,
        name: &str,
        time_zone_name: &str,
        join_existing: bool,
        now: i64,
    ) -> Result<SequenceId> {
        time_zone(time_zone_name)?;
        let name = name.trim().to_string();
        if name.is_empty() {
            return Err(StoreError::Invalid("a sequence needs a name".into()));
        }
        let zone = time_zone_name.to_string();
        self.write(move |ctx| {
            list_exists(ctx.conn, list)?;
            let inserted = ctx.conn.execute(
                // `existing_upto`: the list's newest subscriber now. Subscribers up to it
                // who had started are the existing ones (ids only grow, so a subscriber
                // added in the same second after the sequence is still new).
                "INSERT INTO nl_sequences (list_id, name, time_zone, join_existing, created,
                                           existing_upto)
                 VALUES (?1, ?2, ?3, ?4, ?5,
                         (SELECT coalesce(max(id), 0) FROM nl_subscribers WHERE list_id = ?1))",
                params![list.0, name, zone, join_existing, now],
            );
            match inserted {
                Ok(_) => Ok(SequenceId(ctx.conn.last_insert_rowid())),
                Err(e) if is_unique_violation(&e) => Err(StoreError::AlreadyExists {
                    what: format!("sequence '{name}'"),
                }),
                Err(e) => Err(e.into()),
            }
        })
    }

    fn step_add(&self, sequence: SequenceId, step: NewStep) -> Result<StepId> {
        if step.send_minute >= 24 * 60 {
            return Err(StoreError::Invalid(format!(
                "send minute {} is not a minute of the day (0-1439)",
                step.send_minute
            )));
        }
        self.write(move |ctx| {
            let conn = ctx.conn;
            let exists: Option<i64> = conn
                .query_row(
                    "SELECT id FROM nl_sequences WHERE id = ?1",
                    [sequence.0],
                    |r| r.get(0),
                )
                .optional()?;
            if exists.is_none() {
                return Err(not_found(format!("sequence {}", sequence.0)));
            }
            // A condition names an earlier step of the same sequence: steps are only ever
            // appended, so every step there is earlier than the new one.
            if let Some(condition) = step.condition {
                let ours: Option<i64> = conn
                    .query_row(
                        "SELECT id FROM nl_steps WHERE id = ?1 AND sequence_id = ?2",
                        params![condition.step.0, sequence.0],
                        |r| r.get(0),
                    )
                    .optional()?;
                if ours.is_none() {
                    return Err(StoreError::Invalid(format!(
                        "step condition '{condition}': step {} is not a step of sequence {}",
                        condition.step.0, sequence.0
                    )));
                }
            }
            conn.execute(
                "INSERT INTO nl_steps (sequence_id, position, days_after, send_minute, subject,
                     text, html, condition, otherwise)
                 VALUES (?1, (SELECT coalesce(max(position), 0) + 1 FROM nl_steps
                              WHERE sequence_id = ?1), ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    sequence.0,
                    step.days_after,
                    step.send_minute,
                    step.subject,
                    step.text,
                    step.html,
                    step.condition.map(|c| c.to_string()).unwrap_or_default(),
                    step.otherwise.as_str()
                ],
            )?;
            Ok(StepId(conn.last_insert_rowid()))
        })
    }

    fn step(&self, id: StepId) -> Result<Step> {
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {STEP_COLUMNS} FROM nl_steps WHERE id = ?1"
            ))?
            .query_row([id.0], step_row)
            .optional()?
            .ok_or_else(|| not_found(format!("step {}", id.0)))
        })
    }

    fn sequences(&self) -> Result<Vec<(Sequence, Vec<Step>)>> {
        self.read(|conn| {
            snapshot(conn, |conn| {
                all_sequences(conn)?
                    .into_iter()
                    .map(|s| Ok((s.clone(), steps_of(conn, s.id)?)))
                    .collect()
            })
        })
    }

    fn sequence_remove(&self, id: SequenceId) -> Result<()> {
        self.write(move |ctx| {
            let conn = ctx.conn;
            for step in steps_of(conn, id)? {
                history::forget(conn, HistoryRef::Step(step.id))?;
            }
            let removed = conn.execute("DELETE FROM nl_sequences WHERE id = ?1", [id.0])?;
            if removed == 0 {
                return Err(not_found(format!("sequence {}", id.0)));
            }
            Ok(())
        })
    }

    fn steps_due(&self, now: i64, limit: usize) -> Result<Vec<(Step, Subscriber)>> {
        self.read(|conn| {
            snapshot(conn, |conn| {
                due_steps(conn, now, limit, Due::Send)?
                    .into_iter()
                    .map(|(step, id)| Ok((step, subscriber_in(conn, id)?)))
                    .collect()
            })
        })
    }

    fn steps_skip_due(&self, now: i64, limit: usize) -> Result<u64> {
        // Found in a snapshot, marked by the writer: the condition is judged when the step
        // is due, and a reader marked skipped is done with the step for good.
        let skipped =
            self.read(|conn| snapshot(conn, |conn| due_steps(conn, now, limit, Due::Skip)))?;
        if skipped.is_empty() {
            return Ok(0);
        }
        self.write(move |ctx| {
            let mut marked = 0;
            for (step, subscriber) in &skipped {
                let about = HistoryRef::Step(step.id);
                if history::mark_in(ctx.conn, about, *subscriber, Outcome::Skipped, now)? {
                    marked += 1;
                }
            }
            Ok(marked)
        })
    }

    fn record(
        &self,
        about: HistoryRef,
        subscriber: SubscriberId,
        outcome: Outcome,
        detail: Option<&str>,
        now: i64,
    ) -> Result<()> {
        self.record_impl(about, subscriber, outcome, detail, now)
    }

    fn record_many(
        &self,
        about: HistoryRef,
        outcome: Outcome,
        subscribers: &[SubscriberId],
        now: i64,
    ) -> Result<u64> {
        let members: Vec<u32> = subscribers
            .iter()
            .map(|&s| member(s))
            .collect::<Result<_>>()?;
        self.write(move |ctx| {
            let mut set = load_set(ctx.conn, about, outcome)?;
            let before = set.len();
            set.extend(members);
            let added = set.len() - before;
            if added > 0 {
                save_set(ctx.conn, about, outcome, &set)?;
                bump_daily(ctx.conn, now, about, outcome, added)?;
            }
            Ok(added)
        })
    }

    fn bounce(
        &self,
        about: HistoryRef,
        subscriber: SubscriberId,
        hard: bool,
        detail: Option<&str>,
        policy: BouncePolicy,
        now: i64,
    ) -> Result<Subscriber> {
        member(subscriber)?;
        let detail = detail.map(str::to_string);
        self.write(move |ctx| {
            bounce_in(
                ctx.conn,
                about,
                subscriber,
                hard,
                detail.as_deref(),
                policy,
                now,
            )
        })
    }

    fn complaint(
        &self,
        about: HistoryRef,
        subscriber: SubscriberId,
        detail: Option<&str>,
        now: i64,
    ) -> Result<Subscriber> {
        member(subscriber)?;
        let detail = detail.map(str::to_string);
        self.write(move |ctx| complaint_in(ctx.conn, about, subscriber, detail.as_deref(), now))
    }

    fn suppress(
        &self,
        address: &str,
        reason: SuppressionReason,
        note: Option<&str>,
        now: i64,
    ) -> Result<bool> {
        self.suppress_impl(address, reason, note, now)
    }

    fn suppress_many(&self, rows: Vec<Suppression>) -> Result<ImportCounts> {
        self.suppress_many_impl(rows)
    }

    fn unsuppress(&self, address: &str) -> Result<()> {
        self.unsuppress_impl(address)
    }

    fn suppression(&self, address: &str) -> Result<Option<Suppression>> {
        self.suppression_impl(address)
    }

    fn suppressed_among(&self, addresses: &[String]) -> Result<std::collections::BTreeSet<String>> {
        self.suppressed_among_impl(addresses)
    }

    fn suppressions(&self, after: Option<&str>, limit: usize) -> Result<Vec<Suppression>> {
        self.suppressions_impl(after, limit)
    }

    fn suppression_count(&self) -> Result<u64> {
        self.suppression_count_impl()
    }

    fn set_bounce_router(&self, router: std::sync::Arc<dyn BounceRouter>) {
        *self
            .bounce_router
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(router);
    }

    fn log_action(&self, about: Option<HistoryRef>, detail: &str, now: i64) -> Result<()> {
        self.log_action_impl(about, detail, now)
    }

    fn received_by(&self, about: HistoryRef, outcome: Outcome) -> Result<Vec<SubscriberId>> {
        self.received_by_impl(about, outcome)
    }

    fn count(&self, about: HistoryRef, outcome: Outcome) -> Result<u64> {
        self.count_impl(about, outcome)
    }

    fn history_of(&self, subscriber: SubscriberId) -> Result<Vec<(HistoryRef, Outcome)>> {
        self.history_of_impl(subscriber)
    }

    fn daily_totals(&self, since_day: i64) -> Result<Vec<DailyTotal>> {
        self.daily_totals_impl(since_day)
    }

    fn events(
        &self,
        about: Option<HistoryRef>,
        since: i64,
        limit: usize,
    ) -> Result<Vec<HistoryEvent>> {
        self.events_impl(about, since, limit)
    }

    fn prune_events(&self, before: i64, batch: usize) -> Result<u64> {
        self.prune_events_impl(before, batch)
    }

    fn history_bytes(&self) -> Result<u64> {
        self.history_bytes_impl()
    }

    fn links(&self, about: HistoryRef) -> Result<Vec<String>> {
        self.links_impl(about)
    }

    fn set_links(&self, about: HistoryRef, urls: &[String]) -> Result<()> {
        self.set_links_impl(about, urls)
    }

    fn click_tally(&self, about: HistoryRef) -> Result<Vec<(String, u64, u64)>> {
        self.click_tally_impl(about)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_campaigns_next_batch_walks_the_rowids_and_sorts_nothing() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut conn).unwrap();
        let mut stmt = conn
            .prepare(&format!(
                "EXPLAIN QUERY PLAN SELECT {SUBSCRIBER_COLUMNS} FROM nl_subscribers {PENDING_WHERE}"
            ))
            .unwrap();
        let plan: Vec<String> = stmt
            .query_map(params!["[1, 2]", 0], |r| r.get(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let plan = plan.join("\n");
        assert!(plan.contains("INTEGER PRIMARY KEY (rowid>?)"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }
}
