#!/usr/bin/env python3
"""The web console's frame in headless Chromium: sign-in and sign-out, Japanese and English,
the security headers, CSRF, 403 for users on every admin page, the sign-in throttle, TOTP.

An administrator and a user sign in through the form in a real browser. Pages asked for in
Japanese (Accept-Language: ja) come in Japanese, and the switch on every page changes the
language. Every console answer carries a Content-Security-Policy with frame-ancestors
'none'. A form posted without its CSRF token is refused (403) and changes nothing. A user
who is not an administrator gets 403 on every page of the administrator's menu. Wrong
passwords are answered ever more slowly (the same throttle as IMAP and POP3). An
administrator who turns TOTP on is asked for a code at the next sign-in, and a wrong code
does not let them in. Signing out ends the session on the server, not just in the browser.

With a certificate, the same console answers on the HTTPS listener and its session cookie
is Secure. Over plain HTTP, a client on another host (this machine's own non-loopback
address, when it has one) is refused the sign-in form; over HTTPS it gets it.
"""

import hashlib
import hmac
import os
import re
import socket
import ssl
import struct
import subprocess
import sys
import time
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import browser  # noqa: E402
import harness as h  # noqa: E402
from harness import ok  # noqa: E402

ADMIN = ("admin@example.com", "admin-pw-1")
USER = ("user@example.com", "user-pw-1")


def totp(secret_b32, at=None):
    """RFC 6238 code of a base32 secret now (written here independently of the server's)."""
    import base64

    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    counter = int((at or time.time()) // 30)
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    code = (struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF) % 1_000_000
    return f"{code:06d}"


def test():
    t = h.Tegami("console")
    t.data.mkdir(parents=True)
    t.domain("example.com")
    t.cli("account", "add", ADMIN[0], "--password-stdin", "--admin", stdin=ADMIN[1] + "\n")
    t.account(*USER)
    r = t.cli("account", "list")
    assert re.search(r"admin@example\.com\t.*\tadmin$", r.out, re.M), r.out
    assert not re.search(r"user@example\.com\t.*\tadmin$", r.out, re.M), r.out
    ok("account add --admin makes an administrator; account list marks only them")
    srv = t.serve()
    base = f"http://{h.HOST}:{srv.http}"

    # -- Japanese by Accept-Language, and the switch --------------------------------------
    ja = browser.Browser(lang="ja")
    ja.get(f"{base}/console/")
    assert "/console/login" in ja.url, ja.url
    assert ja.attr("html", "lang") == "ja", ja.source[:300]
    assert "サインイン" in ja.text("h1"), ja.text("h1")
    assert "メールアドレス" in ja.text("form.signin"), ja.text("form.signin")
    ja.screenshot("sign-in-ja")
    ok("Accept-Language: ja gives the sign-in page in Japanese")
    browser.sign_in(ja, base, *ADMIN)
    assert "/console/admin" in ja.url, ja.url
    nav = ja.text("header.top nav")
    assert "ダッシュボード" in nav and "バックアップ" in nav, nav
    ja.screenshot("admin-ja")
    ja.click("span.lang a[hreflang=en]")
    ja.wait_for(lambda: ja.attr("html", "lang") == "en", "the page in English")
    assert "Backups" in ja.text("header.top nav"), ja.text("header.top nav")
    ok("the language switch on a page turns it English, and the choice sticks")
    ja.get(f"{base}/console/admin/security")
    assert "Two-step verification" in ja.text("h1"), ja.text("h1")
    ja.quit()

    # -- headers ----------------------------------------------------------------------------
    for path in ("/console/login", "/console/static/console.css"):
        status, headers, _ = browser.http("GET", base + path)
        assert status == 200, (path, status)
        csp = headers.get("content-security-policy", "")
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp, (path, csp)
        assert headers.get("x-frame-options") == "DENY", (path, headers)
        assert headers.get("x-content-type-options") == "nosniff", (path, headers)
    ok("console answers carry CSP (script-src 'self', frame-ancestors 'none'), X-Frame-Options and nosniff")

    # -- an administrator; CSRF ---------------------------------------------------------------
    admin = browser.Browser()
    browser.sign_in(admin, base, *ADMIN)
    assert "/console/admin" in admin.url, admin.url
    session = admin.cookies().get("tegami_session", "")
    assert len(session) >= 40, admin.cookies()
    cookie = admin.cookie_header()
    status, _, body = browser.http("POST", f"{base}/console/admin/security/totp", cookie=cookie, data={})
    assert status == 403 and b"security token" in body, (status, body[:200])
    status, _, body = browser.http(
        "POST", f"{base}/console/admin/security/totp", cookie=cookie, data={"csrf": "x" * 43}
    )
    assert status == 403, (status, body[:200])
    admin.get(f"{base}/console/admin/security")
    csrf = admin.attr("form[action='/console/logout'] input[name=csrf]", "value")
    status, _, body = browser.http(
        "POST", f"{base}/console/admin/security/totp", cookie=cookie, data={"csrf": csrf}
    )
    assert status == 200 and b"otpauth://" in body, (status, body[:300])
    ok("a form posted without or with a wrong CSRF token gets 403; with the session's token it works")

    # Every page of the administrator's menu answers the administrator.
    admin.get(f"{base}/console/admin")
    links = [
        admin._call("GET", admin._s(f"/element/{e}/attribute/href"))
        for e in admin.find_all("header.top nav a[href^='/console/admin']")
    ]
    assert len(links) >= 10, links
    for link in links:
        status, _, _ = browser.http("GET", base + link, cookie=cookie)
        assert status == 200, (link, status)
    ok(f"all {len(links)} pages of the administrator's menu answer an administrator")

    # -- a user: 403 on every admin page ------------------------------------------------------
    user = browser.Browser()
    browser.sign_in(user, base, *USER)
    assert "/console/mail" in user.url, user.url
    assert not user.find_all("header.top nav a[href^='/console/admin']"), "a user sees no admin menu"
    user_cookie = user.cookie_header()
    for link in links + ["/console/admin/security/totp"]:
        method = "POST" if link.endswith("/totp") else "GET"
        status, _, _ = browser.http(method, base + link, cookie=user_cookie, data={} if method == "POST" else None)
        assert status == 403, (link, status)
    user.get(base + links[0])
    assert "administrators" in user.text("main"), user.text("main")
    user.screenshot("user-403")
    ok(f"a user who is not an administrator gets 403 on every one of the {len(links)} admin pages")
    status, _, _ = browser.http("GET", f"{base}/console/admin/security")
    assert status in (302, 303, 307), status
    ok("without a session an admin page sends the visitor to sign in")

    # -- sign-out ends the session on the server ------------------------------------------------
    user.click("form[action='/console/logout'] button")
    user.wait_for(lambda: "/console/login" in user.url, "the sign-in page after signing out")
    status, _, _ = browser.http("GET", f"{base}/console/admin/security", cookie=user_cookie)
    assert status in (302, 303), f"the old session cookie still works after sign-out: {status}"
    ok("signing out ends the session: its cookie no longer opens a page")
    user.quit()

    # -- the throttle -----------------------------------------------------------------------------
    b = browser.Browser()
    times = []
    for i in range(3):
        started = time.monotonic()
        browser.sign_in(b, base, USER[0], f"wrong-{i}")
        times.append(time.monotonic() - started)
        assert "wrong" in b.text("p.message"), b.text("p.message")
    assert times[1] >= 0.9 and times[2] >= 1.8, times
    b.quit()
    ok(f"wrong passwords are answered ever more slowly: {', '.join(f'{x:.1f}' for x in times)} s")
    # IMAP shares the throttle: the console's failures count against the account there too.
    started = time.monotonic()
    m = h.imaplib.IMAP4(h.HOST, srv.imap, timeout=60)
    try:
        m.login(USER[0], "wrong-again")
        raise AssertionError("a wrong IMAP password was accepted")
    except h.imaplib.IMAP4.error:
        pass
    waited = time.monotonic() - started
    m.shutdown()
    assert waited >= 3.5, f"IMAP answered the 4th failure in a row after {waited:.1f} s"
    ok(f"IMAP counts the console's failures: the next wrong password waited {waited:.1f} s")

    # -- TOTP -----------------------------------------------------------------------------------
    admin.get(f"{base}/console/admin/security")
    admin.click("form[action='/console/admin/security/totp'] button")
    secret = admin.text("code.secret").strip()
    assert re.fullmatch(r"[A-Z2-7]{32}", secret), secret
    admin.type("input[name=code]", "000000" if totp(secret) != "000000" else "111111")
    admin.click("form[action='/console/admin/security/totp/confirm'] button")
    assert "wrong" in admin.text("p.message"), admin.text("main")
    admin.get(f"{base}/console/admin/security")
    assert "is off" in admin.text("p.state"), "a wrong code turned TOTP on"
    admin.click("form[action='/console/admin/security/totp'] button")
    secret = admin.text("code.secret").strip()
    admin.type("input[name=code]", totp(secret))
    admin.click("form[action='/console/admin/security/totp/confirm'] button")
    admin.wait_for(lambda: admin.has("p.state"), "the security page")
    assert "is on" in admin.text("p.state"), admin.text("p.state")
    admin.click("form[action='/console/logout'] button")
    admin.wait_for(lambda: "/console/login" in admin.url, "the sign-in page")
    browser.sign_in(admin, base, *ADMIN)
    assert "/console/login/totp" in admin.url, admin.url
    status, _, _ = browser.http("GET", f"{base}/console/admin/security", cookie=admin.cookie_header())
    assert status in (302, 303), f"an admin page opened before the TOTP code: {status}"
    admin.type("input[name=code]", "999999" if totp(secret) != "999999" else "888888")
    admin.click("form.signin button")
    assert "wrong" in admin.text("p.message"), admin.text("main")
    admin.get(f"{base}/console/login/totp")
    time.sleep(1.1)  # the throttle's delay after the wrong code
    admin.type("input[name=code]", totp(secret))
    admin.click("form.signin button")
    admin.wait_for(lambda: "/console/admin" in admin.url, "the dashboard after the right code")
    admin.screenshot("admin-after-totp")
    ok("with TOTP on, sign-in asks for the code; a wrong one is refused, the right one lets the administrator in")
    admin.quit()
    srv.stop()


def non_loopback_address():
    """An address of this machine that is not loopback, or None (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def https_and_plain_http():
    t = h.Tegami("console-tls")
    t.data.mkdir(parents=True)
    t.domain("example.com")
    t.cli("account", "add", ADMIN[0], "--password-stdin", "--admin", stdin=ADMIN[1] + "\n")
    key, cert = t.root / "key.pem", t.root / "cert.pem"
    r = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-subj", "/CN=mail.example.com", "-days", "2", "-keyout", str(key), "-out", str(cert)],
        capture_output=True, timeout=60,
    )
    assert r.returncode == 0, r.stderr
    t.write_config(f'[tls]\ncert = "{cert}"\nkey = "{key}"\n')
    srv = t.serve(extra=("--http", "0.0.0.0:0", "--https", "0.0.0.0:0"))
    https = srv.port("https")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))
    with opener.open(f"https://{h.HOST}:{https}/console/login", timeout=30) as reply:
        page = reply.read().decode()
        login_cookie = reply.headers["Set-Cookie"].split(";")[0]
        csp = reply.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp, csp
    token = re.search(r'name="login_token" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode(
        {"login_token": token, "address": ADMIN[0], "password": ADMIN[1], "next": "/console/"}
    ).encode()
    request = urllib.request.Request(f"https://{h.HOST}:{https}/console/login", data=form)
    request.add_header("Cookie", login_cookie)

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    no_redirect = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), NoRedirect)
    try:
        no_redirect.open(request, timeout=30)
        raise AssertionError("signing in over HTTPS did not redirect")
    except urllib.error.HTTPError as e:
        assert e.code == 303, e.code
        cookies = e.headers.get_all("Set-Cookie")
    session = [c for c in cookies if c.startswith("tegami_session=")]
    assert session and "; Secure" in session[0] and "HttpOnly" in session[0], cookies
    ok("the console answers on the HTTPS listener, and its session cookie is Secure and HttpOnly")

    other = non_loopback_address()
    if other is None:
        h.note("this machine has no non-loopback address: the plain-HTTP refusal is not checked here")
    else:
        status, _, body = browser.http("GET", f"http://{other}:{srv.http}/console/login")
        assert status == 403 and b"HTTPS" in body, (status, body[:300])
        with opener.open(f"https://{other}:{https}/console/login", timeout=30) as reply:
            assert reply.status == 200 and b'name="password"' in reply.read()
        ok(f"from {other} (not loopback) plain HTTP is refused the sign-in form, HTTPS gets it")
    srv.stop()


def all_tests():
    test()
    https_and_plain_http()


if __name__ == "__main__":
    h.main(all_tests, timeout=400)
