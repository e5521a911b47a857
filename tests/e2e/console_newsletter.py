#!/usr/bin/env python3
"""The web console's newsletter screens in headless Chromium (issue 18), against a real
Postfix on loopback as the receiving server (tests/e2e/peers.py).

An administrator signs in and, only through the pages:
- creates a list; imports subscribers from a CSV file chosen in the page's file field
  (60 good rows, a duplicate, a row without an address and one with a bad address): the
  page reports added 60, already on the list 1, refused 2, naming lines 5 and 9; the list
  page counts 60 active and shows them; a search finds the 6 "田中" by name and one by
  address;
- downloads the CSV export, which is byte for byte what `tegami subscriber export` writes
  and holds exactly the imported subscribers with their names and attributes;
- composes a campaign to the list: Postfix receives one mail per subscriber, the campaign
  page says done, its sent total is what Postfix received, and the delivery graph (SVG) is
  drawn with its scale at that number and a by-day table that adds up to it; its report
  download is what `tegami campaign report` writes, a row per recipient, each delivered;
- composes a slow campaign (2 mails a second) and pauses it from its page: Postfix stops
  receiving it; resumes it: mails flow again; cancels it (accepting the page's question):
  sending stops for good, short of the list, and the page's sent total is what Postfix got;
- schedules a campaign for 2099 with the segment plan=pro in the form: its page shows the
  segment and the number it selects, which `campaign preview --count` agrees with;
- previews the scheduled campaign with one subscriber's data, sends a test to the signed-in
  administrator (the campaign's totals stay 0), edits its subject, and copies it as a draft;
- creates a step-mail sequence and a step, which the page then lists with its report
  download (`tegami sequence report`'s CSV);
- the screens come in Japanese with Accept-Language: ja;
- `tegami check` passes.
"""

import csv
import io
import json
import os
import re
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import browser  # noqa: E402
import harness as h  # noqa: E402
import newsletter_common as nl  # noqa: E402
import peers  # noqa: E402
from harness import ok  # noqa: E402

ADMIN = ("admin@example.com", "admin-pw-1")
LIST = "console-news"
N = 60


def people():
    """[(email, name, plan)]: every tenth one a 田中 (the search's target)."""
    out = []
    for i in range(N):
        name = f"田中 {i}" if i % 10 == 4 else f"Reader {i}"
        out.append((f"r{i:02d}@peer.test", name, ("free", "pro")[i % 2]))
    return out


def by_subject(peer, subject):
    return [m for m in peer.messages() if str(m.msg["Subject"]) == subject]


def drained(b, url, peer, subject, quiet=5.0, timeout=120):
    """Once a campaign stopped (paused or cancelled): the number its page counts as sent,
    when Postfix holds exactly that many mails of `subject` and neither has changed for
    `quiet` seconds (what was queued before the stop still reaches Postfix, at the queue's
    pace)."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while True:
        b.get(url)
        now = (int(b.text("#total-sent")), len(by_subject(peer, subject)))
        assert now[1] <= now[0], f"Postfix holds {now[1]} mails of {subject!r}, the page counts {now[0]} sent"
        if now != last:
            last, since = now, time.monotonic()
        elif now[0] == now[1] and time.monotonic() - since >= quiet:
            return now[0]
        assert time.monotonic() < deadline, f"{subject!r}: sent and received did not settle: {now}"
        time.sleep(0.5)


def settled(peer, subject, quiet=2.0, timeout=60):
    """How many mails with `subject` Postfix holds once that stopped changing."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        n = len(by_subject(peer, subject))
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return n
        time.sleep(0.2)
    raise AssertionError(f"mails of {subject!r} kept arriving for {timeout} s")


def state(b):
    """The campaign page's state, or None while the page is being replaced."""
    try:
        return b.attr("#state", "class")
    except browser.WebDriverError:
        return None


def click_to_next_page(b, css):
    """Clicks and waits until the browser is at another URL (a GET form, a link)."""
    before = b.url
    b.click(css)
    b.wait_for(lambda: b.url != before, f"the page after {css}")


def reload_until_state(b, url, want, timeout=60):
    def check():
        b.get(url)
        return state(b) == want

    b.wait_for(check, f"the campaign to be {want}", timeout)


def compose(b, base, subject, text, rate=""):
    b.get(f"{base}/console/admin/newsletters/campaigns")
    b.select("form#compose select[name=list]", LIST)
    b.type("form#compose input[name=subject]", subject)
    b.type("form#compose textarea[name=text]", text)
    if rate:
        b.type("form#compose input[name=rate]", str(rate))
    b.click("form#compose button[type=submit]")
    b.wait_for(lambda: re.search(r"/campaigns/(\d+)$", b.url), "the campaign's page")
    return int(re.search(r"/campaigns/(\d+)$", b.url).group(1)), b.url


def test():
    t = h.Tegami("console-newsletter")
    peer = peers.PostfixPeer(domains=("peer.test",))
    peer.start()
    http_port = peers.free_port()
    config = nl.config(peer.port, http_port, rate=1000)
    t.write_config(config.replace("[newsletter]\n", "[newsletter]\npoll_secs = 1\n", 1))
    t.data.mkdir(parents=True, exist_ok=True)
    t.domain("example.com")
    t.cli("account", "add", ADMIN[0], "--password-stdin", "--admin", stdin=ADMIN[1] + "\n")
    srv = nl.serve(t, http_port, pop3=False, imap=False)
    base = f"http://{h.HOST}:{srv.http}"
    home = f"{base}/console/admin/newsletters"

    b = browser.Browser()
    browser.sign_in(b, base, *ADMIN, next_path="/console/admin/newsletters")
    assert b.url.endswith("/console/admin/newsletters"), b.url

    # -- a list, made in the page --------------------------------------------------------
    b.type("form#list-create input[name=name]", LIST)
    b.type("form#list-create input[name=from_address]", "news@example.com")
    b.type("form#list-create input[name=from_name]", "Example News")
    b.click("form#list-create button[type=submit]")
    b.wait_for(lambda: re.search(r"/lists/(\d+)$", b.url), "the list's page")
    list_url = b.url
    assert LIST in b.text("h1"), b.text("h1")
    assert LIST in str(nl.cli_json(t, "list", "list")), "the CLI does not see the list made in the page"
    ok(f"the list {LIST} made in the page ({list_url}); the CLI sees it")

    # -- CSV import through the file field ----------------------------------------------
    everyone = people()
    rows = [[e, n, p] for e, n, p in everyone]
    rows.insert(3, ["", "No Address", "free"])          # line 5
    rows.insert(7, ["not-an-address", "Bad", "free"])   # line 9
    rows.insert(20, [everyone[0][0], "Duplicate", "pro"])
    csv_path = t.root / "upload.csv"
    nl.write_csv(csv_path, ["email", "name", "plan"], rows)
    b.upload("form#import input[type=file]", csv_path)
    b.click("form#import button[type=submit]")
    summary = b.text("#import-summary")
    assert re.search(r"Added 60\b.*already on the list 1\b.*refused 2\b", summary), summary
    bad_lines = [int(x) for x in b.texts("table#import-bad td.num")]
    assert bad_lines == [5, 9], f"refused lines {bad_lines}, wanted [5, 9]"
    b.screenshot("import-report")
    b.get(list_url)
    assert b.text("#count-active") == str(N), b.text("#count-active")
    shown = [x.lower() for x in b.texts("table#subscribers td.email")]
    assert sorted(shown) == sorted(e for e, _, _ in everyone), f"the list page shows {len(shown)} subscribers"
    cli_subs = nl.subscribers(t, LIST)
    assert set(cli_subs) == {e for e, _, _ in everyone}, f"the CLI sees {len(cli_subs)} subscribers"
    assert cli_subs[everyone[0][0]]["name"] == everyone[0][1], "the duplicate row replaced the name"
    ok("the CSV chosen in the page's file field: added 60, already present 1, refused lines 5 and 9; "
       "the list page and the CLI show the 60")

    b.type("form#search input[name=q]", "田中")
    click_to_next_page(b, "form#search button[type=submit]")
    found = sorted(b.texts("table#subscribers td.name"))
    assert found == sorted(n for _, n, _ in everyone if n.startswith("田中")), found
    b.type("form#search input[name=q]", "R07@PEER")
    click_to_next_page(b, "form#search button[type=submit]")
    assert b.texts("table#subscribers td.email") == ["r07@peer.test"], b.texts("table#subscribers td.email")
    ok(f"search by name finds the {len(found)} 田中, by address (any case) the one subscriber")

    # -- the CSV export --------------------------------------------------------------------
    b.get(list_url)
    b.click("a#export")
    # browser.wait_download can return Chromium's hidden temporary file (.org.chromium.*)
    # before the download is renamed: wait for the file by the name the server gave.
    downloaded = b.downloads / f"{LIST}-subscribers.csv"
    b.wait_for(lambda: downloaded.exists() and not list(b.downloads.glob("*.crdownload")), "the download")
    body = downloaded.read_bytes()
    href = base + b.attr("a#export", "href")
    status, headers, again = browser.http("GET", href, cookie=b.cookie_header())
    assert status == 200 and again == body, (status, again[:200])
    headers = {k.lower(): v for k, v in headers.items()}
    assert headers.get("content-type", "").startswith("text/csv"), headers
    assert "attachment" in headers.get("content-disposition", ""), headers
    cli_export = t.root / "cli-export.csv"
    t.cli("subscriber", "export", LIST, str(cli_export))
    assert body == cli_export.read_bytes(), "the page's export differs from `subscriber export`"
    exported = list(csv.DictReader(io.StringIO(body.decode())))
    got = {(r["email"], r["name"], r["plan"], r["status"]) for r in exported}
    want = {(e, n, p, "active") for e, n, p in everyone}
    assert got == want and len(exported) == N, f"export: missing {want - got}, extra {got - want}"
    status, _, _ = browser.http("GET", href)
    assert status != 200, "the export is served without a session"
    ok(f"the CSV downloaded by Chromium from the page is byte for byte `subscriber export`: the {N} subscribers with names and plans")

    # -- a campaign to the sink ------------------------------------------------------------
    subject = "Console campaign one"
    cid, campaign_url = compose(b, base, subject, "Hello {{name}}\n\nLeave: {{unsubscribe_url}}\n")
    peer.wait_count(N, timeout=120, what="campaign mails")
    received = settled(peer, subject)
    assert received == N, f"Postfix received {received} mails of the campaign, wanted {N}"
    assert {m.recipient for m in by_subject(peer, subject)} == {e for e, _, _ in everyone}
    reload_until_state(b, campaign_url, "done")
    sent = int(b.text("#total-sent"))
    assert sent == received, f"the page says sent {sent}, Postfix received {received}"
    assert b.has("#delivery-graph figure.chart svg"), "no graph on the campaign's page"
    graph_text = b.texts("#delivery-graph svg text")
    assert str(received) in graph_text, f"the graph's scale {graph_text} does not reach {received}"
    assert b.has("#delivery-graph svg .s1"), "the graph has no line for sent"
    by_day = sum(int(x) for x in b.texts("table#delivery td.sent"))
    assert by_day == received, f"the by-day table adds up to {by_day}, Postfix received {received}"
    cli_state, cli_totals = nl.campaign(t, cid)
    assert (cli_state, cli_totals["sent"]) == ("done", received), (cli_state, cli_totals)
    b.execute("document.getElementById('delivery-graph').scrollIntoView()")
    b.screenshot("campaign-graph")
    ok(f"campaign {cid} composed in the page: Postfix got {received} mails, the page says done, sent {sent}, "
       f"and draws the graph with its scale at {received}")

    # -- the campaign's report as CSV -----------------------------------------------------
    href = base + b.attr("a#report", "href")
    status, headers, report = browser.http("GET", href, cookie=b.cookie_header())
    headers = {k.lower(): v for k, v in headers.items()}
    assert status == 200 and headers.get("content-type", "").startswith("text/csv"), (status, headers)
    assert "attachment" in headers.get("content-disposition", ""), headers
    assert report == t.cli("campaign", "report", str(cid)).out.encode(), "the page's report differs from `campaign report`"
    rows = list(csv.DictReader(io.StringIO(report.decode())))
    delivered = {r["email"] for r in rows if r["sent"] == "1" and r["delivered"] == "1"}
    assert len(rows) == N and delivered == {m.recipient for m in by_subject(peer, subject)}, \
        f"report: {len(rows)} rows, delivered {len(delivered)}"
    assert b.has("#no-links"), "a campaign without links shows a clicks-per-link table"
    status, _, _ = browser.http("GET", href)
    assert status != 200, "the report is served without a session"
    ok(f"the campaign page's report download is `campaign report`: {N} rows, delivered for each of Postfix's "
       "recipients; no session, no report")

    # -- pause, resume, cancel -------------------------------------------------------------
    slow = "Console campaign slow"
    sid, slow_url = compose(b, base, slow, "Slowly, {{name}}\n\n{{unsubscribe_url}}\n", rate=2)
    peers.wait_until("a few slow mails", lambda: len(by_subject(peer, slow)) >= 4, 60)
    b.get(slow_url)
    b.click("#action-pause")
    b.wait_for(lambda: state(b) == "paused", "the paused state")
    paused_at = drained(b, slow_url, peer, slow)
    assert paused_at < N, f"the whole list ({paused_at}) was sent before the pause"
    assert not b.has("#action-pause") and b.has("#action-resume"), "a paused campaign offers pause, not resume"
    ok(f"pause from the page: Postfix stayed at {paused_at} of {N} for 5 s; the page says paused, sent {paused_at}")

    b.click("#action-resume")
    b.wait_for(lambda: state(b) == "sending", "the sending state")
    peers.wait_until("mails after the resume", lambda: len(by_subject(peer, slow)) >= paused_at + 3, 60)
    ok("resume from the page: mails flow again")

    b.click("#action-cancel")
    b._call("POST", b._s("/alert/accept"), {})
    b.wait_for(lambda: b.has("#state") and state(b) == "cancelled", "the cancelled state")
    cancelled_at = drained(b, slow_url, peer, slow)
    assert paused_at < cancelled_at < N, (paused_at, cancelled_at)
    assert not b.has("p.actions button"), "a cancelled campaign still offers actions"
    assert nl.campaign(t, sid)[0] == "cancelled"
    status, _, _ = browser.http("POST", f"{slow_url}/resume", cookie=b.cookie_header(),
                                data={"csrf": b.attr("form[action='/console/logout'] input[name=csrf]", "value")})
    assert status == 409, f"resuming a cancelled campaign answered {status}"
    b.screenshot("campaign-cancelled")
    ok(f"cancel from the page: stopped at {cancelled_at} of {N}, the page's sent total matches Postfix; "
       "a resume posted afterwards is refused (409)")

    # -- a campaign scheduled for later, with its own rate -----------------------------------
    b.get(f"{base}/console/admin/newsletters/campaigns")
    b.select("form#compose select[name=list]", LIST)
    b.type("form#compose input[name=subject]", "Next year")
    b.type("form#compose textarea[name=text]", "Later, {{name}}")
    b.type("form#compose input[name=rate]", "7")
    b.type("form#compose textarea[name=segment]", "plan=pro")
    b.execute("document.querySelector('form#compose input[name=at]').value = '2099-01-01T09:00'")
    b.click("form#compose button[type=submit]")
    b.wait_for(lambda: re.search(r"/campaigns/(\d+)$", b.url), "the scheduled campaign's page")
    assert state(b) == "scheduled" and b.text("#rate") == "7", (state(b), b.text("#rate"))
    assert "2099-01-01 09:00" in b.text("table#campaign"), b.text("table#campaign")
    later = int(re.search(r"/campaigns/(\d+)$", b.url).group(1))
    assert nl.campaign(t, later)[0] == "scheduled"
    pros = sum(1 for p in people() if p[2] == "pro")
    counted = nl.cli_json(t, "campaign", "preview", str(later), "--count")
    assert b.text("#segment") == "plan=pro" and b.text("#audience") == str(pros) == str(counted["count"]), \
        (b.text("#segment"), b.text("#audience"), counted)
    ok(f"a campaign scheduled in the page for 2099-01-01 09:00 (server time) at 7 mails a second shows both; "
       f"its segment plan=pro is on its page with the {pros} subscribers it selects, as preview --count says")

    # -- preview, a test to me, edit and copy of the scheduled campaign ----------------------
    b.type("form#preview-form input[name=subscriber]", "r04@peer.test")
    click_to_next_page(b, "form#preview-form button[type=submit]")
    assert b.text("#preview-subscriber") == "r04@peer.test", b.text("#preview-subscriber")
    assert b.text("#preview-text") == "Later, 田中 4", b.text("#preview-text")
    b.get(f"{home}/campaigns/{later}")
    click_to_next_page(b, "#send-test")
    assert ADMIN[0] in b.text("#test-sent"), b.text("main")
    assert not any(nl.campaign(t, later)[1].values()), nl.campaign(t, later)
    b.get(f"{home}/campaigns/{later}")
    b.type("form#edit input[name=subject]", "Next year, edited")
    b.click("#save-edit")
    b.wait_for(lambda: b.has("#subject") and b.text("#subject") == "Next year, edited", "the edited subject")
    assert nl.campaign(t, later)[0] == "scheduled"
    b.click("#make-copy")
    b.wait_for(lambda: re.search(r"/campaigns/(\d+)$", b.url)
               and int(re.search(r"/campaigns/(\d+)$", b.url).group(1)) != later, "the copy's page")
    copy = int(re.search(r"/campaigns/(\d+)$", b.url).group(1))
    assert state(b) == "draft" and b.text("#subject") == "Next year, edited", (state(b), b.text("#subject"))
    assert nl.campaign(t, copy)[0] == "draft"
    ok("the scheduled campaign previewed with r04's data, a test sent to the administrator outside "
       "its totals, its subject edited in the page, and a copy made as a draft")

    # -- bad input gets a clear answer and changes nothing ---------------------------------
    csrf = b.attr("form[action='/console/logout'] input[name=csrf]", "value")
    status, _, page = browser.http("POST", f"{home}/lists", cookie=b.cookie_header(),
                                   data={"csrf": csrf, "name": "broken", "from_address": "nobody"})
    assert status == 400 and b"from_address" in page and b"is not an address" in page, (status, page[-400:])
    status, _, page = browser.http("POST", f"{home}/campaigns", cookie=b.cookie_header(),
                                   data={"csrf": csrf, "list": LIST, "subject": "x", "text": "x", "rate": "fast"})
    assert status == 400 and b"rate" in page, (status, page[-400:])
    status, _, _ = browser.http("POST", f"{home}/lists", cookie=b.cookie_header(),
                                data={"name": "no-token", "from_address": "a@example.com"})
    assert status == 403, f"a form without its CSRF token answered {status}"
    lists = str(nl.cli_json(t, "list", "list"))
    assert "broken" not in lists and "no-token" not in lists, lists
    ok("a From without @ and a rate that is not a number are refused with the field named (400); "
       "a form without its CSRF token is refused (403); no list was made")

    # -- step mail -------------------------------------------------------------------------
    b.get(f"{home}/sequences")
    b.select("form#sequence-create select[name=list]", LIST)
    b.type("form#sequence-create input[name=name]", "welcome")
    b.type("form#sequence-create input[name=time_zone]", "Asia/Tokyo")
    b.click("form#sequence-create button[type=submit]")
    b.wait_for(lambda: b.has("section.sequence"), "the sequence")
    b.click("section.sequence details summary")
    b.type("section.sequence form.add-step input[name=days]", "2")
    b.execute("document.querySelector('section.sequence form.add-step input[name=at]').value = '08:30'")
    b.type("section.sequence form.add-step input[name=subject]", "Day two")
    b.type("section.sequence form.add-step textarea[name=text]", "Welcome, {{name}}")
    b.click("section.sequence form.add-step button[type=submit]")
    b.wait_for(lambda: b.has("section.sequence table.steps"), "the step")
    cells = b.texts("section.sequence table.steps td")
    first_id = cells[1]
    assert cells == ["1", first_id, "2", "08:30", "Day two", "", "0", "0", "0", "CSV"], cells
    assert "Asia/Tokyo" in b.text("section.sequence"), b.text("section.sequence")
    seqs = t.cli("sequence", "list", "--json").out
    assert "Day two" in seqs and "welcome" in seqs, seqs[:500]
    step_href = b.attr("section.sequence table.steps a.report", "href")
    step_id = re.search(r"/steps/(\d+)/report\.csv$", step_href).group(1)
    status, _, step_report = browser.http("GET", base + step_href, cookie=b.cookie_header())
    assert status == 200 and step_report == t.cli("sequence", "report", step_id).out.encode(), (status, step_report)
    assert step_report.decode().splitlines() == [step_report.decode().splitlines()[0]], "a step not sent has rows"
    ok("a sequence (Asia/Tokyo) and its step (day 2 at 08:30) made in the page; the CLI lists them; "
       "the step's report download is `sequence report`'s CSV, a header and no rows yet")

    # A second step that waits for a click in the first.
    b.click("section.sequence details summary")
    b.type("section.sequence form.add-step input[name=days]", "3")
    b.type("section.sequence form.add-step input[name=subject]", "Clicked")
    b.type("section.sequence form.add-step textarea[name=text]", "Thanks for reading, {{name}}")
    b.type("section.sequence form.add-step input[name=condition]", f"clicked:{first_id}")
    b.select("section.sequence form.add-step select[name=otherwise]", "wait")
    b.click("section.sequence form.add-step button[type=submit]")
    b.wait_for(lambda: len(b.find_all("section.sequence table.steps tbody tr")) == 2, "the second step")
    condition = b.texts("section.sequence table.steps td.condition")[1]
    assert condition == f"clicked:{first_id} wait until it holds", condition
    steps = json.loads(t.cli("sequence", "list", "--json").out)
    second = [s for s in steps[0]["steps"] if s["subject"] == "Clicked"]
    assert second and second[0]["condition"] == f"clicked:{first_id}" and second[0]["otherwise"] == "wait", steps
    ok(f"a step with a condition made in the page (clicked:{first_id}, wait): the table and `sequence list` show it")
    b.quit()

    # -- Japanese ----------------------------------------------------------------------------
    ja = browser.Browser(lang="ja")
    browser.sign_in(ja, base, *ADMIN, next_path=f"/console/admin/newsletters/campaigns/{cid}")
    assert ja.attr("html", "lang") == "ja"
    assert "キャンペーン" in ja.text("h1") and "配信完了" in ja.text("#state"), (ja.text("h1"), ja.text("#state"))
    assert "配信状況" in ja.text("main"), ja.text("main")[:300]
    ja.execute("document.getElementById('delivery-graph').scrollIntoView()")
    ja.screenshot("campaign-graph-ja")
    ja.get(list_url)
    assert "配信リスト" in ja.text("h1") and "購読者" in ja.text("main"), ja.text("h1")
    ja.quit()
    ok("the screens are Japanese with Accept-Language: ja")

    srv.stop()
    t.check_store("after the console's newsletter work")
    peer.close()
    ok("tegami check passes")


if __name__ == "__main__":
    h.main(test, timeout=600)
