#!/usr/bin/env python3
"""Bounces the outbound queue learns itself count on the subscriber (issue 21.1), and the
CLI survives a reader that stops early (issue 21.6).

Setup: a loopback MX (a small SMTP server in this script, on 127.0.0.1) reached through
`[[queue.route]] domain = "peer.test"`. It answers RCPT for refused@peer.test with
"550 5.1.1", for deferred@peer.test with "451 4.2.0" every time, and takes everyone else.
`[queue] retry_secs = [60]`, `give_up_after_secs = 600`; the clock is the test's
(TEGAMI_CLOCK_FILE). A list of four: good1, refused, deferred, good2 @peer.test.

Checks:
- Campaign 1: good1 and good2 receive it; refused@ is refused at RCPT and becomes
  "bounced" with one hard bounce, without any DSN going anywhere (the queue empties of it).
- deferred@ stays active while the queue retries; once the clock passes the give-up time,
  the queue gives up and deferred@ becomes "bounced" with one hard bounce.
- campaign show --json: hard_bounce 2, delivered 2, failed 2, deferred 1 (counted once per
  mail, not per attempt); the queue is empty (no DSN to a VERP address was queued).
- Campaign 2 reaches good1 and good2 only: the MX never sees a RCPT for the bounced two.
- `campaign show 1 | head -1` and `queue list | head -1` exit 0 with pipefail, and print
  no panic (they died with exit 101 on EPIPE).
"""

import os
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import newsletter_common as nl  # noqa: E402
import peers  # noqa: E402
from harness import ok  # noqa: E402

LIST = "news"
GOOD = ("good1@peer.test", "good2@peer.test")
REFUSED = "refused@peer.test"
DEFERRED = "deferred@peer.test"
GIVE_UP = 600


def subscriber(t, address):
    return nl.subscribers(t, LIST)[address]


def totals(t, cid):
    """Every outcome count of `campaign show --json`, wherever the totals sit."""
    obj = nl.cli_json(t, "campaign", "show", str(cid))
    found = nl._find(obj, "totals")
    assert isinstance(found, dict), f"no totals in campaign show --json: {str(obj)[:300]}"
    return {k: int(v) for k, v in found.items()}


def piped(t, *args):
    """`tegami ARGS | head -1` under bash's pipefail: (exit code, first line, stderr)."""
    argv = [t.bin, "--data", str(t.data), "--config", str(t.config), *args]
    quoted = " ".join("'" + a.replace("'", "'\\''") + "'" for a in argv)
    p = subprocess.run(["bash", "-c", f"set -o pipefail; {quoted} 2>{t.root}/pipe.err | head -1"],
                       capture_output=True, timeout=60)
    return p.returncode, p.stdout.decode(errors="replace"), (t.root / "pipe.err").read_text()


def closed_pipe(t, *args):
    """`tegami ARGS` with stdout a pipe whose reader is already gone, so the first write
    meets EPIPE whatever the timing: (exit code, stderr)."""
    argv = [t.bin, "--data", str(t.data), "--config", str(t.config), *args]
    r, w = os.pipe()
    os.close(r)
    try:
        p = subprocess.run(argv, stdout=w, stderr=subprocess.PIPE, timeout=60)
    finally:
        os.close(w)
    return p.returncode, p.stderr.decode(errors="replace")


def test():
    t = h.Tegami("nl-bounces")
    clock = peers.Clock(t.root)
    os.environ.update(clock.env())  # for serve and the CLI
    mx = nl.LoopbackMx(refuse={REFUSED: "550 5.1.1 <refused@peer.test>: Recipient address rejected: User unknown"},
                       defer={DEFERRED: "451 4.2.0 <deferred@peer.test>: mailbox busy, try again later"})
    http_port = peers.free_port()
    t.write_config(nl.config(mx.port, http_port, rate=100,
                             queue={"retry_secs": [60], "give_up_after_secs": GIVE_UP,
                                    "delay_notice_after_secs": 100000}))
    t.domain("example.com")
    t.cli("list", "add", LIST, "--from", "news@example.com", "--from-name", "Example News")
    for address in (GOOD[0], REFUSED, DEFERRED, GOOD[1]):
        t.cli("subscriber", "add", LIST, address)
    srv = nl.serve(t, http_port)

    c1 = nl.campaign_create(t, LIST, "first", "Hello {{name}}\n\n{{unsubscribe_url}}\n")
    for g in GOOD:
        peers.wait_until(f"campaign 1 at {g}", lambda g=g: mx.received_by(g), 60)
    peers.wait_until(f"{REFUSED} bounced", lambda: subscriber(t, REFUSED)["status"] == "bounced", 120)
    s = subscriber(t, REFUSED)
    assert s["hard_bounces"] == 1, f"{REFUSED}: {s}"
    assert mx.asked(DEFERRED) >= 1, "the deferred address was never tried"
    assert subscriber(t, DEFERRED)["status"] == "active", subscriber(t, DEFERRED)
    ok(f"550 5.1.1 at RCPT: {REFUSED} is bounced with 1 hard bounce; {DEFERRED} still active while retried")

    # The queue retries every 60 s until GIVE_UP; past it, the next attempt gives up.
    clock.advance_to(clock.now() + GIVE_UP + 90)
    peers.wait_until(f"{DEFERRED} bounced after the give-up", lambda: subscriber(t, DEFERRED)["status"] == "bounced", 60)
    s = subscriber(t, DEFERRED)
    assert s["hard_bounces"] == 1, f"{DEFERRED}: {s}"
    peers.wait_until("the queue to empty", lambda: peers.queue_size(srv) == 0, 120)
    time.sleep(1.5)
    assert peers.queue_size(srv) == 0, "something (a DSN to a VERP address?) was queued after the failures"
    got = totals(t, c1)
    want = {"hard_bounce": 2, "failed": 2, "delivered": 2, "deferred": 1}
    assert {k: got.get(k) for k in want} == want, f"campaign show totals: {got}"
    for a in (REFUSED, DEFERRED):
        assert subscriber(t, a)["hard_bounces"] == 1, f"counted twice: {subscriber(t, a)}"
    ok(f"the queue gave up on {DEFERRED}: bounced with 1 hard bounce; campaign show: {want}; no notice queued")

    asked = {a: mx.asked(a) for a in (REFUSED, DEFERRED)}
    c2 = nl.campaign_create(t, LIST, "second", "Hello again {{name}}\n\n{{unsubscribe_url}}\n")
    for g in GOOD:
        peers.wait_until(f"campaign 2 at {g}", lambda g=g: len(mx.received_by(g)) >= 2, 60)
    peers.wait_until("campaign 2 done", lambda: nl.campaign(t, c2)[0] == "done", 120)
    time.sleep(1)
    assert {a: mx.asked(a) for a in (REFUSED, DEFERRED)} == asked, \
        f"the bounced subscribers were mailed again: {mx.rcpts}"
    assert totals(t, c2).get("sent") == 2, totals(t, c2)
    ok("campaign 2 goes to the two good subscribers only: no RCPT for the bounced ones")

    for args in (("campaign", "show", str(c1)), ("queue", "list"), ("subscriber", "list", LIST)):
        code, first, err = piped(t, *args)
        assert code == 0 and "panicked" not in err, f"tegami {' '.join(args)} | head -1: exit {code}, {err!r}"
        assert first.strip(), f"tegami {' '.join(args)} | head -1 printed nothing"
        code, err = closed_pipe(t, *args)
        assert code == 0 and "panicked" not in err, f"tegami {' '.join(args)} >closed pipe: exit {code}, {err!r}"
    ok("campaign show, queue list, subscriber list piped into head -1 (pipefail) or into a closed pipe exit 0, no panic")
    srv.stop()
    t.check_store("after the bounce test")


if __name__ == "__main__":
    h.main(test, timeout=170)
