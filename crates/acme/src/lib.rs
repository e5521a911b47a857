//! ACME (RFC 8555) certificates for tegami: an account at the CA, HTTP-01 challenges answered
//! on tegami's HTTP listener, certificates obtained and renewed before they expire, all of it
//! kept in the data directory.
//!
//! The layout in `DATA/acme/` is a contract with the TLS side, which loads every
//! `certs/*.pem` and reloads it when it changes:
//!
//! ```text
//! acme/                 0700
//!   account.json        0600  the account's key and URL at the CA, and the directory URL
//!   status.json         0600  per certificate: expiry, last success, last error (alerts read it)
//!   certs/              0700
//!     <first-name>.pem  0600  the certificate chain, then its private key; replaced atomically
//! ```
//!
//! The library prints nothing; the service logs through `tracing`, and every failure is a
//! typed [`Error`] with a hint.

mod challenges;
mod client;
mod files;
mod service;

use std::path::PathBuf;
use std::time::Duration;

pub use challenges::{Challenges, router};
pub use client::{Issued, create_account, issue, load_or_create_account};
pub use files::{
    CertInfo, CertStatus, Due, Status, account_path, cert_path, certs_dir, due, read_cert,
    status_path, write_private,
};
pub use service::Service;

/// What `[acme]` resolves to.
#[derive(Debug, Clone, PartialEq)]
pub struct AcmeConfig {
    /// The CA's directory URL (https://).
    pub directory: String,
    /// `mailto:` contacts given to the CA.
    pub contact: Vec<String>,
    /// One entry per certificate: its host names, the first naming the file.
    pub certificates: Vec<Vec<String>>,
    /// Renew when the certificate expires within this.
    pub renew_before: Duration,
    /// A PEM file of extra roots trusted for the directory's HTTPS (a private or test CA).
    pub ca_file: Option<PathBuf>,
    /// How often the certificates are looked at when nothing is failing.
    pub check_interval: Duration,
    /// The first wait after a failure; it doubles with each failure up to `check_interval`.
    pub retry_first: Duration,
    /// The deadline for one whole issuance (account, order, challenges, certificate).
    pub timeout: Duration,
}

/// Everything that can go wrong, each with a hint for the operator ([`Error::hint`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not usable: {reason}")]
    BadFile { path: PathBuf, reason: String },
    #[error("the ACME server {directory} failed while {stage}: {}", chain(source))]
    Ca {
        directory: String,
        stage: &'static str,
        source: instant_acme::Error,
    },
    #[error("the CA could not validate {name}: {detail}")]
    Challenge { name: String, detail: String },
    #[error("the order ended {status} instead of ready")]
    Order { status: String },
    #[error("cannot make the key or the signing request: {0}")]
    Csr(#[from] rcgen::Error),
    #[error("the CA sent a certificate tegami cannot use: {0}")]
    BadCertificate(String),
    #[error("no answer within {} s", .0.as_secs())]
    Timeout(Duration),
}

impl Error {
    /// What the operator can do about it, in one sentence.
    pub fn hint(&self) -> &'static str {
        match self {
            Error::Io { .. } => "check the data directory's owner, mode and free space",
            Error::BadFile { .. } => {
                "move the file aside: tegami creates a new one (a new account, or a new certificate)"
            }
            Error::Ca { .. } | Error::Timeout(_) => {
                "check acme.directory, the network path to the CA, and acme.ca_file for a private CA; \
                 the current certificate stays in use and tegami retries"
            }
            Error::Challenge { .. } | Error::Order { .. } => {
                "each name must resolve to this server and port 80 must reach tegami's HTTP listener \
                 (/.well-known/acme-challenge/); the current certificate stays in use"
            }
            Error::Csr(_) | Error::BadCertificate(_) => {
                "the current certificate stays in use; report this with the CA's name"
            }
        }
    }

    /// The CA does not know the account in `account.json` (its database was reset, or the
    /// account was deactivated): a new account is the way on.
    pub fn is_unknown_account(&self) -> bool {
        matches!(self, Error::Ca { source: instant_acme::Error::Api(p), .. }
            if p.r#type.as_deref() == Some("urn:ietf:params:acme:error:accountDoesNotExist"))
    }

    fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// An error and its causes on one line ("client error (Connect): tcp connect error:
/// Connection refused"), so the log says what actually failed.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// A host name tegami can ask a certificate for with HTTP-01: letters, digits, `-` and
/// dots, no wildcard (HTTP-01 cannot prove one), at most 253 octets. Returns the name in
/// lower case, or why it is refused.
pub fn check_name(name: &str) -> Result<String, String> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name.starts_with("*.") {
        return Err(format!(
            "{name:?} is a wildcard; HTTP-01 cannot validate wildcards: list each host name"
        ));
    }
    let labels_ok = name.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    if name.is_empty() || name.len() > 253 || !labels_ok || !name.contains('.') {
        return Err(format!(
            "{name:?} is not a host name (such as mail.example.com)"
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_checked_and_lowered() {
        assert_eq!(check_name("Mail.Example.COM.").unwrap(), "mail.example.com");
        for bad in [
            "",
            "localhost",
            "*.example.com",
            "a..b",
            "-a.b",
            "a_b.c",
            "../x.y",
            "a/b.c",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
