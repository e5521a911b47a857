//! Signed tokens (click, open, unsubscribe, confirm) and VERP envelope senders: what we hand out
//! in URLs and addresses must come back unchanged, so each carries an HMAC-SHA256 under a
//! key only this server holds.

use std::io::Write as _;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;

/// Where a mail came from: a campaign or a step of a sequence, by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    Campaign(i64),
    Step(i64),
}

impl Origin {
    fn letter(self) -> u8 {
        match self {
            Origin::Campaign(_) => b'c',
            Origin::Step(_) => b's',
        }
    }

    fn id(self) -> i64 {
        match self {
            Origin::Campaign(id) | Origin::Step(id) => id,
        }
    }

    fn from_letter(letter: u8, id: i64) -> Option<Origin> {
        match letter {
            b'c' => Some(Origin::Campaign(id)),
            b's' => Some(Origin::Step(id)),
            _ => None,
        }
    }
}

/// What a token stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// The `link`th original link of the mail from `origin` to `subscriber`.
    Click {
        origin: Origin,
        subscriber: i64,
        link: u32,
    },
    /// Unsubscribes `subscriber`; `origin` is the mail that carried the link, if any.
    Unsubscribe {
        origin: Option<Origin>,
        subscriber: i64,
    },
    /// Confirms a double opt-in subscription.
    Confirm { subscriber: i64 },
    /// The open-tracking pixel of the mail from `origin` to `subscriber`.
    Open { origin: Origin, subscriber: i64 },
}

/// Payload: purpose, origin letter (or '-'), origin id, subscriber, link; 22 bytes.
const PAYLOAD: usize = 1 + 1 + 8 + 8 + 4;
/// The MAC is cut to 128 bits: enough against forgery (2^-128 per guess) and it keeps the
/// URLs short enough for plain-text mail.
const MAC: usize = 16;

/// The server's secret for tokens and VERP addresses.
#[derive(Clone)]
pub struct Keys {
    key: hmac::Key,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

impl Keys {
    pub fn from_secret(secret: &[u8]) -> Keys {
        Keys {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    /// Reads `<data>/newsletter.key`, creating it (32 random bytes, mode 0600) on first use.
    /// Losing the file invalidates every link already sent, so it is never rewritten.
    pub fn load_or_create(path: &Path) -> std::io::Result<Keys> {
        match std::fs::read(path) {
            Ok(secret) if secret.len() >= 32 => return Ok(Keys::from_secret(&secret)),
            Ok(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: shorter than 32 bytes", path.display()),
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let secret: [u8; 32] = rand::random();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(mut file) => {
                file.write_all(&secret)?;
                file.sync_all()?;
                Ok(Keys::from_secret(&secret))
            }
            // Another process made it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Ok(Keys::from_secret(&std::fs::read(path)?))
            }
            Err(e) => Err(e),
        }
    }

    fn mac(&self, data: &[u8]) -> hmac::Tag {
        hmac::sign(&self.key, data)
    }

    /// The token as URL-safe base64 (no padding).
    pub fn sign(&self, token: &Token) -> String {
        let mut bytes = Vec::with_capacity(PAYLOAD + MAC);
        let (purpose, origin, subscriber, link) = match *token {
            Token::Click {
                origin,
                subscriber,
                link,
            } => (b'k', Some(origin), subscriber, link),
            Token::Unsubscribe { origin, subscriber } => (b'u', origin, subscriber, 0),
            Token::Confirm { subscriber } => (b'o', None, subscriber, 0),
            Token::Open { origin, subscriber } => (b'p', Some(origin), subscriber, 0),
        };
        bytes.push(purpose);
        bytes.push(origin.map_or(b'-', Origin::letter));
        bytes.extend_from_slice(&origin.map_or(0, Origin::id).to_be_bytes());
        bytes.extend_from_slice(&subscriber.to_be_bytes());
        bytes.extend_from_slice(&link.to_be_bytes());
        let tag = self.mac(&bytes);
        bytes.extend_from_slice(&tag.as_ref()[..MAC]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The token, if it is one of ours and unaltered.
    pub fn verify(&self, text: &str) -> Option<Token> {
        let bytes = URL_SAFE_NO_PAD.decode(text.as_bytes()).ok()?;
        if bytes.len() != PAYLOAD + MAC {
            return None;
        }
        let (payload, mac) = bytes.split_at(PAYLOAD);
        let expected = self.mac(payload);
        same(&expected.as_ref()[..MAC], mac).then_some(())?;
        let id = i64::from_be_bytes(payload[2..10].try_into().ok()?);
        let subscriber = i64::from_be_bytes(payload[10..18].try_into().ok()?);
        let link = u32::from_be_bytes(payload[18..22].try_into().ok()?);
        let origin = match payload[1] {
            b'-' => None,
            letter => Some(Origin::from_letter(letter, id)?),
        };
        match payload[0] {
            b'k' => Some(Token::Click {
                origin: origin?,
                subscriber,
                link,
            }),
            b'u' => Some(Token::Unsubscribe { origin, subscriber }),
            b'o' => Some(Token::Confirm { subscriber }),
            b'p' => Some(Token::Open {
                origin: origin?,
                subscriber,
            }),
            _ => None,
        }
    }

    fn verp_mac(&self, origin: Origin, subscriber: i64) -> String {
        let data = format!(
            "verp:{}{}:{subscriber}",
            origin.letter() as char,
            origin.id()
        );
        hex::encode(&self.mac(data.as_bytes()).as_ref()[..4])
    }

    /// The envelope sender `<prefix>+<c|s><ref>-<subscriber>-<mac8>@<domain>`.
    pub fn verp(&self, prefix: &str, domain: &str, origin: Origin, subscriber: i64) -> String {
        format!(
            "{prefix}+{}{}-{subscriber}-{}@{domain}",
            origin.letter() as char,
            origin.id(),
            self.verp_mac(origin, subscriber)
        )
    }

    /// The mail and subscriber a VERP address names, if it is one of ours for this prefix
    /// and domain and its MAC is right. Case does not matter: some MTAs fold it.
    pub fn decode_verp(&self, prefix: &str, domain: &str, address: &str) -> Option<(Origin, i64)> {
        let address = address.trim().trim_start_matches('<').trim_end_matches('>');
        let (local, at) = address.rsplit_once('@')?;
        if !at.eq_ignore_ascii_case(domain) {
            return None;
        }
        let (p, rest) = local.split_once('+')?;
        if !p.eq_ignore_ascii_case(prefix) {
            return None;
        }
        let rest = rest.to_ascii_lowercase();
        let mut fields = rest.splitn(3, '-');
        let head = fields.next()?;
        let subscriber: i64 = fields.next()?.parse().ok()?;
        let mac = fields.next()?;
        let letter = *head.as_bytes().first()?;
        let id: i64 = head.get(1..)?.parse().ok()?;
        let origin = Origin::from_letter(letter, id)?;
        if mac.len() != 8 {
            return None;
        }
        let expected = self.verp_mac(origin, subscriber);
        same(expected.as_bytes(), mac.as_bytes()).then_some(())?;
        Some((origin, subscriber))
    }
}

/// Equality in time that does not depend on where the first difference is, so a forger
/// learns nothing from how fast a guess is refused.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::from_secret(b"0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn tokens_round_trip() {
        let k = keys();
        for token in [
            Token::Click {
                origin: Origin::Campaign(7),
                subscriber: 12345,
                link: 3,
            },
            Token::Click {
                origin: Origin::Step(1),
                subscriber: 1,
                link: 0,
            },
            Token::Unsubscribe {
                origin: Some(Origin::Step(9)),
                subscriber: 2,
            },
            Token::Unsubscribe {
                origin: None,
                subscriber: 2,
            },
            Token::Confirm { subscriber: 99 },
            Token::Open {
                origin: Origin::Campaign(7),
                subscriber: 12345,
            },
            Token::Open {
                origin: Origin::Step(2),
                subscriber: 1,
            },
        ] {
            let text = k.sign(&token);
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{text}"
            );
            assert_eq!(k.verify(&text), Some(token));
        }
    }

    #[test]
    fn every_altered_token_is_refused() {
        let k = keys();
        let token = Token::Click {
            origin: Origin::Campaign(7),
            subscriber: 12345,
            link: 3,
        };
        let mut bytes = URL_SAFE_NO_PAD.decode(k.sign(&token)).unwrap();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                bytes[i] ^= 1 << bit;
                assert_eq!(k.verify(&URL_SAFE_NO_PAD.encode(&bytes)), None, "byte {i}");
                bytes[i] ^= 1 << bit;
            }
        }
        // Another link index of the same mail cannot be made without the key.
        let other = Keys::from_secret(b"another key, another key, another");
        assert_eq!(k.verify(&other.sign(&token)), None);
        assert_eq!(k.verify(""), None);
        assert_eq!(k.verify("not base64!"), None);
        assert_eq!(k.verify(&k.sign(&token)[..20]), None);
    }

    #[test]
    fn verp_round_trip_and_refusals() {
        let k = keys();
        let a = k.verp("bounces", "example.com", Origin::Campaign(12), 345);
        assert!(a.starts_with("bounces+c12-345-"), "{a}");
        assert!(a.ends_with("@example.com"));
        assert_eq!(
            k.decode_verp("bounces", "example.com", &a),
            Some((Origin::Campaign(12), 345))
        );
        assert_eq!(
            k.decode_verp("bounces", "EXAMPLE.com", &a.to_uppercase()),
            Some((Origin::Campaign(12), 345))
        );
        assert_eq!(
            k.decode_verp("bounces", "example.com", &format!("<{a}>")),
            Some((Origin::Campaign(12), 345))
        );
        let s = k.verp("bounces", "example.com", Origin::Step(3), 4);
        assert_eq!(
            k.decode_verp("bounces", "example.com", &s),
            Some((Origin::Step(3), 4))
        );
        // Altered subscriber, ref, kind, prefix, domain, MAC.
        for bad in [
            a.replace("-345-", "-346-"),
            a.replace("+c12", "+c13"),
            a.replace("+c12", "+s12"),
            a.replace("bounces+", "other+"),
            a.replace("example.com", "example.org"),
            format!("{}0@example.com", &a[..a.find('@').unwrap() - 1]),
            "bounces+c12-345@example.com".to_string(),
            "bounces@example.com".to_string(),
            "bounces+x12-345-00000000@example.com".to_string(),
        ] {
            assert_eq!(k.decode_verp("bounces", "example.com", &bad), None, "{bad}");
        }
    }

    #[test]
    fn key_file_is_made_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("newsletter.key");
        let a = Keys::load_or_create(&path).unwrap();
        let b = Keys::load_or_create(&path).unwrap();
        let t = Token::Confirm { subscriber: 1 };
        assert_eq!(b.verify(&a.sign(&t)), Some(t));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, b"short").unwrap();
        assert!(Keys::load_or_create(&path).is_err());
    }
}
