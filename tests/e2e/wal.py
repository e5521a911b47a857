#!/usr/bin/env python3
"""The write-ahead log stays under its cap while readers never pause and writes continue.

Readers that overlap without pause starve SQLite's own (passive) checkpoints: the log can
only start again from its beginning when no reader uses it. Three Python sqlite3 connections
on the live tegami.db each hold a read transaction (BEGIN; SELECT ...) for 0.8 s, staggered
so that one is always open (with room for one to be late on a loaded machine), while four
SMTP senders deliver without stop.

- Control: with a cap far above the load (`[wal] cap_bytes` = 256 MiB) the log grows past
  1 MiB (within 30 s): the starvation is real.
- With `cap_bytes` = 1 MiB the log, sampled every 10 ms, never reaches the cap, the server
  logs truncating checkpoints, every delivery is accepted, and the readers' transactions
  did overlap (one was open at every sample).
- Afterwards `tegami check` passes and every message sent is stored.
- The limit, surfaced: one reader holding a single transaction pins its snapshot, so no
  checkpoint can cut the log; it outgrows a 256 KiB cap while mail keeps arriving, and
  /health says 503 "wal: ... above its cap". Once the reader commits, the log is truncated
  and /health is 200 again.
"""

import os
import sqlite3
import sys
import threading
import time
import urllib.error
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import ok  # noqa: E402

CAP = 1 << 20
RUN = 8.0
HOLD = 0.8


def load(t, srv, seconds, enough=None):
    """Senders and never-pausing readers for `seconds`, or until `enough(peak)` says the
    WAL has grown enough; returns (max WAL size, sent, reader gaps)."""
    wal = t.data / "tegami.db-wal"
    stop = threading.Event()
    sent = [0]
    errors = []
    open_readers = [0]
    lock = threading.Lock()

    def sender(n):
        try:
            i = 0
            while not stop.is_set():
                msg = f"From: s@sender.test\r\nTo: ann@example.com\r\nSubject: {n}.{i}\r\n\r\nbody {n} {i}\r\n"
                h.send(srv.smtp, "s@sender.test", ["ann@example.com"], msg)
                with lock:
                    sent[0] += 1
                i += 1
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    def reader(offset):
        db = sqlite3.connect(f"file:{t.data / 'tegami.db'}?mode=ro", uri=True, isolation_level=None, timeout=30)
        time.sleep(offset)
        try:
            while not stop.is_set():
                db.execute("BEGIN")
                db.execute("SELECT count(*) FROM messages").fetchone()
                with lock:
                    open_readers[0] += 1
                time.sleep(HOLD)
                with lock:
                    open_readers[0] -= 1
                db.execute("COMMIT")
        except Exception as e:  # noqa: BLE001
            errors.append(e)
        finally:
            db.close()

    # Three readers a third of a hold apart: one is always open, with room for one of them
    # to be late on a loaded machine.
    readers = [threading.Thread(target=reader, args=(k * HOLD / 3,), daemon=True) for k in range(3)]
    senders = [threading.Thread(target=sender, args=(n,), daemon=True) for n in range(4)]
    for th in readers + senders:
        th.start()
    time.sleep(HOLD)  # every reader running
    peak = 0
    gaps = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end and not (enough and enough(peak)):
        try:
            peak = max(peak, wal.stat().st_size)
        except FileNotFoundError:
            pass
        with lock:
            if open_readers[0] == 0:
                gaps += 1
        time.sleep(0.01)
    stop.set()
    for th in senders + readers:
        th.join(30)
    assert not errors, f"senders or readers failed: {errors[:3]}"
    return peak, sent[0], gaps


def test():
    t = h.Tegami("wal")
    t.domain("example.com")
    t.account("ann@example.com", "ann-pw")

    t.write_config("[wal]\ncap_bytes = 268435456\ncheck_interval_ms = 10\n")
    srv = t.serve()
    peak, sent_control, _ = load(t, srv, 30, enough=lambda peak: peak > CAP)
    srv.stop()
    assert peak > CAP, f"control: the WAL reached only {peak:,} bytes; the load does not starve checkpoints"
    ok(f"control (cap 256 MiB): readers that never pause let the WAL grow to {peak:,} bytes ({sent_control} deliveries)")

    t.write_config(f"[wal]\ncap_bytes = {CAP}\ncheck_interval_ms = 10\n")
    srv = t.serve()
    # The control run left a large log behind: the capped server cuts it at its first look.
    deadline = time.monotonic() + 10
    while (t.data / "tegami.db-wal").exists() and (t.data / "tegami.db-wal").stat().st_size > CAP // 2:
        assert time.monotonic() < deadline, "the server did not cut the control run's WAL"
        time.sleep(0.05)
    ok("the capped server truncated the log the control run left behind")
    peak, sent, gaps = load(t, srv, RUN)
    log = srv.log_text()
    srv.stop()
    assert sent > 50, f"only {sent} deliveries in {RUN} s"
    assert gaps < 10, f"the readers left {gaps} samples without an open transaction"
    assert peak < CAP, f"the WAL reached {peak:,} bytes, above its cap of {CAP:,}"
    assert "write-ahead log checkpointed and truncated" in log, "no truncating checkpoint logged"
    ok(f"cap {CAP:,}: the WAL peaked at {peak:,} bytes over {sent} deliveries with a reader always open")

    t.check_store("after the WAL test")
    db = sqlite3.connect(f"file:{t.data / 'tegami.db'}?mode=ro", uri=True)
    stored = db.execute("SELECT count(*) FROM messages").fetchone()[0]
    db.close()
    assert stored == sent + sent_control, f"{stored} messages stored, {sent + sent_control} sent"
    ok(f"all {stored} messages stored; tegami check passes")

    # One reader that holds a single transaction: no checkpoint may pass its snapshot, so
    # the log outgrows the cap; the server must say so, and recover once the reader ends.
    t.write_config(f"[wal]\ncap_bytes = {CAP // 4}\ncheck_interval_ms = 10\ncheckpoint_patience_ms = 200\n")
    srv = t.serve()
    reader = sqlite3.connect(f"file:{t.data / 'tegami.db'}?mode=ro", uri=True, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM messages").fetchone()
    wal = t.data / "tegami.db-wal"
    deadline = time.monotonic() + 60
    while wal.stat().st_size <= CAP // 4 or health(srv)[0] != 503:
        assert time.monotonic() < deadline, f"the WAL stayed at {wal.stat().st_size:,} bytes or /health did not turn 503"
        h.send(srv.smtp, "s@sender.test", ["ann@example.com"], "Subject: pinned\r\n\r\nbody\r\n")
    status, body = health(srv)
    assert body.startswith("wal: ") and "above its cap" in body, body
    ok(f"a reader pinning one snapshot: WAL {wal.stat().st_size:,} bytes > cap {CAP // 4:,}; /health 503: {body.strip()}")
    reader.execute("COMMIT")
    reader.close()
    deadline = time.monotonic() + 10
    while wal.stat().st_size > CAP // 4 or health(srv)[0] != 200:
        assert time.monotonic() < deadline, "the WAL did not come back under its cap after the reader ended"
        time.sleep(0.05)
    ok("once the reader ends, the next checkpoint truncates the WAL and /health is 200 again")
    srv.stop()


def health(srv):
    try:
        with urllib.request.urlopen(f"http://{h.HOST}:{srv.http}/health", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


if __name__ == "__main__":
    h.main(test, timeout=240)
