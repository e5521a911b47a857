//! One BODYSTRUCTURE or ENVELOPE rule per test, on small messages written inline.

use imap_mime::Message;

fn bodystructure(raw: &str) -> String {
    let mut out = Vec::new();
    Message::parse(raw.as_bytes()).body_structure(true, &mut out);
    String::from_utf8(out).unwrap()
}

fn envelope(raw: &str) -> String {
    let mut out = Vec::new();
    Message::parse(raw.as_bytes()).envelope(&mut out);
    String::from_utf8(out).unwrap()
}

fn check(raw: &str, expect: &str) {
    assert_eq!(bodystructure(raw), expect, "for {raw:?}");
}

#[test]
fn missing_or_malformed_content_type_is_text_plain_us_ascii() {
    let default = r#"("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3 0 NIL NIL NIL NIL)"#;
    check("Subject: x\r\n\r\nabc", default);
    check("Content-Type: text\r\n\r\nabc", default);
    check("Content-Type: /\r\n\r\nabc", default);
    check("Content-Type: multipart/mixed\r\n\r\nabc", default);
}

#[test]
fn text_without_charset_gets_us_ascii_and_other_types_get_nil() {
    check(
        "Content-Type: text/enriched; x=1\r\n\r\nabc",
        r#"("TEXT" "ENRICHED" ("X" "1" "CHARSET" "US-ASCII") NIL NIL "7BIT" 3 0 NIL NIL NIL NIL)"#,
    );
    check(
        "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00\x01",
        r#"("APPLICATION" "OCTET-STREAM" NIL NIL NIL "BINARY" 2 NIL NIL NIL NIL)"#,
    );
}

#[test]
fn an_encoding_that_is_not_a_token_is_7bit() {
    check(
        "Content-Transfer-Encoding: ?bogus\r\n\r\nabc\r\n",
        r#"("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 5 1 NIL NIL NIL NIL)"#,
    );
    check(
        "Content-Transfer-Encoding: Quoted-Printable\r\n\r\nabc\r\n",
        r#"("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "QUOTED-PRINTABLE" 5 1 NIL NIL NIL NIL)"#,
    );
}

#[test]
fn rfc2231_continuations_are_joined_and_non_ascii_values_stay_encoded() {
    check(
        concat!(
            "Content-Type: application/pdf\r\n",
            "Content-Disposition: attachment; filename*0=\"a rather long\"; filename*1=\" name.pdf\"\r\n",
            "\r\nx"
        ),
        r#"("APPLICATION" "PDF" NIL NIL NIL "7BIT" 1 NIL ("ATTACHMENT" ("FILENAME" "a rather long name.pdf")) NIL NIL)"#,
    );
    check(
        "Content-Type: application/pdf; name*=utf-8''%C3%A9t%C3%A9.pdf\r\n\r\nx",
        r#"("APPLICATION" "PDF" ("NAME*" "UTF-8''%C3%A9t%C3%A9.pdf") NIL NIL "7BIT" 1 NIL NIL NIL NIL)"#,
    );
}

#[test]
fn a_multipart_with_no_parts_has_one_empty_text_part() {
    // As Dovecot does: RFC 3501's grammar needs at least one body in a multipart.
    check(
        "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b--\r\n",
        r#"(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0 NIL NIL NIL NIL) "MIXED" ("BOUNDARY" "b") NIL NIL NIL)"#,
    );
}

#[test]
fn a_part_without_headers_is_text_plain() {
    check(
        "Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\n\r\nplain\r\n--b--\r\n",
        r#"(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 5 0 NIL NIL NIL NIL) "ALTERNATIVE" ("BOUNDARY" "b") NIL NIL NIL)"#,
    );
}

#[test]
fn message_global_is_a_basic_part() {
    // RFC 3501 clients expect an envelope only after "MESSAGE" "RFC822".
    check(
        "Content-Type: message/global\r\n\r\nSubject: x\r\n\r\ny",
        r#"("MESSAGE" "GLOBAL" NIL NIL NIL "7BIT" 15 NIL NIL NIL NIL)"#,
    );
}

#[test]
fn a_message_that_is_a_message_rfc822() {
    check(
        "Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nbody\r\n",
        concat!(
            r#"("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 24 (NIL "inner" NIL NIL NIL NIL NIL NIL NIL NIL)"#,
            r#" ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 6 1 NIL NIL NIL NIL) 3 NIL NIL NIL NIL)"#,
        ),
    );
}

#[test]
fn an_empty_message_rfc822_part_still_has_an_envelope_and_a_body() {
    check(
        "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n\r\n--b--\r\n",
        concat!(
            r#"(("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 0 (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"#,
            r#" ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0 NIL NIL NIL NIL) 0 NIL NIL NIL NIL)"#,
            r#" "MIXED" ("BOUNDARY" "b") NIL NIL NIL)"#,
        ),
    );
}

#[test]
fn language_may_be_a_single_tag_and_disposition_may_lack_parameters() {
    check(
        "Content-Language: fr\r\nContent-Disposition: inline\r\nContent-Location: x.txt\r\n\r\na",
        r#"("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1 0 NIL ("INLINE" NIL) ("fr") "x.txt")"#,
    );
}

#[test]
fn garbage_without_headers_is_an_empty_envelope_and_text() {
    assert_eq!(
        envelope("no header at all"),
        "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"
    );
    check(
        "no header at all",
        r#"("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0 NIL NIL NIL NIL)"#,
    );
    check(
        "",
        r#"("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0 NIL NIL NIL NIL)"#,
    );
}

#[test]
fn envelope_fields_are_unfolded_and_quotes_escaped() {
    assert_eq!(
        envelope(concat!(
            "Date: Mon, 1 Jan 2024\r\n 10:00:00 +0000\r\n",
            "Subject: a \"quoted\"\r\n word\r\n",
            "From: \"A \\\"B\\\" C\" <abc@example.com>\r\n",
            "Message-ID:\r\n <id@example.com>\r\n",
            "\r\n",
        )),
        concat!(
            r#"("Mon, 1 Jan 2024 10:00:00 +0000" "a \"quoted\" word" (("A \"B\" C" NIL "abc" "example.com"))"#,
            r#" (("A \"B\" C" NIL "abc" "example.com")) (("A \"B\" C" NIL "abc" "example.com")) NIL NIL NIL NIL "<id@example.com>")"#,
        ),
    );
}

#[test]
fn an_empty_sender_falls_back_to_from() {
    assert_eq!(
        envelope("From: a@example.com\r\nSender:\r\nReply-To: \r\n\r\n"),
        r#"(NIL NIL ((NIL NIL "a" "example.com")) ((NIL NIL "a" "example.com")) ((NIL NIL "a" "example.com")) NIL NIL NIL NIL NIL)"#,
    );
}

#[test]
fn comments_are_no_part_of_addresses_and_routes_become_the_adl() {
    // RFC 5322 Appendix A.5 and A.6.1.
    let raw = concat!(
        "From: Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>\r\n",
        "Reply-To: Mary Smith <@node.test:mary@example.net>\r\n",
        "To:A Group(Some people)\r\n",
        "     :Chris Jones <c@(Chris's host.)public.example>,\r\n",
        "         joe@example.org,\r\n",
        "  John <jdoe@one.test> (my dear friend); (the end of the group)\r\n",
        "Cc:(Empty list)(start)Hidden recipients  :(nobody(that I know))  ;\r\n",
        "Subject: A\r\n\r\nbody\r\n"
    );
    assert_eq!(
        envelope(raw),
        concat!(
            r#"(NIL "A" (("Pete" NIL "pete" "silly.test")) (("Pete" NIL "pete" "silly.test")) "#,
            r#"(("Mary Smith" "@node.test" "mary" "example.net")) "#,
            r#"((NIL NIL "A Group" NIL)("Chris Jones" NIL "c" "public.example")(NIL NIL "joe" "example.org")("John" NIL "jdoe" "one.test")(NIL NIL NIL NIL)) "#,
            r#"((NIL NIL "Hidden recipients" NIL)(NIL NIL NIL NIL)) NIL NIL NIL)"#
        )
    );
}
