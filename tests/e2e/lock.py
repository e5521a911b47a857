#!/usr/bin/env python3
"""One server per data directory: a kernel lock, never a stale file.

Checks: a second `serve` on the same data dir exits non-zero within seconds with a one-line
reason that mentions the lock, and the first keeps working; after SIGKILL of the first
(the lock file, if any, is left behind) a new serve starts and still has the mail; SIGTERM
with idle SMTP and POP3 sessions open stops the server with exit 0, does not commit a
pending POP3 DELE, and keeps every delivered message.
"""

import os
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import crlf, ok  # noqa: E402

PW = "lock-test-pw"


def mail(n):
    return crlf(f"""\
Message-ID: <lock-{n}@ext.test>
Subject: lock test {n}

message {n}
""")


def count(srv):
    p = h.pop3_login(srv.pop3, "alice@example.com", PW)
    n, _ = p.stat()
    p.quit()
    return n


def test():
    t = h.Tegami("lock")
    t.domain("example.com")
    t.account("alice@example.com", PW)

    first = t.serve()
    h.send(first.smtp, "a@ext.test", ["alice@example.com"], mail(1))
    ok("first serve is up and delivers")

    started = time.monotonic()
    second = t.serve(wait=False)
    try:
        code = second.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        second.force_kill()
        raise AssertionError(f"a second serve on the same data dir was still running after 15 s: {second.stdout_lines}")
    took = time.monotonic() - started
    second.kill()  # reaps it and closes its files
    assert code != 0, f"the second serve exited {code}, wanted non-zero"
    assert "tegami ready" not in second.stdout_lines, f"the second serve said it was ready: {second.stdout_lines}"
    said = (second.stderr_text() + "\n".join(second.stdout_lines)).strip()
    assert said, "the second serve exited without saying why"
    assert "lock" in said.lower(), f"the second serve's reason does not mention the lock: {said!r}"
    ok(f"second serve refused in {took:.2f} s, exit {code}: {said.splitlines()[-1][:150]}")

    assert first.alive(), "the first server died when the second one tried to start"
    h.send(first.smtp, "a@ext.test", ["alice@example.com"], mail(2))
    assert count(first) == 2, "the first server lost mail after the refused second start"
    ok("the first server still serves after the refused start")

    first.kill()
    leftovers = sorted(p.name for p in t.data.iterdir() if "lock" in p.name)
    h.note(f"after SIGKILL the data dir holds {leftovers or 'no lock file'}")
    started = time.monotonic()
    third = t.serve()
    ok(f"after SIGKILL a new serve starts in {time.monotonic() - started:.2f} s (lock file left behind: {leftovers})")
    assert count(third) == 2, "mail acknowledged before SIGKILL is missing after the restart"
    h.send(third.smtp, "a@ext.test", ["alice@example.com"], mail(3))
    ok("the restarted server has both messages and accepts a third")

    # SIGTERM with idle sessions open: the server must not wait for them to time out.
    idle_smtp = h.RawSmtp(third.smtp)
    idle_smtp.expect("MAIL FROM:<idle@ext.test>", 250)
    idle_pop = h.pop3_login(third.pop3, "alice@example.com", PW)
    assert idle_pop.stat()[0] == 3
    idle_pop.dele(1)
    started = time.monotonic()
    code = third.stop(timeout=30)
    took = time.monotonic() - started
    assert code == 0, f"serve exited {code} after SIGTERM, wanted 0"
    ok(f"SIGTERM with an idle SMTP session and a POP3 session holding a DELE: exit 0 in {took:.2f} s")
    idle_smtp.close()
    idle_pop.close()

    fourth = t.serve()
    assert count(fourth) == 3, "after SIGTERM the maildrop does not hold all 3 messages (the uncommitted DELE counted?)"
    ok("after SIGTERM and restart all 3 messages are there; the DELE without QUIT was not committed")
    t.check_store()
    ok("tegami check passes")
    code = fourth.stop()
    assert code == 0, f"serve exited {code} after SIGTERM"
    ok("SIGTERM exits 0")


if __name__ == "__main__":
    h.main(test, timeout=240)
