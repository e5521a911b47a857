#!/usr/bin/env python3
"""Recovery after kill -9: the next start recovers by itself and says what it did.

Three rounds: 16 clients deliver continuously, the server is killed with SIGKILL at a random
moment, and a half-written temporary blob is left in blobs/tmp/ as an interrupted write
would. The next `serve` starts with no prompt and no manual step, and its log has one line
"recovered after an unclean shutdown" with the write-ahead log frames it replayed, the
temporary files it removed (at least the planted one, which is gone) and the reference
counts (ok). Every acknowledged message is served over POP3 byte for byte, and `tegami
check` passes. After a clean stop (SIGTERM) the store is marked closed, and the next start
logs no recovery. Set RECOVERY_SEED to replay a run.
"""

import hashlib
import os
import random
import re
import smtplib
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import ok  # noqa: E402

ROUNDS = 3
SENDERS = 16
ACCOUNTS = [f"r{i}@example.com" for i in range(4)]
PW = {a: f"pw-{a}" for a in ACCOUNTS}
RECOVERED = "recovered after an unclean shutdown"


def sender(port, seed, prefix, acked, lock, stop):
    rnd = random.Random(seed)
    seq = 0
    while not stop.is_set():
        try:
            s = smtplib.SMTP(h.HOST, port, local_hostname="client.test", timeout=10)
            s.ehlo()
        except (smtplib.SMTPException, OSError):
            time.sleep(0.02)
            continue
        try:
            while not stop.is_set():
                mid = f"{prefix}-{seq}"
                seq += 1
                msg = f"X-Recovery-Id: {mid}\r\n\r\n{rnd.randbytes(rnd.choice([100, 5000, 60000])).hex()}\r\n".encode()
                account = rnd.choice(ACCOUNTS)
                if not s.sendmail("s@client.test", [account], msg):
                    with lock:
                        acked[mid] = (account, hashlib.sha256(msg).hexdigest())
        except (smtplib.SMTPException, OSError):
            pass
        finally:
            s.close()


def new_log(srv, since):
    return srv.log_text()[since:]


def test():
    seed = int(os.environ.get("RECOVERY_SEED", str(int(time.time()))))
    h.note(f"RECOVERY_SEED={seed}")
    rnd = random.Random(seed)
    t = h.Tegami("recovery")
    t.domain("example.com")
    for a in ACCOUNTS:
        t.account(a, PW[a])
    acked, lock = {}, threading.Lock()
    srv = t.serve()
    for r in range(1, ROUNDS + 1):
        stop = threading.Event()
        threads = [threading.Thread(target=sender, args=(srv.smtp, rnd.random(), f"r{r}t{i}", acked, lock, stop), daemon=True)
                   for i in range(SENDERS)]
        for th in threads:
            th.start()
        time.sleep(rnd.uniform(0.5, 1.5))
        srv.kill()
        stop.set()
        for th in threads:
            th.join(timeout=30)
        planted = t.data / "blobs" / "tmp" / f"interrupted.{r}"
        planted.write_bytes(b"half of a message body")
        assert (t.data / "tegami.db-open").read_bytes() != b"", "the open marker was cleared by a killed server"

        since = len(srv.log_text())
        srv = t.serve()
        lines = [line for line in new_log(srv, since).splitlines() if RECOVERED in line]
        assert len(lines) == 1, f"round {r}: wanted one recovery line, got {lines}"
        line = lines[0]
        m = re.search(r"\((\d+) frames\), (\d+) temporary files removed, reference counts ok", line)
        assert m and "INFO" in line, f"round {r}: the recovery line does not say what was done: {line}"
        assert int(m.group(2)) >= 1 and not planted.exists(), f"round {r}: the planted temporary file is still there: {line}"
        assert not list((t.data / "blobs" / "tmp").iterdir()), "temporary files left after recovery"

        found = {}
        for account in ACCOUNTS:
            for _, _, data in h.pop3_fetch_all(srv.pop3, account, PW[account], timeout=120):
                mid = data.split(b"\r\nX-Recovery-Id: ", 1)[1].split(b"\r\n", 1)[0].decode()
                _, sent = h.split_trace(data, f"X-Recovery-Id: {mid}", "s@client.test")
                found[mid] = (account, hashlib.sha256(sent).hexdigest())
        lost = [mid for mid in acked if found.get(mid) != acked[mid]]
        assert not lost, f"round {r}: {len(lost)} acknowledged messages lost or damaged, e.g. {lost[:5]}"
        t.check_store(f"after recovery in round {r}")
        said = line.split(RECOVERED, 1)[1].strip(": ")[:80]
        ok(f"round {r}: kill -9 under load, restart: the log says \"{said}\"; "
           f"all {len(acked)} acknowledged messages intact; check passes")

    code = srv.stop()
    assert code == 0, f"serve exited {code} after SIGTERM"
    assert (t.data / "tegami.db-open").read_bytes() == b"", "a clean stop did not mark the store closed"
    since = len(srv.log_text())
    srv = t.serve()
    assert RECOVERED not in new_log(srv, since), "a clean stop was taken for a crash"
    srv.stop()
    ok("after a clean stop the store is marked closed and the next start recovers nothing")


if __name__ == "__main__":
    h.main(test, timeout=300)
