#!/usr/bin/env python3
"""The scheduled daily backup, on a clock the test controls (TZ=UTC).

A store has backups from 03:00 on 11-19, 11-20 and 11-21, and the config says `[backup] at =
"03:00"`, keep_daily = 2, keep_weekly = 0. A server started at 2026-11-23T02:59:55 finds the
backup due on 11-22 missing: it logs that at error level, and `doctor` warns about it. At
03:00 it takes a backup online while a client keeps delivering (every message gets 250),
verifies it, and prunes to the two newest days: log/backup.log has the start, the finish
("verified") and the prune, log/backup_result.log says ok, the server's log says the
scheduled backup finished, and `doctor` then shows the new backup as the last one, verified,
with no warning. A second server whose backup directory cannot be created logs the failed
scheduled backup at error level, log/backup_result.log says "result: failed", and doctor
warns about the last run.
"""

import contextlib
import os
import re
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import ok  # noqa: E402

START = "2026-11-23T02:59:55"


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


def setup(name, backup_section):
    t = h.Tegami(name)
    t.write_config(f'hostname = "mx.test"\n\n[backup]\nat = "03:00"\n{backup_section}')
    t.domain("example.com")
    t.account("alice@example.com", "alice-pw")
    return t


def wait_for(what, predicate, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout} s")


def read(p):
    try:
        return p.read_text()
    except FileNotFoundError:
        return ""


def doctor_section(t):
    r = t.cli("doctor", check=False)
    return r.out.split("\nBackups\n", 1)[1].split("\n\n", 1)[0]


def test():
    os.environ["TZ"] = "UTC"
    t = setup("schedule", "keep_daily = 2\nkeep_weekly = 0\n")
    for day in (19, 20, 21):
        with clock(f"2026-11-{day}T03:00:00"):
            t.cli("backup", "create")
    broken = setup("schedule-broken", 'dir = "not-a-dir/backups"\n')
    (broken.data / "not-a-dir").write_text("a file where the backup directory should go\n")

    with clock(START):
        doctor = doctor_section(t)
        assert "WARN  last backup" in doctor and "did not happen" in doctor, doctor
        srv = t.serve()
        srv_broken = broken.serve()
    log = t.data / "log"
    wait_for("the missed backup logged", lambda: "scheduled backup missed" in srv.log_text())
    line = next(line for line in srv.log_text().splitlines() if "scheduled backup missed" in line)
    assert "ERROR" in line and "2026-11-22 03:00" in line, line
    assert "scheduled backup missed" in read(log / "backup.log")
    ok("the backup due on 11-22 is missing: the server logs it at error level, and doctor warns")

    stop = threading.Event()
    answers = []

    def deliver():
        n = 0
        while not stop.is_set():
            h.send(srv.smtp, "s@ext.test", ["alice@example.com"], f"Subject: {n}\r\n\r\nduring {n}\r\n".encode())
            answers.append(n)
            n += 1
            time.sleep(0.05)

    sender = threading.Thread(target=deliver, daemon=True)
    sender.start()
    history = wait_for("the scheduled backup finished",
                       lambda: (lambda x: x if "finished (scheduled)" in x and "prune:" in x else "")(read(log / "backup.log")))
    stop.set()
    sender.join(timeout=30)
    assert answers, "no mail was delivered around the backup"
    assert re.search(r"backup 20261123T0300\d\dZ finished \(scheduled\).*verified", history), history
    assert "backup started (scheduled)" in history, history
    assert re.search(r"prune: removed 2 backups \(20261119T0300\d\dZ, 20261120T0300\d\dZ\)", history), history
    assert read(log / "backup_result.log").startswith("result: ok: backup 20261123T0300"), read(log / "backup_result.log")
    wait_for("the server's log line", lambda: "scheduled backup finished" in srv.log_text())
    kept = sorted(p.name[:8] for p in (t.data / "backups").iterdir() if not p.name.startswith("."))
    assert kept == ["20261121", "20261123"], kept
    ok(f"at 03:00: a verified backup taken online ({len(answers)} messages delivered meanwhile, all 250), "
       "pruned to the two newest days; log/backup.log, backup_result.log and the server's log say so")

    with clock("2026-11-23T03:01:00"):
        doctor = doctor_section(t)
    assert re.search(r"OK    last backup\s+20261123T0300\d\dZ .*verified", doctor), doctor
    assert "WARN  last" not in doctor, doctor
    ok("doctor shows the new backup as the last one, verified, and warns no more")

    blog = broken.data / "log"
    wait_for("the failed backup logged", lambda: "scheduled backup failed" in srv_broken.log_text())
    line = next(line for line in srv_broken.log_text().splitlines() if "scheduled backup failed" in line)
    assert "ERROR" in line, line
    assert read(blog / "backup_result.log").startswith("result: failed"), read(blog / "backup_result.log")
    assert "backup failed" in read(blog / "backup.log")
    with clock("2026-11-23T03:01:00"):
        doctor = doctor_section(broken)
    assert "WARN  last run" in doctor, doctor
    ok("a scheduled backup that fails is logged at error level and doctor warns about the last run")
    srv.stop()
    srv_broken.stop()


if __name__ == "__main__":
    h.main(test, timeout=180)
