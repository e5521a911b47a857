//! The integrity check's options and report, shared by every backend.

use std::fmt;

#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Fix what can be fixed without losing mail: reference counts and orphan blob files.
    pub repair: bool,
}

/// What the check found. Empty problem lists mean the store is healthy.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    pub messages: u64,
    pub blobs: u64,
    pub blob_bytes: u64,
    /// Problems reported by the database's own integrity and foreign-key checks.
    pub database: Vec<String>,
    /// Blobs referenced by messages whose file is missing or whose bytes do not match.
    pub damaged_blobs: Vec<String>,
    /// Blobs whose stored reference count differs from the messages that use them.
    pub refcount_mismatches: Vec<String>,
    /// Blob files that no message references (harmless, but wasted space).
    pub orphan_files: Vec<String>,
    /// Orphans too young to judge: possibly a delivery in flight.
    pub young_files: u64,
    /// What `repair` changed.
    pub repaired: Vec<String>,
}

impl CheckReport {
    /// True when no mail is damaged or unreachable and the metadata is consistent.
    /// Orphan files do not count: they waste space but endanger nothing (a crash between a
    /// blob's fsync and its commit leaves one), and `repair` removes them.
    pub fn is_healthy(&self) -> bool {
        self.database.is_empty()
            && self.damaged_blobs.is_empty()
            && self.refcount_mismatches.is_empty()
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "checked {} messages, {} blobs ({} bytes)",
            self.messages, self.blobs, self.blob_bytes
        )?;
        let sections = [
            ("database", &self.database),
            ("damaged blob", &self.damaged_blobs),
            ("reference count", &self.refcount_mismatches),
            ("orphan blob file", &self.orphan_files),
            ("repaired", &self.repaired),
        ];
        for (label, items) in sections {
            for item in items.iter().take(20) {
                writeln!(f, "  {label}: {item}")?;
            }
            if items.len() > 20 {
                writeln!(f, "  {label}: ... and {} more", items.len() - 20)?;
            }
        }
        if self.young_files > 0 {
            writeln!(
                f,
                "  {} blob files newer than the check were left alone",
                self.young_files
            )?;
        }
        Ok(())
    }
}
