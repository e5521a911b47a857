//! Usage statistics: per account, ten-minute samples for the last hour and daily totals for
//! a configured number of days; store-wide, the size of the store per day.
//!
//! Sessions and deliveries add to an in-memory [`Meter`] (a mutex around a small map, no
//! I/O), and the server flushes it every minute or so in one write transaction. So the
//! statistics cost one small commit per minute, not one per command, and they stay bounded
//! by design: every flush drops the samples older than an hour and the days older than the
//! configured period. This is the lesson of the history tables that grew to millions of
//! rows and took their database down: nothing here grows with the traffic.

use std::collections::HashMap;
use std::sync::Mutex;

use rusqlite::{Connection, params};

use super::SqliteStore;
use crate::{AccountId, Delivered, GrowthRow, Result, Usage, UsageRow};

/// Seconds in a sample and in a day.
pub(super) const SAMPLE_SECS: i64 = 600;
pub(super) const DAY_SECS: i64 = 86_400;
/// Samples kept besides the current one: the last hour, as Exchange's store usage statistics.
const SAMPLES_KEPT: i64 = 6;

#[derive(Default)]
pub(super) struct Meter {
    pending: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    by_account: HashMap<AccountId, Usage>,
    /// Everything counted since the store was opened, for the metrics.
    total: Usage,
}

impl Meter {
    pub fn add(&self, account: AccountId, usage: &Usage) {
        if usage.is_empty() {
            return;
        }
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.by_account.entry(account).or_default().add(usage);
        pending.total.add(usage);
    }

    pub fn total(&self) -> Usage {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).total
    }

    /// Counts one stored message for each recipient; the body's bytes are shared between
    /// them (the first takes the remainder), so the shares add up to the blob's size.
    pub fn delivered(&self, delivered: &[Delivered], size: u64) {
        let n = delivered.len() as u64;
        if n == 0 {
            return;
        }
        for (i, d) in delivered.iter().enumerate() {
            let share = size / n + if i == 0 { size % n } else { 0 };
            self.add(
                d.account,
                &Usage {
                    messages_in: 1,
                    bytes_in: size,
                    write_bytes: share,
                    ..Usage::default()
                },
            );
        }
    }

    fn take(&self) -> HashMap<AccountId, Usage> {
        std::mem::take(
            &mut self
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .by_account,
        )
    }

    /// Puts back what a failed flush took, so nothing is lost (and nothing counted twice).
    fn restore(&self, taken: HashMap<AccountId, Usage>) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        for (account, usage) in taken {
            pending.by_account.entry(account).or_default().add(&usage);
        }
    }
}

pub(super) fn flush(store: &SqliteStore, now: i64, keep_days: u32) -> Result<()> {
    // The sizes are read beside the writer, so the flush holds the write lock only briefly.
    let totals = super::wal::totals(store)?;
    let taken = store.meter.take();
    let rows: Vec<(AccountId, Usage)> = taken.iter().map(|(a, u)| (*a, *u)).collect();
    let slot = now.div_euclid(SAMPLE_SECS) * SAMPLE_SECS;
    let day = now.div_euclid(DAY_SECS);
    let result = store.write(move |ctx| {
        for (table, key, start) in [
            ("usage_samples", "slot", slot),
            ("usage_daily", "day", day * DAY_SECS),
        ] {
            let mut stmt = ctx.conn.prepare_cached(&format!(
                "INSERT INTO {table} (account_id, {key}, messages_in, bytes_in, messages_out,
                     bytes_out, write_bytes, commands, busy_micros)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (account_id, {key}) DO UPDATE SET
                     messages_in = messages_in + excluded.messages_in,
                     bytes_in = bytes_in + excluded.bytes_in,
                     messages_out = messages_out + excluded.messages_out,
                     bytes_out = bytes_out + excluded.bytes_out,
                     write_bytes = write_bytes + excluded.write_bytes,
                     commands = commands + excluded.commands,
                     busy_micros = busy_micros + excluded.busy_micros"
            ))?;
            for (account, u) in &rows {
                stmt.execute(params![
                    account.0,
                    start,
                    u.messages_in as i64,
                    u.bytes_in as i64,
                    u.messages_out as i64,
                    u.bytes_out as i64,
                    u.write_bytes as i64,
                    u.commands as i64,
                    u.busy_micros as i64
                ])?;
            }
        }
        let oldest_day = (day - i64::from(keep_days)) * DAY_SECS;
        ctx.conn.execute(
            "DELETE FROM usage_samples WHERE slot < ?1",
            [slot - SAMPLES_KEPT * SAMPLE_SECS],
        )?;
        ctx.conn
            .execute("DELETE FROM usage_daily WHERE day < ?1", [oldest_day])?;
        ctx.conn.execute(
            "INSERT INTO growth_daily (day, database_bytes, blob_bytes, messages)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (day) DO UPDATE SET database_bytes = excluded.database_bytes,
                 blob_bytes = excluded.blob_bytes, messages = excluded.messages",
            params![
                day,
                totals.database_bytes as i64,
                totals.blob_bytes as i64,
                totals.messages as i64
            ],
        )?;
        ctx.conn.execute(
            "DELETE FROM growth_daily WHERE day < ?1",
            [day - i64::from(keep_days)],
        )?;
        Ok(())
    });
    if result.is_err() {
        store.meter.restore(taken);
    }
    result
}

#[derive(Clone, Copy)]
pub(super) enum Period {
    Sample,
    Day,
}

pub(super) fn rows(conn: &Connection, period: Period, since: i64) -> Result<Vec<UsageRow>> {
    // Daily rows are keyed by their start in seconds too (day × 86,400), so both read alike.
    let (table, key) = match period {
        Period::Sample => ("usage_samples", "slot"),
        Period::Day => ("usage_daily", "day"),
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT coalesce(a.address, '#' || u.account_id), u.{key}, u.messages_in, u.bytes_in,
                u.messages_out, u.bytes_out, u.write_bytes, u.commands, u.busy_micros
         FROM {table} u LEFT JOIN accounts a ON a.id = u.account_id
         WHERE u.{key} >= ?1 ORDER BY u.{key}, u.account_id"
    ))?;
    let rows = stmt
        .query_map([since], |r| {
            let n = |i| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
            Ok(UsageRow {
                account: r.get(0)?,
                start: r.get(1)?,
                usage: Usage {
                    messages_in: n(2)?,
                    bytes_in: n(3)?,
                    messages_out: n(4)?,
                    bytes_out: n(5)?,
                    write_bytes: n(6)?,
                    commands: n(7)?,
                    busy_micros: n(8)?,
                },
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

pub(super) fn growth(conn: &Connection) -> Result<Vec<GrowthRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT day, database_bytes, blob_bytes, messages FROM growth_daily ORDER BY day",
    )?;
    let rows = stmt
        .query_map([], |r| {
            Ok(GrowthRow {
                day: r.get(0)?,
                database_bytes: r.get::<_, i64>(1)?.max(0) as u64,
                blob_bytes: r.get::<_, i64>(2)?.max(0) as u64,
                messages: r.get::<_, i64>(3)?.max(0) as u64,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;

    fn store() -> (tempfile::TempDir, SqliteStore, AccountId, AccountId) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        store.add_domain("example.com").unwrap();
        let a = store.add_account("a@example.com", "pw").unwrap();
        let b = store.add_account("b@example.com", "pw").unwrap();
        (dir, store, a, b)
    }

    #[test]
    fn shares_of_a_shared_body_add_up_to_its_size() {
        let (_dir, store, a, b) = store();
        store
            .deliver(b"Subject: x\r\n\r\n12345\r\n", &[a, b])
            .unwrap();
        store.flush_usage(1_000_000, 400).unwrap();
        let rows = store.usage_samples(0).unwrap();
        assert_eq!(rows.len(), 2);
        let written: u64 = rows.iter().map(|r| r.usage.write_bytes).sum();
        assert_eq!(written, 21);
        assert!(
            rows.iter()
                .all(|r| r.usage.messages_in == 1 && r.usage.bytes_in == 21)
        );
        assert_eq!(rows[0].start, 1_000_000 / 600 * 600);
    }

    #[test]
    fn samples_stay_within_the_hour_and_days_within_the_period() {
        let (_dir, store, a, _) = store();
        let t0 = 10 * DAY_SECS;
        for step in 0..20 {
            store.record_usage(
                a,
                Usage {
                    commands: 1,
                    ..Usage::default()
                },
            );
            store.flush_usage(t0 + step * SAMPLE_SECS, 3).unwrap();
        }
        let samples = store.usage_samples(0).unwrap();
        assert_eq!(samples.len(), 7, "the current sample and six before it");
        assert!(samples.iter().all(|r| r.usage.commands == 1));
        for day in 0..10 {
            store.record_usage(
                a,
                Usage {
                    commands: 2,
                    ..Usage::default()
                },
            );
            store.flush_usage(t0 + day * DAY_SECS, 3).unwrap();
        }
        let days = store.usage_daily(0).unwrap();
        assert_eq!(days.len(), 4, "today and three days before: {days:?}");
        assert_eq!(store.growth().unwrap().len(), 4);
    }

    #[test]
    fn a_removed_account_keeps_its_history_under_its_id() {
        let (_dir, store, a, _) = store();
        store.record_usage(
            a,
            Usage {
                commands: 5,
                ..Usage::default()
            },
        );
        store.remove_account("a@example.com").unwrap();
        store.flush_usage(DAY_SECS, 400).unwrap();
        let rows = store.usage_daily(0).unwrap();
        assert_eq!(rows[0].account, format!("#{}", a.0));
    }
}
