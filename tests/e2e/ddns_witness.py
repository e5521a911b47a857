#!/usr/bin/env python3
"""The DDNS updater and the witness, on loopback, with servers written here.

A DNS server (dnspython: every UPDATE's TSIG is verified with the shared key, and a
signed answer goes back), an HTTP server that echoes "the public address" the test sets
and plays a dyndns2 update URL, and a webhook that collects alerts.

RFC 2136 (tegami A):
- The first address is published once; while it stays the same, nothing more is sent.
- The address changes: exactly ONE update with the new address (delete the A RRset, add
  the new A), a log line naming both addresses, and a `ddns_address_changed` alert.
- Restarted with the same address, tegami sends nothing (the state persisted).
- The DNS server answers REFUSED: a log line with the rcode and a hint, and a
  `ddns_update_failed` alert; the update is retried, and goes through once the server
  accepts again. NOTAUTH is logged with its own hint; an unsigned NOERROR (what a forger
  without the key could send) is not taken for success.
The HTTP update URL (tegami B, which also sends witness heartbeats):
- One GET with the record's name, the address, and basic auth; another server takes its
  address from an interface (lo).
The witness (tegami W receives, B sends every second):
- W starts over a damaged record: kept aside, one log line, W serves.
- B's first heartbeats find W down: a log line with the reason. Once W runs they are
  recorded; `tegami witness log` shows B's address history and last heartbeat.
- Behind a trusted proxy, X-Forwarded-For gives the address; a wrong token and an unknown
  sender get 403, an oversized body 413.
- B stops: W raises `witness_missing_home` after `missing_after_secs`.
"""

import base64
import http.server
import json
import os
import re
import socket
import sys
import threading
import time
import urllib.error
import urllib.request

try:
    import dns.message
    import dns.rcode
    import dns.rdataclass
    import dns.rdatatype
    import dns.tsigkeyring
except ImportError:
    # python3 may be another interpreter than Debian's, which has python3-dnspython.
    if sys.executable != "/usr/bin/python3" and os.path.exists("/usr/bin/python3"):
        os.execv("/usr/bin/python3", ["/usr/bin/python3", *sys.argv])
    raise SystemExit("dnspython is missing (Debian python3-dnspython; scripts/test installs it)")

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import ok  # noqa: E402

KEY_NAME = "tegami-key."
SECRET = base64.b64encode(b"a shared secret of 32 bytes ....").decode()
KEYRING = dns.tsigkeyring.from_text({KEY_NAME: SECRET})
TOKEN = "witness-token-0123456789"


class DnsServer:
    """UDP on loopback: verifies each UPDATE's TSIG, records it, answers `self.rcode`."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((h.HOST, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.updates = []
        self.bad = []
        self.rcode = dns.rcode.NOERROR
        self.unsigned = False  # answer without TSIG, as a forger without the key would
        self.lock = threading.Lock()
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while True:
            try:
                data, peer = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                msg = dns.message.from_wire(data, keyring=KEYRING)
            except Exception as e:  # noqa: BLE001 - a bad signature is a finding, not a crash
                with self.lock:
                    self.bad.append(f"{type(e).__name__}: {e}")
                continue
            entry = {
                "tsig": msg.had_tsig,
                "key": str(msg.keyname),
                "zone": [(str(q.name), dns.rdatatype.to_text(q.rdtype)) for q in msg.zone],
                "prereq": len(msg.prerequisite),
                "update": [
                    (
                        str(r.name),
                        dns.rdatatype.to_text(r.rdtype),
                        dns.rdataclass.to_text(r.deleting) if r.deleting else "add",
                        r.ttl,
                        sorted(x.to_text() for x in r),
                    )
                    for r in msg.update
                ],
                "rcode": dns.rcode.to_text(self.rcode),
            }
            with self.lock:
                self.updates.append(entry)
            reply = dns.message.make_response(msg)
            reply.set_rcode(self.rcode)
            if self.unsigned:
                reply.tsig = None
            self.sock.sendto(reply.to_wire(), peer)

    def snapshot(self):
        with self.lock:
            return list(self.updates)

    def added(self, address):
        """The updates (of any verdict) that add `address`."""
        return [u for u in self.snapshot() if any(op == "add" and address in data for _n, _t, op, _ttl, data in u["update"])]


class Web:
    """The echo URL, the dyndns2 update URL and the alert webhook, on one listener."""

    address = "192.0.2.10"
    nic_updates = []
    alerts = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if self.path == "/ip":
                self.reply(200, Web.address + "\n")
            elif self.path.startswith("/nic/update"):
                Web.nic_updates.append((self.path, self.headers.get("Authorization")))
                m = re.search(r"myip=([^&]+)", self.path)
                self.reply(200, f"good {m.group(1) if m else ''}\n")
            else:
                self.reply(404, "no\n")

        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            Web.alerts.append(json.loads(body))
            self.reply(204, "")

        def reply(self, code, text):
            data = text.encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    def __init__(self):
        self.server = http.server.ThreadingHTTPServer((h.HOST, 0), Web.Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path):
        return f"http://{h.HOST}:{self.port}{path}"

    @staticmethod
    def alert_keys():
        return [a["alert"] for a in list(Web.alerts)]


def wait_for(what, predicate, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.1)


def free_port():
    return h.free_port()


def post(url, body, token=None, headers=None):
    req = urllib.request.Request(url, data=body, method="POST")
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def rfc2136(dns_server, web):
    t = h.Tegami("ddns")
    t.write_config(f"""
hostname = "mail.example.com"
[alerts]
webhook = "{web.url('/hook')}"
check_interval_secs = 1
[ddns]
record = "home.example.com"
check_url = "{web.url('/ip')}"
interval_secs = 1
retry_secs = 1
ttl = 60
server = "{h.HOST}:{dns_server.port}"
zone = "example.com"
tsig_key_name = "{KEY_NAME}"
tsig_secret = "{SECRET}"
timeout_secs = 3
""")
    srv = t.serve()
    first = wait_for("the first update", lambda: dns_server.added("192.0.2.10"))
    u = first[0]
    assert u["tsig"] and u["key"] == KEY_NAME, f"update not signed with {KEY_NAME}: {u}"
    assert u["zone"] == [("example.com.", "SOA")], f"zone section: {u['zone']}"
    assert u["update"] == [
        ("home.example.com.", "A", "ANY", 0, []),
        ("home.example.com.", "A", "add", 60, ["192.0.2.10"]),
    ], f"update section: {u['update']}"
    assert u["prereq"] == 0
    ok("the first address goes out as one TSIG-signed UPDATE: delete the A RRset, add 192.0.2.10 (TTL 60)")
    time.sleep(2.5)
    assert len(dns_server.snapshot()) == 1, f"updates sent for an unchanged address: {dns_server.snapshot()}"
    assert not dns_server.bad, f"updates whose TSIG did not verify: {dns_server.bad}"
    ok("an unchanged address sends nothing more (2.5 s of checks every second)")

    Web.address = "198.51.100.20"
    wait_for("the update to 198.51.100.20", lambda: dns_server.added("198.51.100.20"))
    time.sleep(2.5)
    assert len(dns_server.added("198.51.100.20")) == 1, f"not exactly one update: {dns_server.snapshot()}"
    assert len(dns_server.snapshot()) == 2, f"{dns_server.snapshot()}"
    line = wait_for(
        "the change in the log",
        lambda: [x for x in srv.log_text().splitlines() if "changed from 192.0.2.10 to 198.51.100.20" in x],
    )
    assert "home.example.com" in line[0], line
    wait_for("the address-change alert", lambda: "ddns_address_changed" in Web.alert_keys())
    alert = [a for a in Web.alerts if a["alert"] == "ddns_address_changed"][0]
    assert "198.51.100.20" in alert["message"], alert
    ok(f"a change makes exactly one update, a log line ({line[0].split('ddns:')[-1].strip()!r}) and an alert")
    assert srv.stop() == 0

    srv = t.serve()
    time.sleep(2.5)
    assert len(dns_server.snapshot()) == 2, f"a restart re-sent the update: {dns_server.snapshot()}"
    ok("restarted with the same address, tegami sends no update (the last published address persisted)")

    dns_server.rcode = dns.rcode.REFUSED
    Web.address = "203.0.113.30"
    wait_for("two refused tries", lambda: len(dns_server.added("203.0.113.30")) >= 2)
    line = wait_for(
        "the failure in the log",
        lambda: [x for x in srv.log_text().splitlines() if "cannot update the DNS record" in x and "REFUSED" in x.upper()],
    )
    assert "allow-update" in line[0] or "update-policy" in line[0], f"no hint in {line[0]!r}"
    assert "retrying" in line[0], line[0]
    wait_for("the update-failed alert", lambda: "ddns_update_failed" in Web.alert_keys())
    ok(f"a REFUSED update is logged with a hint ({line[0].split('ddns:')[-1].strip()[:110]!r}...), alerted, and retried")

    dns_server.rcode = dns.rcode.NOERROR
    tries = len(dns_server.added("203.0.113.30"))
    wait_for("the retry that succeeds", lambda: any(u["rcode"] == "NOERROR" for u in dns_server.added("203.0.113.30")))
    wait_for("the recovery in the log", lambda: "now holds 203.0.113.30" in srv.log_text())
    time.sleep(2)
    assert len(dns_server.added("203.0.113.30")) == tries + 1, f"updates after success: {dns_server.snapshot()}"
    assert not dns_server.bad, f"updates whose TSIG did not verify: {dns_server.bad}"
    ok("once the server accepts again, one more update goes through and then none")

    dns_server.rcode = dns.rcode.NOTAUTH
    Web.address = "203.0.113.40"
    line = wait_for(
        "the NOTAUTH failure in the log",
        lambda: [x for x in srv.log_text().splitlines() if "203.0.113.40" in x and "NOTAUTH" in x],
    )
    assert "TSIG key" in line[0], f"no hint in {line[0]!r}"
    ok("a NOTAUTH answer is logged with its hint (the zone, the key, the clock)")

    dns_server.rcode = dns.rcode.NOERROR
    dns_server.unsigned = True
    unsigned_from = len(dns_server.added("203.0.113.40"))
    wait_for("two unsigned NOERROR answers", lambda: len(dns_server.added("203.0.113.40")) >= unsigned_from + 2)
    line = wait_for(
        "the unverified answer in the log",
        lambda: [x for x in srv.log_text().splitlines() if "203.0.113.40" in x and "does not verify" in x],
    )
    assert "now holds 203.0.113.40" not in srv.log_text()
    dns_server.unsigned = False
    wait_for("the signed success", lambda: "now holds 203.0.113.40" in srv.log_text())
    ok("an unsigned NOERROR is not taken for success: retried until a signed answer comes")
    assert not dns_server.bad, f"updates whose TSIG did not verify: {dns_server.bad}"
    assert srv.stop() == 0


def http_update_and_witness(web):
    w_port = free_port()
    b = h.Tegami("ddns-http")
    b.write_config(f"""
hostname = "home.example.com"
[ddns]
record = "home.example.com"
check_url = "{web.url('/ip')}"
interval_secs = 1
update_url = "{web.url('/nic/update')}?hostname={{name}}&myip={{ip}}"
update_username = "home"
update_password = "pa ss"
[witness]
url = "http://{h.HOST}:{w_port}/witness/heartbeat"
name = "home"
token = "{TOKEN}"
interval_secs = 1
""")
    Web.address = "192.0.2.77"
    sender = b.serve()
    wait_for("the HTTP update", lambda: Web.nic_updates)
    time.sleep(2.5)
    assert len(Web.nic_updates) == 1, f"not exactly one HTTP update: {Web.nic_updates}"
    path, auth = Web.nic_updates[0]
    assert path == "/nic/update?hostname=home.example.com&myip=192.0.2.77", path
    assert auth == "Basic " + base64.b64encode(b"home:pa ss").decode(), auth
    ok("the HTTP update URL is called once, with the name, the address and basic auth")

    c = h.Tegami("ddns-interface")
    c.write_config(f"""
[ddns]
record = "lo.example.com"
interface = "lo"
interval_secs = 1
update_url = "{web.url('/nic/update')}?hostname={{name}}&myip={{ip}}"
""")
    by_interface = c.serve()
    want = "/nic/update?hostname=lo.example.com&myip=127.0.0.1"
    wait_for("the update from the interface's address", lambda: [p for p, _a in Web.nic_updates if p == want])
    assert by_interface.stop() == 0
    ok("with interface = \"lo\" the address comes from the interface (127.0.0.1)")

    line = wait_for(
        "the failed heartbeat in the log",
        lambda: [x for x in sender.log_text().splitlines() if "witness: heartbeat to" in x and "failed" in x],
    )
    assert "cannot connect" in line[0], line[0]
    ok(f"a witness that is down: one log line with the reason ({line[0].split('witness:')[-1].strip()[:100]!r}...)")

    w = h.Tegami("witness")
    w.write_config(f"""
[alerts]
webhook = "{web.url('/hook')}"
check_interval_secs = 1
[witness]
trusted_proxies = ["127.0.0.1"]
keep_heartbeats = 3
[[witness.sender]]
name = "home"
token = "{TOKEN}"
missing_after_secs = 3
""")
    w.data.mkdir(parents=True)
    (w.data / "witness.json").write_text('{"senders": {"home": ')
    witness = w.serve(extra=["--http", f"{h.HOST}:{w_port}"])
    assert "the record was damaged" in witness.log_text(), witness.log_text()[-2000:]
    assert list(w.data.glob("witness.json.damaged-*")), "the damaged record was not kept aside"
    ok("a damaged witness record is kept aside with a log line; the server starts all the same")
    url = f"http://{h.HOST}:{w_port}/witness/heartbeat"
    wait_for("recorded heartbeats", lambda: "home: last heartbeat" in w.cli("witness", "log").out, timeout=10)
    time.sleep(2)
    out = w.cli("witness", "log").out
    m = re.search(r"home: last heartbeat (\S+ \S+ UTC) from 127\.0\.0\.1 \((\d+) s ago\), (\d+) received", out)
    assert m and int(m.group(3)) >= 2, f"witness log: {out}"
    ok(f"heartbeats are recorded: `witness log` says {out.splitlines()[0]!r}")

    code, _ = post(url, b'{"name": "home"}', token="wrong-token-0123456789")
    assert code == 403, code
    code, _ = post(url, b'{"name": "stranger"}', token=TOKEN)
    assert code == 403, code
    code, _ = post(url, b'{"name": "home", "pad": "' + b"x" * 4000 + b'"}', token=TOKEN)
    assert code == 413, code
    ok("a wrong token and an unknown sender get 403, an oversized body 413")

    code, text = post(url, b'{"name": "home"}', token=TOKEN, headers={"X-Forwarded-For": "203.0.113.99"})
    assert code == 200 and "203.0.113.99" in text, (code, text)
    out = w.cli("witness", "log").out
    rows = [x.split() for x in out.splitlines() if x.startswith("  ") and not x.split()[0] == "address"]
    assert [r[0] for r in rows][:2] == ["127.0.0.1", "203.0.113.99"], f"address history: {out}"
    wait_for("the next heartbeat from 127.0.0.1", lambda: w.cli("witness", "log").out.count("127.0.0.1") >= 3)
    out = w.cli("witness", "log").out
    history = [x.split()[0] for x in out.splitlines()[2:]]
    assert history == ["127.0.0.1", "203.0.113.99", "127.0.0.1"], f"address history: {out}"
    ok("behind the trusted proxy the forwarded address counts: the history shows each address with first and last seen")

    assert sender.stop() == 0
    stopped = time.monotonic()
    wait_for("the missing-heartbeat alert", lambda: "witness_missing_home" in Web.alert_keys(), timeout=12)
    alert = [a for a in Web.alerts if a["alert"] == "witness_missing_home"][0]
    assert "127.0.0.1" in alert["message"] and "alert after 3 s" in alert["message"], alert
    ok(f"the sender stops: the witness alerts after {time.monotonic() - stopped:.1f} s ({alert['message'][:80]!r}...)")
    home = json.loads((w.data / "witness.json").read_text())["senders"]["home"]
    assert len(home["heartbeats"]) == 3 and home["total"] > 3, home
    assert len(home["addresses"]) == 3, home["addresses"]
    ok(f"the stored record stays bounded: the last {len(home['heartbeats'])} heartbeats of {home['total']}, and every address change")
    assert witness.stop() == 0


def test():
    dns_server = DnsServer()
    web = Web()
    rfc2136(dns_server, web)
    http_update_and_witness(web)


if __name__ == "__main__":
    h.main(test, timeout=120)
