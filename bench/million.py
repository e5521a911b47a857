#!/usr/bin/env python3
"""A store of a million messages: what it costs to run and to look after.

Measures, on one account's INBOX of N messages (default 1,000,000, imported in chunks with
`tegami import mbox`, the bulk path; every message is distinct, so every one is a blob):
the SMTP delivery rate into the empty store and into the full one (the same 2,000 messages
over 8 connections); the server's resident memory idle after start and after a SELECT;
SELECT and STATUS latency on the big mailbox (imaplib, median); how long a session with the
big mailbox selected takes to learn of one new message (NOOP after a delivery, median); and
the time of `check`,
`backup create` and `optimize` against a raw read of the same data directory (every file
read once, as a copy would). Writes bench/results/million-<timestamp>.json. See
bench/README.md.
"""

import argparse
import datetime
import imaplib
import os
import smtplib
import statistics
import subprocess
import sys
import threading
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
CONNECTIONS = 8


def rss_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def deliver(port, n, tag):
    """n messages of about 1 KB over CONNECTIONS sessions; returns messages per second."""
    errors = []

    def worker(c):
        try:
            with smtplib.SMTP(h.HOST, port, local_hostname="bench.test", timeout=120) as s:
                for i in range(c, n, CONNECTIONS):
                    body = (f"From: load@bench.test\r\nTo: {ACCOUNT}\r\nSubject: {tag} {i}\r\n"
                            f"Message-ID: <{tag}-{i}@bench.test>\r\n\r\n" + "load line of text\r\n" * 50)
                    assert not s.sendmail("load@bench.test", [ACCOUNT], body.encode())
        except BaseException as e:  # noqa: BLE001
            errors.append(f"connection {c}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in range(CONNECTIONS)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=1800)
    if errors:
        raise SystemExit(f"delivery failed: {errors[:3]}")
    return n / (time.perf_counter() - t0)


def write_mbox(path, first, count):
    with open(path, "wb") as f:
        for i in range(first, first + count):
            f.write(b"From sender@example.org Mon Dec  7 00:00:00 2026\n"
                    + f"From: sender@example.org\nTo: {ACCOUNT}\nSubject: stored message {i}\n"
                      f"Message-ID: <m-{i}@bench.test>\n\nbody of message {i}, a line of text.\n\n".encode())


def latency(port, command, runs):
    times = []
    for _ in range(runs):
        c = imaplib.IMAP4(h.HOST, port, timeout=600)
        c.login(ACCOUNT, PASSWORD)
        t0 = time.perf_counter()
        typ, data = command(c)
        times.append(time.perf_counter() - t0)
        assert typ == "OK", (typ, data)
        c.logout()
    return round(statistics.median(times) * 1000, 1), data


def refresh_latency(imap_port, smtp_port, runs):
    """A session holds INBOX selected while one message at a time is delivered to it; the
    median time of the NOOP that reports it (EXISTS), in ms."""
    c = imaplib.IMAP4(h.HOST, imap_port, timeout=600)
    c.login(ACCOUNT, PASSWORD)
    typ, data = c.select("INBOX")
    assert typ == "OK", (typ, data)
    exists = int(data[0])
    times = []
    for i in range(runs):
        with smtplib.SMTP(h.HOST, smtp_port, local_hostname="bench.test", timeout=120) as s:
            body = f"From: load@bench.test\r\nTo: {ACCOUNT}\r\nSubject: news {i}\r\n\r\nnew\r\n"
            assert not s.sendmail("load@bench.test", [ACCOUNT], body.encode())
        exists += 1
        t0 = time.perf_counter()
        typ, data = c.noop()
        times.append(time.perf_counter() - t0)
        assert typ == "OK" and str(exists).encode() in c.untagged_responses.pop("EXISTS", [b""]), (typ, data)
    c.logout()
    return round(statistics.median(times) * 1000, 1)


def raw_read(directory):
    """Reads every file under `directory` once: the least a copy of it costs."""
    total = 0
    t0 = time.perf_counter()
    for root, _, files in os.walk(directory):
        for name in files:
            try:
                with open(os.path.join(root, name), "rb") as f:
                    while chunk := f.read(1 << 20):
                        total += len(chunk)
            except OSError:
                pass
    return time.perf_counter() - t0, total


def timed_cli(t, *args):
    t0 = time.perf_counter()
    t.cli(*args, timeout=7200)
    return round(time.perf_counter() - t0, 2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.environ.get("TEGAMI_BIN") or str(REPO / "target" / "release" / "tegami"),
                    help="tegami binary (default: $TEGAMI_BIN or target/release/tegami)")
    ap.add_argument("-n", "--messages", type=int, default=1_000_000, help="messages in INBOX (default 1000000)")
    ap.add_argument("--chunk", type=int, default=100_000, help="messages per imported mbox (default 100000)")
    ap.add_argument("--deliveries", type=int, default=2000, help="messages of each delivery-rate run")
    ap.add_argument("--runs", type=int, default=3, help="runs of each latency (default 3)")
    ap.add_argument("--no-maintenance", action="store_true",
                    help="skip the raw read, check, backup and optimize (the slow part)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results"), help="directory for the JSON result")
    args = ap.parse_args()
    binary = Path(args.bin).resolve()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise SystemExit(f"no tegami binary at {binary}: run `cargo build --release -p tegami` or pass --bin")
    os.environ["TEGAMI_BIN"] = str(binary)
    n = args.messages
    result = {"benchmark": "million", "commit": benchlib.git_commit(), "binary": str(binary),
              "host": benchlib.host(), "messages": n}

    t = h.Tegami("million-bench")
    try:
        t.domain("example.com")
        t.account(ACCOUNT, PASSWORD)
        srv = t.serve(imap=True)
        result["delivery_rate_empty"] = round(deliver(srv.smtp, args.deliveries, "empty"), 1)
        print(f"delivery into the empty store: {result['delivery_rate_empty']} msg/s", flush=True)
        assert srv.stop(timeout=120) == 0

        t0 = time.perf_counter()
        path = t.root / "chunk.mbox"
        for first in range(0, n, args.chunk):
            write_mbox(path, first, min(args.chunk, n - first))
            t.cli("import", "mbox", str(path), "--account", ACCOUNT, timeout=7200)
            print(f"  imported {min(first + args.chunk, n)} of {n}", flush=True)
        path.unlink()
        result["import_seconds"] = round(time.perf_counter() - t0, 1)
        print(f"imported {n} messages in {result['import_seconds']} s", flush=True)

        srv = t.serve(imap=True, timeout=600)
        time.sleep(5)
        result["rss_idle_kib"] = rss_kib(srv.pid)
        total = n + args.deliveries
        result["select_ms"], data = latency(srv.imap, lambda c: c.select("INBOX", readonly=True), args.runs)
        assert int(data[0]) == total, f"SELECT says {data} messages, wanted {total}"
        result["rss_after_select_kib"] = rss_kib(srv.pid)
        result["status_ms"], data = latency(
            srv.imap, lambda c: c.status("INBOX", "(MESSAGES UNSEEN UIDNEXT)"), args.runs * 2)
        result["delivery_rate_full"] = round(deliver(srv.smtp, args.deliveries, "full"), 1)
        result["refresh_ms"] = refresh_latency(srv.imap, srv.smtp, args.runs * 5)
        result["rss_peak_kib"] = rss_kib(srv.pid, "VmHWM")
        print(f"idle RSS {result['rss_idle_kib'] / 1024:.1f} MiB, after SELECT {result['rss_after_select_kib'] / 1024:.1f} "
              f"MiB; SELECT {result['select_ms']} ms, STATUS {result['status_ms']} ms; delivery into the full store "
              f"{result['delivery_rate_full']} msg/s; a selected session learns of a new message in "
              f"{result['refresh_ms']} ms", flush=True)
        assert srv.stop(timeout=300) == 0
        if args.no_maintenance:
            now = datetime.datetime.now(datetime.timezone.utc)
            result["time"] = now.isoformat()
            benchlib.write_result(args.out, "million", now, result)
            return

        subprocess.run(["sync"], check=True)
        raw_s, raw_bytes = raw_read(t.data)
        result["raw_read"] = {"seconds": round(raw_s, 2), "bytes": raw_bytes}
        result["check_seconds"] = timed_cli(t, "check")
        result["backup_seconds"] = timed_cli(t, "backup", "create", "--to", str(t.root / "backups"))
        result["optimize_seconds"] = timed_cli(t, "optimize")
        for step in ("check", "backup", "optimize"):
            result[f"{step}_to_raw_read"] = round(result[f"{step}_seconds"] / raw_s, 2)
        print(f"raw read of the data directory ({raw_bytes / 1e9:.2f} GB): {raw_s:.1f} s; check "
              f"{result['check_seconds']} s ({result['check_to_raw_read']}x), backup create {result['backup_seconds']} s "
              f"({result['backup_to_raw_read']}x), optimize {result['optimize_seconds']} s "
              f"({result['optimize_to_raw_read']}x)", flush=True)
        now = datetime.datetime.now(datetime.timezone.utc)
        result["time"] = now.isoformat()
        benchlib.write_result(args.out, "million", now, result)
    finally:
        h._cleanup()


if __name__ == "__main__":
    main()
