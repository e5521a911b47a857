#!/usr/bin/env python3
"""Storage quotas (issue 20, RFC 9208): what SMTP, the queue and IMAP answer when a mailbox
is full, that nothing over a quota is stored, and that raising the quota lets mail in.

Checks: `tegami account quota` sets and shows an account's own limit and `domain quota` the
default of the others. Past 90 % the owner gets one warning mail, and `stats quota` marks
the account warned. With smtplib (which declares SIZE=), a message the quota cannot take
now is refused at RCPT with 452 4.2.2, one bigger than the whole quota with 552 5.2.2; sent
without SIZE over a raw socket it is refused after DATA with 452 4.2.2; nothing is stored
either way, and another recipient of the same transaction is unharmed at RCPT. IMAP
advertises QUOTA and QUOTA=RES-STORAGE, GETQUOTAROOT and GETQUOTA report the usage in KiB,
SETQUOTA is refused with NOPERM, STATUS gives DELETED and DELETED-STORAGE, APPEND and COPY
past the limit get NO [OVERQUOTA], and imaplib's getquotaroot reads the answer. A message
the queue delivers locally (a campaign's test mail) waits with "4.2.2 the mailbox is full"
and arrives once the quota is raised and the queue retried; so does the SMTP mail sent
again. `tegami check` passes at the end.
"""

import imaplib
import os
import re
import smtplib
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import imap_common as ic  # noqa: E402
import newsletter_common as nl  # noqa: E402
import peers  # noqa: E402
from harness import ok  # noqa: E402

ANN = "ann@example.com"
BOB = "bob@example.com"
PW = "quota-pw"
LIMIT = 20 * 1024


def message(subject, size):
    head = f"From: s@sender.test\r\nTo: {ANN}\r\nSubject: {subject}\r\n\r\n"
    line = "quota filler line of mail text, long enough to count.\r\n"
    body = (line * (size // len(line) + 1))[: max(0, size - len(head))]
    return (head + body).encode()


def imap(srv):
    r = ic.RawImap(srv.imap)
    r.login(ANN, PW)
    return r


def inbox_subjects(srv):
    r = imap(srv)
    _, selected = r.ok("SELECT INBOX")
    untagged = []
    if b"* 0 EXISTS" not in selected:
        _, untagged = r.ok("FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    r.ok("LOGOUT")
    r.close()
    return [m.group(1).decode(errors="replace") for line in untagged
            for m in [re.search(rb"Subject: ([^\r\n]*)", line)] if m]


def messages_in(srv, mailbox="INBOX"):
    r = imap(srv)
    _, untagged = r.ok(f"STATUS {mailbox} (MESSAGES)")
    r.ok("LOGOUT")
    r.close()
    return int(untagged[0].rsplit(b"MESSAGES ", 1)[1].rstrip(b")"))


def used(t):
    rows = nl.cli_json(t, "stats", "quota")
    return {row["address"]: row for row in rows}


def cli_settings(t):
    out = t.cli("account", "quota", ANN, "20K").out
    assert out.strip() == f"{ANN}: 0 B used of 20.0 KiB (0 %), its own quota", out
    t.cli("domain", "quota", "example.com", "1G")
    out = t.cli("account", "quota", BOB).out
    assert "of 1.0 GiB (0 %), its domain's default" in out, out
    out = t.cli("domain", "quota", "example.com").out
    assert "limited to 1.0 GiB" in out, out
    r = t.cli("account", "quota", ANN, "12 parsecs", check=False)
    assert r.code != 0 and "500M" in r.err and len(r.err.strip().splitlines()) == 1, r
    ok("`account quota` sets 20K for ann, `domain quota` 1G for the rest; a bad size gets a one-line hint")


def smtp_limits(t, srv):
    h.send(srv.smtp, "s@sender.test", [ANN], message("first", 9500))
    h.send(srv.smtp, "s@sender.test", [ANN], message("second", 9500))
    # The quota service may already have sent its warning (a round every 10 s).
    assert len([s for s in inbox_subjects(srv) if "Your mailbox is" not in s]) == 2, inbox_subjects(srv)
    # Past 90 %: the warning arrives within a round of the quota service (10 s).
    deadline = time.monotonic() + 40
    while not any("Your mailbox is" in s for s in inbox_subjects(srv)):
        assert time.monotonic() < deadline, f"no quota warning in {inbox_subjects(srv)}; {used(t)}"
        time.sleep(0.5)
    subjects = inbox_subjects(srv)
    assert sum("Your mailbox is" in s for s in subjects) == 1, subjects
    row = used(t)[ANN]
    assert row["warned"] and row["percent"] >= 90 and row["limit"] == LIMIT, row
    ok(f"past 90 % ann gets one warning mail ({[s for s in subjects if 'mailbox is' in s][0]!r}); `stats quota` says warned at {row['percent']} %")

    before = row["used"]
    with smtplib.SMTP(h.HOST, srv.smtp, timeout=30) as c:
        try:
            c.sendmail("s@sender.test", [ANN], message("third", 2000))
            raise AssertionError("a message past the quota was accepted")
        except smtplib.SMTPRecipientsRefused as e:
            code, text = e.recipients[ANN]
            assert code == 452 and text.startswith(b"4.2.2"), e.recipients
        refused = c.sendmail("s@sender.test", [BOB, ANN], message("to both", 2000))
        assert list(refused) == [ANN] and refused[ANN][0] == 452, refused
        try:
            c.sendmail("s@sender.test", [ANN], message("huge", 30_000))
            raise AssertionError("a message bigger than the quota was accepted")
        except smtplib.SMTPRecipientsRefused as e:
            code, text = e.recipients[ANN]
            assert code == 552 and text.startswith(b"5.2.2"), e.recipients
    ok("smtplib (SIZE=): 452 4.2.2 at RCPT for a message that does not fit now, 552 5.2.2 for one bigger than the quota; bob still gets his copy")

    s = h.RawSmtp(srv.smtp)
    s.expect("MAIL FROM:<s@sender.test>", 250)
    s.expect(f"RCPT TO:<{ANN}>", 250, what="RCPT without SIZE while under the limit")
    s.expect("DATA", 354)
    s.send(message("no size given", 2000).decode() + "\r\n.\r\n")
    code, text = s.reply()
    assert code == 452 and text.startswith("4.2.2") and ANN in text, (code, text)
    s.expect("QUIT", 221)
    assert messages_in(srv) == 3 and used(t)[ANN]["used"] == before, used(t)
    ok(f"without SIZE the message is refused after DATA with {code} {text[:40]!r}; ann still has 3 messages, {before} bytes")


def imap_quota(srv):
    r = imap(srv)
    _, untagged = r.ok("CAPABILITY")
    caps = untagged[0].split()
    assert b"QUOTA" in caps and b"QUOTA=RES-STORAGE" in caps, untagged
    _, untagged = r.ok("GETQUOTAROOT INBOX")
    assert untagged[0] in (b'* QUOTAROOT INBOX ""', b'* QUOTAROOT "INBOX" ""'), untagged
    assert untagged[1].startswith(b'* QUOTA "" (STORAGE ') and untagged[1].endswith(b" 20)"), untagged
    kib = int(untagged[1].split()[4])
    _, again = r.ok('GETQUOTA ""')
    assert again == untagged[1:], again
    status, text, _ = r.cmd('SETQUOTA "" (STORAGE 999999)')
    assert status == "NO" and b"[NOPERM]" in text, (status, text)
    status, text, _ = r.cmd('GETQUOTA "other"')
    assert status == "NO" and b"[NONEXISTENT]" in text, (status, text)

    status, text, _ = r.cmd_literals(["APPEND Archive ", message("appended", 6000), ""])
    assert status == "NO" and b"[OVERQUOTA]" in text, (status, text)
    r.ok("SELECT INBOX")
    status, text, _ = r.cmd("COPY 1 Archive")
    assert status == "NO" and b"[OVERQUOTA]" in text, (status, text)
    r.ok("MOVE 1 Archive")
    r.ok("SELECT Archive")
    r.ok("STORE 1 +FLAGS (\\Deleted)")
    _, st = r.ok("STATUS Archive (DELETED DELETED-STORAGE)")
    deleted = st[0].rsplit(b"(", 1)[1].rstrip(b")").split()
    assert deleted[:3] == [b"DELETED", b"1", b"DELETED-STORAGE"] and 9 <= int(deleted[3]) <= 10, st
    r.ok("LOGOUT")
    r.close()
    ok(f"IMAP: GETQUOTAROOT/GETQUOTA say {kib} of 20 KiB, SETQUOTA NO [NOPERM], APPEND and COPY NO [OVERQUOTA], MOVE allowed, STATUS {st[0][-40:].decode()}")

    c = imaplib.IMAP4(h.HOST, srv.imap)
    c.login(ANN, PW)
    typ, data = c.getquotaroot("INBOX")
    assert typ == "OK" and data[0][0].endswith(b' ""') and b"STORAGE" in data[1][0], data
    c.logout()
    ok(f"imaplib getquotaroot reads {data[1][0].decode()}")


def queue_and_raise(t, srv, mx):
    t.cli("list", "add", "news", "--from", "news@example.com", "--from-name", "News")
    cid = nl.campaign_create(t, "news", "Quota test", "Hello {{name|there}}.\n{{unsubscribe_url}}\n", at="2099-01-01 09:00")
    before = messages_in(srv)
    t.cli("campaign", "test", str(cid), "--to", ANN)

    def waiting():
        for m in nl.cli_json(t, "queue", "list"):
            for r in m["recipients"]:
                if r["address"] == ANN and "full" in (r["last_error"] or ""):
                    return m["id"], r
        return None

    qid, r = peers.wait_until("the test mail deferred in the queue", waiting, 60)
    assert r["state"] == "queued" and r["last_reason"] == "local", r
    assert messages_in(srv) == before, "a queued message was delivered past the quota"
    ok(f"the queue's local delivery defers the campaign test mail: {r['last_error']!r}, still queued")

    t.cli("account", "quota", ANN, "1M")
    t.cli("queue", "retry", str(qid))
    peers.wait_until("the test mail in ann's INBOX", lambda: any("[TEST] Quota test" in s for s in inbox_subjects(srv)), 60)
    h.send(srv.smtp, "s@sender.test", [ANN], message("third, again", 2000))
    assert any("third, again" in s for s in inbox_subjects(srv))
    row = peers.wait_until("the warning re-armed", lambda: (lambda r: r if not r["warned"] else None)(used(t)[ANN]), 120)
    assert row["limit"] == 1 << 20, row
    ok(f"raised to 1M: the queue retry delivers the waiting mail and SMTP takes the third message; ann uses {row['used']} bytes, warning re-armed")


def test():
    t = h.Tegami("quota")
    mx = nl.LoopbackMx()
    http_port = peers.free_port()
    t.write_config(nl.config(mx.port, http_port, rate=100))
    t.domain("example.com")
    t.account(ANN, PW)
    t.account(BOB, PW)
    cli_settings(t)
    srv = nl.serve(t, http_port)
    smtp_limits(t, srv)
    imap_quota(srv)
    queue_and_raise(t, srv, mx)
    assert srv.stop() == 0
    t.check_store("after quota refusals")


if __name__ == "__main__":
    h.main(test, timeout=240)
