#!/usr/bin/env python3
"""The web console's directory, queue, statistics and capacity-planner screens in headless
Chromium, each checked against the CLI that calls the same operations.

- Directory: an administrator adds a domain, an account (as administrator) and an alias
  from the pages; `tegami domain list`, `account list` and `alias list` show them. Turning
  the account's administrator flag off shows in `account list`; a password set from the
  page is the one POP3 accepts (the old one no longer). A domain with accounts is not
  removed (the store's refusal is shown); an alias and an empty domain are.
- DKIM and DNS: the domain's page has no key at first; "make a DKIM key" makes one, and the
  record the page shows is the one `tegami domain dkim` prints; the records table and the
  zone fragment hold it too, with the MX record.
- Queue: mail to an alias that forwards to an unreachable remote domain is listed with its
  recipient and the connection error; its page shows the headers; "retry" makes it due;
  "remove" takes it out of the queue (`tegami queue list --json` is empty after).
- Statistics: after mail to three accounts, the ranking by bytes written lists the accounts
  in the order of `tegami stats usage --json`, with each account's bytes written; the
  ranking by messages puts the account with the most messages first; the daily totals
  count every message received today.
- Planner: the form comes filled in with this server's mailboxes (as many as `account
  list`) and average message size; submitting it gives the plan of the tegami model,
  measured on this store. The exchange2010 model with the article's figures gives the
  steps `tegami plan --model exchange2010` prints.
- The pages switch to Japanese; a user who is not an administrator gets 403 on each.
"""

import json
import os
import re
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import browser  # noqa: E402
import harness as h  # noqa: E402
import peers  # noqa: E402
from harness import ok  # noqa: E402

ADMIN = ("root@example.com", "root-pw-1")
DOMAIN = "shop.example"
ANN = f"ann@{DOMAIN}"
BEN = f"ben@{DOMAIN}"
ALIAS = f"info@{DOMAIN}"
REMOTE = "far@unreachable.test"


def closed_port():
    """A loopback port nobody listens on: connections to it are refused at once."""
    import socket

    with socket.socket() as s:
        s.bind((h.HOST, 0))
        return s.getsockname()[1]


def message(to, i, size):
    head = f"From: s@sender.test\r\nTo: {to}\r\nSubject: load {i}\r\n\r\n"
    return (head + ("x" * (size - len(head) - 2)) + "\r\n").encode()


def submit(b, form):
    """Clicks the submit button of `form` and waits for the next page."""
    before = b.find("html")
    b.click(f"{form} button[type=submit]")
    b.wait_for(lambda: b.find_all("html") and b.find("html") != before, f"{form} to post")


def confirm_next(b):
    """Forms marked data-confirm ask window.confirm first: answer yes (as the user would)."""
    b.execute("window.confirm = function () { return true; };")


def test():
    t = h.Tegami("console-directory")
    t.write_config(
        peers.outbound_config(routes=[("unreachable.test", closed_port())], queue={"retry_secs": [3600]})
        + "\n[stats]\nflush_interval_secs = 1\n"
    )
    t.domain("example.com")
    t.cli("account", "add", ADMIN[0], "--password-stdin", "--admin", stdin=ADMIN[1] + "\n")
    srv = t.serve()
    base = f"http://{h.HOST}:{srv.http}"
    b = browser.Browser()
    browser.sign_in(b, base, *ADMIN)

    # -- domains, accounts, aliases ---------------------------------------------------------
    b.get(f"{base}/console/admin/domains")
    b.type("form#domain-add input[name=name]", "Shop.Example")
    submit(b, "form#domain-add")
    assert DOMAIN in b.text("p.notice"), b.text("main")
    assert DOMAIN in b.texts("table#domains td.name"), b.texts("table#domains td.name")
    assert DOMAIN in t.cli("domain", "list").out.split(), t.cli("domain", "list").out
    ok("a domain added on the domains page is in `tegami domain list` (stored in lower case)")

    b.get(f"{base}/console/admin/accounts")
    b.type("form#account-add input[name=address]", ANN)
    b.type("form#account-add input[name=password]", "ann-pw-1")
    b.click("form#account-add input[name=admin]")
    submit(b, "form#account-add")
    b.type("form#account-add input[name=address]", BEN)
    b.type("form#account-add input[name=password]", "ben-pw-1")
    submit(b, "form#account-add")
    assert {ANN, BEN} <= set(b.texts("table#accounts td.address")), b.texts("table#accounts td.address")
    listed = t.cli("account", "list").out
    assert re.search(rf"^{re.escape(ANN)}\t0 messages\t0 bytes\tadmin$", listed, re.M), listed
    assert re.search(rf"^{re.escape(BEN)}\t0 messages\t0 bytes$", listed, re.M), listed
    t.cli("account", "quota", BEN, "10M")
    b.get(f"{base}/console/admin/accounts")
    quota = b.text(f'table#accounts tr[data-address="{BEN}"] td.quota')
    assert quota == "10.0 MiB (0 %)", quota
    assert b.text(f'table#accounts tr[data-address="{ANN}"] td.quota') == "—"
    b.screenshot("accounts")
    ok(f"accounts added on the page (one as administrator) are in `tegami account list`, the flag too; ben's quota reads {quota!r}")

    b.click(f'table#accounts tr[data-address="{ANN}"] td.admin button')
    b.wait_for(lambda: b.has("p.notice") and ANN in b.text("p.notice"), "the administrator flag to change")
    listed = t.cli("account", "list").out
    assert re.search(rf"^{re.escape(ANN)}\t.*bytes$", listed, re.M), listed
    ok("'remove administrator' on the page clears the flag `account list` shows")

    b.type("form#account-password input[name=address]", BEN)
    b.type("form#account-password input[name=password]", "ben-new-pw")
    submit(b, "form#account-password")
    assert BEN in b.text("p.notice"), b.text("main")
    h.pop3_login(srv.pop3, BEN, "ben-new-pw").quit()
    try:
        h.pop3_login(srv.pop3, BEN, "ben-pw-1").quit()
        raise AssertionError("the old password still works after the change on the page")
    except Exception as e:  # poplib.error_proto
        assert "old password still works" not in str(e), e
    ok("a password set on the accounts page is the one POP3 accepts; the old one is refused")

    b.get(f"{base}/console/admin/aliases")
    b.type("form#alias-add input[name=address]", ALIAS)
    b.type("form#alias-add input[name=targets]", f"{ANN}, {REMOTE}")
    submit(b, "form#alias-add")
    assert ALIAS in b.texts("table#aliases td.address"), b.text("main")
    aliases = t.cli("alias", "list").out
    assert f"{ALIAS}\t{ANN}, {REMOTE}" in aliases.splitlines(), aliases
    ok("an alias added on the aliases page (a local and a remote target) is in `tegami alias list`")

    b.get(f"{base}/console/admin/domains")
    confirm_next(b)
    b.click(f'table#domains form[data-confirm*="{DOMAIN}"] button')
    # The refusal is the page to wait for: the URL may still be the list's just after the click.
    b.wait_for(lambda: b.has("p.error"), "the removal's refusal")
    assert DOMAIN in t.cli("domain", "list").out.split()
    ok(f"removing a domain with accounts is refused with the store's reason: {b.text('p.error')!r}")

    # -- DKIM and the DNS records -----------------------------------------------------------
    b.get(f"{base}/console/admin/domains")
    b.click(f'table#domains a[href="/console/admin/domains/{DOMAIN}"]')
    b.find("form#dkim-make")
    assert not b.has("pre#dkim"), b.text("main")
    submit(b, "form#dkim-make")
    shown = b.text("pre#dkim").strip()
    printed = t.cli("domain", "dkim", DOMAIN).out
    assert "made a DKIM key" not in printed, printed
    record = [line for line in printed.splitlines() if "._domainkey." in line]
    assert record == [shown], (record, shown)
    assert re.match(rf"^tg\d{{12}}\._domainkey\.{re.escape(DOMAIN)}\. IN TXT \( ?\"v=DKIM1; k=rsa; p=", shown), shown
    names = b.texts("table#records td:nth-child(2)")
    assert shown.split(". IN")[0] in names, names
    zone = b.text("pre#zone")
    assert shown in zone, zone
    assert re.search(rf"^{re.escape(DOMAIN)}\. IN MX 10 ", zone, re.M), zone
    b.screenshot("dns-records")
    ok(f"the DNS records page shows the DKIM record `tegami domain dkim` prints ({shown[:40]}...)")

    # -- queue ------------------------------------------------------------------------------
    h.send(srv.smtp, "s@sender.test", [ALIAS], message(ALIAS, 0, 3000))
    b.get(f"{base}/console/admin/queue")

    def queued():
        b.get(f"{base}/console/admin/queue")
        rows = b.find_all("table#queue tr[data-id]")
        return rows and b.has("table#queue td.error") and b.text("table#queue td.error").strip()

    b.wait_for(queued, "the forwarded message in the queue with its first error", 30)
    cli = json.loads(t.cli("queue", "list", "--json").out)
    assert len(cli) == 1, cli
    qid = cli[0]["id"]
    assert b.attr("table#queue tr[data-id]", "data-id") == str(qid)
    assert REMOTE in b.text("table#queue td.recipients"), b.text("table#queue")
    error = b.text("table#queue td.error")
    assert "refused" in error.lower() or "connect" in error.lower(), error
    b.screenshot("queue")
    ok(f"the queue page lists message {qid} to {REMOTE} with its error ({error[:50]})")

    b.click(f'table#queue a[href="/console/admin/queue/{qid}"]')
    assert "Subject: load 0" in b.text("pre#headers"), b.text("main")
    assert REMOTE in b.text("table#recipients"), b.text("table#recipients")
    b.click("form.retry button")
    b.wait_for(lambda: b.has("p.notice"), "the retry to answer")
    assert f"{qid}: 1 recipient" in b.text("p.notice"), b.text("p.notice")
    ok("the message's page shows its headers and recipient; 'retry now' makes its 1 recipient due")

    confirm_next(b)
    b.click(f'table#queue tr[data-id="{qid}"] form.remove button')
    b.wait_for(lambda: b.has("p.notice") and "removed" in b.text("p.notice"), "the removal")
    assert b.has("p.empty") and not b.has("table#queue"), b.text("main")
    assert json.loads(t.cli("queue", "list", "--json").out) == []
    ok("'remove' on the queue page takes the message out (`tegami queue list --json` is empty)")

    # -- statistics -------------------------------------------------------------------------
    load = {ANN: (3, 8000), BEN: (6, 1500), ADMIN[0]: (1, 1000)}
    for to, (n, size) in load.items():
        for i in range(n):
            h.send(srv.smtp, "s@sender.test", [to], message(to, i, size))
    # The usage figures reach the store when the server flushes them: wait until every
    # delivery is counted rather than a fixed time.
    def counted():
        usage = json.loads(t.cli("stats", "usage", "--top", "10", "--json").out)
        totals = {u["account"]: u["total"]["messages_in"] for u in usage}
        return usage if all(totals.get(to, 0) >= n for to, (n, _) in load.items()) else None

    usage = b.wait_for(counted, "the usage figures of every delivery", 60)
    expected = [u["account"] for u in usage]
    assert expected[:2] == [ANN, BEN], usage
    b.get(f"{base}/console/admin/stats")
    ranked = b.texts("table#ranking td.account")
    assert ranked == expected, (ranked, expected)
    written = [int(b.attr(f"table#ranking tr:nth-child({i + 1}) td.write-bytes", "data-value")) for i in range(len(ranked))]
    assert written == [u["total"]["write_bytes"] for u in usage], (written, usage)
    assert len(b.find_all("table#ranking th.sample")) == 7, b.texts("table#ranking th")
    assert b.has("figure.chart svg rect.bar")
    b.screenshot("stats")
    ok(f"the statistics page ranks {ranked} by bytes written, as `tegami stats usage` does, with the samples")

    b.click('p.choices a[href*="by=messages"]')
    by_messages = b.texts("table#ranking td.account")
    assert by_messages[0] == BEN, by_messages
    received = int(b.text("table#daily-totals td.messages-in"))
    assert received == 1 + sum(n for n, _ in load.values()), received
    b.click('p.choices a[href*="days=365"]')
    assert "365" in b.text("main h2:nth-of-type(2)"), b.text("main")
    assert int(b.text("table#daily-totals td.messages-in")) == received
    ok(f"by messages {BEN} (6) comes first; the daily totals count the {received} messages received today")

    # -- capacity planner -------------------------------------------------------------------
    b.get(f"{base}/console/admin/planner")
    accounts = len(t.cli("account", "list").out.splitlines())
    assert b.attr("form#plan input[name=mailboxes]", "value") == str(accounts), b.text("table#measured")
    kb = float(b.attr("form#plan input[name=avg_message_kb]", "value"))
    assert 0.5 < kb < 10, kb
    submit(b, "form#plan")
    steps = b.texts("table#plan-steps td.label")
    assert "data volume" in steps and "backup volume" in steps, steps
    assert "measured on this store" in b.text("#plan-result p.title"), b.text("#plan-result")
    volume = b.text('table#plan-steps tr[data-label="data volume"] td.value')
    assert re.search(r"\([\d,]+ bytes\)$", volume), volume
    b.screenshot("planner-tegami")
    ok(f"the planner's form is filled in ({accounts} mailboxes, {kb} KB) and plans: data volume {volume}")

    b.get(f"{base}/console/admin/planner")
    b.click("form#plan input[value=exchange2010]")
    article = {"mailboxes": "250", "messages_per_day": "150", "avg_message_kb": "100",
               "moves_per_day_percent": "1", "avg_mailbox_gb": "5.4"}
    for name, value in article.items():
        b.type(f"form#plan input[name={name}]", value)
    submit(b, "form#plan")
    cli = t.cli("plan", "--model", "exchange2010", *[x for k, v in article.items() for x in (f"--{k.replace('_', '-')}", v)]).out
    cli_steps = re.findall(r"^\s*\d+\. (.+?)\s{2,}(.*) = (.*)$", cli, re.M)
    page = [tuple(b.texts(f"table#plan-steps td.{c}")) for c in ("label", "how", "value")]
    assert list(zip(*page)) == cli_steps, (page, cli_steps)
    assert page[2][-1].endswith("about 185 GB"), page
    ok("the exchange2010 model with the article's figures gives the steps of `tegami plan` (185 GB)")

    b.get(f"{base}/console/admin/planner?model=tegami&overhead=lots")
    assert "overhead" in b.text("p#plan-error"), b.text("main")
    ok("a figure that is not a number is named in the planner's reply")

    # -- Japanese, and for administrators only -------------------------------------------------
    b.get(f"{base}/console/admin/stats")
    b.click("span.lang a[hreflang=ja]")
    b.wait_for(lambda: b.attr("html", "lang") == "ja", "the page in Japanese")
    assert b.text("h1") == "統計", b.text("h1")
    assert "書き込みバイト数順" in b.text("p.choices") and b.has("table#ranking"), b.text("main")
    b.screenshot("stats-ja")
    for path, title in [("/admin/queue", "送信キュー"), ("/admin/planner", "容量計画"),
                        ("/admin/accounts", "アカウント"), (f"/admin/domains/{DOMAIN}", f"{DOMAIN} の DNS レコード")]:
        b.get(f"{base}/console{path}")
        assert b.text("h1") == title, (path, b.text("h1"))
    b.click("span.lang a[hreflang=en]")
    ok("the pages come in Japanese after the switch (統計, 送信キュー, 容量計画, アカウント)")

    user = browser.Browser()
    browser.sign_in(user, base, BEN, "ben-new-pw")
    cookie = user.cookie_header()
    for path in ["/admin/domains", f"/admin/domains/{DOMAIN}", "/admin/accounts", "/admin/aliases",
                 "/admin/queue", f"/admin/queue/{qid}", "/admin/stats", "/admin/planner?model=tegami"]:
        status, _, _ = browser.http("GET", f"{base}/console{path}", cookie=cookie)
        assert status == 403, (path, status)
    user.quit()
    ok("a signed-in user who is not an administrator gets 403 on every page of these screens")

    # -- the alias and the domain go ----------------------------------------------------------
    b.get(f"{base}/console/admin/aliases")
    confirm_next(b)
    b.click(f'table#aliases tr[data-address="{ALIAS}"] button')
    b.wait_for(lambda: b.has("p.notice"), "the alias removal")
    assert ALIAS not in t.cli("alias", "list").out
    for who in (ANN, BEN):
        b.get(f"{base}/console/admin/accounts")
        confirm_next(b)
        b.click(f'table#accounts tr[data-address="{who}"] form[data-confirm] button')
        b.wait_for(lambda: b.has("p.notice"), "the account removal")
    b.get(f"{base}/console/admin/domains")
    confirm_next(b)
    b.click(f'table#domains form[data-confirm*="{DOMAIN}"] button')
    b.wait_for(lambda: b.has("p.notice"), "the domain removal")
    assert DOMAIN not in t.cli("domain", "list").out.split()
    assert ANN not in t.cli("account", "list").out
    ok("alias, accounts and then the empty domain removed from the pages are gone from the CLI's lists")
    srv.stop()


if __name__ == "__main__":
    h.main(test, timeout=300)
