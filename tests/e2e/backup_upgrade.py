#!/usr/bin/env python3
"""A safe upgrade: a store left by schema version 1 is backed up before it is migrated.

The fixture is a data directory as the first release wrote it (the version-1 schema, copied
here from crates/store/src/sqlite/schema.rs, with one account and three messages). `serve`
on it migrates the schema, and first takes a backup: its log says where
(DATA/backups/pre-migration-1-to-N-TIME), `backup list` shows it as a pre-migration backup,
`backup verify` passes, and the server serves the three messages byte for byte. Restored
elsewhere, the backup is the old store (schema version 1, the same mail), and a server
started on it migrates it in turn. `backup prune` leaves pre-migration backups alone.
"""

import hashlib
import os
import re
import sqlite3
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import ok  # noqa: E402

# Version 1 of the schema, exactly as the first release created it.
SCHEMA_V1 = """
CREATE TABLE domains (
    id      INTEGER PRIMARY KEY,
    name    TEXT NOT NULL UNIQUE,
    created INTEGER NOT NULL
);
CREATE TABLE accounts (
    id            INTEGER PRIMARY KEY,
    address       TEXT NOT NULL UNIQUE,
    domain_id     INTEGER NOT NULL REFERENCES domains(id),
    password_hash TEXT NOT NULL,
    created       INTEGER NOT NULL
);
CREATE TABLE aliases (
    id        INTEGER PRIMARY KEY,
    address   TEXT NOT NULL UNIQUE,
    domain_id INTEGER NOT NULL REFERENCES domains(id)
);
CREATE TABLE alias_targets (
    alias_id INTEGER NOT NULL REFERENCES aliases(id) ON DELETE CASCADE,
    target   TEXT NOT NULL,
    PRIMARY KEY (alias_id, target)
) WITHOUT ROWID;
CREATE TABLE mailboxes (
    id          INTEGER PRIMARY KEY,
    account_id  INTEGER NOT NULL REFERENCES accounts(id),
    name        TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    uidnext     INTEGER NOT NULL,
    UNIQUE (account_id, name)
);
CREATE TABLE blobs (
    hash     BLOB PRIMARY KEY,
    size     INTEGER NOT NULL,
    refcount INTEGER NOT NULL CHECK (refcount > 0)
) WITHOUT ROWID;
CREATE TABLE messages (
    id            INTEGER PRIMARY KEY,
    mailbox_id    INTEGER NOT NULL REFERENCES mailboxes(id),
    uid           INTEGER NOT NULL,
    internal_date INTEGER NOT NULL,
    size          INTEGER NOT NULL,
    flags         INTEGER NOT NULL DEFAULT 0,
    blob_hash     BLOB NOT NULL REFERENCES blobs(hash),
    UNIQUE (mailbox_id, uid)
);
CREATE INDEX messages_blob ON messages(blob_hash);
"""


def password_hash(password):
    """A real password hash, made by the binary under test in a scratch store."""
    scratch = h.Tegami("hash")
    scratch.domain("example.com")
    scratch.account("old@example.com", password)
    with sqlite3.connect(scratch.data / "tegami.db") as db:
        return db.execute("SELECT password_hash FROM accounts").fetchone()[0]


def version_1_store(data, messages):
    data.mkdir(parents=True)
    db = sqlite3.connect(data / "tegami.db")
    db.executescript(SCHEMA_V1)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("INSERT INTO domains VALUES (1, 'example.com', 0)")
    db.execute("INSERT INTO accounts VALUES (1, 'old@example.com', 1, ?, 0)", (password_hash("old-pw"),))
    db.execute("INSERT INTO mailboxes VALUES (1, 1, 'INBOX', 1700000000, ?)", (len(messages) + 1,))
    for uid, body in enumerate(messages, start=1):
        digest = hashlib.sha256(body).digest()
        # Where version 1 kept bodies (blobs/ab/cd/<hash>); today's layout is one level.
        path = data / "blobs" / digest.hex()[:2] / digest.hex()[2:4] / digest.hex()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        db.execute("INSERT INTO blobs VALUES (?, ?, 1)", (digest, len(body)))
        db.execute("INSERT INTO messages (mailbox_id, uid, internal_date, size, blob_hash) VALUES (1, ?, 0, ?, ?)",
                   (uid, len(body), digest))
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()


def user_version(data):
    with sqlite3.connect(data / "tegami.db") as db:
        return db.execute("PRAGMA user_version").fetchone()[0]


def test():
    messages = [f"Subject: old {i}\r\n\r\nkept across the upgrade {i}\r\n".encode() for i in range(3)]
    t = h.Tegami("upgrade")
    version_1_store(t.data, messages)
    srv = t.serve()
    line = next((line for line in srv.log_text().splitlines() if "backup taken before migrating" in line), None)
    assert line, f"no line about the pre-migration backup: {srv.log_text()[-2000:]}"
    m = re.search(r"backup=(\S+)", line)
    assert m and "pre-migration-1-to-" in m.group(1), line
    backup = m.group(1).strip('"')
    assert backup.startswith(str(t.data / "backups" / "pre-migration-1-to-")), backup
    current = user_version(t.data)
    assert current >= 2, current
    got = [data for _, _, data in h.pop3_fetch_all(srv.pop3, "old@example.com", "old-pw")]
    assert got == messages, got
    ok(f"serve on a version-1 store took a backup first ({os.path.basename(backup)}; the log says where), "
       f"migrated to version {current}, and serves the old mail byte for byte")

    r = t.cli("backup", "list")
    assert re.search(r"pre-migration-1-to-\S+\s+\S+ \S+\s+pre-migration", r.out), r
    t.cli("backup", "verify", backup)
    r = t.cli("backup", "prune", "--keep-daily", "0", "--keep-weekly", "0")
    assert "remove it by hand" in r.out and os.path.isdir(backup), r
    ok("backup list shows it as a pre-migration backup, verify passes, prune leaves it alone")
    srv.stop()

    old = h.Tegami("upgrade-restored")
    r = old.cli("restore", backup)
    assert "schema version 1" in r.out, r
    assert user_version(old.data) == 1
    srv = old.serve()
    assert user_version(old.data) == current
    got = [data for _, _, data in h.pop3_fetch_all(srv.pop3, "old@example.com", "old-pw")]
    assert got == messages
    srv.stop()
    ok("restored, the backup is the version-1 store with its mail, and a server on it migrates it again")


if __name__ == "__main__":
    h.main(test, timeout=120)
