//! One DDNS check: detect the address, compare it with what was seen and published, update
//! the record when needed, and remember the result. The binary calls [`Ddns::check`] on its
//! schedule and logs and alerts on the [`Outcome`].

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::detect::{self, AddressSource, DetectError, Family};
use crate::http::HttpClient;
use crate::httpupdate::{HttpUpdate, HttpUpdateError};
use crate::rfc2136::{Rfc2136, Rfc2136Error};
use crate::state::{State, StateError};

/// How the record is updated.
#[derive(Debug, Clone)]
pub enum Updater {
    Rfc2136(Rfc2136),
    Http(HttpUpdate),
}

impl Updater {
    /// Names the record and the method, as log lines show them: "home.example.com (RFC
    /// 2136 at 192.0.2.53:53)". A change of either publishes again.
    pub fn describe(&self) -> String {
        match self {
            Updater::Rfc2136(u) => format!("{} (RFC 2136 at {})", u.record, u.server),
            Updater::Http(u) => format!("{} (HTTP update URL)", u.record),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub source: AddressSource,
    pub family: Family,
    pub interval: Duration,
    /// After a failed update, the next try comes this soon (at most `interval`).
    pub retry: Duration,
    /// How long one check or one HTTP update may take.
    pub timeout: Duration,
    pub updater: Updater,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpdateError {
    #[error(transparent)]
    Rfc2136(#[from] Rfc2136Error),
    #[error(transparent)]
    Http(#[from] HttpUpdateError),
}

#[derive(Debug)]
pub enum Outcome {
    /// The address is what was published: nothing to do.
    Unchanged(IpAddr),
    /// The record now holds `to`. `changed` is false when this was the retry of an earlier
    /// failed update for the same address.
    Updated {
        from: Option<IpAddr>,
        to: IpAddr,
        changed: bool,
    },
    UpdateFailed {
        from: Option<IpAddr>,
        to: IpAddr,
        changed: bool,
        error: UpdateError,
    },
    DetectFailed(DetectError),
}

/// The outcome, and any failure to remember it (the data directory not writable).
#[derive(Debug)]
pub struct Report {
    pub outcome: Outcome,
    pub state_error: Option<StateError>,
}

pub struct Ddns {
    config: Config,
    client: HttpClient,
    path: PathBuf,
    state: State,
}

impl Ddns {
    /// `path` is where the state lives (`ddns.json`); a damaged one is reported and
    /// replaced, which only costs one update.
    pub fn new(config: Config, client: HttpClient, path: PathBuf) -> (Ddns, Option<StateError>) {
        let (state, error) = match State::load(&path) {
            Ok(state) => (state, None),
            Err(e) => (State::default(), Some(e)),
        };
        (
            Ddns {
                config,
                client,
                path,
                state,
            },
            error,
        )
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// When to check next after this outcome: soon after a failure, else the interval.
    pub fn next_wait(&self, outcome: &Outcome) -> Duration {
        match outcome {
            Outcome::UpdateFailed { .. } | Outcome::DetectFailed(_) => {
                self.config.retry.min(self.config.interval)
            }
            _ => self.config.interval,
        }
    }

    pub async fn check(&mut self) -> Report {
        let ip = match detect::detect(&self.config.source, self.config.family, &self.client).await {
            Ok(ip) => ip,
            Err(e) => {
                return Report {
                    outcome: Outcome::DetectFailed(e),
                    state_error: None,
                };
            }
        };
        let from = self.state.address;
        let changed = from != Some(ip);
        let mut state_error = None;
        if changed {
            self.state.address = Some(ip);
            self.state.since = Some(crate::unix_now());
            state_error = self.state.save(&self.path).err();
        }
        let record = self.config.updater.describe();
        if !self.state.needs_update(ip, &record) {
            return Report {
                outcome: Outcome::Unchanged(ip),
                state_error,
            };
        }
        let result = match &self.config.updater {
            Updater::Rfc2136(u) => u.update(ip).await.map_err(UpdateError::from),
            Updater::Http(u) => u.update(&self.client, ip).await.map_err(UpdateError::from),
        };
        let outcome = match result {
            Ok(()) => {
                self.state.published = Some(ip);
                self.state.record = Some(record);
                self.state.published_at = Some(crate::unix_now());
                if let Err(e) = self.state.save(&self.path) {
                    state_error = Some(e);
                }
                Outcome::Updated {
                    from,
                    to: ip,
                    changed,
                }
            }
            Err(error) => Outcome::UpdateFailed {
                from,
                to: ip,
                changed,
                error,
            },
        };
        Report {
            outcome,
            state_error,
        }
    }
}
