//! The disk guard's measurements and thresholds.

use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskThresholds {
    /// Below this, new mail is refused (4xx) while reading goes on.
    pub min_free: u64,
    /// Below this, every write is refused.
    pub hard_floor: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskState {
    Ok {
        free: u64,
    },
    /// New mail is deferred.
    Low {
        free: u64,
    },
    /// Every write is refused.
    Critical {
        free: u64,
    },
    /// The volume could not be measured; treated as Ok, and logged.
    Unknown,
}

impl DiskState {
    pub fn accepts_mail(&self) -> bool {
        matches!(self, DiskState::Ok { .. } | DiskState::Unknown)
    }

    pub fn accepts_writes(&self) -> bool {
        !matches!(self, DiskState::Critical { .. })
    }
}

/// Free space and free inodes for an unprivileged writer on the volume holding `path`.
pub fn free_space(path: &Path) -> std::io::Result<(u64, u64)> {
    let stat = rustix::fs::statvfs(path)?;
    Ok((stat.f_bavail.saturating_mul(stat.f_frsize), stat.f_favail))
}

pub fn classify(free: u64, thresholds: &DiskThresholds) -> DiskState {
    if free < thresholds.hard_floor {
        DiskState::Critical { free }
    } else if free < thresholds.min_free {
        DiskState::Low { free }
    } else {
        DiskState::Ok { free }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_split_three_ways() {
        let t = DiskThresholds {
            min_free: 100,
            hard_floor: 10,
        };
        assert_eq!(classify(100, &t), DiskState::Ok { free: 100 });
        assert_eq!(classify(99, &t), DiskState::Low { free: 99 });
        assert_eq!(classify(9, &t), DiskState::Critical { free: 9 });
        assert!(!classify(50, &t).accepts_mail() && classify(50, &t).accepts_writes());
        assert!(!classify(5, &t).accepts_writes());
    }

    #[test]
    fn measures_a_real_volume() {
        let (free, _) = free_space(Path::new("/")).unwrap();
        assert!(free > 0);
    }
}
