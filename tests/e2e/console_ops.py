#!/usr/bin/env python3
"""The web console's operations screens in headless Chromium: dashboard, maintenance,
diagnostics, logs and alerts.

An administrator signs in and finds the dashboard: the disk gauge with its forecast, the
WAL against its cap, the queue, the listeners (the server running), maintenance off, and
the alert that holds (a daily backup is configured and none was taken). On the maintenance
screen they preview, then set, a daily window that is in force now with a message: an
IMAP client (imaplib) is then refused with that message and the window's end, while a
user who is not an administrator sees the maintenance screen (503) with the message, the
start and the end; the administrator can still use the console. Lifting maintenance from
the screen lets IMAP in again and gives the user back their pages; maintenance set again
and then lifted by deleting the `maint` file shows as off on the screen and lets IMAP in.
A window off the ten-minute steps is refused with the reason and writes nothing.

On the diagnostics screen the doctor's findings are listed; "check the data now" runs as a
job whose page shows its result (healthy, with the number of messages checked) and whose
result log downloads byte for byte as log/maintenance_result.log; the screen then lists
the check with its result. The logs screen shows the server's recent lines filtered by
level and the history of the alerts sent.
"""

import datetime
import imaplib
import os
import re
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import browser  # noqa: E402
import harness as h  # noqa: E402
from harness import ok  # noqa: E402

ADMIN = ("admin@example.com", "admin-pw-1")
USER = ("user@example.com", "user-pw-1")
MESSAGE = "Disk swap tonight, back soon"
NOTICE = 2.0 + 8.0  # the server notices the maint file within 2 s; slack for a busy machine


def imap_attempt(port):
    """Signs in as the user over IMAP: (True, messages in INBOX) or (False, the refusal)."""
    try:
        m = imaplib.IMAP4(h.HOST, port, timeout=10)
    except (imaplib.IMAP4.error, OSError, EOFError) as e:
        return False, str(e)
    try:
        m.login(*USER)
        typ, data = m.select("INBOX", readonly=True)
        assert typ == "OK", (typ, data)
        return True, int(data[0])
    except (imaplib.IMAP4.error, OSError, EOFError) as e:
        return False, str(e)
    finally:
        try:
            m.logout()
        except Exception:
            pass


def wait_imap(port, want_in, what):
    started = time.monotonic()
    while True:
        got_in, detail = imap_attempt(port)
        if got_in == want_in:
            return time.monotonic() - started, detail
        if time.monotonic() - started > NOTICE:
            raise AssertionError(f"{what}: IMAP still {'refused' if want_in else 'served'} after {NOTICE} s: {detail!r}")
        time.sleep(0.2)


def window_around_now():
    """A 20-minute window on ten-minute steps that holds now (UTC): (start, end, since, until)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    if now.minute % 10 == 9 and now.second > 50:  # too close to the step: start the next one
        time.sleep(11)
        now = datetime.datetime.now(datetime.timezone.utc)
    since = now.replace(minute=now.minute // 10 * 10, second=0, microsecond=0)
    until = since + datetime.timedelta(minutes=20)
    end = "24:00" if until.hour == 0 and until.minute == 0 else until.strftime("%H:%M")
    return since.strftime("%H:%M"), end, since.strftime("%Y-%m-%d %H:%M"), until.strftime("%Y-%m-%d %H:%M")


def text_now(b, css):
    """The element's text, or "" while the page is being replaced (a stale or missing element)."""
    try:
        return b.text(css) if b.has(css) else ""
    except browser.WebDriverError:
        return ""


def accept_confirms(b):
    """Forms marked data-confirm ask with window.confirm; the test answers yes."""
    b.execute("window.confirm = () => true;")


def test():
    os.environ["TZ"] = "UTC"
    t = h.Tegami("console_ops")
    t.data.mkdir(parents=True)
    # A daily backup that never ran: the backup_too_old alert holds from the start.
    t.write_config('[backup]\nat = "23:00"\n[alerts]\nadmin = "admin@example.com"\ncheck_interval_secs = 1\n')
    t.domain("example.com")
    t.cli("account", "add", ADMIN[0], "--password-stdin", "--admin", stdin=ADMIN[1] + "\n")
    t.account(*USER)
    srv = t.serve()
    base = f"http://{h.HOST}:{srv.http}"
    for i in range(3):
        h.send(srv.smtp, "x@ext.test", [USER[0]], f"Subject: m{i}\r\nMessage-ID: <m{i}@ops.test>\r\n\r\nbody {i}\r\n".encode())
    got_in, count = imap_attempt(srv.imap)
    assert got_in and count == 3, f"IMAP before maintenance: {got_in} {count!r}"
    ok("server up: 3 messages delivered to the user, IMAP serves them")

    # -- the dashboard ------------------------------------------------------------------
    b = browser.Browser()
    landing = browser.sign_in(b, base, *ADMIN)
    assert landing.endswith("/console/admin"), landing
    assert b.has("#disk svg.gauge"), b.source[:2000]
    # The gauge's share agrees with the figures beside it, and with the volume itself.
    gauge = b.attr("#disk svg.gauge", "aria-label")
    figures = b.text("#disk p.figures")
    m = re.fullmatch(r"(\S+ \S+) used of (\S+ \S+), \S+ \S+ free", figures)
    assert m and re.fullmatch(r"\d+ % used", gauge), (gauge, figures)
    st = os.statvfs(t.data)
    pct = 100 * (st.f_blocks - st.f_bavail) / st.f_blocks
    assert abs(int(gauge.split()[0]) - pct) <= 2, (gauge, pct)
    forecast = b.text("#disk p.forecast")
    assert "until full" in forecast or "not growing" in forecast, forecast
    wal = b.text("#wal p.figures")
    assert re.fullmatch(r"\S+ \S+ of its cap 64\.0 MiB", wal), wal
    queue = b.text("#queue")
    assert "0 messages" in queue, queue
    assert "Maintenance is off" in b.text("#maintenance-state"), b.text("#maintenance-state")
    listeners = b.text("#listeners")
    assert re.search(r"server\s+OK\s+running \(pid \d+\)", listeners), listeners
    for name in ("SMTP", "Submission", "POP3", "IMAP", "HTTP"):
        assert re.search(rf"{name}\s+OK\s+127\.0\.0\.1:0: listening on the free port chosen at start-up", listeners), listeners
    alerts = b.text("table#alerts")
    assert "backup_too_old" in alerts, alerts
    runs = b.text("#runs")
    assert runs.count("Not run yet.") == 3, runs
    b.screenshot("dashboard")
    ok("dashboard: disk gauge with forecast, WAL against its cap, empty queue, server running, maintenance off, backup_too_old alert, no runs yet")

    # -- maintenance: a bad window is refused ------------------------------------------
    b.get(f"{base}/console/admin/maintenance")
    cookie = b.cookie_header()
    csrf = b.attr("#maint input[name=csrf]", "value")
    status, _, body = browser.http("POST", f"{base}/console/admin/maintenance", cookie=cookie,
                                   data={"csrf": csrf, "message": "x", "start": "10:05", "end": "11:00"})
    assert status == 400 and b"ten-minute steps" in body, (status, body[:500])
    assert not (t.data / "maint").exists(), "a refused window wrote the maint file"
    status, _, body = browser.http("POST", f"{base}/console/admin/maintenance", cookie=cookie,
                                   data={"csrf": csrf, "message": "two\r\n250 lines", "start": "", "end": ""})
    assert status == 400 and b"one line" in body, (status, body[:500])
    assert not (t.data / "maint").exists(), "a two-line message wrote the maint file"
    ok("a window off the ten-minute steps and a two-line message are refused (400, with the reason); nothing is written")

    # -- maintenance: preview, then set a window in force now --------------------------
    start, end, since, until = window_around_now()
    b.get(f"{base}/console/admin/maintenance")
    b.type("#maint input[name=message]", MESSAGE)
    b.select("#windows tbody tr:nth-child(1) select[name=start]", start)
    b.select("#windows tbody tr:nth-child(1) select[name=end]", end)
    b.click("#maint button[name=preview]")
    b.find("#preview", wait=60)
    assert not (t.data / "maint").exists(), "the preview wrote the maint file"
    assert b.text("#preview p.message") == MESSAGE, b.text("#preview")
    assert b.text("#preview span.start") == since and b.text("#preview span.end") == until, b.text("#preview")
    assert "Maintenance is off" in b.text("#state"), b.text("#state")
    b.screenshot("maintenance-preview")
    ok(f"preview of window {start}-{end}: users would see the message, {since} and {until}; nothing saved yet")
    # The preview keeps what was entered; saving from it sets maintenance.
    assert b.attr("#maint input[name=message]", "value") == MESSAGE
    b.click("#maint button:not([name=preview])")
    b.wait_for(lambda: "In force since" in text_now(b, "#state"), "maintenance in force on the screen")
    state = b.text("#state")
    assert f"In force since {since}, until {until}" in state and MESSAGE in state, state
    assert f"{start}-{'00:00' if end == '24:00' else end}" in b.text("#state p.windows"), b.text("#state")
    assert f"Set by {ADMIN[0]} in the web console" in state, state
    maint_file = (t.data / "maint").read_text()
    assert MESSAGE in maint_file and start in maint_file, maint_file
    log = (t.data / "log" / "maintenance.log").read_text()
    assert f"maintenance configured by {ADMIN[0]} in the web console" in log, log
    b.screenshot("maintenance-on")
    ok(f"saved: the screen says in force since {since} until {until}; the maint file and log/maintenance.log name the administrator")

    took, refusal = wait_imap(srv.imap, False, "window in force")
    assert MESSAGE in refusal and f"maintenance until {until}" in refusal, refusal
    ok(f"IMAP refused {took:.1f} s after saving: {refusal!r}")

    u = browser.Browser()
    browser.sign_in(u, base, *USER)
    u.get(f"{base}/console/admin")
    assert u.text("h1") == "Under maintenance", u.text("main")
    assert u.text(".maintenance p.message") == MESSAGE, u.text("main")
    assert u.text(".maintenance span.start") == since and u.text(".maintenance span.end") == until, u.text("main")
    u.screenshot("user-maintenance")
    status, headers, body = browser.http("GET", f"{base}/console/admin", cookie=u.cookie_header())
    assert status == 503 and "retry-after" in {k.lower() for k in headers}, (status, headers)
    ok(f"the user (not an administrator) sees the maintenance screen (503): {MESSAGE!r}, {since} to {until}")

    b.get(f"{base}/console/admin")
    assert "In force since" in b.text("#maintenance-state"), b.text("#maintenance-state")
    ok("the administrator still uses the console; the dashboard shows maintenance in force")

    # -- lifting from the screen --------------------------------------------------------
    b.get(f"{base}/console/admin/maintenance")
    accept_confirms(b)
    b.click("#off button")
    b.wait_for(lambda: "Maintenance is off" in text_now(b, "#state"), "maintenance off on the screen")
    assert not (t.data / "maint").exists()
    log = (t.data / "log" / "maintenance.log").read_text()
    assert f"maintenance lifted by {ADMIN[0]} in the web console" in log, log
    took, count = wait_imap(srv.imap, True, "after lifting from the console")
    assert count == 3, count
    status, _, _ = browser.http("GET", f"{base}/console/admin", cookie=u.cookie_header())
    assert status == 403, f"the user after maintenance: {status} (the admin page is forbidden to them again)"
    ok(f"lifted from the screen: IMAP serves the 3 messages again after {took:.1f} s; the user's maintenance screen is gone")

    # -- set until lifted, then delete the maint file by hand ---------------------------
    b.get(f"{base}/console/admin/maintenance")
    b.type("#maint input[name=message]", "Until lifted")
    b.click("#maint button:not([name=preview])")
    b.wait_for(lambda: "In force since" in text_now(b, "#state"), "maintenance until lifted")
    assert "until the administrator lifts it" in b.text("#state"), b.text("#state")
    wait_imap(srv.imap, False, "maintenance until lifted")
    (t.data / "maint").unlink()
    b.get(f"{base}/console/admin/maintenance")
    assert "Maintenance is off" in b.text("#state"), b.text("#state")
    took, _ = wait_imap(srv.imap, True, "after rm maint")
    ok(f"maintenance until lifted, then rm DIR/maint: the screen says off and IMAP serves again after {took:.1f} s")

    # -- diagnostics: doctor and the check as a job -------------------------------------
    b.get(f"{base}/console/admin/diagnostics")
    findings = b.texts("#findings tbody tr")
    assert len(findings) > 10, findings
    assert any(f.startswith("Store") for f in findings), findings
    assert any(re.match(r"Listeners\s+server\s+OK\s+running", f) for f in findings), findings
    assert "Daily" not in b.text("#schedule") and "check_at" in b.text("#schedule"), b.text("#schedule")
    b.screenshot("diagnostics")
    ok(f"diagnostics: {len(findings)} doctor findings with their hints; no daily check configured, said so")
    # The doctor walks every blob file, so the screen keeps its report a few minutes (saying
    # when it ran) and runs it again when asked: a new body shows only after that.
    def blobs_finding():
        return next(f for f in b.texts("#findings tbody tr") if re.match(r"Store\s+blobs\b", f))
    kept = (blobs_finding(), b.text("#doctor-ran"))
    h.send(srv.smtp, "x@ext.test", [USER[0]],
           b"Subject: one more\r\nMessage-ID: <more@ops.test>\r\n\r\na new body for a new blob\r\n")
    b.get(f"{base}/console/admin/diagnostics")
    assert (blobs_finding(), b.text("#doctor-ran")) == kept, "the doctor's report is kept for a while"
    b.click("#doctor-again button")
    b.wait_for(lambda: text_now(b, "#findings") and blobs_finding() != kept[0], "the doctor run again")
    ok(f"the doctor's report is kept ({kept[1]!r}) and run again on request: {kept[0]!r} became {blobs_finding()!r}")
    b.click("#check-now button")
    b.wait_for(lambda: "/console/jobs/" in b.url, "the job page")
    # The job's page reloads itself every 2 s until the result is there.
    result = b.wait_for(lambda: text_now(b, "p.result"), "the check's result", timeout=60)
    # The user's 3 messages and the alert mailed to the administrator.
    assert re.match(r"healthy \([3-9] messages, \d+ blobs checked\)", result), result
    b.screenshot("check-job")
    b.click("a.download")
    # Chromium writes a hidden temporary file first (browser.wait_download can take it for
    # the download): wait for the file by its name.
    downloaded = b.downloads / "maintenance_result.log"
    b.wait_for(lambda: downloaded.exists() and not any(p.name.endswith(".crdownload") for p in b.downloads.iterdir()),
               "the result log downloaded", timeout=30)
    on_disk = (t.data / "log" / "maintenance_result.log").read_bytes()
    assert downloaded.read_bytes() == on_disk, (downloaded.read_bytes()[:300], on_disk[:300])
    assert on_disk.startswith(b"result: " + result.encode()), (on_disk[:200], result)
    ok(f"'check the data now': the job ends with {result!r}; its log downloads ({len(on_disk)} bytes, identical to log/maintenance_result.log)")

    b.get(f"{base}/console/admin/diagnostics")
    row = b.text("#runs tr[data-log='maintenance_result.log']")
    assert result in row and "manual run" in row, row
    assert b.attr("#runs tr[data-log='maintenance_result.log'] td.ok", "class") == "ok"
    status, headers, body = browser.http("GET", f"{base}/console/admin/diagnostics/log/maintenance.log", cookie=cookie)
    assert status == 200 and b"check finished: healthy" in body, (status, body[-300:])
    status, _, _ = browser.http("GET", f"{base}/console/admin/diagnostics/log/tegami.db", cookie=cookie)
    assert status == 404, status
    status, _, _ = browser.http("GET", f"{base}/console/admin/diagnostics/log/maintenance_result.log", cookie=u.cookie_header())
    assert status == 403, status
    ok("the diagnostics screen lists the check's result with its log; maintenance.log downloads; other files and other users are refused")

    # -- logs and alerts ----------------------------------------------------------------
    b.get(f"{base}/console/admin/logs?level=info&lines=500")
    levels = set(b.execute("return [...document.querySelectorAll('#log-lines tbody tr')].map(r => r.dataset.level);"))
    assert levels and levels <= {"INFO", "WARN", "ERROR"}, levels
    lines = b.text("#log-lines")
    assert "maintenance started" in lines and "tegami is ready" in lines, lines[-2000:]
    b.get(f"{base}/console/admin/logs?level=warn&lines=500")
    levels = set(b.execute("return [...document.querySelectorAll('#log-lines tbody tr')].map(r => r.dataset.level);"))
    assert levels and levels <= {"WARN", "ERROR"}, levels
    assert "tegami is ready" not in b.text("#log-lines")
    history = b.wait_for(lambda: (b.get(f"{base}/console/admin/logs?level=warn"), b.has("#alert-history") and b.text("#alert-history"))[1],
                         "the alert in the history", timeout=10)
    assert "backup_too_old" in history and "no backup has been taken yet" in history, history
    b.screenshot("logs")
    status, _, body = browser.http("GET", f"{base}/console/admin/logs?level=loud", cookie=cookie)
    assert status == 400 and b"not a log level" in body, (status, body[:300])
    ok("logs: INFO shows the maintenance and ready lines, WARN leaves INFO out; the alert history lists backup_too_old; a bad level is refused (400)")

    # -- how long each page takes (a debug build on this small store) ---------------------
    timings = []
    for path in ("/console/admin", "/console/admin/maintenance", "/console/admin/diagnostics", "/console/admin/logs"):
        took = []
        for _ in range(5):
            started = time.monotonic()
            status, _, _ = browser.http("GET", base + path, cookie=cookie)
            took.append((time.monotonic() - started) * 1000)
            assert status == 200, (path, status)
        timings.append(f"{path} {sorted(took)[2]:.0f} ms")
    h.note("median of 5 (debug build): " + ", ".join(timings))

    # -- Japanese -------------------------------------------------------------------------
    ja = browser.Browser(lang="ja")
    browser.sign_in(ja, base, *ADMIN)
    assert "待ち受けポート" in ja.text("main") and "発生中のアラート" in ja.text("main"), ja.text("main")[:500]
    ja.get(f"{base}/console/admin/maintenance")
    assert "メンテナンスは行っていません" in ja.text("#state"), ja.text("#state")
    ja.screenshot("maintenance-ja")
    ok("the screens are Japanese with Accept-Language: ja")

    assert srv.stop() == 0
    t.check_store("after the console's operations")
    ok("tegami check passes")


if __name__ == "__main__":
    h.main(test, timeout=240)
