//! Server replies: status lines, extended response codes, multi-line responses and CAPA.
//!
//! Every writer appends to a caller-owned buffer so a session can batch replies to pipelined
//! commands into one write. Reply text is sanitised on the way out: a control character in
//! it (most dangerously a CR or LF) would let whoever chose the text forge extra reply lines,
//! so each one is replaced by a space.

use std::fmt;

/// What `IMPLEMENTATION` in the CAPA response names. No version is given, so a scanner
/// learns nothing it could match against a list of vulnerable releases.
pub const IMPLEMENTATION: &str = "tegami";

/// An extended response code (RFC 2449 section 8), sent in brackets after "-ERR".
///
/// Clients use these to tell a wrong password from a locked or broken mailbox, which is the
/// difference between asking the user again and simply retrying later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResponseCode {
    /// `IN-USE` (RFC 2449): the maildrop is locked by another session.
    InUse,
    /// `LOGIN-DELAY` (RFC 2449): the user logged in too recently.
    LoginDelay,
    /// `SYS/TEMP` (RFC 3206): a temporary server problem; trying again later may work.
    SysTemp,
    /// `SYS/PERM` (RFC 3206): a permanent server problem that needs an administrator.
    SysPerm,
    /// `AUTH` (RFC 3206): the credentials are wrong; asking the user again is warranted.
    Auth,
    /// `UTF8` (RFC 6856): the request needs the UTF8 extension, which was not enabled.
    Utf8,
}

impl ResponseCode {
    /// The code as it appears between the brackets.
    pub const fn as_str(self) -> &'static str {
        match self {
            ResponseCode::InUse => "IN-USE",
            ResponseCode::LoginDelay => "LOGIN-DELAY",
            ResponseCode::SysTemp => "SYS/TEMP",
            ResponseCode::SysPerm => "SYS/PERM",
            ResponseCode::Auth => "AUTH",
            ResponseCode::Utf8 => "UTF8",
        }
    }
}

impl fmt::Display for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Writes a positive status line: "+OK text\r\n", or "+OK\r\n" when `text` is empty.
pub fn ok(text: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"+OK");
    if !text.is_empty() {
        out.push(b' ');
        push_text(text, out);
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes a negative status line: `-ERR [CODE] text\r\n`, leaving out whichever part is
/// absent.
///
/// Only send a code to a client that may understand it: RFC 2449 requires RESP-CODES (and,
/// for [`ResponseCode::Auth`] and [`ResponseCode::SysTemp`] after authentication,
/// AUTH-RESP-CODE) in the CAPA list, which [`capabilities`] always includes.
pub fn err(code: Option<ResponseCode>, text: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"-ERR");
    if let Some(code) = code {
        out.extend_from_slice(b" [");
        out.extend_from_slice(code.as_str().as_bytes());
        out.push(b']');
    }
    if !text.is_empty() {
        out.push(b' ');
        push_text(text, out);
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes a multi-line response: "+OK first\r\n", each line byte-stuffed and ended with
/// CRLF, then the ".\r\n" terminator.
///
/// Lines must not contain line breaks of their own; any control character is replaced by a
/// space so a caller's mistake cannot end the response early or forge a terminator.
/// Message bodies go through [`crate::write_message`] instead, which handles raw bytes.
pub fn multiline<I>(first: &str, lines: I, out: &mut Vec<u8>)
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    ok(first, out);
    for line in lines {
        let line = line.as_ref();
        if line.starts_with('.') {
            out.push(b'.');
        }
        push_text(line, out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

/// Writes an AUTH continuation request (RFC 5034 section 4): "+ challenge\r\n", where the
/// challenge is already base64-encoded and may be empty.
pub fn continuation(challenge: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"+ ");
    push_text(challenge, out);
    out.extend_from_slice(b"\r\n");
}

/// The CAPA list (RFC 2449), one capability per line, ready for [`multiline`].
///
/// The list depends on the session's state, which only the caller knows:
/// - `stls_available`: offer STLS. Pass true only in the AUTHORIZATION state on a connection
///   that is not yet encrypted and has a certificate to offer (RFC 2595 section 4).
/// - `user_available`: offer USER, i.e. USER/PASS logins. Pass false where plain-text
///   passwords are refused, such as before STLS when TLS is required, so clients do not try.
/// - `sasl_mechanisms`: the AUTH mechanisms to list under SASL, upper case; empty leaves the
///   SASL line out.
///
/// RESP-CODES and AUTH-RESP-CODE are always listed, because [`err`] may send codes;
/// PIPELINING is, because [`crate::CommandReader`] handles commands sent back to back.
pub fn capabilities(
    stls_available: bool,
    user_available: bool,
    sasl_mechanisms: &[&str],
) -> Vec<String> {
    let mut caps = vec!["TOP".to_owned(), "UIDL".to_owned()];
    if user_available {
        caps.push("USER".to_owned());
    }
    if !sasl_mechanisms.is_empty() {
        caps.push(format!("SASL {}", sasl_mechanisms.join(" ")));
    }
    if stls_available {
        caps.push("STLS".to_owned());
    }
    caps.extend(
        ["RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
            .into_iter()
            .map(str::to_owned),
    );
    caps.push(format!("IMPLEMENTATION {IMPLEMENTATION}"));
    caps
}

/// Appends reply text with every control character replaced by a space.
fn push_text(text: &str, out: &mut Vec<u8>) {
    let bytes = text.as_bytes();
    // Reply text is almost always clean, so it is checked first and copied in one go.
    if !bytes.iter().any(u8::is_ascii_control) {
        out.extend_from_slice(bytes);
        return;
    }
    out.extend(
        bytes
            .iter()
            .map(|&b| if b.is_ascii_control() { b' ' } else { b }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(write: impl FnOnce(&mut Vec<u8>), expect: &str) {
        let mut out = b"prefix|".to_vec();
        write(&mut out);
        // Writers append; they must never touch what is already in the buffer.
        assert_eq!(&out[..7], b"prefix|");
        assert_eq!(String::from_utf8_lossy(&out[7..]), expect);
    }

    #[test]
    fn status_lines() {
        check(|o| ok("", o), "+OK\r\n");
        check(
            |o| ok("maildrop has 2 messages (320 octets)", o),
            "+OK maildrop has 2 messages (320 octets)\r\n",
        );
        check(|o| ok("2 320", o), "+OK 2 320\r\n");
        check(|o| ok("ünïcödé", o), "+OK ünïcödé\r\n");
        check(|o| ok("a\r\n+OK forged", o), "+OK a  +OK forged\r\n");
        check(|o| ok("\n", o), "+OK  \r\n");
        check(|o| ok("tab\there\0nul", o), "+OK tab here nul\r\n");

        check(|o| err(None, "", o), "-ERR\r\n");
        check(
            |o| err(None, "no such message", o),
            "-ERR no such message\r\n",
        );
        check(
            |o| err(Some(ResponseCode::InUse), "maildrop locked", o),
            "-ERR [IN-USE] maildrop locked\r\n",
        );
        check(
            |o| err(Some(ResponseCode::LoginDelay), "wait", o),
            "-ERR [LOGIN-DELAY] wait\r\n",
        );
        check(
            |o| err(Some(ResponseCode::SysTemp), "try later", o),
            "-ERR [SYS/TEMP] try later\r\n",
        );
        check(
            |o| err(Some(ResponseCode::SysPerm), "broken", o),
            "-ERR [SYS/PERM] broken\r\n",
        );
        check(
            |o| err(Some(ResponseCode::Auth), "invalid credentials", o),
            "-ERR [AUTH] invalid credentials\r\n",
        );
        check(|o| err(Some(ResponseCode::Utf8), "", o), "-ERR [UTF8]\r\n");
        check(|o| err(None, "bad\r\n.\r\n", o), "-ERR bad  .  \r\n");

        check(|o| continuation("", o), "+ \r\n");
        check(|o| continuation("PDEyMzQ+", o), "+ PDEyMzQ+\r\n");
        check(|o| continuation("x\r\ny", o), "+ x  y\r\n");
    }

    #[test]
    fn response_code_display() {
        let cases = [
            (ResponseCode::InUse, "IN-USE"),
            (ResponseCode::LoginDelay, "LOGIN-DELAY"),
            (ResponseCode::SysTemp, "SYS/TEMP"),
            (ResponseCode::SysPerm, "SYS/PERM"),
            (ResponseCode::Auth, "AUTH"),
            (ResponseCode::Utf8, "UTF8"),
        ];
        for (code, text) in cases {
            assert_eq!(code.to_string(), text);
            assert_eq!(code.as_str(), text);
        }
    }

    #[test]
    fn multiline_responses() {
        check(|o| multiline("", Vec::<String>::new(), o), "+OK\r\n.\r\n");
        check(
            |o| multiline("2 messages", ["1 120", "2 200"], o),
            "+OK 2 messages\r\n1 120\r\n2 200\r\n.\r\n",
        );
        let owned = vec!["TOP".to_owned(), "UIDL".to_owned()];
        check(
            |o| multiline("Capability list follows", &owned, o),
            "+OK Capability list follows\r\nTOP\r\nUIDL\r\n.\r\n",
        );
        check(
            |o| multiline("x", owned.iter().map(String::as_str), o),
            "+OK x\r\nTOP\r\nUIDL\r\n.\r\n",
        );
        // Lines that look like the terminator are stuffed.
        check(
            |o| multiline("x", [".", "..", ".a", "a.", ""], o),
            "+OK x\r\n..\r\n...\r\n..a\r\na.\r\n\r\n.\r\n",
        );
        // An embedded line break cannot smuggle in an early terminator.
        check(
            |o| multiline("x", ["a\r\n.\r\n+OK"], o),
            "+OK x\r\na  .  +OK\r\n.\r\n",
        );
    }

    #[test]
    fn capability_lists() {
        let check_caps = |stls, user, sasl: &[&str], expect: &[&str]| {
            assert_eq!(
                capabilities(stls, user, sasl),
                expect,
                "{stls} {user} {sasl:?}"
            );
        };
        let tail = [
            "RESP-CODES",
            "AUTH-RESP-CODE",
            "PIPELINING",
            "IMPLEMENTATION tegami",
        ];
        let with = |head: &[&'static str]| -> Vec<&'static str> {
            head.iter().copied().chain(tail).collect()
        };
        check_caps(false, false, &[], &with(&["TOP", "UIDL"]));
        check_caps(false, true, &[], &with(&["TOP", "UIDL", "USER"]));
        check_caps(true, true, &[], &with(&["TOP", "UIDL", "USER", "STLS"]));
        check_caps(true, false, &[], &with(&["TOP", "UIDL", "STLS"]));
        check_caps(
            true,
            true,
            &["PLAIN"],
            &with(&["TOP", "UIDL", "USER", "SASL PLAIN", "STLS"]),
        );
        check_caps(
            false,
            true,
            &["PLAIN", "SCRAM-SHA-256"],
            &with(&["TOP", "UIDL", "USER", "SASL PLAIN SCRAM-SHA-256"]),
        );

        let mut out = Vec::new();
        multiline(
            "Capability list follows",
            capabilities(true, true, &["PLAIN"]),
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "+OK Capability list follows\r\nTOP\r\nUIDL\r\nUSER\r\nSASL PLAIN\r\nSTLS\r\n\
             RESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nIMPLEMENTATION tegami\r\n.\r\n"
        );
    }
}
