"""Shared helpers for the newsletter tests (issue 10): config, the list/subscriber/campaign
CLI in JSON, the HTTP routes without following redirects, VERP addresses, message bodies,
DSNs built like Postfix's, and DKIM verification of many messages in one dkimpy process.

Not a test by itself: the newsletter_*.py tests import it (and bench/newsletter.py does
too). `LoopbackMx` is a minimal SMTP server for the tests that need a remote which refuses,
defers or goes quiet after taking a message.

What is relied on (the issue 10 contract, /work/notes/contract-10.md):
- `[newsletter]` with base_url, bounce_domain, verp_prefix, hard_bounce_limit, keep_days,
  track_clicks, rate_per_second.
- `subscriber list LIST --json`: objects with id, email, name, status, attributes.
- `campaign show ID --json`: the state and totals sent, hard_bounce, soft_bounce, click,
  unsubscribe (found wherever they are nested, so the exact layout is not pinned).
- Envelope sender `<prefix>+<c|s><ref>-<subscriber>-<mac>@<bounce_domain>`.
"""

import csv
import email
import email.policy
import http.client as httpclient
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import peers  # noqa: E402

OUTCOMES = ("sent", "hard_bounce", "soft_bounce", "click", "unsubscribe")
BOUNCE_DOMAIN = "example.com"
VERP_PREFIX = "bounces"


def newsletter_section(http_port, keep_days=90, rate=1000, hard_bounce_limit=1, track_clicks=True):
    return "\n".join([
        "[newsletter]",
        f'base_url = "http://{h.HOST}:{http_port}"',
        f"bounce_domain = {peers.toml_str(BOUNCE_DOMAIN)}",
        f"verp_prefix = {peers.toml_str(VERP_PREFIX)}",
        f"hard_bounce_limit = {hard_bounce_limit}",
        f"keep_days = {keep_days}",
        f"track_clicks = {'true' if track_clicks else 'false'}",
        f"rate_per_second = {rate}",
        "",
    ])


def config(peer_port, http_port, domains=("peer.test",), queue=None, **newsletter):
    """An outbound config routing `domains` to the Postfix peer, plus `[newsletter]`."""
    return (peers.outbound_config(routes=[(d, peer_port) for d in domains], queue=queue)
            + "\n" + newsletter_section(http_port, **newsletter))


def serve(t, http_port, **kw):
    """`serve` with the HTTP listener on the port base_url names (known before the start)."""
    srv = peers.serve(t, extra=["--http", f"{h.HOST}:{http_port}"], **kw)
    assert srv.http == http_port, f"http listener on {srv.http}, base_url names {http_port}"
    return srv


# ---------------------------------------------------------------------------
# CLI


def cli_json(t, *args):
    r = t.cli(*args, "--json")
    try:
        return json.loads(r.out)
    except ValueError as e:
        raise AssertionError(f"tegami {' '.join(args)} --json printed no JSON ({e}): {r.out[:500]!r}")


def _items(obj):
    """The list inside a JSON answer: the answer itself, or its one list-valued field."""
    if isinstance(obj, list):
        return obj
    if isinstance(obj, dict):
        lists = [v for v in obj.values() if isinstance(v, list)]
        if len(lists) == 1:
            return lists[0]
    raise AssertionError(f"expected a JSON list, got {str(obj)[:300]}")


def subscribers(t, list_name):
    """{email (lower case): subscriber object} from `subscriber list LIST --json`."""
    out = {}
    for s in _items(cli_json(t, "subscriber", "list", list_name)):
        out[str(s["email"]).lower()] = s
    return out


def status_of(t, list_name, address):
    return str(subscribers(t, list_name)[address.lower()]["status"]).lower()


def _find(obj, key):
    """The first value of `key` in a nested JSON object (breadth first)."""
    todo = [obj]
    while todo:
        o = todo.pop(0)
        if isinstance(o, dict):
            if key in o:
                return o[key]
            todo.extend(o.values())
        elif isinstance(o, list):
            todo.extend(o)
    return None


def totals_in(obj):
    """{outcome: count} from a campaign's JSON (`campaign show --json` or /api/campaigns/ID):
    the dict that holds "sent", wherever it sits; absent outcomes count 0."""
    todo = [obj]
    while todo:
        o = todo.pop(0)
        if isinstance(o, dict):
            if isinstance(o.get("sent"), int):
                return {k: int(o.get(k) or 0) for k in OUTCOMES}
            todo.extend(o.values())
        elif isinstance(o, list):
            todo.extend(o)
    raise AssertionError(f"no totals (a 'sent' count) in {str(obj)[:500]}")


def campaign(t, cid):
    """(state in lower case, {outcome: count}) from `campaign show ID --json`."""
    obj = cli_json(t, "campaign", "show", str(cid))
    state = _find(obj, "state")
    assert state is not None, f"no state in campaign show --json: {str(obj)[:300]}"
    return str(state).lower(), totals_in(obj)


def campaign_create(t, list_name, subject, text, html=None, at=None, rate=None):
    tf = t.root / f"campaign-{abs(hash(subject))}.txt"
    tf.write_text(text)
    args = ["campaign", "create", list_name, "--subject", subject, "--text", str(tf)]
    if html is not None:
        hf = tf.with_suffix(".html")
        hf.write_text(html)
        args += ["--html", str(hf)]
    if at is not None:
        args += ["--at", at]
    if rate is not None:
        args += ["--rate", str(rate)]
    r = t.cli(*args)
    m = re.search(r"\bcampaign (\d+)\b", r.out)
    assert m, f"campaign create did not print 'campaign ID': {r!r}"
    return int(m.group(1))


def recipients(t, cid, outcome=None):
    args = ["campaign", "recipients", str(cid)] + (["--outcome", outcome] if outcome else [])
    return [line.strip().lower() for line in t.cli(*args).out.splitlines() if line.strip()]


def write_csv(path, header, rows):
    """A CSV file exactly as given (rows are lists of strings), CRLF-free."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        for r in rows:
            w.writerow(r)


def import_counts(text):
    """(added, already present, invalid) from `subscriber import`'s summary line."""
    m = re.search(r"added (\d+), already present (\d+), invalid (\d+)", text)
    assert m, f"no 'added N, already present N, invalid N' in: {text[-500:]!r}"
    return tuple(int(x) for x in m.groups())


# ---------------------------------------------------------------------------
# HTTP


def http(method, url, body=None, headers=None, timeout=30):
    """One request, redirects not followed: (status, {header lower: value}, body bytes)."""
    u = urllib.parse.urlsplit(url)
    c = httpclient.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        path = u.path + (f"?{u.query}" if u.query else "")
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        c.close()


def one_click(url):
    """The RFC 8058 one-click unsubscribe POST, as a mailbox provider sends it."""
    return http("POST", url, body=b"List-Unsubscribe=One-Click",
                headers={"Content-Type": "application/x-www-form-urlencoded"})


def api(port, path):
    status, _, body = http("GET", f"http://{h.HOST}:{port}{path}")
    assert status == 200, f"GET {path}: {status} {body[:300]!r}"
    return json.loads(body)


# ---------------------------------------------------------------------------
# Mail


def verp_re(kind=None, ref=None):
    k = kind or "[cs]"
    r = str(ref) if ref is not None else r"\d+"
    return re.compile(rf"^{re.escape(VERP_PREFIX)}\+({k})({r})-(\d+)-([0-9a-z]+)@{re.escape(BOUNCE_DOMAIN)}$", re.I)


def parse_verp(address, kind=None, ref=None):
    """(kind 'c' or 's', ref, subscriber id, mac) of a VERP envelope sender, or an assertion."""
    m = verp_re(kind, ref).match(address.strip().strip("<>"))
    assert m, f"envelope sender {address!r} is not {VERP_PREFIX}+{kind or 'c|s'}{ref or '<ref>'}-<subscriber>-<mac>@{BOUNCE_DOMAIN}"
    return m.group(1).lower(), int(m.group(2)), int(m.group(3)), m.group(4)


def part(received, subtype):
    """The decoded text of the text/<subtype> part of a Received message ("" if none)."""
    body = received.msg.get_body(preferencelist=(subtype,))
    if body is None or body.get_content_type() != f"text/{subtype}":
        return ""
    return body.get_content()


def unsubscribe_url(received):
    """The HTTP URL of List-Unsubscribe (checked to be one <...> URL under base_url)."""
    values = received.header("List-Unsubscribe")
    assert len(values) == 1, f"{received.recipient}: {len(values)} List-Unsubscribe headers"
    urls = re.findall(r"<([^>]+)>", values[0])
    http_urls = [u for u in urls if u.startswith("http://") or u.startswith("https://")]
    assert http_urls, f"{received.recipient}: no HTTP(S) URL in List-Unsubscribe: {values[0]!r}"
    return http_urls[0]


def dsn(reporting, rcpt_verp, original_rcpt, status="5.1.1", action="failed",
        diagnostic="smtp; 550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in virtual mailbox table",
        original_headers=""):
    """An RFC 3464 report laid out as Postfix's bounce daemon writes one."""
    diag = diagnostic.format(rcpt=original_rcpt)
    boundary = "B0UNCE.1700000000/peer.test"
    return h.crlf(f"""From: MAILER-DAEMON@{reporting} (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: {rcpt_verp}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
 boundary="{boundary}"
Content-Transfer-Encoding: 8bit
Message-Id: <dsn-{abs(hash(rcpt_verp))}@{reporting}>
Date: Mon, 23 Nov 2026 10:00:00 +0000

This is a MIME-encapsulated message.

--{boundary}
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host {reporting}.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<{original_rcpt}>: host {reporting}[127.0.0.1] said: {diag}

--{boundary}
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; {reporting}
X-Postfix-Queue-ID: 4ABCDEF123
X-Postfix-Sender: rfc822; {rcpt_verp}
Arrival-Date: Mon, 23 Nov 2026 09:59:58 +0000

Final-Recipient: rfc822; {original_rcpt}
Original-Recipient: rfc822;{original_rcpt}
Action: {action}
Status: {status}
Remote-MTA: dns; {reporting}
Diagnostic-Code: {diag}

--{boundary}
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

{original_headers}
--{boundary}--
""")


_VERIFY_MANY = r"""
import json, sys
import dkim
req = json.load(sys.stdin)
records = {k.lower().rstrip("."): v for k, v in req["records"].items()}
def dnsfunc(name, timeout=5):
    n = name.decode() if isinstance(name, bytes) else name
    v = records.get(n.lower().rstrip("."))
    return v.encode() if v is not None else None
out = []
for m in req["messages"]:
    msg = m.encode("latin-1")
    d = dkim.DKIM(msg)
    try:
        good, err = bool(d.verify(dnsfunc=dnsfunc)), None
    except Exception as e:
        good, err = False, f"{type(e).__name__}: {e}"
    tags = {}
    for k, v in d.headers:
        if k.lower() == b"dkim-signature":
            try:
                tags = {a.decode(): b.decode(errors="replace") for a, b in dkim.util.parse_tag_value(v).items()}
            except Exception as e:
                err = err or f"cannot parse the signature: {e}"
            break
    out.append({"ok": good, "error": err, "tags": tags})
print(json.dumps(out))
"""


def dkim_verify_many(messages, records):
    """dkimpy on every message (bytes) in one process: [{"ok", "error", "tags"}] for the
    first DKIM-Signature of each (as peers.dkim_verify, without one process per message)."""
    wires = [m.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n").decode("latin-1") for m in messages]
    req = json.dumps({"records": records, "messages": wires})
    p = subprocess.run([peers._dkim_python(), "-c", _VERIFY_MANY], input=req.encode(), capture_output=True,
                       timeout=170)
    assert p.returncode == 0, f"dkimpy failed: {p.stderr.decode(errors='replace')[-2000:]}"
    return json.loads(p.stdout)


def settled_count(peer, quiet=1.0, timeout=60):
    """The peer's Maildir count once it stopped growing for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        c = peer.count()
        if c != last:
            last, since = c, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return c
        time.sleep(0.05)
    raise AssertionError(f"the Postfix peer's Maildir kept changing for {timeout} s")


def parse_received(raw):
    return email.message_from_bytes(raw, policy=email.policy.default)


class LoopbackMx:
    """A minimal SMTP server on 127.0.0.1: EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT.
    `refuse` and `defer` map addresses to the reply their RCPT gets (5xx, 4xx), every time.
    A message to an address in `hold` is recorded when its final dot arrives, and then the
    server says nothing more on that connection: the moment between a remote taking a
    message and the sender hearing so. Records every RCPT asked and every message taken."""

    def __init__(self, refuse=None, defer=None, hold=()):
        self.refuse = {a.lower(): r for a, r in (refuse or {}).items()}
        self.defer = {a.lower(): r for a, r in (defer or {}).items()}
        self.hold = {a.lower() for a in hold}
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((h.HOST, 0))
        self.sock.listen(32)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.rcpts = []  # every address asked at RCPT, in order
        self.messages = []  # (sender, [recipients], body bytes)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(c,), daemon=True).start()

    def _session(self, c):
        f = c.makefile("rb")

        def say(line):
            c.sendall(line.encode() + b"\r\n")

        try:
            say("220 mx.peer.test ESMTP loopback")
            sender, rcpts = None, []
            while True:
                line = f.readline()
                if not line:
                    return
                cmd = line.decode(errors="replace").strip()
                verb = cmd[:4].upper()
                if verb in ("EHLO", "HELO"):
                    say("250-mx.peer.test")
                    say("250 8BITMIME")
                elif verb == "MAIL":
                    sender, rcpts = cmd.split(":", 1)[1].strip().split(" ")[0].strip("<>"), []
                    say("250 2.1.0 ok")
                elif verb == "RCPT":
                    addr = cmd.split(":", 1)[1].strip().split(" ")[0].strip("<>").lower()
                    with self.lock:
                        self.rcpts.append(addr)
                    if addr in self.refuse:
                        say(self.refuse[addr])
                    elif addr in self.defer:
                        say(self.defer[addr])
                    else:
                        rcpts.append(addr)
                        say("250 2.1.5 ok")
                elif verb == "DATA":
                    if not rcpts:
                        say("554 5.5.1 no valid recipients")
                        continue
                    say("354 go ahead")
                    body = []
                    while True:
                        data = f.readline()
                        if not data or data in (b".\r\n", b".\n"):
                            break
                        body.append(data[1:] if data.startswith(b"..") else data)
                    with self.lock:
                        self.messages.append((sender, list(rcpts), b"".join(body)))
                    if self.hold & set(rcpts):
                        # Taken, never acknowledged: the sender is left waiting until it
                        # dies or times out.
                        while f.readline():
                            pass
                        return
                    say("250 2.0.0 queued")
                elif verb == "RSET":
                    sender, rcpts = None, []
                    say("250 2.0.0 ok")
                elif verb == "NOOP":
                    say("250 2.0.0 ok")
                elif verb == "QUIT":
                    say("221 2.0.0 bye")
                    return
                else:
                    say("502 5.5.2 not implemented")
        except OSError:
            return
        finally:
            c.close()

    def received_by(self, address):
        with self.lock:
            return [m for m in self.messages if address in m[1]]

    def asked(self, address):
        with self.lock:
            return self.rcpts.count(address)
