//! Reservations of free space: every message about to be written claims its size first, so
//! a burst of deliveries cannot take the volume past the hard floor between two looks of
//! the watcher.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::disk::{self, DiskThresholds};

/// What a message of `bytes` may cost on disk before its reservation ends: the blob, the
/// same bytes again in the write-ahead log or the outbound queue (bodies of remote mail sit
/// there inline), and room for the rows and pages around them.
pub fn cost(bytes: u64) -> u64 {
    bytes.saturating_mul(2).saturating_add(64 * 1024)
}

/// The bytes promised to writes not finished yet, on one volume.
pub(crate) struct Room {
    dir: PathBuf,
    thresholds: DiskThresholds,
    reserved: Mutex<u64>,
}

/// Free space held for one message; given back when dropped (after its commit or abort,
/// when what it wrote shows in the measured free space instead).
pub struct Reservation {
    room: Option<Arc<Room>>,
    bytes: u64,
}

impl Reservation {
    /// A reservation that holds nothing (a gate without a data directory).
    fn none() -> Reservation {
        Reservation {
            room: None,
            bytes: 0,
        }
    }

    /// The bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(room) = &self.room {
            let mut reserved = room.reserved.lock().unwrap_or_else(|p| p.into_inner());
            *reserved = reserved.saturating_sub(self.bytes);
        }
    }
}

/// The volume has no room for the message without going below the hard floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "{free} bytes free, {reserved} promised to writes under way: no room for {wanted} more above the floor of {floor}"
)]
pub struct NoRoom {
    pub free: u64,
    pub reserved: u64,
    pub wanted: u64,
    pub floor: u64,
}

impl Room {
    pub(crate) fn new(dir: PathBuf, thresholds: DiskThresholds) -> Room {
        Room {
            dir,
            thresholds,
            reserved: Mutex::new(0),
        }
    }

    /// Claims room for a message of `bytes` against the free space measured now.
    pub(crate) fn reserve(self: &Arc<Self>, bytes: u64) -> Result<Reservation, NoRoom> {
        let wanted = cost(bytes);
        // Measured under the lock, so two claims never both count the same free bytes.
        let mut reserved = self.reserved.lock().unwrap_or_else(|p| p.into_inner());
        // A volume that cannot be measured is treated as roomy, as the watcher does.
        if let Ok((free, _)) = disk::free_space(&self.dir) {
            fits(free, *reserved, wanted, self.thresholds.hard_floor)?;
        }
        *reserved += wanted;
        Ok(Reservation {
            room: Some(self.clone()),
            bytes: wanted,
        })
    }
}

/// Whether `wanted` more bytes fit above `floor` when `reserved` are already promised.
fn fits(free: u64, reserved: u64, wanted: u64, floor: u64) -> Result<(), NoRoom> {
    if free.saturating_sub(reserved).saturating_sub(wanted) < floor
        || free < reserved.saturating_add(wanted)
    {
        return Err(NoRoom {
            free,
            reserved,
            wanted,
            floor,
        });
    }
    Ok(())
}

/// What a gate without room to watch hands out.
pub(crate) fn unlimited() -> Reservation {
    Reservation::none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_add_up_against_the_floor() {
        assert!(fits(100, 0, 50, 40).is_ok());
        assert!(fits(100, 50, 20, 40).is_err());
        assert!(fits(100, 0, 61, 40).is_err());
        assert!(fits(10, 0, 20, 0).is_err());
    }

    #[test]
    fn a_reservation_is_given_back_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (free, _) = disk::free_space(dir.path()).unwrap();
        let room = Arc::new(Room::new(
            dir.path().to_path_buf(),
            DiskThresholds {
                min_free: 0,
                hard_floor: 0,
            },
        ));
        // Half the free space, roughly, claimed once: a second claim of it cannot fit.
        let half = free / 5 * 2;
        let first = room.reserve(half).unwrap();
        assert_eq!(first.bytes(), cost(half));
        assert!(room.reserve(half).is_err());
        drop(first);
        assert!(room.reserve(half).is_ok());
    }
}
