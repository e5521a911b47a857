//! The lexical layer of the command grammar (RFC 3501 section 9): a cursor over one
//! complete command with readers for atoms, strings, literals, numbers, sequence sets,
//! flags and dates.
//!
//! The cursor also serves to check the beginning of a command whose literal has not
//! arrived: reading past the end sets `hit_end`, and an error after that only means the
//! input ran out, not that it is wrong.

use std::borrow::Cow;
use std::ops::Range;

use crate::command::{DateTime, Flag, SeqNum, SequenceSet};
use crate::utf7;

/// A syntax error, with a reason worded for the client.
#[derive(Debug)]
pub(super) struct Fail(pub Cow<'static, str>);

pub(super) type PResult<T> = Result<T, Fail>;

pub(super) fn fail<T>(reason: impl Into<Cow<'static, str>>) -> PResult<T> {
    Err(Fail(reason.into()))
}

/// True for ATOM-CHAR: printable ASCII except `(){%*"\]` and space.
pub(crate) fn is_atom_char(b: u8) -> bool {
    (0x21..0x7f).contains(&b) && !b"(){%*\"\\]".contains(&b)
}

/// True for ASTRING-CHAR: an atom character or `]`.
pub(crate) fn is_astring_char(b: u8) -> bool {
    is_atom_char(b) || b == b']'
}

/// The longest tag [`leading_tag`] reports; shorter than the shortest line limit.
const MAX_TAG: usize = 60;

fn is_tag_char(b: u8) -> bool {
    is_astring_char(b) && b != b'+'
}

/// The tag at the start of a command, if it has a valid one followed by a space or the end
/// of what has been read.
pub(super) fn leading_tag(frame: &[u8]) -> Option<String> {
    let end = frame
        .iter()
        .position(|&b| !is_tag_char(b))
        .unwrap_or(frame.len());
    // A tag longer than any client uses is not echoed; the limit also keeps the answer the
    // same whether the error was found in a whole line or in the first part of one.
    if end == 0 || end > MAX_TAG || !matches!(frame.get(end), None | Some(b' ' | b'\r' | b'\n')) {
        return None;
    }
    // Tag characters are ASCII.
    Some(String::from_utf8_lossy(&frame[..end]).into_owned())
}

/// True when `line` is base64 (possibly empty) or the single `=` SASL-IR uses for an empty
/// initial response.
pub(super) fn is_base64(line: &[u8]) -> bool {
    if line == b"=" {
        return true;
    }
    let body = line.len() - line.iter().rev().take_while(|&&b| b == b'=').count();
    line.len() - body <= 2
        && line[..body]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

const MONTHS: [&[u8; 3]; 12] = [
    b"JAN", b"FEB", b"MAR", b"APR", b"MAY", b"JUN", b"JUL", b"AUG", b"SEP", b"OCT", b"NOV", b"DEC",
];

/// How deeply SEARCH keys and other nested lists may nest, so that a hostile command
/// cannot exhaust the stack.
const MAX_DEPTH: u32 = 32;

pub(super) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Set when the parser needed input beyond the end of `buf`.
    pub hit_end: bool,
    depth: u32,
    /// Where APPEND's message literal lies in `buf`, so its bytes can be moved rather than
    /// copied.
    pub message: Option<Range<usize>>,
    /// The client enabled UTF8=ACCEPT (RFC 6855): mailbox names are UTF-8, not modified
    /// UTF-7, and APPEND takes `UTF8 (~{n})`.
    pub utf8: bool,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Cursor {
            buf,
            pos: 0,
            hit_end: false,
            depth: 0,
            message: None,
            utf8: false,
        }
    }

    pub fn peek(&mut self) -> Option<u8> {
        let b = self.buf.get(self.pos).copied();
        if b.is_none() {
            self.hit_end = true;
        }
        b
    }

    /// The next `n` bytes, if there are that many.
    fn peek_n(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.buf.get(self.pos..self.pos + n);
        if s.is_none() {
            self.hit_end = true;
        }
        s
    }

    pub fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    pub fn expect(&mut self, b: u8, reason: &'static str) -> PResult<()> {
        if self.eat(b) { Ok(()) } else { fail(reason) }
    }

    /// Consumes `word` (ASCII, upper case) if the input continues with it in any case.
    pub fn eat_word(&mut self, word: &[u8]) -> bool {
        match self.peek_n(word.len()) {
            Some(s) if s.eq_ignore_ascii_case(word) => {
                self.pos += word.len();
                true
            }
            _ => false,
        }
    }

    /// Consumes the single space that separates arguments.
    pub fn sp(&mut self) -> PResult<()> {
        match self.peek() {
            Some(b' ') => {
                self.pos += 1;
                Ok(())
            }
            None | Some(b'\r' | b'\n') => fail("Missing argument"),
            _ => fail("Expected a space"),
        }
    }

    /// True when the command line ends here.
    pub fn at_eol(&mut self) -> bool {
        matches!(self.peek(), None | Some(b'\r' | b'\n'))
    }

    /// Consumes the final line ending, which must end the input.
    pub fn end(&mut self) -> PResult<()> {
        self.eat(b'\r');
        if self.eat(b'\n') && self.pos == self.buf.len() {
            Ok(())
        } else if self.peek() == Some(b' ') {
            fail("Unexpected space; too many arguments?")
        } else {
            fail("Too many arguments or unexpected characters")
        }
    }

    /// Consumes a maximal run of bytes for which `pred` holds.
    fn take_while(&mut self, pred: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(&pred) {
            self.pos += 1;
        }
        &self.buf[start..self.pos]
    }

    pub fn tag(&mut self) -> PResult<&'a [u8]> {
        let tag = self.take_while(is_tag_char);
        if tag.is_empty() {
            return fail("Missing or invalid tag");
        }
        Ok(tag)
    }

    pub fn atom(&mut self) -> PResult<&'a [u8]> {
        let atom = self.take_while(is_atom_char);
        if atom.is_empty() {
            return match self.peek() {
                None | Some(b'\r' | b'\n') => fail("Missing argument"),
                _ => fail("Expected an atom"),
            };
        }
        Ok(atom)
    }

    /// A keyword made of letters, digits, `.`, `-` and `+` (a FETCH item or STORE
    /// operation), which unlike an atom stops at `[` and `<`.
    pub fn word(&mut self) -> PResult<&'a [u8]> {
        let word = self.take_while(|b| b.is_ascii_alphanumeric() || b"-.+$_".contains(&b));
        if word.is_empty() {
            return fail("Expected a keyword");
        }
        Ok(word)
    }

    /// A quoted string or a literal.
    pub fn string(&mut self) -> PResult<Cow<'a, [u8]>> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{') => {
                let range = self.literal()?;
                Ok(Cow::Borrowed(&self.buf[range]))
            }
            None | Some(b'\r' | b'\n') => fail("Missing argument"),
            _ => fail("Expected a string"),
        }
    }

    /// An atom-like run of ASTRING-CHAR, or a string.
    pub fn astring(&mut self) -> PResult<Cow<'a, [u8]>> {
        match self.peek() {
            Some(b'"' | b'{') => self.string(),
            _ => {
                let s = self.take_while(is_astring_char);
                if s.is_empty() {
                    return match self.peek() {
                        None | Some(b'\r' | b'\n') => fail("Missing argument"),
                        _ => fail("Expected a string"),
                    };
                }
                Ok(Cow::Borrowed(s))
            }
        }
    }

    /// A string, or NIL.
    pub fn nstring(&mut self) -> PResult<Option<Cow<'a, [u8]>>> {
        if matches!(self.peek(), Some(b'"' | b'{')) {
            return self.string().map(Some);
        }
        if self.eat_word(b"NIL") {
            return Ok(None);
        }
        fail("Expected a string or NIL")
    }

    fn quoted(&mut self) -> PResult<Cow<'a, [u8]>> {
        self.pos += 1;
        let start = self.pos;
        // Most quoted strings have no escapes and can be borrowed.
        let mut owned: Option<Vec<u8>> = None;
        loop {
            match self.peek() {
                None | Some(b'\r' | b'\n') => return fail("Unterminated quoted string"),
                Some(0) => return fail("NUL in quoted string"),
                Some(b'"') => {
                    let end = self.pos;
                    self.pos += 1;
                    return Ok(match owned {
                        Some(v) => Cow::Owned(v),
                        None => Cow::Borrowed(&self.buf[start..end]),
                    });
                }
                Some(b'\\') => {
                    let v = owned.get_or_insert_with(|| self.buf[start..self.pos].to_vec());
                    self.pos += 1;
                    match self.buf.get(self.pos) {
                        Some(&b @ (b'"' | b'\\')) => v.push(b),
                        _ => return fail("Invalid escape in quoted string"),
                    }
                    self.pos += 1;
                }
                Some(b) => {
                    if let Some(v) = &mut owned {
                        v.push(b);
                    }
                    self.pos += 1;
                }
            }
        }
    }

    /// `{n}` or `{n+}`, the line ending, and `n` octets; returns where the octets lie.
    /// A `literal8` (RFC 3516 `~{n}`), which may hold any octet but NUL: APPEND's UTF8
    /// data (RFC 6855 4).
    pub fn literal8(&mut self) -> PResult<Range<usize>> {
        self.expect(b'~', "Expected a literal8")?;
        self.literal()
    }

    pub fn literal(&mut self) -> PResult<Range<usize>> {
        self.expect(b'{', "Expected a literal")?;
        let digits = self.take_while(|b| b.is_ascii_digit());
        if digits.is_empty() || digits.len() > 19 {
            return fail("Invalid literal size");
        }
        let size: u64 = digits.iter().fold(0, |n, &d| n * 10 + u64::from(d - b'0'));
        self.eat(b'+');
        self.expect(b'}', "Invalid literal")?;
        self.eat(b'\r');
        self.expect(b'\n', "A literal's size must end the line")?;
        let start = self.pos;
        let Some(end) = usize::try_from(size)
            .ok()
            .and_then(|size| start.checked_add(size))
            .filter(|&end| end <= self.buf.len())
        else {
            self.hit_end = true;
            return fail("Literal data missing");
        };
        self.pos = end;
        Ok(start..end)
    }

    /// A number (RFC 3501 `number`, which fits 32 bits).
    pub fn number(&mut self) -> PResult<u32> {
        let digits = self.take_while(|b| b.is_ascii_digit());
        if digits.is_empty() {
            return fail("Expected a number");
        }
        digits
            .iter()
            .try_fold(0u32, |n, &d| {
                n.checked_mul(10)?.checked_add(u32::from(d - b'0'))
            })
            .map_or_else(|| fail("Number too large"), Ok)
    }

    /// A mod-sequence value (RFC 7162 `mod-sequence-valzer`): 0 to 2^63-1.
    pub fn mod_sequence(&mut self) -> PResult<u64> {
        let digits = self.take_while(|b| b.is_ascii_digit());
        if digits.is_empty() {
            return fail("Expected a mod-sequence");
        }
        digits
            .iter()
            .try_fold(0u64, |n, &d| {
                n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
            })
            .filter(|&n| n <= i64::MAX as u64)
            .map_or_else(|| fail("Mod-sequence too large"), Ok)
    }

    pub fn nz_number(&mut self) -> PResult<u32> {
        match self.number()? {
            0 => fail("Numbers start at 1"),
            n => Ok(n),
        }
    }

    fn seq_number(&mut self) -> PResult<SeqNum> {
        if self.eat(b'*') {
            Ok(SeqNum::Star)
        } else if self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.nz_number().map(SeqNum::Value)
        } else {
            fail("Invalid sequence set")
        }
    }

    /// `1:4,7,9:*`.
    pub fn sequence_set(&mut self) -> PResult<SequenceSet> {
        let mut ranges = Vec::new();
        if self.eat(b'$') {
            // RFC 5182: `$` stands alone, never inside a list of ranges.
            return match self.peek() {
                None | Some(b' ' | b')' | b'\r' | b'\n') => Ok(SequenceSet::saved()),
                _ => fail("Invalid sequence set: $ stands alone"),
            };
        }
        loop {
            let first = self.seq_number()?;
            let last = if self.eat(b':') {
                self.seq_number()?
            } else {
                first
            };
            ranges.push((first, last));
            if !self.eat(b',') {
                break;
            }
        }
        // A sequence set ends at a space, a parenthesis or the line end; anything else
        // glued to it (`1:2x`) is a malformed set rather than a second argument.
        if self
            .peek()
            .is_some_and(|b| !matches!(b, b' ' | b')' | b'\r' | b'\n'))
        {
            return fail("Invalid sequence set");
        }
        Ok(SequenceSet(ranges))
    }

    /// Enters a nested construct, refusing to nest too deeply.
    pub fn descend(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return fail("Too deeply nested");
        }
        Ok(())
    }

    pub fn ascend(&mut self) {
        self.depth -= 1;
    }

    /// A flag: a system flag `\Seen` or a keyword atom. `\*` and unknown system flags are
    /// refused; `\Recent` is returned, and refused where it cannot be stored by the caller.
    pub fn flag(&mut self) -> PResult<Flag> {
        if self.eat(b'\\') {
            let name = self.take_while(is_atom_char);
            let flag = match name.to_ascii_uppercase().as_slice() {
                b"SEEN" => Flag::Seen,
                b"ANSWERED" => Flag::Answered,
                b"FLAGGED" => Flag::Flagged,
                b"DELETED" => Flag::Deleted,
                b"DRAFT" => Flag::Draft,
                b"RECENT" => Flag::Recent,
                _ => return fail("Unknown system flag"),
            };
            return Ok(flag);
        }
        self.keyword().map(Flag::Keyword)
    }

    /// A keyword flag (an atom), as sent.
    pub fn keyword(&mut self) -> PResult<String> {
        if self.peek() == Some(b'\\') {
            return fail("Expected a keyword, not a system flag");
        }
        let atom = self.atom()?;
        Ok(String::from_utf8_lossy(atom).into_owned())
    }

    /// `(flag flag ...)`, possibly empty.
    pub fn flag_list(&mut self) -> PResult<Vec<Flag>> {
        self.expect(b'(', "Expected a flag list")?;
        let mut flags = Vec::new();
        if self.eat(b')') {
            return Ok(flags);
        }
        loop {
            flags.push(self.flag()?);
            if self.eat(b')') {
                return Ok(flags);
            }
            self.expect(b' ', "Expected a space or ) in flag list")?;
        }
    }

    /// A mailbox name: an astring in modified UTF-7, decoded, with INBOX in any case
    /// folded to "INBOX", also as the first level of a longer name ("inbox/Sub" is
    /// "INBOX/Sub", as Dovecot has it), so one mailbox never shows under two spellings.
    pub fn mailbox(&mut self) -> PResult<String> {
        let raw = self.astring()?;
        let name = self.decode_mailbox(&raw)?;
        let first = name.split('/').next().unwrap_or_default();
        if first.eq_ignore_ascii_case("INBOX") && first != "INBOX" {
            return Ok(format!("INBOX{}", &name[first.len()..]));
        }
        Ok(name)
    }

    /// A LIST or LSUB pattern (`list-mailbox`): atom characters with `%`, `*` and `]`, or
    /// a string; decoded from modified UTF-7 but not folded.
    pub fn list_mailbox(&mut self) -> PResult<String> {
        let raw = match self.peek() {
            Some(b'"' | b'{') => self.string()?,
            _ => {
                let s = self.take_while(|b| is_astring_char(b) || b == b'%' || b == b'*');
                if s.is_empty() {
                    return fail("Expected a mailbox pattern");
                }
                Cow::Borrowed(s)
            }
        };
        self.decode_mailbox(&raw)
    }

    /// A mailbox name or pattern as text: modified UTF-7 (RFC 3501 5.1.3), or UTF-8 once
    /// the client enabled UTF8=ACCEPT, where `&` is an ordinary character (RFC 6855 3).
    fn decode_mailbox(&self, raw: &[u8]) -> PResult<String> {
        if self.utf8 {
            return match std::str::from_utf8(raw) {
                Ok(name) if !name.contains('\0') => Ok(name.to_string()),
                _ => fail("Invalid mailbox name: not UTF-8"),
            };
        }
        utf7::decode(raw).map_err(|e| Fail(format!("Invalid mailbox name: {e}").into()))
    }

    /// A SEARCH date: `1-Feb-1994`, optionally quoted; days since the Unix epoch.
    pub fn date(&mut self) -> PResult<i32> {
        let quoted = self.eat(b'"');
        let day = self.digits(1, 2)?;
        let days = self.month_year(day)?;
        if quoted {
            self.expect(b'"', "Invalid date")?;
        }
        Ok(days)
    }

    /// APPEND's date-time: `"17-Jul-1996 02:44:25 -0700"`; Unix seconds and the zone.
    pub fn date_time(&mut self) -> PResult<DateTime> {
        self.expect(b'"', "Invalid date-time")?;
        // The day is two digits or a space and a digit; a lone digit is accepted too.
        self.eat(b' ');
        let day = self.digits(1, 2)?;
        let days = self.month_year(day)?;
        self.expect(b' ', "Invalid date-time")?;
        let hour = self.digits(2, 2)?;
        self.expect(b':', "Invalid time")?;
        let minute = self.digits(2, 2)?;
        self.expect(b':', "Invalid time")?;
        let second = self.digits(2, 2)?;
        if hour > 23 || minute > 59 || second > 60 {
            return fail("Invalid time");
        }
        self.expect(b' ', "Invalid date-time")?;
        let sign = match self.peek() {
            Some(b'+') => 1,
            Some(b'-') => -1,
            _ => return fail("Invalid time zone"),
        };
        self.pos += 1;
        let zone = self.digits(4, 4)?;
        if zone % 100 > 59 {
            return fail("Invalid time zone");
        }
        self.expect(b'"', "Invalid date-time")?;
        let zone_minutes = sign * (zone / 100 * 60 + zone % 100) as i16;
        let offset = i64::from(zone_minutes) * 60;
        Ok(DateTime {
            seconds: i64::from(days) * 86_400 + i64::from(hour * 3600 + minute * 60 + second)
                - offset,
            zone_minutes,
        })
    }

    /// `-Mon-yyyy` after the day; days since the Unix epoch.
    fn month_year(&mut self, day: u32) -> PResult<i32> {
        self.expect(b'-', "Invalid date")?;
        let Some(name) = self.peek_n(3) else {
            return fail("Invalid date");
        };
        let Some(month) = MONTHS.iter().position(|m| name.eq_ignore_ascii_case(*m)) else {
            return fail("Invalid month in date");
        };
        self.pos += 3;
        self.expect(b'-', "Invalid date")?;
        let year = self.digits(4, 4)?;
        let month = month as u32 + 1;
        if day == 0 || day > days_in_month(year, month) {
            return fail("Invalid day in date");
        }
        Ok(days_from_civil(year, month, day))
    }

    /// Between `min` and `max` decimal digits.
    fn digits(&mut self, min: usize, max: usize) -> PResult<u32> {
        let start = self.pos;
        while self.pos - start < max && self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        let digits = &self.buf[start..self.pos];
        if digits.len() < min {
            return fail("Invalid date");
        }
        Ok(digits.iter().fold(0, |n, &d| n * 10 + u32::from(d - b'0')))
    }
}

/// Converts bytes of a string argument to UTF-8 text, refusing NUL and invalid UTF-8.
pub(super) fn text(bytes: Cow<'_, [u8]>) -> PResult<String> {
    if bytes.contains(&0) {
        return fail("NUL in string");
    }
    match String::from_utf8(bytes.into_owned()) {
        Ok(s) => Ok(s),
        Err(_) => fail("String is not valid UTF-8"),
    }
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since the Unix epoch of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: u32, month: u32, day: u32) -> i32 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    // Four-digit years keep this well within i32.
    (era * 146_097 + doe - 719_468) as i32
}
