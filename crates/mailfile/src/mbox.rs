//! The mbox format, read with repair and written as mboxrd: a pure streaming reader over any
//! `BufRead` and a writer over any `Write`, with no store and no file system of their own.
//!
//! Reading rules (chosen so that no well-formed message is ever lost):
//! - A `From ` line is a separator only when the next line is a header field (`Name: ...`)
//!   and either a blank line came before it, its date parses, or no message has begun yet.
//!   A body line beginning `From ` (the mboxo ambiguity) followed by ordinary text therefore
//!   stays in its message; one followed by a header-like line is taken as a separator, as
//!   every mbox reader does.
//! - mboxrd quoting is undone: `>From `, `>>From ` lose one `>`. mboxo files are read the
//!   same way (their `>From ` lines lose the quote, which is what the writer meant).
//!   mboxcl `Content-Length` headers are tolerated and ignored: the separators decide.
//! - NUL bytes are removed wherever they are (a power cut leaves runs of them); each
//!   message that lost some says so, and NULs or text before the first message are
//!   reported as a skipped range with its byte offsets.
//! - A file that starts with header lines and no `From ` line is read as a message.
//! - A message cut inside its header section is skipped and reported; one cut in its body
//!   is kept with a note. A missing final newline is added.
//! - Line ends (LF, CRLF or a mix) become CRLF, as SMTP delivers messages.
//! - `Status:` and `X-Status:` headers are kept in the message (so its bytes, and a
//!   re-import's content hash, stay as they were) and mapped to flags: R → \Seen,
//!   A → \Answered, F → \Flagged, D → \Deleted, T → \Draft.
//! - Memory is bounded: a line longer than `max_line` (1 MiB) is cut into pieces and a
//!   message larger than `max_message` (1 GiB) is skipped and reported.

use std::collections::VecDeque;
use std::io::{self, BufRead, Write};

use store::Flags;

/// One thing found in an mbox, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Message(Message),
    /// Bytes `offset..end` of the file held no message.
    Skipped {
        offset: u64,
        end: u64,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Where the message (its `From ` line, if any) starts and ends in the file.
    pub offset: u64,
    pub end: u64,
    /// The message with CRLF line ends, without the `From ` line.
    pub bytes: Vec<u8>,
    pub flags: Flags,
    /// Seconds since the epoch, from the `From ` line, else from `Date:`.
    pub internal_date: Option<i64>,
    /// What was repaired in this message, for the report.
    pub notes: Vec<String>,
}

/// A line as read: its content without NULs and without the line end.
struct Line {
    offset: u64,
    /// NULs before the first other byte, and in all.
    lead_nuls: u64,
    nuls: u64,
    text: Vec<u8>,
    /// False for a last line without a newline, or a piece of an over-long line.
    ended: bool,
    /// A piece of a line longer than `max_line`.
    split: bool,
    /// Raw length in the file, line end included.
    len: u64,
}

struct Building {
    offset: u64,
    bytes: Vec<u8>,
    in_headers: bool,
    saw_header: bool,
    first_line: bool,
    last_blank: bool,
    flags: u32,
    from_date: Option<i64>,
    date_header: Option<String>,
    nuls: u64,
    notes: Vec<String>,
    /// Set when the message outgrew `max_message`: its bytes are no longer kept.
    oversized: bool,
}

struct Garbage {
    offset: u64,
    end: u64,
    nuls: u64,
    text: bool,
}

/// A candidate `From ` line waiting for the next line to decide what it is.
struct Pending {
    line: Line,
    date: Option<i64>,
    after_blank: bool,
}

/// Streams the items of an mbox; memory holds one message at a time.
pub struct Reader<R> {
    input: R,
    pos: u64,
    current: Option<Building>,
    garbage: Option<Garbage>,
    pending: Option<Pending>,
    prev_blank: bool,
    out: VecDeque<Item>,
    done: bool,
    /// Longer lines are cut into pieces, so a damaged file without newlines cannot fill
    /// memory; a message above `max_message` is skipped and reported.
    pub max_line: usize,
    pub max_message: usize,
}

impl<R: BufRead> Reader<R> {
    pub fn new(input: R) -> Self {
        Reader {
            input,
            pos: 0,
            current: None,
            garbage: None,
            pending: None,
            prev_blank: true,
            out: VecDeque::new(),
            done: false,
            max_line: 1 << 20,
            max_message: 1 << 30,
        }
    }

    /// Bytes consumed so far (for progress).
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Reads one line, dropping NUL bytes as they come so a long NUL run costs no memory.
    fn read_line(&mut self) -> io::Result<Option<Line>> {
        let offset = self.pos;
        let mut line = Line {
            offset,
            lead_nuls: 0,
            nuls: 0,
            text: Vec::new(),
            ended: false,
            split: false,
            len: 0,
        };
        loop {
            let buf = self.input.fill_buf()?;
            if buf.is_empty() {
                break;
            }
            let room = self.max_line.saturating_sub(line.text.len()).max(1);
            let (take, found) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) if i < room => (i + 1, true),
                _ => (buf.len().min(room), false),
            };
            for &b in &buf[..take] {
                if b == 0 {
                    line.nuls += 1;
                    if line.text.is_empty() {
                        line.lead_nuls += 1;
                    }
                } else {
                    line.text.push(b);
                }
            }
            self.input.consume(take);
            line.len += take as u64;
            if found {
                line.ended = true;
                break;
            }
            if line.text.len() >= self.max_line {
                line.split = true;
                break;
            }
        }
        self.pos += line.len;
        if line.len == 0 {
            return Ok(None);
        }
        if line.ended {
            line.text.pop();
        }
        if line.text.last() == Some(&b'\r') {
            line.text.pop();
        }
        Ok(Some(line))
    }

    fn process(&mut self, line: Line) {
        if let Some(pending) = self.pending.take() {
            let separator = is_header_line(&line.text)
                && (pending.after_blank || pending.date.is_some() || self.current.is_none());
            if separator {
                self.start(&pending.line, pending.date);
            } else {
                self.ordinary(pending.line);
            }
        }
        if line.text.starts_with(b"From ") {
            let date = from_line_date(&line.text[5..]);
            let after_blank = self.prev_blank;
            self.pending = Some(Pending {
                line,
                date,
                after_blank,
            });
            return;
        }
        self.ordinary(line);
    }

    /// A line that is not a separator: part of the current message or of the garbage.
    fn ordinary(&mut self, line: Line) {
        let blank = line.text.iter().all(|b| b.is_ascii_whitespace());
        self.prev_blank = blank;
        match &mut self.current {
            Some(message) => push_line(message, &line, self.max_message),
            None => {
                let no_text = self.garbage.as_ref().is_none_or(|g| !g.text);
                if no_text && is_header_line(&line.text) {
                    // A message whose `From ` line is missing (or was destroyed).
                    self.flush_garbage(line.offset + line.lead_nuls);
                    let mut message = building(line.offset + line.lead_nuls, None);
                    message.notes.push("no From line; read as a message".into());
                    push_line(&mut message, &line, self.max_message);
                    self.current = Some(message);
                } else {
                    let g = self.garbage.get_or_insert(Garbage {
                        offset: line.offset,
                        end: line.offset,
                        nuls: 0,
                        text: false,
                    });
                    g.end = line.offset + line.len;
                    g.nuls += line.nuls;
                    g.text |= !blank;
                }
            }
        }
    }

    fn start(&mut self, from: &Line, date: Option<i64>) {
        let start = from.offset + from.lead_nuls;
        if let Some(g) = &mut self.garbage {
            g.nuls += from.lead_nuls;
        } else if from.lead_nuls > 0 {
            self.garbage = Some(Garbage {
                offset: from.offset,
                end: start,
                nuls: from.lead_nuls,
                text: false,
            });
        }
        self.finish(start, !self.prev_blank);
        self.flush_garbage(start);
        let mut message = building(start, date);
        message.nuls = from.nuls - from.lead_nuls;
        self.current = Some(message);
        self.prev_blank = false;
    }

    fn flush_garbage(&mut self, end: u64) {
        let Some(g) = self.garbage.take() else {
            return;
        };
        let reason = match (g.nuls, g.text) {
            // Blank lines between messages are the format's own, not damage.
            (0, false) => return,
            (0, true) => "text outside any message (no From line and no header)".to_string(),
            (n, false) => format!("{n} NUL bytes outside any message"),
            (n, true) => format!("{n} NUL bytes and text outside any message"),
        };
        self.out.push_back(Item::Skipped {
            offset: g.offset,
            end: end.max(g.end),
            reason,
        });
    }

    /// Ends the current message at `end`; `cut` when the next one began without the blank
    /// line that should separate them.
    fn finish(&mut self, end: u64, cut: bool) {
        let Some(mut m) = self.current.take() else {
            return;
        };
        let at_eof = self.done;
        if !m.saw_header {
            self.out.push_back(Item::Skipped {
                offset: m.offset,
                end,
                reason: "a From line without a header section".into(),
            });
            return;
        }
        if m.oversized {
            self.out.push_back(Item::Skipped {
                offset: m.offset,
                end,
                reason: format!("message larger than {} bytes", self.max_message),
            });
            return;
        }
        if m.in_headers && (cut || at_eof) {
            self.out.push_back(Item::Skipped {
                offset: m.offset,
                end,
                reason: "message cut short inside its header section".into(),
            });
            return;
        }
        if m.last_blank {
            // The blank line before the next `From ` belongs to the mbox, not the message.
            m.bytes.truncate(m.bytes.len() - 2);
        } else if cut {
            m.notes
                .push("cut short (the next message followed without a blank line)".into());
        }
        if m.nuls > 0 {
            m.notes.push(format!("{} NUL bytes removed", m.nuls));
        }
        let internal_date = m
            .from_date
            .or_else(|| m.date_header.as_deref().and_then(parse_date_header));
        self.out.push_back(Item::Message(Message {
            offset: m.offset,
            end,
            bytes: m.bytes,
            flags: Flags(m.flags),
            internal_date,
            notes: m.notes,
        }));
    }
}

impl<R: BufRead> Iterator for Reader<R> {
    type Item = io::Result<Item>;

    fn next(&mut self) -> Option<io::Result<Item>> {
        loop {
            if let Some(item) = self.out.pop_front() {
                return Some(Ok(item));
            }
            if self.done {
                return None;
            }
            match self.read_line() {
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Ok(Some(line)) => self.process(line),
                Ok(None) => {
                    self.done = true;
                    if let Some(p) = self.pending.take() {
                        if self.current.is_some() && !p.after_blank {
                            self.ordinary(p.line);
                        } else {
                            let start = p.line.offset + p.line.lead_nuls;
                            self.finish(start, false);
                            self.flush_garbage(start);
                            self.out.push_back(Item::Skipped {
                                offset: start,
                                end: p.line.offset + p.line.len,
                                reason: "a From line at the end of the file, with no message"
                                    .into(),
                            });
                            continue;
                        }
                    }
                    let end = self.pos;
                    self.finish(end, false);
                    self.flush_garbage(end);
                }
            }
        }
    }
}

fn building(offset: u64, from_date: Option<i64>) -> Building {
    Building {
        offset,
        bytes: Vec::new(),
        in_headers: true,
        saw_header: false,
        first_line: true,
        last_blank: false,
        flags: 0,
        from_date,
        date_header: None,
        nuls: 0,
        notes: Vec::new(),
        oversized: false,
    }
}

fn push_line(m: &mut Building, line: &Line, max_message: usize) {
    m.nuls += line.nuls;
    let text = &line.text[..];
    if m.first_line {
        m.first_line = false;
        m.saw_header = is_header_line(text);
    }
    if m.in_headers {
        if text.is_empty() {
            m.in_headers = false;
        } else if let Some(value) = header_value(text, b"status") {
            m.flags |= status_flags(value);
        } else if let Some(value) = header_value(text, b"x-status") {
            m.flags |= status_flags(value);
        } else if let Some(value) = header_value(text, b"date") {
            m.date_header = Some(String::from_utf8_lossy(value).trim().to_string());
        }
    }
    let unquoted = match text.iter().position(|&b| b != b'>') {
        Some(n) if n > 0 && text[n..].starts_with(b"From ") => &text[1..],
        _ => text,
    };
    m.last_blank = text.is_empty();
    if m.oversized || m.bytes.len() + unquoted.len() + 2 > max_message {
        m.oversized = true;
        m.bytes = Vec::new();
        return;
    }
    m.bytes.extend_from_slice(unquoted);
    m.bytes.extend_from_slice(b"\r\n");
    if line.split {
        let note = "a line too long was split";
        if !m.notes.iter().any(|n| n == note) {
            m.notes.push(note.into());
        }
    } else if !line.ended {
        m.notes.push("no newline at the end of the file".into());
    }
}

/// `Name: value` with a name of printable ASCII other than the colon.
fn is_header_line(text: &[u8]) -> bool {
    match text.iter().position(|&b| b == b':') {
        Some(n) if n > 0 => text[..n].iter().all(|&b| (0x21..=0x7e).contains(&b)),
        _ => false,
    }
}

fn header_value<'a>(text: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let n = name.len();
    (text.len() > n && text[..n].eq_ignore_ascii_case(name) && text[n] == b':')
        .then(|| &text[n + 1..])
}

fn status_flags(value: &[u8]) -> u32 {
    value.iter().fold(0, |flags, b| {
        flags
            | match b {
                b'R' => Flags::SEEN,
                b'A' => Flags::ANSWERED,
                b'F' => Flags::FLAGGED,
                b'D' => Flags::DELETED,
                b'T' => Flags::DRAFT,
                _ => 0,
            }
    })
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// The date of `From sender Www Mmm dd hh:mm:ss [zone] yyyy` (what follows `From `), in
/// UTC unless a numeric zone is given.
fn from_line_date(rest: &[u8]) -> Option<i64> {
    let rest = std::str::from_utf8(rest).ok()?;
    let words: Vec<&str> = rest.split_whitespace().collect();
    let m = words.iter().skip(1).position(|w| MONTHS.contains(w))? + 1;
    let month = MONTHS.iter().position(|x| *x == words[m])? as i8 + 1;
    let day: i8 = words.get(m + 1)?.parse().ok()?;
    let mut hms = words.get(m + 2)?.split(':');
    let hour: i8 = hms.next()?.parse().ok()?;
    let minute: i8 = hms.next()?.parse().ok()?;
    let second: i8 = hms.next().map_or(Some(0), |s| s.parse().ok())?;
    let mut year = None;
    let mut zone_secs = 0i64;
    for w in &words[m + 3..] {
        if w.len() == 4 && w.bytes().all(|b| b.is_ascii_digit()) && year.is_none() {
            year = w.parse::<i16>().ok();
        } else if (w.starts_with('+') || w.starts_with('-')) && w.len() == 5 {
            let n: i64 = w[1..].parse().ok()?;
            let secs = (n / 100) * 3600 + (n % 100) * 60;
            zone_secs = if w.starts_with('-') { -secs } else { secs };
        }
    }
    let dt = jiff::civil::DateTime::new(year?, month, day, hour, minute, second, 0).ok()?;
    let ts = dt.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp();
    Some(ts.as_second() - zone_secs)
}

fn parse_date_header(value: &str) -> Option<i64> {
    jiff::fmt::rfc2822::parse(value)
        .ok()
        .map(|z| z.timestamp().as_second())
}

/// Writes one message as mboxrd: a `From ` line, the message with LF line ends and
/// `From ` lines quoted with one more `>`, and the blank line that ends it.
pub fn write_message(out: &mut impl Write, message: &[u8], internal_date: i64) -> io::Result<()> {
    let sender = envelope_sender(message);
    let date = jiff::Timestamp::from_second(internal_date)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .strftime("%a %b %e %H:%M:%S %Y")
        .to_string();
    writeln!(out, "From {sender} {date}")?;
    let mut lines = message.split(|&b| b == b'\n').peekable();
    while let Some(mut line) = lines.next() {
        if lines.peek().is_none() && line.is_empty() {
            break;
        }
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        let n = line.iter().take_while(|&&b| b == b'>').count();
        if line[n..].starts_with(b"From ") {
            out.write_all(b">")?;
        }
        out.write_all(line)?;
        // A line whose text ends in CR gets CRLF: the reader takes one CR before the LF
        // as part of the line end, so after a plain LF that CR would be lost on import
        // (found by the mbox fuzz target).
        out.write_all(if line.last() == Some(&b'\r') {
            b"\r\n"
        } else {
            b"\n"
        })?;
    }
    out.write_all(b"\n")
}

/// The address of the first `Return-Path:` header, else MAILER-DAEMON.
fn envelope_sender(message: &[u8]) -> String {
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if let Some(value) = header_value(line, b"return-path") {
            let value = String::from_utf8_lossy(value);
            let addr = value
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .trim();
            if !addr.is_empty() && !addr.contains(char::is_whitespace) {
                return addr.to_string();
            }
            break;
        }
    }
    "MAILER-DAEMON".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_ending_in_cr_survives_export_and_import() {
        let message = b"Subject: cr\r\n\r\nbody\r\r\nnext\r\n".to_vec();
        let mut mbox = Vec::new();
        write_message(&mut mbox, &message, 0).unwrap();
        let items: Vec<Item> = Reader::new(&mbox[..]).map(Result::unwrap).collect();
        match items.as_slice() {
            [Item::Message(m)] => assert_eq!(
                String::from_utf8_lossy(&m.bytes),
                String::from_utf8_lossy(&message)
            ),
            other => panic!("{other:?}"),
        }
    }

    /// Renders what the reader found, one line per item: `msg OFFSET FLAGS DATE NOTES` and
    /// the message with `\r\n` shown as `|`, or `skip OFFSET..END REASON`.
    fn check(input: &[u8], expect: &str) {
        check_with(Reader::new(input), input, expect)
    }

    fn check_with(reader: Reader<&[u8]>, input: &[u8], expect: &str) {
        let items: Vec<Item> = reader.map(|i| i.unwrap()).collect();
        let mut got = String::new();
        for item in items {
            match item {
                Item::Message(m) => {
                    got += &format!(
                        "msg {} f{} d{} [{}] {}\n",
                        m.offset,
                        m.flags.0,
                        m.internal_date.map_or("-".into(), |d| d.to_string()),
                        m.notes.join("; "),
                        String::from_utf8_lossy(&m.bytes).replace("\r\n", "|")
                    )
                }
                Item::Skipped {
                    offset,
                    end,
                    reason,
                } => got += &format!("skip {offset}..{end} {reason}\n"),
            }
        }
        assert_eq!(
            got.trim(),
            expect.trim(),
            "input: {:?}",
            String::from_utf8_lossy(input)
        );
    }

    const A: &str = "From a@x Thu Jan  1 00:00:10 1970\nSubject: a\n\nbody a\n\n";
    const B: &str =
        "From b@x Thu Jan  1 00:00:20 1970\nSubject: b\nStatus: RO\nX-Status: AF\n\nbody b\n\n";

    #[test]
    fn plain_mboxrd() {
        check(
            format!("{A}{B}").as_bytes(),
            "msg 0 f0 d10 [] Subject: a||body a|\n\
             msg 54 f7 d20 [] Subject: b|Status: RO|X-Status: AF||body b|",
        );
    }

    #[test]
    fn from_quoting_round_trips() {
        let message = b"Subject: q\r\n\r\nFrom here\r\n>From there\r\n>>From far\r\n";
        let mut out = Vec::new();
        write_message(&mut out, message, 10).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out),
            "From MAILER-DAEMON Thu Jan  1 00:00:10 1970\nSubject: q\n\n>From here\n>>From there\n>>>From far\n\n"
        );
        check(
            &out,
            "msg 0 f0 d10 [] Subject: q||From here|>From there|>>From far|",
        );
    }

    #[test]
    fn return_path_is_the_envelope_sender() {
        let mut out = Vec::new();
        write_message(
            &mut out,
            b"Return-Path: <s@x>\r\nSubject: r\r\n\r\nhi\r\n",
            0,
        )
        .unwrap();
        assert!(out.starts_with(b"From s@x Thu Jan  1 00:00:00 1970\n"));
    }

    #[test]
    fn nul_bytes_at_the_head_are_skipped_and_reported() {
        // The seed's case: a power cut left the head of the mail drop blank.
        let mut input = vec![0u8; 100];
        input.extend_from_slice(A.as_bytes());
        check(
            &input,
            "skip 0..100 100 NUL bytes outside any message\n\
             msg 100 f0 d10 [] Subject: a||body a|",
        );
        // NULs that replaced the first message's start: its remnant is skipped too.
        let mut input = vec![0u8; 10];
        input.extend_from_slice(b"dy of a lost message\n\n");
        input.extend_from_slice(A.as_bytes());
        check(
            &input,
            "skip 0..32 10 NUL bytes and text outside any message\n\
             msg 32 f0 d10 [] Subject: a||body a|",
        );
    }

    #[test]
    fn nul_runs_inside_are_removed() {
        let input = format!("{A}{}{B}", "\0".repeat(30)).replace("body a", "bo\0\0dy a");
        check(
            input.as_bytes(),
            "msg 0 f0 d10 [2 NUL bytes removed] Subject: a||body a|\n\
             skip 56..86 30 NUL bytes outside any message\n\
             msg 86 f7 d20 [] Subject: b|Status: RO|X-Status: AF||body b|",
        );
    }

    #[test]
    fn truncated_tail() {
        // Cut in the body: kept.
        check(
            format!("{A}From b@x Thu Jan  1 00:00:20 1970\nSubject: b\n\nbo").as_bytes(),
            "msg 0 f0 d10 [] Subject: a||body a|\n\
             msg 54 f0 d20 [no newline at the end of the file] Subject: b||bo|",
        );
        // Cut in the header section: skipped with its range.
        check(
            format!("{A}From b@x Thu Jan  1 00:00:20 1970\nSubject: b\nTo: som").as_bytes(),
            "msg 0 f0 d10 [] Subject: a||body a|\n\
             skip 54..106 message cut short inside its header section",
        );
        // Cut short and followed by a later delivery without the blank line.
        check(
            format!("{}\n{B}", A.trim_end()).as_bytes(),
            "msg 0 f0 d10 [cut short (the next message followed without a blank line)] Subject: a||body a|\n\
             msg 53 f7 d20 [] Subject: b|Status: RO|X-Status: AF||body b|",
        );
    }

    #[test]
    fn no_trailing_newline() {
        check(
            b"From a@x Thu Jan  1 00:00:10 1970\nSubject: a\n\nbody a",
            "msg 0 f0 d10 [no newline at the end of the file] Subject: a||body a|",
        );
    }

    #[test]
    fn body_from_lines_stay_in_their_message() {
        // mboxo: an unquoted `From ` in a body, followed by ordinary text, is body text.
        check(
            b"From a@x Thu Jan  1 00:00:10 1970\nSubject: a\n\nhello\n\nFrom me to you: hi\nthanks\n\n",
            "msg 0 f0 d10 [] Subject: a||hello||From me to you: hi|thanks|",
        );
        check(
            b"From a@x Thu Jan  1 00:00:10 1970\nSubject: a\n\nFrom Mon Jan  1 00:00:00 2001 on\nit rained\n\n",
            "msg 0 f0 d10 [] Subject: a||From Mon Jan  1 00:00:00 2001 on|it rained|",
        );
    }

    #[test]
    fn crlf_and_mixed_line_ends() {
        check(
            format!("{A}{B}").replace('\n', "\r\n").as_bytes(),
            "msg 0 f0 d10 [] Subject: a||body a|\n\
             msg 59 f7 d20 [] Subject: b|Status: RO|X-Status: AF||body b|",
        );
        check(
            b"From a@x Thu Jan  1 00:00:10 1970\r\nSubject: a\n\r\nbody\r\n\n",
            "msg 0 f0 d10 [] Subject: a||body|",
        );
    }

    #[test]
    fn missing_from_line_at_the_start() {
        check(
            format!("Subject: z\nDate: Thu, 1 Jan 1970 00:01:00 +0000\n\nbody z\n\n{A}").as_bytes(),
            "msg 0 f0 d60 [no From line; read as a message] Subject: z|Date: Thu, 1 Jan 1970 00:01:00 +0000||body z|\n\
             msg 57 f0 d10 [] Subject: a||body a|",
        );
    }

    #[test]
    fn malformed_from_line_followed_by_headers() {
        check(
            format!("{A}From garbage\nSubject: c\n\nc\n").as_bytes(),
            "msg 0 f0 d10 [] Subject: a||body a|\n\
             msg 54 f0 d- [] Subject: c||c|",
        );
    }

    #[test]
    fn over_long_lines_and_messages_are_bounded() {
        let input = format!("{A}{B}").replace("body a", &"y".repeat(100));
        let mut reader = Reader::new(input.as_bytes());
        reader.max_line = 40;
        check_with(
            reader,
            input.as_bytes(),
            &format!(
                "msg 0 f0 d10 [a line too long was split] Subject: a||{}|{}|{}|\n\
             msg 148 f7 d20 [] Subject: b|Status: RO|X-Status: AF||body b|",
                "y".repeat(40),
                "y".repeat(40),
                "y".repeat(20)
            ),
        );
        let input = format!("{A}{B}").replace("body a", &"y".repeat(100));
        let mut reader = Reader::new(input.as_bytes());
        reader.max_message = 80;
        check_with(
            reader,
            input.as_bytes(),
            "skip 0..148 message larger than 80 bytes\n\
             msg 148 f7 d20 [] Subject: b|Status: RO|X-Status: AF||body b|",
        );
    }

    #[test]
    fn from_line_with_zone() {
        assert_eq!(
            from_line_date(b"x Mon Dec 17 15:19:36 +0900 2008"),
            Some(1229494776)
        );
        assert_eq!(
            from_line_date(b"x Mon Dec 17 15:19:36 2008"),
            Some(1229527176)
        );
        assert_eq!(from_line_date(b"garbage"), None);
    }
}
