"""A small W3C WebDriver client for the web console's end-to-end tests, stdlib only.

It starts Debian's chromedriver on a free loopback port and drives headless Chromium
(/usr/bin/chromium) through the WebDriver protocol (JSON over HTTP): open a page, find
elements by CSS selector, type, click, read text, run a script, take a screenshot. Each
Browser has its own empty profile, so tests share nothing. Screenshots are kept as test
artifacts in target/e2e-artifacts/<script>/ (TEGAMI_ARTIFACTS overrides the folder).

Chromium starts with the flags this machine needs: no sandbox (the suite runs as root),
and no background networking, which a closed network would refuse many times at start.
"""

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import harness as h

CHROMIUM = os.environ.get("TEGAMI_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("TEGAMI_CHROMEDRIVER", "/usr/bin/chromedriver")
ELEMENT = "element-6066-11e4-a52f-4a5d4ee8d94b"


def artifacts_dir():
    name = Path(sys.argv[0]).stem
    root = os.environ.get("TEGAMI_ARTIFACTS") or str(h.REPO / "target" / "e2e-artifacts")
    path = Path(root) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def _free_port():
    return h.free_port()


class WebDriverError(AssertionError):
    pass


class Browser:
    """One headless Chromium. `lang` becomes its Accept-Language."""

    def __init__(self, lang="en-US,en", timeout=60):
        for tool in (CHROMIUM, CHROMEDRIVER):
            assert shutil.which(tool), f"{tool} is missing: scripts/test installs chromium and chromium-driver"
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="tegami-chromium-")
        self.downloads = Path(self.profile) / "downloads"
        self.downloads.mkdir()
        self.port = _free_port()
        self.log = Path(self.profile) / "chromedriver.log"
        self.driver = subprocess.Popen(
            [CHROMEDRIVER, f"--port={self.port}", f"--log-path={self.log}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=h._set_pdeathsig,
        )
        h.at_cleanup(self.quit)
        self.base = f"http://{h.HOST}:{self.port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if self._call("GET", "/status").get("ready"):
                    break
            except (OSError, WebDriverError):
                pass
            assert time.monotonic() < deadline, "chromedriver did not become ready in 20 s"
            time.sleep(0.1)
        options = {
            "binary": CHROMIUM,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1280,1000",
                f"--user-data-dir={self.profile}/profile",
            ],
            "prefs": {
                "intl.accept_languages": lang,
                "download.default_directory": str(self.downloads),
                "download.prompt_for_download": False,
            },
        }
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}}}
        self.session = self._call("POST", "/session", caps)["sessionId"]
        self._call("POST", self._s("/timeouts"), {"pageLoad": timeout * 1000, "script": timeout * 1000})

    # -- protocol ------------------------------------------------------------

    def _call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout + 30) as r:
                reply = json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            reply = json.loads(e.read() or b"{}")
            value = reply.get("value", {})
            raise WebDriverError(f"WebDriver {method} {path}: {value.get('error')}: {value.get('message', '')[:300]}")
        return reply.get("value", reply)

    def _s(self, path):
        return f"/session/{self.session}{path}"

    def quit(self):
        if self.driver.poll() is None:
            try:
                self._call("DELETE", self._s(""))
            except Exception:
                pass
            self.driver.terminate()
            try:
                self.driver.wait(10)
            except subprocess.TimeoutExpired:
                self.driver.kill()
        shutil.rmtree(self.profile, ignore_errors=True)

    # -- pages ---------------------------------------------------------------

    def get(self, url):
        self._call("POST", self._s("/url"), {"url": url})

    @property
    def url(self):
        return self._call("GET", self._s("/url"))

    @property
    def title(self):
        return self._call("GET", self._s("/title"))

    @property
    def source(self):
        return self._call("GET", self._s("/source"))

    def back(self):
        self._call("POST", self._s("/back"), {})

    def execute(self, script, *args):
        """Runs `script` (a function body; `arguments` holds args) in the page."""
        return self._call("POST", self._s("/execute/sync"), {"script": script, "args": list(args)})

    def screenshot(self, name):
        png = base64.b64decode(self._call("GET", self._s("/screenshot")))
        path = artifacts_dir() / f"{name}.png"
        path.write_bytes(png)
        return path

    def cookies(self):
        return {c["name"]: c["value"] for c in self._call("GET", self._s("/cookie"))}

    def cookie_header(self):
        return "; ".join(f"{k}={v}" for k, v in self.cookies().items())

    # -- elements ------------------------------------------------------------

    def find_all(self, css):
        found = self._call("POST", self._s("/elements"), {"using": "css selector", "value": css})
        # W3C names the reference ELEMENT's long key; chromedriver's legacy mode "ELEMENT".
        return [e.get(ELEMENT) or e.get("ELEMENT") or next(iter(e.values())) for e in found]

    def find(self, css, wait=None):
        """The first element matching `css`, waiting up to `wait` seconds for it."""
        deadline = time.monotonic() + (self.timeout if wait is None else wait)
        while True:
            found = self.find_all(css)
            if found:
                return found[0]
            if time.monotonic() >= deadline:
                raise WebDriverError(f"no element matches {css!r} on {self.url}")
            time.sleep(0.1)

    def has(self, css):
        return bool(self.find_all(css))

    def click(self, css):
        self._call("POST", self._s(f"/element/{self.find(css)}/click"), {})

    def type(self, css, text, clear=True):
        element = self.find(css)
        if clear:
            self._call("POST", self._s(f"/element/{element}/clear"), {})
        self._call("POST", self._s(f"/element/{element}/value"), {"text": text})

    def text(self, css):
        return self._call("GET", self._s(f"/element/{self.find(css)}/text"))

    def texts(self, css):
        return [self._call("GET", self._s(f"/element/{e}/text")) for e in self.find_all(css)]

    def attr(self, css, name):
        return self._call("GET", self._s(f"/element/{self.find(css)}/attribute/{name}"))

    def select(self, css, value):
        """Chooses the option with `value` in a <select>."""
        self.click(f"{css} option[value={json.dumps(value)}]")

    def upload(self, css, path):
        """Sets a file input to a local file."""
        self._call("POST", self._s(f"/element/{self.find(css)}/value"), {"text": str(path)})

    def wait_for(self, predicate, what, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            try:
                value = predicate()
            except WebDriverError as e:
                # The page the predicate read was replaced under it (a form posted and the
                # next page loaded between finding an element and reading it): not yet.
                if "stale element" not in str(e):
                    raise
                value = None
            if value:
                return value
            if time.monotonic() >= deadline:
                raise WebDriverError(f"timed out waiting for {what} on {self.url}")
            time.sleep(0.2)

    def wait_download(self, timeout=60):
        """The first finished download in this browser's download folder."""

        def done():
            files = [p for p in self.downloads.iterdir() if not p.name.endswith(".crdownload")]
            partial = [p for p in self.downloads.iterdir() if p.name.endswith(".crdownload")]
            return files[0] if files and not partial else None

        return self.wait_for(done, "a finished download", timeout)


def sign_in(b, base, address, password, next_path=None):
    """Signs in through the console's form; returns the page's URL after."""
    url = f"{base}/console/login"
    if next_path:
        url += "?next=" + urllib.parse.quote(next_path)
    b.get(url)
    b.type("input[name=address]", address)
    b.type("input[name=password]", password)
    b.click("form.signin button[type=submit]")
    b.wait_for(
        lambda: urllib.parse.urlparse(b.url).path != "/console/login" or b.has("p.message"),
        "the sign-in to answer",
    )
    return b.url


def http(method, url, cookie=None, data=None, headers=None, timeout=30):
    """One request without the browser: (status, headers, body bytes). No redirects followed."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    if isinstance(data, dict):
        data = urllib.parse.urlencode(data).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if cookie:
        req.add_header("Cookie", cookie)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with opener.open(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()
