//! How many sessions a listener has served and holds open, for `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Sessions since the server started and open now. Each session crate keeps one in a
/// static: process-wide, like its listener, since one server runs per process.
pub struct SessionCounts {
    opened: AtomicU64,
    open: AtomicU64,
}

impl SessionCounts {
    pub const fn new() -> SessionCounts {
        SessionCounts {
            opened: AtomicU64::new(0),
            open: AtomicU64::new(0),
        }
    }

    /// Counts a session as open until the guard drops, however the session ends.
    pub fn enter(&'static self) -> SessionGuard {
        self.opened.fetch_add(1, Relaxed);
        self.open.fetch_add(1, Relaxed);
        SessionGuard(self)
    }

    pub fn opened(&self) -> u64 {
        self.opened.load(Relaxed)
    }

    pub fn open(&self) -> u64 {
        self.open.load(Relaxed)
    }
}

impl Default for SessionCounts {
    fn default() -> Self {
        SessionCounts::new()
    }
}

pub struct SessionGuard(&'static SessionCounts);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guard_counts_a_session_open_until_dropped() {
        static COUNTS: SessionCounts = SessionCounts::new();
        let a = COUNTS.enter();
        let b = COUNTS.enter();
        drop(a);
        assert_eq!((COUNTS.opened(), COUNTS.open()), (2, 1));
        drop(b);
        assert_eq!((COUNTS.opened(), COUNTS.open()), (2, 0));
    }
}
