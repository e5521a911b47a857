//! The ACME state in the data directory: where each file lives, the atomic 0600 writes,
//! reading a certificate file back, deciding when it is due, and the status file.

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Error;

/// `DATA/acme`.
pub fn acme_dir(data: &Path) -> PathBuf {
    data.join("acme")
}

/// `DATA/acme/account.json`.
pub fn account_path(data: &Path) -> PathBuf {
    acme_dir(data).join("account.json")
}

/// `DATA/acme/status.json`.
pub fn status_path(data: &Path) -> PathBuf {
    acme_dir(data).join("status.json")
}

/// `DATA/acme/certs`.
pub fn certs_dir(data: &Path) -> PathBuf {
    acme_dir(data).join("certs")
}

/// `DATA/acme/certs/<first-name>.pem`; the name has passed [`crate::check_name`], so it
/// cannot leave the directory.
pub fn cert_path(data: &Path, first_name: &str) -> PathBuf {
    certs_dir(data).join(format!("{first_name}.pem"))
}

/// Creates `dir` (and its parents) mode 0700, and puts an existing one back to 0700: it
/// holds private keys.
fn private_dir(dir: &Path) -> Result<(), Error> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(dir, e))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|e| Error::io(dir, e))
}

/// Replaces `path` with `bytes`, mode 0600, atomically: a temporary file in the same
/// directory, fsync, rename over the old file, fsync the directory. A reader (the TLS side)
/// sees the old file or the new one, never a half-written one, and a power cut leaves one of
/// the two. Creates the directory 0700 if needed.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    private_dir(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    // A dot name and another suffix, so the TLS side's `*.pem` never picks the temporary up.
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// What a certificate file holds, as far as renewal cares.
#[derive(Debug, Clone, PartialEq)]
pub struct CertInfo {
    /// Expiry, Unix seconds.
    pub not_after: i64,
    /// The serial number in hex.
    pub serial: String,
    /// The DNS names of the subjectAltName extension, lower case.
    pub names: Vec<String>,
    /// The issuer's distinguished name, for people.
    pub issuer: String,
}

/// Reads a certificate file: `Ok(None)` when there is none, an error when it is there but
/// is not a chain followed by the private key of its first certificate.
pub fn read_cert(path: &Path) -> Result<Option<CertInfo>, Error> {
    let pem = match fs::read(path) {
        Ok(pem) => pem,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    parse_cert_file(&pem)
        .map(Some)
        .map_err(|reason| Error::BadFile {
            path: path.to_path_buf(),
            reason,
        })
}

/// Parses "chain then key" and checks the key belongs to the first certificate.
pub(crate) fn parse_cert_file(pem: &[u8]) -> Result<CertInfo, String> {
    let mut certs = Vec::new();
    let mut key = None;
    for item in rustls_pemfile::read_all(&mut &pem[..]) {
        match item.map_err(|e| format!("not PEM: {e}"))? {
            rustls_pemfile::Item::X509Certificate(c) => certs.push(c),
            rustls_pemfile::Item::Pkcs8Key(k) => key = Some(k),
            _ => {}
        }
    }
    let first = certs.first().ok_or("no certificate in it")?;
    let key = key.ok_or("no PKCS#8 private key in it")?;
    let (_, cert) = x509_parser::parse_x509_certificate(first)
        .map_err(|e| format!("the first certificate does not parse: {e}"))?;
    let key = rcgen::KeyPair::try_from(key.secret_pkcs8_der())
        .map_err(|e| format!("the private key does not parse: {e}"))?;
    if rcgen::PublicKeyData::subject_public_key_info(&key) != cert.tbs_certificate.subject_pki.raw {
        return Err("the private key does not belong to the first certificate".into());
    }
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    Ok(CertInfo {
        not_after: cert.validity().not_after.timestamp(),
        serial: cert.tbs_certificate.raw_serial_as_string().replace(':', ""),
        names,
        issuer: cert.issuer().to_string(),
    })
}

/// Whether a certificate needs the CA now.
#[derive(Debug, Clone, PartialEq)]
pub enum Due {
    /// No file, or one that cannot be used.
    Missing,
    /// The configured names are not the certificate's.
    NamesChanged,
    /// Expires within `renew_before` (or already has).
    Expiring { not_after: i64 },
    /// Nothing to do before `renew_at` (Unix seconds).
    NotYet { renew_at: i64 },
}

/// Decides from the file's contents, the configured names and the time.
pub fn due(cert: Option<&CertInfo>, names: &[String], now: i64, renew_before: Duration) -> Due {
    let Some(cert) = cert else {
        return Due::Missing;
    };
    let mut want: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut have: Vec<&str> = cert.names.iter().map(String::as_str).collect();
    want.sort_unstable();
    want.dedup();
    have.sort_unstable();
    have.dedup();
    if want != have {
        return Due::NamesChanged;
    }
    let renew_at = cert
        .not_after
        .saturating_sub(renew_before.as_secs().min(i64::MAX as u64) as i64);
    if now >= renew_at {
        Due::Expiring {
            not_after: cert.not_after,
        }
    } else {
        Due::NotYet { renew_at }
    }
}

/// One certificate's state, as the service last saw it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CertStatus {
    pub names: Vec<String>,
    /// The current file's expiry and serial, if there is a usable file.
    pub not_after: Option<i64>,
    pub serial: Option<String>,
    pub last_success: Option<i64>,
    pub last_attempt: Option<i64>,
    /// The last failure, with its hint; `None` once an attempt succeeded.
    pub last_error: Option<String>,
    /// Failed attempts in a row.
    pub failures: u32,
    pub next_attempt: Option<i64>,
}

/// `DATA/acme/status.json`: by the certificate's first name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub certificates: BTreeMap<String, CertStatus>,
}

impl Status {
    /// Reads the status file; none yet is an empty status.
    pub fn load(data: &Path) -> Result<Status, Error> {
        let path = status_path(data);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::BadFile {
                path,
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Status::default()),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    pub fn save(&self, data: &Path) -> Result<(), Error> {
        let path = status_path(data);
        let json = serde_json::to_vec_pretty(self).map_err(|e| Error::BadFile {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_private(&path, &json)
    }

    /// The certificates whose last attempt failed: (first name, status).
    pub fn failing(&self) -> impl Iterator<Item = (&String, &CertStatus)> {
        self.certificates.iter().filter(|(_, s)| s.failures > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(names: &[&str], not_after: i64) -> CertInfo {
        CertInfo {
            not_after,
            serial: "01".into(),
            names: names.iter().map(|s| s.to_string()).collect(),
            issuer: String::new(),
        }
    }

    #[test]
    fn due_follows_the_file_the_names_and_the_clock() {
        let day = 86400;
        let names = vec!["mail.example.com".to_string(), "example.com".to_string()];
        let before = Duration::from_secs(30 * day as u64);
        assert_eq!(due(None, &names, 0, before), Due::Missing);
        let c = cert(&["example.com", "mail.example.com"], 90 * day);
        assert_eq!(
            due(Some(&c), &names, 0, before),
            Due::NotYet { renew_at: 60 * day }
        );
        assert_eq!(
            due(Some(&c), &names, 60 * day - 1, before),
            Due::NotYet { renew_at: 60 * day }
        );
        assert_eq!(
            due(Some(&c), &names, 60 * day, before),
            Due::Expiring {
                not_after: 90 * day
            }
        );
        assert_eq!(due(Some(&c), &names[..1], 0, before), Due::NamesChanged);
        assert_eq!(
            due(Some(&c), &names, 0, Duration::from_secs(u64::MAX)),
            Due::Expiring {
                not_after: 90 * day
            }
        );
    }

    fn self_signed(names: &[&str]) -> (String, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        (params.self_signed(&key).unwrap().pem(), key)
    }

    #[test]
    fn a_certificate_file_is_its_chain_then_its_own_key() {
        let (pem, key) = self_signed(&["mail.example.com"]);
        let good = format!("{pem}{}", key.serialize_pem());
        let info = parse_cert_file(good.as_bytes()).unwrap();
        assert_eq!(info.names, ["mail.example.com"]);
        assert!(info.not_after > 0 && !info.serial.is_empty());
        let (_, other) = self_signed(&["x.example.com"]);
        let wrong = format!("{pem}{}", other.serialize_pem());
        assert!(
            parse_cert_file(wrong.as_bytes())
                .unwrap_err()
                .contains("does not belong")
        );
        assert!(
            parse_cert_file(pem.as_bytes())
                .unwrap_err()
                .contains("no PKCS#8")
        );
        assert!(
            parse_cert_file(b"junk")
                .unwrap_err()
                .contains("no certificate")
        );
    }

    #[test]
    fn writes_replace_the_file_whole_with_mode_0600_in_a_0700_dir() {
        let dir = tempfile::tempdir().unwrap();
        let path = cert_path(dir.path(), "mail.example.com");
        write_private(&path, b"one").unwrap();
        write_private(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&certs_dir(dir.path())), 0o700);
        assert_eq!(mode(&acme_dir(dir.path())), 0o700);
        let left: Vec<_> = fs::read_dir(certs_dir(dir.path()))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["mail.example.com.pem"]);
        assert_eq!(
            read_cert(&cert_path(dir.path(), "none.example")).unwrap(),
            None
        );
        assert!(matches!(read_cert(&path), Err(Error::BadFile { .. })));
    }

    #[test]
    fn the_status_file_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Status::load(dir.path()).unwrap(), Status::default());
        let mut status = Status::default();
        status.certificates.insert(
            "mail.example.com".into(),
            CertStatus {
                failures: 2,
                last_error: Some("boom".into()),
                ..CertStatus::default()
            },
        );
        status.save(dir.path()).unwrap();
        let back = Status::load(dir.path()).unwrap();
        assert_eq!(back, status);
        assert_eq!(back.failing().count(), 1);
    }
}
