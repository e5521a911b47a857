//! The message side of IMAP FETCH and SEARCH: ENVELOPE, BODY/BODYSTRUCTURE, BODY[section]
//! bytes and the text SEARCH keys match, computed from a stored message. Pure: no I/O.
//!
//! MIME parsing is mail-parser's; this crate maps its parts onto RFC 3501's part numbers
//! and byte ranges and writes the IMAP forms with `imap_proto::encode`.

mod display;
mod search;
mod section;
mod structure;
mod tree;

use std::borrow::Cow;
use std::sync::OnceLock;

use mail_parser::{HeaderName, HeaderValue};

pub use crate::display::{Attachment, Displayed};
use crate::search::Haystack;
use crate::tree::Node;

/// Why BINARY cannot give a part's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BinaryError {
    /// A Content-Transfer-Encoding it cannot undo (IMAP's `UNKNOWN-CTE`), as written.
    UnknownEncoding(String),
    /// Base64 or quoted-printable that does not decode (IMAP's `PARSE`), by name.
    Undecodable(&'static str),
}

/// A message parsed once, borrowing its raw bytes.
pub struct Message<'a> {
    raw: &'a [u8],
    root: Node<'a>,
    haystack: OnceLock<Haystack>,
}

impl<'a> Message<'a> {
    /// Parses a message. Never fails: bytes with no recognisable header still make a
    /// message, with an empty envelope and a text/plain body.
    pub fn parse(raw: &'a [u8]) -> Message<'a> {
        Message {
            raw,
            root: tree::parse_message(raw, 0),
            haystack: OnceLock::new(),
        }
    }

    /// Appends the ENVELOPE list, parentheses included: `(date subject from sender
    /// reply-to to cc bcc in-reply-to message-id)`. Names and subject are RFC 2047-decoded
    /// and sent as UTF-8; date, in-reply-to and message-id are the header values as written.
    pub fn envelope(&self, out: &mut Vec<u8>) {
        structure::envelope(&self.root, self.raw, out);
    }

    /// Appends BODYSTRUCTURE (`extensible`) or BODY (not), parentheses included.
    pub fn body_structure(&self, extensible: bool, out: &mut Vec<u8>) {
        structure::body_structure(&self.root, self.raw, extensible, out);
    }

    /// The bytes of `BODY[section]`, still transfer-encoded, or `None` when the message has
    /// no such part (or HEADER/TEXT is asked of a part that is not message/rfc822, or MIME
    /// of the whole message). Part 1 of a message that is not multipart is its body, so
    /// `1.MIME` there is the message header. Inside a base64 or quoted-printable
    /// message/rfc822 part, `N.HEADER`, `N.TEXT` and `N.1` address the decoded message: it
    /// has no other bytes. Partial fetches (`<o.n>`) are left to the caller.
    pub fn section(&self, section: &imap_proto::Section) -> Option<Cow<'a, [u8]>> {
        section::section(self.raw, &self.root, section)
    }

    /// The bytes of `BINARY[part]` (RFC 3516): the part's body with its base64 or
    /// quoted-printable encoding undone, `None` when the message has no such part, the
    /// whole message as stored for the empty path. A Content-Transfer-Encoding other than
    /// those and 7bit, 8bit and binary, or content that does not decode, is the error:
    /// BINARY never hands out encoded bytes as if they were the content.
    pub fn binary(&self, part: &[u32]) -> Result<Option<Cow<'a, [u8]>>, BinaryError> {
        section::binary(self.raw, &self.root, part)
    }

    /// The Date: header as unix seconds (UTC), if present and valid.
    pub fn sent_date(&self) -> Option<i64> {
        self.date().map(|d| d.to_timestamp())
    }

    /// The Date: header's calendar day as days since 1970-01-01, read in the header's own
    /// time zone. SENTBEFORE/SENTON/SENTSINCE compare this day, "disregarding time and
    /// timezone" (RFC 3501 §6.4.4), which the UTC instant of `sent_date` cannot give.
    pub fn sent_day(&self) -> Option<i64> {
        self.date()
            .map(|d| d.to_timestamp_local().div_euclid(86_400))
    }

    fn date(&self) -> Option<&mail_parser::DateTime> {
        match &self.root.field(HeaderName::Date)?.value {
            HeaderValue::DateTime(d) if d.is_valid() => Some(d),
            _ => None,
        }
    }

    /// SEARCH HEADER (and FROM, TO, CC, BCC, SUBJECT): whether a field of this name
    /// contains `needle`, case-insensitively, decoded or as written. An empty needle asks
    /// only whether the field is present.
    pub fn header_contains(&self, field: &str, needle: &str) -> bool {
        search::header_contains(&self.root, self.raw, field, needle)
    }

    /// SEARCH BODY: whether the decoded text of a text part contains `needle`,
    /// case-insensitively. HTML parts are matched as their text; attached messages'
    /// text parts count, their headers do not.
    pub fn body_contains(&self, needle: &str) -> bool {
        self.haystack().body_contains(needle)
    }

    /// SEARCH TEXT: headers (of this and attached messages) and body text.
    pub fn text_contains(&self, needle: &str) -> bool {
        self.haystack().text_contains(needle)
    }

    /// The lower-cased text SEARCH looks in, for a full-text index: every header block, and
    /// every text part, each joined by newlines. Whatever [`Message::text_contains`],
    /// [`Message::body_contains`] (the second) or [`Message::header_contains`] (the first)
    /// finds is a substring of these.
    pub fn search_text(&self) -> (String, String) {
        self.haystack().joined()
    }

    /// The first field named `field` of the top header, decoded for display (encoded words
    /// decoded, addresses as `name <address>`, message ids as written), for listings such as
    /// an archive's CSV export.
    pub fn header_text(&self, field: &str) -> Option<String> {
        search::header_text(&self.root, self.raw, field)
    }

    /// The decoded text of every text part (HTML reduced to its text; attached messages'
    /// headers and text included), as written: what a full-text index takes in.
    pub fn plain_text(&self) -> String {
        search::plain_text(&self.root, self.raw)
    }

    /// The text part, the HTML part and the attachments, as a mail reader shows them.
    pub fn displayed(&self) -> Displayed {
        display::displayed(&self.root, self.raw)
    }

    fn haystack(&self) -> &Haystack {
        self.haystack
            .get_or_init(|| Haystack::build(&self.root, self.raw))
    }
}
