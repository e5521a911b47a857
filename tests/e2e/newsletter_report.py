#!/usr/bin/env python3
"""A campaign's report matches what the remote received (issue 21, Reports): the
per-recipient CSV from the CLI, the JSON API and standard output, and the clicks per link.

Setup: a loopback MX (tests/e2e/newsletter_common.py's LoopbackMx) reached through
`[[queue.route]] domain = "peer.test"`; it refuses refused@peer.test at RCPT with
"550 5.1.1" and takes everyone else. track_clicks on. A list of four: ann, bob (whose name
is a spreadsheet formula), cy and refused @peer.test. The campaign's text has two links.

Checks:
- `campaign report ID FILE` writes one row per subscriber the campaign was queued to, and
  `campaign report ID` (standard output) and GET /api/campaigns/ID/report.csv (text/csv)
  give the same bytes.
- Every address the MX received the campaign for has a row with sent 1 and delivered 1,
  and no other row says delivered; refused@ has failed 1, hard_bounce 1, delivered 0, a
  bounced_at time and the 550 text as bounce_reason; bob's name begins with a `'`.
- Clicks through the click-redirect URLs (ann twice on the first link, bob once) show in
  the CSV (clicked 1, clicks 2 and 1, clicked_at) and per link in `campaign show --json`
  (first link: 2 readers, 3 clicks; second: 0, 0), in `campaign show`'s text and in GET
  /api/campaigns/ID's link_clicks.
- A report of a campaign or step that does not exist: the CLI fails naming it, the API
  answers 404.
"""

import csv
import io
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import newsletter_common as nl  # noqa: E402
import peers  # noqa: E402
from harness import ok  # noqa: E402

LIST = "news"
ANN, BOB, CY = "ann@peer.test", "bob@peer.test", "cy@peer.test"
REFUSED = "refused@peer.test"
FORMULA = "=HYPERLINK(\"http://evil.test\",\"Bob\")"
FIRST = "https://example.org/first?id=1"
SECOND = "https://example.org/second"
TEXT = f"""Hello {{{{name}}}},

read this: {FIRST}
and that: {SECOND}

{{{{unsubscribe_url}}}}
"""


def rows_of(data):
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    return {r["email"]: r for r in rows}, rows


def click_urls(raw, base):
    """The click-redirect URLs of a received message's text part, in order."""
    msg = nl.parse_received(raw)
    text = msg.get_body(preferencelist=("plain",)).get_content()
    return re.findall(re.escape(base) + r"/c/[A-Za-z0-9_\-.~%]+", text)


def test():
    t = h.Tegami("nl-report")
    mx = nl.LoopbackMx(refuse={REFUSED: "550 5.1.1 <refused@peer.test>: Recipient address rejected: User unknown"})
    http_port = peers.free_port()
    base = f"http://{h.HOST}:{http_port}"
    t.write_config(nl.config(mx.port, http_port, rate=100,
                             queue={"retry_secs": [60], "give_up_after_secs": 600,
                                    "delay_notice_after_secs": 100000}))
    t.domain("example.com")
    t.cli("list", "add", LIST, "--from", "news@example.com", "--from-name", "Example News")
    for address, name in ((ANN, "Ann"), (BOB, FORMULA), (CY, "Cy"), (REFUSED, "Ref")):
        t.cli("subscriber", "add", LIST, address, "--name", name)
    srv = nl.serve(t, http_port)

    cid = nl.campaign_create(t, LIST, "the report", TEXT)
    for a in (ANN, BOB, CY):
        peers.wait_until(f"the campaign at {a}", lambda a=a: mx.received_by(a), 60)
    peers.wait_until(f"{REFUSED} bounced", lambda: nl.status_of(t, LIST, REFUSED) == "bounced", 120)
    peers.wait_until("the campaign done", lambda: nl.campaign(t, cid)[0] == "done", 120)
    peers.wait_until("the queue to empty", lambda: peers.queue_size(srv) == 0, 120)
    received = {r for m in mx.messages for r in m[1]}
    assert received == {ANN, BOB, CY}, f"the MX received the campaign for {sorted(received)}"

    ann_links = click_urls(mx.received_by(ANN)[0][2], base)
    bob_links = click_urls(mx.received_by(BOB)[0][2], base)
    assert len(ann_links) == 2 and len(bob_links) == 2, f"click URLs: {ann_links} {bob_links}"
    for url in (ann_links[0], ann_links[0], bob_links[0]):
        status, headers, _ = nl.http("GET", url)
        assert status == 302 and headers.get("location") == FIRST, f"GET {url}: {status} {headers}"
    ok("the campaign reached ann, bob and cy at the MX; refused@ was refused at RCPT and is bounced; "
       "ann clicked the first link twice and bob once through /c/<token> (302 to the original)")

    out = t.root / "report.csv"
    r = t.cli("campaign", "report", str(cid), str(out))
    assert "wrote 4 recipients" in r.out, r.out
    from_file = out.read_bytes()
    from_stdout = t.cli("campaign", "report", str(cid)).out.encode()
    status, headers, from_api = nl.http("GET", f"{base}/api/campaigns/{cid}/report.csv")
    assert status == 200 and headers.get("content-type", "").startswith("text/csv"), \
        f"GET report.csv: {status} {headers}"
    assert from_file == from_stdout == from_api, \
        f"the three reports differ:\n{from_file!r}\n{from_stdout!r}\n{from_api!r}"
    ok("campaign report ID FILE wrote 4 recipients; standard output and GET /api/campaigns/ID/report.csv "
       "(text/csv) give the same bytes")

    by_email, rows = rows_of(from_file)
    assert len(rows) == 4 and set(by_email) == {ANN, BOB, CY, REFUSED}, f"rows: {rows}"
    delivered = {e for e, r in by_email.items() if r["delivered"] == "1"}
    assert delivered == received, f"delivered in the CSV {sorted(delivered)}, at the MX {sorted(received)}"
    for e in received:
        r = by_email[e]
        assert (r["sent"], r["failed"], r["hard_bounce"]) == ("1", "0", "0"), f"{e}: {r}"
    ref = by_email[REFUSED]
    assert (ref["sent"], ref["delivered"], ref["failed"], ref["hard_bounce"]) == ("1", "0", "1", "1"), ref
    assert ref["status"] == "bounced" and ref["bounced_at"] and "550" in ref["bounce_reason"], ref
    assert by_email[BOB]["name"] == "'" + FORMULA, f"bob's name: {by_email[BOB]['name']!r}"
    ok(f"the CSV has a row per recipient: delivered 1 for exactly the MX's {len(received)} recipients, "
       f"{REFUSED} failed 1, hard_bounce 1, bounce_reason {ref['bounce_reason'][:30]!r}...; "
       "a name that is a formula is written with a leading '")

    clicks = {e: (r["clicked"], r["clicks"], bool(r["clicked_at"])) for e, r in by_email.items()}
    want = {ANN: ("1", "2", True), BOB: ("1", "1", True), CY: ("0", "0", False), REFUSED: ("0", "0", False)}
    assert clicks == want, f"clicks in the CSV: {clicks}"
    shown = nl.cli_json(t, "campaign", "show", str(cid))
    links = [(lk["url"], lk["clickers"], lk["clicks"]) for lk in shown["links"]]
    assert links == [(FIRST, 2, 3), (SECOND, 0, 0)], f"campaign show --json links: {shown['links']}"
    api = nl.api(http_port, f"/api/campaigns/{cid}")
    api_links = [(lk["url"], lk["clickers"], lk["clicks"]) for lk in api["link_clicks"]]
    assert api_links == links, f"/api/campaigns/{cid} link_clicks: {api['link_clicks']}"
    text = t.cli("campaign", "show", str(cid)).out
    assert re.search(r"^\s+2\s+3\s+" + re.escape(FIRST) + "$", text, re.M), text
    ok(f"clicks per link: {FIRST} 2 readers, 3 clicks; {SECOND} 0, 0 (campaign show, --json, the API); "
       "the CSV says ann clicked twice, bob once, with a time")

    r = t.cli("campaign", "report", str(cid + 100), check=False)
    assert r.code != 0 and str(cid + 100) in r.err, r
    r = t.cli("sequence", "report", "999", check=False)
    assert r.code != 0 and "999" in r.err, r
    for path in (f"/api/campaigns/{cid + 100}/report.csv", "/api/steps/999/report.csv", "/api/campaigns/x/report.csv"):
        status, _, body = nl.http("GET", base + path)
        assert status == 404, f"GET {path}: {status} {body[:200]!r}"
    ok("the report of a campaign or step that does not exist: the CLI fails naming it, the API answers 404")
    srv.stop()
    t.check_store("after the report test")


if __name__ == "__main__":
    h.main(test, timeout=120)
