#!/usr/bin/env python3
"""Backup and restore time of a large store, against `cp -a` of the same data directory.

Builds a store of --size bytes of mail (default 2 GiB; unique messages of 20 KB to 1 MB
delivered over SMTP, so every message is its own blob) with the given binary (default
target/release/tegami; it builds nothing), then, on the same disk and in the same run,
times: `cp -a` of the data directory (and the `sync` that makes that copy durable, which
cp never does); `tegami backup create` online, beside the running server (blobs hard-linked,
the database snapshotted, everything durable before it returns); `backup create
--copy-blobs` into another directory (every blob read, hashed, written: the fair match for
cp -a + sync); a second, incremental `--copy-blobs` backup of the unchanged store; `backup
verify`; and `tegami restore` of the copied backup into a new data directory. Prints the
ratios and writes bench/results/backup-<timestamp>.json. See bench/README.md.
"""

import argparse
import base64
import datetime
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path

sys.dont_write_bytecode = True
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
import harness as h  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
import benchlib  # noqa: E402

ACCOUNTS = [f"bench{i}@example.com" for i in range(20)]
PASSWORD = "bench-password"
SIZES = [(0.70, 20_000), (0.25, 200_000), (0.05, 1_000_000)]


def parse_size(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?", text.strip().lower())
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (like 2G, 300M)")
    return int(float(m.group(1)) * 1024 ** " kmgt".index(m.group(2) or " "))


def message(n, rnd):
    r, size = rnd.random(), SIZES[-1][1]
    for share, s in SIZES:
        if r < share:
            size = s
            break
        r -= share
    raw = base64.encodebytes(os.urandom(size * 3 // 4)).replace(b"\n", b"\r\n")
    return (f"Message-ID: <bench-{n}@bench.test>\r\nSubject: bench {n}\r\n"
            "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n").encode() + raw


def fill(port, target, threads=4):
    """Delivers unique messages until the blobs hold `target` bytes; returns (messages, bytes)."""
    lock = threading.Lock()
    state = {"bytes": 0, "messages": 0}
    errors = []

    def worker(w):
        rnd = random.Random(w)
        s = h.smtp_client(port, timeout=120)
        try:
            while True:
                with lock:
                    if state["bytes"] >= target:
                        return
                    n = state["messages"]
                    state["messages"] += 1
                msg = message(n * 100 + w, rnd)
                refused = s.sendmail("load@bench.test", [ACCOUNTS[n % len(ACCOUNTS)]], msg)
                assert not refused, refused
                with lock:
                    state["bytes"] += len(msg)
        except BaseException as e:  # noqa: BLE001
            errors.append(f"{type(e).__name__}: {e}")
        finally:
            s.close()

    workers = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(threads)]
    for th in workers:
        th.start()
    last = time.monotonic()
    while any(th.is_alive() for th in workers):
        time.sleep(1)
        if time.monotonic() - last > 10:
            last = time.monotonic()
            print(f"  ... {state['messages']} messages, {state['bytes'] / 2**30:.2f} GiB", flush=True)
    if errors:
        raise SystemExit(f"delivery failed: {errors[:3]}")
    return state["messages"], state["bytes"]


def timed(what, argv, **kw):
    t0 = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, text=True, **kw)
    seconds = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{what} failed ({p.returncode}): {p.stderr.strip() or p.stdout.strip()}")
    print(f"{what:<44} {seconds:8.2f} s", flush=True)
    return seconds, p.stdout


def du(path):
    p = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True)
    return int(p.stdout.split()[0]) if p.returncode == 0 else None



def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.environ.get("TEGAMI_BIN") or str(REPO / "target" / "release" / "tegami"),
                    help="tegami binary (default: $TEGAMI_BIN or target/release/tegami)")
    ap.add_argument("--size", type=parse_size, default=parse_size("2G"),
                    help="bytes of mail in the store (default 2G; 200M for a quick run)")
    ap.add_argument("--workdir", default=None,
                    help="where the store and its copies go (default: a new directory in $TMPDIR); one disk")
    ap.add_argument("--out", default=str(REPO / "bench" / "results"), help="directory for the JSON result")
    args = ap.parse_args()

    binary = Path(args.bin).resolve()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise SystemExit(f"no tegami binary at {binary}: run `cargo build --release -p tegami` or pass --bin")
    os.environ["TEGAMI_BIN"] = str(binary)
    work = Path(tempfile.mkdtemp(prefix="tegami-bench-backup-", dir=args.workdir))
    tempfile.tempdir = str(work)  # the store goes there too: everything on one disk
    free = shutil.disk_usage(work).free
    if free < args.size * 6:
        raise SystemExit(f"{work} has {free / 2**30:.1f} GiB free; this run needs about 6 x --size "
                         f"({args.size * 6 / 2**30:.1f} GiB): the store, cp -a, and copied backups")
    t = h.Tegami("bench-backup")
    results = {}
    try:
        t.domain("example.com")
        for a in ACCOUNTS:
            t.account(a, PASSWORD)
        srv = t.serve()
        print(f"building a store of {args.size / 2**30:.2f} GiB in {t.data} ...", flush=True)
        t0 = time.perf_counter()
        messages, mail_bytes = fill(srv.smtp, args.size)
        print(f"  {messages} messages, {mail_bytes / 2**30:.2f} GiB in {time.perf_counter() - t0:.0f} s", flush=True)
        subprocess.run(["sync"], check=True)
        data_bytes = du(t.data)
        tg = [str(binary), "--data", str(t.data)]

        # Every copy starts with nothing dirty in the page cache, so no step pays for another.
        results["cp_a_s"], _ = timed("cp -a DATA (not durable)", ["cp", "-a", str(t.data), str(work / "cp-copy")])
        results["sync_after_cp_s"], _ = timed("  sync (to make the cp durable)", ["sync"])
        results["cp_a_durable_s"] = results["cp_a_s"] + results["sync_after_cp_s"]

        linked = work / "backups-linked"
        results["backup_s"], out = timed("tegami backup create (online, linked)", tg + ["backup", "create", "--to", str(linked)])
        bid = re.search(r"^backup (\S+) taken", out, re.M).group(1)
        manifest = tomllib.loads((linked / bid / "manifest.toml").read_text())

        copied = work / "backups-copied"
        results["backup_copy_s"], out = timed("tegami backup create --copy-blobs", tg + ["backup", "create", "--to", str(copied), "--copy-blobs"])
        cid = re.search(r"^backup (\S+) taken", out, re.M).group(1)
        results["backup_copy_added_bytes"] = du(copied / cid)
        time.sleep(1.1)  # a new id (ids have one-second resolution)
        results["backup_incremental_s"], out = timed("  again, unchanged store (incremental)", tg + ["backup", "create", "--to", str(copied), "--copy-blobs"])
        iid = re.search(r"^backup (\S+) taken", out, re.M).group(1)
        inc = tomllib.loads((copied / iid / "manifest.toml").read_text())
        results["backup_incremental_blobs_copied"] = inc["blobs_copied"]

        results["verify_s"], _ = timed("tegami backup verify (every byte hashed)", tg + ["backup", "verify", str(copied / cid)])
        srv.stop(timeout=120)

        restored = work / "restored"
        results["restore_s"], _ = timed("tegami restore (of the copied backup)", [str(binary), "--data", str(restored), "restore", str(copied / cid)])
        subprocess.run(["sync"], check=True)
        results["restore_cp_a_s"], _ = timed("cp -a of the backup (restore by hand)", ["cp", "-a", str(copied / cid), str(work / "restore-by-hand")])
        results["sync_after_restore_cp_s"], _ = timed("  sync", ["sync"])
        check_s, _ = timed("tegami check on the restored store", [str(binary), "--data", str(restored), "check"])
        results["check_restored_s"] = check_s
    finally:
        h._cleanup()
        shutil.rmtree(work, ignore_errors=True)

    ratio = results["backup_s"] / results["cp_a_s"]
    ratio_copy = results["backup_copy_s"] / results["cp_a_durable_s"]
    print(f"\nstore: {messages} messages, {mail_bytes / 2**30:.2f} GiB of mail, data directory {data_bytes / 2**30:.2f} GiB")
    print(f"backup / cp -a:                       {ratio:.3f}  ({results['backup_s']:.2f} s vs {results['cp_a_s']:.2f} s)")
    print(f"backup --copy-blobs / (cp -a + sync): {ratio_copy:.3f}  ({results['backup_copy_s']:.2f} s vs {results['cp_a_durable_s']:.2f} s)")
    print(f"incremental backup:                   {results['backup_incremental_s']:.2f} s, {results['backup_incremental_blobs_copied']} blobs copied")
    print(f"restore:                              {results['restore_s']:.2f} s (cp -a + sync of the backup: "
          f"{results['restore_cp_a_s'] + results['sync_after_restore_cp_s']:.2f} s)")

    now = datetime.datetime.now(datetime.timezone.utc)
    out = {
        "benchmark": "backup",
        "timestamp": now.isoformat(timespec="seconds"),
        "commit": benchlib.git_commit(),
        "binary": str(binary),
        "store": {
            "messages": messages,
            "mail_bytes": mail_bytes,
            "data_dir_bytes": data_bytes,
            "blobs": manifest["blobs"],
            "database_bytes": manifest["database_bytes"],
        },
        "seconds": {k: round(v, 3) for k, v in results.items() if k.endswith("_s")},
        "backup_copy_added_bytes": results["backup_copy_added_bytes"],
        "incremental_blobs_copied": results["backup_incremental_blobs_copied"],
        "ratio_backup_to_cp_a": round(ratio, 4),
        "ratio_backup_copy_to_cp_a_sync": round(ratio_copy, 4),
        "host": benchlib.host(disk_free_bytes=free),
    }
    benchlib.write_result(args.out, "backup", now, out)


if __name__ == "__main__":
    main()
