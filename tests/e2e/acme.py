"""ACME (RFC 8555) against Pebble, Let's Encrypt's test CA, all on loopback.

Pebble serves its directory over HTTPS with a certificate made here by openssl (that root
is tegami's `acme.ca_file`), validates HTTP-01 by fetching
http://mail.test:<tegami's HTTP port>/.well-known/acme-challenge/..., and resolves mail.test
through a dnsmasq started here. Checked:
- a certificate is obtained: acme/certs/mail.test.pem (0600, in 0700 directories) holds the
  chain then the key; the chain verifies with openssl up to Pebble's root through Pebble's
  intermediate; the names are the configured ones; the key is the certificate's; the
  account is in acme/account.json (0600); `tegami acme status` shows it;
- not renewed while not due (renew_before_days = 30, Pebble issues for years);
- renewed once due (renew_before_days far beyond the validity, after a restart that reuses
  the account): the file is replaced by one with a new serial, still whole;
- with Pebble stopped, the certificate file stays byte for byte, a log line names the
  certificate, the error and a hint, `acme status` reports FAILING (exit 1), the webhook gets
  the `acme_renewal_failing` alert and /metrics shows it active;
- a CA that answers errors (a name Pebble cannot resolve): its words and a hint in the log,
  the other certificate untouched, no file for the refused one.
- Pebble back (it keeps accounts in memory only, so it has forgotten tegami's): tegami
  registers a new account, the next retry renews and the status is clean again.
"""

import http.server
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import peers  # noqa: E402
from harness import ok  # noqa: E402

NAMES = ["mail.test", "www.mail.test"]
posts = []


class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        posts.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def wait_for(what, predicate, timeout=30, on_fail=None):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}" + (f": {on_fail()}" if on_fail else ""))
        time.sleep(0.2)


def openssl(*args, stdin=None):
    p = subprocess.run(["openssl", *args], input=stdin, capture_output=True, timeout=30)
    assert p.returncode == 0, f"openssl {' '.join(args)}: {p.stderr.decode(errors='replace')}"
    return p.stdout.decode(errors="replace")


def make_tls_for_pebble(d):
    """A root CA and a 127.0.0.1 leaf for Pebble's own HTTPS (what Pebble's minica does)."""
    root_key, root = d / "root.key", d / "root.pem"
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(root_key), "-out", str(root), "-days", "30", "-subj", "/CN=pebble test root",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    leaf_key, csr, leaf = d / "leaf.key", d / "leaf.csr", d / "leaf.pem"
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(leaf_key), "-out", str(csr), "-subj", "/CN=localhost")
    ext = d / "leaf.ext"
    ext.write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                   "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(root), "-CAkey", str(root_key), "-CAcreateserial",
            "-out", str(leaf), "-days", "30", "-extfile", str(ext))
    return root, leaf, leaf_key


class Pebble:
    """pebble on 127.0.0.1, its VA validating HTTP-01 on `http_port` through `dns`."""

    def __init__(self, d, http_port, dns_addr, leaf, leaf_key):
        assert shutil.which("pebble"), "pebble is not installed (Debian package pebble; scripts/test installs it)"
        self.port, self.mgmt = peers.free_port(), peers.free_port()
        self.config = d / "pebble.json"
        self.config.write_text(json.dumps({"pebble": {
            "listenAddress": f"{h.HOST}:{self.port}",
            "managementListenAddress": f"{h.HOST}:{self.mgmt}",
            "certificate": str(leaf), "privateKey": str(leaf_key),
            "httpPort": http_port, "tlsPort": peers.free_port(),
            "ocspResponderURL": "", "externalAccountBindingRequired": False,
        }}))
        self.dns_addr = dns_addr
        self.log = d / "pebble.log"
        self.proc = None
        h._servers.append(self)

    def start(self):
        env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(["pebble", "-config", str(self.config), "-dnsserver", self.dns_addr],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                         preexec_fn=h._set_pdeathsig)
        peers.wait_port(self.port, "pebble", alive=lambda: self.proc.poll() is None)
        peers.wait_port(self.mgmt, "pebble's management interface", alive=lambda: self.proc.poll() is None)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        peers.wait_closed(self.port, "pebble")

    def force_kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def describe_failure(self):
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            text = ""
        return "--- pebble log (last 30 lines):\n" + "\n".join(text.splitlines()[-30:]) + "\n---"

    def fetch(self, path, ctx):
        with urllib.request.urlopen(f"https://{h.HOST}:{self.mgmt}{path}", context=ctx, timeout=10) as r:
            return r.read().decode()


def cert_facts(path):
    """(serial, names, notAfter) of the file's first certificate, and whether its key matches."""
    text = path.read_text()
    first = text[:text.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")] + "\n"
    serial = openssl("x509", "-noout", "-serial", stdin=first.encode()).strip().split("=", 1)[1].lower()
    san = openssl("x509", "-noout", "-ext", "subjectAltName", stdin=first.encode())
    names = sorted(p.strip()[len("DNS:"):] for p in san.splitlines()[-1].split(",") if p.strip().startswith("DNS:"))
    key_start = text.index("-----BEGIN PRIVATE KEY-----")
    pub_of_key = openssl("pkey", "-pubout", stdin=text[key_start:].encode())
    pub_of_cert = openssl("x509", "-noout", "-pubkey", stdin=first.encode())
    return serial, names, pub_of_key == pub_of_cert


def mode(p):
    return oct(p.stat().st_mode & 0o777)


def test():
    hook = http.server.ThreadingHTTPServer((h.HOST, 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()

    t = h.Tegami("acme")
    tls_dir = t.root / "pebble-tls"
    tls_dir.mkdir()
    root, leaf, leaf_key = make_tls_for_pebble(tls_dir)
    dns = peers.DnsServer(local=("test",))
    for name in NAMES:
        dns.a(name, "127.0.0.1")
    dns.start()
    http_port = peers.free_port()
    pebble = Pebble(t.root, http_port, dns.addr, leaf, leaf_key)
    pebble.start()
    ok(f"pebble on {h.HOST}:{pebble.port} validating HTTP-01 on port {http_port}, names from dnsmasq on {dns.addr}")

    def config(renew_before_days):
        t.write_config(f"""hostname = "mail.test"
[acme]
directory = "https://{h.HOST}:{pebble.port}/dir"
contact = ["mailto:postmaster@mail.test"]
names = {json.dumps(NAMES)}
renew_before_days = {renew_before_days}
ca_file = "{root}"
check_interval_secs = 2
retry_secs = 1
timeout_secs = 20
[alerts]
check_interval_secs = 1
webhook = "http://{h.HOST}:{hook.server_address[1]}/hook"
""")

    config(30)
    srv = t.serve(extra=["--http", f"{h.HOST}:{http_port}"])
    pem = t.data / "acme" / "certs" / "mail.test.pem"
    wait_for("the first certificate", pem.exists, on_fail=srv.describe_failure)
    serial1, names, key_ok = cert_facts(pem)
    assert names == sorted(NAMES), names
    assert key_ok, "the key in the file is not the certificate's"
    assert (mode(pem), mode(pem.parent), mode(t.data / "acme")) == ("0o600", "0o700", "0o700")
    account = t.data / "acme" / "account.json"
    assert mode(account) == "0o600", mode(account)
    account_bytes = account.read_bytes()
    assert json.loads(account_bytes)["directory"].endswith("/dir")
    ok(f"certificate obtained: {pem.name} (0600) names {names}, serial {serial1}, key matches; account.json 0600")

    ctx = ssl.create_default_context(cafile=str(root))
    pebble_root = tls_dir / "pebble-root.pem"
    pebble_root.write_text(pebble.fetch("/roots/0", ctx))
    intermediate = pebble.fetch("/intermediates/0", ctx)
    chain = tls_dir / "chain.pem"
    text = pem.read_text()
    chain.write_text(text[text.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----"):text.index("-----BEGIN PRIVATE KEY-----")])
    assert intermediate.strip() in text, "the file's chain does not carry Pebble's intermediate"
    leaf_only = tls_dir / "leaf-issued.pem"
    leaf_only.write_text(text[:text.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")] + "\n")
    out = openssl("verify", "-CAfile", str(pebble_root), "-untrusted", str(chain), str(leaf_only))
    assert out.strip().endswith("OK"), out
    ok("issued by Pebble's intermediate: openssl verifies it up to Pebble's root")

    def served_serial(name):
        """The serial of the certificate the IMAPS listener shows a client asking for NAME,
        or None while the handshake fails (the certificate not loaded yet)."""
        try:
            return _served_serial(name)
        except (ssl.SSLError, OSError):
            return None

    def _served_serial(name):
        ctx = ssl.create_default_context(cafile=str(pebble_root))
        ctx.load_verify_locations(cadata=intermediate)
        with socket.create_connection((h.HOST, srv.port("imaps")), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname=name) as tls:
                der = tls.getpeercert(binary_form=True)
        out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-serial"], input=der,
                             capture_output=True, check=True).stdout.decode()
        return out.strip().split("=", 1)[1].upper()

    got = wait_for("the issued certificate on IMAPS", lambda: served_serial("mail.test"),
                   on_fail=srv.describe_failure)
    assert got == serial1.upper(), (got, serial1)
    assert served_serial("www.mail.test") == serial1.upper()
    ok("IMAPS serves the issued certificate (verified against Pebble's root) for both names, without a restart")

    status = t.cli("acme", "status")
    assert "mail.test" in status.out and serial1 in status.out and "FAILING" not in status.out, status
    ok("`tegami acme status` lists the certificate with its serial")

    time.sleep(5)  # two check intervals and more
    assert cert_facts(pem)[0] == serial1
    assert "asking the ACME server" not in srv.log_text().split("certificate obtained and saved", 1)[1]
    ok("not renewed while not due (30 days before an expiry years away)")
    srv.stop()

    config(100000)
    srv = t.serve(extra=["--http", f"{h.HOST}:{http_port}"])
    serial2 = wait_for("a renewed certificate", lambda: (s := cert_facts(pem)[0]) != serial1 and s,
                       on_fail=srv.describe_failure)
    serial2, names, key_ok = cert_facts(pem)
    assert names == sorted(NAMES) and key_ok
    assert account.read_bytes() == account_bytes, "the account was not reused"
    ok(f"renewed once due: serial {serial1} -> {serial2}, same account, names and key checked")
    wait_for("the renewed certificate on IMAPS", lambda: served_serial("mail.test") == serial2.upper(),
             on_fail=srv.describe_failure)
    ok("IMAPS serves the renewed certificate without a restart")

    pebble.stop()
    log_before = len(srv.log_text())
    failed = lambda: [ln for ln in srv.log_text()[log_before:].splitlines()  # noqa: E731
                      if "ACME certificate renewal failed" in ln]
    wait_for("a failure line in the log", failed, on_fail=srv.describe_failure)
    kept = pem.read_bytes()
    wait_for("a second failed attempt", lambda: len(failed()) >= 2, on_fail=srv.describe_failure)
    assert pem.read_bytes() == kept, "the certificate file changed while the CA was down"
    _, _, key_ok = cert_facts(pem)
    assert key_ok
    line = failed()[-1]
    assert "mail.test" in line and "stays in use" in line and "hint" in line, line
    ok(f"Pebble down: the certificate stays byte for byte; log: {line.strip()[:300]}")

    status = t.cli("acme", "status", check=False)
    assert status.code == 1 and "FAILING" in status.out, status
    ok(f"`tegami acme status` says FAILING and exits 1: {[ln.strip() for ln in status.out.splitlines() if 'FAILING' in ln][0][:200]}")
    alert = wait_for("the acme_renewal_failing alert on the webhook",
                     lambda: [p for p in posts if p["alert"] == "acme_renewal_failing"], on_fail=srv.describe_failure)
    assert "mail.test" in alert[0]["message"], alert
    with urllib.request.urlopen(f"http://{h.HOST}:{http_port}/metrics", timeout=10) as r:
        metrics = r.read().decode()
    assert 'tegami_alert_active{alert="acme_renewal_failing"} 1' in metrics, metrics
    ok(f"alert raised (webhook and /metrics): {alert[0]['message'][:200]}")

    pebble.start()
    wait_for("a renewal after Pebble came back",
             lambda: cert_facts(pem)[0] != serial2 and "FAILING" not in t.cli("acme", "status", check=False).out,
             on_fail=srv.describe_failure)
    assert "registering a new one" in srv.log_text(), "no log line about the new account"
    assert account.read_bytes() != account_bytes and mode(account) == "0o600"
    ok("Pebble back (with no memory of the account): a new account, the next retry renews, the status is clean")

    srv.stop()
    # A CA that answers with an error: Pebble cannot resolve nx.test (dnsmasq: NXDOMAIN), so
    # it refuses the challenge; the CA's own words reach the log, the other file stays.
    config(30)
    t.config.write_text(t.config.read_text().replace("[alerts]", '[[acme.certificate]]\nnames = ["nx.test"]\n[alerts]'))
    good = pem.read_bytes()
    srv = t.serve(extra=["--http", f"{h.HOST}:{http_port}"])
    refused = wait_for("the CA's refusal in the log", lambda: [ln for ln in srv.log_text().splitlines()
                                                             if "renewal failed" in ln and "certificate=nx.test" in ln],
                       on_fail=srv.describe_failure)
    assert "could not validate nx.test" in refused[0] and "could not resolve" in refused[0], refused[0]
    assert "resolve to this server" in refused[0], refused[0]
    assert pem.read_bytes() == good and not (pem.parent / "nx.test.pem").exists()
    ok(f"a CA answering errors: logged in its own words, nothing written: {refused[0].split('error=', 1)[1][:200]}")
    srv.stop()
    errors = [ln for ln in srv.log_text().splitlines() if "panick" in ln]
    assert not errors, errors
    ok("the server stopped cleanly with the renewal service running")
    pebble.stop()
    dns.close()


if __name__ == "__main__":
    h.main(test, timeout=120)
