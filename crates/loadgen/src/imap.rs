//! IMAP client: LOGIN, EXAMINE, then a timed FETCH 1:* BODY.PEEK[] (literals read and counted),
//! SEARCH TEXT, or STATUS. Every tagged reply must be OK.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::wire::{Conn, Result};

pub struct Session {
    c: Conn,
    tag: u32,
}

/// What one command returned: the untagged lines (literals left out) and the literals' sizes.
#[derive(Default)]
pub struct Reply {
    pub untagged: Vec<String>,
    pub literals: u64,
    pub literal_bytes: u64,
}

/// The literal announced at the end of a line (`{123}\r\n`), if any.
fn literal_len(line: &[u8]) -> Option<usize> {
    let line = line
        .strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\n"))?;
    let line = line.strip_suffix(b"}")?;
    let open = line.iter().rposition(|&b| b == b'{')?;
    let digits = &line[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

impl Session {
    pub async fn login(addr: &str, user: &str, pass: &str, timeout: Duration) -> Result<Self> {
        let mut c = Conn::connect(addr, timeout).await?;
        c.read_line().await?;
        if !c.line.starts_with(b"* OK") {
            return Err(format!("IMAP greeting: {:?}", c.line_str()));
        }
        let mut s = Session { c, tag: 0 };
        s.command(&format!("LOGIN {} {}", quote(user), quote(pass)))
            .await?;
        Ok(s)
    }

    /// Sends one command and reads to its tagged reply, which must be OK.
    pub async fn command(&mut self, cmd: &str) -> Result<Reply> {
        self.tag += 1;
        let tag = format!("a{}", self.tag);
        self.c.send(format!("{tag} {cmd}\r\n").as_bytes()).await?;
        let mut reply = Reply::default();
        let verb = cmd.split(' ').next().unwrap_or("");
        loop {
            self.c.read_line().await?;
            if self.c.line.starts_with(tag.as_bytes()) && self.c.line.get(tag.len()) == Some(&b' ')
            {
                let rest = &self.c.line[tag.len() + 1..];
                if !rest.starts_with(b"OK") {
                    return Err(format!("{verb}: {:?}", self.c.line_str()));
                }
                return Ok(reply);
            }
            // The first line of an untagged response is kept; literals and their tails are counted.
            let mut first = self.c.line_str();
            while let Some(n) = literal_len(&self.c.line) {
                reply.literals += 1;
                reply.literal_bytes += n as u64;
                self.c.skip(n).await?;
                self.c.read_line().await?;
                if first.len() < 200 {
                    first.push_str(" {…}");
                    first.push_str(&self.c.line_str());
                }
            }
            if first.starts_with("* BYE") {
                return Err(format!("{verb}: server said {first:?}"));
            }
            reply.untagged.push(first);
        }
    }

    /// EXAMINE INBOX; returns EXISTS.
    pub async fn examine(&mut self) -> Result<u64> {
        let r = self.command("EXAMINE INBOX").await?;
        r.untagged
            .iter()
            .find_map(|l| {
                l.strip_prefix("* ")
                    .and_then(|l| l.strip_suffix(" EXISTS"))
                    .and_then(|n| n.parse().ok())
            })
            .ok_or_else(|| "EXAMINE INBOX: no EXISTS".to_string())
    }

    pub async fn logout(mut self) -> Result<()> {
        self.tag += 1;
        let tag = format!("a{}", self.tag);
        self.c.send(format!("{tag} LOGOUT\r\n").as_bytes()).await?;
        loop {
            self.c.read_line().await?;
            if self.c.line.starts_with(tag.as_bytes()) {
                return Ok(());
            }
        }
    }
}

pub struct FetchOutcome {
    pub wall_seconds: f64,
    pub session_seconds: Vec<f64>,
    pub messages: u64,
    pub octets: u64,
}

/// `sessions` sessions log in and EXAMINE, then all start FETCH 1:* (BODY.PEEK[]) at once.
pub async fn fetch(
    addr: &str,
    user: &str,
    pass: &str,
    sessions: usize,
    expect: Option<u64>,
    timeout: Duration,
) -> Result<FetchOutcome> {
    let start = Arc::new(tokio::sync::Barrier::new(sessions + 1));
    let mut tasks = Vec::new();
    for _ in 0..sessions {
        let (addr, user, pass, start) = (
            addr.to_string(),
            user.to_string(),
            pass.to_string(),
            start.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let prepared = async {
                let mut s = Session::login(&addr, &user, &pass, timeout).await?;
                let exists = s.examine().await?;
                if let Some(want) = expect
                    && exists != want
                {
                    return Err(format!("INBOX has {exists} messages, wanted {want}"));
                }
                Ok::<_, String>((s, exists))
            }
            .await;
            start.wait().await;
            let (mut s, exists) = prepared?;
            let t0 = Instant::now();
            let r = s.command("FETCH 1:* (BODY.PEEK[])").await?;
            let secs = t0.elapsed().as_secs_f64();
            let fetches = r.untagged.iter().filter(|l| l.contains(" FETCH ")).count() as u64;
            if fetches != exists || r.literals != exists {
                return Err(format!(
                    "FETCH returned {fetches} responses and {} literals for {exists} messages",
                    r.literals
                ));
            }
            s.logout().await?;
            Ok::<_, String>((secs, r.literals, r.literal_bytes))
        }));
    }
    start.wait().await;
    let t0 = Instant::now();
    let mut out = FetchOutcome {
        wall_seconds: 0.0,
        session_seconds: Vec::new(),
        messages: 0,
        octets: 0,
    };
    for t in tasks {
        let (secs, n, bytes) = t.await.map_err(|e| e.to_string())??;
        out.session_seconds.push(secs);
        out.messages += n;
        out.octets += bytes;
    }
    out.wall_seconds = t0.elapsed().as_secs_f64();
    Ok(out)
}

/// SEARCH TEXT `word`, `runs` times in one session; returns each latency and the hit count.
pub async fn search(
    addr: &str,
    user: &str,
    pass: &str,
    word: &str,
    runs: usize,
    timeout: Duration,
) -> Result<(Vec<f64>, u64)> {
    let mut s = Session::login(addr, user, pass, timeout).await?;
    s.examine().await?;
    let mut times = Vec::new();
    let mut hits = None;
    for _ in 0..runs {
        let t0 = Instant::now();
        let r = s.command(&format!("SEARCH TEXT {}", quote(word))).await?;
        times.push(t0.elapsed().as_secs_f64());
        let n: u64 = r
            .untagged
            .iter()
            .filter_map(|l| l.strip_prefix("* SEARCH"))
            .map(|rest| rest.split_whitespace().count() as u64)
            .sum();
        if hits.is_some_and(|h| h != n) {
            return Err("SEARCH answered differently between runs".into());
        }
        hits = Some(n);
    }
    s.logout().await?;
    Ok((times, hits.unwrap_or(0)))
}

/// STATUS INBOX (MESSAGES).
pub async fn status(addr: &str, user: &str, pass: &str, timeout: Duration) -> Result<u64> {
    let mut s = Session::login(addr, user, pass, timeout).await?;
    let r = s.command("STATUS INBOX (MESSAGES)").await?;
    s.logout().await?;
    r.untagged
        .iter()
        .find_map(|l| {
            let i = l.find("MESSAGES ")?;
            l[i + 9..]
                .trim_end_matches(')')
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .ok_or_else(|| "STATUS: no MESSAGES".to_string())
}

#[cfg(test)]
mod tests {
    use super::literal_len;

    #[test]
    fn literal_len_reads_the_announcement_at_the_end_of_a_line() {
        assert_eq!(literal_len(b"* 1 FETCH (BODY[] {10321}\r\n"), Some(10321));
        assert_eq!(literal_len(b"* 1 FETCH (BODY[] {5+}\r\n"), Some(5));
        assert_eq!(literal_len(b"* 1 FETCH (FLAGS ())\r\n"), None);
        assert_eq!(literal_len(b"* OK {x}\r\n"), None);
    }
}
