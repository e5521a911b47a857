//! A message as a mail reader shows it: the text part, the HTML part and the attachments,
//! transfer- and charset-decoded, walked over the same bounded tree IMAP uses (so a crafted
//! message is as harmless here as it is to FETCH).
//!
//! What is shown inline and what is an attachment follows what mail readers do: the first
//! text/plain and the first text/html part not marked `Content-Disposition: attachment` are
//! the message's text and HTML; every other leaf part, every attached message and every part
//! nested too deeply to open is an attachment.

use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::{HeaderName, HeaderValue};

use crate::tree::{Kind, Node, decode};

/// What a reader shows of one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Displayed {
    /// The first inline text/plain part (a message without a Content-Type is one), decoded.
    pub text: Option<String>,
    /// The first inline text/html part, decoded to UTF-8 and otherwise as written: whoever
    /// shows it must keep its scripts and remote content from running or loading.
    pub html: Option<String>,
    pub attachments: Vec<Attachment>,
}

/// One attachment, in the order the message holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The file name the sender gave (Content-Disposition's `filename`, else
    /// Content-Type's `name`), decoded, as written: not safe as a path or in a header.
    pub name: Option<String>,
    /// `type/subtype`, lower case; `application/octet-stream` when the part names none.
    pub content_type: String,
    /// The body with its transfer encoding undone.
    pub bytes: Vec<u8>,
}

pub(crate) fn displayed(root: &Node<'_>, raw: &[u8]) -> Displayed {
    let mut shown = Displayed::default();
    walk(root, raw, &mut shown);
    shown
}

/// Depth is bounded by the tree (`tree::MAX_DEPTH`), so the recursion is too.
fn walk(node: &Node<'_>, buf: &[u8], shown: &mut Displayed) {
    match &node.kind {
        Kind::Multipart(children) => children.iter().for_each(|c| walk(c, buf, shown)),
        Kind::Message(inner) => {
            let bytes = match &inner.decoded {
                Some(decoded) => decoded.clone(),
                None => buf[node.body.clone()].to_vec(),
            };
            shown
                .attachments
                .push(attachment(node, "message/rfc822", bytes));
        }
        Kind::Opaque | Kind::Leaf => {
            let ct = node.content_type();
            let kind = match ct {
                Some(ct) => format!(
                    "{}/{}",
                    ct.c_type.to_ascii_lowercase(),
                    ct.c_subtype.as_deref().unwrap_or("").to_ascii_lowercase()
                ),
                None => "text/plain".to_string(),
            };
            let inline = !is_attachment(node) && matches!(node.kind, Kind::Leaf);
            let bytes = decode(node.transfer_encoding(buf), &buf[node.body.clone()]);
            match kind.as_str() {
                "text/plain" if inline && shown.text.is_none() => {
                    shown.text = Some(part_text(node, &bytes));
                }
                "text/html" if inline && shown.html.is_none() => {
                    shown.html = Some(part_text(node, &bytes));
                }
                _ => {
                    let kind = if ct.is_none() && !matches!(node.kind, Kind::Leaf) {
                        "application/octet-stream"
                    } else {
                        &kind
                    };
                    shown
                        .attachments
                        .push(attachment(node, kind, bytes.into_owned()));
                }
            }
        }
    }
}

fn attachment(node: &Node<'_>, content_type: &str, bytes: Vec<u8>) -> Attachment {
    Attachment {
        name: file_name(node),
        content_type: content_type.to_string(),
        bytes,
    }
}

fn is_attachment(node: &Node<'_>) -> bool {
    matches!(
        node.field(HeaderName::ContentDisposition).map(|h| &h.value),
        Some(HeaderValue::ContentType(d)) if d.c_type.eq_ignore_ascii_case("attachment")
    )
}

fn file_name(node: &Node<'_>) -> Option<String> {
    let from_disposition = match node.field(HeaderName::ContentDisposition).map(|h| &h.value) {
        Some(HeaderValue::ContentType(d)) => d.attribute("filename"),
        _ => None,
    };
    from_disposition
        .or_else(|| node.content_type().and_then(|ct| ct.attribute("name")))
        .map(str::to_string)
        .filter(|n| !n.trim().is_empty())
}

/// The text of a text part in its declared charset (UTF-8 when it names none or one we do
/// not know; bytes that are not UTF-8 become U+FFFD).
pub(crate) fn part_text(node: &Node<'_>, bytes: &[u8]) -> String {
    let decoder = node
        .content_type()
        .and_then(|ct| ct.attribute("charset"))
        .and_then(|c| charset_decoder(c.as_bytes()));
    match decoder {
        Some(decoder) => decoder(bytes),
        None => String::from_utf8_lossy(bytes).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use crate::Message;

    fn shown(raw: &str) -> super::Displayed {
        Message::parse(raw.as_bytes()).displayed()
    }

    #[test]
    fn a_plain_message_is_its_text() {
        let d = shown("Subject: hi\r\n\r\nHello\r\n");
        assert_eq!(d.text.as_deref(), Some("Hello\r\n"));
        assert_eq!(d.html, None);
        assert!(d.attachments.is_empty());
    }

    #[test]
    fn alternative_parts_give_text_and_html_and_attachments_are_decoded() {
        let raw = "Content-Type: multipart/mixed; boundary=m\r\n\r\n\
            --m\r\nContent-Type: multipart/alternative; boundary=a\r\n\r\n\
            --a\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\
            Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9\r\n\
            --a\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>caf\u{e9}</p>\r\n--a--\r\n\
            --m\r\nContent-Type: application/pdf; name=\"x.pdf\"\r\n\
            Content-Disposition: attachment; filename=\"=?UTF-8?B?5Y+X6aCY5pu4LnBkZg==?=\"\r\n\
            Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQ=\r\n\
            --m\r\nContent-Type: text/plain; name=notes.txt\r\n\
            Content-Disposition: attachment\r\n\r\nsecond text\r\n--m--\r\n";
        let d = shown(raw);
        assert_eq!(d.text.as_deref(), Some("café"));
        assert_eq!(d.html.as_deref(), Some("<p>café</p>"));
        assert_eq!(d.attachments.len(), 2, "{:?}", d.attachments);
        assert_eq!(d.attachments[0].name.as_deref(), Some("受領書.pdf"));
        assert_eq!(d.attachments[0].content_type, "application/pdf");
        assert_eq!(d.attachments[0].bytes, b"%PDF-1.4");
        assert_eq!(d.attachments[1].name.as_deref(), Some("notes.txt"));
        assert_eq!(d.attachments[1].bytes, b"second text");
    }

    #[test]
    fn an_attached_message_is_an_attachment_not_the_text() {
        let raw = "Content-Type: multipart/mixed; boundary=m\r\n\r\n\
            --m\r\nContent-Type: text/plain\r\n\r\nouter\r\n\
            --m\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner text\r\n--m--\r\n";
        let d = shown(raw);
        assert_eq!(d.text.as_deref(), Some("outer"));
        assert_eq!(d.attachments.len(), 1);
        assert_eq!(d.attachments[0].content_type, "message/rfc822");
        assert!(
            d.attachments[0]
                .bytes
                .starts_with(b"Subject: inner\r\n\r\ninner text")
        );
    }

    #[test]
    fn a_deeply_nested_message_does_not_overflow_the_stack() {
        let mut raw = String::new();
        for i in 0..5000 {
            raw.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n"
            ));
        }
        raw.push_str("Content-Type: text/plain\r\n\r\ndeep\r\n");
        let d = shown(&raw);
        assert!(d.text.is_none() || d.text.as_deref() == Some("deep"));
    }
}
