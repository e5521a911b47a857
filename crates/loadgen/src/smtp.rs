//! SMTP sender: C connections, each sending its share of N messages in turn, every reply checked.
//!
//! With `pipelining`, MAIL, RCPT and DATA go out in one write (RFC 2920) and their three
//! replies are read together; without it each command waits for its reply, as smtplib does.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::mail::Factory;
use crate::wire::{Conn, Result};

pub struct Job {
    pub addr: String,
    pub connections: usize,
    pub messages: u64,
    /// Index of the first message: runs that must not repeat messages start further on.
    pub first: u64,
    pub rcpts: Vec<String>,
    pub pipelining: bool,
    pub timeout: Duration,
}

pub struct Outcome {
    pub sent_seconds: f64,
    pub bytes: u64,
    /// One latency per message, from MAIL to the final 250, in seconds.
    pub latencies: Vec<f64>,
}

/// Reads one (possibly multi-line) reply and fails unless its code is `want`.
async fn expect(c: &mut Conn, want: &str, what: &str) -> Result<()> {
    loop {
        c.read_line().await?;
        if c.line.len() < 4 || !c.line[..3].iter().all(u8::is_ascii_digit) {
            return Err(format!("{what}: malformed reply {:?}", c.line_str()));
        }
        if c.line[3] == b'-' {
            continue;
        }
        if &c.line[..3] != want.as_bytes() {
            return Err(format!("{what}: wanted {want}, got {:?}", c.line_str()));
        }
        return Ok(());
    }
}

async fn connection(
    job: Arc<Job>,
    factory: Arc<Factory>,
    index: usize,
    start: Arc<tokio::sync::Barrier>,
) -> Result<(u64, Vec<f64>)> {
    let mut c = Conn::connect(&job.addr, job.timeout).await?;
    expect(&mut c, "220", "greeting").await?;
    c.send(b"EHLO bench.test\r\n").await?;
    expect(&mut c, "250", "EHLO").await?;
    start.wait().await;
    let mut bytes = 0u64;
    let mut lat = Vec::new();
    let mut i = job.first + index as u64;
    while i < job.first + job.messages {
        let rcpt = &job.rcpts[(i % job.rcpts.len() as u64) as usize];
        let msg = factory.message(i, rcpt);
        let t0 = Instant::now();
        let mail = b"MAIL FROM:<load@bench.test>\r\n";
        let rcpt_cmd = format!("RCPT TO:<{rcpt}>\r\n");
        if job.pipelining {
            c.write(mail).await?;
            c.write(rcpt_cmd.as_bytes()).await?;
            c.send(b"DATA\r\n").await?;
            expect(&mut c, "250", "MAIL").await?;
            expect(&mut c, "250", "RCPT").await?;
            expect(&mut c, "354", "DATA").await?;
        } else {
            c.send(mail).await?;
            expect(&mut c, "250", "MAIL").await?;
            c.send(rcpt_cmd.as_bytes()).await?;
            expect(&mut c, "250", "RCPT").await?;
            c.send(b"DATA\r\n").await?;
            expect(&mut c, "354", "DATA").await?;
        }
        c.write(&msg).await?;
        c.send(b".\r\n").await?;
        expect(&mut c, "250", "end of data").await?;
        lat.push(t0.elapsed().as_secs_f64());
        bytes += msg.len() as u64;
        i += job.connections as u64;
    }
    c.send(b"QUIT\r\n").await?;
    expect(&mut c, "221", "QUIT").await?;
    Ok((bytes, lat))
}

pub async fn run(job: Job, factory: Factory) -> Result<Outcome> {
    if job.connections == 0 || job.rcpts.is_empty() {
        return Err("need at least one connection and one recipient".into());
    }
    let job = Arc::new(job);
    let factory = Arc::new(factory);
    // Every connection is open and greeted before the clock starts.
    let start = Arc::new(tokio::sync::Barrier::new(job.connections + 1));
    let mut tasks = Vec::new();
    for index in 0..job.connections {
        tasks.push(tokio::spawn(connection(
            job.clone(),
            factory.clone(),
            index,
            start.clone(),
        )));
    }
    start.wait().await;
    let t0 = Instant::now();
    let mut out = Outcome {
        sent_seconds: 0.0,
        bytes: 0,
        latencies: Vec::new(),
    };
    let mut errors = Vec::new();
    for (k, t) in tasks.into_iter().enumerate() {
        match t.await {
            Ok(Ok((b, lat))) => {
                out.bytes += b;
                out.latencies.extend(lat);
            }
            Ok(Err(e)) => errors.push(format!("connection {k}: {e}")),
            Err(e) => errors.push(format!("connection {k}: {e}")),
        }
    }
    out.sent_seconds = t0.elapsed().as_secs_f64();
    if !errors.is_empty() {
        // A connection that failed before the barrier would leave the others waiting; the
        // timeouts end them, and the first errors say why.
        errors.truncate(3);
        return Err(errors.join("; "));
    }
    if out.latencies.len() as u64 != job.messages {
        return Err(format!(
            "{} messages acknowledged, wanted {}",
            out.latencies.len(),
            job.messages
        ));
    }
    Ok(out)
}

/// Messages in the Maildirs (`new` and `cur`): what a delivery agent has finished writing.
pub fn maildir_count(dirs: &[PathBuf]) -> u64 {
    let mut n = 0;
    for d in dirs {
        for sub in ["new", "cur"] {
            if let Ok(rd) = std::fs::read_dir(d.join(sub)) {
                n += rd.filter(|e| e.is_ok()).count() as u64;
            }
        }
    }
    n
}
