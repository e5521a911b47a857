//! The conformance suite (`store::conformance`) run against the embedded SQLite backend,
//! and what only SQLite has: its pragmas and its files.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use store::conformance::{Backend, Corruption, SetAside};
use store::prelude::*;
use store::{BlobId, CheckOptions, SqliteStore};

/// A store in a temporary directory; damage is done to its files and rows directly.
struct Sqlite {
    dir: tempfile::TempDir,
    store: Mutex<Option<Arc<SqliteStore>>>,
}

impl Sqlite {
    fn new() -> Sqlite {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        Sqlite {
            dir,
            store: Mutex::new(Some(Arc::new(store))),
        }
    }

    fn sqlite(&self) -> Arc<SqliteStore> {
        self.store
            .lock()
            .unwrap()
            .clone()
            .expect("the store is open")
    }

    fn blob_path(&self, blob: &BlobId) -> PathBuf {
        self.sqlite().blobs().path(blob)
    }

    /// A statement run beside the store on its own connection, as a bug or another program would.
    fn execute(&self, sql: &str, params: impl rusqlite::Params) {
        let db = rusqlite::Connection::open(self.dir.path().join("tegami.db")).unwrap();
        db.execute(sql, params).unwrap();
    }
}

impl Backend for Sqlite {
    fn store(&self) -> Arc<dyn Store> {
        self.sqlite()
    }

    fn reopen(&self) -> Arc<dyn Store> {
        let mut slot = self.store.lock().unwrap();
        let old = slot.take().expect("the store is open");
        assert_eq!(
            Arc::strong_count(&old),
            1,
            "the caller still holds the store"
        );
        drop(old);
        let store = Arc::new(SqliteStore::open(self.dir.path()).unwrap());
        *slot = Some(store.clone());
        store
    }

    fn bodies(&self) -> usize {
        self.sqlite().blobs().list().unwrap().len()
    }

    fn has_body(&self, blob: &BlobId) -> bool {
        self.sqlite().blobs().exists(blob)
    }

    fn damage_body(&self, blob: &BlobId) -> Vec<u8> {
        let path = self.blob_path(blob);
        let mut data = std::fs::read(&path).unwrap();
        let middle = data.len() / 2;
        data[middle] ^= 0x01;
        std::fs::write(&path, &data).unwrap();
        data
    }

    fn lose_body(&self, blob: &BlobId) {
        std::fs::remove_file(self.blob_path(blob)).unwrap();
    }

    fn plant_orphan(&self, bytes: &[u8], age: Duration) -> BlobId {
        let blob = self.sqlite().blobs().put(bytes).unwrap();
        std::fs::File::options()
            .write(true)
            .open(self.blob_path(&blob))
            .unwrap()
            .set_modified(SystemTime::now() - age)
            .unwrap();
        blob
    }

    fn set_aside(&self, blob: &BlobId, why: SetAside) -> Option<Vec<u8>> {
        let dir = match why {
            SetAside::Damaged => self.dir.path().join("quarantine"),
            SetAside::Orphan => self.dir.path().join(store::ORPHANS_DIR),
        };
        std::fs::read(dir.join(blob.to_string())).ok()
    }

    fn corrupt(&self, corruption: Corruption) {
        match corruption {
            Corruption::MessageSize { blob, grow_by } => self.execute(
                "UPDATE messages SET size = size + ?2 WHERE blob_hash = ?1",
                rusqlite::params![&blob.0[..], grow_by],
            ),
            Corruption::UidNext { mailbox, uid_next } => self.execute(
                "UPDATE mailboxes SET uidnext = ?2 WHERE id = ?1",
                rusqlite::params![mailbox.0, uid_next],
            ),
            Corruption::Usage { account, used } => self.execute(
                "UPDATE accounts SET used = ?2 WHERE id = ?1",
                rusqlite::params![account.0, used as i64],
            ),
        }
    }
}

#[test]
fn sqlite_passes_the_conformance_suite() {
    assert!(store::conformance::case_count() >= 30);
    store::conformance::suite(&|| Box::new(Sqlite::new()));
}

fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    store.add_domain("example.com").unwrap();
    (dir, store)
}

fn pragma(db: &std::path::Path, name: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.pragma_query_value(None, name, |r| r.get(0)).unwrap()
}

#[test]
fn new_databases_give_free_pages_back_incrementally() {
    let (dir, _store) = store();
    assert_eq!(pragma(&dir.path().join("tegami.db"), "auto_vacuum"), 2);
}

#[test]
fn optimize_gives_the_pages_of_a_mass_expunge_back_and_truncates_the_wal() {
    let (dir, store) = store();
    let db = dir.path().join("tegami.db");
    let alice = store.add_account("alice@example.com", "pw").unwrap();
    let store = Arc::new(store);
    store::conformance::deliver_many(&(store.clone() as Arc<dyn Store>), alice, 1500);
    let inbox = store.mailbox(alice, "INBOX").unwrap();
    let ids: Vec<_> = store
        .messages(inbox.id)
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    store.expunge(inbox.id, &ids).unwrap();
    let pages_before = pragma(&db, "page_count");
    let free_before = pragma(&db, "freelist_count");
    assert!(
        free_before > 10,
        "{free_before} free pages after the expunge"
    );
    let wal = dir.path().join("tegami.db-wal");
    assert!(std::fs::metadata(&wal).unwrap().len() > 0);

    let report = store.optimize().unwrap();
    assert!(report.analyzed, "{report}");
    assert_eq!(report.free_pages_before as i64, free_before, "{report}");
    assert_eq!(report.free_pages_after, 0, "{report}");
    // The planner statistics (sqlite_stat1, written by ANALYZE) take a few of those pages.
    assert!(report.pages_freed as i64 >= free_before - 8, "{report}");
    assert!(report.wal_bytes_before > 0, "{report}");
    assert!(report.checkpoint_complete, "{report}");
    assert_eq!(report.wal_bytes_after, 0, "{report}");
    assert_eq!(std::fs::metadata(&wal).unwrap().len(), 0);
    assert!(
        report.database_bytes_after < report.database_bytes_before,
        "{report}"
    );
    assert!(report.not_done.is_empty(), "{report}");

    // Seen from outside: no free pages, and the file holds exactly the pages in use.
    assert_eq!(pragma(&db, "freelist_count"), 0);
    let pages_after = pragma(&db, "page_count");
    assert!(pages_after < pages_before, "{pages_after} < {pages_before}");
    let page_size = pragma(&db, "page_size") as u64;
    assert_eq!(
        std::fs::metadata(&db).unwrap().len(),
        pages_after as u64 * page_size
    );
    let text = report.to_string();
    assert!(
        text.contains("free pages") && text.contains("write-ahead log"),
        "{text}"
    );
    assert!(store.check(&CheckOptions::default()).unwrap().is_healthy());
}

#[test]
fn optimize_converts_an_old_database_to_incremental_auto_vacuum() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tegami.db");
    {
        // A database as earlier releases made it: auto_vacuum NONE, fixed once written.
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x); DROP TABLE t;")
            .unwrap();
    }
    let store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(pragma(&db, "auto_vacuum"), 0);
    store.add_domain("example.com").unwrap();
    let report = store.optimize().unwrap();
    assert!(report.vacuumed, "{report}");
    assert_eq!(pragma(&db, "auto_vacuum"), 2);
    let report = store.optimize().unwrap();
    assert!(
        !report.vacuumed,
        "converted once, not on every run: {report}"
    );
    assert_eq!(store.domains().unwrap(), ["example.com"]);
}
