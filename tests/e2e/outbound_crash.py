#!/usr/bin/env python3
"""kill -9 of tegami while its queue sends 1,000 messages to Postfix: nothing lost, duplicates
only within the documented window.

Setup: a private Postfix (tests/e2e/peers.py) reached through `[[queue.route]] domain =
"peer.test"`, `[queue] concurrency = 8, per_destination = 4, messages_per_connection = 100,
retry_secs = [3600]`, the clock under the test's control (TEGAMI_CLOCK_FILE).

1. With Postfix stopped, 1,000 messages (one recipient each, distinct Message-IDs) are
   submitted over 8 sessions; right after the last 250, tegami is killed with SIGKILL
   (durability of the accept: a 250 means the queue entry is on disk).
2. Postfix starts, the clock moves past the retry time, tegami restarts and sends; it is
   killed with SIGKILL when Postfix holds about 25 % of the mail, restarted, killed again
   at about 60 % (CRASH_ROUNDS, default 2), and restarted to finish. Each kill must land
   mid-run (Postfix holds fewer than 1,000 after it settles).
3. In the end Postfix holds every one of the 1,000 Message-IDs with its body intact, the
   queue is empty (/metrics), `tegami check` passes, and the number of extra copies is at
   most CRASH_ROUNDS x per_destination.

The bound: tegami settles each message right after its SMTP transaction and runs one
transaction at a time per connection, so a kill can only lose the record of deliveries in
the window between the peer's 250 and tegami's commit: at most one per open connection, and
at most per_destination (4) connections are open to the one destination here.
"""

import hashlib
import os
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
N = int(os.environ.get("CRASH_MESSAGES", "1000"))
ROUNDS = int(os.environ.get("CRASH_ROUNDS", "2"))
PER_DESTINATION = 4
SESSIONS = 8


def message(i):
    lines = "".join(f"message {i} line {j} {'abcdefghij' * 5}\n" for j in range(12))
    return crlf(f"From: Alice <{ALICE}>\nTo: r{i % 50}@peer.test\nSubject: crash {i}\n"
                f"Message-ID: <crash-{i}@example.com>\nDate: Mon, 23 Nov 2026 10:00:00 +0000\n\n{lines}")


def body_sha(raw_crlf):
    return hashlib.sha256(raw_crlf.split(b"\r\n\r\n", 1)[1]).hexdigest()


def settled_count(peer, quiet=1.0, timeout=60):
    """Postfix's Maildir count once it stopped growing for `quiet` seconds (its own queue drained)."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        c = peer.count()
        if c != last:
            last, since = c, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return c
        time.sleep(0.05)
    raise AssertionError(f"the Postfix peer's Maildir kept changing for {timeout} s")


def test():
    t = h.Tegami("outcrash")
    clock = peers.Clock(t.root)
    os.environ.update(clock.env())
    peer = peers.PostfixPeer()
    t.write_config(peers.outbound_config(
        routes=[("peer.test", peer.port)],
        queue={"concurrency": 8, "per_destination": PER_DESTINATION, "messages_per_connection": 100,
               "retry_secs": [3600]}))
    t.domain("example.com")
    t.account(ALICE, PW)
    srv = peers.serve(t)
    sub = srv.port("submission")

    expected = {f"<crash-{i}@example.com>": body_sha(message(i)) for i in range(N)}
    errors = []

    def worker(k):
        try:
            s = peers.Submitter(sub, ALICE, PW)
            for i in range(k, N, SESSIONS):
                s.send(ALICE, [f"r{i % 50}@peer.test"], message(i))
            s.close()
        except Exception as e:  # noqa: BLE001
            errors.append(f"session {k}: {type(e).__name__}: {e}")

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(SESSIONS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    srv.kill()
    ok(f"{N} messages accepted over {SESSIONS} submission sessions in {time.monotonic() - started:.1f} s "
       "with the peer down; tegami killed with SIGKILL right after the last 250")

    peer.start()
    clock.set(4000)  # past the retry time of whatever was tried while the peer was down
    thresholds = [int(N * f) for f in (0.25, 0.6, 0.8, 0.9)][:ROUNDS]
    for rnd, at in enumerate(thresholds, start=1):
        srv = peers.serve(t)
        deadline = time.monotonic() + 120
        while peer.count() < at:
            assert time.monotonic() < deadline, f"round {rnd}: Postfix holds {peer.count()} after 120 s, waiting for {at}"
            assert srv.alive(), f"tegami exited during round {rnd}: {srv.error_line()}"
            time.sleep(0.005)
        srv.kill()
        c = settled_count(peer)
        assert c < N, (f"round {rnd}: the kill came after the whole run (Postfix holds {c}); "
                       "the test did not crash a queue run")
        ok(f"round {rnd}: SIGKILL with the queue run going (Postfix had {at}+, holds {c} once settled)")

    srv = peers.serve(t)
    peers.wait_until("every message at Postfix", lambda: peer.count() >= N, 120, interval=0.2)
    peers.wait_until("an empty queue", lambda: peers.queue_size(srv) == 0, 60)
    total = settled_count(peer, quiet=2.0)
    got = {}
    for m in peer.messages():
        got.setdefault(m.message_id, []).append(m)
    missing = sorted(set(expected) - set(got))
    assert not missing, f"{len(missing)} messages never reached Postfix, e.g. {missing[:5]}"
    extra = sorted(set(got) - set(expected))
    assert not extra, f"unexpected messages at Postfix: {extra[:5]}"
    for mid, copies in got.items():
        for m in copies:
            assert hashlib.sha256(m.body()).hexdigest() == expected[mid], f"{mid}: body changed"
    dups = total - len(got)
    bound = ROUNDS * PER_DESTINATION
    assert dups <= bound, (f"{dups} duplicate deliveries after {ROUNDS} kills, more than the window allows "
                           f"({bound} = kills x per_destination): "
                           f"{[mid for mid, c in got.items() if len(c) > 1][:10]}")
    ok(f"all {N} messages at Postfix, bodies intact; {dups} duplicates (bound {bound}); queue empty")

    srv.stop()
    t.check_store("after the outbound crash test")
    peer.close()


if __name__ == "__main__":
    h.main(test, timeout=175)
