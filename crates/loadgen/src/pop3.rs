//! POP3 client: USER/PASS, STAT, then a timed RETR of every message in turn (each reply read
//! to its terminating dot and counted), then QUIT without DELE, so the maildrop is unchanged.

use std::time::{Duration, Instant};

use crate::wire::{Conn, Result};

async fn ok(c: &mut Conn, what: &str) -> Result<()> {
    c.read_line().await?;
    if !c.line.starts_with(b"+OK") {
        return Err(format!("{what}: {:?}", c.line_str()));
    }
    Ok(())
}

pub struct Outcome {
    pub seconds: f64,
    pub messages: u64,
    pub octets: u64,
}

pub async fn retr_all(
    addr: &str,
    user: &str,
    pass: &str,
    expect: Option<u64>,
    timeout: Duration,
) -> Result<Outcome> {
    let mut c = Conn::connect(addr, timeout).await?;
    ok(&mut c, "greeting").await?;
    c.send(format!("USER {user}\r\n").as_bytes()).await?;
    ok(&mut c, "USER").await?;
    c.send(format!("PASS {pass}\r\n").as_bytes()).await?;
    ok(&mut c, "PASS").await?;
    c.send(b"STAT\r\n").await?;
    ok(&mut c, "STAT").await?;
    let count: u64 = c
        .line_str()
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("STAT: {:?}", c.line_str()))?;
    if let Some(want) = expect
        && count != want
    {
        return Err(format!("maildrop has {count} messages, wanted {want}"));
    }
    let t0 = Instant::now();
    let mut octets = 0u64;
    for i in 1..=count {
        c.send(format!("RETR {i}\r\n").as_bytes()).await?;
        ok(&mut c, "RETR").await?;
        let mut got = 0u64;
        loop {
            c.read_line().await?;
            if c.line == b".\r\n" {
                break;
            }
            got += c.line.len() as u64;
        }
        if got == 0 {
            return Err(format!("RETR {i}: empty message"));
        }
        octets += got;
    }
    let seconds = t0.elapsed().as_secs_f64();
    c.send(b"QUIT\r\n").await?;
    ok(&mut c, "QUIT").await?;
    Ok(Outcome {
        seconds,
        messages: count,
        octets,
    })
}
