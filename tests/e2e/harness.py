"""Shared helpers for tegami's end-to-end tests: data dirs, the CLI, `serve`, and mail clients.

Every test script imports this module, calls `main(test_fn, timeout=...)` and nothing else
at top level. The harness owns the temporary directories and the server processes, so a
failing or hanging test still kills its servers, removes its files, shows the server's own
log and exits non-zero.

Only the standard library is used. The binary under test comes from the environment
variable TEGAMI_BIN (cargo sets it through crates/tegami/tests/e2e.rs); without it the
debug build in target/ is used.
"""

import ctypes
import faulthandler
import hashlib
import imaplib
import os
import poplib
import queue
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


# Ports a test picks for a server it starts later come from below the kernel's range for
# outgoing connections (32768 and up by default): a port picked there can be taken as the
# local end of some other test's connect() before the server binds it.
PICKED_PORTS = (20000, 32767)


def free_port(udp_too=False):
    """A port free on HOST for TCP (and UDP with udp_too) right now, outside the range the
    kernel hands to outgoing connections."""
    import random

    low, high = PICKED_PORTS
    for _ in range(200):
        port = random.randint(low, high)
        try:
            with socket.socket() as s:
                s.bind((HOST, port))
            if udp_too:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                    u.bind((HOST, port))
            return port
        except OSError:
            continue
    raise AssertionError(f"no free port on {HOST} in {low}-{high}")

# poplib refuses lines longer than 2048 bytes, and the tests send lines of 5,000 and more.
poplib._MAXLINE = 1 << 24

_servers = []
_finished = []  # stopped servers, kept so a later failure still shows their output
_tempdirs = []
_cleanups = []  # functions run at the end whatever happened (at_cleanup)
_lock = threading.Lock()
_checks = 0


# ---------------------------------------------------------------------------
# Reporting


def ok(what):
    """Records one passed check and says what it was."""
    global _checks
    with _lock:
        _checks += 1
        n = _checks
    print(f"ok {n} - {what}", flush=True)


def note(what):
    print(f"# {what}", flush=True)


def clear_of_utc_midnight(margin=180):
    """Waits out the last `margin` seconds of a UTC day, for a test that compares the
    server's day with its own and must not straddle midnight."""
    left = 86400 - time.time() % 86400
    if left < margin:
        note(f"waiting {left:.0f} s for UTC midnight to pass")
        time.sleep(left + 2)


def main(test_fn, timeout):
    """Runs one test script: a watchdog, cleanup, and an exit code that tells the truth."""
    name = Path(sys.argv[0]).stem
    faulthandler.enable()
    started = time.monotonic()

    def watchdog():
        print(f"FAIL {name}: still running after {timeout} s; thread stacks follow", flush=True)
        faulthandler.dump_traceback(all_threads=True)
        _dump_server_logs()
        _cleanup()
        print("0 passed, 1 failed", flush=True)
        os._exit(1)

    timer = threading.Timer(timeout, watchdog)
    timer.daemon = True
    timer.start()
    try:
        tegami_bin()
        test_fn()
    except BaseException as e:  # noqa: BLE001 - every failure must end in exit 1
        timer.cancel()
        print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
        traceback.print_exc(file=sys.stdout)
        _dump_server_logs()
        _cleanup()
        print(f"{_checks} passed, 1 failed", flush=True)
        sys.stdout.flush()
        os._exit(1)
    timer.cancel()
    _cleanup()
    print(f"{name}: all {_checks} checks passed in {time.monotonic() - started:.1f} s", flush=True)
    print(f"{_checks} passed, 0 failed", flush=True)
    sys.stdout.flush()
    # os._exit skips waiting for any daemon thread still blocked on a dead socket.
    os._exit(0)


def _dump_server_logs():
    for srv in list(_servers) + _finished[-3:]:
        try:
            print(srv.describe_failure(), flush=True)
        except Exception as e:  # noqa: BLE001
            print(f"(could not read the server's logs: {e})", flush=True)


def at_cleanup(fn):
    """Runs `fn` when the test ends, passed, failed or timed out (after its servers are
    killed, newest first): for what a test changes outside its temporary directories."""
    _cleanups.append(fn)


def _cleanup():
    for srv in list(_servers):
        srv.force_kill()
    while _cleanups:
        try:
            _cleanups.pop()()
        except Exception as e:  # noqa: BLE001 - the rest must still run
            print(f"# cleanup step failed: {e}", flush=True)
    for d in list(_tempdirs):
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------------------
# The binary, the data directory and the CLI


def tegami_bin():
    path = os.environ.get("TEGAMI_BIN") or str(REPO / "target" / "debug" / "tegami")
    p = Path(path)
    if not p.is_absolute():
        p = (Path.cwd() / p).resolve()
    assert p.is_file() and os.access(p, os.X_OK), (
        f"tegami binary not found or not executable at {p}; build it (cargo build -p tegami) "
        "or set TEGAMI_BIN"
    )
    return str(p)


def _set_pdeathsig():
    """Makes a child die with the test process, so no server outlives a killed test."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class CliResult:
    def __init__(self, args, code, out, err):
        self.args, self.code, self.out, self.err = args, code, out, err

    def __repr__(self):
        return f"tegami {' '.join(self.args)} -> exit {self.code}\nstdout: {self.out!r}\nstderr: {self.err!r}"


class Tegami:
    """One temporary data directory with its config file and the servers run on it."""

    def __init__(self, name="e2e"):
        self.root = Path(tempfile.mkdtemp(prefix=f"tegami-{name}-"))
        _tempdirs.append(self.root)
        self.data = self.root / "data"
        self.config = None
        self.bin = tegami_bin()
        self._serves = 0

    # -- CLI ---------------------------------------------------------------

    def cli(self, *args, stdin=None, check=True, timeout=60, env=None):
        """Runs the CLI on this test's data (and config); `env` adds environment variables."""
        argv = [self.bin, "--data", str(self.data)]
        if self.config:
            argv += ["--config", str(self.config)]
        argv += list(args)
        try:
            p = subprocess.run(
                argv,
                input=stdin.encode() if isinstance(stdin, str) else stdin,
                stdin=None if stdin is not None else subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                preexec_fn=_set_pdeathsig,
                env={**os.environ, **env} if env else None,
            )
        except subprocess.TimeoutExpired:
            raise AssertionError(f"tegami {' '.join(args)} did not finish within {timeout} s")
        r = CliResult(list(args), p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"))
        if check:
            assert r.code == 0, f"command failed: {r!r}"
        return r

    def domain(self, name):
        self.cli("domain", "add", name)

    def account(self, address, password):
        self.cli("account", "add", address, "--password-stdin", stdin=password + "\n")

    def alias(self, address, *targets):
        self.cli("alias", "add", address, *targets)

    def check_store(self, when=""):
        """`tegami check` must pass and say something about what it checked."""
        r = self.cli("check", check=False, timeout=180)
        assert r.code == 0, f"tegami check failed {when}: {r!r}"
        assert r.out.strip() or r.err.strip(), f"tegami check printed no summary {when}: {r!r}"
        return r

    def write_config(self, text):
        self.config = self.root / "tegami.toml"
        self.config.write_text(text)
        return self.config

    def blob_files(self):
        """Every stored blob (files named by a sha-256 under data/blobs)."""
        d = self.data / "blobs"
        if not d.exists():
            return []
        return sorted(p for p in d.rglob("*") if p.is_file() and re.fullmatch(r"[0-9a-f]{64}", p.name))

    # -- serve -------------------------------------------------------------

    def serve(self, extra=(), smtp=True, pop3=True, imap=True, wait=True, timeout=60, http=True):
        """Starts `serve` with port-0 listeners and returns a Server once it printed `tegami ready`.

        Every listener gets a free port, IMAP included (`Server.imap`): a default port would make
        tests that run side by side collide.
        """
        self._serves += 1
        argv = [self.bin, "--data", str(self.data)]
        if self.config:
            argv += ["--config", str(self.config)]
        argv.append("serve")
        # tegami always runs every listener, so each gets a free port even when the test has
        # no use for it (`smtp`, `pop3`, `imap` False): left out, it would take its default
        # port and collide with a test running beside it.
        del smtp, pop3, imap
        argv += ["--smtp", f"{HOST}:0", "--pop3", f"{HOST}:0", "--imap", f"{HOST}:0"]
        # The HTTP listener (/metrics, /health) defaults to 127.0.0.1:8025 like the others
        # default to theirs: tests side by side need a free port each (`Server.http`).
        if http and "--http" not in extra:
            argv += ["--http", f"{HOST}:0"]
        if "--submission" not in extra:
            argv += ["--submission", f"{HOST}:0"]
        # With a certificate (configured, or issued by ACME into the data directory) the
        # implicit-TLS listeners are bound too, at default ports unless given: free ones here.
        acme_certs = self.data / "acme" / "certs"
        # ACME configured counts too: TLS is on from the start, before the first certificate.
        config_text = self.config.read_text() if self.config else ""
        has_cert = ("[tls" in config_text or "[acme" in config_text) or (
            acme_certs.is_dir() and any(acme_certs.glob("*.pem"))
        )
        if has_cert:
            for flag in ("--imaps", "--pop3s", "--submissions", "--https"):
                if flag not in extra:
                    argv += [flag, f"{HOST}:0"]
        argv += list(extra)
        stderr_path = self.root / f"serve-{self._serves}.stderr"
        srv = Server(self, argv, stderr_path)
        if wait:
            srv.wait_ready(timeout)
        return srv


class Server:
    def __init__(self, tegami, argv, stderr_path):
        self.t = tegami
        self.argv = argv
        self.stderr_path = stderr_path
        self._stderr = open(stderr_path, "wb")
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            preexec_fn=_set_pdeathsig,
        )
        self.pid = self.proc.pid
        self.stdout_lines = []
        self.listeners = {}
        self.ready = False
        self._q = queue.Queue()
        _servers.append(self)
        threading.Thread(target=self._read_stdout, daemon=True).start()

    def _read_stdout(self):
        # Keeps draining stdout for the whole life of the process so it never blocks on a full pipe.
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\r\n")
            self.stdout_lines.append(line)
            self._q.put(line)
        self._q.put(None)

    def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"serve did not print 'tegami ready' within {timeout} s; stdout so far: {self.stdout_lines}")
            try:
                line = self._q.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                code = self.proc.wait(timeout=10)
                raise AssertionError(
                    f"serve exited with {code} before 'tegami ready'; stdout: {self.stdout_lines}; "
                    f"reason: {self.error_line()}"
                )
            m = re.fullmatch(r"tegami listening (\S+) (\S+):(\d+)", line.strip())
            if m:
                self.listeners[m.group(1)] = (m.group(2), int(m.group(3)))
                continue
            if line.strip() == "tegami ready":
                self.ready = True
                for want in ("smtp", "pop3", "imap"):
                    if f"--{want}" in self.argv:
                        assert want in self.listeners, f"no 'tegami listening {want} ...' line before ready: {self.stdout_lines}"
                for name, (host, port) in self.listeners.items():
                    # 0.0.0.0 only when the test asked for it (to be reached from another address).
                    wanted = (HOST, "0.0.0.0") if "0.0.0.0:0" in self.argv else (HOST,)
                    assert host in wanted and port > 0, f"listener {name} on {host}:{port}, wanted {HOST} and a real port"
                return self

    def port(self, name):
        assert name in self.listeners, f"no {name} listener; have {self.listeners}"
        return self.listeners[name][1]

    @property
    def http(self):
        return self.port("http")

    @property
    def smtp(self):
        return self.port("smtp")

    @property
    def pop3(self):
        return self.port("pop3")

    @property
    def imap(self):
        return self.port("imap")

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=30):
        """SIGTERM, then wait; a server that does not stop in time is killed and the test fails."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.force_kill()
            raise AssertionError(f"serve did not stop within {timeout} s of SIGTERM (killed it)")
        self._forget()
        return code

    def kill(self):
        """SIGKILL, as a crash would."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._forget()

    def force_kill(self):
        try:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(timeout=10)
        except Exception:  # noqa: BLE001
            pass
        self._stderr.close()

    def _forget(self):
        self._stderr.close()
        if self in _servers:
            _servers.remove(self)
        _finished.append(self)

    def peak_rss_kib(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        raise AssertionError("VmHWM not found in /proc/PID/status")

    def stderr_text(self):
        try:
            return self.stderr_path.read_bytes().decode(errors="replace")
        except OSError:
            return ""

    def log_text(self):
        p = self.t.data / "log" / "tegami.log"
        try:
            return p.read_bytes().decode(errors="replace")
        except OSError:
            return ""

    def error_line(self):
        text = self.stderr_text().strip() or self.log_text().strip()
        return text.splitlines()[-1] if text else "(nothing on stderr or in log/tegami.log)"

    def describe_failure(self):
        tail = lambda s: "\n".join(s.splitlines()[-40:])  # noqa: E731
        return (
            f"--- server pid {self.pid} ({' '.join(self.argv)}), exit {self.proc.poll()}\n"
            f"--- stdout:\n{chr(10).join(self.stdout_lines)}\n"
            f"--- stderr (last 40 lines):\n{tail(self.stderr_text())}\n"
            f"--- log/tegami.log (last 40 lines):\n{tail(self.log_text())}\n---"
        )


# ---------------------------------------------------------------------------
# Messages


def crlf(text):
    """Turns a readable multi-line string into wire form: every line ends in CRLF."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return "".join(line + "\r\n" for line in lines).encode("utf-8")


def sha(b):
    return hashlib.sha256(b).hexdigest()


def split_trace(stored, first_line, sender):
    """Splits a retrieved message into (trace header lines, what the client sent).

    The trace lines are every line before the first line of what was sent. They must be
    well-formed header lines ending in CRLF, start with `Return-Path: <sender>`, and
    include a Received header. `sender` is a str (the envelope sender, "" for <>).
    """
    if isinstance(first_line, str):
        first_line = first_line.encode("utf-8")
    needle = first_line.rstrip(b"\r\n") + b"\r\n"
    assert not stored.startswith(needle), "no trace headers (Return-Path, Received) prepended to the stored message"
    pos = stored.find(b"\r\n" + needle)
    assert pos >= 0, f"first line {first_line!r} not found in the stored message (starts {stored[:300]!r})"
    cut = pos + 2
    trace, rest = stored[:cut], stored[cut:]
    check_trace(trace, sender)
    return trace, rest


def check_trace(trace, sender):
    assert trace, "no trace headers (Return-Path, Received) prepended to the stored message"
    assert trace.endswith(b"\r\n"), f"trace headers do not end in CRLF: {trace[-80:]!r}"
    lines = trace[:-2].split(b"\r\n")
    fields = []
    for line in lines:
        assert b"\n" not in line and b"\r" not in line, f"bare CR or LF in trace header line {line!r}"
        if line[:1] in (b" ", b"\t"):
            assert fields, f"trace starts with a continuation line: {line!r}"
            fields[-1] += b"\r\n" + line
        else:
            assert re.match(rb"^[!-9;-~]+:", line), f"trace line is not a header field: {line!r}"
            fields.append(line)
    want = b"Return-Path: <" + sender.encode("utf-8") + b">"
    assert fields[0] == want, f"first trace header is {fields[0]!r}, wanted {want!r}"
    assert any(f.lower().startswith(b"received:") for f in fields), f"no Received header in trace: {trace!r}"


# ---------------------------------------------------------------------------
# SMTP and POP3 clients


def smtp_client(port, timeout=30):
    s = smtplib.SMTP(HOST, port, local_hostname="client.test", timeout=timeout)
    code, _ = s.ehlo()
    assert code == 250, f"EHLO got {code}"
    return s


def send(port, sender, rcpts, msg, options=(), timeout=60):
    """One SMTP transaction on a new connection; every recipient must be accepted."""
    s = smtp_client(port, timeout)
    try:
        refused = s.sendmail(sender, rcpts, msg, mail_options=list(options))
        assert not refused, f"recipients refused: {refused}"
    finally:
        try:
            s.quit()
        except (smtplib.SMTPException, OSError):
            s.close()


def pop3_login(port, user, password, timeout=30):
    p = poplib.POP3(HOST, port, timeout=timeout)
    p.user(user)
    p.pass_(password)
    return p


def pop3_login_after_drop(port, user, password, wait=10):
    """Logs in right after another session on the maildrop dropped its connection.

    The server learns of the drop asynchronously, so [IN-USE] is retried for a few seconds.
    """
    deadline = time.monotonic() + wait
    while True:
        try:
            return pop3_login(port, user, password)
        except poplib.error_proto as e:
            if "[IN-USE]" not in str(e) or time.monotonic() > deadline:
                raise AssertionError(f"login {wait} s after the previous session dropped: {e}")
            time.sleep(0.1)


def pop3_retr(p, n):
    """RETR n as the exact stored bytes (poplib removes the dot-stuffing and the CRLFs)."""
    resp, lines, octets = p.retr(n)
    assert resp.startswith(b"+OK"), f"RETR {n}: {resp!r}"
    data = b"".join(line + b"\r\n" for line in lines)
    assert len(data) == octets, f"RETR {n}: {octets} octets counted but {len(data)} rebuilt"
    return data


def pop3_list(p):
    """{message number: size} from LIST."""
    resp, lines, _ = p.list()
    assert resp.startswith(b"+OK"), f"LIST: {resp!r}"
    out = {}
    for line in lines:
        n, size = line.split()
        out[int(n)] = int(size)
    return out


def pop3_uidl(p):
    resp, lines, _ = p.uidl()
    assert resp.startswith(b"+OK"), f"UIDL: {resp!r}"
    out = {}
    for line in lines:
        n, uid = line.split()
        out[int(n)] = uid.decode()
    return out


def pop3_fetch_all(port, user, password, delete=False, timeout=60):
    """Every message in a maildrop as [(number, uid, bytes)], LIST sizes checked against RETR."""
    p = pop3_login(port, user, password, timeout)
    try:
        sizes = pop3_list(p)
        uids = pop3_uidl(p)
        assert set(sizes) == set(uids), f"LIST {sorted(sizes)} and UIDL {sorted(uids)} disagree for {user}"
        count, total = p.stat()
        assert count == len(sizes) and total == sum(sizes.values()), (
            f"STAT {count} {total} disagrees with LIST ({len(sizes)} messages, {sum(sizes.values())} octets) for {user}"
        )
        out = []
        for n in sorted(sizes):
            data = pop3_retr(p, n)
            assert len(data) == sizes[n], f"{user} message {n}: LIST says {sizes[n]} octets, RETR gave {len(data)}"
            out.append((n, uids[n], data))
            if delete:
                resp = p.dele(n)
                assert resp.startswith(b"+OK"), f"DELE {n}: {resp!r}"
        resp = p.quit()
        assert resp.startswith(b"+OK"), f"QUIT: {resp!r}"
        return out
    finally:
        try:
            p.close()
        except Exception:  # noqa: BLE001
            pass


def imap_login(port, user, password, timeout=30):
    """An imaplib session, logged in with LOGIN (state AUTH)."""
    m = imaplib.IMAP4(HOST, port, timeout=timeout)
    try:
        typ, data = m.login(user, password)
    except imaplib.IMAP4.error as e:
        m.shutdown()
        raise AssertionError(f"IMAP LOGIN {user} failed: {e}")
    assert typ == "OK", f"IMAP LOGIN {user}: {typ} {data}"
    return m


class Closed(Exception):
    pass


class Raw:
    """A plain socket speaking line by line, to send what real clients never would."""

    def __init__(self, port, timeout=30):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Closed(f"connection closed by the server (unparsed: {self.buf!r})")
            self.buf += chunk
        i = self.buf.index(b"\n") + 1
        line, self.buf = self.buf[:i], self.buf[i:]
        assert line.endswith(b"\r\n"), f"server reply line not ending in CRLF: {line!r}"
        return line[:-2]

    def is_closed(self, wait=5):
        """True when the server closed the connection (pending replies are discarded)."""
        self.sock.settimeout(wait)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class RawSmtp(Raw):
    def __init__(self, port, timeout=30, ehlo=True):
        super().__init__(port, timeout)
        code, text = self.reply()
        assert code == 220, f"greeting: {code} {text}"
        self.ehlo_lines = []
        if ehlo:
            code, self.ehlo_lines = self.reply_lines("EHLO client.test")
            assert code == 250, f"EHLO: {code} {self.ehlo_lines}"

    def reply_lines(self, cmd=None):
        if cmd is not None:
            self.send(cmd + "\r\n")
        lines = []
        while True:
            line = self.line().decode("utf-8", "replace")
            m = re.match(r"^(\d{3})([ -])(.*)$", line)
            assert m, f"malformed SMTP reply line {line!r}"
            lines.append(m.group(3))
            if m.group(2) == " ":
                return int(m.group(1)), lines

    def reply(self, cmd=None):
        code, lines = self.reply_lines(cmd)
        return code, " ".join(lines)

    def expect(self, cmd, codes, enhanced=None, what=None):
        """Sends cmd, asserts the reply code (one int or a tuple) and the enhanced status."""
        code, text = self.reply(cmd)
        codes = codes if isinstance(codes, tuple) else (codes,)
        label = what or repr(cmd)
        assert code in codes, f"{label}: got {code} {text!r}, wanted {' or '.join(map(str, codes))}"
        if enhanced:
            assert text.startswith(enhanced), f"{label}: got {code} {text!r}, wanted enhanced status {enhanced}"
        return code, text


class RawPop3(Raw):
    def __init__(self, port, timeout=30):
        super().__init__(port, timeout)
        greet = self.line()
        assert greet.startswith(b"+OK"), f"POP3 greeting: {greet!r}"

    def cmd(self, line):
        self.send(line + "\r\n" if isinstance(line, str) else line + b"\r\n")
        return self.line()

    def multiline(self):
        lines = []
        while True:
            line = self.line()
            if line == b".":
                return lines
            lines.append(line[1:] if line.startswith(b"..") else line)


def in_own_mount_namespace():
    """Re-runs the calling script in a private mount namespace, so that a tmpfs it mounts
    dies with it. Without `unshare` (or the right to use it) the script runs as it is."""
    mark = "TEGAMI_E2E_OWN_MOUNT_NS"
    if os.environ.get(mark):
        return
    try:
        probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return
    if probe.returncode != 0:
        return
    os.environ[mark] = "1"
    sys.stdout.flush()
    os.execvp("unshare", ["unshare", "--mount", "--propagation", "private", sys.executable, *sys.argv])
