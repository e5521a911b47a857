#!/usr/bin/env python3
"""kill -9 in the middle of a 2,000-subscriber campaign, twice: the campaign resumes after
each restart and completes, and every subscriber gets exactly one mail (issue 10).

Setup: a private Postfix (tests/e2e/peers.py) through `[[queue.route]] domain = "peer.test"`,
`[queue] concurrency = 8, per_destination = 4, retry_secs = [3600]`, `[newsletter]
rate_per_second = 200` (and `campaign create --rate 200`) so that enqueueing 2,000 mails
takes about ten seconds, and the clock under the test's control (TEGAMI_CLOCK_FILE).

1. Postfix is stopped. The campaign starts; when `campaign show` counts 500+ sent
   (enqueued: the `sent` set is written in the same transaction as the queue rows), tegami
   is killed with SIGKILL; the count after the kill is below 2,000 (the kill came mid-run).
2. Postfix starts, the clock moves past the retry time, tegami restarts: the campaign goes
   on enqueueing and the queue delivers; tegami is killed again when Postfix holds 25 %,
   and Postfix holds fewer than 2,000 once it settles (mid-run again).
3. tegami restarts; the campaign ends "done" with sent 2000; the queue empties; Postfix
   holds a mail for each of the 2,000 subscribers and for no one else.

Duplicates: enqueueing is exactly once (a subscriber in the `sent` set is never enqueued
again), so no subscriber may hold two mails with different Message-IDs (two renderings),
and `campaign recipients` lists each subscriber once. Delivery is at most once for
campaign mail (issue 21.5): a transaction is recorded before it starts and one that the
kill cut off counts as sent, so nobody holds two copies of the same Message-ID either;
the price is that the transactions under way at the kill (at most per_destination, to the
one destination) may be lost, so that many subscribers may hold nothing.
"""

import collections
import os
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import newsletter_common as nl  # noqa: E402
import peers  # noqa: E402
from harness import ok  # noqa: E402

N = int(os.environ.get("NEWSLETTER_SUBSCRIBERS", "2000"))
PER_DESTINATION = 4
RATE = 200
LIST = "crashlist"


def test():
    t = h.Tegami("nl-crash")
    clock = peers.Clock(t.root)
    os.environ.update(clock.env())  # for serve and the CLI
    peer = peers.PostfixPeer(domains=("peer.test",))
    http_port = peers.free_port()
    t.write_config(nl.config(peer.port, http_port, rate=RATE,
                             queue={"concurrency": 8, "per_destination": PER_DESTINATION,
                                    "messages_per_connection": 100, "retry_secs": [3600]}))
    t.domain("example.com")
    t.cli("list", "add", LIST, "--from", "news@example.com")
    want = {f"s{i}@peer.test": f"Subscriber {i}" for i in range(N)}
    csv_path = t.root / "subs.csv"
    nl.write_csv(csv_path, ["email", "name"], [[e, n] for e, n in want.items()])
    assert nl.import_counts(t.cli("subscriber", "import", LIST, str(csv_path)).out) == (N, 0, 0)
    ids = {e: int(s["id"]) for e, s in nl.subscribers(t, LIST).items()}

    # --- 1: kill while enqueueing, the peer down ------------------------------------------------
    srv = nl.serve(t, http_port, pop3=False, imap=False)
    cid = nl.campaign_create(t, LIST, "Crash edition", "Dear {{name}},\nthis is the crash edition.\n", rate=RATE)
    deadline = time.monotonic() + 60
    while True:
        _, totals = nl.campaign(t, cid)
        if totals["sent"] >= N // 4:
            break
        assert time.monotonic() < deadline, f"campaign {cid} enqueued {totals['sent']} after 60 s"
        assert srv.alive(), f"tegami exited: {srv.error_line()}"
        time.sleep(0.05)
    srv.kill()
    state, totals = nl.campaign(t, cid)
    assert 0 < totals["sent"] < N, f"the kill did not land mid-campaign: sent {totals['sent']} of {N}"
    assert peer.count() == 0
    ok(f"round 1: SIGKILL while campaign {cid} was enqueueing (sent {totals['sent']} of {N}, state {state}, peer down)")

    # --- 2: kill while the queue delivers -------------------------------------------------------
    peer.start()
    clock.set(4000)  # past the retry time of what was tried while the peer was down
    srv = nl.serve(t, http_port, pop3=False, imap=False)
    deadline = time.monotonic() + 90
    while peer.count() < N // 4:
        assert time.monotonic() < deadline, f"round 2: Postfix holds {peer.count()} after 90 s"
        assert srv.alive(), f"tegami exited during round 2: {srv.error_line()}"
        time.sleep(0.005)
    srv.kill()
    held = nl.settled_count(peer)
    _, totals = nl.campaign(t, cid)
    assert held < N, f"round 2: the kill came after the whole run (Postfix holds {held})"
    ok(f"round 2: SIGKILL with the queue delivering (Postfix holds {held}, campaign sent {totals['sent']})")

    # --- 3: finish -------------------------------------------------------------------------------
    srv = nl.serve(t, http_port, pop3=False, imap=False)
    peers.wait_until(f"campaign {cid} done", lambda: nl.campaign(t, cid)[0] == "done", 120, interval=0.5)
    peers.wait_until("the campaign's mail at Postfix", lambda: peer.count() >= N - PER_DESTINATION, 120,
                     interval=0.2)
    peers.wait_until("an empty queue", lambda: peers.queue_size(srv) == 0, 60)
    total = nl.settled_count(peer, quiet=2.0)
    state, totals = nl.campaign(t, cid)
    assert state == "done" and totals["sent"] == N, (state, totals)
    rec = nl.recipients(t, cid)
    assert len(rec) == N and set(rec) == set(want), f"campaign recipients: {len(rec)} lines, {len(set(rec))} distinct"

    by_rcpt = collections.defaultdict(list)
    for m in peer.messages():
        by_rcpt[m.recipient].append(m)
    missing = sorted(set(want) - set(by_rcpt))
    assert len(missing) <= PER_DESTINATION, (f"{len(missing)} subscribers got nothing, more than the transactions "
                                             f"one kill can cut off ({PER_DESTINATION}), e.g. {missing[:5]}")
    extra = sorted(set(by_rcpt) - set(want))
    assert not extra, f"mail for non-subscribers: {extra[:5]}"
    rendered_twice = {r: sorted({m.message_id for m in ms}) for r, ms in by_rcpt.items()
                      if len({m.message_id for m in ms}) > 1}
    assert not rendered_twice, (f"{len(rendered_twice)} subscribers were enqueued twice (different Message-IDs), "
                                f"e.g. {list(rendered_twice.items())[:3]}")
    for r, ms in by_rcpt.items():
        for m in ms:
            _, _, sid, _ = nl.parse_verp(m.sender, "c", cid)
            assert sid == ids[r], f"{r}: VERP names subscriber {sid}, its id is {ids[r]}"
            assert f"Dear {want[r]}," in nl.part(m, "plain"), f"{r}: not its own mail"
    dups = total - len(by_rcpt)
    assert dups == 0, (f"{dups} duplicate deliveries after one kill during delivery (campaign mail goes at most "
                       f"once): {[r for r, ms in by_rcpt.items() if len(ms) > 1][:10]}")
    ok(f"campaign done after two kills: {N - len(missing)} of {N} subscribers have their own mail, none twice "
       f"(the kill cut off {len(missing)} transactions, bound {PER_DESTINATION}); queue empty")

    srv.stop()
    t.check_store("after the newsletter crash test")
    peer.close()


if __name__ == "__main__":
    h.main(test, timeout=175)
