//! MIME as IMAP FETCH and SEARCH see it (`imap-mime`): any bytes a sender put in a message.

use imap_mime::Message;
use imap_proto::{Section, SectionText};

/// ENVELOPE, BODYSTRUCTURE and BODY of any message, and the SEARCH text.
///
/// Asserts: each is one well-formed IMAP parenthesized list (balanced, strings closed,
/// literals whole, no line break outside a literal), because a malformed one would
/// desynchronise every client reading the FETCH response.
pub fn mime_structure(data: &[u8]) {
    let message = Message::parse(data);
    let mut out = Vec::new();
    message.envelope(&mut out);
    assert_imap_list(&out);
    for extensible in [false, true] {
        out.clear();
        message.body_structure(extensible, &mut out);
        assert_imap_list(&out);
    }
    let _ = message.sent_date();
    let _ = message.header_text("subject");
    let _ = message.header_contains("from", "a");
    let _ = message.text_contains("the");
    let _ = message.plain_text();
}

/// `BODY[section]` for a section path taken from the first bytes, of the message that
/// follows them.
///
/// Asserts: `BODY[]` is the message itself; `BODY[HEADER]` and `BODY[TEXT]` of the whole
/// message are a prefix and a suffix of it; no section is larger than the message unless
/// it was decoded from a transfer-encoded message/rfc822 part.
pub fn mime_section(data: &[u8]) {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    // Up to three part numbers, a byte each (0 ends the path early), then the message.
    let depth = usize::from(head & 3).min(rest.len());
    let (path, raw) = rest.split_at(depth);
    let part: Vec<u32> = path
        .iter()
        .take_while(|&&n| n != 0)
        .map(|&n| u32::from(n))
        .collect();
    let text = match (head >> 2) & 7 {
        0 => None,
        1 => Some(SectionText::Header),
        2 => Some(SectionText::Text),
        3 => Some(SectionText::Mime),
        4 => Some(SectionText::HeaderFields(vec![
            "SUBJECT".into(),
            "FROM".into(),
        ])),
        5 => Some(SectionText::HeaderFieldsNot(vec!["RECEIVED".into()])),
        _ => Some(SectionText::HeaderFields(vec!["CONTENT-TYPE".into()])),
    };
    let message = Message::parse(raw);
    let section = Section {
        part: part.clone(),
        text: text.clone(),
    };
    let got = message.section(&section);
    if part.is_empty() {
        match &text {
            None => assert_eq!(got.as_deref(), Some(raw), "BODY[] is not the message"),
            Some(SectionText::Header) => {
                let h = got
                    .as_deref()
                    .expect("a message has a header section, if empty");
                assert!(raw.starts_with(h), "BODY[HEADER] is not a prefix");
            }
            Some(SectionText::Text) => {
                let t = got
                    .as_deref()
                    .expect("a message has a text section, if empty");
                assert!(raw.ends_with(t), "BODY[TEXT] is not a suffix");
            }
            _ => {}
        }
    }
    if let Some(bytes) = got {
        // Decoding base64 only shrinks; quoted-printable likewise. HEADER.FIELDS may end
        // each line it returns with CRLF (the last line of a header cut short had none)
        // and adds the blank line that ends the header.
        let lines = raw.iter().filter(|&&b| b == b'\n').count();
        assert!(
            bytes.len() <= raw.len() + lines + 4,
            "{} bytes from {}",
            bytes.len(),
            raw.len()
        );
    }
}

/// Checks that `out` is exactly one IMAP parenthesized list as a server sends it.
fn assert_imap_list(out: &[u8]) {
    let text = String::from_utf8_lossy(out);
    assert!(
        out.first() == Some(&b'('),
        "does not start with '(': {text}"
    );
    let mut depth = 0usize;
    let mut i = 0;
    while i < out.len() {
        match out[i] {
            b'(' => depth += 1,
            b')' => {
                assert!(depth > 0, "unbalanced ')': {text}");
                depth -= 1;
                if depth == 0 {
                    assert_eq!(i + 1, out.len(), "bytes after the list: {text}");
                }
            }
            b'"' => {
                i += 1;
                loop {
                    assert!(i < out.len(), "unterminated string: {text}");
                    match out[i] {
                        b'"' => break,
                        b'\\' => {
                            assert!(
                                matches!(out.get(i + 1), Some(b'"' | b'\\')),
                                "bad escape: {text}"
                            );
                            i += 1;
                        }
                        b'\r' | b'\n' | 0 => panic!("CR, LF or NUL in a quoted string: {text}"),
                        _ => {}
                    }
                    i += 1;
                }
            }
            b'{' => {
                let close = out[i..]
                    .iter()
                    .position(|&b| b == b'}')
                    .expect("literal marker")
                    + i;
                let n: usize = std::str::from_utf8(&out[i + 1..close])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("bad literal size: {text}"));
                assert_eq!(
                    &out[close + 1..close + 3],
                    b"\r\n",
                    "literal marker: {text}"
                );
                i = close + 2 + n;
                assert!(i < out.len(), "literal runs past the end: {text}");
            }
            b'\r' | b'\n' => panic!("line break outside a literal: {text}"),
            _ => {}
        }
        i += 1;
    }
    assert_eq!(depth, 0, "unbalanced '(': {text}");
}
