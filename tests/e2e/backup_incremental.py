#!/usr/bin/env python3
"""Incremental backups and retention.

Into a separate backup directory with --copy-blobs (no links to the live store): the first
backup copies every blob; a second backup of the unchanged store copies none (its manifest
says 0 copied, 0 bytes) and each of its blob files is the first backup's file, hard-linked
(same inode, link count 2 or more); after five more messages the next copies exactly five.
Into the default DATA/backups on the same file system, without the flag, every blob is the
live store's own file, linked. Then retention, on a clock the test sets (TEGAMI_CLOCK_START,
TZ=UTC): twenty daily backups from 2026-11-01 to 11-20 and an interrupted one; `backup prune
--dry-run --keep-daily 3 --keep-weekly 2` removes nothing, and the real prune keeps the three
newest days and the newest of the two weeks before them (11-15, 11-08), removes the rest and
the interrupted backup, says so in log/backup.log, and every kept backup still verifies.
"""

import contextlib
import os
import re
import sys
import tomllib

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import ok  # noqa: E402


@contextlib.contextmanager
def clock(start):
    old = os.environ.get("TEGAMI_CLOCK_START")
    os.environ["TEGAMI_CLOCK_START"] = start
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TEGAMI_CLOCK_START", None)
        else:
            os.environ["TEGAMI_CLOCK_START"] = old


def create(t, *args):
    r = t.cli("backup", "create", *args, timeout=120)
    m = re.search(r"^backup (\S+) taken", r.out, re.M)
    assert m, r
    return m.group(1), r


def manifest(root, bid):
    return tomllib.loads((root / bid / "manifest.toml").read_text())


def blob_paths(root, bid):
    sums = (root / bid / "SHA256SUMS").read_text().splitlines()
    return sorted(line.split("  ", 1)[1] for line in sums if "  blobs/" in line)


def test():
    os.environ["TZ"] = "UTC"
    t = h.Tegami("incremental")
    t.domain("example.com")
    t.account("alice@example.com", "alice-pw")
    srv = t.serve()
    for i in range(30):
        h.send(srv.smtp, "s@ext.test", ["alice@example.com"], f"Subject: {i}\r\n\r\n{'body ' * (i * 50)}{i}\r\n".encode())
    root = t.root / "elsewhere"

    first, _ = create(t, "--to", str(root), "--copy-blobs")
    m1 = manifest(root, first)
    assert (m1["blobs"], m1["blobs_copied"], m1["blobs_linked"]) == (30, 30, 0), m1
    assert m1["bytes_copied"] == m1["blob_bytes"] > 0, m1
    second, out = create(t, "--to", str(root), "--copy-blobs")
    m2 = manifest(root, second)
    assert (m2["blobs"], m2["blobs_copied"], m2["bytes_copied"], m2["blobs_linked"]) == (30, 0, 0, 30), m2
    assert "0 copied (0 B)" in out.out, out
    paths = blob_paths(root, second)
    assert paths == blob_paths(root, first)
    for rel in paths:
        a, b = (root / first / rel).stat(), (root / second / rel).stat()
        assert a.st_ino == b.st_ino and b.st_nlink >= 2, f"{rel} was copied again: inodes {a.st_ino} {b.st_ino}"
    ok(f"first backup copied all {m1['blobs']} blobs ({m1['bytes_copied']} bytes); the second, of the unchanged "
       "store, copied none: every blob is the first backup's file, hard-linked")

    for i in range(30, 35):
        h.send(srv.smtp, "s@ext.test", ["alice@example.com"], f"Subject: {i}\r\n\r\nnew {i}\r\n".encode())
    third, _ = create(t, "--to", str(root), "--copy-blobs")
    m3 = manifest(root, third)
    assert (m3["blobs"], m3["blobs_copied"], m3["blobs_linked"]) == (35, 5, 30), m3
    ok("after five new messages the next backup copied exactly five blobs")

    local, _ = create(t)
    default_root = t.data / "backups"
    m4 = manifest(default_root, local)
    assert (m4["blobs_copied"], m4["blobs_linked"]) == (0, 35), m4
    for rel in blob_paths(default_root, local):
        assert (default_root / local / rel).stat().st_ino == (t.data / rel).stat().st_ino, rel
    ok("into DATA/backups on the same file system every blob is the live store's own file, linked")

    # Regression (issue 16.7): --copy-blobs after a linked backup in the same directory linked
    # from that backup, and so shared the live store's inodes.
    copied, _ = create(t, "--copy-blobs")
    m5 = manifest(default_root, copied)
    assert (m5["blobs_copied"], m5["blobs"]) == (35, 35), m5
    shared = [rel for rel in blob_paths(default_root, copied)
              if (default_root / copied / rel).stat().st_ino == (t.data / rel).stat().st_ino]
    assert not shared, f"--copy-blobs shares {len(shared)} files with the live store, e.g. {shared[:2]}"
    ok("copy_blobs after a linked backup in the same directory: 35 copied, no file shared with the live store")
    srv.stop()

    days = t.root / "daily"
    for day in range(1, 21):
        with clock(f"2026-11-{day:02d}T23:00:00"):
            bid, _ = create(t, "--to", str(days))
            assert bid.startswith(f"202611{day:02d}T2300"), bid
    (days / ".20261121T230000Z.partial").mkdir()
    before = sorted(p.name for p in days.iterdir() if not p.name.startswith("."))
    assert len(before) == 20, before
    r = t.cli("backup", "prune", "--dir", str(days), "--keep-daily", "3", "--keep-weekly", "2", "--dry-run")
    assert r.out.count("would remove") == 15, r
    assert sorted(p.name for p in days.iterdir() if not p.name.startswith(".")) == before
    with clock("2026-11-21T08:00:00"):
        r = t.cli("backup", "prune", "--dir", str(days), "--keep-daily", "3", "--keep-weekly", "2")
    kept = sorted(p.name[:8] for p in days.iterdir() if not p.name.startswith("."))
    assert kept == ["20261108", "20261115", "20261118", "20261119", "20261120"], (kept, r.out)
    assert not (days / ".20261121T230000Z.partial").exists(), "the interrupted backup was not removed"
    assert "removed 15 backups" in (t.data / "log" / "backup.log").read_text()
    for p in days.iterdir():
        if not p.name.startswith("."):
            t.cli("backup", "verify", str(p), timeout=120)
    ok("prune --dry-run removes nothing; prune keeps 11-18..20 (daily) and 11-08, 11-15 (weekly), removes the "
       "other 15 and the interrupted backup, logs it, and every kept backup still verifies")


if __name__ == "__main__":
    h.main(test, timeout=300)
