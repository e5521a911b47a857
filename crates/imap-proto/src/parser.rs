//! Cutting IMAP commands out of a byte stream and parsing them into [`Command`]s.
//!
//! # Driving the reader
//!
//! An IMAP command is one line, except that a string argument may be sent as a literal:
//! `{n}` at the end of a line announces `n` octets of data that follow the CRLF, after which
//! the command line continues. The session appends whatever the socket delivered to a
//! `Vec<u8>` and calls [`CommandReader::parse`] until it stops returning commands:
//!
//! - [`Parsed::Command`]: one whole command was taken from the front of the buffer. Call
//!   again, since a client may pipeline several.
//! - [`Parsed::NeedMore`]: everything buffered was taken into the reader; read from the
//!   socket and call again.
//! - [`Parsed::NeedContinuation`]: the client sent a synchronizing literal `{n}` and waits
//!   for permission to send it. Send `+ Ready for literal data\r\n`
//!   ([`crate::response::LITERAL_CONTINUATION`]), read from the socket and call again. The reader
//!   asks once per literal: later calls for the same literal return `NeedMore`.
//!   A non-synchronizing literal `{n+}` (LITERAL+) needs no continuation.
//! - `Err(ParseError)`: the command is rejected. Write [`ParseError::write_response`] (a
//!   tagged `BAD`, or `* BAD` when no tag could be read). If [`ParseError::must_close`] is
//!   true, close the connection after writing it; otherwise carry on calling `parse`: the
//!   reader has already dropped the bad command, or skips the rest of it in later calls.
//!
//! The reader owns the unfinished command: bytes it has looked at are moved out of the
//! caller's buffer, so the buffer only ever holds input that comes after them. After
//! STARTTLS the session should call [`CommandReader::reset`] and clear its buffer, so that
//! nothing sent in the clear is taken as sent under TLS.
//!
//! # Literals that are too large
//!
//! A literal is refused when it is larger than [`Limits::max_literal`] (or
//! [`Limits::max_append`] for APPEND), counting all literals of one command together.
//! - A synchronizing literal is refused before the client sends it: the error
//!   ([`ErrorKind::LiteralTooLarge`]) is answered with `TAG NO [TOOBIG]` instead of a
//!   continuation request, the client then abandons the command and never sends the data,
//!   so the connection carries on.
//! - A non-synchronizing literal is already on its way, and reading gigabytes to throw them
//!   away helps nobody, so ([`ErrorKind::NonSyncLiteralTooLarge`]) the session answers
//!   `* BYE [TOOBIG]` and closes, as RFC 7888 section 4 allows.
//!
//! A synchronizing literal is also refused, without a continuation, when what comes before
//! it on the command line is already wrong (an unknown command, say), because the client
//! must not be made to send data that will be thrown away.
//!
//! # Lines that are too long
//!
//! [`Limits::max_line`] bounds the octets of one command outside its literals. As soon as a
//! command is known to exceed it, [`ErrorKind::LineTooLong`] is returned and the reader skips
//! input up to the end of the current line (also skipping any non-synchronizing literal that
//! line announces), so the buffer never grows beyond the limit.
//!
//! # IDLE and AUTHENTICATE
//!
//! While a command waits for continuation lines from the client (IDLE waits for `DONE`,
//! AUTHENTICATE for base64 responses) the session calls [`CommandReader::parse_idle_done`]
//! or [`CommandReader::parse_auth_response`] instead of `parse`. They take one line each and
//! share the line limit.

mod commands;
mod cursor;
mod fetch;
mod search;
#[cfg(test)]
mod tests;

use std::fmt;

pub(crate) use cursor::is_astring_char;

use crate::command::Command;
use crate::response::{self, Status};

/// Size limits for [`CommandReader`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Octets of one command outside its literals, line endings included.
    pub max_line: usize,
    /// Octets of all literals of one command other than APPEND.
    pub max_literal: usize,
    /// Octets of all literals of one APPEND command (the message and any literal mailbox
    /// name).
    pub max_append: usize,
}

impl Default for Limits {
    /// 64 KiB lines, 64 KiB of literals, 64 MiB messages.
    fn default() -> Self {
        Limits {
            max_line: 64 * 1024,
            max_literal: 64 * 1024,
            max_append: 64 * 1024 * 1024,
        }
    }
}

/// What [`CommandReader::parse`] found in the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A complete command, removed from the front of the buffer.
    Command(Command),
    /// The command is not complete yet; read more input.
    NeedMore,
    /// The client announced a synchronizing literal: send a continuation request
    /// (`+ ...\r\n`), then read more input.
    NeedContinuation,
}

/// A client's answer to an AUTHENTICATE challenge (RFC 3501 section 6.2.2).
#[derive(Clone, PartialEq, Eq)]
pub enum AuthResponse {
    /// The base64 text as sent, without the line ending; may be empty. Decoding it is the
    /// SASL mechanism's job.
    Data(String),
    /// `*`: the client cancels the exchange; answer `TAG BAD`.
    Cancel,
}

impl fmt::Debug for AuthResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SASL responses usually carry a password, so they never reach logs.
        match self {
            AuthResponse::Data(_) => f.write_str("Data(<redacted>)"),
            AuthResponse::Cancel => f.write_str("Cancel"),
        }
    }
}

/// A rejected command: what was wrong, and the tag to answer with when one could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The command's tag, when the line began with a valid one.
    pub tag: Option<String>,
    pub kind: ErrorKind,
}

/// Why a command was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The command does not follow the grammar; the text says what is wrong, worded for the
    /// client. The command has been dropped.
    Syntax(String),
    /// The command name is not one tegami knows; holds it upper-cased, made printable and
    /// shortened. The command has been dropped.
    UnknownCommand(String),
    /// The command outside its literals exceeds [`Limits::max_line`]; the rest of the line
    /// is skipped by later calls.
    LineTooLong,
    /// A synchronizing literal larger than the limit: no continuation request was sent, so
    /// the client will not send it. The connection carries on.
    LiteralTooLarge { size: u64, limit: usize },
    /// A non-synchronizing literal larger than the limit, which the client sends anyway:
    /// the connection must close.
    NonSyncLiteralTooLarge { size: u64, limit: usize },
    /// During IDLE the client sent a line other than `DONE`. IDLE should end with a tagged
    /// `BAD` using the IDLE command's tag.
    ExpectedDone,
}

impl ParseError {
    /// True when the session must close the connection after answering.
    pub fn must_close(&self) -> bool {
        matches!(self.kind, ErrorKind::NonSyncLiteralTooLarge { .. })
    }

    /// Appends the answer to the client: `TAG BAD text` (`* BAD text` without a tag),
    /// `TAG NO [TOOBIG] ...` for a refused synchronizing literal, or `* BYE [TOOBIG] ...`
    /// when the connection must close.
    pub fn write_response(&self, out: &mut Vec<u8>) {
        let text = self.to_string();
        match (&self.kind, &self.tag) {
            (ErrorKind::NonSyncLiteralTooLarge { .. }, _) => {
                response::untagged(out, Status::Bye, Some(&response::Code::TooBig), &text);
            }
            (ErrorKind::LiteralTooLarge { .. }, Some(tag)) => {
                response::tagged(out, tag, Status::No, Some(&response::Code::TooBig), &text);
            }
            (_, Some(tag)) => response::tagged(out, tag, Status::Bad, None, &text),
            (_, None) => response::untagged(out, Status::Bad, None, &text),
        }
    }

    fn new(tag: Option<String>, kind: ErrorKind) -> Self {
        ParseError { tag, kind }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::Syntax(text) => f.write_str(text),
            ErrorKind::UnknownCommand(name) if name.is_empty() => f.write_str("Unknown command"),
            ErrorKind::UnknownCommand(name) => write!(f, "Unknown command {name}"),
            ErrorKind::LineTooLong => f.write_str("Command line too long"),
            ErrorKind::LiteralTooLarge { limit, .. }
            | ErrorKind::NonSyncLiteralTooLarge { limit, .. } => {
                write!(f, "Literal too large (at most {limit} octets)")
            }
            ErrorKind::ExpectedDone => f.write_str("Expected DONE"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Where the reader is within the command it is assembling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a line of the command: the first one, or the rest of the command line after
    /// a literal. The line's bytes so far are at the end of `frame`, from `start`.
    Line { start: usize },
    /// Reading the data of a literal; `remaining` octets are still to come.
    Literal { remaining: usize },
    /// Throwing away input up to the end of a line already reported as too long. `tail`
    /// holds its last bytes, to notice a non-synchronizing literal announced at its end.
    Discard,
    /// Throwing away a non-synchronizing literal announced by a discarded line, after
    /// which the rest of the command line is discarded too.
    SkipLiteral { remaining: u64 },
}

/// The longest literal announcement `{n+}\r\n`: 20 digits for a `u64` and five more octets.
const MAX_MARKER: usize = 25;

/// Assembles commands from the bytes a client sends; see the module docs for how to drive
/// it.
#[derive(Debug, Clone)]
pub struct CommandReader {
    limits: Limits,
    state: State,
    /// The command assembled so far: its lines and literal data, exactly as received.
    frame: Vec<u8>,
    /// Octets of `frame` outside literals, compared against `max_line`.
    line_octets: usize,
    /// Octets of `frame` inside literals, compared against the literal limit.
    literal_octets: usize,
    /// The last bytes of a line being discarded (state `Discard`).
    tail: Vec<u8>,
    /// Commands are read as after ENABLE UTF8=ACCEPT (see [`CommandReader::set_utf8`]).
    utf8: bool,
}

impl Default for CommandReader {
    fn default() -> Self {
        CommandReader::new(Limits::default())
    }
}

impl CommandReader {
    /// Creates a reader with the given limits. A `max_line` below 64 is raised to 64 so
    /// that LOGOUT always fits.
    pub fn new(limits: Limits) -> Self {
        CommandReader {
            limits: Limits {
                max_line: limits.max_line.max(64),
                ..limits
            },
            state: State::Line { start: 0 },
            frame: Vec::new(),
            line_octets: 0,
            literal_octets: 0,
            tail: Vec::new(),
            utf8: false,
        }
    }

    /// From the next command on, mailbox names are read as UTF-8 rather than modified
    /// UTF-7, and APPEND takes `UTF8 (~{n})`: the client enabled UTF8=ACCEPT (RFC 6855).
    pub fn set_utf8(&mut self) {
        self.utf8 = true;
    }

    /// The limits in effect.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// True when part of a command has been read (or is being skipped) but no command or
    /// error has come out of it yet.
    pub fn in_progress(&self) -> bool {
        !self.frame.is_empty() || !matches!(self.state, State::Line { .. })
    }

    /// Forgets any partly read command, for a fresh start after STARTTLS.
    pub fn reset(&mut self) {
        self.state = State::Line { start: 0 };
        self.frame = Vec::new();
        self.line_octets = 0;
        self.literal_octets = 0;
        self.tail.clear();
    }

    /// Takes input from the front of `buf` until a command is complete, and parses it.
    ///
    /// Bytes that belong to the command being assembled are removed from `buf` even when
    /// the result is `NeedMore`; bytes after a complete command stay for the next call.
    pub fn parse(&mut self, buf: &mut Vec<u8>) -> Result<Parsed, ParseError> {
        loop {
            match self.state {
                State::Discard => {
                    if !self.discard(buf) {
                        return Ok(Parsed::NeedMore);
                    }
                }
                State::SkipLiteral { remaining } => {
                    let n = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(buf.len());
                    buf.drain(..n);
                    let remaining = remaining - n as u64;
                    if remaining > 0 {
                        self.state = State::SkipLiteral { remaining };
                        return Ok(Parsed::NeedMore);
                    }
                    self.state = State::Discard;
                }
                State::Literal { remaining } => {
                    let n = remaining.min(buf.len());
                    self.frame.extend(buf.drain(..n));
                    if n < remaining {
                        self.state = State::Literal {
                            remaining: remaining - n,
                        };
                        return Ok(Parsed::NeedMore);
                    }
                    self.state = State::Line {
                        start: self.frame.len(),
                    };
                }
                State::Line { start } => {
                    let Some(lf) = buf.iter().position(|&b| b == b'\n') else {
                        self.line_octets += buf.len();
                        self.frame.append(buf);
                        if self.line_octets > self.limits.max_line {
                            return Err(self.too_long_midline(start));
                        }
                        return Ok(Parsed::NeedMore);
                    };
                    self.line_octets += lf + 1;
                    self.frame.extend(buf.drain(..=lf));
                    if self.line_octets > self.limits.max_line {
                        return Err(self.too_long_at_line_end(start));
                    }
                    if let Some(result) = self.line_complete(start) {
                        return result;
                    }
                }
            }
        }
    }

    /// Handles a line just completed (it ends `frame`, starting at `start`). Returns `None`
    /// when reading should go on (a literal follows, or an empty line was skipped).
    fn line_complete(&mut self, start: usize) -> Option<Result<Parsed, ParseError>> {
        let line = &self.frame[start..];
        if let Some((size, sync)) = literal_marker(line) {
            return self.literal_announced(size, sync);
        }
        if self.frame.iter().all(|&b| b == b'\r' || b == b'\n') {
            // Some clients send a blank line between commands; it means nothing.
            self.frame.clear();
            self.line_octets = 0;
            return None;
        }
        let frame = std::mem::take(&mut self.frame);
        self.state = State::Line { start: 0 };
        self.line_octets = 0;
        self.literal_octets = 0;
        Some(commands::parse_frame(frame, self.utf8).map(Parsed::Command))
    }

    /// Handles `{size}` or `{size+}` at the end of the line just read.
    fn literal_announced(&mut self, size: u64, sync: bool) -> Option<Result<Parsed, ParseError>> {
        let limit = if commands::is_append(&self.frame) {
            self.limits.max_append
        } else {
            self.limits.max_literal
        };
        let total = size.saturating_add(self.literal_octets as u64);
        if total > limit as u64 {
            let tag = cursor::leading_tag(&self.frame);
            self.reset();
            let kind = if sync {
                ErrorKind::LiteralTooLarge { size, limit }
            } else {
                ErrorKind::NonSyncLiteralTooLarge { size, limit }
            };
            return Some(Err(ParseError::new(tag, kind)));
        }
        if sync {
            // The client will not send the data until asked, so whatever is wrong with the
            // command so far is best reported now.
            if let Err(error) = commands::check_prefix(&self.frame, self.utf8) {
                self.reset();
                return Some(Err(error));
            }
        }
        // `total` is at most a usize limit, so these conversions cannot truncate.
        let size = size as usize;
        self.literal_octets += size;
        self.state = State::Literal { remaining: size };
        if sync {
            Some(Ok(Parsed::NeedContinuation))
        } else {
            None
        }
    }

    /// The limit was passed before the end of the line: drop the command and skip the rest
    /// of the line.
    fn too_long_midline(&mut self, start: usize) -> ParseError {
        let tag = cursor::leading_tag(&self.frame);
        // Only the current line can announce a literal: earlier lines and literal data
        // must not lend it a `{`.
        let keep = self.frame.len().saturating_sub(MAX_MARKER).max(start);
        let tail = self.frame.split_off(keep);
        self.reset();
        self.tail = tail;
        self.state = State::Discard;
        ParseError::new(tag, ErrorKind::LineTooLong)
    }

    /// The limit was passed by a line that is now complete: drop the command, and skip a
    /// non-synchronizing literal it announces along with the rest of that command line.
    fn too_long_at_line_end(&mut self, start: usize) -> ParseError {
        let tag = cursor::leading_tag(&self.frame);
        let marker = literal_marker(&self.frame[start..]);
        self.reset();
        if let Some((size, false)) = marker {
            self.state = State::SkipLiteral { remaining: size };
        }
        ParseError::new(tag, ErrorKind::LineTooLong)
    }

    /// Throws input away up to the end of the line. Returns true when the line (and any
    /// non-synchronizing literal it announces, via `SkipLiteral`) has been dealt with.
    fn discard(&mut self, buf: &mut Vec<u8>) -> bool {
        let Some(lf) = buf.iter().position(|&b| b == b'\n') else {
            self.tail.extend_from_slice(buf);
            let keep = self.tail.len().saturating_sub(MAX_MARKER);
            self.tail.drain(..keep);
            buf.clear();
            return false;
        };
        self.tail.extend(buf.drain(..=lf));
        let marker = literal_marker(&self.tail);
        self.tail.clear();
        self.state = match marker {
            Some((size, false)) => State::SkipLiteral { remaining: size },
            // A synchronizing literal is never sent: the client waits for a continuation
            // and gets the error instead.
            _ => State::Line { start: 0 },
        };
        true
    }

    /// Takes one line from `buf` while the session is in IDLE. `Ok(true)`: the client sent
    /// `DONE` (in any case) and IDLE ends. `Ok(false)`: no complete line yet.
    /// [`ErrorKind::ExpectedDone`]: any other line, which also ends IDLE.
    pub fn parse_idle_done(&mut self, buf: &mut Vec<u8>) -> Result<bool, ParseError> {
        match self.take_line(buf)? {
            None => Ok(false),
            Some(line) if line.eq_ignore_ascii_case(b"DONE") => Ok(true),
            Some(_) => Err(ParseError::new(None, ErrorKind::ExpectedDone)),
        }
    }

    /// Takes one line from `buf` while an AUTHENTICATE exchange waits for the client's
    /// response. `Ok(None)`: no complete line yet. A line that is neither `*` nor base64 is
    /// an [`ErrorKind::Syntax`] error, which should end the exchange with `TAG BAD`.
    pub fn parse_auth_response(
        &mut self,
        buf: &mut Vec<u8>,
    ) -> Result<Option<AuthResponse>, ParseError> {
        let Some(line) = self.take_line(buf)? else {
            return Ok(None);
        };
        if line == b"*" {
            return Ok(Some(AuthResponse::Cancel));
        }
        if !cursor::is_base64(&line) {
            return Err(ParseError::new(
                None,
                ErrorKind::Syntax("Invalid base64 in authentication response".into()),
            ));
        }
        // is_base64 admits only ASCII, so this cannot fail.
        Ok(Some(AuthResponse::Data(
            String::from_utf8(line).unwrap_or_default(),
        )))
    }

    /// Takes one line without its line ending, honouring the line limit and any discarding
    /// in progress.
    fn take_line(&mut self, buf: &mut Vec<u8>) -> Result<Option<Vec<u8>>, ParseError> {
        loop {
            match self.state {
                State::Discard => {
                    if !self.discard(buf) {
                        return Ok(None);
                    }
                }
                State::SkipLiteral { .. } | State::Literal { .. } => {
                    // A continuation line never announces literals; a leftover from an
                    // abandoned command is simply dropped.
                    self.reset();
                }
                State::Line { .. } => break,
            }
        }
        let Some(lf) = buf.iter().position(|&b| b == b'\n') else {
            if self.frame.len() + buf.len() > self.limits.max_line {
                let keep = buf.len().saturating_sub(MAX_MARKER);
                self.reset();
                self.tail = buf.split_off(keep);
                buf.clear();
                self.state = State::Discard;
                return Err(ParseError::new(None, ErrorKind::LineTooLong));
            }
            self.frame.append(buf);
            return Ok(None);
        };
        self.frame.extend(buf.drain(..=lf));
        let mut line = std::mem::take(&mut self.frame);
        self.reset();
        if line.len() > self.limits.max_line {
            return Err(ParseError::new(None, ErrorKind::LineTooLong));
        }
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Ok(Some(line))
    }
}

/// Recognizes `{n}` or `{n+}` followed by the line ending at the end of `line`, giving the
/// size and whether the literal is synchronizing. A size too big for `u64` is reported as
/// `u64::MAX`, which is over any limit.
///
/// Only the last [`MAX_MARKER`] octets are looked at, because that is all a line being
/// discarded keeps of its end, and the answer must not depend on how the line arrived
/// (found by the imap_command fuzz target). Digits that fill that window are a size too
/// long to read: `u64::MAX` too.
fn literal_marker(line: &[u8]) -> Option<(u64, bool)> {
    let cut = line.len() > MAX_MARKER;
    let line = &line[line.len().saturating_sub(MAX_MARKER)..];
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line.strip_suffix(b"}")?;
    let (line, sync) = match line.strip_suffix(b"+") {
        Some(line) => (line, false),
        None => (line, true),
    };
    let digits = line.len() - line.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 && cut && !line.is_empty() {
        return Some((u64::MAX, sync));
    }
    if digits == line.len() || line[..digits].last() != Some(&b'{') {
        return None;
    }
    let size = line[digits..].iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    });
    Some((size, sync))
}

/// Parses one complete command: its lines and literal data as sent, ending with the final
/// CRLF. The incremental [`CommandReader`] uses this once it has a whole command; it is
/// public for tools and tests that hold a command in one piece.
pub fn parse_command(input: &[u8]) -> Result<Command, ParseError> {
    commands::parse_frame(input.to_vec(), false)
}
