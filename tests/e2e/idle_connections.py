#!/usr/bin/env python3
"""Idle connections must not shut everyone out (issue 16, finding 3).

Before the fix, 200 idle SMTP sockets made the next real sender get 421 4.7.0, 500
unauthenticated IMAP sockets made a real login get BYE, and an unauthenticated IMAP
session kept the 30-minute timeout.

The server runs with `[limits] trust_loopback = false`, so loopback peers are counted like
remote ones, and each "address" is its own loopback address (127.0.0.x: the whole /8 is
local on Linux). Checks:
- 200 idle SMTP sockets from 127.0.0.2: at most max_connections_per_address are held, the
  rest turned away with 421; a sender from 127.0.0.3 then gets 220 and delivers.
- 500 unauthenticated IMAP sockets from 127.0.0.4: a real LOGIN from 127.0.0.5 succeeds.
- Logged-in sessions do not count against their address: 8 logged-in sessions from
  127.0.0.6 (over the per-address limit of 5) and one more connection still gets in.
- An unauthenticated IMAP session is closed after login_timeout_secs (BYE), so is a POP3
  one, and an SMTP client that never sends a command gets 421 4.4.2 and is closed.
"""

import os
import resource
import socket
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import ok  # noqa: E402

PER_ADDRESS = 5
LOGIN_TIMEOUT = 10
PW = "alice-pw"


class SourcedImap(h.imaplib.IMAP4):
    """imaplib from a chosen source address."""

    def __init__(self, port, source):
        self.source = source
        super().__init__(h.HOST, port, timeout=10)

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout, source_address=(self.source, 0))


def connect(port, source, timeout=10):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect((h.HOST, port))
    return s


def first_line(s):
    buf = b""
    while b"\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            return buf
        buf += chunk
    return buf.split(b"\n", 1)[0].rstrip(b"\r")


def open_idle(port, source, n):
    """n sockets from `source` that say nothing; returns (held open, turned away replies)."""
    held, refused = [], []
    for _ in range(n):
        s = connect(port, source)
        held.append(s)
    # Each socket's first line: a greeting (held) or the busy reply (then closed).
    open_ones = []
    for s in held:
        line = first_line(s)
        if line.startswith((b"220", b"* OK")):
            open_ones.append(s)
        else:
            refused.append(line)
            s.close()
    return open_ones, refused


def wait_closed(s, within):
    """Seconds until the server closes `s` (reading whatever it says), or None."""
    started = time.monotonic()
    s.settimeout(within)
    said = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return time.monotonic() - started, said
            said += chunk
    except socket.timeout:
        return None, said
    except ConnectionResetError:
        return time.monotonic() - started, said


def test():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    t = h.Tegami("idle")
    t.write_config(f"""\
hostname = "mx.test"
[limits]
trust_loopback = false
max_connections_per_address = {PER_ADDRESS}
login_timeout_secs = {LOGIN_TIMEOUT}
""")
    t.domain("example.com")
    t.account("alice@example.com", PW)
    srv = t.serve()

    started = time.monotonic()
    idle, refused = open_idle(srv.smtp, "127.0.0.2", 200)
    assert len(idle) == PER_ADDRESS, f"{len(idle)} idle SMTP sockets from one address held, wanted {PER_ADDRESS}"
    assert refused and all(r.startswith(b"421 4.7.0") for r in refused), f"turned-away replies: {set(refused)}"
    s = h.smtplib.SMTP(h.HOST, srv.smtp, timeout=10, source_address=("127.0.0.3", 0))
    s.sendmail("someone@ext.test", ["alice@example.com"], b"Subject: through\r\n\r\nhello\r\n")
    s.quit()
    assert time.monotonic() - started < LOGIN_TIMEOUT, "the check took longer than the login timeout: inconclusive"
    ok(f"200 idle SMTP sockets from one address: {len(idle)} held, {len(refused)} got 421; a sender from another address delivered")

    started = time.monotonic()
    idle_imap, refused_imap = open_idle(srv.imap, "127.0.0.4", 500)
    assert len(idle_imap) == PER_ADDRESS, f"{len(idle_imap)} unauthenticated IMAP sockets held, wanted {PER_ADDRESS}"
    m = SourcedImap(srv.imap, "127.0.0.5")
    typ, _ = m.login("alice@example.com", PW)
    assert typ == "OK"
    typ, data = m.select("INBOX")
    assert typ == "OK" and int(data[0]) == 1, f"SELECT: {typ} {data}"
    m.logout()
    ok(f"500 unauthenticated IMAP sockets from one address ({len(refused_imap)} turned away): a real login from another works")

    # Logged-in sessions give their address slot back.
    logged = []
    for _ in range(PER_ADDRESS + 3):
        c = connect(srv.imap, "127.0.0.6")
        assert first_line(c).startswith(b"* OK")
        c.sendall(b"a LOGIN alice@example.com " + PW.encode() + b"\r\n")
        line = first_line(c)
        assert line.startswith(b"a OK"), f"LOGIN: {line!r}"
        logged.append(c)
    extra = connect(srv.imap, "127.0.0.6")
    assert first_line(extra).startswith(b"* OK"), "a new connection after logged-in ones was turned away"
    extra.close()
    ok(f"{len(logged)} logged-in IMAP sessions from one address (limit {PER_ADDRESS}) do not block a new connection")

    # The idle ones are closed after the login timeout.
    for name, sockets, want in (("SMTP", idle, b"421 4.4.2"), ("IMAP", idle_imap, b"* BYE")):
        took, said = wait_closed(sockets[-1], LOGIN_TIMEOUT + 10)
        assert took is not None, f"an idle unauthenticated {name} socket is still open {LOGIN_TIMEOUT + 10} s later"
        assert want in said, f"{name} closed without {want!r}: {said!r}"
    elapsed = time.monotonic() - started
    p = connect(srv.pop3, "127.0.0.7")
    assert first_line(p).startswith(b"+OK")
    took, _ = wait_closed(p, LOGIN_TIMEOUT + 10)
    assert took is not None and took < LOGIN_TIMEOUT + 4, f"idle POP3 before login closed after {took} s"
    fresh = connect(srv.imap, "127.0.0.8")
    assert first_line(fresh).startswith(b"* OK")
    took, said = wait_closed(fresh, LOGIN_TIMEOUT + 10)
    assert took is not None and LOGIN_TIMEOUT - 1 < took < LOGIN_TIMEOUT + 4, f"unauthenticated IMAP closed after {took} s"
    ok(f"unauthenticated IMAP ({took:.1f} s, {said.strip()[:40]!r}), POP3 and a silent SMTP client are closed "
       f"after login_timeout_secs = {LOGIN_TIMEOUT} (all idle ones gone within {elapsed:.1f} s)")
    # The logged-in sessions are not subject to it.
    for c in logged:
        c.sendall(b"b NOOP\r\n")
        line = first_line(c)
        assert line.startswith(b"b OK"), f"a logged-in session was closed by the login timeout: {line!r}"
        c.close()
    ok("logged-in IMAP sessions outlive the login timeout")
    for c in idle + idle_imap:
        c.close()
    assert srv.stop() == 0


if __name__ == "__main__":
    h.main(test, timeout=90)
