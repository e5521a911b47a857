//! When to try again, when to give up and when to tell the sender: the pure decisions
//! that turn one attempt's outcome into a store `Settlement`.

use std::time::Duration;

use crate::config::QueueConfig;

/// Why an attempt did not deliver, in the words a DSN and the logs need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// Short class for metrics and `last_reason`: "connect", "dns", "tls", "timeout",
    /// "4xx", "5xx", "local", ...
    pub reason: &'static str,
    /// RFC 3463 status, such as "5.1.1".
    pub status: String,
    /// The remote reply as `smtp; 550 5.1.1 text`, when a server said something.
    pub diagnostic: Option<String>,
    /// The host that said it (or that we tried to reach).
    pub remote_mta: Option<String>,
    /// One line for the logs and `last_error`.
    pub text: String,
}

/// What one attempt did for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attempt {
    Delivered,
    Temporary(Failure),
    Permanent(Failure),
}

/// What the queue does about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Delivered,
    Deferred {
        next_attempt: i64,
        /// This deferral carries the recipient's one delay notice.
        notify_delay: bool,
    },
    /// Bounced: permanent failure, or a temporary one past `give_up_after`.
    Failed {
        expired: bool,
    },
}

/// The wait after attempt number `attempts + 1`: `retry[attempts]`, the last entry
/// repeating; five minutes when the list is empty.
pub fn retry_delay(retry: &[Duration], attempts: u32) -> Duration {
    match retry {
        [] => Duration::from_secs(300),
        _ => retry[(attempts as usize).min(retry.len() - 1)],
    }
}

/// The recipient's state before the attempt, as the queue row has it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Before {
    pub attempts: u32,
    pub delay_notified: bool,
    /// When the message was queued (Unix seconds).
    pub created: i64,
    /// The null sender: never told anything.
    pub null_sender: bool,
}

pub(crate) fn decide(attempt: &Attempt, before: Before, now: i64, config: &QueueConfig) -> Verdict {
    let age = now.saturating_sub(before.created);
    match attempt {
        Attempt::Delivered => Verdict::Delivered,
        Attempt::Permanent(_) => Verdict::Failed { expired: false },
        Attempt::Temporary(_) if age >= secs(config.give_up_after) => {
            Verdict::Failed { expired: true }
        }
        Attempt::Temporary(_) => Verdict::Deferred {
            next_attempt: now + secs(retry_delay(&config.retry, before.attempts)),
            notify_delay: !before.null_sender
                && !before.delay_notified
                && age >= secs(config.delay_notice_after),
        },
    }
}

pub(crate) fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> QueueConfig {
        let mut c = QueueConfig::new("mx.test");
        c.retry = vec![Duration::from_secs(60), Duration::from_secs(600)];
        c.give_up_after = Duration::from_secs(10_000);
        c.delay_notice_after = Duration::from_secs(1000);
        c
    }

    fn temp() -> Attempt {
        Attempt::Temporary(Failure {
            reason: "4xx",
            status: "4.0.0".into(),
            diagnostic: None,
            remote_mta: None,
            text: "busy".into(),
        })
    }

    fn before(attempts: u32, created: i64) -> Before {
        Before {
            attempts,
            delay_notified: false,
            created,
            null_sender: false,
        }
    }

    #[test]
    fn retry_delays_follow_the_list_and_repeat_the_last() {
        let list = [1, 2, 3].map(Duration::from_secs);
        let got: Vec<u64> = (0..6).map(|a| retry_delay(&list, a).as_secs()).collect();
        assert_eq!(got, [1, 2, 3, 3, 3, 3]);
        assert_eq!(retry_delay(&[], 7), Duration::from_secs(300));
    }

    #[test]
    fn deferral_schedules_by_attempts_made() {
        let c = config();
        let now = 5000;
        assert_eq!(
            decide(&temp(), before(0, now), now, &c),
            Verdict::Deferred {
                next_attempt: now + 60,
                notify_delay: false
            }
        );
        assert_eq!(
            decide(&temp(), before(4, now), now, &c),
            Verdict::Deferred {
                next_attempt: now + 600,
                notify_delay: false
            }
        );
    }

    #[test]
    fn delay_notice_once_after_the_threshold_and_never_for_null_sender() {
        let c = config();
        let now = 5000;
        let old = before(1, now - 1000);
        assert!(matches!(
            decide(&temp(), old, now, &c),
            Verdict::Deferred {
                notify_delay: true,
                ..
            }
        ));
        let notified = Before {
            delay_notified: true,
            ..old
        };
        assert!(matches!(
            decide(&temp(), notified, now, &c),
            Verdict::Deferred {
                notify_delay: false,
                ..
            }
        ));
        let bounce = Before {
            null_sender: true,
            ..old
        };
        assert!(matches!(
            decide(&temp(), bounce, now, &c),
            Verdict::Deferred {
                notify_delay: false,
                ..
            }
        ));
    }

    #[test]
    fn temporary_failure_past_give_up_fails() {
        let c = config();
        let now = 50_000;
        assert_eq!(
            decide(&temp(), before(9, now - 10_000), now, &c),
            Verdict::Failed { expired: true }
        );
        assert_eq!(
            decide(&Attempt::Delivered, before(9, now - 10_000), now, &c),
            Verdict::Delivered
        );
    }
}
