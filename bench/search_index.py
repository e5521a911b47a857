#!/usr/bin/env python3
"""SEARCH TEXT with the full-text index against scanning, and the delivery rate with the
indexer on against off, on a mailbox of N messages.

Starts the given binary (default target/release/tegami; it builds nothing) twice on fresh
temporary data dirs with default durability: once with `[imap] full_text_index = false`,
once with the indexer on; each time delivers N messages of 10 KB (the messages of
bench/imap_fetch.py: one in every 1,000 carries a rare word) over eight SMTP connections
and times it. With the indexer on it then waits until `tegami index check` says every
message is indexed (the catch-up time), and times SEARCH TEXT for the rare word, for a
word in no message, and for a word in every message; then the same searches with the index
moved away and the indexer off (the scan), which must give the same answers. Writes
bench/results/search-<timestamp>.json. See bench/README.md.
"""

import argparse
import datetime
import json
import os
import shutil
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
import imap_fetch  # noqa: E402

ACCOUNT = imap_fetch.ACCOUNT
PASSWORD = imap_fetch.PASSWORD
COMMON = "foxtrot"  # in nearly every message
WORDS = {"rare": imap_fetch.RARE, "absent": imap_fetch.ABSENT, "common": COMMON}


def store(name, n, size, index):
    t = h.Tegami(name)
    t.domain("example.com")
    t.account(ACCOUNT, PASSWORD)
    t.write_config(f"[imap]\nfull_text_index = {'true' if index else 'false'}\n")
    srv = t.serve(imap=True)
    secs, octets, rare = imap_fetch.deliver(srv.smtp, n, size)
    print(f"indexer {'on ' if index else 'off'}: delivered {n} messages ({octets / 1e6:.1f} MB) in {secs:.1f} s "
          f"({n / secs:.0f} msg/s)", flush=True)
    return t, srv, secs, rare


def searches(srv, runs):
    out = {}
    for label, word in WORDS.items():
        times, hits = imap_fetch.search_latency(srv.imap, word, runs)
        out[label] = {"word": word, "hits": len(hits), "median_ms": round(statistics.median(times) * 1000, 1),
                      "min_ms": round(min(times) * 1000, 1), "max_ms": round(max(times) * 1000, 1),
                      "_hits": hits}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.environ.get("TEGAMI_BIN") or str(REPO / "target" / "release" / "tegami"),
                    help="tegami binary (default: $TEGAMI_BIN or target/release/tegami)")
    ap.add_argument("-n", "--messages", type=int, default=100_000, help="messages in the mailbox (default 100000)")
    ap.add_argument("--size", type=int, default=10 * 1024, help="message size in bytes (default 10240)")
    ap.add_argument("--runs", type=int, default=5, help="SEARCH runs per word (default 5)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results"), help="directory for the JSON result")
    args = ap.parse_args()

    binary = Path(args.bin).resolve()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise SystemExit(f"no tegami binary at {binary}: run `cargo build --release -p tegami` or pass --bin")
    os.environ["TEGAMI_BIN"] = str(binary)
    n = args.messages

    try:
        # Delivery with the indexer off, then on (a fresh store each time).
        t, srv, off_secs, _ = store("search-bench-off", n, args.size, index=False)
        assert srv.stop(timeout=60) == 0
        t, srv, on_secs, rare = store("search-bench-on", n, args.size, index=True)
        t0 = time.perf_counter()
        while True:
            check = json.loads(t.cli("index", "check", "--json", check=False, timeout=600).out)
            if check["pending"] == 0:
                break
            time.sleep(0.5)
        catch_up = time.perf_counter() - t0
        print(f"index caught up {catch_up:.1f} s after the last delivery: {check}", flush=True)
        index_bytes = sum(p.stat().st_size for p in t.data.glob("index.db*"))

        indexed = searches(srv, args.runs)
        assert indexed["rare"]["hits"] == rare, f"rare word: {indexed['rare']['hits']} hits, wanted {rare}"
        assert indexed["absent"]["hits"] == 0
        assert srv.stop(timeout=60) == 0

        # The scan: no index file, indexer off.
        aside = t.root / "aside"
        aside.mkdir()
        for p in t.data.glob("index.db*"):
            shutil.move(str(p), str(aside / p.name))
        t.write_config("[imap]\nfull_text_index = false\n")
        srv = t.serve(imap=True)
        scanned = searches(srv, args.runs)
        assert srv.stop(timeout=60) == 0
        for label in WORDS:
            assert indexed[label].pop("_hits") == scanned[label].pop("_hits"), f"{label}: index and scan differ"
        for label in WORDS:
            print(f"SEARCH TEXT {label} word ({indexed[label]['hits']} hits) over {n} messages: index median "
                  f"{indexed[label]['median_ms']} ms, scan median {scanned[label]['median_ms']} ms", flush=True)
        ratio = on_secs / off_secs
        print(f"delivery rate with the indexer on: {n / on_secs:.0f} msg/s, off: {n / off_secs:.0f} msg/s "
              f"({(1 - off_secs / on_secs) * 100:+.1f} % slower with it on); index.db {index_bytes / 1e6:.1f} MB",
              flush=True)
    finally:
        h._cleanup()

    now = datetime.datetime.now(datetime.timezone.utc)
    benchlib.write_result(args.out, "search", now, {
        "benchmark": "search_index",
        "timestamp": now.isoformat(timespec="seconds"),
        "commit": benchlib.git_commit(),
        "binary": str(binary),
        "messages": n,
        "message_size_bytes": args.size,
        "durability": "default",
        "host": benchlib.host(),
        "delivery_indexer_off": {"seconds": round(off_secs, 3), "messages_per_sec": round(n / off_secs, 1)},
        "delivery_indexer_on": {"seconds": round(on_secs, 3), "messages_per_sec": round(n / on_secs, 1)},
        "delivery_time_ratio_on_off": round(ratio, 3),
        "index_catch_up_seconds": round(catch_up, 3),
        "index_bytes": index_bytes,
        "search_text_index": indexed,
        "search_text_scan": scanned,
    })


if __name__ == "__main__":
    main()
