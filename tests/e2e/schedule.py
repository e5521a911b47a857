#!/usr/bin/env python3
"""The scheduled daily check and optimisation, on a clock the test controls.

Every server here starts with TEGAMI_CLOCK_START=2026-11-23T02:59:40 (TZ=UTC) and the
config `[maintenance] check_at = "03:00"`.

- A normal run (maintenance_during_check = false, a maintenance window 04:00-05:00 that
  does not touch 03:00): at 03:00 log/maintenance.log gets "check started (scheduled)"
  then "check finished: ...", log/optimize.log is appended to, both *_result.log files are
  replaced (a sentinel put there before is gone, the sentinels in the history logs stay),
  it runs once, and mail keeps flowing: a background sender gets 250 for every message
  before, during and after, an SMTP session and a POP3 session opened before 03:00 are
  still usable afterwards, and the maint file is untouched.
- maintenance_during_check = true: while the check runs maintenance is in force (an idle
  SMTP session opened before gets 421 4.3.2, an idle POP3 session -ERR [SYS/TEMP], and the
  start and end are in log/maintenance.log around the check), and it is lifted afterwards
  (the maint file is gone and new connections are greeted with 220 within seconds).
- The skip rule, two servers side by side: window 02:00-03:00 (check_at equals the end)
  and window 02:50-03:10 (check_at inside): maintenance.log says "scheduled check skipped"
  with the reason, no check or optimisation runs, and no result log appears. After the
  first window ends at 03:00 its server serves again; the second still refuses.
"""

import contextlib
import os
import re
import socket
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import ok  # noqa: E402

HOSTNAME = "mx.test"
PW = {"alice@example.com": "alice-pw", "bob@example.com": "bob-pw"}
# 20 s before 03:00: time for a server to start and the test's sessions to open on a busy
# machine before the schedule fires.
CLOCK = "2026-11-23T02:59:40"
TO_CHECK = 20.0  # seconds from the server's start (02:59:40) to 03:00
SENTINEL_HISTORY = "SENTINEL-HISTORY-LINE"
SENTINEL_RESULT = "SENTINEL-RESULT-LINE"


@contextlib.contextmanager
def clock(start):
    old = os.environ.get("TEGAMI_CLOCK_START")
    os.environ["TEGAMI_CLOCK_START"] = start
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TEGAMI_CLOCK_START", None)
        else:
            os.environ["TEGAMI_CLOCK_START"] = old


def config(t, during):
    t.write_config(f"""\
hostname = "{HOSTNAME}"
[maintenance]
check_at = "03:00"
maintenance_during_check = {"true" if during else "false"}
""")


def msg(mid, lines=20):
    body = "".join(f"{mid} line {i:04d}\r\n" for i in range(lines))
    return f"Message-ID: <{mid}@sched.test>\r\nFrom: s@ext.test\r\nSubject: {mid}\r\n\r\n{body}".encode()


def read(p):
    try:
        return p.read_text(errors="replace")
    except FileNotFoundError:
        return None


def first_line(port, timeout=10):
    r = h.Raw(port, timeout=timeout)
    try:
        return r.line().decode("utf-8", "replace")
    finally:
        r.close()


def unsolicited(conn, wait):
    conn.sock.settimeout(wait)
    try:
        return conn.line().decode("utf-8", "replace")
    except socket.timeout:
        return None
    finally:
        conn.sock.settimeout(30)


def wait_log(path, pattern, after, deadline):
    """Waits until a line of path (past offset `after`) matches pattern; returns the new lines."""
    while True:
        text = read(path) or ""
        lines = text[after:].splitlines()
        if any(re.search(pattern, line) for line in lines):
            return lines
        if time.monotonic() > deadline:
            raise AssertionError(f"{path.name}: no line matching {pattern!r} in time; new lines: {lines}")
        time.sleep(0.1)


def index_of(lines, pattern, what):
    for i, line in enumerate(lines):
        if re.search(pattern, line):
            return i
    raise AssertionError(f"log/maintenance.log: no {what} line ({pattern!r}) in {lines}")


class Sender(threading.Thread):
    """Delivers to bob one message after another, recording the outcome and its time."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.stop = threading.Event()
        self.accepted, self.failed = [], []
        self.n = 0
        self.slowest = 0.0

    def run(self):
        while not self.stop.is_set():
            self.n += 1
            m = msg(f"flow-{self.n}")
            started = time.monotonic()
            try:
                h.send(self.port, "flow@ext.test", ["bob@example.com"], m, timeout=20)
                self.accepted.append((started, m))
            except Exception as e:  # noqa: BLE001 - any refusal is a finding
                self.failed.append(f"message {self.n} at +{started - self.t0:.2f} s: {type(e).__name__}: {e}")
            self.slowest = max(self.slowest, time.monotonic() - started)
            self.stop.wait(0.05)


def normal_run(t):
    log = t.data / "log"
    log.mkdir(parents=True, exist_ok=True)
    t.cli("maint", "on", "--window", "04:00-05:00", "--message", "later")
    maint_before = (t.data / "maint").read_bytes()
    for name in ("maintenance.log", "optimize.log"):
        with open(log / name, "a") as f:
            f.write(SENTINEL_HISTORY + "\n")
    for name in ("maintenance_result.log", "optimize_result.log"):
        (log / name).write_text(SENTINEL_RESULT + "\n")
    before = {name: read(log / name) for name in ("maintenance.log", "optimize.log")}

    with clock(CLOCK):
        spawned = time.monotonic()
        srv = t.serve()
    smtp = h.RawSmtp(srv.smtp)
    pop = h.pop3_login(srv.pop3, "alice@example.com", PW["alice@example.com"])
    sender = Sender(srv.smtp)
    sender.t0 = spawned
    sender.start()

    lines = wait_log(log / "maintenance.log", r"check finished", len(before["maintenance.log"]), spawned + TO_CHECK + 60)
    # The optimisation runs after the check: wait for its result log to be replaced too.
    deadline = time.monotonic() + 60
    while SENTINEL_RESULT in (read(log / "optimize_result.log") or SENTINEL_RESULT) and time.monotonic() < deadline:
        time.sleep(0.1)
    finished_at = time.monotonic()
    # Until a delivery that began after the check has been accepted (one slow delivery
    # may span any fixed wait).
    deadline = time.monotonic() + 30
    while not sender.failed and not any(s > finished_at for s, _ in list(sender.accepted)):
        assert time.monotonic() < deadline, "no delivery accepted in the 30 s after the check"
        time.sleep(0.1)
    sender.stop.set()
    sender.join(timeout=30)
    assert not sender.is_alive(), "the background sender hung"

    i_start = index_of(lines, r"check started \(scheduled\)", "'check started (scheduled)'")
    i_end = index_of(lines, r"check finished", "'check finished'")
    assert i_start < i_end, f"'check finished' before 'check started': {lines}"
    assert "2026-11-23 03:00" in lines[i_start], f"the scheduled check did not start at 03:00 on the test clock: {lines[i_start]!r}"
    assert finished_at - spawned >= TO_CHECK - 0.5, f"the check finished {finished_at - spawned:.2f} s after 02:59:40, before 03:00"
    assert sum("check started (scheduled)" in line for line in lines) == 1, f"the scheduled check ran more than once: {lines}"
    ok(f"at 03:00 on the test clock: {lines[i_start]!r} ... {lines[i_end]!r}")

    opt = read(log / "optimize.log")
    assert opt.startswith(before["optimize.log"]) and len(opt.strip()) > len(before["optimize.log"].strip()), (
        f"log/optimize.log was not appended to by the scheduled run: {opt!r}"
    )
    assert read(log / "maintenance.log").startswith(before["maintenance.log"]), "log/maintenance.log was rewritten, not appended to"
    for name in ("maintenance_result.log", "optimize_result.log"):
        text = read(log / name)
        assert text and text.strip() and SENTINEL_RESULT not in text, f"log/{name} was not replaced by the scheduled run: {text!r}"
    ok("optimize.log and maintenance.log appended to (old lines kept); both *_result.log replaced with the latest run")

    assert not sender.failed, "mail was refused during the scheduled check:\n" + "\n".join(sender.failed[:20])
    before_check = [s for s, _ in sender.accepted if s - spawned < TO_CHECK]
    after_check = [s for s, _ in sender.accepted if s > finished_at]
    assert before_check and after_check, (
        f"the sender did not run across the check: {len(before_check)} before 03:00, {len(after_check)} after it finished"
    )
    assert sender.slowest < 10, f"a delivery took {sender.slowest:.1f} s during the scheduled check"
    smtp.expect("NOOP", 250, what="NOOP on an SMTP session opened before 03:00")
    smtp.expect("MAIL FROM:<held@ext.test>", 250)
    smtp.expect("RCPT TO:<bob@example.com>", 250)
    smtp.expect("DATA", 354)
    smtp.send(msg("held-session") + b".\r\n")
    smtp.expect(None, 250, what="delivery on a session opened before 03:00")
    smtp.expect("QUIT", 221)
    smtp.close()
    count, _ = pop.stat()
    h.pop3_retr(pop, 1)
    pop.quit()
    ok(f"mail kept flowing: {len(sender.accepted)} deliveries, all 250 (slowest {sender.slowest:.2f} s); sessions opened before 03:00 still work")

    got = h.pop3_fetch_all(srv.pop3, "bob@example.com", PW["bob@example.com"])
    want = [m for _, m in sender.accepted] + [msg("held-session")]
    stored = [d for _, _, d in got]
    missing = [m[:40] for m in want if not any(d.endswith(b"\r\n" + m) for d in stored)]
    assert not missing, f"acknowledged messages missing after the scheduled check: {missing[:5]}"
    assert (t.data / "maint").read_bytes() == maint_before, "the scheduled check changed the operator's maint file"
    assert srv.stop() == 0
    t.cli("maint", "off")
    ok("every acknowledged message stored; the operator's maint file (window 04:00-05:00) untouched")


def maintenance_during_check(t):
    config(t, during=True)
    log = t.data / "log"
    offset = len(read(log / "maintenance.log") or "")
    opt_offset = len(read(log / "optimize.log") or "")
    assert not (t.data / "maint").exists()
    with clock(CLOCK):
        spawned = time.monotonic()
        srv = t.serve()
    smtp = h.RawSmtp(srv.smtp)
    pop = h.RawPop3(srv.pop3)
    assert pop.cmd("USER alice@example.com").startswith(b"+OK")
    assert pop.cmd("PASS " + PW["alice@example.com"]).startswith(b"+OK")
    assert first_line(srv.smtp).startswith("220"), "before 03:00 a new SMTP connection was not greeted with 220"

    polls = []
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            try:
                polls.append((time.monotonic() - spawned, first_line(srv.smtp, timeout=5)))
            except Exception as e:  # noqa: BLE001
                polls.append((time.monotonic() - spawned, f"(connection failed: {e})"))
            stop.wait(0.2)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        line = unsolicited(smtp, TO_CHECK + 30)
        assert line is not None, "an idle SMTP session opened before 03:00 got nothing: maintenance was not in force during the check"
        assert re.fullmatch(rf"421 4\.3\.2 {re.escape(HOSTNAME)} .+ \(maintenance until further notice\)", line) or re.fullmatch(
            rf"421 4\.3\.2 {re.escape(HOSTNAME)} .+ \(maintenance until .+\)", line
        ), f"the idle SMTP session got {line!r}, wanted 421 4.3.2 {HOSTNAME} <message> (maintenance until ...)"
        refused_at = time.monotonic() - spawned
        assert refused_at >= TO_CHECK - 0.5, f"the idle SMTP session was refused {refused_at:.2f} s after 02:59:40, before 03:00"
        pline = unsolicited(pop, 3)
        if pline is None:
            pop.send("NOOP\r\n")
            pline = unsolicited(pop, 5)
        assert pline and pline.startswith("-ERR [SYS/TEMP]"), f"the idle POP3 session got {pline!r}, wanted -ERR [SYS/TEMP]"
        ok(f"maintenance_during_check = true: at 03:00 (+{refused_at - TO_CHECK:.2f} s) an idle SMTP session gets {line!r}; "
           "an idle POP3 session -ERR [SYS/TEMP]")

        deadline = spawned + TO_CHECK + 90
        lines = wait_log(log / "maintenance.log", r"check finished", offset, deadline)
        # Then the optimisation; maintenance may last until it is done.
        while len(read(log / "optimize.log") or "") <= opt_offset and time.monotonic() < deadline:
            time.sleep(0.1)
        finished_at = time.monotonic()
        lines = wait_log(log / "maintenance.log", r"(?i)maintenance (ended|lifted)", offset, time.monotonic() + 30)
        while True:
            gone = not (t.data / "maint").exists()
            served = gone and first_line(srv.smtp).startswith("220")
            if served:
                break
            assert time.monotonic() - finished_at < 10.0, (
                f"10 s after the check and the optimisation finished maintenance is still in force (maint file present: {not gone})"
            )
            time.sleep(0.1)
        lifted_after = time.monotonic() - finished_at
    finally:
        stop.set()
        poller.join(timeout=10)
    smtp.close()
    pop.close()

    i_mstart = index_of(lines, r"(?i)maintenance started", "maintenance started")
    i_cstart = index_of(lines, r"check started \(scheduled\)", "check started (scheduled)")
    i_cend = index_of(lines, r"check finished", "check finished")
    i_mend = index_of(lines, r"(?i)maintenance (ended|lifted)", "maintenance ended")
    assert re.search(r"(?i)schedul|check", lines[i_mstart]), f"the maintenance start does not say the scheduled check set it: {lines[i_mstart]!r}"
    assert i_mstart < i_cend and i_cstart < i_mend and i_mstart < i_mend, (
        f"log/maintenance.log: maintenance was not in force around the check: {lines}"
    )
    odd = [(round(s, 2), p) for s, p in polls if not (p.startswith("220") or p.startswith("421 4.3.2"))]
    assert not odd, f"new connections during the run got something other than 220 or 421 4.3.2: {odd}"
    refused = sum(p.startswith("421") for _, p in polls)
    ok(f"maintenance set around the check and logged ({lines[i_mstart]!r}); lifted {lifted_after:.2f} s after the run; "
       f"{refused} of {len(polls)} new connections refused meanwhile, the rest served")
    h.send(srv.smtp, "s@ext.test", ["alice@example.com"], msg("after-maint-check"))
    assert srv.stop() == 0
    ok("after the run mail is accepted again")


def skip_rule():
    servers = []
    for window, why in (("02:00-03:00", "equals the window's end"), ("02:50-03:10", "falls inside the window")):
        t = h.Tegami("skip")
        config(t, during=False)
        t.domain("example.com")
        with clock(CLOCK):
            t.cli("maint", "on", "--window", window, "--message", "night work")
        servers.append((t, window, why))
    started = []
    for t, window, why in servers:
        with clock(CLOCK):
            spawned = time.monotonic()
            started.append((t, window, why, t.serve(), spawned))
    for t, window, why, srv, spawned in started:
        line = first_line(srv.smtp)
        assert line.startswith("421 4.3.2"), f"window {window} at 02:59:40: SMTP greeted {line!r}, wanted 421 4.3.2"
    for t, window, why, srv, spawned in started:
        log = t.data / "log"
        lines = wait_log(log / "maintenance.log", r"scheduled check skipped", 0, spawned + TO_CHECK + 40)
        skipped = [line for line in lines if "scheduled check skipped" in line]
        assert len(skipped) == 1, f"window {window}: {len(skipped)} skip lines: {lines}"
        line = skipped[0]
        reason = line.split("scheduled check skipped", 1)[1]
        assert re.search(r"\w{3}", reason) and (window in reason or re.search(r"(?i)window", reason)), (
            f"window {window}: the skip line does not give the reason (the window): {line!r}"
        )
        assert "2026-11-23 03:00" in line, f"window {window}: the skip is not stamped 03:00 on the test clock: {line!r}"
        h.note(f"window {window}: {line}")
    time.sleep(1.5)  # a check that runs anyway would have written by now
    for t, window, why, srv, spawned in started:
        log = t.data / "log"
        text = read(log / "maintenance.log")
        assert "check started" not in text and "check finished" not in text, f"window {window}: the check ran anyway: {text!r}"
        for name in ("maintenance_result.log", "optimize_result.log", "optimize.log"):
            assert not (log / name).exists(), f"window {window}: log/{name} was written although the check was skipped"
    ok("check_at 03:00 with window 02:00-03:00 (its end) and 02:50-03:10 (inside): skipped, the reason logged, nothing run")

    (t1, w1, _, srv1, _), (t2, w2, _, srv2, _) = started
    deadline = time.monotonic() + 3
    while not first_line(srv1.smtp).startswith("220"):
        assert time.monotonic() < deadline, f"window {w1} ended at 03:00 but SMTP still refuses"
        time.sleep(0.1)
    line = first_line(srv2.smtp)
    assert line.startswith("421 4.3.2") and "2026-11-23 03:10" in line, f"window {w2} at 03:00:0x: SMTP greeted {line!r}"
    ok(f"after 03:00 window {w1} is over (served) and window {w2} still refuses until 03:10")
    for *_, srv, _ in started:
        assert srv.stop() == 0


def test():
    os.environ["TZ"] = "UTC"
    os.environ.pop("TEGAMI_CLOCK_START", None)
    t = h.Tegami("sched")
    config(t, during=False)
    t.domain("example.com")
    for a, pw in PW.items():
        t.account(a, pw)
    srv = t.serve()
    for i in range(40):
        h.send(srv.smtp, "s@ext.test", ["alice@example.com"], msg(f"base-{i}", 2000))
    assert srv.stop() == 0
    ok("40 messages (~1 MB) stored for the check to go through")

    normal_run(t)
    maintenance_during_check(t)
    skip_rule()
    t.check_store("after the scheduled runs")
    ok("tegami check passes")


if __name__ == "__main__":
    h.main(test, timeout=150)
