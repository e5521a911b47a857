#!/usr/bin/env python3
"""UTF8=ACCEPT (RFC 6855): mailbox names in UTF-8 and messages with UTF-8 header fields,
through imaplib and a raw socket.

Checks:
- CAPABILITY names UTF8=ACCEPT; `ENABLE UTF8=ACCEPT` answers `* ENABLED UTF8=ACCEPT`.
- imaplib after `enable("UTF8=ACCEPT")` creates "Tom & 台北" and "Entwürfe" by their UTF-8
  names and lists them as such (quoted, `&` as it is); a session that did not enable sees
  the same mailboxes in modified UTF-7 ("Tom &- &U,BTFw-"), and its mUTF-7 names reach
  them. A name that is not UTF-8 is BAD after ENABLE.
- `APPEND "Tom & 台北" UTF8 (~{n} ...)` stores a message whose Subject and From are raw UTF-8
  (RFC 6532) exactly; FETCH BODY[] gives the same bytes; SEARCH SUBJECT 台北 (UTF-8, no
  CHARSET) finds it; SEARCH CHARSET UTF-8 after ENABLE is BAD; STATUS names the mailbox in
  UTF-8. Without ENABLE, `UTF8 (...)` data is BAD and nothing is stored.
- The store passes `check` afterwards.
"""

import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import imap_common as ic  # noqa: E402
from harness import ok  # noqa: E402

ALICE = "alice@example.com"
PW = "alice-utf8-pw"
TOKYO = "Tom & 台北"
DRAFTS = "Entwürfe"
MESSAGE = ("From: Jürgen <jürgen@例え.jp>\r\nTo: alice@example.com\r\nSubject: Grüße aus 台北\r\n"
           "Message-ID: <utf8-1@example.com>\r\nMIME-Version: 1.0\r\n"
           "Content-Type: text/plain; charset=utf-8\r\n\r\nこんにちは\r\n").encode()


def raw_session(srv, enable):
    r = ic.RawImap(srv.imap)
    r.login(ALICE, PW)
    if enable:
        _, untagged = r.ok("ENABLE UTF8=ACCEPT")
        assert untagged == [b"* ENABLED UTF8=ACCEPT"], untagged
    return r


def listed(r):
    """The names a LIST "" "*" answers, as the server wrote them (without quotes)."""
    _, untagged = r.ok('LIST "" "*"')
    return [line.split(b'"/" ', 1)[1].strip(b'"') for line in untagged if line.startswith(b"* LIST ")]


def test():
    t = h.Tegami("imap-utf8")
    t.write_config('hostname = "mx.test"\n')
    t.domain("example.com")
    t.account(ALICE, PW)
    srv = t.serve()

    m = h.imap_login(srv.imap, ALICE, PW)
    typ, caps = m.capability()
    assert b"UTF8=ACCEPT" in caps[0].split(), caps
    typ, data = m.enable("UTF8=ACCEPT")
    assert typ == "OK" and m.utf8_enabled, (typ, data)
    for name in (TOKYO, DRAFTS):
        typ, data = m.create(f'"{name}"')
        assert typ == "OK", (name, typ, data)
    typ, data = m.list()
    names = [line.decode("utf-8") for line in data]
    for name in (TOKYO, DRAFTS):
        assert any(line.endswith(f'"/" "{name}"') for line in names), (name, names)
    ok(f"imaplib with UTF8=ACCEPT enabled creates and lists {TOKYO!r} and {DRAFTS!r} by their UTF-8 names")

    plain = raw_session(srv, enable=False)
    seven = listed(plain)
    assert b"Tom &- &U,BTFw-" in seven and b"Entw&APw-rfe" in seven, seven
    plain.ok('SELECT "Tom &- &U,BTFw-"')
    status, text, _ = plain.cmd_literals(["APPEND INBOX UTF8 (~", b"x", ")"])
    assert status == "BAD" and b"ENABLE UTF8=ACCEPT" in text, (status, text)
    ok("a session that did not enable sees them in modified UTF-7 and reaches them so; "
       "UTF8 (...) APPEND data without ENABLE is BAD")

    r = raw_session(srv, enable=True)
    status, text, _ = r.cmd('SELECT "\xff"'.encode("latin-1"))
    assert status == "BAD" and b"not UTF-8" in text, (status, text)
    tag = r.next_tag()
    head = f'{tag} APPEND "{TOKYO}" (\\Seen) UTF8 (~{{{len(MESSAGE)}}}\r\n'.encode()
    r.send(head)
    assert r.response().startswith(b"+"), "no continuation for the UTF8 literal"
    r.send(MESSAGE + b")\r\n")
    status, text, _ = r.until(tag)
    assert status == "OK" and b"APPENDUID" in text, (status, text)
    info = r.select(TOKYO)
    assert info.get("EXISTS") == 1, info
    _, untagged = r.ok("FETCH 1 (BODY.PEEK[])")
    body = ic.fetch_raw(untagged)[1]["BODY[]"]
    assert bytes(body) == MESSAGE, body
    _, untagged = r.ok("SEARCH SUBJECT \"台北\"".encode())
    assert untagged == [b"* SEARCH 1"], untagged
    status, text, _ = r.cmd("SEARCH CHARSET UTF-8 SUBJECT \"台北\"".encode())
    assert status == "BAD" and b"CHARSET" in text, (status, text)
    _, untagged = r.ok(f'STATUS "{TOKYO}" (MESSAGES)'.encode())
    assert untagged == [f'* STATUS "{TOKYO}" (MESSAGES 1)'.encode()], untagged
    ok("APPEND UTF8 (~{n}) stores a message with raw UTF-8 header fields exactly; SEARCH SUBJECT "
       "finds it by UTF-8 without CHARSET, CHARSET after ENABLE is BAD, STATUS names the mailbox in UTF-8")

    for s in (plain, r):
        s.ok("LOGOUT")
        s.close()
    m.logout()
    srv.stop()
    t.check_store("after the UTF8=ACCEPT test")


if __name__ == "__main__":
    h.main(test, timeout=120)
