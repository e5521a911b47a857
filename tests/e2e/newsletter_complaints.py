#!/usr/bin/env python3
"""An ARF feedback-loop report suppresses its address (issue 21, "Build": the global
suppression list and RFC 5965 reports).

Setup: a loopback MX (newsletter_common.LoopbackMx) reached through `[[queue.route]] domain
= "peer.test"` that takes everything. A list of three: good1, complainer, good2 @peer.test.

Checks:
- Campaign 1 reaches all three.
- A feedback report (multipart/report; report-type=feedback-report, Feedback-Type: abuse),
  sent by smtplib to the feedback-loop address bounces@example.com, with the complained-of
  mail as its third part (its Return-Path the VERP sender the MX saw): `suppression list
  --json` shows the complainer as "complained", and campaign 1's totals count 1 complaint.
- A forged report naming good1 only in clear (Original-Rcpt-To, no signed VERP or
  unsubscribe token) suppresses nothing.
- Campaign 2 reaches good1 and good2 only: the MX never sees a RCPT for the complainer, and
  campaign 2's totals say sent 2, suppressed 1.
- `suppression export` lists the complainer; after `suppression remove`, campaign 3 reaches
  all three again.
- good2, who is on a second list too, uses the unsubscribe page's second button ("every
  list"): the page offers both, the POST leaves the list, puts good2 on the suppression list
  as "unsubscribed", and a campaign to the second list skips good2 (suppressed 1).
"""

import email
import email.policy
import os
import re
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
COMPLAINER = "complainer@peer.test"
FBL_ADDRESS = f"{nl.VERP_PREFIX}@{nl.BOUNCE_DOMAIN}"


def totals(t, cid):
    obj = nl.cli_json(t, "campaign", "show", str(cid))
    found = nl._find(obj, "totals")
    assert isinstance(found, dict), f"no totals in campaign show --json: {str(obj)[:300]}"
    return {k: int(v) for k, v in found.items()}


def suppressed(t):
    return {s["address"]: s for s in nl.cli_json(t, "suppression", "list")}


def arf(fields, original_type, original):
    """A feedback report as RFC 5965 appendix B lays one out, from a provider's loop."""
    boundary = "part1_13d.2e68ed54_boundary"
    head = h.crlf(f"""From: <fbl@isp.peer.test>
Date: Mon, 23 Nov 2026 10:00:00 +0000
Subject: FW: complaint about your mail
To: <{FBL_ADDRESS}>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
     boundary="{boundary}"

--{boundary}
Content-Type: text/plain; charset="US-ASCII"

This is an email abuse report for an email message received from IP
127.0.0.1 on Mon, 23 Nov 2026 09:59:00 +0000.

--{boundary}
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: PeerFBL/1.0
Version: 1
{fields}Arrival-Date: Mon, 23 Nov 2026 09:59:00 +0000
Reporting-MTA: dns; mx.peer.test
Source-IP: 127.0.0.1

--{boundary}
Content-Type: {original_type}
Content-Disposition: inline

""")
    if isinstance(head, str):
        head = head.encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return head + original + tail


def test():
    t = h.Tegami("nl-complaints")
    mx = nl.LoopbackMx()
    http_port = peers.free_port()
    t.write_config(nl.config(mx.port, http_port, rate=100))
    t.domain("example.com")
    t.cli("list", "add", LIST, "--from", "news@example.com", "--from-name", "Example News")
    for address in (GOOD[0], COMPLAINER, GOOD[1]):
        t.cli("subscriber", "add", LIST, address)
    srv = nl.serve(t, http_port)

    c1 = nl.campaign_create(t, LIST, "first", "Hello {{name}}\n\n{{unsubscribe_url}}\n")
    for a in (*GOOD, COMPLAINER):
        peers.wait_until(f"campaign 1 at {a}", lambda a=a: mx.received_by(a), 60)
    verp, _, body = mx.received_by(COMPLAINER)[0]
    assert nl.parse_verp(verp), f"campaign mail's sender is not a VERP address: {verp}"
    ok(f"campaign 1 reached all three; {COMPLAINER}'s mail came from {verp}")

    original = f"Return-Path: <{verp}>\r\n".encode() + body
    report = arf(f"Original-Mail-From: <{verp}>\nOriginal-Rcpt-To: <{COMPLAINER}>\n",
                 "message/rfc822", original)
    h.send(srv.smtp, "", [FBL_ADDRESS], report)
    peers.wait_until(f"{COMPLAINER} suppressed", lambda: COMPLAINER in suppressed(t), 120)
    entry = suppressed(t)[COMPLAINER]
    assert entry["reason"] == "complained", entry
    assert totals(t, c1).get("complaint") == 1, totals(t, c1)
    ok(f"an ARF report (abuse) to {FBL_ADDRESS} suppressed {COMPLAINER} as complained; campaign 1 complaint 1")

    forged = arf(f"Original-Rcpt-To: <{GOOD[0]}>\n", "text/rfc822-headers",
                 f"From: news@example.com\r\nTo: {GOOD[0]}\r\nSubject: first\r\n\r\n".encode())
    h.send(srv.smtp, "", [FBL_ADDRESS], forged)
    time.sleep(1.5)
    assert GOOD[0] not in suppressed(t), "a report naming an address only in clear suppressed it"
    assert totals(t, c1).get("complaint") == 1, totals(t, c1)
    ok(f"a report naming {GOOD[0]} only in clear suppresses nothing")

    asked = mx.asked(COMPLAINER)
    c2 = nl.campaign_create(t, LIST, "second", "Hello again {{name}}\n\n{{unsubscribe_url}}\n")
    for g in GOOD:
        peers.wait_until(f"campaign 2 at {g}", lambda g=g: len(mx.received_by(g)) >= 2, 60)
    peers.wait_until("campaign 2 done", lambda: nl.campaign(t, c2)[0] == "done", 120)
    time.sleep(1)
    assert mx.asked(COMPLAINER) == asked, f"the complainer was mailed again: {mx.rcpts}"
    got = totals(t, c2)
    assert (got.get("sent"), got.get("suppressed")) == (2, 1), got
    ok("campaign 2 goes to the two others only (sent 2, suppressed 1): no RCPT for the complainer")

    exported = t.cli("suppression", "export").out
    assert f"{COMPLAINER},complained," in exported, exported
    t.cli("suppression", "remove", COMPLAINER)
    c3 = nl.campaign_create(t, LIST, "third", "Hello once more {{name}}\n\n{{unsubscribe_url}}\n")
    peers.wait_until("campaign 3 at the complainer", lambda: len(mx.received_by(COMPLAINER)) >= 2, 60)
    peers.wait_until("campaign 3 done", lambda: nl.campaign(t, c3)[0] == "done", 120)
    assert totals(t, c3).get("sent") == 3, totals(t, c3)
    ok("suppression export lists the complainer; once removed, campaign 3 reaches all three")

    leaver = GOOD[1]
    t.cli("list", "add", "other", "--from", "other@example.com")
    t.cli("subscriber", "add", "other", leaver)
    t.cli("subscriber", "add", "other", GOOD[0])
    mail = email.message_from_bytes(mx.received_by(leaver)[-1][2], policy=email.policy.default)
    url = re.findall(r"<(https?://[^>]+)>", str(mail["List-Unsubscribe"]))[0]
    status, _, page = nl.http("GET", url)
    assert status == 200 and page.count(b"<form") == 2 and b'name="scope" value="all"' in page, page
    status, _, body = nl.http("POST", url, body=b"scope=all",
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200 and b"any list" in body, (status, body)
    entry = suppressed(t).get(leaver)
    assert entry and entry["reason"] == "unsubscribed", suppressed(t)
    assert nl.status_of(t, LIST, leaver) == "unsubscribed"
    asked = mx.asked(leaver)
    c4 = nl.campaign_create(t, "other", "fourth", "Other news {{name}}\n\n{{unsubscribe_url}}\n")
    peers.wait_until("campaign 4 done", lambda: nl.campaign(t, c4)[0] == "done", 60)
    peers.wait_until("campaign 4 at good1", lambda: len(mx.received_by(GOOD[0])) >= 4, 60)
    time.sleep(1)
    assert mx.asked(leaver) == asked, f"{leaver} was mailed after leaving every list: {mx.rcpts}"
    got = totals(t, c4)
    assert (got.get("sent"), got.get("suppressed")) == (1, 1), got
    ok(f"'unsubscribe from every list' on the page: {leaver} suppressed as unsubscribed, and the other list's campaign skips it")
    srv.stop()
    t.check_store("after the complaint test")


if __name__ == "__main__":
    h.main(test, timeout=170)
