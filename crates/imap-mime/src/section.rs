//! BODY[section]: finding a part by its number path and cutting out the bytes a section
//! names (RFC 3501 §6.4.5), still transfer-encoded.

use std::borrow::Cow;

use imap_proto::{Section, SectionText};

use mail_parser::decoders::base64::base64_decode;
use mail_parser::decoders::quoted_printable::quoted_printable_decode;

use crate::BinaryError;
use crate::tree::{Kind, Node, raw_field, raw_name};

/// The buffer a node's ranges index: the raw message, or a decoded body owned by the tree.
#[derive(Clone, Copy)]
enum Buf<'a, 's> {
    Raw(&'a [u8]),
    Decoded(&'s [u8]),
}

impl<'a, 's> Buf<'a, 's> {
    fn bytes(self) -> &'s [u8]
    where
        'a: 's,
    {
        match self {
            Buf::Raw(b) | Buf::Decoded(b) => b,
        }
    }

    fn cut(self, range: std::ops::Range<usize>) -> Cow<'a, [u8]> {
        match self {
            Buf::Raw(b) => Cow::Borrowed(&b[range]),
            Buf::Decoded(b) => Cow::Owned(b[range].to_vec()),
        }
    }
}

pub(crate) fn section<'a>(
    raw: &'a [u8],
    root: &Node<'a>,
    section: &Section,
) -> Option<Cow<'a, [u8]>> {
    let top = Buf::Raw(raw);
    if section.part.is_empty() {
        return match &section.text {
            None => Some(Cow::Borrowed(raw)),
            Some(SectionText::Mime) => None,
            Some(text) => message_text(root, top, text),
        };
    }
    let (node, buf) = find(root, top, &section.part)?;
    match &section.text {
        None => Some(buf.cut(node.body.clone())),
        Some(SectionText::Mime) => Some(buf.cut(node.header.clone())),
        // HEADER and TEXT after a part number need a message/rfc822 part.
        Some(text) => match &node.kind {
            Kind::Message(inner) => {
                let buf = inner.decoded.as_deref().map_or(buf, Buf::Decoded);
                message_text(&inner.root, buf, text)
            }
            _ => None,
        },
    }
}

/// BINARY[part] (RFC 3516): the part's body with its transfer encoding undone; the whole
/// message, as stored, for the empty path.
pub(crate) fn binary<'a>(
    raw: &'a [u8],
    root: &Node<'a>,
    part: &[u32],
) -> Result<Option<Cow<'a, [u8]>>, BinaryError> {
    if part.is_empty() {
        return Ok(Some(Cow::Borrowed(raw)));
    }
    let Some((node, buf)) = find(root, Buf::Raw(raw), part) else {
        return Ok(None);
    };
    let body = buf.cut(node.body.clone());
    let Some(name) = node.raw_transfer_encoding(buf.bytes()) else {
        return Ok(Some(body));
    };
    let decoded = match name.to_ascii_lowercase().as_slice() {
        b"7bit" | b"8bit" | b"binary" => return Ok(Some(body)),
        b"base64" => base64_decode(&body).ok_or(BinaryError::Undecodable("base64")),
        b"quoted-printable" => {
            quoted_printable_decode(&body).ok_or(BinaryError::Undecodable("quoted-printable"))
        }
        _ => Err(BinaryError::UnknownEncoding(
            String::from_utf8_lossy(&name).into_owned(),
        )),
    };
    decoded.map(|bytes| Some(Cow::Owned(bytes)))
}

/// Follows a part path. In a message that is not multipart, part 1 is its body; inside a
/// message/rfc822 part the numbers go on into the encapsulated message.
fn find<'a, 's>(
    root: &'s Node<'a>,
    top: Buf<'a, 's>,
    path: &[u32],
) -> Option<(&'s Node<'a>, Buf<'a, 's>)> {
    let mut buf = top;
    let mut list = parts_of_message(root);
    let mut found = None;
    for &number in path {
        let index = usize::try_from(number).ok()?.checked_sub(1)?;
        let node = list.get(index)?;
        found = Some((node, buf));
        list = match &node.kind {
            Kind::Multipart(children) => children.as_slice(),
            Kind::Message(inner) => {
                buf = inner.decoded.as_deref().map_or(buf, Buf::Decoded);
                parts_of_message(&inner.root)
            }
            Kind::Leaf | Kind::Opaque => &[],
        };
    }
    found
}

fn parts_of_message<'s, 'a>(root: &'s Node<'a>) -> &'s [Node<'a>] {
    match &root.kind {
        Kind::Multipart(children) => children,
        _ => std::slice::from_ref(root),
    }
}

/// HEADER, HEADER.FIELDS (.NOT) or TEXT of the message whose root part is `root`.
fn message_text<'a>(
    root: &Node<'a>,
    buf: Buf<'a, '_>,
    text: &SectionText,
) -> Option<Cow<'a, [u8]>> {
    match text {
        SectionText::Header => Some(buf.cut(root.header.clone())),
        SectionText::Text => Some(buf.cut(root.body.clone())),
        SectionText::HeaderFields(names) => {
            Some(Cow::Owned(fields(root, buf.bytes(), names, false)))
        }
        SectionText::HeaderFieldsNot(names) => {
            Some(Cow::Owned(fields(root, buf.bytes(), names, true)))
        }
        SectionText::Mime => None,
    }
}

/// The header lines (with their continuation lines) whose names are listed, or with `not`
/// those whose names are not, then the blank line.
fn fields(root: &Node<'_>, buf: &[u8], names: &[String], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for h in &root.headers {
        let name = raw_name(buf, h);
        let listed = names
            .iter()
            .any(|n| n.as_bytes().eq_ignore_ascii_case(name));
        if listed != not {
            out.extend_from_slice(raw_field(buf, h));
            // The last field of a message that ends inside its header may lack a line end.
            if !out.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}
