#!/usr/bin/env python3
"""The HTTP listener: /metrics, /health and the maintenance page.

- After 5 deliveries and one RCPT to an unknown user, /metrics counts 6 SMTP sessions
  (none open, none for POP3 or IMAP) and exactly one reject, reason unknown_user.
- /metrics parses with prometheus_client's text parser (installed by this script if
  missing) and its values match the state: 5 deliveries counted, messages and blob bytes
  as in the store, WAL size and cap, free space of the data volume as statvfs says, no
  maintenance, mail accepted, the last check's result (none, then healthy after
  `tegami check`), an alert state per condition.
- /health answers 200 "ok"; / answers 200.
- `tegami maint on --window <now>` turns every other path into 503 with Retry-After (the
  seconds to the window's end) and an HTML page with the message, start and end; /health
  says 503 with the maintenance reason, /metrics keeps working and shows tegami_maintenance
  1, and SMTP's 421 is counted as a maintenance reject. `maint off` brings 200 back.
- With `[disk] min_free_bytes` above the free space, /health is 503 naming the disk, and
  /metrics shows mail not accepted and the delivery_refused_no_space alert active.
"""

import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import ok  # noqa: E402


def prometheus_parser():
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "prometheus_client"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            r = subprocess.run(cmd + ["--user", "--break-system-packages"], capture_output=True, text=True)
        assert r.returncode == 0, f"cannot install prometheus_client: {r.stderr}"
        import site
        import importlib

        sys.path.append(site.getusersitepackages())
        importlib.invalidate_caches()
        from prometheus_client.parser import text_string_to_metric_families
    return text_string_to_metric_families


def get(port, path):
    try:
        with urllib.request.urlopen(f"http://{h.HOST}:{port}{path}", timeout=10) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def scrape(port, parse):
    status, headers, text = get(port, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain"), (status, headers)
    values = {}
    for family in parse(text):
        for s in family.samples:
            key = s.name + "".join(f"|{k}={v}" for k, v in sorted(s.labels.items()))
            values[key] = s.value
    return values, text


def wait_for(what, predicate, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test():
    parse = prometheus_parser()
    t = h.Tegami("metrics")
    t.write_config("[alerts]\ncheck_interval_secs = 1\n")
    t.domain("example.com")
    t.account("ann@example.com", "ann-pw")
    srv = t.serve()
    port = srv.http
    for i in range(5):
        h.send(srv.smtp, "s@sender.test", ["ann@example.com"], f"Subject: {i}\r\n\r\nbody {i}\r\n")

    s = h.smtp_client(srv.smtp)
    s.mail("s@sender.test")
    code, _ = s.rcpt("nobody@example.com")
    assert code == 550, code
    s.quit()

    m = wait_for("sessions to close", lambda: (lambda m: m if m["tegami_sessions_open|protocol=smtp"] == 0 else None)(scrape(port, parse)[0]))
    assert m["tegami_sessions_total|protocol=smtp"] == 6, m
    assert m["tegami_sessions_total|protocol=pop3"] == 0 and m["tegami_sessions_total|protocol=imap"] == 0, m
    assert m["tegami_smtp_rejects_total|reason=unknown_user"] == 1, m
    assert sum(v for k, v in m.items() if k.startswith("tegami_smtp_rejects_total")) == 1, m
    ok("sessions by protocol (6 SMTP, none open) and rejects by reason (1 unknown_user) match")
    assert m["tegami_deliveries_total"] == 5, m
    assert m["tegami_messages"] == 5, m
    blobs = sum(p.stat().st_size for p in t.blob_files())
    assert m["tegami_blob_bytes"] == blobs, (m["tegami_blob_bytes"], blobs)
    assert m["tegami_bytes_written_total"] == blobs, m
    assert m["tegami_wal_cap_bytes"] == 64 << 20 and 0 <= m["tegami_wal_bytes"] < 64 << 20, m
    st = os.statvfs(t.data)
    free = st.f_bavail * st.f_frsize
    assert abs(m["tegami_volume_free_bytes|volume=data"] - free) < max(free * 0.01, 10 << 20), (m, free)
    assert m["tegami_volume_size_bytes|volume=data"] == st.f_blocks * st.f_frsize, m
    assert m["tegami_maintenance"] == 0 and m["tegami_accepting_mail"] == 1, m
    assert m["tegami_check_last_result|result=none"] == 1, m
    ok(f"/metrics parses with prometheus_client ({len(m)} samples); deliveries, messages, blob bytes, WAL and free space match")

    wait_for("alert states", lambda: "tegami_alert_active|alert=growth_above_baseline" in scrape(port, parse)[0])
    m, _ = scrape(port, parse)
    assert all(v == 0 for k, v in m.items() if k.startswith("tegami_alert_active") and "free_space" not in k), m
    ok("every alert condition has a state in /metrics, none active")

    t.cli("check")
    m = wait_for("the check result", lambda: (lambda m: m if m["tegami_check_last_result|result=healthy"] == 1 else None)(scrape(port, parse)[0]))
    assert m["tegami_check_last_result|result=none"] == 0, m
    ok("after `tegami check`, tegami_check_last_result{result=healthy} is 1")

    status, _, body = get(port, "/health")
    assert status == 200 and body == "ok\n", (status, body)
    status, _, body = get(port, "/")
    assert status == 200 and "tegami" in body, (status, body)
    ok("/health is 200 ok, / is 200")

    now = time.localtime()
    start = now.tm_hour * 60 + now.tm_min // 10 * 10
    end = (start + 30) % 1440
    window = f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"
    t.cli("maint", "on", "--message", "Disk <swap> & more", "--window", window)
    status, headers, body = wait_for("the maintenance page", lambda: (lambda r: r if r[0] == 503 else None)(get(port, "/")))
    retry = int(headers["Retry-After"])
    assert 0 < retry <= 30 * 60, headers
    assert "Disk &lt;swap&gt; &amp; more" in body and "text/html" in headers["Content-Type"], body
    until = re.search(r'class="end">(\d{4}-\d\d-\d\d \d\d:\d\d)<', body)
    since = re.search(r'class="start">(\d{4}-\d\d-\d\d \d\d:\d\d)<', body)
    assert until and until.group(1).endswith(f"{end // 60:02d}:{end % 60:02d}"), body
    assert since and since.group(1).endswith(f"{start // 60:02d}:{start % 60:02d}"), body
    status2, _, _ = get(port, "/anything/else")
    assert status2 == 503
    ok(f"maintenance {window}: 503, Retry-After {retry} s, page with the message, start {since.group(1)} and end {until.group(1)}")
    status, _, body = get(port, "/health")
    assert status == 503 and body.startswith("maintenance: Disk <swap> & more"), (status, body)
    m, _ = scrape(port, parse)
    assert m["tegami_maintenance"] == 1 and m["tegami_accepting_mail"] == 0, m
    try:
        s = h.smtplib.SMTP(h.HOST, srv.smtp, timeout=10)
        code = s.ehlo()[0]
        s.close()
    except h.smtplib.SMTPServerDisconnected:
        code = 421
    except h.smtplib.SMTPConnectError as e:
        code = e.smtp_code
    assert code == 421, code
    m = wait_for("the maintenance reject", lambda: (lambda m: m if m["tegami_smtp_rejects_total|reason=maintenance"] >= 1 else None)(scrape(port, parse)[0]))
    ok("during maintenance /health is 503 with the reason and /metrics works, showing it (and SMTP's 421 counted as a maintenance reject)")

    t.cli("maint", "off")
    wait_for("maintenance lifted", lambda: get(port, "/")[0] == 200)
    assert get(port, "/health")[0] == 200
    ok("maint off: / and /health are 200 again")
    srv.stop()

    t.write_config("[alerts]\ncheck_interval_secs = 1\nfree_percent_levels = []\n[disk]\nmin_free_bytes = 1152921504606846976\n")
    srv = t.serve()
    port = srv.http
    status, _, body = get(port, "/health")
    assert status == 503 and body.startswith("disk: ") and "min_free" in body, (status, body)
    m = wait_for("the disk alert", lambda: (lambda m: m if m.get("tegami_alert_active|alert=delivery_refused_no_space") == 1 else None)(scrape(port, parse)[0]))
    assert m["tegami_accepting_mail"] == 0, m
    ok("below min_free: /health 503 naming the disk, accepting_mail 0, delivery_refused_no_space alert active")
    srv.stop()


if __name__ == "__main__":
    h.main(test, timeout=240)
