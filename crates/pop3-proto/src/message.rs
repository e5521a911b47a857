//! Messages on the wire: byte-stuffed RETR and TOP bodies, their sizes, and UIDL unique-ids.
//!
//! Stored messages are raw bytes exactly as they were delivered: usually CRLF-terminated,
//! but a message imported from an mbox or written by a careless filter may use bare LF, and
//! its last line may lack a line ending. POP3 needs CRLF lines and a lone "." as terminator,
//! so the writers here repair both on the fly instead of trusting the store.

/// Writes a stored message as a POP3 multi-line body: byte-stuffs lines starting with ".",
/// turns any bare LF into CRLF, makes sure the last line ends with CRLF, then writes the
/// ".\r\n" terminator.
///
/// The "+OK" status line is the caller's to write first. A bare CR not followed by LF is
/// passed through unchanged: it is not a line break in POP3, so it cannot end the response,
/// and changing it would alter the message.
pub fn write_message(msg: &[u8], out: &mut Vec<u8>) {
    // Converted line endings and stuffed dots make the output a little larger than the
    // input; a sixteenth covers bare-LF messages with lines of sixteen bytes or more, so
    // a multi-megabyte body is normally copied without the buffer being reallocated.
    out.reserve(msg.len() + msg.len() / 16 + 5);
    write_stuffed(msg, out);
    out.extend_from_slice(b".\r\n");
}

/// TOP: the header, the blank line, and at most `lines` lines of the body, stuffed and
/// terminated the same way as [`write_message`].
///
/// A message without a blank line is all header, so it is sent whole whatever `lines` is.
pub fn write_top(msg: &[u8], lines: u32, out: &mut Vec<u8>) {
    write_message(&msg[..top_end(msg, lines)], out);
}

/// The size of a message as [`write_message`] sends it, before byte-stuffing and without
/// the terminator: the figure STAT and LIST report (RFC 1939 counts the message with CRLF
/// line endings, and clients compare it with what RETR delivers).
pub fn wire_size(msg: &[u8]) -> u64 {
    let mut size = msg.len() as u64;
    let mut pos = 0;
    while let Some(offset) = find_lf(&msg[pos..]) {
        let lf = pos + offset;
        if lf == 0 || msg[lf - 1] != b'\r' {
            size += 1;
        }
        pos = lf + 1;
    }
    size + match msg.last() {
        None | Some(b'\n') => 0,
        Some(b'\r') => 1,
        Some(_) => 2,
    }
}

/// Whether `id` is a valid UIDL unique-id (RFC 1939 section 7): 1 to 70 characters, each
/// printable ASCII other than space (0x21 to 0x7E).
///
/// Meant for the caller's debug assertions: ids come from the store, and one that breaks
/// these rules would corrupt the UIDL listing rather than fail loudly.
pub fn valid_unique_id(id: &str) -> bool {
    (1..=70).contains(&id.len()) && id.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

fn find_lf(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

/// Copies `msg` to `out` with CRLF line endings and leading dots doubled.
///
/// The work is done per line ending rather than per byte: runs of bytes that need no change
/// are copied with one `extend_from_slice`, and only a bare LF or a line starting with "."
/// interrupts a run. A CRLF-terminated message without such lines is copied in one go.
fn write_stuffed(msg: &[u8], out: &mut Vec<u8>) {
    let Some(&last) = msg.last() else {
        return;
    };
    if msg[0] == b'.' {
        out.push(b'.');
    }
    // `run` is where the bytes not yet copied to `out` begin.
    let mut run = 0;
    let mut pos = 0;
    while let Some(offset) = find_lf(&msg[pos..]) {
        let lf = pos + offset;
        if lf == 0 || msg[lf - 1] != b'\r' {
            out.extend_from_slice(&msg[run..lf]);
            out.extend_from_slice(b"\r\n");
            run = lf + 1;
        }
        if msg.get(lf + 1) == Some(&b'.') {
            out.extend_from_slice(&msg[run..=lf]);
            out.push(b'.');
            run = lf + 1;
        }
        pos = lf + 1;
    }
    out.extend_from_slice(&msg[run..]);
    // The terminator must start a line of its own, so an unterminated last line is ended
    // here. A trailing CR is taken as half of the missing CRLF rather than kept as a stray.
    match last {
        b'\n' => {}
        b'\r' => out.push(b'\n'),
        _ => out.extend_from_slice(b"\r\n"),
    }
}

/// Where TOP's output ends in `msg`: after the header's blank line and `lines` more lines.
fn top_end(msg: &[u8], lines: u32) -> usize {
    let mut pos = 0;
    // The header runs up to and including the first empty line, whichever line ending it
    // uses.
    loop {
        let Some(offset) = find_lf(&msg[pos..]) else {
            return msg.len();
        };
        let line = &msg[pos..pos + offset];
        pos += offset + 1;
        if line.is_empty() || line == b"\r" {
            break;
        }
    }
    for _ in 0..lines {
        let Some(offset) = find_lf(&msg[pos..]) else {
            // Fewer lines than asked for: the whole body, including an unterminated last
            // line, which write_message then ends properly.
            return msg.len();
        };
        pos += offset + 1;
    }
    pos
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(bytes: &[u8]) -> String {
        bytes.escape_ascii().to_string()
    }

    fn check(input: &[u8], expect: &[u8]) {
        let mut out = b"+OK\r\n".to_vec();
        write_message(input, &mut out);
        assert_eq!(show(&out[5..]), show(expect), "input {}", show(input));
        // The size reported by LIST is what RETR sends, minus stuffing and terminator.
        assert_eq!(
            wire_size(input),
            unstuff(&out[5..]).len() as u64,
            "size of {}",
            show(input)
        );
    }

    fn check_top(input: &[u8], lines: u32, expect: &[u8]) {
        let mut out = Vec::new();
        write_top(input, lines, &mut out);
        assert_eq!(show(&out), show(expect), "TOP {lines} of {}", show(input));
    }

    /// Reverses byte-stuffing: what a client does with a multi-line response. Panics if the
    /// response is malformed, so the tests also check the framing.
    fn unstuff(wire: &[u8]) -> Vec<u8> {
        let body = wire
            .strip_suffix(b".\r\n")
            .unwrap_or_else(|| panic!("no terminator in {}", show(wire)));
        assert!(
            body.is_empty() || body.ends_with(b"\r\n"),
            "terminator not on its own line in {}",
            show(wire)
        );
        let mut plain = Vec::with_capacity(body.len());
        for line in body.split_inclusive(|&b| b == b'\n') {
            assert!(line.ends_with(b"\r\n"), "bare LF in {}", show(wire));
            match line.strip_prefix(b".") {
                // A stuffed line starts with two dots; a single one would end the response.
                Some(rest) => {
                    assert!(rest.starts_with(b"."), "unstuffed dot in {}", show(wire));
                    plain.extend_from_slice(rest);
                }
                None => plain.extend_from_slice(line),
            }
        }
        plain
    }

    /// A deliberately naive reference for what a message should look like on the wire
    /// before stuffing: CRLF everywhere, last line terminated.
    fn normalize(msg: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, &b) in msg.iter().enumerate() {
            if b == b'\n' && (i == 0 || msg[i - 1] != b'\r') {
                out.push(b'\r');
            }
            out.push(b);
        }
        match out.last() {
            None | Some(b'\n') => {}
            Some(b'\r') => out.push(b'\n'),
            Some(_) => out.extend_from_slice(b"\r\n"),
        }
        out
    }

    #[test]
    fn stuffing_and_line_endings() {
        let cases: &[(&[u8], &[u8])] = &[
            // Empty message: just the terminator.
            (b"", b".\r\n"),
            // CRLF, LF and missing final line endings.
            (b"a", b"a\r\n.\r\n"),
            (b"a\r\n", b"a\r\n.\r\n"),
            (b"a\n", b"a\r\n.\r\n"),
            (b"a\nb", b"a\r\nb\r\n.\r\n"),
            (b"a\r\nb\nc\r\nd", b"a\r\nb\r\nc\r\nd\r\n.\r\n"),
            (b"\n", b"\r\n.\r\n"),
            (b"\r\n", b"\r\n.\r\n"),
            (b"\n\n", b"\r\n\r\n.\r\n"),
            (b"\n\r\n\n", b"\r\n\r\n\r\n.\r\n"),
            // A trailing CR completes the missing CRLF; other CRs stay as they are.
            (b"\r", b"\r\n.\r\n"),
            (b"a\r", b"a\r\n.\r\n"),
            (b"a\rb", b"a\rb\r\n.\r\n"),
            (b"a\r\r\n", b"a\r\r\n.\r\n"),
            (b"a\r\rb\r\n", b"a\r\rb\r\n.\r\n"),
            // Lines starting with a dot get another one.
            (b".", b"..\r\n.\r\n"),
            (b".\r\n", b"..\r\n.\r\n"),
            (b"..", b"...\r\n.\r\n"),
            (b"..x\r\n", b"...x\r\n.\r\n"),
            (b"a\r\n.\r\nb\r\n", b"a\r\n..\r\nb\r\n.\r\n"),
            (b"a\n.\nb\n", b"a\r\n..\r\nb\r\n.\r\n"),
            (b"a\n.", b"a\r\n..\r\n.\r\n"),
            (b"\n.", b"\r\n..\r\n.\r\n"),
            (b".\n.\n.\n", b"..\r\n..\r\n..\r\n.\r\n"),
            (b".\r\n.\r\n", b"..\r\n..\r\n.\r\n"),
            (b"a\r\n..\r\n...\r\n", b"a\r\n...\r\n....\r\n.\r\n"),
            // The classic terminator in the middle of a body must not end the response.
            (b"x\r\n.\r\n\r\nQUIT\r\n", b"x\r\n..\r\n\r\nQUIT\r\n.\r\n"),
            // Dots elsewhere are left alone, including after a bare CR.
            (b"a.\r\n", b"a.\r\n.\r\n"),
            (b" .\r\n", b" .\r\n.\r\n"),
            (b"a\r.\r\n", b"a\r.\r\n.\r\n"),
            // 8-bit and NUL bytes pass through untouched.
            (
                b"Subject: \xe4\xf6\xfc\r\n\r\n\xff\xfe\x00\x80\r\n",
                b"Subject: \xe4\xf6\xfc\r\n\r\n\xff\xfe\x00\x80\r\n.\r\n",
            ),
            (b"\xff\n.\xff", b"\xff\r\n..\xff\r\n.\r\n"),
        ];
        for (input, expect) in cases {
            check(input, expect);
        }
    }

    #[test]
    fn write_message_appends() {
        let mut out = b"+OK 5 octets\r\n".to_vec();
        write_message(b"hello", &mut out);
        assert_eq!(out, b"+OK 5 octets\r\nhello\r\n.\r\n");
    }

    const MSG: &[u8] =
        b"From: a@example.org\r\nSubject: hi\r\n\r\nline1\r\nline2\r\n.\r\nline4\r\n";

    #[test]
    fn top() {
        let head: &[u8] = b"From: a@example.org\r\nSubject: hi\r\n\r\n";
        check_top(MSG, 0, &[head, b".\r\n"].concat());
        check_top(MSG, 1, &[head, b"line1\r\n.\r\n"].concat());
        check_top(MSG, 2, &[head, b"line1\r\nline2\r\n.\r\n"].concat());
        check_top(MSG, 3, &[head, b"line1\r\nline2\r\n..\r\n.\r\n"].concat());
        let whole = [head, b"line1\r\nline2\r\n..\r\nline4\r\n.\r\n"].concat();
        check_top(MSG, 4, &whole);
        check_top(MSG, 5, &whole);
        check_top(MSG, 1000, &whole);
        check_top(MSG, u32::MAX, &whole);

        // Bare LF: converted in the header, blank line and body alike.
        let lf = b"From: a\nSubject: b\n\nl1\nl2\n";
        check_top(lf, 0, b"From: a\r\nSubject: b\r\n\r\n.\r\n");
        check_top(lf, 1, b"From: a\r\nSubject: b\r\n\r\nl1\r\n.\r\n");
        check_top(lf, 9, b"From: a\r\nSubject: b\r\n\r\nl1\r\nl2\r\n.\r\n");
        // Mixed endings: an LF-only blank line still ends a CRLF header.
        check_top(b"A: b\r\n\nbody\r\n", 0, b"A: b\r\n\r\n.\r\n");
        check_top(b"A: b\n\r\nbody\n", 0, b"A: b\r\n\r\n.\r\n");

        // Header-only messages, with and without the blank line or a final line ending.
        for lines in [0, 5] {
            check_top(
                b"From: a\r\nSubject: b\r\n",
                lines,
                b"From: a\r\nSubject: b\r\n.\r\n",
            );
            check_top(
                b"From: a\r\nSubject: b",
                lines,
                b"From: a\r\nSubject: b\r\n.\r\n",
            );
            check_top(b"From: a\r\n\r\n", lines, b"From: a\r\n\r\n.\r\n");
            check_top(b"From: a\n\n", lines, b"From: a\r\n\r\n.\r\n");
            check_top(b"", lines, b".\r\n");
        }

        // A body without a final line ending gets one when it is reached.
        check_top(b"A: b\r\n\r\nlast", 0, b"A: b\r\n\r\n.\r\n");
        check_top(b"A: b\r\n\r\nlast", 1, b"A: b\r\n\r\nlast\r\n.\r\n");
        check_top(b"A: b\r\n\r\none\r\nlast", 1, b"A: b\r\n\r\none\r\n.\r\n");
        check_top(
            b"A: b\r\n\r\none\r\nlast",
            2,
            b"A: b\r\n\r\none\r\nlast\r\n.\r\n",
        );

        // An empty header: the message starts with its blank line.
        check_top(b"\r\nbody1\r\nbody2\r\n", 0, b"\r\n.\r\n");
        check_top(b"\r\nbody1\r\nbody2\r\n", 1, b"\r\nbody1\r\n.\r\n");

        // A line of whitespace or a lone CR inside the header does not end it.
        check_top(
            b"A: b\r\n \r\nC: d\r\n\r\nx\r\n",
            0,
            b"A: b\r\n \r\nC: d\r\n\r\n.\r\n",
        );
        check_top(
            b"A: b\r\r\nC: d\r\n\r\nx\r\n",
            0,
            b"A: b\r\r\nC: d\r\n\r\n.\r\n",
        );

        // Dots are stuffed in the header and the body; empty body lines count as lines.
        check_top(b".A: b\r\n\r\n.\r\n\r\n.x\r\n", 0, b"..A: b\r\n\r\n.\r\n");
        check_top(
            b"A: b\r\n\r\n.\r\n\r\n.x\r\n",
            2,
            b"A: b\r\n\r\n..\r\n\r\n.\r\n",
        );
        check_top(
            b"A: b\r\n\r\n.\r\n\r\n.x\r\n",
            3,
            b"A: b\r\n\r\n..\r\n\r\n..x\r\n.\r\n",
        );

        // 8-bit bytes in header and body.
        check_top(
            b"Subject: \xe4\r\n\r\n\xff\xfe\r\n\x80\r\n",
            1,
            b"Subject: \xe4\r\n\r\n\xff\xfe\r\n.\r\n",
        );
    }

    /// Unstuffing what write_message wrote gives back a CRLF-terminated message exactly.
    #[test]
    fn round_trip() {
        let messages: &[&[u8]] = &[
            b"",
            b"\r\n",
            b".\r\n",
            b"..\r\n",
            MSG,
            b"From: a\r\n\r\n.\r\n..\r\n...\r\n.x\r\n\r\n",
            b"a\r\r\n.\r\r\n\r\n",
            b"Subject: \xe4\r\n\r\n\xff\x00\r\n.\xff\r\n",
        ];
        for msg in messages {
            let mut out = Vec::new();
            write_message(msg, &mut out);
            assert_eq!(show(&unstuff(&out)), show(msg));
        }
    }

    /// A small deterministic generator, so the randomised tests need no dependency and fail
    /// the same way every time.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        /// A message built from the bytes that matter to the writers, in random order.
        fn message(&mut self, len: usize) -> Vec<u8> {
            const ALPHABET: &[u8] = b"..\r\n\n\nab \xff\x00";
            (0..len)
                .map(|_| ALPHABET[(self.next() % ALPHABET.len() as u64) as usize])
                .collect()
        }
    }

    /// For arbitrary input the output is the normalized message, correctly stuffed: checked
    /// against the naive reference, and the size agrees with what is sent.
    #[test]
    fn random_messages_match_reference() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for round in 0..5000 {
            let msg = rng.message(round % 40);
            let mut out = Vec::new();
            write_message(&msg, &mut out);
            let expected = normalize(&msg);
            assert_eq!(
                show(&unstuff(&out)),
                show(&expected),
                "input {}",
                show(&msg)
            );
            assert_eq!(
                wire_size(&msg),
                expected.len() as u64,
                "input {}",
                show(&msg)
            );

            // Every TOP output is a prefix of the normalized message, cut at a line end.
            let lines = (rng.next() % 5) as u32;
            let mut top = Vec::new();
            write_top(&msg, lines, &mut top);
            let top = unstuff(&top);
            assert!(expected.starts_with(&top), "TOP {lines} of {}", show(&msg));
        }
    }

    /// A multi-megabyte message, as RETR sees in practice, comes out intact.
    #[test]
    fn large_message() {
        let mut msg = b"From: a@example.org\r\nSubject: big\r\n\r\n".to_vec();
        let line = b"aGVsbG8gd29ybGQgaGVsbG8gd29ybGQgaGVsbG8gd29ybGQgaGVsbG8gd29ybGQgaGVsbG8=\r\n";
        while msg.len() < 4 << 20 {
            msg.extend_from_slice(line);
            msg.extend_from_slice(b".leading dot\n");
        }
        let mut out = Vec::new();
        write_message(&msg, &mut out);
        assert_eq!(unstuff(&out), normalize(&msg));
        assert_eq!(wire_size(&msg), normalize(&msg).len() as u64);

        let mut top = Vec::new();
        write_top(&msg, 2, &mut top);
        let expect = [
            b"From: a@example.org\r\nSubject: big\r\n\r\n".as_slice(),
            line,
            b"..leading dot\r\n.\r\n",
        ]
        .concat();
        assert_eq!(show(&top), show(&expect));
    }

    #[test]
    fn unique_ids() {
        let check = |id: &str, expect: bool| {
            assert_eq!(valid_unique_id(id), expect, "{id:?}");
        };
        check("a", true);
        check("whqtswO00WBw418f9t5JxYwZ", true);
        check("!", true);
        check("~", true);
        check("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", true);
        check(&"x".repeat(70), true);
        check(&"x".repeat(71), false);
        check("", false);
        check("a b", false);
        check(" ", false);
        check("a\tb", false);
        check("a\r\n", false);
        check("\x7f", false);
        check("é", false);
        check("\0", false);
    }
}
