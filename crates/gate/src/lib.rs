//! The gate in front of the store: maintenance windows and the disk guard, watched
//! continuously, so every protocol session can ask "may I serve now?" in constant time.

pub mod clock;
pub mod disk;
pub mod maint;
pub mod oplog;
pub mod room;
mod watch;

pub use clock::Clock;
pub use disk::{DiskState, DiskThresholds};
pub use maint::{MaintError, Maintenance, Status, Window};
pub use room::{NoRoom, Reservation};
pub use watch::{ActiveMaintenance, Gate, GateConfig};
