#!/usr/bin/env python3
"""The web console's backups and archives screens, as an administrator uses them.

A store gets mail of 2020 and 2022 (Japanese subjects among them) and one message of about
24 MiB. An administrator signs in, takes a backup from the backups page (a job with a
progress page, then the row in the list, the same id `tegami backup list` shows) and
downloads it in Chromium as one tar file:
- the headers: 200, Content-Length equal to the bytes received, Accept-Ranges, an ETag,
  a file name;
- the bytes: unpacked with Python's tarfile, every file of the backup directory is there
  with the same bytes (and nothing else), and `tegami backup verify` passes on the
  unpacked copy;
- resumed: a download cut off half way and resumed with Range + If-Range gives 206 with
  Content-Range, and the two parts are the whole; a range in the middle too; an If-Range of
  another version gets the whole (200); a range beyond the end 416;
- memory: the server's peak RSS (reset through /proc/PID/clear_refs) grows by less than
  16 MiB while it sends an archive of more than 24 MiB;
- verify from the page (a job that says ok), the restore command of the page, run as it is
  with the server stopped, restores the backup (the mail is back).
The archives page: the dry run for "before 2021-01-01" shows the 2020 messages and the
space against the free space; creating it runs as a job; the archive appears in the list
with its count (as `tegami archive list --json` has it); the search finds a Japanese
subject; the CSV export is byte for byte what `tegami archive export --csv` writes; the
check job says it is healthy. A non-administrator gets 403 on both pages and the download.

The administrator's steps run in headless Chromium (tests/e2e/browser.py: the buttons,
the confirmation, the downloads, screenshots in target/e2e-artifacts/console_backup/);
urllib checks the bytes and headers of the download and the refusals.
"""

import base64
import datetime
import http.cookiejar
import json
import os
import random
import re
import shlex
import subprocess
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import browser  # noqa: E402
import harness as h  # noqa: E402
from harness import ok  # noqa: E402

ADMIN, ADMIN_PW = "root@example.com", "root-pw-1"
ALICE, ALICE_PW = "alice@example.com", "alice-pw-1"
UTC = datetime.timezone.utc
OLD, NEW = 30, 10  # messages of 2020 and of 2022
JA_SUBJECT = "議事録の共有"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Client:
    """A signed-in console session over urllib: cookies, CSRF token, redirects seen."""

    def __init__(self, base):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirect)

    def request(self, path, data=None, headers=None, method=None):
        url = path if path.startswith("http") else self.base + path
        body = urllib.parse.urlencode(data).encode() if isinstance(data, dict) else data
        req = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
        try:
            resp = self.opener.open(req, timeout=120)
        except urllib.error.HTTPError as e:
            resp = e
        return resp

    def get(self, path, headers=None):
        r = self.request(path, headers=headers)
        return r.status, r.headers, r.read()

    def page(self, path):
        status, headers, body = self.get(path)
        assert status == 200, f"GET {path}: {status}: {body[:500]!r}"
        return body.decode()

    def sign_in(self, address, password):
        page = self.page("/console/login")
        token = re.search(r'name="login_token" value="([^"]+)"', page).group(1)
        r = self.request("/console/login", {"login_token": token, "next": "/console/", "address": address, "password": password})
        assert r.status in (302, 303), f"sign-in as {address}: {r.status} {r.read()[:300]!r}"


def make_mbox(path, big):
    rnd = random.Random(7)
    out = []
    for i in range(OLD + NEW):
        year = 2020 if i < OLD else 2022
        dt = datetime.datetime(year, 1 + i % 12, 1 + i % 27, 10, i % 60, tzinfo=UTC)
        subject = JA_SUBJECT if i % 10 == 3 else f"report {i}"
        enc = "=?UTF-8?B?" + base64.b64encode(subject.encode()).decode() + "?="
        body = f"line of message {i}\n" * (5 + rnd.randrange(40))
        out.append(
            f"From sender@ext.test {dt.strftime('%a %b %d %H:%M:%S %Y')}\n"
            f"From: Sender <sender@ext.test>\nTo: {ALICE}\nSubject: {enc}\n"
            f"Message-ID: <m{i}@ext.test>\nDate: {dt.strftime('%a, %d %b %Y %H:%M:%S +0000')}\n"
            f"Content-Type: text/plain; charset=utf-8\n\n{body}\n"
        )
    if big:
        data = base64.encodebytes(os.urandom(18 * 1024 * 1024)).decode()
        out.append(
            "From sender@ext.test Tue Mar 01 10:00:00 2022\n"
            f"From: Sender <sender@ext.test>\nTo: {ALICE}\nSubject: big\nMessage-ID: <big@ext.test>\n"
            "Date: Tue, 01 Mar 2022 10:00:00 +0000\nContent-Type: application/octet-stream\n"
            f"Content-Transfer-Encoding: base64\n\n{data}\n"
        )
    path.write_text("".join(out))


def rss_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def files_of(root):
    """{relative path: bytes} of every file under root, and the set of directories."""
    files, dirs = {}, set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        if rel != ".":
            dirs.add(rel)
        for name in filenames:
            p = os.path.join(dirpath, name)
            files[os.path.normpath(os.path.join(rel, name))] = open(p, "rb").read()
    return files, dirs


def job_result(b, timeout=300):
    """The result line of the job page Chromium is on (it reloads itself until then)."""

    def result():
        try:
            return b.has("p.result") and (b.attr("p.result", "class"), b.text("p.result"))
        except browser.WebDriverError:
            return None  # the page was reloading

    classes, text = b.wait_for(result, "the job's result", timeout)
    assert "ok" in classes.split(), f"the job failed: {text}"
    return text


def wait_saved(b, name, timeout=300):
    """The file `name` Chromium finished saving in its download folder. Chromium creates the
    final name empty as soon as a download starts and fills it when the .crdownload is done,
    so the file counts only once no .crdownload is left and its size holds for a second."""
    path = b.downloads / name
    seen = []

    def done():
        partial = [p for p in b.downloads.iterdir() if p.name.endswith(".crdownload")]
        size = path.stat().st_size if path.exists() else -1
        seen.append(size)
        stable = len(seen) >= 6 and len(set(seen[-6:])) == 1
        return path if not partial and size > 0 and stable else None

    return b.wait_for(done, f"{name} to be saved", timeout)


def accept_confirm(b):
    """Accepts the confirm() a form with data-confirm asks."""
    b.wait_for(lambda: _accepted(b), "the confirmation dialog")


def _accepted(b):
    try:
        b._call("POST", b._s("/alert/accept"), {})
        return True
    except browser.WebDriverError:
        return False


def in_bytes(human):
    """'59.0 GiB' -> bytes, as tegami writes sizes."""
    number, unit = human.split()
    scale = {"B": 1, "bytes": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}[unit]
    return float(number) * scale


def test():
    t = h.Tegami("console-backup")
    t.domain("example.com")
    t.cli("account", "add", ADMIN, "--admin", "--password-stdin", stdin=ADMIN_PW + "\n")
    t.account(ALICE, ALICE_PW)
    mbox = t.root / "mail.mbox"
    make_mbox(mbox, big=True)
    t.cli("import", "mbox", str(mbox), "--account", ALICE, timeout=300)
    srv = t.serve()
    base = f"http://{h.HOST}:{srv.http}"

    # --- take a backup from the page, in Chromium, and download it --------------------------
    b = browser.Browser()
    browser.sign_in(b, base, ADMIN, ADMIN_PW)
    b.get(base + "/console/admin/backups")
    assert b.has("form#create") and "No backups yet" in b.text("main")
    ok("in Chromium, the backups page shows the form to take one and no backup yet")
    b.click("form#create button[type=submit]")
    summary = job_result(b)
    b.screenshot("backup-job")
    assert summary.startswith("backup ") and " taken in " in summary, summary
    backup_id = summary.split()[1]
    listed = t.cli("backup", "list").out
    assert backup_id in listed, listed
    ok(f"the page's button takes a backup as a job that ends in {summary!r}, the id `backup list` shows")
    b.get(base + "/console/admin/backups")
    row = b.text(f'table#backups tr[data-id="{backup_id}"]')
    assert "manual" in row and "ok" in row, row
    b.screenshot("backups")
    ok(f"the backup is in table#backups, verified: {row!r}")
    backup_dir = t.data / "backups" / backup_id

    rss_start = rss_kib(srv.pid, "VmRSS")
    with open(f"/proc/{srv.pid}/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    b.click(f'table#backups tr[data-id="{backup_id}"] a.download')
    saved = wait_saved(b, f"tegami-backup-{backup_id}.tar")
    hwm = rss_kib(srv.pid, "VmHWM")
    whole = saved.read_bytes()
    assert saved.name == f"tegami-backup-{backup_id}.tar", saved.name
    saved.unlink()
    ok(f"Chromium downloads it as {saved.name} ({len(whole)} bytes)")
    assert len(whole) > 24 * 1024 * 1024, len(whole)
    grew = hwm - rss_start
    assert grew < 16 * 1024, f"peak RSS grew by {grew} KiB while sending {len(whole)} bytes"
    ok(f"the server's peak RSS grew by {grew} KiB while it sent {len(whole) >> 20} MiB (constant memory)")

    unpacked = t.root / "unpacked"
    unpacked.mkdir()
    tar_path = t.root / "download.tar"
    tar_path.write_bytes(whole)
    with tarfile.open(tar_path) as tar:
        names = tar.getnames()
        tar.extractall(unpacked, filter="tar")
    assert all(n == backup_id or n.startswith(backup_id + "/") for n in names), names[:5]
    got_files, got_dirs = files_of(unpacked / backup_id)
    want_files, want_dirs = files_of(backup_dir)
    want_files.pop("verified.toml", None)
    assert set(got_files) == set(want_files), (set(got_files) ^ set(want_files))
    differ = [p for p in want_files if got_files[p] != want_files[p]]
    assert not differ, f"files differ: {differ[:5]}"
    assert got_dirs == want_dirs, got_dirs ^ want_dirs
    ok(f"unpacked, the download holds exactly the backup's {len(want_files)} files with the same bytes "
       f"(all but verified.toml, a local record) and its {len(want_dirs)} directories")
    v = t.cli("backup", "verify", str(unpacked / backup_id), timeout=300)
    assert ": ok:" in v.out, v
    ok("`tegami backup verify` passes on the unpacked download")

    # --- the same download byte by byte -------------------------------------------------------
    c = Client(base)
    c.sign_in(ADMIN, ADMIN_PW)
    dl = f"/console/admin/backups/{backup_id}/download"
    status, headers, again = c.get(dl)
    assert status == 200 and again == whole, (status, len(again))
    assert int(headers["Content-Length"]) == len(whole), headers
    assert headers["Accept-Ranges"] == "bytes" and headers["ETag"].startswith('"'), headers
    assert headers["Content-Type"] == "application/x-tar", headers
    assert f'filename="tegami-backup-{backup_id}.tar"' in headers["Content-Disposition"], headers
    ok("downloaded again: the same bytes, with Content-Length, Accept-Ranges, an ETag and the file name")
    etag = headers["ETag"]
    half = len(whole) // 2 + 12345
    r = c.request(dl)
    first = r.read(half)
    r.close()  # the connection drops half way
    assert first == whole[:half]
    status, h2, rest = c.get(dl, {"Range": f"bytes={half}-", "If-Range": etag})
    assert status == 206, status
    assert h2["Content-Range"] == f"bytes {half}-{len(whole) - 1}/{len(whole)}", h2
    assert int(h2["Content-Length"]) == len(rest)
    assert first + rest == whole
    ok(f"a download cut off at byte {half} and resumed with Range and If-Range is the same {len(whole)} bytes")
    a, z = 1000, 7 * 1024 * 1024 + 3
    status, h3, mid = c.get(dl, {"Range": f"bytes={a}-{z}"})
    assert status == 206 and mid == whole[a:z + 1], (status, len(mid))
    assert h3["Content-Range"] == f"bytes {a}-{z}/{len(whole)}", h3
    status, _, tail = c.get(dl, {"Range": "bytes=-700"})
    assert status == 206 and tail == whole[-700:]
    ok("a range in the middle and the last 700 bytes are the archive's bytes")
    status, _, again = c.get(dl, {"Range": f"bytes={half}-", "If-Range": '"another-version"'})
    assert status == 200 and again == whole, status
    r = c.request(dl, method="HEAD")
    assert r.status == 200 and int(r.headers["Content-Length"]) == len(whole) and r.read() == b"", r.status
    ok("HEAD says the length without sending the archive")
    status, h4, _ = c.get(dl, {"Range": f"bytes={len(whole)}-"})
    assert status == 416 and h4["Content-Range"] == f"bytes */{len(whole)}", (status, h4)
    ok("a resume of another version gets the whole archive (200), a range past the end 416")
    status, _, _ = c.get("/console/admin/backups/..%2Fx/download")
    assert status in (400, 404), status
    status, _, _ = c.get("/console/admin/backups/20000101T000000Z/download")
    assert status == 404, status
    ok("an id that is not a backup of the backup directory is refused")

    # --- verify from the page ----------------------------------------------------------------
    b.get(base + "/console/admin/backups")
    b.click(f'table#backups tr[data-id="{backup_id}"] form.verify button')
    summary = job_result(b)
    assert f"backup {backup_id}: ok:" in summary, summary
    ok(f"verifying from the page: {summary!r}")
    b.get(base + "/console/admin/backups")
    b.click("form#prune button")
    accept_confirm(b)
    pruned = b.text("table#pruned")
    assert backup_id in pruned and "kept: daily, " in pruned and "removed" not in pruned, pruned
    assert (backup_dir / "manifest.toml").exists()
    ok(f"pruning from the page keeps the one backup and says why: {pruned.splitlines()[-1]!r}")

    # --- archives, in Chromium ----------------------------------------------------------------
    b.get(base + "/console/admin/archives")
    assert "No archives yet" in b.text("main")
    b.execute("document.querySelector('form#plan input[name=before]').value = arguments[0]", "2021-01-01")
    b.type("form#plan input[name=label]", "old")
    b.click("form#plan button[type=submit]")
    b.find("#plan-messages")
    b.screenshot("archive-plan")
    shown = b.text("#plan-messages")
    assert shown == str(OLD), shown
    assert "ok" in b.attr("#plan-verdict", "class").split(), b.text("#plan-verdict")
    dry = t.cli("archive", "create", "--before", "2021-01-01", "--dry-run").out
    assert f"would archive {OLD} messages" in dry, dry
    free, needed = b.text("#plan-free"), b.text("#plan-needed")
    assert needed in dry, (needed, dry)
    # Free space moves while other tests write to the disk: the two readings agree within
    # a few tenths of a GiB, not to the digit.
    cli_free = re.search(r"free: ([\d.]+ [KMGT]?i?B)", dry)
    assert cli_free and abs(in_bytes(free) - in_bytes(cli_free.group(1))) <= 0.01 * in_bytes(free) + 2**29, (
        free, dry)
    ok(f"the dry run shows the {OLD} messages of 2020, {needed} needed against {free} free, as the CLI's")
    b.click("form#create button[type=submit]")
    accept_confirm(b)
    summary = job_result(b)
    assert summary.startswith(f"archive 1 created: {OLD} messages") and 'label "old"' in summary, summary
    ok(f"archiving from the page runs as a job: {summary!r}")
    listed = json.loads(t.cli("archive", "list", "--json").out)
    assert len(listed) == 1 and listed[0]["messages"] == OLD and listed[0]["label"] == "old", listed
    b.get(base + "/console/admin/archives")
    b.screenshot("archives")
    assert b.text('table#archives tr[data-id="1"] td.messages') == str(OLD)
    assert b.text('table#archives tr[data-id="1"] td.label') == "old"
    ok(f"the archive is in table#archives with its {OLD} messages and label, as `archive list --json` says")
    b.click('table#archives tr[data-id="1"] a.csv')
    saved = wait_saved(b, "archive-1.csv", timeout=60)
    csv_bytes = saved.read_bytes()
    saved.unlink()
    cli_csv = t.root / "cli.csv"
    t.cli("archive", "export", "1", "--csv", str(cli_csv))
    assert csv_bytes == cli_csv.read_bytes(), (csv_bytes[:300], cli_csv.read_bytes()[:300])
    assert csv_bytes.count(b"\n") == OLD + 1
    ok(f"the CSV Chromium downloads ({len(csv_bytes)} bytes, {OLD} rows) is byte for byte `tegami archive export --csv`")
    b.get(base + "/console/admin/archives/1")
    b.type("form#search input[name=subject]", "議事録")
    b.click("form#search button[type=submit]")
    b.find("p.count")
    want = sum(1 for i in range(OLD) if i % 10 == 3)
    subjects = b.texts("table#hits td.subject")
    assert subjects == [JA_SUBJECT] * want, subjects
    b.screenshot("archive-search")
    ok(f"searching the archive for a Japanese subject finds its {want} messages")
    b.get(base + "/console/admin/archives")
    b.click('table#archives tr[data-id="1"] form.check button')
    summary = job_result(b)
    assert summary.startswith(f"archive 1: healthy: {OLD} messages"), summary
    ok(f"checking the archive from the page: {summary!r}")

    status, _, ja = c.get("/console/admin/backups", {"Accept-Language": "ja"})
    assert status == 200 and "バックアップ一覧" in ja.decode() and "復元" in ja.decode()
    status, _, ja = c.get("/console/admin/archives", {"Accept-Language": "ja,en;q=0.5"})
    assert status == 200 and "アーカイブ一覧" in ja.decode()
    ok("with Accept-Language: ja both pages are in Japanese")

    # --- who may ----------------------------------------------------------------------------
    u = Client(base)
    u.sign_in(ALICE, ALICE_PW)
    for path in ("/console/admin/backups", "/console/admin/archives", dl, "/console/admin/archives/1/export.csv"):
        status, _, _ = u.get(path)
        assert status == 403, (path, status)
    anon = Client(base)
    status, headers, _ = anon.get(dl)
    assert status in (302, 303) and "/console/login" in headers["Location"], (status, headers)
    ok("a user who is not an administrator gets 403 on the pages and the download; no session goes to sign-in")

    # --- the restore command ------------------------------------------------------------------
    b.get(base + f"/console/admin/backups?restore={backup_id}")
    commands = b.text("pre#restore-command").splitlines()
    b.screenshot("restore-command")
    assert commands[0] == "systemctl stop tegami" and commands[-1] == "systemctl start tegami", commands
    restore_line = commands[1]
    assert f"restore {backup_dir} --force" in restore_line, restore_line

    def alice_messages():
        for line in t.cli("account", "list").out.splitlines():
            if line.startswith(ALICE + "\t"):
                return int(line.split("\t")[1].split()[0])
        raise AssertionError("alice is not in `account list`")

    assert alice_messages() == NEW + 1
    srv.stop()
    argv = shlex.split(restore_line)
    assert argv[0] == "tegami"
    r = subprocess.run([t.bin] + argv[1:], capture_output=True, timeout=300)
    assert r.returncode == 0, r
    assert f"restored backup {backup_id}" in r.stdout.decode(), r.stdout
    # Archiving moved the 2020 mail after the backup: the restored store has it live again.
    assert alice_messages() == OLD + NEW + 1
    t.check_store("after the restore")
    ok(f"the page's restore command, run as shown with the server stopped, restores backup {backup_id} "
       f"({OLD + NEW + 1} messages live again)")


if __name__ == "__main__":
    h.main(test, timeout=900)
