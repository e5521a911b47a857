#!/usr/bin/env python3
"""The user's screens of the web console in headless Chromium: mail, messages, attachments,
hostile messages, the archive viewer and its CSV, 403 on admin pages, the password change.

A user (not an administrator) signs in, finds a message delivered by smtplib in their
INBOX, opens it (headers, text) and downloads its attachment through the browser: the file
is byte for byte the one sent. The search (subject, words, dates) finds what it should and
only that; another user asking for the same mailbox or message by URL gets 404.

Hostile messages: script in the subject, in the text body, in an attachment's file name
and in the HTML part (a <script>, onerror= handlers, a javascript: link that is clicked, a
form that is submitted, <img src> / CSS / <iframe> / <link> / meta refresh pointing at a
loopback listener this script runs). Every page that shows them is opened; no script runs
(document.title and window.name stay as they were, also inside the message's frame and when
the HTML is opened on its own) and the listener receives no request at all. The frame does
show the HTML (its marker text is read from inside it), so the test is not passing on an
empty frame.

Mail of 2020 imported with `tegami import mbox` is archived with `tegami archive create
--before 2021-01-01`; the user finds it among their mailboxes (read-only) and in the
archive viewer, only their own, searches it, and the viewer's CSV export of a search is
exactly the rows `tegami archive export --csv` writes for those messages.

A user who is not an administrator gets 403 on every /console/admin page. The password
change refuses a wrong current password, then works: IMAP takes the new password and
refuses the old one, and the user's other console session has ended.
"""

import csv
import datetime
import email.message
import email.utils
import http.server
import io
import os
import random
import sys
import threading
import time
import urllib.parse

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import browser  # noqa: E402
import harness as h  # noqa: E402
from harness import ok  # noqa: E402

ALICE = ("alice@example.com", "alice-pw-1")
BOB = ("bob@example.com", "bob-pw-1")
ADMIN = ("admin@example.com", "admin-pw-1")
ADMIN_PAGES = [
    "/console/admin",
    "/console/admin/maintenance",
    "/console/admin/diagnostics",
    "/console/admin/backups",
    "/console/admin/archives",
    "/console/admin/domains",
    "/console/admin/queue",
    "/console/admin/stats",
    "/console/admin/planner",
    "/console/admin/newsletters",
    "/console/admin/logs",
    "/console/admin/security",
]


class Listener:
    """A loopback HTTP server that records every request made to it: a hostile message's
    remote content and scripts aim here, and nothing may arrive."""

    def __init__(self):
        hits = self.hits = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                hits.append(("GET", self.path))
                self.send_response(200)
                self.send_header("Content-Type", "image/gif")
                self.end_headers()
                self.wfile.write(b"GIF89a")

            def do_POST(self):
                hits.append(("POST", self.path))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((h.HOST, 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        h.at_cleanup(self.server.shutdown)

    def url(self, path):
        return f"http://{h.HOST}:{self.port}/{path}"


def send(srv, msg, to):
    with h.smtp_client(srv.smtp) as s:
        s.send_message(msg, from_addr="sender@ext.test", to_addrs=[to])


def plain(subject, body, to):
    m = email.message.EmailMessage()
    m["From"] = "Sender <sender@ext.test>"
    m["To"] = to
    m["Subject"] = subject
    m["Date"] = email.utils.formatdate(localtime=True)
    m["Message-ID"] = email.utils.make_msgid(domain="ext.test")
    m.set_content(body)
    return m


def mbox_2020(account, n, word):
    """n messages of 2020 for `account`, as an mbox; every other one has `word` in its subject."""
    out = []
    for i in range(n):
        day = datetime.datetime(2020, 3 + i, 10, 9, 30, tzinfo=datetime.timezone.utc)
        subject = f"{word} minutes {i}" if i % 2 == 0 else f"weekly note {i}"
        out.append(
            f"From sender@ext.test {day.strftime('%a %b %d %H:%M:%S %Y')}\n"
            f"From: Tanaka <tanaka@ext.test>\nTo: {account}\nSubject: {subject}\n"
            f"Date: {email.utils.format_datetime(day)}\n"
            f"Message-ID: <old-{account.split('@')[0]}-{i}@ext.test>\n\n"
            f"Old mail number {i} of {account}.\n\n"
        )
    return "".join(out)


def mail_boxes(b):
    """{name: href} of the mailbox table."""
    out = {}
    for link in b.find_all("table#mailboxes tbody td:first-child a"):
        name = b._call("GET", b._s(f"/element/{link}/text"))
        out[name] = b._call("GET", b._s(f"/element/{link}/attribute/href"))
    return out


def fetch_with(url, cookie):
    """GET without the browser: (status, headers with lower-case names, body)."""
    status, headers, body = browser.http("GET", url, cookie=cookie)
    return status, {k.lower(): v for k, v in headers.items()}, body


def downloaded(b, name):
    """The file `name` once the browser has finished saving it (Chromium writes into
    temporary files first, so only the final name counts)."""

    def done():
        partial = [p for p in b.downloads.iterdir() if p.name.endswith(".crdownload")]
        path = b.downloads / name
        return path if path.exists() and not partial else None

    return b.wait_for(done, f"the download of {name}", timeout=60)


def row_subjects(b):
    return b.texts("table#messages td.subject a")


def quiet(b, listener, what, title):
    """Nothing ran and nothing was fetched: the page's title is `title`, window.name empty,
    the listener untouched. Waits a little first, so a late script or load would be seen."""
    time.sleep(1.0)
    assert b.title == title, f"{what}: the title changed to {b.title!r}"
    name = b.execute("return window.name;")
    assert name == "", f"{what}: window.name was set to {name!r}"
    assert b.execute("return window.__pwned === undefined;"), f"{what}: a script ran"
    assert listener.hits == [], f"{what}: requests reached the listener: {listener.hits}"


def test():
    t = h.Tegami("console-user")
    t.data.mkdir(parents=True)
    t.domain("example.com")
    t.account(*ALICE)
    t.account(*BOB)
    t.cli("account", "add", ADMIN[0], "--password-stdin", "--admin", stdin=ADMIN[1] + "\n")
    for account, n in ((ALICE[0], 5), (BOB[0], 3)):
        path = t.root / f"{account}.mbox"
        path.write_text(mbox_2020(account, n, "zebraquartz"))
        t.cli("import", "mbox", str(path), "--account", account, "--mailbox", "INBOX")
    srv = t.serve()
    base = f"http://{h.HOST}:{srv.http}"
    listener = Listener()

    # -- an ordinary message with an attachment, by smtplib ----------------------------------
    pdf = random.Random(7).randbytes(48 * 1024)
    m = plain("Quarterly report 請求書", "Please find the report attached.\nお支払いをお願いします。\n", ALICE[0])
    m.add_attachment(pdf, maintype="application", subtype="pdf", filename="report.pdf")
    send(srv, m, ALICE[0])

    # -- hostile messages -----------------------------------------------------------------------
    mark = "document.title='pwned';window.name='pwned';window.__pwned=1;"
    fetch = lambda p: f"fetch('{listener.url(p)}')"  # noqa: E731
    send(srv, plain(f"<script>{mark}{fetch('subject')}</script><img src=x onerror=\"{mark}\">", "hello", ALICE[0]), ALICE[0])
    send(srv, plain("script in the body", f"<script>{mark}{fetch('body')}</script>\n<img src=x onerror=\"{mark}\">", ALICE[0]), ALICE[0])
    m = plain("script in a file name", "see the attachment", ALICE[0])
    m.add_attachment(
        f"<script>{mark}</script>".encode(),
        maintype="text",
        subtype="html",
        filename=f"<img src=x onerror=\"{mark}{fetch('name')}\">.html",
    )
    send(srv, m, ALICE[0])
    hostile_html = (
        "<html><head><title>inner</title>"
        f"<meta http-equiv=\"refresh\" content=\"0;url={listener.url('refresh')}\">"
        f"<link rel=\"stylesheet\" href=\"{listener.url('css')}\">"
        f"<style>@import url('{listener.url('import')}'); body {{ background: url('{listener.url('bg')}') }}</style>"
        "</head><body>"
        "<p id=\"marker\">visible marker of the HTML part</p>"
        f"<script>{mark}{fetch('script')}</script>"
        f"<img src=\"{listener.url('remote-img')}\">"
        f"<img src=\"x\" onerror=\"{mark}{fetch('onerror')}\">"
        f"<svg onload=\"{mark}{fetch('svg')}\"></svg>"
        f"<a id=\"js\" href=\"javascript:{mark}{fetch('js')}\">click me</a>"
        f"<iframe src=\"{listener.url('frame')}\"></iframe>"
        f"<form id=\"f\" method=\"post\" action=\"{listener.url('form')}\"><button id=\"go\">go</button></form>"
        f"<video poster=\"{listener.url('poster')}\"></video>"
        "</body></html>"
    )
    m = plain("script in the HTML", "the text part of the HTML message", ALICE[0])
    m.add_alternative(hostile_html, subtype="html")
    send(srv, m, ALICE[0])
    ok("one message with a PDF and four hostile ones delivered by smtplib")

    # -- sign in, the mailboxes, the message, the download -------------------------------------
    b = browser.Browser()
    browser.sign_in(b, base, *ALICE)
    assert urllib.parse.urlparse(b.url).path == "/console/mail", b.url
    boxes = mail_boxes(b)
    assert "INBOX" in boxes and "Sent" in boxes, boxes
    b.get(base + boxes["INBOX"])
    subjects = row_subjects(b)
    assert subjects[0] == "script in the HTML", subjects
    assert "Quarterly report 請求書" in subjects, subjects
    assert len(subjects) == 10, subjects  # five of 2020 and five new
    b.screenshot("inbox")
    ok(f"{ALICE[0]} signs in and sees their INBOX, newest first ({len(subjects)} messages)")

    b.click("table#messages tr:nth-child(5) td.subject a")
    b.wait_for(lambda: b.has("table#headers"), "the message view")
    assert b.text("h1") == "Quarterly report 請求書", b.text("h1")
    headers = b.text("table#headers")
    assert "sender@ext.test" in headers and ALICE[0] in headers, headers
    assert "お支払いをお願いします。" in b.text("pre#text"), b.text("pre#text")
    assert b.texts("ul#attachments a.attachment") == ["report.pdf"], b.texts("ul#attachments a")
    message_url = b.url
    b.screenshot("message")
    b.click("ul#attachments a.attachment")
    saved = downloaded(b, "report.pdf")
    assert saved.read_bytes() == pdf, f"the downloaded file differs: {len(saved.read_bytes())} bytes"
    cookie = b.cookie_header()
    href = b.attr("ul#attachments a.attachment", "href")
    status, hdrs, body = fetch_with(urllib.parse.urljoin(base, href), cookie)
    assert status == 200 and body == pdf, (status, len(body))
    assert hdrs.get("content-type") == "application/octet-stream", hdrs
    assert hdrs.get("content-disposition", "").startswith('attachment; filename="report.pdf"'), hdrs
    ok(f"the message shows its headers and text; its attachment downloads in Chromium, {len(pdf)} bytes identical")

    # -- search ----------------------------------------------------------------------------------
    b.get(base + boxes["INBOX"])
    assert b.attr("details.search", "open") is None, "the search form is folded until a search is on"
    b.click("details.search summary")
    b.type("form#search input[name=subject]", "Quarterly")
    b.click("form#search button[type=submit]")
    b.wait_for(lambda: "subject=Quarterly" in b.url, "the search")
    assert row_subjects(b) == ["Quarterly report 請求書"], row_subjects(b)
    b.get(base + boxes["INBOX"] + "?text=" + urllib.parse.quote("お支払い"))
    assert row_subjects(b) == ["Quarterly report 請求書"], row_subjects(b)
    b.get(base + boxes["INBOX"] + "?from=tanaka&until=2020-06-01")
    assert sorted(row_subjects(b)) == ["weekly note 1", "zebraquartz minutes 0", "zebraquartz minutes 2"], row_subjects(b)
    tomorrow = (datetime.date.today() + datetime.timedelta(days=2)).isoformat()
    b.get(base + boxes["INBOX"] + f"?since={tomorrow}")
    assert row_subjects(b) == [] and b.has("p.empty"), row_subjects(b)
    ok("the search finds by subject, by words in the text, by sender and date, and nothing after tomorrow")

    # The search's CSV: the page's link, the archive export's columns, only what was found.
    b.get(base + boxes["INBOX"] + "?from=tanaka&until=2020-06-01")
    export = b.attr("a#export", "href")
    status, hdrs, body = fetch_with(urllib.parse.urljoin(base, export), b.cookie_header())
    assert status == 200 and hdrs.get("content-type", "").startswith("text/csv"), (status, hdrs)
    rows = list(csv.reader(io.StringIO(body.decode("utf-8"))))
    assert rows[0] == ["date", "account", "mailbox", "from", "to", "subject", "size", "message_id"], rows[0]
    assert sorted(r[5] for r in rows[1:]) == ["weekly note 1", "zebraquartz minutes 0", "zebraquartz minutes 2"], rows
    assert all(r[1] == ALICE[0] and r[2] == "INBOX" and "tanaka" in r[3].lower() for r in rows[1:]), rows
    ok(f"the search's CSV export holds its {len(rows) - 1} messages in the archive export's columns")

    # Another user asks for Alice's mailbox, message and attachment by URL.
    bob = browser.Browser()
    browser.sign_in(bob, base, *BOB)
    bob_cookie = bob.cookie_header()
    for path in (boxes["INBOX"], urllib.parse.urlparse(message_url).path, href):
        status, _, body = fetch_with(base + path, bob_cookie)
        assert status == 404 and pdf not in body, (path, status)
    ok("another user gets 404 for the same mailbox, message and attachment")

    # -- hostile messages run nothing and load nothing -------------------------------------------
    b.get(base + boxes["INBOX"])
    quiet(b, listener, "the message list", f"INBOX · tegami")
    cells = b.texts("table#messages td.subject a")
    assert any(c.startswith("<script>document.title") for c in cells), cells
    ok("the list shows the hostile subject as text and nothing ran")
    views = {}
    for subject_start in ("<script>", "script in the body", "script in a file name", "script in the HTML"):
        b.get(base + boxes["INBOX"])
        rows = b.find_all("table#messages td.subject a")
        link = next(
            e for e in rows if b._call("GET", b._s(f"/element/{e}/text")).startswith(subject_start)
        )
        b._call("POST", b._s(f"/element/{link}/click"), {})
        b.wait_for(lambda: b.has("table#headers"), "the message view")
        views[subject_start] = b.url
        title = b.text("h1") + " · tegami"
        quiet(b, listener, f"the message {subject_start!r}", title)
    b.get(views["<script>"])
    assert b.text("h1").startswith("<script>document.title"), b.text("h1")
    b.get(views["script in the body"])
    assert "<script>document.title" in b.text("pre#text"), b.text("pre#text")
    b.get(views["script in a file name"])
    name = b.text("ul#attachments a.attachment")
    assert "img src=x onerror=" in name and "/" not in name and '"' not in name, name
    status, hdrs, body = fetch_with(urllib.parse.urljoin(base, b.attr("ul#attachments a.attachment", "href")), cookie)
    assert status == 200 and hdrs.get("content-type") == "application/octet-stream", hdrs
    assert hdrs.get("content-disposition", "").startswith("attachment;"), hdrs
    assert body == f"<script>{mark}</script>".encode(), body
    quiet(b, listener, "the file-name message", b.text("h1") + " · tegami")
    ok("subject, body and attachment name holding script are shown as text: no script ran, nothing loaded")

    # The HTML part: in a sandboxed frame under its own policy, shown but inert.
    b.get(views["script in the HTML"])
    frame = b.find("iframe#html")
    assert b.attr("iframe#html", "sandbox") == "", b.attr("iframe#html", "sandbox")
    html_url = urllib.parse.urljoin(base, b.attr("iframe#html", "src"))
    status, hdrs, body = fetch_with(html_url, cookie)
    csp = hdrs.get("content-security-policy", "")
    assert status == 200 and csp.startswith("sandbox;") and "default-src 'none'" in csp and "img-src data:" in csp, (status, csp)
    assert b"http-equiv" not in body.lower(), body[:300]
    b._call("POST", b._s("/frame"), {"id": 0})  # the page has one frame: the message
    assert b.text("#marker") == "visible marker of the HTML part", "the frame does not show the HTML"
    b.click("#js")
    b.click("#go")
    time.sleep(1.0)
    inner = b.execute("return [document.title, window.name, window.__pwned === undefined];")
    assert inner == ["inner", "", True], f"inside the frame a script ran: {inner}"
    b._call("POST", b._s("/frame/parent"), {})
    b.screenshot("hostile-html")
    quiet(b, listener, "the HTML message", "script in the HTML · tegami")
    # Opened on its own, not in the frame: the policy alone keeps it inert.
    b.get(html_url)
    assert b.text("#marker") == "visible marker of the HTML part"
    b.click("#js")
    quiet(b, listener, "the HTML opened on its own", "inner")
    ok("the HTML part shows in a sandboxed frame; its <script>, onerror=, onload=, javascript: link, form, "
       "meta refresh, remote images, CSS, frame and poster ran or loaded nothing (listener: 0 requests)")

    # -- the archive: create, list, view, search, CSV ---------------------------------------------------
    r = t.cli("archive", "create", "--before", "2021-01-01", "--label", "2020")
    assert "archive 1 created" in r.out, r
    b.get(f"{base}/console/mail")
    boxes = mail_boxes(b)
    assert "Archive/2020/INBOX" in boxes, boxes
    b.get(base + boxes["Archive/2020/INBOX"])
    subjects = row_subjects(b)
    assert len(subjects) == 5 and all("minutes" in s or "weekly" in s for s in subjects), subjects
    b.get(base + boxes["Archive/2020/INBOX"] + "?subject=zebraquartz")
    assert sorted(row_subjects(b)) == [f"zebraquartz minutes {i}" for i in (0, 2, 4)], row_subjects(b)
    b.get(base + boxes["INBOX"])
    assert len(row_subjects(b)) == 5, row_subjects(b)
    ok("after `archive create --before 2021-01-01` the user's old mail is in Archive/2020/INBOX (searched in its index)")

    b.get(f"{base}/console/mail")
    b.click("a#archive-viewer")
    b.wait_for(lambda: b.has("table#hits"), "the archive viewer")
    ids = [x for x in b.texts("table#hits td.subject")]
    assert len(ids) == 5, ids
    assert not any(BOB[0] in x for x in b.texts("table#hits td")), "Bob's mail in Alice's viewer"
    b.type("form#search input[name=subject]", "zebraquartz")
    b.click("form#search button[type=submit]")
    b.wait_for(lambda: "subject=zebraquartz" in b.url, "the archive search")
    found = b.texts("table#hits td.subject")
    assert sorted(found) == [f"zebraquartz minutes {i}" for i in (0, 2, 4)], found
    b.screenshot("archive-viewer")
    export = b.attr("a#export", "href")
    status, hdrs, body = fetch_with(urllib.parse.urljoin(base, export), cookie)
    assert status == 200 and hdrs.get("content-type", "").startswith("text/csv"), (status, hdrs)
    viewer_rows = list(csv.reader(io.StringIO(body.decode())))
    b.click("a#export")
    saved = downloaded(b, "archive-1.csv")
    assert saved.read_bytes() == body, "the browser's CSV differs from the same link fetched"
    out = t.root / "export.csv"
    t.cli("archive", "export", "1", "--csv", str(out))
    cli_rows = list(csv.reader(io.StringIO(out.read_text())))
    assert viewer_rows[0] == cli_rows[0], (viewer_rows[0], cli_rows[0])
    mid = cli_rows[0].index("message_id")
    wanted = {f"<old-alice-{i}@ext.test>" for i in (0, 2, 4)}
    expected = sorted(r for r in cli_rows[1:] if r[mid] in wanted)
    assert len(expected) == 3 and sorted(viewer_rows[1:]) == expected, (viewer_rows, expected)
    b.get(urllib.parse.urljoin(base, export.replace("/export.csv", "")))
    b.click("table#hits td.subject a")
    b.wait_for(lambda: b.has("table#headers"), "the archived message")
    assert b.text("h1").startswith("zebraquartz minutes"), b.text("h1")
    assert "Old mail number" in b.text("pre#text"), b.text("pre#text")
    assert "/console/mail/-" in b.url, b.url  # an archive mailbox
    bob.get(f"{base}/console/archive")
    assert len(bob.texts("table#hits td.subject")) == 3, bob.texts("table#hits td.subject")
    status, _, body = fetch_with(f"{base}/console/archive/export.csv?id=1", bob_cookie)
    assert status == 200 and b"old-alice" not in body and body.count(b"old-bob") == 3, body
    ok("the archive viewer finds the user's archived mail (only theirs), searches it, and its CSV export is "
       "exactly `tegami archive export --csv`'s rows for those 3 messages; a hit opens in the reader")

    # -- not an administrator: 403 ----------------------------------------------------------------------
    # Every page of the administrator's menu that answers an administrator (all of them once
    # every screen is in) refuses the user.
    admin = browser.Browser()
    browser.sign_in(admin, base, *ADMIN)
    admin_cookie = admin.cookie_header()
    admin.quit()
    pages = [p for p in ADMIN_PAGES if fetch_with(base + p, admin_cookie)[0] == 200]
    assert "/console/admin/security" in pages, pages
    for path in pages:
        status, _, _ = fetch_with(base + path, cookie)
        assert status == 403, (path, status)
    b.get(base + pages[-1])
    assert "administrators" in b.text("main"), b.text("main")
    ok(f"a user who is not an administrator gets 403 on all {len(pages)} /console/admin pages an administrator opens")

    # -- the password ---------------------------------------------------------------------------------------
    other = browser.Browser()
    browser.sign_in(other, base, *ALICE)
    other_cookie = other.cookie_header()
    status, _, _ = fetch_with(f"{base}/console/mail", other_cookie)
    assert status == 200, status
    b.get(f"{base}/console/password")
    b.type("form#password input[name=current]", "not-the-password")
    b.type("form#password input[name=new]", "new-pw-2")
    b.type("form#password input[name=repeat]", "new-pw-2")
    b.click("form#password button[type=submit]")
    b.wait_for(lambda: b.has("p.error"), "the refusal")
    assert "wrong" in b.text("p.error"), b.text("p.error")
    h.imap_login(srv.imap, *ALICE).logout()
    b.type("form#password input[name=current]", ALICE[1])
    b.type("form#password input[name=new]", "new-pw-2")
    b.type("form#password input[name=repeat]", "new-pw-2")
    b.click("form#password button[type=submit]")
    b.wait_for(lambda: b.has("p#changed"), "the change")
    b.screenshot("password-changed")
    h.imap_login(srv.imap, ALICE[0], "new-pw-2").logout()
    try:
        h.imap_login(srv.imap, *ALICE)
    except Exception:
        pass
    else:
        raise AssertionError("IMAP still takes the old password")
    status, _, _ = fetch_with(f"{base}/console/mail", other_cookie)
    assert status in (302, 303), f"the other session survived the password change: {status}"
    status, _, _ = fetch_with(f"{base}/console/mail", cookie)
    assert status == 200, status
    ok("a wrong current password is refused; the change works: IMAP takes the new password, refuses the old, "
       "and the user's other console session has ended")

    # Japanese.
    ja = browser.Browser(lang="ja")
    browser.sign_in(ja, base, BOB[0], BOB[1])
    assert "メールボックス" in ja.text("h1"), ja.text("h1")
    ja.get(f"{base}/console/archive")
    assert "アーカイブ" in ja.text("h1"), ja.text("h1")
    ja.screenshot("archive-ja")
    ok("the user's pages come in Japanese with Accept-Language: ja")
    assert listener.hits == [], listener.hits


if __name__ == "__main__":
    h.main(test, timeout=400)
