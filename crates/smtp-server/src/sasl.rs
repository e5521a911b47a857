//! The SASL mechanisms the submission listener accepts (PLAIN, RFC 4616; LOGIN, the
//! de-facto one older clients still use), decoded from their base64 responses.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Why a client's SASL response could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslError {
    /// The client sent `*` (RFC 4954 section 4).
    Cancelled,
    /// Not base64, or not the shape the mechanism expects.
    Malformed,
}

/// One line of a client's SASL response: `*` cancels, `=` is an empty initial response.
pub fn decode(line: &str) -> Result<Vec<u8>, SaslError> {
    let line = line.trim_end_matches(['\r', '\n']).trim();
    match line {
        "*" => Err(SaslError::Cancelled),
        "=" => Ok(Vec::new()),
        _ => STANDARD.decode(line).map_err(|_| SaslError::Malformed),
    }
}

/// Splits a PLAIN response `authzid NUL authcid NUL password` into user name and password.
/// Acting for another identity is not supported: an authzid must be empty or the user's own.
pub fn plain(response: &[u8]) -> Result<(String, String), SaslError> {
    let mut parts = response.split(|b| *b == 0);
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed);
    };
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| SaslError::Malformed);
    let (authzid, user, password) = (text(authzid)?, text(user)?, text(password)?);
    if user.is_empty() || (!authzid.is_empty() && !authzid.eq_ignore_ascii_case(&user)) {
        return Err(SaslError::Malformed);
    }
    Ok((user, password))
}

/// One LOGIN answer (user name or password) as text.
pub fn login_field(response: Vec<u8>) -> Result<String, SaslError> {
    String::from_utf8(response).map_err(|_| SaslError::Malformed)
}

pub fn encode(text: &str) -> String {
    STANDARD.encode(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_responses() {
        let check = |line: &str, expect: Result<(&str, &str), SaslError>| {
            let got = decode(line).and_then(|r| plain(&r));
            assert_eq!(
                got,
                expect.map(|(u, p)| (u.to_string(), p.to_string())),
                "{line}"
            );
        };
        check(
            &encode("\0alice@x.test\0secret"),
            Ok(("alice@x.test", "secret")),
        );
        check(
            &encode("alice@x.test\0alice@x.test\0secret"),
            Ok(("alice@x.test", "secret")),
        );
        check(
            &encode("bob@x.test\0alice@x.test\0secret"),
            Err(SaslError::Malformed),
        );
        check(&encode("\0\0secret"), Err(SaslError::Malformed));
        check(&encode("alice\0secret"), Err(SaslError::Malformed));
        check(&encode("\0a\0b\0c"), Err(SaslError::Malformed));
        check("not base64!", Err(SaslError::Malformed));
        check("*", Err(SaslError::Cancelled));
        check("=", Err(SaslError::Malformed));
    }
}
