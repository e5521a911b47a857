#!/usr/bin/env python3
"""IMAP4rev2 (RFC 9051) and the extensions it took in that IMAP4rev1 lacked here: BINARY
(RFC 3516), SEARCHRES (RFC 5182) and STATUS SIZE (RFC 8438), over a raw socket.

Checks:
- CAPABILITY names IMAP4rev1 and IMAP4rev2, BINARY, SEARCHRES and STATUS=SIZE; imaplib,
  which speaks IMAP4rev1, still logs in and reads mail.
- BINARY.PEEK[2] of a base64 attachment holding NUL bytes is those bytes exactly, as a
  `~{n}` literal8; BINARY.PEEK[1] of a quoted-printable part is its UTF-8 text, sent as a
  plain literal; BINARY.SIZE agrees; BINARY[] is the message as stored; PEEK leaves \\Seen
  alone and BINARY[1] sets it; a part in x-uuencode answers NO [UNKNOWN-CTE] and the other
  messages of the same FETCH are still answered; base64 that does not decode answers
  NO [PARSE]. APPEND takes a `~{n}` literal8.
- STATUS (MESSAGES SIZE) gives the sum of the messages' RFC822.SIZE.
- SEARCH RETURN (SAVE) answers nothing and keeps the result for `$`: FETCH $, UID FETCH $,
  STORE $ and SEARCH $ act on exactly those messages; SAVE with MIN keeps only the first;
  a SEARCH (SAVE) that fails empties `$`; a message another session expunged leaves `$`;
  `$` in SELECT's QRESYNC parameters is BAD; SEARCH $ over 301 saved messages counts them.
- After ENABLE IMAP4rev2: SELECT names the mailbox in `* LIST () "/" "INBOX"` and sends no
  RECENT; SEARCH answers `* ESEARCH (TAG ...) ALL ...`; FETCH FLAGS carries no \\Recent;
  new mail shows as EXISTS without RECENT. An IMAP4rev1 session meanwhile still gets RECENT.
  Selecting again begins with `* OK [CLOSED]`.
- The store passes `check` afterwards.
"""

import base64
import os
import re
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import imap_common as ic  # noqa: E402
from harness import ok  # noqa: E402

ALICE = "alice@example.com"
PW = "alice-rev2-pw"
PAYLOAD = bytes(range(256)) * 3  # every octet, NUL included
# The quoted-printable part; the line break before the boundary belongs to the boundary.
TEXT = "Grüße, café — 東京"


def plain(n):
    return (f"From: bob@example.com\r\nTo: {ALICE}\r\nSubject: plain {n}\r\n"
            f"Message-ID: <rev2-plain-{n}@example.com>\r\n\r\nplain body {n}\r\n").encode()


def with_attachment():
    qp = "Gr=C3=BC=C3=9Fe, caf=C3=A9 =E2=80=94 =E6=9D=B1=E4=BA=AC\r\n"
    b64 = base64.encodebytes(PAYLOAD).decode().replace("\n", "\r\n")
    return ("From: bob@example.com\r\nTo: alice@example.com\r\nSubject: attachment\r\n"
            "Message-ID: <rev2-attach@example.com>\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/mixed; boundary="sep"\r\n\r\n'
            "--sep\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Transfer-Encoding: quoted-printable\r\n\r\n{qp}"
            "--sep\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Transfer-Encoding: base64\r\n\r\n{b64}"
            "--sep--\r\n").encode()


def uuencoded():
    return ("From: bob@example.com\r\nTo: alice@example.com\r\nSubject: old style\r\n"
            "Message-ID: <rev2-uu@example.com>\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/mixed; boundary="sep"\r\n\r\n'
            "--sep\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
            "--sep\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n"
            "begin 644 a.bin\r\n#86)C\r\n`\r\nend\r\n--sep--\r\n").encode()


def session(srv):
    r = ic.RawImap(srv.imap)
    r.login(ALICE, PW)
    return r


def append(r, message):
    status, text, _ = r.cmd_literals(["APPEND INBOX ", message, ""])
    assert status == "OK", (status, text)


def esearch(untagged):
    lines = [u for u in untagged if u.startswith(b"* ESEARCH")]
    assert len(lines) <= 1, untagged
    return lines[0] if lines else None


def uids_fetched(r, command):
    _, untagged = r.ok(command)
    return sorted(int(items["UID"]) for items in ic.fetch_raw(untagged).values())


def test():
    t = h.Tegami("imap-rev2")
    t.domain("example.com")
    t.account(ALICE, PW)
    srv = t.serve()

    r = session(srv)
    _, untagged = r.ok("CAPABILITY")
    caps = untagged[0].split()
    for cap in (b"IMAP4rev1", b"IMAP4rev2", b"BINARY", b"SEARCHRES", b"STATUS=SIZE"):
        assert cap in caps, (cap, untagged)
    messages = [plain(1), with_attachment(), uuencoded(), plain(4)]
    for m in messages:
        append(r, m)
    m = h.imap_login(srv.imap, ALICE, PW)
    typ, data = m.select("INBOX")
    assert typ == "OK" and data == [b"4"], (typ, data)
    typ, data = m.fetch("2", "(BODY.PEEK[])")
    assert typ == "OK" and data[0][1] == messages[1], (typ, data[:1])
    m.logout()
    ok("CAPABILITY names IMAP4rev1, IMAP4rev2, BINARY, SEARCHRES and STATUS=SIZE; imaplib (IMAP4rev1) reads mail as before")

    # -- BINARY ------------------------------------------------------------------------------
    r.select("INBOX")
    tag = r.next_tag()
    r.send(f"{tag} FETCH 2 (BINARY.PEEK[2] BINARY.SIZE[2] BINARY.PEEK[1] BINARY.SIZE[1] FLAGS)\r\n".encode())
    line = r.response()
    assert line.startswith(b"* 2 FETCH (") and b" BINARY[2] ~{%d}\r\n" % len(PAYLOAD) in line, line[:80]
    status, text, untagged = r.until(tag)
    assert status == "OK", (status, text)
    items = ic.fetch_raw([line])[2]
    assert items["BINARY[2]"] == PAYLOAD, "BINARY[2] is not the attachment's bytes"
    assert int(items["BINARY.SIZE[2]"]) == len(PAYLOAD), items["BINARY.SIZE[2]"]
    assert items["BINARY[1]"] == TEXT.encode(), items["BINARY[1]"]
    assert b"BINARY[1] {%d}" % len(TEXT.encode()) in line, "text without NUL is not a plain literal"
    assert int(items["BINARY.SIZE[1]"]) == len(TEXT.encode()), items
    assert "\\Seen" not in ic.flags_of(items), items
    _, untagged = r.ok("FETCH 2 (BINARY.PEEK[])")
    assert ic.fetch_raw(untagged)[2]["BINARY[]"] == messages[1]
    _, untagged = r.ok("FETCH 1 (BINARY[1])")
    items = ic.fetch_raw(untagged)[1]
    assert items["BINARY[1]"] == b"plain body 1\r\n" and "\\Seen" in ic.flags_of(items), items
    ok(f"BINARY.PEEK[2] gives the {len(PAYLOAD)} octets of a base64 attachment (NUL included) as a ~{{n}} "
       "literal8; BINARY.PEEK[1] the UTF-8 of a quoted-printable part as a plain literal; BINARY.SIZE "
       "agrees; BINARY[] is the message as stored; BINARY[1] sets \\Seen, PEEK does not")

    status, text, untagged = r.cmd("FETCH 1:4 (BINARY.PEEK[2])")
    assert status == "NO" and b"[UNKNOWN-CTE]" in text, (status, text)
    answered = ic.fetch_raw(untagged)
    assert sorted(answered) == [1, 2, 3, 4], answered.keys()
    assert answered[3]["BINARY[2]"] is None and answered[2]["BINARY[2]"] == PAYLOAD, answered[3]
    ok("a part in x-uuencode answers NO [UNKNOWN-CTE], and the other messages of that FETCH are answered")

    # APPEND takes a literal8 (RFC 3516 4.4); base64 that does not decode is NO [PARSE].
    broken = (b"From: bob@example.com\r\nSubject: broken\r\nContent-Transfer-Encoding: base64\r\n"
              b"\r\n!!not base64!!\r\n")
    tag = r.next_tag()
    r.send(f"{tag} APPEND INBOX ~{{{len(broken)}+}}\r\n".encode() + broken + b"\r\n")
    status, text, _ = r.until(tag)
    assert status == "OK" and b"APPENDUID" in text, (status, text)
    uid = int(re.search(rb"APPENDUID \d+ (\d+)", text).group(1))
    status, text, untagged = r.cmd(f"UID FETCH {uid} (BINARY.PEEK[1])")
    assert status == "NO" and b"[PARSE]" in text, (status, text)
    _, untagged = r.ok(f"UID FETCH {uid} (BODY.PEEK[])")
    assert list(ic.fetch_raw(untagged).values())[0]["BODY[]"] == broken
    r.ok(f"UID STORE {uid} +FLAGS.SILENT (\\Deleted)")
    r.ok(f"UID EXPUNGE {uid}")
    ok("APPEND takes a ~{n} literal8 and stores it exactly; BINARY of base64 that does not decode answers "
       "NO [PARSE], never the encoded bytes")

    # -- STATUS SIZE ---------------------------------------------------------------------------
    _, untagged = r.ok("STATUS INBOX (MESSAGES SIZE)")
    assert untagged == [b'* STATUS "INBOX" (MESSAGES 4 SIZE %d)' % sum(map(len, messages))], untagged
    ok(f"STATUS INBOX (MESSAGES SIZE) gives {sum(map(len, messages))} octets, the sum of the messages")

    # -- SEARCHRES -----------------------------------------------------------------------------
    _, untagged = r.ok('SEARCH RETURN (SAVE) OR SUBJECT "plain" SUBJECT "old style"')
    assert esearch(untagged) is None and not any(u.startswith(b"* SEARCH") for u in untagged), untagged
    assert uids_fetched(r, "FETCH $ (UID)") == [1, 3, 4]
    assert uids_fetched(r, "UID FETCH $ (UID)") == [1, 3, 4]
    r.ok("STORE $ +FLAGS.SILENT (\\Flagged)")
    _, untagged = r.ok("SEARCH FLAGGED")
    assert untagged[-1] == b"* SEARCH 1 3 4", untagged
    _, untagged = r.ok("SEARCH $ NOT SUBJECT plain")
    assert untagged[-1] == b"* SEARCH 3", untagged
    r.ok("UID SEARCH RETURN (SAVE MIN) FLAGGED")
    assert uids_fetched(r, "UID FETCH $ (UID)") == [1]
    status, _, _ = r.cmd("SEARCH RETURN (SAVE) CHARSET KOI8-R ALL")
    assert status == "NO", status
    assert uids_fetched(r, "FETCH $ (UID)") == []
    _, untagged = r.ok("SEARCH RETURN (SAVE COUNT) FLAGGED")
    assert esearch(untagged).endswith(b" COUNT 3"), untagged
    other = session(srv)
    other.select("INBOX")
    other.ok("UID STORE 4 +FLAGS.SILENT (\\Deleted)")
    other.ok("UID EXPUNGE 4")
    other.ok("LOGOUT")
    other.close()
    r.ok("NOOP")
    assert uids_fetched(r, "UID FETCH $ (UID)") == [1, 3]
    status, text, _ = r.cmd("SELECT INBOX (QRESYNC (1 1 $))")
    assert status == "BAD" and b"saved search result" in text, (status, text)
    r.select("INBOX")
    # Many saved messages: `$` stands for runs, and SEARCH $ stays quick.
    for i in range(300):
        append(r, plain(100 + i))
    r.select("INBOX")
    r.ok("SEARCH RETURN (SAVE) SUBJECT plain")
    started = time.monotonic()
    _, untagged = r.ok("SEARCH RETURN (COUNT) $ UNDELETED")
    assert esearch(untagged).endswith(b" COUNT 301"), untagged
    assert time.monotonic() - started < 30, "SEARCH $ over 301 saved messages took over 30 s"
    ok("SEARCH RETURN (SAVE) answers nothing; FETCH $, UID FETCH $, STORE $ and SEARCH $ act on the saved "
       "messages; SAVE MIN keeps the first; a failed SEARCH (SAVE) empties $; an expunged message leaves it; "
       "$ in SELECT's QRESYNC is BAD; SEARCH $ over 301 saved messages answers COUNT 301")
    r.ok("LOGOUT")
    r.close()

    # -- IMAP4rev2 mode ------------------------------------------------------------------------
    old = session(srv)
    old.select("INBOX")
    new = session(srv)
    _, untagged = new.ok("ENABLE IMAP4rev2")
    assert untagged == [b"* ENABLED IMAP4rev2"], untagged
    _, untagged = new.ok("SELECT INBOX")
    assert b'* LIST () "/" "INBOX"' in untagged, untagged
    assert not any(re.match(rb"\* \d+ RECENT", u) for u in untagged), untagged
    assert not any(b"[UNSEEN" in u for u in untagged), untagged
    assert b"* 303 EXISTS" in untagged, untagged
    tag = new.next_tag()
    new.send(f"{tag} SEARCH FLAGGED\r\n".encode())
    status, _, untagged = new.until(tag)
    assert status == "OK" and untagged == [f'* ESEARCH (TAG "{tag}") ALL 1,3'.encode()], untagged
    h.send(srv.smtp, "bob@example.com", [ALICE], plain(5))
    _, untagged = old.ok("NOOP")
    assert b"* 304 EXISTS" in untagged and b"* 1 RECENT" in untagged, untagged
    _, untagged = new.ok("NOOP")
    assert b"* 304 EXISTS" in untagged and not any(b"RECENT" in u for u in untagged), untagged
    _, untagged = new.ok("FETCH 1:* (FLAGS)")
    assert all("\\Recent" not in ic.flags_of(i) for i in ic.fetch_raw(untagged).values()), untagged
    _, untagged = new.ok("EXAMINE INBOX")
    assert untagged[0] == b"* OK [CLOSED] previous mailbox closed", untagged
    ok("after ENABLE IMAP4rev2: SELECT names the mailbox in * LIST () \"/\" \"INBOX\" without RECENT or UNSEEN; "
       "SEARCH answers ESEARCH; new mail is EXISTS without RECENT and no \\Recent, while an IMAP4rev1 "
       "session still gets * 1 RECENT; selecting again begins with OK [CLOSED]")
    for s in (old, new):
        s.ok("LOGOUT")
        s.close()
    srv.stop()
    t.check_store("after the IMAP4rev2 test")


if __name__ == "__main__":
    h.main(test, timeout=120)
