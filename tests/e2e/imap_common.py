"""IMAP helpers shared by the imap_*.py end-to-end tests (a helper module, not a test).

A raw IMAP client that reads whole responses (literals included), a parser for IMAP
response data (atoms, numbers, quoted strings, literals, NIL, parenthesised lists), FETCH
and SEARCH response decoding for both the raw client and imaplib, and modified UTF-7
mailbox names (RFC 3501 section 5.1.3). Standard library only.
"""

import base64
import datetime
import re
import socket

import harness as h


# ---------------------------------------------------------------------------
# Response data


class Atom(str):
    """An IMAP atom (flags such as \\Seen, numbers, FETCH item names); strings stay bytes."""

    def __repr__(self):
        return f"Atom({str.__repr__(self)})"


class ParseError(Exception):
    pass


_ATOM_END = b" ()\r\n"


def parse(data, pos=0, until=None):
    """Parses IMAP data into Python values: list for (...), bytes for strings and literals,
    None for NIL, Atom for everything else. Returns (values, position after them)."""
    out = []
    n = len(data)
    while pos < n:
        c = data[pos:pos + 1]
        if c == b" ":
            pos += 1
            continue
        if c == b")":
            if until == b")":
                return out, pos + 1
            raise ParseError(f"unbalanced ')' at {pos} in {data[:200]!r}")
        if c == b"(":
            inner, pos = parse(data, pos + 1, until=b")")
            out.append(inner)
            continue
        if c == b'"':
            pos += 1
            s = bytearray()
            while True:
                if pos >= n:
                    raise ParseError(f"unterminated quoted string in {data[:200]!r}")
                b = data[pos:pos + 1]
                if b == b"\\":
                    s += data[pos + 1:pos + 2]
                    pos += 2
                    continue
                if b == b'"':
                    pos += 1
                    break
                s += b
                pos += 1
            out.append(bytes(s))
            continue
        if c in (b"{", b"~") and re.match(rb"~?\{\d+\+?\}\r\n", data[pos:pos + 30]):
            m = re.match(rb"~?\{(\d+)\+?\}\r\n", data[pos:])
            size = int(m.group(1))
            start = pos + m.end()
            if start + size > n:
                raise ParseError(f"literal of {size} octets runs past the end of the response")
            out.append(data[start:start + size])
            pos = start + size
            continue
        if c in (b"\r", b"\n"):
            raise ParseError(f"CR or LF outside a literal at {pos} in {data[:200]!r}")
        # An atom; a [...] section (which may hold spaces and parentheses) and a <partial>
        # belong to it, as in BODY[HEADER.FIELDS (SUBJECT)]<0>.
        start = pos
        while pos < n and data[pos:pos + 1] not in (b" ", b"(", b")", b"\r", b"\n"):
            if data[pos:pos + 1] == b"[":
                end = data.find(b"]", pos)
                if end < 0:
                    raise ParseError(f"unterminated '[' in {data[:200]!r}")
                pos = end + 1
                continue
            pos += 1
        word = data[start:pos].decode("utf-8", "replace")
        out.append(None if word.upper() == "NIL" else Atom(word))
    if until is not None:
        raise ParseError(f"missing ')' in {data[:300]!r}")
    return out, pos


def parse_all(data):
    values, _ = parse(data)
    return values


def item_key(atom):
    """A FETCH item name normalised for lookup: upper case, no quotes, single spaces."""
    k = str(atom).upper().replace('"', "")
    return re.sub(r"\s+", " ", k)


def fetch_items(values):
    """[Atom('UID'), Atom('5'), Atom('FLAGS'), [...], ...] -> {'UID': '5', 'FLAGS': [...]}."""
    if len(values) % 2:
        raise ParseError(f"odd number of FETCH items: {values!r}")
    out = {}
    for i in range(0, len(values), 2):
        out[item_key(values[i])] = values[i + 1]
    return out


def parse_fetch_response(resp):
    """One untagged response b'* 3 FETCH (...)' (or b'3 FETCH (...)' / b'3 (...)') -> (3, {items})."""
    m = re.match(rb"(?:\* )?(\d+) (?:FETCH )?", resp, re.I)
    if not m:
        raise ParseError(f"not a FETCH response: {resp[:200]!r}")
    values = parse_all(resp[m.end():])
    if len(values) != 1 or not isinstance(values[0], list):
        raise ParseError(f"FETCH response is not one parenthesised list: {resp[:300]!r}")
    return int(m.group(1)), fetch_items(values[0])


def join_imaplib(data):
    """imaplib splits a response with literals into (head, literal) tuples and a trailer;
    this joins them back into whole responses (literals as {n}CRLF + bytes)."""
    out = []
    cur = b""
    for part in data:
        if part is None:
            continue
        if isinstance(part, tuple):
            cur += part[0] + b"\r\n" + part[1]
        else:
            cur += part
            out.append(cur)
            cur = b""
    if cur:
        out.append(cur)
    return out


def imaplib_fetch(data):
    """imaplib fetch() data -> {seq: {items}} (several responses for one message are merged)."""
    out = {}
    for resp in join_imaplib(data):
        seq, items = parse_fetch_response(resp)
        out.setdefault(seq, {}).update(items)
    return out


def flags_of(items):
    return {str(f) for f in items["FLAGS"]}


def search_result(data):
    """imaplib search data [b'1 2 3'] (or raw b'* SEARCH 1 2 3' lines) -> [1, 2, 3]."""
    nums = []
    for d in data:
        if d is None:
            continue
        d = re.sub(rb"^\* SEARCH ?", b"", d)
        nums += [int(x) for x in d.split()]
    return nums


def internaldate(s):
    """'17-Jul-1996 02:44:25 -0700' -> aware datetime."""
    if isinstance(s, bytes):
        s = s.decode()
    return datetime.datetime.strptime(s.strip(), "%d-%b-%Y %H:%M:%S %z")


# ---------------------------------------------------------------------------
# Modified UTF-7 (RFC 3501 section 5.1.3)


def mutf7_encode(name):
    out = []
    pending = []

    def flush():
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode().rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def mutf7_decode(name):
    def dec(m):
        s = m.group(1)
        if s == "":
            return "&"
        s = s.replace(",", "/")
        s += "=" * (-len(s) % 4)
        return base64.b64decode(s).decode("utf-16-be")

    return re.sub(r"&([^-]*)-", dec, name)


def quote(s):
    """An IMAP quoted string for an ASCII argument."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ---------------------------------------------------------------------------
# A raw IMAP client


class RawImap(h.Raw):
    """A socket speaking IMAP by hand: commands with chosen tags, whole responses back."""

    def __init__(self, port, timeout=30, greeting=True):
        super().__init__(port, timeout)
        self.n = 0
        self.greeting = self.response() if greeting else None

    def next_tag(self):
        self.n += 1
        return f"t{self.n}"

    def readexact(self, size):
        while len(self.buf) < size:
            chunk = self.sock.recv(max(65536, size - len(self.buf)))
            if not chunk:
                raise h.Closed(f"connection closed inside a literal ({len(self.buf)} of {size} octets)")
            self.buf += chunk
        data, self.buf = self.buf[:size], self.buf[size:]
        return data

    def response(self):
        """One whole server response without its final CRLF; literals are kept inline as
        {n}CRLF + their bytes, so parse() reads them back."""
        out = self.line()
        while True:
            m = re.search(rb"\{(\d+)\}$", out)
            if not m:
                return out
            lit = self.readexact(int(m.group(1)))
            out += b"\r\n" + lit + self.line()

    def until(self, tag):
        """Reads responses up to the tagged one: (status 'OK'/'NO'/'BAD', text, [untagged])."""
        untagged = []
        want = tag.encode() + b" "
        while True:
            r = self.response()
            if r.startswith(want):
                status, _, text = r[len(want):].partition(b" ")
                return status.decode("ascii", "replace").upper(), text, untagged
            untagged.append(r)

    def cmd(self, text, tag=None):
        """Sends `tag text` and returns until(tag)."""
        tag = tag or self.next_tag()
        if isinstance(text, str):
            text = text.encode()
        self.send(tag.encode() + b" " + text + b"\r\n")
        return self.until(tag)

    def ok(self, text, what=None):
        status, resp, untagged = self.cmd(text)
        assert status == "OK", f"{what or text!r}: got {status} {resp!r}; untagged {untagged[:5]!r}"
        return resp, untagged

    def cmd_literals(self, parts, tag=None):
        """A command with synchronizing literals: parts = [text, literal, text, literal, ..., text].
        Waits for the '+' continuation before each literal."""
        tag = tag or self.next_tag()
        first = True
        untagged = []
        for i in range(0, len(parts), 2):
            text = parts[i].encode() if isinstance(parts[i], str) else parts[i]
            head = (tag.encode() + b" " if first else b"") + text
            first = False
            if i + 1 < len(parts):
                lit = parts[i + 1]
                self.send(head + b"{%d}\r\n" % len(lit))
                while True:
                    r = self.response()
                    if r.startswith(b"+"):
                        break
                    if r.startswith(tag.encode() + b" "):
                        # Refused before the literal was asked for: the literal is not sent.
                        status, _, rest = r[len(tag) + 1:].partition(b" ")
                        return status.decode("ascii", "replace").upper(), rest, untagged
                    untagged.append(r)
                self.send(lit)
            else:
                self.send(head + b"\r\n")
        status, text, more = self.until(tag)
        return status, text, untagged + more

    def login(self, user, password):
        self.ok(f"LOGIN {quote(user)} {quote(password)}", what=f"LOGIN {user}")

    def select(self, mailbox="INBOX", examine=False):
        """SELECT or EXAMINE: (tagged text, {response name: value}) with EXISTS/RECENT as ints."""
        resp, untagged = self.ok(f"{'EXAMINE' if examine else 'SELECT'} {quote(mailbox)}")
        info = {"tagged": resp}
        for u in untagged:
            m = re.match(rb"\* (\d+) (EXISTS|RECENT)$", u, re.I)
            if m:
                info[m.group(2).decode().upper()] = int(m.group(1))
                continue
            m = re.match(rb"\* OK \[([A-Z-]+)(?: ([^\]]*))?\]", u, re.I)
            if m:
                info[m.group(1).decode().upper()] = (m.group(2) or b"").decode()
                continue
            m = re.match(rb"\* FLAGS (.*)$", u, re.I)
            if m:
                info["FLAGS"] = m.group(1).decode()
        return info

    def wait_untagged(self, pattern, timeout):
        """Reads untagged responses until one matches `pattern` (regex on bytes); returns
        (that response, seconds waited, [responses read before it]) or (None, timeout, seen)."""
        import time

        start = time.monotonic()
        seen = []
        try:
            while True:
                left = timeout - (time.monotonic() - start)
                if left <= 0:
                    return None, timeout, seen
                self.sock.settimeout(left)
                try:
                    r = self.response()
                except socket.timeout:
                    return None, timeout, seen
                if re.search(pattern, r):
                    return r, time.monotonic() - start, seen
                seen.append(r)
        finally:
            self.sock.settimeout(30)


def fetch_raw(untagged):
    """Untagged responses of a raw FETCH -> {seq: {items}} (other responses ignored)."""
    out = {}
    for r in untagged:
        if re.match(rb"\* \d+ FETCH ", r, re.I):
            seq, items = parse_fetch_response(r)
            out.setdefault(seq, {}).update(items)
    return out


def expunges(untagged):
    return [int(m.group(1)) for r in untagged for m in [re.match(rb"\* (\d+) EXPUNGE$", r, re.I)] if m]


def exists(untagged):
    got = [int(m.group(1)) for r in untagged for m in [re.match(rb"\* (\d+) EXISTS$", r, re.I)] if m]
    return got[-1] if got else None


def apply_expunges(uids, numbers):
    """Applies `* n EXPUNGE` responses in order to a list of UIDs; returns the removed UIDs."""
    uids = list(uids)
    removed = []
    for n in numbers:
        assert 1 <= n <= len(uids), f"* {n} EXPUNGE but only {len(uids)} messages are left"
        removed.append(uids.pop(n - 1))
    return removed, uids
