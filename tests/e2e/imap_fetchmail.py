#!/usr/bin/env python3
"""fetchmail over IMAP retrieves everything delivered over SMTP, and only once.

Checks: real-world messages (multipart, message/rfc822, 8-bit, ISO-2022-JP, a long line,
a 300 KB attachment) plus 40 plain ones are delivered over SMTP; `fetchmail --keep`
over IMAP hands every one to an MDA, byte for byte what POP3 returns for it, and leaves
them on the server marked \\Seen; a second run finds no new mail (exit 1); after more
deliveries, a run with `fetchall` and without `keep` retrieves all of them and empties
the mailbox on the server (POP3 and IMAP agree).
"""

import getpass
import os
import re
import shutil
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import imap_commands as cmds  # noqa: E402  (its varied real-world messages)
import imap_common as ic  # noqa: E402
from harness import crlf, ok  # noqa: E402

ALICE = "alice@example.com"
PW = "alice-fetchmail-pw"


def plain(i):
    return crlf(f"""\
Message-ID: <fm-{i}@ext.test>
From: sender{i}@ext.test
To: {ALICE}
Subject: fetchmail message {i}

body {i}
.
..dots
""")


def write_rc(root, port, keep, fetchall):
    out = root / "out"
    out.mkdir(exist_ok=True)
    deliver = root / "deliver.sh"
    deliver.write_text(f'#!/bin/sh\nf=$(mktemp "{out}/msg.XXXXXXXX") || exit 75\ncat > "$f" || exit 75\n')
    deliver.chmod(0o755)
    opts = ["keep" if keep else "nokeep", "fetchall" if fetchall else "no fetchall",
            "no rewrite", "no stripcr", "no forcecr"]
    rc = root / "fetchmailrc"
    rc.write_text(f"""\
set no syslog
set invisible
set idfile "{root}/fetchids"
poll 127.0.0.1 with protocol IMAP port {port} timeout 60
    user "{ALICE}" there with password "{PW}" is "{getpass.getuser()}" here
    options {' '.join(opts)}
    sslproto ''
    mda "{deliver}"
""")
    rc.chmod(0o600)
    return rc


def run_fetchmail(root, rc, want_codes, what):
    env = dict(os.environ, HOME=str(root), FETCHMAILHOME=str(root))
    argv = ["fetchmail", "-f", str(rc), "-v", "--nodetach", "--nosyslog", "--pidfile", str(root / "fetchmail.pid")]
    try:
        r = subprocess.run(argv, capture_output=True, timeout=120, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"fetchmail ({what}) did not finish within 120 s")
    out = (r.stdout + r.stderr).decode(errors="replace")
    assert r.returncode in want_codes, f"fetchmail ({what}) exited {r.returncode}, wanted {want_codes}:\n{out[-4000:]}"
    return r.returncode, out


def collected(root):
    """{message-id: bytes} of what the MDA wrote, emptying the output directory."""
    out = {}
    for p in sorted((root / "out").iterdir()):
        data = p.read_bytes()
        m = re.search(rb"(?im)^Message-ID:\s*(<[^>]+>)", data)
        assert m, f"a delivered file without Message-ID: {data[:300]!r}"
        mid = m.group(1).decode()
        assert mid not in out, f"fetchmail delivered {mid} twice"
        out[mid] = data
        p.unlink()
    return out


def check_same(got, stored, what):
    missing = sorted(set(stored) - set(got))
    extra = sorted(set(got) - set(stored))
    assert not missing and not extra, f"{what}: {len(missing)} not retrieved (e.g. {missing[:3]}), {len(extra)} unexpected ({extra[:3]})"
    for mid, data in stored.items():
        if got[mid] != data:
            first = next((i for i, (a, b) in enumerate(zip(got[mid], data)) if a != b), min(len(got[mid]), len(data)))
            raise AssertionError(f"{what}: {mid}: fetchmail delivered {len(got[mid])} octets, the server holds {len(data)}; "
                                 f"first difference at {first}: {got[mid][max(0, first - 40):first + 40]!r} vs "
                                 f"{data[max(0, first - 40):first + 40]!r}")


def stored_messages(srv):
    """What the server holds, read over POP3; then \\Seen is cleared over IMAP, because POP3
    RETR may set it (servers differ) and fetchmail without fetchall fetches only unseen mail."""
    out = {cmds.message_id(d): d for _, _, d in h.pop3_fetch_all(srv.pop3, ALICE, PW)}
    r = ic.RawImap(srv.imap)
    r.login(ALICE, PW)
    r.select("INBOX")
    r.ok("STORE 1:* -FLAGS.SILENT (\\Seen)")
    r.ok("LOGOUT")
    r.close()
    return out


def test():
    assert shutil.which("fetchmail"), "fetchmail is not installed (scripts/test installs it)"
    t = h.Tegami("imap-fetchmail")
    t.domain("example.com")
    t.account(ALICE, PW)
    srv = t.serve(imap=True)
    sent = cmds.messages() + [(f"plain {i}", f"sender{i}@ext.test", [], plain(i)) for i in range(40)]
    for name, sender, opts, m in sent:
        h.send(srv.smtp, sender, [ALICE], m, options=opts)
    stored = stored_messages(srv)
    assert len(stored) == len(sent), f"{len(stored)} stored, {len(sent)} sent"
    for name, sender, opts, m in sent:
        data = stored[cmds.message_id(m)]
        _, rest = h.split_trace(data, m.split(b"\r\n", 1)[0], sender)
        assert rest == m, f"{name}: stored bytes differ from what was sent"
    ok(f"{len(sent)} messages delivered over SMTP (real-world MIME and 40 plain ones), stored byte-exact")

    root = t.root / "fetchmail"
    root.mkdir()
    rc = write_rc(root, srv.imap, keep=True, fetchall=False)
    code, out = run_fetchmail(root, rc, (0,), "first run, keep")
    got = collected(root)
    check_same(got, stored, "fetchmail --keep over IMAP")
    r = ic.RawImap(srv.imap)
    r.login(ALICE, PW)
    info = r.select("INBOX", examine=True)
    assert info["EXISTS"] == len(sent), f"after fetchmail --keep the server has {info['EXISTS']} messages, wanted {len(sent)}"
    unseen = ic.search_result([u for u in r.ok("SEARCH UNSEEN")[1] if u.upper().startswith(b"* SEARCH")])
    assert unseen == [], f"fetchmail --keep left messages {unseen} unseen"
    r.ok("LOGOUT")
    r.close()
    ok(f"fetchmail (keep) over IMAP retrieved all {len(sent)} messages, each byte for byte what POP3 returns; "
       "they stay on the server, \\Seen")

    code, out = run_fetchmail(root, rc, (1,), "second run, nothing new")
    got = collected(root)
    assert not got, f"a second fetchmail run retrieved {len(got)} messages again: {sorted(got)[:5]}"
    ok("a second run finds no new mail (exit 1) and delivers nothing")

    more = [(f"more {i}", "late@ext.test", [], plain(100 + i)) for i in range(5)]
    for name, sender, opts, m in more:
        h.send(srv.smtp, sender, [ALICE], m)
    stored = stored_messages(srv)
    assert len(stored) == len(sent) + len(more)
    rc = write_rc(root, srv.imap, keep=False, fetchall=True)
    code, out = run_fetchmail(root, rc, (0,), "fetchall, no keep")
    got = collected(root)
    check_same(got, stored, "fetchmail fetchall nokeep")
    p = h.pop3_login(srv.pop3, ALICE, PW)
    count, _ = p.stat()
    p.quit()
    assert count == 0, f"after fetchmail without keep POP3 still sees {count} messages"
    r = ic.RawImap(srv.imap)
    r.login(ALICE, PW)
    info = r.select("INBOX", examine=True)
    assert info["EXISTS"] == 0, f"after fetchmail without keep IMAP still shows {info['EXISTS']} messages"
    r.close()
    ok(f"after {len(more)} more deliveries, fetchall without keep retrieves all {len(stored)} and the mailbox is empty "
       "(POP3 and IMAP agree)")
    t.check_store("after fetchmail")
    assert srv.stop() == 0


if __name__ == "__main__":
    h.main(test, timeout=120)
