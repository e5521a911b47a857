#!/usr/bin/env python3
"""Every store tegami has ever written opens with today's binary, and no mail is lost.

tests/fixtures/upgrade/vN/ holds a store written by the first commit of each schema version
N, made with that commit's own binary and clients (scripts/make-upgrade-fixtures), and a
manifest of what its clients saw. For each one this copies the store, starts the current
`serve` on it, and checks through imaplib and poplib every mailbox's UIDVALIDITY and every
message's UID, flags, RFC822.SIZE and bytes (SHA-256), and the POP3 UIDL list, against that
manifest. Then: `tegami check` is clean, no blob is left in the old two-level layout
(blobs/ab/cd/<hash>, up to version 3), and a store that had to migrate has its pre-migration
backup, holding every body and passing `backup verify`.

Last, the refusal the other way: a store whose schema is newer than this binary knows is
refused by `check`, `account list` and `serve`, and not one file changes (every file hashed
before and after). The real old binaries' refusal of a store migrated by today's binary
cannot run here, since CI cannot build old commits: the generator checks it once and its
result is in each manifest (`old_binary_on_migrated_store`), which this test reads back.
That refusal rests on the schema number alone, so a record made against any newer schema
stands; only the fixture that was newest when made has none, and is made again (with the
next schema) to get one.
"""

import hashlib
import imaplib
import json
import os
import poplib
import re
import smtplib
import sqlite3
import subprocess
import sys
import tarfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import ok  # noqa: E402

FIXTURES = h.REPO / "tests" / "fixtures" / "upgrade"


def sha(data):
    return hashlib.sha256(data).hexdigest()


def parse_list(line):
    m = re.match(rb'\((?P<flags>[^)]*)\) (?:NIL|"(?:[^"\\]|\\.)*") (?P<name>.+)$', line)
    assert m, line
    name = m.group("name")
    if name.startswith(b'"'):
        name = name[1:-1].replace(b'\\"', b'"').replace(b"\\\\", b"\\")
    return name.decode(), m.group("flags").decode().split()


def imap_view(port, user, password):
    """{mailbox: {uidvalidity, messages: [{uid, flags, size, sha256}]}}, read with EXAMINE
    and BODY.PEEK so that looking changes nothing. \\Recent is a session's, not the store's."""
    m = imaplib.IMAP4(h.HOST, port, timeout=30)
    m.login(user, password)
    typ, data = m.list()
    assert typ == "OK", data
    boxes = {}
    for line in data:
        name, attrs = parse_list(line)
        if "\\Noselect" in attrs or "\\NonExistent" in attrs:
            continue
        typ, data = m.select(f'"{name}"', readonly=True)
        assert typ == "OK", (name, data)
        uidvalidity = int(m.response("UIDVALIDITY")[1][0])
        uidnext = int(m.response("UIDNEXT")[1][0])
        msgs = []
        typ, data = m.uid("FETCH", "1:*", "(UID FLAGS RFC822.SIZE)")
        assert typ == "OK", (name, data)
        for item in data:
            if item is None:
                continue
            text = item if isinstance(item, bytes) else item[0]
            uid = int(re.search(rb"UID (\d+)", text).group(1))
            flags = re.search(rb"FLAGS \(([^)]*)\)", text).group(1).decode().split()
            size = int(re.search(rb"RFC822\.SIZE (\d+)", text).group(1))
            typ, body = m.uid("FETCH", str(uid), "(BODY.PEEK[])")
            assert typ == "OK", (name, uid, body)
            raw = next(part[1] for part in body if isinstance(part, tuple))
            assert len(raw) == size, (user, name, uid, len(raw), size)
            msgs.append({"uid": uid, "flags": sorted(f for f in flags if f != "\\Recent"), "size": size, "sha256": sha(raw)})
        boxes[name] = {"uidvalidity": uidvalidity, "uidnext": uidnext, "messages": sorted(msgs, key=lambda x: x["uid"])}
    m.logout()
    return boxes


def pop3_view(port, user, password):
    """[{uidl, size, sha256}] in message-number order; every fixture body ends in CRLF, so
    the lines RETR gives, joined again, are the stored bytes."""
    p = poplib.POP3(h.HOST, port, timeout=30)
    p.user(user)
    p.pass_(password)
    _, uidls, _ = p.uidl()
    _, sizes, _ = p.list()
    out = []
    for u, s in zip(uidls, sizes):
        n, uidl = u.decode().split(" ", 1)
        n2, size = s.decode().split()
        assert n == n2, (u, s)
        _, lines, _ = p.retr(int(n))
        out.append({"uidl": uidl, "size": int(size), "sha256": sha(b"\r\n".join(lines) + b"\r\n")})
    p.quit()
    return out


def snapshot(root):
    """Every file's bytes (the stores are small)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def changes(before, after):
    """(files changed that belong to the store, bookkeeping a refused `serve` may write).

    `serve` takes its lock before it opens the store and writes its pid into tegami.lock,
    and logs why it stops to log/: neither holds mail, and the log line is how an operator
    learns of the refusal. Every other file must be byte for byte as it was."""
    store, bookkeeping = [], []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if name == "tegami.lock" and re.fullmatch(rb"\d*\n?", new or b""):
            bookkeeping.append(name)
        elif name.startswith("log/") and new is not None and new.startswith(old or b""):
            bookkeeping.append(name)
        else:
            store.append(name)
    return store, bookkeeping


def user_version(data):
    # Read-only, never immutable: a server's write-ahead log may hold the newest version.
    db = sqlite3.connect(f"file:{data / 'tegami.db'}?mode=ro", uri=True)
    try:
        return db.execute("PRAGMA user_version").fetchone()[0]
    finally:
        db.close()


def old_layout_files(data):
    return [p for p in (data / "blobs").glob("??/??/*") if p.is_file()]


def upgrade(vdir):
    manifest = json.loads((vdir / "manifest.json").read_text())
    version = manifest["version"]
    t = h.Tegami(f"upgrade-v{version}")
    with tarfile.open(vdir / "store.tar.gz") as tar:
        tar.extractall(t.root, filter="data")
    assert user_version(t.data) == version, user_version(t.data)
    had_old_layout = len(old_layout_files(t.data))
    assert (had_old_layout > 0) == (manifest["blob_layout"] == "ab/cd/<hash>"), (had_old_layout, manifest["blob_layout"])

    started = time.monotonic()
    srv = t.serve()
    current = user_version(t.data)
    assert current >= version, (current, version)
    for user, want in manifest["accounts"].items():
        seen = imap_view(srv.imap, user, want["password"])
        for box, expected in want["mailboxes"].items():
            assert box in seen, f"v{version} {user}: mailbox {box!r} is gone; the server lists {sorted(seen)}"
            got = seen[box]
            for key in ("uidvalidity", "uidnext"):
                assert got[key] == expected[key], f"v{version} {user} {box}: {key} {got[key]}, was {expected[key]}"
            assert got["messages"] == expected["messages"], (
                f"v{version} {user} {box}:\n now  {got['messages']}\n was  {expected['messages']}")
        # A mailbox the old server did not have may appear (today's defaults), but empty.
        for box in set(seen) - set(want["mailboxes"]):
            assert not seen[box]["messages"], f"v{version} {user}: new mailbox {box} has mail: {seen[box]}"
        got = pop3_view(srv.pop3, user, want["password"])
        assert got == want["pop3"], f"v{version} {user} POP3:\n now  {got}\n was  {want['pop3']}"
    # New mail after the upgrade takes the next UID, never one a client has seen.
    user, want = next(iter(manifest["accounts"].items()))
    s = smtplib.SMTP(h.HOST, srv.smtp, timeout=30)
    s.sendmail("after@sender.test", [user], b"Subject: after the upgrade\r\n\r\nnew\r\n")
    s.quit()
    inbox = imap_view(srv.imap, user, want["password"])["INBOX"]
    old_inbox = want["mailboxes"]["INBOX"]
    assert inbox["messages"][:-1] == old_inbox["messages"], inbox
    assert inbox["messages"][-1]["uid"] == old_inbox["uidnext"], (inbox["messages"][-1], old_inbox["uidnext"])
    assert inbox["uidvalidity"] == old_inbox["uidvalidity"]
    srv.stop()
    # And the newest tables take writes too (version 6 once shipped without a column).
    t.cli("list", "add", "news", "--from", "news@example.org")
    t.cli("sequence", "create", "news", "welcome", "--join-existing")
    messages = sum(len(b["messages"]) for a in manifest["accounts"].values() for b in a["mailboxes"].values())
    ok(f"v{version} ({manifest['commit']}, blobs in {manifest['blob_layout']}): migrated to {current}; "
       f"{messages} messages in {sum(len(a['mailboxes']) for a in manifest['accounts'].values())} mailboxes "
       f"and {sum(len(a['pop3']) for a in manifest['accounts'].values())} POP3 UIDLs as the old clients saw them; "
       f"new mail takes UID {inbox['messages'][-1]['uid']} (the old UIDNEXT); list add and sequence create work "
       f"({time.monotonic() - started:.1f} s)")

    t.check_store(f"after opening the v{version} store")
    assert not old_layout_files(t.data), f"old-layout blobs left: {old_layout_files(t.data)[:3]}"
    bodies = {m["sha256"] for a in manifest["accounts"].values() for b in a["mailboxes"].values() for m in b["messages"]}
    for digest in bodies:
        assert (t.data / "blobs" / digest[:2] / digest).is_file(), f"blob {digest} not at blobs/ab/<hash>"
    if version < current:
        backups = sorted((t.data / "backups").glob(f"pre-migration-{version}-to-{current}-*"))
        assert len(backups) == 1, f"pre-migration backups: {backups}"
        for digest in bodies:
            kept = backups[0] / "blobs" / digest[:2] / digest
            assert kept.is_file() and sha(kept.read_bytes()) == digest, f"the pre-migration backup lacks {digest}"
        t.cli("backup", "verify", str(backups[0]))
        ok(f"v{version}: check is clean, no blob left in blobs/ab/cd/ ({had_old_layout} moved), and the "
           f"pre-migration backup holds all {len(bodies)} bodies and passes backup verify")
    else:
        ok(f"v{version}: check is clean; the store was current, so no pre-migration backup was needed")

    refusal(t, current)

    # The old binary's refusal rests on the schema number alone (newer than it knows: refused
    # before anything is touched), so a record against any newer schema stands for today's.
    old = manifest.get("old_binary_on_migrated_store")
    if version == current:
        assert old is not None and old["migrated_to"] == current and not old["runs"], old
    else:
        assert old is not None and old["migrated_to"] > version and old["runs"], \
            f"v{version}: no record of the old binary's refusal of a newer store: {old}"
        for run in old["runs"]:
            assert run["refused_and_unchanged"], f"v{version}: the old binary on a migrated store: {run}"
        ok(f"v{version}: recorded when the fixture was made, the old binary refused the migrated store "
           f"({', '.join(r['command'].split(' --')[0] for r in old['runs'])}) and changed no file of it")
    return current


def refusal(t, current):
    """A schema newer than this binary: refused by each way in, with no store file changed."""
    db = sqlite3.connect(t.data / "tegami.db")
    db.execute(f"PRAGMA user_version = {current + 1}")
    db.commit()
    db.close()
    assert not list(t.data.glob("tegami.db-[ws]*")), list(t.data.glob("tegami.db-*"))
    for args in (["check"], ["account", "list"], ["serve"]):
        before = snapshot(t.data)
        if args == ["serve"]:
            srv = t.serve(wait=False)
            code = srv.proc.wait(timeout=30)
            srv._forget()
            said = srv.stderr_text() + srv.log_text()
        else:
            r = t.cli(*args, check=False)
            code, said = r.code, r.out + r.err
        assert code != 0 and "newer than this tegami" in said, (args, code, said)
        store, bookkeeping = changes(before, snapshot(t.data))
        assert not store, f"{' '.join(args)} refused the store, but changed {store}"
        assert args == ["serve"] or not bookkeeping, f"{' '.join(args)} changed {bookkeeping}"
    ok(f"schema {current + 1} (newer than this binary's {current}): check, account list and serve refuse it; "
       f"no file of the store changes (serve writes only its pid to tegami.lock and the reason to log/)")


def test():
    vdirs = sorted(FIXTURES.glob("v*"), key=lambda p: int(p.name[1:]))
    assert vdirs, f"no fixtures in {FIXTURES}"
    versions = [int(p.name[1:]) for p in vdirs]
    assert versions == list(range(1, len(versions) + 1)), f"a schema version has no fixture: {versions}"
    current = [upgrade(vdir) for vdir in vdirs][-1]
    # A new schema version needs its fixture too (scripts/make-upgrade-fixtures).
    assert versions[-1] == current, f"schema {current} has no fixture; the newest is v{versions[-1]}"
    ok(f"a fixture for every schema version 1..{current}")


if __name__ == "__main__":
    h.main(test, timeout=240)
