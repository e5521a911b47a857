#!/usr/bin/env python3
"""IMAP SEARCH answered with the full-text index of live mail equals SEARCH by scanning.

A varied corpus goes to two accounts: plain text, multipart/alternative with a
quoted-printable text part and a base64 HTML part, ISO-2022-JP (subject and body),
Shift_JIS in base64, UTF-8 Japanese in quoted-printable, multipart/mixed with a binary
attachment and an attached message; words and Japanese phrases in Subject, From, To, Cc,
Bcc, other headers and bodies, and one delivery to both accounts (a shared body). Then
COPY, MOVE, APPEND and EXPUNGE. About sixty SEARCH criteria (TEXT, BODY, SUBJECT, FROM, TO,
CC, BCC, HEADER, OR, NOT, substrings inside words and inside runs of Japanese, needles of
one and two characters, upper case) are run in every mailbox with the index on, and again
on the same data with the index moved away and the indexer off (the scan); both must be
equal, and a few are checked against what the corpus says they must find.

Then 2,000 messages are imported while the server is down, the server starts indexing them
and is killed with SIGKILL halfway; restarted with the indexer off, SEARCH answers exactly
from the half-done index (the rest scanned); restarted with it on, the indexer resumes and
SEARCH answers exactly once it has caught up; `index check` finds nothing missing and nothing
expunged, and every body is indexed once. `index rebuild` (and `--account`) leaves the same
answers; an index file of another version is rebuilt.

Between the two parts alice's mail goes into an archive: the indexer follows its mailboxes
too, SEARCH there equals the scan, and a body the index lost shows that the index answers
there, and that `check` names it and `check --repair` mends it.
"""

import base64
import email.charset
import email.header
import email.mime.application
import email.mime.message
import email.mime.multipart
import email.mime.nonmultipart
import email.mime.text
import hashlib
import json
import os
import random
import shutil
import sqlite3
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import imap_common as ic  # noqa: E402
from harness import ok  # noqa: E402

ALICE = "alice@example.com"
BOB = "bob@example.com"
PW = "search-index-pw"
BULK = 2000

WORDS = ["quarterly", "invoice", "meeting", "harbor", "velvet", "quantum", "ledger", "orchid",
         "pumpkin", "saffron", "Straße", "Grüße"]
PHRASES = ["東京都港区の会議", "大阪支店の売上報告", "札幌の天気は雪です", "新製品の発表会", "カタカナの件名"]


# The index is off by default (it costs disk and delivery rate); this test turns it on.
INDEX_ON = "[imap]\nfull_text_index = true\n"


def _qp_utf8():
    cs = email.charset.Charset("utf-8")
    cs.body_encoding = email.charset.QP
    return cs


def _b64(charset):
    cs = email.charset.Charset(charset)
    cs.body_encoding = email.charset.BASE64
    cs.header_encoding = email.charset.BASE64
    return cs


def make(i, rng):
    """Message i of the corpus: (CRLF bytes, the lower-cased text a TEXT search looks in)."""
    words = rng.sample(WORDS, 3)
    kind = i % 6
    if kind in (2, 3):
        # Neither Japanese charset has ü or ß.
        words = [w if w.isascii() else "ledger" for w in words]
    phrase = PHRASES[i % len(PHRASES)]
    subject_word, body_word, html_word = words
    marker = f"mk{i:04d}x"
    placed = [subject_word, body_word, marker]
    if kind == 0:
        m = email.mime.text.MIMEText(f"Plain text with {body_word} and {marker}.\n", "plain", "utf-8")
        m["Subject"] = f"About {subject_word}"
    elif kind == 1:
        m = email.mime.multipart.MIMEMultipart("alternative")
        m.attach(email.mime.text.MIMEText(f"Text part: {body_word} {marker} {phrase}\n", "plain", _qp_utf8()))
        m.attach(email.mime.text.MIMEText(f"<p>HTML only: <b>{html_word}</b>zz</p>\n", "html", _b64("utf-8")))
        m["Subject"] = f"Alternative {subject_word}"
        placed += [phrase, html_word + "zz"]
    elif kind == 2:
        m = email.mime.text.MIMEText(f"{phrase}について。{body_word} {marker}\n", "plain", "iso-2022-jp")
        m["Subject"] = email.header.Header(f"{phrase} {subject_word}", "iso-2022-jp")
        placed.append(phrase)
    elif kind == 3:
        # Built by hand: Python's email package turns Shift_JIS into ISO-2022-JP.
        m = email.mime.nonmultipart.MIMENonMultipart("text", "plain", charset="shift_jis")
        m.set_payload(base64.encodebytes(f"{phrase}です。{body_word} {marker}\n".encode("shift_jis")).decode())
        m["Content-Transfer-Encoding"] = "base64"
        subject = f"Shift {subject_word} {phrase}".encode("shift_jis")
        m["Subject"] = f"=?Shift_JIS?B?{base64.b64encode(subject).decode()}?="
        placed.append(phrase)
    elif kind == 4:
        m = email.mime.text.MIMEText(f"UTF-8 本文 {phrase} {body_word} {marker}\n", "plain", _qp_utf8())
        m["Subject"] = email.header.Header(f"件名 {subject_word}", "utf-8")
        placed.append(phrase)
    else:
        m = email.mime.multipart.MIMEMultipart("mixed")
        m.attach(email.mime.text.MIMEText(f"See attached {body_word} {marker}\n", "plain", "utf-8"))
        m.attach(email.mime.application.MIMEApplication(b"binary attachword " + bytes(range(256)),
                                                        Name="data.bin"))
        inner = email.mime.text.MIMEText(f"Inner body {html_word}yy\n", "plain", "utf-8")
        inner["Subject"] = f"Inner subject {phrase}"
        inner["From"] = "inner@ext.test"
        m.attach(email.mime.message.MIMEMessage(inner))
        m["Subject"] = f"Mixed {subject_word}"
        placed += [html_word + "yy", phrase]
    m["From"] = f"Sender {i % 7} <sender{i % 7}@ext.test>"
    m["To"] = f"Alice <{ALICE}>"
    if i % 3 == 0:
        m["Cc"] = f"Carol Crane <carol{i % 4}@ext.test>"
    if i % 4 == 0:
        m["Bcc"] = "dave@ext.test"
    m["X-Tag"] = f"tag-{i % 9}"
    m["Message-ID"] = f"<corpus-{i}@ext.test>"
    raw = m.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return raw, " | ".join(placed).lower()


def criteria():
    """SEARCH criteria: lists of command text and literals (bytes, for non-ASCII needles)."""
    out = []
    for w in WORDS:
        lit = w.encode()
        out += [["TEXT ", lit, ""], ["BODY ", lit, ""], ["SUBJECT ", lit, ""]]
        out.append(["TEXT ", w.upper().encode(), ""])
        out.append(["BODY ", w[1:5].encode(), ""])
    for p in PHRASES:
        lit = p.encode()
        out += [["TEXT ", lit, ""], ["BODY ", lit, ""], ["SUBJECT ", lit, ""]]
        out += [["TEXT ", p[1:4].encode(), ""], ["TEXT ", p[:2].encode(), ""], ["TEXT ", p[2:3].encode(), ""]]
    out += [
        ["FROM sender3"], ["FROM \"Sender 5\""], ["TO bob"], ["TO alice"], ["CC carol"], ["CC crane"],
        ["BCC dave"], ["HEADER X-Tag tag-7"], ["HEADER X-Tag \"\""], ["TEXT attachword"],
        ["TEXT \"inner subject\""], ["OR BODY orchid SUBJECT ledger"], ["OR BODY orchid LARGER 1"],
        ["NOT TEXT velvet"], ["TEXT xyz-nowhere"], ["TEXT mk0007x"], ["BODY mk0031x"], ["TEXT m"],
        ["SUBJECT mixed BODY see"], ["UNSEEN TEXT quantum"], ["TEXT \"\""], ["TEXT \"ab\""],
    ]
    return out


def show(c):
    return "".join(p.decode() if isinstance(p, bytes) else p for p in c)


def search_all(srv, user, mailboxes):
    """{(mailbox, criteria text): sorted UIDs} for every criterion in every mailbox (every
    third in the large one, to keep the scans of a debug build short)."""
    r = ic.RawImap(srv.imap)
    r.login(user, PW)
    out = {}
    for mailbox in mailboxes:
        r.select(mailbox, examine=True)
        for c in criteria()[::3] if mailbox == "Bulk" else criteria():
            parts = list(c)
            parts[0] = "UID SEARCH CHARSET UTF-8 " + parts[0]
            status, text, untagged = r.cmd_literals(parts)
            assert status == "OK", f"{user} {mailbox} SEARCH {show(c)}: {status} {text!r}"
            uids = []
            for u in untagged:
                if u.upper().startswith(b"* SEARCH"):
                    uids += [int(x) for x in u[8:].split()]
            out[(mailbox, show(c))] = sorted(uids)
    r.ok("LOGOUT")
    r.close()
    return out


def uid_of_ids(srv, user, mailbox):
    """{Message-ID number: UID} of a mailbox."""
    r = ic.RawImap(srv.imap)
    r.login(user, PW)
    r.select(mailbox, examine=True)
    got = ic.fetch_raw(r.ok("FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")[1])
    out = {}
    for items in got.values():
        header = next(v for k, v in items.items() if k.startswith("BODY"))
        mid = header.decode().split("<corpus-", 1)[1].split("@", 1)[0]
        out[mid] = int(items["UID"])
    r.ok("LOGOUT")
    r.close()
    return out


class Index:
    """The index file and what `index check` says of it."""

    def __init__(self, t):
        self.t = t
        self.path = t.data / "index.db"

    def check(self):
        r = self.t.cli("index", "check", "--json", check=False)
        return json.loads(r.out), r.code

    def wait_caught_up(self, what, timeout=120):
        deadline = time.monotonic() + timeout
        while True:
            report, code = self.check()
            if report["pending"] == 0 and code == 0:
                return report
            assert time.monotonic() < deadline, f"{what}: the index did not catch up: {report}"
            time.sleep(0.3)

    def covered(self):
        """Messages the cursors cover, read from the file beside the running server."""
        try:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5)
            try:
                return db.execute("SELECT coalesce(sum(uid), 0) FROM cursors").fetchone()[0]
            finally:
                db.close()
        except sqlite3.Error:
            return 0

    def move_aside(self):
        aside = self.t.root / "index-aside"
        aside.mkdir(exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            p = self.t.data / f"index.db{suffix}"
            if p.exists():
                shutil.move(str(p), str(aside / p.name))
        return aside

    def move_back(self, aside):
        for suffix in ("", "-wal", "-shm"):
            p = self.t.data / f"index.db{suffix}"
            if p.exists():
                p.unlink()
            q = aside / f"index.db{suffix}"
            if q.exists():
                shutil.move(str(q), str(p))


def scan_results(t, index, boxes):
    """The same searches with no index at all and the indexer off: the scan."""
    aside = index.move_aside()
    t.write_config("[imap]\nfull_text_index = false\n")
    srv = t.serve()
    out = {user: search_all(srv, user, mailboxes) for user, mailboxes in boxes.items()}
    report, _ = index.check()
    assert report["covered"] == 0 and report["documents"] == 0, f"the scan run indexed: {report}"
    assert srv.stop() == 0
    t.write_config(INDEX_ON)
    index.move_back(aside)
    return out


def compare(what, indexed, scanned):
    n = 0
    for user in scanned:
        for key, want in scanned[user].items():
            got = indexed[user][key]
            assert got == want, f"{what}: {user} {key}: index {got} != scan {want}"
            n += 1
    found = sum(1 for user in scanned for v in scanned[user].values() if v)
    assert found > n // 3, f"{what}: only {found} of {n} searches found anything: the corpus is wrong"
    return n, found


def archive_cursors(index):
    """How many archive mailboxes the indexer follows (theirs are the negative ids)."""
    db = sqlite3.connect(f"file:{index.path}?mode=ro", uri=True, timeout=5)
    try:
        return db.execute("SELECT count(*) FROM cursors WHERE mailbox_id < 0").fetchone()[0]
    finally:
        db.close()


def search_text(srv, user, mailbox, needle):
    r = ic.RawImap(srv.imap)
    r.login(user, PW)
    r.select(mailbox, examine=True)
    uids = []
    for u in r.ok(f"UID SEARCH TEXT {needle}")[1]:
        if u.upper().startswith(b"* SEARCH"):
            uids += [int(x) for x in u[8:].split()]
    r.ok("LOGOUT")
    r.close()
    return sorted(uids)


def archive_and_search(t, index, boxes, truth):
    """Alice's mail moves into an archive, whose mailboxes the indexer follows as it follows
    live ones: SEARCH there answers from the index and equals the scan. A body the index
    lost is missed there (so the index is what answers), named by `index check` and `check`,
    and indexed again after `check --repair`. Leaves `boxes` naming the archive's mailboxes."""
    srv = t.serve()
    day = time.strftime("%Y-%m-%d", time.localtime(time.time() + 2 * 86400))
    r = t.cli("archive", "create", "--before", day, "--account", ALICE, "--label", "old",
              "--json", timeout=300)
    archived = ["Archive/old/INBOX", "Archive/old/Work"]
    deadline = time.monotonic() + 60
    while archive_cursors(index) < 2:
        assert time.monotonic() < deadline, f"the indexer does not follow the archive: {r.out}"
        time.sleep(0.2)
    report = index.wait_caught_up("after archiving")
    time.sleep(3)  # a few rounds of the sweep, which must keep the archived bodies
    report, code = index.check()
    assert code == 0 and report["missing"] == 0 and report["expunged"] == 0, report
    boxes[ALICE] = archived
    indexed = {user: search_all(srv, user, mailboxes) for user, mailboxes in boxes.items()}
    ids = uid_of_ids(srv, ALICE, archived[0])
    want = sorted(uid for mid, uid in ids.items() if "saffron" in truth[mid])
    assert want and indexed[ALICE][(archived[0], "TEXT saffron")] == want, (want, indexed[ALICE][(archived[0], "TEXT saffron")])
    assert srv.stop() == 0
    scanned = scan_results(t, index, boxes)
    n, found = compare("in the archive's mailboxes", indexed, scanned)
    ok(f"alice's mail archived; the indexer follows the archive's 2 mailboxes and the sweep keeps "
       f"their bodies ({report}); {n} searches there and in bob's INBOX equal the scan ({found} non-empty)")

    # The index loses the body of one message that has "saffron".
    srv = t.serve()
    r = ic.RawImap(srv.imap)
    r.login(ALICE, PW)
    r.select(archived[0], examine=True)
    got = ic.fetch_raw(r.ok(f"UID FETCH {want[0]} (BODY.PEEK[])")[1])
    r.ok("LOGOUT")
    r.close()
    body = next(v for k, v in next(iter(got.values())).items() if k.startswith("BODY"))
    assert srv.stop() == 0
    db = sqlite3.connect(index.path)
    gone = db.execute("DELETE FROM docs WHERE blob = ?", (hashlib.sha256(body).digest(),)).rowcount
    db.commit()
    db.close()
    assert gone == 1, "the archived body was not in the index"
    srv = t.serve()
    missed = search_text(srv, ALICE, archived[0], "saffron")
    assert missed == want[1:], f"SEARCH in the archive did not answer from the index: {missed} (all: {want})"
    report, code = index.check()
    assert code == 1 and report["missing"] >= 1, report
    r = t.cli("check", check=False, timeout=180)
    assert r.code != 0 and f"{ALICE} mailbox {archived[0]}" in r.out + r.err, r
    r = t.cli("check", "--repair", check=False, timeout=180)
    assert "indexed again" in r.out + r.err, r
    index.wait_caught_up("after check --repair")
    found = search_text(srv, ALICE, archived[0], "saffron")
    assert found == want, f"after the repair: {found}, want {want}"
    assert srv.stop() == 0
    ok(f"a body the index lost is missed in the archive ({len(missed)} of {len(want)} found: the "
       "index answers there), named by `index check` and `check`, and found again after "
       "`check --repair`")


def test():
    t = h.Tegami("imap-search-index")
    t.domain("example.com")
    t.account(ALICE, PW)
    t.account(BOB, PW)
    t.write_config(INDEX_ON)
    index = Index(t)
    rng = random.Random(20)
    srv = t.serve()

    # Deliveries: 90 messages to alice, every tenth to bob too (one body, two accounts).
    truth = {}
    for i in range(90):
        raw, has = make(i, rng)
        truth[str(i)] = has
        rcpts = [ALICE, BOB] if i % 10 == 0 else [ALICE]
        h.send(srv.smtp, "sender@ext.test", rcpts, raw)
    r = ic.RawImap(srv.imap)
    r.login(ALICE, PW)
    r.ok("CREATE Work")
    r.select("INBOX")
    r.ok("UID COPY 1:20 Work")
    r.ok("UID MOVE 21:35 Work")
    for i in range(90, 96):
        raw, has = make(i, rng)
        truth[str(i)] = has
        status, text, _ = r.cmd_literals(["APPEND Work ", raw, ""])
        assert status == "OK", text
    r.ok("UID STORE 40:50 +FLAGS.SILENT (\\Deleted)")
    r.ok("EXPUNGE")
    r.select("Work")
    r.ok("UID STORE 1:5 +FLAGS.SILENT (\\Deleted)")
    r.ok("EXPUNGE")
    r.ok("LOGOUT")
    r.close()
    ok("corpus of 96 messages (plain, alternative QP+base64 HTML, ISO-2022-JP, Shift_JIS base64, "
       "UTF-8 QP, mixed with attachment and attached message) delivered, appended, copied, moved, "
       "expunged")

    report = index.wait_caught_up("after deliveries")
    assert report["missing"] == 0 and report["covered"] > 80, report
    deadline = time.monotonic() + 30
    while report["expunged"]:
        assert time.monotonic() < deadline, f"expunged bodies stay in the index: {report}"
        time.sleep(0.5)
        report, _ = index.check()
    ok(f"the indexer caught up by itself and swept expunged mail: {report}")

    boxes = {ALICE: ["INBOX", "Work"], BOB: ["INBOX"]}
    indexed = {user: search_all(srv, user, mailboxes) for user, mailboxes in boxes.items()}

    # A few answers known from the corpus, so that index and scan cannot agree on nonsense.
    ids = uid_of_ids(srv, ALICE, "INBOX")
    for phrase in (PHRASES[0], "saffron", "mk0007x"):
        want = sorted(uid for mid, uid in ids.items()
                      if phrase.lower() in truth[mid])
        got = indexed[ALICE][("INBOX", f"TEXT {phrase}")]
        assert got == want and want, f"TEXT {phrase}: {got}, the corpus says {want}"
    assert indexed[ALICE][("INBOX", "TEXT attachword")] == [], "a binary attachment's text was found"
    ok("SEARCH with the index finds what the corpus says (TEXT of a Japanese phrase, a word, a marker) "
       "and nothing in a binary attachment")
    assert srv.stop() == 0

    scanned = scan_results(t, index, boxes)
    n, found = compare("after deliveries, moves and expunges", indexed, scanned)
    ok(f"{n} searches in 3 mailboxes of 2 accounts: the index's answers equal the scan's ({found} non-empty)")

    archive_and_search(t, index, boxes, truth)

    # A large import indexed by the server, killed halfway.
    mbox = t.root / "bulk.mbox"
    with open(mbox, "wb") as f:
        for i in range(1000, 1000 + BULK):
            raw, _ = make(i, rng)
            f.write(b"From sender@ext.test Mon Dec  7 10:00:00 2026\n")
            f.write(raw.replace(b"\r\n", b"\n").replace(b"\nFrom ", b"\n>From "))
            f.write(b"\n")
    t.cli("import", "mbox", str(mbox), "--account", ALICE, "--mailbox", "Bulk", timeout=300)
    before = index.covered()
    srv = t.serve()
    deadline = time.monotonic() + 60
    while index.covered() <= before:
        assert time.monotonic() < deadline, "the indexer did not start on the imported mail"
        time.sleep(0.05)
    srv.kill()
    mid = index.covered()
    assert before < mid < before + BULK, f"killed too late: covered {before} -> {mid} of +{BULK}"
    ok(f"killed with SIGKILL while indexing the imported mail ({mid - before} of {BULK} indexed)")

    # Restarted with the indexer off first, so that SEARCH surely meets a half-indexed
    # mailbox (indexed messages answered by the index, the rest scanned).
    t.write_config("[imap]\nfull_text_index = false\n")
    srv = t.serve()
    boxes[ALICE].append("Bulk")
    partial_report, _ = index.check()
    assert partial_report["pending"] > 0 and partial_report["missing"] == 0, partial_report
    during = {user: search_all(srv, user, mailboxes) for user, mailboxes in boxes.items()}
    assert srv.stop() == 0
    t.write_config(INDEX_ON)
    srv = t.serve()
    report = index.wait_caught_up("after the restart", timeout=300)
    assert report["missing"] == 0 and report["expunged"] == 0, report
    after = {user: search_all(srv, user, mailboxes) for user, mailboxes in boxes.items()}
    db = sqlite3.connect(f"file:{index.path}?mode=ro", uri=True)
    docs = db.execute("SELECT count(*), count(DISTINCT blob) FROM docs").fetchone()
    fts = db.execute("SELECT count(*) FROM docs WHERE partial = 0").fetchone()[0]
    db.close()
    assert docs[0] == docs[1] == report["documents"], docs
    ok(f"after the restart the indexer resumed from its cursors and caught up: {report}; "
       f"{docs[0]} bodies, each once ({fts} with text)")
    assert srv.stop() == 0

    scanned = scan_results(t, index, boxes)
    n, _ = compare("while the index was incomplete after the kill", during, scanned)
    ok(f"{n} searches while the index was incomplete ({partial_report['pending']} messages waiting) "
       "equal the scan")
    n, _ = compare("after the index caught up", after, scanned)
    ok(f"{n} searches after it caught up equal the scan")

    # Rebuilds, with the server down and online.
    r = t.cli("index", "rebuild", "--json", timeout=300)
    rebuilt = json.loads(r.out)
    assert rebuilt["messages"] >= BULK, rebuilt
    report, code = index.check()
    assert code == 0 and report["pending"] == 0 and report["missing"] == 0, report
    assert "index rebuild" in (t.data / "log" / "index.log").read_text()
    srv = t.serve()
    r = t.cli("index", "rebuild", "--account", BOB, timeout=300)
    assert "indexed" in r.out, r
    again = {user: search_all(srv, user, mailboxes) for user, mailboxes in boxes.items()}
    compare("after index rebuild", again, scanned)
    assert srv.stop() == 0
    ok(f"`index rebuild` ({rebuilt['messages']} messages, {rebuilt['bodies']} bodies) and "
       "`index rebuild --account` online leave the same answers; log/index.log has the line")

    # An index file of another version is emptied and filled again.
    db = sqlite3.connect(index.path)
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    report, _ = index.check()
    assert report["documents"] == 0 and report["covered"] == 0, report
    srv = t.serve()
    report = index.wait_caught_up("after a version change", timeout=300)
    assert report["missing"] == 0 and report["covered"] > BULK, report
    ok(f"an index.db of another version is rebuilt by the indexer: {report}")
    assert srv.stop() == 0
    t.check_store("after indexing")


if __name__ == "__main__":
    h.main(test, timeout=900)
