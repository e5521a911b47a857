#!/usr/bin/env python3
"""Failure and delay notices: a peer that refuses with 5xx, a peer that is down.

Setup: tegami with domain example.com, account alice, alias fwd@example.com ->
bad@peer.test (a forward to a remote target), `[[queue.route]] domain = "peer.test"` to
127.0.0.1:<port>, and `[queue] retry_secs = [600, 1200, 2400]`,
`delay_notice_after_secs = 3000`, `give_up_after_secs = 100000`, the clock under the
test's control through TEGAMI_CLOCK_FILE (seconds added to the real clock).

Part 1, refused (a private Postfix refusing bad@peer.test with 550 5.1.1):
- alice sends to good@ and bad@peer.test in one message: good@ arrives; alice gets exactly
  one failure DSN in her INBOX, from MAILER-DAEMON, envelope sender <> (Return-Path: <>),
  multipart/report; report-type=delivery-status with Reporting-MTA; one recipient block:
  Final-Recipient: rfc822; bad@peer.test, Action: failed, Status: 5.1.1, Diagnostic-Code:
  smtp; 550 5.1.1 ..., Remote-MTA; the third part returns the original headers (Subject,
  Message-ID).
- A null-sender message forwarded to bad@peer.test (fwd@ alias, sent to the MX listener)
  fails without any notice: no new mail anywhere, the queue empties.

Part 2, down (a listener on the route's port that answers "421 4.3.2" and hangs up, and
counts the connections, so every attempt is seen):
- the first attempt comes at once; none before now+600 (clock moved to 590 s: no
  attempt); one just after; then at +1200 and +2400 after each previous attempt, never
  earlier; the first deferral past 3000 s sends one delay DSN (Action: delayed, Status
  4.x.x, Will-Retry-Until), none before it; then Postfix takes the port back, the clock
  moves past the next retry and the message arrives, the queue empties, no second delay
  DSN and no failure DSN.
"""

import os
import socket
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import peers  # noqa: E402
from harness import crlf, ok  # noqa: E402

ALICE = "alice@example.com"
PW = "alice-pw"
RETRY = [600, 1200, 2400]
DELAY_NOTICE = 3000


class DownPeer:
    """Answers every connection on the port with 421 and hangs up; counts connections."""

    def __init__(self, port):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((h.HOST, port))
        self.sock.listen(16)
        self.times = []
        self._stop = False
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.times.append(time.time())
            try:
                c.sendall(b"421 4.3.2 peer.test service not available, closing channel\r\n")
            except OSError:
                pass
            c.close()

    def close(self):
        # shutdown() wakes the thread blocked in accept(); close() alone leaves the kernel's
        # listening socket alive until accept returns, so it could take one more connection.
        self._stop = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._thread.join(5)


def dsns(srv):
    out = []
    for raw in peers.inbox(srv.imap, ALICE, PW):
        if b"multipart/report" in raw.split(b"\r\n\r\n", 1)[0].lower() or b"report-type" in raw[:4000].lower():
            out.append(raw)
    return out


def test():
    t = h.Tegami("failures")
    clock = peers.Clock(t.root)
    os.environ.update(clock.env())  # for serve and the CLI
    peer = peers.PostfixPeer(refuse={"bad@peer.test": "550 5.1.1 no such user here"})
    peer.start()
    t.write_config(peers.outbound_config(
        routes=[("peer.test", peer.port)],
        queue={"retry_secs": RETRY, "delay_notice_after_secs": DELAY_NOTICE, "give_up_after_secs": 100000}))
    t.domain("example.com")
    t.account(ALICE, PW)
    t.alias("fwd@example.com", "bad@peer.test")
    srv = peers.serve(t)
    sub = srv.port("submission")

    # --- part 1: refused -----------------------------------------------------------
    peers.submit(sub, ALICE, PW, ALICE, ["good@peer.test", "bad@peer.test"], crlf(f"""\
From: Alice <{ALICE}>
To: good@peer.test, bad@peer.test
Subject: partly refused
Message-ID: <refused-1@example.com>
Date: Mon, 23 Nov 2026 10:00:00 +0000

one of you does not exist
"""), starttls=False)
    peer.wait_count(1)
    assert [m.recipient for m in peer.messages()] == ["good@peer.test"]
    box = peers.wait_until("a failure DSN in alice's INBOX", lambda: dsns(srv), 120)
    time.sleep(1)
    box = dsns(srv)
    assert len(box) == 1, f"{len(box)} DSNs, wanted one"
    raw = box[0]
    msg, per_msg, rcpts, returned = peers.delivery_status(raw)
    assert raw.startswith(b"Return-Path: <>"), f"the DSN's envelope sender is not null: {raw[:80]!r}"
    assert "mailer-daemon@" in str(msg["From"]).lower(), f"From: {msg['From']}"
    assert per_msg.get("reporting-mta", "").lower().startswith("dns;"), per_msg
    assert len(rcpts) == 1, f"one recipient block wanted (good@ was delivered): {rcpts}"
    r = rcpts[0]
    assert r.get("final-recipient", "").lower().replace(" ", "") == "rfc822;bad@peer.test", r
    assert r.get("action", "").lower() == "failed", r
    assert r.get("status") == "5.1.1", r
    diag = r.get("diagnostic-code", "")
    assert diag.lower().startswith("smtp;") and "550" in diag and "no such user" in diag, r
    assert "remote-mta" in r, f"no Remote-MTA: {r}"
    assert "Subject: partly refused" in returned and "<refused-1@example.com>" in returned, returned[:400]
    ok("5xx from the peer: one failure DSN from MAILER-DAEMON with envelope <>, RFC 3464 fields "
       f"(Final-Recipient, Action failed, Status 5.1.1, Diagnostic-Code {diag[:40]!r}..., Remote-MTA), original headers")

    inbox_before = len(peers.inbox(srv.imap, ALICE, PW))
    h.send(srv.smtp, "", ["fwd@example.com"], crlf("""\
From: MAILER-DAEMON@elsewhere.test
To: fwd@example.com
Subject: a bounce being forwarded
Message-ID: <null-1@elsewhere.test>

null sender
"""))
    peers.wait_until("the forwarded null-sender message to leave the queue", lambda: peers.queue_size(srv) == 0, 120)
    time.sleep(2)
    assert len(peers.inbox(srv.imap, ALICE, PW)) == inbox_before, "a notice was sent for a null-sender message"
    assert peers.queue_size(srv) == 0, "something (a notice?) was queued for the null-sender failure"
    ok("a null-sender message forwarded to a refusing peer fails silently: no notice, queue empty")

    # --- part 2: down, then back ------------------------------------------------------
    peer.stop()
    down = DownPeer(peer.port)
    peers.submit(sub, ALICE, PW, ALICE, ["later@peer.test"], crlf(f"""\
From: Alice <{ALICE}>
To: later@peer.test
Subject: eventually
Message-ID: <later-1@example.com>

worth the wait
"""), starttls=False)
    peers.wait_until("the first attempt", lambda: len(down.times) >= 1, 60)
    last = clock.now()  # an upper bound of when tegami made that attempt
    ok("peer down (421): the first attempt came at once")

    for n, wait in enumerate(RETRY, start=2):
        # Just before the earliest time the next attempt is due: nothing may happen.
        clock.advance_to(last + wait - 20)
        time.sleep(3)
        assert len(down.times) == n - 1, f"attempt {n} came before its time (+{wait} s): {len(down.times)} attempts"
        assert not dsns(srv)[1:], "a delay DSN before the deferral past delay_notice_after_secs"
        clock.advance_to(last + wait + 5)
        peers.wait_until(f"attempt {n} after +{wait} s", lambda: len(down.times) >= n, 60)
        last = clock.now()
        assert len(down.times) == n, f"{len(down.times)} attempts, wanted {n}"
        note_due = clock.offset >= DELAY_NOTICE
        if not note_due:
            time.sleep(1)
            assert len(dsns(srv)) == 1, f"a delay DSN before {DELAY_NOTICE} s (clock +{clock.offset} s)"
    ok(f"retries at +{RETRY[0]}, +{RETRY[1]}, +{RETRY[2]} s after each attempt, none earlier (clock via TEGAMI_CLOCK_FILE)")

    assert clock.offset >= DELAY_NOTICE, f"the schedule did not pass delay_notice_after_secs (+{clock.offset})"
    box = peers.wait_until("a delay DSN", lambda: (lambda d: d if len(d) >= 2 else None)(dsns(srv)), 120)
    msg, per_msg, rcpts, returned = peers.delivery_status(box[-1])
    assert len(rcpts) == 1, rcpts
    r = rcpts[0]
    assert r.get("final-recipient", "").lower().replace(" ", "") == "rfc822;later@peer.test", r
    assert r.get("action", "").lower() == "delayed", r
    assert r.get("status", "").startswith("4."), r
    assert "will-retry-until" in r, f"no Will-Retry-Until: {r}"
    assert "<later-1@example.com>" in returned, returned[:300]
    ok(f"after {DELAY_NOTICE} s: one delay DSN (Action delayed, Status {r['status']}, Will-Retry-Until)")

    down.close()
    attempts_while_down = len(down.times)
    peer.start()
    # The last retry wait repeats.
    clock.advance_to(last + RETRY[-1] + 5)
    peer.wait_count(2, timeout=30)
    assert any(m.message_id == "<later-1@example.com>" for m in peer.messages())
    peers.wait_until("an empty queue", lambda: peers.queue_size(srv) == 0, 120)
    time.sleep(1)
    assert len(dsns(srv)) == 2, f"{len(dsns(srv))} DSNs: a second delay or a failure notice was sent"
    assert attempts_while_down == len(RETRY) + 1, f"{attempts_while_down} attempts on the down peer"
    ok("peer back: delivered at the next retry (last wait repeats), queue empty, no further notice")

    srv.stop()
    peer.close()
    t.check_store("after the failures test")


if __name__ == "__main__":
    h.main(test, timeout=170)
