//! DKIM keys: generated and stored as `<dir>/<domain>/<selector>.pem` (PKCS#8 PEM, RSA
//! or Ed25519), loaded at start, and used to sign outgoing mail by its From domain.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;

/// The headers signed when present. From is required by RFC 6376; the rest are the ones
/// whose change would alter what a reader sees or how replies thread.
const SIGNED_HEADERS: &[&str] = &[
    "From",
    "Reply-To",
    "Subject",
    "Date",
    "To",
    "Cc",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// A TXT record to publish: `name` without the final dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsRecord {
    /// `<selector>._domainkey.<domain>`
    pub name: String,
    /// `v=DKIM1; k=rsa; p=...`
    pub value: String,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DkimError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a usable DKIM key: {detail}")]
    Key { path: PathBuf, detail: String },
    #[error("{0} exists already; remove it first to replace the key")]
    Exists(PathBuf),
    #[error("{0:?} cannot be a domain or selector name")]
    Name(String),
    #[error("cannot generate a key: {0}")]
    Generate(String),
}

enum Signer {
    Rsa(DkimSigner<RsaKey<Sha256>, Done>),
    Ed25519(DkimSigner<Ed25519Key, Done>),
}

struct DomainKey {
    selector: String,
    signer: Signer,
}

/// The signing keys of our domains, one per domain (the greatest selector name, so that
/// a rotation is: generate a key under a greater selector, publish, restart).
#[derive(Default)]
pub struct DkimKeys {
    keys: HashMap<String, DomainKey>,
}

impl std::fmt::Debug for DkimKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut list = f.debug_map();
        for (domain, key) in &self.keys {
            list.entry(domain, &key.selector);
        }
        list.finish()
    }
}

impl DkimKeys {
    /// No keys: nothing is signed.
    pub fn empty() -> DkimKeys {
        DkimKeys::default()
    }

    /// Loads every `<dir>/<domain>/<selector>.pem`. A missing `dir` is no keys; a key
    /// that does not load is an error, so that a typo does not silently stop signing.
    pub fn load(dir: &Path) -> Result<DkimKeys, DkimError> {
        let mut keys = HashMap::new();
        let domains = match std::fs::read_dir(dir) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(DkimKeys::default()),
            Err(e) => return Err(io(dir, e)),
        };
        for entry in domains {
            let entry = entry.map_err(|e| io(dir, e))?;
            if !entry
                .file_type()
                .map_err(|e| io(&entry.path(), e))?
                .is_dir()
            {
                continue;
            }
            let domain = entry.file_name().to_string_lossy().to_lowercase();
            let Some((selector, path)) = newest_selector(&entry.path())? else {
                continue;
            };
            let signer = load_signer(&path, &domain, &selector)?;
            keys.insert(domain, DomainKey { selector, signer });
        }
        Ok(DkimKeys { keys })
    }

    /// (domain, selector) of every key, sorted.
    pub fn domains(&self) -> Vec<(String, String)> {
        let mut list: Vec<_> = self
            .keys
            .iter()
            .map(|(d, k)| (d.clone(), k.selector.clone()))
            .collect();
        list.sort();
        list
    }

    /// The `DKIM-Signature` header field (CRLF-terminated, folded) to put in front of
    /// `message`, signed with the key of the domain of the message's first From
    /// address; `None` when we hold no key for it or the message has no From.
    pub fn sign(&self, message: &[u8]) -> Option<Vec<u8>> {
        if self.keys.is_empty() {
            return None;
        }
        let domain = from_domain(message)?;
        let key = self.keys.get(&domain)?;
        let signature = match &key.signer {
            Signer::Rsa(s) => s.sign(message),
            Signer::Ed25519(s) => s.sign(message),
        };
        match signature {
            Ok(signature) => Some(signature.to_header().into_bytes()),
            Err(e) => {
                // Sending unsigned beats not sending; the log says why.
                tracing::warn!(domain, error = %e, "DKIM signing failed");
                None
            }
        }
    }
}

/// The lower-case domain of the first From address.
fn from_domain(message: &[u8]) -> Option<String> {
    let parsed = mail_parser::MessageParser::new().parse_headers(message)?;
    let address = parsed.from()?.first()?.address()?;
    let (_, domain) = address.rsplit_once('@')?;
    Some(domain.trim_end_matches('.').to_lowercase())
}

/// The greatest `<selector>.pem` in a domain's directory.
fn newest_selector(dir: &Path) -> Result<Option<(String, PathBuf)>, DkimError> {
    let mut best: Option<(String, PathBuf)> = None;
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let entry = entry.map_err(|e| io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(selector) = name.strip_suffix(".pem") else {
            continue;
        };
        if best.as_ref().is_none_or(|(b, _)| selector > b.as_str()) {
            best = Some((selector.to_owned(), entry.path()));
        }
    }
    Ok(best)
}

enum Loaded {
    Rsa(RsaKey<Sha256>),
    Ed25519(Ed25519Key),
}

fn load_key(path: &Path) -> Result<Loaded, DkimError> {
    let pem = std::fs::read(path).map_err(|e| io(path, e))?;
    let bad = |detail: String| DkimError::Key {
        path: path.to_owned(),
        detail,
    };
    let der = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| bad(e.to_string()))?;
    let rsa_error = match RsaKey::<Sha256>::from_key_der(der.clone_key()) {
        Ok(key) => return Ok(Loaded::Rsa(key)),
        Err(e) => e.to_string(),
    };
    match &der {
        // OpenSSL writes Ed25519 keys as PKCS#8 v1 (no public key inside), which ring
        // only takes through the unchecked door.
        PrivateKeyDer::Pkcs8(p8) => {
            Ed25519Key::from_pkcs8_maybe_unchecked_der(p8.secret_pkcs8_der())
                .map(Loaded::Ed25519)
                .map_err(|e| bad(format!("neither RSA ({rsa_error}) nor Ed25519 ({e})")))
        }
        _ => Err(bad(rsa_error)),
    }
}

fn load_signer(path: &Path, domain: &str, selector: &str) -> Result<Signer, DkimError> {
    let relaxed = Canonicalization::Relaxed;
    Ok(match load_key(path)? {
        Loaded::Rsa(key) => Signer::Rsa(
            DkimSigner::from_key(key)
                .domain(domain)
                .selector(selector)
                .headers(SIGNED_HEADERS.iter().copied())
                .header_canonicalization(relaxed)
                .body_canonicalization(relaxed),
        ),
        Loaded::Ed25519(key) => Signer::Ed25519(
            DkimSigner::from_key(key)
                .domain(domain)
                .selector(selector)
                .headers(SIGNED_HEADERS.iter().copied())
                .header_canonicalization(relaxed)
                .body_canonicalization(relaxed),
        ),
    })
}

fn record_for(path: &Path, domain: &str, selector: &str) -> Result<DnsRecord, DkimError> {
    let value = match load_key(path)? {
        Loaded::Rsa(key) => format!(
            "v=DKIM1; k=rsa; p={}",
            BASE64.encode(rsa_spki(&key.public_key()))
        ),
        Loaded::Ed25519(key) => {
            format!("v=DKIM1; k=ed25519; p={}", BASE64.encode(key.public_key()))
        }
    };
    Ok(DnsRecord {
        name: format!("{selector}._domainkey.{domain}"),
        value,
    })
}

/// Makes an RSA 2048 key for `domain` under `selector` in `<dir>/<domain>/<selector>.pem`
/// (mode 0600) and returns the TXT record to publish. Never overwrites a key.
pub fn generate_dkim(dir: &Path, domain: &str, selector: &str) -> Result<DnsRecord, DkimError> {
    let domain = checked_name(domain)?.to_lowercase();
    let selector = checked_name(selector)?;
    let pair = mail_auth::dkim::generate::DkimKeyPair::generate_rsa(2048)
        .map_err(|e| DkimError::Generate(e.to_string()))?;
    let pem = pem("PRIVATE KEY", &rsa_pkcs8(pair.private_key()));
    let domain_dir = dir.join(&domain);
    std::fs::create_dir_all(&domain_dir).map_err(|e| io(&domain_dir, e))?;
    let path = domain_dir.join(format!("{selector}.pem"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = match options.open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(DkimError::Exists(path));
        }
        Err(e) => return Err(io(&path, e)),
    };
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| io(&path, e))?;
    record_for(&path, &domain, selector)
}

/// The TXT record of the key that signs for `domain` (the greatest selector), if any.
pub fn dkim_record(dir: &Path, domain: &str) -> Result<Option<DnsRecord>, DkimError> {
    let domain = checked_name(domain)?.to_lowercase();
    let domain_dir = dir.join(&domain);
    if !domain_dir.is_dir() {
        return Ok(None);
    }
    match newest_selector(&domain_dir)? {
        Some((selector, path)) => record_for(&path, &domain, &selector).map(Some),
        None => Ok(None),
    }
}

/// Domains and selectors become path components: no separators, no dot-dot games.
fn checked_name(name: &str) -> Result<&str, DkimError> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if ok {
        Ok(name)
    } else {
        Err(DkimError::Name(name.to_owned()))
    }
}

fn io(path: &Path, source: std::io::Error) -> DkimError {
    DkimError::Io {
        path: path.to_owned(),
        source,
    }
}

// A few DER structures by hand: mail-auth generates PKCS#1, while the key files are
// PKCS#8 (what `openssl genpkey` writes) and DNS wants SubjectPublicKeyInfo.

/// AlgorithmIdentifier { rsaEncryption, NULL }
const RSA_ALGORITHM: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(content);
    out
}

fn rsa_pkcs8(pkcs1: &[u8]) -> Vec<u8> {
    let mut body = vec![0x02, 0x01, 0x00];
    body.extend_from_slice(RSA_ALGORITHM);
    body.extend_from_slice(&der(0x04, pkcs1));
    der(0x30, &body)
}

fn rsa_spki(pkcs1_public: &[u8]) -> Vec<u8> {
    let mut bits = vec![0x00];
    bits.extend_from_slice(pkcs1_public);
    let mut body = RSA_ALGORITHM.to_vec();
    body.extend_from_slice(&der(0x03, &bits));
    der(0x30, &body)
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = BASE64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths() {
        assert_eq!(der(0x04, &[1, 2]), [0x04, 2, 1, 2]);
        let long = der(0x04, &[0; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(der(0x04, &[0; 200])[..3], [0x04, 0x81, 200]);
    }

    #[test]
    fn names_that_could_escape_the_directory_are_refused() {
        for bad in ["", "../x", "a/b", ".hidden", "a b"] {
            assert!(checked_name(bad).is_err(), "{bad}");
        }
        assert!(checked_name("example.com").is_ok());
        assert!(checked_name("s2024_01-a").is_ok());
    }

    #[test]
    fn from_domain_is_lower_case_of_first_from() {
        assert_eq!(
            from_domain(b"To: x@y\r\nFrom: A <a@Example.COM>, b@other\r\n\r\nbody").as_deref(),
            Some("example.com")
        );
        assert_eq!(from_domain(b"To: x@y\r\n\r\nbody"), None);
    }
}
