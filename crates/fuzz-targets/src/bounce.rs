//! Bounces and feedback-loop reports: anything that arrives at the newsletter's VERP or
//! feedback-loop address (crates/newsletter),
//! and the DSNs tegami's own queue sends (crates/outbound), which must read back as what
//! they report.

use newsletter::{Keys, parse_bounce, parse_feedback_report};
use outbound::{Dsn, DsnAction, DsnRecipient, build_dsn};

/// The input as a bounce, as an ARF feedback report, as a VERP address, and as the facts
/// and the original message of a DSN built by the queue.
///
/// Asserts: a bounce read has an RFC 3463 status (class 2, 4 or 5) and a hard bounce is
/// not of class 4; its diagnostic is one line of at most 300 characters; a feedback report
/// has a type and keeps at most 10 recipients, 4 URLs and 1000 bytes a field; a VERP address
/// that decodes re-encodes to one that decodes the same; and the queue's own DSN, whatever
/// the reply text and the original message, reads back with the status and the hardness
/// of the recipient it reports first among the worst.
pub fn bounce(data: &[u8]) {
    if let Some(b) = parse_bounce(data) {
        check_status(&b.status);
        assert!(!(b.hard && b.status.starts_with('4')), "{b:?}");
        assert!(b.diagnostic.chars().count() <= 300, "{b:?}");
        assert!(!b.diagnostic.contains(['\r', '\n']), "{b:?}");
    }

    if let Some(r) = parse_feedback_report(data) {
        assert!(!r.feedback_type.is_empty(), "{r:?}");
        assert!(r.original_rcpt_to.len() <= 10, "{r:?}");
        assert!(r.unsubscribe_urls.len() <= 4, "{r:?}");
        let fields = [&r.user_agent, &r.original_mail_from, &r.source_ip];
        for value in fields.into_iter().flatten().chain(&r.original_rcpt_to) {
            assert!(value.len() <= 1000, "{r:?}");
        }
    }

    let text = String::from_utf8_lossy(data);
    let keys = Keys::from_secret(b"fuzz target key, not a secret");
    for line in text.lines().take(4) {
        if let Some((origin, subscriber)) = keys.decode_verp("bounces", "example.org", line) {
            let again = keys.verp("bounces", "example.org", origin, subscriber);
            assert_eq!(
                keys.decode_verp("bounces", "example.org", &again),
                Some((origin, subscriber))
            );
        }
    }

    // Up to three recipients from the first bytes; the reply text and the original
    // message from the rest.
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let count = usize::from(head % 3) + 1;
    let (facts, rest) = rest.split_at((count * 3).min(rest.len()));
    let split = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    let (reply, original) = rest.split_at(split);
    let reply = String::from_utf8_lossy(reply);
    let recipients: Vec<DsnRecipient> = facts
        .chunks(3)
        .enumerate()
        .map(|(i, f)| {
            let class = if f[0] & 1 == 0 { 5 } else { 4 };
            let status = format!(
                "{class}.{}.{}",
                f.get(1).copied().unwrap_or(0) % 8,
                f.get(2).copied().unwrap_or(0)
            );
            DsnRecipient {
                address: format!("rcpt{i}@example.com"),
                action: if f[0] & 2 == 0 {
                    DsnAction::Failed
                } else {
                    DsnAction::Delayed
                },
                status,
                remote_mta: (f[0] & 4 == 0).then(|| "mx.example.com".to_string()),
                diagnostic: (f[0] & 8 == 0).then(|| format!("smtp; {reply}")),
                text: reply.to_string(),
                last_attempt: 1_765_000_000,
                will_retry_until: (f[0] & 16 == 0).then_some(1_765_400_000),
            }
        })
        .collect();
    if recipients.is_empty() {
        return;
    }
    let report = build_dsn(&Dsn {
        reporting_mta: "mail.example.org",
        to: "sender@example.org",
        arrival: 1_764_990_000,
        now: 1_765_000_100,
        recipients: &recipients,
        original,
    });
    let hard = |r: &DsnRecipient| r.action == DsnAction::Failed && !r.status.starts_with('4');
    // The first hard failure, else the first recipient (newsletter keeps the worst).
    let expect = recipients
        .iter()
        .find(|r| hard(r))
        .unwrap_or(&recipients[0]);
    let got = parse_bounce(&report).unwrap_or_else(|| {
        panic!(
            "our own DSN reads as no bounce:\n{}",
            String::from_utf8_lossy(&report)
        )
    });
    assert_eq!(
        (got.hard, got.status.as_str()),
        (hard(expect), expect.status.as_str()),
        "{}",
        String::from_utf8_lossy(&report)
    );
}

/// "5.1.1" and the like.
fn check_status(status: &str) {
    let parts: Vec<&str> = status.split('.').collect();
    assert!(
        parts.len() == 3
            && matches!(parts[0], "2" | "4" | "5")
            && parts[1..]
                .iter()
                .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit())),
        "status {status:?}"
    );
}
