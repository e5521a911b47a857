#!/usr/bin/env python3
"""DNS records, client autoconfiguration and postmaster@ (issue 15, items 5 and 8).

Checks:
- `tegami domain records NAME` prints a zone fragment: MX, A/AAAA from [server] public_*,
  SPF, the DKIM record `domain dkim` printed, DMARC, MTA-STS, TLS-RPT, six SRV records
  with the [clients] ports (0 = "not offered", target "."), autoconfig/autodiscover and
  mta-sts CNAMEs; --json carries the same lines. Without public addresses or a DKIM key, the
  lines are comments saying how to find or make the value, never a made-up one.
- `--check` against dnsmasq on loopback: every record published exits 0 with all "ok"; a
  zone with some records wrong and some missing names exactly those (text and JSON) and
  exits 1.
- On the HTTP listener: Thunderbird's config-v1.1.xml (both paths, by address and by Host),
  Outlook's autodiscover POST (parsed as XML, request text escaped, oversized body 413,
  no address 400), the Apple .mobileconfig (plistlib, content type), the MTA-STS policy;
  bad addresses are 400.
- postmaster@ every local domain and <Postmaster> are accepted by smtplib and land in the
  configured account's INBOX; other unknown names are still refused.
"""

import imaplib
import json
import os
import plistlib
import smtplib
import sys
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import peers  # noqa: E402
from harness import crlf, ok  # noqa: E402

DOMAIN = "example.test"
MX = "mail.example.test"
IPV4 = "192.0.2.10"
IPV6 = "2001:db8::10"


def config(dns_port, public=True):
    addresses = f'public_ipv4 = "{IPV4}"\npublic_ipv6 = "{IPV6}"\n' if public else ""
    return f"""hostname = "{MX}"
[server]
{addresses}postmaster = "admin@{DOMAIN}"
[clients]
pop3 = 0
submission = 2587
[dns]
servers = ["127.0.0.1:{dns_port}"]
"""


def zone_lines(text):
    """(name, type, data) of each record line of a zone fragment."""
    out = []
    for line in text.splitlines():
        if not line.strip() or line.startswith(";"):
            continue
        name, klass, rtype, data = line.split(None, 3)
        assert klass == "IN", line
        out.append((name, rtype, data))
    return out


def txt_value(data):
    """The text of a zone-file TXT value: quoted strings, maybe in parentheses."""
    data = data.strip()
    if data.startswith("("):
        data = data[1:-1].strip()
    parts, i = [], 0
    while i < len(data):
        assert data[i] == '"', data
        j = i + 1
        s = ""
        while data[j] != '"':
            if data[j] == "\\":
                j += 1
            s += data[j]
            j += 1
        parts.append(s)
        i = j + 1
        while i < len(data) and data[i] == " ":
            i += 1
    return "".join(parts)


def dnsmasq_options(records, skip=(), change=None):
    """dnsmasq lines publishing `records` (from --json), leaving out the (type, name) pairs in
    `skip` and replacing those in `change` with the given option line."""
    change = change or {}
    lines = []
    hosts = {}
    for r in records:
        key = (r["rtype"], r["name"])
        if key in skip:
            continue
        if key in change:
            lines.append(change[key])
            continue
        v = r["expected"]
        if v is None:
            continue
        if r["rtype"] == "MX":
            lines.append(f"mx-host={r['name']},{v['host']},{v['preference']}")
        elif r["rtype"] in ("A", "AAAA"):
            hosts.setdefault(r["name"], []).append(v["ip"])
        elif r["rtype"] == "TXT":
            strings = ",".join('"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"' for s in peers.txt_strings(v["text"]))
            lines.append(f"txt-record={r['name']},{strings}")
        elif r["rtype"] == "SRV":
            if v["port"] == 0:
                lines.append(f"srv-host={r['name']}")
            else:
                lines.append(f"srv-host={r['name']},{v['target']},{v['port']},{v['priority']},{v['weight']}")
        elif r["rtype"] == "CNAME":
            lines.append(f"cname={r['name']},{v['target']}")
    # host-record lines come first: a cname target must be known to dnsmasq.
    return [f"host-record={name},{','.join(ips)}" for name, ips in hosts.items()] + lines


def start_dns(records, **kw):
    dns = peers.DnsServer()
    dns.records = ["host-record=other.example.test,192.0.2.99"] + dnsmasq_options(records, **kw)
    dns.start()
    return dns


def check(t, expect_code):
    r = t.cli("domain", "records", DOMAIN, "--check", "--json", check=False, timeout=60)
    assert r.code == expect_code, f"--check exited {r.code}, wanted {expect_code}: {r!r}"
    report = json.loads(r.out)
    text = t.cli("domain", "records", DOMAIN, "--check", check=False, timeout=60)
    assert text.code == expect_code, text
    return report, text.out


def http(srv, path, data=None, host=None, method=None):
    req = urllib.request.Request(f"http://{h.HOST}:{srv.http}{path}", data=data, method=method)
    if host:
        req.add_header("Host", host)
    if data is not None:
        req.add_header("Content-Type", "text/xml")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def servers_of(doc):
    """{(element, type): [(hostname, port, socketType)]} from a Thunderbird clientConfig."""
    root = ET.fromstring(doc)
    assert root.tag == "clientConfig" and root.get("version") == "1.1", root.tag
    out = {}
    for provider in root:
        for el in provider:
            if el.tag in ("incomingServer", "outgoingServer"):
                out.setdefault((el.tag, el.get("type")), []).append(
                    (el.findtext("hostname"), int(el.findtext("port")), el.findtext("socketType")))
    return root, out


def test():
    t = h.Tegami("dns")
    t.domain(DOMAIN)
    t.domain("other.test")
    t.account(f"admin@{DOMAIN}", "pw-admin")
    t.account(f"alice@{DOMAIN}", "pw-alice")
    dkim_out = t.cli("domain", "dkim", DOMAIN).out
    dkim_line = [line for line in dkim_out.splitlines() if " IN TXT " in line][0]
    dkim_name = dkim_line.split()[0]
    dkim_text = txt_value(dkim_line.split(" IN TXT ", 1)[1])
    t.write_config(config(53, public=False))

    # Unknown values are comments with a hint, never made up.
    text = t.cli("domain", "records", DOMAIN).out
    a_line = [line for line in text.splitlines() if f"{MX}. IN A " in line]
    assert len(a_line) == 1 and a_line[0].startswith(";") and "public_ipv4" in a_line[0], a_line
    assert not any(rtype in ("A", "AAAA") for _, rtype, _ in zone_lines(text)), text
    other = t.cli("domain", "records", "other.test").out
    assert "tegami domain dkim other.test" in other, other
    assert "_domainkey" not in "".join(n for n, _, _ in zone_lines(other)), other
    r = t.cli("domain", "records", "nowhere.test", check=False)
    assert r.code != 0 and "domain add" in r.err, r
    ok("unknown addresses and a missing DKIM key are comments saying how to get them; a foreign domain is refused")

    dns = peers.DnsServer()  # the port first, so the config can name it
    t.write_config(config(dns.port))
    text = t.cli("domain", "records", DOMAIN).out
    lines = zone_lines(text)
    got = {}
    for name, rtype, data in lines:
        got.setdefault((rtype, name), []).append(data)
    d = DOMAIN + "."
    assert got[("MX", d)] == [f"10 {MX}."], got
    assert got[("A", MX + ".")] == [IPV4] and got[("AAAA", MX + ".")] == [IPV6], got
    txts = {name: txt_value(data[0]) for (rtype, name), data in got.items() if rtype == "TXT"}
    assert txts[d] == "v=spf1 mx -all", txts
    assert txts[dkim_name] == dkim_text, (txts.get(dkim_name), dkim_text)
    assert txts[f"_dmarc.{d}"] == f"v=DMARC1; p=quarantine; rua=mailto:postmaster@{DOMAIN}", txts
    assert txts[f"_mta-sts.{d}"].startswith("v=STSv1; id="), txts
    assert txts[f"_smtp._tls.{d}"] == f"v=TLSRPTv1; rua=mailto:postmaster@{DOMAIN}", txts
    srv = {name.split(".")[0]: data[0] for (rtype, name), data in got.items() if rtype == "SRV"}
    assert srv == {
        "_submissions": f"0 1 465 {MX}.", "_submission": f"0 1 2587 {MX}.",
        "_imaps": f"0 1 993 {MX}.", "_imap": f"0 1 143 {MX}.",
        "_pop3s": f"0 1 995 {MX}.", "_pop3": "0 0 0 .",
    }, srv
    for label in ("autoconfig", "autodiscover", "mta-sts"):
        assert got[("CNAME", f"{label}.{d}")] == [f"{MX}."], got
    assert len(lines) == 17, lines
    for title in ("Receiving mail", "Sender authentication", "Transport security", "Mail client discovery"):
        assert f"; == {title}" in text, text
    records = json.loads(t.cli("domain", "records", DOMAIN, "--json").out)
    assert sorted(r["zone"] for r in records["records"] if not r["zone"].startswith(";")) == sorted(
        f"{n} IN {ty} {da}" for n, ty, da in lines)
    policy = records["mta_sts_policy"]
    assert f"mx: {MX}" in policy and "mode: testing" in policy, policy
    ok(f"domain records: {len(lines)} zone lines (MX, A, AAAA, SPF, DKIM as `domain dkim` printed, DMARC, MTA-STS, TLS-RPT, 6 SRV with [clients] ports, 3 CNAME), same in --json")

    # Everything published: all ok, exit 0.
    dns.records = ["host-record=other.example.test,192.0.2.99"] + dnsmasq_options(records["records"])
    dns.start()
    report, out = check(t, 0)
    statuses = {(r["rtype"], r["name"]): r["status"] for r in report["records"]}
    assert set(statuses.values()) == {"ok"}, statuses
    assert report["ok"] is True and len(statuses) == 17, report
    assert out.strip().splitlines()[-1].startswith("17 records: 17 ok, 0 missing, 0 wrong"), out
    ok(f"--check against dnsmasq on {dns.addr} with every record published: 17 ok, exit 0")

    # Some wrong, some missing.
    wrong = {
        ("SRV", f"_imaps._tcp.{DOMAIN}"): f"srv-host=_imaps._tcp.{DOMAIN},{MX},994,0,1",
        ("MX", DOMAIN): f"mx-host={DOMAIN},other.example.test,10",
        ("TXT", f"_dmarc.{DOMAIN}"): f'txt-record=_dmarc.{DOMAIN},"v=DMARC1; p=none"',
        ("CNAME", f"autoconfig.{DOMAIN}"): f"cname=autoconfig.{DOMAIN},other.example.test",
        ("TXT", dkim_name.rstrip(".")): f'txt-record={dkim_name.rstrip(".")},"v=DKIM1; k=rsa; p=AAAAold"',
    }
    missing = {("TXT", f"_smtp._tls.{DOMAIN}"), ("SRV", f"_submission._tcp.{DOMAIN}"), ("AAAA", MX)}
    dns.stop()
    opts = dnsmasq_options(records["records"], skip=missing, change=wrong)
    if ("AAAA", MX) in missing:
        opts = [o if not o.startswith(f"host-record={MX},") else f"host-record={MX},{IPV4}" for o in opts]
    dns.records = ["host-record=other.example.test,192.0.2.99"] + opts
    dns.start()
    report, out = check(t, 1)
    statuses = {(r["rtype"], r["name"]): r["status"] for r in report["records"]}
    assert {k for k, s in statuses.items() if s == "wrong"} == set(wrong), statuses
    assert {k for k, s in statuses.items() if s == "missing"} == missing, statuses
    assert all(s == "ok" for k, s in statuses.items() if k not in wrong and k not in missing), statuses
    imaps = [r for r in report["records"] if r["name"] == f"_imaps._tcp.{DOMAIN}"][0]
    assert imaps["found"] == [f"0 1 994 {MX}."] and imaps["expected"]["port"] == 993, imaps
    dmarc = [r for r in report["records"] if r["name"] == f"_dmarc.{DOMAIN}"][0]
    assert "p=none" in dmarc["detail"], dmarc
    bad_lines = [line for line in out.splitlines() if line.startswith(("wrong", "missing"))]
    assert len(bad_lines) == len(wrong) + len(missing), out
    for rtype, name in list(wrong) + list(missing):
        assert any(f" {rtype} " in line and f" {name} " in line for line in bad_lines), (rtype, name, out)
    assert "found 0 1 994 mail.example.test.; expected 0 1 993 mail.example.test." in out, out
    ok(f"--check names exactly the {len(wrong)} wrong and {len(missing)} missing records (found and expected shown), exit 1")

    # A resolver that does not answer is not "missing".
    dns.stop()
    r = t.cli("domain", "records", DOMAIN, "--check", "--json", check=False, timeout=60)
    assert r.code == 1 and {x["status"] for x in json.loads(r.out)["records"]} == {"error"}, r
    ok("--check with the DNS server down: every record 'error', exit 1")

    serve_and_clients(t)


def serve_and_clients(t):
    srv = t.serve()
    # Thunderbird, by address on the .well-known path.
    status, headers, body = http(srv, "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=alice%40example.test")
    assert status == 200 and "xml" in headers["Content-Type"], (status, headers)
    root, servers = servers_of(body)
    assert root.find("emailProvider").get("id") == DOMAIN
    assert servers == {
        ("incomingServer", "imap"): [(MX, 993, "SSL"), (MX, 143, "STARTTLS")],
        ("incomingServer", "pop3"): [(MX, 995, "SSL")],
        ("outgoingServer", "smtp"): [(MX, 465, "SSL"), (MX, 2587, "STARTTLS")],
    }, servers
    # ... and by Host on the autoconfig.DOMAIN path.
    status, _, body = http(srv, "/mail/config-v1.1.xml", host=f"autoconfig.{DOMAIN}")
    assert status == 200 and servers_of(body)[0].find("emailProvider/domain").text == DOMAIN, body
    for bad in ("not-an-address", "a%3Cb%3E%40example.test", "x%40" + "y" * 300 + ".test"):
        status, _, body = http(srv, f"/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress={bad}")
        assert status == 400, (bad, status, body)
    ok("Thunderbird config-v1.1.xml on both paths: IMAP 993/143, POP3S 995 only, SMTP 465/2587; bad address 400")

    # Outlook autodiscover.
    def autodiscover(address):
        return (f'<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">'
                f"<Request><EMailAddress>{address}</EMailAddress><AcceptableResponseSchema>"
                "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
                "</AcceptableResponseSchema></Request></Autodiscover>").encode()
    status, headers, body = http(srv, "/autodiscover/autodiscover.xml", data=autodiscover(f"alice@{DOMAIN}"))
    assert status == 200 and "xml" in headers["Content-Type"], (status, body)
    ns = {"a": "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006",
          "r": "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"}
    root = ET.fromstring(body)
    protocols = {p.findtext("r:Type", namespaces=ns): p for p in root.findall("r:Response/r:Account/r:Protocol", ns)}
    assert set(protocols) == {"IMAP", "POP3", "SMTP"}, body
    for kind, port in (("IMAP", "993"), ("POP3", "995"), ("SMTP", "465")):
        p = protocols[kind]
        assert p.findtext("r:Server", namespaces=ns) == MX and p.findtext("r:Port", namespaces=ns) == port, body
        assert p.findtext("r:SSL", namespaces=ns) == "on" and p.findtext("r:LoginName", namespaces=ns) == f"alice@{DOMAIN}"
    # Text from the request comes back escaped: the answer still parses.
    status, _, body = http(srv, "/Autodiscover/Autodiscover.xml", data=autodiscover(f"o'hara&co@{DOMAIN}"))
    assert status == 200, (status, body)
    login = ET.fromstring(body).find("r:Response/r:Account/r:Protocol/r:LoginName", ns).text
    assert login == f"o'hara&co@{DOMAIN}", login
    status, _, _ = http(srv, "/autodiscover/autodiscover.xml", data=b"<Request></Request>")
    assert status == 400, status
    status, _, _ = http(srv, "/autodiscover/autodiscover.xml", data=autodiscover("a<b>@x"))
    assert status == 400, status
    status, _, _ = http(srv, "/autodiscover/autodiscover.xml", data=b"<x>" + b"y" * 20000 + b"</x>")
    assert status == 413, status
    ok("Outlook autodiscover POST: POX answer with IMAP 993, POP3 995, SMTP 465 over SSL; request text escaped; no address 400, too large 413")

    # Apple profile.
    status, headers, body = http(srv, f"/apple/mobileconfig?email=alice%40{DOMAIN}")
    assert status == 200 and headers["Content-Type"].startswith("application/x-apple-aspen-config"), headers
    assert "attachment" in headers.get("Content-Disposition", ""), headers
    profile = plistlib.loads(body)
    assert profile["PayloadType"] == "Configuration" and profile["PayloadVersion"] == 1, profile
    mail = profile["PayloadContent"][0]
    assert mail["PayloadType"] == "com.apple.mail.managed", mail
    assert (mail["IncomingMailServerHostName"], mail["IncomingMailServerPortNumber"], mail["IncomingMailServerUseSSL"]) == (MX, 993, True), mail
    assert (mail["OutgoingMailServerHostName"], mail["OutgoingMailServerPortNumber"], mail["OutgoingMailServerUseSSL"]) == (MX, 465, True), mail
    assert mail["EmailAddress"] == mail["IncomingMailServerUsername"] == f"alice@{DOMAIN}" and mail["EmailAccountType"] == "EmailTypeIMAP"
    again = plistlib.loads(http(srv, f"/apple/mobileconfig?email=alice%40{DOMAIN}")[2])
    assert again["PayloadUUID"] == profile["PayloadUUID"], "the profile's UUID changes between downloads"
    for bad in ("", "?email=bob", "?email=%3Cscript%3E%40x.test"):
        status, _, _ = http(srv, f"/apple/mobileconfig{bad}")
        assert status == 400, (bad, status)
    ok("Apple .mobileconfig: plist with one com.apple.mail.managed payload, IMAP 993 and SMTP 465 over SSL, stable UUID; bad or no email 400")

    status, headers, body = http(srv, "/.well-known/mta-sts.txt", host=f"mta-sts.{DOMAIN}")
    assert status == 200 and headers["Content-Type"].startswith("text/plain"), (status, headers)
    policy = json.loads(t.cli("domain", "records", DOMAIN, "--json").out)["mta_sts_policy"]
    assert body.decode() == policy and f"mx: {MX}\r\n" in policy, (body, policy)
    ok("the MTA-STS policy `domain records` describes is served at /.well-known/mta-sts.txt")

    # postmaster@ every local domain, and <Postmaster>, reach admin@.
    s = smtplib.SMTP(h.HOST, srv.smtp, timeout=30)
    s.ehlo("client.test")
    for i, rcpt in enumerate((f"postmaster@{DOMAIN}", "PostMaster@other.test", "Postmaster")):
        msg = crlf(f"From: someone@sender.test\nTo: {rcpt}\nSubject: pm {i}\n\nhello postmaster {i}\n")
        refused = s.sendmail("someone@sender.test", [rcpt], msg)
        assert not refused, refused
    try:
        s.sendmail("someone@sender.test", [f"webmaster@{DOMAIN}"], crlf("Subject: x\n\nx\n"))
        raise AssertionError("webmaster@ was accepted")
    except smtplib.SMTPRecipientsRefused as e:
        assert e.recipients[f"webmaster@{DOMAIN}"][0] == 550, e.recipients
    s.quit()
    imap = imaplib.IMAP4(h.HOST, srv.imap, timeout=30)
    imap.login(f"admin@{DOMAIN}", "pw-admin")
    imap.select("INBOX")
    _, data = imap.search(None, "ALL")
    ids = data[0].split()
    subjects = sorted(imap.fetch(i, "(BODY[HEADER.FIELDS (SUBJECT)])")[1][0][1].decode().strip() for i in ids)
    assert subjects == ["Subject: pm 0", "Subject: pm 1", "Subject: pm 2"], subjects
    imap.logout()
    ok("postmaster@example.test, PostMaster@other.test and <Postmaster> accepted by smtplib and delivered to admin@ ([server] postmaster); webmaster@ still 550")
    srv.stop()


if __name__ == "__main__":
    h.main(test, timeout=120)
