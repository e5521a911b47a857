//! ENVELOPE and BODY/BODYSTRUCTURE as RFC 3501 §7.4.2 lays them out.
//!
//! Media types, subtypes, parameter names and encodings are written upper-case (mail-parser
//! lower-cases what it reads; IMAP compares them case-insensitively). Sizes and line counts
//! are of the bytes as stored, so an LF-only message reports LF-only sizes.

use std::borrow::Cow;

use base64::Engine;

use imap_proto::encode::{push_nstring, push_string};
use mail_parser::{Addr, Address, Attribute, HeaderName, HeaderValue};

use crate::tree::{Encapsulated, Kind, Node, raw_value, unfold};

/// Writes `(date subject from sender reply-to to cc bcc in-reply-to message-id)` for the
/// message whose root part is `root`.
///
/// The subject and display names go out as written, RFC 2047 encoded words and all, as
/// Dovecot and Cyrus send them: an IMAP4rev1 string has no charset, so decoding is the
/// client's job (sending UTF-8 here would need UTF8=ACCEPT).
pub(crate) fn envelope(root: &Node<'_>, buf: &[u8], out: &mut Vec<u8>) {
    out.push(b'(');
    push_nstring(out, raw_field_value(root, buf, HeaderName::Date).as_deref());
    out.push(b' ');
    match root.field(HeaderName::Subject) {
        Some(h) => push_string(out, unfold(raw_value(buf, h)).trim_ascii()),
        None => out.extend_from_slice(b"NIL"),
    }
    let from = addresses(root, buf, HeaderName::From);
    for list in [
        from.clone(),
        addresses(root, buf, HeaderName::Sender).or_else(|| from.clone()),
        addresses(root, buf, HeaderName::ReplyTo).or(from),
        addresses(root, buf, HeaderName::To),
        addresses(root, buf, HeaderName::Cc),
        addresses(root, buf, HeaderName::Bcc),
    ] {
        out.push(b' ');
        match list {
            Some(list) => out.extend_from_slice(&list),
            None => out.extend_from_slice(b"NIL"),
        }
    }
    out.push(b' ');
    push_nstring(
        out,
        raw_field_value(root, buf, HeaderName::InReplyTo).as_deref(),
    );
    out.push(b' ');
    push_nstring(
        out,
        raw_field_value(root, buf, HeaderName::MessageId).as_deref(),
    );
    out.push(b')');
}

/// The raw value, unfolded and trimmed; `None` when absent or blank.
fn raw_field_value<'b>(
    node: &Node<'_>,
    buf: &'b [u8],
    name: HeaderName<'_>,
) -> Option<Cow<'b, [u8]>> {
    node.field(name)
        .map(|h| unfold(raw_value(buf, h)))
        .filter(|v| !v.is_empty())
}

/// A decoded header value as one line of text.
pub(crate) fn decoded_text<'v>(value: &'v HeaderValue<'_>) -> Cow<'v, str> {
    match value {
        HeaderValue::Text(s) => Cow::Borrowed(s.as_ref()),
        HeaderValue::TextList(list) => Cow::Owned(list.join(" ")),
        _ => Cow::Borrowed(""),
    }
}

/// An address list, `((name adl mailbox host) ...)`, or `None` when the field is absent or
/// holds no address. A group is written as RFC 3501 says: `(NIL NIL "group" NIL)`, its
/// members, then `(NIL NIL NIL NIL)`.
fn addresses(node: &Node<'_>, buf: &[u8], name: HeaderName<'_>) -> Option<Vec<u8>> {
    let header = node.field(name)?;
    let HeaderValue::Address(_) = &header.value else {
        return None;
    };
    // mail-parser folds comments into names and misreads source routes, so the value as
    // written is cleaned of both and parsed again.
    let (clean, routes) = without_comments_and_routes(&unfold(raw_value(buf, header)));
    let mut field = b"To: ".to_vec();
    field.extend_from_slice(&clean);
    field.extend_from_slice(b"\r\n\r\n");
    let reparsed = mail_parser::MessageParser::new().parse_headers(&field[..])?;
    let address = reparsed.to()?;
    let push_address =
        |out: &mut Vec<u8>, addr: &Addr<'_>| push_address(out, addr, &clean, &routes);
    let mut out = vec![b'('];
    match address {
        Address::List(list) => list.iter().for_each(|addr| push_address(&mut out, addr)),
        Address::Group(groups) => {
            for group in groups {
                match group.name.as_deref().filter(|n| !n.is_empty()) {
                    Some(group_name) => {
                        out.extend_from_slice(b"(NIL NIL ");
                        push_string(&mut out, group_name.as_bytes());
                        out.extend_from_slice(b" NIL)");
                        group
                            .addresses
                            .iter()
                            .for_each(|addr| push_address(&mut out, addr));
                        out.extend_from_slice(b"(NIL NIL NIL NIL)");
                    }
                    None => group
                        .addresses
                        .iter()
                        .for_each(|addr| push_address(&mut out, addr)),
                }
            }
        }
    }
    if out.len() == 1 {
        return None;
    }
    out.push(b')');
    Some(out)
}

/// One address. A NIL host would read as a group marker, so a missing mailbox or domain is
/// written as Dovecot does, "MISSING_MAILBOX" / "MISSING_DOMAIN". `raw` is the field's
/// value as written, where the display name is looked up in its encoded form.
fn push_address(out: &mut Vec<u8>, addr: &Addr<'_>, raw: &[u8], routes: &[(String, String)]) {
    let name = addr
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    let address = addr
        .address
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty());
    let (name, mailbox, host) = match (name, address) {
        (None, None) => return,
        // "To: nobody" parses as a name alone; it is a local part without a domain.
        (Some(name), None) => (None, name, ""),
        // mail-parser reads a quoted local part ("john doe"@f.test) as a display name
        // followed by "@f.test": put it back where it belongs.
        (Some(name), Some(address)) if address.starts_with('@') => (None, name, &address[1..]),
        (name, Some(address)) => match address.rsplit_once('@') {
            Some((mailbox, host)) => (name, mailbox, host),
            None => (name, address, ""),
        },
    };
    let mailbox = if mailbox.is_empty() {
        "MISSING_MAILBOX"
    } else {
        mailbox
    };
    let host = if host.is_empty() {
        "MISSING_DOMAIN"
    } else {
        host
    };
    let written = name.and_then(|name| {
        if name.is_ascii() {
            return None;
        }
        let address = addr.address.as_deref()?.trim();
        raw_display_name(raw, address)
    });
    out.push(b'(');
    match (&written, name) {
        (Some(written), _) => push_string(out, written),
        (None, Some(name)) if !name.is_ascii() => {
            // Not found as written (an unusual layout): encode it again, losslessly.
            let encoded = format!(
                "=?UTF-8?B?{}?=",
                base64::engine::general_purpose::STANDARD.encode(name.as_bytes())
            );
            push_string(out, encoded.as_bytes());
        }
        (None, name) => push_nstring(out, name.map(str::as_bytes)),
    }
    out.push(b' ');
    let full = format!("{mailbox}@{host}").to_ascii_lowercase();
    let route = routes
        .iter()
        .find(|(a, _)| *a == full)
        .map(|(_, r)| r.as_bytes());
    push_nstring(out, route);
    out.push(b' ');
    push_string(out, mailbox.as_bytes());
    out.push(b' ');
    push_string(out, host.as_bytes());
    out.push(b')');
}

/// An address field's value without RFC 5322 comments (which are not part of any name or
/// address, §3.2.2) and without obsolete source routes (`<@relay:user@host>`), which come
/// back separately as (address, route) pairs for the ENVELOPE's adl.
fn without_comments_and_routes(raw: &[u8]) -> (Vec<u8>, Vec<(String, String)>) {
    let mut out = Vec::with_capacity(raw.len());
    let mut routes = Vec::new();
    let mut depth = 0usize;
    let mut quoted = false;
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        match b {
            b'\\' if quoted || depth > 0 => {
                if depth == 0 {
                    out.extend_from_slice(&raw[i..(i + 2).min(raw.len())]);
                }
                i += 2;
                continue;
            }
            b'"' if depth == 0 => {
                quoted = !quoted;
                out.push(b);
            }
            b'(' if !quoted => depth += 1,
            b')' if !quoted && depth > 0 => depth -= 1,
            _ if depth > 0 => {}
            b'<' if !quoted => {
                out.push(b);
                let rest = &raw[i + 1..];
                let start = rest.iter().take_while(|c| c.is_ascii_whitespace()).count();
                if rest.get(start) == Some(&b'@')
                    && let Some(colon) = rest.iter().position(|&c| c == b':' || c == b'>')
                    && rest[colon] == b':'
                {
                    let route = String::from_utf8_lossy(rest[start..colon].trim_ascii());
                    let end = rest[colon..]
                        .iter()
                        .position(|&c| c == b'>')
                        .map_or(rest.len(), |e| colon + e);
                    let address = String::from_utf8_lossy(rest[colon + 1..end].trim_ascii());
                    routes.push((address.to_ascii_lowercase(), route.into_owned()));
                    i += 1 + colon + 1;
                    continue;
                }
            }
            _ => out.push(b),
        }
        i += 1;
    }
    (out, routes)
}

/// The display name before `<address>` in a field value as written: from the previous
/// comma, colon or start (outside quotes) to the angle bracket, without surrounding quotes.
fn raw_display_name(raw: &[u8], address: &str) -> Option<Vec<u8>> {
    let needle = format!("<{address}>").to_ascii_lowercase();
    let lower = raw.to_ascii_lowercase();
    let at = lower
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())?;
    let before = &raw[..at];
    let mut start = 0;
    let mut quoted = false;
    for (i, &b) in before.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b',' | b':' if !quoted => start = i + 1,
            _ => {}
        }
    }
    let name = before[start..].trim_ascii();
    let name = name
        .strip_prefix(b"\"")
        .and_then(|n| n.strip_suffix(b"\""))
        .unwrap_or(name);
    (!name.is_empty()).then(|| name.to_vec())
}

/// How a part is described.
enum Media<'n> {
    Multipart { subtype: String },
    Rfc822(&'n Encapsulated<'n>),
    Basic { ty: String, subtype: String },
}

impl Media<'_> {
    fn is_text(&self) -> bool {
        matches!(self, Media::Basic { ty, .. } if ty == "TEXT")
    }
}

fn media<'n>(node: &'n Node<'n>) -> Media<'n> {
    let ct = node.content_type();
    let declared = |ty: &str, sub: &str| {
        ct.is_some_and(|ct| {
            ct.c_type.eq_ignore_ascii_case(ty)
                && ct
                    .c_subtype
                    .as_deref()
                    .is_some_and(|s| s.eq_ignore_ascii_case(sub))
        })
    };
    match &node.kind {
        Kind::Multipart(_) => Media::Multipart {
            subtype: ct
                .and_then(|ct| ct.c_subtype.as_deref())
                .unwrap_or("mixed")
                .to_ascii_uppercase(),
        },
        // No Content-Type here means a multipart/digest part, whose default is rfc822.
        Kind::Message(inner) if ct.is_none() || declared("message", "rfc822") => {
            Media::Rfc822(inner)
        }
        Kind::Opaque => Media::Basic {
            ty: "APPLICATION".into(),
            subtype: "OCTET-STREAM".into(),
        },
        // message/global is described as a basic part: RFC 3501 clients expect an envelope
        // only after "MESSAGE" "RFC822".
        _ => match ct {
            Some(ct)
                if !ct.c_type.eq_ignore_ascii_case("multipart")
                    && !declared("message", "rfc822") =>
            {
                Media::Basic {
                    ty: ct.c_type.to_ascii_uppercase(),
                    subtype: ct
                        .c_subtype
                        .as_deref()
                        .unwrap_or_default()
                        .to_ascii_uppercase(),
                }
            }
            // Missing, malformed, or a multipart whose boundary never appears: RFC 2045's
            // default, which is also how mail-parser read the body.
            _ => Media::Basic {
                ty: "TEXT".into(),
                subtype: "PLAIN".into(),
            },
        },
    }
}

/// Writes the body structure of the message whose root part is `root`.
pub(crate) fn body_structure(root: &Node<'_>, raw: &[u8], extensible: bool, out: &mut Vec<u8>) {
    body(root, raw, &LineIndex::new(raw), extensible, out);
}

/// Where a buffer's line feeds are, so that the line count of any range costs two binary
/// searches. Counting each range directly would rescan an encapsulated message once per
/// level it is nested in.
struct LineIndex(Vec<u32>);

impl LineIndex {
    fn new(buf: &[u8]) -> LineIndex {
        // Buffers are under 4 GiB: mail-parser's offsets are u32 too.
        LineIndex(
            buf.iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i as u32)
                .collect(),
        )
    }

    /// Lines as Dovecot counts them: line feeds, so a last line without one is not counted.
    fn count(&self, range: std::ops::Range<usize>) -> usize {
        let before = |at: usize| self.0.partition_point(|&lf| (lf as usize) < at);
        before(range.end) - before(range.start)
    }
}

/// Writes one body (with its parentheses); `extensible` adds the extension data.
fn body(node: &Node<'_>, buf: &[u8], lines: &LineIndex, extensible: bool, out: &mut Vec<u8>) {
    out.push(b'(');
    match media(node) {
        Media::Multipart { subtype } => {
            if let Kind::Multipart(children) = &node.kind {
                for child in children {
                    body(child, buf, lines, extensible, out);
                }
            }
            out.push(b' ');
            push_string(out, subtype.as_bytes());
            if extensible {
                out.push(b' ');
                push_params(out, content_params(node), false);
                push_disposition_language_location(node, buf, out);
            }
        }
        media => {
            let (ty, subtype): (&str, &str) = match &media {
                Media::Basic { ty, subtype } => (ty, subtype),
                _ => ("MESSAGE", "RFC822"),
            };
            push_string(out, ty.as_bytes());
            out.push(b' ');
            push_string(out, subtype.as_bytes());
            out.push(b' ');
            // Only a part described as declared carries its parameters: a multipart shown
            // as text/plain would otherwise show a boundary.
            let own_params = match &media {
                Media::Basic { ty, .. } => node
                    .content_type()
                    .is_some_and(|ct| ct.c_type.eq_ignore_ascii_case(ty)),
                _ => true,
            };
            let params = if own_params {
                content_params(node)
            } else {
                &[]
            };
            push_params(out, params, media.is_text());
            out.push(b' ');
            push_nstring(
                out,
                raw_field_value(node, buf, HeaderName::ContentId).as_deref(),
            );
            out.push(b' ');
            let description = node
                .field(HeaderName::ContentDescription)
                .map(|h| decoded_text(&h.value));
            push_nstring(
                out,
                description
                    .as_deref()
                    .filter(|d| !d.is_empty())
                    .map(str::as_bytes),
            );
            out.push(b' ');
            push_string(out, &encoding(node, buf));
            out.extend_from_slice(format!(" {}", node.body.len()).as_bytes());
            if let Media::Rfc822(inner) = &media {
                out.push(b' ');
                match inner.decoded.as_deref() {
                    Some(decoded) => {
                        envelope(&inner.root, decoded, out);
                        out.push(b' ');
                        body(
                            &inner.root,
                            decoded,
                            &LineIndex::new(decoded),
                            extensible,
                            out,
                        );
                    }
                    None => {
                        envelope(&inner.root, buf, out);
                        out.push(b' ');
                        body(&inner.root, buf, lines, extensible, out);
                    }
                }
            }
            if media.is_text() || matches!(media, Media::Rfc822(_)) {
                out.extend_from_slice(format!(" {}", lines.count(node.body.clone())).as_bytes());
            }
            if extensible {
                out.push(b' ');
                push_nstring(
                    out,
                    raw_field_value(node, buf, HeaderName::ContentMd5).as_deref(),
                );
                push_disposition_language_location(node, buf, out);
            }
        }
    }
    out.push(b')');
}

fn content_params<'n>(node: &'n Node<'n>) -> &'n [Attribute<'n>] {
    node.content_type()
        .and_then(|ct| ct.attributes.as_deref())
        .unwrap_or_default()
}

/// `("NAME" "value" ...)` or NIL; text parts without a charset get RFC 2045's US-ASCII.
/// mail-parser decodes RFC 2231 values; a value that is not ASCII goes out encoded again
/// (`"NAME*" "UTF-8''%E6%97%A5..."`), as Dovecot sends it, because an IMAP4rev1 string has
/// no charset.
fn push_params(out: &mut Vec<u8>, params: &[Attribute<'_>], text: bool) {
    let default_charset = text
        && !params
            .iter()
            .any(|a| a.name.eq_ignore_ascii_case("charset"));
    if params.is_empty() && !default_charset {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for (i, attr) in params.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        let name = attr.name.to_ascii_uppercase();
        if attr.value.is_ascii() {
            push_string(out, name.as_bytes());
            out.push(b' ');
            push_string(out, attr.value.as_bytes());
        } else {
            push_string(out, format!("{name}*").as_bytes());
            out.push(b' ');
            push_string(out, rfc2231_encode(&attr.value).as_bytes());
        }
    }
    if default_charset {
        if !params.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(b"\"CHARSET\" \"US-ASCII\"");
    }
    out.push(b')');
}

/// `UTF-8''` and the value percent-encoded where RFC 2231's attribute-char does not allow it.
fn rfc2231_encode(value: &str) -> String {
    let mut out = String::from("UTF-8''");
    for b in value.bytes() {
        let plain = b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b);
        if plain {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The encoding token upper-cased, or 7BIT when absent or not a token.
fn encoding(node: &Node<'_>, buf: &[u8]) -> Vec<u8> {
    match node.raw_transfer_encoding(buf) {
        Some(v)
            if !v.is_empty()
                && v.iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) =>
        {
            v.to_ascii_uppercase()
        }
        _ => b"7BIT".to_vec(),
    }
}

/// ` disposition language location`, each NIL when absent.
fn push_disposition_language_location(node: &Node<'_>, buf: &[u8], out: &mut Vec<u8>) {
    out.push(b' ');
    match node.field(HeaderName::ContentDisposition).map(|h| &h.value) {
        Some(HeaderValue::ContentType(dsp)) if !dsp.c_type.is_empty() => {
            out.push(b'(');
            push_string(out, dsp.c_type.to_ascii_uppercase().as_bytes());
            out.push(b' ');
            push_params(out, dsp.attributes.as_deref().unwrap_or_default(), false);
            out.push(b')');
        }
        _ => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    let languages: Vec<&str> = match node.field(HeaderName::ContentLanguage).map(|h| &h.value) {
        Some(HeaderValue::TextList(list)) => list.iter().map(|l| l.trim()).collect(),
        Some(HeaderValue::Text(l)) => vec![l.trim()],
        _ => Vec::new(),
    };
    let languages: Vec<&str> = languages.into_iter().filter(|l| !l.is_empty()).collect();
    if languages.is_empty() {
        out.extend_from_slice(b"NIL");
    } else {
        out.push(b'(');
        for (i, language) in languages.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            push_string(out, language.as_bytes());
        }
        out.push(b')');
    }
    out.push(b' ');
    push_nstring(
        out,
        raw_field_value(node, buf, HeaderName::ContentLocation).as_deref(),
    );
}
