//! Mailboxes and the reverse and forward paths of MAIL FROM and RCPT TO (RFC 5321
//! section 4.1.2, with RFC 6531 UTF-8 addresses).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// RFC 5321 section 4.5.3.1.1: the longest local part, in octets as sent.
pub const MAX_LOCAL_PART: usize = 64;
/// RFC 5321 section 4.5.3.1.2: the longest domain, in octets.
pub const MAX_DOMAIN: usize = 255;
/// RFC 5321 section 4.5.3.1.3: the longest path, in octets including the angle brackets.
pub const MAX_PATH: usize = 256;

/// A mailbox `local-part@domain`.
///
/// `local_part` holds the local part with any quoting removed, so `"john doe"@x` is stored
/// as `john doe`. `domain` is kept exactly as sent, including the brackets of an address
/// literal such as `[192.0.2.1]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    pub local_part: String,
    pub domain: String,
}

impl Address {
    pub fn new(local_part: impl Into<String>, domain: impl Into<String>) -> Self {
        Address {
            local_part: local_part.into(),
            domain: domain.into(),
        }
    }

    /// Parses a bare mailbox such as `user@example.org`, without angle brackets, as
    /// found in configuration files.
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        let mut cursor = Cursor::new(s);
        let (local, raw_len) = parse_local_part(&mut cursor)?;
        if !cursor.eat('@') {
            return Err(AddressError::MissingDomain);
        }
        let domain = parse_mailbox_domain(&mut cursor)?;
        if !cursor.rest().is_empty() {
            return Err(AddressError::TrailingText);
        }
        check_lengths(raw_len, domain.len())?;
        Ok(Address::new(local, domain))
    }

    /// The lookup key for this mailbox: the displayed form in lowercase.
    ///
    /// Both parts are folded because tegami treats local parts case-insensitively, as
    /// nearly all mail systems do in practice. Unicode domains are not converted to or
    /// from their `xn--` form.
    pub fn normalized(&self) -> String {
        self.to_string().to_lowercase()
    }

    /// True when the address needs no SMTPUTF8 support to be transmitted.
    pub fn is_ascii(&self) -> bool {
        self.local_part.is_ascii() && self.domain.is_ascii()
    }
}

impl fmt::Display for Address {
    /// Writes `local@domain`, quoting the local part only when it is not a plain
    /// dot-string, so that the output can be parsed back to the same address.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_dot_string(&self.local_part) {
            f.write_str(&self.local_part)?;
        } else {
            f.write_str("\"")?;
            for c in self.local_part.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\"")?;
        }
        write!(f, "@{}", self.domain)
    }
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Address::parse(s)
    }
}

/// The argument of MAIL FROM: either the null path `<>` used by bounces, or a mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReversePath {
    Null,
    Path(Address),
}

impl ReversePath {
    /// Parses a complete reverse path such as `<a@b>` or `<>`.
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        let (path, rest) = parse_reverse_path(s)?;
        if !rest.is_empty() {
            return Err(AddressError::TrailingText);
        }
        Ok(path)
    }

    pub fn address(&self) -> Option<&Address> {
        match self {
            ReversePath::Null => None,
            ReversePath::Path(address) => Some(address),
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, ReversePath::Null)
    }

    pub fn is_ascii(&self) -> bool {
        self.address().is_none_or(Address::is_ascii)
    }
}

impl fmt::Display for ReversePath {
    /// Writes the bracketed form, suitable for a Return-Path header.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReversePath::Null => f.write_str("<>"),
            ReversePath::Path(address) => write!(f, "<{address}>"),
        }
    }
}

/// The argument of RCPT TO: the special `<Postmaster>` or a mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ForwardPath {
    /// `<Postmaster>` without a domain, which RFC 5321 requires every server to accept.
    Postmaster,
    Path(Address),
}

impl ForwardPath {
    /// Parses a complete forward path such as `<a@b>` or `<Postmaster>`.
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        let (path, rest) = parse_forward_path(s)?;
        if !rest.is_empty() {
            return Err(AddressError::TrailingText);
        }
        Ok(path)
    }

    pub fn address(&self) -> Option<&Address> {
        match self {
            ForwardPath::Postmaster => None,
            ForwardPath::Path(address) => Some(address),
        }
    }

    pub fn is_ascii(&self) -> bool {
        self.address().is_none_or(Address::is_ascii)
    }
}

impl fmt::Display for ForwardPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardPath::Postmaster => f.write_str("<Postmaster>"),
            ForwardPath::Path(address) => write!(f, "<{address}>"),
        }
    }
}

/// Why an address or path was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddressError {
    /// The path does not start with `<`.
    MissingOpenBracket,
    /// The path does not end with `>` where one was expected.
    MissingCloseBracket,
    /// The null path `<>` appeared where a mailbox is required.
    NullPath,
    /// There is no `@domain` after the local part.
    MissingDomain,
    /// The local part is empty or contains characters that need quoting.
    InvalidLocalPart,
    /// A quoted local part has no closing quote.
    UnterminatedQuote,
    /// The domain is not a valid host name.
    InvalidDomain,
    /// The bracketed address literal is not an IPv4 or `IPv6:` address.
    InvalidAddressLiteral,
    /// The `@a,@b:` source route is malformed.
    InvalidSourceRoute,
    LocalPartTooLong,
    DomainTooLong,
    PathTooLong,
    /// Something follows a complete address.
    TrailingText,
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressError::MissingOpenBracket => "the address must be enclosed in <>",
            AddressError::MissingCloseBracket => "missing closing > after the address",
            AddressError::NullPath => "the null address <> is not allowed here",
            AddressError::MissingDomain => "the address has no @domain",
            AddressError::InvalidLocalPart => "invalid characters in the local part",
            AddressError::UnterminatedQuote => "unterminated quoted local part",
            AddressError::InvalidDomain => "invalid domain",
            AddressError::InvalidAddressLiteral => "invalid address literal",
            AddressError::InvalidSourceRoute => "invalid source route",
            AddressError::LocalPartTooLong => "the local part is longer than 64 octets",
            AddressError::DomainTooLong => "the domain is longer than 255 octets",
            AddressError::PathTooLong => "the path is longer than 256 octets",
            AddressError::TrailingText => "unexpected text after the address",
        })
    }
}

impl std::error::Error for AddressError {}

/// The three shapes a bracketed path can take before the caller decides which are allowed.
enum Path {
    Null,
    Postmaster,
    Mailbox(Address),
}

/// Parses the reverse path at the start of `s`, returning what follows the `>`.
pub(crate) fn parse_reverse_path(s: &str) -> Result<(ReversePath, &str), AddressError> {
    let (path, rest) = parse_path(s)?;
    let path = match path {
        Path::Null => ReversePath::Null,
        // A bare "Postmaster" is a valid recipient but no sender: it has no domain.
        Path::Postmaster => return Err(AddressError::MissingDomain),
        Path::Mailbox(address) => ReversePath::Path(address),
    };
    Ok((path, rest))
}

/// Parses the forward path at the start of `s`, returning what follows the `>`.
pub(crate) fn parse_forward_path(s: &str) -> Result<(ForwardPath, &str), AddressError> {
    let (path, rest) = parse_path(s)?;
    let path = match path {
        Path::Null => return Err(AddressError::NullPath),
        Path::Postmaster => ForwardPath::Postmaster,
        Path::Mailbox(address) => ForwardPath::Path(address),
    };
    Ok((path, rest))
}

/// Parses `"<" [ A-d-l ":" ] Mailbox ">"`, or `<>`, or `<Postmaster>`.
fn parse_path(s: &str) -> Result<(Path, &str), AddressError> {
    let mut cursor = Cursor::new(s);
    if !cursor.eat('<') {
        return Err(AddressError::MissingOpenBracket);
    }
    if cursor.eat('>') {
        return Ok((Path::Null, cursor.rest()));
    }
    let routed = cursor.peek() == Some('@');
    if routed {
        skip_source_route(&mut cursor)?;
    }
    let local_start = cursor.pos;
    let (local, raw_len) = parse_local_part(&mut cursor)?;
    let raw_local = &s[local_start..cursor.pos];
    let path = if cursor.eat('@') {
        let domain = parse_mailbox_domain(&mut cursor)?;
        check_lengths(raw_len, domain.len())?;
        Path::Mailbox(Address::new(local, domain))
    } else if !routed && cursor.peek() == Some('>') && raw_local.eq_ignore_ascii_case("postmaster")
    {
        Path::Postmaster
    } else {
        return Err(AddressError::MissingDomain);
    };
    if !cursor.eat('>') {
        return Err(AddressError::MissingCloseBracket);
    }
    if cursor.pos > MAX_PATH {
        return Err(AddressError::PathTooLong);
    }
    Ok((path, cursor.rest()))
}

fn check_lengths(local_len: usize, domain_len: usize) -> Result<(), AddressError> {
    if local_len > MAX_LOCAL_PART {
        return Err(AddressError::LocalPartTooLong);
    }
    if domain_len > MAX_DOMAIN {
        return Err(AddressError::DomainTooLong);
    }
    Ok(())
}

/// Validates and skips `@a,@b:`. RFC 5321 tells servers to ignore source routes, but
/// they must still be well formed or the mailbox after them cannot be found reliably.
fn skip_source_route(cursor: &mut Cursor<'_>) -> Result<(), AddressError> {
    loop {
        if !cursor.eat('@') {
            return Err(AddressError::InvalidSourceRoute);
        }
        let domain = cursor.take_while(|c| !matches!(c, ',' | ':' | '>' | ' '));
        if !is_domain(domain, false) {
            return Err(AddressError::InvalidSourceRoute);
        }
        if cursor.eat(':') {
            return Ok(());
        }
        if !cursor.eat(',') {
            return Err(AddressError::InvalidSourceRoute);
        }
    }
}

/// Parses a dot-string or quoted-string local part, returning its unquoted value and
/// its length as sent (which is what the 64-octet limit applies to).
fn parse_local_part(cursor: &mut Cursor<'_>) -> Result<(String, usize), AddressError> {
    let start = cursor.pos;
    if !cursor.eat('"') {
        let local = cursor.take_while(|c| is_atext(c) || c == '.');
        let ends_well = matches!(cursor.peek(), None | Some('@' | '>'));
        if !ends_well || !is_dot_string(local) {
            return Err(AddressError::InvalidLocalPart);
        }
        return Ok((local.to_owned(), local.len()));
    }
    let mut value = String::new();
    loop {
        match cursor.bump() {
            None => return Err(AddressError::UnterminatedQuote),
            Some('"') => break,
            // RFC 5321 quoted-pairSMTP: a backslash may escape any printable ASCII character.
            Some('\\') => match cursor.bump() {
                Some(c @ ' '..='~') => value.push(c),
                None => return Err(AddressError::UnterminatedQuote),
                Some(_) => return Err(AddressError::InvalidLocalPart),
            },
            Some(c) if is_qtext(c) => value.push(c),
            Some(_) => return Err(AddressError::InvalidLocalPart),
        }
    }
    Ok((value, cursor.pos - start))
}

/// Parses the domain after `@`: a host name or a bracketed address literal.
fn parse_mailbox_domain(cursor: &mut Cursor<'_>) -> Result<String, AddressError> {
    if cursor.peek() == Some('[') {
        let start = cursor.pos;
        cursor.take_while(|c| !matches!(c, ']' | '>' | ' '));
        if !cursor.eat(']') || !is_address_literal(&cursor.s[start..cursor.pos]) {
            return Err(AddressError::InvalidAddressLiteral);
        }
        return Ok(cursor.s[start..cursor.pos].to_owned());
    }
    let domain = cursor.take_while(|c| !matches!(c, '>' | ' '));
    if domain.len() > MAX_DOMAIN {
        return Err(AddressError::DomainTooLong);
    }
    if !is_domain(domain, false) {
        return Err(AddressError::InvalidDomain);
    }
    Ok(domain.to_owned())
}

/// RFC 5321 atext extended by RFC 6531 with any non-ASCII character that is neither
/// a control character nor white space (those would be invisible or break parsing).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || is_utf8_text(c)
}

/// RFC 5321 qtextSMTP: printable ASCII except `"` and `\`, plus non-ASCII text.
fn is_qtext(c: char) -> bool {
    matches!(c, ' '..='~') && c != '"' && c != '\\' || is_utf8_text(c)
}

fn is_utf8_text(c: char) -> bool {
    !c.is_ascii() && !c.is_control() && !c.is_whitespace()
}

/// True for `Atom *("." Atom)`: no empty atoms, so no leading, trailing or double dots.
fn is_dot_string(s: &str) -> bool {
    s.split('.')
        .all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

/// True for an RFC 5321 Domain, or an address literal. With `lenient`, underscores are
/// also accepted, because many real hosts announce such names in EHLO.
pub(crate) fn is_domain(s: &str, lenient: bool) -> bool {
    if s.starts_with('[') {
        return is_address_literal(s);
    }
    if s.is_empty() || s.len() > MAX_DOMAIN {
        return false;
    }
    s.split('.').all(|label| is_label(label, lenient))
}

/// Checks one domain label: letters, digits and inner hyphens, or a Unicode label.
fn is_label(label: &str, lenient: bool) -> bool {
    let valid_char =
        |c: char| c.is_ascii_alphanumeric() || c == '-' || (lenient && c == '_') || is_utf8_text(c);
    // The 63-octet limit is an RFC 1035 rule for the ASCII form; a Unicode label's
    // ASCII form has a different length, so only ASCII labels are measured.
    !label.is_empty()
        && (!label.is_ascii() || label.len() <= 63)
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label.chars().all(valid_char)
}

/// True for `[IPv4]` or `[IPv6:addr]`. Other tagged literals are refused because
/// nothing could route mail to them.
fn is_address_literal(s: &str) -> bool {
    let Some(inner) = s.strip_prefix('[').and_then(|s| s.strip_suffix(']')) else {
        return false;
    };
    match inner.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => inner[5..].parse::<Ipv6Addr>().is_ok(),
        _ => inner.parse::<Ipv4Addr>().is_ok(),
    }
}

/// A position in a string, advanced one character at a time.
struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Self {
        Cursor { s, pos: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn eat(&mut self, c: char) -> bool {
        let found = self.peek() == Some(c);
        if found {
            self.pos += c.len_utf8();
        }
        found
    }

    fn take_while(&mut self, f: impl Fn(char) -> bool) -> &'a str {
        let rest = self.rest();
        let len = rest.find(|c| !f(c)).unwrap_or(rest.len());
        self.pos += len;
        &rest[..len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AddressError::*;

    /// A parsed path and the text after it.
    type Parsed<'a, P> = Result<(P, &'a str), AddressError>;

    fn addr(local: &str, domain: &str) -> Address {
        Address::new(local, domain)
    }

    fn check_reverse(input: &str, expect: Parsed<'_, ReversePath>) {
        assert_eq!(parse_reverse_path(input), expect, "{input:?}");
    }

    fn check_forward(input: &str, expect: Parsed<'_, ForwardPath>) {
        assert_eq!(parse_forward_path(input), expect, "{input:?}");
    }

    fn check_mailbox(input: &str, expect: Result<Address, AddressError>) {
        assert_eq!(Address::parse(input), expect, "{input:?}");
    }

    fn rp(local: &str, domain: &str) -> ReversePath {
        ReversePath::Path(addr(local, domain))
    }

    fn fp(local: &str, domain: &str) -> ForwardPath {
        ForwardPath::Path(addr(local, domain))
    }

    #[test]
    fn reverse_paths() {
        let long_label = "a".repeat(63);
        let domain_255 = format!("{long_label}.{long_label}.{long_label}.{}", "b".repeat(63));
        let cases: Vec<(String, Parsed<ReversePath>)> = vec![
            ("<>".into(), Ok((ReversePath::Null, ""))),
            ("<> SIZE=10".into(), Ok((ReversePath::Null, " SIZE=10"))),
            ("<a@b>".into(), Ok((rp("a", "b"), ""))),
            (
                "<a@b> BODY=8BITMIME".into(),
                Ok((rp("a", "b"), " BODY=8BITMIME")),
            ),
            ("<a@b>>".into(), Ok((rp("a", "b"), ">"))),
            (
                "<A.B@Example.COM>".into(),
                Ok((rp("A.B", "Example.COM"), "")),
            ),
            ("<a+tag@b.c>".into(), Ok((rp("a+tag", "b.c"), ""))),
            (
                "<!#$%&'*+-/=?^_`{|}~@x>".into(),
                Ok((rp("!#$%&'*+-/=?^_`{|}~", "x"), "")),
            ),
            ("<1@2.3.4.5>".into(), Ok((rp("1", "2.3.4.5"), ""))),
            // Source routes are checked and then ignored, as RFC 5321 asks.
            ("<@r1,@r2.example:u@d>".into(), Ok((rp("u", "d"), ""))),
            ("<@r1:u@d>".into(), Ok((rp("u", "d"), ""))),
            ("<@r1,u@d>".into(), Err(InvalidSourceRoute)),
            ("<@:u@d>".into(), Err(InvalidSourceRoute)),
            ("<@r1,:u@d>".into(), Err(InvalidSourceRoute)),
            ("<@r1:>".into(), Err(InvalidLocalPart)),
            ("<@b>".into(), Err(InvalidSourceRoute)),
            ("<@r1:@r2:u@d>".into(), Err(InvalidLocalPart)),
            // Quoted local parts are stored without their quotes and escapes.
            ("<\"john doe\"@x>".into(), Ok((rp("john doe", "x"), ""))),
            ("<\"a\\\"b\"@x>".into(), Ok((rp("a\"b", "x"), ""))),
            ("<\"a\\\\b\"@x>".into(), Ok((rp("a\\b", "x"), ""))),
            ("<\"\"@x>".into(), Ok((rp("", "x"), ""))),
            (
                "<\"a>b c@d\"@x> rest".into(),
                Ok((rp("a>b c@d", "x"), " rest")),
            ),
            ("<\"plain\"@x>".into(), Ok((rp("plain", "x"), ""))),
            ("<\"unterminated@x>".into(), Err(UnterminatedQuote)),
            ("<\"a\\".into(), Err(UnterminatedQuote)),
            ("<\"a\rb\"@x>".into(), Err(InvalidLocalPart)),
            ("<\"a\\\tb\"@x>".into(), Err(InvalidLocalPart)),
            ("<\"a\"b@x>".into(), Err(MissingDomain)),
            // Address literals.
            ("<a@[192.0.2.1]>".into(), Ok((rp("a", "[192.0.2.1]"), ""))),
            (
                "<a@[IPv6:2001:db8::1]>".into(),
                Ok((rp("a", "[IPv6:2001:db8::1]"), "")),
            ),
            ("<a@[ipv6:::1]>".into(), Ok((rp("a", "[ipv6:::1]"), ""))),
            ("<a@[300.1.1.1]>".into(), Err(InvalidAddressLiteral)),
            ("<a@[1.2.3]>".into(), Err(InvalidAddressLiteral)),
            ("<a@[tag:foo]>".into(), Err(InvalidAddressLiteral)),
            ("<a@[IPv6:1.2.3.4]>".into(), Err(InvalidAddressLiteral)),
            ("<a@[1.2.3.4>".into(), Err(InvalidAddressLiteral)),
            ("<a@[]>".into(), Err(InvalidAddressLiteral)),
            ("<a@[1.2.3.4]x>".into(), Err(MissingCloseBracket)),
            // Brackets and structure.
            ("a@b".into(), Err(MissingOpenBracket)),
            ("".into(), Err(MissingOpenBracket)),
            (" <a@b>".into(), Err(MissingOpenBracket)),
            ("<".into(), Err(InvalidLocalPart)),
            ("<a@b".into(), Err(MissingCloseBracket)),
            ("<a@b c>".into(), Err(MissingCloseBracket)),
            ("<a>".into(), Err(MissingDomain)),
            ("<Postmaster>".into(), Err(MissingDomain)),
            ("<a b@c>".into(), Err(InvalidLocalPart)),
            ("<a(comment)@b>".into(), Err(InvalidLocalPart)),
            ("< a@b>".into(), Err(InvalidLocalPart)),
            ("<<a@b>>".into(), Err(InvalidLocalPart)),
            // Dot-strings may not have empty atoms.
            ("<.a@b>".into(), Err(InvalidLocalPart)),
            ("<a.@b>".into(), Err(InvalidLocalPart)),
            ("<a..b@c>".into(), Err(InvalidLocalPart)),
            ("<@>".into(), Err(InvalidSourceRoute)),
            // Domains.
            ("<a@>".into(), Err(InvalidDomain)),
            ("<a@b..c>".into(), Err(InvalidDomain)),
            ("<a@.b>".into(), Err(InvalidDomain)),
            ("<a@b.c.>".into(), Err(InvalidDomain)),
            ("<a@-b.c>".into(), Err(InvalidDomain)),
            ("<a@b-.c>".into(), Err(InvalidDomain)),
            ("<a@b--c.d>".into(), Ok((rp("a", "b--c.d"), ""))),
            ("<a@b_c>".into(), Err(InvalidDomain)),
            ("<a@b@c>".into(), Err(InvalidDomain)),
            ("<a@b\0c>".into(), Err(InvalidDomain)),
            (format!("<a@{}>", "x".repeat(64)), Err(InvalidDomain)),
            (
                format!("<a@{}>", "x".repeat(63)),
                Ok((rp("a", &"x".repeat(63)), "")),
            ),
            // SMTPUTF8 addresses.
            ("<用户@例子.广告>".into(), Ok((rp("用户", "例子.广告"), ""))),
            (
                "<δοκιμή@παράδειγμα.δοκιμή>".into(),
                Ok((rp("δοκιμή", "παράδειγμα.δοκιμή"), "")),
            ),
            ("<\"ü ö\"@x>".into(), Ok((rp("ü ö", "x"), ""))),
            ("<a\u{a0}b@c>".into(), Err(InvalidLocalPart)),
            ("<a\u{85}b@c>".into(), Err(InvalidLocalPart)),
            ("<a@b\u{2028}c>".into(), Err(InvalidDomain)),
            // Length limits.
            (
                format!("<{}@x>", "l".repeat(64)),
                Ok((rp(&"l".repeat(64), "x"), "")),
            ),
            (format!("<{}@x>", "l".repeat(65)), Err(LocalPartTooLong)),
            (
                format!("<\"{}\"@x>", "l".repeat(62)),
                Ok((rp(&"l".repeat(62), "x"), "")),
            ),
            (format!("<\"{}\"@x>", "l".repeat(63)), Err(LocalPartTooLong)),
            (format!("<{}@x>", "é".repeat(33)), Err(LocalPartTooLong)),
            // A maximal domain cannot fit in a path: the path limit is hit first.
            (format!("<a@{domain_255}>"), Err(PathTooLong)),
            (format!("<a@{domain_255}b>"), Err(DomainTooLong)),
            (format!("<a@{}>", "b.".repeat(1000)), Err(DomainTooLong)),
            (
                format!("<{}@{}>", "l".repeat(64), &domain_255[..189]),
                Ok((rp(&"l".repeat(64), &domain_255[..189]), "")),
            ),
            (
                format!("<{}@{}>", "l".repeat(64), &domain_255[..190]),
                Err(PathTooLong),
            ),
            (
                format!("<{}@{domain_255}>", "l".repeat(64)),
                Err(PathTooLong),
            ),
            (
                format!("<@{}:a@b>", "r".repeat(300)),
                Err(InvalidSourceRoute),
            ),
            (format!("<{}:a@b>", ["@r"; 100].join(",")), Err(PathTooLong)),
        ];
        for (input, expect) in cases {
            check_reverse(&input, expect);
        }
    }

    #[test]
    fn forward_paths() {
        let cases: &[(&str, Parsed<ForwardPath>)] = &[
            ("<Postmaster>", Ok((ForwardPath::Postmaster, ""))),
            ("<postmaster>", Ok((ForwardPath::Postmaster, ""))),
            ("<POSTMASTER> X", Ok((ForwardPath::Postmaster, " X"))),
            (
                "<postmaster@example.com>",
                Ok((fp("postmaster", "example.com"), "")),
            ),
            ("<\"postmaster\">", Err(MissingDomain)),
            ("<@a:postmaster>", Err(MissingDomain)),
            ("<postmasters>", Err(MissingDomain)),
            ("<>", Err(NullPath)),
            ("<> ", Err(NullPath)),
            ("<a@b>", Ok((fp("a", "b"), ""))),
            ("<a@b> NOTIFY=NEVER", Ok((fp("a", "b"), " NOTIFY=NEVER"))),
            ("a@b", Err(MissingOpenBracket)),
            ("<a@b", Err(MissingCloseBracket)),
        ];
        for (input, expect) in cases {
            check_forward(input, expect.clone());
        }
        assert_eq!(
            ForwardPath::parse("<Postmaster>"),
            Ok(ForwardPath::Postmaster)
        );
        assert_eq!(ForwardPath::parse("<a@b> "), Err(TrailingText));
        assert_eq!(ReversePath::parse("<>"), Ok(ReversePath::Null));
        assert_eq!(ReversePath::parse("<a@b>x"), Err(TrailingText));
    }

    #[test]
    fn mailboxes() {
        let cases: &[(&str, Result<Address, AddressError>)] = &[
            ("user@example.org", Ok(addr("user", "example.org"))),
            ("\"x y\"@z", Ok(addr("x y", "z"))),
            ("a@[10.0.0.1]", Ok(addr("a", "[10.0.0.1]"))),
            ("<a@b>", Err(InvalidLocalPart)),
            ("a@b c", Err(TrailingText)),
            ("a@b>", Err(TrailingText)),
            ("a", Err(MissingDomain)),
            ("a@", Err(InvalidDomain)),
            ("@b", Err(InvalidLocalPart)),
            ("", Err(InvalidLocalPart)),
            ("a@b.c.", Err(InvalidDomain)),
        ];
        let label = "d".repeat(63);
        let domain_255 = [label.as_str(); 4].join(".");
        let cases: Vec<(String, Result<Address, AddressError>)> = vec![
            (format!("a@{domain_255}"), Ok(addr("a", &domain_255))),
            (format!("a@{domain_255}x"), Err(DomainTooLong)),
            (
                format!("{}@x", "l".repeat(64)),
                Ok(addr(&"l".repeat(64), "x")),
            ),
            (format!("{}@x", "l".repeat(65)), Err(LocalPartTooLong)),
        ]
        .into_iter()
        .chain(cases.iter().map(|(i, e)| (i.to_string(), e.clone())))
        .collect();
        for (input, expect) in cases {
            check_mailbox(&input, expect);
        }
    }

    #[test]
    fn display_and_normalized() {
        let cases: &[(Address, &str, &str)] = &[
            (
                addr("Foo.Bar", "Example.COM"),
                "Foo.Bar@Example.COM",
                "foo.bar@example.com",
            ),
            (addr("john doe", "x"), "\"john doe\"@x", "\"john doe\"@x"),
            (addr("a\"b", "x"), "\"a\\\"b\"@x", "\"a\\\"b\"@x"),
            (addr("a\\b", "x"), "\"a\\\\b\"@x", "\"a\\\\b\"@x"),
            (addr("", "x"), "\"\"@x", "\"\"@x"),
            (addr(".a", "x"), "\".a\"@x", "\".a\"@x"),
            (addr("a@b", "x"), "\"a@b\"@x", "\"a@b\"@x"),
            (
                addr("Ünïcode", "Bücher.DE"),
                "Ünïcode@Bücher.DE",
                "ünïcode@bücher.de",
            ),
            (addr("A", "[IPv6:::1]"), "A@[IPv6:::1]", "a@[ipv6:::1]"),
        ];
        for (address, display, normalized) in cases {
            assert_eq!(address.to_string(), *display);
            assert_eq!(address.normalized(), *normalized);
            // Whatever Display writes must parse back to the same address.
            assert_eq!(Address::parse(display).as_ref(), Ok(address), "{display}");
        }
        assert_eq!(ReversePath::Null.to_string(), "<>");
        assert_eq!(rp("a", "b").to_string(), "<a@b>");
        assert_eq!(ForwardPath::Postmaster.to_string(), "<Postmaster>");
        assert_eq!(fp("j d", "b").to_string(), "<\"j d\"@b>");
        assert!(rp("a", "b").is_ascii());
        assert!(!rp("ü", "b").is_ascii());
        assert!(!fp("a", "ü").is_ascii());
        assert!(ReversePath::Null.is_ascii() && ForwardPath::Postmaster.is_ascii());
    }

    #[test]
    fn lenient_domains() {
        let cases: &[(&str, bool, bool)] = &[
            // domain, strict, lenient
            ("mx.example", true, true),
            ("my_host", false, true),
            ("DESKTOP-ABC123", true, true),
            ("192.0.2.1", true, true),
            ("[192.0.2.1]", true, true),
            ("[IPv6:::1]", true, true),
            ("-x", false, false),
            ("", false, false),
            ("a..b", false, false),
            ("a b", false, false),
            ("bücher.de", true, true),
        ];
        for &(domain, strict, lenient) in cases {
            assert_eq!(is_domain(domain, false), strict, "{domain}");
            assert_eq!(is_domain(domain, true), lenient, "{domain}");
        }
    }
}
