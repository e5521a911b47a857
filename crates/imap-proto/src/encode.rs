//! Encoding IMAP strings in responses: quoted when safe, a literal when not, NIL for none.

/// Appends `s` as an IMAP string: a quoted string when it has only printable ASCII (with
/// `"` and `\` escaped) and no CR/LF, otherwise a `{n}\r\n` literal.
pub fn push_string(out: &mut Vec<u8>, s: &[u8]) {
    let quotable = s.len() < 1024 && s.iter().all(|&b| (0x20..0x7f).contains(&b));
    if quotable {
        push_quoted(out, s);
    } else {
        push_literal(out, s);
    }
}

/// Appends `s` between double quotes, with `"` and `\` escaped.
fn push_quoted(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for &b in s {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// Appends a string that may hold UTF-8 for a client that enabled UTF8=ACCEPT: quoted
/// when it is valid UTF-8 without controls (RFC 6855 3's `uQUOTED-CHAR`), else as
/// [`push_string`] would.
pub fn push_utf8_string(out: &mut Vec<u8>, s: &[u8]) {
    let quotable =
        s.len() < 1024 && std::str::from_utf8(s).is_ok_and(|t| t.chars().all(|c| !c.is_control()));
    if quotable {
        push_quoted(out, s);
    } else {
        push_string(out, s);
    }
}

/// Appends `{n}\r\n` and the bytes.
pub fn push_literal(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
    out.extend_from_slice(s);
}

/// Appends decoded content (RFC 3516): a `~{n}` literal8 when it holds a NUL, which a
/// plain literal may not, else a plain literal that every client reads.
pub fn push_literal8(out: &mut Vec<u8>, s: &[u8]) {
    if s.contains(&0) {
        out.push(b'~');
    }
    push_literal(out, s);
}

/// Appends an nstring: NIL for `None`.
pub fn push_nstring(out: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        Some(s) => push_string(out, s),
        None => out.extend_from_slice(b"NIL"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: Option<&[u8]>, expect: &str) {
        let mut out = Vec::new();
        push_nstring(&mut out, input);
        assert_eq!(String::from_utf8_lossy(&out), expect);
    }

    #[test]
    fn strings_are_quoted_escaped_or_literal() {
        check(None, "NIL");
        check(Some(b"hello"), "\"hello\"");
        check(Some(b"a \"b\" \\c"), "\"a \\\"b\\\" \\\\c\"");
        check(Some(b""), "\"\"");
        check(Some("日本".as_bytes()), "{6}\r\n日本");
        check(Some(b"two\r\nlines"), "{10}\r\ntwo\r\nlines");
    }

    #[test]
    fn decoded_content_is_a_literal8_only_when_it_holds_a_nul() {
        let mut out = Vec::new();
        push_literal8(&mut out, b"a\0b");
        assert_eq!(out, b"~{3}\r\na\0b");
        out.clear();
        push_literal8(&mut out, b"\xff\xfe");
        assert_eq!(out, b"{2}\r\n\xff\xfe");
    }
}
