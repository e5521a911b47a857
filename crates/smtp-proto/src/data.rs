//! The DATA phase: incremental dot-unstuffing and end-of-data detection (RFC 5321
//! section 4.5.2), hardened against SMTP smuggling.

use crate::reply::Reply;

/// How a message transfer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DataOutcome {
    /// The message arrived intact and `out` holds all of it.
    Complete,
    /// The content exceeded the size limit. `out` holds only the first `max_size` bytes
    /// and must be thrown away.
    TooLarge,
    /// The content contained an LF without a CR before it. Such messages are refused
    /// outright: servers that treat a bare LF as a line end can be tricked into seeing
    /// an end of data, and a smuggled second message, where others see none. `out`
    /// holds only the content before that LF and must be thrown away.
    BareLf,
}

impl DataOutcome {
    /// The reply to the end of data, or `None` for [`DataOutcome::Complete`], whose
    /// reply depends on what the session does with the message.
    pub fn reply(&self) -> Option<Reply> {
        match self {
            DataOutcome::Complete => None,
            DataOutcome::TooLarge => Some(Reply::status(
                552,
                (5, 3, 4),
                "Message size exceeds fixed maximum message size",
            )),
            DataOutcome::BareLf => Some(Reply::status(
                554,
                (5, 6, 0),
                "Message contains a bare LF; lines must end with CRLF",
            )),
        }
    }
}

/// Where the decoder stands relative to the line structure of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line: after a CRLF, or at the very start of DATA.
    LineStart,
    /// After a `.` at the start of a line, which is either stuffing or the end marker.
    Dot,
    /// After `.` CR at the start of a line; only an LF now ends the data.
    DotCr,
    /// Inside a line; `prev_cr` tells whether the last byte seen was a CR.
    Middle { prev_cr: bool },
}

/// Decodes the DATA phase: dot-unstuffing and end-of-data detection, incrementally.
///
/// Only CRLF `.` CRLF ends the data, and the content must use CRLF line ends
/// throughout. A lone CR inside a line is ordinary content.
#[derive(Debug, Clone)]
pub struct DataDecoder {
    max_size: u64,
    state: State,
    /// Content bytes accepted so far, after unstuffing.
    size: u64,
    /// Set by the first problem found; from then on input is consumed but not copied.
    rejected: Option<DataOutcome>,
}

impl DataDecoder {
    /// `max_size` limits the unstuffed content, line ends included; use `u64::MAX` for
    /// no limit.
    pub fn new(max_size: u64) -> Self {
        DataDecoder {
            max_size,
            state: State::LineStart,
            size: 0,
            rejected: None,
        }
    }

    /// Content bytes accepted so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Moves bytes from the front of `input` (removing what it consumed) into `out`,
    /// unstuffed.
    ///
    /// Returns `Some(outcome)` once the terminating CRLF `.` CRLF has been consumed;
    /// bytes after it stay in `input` (pipelined commands). The content put in `out`
    /// ends with the CRLF that preceded the final `.` line, so an empty message yields
    /// nothing. After an outcome the decoder is ready for the next message.
    pub fn decode(&mut self, input: &mut Vec<u8>, out: &mut Vec<u8>) -> Option<DataOutcome> {
        let buf = input.as_slice();
        let mut pos = 0;
        // Bytes from `run` to `pos` are content not yet copied. Copying them in one
        // go, rather than line by line, keeps the common case to a scan and a memcpy.
        let mut run = 0;
        while pos < buf.len() {
            match self.state {
                State::LineStart => {
                    if buf[pos] == b'.' {
                        self.emit(out, &buf[run..pos]);
                        pos += 1;
                        run = pos;
                        self.state = State::Dot;
                    } else {
                        self.state = State::Middle { prev_cr: false };
                    }
                }
                State::Dot => {
                    if buf[pos] == b'\r' {
                        pos += 1;
                        run = pos;
                        self.state = State::DotCr;
                    } else {
                        // Any other byte means the dot was stuffing, already dropped.
                        self.state = State::Middle { prev_cr: false };
                    }
                }
                State::DotCr => {
                    if buf[pos] == b'\n' {
                        let outcome = self.rejected.take().unwrap_or(DataOutcome::Complete);
                        *self = DataDecoder::new(self.max_size);
                        input.drain(..=pos);
                        return Some(outcome);
                    }
                    // A line such as ".\rx": the dot was stuffing and the CR is content.
                    self.emit(out, b"\r");
                    self.state = State::Middle { prev_cr: true };
                }
                State::Middle { prev_cr } => {
                    let rest = &buf[pos..];
                    match rest.iter().position(|&b| b == b'\n') {
                        None => {
                            self.state = State::Middle {
                                prev_cr: rest.last() == Some(&b'\r'),
                            };
                            pos = buf.len();
                        }
                        Some(offset) => {
                            let lf = pos + offset;
                            let crlf = match offset {
                                0 => prev_cr,
                                _ => buf[lf - 1] == b'\r',
                            };
                            pos = lf + 1;
                            if crlf {
                                self.state = State::LineStart;
                            } else {
                                self.emit(out, &buf[run..lf]);
                                self.reject(DataOutcome::BareLf);
                                run = pos;
                                // A bare LF does not start a new line, so a following
                                // ".\r\n" cannot end the data: that is the smuggling defence.
                                self.state = State::Middle { prev_cr: false };
                            }
                        }
                    }
                }
            }
        }
        self.emit(out, &buf[run..pos]);
        input.clear();
        None
    }

    /// Copies content to `out`, enforcing the size limit, unless the message is
    /// already rejected.
    fn emit(&mut self, out: &mut Vec<u8>, bytes: &[u8]) {
        if self.rejected.is_some() || bytes.is_empty() {
            return;
        }
        let room = self.max_size - self.size;
        match usize::try_from(room) {
            Ok(room) if room < bytes.len() => {
                out.extend_from_slice(&bytes[..room]);
                self.size = self.max_size;
                self.reject(DataOutcome::TooLarge);
            }
            _ => {
                out.extend_from_slice(bytes);
                self.size += bytes.len() as u64;
            }
        }
    }

    /// Records the first problem only, so the outcome names what went wrong first.
    fn reject(&mut self, outcome: DataOutcome) {
        self.rejected.get_or_insert(outcome);
    }
}

/// Encodes `message` for the DATA phase of a client, appending to `out`: every line end
/// made CRLF, a `.` doubled at the start of a line, a final CRLF added when the message
/// lacks one, and the terminating `.` CRLF.
///
/// A bare LF, and a CR not followed by LF, each become CRLF: a receiver that reads either
/// as a line end could otherwise see an end of data where the next hop sees none (SMTP
/// smuggling), so neither is ever sent. Returns the size RFC 1870 asks for in `SIZE=`:
/// the octets of the message with CRLF line ends, before stuffing and without the
/// terminator.
pub fn encode_data(message: &[u8], out: &mut Vec<u8>) -> u64 {
    out.reserve(message.len() + message.len() / 64 + 5);
    let start = out.len();
    let mut stuffed = 0u64;
    let mut line_start = true;
    let mut i = 0;
    while i < message.len() {
        let b = message[i];
        if line_start && b == b'.' {
            out.push(b'.');
            stuffed += 1;
        }
        match b {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if message.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                line_start = true;
            }
            b'\n' => {
                out.extend_from_slice(b"\r\n");
                line_start = true;
            }
            _ => {
                out.push(b);
                line_start = false;
            }
        }
        i += 1;
    }
    if !line_start {
        out.extend_from_slice(b"\r\n");
    }
    let size = (out.len() - start) as u64 - stuffed;
    out.extend_from_slice(b".\r\n");
    size
}

#[cfg(test)]
mod tests {
    use super::*;

    type Expect<'a> = (&'a [u8], Option<DataOutcome>, &'a [u8]);

    /// Decodes `input` in one call and compares content, outcome and leftover input.
    fn check(input: &[u8], max_size: u64, (content, outcome, rest): Expect<'_>) {
        let mut decoder = DataDecoder::new(max_size);
        let mut buf = input.to_vec();
        let mut out = Vec::new();
        let got = decoder.decode(&mut buf, &mut out);
        let shown = String::from_utf8_lossy(&input[..input.len().min(200)]);
        assert_eq!(got, outcome, "outcome for {shown:?}");
        assert_eq!(out, content, "content for {shown:?}");
        assert_eq!(buf, rest, "rest for {shown:?}");
        assert_eq!(decode_chunked(input, max_size, &[]), (out, got, buf));
    }

    const OK: Option<DataOutcome> = Some(DataOutcome::Complete);
    const BIG: Option<DataOutcome> = Some(DataOutcome::TooLarge);
    const LF: Option<DataOutcome> = Some(DataOutcome::BareLf);

    #[test]
    fn decoding() {
        let cases: Vec<(&[u8], u64, Expect<'_>)> = vec![
            (b".\r\n", 100, (b"", OK, b"")),
            (b".\r\nQUIT\r\n", 100, (b"", OK, b"QUIT\r\n")),
            (b"a\r\n.\r\n", 100, (b"a\r\n", OK, b"")),
            (
                b"a\r\nb\r\n.\r\nMAIL FROM:<>\r\n",
                100,
                (b"a\r\nb\r\n", OK, b"MAIL FROM:<>\r\n"),
            ),
            (b"\r\n.\r\n", 100, (b"\r\n", OK, b"")),
            (b"\r\n\r\n.\r\n", 100, (b"\r\n\r\n", OK, b"")),
            // Dot-stuffing.
            (b"..foo\r\n.\r\n", 100, (b".foo\r\n", OK, b"")),
            (b"a\r\n..foo\r\n.\r\n", 100, (b"a\r\n.foo\r\n", OK, b"")),
            (b"..\r\n.\r\n", 100, (b".\r\n", OK, b"")),
            (b"...\r\n.\r\n", 100, (b"..\r\n", OK, b"")),
            (b"a\r\n..\r\nb\r\n.\r\n", 100, (b"a\r\n.\r\nb\r\n", OK, b"")),
            (b".x\r\n.\r\n", 100, (b"x\r\n", OK, b"")),
            (b"a.b\r\n.\r\n", 100, (b"a.b\r\n", OK, b"")),
            (b"a\r\n. \r\n.\r\n", 100, (b"a\r\n \r\n", OK, b"")),
            (b".\r.\r\n.\r\n", 100, (b"\r.\r\n", OK, b"")),
            (b".\r\r\n.\r\n", 100, (b"\r\r\n", OK, b"")),
            // CR alone is content.
            (b"a\rb\r\n.\r\n", 100, (b"a\rb\r\n", OK, b"")),
            (b"a\r\r\n.\r\n", 100, (b"a\r\r\n", OK, b"")),
            (b"\r\r\r\n.\r\n", 100, (b"\r\r\r\n", OK, b"")),
            (b"a\r\n\r.\r\n.\r\n", 100, (b"a\r\n\r.\r\n", OK, b"")),
            // Binary content.
            (
                b"\x00\xff\x80\r\n\xfe.\r\n.\r\n",
                100,
                (b"\x00\xff\x80\r\n\xfe.\r\n", OK, b""),
            ),
            // Only CRLF.CRLF ends the data; anything else is content or a bare LF.
            (b"a\r\n.\r", 100, (b"a\r\n", None, b"")),
            (b"a\r\n.", 100, (b"a\r\n", None, b"")),
            (b"a\r\n", 100, (b"a\r\n", None, b"")),
            (b"", 100, (b"", None, b"")),
            (b"a\r\n.x", 100, (b"a\r\nx", None, b"")),
            // Bare LFs, including smuggling attempts, reject the message but do not end it.
            (b"a\nb\r\n.\r\n", 100, (b"a", LF, b"")),
            (b"\n.\r\n", 100, (b"", None, b"")),
            (b"\r\n.\n.\r\n", 100, (b"\r\n", None, b"")),
            (b"a\n.\nMAIL FROM:<x@y>\r\n.\r\n", 100, (b"a", LF, b"")),
            (b"a\n.\r\nRCPT\r\n.\r\nNEXT", 100, (b"a", LF, b"NEXT")),
            (b"a\r\n.\nb\r\n.\r\n", 100, (b"a\r\n", LF, b"")),
            (b"a\r\n.\r\r\n.\r\n", 100, (b"a\r\n\r\r\n", OK, b"")),
            (b"a\r\n.\r.\n.\r\n", 100, (b"a\r\n\r.", None, b"")),
            (b"a\r\n\n.\r\n.\r\n", 100, (b"a\r\n", LF, b"")),
            (b"ok\r\n\n", 100, (b"ok\r\n", None, b"")),
            // Size limit: content includes its line ends but not stuffing or the marker.
            (b"12345678\r\n.\r\n", 10, (b"12345678\r\n", OK, b"")),
            (b"123456789\r\n.\r\n", 10, (b"123456789\r", BIG, b"")),
            (b"..345678\r\n.\r\n", 9, (b".345678\r\n", OK, b"")),
            (b"..345678\r\n.\r\n", 8, (b".345678\r", BIG, b"")),
            (b".\r\n", 0, (b"", OK, b"")),
            (b"\r\n.\r\n", 0, (b"", BIG, b"")),
            (b"\r\n.\r\n", 1, (b"\r", BIG, b"")),
            (
                b"1234567890\r\n.\r\nQUIT\r\n",
                5,
                (b"12345", BIG, b"QUIT\r\n"),
            ),
            (b"123456789012\nx\r\n.\r\n", 5, (b"12345", BIG, b"")),
            (b"1\n3456789012\r\n.\r\n", 5, (b"1", LF, b"")),
            (b"12345\n\r\n.\r\n", 5, (b"12345", LF, b"")),
            (b"123456\n\r\n.\r\n", 5, (b"12345", BIG, b"")),
            (b"12\r\n.\r\n", u64::MAX, (b"12\r\n", OK, b"")),
        ];
        for (input, max_size, expect) in cases {
            check(input, max_size, expect);
        }
    }

    #[test]
    fn long_line() {
        let mut input = vec![b'x'; 100_000];
        input.extend_from_slice(b"\r\n.\r\nQUIT\r\n");
        let content = &input[..100_002];
        check(&input, 100_002, (content, OK, b"QUIT\r\n"));
        check(&input, 100_001, (&content[..100_001], BIG, b"QUIT\r\n"));
    }

    /// Feeds `input` in pieces cut at `cuts`, the way a socket might deliver it, and
    /// returns the content, the outcome and whatever input is left.
    fn decode_chunked(
        input: &[u8],
        max_size: u64,
        cuts: &[usize],
    ) -> (Vec<u8>, Option<DataOutcome>, Vec<u8>) {
        let mut decoder = DataDecoder::new(max_size);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        let mut outcome = None;
        let mut start = 0;
        for end in cuts.iter().copied().chain([input.len()]) {
            buf.extend_from_slice(&input[start..end]);
            start = end;
            if outcome.is_none() {
                outcome = decoder.decode(&mut buf, &mut out);
            }
        }
        (out, outcome, buf)
    }

    fn messages() -> Vec<Vec<u8>> {
        let samples: &[&[u8]] = &[
            b".\r\n",
            b".\r\nQUIT\r\n",
            b"Subject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n",
            b"..foo\r\n..\r\n.\r\n\r\n.\r\nMAIL",
            b"a\rb\r\r\n.\r\r\n.\r.\r\n.\r\n",
            b"\x00\xff\r\n.\xfe\r\n.\r\n",
            b"a\n.\r\nb\r\n.\r\nc",
            b"a\r\n.\nb\r\n.\r\n",
            b"\n",
            b"x\r\n..\r\n...\r\n.\r",
            b"12345678901234567890\r\n.\r\nRSET\r\n",
        ];
        samples.iter().map(|s| s.to_vec()).collect()
    }

    #[test]
    fn every_split_point_gives_the_same_result() {
        for message in messages() {
            for max_size in [5, 10, 1000] {
                let whole = decode_chunked(&message, max_size, &[]);
                for cut in 0..=message.len() {
                    assert_eq!(
                        decode_chunked(&message, max_size, &[cut]),
                        whole,
                        "{:?} cut at {cut}",
                        String::from_utf8_lossy(&message)
                    );
                }
                for first in 0..=message.len() {
                    for second in first..=message.len() {
                        assert_eq!(decode_chunked(&message, max_size, &[first, second]), whole);
                    }
                }
                let bytewise: Vec<usize> = (1..message.len()).collect();
                assert_eq!(decode_chunked(&message, max_size, &bytewise), whole);
            }
        }
    }

    #[test]
    fn decoder_is_reusable() {
        let mut decoder = DataDecoder::new(6);
        let mut input = b"a\nb\r\n.\r\n1234\r\n.\r\n1234567\r\n.\r\n.\r\n".to_vec();
        let mut out = Vec::new();
        assert_eq!(decoder.decode(&mut input, &mut out), LF);
        out.clear();
        assert_eq!(decoder.decode(&mut input, &mut out), OK);
        assert_eq!(out, b"1234\r\n");
        assert_eq!(decoder.size(), 0);
        out.clear();
        assert_eq!(decoder.decode(&mut input, &mut out), BIG);
        out.clear();
        assert_eq!(decoder.decode(&mut input, &mut out), OK);
        assert_eq!(out, b"");
        assert!(input.is_empty());
    }

    /// A deliberately naive decoder, written from the RFC rather than for speed, to
    /// compare the real one against.
    fn reference(input: &[u8], max_size: u64) -> (Vec<u8>, Option<DataOutcome>, Vec<u8>) {
        let mut framed = b"\r\n".to_vec();
        framed.extend_from_slice(input);
        let Some(end) = framed.windows(5).position(|w| w == b"\r\n.\r\n") else {
            return (Vec::new(), None, Vec::new());
        };
        // `end` indexes `framed`, which is two bytes longer than `input`.
        let raw = &input[..end];
        let rest = input[end + 3..].to_vec();
        let mut content = Vec::new();
        let mut bare_lf_at = None;
        for (i, &b) in raw.iter().enumerate() {
            let line_start = i == 0 || raw[..i].ends_with(b"\r\n");
            if b == b'.' && line_start {
                continue;
            }
            if b == b'\n' && (i == 0 || raw[i - 1] != b'\r') && bare_lf_at.is_none() {
                bare_lf_at = Some(content.len());
            }
            content.push(b);
        }
        let max = usize::try_from(max_size).unwrap_or(usize::MAX);
        let (content, outcome) = match bare_lf_at {
            Some(at) if at <= max => (content[..at].to_vec(), DataOutcome::BareLf),
            _ if content.len() > max => (content[..max].to_vec(), DataOutcome::TooLarge),
            _ => (content, DataOutcome::Complete),
        };
        (content, Some(outcome), rest)
    }

    /// A small xorshift generator, so the randomised test needs no dependency and
    /// always runs the same inputs.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn matches_reference_on_random_input() {
        let alphabet = b"..\r\r\n\nax\xff";
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let len = rng.below(24);
            let mut input: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect();
            if rng.below(2) == 0 {
                input.extend_from_slice(b"\r\n.\r\nNEXT");
            }
            let max_size = rng.below(20) as u64;
            let whole = decode_chunked(&input, max_size, &[]);
            let expect = reference(&input, max_size);
            if expect.1.is_some() {
                assert_eq!(
                    whole,
                    expect,
                    "{:?} max {max_size}",
                    String::from_utf8_lossy(&input)
                );
            } else {
                assert_eq!(whole.1, None);
            }
            let cuts = [rng.below(input.len() + 1)];
            assert_eq!(decode_chunked(&input, max_size, &cuts), whole);
            let bytewise: Vec<usize> = (1..input.len()).collect();
            assert_eq!(decode_chunked(&input, max_size, &bytewise), whole);
        }
    }

    #[test]
    fn replies() {
        assert_eq!(DataOutcome::Complete.reply(), None);
        assert_eq!(
            DataOutcome::TooLarge.reply().unwrap().to_string(),
            "552 5.3.4 Message size exceeds fixed maximum message size\r\n"
        );
        assert_eq!(
            DataOutcome::BareLf.reply().unwrap().to_string(),
            "554 5.6.0 Message contains a bare LF; lines must end with CRLF\r\n"
        );
    }

    #[test]
    fn encoding() {
        let check = |input: &[u8], expect: &[u8], size: u64| {
            let mut out = b"x".to_vec();
            assert_eq!(encode_data(input, &mut out), size, "{input:?}");
            assert_eq!(&out[1..], expect, "{input:?}");
            // What the encoder sends, the decoder gives back with CRLF line ends.
            let mut wire = out[1..].to_vec();
            let mut back = Vec::new();
            let mut decoder = DataDecoder::new(u64::MAX);
            assert_eq!(
                decoder.decode(&mut wire, &mut back),
                Some(DataOutcome::Complete)
            );
            assert_eq!(back.len() as u64, size);
        };
        check(b"", b".\r\n", 0);
        check(b"a\r\n", b"a\r\n.\r\n", 3);
        check(b"a", b"a\r\n.\r\n", 3);
        check(b".\r\n", b"..\r\n.\r\n", 3);
        check(b"a\r\n.b\r\n..\r\n", b"a\r\n..b\r\n...\r\n.\r\n", 11);
        check(b"a.b\r\n", b"a.b\r\n.\r\n", 5);
        check(b"a\nb\n", b"a\r\nb\r\n.\r\n", 6);
        check(b"a\rb", b"a\r\nb\r\n.\r\n", 6);
        check(b"a\n.\n", b"a\r\n..\r\n.\r\n", 6);
        check(b"a\r\r\n", b"a\r\n\r\n.\r\n", 5);
        check(b".", b"..\r\n.\r\n", 3);
    }
}
