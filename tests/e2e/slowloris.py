#!/usr/bin/env python3
"""A byte now and then must not keep a command line or a message open for ever (issue 16,
finding 4). Before the fix every timeout restarted on each read, so with
data_timeout_secs = 5 one byte a second held a DATA phase as long as the sender liked.

The server runs with timeouts of a few seconds. Each check trickles one byte every 0.5 s
(well inside every timeout) into one of: an SMTP command line, an SMTP DATA phase, an IMAP
command line, an IMAP APPEND literal and a POP3 command line, and asserts that the server
closes the connection close to its deadline (timeout + one second per KiB received) rather
than after the trickle runs out. The five run side by side.
"""

import os
import socket
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import ok  # noqa: E402

TIMEOUT = 4  # every configured timeout below
TRICKLE_FOR = 25  # seconds the client would go on trickling
PW = "alice-pw"


def trickle(port, setup, payload, results, name):
    """Sends `setup` at once, then `payload` a byte every 0.5 s; records when the server
    closed the connection (seconds since the trickle began) or None."""
    s = socket.create_connection((h.HOST, port), timeout=10)
    try:
        f = s.makefile("rb")
        for line, want in setup:
            if line is not None:
                s.sendall(line)
            got = f.readline()
            # Skip untagged lines (IMAP capability and greeting details).
            while want and not got.startswith(want) and got.startswith(b"* "):
                got = f.readline()
            assert not want or got.startswith(want), f"{name}: setup {line!r} got {got!r}, wanted {want!r}"
        started = time.monotonic()
        s.settimeout(0.5)
        said = b""
        for i in range(TRICKLE_FOR * 2):
            try:
                s.sendall(payload[i % len(payload):i % len(payload) + 1])
            except (BrokenPipeError, ConnectionResetError):
                results[name] = (time.monotonic() - started, said)
                return
            try:
                chunk = s.recv(4096)
                if not chunk:
                    results[name] = (time.monotonic() - started, said)
                    return
                said += chunk
            except socket.timeout:
                pass
            except ConnectionResetError:
                # Closed with our trickled bytes unread: the kernel answers with a reset.
                results[name] = (time.monotonic() - started, said)
                return
        results[name] = (None, said)
    except Exception as e:  # noqa: BLE001 - reported by the main thread
        results[name] = (f"error: {type(e).__name__}: {e}", b"")
    finally:
        s.close()


def test():
    t = h.Tegami("slowloris")
    t.write_config(f"""\
hostname = "mx.test"
[smtp]
command_timeout_secs = {TIMEOUT}
data_timeout_secs = {TIMEOUT}
[imap]
command_timeout_secs = {TIMEOUT}
[pop3]
command_timeout_secs = {TIMEOUT}
""")
    t.domain("example.com")
    t.account("alice@example.com", PW)
    srv = t.serve()
    login = f"a LOGIN alice@example.com {PW}\r\n".encode()
    cases = {
        "SMTP command line": (srv.smtp, [(None, b"220"), (b"EHLO x.test\r\n", b"250")], b"MAIL FROM:<aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
        "SMTP DATA": (srv.smtp, [(None, b"220"), (b"HELO x.test\r\n", b"250"), (b"MAIL FROM:<s@ext.test>\r\n", b"250"),
                                 (b"RCPT TO:<alice@example.com>\r\n", b"250"), (b"DATA\r\n", b"354")], b"Subject: slow\r\n\r\nbody line\r\n"),
        "IMAP command line": (srv.imap, [(None, b"* OK"), (login, b"a OK")], b"b SELECT INBOXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"),
        "IMAP APPEND literal": (srv.imap, [(None, b"* OK"), (login, b"a OK"), (b"b APPEND INBOX {100000}\r\n", b"+")], b"Subject: slow\r\n\r\nbody\r\n"),
        "POP3 command line": (srv.pop3, [(None, b"+OK")], b"USER aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
    }
    results = {}
    threads = [threading.Thread(target=trickle, args=(port, setup, payload, results, name), daemon=True)
               for name, (port, setup, payload) in cases.items()]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=TRICKLE_FOR + 20)
    for name in cases:
        took, said = results.get(name, ("no result", b""))
        assert not isinstance(took, str), f"{name}: {took}"
        assert took is not None, (f"{name}: a byte every 0.5 s kept it open for {TRICKLE_FOR} s "
                                  f"(timeouts are {TIMEOUT} s); the server said {said!r}")
        # The deadline: the timeout plus a second per KiB (a few dozen bytes here).
        assert took < TIMEOUT + 3, f"{name}: closed only after {took:.1f} s (deadline ~{TIMEOUT} s)"
        ok(f"{name}: trickled a byte every 0.5 s, closed after {took:.1f} s ({said.strip()[-60:]!r})")
    # Nothing trickled was delivered, and a normal client still gets through.
    h.send(srv.smtp, "s@ext.test", ["alice@example.com"], b"Subject: normal\r\n\r\nhello\r\n")
    got = h.pop3_fetch_all(srv.pop3, "alice@example.com", PW)
    assert len(got) == 1 and b"Subject: normal" in got[0][2], f"alice has {len(got)} messages, wanted only the normal one"
    ok("the trickled message was not delivered; a normal delivery and POP3 session work")
    assert srv.stop() == 0


if __name__ == "__main__":
    h.main(test, timeout=90)
