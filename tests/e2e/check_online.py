#!/usr/bin/env python3
"""`tegami check` beside a running server whose IMAP clients expunge and append (issue 16.8).

The finding: 3 of 9 checks run during IMAP expunges failed with "the check could not finish:
blobs/...: No such file": a blob file deleted by the server between the check listing the
directory and reading the file's size. A file expunged while the check ran could also be
named an orphan. Here an imaplib client appends, flags and expunges in a bounded loop while
`tegami check` runs again and again: every run must exit 0 and say "healthy". The blob files
are aged an hour first, so that an expunged file taken for an orphan would be reported.
"""

import os
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import ok  # noqa: E402

USER, PW = "alice@example.com", "alice-pw"
PRELOAD = 1500
CHECKS = 9


def msg(n):
    return (
        f"From: s@ext.test\r\nTo: {USER}\r\nMessage-ID: <online-{n}@check.test>\r\n"
        f"Subject: message {n}\r\n\r\nbody of message {n}\r\n" + "filler line\r\n" * (n % 5)
    ).encode()


def churn(port, stop, counts, errors):
    """Appends two messages, then flags and expunges the twenty oldest, until told to stop."""
    try:
        m = h.imap_login(port, USER, PW)
        m.select("INBOX")
        n = PRELOAD
        # Bounded, whatever happens to the checks; the preload lasts for 80 rounds.
        for _ in range(PRELOAD // 20):
            if stop.is_set():
                break
            for _ in range(2):
                typ, data = m.append("INBOX", None, None, msg(n))
                assert typ == "OK", f"APPEND: {typ} {data}"
                n += 1
            typ, data = m.store("1:20", "+FLAGS.SILENT", r"(\Deleted)")
            assert typ == "OK", f"STORE: {typ} {data}"
            typ, data = m.expunge()
            assert typ == "OK", f"EXPUNGE: {typ} {data}"
            counts["rounds"] += 1
        m.logout()
    except Exception as e:  # noqa: BLE001 - reported by the main thread
        errors.append(e)


def test():
    t = h.Tegami("check-online")
    t.domain("example.com")
    t.account(USER, PW)
    mbox = t.root / "preload.mbox"
    with open(mbox, "wb") as f:
        for n in range(PRELOAD):
            f.write(b"From s@ext.test Mon Nov 23 14:00:00 2026\n" + msg(n).replace(b"\r\n", b"\n") + b"\n")
    t.cli("import", "mbox", "--account", USER, str(mbox), timeout=120)
    hour_ago = time.time() - 3600
    for p in t.blob_files():
        os.utime(p, (hour_ago, hour_ago))
    ok(f"{PRELOAD} messages imported, their blob files aged an hour")

    srv = t.serve()
    stop, counts, errors = threading.Event(), {"rounds": 0}, []
    worker = threading.Thread(target=churn, args=(srv.imap, stop, counts, errors), daemon=True)
    worker.start()
    deadline = time.monotonic() + 30
    while counts["rounds"] == 0 and not errors and time.monotonic() < deadline:
        time.sleep(0.05)
    failed = []
    try:
        for run in range(CHECKS):
            r = t.cli("check", check=False, timeout=120)
            verdict = (r.out.splitlines() or [""])[0]
            if r.code != 0 or not verdict.startswith("result: healthy"):
                failed.append(f"run {run}: {r!r}")
            if errors:
                break
    finally:
        stop.set()
        worker.join(60)
    assert not errors, f"the IMAP client failed: {errors[0]!r}"
    assert counts["rounds"] >= 3, f"only {counts['rounds']} expunge rounds ran beside {CHECKS} checks"
    assert not failed, f"{len(failed)} of {CHECKS} checks beside expunges failed:\n" + "\n".join(failed)
    ok(f"{CHECKS} checks beside {counts['rounds']} rounds of IMAP APPEND and EXPUNGE: every one exit 0, healthy")
    srv.stop()
    t.check_store("after the server stopped")
    ok("check with the server stopped: healthy")


if __name__ == "__main__":
    h.main(test, timeout=240)
