//! The POP3 wire format, without any I/O: parsing client commands and writing server replies.
//!
//! This crate covers RFC 1939 (the base protocol), RFC 2449 (CAPA and extended response
//! codes), RFC 3206 (the SYS and AUTH response codes), RFC 2595 (STLS) and the AUTH command
//! of RFC 5034. It never touches a socket: a session feeds received bytes to a
//! [`CommandReader`] and sends whatever the writers in [`response`] and [`message`] append to
//! its output buffer. Keeping it pure means every edge case of the format can be tested with
//! plain byte strings.

pub mod command;
pub mod message;
pub mod response;

pub use command::{
    Command, CommandError, CommandReader, MAX_ARGUMENT_LEN, ReadError, STANDARD_MAX_LINE,
    parse_command,
};
pub use message::{valid_unique_id, wire_size, write_message, write_top};
pub use response::{IMPLEMENTATION, ResponseCode, capabilities, continuation, err, multiline, ok};
