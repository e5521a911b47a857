#!/usr/bin/env python3
"""Every IMAP command through Python's imaplib (and a raw socket where imaplib cannot go).

Checks: CAPABILITY before and after login (IMAP4rev1 IDLE UIDPLUS MOVE NAMESPACE LITERAL+
ENABLE SPECIAL-USE SASL-IR AUTH=PLAIN, STARTTLS only with [tls]); NOOP; LOGIN with a bad
password -> NO [AUTHENTICATIONFAILED]; AUTHENTICATE PLAIN through imaplib, with a SASL-IR
initial response, cancelled with "*"; LIST ("", *, %, references, special-use attributes
on Sent Drafts Trash Junk Archive), CREATE (non-ASCII names in modified UTF-7, a trailing
"/"), DELETE, RENAME (with children; INBOX), SUBSCRIBE/UNSUBSCRIBE/LSUB, STATUS,
NAMESPACE; SELECT/EXAMINE responses; FETCH of every item on real-world MIME: BODY[] equal
to the bytes POP3 returns (trace headers + exactly what was sent), ENVELOPE and
BODYSTRUCTURE against values worked out by hand for three messages (address groups, a
quoted local part, message/rfc822 holding a multipart among them), encoded words left
raw, sections, partials, \\Seen by BODY[] and not by PEEK; SEARCH over real-world MIME;
APPEND with flags and date ([APPENDUID]); SEARCH with every RFC 3501 key; STORE
(+FLAGS, -FLAGS, FLAGS, .SILENT, keywords); COPY ([COPYUID]), MOVE, EXPUNGE, UID EXPUNGE,
CLOSE, CHECK and the UID forms; ENABLE, IDLE, LOGOUT; STARTTLS with a certificate, and
plaintext pipelined after STARTTLS is not executed.
"""

import base64
import datetime
import imaplib
import os
import random
import re
import ssl
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import imap_common as ic  # noqa: E402
from harness import crlf, ok  # noqa: E402
from imap_common import Atom, quote  # noqa: E402

ALICE, BOB = "alice@example.com", "bob@example.com"
PW = {ALICE: "alice-imap-pw", BOB: "bob-imap-pw"}
SPECIAL = {"Sent": "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash", "Junk": "\\Junk", "Archive": "\\Archive"}
WANT_CAPS = ("IMAP4REV1", "IDLE", "UIDPLUS", "MOVE", "NAMESPACE", "LITERAL+", "ENABLE", "SPECIAL-USE")


# ---------------------------------------------------------------------------
# Messages


def b64_lines(data):
    enc = base64.b64encode(data)
    return b"".join(enc[i:i + 76] + b"\r\n" for i in range(0, len(enc), 76))


MSG_PLAIN = crlf("""\
Message-ID: <plain-1@ext.test>
Date: Mon, 3 Jun 2024 09:00:00 +0900
From: Sender Name <sender@ext.test>
To: Alice <alice@example.com>, bob@example.com
Cc: "Carol C." <carol@example.com>
Reply-To: replies@ext.test
In-Reply-To: <parent@ext.test>
Subject: Plain text
Content-Type: text/plain; charset=us-ascii

Hello Alice,
this is a plain message.

-- 
Sender
""")

MSG_FWD = crlf("""\
Message-ID: <fwd-2@ext.test>
Date: Tue, 4 Jun 2024 10:30:00 +0000
From: fwd@ext.test
To: alice@example.com
Subject: Fwd: original
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="fw"

This is a multi-part message in MIME format.
--fw
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Gr=C3=BC=C3=9Fe, see the forwarded message.

--alt
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: quoted-printable

<p>Gr=C3=BC=C3=9Fe</p>

--alt--

--fw
Content-Type: message/rfc822
Content-Disposition: attachment

Message-ID: <orig@elsewhere.test>
Date: Mon, 3 Jun 2024 08:00:00 +0000
From: Someone <someone@elsewhere.test>
To: fwd@ext.test
Subject: original

The original body.

--fw
Content-Type: application/octet-stream; name="data.bin"
Content-Disposition: attachment; filename="data.bin"
Content-Transfer-Encoding: base64

AAECAwQFBgcICQ==

--fw--
""")

MSG_ODD = crlf("""\
Message-ID: <odd-9@ext.test>
Date: Tue, 11 Jun 2024 10:00:00 +0000
From: a@b.test, "Doe, John" <john@c.test>
Sender: Secretary <sec@c.test>
To: undisclosed-recipients:;
Cc: Team: t1@d.test, T Two <t2@d.test>;, solo@e.test
Reply-To: "john doe"@f.test
Subject: 
In-Reply-To: <p1@x> <p2@x>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=o

--o
Content-Type: text/plain

outer
--o
Content-Type: message/rfc822

Message-ID: <in@x>
Subject: inner
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary=i

--i
Content-Type: text/plain

plain
--i
Content-Type: text/html

<p>html</p>
--i--
--o--
""")

# Addresses from RFC 5322 Appendix A (A.1.2, A.1.3, A.5, A.6.1): comments, folding, groups,
# a source route. Comments are not part of any name (RFC 5322 3.2.2).
MSG_5322 = crlf("""\
Message-ID: <rfc5322-10@ext.test>
Date: Thu, 13 Feb 1969 23:32:54 -0330
From: Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>
Sender: "Joe Q. Public" <john.q.public@example.com>
Reply-To: Mary Smith <@node.test:mary@example.net>
To:A Group(Some people)
     :Chris Jones <c@(Chris's host.)public.example>,
         joe@example.org,
  John <jdoe@one.test> (my dear friend); (the end of the group)
Cc:(Empty list)(start)Hidden recipients  :(nobody(that I know))  ;
Bcc: "Giant; \\"Big\\" Box" <sysservices@example.net>
Subject: RFC 5322 appendix A

body
""")

# RFC 2231 parameters (charset, percent-encoding, continuations) in Content-Type and
# Content-Disposition.
MSG_2231 = crlf("""\
Message-ID: <rfc2231-11@ext.test>
From: x@ext.test
Subject: RFC 2231 parameters
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=p

--p
Content-Type: text/plain; charset=us-ascii

see the attachment
--p
Content-Type: application/octet-stream; name*=UTF-8''%E6%97%A5%E6%9C%AC.bin
Content-Disposition: attachment; filename*0*=UTF-8''%E6%97%A5; filename*1*=%E6%9C%AC.bin
Content-Transfer-Encoding: base64

AAEC
--p--
""")

JIS_SUBJECT = "=?ISO-2022-JP?B?GyRCMnE1RCRON28bKEI=?="  # 会議の件
JIS_FROM = "=?ISO-2022-JP?B?GyRCRURDZhsoQg==?="  # 田中


def messages():
    """(name, envelope sender, SMTP options, bytes); each has a unique Message-ID."""
    rnd = random.Random(3501)
    out = [("plain text (hand-checked)", "sender@ext.test", [], MSG_PLAIN),
           ("multipart with message/rfc822 (hand-checked)", "fwd@ext.test", [], MSG_FWD),
           ("address groups, quoted local part, message/rfc822 holding a multipart (hand-checked)", "odd@ext.test", [],
            MSG_ODD),
           ("RFC 5322 appendix A addresses (hand-checked)", "x@ext.test", [], MSG_5322),
           ("RFC 2231 parameters", "x@ext.test", [], MSG_2231)]
    out.append(("nested multipart mixed > related > alternative", "news@ext.test", [], crlf("""\
Message-ID: <nested-3@ext.test>
Date: Wed, 5 Jun 2024 11:00:00 +0200
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
    out.append(("8-bit UTF-8 body", "utf8@ext.test", ["BODY=8BITMIME"], crlf("""\
Message-ID: <eightbit-4@ext.test>
Date: Thu, 6 Jun 2024 12:00:00 +0000
From: utf8@ext.test
To: alice@example.com
Subject: =?UTF-8?B?5pel5pys6Kqe44Gu5Lu25ZCN?=
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

こんにちは、世界。手紙が届きました。
Grüße aus Köln — naïve café, 😀 emoji.
""")))
    jp_body = "日本語の本文です。\nよろしくお願いします。\n".encode("iso-2022-jp").replace(b"\n", b"\r\n")
    out.append(("ISO-2022-JP subject and body", "tanaka@ext.test", [], crlf(f"""\
Message-ID: <jis-5@ext.test>
Date: Fri, 7 Jun 2024 09:15:00 +0900
From: {JIS_FROM} <tanaka@ext.test>
To: alice@example.com
Subject: {JIS_SUBJECT}
MIME-Version: 1.0
Content-Type: text/plain; charset=ISO-2022-JP
Content-Transfer-Encoding: 7bit

""") + jp_body))
    subj = base64.b64encode("お問い合わせありがとうございます".encode()).decode()
    out.append(("folded UTF-8 subject, base64 body", "support@ext.test", [], crlf(f"""\
Message-ID: <utf8subj-6@ext.test>
Date: Sat, 8 Jun 2024 10:00:00 +0000
From: support@ext.test
To: alice@example.com
Subject: =?UTF-8?B?{subj[:40]}?=
 =?UTF-8?B?{base64.b64encode("【受付番号 12345】".encode()).decode()}?=
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: base64

{base64.b64encode("お問い合わせを受け付けました。".encode()).decode()}
""")))
    out.append(("dots and a 5,000-character line", "dots@ext.test", [], crlf("""\
Message-ID: <dots-7@ext.test>
Date: Sun, 9 Jun 2024 10:00:00 +0000
From: dots@ext.test
To: alice@example.com
Subject: dots

.
..
.leading dot
""") + b"x" * 5000 + b"\r\nend\r\n"))
    big = bytes(rnd.getrandbits(8) for _ in range(300_000))
    out.append(("300 KB base64 attachment", "big@ext.test", [], crlf("""\
Message-ID: <big-8@ext.test>
Date: Mon, 10 Jun 2024 10:00:00 +0000
From: big@ext.test
To: alice@example.com
Subject: big attachment
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="big"

--big
Content-Type: text/plain

A file follows.
--big
Content-Type: application/octet-stream; name="blob.bin"
Content-Transfer-Encoding: base64

""") + b64_lines(big) + crlf("""\
--big--
""")))
    return out


def message_id(data):
    m = re.search(rb"\r\nMessage-ID: (<[^>\r\n]+>)\r\n", b"\r\n" + data, re.I)
    return m.group(1).decode() if m else None


# ---------------------------------------------------------------------------
# Matching structures worked out by hand


class CI:
    """A string compared without regard to case (MIME types, encodings, parameter names)."""

    def __init__(self, s):
        self.s = s.encode() if isinstance(s, str) else s

    def __repr__(self):
        return f"CI({self.s!r})"


class OneOf:
    """Any of these values (where RFC 3501 leaves a choice, such as the line count of a part
    whose last line has no CRLF)."""

    def __init__(self, *options):
        self.options = options


class Part:
    """A non-multipart body: the fields every server sends, then extension data that may be
    left off (but if sent must be these values, in this order)."""

    def __init__(self, required, ext=()):
        self.required, self.ext = list(required), list(ext)


class Multi:
    def __init__(self, parts, subtype, ext=()):
        self.parts, self.subtype, self.ext = list(parts), subtype, list(ext)


def match(got, want, path, extensible=True):
    if isinstance(want, OneOf):
        errors = []
        for option in want.options:
            try:
                return match(got, option, path, extensible)
            except AssertionError as e:
                errors.append(str(e))
        raise AssertionError(f"{path}: none of the allowed values: {'; '.join(errors)}")
    if isinstance(want, CI):
        assert isinstance(got, bytes), f"{path}: got {got!r}, wanted a string {want.s!r}"
        assert got.lower() == want.s.lower(), f"{path}: got {got!r}, wanted {want.s!r} (any case)"
    elif want is None:
        assert got is None, f"{path}: got {got!r}, wanted NIL"
    elif isinstance(want, int):
        assert isinstance(got, Atom) and got.isdigit() and int(got) == want, f"{path}: got {got!r}, wanted {want}"
    elif isinstance(want, bytes):
        assert isinstance(got, bytes), f"{path}: got {got!r} (not a string), wanted {want!r}"
        assert got == want, f"{path}: got {got!r}, wanted {want!r}"
    elif isinstance(want, Part):
        assert isinstance(got, list), f"{path}: got {got!r}, wanted a body part"
        n = len(want.required)
        assert len(got) >= n, f"{path}: {len(got)} fields, wanted at least {n}: {got!r}"
        for i, w in enumerate(want.required):
            match(got[i], w, f"{path}[{i}]", extensible)
        if not extensible:
            assert len(got) == n, f"{path}: BODY (not BODYSTRUCTURE) carries extension data: {got[n:]!r}"
        for i, g in enumerate(got[n:]):
            if i < len(want.ext):
                match(g, want.ext[i], f"{path}[{n + i}] (extension)", extensible)
    elif isinstance(want, Multi):
        assert isinstance(got, list), f"{path}: got {got!r}, wanted a multipart"
        n = len(want.parts)
        lists = 0
        while lists < len(got) and isinstance(got[lists], list):
            lists += 1
        assert lists == n, f"{path}: {lists} body parts, wanted {n}: {got!r}"
        for i, w in enumerate(want.parts):
            match(got[i], w, f"{path}.{i + 1}", extensible)
        assert len(got) > n, f"{path}: no multipart subtype"
        match(got[n], want.subtype, f"{path} subtype", extensible)
        if not extensible:
            assert len(got) == n + 1, f"{path}: BODY (not BODYSTRUCTURE) carries multipart extension data: {got[n + 1:]!r}"
        for i, g in enumerate(got[n + 1:]):
            if i < len(want.ext):
                match(g, want.ext[i], f"{path} extension {i}", extensible)
    elif isinstance(want, list):
        assert isinstance(got, list), f"{path}: got {got!r}, wanted a list {want!r}"
        assert len(got) == len(want), f"{path}: {len(got)} items, wanted {len(want)}: got {got!r}"
        for i, (g, w) in enumerate(zip(got, want)):
            match(g, w, f"{path}[{i}]", extensible)
    else:
        raise AssertionError(f"{path}: bad expectation {want!r}")


def body_of(msg):
    return msg.split(b"\r\n\r\n", 1)[1]


def plain_expectations():
    body = body_of(MSG_PLAIN)
    assert body.count(b"\r\n") == 5
    envelope = [
        b"Mon, 3 Jun 2024 09:00:00 +0900", b"Plain text",
        [[b"Sender Name", None, b"sender", b"ext.test"]],
        [[b"Sender Name", None, b"sender", b"ext.test"]],
        [[None, None, b"replies", b"ext.test"]],
        [[b"Alice", None, b"alice", b"example.com"], [None, None, b"bob", b"example.com"]],
        [[b"Carol C.", None, b"carol", b"example.com"]],
        None, b"<parent@ext.test>", b"<plain-1@ext.test>",
    ]
    structure = Part([CI("text"), CI("plain"), [CI("charset"), CI("us-ascii")], None, None, CI("7bit"), len(body), 5],
                     [None, None, None, None])
    return envelope, structure


def odd_expectations():
    m = MSG_ODD
    inner = m[m.index(b"Message-ID: <in@x>"):m.index(b"--i--") + len(b"--i--")]
    assert inner.count(b"\r\n") == 13
    envelope = [
        b"Tue, 11 Jun 2024 10:00:00 +0000", b"",
        [[None, None, b"a", b"b.test"], [b"Doe, John", None, b"john", b"c.test"]],
        [[b"Secretary", None, b"sec", b"c.test"]],
        [[None, None, OneOf(b"john doe", b'"john doe"'), b"f.test"]],
        [[None, None, b"undisclosed-recipients", None], [None, None, None, None]],
        [[None, None, b"Team", None], [None, None, b"t1", b"d.test"], [b"T Two", None, b"t2", b"d.test"],
         [None, None, None, None], [None, None, b"solo", b"e.test"]],
        None, b"<p1@x> <p2@x>", b"<odd-9@ext.test>",
    ]

    def text(subtype, size):
        return Part([CI("text"), CI(subtype), [CI("charset"), CI("us-ascii")], None, None, CI("7bit"), size, OneOf(0, 1)],
                    [None, None, None, None])

    inner_env = [None, b"inner", None, None, None, None, None, None, None, b"<in@x>"]
    structure = Multi(
        [
            text("plain", 5),
            Part([CI("message"), CI("rfc822"), None, None, None, CI("7bit"), len(inner), inner_env,
                  Multi([text("plain", 5), text("html", 11)], CI("alternative"), [[CI("boundary"), b"i"], None, None, None]),
                  OneOf(13, 14)], [None, None, None, None]),
        ],
        CI("mixed"), [[CI("boundary"), b"o"], None, None, None],
    )
    sections = {"1": b"outer", "2": inner, "2.1": b"plain", "2.2": b"<p>html</p>",
                "2.HEADER": inner[:inner.index(b"\r\n\r\n") + 4], "2.1.MIME": b"Content-Type: text/plain\r\n\r\n"}
    return envelope, structure, sections


def rfc5322_envelope():
    return [
        b"Thu, 13 Feb 1969 23:32:54 -0330", b"RFC 5322 appendix A",
        [[b"Pete", None, b"pete", b"silly.test"]],
        [[b"Joe Q. Public", None, b"john.q.public", b"example.com"]],
        [[b"Mary Smith", b"@node.test", b"mary", b"example.net"]],
        [[None, None, b"A Group", None], [b"Chris Jones", None, b"c", b"public.example"],
         [None, None, b"joe", b"example.org"], [b"John", None, b"jdoe", b"one.test"], [None, None, None, None]],
        [[None, None, b"Hidden recipients", None], [None, None, None, None]],
        [[b'Giant; "Big" Box', None, b"sysservices", b"example.net"]],
        None, b"<rfc5322-10@ext.test>",
    ]


def foreign_8bit(value, raw, path="."):
    """Strings with 8-bit octets that the message itself does not contain: decoded text
    (RFC 2047, RFC 2231) sent raw, which IMAP4rev1 without UTF8=ACCEPT does not do."""
    out = []
    if isinstance(value, list):
        for i, v in enumerate(value):
            out += foreign_8bit(v, raw, f"{path}[{i}]")
    elif isinstance(value, bytes) and any(b > 127 for b in value) and value not in raw:
        out.append(f"{path} = {value!r}")
    return out


def fwd_expectations():
    m = MSG_FWD
    p11 = b"Gr=C3=BC=C3=9Fe, see the forwarded message.\r\n"
    p12 = b"<p>Gr=C3=BC=C3=9Fe</p>\r\n"
    inner = m[m.index(b"Message-ID: <orig@"):m.index(b"The original body.\r\n") + len(b"The original body.\r\n")]
    assert inner.count(b"\r\n") == 7
    p3 = b"AAECAwQFBgcICQ==\r\n"
    inner_env = [
        b"Mon, 3 Jun 2024 08:00:00 +0000", b"original",
        [[b"Someone", None, b"someone", b"elsewhere.test"]],
        [[b"Someone", None, b"someone", b"elsewhere.test"]],
        [[b"Someone", None, b"someone", b"elsewhere.test"]],
        [[None, None, b"fwd", b"ext.test"]],
        None, None, None, b"<orig@elsewhere.test>",
    ]
    inner_body = Part([CI("text"), CI("plain"), [CI("charset"), CI("us-ascii")], None, None, CI("7bit"), 20, 1],
                      [None, None, None, None])
    structure = Multi(
        [
            Multi(
                [
                    Part([CI("text"), CI("plain"), [CI("charset"), CI("utf-8")], None, None, CI("quoted-printable"),
                          len(p11), 1], [None, None, None, None]),
                    Part([CI("text"), CI("html"), [CI("charset"), CI("utf-8")], None, None, CI("quoted-printable"),
                          len(p12), 1], [None, None, None, None]),
                ],
                CI("alternative"), [[CI("boundary"), b"alt"], None, None, None],
            ),
            Part([CI("message"), CI("rfc822"), None, None, None, CI("7bit"), len(inner), inner_env, inner_body, 7],
                 [None, [CI("attachment"), None], None, None]),
            Part([CI("application"), CI("octet-stream"), [CI("name"), b"data.bin"], None, None, CI("base64"), len(p3)],
                 [None, [CI("attachment"), [CI("filename"), b"data.bin"]], None, None]),
        ],
        CI("mixed"), [[CI("boundary"), b"fw"], None, None, None],
    )
    envelope = [
        b"Tue, 4 Jun 2024 10:30:00 +0000", b"Fwd: original",
        [[None, None, b"fwd", b"ext.test"]], [[None, None, b"fwd", b"ext.test"]], [[None, None, b"fwd", b"ext.test"]],
        [[None, None, b"alice", b"example.com"]], None, None, None, b"<fwd-2@ext.test>",
    ]
    sections = {
        "1.1": p11,
        "1.2": p12,
        "1.MIME": b'Content-Type: multipart/alternative; boundary="alt"\r\n\r\n',
        "2": inner,
        "2.HEADER": inner[: inner.index(b"\r\n\r\n") + 4],
        "2.TEXT": b"The original body.\r\n",
        "2.1": b"The original body.\r\n",
        "2.HEADER.FIELDS (SUBJECT)": b"Subject: original\r\n\r\n",
        "3": p3,
        "3.MIME": (b'Content-Type: application/octet-stream; name="data.bin"\r\n'
                   b'Content-Disposition: attachment; filename="data.bin"\r\n'
                   b"Content-Transfer-Encoding: base64\r\n\r\n"),
        "TEXT": body_of(m),
    }
    return envelope, structure, sections


# ---------------------------------------------------------------------------
# Small helpers over imaplib


def expect(M, typ_data, want, what):
    typ, data = typ_data
    assert typ == want, f"{what}: got {typ} {data!r}, wanted {want}"
    return data


def cmd(M, what, fn, *args, want="OK"):
    """Runs one imaplib call with the earlier untagged responses cleared; returns (data, untagged)."""
    M.untagged_responses.clear()
    try:
        res = fn(*args)
    except imaplib.IMAP4.error as e:
        raise AssertionError(f"{what}: imaplib raised {e}")
    data = expect(M, res, want, what)
    return data, dict(M.untagged_responses)


def fetch(M, what, seqset, items, uid=False):
    M.untagged_responses.clear()
    try:
        typ, data = M.uid("FETCH", seqset, items) if uid else M.fetch(seqset, items)
    except imaplib.IMAP4.error as e:
        raise AssertionError(f"{what}: FETCH {seqset} {items} raised {e}")
    assert typ == "OK", f"{what}: FETCH {seqset} {items}: {typ} {data!r}"
    return ic.imaplib_fetch(data)


def list_names(M, ref='""', pattern="*", command="LIST"):
    """LIST or LSUB -> {decoded name: (set of attributes, delimiter, wire name)}."""
    M.untagged_responses.clear()
    typ, data = (M.list(ref, pattern) if command == "LIST" else M.lsub(ref, pattern))
    assert typ == "OK", f"{command} {ref} {pattern}: {typ} {data}"
    out = {}
    for resp in ic.join_imaplib(data):
        vals = ic.parse_all(resp)
        assert len(vals) == 3 and isinstance(vals[0], list), f"{command} response not (attrs) delim name: {resp!r}"
        attrs, delim, name = vals
        wire = name.decode() if isinstance(name, bytes) else str(name)
        out[ic.mutf7_decode(wire)] = ({str(a).upper() for a in attrs}, delim, wire)
    return out


def status(M, mailbox, items="(MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)"):
    typ, data = M.status(mailbox, items)
    assert typ == "OK", f"STATUS {mailbox}: {typ} {data}"
    vals = ic.parse_all(ic.join_imaplib(data)[0])
    assert len(vals) == 2 and isinstance(vals[1], list), f"STATUS response: {data!r}"
    kv = vals[1]
    return {str(kv[i]).upper(): int(kv[i + 1]) for i in range(0, len(kv), 2)}


def code_in(M, text, name):
    """A response code such as [APPENDUID 1 2]: from the tagged text or an untagged OK."""
    if isinstance(text, list):
        text = b" ".join(t for t in text if isinstance(t, bytes))
    m = re.search(rb"\[" + name.encode() + rb" ([^\]]*)\]", text or b"")
    if m:
        return m.group(1).decode()
    got = M.untagged_responses.get(name.upper())
    if got:
        return got[-1].decode()
    return None


def seq_uids(M):
    """The current UID of each sequence number, in order."""
    got = fetch(M, "UID map", "1:*", "(UID)")
    return [int(got[n]["UID"]) for n in sorted(got)]


def uid_set_expand(s):
    out = []
    for piece in s.split(","):
        if ":" in piece:
            a, b = (int(x) for x in piece.split(":"))
            out += list(range(min(a, b), max(a, b) + 1))
        else:
            out.append(int(piece))
    return out


def client_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def no_imaplib_error(fn, *args):
    try:
        return fn(*args)
    except imaplib.IMAP4.error as e:
        return ("RAISED", [str(e).encode()])


# ---------------------------------------------------------------------------
# The checks


def capability_checks(srv):
    r = ic.RawImap(srv.imap)
    assert re.match(rb"\* OK\b", r.greeting), f"IMAP greeting is not '* OK ...': {r.greeting!r}"
    resp, untagged = r.ok("CAPABILITY")
    caps_lines = [u for u in untagged if u.upper().startswith(b"* CAPABILITY ")]
    assert len(caps_lines) == 1, f"CAPABILITY: wanted one untagged CAPABILITY, got {untagged!r}"
    pre = set(caps_lines[0].decode().upper().split()[2:])
    for want in ("IMAP4REV1", "SASL-IR", "AUTH=PLAIN"):
        assert want in pre, f"CAPABILITY before login lacks {want}: {sorted(pre)}"
    assert "STARTTLS" not in pre, f"STARTTLS advertised without [tls]: {sorted(pre)}"
    assert "LOGINDISABLED" not in pre, f"LOGINDISABLED without any TLS to turn to: {sorted(pre)}"
    r.ok("NOOP", what="NOOP before login")
    r.login(ALICE, PW[ALICE])
    resp, untagged = r.ok("CAPABILITY")
    post = set(next(u for u in untagged if u.upper().startswith(b"* CAPABILITY ")).decode().upper().split()[2:])
    for want in WANT_CAPS:
        assert want in post, f"CAPABILITY after login lacks {want}: {sorted(post)}"
    r.ok("NOOP")
    status_, text, untagged = r.cmd("LOGOUT")
    assert status_ == "OK" and any(u.upper().startswith(b"* BYE") for u in untagged), (
        f"LOGOUT: wanted '* BYE' then OK, got {status_} {text!r} after {untagged!r}")
    assert r.is_closed(wait=5), "the server did not close the connection after LOGOUT"
    r.close()
    ok(f"CAPABILITY before login: {' '.join(sorted(pre))}; after: {' '.join(sorted(post))}; no STARTTLS/LOGINDISABLED "
       "without [tls]; NOOP; LOGOUT -> BYE, OK, closed")


def auth_checks(srv):
    M = imaplib.IMAP4(h.HOST, srv.imap, timeout=30)
    try:
        M.login(ALICE, "wrong-password")
        raise AssertionError("LOGIN with a wrong password succeeded")
    except imaplib.IMAP4.error as e:
        assert "[AUTHENTICATIONFAILED]" in str(e), f"bad password: wanted NO [AUTHENTICATIONFAILED], got {e}"
    try:
        M.login("nobody@example.com", "whatever")
        raise AssertionError("LOGIN of an unknown user succeeded")
    except imaplib.IMAP4.error as e:
        assert "[AUTHENTICATIONFAILED]" in str(e), f"unknown user: wanted NO [AUTHENTICATIONFAILED], got {e}"
    typ, _ = M.login(ALICE, PW[ALICE])
    assert typ == "OK" and M.state == "AUTH"
    M.logout()
    ok("LOGIN: wrong password and unknown user -> NO [AUTHENTICATIONFAILED]; then the right one -> OK")

    M = imaplib.IMAP4(h.HOST, srv.imap, timeout=30)
    typ, data = M.authenticate("PLAIN", lambda _: f"\0{ALICE}\0{PW[ALICE]}".encode())
    assert typ == "OK", f"AUTHENTICATE PLAIN through imaplib: {typ} {data}"
    assert status(M, "INBOX")["MESSAGES"] > 0
    M.logout()
    M = imaplib.IMAP4(h.HOST, srv.imap, timeout=30)
    try:
        M.authenticate("PLAIN", lambda _: f"\0{ALICE}\0nope".encode())
        raise AssertionError("AUTHENTICATE PLAIN with a wrong password succeeded")
    except imaplib.IMAP4.error as e:
        assert "[AUTHENTICATIONFAILED]" in str(e), f"AUTHENTICATE with a bad password: {e}"
    M.shutdown()
    ok("AUTHENTICATE PLAIN through imaplib (continuation then response): OK; a wrong password -> NO [AUTHENTICATIONFAILED]")

    r = ic.RawImap(srv.imap)
    ir = base64.b64encode(f"\0{ALICE}\0{PW[ALICE]}".encode()).decode()
    r.send(f"a1 AUTHENTICATE PLAIN {ir}\r\n")
    first = r.response()
    assert not first.startswith(b"+"), f"SASL-IR: the server asked for a continuation despite the initial response: {first!r}"
    assert first.startswith(b"a1 OK") or first.startswith(b"* "), f"SASL-IR: {first!r}"
    if not first.startswith(b"a1 "):
        st, text, _ = r.until("a1")
        assert st == "OK", f"SASL-IR AUTHENTICATE: {st} {text!r}"
    r.ok("STATUS INBOX (MESSAGES)", what="STATUS after SASL-IR login")
    r.close()
    r = ic.RawImap(srv.imap)
    bad = base64.b64encode(f"\0{ALICE}\0nope".encode()).decode()
    st, text, _ = r.cmd(f"AUTHENTICATE PLAIN {bad}")
    assert st == "NO" and b"[AUTHENTICATIONFAILED]" in text, f"SASL-IR with a bad password: {st} {text!r}"
    r.send("a2 AUTHENTICATE PLAIN\r\n")
    cont = r.response()
    assert cont.startswith(b"+"), f"AUTHENTICATE PLAIN without an initial response: wanted '+', got {cont!r}"
    r.send("*\r\n")
    st, text, _ = r.until("a2")
    assert st == "BAD", f"AUTHENTICATE cancelled with '*': RFC 3501 6.2.2 says tagged BAD, got {st} {text!r}"
    st, text, _ = r.cmd("AUTHENTICATE X-NO-SUCH-MECH")
    assert st in ("NO", "BAD"), f"AUTHENTICATE with an unknown mechanism: {st} {text!r}"
    r.login(ALICE, PW[ALICE])
    r.close()
    ok("SASL-IR: AUTHENTICATE PLAIN <initial response> -> OK without '+'; bad one -> NO [AUTHENTICATIONFAILED]; "
       "'*' cancels with BAD; unknown mechanism refused")


def mailbox_checks(srv):
    M = h.imap_login(srv.imap, ALICE, PW[ALICE])
    names = list_names(M)
    for want in ("INBOX",) + tuple(SPECIAL):
        assert want in names, f"LIST \"\" * lacks {want}: {sorted(names)}"
    for name, attr in SPECIAL.items():
        assert attr.upper() in names[name][0], f"LIST: {name} lacks the special-use attribute {attr}: {names[name][0]}"
    for name, (attrs, delim, _) in names.items():
        assert delim == b"/", f"LIST: hierarchy delimiter of {name} is {delim!r}, wanted \"/\""
        if name not in SPECIAL:
            assert not attrs & {a.upper() for a in SPECIAL.values()}, f"{name} carries a special-use attribute: {attrs}"
    ok("LIST \"\" *: INBOX and Sent Drafts Trash Junk Archive with \\Sent \\Drafts \\Trash \\Junk \\Archive; delimiter \"/\"")

    typ, data = M.list('""', '""')
    vals = ic.parse_all(ic.join_imaplib(data)[0])
    assert vals[1] == b"/" and vals[2] in (b"", Atom("")), f'LIST "" "": wanted the delimiter and an empty name, got {vals!r}'
    assert "\\NOSELECT" in {str(a).upper() for a in vals[0]}, f'LIST "" "" lacks \\Noselect: {vals!r}'
    ok('LIST "" "" -> (\\Noselect) "/" ""')

    uni = "Projekt/Übersicht"
    jp = "日本語"
    for name in ("Work", "Work/Sub", "Projekt", uni, jp, "Trailing/"):
        cmd(M, f"CREATE {name}", M.create, quote(ic.mutf7_encode(name)))
    names = list_names(M)
    assert names[uni][2] == "Projekt/&ANw-bersicht", f"LIST shows {uni!r} as {names[uni][2]!r}, wanted Projekt/&ANw-bersicht"
    assert names[jp][2] == "&ZeVnLIqe-", f"LIST shows {jp!r} as {names[jp][2]!r}, wanted &ZeVnLIqe-"
    assert "Trailing" in names and "Trailing/" not in names, f"CREATE \"Trailing/\" (RFC 3501: the trailing delimiter is a declaration): {sorted(names)}"
    typ, data = M.create("Work")
    assert typ == "NO", f"CREATE of an existing mailbox: {typ} {data}"
    typ, data = M.create("INBOX")
    assert typ == "NO", f"CREATE INBOX: {typ} {data}"
    typ, data = M.create("inbox")
    assert typ == "NO", f"CREATE inbox (INBOX is case-insensitive): {typ} {data}"
    ok("CREATE Work, Work/Sub, Projekt/Übersicht (LIST: Projekt/&ANw-bersicht), 日本語 (&ZeVnLIqe-), Trailing/ (-> Trailing); "
       "existing names and INBOX refused with NO")

    top = list_names(M, '""', "%")
    assert "Work" in top and "Work/Sub" not in top and "INBOX" in top, f'LIST "" %: {sorted(top)}'
    sub = list_names(M, '""', "Work/%")
    assert set(sub) == {"Work/Sub"}, f'LIST "" Work/%: {sorted(sub)}'
    ref = list_names(M, '"Work/"', "%")
    assert set(ref) == {"Work/Sub"}, f'LIST "Work/" %: {sorted(ref)}'
    inbox = list_names(M, '""', "inbox")
    assert set(inbox) == {"INBOX"}, f'LIST "" inbox (INBOX matches in any case): {sorted(inbox)}'
    star = list_names(M, '""', "Pro*")
    assert set(star) == {"Projekt", uni}, f'LIST "" Pro*: {sorted(star)}'
    ok('LIST patterns: % stops at "/", Work/%, reference "Work/", "inbox" in any case, Pro* crosses levels')

    cmd(M, "CREATE Parent/Child", M.create, "Parent/Child")
    typ, data = M.delete("Parent")
    names = list_names(M)
    assert "Parent/Child" in names, f"DELETE Parent ({typ}) removed its child Parent/Child (RFC 3501 6.3.4 forbids): {sorted(names)}"
    if typ == "OK":
        top = list_names(M, '""', "%")
        assert "Parent" in top and "\\NOSELECT" in top["Parent"][0], (
            f'after DELETE Parent with a child: LIST "" % must show Parent as \\Noselect (RFC 3501 6.3.8): {top.get("Parent")}')
    cmd(M, "DELETE Work/Sub", M.delete, "Work/Sub")
    assert "Work/Sub" not in list_names(M), "DELETE Work/Sub left it in LIST"
    typ, data = M.delete("No/Such")
    assert typ == "NO", f"DELETE of a missing mailbox: {typ} {data}"
    typ, data = M.delete("INBOX")
    assert typ == "NO", f"DELETE INBOX: {typ} {data}"
    cmd(M, "CREATE Work/Sub", M.create, "Work/Sub")
    ok(f"DELETE: a parent keeps its child (server said {typ} to it), a leaf goes, missing names and INBOX -> NO")

    cmd(M, "RENAME Projekt Projects", M.rename, "Projekt", "Projects")
    names = list_names(M)
    assert "Projects" in names and "Projects/Übersicht" in names, f"RENAME with a child: {sorted(names)}"
    assert not any(n.startswith("Projekt") for n in names), f"RENAME left the old names: {sorted(names)}"
    typ, data = M.rename("Projects", "Work")
    assert typ == "NO", f"RENAME onto an existing mailbox: {typ} {data}"
    typ, data = M.rename("No-Such", "Whatever")
    assert typ == "NO", f"RENAME of a missing mailbox: {typ} {data}"
    ok("RENAME Projekt -> Projects moves Projekt/Übersicht along; onto an existing name or from a missing one -> NO")

    before = set(list_names(M, '""', "*", "LSUB"))
    cmd(M, "SUBSCRIBE Work", M.subscribe, "Work")
    cmd(M, "SUBSCRIBE Projects/Übersicht", M.subscribe, quote(ic.mutf7_encode("Projects/Übersicht")))
    typ, _ = M.subscribe("Not/There")  # RFC 3501 6.3.6: the server MAY refuse a name that does not exist
    subs = set(list_names(M, '""', "*", "LSUB"))
    assert {"Work", "Projects/Übersicht"} <= subs, f"LSUB after SUBSCRIBE Work, Projects/Übersicht: {sorted(subs)}"
    assert ("Not/There" in subs) == (typ == "OK"), f"SUBSCRIBE Not/There said {typ}, LSUB: {sorted(subs)}"
    sub_lsub = set(list_names(M, '""', "Work", "LSUB"))
    assert sub_lsub == {"Work"}, f'LSUB "" Work: {sorted(sub_lsub)}'
    cmd(M, "UNSUBSCRIBE Work", M.unsubscribe, "Work")
    subs2 = set(list_names(M, '""', "*", "LSUB"))
    assert "Work" not in subs2 and "Projects/Übersicht" in subs2, f"LSUB after UNSUBSCRIBE Work: {sorted(subs2)}"
    extra = {"Projects/Übersicht"} | ({"Not/There"} if typ == "OK" else set())
    assert subs2 - before == extra, f"LSUB changed beyond what was asked: before {sorted(before)} after {sorted(subs2)}"
    ok(f"SUBSCRIBE/UNSUBSCRIBE/LSUB (a name that does not exist: {typ}; subscribed by default: {sorted(before)})")
    # RFC 3501 6.3.9: "%" stops at Projects, which is not subscribed but has a subscribed
    # child: it is listed with \Noselect, and the child is not.
    top = list_names(M, '""', "%", "LSUB")
    assert "Projects" not in subs2, f"Projects was subscribed: {sorted(subs2)}"
    assert "Projects" in top and "\\NOSELECT" in top["Projects"][0], (
        f'LSUB "" %: Projects with \\Noselect wanted: {top}')
    assert "Projects/Übersicht" not in top, f'LSUB "" %: {top}'
    parents = {"Projects"} | ({"Not"} if typ == "OK" else set())
    assert all("\\NOSELECT" not in attrs for n, (attrs, _, _) in top.items() if n not in parents), top
    ok('LSUB "" %: the unsubscribed parent of a subscribed mailbox is listed with \\Noselect, the child is not')

    data, _ = cmd(M, "NAMESPACE", M.namespace)
    vals = ic.parse_all(ic.join_imaplib(data)[0])
    assert len(vals) == 3, f"NAMESPACE: three namespaces wanted, got {vals!r}"
    assert isinstance(vals[0], list) and [b"", b"/"] in vals[0], f'NAMESPACE: personal namespace ("" "/") wanted: {vals!r}'
    ok(f"NAMESPACE: {ic.join_imaplib(data)[0].decode()}")
    M.logout()


def select_checks(srv, n_msgs):
    M = h.imap_login(srv.imap, ALICE, PW[ALICE])
    st = status(M, "INBOX")
    assert st["MESSAGES"] == n_msgs and st["UNSEEN"] == n_msgs and st["RECENT"] == n_msgs, f"STATUS INBOX before any SELECT: {st}"
    r = ic.RawImap(srv.imap)
    r.login(ALICE, PW[ALICE])
    info = r.select("INBOX")
    assert info.get("EXISTS") == n_msgs, f"SELECT INBOX: EXISTS {info.get('EXISTS')}, wanted {n_msgs}: {info}"
    assert info.get("RECENT") == n_msgs, f"SELECT INBOX (first session to see the mail): RECENT {info.get('RECENT')}, wanted {n_msgs}"
    flags = info.get("FLAGS", "")
    for f in ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"):
        assert f.lower() in flags.lower(), f"SELECT: FLAGS {flags!r} lacks {f}"
    assert info.get("UIDVALIDITY", "").isdigit() and int(info["UIDVALIDITY"]) > 0, f"SELECT: no [UIDVALIDITY n]: {info}"
    assert int(info["UIDVALIDITY"]) == st["UIDVALIDITY"], f"SELECT UIDVALIDITY {info['UIDVALIDITY']} != STATUS {st['UIDVALIDITY']}"
    assert info.get("UIDNEXT", "").isdigit() and int(info["UIDNEXT"]) == st["UIDNEXT"], f"SELECT UIDNEXT vs STATUS {st}: {info}"
    pf = info.get("PERMANENTFLAGS", "")
    assert "\\*" in pf and "\\seen" in pf.lower() and "\\deleted" in pf.lower(), f"SELECT: PERMANENTFLAGS {pf!r} (want \\Seen \\Deleted ... \\*)"
    assert b"[READ-WRITE]" in info["tagged"].upper(), f"SELECT tagged OK lacks [READ-WRITE]: {info['tagged']!r}"
    if "UNSEEN" in info:
        assert info["UNSEEN"] == "1", f"SELECT: [UNSEEN {info['UNSEEN']}] but message 1 is the first unseen"
    ok(f"SELECT INBOX: FLAGS, {n_msgs} EXISTS, {n_msgs} RECENT, UIDVALIDITY {info['UIDVALIDITY']}, UIDNEXT {info['UIDNEXT']}, "
       f"PERMANENTFLAGS with \\*, [READ-WRITE]; STATUS agrees")
    r2 = ic.RawImap(srv.imap)
    r2.login(ALICE, PW[ALICE])
    info2 = r2.select("INBOX", examine=True)
    assert info2.get("EXISTS") == n_msgs and info2.get("RECENT") == 0, (
        f"EXAMINE INBOX in a second session: EXISTS {info2.get('EXISTS')} RECENT {info2.get('RECENT')} "
        f"(the first session claimed \\Recent)")
    assert b"[READ-ONLY]" in info2["tagged"].upper(), f"EXAMINE tagged OK lacks [READ-ONLY]: {info2['tagged']!r}"
    assert info2["UIDVALIDITY"] == info["UIDVALIDITY"], "UIDVALIDITY differs between two sessions"
    st, text, _ = r2.cmd("STORE 1 +FLAGS (\\Seen)")
    assert st in ("NO", "OK"), f"STORE in an EXAMINEd mailbox: wanted NO, got {st} {text!r}"
    store_verdict = st
    got = ic.fetch_raw(r2.ok("FETCH 1 (BODY[HEADER] FLAGS)")[1])
    assert "\\SEEN" not in {f.upper() for f in ic.flags_of(got[1])}, (
        "FETCH BODY[] in an EXAMINEd mailbox set \\Seen (or a STORE there changed flags)")
    r2.ok("LOGOUT")
    r2.close()
    r.ok("LOGOUT")
    r.close()
    M.logout()
    ok(f"EXAMINE in a second session: RECENT 0, [READ-ONLY], STORE -> {store_verdict} and changes nothing, "
       "BODY[] there does not set \\Seen")
    return int(info["UIDVALIDITY"])


def fetch_checks(srv, msgs):
    M = h.imap_login(srv.imap, ALICE, PW[ALICE])
    cmd(M, "SELECT", M.select, "INBOX")
    got = fetch(M, "all", "1:*", "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])")
    pop = h.pop3_fetch_all(srv.pop3, ALICE, PW[ALICE])
    assert len(pop) == len(msgs), f"POP3 shows {len(pop)} messages, {len(msgs)} sent"
    assert sorted(got) == list(range(1, len(msgs) + 1)), f"FETCH 1:* answered for {sorted(got)}"
    uids = [int(got[n]["UID"]) for n in sorted(got)]
    assert uids == sorted(uids) and len(set(uids)) == len(uids), f"UIDs not strictly ascending: {uids}"
    pop_by_id = {message_id(d): (n, d) for n, _, d in pop}
    now = datetime.datetime.now(datetime.timezone.utc)
    by_id = {}
    for n in sorted(got):
        it = got[n]
        data = it["BODY[]"]
        mid = message_id(data)
        assert mid in pop_by_id, f"IMAP message {n} ({mid}) not seen over POP3"
        pn, pdata = pop_by_id[mid]
        assert pn == n, f"{mid}: POP3 message {pn}, IMAP sequence number {n}: the orders differ"
        assert data == pdata, f"{mid}: FETCH BODY[] ({len(data)} octets) differs from POP3 RETR ({len(pdata)} octets)"
        assert int(it["RFC822.SIZE"]) == len(data), f"{mid}: RFC822.SIZE {it['RFC822.SIZE']} but BODY[] has {len(data)} octets"
        assert not {f.upper() for f in ic.flags_of(it)} & {"\\SEEN"}, f"{mid}: \\Seen before anything was read: {it['FLAGS']}"
        when = ic.internaldate(it["INTERNALDATE"])
        assert abs((now - when).total_seconds()) < 600, f"{mid}: INTERNALDATE {it['INTERNALDATE']!r} is not the delivery time (now {now})"
        by_id[mid] = (n, uids[n - 1], data)
    for name, sender, _, msg in msgs:
        n, _, data = by_id[message_id(msg)]
        _, rest = h.split_trace(data, msg.split(b"\r\n", 1)[0], sender)
        assert rest == msg, f"{name}: BODY[] after the trace headers differs from what was sent"
    ok(f"FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[]): {len(msgs)} messages, BODY[] byte-equal to POP3 RETR "
       "and to trace + sent bytes; RFC822.SIZE = length; INTERNALDATE = delivery time; PEEK left \\Seen unset")
    # POP3 RETR may mark messages \Seen (servers differ); start the \Seen checks below from a clean slate.
    cmd(M, "STORE -FLAGS", M.store, "1:*", "-FLAGS.SILENT", "(\\Seen)")

    n_plain = by_id["<plain-1@ext.test>"][0]
    n_fwd = by_id["<fwd-2@ext.test>"][0]
    env_plain, bs_plain = plain_expectations()
    env_fwd, bs_fwd, sections = fwd_expectations()
    it = fetch(M, "structure", f"{n_plain},{n_fwd}", "(ENVELOPE BODYSTRUCTURE BODY)")
    match(it[n_plain]["ENVELOPE"], env_plain, "plain ENVELOPE")
    match(it[n_plain]["BODYSTRUCTURE"], bs_plain, "plain BODYSTRUCTURE")
    match(it[n_plain]["BODY"], bs_plain, "plain BODY", extensible=False)
    match(it[n_fwd]["ENVELOPE"], env_fwd, "multipart ENVELOPE")
    match(it[n_fwd]["BODYSTRUCTURE"], bs_fwd, "multipart BODYSTRUCTURE")
    match(it[n_fwd]["BODY"], bs_fwd, "multipart BODY", extensible=False)
    ok("ENVELOPE, BODYSTRUCTURE and BODY of the plain message and of multipart/mixed(alternative, message/rfc822, "
       "base64) equal the values worked out by hand (quoted display name unquoted, Sender/Reply-To defaulted to From, "
       "line counts, dispositions, nested ENVELOPE)")

    n_odd = by_id["<odd-9@ext.test>"][0]
    env_odd, bs_odd, sec_odd = odd_expectations()
    it = fetch(M, "odd", str(n_odd), "(BODYSTRUCTURE " + " ".join(f"BODY.PEEK[{k}]" for k in sec_odd) + ")")[n_odd]
    match(it["BODYSTRUCTURE"], bs_odd, "message/rfc822-holding-a-multipart BODYSTRUCTURE")
    for k, want in sec_odd.items():
        assert it.get(f"BODY[{k}]") == want, f"BODY[{k}] of the message/rfc822 holding a multipart: {it.get(f'BODY[{k}]')!r}, wanted {want!r}"
    ok("a message/rfc822 part holding a multipart: BODYSTRUCTURE and BODY[1] [2] [2.1] [2.2] [2.HEADER] [2.1.MIME] as "
       "worked out by hand (a part ends before the CRLF of the next boundary, RFC 2046 5.1.1)")
    it = fetch(M, "odd env", str(n_odd), "(ENVELOPE)")[n_odd]
    match(it["ENVELOPE"], env_odd, "address-oddities ENVELOPE")
    ok("ENVELOPE with two From addresses (one a quoted name with a comma), Sender, an empty group, a group with members "
       "then another address, a quoted local part in Reply-To, an empty Subject, two In-Reply-To ids: as RFC 3501 7.4.2 "
       "and RFC 5322 3.4 say")

    n_jis = by_id["<jis-5@ext.test>"][0]
    env = fetch(M, "jis", str(n_jis), "(ENVELOPE)")[n_jis]["ENVELOPE"]
    assert env[1] == JIS_SUBJECT.encode(), f"ENVELOPE subject of the ISO-2022-JP message must be the raw encoded word: {env[1]!r}"
    assert env[2] == [[JIS_FROM.encode(), None, b"tanaka", b"ext.test"]], f"ENVELOPE from of the ISO-2022-JP message: {env[2]!r}"
    decoded = []
    for n in sorted(got):
        it = fetch(M, "bs", str(n), "(ENVELOPE BODYSTRUCTURE)")[n]
        assert isinstance(it["BODYSTRUCTURE"], list) and it["BODYSTRUCTURE"], f"message {n}: BODYSTRUCTURE {it!r}"
        raw = got[n]["BODY[]"]
        decoded += [f"message {n} ENVELOPE{x}" for x in foreign_8bit(it["ENVELOPE"], raw)]
        decoded += [f"message {n} BODYSTRUCTURE{x}" for x in foreign_8bit(it["BODYSTRUCTURE"], raw)]
    assert not decoded, ("ENVELOPE/BODYSTRUCTURE carry 8-bit text the messages do not contain (decoded RFC 2047/2231; "
                         "IMAP4rev1 without UTF8=ACCEPT sends parameters and header text as written): " + "; ".join(decoded))
    ok("ENVELOPE keeps encoded words raw (ISO-2022-JP subject and From); no ENVELOPE or BODYSTRUCTURE of any message "
       "carries decoded 8-bit text (RFC 2231 parameters included); BODYSTRUCTURE parses for every message")
    n_5322 = by_id["<rfc5322-10@ext.test>"][0]
    it = fetch(M, "5322", str(n_5322), "(ENVELOPE)")[n_5322]
    match(it["ENVELOPE"], rfc5322_envelope(), "RFC 5322 appendix A ENVELOPE")
    ok("ENVELOPE of the RFC 5322 appendix A addresses: comments (nested, escaped) dropped from names and addresses, "
       "folded group syntax, an empty group, a source route in the adl field, a quoted name with ; and \\\"")

    full = by_id["<fwd-2@ext.test>"][2]
    items = " ".join(f"BODY.PEEK[{s}]" for s in sections)
    it = fetch(M, "sections", str(n_fwd), f"({items})")[n_fwd]
    for s, want in sections.items():
        assert it.get(f"BODY[{s}]") == want, f"BODY[{s}]: got {it.get(f'BODY[{s}]')!r}, wanted {want!r}"
    header = full[: full.index(b"\r\n\r\n") + 4]
    it = fetch(M, "whole", str(n_fwd), "(RFC822.HEADER BODY.PEEK[HEADER] BODY.PEEK[TEXT]<0.10> BODY.PEEK[]<5.20> "
               "BODY.PEEK[1.2]<3.5> BODY.PEEK[]<999999.10> BODY.PEEK[HEADER.FIELDS (SUBJECT)] "
               "BODY.PEEK[HEADER.FIELDS (x-no-such-field)])")[n_fwd]
    assert it["RFC822.HEADER"] == header, f"RFC822.HEADER: {it['RFC822.HEADER'][:200]!r}"
    assert it["BODY[HEADER]"] == header, "BODY[HEADER] differs from the header of BODY[]"
    assert it["BODY[TEXT]<0>"] == sections["TEXT"][:10], f"BODY[TEXT]<0.10>: {it.get('BODY[TEXT]<0>')!r}"
    assert it["BODY[]<5>"] == full[5:25], f"BODY[]<5.20>: {it.get('BODY[]<5>')!r}"
    assert it["BODY[1.2]<3>"] == sections["1.2"][3:8], f"BODY[1.2]<3.5>: {it.get('BODY[1.2]<3>')!r}"
    assert it["BODY[]<999999>"] == b"", f"a partial starting past the end must be empty: {it.get('BODY[]<999999>')!r}"
    assert it["BODY[HEADER.FIELDS (SUBJECT)]"] == b"Subject: Fwd: original\r\n\r\n", (
        f"BODY[HEADER.FIELDS (SUBJECT)]: {it['BODY[HEADER.FIELDS (SUBJECT)]']!r} (the blank line is included, RFC 3501 6.4.5)")
    assert it["BODY[HEADER.FIELDS (X-NO-SUCH-FIELD)]"] == b"\r\n", (
        f"HEADER.FIELDS of a missing field: {it['BODY[HEADER.FIELDS (X-NO-SUCH-FIELD)]']!r}, wanted just the blank line")
    ok("BODY[1.1] [1.2] [1.MIME] [2] [2.HEADER] [2.TEXT] [2.1] [2.HEADER.FIELDS] [3] [3.MIME] [TEXT] [HEADER], "
       "HEADER.FIELDS, partials "
       "<0.10> <5.20> [1.2]<3.5> and past the end, RFC822.HEADER: all exact")

    plain = by_id["<plain-1@ext.test>"][2]
    it = fetch(M, "plain", str(n_plain), "(BODY.PEEK[1] BODY.PEEK[TEXT] BODY.PEEK[HEADER.FIELDS.NOT (Return-Path Received)] "
               "BODY.PEEK[HEADER.FIELDS (subject)])")[n_plain]
    assert it["BODY[1]"] == body_of(MSG_PLAIN) == it["BODY[TEXT]"], f"BODY[1] of a single-part message must be its body: {it['BODY[1]']!r}"
    assert it["BODY[HEADER.FIELDS.NOT (RETURN-PATH RECEIVED)]"] == MSG_PLAIN[: MSG_PLAIN.index(b"\r\n\r\n") + 4], (
        f"HEADER.FIELDS.NOT (Return-Path Received) is not the header that was sent: {it['BODY[HEADER.FIELDS.NOT (RETURN-PATH RECEIVED)]']!r}")
    assert it["BODY[HEADER.FIELDS (SUBJECT)]"] == b"Subject: Plain text\r\n\r\n"
    n_fold = by_id["<utf8subj-6@ext.test>"][0]
    fold = fetch(M, "fold", str(n_fold), "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")[n_fold]["BODY[HEADER.FIELDS (SUBJECT)]"]
    want = re.search(rb"\r\n(Subject: [^\r]*\r\n [^\r]*\r\n)", by_id["<utf8subj-6@ext.test>"][2]).group(1) + b"\r\n"
    assert fold == want, f"HEADER.FIELDS (SUBJECT) of a folded subject: {fold!r}, wanted {want!r}"
    ok("BODY[1] of a single-part message = BODY[TEXT]; HEADER.FIELDS.NOT (Return-Path Received) = the header sent; "
       "field names in any case; a folded field keeps its continuation line")

    n_nested = by_id["<nested-3@ext.test>"][0]
    it = fetch(M, "rfc822", str(n_nested), "(RFC822.TEXT)")[n_nested]
    nested = by_id["<nested-3@ext.test>"][2]
    assert it["RFC822.TEXT"] == body_of(nested), "RFC822.TEXT differs from the body"
    it = fetch(M, "flags", str(n_nested), "(FLAGS)")[n_nested]
    assert "\\SEEN" in {f.upper() for f in ic.flags_of(it)}, f"RFC822.TEXT did not set \\Seen: {it['FLAGS']}"
    n_8 = by_id["<eightbit-4@ext.test>"][0]
    it = fetch(M, "rfc822", str(n_8), "(RFC822)")[n_8]
    assert it["RFC822"] == by_id["<eightbit-4@ext.test>"][2], "RFC822 differs from BODY[]"
    n_dots = by_id["<dots-7@ext.test>"][0]
    it = fetch(M, "peek", str(n_dots), "(BODY.PEEK[])")[n_dots]
    assert "FLAGS" not in it or "\\SEEN" not in {f.upper() for f in ic.flags_of(it)}, f"BODY.PEEK[] set \\Seen: {it}"
    it = fetch(M, "flags", str(n_dots), "(FLAGS)")[n_dots]
    assert "\\SEEN" not in {f.upper() for f in ic.flags_of(it)}, f"BODY.PEEK[] set \\Seen: {it['FLAGS']}"
    it = fetch(M, "body", str(n_dots), "(BODY[])")[n_dots]
    assert it["BODY[]"] == by_id["<dots-7@ext.test>"][2]
    if "FLAGS" in it:
        assert "\\SEEN" in {f.upper() for f in ic.flags_of(it)}, f"BODY[] sent FLAGS without \\Seen: {it['FLAGS']}"
    it = fetch(M, "flags", str(n_dots), "(FLAGS)")[n_dots]
    assert "\\SEEN" in {f.upper() for f in ic.flags_of(it)}, f"BODY[] did not set \\Seen: {it['FLAGS']}"
    ok(f"RFC822 and RFC822.TEXT exact and set \\Seen; BODY.PEEK[] leaves \\Seen unset, BODY[] sets it"
       f"{' (and says so in the same FETCH)' if 'FLAGS' in it else ''}")

    it = fetch(M, "fast", "1", "FAST")[1]
    assert {"FLAGS", "INTERNALDATE", "RFC822.SIZE"} <= set(it), f"FETCH 1 FAST: {sorted(it)}"
    it = fetch(M, "full", "1", "FULL")[1]
    assert {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"} <= set(it), f"FETCH 1 FULL: {sorted(it)}"
    it = fetch(M, "uid", str(uids[2]), "(FLAGS)", uid=True)
    assert list(it) == [3] and int(it[3]["UID"]) == uids[2], f"UID FETCH {uids[2]} (FLAGS): {it} (UID must be included)"
    it = fetch(M, "uid range", f"{uids[1]}:{uids[3]}", "(RFC822.SIZE)", uid=True)
    assert sorted(it) == [2, 3, 4], f"UID FETCH {uids[1]}:{uids[3]}: {sorted(it)}"
    it = fetch(M, "uid star", f"{uids[-1] + 100}:*", "(FLAGS)", uid=True)
    assert list(it) == [len(uids)], f"UID FETCH {uids[-1] + 100}:* must return the last message (RFC 3501 6.4.8): {it}"
    ok("FETCH macros FAST and FULL; UID FETCH includes UID, ranges, and N:* past UIDNEXT returns the last message")
    cmd(M, "CHECK", M.check)
    M.logout()
    return by_id, uids, pop


def inbox_search_checks(srv, by_id):
    """SEARCH over the real-world messages: encoded words, ISO-2022-JP, base64 and QP bodies,
    the text of an attached message, the trace headers."""
    M = h.imap_login(srv.imap, ALICE, PW[ALICE])
    cmd(M, "EXAMINE", M.select, "INBOX", True)
    n = {mid: v[0] for mid, v in by_id.items()}
    cases = [
        (("SUBJECT",), "会議", ["<jis-5@ext.test>"]),
        (("FROM",), "田中", ["<jis-5@ext.test>"]),
        (("BODY",), "日本語の本文", ["<jis-5@ext.test>"]),
        (("BODY",), "受け付けました", ["<utf8subj-6@ext.test>"]),
        (("SUBJECT",), "受付番号", ["<utf8subj-6@ext.test>"]),
        (("BODY",), "Grüße", ["<fwd-2@ext.test>", "<eightbit-4@ext.test>"]),
        (("BODY",), "こんにちは", ["<eightbit-4@ext.test>"]),
    ]
    wrong = []
    for crit, word, want_ids in cases:
        M.literal = word.encode()
        typ, data = M.search("UTF-8", *crit)
        got = sorted(ic.search_result(data)) if typ == "OK" else typ
        want = sorted(n[w] for w in want_ids)
        if got != want:
            wrong.append(f"SEARCH CHARSET UTF-8 {crit[0]} {word!r}: got {got}, wanted {want}")
    for criteria, want_ids in (
        (("BODY", '"The original body"'), ["<fwd-2@ext.test>"]),
        (("TEXT", '"elsewhere.test"'), ["<fwd-2@ext.test>"]),
        (("BODY", '"plain part"'), ["<nested-3@ext.test>"]),
        (("HEADER", "Return-Path", '"big@ext.test"'), ["<big-8@ext.test>"]),
        (("HEADER", "Received", '"client.test"'), list(n)),
        (("CC", '"Carol C."'), ["<plain-1@ext.test>"]),
        (("FROM", '"Sender Name"'), ["<plain-1@ext.test>"]),
    ):
        typ, data = M.search(None, *criteria)
        got = sorted(ic.search_result(data)) if typ == "OK" else typ
        want = sorted(n[w] for w in want_ids)
        if got != want:
            wrong.append(f"SEARCH {' '.join(criteria)}: got {got}, wanted {want}")
    assert not wrong, "SEARCH over the real-world messages:\n  " + "\n  ".join(wrong)
    M.logout()
    ok("SEARCH over the delivered messages: ISO-2022-JP encoded-word Subject and From, ISO-2022-JP and base64 bodies, "
       "8-bit and QP bodies, the text of an attached message/rfc822, trace headers, display names")


def append_checks(srv, uidvalidity):
    M = h.imap_login(srv.imap, ALICE, PW[ALICE])
    draft = crlf("""\
Message-ID: <draft-1@example.com>
Date: Tue, 11 Jun 2024 08:00:00 +0000
From: alice@example.com
To: someone@ext.test
Subject: a draft

unfinished
""")
    when = datetime.datetime(2024, 6, 11, 8, 30, 15, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    before = status(M, "Drafts")
    M.untagged_responses.clear()
    typ, data = M.append("Drafts", "(\\Draft $Custom)", when, draft)
    assert typ == "OK", f"APPEND to Drafts: {typ} {data}"
    code = code_in(M, data, "APPENDUID")
    assert code and re.fullmatch(r"\d+ \d+", code), f"APPEND: tagged OK lacks [APPENDUID uidvalidity uid]: {data!r}"
    av, auid = (int(x) for x in code.split())
    after = status(M, "Drafts")
    assert av == after["UIDVALIDITY"], f"APPENDUID uidvalidity {av} != STATUS Drafts {after['UIDVALIDITY']}"
    assert after["MESSAGES"] == before["MESSAGES"] + 1 and after["UIDNEXT"] > auid >= before["UIDNEXT"], (
        f"STATUS Drafts after APPEND: before {before}, after {after}, APPENDUID {auid}")
    cmd(M, "SELECT Drafts", M.select, "Drafts")
    it = fetch(M, "appended", str(auid), "(FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])", uid=True)
    (n, it), = it.items()
    assert it["BODY[]"] == draft, f"APPENDed message changed on the way: {it['BODY[]']!r}"
    assert int(it["RFC822.SIZE"]) == len(draft)
    flags = {f.upper() for f in ic.flags_of(it)}
    assert {"\\DRAFT", "$CUSTOM"} <= flags and "\\SEEN" not in flags, f"APPEND flags (\\Draft $Custom) came back as {it['FLAGS']}"
    got_when = ic.internaldate(it["INTERNALDATE"])
    assert got_when == when, f"APPEND date {when} came back as INTERNALDATE {it['INTERNALDATE']!r}"
    typ, data = M.append("No/Such/Box", None, None, draft)
    assert typ == "NO" and b"[TRYCREATE]" in b" ".join(data), f"APPEND to a missing mailbox: RFC 3501 wants NO [TRYCREATE], got {typ} {data}"
    ok(f"APPEND Drafts (\\Draft $Custom) with a date: [APPENDUID {av} {auid}], bytes, flags and INTERNALDATE kept; "
       "a missing mailbox -> NO [TRYCREATE]")
    M.logout()


def search_messages():
    big_pad = "".join(f"padding line {i} of the big message\n" for i in range(200))
    g = base64.b64encode("Grüße gamma".encode()).decode()
    s = [
        (crlf("""\
Date: Mon, 1 Jan 2024 10:00:00 +0000
From: Ann Able <ann@a.test>
To: Xavier <x@b.test>
Cc: cc1@c.test
Bcc: secret@d.test
Subject: alpha report
Message-ID: <s1@search.test>
X-Custom: marker-42

the quick brown fox
"""), "(\\Seen \\Answered $Work)", datetime.datetime(2024, 1, 5, 12, tzinfo=datetime.timezone.utc)),
        (crlf("""\
Date: Thu, 15 Feb 2024 23:30:00 -0500
From: Bob Baker <bob@b.test>
To: ann@a.test
Subject: beta plan
Message-ID: <s2@search.test>

lazy dog jumps over
"""), "(\\Flagged \\Draft)", datetime.datetime(2024, 2, 20, 12, tzinfo=datetime.timezone.utc)),
        (crlf(f"""\
Date: Sun, 10 Mar 2024 08:00:00 +0000
From: carol@c.test
To: ann@a.test
Subject: =?UTF-8?B?{g}?=
Message-ID: <s3@search.test>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Grüße aus Köln, zebra
{big_pad}"""), "(\\Deleted)", datetime.datetime(2024, 3, 10, 12, tzinfo=datetime.timezone.utc)),
        (crlf("""\
Date: Sun, 10 Mar 2024 09:00:00 +0000
From: dave@d.test
To: x@b.test
Subject: delta
Message-ID: <s4@search.test>

short
"""), "(\\Seen)", datetime.datetime(2024, 3, 10, 13, tzinfo=datetime.timezone.utc)),
        (crlf("""\
Date: Mon, 1 Apr 2024 09:00:00 +0000
From: erin@e.test
To: x@b.test
Cc: ann@a.test
Subject: epsilon QP
Message-ID: <s5@search.test>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Caf=C3=A9 au lait, zebra
"""), "($Later)", datetime.datetime(2024, 4, 1, 12, tzinfo=datetime.timezone.utc)),
    ]
    return s


def search_checks(srv):
    M = h.imap_login(srv.imap, ALICE, PW[ALICE])
    cmd(M, "CREATE SearchBox", M.create, "SearchBox")
    msgs = search_messages()
    for m, flags, when in msgs[:2]:
        cmd(M, "APPEND", M.append, "SearchBox", flags, when, m)
    other = h.imap_login(srv.imap, ALICE, PW[ALICE])
    cmd(other, "SELECT SearchBox", other.select, "SearchBox")  # claims \Recent of the first two
    other.logout()
    for m, flags, when in msgs[2:]:
        cmd(M, "APPEND", M.append, "SearchBox", flags, when, m)
    data, _ = cmd(M, "SELECT SearchBox", M.select, "SearchBox")
    assert int(data[0]) == 5, f"SearchBox EXISTS {data}"
    recent = M.untagged_responses.get("RECENT", [b"?"])[-1]
    assert recent == b"3", f"SearchBox RECENT {recent!r}, wanted 3 (two were seen by another session first)"
    uids = seq_uids(M)
    sizes = [len(m) for m, _, _ in msgs]
    big = sizes[2]
    others = sorted(sizes[:2] + sizes[3:])
    mid = others[len(others) // 2]

    def search(*criteria, charset=None, literal=None, uid=False):
        M.untagged_responses.clear()
        if literal is not None:
            M.literal = literal
        try:
            if uid:
                typ, data = M.uid("SEARCH", *((["CHARSET", charset] if charset else []) + list(criteria)))
            else:
                typ, data = M.search(charset, *criteria)
        except imaplib.IMAP4.error as e:
            raise AssertionError(f"SEARCH {' '.join(criteria)}: {e}")
        assert typ == "OK", f"SEARCH {' '.join(criteria)}: {typ} {data}"
        return sorted(ic.search_result(data))

    cases = [
        (("ALL",), [1, 2, 3, 4, 5]),
        (("ANSWERED",), [1]), (("UNANSWERED",), [2, 3, 4, 5]),
        (("DELETED",), [3]), (("UNDELETED",), [1, 2, 4, 5]),
        (("DRAFT",), [2]), (("UNDRAFT",), [1, 3, 4, 5]),
        (("FLAGGED",), [2]), (("UNFLAGGED",), [1, 3, 4, 5]),
        (("SEEN",), [1, 4]), (("UNSEEN",), [2, 3, 5]),
        (("KEYWORD", "$Work"), [1]), (("UNKEYWORD", "$Work"), [2, 3, 4, 5]), (("KEYWORD", "$Later"), [5]),
        (("RECENT",), [3, 4, 5]), (("NEW",), [3, 5]), (("OLD",), [1, 2]),
        (("FROM", "ann"), [1]), (("FROM", '"Bob Baker"'), [2]),
        (("TO", "ann@a.test"), [2, 3]), (("TO", "x@b.test"), [1, 4, 5]),
        (("CC", "ann"), [5]), (("CC", "cc1"), [1]), (("BCC", "secret"), [1]),
        (("SUBJECT", "alpha"), [1]), (("SUBJECT", "ALPHA"), [1]), (("SUBJECT", "plan"), [2]),
        (("HEADER", "X-Custom", "marker-42"), [1]), (("HEADER", "Message-ID", "s4@"), [4]),
        (("HEADER", "X-Custom", '""'), [1]),
        (("BODY", '"lazy dog"'), [2]), (("BODY", "zebra"), [3, 5]), (("BODY", "alpha"), []),
        (("TEXT", "alpha"), [1]), (("TEXT", "zebra"), [3, 5]), (("TEXT", "marker-42"), [1]),
        (("BEFORE", "20-Feb-2024"), [1]), (("ON", "10-Mar-2024"), [3, 4]), (("SINCE", "10-Mar-2024"), [3, 4, 5]),
        (("SENTBEFORE", "15-Feb-2024"), [1]), (("SENTON", "15-Feb-2024"), [2]), (("SENTSINCE", "10-Mar-2024"), [3, 4, 5]),
        (("LARGER", str(big - 1)), [3]), (("SMALLER", str(mid + 1)), sorted(i + 1 for i, s in enumerate(sizes) if s < mid + 1)),
        (("NOT", "SEEN"), [2, 3, 5]), (("OR", "SEEN", "FLAGGED"), [1, 2, 4]),
        (("OR", "(FROM ann SUBJECT alpha)", "DELETED"), [1, 3]), (("NOT", "(OR SEEN DELETED)"), [2, 5]),
        (("SEEN", "FROM", "dave"), [4]),
        (("2:4",), [2, 3, 4]), (("2,4:*",), [2, 4, 5]), (("*",), [5]), (("1:*", "UNSEEN"), [2, 3, 5]),
        (("UID", f"{uids[1]}:{uids[3]}"), [2, 3, 4]), (("UID", f"{uids[4]}"), [5]),
    ]
    wrong = []
    for criteria, want in cases:
        got = search(*criteria)
        if got != want:
            wrong.append(f"SEARCH {' '.join(criteria)}: got {got}, wanted {want}")
    assert not wrong, f"{len(wrong)} of {len(cases)} searches gave wrong answers:\n  " + "\n  ".join(wrong)
    got = search("SEEN", uid=True)
    assert got == sorted([uids[0], uids[3]]), f"UID SEARCH SEEN: got {got}, wanted UIDs {uids[0]}, {uids[3]}"
    ok(f"SEARCH: {len(cases)} criteria over 5 messages (every RFC 3501 key, NOT/OR/nesting, sequence sets, UID; "
       "SENTON disregards the zone; HEADER with an empty string) and UID SEARCH give the hand-worked answers")

    utf8 = [
        (("BODY",), "Köln", [3]),
        (("TEXT",), "köln", [3]),
        (("SUBJECT",), "Grüße", [3]),
        (("BODY",), "Café", [5]),
        (("BODY",), "日本", []),
    ]
    for crit, word, want in utf8:
        got = search(*crit, charset="UTF-8", literal=word.encode())
        if got != want:
            wrong.append(f"SEARCH CHARSET UTF-8 {crit[0]} {{literal {word!r}}}: got {got}, wanted {want}")
    assert not wrong, ("SEARCH CHARSET UTF-8 (8-bit body; case folding; encoded-word subject; quoted-printable body "
                       "decoded):\n  " + "\n  ".join(wrong))
    typ, data = no_imaplib_error(M.search, "X-UNKNOWN-CHARSET", "TEXT", "x")
    assert typ in ("NO", "RAISED") and (typ == "RAISED" or b"BADCHARSET" in b" ".join(d for d in data if d)), (
        f"SEARCH CHARSET X-UNKNOWN-CHARSET: RFC 3501 wants NO [BADCHARSET], got {typ} {data}")
    ok("SEARCH CHARSET UTF-8 with literals: 8-bit body, case-folded non-ASCII, encoded-word subject, QP body; "
       "an unknown charset -> NO [BADCHARSET]")
    M.logout()


def store_copy_move_checks(srv, inbox_uids):
    M = h.imap_login(srv.imap, ALICE, PW[ALICE])
    cmd(M, "SELECT INBOX", M.select, "INBOX")
    M.untagged_responses.clear()
    typ, data = M.copy("1:*", "Work")
    assert typ == "OK", f"COPY 1:* Work: {typ} {data}"
    code = code_in(M, data, "COPYUID")
    assert code, f"COPY: no [COPYUID ...] in {data!r}"
    v, src, dst = code.split()
    assert uid_set_expand(src) == inbox_uids, f"COPYUID source set {src} != INBOX UIDs {inbox_uids}"
    dst_uids = uid_set_expand(dst)
    assert len(dst_uids) == len(inbox_uids), f"COPYUID destination set {dst} has {len(dst_uids)} UIDs"
    inbox_data = fetch(M, "inbox", "1:*", "(FLAGS BODY.PEEK[])")
    cmd(M, "SELECT Work", M.select, "Work")
    assert M.untagged_responses["EXISTS"][-1] == str(len(inbox_uids)).encode()
    assert int(M.untagged_responses["UIDVALIDITY"][-1]) == int(v), "COPYUID uidvalidity differs from SELECT Work"
    work = fetch(M, "work", "1:*", "(UID FLAGS BODY.PEEK[])")
    assert [int(work[n]["UID"]) for n in sorted(work)] == dst_uids, "COPYUID destination UIDs differ from the UIDs in Work"
    for n in sorted(work):
        assert work[n]["BODY[]"] == inbox_data[n]["BODY[]"], f"COPY changed message {n}"
        want_flags = {f.upper() for f in ic.flags_of(inbox_data[n])} - {"\\RECENT"}
        got_flags = {f.upper() for f in ic.flags_of(work[n])} - {"\\RECENT"}
        assert got_flags == want_flags, f"COPY did not keep the flags of message {n}: {want_flags} -> {got_flags}"
    ok(f"COPY 1:* Work: [COPYUID {v} {src} {dst}] matches the UIDs, bytes and flags copied")

    def flags_after(data):
        got = ic.imaplib_fetch(data)
        return {n: {f.upper() for f in ic.flags_of(i)} - {"\\RECENT"} for n, i in got.items()}

    data, _ = cmd(M, "STORE +FLAGS", M.store, "1", "+FLAGS", "(\\Flagged)")
    assert "\\FLAGGED" in flags_after(data)[1], f"STORE 1 +FLAGS (\\Flagged): {data}"
    data, _ = cmd(M, "STORE -FLAGS", M.store, "1", "-FLAGS", "(\\Flagged)")
    assert "\\FLAGGED" not in flags_after(data)[1], f"STORE 1 -FLAGS (\\Flagged): {data}"
    data, _ = cmd(M, "STORE FLAGS", M.store, "2", "FLAGS", "(\\Answered $Forwarded Custom1)")
    assert flags_after(data)[2] == {"\\ANSWERED", "$FORWARDED", "CUSTOM1"}, f"STORE 2 FLAGS (\\Answered $Forwarded Custom1): {data}"
    data, _ = cmd(M, "STORE FLAGS.SILENT", M.store, "3", "+FLAGS.SILENT", "(\\Seen \\Draft)")
    assert [d for d in data if d] == [], f"STORE 3 +FLAGS.SILENT sent FETCH responses: {data}"
    it = fetch(M, "flags", "2:3", "(FLAGS)")
    assert {f.upper() for f in ic.flags_of(it[3])} >= {"\\SEEN", "\\DRAFT"}, f"+FLAGS.SILENT did not store: {it[3]}"
    assert {f.upper() for f in ic.flags_of(it[2])} - {"\\RECENT"} == {"\\ANSWERED", "$FORWARDED", "CUSTOM1"}
    data, _ = cmd(M, "STORE -FLAGS keyword", M.store, "2", "-FLAGS", "($Forwarded)")
    assert flags_after(data)[2] == {"\\ANSWERED", "CUSTOM1"}, f"STORE 2 -FLAGS ($Forwarded): {data}"
    work_uids = seq_uids(M)
    M.untagged_responses.clear()
    typ, data = M.uid("STORE", str(work_uids[3]), "+FLAGS", "(\\Flagged)")
    got = ic.imaplib_fetch(data)
    assert list(got) == [4] and int(got[4].get("UID", 0)) == work_uids[3], (
        f"UID STORE {work_uids[3]}: the FETCH response must carry UID (RFC 3501 6.4.8): {data}")
    assert "\\FLAGGED" in {f.upper() for f in ic.flags_of(got[4])}
    M.untagged_responses.clear()
    typ, data = M.search(None, "KEYWORD", "Custom1")
    assert ic.search_result(data) == [2], f"SEARCH KEYWORD Custom1 after STORE: {data}"
    ok("STORE +FLAGS, -FLAGS, FLAGS (system flags and keywords), +FLAGS.SILENT (no FETCH back), UID STORE (FETCH carries UID)")

    # UID COPY, MOVE and UID MOVE.
    M.untagged_responses.clear()
    typ, data = M.uid("COPY", f"{work_uids[0]},{work_uids[2]}", "Archive")
    assert typ == "OK", f"UID COPY: {typ} {data}"
    code = code_in(M, data, "COPYUID")
    assert code and uid_set_expand(code.split()[1]) == [work_uids[0], work_uids[2]], f"UID COPY: COPYUID {code!r}"
    assert status(M, "Archive")["MESSAGES"] == 2
    M.untagged_responses.clear()
    typ, data = M._simple_command("MOVE", "1", "Trash")
    assert typ == "OK", f"MOVE 1 Trash: {typ} {data}"
    code = code_in(M, data, "COPYUID")
    assert code and uid_set_expand(code.split()[1]) == [work_uids[0]], f"MOVE: COPYUID (untagged OK or tagged) missing or wrong: {code!r}"
    exp = [int(x) for x in M.untagged_responses.get("EXPUNGE", [])]
    assert exp == [1], f"MOVE 1 Trash: wanted '* 1 EXPUNGE', got {exp}"
    M.untagged_responses.clear()
    typ, data = M.uid("MOVE", str(work_uids[4]), "Junk")
    assert typ == "OK", f"UID MOVE: {typ} {data}"
    exp = [int(x) for x in M.untagged_responses.get("EXPUNGE", [])]
    assert exp == [4], f"UID MOVE of the message at sequence 4 (after the first MOVE): EXPUNGE {exp}"
    trash = status(M, "Trash")
    junk = status(M, "Junk")
    assert trash["MESSAGES"] == 1 and junk["MESSAGES"] == 1, f"after MOVE: Trash {trash} Junk {junk}"
    left = seq_uids(M)
    assert left == [u for u in work_uids if u not in (work_uids[0], work_uids[4])], f"Work after two MOVEs: {left}"
    ok("UID COPY ([COPYUID]), MOVE 1 Trash (COPYUID, * 1 EXPUNGE), UID MOVE (* 4 EXPUNGE): Work, Trash, Junk agree")

    # EXPUNGE, UID EXPUNGE, CLOSE.
    uids = seq_uids(M)
    cmd(M, "STORE", M.store, "2,4", "+FLAGS.SILENT", "(\\Deleted)")
    M.untagged_responses.clear()
    typ, data = M.expunge()
    assert typ == "OK", f"EXPUNGE: {typ} {data}"
    numbers = [int(x) for x in data if x]
    removed, rest = ic.apply_expunges(uids, numbers)
    assert sorted(removed) == sorted([uids[1], uids[3]]), f"EXPUNGE responses {numbers} removed UIDs {removed}, wanted {uids[1]}, {uids[3]}"
    assert seq_uids(M) == rest, "the mailbox after EXPUNGE does not match the EXPUNGE responses"
    uids = rest
    cmd(M, "STORE", M.store, "1:2", "+FLAGS.SILENT", "(\\Deleted)")
    M.untagged_responses.clear()
    typ, data = M.uid("EXPUNGE", str(uids[0]))
    assert typ == "OK", f"UID EXPUNGE {uids[0]}: {typ} {data}"
    exp = [int(x) for x in M.untagged_responses.get("EXPUNGE", [])] or [int(x) for x in data if x and x.isdigit()]
    assert exp == [1], f"UID EXPUNGE {uids[0]}: wanted exactly '* 1 EXPUNGE', got {exp} / {data}"
    uids = uids[1:]
    assert seq_uids(M) == uids, "UID EXPUNGE removed more than the one UID"
    it = fetch(M, "flags", "1", "(FLAGS)")[1]
    assert "\\DELETED" in {f.upper() for f in ic.flags_of(it)}, "the other \\Deleted message lost its flag"
    cmd(M, "CHECK", M.check)
    r = ic.RawImap(srv.imap)
    r.login(ALICE, PW[ALICE])
    r.select("Work")
    st, text, untagged = r.cmd("CLOSE")
    assert st == "OK", f"CLOSE: {st} {text!r}"
    assert not ic.expunges(untagged), f"CLOSE sent EXPUNGE responses (RFC 3501 6.4.2: silently): {untagged}"
    st, text, _ = r.cmd("FETCH 1 FLAGS")
    assert st in ("BAD", "NO"), f"FETCH after CLOSE (no mailbox selected): {st} {text!r}"
    r.ok("LOGOUT")
    r.close()
    M.untagged_responses.clear()
    typ, _ = M.noop()
    assert status(M, "Work")["MESSAGES"] == len(uids) - 1, "CLOSE did not expunge the \\Deleted message"
    ok("EXPUNGE (responses match the removed UIDs), UID EXPUNGE (only the named UID), CHECK, CLOSE (expunges "
       "silently, back to authenticated state)")
    M.logout()


def misc_checks(srv):
    r = ic.RawImap(srv.imap)
    r.login(ALICE, PW[ALICE])
    caps = set(next(u for u in r.ok("CAPABILITY")[1] if u.upper().startswith(b"* CAPABILITY")).decode().upper().split()[2:])
    st, text, untagged = r.cmd("ENABLE CONDSTORE X-NO-SUCH-EXTENSION")
    assert st == "OK", f"ENABLE with names the server may not know: RFC 5161 wants OK, got {st} {text!r}"
    enabled = set()
    for u in untagged:
        if u.upper().startswith(b"* ENABLED"):
            enabled |= set(u.decode().upper().split()[2:])
    assert "X-NO-SUCH-EXTENSION" not in enabled and enabled <= caps, f"ENABLED {enabled} lists what CAPABILITY does not: {caps}"
    ok(f"ENABLE CONDSTORE X-NO-SUCH-EXTENSION -> OK, ENABLED {sorted(enabled) or '(nothing)'}")

    r.select("INBOX")
    r.send("i1 IDLE\r\n")
    cont = r.response()
    assert cont.startswith(b"+"), f"IDLE: wanted a '+' continuation, got {cont!r}"
    r.send("DONE\r\n")
    st, text, _ = r.until("i1")
    assert st == "OK", f"IDLE ... DONE: {st} {text!r}"
    r.ok("NOOP", what="NOOP after IDLE")
    ok("IDLE -> '+', DONE -> tagged OK, the session goes on")

    # LITERAL+ (RFC 7888): non-synchronizing literals need no continuation.
    r2 = ic.RawImap(srv.imap)
    user, pw = ALICE.encode(), PW[ALICE].encode()
    r2.send(b"l1 LOGIN {%d+}\r\n%s {%d+}\r\n%s\r\n" % (len(user), user, len(pw), pw))
    st, text, _ = r2.until("l1")
    assert st == "OK", f"LOGIN with LITERAL+ literals: {st} {text!r}"
    r2.ok("LOGOUT")
    r2.close()
    r3 = ic.RawImap(srv.imap)
    st, text, _ = r3.cmd_literals(["LOGIN ", user, " ", pw, ""])
    assert st == "OK", f"LOGIN with synchronizing literals: {st} {text!r}"
    r3.close()
    ok("LOGIN with synchronizing literals ({n} + continuation) and with LITERAL+ ({n+}, no continuation)")
    st, text, untagged = r.cmd("LOGOUT")
    assert st == "OK" and any(u.upper().startswith(b"* BYE") for u in untagged), f"LOGOUT: {st} {text!r} {untagged}"
    r.close()


def bob_checks(srv):
    for i in range(2):
        h.send(srv.smtp, "x@ext.test", [BOB], crlf(f"""\
Message-ID: <bob-{i}@ext.test>
From: x@ext.test
To: bob@example.com
Subject: for bob {i}

hello bob
"""))
    M = h.imap_login(srv.imap, BOB, PW[BOB])
    cmd(M, "RENAME INBOX", M.rename, "INBOX", '"Old Inbox"')
    names = list_names(M)
    assert "INBOX" in names and "Old Inbox" in names, f"after RENAME INBOX \"Old Inbox\": {sorted(names)}"
    assert status(M, "INBOX")["MESSAGES"] == 0, "RENAME INBOX left messages in INBOX (RFC 3501 6.3.5: they move, INBOX stays empty)"
    assert status(M, '"Old Inbox"')["MESSAGES"] == 2, "RENAME INBOX did not move the messages to the new name"
    M.logout()
    p = h.pop3_login(srv.pop3, BOB, PW[BOB])
    assert p.stat()[0] == 0, "POP3 still shows the messages moved out of INBOX by RENAME"
    p.quit()
    h.send(srv.smtp, "x@ext.test", [BOB], crlf("""\
Message-ID: <bob-after@ext.test>
From: x@ext.test
Subject: after rename

new mail goes to INBOX
"""))
    M = h.imap_login(srv.imap, BOB, PW[BOB])
    assert status(M, "INBOX")["MESSAGES"] == 1, "new mail after RENAME INBOX did not land in INBOX"
    assert "Work" not in list_names(M), "bob sees alice's mailbox Work"
    M.logout()
    ok("RENAME INBOX \"Old Inbox\": messages move, INBOX stays and is empty (POP3 too), new mail lands in INBOX; "
       "bob does not see alice's mailboxes")


def tls_checks():
    t = h.Tegami("imap-tls")
    cert, key = t.root / "cert.pem", t.root / "key.pem"
    r = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-days", "2",
         "-keyout", str(key), "-out", str(cert)],
        capture_output=True, timeout=120,
    )
    assert r.returncode == 0, f"openssl failed: {r.stderr.decode(errors='replace')}"
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    t.write_config(f'hostname = "mx.test"\n[tls]\ncert = "{cert}"\nkey = "{key}"\n')
    t.domain("example.com")
    t.account(ALICE, PW[ALICE])
    srv = t.serve(imap=True)
    h.send(srv.smtp, "x@ext.test", [ALICE], crlf("Message-ID: <tls@ext.test>\nSubject: tls\n\nover tls\n"))
    M = imaplib.IMAP4(h.HOST, srv.imap, timeout=30)
    assert "STARTTLS" in M.capabilities, f"CAPABILITY lacks STARTTLS with [tls] configured: {M.capabilities}"
    typ, data = M.starttls(ssl_context=client_context())
    assert typ == "OK", f"STARTTLS: {typ} {data}"
    assert M.sock.getpeercert(binary_form=True) == der, "IMAP presented a certificate other than the configured one"
    assert "STARTTLS" not in M.capabilities, f"STARTTLS still advertised inside TLS: {M.capabilities}"
    M.login(ALICE, PW[ALICE])
    M.select("INBOX")
    got = fetch(M, "tls", "1", "(BODY.PEEK[])")
    assert got[1]["BODY[]"].endswith(b"\r\n\r\nover tls\r\n"), f"message fetched over TLS: {got[1]['BODY[]']!r}"
    M.logout()
    ok(f"with [tls]: CAPABILITY lists STARTTLS; imaplib upgrades ({'TLS'}), sees the configured certificate, STARTTLS gone "
       "from CAPABILITY, LOGIN and FETCH work inside TLS")

    c = ic.RawImap(srv.imap)
    c.send(b"s1 STARTTLS\r\ns2 LOGIN alice@example.com " + PW[ALICE].encode() + b"\r\n")
    st, text, _ = c.until("s1")
    if st == "OK":
        try:
            c.sock = client_context().wrap_socket(c.sock, server_hostname="localhost")
            c.buf = b""
            st2, text2, untagged = c.cmd("NOOP", tag="s3")
            assert not any(u.startswith(b"s2 ") for u in untagged), "plaintext sent after STARTTLS was executed inside TLS"
            st3, text3, _ = c.cmd("SELECT INBOX", tag="s4")
            assert st3 != "OK", "the LOGIN pipelined before the TLS handshake was executed: SELECT works without a login inside TLS"
            verdict = "discarded"
        except (h.Closed, ConnectionResetError, ssl.SSLError, OSError):
            verdict = "refused by closing"
    else:
        verdict = f"STARTTLS refused with {st}"
    c.close()
    ok(f"a LOGIN pipelined after STARTTLS in the same packet is not executed inside TLS ({verdict})")
    assert srv.stop() == 0


def test():
    t = h.Tegami("imap-commands")
    t.domain("example.com")
    for a, pw in PW.items():
        t.account(a, pw)
    srv = t.serve(imap=True)
    ok(f"serve ready with smtp {srv.smtp}, pop3 {srv.pop3}, imap {srv.imap}")
    msgs = messages()
    for name, sender, opts, msg in msgs:
        h.send(srv.smtp, sender, [ALICE], msg, options=opts)
    ok(f"{len(msgs)} real-world messages delivered over SMTP")

    capability_checks(srv)
    auth_checks(srv)
    mailbox_checks(srv)
    uidvalidity = select_checks(srv, len(msgs))
    by_id, inbox_uids, pop = fetch_checks(srv, msgs)
    inbox_search_checks(srv, by_id)
    append_checks(srv, uidvalidity)
    search_checks(srv)
    store_copy_move_checks(srv, inbox_uids)
    misc_checks(srv)
    bob_checks(srv)

    pop2 = h.pop3_fetch_all(srv.pop3, ALICE, PW[ALICE])
    assert [d for _, _, d in pop2] == [d for _, _, d in pop], "INBOX over POP3 changed after the IMAP session (copies only)"
    ok("POP3 still sees INBOX byte for byte as before (COPY, flags and the other mailboxes left it alone)")
    t.check_store("after the IMAP commands")
    ok("tegami check passes")
    assert srv.stop() == 0
    tls_checks()


if __name__ == "__main__":
    h.main(test, timeout=120)
