//! Counters of the delivery engine, read by the binary's `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

/// The classes of temporary failure, as `Settlement::Deferred::reason` spells them.
pub const DEFER_REASONS: &[&str] = &[
    "connect", "dns", "tls", "timeout", "4xx", "auth", "protocol", "local",
];

/// Counters since start. Everything is relaxed: they are statistics, not
/// synchronisation.
#[derive(Debug)]
pub struct Metrics {
    /// Recipients delivered (remote 250, or local INBOX).
    pub delivered: AtomicU64,
    /// Recipients that failed for good (bounced, or dropped for a null sender).
    pub failed: AtomicU64,
    /// Recipient deferrals, by [`DEFER_REASONS`] index; unknown reasons count as the last.
    deferred: [AtomicU64; DEFER_REASONS.len()],
    /// SMTP transactions tried (one message to one destination), and local deliveries.
    pub attempts: AtomicU64,
    /// Connections opened (successfully) to remote hosts.
    pub connections: AtomicU64,
    /// DSNs queued (failure and delay).
    pub notices: AtomicU64,
    /// Messages held back by a destination's rate limit (not attempts).
    pub rate_limited: AtomicU64,
}

/// One value for the exposition format: `name{labels} value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub name: &'static str,
    pub labels: Vec<(&'static str, &'static str)>,
    pub value: u64,
}

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU64 = AtomicU64::new(0);

pub static METRICS: Metrics = Metrics {
    delivered: ZERO,
    failed: ZERO,
    deferred: [ZERO; DEFER_REASONS.len()],
    attempts: ZERO,
    connections: ZERO,
    notices: ZERO,
    rate_limited: ZERO,
};

impl Metrics {
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn deferred(&self, reason: &str) {
        let i = DEFER_REASONS
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(DEFER_REASONS.len() - 1);
        Self::add(&self.deferred[i]);
    }

    pub fn deferred_count(&self, reason: &str) -> u64 {
        DEFER_REASONS
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |i| self.deferred[i].load(Ordering::Relaxed))
    }

    /// Every counter, named as Prometheus counters (`tegami_outbound_*_total`).
    pub fn samples(&self) -> Vec<Sample> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let plain = |name, value| Sample {
            name,
            labels: Vec::new(),
            value,
        };
        let mut out = vec![
            plain("tegami_outbound_delivered_total", get(&self.delivered)),
            plain("tegami_outbound_failed_total", get(&self.failed)),
            plain("tegami_outbound_attempts_total", get(&self.attempts)),
            plain("tegami_outbound_connections_total", get(&self.connections)),
            plain("tegami_outbound_notices_total", get(&self.notices)),
            plain(
                "tegami_outbound_rate_limited_total",
                get(&self.rate_limited),
            ),
        ];
        for (reason, counter) in DEFER_REASONS.iter().zip(&self.deferred) {
            out.push(Sample {
                name: "tegami_outbound_deferred_total",
                labels: vec![("reason", reason)],
                value: get(counter),
            });
        }
        out
    }
}
