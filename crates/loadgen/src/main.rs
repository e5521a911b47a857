//! `loadgen`: the load generator of `bench/compare`. Raw SMTP, IMAP and POP3 clients that
//! check every reply and print one JSON object of timings on stdout.
//!
//! It is the same binary, with the same messages and the same concurrency, against tegami and
//! against the peer it is compared with, so the client's own cost is the same on both sides.
//! Any refused command, short read or miscount ends the run with exit status 1 and one line
//! on stderr: a failed delivery is a failed run, never a fast one.

mod imap;
mod mail;
mod pop3;
mod smtp;
mod wire;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(
    version,
    about = "Load generator for bench/compare: SMTP, IMAP and POP3, every reply checked, JSON out"
)]
struct Cli {
    /// Seconds a server may stay silent before the run fails.
    #[arg(long, global = true, default_value_t = 300)]
    timeout: u64,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Send N messages over C connections; optionally wait until they are in their Maildirs.
    Smtp {
        #[arg(long)]
        addr: String,
        #[arg(long, short = 'c', default_value_t = 1)]
        connections: usize,
        #[arg(long, short = 'n')]
        messages: u64,
        /// Index of the first message (message i is the same bytes on every run).
        #[arg(long, default_value_t = 0)]
        first: u64,
        /// Comma-separated recipients; message i goes to the (i mod count)th.
        #[arg(long)]
        rcpt: String,
        /// `10k`, or a range `2k-1m` drawn log-uniformly.
        #[arg(long, default_value = "10k")]
        size: String,
        /// Message i with i mod 1000 == 7 carries this word.
        #[arg(long)]
        rare_word: Option<String>,
        /// Send MAIL, RCPT and DATA in one write (RFC 2920).
        #[arg(long)]
        pipelining: bool,
        /// A Maildir to watch (repeatable): after the last 250, the clock runs on until the
        /// Maildirs hold --wait-count messages.
        #[arg(long)]
        wait_maildir: Vec<PathBuf>,
        #[arg(long)]
        wait_count: Option<u64>,
        /// Seconds to wait after the last 250 for the Maildirs to fill.
        #[arg(long, default_value_t = 120)]
        wait_timeout: u64,
    },
    /// FETCH 1:* (BODY.PEEK[]) of INBOX from S sessions started at the same moment.
    ImapFetch {
        #[arg(long)]
        addr: String,
        #[arg(long)]
        user: String,
        #[arg(long)]
        pass: String,
        #[arg(long, default_value_t = 1)]
        sessions: usize,
        /// INBOX must hold exactly this many messages.
        #[arg(long)]
        expect: Option<u64>,
    },
    /// SEARCH TEXT WORD in INBOX, several times in one session.
    ImapSearch {
        #[arg(long)]
        addr: String,
        #[arg(long)]
        user: String,
        #[arg(long)]
        pass: String,
        #[arg(long)]
        word: String,
        #[arg(long, default_value_t = 1)]
        runs: usize,
        /// The number of hits the search must return.
        #[arg(long)]
        expect_hits: Option<u64>,
    },
    /// STATUS INBOX (MESSAGES) for each user (comma-separated); prints the counts.
    ImapStatus {
        #[arg(long)]
        addr: String,
        #[arg(long)]
        user: String,
        #[arg(long)]
        pass: String,
    },
    /// RETR of every message in the maildrop, one after the other, in one session.
    Pop3 {
        #[arg(long)]
        addr: String,
        #[arg(long)]
        user: String,
        #[arg(long)]
        pass: String,
        #[arg(long)]
        expect: Option<u64>,
    },
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let k = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[k.min(sorted.len() - 1)]
}

fn ms(s: f64) -> f64 {
    (s * 1e6).round() / 1e3
}

async fn run(cli: Cli) -> Result<Value, String> {
    let timeout = Duration::from_secs(cli.timeout);
    match cli.cmd {
        Cmd::Smtp {
            addr,
            connections,
            messages,
            first,
            rcpt,
            size,
            rare_word,
            pipelining,
            wait_maildir,
            wait_count,
            wait_timeout,
        } => {
            let sizes = mail::Sizes::parse(&size)?;
            let factory = mail::Factory::new(sizes, rare_word);
            let rcpts: Vec<String> = rcpt
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            let job = smtp::Job {
                addr,
                connections,
                messages,
                first,
                rcpts,
                pipelining,
                timeout,
            };
            let t0 = Instant::now();
            let out = smtp::run(job, factory).await?;
            // The send clock started after every connection was greeted; so does this one.
            let greet = t0.elapsed().as_secs_f64() - out.sent_seconds;
            let mut delivered = out.sent_seconds;
            let mut in_maildirs = None;
            if let Some(want) = wait_count {
                loop {
                    let n = smtp::maildir_count(&wait_maildir);
                    if n >= want {
                        delivered = t0.elapsed().as_secs_f64() - greet;
                        in_maildirs = Some(n);
                        break;
                    }
                    if t0.elapsed()
                        > Duration::from_secs_f64(greet + out.sent_seconds + wait_timeout as f64)
                    {
                        return Err(format!("only {n} of {want} messages reached the Maildirs"));
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            let mut lat = out.latencies;
            lat.sort_by(f64::total_cmp);
            let mean = lat.iter().sum::<f64>() / lat.len().max(1) as f64;
            Ok(json!({
                "workload": "smtp",
                "connections": connections,
                "messages": messages,
                "bytes": out.bytes,
                "pipelining": pipelining,
                "sent_seconds": out.sent_seconds,
                "delivered_seconds": delivered,
                "in_maildirs": in_maildirs,
                "messages_per_sec": messages as f64 / delivered,
                "latency_ms": {
                    "p50": ms(percentile(&lat, 50.0)),
                    "p90": ms(percentile(&lat, 90.0)),
                    "p99": ms(percentile(&lat, 99.0)),
                    "max": ms(lat.last().copied().unwrap_or(0.0)),
                    "mean": ms(mean),
                },
            }))
        }
        Cmd::ImapFetch {
            addr,
            user,
            pass,
            sessions,
            expect,
        } => {
            let out = imap::fetch(&addr, &user, &pass, sessions, expect, timeout).await?;
            Ok(json!({
                "workload": "imap_fetch",
                "sessions": sessions,
                "wall_seconds": out.wall_seconds,
                "session_seconds": out.session_seconds,
                "messages": out.messages,
                "octets": out.octets,
                "mb_per_sec": out.octets as f64 / 1e6 / out.wall_seconds,
            }))
        }
        Cmd::ImapSearch {
            addr,
            user,
            pass,
            word,
            runs,
            expect_hits,
        } => {
            let (times, hits) = imap::search(&addr, &user, &pass, &word, runs, timeout).await?;
            if let Some(want) = expect_hits
                && hits != want
            {
                return Err(format!("SEARCH TEXT {word}: {hits} hits, wanted {want}"));
            }
            Ok(json!({
                "workload": "imap_search",
                "word": word,
                "hits": hits,
                "seconds": times,
            }))
        }
        Cmd::ImapStatus { addr, user, pass } => {
            let mut counts = serde_json::Map::new();
            for u in user.split(',') {
                counts.insert(
                    u.to_string(),
                    json!(imap::status(&addr, u, &pass, timeout).await?),
                );
            }
            Ok(json!({ "workload": "imap_status", "messages": counts }))
        }
        Cmd::Pop3 {
            addr,
            user,
            pass,
            expect,
        } => {
            let out = pop3::retr_all(&addr, &user, &pass, expect, timeout).await?;
            Ok(json!({
                "workload": "pop3_retr",
                "seconds": out.seconds,
                "messages": out.messages,
                "octets": out.octets,
                "mb_per_sec": out.octets as f64 / 1e6 / out.seconds,
            }))
        }
    }
}

fn main() {
    let cli = Cli::parse();
    // One thread: the client must leave the machine's cores to the server it measures, and
    // one core parses replies far faster than either server produces them.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(v) => println!("{v}"),
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(1);
        }
    }
}
