"""Real peers for the sending-side tests: a private Postfix, a loopback DNS server (dnsmasq)
and DKIM verification with dkimpy.

- `PostfixPeer`: an unprivileged-port Postfix instance (`master -c DIR`) on 127.0.0.1 with its
  own queue directory, accepting mail for its domains into one Maildir per domain through
  virtual mailbox delivery. Recipients can be refused with any reply (`refuse`), and the peer
  can be stopped and started again on the same port. `messages()` reads what arrived.
- `DnsServer`: dnsmasq in the foreground on 127.0.0.1:<free port>, authoritative-looking for
  the test zones (`local=/test/`: unknown names are NXDOMAIN), serving A, MX and TXT records.
  `query()` is a tiny DNS client so the tests need no dig.
- `dkim_verify()`: dkimpy's verification with the test's own TXT records as its DNS.

Processes started here are registered with the harness, so they are killed and their logs
shown when a test fails or hangs, and a Postfix master or dnsmasq gets PR_SET_PDEATHSIG: it
dies with the test process even when that is SIGKILLed.

Needs the Debian packages postfix, dnsmasq-base and python3-dkim (scripts/test installs them).
Everything runs as root (as the e2e suite does): Postfix's daemons drop to the postfix user
and the virtual delivery agent writes mail as `nobody`.
"""

import email
import email.policy
import json
import os
import pwd
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

MAIL_USER = "nobody"


def free_port(udp_too=False):
    """A port free on 127.0.0.1 for TCP (and UDP with udp_too) right now (harness.free_port)."""
    return h.free_port(udp_too)


def wait_port(port, what, timeout=30, alive=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise AssertionError(f"{what} exited before listening on {h.HOST}:{port}")
        try:
            with socket.create_connection((h.HOST, port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{what} is not listening on {h.HOST}:{port} after {timeout} s")


def wait_closed(port, what, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((h.HOST, port), timeout=1):
                pass
        except OSError:
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} still accepts connections on {h.HOST}:{port} after {timeout} s")


def _peer_dir(name):
    """A temporary directory removed by the harness, traversable by the peers' unprivileged
    users (mkdtemp makes it 0700, and Postfix's virtual agent writes mail as nobody)."""
    d = Path(tempfile.mkdtemp(prefix=f"tegami-{name}-"))
    d.chmod(0o755)
    h._tempdirs.append(d)
    return d


def _process_tree(root):
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        except (OSError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _tail(path, n=30):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(none)"


# ---------------------------------------------------------------------------
# Postfix


def ensure_postfix():
    """Installs Postfix from Debian if it is missing, configured as "No configuration" and
    without starting a system instance (as bench/compare does)."""
    if shutil.which("postfix") and Path("/usr/lib/postfix/sbin/master").exists():
        return
    assert os.geteuid() == 0, "postfix is missing and this is not root: apt-get install postfix"
    subprocess.run(["debconf-set-selections"], input=b"postfix postfix/main_mailer_type select No configuration\n",
                   check=True)
    policy = Path("/usr/sbin/policy-rc.d")
    placed = not policy.exists()
    if placed:
        policy.write_text("#!/bin/sh\n# placed by tegami tests/e2e/peers.py during apt-get install\nexit 101\n")
        policy.chmod(0o755)
    try:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "postfix"], env=env,
                       check=True, capture_output=True)
    finally:
        if placed:
            policy.unlink()
    assert shutil.which("postfix"), "apt-get install postfix finished but postfix is still missing"


class Received:
    """One message in the peer's Maildir."""

    def __init__(self, path, raw):
        self.path = path
        self.raw = raw  # as stored: LF line ends, Postfix's Return-Path/Delivered-To/Received on top
        self.msg = email.message_from_bytes(raw, policy=email.policy.default)

    @property
    def recipient(self):
        return str(self.msg["Delivered-To"] or "").strip().lower()

    @property
    def sender(self):
        return str(self.msg["Return-Path"] or "").strip().strip("<>").lower()

    @property
    def message_id(self):
        return str(self.msg["Message-ID"] or "").strip()

    def wire(self):
        """The message with CRLF line ends, as it went over SMTP, Postfix's own headers included."""
        return self.raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")

    def body(self):
        """The body bytes (after the blank line) with CRLF line ends."""
        wire = self.wire()
        i = wire.find(b"\r\n\r\n")
        return wire[i + 4:] if i >= 0 else b""

    def header(self, name):
        return [str(v) for v in (self.msg.get_all(name) or [])]


class PostfixPeer:
    """A private Postfix on 127.0.0.1:<port> that stores mail for `domains` in Maildirs.

    Every address of those domains is accepted (a catch-all per domain) unless listed in
    `refuse` ({address: "550 5.1.1 text"}); each domain's mail lands in
    `<mail>/<domain>/` and the recipient is in the Delivered-To header Postfix adds.
    `tls=(cert, key)` makes smtpd offer STARTTLS with that certificate.
    """

    def __init__(self, domains=("peer.test",), hostname="peer.test", refuse=None, tls=None, name="postfix",
                 relay_to=None):
        """`relay_to=port`: instead of storing mail, relay it for `domains` to 127.0.0.1:port
        (a Postfix peer of the same load, for the benchmark)."""
        ensure_postfix()
        self.relay_to = relay_to
        self.domains = [d.lower() for d in domains]
        self.hostname = hostname
        self.root = _peer_dir(name)
        self.conf = self.root / "conf"
        self.queue = self.root / "queue"
        self.data = self.root / "data"
        self.mail = self.root / "mail"
        self.maillog = self.root / "maillog"
        for d in (self.conf, self.queue, self.data, self.mail):
            d.mkdir()
        pw = pwd.getpwnam(MAIL_USER)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        os.chown(self.mail, self.uid, self.gid)
        pf = pwd.getpwnam("postfix")
        os.chown(self.data, pf.pw_uid, pf.pw_gid)
        self.port = free_port()
        self.tls = tls
        self.proc = None
        self._refuse = dict(refuse or {})
        self._stderr = None
        self._write_conf()
        self._postfix("check")
        h._servers.append(self)

    # -- configuration -------------------------------------------------------

    def _write_conf(self):
        c = self.conf
        (c / "vmailbox").write_text("".join(f"@{d} {d}/\n" for d in self.domains))
        self._write_refuse()
        tls = ""
        if self.tls:
            cert, key = self.tls
            tls = (f"smtpd_tls_security_level = may\nsmtpd_tls_cert_file = {cert}\nsmtpd_tls_key_file = {key}\n"
                   "smtpd_tls_received_header = yes\n")
        (c / "main.cf").write_text(f"""# Private Postfix peer for tegami's sending-side tests (tests/e2e/peers.py).
compatibility_level = 3.6
queue_directory = {self.queue}
data_directory = {self.data}
maillog_file = {self.maillog}
# Postfix writes its log only under listed prefixes (default /var, /dev/stdout).
maillog_file_prefixes = {self.root}
mail_owner = postfix
setgid_group = postdrop
myhostname = {self.hostname}
mydomain = {self.hostname}
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_banner = $myhostname ESMTP peer
# Mail from 127.0.0.1 is left as it came (no Date or Message-ID added, no address
# rewriting), so what arrives can be compared with what was sent and DKIM still verifies.
local_header_rewrite_clients =
smtpd_peername_lookup = no
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = check_recipient_access texthash:{c / 'refuse'}, permit_mynetworks, reject_unauth_destination
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
anvil_rate_time_unit = 60s
{self._routing()}virtual_mailbox_base = {self.mail}
virtual_uid_maps = static:{self.uid}
virtual_gid_maps = static:{self.gid}
virtual_mailbox_limit = 0
message_size_limit = 52428800
alias_maps =
alias_database =
local_recipient_maps =
relayhost =
biff = no
append_dot_mydomain = no
readme_directory = no
{tls}""")
        template = Path("/usr/share/postfix/master.cf.dist")
        if not template.exists():
            template = Path("/etc/postfix/master.cf")
        out = []
        for line in template.read_text().splitlines():
            f = line.split()
            if line and not line[0].isspace() and not line.startswith("#") and len(f) >= 8:
                if f[0] == "smtp" and f[1] == "inet":
                    f[0] = f"{h.HOST}:{self.port}"
                # No chroot: the private queue lives outside /var/spool/postfix.
                f[4] = "n"
                line = "  ".join(f)
            out.append(line)
        (c / "master.cf").write_text("\n".join(out) + "\n")

    def _routing(self):
        if self.relay_to:
            (self.conf / "transport").write_text("".join(f"{d} smtp:[{h.HOST}]:{self.relay_to}\n" for d in self.domains))
            return (f"relay_domains = {' '.join(self.domains)}\n"
                    f"transport_maps = texthash:{self.conf / 'transport'}\n"
                    "smtp_tls_security_level = none\n"
                    "smtp_dns_support_level = disabled\n")
        return (f"virtual_mailbox_domains = {' '.join(self.domains)}\n"
                f"virtual_mailbox_maps = texthash:{self.conf / 'vmailbox'}\n")

    def _write_refuse(self):
        (self.conf / "refuse").write_text("".join(f"{a.lower()} {reply}\n" for a, reply in self._refuse.items()))

    def refuse(self, mapping):
        """Sets the refused recipients ({address: "550 5.1.1 text"}; {} refuses none); a running
        peer reloads, after which new SMTP sessions see the change."""
        self._refuse = dict(mapping)
        self._write_refuse()
        if self.running():
            self._postfix("reload")
            # smtpd processes started before the reload finish their session with the old map;
            # new connections get new processes.
            time.sleep(0.5)

    def _postfix(self, *args, check=True):
        p = subprocess.run(["postfix", "-c", str(self.conf), *args], capture_output=True, timeout=60)
        if check and p.returncode != 0:
            raise AssertionError(f"postfix {' '.join(args)} failed ({p.returncode}): "
                                 f"{p.stdout.decode(errors='replace')}{p.stderr.decode(errors='replace')}\n"
                                 f"maillog:\n{_tail(self.maillog)}")
        return p

    # -- life cycle ----------------------------------------------------------

    def start(self, timeout=30):
        """Starts the master in the foreground (a child of this process), waits for smtpd."""
        assert not self.running(), "the Postfix peer is already running"
        self._stderr = open(self.root / "master.stderr", "ab")
        daemon_dir = subprocess.run(["postconf", "-c", str(self.conf), "-h", "daemon_directory"], capture_output=True,
                                    text=True, check=True).stdout.strip()
        # `master -s` stays in the foreground; the PDEATHSIG makes it die with the test, and
        # its children exit when they lose the master.
        self.proc = subprocess.Popen([f"{daemon_dir}/master", "-s", "-c", str(self.conf)], stdin=subprocess.DEVNULL,
                                     stdout=self._stderr, stderr=self._stderr, preexec_fn=h._set_pdeathsig)
        wait_port(self.port, "postfix smtpd", timeout, alive=self.running)
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=30):
        """Stops the peer (the master and all its daemons); its port refuses connections after."""
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._kill_leftovers()
        wait_closed(self.port, "postfix smtpd")

    def _kill_leftovers(self):
        """Postfix daemons of this instance that outlived their master (they hold our config dir)."""
        needle = str(self.conf).encode()
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/environ", "rb") as f:
                    env = f.read()
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            if needle in env or needle in cmd:
                try:
                    os.kill(int(d), signal.SIGKILL)
                except OSError:
                    pass

    def force_kill(self):
        """For the harness: kills the instance whatever its state."""
        try:
            if self.proc is not None:
                for pid in reversed(_process_tree(self.proc.pid)):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
                self.proc.wait(timeout=10)
            self._kill_leftovers()
        except Exception:  # noqa: BLE001
            pass
        if self._stderr:
            self._stderr.close()

    def close(self):
        """Stops the peer for good and forgets it (end of a test)."""
        self.stop()
        if self in h._servers:
            h._servers.remove(self)
        if self._stderr:
            self._stderr.close()

    def describe_failure(self):
        return (f"--- postfix peer on {h.HOST}:{self.port} ({self.root}), running={self.running()}\n"
                f"--- maillog (last 30 lines):\n{_tail(self.maillog)}\n"
                f"--- master stderr:\n{_tail(self.root / 'master.stderr', 10)}\n---")

    # -- what arrived --------------------------------------------------------

    def maildir(self, domain):
        return self.mail / domain.lower()

    def messages(self, domain=None):
        """Every message delivered so far (all domains, or one), in delivery order."""
        out = []
        for d in ([domain.lower()] if domain else self.domains):
            for sub in ("new", "cur"):
                p = self.maildir(d) / sub
                if not p.is_dir():
                    continue
                for f in p.iterdir():
                    if f.is_file():
                        try:
                            out.append((f.stat().st_mtime_ns, f.name, f))
                        except OSError:
                            pass
        out.sort()
        return [Received(f, f.read_bytes()) for _, _, f in out]

    def count(self):
        n = 0
        for d in self.domains:
            p = self.maildir(d) / "new"
            if p.is_dir():
                n += sum(1 for _ in os.scandir(p))
        return n

    def wait_count(self, n, timeout=60, what="messages"):
        """Waits until at least n messages are in the Maildirs; returns the count."""
        deadline = time.monotonic() + timeout
        while True:
            c = self.count()
            if c >= n:
                return c
            if time.monotonic() > deadline:
                raise AssertionError(f"the Postfix peer holds {c} {what} after {timeout} s, wanted {n}\n"
                                     f"maillog:\n{_tail(self.maillog)}")
            time.sleep(0.1)

    def maillog_text(self):
        try:
            return self.maillog.read_text(errors="replace")
        except OSError:
            return ""

    def clear(self):
        """Removes every delivered message (between parts of a test)."""
        for d in self.domains:
            for sub in ("new", "cur"):
                p = self.maildir(d) / sub
                if p.is_dir():
                    for f in p.iterdir():
                        f.unlink()


# ---------------------------------------------------------------------------
# DNS


def txt_strings(value):
    """A TXT value cut into character-strings of at most 255 octets (a DKIM key is longer)."""
    b = value.encode()
    return [b[i:i + 255].decode() for i in range(0, len(b), 255)] or [""]


class DnsServer:
    """dnsmasq on 127.0.0.1:<port> serving only the records given, for names under the
    `local` zones (default: everything under .test); other names there are NXDOMAIN.

    Records are added with `a(name, ip)`, `mx(domain, host, pref)`, `txt(name, value)` before
    `start()`; after start, `restart()` applies changes (same port).
    """

    def __init__(self, local=("test",), name="dnsmasq"):
        assert shutil.which("dnsmasq"), "dnsmasq is not installed (Debian package dnsmasq-base; scripts/test installs it)"
        self.root = _peer_dir(name)
        self.local = list(local)
        self.port = free_port(udp_too=True)
        self.records = []
        self.proc = None
        self.log = self.root / "dnsmasq.log"
        self._log = None
        h._servers.append(self)

    @property
    def addr(self):
        return f"{h.HOST}:{self.port}"

    def a(self, name, ip="127.0.0.1"):
        self.records.append(f"host-record={name},{ip}")
        return self

    def mx(self, domain, host, pref=10):
        self.records.append(f"mx-host={domain},{host},{pref}")
        return self

    def txt(self, name, value):
        parts = ",".join('"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"' for s in txt_strings(value))
        self.records.append(f"txt-record={name},{parts}")
        return self

    def _write_conf(self):
        lines = [
            f"port={self.port}",
            f"listen-address={h.HOST}",
            "bind-interfaces",
            "no-resolv",
            "no-hosts",
            "no-negcache",
            "bogus-priv",
            "log-queries",
            "user=root",
            "pid-file=",
            *[f"local=/{z}/" for z in self.local],
            *self.records,
        ]
        path = self.root / "dnsmasq.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self, timeout=20):
        conf = self._write_conf()
        self._log = open(self.log, "ab")
        self.proc = subprocess.Popen(["dnsmasq", "-k", f"--conf-file={conf}", "--log-facility=-"],
                                     stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
                                     preexec_fn=h._set_pdeathsig)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"dnsmasq exited with {self.proc.returncode}: {_tail(self.log)}")
            try:
                query(self.port, "probe.invalid-name.test", "A", timeout=0.5)
                return self
            except (OSError, AssertionError):
                if time.monotonic() > deadline:
                    raise AssertionError(f"dnsmasq does not answer on {self.addr} after {timeout} s: {_tail(self.log)}")
                time.sleep(0.05)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self._log:
            self._log.close()
            self._log = None

    def restart(self):
        self.stop()
        return self.start()

    def force_kill(self):
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=10)
        except Exception:  # noqa: BLE001
            pass

    def close(self):
        self.stop()
        if self in h._servers:
            h._servers.remove(self)

    def describe_failure(self):
        return f"--- dnsmasq on {self.addr} ({self.root}):\n{_tail(self.log)}\n---"


QTYPES = {"A": 1, "MX": 15, "TXT": 16, "AAAA": 28}


def _encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def _decode_name(msg, off):
    labels, jumped, end = [], False, None
    while True:
        n = msg[off]
        if n & 0xC0 == 0xC0:
            if not jumped:
                end = off + 2
            off = ((n & 0x3F) << 8) | msg[off + 1]
            jumped = True
            continue
        off += 1
        if n == 0:
            break
        labels.append(msg[off:off + n].decode())
        off += n
    return ".".join(labels), (end if jumped else off)


def query(port, name, qtype, timeout=2.0):
    """One UDP query to 127.0.0.1:port: (rcode name, [answers]) where an answer is an IP for
    A/AAAA, (pref, host) for MX, and the joined string for TXT."""
    qid = random.randrange(1 << 16)
    packet = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + _encode_name(name) + struct.pack(">HH", QTYPES[qtype], 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(packet, (h.HOST, port))
        msg, _ = s.recvfrom(65535)
    rid, flags, qd, an, _, _ = struct.unpack(">HHHHHH", msg[:12])
    assert rid == qid, "DNS reply with another id"
    rcode = {0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN", 5: "REFUSED"}.get(flags & 0xF, str(flags & 0xF))
    off = 12
    for _ in range(qd):
        _, off = _decode_name(msg, off)
        off += 4
    answers = []
    for _ in range(an):
        _, off = _decode_name(msg, off)
        rtype, _, _, rdlen = struct.unpack(">HHIH", msg[off:off + 10])
        off += 10
        rdata = msg[off:off + rdlen]
        if rtype == QTYPES[qtype]:
            if rtype == 1:
                answers.append(socket.inet_ntop(socket.AF_INET, rdata))
            elif rtype == 28:
                answers.append(socket.inet_ntop(socket.AF_INET6, rdata))
            elif rtype == 15:
                pref = struct.unpack(">H", rdata[:2])[0]
                host, _ = _decode_name(msg, off + 2)
                answers.append((pref, host))
            elif rtype == 16:
                parts, i = [], 0
                while i < len(rdata):
                    n = rdata[i]
                    parts.append(rdata[i + 1:i + 1 + n].decode())
                    i += 1 + n
                answers.append("".join(parts))
        off += rdlen
    return rcode, answers


# ---------------------------------------------------------------------------
# DKIM


_VERIFY = r"""
import json, sys
import dkim
req = json.load(sys.stdin)
records = {k.lower().rstrip("."): v for k, v in req["records"].items()}
def dnsfunc(name, timeout=5):
    n = name.decode() if isinstance(name, bytes) else name
    v = records.get(n.lower().rstrip("."))
    return v.encode() if v is not None else None
msg = req["message"].encode("latin-1")
out = []
d = dkim.DKIM(msg, logger=None)
sigs = [v for (k, v) in d.headers if k.lower() == b"dkim-signature"]
for i in range(len(sigs)):
    d = dkim.DKIM(msg)
    try:
        good = d.verify(idx=i, dnsfunc=dnsfunc)
        err = None
    except Exception as e:
        good, err = False, f"{type(e).__name__}: {e}"
    tags = {}
    try:
        tags = {k.decode(): v.decode(errors="replace") for k, v in dkim.util.parse_tag_value(sigs[i]).items()}
    except Exception as e:
        err = err or f"cannot parse the signature: {e}"
    out.append({"ok": bool(good), "error": err, "tags": tags})
print(json.dumps(out))
"""


def _dkim_python():
    """An interpreter that can import dkim: this one (pip dkimpy) or Debian's (python3-dkim)."""
    for py in (sys.executable, "/usr/bin/python3"):
        if py and Path(py).exists():
            p = subprocess.run([py, "-c", "import dkim"], capture_output=True)
            if p.returncode == 0:
                return py
    raise AssertionError("dkimpy is not installed (Debian python3-dkim, or pip install dkimpy; scripts/test installs it)")


def dkim_verify(message, records):
    """Verifies every DKIM-Signature of `message` (bytes; LF line ends are made CRLF) with
    `records` ({"sel._domainkey.example.com": "v=DKIM1; k=rsa; p=..."}) as the only DNS.
    Returns [{"ok": bool, "error": str|None, "tags": {"d": ..., "s": ..., "h": ..., ...}}], one
    per signature, top first."""
    wire = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    req = json.dumps({"records": records, "message": wire.decode("latin-1")})
    p = subprocess.run([_dkim_python(), "-c", _VERIFY], input=req.encode(), capture_output=True, timeout=60)
    assert p.returncode == 0, f"dkimpy failed: {p.stderr.decode(errors='replace')}"
    return json.loads(p.stdout)


def dkim_sign(message, domain, selector, key_pem):
    """Signs `message` with dkimpy (for messages the tests send *to* tegami); returns the
    message with the DKIM-Signature prepended."""
    script = r"""
import json, sys, dkim
req = json.load(sys.stdin)
msg = req["message"].encode("latin-1")
sig = dkim.sign(msg, req["selector"].encode(), req["domain"].encode(), req["key"].encode(),
                include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
sys.stdout.write((sig + msg).decode("latin-1"))
"""
    wire = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    req = json.dumps({"message": wire.decode("latin-1"), "domain": domain, "selector": selector, "key": key_pem})
    p = subprocess.run([_dkim_python(), "-c", script], input=req.encode(), capture_output=True, timeout=60)
    assert p.returncode == 0, f"dkimpy sign failed: {p.stderr.decode(errors='replace')}"
    return p.stdout.decode("latin-1").encode("latin-1")


def rsa_key(root, name="dkim"):
    """A new RSA 2048 private key (PEM) and its DKIM TXT value "v=DKIM1; k=rsa; p=..."."""
    key = Path(root) / f"{name}.key"
    r = subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out",
                        str(key)], capture_output=True, timeout=60)
    assert r.returncode == 0, f"openssl genpkey: {r.stderr.decode(errors='replace')}"
    r = subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-outform", "DER"], capture_output=True, timeout=60)
    assert r.returncode == 0, f"openssl pkey: {r.stderr.decode(errors='replace')}"
    import base64
    return key.read_text(), "v=DKIM1; k=rsa; p=" + base64.b64encode(r.stdout).decode()


def self_signed(root, cn="localhost"):
    """(cert path, key path) of a new self-signed certificate for 127.0.0.1/localhost."""
    cert, key = Path(root) / f"{cn}-cert.pem", Path(root) / f"{cn}-key.pem"
    r = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
         "-addext", f"subjectAltName=DNS:{cn},IP:127.0.0.1", "-days", "2", "-keyout", str(key), "-out", str(cert)],
        capture_output=True, timeout=120)
    assert r.returncode == 0, f"openssl req: {r.stderr.decode(errors='replace')}"
    key.chmod(0o644)  # read by Postfix's smtpd, which runs as postfix
    return cert, key


# ---------------------------------------------------------------------------
# tegami's side of the sending tests: config, submission, mailboxes, queue, clock


def toml_str(s):
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'


def outbound_config(hostname="mx.tegami.test", tls=None, routes=(), dns=None, queue=None, inbound=None,
                    submission=None):
    """The config text for a sending test. `routes`: [(domain, port)] to 127.0.0.1 with
    tls "none" (or (domain, port, tls)); `queue`, `inbound`, `submission`: {key: value} for
    those sections; `dns`: a DnsServer; `tls`: (cert, key) for the listeners."""
    out = [f"hostname = {toml_str(hostname)}", ""]
    if tls:
        out += ["[tls]", f"cert = {toml_str(tls[0])}", f"key = {toml_str(tls[1])}", ""]
    if submission:
        out += ["[submission]"] + [f"{k} = {toml_value(v)}" for k, v in submission.items()] + [""]
    if dns is not None:
        out += ["[dns]", f"servers = [{toml_str(dns.addr)}]", ""]
    if inbound:
        out += ["[inbound]"] + [f"{k} = {toml_value(v)}" for k, v in inbound.items()] + [""]
    out += ["[queue]"] + [f"{k} = {toml_value(v)}" for k, v in (queue or {}).items()] + [""]
    for r in routes:
        domain, port, policy = (r + ("none",))[:3]
        out += ["[[queue.route]]", f"domain = {toml_str(domain)}", 'host = "127.0.0.1"', f"port = {port}",
                f"tls = {toml_str(policy)}", ""]
    return "\n".join(out)


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return toml_str(v)


def serve(t, **kw):
    """`serve` with the submission listener on a free port (Server.port("submission"))."""
    extra = list(kw.pop("extra", ())) + ["--submission", f"{h.HOST}:0"]
    srv = t.serve(extra=extra, **kw)
    assert "submission" in srv.listeners, f"no 'tegami listening submission ...' line: {srv.stdout_lines}"
    return srv


def submit(port, user, password, sender, rcpts, msg, starttls=True, timeout=60):
    """One authenticated submission (STARTTLS first when asked, then AUTH); every recipient
    must be accepted."""
    import smtplib
    import ssl
    s = smtplib.SMTP(h.HOST, port, local_hostname="client.test", timeout=timeout)
    try:
        s.ehlo()
        if starttls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            code, resp = s.starttls(context=ctx)
            assert code == 220, f"STARTTLS: {code} {resp!r}"
            s.ehlo()
        s.login(user, password)
        refused = s.sendmail(sender, rcpts, msg)
        assert not refused, f"recipients refused: {refused}"
    finally:
        try:
            s.quit()
        except Exception:  # noqa: BLE001
            s.close()


class Submitter:
    """One authenticated submission session kept open for many messages."""

    def __init__(self, port, user, password, starttls=False, timeout=60):
        import smtplib
        self.s = smtplib.SMTP(h.HOST, port, local_hostname="client.test", timeout=timeout)
        self.s.ehlo()
        if starttls:
            import ssl
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            self.s.starttls(context=ctx)
            self.s.ehlo()
        self.s.login(user, password)

    def send(self, sender, rcpts, msg):
        refused = self.s.sendmail(sender, rcpts, msg)
        assert not refused, f"recipients refused: {refused}"

    def close(self):
        try:
            self.s.quit()
        except Exception:  # noqa: BLE001
            self.s.close()


def inbox(port, user, password, mailbox="INBOX"):
    """Every message of a mailbox over IMAP, as raw bytes, in UID order."""
    m = h.imap_login(port, user, password)
    try:
        typ, _ = m.select(mailbox, readonly=True)
        assert typ == "OK", f"SELECT {mailbox}: {typ}"
        typ, data = m.uid("SEARCH", None, "ALL")
        assert typ == "OK", f"UID SEARCH: {typ} {data}"
        uids = [int(u) for u in data[0].split()] if data and data[0] else []
        out = []
        for uid in sorted(uids):
            typ, data = m.uid("FETCH", str(uid), "(BODY.PEEK[])")
            assert typ == "OK", f"UID FETCH {uid}: {typ} {data}"
            raw = next(part[1] for part in data if isinstance(part, tuple))
            out.append(raw)
        return out
    finally:
        try:
            m.logout()
        except Exception:  # noqa: BLE001
            pass


def parse(raw):
    return email.message_from_bytes(raw, policy=email.policy.default)


def delivery_status(raw):
    """An RFC 3464 report as (message, per-message fields, [per-recipient fields], returned headers
    text). Fails unless it is multipart/report; report-type=delivery-status with a
    message/delivery-status part."""
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    assert msg.get_content_type() == "multipart/report", f"not multipart/report: {msg.get_content_type()}"
    assert (msg.get_param("report-type") or "").lower() == "delivery-status", f"report-type {msg.get_param('report-type')}"
    parts = msg.get_payload()
    assert isinstance(parts, list) and len(parts) >= 2, "a report needs at least two parts"
    ds = next((p for p in parts if p.get_content_type() == "message/delivery-status"), None)
    assert ds is not None, f"no message/delivery-status part: {[p.get_content_type() for p in parts]}"
    # Python parses message/delivery-status into a list of header blocks: the per-message
    # block first, then one per recipient.
    blocks = ds.get_payload()
    if isinstance(blocks, str):
        text = blocks.replace("\r\n", "\n").strip("\n")
        blocks = [email.message_from_string(b) for b in text.split("\n\n") if b.strip()]
    assert len(blocks) >= 2, f"delivery-status needs a per-message and a per-recipient block: {blocks}"
    # Values unfolded (a long Diagnostic-Code is folded over lines).
    fields = lambda b: {k.lower(): " ".join(str(v).split()) for k, v in b.items()}  # noqa: E731
    returned = ""
    for p in parts:
        if p.get_content_type() in ("text/rfc822-headers", "message/rfc822", "message/rfc822-headers"):
            pl = p.get_payload()
            returned = pl if isinstance(pl, str) else "".join(x.as_string() for x in pl)
    return msg, fields(blocks[0]), [fields(b) for b in blocks[1:]], returned


def wait_until(what, predicate, timeout=120, interval=0.1):
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not after {timeout} s")
        time.sleep(interval)


def metrics(port):
    """/metrics as {name or name{labels}: float}."""
    import urllib.request
    with urllib.request.urlopen(f"http://{h.HOST}:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        try:
            out[key] = float(value)
        except ValueError:
            pass
    return out


def queue_size(srv):
    """tegami_queue_messages from /metrics (None if absent)."""
    return metrics(srv.http).get("tegami_queue_messages")


class Clock:
    """The test clock of TEGAMI_CLOCK_FILE: a file holding seconds added to the real clock,
    re-read by tegami on every look at the time. Set the variable before starting tegami."""

    def __init__(self, root):
        self.path = Path(root) / "clock-offset"
        self.offset = 0
        self.set(0)

    def env(self):
        return {"TEGAMI_CLOCK_FILE": str(self.path)}

    def set(self, offset):
        self.offset = int(offset)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(f"{self.offset}\n")
        tmp.rename(self.path)

    def now(self):
        """tegami's idea of now."""
        return time.time() + self.offset

    def advance_to(self, when):
        """Moves tegami's clock so that its now is `when` (never backwards)."""
        self.set(max(self.offset, int(when - time.time()) + 1))


def dkim_record_from(text, selector, domain):
    """The TXT value "v=DKIM1; ..." that `tegami domain dkim` printed (joined if it printed
    it as several quoted strings), and checks the record name is there too."""
    name = f"{selector}._domainkey.{domain}"
    assert name in text, f"the record name {name} is not in the output: {text!r}"
    i = text.find("v=DKIM1")
    assert i >= 0, f"no v=DKIM1 record in: {text!r}"
    import re
    if i > 0 and text[i - 1] == '"':
        # Zone-file style: "v=DKIM1; k=rsa; " "p=MIIB..." (possibly in parentheses, over lines).
        run = re.match(r'(?:"[^"]*"[\s()]*)+', text[i - 1:]).group(0)
        value = "".join(re.findall(r'"([^"]*)"', run))
    else:
        value = text[i:].splitlines()[0]
    value = value.strip()
    assert "p=" in value and len(value) > 200, f"the DKIM record looks truncated: {value!r}"
    return value


def swaks(*args, timeout=60):
    """Runs swaks; returns (exit code, transcript)."""
    assert shutil.which("swaks"), "swaks is not installed (scripts/test installs it)"
    p = subprocess.run(["swaks", "--hide-informational", *args], capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
