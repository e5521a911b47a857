#!/usr/bin/env python3
"""CONDSTORE and QRESYNC (RFC 7162) over a raw socket, and two fixes of issue 20.

Checks: CAPABILITY names CONDSTORE and QRESYNC; UNSELECT answers "UNSELECT completed" and
CLOSE "CLOSE completed"; APPEND with a date in -0700 gives back INTERNALDATE in -0700 (and
+0900 in +0900), across a restart. SELECT (CONDSTORE) and plain SELECT tell HIGHESTMODSEQ,
STATUS (HIGHESTMODSEQ) agrees; FETCH (MODSEQ); FETCH ... (CHANGEDSINCE n) answers only
what another session changed, with MODSEQ (RFC 7162 §3.1.4.1's exchange); once CONDSTORE
is on, another session's flag change reaches this one with MODSEQ; STORE (UNCHANGEDSINCE n)
+FLAGS.SILENT (\\Deleted) changes the untouched messages, tells their new MODSEQ and
refuses the others with [MODIFIED set] (§3.1.3's exchange); UNCHANGEDSINCE 0 refuses all;
SEARCH MODSEQ n finds what changed since, with (MODSEQ highest), and ESEARCH too; ENABLE
QRESYNC answers ENABLED QRESYNC; SELECT (QRESYNC ...) before ENABLE is BAD.

The resync (§3.2.5): a client selects INBOX and leaves; another session changes flags,
expunges messages and new mail arrives; the client comes back with SELECT INBOX (QRESYNC
(uidvalidity modseq known-uids)) and is told VANISHED (EARLIER) exactly the expunged UIDs
and one FETCH (UID FLAGS MODSEQ) per changed message, nothing else; without known-uids the
new mail comes as FETCHes too; UID FETCH (CHANGEDSINCE n VANISHED) says the same; a wrong
UIDVALIDITY gets a plain SELECT. With QRESYNC on, expunges are told as VANISHED (its own and
another session's, and POP3's), never EXPUNGE; SELECT of another mailbox says [CLOSED].
Past the store's bound of remembered expunges (1,100 scattered expunges), the answer is
every UID not present, checked against the mailbox; a client that resynced after them is
answered exactly again. The store passes `check` afterwards.
"""

import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import imap_common as ic  # noqa: E402
from harness import ok  # noqa: E402

ALICE = "alice@example.com"
PW = "alice-condstore-pw"


def msg(i):
    return (f"Message-ID: <cs-{i}@ext.test>\r\nFrom: s@ext.test\r\nTo: {ALICE}\r\nSubject: message {i}\r\n\r\n"
            f"body of message {i}\r\n").encode()


def login(srv):
    r = ic.RawImap(srv.imap)
    r.login(ALICE, PW)
    return r


def code(text, name):
    m = re.search(rb"\[" + name.encode() + rb"(?: ([^\]]*))?\]", text)
    return m.group(1).decode() if m else None


def modseq_of(items):
    v = items["MODSEQ"]
    assert isinstance(v, list) and len(v) == 1, f"MODSEQ is not a parenthesised number: {v!r}"
    return int(v[0])


def flags(items):
    return {f.upper() for f in ic.flags_of(items)} - {"\\RECENT"}


def uids_of(r):
    got = ic.fetch_raw(r.ok("FETCH 1:* (UID)")[1])
    return [int(got[n]["UID"]) for n in sorted(got)]


def set_of(text):
    """'1:3,7' -> {1, 2, 3, 7}."""
    out = set()
    for part in text.split(","):
        a, _, b = part.partition(":")
        lo, hi = sorted((int(a), int(b or a)))
        out.update(range(lo, hi + 1))
    return out


def vanished(untagged, earlier):
    head = rb"\* VANISHED \(EARLIER\) " if earlier else rb"\* VANISHED (?!\()"
    out = set()
    for r in untagged:
        m = re.match(head + rb"(.*)$", r, re.I)
        if m:
            out |= set_of(m.group(1).decode())
    return out


def uid_fetches(untagged):
    """FETCH responses -> {uid: items}."""
    return {int(items["UID"]): items for items in ic.fetch_raw(untagged).values()}


def fixes(srv):
    r = login(srv)
    caps = r.ok("CAPABILITY")[1][0].upper().split()
    assert b"CONDSTORE" in caps and b"QRESYNC" in caps, f"CAPABILITY: {caps}"
    r.select("INBOX")
    text, _ = r.ok("UNSELECT")
    assert text == b"UNSELECT completed", f"UNSELECT answered {text!r}"
    r.select("INBOX")
    text, _ = r.ok("CLOSE")
    assert text == b"CLOSE completed", f"CLOSE answered {text!r}"
    ok("CAPABILITY names CONDSTORE and QRESYNC; UNSELECT answers 'UNSELECT completed', CLOSE 'CLOSE completed'")

    dates = ["17-Jul-1996 02:44:25 -0700", "01-Jan-2024 23:30:00 +0900", " 2-Feb-2003 04:05:06 +0530"]
    for d in dates:
        st, text, _ = r.cmd_literals([f'APPEND Drafts "{d}" ', msg(d), ""])
        assert st == "OK", f"APPEND with {d}: {st} {text!r}"
    r.select("Drafts")
    got = ic.fetch_raw(r.ok("FETCH 1:* (INTERNALDATE)")[1])
    back = [got[n]["INTERNALDATE"].decode() for n in sorted(got)]
    want = [d.replace(" 2-Feb", "02-Feb") for d in dates]
    assert back == want, f"APPEND dates {dates} came back as {back}"
    r.ok("LOGOUT")
    r.close()
    return want


def condstore(srv):
    for i in range(6):
        h.send(srv.smtp, "s@ext.test", [ALICE], msg(i))
    a = login(srv)
    info = a.select("INBOX")
    assert "HIGHESTMODSEQ" in info, f"plain SELECT lacks [HIGHESTMODSEQ]: {info}"
    a.ok("UNSELECT")
    b = login(srv)
    info = b.cmd("SELECT INBOX (CONDSTORE)")
    assert info[0] == "OK", f"SELECT INBOX (CONDSTORE): {info}"
    hms = int([code(u, "HIGHESTMODSEQ") for u in info[2] if code(u, "HIGHESTMODSEQ")][0])
    st = a.ok("STATUS INBOX (MESSAGES HIGHESTMODSEQ)")[1][0]
    assert re.search(rb"HIGHESTMODSEQ %d\b" % hms, st), f"STATUS {st!r} vs SELECT's HIGHESTMODSEQ {hms}"
    got = ic.fetch_raw(b.ok("FETCH 1:* (UID MODSEQ)")[1])
    assert len(got) == 6 and all(1 <= modseq_of(it) <= hms for it in got.values()), f"FETCH MODSEQ: {got}"
    ok(f"SELECT (CONDSTORE) and SELECT say [HIGHESTMODSEQ {hms}], STATUS (HIGHESTMODSEQ) agrees, "
       "FETCH (MODSEQ) gives each message's, none above it")

    # RFC 7162 §3.1.4.1: FETCH CHANGEDSINCE answers only what changed, with MODSEQ; and
    # B, which enabled CONDSTORE, hears of A's change with MODSEQ.
    _, untagged = b.ok(f"FETCH 1:* (FLAGS) (CHANGEDSINCE {hms})")
    assert not ic.fetch_raw(untagged), f"nothing changed, yet CHANGEDSINCE {hms} answered {untagged}"
    a.select("INBOX")
    a.ok("STORE 2,4 +FLAGS (\\Flagged)")
    _, untagged = b.ok("NOOP")
    heard = ic.fetch_raw(untagged)
    assert set(heard) == {2, 4} and all(modseq_of(it) > hms and "\\FLAGGED" in flags(it) for it in heard.values()), (
        f"B did not hear of A's STORE 2,4 with MODSEQ: {untagged}")
    _, untagged = b.ok(f"FETCH 1:* (FLAGS) (CHANGEDSINCE {hms})")
    got = ic.fetch_raw(untagged)
    assert set(got) == {2, 4} and all("MODSEQ" in it for it in got.values()), f"CHANGEDSINCE {hms}: {untagged}"
    ok("FETCH 1:* (FLAGS) (CHANGEDSINCE n): nothing before another session's STORE, then exactly its two "
       "messages with MODSEQ; the CONDSTORE session heard of the change with MODSEQ at its NOOP")

    # RFC 7162 §3.1.3: STORE (UNCHANGEDSINCE n) +FLAGS.SILENT (\Deleted) on 5,2,6 where A
    # changed 2 after n: 5 and 6 change (FETCH with their new MODSEQ), 2 is [MODIFIED].
    st, text, untagged = b.cmd(f"STORE 5,2,6 (UNCHANGEDSINCE {hms}) +FLAGS.SILENT (\\Deleted)")
    assert st == "OK" and code(text, "MODIFIED") == "2", f"conditional STORE: {st} {text!r}"
    got = ic.fetch_raw(untagged)
    assert set(got) == {5, 6} and all(set(it) == {"MODSEQ"} for it in got.values()), (
        f"STORE .SILENT with CONDSTORE should tell only the new MODSEQ of 5 and 6: {untagged}")
    after = max(modseq_of(it) for it in got.values())
    got = ic.fetch_raw(b.ok("FETCH 2,5,6 (FLAGS)")[1])
    assert "\\DELETED" not in flags(got[2]) and all("\\DELETED" in flags(got[n]) for n in (5, 6)), got
    st, text, _ = b.cmd("UID STORE 1:* (UNCHANGEDSINCE 0) +FLAGS (\\Seen)")
    refused = code(text, "MODIFIED")
    assert st == "OK" and refused and set_of(refused) == set(uids_of(b)), f"UNCHANGEDSINCE 0: {text!r}"
    ok(f"STORE 5,2,6 (UNCHANGEDSINCE {hms}) +FLAGS.SILENT (\\Deleted): 5 and 6 changed and told as "
       "FETCH (MODSEQ), 2 refused with [MODIFIED 2]; UNCHANGEDSINCE 0 refuses every message")

    # SEARCH MODSEQ (§3.1.5): what changed since, and the highest mod-sequence of it.
    _, untagged = b.ok(f"SEARCH MODSEQ {hms + 1}")
    line = [u for u in untagged if u.startswith(b"* SEARCH")][0]
    m = re.fullmatch(rb"\* SEARCH ([\d ]+) \(MODSEQ (\d+)\)", line)
    assert m and sorted(map(int, m.group(1).split())) == [2, 4, 5, 6] and int(m.group(2)) == after, (
        f"SEARCH MODSEQ {hms + 1}: {line!r} (want 2 4 5 6 and MODSEQ {after})")
    _, untagged = b.ok(f'UID SEARCH RETURN (COUNT) MODSEQ "/flags/\\\\deleted" all {after}')
    line = [u for u in untagged if u.startswith(b"* ESEARCH")][0]
    assert re.search(rb"COUNT \d+ MODSEQ %d" % after, line), f"ESEARCH with MODSEQ: {line!r}"
    ok(f"SEARCH MODSEQ {hms + 1} -> 2 4 5 6 (MODSEQ {after}); ESEARCH carries MODSEQ too")
    b.ok("CLOSE")
    a.ok("LOGOUT")
    b.ok("LOGOUT")
    a.close()
    b.close()


def resync(srv):
    for i in range(4):
        h.send(srv.smtp, "s@ext.test", [ALICE], msg(f"r{i}"))
    c = login(srv)
    st, text, _ = c.cmd("SELECT INBOX (QRESYNC (1 1))")
    assert st == "BAD", f"SELECT (QRESYNC ...) before ENABLE QRESYNC: {st} {text!r}"
    _, untagged = c.ok("ENABLE QRESYNC")
    assert b"* ENABLED QRESYNC" in untagged, f"ENABLE QRESYNC: {untagged}"
    info = c.select("INBOX")
    uidvalidity, modseq = int(info["UIDVALIDITY"]), int(info["HIGHESTMODSEQ"])
    known = uids_of(c)
    c.ok("LOGOUT")
    c.close()

    # While the client is away: flags change, messages go (IMAP and POP3), mail arrives.
    o = login(srv)
    o.select("INBOX")
    o.ok(f"UID STORE {known[0]},{known[-1]} +FLAGS ($Work)")
    o.ok(f"UID STORE {known[1]} -FLAGS (\\Flagged)")
    o.ok(f"UID STORE {known[2]},{known[3]} +FLAGS (\\Deleted)")
    o.ok(f"UID EXPUNGE {known[2]},{known[3]}")
    o.ok("LOGOUT")
    o.close()
    p = h.Raw(srv.pop3)
    p.line()
    for line in (f"USER {ALICE}", f"PASS {PW}", "DELE 2", "QUIT"):
        p.send(line.encode() + b"\r\n")
        assert p.line().startswith(b"+OK"), line
    p.close()
    gone = {known[2], known[3], known[1]}
    h.send(srv.smtp, "s@ext.test", [ALICE], msg("new"))

    c = login(srv)
    c.ok("ENABLE QRESYNC")
    known_set = f"{known[0]}:{known[-1]}"
    st, text, untagged = c.cmd(f"SELECT INBOX (QRESYNC ({uidvalidity} {modseq} {known_set}))")
    assert st == "OK", f"SELECT (QRESYNC): {st} {text!r}"
    assert vanished(untagged, True) == gone, f"VANISHED (EARLIER) should be {sorted(gone)}: {untagged}"
    changed = uid_fetches(untagged)
    assert set(changed) == {known[0], known[-1]}, f"changed messages told: {sorted(changed)}; {untagged}"
    assert all("$WORK" in flags(it) and modseq_of(it) > modseq for it in changed.values()), changed
    order = [i for i, u in enumerate(untagged) if u.startswith(b"* VANISHED") or b" FETCH " in u]
    assert untagged[order[0]].startswith(b"* VANISHED"), "VANISHED (EARLIER) comes before the FETCHes"
    now = uids_of(c)
    assert set(now) == (set(known) - gone) | {max(now)} and max(now) > known[-1], (known, now)
    ok(f"resync after another session changed flags, expunged (IMAP and POP3) and mail arrived: "
       f"VANISHED (EARLIER) {sorted(gone)} and FETCH (UID FLAGS MODSEQ) for {sorted(changed)}, nothing else")

    st, _, untagged = c.cmd(f"SELECT INBOX (QRESYNC ({uidvalidity} {modseq}))")
    assert st == "OK" and vanished(untagged, True) == gone, untagged
    assert any(b"* OK [CLOSED]" in u for u in untagged), f"SELECT while selected with QRESYNC lacks [CLOSED]: {untagged}"
    assert set(uid_fetches(untagged)) == {known[0], known[-1], max(now)}, untagged
    _, untagged = c.ok(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)")
    assert vanished(untagged, True) == gone and set(uid_fetches(untagged)) == {known[0], known[-1], max(now)}, untagged
    st, _, untagged = c.cmd(f"SELECT INBOX (QRESYNC ({uidvalidity + 1} {modseq}))")
    assert st == "OK" and not vanished(untagged, True) and not uid_fetches(untagged), (
        f"a wrong UIDVALIDITY must get a plain SELECT: {untagged}")
    ok("without known-uids the new message is a FETCH too; UID FETCH (CHANGEDSINCE n VANISHED) says the same; "
       "[CLOSED] on reselect; a wrong UIDVALIDITY gets a plain SELECT")

    # With QRESYNC on, expunges are VANISHED, never EXPUNGE: this session's and another's.
    o = login(srv)
    o.select("INBOX")
    present = uids_of(c)
    c.ok(f"UID STORE {present[0]} +FLAGS.SILENT (\\Deleted)")
    _, untagged = c.ok("EXPUNGE")
    assert vanished(untagged, False) == {present[0]} and not ic.expunges(untagged), untagged
    o.ok(f"UID STORE {present[1]} +FLAGS.SILENT (\\Deleted)")
    _, untagged = o.ok("EXPUNGE")
    assert ic.expunges(untagged) == [1] and not vanished(untagged, False), (
        f"a session without QRESYNC still gets EXPUNGE: {untagged}")
    _, untagged = c.ok("NOOP")
    assert vanished(untagged, False) == {present[1]} and not ic.expunges(untagged), untagged
    ok("with QRESYNC enabled, EXPUNGE here and an expunge elsewhere come as '* VANISHED uid', not EXPUNGE; "
       "a session without it still gets EXPUNGE")
    o.ok("LOGOUT")
    o.close()
    c.ok("LOGOUT")
    c.close()


def forgotten(srv):
    """Past the bound of remembered expunges the answer is every UID not present."""
    c = login(srv)
    c.ok("ENABLE QRESYNC")
    c.ok("CREATE Bulk")
    st, text, _ = c.cmd_literals(["APPEND Bulk ", msg("bulk"), ""])
    assert st == "OK", text
    c.select("Bulk")
    while len(uids_of(c)) < 2200:
        c.ok("UID COPY 1:* Bulk")
    info = c.select("Bulk")
    uidvalidity, before = int(info["UIDVALIDITY"]), int(info["HIGHESTMODSEQ"])
    numbers = list(range(1, len(uids_of(c)) + 1, 2))[:1100]
    for i in range(0, len(numbers), 200):
        c.ok("STORE " + ",".join(map(str, numbers[i:i + 200])) + " +FLAGS.SILENT (\\Deleted)")
    c.ok("CLOSE")
    info = c.select("Bulk")
    after = int(info["HIGHESTMODSEQ"])
    present = set(uids_of(c))
    uidnext = int(info["UIDNEXT"])
    _, _, untagged = c.cmd(f"SELECT Bulk (QRESYNC ({uidvalidity} {before}))")
    told = vanished(untagged, True)
    assert told == set(range(1, uidnext)) - present and len(told) >= 1100, (
        f"after 1,100 scattered expunges: VANISHED (EARLIER) named {len(told)} UIDs, "
        f"{len(told & present)} of them present")
    c.ok(f"UID STORE {min(present)} +FLAGS.SILENT (\\Deleted)")
    c.ok("EXPUNGE")
    _, _, untagged = c.cmd(f"SELECT Bulk (QRESYNC ({uidvalidity} {after}))")
    assert vanished(untagged, True) == {min(present)}, f"resync after the forgotten ones: {untagged}"
    ok(f"1,100 scattered expunges (beyond the 1,000 ranges remembered): VANISHED (EARLIER) names every UID "
       f"not present ({len(told)}, none present); a resync from after them is exact again")
    c.ok("LOGOUT")
    c.close()


def test():
    t = h.Tegami("imap-condstore")
    t.domain("example.com")
    t.account(ALICE, PW)
    srv = t.serve(imap=True)
    dates = fixes(srv)
    condstore(srv)
    resync(srv)
    forgotten(srv)
    assert srv.stop() == 0
    srv = t.serve(imap=True)
    r = login(srv)
    r.select("Drafts")
    got = ic.fetch_raw(r.ok("FETCH 1:* (INTERNALDATE)")[1])
    assert [got[n]["INTERNALDATE"].decode() for n in sorted(got)] == dates, got
    r.ok("LOGOUT")
    r.close()
    ok(f"APPEND's time zones kept across a restart: {dates}")
    t.check_store("after CONDSTORE and QRESYNC")
    assert srv.stop() == 0


if __name__ == "__main__":
    h.main(test, timeout=180)
