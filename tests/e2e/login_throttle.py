#!/usr/bin/env python3
"""Password guessing in parallel must be slowed, and the delay must not be reset by someone
else's success (issue 16, finding 2). Before the fix the delay was a sleep per connection:
30 wrong passwords over 30 parallel connections took 16.5 s in all, and a good login as
another account from the same address reset the counter.

Checks, with imaplib and poplib from chosen loopback source addresses:
- 4 wrong IMAP passwords for bob over 4 parallel connections from 127.0.0.2 are answered
  one after another (1 + 2 + 4 + 8 s: at least 14 s in all; before, all within 8 s);
- meanwhile alice from 127.0.0.3 and bob himself from 127.0.0.4 log in at once: guessing
  at an account never locks its owner out;
- mallory then logs in correctly from 127.0.0.2, and a wrong POP3 password for bob from
  127.0.0.2 still waits the fifth failure's 16 s: the counter was not reset by mallory's
  success, and it is shared between IMAP and POP3.
"""

import imaplib
import os
import poplib
import socket
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import ok  # noqa: E402

PW = {"alice@example.com": "alice-pw", "bob@example.com": "bob-pw", "mallory@example.com": "mallory-pw"}


class Imap(imaplib.IMAP4):
    def __init__(self, port, source):
        self.source = source
        super().__init__(h.HOST, port, timeout=60)

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout, source_address=(self.source, 0))


class Pop3(poplib.POP3):
    def __init__(self, port, source):
        self.source = source
        super().__init__(h.HOST, port, timeout=60)

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout, source_address=(self.source, 0))


def imap_login(port, source, user, password):
    """(logged in?, seconds the answer took)."""
    m = Imap(port, source)
    started = time.monotonic()
    try:
        m.login(user, password)
        took = time.monotonic() - started
        m.logout()
        return True, took
    except imaplib.IMAP4.error:
        return False, time.monotonic() - started
    finally:
        try:
            m.shutdown()
        except OSError:
            pass


def test():
    t = h.Tegami("throttle")
    t.write_config('hostname = "mx.test"\n')
    t.domain("example.com")
    for a, pw in PW.items():
        t.account(a, pw)
    srv = t.serve()

    results = []
    started = time.monotonic()

    def guess(i):
        results.append(imap_login(srv.imap, "127.0.0.2", "bob@example.com", f"wrong-{i}"))

    guessers = [threading.Thread(target=guess, args=(i,), daemon=True) for i in range(4)]
    for g in guessers:
        g.start()
    time.sleep(1.5)
    owner_ok = {}
    for who, source in (("alice@example.com", "127.0.0.3"), ("bob@example.com", "127.0.0.4")):
        owner_ok[who] = imap_login(srv.imap, source, who, PW[who])
    for g in guessers:
        g.join(timeout=60)
    total = time.monotonic() - started
    assert len(results) == 4 and not any(ok_ for ok_, _ in results), f"guesses: {results}"
    assert total >= 14, f"4 parallel wrong passwords from one address all answered within {total:.1f} s (wanted >= 14: one after another)"
    for who, (logged, took) in owner_ok.items():
        assert logged and took < 3.0, f"{who} from a clean address during the guessing: logged in {logged} after {took:.2f} s"
    ok(f"4 parallel wrong IMAP passwords from one address took {total:.1f} s in all "
       f"({', '.join(f'{t_:.1f}' for _, t_ in sorted(results, key=lambda r: r[1]))} s each); "
       f"alice and bob from clean addresses logged in in {max(t_ for _, t_ in owner_ok.values()):.2f} s")

    logged, took = imap_login(srv.imap, "127.0.0.2", "mallory@example.com", PW["mallory@example.com"])
    assert logged and took < 3.0, f"mallory's correct password from the guessing address: {logged} after {took:.2f} s"
    p = Pop3(srv.pop3, "127.0.0.2")
    p.user("bob@example.com")
    started = time.monotonic()
    try:
        p.pass_("wrong-again")
        raise AssertionError("a wrong POP3 password was accepted")
    except poplib.error_proto as e:
        took = time.monotonic() - started
        assert e.args[0].startswith(b"-ERR [AUTH]"), e.args[0]
    finally:
        p.close()
    assert took >= 15, f"after mallory's success the fifth wrong password (now over POP3) was answered in {took:.1f} s, wanted 16"
    ok(f"mallory's success from the same address did not reset it: the next wrong password (POP3) waited {took:.1f} s")
    assert srv.stop() == 0


if __name__ == "__main__":
    h.main(test, timeout=90)
