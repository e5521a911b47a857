#!/usr/bin/env python3
"""serve's background jobs are named services that finish their step on SIGTERM.

`tegami ready` is followed by a log line that names every service; SIGTERM stops the
sessions, then each service, each logged as stopped by name, none reported late, and the
process exits 0 in a few seconds. The usage statistics are flushed once a minute by default
(`[stats] flush_interval_secs`): with a flush interval of an hour, the messages sent just
before the stop are in `stats usage` afterwards only because the usage service writes its
last step on the way out (before, the service was aborted and a separate call did it).
A SIGTERM sent as soon as `tegami ready` is read also stops it cleanly.
"""

import json
import re
import time

import harness as h
from harness import ok


def test():
    t = h.Tegami("services")
    t.write_config("[stats]\nflush_interval_secs = 3600\n")
    t.domain("example.com")
    t.account("ann@example.com", "pw-ann")
    srv = t.serve()
    for i in range(3):
        msg = f"From: s@sender.test\r\nTo: ann@example.com\r\nSubject: {i}\r\n\r\nbody {i}\r\n"
        h.send(srv.smtp, "s@sender.test", ["ann@example.com"], msg)

    deadline = time.monotonic() + 10
    while "tegami is ready" not in srv.log_text():
        assert time.monotonic() < deadline, srv.describe_failure()
        time.sleep(0.1)
    ready = next(line for line in srv.log_text().splitlines() if "tegami is ready" in line)
    m = re.search(r'services="?([^"\n]+?)"?(\s\w+=|$)', ready)
    assert m, ready
    names = [n.strip() for n in m.group(1).split(",")]
    for want in ("outbound queue", "newsletters", "schedule", "usage flush", "housekeeping", "http"):
        assert want in names, (want, names)
    ok(f"serve lists {len(names)} services when ready: {', '.join(names)}")

    started = time.monotonic()
    code = srv.stop(timeout=60)
    took = time.monotonic() - started
    assert code == 0, (code, srv.describe_failure())
    log = srv.log_text()
    for name in names:
        assert re.search(rf'stopped\s+service="?{re.escape(name)}"?|service="?{re.escape(name)}"?.*stopped', log), (name, log[-3000:])
    assert "did not finish its step in time" not in log, log[-3000:]
    assert "services still busy" not in log, log[-3000:]
    assert took < 20, f"stopping took {took:.1f} s"
    ok(f"SIGTERM: every service stopped by name, none late, exit 0 in {took:.1f} s")

    usage = json.loads(t.cli("stats", "usage", "--top", "5", "--json").out)
    ann = [u for u in usage if u["account"] == "ann@example.com"]
    assert ann, f"the last flush did not happen: {usage}"
    ok("the usage service wrote its last flush on the way out: ann's 3 messages are counted")

    # The signal handlers are in place before `tegami ready` is printed: a SIGTERM sent the
    # moment it is read stops the server cleanly (before, the default action killed it in
    # most of these runs).
    for i in range(5):
        quick = t.serve()
        code = quick.stop(timeout=30)
        assert code == 0, (i, code, quick.describe_failure())
    ok("SIGTERM at the moment `tegami ready` is read: a clean stop, exit 0, 5 times of 5")


if __name__ == "__main__":
    h.main(test, timeout=120)
