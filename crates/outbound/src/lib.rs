//! Delivery of the outbound queue (issue 9): routing (static routes, smart host, MX),
//! DNS, DKIM signing, per-destination connection reuse and limits, retries and DSNs.
//!
//! The queue itself (envelopes, bodies, per-recipient state) lives in the store; this
//! crate decides what to do with it. [`Queue::run`] looks at the queue when woken or
//! every `poll`, sends what is due with `smtp-client`, and settles each transaction in
//! the store right after it ends, with the DSNs it causes in the same store transaction.
//! Recipients in our own domains are delivered straight into the store.
//!
//! Pure parts, tested on their own: [`build_dsn`] (RFC 3464 reports), [`retry_delay`]
//! and the give-up/delay-notice decisions (`schedule`), [`TokenBucket`] (rate limits),
//! route choice and MX ordering (`route`), DKIM key files and signing ([`DkimKeys`]).

mod config;
mod dkim;
mod dns;
mod dsn;
mod limits;
mod metrics;
mod route;
mod runner;
mod schedule;

pub use config::{QueueConfig, Routes, SmartHost, StaticRoute};
pub use dkim::{DkimError, DkimKeys, DnsRecord, dkim_record, generate_dkim};
pub use dns::{DnsError, resolver};
pub use dsn::{Dsn, DsnAction, DsnRecipient, build_dsn};
pub use limits::TokenBucket;
pub use metrics::{DEFER_REASONS, METRICS, Metrics, Sample};
pub use runner::Queue;
pub use schedule::retry_delay;
pub use smtp_client::{Credentials, Timeouts, TlsPolicy};
