//! Reading feedback-loop reports: the Abuse Reporting Format of RFC 5965, in which a
//! mailbox provider tells a sender that a reader marked its mail as spam. Pure parsing: what
//! the report names (VERP addresses, unsubscribe links) is checked against our keys by the
//! engine, which alone can tell a signed address from a forged one.

use mail_parser::{MessageParser, MimeHeaders};

/// The most fields read from the `message/feedback-report` part; a real one has about ten.
const MAX_FIELDS: usize = 100;
/// The longest field value kept, in bytes (longer ones are cut).
const MAX_VALUE: usize = 1000;
/// The most `Original-Rcpt-To` fields kept (RFC 5965 allows several; one is usual).
const MAX_RECIPIENTS: usize = 10;
/// The most bytes of the report part and of the original's header read.
const MAX_SECTION: usize = 64 * 1024;
/// The most `List-Unsubscribe` URLs kept.
const MAX_URLS: usize = 4;

/// What a feedback report says, in the fields that name the mail it is about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedbackReport {
    /// `Feedback-Type`, in lower case: "abuse", "fraud", "virus", "other", "not-spam",
    /// "auth-failure" (RFC 5965 section 7.3, RFC 6591, RFC 6650).
    pub feedback_type: String,
    /// `User-Agent`: who made the report ("SomeGenerator/1.0").
    pub user_agent: Option<String>,
    /// `Original-Mail-From`: the reported mail's envelope sender, our VERP address when
    /// the provider did not redact it.
    pub original_mail_from: Option<String>,
    /// `Original-Rcpt-To`: the reported mail's envelope recipients.
    pub original_rcpt_to: Vec<String>,
    /// `Source-IP`: where the reported mail came from.
    pub source_ip: Option<String>,
    /// The original's `Return-Path` (its envelope sender as the receiver recorded it).
    pub return_path: Option<String>,
    /// The original's `List-Unsubscribe` URLs, which carry our signed unsubscribe token.
    pub unsubscribe_urls: Vec<String>,
}

impl FeedbackReport {
    /// Whether the report says a reader did not want the mail. RFC 5965 section 7.3 names
    /// abuse, fraud, other and virus, and asks that an unknown type be read as "other";
    /// "not-spam" (RFC 6650) is the opposite, "auth-failure" (RFC 6591) a DMARC/SPF
    /// failure about the sender and "virus" about the message, none of them the reader's
    /// wish.
    pub fn is_complaint(&self) -> bool {
        !matches!(
            self.feedback_type.as_str(),
            "not-spam" | "auth-failure" | "virus"
        )
    }

    /// The addresses that may be our VERP envelope sender, best first.
    pub fn verp_candidates(&self) -> impl Iterator<Item = &str> {
        self.original_mail_from
            .iter()
            .chain(self.return_path.iter())
            .map(String::as_str)
    }
}

/// The feedback report in `message`, or `None` when it is not one: a `multipart/report`
/// whose `report-type` is `feedback-report` and which has a `message/feedback-report` part
/// with a `Feedback-Type` (RFC 5965 section 3). The third part, the original message or
/// its header (`message/rfc822` or `text/rfc822-headers`), is optional.
pub fn parse_feedback_report(message: &[u8]) -> Option<FeedbackReport> {
    let parsed = MessageParser::default().parse(message)?;
    let root = parsed.parts.first()?;
    let is_report = root.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
            && ct
                .attribute("report-type")
                .is_some_and(|t| t.eq_ignore_ascii_case("feedback-report"))
    });
    if !is_report {
        return None;
    }
    let mut report: Option<FeedbackReport> = None;
    let mut original: Option<&[u8]> = None;
    for part in parsed.parts.iter().skip(1) {
        let Some(ct) = part.content_type() else {
            continue;
        };
        let kind = (
            ct.ctype().to_ascii_lowercase(),
            ct.subtype().unwrap_or("").to_ascii_lowercase(),
        );
        match (kind.0.as_str(), kind.1.as_str()) {
            ("message", "feedback-report") if report.is_none() => {
                report = Some(read_report_fields(part.contents())?);
            }
            ("message", "rfc822" | "global") | ("text", "rfc822-headers") if original.is_none() => {
                original = Some(part.contents());
            }
            _ => {}
        }
    }
    let mut report = report?;
    if let Some(original) = original {
        read_original(&mut report, original);
    }
    Some(report)
}

/// The fields of a `message/feedback-report` body (RFC 5965 section 3.1: header-like lines,
/// continuation lines unfolded).
fn read_report_fields(body: &[u8]) -> Option<FeedbackReport> {
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX_SECTION)]);
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            // The fields are one block; what follows a blank line is not the report's.
            if !fields.is_empty() {
                break;
            }
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
                cut(value);
            }
        } else if let Some((name, value)) = line.split_once(':') {
            if fields.len() == MAX_FIELDS {
                break;
            }
            let mut value = value.trim().to_string();
            cut(&mut value);
            fields.push((name.trim().to_ascii_lowercase(), value));
        }
    }
    let field = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    let feedback_type = field("feedback-type")?.to_ascii_lowercase();
    Some(FeedbackReport {
        feedback_type,
        user_agent: field("user-agent"),
        original_mail_from: field("original-mail-from").map(|a| bare_address(&a)),
        original_rcpt_to: fields
            .iter()
            .filter(|(n, v)| n == "original-rcpt-to" && !v.is_empty())
            .take(MAX_RECIPIENTS)
            .map(|(_, v)| bare_address(v))
            .collect(),
        source_ip: field("source-ip"),
        return_path: None,
        unsubscribe_urls: Vec::new(),
    })
}

/// The reported mail's `Return-Path` and `List-Unsubscribe`, from its header only (the
/// body is the reader's and is never read).
fn read_original(report: &mut FeedbackReport, original: &[u8]) {
    let original = &original[..original.len().min(MAX_SECTION)];
    let head_end = original
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| {
            original
                .windows(2)
                .position(|w| w == b"\n\n")
                .map(|i| i + 2)
        })
        .unwrap_or(original.len());
    let Some(head) = MessageParser::default().parse_headers(&original[..head_end]) else {
        return;
    };
    report.return_path = head
        .header_raw("Return-Path")
        .map(bare_address)
        .filter(|a| !a.is_empty());
    if let Some(value) = head.header_raw("List-Unsubscribe") {
        // `<https://...>, <mailto:...>`: the URLs between angle brackets.
        report.unsubscribe_urls = value
            .split('<')
            .skip(1)
            .filter_map(|s| s.split_once('>').map(|(url, _)| url.trim()))
            .filter(|url| url.starts_with("http://") || url.starts_with("https://"))
            .map(|url| url.chars().filter(|c| !c.is_whitespace()).collect())
            .take(MAX_URLS)
            .collect();
    }
}

/// `rfc822; <a@b>` or `<a@b>` or `a@b` as `a@b`.
fn bare_address(value: &str) -> String {
    let value = value.trim();
    let value = match value.split_once(';') {
        Some((kind, rest)) if !kind.contains('@') => rest.trim(),
        _ => value,
    };
    value
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_string()
}

fn cut(value: &mut String) {
    if value.len() > MAX_VALUE {
        let mut end = MAX_VALUE;
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        value.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report as RFC 5965 appendix B.2 shows one, made for a campaign mail of ours: the
    /// reported message comes back whole, with the Return-Path its receiver added.
    const ARF: &str = "From: <abuse@fbl.example.net>
Date: Thu, 8 Mar 2005 17:40:36 EDT
Subject: FW: Earn money
To: <bounces+c3-7-0123abcd@example.com>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
     boundary=\"part1_13d.2e68ed54_boundary\"

--part1_13d.2e68ed54_boundary
Content-Type: text/plain; charset=\"US-ASCII\"
Content-Transfer-Encoding: 7bit

This is an email abuse report for an email message received from IP
192.0.2.1 on Thu, 8 Mar 2005 14:00:00 EDT.  For more information
about this format please see http://www.mipassoc.org/arf/.

--part1_13d.2e68ed54_boundary
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: SomeGenerator/1.0
Version: 1
Original-Mail-From: <bounces+c3-7-0123abcd@example.com>
Original-Rcpt-To: <ann@example.net>
Arrival-Date: Thu, 8 Mar 2005 14:00:00 EDT
Reporting-MTA: dns; mail.example.net
Source-IP: 192.0.2.1
Authentication-Results: mail.example.net;
               spf=pass smtp.mail=bounces+c3-7-0123abcd@example.com
Reported-Domain: example.com
Reported-Uri: http://example.com/earn_money.html
Removal-Recipient: ann@example.net

--part1_13d.2e68ed54_boundary
Content-Type: message/rfc822
Content-Disposition: inline

Return-Path: <bounces+c3-7-0123abcd@example.com>
Received: from mailserver.example.com (mailserver.example.com [192.0.2.1])
        by mail.example.net with ESMTP id M63d4137594e46;
        Thu, 08 Mar 2005 14:00:00 -0400
From: News <news@example.com>
To: <ann@example.net>
Subject: Earn money
List-Unsubscribe: <https://news.example.com/unsubscribe/u.c3.7.abcdef>
List-Unsubscribe-Post: List-Unsubscribe=One-Click
MIME-Version: 1.0
Content-type: text/plain
Message-ID: 8787KJKJ3K4J3K4J3K4J3.mail@example.com
Date: Thu, 02 Sep 2004 12:31:03 -0500

Spam Spam Spam
Spam Spam Spam
--part1_13d.2e68ed54_boundary--
";

    fn parse(text: &str) -> Option<FeedbackReport> {
        parse_feedback_report(text.replace('\n', "\r\n").as_bytes())
    }

    #[test]
    fn an_rfc_5965_abuse_report_names_the_mail_and_its_reader() {
        let report = parse(ARF).unwrap();
        assert_eq!(
            report,
            FeedbackReport {
                feedback_type: "abuse".into(),
                user_agent: Some("SomeGenerator/1.0".into()),
                original_mail_from: Some("bounces+c3-7-0123abcd@example.com".into()),
                original_rcpt_to: vec!["ann@example.net".into()],
                source_ip: Some("192.0.2.1".into()),
                return_path: Some("bounces+c3-7-0123abcd@example.com".into()),
                unsubscribe_urls: vec!["https://news.example.com/unsubscribe/u.c3.7.abcdef".into()],
            }
        );
        assert!(report.is_complaint());
        assert_eq!(
            report.verp_candidates().collect::<Vec<_>>(),
            [
                "bounces+c3-7-0123abcd@example.com",
                "bounces+c3-7-0123abcd@example.com"
            ]
        );
    }

    #[test]
    fn a_redacted_report_with_only_the_headers_still_names_the_mail() {
        // Providers redact the reader's address and send only the original's header.
        let redacted = ARF
            .replace(
                "Original-Mail-From: <bounces+c3-7-0123abcd@example.com>\n",
                "",
            )
            .replace("Original-Rcpt-To: <ann@example.net>\n", "")
            .replace(
                "Content-Type: message/rfc822\nContent-Disposition: inline",
                "Content-Type: text/rfc822-headers",
            )
            .replace("\nSpam Spam Spam\nSpam Spam Spam", "");
        let report = parse(&redacted).unwrap();
        assert_eq!(report.original_mail_from, None);
        assert!(report.original_rcpt_to.is_empty());
        assert_eq!(
            report.return_path.as_deref(),
            Some("bounces+c3-7-0123abcd@example.com")
        );
        assert_eq!(report.unsubscribe_urls.len(), 1);
    }

    #[test]
    fn only_complaints_count_as_complaints() {
        for (kind, complaint) in [
            ("abuse", true),
            ("fraud", true),
            ("other", true),
            ("some-future-type", true),
            ("virus", false),
            ("not-spam", false),
            ("auth-failure", false),
        ] {
            let text = ARF.replace("Feedback-Type: abuse", &format!("Feedback-Type: {kind}"));
            let report = parse(&text).unwrap();
            assert_eq!(report.is_complaint(), complaint, "{kind}");
        }
    }

    #[test]
    fn what_is_not_a_feedback_report_is_none() {
        // A delivery status notification is a report of another type.
        let dsn = ARF.replace("report-type=feedback-report", "report-type=delivery-status");
        assert_eq!(parse(&dsn), None);
        // A feedback report without its Feedback-Type field.
        assert_eq!(parse(&ARF.replace("Feedback-Type: abuse\n", "")), None);
        // Plain mail, and nothing at all.
        assert_eq!(parse("From: a@example.org\nSubject: hi\n\nhello\n"), None);
        assert_eq!(parse_feedback_report(b""), None);
    }

    #[test]
    fn a_report_is_read_within_bounds() {
        let many: String = (0..500)
            .map(|i| format!("Original-Rcpt-To: <r{i}@example.net>\n"))
            .collect();
        let long = format!("User-Agent: {}\n", "x".repeat(10_000));
        let text = ARF.replace(
            "Original-Rcpt-To: <ann@example.net>\n",
            &format!("{many}{long}"),
        );
        let report = parse(&text).unwrap();
        assert!(report.original_rcpt_to.len() <= MAX_RECIPIENTS);
        assert!(report.user_agent.as_deref().unwrap_or("").len() <= MAX_VALUE);
    }
}
