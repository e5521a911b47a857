#!/usr/bin/env python3
"""Step mail over simulated days, an unsubscribe that stops it, and retention of raw events
while the daily totals stay (issue 10).

Setup: a private Postfix (tests/e2e/peers.py) through `[[queue.route]] domain = "peer.test"`;
`[newsletter] keep_days = 1`, track_clicks on; the clock under the test's control
(TEGAMI_CLOCK_FILE), first moved to 06:00 Asia/Tokyo of some day D0.

- Subscriber "old" is added (confirmed) before the sequence, which is created with
  `--time-zone Asia/Tokyo` and without `--join-existing`; steps at days 0, 1 and 3 at
  09:00. a, b, c, d, e are added at 06:00 on D0, f at 08:50 on D1.
- A campaign on D0 reaches all six active subscribers; a's click on its link is a raw
  event in history_events (read from DATA/tegami.db, read-only, table per the contract).
- Day by day: at 08:50 (Tokyo) nothing has arrived yet; at 09:05 exactly the due steps
  arrive: D0 step 1 to a-e; D1 step 2 to a, b, d and step 1 to f (a new subscriber starts
  at step 1); D2 step 2 to f; D3 step 3 to a, b, d; D4 step 3 to f. c unsubscribed with
  the one-click POST of its step 1 mail and e with `subscriber unsubscribe` after step 1:
  they get nothing more. "old" gets no step. tegami is restarted on D2: nobody gets a step
  twice. Every step mail's envelope sender is bounces+s<step>-<subscriber id>-<mac>@...
  and one subject always has the same step ref.
- `subscriber history LIST a --json` lists the three steps and the campaign; c's lists
  step 1 only.
- Retention: with the clock days past keep_days, after a restart the raw events older
  than keep_days are gone from history_events (the pruner), while `campaign show` and
  /api/campaigns/<id> still say sent 6, click 1, and the clicked link 1 reader, 1 click.
"""

import collections
import datetime
import json
import os
import re
import sqlite3
import sys
import time
import zoneinfo

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import newsletter_common as nl  # noqa: E402
import peers  # noqa: E402
from harness import ok  # noqa: E402

LIST = "welcome-list"
ZONE = "Asia/Tokyo"
QUIET = float(os.environ.get("NEWSLETTER_QUIET_SECS", "4"))
STEPS = [(0, "Welcome step 1"), (1, "Welcome step 2"), (3, "Welcome step 3")]
FIRST = ["a", "b", "c", "d", "e"]


def addr(x):
    return f"{x}@peer.test"


def day_start(clock):
    """Moves the clock to the next 06:00 in Tokyo; returns the epoch of that day's midnight there."""
    tz = zoneinfo.ZoneInfo(ZONE)
    now = datetime.datetime.fromtimestamp(clock.now() + 60, tz)
    six = now.replace(hour=6, minute=0, second=0, microsecond=0)
    if six < now:
        six += datetime.timedelta(days=1)
    clock.advance_to(six.timestamp())
    return six.timestamp() - 6 * 3600


class Watch:
    """What has arrived at the peer since the last look, as [(recipient, subject, sender)]."""

    def __init__(self, peer):
        self.peer = peer
        self.seen = set()
        self.log = []  # every delivery in the order seen: (day, recipient, subject, sender)

    def new(self):
        out = []
        for m in self.peer.messages():
            if m.path.name in self.seen:
                continue
            self.seen.add(m.path.name)
            out.append(m)
        return out

    def expect(self, day, want, timeout=60):
        """Waits for exactly `want` ({(recipient, subject)}), then QUIET seconds for anything more."""
        got, deadline = [], time.monotonic() + timeout
        while {(m.recipient, str(m.msg["Subject"])) for m in got} < want or len(got) < len(want):
            assert time.monotonic() < deadline, (f"day {day}: after {timeout} s got "
                                                 f"{sorted((m.recipient, str(m.msg['Subject'])) for m in got)}, "
                                                 f"wanted {sorted(want)}")
            got += self.new()
            time.sleep(0.1)
        time.sleep(QUIET)
        got += self.new()
        pairs = collections.Counter((m.recipient, str(m.msg["Subject"])) for m in got)
        assert set(pairs) == want and all(c == 1 for c in pairs.values()), \
            f"day {day}: got {sorted(pairs.items())}, wanted each of {sorted(want)} once"
        for m in got:
            self.log.append((day, m.recipient, str(m.msg["Subject"]), m.sender, m))
        return got

    def quiet(self, what):
        time.sleep(QUIET)
        early = [(m.recipient, str(m.msg["Subject"])) for m in self.new()]
        assert not early, f"{what}: mail arrived before its time: {early}"


def events(t, older_than=None):
    """Rows of history_events (all, or those with `at` before `older_than` epoch seconds)."""
    db = sqlite3.connect(f"file:{t.data / 'tegami.db'}?mode=ro", uri=True, timeout=10)
    try:
        rows = db.execute("SELECT at, kind, ref, subscriber, event, detail FROM history_events").fetchall()
    finally:
        db.close()
    if older_than is None:
        return rows
    # `at` may be seconds or milliseconds; the contract does not say.
    return [r for r in rows if (r[0] / 1000 if r[0] > 10**11 else r[0]) < older_than]


def history_refs(obj):
    """[(kind-ish text, ints, texts)] per entry of a `subscriber history --json` answer."""
    out = []
    for e in nl._items(obj):
        ints = {v for v in (e.values() if isinstance(e, dict) else e) if isinstance(v, int)}
        texts = {str(v).lower() for v in (e.values() if isinstance(e, dict) else e) if isinstance(v, str)}
        out.append((ints, texts))
    return out


def test():
    t = h.Tegami("nl-steps")
    clock = peers.Clock(t.root)
    os.environ.update(clock.env())  # for serve and the CLI
    peer = peers.PostfixPeer(domains=("peer.test",))
    peer.start()
    http_port = peers.free_port()
    t.write_config(nl.config(peer.port, http_port, keep_days=1, queue={"retry_secs": [3600]}))
    t.domain("example.com")
    d0 = day_start(clock)
    at = lambda day, hh, mm: d0 + day * 86400 + hh * 3600 + mm * 60  # noqa: E731

    t.cli("list", "add", LIST, "--from", "welcome@example.com", "--from-name", "Welcome")
    t.cli("subscriber", "add", LIST, addr("old"), "--name", "Old Timer", "--confirmed")
    r = t.cli("sequence", "create", LIST, "onboarding", "--time-zone", ZONE)
    m = re.search(r"\bsequence (\d+)\b", r.out)
    assert m, f"sequence create did not print 'sequence ID': {r!r}"
    seq = m.group(1)
    for n, (days, subject) in enumerate(STEPS, start=1):
        f = t.root / f"step{n}.txt"
        f.write_text(f"Hi {{{{name}}}}, this is step {n}.\nhttps://example.org/welcome/{n}\n"
                     "Unsubscribe: {{unsubscribe_url}}\n")
        t.cli("sequence", "step", seq, "--days", str(days), "--at", "09:00", "--subject", subject, "--text", str(f))
    listed = nl.cli_json(t, "sequence", "list")
    assert "onboarding" in json.dumps(listed) and ZONE in json.dumps(listed), listed
    for x in FIRST:
        t.cli("subscriber", "add", LIST, addr(x), "--name", f"Person {x.upper()}", "--attr", f"letter={x}", "--confirmed")
    ids = {e: int(s["id"]) for e, s in nl.subscribers(t, LIST).items()}
    ok(f"sequence {seq} ({ZONE}, steps at days 0/1/3 09:00) with 'old' added before it (not joining) and a-e at 06:00")

    srv = nl.serve(t, http_port, pop3=False, imap=False)
    base = f"http://{h.HOST}:{http_port}"
    w = Watch(peer)

    # --- a campaign on D0 and a click: raw events to be pruned later ------------------------
    cid = nl.campaign_create(t, LIST, "Day zero news", "Hello {{name}}\nhttps://example.org/news/0\n")
    everyone = {addr(x) for x in FIRST + ["old"]}
    got = w.expect("D0 06:00 (campaign)", {(a, "Day zero news") for a in everyone})
    a_mail = next(m for m in got if m.recipient == addr("a"))
    nl.parse_verp(a_mail.sender, "c", cid)
    link = re.search(re.escape(base) + r"/c/\S+", nl.part(a_mail, "plain")).group(0)
    status, headers, _ = nl.http("GET", link)
    assert status == 302 and headers.get("location") == "https://example.org/news/0", (status, headers)
    clicks = [r for r in events(t) if str(r[4]).lower() == "click"]
    assert len(clicks) == 1 and clicks[0][3] == ids[addr("a")], f"history_events clicks: {clicks}"
    ok(f"campaign {cid} on D0 reached all six; a's click redirected and is a raw event in history_events")

    # --- the days -------------------------------------------------------------------------------
    step_ref = {}  # subject -> step ref from the VERP

    def check_steps(mails):
        for m in mails:
            _, ref, sid, _ = nl.parse_verp(m.sender, "s")
            assert sid == ids[m.recipient], f"{m.recipient}: VERP subscriber {sid}, id {ids[m.recipient]}"
            subject = str(m.msg["Subject"])
            assert step_ref.setdefault(subject, ref) == ref, f"{subject} sent as step {ref} and {step_ref[subject]}"
            n = subject[-1]
            assert f"this is step {n}." in nl.part(m, "plain"), f"{m.recipient}: {subject} body: {nl.part(m, 'plain')!r}"

    clock.advance_to(at(0, 8, 50))
    w.quiet("D0 08:50")
    clock.advance_to(at(0, 9, 5))
    got = w.expect("D0 09:05", {(addr(x), STEPS[0][1]) for x in FIRST})
    check_steps(got)
    ok("D0: nothing at 08:50 Tokyo; step 1 to a-e at 09:05; nothing for 'old' (created before the sequence)")

    c_mail = next(m for m in got if m.recipient == addr("c"))
    status, _, _ = nl.one_click(nl.unsubscribe_url(c_mail))
    assert 200 <= status < 300 and nl.status_of(t, LIST, addr("c")) == "unsubscribed", status
    t.cli("subscriber", "unsubscribe", LIST, addr("e"))
    assert nl.status_of(t, LIST, addr("e")) == "unsubscribed"
    ok("c unsubscribed by the one-click POST of its step 1 mail, e by `subscriber unsubscribe`")

    clock.advance_to(at(1, 8, 50))
    w.quiet("D1 08:50")
    t.cli("subscriber", "add", LIST, addr("f"), "--name", "Person F", "--confirmed")
    ids[addr("f")] = int(nl.subscribers(t, LIST)[addr("f")]["id"])
    clock.advance_to(at(1, 9, 5))
    check_steps(w.expect("D1 09:05", {(addr(x), STEPS[1][1]) for x in "abd"} | {(addr("f"), STEPS[0][1])}))
    ok("D1: nothing at 08:50; at 09:05 step 2 to a, b, d (not c, e) and step 1 to f, added at 08:50")

    srv.stop()
    clock.advance_to(at(2, 8, 50))
    srv = nl.serve(t, http_port, pop3=False, imap=False)
    w.quiet("D2 08:50, after a restart")
    clock.advance_to(at(2, 9, 5))
    check_steps(w.expect("D2 09:05", {(addr("f"), STEPS[1][1])}))
    ok("D2 (after a restart): nothing repeated; step 2 to f only")

    clock.advance_to(at(3, 8, 50))
    w.quiet("D3 08:50")
    clock.advance_to(at(3, 9, 5))
    check_steps(w.expect("D3 09:05", {(addr(x), STEPS[2][1]) for x in "abd"}))
    clock.advance_to(at(4, 8, 50))
    w.quiet("D4 08:50")
    clock.advance_to(at(4, 9, 5))
    check_steps(w.expect("D4 09:05", {(addr("f"), STEPS[2][1])}))
    ok("D3: step 3 to a, b, d at 09:05 (none at 08:50); D4: step 3 to f")

    per = collections.defaultdict(list)
    for day, rcpt, subject, _, _ in w.log:
        if subject.startswith("Welcome"):
            per[rcpt].append(subject)
    names = [s for _, s in STEPS]
    for x in "abdf":
        assert per[addr(x)] == names, f"{x}: steps {per[addr(x)]}, wanted {names} in order"
    for x in "ce":
        assert per[addr(x)] == names[:1], f"{x} got steps after unsubscribing: {per[addr(x)]}"
    assert not per[addr("old")], f"'old' got steps: {per[addr('old')]}"
    assert len(step_ref) == 3 and len(set(step_ref.values())) == 3, step_ref
    ok("in all: a, b, d, f got steps 1, 2, 3 in order, once each; c and e step 1 only; 'old' none")

    hist = history_refs(nl.cli_json(t, "subscriber", "history", LIST, addr("a")))
    for subject, ref in step_ref.items():
        assert any(ref in ints and "sent" in texts for ints, texts in hist), f"a's history lacks {subject} (step {ref}): {hist}"
    assert any(cid in ints for ints, _ in hist), f"a's history lacks campaign {cid}: {hist}"
    hist_c = history_refs(nl.cli_json(t, "subscriber", "history", LIST, addr("c")))
    assert any(step_ref[names[0]] in ints for ints, _ in hist_c), hist_c
    assert not any(step_ref[s] in ints and "sent" in texts for s in names[1:] for ints, texts in hist_c), hist_c
    ok("subscriber history: a received the three steps and the campaign; c step 1 only")

    # --- retention --------------------------------------------------------------------------------
    srv.stop()
    clock.advance_to(at(6, 12, 0))
    srv = nl.serve(t, http_port, pop3=False, imap=False)
    limit = clock.now() - 86400
    peers.wait_until("raw events older than keep_days pruned", lambda: not events(t, older_than=limit - 60), 60,
                     interval=0.5)
    assert not [r for r in events(t) if str(r[4]).lower() == "click"], "the D0 click event is still there"
    state, totals = nl.campaign(t, cid)
    assert totals["sent"] == len(everyone) and totals["click"] == 1, totals
    api_totals = nl.totals_in(nl.api(http_port, f"/api/campaigns/{cid}"))
    assert api_totals["sent"] == len(everyone) and api_totals["click"] == 1, api_totals
    assert nl.recipients(t, cid, "click") == [addr("a")]
    links = nl.cli_json(t, "campaign", "show", str(cid))["links"]
    clicked = [(x["clickers"], x["clicks"]) for x in links if x["clicks"]]
    assert clicked == [(1, 1)], links
    api_steps = [st for seq in nl.api(http_port, "/api/sequences") for st in seq["steps"]]
    assert api_steps and all(st["skipped"] == 0 and st["condition"] is None and st["otherwise"] == "skip"
                             and isinstance(st["link_clicks"], list) for st in api_steps), api_steps
    api_links = nl.api(http_port, f"/api/campaigns/{cid}")["link_clicks"]
    assert [(x["clickers"], x["clicks"]) for x in api_links if x["clicks"]] == [(1, 1)], api_links
    ok(f"retention (keep_days 1, clock at D6): raw events older than a day are gone from history_events; "
       f"campaign show and /api/campaigns/{cid} still say sent {len(everyone)}, click 1, and the link's "
       "1 reader and 1 click")

    srv.stop()
    peer.close()
    t.check_store("after the steps test")


if __name__ == "__main__":
    h.main(test, timeout=175)
