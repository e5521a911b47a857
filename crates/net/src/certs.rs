//! The server's certificates: several, chosen by the name the client asks for (SNI), and
//! reloaded in place when their files change, so a renewed certificate is served to the next
//! connection without a restart and sessions in flight keep the one they started with.
//!
//! One `Arc<rustls::ServerConfig>` is built once and shared by STARTTLS, STLS and the
//! implicit-TLS listeners; only the set of certificates behind its resolver is swapped.
//! A file that fails to load (missing, bad PEM, key not matching) is logged once per change
//! and the certificate loaded from it before stays in service.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::TlsError;

/// Where one certificate lives: its chain and its private key. `key` may name the same file
/// as `cert` (one PEM file holding the chain followed by the key, as ACME writes them).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Every place certificates come from.
#[derive(Debug, Clone, Default)]
pub struct CertSources {
    /// Configured certificates; the first is the default for clients without SNI or with
    /// an unknown name.
    pub configured: Vec<CertFiles>,
    /// A directory whose `*.pem` files each hold a chain and its key (the ACME client's
    /// `acme/certs`); it may not exist yet.
    pub dir: Option<PathBuf>,
}

impl CertSources {
    /// Every certificate file pair to load now: the configured ones, then the directory's
    /// `*.pem` files in name order.
    pub fn files(&self) -> Vec<CertFiles> {
        let mut files = self.configured.clone();
        files.extend(self.dir_files());
        files
    }

    fn dir_files(&self) -> Vec<CertFiles> {
        let Some(dir) = &self.dir else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            // Temporary files of an atomic replace (`.name.pem.tmp`) do not end in `.pem`.
            .filter(|p| p.extension().is_some_and(|e| e == "pem") && p.is_file())
            .collect();
        found.sort();
        found
            .into_iter()
            .map(|p| CertFiles {
                cert: p.clone(),
                key: p,
            })
            .collect()
    }
}

/// One certificate as loaded: what rustls serves, and what logs and `doctor` show.
#[derive(Debug, Clone)]
pub struct LoadedCert {
    pub files: CertFiles,
    /// DNS names from the subject alternative names (the common name when there are none),
    /// lower case; `*.example.com` for a wildcard.
    pub names: Vec<String>,
    pub subject: String,
    /// Validity in seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    key: Arc<CertifiedKey>,
}

/// Reads a certificate chain and its key, checks that they belong together and reads the
/// names and validity of the end-entity certificate.
pub fn load_cert(files: &CertFiles) -> Result<LoadedCert, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|error| TlsError::Read {
            path: path.into(),
            error,
        })
    };
    let cert_pem = read(&files.cert)?;
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &cert_pem[..])
        .filter_map(Result::ok)
        .collect();
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate(files.cert.clone()));
    };
    let (names, subject, not_before, not_after) =
        describe(leaf).map_err(|reason| TlsError::BadCertificate {
            path: files.cert.clone(),
            reason,
        })?;
    let key_pem = if files.key == files.cert {
        cert_pem
    } else {
        read(&files.key)?
    };
    let key_der = rustls_pemfile::private_key(&mut &key_pem[..])
        .ok()
        .flatten()
        .ok_or_else(|| TlsError::NoKey(files.key.clone()))?;
    let provider = provider();
    let signing = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|error| TlsError::Key {
            path: files.key.clone(),
            error,
        })?;
    let key = CertifiedKey::new(chain, signing);
    if let Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) =
        key.keys_match()
    {
        return Err(TlsError::Mismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
        });
    }
    Ok(LoadedCert {
        files: files.clone(),
        names,
        subject,
        not_before,
        not_after,
        key: Arc::new(key),
    })
}

type Description = (Vec<String>, String, i64, i64);

/// The host names a certificate is for, as written in it: its DNS subject alternative
/// names, or its subject's common names when it has none.
pub fn certificate_names(cert: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    let names: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(name) => Some(name.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if !names.is_empty() {
        return names;
    }
    cert.subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .map(str::to_string)
        .collect()
}

fn describe(der: &CertificateDer<'_>) -> Result<Description, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let names = certificate_names(&cert)
        .iter()
        .map(|n| n.to_ascii_lowercase())
        .collect();
    let validity = cert.validity();
    Ok((
        names,
        cert.subject().to_string(),
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    ))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates in service at one moment: looked up by exact name, then by wildcard,
/// then the default.
#[derive(Debug, Default)]
struct CertSet {
    default: Option<Arc<CertifiedKey>>,
    exact: HashMap<String, (i64, Arc<CertifiedKey>)>,
    /// `*.example.com` is kept under `example.com`.
    wildcard: HashMap<String, (i64, Arc<CertifiedKey>)>,
}

impl CertSet {
    fn build(certs: &[LoadedCert]) -> CertSet {
        let mut set = CertSet {
            default: certs.first().map(|c| c.key.clone()),
            ..CertSet::default()
        };
        for cert in certs {
            for name in &cert.names {
                let name = name.trim_end_matches('.');
                let (map, name) = match name.strip_prefix("*.") {
                    Some(suffix) => (&mut set.wildcard, suffix),
                    None => (&mut set.exact, name),
                };
                // Two certificates for one name (a configured one and its ACME successor, an
                // old and a renewed file): the one that stays valid longer wins.
                let entry = map
                    .entry(name.to_string())
                    .or_insert((cert.not_after, cert.key.clone()));
                if cert.not_after > entry.0 {
                    *entry = (cert.not_after, cert.key.clone());
                }
            }
        }
        set
    }

    fn choose(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = sni {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if let Some((_, key)) = self.exact.get(&name) {
                return Some(key.clone());
            }
            // A wildcard covers exactly one leftmost label.
            if let Some((_, rest)) = name.split_once('.')
                && let Some((_, key)) = self.wildcard.get(rest)
            {
                return Some(key.clone());
            }
        }
        self.default.clone()
    }
}

/// The rustls side: picks a certificate for each handshake from the set in service.
#[derive(Debug, Default)]
pub struct SniResolver {
    set: RwLock<Arc<CertSet>>,
}

impl SniResolver {
    fn swap(&self, set: CertSet) {
        *self.set.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
    }

    fn current(&self) -> Arc<CertSet> {
        self.set.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // None aborts the handshake: only when no certificate is loaded at all.
        self.current().choose(hello.server_name())
    }
}

/// What was on disk when a file was last looked at; a change means "load it again".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
    })
}

type Stamps = (Option<Stamp>, Option<Stamp>);

fn stamps(files: &CertFiles) -> Stamps {
    (stamp(&files.cert), stamp(&files.key))
}

#[derive(Default)]
struct State {
    /// Per file pair: what its files looked like when last read, and the certificate last
    /// loaded from it successfully (still served if a later read failed).
    entries: Vec<(CertFiles, Stamps, Option<LoadedCert>)>,
}

/// The server's certificates and the one TLS configuration built on them.
pub struct Certificates {
    sources: CertSources,
    resolver: Arc<SniResolver>,
    config: Arc<rustls::ServerConfig>,
    state: Mutex<State>,
}

/// What one reload changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Files newly loaded (or loaded again after a change).
    pub loaded: usize,
    /// Files that failed; the certificate loaded from each before, if any, is still served.
    pub failed: usize,
    /// Files no longer there (removed from the directory).
    pub dropped: usize,
}

impl Certificates {
    /// Loads every certificate. A configured certificate that cannot be loaded is an error
    /// (the server should not start without it); a bad file in the directory is logged and
    /// skipped, since the ACME client that writes there will replace it.
    pub fn load(sources: CertSources) -> Result<Certificates, TlsError> {
        let resolver = Arc::new(SniResolver::default());
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        let mut entries = Vec::new();
        for files in &sources.configured {
            let seen = stamps(files);
            let cert = load_cert(files)?;
            entries.push((files.clone(), seen, Some(cert)));
        }
        for files in sources.dir_files() {
            let seen = stamps(&files);
            let cert = match load_cert(&files) {
                Ok(cert) => Some(cert),
                Err(e) => {
                    warn!(file = %files.cert.display(), error = %e, "certificate not loaded; {}", RETRY_HINT);
                    None
                }
            };
            entries.push((files, seen, cert));
        }
        let certs = Certificates {
            sources,
            resolver,
            config: Arc::new(config),
            state: Mutex::new(State { entries }),
        };
        let state = certs.state.lock().unwrap_or_else(|e| e.into_inner());
        for cert in state.entries.iter().filter_map(|e| e.2.as_ref()) {
            log_loaded(cert, "certificate loaded");
        }
        certs.install(&state);
        drop(state);
        Ok(certs)
    }

    /// The TLS configuration every listener and STARTTLS use. It never changes; the
    /// certificates behind it do.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.config.clone()
    }

    /// The certificates in service now, in source order (the default first).
    pub fn loaded(&self) -> Vec<LoadedCert> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.entries.iter().filter_map(|e| e.2.clone()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.loaded().is_empty()
    }

    /// Reads again every file that changed since it was last read (every file when `force`,
    /// as on SIGHUP), picks up new files in the directory and drops removed ones, then puts
    /// the new set in service at once. Failures are logged, one line per file.
    pub fn reload(&self, force: bool) -> ReloadReport {
        let mut report = ReloadReport::default();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let old = std::mem::take(&mut state.entries);
        let mut old: HashMap<CertFiles, (Stamps, Option<LoadedCert>)> = old
            .into_iter()
            .map(|(files, seen, cert)| (files, (seen, cert)))
            .collect();
        let mut changed = false;
        for files in self.sources.files() {
            let now = stamps(&files);
            let before = old.remove(&files);
            let (seen, previous) = match before {
                Some((seen, previous)) => (Some(seen), previous),
                None => (None, None),
            };
            if !force && seen == Some(now) {
                state.entries.push((files, now, previous));
                continue;
            }
            match load_cert(&files) {
                Ok(cert) => {
                    log_loaded(&cert, "certificate reloaded");
                    report.loaded += 1;
                    changed = true;
                    state.entries.push((files, now, Some(cert)));
                }
                Err(e) => {
                    report.failed += 1;
                    match &previous {
                        Some(_) => warn!(
                            file = %files.cert.display(),
                            error = %e,
                            "certificate not reloaded: still serving the one loaded before; {}",
                            RETRY_HINT
                        ),
                        None => warn!(
                            file = %files.cert.display(),
                            error = %e,
                            "certificate not loaded; {}",
                            RETRY_HINT
                        ),
                    }
                    state.entries.push((files, now, previous));
                }
            }
        }
        for (files, (_, cert)) in old {
            if cert.is_some() {
                info!(file = %files.cert.display(), "certificate file removed: no longer served");
                changed = true;
            }
            report.dropped += 1;
        }
        if changed {
            self.install(&state);
        }
        report
    }

    fn install(&self, state: &State) {
        let certs: Vec<LoadedCert> = state.entries.iter().filter_map(|e| e.2.clone()).collect();
        self.resolver.swap(CertSet::build(&certs));
    }

    /// Looks at the files every `every` and reloads what changed; reloads everything when
    /// `hup` is notified (SIGHUP). Runs until aborted.
    pub async fn watch(
        self: Arc<Self>,
        every: Duration,
        hup: Arc<Notify>,
        mut stop: crate::Shutdown,
    ) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            let force = tokio::select! {
                _ = tick.tick() => false,
                _ = hup.notified() => true,
                _ = stop.requested() => return,
            };
            let certs = self.clone();
            // File reads and parsing stay off the async threads.
            let report = tokio::task::spawn_blocking(move || certs.reload(force)).await;
            if force && let Ok(report) = report {
                info!(
                    loaded = report.loaded,
                    failed = report.failed,
                    "certificates read again on SIGHUP"
                );
            }
        }
    }
}

const RETRY_HINT: &str = "fix the file (PEM chain, then a key that belongs to it); it is read \
                          again when it changes or on SIGHUP";

fn log_loaded(cert: &LoadedCert, what: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let days_left = (cert.not_after - now).div_euclid(86_400);
    if cert.not_after <= now {
        // Served all the same: refusing would only turn "expired" into "no TLS at all".
        warn!(
            file = %cert.files.cert.display(),
            names = %cert.names.join(","),
            "{what}, but it has EXPIRED: clients will refuse it; renew it (the new file is \
             served within seconds)"
        );
    } else {
        info!(
            file = %cert.files.cert.display(),
            names = %cert.names.join(","),
            days_left,
            "{what}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make(dir: &Path, file: &str, names: &[&str]) -> CertFiles {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let cert = rcgen::generate_simple_self_signed(names).unwrap();
        let cert_path = dir.join(format!("{file}.crt"));
        let key_path = dir.join(format!("{file}.key"));
        std::fs::write(&cert_path, cert.cert.pem()).unwrap();
        std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
        CertFiles {
            cert: cert_path,
            key: key_path,
        }
    }

    /// The DER of the certificate the set hands out for `sni`.
    fn served(set: &CertSet, sni: Option<&str>) -> Option<Vec<u8>> {
        set.choose(sni).map(|k| k.cert[0].to_vec())
    }

    fn der(files: &CertFiles) -> Vec<u8> {
        let pem = std::fs::read(&files.cert).unwrap();
        rustls_pemfile::certs(&mut &pem[..])
            .next()
            .unwrap()
            .unwrap()
            .to_vec()
    }

    #[test]
    fn sni_picks_exact_then_wildcard_then_default() {
        let dir = tempfile::tempdir().unwrap();
        let a = make(dir.path(), "a", &["mail.a.test"]);
        let b = make(dir.path(), "b", &["mail.b.test", "imap.b.test"]);
        let w = make(dir.path(), "w", &["*.w.test"]);
        let certs: Vec<LoadedCert> = [&a, &b, &w].iter().map(|f| load_cert(f).unwrap()).collect();
        assert_eq!(certs[1].names, ["mail.b.test", "imap.b.test"]);
        let set = CertSet::build(&certs);
        let check = |sni: Option<&str>, want: &CertFiles| {
            assert_eq!(served(&set, sni), Some(der(want)), "for SNI {sni:?}");
        };
        check(Some("mail.a.test"), &a);
        check(Some("IMAP.B.test."), &b);
        check(Some("x.w.test"), &w);
        // A wildcard covers one label only, and not the bare domain.
        check(Some("a.x.w.test"), &a);
        check(Some("w.test"), &a);
        check(Some("unknown.test"), &a);
        check(None, &a);
        assert!(CertSet::build(&[]).choose(Some("mail.a.test")).is_none());
    }

    #[test]
    fn one_file_with_chain_and_key_loads() {
        let dir = tempfile::tempdir().unwrap();
        let split = make(dir.path(), "split", &["acme.test"]);
        let joined = dir.path().join("acme.test.pem");
        let mut text = std::fs::read(&split.cert).unwrap();
        text.extend(std::fs::read(&split.key).unwrap());
        std::fs::write(&joined, text).unwrap();
        let files = CertFiles {
            cert: joined.clone(),
            key: joined,
        };
        let cert = load_cert(&files).unwrap();
        assert_eq!(cert.names, ["acme.test"]);
        assert!(cert.not_after > cert.not_before);
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_naming_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let a = make(dir.path(), "a", &["a.test"]);
        let b = make(dir.path(), "b", &["b.test"]);
        let crossed = CertFiles {
            cert: a.cert.clone(),
            key: b.key,
        };
        let e = load_cert(&crossed).unwrap_err();
        assert!(matches!(e, TlsError::Mismatch { .. }), "{e}");
        let text = e.to_string();
        assert!(text.contains("a.crt") && text.contains("b.key"), "{text}");
    }

    #[test]
    fn reload_serves_a_replaced_file_and_keeps_the_old_one_when_the_new_is_bad() {
        let dir = tempfile::tempdir().unwrap();
        let acme = dir.path().join("acme");
        std::fs::create_dir(&acme).unwrap();
        let main = make(dir.path(), "main", &["mail.test"]);
        let certs = Certificates::load(CertSources {
            configured: vec![main.clone()],
            dir: Some(acme.clone()),
        })
        .unwrap();
        let now = || certs.resolver.current();
        assert_eq!(served(&now(), Some("mail.test")), Some(der(&main)));
        assert_eq!(certs.reload(false), ReloadReport::default());

        // Replaced with another certificate for the same name: served after the reload.
        let next = make(dir.path(), "next", &["mail.test"]);
        std::fs::rename(&next.cert, &main.cert).unwrap();
        std::fs::rename(&next.key, &main.key).unwrap();
        let report = certs.reload(false);
        assert_eq!(report.loaded, 1);
        let second = der(&main);
        assert_eq!(served(&now(), Some("mail.test")), Some(second.clone()));

        // A broken replacement: the certificate loaded before is still served.
        std::fs::write(&main.cert, "-----BEGIN CERTIFICATE-----\ngarbage\n").unwrap();
        assert_eq!(certs.reload(false).failed, 1);
        assert_eq!(served(&now(), Some("mail.test")), Some(second.clone()));
        // A missing file, the same.
        std::fs::remove_file(&main.key).unwrap();
        assert_eq!(certs.reload(false).failed, 1);
        assert_eq!(served(&now(), None), Some(second.clone()));
        // An unchanged failure is not read (nor logged) again on every poll.
        assert_eq!(certs.reload(false), ReloadReport::default());

        // A file appearing in the directory is picked up by SNI; its removal drops it.
        let other = make(dir.path(), "other", &["other.test"]);
        let mut joined = std::fs::read(&other.cert).unwrap();
        joined.extend(std::fs::read(&other.key).unwrap());
        std::fs::write(acme.join("other.test.pem"), joined).unwrap();
        assert_eq!(certs.reload(false).loaded, 1);
        assert_eq!(served(&now(), Some("other.test")), Some(der(&other)));
        assert_eq!(served(&now(), Some("mail.test")), Some(second.clone()));
        std::fs::remove_file(acme.join("other.test.pem")).unwrap();
        assert_eq!(certs.reload(false).dropped, 1);
        assert_eq!(served(&now(), Some("other.test")), Some(second));
    }

    #[test]
    fn a_missing_configured_certificate_is_an_error_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let e = Certificates::load(CertSources {
            configured: vec![CertFiles {
                cert: dir.path().join("nope.crt"),
                key: dir.path().join("nope.key"),
            }],
            dir: None,
        })
        .err()
        .unwrap();
        assert!(e.to_string().contains("nope.crt"), "{e}");
    }
}
