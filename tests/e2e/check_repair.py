#!/usr/bin/env python3
"""`tegami check`, `tegami check --repair` and `tegami optimize` on a store we damage by hand.

A healthy store: `check` passes beside the running server and with it stopped, and
writes log/maintenance_result.log (replaced each run); `optimize` exits 0, appends to
log/optimize.log and replaces log/optimize_result.log. Then, one at a time: a blob with one
flipped byte is found (non-zero exit, the blob's hash and the affected message, account
and uid, named; the result log says so) and, flipped back, the store passes again; a
deleted blob is found the same way. `check` sets no maintenance mode and does not
optimise. Then, with the flipped byte back, an orphan blob older than 5 minutes, a young
orphan and a wrong reference count added: `check --repair` moves the damaged blob to
quarantine/<hash>, lists the affected messages, says what it could not fix and exits
non-zero, recounts the reference, moves the old orphan to quarantine/orphans/ (never
deleting it: it may be lost mail) and leaves the young one; a
second `check` still fails on the damaged mail and on nothing else. The server then still
serves every healthy message intact and never serves damaged bytes as if they were good.
"""

import hashlib
import os
import re
import sqlite3
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import ok  # noqa: E402

PW = {"alice@example.com": "alice-pw", "bob@example.com": "bob-pw"}
FILLERS = 16  # messages before the interesting ones, so their uids are distinctive numbers


def msg(mid, lines=50):
    body = "".join(f"{mid}: body line {i:04d}, plain text that stays readable\r\n" for i in range(lines))
    return f"Message-ID: <{mid}@check.test>\r\nFrom: s@ext.test\r\nSubject: {mid}\r\n\r\n{body}".encode()


def blob_of(t, mid):
    """The one blob file holding the message with this Message-ID."""
    needle = f"Message-ID: <{mid}@check.test>".encode()
    found = [p for p in t.blob_files() if needle in p.read_bytes()]
    assert len(found) == 1, f"{len(found)} blob files hold {mid}: {found}"
    p = found[0]
    assert p.name == hashlib.sha256(p.read_bytes()).hexdigest(), f"blob {p} is not named by the sha-256 of its bytes"
    assert p.parent.name == p.name[:2] and p.parent.parent.name == "blobs", f"blob {p} not under blobs/ab/"
    return p


def flip(path, offset=None):
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0x01
    mode = path.stat().st_mode
    os.chmod(path, 0o600)
    path.write_bytes(bytes(data))
    os.chmod(path, mode & 0o7777)
    return i


def names_message(text, account, uid):
    """Some line of the report names the account and the uid (as a number of its own)."""
    pat = re.compile(rf"(?<![\w.]){uid}(?![\w])")
    return any(account in line and pat.search(line) for line in text.splitlines())


def read(p):
    try:
        return p.read_text(errors="replace")
    except FileNotFoundError:
        return None


def check_fails(t, what, blobs, messages):
    """`tegami check` must fail, naming every blob hash and every (account, uid)."""
    r = t.cli("check", check=False, timeout=120)
    text = r.out + r.err
    assert r.code != 0, f"check with {what}: exit 0, wanted non-zero: {r!r}"
    for b in blobs:
        assert b in text, f"check with {what}: the output does not name blob {b}: {r!r}"
    for account, uid in messages:
        assert names_message(text, account, uid), f"check with {what}: no line names {account} uid {uid}: {r!r}"
    result = read(t.data / "log" / "maintenance_result.log")
    assert result is not None, f"check with {what} did not write log/maintenance_result.log"
    for b in blobs:
        assert b in result, f"log/maintenance_result.log after check with {what} does not name blob {b}: {result!r}"
    return r


def uids(srv, account):
    """{Message-ID short name: uid} from POP3 UIDL (uidvalidity.uid) and TOP."""
    p = h.pop3_login(srv.pop3, account, PW[account])
    try:
        out = {}
        for n, uidl in h.pop3_uidl(p).items():
            _, lines, _ = p.top(n, 0)
            for line in lines:
                m = re.match(rb"Message-ID: <(.+)@check\.test>", line)
                if m:
                    out[m.group(1).decode()] = uidl.rsplit(".", 1)[-1]
        p.quit()
        return out
    finally:
        p.close()


def test():
    t = h.Tegami("check")
    t.write_config('hostname = "mx.test"\n')
    t.domain("example.com")
    for a, pw in PW.items():
        t.account(a, pw)
    log = t.data / "log"
    srv = t.serve()
    sent = {a: [] for a in PW}
    for i in range(FILLERS):
        for a in PW:
            m = msg(f"fill-{a[0]}{i}", 5)
            h.send(srv.smtp, "s@ext.test", [a], m)
            sent[a].append(m)
    plan = [
        ("flipped", ["alice@example.com"]),
        ("shared", ["alice@example.com", "bob@example.com"]),
        ("gone", ["bob@example.com"]),
        ("counted", ["alice@example.com"]),
    ]
    for mid, rcpts in plan:
        m = msg(mid, 400)
        h.send(srv.smtp, "s@ext.test", rcpts, m)
        for a in rcpts:
            sent[a].append(m)
    uid = {a: uids(srv, a) for a in PW}
    alice_uid, bob_uid = uid["alice@example.com"]["flipped"], uid["bob@example.com"]["gone"]
    h.note(f"flipped: alice uid {alice_uid}; gone: bob uid {bob_uid}")
    ok(f"{sum(len(v) for v in sent.values())} messages delivered to alice and bob")

    r = t.cli("check", check=False, timeout=120)
    assert r.code == 0, f"check beside the running server on a healthy store: {r!r}"
    ok("check beside the running server: exit 0")
    assert srv.stop() == 0

    r = t.check_store("on the healthy store")
    result = read(log / "maintenance_result.log")
    assert result and result.strip(), f"check did not write log/maintenance_result.log: {result!r}"
    ok(f"check on the healthy store: exit 0 ({r.out.strip().splitlines()[-1]!r}); log/maintenance_result.log written")

    r = t.cli("optimize", check=False, timeout=120)
    assert r.code == 0, f"optimize on a healthy store: {r!r}"
    opt_log, opt_result = read(log / "optimize.log"), read(log / "optimize_result.log")
    assert opt_log and opt_log.strip(), f"optimize did not write log/optimize.log: {r!r}"
    assert opt_result and opt_result.strip(), f"optimize did not write log/optimize_result.log: {r!r}"
    with open(log / "optimize.log", "a") as f:
        f.write("SENTINEL-OPTIMIZE-HISTORY\n")
    (log / "optimize_result.log").write_text("SENTINEL-OPTIMIZE-RESULT\n")
    r = t.cli("optimize", check=False, timeout=120)
    assert r.code == 0, f"second optimize: {r!r}"
    opt_log2, opt_result2 = read(log / "optimize.log"), read(log / "optimize_result.log")
    assert opt_log2.startswith(opt_log + "SENTINEL-OPTIMIZE-HISTORY\n") and len(opt_log2) > len(opt_log) + 26, (
        f"log/optimize.log was not appended to by the second optimize: {opt_log2!r}"
    )
    assert "SENTINEL" not in opt_result2 and opt_result2.strip(), f"log/optimize_result.log was not replaced: {opt_result2!r}"
    assert not (t.data / "maint").exists(), "optimize left a maint file"
    t.check_store("after optimize")
    ok("optimize: exit 0, optimize.log appended, optimize_result.log replaced (latest run only), store still healthy")

    (log / "maintenance_result.log").write_text("SENTINEL-CHECK-RESULT\n")
    opt_before = read(log / "optimize_result.log")
    flipped = blob_of(t, "flipped")
    original = flipped.read_bytes()
    flip(flipped)
    damaged = flipped.read_bytes()
    r = check_fails(t, "one flipped byte", [flipped.name], [("alice@example.com", alice_uid)])
    assert "SENTINEL" not in read(log / "maintenance_result.log"), "log/maintenance_result.log was appended to, not replaced"
    assert not (t.data / "maint").exists(), "check set maintenance mode (a maint file appeared)"
    assert read(log / "optimize_result.log") == opt_before, "check changed log/optimize_result.log: it must not optimise"
    ok(f"one flipped byte: check exits {r.code}, names blob {flipped.name[:12]}... and alice@example.com uid {alice_uid}; result log replaced")
    ok("check set no maintenance mode and did not optimise")

    flip(flipped)
    assert flipped.read_bytes() == original
    t.check_store("with the byte flipped back")
    ok("byte flipped back: check passes again")

    gone = blob_of(t, "gone")
    gone_bytes = gone.read_bytes()
    gone.unlink()
    r = check_fails(t, "a deleted blob", [gone.name], [("bob@example.com", bob_uid)])
    ok(f"deleted blob: check exits {r.code}, names blob {gone.name[:12]}... and bob@example.com uid {bob_uid}")

    flip(flipped)
    blobs = t.data / "blobs"
    old_data, young_data = b"an orphan blob, old enough to go\r\n", b"an orphan blob written just now\r\n"
    orphans = {}
    for name, data in (("old", old_data), ("young", young_data)):
        hx = hashlib.sha256(data).hexdigest()
        p = blobs / hx[:2] / hx
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        orphans[name] = p
    ten_min_ago = time.time() - 600
    os.utime(orphans["old"], (ten_min_ago, ten_min_ago))
    counted = blob_of(t, "counted")
    db = sqlite3.connect(t.data / "tegami.db")
    try:
        changed = db.execute("UPDATE blobs SET refcount = refcount + 3 WHERE hash = ?", (bytes.fromhex(counted.name),)).rowcount
        db.commit()
    finally:
        db.close()
    assert changed == 1, "could not raise the reference count of a blob in tegami.db (schema changed?)"
    r = check_fails(
        t, "a flipped byte, a deleted blob, orphans and a wrong count",
        [flipped.name, gone.name, counted.name, orphans["old"].name],
        [("alice@example.com", alice_uid), ("bob@example.com", bob_uid)],
    )
    assert orphans["old"].exists() and orphans["young"].exists(), "check without --repair removed an orphan"
    ok("check finds all of it at once (two damaged blobs, the wrong count, the old orphan) and changes nothing")

    r = t.cli("check", "--repair", check=False, timeout=120)
    text = r.out + r.err
    assert r.code != 0, f"check --repair with damaged mail left: exit 0, wanted non-zero: {r!r}"
    quarantined = t.data / "quarantine" / flipped.name
    assert quarantined.is_file(), f"the damaged blob was not moved to {quarantined}: {r!r}"
    assert quarantined.read_bytes() == damaged, "quarantine holds other bytes than the damaged blob"
    assert not flipped.exists(), f"the damaged blob is still in place at {flipped}"
    for b in (flipped.name, gone.name):
        assert b in text, f"check --repair does not name blob {b}: {r!r}"
    for account, u in (("alice@example.com", alice_uid), ("bob@example.com", bob_uid)):
        assert names_message(text, account, u), f"check --repair does not list the affected message {account} uid {u}: {r!r}"
    assert re.search(r"could not|cannot|can't|not fix|unfixable|backup|restore", text, re.I), (
        f"check --repair does not say what it could not fix: {r!r}"
    )
    ok(f"check --repair: exit {r.code}, damaged blob moved to quarantine/{flipped.name[:12]}..., affected messages listed, "
       "says what it could not fix")

    assert not orphans["old"].exists(), "check --repair left the orphan blob older than 5 minutes"
    kept = t.data / "quarantine" / "orphans" / orphans["old"].name
    assert kept.is_file() and kept.read_bytes() == old_data, f"check --repair did not keep the old orphan in {kept}"
    assert orphans["young"].exists(), "check --repair removed an orphan younger than 5 minutes (it may be a delivery in flight)"
    db = sqlite3.connect(t.data / "tegami.db")
    try:
        stored = db.execute("SELECT refcount FROM blobs WHERE hash = ?", (bytes.fromhex(counted.name),)).fetchone()
        uses = db.execute("SELECT count(*) FROM messages WHERE blob_hash = ?", (bytes.fromhex(counted.name),)).fetchone()
    finally:
        db.close()
    assert stored and stored[0] == uses[0], f"reference count after repair: stored {stored}, used by {uses[0]} messages"
    result = read(log / "maintenance_result.log")
    assert result and flipped.name in result, f"log/maintenance_result.log after the repair does not name the damaged blob: {result!r}"
    ok("check --repair recounted the reference, moved the old orphan to quarantine/orphans/, kept the young one; result log written")

    r = t.cli("check", check=False, timeout=120)
    text = r.out + r.err
    assert r.code != 0, f"check after the repair with damaged mail still in the store: exit 0: {r!r}"
    assert counted.name not in text and orphans["old"].name not in text, f"check after the repair still reports what was repaired: {r!r}"
    assert names_message(text, "alice@example.com", alice_uid) and names_message(text, "bob@example.com", bob_uid), (
        f"check after the repair does not name the damaged messages any more: {r!r}"
    )
    ok(f"check after the repair: exit {r.code}, only the damaged mail is left to report")

    srv = t.serve()
    bad = {("alice@example.com", alice_uid): damaged, ("bob@example.com", bob_uid): gone_bytes}
    for account in PW:
        p = h.pop3_login(srv.pop3, account, PW[account])
        try:
            good = 0
            for n, uidl in h.pop3_uidl(p).items():
                u = uidl.rsplit(".", 1)[-1]
                try:
                    data = h.pop3_retr(p, n)
                except h.poplib.error_proto as e:
                    assert (account, u) in bad, f"{account} uid {u}: a healthy message could not be read: {e}"
                    continue
                assert (account, u) not in bad, f"{account} uid {u}: RETR of the damaged message gave +OK with {len(data)} bytes"
                assert any(data.endswith(b"\r\n" + m) for m in sent[account]), f"{account} uid {u}: retrieved bytes match no sent message"
                good += 1
            p.quit()
        finally:
            p.close()
        assert good == len(sent[account]) - 1, f"{account}: {good} healthy messages readable, wanted {len(sent[account]) - 1}"
    ok("after the repair the server serves every healthy message intact and refuses the two damaged ones with -ERR")

    victim = blob_of(t, "shared")
    flip(victim)
    p = h.pop3_login(srv.pop3, "alice@example.com", PW["alice@example.com"])
    try:
        n = next(n for n, uidl in h.pop3_uidl(p).items() if uidl.rsplit(".", 1)[-1] == uid["alice@example.com"]["shared"])
        try:
            data = h.pop3_retr(p, n)
            raise AssertionError(f"RETR of a message whose blob has a flipped byte gave +OK with {len(data)} bytes")
        except h.poplib.error_proto:
            pass
        resp = p.noop()
        assert resp.startswith(b"+OK"), f"NOOP after the refused RETR: {resp!r}"
        p.quit()
    finally:
        p.close()
    assert srv.alive(), "the server died reading a damaged blob"
    ok("a byte flipped under the running server: RETR says -ERR rather than serving damaged bytes; the session goes on")
    assert srv.stop() == 0


if __name__ == "__main__":
    h.main(test, timeout=180)
