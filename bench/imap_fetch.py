#!/usr/bin/env python3
"""IMAP FETCH throughput and SEARCH TEXT latency of tegami on a mailbox of N messages.

Starts the given binary (default target/release/tegami; it builds nothing) on a fresh
temporary data dir with default durability, delivers N messages of 10 KB to one account
over several SMTP connections, then measures with imaplib: (a) one session fetching the
full text of every message (FETCH 1:* BODY.PEEK[]), (b) ten sessions doing the same at
once, (c) SEARCH TEXT latency for a word in a few messages and for a word in none (median
of several runs). Checks every byte count, reports the server's peak RSS, and writes
bench/results/imap-<timestamp>.json. See bench/README.md.
"""

import argparse
import datetime
import imaplib
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

ACCOUNT = "bench@example.com"
PASSWORD = "bench-password"
RARE = "xylophonequartz"  # in one message of every 1,000
ABSENT = "zzyzxnotpresent"
SMTP_CONNECTIONS = 8


def message(size, i, rnd):
    head = (f"Message-ID: <imap-bench-{i}@bench.test>\r\nFrom: load@bench.test\r\nTo: {ACCOUNT}\r\n"
            f"Subject: imap bench {i}\r\nContent-Type: text/plain\r\n\r\n").encode()
    words = [b"alpha", b"bravo", b"charlie", b"delta", b"echo", b"foxtrot", b"golf", b"hotel", b"india", b"juliet"]
    lines = []
    total = len(head)
    while total < size - 80:
        line = b" ".join(rnd.choice(words) for _ in range(12)) + b"\r\n"
        lines.append(line)
        total += len(line)
    return head + b"".join(lines)


def deliver(port, n, size):
    rnd = random.Random(42)
    # 64 distinct bodies; the Message-ID and the rare word make each message what it must be.
    templates = [message(size, k, rnd) for k in range(64)]
    errors = []
    total_bytes = [0] * SMTP_CONNECTIONS

    def worker(c):
        try:
            s = smtplib.SMTP(h.HOST, port, local_hostname="bench.test", timeout=120)
            s.ehlo()
            for i in range(c, n, SMTP_CONNECTIONS):
                m = templates[i % 64].replace(b"imap-bench-%d@" % (i % 64), b"imap-bench-%d@" % i, 1)
                if i % 1000 == 7:
                    m += f"the rare word {RARE} is here\r\n".encode()
                refused = s.sendmail("load@bench.test", [ACCOUNT], m)
                assert not refused, refused
                total_bytes[c] += len(m)
            s.quit()
        except BaseException as e:  # noqa: BLE001
            errors.append(f"connection {c}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in range(SMTP_CONNECTIONS)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=1800)
    if errors:
        raise SystemExit(f"delivery failed: {errors[:3]}")
    rare = len([i for i in range(n) if i % 1000 == 7])
    return time.perf_counter() - t0, sum(total_bytes), rare


def login(port):
    m = imaplib.IMAP4(h.HOST, port, timeout=600)
    m.login(ACCOUNT, PASSWORD)
    typ, data = m.select("INBOX", readonly=True)
    assert typ == "OK", f"EXAMINE INBOX: {typ} {data}"
    return m, int(data[0])


def fetch_all(port, want_count):
    """One session: FETCH 1:* (BODY.PEEK[]); returns (seconds for the FETCH, messages, octets)."""
    m, exists = login(port)
    assert exists == want_count, f"INBOX has {exists} messages, wanted {want_count}"
    t0 = time.perf_counter()
    typ, data = m.fetch("1:*", "(BODY.PEEK[])")
    elapsed = time.perf_counter() - t0
    assert typ == "OK", f"FETCH: {typ}"
    literals = [d[1] for d in data if isinstance(d, tuple)]
    m.logout()
    return elapsed, len(literals), sum(len(x) for x in literals)


def search_latency(port, word, runs):
    m, _ = login(port)
    times, hits = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        typ, data = m.search(None, "TEXT", word)
        times.append(time.perf_counter() - t0)
        assert typ == "OK", f"SEARCH TEXT {word}: {typ} {data}"
        got = [int(x) for x in data[0].split()]
        assert hits is None or got == hits, "SEARCH answered differently between runs"
        hits = got
    m.logout()
    return times, hits



def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.environ.get("TEGAMI_BIN") or str(REPO / "target" / "release" / "tegami"),
                    help="tegami binary (default: $TEGAMI_BIN or target/release/tegami)")
    ap.add_argument("-n", "--messages", type=int, default=10_000, help="messages in the mailbox (default 10000)")
    ap.add_argument("--size", type=int, default=10 * 1024, help="message size in bytes (default 10240)")
    ap.add_argument("--sessions", type=int, default=10, help="concurrent sessions for (b) (default 10)")
    ap.add_argument("--runs", type=int, default=5, help="SEARCH runs per word (default 5)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results"), help="directory for the JSON result")
    args = ap.parse_args()

    binary = Path(args.bin).resolve()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise SystemExit(f"no tegami binary at {binary}: run `cargo build --release -p tegami` or pass --bin")
    os.environ["TEGAMI_BIN"] = str(binary)
    n = args.messages

    t = h.Tegami("imap-bench")
    try:
        t.domain("example.com")
        t.account(ACCOUNT, PASSWORD)
        srv = t.serve(imap=True)
        secs, octets_sent, rare = deliver(srv.smtp, n, args.size)
        print(f"delivered {n} messages ({octets_sent / 1e6:.1f} MB) over {SMTP_CONNECTIONS} SMTP connections "
              f"in {secs:.1f} s ({n / secs:.0f} msg/s)", flush=True)
        rss_phases = {"after_delivery": srv.peak_rss_kib()}

        # (a) one session.
        one_s, count, octets = fetch_all(srv.imap, n)
        assert count == n, f"FETCH 1:* returned {count} messages, wanted {n}"
        assert octets > octets_sent, f"FETCH returned {octets} octets, less than the {octets_sent} sent"
        one = {"seconds": round(one_s, 3), "messages": count, "octets": octets,
               "mb_per_sec": round(octets / one_s / 1e6, 1), "messages_per_sec": round(count / one_s, 1)}
        print(f"(a) 1 session:   FETCH 1:* BODY.PEEK[] of {count} messages ({octets / 1e6:.1f} MB) in {one_s:6.2f} s "
              f"= {one['mb_per_sec']} MB/s", flush=True)
        rss_phases["after_one_session"] = srv.peak_rss_kib()

        # (b) concurrent sessions.
        results, errors = [None] * args.sessions, []
        barrier = threading.Barrier(args.sessions)

        def worker(k):
            try:
                barrier.wait(timeout=120)
                results[k] = fetch_all(srv.imap, n)
            except BaseException as e:  # noqa: BLE001
                errors.append(f"session {k}: {type(e).__name__}: {e}")
                try:
                    barrier.abort()
                except threading.BrokenBarrierError:
                    pass

        threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(args.sessions)]
        t0 = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=1800)
        wall = time.perf_counter() - t0
        if errors:
            raise SystemExit(f"concurrent FETCH failed: {errors[:3]}")
        for r in results:
            assert r[1] == n and r[2] == octets, f"a concurrent session got {r[1]} messages / {r[2]} octets"
        total = octets * args.sessions
        per = sorted(r[0] for r in results)
        many = {"sessions": args.sessions, "wall_seconds": round(wall, 3), "octets_total": total,
                "mb_per_sec_total": round(total / wall / 1e6, 1),
                "session_seconds": {"min": round(per[0], 3), "median": round(statistics.median(per), 3),
                                    "max": round(per[-1], 3)}}
        print(f"(b) {args.sessions} sessions: each FETCH 1:* BODY.PEEK[]; {total / 1e6:.0f} MB in {wall:6.2f} s wall "
              f"= {many['mb_per_sec_total']} MB/s total (per session {per[0]:.2f}-{per[-1]:.2f} s)", flush=True)
        rss_phases["after_concurrent"] = srv.peak_rss_kib()

        # (c) SEARCH TEXT.
        rare_t, rare_hits = search_latency(srv.imap, RARE, args.runs)
        assert len(rare_hits) == rare, f"SEARCH TEXT {RARE} found {len(rare_hits)} messages, wanted {rare}"
        absent_t, absent_hits = search_latency(srv.imap, ABSENT, args.runs)
        assert absent_hits == [], f"SEARCH TEXT {ABSENT} found {absent_hits[:5]}"
        search = {
            "runs": args.runs,
            "rare_word": {"word": RARE, "hits": len(rare_hits), "median_ms": round(statistics.median(rare_t) * 1000, 1),
                          "min_ms": round(min(rare_t) * 1000, 1), "max_ms": round(max(rare_t) * 1000, 1)},
            "absent_word": {"word": ABSENT, "hits": 0, "median_ms": round(statistics.median(absent_t) * 1000, 1),
                            "min_ms": round(min(absent_t) * 1000, 1), "max_ms": round(max(absent_t) * 1000, 1)},
        }
        print(f"(c) SEARCH TEXT over {n} messages: a word in {len(rare_hits)} of them: median "
              f"{search['rare_word']['median_ms']} ms; a word in none: median {search['absent_word']['median_ms']} ms "
              f"({args.runs} runs each)", flush=True)

        rss = srv.peak_rss_kib()
        rss_phases["after_search"] = rss
        print("peak RSS (VmHWM) of the server: " + ", ".join(f"{k.replace('_', ' ')} {v / 1024:.1f} MiB"
                                                             for k, v in rss_phases.items()), flush=True)
        code = srv.stop(timeout=60)
        if code != 0:
            raise SystemExit(f"serve exited {code} after SIGTERM")
    finally:
        h._cleanup()

    now = datetime.datetime.now(datetime.timezone.utc)
    out = {
        "benchmark": "imap_fetch",
        "timestamp": now.isoformat(timespec="seconds"),
        "commit": benchlib.git_commit(),
        "binary": str(binary),
        "messages": n,
        "message_size_bytes": args.size,
        "durability": "default",
        "host": benchlib.host(),
        "delivery": {"seconds": round(secs, 3), "messages_per_sec": round(n / secs, 1), "connections": SMTP_CONNECTIONS},
        "fetch_one_session": one,
        "fetch_concurrent": many,
        "search_text": search,
        "server_peak_rss_kib": rss,
        "server_peak_rss_kib_by_phase": rss_phases,
    }
    benchlib.write_result(args.out, "imap", now, out)


if __name__ == "__main__":
    main()
