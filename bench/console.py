#!/usr/bin/env python3
"""The web console's server time per page on a big store, and the size of its assets.

Builds a store of N messages (default 100,000, imported from an mbox into one account's
INBOX, with the older half archived) and a newsletter list of S subscribers (default
10,000), starts `tegami serve` on it, signs in as an administrator and as that user, and
crawls the console: every page the navigation links to, and from each the first few links
of each kind (a message, a campaign, a backup...), following GET links under /console only.
Each page is fetched R times (default 5) over one keep-alive connection; the median time
from request to the last byte is its server time (loopback: the network adds microseconds).

The peer is the console's own stylesheet, served from memory by the same server in the
same run: each page's time is printed as a ratio to it, so a slow or busy machine moves
both. The aim (issue 18) is every page under 50 ms.

    cargo build --release -p tegami
    python3 bench/console.py                        # uses target/release/tegami
    python3 bench/console.py --bin target/debug/tegami -n 20000 -s 2000

Writes bench/results/console-<UTC timestamp>.json.
"""

import argparse
import datetime
import http.client
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import archive as corpus  # noqa: E402  (the mbox writer of the archive benchmark)
import benchlib  # noqa: E402

ADMIN = ("admin@example.com", "admin-bench-pw")
USER = (corpus.ACCOUNT, "user-bench-pw")
AIM_MS = 50.0
# Links that change state or leave the page (downloads, sign-out, language switch).
SKIP = re.compile(r"/(logout|lang|download|export|log)(\b|/|\?|$)|\.csv|/jobs/")


def run(argv, stdin=None):
    r = subprocess.run(argv, input=stdin, capture_output=True, timeout=3600)
    if r.returncode != 0:
        sys.exit(f"{' '.join(map(str, argv))} failed: {r.stderr.decode(errors='replace')[-2000:]}")
    return r.stdout.decode(errors="replace")


class Client:
    """One keep-alive connection with a session cookie."""

    def __init__(self, port):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.cookie = ""

    def request(self, method, path, body=None, headers=None):
        h = {"Cookie": self.cookie} if self.cookie else {}
        h.update(headers or {})
        started = time.perf_counter()
        self.conn.request(method, path, body=body, headers=h)
        reply = self.conn.getresponse()
        data = reply.read()
        return reply.status, reply.headers, data, time.perf_counter() - started

    def sign_in(self, address, password):
        status, headers, page, _ = self.request("GET", "/console/login")
        login = headers["Set-Cookie"].split(";")[0]
        token = re.search(rb'name="login_token" value="([^"]+)"', page).group(1).decode()
        body = urllib.parse.urlencode(
            {"login_token": token, "address": address, "password": password, "next": "/console/"}
        )
        self.cookie = login
        status, headers, _, _ = self.request(
            "POST", "/console/login", body, {"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert status == 303, f"sign-in as {address}: {status}"
        self.cookie = [c for c in headers.get_all("Set-Cookie") if c.startswith("tegami_session=")][0].split(";")[0]


def links(page):
    found = []
    for href in re.findall(rb'href="([^"]+)"', page):
        href = href.decode().replace("&amp;", "&")
        if href.startswith("/console/") and not SKIP.search(href) and "/static/" not in href:
            found.append(href)
    return found


def shape(path):
    """Pages that differ only in numbers or a query are one kind of page."""
    return re.sub(r"\d+", "N", path.split("?")[0])


def crawl(client, start, limit, per_kind=2):
    seen_kinds = {}
    queue = list(start)
    pages = []
    visited = set()
    while queue and len(pages) < limit:
        path = queue.pop(0)
        if path in visited:
            continue
        visited.add(path)
        kind = shape(path)
        if seen_kinds.get(kind, 0) >= per_kind:
            continue
        status, _, body, _ = client.request("GET", path)
        if status != 200:
            continue
        seen_kinds[kind] = seen_kinds.get(kind, 0) + 1
        pages.append(path)
        queue.extend(links(body))
    return pages


def time_pages(client, pages, runs):
    results = []
    for path in pages:
        times = []
        for _ in range(runs):
            status, _, body, seconds = client.request("GET", path)
            assert status == 200, (path, status)
            times.append(seconds)
        results.append({"path": path, "median_ms": statistics.median(times) * 1000, "bytes": len(body)})
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.environ.get("TEGAMI_BIN") or str(benchlib.REPO / "target/release/tegami"))
    ap.add_argument("-n", "--messages", type=int, default=100_000)
    ap.add_argument("-s", "--subscribers", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--pages", type=int, default=80, help="pages crawled at most per account")
    ap.add_argument("--out", default=str(benchlib.REPO / "bench/results"))
    args = ap.parse_args()
    tegami = Path(args.bin).resolve()
    assert tegami.exists(), f"{tegami} not found: build it first (cargo build --release -p tegami)"

    work = Path(tempfile.mkdtemp(prefix="tegami-bench-console-"))
    data = work / "data"
    data.mkdir()
    tg = [str(tegami), "--data", str(data)]
    print(f"building the store in {work}: {args.messages} messages, {args.subscribers} subscribers", flush=True)
    run(tg + ["domain", "add", "example.com"])
    run(tg + ["account", "add", ADMIN[0], "--password-stdin", "--admin"], stdin=(ADMIN[1] + "\n").encode())
    run(tg + ["account", "add", USER[0], "--password-stdin"], stdin=(USER[1] + "\n").encode())
    mbox = work / "mail.mbox"
    corpus.write_mbox(mbox, args.messages, 2000)
    started = time.monotonic()
    run(tg + ["import", "mbox", str(mbox), "--account", USER[0]])
    print(f"imported in {time.monotonic() - started:.0f} s", flush=True)
    mbox.unlink()
    run(tg + ["archive", "create", "--before", "2020-07-01"])
    run(tg + ["list", "add", "news", "--from", "news@example.com"])
    csv_path = work / "subscribers.csv"
    with open(csv_path, "w") as f:
        f.write("email,name,plan\n")
        for i in range(args.subscribers):
            f.write(f"reader{i}@example.net,Reader {i},{'pro' if i % 3 else 'free'}\n")
    run(tg + ["subscriber", "import", "news", str(csv_path)])
    run(tg + ["backup", "create"])

    server = subprocess.Popen(
        tg + ["serve", "--smtp", "127.0.0.1:0", "--submission", "127.0.0.1:0", "--pop3", "127.0.0.1:0",
              "--imap", "127.0.0.1:0", "--http", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    try:
        port = None
        for line in server.stdout:
            m = re.match(rb"tegami listening http [\d.]+:(\d+)", line)
            if m:
                port = int(m.group(1))
            if line.strip() == b"tegami ready":
                break
        assert port, "the server did not report its HTTP port"
        admin, user = Client(port), Client(port)
        admin.sign_in(*ADMIN)
        user.sign_in(*USER)
        baseline = time_pages(admin, ["/console/static/console.css"], args.runs * 4)[0]
        admin_pages = crawl(admin, ["/console/admin"], args.pages)
        user_pages = crawl(user, ["/console/mail"], args.pages)
        results = time_pages(admin, admin_pages, args.runs) + time_pages(user, user_pages, args.runs)
    finally:
        server.terminate()
        server.wait(60)

    if not results:
        sys.exit("no console page answered 200: is this a build with the web console?")
    css = (benchlib.REPO / "crates/web/assets/console.css").stat().st_size
    js = (benchlib.REPO / "crates/web/assets/console.js").stat().st_size
    base_ms = baseline["median_ms"]
    print(f"\nbaseline (the stylesheet, from memory): {base_ms:.2f} ms")
    print(f"{'page':60} {'ms':>8} {'x css':>8} {'KiB':>7}  under {AIM_MS:.0f} ms")
    for r in results:
        verdict = "yes" if r["median_ms"] < AIM_MS else "NO"
        print(f"{r['path'][:60]:60} {r['median_ms']:8.2f} {r['median_ms'] / base_ms:8.1f} {r['bytes'] / 1024:7.1f}  {verdict}")
    slowest = max(results, key=lambda r: r["median_ms"])
    over = [r for r in results if r["median_ms"] >= AIM_MS]
    print(f"\n{len(results)} pages; slowest {slowest['path']} {slowest['median_ms']:.1f} ms; "
          f"{len(over)} over {AIM_MS:.0f} ms")
    print(f"assets: console.css {css} B, console.js {js} B (compiled into the binary)")
    now = datetime.datetime.now(datetime.timezone.utc)
    benchlib.write_result(args.out, "console", now, {
        "commit": benchlib.git_commit(),
        "binary": str(tegami),
        "host": benchlib.host(),
        "messages": args.messages,
        "subscribers": args.subscribers,
        "baseline_ms": base_ms,
        "pages": results,
        "assets_bytes": {"console.css": css, "console.js": js},
    })
    subprocess.run(["rm", "-rf", str(work)])


if __name__ == "__main__":
    main()
