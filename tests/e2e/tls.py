#!/usr/bin/env python3
"""STARTTLS for SMTP and STLS for POP3 with a self-signed certificate.

Checks: with [tls] configured EHLO advertises STARTTLS and CAPA lists STLS; smtplib upgrades,
sees the configured certificate, no longer sees STARTTLS in the new EHLO, and delivers;
plaintext pipelined after STARTTLS is not executed inside TLS (command injection);
poplib upgrades with STLS, a second STLS is refused, and the message comes back byte-exact.
"""

import os
import poplib
import shutil
import ssl
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import crlf, ok  # noqa: E402

PW = "tls-test-pw"


def client_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def test():
    assert shutil.which("openssl"), "openssl is not installed (scripts/test installs it)"
    t = h.Tegami("tls")
    cert, key = t.root / "cert.pem", t.root / "key.pem"
    r = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-days", "2",
         "-keyout", str(key), "-out", str(cert)],
        capture_output=True, timeout=120,
    )
    assert r.returncode == 0, f"openssl failed: {r.stderr.decode(errors='replace')}"
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    ok("self-signed certificate generated with openssl")

    t.write_config(f"""\
hostname = "mx.test"
[tls]
cert = "{cert}"
key = "{key}"
""")
    t.domain("example.com")
    t.account("alice@example.com", PW)
    srv = t.serve()

    s = h.smtp_client(srv.smtp)
    assert s.has_extn("starttls"), f"EHLO does not advertise STARTTLS with [tls] configured: {s.esmtp_features}"
    code, resp = s.starttls(context=client_context())
    assert code == 220, f"STARTTLS got {code} {resp!r}"
    assert s.sock.getpeercert(binary_form=True) == der, "the server presented a certificate other than the configured one"
    code, _ = s.ehlo()
    assert code == 250, f"EHLO after STARTTLS got {code}"
    assert not s.has_extn("starttls"), f"STARTTLS still advertised inside TLS: {s.esmtp_features}"
    version = s.sock.version()
    msg = crlf("""\
Message-ID: <tls-1@ext.test>
From: secure@ext.test
To: alice@example.com
Subject: over TLS

sent inside TLS
.dot line
""")
    refused = s.sendmail("secure@ext.test", ["alice@example.com"], msg)
    assert not refused, f"refused: {refused}"
    s.quit()
    ok(f"SMTP STARTTLS ({version}) with the configured certificate, STARTTLS gone from the new EHLO, message accepted")

    c = h.RawSmtp(srv.smtp)
    c.send(b"STARTTLS\r\nVRFY injected\r\n")
    code, text = c.reply()
    if code == 220:
        try:
            # A server that feeds the leftover plaintext into the handshake fails it: also safe.
            c.sock = client_context().wrap_socket(c.sock, server_hostname="localhost")
            c.buf = b""
            code, lines = c.reply_lines("EHLO client.test")
            assert code != 252, "plaintext sent after STARTTLS was executed inside TLS (VRFY answered 252)"
            assert code == 250, f"EHLO inside TLS got {code} {lines}"
            verdict = "discarded"
        except (h.Closed, ConnectionResetError, ssl.SSLError, OSError):
            verdict = "refused by closing"
    else:
        assert 500 <= code < 600, f"STARTTLS followed by pipelined plaintext got {code} {text!r}"
        verdict = f"refused with {code}"
    c.close()
    ok(f"plaintext pipelined after STARTTLS is not executed inside TLS ({verdict})")

    p = poplib.POP3(h.HOST, srv.pop3, timeout=30)
    caps = p.capa()
    assert "STLS" in caps, f"CAPA does not list STLS with [tls] configured: {caps}"
    resp = p.stls(context=client_context())
    assert resp.startswith(b"+OK"), f"STLS got {resp!r}"
    assert p.sock.getpeercert(binary_form=True) == der, "POP3 presented a certificate other than the configured one"
    try:
        again = p._shortcmd("STLS")
        raise AssertionError(f"a second STLS inside TLS got {again!r}, wanted -ERR")
    except poplib.error_proto as e:
        assert str(e).startswith("b'-ERR"), f"second STLS: {e}"
    p.user("alice@example.com")
    p.pass_(PW)
    count, _ = p.stat()
    assert count == 1, f"alice has {count} messages over POP3S, wanted 1"
    data = h.pop3_retr(p, 1)
    p.quit()
    _, rest = h.split_trace(data, msg.split(b"\r\n", 1)[0], "secure@ext.test")
    assert rest == msg, f"the message retrieved over TLS differs from what was sent: {rest!r}"
    ok("POP3 STLS, a second STLS refused, login and RETR inside TLS: byte-exact")

    t.check_store()
    code = srv.stop()
    assert code == 0, f"serve exited {code} after SIGTERM"
    ok("tegami check passes and SIGTERM exits 0")


if __name__ == "__main__":
    h.main(test, timeout=180)
