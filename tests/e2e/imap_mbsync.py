#!/usr/bin/env python3
"""mbsync (isync) keeps a local Maildir and tegami's IMAP mailboxes in two-way sync.

Checks: 1,000 messages delivered over SMTP (several connections at once) come down in a
full sync into the local Maildir, each file holding the server's bytes (line endings
aside) under the server's UID; then flags are changed on both sides (renaming Maildir
files to :2,S / :2,F / :2,R on one side, STORE on the other), messages deleted on both
sides (a removed file, a file marked T, STORE \\Deleted + EXPUNGE), new messages added on
both sides (files in new/, SMTP), a folder created on each side: the second sync makes
both sides agree message for message and flag for flag; a third sync changes nothing
(exit 0, no write command on the wire, same server UIDs/flags/UIDNEXT, same Maildir file
names and sync state).
"""

import email.utils
import os
import re
import shutil
import smtplib
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import imap_common as ic  # noqa: E402
from harness import ok  # noqa: E402

ALICE = "alice@example.com"
PW = "alice-mbsync-pw"
N = 1000
CONNECTIONS = 4
FLAG_CHARS = {"D": "\\DRAFT", "F": "\\FLAGGED", "R": "\\ANSWERED", "S": "\\SEEN", "T": "\\DELETED"}


def msg(i):
    body = "".join(f"line {k} of message {i}: the quick brown fox\r\n" for k in range(i % 7 + 1))
    return (f"Message-ID: <mbsync-{i}@ext.test>\r\nDate: {email.utils.formatdate(1717000000 + i * 60)}\r\n"
            f"From: sender{i % 13}@ext.test\r\nTo: {ALICE}\r\nSubject: mbsync message {i}\r\n\r\n{body}").encode()


def deliver_many(port, indices):
    errors = []
    chunks = [indices[c::CONNECTIONS] for c in range(CONNECTIONS)]

    def worker(chunk):
        try:
            s = smtplib.SMTP(h.HOST, port, local_hostname="client.test", timeout=60)
            s.ehlo()
            for i in chunk:
                refused = s.sendmail("s@ext.test", [ALICE], msg(i))
                assert not refused, refused
            s.quit()
        except BaseException as e:  # noqa: BLE001
            errors.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in chunks]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=300)
    assert not errors, f"SMTP delivery failed: {errors[:3]}"


def mbsync_version():
    r = subprocess.run(["mbsync", "--version"], capture_output=True, timeout=30)
    m = re.search(rb"isync (\d+)\.(\d+)", r.stdout + r.stderr)
    assert m, f"cannot read the isync version from {r.stdout!r} {r.stderr!r}"
    return int(m.group(1)), int(m.group(2))


def write_rc(root, port, version):
    tls_kw = "TLSType" if version >= (1, 5) else "SSLType"
    far, near = ("Far", "Near") if version >= (1, 4) else ("Master", "Slave")
    rc = root / "mbsyncrc"
    rc.write_text(f"""\
IMAPAccount tegami
Host 127.0.0.1
Port {port}
User {ALICE}
Pass {PW}
{tls_kw} None
AuthMechs LOGIN
PipelineDepth 50

IMAPStore remote
Account tegami

MaildirStore local
Path {root}/mail/
Inbox {root}/mail/INBOX
SubFolders Verbatim

Channel tegami
{far} :remote:
{near} :local:
Patterns *
Sync All
Create Both
Expunge Both
CopyArrivalDate yes
SyncState *
""")
    return rc


def run_mbsync(root, rc, debug=False, timeout=150):
    argv = ["mbsync", "-c", str(rc)] + (["-Dn"] if debug else ["-V"]) + ["-a"]
    env = dict(os.environ, HOME=str(root))
    started = time.monotonic()
    try:
        r = subprocess.run(argv, capture_output=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"mbsync did not finish within {timeout} s")
    took = time.monotonic() - started
    out = (r.stdout + r.stderr).decode(errors="replace")
    assert r.returncode == 0, f"mbsync exited {r.returncode} after {took:.1f} s:\n{out[-4000:]}"
    bad = [line for line in out.splitlines() if re.match(r"\s*(Error|Warning)", line)]
    assert not bad, "mbsync reported problems:\n" + "\n".join(bad[:20])
    return out, took


def maildir_files(folder):
    """{file path: (bytes, flags as IMAP names, U= uid or None)} for cur/ and new/."""
    out = {}
    for sub in ("cur", "new"):
        d = folder / sub
        if not d.is_dir():
            continue
        for p in d.iterdir():
            if p.name.startswith("."):
                continue
            info = p.name.split(":2,", 1)[1] if ":2," in p.name else ""
            m = re.search(r",U=(\d+)", p.name)
            out[p] = (p.read_bytes(), {FLAG_CHARS[c] for c in info if c in FLAG_CHARS}, int(m.group(1)) if m else None)
    return out


def lf(b):
    """Line endings aside, and without the X-TUID header mbsync adds to what it copies."""
    return re.sub(rb"(?m)^X-TUID: [^\n]*\n", b"", b.replace(b"\r\n", b"\n"), count=1)


def mid_of(data):
    m = re.search(rb"(?im)^Message-ID:\s*(<[^>]+>)", data)
    assert m, f"no Message-ID in {data[:200]!r}"
    return m.group(1).decode()


def sync_pairs(folder):
    """mbsync's record of which server UID each Maildir UID (U=) stands for: {near: far}."""
    state = folder / ".mbsyncstate"
    assert state.is_file(), f"no sync state {state}"
    pairs = {}
    header = True
    for line in state.read_text().splitlines():
        if header:
            header = line.strip() != ""
            continue
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
            pairs[int(parts[1])] = int(parts[0])
    return pairs


def local_state(folder):
    """{message-id: (flags, server UID by the sync state, bytes with LF)}; a Message-ID must appear once."""
    pairs = sync_pairs(folder)
    out = {}
    for p, (data, flags, near) in maildir_files(folder).items():
        mid = mid_of(data)
        assert mid not in out, f"{mid} is twice in the local Maildir {folder}"
        assert near is not None and near in pairs, f"{p.name}: no U= or no sync state entry for it"
        out[mid] = (flags, pairs[near], lf(data))
    return out


def server_state(port, mailbox="INBOX"):
    """{message-id: (flags, uid, bytes with LF)} and (UIDNEXT, UIDVALIDITY) of one mailbox."""
    r = ic.RawImap(port, timeout=120)
    r.login(ALICE, PW)
    info = r.select(mailbox, examine=True)
    out = {}
    if info.get("EXISTS"):
        _, untagged = r.ok("FETCH 1:* (UID FLAGS BODY.PEEK[])")
        for n, it in ic.fetch_raw(untagged).items():
            data = it["BODY[]"]
            mid = mid_of(data)
            assert mid not in out, f"{mid} is twice in {mailbox} on the server"
            out[mid] = ({f.upper() for f in ic.flags_of(it)} - {"\\RECENT"}, int(it["UID"]), lf(data))
    r.ok("LOGOUT")
    r.close()
    return out, (int(info["UIDNEXT"]), int(info["UIDVALIDITY"]))


def mailbox_names(port):
    r = ic.RawImap(port)
    r.login(ALICE, PW)
    _, untagged = r.ok('LIST "" "*"')
    r.ok("LOGOUT")
    r.close()
    names = set()
    for u in untagged:
        if not u.upper().startswith(b"* LIST "):
            continue
        vals = ic.parse_all(u[len(b"* LIST "):])
        name = vals[2]
        names.add(ic.mutf7_decode(name.decode() if isinstance(name, bytes) else str(name)))
    return names


def compare(server, local, what):
    only_s = sorted(set(server) - set(local))
    only_l = sorted(set(local) - set(server))
    assert not only_s and not only_l, (f"{what}: {len(only_s)} messages only on the server (e.g. {only_s[:3]}), "
                                       f"{len(only_l)} only in the Maildir (e.g. {only_l[:3]})")
    for mid, (sflags, suid, sdata) in server.items():
        lflags, luid, ldata = local[mid]
        assert luid == suid, f"{what}: {mid} is paired with server UID {luid} in mbsync's state, but has UID {suid} on the server"
        if ldata != sdata:
            i = next((k for k, (x, y) in enumerate(zip(ldata, sdata)) if x != y), min(len(ldata), len(sdata)))
            raise AssertionError(f"{what}: {mid} differs between the Maildir ({len(ldata)} octets) and the server "
                                 f"({len(sdata)}), line endings aside; at {i}: {ldata[max(0, i - 60):i + 60]!r} vs "
                                 f"{sdata[max(0, i - 60):i + 60]!r}")
        wanted = {f for f in sflags if f in FLAG_CHARS.values()}
        assert lflags == wanted, f"{what}: {mid} flags differ: server {sorted(sflags)}, Maildir {sorted(lflags)}"


def set_local_flags(path, flags):
    """Moves a Maildir file to cur/ with the given flag letters."""
    base = path.name.split(":2,", 1)[0]
    target = path.parent.parent / "cur" / f"{base}:2,{''.join(sorted(flags))}"
    os.rename(path, target)
    return target


def snapshot_local(mail):
    files = sorted(str(p.relative_to(mail)) for p in mail.rglob("*") if p.is_file())
    states = {str(p.relative_to(mail)): p.read_bytes() for p in mail.rglob(".mbsyncstate")}
    return files, states


def test():
    assert shutil.which("mbsync"), "mbsync is not installed (Debian package isync; scripts/test installs it)"
    version = mbsync_version()
    t = h.Tegami("imap-mbsync")
    t.domain("example.com")
    t.account(ALICE, PW)
    srv = t.serve(imap=True)
    started = time.monotonic()
    deliver_many(srv.smtp, list(range(N)))
    ok(f"{N} messages delivered over {CONNECTIONS} SMTP connections in {time.monotonic() - started:.1f} s")

    root = t.root / "mbsync"
    (root / "mail").mkdir(parents=True)
    rc = write_rc(root, srv.imap, version)
    out, took = run_mbsync(root, rc)
    inbox = root / "mail" / "INBOX"
    local = local_state(inbox)
    server, (uidnext, uidvalidity) = server_state(srv.imap)
    assert len(server) == N, f"the server has {len(server)} messages in INBOX, {N} delivered"
    assert len(local) == N, f"the first sync put {len(local)} messages into the Maildir, wanted {N}"
    compare(server, local, "after the first sync")
    for i in (0, 1, 499, 999):
        mid = f"<mbsync-{i}@ext.test>"
        assert local[mid][2].endswith(lf(msg(i))), f"{mid}: the local copy does not end with the message sent"
    ok(f"mbsync {version[0]}.{version[1]} first sync ({took:.1f} s): {N} files in the Maildir, each the server's bytes "
       "(line endings and mbsync's X-TUID aside) paired with its server UID, flags equal")

    # Changes on both sides.
    paths = {mid_of(data): p for p, (data, _, _) in maildir_files(inbox).items()}
    mids = [f"<mbsync-{i}@ext.test>" for i in range(N)]
    local_seen, local_flagged, local_both = mids[0:10], mids[10:20], mids[20:25]
    local_removed, local_trashed = mids[30:40], mids[40:50]
    remote_seen, remote_flagged, remote_answered = mids[100:110], mids[110:120], mids[120:125]
    remote_deleted = mids[130:140]
    for mid in local_seen:
        set_local_flags(paths[mid], "S")
    for mid in local_flagged:
        set_local_flags(paths[mid], "F")
    for mid in local_both:
        set_local_flags(paths[mid], "FS")
    for mid in local_removed:
        os.unlink(paths[mid])
    for mid in local_trashed:
        set_local_flags(paths[mid], "T")
    new_local = []
    for k in range(3):
        data = (f"Message-ID: <local-{k}@example.com>\nFrom: {ALICE}\nTo: x@ext.test\nSubject: written locally {k}\n"
                f"Date: {email.utils.formatdate(1717500000 + k)}\n\nlocal body {k}\n").encode()
        (inbox / "new" / f"{1717500000 + k}.local{k}.e2e").write_bytes(data)
        new_local.append(f"<local-{k}@example.com>")
    lf_dir = root / "mail" / "LocalFolder"
    for sub in ("cur", "new", "tmp"):
        (lf_dir / sub).mkdir(parents=True)
    for k in range(2):
        (lf_dir / "cur" / f"{1717600000 + k}.lf{k}.e2e:2,S").write_bytes(
            f"Message-ID: <lf-{k}@example.com>\nFrom: {ALICE}\nSubject: local folder {k}\n\nin LocalFolder\n".encode())

    M = h.imap_login(srv.imap, ALICE, PW)
    M.select("INBOX")
    uid_of = {mid: server[mid][1] for mid in mids}

    def store(mids_, op, flags):
        typ, data = M.uid("STORE", ",".join(str(uid_of[m]) for m in mids_), op, flags)
        assert typ == "OK", f"UID STORE {op} {flags}: {typ} {data}"

    store(remote_seen, "+FLAGS.SILENT", "(\\Seen)")
    store(remote_flagged, "+FLAGS.SILENT", "(\\Flagged)")
    store(remote_answered, "+FLAGS.SILENT", "(\\Answered \\Seen)")
    store(remote_deleted, "+FLAGS.SILENT", "(\\Deleted)")
    typ, _ = M.expunge()
    assert typ == "OK"
    typ, data = M.create("ServerFolder")
    assert typ == "OK", f"CREATE ServerFolder: {typ} {data}"
    for k in range(2):
        typ, data = M.append("ServerFolder", "(\\Flagged)", None,
                             f"Message-ID: <sf-{k}@example.com>\r\nSubject: server folder {k}\r\n\r\nin ServerFolder\r\n".encode())
        assert typ == "OK", f"APPEND ServerFolder: {typ} {data}"
    M.logout()
    deliver_many(srv.smtp, [N + k for k in range(3)])
    ok("changed both sides: local S/F/FS renames, 10 files removed, 10 marked T, 3 new files, a new folder; "
       "remote \\Seen/\\Flagged/\\Answered on 25, 10 expunged, 3 new by SMTP, a new folder")

    out, took = run_mbsync(root, rc)
    server, (uidnext2, uidvalidity2) = server_state(srv.imap)
    local = local_state(inbox)
    assert uidvalidity2 == uidvalidity, "UIDVALIDITY of INBOX changed during the sync"
    want = N - 10 - 10 - 10 + 3 + 3
    assert len(server) == want, f"after the second sync the server has {len(server)} messages, wanted {want}"
    compare(server, local, "after the second sync")
    for mid in local_seen:
        assert "\\SEEN" in server[mid][0], f"{mid}: S set locally did not reach the server: {server[mid][0]}"
    for mid in local_flagged:
        assert "\\FLAGGED" in server[mid][0], f"{mid}: F set locally did not reach the server: {server[mid][0]}"
    for mid in local_both:
        assert {"\\SEEN", "\\FLAGGED"} <= server[mid][0], f"{mid}: FS set locally: server has {server[mid][0]}"
    for mid in local_removed + local_trashed + remote_deleted:
        assert mid not in server and mid not in local, f"{mid} was deleted on one side but survives"
    for mid in remote_seen:
        assert "\\SEEN" in local[mid][0], f"{mid}: \\Seen set on the server did not reach the Maildir"
    for mid in remote_flagged:
        assert "\\FLAGGED" in local[mid][0]
    for mid in remote_answered:
        assert {"\\ANSWERED", "\\SEEN"} <= local[mid][0]
    for mid in new_local:
        assert mid in server, f"{mid} written locally did not reach the server"
        assert server[mid][2].endswith(b"\n\nlocal body " + mid[7:8].encode() + b"\n"), f"{mid} on the server: {server[mid][2]!r}"
    for k in range(3):
        assert f"<mbsync-{N + k}@ext.test>" in local, f"message {N + k} delivered by SMTP did not reach the Maildir"
    names = mailbox_names(srv.imap)
    assert "LocalFolder" in names, f"the local folder was not created on the server: {sorted(names)}"
    lf_server, _ = server_state(srv.imap, "LocalFolder")
    assert set(lf_server) == {"<lf-0@example.com>", "<lf-1@example.com>"}, f"LocalFolder on the server: {sorted(lf_server)}"
    assert all("\\SEEN" in v[0] for v in lf_server.values()), "LocalFolder messages lost their S flag on the way up"
    sf_local = local_state(root / "mail" / "ServerFolder")
    assert set(sf_local) == {"<sf-0@example.com>", "<sf-1@example.com>"}, f"ServerFolder in the Maildir: {sorted(sf_local)}"
    assert all("\\FLAGGED" in v[0] for v in sf_local.values())
    for special in ("Sent", "Drafts", "Trash", "Junk", "Archive"):
        assert (root / "mail" / special / "cur").is_dir(), f"the special-use mailbox {special} was not created locally"
    ok(f"second sync ({took:.1f} s): {want} messages on each side, same bytes, same UIDs, same flags; deletions from "
       "both sides gone from both; new messages and folders from each side on the other")

    # A third sync must change nothing.
    before_local = snapshot_local(root / "mail")
    before_server = {name: server_state(srv.imap, name) for name in sorted(mailbox_names(srv.imap))}
    out, took = run_mbsync(root, rc, debug=True)
    sent = [line for line in out.splitlines() if line.startswith(">>>")]
    assert sent, f"mbsync -D n showed no client commands; output:\n{out[-2000:]}"
    writes = [line for line in sent if re.search(r"\b(APPEND|STORE|EXPUNGE|CREATE|DELETE|RENAME|COPY|MOVE)\b", line, re.I)]
    assert not writes, f"the third sync sent write commands although nothing changed: {writes[:10]}"
    after_local = snapshot_local(root / "mail")
    after_server = {name: server_state(srv.imap, name) for name in sorted(mailbox_names(srv.imap))}
    assert after_server == before_server, "the third sync changed something on the server (messages, flags, UIDNEXT)"
    assert after_local[0] == before_local[0], (
        f"the third sync renamed, added or removed Maildir files: "
        f"{sorted(set(before_local[0]) ^ set(after_local[0]))[:10]}")
    assert after_local[1] == before_local[1], "the third sync changed mbsync's sync state"
    ok(f"third sync ({took:.1f} s): exit 0, {len(sent)} commands and none that writes, server mailboxes (UIDs, flags, "
       "UIDNEXT) and Maildir file names and .mbsyncstate unchanged")
    t.check_store("after mbsync")
    assert srv.stop() == 0


if __name__ == "__main__":
    h.main(test, timeout=180)
