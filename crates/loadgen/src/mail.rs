//! The messages the load generator sends: deterministic, plain text, CRLF, never dot-stuffed.
//!
//! Message `i` is the same bytes on every run and against every server, so two servers are
//! always fed identical mail. Bodies are slices of one pre-built text, so building a message
//! costs a copy and not a random-number loop.

/// Every body line is this long including its CRLF; no line starts with a dot.
const LINE: usize = 78;
const WORDS: [&str; 10] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
];

/// A small, seedable generator (xorshift64*): reproducible sizes and text without a crate.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A float in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// How big each message is.
#[derive(Clone, Copy, Debug)]
pub enum Sizes {
    /// Every message this many bytes (give or take the header's length).
    Fixed(usize),
    /// Log-uniform between the two bounds: many small messages, a few large ones.
    LogUniform(usize, usize),
}

impl Sizes {
    pub fn parse(s: &str) -> Result<Self, String> {
        let num = |t: &str| -> Result<usize, String> {
            let t = t.trim();
            let (digits, mult) = match t.chars().last() {
                Some('k' | 'K') => (&t[..t.len() - 1], 1024),
                Some('m' | 'M') => (&t[..t.len() - 1], 1024 * 1024),
                _ => (t, 1),
            };
            digits
                .parse::<usize>()
                .map(|n| n * mult)
                .map_err(|e| format!("bad size {t:?}: {e}"))
        };
        match s.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (num(lo)?, num(hi)?);
                if lo == 0 || hi < lo {
                    return Err(format!("bad size range {s:?}"));
                }
                Ok(Sizes::LogUniform(lo, hi))
            }
            None => Ok(Sizes::Fixed(num(s)?)),
        }
    }

    /// The size of message `i`: a pure function of `i`, so every run draws the same sizes.
    pub fn of(&self, i: u64) -> usize {
        match *self {
            Sizes::Fixed(n) => n,
            Sizes::LogUniform(lo, hi) => {
                let u = Rng::new(i ^ 0x5EED).unit();
                let (l, h) = ((lo as f64).ln(), (hi as f64).ln());
                (l + u * (h - l)).exp() as usize
            }
        }
    }

    pub fn max(&self) -> usize {
        match *self {
            Sizes::Fixed(n) => n,
            Sizes::LogUniform(_, hi) => hi,
        }
    }
}

/// Builds messages from one long text of whole lines.
pub struct Factory {
    text: Vec<u8>,
    lines: usize,
    sizes: Sizes,
    /// Message `i` carries this word when `i % 1000 == 7` (what SEARCH TEXT looks for).
    rare: Option<String>,
}

impl Factory {
    pub fn new(sizes: Sizes, rare: Option<String>) -> Self {
        let lines = sizes.max() / LINE + 2;
        // Twice the largest body, so a body may start at any of the first `lines` lines.
        let mut rng = Rng::new(42);
        let mut text = Vec::with_capacity(2 * lines * LINE);
        for _ in 0..2 * lines {
            let mut line = String::with_capacity(LINE);
            while line.len() < LINE - 2 {
                if !line.is_empty() {
                    line.push(' ');
                }
                line.push_str(WORDS[(rng.next() % WORDS.len() as u64) as usize]);
            }
            line.truncate(LINE - 2);
            line.push_str("\r\n");
            text.extend_from_slice(line.as_bytes());
        }
        Factory {
            text,
            lines,
            sizes,
            rare,
        }
    }

    /// Message `i` to `rcpt`, about `sizes.of(i)` bytes, ending in CRLF.
    pub fn message(&self, i: u64, rcpt: &str) -> Vec<u8> {
        let size = self.sizes.of(i);
        let mut m = format!(
            "Message-ID: <load-{i}@bench.test>\r\nFrom: load@bench.test\r\nTo: {rcpt}\r\n\
             Subject: load {i}\r\nContent-Type: text/plain\r\n\r\n"
        )
        .into_bytes();
        let n_lines = (size.saturating_sub(m.len()) / LINE).max(1);
        let start = (i as usize * 7919) % self.lines;
        m.extend_from_slice(&self.text[start * LINE..(start + n_lines) * LINE]);
        if let Some(word) = &self.rare
            && i % 1000 == 7
        {
            m.extend_from_slice(format!("the rare word {word} is here\r\n").as_bytes());
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_deterministic_crlf_and_never_dot_stuffed() {
        let f = Factory::new(Sizes::parse("2k-1m").unwrap(), Some("quartz".into()));
        for i in [0u64, 7, 1007, 12345] {
            let a = f.message(i, "a@example.com");
            assert_eq!(a, f.message(i, "a@example.com"));
            assert!(a.ends_with(b"\r\n"));
            for line in a.split(|&b| b == b'\n') {
                assert!(!line.starts_with(b"."), "a line starts with a dot");
            }
            let size = Sizes::parse("2k-1m").unwrap().of(i);
            assert!((2048..=1024 * 1024 + 200).contains(&size), "size {size}");
        }
        assert!(String::from_utf8_lossy(&f.message(1007, "a@x")).contains("quartz"));
        assert!(!String::from_utf8_lossy(&f.message(1008, "a@x")).contains("quartz"));
    }

    #[test]
    fn fixed_size_is_close_to_what_was_asked() {
        let f = Factory::new(Sizes::Fixed(10 * 1024), None);
        let n = f.message(3, "bench0@example.com").len();
        assert!((10 * 1024 - LINE..=10 * 1024).contains(&n), "{n}");
    }
}
