#!/usr/bin/env python3
"""Outbound delivery to a real MTA: static routes, MX routing, DKIM, inbound checks, queue CLI.

Setup: a private Postfix (tests/e2e/peers.py) on a high port accepting peer.test, mx-a.test
and mx-b.test, offering STARTTLS with a self-signed certificate; dnsmasq on loopback with
MX mx-a.test -> mail.mx-a.test (A 127.0.0.1), mx-b.test with an A record only, SPF, DKIM and
DMARC TXT records for sender.test and fail.test, and nothing for nowhere.test (NXDOMAIN).
tegami: `[dns] servers = [dnsmasq]`, `[queue] mx_port = <postfix port>`,
`[[queue.route]] domain = "peer.test"` with tls "opportunistic", `[inbound] check_loopback = true`.

Checks:
- `tegami domain dkim example.com --selector sel` writes DATA/dkim/example.com/sel.pem and
  prints the TXT record (name and "v=DKIM1; ... p=..."); a second run does not replace the key.
- 25 submissions (plain, 8-bit UTF-8, leading dots, 998-octet lines, trailing spaces, a
  multipart with a 150 KB attachment, one with four remote recipients and a local one)
  reach Postfix over the static route: each recipient gets its copy once, bodies byte-equal
  to what was sent, Subject/From/Message-ID unchanged, STARTTLS used (Postfix's Received
  says "using TLS"), and a DKIM-Signature with d=example.com s=sel that dkimpy verifies with
  the record tegami printed. The local recipient gets the mail in its INBOX.
- MX routing through dnsmasq: mx-a.test (MX) and mx-b.test (no MX: the A record) arrive.
- NXDOMAIN (nowhere.test) is a permanent failure: a failure DSN to the sender.
- Inbound checks: a message from sender.test signed with dkimpy (SPF pass, DMARC p=reject)
  arrives with `Authentication-Results: mx.tegami.test; spf=pass ...; dkim=pass
  header.d=sender.test; dmarc=pass`; one from fail.test (SPF -all without 127.0.0.1,
  DMARC p=none) with spf=fail and dmarc=fail, still delivered (policy "record").
- Queue CLI with the peer stopped: three messages deferred with reason "connect" show in
  `queue list` and `queue show ID` and in /metrics (tegami_queue_messages 3); `queue remove`
  drops one (never delivered), `queue retry ID` sends one at once after the peer is back
  (retry_secs is an hour), `queue flush` the rest; the queue is empty after.
"""

import base64
import os
import random
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import peers  # noqa: E402
from harness import crlf, ok  # noqa: E402

ALICE, BOB = "alice@example.com", "bob@example.com"
PW = {ALICE: "alice-pw", BOB: "bob-pw"}
HOSTNAME = "mx.tegami.test"


def bodies():
    """(name, headers extra, body text) for the submissions: what tends to get mangled."""
    rnd = random.Random(9)
    att = base64.encodebytes(bytes(rnd.randrange(256) for _ in range(150_000))).decode()
    out = [
        ("plain", "", "Just a short note.\n"),
        ("utf8", "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n",
         "こんにちは、世界。\nÜmlaute und Éaccents.\n"),
        ("dots", "", ".\n..\n.leading dot\nend\n"),
        ("long", "", ("L" * 998) + "\n" + ("M" * 997) + "\n"),
        ("spaces", "", "trailing spaces   \n\ttab line\t\n\n\nblank lines above\n"),
        ("multipart", 'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b1"\n',
         f"--b1\nContent-Type: text/plain\n\nsee attachment\n--b1\nContent-Type: application/octet-stream\n"
         f"Content-Transfer-Encoding: base64\n\n{att}--b1--\n"),
    ]
    for i in range(18):
        out.append((f"filler{i}", "", "".join(f"line {j} of message {i}\n" for j in range(rnd.randrange(1, 80)))))
    return out


def queue_ids(t, rcpts):
    """{recipient: queue ID} for the given recipients, from `queue list` and `queue show`.

    The list's layout is not pinned: every first word of a line is tried with `queue show`,
    and the one whose output names the recipient is its ID.
    """
    r = t.cli("queue", "list")
    found = {}
    for line in r.out.splitlines():
        words = line.split()
        if not words:
            continue
        cand = words[0].strip(":,")
        s = t.cli("queue", "show", cand, check=False)
        if s.code != 0:
            continue
        for rc in rcpts:
            if rc in s.out.lower():
                found[rc] = cand
    return found, r.out


def test():
    t = h.Tegami("delivery")
    cert, key = peers.self_signed(t.root)
    peer = peers.PostfixPeer(domains=("peer.test", "mx-a.test", "mx-b.test"), tls=(cert, key))
    peer.start()

    t.domain("example.com")
    t.account(ALICE, PW[ALICE])
    t.account(BOB, PW[BOB])
    r = t.cli("domain", "dkim", "example.com", "--selector", "sel")
    pem = t.data / "dkim" / "example.com" / "sel.pem"
    assert pem.is_file(), f"no key at {pem}: {r!r}"
    key_bytes = pem.read_bytes()
    assert b"PRIVATE KEY" in key_bytes, "the DKIM key file is not a PEM private key"
    record = peers.dkim_record_from(r.out, "sel", "example.com")
    r2 = t.cli("domain", "dkim", "example.com", "--selector", "sel", check=False)
    assert pem.read_bytes() == key_bytes, f"a second `domain dkim` replaced the key: {r2!r}"
    ok(f"tegami domain dkim: key at dkim/example.com/sel.pem, record printed ({len(record)} octets); a second run keeps the key")

    sender_key, sender_txt = peers.rsa_key(t.root, "sender")
    dns = peers.DnsServer()
    dns.mx("mx-a.test", "mail.mx-a.test", 10).a("mail.mx-a.test").a("mx-b.test")
    dns.txt("sel._domainkey.example.com", record)
    dns.txt("sender.test", "v=spf1 ip4:127.0.0.1 -all").txt("s1._domainkey.sender.test", sender_txt)
    dns.txt("_dmarc.sender.test", "v=DMARC1; p=reject")
    dns.txt("fail.test", "v=spf1 ip4:192.0.2.1 -all").txt("_dmarc.fail.test", "v=DMARC1; p=none")
    dns.start()

    t.write_config(peers.outbound_config(
        hostname=HOSTNAME, tls=(cert, key), dns=dns,
        routes=[("peer.test", peer.port, "opportunistic")],
        queue={"mx_port": peer.port, "retry_secs": [3600], "tls": "opportunistic"},
        inbound={"checks": True, "policy": "record", "check_loopback": True}))
    srv = peers.serve(t)
    sub = srv.port("submission")

    # --- static route, DKIM, bodies intact --------------------------------------------
    sent = {}  # Message-ID -> (recipients, body bytes, subject)
    s = peers.Submitter(sub, ALICE, PW[ALICE], starttls=True)
    for i, (name, extra, text) in enumerate(bodies()):
        rcpts = [f"{name}@peer.test"]
        if name == "plain":
            rcpts = ["p1@peer.test", "p2@peer.test", "p3@peer.test", "u1@mx-a.test", BOB]
        mid = f"<out-{i}-{name}@example.com>"
        subject = f"outbound {name}"
        msg = crlf(f"From: Alice <{ALICE}>\nTo: {', '.join(rcpts)}\nSubject: {subject}\nMessage-ID: {mid}\n"
                   f"Date: Mon, 23 Nov 2026 10:00:00 +0000\n{extra}\n{text}")
        s.send(ALICE, rcpts, msg)
        sent[mid] = (rcpts, msg.split(b"\r\n\r\n", 1)[1], subject)
    s.close()
    remote = sum(sum(1 for r in v[0] if not r.endswith("@example.com")) for v in sent.values())
    peer.wait_count(remote, timeout=90, what="outbound copies")
    time.sleep(1)
    got = peer.messages()
    assert len(got) == remote, f"Postfix holds {len(got)} copies, wanted {remote} (duplicates?)"
    seen = set()
    for m in got:
        assert m.message_id in sent, f"unexpected message at Postfix: {m.message_id}"
        rcpts, body, subject = sent[m.message_id]
        assert m.recipient in rcpts, (m.recipient, rcpts)
        assert (m.message_id, m.recipient) not in seen, f"{m.message_id} to {m.recipient} delivered twice"
        seen.add((m.message_id, m.recipient))
        assert m.body() == body, f"{m.message_id}: body changed ({len(m.body())} octets, sent {len(body)})"
        assert m.msg["Subject"] == subject and ALICE in str(m.msg["From"]), (m.msg["Subject"], m.msg["From"])
        res = peers.dkim_verify(m.raw, {"sel._domainkey.example.com": record})
        assert res, f"{m.message_id}: no DKIM-Signature"
        assert res[0]["ok"], f"{m.message_id}: the DKIM signature does not verify: {res[0]}"
        tags = res[0]["tags"]
        assert tags.get("d") == "example.com" and tags.get("s") == "sel", tags
        assert "from" in tags.get("h", "").lower(), f"From not signed: {tags.get('h')}"
        if m.recipient.endswith("@peer.test"):
            received = " ".join(m.header("Received"))
            assert "using TLS" in received, f"{m.message_id}: no STARTTLS to the peer (Received: {received})"
    ok(f"{len(sent)} submissions, {remote} remote copies: each exactly once, bodies byte-equal, STARTTLS used, DKIM d=example.com s=sel verified by dkimpy")

    bob = peers.wait_until("bob's copy", lambda: peers.inbox(srv.imap, BOB, PW[BOB]), 120)
    assert len(bob) == 1 and b"<out-0-plain@example.com>" in bob[0], f"bob's INBOX: {len(bob)} messages"
    ok("the local recipient of a mixed message got it in INBOX")

    # --- MX routing -------------------------------------------------------------------
    assert any(m.recipient == "u1@mx-a.test" for m in got), "mx-a.test (MX record) did not get its copy"
    peers.submit(sub, ALICE, PW[ALICE], ALICE, ["u2@mx-b.test"], crlf(
        f"From: {ALICE}\nTo: u2@mx-b.test\nSubject: implicit mx\nMessage-ID: <implicit@example.com>\n\nno MX here\n"))
    peer.wait_count(remote + 1, timeout=60)
    assert any(m.recipient == "u2@mx-b.test" for m in peer.messages("mx-b.test"))
    ok("MX routing through dnsmasq: mx-a.test by its MX, mx-b.test by its A record (implicit MX) on mx_port")

    # --- NXDOMAIN: failure DSN --------------------------------------------------------
    before = len(peers.inbox(srv.imap, ALICE, PW[ALICE]))
    peers.submit(sub, ALICE, PW[ALICE], ALICE, ["x@nowhere.test"], crlf(
        f"From: {ALICE}\nTo: x@nowhere.test\nSubject: into the void\nMessage-ID: <void@example.com>\n\nhello?\n"))
    box = peers.wait_until("a DSN for nowhere.test", lambda: (lambda b: b if len(b) > before else None)(
        peers.inbox(srv.imap, ALICE, PW[ALICE])), 60)
    _, _, rcpts, returned = peers.delivery_status(box[-1])
    assert len(rcpts) == 1 and "x@nowhere.test" in rcpts[0].get("final-recipient", "").lower(), rcpts
    assert rcpts[0].get("action", "").lower() == "failed" and rcpts[0].get("status", "").startswith("5."), rcpts
    assert "<void@example.com>" in returned, f"original headers not returned: {returned[:300]!r}"
    ok(f"NXDOMAIN is permanent: failure DSN to alice, Status {rcpts[0]['status']}, original headers returned")

    # --- inbound checks ---------------------------------------------------------------
    good = crlf(f"From: News <news@sender.test>\nTo: {ALICE}\nSubject: signed\nMessage-ID: <in-good@sender.test>\n"
                f"Date: Mon, 23 Nov 2026 10:00:00 +0000\n\nsigned and aligned\n")
    good = peers.dkim_sign(good, "sender.test", "s1", sender_key)
    h.send(srv.smtp, "news@sender.test", [ALICE], good)
    h.send(srv.smtp, "bad@fail.test", [ALICE], crlf(
        f"From: bad@fail.test\nTo: {ALICE}\nSubject: unsigned\nMessage-ID: <in-bad@fail.test>\n\nnot from here\n"))
    box = peers.inbox(srv.imap, ALICE, PW[ALICE])
    by_mid = {str(peers.parse(raw)["Message-ID"]).strip(): peers.parse(raw) for raw in box}
    for mid in ("<in-good@sender.test>", "<in-bad@fail.test>"):
        assert mid in by_mid, f"{mid} not delivered (policy record must not reject): {sorted(by_mid)}"
    ar_good = " ".join(str(v) for v in by_mid["<in-good@sender.test>"].get_all("Authentication-Results") or [])
    ar_bad = " ".join(str(v) for v in by_mid["<in-bad@fail.test>"].get_all("Authentication-Results") or [])
    assert ar_good.startswith(HOSTNAME), f"Authentication-Results not from {HOSTNAME}: {ar_good!r}"
    for want in ("spf=pass", "dkim=pass", "dmarc=pass", "header.from=sender.test"):
        assert want in ar_good, f"{want} missing in {ar_good!r}"
    # RFC 8601 names the signing domain with header.d or the identity with header.i.
    assert "header.d=sender.test" in ar_good or "header.i=@sender.test" in ar_good, ar_good
    for want in ("spf=fail", "dmarc=fail"):
        assert want in ar_bad, f"{want} missing in {ar_bad!r}"
    assert "dkim=pass" not in ar_bad, ar_bad
    ok("inbound checks: signed sender.test -> spf/dkim/dmarc pass; fail.test -> spf=fail dmarc=fail, delivered (record)")

    # --- queue CLI --------------------------------------------------------------------
    peer.stop()
    holds = ["hold1@peer.test", "hold2@peer.test", "hold3@peer.test"]
    for i, rc in enumerate(holds):
        peers.submit(sub, ALICE, PW[ALICE], ALICE, [rc], crlf(
            f"From: {ALICE}\nTo: {rc}\nSubject: held {i}\nMessage-ID: <held-{i}@example.com>\n\nwaiting\n"))
    ids = peers.wait_until("three deferred messages in `queue list`",
                           lambda: (lambda f: f if len(f[0]) == 3 else None)(queue_ids(t, holds)), 30)[0]
    for rc, qid in ids.items():
        show = t.cli("queue", "show", qid).out.lower()
        assert "connect" in show or "refused" in show, f"queue show {qid} gives no connect reason: {show!r}"
    m = peers.metrics(srv.http)
    assert m.get("tegami_queue_messages") == 3, f"tegami_queue_messages {m.get('tegami_queue_messages')}"
    assert "tegami_queue_oldest_seconds" in m, sorted(k for k in m if "queue" in k)
    ok("peer down: three messages deferred (connect) in `queue list`/`queue show` and /metrics")

    t.cli("queue", "remove", ids[holds[2]])
    assert t.cli("queue", "show", ids[holds[2]], check=False).code != 0, "a removed message still shows"
    peer.start()
    t.cli("queue", "retry", ids[holds[0]])
    peers.wait_until("hold1 delivered after `queue retry`",
                     lambda: any(x.recipient == holds[0] for x in peer.messages("peer.test")), 30)
    time.sleep(2)
    assert not any(x.recipient == holds[1] for x in peer.messages("peer.test")), "hold2 was sent before its retry time"
    t.cli("queue", "flush")
    peers.wait_until("hold2 delivered after `queue flush`",
                     lambda: any(x.recipient == holds[1] for x in peer.messages("peer.test")), 30)
    peers.wait_until("an empty queue", lambda: peers.queue_size(srv) == 0, 120)
    time.sleep(1)
    assert not any(x.recipient == holds[2] for x in peer.messages("peer.test")), "the removed message was delivered"
    assert t.cli("queue", "list").out.count("@peer.test") == 0
    ok("queue remove drops one for good, queue retry sends one at once, queue flush the rest; queue empty")

    srv.stop()
    dns.close()
    peer.close()
    t.check_store("after the delivery test")


if __name__ == "__main__":
    h.main(test, timeout=170)
