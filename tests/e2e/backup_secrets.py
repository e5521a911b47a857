#!/usr/bin/env python3
"""A backup holds every secret: a restore into a new data directory signs with the same DKIM
key and honours the newsletter links sent before the backup (issue 15, item 7).

Setup: a private Postfix (tests/e2e/peers.py) for peer.test; `tegami domain dkim example.com
--selector sel` (the key then given to uid 4242:4243, so that its owner is something to
keep); a list with two confirmed subscribers; the config file mode 0600. A first campaign
goes out: each mail has a DKIM signature that dkimpy verifies with the published record, and
a List-Unsubscribe URL signed with DATA/newsletter.key.

Then `backup create`: the manifest lists dkim/example.com/sel.pem, newsletter.key and
config/tegami.toml with the SHA-256 of the live files, their modes (0600) and owners, and
the config file's origin; `backup verify` passes. A copy of the backup with newsletter.key
changed fails `backup verify` naming newsletter.key, and `restore` refuses it.

The backup is restored into a NEW data directory (another path, nothing there): the key,
newsletter.key and config/tegami.toml are there byte for byte, mode 0600, owners kept
(4242:4243 for the key), and restore says where the config file is and that it matches the
one in use. A server on the restored directory:
- takes the one-click unsubscribe POST of a link issued before the backup (2xx, the
  subscriber becomes "unsubscribed"), and refuses the same link with one character changed;
- sends a second campaign (only to the subscriber left) whose DKIM-Signature (d=example.com,
  s=sel) verifies with dkimpy against the ORIGINAL public key record.
"""

import hashlib
import os
import re
import shutil
import sys
import tomllib

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import newsletter_common as nl  # noqa: E402
import peers  # noqa: E402
from harness import ok  # noqa: E402

LIST = "news"
STAY, LEAVE = "stay@peer.test", "leave@peer.test"
KEY_OWNER = (4242, 4243)
TEXT = "Hello {{name}},\n\nnews of the day.\n\nUnsubscribe: {{unsubscribe_url}}\n"


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dkim_ok(messages, record, what):
    for m in messages:
        res = peers.dkim_verify(m.raw, {"sel._domainkey.example.com": record})
        assert res, f"{what}: {m.recipient}: no DKIM-Signature"
        assert res[0]["ok"], f"{what}: {m.recipient}: the DKIM signature does not verify: {res[0]}"
        tags = res[0]["tags"]
        assert tags.get("d") == "example.com" and tags.get("s") == "sel", tags


def mode_owner(path):
    st = path.stat()
    return st.st_mode & 0o7777, (st.st_uid, st.st_gid)


def test():
    t = h.Tegami("backup-secrets")
    peer = peers.PostfixPeer(domains=("peer.test",))
    peer.start()
    http_port = peers.free_port()
    t.write_config(nl.config(peer.port, http_port, queue={"retry_secs": [3600]}))
    os.chmod(t.config, 0o600)
    t.domain("example.com")
    r = t.cli("domain", "dkim", "example.com", "--selector", "sel")
    record = peers.dkim_record_from(r.out, "sel", "example.com")
    key = t.data / "dkim" / "example.com" / "sel.pem"
    os.chown(key, *KEY_OWNER)
    t.cli("list", "add", LIST, "--from", "news@example.com", "--from-name", "Example News")
    for who in (STAY, LEAVE):
        t.cli("subscriber", "add", LIST, who, "--name", who.split("@")[0], "--confirmed")

    srv = nl.serve(t, http_port, pop3=False, imap=False)
    nl.campaign_create(t, LIST, "before the backup", TEXT)
    peer.wait_count(2, timeout=60, what="mails of the first campaign")
    first = {m.recipient: m for m in peer.messages()}
    assert set(first) == {STAY, LEAVE}, sorted(first)
    dkim_ok(first.values(), record, "first campaign")
    leave_url = nl.unsubscribe_url(first[LEAVE])
    assert srv.stop() == 0
    newsletter_key = t.data / "newsletter.key"
    assert newsletter_key.is_file(), "the server made no newsletter.key"
    ok(f"first campaign: 2 mails signed d=example.com s=sel (dkimpy verifies), unsubscribe link {leave_url}")

    # --- the backup -----------------------------------------------------------------------
    root = t.root / "backups"
    r = t.cli("backup", "create", "--to", str(root))
    bid = re.search(r"^backup (\S+) taken", r.out, re.M).group(1)
    assert "secrets: 2 files" in r.out and f"config file {t.config}" in r.out, r
    manifest = tomllib.loads((root / bid / "manifest.toml").read_text())
    entries = {e["path"]: e for e in manifest["secret"].values()}
    assert manifest["secrets"] == len(entries), manifest
    for rel, live in (("dkim/example.com/sel.pem", key), ("newsletter.key", newsletter_key),
                      ("config/tegami.toml", t.config)):
        e = entries.get(rel)
        assert e, f"{rel} is not in the manifest: {sorted(entries)}"
        mode, (uid, gid) = mode_owner(live)
        assert e["sha256"] == sha(live) and e["bytes"] == live.stat().st_size, (rel, e)
        assert (e["mode"], e["uid"], e["gid"]) == (f"{mode:04o}", uid, gid), (rel, e)
        assert e["mode"] == "0600", (rel, e)
        assert f"{e['sha256']}  {rel}" in (root / bid / "SHA256SUMS").read_text(), rel
    assert (entries["dkim/example.com/sel.pem"]["uid"], entries["dkim/example.com/sel.pem"]["gid"]) == KEY_OWNER
    assert entries["config/tegami.toml"]["origin"] == str(t.config), entries["config/tegami.toml"]
    assert "dkim" in entries and "sha256" not in entries["dkim"], "the dkim directory is not listed"
    t.cli("backup", "verify", bid, "--dir", str(root))
    ok("manifest lists dkim/example.com/sel.pem (4242:4243), newsletter.key and config/tegami.toml "
       "(origin recorded) with their SHA-256, mode 0600 and owner; backup verify passes")

    bad = root / "changed-key"
    shutil.copytree(root / bid, bad)
    os.chmod(bad / "newsletter.key", 0o600)
    (bad / "newsletter.key").write_bytes(b"\x00" * 32)
    r = t.cli("backup", "verify", str(bad), check=False)
    assert r.code != 0 and "newsletter.key" in r.out and "newsletter.key" in r.err, r
    other = h.Tegami("backup-secrets-refused")
    r = other.cli("restore", str(bad), check=False)
    assert r.code != 0 and "newsletter.key" in r.err and "nothing was changed" in r.err, r
    left = sorted(str(p.relative_to(other.data)) for p in other.data.rglob("*")) if other.data.exists() else []
    assert all(p == "log" or p.startswith("log/") for p in left), f"a refused restore left {left}"
    ok("a backup whose newsletter.key changed: verify names it, restore refuses and restores nothing "
       "(only its refusal is logged)")

    # --- restore into a new data directory ----------------------------------------------------
    new = h.Tegami("backup-secrets-restored")
    new.config = t.config
    assert not new.data.exists()
    r = new.cli("restore", str(root / bid), timeout=120)
    assert "secrets: 2 files restored" in r.out, r
    assert str(new.data / "config" / "tegami.toml") in r.out and "the same" in r.out, r
    for rel, live in (("dkim/example.com/sel.pem", key), ("newsletter.key", newsletter_key),
                      ("config/tegami.toml", t.config)):
        got = new.data / rel
        assert got.read_bytes() == live.read_bytes(), f"{rel} differs after the restore"
        assert mode_owner(got) == mode_owner(live), f"{rel}: {mode_owner(got)} restored, {mode_owner(live)} backed up"
        assert got.stat().st_nlink == 1, f"{rel} shares its inode with the backup"
    assert mode_owner(new.data / "dkim/example.com/sel.pem") == (0o600, KEY_OWNER)
    ok(f"restored into {new.data}: key, newsletter.key and config/tegami.toml byte-equal, mode 0600, "
       "owners kept (the key 4242:4243); restore says the config file matches the one in use")

    srv = nl.serve(new, http_port, pop3=False, imap=False)
    forged = leave_url[:-3] + ("A" if leave_url[-3] != "A" else "B") + leave_url[-2:]
    refused, _, _ = nl.one_click(forged)
    assert refused >= 400, f"a forged unsubscribe link answered {refused}"
    assert nl.status_of(new, LIST, LEAVE) == "active"
    status, _, body = nl.one_click(leave_url)
    assert 200 <= status < 300, f"the unsubscribe link issued before the backup answered {status}: {body[:200]!r}"
    assert nl.status_of(new, LIST, LEAVE) == "unsubscribed", nl.subscribers(new, LIST)[LEAVE]
    ok(f"the restored server honours the unsubscribe link sent before the backup ({status}); "
       f"the link with one character changed gets {refused}")

    nl.campaign_create(new, LIST, "after the restore", TEXT)
    peer.wait_count(3, timeout=60, what="mails of the second campaign")
    nl.settled_count(peer, quiet=1.0)
    second = [m for m in peer.messages() if m.msg["Subject"] == "after the restore"]
    assert [m.recipient for m in second] == [STAY], [m.recipient for m in second]
    dkim_ok(second, record, "after the restore")
    assert srv.stop() == 0
    peer.stop()
    ok("the restored server signs the next campaign with the same key: dkimpy verifies it against the "
       "original public key (d=example.com s=sel); the unsubscribed address got nothing")


if __name__ == "__main__":
    h.main(test, timeout=180)
