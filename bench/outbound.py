#!/usr/bin/env python3
"""Outbound throughput: tegami's queue sending 10 KB messages to a local Postfix peer, to one
destination and to many, with default durability; the same load relayed by a second Postfix
as the peer figure, and the sink's own intake for context.

Starts (tests/e2e/peers.py) a private Postfix *sink* storing mail for d0.test ... d{M-1}.test
in Maildirs, then for each destination count (default 1 and 20):
- tegami: `[[queue.route]]` per domain to the sink, DKIM signing on (a key made with
  `tegami domain dkim`), default durability; N messages submitted with AUTH over 8
  submission sessions; the clock runs from the first submission until the sink holds all N.
- Postfix relay: a second private Postfix relaying the same domains to the sink
  (transport_maps), its default durability (queue files fsynced); the same N messages over
  8 plain SMTP sessions; same clock.
- sink only: the same load straight into the sink: the ceiling both sides share.
Prints messages/s for each and the ratio tegami / Postfix relay, and writes
bench/results/outbound-<UTC timestamp>.json. See bench/README.md ("outbound.py").
"""

import argparse
import datetime
import os
import random
import smtplib
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.dont_write_bytecode = True
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
import harness as h  # noqa: E402
import peers  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
import benchlib  # noqa: E402

SENDER = "bench@example.com"
PASSWORD = "bench-password"
SESSIONS = 8


def body(size, rnd):
    alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789 "
    n_lines = max(1, (size - 260) // 78)
    return b"".join(bytes(rnd.choice(alphabet) for _ in range(76)) + b"\r\n" for _ in range(n_lines))


def load(n, size, domains, seed):
    """n (recipient, message) of about `size` octets, spread over `domains` domains."""
    rnd = random.Random(seed)
    # A few distinct bodies, so the run measures the servers and not Python's string building.
    bodies = [body(size, rnd) for _ in range(16)]
    out = []
    for i in range(n):
        to = f"u{i % 10}@d{i % domains}.test"
        head = (f"From: Bench <{SENDER}>\r\nTo: {to}\r\nSubject: outbound bench {i}\r\n"
                f"Message-ID: <ob-{seed}-{i}-{rnd.randrange(1 << 30)}@example.com>\r\n"
                "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nContent-Type: text/plain\r\n\r\n").encode()
        out.append((to, head + bodies[i % len(bodies)]))
    return out


def drive(port, msgs, login=None):
    """Sends msgs over SESSIONS connections; returns the time the first send started."""
    errors = []
    barrier = threading.Barrier(SESSIONS + 1)

    def worker(k):
        try:
            s = smtplib.SMTP(h.HOST, port, local_hostname="bench.test", timeout=120)
            s.ehlo()
            if login:
                s.login(*login)
            barrier.wait()
            for i in range(k, len(msgs), SESSIONS):
                to, msg = msgs[i]
                refused = s.sendmail(SENDER, [to], msg)
                if refused:
                    raise RuntimeError(f"refused: {refused}")
            s.quit()
        except Exception as e:  # noqa: BLE001
            errors.append(f"{type(e).__name__}: {e}")
            try:
                barrier.abort()
            except Exception:  # noqa: BLE001
                pass

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(SESSIONS)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.monotonic()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"sending failed: {errors[:3]}")
    return started, time.monotonic()


def measure(sink, port, msgs, login=None, timeout=600):
    before = sink.count()
    started, submitted = drive(port, msgs, login)
    sink.wait_count(before + len(msgs), timeout=timeout, what="benchmark messages")
    done = time.monotonic()
    return {"messages": len(msgs), "seconds": round(done - started, 3), "per_s": round(len(msgs) / (done - started), 1),
            "accept_seconds": round(submitted - started, 3)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.environ.get("TEGAMI_BIN") or str(REPO / "target" / "release" / "tegami"))
    ap.add_argument("-n", "--messages", type=int, default=2000)
    ap.add_argument("--size", type=int, default=10240)
    ap.add_argument("--destinations", default="1,20", help="comma-separated counts of destination domains")
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    args = ap.parse_args()
    os.environ["TEGAMI_BIN"] = str(Path(args.bin).resolve())
    levels = [int(x) for x in args.destinations.split(",")]
    most = max(levels)
    domains = [f"d{i}.test" for i in range(most)]
    now = datetime.datetime.now(datetime.timezone.utc)
    results = []
    try:
        sink = peers.PostfixPeer(domains=domains, name="bench-sink").start()
        relay = peers.PostfixPeer(domains=domains, name="bench-relay", relay_to=sink.port).start()

        t = h.Tegami("bench-outbound")
        t.write_config(peers.outbound_config(routes=[(d, sink.port) for d in domains]))
        t.domain("example.com")
        t.account(SENDER, PASSWORD)
        t.cli("domain", "dkim", "example.com", "--selector", "bench")
        srv = peers.serve(t, pop3=False, imap=False)
        sub = srv.port("submission")

        for level in levels:
            msgs = load(args.messages, args.size, level, seed=level)
            # A short warm-up on each side (connections, caches) that is not counted.
            warm = msgs[:50]
            measure(sink, sub, warm, login=(SENDER, PASSWORD))
            measure(sink, relay.port, warm)
            row = {"destinations": level, "size": args.size}
            row["tegami"] = measure(sink, sub, msgs, login=(SENDER, PASSWORD))
            row["postfix_relay"] = measure(sink, relay.port, msgs)
            row["sink_direct"] = measure(sink, sink.port, msgs)
            row["ratio_tegami_to_postfix"] = round(row["tegami"]["per_s"] / row["postfix_relay"]["per_s"], 3)
            results.append(row)
            print(f"{level:>3} destination(s), {args.messages} x {args.size} B: tegami {row['tegami']['per_s']}/s "
                  f"(accepted in {row['tegami']['accept_seconds']} s), Postfix relay {row['postfix_relay']['per_s']}/s, "
                  f"sink direct {row['sink_direct']['per_s']}/s; tegami/Postfix {row['ratio_tegami_to_postfix']}",
                  flush=True)
            sink.clear()
        peak = srv.peak_rss_kib()
        srv.stop()
    finally:
        h._cleanup()

    version = subprocess.run(["postconf", "-d", "-h", "mail_version"], capture_output=True, text=True).stdout.strip()
    benchlib.write_result(args.out, "outbound", now, {
        "benchmark": "outbound",
        "when": now.isoformat(timespec="seconds"),
        "commit": benchlib.git_commit(),
        "binary": os.environ["TEGAMI_BIN"],
        "host": benchlib.host(postfix=version),
        "sessions": SESSIONS,
        "durability": "default on both sides (tegami: queue entry synced before 250; Postfix: queue file fsynced)",
        "dkim": "tegami signs every message (RSA 2048); the Postfix relay does not sign",
        "tegami_peak_rss_kib": peak,
        "levels": results,
    })


if __name__ == "__main__":
    main()
