#!/usr/bin/env python3
"""An online backup while 20 clients deliver, restored on "another machine", byte for byte.

A server runs with five accounts while 20 SMTP clients deliver continuously. `tegami backup
create --to ROOT` runs beside it (no maintenance mode: the clients keep getting 250
throughout), `backup list` and `backup verify` see the backup whole. The backup directory is
then copied elsewhere (as to another machine: no hard link back to the live store) and
`tegami restore` builds a new data directory from the copy. A server started on it serves,
over POP3, every message acknowledged before the backup began, exactly once and byte for
byte; none acknowledged after the backup ended; and `tegami check` passes on it. The restored
directory has the live one's mode, and the live store is untouched by all of this.
"""

import hashlib
import os
import random
import re
import shutil
import smtplib
import sys
import threading
import time
import tomllib

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import ok  # noqa: E402

CLIENTS = 20
ACCOUNTS = [f"user{i}@example.com" for i in range(5)]
PW = {a: f"pw-{a}" for a in ACCOUNTS}


class Ledger:
    def __init__(self):
        self.lock = threading.Lock()
        self.acked = {}  # id -> (account, sha of what was sent, acked at (monotonic))
        self.errors = []

    def any_after(self, when):
        with self.lock:
            return any(at > when for _, _, at in self.acked.values())


def sender(port, n, ledger, stop):
    rnd = random.Random(n)
    seq = 0
    while not stop.is_set():
        try:
            s = h.smtp_client(port)
        except OSError as e:
            ledger.errors.append(f"client {n}: connect: {e}")
            time.sleep(0.05)
            continue
        try:
            while not stop.is_set():
                mid = f"c{n}-{seq}"
                seq += 1
                size = rnd.choice([200, 2_000, 20_000, 90_000])
                body = "".join(f"{mid} line {i:05d} {'x' * 60}\r\n" for i in range(size // 80 + 1))
                msg = f"X-Backup-Id: {mid}\r\nSubject: {mid}\r\n\r\n{body}".encode()
                account = rnd.choice(ACCOUNTS)
                refused = s.sendmail(f"{mid}@client.test", [account], msg)
                assert not refused, refused
                with ledger.lock:
                    ledger.acked[mid] = (account, hashlib.sha256(msg).hexdigest(), time.monotonic())
        except (smtplib.SMTPException, OSError) as e:
            ledger.errors.append(f"client {n}: {type(e).__name__}: {e}")
        finally:
            s.close()


def tree_digest(root):
    """Every file's path, size and checksum: to show the live store was not touched."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name not in ("tegami.db-shm", "tegami.db-wal", "tegami.db-open"):
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def test():
    t = h.Tegami("backup")
    t.domain("example.com")
    for a in ACCOUNTS:
        t.account(a, PW[a])
    srv = t.serve()
    root = t.root / "backups-elsewhere"

    ledger = Ledger()
    stop = threading.Event()
    threads = [threading.Thread(target=sender, args=(srv.smtp, n, ledger, stop), daemon=True) for n in range(CLIENTS)]
    for th in threads:
        th.start()
    # Traffic before and after the backup, counted rather than timed: a loaded machine
    # may deliver slowly.
    deadline = time.monotonic() + 60
    while len(ledger.acked) < 50 and not ledger.errors:
        assert time.monotonic() < deadline, f"only {len(ledger.acked)} messages in 60 s"
        time.sleep(0.1)
    began = time.monotonic()
    r = t.cli("backup", "create", "--to", str(root), timeout=300)
    ended = time.monotonic()
    deadline = time.monotonic() + 30
    while not ledger.errors and not ledger.any_after(ended):
        assert time.monotonic() < deadline, "no message acknowledged in the 30 s after the backup"
        time.sleep(0.1)
    stop.set()
    for th in threads:
        th.join(timeout=60)
        assert not th.is_alive(), "a client did not stop"
    assert not ledger.errors, f"clients saw errors while the backup ran: {ledger.errors[:5]}"
    before = {m for m, (_, _, at) in ledger.acked.items() if at < began}
    during = {m for m, (_, _, at) in ledger.acked.items() if began <= at <= ended}
    after = {m for m, (_, _, at) in ledger.acked.items() if at > ended}
    assert len(before) >= 50 and after, f"too little traffic: {len(before)} before, {len(after)} after"
    ok(f"backup taken in {ended - began:.1f} s while {CLIENTS} clients delivered: {len(before)} messages "
       f"acknowledged before it, {len(during)} during, {len(after)} after, no client saw an error")

    m = re.search(r"^backup (\S+) taken", r.out, re.M)
    assert m, f"backup create did not say which backup it took: {r!r}"
    bid = m.group(1)
    manifest = tomllib.loads((root / bid / "manifest.toml").read_text())
    assert manifest["messages"] >= len(before), manifest
    assert manifest["accounts"] == len(ACCOUNTS) and manifest["complete"] is True, manifest
    assert manifest["blobs"] == manifest["blobs_linked"] + manifest["blobs_copied"], manifest
    assert (t.data / "log" / "backup.log").read_text().count(f"backup {bid} finished") == 1
    result = (t.data / "log" / "backup_result.log").read_text()
    assert result.startswith(f"result: ok: backup {bid}"), result
    ok(f"manifest: {manifest['messages']} messages, {manifest['blobs']} blobs, schema {manifest['schema_version']}; "
       "log/backup.log and log/backup_result.log say so")

    r = t.cli("backup", "list", "--dir", str(root))
    assert bid in r.out and "manual" in r.out, r
    r = t.cli("backup", "verify", bid, "--dir", str(root), timeout=300)
    assert "ok:" in r.out, r
    r = t.cli("backup", "list", "--dir", str(root))
    line = next(line for line in r.out.splitlines() if line.startswith(bid))
    assert " ok " in f" {line} ", f"list does not show the backup verified: {r.out}"
    ok("backup list shows it, backup verify passes, and list then shows it verified")

    code = srv.stop()
    assert code == 0, f"serve exited {code}"
    live = tree_digest(t.data)

    # As if carried to another machine: a plain copy, no hard link back to the live store.
    carried = t.root / "carried" / bid
    shutil.copytree(root / bid, carried)
    other = h.Tegami("restored")
    r = other.cli("restore", str(carried), timeout=300)
    assert "restored backup" in r.out, r
    assert oct(other.data.stat().st_mode & 0o777) == oct(t.data.stat().st_mode & 0o777), "mode not restored"
    srv2 = other.serve()
    found = {}
    for account in ACCOUNTS:
        for n, uid, data in h.pop3_fetch_all(srv2.pop3, account, PW[account], timeout=120):
            mid = data.split(b"\r\nX-Backup-Id: ", 1)[1].split(b"\r\n", 1)[0].decode()
            assert mid not in found, f"{mid} restored twice"
            _, sent = h.split_trace(data, f"X-Backup-Id: {mid}", f"{mid}@client.test")
            found[mid] = (account, hashlib.sha256(sent).hexdigest())
    missing = [mid for mid in before if mid not in found]
    assert not missing, f"{len(missing)} messages acknowledged before the backup are not in it, e.g. {missing[:5]}"
    for mid in before:
        assert found[mid] == ledger.acked[mid][:2], f"{mid} restored differently: {found[mid]} vs {ledger.acked[mid][:2]}"
    late = [mid for mid in after if mid in found]
    assert not late, f"messages acknowledged after the backup ended are in it: {late[:5]}"
    unknown = [mid for mid in found if mid not in ledger.acked]
    assert not unknown, f"messages nobody sent: {unknown[:5]}"
    in_backup = len([mid for mid in during if mid in found])
    ok(f"restored elsewhere: all {len(before)} messages acknowledged before the backup are there byte for byte, "
       f"{in_backup} of {len(during)} from during it, none from after")
    srv2.stop()
    other.check_store("on the restored store")
    ok("tegami check passes on the restored store")
    assert tree_digest(t.data) == live, "the live store changed while its backup was restored elsewhere"
    ok("the live store is untouched")


if __name__ == "__main__":
    h.main(test, timeout=600)
