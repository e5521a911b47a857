//! Inputs built to hurt: deep nesting, encoded messages inside encoded messages, garbage.
//! Each runs on a thread with a 2 MiB stack, the size of a tokio worker's, because a stack
//! overflow aborts the whole server rather than failing one command.

use std::time::{Duration, Instant};

use imap_mime::Message;
use imap_proto::{Section, SectionText};

/// Parses `raw`, writes everything FETCH and SEARCH can ask for, and returns BODYSTRUCTURE.
fn exercise(raw: Vec<u8>) -> (String, Duration) {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let start = Instant::now();
            let message = Message::parse(&raw);
            let mut out = Vec::new();
            message.envelope(&mut out);
            out.clear();
            message.body_structure(false, &mut out);
            out.clear();
            message.body_structure(true, &mut out);
            let _ = message.section(&Section {
                part: vec![1; 200],
                text: Some(SectionText::Header),
            });
            let _ = message.text_contains("needle");
            let _ = message.header_contains("Subject", "needle");
            let elapsed = start.elapsed();
            drop(message);
            (String::from_utf8_lossy(&out).into_owned(), elapsed)
        })
        .unwrap()
        .join()
        .expect("no panic and no stack overflow")
}

fn message_chain(levels: usize) -> Vec<u8> {
    let mut raw = "Content-Type: message/rfc822\r\n\r\n".repeat(levels);
    raw.push_str("Subject: bottom\r\n\r\nbody\r\n");
    raw.into_bytes()
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for (i, chunk) in bytes.chunks(3).enumerate() {
        if i > 0 && i % 19 == 0 {
            out.push_str("\r\n");
        }
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (j, &b)| n | (b as u32) << (16 - 8 * j));
        for j in 0..4 {
            if j <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * j) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn a_deep_chain_of_messages_is_cut_at_the_depth_limit() {
    let (structure, elapsed) = exercise(message_chain(50_000));
    assert!(
        structure.contains("\"APPLICATION\" \"OCTET-STREAM\""),
        "{structure:.200}"
    );
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

#[test]
fn a_deep_chain_inside_a_base64_message_neither_overflows_nor_copies_per_level() {
    let mut raw =
        b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n".to_vec();
    raw.extend_from_slice(base64(&message_chain(50_000)).as_bytes());
    raw.extend_from_slice(b"\r\n");
    let (structure, elapsed) = exercise(raw);
    assert!(
        structure.starts_with("(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"BASE64\""),
        "{structure:.200}"
    );
    assert!(structure.contains("\"APPLICATION\" \"OCTET-STREAM\""));
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

#[test]
fn deeply_nested_multiparts_are_cut_at_the_depth_limit() {
    let levels = 20_000;
    let mut raw = String::new();
    for i in 0..levels {
        raw.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n"
        ));
    }
    raw.push_str("\r\nleaf\r\n");
    for i in (0..levels).rev() {
        raw.push_str(&format!("--b{i}--\r\n"));
    }
    let (structure, elapsed) = exercise(raw.into_bytes());
    assert!(structure.contains("\"APPLICATION\" \"OCTET-STREAM\""));
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

#[test]
fn many_base64_messages_in_one_multipart_stay_bounded() {
    let inner = base64(b"Subject: inner\r\n\r\ninner body\r\n");
    let mut raw = String::from("Content-Type: multipart/mixed; boundary=m\r\n\r\n");
    for _ in 0..2_000 {
        raw.push_str(
            "--m\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n",
        );
        raw.push_str(&inner);
        raw.push_str("\r\n");
    }
    raw.push_str("--m--\r\n");
    let (structure, elapsed) = exercise(raw.into_bytes());
    // The first ones are described in full; past the re-parse limit the rest may not be.
    assert!(
        structure.starts_with("((\"MESSAGE\" \"RFC822\" NIL NIL NIL \"BASE64\" 40 (NIL \"inner\""),
        "{structure:.300}"
    );
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

#[test]
fn a_10_kb_message_takes_well_under_a_millisecond_or_two() {
    let mut raw = std::fs::read(format!(
        "{}/tests/fixtures/nested.eml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let at = raw.windows(9).position(|w| w == b"report at").unwrap();
    let filler = "A line of ordinary text that pads the plain part of the message.\r\n".repeat(130);
    raw.splice(at..at, filler.bytes());
    assert!((10_000..11_000).contains(&raw.len()), "{}", raw.len());
    let runs = 200;
    let start = Instant::now();
    for _ in 0..runs {
        let message = Message::parse(&raw);
        let mut out = Vec::new();
        message.body_structure(true, &mut out);
        message.envelope(&mut out);
        assert!(out.len() > 500);
    }
    let each = start.elapsed() / runs;
    // Typically tens of microseconds in a release build; the bound leaves room for an
    // unoptimised build on a busy machine while still catching anything quadratic.
    assert!(each < Duration::from_millis(5), "{each:?} per message");
}

#[test]
fn a_message_part_that_is_only_a_header_does_not_trip_mail_parser() {
    // Found by the mime_structure fuzz target: mail-parser's debug assertion "Invalid part
    // ID, could not find multipart" fired on this, in any debug build.
    let raw = b"Content-Type:multipart;boundary=e\n\n--eContent-Type:message/rfc822\n\n\
                Content-Type:message/rfc822\n\n\n--e--";
    let (structure, _) = exercise(raw.to_vec());
    assert!(
        structure.starts_with('(') && structure.ends_with(')'),
        "{structure}"
    );
}

#[test]
fn garbage_still_makes_a_message() {
    for raw in [
        &b""[..],
        b"\r\n",
        b"no header here at all",
        b"no colon\r\nat all\r\n\r\nbut a body\r\n",
        b"\x00\xff\xfe binary \x00",
        b":\r\n:\r\n\r\n",
        b"Content-Type: multipart/mixed; boundary=\r\n\r\n--\r\n--\r\n",
        b"Content-Type: message/rfc822\r\n\r\n",
        b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!",
        b"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\nContent-Transfer-Encoding: base64\r\n\r\nU3ViamVjdDogeA0KDQp5DQo=\r\n--d--\r\n",
    ] {
        let (structure, _) = exercise(raw.to_vec());
        assert!(structure.starts_with('(') && structure.ends_with(')'), "{structure}");
    }
}
