//! The store's files as they lie in the data directory (the database, read by the SQLite
//! backend without opening it, and the message bodies) and the archives beside them.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::Path;

use ::store::inspect::{self, InspectError};

use super::{Group, Verdict, fail, fine, human_bytes, plural, unreadable, warn};

/// The database, as the SQLite backend reads its files, and the message bodies.
pub(super) fn store(data: &Path, wal_cap: u64) -> Group {
    let mut g = Group::new("Store");
    match inspect::files(data) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => g.judge(
            "database",
            format!("tegami.db: {e}"),
            unreadable(data, "the database"),
        ),
        Err(_) => g.judge(
            "database",
            "tegami.db does not exist yet",
            warn(
                "it is created when the store is first opened: `tegami serve` or an admin \
                  command such as `tegami domain add`",
            ),
        ),
        Ok(files) => {
            g.judge(
                "database",
                format!(
                    "tegami.db {}, WAL {}, shm {}",
                    human_bytes(files.database),
                    human_bytes(files.wal),
                    human_bytes(files.shm)
                ),
                wal_verdict(files.wal, wal_cap),
            );
            let current = ::store::SCHEMA_VERSION;
            match inspect::schema_version(data) {
                Ok(found) => {
                    let source = if found.from_wal {
                        ", read from the write-ahead log"
                    } else {
                        ""
                    };
                    g.judge(
                        "schema version",
                        format!("{} (this tegami: {current}){source}", found.version),
                        schema_verdict(found.version, current),
                    );
                }
                Err(InspectError::Io(e)) => g.judge(
                    "schema version",
                    format!("cannot read tegami.db: {e}"),
                    unreadable(data, "the database"),
                ),
                Err(InspectError::Format(e)) => g.judge(
                    "schema version",
                    format!("tegami.db {e}"),
                    fail("tegami cannot open this file: restore the data directory from a backup"),
                ),
            }
        }
    }
    match blob_stats(&data.join("blobs")) {
        Ok(Some(stats)) if stats.unreadable > 0 => g.judge(
            "blobs",
            format!(
                "{}, {}; {} of the {} opened cannot be read ({})",
                plural(stats.count, "file"),
                human_bytes(stats.bytes),
                stats.unreadable,
                stats.opened,
                stats.example.unwrap_or_default()
            ),
            unreadable(data, "message bodies"),
        ),
        Ok(Some(stats)) => g.ok(
            "blobs",
            format!(
                "{}, {}",
                plural(stats.count, "file"),
                human_bytes(stats.bytes)
            ),
        ),
        Ok(None) => g.ok("blobs", "blobs/ does not exist yet"),
        Err(e) => g.judge(
            "blobs",
            format!("cannot read blobs/: {e}"),
            unreadable(data, "blobs/ (every message body)"),
        ),
    }
    g
}

fn wal_verdict(wal_bytes: u64, wal_cap: u64) -> Verdict {
    if wal_bytes > wal_cap {
        warn(
            "the write-ahead log is above its cap ([wal] cap_bytes): something keeps it from \
             being checkpointed (a reader holding one transaction open, or a crash); the \
             running server truncates it as soon as readers let it, `tegami optimize` \
             checkpoints it, and a clean stop folds it in",
        )
    } else {
        fine()
    }
}

fn schema_verdict(found: i64, current: i64) -> Verdict {
    if found > current {
        fail(format!(
            "this database was written by a newer tegami (schema {found}, this one knows \
             {current}): \
             run that newer version, or restore a backup made with this one"
        ))
    } else if found < current {
        warn(format!(
            "this tegami migrates it to schema {current} the next time the store is opened \
             (serve or any admin command); \
             make a backup of the data directory first"
        ))
    } else {
        fine()
    }
}

/// The archives: how many and how big, and any that a run left unfinished.
pub(super) fn archives(data: &Path) -> Group {
    let mut g = Group::new("archives");
    let root = data.join("archive");
    let Ok(entries) = fs::read_dir(&root) else {
        g.ok("archives", "none");
        return g;
    };
    let (mut count, mut messages, mut bytes) = (0u64, 0u64, 0u64);
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.ends_with(".partial") {
            g.judge(
                &name,
                "an archive whose build was interrupted (it holds nothing the live store gave up)",
                warn("the next `tegami archive create` (or the server at start) removes it"),
            );
            continue;
        }
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        match ::store::archive::Archive::open(&path).and_then(|a| a.info()) {
            Ok(info) => {
                count += 1;
                messages += info.messages;
                bytes += info.disk_bytes;
                if info.state != ::store::archive::ArchiveState::Complete {
                    g.judge(
                        &format!("archive {}", info.id),
                        "unfinished: the live store may still hold some of its messages",
                        warn("run `tegami archive create` again, or start the server: either finishes it"),
                    );
                }
            }
            Err(e) => g.judge(
                &format!("archive {name}"),
                e.to_string(),
                fail(format!(
                    "check {} (`tegami archive check {name}`)",
                    path.display()
                )),
            ),
        }
    }
    g.ok(
        "archives",
        format!(
            "{count} ({messages} messages, {} on disk, shared with the store where hard-linked)",
            ::store::human_bytes(bytes)
        ),
    );
    g
}

/// What `blob_stats` found: the blob files, and how many of those opened could not be.
#[derive(Default)]
struct BlobStats {
    count: u64,
    bytes: u64,
    opened: u64,
    unreadable: u64,
    /// The first one that could not be read, with the error.
    example: Option<String>,
}

/// How many blob files doctor opens (and reads a byte of) to find bodies that cannot be
/// read: enough to notice a store whose files lost their owner or mode, cheap on any
/// size of store. `tegami check` reads every one.
const BLOBS_OPENED: u64 = 2000;

/// Number and total size of the blob files in `blobs/ab/<sha256>`; None without `blobs/`.
fn blob_stats(root: &Path) -> io::Result<Option<BlobStats>> {
    let is_fan =
        |e: &fs::DirEntry| e.file_name().len() == 2 && e.file_type().is_ok_and(|t| t.is_dir());
    let top = match fs::read_dir(root) {
        Ok(top) => top,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut stats = BlobStats::default();
    for a in top.flatten().filter(is_fan) {
        for file in fs::read_dir(a.path())?.flatten() {
            let name = file.file_name();
            let is_blob = name.len() == 64
                && name
                    .to_str()
                    .is_some_and(|n| n.bytes().all(|c| c.is_ascii_hexdigit()));
            if is_blob && let Ok(meta) = file.metadata() {
                stats.count += 1;
                stats.bytes += meta.len();
                if stats.opened < BLOBS_OPENED {
                    stats.opened += 1;
                    let read = File::open(file.path()).and_then(|f| f.take(1).read(&mut [0u8]));
                    match read {
                        Ok(_) => {}
                        // Removed since it was listed (an expunge): not a fault.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => {
                            stats.unreadable += 1;
                            stats.example.get_or_insert_with(|| {
                                format!(
                                    "blobs/{}/{}: {e}",
                                    a.file_name().to_string_lossy(),
                                    name.to_string_lossy()
                                )
                            });
                        }
                    }
                }
            }
        }
    }
    Ok(Some(stats))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Severity;

    #[test]
    fn schema_versions_are_judged() {
        assert_eq!(schema_verdict(3, 3).0, Severity::Ok);
        assert_eq!(schema_verdict(2, 3).0, Severity::Warn);
        assert_eq!(schema_verdict(0, 3).0, Severity::Warn);
        assert_eq!(schema_verdict(4, 3).0, Severity::Fail);
    }

    #[test]
    fn the_store_group_reads_the_files_the_backend_describes() {
        let dir = tempfile::tempdir().unwrap();
        let g = store(dir.path(), 1024);
        assert_eq!(g.findings[0].value, "tegami.db does not exist yet");
        assert_eq!(g.findings[0].status, Severity::Warn);

        // An empty file is an empty database (schema 0, to be migrated); a WAL above its
        // cap is a warning.
        fs::write(dir.path().join("tegami.db"), b"").unwrap();
        fs::write(dir.path().join("tegami.db-wal"), vec![0u8; 2048]).unwrap();
        let g = store(dir.path(), 1024);
        assert_eq!(g.findings[0].value, "tegami.db 0 B, WAL 2.0 KiB, shm 0 B");
        assert_eq!(g.findings[0].status, Severity::Warn);
        assert!(g.findings[1].value.starts_with("0 (this tegami: "));
        assert_eq!(g.findings[1].status, Severity::Warn);

        fs::write(dir.path().join("tegami.db"), b"not a database").unwrap();
        let g = store(dir.path(), 1 << 20);
        assert_eq!(g.findings[0].status, Severity::Ok);
        assert!(g.findings[1].value.starts_with("tegami.db is truncated"));
        assert_eq!(g.findings[1].status, Severity::Fail);
        assert_eq!(g.findings[2].value, "blobs/ does not exist yet");
    }
}
