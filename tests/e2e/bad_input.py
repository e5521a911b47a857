#!/usr/bin/env python3
"""Hostile and broken clients get clear errors; honest ones and stored mail are unharmed.

Raw sockets send what real clients never would: garbage, wrong command order, 10 KB lines,
bare LF in commands and in DATA (including SMTP smuggling attempts), messages over the
configured size (by SIZE= and by actual size), thousands of pipelined commands in one write,
unknown and foreign recipients, too many recipients, wrong POP3 passwords, POP3 garbage.
Meanwhile one honest SMTP session is kept open mid-DATA and finishes afterwards; messages
stored before all this are verified intact at the end, and the server is still up.
"""

import os
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import crlf, ok  # noqa: E402

MAX_SIZE = 65536
MAX_RCPT = 5
PW = {"alice@example.com": "alice-pw", "bob@example.com": "bob-pw"}
PW.update({f"u{i}@example.com": f"u{i}-pw" for i in range(1, MAX_RCPT + 2)})


def msg(mid, body="hello\r\n"):
    return f"Message-ID: <{mid}@bad.test>\r\nFrom: x@ext.test\r\nSubject: {mid}\r\n\r\n".encode() + body.encode()


def expect_closed_or(conn, cmd, code, what):
    """After an error the server may end the session; if it does not, the session must still work."""
    try:
        got, text = conn.reply(cmd)
    except (h.Closed, ConnectionResetError, BrokenPipeError):
        return "closed"
    assert got == code, f"{what}: after the error, {cmd!r} got {got} {text!r}, wanted {code}"
    return "continues"


def smtp_checks(srv, early):
    port = srv.smtp
    c = h.RawSmtp(port, ehlo=False)
    code, lines = c.reply_lines("EHLO client.test")
    assert code == 250 and lines[0].startswith("mx.test"), f"EHLO reply does not start with the configured hostname: {lines}"
    assert f"SIZE {MAX_SIZE}" in lines, f"EHLO does not advertise SIZE {MAX_SIZE}: {lines}"
    ok(f"EHLO names the configured hostname mx.test and advertises SIZE {MAX_SIZE}")

    c.expect("XYZZY plugh", (500, 502), what="unknown command")
    c.send(b"\x00\xff\xfe\x80garbage\r\n")
    code, text = c.reply()
    assert code in (500, 501, 502), f"non-UTF-8 bytes: got {code} {text!r}"
    c.expect("MAIL FROM:bad", (500, 501), what="MAIL FROM:bad")
    c.expect("MAIL FROM:<unterminated@ext.test", (500, 501), what="MAIL FROM without '>'")
    c.expect("RCPT TO:<alice@example.com>", 503, what="RCPT before MAIL")
    c.expect("DATA", 503, what="DATA before MAIL")
    c.expect("MAIL FROM:<x@ext.test>", 250)
    c.expect("DATA", (503, 554), what="DATA before any RCPT")
    c.expect("MAIL FROM:<y@ext.test>", 503, what="a second MAIL in one transaction")
    c.expect("RSET", 250)
    c.expect("NOOP", 250, what="NOOP after the errors")
    ok("garbage 500, MAIL FROM:bad 501, RCPT/DATA before MAIL 503, DATA without RCPT 503/554, nested MAIL 503")

    c.expect("NOOP " + "x" * 10240, 500, enhanced="5.5.6", what="a 10 KB command line")
    c.expect("NOOP", 250, what="NOOP after the 10 KB line")
    c.expect("MAIL FROM:<x@ext.test>", 250)
    c.expect("RCPT TO:<" + "a" * 10240 + "@example.com>", 500, enhanced="5.5.6", what="a 10 KB RCPT line")
    c.expect("RCPT TO:<alice@example.com>", 250, what="RCPT after the 10 KB line")
    c.expect("RSET", 250)
    ok("10 KB command lines get 500 5.5.6 and the session goes on in step")

    c.expect("MAIL FROM:<x@ext.test>", 250)
    c.expect("RCPT TO:<nobody@example.com>", 550, enhanced="5.1.1", what="unknown local user")
    c.expect("RCPT TO:<someone@elsewhere.test>", 550, enhanced="5.7.1", what="relay attempt")
    c.expect("RCPT TO:<alice@sub.example.com>", 550, enhanced="5.7.1", what="relay to a subdomain of a local domain")
    c.expect("RCPT TO:<alice@example.com>", 250)
    c.expect("DATA", 354)
    c.send(msg("after-refusals") + b".\r\n")
    c.expect(None, 250, what="end of DATA after refused recipients")
    early["alice@example.com"].append(("x@ext.test", msg("after-refusals")))
    c.expect("QUIT", 221)
    c.close()
    ok("unknown user 550 5.1.1, relay 550 5.7.1, and the valid recipient still gets the message")

    c = h.RawSmtp(port)
    c.expect("MAIL FROM:<x@ext.test>", 250)
    for i in range(1, MAX_RCPT + 1):
        c.expect(f"RCPT TO:<u{i}@example.com>", 250)
    c.expect(f"RCPT TO:<u{MAX_RCPT + 1}@example.com>", 452, enhanced="4.5.3", what="one recipient too many")
    c.expect("DATA", 354)
    c.send(msg("max-rcpt") + b".\r\n")
    c.expect(None, 250, what="end of DATA with max recipients")
    for i in range(1, MAX_RCPT + 1):
        early[f"u{i}@example.com"].append(("x@ext.test", msg("max-rcpt")))
    ok(f"recipient {MAX_RCPT + 1} gets 452 4.5.3, the first {MAX_RCPT} get the message")

    c.expect(f"MAIL FROM:<big@ext.test> SIZE={MAX_SIZE * 2}", 552, enhanced="5.3.4", what="SIZE= over the limit")
    c.expect("NOOP", 250)
    c.expect(f"MAIL FROM:<big@ext.test> SIZE={MAX_SIZE // 2}", 250, what="SIZE= under the limit")
    c.expect("RSET", 250)
    c.expect("MAIL FROM:<big@ext.test>", 250)
    c.expect("RCPT TO:<alice@example.com>", 250)
    c.expect("DATA", 354)
    # Lines that look like commands: a server that stops reading at the limit would run them.
    big = msg("too-big", "".join(f"RSET {i:06d} {'y' * 60}\r\n" for i in range(MAX_SIZE // 40)))
    assert len(big) > MAX_SIZE * 1.5
    c.send(big + b".\r\n")
    c.expect(None, 552, enhanced="5.3.4", what=f"a {len(big)}-byte message over max_message_size")
    c.expect("VRFY postmaster", 252, what="VRFY right after the oversized DATA (no data line ran as a command)")
    c.expect("QUIT", 221)
    c.close()
    ok("over max_message_size: 552 5.3.4 at MAIL (SIZE=) and after DATA; the session stays in step")

    c = h.RawSmtp(port)
    c.send(b"NOOP\n")
    c.expect(None, 500, enhanced="5.5.2", what="a command ending in bare LF")
    state = expect_closed_or(c, "NOOP", 250, "bare LF command")
    c.close()
    ok(f"a command line ending in bare LF gets 500 5.5.2 (then the session {state})")

    c = h.RawSmtp(port)
    c.expect("MAIL FROM:<x@ext.test>", 250)
    c.expect("RCPT TO:<bob@example.com>", 250)
    c.expect("DATA", 354)
    c.send(b"Message-ID: <bare-lf@bad.test>\r\nSubject: bare\nX-A: b\r\n\r\nbody\r\n.\r\n")
    code, text = c.reply()
    assert 500 <= code < 600, f"a message with a bare LF was answered {code} {text!r}, wanted 5xx"
    state = expect_closed_or(c, "VRFY postmaster", 252, "bare LF in DATA")
    c.close()
    ok(f"a bare LF in DATA gets {code} (then the session {state})")

    # SMTP smuggling: a lone-LF end of data must not end the message and start a new one.
    for i, fake_end in enumerate((b"\n.\n", b"\n.\r\n", b"\r\n.\n")):
        c = h.RawSmtp(port)
        c.expect("MAIL FROM:<x@ext.test>", 250)
        c.expect("RCPT TO:<bob@example.com>", 250)
        c.expect("DATA", 354)
        c.send(
            f"Message-ID: <carrier-{i}@bad.test>\r\n\r\nhello".encode() + fake_end
            + b"MAIL FROM:<evil@ext.test>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"
            + f"Message-ID: <smuggled-{i}@bad.test>\r\n\r\nsmuggled\r\n.\r\n".encode()
            + b"VRFY postmaster\r\n"
        )
        code, text = c.reply()
        assert 500 <= code < 600, f"smuggling with {fake_end!r}: first reply {code} {text!r}, wanted 5xx for the whole"
        try:
            code2, text2 = c.reply()
            assert code2 == 252, (
                f"smuggling with {fake_end!r}: after the 5xx came {code2} {text2!r}, not VRFY's 252: "
                "the lone-LF dot ended DATA and the rest ran as commands"
            )
        except (h.Closed, ConnectionResetError):
            pass
        c.close()
    ok("SMTP smuggling with \\n.\\n, \\n.\\r\\n and \\r\\n.\\n: one 5xx for the whole, nothing runs as a command")

    # Pipelining, as RFC 2920 clients do it, then a flood of thousands of commands in one write.
    c = h.RawSmtp(port)
    c.send(
        b"MAIL FROM:<pipe@ext.test>\r\nRCPT TO:<alice@example.com>\r\nRCPT TO:<nobody@example.com>\r\n"
        b"RCPT TO:<bob@example.com>\r\nDATA\r\n"
    )
    got = [c.reply()[0] for _ in range(5)]
    assert got == [250, 250, 550, 250, 354], f"pipelined MAIL/RCPT/RCPT/RCPT/DATA got {got}"
    c.send(msg("pipelined") + b".\r\nQUIT\r\n")
    c.expect(None, 250, what="end of pipelined DATA")
    c.expect(None, 221, what="pipelined QUIT")
    c.close()
    early["alice@example.com"].append(("pipe@ext.test", msg("pipelined")))
    early["bob@example.com"].append(("pipe@ext.test", msg("pipelined")))
    ok("pipelined transaction: 250 250 550 250 354, then 250 221")

    rounds = 3000
    c = h.RawSmtp(port, timeout=60)
    flood = b"NOOP\r\nRSET\r\nVRFY postmaster\r\n" * rounds
    writer_error = []

    def write():
        try:
            c.sock.sendall(flood)
        except OSError as e:
            writer_error.append(e)

    w = threading.Thread(target=write, daemon=True)
    w.start()
    for i in range(rounds):
        for j, (want, name) in enumerate(((250, "NOOP"), (250, "RSET"), (252, "VRFY"))):
            code, text = c.reply()
            assert code == want, f"flood command {3 * i + j}: {name} got {code} {text!r}, wanted {want}"
    w.join(timeout=60)
    assert not writer_error, f"writing the flood failed: {writer_error}"
    c.expect("QUIT", 221)
    c.close()
    assert srv.alive(), "the server died during the pipelining flood"
    ok(f"{3 * rounds} pipelined NOOP/RSET/VRFY in one write, all answered in order")


def pop3_checks(srv, early):
    port = srv.pop3
    p = h.RawPop3(port)
    r = p.cmd("XYZZY")
    assert r.startswith(b"-ERR"), f"POP3 garbage got {r!r}"
    r = p.cmd(b"\x00\xff\xfe\x80")
    assert r.startswith(b"-ERR"), f"POP3 binary garbage got {r!r}"
    r = p.cmd("STAT")
    assert r.startswith(b"-ERR"), f"STAT before login got {r!r}"
    r = p.cmd("PASS nothing")
    assert r.startswith(b"-ERR"), f"PASS without USER got {r!r}"
    r = p.cmd("CAPA")
    assert r.startswith(b"+OK"), f"CAPA after garbage got {r!r}"
    p.multiline()
    r = p.cmd("USER " + "z" * 10240)
    assert r.startswith(b"-ERR"), f"a 10 KB POP3 line got {r!r}"
    try:
        r = p.cmd("CAPA")
        assert r.startswith(b"+OK"), f"CAPA after the 10 KB line got {r!r} (the rest of the long line ran as a command?)"
        p.multiline()
        state = "continues"
    except (h.Closed, ConnectionResetError):
        state = "closed"
    p.close()
    ok(f"POP3 garbage, STAT before login, PASS without USER get -ERR; a 10 KB line gets -ERR (then the session {state})")

    p = h.RawPop3(port)
    delays = []
    for i in range(3):
        try:
            r = p.cmd("USER alice@example.com")
            assert r.startswith(b"+OK"), f"USER got {r!r}"
            t0 = time.monotonic()
            r = p.cmd("PASS wrong-password")
            delays.append(time.monotonic() - t0)
        except (h.Closed, ConnectionResetError):
            assert i > 0, "the server closed the session at the first wrong password without a reply"
            break
        assert r.startswith(b"-ERR [AUTH]"), f"wrong password {i + 1} got {r!r}, wanted -ERR [AUTH]"
    p.close()
    assert delays[-1] > 0.05 and delays[-1] >= delays[0], f"wrong-password delays do not grow: {delays}"
    p = h.pop3_login(port, "alice@example.com", PW["alice@example.com"])
    count, _ = p.stat()
    p.quit()
    ok(f"wrong password: -ERR [AUTH] after {', '.join(f'{d:.2f}' for d in delays)} s; the right one works afterwards")

    p = h.pop3_login(port, "alice@example.com", PW["alice@example.com"])
    raw = h.RawPop3(port)
    raw.cmd("USER alice@example.com")
    r = raw.cmd("PASS " + PW["alice@example.com"])
    assert r.startswith(b"-ERR [IN-USE]"), f"second login while the maildrop is held got {r!r}"
    raw.close()
    for bad in ("RETR 9999", "RETR 0", "RETR abc", "DELE 9999", "TOP 1", "LIST -1", "UIDL x"):
        try:
            r = p._shortcmd(bad)
            raise AssertionError(f"POP3 {bad!r} got {r!r}, wanted -ERR")
        except h.poplib.error_proto as e:
            assert str(e).startswith("b'-ERR"), f"POP3 {bad!r} got {e}"
    assert p.stat()[0] == count, "bad commands changed the maildrop"
    p.quit()
    ok("second session on a held maildrop -ERR [IN-USE]; RETR/DELE/TOP/LIST/UIDL with bad arguments -ERR")


def test():
    t = h.Tegami("bad-input")
    t.write_config(f"""\
hostname = "mx.test"
[smtp]
max_message_size = {MAX_SIZE}
max_recipients = {MAX_RCPT}
""")
    t.domain("example.com")
    for a, pw in PW.items():
        t.account(a, pw)
    srv = t.serve()

    early = {a: [] for a in PW}
    for i in range(3):
        m = msg(f"early-{i}", f"stored before the storm {i}\r\n" * (i * 500 + 1))
        h.send(srv.smtp, "early@ext.test", ["alice@example.com"], m)
        early["alice@example.com"].append(("early@ext.test", m))
    ok("three messages stored before the bad input")

    # An honest session, left in the middle of DATA while the others misbehave.
    steady = h.RawSmtp(srv.smtp)
    steady.expect("MAIL FROM:<steady@ext.test>", 250)
    steady.expect("RCPT TO:<alice@example.com>", 250)
    steady.expect("DATA", 354)
    steady_msg = msg("steady", "".join(f"line {i} of the honest message\r\n" for i in range(400)))
    half = len(steady_msg) // 2
    steady.send(steady_msg[:half])

    smtp_checks(srv, early)
    pop3_checks(srv, early)

    steady.send(steady_msg[half:] + b".\r\n")
    steady.expect(None, 250, what="end of DATA of the honest session")
    steady.expect("QUIT", 221)
    steady.close()
    early["alice@example.com"].append(("steady@ext.test", steady_msg))
    ok("the honest session, open mid-DATA through all of it, delivers")

    assert srv.alive(), "the server is not running any more"
    for account, want in early.items():
        got = h.pop3_fetch_all(srv.pop3, account, PW[account])
        names = lambda msgs: sorted(m.split(b"\r\n", 1)[0].decode() for m in msgs)  # noqa: E731
        assert len(got) == len(want), (
            f"{account}: {len(got)} messages stored, wanted {len(want)}: {names(m for _, m in want)}"
        )
        left = list(want)
        for _, _, data in got:
            match = [(snd, m) for snd, m in left if data.endswith(b"\r\n" + m)]
            assert match, f"{account}: a stored message matches nothing accepted: {data[:400]!r}"
            sender, m = match[0]
            h.split_trace(data, m.split(b"\r\n", 1)[0], sender)
            left.remove(match[0])
    ok("every maildrop holds exactly the accepted messages, byte-exact: nothing lost, nothing rejected stored")

    t.check_store("after the bad input")
    ok("tegami check passes")
    code = srv.stop()
    assert code == 0, f"serve exited {code} after SIGTERM"
    ok("SIGTERM stops the server with exit 0")


if __name__ == "__main__":
    h.main(test, timeout=300)
