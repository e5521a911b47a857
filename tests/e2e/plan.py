#!/usr/bin/env python3
"""`tegami plan`: the capacity planner.

- The Exchange 2010 model with the seed article's inputs prints every intermediate figure
  and arrives at the article's: 30 logs at 75 KB, factor 1.27, 39 logs per mailbox per day,
  9,750 per database, 28.56 GB for three days of failed truncation, 2.5 mailboxes and
  13,824 move logs per day (the article misprints 13,888), 94.50 GB for seven days, and
  123 / 148 / 185 GB.
- The tegami model from flags alone, on a data directory that does not exist, works and
  leaves no data directory behind.
- The tegami model against a known load: 3 accounts receive 20 messages of 50 KB each over
  SMTP. Its estimate from the flags (`--avg-message-kb 50`, before any mail) and its figure
  from the store's measured costs both match, within 10 % and 2 % respectively, the bytes
  the test finds on disk afterwards (blob files plus the database's used pages). With no
  flags at all, the mailboxes and the messages per day come from the store and its usage
  statistics and give the same figure.
"""

import os
import re
import sqlite3
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import ok  # noqa: E402

ACCOUNTS = ["ann@example.com", "ben@example.com", "cat@example.com"]
PER_ACCOUNT = 20
KB = 50


def figure(out, label):
    """The exact byte count printed for a step of the tegami model."""
    m = re.search(rf"^\s*\d+\. {re.escape(label)}\s.*\(([\d,]+) bytes\)\s*$", out, re.M)
    assert m, f"no figure for {label!r} in:\n{out}"
    return int(m.group(1).replace(",", ""))


def exchange(t):
    r = t.cli(
        "plan", "--model", "exchange2010", "--mailboxes", "250", "--messages-per-day", "150",
        "--avg-message-kb", "100", "--moves-per-day-percent", "1", "--avg-mailbox-gb", "5.4",
        "--truncation-failure-days", "3", "--move-days", "7", "--overhead", "1.2",
        "--free-percent", "20",
    )
    print(r.out)
    expect = [
        ("logs/mailbox/day at 75 KB", "= 30"),
        ("message size factor", "= 1.27"),
        ("logs/mailbox/day ", "= 39"),
        ("logs/database/day", "39 × 250 mailboxes = 9,750"),
        ("truncation failure", "9,750 logs × 3 days / 1,024 = 28.56 GB"),
        ("mailboxes moved/day", "= 2.5"),
        ("move logs/day", "2.5 × 5.4 GB × 1,024 = 13,824"),
        ("moves ", "13,824 logs × 7 days / 1,024 = 94.50 GB"),
        ("log space", "about 123 GB"),
        ("with overhead", "× 1.2 = 147.68 GB, about 148 GB"),
        ("log volume (LUN)", "/ (1 − 0.2) = 184.60 GB, about 185 GB"),
    ]
    lines = r.out.splitlines()
    for label, text in expect:
        hits = [line for line in lines if re.match(rf"\s*\d+\. {re.escape(label.strip())}\s{{2,}}", line)]
        assert hits and text in hits[0], f"step {label!r}: expected {text!r} in {hits}"
    ok("exchange2010: every intermediate figure and 39 / 9,750 / 28.56 / 13,824 / 94.50 / 123 / 148 / 185")
    r = t.cli("plan", "--model", "exchange2010", "--mailboxes", "250", check=False)
    assert r.code != 0 and "--messages-per-day" in r.err, r
    ok("exchange2010 without its inputs says which flags it needs")


def on_disk(data):
    blobs = sum(p.stat().st_size for p in (data / "blobs").rglob("*") if p.is_file() and re.fullmatch(r"[0-9a-f]{64}", p.name))
    db = sqlite3.connect(f"file:{data / 'tegami.db'}?mode=ro", uri=True)
    try:
        size = db.execute("PRAGMA page_size").fetchone()[0]
        used = db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]
    finally:
        db.close()
    return blobs, used * size


def tegami_model():
    t = h.Tegami("plan")
    args = ("plan", "--mailboxes", "3", "--messages-per-day", str(PER_ACCOUNT), "--days", "1",
            "--overhead", "1", "--free-percent", "0")
    r = t.cli(*args, "--avg-message-kb", str(KB))
    print(r.out)
    assert "estimated from the flags" in r.out, r.out
    estimate = figure(r.out, "mail/day")
    assert not t.data.exists(), "plan created a data directory"
    ok(f"tegami model from flags: {estimate:,} bytes/day for 3 × {PER_ACCOUNT} × {KB} KB; no data directory created")

    t.domain("example.com")
    for a in ACCOUNTS:
        t.account(a, "pw-" + a)
    base_blobs, base_db = on_disk(t.data)
    srv = t.serve()
    for a in ACCOUNTS:
        for i in range(PER_ACCOUNT):
            head = f"From: s@sender.test\r\nTo: {a}\r\nSubject: load {i}\r\nMessage-ID: <{a}.{i}@test>\r\n\r\n"
            body_len = KB * 1024 - len(head)
            line = (f"{a} {i} " * 20)[:76] + "\r\n"
            body = (line * (body_len // len(line) + 1))[:body_len - 2] + "\r\n"
            msg = (head + body).encode()
            assert len(msg) == KB * 1024
            h.send(srv.smtp, "s@sender.test", [a], msg)
    srv.stop()
    blobs, db = on_disk(t.data)
    written = (blobs - base_blobs) + (db - base_db)
    n = len(ACCOUNTS) * PER_ACCOUNT
    ok(f"delivered {n} messages of {KB} KB: {blobs - base_blobs:,} bytes of blobs and {db - base_db:,} of metadata written")

    err = abs(estimate - written) / written
    assert err < 0.10, f"flags estimate {estimate:,} vs written {written:,}: {err:.1%} off"
    ok(f"the estimate from the flags is within 10 % of what was written ({err:.2%})")

    r = t.cli(*args)
    print(r.out)
    assert "measured on this store" in r.out and f"{n} messages" in r.out, r.out
    measured = figure(r.out, "mail/day")
    total = blobs + db
    err = abs(measured - total) / total
    assert err < 0.02, f"measured plan {measured:,} vs on disk {total:,}: {err:.1%} off"
    ok(f"the plan from measured costs is within 2 % of the bytes on disk ({err:.2%})")
    r = t.cli("plan", "--days", "1", "--overhead", "1", "--free-percent", "0")
    print(r.out)
    assert f"measured from the usage statistics: {PER_ACCOUNT}" in r.out, r.out
    assert figure(r.out, "mail/day") == measured, r.out
    ok(f"with no flags at all: 3 mailboxes and {PER_ACCOUNT} messages/day measured from the statistics, same figure")
    per_msg = figure(r.out, "blob bytes/message")
    assert KB * 1024 < per_msg < KB * 1024 + 1024, per_msg
    ok(f"measured blob bytes per message {per_msg:,} = {KB} KB + trace headers")


def test():
    exchange(h.Tegami("plan-x"))
    tegami_model()


if __name__ == "__main__":
    h.main(test, timeout=240)
