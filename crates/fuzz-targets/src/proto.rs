//! The command readers of SMTP, POP3 and IMAP, and SMTP's DATA decoder: what a client's
//! bytes meet first.

use crate::split::pieces;

/// SMTP command lines through `CommandReader`, as the session drives it.
///
/// Asserts: the same commands and errors come out however the input is split across reads;
/// the buffer never holds a whole line limit of unfinished input; every error has a 4xx or
/// 5xx reply; a parsed path prints as text that parses back to the same path; an AUTH
/// initial response decodes as submission decodes it.
pub fn smtp_command(data: &[u8]) {
    use smtp_proto::{Command, CommandReader, ForwardPath, ReadError, ReversePath};

    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    // Small limits too, so that over-long lines are reached often.
    let max_line = [64, 512, 1000, 12288][usize::from(seed & 3)];
    let read = |pieces: &[&[u8]]| {
        let mut reader = CommandReader::new(max_line);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for piece in pieces {
            buf.extend_from_slice(piece);
            loop {
                match reader.parse(&mut buf) {
                    Err(ReadError::NeedMore) => {
                        assert!(buf.len() < max_line, "{} bytes buffered", buf.len());
                        break;
                    }
                    Err(e) => {
                        let reply = e.reply().expect("an error other than NeedMore has a reply");
                        assert!((400..600).contains(&reply.code), "{reply:?}");
                        out.push(Err(e));
                    }
                    Ok(command) => {
                        match &command {
                            Command::Mail { from, .. } => {
                                assert_eq!(
                                    ReversePath::parse(&from.to_string()).as_ref(),
                                    Ok(from)
                                );
                            }
                            Command::Rcpt { to } => {
                                assert_eq!(ForwardPath::parse(&to.to_string()).as_ref(), Ok(to));
                            }
                            Command::Auth {
                                initial_response: Some(line),
                                ..
                            } => sasl(line),
                            _ => {}
                        }
                        out.push(Ok(command));
                    }
                }
            }
        }
        out
    };
    let whole = read(&[input]);
    let split = read(&pieces(input, seed));
    assert_eq!(
        whole, split,
        "the result depends on how the input was split"
    );
}

/// An AUTH response as submission decodes it (smtp-server's SASL PLAIN and LOGIN): a
/// PLAIN response that gives a user and a password gives them again once re-encoded.
fn sasl(line: &str) {
    use smtp_server::sasl;

    let Ok(response) = sasl::decode(line) else {
        return;
    };
    if let Ok((user, password)) = sasl::plain(&response) {
        let again = sasl::decode(&sasl::encode(&format!("\0{user}\0{password}")));
        assert_eq!(again.and_then(|r| sasl::plain(&r)), Ok((user, password)));
    }
    let _ = sasl::login_field(response);
}

/// SMTP's DATA phase through `DataDecoder`, and the client's `encode_data` feeding it.
///
/// Asserts, for the input taken as the bytes after DATA: the outcome, the content and the
/// bytes left over do not depend on how the input was split; the content never exceeds the
/// size limit, and complete content has only CRLF line ends (nothing smuggled in by a bare
/// LF). For the input taken as a message: what `encode_data` sends decodes completely, to
/// content that `encode_data` sends in exactly the same bytes again.
pub fn smtp_data(data: &[u8]) {
    use smtp_proto::{DataDecoder, DataOutcome, encode_data};

    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let max_size = [16, 256, 4096, u64::MAX][usize::from(seed & 3)];
    let decode = |pieces: &[&[u8]]| {
        let mut decoder = DataDecoder::new(max_size);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for (i, piece) in pieces.iter().enumerate() {
            buf.extend_from_slice(piece);
            if let Some(outcome) = decoder.decode(&mut buf, &mut out) {
                // What follows the end of data is the next command: it stays unread.
                let mut rest = buf;
                for later in &pieces[i + 1..] {
                    rest.extend_from_slice(later);
                }
                return (Some(outcome), out, rest);
            }
            assert!(buf.is_empty(), "undecided input left in the buffer");
        }
        (None, out, buf)
    };
    let whole = decode(&[input]);
    let split = decode(&pieces(input, seed));
    assert_eq!(
        whole, split,
        "the result depends on how the input was split"
    );
    let (outcome, content, _) = whole;
    assert!(content.len() as u64 <= max_size);
    if outcome == Some(DataOutcome::Complete) {
        assert_crlf_only(&content);
    }

    let mut wire = Vec::new();
    let size = encode_data(input, &mut wire);
    assert!(size <= wire.len() as u64);
    let mut decoder = DataDecoder::new(u64::MAX);
    let mut content = Vec::new();
    let mut buf = wire.clone();
    assert_eq!(
        decoder.decode(&mut buf, &mut content),
        Some(DataOutcome::Complete)
    );
    assert!(
        buf.is_empty(),
        "bytes after the terminator encode_data wrote"
    );
    assert_crlf_only(&content);
    let mut again = Vec::new();
    encode_data(&content, &mut again);
    assert_eq!(
        again, wire,
        "encode_data is not stable on its own decoded output"
    );
}

/// Every LF has a CR before it, and the content is empty or ends in CRLF.
fn assert_crlf_only(content: &[u8]) {
    for (i, &b) in content.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && content[i - 1] == b'\r', "bare LF at {i}");
        }
    }
    assert!(content.is_empty() || content.ends_with(b"\r\n"));
}

/// POP3 command lines through `CommandReader`.
///
/// Asserts: the same commands and errors however the input is split; the buffer stays
/// under the line limit; error texts (which go into `-ERR` replies) hold no control
/// characters.
pub fn pop3_command(data: &[u8]) {
    use pop3_proto::{CommandError, CommandReader, ReadError};

    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let max_line = [6, 64, 255, 1024][usize::from(seed & 3)];
    let read = |pieces: &[&[u8]]| {
        let mut reader = CommandReader::new(max_line);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for piece in pieces {
            buf.extend_from_slice(piece);
            loop {
                match reader.parse(&mut buf) {
                    Err(ReadError::NeedMore) => {
                        assert!(
                            buf.len() < reader.max_line(),
                            "{} bytes buffered",
                            buf.len()
                        );
                        break;
                    }
                    Err(ReadError::Command(
                        CommandError::Unknown(text) | CommandError::Syntax(text),
                    )) => {
                        assert!(!text.chars().any(char::is_control), "{text:?}");
                        out.push(Err(text));
                    }
                    Err(e) => out.push(Err(e.to_string())),
                    Ok(command) => {
                        let _ = command.keyword();
                        out.push(Ok(command));
                    }
                }
            }
        }
        out
    };
    let whole = read(&[input]);
    let split = read(&pieces(input, seed));
    assert!(
        whole == split,
        "the result depends on how the input was split"
    );
}

/// IMAP commands through `CommandReader`, literals included, in the three modes a session
/// uses it (commands, an AUTHENTICATE response, IDLE); and modified UTF-7 mailbox names.
///
/// Asserts: the same commands and errors however the input is split; every error answer is
/// one line ending in CRLF; a name that decodes encodes and decodes back to itself.
pub fn imap_command(data: &[u8]) {
    use imap_proto::parser::{CommandReader, Limits, Parsed};
    use imap_proto::utf7;

    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_line: [64, 1024][usize::from(seed & 1)],
        max_literal: 256,
        max_append: 4096,
    };
    let mode = (seed >> 1) & 7;
    let read = |pieces: &[&[u8]]| {
        let mut reader = CommandReader::new(limits);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        'feed: for piece in pieces {
            buf.extend_from_slice(piece);
            loop {
                let result = match mode {
                    0 => reader
                        .parse_auth_response(&mut buf)
                        .map(|r| r.map(|r| format!("{r:?}"))),
                    1 => reader
                        .parse_idle_done(&mut buf)
                        .map(|done| done.then(|| "DONE".to_string())),
                    _ => match reader.parse(&mut buf) {
                        Ok(Parsed::NeedMore) => Ok(None),
                        // The session would send "+ go ahead" and read on; what is
                        // buffered already is the literal.
                        Ok(Parsed::NeedContinuation) => continue,
                        Ok(Parsed::Command(command)) => Ok(Some(format!("{command:?}"))),
                        Err(e) => Err(e),
                    },
                };
                match result {
                    Ok(None) => break,
                    Ok(Some(item)) => out.push(Ok(item)),
                    Err(e) => {
                        let mut answer = Vec::new();
                        e.write_response(&mut answer);
                        assert!(answer.ends_with(b"\r\n"), "{answer:?}");
                        assert!(
                            !answer[..answer.len() - 2]
                                .iter()
                                .any(|&b| b == b'\r' || b == b'\n'),
                            "{answer:?}"
                        );
                        let close = e.must_close();
                        out.push(Err(e));
                        if close {
                            break 'feed;
                        }
                    }
                }
            }
        }
        out
    };
    let whole = read(&[input]);
    let split = read(&pieces(input, seed));
    assert_eq!(
        whole, split,
        "the result depends on how the input was split"
    );

    if let Ok(name) = utf7::decode(input) {
        assert_eq!(
            utf7::decode(utf7::encode(&name).as_bytes()).as_ref(),
            Ok(&name)
        );
    }
    let text = String::from_utf8_lossy(input);
    assert_eq!(
        utf7::decode(utf7::encode(&text).as_bytes()).as_deref(),
        Ok(&*text)
    );
}
