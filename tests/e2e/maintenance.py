#!/usr/bin/env python3
"""Maintenance mode: the `maint` file, the CLI, and what SMTP and POP3 clients see.

With the server down: `maint status` says off; windows off the ten-minute steps, empty
windows and garbage are refused with a one-line reason and write nothing; `maint on`
writes a TOML file with the message, `maint status` shows it in force, `maint off` removes
it, and the operator is named in log/maintenance.log. `maint status` follows a test clock
(TEGAMI_CLOCK_START) through a window that crosses midnight and through two windows.

With the server up: `maint on` while sessions are open closes an idle SMTP session with
421 4.3.2 (unasked, within 2 s), lets a session in the middle of DATA finish its message
(250) and then closes it with 421, and closes idle POP3 sessions with -ERR [SYS/TEMP]
without committing their DELE marks; new connections get the same replies with the
message and "until further notice". Deleting the file by hand lifts maintenance within
2 s, and so does `maint off`; every start and end lands in log/maintenance.log, with the
operator's name when the operator set it. Nothing accepted is lost.

With a test clock: a window 22:00-23:00 opens under a running server (served at 21:59:40,
refused a few seconds later, "until 2026-11-23 23:00"), a server started while a window
is in force refuses at once, and the window's end at midnight lets clients in again
while the file (daily windows) stays.
"""

import contextlib
import os
import re
import socket
import sys
import time
import tomllib

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import ok  # noqa: E402

OPERATOR = "e2e-operator"
HOSTNAME = "mx.test"
PW = {"alice@example.com": "alice-pw", "bob@example.com": "bob-pw"}
NOTICE = 2.0  # the contract: the server notices a change of the maint file within 2 s
SLACK = 3.0  # scheduling noise on a busy test machine


# ---------------------------------------------------------------------------
# Helpers


@contextlib.contextmanager
def clock(start):
    """Runs the CLI or a server started inside with TEGAMI_CLOCK_START=start."""
    old = os.environ.get("TEGAMI_CLOCK_START")
    os.environ["TEGAMI_CLOCK_START"] = start
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TEGAMI_CLOCK_START", None)
        else:
            os.environ["TEGAMI_CLOCK_START"] = old


def msg(mid, body="hello\r\n"):
    return f"Message-ID: <{mid}@maint.test>\r\nFrom: x@ext.test\r\nSubject: {mid}\r\n\r\n".encode() + body.encode()


def first_line(port, timeout=10):
    """Connects and returns (the server's first line, whether it then closed the connection)."""
    r = h.Raw(port, timeout=timeout)
    try:
        line = r.line().decode("utf-8", "replace")
        closed = r.is_closed(wait=3) if line.startswith(("421", "-ERR")) else False
        return line, closed
    finally:
        r.close()


def unsolicited(conn, wait):
    """The next line the server sends without being asked, or None after `wait` seconds."""
    conn.sock.settimeout(wait)
    try:
        return conn.line().decode("utf-8", "replace")
    except socket.timeout:
        return None
    finally:
        conn.sock.settimeout(30)


def wait_first_line(port, want_prefix, deadline_s, what):
    """Opens new connections until the first line starts with want_prefix; returns (seconds, line)."""
    started = time.monotonic()
    last = None
    while True:
        try:
            line, _ = first_line(port)
        except (h.Closed, ConnectionResetError, OSError) as e:
            line = f"(connection failed: {e})"
        if line.startswith(want_prefix):
            return time.monotonic() - started, line
        last = line
        if time.monotonic() - started > deadline_s:
            raise AssertionError(f"{what}: no first line starting {want_prefix!r} within {deadline_s:.1f} s; last got {last!r}")
        time.sleep(0.1)


def maint_log(t):
    p = t.data / "log" / "maintenance.log"
    try:
        return p.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def new_log_lines(t, before):
    return maint_log(t)[len(before):].splitlines()


def smtp_refusal(line, message, until):
    """The SMTP maintenance reply: 421 4.3.2 <host> <message> (maintenance until ...)."""
    want = f"421 4.3.2 {HOSTNAME} {message} (maintenance until {until})"
    assert line == want, f"SMTP maintenance reply is {line!r}, wanted {want!r}"


def pop3_refusal(line, message, until):
    want = f"-ERR [SYS/TEMP] {message} (maintenance until {until})"
    assert line == want, f"POP3 maintenance reply is {line!r}, wanted {want!r}"


def status(t, at=None):
    if at:
        with clock(at):
            r = t.cli("maint", "status")
    else:
        r = t.cli("maint", "status")
    return r.out


def assert_one_line_refusal(r, *fragments):
    assert r.code != 0, f"should have been refused: {r!r}"
    err = r.err.strip()
    assert err, f"refused without a reason on stderr: {r!r}"
    assert len(err.splitlines()) == 1, f"the reason is not one line: {r!r}"
    for frag in fragments:
        assert re.search(frag, err, re.I), f"the reason does not match {frag!r}: {err!r}"
    return err


# ---------------------------------------------------------------------------
# The CLI with the server down


def cli_checks(t):
    maint = t.data / "maint"
    out = status(t)
    assert out.splitlines()[0] == "maintenance: off", f"maint status on a fresh data dir: {out!r}"
    ok("maint status with no maint file: 'maintenance: off'")

    for bad, frag in (
        ("12:05-13:00", r"ten|10"),
        ("12:00-12:35", r"ten|10"),
        ("12:00-12:00", r"12:00-12:00"),
        ("25:00-01:00", r"25:00-01:00"),
        ("noon", r"noon"),
    ):
        r = t.cli("maint", "on", "--window", bad, check=False)
        err = assert_one_line_refusal(r, frag)
        assert not maint.exists(), f"a refused window {bad!r} still wrote {maint}: {maint.read_text()!r}"
        h.note(f"--window {bad}: {err}")
    r = t.cli("maint", "on", "--window", "12:00-13:00", "--window", "14:05-15:00", check=False)
    assert_one_line_refusal(r, r"14:05")
    assert not maint.exists(), "one good and one bad window: the file was written anyway"
    ok("windows off the ten-minute steps, empty (start = end) or malformed: non-zero exit, one-line reason, no file")

    before = maint_log(t)
    r = t.cli("maint", "on", "--message", "Disk swap tonight")
    assert maint.is_file(), f"maint on did not write {maint}: {r!r}"
    parsed = tomllib.loads(maint.read_text())
    assert "Disk swap tonight" in repr(parsed), f"the maint file does not hold the message: {parsed!r}"
    out = status(t)
    lines = out.splitlines()
    assert re.fullmatch(r"maintenance: ACTIVE since .+ until .+", lines[0]), f"maint status after maint on: {out!r}"
    assert "message: Disk swap tonight" in lines, f"maint status does not show the message: {out!r}"
    ok(f"maint on (server down) writes a TOML maint file; status: {lines[0]!r}")

    r = t.cli("maint", "off")
    assert not maint.exists(), f"maint off left {maint}"
    assert status(t).splitlines()[0] == "maintenance: off", "status after maint off"
    added = new_log_lines(t, before)
    assert len(added) >= 2 and all(OPERATOR in line for line in added[:2]), (
        f"log/maintenance.log should name the operator {OPERATOR!r} for maint on and maint off; new lines: {added}"
    )
    ok("maint off (server down) removes the file; both changes logged with the operator's name")

    # A window across midnight, seen through the test clock.
    with clock("2026-11-23T12:00:00"):
        t.cli("maint", "on", "--window", "22:00-02:00", "--message", "Nightly")
    parsed = tomllib.loads(t.data.joinpath("maint").read_text())
    assert "22:00-02:00" in repr(parsed), f"the window is not in the maint file: {parsed!r}"
    cases = [
        ("2026-11-23T12:00:00", "maintenance: scheduled, next from 2026-11-23 22:00 to 2026-11-24 02:00"),
        ("2026-11-23T21:59:59", "maintenance: scheduled, next from 2026-11-23 22:00 to 2026-11-24 02:00"),
        ("2026-11-23T22:00:00", "maintenance: ACTIVE since 2026-11-23 22:00 until 2026-11-24 02:00"),
        ("2026-11-23T23:30:00", "maintenance: ACTIVE since 2026-11-23 22:00 until 2026-11-24 02:00"),
        ("2026-11-24T01:30:00", "maintenance: ACTIVE since 2026-11-23 22:00 until 2026-11-24 02:00"),
        ("2026-11-24T02:00:00", "maintenance: scheduled, next from 2026-11-24 22:00 to 2026-11-25 02:00"),
    ]
    for at, want in cases:
        out = status(t, at)
        assert out.splitlines()[0] == want, f"maint status at {at} with window 22:00-02:00: {out!r}, wanted first line {want!r}"
        if "ACTIVE" in want:
            assert "message: Nightly" in out.splitlines(), f"status at {at} does not show the message: {out!r}"
    ok("window 22:00-02:00 (crosses midnight): status right before, at, inside on both sides of midnight, and at its end")

    with clock("2026-11-23T08:00:00"):
        t.cli("maint", "on", "--window", "09:00-09:30", "--window", "22:00-02:00")
    for at, want in (
        ("2026-11-23T08:00:00", "maintenance: scheduled, next from 2026-11-23 09:00 to 2026-11-23 09:30"),
        ("2026-11-23T09:10:00", "maintenance: ACTIVE since 2026-11-23 09:00 until 2026-11-23 09:30"),
        ("2026-11-23T09:30:00", "maintenance: scheduled, next from 2026-11-23 22:00 to 2026-11-24 02:00"),
    ):
        out = status(t, at)
        assert out.splitlines()[0] == want, f"maint status at {at} with two windows: {out!r}, wanted {want!r}"
    t.cli("maint", "off")
    ok("two windows (09:00-09:30 and 22:00-02:00): status picks the right one; maint on replaces the file")


# ---------------------------------------------------------------------------
# A running server


def server_checks(t):
    srv = t.serve()
    accepted = {a: [] for a in PW}
    for i in range(3):
        m = msg(f"a{i}", f"alice message {i}\r\n" * (i + 1))
        h.send(srv.smtp, "s@ext.test", ["alice@example.com"], m)
        accepted["alice@example.com"].append(m)
    for i in range(2):
        m = msg(f"b{i}")
        h.send(srv.smtp, "s@ext.test", ["bob@example.com"], m)
        accepted["bob@example.com"].append(m)
    ok("server up without maintenance: 5 messages delivered")

    idle_smtp = h.RawSmtp(srv.smtp)
    in_data = h.RawSmtp(srv.smtp)
    in_data.expect("MAIL FROM:<late@ext.test>", 250)
    in_data.expect("RCPT TO:<alice@example.com>", 250)
    in_data.expect("DATA", 354)
    late = msg("in-flight", "".join(f"line {i} of a message in flight\r\n" for i in range(300)))
    in_data.send(late[: len(late) // 2])
    marked = h.RawPop3(srv.pop3)
    assert marked.cmd("USER alice@example.com").startswith(b"+OK")
    assert marked.cmd("PASS " + PW["alice@example.com"]).startswith(b"+OK")
    r = marked.cmd("DELE 1")
    assert r.startswith(b"+OK"), f"DELE 1: {r!r}"
    idle_pop = h.RawPop3(srv.pop3)
    assert idle_pop.cmd("USER bob@example.com").startswith(b"+OK")
    assert idle_pop.cmd("PASS " + PW["bob@example.com"]).startswith(b"+OK")

    before = maint_log(t)
    t.cli("maint", "on", "--message", "Disk swap tonight")
    started = time.monotonic()  # the maint file is written when the command returns
    line = unsolicited(idle_smtp, NOTICE + SLACK + 1)
    took = time.monotonic() - started
    assert line is not None, f"an idle SMTP session got nothing within {NOTICE + SLACK + 1:.0f} s of maint on"
    smtp_refusal(line, "Disk swap tonight", "further notice")
    assert took <= NOTICE + SLACK, f"the idle SMTP session got 421 only {took:.2f} s after maint on (contract: within {NOTICE} s)"
    assert idle_smtp.is_closed(wait=3), "the idle SMTP session was not closed after the 421"
    ok(f"maint on with the server running: an idle SMTP session gets {line!r} after {took:.2f} s, unasked, and is closed")

    line, closed = first_line(srv.smtp)
    smtp_refusal(line, "Disk swap tonight", "further notice")
    assert closed, "a new SMTP connection got the 421 but stayed open"
    line, closed = first_line(srv.pop3)
    pop3_refusal(line, "Disk swap tonight", "further notice")
    assert closed, "a new POP3 connection got -ERR [SYS/TEMP] but stayed open"
    ok("new connections: SMTP 421 4.3.2 and POP3 -ERR [SYS/TEMP] with the message and 'until further notice', then closed")

    for name, conn in (("with DELE marks", marked), ("idle", idle_pop)):
        line = unsolicited(conn, 1.0)
        if line is None:  # not closed unasked: then at the next command
            conn.send("NOOP\r\n")
            line = unsolicited(conn, 5)
        assert line is not None, f"POP3 session {name}: no reply at all after maintenance started"
        pop3_refusal(line, "Disk swap tonight", "further notice")
        assert conn.is_closed(wait=3), f"POP3 session {name} got the refusal but stayed open"
        conn.close()
    ok("open POP3 sessions (one with a DELE mark, one idle) get -ERR [SYS/TEMP] and are closed")

    in_data.send(late[len(late) // 2:] + b".\r\n")
    code, text = in_data.reply()
    assert code == 250, f"the DATA in flight when maintenance started got {code} {text!r}, wanted 250 (finish the command in flight)"
    accepted["alice@example.com"].append(late)
    line = unsolicited(in_data, 1.0)
    if line is None:
        in_data.send("NOOP\r\n")
        line = unsolicited(in_data, 5)
    assert line is not None, "after its DATA finished, the session got nothing at the next command"
    smtp_refusal(line, "Disk swap tonight", "further notice")
    assert in_data.is_closed(wait=3), "the SMTP session that finished its DATA was not closed after the 421"
    ok("an SMTP session mid-DATA finishes its message (250), then gets 421 4.3.2 at the command boundary and is closed")

    out = status(t)
    assert out.startswith("maintenance: ACTIVE"), f"maint status while the server runs: {out!r}"
    added = new_log_lines(t, before)
    assert any(OPERATOR in line and re.search(r"start|on\b|set|configured", line, re.I) for line in added), (
        f"log/maintenance.log has no start line naming {OPERATOR!r}: {added}"
    )
    ok("log/maintenance.log: the start is logged with the operator's name")

    before = maint_log(t)
    (t.data / "maint").unlink()
    took, line = wait_first_line(srv.smtp, "220", NOTICE + SLACK, "after rm maint")
    ok(f"rm DIR/maint by hand: new SMTP connections greeted with 220 after {took:.2f} s")
    line, _ = first_line(srv.pop3)
    assert line.startswith("+OK"), f"POP3 greeting after rm maint: {line!r}"
    added = new_log_lines(t, before)
    assert any(re.search(r"end|lift|removed|off", line, re.I) for line in added), (
        f"log/maintenance.log has no end line after the file was removed by hand: {added}"
    )
    ok("POP3 served again; the end of maintenance is logged")

    for account, want in accepted.items():
        got = h.pop3_fetch_all(srv.pop3, account, PW[account])
        assert len(got) == len(want), f"{account}: {len(got)} messages, wanted {len(want)} (the DELE mark must not have been committed)"
        for (_, _, data), m in zip(got, want):
            assert data.endswith(b"\r\n" + m), f"{account}: stored {data[:200]!r}... does not end with the accepted {m[:80]!r}"
    ok("nothing lost: the DELE-marked message is still there and the message finished under maintenance was stored")

    before = maint_log(t)
    t.cli("maint", "on")
    took, line = wait_first_line(srv.smtp, "421", NOTICE + SLACK, "after maint on without --message")
    assert re.fullmatch(rf"421 4\.3\.2 {re.escape(HOSTNAME)} .+ \(maintenance until further notice\)", line), (
        f"421 without --message: {line!r}"
    )
    try:
        h.send(srv.smtp, "s@ext.test", ["alice@example.com"], msg("refused"))
        raise AssertionError("smtplib delivered a message while maintenance is on")
    except h.smtplib.SMTPConnectError as e:
        assert 400 <= e.smtp_code < 500, f"a sender under maintenance was answered {e.smtp_code}: deferred (4xx) is required"
    started = time.monotonic()
    t.cli("maint", "off")
    took2, _ = wait_first_line(srv.smtp, "220", NOTICE + SLACK, "after maint off")
    added = new_log_lines(t, before)
    assert sum(OPERATOR in line for line in added) >= 2, f"maint on/off while running not both logged with {OPERATOR!r}: {added}"
    h.send(srv.smtp, "s@ext.test", ["alice@example.com"], msg("after-off"))
    ok(f"maint on (default message) refuses within {took:.2f} s with a 4xx for real clients; maint off lifts it within {took2:.2f} s")
    code = srv.stop()
    assert code == 0, f"serve exited {code} after SIGTERM"


# ---------------------------------------------------------------------------
# Windows on a test clock


def window_checks(t):
    # 20 s before the window: time for the server to start on a busy machine.
    with clock("2026-11-23T21:59:40"):
        t.cli("maint", "on", "--window", "22:00-23:00", "--message", "Nightly window")
        before = maint_log(t)
        spawned = time.monotonic()
        srv = t.serve()
    line, _ = first_line(srv.smtp)
    assert line.startswith("220"), f"at 21:59:4x, before the window 22:00-23:00, SMTP greeted {line!r}"
    line, _ = first_line(srv.pop3)
    assert line.startswith("+OK"), f"at 21:59:4x POP3 greeted {line!r}"
    idle = h.RawSmtp(srv.smtp)
    ok("clock 21:59:40, window 22:00-23:00: SMTP and POP3 served at once")

    took, line = wait_first_line(srv.smtp, "421", 20 + NOTICE + SLACK + 2, "window 22:00-23:00 opening")
    since_spawn = time.monotonic() - spawned
    smtp_refusal(line, "Nightly window", "2026-11-23 23:00")
    assert since_spawn >= 19.5, f"refused {since_spawn:.2f} s after the server started at 21:59:40, before 22:00"
    assert since_spawn <= 20 + NOTICE + SLACK + 1.5, f"refused only {since_spawn:.2f} s after 21:59:40 (the window opens after 20 s; notice within 2 s)"
    line, closed = first_line(srv.pop3)
    pop3_refusal(line, "Nightly window", "2026-11-23 23:00")
    line = unsolicited(idle, 3)
    assert line is not None, "the idle SMTP session got nothing when the window opened"
    smtp_refusal(line, "Nightly window", "2026-11-23 23:00")
    ok(f"the window opens {since_spawn:.1f} s after 21:59:40: new and idle sessions get '... (maintenance until 2026-11-23 23:00)'")
    added = new_log_lines(t, before)
    assert any(re.search(r"start|open", line, re.I) and OPERATOR in line for line in added), (
        f"log/maintenance.log: no line for the window opening naming who set it ({OPERATOR!r}): {added}"
    )
    out = status(t, "2026-11-23T22:30:00")
    assert out.splitlines()[0] == "maintenance: ACTIVE since 2026-11-23 22:00 until 2026-11-23 23:00", f"status at 22:30: {out!r}"
    ok("the window's opening is logged with who set it; maint status at 22:30 agrees")
    assert srv.stop() == 0

    with clock("2026-11-23T23:59:40"):
        t.cli("maint", "on", "--window", "23:00-00:00", "--message", "Late window")
        before = maint_log(t)
        spawned = time.monotonic()
        srv = t.serve()
    line, closed = first_line(srv.smtp)
    smtp_refusal(line, "Late window", "2026-11-24 00:00")
    assert closed, "the 421 at start-up did not close the connection"
    line, _ = first_line(srv.pop3)
    pop3_refusal(line, "Late window", "2026-11-24 00:00")
    ok("a server started inside a window (23:59:40, window 23:00-00:00) refuses at once: '... until 2026-11-24 00:00'")
    took, line = wait_first_line(srv.smtp, "220", 20 + NOTICE + SLACK + 2, "window 23:00-00:00 closing at midnight")
    since_spawn = time.monotonic() - spawned
    assert since_spawn >= 19.5, f"served {since_spawn:.2f} s after 23:59:40, before midnight"
    line, _ = first_line(srv.pop3)
    assert line.startswith("+OK"), f"after the window closed POP3 greeted {line!r}"
    assert (t.data / "maint").exists(), "the maint file (daily windows) was removed when the window closed"
    added = new_log_lines(t, before)
    assert any(re.search(r"end|clos", line, re.I) for line in added), f"no end line in log/maintenance.log when the window closed: {added}"
    ok(f"at midnight the window closes ({since_spawn:.1f} s after 23:59:40): served again, logged, the daily window file stays")
    h.send(srv.smtp, "s@ext.test", ["bob@example.com"], msg("after-window"))
    t.cli("maint", "off")
    assert srv.stop() == 0


def test():
    os.environ["TZ"] = "UTC"
    os.environ["USER"] = OPERATOR
    os.environ.pop("SUDO_USER", None)
    os.environ.pop("TEGAMI_CLOCK_START", None)
    t = h.Tegami("maint")
    t.write_config(f'hostname = "{HOSTNAME}"\n')
    t.domain("example.com")
    for a, pw in PW.items():
        t.account(a, pw)
    cli_checks(t)
    server_checks(t)
    window_checks(t)
    t.check_store("after the maintenance tests")
    ok("tegami check passes")


if __name__ == "__main__":
    h.main(test, timeout=120)
