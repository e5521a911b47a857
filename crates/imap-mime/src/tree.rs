//! The MIME tree of a message: mail-parser's flat part list turned into nested nodes that
//! carry the byte ranges IMAP sections address, with the nesting depth bounded.
//!
//! mail-parser is run with Content-Transfer-Encoding ignored. Left to itself it decodes a
//! base64 message/rfc822 part and parses it recursively, and turning that result into an
//! owned value recurses once per message nested inside and copies the decoded buffer at
//! every level: a crafted 2 MB message overflows the stack (aborting the process) or asks
//! for gigabytes. With the encoding hidden every mail-parser pass is iterative and flat
//! apart from unencoded nested messages, which share the outer buffer. This module decodes
//! encoded message parts itself, one bounded level at a time (`parse_patched` explains the
//! one wrinkle), and `search` does the transfer decoding of text parts.

use std::borrow::Cow;
use std::collections::HashSet;
use std::ops::Range;
use std::sync::LazyLock;

use mail_parser::decoders::base64::base64_decode;
use mail_parser::decoders::quoted_printable::quoted_printable_decode;
use mail_parser::{
    ContentType, Header, HeaderName, HeaderValue, MessageParser, MessagePart, PartType,
};

/// How deeply multiparts and encapsulated messages may nest before the rest of a branch is
/// kept as one opaque part. Dovecot's default limit is the same.
pub(crate) const MAX_DEPTH: usize = 100;

static PARSER: LazyLock<MessageParser> = LazyLock::new(|| {
    MessageParser::new()
        .with_mime_headers()
        .header_comma_separated(HeaderName::ContentLanguage)
        .with_date_headers()
        .with_address_headers()
        .with_message_ids()
        .header_text(HeaderName::Subject)
        .header_text(HeaderName::Comments)
        // See the module comment: the raw value is read from the bytes when needed.
        .ignore_header(HeaderName::ContentTransferEncoding)
        // Unknown fields are decoded too, so that SEARCH HEADER matches encoded words.
        .default_header_text()
});

/// One MIME part. Ranges index the buffer of the message the part belongs to: the raw
/// message, or the decoded body of a transfer-encoded message/rfc822 part above it.
pub(crate) struct Node<'a> {
    /// The header block, including the blank line that ends it when there is one.
    pub header: Range<usize>,
    /// The body, still transfer-encoded; for a part inside a multipart it stops before the
    /// line break that belongs to the next boundary delimiter.
    pub body: Range<usize>,
    pub headers: Vec<Header<'a>>,
    pub kind: Kind<'a>,
}

pub(crate) enum Kind<'a> {
    Leaf,
    Multipart(Vec<Node<'a>>),
    Message(Box<Encapsulated<'a>>),
    /// A multipart or message nested deeper than `MAX_DEPTH`: its body is one opaque part.
    Opaque,
}

/// The message inside a message/rfc822 part.
pub(crate) struct Encapsulated<'a> {
    /// The decoded body when the part was base64 or quoted-printable; `None` when the
    /// encapsulated message's ranges index the same buffer as the part itself.
    pub decoded: Option<Vec<u8>>,
    pub root: Node<'a>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum TransferEncoding {
    Identity,
    Base64,
    QuotedPrintable,
}

/// How many times a buffer is re-parsed to uncover transfer-encoded message parts (see
/// `parse_patched`); past this, the rest of such a message keeps mail-parser's reading.
const MAX_PATCH_PASSES: usize = 32;

/// Parses `buf` as a whole message. Never fails: without a header mail-parser recognises,
/// the bytes up to the first blank line are taken as the header and the rest as the body.
pub(crate) fn parse_message(buf: &[u8], depth: usize) -> Node<'_> {
    let Some(parts) = parse_flat(buf) else {
        return unparsed(buf, 0..buf.len());
    };
    let encoded = encoded_message_bodies(buf, &parts);
    let mut root = if encoded.is_empty() {
        build_root(buf, parts, depth)
    } else {
        dispose(parts);
        parse_patched(buf, encoded, depth)
    };
    // mail-parser skips leading blank space; IMAP's HEADER starts at the first byte and
    // TEXT runs to the last, so that HEADER followed by TEXT is the whole message.
    root.header.start = 0;
    root.body.end = buf.len();
    root.body.start = root.body.start.min(buf.len());
    root.header.end = root.body.start;
    root
}

/// One mail-parser pass; `None` when it finds no header at all.
fn parse_flat(buf: &[u8]) -> Option<Vec<MessagePart<'_>>> {
    PARSER
        .parse(buf)
        .map(|message| message.parts)
        .filter(|parts| !parts.is_empty())
}

/// Parses a message that has base64 or quoted-printable message parts.
///
/// With transfer encodings hidden, mail-parser reads such a part's encoded body as a
/// header block, finds no blank line, and swallows everything after it, closing boundary
/// included. Blanking the first two bytes of the body (in a copy; the ranges stay those of
/// `buf`) turns that into an empty header and a body that ends at the boundary, which
/// uncovers the parts after it and perhaps another encoded message part: hence the loop,
/// one pass per such part. The encoded bodies themselves are decoded and parsed by
/// `encapsulated`, from `buf`.
fn parse_patched(buf: &[u8], mut pending: Vec<usize>, depth: usize) -> Node<'static> {
    let mut copy = buf.to_vec();
    let mut patched = HashSet::new();
    let mut pass = 1;
    loop {
        for at in pending.drain(..) {
            if at < copy.len() && patched.insert(at) {
                let end = (at + 2).min(copy.len());
                copy[at..end].copy_from_slice(&b"\r\n"[..end - at]);
            }
        }
        let Some(parts) = parse_flat(&copy) else {
            return unparsed(buf, 0..buf.len());
        };
        pending = encoded_message_bodies(&copy, &parts);
        pending.retain(|at| !patched.contains(at));
        pass += 1;
        if pending.is_empty() || pass > MAX_PATCH_PASSES {
            return build_root(buf, parts, depth).into_owned();
        }
        dispose(parts);
    }
}

/// Body offsets of the parts mail-parser takes for messages (declared message/rfc822 or
/// message/global, or untyped in a multipart/digest) that are base64 or quoted-printable.
/// Walks nested messages with a stack: they are as deep as the input makes them.
fn encoded_message_bodies(buf: &[u8], parts: &[MessagePart<'_>]) -> Vec<usize> {
    let mut found = Vec::new();
    let mut stack = vec![parts];
    while let Some(list) = stack.pop() {
        let mut digest_children = HashSet::new();
        for part in list {
            if let PartType::Multipart(ids) = &part.body
                && content_type_of(&part.headers)
                    .and_then(|ct| ct.c_subtype.as_deref())
                    .is_some_and(|s| s.eq_ignore_ascii_case("digest"))
            {
                digest_children.extend(ids.iter().map(|&id| id as usize));
            }
        }
        for (id, part) in list.iter().enumerate() {
            let is_message = match part
                .headers
                .iter()
                .find(|h| h.name == HeaderName::ContentType)
                .and_then(|h| h.value.as_content_type())
            {
                Some(_) => is_message_type(&part.headers),
                None => digest_children.contains(&id),
            };
            if is_message && transfer_encoding_of(&part.headers, buf) != TransferEncoding::Identity
            {
                found.push(part.offset_body as usize);
            }
            if let PartType::Message(inner) = &part.body {
                stack.push(&inner.parts);
            }
        }
    }
    found
}

/// The tree rooted at mail-parser's part 0; ranges are checked against `buf`.
fn build_root<'p>(buf: &[u8], parts: Vec<MessagePart<'p>>, depth: usize) -> Node<'p> {
    let mut parts: Vec<Option<MessagePart<'p>>> = parts.into_iter().map(Some).collect();
    let root = build_part(buf, &mut parts, 0, depth);
    dispose(parts.into_iter().flatten());
    root.unwrap_or_else(|| unparsed(buf, 0..buf.len()))
}

/// A message mail-parser found no header in: split at the first blank line, or all header.
fn unparsed<'p>(buf: &[u8], range: Range<usize>) -> Node<'p> {
    let bytes = &buf[range.clone()];
    let split = if bytes.starts_with(b"\r\n") {
        2
    } else if bytes.starts_with(b"\n") {
        1
    } else {
        find(bytes, b"\n\r\n")
            .map(|at| at + 3)
            .into_iter()
            .chain(find(bytes, b"\n\n").map(|at| at + 2))
            .min()
            .unwrap_or(bytes.len())
    };
    let split = range.start + split;
    Node {
        header: range.start..split,
        body: split..range.end,
        headers: Vec::new(),
        kind: Kind::Leaf,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn build_part<'p>(
    buf: &[u8],
    parts: &mut [Option<MessagePart<'p>>],
    id: usize,
    depth: usize,
) -> Option<Node<'p>> {
    // Taking the part out also guards against an id listed twice.
    let part = parts.get_mut(id)?.take()?;
    let len = buf.len();
    let header_start = (part.offset_header as usize).min(len);
    let body_start = (part.offset_body as usize).clamp(header_start, len);
    let body_end = (part.offset_end as usize).clamp(body_start, len);
    let mut node = Node {
        header: header_start..body_start,
        body: body_start..body_end,
        headers: part.headers,
        kind: Kind::Leaf,
    };
    node.kind = match part.body {
        PartType::Multipart(ids) if depth < MAX_DEPTH => {
            let mut children: Vec<Node<'p>> = ids
                .iter()
                .filter_map(|&child| build_part(buf, parts, child as usize, depth + 1))
                .collect();
            if children.is_empty() {
                // A multipart needs at least one part in BODYSTRUCTURE; Dovecot shows an
                // empty text/plain one, and so do we.
                let at = node.body.start;
                children.push(Node {
                    header: at..at,
                    body: at..at,
                    headers: Vec::new(),
                    kind: Kind::Leaf,
                });
            }
            Kind::Multipart(children)
        }
        // The children stay in `parts`, which the caller disposes of.
        PartType::Multipart(_) => Kind::Opaque,
        PartType::Message(inner) => {
            let parts = inner.parts.into_iter().map(Some).collect();
            encapsulated(buf, &node, Some(parts), depth)
        }
        _ if node.is_message_type() => encapsulated(buf, &node, None, depth),
        _ => Kind::Leaf,
    };
    Some(node)
}

/// The kind of a message/rfc822 part; `parsed` is what mail-parser made of its body, if
/// it recognised one.
fn encapsulated<'p>(
    buf: &[u8],
    node: &Node<'p>,
    parsed: Option<Vec<Option<MessagePart<'p>>>>,
    depth: usize,
) -> Kind<'p> {
    let mut parts = parsed.unwrap_or_default();
    let kind = if depth >= MAX_DEPTH {
        Kind::Opaque
    } else {
        match node.transfer_encoding(buf) {
            TransferEncoding::Identity => {
                let root = build_part(buf, &mut parts, 0, depth + 1);
                let mut root = root.unwrap_or_else(|| unparsed(buf, node.body.clone()));
                root.header.start = node.body.start;
                root.body.end = node.body.end;
                root.body.start = root.body.start.clamp(node.body.start, node.body.end);
                root.header.end = root.body.start;
                Kind::Message(Box::new(Encapsulated {
                    decoded: None,
                    root,
                }))
            }
            encoding => {
                let decoded = decode(encoding, &buf[node.body.clone()]).into_owned();
                let root = parse_message(&decoded, depth + 1).into_owned();
                Kind::Message(Box::new(Encapsulated {
                    decoded: Some(decoded),
                    root,
                }))
            }
        }
    };
    dispose(parts.into_iter().flatten());
    kind
}

/// Undoes a transfer encoding; bytes that do not decode are kept as they are.
pub(crate) fn decode(encoding: TransferEncoding, bytes: &[u8]) -> Cow<'_, [u8]> {
    let decoded = match encoding {
        TransferEncoding::Identity => None,
        TransferEncoding::Base64 => base64_decode(bytes),
        TransferEncoding::QuotedPrintable => quoted_printable_decode(bytes),
    };
    decoded.map_or(Cow::Borrowed(bytes), Cow::Owned)
}

/// Drops mail-parser parts without recursing: its nested messages are as deep as the input
/// makes them, and the derived `Drop` would recurse once per level.
fn dispose<'p>(parts: impl IntoIterator<Item = MessagePart<'p>>) {
    let mut stack: Vec<Vec<MessagePart<'p>>> = vec![parts.into_iter().collect()];
    while let Some(list) = stack.pop() {
        for part in list {
            if let PartType::Message(inner) = part.body {
                stack.push(inner.parts);
            }
        }
    }
}

impl<'a> Node<'a> {
    /// The first header field with this name.
    pub fn field(&self, name: HeaderName<'_>) -> Option<&Header<'a>> {
        self.headers.iter().find(|h| h.name == name)
    }

    /// Content-Type when it names both a type and a subtype.
    pub fn content_type(&self) -> Option<&ContentType<'a>> {
        content_type_of(&self.headers)
    }

    fn is_message_type(&self) -> bool {
        is_message_type(&self.headers)
    }

    /// The raw Content-Transfer-Encoding value, unfolded and trimmed.
    pub fn raw_transfer_encoding<'b>(&self, buf: &'b [u8]) -> Option<Cow<'b, [u8]>> {
        raw_transfer_encoding_of(&self.headers, buf)
    }

    pub fn transfer_encoding(&self, buf: &[u8]) -> TransferEncoding {
        transfer_encoding_of(&self.headers, buf)
    }

    /// A copy that borrows nothing, for nodes parsed from a decoded buffer this crate owns.
    fn into_owned(self) -> Node<'static> {
        Node {
            header: self.header,
            body: self.body,
            headers: self.headers.into_iter().map(Header::into_owned).collect(),
            kind: match self.kind {
                Kind::Leaf => Kind::Leaf,
                Kind::Opaque => Kind::Opaque,
                Kind::Multipart(children) => {
                    Kind::Multipart(children.into_iter().map(Node::into_owned).collect())
                }
                Kind::Message(inner) => {
                    let Encapsulated { decoded, root } = *inner;
                    Kind::Message(Box::new(Encapsulated {
                        decoded,
                        root: root.into_owned(),
                    }))
                }
            },
        }
    }
}

fn content_type_of<'h, 'a>(headers: &'h [Header<'a>]) -> Option<&'h ContentType<'a>> {
    match &headers
        .iter()
        .find(|h| h.name == HeaderName::ContentType)?
        .value
    {
        HeaderValue::ContentType(ct)
            if !ct.c_type.is_empty() && ct.c_subtype.as_deref().is_some_and(|s| !s.is_empty()) =>
        {
            Some(ct)
        }
        _ => None,
    }
}

/// Declared message/rfc822 or message/global, the types mail-parser parses as messages.
fn is_message_type(headers: &[Header<'_>]) -> bool {
    content_type_of(headers).is_some_and(|ct| {
        ct.c_type.eq_ignore_ascii_case("message")
            && ct.c_subtype.as_deref().is_some_and(|s| {
                s.eq_ignore_ascii_case("rfc822") || s.eq_ignore_ascii_case("global")
            })
    })
}

fn raw_transfer_encoding_of<'b>(headers: &[Header<'_>], buf: &'b [u8]) -> Option<Cow<'b, [u8]>> {
    let h = headers
        .iter()
        .find(|h| h.name == HeaderName::ContentTransferEncoding)?;
    Some(unfold(raw_value(buf, h)))
}

fn transfer_encoding_of(headers: &[Header<'_>], buf: &[u8]) -> TransferEncoding {
    match raw_transfer_encoding_of(headers, buf) {
        Some(v) if v.eq_ignore_ascii_case(b"base64") => TransferEncoding::Base64,
        Some(v) if v.eq_ignore_ascii_case(b"quoted-printable") => TransferEncoding::QuotedPrintable,
        _ => TransferEncoding::Identity,
    }
}

/// A header field's value as it is in the message, folding and line end included.
pub(crate) fn raw_value<'b>(buf: &'b [u8], h: &Header<'_>) -> &'b [u8] {
    slice(buf, h.offset_start as usize, h.offset_end as usize)
}

/// The whole field: name, colon, value and its line end.
pub(crate) fn raw_field<'b>(buf: &'b [u8], h: &Header<'_>) -> &'b [u8] {
    slice(buf, h.offset_field as usize, h.offset_end as usize)
}

/// The field name as written, without the colon and surrounding blanks.
pub(crate) fn raw_name<'b>(buf: &'b [u8], h: &Header<'_>) -> &'b [u8] {
    let name = slice(buf, h.offset_field as usize, h.offset_start as usize);
    let name = name.strip_suffix(b":").unwrap_or(name);
    name.trim_ascii()
}

fn slice(buf: &[u8], start: usize, end: usize) -> &[u8] {
    let end = end.min(buf.len());
    &buf[start.min(end)..end]
}

/// Removes line breaks (folding keeps the blank that follows them) and trims blanks.
pub(crate) fn unfold(value: &[u8]) -> Cow<'_, [u8]> {
    let value = value.trim_ascii();
    if value.iter().any(|&b| b == b'\r' || b == b'\n') {
        Cow::Owned(
            value
                .iter()
                .copied()
                .filter(|&b| b != b'\r' && b != b'\n')
                .collect(),
        )
    } else {
        Cow::Borrowed(value)
    }
}
