#!/usr/bin/env python3
"""Preview, a test mail, edit and copy of a campaign, and template defaults (issue 21,
"Build": send a test to me; a preview with a chosen subscriber's data; edit or copy a
scheduled campaign; default values for missing attributes in templates).

Setup: a loopback MX (newsletter_common.LoopbackMx) reached through `[[queue.route]] domain
= "peer.test"`. A list of two: anna@peer.test (name Anna, city Kyoto) and ben@peer.test (no
name, no attributes). A campaign scheduled in 2099, its templates with defaults
({{name|friend}}, {{attr.city|your town}}) and one link.

Checks:
- `campaign preview ID --subscriber anna@peer.test` prints "Subject: Hi Anna" and her text
  with the original link and the inert unsubscribe link; for ben, the defaults; `--json`
  has the subject.
- `campaign test ID --to me@peer.test --subscriber anna@peer.test` reaches the MX once, to
  me@peer.test only, from news@example.com, subject "[TEST] Hi Anna"; the campaign's totals
  stay 0 and it is still scheduled.
- `campaign edit ID --subject .. --at <past>` changes it and starts it: anna and ben each
  get the edited subject once. An edit once it is done is refused (exit code not 0, the
  error says only a draft or scheduled campaign can be edited).
- `campaign copy ID` is a draft nobody gets; `campaign copy ID --at <past>` is scheduled
  and reaches both again.
"""

import email
import email.policy
import os
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import newsletter_common as nl  # noqa: E402
import peers  # noqa: E402
from harness import ok  # noqa: E402

LIST = "news"
ANNA = "anna@peer.test"
BEN = "ben@peer.test"
ME = "me@peer.test"
TEXT = "Hello {{name|friend}} in {{attr.city|your town}}.\nRead https://example.org/a\n{{unsubscribe_url}}\n"
PAST = "2020-01-01 00:00"


def subject_of(body):
    return str(email.message_from_bytes(body, policy=email.policy.default)["Subject"])


def test():
    t = h.Tegami("nl-preview")
    mx = nl.LoopbackMx()
    http_port = peers.free_port()
    t.write_config(nl.config(mx.port, http_port, rate=100))
    t.domain("example.com")
    t.cli("list", "add", LIST, "--from", "news@example.com", "--from-name", "Example News")
    t.cli("subscriber", "add", LIST, ANNA, "--name", "Anna", "--attr", "city=Kyoto")
    t.cli("subscriber", "add", LIST, BEN)
    srv = nl.serve(t, http_port)
    c = nl.campaign_create(t, LIST, "Hi {{name|friend}}", TEXT, at="2099-01-01 09:00")

    out = t.cli("campaign", "preview", str(c), "--subscriber", ANNA).out
    assert out.startswith("Subject: Hi Anna\n"), out
    assert "Hello Anna in Kyoto." in out and "https://example.org/a" in out, out
    assert f"http://{h.HOST}:{http_port}/unsubscribe/test" in out, out
    out = t.cli("campaign", "preview", str(c), "--subscriber", BEN).out
    assert "Subject: Hi friend" in out and "Hello friend in your town." in out, out
    assert nl.cli_json(t, "campaign", "preview", str(c))["subject"] == "Hi friend"
    ok("preview renders anna's data, and the defaults for ben and for a sample reader")

    t.cli("campaign", "test", str(c), "--to", ME, "--subscriber", ANNA)
    peers.wait_until("the test mail at the MX", lambda: mx.received_by(ME), 60)
    sender, rcpts, body = mx.received_by(ME)[0]
    assert rcpts == [ME] and sender == "news@example.com", (sender, rcpts)
    assert subject_of(body) == "[TEST] Hi Anna", subject_of(body)
    state, totals = nl.campaign(t, c)
    assert state == "scheduled" and not any(totals.values()), (state, totals)
    assert not mx.received_by(ANNA) and not mx.received_by(BEN)
    ok("the test mail went to me only, [TEST] in its subject, outside the campaign's totals")

    t.cli("campaign", "edit", str(c), "--subject", "Edited for {{name|friend}}", "--at", PAST)
    for a in (ANNA, BEN):
        peers.wait_until(f"the campaign at {a}", lambda a=a: mx.received_by(a), 60)
    peers.wait_until("campaign done", lambda: nl.campaign(t, c)[0] == "done", 120)
    assert subject_of(mx.received_by(ANNA)[0][2]) == "Edited for Anna"
    assert subject_of(mx.received_by(BEN)[0][2]) == "Edited for friend"
    r = t.cli("campaign", "edit", str(c), "--subject", "late", check=False)
    assert r.code != 0 and "only a draft or scheduled campaign" in r.err, r
    ok("an edit before the start is what readers get; once done, an edit is refused")

    r = t.cli("campaign", "copy", str(c))
    assert "(draft)" in r.out, r
    draft = int(r.out.split()[1])
    time.sleep(2)
    assert nl.campaign(t, draft)[0] == "draft"
    assert len(mx.received_by(ANNA)) == 1, mx.rcpts
    r = t.cli("campaign", "copy", str(c), "--at", PAST)
    assert "(scheduled)" in r.out, r
    copy = int(r.out.split()[1])
    for a in (ANNA, BEN):
        peers.wait_until(f"the copy at {a}", lambda a=a: len(mx.received_by(a)) >= 2, 60)
    peers.wait_until("copy done", lambda: nl.campaign(t, copy)[0] == "done", 120)
    assert nl.campaign(t, copy)[1]["sent"] == 2
    assert subject_of(mx.received_by(ANNA)[1][2]) == "Edited for Anna"
    ok("a copy without a start is a draft nobody gets; with one, it reaches both again")
    srv.stop()
    t.check_store("after the preview test")


if __name__ == "__main__":
    h.main(test, timeout=170)
