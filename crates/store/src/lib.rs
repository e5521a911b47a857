//! The mail store: accounts, mailboxes and messages behind one interface.
//!
//! Metadata lives in a backend (SQLite today, PostgreSQL later); message bodies live in a
//! content-addressed [`BlobStore`] shared by every backend. Nothing outside a backend
//! writes SQL: protocol sessions, the CLI and operations talk to the [`Store`] trait.

mod blob;
mod check;
mod error;
mod password;
mod sqlite;
mod types;

pub use blob::{BlobId, BlobStore, Verdict};
pub use check::{
    AffectedMessage, CheckOptions, CheckReport, OptimizeReport, Progress, human_bytes,
};
pub use error::StoreError;
pub use sqlite::{SCHEMA_VERSION, SqliteStore};
pub use types::*;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything the rest of tegami may ask of the store.
///
/// Methods block: SQLite is a synchronous library, so async callers run them on a blocking
/// thread pool. Every method that changes data returns only after the change is durable.
pub trait Store: Send + Sync {
    // Domains.
    fn add_domain(&self, name: &str) -> Result<()>;
    fn remove_domain(&self, name: &str) -> Result<()>;
    fn domains(&self) -> Result<Vec<String>>;

    // Accounts.
    fn add_account(&self, address: &str, password: &str) -> Result<AccountId>;
    fn remove_account(&self, address: &str) -> Result<()>;
    fn set_password(&self, address: &str, password: &str) -> Result<()>;
    fn accounts(&self) -> Result<Vec<AccountInfo>>;
    /// Checks a password; `Ok(None)` for an unknown account or a wrong password alike.
    fn authenticate(&self, address: &str, password: &str) -> Result<Option<AccountId>>;

    // Aliases.
    fn add_alias(&self, address: &str, targets: &[String]) -> Result<()>;
    fn remove_alias(&self, address: &str) -> Result<()>;
    fn aliases(&self) -> Result<Vec<AliasInfo>>;

    /// Decides what a recipient address means here: local accounts (after alias
    /// expansion), an unknown user in a local domain, or a domain we do not serve.
    fn resolve(&self, address: &str) -> Result<Resolution>;

    /// Stores one message for every recipient account's INBOX. The body is written once
    /// (content-addressed) and shared; the call returns after blob and metadata are on disk.
    fn deliver(&self, message: &[u8], recipients: &[AccountId]) -> Result<Vec<Delivered>>;

    fn mailbox(&self, account: AccountId, name: &str) -> Result<MailboxInfo>;
    /// The messages of a mailbox in UID order.
    fn messages(&self, mailbox: MailboxId) -> Result<Vec<MessageMeta>>;
    /// A message's bytes, verified against its content hash.
    fn read_blob(&self, blob: &BlobId) -> Result<Vec<u8>>;
    /// Removes messages from a mailbox in one atomic transaction.
    fn expunge(&self, mailbox: MailboxId, messages: &[MessageId]) -> Result<()>;

    /// Integrity check of metadata and every blob, against a consistent snapshot, beside a
    /// live server. With `repair` it also fixes what can be fixed without loss.
    fn check(&self, options: &CheckOptions) -> Result<CheckReport>;

    /// Online optimisation: planner statistics, WAL checkpoint, free pages given back to the
    /// file system, orphan blob files removed. Deliveries go on while it runs.
    fn optimize(&self) -> Result<OptimizeReport>;
}
