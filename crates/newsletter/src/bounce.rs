//! Reading bounces: RFC 3464 delivery status notifications (ours, Postfix's, anyone's)
//! and, failing that, the plain-text bounces older MTAs send, by heuristics.

use mail_parser::{MessageParser, MimeHeaders};

/// What a bounce says about the one recipient it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounce {
    /// A permanent failure (the address is bad); otherwise a temporary one.
    pub hard: bool,
    /// RFC 3463 status such as "5.1.1" ("5.0.0" / "4.0.0" when only guessed).
    pub status: String,
    /// The remote's words, one line, at most 300 characters.
    pub diagnostic: String,
}

/// The bounce in `message`, or `None` when it is not one (a DSN that reports delivery,
/// an autoreply, anything we cannot read).
pub fn parse_bounce(message: &[u8]) -> Option<Bounce> {
    let parsed = MessageParser::default().parse(message);
    if let Some(m) = &parsed {
        let mut found = None;
        for part in m.parts.iter() {
            let is_dsn = part.content_type().is_some_and(|ct| {
                let sub = ct.subtype().unwrap_or("").to_ascii_lowercase();
                matches!(ct.ctype().to_ascii_lowercase().as_str(), "message" | "text")
                    && (sub == "delivery-status" || sub == "global-delivery-status")
            });
            if is_dsn {
                let text = String::from_utf8_lossy(part.contents());
                if let Some(b) = parse_delivery_status(&text) {
                    found = Some(worse(found, b));
                } else {
                    // A DSN that reports no failure is not a bounce: no guessing.
                    return found;
                }
            }
        }
        if found.is_some() {
            return found;
        }
        let mut text = String::new();
        for i in 0..m.text_body_count().max(1) {
            if let Some(t) = m.body_text(i) {
                text.push_str(&t);
                text.push('\n');
            }
        }
        if !text.trim().is_empty() {
            return plain_bounce(&text);
        }
    }
    plain_bounce(&String::from_utf8_lossy(message))
}

fn worse(a: Option<Bounce>, b: Bounce) -> Bounce {
    match a {
        Some(a) if a.hard || !b.hard => a,
        _ => b,
    }
}

/// The fields of a `message/delivery-status` body, block by block (the first block is
/// about the message, the rest one per recipient), continuation lines unfolded.
fn dsn_blocks(text: &str) -> Vec<Vec<(String, String)>> {
    let mut blocks = Vec::new();
    let mut block: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            if !block.is_empty() {
                blocks.push(std::mem::take(&mut block));
            }
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = block.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            block.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    if !block.is_empty() {
        blocks.push(block);
    }
    blocks
}

fn parse_delivery_status(text: &str) -> Option<Bounce> {
    let mut found = None;
    for block in dsn_blocks(text) {
        let field = |name: &str| {
            block
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let Some(action) = field("action") else {
            continue;
        };
        let action = action.to_ascii_lowercase();
        let status = field("status")
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or("")
            .to_string();
        let hard = match action.as_str() {
            "failed" => !status.starts_with('4'),
            "delayed" => false,
            _ => continue,
        };
        let status = if status_code(&status).is_some() {
            status
        } else if hard {
            "5.0.0".into()
        } else {
            "4.0.0".into()
        };
        let diagnostic = field("diagnostic-code")
            .map(|d| {
                // "smtp; 550 5.1.1 ..." -> the reply itself.
                d.split_once(';').map_or(d, |(_, rest)| rest.trim())
            })
            .unwrap_or(&action);
        found = Some(worse(
            found,
            Bounce {
                hard,
                status,
                diagnostic: short(diagnostic),
            },
        ));
    }
    found
}

/// "5.1.1" and the like: class 2, 4 or 5, then two numbers.
fn status_code(s: &str) -> Option<(u8, &str)> {
    let mut parts = s.split('.');
    let class = parts.next()?;
    let subject = parts.next()?;
    let detail = parts.next()?;
    if parts.next().is_some()
        || !matches!(class, "2" | "4" | "5")
        || subject.is_empty()
        || detail.is_empty()
        || subject.len() > 3
        || detail.len() > 3
        || !subject
            .bytes()
            .chain(detail.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    Some((class.as_bytes()[0] - b'0', s))
}

fn short(s: &str) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    match one.char_indices().nth(300) {
        Some((i, _)) => one[..i].to_string(),
        None => one,
    }
}

const SOFT: &[&str] = &[
    "mailbox full",
    "mailbox is full",
    "over quota",
    "quota exceeded",
    "exceeded storage",
    "insufficient system storage",
    "insufficient storage",
    "try again later",
    "temporarily",
    "temporary failure",
    "greylist",
    "delivery delayed",
    "will be retried",
    "still trying",
];

const HARD: &[&str] = &[
    "user unknown",
    "unknown user",
    "no such user",
    "no such mailbox",
    "unknown recipient",
    "recipient unknown",
    "invalid recipient",
    "recipient address rejected",
    "address rejected",
    "does not exist",
    "doesn't exist",
    "mailbox unavailable",
    "mailbox not found",
    "account disabled",
    "account has been disabled",
    "no mailbox here",
    "permanent error",
    "permanent failure",
    "could not be delivered",
    "undeliverable",
    "delivery has failed",
];

/// Where the returned original message starts in a plain bounce: what follows is the
/// reader's mail, not the MTA's words, and must not be mistaken for a reason.
const ORIGINAL: &[&str] = &[
    "------ this is a copy of the message",
    "original message follows",
    "----- original message -----",
    "--- below this line is a copy of the message",
    "------- returned message --------",
    "----- transcript of session follows -----\n\n\n",
];

fn plain_bounce(text: &str) -> Option<Bounce> {
    let lower = text.to_ascii_lowercase();
    let end = ORIGINAL
        .iter()
        .filter_map(|marker| lower.find(marker))
        .min()
        .unwrap_or(lower.len());
    let lower = &lower[..end];
    let text = &text[..end];
    let lines: Vec<(&str, &str)> = lower.lines().zip(text.lines()).collect();

    // An enhanced status code or a reply code, with the line it stands in.
    let mut code: Option<(u8, String, &str)> = None;
    for (l, original) in &lines {
        for word in l.split(|c: char| {
            c.is_whitespace() || matches!(c, '(' | ')' | '<' | '>' | ',' | ';' | '[' | ']' | '#')
        }) {
            let word = word.trim_end_matches([':', '.', '-']);
            if let Some((class @ (4 | 5), status)) = status_code(word) {
                code = Some((class, status.to_string(), original));
                break;
            }
        }
        if code.is_some() {
            break;
        }
    }
    if code.is_none() {
        for (l, original) in &lines {
            let t = l.trim_start();
            let reply = t
                .get(..3)
                .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
                .filter(|_| t.len() == 3 || t[3..].starts_with([' ', '-']));
            // Reply codes inside the line ("said: 550 ...", "host x[1.2.3.4]: 550 ...").
            let inner = || {
                t.split_whitespace().find(|w| {
                    w.len() == 3
                        && w.bytes().all(|b| b.is_ascii_digit())
                        && matches!(w.as_bytes()[0], b'4' | b'5')
                })
            };
            if let Some(c) = reply.or_else(inner)
                && matches!(c.as_bytes()[0], b'4' | b'5')
                && c.as_bytes()[1] <= b'5'
            {
                let class = c.as_bytes()[0] - b'0';
                code = Some((class, format!("{class}.0.0"), original));
                break;
            }
        }
    }
    let phrase = |list: &[&str]| {
        lines
            .iter()
            .find(|(l, _)| list.iter().any(|p| l.contains(p)))
            .map(|(_, o)| *o)
    };
    if let Some(line) = phrase(SOFT) {
        let status = match &code {
            Some((4, s, _)) => s.clone(),
            _ => "4.0.0".into(),
        };
        // A full mailbox empties again: never a reason to drop a reader.
        return Some(Bounce {
            hard: false,
            status,
            diagnostic: short(line),
        });
    }
    match code {
        Some((class, status, line)) => Some(Bounce {
            hard: class == 5,
            status,
            diagnostic: short(line),
        }),
        None => phrase(HARD).map(|line| Bounce {
            hard: true,
            status: "5.0.0".into(),
            diagnostic: short(line),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(message: &str, expect: Option<(bool, &str, &str)>) {
        let got = parse_bounce(message.replace('\n', "\r\n").as_bytes());
        let got = got
            .as_ref()
            .map(|b| (b.hard, b.status.as_str(), b.diagnostic.as_str()));
        assert_eq!(got, expect, "{message}");
    }

    const OURS: &str = "From: Mail Delivery System <MAILER-DAEMON@mx.example.com>
To: <bounces+c1-2-abcdef01@example.com>
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary=\"dsn-1\"

This is a MIME-encapsulated message.

--dsn-1
Content-Type: text/plain; charset=utf-8
Content-Description: Notification

This is the mail system at host mx.example.com.

<anna@example.org>: 550 5.1.1 user unknown

--dsn-1
Content-Type: message/delivery-status
Content-Description: Delivery report

Reporting-MTA: dns; mx.example.com
Arrival-Date: Tue, 14 Nov 2023 22:13:20 +0000

Final-Recipient: rfc822; anna@example.org
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.example.org
Diagnostic-Code: smtp; 550 5.1.1 <anna@example.org>: user
 unknown
Last-Attempt-Date: Tue, 14 Nov 2023 22:13:20 +0000

--dsn-1
Content-Type: text/rfc822-headers
Content-Description: Undelivered Message Headers

From: \"News\" <news@example.com>
Subject: does not exist either

--dsn-1--
";

    #[test]
    fn our_own_dsn() {
        check(
            OURS,
            Some((true, "5.1.1", "550 5.1.1 <anna@example.org>: user unknown")),
        );
        let delayed = OURS
            .replace("Action: failed", "Action: delayed")
            .replace("Status: 5.1.1", "Status: 4.4.1");
        check(
            &delayed,
            Some((false, "4.4.1", "550 5.1.1 <anna@example.org>: user unknown")),
        );
        let failed_temporary = OURS.replace("Status: 5.1.1", "Status: 4.4.7").replace(
            "Diagnostic-Code: smtp; 550 5.1.1 <anna@example.org>: user\n unknown",
            "Diagnostic-Code: X-tegami; gave up after 5 days",
        );
        check(
            &failed_temporary,
            Some((false, "4.4.7", "gave up after 5 days")),
        );
    }

    #[test]
    fn a_dsn_that_reports_delivery_is_no_bounce() {
        let delivered = OURS.replace("Action: failed", "Action: delivered");
        check(&delivered, None);
    }

    const POSTFIX: &str = "Return-Path: <>
From: MAILER-DAEMON@mail.example.net (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: bounces+c1-2-abcdef01@example.com
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary=\"3F2E61C0A2.1700000000/mail.example.net\"
Content-Transfer-Encoding: 8bit

This is a MIME-encapsulated message.

--3F2E61C0A2.1700000000/mail.example.net
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mail.example.net.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

                   The mail system

<bob@example.org>: host mx.example.org[192.0.2.1] said: 552 5.2.2 <bob@example.org>:
    Mailbox full (in reply to RCPT TO command)

--3F2E61C0A2.1700000000/mail.example.net
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.example.net
X-Postfix-Queue-ID: 3F2E61C0A2
X-Postfix-Sender: rfc822; bounces+c1-2-abcdef01@example.com
Arrival-Date: Tue, 14 Nov 2023 22:13:20 +0000 (UTC)

Final-Recipient: rfc822; bob@example.org
Original-Recipient: rfc822;bob@example.org
Action: failed
Status: 5.2.2
Remote-MTA: dns; mx.example.org
Diagnostic-Code: smtp; 552 5.2.2 <bob@example.org>: Mailbox full

--3F2E61C0A2.1700000000/mail.example.net
Content-Description: Undelivered Message
Content-Type: message/rfc822

From: news@example.com
To: bob@example.org
Subject: hello

body
--3F2E61C0A2.1700000000/mail.example.net--
";

    #[test]
    fn postfix_dsn() {
        check(
            POSTFIX,
            Some((true, "5.2.2", "552 5.2.2 <bob@example.org>: Mailbox full")),
        );
        let delayed = POSTFIX
            .replace("Action: failed", "Action: delayed")
            .replace("Status: 5.2.2", "Status: 4.4.1")
            .replace(
                "Diagnostic-Code: smtp; 552 5.2.2 <bob@example.org>: Mailbox full",
                "Diagnostic-Code: X-Postfix; connect to mx.example.org[192.0.2.1]:25:\n    Connection timed out",
            );
        check(
            &delayed,
            Some((
                false,
                "4.4.1",
                "connect to mx.example.org[192.0.2.1]:25: Connection timed out",
            )),
        );
    }

    #[test]
    fn several_recipients_worst_wins() {
        let two = POSTFIX.replace(
            "Diagnostic-Code: smtp; 552 5.2.2 <bob@example.org>: Mailbox full\n",
            "Diagnostic-Code: smtp; 552 5.2.2 <bob@example.org>: Mailbox full\n\nFinal-Recipient: rfc822; c@example.org\nAction: delayed\nStatus: 4.0.0\n",
        );
        check(
            &two,
            Some((true, "5.2.2", "552 5.2.2 <bob@example.org>: Mailbox full")),
        );
    }

    #[test]
    fn plain_bounces() {
        check(
            "From: MAILER-DAEMON@old.example\nSubject: failure notice\n\nHi. This is the qmail-send program at old.example.\nI'm afraid I wasn't able to deliver your message to the following addresses.\n\n<carol@old.example>:\nSorry, no mailbox here by that name. (#5.1.1)\n\n--- Below this line is a copy of the message.\n\nSubject: mailbox full\n",
            Some((
                true,
                "5.1.1",
                "Sorry, no mailbox here by that name. (#5.1.1)",
            )),
        );
        check(
            "From: postmaster@x.example\nSubject: Undeliverable\n\nDelivery to the following recipient failed permanently:\n\n     dave@x.example\n\nThe error that the other server returned was:\n550 Requested action not taken: mailbox unavailable\n",
            Some((
                true,
                "5.0.0",
                "550 Requested action not taken: mailbox unavailable",
            )),
        );
        check(
            "From: postmaster@x.example\nSubject: Warning\n\nThe recipient's mailbox is full and can't accept messages now.\n452 4.2.2 Over quota\n",
            Some((
                false,
                "4.2.2",
                "The recipient's mailbox is full and can't accept messages now.",
            )),
        );
        check(
            "From: postmaster@x.example\nSubject: Delivery failure\n\nUser unknown: erin@x.example\n",
            Some((true, "5.0.0", "User unknown: erin@x.example")),
        );
        // An autoreply is not a bounce.
        check(
            "From: frank@x.example\nSubject: Out of office\n\nI am away until Monday, back on the 5th.\n",
            None,
        );
        // A copy of our own mail after the marker does not count.
        check(
            "From: MAILER-DAEMON@x.example\nSubject: Returned mail\n\nSomething happened.\n\n------ This is a copy of the message, including all the headers.\n\nuser unknown 550 5.1.1\n",
            None,
        );
    }
}
