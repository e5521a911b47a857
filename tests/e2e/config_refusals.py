#!/usr/bin/env python3
"""Bad input that was taken as good (issue 16.10).

The findings: `import mbox` of 5 MB of random bytes exited 0 ("imported 0 messages");
`[log] level = "verbose!!"` started a server that logged nothing at all; `check`,
`account list`, `queue list` and `optimize` exited 0 with a broken config file. Now the
import fails with a one-line hint and leaves no mailbox behind; the server refuses to start
and names log.level and the valid levels; and every command refuses a broken config file.
"""

import os
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import ok  # noqa: E402

USER, PW = "alice@example.com", "alice-pw"

# Every command, with arguments that would succeed on a good config.
COMMANDS = [
    ("check",),
    ("optimize",),
    ("account", "list"),
    ("domain", "list"),
    ("alias", "list"),
    ("queue", "list"),
    ("maint", "status"),
    ("stats", "disk"),
    ("archive", "list"),
    ("backup", "list"),
    ("list", "list"),
    ("export", "mbox", "--account", USER, "--mailbox", "INBOX", "OUT"),
    ("import", "mbox", "--account", USER, "MBOX"),
    ("doctor",),
]


def test():
    t = h.Tegami("config-refusals")
    t.domain("example.com")
    t.account(USER, PW)

    noise = t.root / "noise.mbox"
    noise.write_bytes(os.urandom(5 << 20))
    r = t.cli("import", "mbox", "--account", USER, "--mailbox", "Noise", str(noise), check=False, timeout=120)
    assert r.code != 0, f"import of 5 MB of random bytes exited 0: {r!r}"
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and "no mail message" in lines[0] and "From " in lines[0], f"not a one-line hint: {r!r}"
    r = t.cli("export", "mbox", "--account", USER, "--mailbox", "Noise", str(t.root / "x.mbox"), check=False)
    assert r.code != 0, f"the failed import left a mailbox Noise behind: {r!r}"
    ok(f"import mbox of 5 MB of random bytes: exit {r.code}, {lines[0][:90]}...")

    t.write_config('[log]\nlevel = "verbose!!"\n')
    srv = t.serve(wait=False)
    try:
        code = srv.proc.wait(30)
    except subprocess.TimeoutExpired:
        srv.force_kill()
        raise AssertionError(f"serve with log.level = \"verbose!!\" is still running: {srv.stderr_text()!r}")
    srv._forget()
    err = srv.stderr_text()
    assert code != 0, f"serve with log.level = \"verbose!!\" exited 0: {err!r}"
    assert "log.level" in err and "verbose!!" in err and "info" in err, f"the refusal does not name the key and the levels: {err!r}"
    assert len(err.strip().splitlines()) == 1, f"the refusal is not one line: {err!r}"
    ok("serve with [log] level = \"verbose!!\": refuses to start, naming log.level and the valid levels")

    t.write_config("[smtp\nlisten = \n")
    for command in COMMANDS:
        args = [str(t.root / a) if a in ("OUT", "MBOX") else a for a in command]
        r = t.cli(*args, check=False, timeout=60)
        assert r.code != 0, f"tegami {' '.join(command)} with a broken config file exited 0: {r!r}"
        assert "config" in r.err and "tegami.toml" in r.err, f"tegami {' '.join(command)}: the error does not name the config file: {r!r}"
    ok(f"with a broken config file, all {len(COMMANDS)} commands tried refuse to run and name the file")


if __name__ == "__main__":
    h.main(test, timeout=120)
