#!/usr/bin/env python3
"""Restore run as root gives the restored files the owner and modes the backup recorded.

The data directory is handed to uid 4242 (gid 4343) with mode 0750 and its database 0640, as
a service account's would be. A backup taken by root records that owner and those modes in
its manifest. `tegami restore` run by root into a new directory then gives every restored
directory and file that owner, the directories the data directory's mode and the files the
database's mode (never less than the owner's read and write), so the service can start on
it with no chown or chmod by hand; `--owner UID:GID` chooses another owner. A server on the
restored directory serves the mail. The secrets keep their own modes instead (newsletter.key
stays 0600), with the service's owner, which `--owner` changes too. Needs root.
"""

import os
import re
import sys
import tomllib

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import ok  # noqa: E402

UID, GID = 4242, 4343


def owners_and_modes(root):
    out = {}
    for p in [root, *root.rglob("*")]:
        st = p.lstat()
        out[str(p.relative_to(root)) or "."] = (st.st_uid, st.st_gid, st.st_mode & 0o7777, p.is_dir())
    return out


def test():
    assert os.geteuid() == 0, "this test restores owners, which only root can: run it as root"
    t = h.Tegami("owner")
    t.domain("example.com")
    t.account("alice@example.com", "alice-pw")
    srv = t.serve()
    for i in range(5):
        h.send(srv.smtp, "s@ext.test", ["alice@example.com"], f"Subject: {i}\r\n\r\nbody {i}\r\n".encode())
    srv.stop()
    for p in [t.data, *t.data.rglob("*")]:
        os.lchown(p, UID, GID)
    os.chmod(t.data, 0o750)
    os.chmod(t.data / "tegami.db", 0o640)

    root = t.root / "backups"
    r = t.cli("backup", "create", "--to", str(root))
    bid = re.search(r"^backup (\S+) taken", r.out, re.M).group(1)
    manifest = tomllib.loads((root / bid / "manifest.toml").read_text())
    assert (manifest["owner_uid"], manifest["owner_gid"]) == (UID, GID), manifest
    assert (manifest["dir_mode"], manifest["file_mode"]) == ("0750", "0640"), manifest
    assert root.stat().st_uid == UID, "a backup directory made by root for the service belongs to the service"
    ok(f"the manifest records owner {UID}:{GID}, directory mode 0750, file mode 0640")

    other = h.Tegami("owner-restored")
    r = other.cli("restore", str(root / bid), timeout=120)
    assert f"owner {UID}:{GID}" in r.out, r
    found = owners_and_modes(other.data)
    # log/ is the service's, not the backup's: the restore's own log line is written there,
    # and it must stay writable by the service.
    assert found["log/backup.log"][:2] == (UID, GID), found["log/backup.log"]
    found = {p: v for p, v in found.items() if not p.startswith("log")}
    # A secret keeps its own mode (newsletter.key is made 0600), with the service's owner.
    assert found.pop("newsletter.key") == (UID, GID, 0o600, False), "newsletter.key lost its mode or owner"
    wrong = {p: v for p, v in found.items() if v[:2] != (UID, GID) or v[2] != (0o750 if v[3] else 0o640)}
    assert not wrong, f"restored with other owners or modes: {list(wrong.items())[:5]}"
    assert len(found) > 10, found
    ok(f"restore as root: all {len(found)} restored directories and files are {UID}:{GID}, directories 0750, files 0640; "
       "newsletter.key keeps its 0600")

    srv = other.serve()
    assert len(h.pop3_fetch_all(srv.pop3, "alice@example.com", "alice-pw")) == 5
    srv.stop()
    ok("a server on the restored directory serves the mail")

    third = h.Tegami("owner-chosen")
    third.cli("restore", str(root / bid), "--owner", "5000:5001", timeout=120)
    owners = {v[:2] for v in owners_and_modes(third.data).values()}
    assert owners == {(5000, 5001)}, owners
    ok("--owner 5000:5001 gives the restored files that owner instead")


if __name__ == "__main__":
    h.main(test, timeout=300)
