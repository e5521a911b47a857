#!/usr/bin/env python3
"""LIST-EXTENDED (RFC 5258), LIST-STATUS (RFC 5819) and CREATE-SPECIAL-USE (RFC 6154),
over a raw socket and through imaplib.

Checks: CAPABILITY names LIST-EXTENDED, LIST-STATUS, CREATE-SPECIAL-USE and SPECIAL-USE.
On RFC 5258 §5's hierarchy (Fruit, Fruit/Apple, Fruit/Banana, Tofu, with Fruit/Banana,
Fruit/Peach and Vegetable/Broccoli subscribed besides the defaults): LIST (SUBSCRIBED) lists
exactly the subscribed names, all \\Subscribed, those that do not exist \\NonExistent;
LIST (SUBSCRIBED RECURSIVEMATCH) "" % lists Fruit and Vegetable for their subscribed
children with ("CHILDINFO" ("SUBSCRIBED")) and INBOX as \\Subscribed, nothing else;
LIST "" ("INBOX" "Fruit/%" "Tofu") lists exactly those names, once each; RETURN
(SUBSCRIBED) marks the subscribed and lists no name that does not exist; LIST (SPECIAL-USE)
lists the five role mailboxes. RETURN (STATUS (MESSAGES UNSEEN UIDNEXT HIGHESTMODSEQ))
follows each selectable mailbox's LIST at once with its STATUS, equal to a STATUS command's,
and gives none for a \\Noselect level. CREATE "My Sent" (USE (\\Sent)) is refused with
[USEATTR] while Sent holds the role, and so are \\All and two uses, creating nothing; once
Archive is deleted, CREATE "Old/Archive 2026" (USE (\\Archive)) gives the role to the new
mailbox (across a restart too) and a second one is refused. Excess (33 patterns, 17
options), RECURSIVEMATCH alone and unknown options are BAD. imaplib sends an extended LIST
with STATUS and reads its LIST and STATUS responses. The store passes `check` afterwards.
"""

import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import imap_common as ic  # noqa: E402
from harness import ok  # noqa: E402

ALICE = "alice@example.com"
PW = "alice-list-pw"
ROLES = {"Sent", "Drafts", "Trash", "Junk", "Archive"}
DEFAULT_SUBSCRIBED = {"INBOX"} | ROLES


def msg(i):
    return (f"Message-ID: <le-{i}@ext.test>\r\nFrom: s@ext.test\r\nTo: {ALICE}\r\nSubject: message {i}\r\n\r\n"
            f"body {i}\r\n").encode()


def login(srv):
    r = ic.RawImap(srv.imap)
    r.login(ALICE, PW)
    return r


def parse_list(line):
    """'* LIST (attrs) "/" name [ext]' -> (name, {ATTRS upper}, extended data or None)."""
    values, _ = ic.parse(line[len(b"* LIST "):])
    attrs, delim, name = values[0], values[1], values[2]
    assert delim == b"/", f"delimiter {delim!r} in {line!r}"
    name = name.decode() if isinstance(name, bytes) else str(name)
    return ic.mutf7_decode(name), {str(a).upper() for a in attrs}, (values[3] if len(values) > 3 else None)


def lists(untagged):
    """The LIST responses, in order: [(name, attrs, extended)]."""
    return [parse_list(u) for u in untagged if u.upper().startswith(b"* LIST ")]


def listed(r, command):
    resp, untagged = r.ok(command)
    got = lists(untagged)
    names = [n for n, _, _ in got]
    assert len(names) == len(set(names)), f"{command}: a name listed twice: {names}"
    return {n: (a, e) for n, a, e in got}, untagged


def status_of(line):
    """'* STATUS name (K v ...)' -> (name, {K: v})."""
    values, _ = ic.parse(line[len(b"* STATUS "):])
    name = values[0].decode() if isinstance(values[0], bytes) else str(values[0])
    items = values[1]
    return ic.mutf7_decode(name), {str(items[i]).upper(): int(items[i + 1]) for i in range(0, len(items), 2)}


def code(text):
    m = re.match(rb"\[([A-Z-]+)", text)
    return m.group(1).decode() if m else None


def capabilities(srv):
    r = login(srv)
    caps = set(r.ok("CAPABILITY")[1][0].decode().upper().split())
    for want in ("LIST-EXTENDED", "LIST-STATUS", "CREATE-SPECIAL-USE", "SPECIAL-USE"):
        assert want in caps, f"CAPABILITY lacks {want}: {sorted(caps)}"
    r.ok("LOGOUT")
    r.close()
    ok("CAPABILITY names LIST-EXTENDED, LIST-STATUS, CREATE-SPECIAL-USE and SPECIAL-USE")


def selection(srv):
    r = login(srv)
    for name in ("Fruit", "Fruit/Apple", "Fruit/Banana", "Tofu", "Levels/Deep"):
        r.ok(f'CREATE "{name}"')
    # CREATE makes the levels above a name as mailboxes; deleting one leaves a \Noselect level.
    r.ok('DELETE "Levels"')
    for name in ("Fruit/Banana", "Fruit/Peach", "Vegetable/Broccoli"):
        r.ok(f'SUBSCRIBE "{name}"')

    got, _ = listed(r, 'LIST (SUBSCRIBED) "" "*"')
    want = DEFAULT_SUBSCRIBED | {"Fruit/Banana", "Fruit/Peach", "Vegetable/Broccoli"}
    assert set(got) == want, f"LIST (SUBSCRIBED): {sorted(got)}, wanted {sorted(want)}"
    for name, (attrs, ext) in got.items():
        assert "\\SUBSCRIBED" in attrs, f"LIST (SUBSCRIBED): {name} lacks \\Subscribed: {attrs}"
        nonexistent = name in ("Fruit/Peach", "Vegetable/Broccoli")
        assert ("\\NONEXISTENT" in attrs) == nonexistent, f"LIST (SUBSCRIBED): {name} has {attrs}"
        assert ext is None, f"LIST (SUBSCRIBED) without RECURSIVEMATCH gave {name} extended data {ext!r}"
    ok("LIST (SUBSCRIBED) \"\" *: the subscribed names, all \\Subscribed, Fruit/Peach and "
       "Vegetable/Broccoli \\NonExistent")

    got, _ = listed(r, 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "%" RETURN (CHILDREN)')
    want = DEFAULT_SUBSCRIBED | {"Fruit", "Vegetable"}
    assert set(got) == want, f"LIST (SUBSCRIBED RECURSIVEMATCH) %: {sorted(got)}, wanted {sorted(want)}"
    for name in ("Fruit", "Vegetable"):
        attrs, ext = got[name]
        assert "\\SUBSCRIBED" not in attrs, f"{name} is not subscribed but shows {attrs}"
        assert ext == [b"CHILDINFO", [b"SUBSCRIBED"]], f"{name}: extended data {ext!r}"
    assert "\\NONEXISTENT" in got["Vegetable"][0] and "\\HASCHILDREN" in got["Fruit"][0], got
    assert got["INBOX"][1] is None and "\\SUBSCRIBED" in got["INBOX"][0], got["INBOX"]
    ok('LIST (SUBSCRIBED RECURSIVEMATCH) "" %: Fruit and Vegetable (\\NonExistent) with '
       '("CHILDINFO" ("SUBSCRIBED")), INBOX and the roles \\Subscribed, Tofu not listed')

    got, _ = listed(r, 'LIST "" ("INBOX" "Fruit/%" "Tofu" "inbox")')
    assert list(got) == ["Fruit/Apple", "Fruit/Banana", "INBOX", "Tofu"], f"several patterns: {list(got)}"
    assert all("\\SUBSCRIBED" not in a for a, _ in got.values()), f"\\Subscribed unasked: {got}"
    ok('LIST "" ("INBOX" "Fruit/%" "Tofu" "inbox"): Fruit/Apple Fruit/Banana INBOX Tofu, once each, in order')

    got, _ = listed(r, 'LIST "" "*" RETURN (SUBSCRIBED)')
    assert "\\SUBSCRIBED" in got["Fruit/Banana"][0] and "\\SUBSCRIBED" not in got["Fruit/Apple"][0], got
    assert "Fruit/Peach" not in got and "Vegetable" not in got, f"RETURN (SUBSCRIBED) listed a name that does not exist: {sorted(got)}"
    assert "\\NOSELECT" in got["Levels"][0], got["Levels"]
    ok('LIST "" * RETURN (SUBSCRIBED): \\Subscribed on the subscribed only; no \\NonExistent names listed')

    got, _ = listed(r, 'LIST (SPECIAL-USE) "" "*" RETURN (SPECIAL-USE)')
    assert set(got) == ROLES, f"LIST (SPECIAL-USE): {sorted(got)}"
    for name, (attrs, _) in got.items():
        assert f"\\{name}".upper() in attrs, f"{name}: {attrs}"
    ok("LIST (SPECIAL-USE) \"\" *: exactly Sent Drafts Trash Junk Archive, each with its attribute")
    r.ok("LOGOUT")
    r.close()


def list_status(srv):
    for i in range(3):
        h.send(srv.smtp, "s@ext.test", [ALICE], msg(i))
    r = login(srv)
    r.select("INBOX")
    r.ok("STORE 1 +FLAGS (\\Seen)")
    r.ok("UNSELECT")
    items = "MESSAGES UNSEEN UIDNEXT UIDVALIDITY HIGHESTMODSEQ"
    _, untagged = r.ok(f'LIST "" "%" RETURN (STATUS ({items}))')
    seen = {}
    for i, line in enumerate(untagged):
        if not line.upper().startswith(b"* LIST "):
            continue
        name, attrs, _ = parse_list(line)
        follows = untagged[i + 1] if i + 1 < len(untagged) else b""
        if "\\NOSELECT" in attrs:
            assert not follows.upper().startswith(b"* STATUS "), f"STATUS after \\Noselect {name}: {follows!r}"
            continue
        assert follows.upper().startswith(b"* STATUS "), f"no STATUS right after LIST {name}: {follows!r}"
        status_name, values = status_of(follows)
        assert status_name == name, f"STATUS for {status_name} after LIST {name}"
        seen[name] = values
    assert "Levels" not in seen and {"INBOX", "Fruit", "Tofu"} <= set(seen), f"LIST-STATUS: {sorted(seen)}"
    assert seen["INBOX"]["MESSAGES"] == 3 and seen["INBOX"]["UNSEEN"] == 2, seen["INBOX"]
    for name in ("INBOX", "Tofu"):
        _, untagged = r.ok(f'STATUS "{name}" ({items})')
        assert status_of(untagged[0]) == (name, seen[name]), f"STATUS {name} {untagged[0]!r} vs LIST-STATUS {seen[name]}"
    ok(f"LIST \"\" % RETURN (STATUS ({items})): each selectable mailbox's STATUS right after its LIST, "
       f"equal to STATUS's (INBOX {seen['INBOX']}), none for the \\Noselect level")

    m = h.imap_login(srv.imap, ALICE, PW)
    typ, data = m._simple_command("LIST", '""', '("INBOX" "Tofu")', "RETURN", "(STATUS (MESSAGES))")
    assert typ == "OK", f"imaplib LIST-STATUS: {typ} {data}"
    typ, found = m._untagged_response(typ, data, "LIST")
    names = sorted(parse_list(b"* LIST " + line)[0] for line in found)
    assert names == ["INBOX", "Tofu"], f"imaplib LIST-STATUS lists {names}"
    statuses = m.untagged_responses.pop("STATUS", [])
    assert sorted(s.decode() for s in statuses) == ['"INBOX" (MESSAGES 3)', '"Tofu" (MESSAGES 0)'], statuses
    m.logout()
    ok("imaplib: LIST \"\" (\"INBOX\" \"Tofu\") RETURN (STATUS (MESSAGES)) lists both and gives their STATUS")
    r.ok("LOGOUT")
    r.close()


def create_special_use(srv):
    r = login(srv)
    for command in ('CREATE "My Sent" (USE (\\Sent))', "CREATE Everything (USE (\\All))",
                    "CREATE Two (USE (\\Junk \\Trash))"):
        status, text, _ = r.cmd(command)
        assert status == "NO" and code(text) == "USEATTR", f"{command}: {status} {text!r}"
    got, _ = listed(r, 'LIST "" "*"')
    assert not {"My Sent", "Everything", "Two"} & set(got), f"a refused CREATE made a mailbox: {sorted(got)}"
    ok("CREATE with a held role (\\Sent), \\All, or two uses: NO [USEATTR], nothing created")

    r.ok("DELETE Archive")
    r.ok('CREATE "Old/Archive 2026" (USE (\\Archive))')
    status, text, _ = r.cmd('CREATE "Another" (USE (\\Archive))')
    assert status == "NO" and code(text) == "USEATTR", f"second \\Archive: {status} {text!r}"
    got, _ = listed(r, 'LIST (SPECIAL-USE) "" "*"')
    assert set(got) == ROLES - {"Archive"} | {"Old/Archive 2026"}, sorted(got)
    assert "\\ARCHIVE" in got["Old/Archive 2026"][0], got["Old/Archive 2026"]
    ok('DELETE Archive; CREATE "Old/Archive 2026" (USE (\\Archive)) gives it the role; a second \\Archive: NO [USEATTR]')
    r.ok("LOGOUT")
    r.close()


def bounds(srv):
    r = login(srv)
    patterns = " ".join(f"p{i}" for i in range(33))
    for command, why in ((f'LIST "" ({patterns})', "32 LIST patterns"),
                         (f'LIST ({" ".join(["REMOTE"] * 17)}) "" *', "16 options"),
                         ('LIST (RECURSIVEMATCH) "" *', "RECURSIVEMATCH"),
                         ('LIST (FOO) "" *', "selection option"),
                         ('LIST "" * RETURN (FOO)', "return option"),
                         ('LIST "" * RETURN (STATUS (BYTES))', "STATUS item")):
        status, text, _ = r.cmd(command)
        assert status == "BAD" and why.encode() in text, f"{command[:60]}: {status} {text!r}"
    patterns = " ".join(f"p{i}" for i in range(32))
    r.ok(f'LIST "" ({patterns})')
    r.ok("NOOP")
    ok("33 patterns, 17 options, RECURSIVEMATCH alone, unknown options and STATUS items: BAD; 32 patterns: OK")
    r.ok("LOGOUT")
    r.close()


def test():
    t = h.Tegami("imap-list-extended")
    t.domain("example.com")
    t.account(ALICE, PW)
    srv = t.serve(imap=True)
    capabilities(srv)
    selection(srv)
    list_status(srv)
    create_special_use(srv)
    bounds(srv)
    assert srv.stop() == 0
    srv = t.serve(imap=True)
    r = login(srv)
    got, _ = listed(r, 'LIST (SPECIAL-USE) "" "Old/*"')
    assert "\\ARCHIVE" in got["Old/Archive 2026"][0], got
    r.ok("LOGOUT")
    r.close()
    ok("the created \\Archive mailbox keeps its role across a restart")
    t.check_store("after LIST-EXTENDED and CREATE-SPECIAL-USE")
    assert srv.stop() == 0


if __name__ == "__main__":
    h.main(test, timeout=120)
