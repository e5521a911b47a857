//! A campaign's or a step's report for every face: one CSV row per subscriber the mail
//! reached, with each outcome, and the clicks per link.
//!
//! Who had which outcome comes from the history's sets (one per campaign or step and
//! outcome), which the pruner never touches, so those columns and the totals stay whole for
//! as long as the campaign or step exists. The times, the number of clicks, the bounce's
//! text and the clicks per link come from raw events, which are kept `keep_days` and then
//! pruned: for an older mail they are empty or count only what is left.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use store::{HistoryEvent, HistoryRef, Newsletters, Outcome, StoreError, SubscriberId};

use crate::admin::{AdminError, Result, all_subscribers};

/// The report's columns, in order. The yes/no columns (1 or 0) are the history's sets; the
/// `*_at` columns (RFC 3339, UTC), `clicks` and `bounce_reason` are read from raw events
/// and are empty (or 0) once those are pruned.
pub const COLUMNS: [&str; 23] = [
    "subscriber_id",
    "email",
    "name",
    "status",
    "sent",
    "delivered",
    "deferred",
    "failed",
    "hard_bounce",
    "soft_bounce",
    "opened",
    "clicked",
    "unsubscribed",
    "complained",
    "suppressed",
    "skipped",
    "clicks",
    "opened_at",
    "clicked_at",
    "unsubscribed_at",
    "complained_at",
    "bounced_at",
    "bounce_reason",
];

/// The yes/no columns and the set each reads, in [`COLUMNS`] order.
const FLAGS: [Outcome; 12] = [
    Outcome::Sent,
    Outcome::Delivered,
    Outcome::Deferred,
    Outcome::Failed,
    Outcome::HardBounce,
    Outcome::SoftBounce,
    Outcome::Open,
    Outcome::Click,
    Outcome::Unsubscribe,
    Outcome::Complaint,
    Outcome::Suppressed,
    Outcome::Skipped,
];

/// One link of a mail with its clicks (kept per link and reader, so pruning the raw
/// events loses none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkClicks {
    pub url: String,
    /// Different subscribers who clicked it.
    pub clickers: u64,
    /// Every click on it, repeated ones too.
    pub clicks: u64,
}

/// Raw events read per query.
const PAGE: usize = 5000;

/// Every raw event of `about` still kept, oldest first, read page by page.
pub fn all_events(store: &dyn Newsletters, about: HistoryRef) -> Result<Vec<HistoryEvent>> {
    events_paged(store, about, PAGE)
}

fn events_paged(
    store: &dyn Newsletters,
    about: HistoryRef,
    page: usize,
) -> Result<Vec<HistoryEvent>> {
    let mut all: Vec<HistoryEvent> = Vec::new();
    let mut since = i64::MIN;
    let mut limit = page.max(1);
    loop {
        let page = store.events(Some(about), since, limit)?;
        let full = page.len() == limit;
        // Pages overlap on the second they meet at; events are ordered by (at, id), so
        // what was read already is what has an id at or below the last one of that second.
        let seen = all
            .iter()
            .rev()
            .take_while(|e| e.at == since)
            .map(|e| e.id)
            .max();
        let last_at = page.last().map(|e| e.at);
        all.extend(
            page.into_iter()
                .filter(|e| e.at > since || seen.is_none_or(|seen| e.id > seen)),
        );
        match last_at {
            Some(at) if full => {
                if at == since {
                    // A whole page within one second: read more of it at once next time.
                    limit = limit.saturating_mul(2);
                } else {
                    since = at;
                }
            }
            _ => return Ok(all),
        }
    }
}

/// The mail's links in the order they appear, each with its clicks; a click on a URL the
/// mail's links no longer list (the campaign was edited) is left out.
pub fn link_clicks(store: &dyn Newsletters, about: HistoryRef) -> Result<Vec<LinkClicks>> {
    let links = store.links(about)?;
    if links.is_empty() {
        return Ok(Vec::new());
    }
    Ok(per_link(&links, store.click_tally(about)?))
}

/// One row per distinct link, in the mail's order, with the tally's (url, readers, clicks).
fn per_link(links: &[String], tally: Vec<(String, u64, u64)>) -> Vec<LinkClicks> {
    let tally: HashMap<String, (u64, u64)> = tally
        .into_iter()
        .map(|(url, readers, clicks)| (url, (readers, clicks)))
        .collect();
    // The same URL twice in a mail is one link to a reader, and one row here.
    let mut shown = BTreeSet::new();
    links
        .iter()
        .filter(|url| shown.insert(url.as_str()))
        .map(|url| {
            let (clickers, clicks) = tally.get(url).copied().unwrap_or((0, 0));
            LinkClicks {
                url: url.clone(),
                clickers,
                clicks,
            }
        })
        .collect()
}

/// A subscriber as a row names them; `None` for one removed since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub email: String,
    pub name: String,
    pub status: String,
}

/// The report of a campaign or step as CSV ([`COLUMNS`]), one row per subscriber in any of
/// its sets, in id order; returns the bytes and the number of rows. A subscriber removed
/// since keeps their row under their id, with status "removed" and no address.
pub fn report_csv(store: &dyn Newsletters, about: HistoryRef) -> Result<(Vec<u8>, usize)> {
    let mut sets = BTreeMap::new();
    for outcome in FLAGS {
        let ids: BTreeSet<SubscriberId> = store.received_by(about, outcome)?.into_iter().collect();
        sets.insert(outcome, ids);
    }
    // A campaign to several lists reports each reader under the subscriber it was mailed
    // as (the first list the address is active on), so every list is read.
    let lists = match about {
        HistoryRef::Campaign(id) => store.campaign(id)?.lists(),
        HistoryRef::Step(id) => {
            let step = store.step(id)?;
            vec![
                store
                    .sequences()?
                    .into_iter()
                    .find(|(s, _)| s.id == step.sequence)
                    .map(|(s, _)| s.list)
                    .ok_or_else(|| StoreError::NotFound {
                        what: format!("sequence {}", step.sequence.0),
                    })?,
            ]
        }
    };
    let mut subscribers = Vec::new();
    for list in lists {
        subscribers.extend(all_subscribers(store, list)?);
    }
    let mut people: HashMap<SubscriberId, Person> = subscribers
        .into_iter()
        .map(|s| {
            let person = Person {
                email: s.email,
                name: s.name,
                status: s.status.as_str().to_string(),
            };
            (s.id, person)
        })
        .collect();
    let everyone: BTreeSet<SubscriberId> = sets.values().flatten().copied().collect();
    // Whoever is not on the list now may have moved with a removed list or been removed;
    // one lookup each, only for them.
    for id in &everyone {
        if people.contains_key(id) {
            continue;
        }
        match store.subscriber(*id) {
            Ok(s) => {
                let person = Person {
                    email: s.email,
                    name: s.name,
                    status: s.status.as_str().to_string(),
                };
                people.insert(*id, person);
            }
            Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let events = all_events(store, about)?;
    write_report(&sets, &events, &people)
}

/// Per subscriber, what the raw events still say.
#[derive(Default)]
struct Seen {
    clicks: u64,
    opened: Option<i64>,
    clicked: Option<i64>,
    unsubscribed: Option<i64>,
    complained: Option<i64>,
    bounced: Option<(i64, Option<String>)>,
}

fn write_report(
    sets: &BTreeMap<Outcome, BTreeSet<SubscriberId>>,
    events: &[HistoryEvent],
    people: &HashMap<SubscriberId, Person>,
) -> Result<(Vec<u8>, usize)> {
    let mut seen: HashMap<SubscriberId, Seen> = HashMap::new();
    // Events come oldest first, so the first of each kind is the time kept.
    for e in events {
        let Some(subscriber) = e.subscriber else {
            continue;
        };
        let Some(outcome) = Outcome::parse(&e.event) else {
            continue;
        };
        let s = seen.entry(subscriber).or_default();
        match outcome {
            Outcome::Click => {
                s.clicks += 1;
                s.clicked.get_or_insert(e.at);
            }
            Outcome::Open => {
                s.opened.get_or_insert(e.at);
            }
            Outcome::Unsubscribe => {
                s.unsubscribed.get_or_insert(e.at);
            }
            Outcome::Complaint => {
                s.complained.get_or_insert(e.at);
            }
            Outcome::HardBounce | Outcome::SoftBounce => {
                s.bounced.get_or_insert((e.at, e.detail.clone()));
            }
            _ => {}
        }
    }
    let cannot = |e: csv::Error| AdminError::Unreadable(format!("cannot write the CSV: {e}"));
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(COLUMNS).map_err(cannot)?;
    let everyone: BTreeSet<SubscriberId> = sets.values().flatten().copied().collect();
    let none = Seen::default();
    for id in &everyone {
        let person = people.get(id);
        let s = seen.get(id).unwrap_or(&none);
        let mut row: Vec<Cow<'_, str>> = Vec::with_capacity(COLUMNS.len());
        row.push(id.0.to_string().into());
        row.push(person.map_or("".into(), |p| spreadsheet_safe(&p.email)));
        row.push(person.map_or("".into(), |p| spreadsheet_safe(&p.name)));
        row.push(person.map_or("removed", |p| p.status.as_str()).into());
        for outcome in FLAGS {
            let yes = sets.get(&outcome).is_some_and(|set| set.contains(id));
            row.push(if yes { "1" } else { "0" }.into());
        }
        row.push(s.clicks.to_string().into());
        for at in [s.opened, s.clicked, s.unsubscribed, s.complained] {
            row.push(time(at).into());
        }
        row.push(time(s.bounced.as_ref().map(|(at, _)| *at)).into());
        row.push(
            s.bounced
                .as_ref()
                .and_then(|(_, detail)| detail.as_deref())
                .map_or("".into(), spreadsheet_safe),
        );
        out.write_record(row.iter().map(|c| c.as_bytes()))
            .map_err(cannot)?;
    }
    let bytes = out
        .into_inner()
        .map_err(|e| AdminError::Unreadable(format!("cannot write the CSV: {e}")))?;
    Ok((bytes, everyone.len()))
}

/// RFC 3339 (UTC), or empty when the time is not known.
fn time(at: Option<i64>) -> String {
    at.map(|at| {
        jiff::Timestamp::from_second(at)
            .map(|t| t.to_string())
            .unwrap_or_else(|_| at.to_string())
    })
    .unwrap_or_default()
}

/// A cell that a spreadsheet would run as a formula (it starts with `=`, `+`, `-`, `@`, a
/// tab or a carriage return) gets a `'` before it, so a name typed into the public
/// subscribe form cannot become a formula on the list owner's machine. The report is read,
/// never imported back, so the changed cell costs nothing.
pub fn spreadsheet_safe(cell: &str) -> Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: i64, at: i64, subscriber: i64, outcome: Outcome, detail: &str) -> HistoryEvent {
        HistoryEvent {
            id,
            at,
            about: None,
            subscriber: Some(SubscriberId(subscriber)),
            event: outcome.as_str().to_string(),
            detail: Some(detail.to_string()).filter(|d| !d.is_empty()),
        }
    }

    #[test]
    fn a_row_per_distinct_link_in_the_mails_order() {
        let links = vec![
            "https://a.example/".to_string(),
            "https://b.example/".to_string(),
            "https://a.example/".to_string(),
            "https://c.example/".to_string(),
        ];
        let tally = vec![
            ("https://b.example/".to_string(), 1, 1),
            ("https://a.example/".to_string(), 2, 3),
            ("https://gone.example/".to_string(), 1, 1),
        ];
        let rows: Vec<(String, u64, u64)> = per_link(&links, tally)
            .into_iter()
            .map(|l| (l.url, l.clickers, l.clicks))
            .collect();
        assert_eq!(
            rows,
            [
                ("https://a.example/".to_string(), 2, 3),
                ("https://b.example/".to_string(), 1, 1),
                ("https://c.example/".to_string(), 0, 0),
            ]
        );
    }

    #[test]
    fn events_read_in_pages_come_once_each_even_when_a_second_overflows_a_page() {
        let dir = tempfile::tempdir().unwrap();
        let store = store::SqliteStore::open(dir.path()).unwrap();
        let about = HistoryRef::Campaign(store::CampaignId(1));
        let other = HistoryRef::Campaign(store::CampaignId(2));
        let mut want = Vec::new();
        // Seven events in one second (more than a page of two), then one a second.
        for (i, at) in [100, 100, 100, 100, 100, 100, 100, 101, 102, 102]
            .into_iter()
            .enumerate()
        {
            let url = format!("https://a.example/{i}");
            store
                .record(about, SubscriberId(1), Outcome::Click, Some(&url), at)
                .unwrap();
            store
                .record(other, SubscriberId(1), Outcome::Click, Some(&url), at)
                .unwrap();
            want.push(url);
        }
        for page in [1, 2, 3, 7, 10, 5000] {
            let got: Vec<String> = events_paged(&store, about, page)
                .unwrap()
                .into_iter()
                .filter_map(|e| e.detail)
                .collect();
            assert_eq!(got, want, "pages of {page}");
        }
    }

    #[test]
    fn a_cell_a_spreadsheet_would_run_is_quoted() {
        for (cell, want) in [
            ("=HYPERLINK(\"x\")", "'=HYPERLINK(\"x\")"),
            ("+1", "'+1"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("Ann = Bob", "Ann = Bob"),
            ("ann@example.com", "ann@example.com"),
            ("", ""),
        ] {
            assert_eq!(spreadsheet_safe(cell), want, "{cell:?}");
        }
    }

    #[test]
    fn a_row_per_subscriber_in_any_set_with_times_from_the_events() {
        let ids = |v: &[i64]| v.iter().map(|i| SubscriberId(*i)).collect::<BTreeSet<_>>();
        let mut sets = BTreeMap::new();
        sets.insert(Outcome::Sent, ids(&[1, 2, 3]));
        sets.insert(Outcome::Delivered, ids(&[1, 3]));
        sets.insert(Outcome::Failed, ids(&[2]));
        sets.insert(Outcome::HardBounce, ids(&[2]));
        sets.insert(Outcome::Click, ids(&[1]));
        sets.insert(Outcome::Suppressed, ids(&[4]));
        let events = [
            event(1, 86_400, 2, Outcome::HardBounce, "550 5.1.1 unknown"),
            event(2, 90_000, 1, Outcome::Click, "https://a.example/"),
            event(3, 90_060, 1, Outcome::Click, "https://a.example/"),
        ];
        let person = |email: &str, name: &str| Person {
            email: email.into(),
            name: name.into(),
            status: "active".into(),
        };
        let people: HashMap<SubscriberId, Person> = [
            (SubscriberId(1), person("ann@example.com", "Ann")),
            (SubscriberId(2), person("bob@example.com", "=cmd()")),
            (SubscriberId(4), person("dee@example.com", "Dee, D.")),
        ]
        .into_iter()
        .collect();
        let (bytes, rows) = write_report(&sets, &events, &people).unwrap();
        assert_eq!(rows, 4);
        let text = String::from_utf8(bytes).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], COLUMNS.join(","));
        assert_eq!(
            &lines[1..],
            [
                "1,ann@example.com,Ann,active,1,1,0,0,0,0,0,1,0,0,0,0,2,,1970-01-02T01:00:00Z,,,,",
                "2,bob@example.com,'=cmd(),active,1,0,0,1,1,0,0,0,0,0,0,0,0,,,,,1970-01-02T00:00:00Z,550 5.1.1 unknown",
                "3,,,removed,1,1,0,0,0,0,0,0,0,0,0,0,0,,,,,,",
                "4,dee@example.com,\"Dee, D.\",active,0,0,0,0,0,0,0,0,0,0,1,0,0,,,,,,",
            ]
        );
    }
}
