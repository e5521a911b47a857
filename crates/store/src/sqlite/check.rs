//! The integrity check of the SQLite backend: database, reference counts, every blob, and
//! the repair of what can be repaired without losing mail.
//!
//! It reads through one read transaction, a consistent snapshot, so it runs beside a live
//! server. Files are listed before the snapshot starts; anything written after that is
//! either in the snapshot or younger than the listing and left alone. What the snapshot
//! names may change before the check looks at it, so nothing is called damaged or orphaned
//! on the snapshot's word alone: a blob found missing is damage only if a message still
//! uses it, and a file found unnamed is an orphan only if it is still there and still
//! unnamed under the current state (a writer deletes a released file just after its
//! commit). The orphan scan here is shared with the optimisation (`optimize.rs`); what
//! happens to orphans is in `orphans.rs`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteStore;
use super::orphans;
use crate::Mailboxes;
use crate::{
    AffectedMessage, BlobId, BlobStore, CheckOptions, CheckReport, Progress, Result, Verdict,
};

/// Blob files younger than this may belong to a delivery that has not committed yet.
pub(super) const IN_FLIGHT: Duration = Duration::from_secs(300);

/// The most threads that read and hash blobs at once.
const MAX_VERIFIERS: usize = 8;

pub(super) fn run(store: &SqliteStore, options: &CheckOptions) -> Result<CheckReport> {
    let mut report = CheckReport {
        repair: options.repair,
        ..CheckReport::default()
    };
    let started = SystemTime::now();
    let files = store.blobs.list()?;

    let (referenced, refcounts, stale) = store.read(|conn| {
        conn.execute_batch("BEGIN")?;
        let result = snapshot(conn, &mut report);
        conn.execute_batch("COMMIT")?;
        result
    })?;

    let mut wanted: Vec<(BlobId, u64)> = referenced
        .iter()
        .map(|(id, (size, _))| (*id, *size))
        .collect();
    wanted.sort();
    let mut wrong_counts = Vec::new();
    for (id, size) in &wanted {
        let uses = referenced[id].1;
        report.blobs += 1;
        report.blob_bytes += size;
        let stored = refcounts.get(id).copied();
        if stored != Some(uses as i64) {
            report.refcount_mismatches.push(format!(
                "blob {id}: stored {}, used by {uses} messages",
                stored.map_or("no row".to_string(), |n| n.to_string())
            ));
            wrong_counts.push(*id);
        }
    }
    let mut counted_unused: Vec<BlobId> = refcounts
        .keys()
        .filter(|id| !referenced.contains_key(*id))
        .copied()
        .collect();
    counted_unused.sort();
    for id in counted_unused {
        report
            .refcount_mismatches
            .push(format!("blob {id}: counted but used by no message"));
        wrong_counts.push(id);
    }

    let verdicts = verify_all(&store.blobs, &wanted, options.progress.as_ref());
    let mut damaged = Vec::new();
    let mut wrong_sizes = Vec::new();
    let mut suspects = Vec::new();
    for ((id, size), verdict) in wanted.iter().zip(verdicts) {
        let problem = match verdict {
            Verdict::Intact { size: found } if found == *size => continue,
            // The bytes hash to the name, so they are the mail; the metadata is what is wrong.
            Verdict::Intact { size: found } => {
                report.database.push(format!(
                    "blob {id}: the database records {size} bytes, the intact file holds {found}"
                ));
                wrong_sizes.push((*id, found));
                continue;
            }
            Verdict::Missing => "file missing".to_string(),
            Verdict::Corrupt { size: found, .. } if found != *size => {
                format!("{found} bytes, expected {size}, and the content does not match its hash")
            }
            Verdict::Corrupt { .. } => "content does not match its hash".to_string(),
            Verdict::Unreadable(e) => format!("cannot be read: {e}"),
        };
        suspects.push((*id, problem));
    }
    if !suspects.is_empty() {
        let affected = store.read(|conn| {
            suspects
                .iter()
                .map(|(id, _)| affected_messages(conn, id))
                .collect::<Result<Vec<_>>>()
        })?;
        for ((id, problem), affected) in suspects.into_iter().zip(affected) {
            // No message uses it any more: it was expunged after the snapshot (and its file
            // went with it), so no mail is damaged.
            if affected.is_empty() {
                continue;
            }
            report.damaged_blobs.push(format!(
                "blob {id}: {problem} ({} affected)",
                messages(affected.len())
            ));
            report.affected_messages.extend(affected);
            damaged.push(id);
        }
    }

    let candidates = scan_orphans(&files, started, |id| {
        referenced.contains_key(id) || refcounts.contains_key(id)
    });
    report.young_files = candidates.young;
    let orphans::StillOrphans {
        files: old,
        released,
    } = orphans::still_orphans(store, candidates.old)?;
    for (id, size) in &old {
        if released.contains(id) {
            report.released_files += 1;
        } else {
            report
                .orphan_files
                .push(format!("blob {id} ({size} bytes)"));
        }
    }

    let text_index = text_index_findings(store, &mut report)?;

    if options.repair {
        repair(
            store,
            &mut report,
            wrong_counts,
            wrong_sizes,
            stale,
            old,
            damaged,
        )?;
        repair_text_index(store, &mut report, text_index)?;
    }
    report.waiting_orphans = orphans::waiting(&store.data_dir);
    Ok(report)
}

type Referenced = HashMap<BlobId, (u64, u64)>;

/// The full-text index's findings, when the index is in use: mailboxes whose messages it
/// claims but does not hold (SEARCH would miss them there). Returns those mailboxes with
/// how each is named. An index that cannot be read is reported, not repaired: it is
/// derived data, and removing `index.db` with the server stopped makes it rebuild.
fn text_index_findings(
    store: &SqliteStore,
    report: &mut CheckReport,
) -> Result<Vec<(i64, String)>> {
    if !store.text_index.exists() {
        return Ok(Vec::new());
    }
    let found = match store.index_check() {
        Ok(found) => found,
        Err(e) => {
            let finding = format!(
                "cannot be read ({e}): stop the server and remove {} in the data \
                 directory; the indexer builds it again",
                super::text_index::FILE
            );
            if report.repair {
                report.not_fixed.push(format!("full-text index: {finding}"));
            }
            report.text_index.push(finding);
            return Ok(Vec::new());
        }
    };
    let mut mailboxes = Vec::new();
    store.read(|conn| {
        for (mailbox, messages) in &found.missing_in {
            // A live or an archive mailbox; one deleted since is named by its id.
            let name: Option<String> = match store.mailbox_by_id(*mailbox) {
                Ok(info) => conn
                    .query_row(
                        "SELECT address || ' mailbox ' || ?2 FROM accounts WHERE id = ?1",
                        params![info.account.0, info.name],
                        |r| r.get(0),
                    )
                    .optional()?,
                Err(crate::StoreError::NotFound { .. }) => None,
                Err(e) => return Err(e),
            };
            let name = name.unwrap_or_else(|| format!("mailbox {}", mailbox.0));
            report.text_index.push(format!(
                "{name}: {messages} messages are counted as indexed but are not in the \
                 index, so SEARCH would miss them"
            ));
            mailboxes.push((mailbox.0, name));
        }
        Ok(())
    })?;
    Ok(mailboxes)
}

/// Forgets the index's cursors of the given mailboxes: the indexer takes their messages
/// again, and until it has, SEARCH scans them, so no answer is wrong meanwhile.
fn repair_text_index(
    store: &SqliteStore,
    report: &mut CheckReport,
    mailboxes: Vec<(i64, String)>,
) -> Result<()> {
    if mailboxes.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = mailboxes.iter().map(|(id, _)| *id).collect();
    match store.text_index.reset(Some(&ids)) {
        Ok(()) => report
            .repaired
            .extend(mailboxes.into_iter().map(|(_, name)| {
                format!(
                    "full-text index: {name} is indexed again (searched by scanning until then)"
                )
            })),
        Err(e) => report.not_fixed.push(format!(
            "full-text index: cannot reset it ({e}); run `tegami index rebuild`"
        )),
    }
    Ok(())
}

/// Counters the store keeps that disagree with the rows they count, by the id of the row
/// that holds them.
struct Stale {
    uidnext: Vec<i64>,
    usage: Vec<i64>,
}

fn snapshot(
    conn: &Connection,
    report: &mut CheckReport,
) -> Result<(Referenced, HashMap<BlobId, i64>, Stale)> {
    report.database.extend(database_problems(conn)?);
    let stale = Stale {
        uidnext: stale_uidnext(conn, report)?,
        usage: stale_usage(conn, report)?,
    };
    report.messages = conn.query_row("SELECT count(*) FROM messages", [], |r| r.get(0))?;
    let mut referenced = Referenced::new();
    let mut stmt =
        conn.prepare("SELECT blob_hash, max(size), count(*) FROM messages GROUP BY blob_hash")?;
    for row in stmt.query_map([], |r| {
        Ok((
            r.get::<_, Vec<u8>>(0)?,
            r.get::<_, u64>(1)?,
            r.get::<_, u64>(2)?,
        ))
    })? {
        let (hash, size, uses) = row?;
        match BlobId::from_slice(&hash) {
            Some(id) => {
                referenced.insert(id, (size, uses));
            }
            None => report.database.push(format!(
                "a message names a malformed blob hash ({} bytes)",
                hash.len()
            )),
        }
    }
    let mut refcounts = HashMap::new();
    let mut stmt = conn.prepare("SELECT hash, refcount FROM blobs")?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?)))? {
        let (hash, count) = row?;
        if let Some(id) = BlobId::from_slice(&hash) {
            refcounts.insert(id, count);
        }
    }
    Ok((referenced, refcounts, stale))
}

/// Mailboxes whose UIDNEXT is not above their highest UID: the next message would reuse a
/// UID that a client may have cached for another message. Returns their ids.
fn stale_uidnext(conn: &Connection, report: &mut CheckReport) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare(
        "SELECT b.id, a.address, b.name, b.uidnext, max(m.uid) FROM mailboxes b
         JOIN accounts a ON a.id = b.account_id
         JOIN messages m ON m.mailbox_id = b.id
         GROUP BY b.id HAVING max(m.uid) >= b.uidnext ORDER BY a.address, b.name",
    )?;
    let mut ids = Vec::new();
    for row in stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, i64>(4)?,
        ))
    })? {
        let (id, address, name, next, highest) = row?;
        report.database.push(format!(
            "{address} mailbox {name}: UIDNEXT {next} is not above its highest UID {highest}, \
             so new mail would reuse UIDs"
        ));
        ids.push(id);
    }
    Ok(ids)
}

/// Accounts whose recorded usage differs from the size of their messages: their quota
/// would be judged wrong. Returns their ids.
fn stale_usage(conn: &Connection, report: &mut CheckReport) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare(
        "SELECT a.id, a.address, a.used, coalesce(sum(m.size), 0) AS actual FROM accounts a
         LEFT JOIN mailboxes b ON b.account_id = a.id
         LEFT JOIN messages m ON m.mailbox_id = b.id
         GROUP BY a.id HAVING actual != a.used ORDER BY a.address",
    )?;
    let mut ids = Vec::new();
    for row in stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })? {
        let (id, address, recorded, actual) = row?;
        report.database.push(format!(
            "{address}: recorded usage {recorded} bytes, but its messages take {actual}, \
             so its quota is judged wrong"
        ));
        ids.push(id);
    }
    Ok(ids)
}

/// What SQLite's own integrity and foreign-key checks say, one line per problem.
fn database_problems(conn: &Connection) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut stmt = conn.prepare("PRAGMA integrity_check")?;
    for row in stmt.query_map([], |r| r.get::<_, String>(0))? {
        let line = row?;
        if line != "ok" {
            problems.push(line);
        }
    }
    let mut stmt = conn.prepare("PRAGMA foreign_key_check")?;
    for row in stmt.query_map([], |r| {
        Ok(format!(
            "{} row {:?} violates a reference to {}",
            r.get::<_, String>(0)?,
            r.get::<_, Option<i64>>(1)?,
            r.get::<_, String>(2)?
        ))
    })? {
        problems.push(row?);
    }
    Ok(problems)
}

/// The messages (account, mailbox, uid) whose body is the blob `id`.
fn affected_messages(conn: &Connection, id: &BlobId) -> Result<Vec<AffectedMessage>> {
    let mut stmt = conn.prepare_cached(
        "SELECT a.address, b.name, m.uid FROM messages m
         JOIN mailboxes b ON b.id = m.mailbox_id
         JOIN accounts a ON a.id = b.account_id
         WHERE m.blob_hash = ?1 ORDER BY a.address, b.name, m.uid",
    )?;
    let rows = stmt
        .query_map([&id.0[..]], |r| {
            Ok(AffectedMessage {
                blob: *id,
                account: r.get(0)?,
                mailbox: r.get(1)?,
                uid: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

/// Reads and hashes every blob in `wanted`, on a few threads: a store of many gigabytes is
/// bound by the disk and the hash, and both go faster in parallel.
fn verify_all(
    blobs: &BlobStore,
    wanted: &[(BlobId, u64)],
    progress: Option<&Progress>,
) -> Vec<Verdict> {
    let total = wanted.len() as u64;
    if let Some(progress) = progress {
        progress(0, total);
    }
    let next = AtomicUsize::new(0);
    let done = AtomicU64::new(0);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_VERIFIERS)
        .min(wanted.len().max(1));
    let mut verdicts: Vec<Option<Verdict>> = vec![None; wanted.len()];
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut found = Vec::new();
                    while let Some((id, _)) = wanted.get(next.fetch_add(1, Ordering::Relaxed)) {
                        found.push((id, blobs.verify(id)));
                        let so_far = done.fetch_add(1, Ordering::Relaxed) + 1;
                        if let Some(progress) = progress {
                            progress(so_far, total);
                        }
                    }
                    found
                })
            })
            .collect();
        let index: HashMap<&BlobId, usize> = wanted
            .iter()
            .enumerate()
            .map(|(i, (id, _))| (id, i))
            .collect();
        for worker in workers {
            let found = worker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            for (id, verdict) in found {
                verdicts[index[id]] = Some(verdict);
            }
        }
    });
    verdicts
        .into_iter()
        .map(|v| v.expect("every blob was verified"))
        .collect()
}

/// Blob files that no row names: those old enough to remove, and how many are too young to
/// judge (a delivery writes its file before it commits the row naming it).
pub(super) struct Orphans {
    pub old: Vec<(BlobId, u64)>,
    pub young: u64,
}

/// Splits the files listed at `listed` (before the snapshot that `known` answers from) into
/// orphans old enough to go and young ones to leave alone.
pub(super) fn scan_orphans(
    files: &[(BlobId, u64, SystemTime)],
    listed: SystemTime,
    known: impl Fn(&BlobId) -> bool,
) -> Orphans {
    let young_since = listed - IN_FLIGHT;
    let mut orphans = Orphans {
        old: Vec::new(),
        young: 0,
    };
    for (id, size, modified) in files {
        if known(id) {
            continue;
        }
        if *modified > young_since {
            orphans.young += 1;
        } else {
            orphans.old.push((*id, *size));
        }
    }
    orphans
}

/// Every blob hash the database names, in messages or in the reference counts.
pub(super) fn known_blobs(conn: &Connection) -> Result<HashSet<BlobId>> {
    let mut stmt = conn.prepare("SELECT hash FROM blobs UNION SELECT blob_hash FROM messages")?;
    let known = stmt
        .query_map([], |r| r.get::<_, Vec<u8>>(0))?
        .filter_map(|hash| hash.map(|h| BlobId::from_slice(&h)).transpose())
        .collect::<rusqlite::Result<_>>()?;
    Ok(known)
}

fn repair(
    store: &SqliteStore,
    report: &mut CheckReport,
    wrong_counts: Vec<BlobId>,
    wrong_sizes: Vec<(BlobId, u64)>,
    stale: Stale,
    old_orphans: Vec<(BlobId, u64)>,
    damaged: Vec<BlobId>,
) -> Result<()> {
    // Recount inside the writer so the fix reflects the data at commit time, not the snapshot.
    let fixed = store.write(move |ctx| {
        let mut fixed = Vec::new();
        for id in wrong_counts {
            let (uses, size): (i64, Option<i64>) = ctx.conn.query_row(
                "SELECT count(*), max(size) FROM messages WHERE blob_hash = ?1",
                [&id.0[..]],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            if uses == 0 {
                ctx.conn
                    .execute("DELETE FROM blobs WHERE hash = ?1", [&id.0[..]])?;
                ctx.unreferenced.push(id);
            } else {
                ctx.conn.execute(
                    "INSERT INTO blobs (hash, size, refcount) VALUES (?1, ?2, ?3)
                     ON CONFLICT (hash) DO UPDATE SET refcount = excluded.refcount",
                    params![&id.0[..], size.unwrap_or(0), uses],
                )?;
            }
            fixed.push(format!("blob {id}: reference count set to {uses}"));
        }
        for (id, size) in wrong_sizes {
            // RFC822.SIZE is something a client sees and caches: the change takes a new
            // mod-sequence, so CONDSTORE clients and selected sessions learn of it.
            ctx.conn.execute(
                "UPDATE mailboxes SET modseq = modseq + 1 WHERE id IN
                     (SELECT mailbox_id FROM messages WHERE blob_hash = ?1 AND size != ?2)",
                params![&id.0[..], size],
            )?;
            ctx.conn.execute(
                "UPDATE messages SET size = ?2,
                     modseq = (SELECT b.modseq FROM mailboxes b WHERE b.id = messages.mailbox_id)
                 WHERE blob_hash = ?1 AND size != ?2",
                params![&id.0[..], size],
            )?;
            ctx.conn.execute(
                "UPDATE blobs SET size = ?2 WHERE hash = ?1",
                params![&id.0[..], size],
            )?;
            fixed.push(format!(
                "blob {id}: recorded size set to the file's {size} bytes"
            ));
        }
        // UIDs may already have been reused, so clients must drop what they cached: a new
        // UIDVALIDITY tells them to.
        for id in stale.usage {
            let fixed_account: Option<(String, i64)> = ctx
                .conn
                .query_row(
                    "UPDATE accounts SET used = (SELECT coalesce(sum(m.size), 0)
                         FROM mailboxes b JOIN messages m ON m.mailbox_id = b.id
                         WHERE b.account_id = ?1)
                     WHERE id = ?1 RETURNING address, used",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if let Some((address, used)) = fixed_account {
                fixed.push(format!("{address}: usage recounted, {used} bytes"));
            }
        }
        for id in stale.uidnext {
            let uid_validity = super::mailboxes::next_uid_validity(ctx.conn)?;
            let fixed_mailbox: Option<(String, i64)> = ctx
                .conn
                .query_row(
                    "UPDATE mailboxes SET uidnext = max(uidnext,
                         (SELECT coalesce(max(uid), 0) + 1 FROM messages WHERE mailbox_id = ?1)),
                         uidvalidity = ?2, modseq = modseq + 1
                     WHERE id = ?1 RETURNING name, uidnext",
                    params![id, uid_validity],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if let Some((name, next)) = fixed_mailbox {
                fixed.push(format!(
                    "mailbox {name}: UIDNEXT set to {next}, with a new UIDVALIDITY"
                ));
            }
        }
        Ok(fixed)
    })?;
    report.repaired = fixed;

    // Never deleted: an orphan may be the only copy of a message whose row was lost.
    let swept = orphans::sweep(store, old_orphans)?;
    for (id, _) in swept.removed {
        report.repaired.push(format!(
            "blob {id}: file of a blob a commit released, removed"
        ));
    }
    for (id, to) in swept.quarantined {
        report
            .orphans_quarantined
            .push(format!("blob {id} -> {}", to.display()));
    }

    let quarantine_dir = store.data_dir.join("quarantine");
    for id in damaged {
        let dir = quarantine_dir.clone();
        // Under the write lock, and only if the file is still bad: a message expunged and
        // delivered again since the check may have brought good bytes back.
        let moved = store.write(move |ctx| match ctx.blobs.verify(&id) {
            Verdict::Intact { .. } => Ok(Err("the file is intact again".to_string())),
            Verdict::Missing => Ok(Ok(None)),
            Verdict::Corrupt { .. } | Verdict::Unreadable(_) => {
                Ok(Ok(ctx.blobs.quarantine(&id, &dir)?))
            }
        })?;
        let affected = report
            .affected_messages
            .iter()
            .filter(|m| m.blob == id)
            .count();
        match moved {
            Err(why) => report
                .repaired
                .push(format!("blob {id}: left in place, {why}")),
            Ok(moved) => {
                let kept = match &moved {
                    Some(path) => {
                        report
                            .quarantined
                            .push(format!("blob {id} -> {}", path.display()));
                        format!("; the damaged bytes are kept in {}", path.display())
                    }
                    None => String::new(),
                };
                report.not_fixed.push(format!(
                    "blob {id}: the body of {} (listed above) is lost here and \
                     cannot be repaired; restore blobs/{} from a backup (the message \
                     rows are kept, so the restored file serves them again){kept}",
                    messages(affected),
                    id.relative_path(),
                ));
            }
        }
    }

    // Rebuilding every index fixes an index that disagrees with its table, the commonest
    // damage SQLite's integrity check reports; what is still wrong afterwards needs a restore.
    match store.write(|ctx| Ok(ctx.conn.execute_batch("REINDEX")?)) {
        Ok(()) => report.reindexed = true,
        Err(e) => report.not_fixed.push(format!(
            "database: could not rebuild the indexes ({e}); restore the database from a backup"
        )),
    }
    if !report.database.is_empty() {
        for problem in store.read(database_problems)? {
            report.not_fixed.push(format!(
                "database: {problem}; restore the database from a backup"
            ));
        }
    }
    Ok(())
}

/// "1 message", "2 messages".
fn messages(n: usize) -> String {
    if n == 1 {
        "1 message".to_string()
    } else {
        format!("{n} messages")
    }
}
