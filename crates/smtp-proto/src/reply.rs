//! SMTP replies: reply codes, RFC 3463 enhanced status codes, and their wire encoding.

use std::fmt;
use std::str::FromStr;

/// An RFC 3463 enhanced status code such as `5.1.1`.
///
/// The fields are class, subject and detail. The class repeats the first digit of
/// the basic reply code (2, 4 or 5); the other two are small registry numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EnhancedCode(pub u8, pub u16, pub u16);

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

impl From<(u8, u16, u16)> for EnhancedCode {
    fn from((class, subject, detail): (u8, u16, u16)) -> Self {
        EnhancedCode(class, subject, detail)
    }
}

impl FromStr for EnhancedCode {
    type Err = ReplyError;

    /// Parses `class.subject.detail`, accepting only what RFC 3463 allows so that
    /// ordinary reply text starting with a number is not mistaken for a code.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split('.');
        let (Some(class), Some(subject), Some(detail), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ReplyError::Malformed);
        };
        let class = match class {
            "2" => 2,
            "4" => 4,
            "5" => 5,
            _ => return Err(ReplyError::Malformed),
        };
        Ok(EnhancedCode(
            class,
            parse_code_part(subject)?,
            parse_code_part(detail)?,
        ))
    }
}

/// Parses a subject or detail number, which RFC 3463 limits to one to three digits.
fn parse_code_part(s: &str) -> Result<u16, ReplyError> {
    if s.is_empty() || s.len() > 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ReplyError::Malformed);
    }
    s.parse().map_err(|_| ReplyError::Malformed)
}

/// One SMTP reply, possibly spanning several lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code, for example 250.
    pub code: u16,
    /// The enhanced status code, written at the start of every line when present.
    pub enhanced: Option<EnhancedCode>,
    /// The text of each line, without code or line ending. Empty means one bare code line.
    pub lines: Vec<String>,
}

impl Reply {
    /// Builds a reply from `text`; embedded line breaks split it into several lines so a
    /// caller can never inject a premature end of the reply.
    pub fn new(code: u16, enhanced: Option<EnhancedCode>, text: impl Into<String>) -> Self {
        let text = text.into();
        let lines = if text.contains(['\r', '\n']) {
            text.lines().map(str::to_owned).collect()
        } else {
            vec![text]
        };
        Reply {
            code,
            enhanced,
            lines,
        }
    }

    /// Builds a reply that carries an enhanced status code, the usual case once
    /// ENHANCEDSTATUSCODES has been advertised.
    pub fn status(code: u16, enhanced: impl Into<EnhancedCode>, text: impl Into<String>) -> Self {
        Reply::new(code, Some(enhanced.into()), text)
    }

    /// Builds a reply without an enhanced status code, as used for the greeting and EHLO.
    pub fn plain(code: u16, text: impl Into<String>) -> Self {
        Reply::new(code, None, text)
    }

    /// Builds a multi-line reply with one entry of `lines` per line.
    pub fn multiline<I, S>(code: u16, enhanced: Option<EnhancedCode>, lines: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Reply {
            code,
            enhanced,
            lines: lines.into_iter().map(Into::into).collect(),
        }
    }

    /// The first digit of the code: 2 success, 3 intermediate, 4 transient, 5 permanent.
    pub fn class(&self) -> u16 {
        self.code / 100
    }

    /// True for 2xx and 3xx replies, which let the client carry on.
    pub fn is_positive(&self) -> bool {
        matches!(self.class(), 2 | 3)
    }

    /// True for 2xx replies: the command was completed.
    pub fn is_completion(&self) -> bool {
        self.class() == 2
    }

    /// True for 3xx replies: the server waits for more input, for example after DATA.
    pub fn is_intermediate(&self) -> bool {
        self.class() == 3
    }

    /// True for 4xx replies: the client may try again later.
    pub fn is_transient(&self) -> bool {
        self.class() == 4
    }

    /// True for 5xx replies: the client should not repeat the command unchanged.
    pub fn is_permanent(&self) -> bool {
        self.class() == 5
    }

    /// True for 4xx and 5xx replies.
    pub fn is_negative(&self) -> bool {
        matches!(self.class(), 4 | 5)
    }

    /// The text of all lines joined by single spaces, without codes: the human part of
    /// the reply in one line, as a bounce or a log wants it.
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }

    /// Appends the wire form, every line ended with CRLF, to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        self.render(|piece| out.extend_from_slice(piece.as_bytes()));
    }

    /// Returns the wire form as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }

    /// Produces the wire form piece by piece so that `write_to` and `Display` share
    /// one implementation without an intermediate allocation.
    fn render(&self, mut emit: impl FnMut(&str)) {
        let code = self.code.to_string();
        let enhanced = self.enhanced.map(|e| e.to_string());
        let last = self.lines.len().saturating_sub(1);
        let empty = [String::new()];
        let lines = if self.lines.is_empty() {
            &empty[..]
        } else {
            &self.lines[..]
        };
        for (i, line) in lines.iter().enumerate() {
            emit(&code);
            emit(if i == last { " " } else { "-" });
            if let Some(enhanced) = &enhanced {
                emit(enhanced);
                if !line.is_empty() {
                    emit(" ");
                }
            }
            // The fields are public, so a stray line break could still get here; turning
            // it into a space keeps one reply line from being read as two.
            if line.contains(['\r', '\n']) {
                emit(&line.replace(['\r', '\n'], " "));
            } else {
                emit(line);
            }
            emit("\r\n");
        }
    }
}

impl fmt::Display for Reply {
    /// Formats the exact wire form, CRLFs included.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut result = Ok(());
        self.render(|piece| {
            if result.is_ok() {
                result = f.write_str(piece);
            }
        });
        result
    }
}

/// Builds the reply to EHLO: the hostname and greeting on the first line, then one
/// extension keyword (with its parameters) per line.
///
/// RFC 2034 leaves enhanced status codes out of the EHLO reply, because the client
/// only learns from this very reply that the server uses them.
pub fn ehlo_reply<S: AsRef<str>>(hostname: &str, greeting: &str, extensions: &[S]) -> Reply {
    let first = if greeting.is_empty() {
        hostname.to_owned()
    } else {
        format!("{hostname} {greeting}")
    };
    let mut lines = Vec::with_capacity(extensions.len() + 1);
    lines.push(first);
    lines.extend(extensions.iter().map(|e| e.as_ref().to_owned()));
    Reply::multiline(250, None, lines)
}

/// Why a server reply could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplyError {
    /// A line does not start with a valid three-digit code followed by space, hyphen or the line end.
    Malformed,
    /// The lines of one multi-line reply carry different codes.
    CodeMismatch,
    /// A line is longer than the limit given to [`parse_reply_limited`].
    LineTooLong,
    /// A reply has more lines than the limit given to [`parse_reply_limited`].
    TooManyLines,
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReplyError::Malformed => "malformed reply line",
            ReplyError::CodeMismatch => "reply lines carry different codes",
            ReplyError::LineTooLong => "reply line too long",
            ReplyError::TooManyLines => "reply has too many lines",
        })
    }
}

impl std::error::Error for ReplyError {}

/// Parses one complete reply from the front of `buf`, for the client side of a session.
///
/// Returns `Ok(None)` until the final line has arrived, otherwise the reply and the
/// number of bytes it occupied. Lines ending in a bare LF are accepted because a client
/// gains nothing by refusing a slightly sloppy server. An enhanced status code is
/// recognised only when every line carries the same one and its class matches the
/// reply code; otherwise the text is left untouched.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, ReplyError> {
    parse_reply_limited(buf, usize::MAX, usize::MAX)
}

/// [`parse_reply`] with bounds, for a client that must not buffer without end what a
/// hostile server sends: a line (without its line end) longer than `max_line` octets, or
/// a reply of more than `max_lines` lines, is an error as soon as the buffer shows it,
/// even before the line or the reply is complete.
pub fn parse_reply_limited(
    buf: &[u8],
    max_line: usize,
    max_lines: usize,
) -> Result<Option<(Reply, usize)>, ReplyError> {
    let mut pos = 0;
    let mut code = None;
    let mut texts = Vec::new();
    loop {
        if texts.len() >= max_lines {
            return Err(ReplyError::TooManyLines);
        }
        let Some(len) = buf[pos..].iter().position(|&b| b == b'\n') else {
            // The CR of a CRLF may be all that separates a full-length line from its end.
            if buf.len() - pos > max_line.saturating_add(1) {
                return Err(ReplyError::LineTooLong);
            }
            return Ok(None);
        };
        let mut line = &buf[pos..pos + len];
        pos += len + 1;
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        if line.len() > max_line {
            return Err(ReplyError::LineTooLong);
        }
        let (line_code, last, text) = parse_reply_line(line)?;
        if *code.get_or_insert(line_code) != line_code {
            return Err(ReplyError::CodeMismatch);
        }
        texts.push(text);
        if last {
            break;
        }
    }
    let code = code.unwrap_or_default();
    let enhanced = common_enhanced_code(code, &texts);
    let lines = match enhanced {
        Some(_) => texts
            .iter()
            .map(|t| match t.split_once(' ') {
                Some((_, rest)) => rest.to_owned(),
                None => String::new(),
            })
            .collect(),
        None => texts,
    };
    Ok(Some((
        Reply {
            code,
            enhanced,
            lines,
        },
        pos,
    )))
}

/// Splits one reply line into its code, whether it is the last line, and its text.
fn parse_reply_line(line: &[u8]) -> Result<(u16, bool, String), ReplyError> {
    let valid_code = matches!(line, [b'2'..=b'5', b'0'..=b'5', b'0'..=b'9', ..]);
    if !valid_code {
        return Err(ReplyError::Malformed);
    }
    let code = line[..3]
        .iter()
        .fold(0u16, |acc, &d| acc * 10 + u16::from(d - b'0'));
    let (last, text) = match line.get(3) {
        None => (true, &line[3..]),
        Some(b' ') => (true, &line[4..]),
        Some(b'-') => (false, &line[4..]),
        Some(_) => return Err(ReplyError::Malformed),
    };
    Ok((code, last, String::from_utf8_lossy(text).into_owned()))
}

/// Returns the enhanced code shared by all lines, if there is exactly one such code.
fn common_enhanced_code(code: u16, texts: &[String]) -> Option<EnhancedCode> {
    let mut common = None;
    for text in texts {
        let word = text.split(' ').next().unwrap_or_default();
        let enhanced: EnhancedCode = word.parse().ok()?;
        if u16::from(enhanced.0) != code / 100 || *common.get_or_insert(enhanced) != enhanced {
            return None;
        }
    }
    common
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(reply: Reply, expect: &str) {
        assert_eq!(String::from_utf8(reply.to_bytes()).unwrap(), expect);
        assert_eq!(reply.to_string(), expect);
    }

    #[test]
    fn writing() {
        check(
            Reply::plain(220, "mx.example ESMTP"),
            "220 mx.example ESMTP\r\n",
        );
        check(Reply::status(250, (2, 0, 0), "OK"), "250 2.0.0 OK\r\n");
        check(
            Reply::new(550, Some(EnhancedCode(5, 1, 1)), "No such user"),
            "550 5.1.1 No such user\r\n",
        );
        check(
            Reply::multiline(250, None, ["first", "second", "last"]),
            "250-first\r\n250-second\r\n250 last\r\n",
        );
        check(
            Reply::multiline(452, Some(EnhancedCode(4, 3, 1)), ["one", "two"]),
            "452-4.3.1 one\r\n452 4.3.1 two\r\n",
        );
        check(Reply::plain(354, ""), "354 \r\n");
        check(
            Reply::multiline(250, None, Vec::<String>::new()),
            "250 \r\n",
        );
        check(
            Reply::multiline(250, Some(EnhancedCode(2, 0, 0)), Vec::<String>::new()),
            "250 2.0.0\r\n",
        );
        check(Reply::status(221, (2, 0, 0), ""), "221 2.0.0\r\n");
        // Text with line breaks becomes several lines rather than a forged reply.
        check(
            Reply::status(250, (2, 0, 0), "a\r\n250 fake"),
            "250-2.0.0 a\r\n250 2.0.0 250 fake\r\n",
        );
        check(Reply::plain(250, "a\nb"), "250-a\r\n250 b\r\n");
        check(
            Reply {
                code: 250,
                enhanced: None,
                lines: vec!["x\r\ny".into()],
            },
            "250 x  y\r\n",
        );
        check(Reply::plain(250, "héllo ✉"), "250 héllo ✉\r\n");
    }

    #[test]
    fn ehlo() {
        check(
            ehlo_reply(
                "mx.example",
                "greets client.example",
                &["PIPELINING", "SIZE 1000"],
            ),
            "250-mx.example greets client.example\r\n250-PIPELINING\r\n250 SIZE 1000\r\n",
        );
        check(
            ehlo_reply("mx.example", "", &Vec::<String>::new()),
            "250 mx.example\r\n",
        );
        let owned = vec!["8BITMIME".to_owned(), "ENHANCEDSTATUSCODES".to_owned()];
        let reply = ehlo_reply("h", "hi", &owned);
        assert_eq!(reply.enhanced, None);
        check(
            reply,
            "250-h hi\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n",
        );
    }

    #[test]
    fn classes() {
        let cases: &[(u16, bool, bool, bool, bool, bool)] = &[
            // code, positive, completion, intermediate, transient, permanent
            (220, true, true, false, false, false),
            (250, true, true, false, false, false),
            (334, true, false, true, false, false),
            (354, true, false, true, false, false),
            (421, false, false, false, true, false),
            (452, false, false, false, true, false),
            (500, false, false, false, false, true),
            (554, false, false, false, false, true),
        ];
        for &(code, pos, comp, inter, trans, perm) in cases {
            let r = Reply::plain(code, "x");
            assert_eq!(r.is_positive(), pos, "{code}");
            assert_eq!(r.is_completion(), comp, "{code}");
            assert_eq!(r.is_intermediate(), inter, "{code}");
            assert_eq!(r.is_transient(), trans, "{code}");
            assert_eq!(r.is_permanent(), perm, "{code}");
            assert_eq!(r.is_negative(), trans || perm, "{code}");
        }
    }

    #[test]
    fn enhanced_code_parsing() {
        let cases: &[(&str, Option<EnhancedCode>)] = &[
            ("2.0.0", Some(EnhancedCode(2, 0, 0))),
            ("5.1.1", Some(EnhancedCode(5, 1, 1))),
            ("4.7.999", Some(EnhancedCode(4, 7, 999))),
            ("5.123.0", Some(EnhancedCode(5, 123, 0))),
            ("3.0.0", None),
            ("5.1", None),
            ("5.1.1.1", None),
            ("5..1", None),
            ("5.1.1000", None),
            ("5.1.+1", None),
            ("5.a.1", None),
            ("", None),
            ("25.0.0", None),
        ];
        for &(input, expect) in cases {
            assert_eq!(input.parse::<EnhancedCode>().ok(), expect, "{input:?}");
            if let Some(code) = expect {
                assert_eq!(code.to_string(), input);
            }
        }
    }

    type Parsed = Result<Option<(u16, Option<EnhancedCode>, Vec<&'static str>, usize)>, ReplyError>;

    fn check_parse(input: &str, expect: Parsed) {
        let got = parse_reply(input.as_bytes()).map(|o| {
            o.map(|(r, n)| {
                let lines = r.lines.clone();
                (r.code, r.enhanced, lines, n)
            })
        });
        let expect = expect
            .map(|o| o.map(|(c, e, l, n)| (c, e, l.into_iter().map(String::from).collect(), n)));
        assert_eq!(got, expect, "{input:?}");
    }

    #[test]
    fn parsing() {
        let e = |a, b, c| Some(EnhancedCode(a, b, c));
        check_parse("250 OK\r\n", Ok(Some((250, None, vec!["OK"], 8))));
        check_parse("250 OK\r\nrest", Ok(Some((250, None, vec!["OK"], 8))));
        check_parse("250 OK", Ok(None));
        check_parse("", Ok(None));
        check_parse("250-a\r\n250", Ok(None));
        check_parse("250\r\n", Ok(Some((250, None, vec![""], 5))));
        check_parse("250 OK\n", Ok(Some((250, None, vec!["OK"], 7))));
        check_parse(
            "250-mx\r\n250-SIZE 10\r\n250 8BITMIME\r\n",
            Ok(Some((250, None, vec!["mx", "SIZE 10", "8BITMIME"], 35))),
        );
        check_parse(
            "550 5.1.1 No such user\r\n",
            Ok(Some((550, e(5, 1, 1), vec!["No such user"], 24))),
        );
        check_parse(
            "452-4.3.1 one\r\n452 4.3.1 two\r\n",
            Ok(Some((452, e(4, 3, 1), vec!["one", "two"], 30))),
        );
        // A class that contradicts the code means the text merely looks like a code.
        check_parse(
            "550 2.0.0 odd\r\n",
            Ok(Some((550, None, vec!["2.0.0 odd"], 15))),
        );
        // Codes that differ between lines are kept as text.
        check_parse(
            "250-2.0.0 a\r\n250 2.1.0 b\r\n",
            Ok(Some((250, None, vec!["2.0.0 a", "2.1.0 b"], 26))),
        );
        check_parse("221 2.0.0\r\n", Ok(Some((221, e(2, 0, 0), vec![""], 11))));
        check_parse("25 OK\r\n", Err(ReplyError::Malformed));
        check_parse("650 OK\r\n", Err(ReplyError::Malformed));
        check_parse("260 OK\r\n", Err(ReplyError::Malformed));
        check_parse("250OK\r\n", Err(ReplyError::Malformed));
        check_parse("hello\r\n", Err(ReplyError::Malformed));
        check_parse("\r\n", Err(ReplyError::Malformed));
        check_parse("250-a\r\n251 b\r\n", Err(ReplyError::CodeMismatch));
    }

    #[test]
    fn limits() {
        let check = |input: &str, expect: Result<Option<usize>, ReplyError>| {
            let got = parse_reply_limited(input.as_bytes(), 8, 3).map(|o| o.map(|(_, n)| n));
            assert_eq!(got, expect, "{input:?}");
        };
        check("250 abcd\r\n", Ok(Some(10)));
        check("250 abcd", Ok(None));
        check("250 abcd\r", Ok(None));
        check("250 abcde\r\n", Err(ReplyError::LineTooLong));
        // An unfinished line is refused once it cannot end within the limit.
        check("250 abcde", Ok(None));
        check("250 abcdef", Err(ReplyError::LineTooLong));
        check("250-a\r\n250-b\r\n250 c\r\n", Ok(Some(21)));
        check("250-a\r\n250-b\r\n250-c\r\n", Err(ReplyError::TooManyLines));
        check(
            "250-a\r\n250-b\r\n250-c\r\n250 d\r\n",
            Err(ReplyError::TooManyLines),
        );
        assert_eq!(
            parse_reply(b"250-a\r\n250 b c\r\n")
                .unwrap()
                .unwrap()
                .0
                .text(),
            "a b c"
        );
    }

    #[test]
    fn round_trip() {
        let replies = [
            Reply::status(250, (2, 1, 5), "Recipient OK"),
            Reply::multiline(250, Some(EnhancedCode(2, 0, 0)), ["a", "b c", ""]),
            ehlo_reply("mx", "hello", &["PIPELINING", "STARTTLS"]),
            Reply::plain(354, "End data with <CR><LF>.<CR><LF>"),
        ];
        for reply in replies {
            let bytes = reply.to_bytes();
            let (parsed, used) = parse_reply(&bytes).unwrap().unwrap();
            assert_eq!(used, bytes.len());
            assert_eq!(parsed, reply);
        }
    }
}
