//! The one error type of the operations layer. Each variant says what a face should do with
//! it: the CLI prints one line and exits non-zero, the JSON API and the web console choose
//! the status code by variant (`Invalid` 400, `NotFound` 404, `Conflict` 409, the rest 500).

use std::fmt::Display;

use store::StoreError;

use crate::config::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request itself is wrong: a malformed address, a size that is not a size. The
    /// message names the value and says what would be right.
    #[error("{0}")]
    Invalid(String),
    /// The request names something that does not exist: an account, a backup, an archive.
    #[error("{0}")]
    NotFound(String),
    /// The request is well formed but the current state does not allow it: the server is
    /// running, another backup holds the lock, a campaign already finished.
    #[error("{0}")]
    Conflict(String),
    /// The operation ran and found the data wanting (a backup that does not verify, a check
    /// with problems it could not fix); the report is in the message and the result log.
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store would not open (locked by a newer binary's schema, damaged, unreadable).
    #[error("cannot open the store in {}", data.display())]
    Open {
        data: std::path::PathBuf,
        #[source]
        source: StoreError,
    },
    /// The system clock or time zone cannot be read.
    #[error("{0}")]
    Clock(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file or directory outside the store: the context names it, the cause follows.
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(message: impl Display) -> Error {
        Error::Invalid(message.to_string())
    }
    pub fn not_found(message: impl Display) -> Error {
        Error::NotFound(message.to_string())
    }
    pub fn conflict(message: impl Display) -> Error {
        Error::Conflict(message.to_string())
    }
    pub fn failed(message: impl Display) -> Error {
        Error::Failed(message.to_string())
    }

    /// The message and its causes, outermost first, on one line: what a face shows.
    /// (`Display` alone gives only the outermost, so that a face walking the chain does
    /// not repeat a cause.)
    pub fn one_line(&self) -> String {
        let mut line = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(e) = cause {
            line.push_str(": ");
            line.push_str(&e.to_string());
            cause = e.source();
        }
        line
    }
}

/// `io_context` on an I/O result: `fs::read(&p).io_context(|| format!("cannot read {}", p.display()))`.
pub trait IoContext<T> {
    fn io_context<D: Display>(self, context: impl FnOnce() -> D) -> Result<T>;
}

impl<T> IoContext<T> for std::result::Result<T, std::io::Error> {
    fn io_context<D: Display>(self, context: impl FnOnce() -> D) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: context().to_string(),
            source,
        })
    }
}
