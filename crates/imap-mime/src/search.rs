//! SEARCH matching: case-insensitive substrings of decoded header values and decoded body
//! text (RFC 3501 §6.4.4). Text is lower-cased with Unicode rules, once per message.

use std::borrow::Cow;

use mail_parser::decoders::html::html_to_text;
use mail_parser::{Address, Header, HeaderName, HeaderValue};

use crate::display::part_text;
use crate::structure::decoded_text;
use crate::tree::{Kind, Node, decode, raw_name, raw_value, unfold};

/// The lower-cased text a message is searched in, built on the first search.
pub(crate) struct Haystack {
    /// One entry per message header block: the top message's and each encapsulated one's.
    headers: Vec<String>,
    /// One entry per text part, transfer- and charset-decoded; HTML reduced to its text.
    bodies: Vec<String>,
}

impl Haystack {
    pub fn build(root: &Node<'_>, raw: &[u8]) -> Haystack {
        let mut haystack = Haystack {
            headers: Vec::new(),
            bodies: Vec::new(),
        };
        haystack.add_message(root, raw);
        haystack
    }

    fn add_message(&mut self, root: &Node<'_>, buf: &[u8]) {
        let mut text = String::new();
        for h in &root.headers {
            text.push_str(&String::from_utf8_lossy(raw_name(buf, h)));
            text.push_str(": ");
            text.push_str(&searchable(h, buf));
            text.push('\n');
        }
        self.headers.push(text.to_lowercase());
        self.add_body(root, buf);
    }

    fn add_body(&mut self, node: &Node<'_>, buf: &[u8]) {
        match &node.kind {
            Kind::Multipart(children) => {
                children.iter().for_each(|child| self.add_body(child, buf))
            }
            Kind::Message(inner) => {
                self.add_message(&inner.root, inner.decoded.as_deref().unwrap_or(buf))
            }
            Kind::Leaf => {
                if let Some(text) = body_text(node, buf) {
                    self.bodies.push(text.to_lowercase());
                }
            }
            Kind::Opaque => {}
        }
    }

    /// The header blocks and the bodies, each joined by newlines.
    pub fn joined(&self) -> (String, String) {
        (self.headers.join("\n"), self.bodies.join("\n"))
    }

    pub fn body_contains(&self, needle: &str) -> bool {
        let needle = needle.to_lowercase();
        self.bodies.iter().any(|b| b.contains(&needle))
    }

    pub fn text_contains(&self, needle: &str) -> bool {
        let needle = needle.to_lowercase();
        self.headers
            .iter()
            .chain(&self.bodies)
            .any(|t| t.contains(&needle))
    }
}

/// Whether a header field of the top message named `field` contains `needle`.
pub(crate) fn header_contains(root: &Node<'_>, raw: &[u8], field: &str, needle: &str) -> bool {
    let needle = needle.to_lowercase();
    root.headers
        .iter()
        .filter(|h| raw_name(raw, h).eq_ignore_ascii_case(field.as_bytes()))
        .any(|h| needle.is_empty() || searchable(h, raw).to_lowercase().contains(&needle))
}

/// The first header field of the top message named `field`, decoded for display: encoded
/// words decoded, addresses as `name <address>`, message ids and dates as written.
pub(crate) fn header_text(root: &Node<'_>, raw: &[u8], field: &str) -> Option<String> {
    root.headers
        .iter()
        .find(|h| raw_name(raw, h).eq_ignore_ascii_case(field.as_bytes()))
        .map(|h| searchable(h, raw).trim().to_string())
}

/// The decoded text of every text part of a message, attached messages included (their
/// headers too), in document order, each part on its own lines, as written (not
/// lower-cased): what a full-text index takes in.
pub(crate) fn plain_text(root: &Node<'_>, raw: &[u8]) -> String {
    fn walk(node: &Node<'_>, buf: &[u8], out: &mut String) {
        match &node.kind {
            Kind::Multipart(children) => children.iter().for_each(|c| walk(c, buf, out)),
            Kind::Message(inner) => {
                let buf = inner.decoded.as_deref().unwrap_or(buf);
                for h in &inner.root.headers {
                    out.push_str(&searchable(h, buf));
                    out.push('\n');
                }
                walk(&inner.root, buf, out);
            }
            Kind::Leaf => {
                if let Some(text) = body_text(node, buf) {
                    out.push_str(&text);
                    out.push('\n');
                }
            }
            Kind::Opaque => {}
        }
    }
    let mut out = String::new();
    walk(root, raw, &mut out);
    out
}

/// The text a header field is searched in. Decoded where mail-parser decodes (so encoded
/// words match as text, and "utf" does not match every encoded subject); as written where
/// its value drops text a client may search for: the angle brackets of message ids, the
/// parameters of a Content-Type, a date.
fn searchable<'h>(h: &'h Header<'_>, buf: &'h [u8]) -> Cow<'h, str> {
    let ids = [
        HeaderName::MessageId,
        HeaderName::InReplyTo,
        HeaderName::References,
        HeaderName::ContentId,
        HeaderName::ResentMessageId,
        HeaderName::ReturnPath,
    ];
    match &h.value {
        HeaderValue::Text(_) | HeaderValue::TextList(_) | HeaderValue::Address(_)
            if !ids.contains(&h.name) =>
        {
            rendered(h)
        }
        _ => match unfold(raw_value(buf, h)) {
            Cow::Borrowed(raw) => String::from_utf8_lossy(raw),
            Cow::Owned(raw) => Cow::Owned(String::from_utf8_lossy(&raw).into_owned()),
        },
    }
}

/// A decoded header value as text; addresses as `name <address>` joined by commas.
fn rendered<'h>(h: &'h Header<'_>) -> Cow<'h, str> {
    match &h.value {
        HeaderValue::Address(address) => {
            let mut text = String::new();
            let mut push = |name: Option<&str>, address: Option<&str>| {
                if !text.is_empty() {
                    text.push_str(", ");
                }
                if let Some(name) = name {
                    text.push_str(name);
                    text.push(' ');
                }
                if let Some(address) = address {
                    text.push('<');
                    text.push_str(address);
                    text.push('>');
                }
            };
            match address {
                Address::List(list) => list
                    .iter()
                    .for_each(|a| push(a.name.as_deref(), a.address.as_deref())),
                Address::Group(groups) => {
                    for group in groups {
                        if let Some(name) = group.name.as_deref() {
                            push(Some(name), None);
                        }
                        group
                            .addresses
                            .iter()
                            .for_each(|a| push(a.name.as_deref(), a.address.as_deref()));
                    }
                }
            }
            Cow::Owned(text)
        }
        value => decoded_text(value),
    }
}

/// The decoded text of a text/* part (or one with no usable Content-Type, which is
/// text/plain); `None` for other types.
fn body_text(node: &Node<'_>, buf: &[u8]) -> Option<String> {
    let ct = node.content_type();
    let (is_text, is_html) = match ct {
        Some(ct) if ct.c_type.eq_ignore_ascii_case("text") => (
            true,
            ct.c_subtype
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("html")),
        ),
        Some(ct) => (ct.c_type.eq_ignore_ascii_case("multipart"), false),
        None => (true, false),
    };
    if !is_text {
        return None;
    }
    let bytes = decode(node.transfer_encoding(buf), &buf[node.body.clone()]);
    let text = part_text(node, &bytes);
    Some(if is_html { html_to_text(&text) } else { text })
}
