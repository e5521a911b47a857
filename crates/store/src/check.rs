//! The integrity check's options and report, and the optimisation's report, shared by every
//! backend.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::BlobId;

/// Called with (blobs verified so far, blobs to verify) while the check reads every blob.
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

#[derive(Clone, Default)]
pub struct CheckOptions {
    /// Fix what can be fixed without losing mail: reference counts and indexes; move
    /// damaged blobs to `quarantine/` and say which mail needs a restore; move unreferenced
    /// bodies to `quarantine/orphans/` (never deleting them) and delete only the files of
    /// blobs a commit is recorded to have released.
    pub repair: bool,
    /// Told how far the verification of blobs has come; may be called from several threads.
    pub progress: Option<Progress>,
}

impl fmt::Debug for CheckOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckOptions")
            .field("repair", &self.repair)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// One message whose body is in a damaged blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AffectedMessage {
    pub blob: BlobId,
    pub account: String,
    pub mailbox: String,
    pub uid: u32,
}

impl fmt::Display for AffectedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} mailbox {} uid {} (blob {})",
            self.account, self.mailbox, self.uid, self.blob
        )
    }
}

/// What the check found. Empty problem lists mean the store is healthy.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    pub messages: u64,
    pub blobs: u64,
    pub blob_bytes: u64,
    /// Problems reported by the database's own integrity and foreign-key checks.
    pub database: Vec<String>,
    /// Blobs referenced by messages whose file is missing or whose bytes do not match.
    pub damaged_blobs: Vec<String>,
    /// The messages whose bodies live in the damaged blobs.
    pub affected_messages: Vec<AffectedMessage>,
    /// Blobs whose stored reference count differs from the messages that use them.
    pub refcount_mismatches: Vec<String>,
    /// Blob files in `blobs/` that no row names, old enough not to be a delivery in flight,
    /// and not known to be released by a commit: message bodies that may have lost their
    /// rows (a crash that cut the write-ahead log short), so possibly lost mail.
    pub orphan_files: Vec<String>,
    /// Mailboxes whose messages the full-text index says it holds but does not: SEARCH
    /// would miss them there. (Empty when the index is off.)
    pub text_index: Vec<String>,
    /// Orphans too young to judge: possibly a delivery in flight.
    pub young_files: u64,
    /// Orphans a commit released while a backup held the blobs: garbage that the
    /// optimisation (or the repair) deletes.
    pub released_files: u64,
    /// Unreferenced bodies waiting in `quarantine/orphans/` after the run, to be recovered
    /// into a mailbox (`SqliteStore::recover_orphans`) or deleted by the operator.
    pub waiting_orphans: u64,
    /// Orphan files that `repair` moved to `quarantine/orphans/`, with where they went.
    pub orphans_quarantined: Vec<String>,
    /// True when the check ran with `repair`.
    pub repair: bool,
    /// What `repair` changed in the metadata and among the blob files.
    pub repaired: Vec<String>,
    /// Damaged blob files that `repair` moved out of the way, with where they went.
    pub quarantined: Vec<String>,
    /// True when `repair` rebuilt every index of the database.
    pub reindexed: bool,
    /// What `repair` could not fix, each with what to do about it.
    pub not_fixed: Vec<String>,
}

impl CheckReport {
    /// True when no mail is damaged or unreachable, the metadata is consistent and no
    /// message body is unreferenced. An unreferenced body may be garbage (a crash between
    /// a blob's fsync and its commit leaves one) or the only copy of a message whose row
    /// was lost; only the operator can tell, so it counts until recovered or deleted.
    pub fn is_healthy(&self) -> bool {
        self.problems() == 0 && self.unreferenced_bodies() == 0
    }

    /// Message bodies no row names after the run, in `blobs/` or in `quarantine/orphans/`.
    pub fn unreferenced_bodies(&self) -> u64 {
        let in_blobs = if self.repair {
            0
        } else {
            self.orphan_files.len() as u64
        };
        in_blobs + self.waiting_orphans
    }

    /// How many problems the check found (before any repair).
    pub fn problems(&self) -> usize {
        self.database.len()
            + self.damaged_blobs.len()
            + self.refcount_mismatches.len()
            + self.text_index.len()
    }

    /// How many problems are left: after a repair, what it could not fix; otherwise
    /// everything found. Unreferenced bodies count as one problem however many there are:
    /// one decision settles them all.
    pub fn outstanding(&self) -> usize {
        let fixed_or_not = if self.repair {
            self.not_fixed.len()
        } else {
            self.problems()
        };
        fixed_or_not + usize::from(self.unreferenced_bodies() > 0)
    }
}

/// Shows at most this many lines per section, unless formatted with `{:#}`.
const SHORT_LIST: usize = 20;

/// Writes one labelled line per item, all of them when `full`, else the first few.
fn section<T: fmt::Display>(
    f: &mut fmt::Formatter<'_>,
    label: &str,
    items: &[T],
    full: bool,
) -> fmt::Result {
    let shown = if full { items.len() } else { SHORT_LIST };
    for item in items.iter().take(shown) {
        writeln!(f, "  {label}: {item}")?;
    }
    if items.len() > shown {
        writeln!(
            f,
            "  {label}: ... and {} more (the full list is in log/maintenance_result.log)",
            items.len() - shown
        )?;
    }
    Ok(())
}

/// `{}` shortens long lists; `{:#}` lists everything (for the result log and the operator
/// who has to restore each affected message).
impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let full = f.alternate();
        writeln!(
            f,
            "checked {} messages, {} blobs ({} bytes)",
            self.messages, self.blobs, self.blob_bytes
        )?;
        section(f, "database", &self.database, full)?;
        section(f, "damaged blob", &self.damaged_blobs, full)?;
        section(f, "affected message", &self.affected_messages, full)?;
        section(f, "reference count", &self.refcount_mismatches, full)?;
        section(f, "unreferenced body", &self.orphan_files, full)?;
        section(f, "full-text index", &self.text_index, full)?;
        if self.released_files > 0 {
            writeln!(
                f,
                "  {} blob files released by a commit wait for deletion (optimize removes them)",
                self.released_files
            )?;
        }
        if self.young_files > 0 {
            writeln!(
                f,
                "  {} blob files newer than the check were left alone",
                self.young_files
            )?;
        }
        section(f, "repaired", &self.repaired, full)?;
        section(f, "quarantined", &self.quarantined, full)?;
        section(f, "quarantined orphan", &self.orphans_quarantined, full)?;
        if self.reindexed {
            writeln!(
                f,
                "  repaired: rebuilt every index of the database (REINDEX)"
            )?;
        }
        section(f, "not fixed", &self.not_fixed, full)?;
        if self.unreferenced_bodies() > 0 {
            writeln!(
                f,
                "  unreferenced message bodies: {} ({} in blobs/, {} in quarantine/orphans/): \
                 no message names them, so they may be mail whose index entry was lost",
                self.unreferenced_bodies(),
                self.unreferenced_bodies() - self.waiting_orphans,
                self.waiting_orphans
            )?;
        }
        Ok(())
    }
}

/// What the optimisation did.
#[derive(Debug, Clone, Default)]
pub struct OptimizeReport {
    /// Planner statistics were refreshed (ANALYZE, `PRAGMA optimize`).
    pub analyzed: bool,
    pub page_size: u64,
    /// Free pages inside the database file before and after.
    pub free_pages_before: u64,
    pub free_pages_after: u64,
    /// Pages given back to the file system (the database file shrank by this many).
    pub pages_freed: u64,
    /// The database was rebuilt once (VACUUM) to switch on incremental auto-vacuum.
    pub vacuumed: bool,
    /// Bytes of the write-ahead log before and after the checkpoint.
    pub wal_bytes_before: u64,
    pub wal_bytes_after: u64,
    /// False when readers kept the checkpoint from copying every frame back.
    pub checkpoint_complete: bool,
    /// Bytes of the database file (without its WAL) before and after.
    pub database_bytes_before: u64,
    pub database_bytes_after: u64,
    /// Orphan blob files removed (those a commit is recorded to have released), and their
    /// bytes.
    pub orphans_removed: u64,
    pub orphan_bytes: u64,
    /// Other old orphan files: possibly lost mail, moved to `quarantine/orphans/`.
    pub orphans_quarantined: u64,
    /// Orphans young enough to be a delivery in flight, left alone.
    pub young_files: u64,
    /// Where the database files live (for the operator reading the report).
    pub database: PathBuf,
    /// What could not be done online, each with why and what to do.
    pub not_done: Vec<String>,
}

impl OptimizeReport {
    pub fn bytes_reclaimed(&self) -> u64 {
        self.pages_freed * self.page_size + self.orphan_bytes
    }
}

/// Bytes in the largest unit that keeps the number at least 1, e.g. "4.2 MiB".
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

impl fmt::Display for OptimizeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "optimised {}", self.database.display())?;
        if self.analyzed {
            writeln!(f, "  statistics: refreshed (ANALYZE, PRAGMA optimize)")?;
        }
        if self.vacuumed {
            writeln!(
                f,
                "  database rebuilt once (VACUUM) to switch on incremental auto-vacuum"
            )?;
        }
        writeln!(
            f,
            "  free pages: {} -> {}; {} pages freed ({} given back to the file system)",
            self.free_pages_before,
            self.free_pages_after,
            self.pages_freed,
            human_bytes(self.pages_freed * self.page_size)
        )?;
        writeln!(
            f,
            "  write-ahead log: {} -> {}{}",
            human_bytes(self.wal_bytes_before),
            human_bytes(self.wal_bytes_after),
            if self.checkpoint_complete {
                " (checkpointed and truncated)"
            } else {
                " (checkpoint incomplete: readers were active; the next run finishes it)"
            }
        )?;
        writeln!(
            f,
            "  database file: {} -> {}",
            human_bytes(self.database_bytes_before),
            human_bytes(self.database_bytes_after)
        )?;
        writeln!(
            f,
            "  orphan blob files removed: {} ({})",
            self.orphans_removed,
            human_bytes(self.orphan_bytes)
        )?;
        if self.orphans_quarantined > 0 {
            writeln!(
                f,
                "  unreferenced message bodies moved to quarantine/orphans/: {} (possibly \
                 lost mail: `tegami check` says how to recover them)",
                self.orphans_quarantined
            )?;
        }
        if self.young_files > 0 {
            writeln!(
                f,
                "  {} blob files younger than the in-flight margin were left alone",
                self.young_files
            )?;
        }
        writeln!(
            f,
            "  reclaimed in all: {}",
            human_bytes(self.bytes_reclaimed())
        )?;
        for item in &self.not_done {
            writeln!(f, "  not done: {item}")?;
        }
        Ok(())
    }
}
