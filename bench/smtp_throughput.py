#!/usr/bin/env python3
"""SMTP delivery throughput of tegami at 1, 10 and 50 concurrent connections.

Starts the given binary (default target/release/tegami; it builds nothing) with default
durability on a fresh temporary data dir, sends N messages of 10 KB at each concurrency
(each connection sends many messages), checks every reply, and reports messages per second,
latency percentiles and the server's peak RSS. Writes bench/results/smtp-<timestamp>.json.
See bench/README.md.
"""

import argparse
import datetime
import os
import random
import smtplib
import statistics
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

ACCOUNTS = [f"bench{i}@example.com" for i in range(10)]
PASSWORD = "bench-password"


def message(size, i, rnd):
    head = (
        f"Message-ID: <bench-{i}@bench.test>\r\nFrom: load@bench.test\r\nTo: {ACCOUNTS[i % len(ACCOUNTS)]}\r\n"
        f"Subject: bench {i}\r\nContent-Type: text/plain\r\n\r\n"
    ).encode()
    line_len = 76
    n_lines = max(1, (size - len(head)) // (line_len + 2))
    alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789 "
    body = b"".join(bytes(rnd.choice(alphabet) for _ in range(line_len)) + b"\r\n" for _ in range(n_lines))
    return head + body


def run_level(port, concurrency, total, size):
    """Sends `total` messages over `concurrency` connections; returns (seconds, latencies)."""
    per = [total // concurrency + (1 if c < total % concurrency else 0) for c in range(concurrency)]
    rnd = random.Random(concurrency)
    # A few distinct bodies, so the run measures the server and not Python's string building.
    bodies = [message(size, i, rnd) for i in range(16)]
    latencies = [[] for _ in range(concurrency)]
    errors = []
    barrier = threading.Barrier(concurrency + 1)

    def worker(c):
        try:
            s = smtplib.SMTP(h.HOST, port, local_hostname="bench.test", timeout=120)
            code, _ = s.ehlo()
            assert code == 250, f"EHLO {code}"
            barrier.wait(timeout=120)
            for k in range(per[c]):
                i = c * 1_000_000 + k
                rcpt = ACCOUNTS[i % len(ACCOUNTS)]
                t0 = time.perf_counter()
                refused = s.sendmail("load@bench.test", [rcpt], bodies[i % len(bodies)])
                latencies[c].append(time.perf_counter() - t0)
                assert not refused, f"refused {refused}"
            code, _ = s.quit()
            assert code == 221, f"QUIT {code}"
        except BaseException as e:  # noqa: BLE001
            errors.append(f"connection {c}: {type(e).__name__}: {e}")
            try:
                barrier.abort()
            except threading.BrokenBarrierError:
                pass

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in range(concurrency)]
    for th in threads:
        th.start()
    try:
        barrier.wait(timeout=120)
    except threading.BrokenBarrierError:
        pass
    t0 = time.perf_counter()
    for th in threads:
        th.join(timeout=900)
        if th.is_alive():
            errors.append("a connection was still sending after 900 s")
            break
    elapsed = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"delivery failed at concurrency {concurrency}: {errors[:3]}")
    flat = sorted(x for lat in latencies for x in lat)
    assert len(flat) == total, f"{len(flat)} deliveries timed, wanted {total}"
    return elapsed, flat


def pct(sorted_values, p):
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, int(round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]



def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.environ.get("TEGAMI_BIN") or str(REPO / "target" / "release" / "tegami"),
                    help="tegami binary (default: $TEGAMI_BIN or target/release/tegami)")
    ap.add_argument("-n", "--messages", type=int, default=2000, help="messages per concurrency level (default 2000)")
    ap.add_argument("--size", type=int, default=10 * 1024, help="message size in bytes (default 10240)")
    ap.add_argument("--concurrency", default="1,10,50", help="comma-separated levels (default 1,10,50)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results"), help="directory for the JSON result")
    args = ap.parse_args()

    binary = Path(args.bin).resolve()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise SystemExit(f"no tegami binary at {binary}: run `cargo build --release -p tegami` or pass --bin")
    os.environ["TEGAMI_BIN"] = str(binary)
    levels = [int(x) for x in args.concurrency.split(",") if x.strip()]

    t = h.Tegami("bench")
    try:
        t.domain("example.com")
        for a in ACCOUNTS:
            t.account(a, PASSWORD)
        srv = t.serve()
        results = []
        for c in levels:
            elapsed, lat = run_level(srv.smtp, c, args.messages, args.size)
            rate = args.messages / elapsed
            row = {
                "concurrency": c,
                "messages": args.messages,
                "seconds": round(elapsed, 3),
                "messages_per_sec": round(rate, 1),
                "mb_per_sec": round(rate * args.size / 1e6, 2),
                "latency_ms": {
                    "p50": round(pct(lat, 50) * 1000, 2),
                    "p90": round(pct(lat, 90) * 1000, 2),
                    "p99": round(pct(lat, 99) * 1000, 2),
                    "max": round(lat[-1] * 1000, 2),
                    "mean": round(statistics.fmean(lat) * 1000, 2),
                },
            }
            results.append(row)
            print(f"concurrency {c:>3}: {args.messages} messages in {elapsed:6.2f} s = {rate:8.1f} msg/s "
                  f"(p50 {row['latency_ms']['p50']} ms, p99 {row['latency_ms']['p99']} ms)", flush=True)

        # Every acknowledged message must be in a maildrop: a benchmark of lost mail is worthless.
        stored = 0
        for a in ACCOUNTS:
            p = h.pop3_login(srv.pop3, a, PASSWORD, timeout=120)
            stored += p.stat()[0]
            p.quit()
        want = args.messages * len(levels)
        if stored != want:
            raise SystemExit(f"{stored} messages stored, {want} acknowledged")
        rss = srv.peak_rss_kib()
        print(f"peak RSS (VmHWM) of the server: {rss / 1024:.1f} MiB; all {stored} messages stored", flush=True)
        code = srv.stop(timeout=60)
        if code != 0:
            raise SystemExit(f"serve exited {code} after SIGTERM")
    finally:
        h._cleanup()  # kills the server if a level failed, removes the data dir

    now = datetime.datetime.now(datetime.timezone.utc)
    out = {
        "benchmark": "smtp_throughput",
        "timestamp": now.isoformat(timespec="seconds"),
        "commit": benchlib.git_commit(),
        "binary": str(binary),
        "message_size_bytes": args.size,
        "durability": "default",
        "host": benchlib.host(),
        "results": results,
        "server_peak_rss_kib": rss,
    }
    benchlib.write_result(args.out, "smtp", now, out)


if __name__ == "__main__":
    main()
