//! The witness: a heartbeat that one server sends to another every few minutes, and the
//! receiving side's record of each sender's address over time. When a sender's own DDNS
//! breaks, its address is still known here (the seed's second server did exactly this).
//!
//! The record (`witness.json` in the data directory) is bounded: per sender, every change
//! of address (runs of one address, the oldest dropped past `keep_addresses`) and the last
//! `keep_heartbeats` heartbeats. It is rewritten whole and fsynced before a heartbeat is
//! answered, which at one heartbeat per sender every few minutes costs nothing.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::{Deserialize, Serialize};

use crate::http::{Call, HttpClient, HttpError};

/// The path the receiving side serves on its HTTP listener.
pub const PATH: &str = "/witness/heartbeat";
/// A heartbeat's body is a name in a small JSON object; anything larger is refused.
pub const MAX_BODY: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WitnessLimits {
    pub keep_heartbeats: usize,
    pub keep_addresses: usize,
}

/// One address, from its first heartbeat to its last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressRun {
    pub address: IpAddr,
    pub first: u64,
    pub last: u64,
    pub heartbeats: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beat {
    pub time: u64,
    pub address: IpAddr,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SenderLog {
    pub addresses: VecDeque<AddressRun>,
    pub heartbeats: VecDeque<Beat>,
    /// Heartbeats ever received, including those no longer kept.
    pub total: u64,
}

impl SenderLog {
    /// Records one heartbeat; true when the address differs from the one before.
    pub fn record(&mut self, address: IpAddr, now: u64, limits: WitnessLimits) -> bool {
        self.total += 1;
        self.heartbeats.push_back(Beat { time: now, address });
        while self.heartbeats.len() > limits.keep_heartbeats.max(1) {
            self.heartbeats.pop_front();
        }
        match self.addresses.back_mut() {
            Some(run) if run.address == address => {
                run.last = now;
                run.heartbeats += 1;
                false
            }
            previous => {
                let changed = previous.is_some();
                self.addresses.push_back(AddressRun {
                    address,
                    first: now,
                    last: now,
                    heartbeats: 1,
                });
                while self.addresses.len() > limits.keep_addresses.max(1) {
                    self.addresses.pop_front();
                }
                changed
            }
        }
    }

    pub fn last(&self) -> Option<Beat> {
        self.heartbeats.back().copied()
    }
}

/// Every sender's log, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitnessLog {
    pub senders: BTreeMap<String, SenderLog>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WitnessError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is damaged ({source}); move it aside to start a new record")]
    Damaged {
        path: String,
        source: serde_json::Error,
    },
    #[error("cannot write {path}: {source} (is the data directory writable and not full?)")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

impl WitnessLog {
    /// The stored log; none yet is an empty one.
    pub fn load(path: &Path) -> Result<WitnessLog, WitnessError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| WitnessError::Damaged {
                path: path.display().to_string(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(WitnessLog::default()),
            Err(source) => Err(WitnessError::Read {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    fn save(&self, path: &Path) -> Result<(), WitnessError> {
        let bytes = serde_json::to_vec(self).expect("the log serialises");
        crate::write_durably(path, &bytes).map_err(|source| WitnessError::Write {
            path: path.display().to_string(),
            source,
        })
    }
}

/// The address a heartbeat came from: the TCP peer, unless the peer is a trusted proxy
/// that says in X-Forwarded-For whom it forwarded for. The list is read from the right,
/// skipping trusted proxies, because only the entries our own proxies appended are true.
pub fn caller_address(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpAddr]) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(&peer) {
        return peer;
    }
    let Some(list) = forwarded_for else {
        return peer;
    };
    for entry in list.rsplit(',') {
        match entry.trim().parse::<IpAddr>() {
            Ok(ip) if trusted.contains(&ip.to_canonical()) => continue,
            Ok(ip) => return ip.to_canonical(),
            Err(_) => return peer,
        }
    }
    peer
}

/// Compares two tokens in constant time (their SHA-256 digests, so the length leaks
/// nothing either).
pub fn token_matches(expected_digest: &[u8; 32], given: &str) -> bool {
    let given = ring::digest::digest(&ring::digest::SHA256, given.as_bytes());
    let diff = expected_digest
        .iter()
        .zip(given.as_ref())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    diff == 0
}

fn digest(token: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The receiving side: who may send, and their logs.
pub struct WitnessBook {
    path: PathBuf,
    limits: WitnessLimits,
    senders: BTreeMap<String, [u8; 32]>,
    trusted_proxies: Vec<IpAddr>,
    log: Mutex<WitnessLog>,
}

impl std::fmt::Debug for WitnessBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WitnessBook")
            .field("path", &self.path)
            .field("senders", &self.senders.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// What a heartbeat says about itself.
#[derive(Debug, Deserialize)]
struct HeartbeatBody {
    name: String,
}

impl WitnessBook {
    /// `senders` are (name, token). The stored log is read now, so a damaged file stops the
    /// start with a clear error instead of being overwritten.
    pub fn open(
        path: PathBuf,
        senders: &[(String, String)],
        trusted_proxies: Vec<IpAddr>,
        limits: WitnessLimits,
    ) -> Result<WitnessBook, WitnessError> {
        let log = WitnessLog::load(&path)?;
        Ok(WitnessBook {
            path,
            limits,
            senders: senders
                .iter()
                .map(|(name, token)| (name.clone(), digest(token)))
                .collect(),
            trusted_proxies: trusted_proxies.iter().map(|ip| ip.to_canonical()).collect(),
            log: Mutex::new(log),
        })
    }

    /// The last heartbeat of each configured sender (time, address), if any.
    pub fn last_heartbeats(&self) -> Vec<(String, Option<Beat>)> {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        self.senders
            .keys()
            .map(|name| {
                (
                    name.clone(),
                    log.senders.get(name).and_then(SenderLog::last),
                )
            })
            .collect()
    }

    /// Records a heartbeat durably. Returns whether the sender's address changed.
    pub fn record(&self, name: &str, address: IpAddr, now: u64) -> Result<bool, WitnessError> {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = log.clone();
        let changed =
            next.senders
                .entry(name.to_string())
                .or_default()
                .record(address, now, self.limits);
        // Written before the memory copy changes, so memory never claims what the disk lacks.
        next.save(&self.path)?;
        *log = next;
        Ok(changed)
    }

    /// The route the HTTP listener serves: `POST /witness/heartbeat`.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route(PATH, post(heartbeat))
            .with_state(self.clone())
    }
}

async fn heartbeat(
    State(book): State<Arc<WitnessBook>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            "a heartbeat is a small JSON object: {\"name\": \"...\"}\n",
        )
            .into_response();
    };
    let Ok(beat) = serde_json::from_slice::<HeartbeatBody>(&bytes) else {
        return (
            StatusCode::BAD_REQUEST,
            "the body must be JSON: {\"name\": \"...\"}\n",
        )
            .into_response();
    };
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let known = book
        .senders
        .get(&beat.name)
        .is_some_and(|digest| token_matches(digest, token));
    if !known {
        tracing::warn!(peer = %peer.ip(), name = %beat.name.chars().take(64).collect::<String>(),
            "witness: heartbeat refused (unknown sender or wrong token; senders are listed under [[witness.sender]])");
        return (StatusCode::FORBIDDEN, "unknown sender or wrong token\n").into_response();
    }
    let forwarded = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
    let address = caller_address(peer.ip(), forwarded, &book.trusted_proxies);
    let name = beat.name.clone();
    let recorded = {
        let book = book.clone();
        tokio::task::spawn_blocking(move || book.record(&name, address, crate::unix_now())).await
    };
    match recorded {
        Ok(Ok(changed)) => {
            if changed {
                tracing::warn!(sender = %beat.name, %address, "witness: the sender's address changed");
            } else {
                tracing::debug!(sender = %beat.name, %address, "witness: heartbeat");
            }
            (StatusCode::OK, format!("recorded {address}\n")).into_response()
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "witness: cannot record a heartbeat");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot record the heartbeat now\n",
            )
                .into_response()
        }
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "\n").into_response(),
    }
}

/// The sending side: where to, and as whom.
#[derive(Clone)]
pub struct Heartbeat {
    pub url: String,
    pub name: String,
    pub token: String,
}

impl std::fmt::Debug for Heartbeat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heartbeat")
            .field("url", &self.url)
            .field("name", &self.name)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HeartbeatError {
    #[error("cannot reach the witness: {0}")]
    Http(#[from] HttpError),
    #[error("the witness answered HTTP {status} ({snippet:?}){hint}")]
    Status {
        status: u16,
        snippet: String,
        hint: &'static str,
    },
}

impl Heartbeat {
    /// Sends one heartbeat; the answer's first line (the address the witness saw) on success.
    pub async fn send(&self, client: &HttpClient) -> Result<String, HeartbeatError> {
        let body = serde_json::json!({ "name": self.name })
            .to_string()
            .into_bytes();
        let mut call = Call::post(&self.url, "application/json", body);
        call.bearer = Some(&self.token);
        let response = client.send(call).await?;
        if (200..300).contains(&response.status) {
            return Ok(response.snippet());
        }
        Err(HeartbeatError::Status {
            status: response.status,
            snippet: response.snippet(),
            hint: match response.status {
                403 => "; the witness must list this name and token under [[witness.sender]]",
                404 => "; check witness.url (a tegami witness serves /witness/heartbeat)",
                _ => "",
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: WitnessLimits = WitnessLimits {
        keep_heartbeats: 3,
        keep_addresses: 2,
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_log_keeps_address_runs_and_the_last_heartbeats_only() {
        let mut log = SenderLog::default();
        assert!(!log.record(ip("192.0.2.1"), 100, LIMITS));
        for t in 1..=10 {
            assert!(!log.record(ip("192.0.2.1"), 100 + t * 600, LIMITS));
        }
        assert_eq!(log.heartbeats.len(), 3);
        assert_eq!(log.addresses.len(), 1);
        assert_eq!(
            log.addresses[0],
            AddressRun {
                address: ip("192.0.2.1"),
                first: 100,
                last: 6100,
                heartbeats: 11
            }
        );
        assert!(log.record(ip("198.51.100.2"), 7000, LIMITS));
        assert!(log.record(ip("192.0.2.1"), 7600, LIMITS));
        // Three runs seen, two kept: the oldest went.
        assert_eq!(log.addresses.len(), 2);
        assert_eq!(log.addresses[0].address, ip("198.51.100.2"));
        assert_eq!(log.addresses[1].first, 7600);
        assert_eq!(log.total, 13);
        assert_eq!(
            log.last(),
            Some(Beat {
                time: 7600,
                address: ip("192.0.2.1")
            })
        );
        // However many heartbeats come, the stored size stays put.
        let size = serde_json::to_vec(&log).unwrap().len();
        for t in 0..1000 {
            log.record(ip("192.0.2.1"), 8000 + t, LIMITS);
        }
        assert!(serde_json::to_vec(&log).unwrap().len() <= size + 32);
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let proxy = ip("127.0.0.1");
        assert_eq!(
            caller_address(ip("203.0.113.5"), Some("10.9.9.9"), &[proxy]),
            ip("203.0.113.5")
        );
        assert_eq!(
            caller_address(proxy, Some("198.51.100.7"), &[proxy]),
            ip("198.51.100.7")
        );
        // A client may put anything at the left; the proxy appends the truth at the right.
        assert_eq!(
            caller_address(proxy, Some("6.6.6.6, 198.51.100.7"), &[proxy]),
            ip("198.51.100.7")
        );
        assert_eq!(
            caller_address(proxy, Some("198.51.100.7, 127.0.0.1"), &[proxy]),
            ip("198.51.100.7")
        );
        assert_eq!(caller_address(proxy, Some("garbage"), &[proxy]), proxy);
        assert_eq!(caller_address(proxy, None, &[proxy]), proxy);
        assert_eq!(caller_address(proxy, Some("198.51.100.7"), &[]), proxy);
        assert_eq!(
            caller_address(ip("::ffff:192.0.2.8"), None, &[]),
            ip("192.0.2.8")
        );
    }

    #[test]
    fn tokens_are_compared_by_digest() {
        let d = digest("s3cret");
        assert!(token_matches(&d, "s3cret"));
        assert!(!token_matches(&d, "s3cre"));
        assert!(!token_matches(&d, "s3cret "));
        assert!(!token_matches(&d, ""));
    }

    #[test]
    fn the_book_writes_before_it_answers_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("witness.json");
        let senders = [("home".to_string(), "t".to_string())];
        let book = WitnessBook::open(path.clone(), &senders, vec![], LIMITS).unwrap();
        assert_eq!(book.last_heartbeats(), [("home".to_string(), None)]);
        book.record("home", ip("192.0.2.1"), 50).unwrap();
        let again = WitnessBook::open(path.clone(), &senders, vec![], LIMITS).unwrap();
        assert_eq!(
            again.last_heartbeats(),
            [(
                "home".to_string(),
                Some(Beat {
                    time: 50,
                    address: ip("192.0.2.1")
                })
            )]
        );
        std::fs::write(&path, b"[").unwrap();
        assert!(WitnessBook::open(path, &senders, vec![], LIMITS).is_err());
    }
}
