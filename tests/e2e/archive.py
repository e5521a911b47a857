#!/usr/bin/env python3
"""`tegami archive`: old mail moved online into a read-only, searchable archive; kill -9; full disk.

Two accounts get a few hundred messages of 2020 and 2021 imported with `tegami import mbox`
into INBOX and Sent (Japanese subjects and bodies in UTF-8 with RFC 2047 / base64, some
attachments, Status/X-Status flags, IMAP keywords added afterwards). What IMAP serves is
recorded; then `archive create --before 2021-01-01 --label 2020` runs (TEGAMI_ARCHIVE_BATCH=10)
while clients deliver over SMTP, read over IMAP, and alice's own client keeps adding keywords
to her old INBOX mail and expunges some of it. Afterwards live + archive = before + new -
expunged, with no duplicate and nothing lost; every archived message is byte-identical to
what IMAP served before, with its UID, internal date and the flags its owner last set.
`archive list`, the IMAP view (LIST, SELECT [READ-ONLY], SEARCH incl. Japanese,
STORE/EXPUNGE/MOVE [READ-ONLY], APPEND/CREATE/DELETE/RENAME/COPY-into [CANNOT], COPY out
byte-identical, bob sees only his own archived mail), `archive search` (full text, Japanese,
--from, --subject, --since/--until with their bounds, --account, --limit), `archive export
--csv` and `--mbox` (re-imported into a fresh account: same bytes), `check` and `archive
check` (a flipped byte in an archive blob is found and named), a second run that finds
nothing, a dry run that changes nothing, and an archive of one account only, invisible to
the other.

The crash part: with TEGAMI_ARCHIVE_BATCH=20 and the server running, `archive create` is
SIGKILLed at points chosen from a measured full run (half while the archive is built, half
after archive/<id> appears, i.e. during the move), then rerun to completion (it must say
`resumed archive N` exactly when `archive list` shows one unfinished); after every round the
set of (account, Message-ID, sha-256) over live and all archives is exactly the set
imported, and `check` / `archive check` pass. ARCHIVE_SEED replays a run, ARCHIVE_ROUNDS
changes the number of kill rounds (default 10: 3 in the build, 3 in the move, 4 in the finish step).

The disk part (root: a 24 MiB tmpfs): with the volume filled, `archive create` exits 1 with
the one stderr line `tegami: archive needs ... free; ...` and changes nothing; given what it
asked for plus 10 % it succeeds.
"""

import base64
import collections
import csv
import datetime
import email.utils
import json
import mailbox
import os
import random
import re
import signal
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

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"
PW = {ALICE: "alice-pw", BOB: "bob-pw", CAROL: "carol-pw"}
UTC = datetime.timezone.utc
CUT = datetime.datetime(2021, 1, 1, tzinfo=UTC)

WORD = "zebraquartz"  # in some bodies only
JA_WORD = "議事録"  # in some bodies only (8bit and base64)
JA_SUBJECT = "月次報告"  # in some subjects only (RFC 2047)
SENDERS = [
    ("Tanaka Taro", "tanaka@ext.test"),
    ("佐藤 花子", "sato@ext.test"),
    ("Bob Smith", "smith@ext.test"),
    ("News", "news@lists.test"),
]
# (account, mailbox) -> (messages in 2020, messages in 2021)
PLAN = {
    (ALICE, "INBOX"): (70, 30),
    (ALICE, "Sent"): (30, 15),
    (BOB, "INBOX"): (40, 20),
    (BOB, "Sent"): (15, 10),
}
SEED = int(os.environ.get("ARCHIVE_SEED", str(random.randrange(1 << 30))))
ROUNDS = min(47, int(os.environ.get("ARCHIVE_ROUNDS", "10")))


# ---------------------------------------------------------------------------
# Small helpers of this script


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


def mid_of(data):
    head = data.split(b"\r\n\r\n", 1)[0]
    m = re.search(rb"^Message-ID:[ \t]*(<[^>\r\n]+>)", head, re.I | re.M)
    assert m, f"no Message-ID in {data[:300]!r}"
    return m.group(1).decode()


def enc_word(text):
    return "=?UTF-8?B?" + base64.b64encode(text.encode()).decode() + "?="


def b64_lines(data):
    s = base64.b64encode(data).decode()
    return "\n".join(s[i:i + 76] for i in range(0, len(s), 76))


def from_line(addr, dt):
    return f"From {addr} {dt.strftime('%a %b %d %H:%M:%S %Y')}\n"


def crlf(text):
    return text.replace("\n", "\r\n").encode()


def day(dt):
    return dt.strftime("%Y-%m-%d")


class Msg:
    """One generated message and what it should look like once stored."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    @property
    def key(self):
        return (self.account, self.mid)


def make_message(rnd, account, box, year, i, dt):
    short = account.split("@")[0]
    tag = f"{short}-{box.lower()}-{year}-{i:03d}"
    mid = f"<{tag}@import.test>"
    name, addr = SENDERS[i % len(SENDERS)]
    if box == "Sent":
        from_hdr, to_hdr, from_addr = f"{short} <{account}>", f"{name} <{addr}>" if name.isascii() else addr, account
    else:
        from_hdr = f"{name} <{addr}>" if name.isascii() else f"{enc_word(name)} <{addr}>"
        to_hdr, from_addr = account, addr
    if i % 3 == 0:
        subject, subject_hdr = f"Invoice {tag}", f"Invoice {tag}"
    elif i % 3 == 1:
        subject = f"{JA_SUBJECT} {tag}"
        subject_hdr = enc_word(subject)
    else:
        subject, subject_hdr = f"Meeting notes {tag}", f"Meeting notes {tag}"
    words = set()
    text = [f"Hello, this is message {tag}.", "よろしくお願いします。"]
    if i % 7 == 0:
        text.append(f"The code word is {WORD} today.")
        words.add(WORD)
    if i % 5 == 0:
        text.append(f"本日の{JA_WORD}を送ります。")
        words.add(JA_WORD)
    text += [f"line {k:03d} {'x' * rnd.randint(10, 70)}" for k in range(rnd.choice([1, 5, 20, 80, 200]))]
    text = "\n".join(text)
    status = []
    flags = set()
    if i % 3 == 0 or i % 4 == 1:
        status.append("Status: RO")
        flags.add("\\Seen")
    if i % 4 == 1:
        status.append("X-Status: AF")
        flags |= {"\\Answered", "\\Flagged"}
    head = [
        f"Return-Path: <{from_addr}>",
        f"From: {from_hdr}",
        f"To: {to_hdr}",
        f"Subject: {subject_hdr}",
        f"Date: {email.utils.format_datetime(dt)}",
        f"Message-ID: {mid}",
        "MIME-Version: 1.0",
    ]
    kind = i % 4
    if kind in (0, 1):
        head += ["Content-Type: text/plain; charset=UTF-8", "Content-Transfer-Encoding: 8bit"]
        body = text + "\n"
    elif kind == 2:
        head += ["Content-Type: text/plain; charset=UTF-8", "Content-Transfer-Encoding: base64"]
        body = b64_lines(text.encode()) + "\n"
    else:
        b = f"b-{tag}"
        head += [f'Content-Type: multipart/mixed; boundary="{b}"']
        attachment = rnd.randbytes(rnd.choice([700, 4_000, 30_000]))
        body = (
            "This is a multi-part message in MIME format.\n\n"
            f"--{b}\nContent-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\n\n{text}\n"
            f'--{b}\nContent-Type: application/octet-stream; name="data-{i}.bin"\n'
            f'Content-Disposition: attachment; filename="data-{i}.bin"\nContent-Transfer-Encoding: base64\n\n'
            f"{b64_lines(attachment)}\n--{b}--\n"
        )
    msg = "\n".join(head + status) + "\n\n" + body
    return Msg(account=account, box=box, mid=mid, date=dt, text=msg, wire=crlf(msg), flags=flags,
               words=words, subject=subject, from_addr=from_addr, keywords=set())


def generate(rnd):
    msgs = []
    for (account, box), counts in PLAN.items():
        for year, n in zip((2020, 2021), counts):
            start = datetime.datetime(year, 1, 1, 0, 10, tzinfo=UTC)
            span = int((datetime.datetime(year, 12, 31, 23, 0, tzinfo=UTC) - start).total_seconds())
            dates = sorted(start + datetime.timedelta(seconds=rnd.randrange(span)) for _ in range(n))
            if (account, box) == (ALICE, "INBOX"):
                if year == 2020:  # the last second of the period: archived
                    dates[-1] = datetime.datetime(2020, 12, 31, 23, 59, 50, tzinfo=UTC)
                else:  # the first minute after it: live; and a few more in January 2021
                    dates[:4] = [datetime.datetime(2021, 1, 1, 0, 0, 30, tzinfo=UTC)] + [
                        datetime.datetime(2021, 1, d, 9, 30, tzinfo=UTC) for d in (5, 12, 20)]
            for i, dt in enumerate(dates):
                msgs.append(make_message(rnd, account, box, year, i, dt))
    return msgs


def write_mbox(path, msgs):
    with open(path, "wb") as f:
        for m in msgs:
            f.write((from_line(m.from_addr, m.date) + m.text + "\n").encode())


# ---------------------------------------------------------------------------
# IMAP


def list_boxes(m):
    """[(name, {lower-case attributes})] from LIST "" "*"."""
    typ, data = m.list('""', '"*"')
    assert typ == "OK", f"LIST: {typ} {data}"
    out = []
    for resp in ic.join_imaplib(data):
        vals = ic.parse_all(resp)
        name = vals[2].decode() if isinstance(vals[2], bytes) else str(vals[2])
        out.append((ic.mutf7_decode(name), {str(a).lower() for a in vals[0]}))
    return out


def fetch_box(m, box):
    """{uid: (bytes, flags without \\Recent, internal date)} of one mailbox, read-only."""
    typ, data = m.select(ic.quote(box), readonly=True)
    assert typ == "OK", f"EXAMINE {box}: {typ} {data}"
    if int(data[0]) == 0:
        return {}
    typ, data = m.uid("FETCH", "1:*", "(UID FLAGS INTERNALDATE BODY.PEEK[])")
    assert typ == "OK", f"UID FETCH in {box}: {typ} {data}"
    out = {}
    for _, items in ic.imaplib_fetch(data).items():
        out[int(items["UID"])] = (bytes(items["BODY[]"]), ic.flags_of(items) - {"\\Recent"},
                                  ic.internaldate(items["INTERNALDATE"]))
    return out


def snapshot(port, accounts):
    """Every message of every selectable mailbox: [(account, box, uid, mid, bytes, flags, idate)]."""
    rows = []
    for account in accounts:
        m = h.imap_login(port, account, PW[account], timeout=60)
        try:
            for box, attrs in list_boxes(m):
                if "\\noselect" in attrs or "\\nonexistent" in attrs:
                    continue
                for uid, (data, flags, idate) in fetch_box(m, box).items():
                    rows.append((account, box, uid, mid_of(data), data, flags, idate))
        finally:
            m.logout()
    return rows


def raw_login(port, user):
    r = ic.RawImap(port)
    r.login(user, PW[user])
    return r


def search_uids(untagged):
    return sorted(ic.search_result([u for u in untagged if u.upper().startswith(b"* SEARCH")]))


# ---------------------------------------------------------------------------
# Clients during the archive


class Traffic:
    def __init__(self):
        self.lock = threading.Lock()
        self.acked = []  # (account, mid, at)
        self.reads = []  # monotonic times of completed read cycles
        self.stored = {}  # mid -> [(flag, at)]: STOREs the server confirmed with a FETCH response
        self.expunge_sent = set()  # mids whose UID EXPUNGE got OK
        self.errors = []


def deliverer(port, n, traffic, stop):
    seq = 0
    while not stop.is_set():
        try:
            s = h.smtp_client(port)
        except OSError as e:
            traffic.errors.append(f"smtp {n}: connect: {e}")
            time.sleep(0.1)
            continue
        try:
            while not stop.is_set():
                account = (ALICE, BOB)[seq % 2]
                mid = f"<live-{n}-{seq}@client.test>"
                msg = (f"From: Client <c{n}@client.test>\r\nTo: {account}\r\nSubject: live {n}-{seq}\r\n"
                       f"Date: {email.utils.format_datetime(datetime.datetime.now(UTC))}\r\nMessage-ID: {mid}\r\n"
                       f"\r\nnew mail {n}-{seq} arriving while the archive runs\r\n").encode()
                refused = s.sendmail(f"c{n}@client.test", [account], msg)
                assert not refused, refused
                with traffic.lock:
                    traffic.acked.append((account, mid, time.monotonic()))
                seq += 1
                time.sleep(0.01)
        except (smtplib.SMTPException, OSError, AssertionError) as e:
            traffic.errors.append(f"smtp {n}: {type(e).__name__}: {e}")
        finally:
            s.close()


def reader(port, account, traffic, stop):
    rnd = random.Random(account)
    while not stop.is_set():
        try:
            m = h.imap_login(port, account, PW[account])
            try:
                while not stop.is_set():
                    typ, data = m.select("INBOX")
                    assert typ == "OK", f"SELECT INBOX: {typ} {data}"
                    typ, data = m.uid("FETCH", "1:*", "(UID FLAGS RFC822.SIZE)")
                    assert typ == "OK", f"UID FETCH 1:* (FLAGS): {typ} {data}"
                    uids = [int(x["UID"]) for x in ic.imaplib_fetch(data).values()]
                    if uids:
                        typ, data = m.uid("FETCH", str(rnd.choice(uids)), "(BODY.PEEK[])")
                        assert typ == "OK", f"UID FETCH BODY.PEEK[]: {typ} {data}"
                    typ, data = m.noop()
                    assert typ == "OK", f"NOOP: {typ} {data}"
                    with traffic.lock:
                        traffic.reads.append(time.monotonic())
            finally:
                try:
                    m.logout()
                except Exception:  # noqa: BLE001
                    pass
        except Exception as e:  # noqa: BLE001 - every client error is reported
            traffic.errors.append(f"imap {account}: {type(e).__name__}: {e}")
            time.sleep(0.1)


def writer(port, targets, doomed, traffic, go, stop):
    """Alice's own client changing her old INBOX mail while the archive runs, by UID, until
    stopped: pass n adds keyword $Pn to every message; in the first pass the `doomed` ones get
    \\Deleted and UID EXPUNGE instead. Records each STORE the server confirmed with a FETCH."""
    try:
        r = raw_login(port, ALICE)
        try:
            r.ok("SELECT INBOX")
            go.wait(30)
            n = 0
            while not stop.is_set():
                n += 1
                for uid, mid in targets:
                    if stop.is_set():
                        break
                    if mid in doomed and n > 1:
                        continue
                    flag = "\\Deleted" if mid in doomed else f"$P{n}"
                    status, text, untagged = r.cmd(f"UID STORE {uid} +FLAGS ({flag})")
                    assert status == "OK", f"UID STORE {uid} +FLAGS ({flag}): {status} {text!r}"
                    at = time.monotonic()
                    for items in ic.fetch_raw(untagged).values():
                        if int(items.get("UID", 0)) == uid and flag in ic.flags_of(items):
                            with traffic.lock:
                                traffic.stored.setdefault(mid, []).append((flag, at))
                    if mid in doomed:
                        status, text, _ = r.cmd(f"UID EXPUNGE {uid}")
                        assert status == "OK", f"UID EXPUNGE {uid}: {status} {text!r}"
                        with traffic.lock:
                            traffic.expunge_sent.add(mid)
        finally:
            r.close()
    except Exception as e:  # noqa: BLE001
        traffic.errors.append(f"imap writer: {type(e).__name__}: {e}")


# ---------------------------------------------------------------------------
# The main scenario


def test():
    os.environ["TZ"] = "UTC"  # "before YYYY-MM-DD" is local midnight: make local = UTC
    h.note(f"ARCHIVE_SEED={SEED}")
    rnd = random.Random(SEED)
    t = h.Tegami("archive")
    t.domain("example.com")
    for a in PW:
        t.account(a, PW[a])

    # -- 1. setup -------------------------------------------------------------------------
    msgs = generate(rnd)
    by_key = {m.key: m for m in msgs}
    assert len(by_key) == len(msgs)
    for (account, box) in PLAN:
        path = t.root / f"{account.split('@')[0]}-{box}.mbox"
        group = sorted((m for m in msgs if (m.account, m.box) == (account, box)), key=lambda m: m.date)
        write_mbox(path, group)
        r = t.cli("import", "mbox", str(path), "--account", account, "--mailbox", box)
        assert f"imported {len(group)} messages" in r.out and "skipped 0" in r.out, r
    srv = t.serve()

    # Keywords (mbox import has none): some 2020 messages of alice's get $Important / $Work.
    m = h.imap_login(srv.imap, ALICE, PW[ALICE])
    for box in ("INBOX", "Sent"):
        typ, data = m.select(box)
        assert typ == "OK", (typ, data)
        typ, data = m.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER])")
        assert typ == "OK", (typ, data)
        for items in ic.imaplib_fetch(data).values():
            msg = by_key[(ALICE, mid_of(bytes(items["BODY[HEADER]"])))]
            n = int(msg.mid.split("-")[3].split("@")[0])
            if msg.date < CUT and n % 6 == 0:
                kw = "$Important" if box == "INBOX" else "$Work"
                typ, d = m.uid("STORE", str(items["UID"]), "+FLAGS.SILENT", f"({kw})")
                assert typ == "OK", f"UID STORE +FLAGS ({kw}): {typ} {d}"
                msg.keywords.add(kw)
    m.logout()

    before = snapshot(srv.imap, [ALICE, BOB, CAROL])
    seen = {}
    for account, box, uid, mid, data, flags, idate in before:
        msg = by_key.get((account, mid))
        assert msg and msg.box == box, f"unexpected message {account} {box} {mid}"
        assert (account, mid) not in seen, f"{account} {mid} twice after import"
        assert data == msg.wire, f"{account} {box} {mid}: IMAP serves {data[:200]!r}..., imported {msg.wire[:200]!r}..."
        assert flags == msg.flags | msg.keywords, f"{account} {box} {mid}: flags {flags}, wanted {msg.flags | msg.keywords}"
        assert idate == msg.date, f"{account} {box} {mid}: INTERNALDATE {idate}, From_ line said {msg.date}"
        seen[(account, mid)] = (box, uid, data, flags, idate)
        msg.uid = uid
    assert len(seen) == len(msgs), f"{len(seen)} messages in IMAP, {len(msgs)} imported"
    old = [m for m in msgs if m.date < CUT]
    young = [m for m in msgs if m.date >= CUT]
    with_attachment = sum(1 for m in msgs if "multipart/mixed" in m.text)
    ok(f"setup: {len(msgs)} messages imported from mbox into INBOX and Sent of alice and bob "
       f"({len(old)} of 2020, {len(young)} of 2021, {with_attachment} with attachments, Japanese subjects and "
       "bodies); IMAP serves them byte for byte with their flags, keywords and From_ dates")

    # -- 2. online archive while clients deliver and read ------------------------------------
    traffic = Traffic()
    stop = threading.Event()
    threads = [threading.Thread(target=deliverer, args=(srv.smtp, n, traffic, stop), daemon=True) for n in range(2)]
    threads += [threading.Thread(target=reader, args=(srv.imap, a, traffic, stop), daemon=True) for a in (ALICE, BOB)]
    inbox_old = sorted((m for m in old if m.account == ALICE and m.box == "INBOX"), key=lambda m: m.date)
    targets = [(m.uid, m.mid) for m in inbox_old]
    rnd.shuffle(targets)
    # Every 9th is deleted by its owner; not the first or last (they set the archive's period).
    doomed = {m.mid for m in inbox_old[1:-1:9]}
    go = threading.Event()
    threads.append(threading.Thread(target=writer, args=(srv.imap, targets, doomed, traffic, go, stop), daemon=True))
    for th in threads:
        th.start()
    time.sleep(1.0)
    began = time.monotonic()
    go.set()
    # Small batches: the move takes many transactions, interleaved with the clients'.
    r = cli_env(t, "archive", "create", "--before", "2021-01-01", "--label", "2020", "--json",
                env={"TEGAMI_ARCHIVE_BATCH": "10"}, timeout=120)
    ended = time.monotonic()
    time.sleep(1.0)
    stop.set()
    for th in threads:
        th.join(timeout=60)
        assert not th.is_alive(), "a client thread did not stop"
    assert not traffic.errors, f"clients saw errors while the archive ran: {traffic.errors[:5]}"
    after = snapshot(srv.imap, [ALICE, BOB, CAROL])
    present = {(a, mid) for a, _, _, mid, _, _, _ in after}
    gone = {m.mid for m in old if m.key not in present}
    assert gone <= traffic.expunge_sent, (
        f"{len(gone - traffic.expunge_sent)} old messages are neither live nor archived and their owner did not "
        f"expunge them: {sorted(gone - traffic.expunge_sent)[:5]}")
    stores_during = sum(1 for v in traffic.stored.values() for _, at in v if began <= at <= ended)
    stores = sum(len(v) for v in traffic.stored.values())
    # What the owner did becomes what the archive must hold: deleted ones gone, flags added.
    for m in inbox_old:
        for flag, _ in traffic.stored.get(m.mid, []) if m.mid not in gone else []:
            (m.flags if flag.startswith("\\") else m.keywords).add(flag)
    msgs = [m for m in msgs if not (m.account == ALICE and m.mid in gone)]
    old = [m for m in msgs if m.date < CUT]
    created = json_out(r)
    assert isinstance(created, dict) and created.get("id") == "1", f'archive create --json: wanted "id": "1": {r!r}'
    assert created.get("messages") == len(old), f"archive create says {created.get('messages')} messages, {len(old)} are of 2020: {r!r}"
    assert created.get("resumed") == [], f"nothing to resume, but: {r!r}"
    acked_during = [a for a in traffic.acked if began <= a[2] <= ended]
    reads_during = [x for x in traffic.reads if began <= x <= ended]
    if ended - began > 1.0:
        assert acked_during and reads_during, (
            f"the archive took {ended - began:.1f} s but clients got {len(acked_during)} deliveries and "
            f"{len(reads_during)} IMAP reads done meanwhile: locked out?")

    count = collections.Counter((a, mid) for a, _, _, mid, _, _, _ in after)
    dups = [k for k, n in count.items() if n > 1]
    assert not dups, f"{len(dups)} messages are there more than once after the archive, e.g. {dups[:3]}"
    where = {(a, mid): (box, uid, data, flags, idate) for a, box, uid, mid, data, flags, idate in after}
    new = {(a, mid) for a, mid, _ in traffic.acked}
    want = (set(seen) - {(ALICE, mid) for mid in gone}) | new
    missing = want - set(where)
    extra = set(where) - want
    assert not missing, f"{len(missing)} messages lost: {sorted(missing)[:5]}"
    assert not extra, f"{len(extra)} messages nobody imported or sent: {sorted(extra)[:5]}"
    for k in new:
        assert where[k][0] == "INBOX", f"new message {k} is in {where[k][0]}, wanted live INBOX"
    for msg in msgs:
        box, uid, data, flags, idate = where[msg.key]
        want_box = f"Archive/2020/{msg.box}" if msg.date < CUT else msg.box
        assert box == want_box, f"{msg.account} {msg.mid} of {msg.date} is in {box}, wanted {want_box}"
        b_box, b_uid, b_data, b_flags, b_idate = seen[msg.key]
        assert data == b_data, f"{msg.account} {msg.mid} in {box}: bytes differ from what IMAP served before ({len(data)} vs {len(b_data)})"
        assert uid == b_uid, f"{msg.account} {msg.mid} in {box}: UID {uid}, it was {b_uid}"
        assert flags == msg.flags | msg.keywords, (
            f"{msg.account} {msg.mid} in {box}: flags {sorted(flags)}, wanted {sorted(msg.flags | msg.keywords)} "
            f"(its owner's confirmed STORE: {traffic.stored.get(msg.mid)})")
    ok(f"archive create ran {ended - began:.1f} s while 2 SMTP clients delivered ({len(acked_during)} acknowledged "
       f"meanwhile, {len(new)} in all), 2 IMAP clients read ({len(reads_during)} read cycles meanwhile) and alice's "
       f"client changed flags of her old mail ({stores} STOREs confirmed, {stores_during} while it ran) "
       f"and expunged {len(gone)} of it; no client error")
    ok(f"live + archive = before + new - expunged: {len(old)} messages of 2020 in Archive/2020/*, {len(young)} of "
       f"2021 and all {len(new)} new ones live, no duplicate, every archived message byte-identical with its UID, "
       "and with the flags its owner last set (none lost to the move)")

    # -- 3. archive list ---------------------------------------------------------------------
    r = t.cli("archive", "list", "--json")
    lst = json_out(r)
    assert isinstance(lst, list) and len(lst) == 1, f"archive list --json: wanted one archive: {r!r}"
    a = lst[0]
    sizes = sum(len(m.wire) for m in old)
    assert a.get("id") == "1" and a.get("label") == "2020", f"id/label: {a}"
    assert sorted(a.get("accounts", [])) == [ALICE, BOB], f"accounts {a.get('accounts')}, wanted alice and bob"
    assert a.get("first") == day(min(m.date for m in old)) and a.get("last") == day(max(m.date for m in old)), (
        f"period {a.get('first')} .. {a.get('last')}, wanted {day(min(m.date for m in old))} .. {day(max(m.date for m in old))}")
    assert a.get("messages") == len(old), f"messages {a.get('messages')}, wanted {len(old)}"
    assert a.get("bytes") == sizes == created.get("bytes"), (
        f"bytes: list says {a.get('bytes')}, create said {created.get('bytes')}, the archived messages hold {sizes}")
    assert a.get("state") == "complete", f"state {a.get('state')}"
    assert os.path.realpath(a.get("dir", "")) == os.path.realpath(t.data / "archive" / "1"), f"dir {a.get('dir')}"
    created_at = datetime.datetime.fromisoformat(a["created"].replace("Z", "+00:00"))
    assert abs((datetime.datetime.now(UTC) - created_at).total_seconds()) < 600, f"created {a['created']}"
    r = t.cli("archive", "list")
    assert r.out.splitlines()[0].split() == ["ID", "LABEL", "ACCOUNTS", "PERIOD", "MESSAGES", "SIZE", "STATE", "DIRECTORY"], r
    assert re.search(rf"^1\s+2020\s.*\b{len(old)}\b.*\bcomplete\b", r.out, re.M), r
    assert "archive" in (t.data / "log" / "archive.log").read_text()
    assert (t.data / "log" / "archive_result.log").read_text().strip(), "log/archive_result.log is empty"
    ok(f"archive list: one archive, id 1, label 2020, alice and bob, {a['first']} .. {a['last']}, {len(old)} messages, "
       f"{sizes} bytes, complete; log/archive.log and log/archive_result.log written")

    # -- 4. the IMAP view ---------------------------------------------------------------------
    alice_old = {box: sorted((m for m in old if m.account == ALICE and m.box == box), key=lambda m: m.uid)
                 for box in ("INBOX", "Sent")}
    m = h.imap_login(srv.imap, ALICE, PW[ALICE])
    boxes = dict(list_boxes(m))
    m.logout()
    for name in ("Archive/2020/INBOX", "Archive/2020/Sent"):
        assert name in boxes and "\\noselect" not in boxes[name], f"alice's LIST: {name} missing or \\Noselect: {boxes}"
    # "Archive" itself is a real (special-use) mailbox of every account; Archive/2020 is not.
    assert "Archive/2020" in boxes and "\\noselect" in boxes["Archive/2020"], f"alice's LIST: Archive/2020 should be listed \\Noselect: {boxes}"
    bob_rows = [x for x in after if x[0] == BOB and x[1].startswith("Archive/")]
    assert bob_rows and all(by_key[(BOB, x[3])].date < CUT for x in bob_rows), "bob's archive mailboxes"
    assert {x[3] for x in bob_rows} == {m.mid for m in old if m.account == BOB}, "bob's archive holds other mail than his"
    ok("LIST: alice sees Archive/2020/INBOX and Archive/2020/Sent (Archive/2020 \\Noselect); "
       "bob's Archive/2020/* hold his own archived mail only")

    r = raw_login(srv.imap, ALICE)
    caps = r.ok("CAPABILITY")[1][0].decode().upper().split()
    status, text, untagged = r.cmd('SELECT "Archive/2020/INBOX"')
    assert status == "OK" and b"[READ-ONLY]" in text.upper(), f"SELECT Archive/2020/INBOX: {status} {text!r}"
    assert ic.exists(untagged) == len(alice_old["INBOX"]), f"EXISTS {ic.exists(untagged)}, wanted {len(alice_old['INBOX'])}"
    status, text, untagged = r.cmd("UID FETCH 1:* (UID FLAGS INTERNALDATE)")
    assert status == "OK", (status, text)
    got = {int(i["UID"]): (ic.flags_of(i) - {"\\Recent"}, ic.internaldate(i["INTERNALDATE"]))
           for i in ic.fetch_raw(untagged).values()}
    wantf = {m.uid: (m.flags | m.keywords, m.date) for m in alice_old["INBOX"]}
    assert got == wantf, f"FLAGS/INTERNALDATE in the archive differ: {sorted(set(got.items()) ^ set(wantf.items()))[:4]}"
    ok("SELECT Archive/2020/INBOX answers OK [READ-ONLY]; FETCH FLAGS keeps flags and keywords, INTERNALDATE the dates")

    status, text, untagged = r.cmd(f"UID SEARCH TEXT {WORD}")
    assert status == "OK", (status, text)
    want_uids = sorted(m.uid for m in alice_old["INBOX"] if WORD in m.words)
    assert search_uids(untagged) == want_uids, f"UID SEARCH TEXT {WORD}: {search_uids(untagged)}, wanted {want_uids}"
    status, text, untagged = r.cmd_literals(["UID SEARCH CHARSET UTF-8 TEXT ", JA_WORD.encode(), ""])
    assert status == "OK", (status, text)
    want_ja = sorted(m.uid for m in alice_old["INBOX"] if JA_WORD in m.words)
    assert search_uids(untagged) == want_ja, f"UID SEARCH TEXT {JA_WORD}: {search_uids(untagged)}, wanted {want_ja}"
    ok(f"UID SEARCH TEXT in the archive mailbox finds {WORD} ({len(want_uids)}) and {JA_WORD} ({len(want_ja)}, "
       "8bit and base64 bodies)")

    uid0 = alice_old["INBOX"][0].uid
    for cmd in (f"UID STORE {uid0} +FLAGS (\\Deleted)", "STORE 1 -FLAGS (\\Seen)", "EXPUNGE"):
        status, text, _ = r.cmd(cmd)
        assert status == "NO" and b"[READ-ONLY]" in text.upper(), f"{cmd} in an archive mailbox: {status} {text!r}, wanted NO [READ-ONLY]"
    if "MOVE" in caps:
        status, text, _ = r.cmd(f"UID MOVE {uid0} INBOX")
        assert status == "NO" and b"[READ-ONLY]" in text.upper(), f"UID MOVE out of an archive mailbox: {status} {text!r}"
    status, text, _ = r.cmd(f'UID COPY {uid0} "Archive/2020/Sent"')
    assert status == "NO" and b"[CANNOT]" in text.upper(), f"COPY into an archive mailbox: {status} {text!r}, wanted NO [CANNOT]"
    status, text, _ = r.cmd_literals(['APPEND "Archive/2020/INBOX" (\\Seen) ', crlf("Subject: x\n\nx\n"), ""])
    assert status == "NO" and b"[CANNOT]" in text.upper(), f"APPEND to an archive mailbox: {status} {text!r}, wanted NO [CANNOT]"
    for cmd in ('CREATE "Archive/2020/New"', 'DELETE "Archive/2020/Sent"', 'RENAME "Archive/2020/Sent" "Old"'):
        status, text, _ = r.cmd(cmd)
        assert status == "NO" and b"[CANNOT]" in text.upper(), f"{cmd}: {status} {text!r}, wanted NO [CANNOT]"
    status, text, untagged = r.cmd("UID FETCH 1:* (FLAGS)")
    got2 = {int(i["UID"]): ic.flags_of(i) - {"\\Recent"} for i in ic.fetch_raw(untagged).values()}
    assert got2 == {u: f for u, (f, _) in got.items()}, "flags changed after the refused writes"
    ok("STORE and EXPUNGE (and MOVE) answer NO [READ-ONLY]; APPEND, COPY into, CREATE/DELETE/RENAME answer NO [CANNOT]; "
       "nothing changed")

    victim = [m for m in alice_old["INBOX"] if "\\Deleted" not in m.flags][len(alice_old["INBOX"]) // 3]
    status, text, _ = r.cmd(f"UID COPY {victim.uid} INBOX")
    assert status == "OK", f"UID COPY from the archive into INBOX: {status} {text!r}"
    r.select("INBOX")
    status, text, untagged = r.cmd("UID SEARCH DELETED")
    assert search_uids(untagged) == [], "INBOX already has \\Deleted messages"
    status, text, untagged = r.cmd(f"UID SEARCH HEADER Message-ID {ic.quote(victim.mid)}")
    copies = search_uids(untagged)
    assert len(copies) == 1, f"the copy of {victim.mid} in INBOX: UIDs {copies}"
    status, text, untagged = r.cmd(f"UID FETCH {copies[0]} (BODY.PEEK[] INTERNALDATE)")
    items = list(ic.fetch_raw(untagged).values())[0]
    assert bytes(items["BODY[]"]) == victim.wire, "the copy restored into INBOX is not byte-identical"
    assert ic.internaldate(items["INTERNALDATE"]) == victim.date, f"the copy's INTERNALDATE {items['INTERNALDATE']}"
    # Remove the copy again: the old mail in INBOX would be archived by the runs below.
    r.ok(f"UID STORE {copies[0]} +FLAGS.SILENT (\\Deleted)")
    r.ok(f"UID EXPUNGE {copies[0]}" if "UIDPLUS" in caps else "EXPUNGE")
    r.close()
    ok("UID COPY from Archive/2020/INBOX into INBOX works: the copy is byte-identical with its internal date")

    # -- 5. archive search ----------------------------------------------------------------------
    def hits(*args, expect, what):
        res = t.cli("archive", "search", "1", *args, "--json", "--limit", "100000")
        got = json_out(res)
        assert isinstance(got, list), f"archive search {what}: not a JSON array: {res!r}"
        keys = collections.Counter((x.get("account"), norm_mid(x.get("message_id"))) for x in got)
        want = collections.Counter(m.key for m in expect)
        assert keys == want, (f"archive search {what}: {len(got)} hits, wanted {len(expect)}; "
                              f"missing {sorted(set(want) - set(keys))[:3]}, extra {sorted(set(keys) - set(want))[:3]}")
        for x in got:
            m = by_key[(x["account"], norm_mid(x["message_id"]))]
            assert x.get("mailbox") == m.box and x.get("uid") == m.uid and x.get("size") == len(m.wire), (
                f"archive search {what}: hit {x} for {m.box} uid {m.uid} size {len(m.wire)}")
            d = datetime.datetime.fromisoformat(x["date"].replace("Z", "+00:00"))
            assert d == m.date, f"archive search {what}: date {x['date']}, internal date {m.date}"
        return got

    hits(WORD, expect=[m for m in old if WORD in m.words], what=WORD)
    hits(JA_WORD, expect=[m for m in old if JA_WORD in m.words], what=JA_WORD)
    hits(WORD, JA_WORD, expect=[m for m in old if {WORD, JA_WORD} <= m.words], what=f"{WORD} {JA_WORD} (all words)")
    hits("--from", "tanaka@ext.test", expect=[m for m in old if m.from_addr == "tanaka@ext.test"], what="--from tanaka@ext.test")
    got = hits("--subject", "Invoice", expect=[m for m in old if m.subject.startswith("Invoice")], what="--subject Invoice")
    assert all(x["subject"] == by_key[(x["account"], norm_mid(x["message_id"]))].subject for x in got), got[:2]
    got = hits("--subject", JA_SUBJECT, expect=[m for m in old if JA_SUBJECT in m.subject], what=f"--subject {JA_SUBJECT}")
    assert all(x["subject"] == by_key[(x["account"], norm_mid(x["message_id"]))].subject for x in got), (
        f"the JSON subject is not the decoded subject: {got[:2]}")
    june = [m for m in old if m.date.month == 6]
    hits("--since", "2020-06-01", "--until", "2020-07-01", expect=june, what="--since 2020-06-01 --until 2020-07-01")
    dec31 = [m for m in old if (m.date.month, m.date.day) == (12, 31)]
    hits("--since", "2020-12-31", expect=dec31, what="--since 2020-12-31 (inclusive; 23:59:50 included)")
    hits("--since", "2020-12-01", "--until", "2020-12-31", expect=[m for m in old if m.date.month == 12 and m not in dec31],
         what="--since 2020-12-01 --until 2020-12-31 (exclusive)")
    hits(WORD, "--account", BOB, expect=[m for m in old if WORD in m.words and m.account == BOB], what=f"{WORD} --account bob")
    hits("nosuchwordanywhere", expect=[], what="a word nowhere")
    res = t.cli("archive", "search", "1", "--subject", "Invoice", "--limit", "3", "--json")
    assert len(json_out(res)) == 3, f"--limit 3: {res!r}"
    res = t.cli("archive", "search", "1", JA_WORD)
    assert len([x for x in res.out.splitlines() if x.strip()]) >= len([m for m in old if JA_WORD in m.words]), res
    ok(f"archive search: {WORD}, {JA_WORD}, both words, --from, --subject (ASCII and {JA_SUBJECT}, decoded), "
       f"--since/--until ({len(june)} in June 2020), --account, --limit: exactly the right hits with mailbox, "
       "UID, size and date")

    # -- 6. export ------------------------------------------------------------------------------
    out_csv = t.root / "archive-1.csv"
    t.cli("archive", "export", "1", "--csv", str(out_csv))
    with open(out_csv, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows and rows[0] == ["date", "account", "mailbox", "from", "to", "subject", "size", "message_id"], f"CSV header {rows[:1]}"
    body_rows = rows[1:]
    assert len(body_rows) == len(old), f"CSV has {len(body_rows)} rows, the archive {len(old)} messages"
    seen_csv = collections.Counter()
    for row in body_rows:
        assert len(row) == 8, f"CSV row with {len(row)} fields: {row}"
        date, account, box, frm, to, subject, size, mid = row
        m = by_key.get((account, norm_mid(mid)))
        assert m and m.date < CUT, f"CSV row for a message not in the archive: {row}"
        seen_csv[m.key] += 1
        assert box == m.box and int(size) == len(m.wire) and date.startswith(day(m.date)), f"CSV row {row} for {m.box} {len(m.wire)} {m.date}"
        assert m.from_addr in frm and subject == m.subject, f"CSV row {row}: from {m.from_addr}, subject {m.subject!r}"
    assert all(n == 1 for n in seen_csv.values()) and len(seen_csv) == len(old), "CSV rows are not one per message"
    ok(f"archive export --csv: header {','.join(rows[0])}, one row per archived message ({len(old)}), "
       "decoded subjects (Japanese too) parse with the csv module")

    out_mbox = t.root / "archive-1-alice-inbox.mbox"
    t.cli("archive", "export", "1", "--mbox", str(out_mbox), "--account", ALICE, "--mailbox", "INBOX")
    r2 = t.cli("import", "mbox", str(out_mbox), "--account", CAROL)
    assert f"imported {len(alice_old['INBOX'])} messages" in r2.out and "skipped 0" in r2.out, r2
    mc = h.imap_login(srv.imap, CAROL, PW[CAROL])
    carol = fetch_box(mc, "INBOX")
    mc.logout()
    carol_bytes = sorted(d for d, _, _ in carol.values())
    assert carol_bytes == sorted(m.wire for m in alice_old["INBOX"]), "the mbox export re-imported differs from the archive"
    assert sorted(i for _, _, i in carol.values()) == sorted(m.date for m in alice_old["INBOX"]), "internal dates lost in the mbox export"
    # carol's copies are mail of 2020 in a live mailbox: remove them, or the runs below would archive them.
    mc = h.imap_login(srv.imap, CAROL, PW[CAROL])
    typ, data = mc.select("INBOX")
    assert typ == "OK", (typ, data)
    typ, data = mc.store("1:*", "+FLAGS.SILENT", "(\\Deleted)")
    assert typ == "OK", (typ, data)
    typ, data = mc.expunge()
    assert typ == "OK", (typ, data)
    mc.logout()
    full = t.root / "archive-1.mbox"
    t.cli("archive", "export", "1", "--mbox", str(full))
    box = mailbox.mbox(str(full), create=False)
    exported = collections.Counter(norm_mid(x["Message-ID"]) for x in box)
    box.close()
    assert sum(exported.values()) == len(old) and set(exported) == {m.mid for m in old}, (
        f"the whole-archive mbox holds {sum(exported.values())} messages, wanted {len(old)}")
    ok(f"archive export --mbox (alice, INBOX) imported into a fresh account gives the same {len(alice_old['INBOX'])} "
       f"messages byte for byte with their dates; the whole archive exports {len(old)} messages")

    # -- 7. check and archive check -------------------------------------------------------------
    t.check_store("after archive create")
    r = t.cli("archive", "check", "1", check=False, timeout=180)
    assert r.code == 0, f"archive check 1 on a healthy archive: {r!r}"
    blobs = sorted(p for p in (t.data / "archive" / "1" / "blobs").rglob("*") if p.is_file())
    assert blobs, "no files under archive/1/blobs/"
    victim_blob = blobs[len(blobs) // 2]
    orig = victim_blob.read_bytes()
    pos = len(orig) // 2
    victim_blob.write_bytes(orig[:pos] + bytes([orig[pos] ^ 0x20]) + orig[pos + 1:])
    try:
        r = t.cli("archive", "check", "1", check=False, timeout=180)
        assert r.code == 1, f"archive check 1 with a flipped byte in {victim_blob.name}: exit {r.code}, wanted 1: {r!r}"
        assert victim_blob.name in r.out + r.err, f"archive check 1 does not name the damaged blob {victim_blob.name}: {r!r}"
    finally:
        victim_blob.write_bytes(orig)
    r = t.cli("archive", "check", "1", check=False, timeout=180)
    assert r.code == 0, f"archive check 1 after the byte was restored: {r!r}"
    r = t.cli("archive", "check", check=False, timeout=180)
    assert r.code == 0, f"archive check (all): {r!r}"
    ok(f"tegami check and archive check 1 pass; a flipped byte in archive blob {victim_blob.name[:12]}... makes "
       "archive check exit 1 and name it; restored, it passes again")

    # -- 8. nothing more to archive --------------------------------------------------------------
    r = t.cli("archive", "create", "--before", "2021-01-01")
    assert "nothing to archive before 2021-01-01" in r.out, f"second archive create: {r!r}"
    r = t.cli("archive", "create", "--before", "2021-01-01", "--json")
    j = json_out(r)
    assert j.get("id") is None and j.get("messages") == 0, f"second archive create --json: {r!r}"
    assert len(json_out(t.cli("archive", "list", "--json"))) == 1, "a new archive appeared"
    assert not (t.data / "archive" / "2").exists(), "archive/2 was made"
    ok("a second archive create --before 2021-01-01: 'nothing to archive before 2021-01-01', exit 0, no new archive")

    # -- 9. dry run ------------------------------------------------------------------------------
    live_before = sorted((a, b, u, mid, sha_(d)) for a, b, u, mid, d, _, _ in snapshot(srv.imap, [ALICE, BOB])
                         if not b.startswith("Archive/"))
    r = t.cli("archive", "create", "--before", "2022-01-01", "--dry-run")
    assert re.search(rf"\b{len(young)}\b", r.out), f"dry run does not say it would move {len(young)} messages: {r!r}"
    assert re.search(r"\d+(\.\d+)?\s*(B|bytes|KB|KiB|MB|MiB|GB|GiB)\b", r.out), f"dry run prints no space figure: {r!r}"
    live_after = sorted((a, b, u, mid, sha_(d)) for a, b, u, mid, d, _, _ in snapshot(srv.imap, [ALICE, BOB])
                        if not b.startswith("Archive/"))
    assert live_after == live_before, "the dry run changed the live store"
    assert len(json_out(t.cli("archive", "list", "--json"))) == 1 and not (t.data / "archive" / "2").exists(), "the dry run made an archive"
    ok(f"archive create --before 2022-01-01 --dry-run: says {len(young)} messages and the space needed, changes nothing")

    # -- 10. an archive of one account ----------------------------------------------------------
    jan = [m for m in young if m.account == ALICE and m.date < datetime.datetime(2021, 2, 1, tzinfo=UTC)]
    r = t.cli("archive", "create", "--before", "2021-02-01", "--account", ALICE, "--label", "alice-jan", "--json")
    j = json_out(r)
    assert j.get("id") == "2" and j.get("messages") == len(jan), f"alice-only archive: wanted id 2, {len(jan)} messages: {r!r}"
    lst = json_out(t.cli("archive", "list", "--json"))
    assert [x["accounts"] for x in lst if x["id"] == "2"] == [[ALICE]], lst
    m = h.imap_login(srv.imap, BOB, PW[BOB])
    bob_boxes = [b for b, _ in list_boxes(m)]
    m.logout()
    assert not any("alice-jan" in b for b in bob_boxes), f"bob sees alice's archive: {bob_boxes}"
    rows = snapshot(srv.imap, [ALICE])
    got = sorted(mid for a, b, _, mid, _, _, _ in rows if b.startswith("Archive/alice-jan/"))
    assert got == sorted(m.mid for m in jan), f"Archive/alice-jan holds {len(got)} messages, wanted {len(jan)}"
    ok(f"archive create --account alice --before 2021-02-01: {len(jan)} messages (2021-01-01 00:00:30 included), "
       "in Archive/alice-jan/* for alice only; bob does not see it")

    assert srv.stop() == 0
    crash_rounds()
    disk_full()


def sha_(b):
    return h.sha(b)


# ---------------------------------------------------------------------------
# kill -9 during archive create


def crash_messages(rnd, round_no, n_per_box, accounts):
    """Old mail for one round: dated in 1971 + round (up to 47 rounds), all before the 2019-01-01 cut."""
    out = {}
    for account in accounts:
        for box in ("INBOX", "Sent"):
            msgs = []
            for i in range(n_per_box):
                dt = datetime.datetime(1971 + round_no, 1, 1, tzinfo=UTC) + datetime.timedelta(
                    seconds=rnd.randrange(360 * 86400))
                mid = f"<r{round_no}-{account.split('@')[0]}-{box}-{i}@crash.test>"
                fill = rnd.randbytes(rnd.choice([200, 1_000, 3_000, 20_000])).hex()
                body = "\n".join(fill[k:k + 76] for k in range(0, len(fill), 76))
                text = (f"Return-Path: <old@ext.test>\nFrom: old@ext.test\nTo: {account}\nSubject: round {round_no} {i}\n"
                        f"Message-ID: {mid}\n\n{body}\n")
                msgs.append(Msg(account=account, box=box, mid=mid, date=dt, text=text, wire=crlf(text),
                                from_addr="old@ext.test"))
            out[(account, box)] = sorted(msgs, key=lambda m: m.date)
    return out


def crash_rounds():
    rnd = random.Random(SEED + 1)
    accounts = ["x@example.com", "y@example.com"]
    for a in accounts:
        PW[a] = f"pw-{a}"
    t = h.Tegami("archive-crash")
    t.domain("example.com")
    for a in accounts:
        t.account(a, PW[a])
    srv = t.serve()
    env = {"TEGAMI_ARCHIVE_BATCH": "20"}
    expected = collections.Counter()
    old_keys = set()

    def add_mail(round_no, n_per_box, recent=False):
        groups = crash_messages(rnd, round_no, n_per_box, accounts)
        for (account, box), group in groups.items():
            if recent:
                for m in group:  # live mail that stays: 2025
                    m.date = datetime.datetime(2025, 3, 1, tzinfo=UTC) + datetime.timedelta(seconds=rnd.randrange(86400 * 200))
            path = t.root / f"r{round_no}-{account}-{box}.mbox"
            write_mbox(path, group)
            r = t.cli("import", "mbox", str(path), "--account", account, "--mailbox", box)
            assert f"imported {len(group)} messages" in r.out, r
            for m in group:
                expected[(m.account, m.mid, h.sha(m.wire))] += 1
                if not recent:
                    old_keys.add((m.account, m.mid))
        return groups

    def verify(what, context=""):
        rows = snapshot(srv.imap, accounts)
        got = collections.Counter((a, mid, h.sha(d)) for a, _, _, mid, d, _, _ in rows)
        lost = expected - got
        more = got - expected
        assert not lost and not more, (f"{what}: live + archives differ from what was imported: "
                                       f"{sum(lost.values())} lost (e.g. {list(lost)[:3]}), "
                                       f"{sum(more.values())} extra or duplicated (e.g. {list(more)[:3]}){context}")
        live_old = [(a, mid) for a, b, _, mid, _, _, _ in rows if not b.startswith("Archive/") and (a, mid) in old_keys]
        assert not live_old, f"{what}: {len(live_old)} old messages still live, e.g. {live_old[:3]}{context}"
        lst = json_out(t.cli("archive", "list", "--json"))
        assert all(x["state"] == "complete" for x in lst), f"{what}: archives not complete: {lst}{context}"
        t.check_store(what)
        r = t.cli("archive", "check", check=False, timeout=180)
        assert r.code == 0, f"{what}: archive check fails: {r!r}"
        return lst

    def start_run():
        argv = [t.bin, "--data", str(t.data), "archive", "create", "--before", "2019-01-01"]
        return subprocess.Popen(argv, env={**os.environ, **env}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, preexec_fn=h._set_pdeathsig)

    add_mail(99, 10, recent=True)
    groups0 = add_mail(0, 75)
    # The timed full run: when the process ends, and when archive/1 (the sealed archive whose
    # messages are then removed from the live store batch by batch) appears.
    p = start_run()
    began = time.monotonic()
    sealed = None
    while p.poll() is None:
        if sealed is None and (t.data / "archive" / "1").is_dir():
            sealed = time.monotonic() - began
        time.sleep(0.0005)
    full = time.monotonic() - began
    out, err = p.communicate()
    first0 = min(m.date for g in groups0.values() for m in g)
    last0 = max(m.date for g in groups0.values() for m in g)
    last_line = out.decode(errors="replace").strip().splitlines()[-1] if out.strip() else ""
    assert p.returncode == 0 and re.fullmatch(
        rf"archive 1 created: 300 messages, [\d.]+ ?[KMG]?i?B, {day(first0)} \.\. {day(last0)}(, .*)?", last_line), (
        f"full run: exit {p.returncode}; wanted the last line 'archive 1 created: 300 messages, <size>, {day(first0)} .. "
        f"{day(last0)}'; stdout {out!r}, stderr {err!r}")
    sealed = full * 0.5 if sealed is None else sealed
    verify("after the timed full run")
    ok(f"crash test setup: 300 old messages archived with TEGAMI_ARCHIVE_BATCH=20 in {full:.2f} s, archive/1 "
       f"appeared after {sealed:.2f} s; the kill points are spread over both parts")

    # Half the kill points land before archive/<id> appears (snapshot, index): a random time
    # after the start. Half land in the move: a random time after archive/<id> appears, since
    # the move lasts only a few tens of milliseconds and a start time drifts more than that.
    # "finish": all the round's messages get a new keyword while the archive is being built
    # (so the finish step has every row's flags to update), and the kill comes the instant
    # the sealed archive's database has a rollback journal (plus 0-3 ms), i.e. inside that last step.
    points = [("build", f) for f in (0.05, 0.5, 0.95)] + [("move", f) for f in (0.02, 0.45, 0.9)]
    points += [("finish", 0.3)] * 4
    while len(points) < ROUNDS:
        points.append((rnd.choice(["build", "move", "finish"]), rnd.random()))
    points = points[:ROUNDS]
    rnd.shuffle(points)
    resumed_rounds = 0
    for k, (part, frac) in enumerate(points, start=1):
        add_mail(k, 75)
        existing = {x.name for x in (t.data / "archive").iterdir()}
        ids_before = {x["id"] for x in json_out(t.cli("archive", "list", "--json"))}

        def sealed_now():
            return any(not x.name.endswith(".partial") and x.name not in existing and x.is_dir()
                       for x in (t.data / "archive").iterdir())

        def new_dirs():
            return [x for x in (t.data / "archive").iterdir() if x.name not in existing and x.is_dir()]

        sessions = []
        if part == "finish":
            for a in accounts:
                for box in ("INBOX", "Sent"):
                    c = raw_login(srv.imap, a)
                    c.select(box)
                    sessions.append(c)
        p = start_run()
        began = time.monotonic()
        if part == "build":
            time.sleep(frac * sealed)
        elif part == "finish":
            while p.poll() is None and not new_dirs():
                time.sleep(0.0005)
            time.sleep(frac * sealed)
            for c in sessions:
                c.ok(f"UID STORE 1:* +FLAGS.SILENT ($F{k})")
            while p.poll() is None and not any((x / "archive.db-journal").exists() for x in new_dirs()
                                               if not x.name.endswith(".partial")):
                pass
            # The journal lives a few ms; the database itself is written in its last part.
            time.sleep(rnd.uniform(0.0, 0.003))
        else:
            while p.poll() is None and not sealed_now():
                time.sleep(0.0005)
            time.sleep(frac * (full - sealed))
        delay = time.monotonic() - began
        finished = p.poll() is not None
        if not finished:
            p.send_signal(signal.SIGKILL)
        p.communicate(timeout=60)
        for c in sessions:
            c.close()
        partial = sorted(x.name for x in (t.data / "archive").iterdir() if x.name.endswith(".partial"))
        lst = json_out(t.cli("archive", "list", "--json"))
        moving = [x["id"] for x in lst if x.get("state") != "complete"]
        done = [x["id"] for x in lst if x.get("state") == "complete" and x["id"] not in ids_before]
        r = cli_env(t, "archive", "create", "--before", "2019-01-01", env=env)
        for mid_id in moving:
            assert re.search(rf"^resumed archive {mid_id}\b", r.out, re.M), (
                f"round {k}: archive {mid_id} was left {lst}, the rerun did not say 'resumed archive {mid_id}': {r!r}")
        if moving:
            resumed_rounds += 1
        else:
            assert "resumed archive" not in r.out, (
                f"round {k} ({part}): killed after {delay:.3f} s (process had ended: {finished}); `archive list` then "
                f"showed no unfinished archive ({[(x['id'], x['state']) for x in lst]}; .partial: {partial}), but the "
                f"rerun resumed one, so the list "
                f"hid it: {r!r}")
        verify(f"round {k}", f"\n(killed after {delay:.3f} s, process had ended: {finished}; then .partial: {partial}, "
                             f"archive list: {lst}; the rerun: {r!r})")
        phase = ("it had finished before the kill" if finished else
                 f"archive {', '.join(moving)} left moving, resumed by the rerun" if moving else
                 f"killed while building {', '.join(partial)}" if partial else
                 f"killed after archive {', '.join(done)} was complete, before the process ended" if done else
                 "killed before any archive was recorded")
        ok(f"kill round {k}: SIGKILL after {delay:.3f} s, aimed at the {part} ({phase}); the rerun completes; live + archives = the "
           "imported set exactly; check and archive check pass")
    assert resumed_rounds >= 1, "no round killed archive create in the middle of a move: the kill points missed"
    assert srv.stop() == 0
    ok(f"{resumed_rounds} of {len(points)} rounds interrupted a move that the rerun resumed; nothing lost or doubled")


# ---------------------------------------------------------------------------
# Not enough disk


def mounted(vol):
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == str(vol) for line in f)


def disk_full():
    """On a 24 MiB tmpfs filled up, archive create refuses with one clear line and changes nothing."""
    t = h.Tegami("archive-disk")
    vol = t.root / "vol"
    vol.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0755", "tmpfs", str(vol)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"cannot mount a tmpfs (this part needs root and mount permission): {r.stderr.strip()}"
    try:
        t.data = vol / "data"
        t.write_config("[disk]\nmin_free_bytes = 1048576\nhard_floor_bytes = 524288\n")
        t.domain("example.com")
        t.account("z@example.com", "pw-z")
        rnd = random.Random(SEED + 2)
        msgs = []
        for i in range(300):
            dt = datetime.datetime(2010, 1, 1, tzinfo=UTC) + datetime.timedelta(seconds=rnd.randrange(360 * 86400))
            words = " ".join(rnd.choice(["alpha", "beta", "gamma", "delta", "東京", "会議"]) for _ in range(1200))
            text = (f"Return-Path: <old@ext.test>\nFrom: old@ext.test\nSubject: disk {i}\nMessage-ID: <d{i}@disk.test>\n"
                    "Content-Type: text/plain; charset=UTF-8\n\n" + "\n".join(words[k:k + 70] for k in range(0, len(words), 70)) + "\n")
            msgs.append(Msg(account="z@example.com", box="INBOX", mid=f"<d{i}@disk.test>", date=dt, text=text,
                            wire=crlf(text), from_addr="old@ext.test"))
        path = t.root / "disk.mbox"
        write_mbox(path, sorted(msgs, key=lambda m: m.date))
        r = t.cli("import", "mbox", str(path), "--account", "z@example.com")
        assert "imported 300 messages" in r.out, r
        r = t.cli("archive", "create", "--before", "2011-01-01", "--dry-run")
        st = os.statvfs(vol)
        free = st.f_bavail * st.f_frsize
        filler = vol / "filler"
        with open(filler, "wb") as f:
            os.posix_fallocate(f.fileno(), 0, free - 256 * 1024)
        st = os.statvfs(vol)
        left = st.f_bavail * st.f_frsize

        r = t.cli("archive", "create", "--before", "2011-01-01", check=False)
        err = r.err.strip().splitlines()
        assert r.code == 1, f"archive create with {left // 1024} KiB free: exit {r.code}, wanted 1: {r!r}"
        assert len(err) == 1 and err[0].startswith("tegami: archive needs ") and " free" in err[0], (
            f"archive create refused without the one stderr line 'tegami: archive needs ... free; ...': {r!r}")
        assert json_out(t.cli("archive", "list", "--json")) == [], "a refused archive create left an archive"
        leftover = [x.name for x in (t.data / "archive").iterdir() if x.is_dir()] if (t.data / "archive").exists() else []
        assert not leftover, f"a refused archive create left {leftover} under archive/"
        out = t.root / "z.mbox"
        t.cli("export", "mbox", "--account", "z@example.com", "--mailbox", "INBOX", str(out))
        mb = mailbox.mbox(str(out), create=False)
        assert len(mb) == 300, f"{len(mb)} messages live after the refused archive, wanted 300"
        mb.close()
        out.unlink()
        ok(f"with {left // 1024} KiB free archive create exits 1 with one line ({err[0][:90]}...), leaves no archive "
           "and every message live")

        # The estimate must be enough: with 10 % more than it asked for, the run succeeds.
        m = re.match(r"tegami: archive needs ([\d.]+) ?([KMG]i?B|B|bytes)\b", err[0])
        assert m, f"cannot read the needed size from {err[0]!r}"
        unit = {"B": 1, "bytes": 1, "KiB": 1 << 10, "KB": 1000, "MiB": 1 << 20, "MB": 10**6, "GiB": 1 << 30, "GB": 10**9}
        needed = float(m.group(1)) * unit[m.group(2)]
        filler.unlink()
        st = os.statvfs(vol)
        with open(filler, "wb") as f:
            os.posix_fallocate(f.fileno(), 0, st.f_bavail * st.f_frsize - int(needed * 1.1) - 64 * 1024)
        st = os.statvfs(vol)
        given = st.f_bavail * st.f_frsize
        r = t.cli("archive", "create", "--before", "2011-01-01", check=False)
        assert r.code == 0 and re.search(r"^archive 1 created: 300 messages", r.out, re.M), (
            f"with {given // 1024} KiB free ({needed / 1024:.0f} KiB asked for + 10 %) archive create failed: {r!r}")
        filler.unlink()
        t.check_store("after the archive on the tmpfs")
        r = t.cli("archive", "check", "1", check=False, timeout=180)
        assert r.code == 0, f"archive check 1: {r!r}"
        ok(f"with {given // 1024} KiB free (what it asked for + 10 %) the same archive create succeeds "
           "(300 messages); check and archive check pass")
    finally:
        if mounted(vol):
            r = subprocess.run(["umount", str(vol)], capture_output=True, text=True, timeout=30)
            if r.returncode != 0:
                subprocess.run(["umount", "-l", str(vol)], capture_output=True, timeout=30)


if __name__ == "__main__":
    h.in_own_mount_namespace()
    h.main(test, timeout=400)
