//! SEARCH matching: HEADER/FROM/SUBJECT..., BODY, TEXT and the SENT* dates.

use imap_mime::Message;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// One criterion and whether the message should match it.
enum Key {
    Header(&'static str, &'static str),
    Body(&'static str),
    Text(&'static str),
}

fn check(raw: &[u8], cases: &[(Key, bool)]) {
    let message = Message::parse(raw);
    for (key, expect) in cases {
        let (got, what) = match key {
            Key::Header(field, needle) => (
                message.header_contains(field, needle),
                format!("HEADER {field} {needle:?}"),
            ),
            Key::Body(needle) => (message.body_contains(needle), format!("BODY {needle:?}")),
            Key::Text(needle) => (message.text_contains(needle), format!("TEXT {needle:?}")),
        };
        assert_eq!(got, *expect, "{what}");
    }
}

use Key::{Body, Header, Text};

#[test]
fn headers_match_decoded_and_as_written_in_any_case() {
    check(
        &fixture("nested.eml"),
        &[
            (Header("Subject", "QUARTERLY"), true),
            (Header("subject", "report attached"), false),
            (Header("From", "alice@EXAMPLE.org"), true),
            (Header("FROM", "alice example"), true),
            (Header("To", "alice"), false),
            (Header("Message-ID", "<outer@example.org>"), true),
            (Header("In-Reply-To", ""), true),
            (Header("X-Absent", ""), false),
            (Header("Content-Type", "outer-b"), true),
            (Header("Date", "2 mar 2022"), true),
        ],
    );
}

#[test]
fn encoded_words_are_matched_decoded() {
    check(
        &fixture("japanese.eml"),
        &[
            (Header("Subject", "お知らせ"), true),
            (Header("From", "山田"), true),
            (Header("To", "JÜRGEN"), true),
            (Header("To", "佐藤花子"), true),
            // Decoded only: otherwise SUBJECT "utf" would match every encoded subject.
            (Header("To", "=?UTF-8?B?"), false),
            (Header("Subject", "iso-2022"), false),
            (Body("三階"), true),
            (Text("会議"), true),
        ],
    );
    check(
        b"X-Custom: =?utf-8?q?caf=C3=A9?= au lait\r\n\r\nbody",
        &[
            (Header("x-custom", "CAFÉ AU"), true),
            (Header("X-Custom", "caf=C3"), false),
        ],
    );
}

#[test]
fn raw_utf8_headers_and_8bit_bodies_match() {
    check(
        &fixture("eightbit.eml"),
        &[
            (Header("Subject", "RÉUNION À"), true),
            (Header("From", "zoë"), true),
            (Body("à bientôt"), true),
            (Body("réunion est"), true),
            (Body("Réunion à 14h"), false),
            (Text("Réunion à 14h"), true),
        ],
    );
}

#[test]
fn bodies_are_transfer_and_charset_decoded_and_html_matched_as_text() {
    check(
        &fixture("nested.eml"),
        &[
            // quoted-printable ISO-8859-1 in the text part, UTF-8 in the HTML part.
            (Body("café au lait"), true),
            (Body("caf=e9"), false),
            (Body("QUARTERLY report"), true),
            (Body("<b>"), false),
            // The attached message's text part counts; its header and binary parts do not.
            (Body("notes from the inner"), true),
            (Body("Forwarded notes"), false),
            (Text("Forwarded notes"), true),
            (Body("JVBERi"), false),
            (Body("Sales chart"), false),
            (Body("multi-part message"), false),
            (Text("Quarterly report"), true),
        ],
    );
    let base64_body = b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nVGhlIHF1aWNrIGJyb3duIGZveCDwn6aK\r\n";
    check(
        base64_body,
        &[
            (Body("brown fox 🦊"), true),
            (Body("VGhl"), false),
            (Text("VGhl"), false),
        ],
    );
}

#[test]
fn a_base64_attached_message_is_searched_decoded() {
    check(
        &fixture("encoded-rfc822.eml"),
        &[
            (Body("wrapped body text"), true),
            (Body("Wrapped"), true),
            (Text("Subject: wrapped"), true),
            (Body("RnJvbTog"), false),
        ],
    );
}

#[test]
fn a_message_without_content_type_is_text() {
    check(
        &fixture("simple.eml"),
        &[
            (Body("my office"), true),
            (Text("afternoon MEETING"), true),
            (Body("Afternoon meeting"), false),
        ],
    );
}

#[test]
fn sent_date_is_the_instant_and_sent_day_the_date_as_written() {
    let simple = fixture("simple.eml");
    let message = Message::parse(&simple);
    assert_eq!(message.sent_date(), Some(760_686_745));
    assert_eq!(message.sent_day(), Some(8803));
    // 23:59:59 -0800 is the next day in UTC; SENTON compares the day as written.
    let groups = fixture("groups.eml");
    let message = Message::parse(&groups);
    assert_eq!(message.sent_date(), Some(1_646_812_799));
    assert_eq!(message.sent_day(), Some(19_059));
    assert_eq!(
        Message::parse(b"Date: not a date\r\n\r\n").sent_date(),
        None
    );
    assert_eq!(Message::parse(b"Subject: undated\r\n\r\n").sent_day(), None);
}
