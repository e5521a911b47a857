"""tegami as a service: the .deb installs, the unit's ExecStart runs under systemd-style
notification, and a server started as root switches to its user once its listeners are bound.

No systemd runs here, so the test plays its part: it builds the package from the binary under
test (the debug build, to save a release build), installs it with dpkg, and runs the unit's
ExecStart line as the unit would: as the user tegami with CAP_NET_BIND_SERVICE as an ambient
capability (setpriv), NOTIFY_SOCKET on an abstract socket the test listens on and a
WATCHDOG_USEC. It checks READY=1 after the listeners are up, WATCHDOG=1 pings, STOPPING=1 on
SIGTERM, a message accepted on a port below 1024, and then purges the package. Everything the
package and the test add to the machine (package, user, /var/lib/tegami) is removed at the
end, even on failure. Needs root, dpkg and setpriv (util-linux).
"""

import os
import pwd
import re
import signal
import smtplib
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from harness import (
    HOST, REPO, Tegami, _set_pdeathsig, at_cleanup, imap_login, main, note, ok, tegami_bin,
)

UNIT = Path("/lib/systemd/system/tegami.service")
CONFIG = Path("/etc/tegami/tegami.toml")
STATE = Path("/var/lib/tegami")
PASSWORD = "service test password"
_procs = []


def run(*argv, check=True, timeout=120, **kw):
    p = subprocess.run(list(argv), capture_output=True, timeout=timeout, **kw)
    if check:
        assert p.returncode == 0, f"{' '.join(map(str, argv))} -> {p.returncode}\n{p.stdout.decode(errors='replace')}{p.stderr.decode(errors='replace')}"
    return p


def dpkg(*args):
    """dpkg, waiting for the lock if another install holds it."""
    deadline = time.monotonic() + 300
    while True:
        p = run("dpkg", *args, check=False, timeout=300)
        err = p.stderr.decode(errors="replace")
        if p.returncode == 0:
            return p
        assert "lock" in err and time.monotonic() < deadline, f"dpkg {' '.join(args)} failed: {err}"
        time.sleep(2)


def free_privileged_port():
    for port in range(700, 1000):
        with socket.socket() as s:
            try:
                s.bind((HOST, port))
                return port
            except OSError:
                continue
    raise AssertionError("no free port below 1024 on 127.0.0.1")


class Notify:
    """The service manager's side of sd_notify: an abstract datagram socket."""

    def __init__(self):
        self.name = f"tegami-e2e-service-{os.getpid()}-{time.monotonic_ns()}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name)
        self.sock.settimeout(0.2)
        self.messages = []  # (monotonic time, text)
        self._stop = False
        threading.Thread(target=self._read, daemon=True).start()
        at_cleanup(self.close)

    def _read(self):
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode(errors="replace")))

    def wait_for(self, line, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _, text in self.messages:
                if line in text.split("\n"):
                    return
            time.sleep(0.05)
        raise AssertionError(f"no {line} from the server within {timeout} s; got {self.messages}")

    def count(self, line):
        return sum(1 for _, text in self.messages if line in text.split("\n"))

    def close(self):
        self._stop = True
        self.sock.close()


def start(argv, env=None):
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=env, preexec_fn=_set_pdeathsig,
    )
    _procs.append(proc)
    lines = []

    def read():
        for raw in proc.stdout:
            lines.append(raw.decode(errors="replace").rstrip())

    threading.Thread(target=read, daemon=True).start()
    proc.lines = lines
    return proc


def wait_ready(proc, timeout=60):
    deadline = time.monotonic() + timeout
    while "tegami ready" not in proc.lines:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited with {proc.returncode}: {proc.stderr.read().decode(errors='replace')}")
        assert time.monotonic() < deadline, f"not ready within {timeout} s: {proc.lines}"
        time.sleep(0.05)
    return {l.split()[2]: int(l.split()[3].rsplit(":", 1)[1]) for l in proc.lines if l.startswith("tegami listening ")}


def ids(pid):
    status = Path(f"/proc/{pid}/status").read_text()
    uid = [int(x) for x in re.search(r"^Uid:\s+(.*)$", status, re.M).group(1).split()]
    gid = [int(x) for x in re.search(r"^Gid:\s+(.*)$", status, re.M).group(1).split()]
    caps = int(re.search(r"^CapEff:\s+(\S+)$", status, re.M).group(1), 16)
    return uid, gid, caps


def stop(proc, timeout=40):
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=timeout)
    assert code == 0, f"serve exited with {code} after SIGTERM: {proc.stderr.read().decode(errors='replace')}"


def deliver_and_read(smtp_port, imap_port, subject):
    with smtplib.SMTP(HOST, smtp_port, timeout=30) as smtp:
        refused = smtp.sendmail(
            "someone@example.org", ["alice@example.com"],
            f"From: someone@example.org\r\nTo: alice@example.com\r\nSubject: {subject}\r\n\r\nhi\r\n",
        )
        assert not refused, refused
    imap = imap_login(imap_port, "alice@example.com", PASSWORD)
    imap.select("INBOX")
    typ, found = imap.search(None, "SUBJECT", f'"{subject}"')
    imap.logout()
    assert typ == "OK" and found[0].split(), f"{subject!r} not in INBOX: {found}"


def listener_args(smtp_port):
    return ["--smtp", f"{HOST}:{smtp_port}", "--submission", f"{HOST}:0", "--pop3", f"{HOST}:0",
            "--imap", f"{HOST}:0", "--http", f"{HOST}:0"]


def unit_settings():
    settings = {}
    for line in UNIT.read_text().splitlines():
        m = re.match(r"^(\w+)=(.*)$", line)
        if m:
            settings.setdefault(m.group(1), []).append(m.group(2))
    return settings


def cleanup_machine():
    for proc in _procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    subprocess.run(["dpkg", "--purge", "tegami"], capture_output=True, timeout=300)
    subprocess.run(["userdel", "tegami"], capture_output=True, timeout=60)
    subprocess.run(["groupdel", "tegami"], capture_output=True, timeout=60)
    subprocess.run(["rm", "-rf", str(STATE), "/etc/tegami"], timeout=60)


def test():
    assert os.geteuid() == 0, "this test installs a package: run it as root (scripts/test does on CI)"
    for tool in ("dpkg", "dpkg-deb", "setpriv", "useradd"):
        assert run("sh", "-c", f"command -v {tool}", check=False).returncode == 0, f"{tool} missing"
    installed = run("dpkg-query", "-W", "-f", "${Status}", "tegami", check=False).stdout.decode()
    taken = [what for what, there in (
        ("the package tegami", "installed" in installed),
        ("the user tegami", _user_exists()),
        (str(STATE), STATE.exists()),
    ) if there]
    assert not taken, (
        f"{', '.join(taken)} already on this machine; the test installs and purges its own. "
        "Remove them first (dpkg --purge tegami; userdel tegami; rm -rf /var/lib/tegami)"
    )
    at_cleanup(cleanup_machine)

    out = Path(tempfile.mkdtemp(prefix="tegami-e2e-deb-"))
    at_cleanup(lambda: subprocess.run(["rm", "-rf", str(out)]))
    deb = run(str(REPO / "scripts/package-deb"), "--binary", tegami_bin(), "--out", str(out), "--fast",
              timeout=600).stdout.decode().strip().splitlines()[-1]
    ok(f"scripts/package-deb built {Path(deb).name} (from the debug binary)")

    dpkg("-i", deb)
    user = pwd.getpwnam("tegami")
    st = STATE.stat()
    assert (st.st_mode & 0o7777, st.st_uid) == (0o700, user.pw_uid), (oct(st.st_mode), st.st_uid)
    conffiles = run("dpkg-query", "-W", "-f", "${Conffiles}", "tegami").stdout.decode()
    assert str(CONFIG) in conffiles, conffiles
    config = CONFIG.read_text()
    assert re.search(r'^user = "tegami"$', config, re.M) and '"0.0.0.0:25"' in config, config[:400]
    assert Path("/usr/bin/tegami").is_file() and UNIT.is_file()
    ok("dpkg -i: /usr/bin/tegami, the unit, /etc/tegami/tegami.toml (a conffile), user tegami, "
       "/var/lib/tegami 0700 tegami's")

    unit = unit_settings()
    assert unit["Type"] == ["notify"] and unit["User"] == ["tegami"], unit
    assert "CAP_NET_BIND_SERVICE" in unit["AmbientCapabilities"][0], unit
    assert int(unit["WatchdogSec"][0]) > 0 and unit["NotifyAccess"] == ["main"], unit
    exec_start = unit["ExecStart"][0].split()
    assert exec_start[:1] == ["/usr/bin/tegami"] and exec_start[-1] == "serve", exec_start

    as_tegami = ["setpriv", "--reuid", "tegami", "--regid", "tegami", "--init-groups"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEGAMI_", "NOTIFY_", "WATCHDOG_"))}
    for args, stdin in ((["domain", "add", "example.com"], None),
                        (["account", "add", "alice@example.com", "--password-stdin"], PASSWORD + "\n")):
        run(*as_tegami, *exec_start[:-1], *args, input=stdin.encode() if stdin else None, env=env)
    ok("a domain and an account added as tegami with the unit's --data and --config")

    # The unit's ExecStart, as systemd would run it: user tegami, the ambient capability,
    # NOTIFY_SOCKET and a 2 s watchdog. Only the listeners move to loopback test ports; SMTP
    # takes one below 1024 to show the capability is enough to bind it.
    notify = Notify()
    port = free_privileged_port()
    started = time.monotonic()
    proc = start(
        [*as_tegami, "--inh-caps", "+net_bind_service", "--ambient-caps", "+net_bind_service",
         *exec_start, *listener_args(port)],
        env={**env, "NOTIFY_SOCKET": "@" + notify.name, "WATCHDOG_USEC": "2000000"},
    )
    notify.wait_for("READY=1", 60)
    ready_at = time.monotonic()
    ports = wait_ready(proc)
    assert ports["smtp"] == port, ports
    uid, gid, _ = ids(proc.pid)
    assert set(uid) == {user.pw_uid} and set(gid) == {user.pw_gid}, (uid, gid)
    ok(f"ExecStart as tegami with CAP_NET_BIND_SERVICE: READY=1 after {ready_at - started:.1f} s, "
       f"SMTP on port {port}")
    first_ready = next(t for t, text in notify.messages if "READY=1" in text.split("\n"))
    assert all("STOPPING=1" not in text for _, text in notify.messages)
    deliver_and_read(port, ports["imap"], "through the unit")
    ok("smtplib's message accepted on the privileged port, read back over IMAP")

    # Pings are due every second; a loaded machine may delay one, so count them over a
    # longer span and hold the rate to what systemd needs (one per WATCHDOG_USEC = 2 s).
    deadline = time.monotonic() + 10
    while notify.count("WATCHDOG=1") < 4:
        assert time.monotonic() < deadline, f"WATCHDOG=1 pings stopped: {notify.messages}"
        time.sleep(0.1)
    span = time.monotonic() - first_ready
    pings = notify.count("WATCHDOG=1")
    assert pings / span >= 0.5, f"{pings} WATCHDOG=1 in {span:.1f} s with WATCHDOG_USEC=2 s: {notify.messages}"
    ok(f"{pings} WATCHDOG=1 pings in {span:.1f} s (every second: half of WATCHDOG_USEC)")
    stop(proc)
    notify.wait_for("STOPPING=1", 5)
    ok("SIGTERM: STOPPING=1, then a clean exit")

    # Root without the unit: [server] user = "tegami" in the packaged config.
    proc = start(["/usr/bin/tegami", "--data", str(STATE), "--config", str(CONFIG), "serve", *listener_args(port)], env=env)
    ports = wait_ready(proc)
    uid, gid, caps = ids(proc.pid)
    assert set(uid) == {user.pw_uid} and set(gid) == {user.pw_gid} and caps == 0, (uid, gid, hex(caps))
    deliver_and_read(port, ports["imap"], "after dropping root")
    foreign = [str(p) for p in STATE.rglob("*") if p.lstat().st_uid != user.pw_uid]
    assert not foreign, f"files in {STATE} not tegami's: {foreign}"
    stop(proc)
    log = (STATE / "log" / "tegami.log").read_text()
    assert "now running as this user" in log, log[-2000:]
    ok(f"started as root: bound port {port}, then runs as tegami (uid, gid, no capabilities); "
       "every file in /var/lib/tegami is tegami's")

    # A data directory that is not the user's is refused with the fix.
    t = Tegami("service")
    t.data.mkdir(mode=0o700)
    r = run("/usr/bin/tegami", "--data", str(t.data), "--config", str(CONFIG), "serve",
            *listener_args(0), check=False, env=env, timeout=60)
    err = r.stderr.decode()
    assert r.returncode != 0 and f"chown -R tegami: {t.data}" in err and len(err.strip().splitlines()) == 1, err
    ok(f"a data directory owned by root is refused: {err.strip()}")

    # A new data directory is made 0700 and the user's, and doctor agrees with that mode.
    t.root.chmod(0o755)  # mkdtemp's 0700 would keep tegami out of the parent
    new = t.root / "new-data"
    proc = start(["/usr/bin/tegami", "--data", str(new), "--config", str(CONFIG), "serve", *listener_args(0)], env=env)
    wait_ready(proc)
    stop(proc)
    st = new.stat()
    assert (st.st_mode & 0o7777, st.st_uid) == (0o700, user.pw_uid), (oct(st.st_mode), st.st_uid)
    doctor = run("/usr/bin/tegami", "--data", str(new), "doctor", check=False, env=env).stdout.decode()
    mode_line = next(l for l in doctor.splitlines() if re.search(r"\bmode\b", l) and "0700" in l)
    assert "chmod" not in mode_line and "warn" not in mode_line.lower(), mode_line
    ok(f"serve made a new data directory 0700 and tegami's; doctor: {mode_line.strip()}")

    # A relative --data that does not exist: refused, nothing created.
    r = run("/usr/bin/tegami", "--data", "mail-data", "domain", "list", check=False, cwd=t.root, env=env)
    err = r.stderr.decode()
    assert r.returncode != 0 and "does not exist" in err and "absolute path" in err, err
    assert not (t.root / "mail-data").exists()
    ok(f"relative --data that does not exist: {err.strip()}")

    dpkg("--purge", "tegami")
    assert not Path("/usr/bin/tegami").exists() and not UNIT.exists() and not CONFIG.exists()
    ok("dpkg --purge removes the binary, the unit and the config (the mail stays until removed by hand)")
    note("the test removes the user tegami and /var/lib/tegami itself")


def _user_exists():
    try:
        pwd.getpwnam("tegami")
        return True
    except KeyError:
        return False


main(test, timeout=120)
