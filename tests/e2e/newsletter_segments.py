#!/usr/bin/env python3
"""Segments and campaigns to several lists (issue 21, Build: "a campaign goes to a list
filtered by attributes, status, join date, and past behaviour ..., and to several lists
without sending anyone two copies").

Setup: a loopback MX (tests/e2e/newsletter_common.py's LoopbackMx) reached through
`[[queue.route]] domain = "peer.test"`, which takes every mail. Two lists:
- news: ann (city=Kyoto), bob (city=Osaka), cy (city=Kyoto), dan (no city);
- extra: CY@peer.test (cy again, in upper case, no city), eve (city=Kyoto) and sup, whose
  address is on the suppression list.

Checks (the MX's receipts are compared exactly, per campaign subject):
- A: `campaign create news --where city=Kyoto`: `campaign preview --count` says 2, and the
  MX receives A for ann and cy, nobody else; `campaign show` names the segment.
- B: `campaign create --list news --list extra` (no segment): the count is 6 different
  addresses (cy once; sup counts, suppression comes at sending); the MX receives B once
  for each of ann, bob, cy, dan, eve; sup is counted suppressed. cy is mailed and reported
  as news's subscriber (the first list), in `campaign recipients` and the CSV report.
- C: `--list news --list extra --where not-received:A --where city=*` (past behaviour):
  bob and eve, exactly.
- The JSON API: POST /api/campaigns with "lists" and "segment" makes a campaign whose GET
  shows both, and whose `preview --count --json` counts ann, cy and eve (3); a broken term
  is 400 naming it; the CLI refuses one too, before making anything.
- Its audience changed before it starts: `campaign edit --list news --where city=Osaka`
  counts bob (1), `--everyone` news's four, PATCH {"lists": [extra, news], "segment":
  ["city=Kyoto"]} eve, ann and cy (3); a list named twice is refused, and so is editing a
  campaign that is done.
"""

import collections
import csv
import io
import json
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import newsletter_common as nl  # noqa: E402
import peers  # noqa: E402
from harness import ok  # noqa: E402

NEWS, EXTRA = "news", "extra"
ANN, BOB, CY, DAN = "ann@peer.test", "bob@peer.test", "cy@peer.test", "dan@peer.test"
EVE, SUP = "eve@peer.test", "sup@peer.test"
TEXT = "Hello {{name|friend}}\n\n{{unsubscribe_url}}\n"


def receipts(mx):
    """{subject: sorted recipients, one entry per mail} of everything the MX took."""
    out = collections.defaultdict(list)
    with mx.lock:
        messages = list(mx.messages)
    for _, rcpts, body in messages:
        subject = str(nl.parse_received(body)["Subject"])
        out[subject].extend(rcpts)
    return {s: sorted(r) for s, r in out.items()}


def create(t, subject, *args):
    tf = t.root / f"text-{subject[0]}.txt"
    tf.write_text(TEXT)
    r = t.cli("campaign", "create", *args, "--subject", subject, "--text", str(tf))
    return int(r.out.split()[-1])


def count(t, cid):
    return nl.cli_json(t, "campaign", "preview", str(cid), "--count")["count"]


def settle(t, srv, cid, want, mx):
    peers.wait_until(f"campaign {cid} done", lambda: nl.campaign(t, cid)[0] == "done", 60)
    peers.wait_until("the queue to empty", lambda: peers.queue_size(srv) == 0, 60)
    peers.wait_until(f"{want} mails at the MX", lambda: sum(map(len, receipts(mx).values())) >= want, 120)


def test():
    t = h.Tegami("nl-segments")
    mx = nl.LoopbackMx()
    http_port = peers.free_port()
    base = f"http://{h.HOST}:{http_port}"
    t.write_config(nl.config(mx.port, http_port, rate=100))
    t.domain("example.com")
    t.cli("list", "add", NEWS, "--from", "news@example.com")
    t.cli("list", "add", EXTRA, "--from", "extra@example.com")
    for address, attrs in ((ANN, ["city=Kyoto"]), (BOB, ["city=Osaka"]), (CY, ["city=Kyoto"]), (DAN, [])):
        t.cli("subscriber", "add", NEWS, address, *[a for kv in attrs for a in ("--attr", kv)])
    for address, attrs in (("CY@peer.test", []), (EVE, ["city=Kyoto"]), (SUP, [])):
        t.cli("subscriber", "add", EXTRA, address, *[a for kv in attrs for a in ("--attr", kv)])
    t.cli("suppression", "add", SUP)
    srv = nl.serve(t, http_port)

    # -- A: one list, an attribute --------------------------------------------------------
    a = create(t, "A kyoto", NEWS, "--where", "city=Kyoto")
    settle(t, srv, a, 2, mx)
    assert count(t, a) == 2, count(t, a)
    shown = t.cli("campaign", "show", str(a)).out
    assert "segment  city=Kyoto" in shown and "list     news" in shown, shown
    assert receipts(mx) == {"A kyoto": [ANN, CY]}, receipts(mx)
    ok("campaign create news --where city=Kyoto: preview --count says 2, campaign show names the "
       "segment, and the MX received it for ann and cy only")

    # -- B: two lists, an address on both ----------------------------------------------------
    b = create(t, "B both", "--list", NEWS, "--list", EXTRA)
    settle(t, srv, b, 2 + 5, mx)
    assert count(t, b) == 6, count(t, b)
    assert receipts(mx)["B both"] == [ANN, BOB, CY, DAN, EVE], receipts(mx)
    _, totals = nl.campaign(t, b)
    shown = nl.cli_json(t, "campaign", "show", str(b))
    assert shown["totals"]["suppressed"] == 1 and totals["sent"] == 5, shown
    assert nl.recipients(t, b) == [ANN, BOB, CY, DAN, EVE], nl.recipients(t, b)
    rows = list(csv.DictReader(io.StringIO(t.cli("campaign", "report", str(b)).out)))
    news_ids = {s["email"]: s["id"] for s in nl.subscribers(t, NEWS).values()}
    cy_rows = [r for r in rows if r["email"].lower() == CY]
    assert len(cy_rows) == 1 and cy_rows[0]["email"] == CY and cy_rows[0]["subscriber_id"] == str(news_ids[CY]), rows
    sup_rows = [r for r in rows if r["email"] == SUP]
    assert len(sup_rows) == 1 and (sup_rows[0]["sent"], sup_rows[0]["suppressed"]) == ("0", "1"), rows
    ok("campaign create --list news --list extra: 6 addresses selected; the MX received B once each for "
       "ann, bob, cy, dan, eve (cy@ and CY@ on both lists: one mail, as news's subscriber in the "
       "recipients and the CSV); sup was skipped as suppressed")

    # -- C: past behaviour ---------------------------------------------------------------
    c = create(t, "C history", "--list", NEWS, "--list", EXTRA, "--where", f"not-received:{a}", "--where", "city=*")
    settle(t, srv, c, 2 + 5 + 2, mx)
    got = receipts(mx)
    assert got == {"A kyoto": [ANN, CY], "B both": [ANN, BOB, CY, DAN, EVE], "C history": [BOB, EVE]}, got
    ok(f"--where not-received:{a} --where city=* over both lists reached bob and eve only; the MX's "
       "receipts of all three campaigns are exactly as selected")

    # -- the JSON API -------------------------------------------------------------------------
    body = {"lists": [NEWS, EXTRA], "segment": ["city=Kyoto"], "subject": "D api", "text": TEXT,
            "send_at": 4070908800}
    status, _, answer = nl.http("POST", f"{base}/api/campaigns", json.dumps(body).encode(),
                                {"Content-Type": "application/json"})
    assert status == 201, (status, answer)
    d = json.loads(answer)["id"]
    got = nl.api(http_port, f"/api/campaigns/{d}")
    assert got["segment"] == ["city=Kyoto"] and got["also"] and got["state"] == "scheduled", got
    assert count(t, d) == 3, count(t, d)
    body["segment"] = ["opened:first"]
    status, _, answer = nl.http("POST", f"{base}/api/campaigns", json.dumps(body).encode(),
                                {"Content-Type": "application/json"})
    assert status == 400 and b"opened:first" in answer, (status, answer)
    before = len(nl.cli_json(t, "campaign", "list"))
    r = t.cli("campaign", "create", NEWS, "--where", "town", "--subject", "x",
              "--text", str(t.root / "text-A.txt"), check=False)
    assert r.code != 0 and "town" in r.err, r
    assert len(nl.cli_json(t, "campaign", "list")) == before
    ok("POST /api/campaigns with lists and segment: GET shows them, preview --count counts ann, cy and "
       "eve (3); a broken term is 400 naming it, and the CLI refuses one before making anything")

    # -- changing the audience before it starts ------------------------------------------------
    t.cli("campaign", "edit", str(d), "--list", NEWS, "--where", "city=Osaka")
    shown = nl.cli_json(t, "campaign", "show", str(d))
    assert shown["segment"] == ["city=Osaka"] and shown["also"] == [], shown
    assert count(t, d) == 1, count(t, d)
    t.cli("campaign", "edit", str(d), "--everyone")
    assert count(t, d) == 4, count(t, d)  # ann, bob, cy, dan
    r = t.cli("campaign", "edit", str(d), "--list", NEWS, "--list", NEWS, check=False)
    assert r.code != 0 and NEWS in r.err, r
    status, _, answer = nl.http("PATCH", f"{base}/api/campaigns/{d}",
                                json.dumps({"lists": [EXTRA, NEWS], "segment": ["city=Kyoto"]}).encode(),
                                {"Content-Type": "application/json"})
    assert status == 200, (status, answer)
    got = nl.api(http_port, f"/api/campaigns/{d}")
    assert got["segment"] == ["city=Kyoto"] and len(got["also"]) == 1, got
    assert count(t, d) == 3, count(t, d)  # eve, ann, cy
    r = t.cli("campaign", "edit", str(a), "--everyone", check=False)
    assert r.code != 0 and "done" in r.err, r
    ok("campaign edit --list/--where/--everyone and PATCH {lists, segment} change a scheduled campaign's "
       "audience (counted again: 1, 4, 3); a list named twice is refused, and a sent campaign keeps its own")
    srv.stop()
    t.check_store("after the segments test")


if __name__ == "__main__":
    h.main(test, timeout=180)
