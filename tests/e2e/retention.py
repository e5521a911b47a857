#!/usr/bin/env python3
"""Per-mailbox retention and automatic archiving from the config, on the real and a shifted clock.

The config keeps Trash 30 days and has one `[[archive.auto]]` rule: mail older than 365
days, at most every 30 days, label "auto". Mail is imported with `tegami import mbox`, its
internal dates taken from From_ lines computed from now: Trash 60 and 10 days old, Junk
(no rule) 60 days old, INBOX and Sent 730, 350 and 10 days old, for two accounts.

`retention run --dry-run` reports the 60-day-old Trash mail and deletes nothing;
`retention run` deletes exactly it, prints the count, and log/retention.log says so; a
second run removes nothing. `archive auto` archives exactly the 730-day-old mail into a new
archive labelled "auto..."; run again right away it does nothing (not due). With
TEGAMI_CLOCK_START 31 days ahead it is due again and archives the mail that is now older
than 365 days (the 350-day-old, now 381), only that; retention on that clock removes the
Trash mail that has become 41 days old. `check` and `archive check` pass, and IMAP shows
each account its own auto archives. What is in each mailbox is read with `tegami export
mbox`, so no server (and no scheduler of its) runs while the commands are checked.
"""

import datetime
import json
import mailbox
import os
import re
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import imap_common as ic  # noqa: E402
from harness import ok  # noqa: E402

ALICE, BOB = "alice@example.com", "bob@example.com"
PW = {ALICE: "alice-pw", BOB: "bob-pw"}
UTC = datetime.timezone.utc
CONFIG = """\
[retention]
Trash = 30

[[archive.auto]]
older_than_days = 365
every_days = 30
label = "auto"
"""
# (account, mailbox) -> {age in days: how many}
PLAN = {
    (ALICE, "Trash"): {60: 3, 10: 2},
    (BOB, "Trash"): {60: 2, 10: 2},
    (ALICE, "Junk"): {60: 2},
    (ALICE, "INBOX"): {730: 4, 350: 3, 10: 3},
    (ALICE, "Sent"): {730: 1, 10: 1},
    (BOB, "INBOX"): {730: 2, 10: 1},
}


def cli_env(t, *args, env=None, timeout=120, check=True):
    """t.cli with extra environment variables."""
    return t.cli(*args, env=env, timeout=timeout, check=check)


def json_out(r):
    try:
        return json.loads(r.out)
    except ValueError as e:
        raise AssertionError(f"stdout is not one JSON value ({e}): {r!r}")


def norm_mid(s):
    s = (s or "").strip()
    return s if s.startswith("<") else f"<{s}>"


class State:
    """What every mailbox holds, read with `tegami export mbox` (no server needed)."""

    def __init__(self, t):
        self.t = t
        self.n = 0

    def read(self):
        out = {}
        for account, box in PLAN:
            self.n += 1
            path = self.t.root / f"state-{self.n}.mbox"
            self.t.cli("export", "mbox", "--account", account, "--mailbox", box, str(path))
            mb = mailbox.mbox(str(path), create=False)
            out[(account, box)] = sorted(norm_mid(m["Message-ID"]) for m in mb)
            mb.close()
        return out


def test():
    os.environ["TZ"] = "UTC"  # days and midnights in UTC, whatever the machine's zone
    os.environ.pop("TEGAMI_CLOCK_START", None)
    t = h.Tegami("retention")
    t.write_config(CONFIG)
    t.domain("example.com")
    for a in PW:
        t.account(a, PW[a])

    now = datetime.datetime.now(UTC).replace(microsecond=0)
    mids = {}  # (account, box) -> {age: [mid]}
    for (account, box), ages in PLAN.items():
        lines = []
        for age, n in ages.items():
            for i in range(n):
                dt = now - datetime.timedelta(days=age, minutes=7 * i + 1)
                mid = f"<{account.split('@')[0]}-{box.lower()}-{age}d-{i}@retention.test>"
                mids.setdefault((account, box), {}).setdefault(age, []).append(mid)
                lines.append(
                    f"From old@ext.test {dt.strftime('%a %b %d %H:%M:%S %Y')}\n"
                    f"Return-Path: <old@ext.test>\nFrom: old@ext.test\nTo: {account}\n"
                    f"Subject: {box} {age} days {i}\nMessage-ID: {mid}\n\n{age} days old, number {i}\n\n"
                )
        path = t.root / f"{account}-{box}.mbox"
        path.write_text("".join(lines))
        total = sum(ages.values())
        r = t.cli("import", "mbox", str(path), "--account", account, "--mailbox", box)
        assert f"imported {total} messages" in r.out, r

    def want(drop_ages):
        """Every mailbox's expected Message-IDs, without the ages listed for each."""
        out = {}
        for key, ages in mids.items():
            out[key] = sorted(m for age, ms in ages.items() if age not in drop_ages.get(key, ()) for m in ms)
        return out

    state = State(t)
    initial = state.read()
    assert initial == want({}), f"after import: {initial}"
    ok("setup: Trash 60/10 days old, Junk 60, INBOX and Sent 730/350/10, for alice and bob, imported with From_ dates")

    # -- retention -----------------------------------------------------------------------
    old_trash = sum(PLAN[(a, "Trash")][60] for a in PW)
    r = t.cli("retention", "run", "--dry-run")
    assert re.search(rf"Trash\D*\b{old_trash}\b", r.out), f"retention run --dry-run does not report {old_trash} Trash messages: {r!r}"
    assert state.read() == initial, "retention run --dry-run deleted something"
    ok(f"retention run --dry-run reports {old_trash} Trash messages and deletes nothing")

    r = t.cli("retention", "run")
    m = re.search(r"^retention: Trash: (\d+) messages removed \(([^)]*)\)", r.out, re.M)
    assert m and int(m.group(1)) == old_trash, f"retention run: wanted 'retention: Trash: {old_trash} messages removed (...)': {r!r}"
    assert "Junk" not in r.out and "INBOX" not in r.out, f"retention run reports mailboxes without a rule: {r!r}"
    after_retention = want({(ALICE, "Trash"): [60], (BOB, "Trash"): [60]})
    got = state.read()
    assert got == after_retention, f"after retention run: {got}, wanted {after_retention}"
    log = (t.data / "log" / "retention.log").read_text()
    assert re.search(rf"Trash.*\b{old_trash}\b", log), f"log/retention.log has no line for the Trash rule: {log!r}"
    ok(f"retention run removes exactly the {old_trash} Trash messages older than 30 days ({m.group(2)}); Trash keeps "
       "the 10-day-old ones, Junk (no rule), INBOX and Sent are untouched; log/retention.log has the line")

    r = t.cli("retention", "run")
    m = re.search(r"^retention: Trash: (\d+) messages removed", r.out, re.M)
    assert m is None or m.group(1) == "0", f"a second retention run removes more: {r!r}"
    assert state.read() == after_retention, "a second retention run changed something"
    ok("a second retention run removes nothing")

    # -- archive auto ------------------------------------------------------------------------
    r = t.cli("archive", "auto")
    n_old = sum(ages.get(730, 0) for ages in PLAN.values())
    assert re.search(rf"^archive 1 created: {n_old} messages", r.out, re.M), f"archive auto: wanted 'archive 1 created: {n_old} messages': {r!r}"
    lst = json_out(t.cli("archive", "list", "--json"))
    assert len(lst) == 1, f"archive list after archive auto: {lst}"
    a1 = lst[0]
    assert a1["id"] == "1" and a1["label"].startswith("auto") and a1["messages"] == n_old, f"the auto archive: {a1}"
    assert sorted(a1["accounts"]) == [ALICE, BOB] and a1["state"] == "complete", f"the auto archive: {a1}"
    after_auto = want({**{k: [730] for k in mids}, (ALICE, "Trash"): [60], (BOB, "Trash"): [60]})
    got = state.read()
    assert got == after_auto, f"after archive auto: {got}, wanted {after_auto}"
    ok(f"archive auto archives exactly the {n_old} messages older than 365 days into archive 1 "
       f"(label {a1['label']!r}); the 350-day-old ones stay live")

    r = t.cli("archive", "auto")
    assert "created" not in r.out, f"archive auto right after: not due, but {r!r}"
    assert len(json_out(t.cli("archive", "list", "--json"))) == 1, "archive auto right after made an archive"
    assert state.read() == after_auto, "archive auto right after changed the live store"
    ok(f"archive auto run again right away does nothing (not due for 30 days): {r.out.strip()[:100]!r}")

    ahead = (datetime.datetime.now(UTC) + datetime.timedelta(days=31)).strftime("%Y-%m-%dT%H:%M:%S")
    clock = {"TEGAMI_CLOCK_START": ahead}
    n_350 = sum(ages.get(350, 0) for ages in PLAN.values())
    r = cli_env(t, "archive", "auto", env=clock)
    assert re.search(rf"^archive 2 created: {n_350} messages", r.out, re.M), (
        f"archive auto at {ahead} (31 days on): wanted 'archive 2 created: {n_350} messages' (the 350-day-old mail, "
        f"now 381 days old): {r!r}")
    lst = json_out(t.cli("archive", "list", "--json"))
    a2 = [x for x in lst if x["id"] == "2"]
    assert len(lst) == 2 and a2 and a2[0]["label"].startswith("auto") and a2[0]["accounts"] == [ALICE], f"archive list: {lst}"
    assert a2[0]["label"] != a1["label"], f"both auto archives are labelled {a1['label']!r}: their IMAP mailboxes would clash"
    after_auto2 = want({**{k: [730, 350] for k in mids}, (ALICE, "Trash"): [60], (BOB, "Trash"): [60]})
    got = state.read()
    assert got == after_auto2, f"after archive auto 31 days on: {got}, wanted {after_auto2}"
    ok(f"with TEGAMI_CLOCK_START 31 days ahead archive auto is due again and archives exactly the {n_350} messages "
       f"that have become older than 365 days (archive 2, {a2[0]['label']!r}, alice only)")

    r = cli_env(t, "retention", "run", env=clock)
    n_10 = sum(PLAN[(a, "Trash")][10] for a in PW)
    m = re.search(r"^retention: Trash: (\d+) messages removed", r.out, re.M)
    assert m and int(m.group(1)) == n_10, f"retention run 31 days on: wanted {n_10} Trash messages removed (now 41 days old): {r!r}"
    got = state.read()
    final = {**after_auto2, (ALICE, "Trash"): [], (BOB, "Trash"): []}
    assert got == final, f"after retention 31 days on: {got}, wanted {final}"
    ok(f"retention run on the shifted clock removes the {n_10} Trash messages that are now 41 days old, nothing else")

    # -- checks and the IMAP view --------------------------------------------------------------
    t.check_store("after retention and archive auto")
    r = t.cli("archive", "check", check=False, timeout=180)
    assert r.code == 0, f"archive check: {r!r}"
    srv = t.serve()
    for account, want_labels in ((ALICE, [a1["label"], a2[0]["label"]]), (BOB, [a1["label"]])):
        m = h.imap_login(srv.imap, account, PW[account])
        typ, data = m.list('""', '"*"')
        m.logout()
        assert typ == "OK", (typ, data)
        names = set()
        for resp in ic.join_imaplib(data):
            name = ic.parse_all(resp)[2]
            names.add(ic.mutf7_decode(name.decode() if isinstance(name, bytes) else str(name)))
        for label in want_labels:
            assert f"Archive/{label}/INBOX" in names, f"{account} does not see Archive/{label}/INBOX: {sorted(names)}"
        mine = [f"Archive/{label}" for label in want_labels]
        others = [n for n in names if n.startswith("Archive/")
                  and not any(n == p or n.startswith(p + "/") or p.startswith(n + "/") for p in mine)]
        assert not others, f"{account} sees archives that hold none of its mail: {others}"
    assert srv.stop() == 0
    ok("check and archive check pass; alice sees both auto archives over IMAP, bob only the one with his mail")


if __name__ == "__main__":
    h.main(test, timeout=180)
