//! What every protocol listener shares: the accept loop with its limits, graceful shutdown,
//! streams that can switch to TLS in the middle of a session (STARTTLS, STLS) or start in
//! it (implicit TLS), and the certificates behind them, chosen by SNI and reloaded in place.

mod admission;
mod certs;
mod counts;
mod listener;
pub mod pace;
mod shutdown;
mod stream;
mod throttle;
mod tls;
mod wire;

pub use admission::Admission;
pub use certs::{
    CertFiles, CertSources, Certificates, LoadedCert, ReloadReport, SniResolver, certificate_names,
    load_cert,
};
pub use counts::{SessionCounts, SessionGuard};
pub use listener::{Connection, ListenerConfig, serve};
pub use shutdown::{Shutdown, ShutdownTrigger};
pub use stream::Stream;
pub use throttle::{Attempt, Busy, LoginThrottle};
pub use tls::{HANDSHAKE_TIMEOUT, TlsError, load_tls};
pub use wire::{Read, Wire};
