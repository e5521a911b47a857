//! The IMAP4rev1 wire format (RFC 3501 and the extensions tegami offers): commands parsed
//! incrementally from bytes, and responses encoded to bytes. No I/O.

mod command;
pub mod encode;

pub use command::*;
