//! The global suppression list for SQLite (`nl_suppressions`, schema version 10): the
//! helpers that the writer requests of `lists.rs` use inside their own transaction (the
//! senders' batch check, the bounce and complaint feeds), and the list's own operations.

use std::collections::BTreeSet;

use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use super::SqliteStore;
use crate::{
    ImportCounts, MAX_SUPPRESSION_NOTE, Result, StoreError, Suppression, SuppressionReason,
    suppression_key,
};

/// Addresses per `IN (...)` lookup: well under SQLite's limit of bound parameters, and a
/// sender's batch (200 mails) in one query.
const LOOKUP_CHUNK: usize = 500;
/// Rows per transaction in an import, as for subscribers.
const IMPORT_BATCH: usize = 1000;

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Suppression> {
    let reason: String = r.get(1)?;
    Ok(Suppression {
        address: r.get(0)?,
        reason: SuppressionReason::parse(&reason).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                1,
                rusqlite::types::Type::Text,
                format!("unknown suppression reason '{reason}'").into(),
            )
        })?,
        at: r.get(2)?,
        note: r.get(3)?,
    })
}

/// Cuts a note to [`MAX_SUPPRESSION_NOTE`] bytes on a character boundary.
fn cut(note: &str) -> &str {
    let mut end = note.len().min(MAX_SUPPRESSION_NOTE);
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    &note[..end]
}

/// The key of an address to put on the list, or why it is not an address. Validated like a
/// subscriber's address, so the list holds nothing that no mail could go to.
fn key_to_add(address: &str) -> Result<String> {
    crate::check_address(address)
        .map(|a| suppression_key(&a))
        .map_err(StoreError::Invalid)
}

/// Inserts an entry unless the address is there already (the first reason stands: it is
/// the one that explains why mail stopped). `key` is a [`suppression_key`]. Returns
/// whether it was added.
pub(super) fn suppress_in(
    conn: &Connection,
    key: &str,
    reason: SuppressionReason,
    note: Option<&str>,
    now: i64,
) -> Result<bool> {
    let added = conn
        .prepare_cached(
            "INSERT INTO nl_suppressions (address, reason, at, note) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (address) DO NOTHING",
        )?
        .execute(params![key, reason.as_str(), now, note.map(cut)])?;
    Ok(added > 0)
}

/// Which of `keys` ([`suppression_key`]s) are on the list: one query per [`LOOKUP_CHUNK`].
pub(super) fn suppressed_in(conn: &Connection, keys: &[String]) -> Result<BTreeSet<String>> {
    let mut found = BTreeSet::new();
    for chunk in keys.chunks(LOOKUP_CHUNK) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT address FROM nl_suppressions WHERE address IN ({marks})"
        ))?;
        let rows = stmt.query_map(params_from_iter(chunk), |r| r.get::<_, String>(0))?;
        for address in rows {
            found.insert(address?);
        }
    }
    Ok(found)
}

impl SqliteStore {
    pub(super) fn suppress_impl(
        &self,
        address: &str,
        reason: SuppressionReason,
        note: Option<&str>,
        now: i64,
    ) -> Result<bool> {
        let key = key_to_add(address)?;
        let note = note.map(str::to_string);
        self.write(move |ctx| suppress_in(ctx.conn, &key, reason, note.as_deref(), now))
    }

    pub(super) fn suppress_many_impl(&self, rows: Vec<Suppression>) -> Result<ImportCounts> {
        let mut counts = ImportCounts::default();
        let mut checked = Vec::with_capacity(rows.len());
        for (index, row) in rows.into_iter().enumerate() {
            match key_to_add(&row.address) {
                Ok(key) => checked.push(Suppression {
                    address: key,
                    ..row
                }),
                Err(StoreError::Invalid(why)) => counts.invalid.push((index, why)),
                Err(e) => return Err(e),
            }
        }
        for batch in checked.chunks(IMPORT_BATCH) {
            let batch = batch.to_vec();
            let added = self.write(move |ctx| {
                let mut added = 0u64;
                for s in &batch {
                    if suppress_in(ctx.conn, &s.address, s.reason, s.note.as_deref(), s.at)? {
                        added += 1;
                    }
                }
                Ok((added, batch.len() as u64 - added))
            })?;
            counts.added += added.0;
            counts.present += added.1;
        }
        Ok(counts)
    }

    pub(super) fn unsuppress_impl(&self, address: &str) -> Result<()> {
        let key = suppression_key(address);
        self.write(move |ctx| {
            let removed = ctx
                .conn
                .execute("DELETE FROM nl_suppressions WHERE address = ?1", [&key])?;
            if removed == 0 {
                return Err(StoreError::NotFound {
                    what: format!("suppressed address '{key}'"),
                });
            }
            Ok(())
        })
    }

    pub(super) fn suppression_impl(&self, address: &str) -> Result<Option<Suppression>> {
        let key = suppression_key(address);
        self.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT address, reason, at, note FROM nl_suppressions WHERE address = ?1",
                )?
                .query_row([&key], row)
                .optional()?)
        })
    }

    pub(super) fn suppressed_among_impl(&self, addresses: &[String]) -> Result<BTreeSet<String>> {
        let keys: Vec<String> = addresses.iter().map(|a| suppression_key(a)).collect();
        self.read(|conn| suppressed_in(conn, &keys))
    }

    pub(super) fn suppressions_impl(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Suppression>> {
        let after = after.map(suppression_key).unwrap_or_default();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT address, reason, at, note FROM nl_suppressions
                     WHERE address > ?1 ORDER BY address LIMIT ?2",
                )?
                .query_map(params![after, limit], row)?
                .collect::<rusqlite::Result<_>>()?)
        })
    }

    pub(super) fn suppression_count_impl(&self) -> Result<u64> {
        self.read(|conn| {
            let n: i64 =
                conn.query_row("SELECT count(*) FROM nl_suppressions", [], |r| r.get(0))?;
            Ok(n as u64)
        })
    }
}
