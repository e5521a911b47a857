//! SMTP commands (RFC 5321 section 4.1 with the SIZE, 8BITMIME, SMTPUTF8, STARTTLS and
//! AUTH extensions) and an incremental line reader for the command phase.

use std::fmt;

use crate::address::{self, AddressError, ForwardPath, ReversePath};
use crate::reply::Reply;

/// One parsed client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo {
        domain: String,
    },
    Helo {
        domain: String,
    },
    Mail {
        from: ReversePath,
        params: MailParams,
    },
    Rcpt {
        to: ForwardPath,
    },
    Data,
    Rset,
    Noop,
    Quit,
    StartTls,
    Vrfy {
        arg: String,
    },
    Expn {
        arg: String,
    },
    Help {
        topic: Option<String>,
    },
    /// RFC 4954 AUTH. The mechanism is uppercased; the initial response is the base64
    /// text as sent, or `=` for an empty response.
    Auth {
        mechanism: String,
        initial_response: Option<String>,
    },
}

impl Command {
    /// The command's verb in its canonical spelling, for logs.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Ehlo { .. } => "EHLO",
            Command::Helo { .. } => "HELO",
            Command::Mail { .. } => "MAIL",
            Command::Rcpt { .. } => "RCPT",
            Command::Data => "DATA",
            Command::Rset => "RSET",
            Command::Noop => "NOOP",
            Command::Quit => "QUIT",
            Command::StartTls => "STARTTLS",
            Command::Vrfy { .. } => "VRFY",
            Command::Expn { .. } => "EXPN",
            Command::Help { .. } => "HELP",
            Command::Auth { .. } => "AUTH",
        }
    }
}

/// The ESMTP parameters of MAIL FROM that tegami understands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    /// RFC 1870 SIZE, the client's estimate of the message size. Values beyond `u64`
    /// saturate, which still compares as too large.
    pub size: Option<u64>,
    /// RFC 6152 BODY.
    pub body: Option<Body>,
    /// RFC 6531 SMTPUTF8: the envelope or message may contain UTF-8.
    pub smtputf8: bool,
    /// RFC 4954 AUTH=, xtext-decoded (`<>` when the client does not vouch for the
    /// sender). A server advertising AUTH must accept it, though it may ignore it.
    pub auth: Option<String>,
}

/// The BODY parameter of MAIL FROM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    SevenBit,
    EightBitMime,
}

/// Which path of the envelope an address error concerns, which decides its reply code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRole {
    Sender,
    Recipient,
}

/// Why a command line was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandError {
    /// The line was empty or held only spaces.
    Empty,
    /// The verb is not an SMTP command; holds the verb made printable and shortened.
    Unrecognized(String),
    /// The verb is a known SMTP command that tegami does not implement.
    NotImplemented(String),
    /// The arguments do not follow the command's syntax; holds a human explanation.
    Syntax(&'static str),
    /// The line is not valid UTF-8.
    InvalidUtf8,
    InvalidAddress {
        role: PathRole,
        error: AddressError,
    },
    /// An ESMTP parameter that tegami does not know.
    UnknownParameter(String),
    /// A known ESMTP parameter with a value tegami does not support, such as BODY=BINARYMIME.
    UnsupportedParameter(String),
    /// A UTF-8 address without SMTPUTF8 (RFC 6531 section 3.5). The parser reports it
    /// for senders; the session constructs it for recipients, as only it knows the
    /// transaction's MAIL parameters.
    NonAsciiAddress(PathRole),
}

impl CommandError {
    /// The reply RFC 5321 and RFC 3463 prescribe for this error.
    pub fn reply(&self) -> Reply {
        let (code, enhanced) = match self {
            CommandError::Empty => (500, (5, 5, 2)),
            CommandError::Unrecognized(_) => (500, (5, 5, 1)),
            CommandError::NotImplemented(_) => (502, (5, 5, 1)),
            CommandError::Syntax(_) | CommandError::InvalidUtf8 => (501, (5, 5, 2)),
            CommandError::InvalidAddress {
                role: PathRole::Sender,
                ..
            } => (501, (5, 1, 7)),
            CommandError::InvalidAddress {
                role: PathRole::Recipient,
                ..
            } => (501, (5, 1, 3)),
            CommandError::UnknownParameter(_) | CommandError::UnsupportedParameter(_) => {
                (555, (5, 5, 4))
            }
            CommandError::NonAsciiAddress(_) => (553, (5, 6, 7)),
        };
        Reply::status(code, enhanced, self.to_string())
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Empty => f.write_str("Empty command"),
            CommandError::Unrecognized(verb) if verb.is_empty() => {
                f.write_str("Command unrecognized")
            }
            CommandError::Unrecognized(verb) => write!(f, "Command unrecognized: {verb}"),
            CommandError::NotImplemented(verb) => write!(f, "{verb} is not implemented"),
            CommandError::Syntax(detail) => f.write_str(detail),
            CommandError::InvalidUtf8 => f.write_str("Command is not valid UTF-8"),
            CommandError::InvalidAddress {
                role: PathRole::Sender,
                error,
            } => write!(f, "Bad sender address syntax: {error}"),
            CommandError::InvalidAddress {
                role: PathRole::Recipient,
                error,
            } => write!(f, "Bad recipient address syntax: {error}"),
            CommandError::UnknownParameter(name) => {
                write!(f, "Parameter {name} is not recognized")
            }
            CommandError::UnsupportedParameter(param) => write!(f, "{param} is not supported"),
            CommandError::NonAsciiAddress(PathRole::Sender) => {
                f.write_str("Non-ASCII sender address requires the SMTPUTF8 parameter")
            }
            CommandError::NonAsciiAddress(PathRole::Recipient) => {
                f.write_str("Non-ASCII recipient address requires the SMTPUTF8 parameter")
            }
        }
    }
}

impl std::error::Error for CommandError {}

/// Parses one command line; `line` excludes the CRLF.
///
/// Verbs and keywords are case-insensitive. Trailing spaces are ignored because some
/// clients send them and they can never be meaningful.
pub fn parse_command(line: &[u8]) -> Result<Command, CommandError> {
    let end = line.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
    let line = &line[..end];
    if line.is_empty() {
        return Err(CommandError::Empty);
    }
    let (verb, args) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &[][..]),
    };
    let raw_verb = verb;
    let verb = verb.to_ascii_uppercase();
    // Unknown verbs are reported before the arguments are looked at, so that any
    // garbage line gets the plain "unrecognized" answer.
    let known = matches!(
        verb.as_slice(),
        b"EHLO"
            | b"HELO"
            | b"MAIL"
            | b"RCPT"
            | b"DATA"
            | b"RSET"
            | b"NOOP"
            | b"QUIT"
            | b"STARTTLS"
            | b"VRFY"
            | b"EXPN"
            | b"HELP"
            | b"AUTH"
    );
    if !known {
        return Err(match verb.as_slice() {
            b"SEND" | b"SOML" | b"SAML" | b"TURN" | b"ETRN" | b"ATRN" | b"BDAT" => {
                CommandError::NotImplemented(printable(&verb))
            }
            _ => CommandError::Unrecognized(printable(raw_verb)),
        });
    }
    let args = std::str::from_utf8(args).map_err(|_| CommandError::InvalidUtf8)?;
    // A stray CR, NUL or other control character has no place in a command and often
    // signals an attempt to confuse a parser further down the line.
    if args.chars().any(char::is_control) {
        return Err(CommandError::Syntax(
            "Control characters are not allowed in commands",
        ));
    }
    let args = args.trim_start_matches(' ');
    match verb.as_slice() {
        b"EHLO" => Ok(Command::Ehlo {
            domain: helo_domain(args, "Syntax: EHLO domain")?,
        }),
        b"HELO" => Ok(Command::Helo {
            domain: helo_domain(args, "Syntax: HELO domain")?,
        }),
        b"MAIL" => parse_mail(args),
        b"RCPT" => parse_rcpt(args),
        b"DATA" => no_args(args, Command::Data, "Syntax: DATA (no arguments)"),
        b"RSET" => no_args(args, Command::Rset, "Syntax: RSET (no arguments)"),
        b"QUIT" => no_args(args, Command::Quit, "Syntax: QUIT (no arguments)"),
        b"STARTTLS" => no_args(args, Command::StartTls, "Syntax: STARTTLS (no arguments)"),
        // RFC 5321 allows NOOP to carry a string, which has no meaning.
        b"NOOP" => Ok(Command::Noop),
        b"VRFY" => Ok(Command::Vrfy {
            arg: required(args, "Syntax: VRFY string")?,
        }),
        b"EXPN" => Ok(Command::Expn {
            arg: required(args, "Syntax: EXPN string")?,
        }),
        b"HELP" => Ok(Command::Help {
            topic: (!args.is_empty()).then(|| args.to_owned()),
        }),
        _ => parse_auth(args),
    }
}

/// Makes an unknown verb safe and short enough to echo back in a reply.
fn printable(verb: &[u8]) -> String {
    verb.iter()
        .take(32)
        .map(|&b| {
            if b.is_ascii_graphic() {
                char::from(b)
            } else {
                '?'
            }
        })
        .collect()
}

fn no_args(args: &str, command: Command, usage: &'static str) -> Result<Command, CommandError> {
    if args.is_empty() {
        Ok(command)
    } else {
        Err(CommandError::Syntax(usage))
    }
}

fn required(args: &str, usage: &'static str) -> Result<String, CommandError> {
    if args.is_empty() {
        Err(CommandError::Syntax(usage))
    } else {
        Ok(args.to_owned())
    }
}

/// Checks the EHLO/HELO argument. Underscores are tolerated because many otherwise
/// well-behaved hosts have them in their names, and refusing them gains nothing.
fn helo_domain(args: &str, usage: &'static str) -> Result<String, CommandError> {
    if args.is_empty() || args.contains(' ') {
        return Err(CommandError::Syntax(usage));
    }
    if !address::is_domain(args, true) {
        return Err(CommandError::Syntax(
            "Invalid domain name or address literal in greeting",
        ));
    }
    Ok(args.to_owned())
}

/// Strips an ASCII keyword such as `FROM:` from the front of `s`, ignoring case.
fn strip_keyword<'a>(s: &'a str, keyword: &str) -> Option<&'a str> {
    let head = s.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword)
        .then(|| &s[keyword.len()..])
}

fn parse_mail(args: &str) -> Result<Command, CommandError> {
    const USAGE: &str = "Syntax: MAIL FROM:<address> [parameters]";
    let rest = strip_keyword(args, "FROM:").ok_or(CommandError::Syntax(USAGE))?;
    // "MAIL FROM: <a@b>" breaks the grammar but is common enough to accept.
    let rest = rest.strip_prefix(' ').unwrap_or(rest);
    let (from, rest) =
        address::parse_reverse_path(rest).map_err(|error| CommandError::InvalidAddress {
            role: PathRole::Sender,
            error,
        })?;
    let mut params = MailParams::default();
    for (key, value) in split_params(rest)? {
        match key.to_ascii_uppercase().as_str() {
            "SIZE" => {
                if params.size.is_some() {
                    return Err(CommandError::Syntax("Duplicate SIZE parameter"));
                }
                let digits = value
                    .filter(|v| v.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or(CommandError::Syntax("SIZE must be a decimal number"))?;
                // Only overflow can make an all-digit value fail to parse.
                params.size = Some(digits.parse().unwrap_or(u64::MAX));
            }
            "BODY" => {
                if params.body.is_some() {
                    return Err(CommandError::Syntax("Duplicate BODY parameter"));
                }
                let value = value.unwrap_or_default().to_ascii_uppercase();
                params.body = Some(match value.as_str() {
                    "7BIT" => Body::SevenBit,
                    "8BITMIME" => Body::EightBitMime,
                    "BINARYMIME" => {
                        return Err(CommandError::UnsupportedParameter("BODY=BINARYMIME".into()));
                    }
                    _ => return Err(CommandError::Syntax("BODY must be 7BIT or 8BITMIME")),
                });
            }
            "SMTPUTF8" => {
                if params.smtputf8 {
                    return Err(CommandError::Syntax("Duplicate SMTPUTF8 parameter"));
                }
                if value.is_some() {
                    return Err(CommandError::Syntax("SMTPUTF8 takes no value"));
                }
                params.smtputf8 = true;
            }
            "AUTH" => {
                if params.auth.is_some() {
                    return Err(CommandError::Syntax("Duplicate AUTH parameter"));
                }
                let decoded = value
                    .and_then(decode_xtext)
                    .ok_or(CommandError::Syntax("AUTH must be an xtext address or <>"))?;
                params.auth = Some(decoded);
            }
            _ => return Err(CommandError::UnknownParameter(key.to_owned())),
        }
    }
    if !params.smtputf8 && !from.is_ascii() {
        return Err(CommandError::NonAsciiAddress(PathRole::Sender));
    }
    Ok(Command::Mail { from, params })
}

fn parse_rcpt(args: &str) -> Result<Command, CommandError> {
    const USAGE: &str = "Syntax: RCPT TO:<address>";
    let rest = strip_keyword(args, "TO:").ok_or(CommandError::Syntax(USAGE))?;
    let rest = rest.strip_prefix(' ').unwrap_or(rest);
    let (to, rest) =
        address::parse_forward_path(rest).map_err(|error| CommandError::InvalidAddress {
            role: PathRole::Recipient,
            error,
        })?;
    // No RCPT parameters (such as DSN's NOTIFY) are advertised, so any is unknown.
    if let Some((key, _)) = split_params(rest)?.first() {
        return Err(CommandError::UnknownParameter((*key).to_owned()));
    }
    Ok(Command::Rcpt { to })
}

/// Splits the text after a path into `keyword[=value]` pairs, checking the RFC 5321
/// esmtp-param syntax (with RFC 6531 UTF-8 values).
fn split_params(rest: &str) -> Result<Vec<(&str, Option<&str>)>, CommandError> {
    if !rest.is_empty() && !rest.starts_with(' ') {
        return Err(CommandError::Syntax("Unexpected text after the address"));
    }
    rest.split(' ')
        .filter(|token| !token.is_empty())
        .map(|token| {
            let (key, value) = match token.split_once('=') {
                Some((key, value)) => (key, Some(value)),
                None => (token, None),
            };
            let key_ok = key.starts_with(|c: char| c.is_ascii_alphanumeric())
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
            let value_ok = value.is_none_or(|v| !v.is_empty() && !v.contains('='));
            if key_ok && value_ok {
                Ok((key, value))
            } else {
                Err(CommandError::Syntax("Malformed ESMTP parameter"))
            }
        })
        .collect()
}

/// Decodes RFC 3461 xtext, where `+XX` (uppercase hex) stands for one octet.
fn decode_xtext(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut rest = s.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        if first == b'+' {
            let (hex, tail) = tail.split_at_checked(2)?;
            let digit = |b: u8| match b {
                b'0'..=b'9' => Some(b - b'0'),
                b'A'..=b'F' => Some(b - b'A' + 10),
                _ => None,
            };
            out.push(digit(hex[0])? * 16 + digit(hex[1])?);
            rest = tail;
        } else {
            out.push(first);
            rest = tail;
        }
    }
    String::from_utf8(out).ok()
}

fn parse_auth(args: &str) -> Result<Command, CommandError> {
    const USAGE: &str = "Syntax: AUTH mechanism [initial-response]";
    let mut parts = args.split(' ').filter(|p| !p.is_empty());
    let mechanism = parts.next().ok_or(CommandError::Syntax(USAGE))?;
    let initial_response = parts.next();
    if parts.next().is_some() {
        return Err(CommandError::Syntax(USAGE));
    }
    // RFC 4422 section 3.1: mechanism names are 1 to 20 of A-Z, 0-9, '-' and '_'.
    let mechanism_ok = mechanism.len() <= 20
        && mechanism
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !mechanism_ok {
        return Err(CommandError::Syntax("Invalid SASL mechanism name"));
    }
    let response_ok = initial_response.is_none_or(|r| {
        r == "="
            || r.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))
    });
    if !response_ok {
        return Err(CommandError::Syntax(
            "The initial response must be base64 or =",
        ));
    }
    Ok(Command::Auth {
        mechanism: mechanism.to_ascii_uppercase(),
        initial_response: initial_response.map(str::to_owned),
    })
}

/// Why [`CommandReader::parse`] produced no command.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadError {
    /// No complete line is buffered yet; read more and call again.
    NeedMore,
    /// The line exceeded the limit. Its remainder is discarded by later calls, so the
    /// session can answer and carry on.
    LineTooLong,
    /// The line ended in LF without CR. Accepting that invites SMTP smuggling, where
    /// servers disagree on where a line, and so the message, ends.
    BareLf,
    /// A complete line that is not a valid command.
    Command(CommandError),
}

impl ReadError {
    /// The reply to send, or `None` for [`ReadError::NeedMore`].
    pub fn reply(&self) -> Option<Reply> {
        match self {
            ReadError::NeedMore => None,
            ReadError::LineTooLong => Some(Reply::status(500, (5, 5, 6), "Line too long")),
            ReadError::BareLf => Some(Reply::status(
                500,
                (5, 5, 2),
                "Bare LF received; lines must end with CRLF",
            )),
            ReadError::Command(error) => Some(error.reply()),
        }
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::NeedMore => f.write_str("incomplete command line"),
            ReadError::LineTooLong => f.write_str("command line too long"),
            ReadError::BareLf => f.write_str("command line ended in a bare LF"),
            ReadError::Command(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for ReadError {}

impl From<CommandError> for ReadError {
    fn from(error: CommandError) -> Self {
        ReadError::Command(error)
    }
}

/// Incremental line reader for the command phase.
///
/// The session appends whatever the socket delivered to its buffer and calls
/// [`CommandReader::parse`] until it returns [`ReadError::NeedMore`]; pipelined commands
/// therefore come out one per call. The buffer never has to hold more than `max_line`
/// bytes of an unfinished line.
#[derive(Debug, Clone)]
pub struct CommandReader {
    max_line: usize,
    /// Set while skipping the rest of a line already reported as too long.
    discarding: bool,
}

impl CommandReader {
    /// `max_line` counts the CRLF. RFC 5321 sets a floor of 512; extensions such as
    /// AUTH with an initial response need more (RFC 4954 suggests 12288).
    pub fn new(max_line: usize) -> Self {
        CommandReader {
            max_line,
            discarding: false,
        }
    }

    /// True while the remainder of an overlong line is being skipped.
    pub fn is_discarding(&self) -> bool {
        self.discarding
    }

    /// Takes one complete line from the front of `buf` (removing it, CRLF included) and
    /// parses it. `Err(ReadError::NeedMore)` when no complete line is there yet.
    pub fn parse(&mut self, buf: &mut Vec<u8>) -> Result<Command, ReadError> {
        if self.discarding && !self.discard(buf) {
            return Err(ReadError::NeedMore);
        }
        // Only the first max_line bytes can hold an acceptable line end, so there is
        // no point in scanning further.
        let window = &buf[..buf.len().min(self.max_line)];
        let Some(lf) = window.iter().position(|&b| b == b'\n') else {
            if buf.len() < self.max_line {
                return Err(ReadError::NeedMore);
            }
            self.discarding = true;
            self.discard(buf);
            return Err(ReadError::LineTooLong);
        };
        let result = match lf.checked_sub(1).map(|cr| (cr, buf[cr])) {
            Some((cr, b'\r')) => parse_command(&buf[..cr]).map_err(ReadError::Command),
            _ => Err(ReadError::BareLf),
        };
        buf.drain(..=lf);
        result
    }

    /// Drops input up to and including the next LF. Returns true once that LF has been
    /// found; otherwise everything buffered is dropped so memory stays bounded.
    fn discard(&mut self, buf: &mut Vec<u8>) -> bool {
        match buf.iter().position(|&b| b == b'\n') {
            Some(lf) => {
                buf.drain(..=lf);
                self.discarding = false;
                true
            }
            None => {
                buf.clear();
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::Address;
    use crate::reply::EnhancedCode;

    fn check(input: &[u8], expect: Result<Command, CommandError>) {
        assert_eq!(
            parse_command(input),
            expect,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }

    fn mail(local: &str, domain: &str, params: MailParams) -> Result<Command, CommandError> {
        Ok(Command::Mail {
            from: ReversePath::Path(Address::new(local, domain)),
            params,
        })
    }

    fn rcpt(local: &str, domain: &str) -> Result<Command, CommandError> {
        Ok(Command::Rcpt {
            to: ForwardPath::Path(Address::new(local, domain)),
        })
    }

    fn syntax<T>(detail: &'static str) -> Result<T, CommandError> {
        Err(CommandError::Syntax(detail))
    }

    fn bad_sender<T>(error: AddressError) -> Result<T, CommandError> {
        Err(CommandError::InvalidAddress {
            role: PathRole::Sender,
            error,
        })
    }

    fn bad_recipient<T>(error: AddressError) -> Result<T, CommandError> {
        Err(CommandError::InvalidAddress {
            role: PathRole::Recipient,
            error,
        })
    }

    fn params(size: Option<u64>, body: Option<Body>, smtputf8: bool) -> MailParams {
        MailParams {
            size,
            body,
            smtputf8,
            auth: None,
        }
    }

    #[test]
    fn simple_commands() {
        let ehlo = |d: &str| Ok(Command::Ehlo { domain: d.into() });
        let cases: Vec<(&[u8], Result<Command, CommandError>)> = vec![
            (b"EHLO client.example", ehlo("client.example")),
            (b"ehlo client.example", ehlo("client.example")),
            (b"eHlO Client.Example", ehlo("Client.Example")),
            (b"EHLO client.example   ", ehlo("client.example")),
            (b"EHLO  client.example", ehlo("client.example")),
            (b"EHLO [192.0.2.7]", ehlo("[192.0.2.7]")),
            (b"EHLO [IPv6:2001:db8::7]", ehlo("[IPv6:2001:db8::7]")),
            (b"EHLO my_pc", ehlo("my_pc")),
            (b"EHLO 192.0.2.7", ehlo("192.0.2.7")),
            ("EHLO bücher.de".as_bytes(), ehlo("bücher.de")),
            (b"EHLO", syntax("Syntax: EHLO domain")),
            (b"EHLO ", syntax("Syntax: EHLO domain")),
            (b"EHLO a b", syntax("Syntax: EHLO domain")),
            (
                b"EHLO a..b",
                syntax("Invalid domain name or address literal in greeting"),
            ),
            (
                b"EHLO [1.2.3]",
                syntax("Invalid domain name or address literal in greeting"),
            ),
            (
                b"EHLO <a>",
                syntax("Invalid domain name or address literal in greeting"),
            ),
            (
                b"HELO client",
                Ok(Command::Helo {
                    domain: "client".into(),
                }),
            ),
            (b"HELO", syntax("Syntax: HELO domain")),
            (b"DATA", Ok(Command::Data)),
            (b"data", Ok(Command::Data)),
            (b"DATA ", Ok(Command::Data)),
            (b"DATA x", syntax("Syntax: DATA (no arguments)")),
            (b"RSET", Ok(Command::Rset)),
            (b"RSET now", syntax("Syntax: RSET (no arguments)")),
            (b"QUIT", Ok(Command::Quit)),
            (b"QUIT bye", syntax("Syntax: QUIT (no arguments)")),
            (b"STARTTLS", Ok(Command::StartTls)),
            (b"StartTLS", Ok(Command::StartTls)),
            (b"STARTTLS x", syntax("Syntax: STARTTLS (no arguments)")),
            (b"NOOP", Ok(Command::Noop)),
            (b"NOOP anything at all", Ok(Command::Noop)),
            (
                b"VRFY postmaster",
                Ok(Command::Vrfy {
                    arg: "postmaster".into(),
                }),
            ),
            (
                b"VRFY John Doe",
                Ok(Command::Vrfy {
                    arg: "John Doe".into(),
                }),
            ),
            (b"VRFY", syntax("Syntax: VRFY string")),
            (
                b"EXPN staff",
                Ok(Command::Expn {
                    arg: "staff".into(),
                }),
            ),
            (b"EXPN ", syntax("Syntax: EXPN string")),
            (b"HELP", Ok(Command::Help { topic: None })),
            (b"HELP  ", Ok(Command::Help { topic: None })),
            (
                b"HELP MAIL",
                Ok(Command::Help {
                    topic: Some("MAIL".into()),
                }),
            ),
            // Verbs that do not exist, and lines that are not commands at all.
            (b"", Err(CommandError::Empty)),
            (b"   ", Err(CommandError::Empty)),
            (b"FOO", Err(CommandError::Unrecognized("FOO".into()))),
            (b"foo bar", Err(CommandError::Unrecognized("foo".into()))),
            (b" QUIT", Err(CommandError::Unrecognized("".into()))),
            (b"QUITX", Err(CommandError::Unrecognized("QUITX".into()))),
            (
                b"QUIT\tnow",
                Err(CommandError::Unrecognized("QUIT?now".into())),
            ),
            (
                b"GET / HTTP/1.1",
                Err(CommandError::Unrecognized("GET".into())),
            ),
            (b"\xff\xfe", Err(CommandError::Unrecognized("??".into()))),
            (b"EHL\0", Err(CommandError::Unrecognized("EHL?".into()))),
            (
                b"MAIL\rFROM:<a@b>",
                Err(CommandError::Unrecognized("MAIL?FROM:<a@b>".into())),
            ),
            (
                &[b'X'; 100],
                Err(CommandError::Unrecognized("X".repeat(32))),
            ),
            (
                b"BDAT 100 LAST",
                Err(CommandError::NotImplemented("BDAT".into())),
            ),
            (
                b"etrn example.org",
                Err(CommandError::NotImplemented("ETRN".into())),
            ),
            (b"TURN", Err(CommandError::NotImplemented("TURN".into()))),
            // Known verbs with broken arguments.
            (b"EHLO \xff", Err(CommandError::InvalidUtf8)),
            (
                b"VRFY a\rb",
                syntax("Control characters are not allowed in commands"),
            ),
            (
                b"HELP \0",
                syntax("Control characters are not allowed in commands"),
            ),
            (
                b"NOOP \x7f",
                syntax("Control characters are not allowed in commands"),
            ),
            (
                "NOOP \u{85}".as_bytes(),
                syntax("Control characters are not allowed in commands"),
            ),
            (
                b"EHLO a\tb",
                syntax("Control characters are not allowed in commands"),
            ),
        ];
        for (input, expect) in cases {
            check(input, expect);
        }
    }

    #[test]
    fn mail_commands() {
        use AddressError::*;
        let none = MailParams::default();
        let cases: Vec<(&str, Result<Command, CommandError>)> = vec![
            ("MAIL FROM:<a@b>", mail("a", "b", none.clone())),
            ("mail from:<a@b>", mail("a", "b", none.clone())),
            (
                "Mail From:<A@B.example>",
                mail("A", "B.example", none.clone()),
            ),
            ("MAIL FROM: <a@b>", mail("a", "b", none.clone())),
            ("MAIL FROM:<a@b> ", mail("a", "b", none.clone())),
            ("MAIL  FROM:<a@b>", mail("a", "b", none.clone())),
            (
                "MAIL FROM:<>",
                Ok(Command::Mail {
                    from: ReversePath::Null,
                    params: none.clone(),
                }),
            ),
            (
                "MAIL FROM:<> SIZE=0",
                Ok(Command::Mail {
                    from: ReversePath::Null,
                    params: params(Some(0), None, false),
                }),
            ),
            ("MAIL FROM:  <a@b>", bad_sender(MissingOpenBracket)),
            ("MAIL FROM:a@b", bad_sender(MissingOpenBracket)),
            ("MAIL FROM:", bad_sender(MissingOpenBracket)),
            ("MAIL FROM:<a@b", bad_sender(MissingCloseBracket)),
            ("MAIL FROM:<Postmaster>", bad_sender(MissingDomain)),
            ("MAIL FROM:<a..b@c>", bad_sender(InvalidLocalPart)),
            (
                "MAIL FROM :<a@b>",
                syntax("Syntax: MAIL FROM:<address> [parameters]"),
            ),
            (
                "MAIL <a@b>",
                syntax("Syntax: MAIL FROM:<address> [parameters]"),
            ),
            ("MAIL", syntax("Syntax: MAIL FROM:<address> [parameters]")),
            (
                "MAIL TO:<a@b>",
                syntax("Syntax: MAIL FROM:<address> [parameters]"),
            ),
            (
                "MAIL FRöM:<a@b>",
                syntax("Syntax: MAIL FROM:<address> [parameters]"),
            ),
            ("MAIL FROM:<@relay:a@b>", mail("a", "b", none.clone())),
            ("MAIL FROM:<\"x y\"@b>", mail("x y", "b", none.clone())),
            (
                "MAIL FROM:<\"x> SIZE=1\"@b>",
                mail("x> SIZE=1", "b", none.clone()),
            ),
            // Parameters.
            (
                "MAIL FROM:<a@b> SIZE=12345",
                mail("a", "b", params(Some(12345), None, false)),
            ),
            (
                "MAIL FROM:<a@b> size=0",
                mail("a", "b", params(Some(0), None, false)),
            ),
            (
                "MAIL FROM:<a@b> SIZE=99999999999999999999999",
                mail("a", "b", params(Some(u64::MAX), None, false)),
            ),
            (
                "MAIL FROM:<a@b> SIZE=-1",
                syntax("SIZE must be a decimal number"),
            ),
            (
                "MAIL FROM:<a@b> SIZE=1k",
                syntax("SIZE must be a decimal number"),
            ),
            (
                "MAIL FROM:<a@b> SIZE",
                syntax("SIZE must be a decimal number"),
            ),
            ("MAIL FROM:<a@b> SIZE=", syntax("Malformed ESMTP parameter")),
            (
                "MAIL FROM:<a@b> SIZE=1 SIZE=2",
                syntax("Duplicate SIZE parameter"),
            ),
            (
                "MAIL FROM:<a@b> BODY=8BITMIME",
                mail("a", "b", params(None, Some(Body::EightBitMime), false)),
            ),
            (
                "MAIL FROM:<a@b> body=7bit",
                mail("a", "b", params(None, Some(Body::SevenBit), false)),
            ),
            (
                "MAIL FROM:<a@b> BODY=BINARYMIME",
                Err(CommandError::UnsupportedParameter("BODY=BINARYMIME".into())),
            ),
            (
                "MAIL FROM:<a@b> BODY=9BIT",
                syntax("BODY must be 7BIT or 8BITMIME"),
            ),
            (
                "MAIL FROM:<a@b> BODY",
                syntax("BODY must be 7BIT or 8BITMIME"),
            ),
            (
                "MAIL FROM:<a@b> BODY=7BIT BODY=7BIT",
                syntax("Duplicate BODY parameter"),
            ),
            (
                "MAIL FROM:<a@b> SMTPUTF8",
                mail("a", "b", params(None, None, true)),
            ),
            (
                "MAIL FROM:<a@b> SMTPUTF8=yes",
                syntax("SMTPUTF8 takes no value"),
            ),
            (
                "MAIL FROM:<a@b> SMTPUTF8 smtputf8",
                syntax("Duplicate SMTPUTF8 parameter"),
            ),
            (
                "MAIL FROM:<a@b>  SIZE=10   BODY=8BITMIME SMTPUTF8",
                mail("a", "b", params(Some(10), Some(Body::EightBitMime), true)),
            ),
            (
                "MAIL FROM:<a@b> AUTH=<>",
                mail(
                    "a",
                    "b",
                    MailParams {
                        auth: Some("<>".into()),
                        ..MailParams::default()
                    },
                ),
            ),
            (
                "MAIL FROM:<a@b> AUTH=x+2By@b",
                mail(
                    "a",
                    "b",
                    MailParams {
                        auth: Some("x+y@b".into()),
                        ..MailParams::default()
                    },
                ),
            ),
            (
                "MAIL FROM:<a@b> AUTH=x+2b",
                syntax("AUTH must be an xtext address or <>"),
            ),
            (
                "MAIL FROM:<a@b> AUTH=x+2",
                syntax("AUTH must be an xtext address or <>"),
            ),
            (
                "MAIL FROM:<a@b> AUTH=x+FF",
                syntax("AUTH must be an xtext address or <>"),
            ),
            (
                "MAIL FROM:<a@b> AUTH=<> AUTH=<>",
                syntax("Duplicate AUTH parameter"),
            ),
            (
                "MAIL FROM:<a@b> RET=HDRS",
                Err(CommandError::UnknownParameter("RET".into())),
            ),
            (
                "MAIL FROM:<a@b> x-custom",
                Err(CommandError::UnknownParameter("x-custom".into())),
            ),
            (
                "MAIL FROM:<a@b> SIZE=1 ENVID=x",
                Err(CommandError::UnknownParameter("ENVID".into())),
            ),
            (
                "MAIL FROM:<a@b>SIZE=1",
                syntax("Unexpected text after the address"),
            ),
            (
                "MAIL FROM:<a@b>>",
                syntax("Unexpected text after the address"),
            ),
            ("MAIL FROM:<a@b> =1", syntax("Malformed ESMTP parameter")),
            ("MAIL FROM:<a@b> -X", syntax("Malformed ESMTP parameter")),
            ("MAIL FROM:<a@b> X_Y", syntax("Malformed ESMTP parameter")),
            (
                "MAIL FROM:<a@b> SIZE=1=2",
                syntax("Malformed ESMTP parameter"),
            ),
            // UTF-8 addresses need SMTPUTF8 (RFC 6531).
            (
                "MAIL FROM:<用户@例子.广告> SMTPUTF8",
                mail("用户", "例子.广告", params(None, None, true)),
            ),
            (
                "MAIL FROM:<用户@例子.广告>",
                Err(CommandError::NonAsciiAddress(PathRole::Sender)),
            ),
            (
                "MAIL FROM:<a@b> SIZE=1 X-NOTE=ünïcode",
                Err(CommandError::UnknownParameter("X-NOTE".into())),
            ),
        ];
        for (input, expect) in cases {
            check(input.as_bytes(), expect);
        }
    }

    #[test]
    fn rcpt_commands() {
        use AddressError::*;
        let cases: Vec<(&str, Result<Command, CommandError>)> = vec![
            ("RCPT TO:<a@b>", rcpt("a", "b")),
            ("rcpt to:<a@b>", rcpt("a", "b")),
            ("RCPT TO: <a@b>", rcpt("a", "b")),
            ("RCPT TO:<a@b>  ", rcpt("a", "b")),
            (
                "RCPT TO:<Postmaster>",
                Ok(Command::Rcpt {
                    to: ForwardPath::Postmaster,
                }),
            ),
            (
                "RCPT TO:<postMASTER>",
                Ok(Command::Rcpt {
                    to: ForwardPath::Postmaster,
                }),
            ),
            ("RCPT TO:<postmaster@b>", rcpt("postmaster", "b")),
            ("RCPT TO:<@x,@y:a@b>", rcpt("a", "b")),
            ("RCPT TO:<用户@例子.广告>", rcpt("用户", "例子.广告")),
            ("RCPT TO:<>", bad_recipient(NullPath)),
            ("RCPT TO:a@b", bad_recipient(MissingOpenBracket)),
            ("RCPT TO:<a>", bad_recipient(MissingDomain)),
            ("RCPT TO:<a@b", bad_recipient(MissingCloseBracket)),
            (
                "RCPT TO:<a@[1.2.3.999]>",
                bad_recipient(InvalidAddressLiteral),
            ),
            (
                "RCPT TO:<a@b> NOTIFY=NEVER",
                Err(CommandError::UnknownParameter("NOTIFY".into())),
            ),
            (
                "RCPT TO:<a@b>x",
                syntax("Unexpected text after the address"),
            ),
            ("RCPT TO:<a@b> ==", syntax("Malformed ESMTP parameter")),
            ("RCPT FROM:<a@b>", syntax("Syntax: RCPT TO:<address>")),
            ("RCPT", syntax("Syntax: RCPT TO:<address>")),
            ("RCPT T", syntax("Syntax: RCPT TO:<address>")),
        ];
        for (input, expect) in cases {
            check(input.as_bytes(), expect);
        }
    }

    #[test]
    fn auth_commands() {
        let auth = |m: &str, r: Option<&str>| {
            Ok(Command::Auth {
                mechanism: m.into(),
                initial_response: r.map(Into::into),
            })
        };
        let usage = "Syntax: AUTH mechanism [initial-response]";
        let cases: Vec<(&str, Result<Command, CommandError>)> = vec![
            ("AUTH PLAIN", auth("PLAIN", None)),
            ("auth plain", auth("PLAIN", None)),
            (
                "AUTH PLAIN AGFsaWNlAHNlY3JldA==",
                auth("PLAIN", Some("AGFsaWNlAHNlY3JldA==")),
            ),
            ("AUTH PLAIN =", auth("PLAIN", Some("="))),
            ("AUTH LOGIN", auth("LOGIN", None)),
            ("AUTH SCRAM-SHA-256", auth("SCRAM-SHA-256", None)),
            ("AUTH X_OAUTH2", auth("X_OAUTH2", None)),
            ("AUTH", syntax(usage)),
            ("AUTH PLAIN a b", syntax(usage)),
            ("AUTH PL@IN", syntax("Invalid SASL mechanism name")),
            (
                "AUTH ABCDEFGHIJKLMNOPQRSTU",
                syntax("Invalid SASL mechanism name"),
            ),
            (
                "AUTH PLAIN a?b",
                syntax("The initial response must be base64 or ="),
            ),
            (
                "AUTH PLAIN ü",
                syntax("The initial response must be base64 or ="),
            ),
        ];
        for (input, expect) in cases {
            check(input.as_bytes(), expect);
        }
    }

    #[test]
    fn verbs_round_trip() {
        for verb in ["DATA", "RSET", "NOOP", "QUIT", "STARTTLS", "HELP"] {
            assert_eq!(parse_command(verb.as_bytes()).unwrap().verb(), verb);
        }
    }

    #[test]
    fn error_replies() {
        let cases: Vec<(CommandError, u16, EnhancedCode, &str)> = vec![
            (
                CommandError::Empty,
                500,
                EnhancedCode(5, 5, 2),
                "Empty command",
            ),
            (
                CommandError::Unrecognized("FOO".into()),
                500,
                EnhancedCode(5, 5, 1),
                "Command unrecognized: FOO",
            ),
            (
                CommandError::Unrecognized(String::new()),
                500,
                EnhancedCode(5, 5, 1),
                "Command unrecognized",
            ),
            (
                CommandError::NotImplemented("BDAT".into()),
                502,
                EnhancedCode(5, 5, 1),
                "BDAT is not implemented",
            ),
            (
                CommandError::Syntax("Syntax: HELO domain"),
                501,
                EnhancedCode(5, 5, 2),
                "Syntax: HELO domain",
            ),
            (
                CommandError::InvalidUtf8,
                501,
                EnhancedCode(5, 5, 2),
                "Command is not valid UTF-8",
            ),
            (
                CommandError::InvalidAddress {
                    role: PathRole::Sender,
                    error: AddressError::LocalPartTooLong,
                },
                501,
                EnhancedCode(5, 1, 7),
                "Bad sender address syntax: the local part is longer than 64 octets",
            ),
            (
                CommandError::InvalidAddress {
                    role: PathRole::Recipient,
                    error: AddressError::NullPath,
                },
                501,
                EnhancedCode(5, 1, 3),
                "Bad recipient address syntax: the null address <> is not allowed here",
            ),
            (
                CommandError::UnknownParameter("RET".into()),
                555,
                EnhancedCode(5, 5, 4),
                "Parameter RET is not recognized",
            ),
            (
                CommandError::UnsupportedParameter("BODY=BINARYMIME".into()),
                555,
                EnhancedCode(5, 5, 4),
                "BODY=BINARYMIME is not supported",
            ),
            (
                CommandError::NonAsciiAddress(PathRole::Sender),
                553,
                EnhancedCode(5, 6, 7),
                "Non-ASCII sender address requires the SMTPUTF8 parameter",
            ),
            (
                CommandError::NonAsciiAddress(PathRole::Recipient),
                553,
                EnhancedCode(5, 6, 7),
                "Non-ASCII recipient address requires the SMTPUTF8 parameter",
            ),
        ];
        for (error, code, enhanced, text) in cases {
            let reply = error.reply();
            assert_eq!(reply.code, code, "{error:?}");
            assert_eq!(reply.enhanced, Some(enhanced), "{error:?}");
            assert_eq!(reply.lines, vec![text.to_owned()], "{error:?}");
            assert_eq!(ReadError::Command(error).reply(), Some(reply));
        }
        let read_cases = [
            (ReadError::NeedMore, None),
            (ReadError::LineTooLong, Some("500 5.5.6 Line too long\r\n")),
            (
                ReadError::BareLf,
                Some("500 5.5.2 Bare LF received; lines must end with CRLF\r\n"),
            ),
        ];
        for (error, expect) in read_cases {
            assert_eq!(error.reply().map(|r| r.to_string()).as_deref(), expect);
        }
    }

    /// Bytes to append to the buffer, and the results expected before NeedMore.
    type Step<'a> = (&'a [u8], Vec<Result<Command, ReadError>>);

    /// Runs the reader over a script of steps, checking that the buffer stays bounded
    /// throughout.
    fn check_reader(max_line: usize, script: &[Step<'_>]) {
        let mut reader = CommandReader::new(max_line);
        let mut buf = Vec::new();
        for (step, (input, expect)) in script.iter().enumerate() {
            buf.extend_from_slice(input);
            let mut got = Vec::new();
            loop {
                match reader.parse(&mut buf) {
                    Err(ReadError::NeedMore) => break,
                    result => got.push(result),
                }
                assert!(got.len() <= 100, "reader loops at step {step}");
            }
            assert_eq!(
                &got,
                expect,
                "step {step}: {:?}",
                String::from_utf8_lossy(input)
            );
            assert!(
                buf.len() < max_line,
                "step {step}: buffer holds {} bytes",
                buf.len()
            );
        }
    }

    #[test]
    fn reader() {
        let too_long = || Err(ReadError::LineTooLong);
        let bare = || Err(ReadError::BareLf);
        let noop = || Ok(Command::Noop);
        let quit = || Ok(Command::Quit);
        let data = || Ok(Command::Data);
        let cases: Vec<(usize, Vec<Step>)> = vec![
            // Plain, partial and pipelined input.
            (512, vec![(b"NOOP\r\n", vec![noop()])]),
            (512, vec![(b"", vec![])]),
            (
                512,
                vec![
                    (b"NO", vec![]),
                    (b"OP", vec![]),
                    (b"\r", vec![]),
                    (b"\n", vec![noop()]),
                ],
            ),
            (
                512,
                vec![(
                    b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n",
                    vec![
                        mail("a", "b", MailParams::default()).map_err(ReadError::from),
                        rcpt("c", "d").map_err(ReadError::from),
                        data(),
                    ],
                )],
            ),
            (
                512,
                vec![
                    (b"NOOP\r\nQUIT\r\nRS", vec![noop(), quit()]),
                    (b"ET\r\n", vec![Ok(Command::Rset)]),
                ],
            ),
            // Errors in one pipelined command do not disturb the next.
            (
                512,
                vec![(
                    b"FOO\r\nNOOP\r\n",
                    vec![
                        Err(ReadError::Command(CommandError::Unrecognized("FOO".into()))),
                        noop(),
                    ],
                )],
            ),
            (
                512,
                vec![(
                    b"\r\nNOOP\r\n",
                    vec![Err(ReadError::Command(CommandError::Empty)), noop()],
                )],
            ),
            // Bare LF and stray CR.
            (512, vec![(b"NOOP\nQUIT\r\n", vec![bare(), quit()])]),
            (512, vec![(b"\n", vec![bare()])]),
            (
                512,
                vec![(
                    b"NOOP\r\r\n",
                    vec![Err(ReadError::Command(CommandError::Unrecognized(
                        "NOOP?".into(),
                    )))],
                )],
            ),
            (
                512,
                vec![(
                    b"NOOP\rQUIT\r\n",
                    vec![Err(ReadError::Command(CommandError::Unrecognized(
                        "NOOP?QUIT".into(),
                    )))],
                )],
            ),
            (
                512,
                vec![(
                    b"HELP x\rQUIT\r\n",
                    vec![Err(ReadError::Command(CommandError::Syntax(
                        "Control characters are not allowed in commands",
                    )))],
                )],
            ),
            // Line length: max_line counts the CRLF.
            (6, vec![(b"NOOP\r\n", vec![noop()])]),
            (6, vec![(b"NOOP \r\n", vec![too_long()])]),
            (6, vec![(b"NOOP \r\nQUIT\r\n", vec![too_long(), quit()])]),
            (6, vec![(b"NOOP\r", vec![]), (b"\n", vec![noop()])]),
            (
                6,
                vec![
                    (b"NOOP ", vec![]),
                    (b"\r", vec![too_long()]),
                    (b"\n", vec![]),
                ],
            ),
            (6, vec![(b"NOOP  ", vec![too_long()]), (b"\r\n", vec![])]),
            // An overlong line is reported at once and its remainder skipped quietly,
            // however it is chunked, after which parsing resumes.
            (
                8,
                vec![
                    (b"NOOP NOOP NOOP", vec![too_long()]),
                    (b"NOOP NOOP NOOP", vec![]),
                    (b"NOOP NOOP", vec![]),
                    (b"\r", vec![]),
                    (b"\nQUIT\r\n", vec![quit()]),
                ],
            ),
            (
                8,
                vec![(b"XXXXXXXXXXXXXXXXXXXX\nQUIT\r\n", vec![too_long(), quit()])],
            ),
            (
                8,
                vec![
                    (b"XXXXXXXX", vec![too_long()]),
                    (b"\n", vec![]),
                    (b"QUIT\r\n", vec![quit()]),
                ],
            ),
            (
                8,
                vec![
                    (b"XXXXXXXX\nXXXXXXXX", vec![too_long(), too_long()]),
                    (b"\nQUIT\r\n", vec![quit()]),
                ],
            ),
            (
                8,
                vec![(
                    b"XXXXXXXXXXXXXXX\r\nNOOP\r\nXXXXXXXXXXXXXX\r\nQUIT\r\n",
                    vec![too_long(), noop(), too_long(), quit()],
                )],
            ),
            // A bare LF inside an overlong line's remainder simply ends the skipping.
            (8, vec![(b"XXXXXXXXXX\nNOOP\n", vec![too_long(), bare()])]),
        ];
        for (max_line, script) in cases {
            check_reader(max_line, &script);
        }
    }

    #[test]
    fn reader_memory_stays_bounded() {
        let mut reader = CommandReader::new(512);
        let mut buf = Vec::new();
        let mut reported = 0;
        for _ in 0..10_000 {
            buf.extend_from_slice(&[b'A'; 1000]);
            match reader.parse(&mut buf) {
                Err(ReadError::LineTooLong) => reported += 1,
                Err(ReadError::NeedMore) => {}
                other => panic!("unexpected {other:?}"),
            }
            assert!(buf.len() < 512);
            assert!(reader.is_discarding());
        }
        assert_eq!(reported, 1);
        buf.extend_from_slice(b"AAAA\r\nQUIT\r\n");
        assert_eq!(reader.parse(&mut buf), Ok(Command::Quit));
        assert!(!reader.is_discarding());
        assert_eq!(reader.parse(&mut buf), Err(ReadError::NeedMore));
    }
}
