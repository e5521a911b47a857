//! Client commands: parsing one command line, and cutting command lines out of a byte stream.

use std::fmt;

/// The longest command line, CRLF included, that RFC 2449 section 4 lets a client send.
///
/// [`CommandReader::new`] takes the limit as a parameter so a server can be more generous,
/// but this is the value a conforming client never exceeds.
pub const STANDARD_MAX_LINE: usize = 255;

/// The longest argument RFC 2449 section 4 allows.
///
/// [`parse_command`] applies it to message numbers, line counts and SASL mechanism names.
/// PASS, USER and the AUTH initial response are exempt; see [`parse_command`] for why.
pub const MAX_ARGUMENT_LEN: usize = 40;

/// The shortest line limit [`CommandReader`] accepts, so that "QUIT\r\n" always fits and a
/// misconfigured limit cannot lock every client out of even ending its session.
const MIN_MAX_LINE: usize = 6;

/// The longest SASL mechanism name RFC 4422 section 3.1 allows.
const MAX_MECHANISM_LEN: usize = 20;

/// How much of an unknown keyword [`CommandError::Unknown`] keeps, so that echoing it back
/// never turns into a way to make the server send long attacker-chosen text.
const MAX_UNKNOWN_LEN: usize = 16;

/// One POP3 command, as the client sent it.
///
/// `Debug` redacts the password of PASS and the initial response of AUTH (which usually
/// carries a password too), so a command can be logged with `{:?}` without leaking secrets.
#[derive(Clone, PartialEq, Eq)]
pub enum Command {
    /// `USER name` (RFC 1939 section 7).
    User(String),
    /// `PASS password`: everything after the first space, verbatim.
    Pass(String),
    /// `STAT`.
    Stat,
    /// `LIST [msg]`.
    List(Option<u32>),
    /// `RETR msg`.
    Retr(u32),
    /// `DELE msg`.
    Dele(u32),
    /// `NOOP`.
    Noop,
    /// `RSET`.
    Rset,
    /// `QUIT`.
    Quit,
    /// `TOP msg n`: the header and the first `lines` lines of the body.
    Top { msg: u32, lines: u32 },
    /// `UIDL [msg]`.
    Uidl(Option<u32>),
    /// `CAPA` (RFC 2449).
    Capa,
    /// `STLS` (RFC 2595).
    Stls,
    /// `AUTH [mechanism [initial-response]]` (RFC 5034).
    ///
    /// The mechanism is upper-cased, because SASL mechanism names are case-insensitive and
    /// the server should not have to care. A bare `AUTH` (no mechanism) is the old RFC 1734
    /// way of asking for the list of mechanisms. The initial response is kept as sent: it is
    /// base64, or "=" for an empty response, and decoding it is the server's job.
    Auth {
        mechanism: Option<String>,
        initial_response: Option<String>,
    },
}

impl Command {
    /// The command's keyword in upper case, for logs and metrics; it never carries arguments.
    pub fn keyword(&self) -> &'static str {
        match self {
            Command::User(_) => "USER",
            Command::Pass(_) => "PASS",
            Command::Stat => "STAT",
            Command::List(_) => "LIST",
            Command::Retr(_) => "RETR",
            Command::Dele(_) => "DELE",
            Command::Noop => "NOOP",
            Command::Rset => "RSET",
            Command::Quit => "QUIT",
            Command::Top { .. } => "TOP",
            Command::Uidl(_) => "UIDL",
            Command::Capa => "CAPA",
            Command::Stls => "STLS",
            Command::Auth { .. } => "AUTH",
        }
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets are replaced by a marker rather than omitted, so a log still shows whether
        // one was present.
        let redacted = format_args!("<redacted>");
        match self {
            Command::User(name) => f.debug_tuple("User").field(name).finish(),
            Command::Pass(_) => f.debug_tuple("Pass").field(&redacted).finish(),
            Command::Stat => f.write_str("Stat"),
            Command::List(msg) => f.debug_tuple("List").field(msg).finish(),
            Command::Retr(msg) => f.debug_tuple("Retr").field(msg).finish(),
            Command::Dele(msg) => f.debug_tuple("Dele").field(msg).finish(),
            Command::Noop => f.write_str("Noop"),
            Command::Rset => f.write_str("Rset"),
            Command::Quit => f.write_str("Quit"),
            Command::Top { msg, lines } => f
                .debug_struct("Top")
                .field("msg", msg)
                .field("lines", lines)
                .finish(),
            Command::Uidl(msg) => f.debug_tuple("Uidl").field(msg).finish(),
            Command::Capa => f.write_str("Capa"),
            Command::Stls => f.write_str("Stls"),
            Command::Auth {
                mechanism,
                initial_response,
            } => f
                .debug_struct("Auth")
                .field("mechanism", mechanism)
                .field(
                    "initial_response",
                    &initial_response.as_ref().map(|_| redacted),
                )
                .finish(),
        }
    }
}

/// Why a command line could not be parsed.
///
/// Both variants carry text that is safe to put in an "-ERR" reply: it never contains
/// control characters and is short.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandError {
    /// The keyword is not a command this crate knows. The string is the keyword as sent,
    /// upper-cased, with anything but printable ASCII replaced by '?' and cut to 16 characters.
    Unknown(String),
    /// The keyword is known (or missing) but the line is malformed. The string says what is
    /// wrong, worded for the client.
    Syntax(String),
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Unknown(keyword) => write!(f, "unknown command {keyword}"),
            CommandError::Syntax(detail) => f.write_str(detail),
        }
    }
}

impl std::error::Error for CommandError {}

/// Parses one command line, without its line ending.
///
/// Keywords are case-insensitive. Arguments are separated by spaces; runs of spaces and
/// trailing spaces are tolerated because some clients pad their commands, and no argument
/// except the password can contain a space anyway. Message numbers are decimal, from 1 to
/// `u32::MAX`; TOP's line count may also be 0.
///
/// PASS takes the rest of the line after the first space verbatim, since RFC 1939 allows
/// spaces in passwords. USER and the AUTH initial response are not held to the 40-octet
/// argument limit of RFC 2449: a login name is often a full mail address, which can be
/// longer, and RFC 5034 bounds the initial response only by the line length. The line
/// length limit of [`CommandReader`] still bounds all of them.
///
/// Control characters anywhere in the line are rejected, so nothing that reaches the rest
/// of the server (or its logs) can carry a NUL, a tab or a stray CR.
pub fn parse_command(line: &[u8]) -> Result<Command, CommandError> {
    if line.iter().any(u8::is_ascii_control) {
        return Err(syntax("control character in command line"));
    }
    let (keyword, rest) = match line.iter().position(|&b| b == b' ') {
        Some(space) => (&line[..space], Some(&line[space + 1..])),
        None => (line, None),
    };
    if keyword.is_empty() {
        return Err(syntax(if line.is_empty() {
            "empty command line"
        } else {
            "command line starts with a space"
        }));
    }
    // RFC 1939 keywords are three or four letters; anything else cannot be a command, so it
    // is reported as unknown rather than as a syntax error in some command.
    if !(3..=4).contains(&keyword.len()) || !keyword.iter().all(u8::is_ascii_alphabetic) {
        return Err(unknown(keyword));
    }
    let mut upper = [0u8; 4];
    for (u, k) in upper.iter_mut().zip(keyword) {
        *u = k.to_ascii_uppercase();
    }

    // PASS is the one command whose argument is not space-separated, so it is handled before
    // the line is split into arguments.
    if &upper == b"PASS" {
        return match rest {
            Some(password) if !password.is_empty() => Ok(Command::Pass(utf8(password)?)),
            _ => Err(usage("PASS password")),
        };
    }

    // No command takes more than two arguments, so taking three is enough to notice extras.
    let mut split = rest
        .unwrap_or_default()
        .split(|&b| b == b' ')
        .filter(|arg| !arg.is_empty());
    let args = [split.next(), split.next(), split.next()];

    match &upper[..keyword.len()] {
        b"USER" => match args {
            [Some(name), None, _] => Ok(Command::User(utf8(name)?)),
            _ => Err(usage("USER name")),
        },
        b"STAT" => bare(args, Command::Stat),
        b"LIST" => match args {
            [None, ..] => Ok(Command::List(None)),
            [Some(msg), None, _] => Ok(Command::List(Some(msg_number(msg)?))),
            _ => Err(usage("LIST [msg]")),
        },
        b"RETR" => match args {
            [Some(msg), None, _] => Ok(Command::Retr(msg_number(msg)?)),
            _ => Err(usage("RETR msg")),
        },
        b"DELE" => match args {
            [Some(msg), None, _] => Ok(Command::Dele(msg_number(msg)?)),
            _ => Err(usage("DELE msg")),
        },
        b"NOOP" => bare(args, Command::Noop),
        b"RSET" => bare(args, Command::Rset),
        b"QUIT" => bare(args, Command::Quit),
        b"TOP" => match args {
            [Some(msg), Some(lines), None] => Ok(Command::Top {
                msg: msg_number(msg)?,
                lines: line_count(lines)?,
            }),
            _ => Err(usage("TOP msg n")),
        },
        b"UIDL" => match args {
            [None, ..] => Ok(Command::Uidl(None)),
            [Some(msg), None, _] => Ok(Command::Uidl(Some(msg_number(msg)?))),
            _ => Err(usage("UIDL [msg]")),
        },
        b"CAPA" => bare(args, Command::Capa),
        b"STLS" => bare(args, Command::Stls),
        b"AUTH" => match args {
            [None, ..] => Ok(Command::Auth {
                mechanism: None,
                initial_response: None,
            }),
            [Some(mechanism), response, None] => Ok(Command::Auth {
                mechanism: Some(mechanism_name(mechanism)?),
                initial_response: response.map(initial_response).transpose()?,
            }),
            _ => Err(usage("AUTH [mechanism [initial-response]]")),
        },
        _ => Err(unknown(keyword)),
    }
}

/// Accepts a command that takes no arguments.
fn bare(args: [Option<&[u8]>; 3], command: Command) -> Result<Command, CommandError> {
    match args {
        [None, ..] => Ok(command),
        _ => Err(syntax(&format!("{} takes no arguments", command.keyword()))),
    }
}

/// Parses a message number: decimal digits only, from 1 to `u32::MAX`.
fn msg_number(arg: &[u8]) -> Result<u32, CommandError> {
    match number(arg)? {
        0 => Err(syntax("message numbers start at 1")),
        n => Ok(n),
    }
}

/// Parses TOP's line count, which unlike a message number may be 0.
fn line_count(arg: &[u8]) -> Result<u32, CommandError> {
    number(arg)
}

/// Parses a plain decimal number. Signs, spaces and other decorations are refused, since
/// RFC 1939 only ever shows bare digits and anything else is a client bug worth reporting.
fn number(arg: &[u8]) -> Result<u32, CommandError> {
    if arg.len() > MAX_ARGUMENT_LEN {
        return Err(syntax("argument longer than 40 octets"));
    }
    if !arg.iter().all(u8::is_ascii_digit) {
        return Err(syntax("expected a decimal number"));
    }
    arg.iter()
        .try_fold(0u32, |n, &d| {
            n.checked_mul(10)?.checked_add(u32::from(d - b'0'))
        })
        .ok_or_else(|| syntax(&format!("number larger than {}", u32::MAX)))
}

/// Validates and upper-cases a SASL mechanism name (RFC 4422 section 3.1: letters, digits,
/// '-' and '_', at most 20 characters).
fn mechanism_name(arg: &[u8]) -> Result<String, CommandError> {
    let valid = arg.len() <= MAX_MECHANISM_LEN
        && arg
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return Err(syntax("invalid SASL mechanism name"));
    }
    Ok(arg
        .iter()
        .map(|&b| char::from(b.to_ascii_uppercase()))
        .collect())
}

/// Checks that an AUTH initial response looks like base64 (or is "=", the empty response).
/// Decoding is left to the server, but refusing other bytes here keeps arbitrary text out
/// of the SASL layer.
fn initial_response(arg: &[u8]) -> Result<String, CommandError> {
    let valid = arg
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
    if !valid {
        return Err(syntax("initial response is not base64"));
    }
    utf8(arg)
}

/// Converts an argument to a string. Non-ASCII is allowed (a login name or password may be
/// UTF-8) but invalid UTF-8 is refused, so the rest of the server only ever sees text.
fn utf8(arg: &[u8]) -> Result<String, CommandError> {
    std::str::from_utf8(arg)
        .map(str::to_owned)
        .map_err(|_| syntax("argument is not valid UTF-8"))
}

fn syntax(detail: &str) -> CommandError {
    CommandError::Syntax(detail.to_owned())
}

fn usage(form: &str) -> CommandError {
    CommandError::Syntax(format!("usage: {form}"))
}

/// Builds [`CommandError::Unknown`] from a keyword, made safe to echo to the client.
fn unknown(keyword: &[u8]) -> CommandError {
    CommandError::Unknown(
        keyword
            .iter()
            .take(MAX_UNKNOWN_LEN)
            .map(|&b| match b {
                0x21..=0x7e => char::from(b.to_ascii_uppercase()),
                _ => '?',
            })
            .collect(),
    )
}

/// Why [`CommandReader::parse`] returned no command.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadError {
    /// The buffer holds no complete line yet; read more and call again.
    NeedMore,
    /// The current line is longer than the limit. The session should reply "-ERR" and go on;
    /// the reader skips the rest of that line by itself.
    LineTooLong,
    /// A complete line was read and removed from the buffer, but it is not a valid command.
    Command(CommandError),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::NeedMore => f.write_str("incomplete command line"),
            ReadError::LineTooLong => f.write_str("command line too long"),
            ReadError::Command(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReadError::Command(e) => Some(e),
            _ => None,
        }
    }
}

impl From<CommandError> for ReadError {
    fn from(e: CommandError) -> Self {
        ReadError::Command(e)
    }
}

/// Incremental line reader.
///
/// The session appends whatever it receives to a buffer and calls [`parse`](Self::parse)
/// until it returns [`ReadError::NeedMore`]; each call removes at most one line from the
/// front of the buffer. That is all PIPELINING (RFC 2449) needs: commands sent back to back
/// simply come out one per call.
///
/// Lines end in CRLF, but a bare LF is accepted too. POP3 clients are known to be sloppy
/// about this, and unlike SMTP's DATA nothing here can be smuggled past another parser by
/// disagreeing about line endings.
///
/// Memory stays bounded: a line longer than the limit is reported once and its remainder is
/// thrown away as it arrives, so the buffer never has to hold more than one limit's worth.
///
/// After STLS the session must discard any bytes still in its buffer (they were sent in
/// plain text and could have been injected by an attacker, RFC 2595 section 3.1 and
/// CVE-2011-0411) and call [`reset`](Self::reset).
#[derive(Debug, Clone)]
pub struct CommandReader {
    max_line: usize,
    /// True while the rest of an over-long line is being thrown away.
    discarding: bool,
}

impl CommandReader {
    /// Creates a reader that accepts lines of up to `max_line` octets, line ending included.
    ///
    /// [`STANDARD_MAX_LINE`] (255, RFC 2449) is what conforming clients stay within. Values
    /// below 6 are raised to 6 so that "QUIT\r\n" always fits.
    pub fn new(max_line: usize) -> Self {
        CommandReader {
            max_line: max_line.max(MIN_MAX_LINE),
            discarding: false,
        }
    }

    /// The line limit in effect, line ending included.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Forgets any over-long line being skipped, for a fresh start after STLS.
    pub fn reset(&mut self) {
        self.discarding = false;
    }

    /// Removes one line from the front of `buf` and parses it.
    ///
    /// Returns [`ReadError::NeedMore`] when no complete line is there yet (having possibly
    /// thrown away the tail of an over-long line). [`ReadError::LineTooLong`] is returned as
    /// soon as the partial line is known to exceed the limit, without waiting for its end.
    pub fn parse(&mut self, buf: &mut Vec<u8>) -> Result<Command, ReadError> {
        if self.discarding {
            match buf.iter().position(|&b| b == b'\n') {
                Some(lf) => {
                    buf.drain(..=lf);
                    self.discarding = false;
                }
                None => {
                    buf.clear();
                    return Err(ReadError::NeedMore);
                }
            }
        }

        // Only the first max_line bytes can hold the end of an acceptable line.
        let window = &buf[..buf.len().min(self.max_line)];
        match window.iter().position(|&b| b == b'\n') {
            Some(lf) => {
                let line = &buf[..lf];
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let parsed = parse_command(line);
                buf.drain(..=lf);
                parsed.map_err(ReadError::Command)
            }
            None if buf.len() >= self.max_line => {
                // max_line bytes without an LF: whatever ends this line, it is too long. The
                // rest of it may already be buffered; if not, the next calls skip it.
                match buf[self.max_line..].iter().position(|&b| b == b'\n') {
                    Some(offset) => {
                        buf.drain(..=self.max_line + offset);
                    }
                    None => {
                        buf.clear();
                        self.discarding = true;
                    }
                }
                Err(ReadError::LineTooLong)
            }
            None => Err(ReadError::NeedMore),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syn(detail: &str) -> Result<Command, CommandError> {
        Err(CommandError::Syntax(detail.to_owned()))
    }

    fn unk(keyword: &str) -> Result<Command, CommandError> {
        Err(CommandError::Unknown(keyword.to_owned()))
    }

    fn auth(mechanism: Option<&str>, response: Option<&str>) -> Result<Command, CommandError> {
        Ok(Command::Auth {
            mechanism: mechanism.map(str::to_owned),
            initial_response: response.map(str::to_owned),
        })
    }

    fn check(input: impl AsRef<[u8]>, expect: Result<Command, CommandError>) {
        let input = input.as_ref();
        assert_eq!(
            parse_command(input),
            expect,
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }

    #[test]
    fn simple_commands() {
        use Command::*;
        let cases: &[(&str, Command)] = &[
            ("STAT", Stat),
            ("stat", Stat),
            ("StAt", Stat),
            ("NOOP", Noop),
            ("RSET", Rset),
            ("QUIT", Quit),
            ("quit", Quit),
            ("CAPA", Capa),
            ("STLS", Stls),
            ("stls", Stls),
            // Trailing spaces are padding, not an argument.
            ("STAT ", Stat),
            ("QUIT   ", Quit),
            ("LIST", List(None)),
            ("LIST ", List(None)),
            ("UIDL", Uidl(None)),
            ("uidl", Uidl(None)),
        ];
        for (input, expect) in cases {
            check(input, Ok(expect.clone()));
        }
    }

    #[test]
    fn message_numbers() {
        use Command::*;
        check("RETR 1", Ok(Retr(1)));
        check("retr 42", Ok(Retr(42)));
        check("RETR 4294967295", Ok(Retr(u32::MAX)));
        check("RETR 007", Ok(Retr(7)));
        check("RETR  3", Ok(Retr(3)));
        check("RETR 3 ", Ok(Retr(3)));
        check("DELE 9", Ok(Dele(9)));
        check("LIST 2", Ok(List(Some(2))));
        check("UIDL 17", Ok(Uidl(Some(17))));
        check("list 1", Ok(List(Some(1))));

        check("RETR 0", syn("message numbers start at 1"));
        check("RETR 000", syn("message numbers start at 1"));
        check("DELE 0", syn("message numbers start at 1"));
        check("LIST 0", syn("message numbers start at 1"));
        check("RETR 4294967296", syn("number larger than 4294967295"));
        check(
            "RETR 99999999999999999999",
            syn("number larger than 4294967295"),
        );
        check("RETR -1", syn("expected a decimal number"));
        check("RETR +1", syn("expected a decimal number"));
        check("RETR 1a", syn("expected a decimal number"));
        check("RETR 0x10", syn("expected a decimal number"));
        check("RETR 1.0", syn("expected a decimal number"));
        check("RETR １", syn("expected a decimal number"));
        check("RETR", syn("usage: RETR msg"));
        check("RETR ", syn("usage: RETR msg"));
        check("RETR 1 2", syn("usage: RETR msg"));
        check("DELE", syn("usage: DELE msg"));
        check("DELE 1 1", syn("usage: DELE msg"));
        check("LIST 1 2", syn("usage: LIST [msg]"));
        check("UIDL 1 x", syn("usage: UIDL [msg]"));
        check("UIDL x", syn("expected a decimal number"));

        // 40 octets is the RFC 2449 argument limit; 41 is refused even when the value fits.
        let forty = format!("RETR {}1", "0".repeat(39));
        check(&forty, Ok(Retr(1)));
        let forty_one = format!("RETR {}1", "0".repeat(40));
        check(&forty_one, syn("argument longer than 40 octets"));
    }

    #[test]
    fn top() {
        use Command::*;
        check("TOP 1 0", Ok(Top { msg: 1, lines: 0 }));
        check("top 3 10", Ok(Top { msg: 3, lines: 10 }));
        check(
            "TOP 4294967295 4294967295",
            Ok(Top {
                msg: u32::MAX,
                lines: u32::MAX,
            }),
        );
        check("TOP  1  5 ", Ok(Top { msg: 1, lines: 5 }));
        check("TOP 0 5", syn("message numbers start at 1"));
        check("TOP 1 -1", syn("expected a decimal number"));
        check("TOP 1 4294967296", syn("number larger than 4294967295"));
        check("TOP", syn("usage: TOP msg n"));
        check("TOP 1", syn("usage: TOP msg n"));
        check("TOP 1 2 3", syn("usage: TOP msg n"));
    }

    #[test]
    fn bare_commands_refuse_arguments() {
        for keyword in ["STAT", "NOOP", "RSET", "QUIT", "CAPA", "STLS"] {
            check(
                format!("{keyword} x"),
                syn(&format!("{keyword} takes no arguments")),
            );
            check(
                format!("{} 1", keyword.to_lowercase()),
                syn(&format!("{keyword} takes no arguments")),
            );
        }
    }

    #[test]
    fn user_and_pass() {
        use Command::*;
        check("USER alice", Ok(User("alice".into())));
        check(
            "user alice@example.org",
            Ok(User("alice@example.org".into())),
        );
        check("USER  alice ", Ok(User("alice".into())));
        check("USER jürgen", Ok(User("jürgen".into())));
        // Login names are exempt from the 40-octet limit: full addresses get long.
        let long = format!("{}@example.org", "a".repeat(60));
        check(format!("USER {long}"), Ok(User(long.clone())));
        check("USER", syn("usage: USER name"));
        check("USER ", syn("usage: USER name"));
        check("USER john doe", syn("usage: USER name"));
        check(b"USER \xff\xfe", syn("argument is not valid UTF-8"));

        check("PASS secret", Ok(Pass("secret".into())));
        check("pass secret", Ok(Pass("secret".into())));
        check(
            "PASS correct horse battery",
            Ok(Pass("correct horse battery".into())),
        );
        check("PASS  leading", Ok(Pass(" leading".into())));
        check("PASS trailing ", Ok(Pass("trailing ".into())));
        check("PASS  ", Ok(Pass(" ".into())));
        check("PASS pässwörd", Ok(Pass("pässwörd".into())));
        check("PASS a:b;c\"d'e\\f", Ok(Pass("a:b;c\"d'e\\f".into())));
        let long = "x".repeat(200);
        check(format!("PASS {long}"), Ok(Pass(long.clone())));
        check("PASS", syn("usage: PASS password"));
        check("PASS ", syn("usage: PASS password"));
        check(b"PASS \xc3", syn("argument is not valid UTF-8"));
        check("PASS tab\there", syn("control character in command line"));
        check("PASS nul\0here", syn("control character in command line"));
    }

    #[test]
    fn auth_command() {
        check("AUTH", auth(None, None));
        check("AUTH ", auth(None, None));
        check("AUTH PLAIN", auth(Some("PLAIN"), None));
        check("auth plain", auth(Some("PLAIN"), None));
        check("AUTH SCRAM-SHA-256", auth(Some("SCRAM-SHA-256"), None));
        check("AUTH X_Y-1", auth(Some("X_Y-1"), None));
        check(
            "AUTH PLAIN AGFsaWNlAHNlY3JldA==",
            auth(Some("PLAIN"), Some("AGFsaWNlAHNlY3JldA==")),
        );
        check("AUTH PLAIN =", auth(Some("PLAIN"), Some("=")));
        check("AUTH PLAIN a+/b", auth(Some("PLAIN"), Some("a+/b")));
        // The initial response is bounded by the line length, not the 40-octet limit.
        let long = "QUFB".repeat(40);
        check(
            format!("AUTH PLAIN {long}"),
            auth(Some("PLAIN"), Some(&long)),
        );
        check(
            format!("AUTH {}", "A".repeat(21)),
            syn("invalid SASL mechanism name"),
        );
        check(
            format!("AUTH {}", "A".repeat(20)),
            auth(Some(&"A".repeat(20)), None),
        );
        check("AUTH PL@IN", syn("invalid SASL mechanism name"));
        check("AUTH PLÄIN", syn("invalid SASL mechanism name"));
        check("AUTH PLAIN abc*", syn("initial response is not base64"));
        check("AUTH PLAIN ä", syn("initial response is not base64"));
        check(
            "AUTH PLAIN abc def",
            syn("usage: AUTH [mechanism [initial-response]]"),
        );
    }

    #[test]
    fn unknown_and_malformed_keywords() {
        check("", syn("empty command line"));
        check(" ", syn("command line starts with a space"));
        check(" STAT", syn("command line starts with a space"));
        check("APOP alice c4c9334bac560ecc979e58001b3e22fb", unk("APOP"));
        check("XTND XMIT", unk("XTND"));
        check("LAST", unk("LAST"));
        check("UTF8", unk("UTF8"));
        check("helo", unk("HELO"));
        check("EHLO example.org", unk("EHLO"));
        check("GET / HTTP/1.1", unk("GET"));
        check("ST", unk("ST"));
        check("X", unk("X"));
        check("STATS", unk("STATS"));
        check("RETR1", unk("RETR1"));
        check("RE-T 1", unk("RE-T"));
        check("ST4T", unk("ST4T"));
        check("STÄT", unk("ST??T"));
        check(b"ST\xffT", unk("ST?T"));
        check("A".repeat(100), unk(&"A".repeat(16)));
        check("STAT\r", syn("control character in command line"));
        check("STAT\n", syn("control character in command line"));
        check("ST\0AT", syn("control character in command line"));
        check("STAT\t", syn("control character in command line"));
        check("RETR\t1", syn("control character in command line"));
        check("\x1b[2J", syn("control character in command line"));
        check("STAT\x7f", syn("control character in command line"));
    }

    #[test]
    fn errors_are_safe_to_echo() {
        let nasty: &[&[u8]] = &[
            b"\xff\xfe\xfd\xfc",
            b"abc\xc3\xa4",
            b"<script>alert(1)</script>",
        ];
        for input in nasty {
            let e = parse_command(input).unwrap_err().to_string();
            assert!(e.len() <= 40, "{e:?}");
            assert!(e.bytes().all(|b| (0x20..0x7f).contains(&b)), "{e:?}");
        }
    }

    #[test]
    fn debug_redacts_secrets() {
        let pass = format!("{:?}", Command::Pass("hunter2".into()));
        assert_eq!(pass, "Pass(<redacted>)");
        let auth = format!(
            "{:?}",
            Command::Auth {
                mechanism: Some("PLAIN".into()),
                initial_response: Some("AGFsaWNlAGh1bnRlcjI=".into()),
            }
        );
        assert_eq!(
            auth,
            r#"Auth { mechanism: Some("PLAIN"), initial_response: Some(<redacted>) }"#
        );
        assert_eq!(
            format!("{:?}", Command::User("alice".into())),
            r#"User("alice")"#
        );
        assert_eq!(
            format!("{:?}", Command::Top { msg: 1, lines: 2 }),
            "Top { msg: 1, lines: 2 }"
        );
    }

    #[test]
    fn keywords() {
        let cases = [
            ("USER a", "USER"),
            ("pass b", "PASS"),
            ("stat", "STAT"),
            ("list", "LIST"),
            ("retr 1", "RETR"),
            ("dele 1", "DELE"),
            ("noop", "NOOP"),
            ("rset", "RSET"),
            ("quit", "QUIT"),
            ("top 1 1", "TOP"),
            ("uidl", "UIDL"),
            ("capa", "CAPA"),
            ("stls", "STLS"),
            ("auth", "AUTH"),
        ];
        for (line, keyword) in cases {
            assert_eq!(parse_command(line.as_bytes()).unwrap().keyword(), keyword);
        }
    }

    /// Feeds `chunks` to a fresh reader one after the other, draining it after each, and
    /// compares every result other than `NeedMore` with `expect`. It also checks the memory
    /// bound: whenever the reader asks for more, less than one line limit is buffered.
    fn check_reader(max_line: usize, chunks: &[&[u8]], expect: &[Result<Command, ReadError>]) {
        let got = run_reader(max_line, chunks);
        assert_eq!(got, expect, "chunks {chunks:?}");
    }

    fn run_reader(max_line: usize, chunks: &[&[u8]]) -> Vec<Result<Command, ReadError>> {
        let mut reader = CommandReader::new(max_line);
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            loop {
                match reader.parse(&mut buf) {
                    Err(ReadError::NeedMore) => {
                        assert!(
                            buf.len() < reader.max_line(),
                            "buffer grew to {}",
                            buf.len()
                        );
                        break;
                    }
                    other => got.push(other),
                }
            }
        }
        got
    }

    fn cmd(line: &str) -> Result<Command, ReadError> {
        parse_command(line.as_bytes()).map_err(ReadError::Command)
    }

    #[test]
    fn reader_splits_lines() {
        use Command::*;
        check_reader(255, &[b"STAT\r\n"], &[Ok(Stat)]);
        check_reader(255, &[b"STAT\n"], &[Ok(Stat)]);
        check_reader(255, &[b"STAT"], &[]);
        check_reader(255, &[b"STAT\r"], &[]);
        check_reader(255, &[b"ST", b"AT", b"\r", b"\n"], &[Ok(Stat)]);
        // Pipelining: several commands in one read come out one per call.
        check_reader(
            255,
            &[b"USER a\r\nPASS b c\r\nSTAT\r\nLIST\nRETR 1\r\nQUIT\r\n"],
            &[
                Ok(User("a".into())),
                Ok(Pass("b c".into())),
                Ok(Stat),
                Ok(List(None)),
                Ok(Retr(1)),
                Ok(Quit),
            ],
        );
        // A bad line is consumed and reported; the next one still parses.
        check_reader(
            255,
            &[b"FOO\r\n\r\nRETR 0\r\nNOOP\r\n"],
            &[cmd("FOO"), cmd(""), cmd("RETR 0"), Ok(Noop)],
        );
        // Only one CR is part of the line ending; a second is a stray control character.
        check_reader(255, &[b"STAT\r\r\n"], &[cmd("STAT\r")]);
        // A bare CR is not a line ending.
        check_reader(255, &[b"STAT\rNOOP\r\n"], &[cmd("STAT\rNOOP")]);
        // Only the one space after PASS is a separator; the CR before LF is still stripped.
        check_reader(255, &[b"PASS  x \r\n"], &[Ok(Pass(" x ".into()))]);
    }

    #[test]
    fn reader_line_limit() {
        use Command::*;
        // "STAT\r\n" is exactly 6 octets: it fits a 6-octet limit.
        check_reader(6, &[b"STAT\r\n"], &[Ok(Stat)]);
        check_reader(6, &[b"LIST\n"], &[Ok(List(None))]);
        // Seven octets do not, and this is known as soon as six arrive without an LF.
        check_reader(6, &[b"STATS\r"], &[Err(ReadError::LineTooLong)]);
        check_reader(6, &[b"STATS"], &[]);
        check_reader(6, &[b"STAT \r\n"], &[Err(ReadError::LineTooLong)]);
        // The rest of the long line is skipped, then parsing resumes.
        check_reader(
            6,
            &[b"RETR 12345\r\nNOOP\r\n"],
            &[Err(ReadError::LineTooLong), Ok(Noop)],
        );
        check_reader(
            6,
            &[b"RETR 1", b"2345", b"6789", b"\r", b"\nNOOP\r\n"],
            &[Err(ReadError::LineTooLong), Ok(Noop)],
        );
        // A huge line is reported once, however many reads it spans.
        let junk = vec![b'x'; 10_000];
        check_reader(
            255,
            &[&junk, &junk, &junk, b"\r\nQUIT\r\n"],
            &[Err(ReadError::LineTooLong), Ok(Quit)],
        );
        // Two long lines in a row are two errors.
        check_reader(
            8,
            &[b"AAAAAAAAAAAA\nBBBBBBBBBBBBB\nQUIT\r\n"],
            &[
                Err(ReadError::LineTooLong),
                Err(ReadError::LineTooLong),
                Ok(Quit),
            ],
        );
        // Limits below 6 are raised so QUIT always fits.
        check_reader(0, &[b"QUIT\r\n"], &[Ok(Quit)]);
        check_reader(1, &[b"\r\n"], &[cmd("")]);
        // The standard RFC 2449 limit: 253 octets of command plus CRLF fit, 254 do not.
        let fits = format!("PASS {}\r\n", "p".repeat(248));
        assert_eq!(fits.len(), 255);
        check_reader(
            STANDARD_MAX_LINE,
            &[fits.as_bytes()],
            &[Ok(Pass("p".repeat(248)))],
        );
        let too_long = format!("PASS {}\r\n", "p".repeat(249));
        check_reader(
            STANDARD_MAX_LINE,
            &[too_long.as_bytes(), b"NOOP\r\n"],
            &[Err(ReadError::LineTooLong), Ok(Noop)],
        );
        // With a bare LF the same 254 octets of command fit, since the limit counts the
        // line ending actually sent.
        let bare_lf = format!("PASS {}\n", "p".repeat(249));
        check_reader(
            STANDARD_MAX_LINE,
            &[bare_lf.as_bytes()],
            &[Ok(Pass("p".repeat(249)))],
        );
    }

    #[test]
    fn reader_reset_forgets_discarding() {
        let mut reader = CommandReader::new(8);
        let mut buf = b"AAAAAAAAAAAA".to_vec();
        assert_eq!(reader.parse(&mut buf), Err(ReadError::LineTooLong));
        assert!(buf.is_empty());
        reader.reset();
        buf.extend_from_slice(b"STAT\r\n");
        assert_eq!(reader.parse(&mut buf), Ok(Command::Stat));
    }

    /// Feeding the same bytes in any split must give the same results as feeding them whole.
    #[test]
    fn reader_is_split_invariant() {
        let inputs: &[&[u8]] = &[
            b"USER a\r\nPASS b\r\nSTAT\r\nQUIT\r\n",
            b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\nNOOP\nRETR 12345678901234\r\n\r\nX\r\n",
            b"\n\n\r\n\rSTAT\r\nTOP 1 2\n",
            b"LIST 1\r\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ];
        for input in inputs {
            for max_line in [6, 7, 8, 12, 20, 255] {
                let whole = run_reader(max_line, &[input]);
                let bytes: Vec<&[u8]> = input.chunks(1).collect();
                assert_eq!(run_reader(max_line, &bytes), whole, "{max_line} {input:?}");
                for size in [2, 3, 5, 7, 13] {
                    let chunks: Vec<&[u8]> = input.chunks(size).collect();
                    assert_eq!(run_reader(max_line, &chunks), whole, "{max_line} {size}");
                }
            }
        }
    }

    #[test]
    fn read_error_display() {
        assert_eq!(ReadError::LineTooLong.to_string(), "command line too long");
        assert_eq!(
            ReadError::Command(CommandError::Unknown("FOO".into())).to_string(),
            "unknown command FOO"
        );
        assert_eq!(
            ReadError::from(CommandError::Syntax("usage: RETR msg".into())).to_string(),
            "usage: RETR msg"
        );
    }
}
