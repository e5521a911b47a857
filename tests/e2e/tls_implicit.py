#!/usr/bin/env python3
"""Implicit TLS (RFC 8314) and certificates chosen by SNI, reloaded without a restart.

Checks, with a CA and certificates made here by openssl, every client verifying against
that CA: IMAP4_SSL, POP3_SSL and SMTP_SSL (AUTH and a message) and swaks --tlsc on the
implicit-TLS ports, sessions behaving as after STARTTLS (no STARTTLS/STLS, AUTH allowed);
SNI picks a configured certificate, a wildcard one, one from DATA/acme/certs (chain and
key in one file), and the default for no or unknown names; a certificate replaced on disk
is served to the next connection without a restart; SIGHUP reads a file the poll could not
see change; a bad replacement keeps the old certificate in service and logs one line; a
client that never starts its handshake is dropped after the deadline; a missing
certificate at start, and an implicit-TLS flag without any certificate, are one-line errors;
`doctor` names each certificate's file and judges expiry (21 days), expired and mismatched.
"""

import imaplib
import json
import os
import poplib
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import crlf, ok  # noqa: E402

PW = "implicit-tls-pw"


def openssl(*args):
    r = subprocess.run(["openssl", *args], capture_output=True, timeout=60)
    assert r.returncode == 0, f"openssl {' '.join(args)} failed: {r.stderr.decode(errors='replace')}"


class Ca:
    """A test CA that signs EC certificates for given DNS names."""

    def __init__(self, root):
        self.root = root
        self.key, self.pem = root / "ca.key", root / "ca.pem"
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-subj", "/CN=tegami test CA", "-days", "2", "-keyout", str(self.key), "-out", str(self.pem))
        self.n = 0

    def issue(self, org, names, ips=(), days=30):
        """Returns (cert PEM text, key PEM text) for CN=names[0], O=org."""
        self.n += 1
        base = self.root / f"leaf{self.n}"
        ext = base.with_suffix(".ext")
        san = ",".join([f"DNS:{n}" for n in names] + [f"IP:{i}" for i in ips])
        ext.write_text(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-subj", f"/CN={names[0]}/O={org}", "-keyout", f"{base}.key", "-out", f"{base}.csr")
        openssl("x509", "-req", "-in", f"{base}.csr", "-CA", str(self.pem), "-CAkey", str(self.key),
                "-set_serial", str(1000 + self.n), "-days", str(days), "-extfile", str(ext), "-out", f"{base}.crt")
        return (base.with_suffix(".crt").read_text(), base.with_suffix(".key").read_text())

    def issue_dated(self, org, name, start, end):
        """A certificate valid only from `start` to `end` (YYYYMMDDHHMMSSZ), via `openssl ca`."""
        self.n += 1
        base = self.root / f"leaf{self.n}"
        db = self.root / "ca-db"
        db.mkdir(exist_ok=True)
        (db / "index.txt").touch()
        (db / "serial").write_text(f"{5000 + self.n:04X}\n")
        cnf = db / "ca.cnf"
        cnf.write_text(f"""[ca]
default_ca = test
[test]
database = {db}/index.txt
new_certs_dir = {db}
serial = {db}/serial
default_md = sha256
policy = any
unique_subject = no
[any]
commonName = supplied
organizationName = optional
""")
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-subj", f"/CN={name}/O={org}", "-keyout", f"{base}.key", "-out", f"{base}.csr")
        openssl("ca", "-config", str(cnf), "-batch", "-notext", "-cert", str(self.pem), "-keyfile", str(self.key),
                "-startdate", start, "-enddate", end, "-in", f"{base}.csr", "-out", f"{base}.crt")
        return (base.with_suffix(".crt").read_text(), base.with_suffix(".key").read_text())

    def context(self):
        ctx = ssl.create_default_context(cafile=str(self.pem))
        return ctx


def replace(path, text):
    """As certbot and the ACME client do: write beside, fsync, rename over."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def served(port, sni, ca):
    """(CN, O) of the certificate the server presents for `sni` (None: no SNI sent)."""
    ctx = ca.context()
    if sni is None or sni.startswith("unknown"):
        ctx.check_hostname = False
    with socket.create_connection((h.HOST, port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni) as tls:
            cert = tls.getpeercert()
    subject = dict(x[0] for x in cert["subject"])
    return subject.get("commonName"), subject.get("organizationName")


def wait_served(port, sni, ca, want, seconds=60):
    deadline = time.monotonic() + seconds
    got = None
    while time.monotonic() < deadline:
        got = served(port, sni, ca)
        if got == want:
            return
        time.sleep(0.25)
    raise AssertionError(f"for SNI {sni!r} the server still presents {got}, wanted {want}")


def test():
    assert shutil.which("openssl"), "openssl is not installed (scripts/test installs it)"
    assert shutil.which("swaks"), "swaks is not installed (scripts/test installs it)"
    t = h.Tegami("tls-implicit")
    ca = Ca(t.root)
    main_cert, main_key = t.root / "main.crt", t.root / "main.key"
    b_cert, b_key = t.root / "b.crt", t.root / "b.key"
    wild = t.root / "wild.pem"
    text, key = ca.issue("main", ["localhost", "mail.a.test"], ips=["127.0.0.1"])
    main_cert.write_text(text)
    main_key.write_text(key)
    text, key = ca.issue("first", ["mail.b.test"])
    b_cert.write_text(text)
    b_key.write_text(key)
    wild.write_text("".join(ca.issue("wild", ["*.w.test"])))
    ok("a CA and four certificates made with openssl")

    t.write_config(f"""\
hostname = "mail.a.test"
[tls]
cert = "{main_cert}"
key = "{main_key}"
[[tls.certificates]]
cert = "{b_cert}"
key = "{b_key}"
[[tls.certificates]]
cert = "{wild}"
""")
    t.domain("example.com")
    t.account("alice@example.com", PW)
    acme = t.data / "acme" / "certs"
    acme.mkdir(parents=True)
    acme_file = acme / "acme.c.test.pem"
    # Padded, so that a later replacement can have exactly the same size (SIGHUP check).
    acme_file.write_text("".join(ca.issue("acme-1", ["acme.c.test"])) + "\n" * 400)
    srv = t.serve()
    imaps, pop3s, subs = srv.port("imaps"), srv.port("pop3s"), srv.port("submissions")
    silent = socket.create_connection((h.HOST, imaps), timeout=30)
    silent_since = time.monotonic()
    ok(f"listening on implicit-TLS ports: imaps {imaps}, pop3s {pop3s}, submissions {subs}")

    m = imaplib.IMAP4_SSL("localhost", imaps, ssl_context=ca.context(), timeout=30)
    caps = m.capabilities
    assert "STARTTLS" not in caps and "LOGINDISABLED" not in caps, f"IMAPS capabilities as before TLS: {caps}"
    subject = dict(x[0] for x in m.sock.getpeercert()["subject"])
    assert subject["organizationName"] == "main", f"IMAPS served {subject}"
    m.login("alice@example.com", PW)
    typ, data = m.select("INBOX")
    assert typ == "OK", f"SELECT INBOX over IMAPS: {typ} {data}"
    m.logout()
    ok(f"imaplib IMAP4_SSL verified the certificate, no STARTTLS/LOGINDISABLED ({caps}), LOGIN and SELECT")

    s = smtplib.SMTP_SSL("localhost", subs, context=ca.context(), timeout=30)
    s.ehlo("client.test")
    assert not s.has_extn("starttls"), f"STARTTLS offered on implicit TLS: {s.esmtp_features}"
    assert "PLAIN" in s.esmtp_features.get("auth", ""), f"AUTH not offered: {s.esmtp_features}"
    s.login("alice@example.com", PW)
    msg = crlf("""\
Message-ID: <implicit-1@example.com>
From: alice@example.com
To: alice@example.com
Subject: over submissions

sent on port 465's equivalent
""")
    refused = s.sendmail("alice@example.com", ["alice@example.com"], msg)
    assert not refused, f"refused: {refused}"
    s.quit()
    ok("smtplib SMTP_SSL: AUTH PLAIN offered without STARTTLS, login, message accepted")

    r = subprocess.run(
        ["swaks", "--tlsc", "--server", "localhost", "--port", str(subs), "--tls-verify",
         "--tls-ca-path", str(ca.pem), "--tls-sni", "localhost", "--auth", "PLAIN",
         "--auth-user", "alice@example.com", "--auth-password", PW, "--from", "alice@example.com",
         "--to", "alice@example.com", "--h-Subject", "swaks over implicit TLS", "--ehlo", "swaks.test"],
        capture_output=True, timeout=60,
    )
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, f"swaks --tlsc failed ({r.returncode}):\n{out}\n{r.stderr.decode(errors='replace')}"
    assert "250" in out.split("DATA")[-1], f"swaks saw no 250 after DATA:\n{out}"
    ok("swaks --tlsc with --tls-verify against the test CA: AUTH PLAIN and a message")

    p = poplib.POP3_SSL("localhost", pop3s, context=ca.context(), timeout=30)
    caps = p.capa()
    assert "STLS" not in caps, f"STLS offered on POP3S: {caps}"
    p.user("alice@example.com")
    p.pass_(PW)
    count, _ = p.stat()
    assert count == 2, f"alice has {count} messages over POP3S, wanted 2 (smtplib + swaks)"
    p.quit()
    ok("poplib POP3_SSL: no STLS, login, both messages there")

    for sni, want in [
        ("mail.b.test", ("mail.b.test", "first")),
        ("MAIL.B.test", ("mail.b.test", "first")),
        ("x.w.test", ("*.w.test", "wild")),
        ("acme.c.test", ("acme.c.test", "acme-1")),
        ("unknown.test", ("localhost", "main")),
        (None, ("localhost", "main")),
    ]:
        got = served(imaps, sni, ca)
        assert got == want, f"SNI {sni!r}: served {got}, wanted {want}"
    assert served(pop3s, "mail.b.test", ca) == ("mail.b.test", "first")
    ok("SNI: exact names (any case), a wildcard, an ACME file, the default for none or unknown")

    pid = srv.pid
    # A session opened before the replacement goes on with the certificate it started with.
    early = ca.context().wrap_socket(socket.create_connection((h.HOST, imaps), timeout=10),
                                     server_hostname="mail.b.test")
    early_file = early.makefile("rb")
    assert early_file.readline().startswith(b"* OK"), "no IMAPS greeting"
    text, key = ca.issue("second", ["mail.b.test"])
    replace(b_key, key)
    replace(b_cert, text)
    wait_served(imaps, "mail.b.test", ca, ("mail.b.test", "second"))
    wait_served(subs, "mail.b.test", ca, ("mail.b.test", "second"))
    assert srv.alive() and srv.pid == pid
    early.sendall(b"a1 NOOP\r\n")
    assert early_file.readline().startswith(b"a1 OK"), "a session opened before the reload broke"
    subject = dict(x[0] for x in early.getpeercert()["subject"])
    assert subject["organizationName"] == "first", subject
    early.close()
    ok("a certificate replaced on disk is served to the next connections, no restart; a session in flight keeps its own")

    # Rewritten in place with the same size and mtime: the poll cannot see it, SIGHUP can.
    before = os.stat(acme_file)
    new = "".join(ca.issue("acme-2", ["acme.c.test"]))
    assert len(new) <= before.st_size, "the replacement is longer than the padded original"
    with open(acme_file, "r+") as f:
        f.write(new + "\n" * (before.st_size - len(new)))
        f.flush()
        os.fsync(f.fileno())
    os.utime(acme_file, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(acme_file)
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)
    time.sleep(5)  # two polls
    assert served(imaps, "acme.c.test", ca) == ("acme.c.test", "acme-1"), "the poll saw an unchanged stamp"
    os.kill(srv.pid, signal.SIGHUP)
    wait_served(imaps, "acme.c.test", ca, ("acme.c.test", "acme-2"), seconds=60)
    assert srv.alive(), "SIGHUP stopped the server"
    ok("SIGHUP reads every certificate again (a change the poll could not see is served)")

    def refusals():
        return [line for line in srv.log_text().splitlines() if "certificate not reloaded" in line]

    # (The key and certificate replaced one after the other above may have been seen
    # mismatched by one poll in between: that was logged too, and is counted out here.)
    before = len(refusals())
    replace(b_cert, "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    deadline = time.monotonic() + 60
    while len(refusals()) == before and time.monotonic() < deadline:
        time.sleep(0.25)
    lines = refusals()[before:]
    assert len(lines) == 1, f"wanted one log line about the bad file, got {lines}"
    assert str(b_cert) in lines[0] and "SIGHUP" in lines[0], f"the log line names no file or hint: {lines[0]}"
    time.sleep(3)  # more polls: the unchanged bad file is not logged again
    lines = refusals()[before:]
    assert len(lines) == 1, f"the bad file was logged again on every poll: {lines}"
    assert served(imaps, "mail.b.test", ca) == ("mail.b.test", "second")
    ok(f"a bad replacement keeps the old certificate serving and logs one line: {lines[0][-120:]}")

    silent.settimeout(max(1.0, 14 - (time.monotonic() - silent_since)))
    try:
        data = silent.recv(100)
    except (ConnectionResetError, socket.timeout) as e:
        data = e
    waited = time.monotonic() - silent_since
    assert data == b"", f"a client that never sent a ClientHello is still connected after {waited:.1f} s ({data!r})"
    assert waited >= 9, f"the silent client was dropped after {waited:.1f} s, before the 10 s deadline"
    silent.close()
    ok(f"a client that never starts the handshake is dropped after {waited:.1f} s")

    assert srv.stop() == 0
    t.check_store()

    # doctor: every certificate, configured or ACME, is checked and named by its file.
    soon, expired, crossed = t.root / "soon.pem", t.root / "expired.pem", t.root / "crossed.crt"
    soon.write_text("".join(ca.issue("soon", ["soon.test"], days=10)))
    expired.write_text("".join(ca.issue_dated("old", "old.test", "20200101000000Z", "20200201000000Z")))
    crossed.write_text(ca.issue("crossed", ["crossed.test"])[0])
    (acme / "broken.pem").write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    t.write_config(f"""\
hostname = "mail.a.test"
[tls]
cert = "{main_cert}"
key = "{main_key}"
[[tls.certificates]]
cert = "{soon}"
[[tls.certificates]]
cert = "{expired}"
[[tls.certificates]]
cert = "{crossed}"
key = "{main_key}"
""")
    r = t.cli("doctor", "--json", check=False)
    assert r.code == 1, f"doctor should FAIL on an expired and a mismatched certificate: {r!r}"
    found = [f for f in json.loads(r.out) if f["group"] == "TLS"]

    def finding(item, path):
        hits = [f for f in found if f["item"] == item and str(path) in f["value"]]
        assert len(hits) == 1, f"no single TLS {item!r} finding naming {path}: {found}"
        return hits[0]

    assert finding("certificate", main_cert)["status"] == "OK"
    f = finding("certificate", soon)
    assert f["status"] == "WARN" and ("in 9 days" in f["value"] or "in 10 days" in f["value"]), f
    f = finding("certificate", expired)
    assert f["status"] == "FAIL" and "expired" in f["value"] and f["hint"], f
    f = finding("key pair", crossed)
    assert f["status"] == "FAIL" and "does not belong" in f["value"], f
    f = finding("certificate", acme / "broken.pem")
    assert f["status"] == "FAIL" and f["hint"], f
    assert finding("certificate", acme_file)["status"] == "OK"
    ok("doctor: each certificate by file: expiring in 10 days WARN, expired FAIL, key of another FAIL, bad ACME file FAIL")

    t.write_config(f"""\
[tls]
cert = "{t.root / 'gone.crt'}"
key = "{main_key}"
""")
    r = t.cli("serve", "--smtp", f"{h.HOST}:0", "--pop3", f"{h.HOST}:0", "--imap", f"{h.HOST}:0",
              "--submission", f"{h.HOST}:0", "--http", f"{h.HOST}:0", "--imaps", f"{h.HOST}:0",
              "--pop3s", f"{h.HOST}:0", "--submissions", f"{h.HOST}:0", check=False, timeout=60)
    # The error is one line; log lines before it (warnings of the start-up so far) carry a
    # timestamp and are not part of it.
    lines = [ln for ln in r.err.strip().splitlines() if not re.match(r"\d{4}-\d\d-\d\dT", ln)]
    assert r.code != 0 and len(lines) == 1, f"missing certificate: {r!r}"
    assert "gone.crt" in lines[0] and "config file" in lines[0], f"no file or hint: {lines[0]}"
    ok(f"a missing certificate at start is one line: {lines[0]}")

    # No [tls] at all, but a certificate issued by ACME: TLS is on, from that file alone
    # (the broken file beside it is logged and skipped).
    t.write_config("hostname = \"mail.a.test\"\n")
    srv = t.serve()
    assert served(srv.port("imaps"), "acme.c.test", ca) == ("acme.c.test", "acme-2")
    assert served(srv.port("pop3s"), None, ca) == ("acme.c.test", "acme-2")
    s = h.smtp_client(srv.smtp)
    assert s.has_extn("starttls"), f"no STARTTLS with an ACME certificate only: {s.esmtp_features}"
    s.quit()
    assert "broken.pem" in srv.log_text(), "the broken ACME file was not logged"
    assert srv.stop() == 0
    ok("no [tls] but an ACME certificate in DATA/acme/certs: implicit TLS and STARTTLS on")

    shutil.rmtree(acme)
    r = t.cli("serve", "--smtp", f"{h.HOST}:0", "--pop3", f"{h.HOST}:0", "--imap", f"{h.HOST}:0",
              "--submission", f"{h.HOST}:0", "--http", f"{h.HOST}:0", "--imaps", f"{h.HOST}:0",
              check=False, timeout=60)
    # The error is one line; log lines before it (warnings of the start-up so far) carry a
    # timestamp and are not part of it.
    lines = [ln for ln in r.err.strip().splitlines() if not re.match(r"\d{4}-\d\d-\d\dT", ln)]
    assert r.code != 0 and len(lines) == 1, f"--imaps without a certificate: {r!r}"
    assert "needs a certificate" in lines[0] and "[tls]" in lines[0], f"no hint: {lines[0]}"
    ok(f"--imaps without any certificate is one line: {lines[0]}")


if __name__ == "__main__":
    h.main(test, timeout=120)
