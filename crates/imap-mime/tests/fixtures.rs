//! ENVELOPE, BODYSTRUCTURE and BODY of real-world shaped messages, against strings checked
//! by hand against RFC 3501's grammar and Dovecot's conventions (sizes and line counts are
//! of the stored bytes; a line count is the number of line feeds).

use imap_mime::Message;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn check(name: &str, envelope: &str, bodystructure: &str, body: &str) {
    let raw = fixture(name);
    let message = Message::parse(&raw);
    let mut out = Vec::new();
    message.envelope(&mut out);
    assert_eq!(
        String::from_utf8_lossy(&out),
        envelope,
        "ENVELOPE of {name}"
    );
    out.clear();
    message.body_structure(true, &mut out);
    assert_eq!(
        String::from_utf8_lossy(&out),
        bodystructure,
        "BODYSTRUCTURE of {name}"
    );
    out.clear();
    message.body_structure(false, &mut out);
    assert_eq!(String::from_utf8_lossy(&out), body, "BODY of {name}");
}

const ALICE: &str = r#"(("Alice Example" NIL "alice" "example.org"))"#;

#[test]
fn single_part_text() {
    check(
        "simple.eml",
        &format!(
            r#"("Mon, 7 Feb 1994 21:52:25 -0800 (PST)" "Afternoon meeting" {ALICE} {ALICE} {ALICE} ((NIL NIL "bob" "example.net")) (("Carol, C." NIL "carol" "example.com")(NIL NIL "dave" "example.com")) NIL NIL "<B27397-0100000@example.org>")"#
        ),
        r#"("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 63 1 NIL NIL NIL NIL)"#,
        r#"("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 63 1)"#,
    );
}

#[test]
fn mixed_with_alternative_attachment_and_attached_multipart_message() {
    let erin = r#"(("Erin" NIL "erin" "example.com"))"#;
    let inner_envelope = format!(
        r#"("Tue, 1 Mar 2022 09:00:00 +0100" "Forwarded notes" {erin} {erin} {erin} {ALICE} NIL NIL NIL "<inner@example.com>")"#
    );
    check(
        "nested.eml",
        &format!(
            r#"("Wed, 2 Mar 2022 10:30:00 +0000" "Quarterly report" {ALICE} {ALICE} {ALICE} (("Bob" NIL "bob" "example.net")) NIL NIL "<earlier@example.net>" "<outer@example.org>")"#
        ),
        &format!(
            concat!(
                r#"((("TEXT" "PLAIN" ("CHARSET" "iso-8859-1") NIL NIL "QUOTED-PRINTABLE" 41 1 NIL NIL NIL NIL)"#,
                r#"("TEXT" "HTML" ("CHARSET" "utf-8") NIL NIL "QUOTED-PRINTABLE" 84 0 NIL NIL NIL NIL)"#,
                r#" "ALTERNATIVE" ("BOUNDARY" "alt-b") NIL NIL NIL)"#,
                r#"("IMAGE" "PNG" ("NAME" "chart.png") "<chart@example.org>" "Sales chart" "BASE64" 274 NIL ("ATTACHMENT" ("FILENAME" "chart.png")) NIL NIL)"#,
                r#"("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 448 {} "#,
                r#"(("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 29 0 NIL NIL NIL NIL)"#,
                r#"("APPLICATION" "PDF" ("NAME" "notes.pdf") NIL NIL "BASE64" 12 NIL NIL NIL NIL)"#,
                r#" "MIXED" ("BOUNDARY" "inner-b") NIL NIL NIL) 18 NIL ("INLINE" NIL) NIL NIL)"#,
                r#" "MIXED" ("BOUNDARY" "outer-b") NIL NIL NIL)"#,
            ),
            inner_envelope
        ),
        &format!(
            concat!(
                r#"((("TEXT" "PLAIN" ("CHARSET" "iso-8859-1") NIL NIL "QUOTED-PRINTABLE" 41 1)"#,
                r#"("TEXT" "HTML" ("CHARSET" "utf-8") NIL NIL "QUOTED-PRINTABLE" 84 0) "ALTERNATIVE")"#,
                r#"("IMAGE" "PNG" ("NAME" "chart.png") "<chart@example.org>" "Sales chart" "BASE64" 274)"#,
                r#"("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 448 {} "#,
                r#"(("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 29 0)"#,
                r#"("APPLICATION" "PDF" ("NAME" "notes.pdf") NIL NIL "BASE64" 12) "MIXED") 18) "MIXED")"#,
            ),
            inner_envelope
        ),
    );
}

#[test]
fn every_extension_field_prologue_epilogue_and_an_invalid_encoding() {
    let root = r#"((NIL NIL "root" "example.net"))"#;
    let sub = r#"((NIL NIL "sub" "example.net"))"#;
    check(
        "extension-fields.eml",
        &format!(
            r#"("Sat, 12 Mar 2022 10:00:00 +0200" NIL {root} {root} {root} NIL NIL NIL NIL NIL)"#
        ),
        &format!(
            concat!(
                r#"(("TEXT" "X-CUSTOM" ("CHARSET" "us-ascii" "LABEL" "say \"hi\"") "<custom@example.net>" "a custom text part" "7BIT" 7 1"#,
                r#" "SGVsbG8gSU1BUCEhIQ==" ("INLINE" ("SIZE" "5")) ("en" "de") "https://example.net/custom.txt")"#,
                r#"("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 388 ("Sun, 13 Mar 2022 11:22:33 +0300" "sub message" {sub} {sub} {sub}"#,
                r#" ((NIL NIL "one" "example.net")(NIL NIL "two" "example.net")) NIL NIL NIL NIL)"#,
                r#" (("TEXT" "HTML" ("CHARSET" "US-ASCII") NIL NIL "8BIT" 20 1 NIL NIL NIL NIL)"#,
                r#"("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 13 1 NIL NIL NIL NIL)"#,
                r#" "ALTERNATIVE" ("BOUNDARY" "sub") NIL NIL NIL) 21 NIL NIL NIL NIL)"#,
                r#" "MIXED" ("BOUNDARY" "two words") NIL NIL NIL)"#,
            ),
            sub = sub
        ),
        &format!(
            concat!(
                r#"(("TEXT" "X-CUSTOM" ("CHARSET" "us-ascii" "LABEL" "say \"hi\"") "<custom@example.net>" "a custom text part" "7BIT" 7 1)"#,
                r#"("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 388 ("Sun, 13 Mar 2022 11:22:33 +0300" "sub message" {sub} {sub} {sub}"#,
                r#" ((NIL NIL "one" "example.net")(NIL NIL "two" "example.net")) NIL NIL NIL NIL)"#,
                r#" (("TEXT" "HTML" ("CHARSET" "US-ASCII") NIL NIL "8BIT" 20 1)"#,
                r#"("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 13 1) "ALTERNATIVE") 21) "MIXED")"#,
            ),
            sub = sub
        ),
    );
}

#[test]
fn iso_2022_jp_and_utf8_encoded_words_stay_as_written_in_the_envelope() {
    // IMAP4rev1 strings carry no charset: encoded words go out raw, for the client to decode.
    let taro = r#"(("=?ISO-2022-JP?B?GyRCOzNFRBsoQiAbJEJCQE86GyhC?=" NIL "taro" "example.jp"))"#;
    check(
        "japanese.eml",
        &format!(
            r#"("Thu, 3 Mar 2022 18:00:00 +0900" "=?ISO-2022-JP?B?GyRCMnE1RCROJCpDTiRpJDsbKEI=?=" {taro} {taro} {taro} (("=?UTF-8?B?5L2Q6Jek6Iqx5a2Q?=" NIL "hanako" "example.jp")("=?utf-8?q?J=C3=BCrgen?=" NIL "jurgen" "example.de")) NIL NIL NIL "<jp1@example.jp>")"#
        ),
        r#"("TEXT" "PLAIN" ("CHARSET" "ISO-2022-JP") NIL NIL "7BIT" 48 2 NIL NIL NIL NIL)"#,
        r#"("TEXT" "PLAIN" ("CHARSET" "ISO-2022-JP") NIL NIL "7BIT" 48 2)"#,
    );
}

#[test]
fn raw_utf8_headers_and_an_8bit_body_without_content_type() {
    let zoe = "(({4}\r\nZoë NIL \"zoe\" \"example.fr\"))";
    check(
        "eightbit.eml",
        &format!(
            "(\"Fri, 4 Mar 2022 14:00:00 +0100\" {{30}}\r\nRéunion à 14h — ça marche {zoe} {zoe} {zoe} ((NIL NIL \"marc\" \"example.fr\")) NIL NIL NIL NIL)"
        ),
        r#"("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 64 2 NIL NIL NIL NIL)"#,
        r#"("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 64 2)"#,
    );
}

#[test]
fn groups_defaults_and_addresses_without_a_domain() {
    check(
        "groups.eml",
        concat!(
            r#"("Tue, 8 Mar 2022 23:59:59 -0800" "" (("Last, First" NIL "first.last" "example.com"))"#,
            r#" ((NIL NIL "list-bounces" "lists.example.com")) ((NIL NIL "list" "lists.example.com"))"#,
            r#" ((NIL NIL "Team" NIL)(NIL NIL "ann" "example.com")("Ben B." NIL "ben" "example.com")(NIL NIL NIL NIL)(NIL NIL "solo" "example.com"))"#,
            r#" ((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)) ((NIL NIL "nobody" "MISSING_DOMAIN")) NIL NIL)"#,
        ),
        r#"("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 7 1 NIL NIL NIL NIL)"#,
        r#"("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 7 1)"#,
    );
}

#[test]
fn a_message_with_only_headers() {
    let nobody = r#"((NIL NIL "nobody" "example.com"))"#;
    check(
        "headers-only.eml",
        &format!(
            r#"("Sat, 5 Mar 2022 00:00:00 -0500" "Only headers" {nobody} {nobody} {nobody} NIL NIL NIL NIL NIL)"#
        ),
        r#"("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0 NIL NIL NIL NIL)"#,
        r#"("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0)"#,
    );
}

#[test]
fn lf_only_line_ends_are_counted_as_stored() {
    let lf = r#"((NIL NIL "lf" "example.com"))"#;
    check(
        "lf-only.eml",
        &format!(
            r#"("Sun, 6 Mar 2022 12:00:00 +0000" "LF only" {lf} {lf} {lf} ((NIL NIL "lf2" "example.com")) NIL NIL NIL NIL)"#
        ),
        concat!(
            r#"(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 17 1 NIL NIL NIL NIL)"#,
            r#"("TEXT" "X-NOTE" ("CHARSET" "utf-8") NIL NIL "7BIT" 4 0 NIL NIL NIL NIL) "MIXED" ("BOUNDARY" "lf") NIL NIL NIL)"#,
        ),
        r#"(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 17 1)("TEXT" "X-NOTE" ("CHARSET" "utf-8") NIL NIL "7BIT" 4 0) "MIXED")"#,
    );
}

#[test]
fn a_multipart_whose_boundary_never_appears_is_shown_as_its_text() {
    let broken = r#"((NIL NIL "broken" "example.com"))"#;
    check(
        "malformed-boundary.eml",
        &format!(
            r#"("Mon, 7 Mar 2022 08:00:00 +0000" "Broken boundaries" {broken} {broken} {broken} NIL NIL NIL NIL NIL)"#
        ),
        r#"("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 103 5 NIL NIL NIL NIL)"#,
        r#"("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 103 5)"#,
    );
}

#[test]
fn a_multipart_without_its_closing_boundary_ends_at_the_end() {
    let broken = r#"((NIL NIL "broken" "example.com"))"#;
    check(
        "unterminated.eml",
        &format!(r#"(NIL "No closing boundary" {broken} {broken} {broken} NIL NIL NIL NIL NIL)"#),
        concat!(
            r#"(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 5 0 NIL NIL NIL NIL)"#,
            r#"("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 22 1 NIL NIL NIL NIL) "MIXED" ("BOUNDARY" "b1") NIL NIL NIL)"#,
        ),
        r#"(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 5 0)("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 22 1) "MIXED")"#,
    );
}

#[test]
fn a_base64_message_rfc822_is_described_from_its_decoded_form() {
    let outer = r#"((NIL NIL "outer" "example.com"))"#;
    let wrapped = r#"((NIL NIL "wrapped" "example.com"))"#;
    let inner = format!(r#"(NIL "Wrapped" {wrapped} {wrapped} {wrapped} NIL NIL NIL NIL NIL)"#);
    check(
        "encoded-rfc822.eml",
        &format!(r#"(NIL "Encoded attachment" {outer} {outer} {outer} NIL NIL NIL NIL NIL)"#),
        &format!(
            concat!(
                r#"(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 13 0 NIL NIL NIL NIL)"#,
                r#"("MESSAGE" "RFC822" NIL NIL NIL "BASE64" 150 {} ("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 19 1 NIL NIL NIL NIL) 1 NIL NIL NIL NIL)"#,
                r#" "MIXED" ("BOUNDARY" "e") NIL NIL NIL)"#,
            ),
            inner
        ),
        &format!(
            r#"(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 13 0)("MESSAGE" "RFC822" NIL NIL NIL "BASE64" 150 {inner} ("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 19 1) 1) "MIXED")"#
        ),
    );
}

#[test]
fn untyped_digest_parts_are_messages() {
    let digest = r#"((NIL NIL "digest" "example.com"))"#;
    let one = r#"((NIL NIL "one" "example.com"))"#;
    let two = r#"((NIL NIL "two" "example.com"))"#;
    check(
        "digest.eml",
        &format!(r#"(NIL "Digest" {digest} {digest} {digest} NIL NIL NIL NIL NIL)"#),
        &format!(
            concat!(
                r#"(("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 52 (NIL "First" {one} {one} {one} NIL NIL NIL NIL NIL) ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 11 0 NIL NIL NIL NIL) 3 NIL NIL NIL NIL)"#,
                r#"("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 54 (NIL "Second" {two} {two} {two} NIL NIL NIL NIL NIL) ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 12 0 NIL NIL NIL NIL) 3 NIL NIL NIL NIL)"#,
                r#" "DIGEST" ("BOUNDARY" "d") NIL NIL NIL)"#,
            ),
            one = one,
            two = two
        ),
        &format!(
            concat!(
                r#"(("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 52 (NIL "First" {one} {one} {one} NIL NIL NIL NIL NIL) ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 11 0) 3)"#,
                r#"("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 54 (NIL "Second" {two} {two} {two} NIL NIL NIL NIL NIL) ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 12 0) 3) "DIGEST")"#,
            ),
            one = one,
            two = two
        ),
    );
}
