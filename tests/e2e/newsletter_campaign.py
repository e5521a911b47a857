#!/usr/bin/env python3
"""A newsletter campaign to 2,000 subscribers through the queue to a real Postfix: one
personalised, DKIM-signed mail each with both List-Unsubscribe headers; the one-click
unsubscribe, click tracking, forged tokens and a DSN to a VERP address (issue 10).

Setup: a private Postfix (tests/e2e/peers.py) accepting peer.test, reached through
`[[queue.route]] domain = "peer.test"`; `tegami domain dkim example.com --selector sel`;
`[newsletter] base_url = "http://127.0.0.1:<the --http port>"`, bounce_domain example.com,
verp_prefix "bounces", hard_bounce_limit 1, track_clicks on.

Checks:
- `subscriber import` of a CSV with 2,000 good rows, a duplicate and three bad rows prints
  "added 2000, already present 1, invalid 3" and names each bad row by its line number.
- The campaign (text with {{name}}, {{attr.plan}}, {{email}}, {{unsubscribe_url}} and one
  link; HTML with the same and a second link) reaches Postfix: each of the 2,000 exactly
  once, no one else; To is the subscriber; the text and HTML parts carry the subscriber's
  own name (HTML-escaped in the HTML part) and plan; the envelope sender is
  bounces+c<campaign>-<subscriber id>-<mac>@example.com with the subscriber's own id;
  List-Unsubscribe is <base_url/unsubscribe/...> and List-Unsubscribe-Post is
  "List-Unsubscribe=One-Click"; every mail's DKIM signature (d=example.com s=sel) verifies
  with dkimpy and its h= covers list-unsubscribe and list-unsubscribe-post; links point to
  base_url/c/... and the originals are not in the mail.
- `campaign show --json` says done with sent 2000; `campaign recipients` lists the 2,000;
  GET /api/campaigns/<id> and /api/lists agree.
- The one-click POST (body List-Unsubscribe=One-Click) answers 2xx and the subscriber is
  "unsubscribed" in `subscriber list --json`; the unsubscribe total is 1.
- GET /c/<token> of one mail answers 302 with Location the original link and the click is
  counted (`campaign show`, `campaign recipients --outcome click`); a token with one
  character changed, a made-up token, and a token cut short answer 404.
- A DSN (multipart/report, Action: failed, Status: 5.1.1) sent over SMTP from <> to one
  subscriber's VERP address is accepted; that subscriber becomes "bounced" and is in
  `campaign recipients --outcome hard_bounce`; hard_bounce is 1 in `campaign show`. A DSN to
  a VERP address whose MAC was changed marks nobody.
- `tegami stats disk` has a "newsletter history" line; `tegami check` passes.
"""

import collections
import html
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

N = int(os.environ.get("NEWSLETTER_SUBSCRIBERS", "2000"))
LIST = "news"
ARTICLE = "https://example.org/article?id=7&from=news"
HTML_LINK = "https://example.org/html-only/page"
PLANS = ("free", "pro", "team")
SUBJECT = "News of the week: ünïcode inside"

TEXT = """Hello {{name}},

your plan: {{attr.plan}} ({{email}}).

Read the article: https://example.org/article?id=7&from=news

Unsubscribe: {{unsubscribe_url}}
"""

HTML = """<html><body>
<p>Hello {{name}},</p>
<p>your plan: <b>{{attr.plan}}</b></p>
<p><a href="https://example.org/article?id=7&amp;from=news">the article</a>
and <a href="https://example.org/html-only/page">another page</a></p>
<p><a href="{{unsubscribe_url}}">unsubscribe</a></p>
</body></html>
"""


def people():
    """[(email, name, plan)] of the N subscribers; some names need encoding or escaping."""
    out = []
    for i in range(N):
        if i % 97 == 5:
            name = f"山田 花子 {i}"
        elif i % 101 == 7:
            name = f"Tom & Jerry <{i}>"
        else:
            name = f"Reader {i}"
        out.append((f"r{i}@peer.test", name, PLANS[i % len(PLANS)]))
    return out


def test():
    t = h.Tegami("nl-campaign")
    peer = peers.PostfixPeer(domains=("peer.test",))
    peer.start()
    http_port = peers.free_port()
    t.write_config(nl.config(peer.port, http_port, queue={"retry_secs": [3600]}, rate=2000))
    t.domain("example.com")
    r = t.cli("domain", "dkim", "example.com", "--selector", "sel")
    record = peers.dkim_record_from(r.out, "sel", "example.com")
    records = {"sel._domainkey.example.com": record}

    t.cli("list", "add", LIST, "--from", "news@example.com", "--from-name", "Example News")
    lists = nl.cli_json(t, "list", "list")
    assert LIST in str(lists), f"list list --json does not show {LIST}: {lists}"

    # --- CSV import with bad rows -------------------------------------------------------
    everyone = people()
    rows = [[e, n, p, f"city{i % 7}"] for i, (e, n, p) in enumerate(everyone)]
    # Bad rows at known places; line numbers count the header as line 1.
    bad = {}
    for at, row in ((10, ["not-an-address", "No At", "free", "x"]),
                    (500, ["", "Empty Address", "free", "x"]),
                    (1500, ["@peer.test", "No Local Part", "free", "x"])):
        rows.insert(at, row)
    rows.insert(1000, [everyone[3][0], "Duplicate", "pro", "x"])
    for i, row in enumerate(rows):
        if row[2:] and row[3] == "x" and row[1] != "Duplicate":
            bad[i + 2] = row[0]
    csv_path = t.root / "subscribers.csv"
    nl.write_csv(csv_path, ["email", "name", "plan", "city"], rows)
    r = t.cli("subscriber", "import", LIST, str(csv_path))
    out = r.out + r.err
    assert nl.import_counts(out) == (N, 1, 3), f"import counts: {nl.import_counts(out)}, wanted ({N}, 1, 3): {out[-800:]!r}"
    for line_no, addr in bad.items():
        assert re.search(rf"^line {line_no}: \S", out, re.M), f"bad row {addr!r} at line {line_no} not reported: {out[-800:]!r}"
    reported = [int(x) for x in re.findall(r"^line (\d+):", out, re.M)]
    assert sorted(reported) == sorted(bad), f"lines reported {reported}, bad rows at {sorted(bad)}"
    subs = nl.subscribers(t, LIST)
    assert len(subs) == N, f"subscriber list has {len(subs)}, wanted {N}"
    s3 = subs[everyone[3][0]]
    assert s3["name"] == everyone[3][1], f"the duplicate row replaced the name: {s3}"
    assert str(subs["r1@peer.test"]["attributes"].get("plan")) == PLANS[1], subs["r1@peer.test"]
    assert all(str(s["status"]).lower() == "active" for s in subs.values()), \
        collections.Counter(str(s["status"]) for s in subs.values())
    ok(f"CSV import: added {N}, already present 1, invalid 3, bad rows reported at lines {sorted(bad)}; all active")

    export = t.root / "export.csv"
    t.cli("subscriber", "export", LIST, str(export))
    exported = export.read_text()
    assert exported.count("@peer.test") >= N and "山田 花子 5" in exported, f"export: {exported[:300]!r}"
    ok("subscriber export writes every subscriber, UTF-8 names intact")

    # --- the campaign ---------------------------------------------------------------------
    srv = nl.serve(t, http_port, pop3=False, imap=False)
    base = f"http://{h.HOST}:{http_port}"
    started = time.monotonic()
    cid = nl.campaign_create(t, LIST, SUBJECT, TEXT, html=HTML, rate=2000)
    peer.wait_count(N, timeout=150, what="campaign mails")
    total = nl.settled_count(peer, quiet=2.0)
    got = peer.messages()
    assert total == N and len(got) == N, f"Postfix holds {total} mails, wanted {N} (duplicates?)"
    ok(f"campaign {cid}: {N} mails at Postfix in {time.monotonic() - started:.1f} s")

    by_rcpt = collections.defaultdict(list)
    for m in got:
        by_rcpt[m.recipient].append(m)
    want = {e: (n, p) for e, n, p in everyone}
    assert set(by_rcpt) == set(want), (f"recipients differ: missing {sorted(set(want) - set(by_rcpt))[:5]}, "
                                       f"extra {sorted(set(by_rcpt) - set(want))[:5]}")
    twice = [r for r, ms in by_rcpt.items() if len(ms) > 1]
    assert not twice, f"{len(twice)} subscribers got more than one mail, e.g. {twice[:5]}"
    tokens = {}
    for rcpt, (m,) in by_rcpt.items():
        name, plan = want[rcpt]
        sid = int(subs[rcpt]["id"])
        kind, ref, verp_sid, _ = nl.parse_verp(m.sender, "c", cid)
        assert verp_sid == sid, f"{rcpt}: VERP names subscriber {verp_sid}, its id is {sid} ({m.sender})"
        assert rcpt in str(m.msg["To"]).lower(), f"{rcpt}: To is {m.msg['To']}"
        assert str(m.msg["Subject"]) == SUBJECT, f"{rcpt}: Subject {m.msg['Subject']!r}"
        assert "news@example.com" in str(m.msg["From"]), m.msg["From"]
        text, page = nl.part(m, "plain"), nl.part(m, "html")
        assert f"Hello {name}," in text and f"your plan: {plan} ({rcpt})" in text, f"{rcpt}: text not personalised: {text!r}"
        assert f"Hello {html.escape(name, quote=False)}," in page and f"<b>{plan}</b>" in page, \
            f"{rcpt}: HTML not personalised (or not escaped): {page!r}"
        unsub = nl.unsubscribe_url(m)
        assert unsub.startswith(f"{base}/unsubscribe/"), f"{rcpt}: List-Unsubscribe {unsub} not under {base}/unsubscribe/"
        assert unsub in text, f"{rcpt}: {{{{unsubscribe_url}}}} in the text is not the List-Unsubscribe URL"
        post = m.header("List-Unsubscribe-Post")
        assert post == ["List-Unsubscribe=One-Click"], f"{rcpt}: List-Unsubscribe-Post {post}"
        links = re.findall(re.escape(base) + r"/c/([A-Za-z0-9_\-.~%]+)", text)
        assert links, f"{rcpt}: no tracking link {base}/c/... in the text: {text!r}"
        assert "example.org/article" not in text and "example.org/article" not in page, f"{rcpt}: link not rewritten"
        tokens[rcpt] = (links[0], unsub)
    ok(f"each of the {N} subscribers got exactly one mail: own name (escaped in HTML), plan and address, "
       "VERP sender with its own id, List-Unsubscribe <base_url/unsubscribe/...> + List-Unsubscribe-Post One-Click, "
       "links rewritten to base_url/c/...")

    results = nl.dkim_verify_many([m.raw for m in got], records)
    bad_sigs = [(m.recipient, r) for m, r in zip(got, results) if not r["ok"]]
    assert not bad_sigs, f"{len(bad_sigs)} DKIM signatures do not verify, e.g. {bad_sigs[:2]}"
    for m, r in zip(got, results):
        tags = r["tags"]
        assert tags.get("d") == "example.com" and tags.get("s") == "sel", tags
        signed = [x.strip().lower() for x in tags.get("h", "").split(":")]
        for want_h in ("from", "list-unsubscribe", "list-unsubscribe-post"):
            assert want_h in signed, f"{m.recipient}: {want_h} not in h= ({tags.get('h')})"
    ok(f"all {N} DKIM signatures verify with dkimpy (d=example.com s=sel), h= covers list-unsubscribe and list-unsubscribe-post")

    state, totals = peers.wait_until("campaign done", lambda: (lambda s: s if s[0] == "done" else None)(nl.campaign(t, cid)), 120)
    assert totals["sent"] == N and totals["hard_bounce"] == 0 and totals["unsubscribe"] == 0, totals
    rec = nl.recipients(t, cid)
    assert sorted(rec) == sorted(want), f"campaign recipients: {len(rec)} lines, {len(set(rec))} distinct"
    api_c = nl.api(http_port, f"/api/campaigns/{cid}")
    assert nl.totals_in(api_c)["sent"] == N, api_c
    assert str(cid) in str(nl.api(http_port, "/api/campaigns")) and LIST in str(nl.api(http_port, "/api/lists"))
    ok(f"campaign show: done, sent {N}; campaign recipients lists the {N}; /api/campaigns/{cid}, /api/campaigns and /api/lists agree")

    # --- one-click unsubscribe --------------------------------------------------------------
    leaver = "r17@peer.test"
    status, _, body = nl.one_click(tokens[leaver][1])
    assert 200 <= status < 300, f"one-click POST: {status} {body[:200]!r}"
    assert nl.status_of(t, LIST, leaver) == "unsubscribed", nl.subscribers(t, LIST)[leaver]
    assert nl.status_of(t, LIST, "r18@peer.test") == "active"
    _, totals = nl.campaign(t, cid)
    assert totals["unsubscribe"] == 1, totals
    assert nl.recipients(t, cid, "unsubscribe") == [leaver]
    status, _, _ = nl.http("GET", tokens["r19@peer.test"][1])
    assert status == 200 and nl.status_of(t, LIST, "r19@peer.test") == "active", \
        "GET of the unsubscribe URL (a page with a button) must not unsubscribe by itself"
    ok(f"one-click POST (List-Unsubscribe=One-Click) -> {status}: {leaver} unsubscribed, counted; a GET only shows the page")

    # --- clicks -----------------------------------------------------------------------------
    clicker = "r23@peer.test"
    token = tokens[clicker][0]
    status, headers, _ = nl.http("GET", f"{base}/c/{token}")
    assert status == 302, f"GET /c/<token>: {status}, wanted 302"
    assert headers.get("location") == ARTICLE, f"redirect to {headers.get('location')!r}, wanted {ARTICLE!r}"
    _, totals = nl.campaign(t, cid)
    assert totals["click"] == 1, totals
    assert nl.recipients(t, cid, "click") == [clicker]
    forged = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    for what, tok in (("one character changed", forged), ("made up", "x" * len(token)),
                      ("cut short", token[: len(token) // 2])):
        status, headers, _ = nl.http("GET", f"{base}/c/{tok}")
        assert status == 404, f"a token {what} answered {status} (location {headers.get('location')!r}), wanted 404"
    _, totals = nl.campaign(t, cid)
    assert totals["click"] == 1, f"a forged token counted a click: {totals}"
    ok(f"click: 302 to {ARTICLE}, counted for {clicker}; forged, made-up and cut tokens get 404 and count nothing")

    # --- a DSN to a VERP address ------------------------------------------------------------
    victim = "r42@peer.test"
    (vm,) = by_rcpt[victim]
    verp = vm.sender
    h.send(srv.smtp, "", [verp], nl.dsn("peer.test", verp, victim,
                                       original_headers=f"To: {victim}\nSubject: {vm.msg['Subject']}\n"))
    peers.wait_until(f"{victim} bounced", lambda: nl.status_of(t, LIST, victim) == "bounced", 120)
    _, totals = nl.campaign(t, cid)
    assert totals["hard_bounce"] == 1, totals
    assert nl.recipients(t, cid, "hard_bounce") == [victim]
    ok(f"a DSN (5.1.1, Action failed) to {verp} marks {victim} bounced; hard_bounce 1 in campaign show and recipients")

    # The same DSN shape to another subscriber's VERP with the MAC changed: nobody is marked.
    other = "r43@peer.test"
    (om,) = by_rcpt[other]
    local, domain = om.sender.split("@")
    mac = local.rsplit("-", 1)[1]
    bad_mac = "".join("0" if c != "0" else "1" for c in mac)
    fake = f"{local.rsplit('-', 1)[0]}-{bad_mac}@{domain}"
    try:
        h.send(srv.smtp, "", [fake], nl.dsn("peer.test", fake, other))
    except Exception:  # noqa: BLE001 - refusing it at RCPT is fine too
        pass
    time.sleep(2)
    assert nl.status_of(t, LIST, other) == "active", "a DSN to a VERP address with a wrong MAC marked the subscriber"
    _, totals = nl.campaign(t, cid)
    assert totals["hard_bounce"] == 1, totals
    ok("a DSN to a VERP address with a wrong MAC marks nobody")

    r = t.cli("stats", "disk")
    assert any(line.strip().startswith("newsletter history") for line in r.out.splitlines()), r.out
    ok("stats disk has a 'newsletter history' line")

    srv.stop()
    peer.close()
    t.check_store("after the campaign test")


if __name__ == "__main__":
    h.main(test, timeout=175)
