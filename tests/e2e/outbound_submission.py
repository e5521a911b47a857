#!/usr/bin/env python3
"""Submission (`serve --submission`): AUTH, relaying only when authenticated, no spoofing.

Setup: tegami with a self-signed [tls] certificate, domain example.com, accounts alice and
bob, alias sales@example.com -> alice, and `[[queue.route]] domain = "peer.test"` to a private
Postfix (tests/e2e/peers.py).

Checks:
- swaks over STARTTLS (--tls) with AUTH PLAIN and with AUTH LOGIN submits mail to a remote
  recipient; it reaches Postfix with the body intact, and the Received header tegami added
  says ESMTPSA. The submission EHLO offers AUTH PLAIN LOGIN after STARTTLS.
- A wrong password gets 535; MAIL before AUTH on submission gets 530 5.7.0.
- Unauthenticated relaying is refused: on the SMTP (MX) listener RCPT to a remote domain
  gets 550 5.7.1 (a local recipient is still accepted there), and on submission nothing
  is accepted before AUTH.
- Spoofing is refused: MAIL FROM another account's address gets 553 5.7.1, the null sender
  is refused, and a From header naming another account's address gets 550 5.7.1 after DATA;
  the account's alias (sales@) and a subaddress (alice+tag@) are allowed.
- Local delivery through submission: mail from alice to bob lands in bob's INBOX (IMAP)
  with Message-ID and Date added when the client sent none.
- Nothing refused ever reaches Postfix (its Maildir holds exactly the accepted ones).
"""

import base64
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import peers  # noqa: E402
from harness import crlf, ok  # noqa: E402

ALICE, BOB = "alice@example.com", "bob@example.com"
PW = {ALICE: "alice-pw", BOB: "bob-pw"}


def plain(user, pw):
    return base64.b64encode(f"\0{user}\0{pw}".encode()).decode()


def authed(port, user=ALICE):
    c = h.RawSmtp(port)
    # AUTH is offered without TLS to a loopback peer (the contract), which lets a raw socket
    # check the exact replies.
    c.expect(f"AUTH PLAIN {plain(user, PW[user])}", 235)
    return c


def test():
    t = h.Tegami("submission")
    cert, key = peers.self_signed(t.root)
    peer = peers.PostfixPeer()
    peer.start()
    t.write_config(peers.outbound_config(tls=(cert, key), routes=[("peer.test", peer.port)],
                                         queue={"retry_secs": [2]}))
    t.domain("example.com")
    t.account(ALICE, PW[ALICE])
    t.account(BOB, PW[BOB])
    t.alias("sales@example.com", ALICE)
    srv = peers.serve(t)
    sub = srv.port("submission")
    ok(f"serve --submission listening on {sub}")

    c = h.RawSmtp(sub)
    assert any(l.upper().startswith("STARTTLS") for l in c.ehlo_lines), f"no STARTTLS on submission: {c.ehlo_lines}"
    c.close()
    expected = []  # (Message-ID, recipient, body) that must reach Postfix

    body = "Hello over submission.\n.leading dot\nUTF-8: 日本語\n" + "y" * 500 + "\n"
    for mech, n in (("PLAIN", 1), ("LOGIN", 2)):
        mid = f"<swaks-{mech.lower()}@example.com>"
        code, out = peers.swaks(
            "--server", h.HOST, "--port", str(sub), "--tls",
            "--auth", mech, "--auth-user", ALICE, "--auth-password", PW[ALICE],
            "--from", ALICE if mech == "PLAIN" else "sales@example.com",
            "--to", f"friend{n}@peer.test", "--ehlo", "client.test",
            "--header", f"Message-Id: {mid}", "--header", f"Subject: swaks {mech}",
            "--h-From", ALICE if mech == "PLAIN" else "Sales <sales@example.com>",
            "--body", body)
        assert code == 0, f"swaks AUTH {mech} over STARTTLS failed ({code}):\n{out}"
        assert "STARTTLS" in out and "AUTH " + mech in out, f"swaks did not do STARTTLS and AUTH {mech}:\n{out}"
        expected.append((mid, f"friend{n}@peer.test", body))
    peer.wait_count(2, timeout=60)
    got = {m.message_id: m for m in peer.messages()}
    for mid, rcpt, b in expected:
        assert mid in got, f"{mid} did not reach Postfix: {sorted(got)}"
        m = got[mid]
        assert m.recipient == rcpt, (m.recipient, rcpt)
        assert m.body().replace(b"\r\n", b"\n").rstrip(b"\n") == b.encode().rstrip(b"\n"), f"body changed: {m.body()!r}"
        received = " ".join(m.header("Received"))
        assert "ESMTPSA" in received, f"no Received ... with ESMTPSA from tegami: {m.header('Received')}"
    ok("swaks AUTH PLAIN and AUTH LOGIN over STARTTLS relay to Postfix: bodies intact, Received says ESMTPSA; the alias sales@ may be the sender")

    c = h.RawSmtp(sub)
    c.expect(f"AUTH PLAIN {plain(ALICE, 'wrong')}", 535)
    c.expect(f"MAIL FROM:<{ALICE}>", 530, "5.7.0")
    c.expect("RCPT TO:<friend@peer.test>", (503, 530))
    c.close()
    ok("wrong password: 535; MAIL before AUTH on submission: 530 5.7.0; no RCPT without a transaction")

    c = h.RawSmtp(srv.smtp)
    c.expect("MAIL FROM:<someone@outside.test>", 250)
    c.expect("RCPT TO:<friend@peer.test>", 550, "5.7.1")
    c.expect(f"RCPT TO:<{BOB}>", 250)
    c.expect("QUIT", 221)
    c.close()
    ok("MX listener: relaying to peer.test refused with 550 5.7.1, a local recipient accepted")

    c = authed(sub)
    c.expect(f"MAIL FROM:<{BOB}>", 553, "5.7.1", what="MAIL FROM another account")
    c.expect("MAIL FROM:<ceo@elsewhere.test>", 553, "5.7.1", what="MAIL FROM a foreign address")
    code, text = c.reply("MAIL FROM:<>")
    assert 500 <= code < 600, f"null sender on submission: {code} {text}"
    c.expect("RSET", 250)
    c.expect("MAIL FROM:<alice+lists@example.com>", 250, what="subaddress of the account")
    c.expect("RCPT TO:<friend3@peer.test>", 250)
    c.expect("DATA", 354)
    c.send(crlf(f"""\
From: Bob <{BOB}>
To: friend3@peer.test
Subject: spoofed From
Message-ID: <spoof-1@example.com>

pretending to be bob
.
"""))
    code, text = c.reply()
    assert code == 550 and text.startswith("5.7.1"), f"spoofed From header: {code} {text}, wanted 550 5.7.1"
    c.expect("RSET", 250)
    c.expect(f"MAIL FROM:<{ALICE}>", 250)
    c.expect("RCPT TO:<friend4@peer.test>", 250)
    c.expect("DATA", 354)
    c.send(crlf(f"""\
From: Alice <{ALICE}>, Bob <{BOB}>
To: friend4@peer.test
Subject: two authors
Message-ID: <spoof-2@example.com>

one of them is not alice
.
"""))
    code, text = c.reply()
    assert code == 550 and text.startswith("5.7.1"), f"From with another account's address: {code} {text}"
    c.expect("QUIT", 221)
    c.close()
    ok("spoofing refused: MAIL FROM bob or a foreign address 553 5.7.1, null sender refused, From naming bob 550 5.7.1; alice+tag allowed")

    # Local delivery through submission, without Message-ID and Date: tegami adds them.
    peers.submit(sub, ALICE, PW[ALICE], ALICE, [BOB], crlf(f"""\
From: Alice <{ALICE}>
To: Bob <{BOB}>
Subject: lunch

local delivery through submission
"""))
    msgs = peers.wait_until("bob's INBOX has the submitted message", lambda: peers.inbox(srv.imap, BOB, PW[BOB]), 120)
    assert len(msgs) == 1, f"bob has {len(msgs)} messages"
    m = peers.parse(msgs[0])
    assert m["Subject"] == "lunch" and m["Message-ID"] and m["Date"], (m["Subject"], m["Message-ID"], m["Date"])
    assert "local delivery through submission" in m.get_body().get_content()
    assert "ESMTPSA" in " ".join(str(r) for r in m.get_all("Received")), m.get_all("Received")
    ok("submission to a local account: delivered to bob's INBOX with Message-ID and Date added, Received ESMTPSA")

    # Give a wrongly queued spoof a chance to show up at the peer before counting.
    h.send(srv.smtp, "probe@outside.test", [BOB], crlf("Subject: probe\n\nx\n"))
    peers.wait_until("the queue empties", lambda: peers.queue_size(srv) in (0, 0.0), 120)
    ids = sorted(m.message_id for m in peer.messages())
    assert ids == sorted(mid for mid, _, _ in expected), f"Postfix holds {ids}, wanted only the accepted ones"
    ok("Postfix received exactly the two accepted submissions, nothing refused leaked out; the queue is empty")

    srv.stop()
    peer.close()
    t.check_store("after the submission test")


if __name__ == "__main__":
    h.main(test, timeout=170)
