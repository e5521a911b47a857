//! RFC 2136 dynamic update of one A or AAAA record, signed with TSIG (RFC 8945,
//! HMAC-SHA256). hickory-proto encodes the message and computes the MAC; this module says
//! what the message holds (delete the record set, add the new address), sends it over UDP
//! (TCP when the answer is truncated), and turns the answer into a verdict with a hint.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use base64::Engine as _;
use hickory_proto::dnssec::rdata::tsig::TsigAlgorithm;
use hickory_proto::dnssec::tsig::TSigner;
use hickory_proto::op::{
    Message, MessageType, MessageVerifier, OpCode, Query, ResponseCode, UpdateMessage,
};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// The signing time may differ from the server's clock by this much (RFC 8945 suggests 300).
const FUDGE: u16 = 300;

/// A TSIG key: its name (as the server knows it) and its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct TsigKey {
    pub name: String,
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("secret", &"<hidden>")
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("the TSIG secret is not base64 ({0})")]
    Secret(base64::DecodeError),
    #[error("the TSIG secret is empty")]
    Empty,
    #[error(
        "the key file has no `key \"NAME\" {{ ... }}` clause (write it as tsig-keygen -a hmac-sha256 does)"
    )]
    NoKey,
    #[error(
        "the key file's algorithm is {0}; tegami signs with hmac-sha256 (make one with `tsig-keygen -a hmac-sha256 NAME`)"
    )]
    Algorithm(String),
    #[error("the key file has no `secret \"...\";` line")]
    NoSecret,
}

impl TsigKey {
    pub fn new(name: &str, secret_base64: &str) -> Result<TsigKey, KeyError> {
        let secret = base64::engine::general_purpose::STANDARD
            .decode(secret_base64.trim())
            .map_err(KeyError::Secret)?;
        if secret.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(TsigKey {
            name: name.trim_end_matches('.').to_string(),
            secret,
        })
    }

    /// Reads a key in BIND's format, as `tsig-keygen` and `ddns-confgen` write it:
    /// `key "name" { algorithm hmac-sha256; secret "base64"; };`
    pub fn parse_bind(text: &str) -> Result<TsigKey, KeyError> {
        let text: String = text
            .lines()
            .map(|line| {
                let line = line.split('#').next().unwrap_or("");
                line.split("//").next().unwrap_or("")
            })
            .collect::<Vec<_>>()
            .join("\n");
        let tokens = tokenize(&text);
        let start = tokens
            .iter()
            .position(|t| t == "key")
            .ok_or(KeyError::NoKey)?;
        let name = tokens.get(start + 1).ok_or(KeyError::NoKey)?.clone();
        if name == "{" || tokens.get(start + 2).map(String::as_str) != Some("{") {
            return Err(KeyError::NoKey);
        }
        let body = &tokens[start + 3..];
        let value_of = |word: &str| {
            body.iter()
                .position(|t| t == word)
                .and_then(|i| body.get(i + 1))
                .cloned()
        };
        if let Some(algorithm) = value_of("algorithm")
            && !algorithm.eq_ignore_ascii_case("hmac-sha256")
        {
            return Err(KeyError::Algorithm(algorithm));
        }
        let secret = value_of("secret").ok_or(KeyError::NoSecret)?;
        TsigKey::new(&name, &secret)
    }
}

/// Words, quoted strings (quotes removed) and the punctuation `{ } ;` as tokens.
fn tokenize(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '{' | '}' | ';' => out.push(c.to_string()),
            '"' => {
                let mut s = String::new();
                for c in chars.by_ref() {
                    if c == '"' {
                        break;
                    }
                    s.push(c);
                }
                out.push(s);
            }
            c => {
                let mut s = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() || matches!(n, '{' | '}' | ';' | '"') {
                        break;
                    }
                    s.push(n);
                    chars.next();
                }
                out.push(s);
            }
        }
    }
    out
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Rfc2136Error {
    #[error("{name} is not inside zone {zone} (set ddns.zone to the zone that holds it)")]
    NotInZone { name: String, zone: String },
    #[error("{0:?} is not a DNS name")]
    BadName(String),
    #[error("cannot build the update: {0}")]
    Encode(String),
    #[error("cannot talk to the DNS server {server}: {source}")]
    Io {
        server: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "no answer from the DNS server {server} within {secs} s (is it up, and is UDP/TCP port {port} open?)"
    )]
    Timeout {
        server: SocketAddr,
        secs: u64,
        port: u16,
    },
    #[error("the DNS server {server} sent an answer that is not one to our update ({0})", .detail)]
    Malformed { server: SocketAddr, detail: String },
    #[error("the DNS server {server} answered {rcode}: {hint}")]
    Rcode {
        server: SocketAddr,
        rcode: String,
        hint: &'static str,
    },
    #[error(
        "the DNS server {server} accepted the update but its answer's TSIG does not verify ({detail}); check the key and that both clocks are right"
    )]
    BadSignature { server: SocketAddr, detail: String },
}

/// Where and how to update: the server, the zone, the record, and the key.
#[derive(Debug, Clone)]
pub struct Rfc2136 {
    pub server: SocketAddr,
    pub zone: String,
    pub record: String,
    pub ttl: u32,
    pub key: TsigKey,
    pub timeout: Duration,
}

/// The update message: in zone `zone`, delete every `record` A (or AAAA) and add `ip`
/// with `ttl` (RFC 2136 sections 2.5.2 and 2.5.1). No prerequisite: the result is the
/// same whatever the record held before, so a retried update is harmless.
pub fn update_message(
    zone: &str,
    record: &str,
    ttl: u32,
    ip: IpAddr,
    id: u16,
) -> Result<Message, Rfc2136Error> {
    let zone_name = fqdn(zone)?;
    let name = fqdn(record)?;
    if !zone_name.zone_of(&name) {
        return Err(Rfc2136Error::NotInZone {
            name: record.to_string(),
            zone: zone.to_string(),
        });
    }
    let (rtype, rdata) = match ip {
        IpAddr::V4(v4) => (RecordType::A, RData::A(A(v4))),
        IpAddr::V6(v6) => (RecordType::AAAA, RData::AAAA(AAAA(v6))),
    };
    let mut message = Message::new(id, MessageType::Query, OpCode::Update);
    message.set_recursion_desired(false);
    let mut zone_query = Query::new();
    zone_query
        .set_name(zone_name)
        .set_query_class(DNSClass::IN)
        .set_query_type(RecordType::SOA);
    message.add_zone(zone_query);
    let mut delete = Record::update0(name.clone(), 0, rtype);
    delete.set_dns_class(DNSClass::ANY);
    message.add_update(delete);
    message.add_update(Record::from_rdata(name, ttl, rdata));
    Ok(message)
}

fn fqdn(name: &str) -> Result<Name, Rfc2136Error> {
    let mut n = Name::from_ascii(name.trim_end_matches('.'))
        .map_err(|_| Rfc2136Error::BadName(name.to_string()))?;
    n.set_fqdn(true);
    Ok(n)
}

/// Signs `message` with `key` at `now` (seconds since the epoch); returns the wire bytes and
/// the verifier for the answer.
pub fn sign(
    mut message: Message,
    key: &TsigKey,
    now: u64,
) -> Result<(Vec<u8>, MessageVerifier), Rfc2136Error> {
    let encode = |e: &dyn std::fmt::Display| Rfc2136Error::Encode(e.to_string());
    let signer = TSigner::new(
        key.secret.clone(),
        TsigAlgorithm::HmacSha256,
        fqdn(&key.name)?,
        FUDGE,
    )
    .map_err(|e| encode(&e))?;
    let verifier = message
        .finalize(&signer, now as u32)
        .map_err(|e| encode(&e))?
        .ok_or_else(|| Rfc2136Error::Encode("TSIG gave no verifier".into()))?;
    let bytes = message.to_vec().map_err(|e| encode(&e))?;
    Ok((bytes, verifier))
}

/// The code as dig and the RFCs write it.
pub fn mnemonic(rcode: ResponseCode) -> String {
    match rcode {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        ResponseCode::YXDomain => "YXDOMAIN".into(),
        ResponseCode::YXRRSet => "YXRRSET".into(),
        ResponseCode::NXRRSet => "NXRRSET".into(),
        ResponseCode::NotAuth => "NOTAUTH".into(),
        ResponseCode::NotZone => "NOTZONE".into(),
        other => format!("rcode {}", u16::from(other)),
    }
}

/// What an answer's code means for the operator.
pub fn hint(rcode: ResponseCode) -> &'static str {
    match rcode {
        ResponseCode::Refused => {
            "the server refuses updates from this key or address (check allow-update or update-policy for the key on the server)"
        }
        ResponseCode::NotAuth => {
            "the server is not authoritative for the zone, or the TSIG key is not accepted (check ddns.zone, the key's name and secret, hmac-sha256, and this server's clock)"
        }
        ResponseCode::NotZone => {
            "the record is not inside the zone named in the update (check ddns.zone)"
        }
        ResponseCode::ServFail => "the server failed to apply the update (see its log)",
        ResponseCode::FormErr => "the server did not understand the update (see its log)",
        ResponseCode::NotImp => "the server does not implement dynamic update",
        _ => "see the DNS server's log",
    }
}

impl Rfc2136 {
    /// Sends the update and waits for the verdict.
    pub async fn update(&self, ip: IpAddr) -> Result<(), Rfc2136Error> {
        let id: u16 = rand_id();
        let message = update_message(&self.zone, &self.record, self.ttl, ip, id)?;
        let (bytes, mut verifier) = sign(message, &self.key, crate::unix_now())?;
        let exchange = async {
            let answer = self.over_udp(&bytes).await?;
            let parsed = self.parse(&answer, id)?;
            if parsed.truncated() {
                let answer = self.over_tcp(&bytes).await?;
                let parsed = self.parse(&answer, id)?;
                Ok((answer, parsed))
            } else {
                Ok((answer, parsed))
            }
        };
        let (answer, parsed) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| Rfc2136Error::Timeout {
                server: self.server,
                secs: self.timeout.as_secs().max(1),
                port: self.server.port(),
            })??;
        let rcode = parsed.response_code();
        if rcode != ResponseCode::NoError {
            return Err(Rfc2136Error::Rcode {
                server: self.server,
                rcode: mnemonic(rcode),
                hint: hint(rcode),
            });
        }
        // A success must come from the key's holder: an unsigned or forged NOERROR would
        // make us believe the record holds the address when it does not.
        verifier(&answer).map_err(|e| Rfc2136Error::BadSignature {
            server: self.server,
            detail: e.to_string(),
        })?;
        Ok(())
    }

    fn parse(&self, answer: &[u8], id: u16) -> Result<Message, Rfc2136Error> {
        let malformed = |detail: String| Rfc2136Error::Malformed {
            server: self.server,
            detail,
        };
        let message = Message::from_vec(answer).map_err(|e| malformed(e.to_string()))?;
        if message.id() != id || message.message_type() != MessageType::Response {
            return Err(malformed(format!(
                "id {} instead of {id}, or not a response",
                message.id()
            )));
        }
        if message.op_code() != OpCode::Update {
            return Err(malformed("not an UPDATE answer".into()));
        }
        Ok(message)
    }

    async fn over_udp(&self, bytes: &[u8]) -> Result<Vec<u8>, Rfc2136Error> {
        let io = |source| Rfc2136Error::Io {
            server: self.server,
            source,
        };
        let local: SocketAddr = if self.server.is_ipv4() {
            "0.0.0.0:0".parse().unwrap()
        } else {
            "[::]:0".parse().unwrap()
        };
        let socket = UdpSocket::bind(local).await.map_err(io)?;
        socket.connect(self.server).await.map_err(io)?;
        socket.send(bytes).await.map_err(io)?;
        let mut buf = vec![0u8; 4096];
        let n = socket.recv(&mut buf).await.map_err(io)?;
        buf.truncate(n);
        Ok(buf)
    }

    async fn over_tcp(&self, bytes: &[u8]) -> Result<Vec<u8>, Rfc2136Error> {
        let io = |source| Rfc2136Error::Io {
            server: self.server,
            source,
        };
        let mut stream = TcpStream::connect(self.server).await.map_err(io)?;
        let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(bytes);
        stream.write_all(&framed).await.map_err(io)?;
        let len = stream.read_u16().await.map_err(io)? as usize;
        let mut buf = vec![0u8; len];
        stream.read_exact(&mut buf).await.map_err(io)?;
        Ok(buf)
    }
}

fn rand_id() -> u16 {
    let mut b = [0u8; 2];
    // An unpredictable id makes a spoofed answer harder; the TSIG check is what counts.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    u16::from_be_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::MessageSignature;

    fn key() -> TsigKey {
        TsigKey::new("tegami-key", "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ==").unwrap()
    }

    #[test]
    fn the_update_replaces_the_record_set_in_the_zone() {
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let msg = update_message("example.com", "home.example.com.", 120, ip, 4242).unwrap();
        let (bytes, _) = sign(msg, &key(), 1_800_000_000).unwrap();
        let parsed = Message::from_vec(&bytes).unwrap();
        assert_eq!(parsed.id(), 4242);
        assert_eq!(parsed.op_code(), OpCode::Update);
        assert_eq!(parsed.message_type(), MessageType::Query);
        let zones = parsed.zones();
        assert_eq!(zones.len(), 1);
        assert_eq!(zones[0].name().to_string(), "example.com.");
        assert_eq!(zones[0].query_type(), RecordType::SOA);
        assert!(parsed.prerequisites().is_empty());
        let updates = parsed.updates();
        assert_eq!(updates.len(), 2);
        // Delete the RRset: class ANY, TTL 0, no data.
        assert_eq!(updates[0].name().to_string(), "home.example.com.");
        assert_eq!(updates[0].dns_class(), DNSClass::ANY);
        assert_eq!(updates[0].ttl(), 0);
        assert_eq!(updates[0].record_type(), RecordType::A);
        // Add the new address: class IN, the TTL asked for.
        assert_eq!(updates[1].dns_class(), DNSClass::IN);
        assert_eq!(updates[1].ttl(), 120);
        assert_eq!(
            updates[1].data(),
            &RData::A(A("203.0.113.9".parse().unwrap()))
        );
        // Signed: the TSIG record is last, with the key's name and a 32-byte HMAC-SHA256.
        let MessageSignature::Tsig(tsig) = parsed.signature() else {
            panic!("no TSIG on the update: {:?}", parsed.signature());
        };
        assert_eq!(tsig.name().to_string(), "tegami-key.");
        // And the MAC verifies with the same key (hickory's verifier, which the e2e test
        // backs with dnspython's).
        let signer = TSigner::new(
            key().secret,
            TsigAlgorithm::HmacSha256,
            Name::from_ascii("tegami-key.").unwrap(),
            FUDGE,
        )
        .unwrap();
        let (mac, time, _) = signer.verify_message_byte(&bytes, None, true).unwrap();
        assert_eq!((mac.len(), time), (32, 1_800_000_000));
        let mut other = key();
        other.secret[0] ^= 1;
        let wrong = TSigner::new(
            other.secret,
            TsigAlgorithm::HmacSha256,
            Name::from_ascii("tegami-key.").unwrap(),
            FUDGE,
        )
        .unwrap();
        assert!(wrong.verify_message_byte(&bytes, None, true).is_err());
    }

    #[test]
    fn ipv6_updates_the_aaaa_record() {
        let ip: IpAddr = "2001:db8::9".parse().unwrap();
        let msg = update_message("example.com", "home.example.com", 60, ip, 1).unwrap();
        assert_eq!(msg.updates()[0].record_type(), RecordType::AAAA);
        assert_eq!(
            msg.updates()[1].data(),
            &RData::AAAA(AAAA("2001:db8::9".parse().unwrap()))
        );
    }

    #[test]
    fn a_name_outside_the_zone_is_refused_before_sending() {
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let e = update_message("example.org", "home.example.com", 60, ip, 1).unwrap_err();
        assert!(e.to_string().contains("not inside zone example.org"), "{e}");
    }

    #[test]
    fn bind_key_files_are_read() {
        let text = "# made by tsig-keygen\nkey \"tegami-key\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ==\";\n};\n";
        assert_eq!(TsigKey::parse_bind(text).unwrap(), key());
        let md5 = text.replace("hmac-sha256", "hmac-md5");
        assert!(
            TsigKey::parse_bind(&md5)
                .unwrap_err()
                .to_string()
                .contains("hmac-md5")
        );
        assert!(matches!(
            TsigKey::parse_bind("secret \"abc\";"),
            Err(KeyError::NoKey)
        ));
        assert!(matches!(
            TsigKey::parse_bind("key k { algorithm hmac-sha256; };"),
            Err(KeyError::NoSecret)
        ));
        assert!(TsigKey::new("k", "not base64!").is_err());
    }
}
