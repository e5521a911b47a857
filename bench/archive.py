#!/usr/bin/env python3
"""mbox import and `archive create` of a large store, each against a copy of the same data.

Writes an mbox of -n messages (default 100,000) of --size bytes (default 10 KB) dated
across 2020 (From_ lines), streaming, in a work directory on the repository's disk. Then,
in the same run and with nothing dirty in the page cache before each step, times:
  1. `cp` of the mbox + `sync`, against `tegami import mbox` of it into a new store
     (messages/s, MB/s, peak memory of the tegami process);
  2. `cp -a` of the data directory + `sync`, against `tegami archive create --before
     2021-01-01 --json`, which moves every message into archive 1 (messages/s, the live
     store's size before and after, the archive's size, peak memory); then `archive search`
     (median of 5) and `archive export --csv` of that archive.
Prints a table and writes bench/results/archive-<timestamp>.json. See bench/README.md.
"""

import argparse
import csv
import datetime
import hashlib
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from email.header import Header
from email.utils import format_datetime
from pathlib import Path

sys.dont_write_bytecode = True
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
import benchlib  # noqa: E402

ACCOUNT = "a@example.com"
PASSWORD = "bench-password"
BEFORE = "2021-01-01"
LABEL = "2020"
RARE_WORD = "quokka"  # in one message of 1,000 (never in the word list)
RARE_JA = "稟議書"  # in another one of 1,000 (never in the Japanese lines)
COMMON_WORD = "meeting"  # in the word list: in nearly every message

WORDS = """
the of and to in is that for it as was with be by on not he this are or his at which but
have an they you were her she there been one all we their has would when if so no will can more
other what up out about into only some could them time these two may then do first any my now
such like our over man me even most made after also did many before must through back years
where much your way well down should because each just those people how too little state good
very make world still own see men work long get here between both life being under never day
same another know while last might us great old year off come since against go came right used
take three states himself few house use during without again place around however home small
found thought went say part once general high upon school every keep report meeting budget
quarter invoice schedule server mailbox delivery customer project review update question answer
please thanks regards attached document draft final version release support network backup disk
memory storage archive search index message folder account password address office team monday
tuesday wednesday thursday friday weekend morning afternoon evening tomorrow yesterday deadline
agenda minutes summary proposal contract order shipment payment receipt travel hotel flight
""".split()
assert RARE_WORD not in WORDS and "from" not in WORDS

JA_LINES = """
お世話になっております。先日の件についてご連絡いたします。
来週の打ち合わせは火曜日の午後三時からでお願いします。
添付の資料をご確認のうえ、ご意見をいただけますと幸いです。
サーバーのディスク容量が残り少なくなっています。
見積書を本日中にお送りいたします。よろしくお願いいたします。
会議室の予約を変更しました。三階の第二会議室です。
メールの送受信に問題がある場合は管理者までご連絡ください。
四半期の売上報告をまとめましたので共有いたします。
出張の日程が決まりましたらお知らせください。
バックアップは毎晩二時に自動で実行されます。
先月分の請求書を再発行いたしました。
新しいアカウントの設定手順を説明します。
ご不明な点がございましたらお気軽にお問い合わせください。
今後ともどうぞよろしくお願い申し上げます。
""".split()
assert all(RARE_JA not in line for line in JA_LINES)

JA_SUBJECTS = ["打ち合わせの件", "資料送付のお知らせ", "請求書について", "サーバー保守のご案内",
               "来週の予定", "議事録の共有", "出張のご報告"]
PEOPLE = ["tanaka", "suzuki", "sato", "yamamoto", "kobayashi", "alice", "bob", "carol", "dave",
          "erin", "frank", "grace", "heidi", "ivan", "judy"]
DOMAINS = ["example.org", "example.net", "mail.example.jp", "corp.example.co.jp"]
YEAR_START = datetime.datetime(2020, 1, 2, tzinfo=datetime.timezone.utc)
YEAR_SPAN = (datetime.datetime(2020, 12, 30, tzinfo=datetime.timezone.utc) - YEAR_START).total_seconds()
JST = datetime.timezone(datetime.timedelta(hours=9))


# ---------------------------------------------------------------------------
# The mbox


def line_pool(rnd, count=4000):
    """Body lines of 40-76 characters of real words (ASCII), made once and reused."""
    pool = []
    for _ in range(count):
        words, length = [], 0
        target = rnd.randint(40, 76)
        while length < target:
            w = rnd.choice(WORDS)
            words.append(w)
            length += len(w) + 1
        text = " ".join(words)
        pool.append((text[0].upper() + text[1:]).encode())
    return pool


def write_mbox(path, n, size, seed=1):
    """Writes n messages of exactly `size` bytes each (LF line ends, before the mbox's own
    From_ line and separator) to `path`, streaming. Returns (bytes, rare-word counts)."""
    rnd = random.Random(seed)
    pool = line_pool(rnd)
    ja = [t.encode() for t in JA_LINES]
    rare = {RARE_WORD: 0, RARE_JA: 0}
    total = 0
    with open(path, "wb", buffering=1 << 20) as f:
        for i in range(n):
            # Chronological across 2020, a little jitter, never near a year boundary.
            when = YEAR_START + datetime.timedelta(seconds=YEAR_SPAN * (i + rnd.random() * 0.9) / n)
            sender = f"{rnd.choice(PEOPLE)}@{rnd.choice(DOMAINS)}"
            if rnd.random() < 0.3:
                subject = Header(f"{rnd.choice(JA_SUBJECTS)} ({i})", "utf-8").encode()
            else:
                subject = " ".join(rnd.choices(WORDS, k=rnd.randint(3, 7))).capitalize() + f" ({i})"
            head = (
                f"From: {sender.split('@')[0].capitalize()} <{sender}>\n"
                f"To: {ACCOUNT}\n"
                f"Subject: {subject}\n"
                f"Date: {format_datetime(when.astimezone(JST))}\n"
                f"Message-ID: <bench-archive-{i}.{when.strftime('%Y%m%d%H%M%S')}@{sender.split('@')[1]}>\n"
                "MIME-Version: 1.0\n"
                "Content-Type: text/plain; charset=UTF-8\n"
                "Content-Transfer-Encoding: 8bit\n"
                "\n"
            ).encode()
            parts = [head]
            used = len(head)
            extra = []
            if i % 1000 == 7:
                extra.append(f"The {RARE_WORD} file is attached.".encode())
                rare[RARE_WORD] += 1
            if i % 1000 == 507:
                extra.append(f"{RARE_JA}を添付しました。ご確認ください。".encode())
                rare[RARE_JA] += 1
            for line in extra:
                parts.append(line + b"\n")
                used += len(line) + 1
            while True:
                line = rnd.choice(ja) if rnd.random() < 0.08 else rnd.choice(pool)
                if used + len(line) + 1 > size:
                    break
                parts.append(line + b"\n")
                used += len(line) + 1
            room = size - used
            if room > 0:  # fill to the exact size with a cut ASCII line
                parts.append(rnd.choice(pool)[: room - 1].rstrip(b" ").ljust(room - 1, b".") + b"\n")
            msg = b"".join(parts)
            assert len(msg) == size or size < len(head) + 2, (i, len(msg))
            from_line = f"From {sender} {when.strftime('%a %b %e %H:%M:%S %Y')}\n".encode()
            f.write(from_line)
            f.write(msg)
            f.write(b"\n")
            total += len(from_line) + len(msg) + 1
            if (i + 1) % 20000 == 0:
                print(f"  ... {i + 1} messages written", flush=True)
    return total, rare


# ---------------------------------------------------------------------------
# Running and measuring


def rss_kib(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


class Measured:
    def __init__(self, seconds, code, out, err, peak_kib, samples):
        self.seconds, self.code, self.out, self.err = seconds, code, out, err
        self.peak_kib, self.samples = peak_kib, samples


TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


def child_pid(pid):
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return int(kids[0]) if kids else None
    except (OSError, ValueError):
        return None


def run(what, argv, work, stdin=None, check=True, quiet=False, heartbeat=30):
    """Runs argv to completion: wall time, exit code, output, the peak RSS of the process
    (GNU time's %M: exact, even for a short life; else the last VmHWM sampled) and its
    VmRSS every 0.5 s. Not wait4's ru_maxrss: a vfork'd child inherits Python's."""
    out_path, err_path, time_path = work / ".out", work / ".err", work / ".time"
    time_path.unlink(missing_ok=True)
    full = [TIME, "-f", "%M", "-o", str(time_path), *argv] if TIME else list(argv)
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(full, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                             stdout=out, stderr=err)
        if stdin is not None:
            p.stdin.write(stdin.encode())
            p.stdin.close()
        samples, hwm, done = [], [0], threading.Event()

        def sampler():
            last = time.monotonic()
            pid = None
            while not done.wait(0.5):
                pid = pid or (child_pid(p.pid) if TIME else p.pid)
                if pid is None:
                    continue
                r = rss_kib(pid, "VmRSS:")
                hwm[0] = max(hwm[0], rss_kib(pid, "VmHWM:") or 0)
                if r is not None:
                    samples.append((round(time.perf_counter() - t0, 1), r))
                if heartbeat and time.monotonic() - last >= heartbeat:
                    last = time.monotonic()
                    print(f"    ... {what}: {time.perf_counter() - t0:.0f} s, RSS {(r or 0) / 1024:.1f} MiB", flush=True)

        th = threading.Thread(target=sampler, daemon=True)
        th.start()
        p.wait()
        seconds = time.perf_counter() - t0
        done.set()
        th.join()
    peak = hwm[0]
    if TIME:
        try:
            peak = int(time_path.read_text().split()[-1])
        except (OSError, ValueError, IndexError):
            pass
    m = Measured(seconds, p.returncode, out_path.read_text(errors="replace"), err_path.read_text(errors="replace"),
                 peak, samples)
    if check and m.code != 0:
        raise SystemExit(f"{what} failed (exit {m.code}): {m.err.strip() or m.out.strip()}")
    if not quiet:
        print(f"{what:<52} {seconds:9.2f} s", flush=True)
    return m


def sync():
    subprocess.run(["sync"], check=True)


def du(path, exclude=None):
    """(apparent bytes, allocated bytes) of path, leaving out the top-level entry `exclude`."""
    path = Path(path)
    if not path.exists():
        return 0, 0
    entries = [path] if exclude is None else [e for e in path.iterdir() if e.name != exclude]
    apparent = allocated = 0
    for e in entries:
        for flags, key in ((["-sb"], "a"), (["-s", "--block-size=1"], "k")):
            p = subprocess.run(["du", *flags, str(e)], capture_output=True, text=True)
            v = int(p.stdout.split()[0]) if p.returncode == 0 and p.stdout.strip() else 0
            if key == "a":
                apparent += v
            else:
                allocated += v
    if exclude is not None:  # the directory's own entry
        allocated += path.stat().st_blocks * 512
    return apparent, allocated


def last_json(text):
    text = text.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        for line in reversed(text.splitlines()):
            line = line.strip()
            if line.startswith(("{", "[")):
                return json.loads(line)
    raise SystemExit(f"no JSON in the output: {text[-500:]!r}")


def default_work_parent():
    """/var/tmp or /tmp, whichever is on the repository's file system (not a tmpfs)."""
    repo_dev = os.stat(REPO).st_dev
    for d in ("/var/tmp", "/tmp"):
        if os.path.isdir(d) and os.stat(d).st_dev == repo_dev:
            return d
    return str(REPO.parent)


def mib(kib):
    return kib / 1024


def tail(path, limit=4000):
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return None
    return text[-limit:]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.environ.get("TEGAMI_BIN") or str(REPO / "target" / "release" / "tegami"),
                    help="tegami binary (default: $TEGAMI_BIN or target/release/tegami; it builds nothing)")
    ap.add_argument("-n", "--messages", type=int, default=100_000, help="messages (default 100000)")
    ap.add_argument("--size", type=int, default=10_240, help="bytes per message (default 10240)")
    ap.add_argument("--work", default=None,
                    help="parent of the run's work directory (default /var/tmp or /tmp, on the repository's disk)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (mbox, store, archive, CSV)")
    ap.add_argument("--runs", type=int, default=5, help="archive search runs (median; default 5)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results"), help="directory for the JSON result")
    args = ap.parse_args()
    if args.messages < 1 or args.size < 512:
        raise SystemExit("-n must be at least 1 and --size at least 512")

    binary = Path(args.bin).resolve()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise SystemExit(f"no tegami binary at {binary}: run `cargo build --release -p tegami` or pass --bin")
    for sub in (["archive", "create", "--help"], ["import", "mbox", "--help"]):
        if subprocess.run([str(binary), *sub], capture_output=True).returncode != 0:
            raise SystemExit(f"{binary} has no `{' '.join(sub[:-1])}` command: rebuild it "
                             "(cargo build --release -p tegami)")

    parent = Path(args.work or default_work_parent())
    parent.mkdir(parents=True, exist_ok=True)
    data_size = args.messages * args.size
    free = shutil.disk_usage(parent).free
    if free < 4 * data_size:
        raise SystemExit(f"{parent} has {free / 2**30:.1f} GiB free; this run needs 4 x the data size "
                         f"({4 * data_size / 2**30:.1f} GiB for {args.messages} x {args.size} bytes): the mbox, "
                         "its copy, the store and its cp -a copy. Pass --work DIR on a larger disk, or a smaller -n")
    work = Path(tempfile.mkdtemp(prefix="tegami-bench-archive-", dir=parent))
    print(f"work directory {work} ({free / 2**30:.1f} GiB free)", flush=True)

    # A private copy: a rebuild of target/release during the run changes nothing here.
    tegami = work / "tegami"
    shutil.copy2(binary, tegami)
    bin_sha = hashlib.sha256(tegami.read_bytes()).hexdigest()
    data = work / "data"
    tg = [str(tegami), "--data", str(data)]
    mbox = work / "bench.mbox"
    r = {}
    try:
        # -- the mbox -------------------------------------------------------------------
        print(f"writing {args.messages} messages of {args.size} bytes to {mbox} ...", flush=True)
        t0 = time.perf_counter()
        mbox_bytes, rare = write_mbox(mbox, args.messages, args.size)
        gen_s = time.perf_counter() - t0
        print(f"  {mbox_bytes / 2**20:.1f} MiB in {gen_s:.1f} s", flush=True)
        sync()

        # -- 1. import, against cp + sync of the mbox ------------------------------------
        print("\n1. import", flush=True)
        m = run("cp MBOX copy (not durable)", ["cp", str(mbox), str(work / "mbox.copy")], work)
        r["cp_mbox_s"] = m.seconds
        r["sync_after_cp_mbox_s"] = run("  sync", ["sync"], work).seconds
        r["cp_mbox_durable_s"] = r["cp_mbox_s"] + r["sync_after_cp_mbox_s"]
        (work / "mbox.copy").unlink()
        sync()

        run("tegami domain add", tg + ["domain", "add", "example.com"], work, quiet=True)
        run("tegami account add", tg + ["account", "add", ACCOUNT, "--password-stdin"], work,
            stdin=PASSWORD + "\n", quiet=True)
        sync()
        imp = run("tegami import mbox", tg + ["import", "mbox", str(mbox), "--account", ACCOUNT], work)
        r["import_s"] = imp.seconds
        summary = imp.out.strip().splitlines()[-1] if imp.out.strip() else ""
        got = re.search(r"imported (\d+) messages", summary)
        if not got or int(got.group(1)) != args.messages:
            raise SystemExit(f"import did not import {args.messages} messages: {imp.out[-2000:]!r} {imp.err[-2000:]!r}")
        odd_import = [ln for ln in imp.out.splitlines() if ln.startswith(("skipped", "repaired"))]
        if odd_import:
            print(f"  note: import reported {len(odd_import)} skipped/repaired: {odd_import[:3]}", flush=True)
        sync()
        live_before = du(data)

        # -- 2. archive, against cp -a + sync of the data directory ----------------------
        print("\n2. archive", flush=True)
        r["cp_a_s"] = run("cp -a DATA DATA.copy (not durable)", ["cp", "-a", str(data), str(work / "data.copy")], work).seconds
        r["sync_after_cp_a_s"] = run("  sync", ["sync"], work).seconds
        r["cp_a_durable_s"] = r["cp_a_s"] + r["sync_after_cp_a_s"]
        shutil.rmtree(work / "data.copy")
        sync()

        arc = run(f"tegami archive create --before {BEFORE}",
                  tg + ["archive", "create", "--before", BEFORE, "--label", LABEL, "--json"], work)
        r["archive_s"] = arc.seconds
        created = last_json(arc.out)
        if created.get("messages") != args.messages or str(created.get("id")) != "1":
            raise SystemExit(f"archive create: expected archive 1 with {args.messages} messages, got {created}")
        sync()
        live_after = du(data, exclude="archive")
        archive_size = du(data / "archive")
        listing = last_json(run("tegami archive list --json", tg + ["archive", "list", "--json"], work, quiet=True).out)

        searches = {}
        for name, query, want in (("rare_word", RARE_WORD, rare[RARE_WORD]),
                                  ("rare_japanese", RARE_JA, rare[RARE_JA])):
            times = []
            for k in range(args.runs):
                s = run(f"tegami archive search 1 {query} --json", tg + ["archive", "search", "1", query, "--json",
                        "--limit", str(args.messages)], work, quiet=k > 0, heartbeat=0)
                hits = last_json(s.out)
                if len(hits) != want:
                    raise SystemExit(f"archive search {query!r}: {len(hits)} hits, expected {want}")
                times.append(s.seconds)
            searches[name] = {"query": query, "hits": want, "runs": len(times),
                              "median_ms": round(statistics.median(times) * 1000, 1),
                              "min_ms": round(min(times) * 1000, 1), "max_ms": round(max(times) * 1000, 1)}
            print(f"  median of {len(times)}: {searches[name]['median_ms']:.1f} ms, {want} hits", flush=True)

        csv_path = work / "archive-1.csv"
        exp = run("tegami archive export 1 --csv FILE", tg + ["archive", "export", "1", "--csv", str(csv_path)], work)
        r["export_csv_s"] = exp.seconds
        with open(csv_path, newline="", encoding="utf-8") as f:
            rows = sum(1 for _ in csv.reader(f)) - 1
        if rows != args.messages:
            raise SystemExit(f"archive export --csv: {rows} rows, expected {args.messages}")
        csv_bytes = csv_path.stat().st_size

        logs = {name: tail(data / "log" / name) for name in ("archive.log", "archive_result.log", "import.log")}
        # `phases: snapshot 0.0 s, index 0.5 s, ...`: where archive create spent its time.
        phases = {k: float(v) for k, v in re.findall(r"(\w+) ([\d.]+) s",
                  (re.search(r"^phases: (.*)$", logs["archive_result.log"] or "", re.M) or [None, ""])[1])}
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    n = args.messages
    imp_rate, arc_rate = n / r["import_s"], n / r["archive_s"]
    ratio_import = r["import_s"] / r["cp_mbox_durable_s"]
    ratio_archive = r["archive_s"] / r["cp_a_durable_s"]
    ratio_archive_nosync = r["archive_s"] / r["cp_a_s"]
    print(f"\n{n} messages of {args.size} bytes; mbox {mbox_bytes / 2**20:.1f} MiB; "
          f"data directory after import {live_before[0] / 2**20:.1f} MiB ({live_before[1] / 2**20:.1f} MiB allocated)")
    print(f"import:  {imp_rate:8.0f} msg/s  {mbox_bytes / 1e6 / r['import_s']:7.1f} MB/s   peak RSS {mib(imp.peak_kib):7.1f} MiB   "
          f"import / (cp + sync) {ratio_import:6.2f}  ({r['import_s']:.2f} s vs {r['cp_mbox_durable_s']:.2f} s)")
    print(f"archive: {arc_rate:8.0f} msg/s  {live_before[0] / 1e6 / r['archive_s']:7.1f} MB/s   peak RSS {mib(arc.peak_kib):7.1f} MiB   "
          f"archive / (cp -a + sync) {ratio_archive:6.2f}  ({r['archive_s']:.2f} s vs {r['cp_a_durable_s']:.2f} s; "
          f"vs cp -a alone {ratio_archive_nosync:.2f})")
    print(f"live store: {live_before[0] / 2**20:.1f} MiB before, {live_after[0] / 2**20:.1f} MiB after "
          f"(allocated {live_before[1] / 2**20:.1f} -> {live_after[1] / 2**20:.1f} MiB); "
          f"archive {archive_size[0] / 2**20:.1f} MiB ({archive_size[1] / 2**20:.1f} MiB allocated)")
    for name, s in searches.items():
        print(f"archive search {s['query']}: median {s['median_ms']:.1f} ms [{s['min_ms']:.1f}-{s['max_ms']:.1f}], {s['hits']} hits")
    print(f"archive export --csv: {r['export_csv_s']:.2f} s, {rows} rows, {csv_bytes / 2**20:.1f} MiB")
    if logs.get("archive_result.log"):
        print("\nlog/archive_result.log (latest run):\n" + logs["archive_result.log"].rstrip())

    now = datetime.datetime.now(datetime.timezone.utc)
    out = {
        "benchmark": "archive",
        "timestamp": now.isoformat(timespec="seconds"),
        "commit": benchlib.git_commit(),
        "binary": str(binary),
        "binary_sha256": bin_sha,
        "settings": {"messages": n, "size": args.size, "before": BEFORE, "label": LABEL, "search_runs": args.runs},
        "mbox": {"bytes": mbox_bytes, "generate_s": round(gen_s, 2)},
        "seconds": {k: round(v, 3) for k, v in r.items()},
        "import": {
            "messages_per_sec": round(imp_rate, 1),
            "mb_per_sec": round(mbox_bytes / 1e6 / r["import_s"], 2),
            "peak_rss_kib": imp.peak_kib,
            "rss_samples_kib": imp.samples[:: max(1, len(imp.samples) // 60)],
            "ratio_to_cp_sync": round(ratio_import, 4),
            "summary": summary,
        },
        "archive": {
            "messages_per_sec": round(arc_rate, 1),
            "peak_rss_kib": arc.peak_kib,
            "rss_samples_kib": arc.samples[:: max(1, len(arc.samples) // 60)],
            "ratio_to_cp_a_sync": round(ratio_archive, 4),
            "ratio_to_cp_a": round(ratio_archive_nosync, 4),
            "json": created,
            "list": listing,
            "live_bytes_before": live_before[0], "live_allocated_before": live_before[1],
            "live_bytes_after": live_after[0], "live_allocated_after": live_after[1],
            "archive_bytes": archive_size[0], "archive_allocated": archive_size[1],
            "phases_s": phases,
            "stderr": arc.err[-2000:],
        },
        "search": searches,
        "export_csv": {"seconds": round(r["export_csv_s"], 3), "rows": rows, "bytes": csv_bytes,
                       "peak_rss_kib": exp.peak_kib},
        "logs": logs,
        "host": benchlib.host(disk_free_bytes=free, work_parent=str(parent)),
    }
    benchlib.write_result(args.out, "archive", now, out)


if __name__ == "__main__":
    main()
