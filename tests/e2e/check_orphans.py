#!/usr/bin/env python3
"""Unreferenced message bodies are reported, quarantined and recovered, never deleted (16.9).

The finding: after a crash cut the write-ahead log short, acknowledged messages vanished
from the index while their blob files stayed; `check` said "healthy" and `check --repair`
deleted those files, the only copies. Here six messages arrive by SMTP; with the server
stopped, the rows of three are deleted from tegami.db (what the lost log leaves) and the
files aged an hour. Then: `check` exits non-zero, counts 3 unreferenced bodies and says how
to get them back; `check --repair` moves them to quarantine/orphans/ and deletes no file;
`optimize` deletes none either; `check --recover-orphans --account` puts them into a
Recovered mailbox, where an IMAP client reads them byte for byte, unread; `check` is healthy.
"""

import hashlib
import os
import re
import sqlite3
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import ok  # noqa: E402

USER, PW = "alice@example.com", "alice-pw"


def msg(n):
    return (
        f"From: s@ext.test\r\nTo: {USER}\r\nMessage-ID: <orphan-{n}@check.test>\r\n"
        f"Subject: message {n}\r\n\r\nbody of message {n}\r\n"
    ).encode()


def all_files(t):
    """Every file below blobs/ and quarantine/, by sha-256 of its bytes."""
    out = {}
    for top in ("blobs", "quarantine"):
        for p in (t.data / top).rglob("*"):
            if p.is_file() and re.fullmatch(r"[0-9a-f]{64}(\.\d+)?", p.name):
                out[hashlib.sha256(p.read_bytes()).hexdigest()] = p
    return out


def test():
    t = h.Tegami("check-orphans")
    t.domain("example.com")
    t.account(USER, PW)
    srv = t.serve()
    for n in range(6):
        h.send(srv.smtp, "s@ext.test", [USER], msg(n))
    srv.stop()
    stored = {hashlib.sha256(p.read_bytes()).hexdigest(): p.read_bytes() for p in t.blob_files()}
    lost = {}
    db = sqlite3.connect(t.data / "tegami.db")
    try:
        for n in (1, 3, 4):
            needle = f"<orphan-{n}@check.test>".encode()
            digest = next(d for d, b in stored.items() if needle in b)
            lost[digest] = stored[digest]
            db.execute("DELETE FROM messages WHERE blob_hash = ?", (bytes.fromhex(digest),))
            db.execute("DELETE FROM blobs WHERE hash = ?", (bytes.fromhex(digest),))
        db.commit()
    finally:
        db.close()
    hour_ago = time.time() - 3600
    for p in t.blob_files():
        os.utime(p, (hour_ago, hour_ago))
    ok("6 messages delivered; the rows of 3 deleted as a cut-short log would; files aged an hour")

    r = t.cli("check", check=False, timeout=120)
    text = r.out + r.err
    assert r.code != 0, f"check called a store with 3 unreferenced bodies healthy: {r!r}"
    assert not r.out.startswith("result: healthy"), r
    assert "3 unreferenced message bodies" in text, f"check does not count the unreferenced bodies: {r!r}"
    assert "--recover-orphans" in text, f"check does not say how to get them back: {r!r}"
    h.note(r.out.splitlines()[0])
    h.note(r.err.strip())
    ok(f"check: exit {r.code}, counts 3 unreferenced message bodies and says how to recover them")

    before = all_files(t)
    r = t.cli("check", "--repair", check=False, timeout=120)
    assert r.code != 0, f"check --repair settled lost mail by itself: {r!r}"
    after = all_files(t)
    assert set(after) == set(before), f"check --repair deleted files: {set(before) - set(after)}"
    for digest in lost:
        assert after[digest].parent == t.data / "quarantine" / "orphans", f"{digest} not quarantined: {after[digest]}"
    ok("check --repair: moved the 3 bodies to quarantine/orphans/, deleted no file, still exits non-zero")

    r = t.cli("optimize", timeout=120)
    assert set(all_files(t)) == set(before), f"optimize deleted files: {r!r}"
    r = t.cli("check", check=False, timeout=120)
    assert r.code != 0 and "3 unreferenced message bodies" in r.out + r.err, f"check after the repair: {r!r}"
    ok("optimize deleted nothing; check still counts the 3 waiting bodies")

    r = t.cli("check", "--recover-orphans", check=False, timeout=120)
    assert r.code != 0 and "--account" in r.err, f"--recover-orphans without --account: {r!r}"
    r = t.cli("check", "--recover-orphans", "--account", "nobody@example.com", check=False, timeout=120)
    assert r.code != 0 and "nobody@example.com" in r.err, f"recovery into an unknown account: {r!r}"
    r = t.cli("check", "--recover-orphans", "--account", USER, timeout=120)
    assert "recovered 3 " in r.out, f"recovery: {r!r}"
    assert not any((t.data / "quarantine" / "orphans").iterdir()), "quarantine/orphans/ not emptied"
    ok(f"check --recover-orphans --account {USER}: {r.out.splitlines()[0]}")

    t.check_store("after the recovery")
    srv = t.serve()
    m = h.imap_login(srv.imap, USER, PW)
    typ, data = m.select("Recovered")
    assert typ == "OK" and int(data[0]) == 3, f"SELECT Recovered: {typ} {data}"
    typ, data = m.fetch("1:*", "(FLAGS BODY.PEEK[])")
    assert typ == "OK", f"FETCH: {typ} {data}"
    bodies = sorted(part[1] for part in data if isinstance(part, tuple))
    assert bodies == sorted(lost.values()), f"Recovered holds other bytes: {bodies!r}"
    flags = [part[0] for part in data if isinstance(part, tuple)]
    assert not any(b"\\Seen" in f for f in flags), f"recovered mail is not unread: {flags}"
    m.logout()
    srv.stop()
    ok("IMAP reads the 3 recovered messages in Recovered byte for byte, unread; check is healthy")


if __name__ == "__main__":
    h.main(test, timeout=180)
