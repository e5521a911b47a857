//! TOTP (RFC 6238 over RFC 4226's HOTP, HMAC-SHA-1, 30-second steps, six digits): the
//! optional second factor of administrators, as every authenticator app reads it from an
//! `otpauth://` URI.

use data_encoding::BASE32_NOPAD;
use ring::hmac;

pub const STEP_SECONDS: i64 = 30;
const DIGITS: u32 = 6;

/// A new secret: 20 random bytes (RFC 4226's recommended length), base32.
pub fn new_secret() -> String {
    let bytes: [u8; 20] = rand::random();
    BASE32_NOPAD.encode(&bytes)
}

/// HOTP value of `counter` for a secret's raw bytes.
fn hotp(key: &[u8], counter: u64, digits: u32) -> u32 {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
    let mac = hmac::sign(&key, &counter.to_be_bytes());
    let mac = mac.as_ref();
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let code = u32::from_be_bytes([
        mac[offset],
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]) & 0x7fff_ffff;
    code % 10u32.pow(digits)
}

/// The code of a base32 secret at `unix` seconds; `None` for a secret that is not base32.
pub fn code_at(secret: &str, unix: i64) -> Option<String> {
    let key = decode(secret)?;
    let counter = u64::try_from(unix.div_euclid(STEP_SECONDS)).ok()?;
    Some(format!("{:06}", hotp(&key, counter, DIGITS)))
}

/// Whether `code` is right at `unix`, allowing one step either side for clock drift and
/// the time it takes to type.
pub fn verify(secret: &str, code: &str, unix: i64) -> bool {
    let code = code.trim().replace(' ', "");
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    (-1..=1)
        .any(|step| code_at(secret, unix + step * STEP_SECONDS).as_deref() == Some(code.as_str()))
}

/// The URI an authenticator app reads (shown as text to copy into the app).
pub fn uri(secret: &str, account: &str, issuer: &str) -> String {
    let enc = |s: &str| crate::page::encode(s);
    format!(
        "otpauth://totp/{}:{}?secret={secret}&issuer={}&algorithm=SHA1&digits=6&period=30",
        enc(issuer),
        enc(account),
        enc(issuer)
    )
}

fn decode(secret: &str) -> Option<Vec<u8>> {
    let cleaned: String = secret
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '=')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    BASE32_NOPAD
        .decode(cleaned.as_bytes())
        .ok()
        .filter(|k| !k.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 rows: the key is ASCII "12345678901234567890", 8 digits.
    #[test]
    fn rfc_6238_test_vectors() {
        let key = b"12345678901234567890";
        for (time, expected) in [
            (59u64, 94287082u32),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
            (20000000000, 65353130),
        ] {
            assert_eq!(hotp(key, time / 30, 8), expected, "T = {time}");
        }
    }

    #[test]
    fn a_code_is_accepted_one_step_either_side_and_not_further() {
        let secret = BASE32_NOPAD.encode(b"12345678901234567890");
        let now = 1_700_000_000;
        let code = code_at(&secret, now).unwrap();
        assert!(verify(&secret, &code, now));
        assert!(verify(&secret, &code, now + STEP_SECONDS));
        assert!(verify(&secret, &code, now - STEP_SECONDS));
        assert!(!verify(&secret, &code, now + 3 * STEP_SECONDS));
        assert!(!verify(&secret, "12345", now));
        assert!(!verify(&secret, "abcdef", now));
        assert!(!verify("not base32!", &code, now));
    }

    #[test]
    fn new_secrets_decode_to_twenty_bytes() {
        let s = new_secret();
        assert_eq!(decode(&s).unwrap().len(), 20);
        assert!(
            uri(&s, "a@example.com", "tegami")
                .starts_with("otpauth://totp/tegami:a%40example%2Ecom?secret=")
        );
    }
}
