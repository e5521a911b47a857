//! BODY[section] bytes (RFC 3501 §6.4.5), written as the client would write the section.

use imap_mime::Message;
use imap_proto::{Section, SectionText};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Parses a section spec such as `3.2.MIME` or `HEADER.FIELDS (From To)`, so that the
/// tests read like FETCH commands and do not pin the AST's shape.
fn section(spec: &str) -> Section {
    let (path, text) = match spec.split_once(" (") {
        Some((head, names)) => (head, Some(names.trim_end_matches(')'))),
        None => (spec, None),
    };
    let mut part = Vec::new();
    let mut rest = path;
    while let Some(number) = rest.split('.').next().and_then(|n| n.parse::<u32>().ok()) {
        part.push(number);
        rest = rest.split_once('.').map_or("", |(_, r)| r);
    }
    let names = || {
        text.unwrap()
            .split(' ')
            .map(str::to_ascii_uppercase)
            .collect()
    };
    let text = match rest {
        "" => None,
        "HEADER" => Some(SectionText::Header),
        "TEXT" => Some(SectionText::Text),
        "MIME" => Some(SectionText::Mime),
        "HEADER.FIELDS" => Some(SectionText::HeaderFields(names())),
        "HEADER.FIELDS.NOT" => Some(SectionText::HeaderFieldsNot(names())),
        other => panic!("bad spec {other}"),
    };
    Section { part, text }
}

fn check(raw: &[u8], spec: &str, expect: Option<&str>) {
    let message = Message::parse(raw);
    let got = message.section(&section(spec));
    assert_eq!(
        got.as_deref().map(String::from_utf8_lossy).as_deref(),
        expect,
        "BODY[{spec}]"
    );
}

fn between<'r>(raw: &'r str, start: &str, end: &str) -> &'r str {
    let from = raw.find(start).unwrap();
    let to = from + raw[from..].find(end).unwrap();
    &raw[from..to]
}

#[test]
fn whole_message_header_and_text() {
    let raw = fixture("nested.eml");
    let text = String::from_utf8(raw.clone()).unwrap();
    let split = text.find("\r\n\r\n").unwrap() + 4;
    check(&raw, "", Some(&text));
    check(&raw, "HEADER", Some(&text[..split]));
    check(&raw, "TEXT", Some(&text[split..]));
    assert!(text[split..].starts_with("This is a multi-part") && text.ends_with("Epilogue.\r\n"));
}

#[test]
fn nested_parts_stop_before_the_line_end_of_the_next_boundary() {
    let raw = fixture("nested.eml");
    let text = String::from_utf8(raw.clone()).unwrap();
    check(
        &raw,
        "1",
        Some(between(&text, "--alt-b\r\n", "\r\n--outer-b")),
    );
    let one = Message::parse(&raw).section(&section("1")).unwrap();
    assert!(one.starts_with(b"--alt-b\r\n") && one.ends_with(b"--alt-b--\r\n"));
    check(
        &raw,
        "1.1",
        Some("Caf=E9 au lait, see the\r\nreport attached."),
    );
    check(
        &raw,
        "1.1.MIME",
        Some(
            "Content-Type: text/plain; charset=\"iso-8859-1\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n",
        ),
    );
    check(&raw, "1.2", Some(between(&text, "<html>", "\r\n--alt-b--")));
    check(&raw, "2", Some(between(&text, "AAECAwQF", "\r\n--outer-b")));
    check(
        &raw,
        "2.MIME",
        Some(between(&text, "Content-Type: image/png", "AAECAwQF")),
    );
}

#[test]
fn an_attached_message_has_header_text_and_parts() {
    let raw = fixture("nested.eml");
    let text = String::from_utf8(raw.clone()).unwrap();
    let inner = between(&text, "From: Erin", "\r\n--outer-b--");
    assert_eq!(inner.len(), 448);
    check(&raw, "3", Some(inner));
    check(
        &raw,
        "3.MIME",
        Some("Content-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n"),
    );
    let split = inner.find("\r\n\r\n").unwrap() + 4;
    check(&raw, "3.HEADER", Some(&inner[..split]));
    check(&raw, "3.TEXT", Some(&inner[split..]));
    check(&raw, "3.1", Some("Notes from the inner message."));
    check(&raw, "3.2", Some("JVBERi0xLjQK"));
    check(
        &raw,
        "3.2.MIME",
        Some(
            "Content-Type: application/pdf; name=\"notes.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n",
        ),
    );
    check(
        &raw,
        "3.HEADER.FIELDS (SUBJECT from)",
        Some("From: Erin <erin@example.com>\r\nSubject: Forwarded notes\r\n\r\n"),
    );
}

#[test]
fn header_fields_keep_continuation_lines_and_end_with_a_blank_line() {
    let raw = fixture("simple.eml");
    check(
        &raw,
        "HEADER.FIELDS (CC)",
        Some("Cc: \"Carol, C.\" <carol@example.com>,\r\n dave@example.com\r\n\r\n"),
    );
    check(&raw, "HEADER.FIELDS (X-Absent)", Some("\r\n"));
    check(
        &fixture("nested.eml"),
        "HEADER.FIELDS.NOT (From To Subject Date Message-ID In-Reply-To)",
        Some("MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"outer-b\"\r\n\r\n"),
    );
}

#[test]
fn part_one_of_a_single_part_message_is_its_body() {
    let raw = fixture("simple.eml");
    check(
        &raw,
        "1",
        Some("Hello Bob, could you please come to my office this afternoon?\r\n"),
    );
    check(&raw, "2", None);
    check(&raw, "1.1", None);
}

#[test]
fn parts_that_do_not_exist_are_none() {
    let raw = fixture("nested.eml");
    for spec in [
        "4",
        "0",
        "1.3",
        "2.1",
        "3.3",
        "3.1.1",
        "MIME",
        "1.HEADER",
        "2.TEXT",
        "3.1.HEADER",
    ] {
        check(&raw, spec, None);
    }
}

#[test]
fn lf_only_messages_are_cut_as_stored() {
    let raw = fixture("lf-only.eml");
    check(&raw, "1", Some("line one\nline two"));
    check(&raw, "2", Some("note"));
    check(
        &raw,
        "2.MIME",
        Some("Content-Type: text/x-note; charset=utf-8\n\n"),
    );
    // The field keeps its LF; the blank line that ends the section is CRLF, as RFC 3501 has it.
    check(
        &raw,
        "HEADER.FIELDS (Subject)",
        Some("Subject: LF only\n\r\n"),
    );
}

#[test]
fn a_base64_attached_message_is_addressed_in_its_decoded_form() {
    let raw = fixture("encoded-rfc822.eml");
    let part = Message::parse(&raw).section(&section("2")).unwrap();
    assert!(part.starts_with(b"RnJvbTog") && part.ends_with(b"DQo="));
    check(
        &raw,
        "2.HEADER",
        Some(
            "From: wrapped@example.com\r\nSubject: Wrapped\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n",
        ),
    );
    check(&raw, "2.TEXT", Some("wrapped body text\r\n"));
    check(&raw, "2.1", Some("wrapped body text\r\n"));
    check(
        &raw,
        "2.HEADER.FIELDS (subject)",
        Some("Subject: Wrapped\r\n\r\n"),
    );
}

#[test]
fn digest_parts_are_messages() {
    let raw = fixture("digest.eml");
    check(
        &raw,
        "1",
        Some("From: one@example.com\r\nSubject: First\r\n\r\nFirst body."),
    );
    check(&raw, "1.MIME", Some("\r\n"));
    check(
        &raw,
        "1.HEADER",
        Some("From: one@example.com\r\nSubject: First\r\n\r\n"),
    );
    check(&raw, "2.1", Some("Second body."));
    check(&raw, "2.TEXT", Some("Second body."));
}

#[test]
fn headers_only_and_headerless_messages() {
    let raw = fixture("headers-only.eml");
    check(&raw, "HEADER", Some(std::str::from_utf8(&raw).unwrap()));
    check(&raw, "TEXT", Some(""));
    check(&raw, "1", Some(""));
    check(
        b"no header\r\nat all\r\n",
        "HEADER",
        Some("no header\r\nat all\r\n"),
    );
    check(b"no header\r\n\r\nbut a body", "TEXT", Some("but a body"));
    check(b"", "", Some(""));
    check(b"", "TEXT", Some(""));
}

#[test]
fn a_header_block_without_a_final_line_end_gets_one_in_header_fields() {
    check(
        b"Subject: cut",
        "HEADER.FIELDS (SUBJECT)",
        Some("Subject: cut\r\n\r\n"),
    );
}

#[test]
fn binary_undoes_each_parts_transfer_encoding_and_names_one_it_cannot() {
    let raw = b"From: a@example.com\r\nSubject: parts\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nplain text\r\n\
--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9 =\r\nsoft\r\n\
--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: BASE64\r\n\r\nAAEC/w==\r\n\
--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n\
--b--\r\n";
    let m = Message::parse(raw);
    assert_eq!(m.binary(&[]).unwrap().as_deref(), Some(&raw[..]));
    assert_eq!(m.binary(&[1]).unwrap().as_deref(), Some(&b"plain text"[..]));
    assert_eq!(
        m.binary(&[2]).unwrap().as_deref(),
        Some("café soft".as_bytes())
    );
    assert_eq!(
        m.binary(&[3]).unwrap().as_deref(),
        Some(&[0u8, 1, 2, 255][..])
    );
    assert_eq!(
        m.binary(&[4]),
        Err(imap_mime::BinaryError::UnknownEncoding("x-uuencode".into()))
    );
    assert_eq!(m.binary(&[5]), Ok(None));
    assert_eq!(m.binary(&[1, 1]), Ok(None));
    // Base64 that does not decode is an error, never the encoded bytes passed off as content.
    let broken = b"Subject: b\r\nContent-Transfer-Encoding: base64\r\n\r\n!!not base64!!\r\n";
    assert_eq!(
        Message::parse(broken).binary(&[1]),
        Err(imap_mime::BinaryError::Undecodable("base64"))
    );
    // A message that is not multipart: part 1 is its body, decoded by its own header.
    let single = b"Subject: one\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n";
    assert_eq!(
        Message::parse(single).binary(&[1]).unwrap().as_deref(),
        Some(&b"hello"[..])
    );
}
