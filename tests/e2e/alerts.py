#!/usr/bin/env python3
"""Alerts by mail to the admin address and by webhook, not repeated within their interval.

A local HTTP listener run by this test is the webhook. After 800 kB of earlier mail, the
store's size history is seeded (server stopped) with eight days growing by 100,000 bytes a day, yesterday's size being
today's, so the baseline is 100 kB/day and the alert fires above 120 kB (+20 %).

- With no new mail, no growth alert comes (3 s of checks every second).
- 40 messages of 10 kB (400 kB) make today's growth 4× the baseline: the webhook receives
  one JSON alert `growth_above_baseline`, and admin@example.com one mail
  "[tegami alert] growth_above_baseline" (read over POP3), and the server log has it.
- More mail and 4 s more of checks: neither the webhook nor the mailbox gets it again
  (interval 3600 s).
- With `[disk] min_free_bytes` above the free space, SMTP defers ordinary mail (452), yet
  the `delivery_refused_no_space` alert reaches the admin's mailbox: alerts pass the disk
  guard's min_free.
"""

import http.server
import json
import os
import sqlite3
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import ok  # noqa: E402

posts = []


class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        posts.append((self.path, json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def admin_subjects(srv):
    msgs = h.pop3_fetch_all(srv.pop3, "admin@example.com", "admin-pw")
    out = []
    for _n, _uid, raw in msgs:
        text = raw.decode(errors="replace")
        out += [line[len("Subject: "):].strip() for line in text.splitlines() if line.startswith("Subject: ")]
    return out


def store_size(data):
    db = sqlite3.connect(f"file:{data / 'tegami.db'}?mode=ro", uri=True)
    try:
        page = db.execute("PRAGMA page_size").fetchone()[0]
        used = db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]
        blobs = db.execute("SELECT coalesce(sum(size), 0) FROM blobs").fetchone()[0]
    finally:
        db.close()
    return used * page + blobs


def wait_for(what, predicate, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def test():
    h.clear_of_utc_midnight()  # the seeded days count back from the script's "today"
    hook = http.server.ThreadingHTTPServer((h.HOST, 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    url = f"http://{h.HOST}:{hook.server_address[1]}/tegami-hook"

    t = h.Tegami("alerts")
    base = (
        "[stats]\nflush_interval_secs = 1\n"
        f'[alerts]\nadmin = "admin@example.com"\nwebhook = "{url}"\n'
        "interval_secs = 3600\ncheck_interval_secs = 1\ngrowth_percent = 20\nbaseline_days = 7\n"
        "free_percent_levels = []\n"
    )
    t.write_config(base)
    t.domain("example.com")
    t.account("admin@example.com", "admin-pw")
    t.account("ann@example.com", "ann-pw")

    # Mail from before "today", so the seeded history starts above zero.
    srv = t.serve()
    for i in range(80):
        h.send(srv.smtp, "s@sender.test", ["ann@example.com"], f"Subject: old {i}\r\n\r\n{'o' * 10_000}\r\n")
    srv.stop()
    today = int(time.time()) // 86400
    size = store_size(t.data)
    assert size > 700_000, size
    db = sqlite3.connect(t.data / "tegami.db")
    with db:
        db.execute("DELETE FROM growth_daily")
        for back in range(1, 9):
            db.execute(
                "INSERT INTO growth_daily (day, database_bytes, blob_bytes, messages) VALUES (?, ?, 0, 0)",
                (today - back, size - (back - 1) * 100_000),
            )
    db.close()

    srv = t.serve()
    time.sleep(3)
    assert not [p for p in posts if p[1]["alert"] == "growth_above_baseline"], posts
    assert "growth_above_baseline" not in srv.log_text(), srv.log_text()[-2000:]
    ok("no growth alert while the store grows as usual")

    body = "x" * 10_000
    for i in range(40):
        h.send(srv.smtp, "s@sender.test", ["ann@example.com"], f"Subject: load {i}\r\n\r\n{body}\r\n")
    post = wait_for("the webhook", lambda: [p for p in posts if p[1]["alert"] == "growth_above_baseline"])
    path, alert = post[0]
    assert path == "/tegami-hook" and "above its baseline" in alert["message"], post
    assert "above its baseline of 97.7 KiB per day" in alert["message"], alert
    ok(f"webhook got the growth alert: {alert['message']}")
    subjects = wait_for("the alert mail", lambda: admin_subjects(srv))
    assert subjects == ["[tegami alert] growth_above_baseline"], subjects
    ok("admin@example.com got the alert by mail")
    assert "alert=growth_above_baseline" in srv.log_text() or "growth_above_baseline" in srv.log_text()
    ok("the alert is in the server log")

    for i in range(10):
        h.send(srv.smtp, "s@sender.test", ["ann@example.com"], f"Subject: more {i}\r\n\r\n{body}\r\n")
    time.sleep(4)
    assert len([p for p in posts if p[1]["alert"] == "growth_above_baseline"]) == 1, posts
    assert admin_subjects(srv) == ["[tegami alert] growth_above_baseline"]
    ok("not repeated within its interval (4 s more of checks, more growth): one post, one mail")
    srv.stop()

    t.write_config(base + "[disk]\nmin_free_bytes = 1152921504606846976\n")
    srv = t.serve()
    s = h.smtp_client(srv.smtp)
    code, _ = s.mail("s@sender.test")
    if code == 250:
        code, _ = s.rcpt("ann@example.com")
    s.close()
    assert code == 452, f"ordinary mail should be deferred below min_free, got {code}"
    subjects = wait_for("the space alert", lambda: [x for x in admin_subjects(srv) if "delivery_refused_no_space" in x])
    ok(f"below min_free ordinary mail gets 452, the admin still gets {subjects[0]!r}")
    srv.stop()
    hook.shutdown()


if __name__ == "__main__":
    h.main(test, timeout=240)
