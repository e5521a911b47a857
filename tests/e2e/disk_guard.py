#!/usr/bin/env python3
"""The disk guard on a real, small volume: a 40 MiB tmpfs mounted by the test (as root).

The data directory lives on the tmpfs; the config sets min_free_bytes = 15 MiB and
hard_floor_bytes = 5 MiB. A background sender delivers small messages the whole time.
A filler file brings free space below min_free: MAIL FROM gets 452 4.3.1 within ~2 s, so
does DATA in a session whose MAIL and RCPT were accepted before, and so does the end of a
DATA that was under way; POP3 and IMAP reading keep working and IMAP APPEND gets
NO [UNAVAILABLE]. Below the hard floor POP3 QUIT with
DELE marks gets -ERR [SYS/TEMP] and keeps the messages, and reading still works. With the
filler deleted delivery resumes by itself within ~3 s, and deleting works again. At the
end every message that got 250 is retrievable byte for byte, every refusal was
452 4.3.1, the server is still up, and `tegami check` passes.

The test runs in its own mount namespace when it can (unshare), so the tmpfs goes away
with the test even if it is killed; it is unmounted in any case. A mount that is not
permitted fails the test.
"""

import os
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import ok  # noqa: E402

MIB = 1 << 20
VOLUME = 40 * MIB
MIN_FREE = 15 * MIB
HARD_FLOOR = 5 * MIB
MAX_SIZE = 1 * MIB
PW = {"alice@example.com": "alice-pw", "bob@example.com": "bob-pw"}


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def msg(mid, body_lines=3):
    body = "".join(f"{mid} line {i:05d} of the body, to make it a little longer\r\n" for i in range(body_lines))
    return f"Message-ID: <{mid}@disk.test>\r\nFrom: s@ext.test\r\nSubject: {mid}\r\n\r\n{body}".encode()


def grow(path, target_free, vol):
    """Appends to the filler file until the volume has about target_free bytes free."""
    need = free_bytes(vol) - target_free
    assert need > 0, f"the volume has {free_bytes(vol)} bytes free, already below the wanted {target_free}"
    chunk = b"\0" * MIB
    with open(path, "ab") as f:
        while need > 0:
            n = min(need, MIB)
            f.write(chunk[:n])
            need -= n
        f.flush()
        os.fsync(f.fileno())
    return free_bytes(vol)


class Sender(threading.Thread):
    """Delivers small messages to bob one after another and records every outcome."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.stop = threading.Event()
        self.accepted = []  # (time, message)
        self.deferred = []  # (time, phase, reply)
        self.errors = []
        self.n = 0

    def attempt(self):
        self.n += 1
        m = msg(f"bg-{self.n}")
        c = h.RawSmtp(self.port, timeout=20)
        try:
            for cmd, want in (("MAIL FROM:<bg@ext.test>", 250), ("RCPT TO:<bob@example.com>", 250), ("DATA", 354)):
                code, text = c.reply(cmd)
                if code != want:
                    return self.refused(cmd, code, text)
            c.send(m + b".\r\n")
            code, text = c.reply()
            if code != 250:
                return self.refused("end of DATA", code, text)
            self.accepted.append((time.monotonic(), m))
            c.reply("QUIT")
        finally:
            c.close()

    def refused(self, phase, code, text):
        if code == 452 and text.startswith("4.3.1"):
            self.deferred.append((time.monotonic(), phase, f"{code} {text}"))
        else:
            self.errors.append(f"message {self.n}: {phase} got {code} {text!r} (only 250 or 452 4.3.1 are allowed)")

    def run(self):
        while not self.stop.is_set():
            try:
                self.attempt()
            except Exception as e:  # noqa: BLE001 - every unexpected outcome is a finding
                self.errors.append(f"message {self.n}: {type(e).__name__}: {e}")
            self.stop.wait(0.05)

    def accepted_since(self, t):
        return sum(1 for when, _ in self.accepted if when >= t)


def wait_mail_from(port, want, deadline_s, what):
    """Tries MAIL FROM on one session until it gets `want`; returns (seconds, reply)."""
    started = time.monotonic()
    c = h.RawSmtp(port)
    try:
        while True:
            code, text = c.reply("MAIL FROM:<probe@ext.test>")
            if code == want:
                took = time.monotonic() - started
                c.reply("RSET")
                return took, f"{code} {text}"
            if code == 250:
                c.expect("RSET", 250)
            if time.monotonic() - started > deadline_s:
                raise AssertionError(f"{what}: MAIL FROM still got {code} {text!r} after {deadline_s} s, wanted {want}")
            time.sleep(0.1)
    finally:
        c.close()


def mounted(vol):
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == str(vol) for line in f)


def test():
    t = h.Tegami("disk")
    vol = t.root / "vol"
    vol.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m,mode=0755", "tmpfs", str(vol)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, (
        f"cannot mount a tmpfs (the disk guard test needs root and mount permission): exit {r.returncode}: {r.stderr.strip()}"
    )
    servers = []
    try:
        assert abs(os.statvfs(vol).f_blocks * os.statvfs(vol).f_frsize - VOLUME) < MIB, "the tmpfs does not have the asked size"
        t.data = vol / "data"
        t.write_config(f"""\
hostname = "mx.test"
[smtp]
max_message_size = {MAX_SIZE}
[disk]
min_free_bytes = {MIN_FREE}
hard_floor_bytes = {HARD_FLOOR}
""")
        t.domain("example.com")
        for a, pw in PW.items():
            t.account(a, pw)
        srv = t.serve()
        servers.append(srv)
        ok(f"data directory on a {VOLUME // MIB} MiB tmpfs ({free_bytes(vol) // 1024} KiB free), server up")

        alice = []
        for i in range(5):
            m = msg(f"alice-{i}", 800)
            h.send(srv.smtp, "s@ext.test", ["alice@example.com"], m)
            alice.append(m)
        sender = Sender(srv.smtp)
        sender.start()
        # Sessions in the middle of a transaction when the disk fills.
        before_data = h.RawSmtp(srv.smtp)
        before_data.expect("MAIL FROM:<early@ext.test>", 250)
        before_data.expect("RCPT TO:<alice@example.com>", 250)
        mid_data = h.RawSmtp(srv.smtp)
        mid_data.expect("MAIL FROM:<mid@ext.test>", 250)
        mid_data.expect("RCPT TO:<alice@example.com>", 250)
        mid_data.expect("DATA", 354)
        mid_msg = msg("mid-data", 2000)
        mid_data.send(mid_msg[: len(mid_msg) // 2])
        deadline = time.monotonic() + 30
        while not sender.accepted and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sender.accepted and not sender.deferred and not sender.errors, (
            f"background sender before the disk filled: accepted {len(sender.accepted)}, deferred {sender.deferred}, errors {sender.errors}"
        )
        ok(f"5 messages for alice and {len(sender.accepted)} background messages for bob delivered while space is plenty")

        filler = vol / "filler"
        free = grow(filler, 10 * MIB, vol)
        assert HARD_FLOOR < free < MIN_FREE, f"after filling, {free} bytes free: not between the hard floor and min_free"
        took, reply = wait_mail_from(srv.smtp, 452, 30, "below min_free")
        assert reply.startswith("452 4.3.1"), f"below min_free MAIL FROM got {reply!r}, wanted 452 4.3.1"
        ok(f"free {free // 1024} KiB < min_free: MAIL FROM gets {reply!r} after {took:.2f} s")

        code, text = before_data.reply("DATA")
        assert code == 452 and text.startswith("4.3.1"), f"DATA after MAIL and RCPT accepted before the disk filled: {code} {text!r}, wanted 452 4.3.1"
        before_data.expect("QUIT", 221)
        before_data.close()
        mid_data.send(mid_msg[len(mid_msg) // 2:] + b".\r\n")
        code, text = mid_data.reply()
        assert code == 452 and text.startswith("4.3.1"), f"end of a DATA under way when the disk filled: {code} {text!r}, wanted 452 4.3.1"
        mid_data.expect("QUIT", 221)
        mid_data.close()
        ok("DATA (MAIL/RCPT accepted before) and the end of a DATA under way both get 452 4.3.1")

        got = h.pop3_fetch_all(srv.pop3, "alice@example.com", PW["alice@example.com"])
        assert len(got) == len(alice) and all(d.endswith(b"\r\n" + m) for (_, _, d), m in zip(got, alice)), (
            f"below min_free POP3 reading: {len(got)} messages, wanted {len(alice)} intact"
        )
        ok("below min_free POP3 reading works: all of alice's messages retrieved intact")

        m = h.imap_login(srv.imap, "alice@example.com", PW["alice@example.com"])
        typ, data = m.append("INBOX", None, None, msg("appended-when-full"))
        assert typ == "NO" and b"[UNAVAILABLE]" in data[0], f"IMAP APPEND below min_free: {typ} {data!r}, wanted NO [UNAVAILABLE]"
        typ, data = m.select("INBOX")
        assert typ == "OK" and int(data[0]) == len(alice), f"IMAP SELECT below min_free: {typ} {data!r}"
        typ, data = m.fetch("1", "(BODY.PEEK[])")
        assert typ == "OK" and data[0][1].endswith(b"\r\n" + alice[0]), "IMAP FETCH below min_free did not return the message"
        typ, data = m.store("1", "+FLAGS", "(\\Flagged)")
        assert typ == "OK", f"IMAP STORE between min_free and the hard floor (a small write, not new mail): {typ} {data!r}"
        m.logout()
        ok("below min_free IMAP: APPEND gets NO [UNAVAILABLE], SELECT/FETCH read, STORE (not new mail) still works")

        free = grow(filler, 2 * MIB, vol)
        assert free < HARD_FLOOR, f"{free} bytes free, wanted below the hard floor {HARD_FLOOR}"
        # The server measures every second; the first write it refuses that it allowed above
        # the floor (a flag, not new mail) tells that it has.
        m = h.imap_login(srv.imap, "alice@example.com", PW["alice@example.com"])
        m.select("INBOX")
        deadline = time.monotonic() + 30
        while True:
            typ, data = m.store("1", "+FLAGS", "(\\Seen)")
            if typ == "NO":
                assert b"[UNAVAILABLE]" in data[0], f"IMAP STORE below the hard floor: {typ} {data!r}"
                break
            assert time.monotonic() < deadline, "30 s below the hard floor and a flag can still be set"
            time.sleep(0.2)
        m.logout()
        p = h.RawPop3(srv.pop3)
        assert p.cmd("USER alice@example.com").startswith(b"+OK")
        r = p.cmd("PASS " + PW["alice@example.com"])
        assert r.startswith(b"+OK"), f"POP3 login below the hard floor: {r!r} (reading must keep working)"
        r = p.cmd("DELE 1")
        assert r.startswith(b"+OK"), f"DELE 1 below the hard floor: {r!r}"
        r = p.cmd("QUIT")
        assert r.startswith(b"-ERR [SYS/TEMP]"), f"QUIT with a DELE mark below the hard floor got {r!r}, wanted -ERR [SYS/TEMP]"
        p.close()
        got = h.pop3_fetch_all(srv.pop3, "alice@example.com", PW["alice@example.com"])
        assert len(got) == len(alice), f"below the hard floor a refused QUIT still deleted: {len(got)} messages, wanted {len(alice)}"
        assert all(d.endswith(b"\r\n" + m) for (_, _, d), m in zip(got, alice)), "alice's messages changed below the hard floor"
        m = h.imap_login(srv.imap, "alice@example.com", PW["alice@example.com"])
        m.select("INBOX")
        typ, data = m.store("1", "+FLAGS", "(\\Deleted)")
        assert typ == "NO" and b"[UNAVAILABLE]" in data[0], f"IMAP STORE below the hard floor: {typ} {data!r}, wanted NO [UNAVAILABLE]"
        typ, data = m.fetch("1", "(FLAGS BODY.PEEK[])")
        assert typ == "OK" and b"\\Deleted" not in data[0][0], f"IMAP FETCH below the hard floor: {typ} {data!r}"
        m.logout()
        took, reply = wait_mail_from(srv.smtp, 452, 1, "below the hard floor")
        assert reply.startswith("452 4.3.1"), f"below the hard floor MAIL FROM got {reply!r}"
        ok(f"free {free // 1024} KiB < hard floor: QUIT with DELE gets -ERR [SYS/TEMP] and keeps the message; IMAP STORE gets "
           "NO [UNAVAILABLE] and changes nothing; reading works; MAIL 452")

        filler.unlink()
        freed = time.monotonic()
        took, reply = wait_mail_from(srv.smtp, 250, 30, "after freeing the space")
        h.send(srv.smtp, "s@ext.test", ["alice@example.com"], msg("after-free", 100))
        alice.append(msg("after-free", 100))
        deadline = time.monotonic() + 30
        while sender.accepted_since(freed) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sender.accepted_since(freed) > 0, "the background sender did not get a message through after the space returned"
        ok(f"filler deleted: MAIL FROM gets 250 after {took:.2f} s, delivery resumed by itself (background sender too)")

        p = h.pop3_login(srv.pop3, "alice@example.com", PW["alice@example.com"])
        assert p.dele(1).startswith(b"+OK")
        assert p.quit().startswith(b"+OK"), "QUIT with DELE after the space returned"
        alice.pop(0)
        ok("after the space returned POP3 deletion is committed again")

        time.sleep(0.3)
        sender.stop.set()
        sender.join(timeout=30)
        assert not sender.is_alive(), "the background sender hung"
        assert not sender.errors, "background sender got replies other than 250 / 452 4.3.1:\n" + "\n".join(sender.errors[:20])
        assert sender.deferred, "the background sender was never deferred while the disk was full"
        ok(f"background sender: {len(sender.accepted)} accepted, {len(sender.deferred)} deferred with 452 4.3.1, nothing else")

        assert srv.alive(), "the server died"
        for account, want in (("alice@example.com", alice), ("bob@example.com", [m for _, m in sender.accepted])):
            got = h.pop3_fetch_all(srv.pop3, account, PW[account])
            assert len(got) == len(want), f"{account}: {len(got)} messages stored, {len(want)} were acknowledged with 250"
            for (n, _, data), m in zip(got, want):
                assert data.endswith(b"\r\n" + m), f"{account} message {n} is not the acknowledged one: {data[-200:]!r} vs {m[-200:]!r}"
        ok("every message acknowledged with 250 is stored intact, none of the deferred ones is")
        code = srv.stop()
        assert code == 0, f"serve exited {code} after SIGTERM"
        t.check_store("after the disk filled and emptied")
        ok("tegami check passes on the data directory afterwards")
    finally:
        for s in servers:
            s.force_kill()
        if mounted(vol):
            r = subprocess.run(["umount", str(vol)], capture_output=True, text=True, timeout=30)
            if r.returncode != 0:
                subprocess.run(["umount", "-l", str(vol)], capture_output=True, timeout=30)


if __name__ == "__main__":
    h.in_own_mount_namespace()
    h.main(test, timeout=120)
