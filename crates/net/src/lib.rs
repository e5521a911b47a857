//! What every protocol listener shares: the accept loop with its limits, graceful shutdown,
//! and streams that can switch to TLS in the middle of a session (STARTTLS, STLS).

mod admission;
mod counts;
mod listener;
pub mod pace;
mod shutdown;
mod stream;
mod throttle;
mod tls;
mod wire;

pub use admission::Admission;
pub use counts::{SessionCounts, SessionGuard};
pub use listener::{Connection, ListenerConfig, serve};
pub use shutdown::{Shutdown, ShutdownTrigger};
pub use stream::Stream;
pub use throttle::{Attempt, Busy, LoginThrottle};
pub use tls::{TlsError, load_tls};
pub use wire::{Read, Wire};
