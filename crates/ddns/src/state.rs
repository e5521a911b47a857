//! What the updater remembers across restarts (`ddns.json` in the data directory): the last
//! address it saw and the last one it published, so a restart with the same address sends
//! nothing, and an update that failed before a restart is still retried after it.

use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The address last detected, and since when (seconds since the epoch).
    pub address: Option<IpAddr>,
    pub since: Option<u64>,
    /// The address the record was last set to, which record (name and method), and when.
    pub published: Option<IpAddr>,
    pub record: Option<String>,
    pub published_at: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is damaged ({source}); remove it and tegami will publish the address again")]
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

impl State {
    /// The saved state; none saved yet is the empty state.
    pub fn load(path: &Path) -> Result<State, StateError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StateError::Damaged {
                path: path.display().to_string(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(source) => Err(StateError::Read {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let bytes = serde_json::to_vec_pretty(self).expect("the state serialises");
        crate::write_durably(path, &bytes).map_err(|source| StateError::Write {
            path: path.display().to_string(),
            source,
        })
    }

    /// Whether `ip` still has to be published to `record`.
    pub fn needs_update(&self, ip: IpAddr, record: &str) -> bool {
        self.published != Some(ip) || self.record.as_deref() != Some(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_survives_a_restart_and_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ddns.json");
        assert_eq!(State::load(&path).unwrap(), State::default());
        let ip: IpAddr = "192.0.2.5".parse().unwrap();
        let state = State {
            address: Some(ip),
            since: Some(10),
            published: Some(ip),
            record: Some("rfc2136 home.example.com".into()),
            published_at: Some(11),
        };
        state.save(&path).unwrap();
        let back = State::load(&path).unwrap();
        assert_eq!(back, state);
        assert!(!back.needs_update(ip, "rfc2136 home.example.com"));
        assert!(back.needs_update(ip, "rfc2136 other.example.com"));
        assert!(back.needs_update("192.0.2.6".parse().unwrap(), "rfc2136 home.example.com"));
        std::fs::write(&path, b"{not json").unwrap();
        let e = State::load(&path).unwrap_err().to_string();
        assert!(e.contains("damaged") && e.contains("remove it"), "{e}");
    }
}
