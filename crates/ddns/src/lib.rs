//! Knowing and publishing where this server is: the DDNS updater (detect the public address,
//! update the DNS record through RFC 2136 with TSIG or an HTTP update URL, remember what was
//! published) and the witness (heartbeats to another server, and the receiving side's
//! bounded, durable record of who called from which address).
//!
//! The crate knows nothing of the store, the gate or alerts: the binary runs the loops,
//! logs the outcomes and turns them into alert conditions.

pub mod detect;
pub mod http;
pub mod httpupdate;
pub mod rfc2136;
pub mod service;
pub mod state;
pub mod witness;

pub use detect::{AddressSource, DetectError, Family};
pub use http::{HttpClient, HttpError};
pub use rfc2136::{Rfc2136, TsigKey};
pub use service::{Config, Ddns, Outcome, UpdateError, Updater};
pub use witness::{WitnessBook, WitnessLimits};

/// Seconds since the Unix epoch, the time base of everything this crate records.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one:
/// a temporary file beside it, fsynced, renamed over, and the directory fsynced.
pub fn write_durably(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}
