//! What the network sees: whether a server runs here and can bind its listeners, the TLS
//! certificates it serves, and what outgoing mail needs (authentication, routing, DKIM).

use std::fs::{self, File};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use jiff::{Timestamp, Zoned};

use super::{Group, Verdict, fail, fine, not_yours_hint, warn};
use crate::config::Config;

enum LockState {
    /// No lock file: no server has run here.
    Absent,
    Free,
    /// Held by a running server; the pid it wrote, for people.
    Held(String),
}

/// Whether a server holds the data directory: try its kernel lock and let go at once.
fn lock_state(data: &Path) -> io::Result<LockState> {
    let path = data.join("tegami.lock");
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(LockState::Absent),
        Err(e) => return Err(e),
    };
    match file.try_lock() {
        Ok(()) => Ok(LockState::Free), // released when `file` is dropped
        Err(fs::TryLockError::WouldBlock) => Ok(LockState::Held(
            fs::read_to_string(&path)
                .unwrap_or_default()
                .trim()
                .to_string(),
        )),
        Err(fs::TryLockError::Error(e)) => Err(e),
    }
}

pub(super) fn listeners(data: &Path, config: &Config) -> Group {
    let mut g = Group::new("Listeners");
    let lock = lock_state(data);
    // Asked from inside the running server (its web console): it bound every configured
    // address before it wrote its pid, and probing would only show what this process,
    // no longer root, may bind.
    let this_server = matches!(&lock, Ok(LockState::Held(pid)) if pid.parse::<u32>().ok() == Some(std::process::id()));
    let running = match lock {
        Ok(LockState::Held(pid)) => {
            let pid = if pid.is_empty() {
                String::new()
            } else {
                format!(" (pid {pid})")
            };
            g.ok("server", format!("running{pid}: it holds tegami.lock"));
            true
        }
        Ok(LockState::Free) => {
            g.ok("server", "not running (tegami.lock is free)");
            false
        }
        Ok(LockState::Absent) => {
            g.ok("server", "not running (no server has run here yet)");
            false
        }
        Err(e) => {
            g.judge(
                "server",
                format!("cannot tell: tegami.lock: {e}"),
                warn(not_yours_hint()),
            );
            false
        }
    };
    let implicit = config
        .implicit_tls_listeners()
        .into_iter()
        .map(|(name, addr)| {
            let name = match name {
                "imaps" => "IMAPS",
                "pop3s" => "POP3S",
                _ => "Submissions",
            };
            (name, addr)
        });
    for (name, addr) in [
        ("SMTP", config.smtp.listen),
        ("Submission", config.submission.listen),
        ("POP3", config.pop3.listen),
        ("IMAP", config.imap.listen),
        ("HTTP", config.http),
    ]
    .into_iter()
    .chain(implicit)
    {
        if this_server {
            g.ok(name, listening_here(addr));
            continue;
        }
        // Binding and dropping at once: nothing listens, nothing is left behind.
        let probe = TcpListener::bind(addr).map(drop);
        let (value, verdict) = listener_verdict(addr, probe, running);
        g.judge(name, value, verdict);
    }
    g
}

/// A configured address of the server asking about itself.
fn listening_here(addr: SocketAddr) -> String {
    if addr.port() == 0 {
        format!("{addr}: listening on the free port chosen at start-up")
    } else {
        format!("{addr}: listening (this server)")
    }
}

fn listener_verdict(addr: SocketAddr, probe: io::Result<()>, running: bool) -> (String, Verdict) {
    if addr.port() == 0 {
        // Port 0 binds anywhere, so probing it says nothing.
        return (
            format!("{addr}: a free port chosen when the server starts"),
            fine(),
        );
    }
    match probe {
        Ok(()) if !running => (format!("{addr} free (the server is not running)"), fine()),
        Ok(()) => (
            format!("{addr} free, yet the server is running"),
            warn(
                "the running server listens elsewhere: it was started with --smtp/--pop3 or \
                 another --config; \
                 doctor checks the addresses of the config it was given",
            ),
        ),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse && running => {
            (format!("{addr} in use (by the running server)"), fine())
        }
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => (
            format!("{addr} in use by another program"),
            fail(format!(
                "`tegami serve` cannot bind it: stop that program (`ss -ltnp 'sport = :{}'` \
                 names it) or choose another address in the config file",
                addr.port()
            )),
        ),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => (
            format!("{addr}: not allowed to bind it"),
            warn(
                "ports below 1024 need root or CAP_NET_BIND_SERVICE (`setcap \
                 cap_net_bind_service=+ep $(command -v tegami)`); \
                 run doctor as the server's user to tell whether the port is in use",
            ),
        ),
        Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => (
            format!("{addr}: this machine has no such address"),
            fail(
                "listen on an address this machine has (see `ip addr`), or 0.0.0.0 for all of them",
            ),
        ),
        Err(e) => (
            format!("{addr}: {e}"),
            warn("check the listen address in the config file"),
        ),
    }
}

// ---------------------------------------------------------------------------------------
// TLS

pub(super) fn tls(data: &Path, config: &Config, now: &Zoned) -> Group {
    let mut g = Group::new("TLS");
    let exposed: Vec<String> = [config.smtp.listen, config.pop3.listen]
        .iter()
        .filter(|a| !a.ip().is_loopback())
        .map(|a| a.to_string())
        .collect();
    let sources = config.tls_sources(data);
    let files = sources.files();
    if files.is_empty() {
        if exposed.is_empty() {
            g.ok("TLS", "not configured (the listeners are on loopback only)");
        } else {
            g.judge(
                "TLS",
                format!(
                    "not configured, yet {} can be reached from other \
                         machines",
                    exposed.join(", ")
                ),
                warn(format!(
                    "passwords and mail cross the network in clear: set [tls] cert and key in \
                     the config file \
                     (for example a Let's Encrypt certificate for {})",
                    config.hostname
                )),
            );
        }
        return g;
    }
    let configured = sources.configured.len();
    let mut names = Vec::new();
    for (i, files) in files.iter().enumerate() {
        let setting = if i < configured {
            "[tls] cert and key"
        } else {
            "the ACME certificate"
        };
        names.extend(one_certificate(&mut g, files, setting, now));
    }
    // With several certificates, one of them must cover the server's own name.
    let verdict = if names.iter().any(|n| cert_name_matches(n, &config.hostname)) {
        fine()
    } else {
        warn(format!(
            "no certificate is issued for the server name {}: clients that check names will \
             refuse it; get a certificate for {}, or set `hostname` to a name one covers",
            config.hostname, config.hostname
        ))
    };
    g.judge("certificate names", names.join(", "), verdict);
    let implicit: Vec<String> = config
        .implicit_tls_listeners()
        .iter()
        .map(|(name, addr)| format!("{name} {addr}"))
        .collect();
    g.ok(
        "implicit TLS",
        if implicit.is_empty() {
            "listeners at their defaults (127.0.0.1:2993, :2995, :2465)".to_string()
        } else {
            implicit.join(", ")
        },
    );
    g
}

/// One certificate and its key: readable, valid, not expiring soon, belonging together.
/// Returns the names it covers (none when it cannot be read).
fn one_certificate(
    g: &mut Group,
    files: &net::CertFiles,
    setting: &str,
    now: &Zoned,
) -> Vec<String> {
    let Some(names) = certificate(g, &files.cert, setting, now) else {
        return Vec::new();
    };
    let key = &files.key;
    let key_read = match fs::metadata(key).and_then(|m| File::open(key).map(|_| m)) {
        Ok(meta) => {
            let mode = meta.mode() & 0o7777;
            let verdict = if mode & 0o004 != 0 {
                warn(format!(
                    "every user of this machine can read the private key: chmod 600 {}",
                    key.display()
                ))
            } else {
                fine()
            };
            g.judge(
                "key",
                format!("{} readable, mode {mode:04o}", key.display()),
                verdict,
            );
            true
        }
        Err(e) => {
            let hint = unreadable_hint(&e, setting);
            g.judge("key", format!("{}: {e}", key.display()), fail(hint));
            false
        }
    };
    if key_read {
        match net::load_cert(files) {
            Ok(_) => g.ok(
                "key pair",
                format!(
                    "{}: the certificate and key load as the server loads them",
                    files.cert.display()
                ),
            ),
            Err(e) => g.judge(
                "key pair",
                e.to_string(),
                fail(format!(
                    "the server will not serve this certificate: check that the key belongs to \
                     the certificate (PEM files; {setting})"
                )),
            ),
        }
    }
    names
}

/// What to do about a file the server needs and doctor cannot read.
fn unreadable_hint(e: &io::Error, setting: &str) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => {
            format!("the server cannot start without it: correct {setting} in the config file")
        }
        io::ErrorKind::PermissionDenied => not_yours_hint(),
        _ => "the server cannot start without it".into(),
    }
}

/// The certificate's validity; its names, or None when it cannot be read at all.
fn certificate(g: &mut Group, path: &Path, setting: &str, now: &Zoned) -> Option<Vec<String>> {
    let file = path.display();
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) => {
            let hint = unreadable_hint(&e, setting);
            g.judge("certificate", format!("{file}: {e}"), fail(hint));
            return None;
        }
    };
    let pem = x509_parser::pem::Pem::iter_from_buffer(&bytes)
        .filter_map(Result::ok)
        .find(|p| p.label == "CERTIFICATE");
    let Some(pem) = pem else {
        g.judge(
            "certificate",
            format!("{file}: no PEM certificate in it"),
            fail(format!(
                "{setting} must name a PEM file starting with -----BEGIN CERTIFICATE----- \
                  (the full chain, server certificate first)"
            )),
        );
        return Some(Vec::new());
    };
    let cert = match pem.parse_x509() {
        Ok(cert) => cert,
        Err(e) => {
            g.judge(
                "certificate",
                format!("{file}: {e}"),
                fail("the certificate is damaged: install it again"),
            );
            return Some(Vec::new());
        }
    };
    let validity = cert.validity();
    let (not_before, not_after) = (
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    );
    let date = |t: i64| {
        Timestamp::from_second(t)
            .map(|t| {
                t.to_zoned(now.time_zone().clone())
                    .strftime("%Y-%m-%d %H:%M %Z")
                    .to_string()
            })
            .unwrap_or_default()
    };
    let (level, days) = expiry(not_before, not_after, now.timestamp().as_second());
    let subject = cert.subject();
    let (value, verdict) = match level {
        Expiry::NotYetValid => (
            format!("{file}: {subject}, valid only from {}", date(not_before)),
            fail("check this machine's clock, or the certificate"),
        ),
        Expiry::Expired => (
            format!(
                "{file}: {subject}, expired {} ({} days ago)",
                date(not_after),
                -days
            ),
            fail(
                "renew it (for example `certbot renew`): clients refuse an expired \
                 certificate; tegami serves the new file within seconds of it changing",
            ),
        ),
        Expiry::Soon => (
            format!(
                "{file}: {subject}, expires {} (in {days} days)",
                date(not_after)
            ),
            warn(
                "renew it now; automatic renewal (ACME) acts 30 days ahead, so it may be \
                 failing: see log/tegami.log",
            ),
        ),
        Expiry::Valid => (
            format!(
                "{file}: {subject}, expires {} (in {days} days)",
                date(not_after)
            ),
            fine(),
        ),
    };
    g.judge("certificate", value, verdict);

    Some(net::certificate_names(&cert))
}

#[derive(Debug, PartialEq, Eq)]
enum Expiry {
    NotYetValid,
    Expired,
    /// Less than three weeks left.
    Soon,
    Valid,
}

/// How a certificate valid from `not_before` to `not_after` stands at `now` (seconds since
/// the epoch), and the whole days left (negative once expired).
fn expiry(not_before: i64, not_after: i64, now: i64) -> (Expiry, i64) {
    let days = (not_after - now) / 86_400;
    let level = if now < not_before {
        Expiry::NotYetValid
    } else if now >= not_after {
        Expiry::Expired
    } else if days < 21 {
        Expiry::Soon
    } else {
        Expiry::Valid
    };
    (level, days)
}

/// A certificate name covers a host name exactly, or as a wildcard for one leftmost label.
fn cert_name_matches(pattern: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.');
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(first, rest)| !first.is_empty() && rest.eq_ignore_ascii_case(suffix)),
        None => pattern.trim_end_matches('.').eq_ignore_ascii_case(host),
    }
}

/// What outgoing mail needs: a way to authenticate users safely, and DKIM keys.
pub(super) fn sending(data: &Path, config: &Config) -> Group {
    let mut g = Group::new("sending");
    let sub = &config.submission;
    // ACME certificates count as much as configured ones: the server serves both.
    let has_certificate = config.tls.is_some() || config.acme.is_some();
    if !has_certificate && sub.require_tls && !sub.listen.ip().is_loopback() {
        g.judge(
            "submission AUTH",
            "no certificate ([tls] or [acme]): only clients on loopback can log in to submit",
            warn("set [tls] cert and key, or [acme], so users can authenticate over TLS"),
        );
    } else if !sub.require_tls {
        g.judge(
            "submission AUTH",
            "allowed without TLS ([submission] require_tls = false)",
            warn("passwords may cross the network in clear text; set require_tls = true"),
        );
    } else {
        g.ok("submission AUTH", "after STARTTLS (or from loopback)");
    }
    let route = match &config.queue.smart_host {
        Some(host) => format!("smart host {}:{}", host.host, host.port),
        None => "MX lookup".to_string(),
    };
    let statics = config.queue.routes.len();
    g.ok(
        "routing",
        if statics == 0 {
            route
        } else {
            format!("{route}, {statics} static route(s)")
        },
    );
    let dkim = data.join("dkim");
    let mut domains: Vec<String> = fs::read_dir(&dkim)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    domains.sort();
    if domains.is_empty() {
        g.judge(
            "DKIM",
            "no keys: outgoing mail is not signed, and many receivers file it as spam",
            warn("run `tegami domain dkim DOMAIN` and publish the TXT record it prints"),
        );
    } else {
        g.ok("DKIM", format!("keys for {}", domains.join(", ")));
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Severity;

    #[test]
    fn certificate_expiry_is_judged_in_days() {
        let day = 86_400;
        let now = 1_000 * day;
        assert_eq!(expiry(now - day, now + 90 * day, now), (Expiry::Valid, 90));
        assert_eq!(expiry(now - day, now + 21 * day, now), (Expiry::Valid, 21));
        assert_eq!(
            expiry(now - day, now + 21 * day - 1, now),
            (Expiry::Soon, 20)
        );
        assert_eq!(expiry(now - day, now + 1, now), (Expiry::Soon, 0));
        assert_eq!(expiry(now - 90 * day, now, now).0, Expiry::Expired);
        assert_eq!(
            expiry(now - 90 * day, now - 3 * day, now),
            (Expiry::Expired, -3)
        );
        assert_eq!(expiry(now + 1, now + 90 * day, now).0, Expiry::NotYetValid);
    }

    #[test]
    fn certificate_names_cover_host_names() {
        assert!(cert_name_matches("mail.example.com", "MAIL.example.com."));
        assert!(cert_name_matches("*.example.com", "mail.example.com"));
        assert!(!cert_name_matches("*.example.com", "example.com"));
        assert!(!cert_name_matches("*.example.com", "a.mail.example.com"));
    }

    #[test]
    fn a_port_in_use_fails_unless_the_server_holds_it() {
        let addr: SocketAddr = "127.0.0.1:25".parse().unwrap();
        let in_use = || Err(io::Error::from(io::ErrorKind::AddrInUse));
        assert_eq!(listener_verdict(addr, in_use(), true).1.0, Severity::Ok);
        let (value, verdict) = listener_verdict(addr, in_use(), false);
        assert_eq!(value, "127.0.0.1:25 in use by another program");
        assert_eq!(verdict.0, Severity::Fail);
        assert_eq!(listener_verdict(addr, Ok(()), true).1.0, Severity::Warn);
        assert_eq!(listener_verdict(addr, Ok(()), false).1.0, Severity::Ok);
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        assert_eq!(listener_verdict(any, Ok(()), true).1.0, Severity::Ok);
    }

    #[test]
    fn the_server_asking_about_itself_reports_its_addresses_without_probing() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let mut lock = File::create(dir.path().join("tegami.lock")).unwrap();
        lock.try_lock().unwrap();
        writeln!(lock, "{}", std::process::id()).unwrap();
        let config = Config::load(None).unwrap();
        let findings = listeners(dir.path(), &config).findings;
        let names: Vec<&str> = findings.iter().map(|f| f.item.as_str()).collect();
        assert_eq!(
            names,
            ["server", "SMTP", "Submission", "POP3", "IMAP", "HTTP"]
        );
        for f in &findings[1..] {
            assert_eq!(f.status, Severity::Ok, "{f:?}");
            assert!(f.value.ends_with("listening (this server)"), "{f:?}");
        }
        // Another holder (a pid not ours) is probed as before.
        use std::io::{Seek, SeekFrom};
        lock.set_len(0).unwrap();
        lock.seek(SeekFrom::Start(0)).unwrap();
        write!(lock, "1").unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("tegami.lock")).unwrap(),
            "1"
        );
        let findings = listeners(dir.path(), &config).findings;
        assert!(
            findings[1..]
                .iter()
                .all(|f| !f.value.contains("this server"))
        );
    }
}
