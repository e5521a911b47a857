#!/usr/bin/env python3
"""POP3 must not take passwords in clear text from a remote client once TLS is configured
(issue 16, finding 1). Before the fix USER/PASS logged in over plain text from anywhere,
while IMAP answered NO [PRIVACYREQUIRED] and submission 538 5.7.11.

With `[tls]` configured and `[limits] trust_loopback = false` (so this loopback client
counts as remote, as it would behind a local proxy), checked with poplib:
- CAPA offers STLS and no USER (RFC 2595 section 4);
- USER gets `-ERR [AUTH]` with a hint naming STLS, and so does PASS; nothing logs in;
- after STLS, CAPA offers USER and USER/PASS log in and read the message;
- IMAP on the same server keeps its rule (LOGINDISABLED, NO [PRIVACYREQUIRED]);
then, on the same data, `[pop3] allow_plaintext_auth = true` lets USER/PASS in clear again,
and with the default `trust_loopback = true` a loopback client may log in without TLS.
"""

import imaplib
import os
import poplib
import ssl
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import ok  # noqa: E402

PW = "alice-pw"


def client_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def capa(p):
    return {k.upper() for k in p.capa()}


def test():
    t = h.Tegami("pop3plain")
    cert, key = t.root / "cert.pem", t.root / "key.pem"
    r = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
         "-days", "2", "-keyout", str(key), "-out", str(cert)],
        capture_output=True, timeout=120,
    )
    assert r.returncode == 0, f"openssl failed: {r.stderr.decode(errors='replace')}"
    tls = f'[tls]\ncert = "{cert}"\nkey = "{key}"\n'
    t.write_config(f'hostname = "mx.test"\n{tls}[limits]\ntrust_loopback = false\n')
    t.domain("example.com")
    t.account("alice@example.com", PW)
    srv = t.serve()
    h.send(srv.smtp, "s@ext.test", ["alice@example.com"], b"Subject: hi\r\n\r\nhello\r\n")

    p = poplib.POP3(h.HOST, srv.pop3, timeout=30)
    caps = capa(p)
    assert "STLS" in caps and "USER" not in caps, f"CAPA before STLS from a remote peer: {sorted(caps)}"
    for cmd in ("USER alice@example.com", "PASS " + PW):
        try:
            resp = p._shortcmd(cmd)
            raise AssertionError(f"{cmd.split()[0]} in clear text from a remote peer was accepted: {resp!r}")
        except poplib.error_proto as e:
            text = e.args[0]
            assert text.startswith(b"-ERR [AUTH]") and b"STLS" in text, f"{cmd.split()[0]} refused with {text!r}"
    ok(f"before STLS: CAPA has STLS and no USER; USER and PASS refused with {text.decode()!r}")
    p.stls(context=client_context())
    assert "USER" in capa(p), "CAPA inside TLS does not offer USER"
    p.user("alice@example.com")
    p.pass_(PW)
    count, _ = p.stat()
    assert count == 1, f"STAT after login over TLS: {count}"
    p.quit()
    ok("after STLS: CAPA offers USER, USER/PASS log in, the message is there")

    m = imaplib.IMAP4(h.HOST, srv.imap, timeout=30)
    assert "LOGINDISABLED" in m.capabilities
    typ, data = m._simple_command("LOGIN", "alice@example.com", PW)
    assert typ == "NO" and b"[PRIVACYREQUIRED]" in data[0], f"IMAP LOGIN: {typ} {data}"
    m.shutdown()
    ok("IMAP on the same server: LOGINDISABLED and LOGIN refused (the same rule)")
    assert srv.stop() == 0

    t.write_config(f'hostname = "mx.test"\n{tls}[pop3]\nallow_plaintext_auth = true\n[limits]\ntrust_loopback = false\n')
    srv = t.serve()
    p = poplib.POP3(h.HOST, srv.pop3, timeout=30)
    assert "USER" in capa(p)
    p.user("alice@example.com")
    p.pass_(PW)
    p.quit()
    assert srv.stop() == 0
    ok("[pop3] allow_plaintext_auth = true: USER/PASS in clear text log in")

    t.write_config(f'hostname = "mx.test"\n{tls}')
    srv = t.serve()
    p = poplib.POP3(h.HOST, srv.pop3, timeout=30)
    assert "USER" in capa(p)
    p.user("alice@example.com")
    p.pass_(PW)
    p.quit()
    assert srv.stop() == 0
    ok("default trust_loopback: a loopback client logs in without TLS (the password never leaves the machine)")


if __name__ == "__main__":
    h.main(test, timeout=90)
