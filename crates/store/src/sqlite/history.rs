//! `Newsletters` history for SQLite: bitmaps, daily totals, raw events, pruning.
//!
//! Schema version 6 explains the three tables and why each stays bounded. The helpers here
//! take a connection so that the writer requests of `lists.rs` (enqueueing, status
//! changes, bounces) record history inside their own transaction.

use roaring::RoaringBitmap;
use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteStore;
use super::queue::snapshot;
use crate::{
    DailyTotal, HistoryEvent, HistoryRef, MAX_EVENT_DETAIL, Outcome, Result, StoreError,
    SubscriberId,
};

const DAY: i64 = 86_400;

/// Days since the Unix epoch (UTC) of a Unix time.
pub(super) fn day_of(at: i64) -> i64 {
    at.div_euclid(DAY)
}

/// A subscriber id as a bitmap member; ids are below 2^32 by construction (`lists.rs`).
pub(super) fn member(subscriber: SubscriberId) -> Result<u32> {
    u32::try_from(subscriber.0)
        .map_err(|_| StoreError::Invalid(format!("subscriber id {} out of range", subscriber.0)))
}

fn decode(bytes: &[u8]) -> Result<RoaringBitmap> {
    RoaringBitmap::deserialize_from(bytes)
        .map_err(|e| StoreError::Invalid(format!("corrupt history bitmap: {e}")))
}

/// The (about, outcome) set; empty when nobody is in it yet.
pub(super) fn load_set(
    conn: &Connection,
    about: HistoryRef,
    outcome: Outcome,
) -> Result<RoaringBitmap> {
    let bytes: Option<Vec<u8>> = conn
        .prepare_cached(
            "SELECT bitmap FROM history_sets WHERE kind = ?1 AND ref = ?2 AND outcome = ?3",
        )?
        .query_row(params![about.kind(), about.id(), outcome.as_str()], |r| {
            r.get(0)
        })
        .optional()?;
    match bytes {
        Some(bytes) => decode(&bytes),
        None => Ok(RoaringBitmap::new()),
    }
}

pub(super) fn save_set(
    conn: &Connection,
    about: HistoryRef,
    outcome: Outcome,
    set: &RoaringBitmap,
) -> Result<()> {
    let mut bytes = Vec::with_capacity(set.serialized_size());
    set.serialize_into(&mut bytes)
        .expect("writing to a Vec cannot fail");
    conn.prepare_cached(
        "INSERT INTO history_sets (kind, ref, outcome, bitmap) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (kind, ref, outcome) DO UPDATE SET bitmap = excluded.bitmap",
    )?
    .execute(params![about.kind(), about.id(), outcome.as_str(), bytes])?;
    Ok(())
}

/// Adds `count` to the day's total of (about, outcome).
pub(super) fn bump_daily(
    conn: &Connection,
    at: i64,
    about: HistoryRef,
    outcome: Outcome,
    count: u64,
) -> Result<()> {
    if count == 0 {
        return Ok(());
    }
    conn.prepare_cached(
        "INSERT INTO history_daily (day, kind, ref, outcome, count) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (day, kind, ref, outcome) DO UPDATE SET count = count + excluded.count",
    )?
    .execute(params![
        day_of(at),
        about.kind(),
        about.id(),
        outcome.as_str(),
        count as i64
    ])?;
    Ok(())
}

/// Cuts a detail to [`MAX_EVENT_DETAIL`] bytes on a character boundary.
fn truncate(detail: &str) -> &str {
    if detail.len() <= MAX_EVENT_DETAIL {
        return detail;
    }
    let mut end = MAX_EVENT_DETAIL;
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    &detail[..end]
}

pub(super) fn insert_event(
    conn: &Connection,
    at: i64,
    about: Option<HistoryRef>,
    subscriber: Option<SubscriberId>,
    event: &str,
    detail: Option<&str>,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO history_events (at, kind, ref, subscriber, event, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        at,
        about.map(|a| a.kind()),
        about.map(|a| a.id()),
        subscriber.map(|s| s.0),
        event,
        detail.map(truncate)
    ])?;
    Ok(())
}

/// The body of [`crate::Newsletters::record`], for use inside any writer request. Returns
/// whether the subscriber joined the set anew.
pub(super) fn record_in(
    conn: &Connection,
    about: HistoryRef,
    subscriber: SubscriberId,
    outcome: Outcome,
    detail: Option<&str>,
    now: i64,
) -> Result<bool> {
    let mut set = load_set(conn, about, outcome)?;
    let new = set.insert(member(subscriber)?);
    if new {
        save_set(conn, about, outcome, &set)?;
    }
    // A set says who clicked or opened; the daily total counts every click and open.
    if new || matches!(outcome, Outcome::Click | Outcome::Open) {
        bump_daily(conn, now, about, outcome, 1)?;
    }
    // A click's link is its detail: counted per link and reader, kept when the raw event
    // is pruned.
    if let (Outcome::Click, Some(url)) = (outcome, detail) {
        conn.prepare_cached(
            "INSERT INTO history_link_clicks (kind, ref, url, subscriber, clicks)
             VALUES (?1, ?2, ?3, ?4, 1)
             ON CONFLICT (kind, ref, url, subscriber) DO UPDATE SET clicks = clicks + 1",
        )?
        .execute(params![
            about.kind(),
            about.id(),
            truncate(url),
            subscriber.0
        ])?;
    }
    insert_event(
        conn,
        now,
        Some(about),
        Some(subscriber),
        outcome.as_str(),
        detail,
    )?;
    Ok(new)
}

/// Adds a subscriber to an (about, outcome) set and the day's total when it joins anew,
/// without a raw event: for what happens once per mail (delivered, deferred, failed), which
/// must not write a row per mail. Returns whether it joined anew.
pub(super) fn mark_in(
    conn: &Connection,
    about: HistoryRef,
    subscriber: SubscriberId,
    outcome: Outcome,
    now: i64,
) -> Result<bool> {
    let mut set = load_set(conn, about, outcome)?;
    let new = set.insert(member(subscriber)?);
    if new {
        save_set(conn, about, outcome, &set)?;
        bump_daily(conn, now, about, outcome, 1)?;
    }
    Ok(new)
}

/// Forgets the sets and links of a campaign or step that is being removed. Its daily
/// totals stay (a few rows, the long-term record) and its raw events age out as usual.
pub(super) fn forget(conn: &Connection, about: HistoryRef) -> Result<()> {
    conn.prepare_cached("DELETE FROM history_sets WHERE kind = ?1 AND ref = ?2")?
        .execute(params![about.kind(), about.id()])?;
    conn.prepare_cached("DELETE FROM history_links WHERE kind = ?1 AND ref = ?2")?
        .execute(params![about.kind(), about.id()])?;
    conn.prepare_cached("DELETE FROM history_link_clicks WHERE kind = ?1 AND ref = ?2")?
        .execute(params![about.kind(), about.id()])?;
    Ok(())
}

fn bad_column(index: usize, what: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, what.into())
}

fn history_ref(kind: &str, id: i64, index: usize) -> rusqlite::Result<HistoryRef> {
    HistoryRef::from_parts(kind, id)
        .ok_or_else(|| bad_column(index, format!("unknown history kind '{kind}'")))
}

fn outcome(name: &str, index: usize) -> rusqlite::Result<Outcome> {
    Outcome::parse(name).ok_or_else(|| bad_column(index, format!("unknown outcome '{name}'")))
}

impl SqliteStore {
    pub(super) fn record_impl(
        &self,
        about: HistoryRef,
        subscriber: SubscriberId,
        outcome: Outcome,
        detail: Option<&str>,
        now: i64,
    ) -> Result<()> {
        member(subscriber)?;
        let detail = detail.map(|d| truncate(d).to_string());
        self.write(move |ctx| {
            record_in(ctx.conn, about, subscriber, outcome, detail.as_deref(), now).map(|_| ())
        })
    }

    pub(super) fn log_action_impl(
        &self,
        about: Option<HistoryRef>,
        detail: &str,
        now: i64,
    ) -> Result<()> {
        let detail = truncate(detail).to_string();
        self.write(move |ctx| insert_event(ctx.conn, now, about, None, "action", Some(&detail)))
    }

    pub(super) fn received_by_impl(
        &self,
        about: HistoryRef,
        outcome: Outcome,
    ) -> Result<Vec<SubscriberId>> {
        let set = self.read(|conn| load_set(conn, about, outcome))?;
        Ok(set.iter().map(|id| SubscriberId(id.into())).collect())
    }

    pub(super) fn count_impl(&self, about: HistoryRef, outcome: Outcome) -> Result<u64> {
        Ok(self.read(|conn| load_set(conn, about, outcome))?.len())
    }

    pub(super) fn history_of_impl(
        &self,
        subscriber: SubscriberId,
    ) -> Result<Vec<(HistoryRef, Outcome)>> {
        let id = member(subscriber)?;
        self.read(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT kind, ref, outcome, bitmap FROM history_sets")?;
            let mut rows = stmt.query([])?;
            let mut found = Vec::new();
            while let Some(row) = rows.next()? {
                let kind: String = row.get(0)?;
                let about = history_ref(&kind, row.get(1)?, 0)?;
                let name: String = row.get(2)?;
                let outcome = outcome(&name, 2)?;
                let bytes = row.get_ref(3)?.as_blob().map_err(rusqlite::Error::from)?;
                if decode(bytes)?.contains(id) {
                    found.push((about, outcome));
                }
            }
            found.sort();
            Ok(found)
        })
    }

    pub(super) fn daily_totals_impl(&self, since_day: i64) -> Result<Vec<DailyTotal>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT day, kind, ref, outcome, count FROM history_daily WHERE day >= ?1
                 ORDER BY day, kind, ref, outcome",
            )?;
            let rows = stmt.query_map([since_day], |r| {
                let kind: String = r.get(1)?;
                let name: String = r.get(3)?;
                Ok(DailyTotal {
                    day: r.get(0)?,
                    about: history_ref(&kind, r.get(2)?, 1)?,
                    outcome: outcome(&name, 3)?,
                    count: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    pub(super) fn events_impl(
        &self,
        about: Option<HistoryRef>,
        since: i64,
        limit: usize,
    ) -> Result<Vec<HistoryEvent>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|conn| {
            let map = |r: &rusqlite::Row<'_>| {
                let kind: Option<String> = r.get(2)?;
                let about = match (kind, r.get::<_, Option<i64>>(3)?) {
                    (Some(kind), Some(id)) => Some(history_ref(&kind, id, 2)?),
                    _ => None,
                };
                Ok(HistoryEvent {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    about,
                    subscriber: r.get::<_, Option<i64>>(4)?.map(SubscriberId),
                    event: r.get(5)?,
                    detail: r.get(6)?,
                })
            };
            let columns = "id, at, kind, ref, subscriber, event, detail";
            let events = match about {
                Some(about) => conn
                    .prepare_cached(&format!(
                        "SELECT {columns} FROM history_events
                         WHERE kind = ?1 AND ref = ?2 AND at >= ?3 ORDER BY at, id LIMIT ?4"
                    ))?
                    .query_map(params![about.kind(), about.id(), since, limit], map)?
                    .collect::<rusqlite::Result<_>>()?,
                None => conn
                    .prepare_cached(&format!(
                        "SELECT {columns} FROM history_events
                         WHERE at >= ?1 ORDER BY at, id LIMIT ?2"
                    ))?
                    .query_map(params![since, limit], map)?
                    .collect::<rusqlite::Result<_>>()?,
            };
            Ok(events)
        })
    }

    pub(super) fn prune_events_impl(&self, before: i64, batch: usize) -> Result<u64> {
        let batch = i64::try_from(batch).unwrap_or(i64::MAX);
        self.write(move |ctx| {
            // The oldest first, through the `at` index, so each batch is a short range scan
            // and one transaction stays small however far behind the pruning is.
            let removed = ctx
                .conn
                .prepare_cached(
                    "DELETE FROM history_events WHERE id IN (
                         SELECT id FROM history_events WHERE at < ?1 ORDER BY at LIMIT ?2)",
                )?
                .execute(params![before, batch])?;
            Ok(removed as u64)
        })
    }

    /// Measured with `dbstat` (the bundled SQLite is built with SQLITE_ENABLE_DBSTAT_VTAB):
    /// the pages of every history table and index, by name, so only their b-trees are
    /// walked and not the whole database.
    pub(super) fn history_bytes_impl(&self) -> Result<u64> {
        self.read(|conn| {
            snapshot(conn, |conn| {
                let names: Vec<String> = conn
                    .prepare_cached(
                        "SELECT name FROM sqlite_master
                         WHERE tbl_name LIKE 'history\\_%' ESCAPE '\\'
                           AND type IN ('table', 'index')",
                    )?
                    .query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                let mut total = 0u64;
                let mut size = conn.prepare_cached(
                    "SELECT coalesce(sum(pgsize), 0) FROM dbstat
                     WHERE name = ?1 AND aggregate = TRUE",
                )?;
                for name in names {
                    let bytes: i64 = size.query_row([&name], |r| r.get(0))?;
                    total += bytes as u64;
                }
                Ok(total)
            })
        })
    }

    pub(super) fn links_impl(&self, about: HistoryRef) -> Result<Vec<String>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT url FROM history_links WHERE kind = ?1 AND ref = ?2 ORDER BY position",
                )?
                .query_map(params![about.kind(), about.id()], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?)
        })
    }

    pub(super) fn click_tally_impl(&self, about: HistoryRef) -> Result<Vec<(String, u64, u64)>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT url, count(*), sum(clicks) FROM history_link_clicks
                     WHERE kind = ?1 AND ref = ?2 GROUP BY url",
                )?
                .query_map(params![about.kind(), about.id()], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect::<rusqlite::Result<_>>()?)
        })
    }

    pub(super) fn set_links_impl(&self, about: HistoryRef, urls: &[String]) -> Result<()> {
        let urls = urls.to_vec();
        self.write(move |ctx| {
            ctx.conn
                .prepare_cached("DELETE FROM history_links WHERE kind = ?1 AND ref = ?2")?
                .execute(params![about.kind(), about.id()])?;
            let mut insert = ctx.conn.prepare_cached(
                "INSERT INTO history_links (kind, ref, position, url) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (position, url) in urls.iter().enumerate() {
                insert.execute(params![about.kind(), about.id(), position as i64, url])?;
            }
            Ok(())
        })
    }
}
