//! Storage quotas: setting them, reading them, and the warning an owner gets once their
//! account is nearly full. The limit itself is enforced by the store in every write that
//! adds mail (see `store::Quota`); the protocols answer with its codes.

use serde::Serialize;
use store::{AccountQuota, Quota, QuotaUse, human_bytes};

use crate::{Error, Ops, Result};

/// Below this share of its limit an account that was warned may be warned again: the gap
/// to [`Quota::WARN_PERCENT`] keeps an account that hovers at the line from being warned
/// at every message.
const REARM_PERCENT: u64 = 80;

/// Reads a limit as an operator writes it: bytes, or a number with K, M, G or T (powers of
/// 1024, with or without "iB"/"B"), e.g. "500M", "2GiB", "1.5G"; "none" for no limit.
pub fn parse_limit(text: &str) -> Result<Option<u64>> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("none") || text.eq_ignore_ascii_case("unlimited") {
        return Ok(None);
    }
    let bad = || {
        Error::invalid(format!(
            "cannot read {text:?} as a size; write bytes or a number with K, M, G or T \
             (e.g. 500M, 2G), or none"
        ))
    };
    let upper = text.to_ascii_uppercase();
    let digits_end = upper
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(upper.len());
    let (number, unit) = upper.split_at(digits_end);
    let shift = match unit.trim().trim_end_matches("IB").trim_end_matches('B') {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(bad()),
    };
    let value: f64 = number.parse().map_err(|_| bad())?;
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes >= i64::MAX as f64 {
        return Err(bad());
    }
    Ok(Some(bytes.round() as u64))
}

/// A limit as people read it: "2.0 GiB", or "none".
pub fn show_limit(limit: Option<u64>) -> String {
    limit.map_or_else(|| "none".to_owned(), human_bytes)
}

/// What one round of [`Ops::quota_warnings`] did.
#[derive(Debug, Default, Serialize)]
pub struct QuotaWarnings {
    /// The accounts whose owners were sent the warning.
    pub warned: Vec<String>,
    /// Accounts that have room again and will be warned when they next fill up.
    pub rearmed: usize,
}

impl Ops {
    /// Sets an account's own limit (`None`: its domain's default applies).
    pub fn account_quota_set(&self, address: &str, limit: Option<u64>) -> Result<AccountQuota> {
        self.store().set_quota(address, limit)?;
        self.account_quota(address)
    }

    pub fn account_quota(&self, address: &str) -> Result<AccountQuota> {
        Ok(self.store().account_quota(address)?)
    }

    /// Sets the limit of a domain's accounts that have none of their own.
    pub fn domain_quota_set(&self, domain: &str, limit: Option<u64>) -> Result<()> {
        Ok(self.store().set_domain_quota(domain, limit)?)
    }

    pub fn domain_quota(&self, domain: &str) -> Result<Option<u64>> {
        Ok(self.store().domain_quota(domain)?)
    }

    /// Every account under a limit, fullest first: for `stats quota` and the alerts.
    pub fn quota_usage(&self) -> Result<Vec<QuotaUse>> {
        let mut usage = self.store().quota_usage()?;
        usage.sort_by_key(|u| std::cmp::Reverse(u.quota.percent()));
        Ok(usage)
    }

    /// Tells each owner whose account passed [`Quota::WARN_PERCENT`] of its limit, once per
    /// filling: the mark is cleared when the account drops below [`REARM_PERCENT`]. The
    /// warning is delivered to the account's own INBOX; if even that does not fit, the
    /// account is marked all the same (its owner learns from the refused mail, the operator
    /// from the alert).
    pub fn quota_warnings(&self) -> Result<QuotaWarnings> {
        let store = self.store();
        let mut done = QuotaWarnings::default();
        let now = self.clock().now();
        for usage in store.quota_usage()? {
            let percent = usage.quota.percent().unwrap_or(0);
            if usage.warned && percent < REARM_PERCENT {
                store.set_quota_warned(usage.account, false)?;
                done.rearmed += 1;
            } else if !usage.warned && usage.quota.nearly_full() {
                let mail = warning_mail(&self.config().hostname, &usage, &now);
                match store.deliver(&mail, &[usage.account]) {
                    Ok(_) | Err(store::StoreError::OverQuota { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
                store.set_quota_warned(usage.account, true)?;
                tracing::info!(account = %usage.address, percent, "quota warning sent");
                done.warned.push(usage.address);
            }
        }
        Ok(done)
    }
}

/// The warning mail: what is used, the limit, and what to do.
fn warning_mail(hostname: &str, usage: &QuotaUse, now: &jiff::Zoned) -> Vec<u8> {
    let Quota { used, limit } = usage.quota;
    let limit = limit.unwrap_or(0);
    let percent = usage.quota.percent().unwrap_or(0);
    format!(
        "Return-Path: <>\r\nFrom: tegami <postmaster@{hostname}>\r\nTo: <{address}>\r\n\
         Subject: Your mailbox is {percent} % full\r\nDate: {date}\r\n\
         Message-ID: <{stamp}.quota.{account}@{hostname}>\r\n\
         Auto-Submitted: auto-generated\r\nX-Tegami-Alert: quota_warning\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n\
         Your mailbox {address} uses {used} of its {limit} ({percent} %).\r\n\r\n\
         Once it is full, new mail waits at the sender's server and is returned to the\r\n\
         sender if no room is made in time. Delete or archive mail you no longer need\r\n\
         (empty the Trash and Junk folders too), or ask your administrator for more space.\r\n\
         \r\n-- \r\ntegami on {hostname}\r\n",
        address = usage.address,
        used = human_bytes(used),
        limit = human_bytes(limit),
        date = now.strftime("%a, %d %b %Y %H:%M:%S %z"),
        stamp = now.timestamp().as_second(),
        account = usage.account.0,
    )
    .into_bytes()
}

/// The service that sends the warnings: a round at start and every few seconds after (a
/// round reads one row per account under a limit).
pub async fn watch(ops: std::sync::Arc<Ops>, mut stop: net::Shutdown) {
    loop {
        let round = ops.clone();
        match tokio::task::spawn_blocking(move || round.quota_warnings()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = e.one_line(), "quota warnings failed"),
            Err(e) => tracing::warn!(error = %e, "quota warnings task failed"),
        }
        if !stop
            .pause(tokio::time::sleep(std::time::Duration::from_secs(10)))
            .await
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_read_as_operators_write_them() {
        assert_eq!(parse_limit("1000").unwrap(), Some(1000));
        assert_eq!(parse_limit("500M").unwrap(), Some(500 << 20));
        assert_eq!(parse_limit("2GiB").unwrap(), Some(2 << 30));
        assert_eq!(parse_limit("1.5g").unwrap(), Some(3 << 29));
        assert_eq!(parse_limit(" 64 KB ").unwrap(), Some(64 << 10));
        assert_eq!(parse_limit("none").unwrap(), None);
        for bad in ["", "G", "12X", "-5M", "1e99", "9999999T"] {
            let err = parse_limit(bad).unwrap_err().to_string();
            assert!(err.contains("500M"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_warning_names_the_account_its_use_and_what_to_do() {
        let usage = QuotaUse {
            account: store::AccountId(7),
            address: "ann@example.com".into(),
            quota: Quota {
                used: 950 << 20,
                limit: Some(1 << 30),
            },
            warned: false,
        };
        let now = jiff::Timestamp::from_second(1_800_000_000)
            .unwrap()
            .to_zoned(jiff::tz::TimeZone::UTC);
        let mail = String::from_utf8(warning_mail("mx.example.com", &usage, &now)).unwrap();
        assert!(
            mail.contains("Subject: Your mailbox is 92 % full\r\n"),
            "{mail}"
        );
        assert!(
            mail.contains("uses 950.0 MiB of its 1.0 GiB (92 %)"),
            "{mail}"
        );
        assert!(mail.contains("To: <ann@example.com>"), "{mail}");
        assert!(mail.contains("Auto-Submitted: auto-generated"), "{mail}");
    }
}
