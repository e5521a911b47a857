#!/usr/bin/env python3
"""A burst of deliveries must not take free space past the disk guard's hard floor (issue
16, finding 6). Before the fix four connections got 48 x 512 KB acknowledged within 0.2 s
and took free space from 26 MiB to 20 KiB, because the guard only looked once a second.

On a 40 MiB tmpfs (mounted by the test, as root, like disk_guard.py) filled to ~21 MiB
free, with min_free 12 MiB and hard floor 10 MiB, 8 connections send 1 MiB messages as
fast as they can (half declare SIZE=, half do not), 40 MiB offered in all. A sampler
reads free space every few milliseconds. Checks: free space never went below the hard
floor; every refusal was 452 4.3.1; every message acknowledged is stored intact.
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
MIN_FREE = 12 * MIB
HARD_FLOOR = 10 * MIB
SIZE = MIB
SENDERS = 8
PER_SENDER = 5
PW = "alice-pw"


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def message(tag):
    line = f"{tag} " + "x" * 70 + "\r\n"
    body = line * (SIZE // len(line))
    return f"Message-ID: <{tag}@burst.test>\r\nSubject: {tag}\r\n\r\n{body}".encode()


def sender(port, n, accepted, refusals, errors):
    for i in range(PER_SENDER):
        tag = f"m{n}-{i}"
        m = message(tag)
        c = h.RawSmtp(port, timeout=60)
        try:
            size = f" SIZE={len(m)}" if n % 2 == 0 else ""
            for cmd, want in ((f"MAIL FROM:<s@ext.test>{size}", 250), ("RCPT TO:<alice@example.com>", 250), ("DATA", 354)):
                code, text = c.reply(cmd)
                if code != want:
                    (refusals if code == 452 and text.startswith("4.3.1") else errors).append(f"{tag} {cmd}: {code} {text}")
                    break
            else:
                c.send(m + b".\r\n")
                code, text = c.reply()
                if code == 250:
                    accepted.append(m)
                elif code == 452 and text.startswith("4.3.1"):
                    refusals.append(f"{tag} end of DATA: {code} {text}")
                else:
                    errors.append(f"{tag} end of DATA: {code} {text}")
        except Exception as e:  # noqa: BLE001
            errors.append(f"{tag}: {type(e).__name__}: {e}")
        finally:
            c.close()


def mounted(vol):
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == str(vol) for line in f)


def test():
    t = h.Tegami("burst")
    vol = t.root / "vol"
    vol.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m,mode=0755", "tmpfs", str(vol)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"cannot mount a tmpfs (this test needs root): {r.stderr.strip()}"
    srv = None
    try:
        t.data = vol / "data"
        t.write_config(f"""\
hostname = "mx.test"
[smtp]
max_message_size = {4 * MIB}
[disk]
min_free_bytes = {MIN_FREE}
hard_floor_bytes = {HARD_FLOOR}
""")
        t.domain("example.com")
        t.account("alice@example.com", PW)
        srv = t.serve()
        with open(vol / "filler", "wb") as f:
            f.write(b"\0" * (free_bytes(vol) - 21 * MIB))
            f.flush()
            os.fsync(f.fileno())
        start_free = free_bytes(vol)
        time.sleep(1.5)  # the guard has seen the volume as it now is: above min_free
        lowest = [start_free]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                lowest[0] = min(lowest[0], free_bytes(vol))
                time.sleep(0.002)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        accepted, refusals, errors = [], [], []
        started = time.monotonic()
        threads = [threading.Thread(target=sender, args=(srv.smtp, n, accepted, refusals, errors), daemon=True) for n in range(SENDERS)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=60)
        took = time.monotonic() - started
        time.sleep(0.2)
        stop.set()
        sampler.join()
        assert not errors, "replies other than 250 and 452 4.3.1:\n" + "\n".join(errors[:10])
        assert refusals, f"{len(accepted)} of {SENDERS * PER_SENDER} MiB-sized messages accepted with {start_free // MIB} MiB free: nothing was refused"
        assert lowest[0] >= HARD_FLOOR, (f"free space fell to {lowest[0] // 1024} KiB, below the hard floor of {HARD_FLOOR // 1024} KiB "
                                         f"({len(accepted)} accepted in {took:.2f} s)")
        ok(f"{SENDERS} senders, {SENDERS * PER_SENDER} x 1 MiB in {took:.2f} s from {start_free // 1024} KiB free: "
           f"{len(accepted)} accepted, {len(refusals)} refused with 452 4.3.1; lowest free {lowest[0] // 1024} KiB "
           f">= floor {HARD_FLOOR // 1024} KiB")
        (vol / "filler").unlink()
        got = h.pop3_fetch_all(srv.pop3, "alice@example.com", PW)
        stored = [d for _, _, d in got]
        assert len(got) == len(accepted), f"{len(got)} stored, {len(accepted)} acknowledged"
        for m in accepted:
            assert any(d.endswith(b"\r\n" + m) for d in stored), "an acknowledged message is not stored intact"
        ok("every acknowledged message is stored intact")
        assert srv.stop() == 0
        t.check_store("after the burst")
    finally:
        if srv:
            srv.force_kill()
        if mounted(vol):
            r = subprocess.run(["umount", str(vol)], capture_output=True, text=True, timeout=30)
            if r.returncode != 0:
                subprocess.run(["umount", "-l", str(vol)], capture_output=True, timeout=30)


if __name__ == "__main__":
    h.in_own_mount_namespace()
    h.main(test, timeout=120)
