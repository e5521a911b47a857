#!/usr/bin/env python3
"""What a phone pays to learn what changed in a big mailbox while it was away: a QRESYNC
resync (RFC 7162) against fetching every flag again.

Imports N small messages into one INBOX (`tegami import mbox`, the fast path), starts
`tegami serve` (default durability), and lets a client remember UIDVALIDITY and
HIGHESTMODSEQ. Another session then makes 10 changes: \\Seen on 8 messages spread over the
mailbox and 2 expunged. Then, each in a fresh session and repeated --runs times:
(a) `SELECT INBOX (QRESYNC (uidvalidity modseq))` after `ENABLE QRESYNC`, which answers
with the VANISHED (EARLIER) range and the changed messages' FETCH FLAGS; (b) what a client
without it must do: `SELECT INBOX` and `UID FETCH 1:* (FLAGS)`. Counts the bytes the server
sent for each and times them (median), checks that (a) names exactly the 8 changed UIDs and
the 2 expunged ones, and writes bench/results/qresync-<timestamp>.json. See bench/README.md.
"""

import argparse
import datetime
import os
import random
import re
import socket
import statistics
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
import harness as h  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
import benchlib  # noqa: E402

ACCOUNT = "bench@example.com"
PASSWORD = "bench-password"


class Session:
    """One IMAP connection that counts every byte the server sends."""

    def __init__(self, port):
        self.sock = socket.create_connection((h.HOST, port), timeout=600)
        self.buf = b""
        self.received = 0
        self.n = 0
        self.line()

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self.received += len(chunk)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def cmd(self, text):
        """Sends a command; returns (tagged line, untagged lines). No literals expected."""
        self.n += 1
        tag = f"q{self.n}".encode()
        self.sock.sendall(tag + b" " + text.encode() + b"\r\n")
        untagged = []
        while True:
            line = self.line()
            if line.startswith(tag + b" "):
                assert line.split()[1] == b"OK", f"{text}: {line!r}"
                return line, untagged
            untagged.append(line)

    def close(self):
        try:
            self.cmd("LOGOUT")
        except (OSError, AssertionError, ConnectionError):
            pass
        self.sock.close()


def login(port):
    s = Session(port)
    s.cmd(f'LOGIN "{ACCOUNT}" "{PASSWORD}"')
    return s


def mbox(path, n):
    with open(path, "wb") as f:
        for i in range(n):
            f.write(b"From sender@example.org Mon Dec  7 00:00:00 2026\n"
                    + f"From: sender@example.org\nTo: {ACCOUNT}\nSubject: message {i}\n"
                      f"Message-ID: <qr-{i}@bench.test>\n\nbody of message {i}\n\n".encode())


def timed(port, commands):
    """Logs in, then times `commands` in order; returns (seconds, bytes received, untagged)."""
    s = login(port)
    before = s.received
    t0 = time.perf_counter()
    untagged = []
    for c in commands:
        untagged += s.cmd(c)[1]
    secs = time.perf_counter() - t0
    got = s.received - before
    s.close()
    return secs, got, untagged


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.environ.get("TEGAMI_BIN") or str(REPO / "target" / "release" / "tegami"),
                    help="tegami binary (default: $TEGAMI_BIN or target/release/tegami)")
    ap.add_argument("-n", "--messages", type=int, default=100_000, help="messages in INBOX (default 100000)")
    ap.add_argument("--runs", type=int, default=5, help="runs of each resync (default 5)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results"), help="directory for the JSON result")
    args = ap.parse_args()
    binary = Path(args.bin).resolve()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise SystemExit(f"no tegami binary at {binary}: run `cargo build --release -p tegami` or pass --bin")
    os.environ["TEGAMI_BIN"] = str(binary)
    n = args.messages

    t = h.Tegami("qresync-bench")
    try:
        t.domain("example.com")
        t.account(ACCOUNT, PASSWORD)
        path = t.root / "in.mbox"
        mbox(path, n)
        t0 = time.perf_counter()
        t.cli("import", "mbox", str(path), "--account", ACCOUNT, timeout=3600)
        print(f"imported {n} messages in {time.perf_counter() - t0:.1f} s", flush=True)
        srv = t.serve(imap=True)

        s = login(srv.imap)
        s.cmd("ENABLE QRESYNC")
        _, untagged = s.cmd("SELECT INBOX")
        text = b"\n".join(untagged)
        validity = int(re.search(rb"UIDVALIDITY (\d+)", text).group(1))
        modseq = int(re.search(rb"HIGHESTMODSEQ (\d+)", text).group(1))
        assert f"* {n} EXISTS".encode() in untagged, untagged[:5]
        s.close()

        rnd = random.Random(7)
        uids = rnd.sample(range(1, n + 1), 10)
        seen, gone = sorted(uids[:8]), sorted(uids[8:])
        c = login(srv.imap)
        c.cmd("SELECT INBOX")
        c.cmd(f"UID STORE {','.join(map(str, seen))} +FLAGS (\\Seen)")
        c.cmd(f"UID STORE {','.join(map(str, gone))} +FLAGS (\\Deleted)")
        c.cmd(f"UID EXPUNGE {','.join(map(str, gone))}")
        c.close()

        qresync, full = [], []
        for _ in range(args.runs):
            secs, got, untagged = timed(srv.imap, ["ENABLE QRESYNC", f"SELECT INBOX (QRESYNC ({validity} {modseq}))"])
            fetched = sorted(int(m.group(1)) for line in untagged for m in [re.search(rb"UID (\d+)", line)]
                             if m and b" FETCH " in line)
            vanished = [line for line in untagged if line.startswith(b"* VANISHED (EARLIER)")]
            assert fetched == seen, f"QRESYNC named {fetched}, wanted {seen}"
            assert len(vanished) == 1 and all(str(u).encode() in vanished[0] for u in gone), vanished
            qresync.append((secs, got))
            secs, got, untagged = timed(srv.imap, ["SELECT INBOX", "UID FETCH 1:* (FLAGS)"])
            count = sum(1 for line in untagged if b" FETCH " in line)
            assert count == n - 2, f"UID FETCH 1:* answered {count} messages, wanted {n - 2}"
            full.append((secs, got))

        def summary(runs):
            return {"median_ms": round(statistics.median(r[0] for r in runs) * 1000, 2),
                    "bytes": runs[0][1]}

        q, f = summary(qresync), summary(full)
        print(f"(a) QRESYNC resync after 10 changes in {n} messages: {q['bytes']} bytes, median {q['median_ms']} ms")
        print(f"(b) SELECT + UID FETCH 1:* (FLAGS):                  {f['bytes']} bytes, median {f['median_ms']} ms")
        print(f"    QRESYNC takes {q['bytes'] / f['bytes']:.5f} of the bytes and {q['median_ms'] / f['median_ms']:.4f} "
              f"of the time ({f['bytes'] / q['bytes']:.0f}x fewer bytes, {f['median_ms'] / q['median_ms']:.0f}x faster)")
        rss = srv.peak_rss_kib()
        code = srv.stop(timeout=60)
        if code != 0:
            raise SystemExit(f"serve exited {code} after SIGTERM")
        now = datetime.datetime.now(datetime.timezone.utc)
        benchlib.write_result(args.out, "qresync", now, {
            "benchmark": "qresync", "time": now.isoformat(), "commit": benchlib.git_commit(),
            "binary": str(binary), "host": benchlib.host(), "messages": n, "changes": {"seen": seen, "expunged": gone},
            "runs": args.runs, "qresync": q, "full_flags": f,
            "ratio_bytes": round(q["bytes"] / f["bytes"], 6), "ratio_time": round(q["median_ms"] / f["median_ms"], 6),
            "peak_rss_kib": rss,
        })
    finally:
        h._cleanup()


if __name__ == "__main__":
    main()
