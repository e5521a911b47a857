#!/usr/bin/env python3
"""Damaged and truncated backups are refused; a good one replaces the live data atomically.

A backup taken with --copy-blobs (so damaging it cannot touch the live store) is copied
three times and each copy damaged: one flipped byte in a blob; the database cut in half; an
interrupted copy (half the blob files missing). For each, `backup verify` exits non-zero and
names the damaged file, and `restore --force` refuses with one line naming it, leaving every
file of the live store as it was. `restore` also refuses while the server runs (saying to
stop it) and, without --force, to replace an existing store. Then the good backup is
restored: the data directory is swapped (the old one kept as DATA.before-restore-TIME with
the mail that arrived after the backup), log/ and backups/ move over, the restore is in
log/backup.log, and a server on the restored data serves exactly the mail of the backup.

Then regressions of issue 16: one byte of a live blob flipped in place (the same inode a
linked backup holds): `backup create --verify` exits non-zero, says DAMAGED first, leaves the
blob out and names it in damaged.txt; `check` finds it and `doctor` then exits non-zero with
the failure first; a body the store's owner cannot read (mode 000) makes `doctor`, run as
that owner, exit non-zero naming it.
"""

import hashlib
import os
import re
import shutil
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import ok  # noqa: E402

PW = {"alice@example.com": "alice-pw", "bob@example.com": "bob-pw"}


def msg(mid):
    body = "".join(f"{mid}: line {i:03d} of a message worth backing up\r\n" for i in range(60))
    return f"X-Damage-Id: {mid}\r\nSubject: {mid}\r\n\r\n{body}".encode()


def tree_digest(root):
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name not in ("tegami.db-shm", "tegami.db-open") and "log" not in p.parts:
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def ids(srv):
    out = {}
    for account, pw in PW.items():
        out[account] = sorted(
            data.split(b"X-Damage-Id: ", 1)[1].split(b"\r\n", 1)[0].decode()
            for _, _, data in h.pop3_fetch_all(srv.pop3, account, pw)
        )
    return out


def refused(t, live, backup, what, names):
    r = t.cli("restore", str(backup), "--force", check=False, timeout=120)
    assert r.code != 0, f"restore of a backup with {what} succeeded: {r!r}"
    lines = [line for line in r.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("tegami: "), f"restore with {what}: not one line: {r!r}"
    assert names in lines[0] and "nothing was changed" in lines[0], f"restore with {what} does not name {names}: {r!r}"
    assert tree_digest(t.data) == live, f"a refused restore ({what}) changed the live store"
    assert not list(t.root.glob("data.restoring-*")), "a refused restore left its work directory behind"
    return lines[0]


def verify_fails(t, root, name, names):
    r = t.cli("backup", "verify", name, "--dir", str(root), check=False, timeout=120)
    assert r.code != 0, f"verify of {name} passed: {r!r}"
    assert names in r.out and names in r.err, f"verify of {name} does not name {names}: {r!r}"
    return r


def test():
    t = h.Tegami("damage")
    t.domain("example.com")
    for a, pw in PW.items():
        t.account(a, pw)
    srv = t.serve()
    for i in range(12):
        h.send(srv.smtp, "s@ext.test", [list(PW)[i % 2]], msg(f"m{i}"))
    root = t.root / "backups"
    r = t.cli("backup", "create", "--to", str(root), "--copy-blobs")
    bid = re.search(r"^backup (\S+) taken", r.out, re.M).group(1)
    at_backup = ids(srv)
    for i in range(12, 15):
        h.send(srv.smtp, "s@ext.test", [list(PW)[i % 2]], msg(f"m{i}"))
    later = ids(srv)
    sums = (root / bid / "SHA256SUMS").read_text().splitlines()
    blobs = [line.split("  ", 1)[1] for line in sums if "  blobs/" in line]
    assert len(blobs) == 12, sums

    r = t.cli("restore", bid, "--dir", str(root), "--force", check=False)
    assert r.code != 0 and "server is running" in r.err and "stop" in r.err, f"restore beside a running server: {r!r}"
    ok("restore refuses while the server runs, and says to stop it")
    code = srv.stop()
    assert code == 0
    live = tree_digest(t.data)

    bad = root / "bad-blob"
    shutil.copytree(root / bid, bad)
    target = bad / blobs[5]
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    verify_fails(t, root, "bad-blob", blobs[5])
    line = refused(t, live, bad, "a flipped byte", blobs[5])
    ok(f"one flipped byte: verify names {blobs[5]}; restore refuses: {line}")

    cut = root / "cut-database"
    shutil.copytree(root / bid, cut)
    db = (cut / "tegami.db").read_bytes()
    (cut / "tegami.db").write_bytes(db[: len(db) // 2])
    verify_fails(t, root, "cut-database", "tegami.db")
    refused(t, live, cut, "a truncated database", "tegami.db")
    ok("a database cut in half: verify names tegami.db; restore refuses")

    partial = root / "interrupted-copy"
    shutil.copytree(root / bid, partial)
    for rel in blobs[6:]:
        (partial / rel).unlink()
    r = verify_fails(t, root, "interrupted-copy", blobs[6])
    assert "missing" in r.out, r
    refused(t, live, partial, "missing files", blobs[6])
    ok("half the blob files missing (an interrupted copy): verify names them missing; restore refuses")

    r = t.cli("restore", bid, "--dir", str(root), check=False)
    assert r.code != 0 and "--force" in r.err, f"restore over a store without --force: {r!r}"
    assert tree_digest(t.data) == live
    ok("restore over an existing store without --force refuses and says to add it")

    r = t.cli("restore", bid, "--dir", str(root), "--force", timeout=120)
    kept = sorted(t.root.glob("data.before-restore-*"))
    assert len(kept) == 1, f"the previous data directory was not kept: {list(t.root.iterdir())}"
    assert str(kept[0]) in r.out, r
    assert (t.data / "log" / "backup.log").exists() and not (kept[0] / "log").exists(), "log/ did not move over"
    history = (t.data / "log" / "backup.log").read_text()
    assert f"backup {bid} finished" in history and f"restore of backup {bid}" in history, history
    assert "refused" in history, history
    srv = t.serve()
    assert ids(srv) == at_backup, f"restored mail differs from the backup: {ids(srv)} vs {at_backup}"
    srv.stop()
    t.check_store("after the restore")
    old = h.Tegami("kept")
    old.data = kept[0]
    srv = old.serve()
    assert ids(srv) == later, "the kept previous data lost mail"
    srv.stop()
    ok(f"restore --force swapped the data directory; the old one is {kept[0].name} with the later mail; "
       "log/ moved over; the restored server serves the backup's mail and check passes")

    damaged_in_place(t)


def doctor_failures(t):
    """(exit code, the FAIL line doctor prints first, or "", the result)."""
    r = t.cli("doctor", check=False)
    lines = r.out.splitlines()
    return r.code, (lines[1] if len(lines) > 1 and lines[1].startswith("FAIL:") else ""), r


def damaged_in_place(t):
    """Regressions (issue 16.7 and 16.12): a live blob damaged in place (same inode, so in
    every backup that linked it too) used to be hard-linked into the next backup without a
    word, and `backup create --verify` and `doctor` exited 0 on damage."""
    code, fails, r = doctor_failures(t)
    assert "Store" not in fails and "Checks" not in fails, f"doctor fails a healthy store: {r!r}"
    blob = t.blob_files()[0]
    size = blob.stat().st_size
    with open(blob, "r+b") as f:
        f.seek(size // 2)
        byte = f.read(1)
        f.seek(size // 2)
        f.write(bytes([byte[0] ^ 1]))
    into = t.root / "after-damage"
    r = t.cli("backup", "create", "--to", str(into), "--verify", check=False, timeout=120)
    assert r.code != 0, f"backup create exits 0 with a damaged blob: {r!r}"
    assert r.out.startswith("DAMAGED:") and r.err.startswith("tegami: DAMAGED:"), f"damage not said first: {r!r}"
    assert blob.name in r.out, r
    bid = re.search(r"^backup (\S+) taken", r.out, re.M).group(1)
    assert (into / bid / "damaged.txt").read_text().startswith(blob.name)
    assert not (into / bid / "blobs" / blob.name[:2] / blob.name).exists(), "the damaged blob is in the backup"
    assert "result: failed" in (t.data / "log" / "backup_result.log").read_text()
    ok(f"a blob damaged in place: backup create --verify exits {r.code}, says DAMAGED first, leaves "
       f"{blob.name[:12]}... out and names it in damaged.txt")

    r = t.cli("check", check=False, timeout=120)
    assert r.code != 0, f"check passes a damaged blob: {r!r}"
    code, fails, r = doctor_failures(t)
    assert code != 0 and "last check" in fails, f"doctor after a check that found damage: {r!r}"
    ok(f"doctor after a check that found the damage exits {code} and says first: {fails[:100]}")

    # Message bodies the server's own user cannot read: doctor run as that user fails.
    uid, gid = 4242, 4243
    os.chmod(t.root, 0o755)
    for p in [t.data, *t.data.rglob("*")]:
        os.lchown(p, uid, gid)
    other = t.blob_files()[1]
    os.chmod(other, 0)
    r = h.CliResult(["doctor"], *_run_as(t, uid, gid, "doctor"))
    lines = r.out.splitlines()
    assert r.code != 0 and len(lines) > 1 and lines[1].startswith("FAIL:") and "blobs" in lines[1], \
        f"doctor as the owner on unreadable bodies: {r!r}"
    assert "cannot be read" in lines[1] and other.name in r.out, r
    ok(f"doctor as the store's owner with a body it cannot read exits {r.code}: {lines[1][:100]}")


def _run_as(t, uid, gid, *args):
    import subprocess
    p = subprocess.run([t.bin, "--data", str(t.data), *args], capture_output=True, timeout=60,
                       user=uid, group=gid, extra_groups=[], stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


if __name__ == "__main__":
    h.main(test, timeout=300)
