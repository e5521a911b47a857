//! Modified UTF-7 (RFC 3501 section 5.1.3), the encoding of international mailbox names.
//!
//! Printable ASCII stands for itself, except `&`, which is written `&-`. Anything else is
//! UTF-16 in a modified base64 (`,` instead of `/`, no padding) between `&` and `-`.
//! Decoding is strict: whatever a conforming encoder would not produce is refused, so one
//! name has one spelling and a mailbox cannot be reached under two names.

use std::fmt;

/// Why a mailbox name is not valid modified UTF-7.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Utf7Error {
    /// An octet outside printable ASCII (a control character or 8-bit data).
    NotPrintable,
    /// An `&` without the closing `-`, or a character outside modified base64 inside.
    Unterminated,
    /// The base64 does not decode to whole UTF-16 units with zero padding bits, or holds
    /// an unpaired surrogate.
    BadUtf16,
    /// Base64 used for a printable ASCII character, which must stand for itself.
    NeedlessEncoding,
}

impl fmt::Display for Utf7Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Utf7Error::NotPrintable => "mailbox name has a character that is not printable ASCII",
            Utf7Error::Unterminated => "mailbox name has an unterminated modified UTF-7 sequence",
            Utf7Error::BadUtf16 => "mailbox name has invalid modified UTF-7",
            Utf7Error::NeedlessEncoding => "mailbox name encodes printable ASCII in modified UTF-7",
        })
    }
}

impl std::error::Error for Utf7Error {}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

fn sextet(b: u8) -> Option<u32> {
    Some(match b {
        b'A'..=b'Z' => b - b'A',
        b'a'..=b'z' => b - b'a' + 26,
        b'0'..=b'9' => b - b'0' + 52,
        b'+' => 62,
        b',' => 63,
        _ => return None,
    } as u32)
}

/// Encodes a UTF-8 name in modified UTF-7.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut units: Vec<u16> = Vec::new();
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut out, &mut units);
            out.push(c);
            if c == '&' {
                out.push('-');
            }
        } else {
            let mut buf = [0; 2];
            units.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut out, &mut units);
    out
}

/// Writes pending UTF-16 units as `&base64-`.
fn flush(out: &mut String, units: &mut Vec<u16>) {
    if units.is_empty() {
        return;
    }
    out.push('&');
    let mut bits = 0u32;
    let mut nbits = 0;
    for unit in units.drain(..) {
        bits = (bits << 16) | u32::from(unit);
        nbits += 16;
        while nbits >= 6 {
            nbits -= 6;
            out.push(ALPHABET[((bits >> nbits) & 63) as usize] as char);
        }
        bits &= (1 << nbits) - 1;
    }
    if nbits > 0 {
        out.push(ALPHABET[((bits << (6 - nbits)) & 63) as usize] as char);
    }
    out.push('-');
}

/// Decodes a modified UTF-7 name into UTF-8.
pub fn decode(name: &[u8]) -> Result<String, Utf7Error> {
    let mut out = String::with_capacity(name.len());
    let mut i = 0;
    while i < name.len() {
        let b = name[i];
        if !(0x20..0x7f).contains(&b) {
            return Err(Utf7Error::NotPrintable);
        }
        i += 1;
        if b != b'&' {
            out.push(b as char);
            continue;
        }
        let start = i;
        while i < name.len() && sextet(name[i]).is_some() {
            i += 1;
        }
        if name.get(i) != Some(&b'-') {
            return Err(Utf7Error::Unterminated);
        }
        if start == i {
            out.push('&');
        } else {
            decode_base64(&name[start..i], &mut out)?;
        }
        i += 1;
    }
    Ok(out)
}

/// Decodes the modified base64 between `&` and `-`.
fn decode_base64(text: &[u8], out: &mut String) -> Result<(), Utf7Error> {
    let mut units = Vec::with_capacity(text.len() * 6 / 16);
    let mut bits = 0u32;
    let mut nbits = 0;
    for &b in text {
        // The caller only passes alphabet characters.
        bits = (bits << 6) | sextet(b).ok_or(Utf7Error::Unterminated)?;
        nbits += 6;
        if nbits >= 16 {
            nbits -= 16;
            units.push((bits >> nbits) as u16);
            bits &= (1 << nbits) - 1;
        }
    }
    // A conforming encoder leaves fewer than six bits over, all zero.
    if nbits >= 6 || bits != 0 || units.is_empty() {
        return Err(Utf7Error::BadUtf16);
    }
    for c in char::decode_utf16(units) {
        let c = c.map_err(|_| Utf7Error::BadUtf16)?;
        if (' '..='~').contains(&c) {
            return Err(Utf7Error::NeedlessEncoding);
        }
        out.push(c);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks that `utf8` encodes to `utf7` and back.
    fn check(utf8: &str, utf7: &str) {
        assert_eq!(encode(utf8), utf7, "encoding {utf8:?}");
        assert_eq!(
            decode(utf7.as_bytes()).as_deref(),
            Ok(utf8),
            "decoding {utf7:?}"
        );
    }

    fn check_invalid(utf7: &[u8], expect: Utf7Error) {
        assert_eq!(
            decode(utf7),
            Err(expect),
            "{:?}",
            String::from_utf8_lossy(utf7)
        );
    }

    #[test]
    fn rfc_3501_examples_round_trip() {
        check("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
        check("INBOX", "INBOX");
        check("", "");
    }

    #[test]
    fn ampersand_and_specials() {
        check("&", "&-");
        check("Tom & Jerry", "Tom &- Jerry");
        check("a&&b", "a&-&-b");
        check("Entwürfe", "Entw&APw-rfe");
        check("Папка", "&BB8EMAQ,BDoEMA-");
        check("😀", "&2D3eAA-");
        check("ü&ü", "&APw-&-&APw-");
        check("\t", "&AAk-");
    }

    #[test]
    fn invalid_names_are_refused() {
        check_invalid(b"&", Utf7Error::Unterminated);
        check_invalid(b"&U,BTFw", Utf7Error::Unterminated);
        check_invalid(b"&U,BT/w-", Utf7Error::Unterminated);
        check_invalid("Entwürfe".as_bytes(), Utf7Error::NotPrintable);
        check_invalid(b"a\x01b", Utf7Error::NotPrintable);
        // "A" encoded: printable ASCII must stand for itself.
        check_invalid(b"&AEE-", Utf7Error::NeedlessEncoding);
        // Non-zero padding bits.
        check_invalid(b"&APx-", Utf7Error::BadUtf16);
        // A lone high surrogate.
        check_invalid(b"&2D0-", Utf7Error::BadUtf16);
        // Too few bits for one UTF-16 unit.
        check_invalid(b"&AA-", Utf7Error::BadUtf16);
        // An extra sextet beyond the padding.
        check_invalid(b"&APwA-", Utf7Error::BadUtf16);
    }
}
