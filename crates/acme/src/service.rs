//! The renewal service inside `tegami serve`: at start and then every `check_interval`, each
//! configured certificate is obtained when missing and renewed when it expires within
//! `renew_before`. A failure leaves the current file alone, is logged with the CA's words and
//! a hint, recorded in `status.json` (which the alerts read), and retried with a back-off
//! that doubles from `retry_first` up to `check_interval`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use instant_acme::Account;
use tracing::{info, warn};

use crate::files::{CertStatus, Due, Status, cert_path, due, read_cert, write_private};
use crate::{AcmeConfig, Challenges, Error, Issued, create_account, issue, load_or_create_account};

pub struct Service {
    data: PathBuf,
    config: AcmeConfig,
    challenges: Arc<Challenges>,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The wait after `failures` failures in a row: `first`, doubling, at most `cap`.
pub(crate) fn backoff(failures: u32, first: Duration, cap: Duration) -> Duration {
    let shift = failures.saturating_sub(1).min(20);
    first
        .saturating_mul(1 << shift)
        .min(cap)
        .max(Duration::from_secs(1))
}

impl Service {
    pub fn new(data: PathBuf, config: AcmeConfig) -> Service {
        Service {
            data,
            config,
            challenges: Arc::default(),
        }
    }

    /// The HTTP-01 route for the HTTP listener.
    pub fn router(&self) -> axum::Router {
        crate::router(self.challenges.clone())
    }

    /// Runs until `shutdown`; an issuance in flight is dropped then (nothing is written
    /// before the final rename, so nothing is left half done).
    pub async fn run(self, mut shutdown: net::Shutdown) {
        let mut status = match Status::load(&self.data) {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "ACME status unreadable; starting afresh");
                Status::default()
            }
        };
        status
            .certificates
            .retain(|first, _| self.config.certificates.iter().any(|n| &n[0] == first));
        let mut account: Option<Account> = None;
        loop {
            let mut wake = now() + self.config.check_interval.as_secs() as i64;
            for names in &self.config.certificates {
                let first = &names[0];
                let state = status.certificates.entry(first.clone()).or_default();
                let attempt = self.pass(names, state, &mut account);
                let next = tokio::select! {
                    next = attempt => next,
                    _ = shutdown.requested() => return,
                };
                if let Some(next) = next {
                    wake = wake.min(next);
                }
            }
            if let Err(e) = status.save(&self.data) {
                warn!(error = %e, hint = e.hint(), "cannot write the ACME status file");
            }
            let wait = Duration::from_secs((wake - now()).clamp(1, i64::MAX) as u64)
                .min(self.config.check_interval);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.requested() => return,
            }
        }
    }

    /// Looks at one certificate and asks the CA if it is due; returns when to look again
    /// (before the regular interval), if sooner.
    async fn pass(
        &self,
        names: &[String],
        state: &mut CertStatus,
        account: &mut Option<Account>,
    ) -> Option<i64> {
        let first = &names[0];
        let path = cert_path(&self.data, first);
        let current = match read_cert(&path) {
            Ok(c) => c,
            Err(e) => {
                warn!(certificate = %first, error = %e, hint = e.hint(), "the certificate file is unusable; asking for a new one");
                None
            }
        };
        state.names = names.to_vec();
        state.not_after = current.as_ref().map(|c| c.not_after);
        state.serial = current.as_ref().map(|c| c.serial.clone());
        let now = now();
        let why = match due(current.as_ref(), names, now, self.config.renew_before) {
            Due::NotYet { renew_at } => {
                // A usable certificate that is not due leaves nothing failing (the names or
                // renew_before may have changed since the last failure).
                state.next_attempt = None;
                state.failures = 0;
                state.last_error = None;
                return Some(renew_at);
            }
            Due::Missing => "no certificate yet",
            Due::NamesChanged => "the configured names changed",
            Due::Expiring { .. } => "the certificate expires soon",
        };
        if let Some(next) = state.next_attempt.filter(|&t| t > now) {
            return Some(next);
        }
        info!(certificate = %first, names = ?names, reason = why, directory = %self.config.directory, "asking the ACME server for a certificate");
        state.last_attempt = Some(now);
        let result =
            match tokio::time::timeout(self.config.timeout, self.obtain(names, account)).await {
                Ok(r) => r,
                Err(_) => Err(Error::Timeout(self.config.timeout)),
            }
            .and_then(|issued| {
                write_private(&path, issued.pem.as_bytes())?;
                Ok(issued)
            });
        match result {
            Ok(issued) => {
                info!(
                    certificate = %first,
                    serial = %issued.info.serial,
                    not_after = issued.info.not_after,
                    issuer = %issued.info.issuer,
                    file = %path.display(),
                    "certificate obtained and saved"
                );
                state.not_after = Some(issued.info.not_after);
                state.serial = Some(issued.info.serial);
                state.last_success = Some(now);
                state.last_error = None;
                state.failures = 0;
                state.next_attempt = None;
                let renew_at = issued.info.not_after - self.config.renew_before.as_secs() as i64;
                Some(renew_at)
            }
            Err(e) => {
                // The next attempt starts over: a new account lookup and a fresh directory.
                *account = None;
                state.failures += 1;
                let wait = backoff(
                    state.failures,
                    self.config.retry_first,
                    self.config.check_interval,
                );
                let next = now + wait.as_secs() as i64;
                state.next_attempt = Some(next);
                state.last_error = Some(format!("{e}; {}", e.hint()));
                let keeps = match &current {
                    Some(c) => format!(
                        "the current certificate (expires {}) stays in use",
                        jiff::Timestamp::from_second(c.not_after)
                            .map(|t| t.to_string())
                            .unwrap_or_default()
                    ),
                    None => "no certificate to serve yet".to_string(),
                };
                warn!(
                    certificate = %first,
                    error = %e,
                    hint = e.hint(),
                    failures = state.failures,
                    retry_in_secs = wait.as_secs(),
                    "ACME certificate renewal failed; {keeps}"
                );
                Some(next)
            }
        }
    }

    async fn obtain(
        &self,
        names: &[String],
        account: &mut Option<Account>,
    ) -> Result<Issued, Error> {
        if account.is_none() {
            *account = Some(load_or_create_account(&self.data, &self.config).await?);
        }
        let first = issue(
            account.as_ref().expect("set above"),
            &self.config.directory,
            names,
            &self.challenges,
            self.config.timeout,
        )
        .await;
        match first {
            Err(e) if e.is_unknown_account() => {
                warn!(directory = %self.config.directory, error = %e, "the CA does not know tegami's account; registering a new one");
                let fresh = create_account(&self.data, &self.config).await?;
                let issued = issue(
                    &fresh,
                    &self.config.directory,
                    names,
                    &self.challenges,
                    self.config.timeout,
                )
                .await;
                *account = Some(fresh);
                issued
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_back_off_doubles_up_to_the_interval() {
        let s = Duration::from_secs;
        let waits: Vec<_> = (1..=6)
            .map(|f| backoff(f, s(60), s(600)).as_secs())
            .collect();
        assert_eq!(waits, [60, 120, 240, 480, 600, 600]);
        assert_eq!(backoff(1000, s(60), s(600)), s(600));
        assert_eq!(backoff(1, Duration::ZERO, s(600)), s(1));
    }
}
