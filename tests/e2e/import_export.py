#!/usr/bin/env python3
"""`tegami import mbox|maildir` and `tegami export mbox`, with a damaged mail drop.

The mbox is the seed's qpopper mail drop after a power cut: a run of NUL bytes at its head
(where the first message was), NULs inside one message, a body line starting `From `, a
`>From ` quoted line, and a last message cut short inside its header section. It is
imported while the server runs; IMAP then serves every intact message byte for byte, with
the flags of its Status/X-Status headers; the report names the skipped ranges by byte
offset; `log/import.log` holds the summary. A second import adds nothing ("already
present"). The mailbox exported as mbox reads back with Python's `mailbox.mbox` and,
imported into another account, gives the same messages. A Maildir++ tree is imported with
its flags visible in IMAP FETCH FLAGS and its subfolder as a mailbox. `tegami check`
passes at the end.
"""

import mailbox
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import ok  # noqa: E402

PW = {"alice@example.com": "alice-pw", "bob@example.com": "bob-pw"}


def message(n, extra="", body=None):
    body = body or f"body of message {n}\nsecond line\n"
    return f"Return-Path: <s{n}@ext.test>\nMessage-ID: <m{n}@import.test>\nSubject: message {n}\n{extra}\n{body}"


def from_line(n):
    return f"From s{n}@ext.test Wed Dec 17 15:{n:02d}:00 2008\n"


def crlf(s):
    return s.replace("\n", "\r\n").encode()


def fetch_all(port, user, box):
    """Every message of a mailbox over IMAP: (bytes, flags) in UID order."""
    m = h.imap_login(port, user, PW[user])
    try:
        typ, data = m.select(f'"{box}"', readonly=True)
        assert typ == "OK", f"SELECT {box}: {typ} {data}"
        if int(data[0]) == 0:
            return []
        typ, data = m.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
        assert typ == "OK", f"FETCH: {typ} {data}"
        out = []
        for item in data:
            if isinstance(item, tuple):
                flags = re.search(rb"FLAGS \(([^)]*)\)", item[0])
                out.append((item[1], set(flags.group(1).decode().split()) if flags else set()))
        return out
    finally:
        m.logout()


def test():
    t = h.Tegami("import")
    t.domain("example.com")
    for user, pw in PW.items():
        t.account(user, pw)
    srv = t.serve()

    # -- the damaged mail drop -----------------------------------------------------------
    m1 = message(1, "Status: RO\n")
    m2 = message(2, "Status: RO\nX-Status: AF\n", "a body line follows\n\nFrom here on it is text\n>From quoted\n")
    m3 = message(3)
    head = b"\0" * 4096
    mbox_bytes = (
        head
        + (from_line(1) + m1 + "\n").encode()
        + (from_line(2) + m2.replace(">From quoted", ">>From quoted") + "\n").encode()
        + (from_line(3) + m3 + "\n").encode().replace(b"second", b"sec\0\0\0ond")
    )
    cut_at = len(mbox_bytes)
    mbox_bytes += (from_line(4) + "Return-Path: <s4@ext.test>\nSubject: cut").encode()
    path = t.root / "damaged.mbox"
    path.write_bytes(mbox_bytes)

    r = t.cli("import", "mbox", str(path), "--account", "alice@example.com", "--mailbox", "Imported")
    h.note(r.out.strip())
    assert "imported 3 messages" in r.out, r
    assert "skipped bytes 0..4096: 4096 NUL bytes outside any message" in r.out, r
    assert f"skipped bytes {cut_at}..{len(mbox_bytes)}: message cut short" in r.out, r
    ok("import of a damaged mbox while the server runs: 3 imported, the NUL head and the cut message reported by offset")

    got = fetch_all(srv.imap, "alice@example.com", "Imported")
    want = [crlf(m1), crlf(m2), crlf(m3)]
    assert [g[0] for g in got] == want, f"IMAP serves {[g[0] for g in got]!r}, wanted {want!r}"
    assert got[0][1] == {"\\Seen"}, got[0][1]
    assert got[1][1] == {"\\Seen", "\\Answered", "\\Flagged"}, got[1][1]
    assert got[2][1] == set(), got[2][1]
    ok("IMAP serves every intact message byte for byte (NULs removed, >From unquoted) with Status/X-Status flags")

    log = (t.data / "log" / "import.log").read_text()
    assert "imported 3 messages" in log and "0..4096" in log, log
    ok("log/import.log holds the summary")

    r = t.cli("import", "mbox", str(path), "--account", "alice@example.com", "--mailbox", "Imported")
    assert "imported 0 messages" in r.out and "3 already present" in r.out, r
    assert len(fetch_all(srv.imap, "alice@example.com", "Imported")) == 3
    ok("re-import adds nothing: 3 already present")

    # -- export and round trip -----------------------------------------------------------
    out = t.root / "export" / "alice.mbox"
    out.parent.mkdir()
    r = t.cli("export", "mbox", "--account", "alice@example.com", "--mailbox", "Imported", str(out))
    assert "3 messages" in r.out, r
    exported = out.read_bytes()
    assert exported.startswith(b"From s1@ext.test Wed Dec 17 15:01:00 2008\n"), exported[:80]
    assert b"\n>>From quoted\n" in exported and b"\n>From here on" in exported, exported
    assert b"\r" not in exported
    box = mailbox.mbox(str(out), create=False)
    subjects = [m["Subject"] for m in box]
    box.close()
    assert subjects == ["message 1", "message 2", "message 3"], subjects
    ok("export writes mboxrd with LF ends, the Return-Path sender and >From quoting; Python's mailbox reads it")

    r = t.cli("import", "mbox", str(out), "--account", "bob@example.com")
    assert "imported 3 messages" in r.out and "skipped 0" in r.out, r
    bob = fetch_all(srv.imap, "bob@example.com", "INBOX")
    assert [g[0] for g in bob] == want, f"round trip gave {bob!r}"
    ok("the export imported into another account gives identical messages")

    # -- Maildir++ -----------------------------------------------------------------------
    md = t.root / "Maildir"
    for folder in (md, md / ".Lists.rust"):
        for sub in ("cur", "new", "tmp"):
            (folder / sub).mkdir(parents=True)
    (md / "dovecot-keywords").write_text("0 $Forwarded\n")
    (md / "cur" / "1000.a.host:2,RS").write_text(message(10))
    (md / "cur" / "1001.a.host:2,Fa").write_text(message(11))
    (md / "new" / "1002.a.host").write_text(message(12))
    (md / ".Lists.rust" / "cur" / "1003.a.host:2,ST").write_text(message(13))
    r = t.cli("import", "maildir", str(md), "--account", "bob@example.com")
    assert "imported 4 messages" in r.out, r
    inbox = fetch_all(srv.imap, "bob@example.com", "INBOX")[3:]
    assert [g[0] for g in inbox] == [crlf(message(n)) for n in (10, 11, 12)], inbox
    assert [g[1] for g in inbox] == [{"\\Answered", "\\Seen"}, {"\\Flagged", "$Forwarded"}, set()], inbox
    sub = fetch_all(srv.imap, "bob@example.com", "Lists/rust")
    assert sub == [(crlf(message(13)), {"\\Seen", "\\Deleted"})], sub
    r = t.cli("import", "maildir", str(md), "--account", "bob@example.com")
    assert "imported 0 messages" in r.out and "4 already present" in r.out, r
    ok("Maildir++ import: flags and Dovecot keywords in FETCH FLAGS, .Lists.rust as Lists/rust, no duplicates")

    assert srv.stop() == 0
    t.check_store("after import and export")
    ok("tegami check passes")


if __name__ == "__main__":
    h.main(test, timeout=180)
