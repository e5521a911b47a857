//! FETCH: one message's data items, encoded.
//!
//! Runs on a blocking thread, a batch of messages at a time: reading a blob and parsing
//! MIME are CPU and disk work that must not stall the connection-handling threads.

use imap_mime::Message;
use imap_proto::encode::{push_literal, push_literal8};
use imap_proto::response;
use imap_proto::{FetchItem, Section, SectionText};
use store::{Flags, MessageMeta};

/// One message to answer for: its number, what the store knows, and whether it is \Recent
/// for this session.
pub(crate) struct Target {
    pub seq: u32,
    pub meta: MessageMeta,
    pub recent: bool,
    /// Add FLAGS to the answer: the fetch changed them (\Seen set as a side effect).
    pub flags_changed: bool,
}

/// Whether any item needs the message's bytes, not only its metadata.
pub(crate) fn needs_body(items: &[FetchItem]) -> bool {
    items.iter().any(|item| {
        !matches!(
            item,
            FetchItem::Flags
                | FetchItem::Uid
                | FetchItem::InternalDate
                | FetchItem::Rfc822Size
                | FetchItem::ModSeq
        )
    })
}

fn needs_mime(items: &[FetchItem]) -> bool {
    items.iter().any(|item| match item {
        FetchItem::Envelope
        | FetchItem::Body
        | FetchItem::BodyStructure
        | FetchItem::Rfc822Header
        | FetchItem::Rfc822Text => true,
        FetchItem::BodySection { section, .. } => {
            !section.part.is_empty() || section.text.is_some()
        }
        FetchItem::Binary { part, .. } | FetchItem::BinarySize { part } => !part.is_empty(),
        _ => false,
    })
}

/// Whether fetching these items sets \Seen (RFC 3501 §6.4.5: BODY[...] and RFC822 and
/// RFC822.TEXT do; BODY.PEEK and RFC822.HEADER do not; RFC 3516: BINARY does too).
pub(crate) fn sets_seen(items: &[FetchItem]) -> bool {
    items.iter().any(|item| {
        matches!(
            item,
            FetchItem::Rfc822
                | FetchItem::Rfc822Text
                | FetchItem::BodySection { peek: false, .. }
                | FetchItem::Binary { peek: false, .. }
        )
    })
}

/// Appends `* seq FETCH (...)` for one message. `raw` is the message when
/// [`needs_body`] said so. Returns why a BINARY item could not be answered, if one could
/// not; that item was answered NIL and the command must end NO (UNKNOWN-CTE or PARSE).
pub(crate) fn fetch_one(
    target: &Target,
    items: &[FetchItem],
    uid_command: bool,
    raw: Option<&[u8]>,
    out: &mut Vec<u8>,
) -> Option<imap_mime::BinaryError> {
    let mut unknown = None;
    let meta = &target.meta;
    // Parsing MIME costs more than sending the bytes, so it happens only for items that
    // need the structure: the whole message (BODY[], RFC822) is sent as stored.
    let parsed = raw.filter(|_| needs_mime(items)).map(Message::parse);
    out.extend_from_slice(format!("* {} FETCH (", target.seq).as_bytes());
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        if !first {
            out.push(b' ');
        }
        first = false;
    };
    // A UID command always answers with the UID (RFC 3501 §6.4.8).
    let wants_uid = uid_command || items.contains(&FetchItem::Uid);
    if wants_uid {
        sep(out);
        out.extend_from_slice(format!("UID {}", meta.uid).as_bytes());
    }
    let wants_flags = target.flags_changed || items.contains(&FetchItem::Flags);
    if wants_flags {
        sep(out);
        out.extend_from_slice(b"FLAGS ");
        push_flags(out, meta, target.recent);
    }
    for item in items {
        match item {
            FetchItem::Uid | FetchItem::Flags => {}
            FetchItem::ModSeq => {
                sep(out);
                out.extend_from_slice(format!("MODSEQ ({})", meta.modseq).as_bytes());
            }
            FetchItem::InternalDate => {
                sep(out);
                out.extend_from_slice(b"INTERNALDATE ");
                response::push_internal_date(out, meta.internal_date, meta.internal_zone);
            }
            FetchItem::Rfc822Size => {
                sep(out);
                out.extend_from_slice(format!("RFC822.SIZE {}", meta.size).as_bytes());
            }
            FetchItem::Envelope => {
                sep(out);
                out.extend_from_slice(b"ENVELOPE ");
                if let Some(m) = &parsed {
                    m.envelope(out);
                }
            }
            FetchItem::Body => {
                sep(out);
                out.extend_from_slice(b"BODY ");
                if let Some(m) = &parsed {
                    m.body_structure(false, out);
                }
            }
            FetchItem::BodyStructure => {
                sep(out);
                out.extend_from_slice(b"BODYSTRUCTURE ");
                if let Some(m) = &parsed {
                    m.body_structure(true, out);
                }
            }
            FetchItem::Rfc822 => {
                sep(out);
                out.extend_from_slice(b"RFC822 ");
                push_literal(out, raw.unwrap_or_default());
            }
            FetchItem::Rfc822Header | FetchItem::Rfc822Text => {
                let (label, text) = if *item == FetchItem::Rfc822Header {
                    ("RFC822.HEADER ", SectionText::Header)
                } else {
                    ("RFC822.TEXT ", SectionText::Text)
                };
                sep(out);
                out.extend_from_slice(label.as_bytes());
                let section = Section {
                    part: Vec::new(),
                    text: Some(text),
                };
                let bytes = parsed.as_ref().and_then(|m| m.section(&section));
                push_literal(out, bytes.as_deref().unwrap_or_default());
            }
            FetchItem::BodySection {
                section, partial, ..
            } => {
                sep(out);
                response::push_body_section_name(out, section, partial.map(|p| p.0));
                out.push(b' ');
                let bytes = if section.part.is_empty() && section.text.is_none() {
                    raw.map(std::borrow::Cow::Borrowed)
                } else {
                    parsed.as_ref().and_then(|m| m.section(section))
                };
                match bytes {
                    None => out.extend_from_slice(b"NIL"),
                    Some(bytes) => push_literal(out, cut(&bytes, *partial)),
                }
            }
            FetchItem::Binary { part, partial, .. } => {
                sep(out);
                response::push_binary_name(out, false, part, partial.map(|p| p.0));
                out.push(b' ');
                match binary(raw, parsed.as_ref(), part) {
                    Ok(Some(bytes)) => push_literal8(out, cut(&bytes, *partial)),
                    Ok(None) => out.extend_from_slice(b"NIL"),
                    Err(e) => {
                        out.extend_from_slice(b"NIL");
                        unknown = Some(e);
                    }
                }
            }
            FetchItem::BinarySize { part } => {
                sep(out);
                response::push_binary_name(out, true, part, None);
                out.push(b' ');
                match binary(raw, parsed.as_ref(), part) {
                    Ok(Some(bytes)) => out.extend_from_slice(bytes.len().to_string().as_bytes()),
                    Ok(None) => out.extend_from_slice(b"NIL"),
                    Err(e) => {
                        out.extend_from_slice(b"NIL");
                        unknown = Some(e);
                    }
                }
            }
        }
    }
    out.extend_from_slice(b")\r\n");
    unknown
}

/// The `<origin.length>` of a partial fetch cut from the bytes, or all of them.
fn cut(bytes: &[u8], partial: Option<(u32, u32)>) -> &[u8] {
    match partial {
        None => bytes,
        Some((origin, length)) => {
            let start = (origin as usize).min(bytes.len());
            let end = start.saturating_add(length as usize).min(bytes.len());
            &bytes[start..end]
        }
    }
}

/// BINARY[part] of the message: the whole message needs no parse.
fn binary<'a>(
    raw: Option<&'a [u8]>,
    parsed: Option<&Message<'a>>,
    part: &[u32],
) -> Result<Option<std::borrow::Cow<'a, [u8]>>, imap_mime::BinaryError> {
    match (part.is_empty(), raw, parsed) {
        (true, Some(raw), _) => Ok(Some(std::borrow::Cow::Borrowed(raw))),
        (false, _, Some(m)) => m.binary(part),
        _ => Ok(None),
    }
}

/// `(\Seen \Flagged $Keyword \Recent)`.
pub(crate) fn push_flags(out: &mut Vec<u8>, meta: &MessageMeta, recent: bool) {
    const SYSTEM: [(u32, &str); 5] = [
        (Flags::SEEN, "\\Seen"),
        (Flags::ANSWERED, "\\Answered"),
        (Flags::FLAGGED, "\\Flagged"),
        (Flags::DELETED, "\\Deleted"),
        (Flags::DRAFT, "\\Draft"),
    ];
    let names = SYSTEM
        .iter()
        .filter(|(bit, _)| meta.flags.0 & bit != 0)
        .map(|(_, name)| *name)
        .chain(meta.keywords.iter().map(String::as_str))
        .chain(recent.then_some("\\Recent"));
    out.push(b'(');
    for (i, name) in names.enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(name.as_bytes());
    }
    out.push(b')');
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::{BlobId, MessageId};

    fn target(flags: u32, keywords: &[&str]) -> Target {
        Target {
            seq: 2,
            meta: MessageMeta {
                id: MessageId(1),
                uid: 7,
                internal_date: 837_596_665,
                internal_zone: -420,
                modseq: 12_345,
                size: 42,
                flags: Flags(flags),
                keywords: keywords.iter().map(|k| k.to_string()).collect(),
                blob: BlobId([0; 32]),
            },
            recent: true,
            flags_changed: false,
        }
    }

    fn check(items: &[FetchItem], uid: bool, raw: Option<&[u8]>, expect: &str) {
        let mut out = Vec::new();
        fetch_one(
            &target(Flags::SEEN, &["$Forwarded"]),
            items,
            uid,
            raw,
            &mut out,
        );
        assert_eq!(String::from_utf8_lossy(&out), expect);
    }

    #[test]
    fn metadata_items() {
        check(
            &[FetchItem::Flags, FetchItem::Rfc822Size],
            true,
            None,
            "* 2 FETCH (UID 7 FLAGS (\\Seen $Forwarded \\Recent) RFC822.SIZE 42)\r\n",
        );
        check(
            &[FetchItem::InternalDate],
            false,
            None,
            "* 2 FETCH (INTERNALDATE \"17-Jul-1996 02:44:25 -0700\")\r\n",
        );
        check(
            &[FetchItem::Flags, FetchItem::ModSeq],
            true,
            None,
            "* 2 FETCH (UID 7 FLAGS (\\Seen $Forwarded \\Recent) MODSEQ (12345))\r\n",
        );
        assert!(!needs_body(&[FetchItem::ModSeq, FetchItem::Uid]));
    }

    #[test]
    fn sections_and_partials() {
        let raw = b"Subject: hi\r\nFrom: a@b\r\n\r\nhello world\r\n";
        let whole = Section {
            part: Vec::new(),
            text: None,
        };
        check(
            &[FetchItem::BodySection {
                peek: true,
                section: whole.clone(),
                partial: Some((6, 5)),
            }],
            false,
            Some(raw),
            "* 2 FETCH (BODY[]<6> {5}\r\nt: hi)\r\n",
        );
        check(
            &[FetchItem::BodySection {
                peek: true,
                section: Section {
                    part: Vec::new(),
                    text: Some(SectionText::HeaderFields(vec!["SUBJECT".into()])),
                },
                partial: None,
            }],
            false,
            Some(raw),
            "* 2 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {15}\r\nSubject: hi\r\n\r\n)\r\n",
        );
        check(
            &[FetchItem::BodySection {
                peek: false,
                section: Section {
                    part: vec![9],
                    text: None,
                },
                partial: None,
            }],
            false,
            Some(raw),
            "* 2 FETCH (BODY[9] NIL)\r\n",
        );
        assert!(sets_seen(&[FetchItem::Rfc822]));
        assert!(!sets_seen(&[FetchItem::Rfc822Header]));
    }

    #[test]
    fn binary_items_decode_and_name_what_they_cannot() {
        let raw = b"Subject: b\r\nContent-Transfer-Encoding: base64\r\n\r\nAGhp\r\n";
        let binary = |part: Vec<u32>, partial| FetchItem::Binary {
            peek: true,
            part,
            partial,
        };
        check(
            &[
                binary(vec![1], None),
                FetchItem::BinarySize { part: vec![1] },
            ],
            false,
            Some(raw),
            "* 2 FETCH (BINARY[1] ~{3}\r\n\0hi BINARY.SIZE[1] 3)\r\n",
        );
        check(
            &[binary(vec![1], Some((1, 5)))],
            false,
            Some(raw),
            "* 2 FETCH (BINARY[1]<1> {2}\r\nhi)\r\n",
        );
        let mut out = Vec::new();
        let odd = b"Subject: u\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin\r\n";
        let unknown = fetch_one(
            &target(0, &[]),
            &[binary(vec![1], None)],
            false,
            Some(odd),
            &mut out,
        );
        assert_eq!(
            unknown,
            Some(imap_mime::BinaryError::UnknownEncoding("x-uuencode".into()))
        );
        assert_eq!(out, b"* 2 FETCH (BINARY[1] NIL)\r\n");
        assert!(sets_seen(&[FetchItem::Binary {
            peek: false,
            part: vec![],
            partial: None
        }]));
        assert!(!sets_seen(&[binary(vec![], None)]));
        assert!(!sets_seen(&[FetchItem::BinarySize { part: vec![] }]));
    }
}
