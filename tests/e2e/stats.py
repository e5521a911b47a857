#!/usr/bin/env python3
"""Usage statistics: `tegami stats usage|disk|forecast` after a known load.

- ann receives 12 messages, ben 6, cat 2 (10 KB each, all different); cat then runs POP3
  commands. With `[stats] flush_interval_secs = 1`, `stats usage --top 2` (server running)
  ranks ann then ben by bytes written, `--by commands` puts cat first, and for every
  account the ten-minute samples add up to what the store holds: messages, bytes in, and
  bytes written equal to the blob files of its messages.
- The text output shows the same ranking, sample lines included.
- `stats disk` names every part (database, wal, blobs, archives, backups, logs), the blob
  bytes matching the files on disk.
- `stats forecast` with no history says so; with ten days of sizes written into the
  history (store stopped), it reports the 7-day growth rate computed by hand and the
  days until `min_free`.
"""

import json
import os
import re
import sqlite3
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import ok  # noqa: E402

LOAD = {"ann@example.com": 12, "ben@example.com": 6, "cat@example.com": 2}


def message(to, i):
    head = f"From: s@sender.test\r\nTo: {to}\r\nSubject: {i}\r\n\r\n"
    return (head + (f"{to} line {i} " * 800)[: 10240 - len(head) - 2] + "\r\n").encode()


def db_query(t, sql, *args):
    db = sqlite3.connect(f"file:{t.data / 'tegami.db'}?mode=ro", uri=True)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def test():
    h.clear_of_utc_midnight()  # "no growth measured yet" holds within one day
    t = h.Tegami("stats")
    t.write_config("[stats]\nflush_interval_secs = 1\n")
    t.domain("example.com")
    for a in LOAD:
        t.account(a, "pw-" + a)
    srv = t.serve()
    for a, n in LOAD.items():
        for i in range(n):
            h.send(srv.smtp, "s@sender.test", [a], message(a, i))
    p = h.pop3_login(srv.pop3, "cat@example.com", "pw-cat@example.com")
    for _ in range(30):
        p.noop()
    p.stat()
    p.retr(1)
    p.quit()
    # The usage figures reach the store when the server flushes them (every second); on a
    # busy machine a flush can be late, so wait for all of them rather than a fixed time.
    def flushed():
        usage = json.loads(t.cli("stats", "usage", "--top", "10", "--json").out)
        totals = {u["account"]: u["total"] for u in usage}
        return (all(totals.get(a, {}).get("messages_in") == n for a, n in LOAD.items())
                and totals["cat@example.com"]["commands"] >= 32
                and totals["cat@example.com"]["messages_out"] == 1)

    deadline = time.monotonic() + 60
    while not flushed():
        assert time.monotonic() < deadline, "the usage figures were not flushed within 60 s"
        time.sleep(0.5)

    r = t.cli("stats", "usage", "--top", "2", "--json")
    ranked = json.loads(r.out)
    assert [x["account"] for x in ranked] == ["ann@example.com", "ben@example.com"], r.out
    ok("stats usage --top 2 ranks ann (12 messages) then ben (6) by bytes written")

    full = json.loads(t.cli("stats", "usage", "--top", "10", "--json").out)
    assert len(full) == 3, full
    for acc in full:
        a = acc["account"]
        rows = db_query(
            t,
            "SELECT count(*), coalesce(sum(m.size), 0) FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id "
            "JOIN accounts a ON a.id = b.account_id WHERE a.address = ?",
            a,
        )
        count, size = rows[0]
        hashes = db_query(
            t,
            "SELECT lower(hex(m.blob_hash)) FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id "
            "JOIN accounts a ON a.id = b.account_id WHERE a.address = ?",
            a,
        )
        files = sum((t.data / "blobs" / x[:2] / x).stat().st_size for (x,) in hashes)
        for key in ("messages_in", "bytes_in", "write_bytes", "commands"):
            assert acc["total"][key] == sum(s[key] for s in acc["samples"]), (a, key, acc)
        assert acc["total"]["messages_in"] == count == LOAD[a], (a, acc["total"], count)
        assert acc["total"]["bytes_in"] == size, (a, acc["total"], size)
        assert acc["total"]["write_bytes"] == files, (a, acc["total"], files)
        assert all(s["start"] % 600 == 0 for s in acc["samples"]), acc
    ok("per account, the samples add up to the messages, bytes and blob files stored")

    by_cmd = json.loads(t.cli("stats", "usage", "--top", "1", "--by", "commands", "--json").out)
    cat = by_cmd[0]
    assert cat["account"] == "cat@example.com" and cat["total"]["commands"] >= 32, by_cmd
    assert cat["total"]["messages_out"] == 1 and cat["total"]["bytes_out"] > 10240, by_cmd
    ok(f"--by commands puts cat first ({cat['total']['commands']} POP3 commands, one RETR counted as sent)")

    text = t.cli("stats", "usage", "--top", "3").out
    order = re.findall(r"^\s*\d+\. (\S+):", text, re.M)
    assert order == ["ann@example.com", "ben@example.com", "cat@example.com"], text
    # Ann's 12 may straddle a ten-minute sample boundary: her sample lines add up to 12.
    ann = re.search(r"^\s*1\. ann@example\.com:.*?(?=^\s*2\. )", text, re.M | re.S)
    assert ann, text
    samples = [int(n) for n in re.findall(r"^\s+\d\d:\d\d\s+(\d+) messages in", ann.group(0), re.M)]
    assert samples and sum(samples) == 12, text
    ok("the text output ranks the same way, with a line per sample")

    disk = t.cli("stats", "disk").out
    print(disk)
    for part in ("database", "wal", "blobs", "archives", "backups", "logs"):
        assert re.search(rf"^{part}\s+\d+ bytes", disk, re.M), (part, disk)
    blob_files = sum(p.stat().st_size for p in t.blob_files())
    assert re.search(rf"^blobs\s+{blob_files} bytes", disk, re.M), (blob_files, disk)
    ok("stats disk lists every part; blobs match the files on disk")

    f = t.cli("stats", "forecast").out
    assert "no growth measured yet" in f, f
    ok("stats forecast without history says so")
    srv.stop()

    today = db_query(t, "SELECT max(day) FROM growth_daily")[0][0]
    assert today is not None, "the server recorded no size for today"
    db = sqlite3.connect(t.data / "tegami.db")
    with db:
        db.execute("DELETE FROM growth_daily WHERE day < ?", (today,))
        cur = db.execute("SELECT database_bytes + blob_bytes FROM growth_daily WHERE day = ?", (today,)).fetchone()[0]
        db.execute("UPDATE growth_daily SET database_bytes = ?, blob_bytes = 0 WHERE day = ?", (cur + 10_000_000, today))
        for back in range(1, 11):
            db.execute(
                "INSERT INTO growth_daily (day, database_bytes, blob_bytes, messages) VALUES (?, ?, 0, 0)",
                (today - back, cur + (10 - back) * 1_000_000),
            )
    db.close()
    f = t.cli("stats", "forecast").out
    print(f)
    assert "growth over the last 7 days: 1000000 bytes per day" in f, f
    m = re.search(r"^min_free \(new mail deferred\) \((\d+) bytes\): in ([\d.]+) days", f, re.M)
    assert m, f
    free = int(re.search(r"free on the data volume: (\d+) bytes", f).group(1))
    expect = (free - int(m.group(1))) / 1_000_000
    assert abs(float(m.group(2)) - expect) < 0.2, (m.group(2), expect)
    ok(f"stats forecast: 1 MB/day measured, min_free crossed in {m.group(2)} days")


if __name__ == "__main__":
    h.main(test, timeout=240)
