//! The SMTP wire format (RFC 5321 and the extensions tegami supports): commands,
//! addresses, replies and the DATA phase, as pure functions and state machines without
//! any I/O, so the server can drive them from whatever runtime it uses.

pub mod address;
pub mod command;
pub mod data;
pub mod reply;

pub use address::{Address, AddressError, ForwardPath, ReversePath};
pub use command::{
    Body, Command, CommandError, CommandReader, MailParams, PathRole, ReadError, parse_command,
};
pub use data::{DataDecoder, DataOutcome, encode_data};
pub use reply::{EnhancedCode, Reply, ReplyError, ehlo_reply, parse_reply, parse_reply_limited};
