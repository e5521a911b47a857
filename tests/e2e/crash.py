#!/usr/bin/env python3
"""kill -9 under load, again and again: every acknowledged message survives, byte for byte.

Each round starts the server, verifies what the previous round left, empties the maildrops
(DELE + QUIT), runs `tegami check`, then lets 16 threads send continuously and SIGKILLs the
server at a random moment 0.2-1.5 s later; `tegami check` must pass then too, with the
server down, as an operator would run it after a power cut. A message counts as acknowledged only when its
DATA got 250; those must all be there after the restart, exactly once per target account,
byte-exact. A message whose client saw an error may be there or not, but never twice and
never damaged. Nothing deleted (DELE + QUIT answered +OK) may come back, and no id that was
never sent may appear. Set CRASH_SEED to replay a run, CRASH_ROUNDS to change its length.
"""

import os
import random
import smtplib
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import ok  # noqa: E402

ROUNDS = int(os.environ.get("CRASH_ROUNDS", "20"))
SENDERS = 16
ACCOUNTS = [f"k{i}@example.com" for i in range(4)]
PW = {a: f"pw-{a}" for a in ACCOUNTS}
ALIAS = "both@example.com"  # -> k0, k1


class Ledger:
    """What the clients were told, kept across rounds."""

    def __init__(self):
        self.lock = threading.Lock()
        self.acked = {}  # id -> (sender, sha, len, targets): got 250
        self.errored = {}  # id -> (sender, sha, len, targets): client saw an error
        self.deleted = set()  # ids verified then deleted with DELE + QUIT
        self.found_errored = 0


def make_message(rnd, mid):
    size = rnd.choice([300, 2_000, 8_000, 30_000, 120_000])
    fill = rnd.randbytes(size // 2).hex()
    body = "\r\n".join(fill[i : i + 76] for i in range(0, len(fill), 76))
    msg = (f"X-Crash-Id: {mid}\r\nMessage-ID: <{mid}@crash.test>\r\nSubject: crash {mid}\r\n\r\n{body}\r\n").encode()
    rcpt = ALIAS if rnd.random() < 0.2 else rnd.choice(ACCOUNTS)
    return msg, rcpt


def sender_loop(port, rnd_seed, prefix, ledger, stop):
    rnd = random.Random(rnd_seed)
    seq = 0
    while not stop.is_set():
        try:
            s = smtplib.SMTP(h.HOST, port, local_hostname="client.test", timeout=10)
        except OSError:
            time.sleep(0.02)
            continue
        try:
            s.ehlo()
            while not stop.is_set():
                mid = f"{prefix}-{seq}"
                seq += 1
                msg, rcpt = make_message(rnd, mid)
                sender = f"{prefix}@crash.test"
                rec = (sender, h.sha(msg), len(msg), ACCOUNTS[:2] if rcpt == ALIAS else [rcpt])
                try:
                    refused = s.sendmail(sender, [rcpt], msg)
                except (smtplib.SMTPException, OSError) as e:
                    with ledger.lock:
                        ledger.errored[mid] = rec
                    if isinstance(e, smtplib.SMTPResponseException) and e.smtp_code < 500 and e.smtp_code != 421:
                        continue  # a 4xx on a live connection: go on with the next message
                    raise
                if refused:
                    with ledger.lock:
                        ledger.errored[mid] = rec
                else:
                    with ledger.lock:
                        ledger.acked[mid] = rec
        except (smtplib.SMTPException, OSError):
            pass
        finally:
            s.close()


def verify(t, srv, ledger, round_no):
    """Reads every maildrop, checks it against the ledger, then deletes what it read."""
    copies = {}  # (id, account) -> count
    for account in ACCOUNTS:
        for n, uid, data in h.pop3_fetch_all(srv.pop3, account, PW[account], delete=True, timeout=120):
            assert b"\r\nX-Crash-Id: " in data, f"{account} message {n} has no X-Crash-Id after its trace: {data[:300]!r}"
            mid = data.split(b"\r\nX-Crash-Id: ", 1)[1].split(b"\r\n", 1)[0].decode()
            assert mid not in ledger.deleted, f"round {round_no}: {mid} in {account} came back after DELE + QUIT"
            rec = ledger.acked.get(mid) or ledger.errored.get(mid)
            assert rec is not None, f"round {round_no}: {account} holds {mid}, which no client ever sent"
            sender, digest, length, targets = rec
            assert account in targets, f"{mid} stored for {account}, sent to {targets}"
            _, rest = h.split_trace(data, f"X-Crash-Id: {mid}", sender)
            assert len(rest) == length and h.sha(rest) == digest, (
                f"round {round_no}: {mid} in {account} is damaged: {len(rest)} bytes after the trace, sent {length}"
            )
            copies[(mid, account)] = copies.get((mid, account), 0) + 1
    dups = {k: v for k, v in copies.items() if v > 1}
    assert not dups, f"round {round_no}: duplicated copies {list(dups.items())[:5]}"
    pending = {mid: rec for mid, rec in ledger.acked.items() if mid not in ledger.deleted}
    missing = [(mid, a) for mid, rec in pending.items() for a in rec[3] if (mid, a) not in copies]
    assert not missing, (
        f"round {round_no}: {len(missing)} acknowledged copies lost after kill -9, e.g. {missing[:5]}"
    )
    errored_found = {mid for mid, _ in copies if mid in ledger.errored}
    ledger.found_errored += len(errored_found)
    ledger.deleted.update(mid for mid, _ in copies)
    ledger.deleted.update(pending)
    for account in ACCOUNTS:
        p = h.pop3_login(srv.pop3, account, PW[account])
        count, _ = p.stat()
        p.quit()
        assert count == 0, f"round {round_no}: {account} still has {count} messages after DELE + QUIT"
    return len(pending), len(errored_found)


def test():
    seed = int(os.environ.get("CRASH_SEED", str(int(time.time()))))
    h.note(f"CRASH_SEED={seed}")
    rnd = random.Random(seed)
    t = h.Tegami("crash")
    t.domain("example.com")
    for a in ACCOUNTS:
        t.account(a, PW[a])
    t.alias(ALIAS, ACCOUNTS[0], ACCOUNTS[1])

    ledger = Ledger()
    started = time.monotonic()
    rounds_done = 0
    total_acked = 0
    for r in range(ROUNDS + 1):
        srv = t.serve()
        acked, err_found = verify(t, srv, ledger, r)
        total_acked += acked
        t.check_store(f"after restart {r}")
        if r > 0:
            ok(f"round {r}: restart after kill -9; {acked} acknowledged messages intact, "
               f"{err_found} unacknowledged ones stored intact; deletions kept; "
               "tegami check passes after the kill and after the restart")
        if r == ROUNDS:
            code = srv.stop()
            assert code == 0, f"serve exited {code} after SIGTERM"
            break
        stop = threading.Event()
        threads = [
            threading.Thread(target=sender_loop, args=(srv.smtp, rnd.random(), f"r{r + 1}t{i}", ledger, stop), daemon=True)
            for i in range(SENDERS)
        ]
        for th in threads:
            th.start()
        time.sleep(rnd.uniform(0.2, 1.5))
        srv.kill()
        stop.set()
        for th in threads:
            th.join(timeout=30)
            assert not th.is_alive(), "a sender thread did not stop within 30 s of the kill"
        rounds_done += 1
        # What an operator does after a power cut, before starting the server again.
        t.check_store(f"right after kill -9 in round {r + 1}, with the server down")
    assert total_acked > 0, "no message was ever acknowledged: the test exercised nothing"
    ok(f"{rounds_done} kill -9 rounds in {time.monotonic() - started:.0f} s: {total_acked} acknowledged messages "
       f"all survived; {len(ledger.errored)} unacknowledged attempts, {ledger.found_errored} of them stored intact")


if __name__ == "__main__":
    h.main(test, timeout=300)
