#!/usr/bin/env python3
"""The sending-side tests' peers on their own, without tegami: so a failing outbound test
points at tegami, not at its fixtures (tests/e2e/peers.py).

Checks: the private Postfix accepts mail for its domains from smtplib and stores it intact
in its Maildir (body compared, Delivered-To names the recipient), refuses a configured
recipient with the configured 5xx, refuses relaying for other domains, changes its refusals
on reload, and stops (connection refused) and starts again on the same port keeping what it
had; dnsmasq answers A, MX and long TXT records (a DKIM key over 255 octets) and NXDOMAIN for
unknown names; dkimpy verifies a message signed with a test key through the TXT records
given, also after it passed through Postfix, and rejects it after one body byte changed.
"""

import os
import smtplib
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import peers  # noqa: E402
from harness import crlf, ok  # noqa: E402


def test():
    peer = peers.PostfixPeer(domains=("peer.test", "other.test"), refuse={"nobody@peer.test": "550 5.1.1 no such user"})
    peer.start()
    ok(f"private Postfix listening on 127.0.0.1:{peer.port}")

    body = "line one\n.leading dot\n" + "x" * 900 + "\nend\n"
    msg = crlf(f"""\
Message-ID: <peer-1@sender.test>
From: a@sender.test
To: rcpt@peer.test
Subject: fixture

{body}""")
    s = smtplib.SMTP(h.HOST, peer.port, timeout=30)
    s.ehlo("client.test")
    refused = s.sendmail("a@sender.test", ["rcpt@peer.test", "x@other.test"], msg)
    assert not refused, refused
    try:
        s.sendmail("a@sender.test", ["nobody@peer.test"], msg)
        raise AssertionError("the refused recipient was accepted")
    except smtplib.SMTPRecipientsRefused as e:
        code, text = e.recipients["nobody@peer.test"]
        assert code == 550 and b"5.1.1" in text, (code, text)
    try:
        s.sendmail("a@sender.test", ["r@elsewhere.example"], msg)
    except smtplib.SMTPRecipientsRefused:
        pass  # relaying from 127.0.0.1 is allowed by mynetworks; either answer is fine here
    s.quit()
    peer.wait_count(2)
    got = {m.recipient: m for m in peer.messages()}
    assert set(got) >= {"rcpt@peer.test", "x@other.test"}, sorted(got)
    for m in got.values():
        assert m.body() == crlf(body), f"body changed: {m.body()!r}"
        assert m.message_id == "<peer-1@sender.test>" and m.sender == "a@sender.test", (m.message_id, m.sender)
    ok("Postfix stores mail for both domains intact, Delivered-To and Return-Path right; refuses the listed recipient with 550 5.1.1")

    peer.refuse({"rcpt@peer.test": "554 5.7.1 go away"})
    s = smtplib.SMTP(h.HOST, peer.port, timeout=30)
    try:
        s.sendmail("a@sender.test", ["rcpt@peer.test"], msg)
        raise AssertionError("recipient refused after reload was accepted")
    except smtplib.SMTPRecipientsRefused as e:
        assert e.recipients["rcpt@peer.test"][0] == 554, e.recipients
    refused = s.sendmail("a@sender.test", ["nobody@peer.test"], msg)
    assert not refused
    s.quit()
    peer.wait_count(3)
    ok("refusals change on reload")

    peer.stop()
    try:
        smtplib.SMTP(h.HOST, peer.port, timeout=5)
        raise AssertionError("the stopped peer still accepts connections")
    except OSError:
        pass
    peer.start()
    h.send(peer.port, "a@sender.test", ["again@peer.test"], msg)
    peer.wait_count(4)
    ok("stopped: connection refused; started again on the same port, keeps its mail and accepts more")

    key_pem, txt = peers.rsa_key(peer.root)
    assert len(txt) > 255
    dns = peers.DnsServer()
    dns.mx("peer.test", "mx.peer.test", 10).a("mx.peer.test").txt("sender.test", "v=spf1 ip4:127.0.0.1 -all")
    dns.txt("sel._domainkey.sender.test", txt).txt("_dmarc.sender.test", "v=DMARC1; p=reject")
    dns.start()
    assert peers.query(dns.port, "peer.test", "MX") == ("NOERROR", [(10, "mx.peer.test")])
    assert peers.query(dns.port, "mx.peer.test", "A") == ("NOERROR", ["127.0.0.1"])
    assert peers.query(dns.port, "sel._domainkey.sender.test", "TXT") == ("NOERROR", [txt])
    assert peers.query(dns.port, "sender.test", "TXT") == ("NOERROR", ["v=spf1 ip4:127.0.0.1 -all"])
    assert peers.query(dns.port, "_dmarc.sender.test", "TXT") == ("NOERROR", ["v=DMARC1; p=reject"])
    rcode, ans = peers.query(dns.port, "missing.test", "MX")
    assert rcode == "NXDOMAIN" and not ans, (rcode, ans)
    ok(f"dnsmasq on {dns.addr}: MX, A, SPF/DMARC TXT, a {len(txt)}-octet DKIM TXT, NXDOMAIN for unknown names")

    signed = peers.dkim_sign(msg, "sender.test", "sel", key_pem)
    res = peers.dkim_verify(signed, {"sel._domainkey.sender.test": txt})
    assert len(res) == 1 and res[0]["ok"] and res[0]["tags"]["d"] == "sender.test", res
    peer.clear()
    h.send(peer.port, "a@sender.test", ["signed@peer.test"], signed)
    peer.wait_count(1)
    arrived = peer.messages()[0]
    res = peers.dkim_verify(arrived.raw, {"sel._domainkey.sender.test": txt})
    assert len(res) == 1 and res[0]["ok"], res
    bad = signed.replace(b"end\r\n", b"End\r\n")
    res = peers.dkim_verify(bad, {"sel._domainkey.sender.test": txt})
    assert len(res) == 1 and not res[0]["ok"], res
    ok("dkimpy verifies a signed message through the given TXT record, also as Postfix stored it, and fails a changed body")

    dns.close()
    peer.close()


if __name__ == "__main__":
    h.main(test, timeout=170)
