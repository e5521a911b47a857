//! The full-text index of live mail, its neutral side: what a search asks of it and what
//! it answers, what a check finds. The SQL is in `sqlite/text_index.rs`.
//!
//! The index is a prefilter, never the judge: it names a superset of the messages whose
//! text contains a string (every message it holds whose lower-cased text has each of the
//! needle's three-character runs in order), and the caller verifies each candidate with the
//! same scan it would run without an index. A message the index does not hold yet is
//! always a candidate, so results are exactly those of the scan.

use std::collections::HashSet;

use crate::BlobId;

/// The text the index holds of one message, made by whoever can parse mail (the store does
/// not): lower-cased exactly as the scan lower-cases what it searches, so that a needle
/// the scan finds in a part is a substring of these.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexText {
    /// Every header block (the message's and each attached message's), fields as
    /// `name: value` lines.
    pub headers: String,
    /// Every text part, decoded.
    pub body: String,
}

/// How a message's bytes become [`IndexText`]; `None` when they cannot be read as mail, in
/// which case the message is always a candidate.
pub type TextOf = dyn Fn(&[u8]) -> Option<IndexText> + Send + Sync;

/// Where a needle is looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextField {
    /// The header blocks (SUBJECT, FROM, TO, CC, BCC, HEADER).
    Headers,
    /// The text parts (BODY).
    Body,
    /// Either (TEXT).
    Any,
}

/// A condition on text, as the index can answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextQuery {
    /// Every one holds.
    All(Vec<TextQuery>),
    /// At least one holds.
    Either(Vec<TextQuery>),
    /// The field contains the needle (case-insensitively).
    Contains(TextField, String),
}

/// The shortest needle, in characters, the index can look for: it holds runs of three.
pub const MIN_NEEDLE: usize = 3;

/// The most text of one field the index takes from one message; a message with more is
/// held as unindexed (always a candidate), so nothing it contains is missed.
pub const MAX_FIELD_TEXT: usize = 1024 * 1024;

/// What the index says about one mailbox for a query.
#[derive(Debug, Clone, Default)]
pub struct TextCandidates {
    /// Messages of the mailbox with a UID at most this are in the index; the others must
    /// be scanned.
    pub indexed_through: u32,
    /// The bodies (of any mailbox) that may match, unindexed ones included.
    pub blobs: HashSet<BlobId>,
}

impl TextCandidates {
    /// Whether a message of the mailbox must be verified by scanning.
    pub fn may_match(&self, uid: u32, blob: &BlobId) -> bool {
        uid > self.indexed_through || self.blobs.contains(blob)
    }
}

/// What `tegami index check` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexCheck {
    /// Distinct bodies in the index.
    pub documents: u64,
    /// Live messages the index says it covers.
    pub covered: u64,
    /// Live messages not reached by the indexer yet (searched by scanning meanwhile).
    pub pending: u64,
    /// Covered messages whose body is not in the index: these would be missed.
    pub missing: u64,
    /// The mailboxes those messages are in, with how many each: indexing them again
    /// (forgetting their cursors) mends the index.
    pub missing_in: Vec<(crate::MailboxId, u64)>,
    /// Bodies in the index that no live message has any more (expunged mail); never found,
    /// since a search only looks at the mailbox's own messages, but dead weight.
    pub expunged: u64,
}

impl IndexCheck {
    pub fn is_healthy(&self) -> bool {
        self.missing == 0 && self.expunged == 0
    }
}

/// What one step of the indexer did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexStep {
    /// Messages the cursors moved past.
    pub messages: u64,
    /// Bodies added to the index (a body shared by several messages is added once).
    pub added: u64,
    /// Bodies of expunged mail removed.
    pub removed: u64,
    /// Messages still waiting, as far as this step saw.
    pub pending: u64,
}
