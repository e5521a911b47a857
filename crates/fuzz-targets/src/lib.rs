//! The bodies of tegami's fuzz targets, one plain function per parser that reads untrusted
//! bytes. `fuzz/` (a workspace of its own, built by `scripts/fuzz` with libFuzzer's
//! coverage instrumentation) wraps each in `fuzz_target!`; the test in `tests/corpus.rs`
//! replays the seed corpus in `fuzz/corpus/<target>/` through the same functions, so every
//! input that once found a bug stays a regression test of the ordinary suite.
//!
//! A target does more than call its parser: it asserts what must hold for any input (the
//! same result however the bytes are split across reads, bounded buffers and output,
//! well-formed replies, round trips through the matching writer). A failed assertion is
//! a panic, which the fuzzer reports as a crash.

mod bounce;
mod files;
mod mime;
mod proto;
mod split;
mod web;

pub use bounce::bounce;
pub use files::{maildir, mbox};
pub use mime::{mime_section, mime_structure};
pub use proto::{imap_command, pop3_command, smtp_command, smtp_data};
pub use web::http_request;

/// A target's body: any bytes in, a panic for a bug.
pub type Target = fn(&[u8]);

/// Every target by name: the name is the `fuzz/fuzz_targets/<name>.rs` binary and the
/// `fuzz/corpus/<name>/` directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("smtp_command", smtp_command),
    ("smtp_data", smtp_data),
    ("pop3_command", pop3_command),
    ("imap_command", imap_command),
    ("mime_structure", mime_structure),
    ("mime_section", mime_section),
    ("mbox", mbox),
    ("maildir", maildir),
    ("http_request", http_request),
    ("bounce", bounce),
];
