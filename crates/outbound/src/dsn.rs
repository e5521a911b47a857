//! Delivery status notifications (RFC 3464): the failure and delay reports sent to the
//! envelope sender. A pure function from the facts to the message's bytes.

use std::fmt::Write;

/// What the report says happened to a recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsnAction {
    Failed,
    Delayed,
}

/// One recipient's block of the `message/delivery-status` part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsnRecipient {
    pub address: String,
    pub action: DsnAction,
    /// RFC 3463 status, such as "5.1.1".
    pub status: String,
    /// The host that refused or was tried, when there was one.
    pub remote_mta: Option<String>,
    /// The remote reply as `smtp; 550 5.1.1 text`, when there was one.
    pub diagnostic: Option<String>,
    /// A local explanation when no server spoke (DNS, connection, expiry).
    pub text: String,
    /// Unix seconds.
    pub last_attempt: i64,
    /// For delays: when the queue gives up (Unix seconds).
    pub will_retry_until: Option<i64>,
}

/// The facts of one report.
#[derive(Debug, Clone)]
pub struct Dsn<'a> {
    /// Our host name: Reporting-MTA and the From address's domain.
    pub reporting_mta: &'a str,
    /// The original envelope sender, to whom the report goes. Never empty: the null
    /// sender is never told anything.
    pub to: &'a str,
    /// When the original message was queued (Unix seconds).
    pub arrival: i64,
    /// When the report is made (Unix seconds).
    pub now: i64,
    pub recipients: &'a [DsnRecipient],
    /// The original message; only its header block is returned.
    pub original: &'a [u8],
}

/// Builds the report: `multipart/report; report-type=delivery-status` with a human
/// part, the `message/delivery-status` part and the original headers as
/// `text/rfc822-headers`. From `MAILER-DAEMON@<reporting_mta>`, `Auto-Submitted:
/// auto-replied` so that autoresponders keep quiet; its envelope sender must be null.
pub fn build_dsn(dsn: &Dsn<'_>) -> Vec<u8> {
    let failed = dsn.recipients.iter().any(|r| r.action == DsnAction::Failed);
    let boundary = format!("dsn-{:016x}", rand::random::<u64>());
    let message_id = format!("<{:016x}.dsn@{}>", rand::random::<u64>(), dsn.reporting_mta);
    let subject = if failed {
        "Undelivered Mail Returned to Sender"
    } else {
        "Delayed Mail (still being retried)"
    };
    let mut m = String::with_capacity(2048);
    let _ = write!(
        m,
        "From: Mail Delivery System <MAILER-DAEMON@{mta}>\r\n\
         To: <{to}>\r\n\
         Subject: {subject}\r\n\
         Date: {date}\r\n\
         Message-ID: {message_id}\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\
         \tboundary=\"{boundary}\"\r\n\
         \r\n\
         This is a MIME-encapsulated message.\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Description: Notification\r\n\
         \r\n",
        mta = dsn.reporting_mta,
        to = dsn.to,
        date = rfc5322_date(dsn.now),
    );
    if failed {
        let _ = write!(
            m,
            "This is the mail system at host {}.\r\n\r\n\
             Your message could not be delivered to one or more recipients.\r\n\
             It is attached below.\r\n\r\n",
            dsn.reporting_mta
        );
    } else {
        let _ = write!(
            m,
            "This is the mail system at host {}.\r\n\r\n\
             Your message has not been delivered yet to one or more recipients.\r\n\
             It is still being retried; you need not send it again.\r\n\r\n",
            dsn.reporting_mta
        );
    }
    for r in dsn.recipients {
        let why = r
            .diagnostic
            .as_deref()
            .map_or(r.text.as_str(), |d| d.strip_prefix("smtp; ").unwrap_or(d));
        let _ = write!(m, "<{}>: {}\r\n", r.address, one_line(why));
        if let (DsnAction::Delayed, Some(until)) = (r.action, r.will_retry_until) {
            let _ = write!(m, "    retried until {}\r\n", rfc5322_date(until));
        }
    }
    let _ = write!(
        m,
        "\r\n--{boundary}\r\n\
         Content-Type: message/delivery-status\r\n\
         Content-Description: Delivery report\r\n\
         \r\n\
         Reporting-MTA: dns; {}\r\n\
         Arrival-Date: {}\r\n",
        dsn.reporting_mta,
        rfc5322_date(dsn.arrival)
    );
    for r in dsn.recipients {
        let _ = write!(
            m,
            "\r\nFinal-Recipient: rfc822; {}\r\n\
             Action: {}\r\n\
             Status: {}\r\n",
            r.address,
            match r.action {
                DsnAction::Failed => "failed",
                DsnAction::Delayed => "delayed",
            },
            r.status
        );
        if let Some(mta) = &r.remote_mta {
            let _ = write!(m, "Remote-MTA: dns; {mta}\r\n");
        }
        match &r.diagnostic {
            Some(d) => {
                let _ = write!(m, "Diagnostic-Code: {}\r\n", one_line(d));
            }
            None => {
                let _ = write!(m, "Diagnostic-Code: X-tegami; {}\r\n", one_line(&r.text));
            }
        }
        let _ = write!(m, "Last-Attempt-Date: {}\r\n", rfc5322_date(r.last_attempt));
        if let Some(until) = r.will_retry_until {
            let _ = write!(m, "Will-Retry-Until: {}\r\n", rfc5322_date(until));
        }
    }
    let _ = write!(
        m,
        "\r\n--{boundary}\r\n\
         Content-Type: text/rfc822-headers\r\n\
         Content-Description: Undelivered Message Headers\r\n\
         \r\n"
    );
    let mut out = m.into_bytes();
    out.extend_from_slice(&crlf(header_block(dsn.original)));
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// The header block of a message, without the blank line that ends it.
pub(crate) fn header_block(message: &[u8]) -> &[u8] {
    let crlf = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 2);
    let lf = message.windows(2).position(|w| w == b"\n\n").map(|p| p + 1);
    let end = match (crlf, lf) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => message.len(),
    };
    &message[..end]
}

/// Every line ending as CRLF, and a final one.
fn crlf(block: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(block.len() + 64);
    for line in block.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A field value must be one line: remote replies may span several.
fn one_line(s: &str) -> String {
    s.split(['\r', '\n'])
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn rfc5322_date(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%a, %d %b %Y %H:%M:%S +0000")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::{MessageParser, MimeHeaders};

    const ORIGINAL: &[u8] = b"From: Alice <alice@example.com>\r\nTo: bob@remote.test\r\nSubject: hello\r\nMessage-ID: <m1@example.com>\r\n\r\nbody text\r\n";

    fn recipient(action: DsnAction) -> DsnRecipient {
        DsnRecipient {
            address: "bob@remote.test".into(),
            action,
            status: if action == DsnAction::Failed {
                "5.1.1"
            } else {
                "4.4.1"
            }
            .into(),
            remote_mta: Some("mx.remote.test".into()),
            diagnostic: (action == DsnAction::Failed)
                .then(|| "smtp; 550 5.1.1 no such user".to_owned()),
            text: "connection refused".into(),
            last_attempt: 1_700_000_100,
            will_retry_until: (action == DsnAction::Delayed).then_some(1_700_432_000),
        }
    }

    fn build(recipients: &[DsnRecipient]) -> Vec<u8> {
        build_dsn(&Dsn {
            reporting_mta: "mail.example.com",
            to: "alice@example.com",
            arrival: 1_700_000_000,
            now: 1_700_000_200,
            recipients,
            original: ORIGINAL,
        })
    }

    /// The per-recipient fields of the delivery-status part, as (name, value) pairs.
    fn status_fields(dsn: &[u8]) -> Vec<(String, String)> {
        let message = MessageParser::new().parse(dsn).expect("parses");
        let part = message
            .parts
            .iter()
            .find(|p| {
                p.content_type()
                    .is_some_and(|c| c.subtype() == Some("delivery-status"))
            })
            .expect("has a delivery-status part");
        let text = String::from_utf8_lossy(part.contents()).into_owned();
        text.lines()
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn field<'a>(fields: &'a [(String, String)], name: &str) -> Vec<&'a str> {
        fields
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    #[test]
    fn failure_report_parses_with_rfc3464_fields() {
        let bytes = build(&[recipient(DsnAction::Failed)]);
        let message = MessageParser::new().parse(&bytes).unwrap();
        let ct = message.content_type().unwrap();
        assert_eq!(ct.ctype(), "multipart");
        assert_eq!(ct.subtype(), Some("report"));
        assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
        assert_eq!(
            message.from().unwrap().first().unwrap().address(),
            Some("MAILER-DAEMON@mail.example.com")
        );
        assert_eq!(
            message.to().unwrap().first().unwrap().address(),
            Some("alice@example.com")
        );
        assert_eq!(
            message.header_raw("Auto-Submitted").map(str::trim),
            Some("auto-replied")
        );
        assert_eq!(message.parts.len(), 4, "the multipart and its three parts");

        let fields = status_fields(&bytes);
        assert_eq!(field(&fields, "Reporting-MTA"), ["dns; mail.example.com"]);
        assert_eq!(
            field(&fields, "Final-Recipient"),
            ["rfc822; bob@remote.test"]
        );
        assert_eq!(field(&fields, "Action"), ["failed"]);
        assert_eq!(field(&fields, "Status"), ["5.1.1"]);
        assert_eq!(field(&fields, "Remote-MTA"), ["dns; mx.remote.test"]);
        assert_eq!(
            field(&fields, "Diagnostic-Code"),
            ["smtp; 550 5.1.1 no such user"]
        );
        assert_eq!(field(&fields, "Arrival-Date").len(), 1);
        assert_eq!(field(&fields, "Last-Attempt-Date").len(), 1);
        assert!(field(&fields, "Will-Retry-Until").is_empty());

        let headers = message
            .parts
            .iter()
            .find(|p| {
                p.content_type()
                    .is_some_and(|c| c.subtype() == Some("rfc822-headers"))
            })
            .expect("original headers part");
        let text = String::from_utf8_lossy(headers.contents());
        assert!(text.contains("Subject: hello"), "{text}");
        assert!(text.contains("Message-ID: <m1@example.com>"));
        assert!(!text.contains("body text"), "only the headers come back");
    }

    #[test]
    fn delay_report_has_will_retry_until_and_several_recipients() {
        let mut second = recipient(DsnAction::Delayed);
        second.address = "carol@remote.test".into();
        second.remote_mta = None;
        let bytes = build(&[recipient(DsnAction::Delayed), second]);
        let fields = status_fields(&bytes);
        assert_eq!(field(&fields, "Action"), ["delayed", "delayed"]);
        assert_eq!(field(&fields, "Will-Retry-Until").len(), 2);
        assert_eq!(field(&fields, "Remote-MTA").len(), 1);
        assert_eq!(
            field(&fields, "Diagnostic-Code"),
            ["X-tegami; connection refused"; 2]
        );
        let message = MessageParser::new().parse(&bytes).unwrap();
        assert!(message.subject().unwrap().starts_with("Delayed"));
    }

    #[test]
    fn header_block_stops_at_the_blank_line_with_any_line_ends() {
        assert_eq!(
            header_block(b"A: 1\r\nB: 2\r\n\r\nbody"),
            b"A: 1\r\nB: 2\r\n"
        );
        assert_eq!(header_block(b"A: 1\nB: 2\n\nbody"), b"A: 1\nB: 2\n");
        assert_eq!(header_block(b"A: 1\r\n"), b"A: 1\r\n");
        assert_eq!(crlf(b"A: 1\nB: 2\n"), b"A: 1\r\nB: 2\r\n");
    }

    #[test]
    fn multi_line_reply_becomes_one_field_line() {
        let mut r = recipient(DsnAction::Failed);
        r.diagnostic = Some("smtp; 550-5.1.1 first\r\n550 5.1.1 second".into());
        let fields = status_fields(&build(&[r]));
        assert_eq!(
            field(&fields, "Diagnostic-Code"),
            ["smtp; 550-5.1.1 first 550 5.1.1 second"]
        );
    }
}
