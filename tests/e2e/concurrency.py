#!/usr/bin/env python3
"""50 SMTP clients at once, 20 messages each: all 1,000 arrive exactly once and intact.

Each client keeps one connection and sends its 20 messages on it; every message carries a
unique id on its first line and a body of random size and content. The messages spread
over five accounts and an alias (which fans out to two of them). The maildrops are then
read by five POP3 sessions at once, and every copy is compared by sha-256 with what was
sent, after stripping the trace headers. `tegami check` passes at the end.
"""

import os
import random
import sys
import threading

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import ok  # noqa: E402

CLIENTS = 50
PER_CLIENT = 20
ACCOUNTS = [f"user{i}@example.com" for i in range(5)]
PW = {a: f"pw-{a}" for a in ACCOUNTS}
ALIAS = "pair@example.com"  # -> user0, user1


def make_message(rnd, client, seq):
    mid = f"c{client:02d}-m{seq:02d}"
    size = rnd.choice([200, 1_000, 5_000, 20_000, 60_000])
    words = " ".join(rnd.choice(["tegami", "letter", "mail", "手紙", "post", "."]) for _ in range(size // 6))
    body = "\r\n".join(words[i : i + 70] for i in range(0, len(words), 70))
    msg = (
        f"X-Test-Id: {mid}\r\n"
        f"Message-ID: <{mid}@load.test>\r\n"
        f"From: client{client}@load.test\r\n"
        f"Subject: load {mid}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
        f"{body}\r\n"
    ).encode("utf-8")
    rcpt = ALIAS if seq % 7 == 0 else ACCOUNTS[(client + seq) % len(ACCOUNTS)]
    return mid, f"client{client}@load.test", rcpt, msg


def test():
    t = h.Tegami("concurrency")
    t.domain("example.com")
    for a in ACCOUNTS:
        t.account(a, PW[a])
    t.alias(ALIAS, ACCOUNTS[0], ACCOUNTS[1])
    srv = t.serve()
    ok("server ready with five accounts and an alias")

    sent = {}  # id -> (sender, sha, expected accounts)
    errors = []
    lock = threading.Lock()
    barrier = threading.Barrier(CLIENTS)

    def client(c):
        rnd = random.Random(c)
        try:
            batch = [make_message(rnd, c, s) for s in range(PER_CLIENT)]
            barrier.wait(timeout=60)
            s = h.smtp_client(srv.smtp, timeout=120)
            for mid, sender, rcpt, msg in batch:
                refused = s.sendmail(sender, [rcpt], msg, mail_options=["BODY=8BITMIME"])
                assert not refused, f"{mid}: refused {refused}"
                targets = ACCOUNTS[:2] if rcpt == ALIAS else [rcpt]
                with lock:
                    sent[mid] = (sender, h.sha(msg), len(msg), targets)
            s.quit()
        except BaseException as e:  # noqa: BLE001
            with lock:
                errors.append(f"client {c}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(CLIENTS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=600)
        assert not th.is_alive(), "a client thread is still running after 600 s"
    assert not errors, f"{len(errors)} clients failed; first: {errors[:5]}"
    assert len(sent) == CLIENTS * PER_CLIENT, f"{len(sent)} messages acknowledged"
    ok(f"{CLIENTS} concurrent clients x {PER_CLIENT} messages: all {len(sent)} got 250")

    results = {}

    def reader(account):
        try:
            results[account] = h.pop3_fetch_all(srv.pop3, account, PW[account], timeout=120)
        except BaseException as e:  # noqa: BLE001
            results[account] = e

    readers = [threading.Thread(target=reader, args=(a,), daemon=True) for a in ACCOUNTS]
    for th in readers:
        th.start()
    for th in readers:
        th.join(timeout=600)
        assert not th.is_alive(), "a POP3 reader is still running after 600 s"

    seen = {}  # (id, account) -> count
    for account in ACCOUNTS:
        got = results[account]
        if isinstance(got, BaseException):
            raise AssertionError(f"POP3 for {account} failed: {type(got).__name__}: {got}")
        for n, uid, data in got:
            assert data.count(b"\r\nX-Test-Id: ") == 1, f"{account} message {n}: no single X-Test-Id line after the trace"
            mid = data.split(b"\r\nX-Test-Id: ", 1)[1].split(b"\r\n", 1)[0].decode()
            assert mid in sent, f"{account} message {n} has unknown id {mid!r}"
            sender, digest, length, targets = sent[mid]
            assert account in targets, f"{mid} was delivered to {account}, which is not among {targets}"
            _, rest = h.split_trace(data, f"X-Test-Id: {mid}", sender)
            assert h.sha(rest) == digest and len(rest) == length, (
                f"{mid} in {account}: sha-256/length differ from what was sent ({len(rest)} vs {length} bytes)"
            )
            seen[(mid, account)] = seen.get((mid, account), 0) + 1
    expected = {(mid, a) for mid, v in sent.items() for a in v[3]}
    missing = expected - set(seen)
    dups = {k: v for k, v in seen.items() if v != 1}
    assert not missing, f"{len(missing)} copies missing, e.g. {sorted(missing)[:5]}"
    assert not dups, f"{len(dups)} copies stored more than once, e.g. {list(dups.items())[:5]}"
    ok(f"all {len(expected)} copies retrieved exactly once and byte-exact (five POP3 sessions in parallel)")

    t.check_store("after the concurrent load")
    ok("tegami check passes")
    code = srv.stop()
    assert code == 0, f"serve exited {code} after SIGTERM"
    ok("SIGTERM stops the server with exit 0")


if __name__ == "__main__":
    h.main(test, timeout=600)
