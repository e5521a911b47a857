//! Building one subscriber's mail: MIME (text, or multipart/alternative text and HTML;
//! UTF-8, quoted-printable) and the list headers of RFC 2369, 2919 and 8058.

use std::fmt::Write as _;

/// Everything one mail says, already rendered.
#[derive(Debug, Clone)]
pub struct Letter<'a> {
    pub from_address: &'a str,
    pub from_name: &'a str,
    pub to_address: &'a str,
    pub to_name: &'a str,
    pub subject: &'a str,
    pub text: &'a str,
    pub html: Option<&'a str>,
    /// The list's name; `List-Id` is made of it and `domain`.
    pub list_name: &'a str,
    /// Our domain: `List-Id` and the Message-ID's right side.
    pub domain: &'a str,
    pub unsubscribe_url: &'a str,
    /// Unix seconds.
    pub date: i64,
}

/// The message's bytes, CRLF line endings. The unsubscribe headers sit in the header the
/// DKIM signer covers (it signs List-Unsubscribe and List-Unsubscribe-Post by default).
pub fn build_message(letter: &Letter<'_>) -> Vec<u8> {
    let mut m = String::with_capacity(letter.text.len() * 2 + 1024);
    let _ = write!(
        m,
        "From: {}\r\nTo: {}\r\nSubject: {}\r\nDate: {}\r\nMessage-ID: <{:016x}.{}@{}>\r\n",
        mailbox(letter.from_name, letter.from_address),
        mailbox(letter.to_name, letter.to_address),
        encode_header(letter.subject, "Subject: ".len()),
        rfc5322_date(letter.date),
        rand::random::<u64>(),
        letter.date,
        letter.domain,
    );
    let _ = write!(
        m,
        "List-Id: {}\r\nList-Unsubscribe: <{}>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\nPrecedence: bulk\r\nMIME-Version: 1.0\r\n",
        list_id(letter.list_name, letter.domain),
        letter.unsubscribe_url,
    );
    match letter.html {
        None => {
            m.push_str("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n");
            m.push_str(&quoted_printable(letter.text));
        }
        Some(html) => {
            let boundary = format!("=_alt_{:016x}", rand::random::<u64>());
            let _ = write!(
                m,
                "Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n\
                 --{boundary}\r\n\
                 Content-Type: text/plain; charset=utf-8\r\n\
                 Content-Transfer-Encoding: quoted-printable\r\n\r\n\
                 {}\r\n\
                 --{boundary}\r\n\
                 Content-Type: text/html; charset=utf-8\r\n\
                 Content-Transfer-Encoding: quoted-printable\r\n\r\n\
                 {}\r\n\
                 --{boundary}--\r\n",
                quoted_printable(letter.text),
                quoted_printable(html),
            );
        }
    }
    m.into_bytes()
}

/// `List-Id: "Name" <name.domain>` (RFC 2919): the id is a dot-atom made of the name.
fn list_id(name: &str, domain: &str) -> String {
    let mut id: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    id = id.trim_matches('-').to_string();
    if id.is_empty() {
        id = "list".into();
    }
    format!("{} <{id}.{domain}>", phrase(name))
}

/// `Name <address>`, or the bare address without a name.
fn mailbox(name: &str, address: &str) -> String {
    let name = name.trim();
    if name.is_empty() {
        format!("<{address}>")
    } else {
        format!("{} <{address}>", phrase(name))
    }
}

/// A display name: a quoted string when ASCII, an encoded word otherwise.
fn phrase(name: &str) -> String {
    let clean: String = name.chars().filter(|c| !c.is_control()).collect();
    if clean.is_ascii() {
        format!("\"{}\"", clean.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        encoded_words(&clean)
    }
}

/// An unstructured header value: as it is when printable ASCII, else encoded words.
fn encode_header(value: &str, used: usize) -> String {
    let clean: String = value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.is_ascii() && clean.len() + used <= 998 && !clean.contains("=?") {
        clean
    } else {
        encoded_words(&clean)
    }
}

/// RFC 2047 `=?UTF-8?B?...?=` words of at most 75 characters, each holding whole
/// characters, folded onto continuation lines.
fn encoded_words(value: &str) -> String {
    use base64::Engine as _;
    // 39 bytes make 52 base64 characters, a 64-character word: with "Subject: " in front
    // the first line stays under 78 characters.
    const MAX_BYTES: usize = 39;
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in value.chars() {
        if chunk.len() + c.len_utf8() > MAX_BYTES {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    if !chunk.is_empty() || words.is_empty() {
        words.push(chunk);
    }
    words
        .iter()
        .map(|w| {
            format!(
                "=?UTF-8?B?{}?=",
                base64::engine::general_purpose::STANDARD.encode(w.as_bytes())
            )
        })
        .collect::<Vec<_>>()
        .join("\r\n ")
}

/// Quoted-printable (RFC 2045 6.7) of UTF-8 text; line breaks become CRLF, lines longer
/// than 76 characters get soft breaks, and a line starting with "." or "From " is encoded
/// so that neither SMTP nor mbox tooling changes it.
pub fn quoted_printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    let normalized = text.replace("\r\n", "\n");
    let lines: Vec<&str> = normalized.split('\n').collect();
    for (n, line) in lines.iter().enumerate() {
        let bytes = line.as_bytes();
        let mut width = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let last = i + 1 == bytes.len();
            let plain = match b {
                b'=' => false,
                b' ' | b'\t' => !last,
                b'.' | b'F' if i == 0 => false,
                33..=126 => true,
                _ => false,
            };
            let piece = if plain {
                (b as char).to_string()
            } else {
                format!("={b:02X}")
            };
            // Keep room for the soft break's "=" within 76.
            if width + piece.len() > 75 {
                out.push_str("=\r\n");
                width = 0;
            }
            out.push_str(&piece);
            width += piece.len();
        }
        if n + 1 < lines.len() {
            out.push_str("\r\n");
        }
    }
    out
}

/// RFC 5322 date in UTC.
pub fn rfc5322_date(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%a, %d %b %Y %H:%M:%S +0000")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::MessageParser;

    fn letter<'a>(subject: &'a str, text: &'a str, html: Option<&'a str>) -> Letter<'a> {
        Letter {
            from_address: "news@example.com",
            from_name: "Example News",
            to_address: "anna@example.org",
            to_name: "Anna \"A\" Bell",
            subject,
            text,
            html,
            list_name: "Weekly News",
            domain: "example.com",
            unsubscribe_url: "http://127.0.0.1:8025/unsubscribe/TOKEN",
            date: 1_700_000_000,
        }
    }

    #[test]
    fn plain_text_mail_parses_back() {
        let long = "word ".repeat(40);
        let text = format!("Hello Anna,\n.\nFrom here = there\n{long}\nbye  \n");
        let bytes = build_message(&letter("Weekly news", &text, None));
        let raw = String::from_utf8(bytes.clone()).unwrap();
        assert!(raw.lines().all(|l| l.len() <= 78), "{raw}");
        assert!(!raw.contains("\n.\r"), "a lone dot line must be encoded");
        let m = MessageParser::default().parse(&bytes).unwrap();
        assert_eq!(m.subject(), Some("Weekly news"));
        assert_eq!(
            m.from().unwrap().first().unwrap().address(),
            Some("news@example.com")
        );
        assert_eq!(
            m.from().unwrap().first().unwrap().name(),
            Some("Example News")
        );
        let to = m.to().unwrap().first().unwrap();
        assert_eq!(to.address(), Some("anna@example.org"));
        assert_eq!(to.name(), Some("Anna \"A\" Bell"));
        assert_eq!(m.body_text(0).unwrap().replace("\r\n", "\n"), text);
        assert!(m.html_body_count() == 0 || m.text_body_count() == 1);
        assert_eq!(m.date().unwrap().to_timestamp(), 1_700_000_000);
        assert!(m.message_id().unwrap().ends_with("@example.com"));
        let header = |name: &str| m.header_raw(name).map(str::trim).map(str::to_string);
        assert_eq!(
            header("List-Unsubscribe").as_deref(),
            Some("<http://127.0.0.1:8025/unsubscribe/TOKEN>")
        );
        assert_eq!(
            header("List-Unsubscribe-Post").as_deref(),
            Some("List-Unsubscribe=One-Click")
        );
        assert_eq!(
            header("List-Id").as_deref(),
            Some("\"Weekly News\" <weekly-news.example.com>")
        );
        assert_eq!(header("Precedence").as_deref(), Some("bulk"));
    }

    #[test]
    fn alternative_mail_with_non_ascii_subject() {
        let subject = "今週のお知らせ — ニュースレター第十号、とても長い件名をここに書いておきます";
        let text = "こんにちは、アンナさん。\nhttp://h/c/x";
        let html = "<p>こんにちは、<b>アンナ</b>さん。</p><a href=\"http://h/c/x\">x</a>";
        let bytes = build_message(&letter(subject, text, Some(html)));
        let raw = String::from_utf8(bytes.clone()).unwrap();
        assert!(raw.is_ascii());
        assert!(raw.lines().all(|l| l.len() <= 78), "{raw}");
        let m = MessageParser::default().parse(&bytes).unwrap();
        assert_eq!(m.subject(), Some(subject));
        assert_eq!(m.body_text(0).unwrap(), text.replace('\n', "\r\n"));
        assert_eq!(m.body_html(0).unwrap(), html);
        assert_eq!(m.text_body_count(), 1);
        assert_eq!(m.html_body_count(), 1);
    }

    #[test]
    fn non_ascii_names() {
        let mut l = letter("s", "t", None);
        l.from_name = "東京ニュース";
        l.list_name = "東京";
        let bytes = build_message(&l);
        let m = MessageParser::default().parse(&bytes).unwrap();
        assert_eq!(
            m.from().unwrap().first().unwrap().name(),
            Some("東京ニュース")
        );
        let raw = String::from_utf8(bytes).unwrap();
        assert!(raw.contains("<list.example.com>"), "{raw}");
    }

    #[test]
    fn quoted_printable_cases() {
        assert_eq!(quoted_printable("a=b"), "a=3Db");
        assert_eq!(quoted_printable("é"), "=C3=A9");
        assert_eq!(quoted_printable("end \nx"), "end=20\r\nx");
        assert_eq!(quoted_printable(".\nFrom x"), "=2E\r\n=46rom x");
        let long = quoted_printable(&"x".repeat(200));
        assert!(long.split("\r\n").all(|l| l.len() <= 76));
        assert_eq!(long.replace("=\r\n", ""), "x".repeat(200));
    }
}
