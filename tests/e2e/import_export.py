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
its flags visible in IMAP FETCH FLAGS and its subfolder as a mailbox. An account with
nested mailboxes, a name with dots, an empty mailbox, a message held twice, flags and
keywords is exported as Maildir++ (refused into a non-empty directory), and imported into
a fresh account it gives the same mailboxes, bytes, flags, keywords and INTERNALDATEs.
`tegami check` passes at the end.
"""

import mailbox
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import ok  # noqa: E402

PW = {
    "alice@example.com": "alice-pw",
    "bob@example.com": "bob-pw",
    "carol@example.com": "carol-pw",
    "dave@example.com": "dave-pw",
}


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


def list_names(port, user):
    m = h.imap_login(port, user, PW[user])
    try:
        typ, data = m.list('""', "*")
        assert typ == "OK", f"LIST: {typ} {data}"
        names = set()
        for line in data:
            name = re.search(rb'\) "/" (.*)$', line).group(1).decode()
            names.add(name[1:-1].replace('\\"', '"').replace("\\\\", "\\") if name.startswith('"') else name)
        return names
    finally:
        m.logout()


def fetch_dated(port, user, box):
    """(bytes, flags, INTERNALDATE) of every message of a mailbox, in UID order."""
    m = h.imap_login(port, user, PW[user])
    try:
        typ, data = m.select(f'"{box}"', readonly=True)
        assert typ == "OK", f"SELECT {box}: {typ} {data}"
        if int(data[0]) == 0:
            return []
        typ, data = m.uid("FETCH", "1:*", "(FLAGS INTERNALDATE BODY.PEEK[])")
        assert typ == "OK", f"FETCH: {typ} {data}"
        out = []
        for item in data:
            if isinstance(item, tuple):
                flags = re.search(rb"FLAGS \(([^)]*)\)", item[0]).group(1).decode().split()
                date = re.search(rb'INTERNALDATE "([^"]*)"', item[0]).group(1).decode()
                # \Recent belongs to a session, not to the message: left out of the comparison.
                out.append((item[1], sorted(f for f in flags if f != "\\Recent"), date))
        return out
    finally:
        m.logout()


def maildir_round_trip(t, srv):
    """`export maildir` of carol's account, then `import maildir` into dave's."""
    base = 1_600_000_000
    boxes = {
        "INBOX": [(20, r"(\Seen)"), (21, r"(\Answered \Seen $Forwarded)"), (22, None)],
        "Work": [(23, r"(\Flagged Work)")],
        "Work/2024": [(24, r"(\Draft)"), (24, r"(\Draft)"), (25, r"(\Deleted \Seen Later $Junk)")],
        "v1.2 notes": [(26, r"(\Seen Work)")],
        "Empty.box": [],
    }
    m = h.imap_login(srv.imap, "carol@example.com", PW["carol@example.com"])
    try:
        for box, msgs in boxes.items():
            if box != "INBOX":
                typ, data = m.create(f'"{box}"')
                assert typ == "OK", f"CREATE {box}: {typ} {data}"
            for i, (n, flags) in enumerate(msgs):
                date = base + n * 3600 + i
                typ, data = m.append(f'"{box}"', flags, date, crlf(message(n)))
                assert typ == "OK", f"APPEND {box}: {typ} {data}"
    finally:
        m.logout()
    carol_names = list_names(srv.imap, "carol@example.com")
    assert set(boxes) <= carol_names, carol_names
    carol = {box: fetch_dated(srv.imap, "carol@example.com", box) for box in carol_names}

    busy = t.root / "busy-maildir"
    busy.mkdir()
    (busy / "stray").write_text("x")
    r = t.cli("export", "maildir", "--account", "carol@example.com", str(busy), check=False)
    assert r.code != 0 and "is not empty" in r.err and len(r.err.strip().splitlines()) == 1, r
    assert sorted(p.name for p in busy.iterdir()) == ["stray"], list(busy.iterdir())
    ok("export maildir refuses a non-empty directory in one line and writes nothing there")

    out = t.root / "export-maildir"
    r = t.cli("export", "maildir", "--account", "carol@example.com", str(out))
    h.note(r.out.strip())
    total = sum(len(v) for v in carol.values())
    assert f"{len(carol_names)} mailboxes, {total} messages" in r.out, r
    assert "export maildir" in (t.data / "log" / "import.log").read_text()
    for folder in (out, out / ".Work", out / ".Work.2024", out / ".v1\\2e2 notes", out / ".Empty\\2ebox"):
        for sub in ("cur", "new", "tmp"):
            assert (folder / sub).is_dir(), f"{folder / sub} missing: {sorted(out.iterdir())}"
        assert (folder / "maildirfolder").exists() == (folder != out), folder
        assert not list((folder / "tmp").iterdir()) and not list((folder / "new").iterdir()), folder
    assert (out / "dovecot-keywords").read_text() == "0 $Forwarded\n", (out / "dovecot-keywords").read_text()
    assert (out / ".Work.2024" / "dovecot-keywords").read_text() == "0 $Junk\n1 Later\n"
    assert not (out / ".Empty\\2ebox" / "dovecot-keywords").exists()
    inbox_files = sorted((out / "cur").iterdir())
    names = [p.name for p in inbox_files]
    assert [re.fullmatch(r"(\d+)\.(\d{10})_[0-9a-f]{8}\.tegami:2,([A-Za-z]*)", n) is not None for n in names] == [True] * 3, names
    assert [n.split(":2,")[1] for n in names] == ["S", "RSa", ""], names
    assert [int(p.stat().st_mtime) for p in inbox_files] == [base + 20 * 3600, base + 21 * 3600 + 1, base + 22 * 3600 + 2]
    assert inbox_files[0].read_bytes() == crlf(message(20))
    last = sorted((out / ".Work.2024" / "cur").iterdir())[-1].name
    assert last.endswith(":2,STab"), last
    ok("export maildir writes Maildir++ (.Work.2024, dots as \\2e), flag letters, dovecot-keywords and mtimes")

    r = t.cli("import", "maildir", str(out), "--account", "dave@example.com")
    assert f"imported {total} messages" in r.out and "skipped 0" in r.out, r
    dave_names = list_names(srv.imap, "dave@example.com")
    assert dave_names == carol_names, f"{dave_names} != {carol_names}"
    for box in sorted(carol_names):
        got = fetch_dated(srv.imap, "dave@example.com", box)
        assert got == carol[box], f"{box}: {got!r} != {carol[box]!r}"
    assert carol["Work/2024"][0][0] == carol["Work/2024"][1][0]
    ok(f"Maildir++ round trip: {len(carol_names)} mailboxes (nested, dotted, empty) with the same bytes, flags, keywords, INTERNALDATEs")

    r = t.cli("import", "maildir", str(out), "--account", "dave@example.com")
    assert "imported 0 messages" in r.out and f"{total} already present" in r.out, r
    ok("re-import of the export adds nothing, the message held twice included")


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

    maildir_round_trip(t, srv)

    assert srv.stop() == 0
    t.check_store("after import and export")
    ok("tegami check passes")


if __name__ == "__main__":
    h.main(test, timeout=180)
