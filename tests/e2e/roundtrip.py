#!/usr/bin/env python3
"""Real-world messages go in by SMTP and come out of POP3 byte for byte.

Checks: trace headers (Return-Path = envelope sender, Received) then exactly the sent bytes
for a varied set of messages; EHLO extensions; LIST sizes; UIDL stable across sessions;
TOP; DELE+QUIT removes, DELE+RSET and a dropped session keep; CAPA; IN-USE; swaks
delivers (plain and pipelined); an alias delivers to both targets with one shared blob;
`tegami check` passes, and fails once a blob is corrupted.
"""

import base64
import os
import poplib
import random
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import crlf, ok  # noqa: E402

PW = {"alice@example.com": "alice-pass-1", "bob@example.com": "bob-pass-2", "carol@example.com": "carol-pass-3"}


def b64_lines(data):
    enc = base64.b64encode(data)
    return b"".join(enc[i : i + 76] + b"\r\n" for i in range(0, len(enc), 76))


def messages():
    """(name, envelope sender, mail options, bytes); the first line of each is unique."""
    rnd = random.Random(20240601)
    out = []

    out.append(("plain text", "sender@ext.test", [], crlf("""\
Message-ID: <plain-1@ext.test>
From: Sender <sender@ext.test>
To: Alice <alice@example.com>
Subject: Plain text
Date: Mon, 3 Jun 2024 09:00:00 +0900

Hello Alice,
this is a plain message.

-- 
Sender
""")))

    pdf = bytes(rnd.getrandbits(8) for _ in range(30_000))
    out.append(("multipart/alternative + base64 attachment", "shop@ext.test", [], crlf("""\
Message-ID: <alt-attach-2@ext.test>
From: Shop <shop@ext.test>
To: alice@example.com
Subject: Your invoice
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer-b"

This is a multi-part message in MIME format.
--outer-b
Content-Type: multipart/alternative; boundary="alt-b"

--alt-b
Content-Type: text/plain; charset=us-ascii
Content-Transfer-Encoding: 7bit

Your invoice is attached.
--alt-b
Content-Type: text/html; charset=us-ascii
Content-Transfer-Encoding: quoted-printable

<html><body><p style=3D"color:red">Your invoice is attached.</p></body></html>
--alt-b--

--outer-b
Content-Type: application/pdf; name="invoice.pdf"
Content-Disposition: attachment; filename="invoice.pdf"
Content-Transfer-Encoding: base64

""") + b64_lines(pdf) + crlf("""\
--outer-b--
""")))

    out.append(("nested multipart (mixed > related > alternative)", "news@ext.test", [], crlf("""\
Message-ID: <nested-3@ext.test>
From: news@ext.test
To: alice@example.com
Subject: Nested
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="L1"

--L1
Content-Type: multipart/related; boundary="L2"; type="multipart/alternative"

--L2
Content-Type: multipart/alternative; boundary="L3"

--L3
Content-Type: text/plain; charset=utf-8

plain part
--L3
Content-Type: text/html; charset=utf-8

<img src="cid:logo@x">
--L3--
--L2
Content-Type: image/png
Content-ID: <logo@x>
Content-Transfer-Encoding: base64

""") + b64_lines(bytes(range(256)) * 20) + crlf("""\
--L2--
--L1
Content-Type: text/csv; name="data.csv"
Content-Disposition: attachment

a,b,c
1,2,3
--L1--
""")))

    out.append(("message/rfc822 attachment", "fwd@ext.test", [], crlf("""\
Message-ID: <fwd-4@ext.test>
From: fwd@ext.test
To: alice@example.com
Subject: Fwd: original
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="fw"

--fw
Content-Type: text/plain

See the forwarded message.
--fw
Content-Type: message/rfc822
Content-Disposition: attachment

Message-ID: <orig@elsewhere.test>
From: someone@elsewhere.test
To: fwd@ext.test
Subject: original
Received: from a.elsewhere.test by b.elsewhere.test; Mon, 3 Jun 2024 08:00:00 +0000

The original body.
.
..and a dotted line inside the forwarded mail
--fw--
""")))

    out.append(("8-bit UTF-8 body, BODY=8BITMIME", "utf8@ext.test", ["BODY=8BITMIME"], crlf("""\
Message-ID: <eightbit-5@ext.test>
From: utf8@ext.test
To: alice@example.com
Subject: =?UTF-8?B?5pel5pys6Kqe44Gu5Lu25ZCN?=
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

こんにちは、世界。手紙が届きました。
Grüße aus Köln — naïve café, 😀 emoji, and Ω≈ç√∫.
""")))

    out.append(("a 5,000-character line", "long@ext.test", [], crlf("""\
Message-ID: <longline-6@ext.test>
From: long@ext.test
To: alice@example.com
Subject: long line

""") + b"".join(bytes([0x41 + i % 26]) for i in range(5000)) + b"\r\n" + crlf("""\
after the long line
""")))

    out.append(("lines that are '.', start with '..' and '...'", "dots@ext.test", [], crlf("""\
Message-ID: <dots-7@ext.test>
From: dots@ext.test
To: alice@example.com
Subject: dots

.
..
...
.. two dots then text
.leading dot
. 
end
""")))

    big = bytes(rnd.getrandbits(8) for _ in range(2 * 1024 * 1024))
    out.append(("2 MB attachment", "big@ext.test", [], crlf("""\
Message-ID: <big-8@ext.test>
From: big@ext.test
To: alice@example.com
Subject: big attachment
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="big"

--big
Content-Type: text/plain

A 2 MiB file follows.
--big
Content-Type: application/octet-stream; name="blob.bin"
Content-Transfer-Encoding: base64

""") + b64_lines(big) + crlf("""\
--big--
""")))

    # ISO-2022-JP: a 7-bit body with escape sequences, and encoded-word subjects.
    jp_body = "日本語の本文です。\nよろしくお願いします。\n".encode("iso-2022-jp").replace(b"\n", b"\r\n")
    subj_jis = base64.b64encode("会議の件".encode("iso-2022-jp")).decode()
    out.append(("Japanese ISO-2022-JP message and subject", "tanaka@ext.test", [], crlf(f"""\
Message-ID: <jis-9@ext.test>
From: =?ISO-2022-JP?B?{base64.b64encode("田中".encode("iso-2022-jp")).decode()}?= <tanaka@ext.test>
To: alice@example.com
Subject: =?ISO-2022-JP?B?{subj_jis}?=
MIME-Version: 1.0
Content-Type: text/plain; charset=ISO-2022-JP
Content-Transfer-Encoding: 7bit

""") + jp_body))

    subj_utf8 = base64.b64encode("お問い合わせありがとうございます".encode()).decode()
    out.append(("UTF-8 encoded-word subject, folded", "support@ext.test", [], crlf(f"""\
Message-ID: <utf8subj-10@ext.test>
From: support@ext.test
To: alice@example.com
Subject: =?UTF-8?B?{subj_utf8[:40]}?=
 =?UTF-8?B?{base64.b64encode("【受付番号 12345】".encode()).decode()}?=
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: base64

{base64.b64encode("お問い合わせを受け付けました。".encode()).decode()}
""")))

    out.append(("null sender (bounce), multipart/report", "", [], crlf("""\
Message-ID: <dsn-11@ext.test>
From: MAILER-DAEMON@ext.test
To: alice@example.com
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="dsn"

--dsn
Content-Type: text/plain

Your message could not be delivered.
--dsn
Content-Type: message/delivery-status

Reporting-MTA: dns; ext.test

Final-Recipient: rfc822; nobody@ext.test
Action: failed
Status: 5.1.1
--dsn--
""")))

    out.append(("SMTPUTF8 with a UTF-8 envelope sender and raw UTF-8 headers", "山田@例え.jp", ["SMTPUTF8", "BODY=8BITMIME"], crlf("""\
Message-ID: <smtputf8-12@ext.test>
From: 山田 <山田@例え.jp>
To: alice@example.com
Subject: 生のUTF-8ヘッダー

本文。
""")))
    return out


def first_line(msg):
    return msg.split(b"\r\n", 1)[0]


def test():
    t = h.Tegami("roundtrip")
    t.domain("example.com")
    for addr, pw in PW.items():
        t.account(addr, pw)
    t.alias("team@example.com", "alice@example.com", "bob@example.com")
    listed = t.cli("alias", "list").out
    assert "team@example.com" in listed, f"alias list does not show team@example.com: {listed!r}"
    ok("domain, accounts and alias created with the CLI")

    srv = t.serve()
    ok(f"serve ready with smtp on {srv.smtp} and pop3 on {srv.pop3}")

    raw = h.RawSmtp(srv.smtp)
    ext = {line.split()[0].upper(): line for line in raw.ehlo_lines[1:]}
    for want in ("PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8"):
        assert want in ext, f"EHLO does not advertise {want}: {raw.ehlo_lines}"
    size = ext["SIZE"].split()[1:]
    assert len(size) == 1 and size[0].isdigit() and int(size[0]) >= 3_000_000, (
        f"EHLO SIZE must state a limit that fits the 2 MB attachment below: {ext['SIZE']!r}"
    )
    assert "STARTTLS" not in ext, f"STARTTLS advertised without [tls]: {raw.ehlo_lines}"
    raw.expect("VRFY alice@example.com", 252)
    raw.expect("QUIT", 221)
    raw.close()
    ok(f"EHLO advertises PIPELINING SIZE {size[0]} 8BITMIME ENHANCEDSTATUSCODES SMTPUTF8 and not STARTTLS; VRFY 252")

    msgs = messages()
    for name, sender, opts, msg in msgs:
        h.send(srv.smtp, sender, ["alice@example.com"], msg, options=opts)
    ok(f"{len(msgs)} messages accepted over SMTP")

    got = h.pop3_fetch_all(srv.pop3, "alice@example.com", PW["alice@example.com"])
    assert len(got) == len(msgs), f"alice has {len(got)} messages, sent {len(msgs)}"
    by_first = {}
    for n, uid, data in got:
        for name, sender, opts, msg in msgs:
            if (b"\r\n" + first_line(msg) + b"\r\n") in data:
                assert name not in by_first, f"{name!r} stored twice"
                by_first[name] = (n, uid, data)
    for name, sender, opts, msg in msgs:
        assert name in by_first, f"{name!r} not found in alice's maildrop"
        _, _, data = by_first[name]
        trace, rest = h.split_trace(data, first_line(msg), sender)
        assert rest == msg, (
            f"{name!r}: stored bytes differ from sent bytes (sent {len(msg)}, stored {len(rest)} after the trace; "
            f"first difference at {next((i for i, (a, b) in enumerate(zip(rest, msg)) if a != b), min(len(rest), len(msg)))})"
        )
        ok(f"byte-exact after trace headers, Return-Path <{sender}>: {name}")

    # UIDL is stable across sessions, and LIST matches RETR (checked in pop3_fetch_all).
    p = h.pop3_login(srv.pop3, "alice@example.com", PW["alice@example.com"])
    u1 = h.pop3_uidl(p)
    assert len(set(u1.values())) == len(u1), f"UIDL values not unique: {u1}"
    for uid in u1.values():
        assert 1 <= len(uid) <= 70 and all(0x21 <= ord(c) <= 0x7E for c in uid), f"UIDL {uid!r} breaks RFC 1939"
    p.quit()
    p = h.pop3_login(srv.pop3, "alice@example.com", PW["alice@example.com"])
    u2 = h.pop3_uidl(p)
    assert u1 == u2, f"UIDL changed between sessions: {u1} vs {u2}"
    ok("UIDL unique, well-formed and the same in two sessions")

    # TOP n k: the header, the blank line, then k body lines.
    n_plain = by_first["plain text"][0]
    full = by_first["plain text"][2]
    head, body = full.split(b"\r\n\r\n", 1)
    body_lines = body.split(b"\r\n")[:-1]
    for k in (0, 2, 100):
        resp, lines, _ = p.top(n_plain, k)
        assert resp.startswith(b"+OK"), f"TOP {n_plain} {k}: {resp!r}"
        want = head.split(b"\r\n") + [b""] + body_lines[:k]
        assert lines == want, f"TOP {n_plain} {k} returned {lines!r}, wanted {want!r}"
    n_dots = by_first["lines that are '.', start with '..' and '...'"][0]
    resp, lines, _ = p.top(n_dots, 3)
    assert lines[-3:] == [b".", b"..", b"..."], f"TOP with dot-stuffed lines returned {lines[-4:]!r}"
    ok("TOP n 0, TOP n 2, TOP n 100 and TOP over dotted lines")

    # DELE then RSET keeps everything.
    count0, _ = p.stat()
    p.dele(1)
    assert p.stat()[0] == count0 - 1, "STAT after DELE still counts the deleted message"
    try:
        p.retr(1)
        raise AssertionError("RETR of a message marked deleted succeeded")
    except poplib.error_proto as e:
        assert str(e).startswith("b'-ERR"), f"RETR deleted: {e}"
    p.rset()
    assert p.stat()[0] == count0, "RSET did not unmark the deletion"
    p.quit()
    p = h.pop3_login(srv.pop3, "alice@example.com", PW["alice@example.com"])
    assert p.stat()[0] == count0, "DELE + RSET + QUIT lost a message"
    ok("DELE hides a message in the session, RSET brings it back, QUIT after RSET keeps it")

    # DELE without QUIT (the connection just drops) keeps the message.
    p.dele(1)
    p.close()  # no QUIT: closes the socket (and poplib's file over it)
    p = h.pop3_login_after_drop(srv.pop3, "alice@example.com", PW["alice@example.com"])
    assert p.stat()[0] == count0, "DELE on a session that dropped without QUIT was committed"
    ok("DELE is not committed when the session drops without QUIT")

    # DELE then QUIT removes exactly that message.
    uids_before = h.pop3_uidl(p)
    victim = by_first["plain text"][1]
    victim_n = next(n for n, u in uids_before.items() if u == victim)
    p.dele(victim_n)
    p.quit()
    p = h.pop3_login(srv.pop3, "alice@example.com", PW["alice@example.com"])
    uids_after = h.pop3_uidl(p)
    assert p.stat()[0] == count0 - 1, f"after DELE + QUIT STAT is {p.stat()}, wanted {count0 - 1} messages"
    assert sorted(uids_after.values()) == sorted(u for u in uids_before.values() if u != victim), (
        f"DELE + QUIT removed the wrong messages: before {uids_before}, after {uids_after}"
    )
    ok("DELE + QUIT removes exactly the deleted message, other UIDs unchanged")

    # CAPA, and a second session on the same maildrop is refused while this one holds it.
    caps = p.capa()
    for want in ("TOP", "UIDL", "USER", "RESP-CODES"):
        assert want in caps, f"CAPA does not list {want}: {caps}"
    assert "STLS" not in caps, f"CAPA lists STLS without [tls]: {caps}"
    q = poplib.POP3(h.HOST, srv.pop3, timeout=30)
    q.user("alice@example.com")
    try:
        q.pass_(PW["alice@example.com"])
        raise AssertionError("a second session logged in while the first holds the maildrop")
    except poplib.error_proto as e:
        assert "[IN-USE]" in str(e), f"second session refused without [IN-USE]: {e}"
    q.close()
    p.quit()
    q = h.pop3_login(srv.pop3, "alice@example.com", PW["alice@example.com"])
    q.quit()
    ok("CAPA lists TOP UIDL USER RESP-CODES (no STLS); a concurrent login gets -ERR [IN-USE]; free again after QUIT")

    # swaks, plainly and with pipelining.
    for tag, extra in (("swaks-plain", []), ("swaks-pipelined", ["--pipeline"])):
        r = subprocess.run(
            ["swaks", "--server", f"{h.HOST}:{srv.smtp}", "--to", "carol@example.com", "--from", "swaks@ext.test",
             "--helo", "client.test", "--header", f"Subject: {tag}", "--body", f"body of {tag}", "--timeout", "30",
             *extra],
            capture_output=True, timeout=60,
        )
        assert r.returncode == 0, f"swaks {extra} exited {r.returncode}:\n{r.stdout.decode(errors='replace')}"
    got = h.pop3_fetch_all(srv.pop3, "carol@example.com", PW["carol@example.com"])
    assert len(got) == 2, f"carol has {len(got)} messages after two swaks runs"
    for tag in ("swaks-plain", "swaks-pipelined"):
        hit = [d for _, _, d in got if f"Subject: {tag}\r\n".encode() in d]
        assert len(hit) == 1, f"{tag} arrived {len(hit)} times"
        assert f"body of {tag}".encode() in hit[0], f"{tag}: body missing from {hit[0]!r}"
        # swaks writes Date: as its first header, so everything before it is our trace.
        cut = hit[0].find(b"\r\nDate: ")
        assert cut > 0, f"{tag}: no Date header after the trace in {hit[0][:300]!r}"
        h.check_trace(hit[0][: cut + 2], "swaks@ext.test")
    ok("swaks delivers, with and without --pipeline")

    # An alias with two targets: both get a copy, and the body is stored once.
    blobs_before = len(t.blob_files())
    alias_msg = crlf("""\
Message-ID: <alias-13@ext.test>
From: client@ext.test
To: team@example.com
Subject: to the team

Hello team.
""")
    h.send(srv.smtp, "client@ext.test", ["team@example.com"], alias_msg)
    for who in ("alice@example.com", "bob@example.com"):
        got = h.pop3_fetch_all(srv.pop3, who, PW[who])
        hit = [d for _, _, d in got if b"\r\nMessage-ID: <alias-13@ext.test>\r\n" in d]
        assert len(hit) == 1, f"{who} got the alias message {len(hit)} times"
        _, rest = h.split_trace(hit[0], first_line(alias_msg), "client@ext.test")
        assert rest == alias_msg, f"{who}: alias copy differs from what was sent"
    blobs_after = len(t.blob_files())
    assert blobs_after == blobs_before + 1, (
        f"alias delivery to two accounts added {blobs_after - blobs_before} blob files, wanted exactly 1 (shared)"
    )
    ok("alias team@ -> alice, bob: both get it byte-exact, one blob shared")

    t.check_store("with the server running")
    ok("tegami check passes with the server running")
    code = srv.stop()
    assert code == 0, f"serve exited {code} after SIGTERM"
    ok("SIGTERM stops the server with exit 0")
    t.check_store("with the server stopped")
    ok("tegami check passes with the server stopped")

    # The checker must notice a damaged blob, or it proves nothing.
    blobs = t.blob_files()
    assert blobs, "no blob files under data/blobs"
    victim = max(blobs, key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    os.chmod(victim, 0o644)
    victim.write_bytes(bytes(data))
    r = t.cli("check", check=False, timeout=180)
    assert r.code != 0, f"tegami check passed with a corrupted blob {victim.name}: {r!r}"
    reason = (r.err.strip() or r.out.strip()).splitlines()
    assert reason, "tegami check failed without saying why"
    ok(f"tegami check fails on a flipped bit in a blob: {reason[-1][:120]}")


if __name__ == "__main__":
    h.main(test, timeout=300)
