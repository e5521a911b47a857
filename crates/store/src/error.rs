//! The store's error type: what went wrong, worded so an operator knows what to do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{what} already exists")]
    AlreadyExists { what: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{0} is read-only: archived mail can be read, searched and copied, not changed")]
    ReadOnly(String),
    #[error(
        "database schema version {found} is newer than this tegami understands ({known}); \
         run the tegami release that wrote it, or a newer one"
    )]
    SchemaTooNew { found: i64, known: i64 },
    #[error("blob {blob} is corrupt: {detail}; run `tegami check` and restore it from a backup")]
    BlobCorrupt { blob: String, detail: String },
    #[error("blob {0} vanished before its delivery committed")]
    BlobVanished(String),
    /// The database failed. The backend words it and says whether a retry may succeed
    /// (busy, locked, disk full, an I/O error), so nothing above it names the backend.
    #[error("database error: {message}")]
    Database { message: String, transient: bool },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A write would take an account past its storage quota; nothing was written.
    #[error("{address} is over its storage quota ({used} of {limit} bytes used)")]
    OverQuota {
        address: String,
        used: u64,
        limit: u64,
    },
    #[error("commit failed: {0}")]
    CommitFailed(String),
    #[error("the store's writer thread has stopped")]
    WriterGone,
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { path, source }
    }

    /// True when retrying later may succeed (the disk or database is busy, not the input).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Io { .. }
            | StoreError::WriterGone
            | StoreError::CommitFailed(_)
            | StoreError::BlobVanished(_) => true,
            StoreError::Database { transient, .. } => *transient,
            _ => false,
        }
    }
}
