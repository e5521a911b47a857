#!/usr/bin/env python3
"""Broken and hostile IMAP clients get BAD/NO (or a clean close); nothing stored is lost.

Raw sockets send what real clients never would: empty lines, lines without a tag,
unknown commands, binary garbage; unbalanced parentheses in FETCH, SEARCH and STORE;
malformed sections, dates and sequence sets (0, letters, past the end); commands in the
wrong state (before LOGIN, without a selected mailbox, STORE/EXPUNGE in an EXAMINEd
mailbox); a literal of 999,999,999 octets announced both ways (synchronizing: refused
without a continuation; LITERAL+); a 1 MB line; another account's mailboxes by every
spelling; 2,000 pipelined commands in one write; more sessions than an account may hold.
After each group another session still works and every stored message is intact (POP3
bytes and IMAP counts). Maintenance mode: a new connection gets `* BYE [UNAVAILABLE]`
with the operator's message; an idle session and a session in IDLE are closed with BYE;
an APPEND in flight finishes (tagged OK) before its session is closed; `maint off`
serves IMAP again. With `command_timeout_secs = 2`, silent sessions (before LOGIN, with a
mailbox selected, in the middle of a literal) get BYE and are closed; a talking one is not.
"""

import os
import re
import socket
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import imap_common as ic  # noqa: E402
from harness import crlf, ok  # noqa: E402

ALICE, BOB = "alice@example.com", "bob@example.com"
PW = {ALICE: "alice-bad-pw", BOB: "bob-bad-pw"}
NOTICE, SLACK = 2.0, 4.0  # the server notices the maint file within 2 s; slack for a busy machine
PER_ACCOUNT = 20  # [imap] max_connections_per_account, set in the config below


def msg(mid, body="hello\r\n"):
    return f"Message-ID: <{mid}@bad.test>\r\nFrom: x@ext.test\r\nSubject: {mid}\r\n\r\n".encode() + body.encode()


class Mail:
    """What must survive: every account's POP3 view, checked after each group."""

    def __init__(self, srv):
        self.srv = srv
        self.want = {}

    def snapshot(self):
        for a in PW:
            self.want[a] = [d for _, _, d in h.pop3_fetch_all(self.srv.pop3, a, PW[a])]

    def check(self, when):
        for a in PW:
            got = [d for _, _, d in h.pop3_fetch_all(self.srv.pop3, a, PW[a])]
            assert got == self.want[a], f"{when}: {a}'s INBOX changed: {len(self.want[a])} messages before, {len(got)} now"
        r = ic.RawImap(self.srv.imap)
        r.login(ALICE, PW[ALICE])
        info = r.select("INBOX")
        assert info["EXISTS"] == len(self.want[ALICE]), f"{when}: a fresh IMAP session sees {info['EXISTS']} messages"
        r.ok("LOGOUT")
        r.close()


def bad_or_no(status, text, what, allow=("BAD", "NO")):
    assert status in allow, f"{what}: got {status} {text!r}, wanted {' or '.join(allow)}"
    return status


def first_response(r, what):
    """The next response, or None if the server closed the connection."""
    try:
        return r.response()
    except (h.Closed, ConnectionResetError, BrokenPipeError):
        return None


def logged_in(srv, user=ALICE, mailbox=None):
    r = ic.RawImap(srv.imap)
    r.login(user, PW[user])
    if mailbox:
        r.select(mailbox)
    return r


class Prober:
    """Sends one bad command at a time on a session in a given state. A server may end a
    session that keeps sending errors (with BYE); that is fine after a few errors, and the
    prober then opens a new session in the same state and goes on."""

    MIN_ERRORS_BEFORE_BYE = 1

    def __init__(self, srv, login=False, mailbox=None):
        self.srv, self.login, self.mailbox = srv, login, mailbox
        self.ends = []  # errors answered before each BYE
        self.r = None
        self._open()

    def _open(self):
        if self.r:
            self.r.close()
        self.r = logged_in(self.srv, ALICE, self.mailbox) if self.login else ic.RawImap(self.srv.imap)
        self.errors = 0

    def raw(self, line, what):
        """Sends a raw line; returns the first response, which must be BAD (or a BYE after errors)."""
        for attempt in (1, 2):
            self.r.send(line)
            resp = first_response(self.r, what)
            if resp is not None and re.match(rb"^\S+ BAD\b", resp):
                self.errors += 1
                return resp
            if resp is None or resp.startswith(b"* BYE"):
                assert self.errors >= self.MIN_ERRORS_BEFORE_BYE and attempt == 1, (
                    f"{what}: the server ended the session ({resp!r}) after only {self.errors} errors")
                self.ends.append(self.errors)
                self._open()
                continue
            raise AssertionError(f"{what}: wanted BAD, got {resp!r}")

    def cmd(self, c, allow, what=None):
        for attempt in (1, 2):
            try:
                st, text, untagged = self.r.cmd(c)
            except (h.Closed, ConnectionResetError, BrokenPipeError):
                st, text, untagged = "CLOSED", b"", []
            bye = [u for u in untagged if u.startswith(b"* BYE")]
            if st == "CLOSED" or bye:
                assert self.errors >= self.MIN_ERRORS_BEFORE_BYE and attempt == 1, (
                    f"{what or c}: the server ended the session ({bye or 'closed'}) after only {self.errors} errors")
                self.ends.append(self.errors)
                self._open()
                continue
            bad_or_no(st, text, what or c, allow=allow)
            self.errors += st != "OK"
            return st

    def summary(self):
        return f"; the server ended {len(self.ends)} sessions after {self.ends} errors" if self.ends else ""

    def close(self):
        self.r.ok("NOOP", what="NOOP after the errors")
        self.r.ok("LOGOUT")
        self.r.close()


def syntax_checks(srv, mail):
    # An empty line carries no command: an untagged BAD (RFC 3501 7.1.3) or silence are both
    # seen in servers; either way the next command must work.
    r = ic.RawImap(srv.imap)
    r.send(b"\r\ne1 NOOP\r\n")
    first = r.response()
    empty = "ignored"
    if not first.startswith(b"e1 "):
        assert re.match(rb"^\* BAD\b", first), f"an empty line: wanted '* BAD' or nothing, got {first!r}"
        empty = "* BAD"
        first = r.response()
    assert first.startswith(b"e1 OK"), f"NOOP after an empty line: {first!r}"
    r.close()
    pr = Prober(srv)
    for what, line in (("a command without a tag", b"NOOP\r\n"),
                       ("binary garbage", b"\x00\xff\xfe\x80 junk\r\n"), ("a tag alone", b"lonely\r\n")):
        pr.raw(line, what)
    pr.cmd("FROBNICATE now", ("BAD",), "an unknown command")
    ends = pr.summary()
    pr.close()
    ok(f"an empty line ({empty}); no tag, binary garbage, a lone tag, an unknown command -> BAD; the session goes "
       f"on{ends}")

    # The wrong state: not authenticated.
    pr = Prober(srv)
    for c in ("SELECT INBOX", "FETCH 1 FLAGS", "LIST \"\" *", "ENABLE IDLE", "STATUS INBOX (MESSAGES)", "IDLE"):
        pr.cmd(c, ("BAD", "NO"), f"{c} before LOGIN")
    r = pr.r
    r.send("ap1 APPEND INBOX {5}\r\n")
    resp = first_response(r, "APPEND before LOGIN")
    if resp is not None and resp.startswith(b"+"):
        r.send("hello\r\n")
        st, text, _ = r.until("ap1")
        bad_or_no(st, text, "APPEND before LOGIN")
    elif resp is not None and not resp.startswith(b"* BYE"):
        assert re.match(rb"^ap1 (BAD|NO)\b", resp), f"APPEND before LOGIN: {resp!r}"
    ends = pr.summary()
    pr.r.close()
    pr = Prober(srv, login=True)
    for c in ("FETCH 1 FLAGS", "STORE 1 +FLAGS (\\Seen)", "SEARCH ALL", "EXPUNGE", "CLOSE", "UID FETCH 1 FLAGS",
              "COPY 1 Trash", "CHECK", "LOGIN alice@example.com " + PW[ALICE]):
        pr.cmd(c, ("BAD", "NO"), f"{c} with no mailbox selected (authenticated)")
    ends += pr.summary()
    pr.close()
    ok("before LOGIN: SELECT, FETCH, LIST, ENABLE, STATUS, IDLE, APPEND refused; without a mailbox: FETCH, STORE, "
       f"SEARCH, EXPUNGE, CLOSE, UID FETCH, COPY, CHECK and a second LOGIN refused{ends}")

    pr = Prober(srv, login=True, mailbox="INBOX")
    n = len(mail.want[ALICE])
    for c in ("FETCH 1 (FLAGS", "FETCH 1 FLAGS)", "FETCH 1 (FLAGS UID))", "FETCH 1 ((FLAGS)", "SEARCH (SEEN",
              "SEARCH SEEN)", "SEARCH ((SEEN)", "SEARCH OR SEEN", "SEARCH NOT", "SEARCH BEFORE 31-Foo-2024",
              "SEARCH LARGER abc", "SEARCH FROBBED", "FETCH 1 BODY[1.", "FETCH 1 BODY[HEADER.FIELDS (SUBJECT]",
              "FETCH 1 BODY[]<1.>", "FETCH 1 BODY[NOPE]", "FETCH 1 NOSUCHITEM", "FETCH 1", "STORE 1 +FLAGS (\\Seen",
              "STORE 1 +FLAGS \\Seen)", "STORE 1 FROB (\\Seen)", "COPY 1", "UID", "UID FROB 1",
              "FETCH 0 FLAGS", "FETCH 0:1 FLAGS", "FETCH a:b FLAGS", "FETCH 1,,2 FLAGS", "FETCH -1 FLAGS",
              "FETCH 4294967296 FLAGS", "UID FETCH 0 FLAGS", "STORE 0 +FLAGS (\\Seen)"):
        pr.cmd(c, ("BAD",))
    past_end = pr.cmd(f"FETCH {n + 5} FLAGS", ("BAD", "NO"),
                      f"FETCH {n + 5} FLAGS with {n} messages (RFC 3501: BAD for a number past the end)")
    st, text, untagged = pr.r.cmd("UID FETCH 99999 FLAGS")
    assert st == "OK" and not ic.fetch_raw(untagged), (
        f"UID FETCH of a UID that does not exist: RFC 3501 wants OK and nothing, got {st} {text!r} {untagged}")
    ends = pr.summary()
    pr.close()
    mail.check("after the syntax errors")
    ok("unbalanced parentheses in FETCH/SEARCH/STORE, missing operands, bad dates/sizes/sections/sequence sets "
       f"(0, 0:1, a:b, 1,,2, -1, 2^32) -> BAD; FETCH past the end -> {past_end}; UID FETCH of a "
       f"missing UID -> OK with nothing; nothing lost{ends}")


def literal_checks(srv, mail):
    r = logged_in(srv)
    r.send("h1 APPEND INBOX {999999999}\r\n")
    resp = first_response(r, "huge literal")
    assert resp is None or not resp.startswith(b"+"), "a literal of 999,999,999 octets got a '+' continuation"
    verdict = "closed"
    if resp is not None:
        assert re.match(rb"^(h1 (NO|BAD)|\* BYE)\b", resp), f"APPEND {{999999999}}: {resp!r}"
        verdict = resp.split(b" ")[1].decode() + (" [TOOBIG]" if b"[TOOBIG]" in resp else "")
        if not resp.startswith(b"* BYE"):
            try:
                r.ok("NOOP", what="NOOP after a refused huge literal")
                verdict += ", session goes on"
            except (h.Closed, ConnectionResetError):
                verdict += ", then closed"
    r.close()
    ok(f"APPEND {{999999999}} (synchronizing): no continuation; {verdict}")

    r = logged_in(srv)
    chunk = b"x" * 65536
    try:
        r.send(b"h2 APPEND INBOX {999999999+}\r\n")
        for _ in range(16):
            r.send(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    resp = first_response(r, "huge LITERAL+")
    if resp is not None:
        assert re.match(rb"^(h2 (NO|BAD)|\* BYE|\* BAD|\* NO)\b", resp), f"APPEND {{999999999+}}: {resp!r}"
    closed = r.is_closed(wait=5)
    r.close()
    mail.check("after the huge literals")
    ok(f"APPEND {{999999999+}} (LITERAL+) with 1 MB sent: {resp[:60] if resp else 'no reply'!r}, "
       f"{'closed' if closed else 'left open'}; nothing stored, nothing lost")

    r = logged_in(srv)
    big = msg("one-mb", "".join(f"{i:07d} " + "y" * 70 + "\r\n" for i in range(13000)))
    st, text, _ = r.cmd_literals(["APPEND Archive ", big, ""])
    assert st == "OK", f"APPEND of a {len(big)}-octet message (a large literal that is allowed): {st} {text!r}"
    r.select("Archive")
    got = ic.fetch_raw(r.ok("FETCH 1 (BODY.PEEK[])")[1])
    assert got[1]["BODY[]"] == big, "the 1 MB APPEND came back different"
    r.ok("LOGOUT")
    r.close()

    r = ic.RawImap(srv.imap)
    line = b"l1 NOOP " + b"x" * 1_000_000 + b"\r\n"
    sender = threading.Thread(target=lambda: _send_quietly(r, line), daemon=True)
    sender.start()
    resp = first_response(r, "1 MB line")
    sender.join(timeout=30)
    if resp is not None:
        assert re.match(rb"^(l1 BAD|\* BAD|\* BYE)\b", resp), f"a 1 MB command line: {resp!r}"
    r.close()
    mail.check("after the 1 MB line")
    ok(f"a {len(big)}-octet APPEND literal is fine; a 1 MB command line -> {resp[:50] if resp else 'closed'!r}; nothing lost")


def _send_quietly(r, data):
    try:
        r.send(data)
    except (BrokenPipeError, ConnectionResetError, OSError):
        pass


def other_account_checks(srv, mail):
    b = logged_in(srv, BOB)
    b.ok("CREATE Private")
    st, text, _ = b.cmd_literals(["APPEND Private ", msg("bob-private", "secret\r\n"), ""])
    assert st == "OK", f"bob's APPEND: {st} {text!r}"
    b.ok("LOGOUT")
    b.close()

    a = logged_in(srv, ALICE)
    _, untagged = a.ok('LIST "" "*"')
    assert not any(b"Private" in u for u in untagged), f"alice's LIST shows bob's Private: {untagged}"
    for name in ("Private", "bob@example.com/INBOX", "bob@example.com/Private", "../bob@example.com/Private",
                 "/Private", "~bob/Private", "#users/bob/Private", "bob@example.com"):
        st, text, _ = a.cmd(f"SELECT {ic.quote(name)}")
        bad_or_no(st, text, f"alice: SELECT {name!r}")
        st, text, _ = a.cmd(f"STATUS {ic.quote(name)} (MESSAGES)")
        bad_or_no(st, text, f"alice: STATUS {name!r}")
    for ref, pat in (('""', '"/*"'), ('"bob@example.com/"', "*"), ('"~bob"', "*"), ('"#users"', "*"), ('"../"', "*")):
        _, untagged = a.ok(f"LIST {ref} {pat}")
        leaks = [u for u in untagged if b"Private" in u or b"bob" in u.lower()]
        assert not leaks, f"alice: LIST {ref} {pat} shows {leaks}"
    st, text, _ = a.cmd_literals(["APPEND Private ", msg("alice-into-bob"), ""])
    bad_or_no(st, text, "alice: APPEND Private", allow=("NO",))
    assert b"[TRYCREATE]" in text, f"APPEND to a mailbox alice does not have: wanted NO [TRYCREATE], got {text!r}"
    a.select("INBOX")
    st, text, _ = a.cmd("COPY 1 Private")
    bad_or_no(st, text, "alice: COPY 1 Private", allow=("NO",))
    st, text, _ = a.cmd("MOVE 1 Private")
    bad_or_no(st, text, "alice: MOVE 1 Private", allow=("NO",))
    for c in ("DELETE Private", "RENAME Private Mine", "DELETE bob@example.com/Private"):
        st, text, _ = a.cmd(c)
        bad_or_no(st, text, f"alice: {c}", allow=("NO",))
    a.ok("CREATE Private", what="alice creates her own Private")
    info = a.select("Private")
    assert info["EXISTS"] == 0, f"alice's own new Private shows {info['EXISTS']} messages: bob's?"
    a.ok("CLOSE")
    a.ok("DELETE Private")
    a.ok("LOGOUT")
    a.close()
    st = ic.RawImap(srv.imap)
    s, text, _ = st.cmd(f"LOGIN {BOB} {ic.quote(PW[ALICE])}")
    bad_or_no(s, text, "LOGIN bob with alice's password", allow=("NO",))
    st.close()
    b = logged_in(srv, BOB)
    info = b.select("Private")
    assert info["EXISTS"] == 1, f"bob's Private has {info['EXISTS']} messages after alice's attempts, wanted 1"
    got = ic.fetch_raw(b.ok("FETCH 1 (BODY.PEEK[])")[1])
    assert got[1]["BODY[]"] == msg("bob-private", "secret\r\n")
    b.ok("LOGOUT")
    b.close()
    mail.check("after alice tried bob's mailboxes")
    ok("alice cannot SELECT/STATUS/LIST/APPEND/COPY/MOVE/DELETE/RENAME bob's Private by any spelling (NO, "
       "[TRYCREATE] for APPEND); her own Private is separate and empty; bob's stays intact")


def readonly_checks(srv, mail):
    w = logged_in(srv, ALICE, "INBOX")
    w.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    r = logged_in(srv)
    info = r.select("INBOX", examine=True)
    assert b"[READ-ONLY]" in info["tagged"].upper()
    for c in ("STORE 1 +FLAGS (\\Seen)", "UID STORE 1:* FLAGS ()", "STORE 1 -FLAGS.SILENT (\\Deleted)"):
        st, text, _ = r.cmd(c)
        bad_or_no(st, text, f"{c} in an EXAMINEd mailbox", allow=("NO",))
    st, text, untagged = r.cmd("EXPUNGE")
    assert not ic.expunges(untagged), f"EXPUNGE in an EXAMINEd mailbox expunged: {untagged}"
    st2, text2, untagged = r.cmd("UID EXPUNGE 1:*")
    assert not ic.expunges(untagged), f"UID EXPUNGE in an EXAMINEd mailbox expunged: {untagged}"
    st3, text3, untagged = r.cmd("CLOSE")
    assert st3 == "OK" and not ic.expunges(untagged)
    r.ok("LOGOUT")
    r.close()
    got = ic.fetch_raw(w.ok("FETCH 1 (FLAGS)")[1])
    assert "\\DELETED" in {f.upper() for f in ic.flags_of(got[1])}, "a STORE in an EXAMINEd mailbox changed flags"
    w.ok("STORE 1 -FLAGS.SILENT (\\Deleted)")
    w.ok("LOGOUT")
    w.close()
    mail.check("after the read-only checks")
    ok(f"EXAMINE: STORE/UID STORE -> NO; EXPUNGE ({st}), UID EXPUNGE ({st2}) and CLOSE expunge nothing; nothing lost")


def pipeline(srv, cmds):
    """Sends every (tag, command, wanted status) in one write while reading the answers.
    Returns (answers [(tag, status)], whether the server closed the session, seconds)."""
    r = logged_in(srv, ALICE, "INBOX")
    blob = b"".join(f"{tag} {c}\r\n".encode() for tag, c, _ in cmds)
    started = time.monotonic()
    sender = threading.Thread(target=lambda: _send_quietly(r, blob), daemon=True)
    sender.start()
    answered = []
    closed = False
    while len(answered) < len(cmds):
        try:
            resp = r.response()
        except (h.Closed, ConnectionResetError):
            closed = True
            break
        m = re.match(rb"^(f\d+) (OK|NO|BAD)\b", resp)
        if m:
            answered.append((m.group(1).decode(), m.group(2).decode()))
    sender.join(timeout=30)
    took = time.monotonic() - started
    # RFC 3501 5.5 lets a server run pipelined commands that do not depend on each other
    # concurrently, so answers may come in another order; each must come once and be right.
    tags = [tag for tag, _ in answered]
    assert len(tags) == len(set(tags)), "a pipelined command was answered twice"
    want = {tag: st for tag, _, st in cmds}
    wrong = [(tag, st, want.get(tag)) for tag, st in answered if want.get(tag) != st]
    assert not wrong, f"pipelined commands answered wrongly (tag, got, wanted): {wrong[:5]}"
    if not closed:
        r.ok("NOOP")
        r.ok("LOGOUT")
    r.close()
    in_order = tags == [tag for tag, _, _ in cmds[:len(tags)]]
    return answered, closed, took, in_order


def flood_checks(srv, mail):
    good = [("NOOP", "OK"), ("FETCH 1 (FLAGS UID)", "OK"), ("UID SEARCH ALL", "OK"), ("STATUS Trash (MESSAGES)", "OK"),
            ("FETCH 1:* (RFC822.SIZE)", "OK")]
    cmds = [(f"f{i}", *good[i % len(good)]) for i in range(2000)]
    answered, closed, took, in_order = pipeline(srv, cmds)
    assert not closed and len(answered) == len(cmds), (
        f"2,000 valid pipelined commands: {len(answered)} answered, then the server {'closed' if closed else 'stopped'}")
    ok(f"2,000 valid pipelined commands in one write: all answered OK{' in order' if in_order else ''} in {took:.2f} s")

    mixed = good + [("FETCH 1 (FLAGS", "BAD")]
    cmds = [(f"f{i}", *mixed[i % len(mixed)]) for i in range(2000)]
    answered, closed, took, in_order = pipeline(srv, cmds)
    if closed:
        # A server may end a session that keeps sending errors, having answered what came before.
        assert answered, "the server closed a pipelining session without answering anything"
    mail.check("after the flood")
    bad = sum(1 for _, st in answered if st == "BAD")
    ok(f"2,000 pipelined commands with every sixth one BAD: {len(answered)} answered rightly ({bad} BAD)"
       f"{' in order' if in_order else ' (not in order, as RFC 3501 5.5 allows)'} in {took:.2f} s"
       f"{', then the server closed the session' if closed else ''}; nothing lost")


def fill_sessions(srv, sessions):
    """Logs alice in until refused: (how many got in, status, text) of the refusal."""
    for i in range(PER_ACCOUNT + 1):
        r = ic.RawImap(srv.imap)
        st, text, untagged = r.cmd(f"LOGIN {ALICE} {ic.quote(PW[ALICE])}")
        if st != "OK":
            r.close()
            return (i, st, text)
        sessions.append(r)
    return None


def connection_limit_checks(srv, mail):
    sessions = []
    refused = None
    try:
        # Sessions closed by the checks before leave the server's count when their tasks
        # end, which a loaded machine may delay: a refusal below the limit is tried again.
        deadline = time.monotonic() + 30
        while True:
            refused = fill_sessions(srv, sessions)
            if refused is None or refused[0] == PER_ACCOUNT or time.monotonic() > deadline:
                break
            for r in sessions:
                r.close()
            sessions.clear()
            time.sleep(0.3)
        assert refused is not None, f"{PER_ACCOUNT + 1} sessions of one account all logged in (limit {PER_ACCOUNT})"
        assert refused[0] == PER_ACCOUNT, f"login {refused[0] + 1} refused ({refused[1]} {refused[2]!r}), the limit is {PER_ACCOUNT}"
        b = logged_in(srv, BOB)
        b.ok("LOGOUT")
        b.close()
        sessions.pop().close()
        deadline = time.monotonic() + 5
        while True:
            r = ic.RawImap(srv.imap)
            st, text, _ = r.cmd(f"LOGIN {ALICE} {ic.quote(PW[ALICE])}")
            if st == "OK":
                sessions.append(r)
                break
            r.close()
            assert time.monotonic() < deadline, f"5 s after a session closed, alice still cannot log in: {st} {text!r}"
            time.sleep(0.2)
    finally:
        for r in sessions:
            r.close()
    # The next checks log alice in a few times: wait until most closed sessions have left
    # the count (five logins at once get in), rather than for a fixed time.
    deadline = time.monotonic() + 30
    while True:
        got = []
        for _ in range(5):
            r = ic.RawImap(srv.imap)
            st, text, _ = r.cmd(f"LOGIN {ALICE} {ic.quote(PW[ALICE])}")
            got.append(r)
            if st != "OK":
                break
        for r in got:
            r.close()
        if st == "OK":
            break
        assert time.monotonic() < deadline, f"30 s after closing them, alice's sessions still count: {st} {text!r}"
        time.sleep(0.3)
    ok(f"login {PER_ACCOUNT + 1} of one account refused ({refused[1]} {refused[2][:60]!r}); another account logs in; "
       "a freed slot is usable again")


def maintenance_checks(t, srv, mail):
    idle_sel = logged_in(srv, ALICE, "INBOX")
    in_idle = logged_in(srv, BOB, "INBOX")
    in_idle.send("i1 IDLE\r\n")
    assert in_idle.response().startswith(b"+")
    appending = logged_in(srv, ALICE)
    late = msg("append-in-flight", "finished under maintenance\r\n")
    appending.send(b"ap APPEND Drafts {%d}\r\n" % len(late))
    assert appending.response().startswith(b"+"), "APPEND: no continuation"

    t.cli("maint", "on", "--message", "IMAP closed for upgrade")
    started = time.monotonic()
    while True:
        r = ic.RawImap(srv.imap, greeting=False)
        try:
            line = r.response()
        except (h.Closed, ConnectionResetError):
            line = b"(closed without a greeting)"
        if line.startswith(b"* BYE"):
            break
        r.close()
        assert time.monotonic() - started < NOTICE + SLACK, f"{NOTICE + SLACK} s after maint on a new connection still got {line!r}"
        time.sleep(0.1)
    took = time.monotonic() - started
    assert re.match(rb"^\* BYE \[UNAVAILABLE\] .*IMAP closed for upgrade", line), (
        f"a new connection under maintenance: wanted '* BYE [UNAVAILABLE] ...IMAP closed for upgrade...', got {line!r}")
    assert r.is_closed(wait=3), "the BYE greeting was not followed by a close"
    r.close()
    ok(f"maint on: new connections get {line.decode(errors='replace')!r} after {took:.2f} s and are closed")

    line, _, seen = in_idle.wait_untagged(rb"^\* BYE", NOTICE + SLACK)
    assert line is not None, f"a session in IDLE got no BYE within {NOTICE + SLACK} s of maintenance (got {seen})"
    assert in_idle.is_closed(wait=3), "the IDLE session got BYE but stayed open"
    in_idle.close()
    line2, _, seen = idle_sel.wait_untagged(rb"^\* BYE", 1.0)
    how = "unasked"
    if line2 is None:
        idle_sel.send("n1 NOOP\r\n")
        line2, _, seen = idle_sel.wait_untagged(rb"^\* BYE", 5)
        how = "at its next command"
    assert line2 is not None, f"an idle selected session got no BYE (got {seen})"
    assert idle_sel.is_closed(wait=3), "the idle session got BYE but stayed open"
    idle_sel.close()
    ok(f"maint on: a session in IDLE gets {line[:60]!r} and is closed; an idle selected session gets BYE {how} and is closed")

    appending.send(late + b"\r\n")
    seen = []
    try:
        while True:
            resp = appending.response()
            if resp.startswith(b"ap "):
                break
            seen.append(resp)
    except (h.Closed, ConnectionResetError) as e:
        raise AssertionError(f"an APPEND waiting for its literal when maintenance began was cut off: the server sent "
                             f"{seen} and closed the connection ({e}) instead of finishing the command in flight "
                             "(tagged OK) and then sending BYE")
    st, _, text = resp[3:].partition(b" ")
    st = st.decode()
    untagged = seen
    assert st == "OK", f"the APPEND in flight when maintenance began: {st} {text!r} (wanted it finished, then BYE)"
    line3, _, seen = appending.wait_untagged(rb"^\* BYE", NOTICE + SLACK)
    if line3 is None and not any(u.startswith(b"* BYE") for u in untagged):
        try:
            appending.send("n2 NOOP\r\n")
            line3, _, seen = appending.wait_untagged(rb"^\* BYE", 5)
        except (BrokenPipeError, ConnectionResetError):
            line3 = b"(closed)"
    assert line3 is not None or any(u.startswith(b"* BYE") for u in untagged), "the session that finished its APPEND got no BYE"
    appending.close()
    ok("an APPEND whose literal was in flight finishes with tagged OK, then its session gets BYE")

    t.cli("maint", "off")
    started = time.monotonic()
    while True:
        r = ic.RawImap(srv.imap, greeting=False)
        try:
            line = r.response()
        except (h.Closed, ConnectionResetError):
            line = b"(closed)"
        r.close()
        if line.startswith(b"* OK"):
            break
        assert time.monotonic() - started < NOTICE + SLACK, f"{NOTICE + SLACK} s after maint off new connections still get {line!r}"
        time.sleep(0.1)
    r = logged_in(srv, ALICE, "Drafts")
    got = ic.fetch_raw(r.ok("UID FETCH 1:* (BODY.PEEK[])")[1])
    assert any(i["BODY[]"] == late for i in got.values()), "the APPEND finished under maintenance was not stored"
    r.ok("LOGOUT")
    r.close()
    mail.check("after maintenance")
    ok(f"maint off: IMAP greets '* OK' again after {time.monotonic() - started:.2f} s; the message appended in flight "
       "is stored; nothing lost")


def timeout_checks():
    """[imap] command_timeout_secs: silent sessions get BYE and are closed (RFC 3501 5.4 autologout)."""
    t = h.Tegami("imap-timeout")
    t.write_config("[imap]\ncommand_timeout_secs = 4\n")
    t.domain("example.com")
    t.account(ALICE, PW[ALICE])
    srv = t.serve(imap=True, smtp=True, pop3=False)
    pre = ic.RawImap(srv.imap)
    sel = logged_in(srv, ALICE, "INBOX")
    mid = ic.RawImap(srv.imap)
    mid.send("x LOGIN {%d}\r\n" % len(ALICE))
    assert mid.response().startswith(b"+")
    started = time.monotonic()
    busy = logged_in(srv, ALICE, "INBOX")
    # A session that keeps talking is not logged out: a NOOP every 0.8 s leaves 3.2 s of
    # slack against the timeout for a loaded machine.
    for _ in range(5):
        time.sleep(0.8)
        busy.ok("NOOP")
    results = []
    for name, r in (("before LOGIN", pre), ("with INBOX selected", sel), ("in the middle of a literal", mid)):
        line, _, seen = r.wait_untagged(rb"^\* BYE", 10)
        took = time.monotonic() - started
        assert line is not None, f"a silent session {name} got no BYE within {took:.1f} s (timeout 4 s; got {seen})"
        assert r.is_closed(wait=3), f"the silent session {name} got BYE but stayed open"
        assert took < 4 + 8, f"the silent session {name} was logged out only after {took:.1f} s"
        results.append(f"{name} ({line[:45].decode(errors='replace')!r})")
        r.close()
    busy.ok("LOGOUT")
    busy.close()
    assert srv.stop() == 0
    ok(f"command_timeout_secs = 4: silent sessions {', '.join(results)} are logged out and closed; a session sending "
       "NOOP every 0.8 s for 4 s is not")


def test():
    t = h.Tegami("imap-bad")
    t.write_config(f'hostname = "mx.test"\n[imap]\nmax_connections_per_account = {PER_ACCOUNT}\n')
    t.domain("example.com")
    for a, pw in PW.items():
        t.account(a, pw)
    srv = t.serve(imap=True)
    for i in range(3):
        h.send(srv.smtp, "x@ext.test", [ALICE], msg(f"a{i}", f"alice message {i}\r\n"))
    for i in range(2):
        h.send(srv.smtp, "x@ext.test", [BOB], msg(f"b{i}"))
    h.send(srv.smtp, "x@ext.test", [ALICE], crlf("Message-ID: <mime@bad.test>\nMIME-Version: 1.0\n"
                                                 "Content-Type: multipart/mixed; boundary=zz\n\n--zz\n\npart\n--zz--\n"))
    mail = Mail(srv)
    mail.snapshot()
    ok("3+1 messages for alice and 2 for bob delivered")

    syntax_checks(srv, mail)
    literal_checks(srv, mail)
    other_account_checks(srv, mail)
    readonly_checks(srv, mail)
    flood_checks(srv, mail)
    connection_limit_checks(srv, mail)
    mail.check("after the connection limit")
    maintenance_checks(t, srv, mail)
    assert srv.alive(), "the server died"
    t.check_store("after the bad input")
    ok("the server is still up and tegami check passes")
    assert srv.stop() == 0
    timeout_checks()


if __name__ == "__main__":
    h.main(test, timeout=120)
