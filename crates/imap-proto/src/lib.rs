//! The IMAP4rev1 wire format (RFC 3501 and the extensions tegami offers): commands parsed
//! incrementally from bytes, and responses encoded to bytes. No I/O.
//!
//! A session appends what the socket delivered to a buffer and drives a
//! [`CommandReader`] (see the [`parser`] module for the protocol it follows: continuation
//! requests for synchronizing literals, errors that end a line and errors that end the
//! connection). It answers with the writers in [`response`], which encode mailbox names with
//! [`utf7`] and strings with [`encode`].
//!
//! Extensions understood by the parser: LITERAL+ (RFC 7888), SASL-IR (RFC 4959), UIDPLUS
//! (RFC 4315, UID EXPUNGE), MOVE (RFC 6851), ENABLE (RFC 5161), NAMESPACE (RFC 2342), IDLE
//! (RFC 2177), SPECIAL-USE (RFC 6154), ESEARCH (RFC 4731), UNSELECT (RFC 3691), ID
//! (RFC 2971), CONDSTORE and QRESYNC (RFC 7162: SELECT parameters, FETCH and STORE
//! modifiers, MODSEQ, HIGHESTMODSEQ, VANISHED), and UTF8=ACCEPT (RFC 6855: UTF-8 mailbox
//! names both ways and APPEND's `UTF8 (~{n})`, once the session enables it).

mod command;
pub mod encode;
pub mod parser;
pub mod response;
pub mod utf7;

pub use command::*;
pub use parser::{
    AuthResponse, CommandReader, ErrorKind, Limits, ParseError, Parsed, parse_command,
};
