//! `tegami queue`: the face of `ops::queue`, the operator's view of the outbound queue and
//! its levers (tables and dates here, everything else there).
//!
//! The commands change only the database, so they work with the server up or down; a
//! running server sees a retried or flushed message at its next look at the queue (within
//! a second).

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;
use ops::Ops;
use ops::config::Config;
use ops::queue::waiting;
use store::{QueuedMessage, RecipientState};

#[derive(Subcommand)]
pub enum QueueCommand {
    /// Every queued message: age, size, sender, recipients waiting, next attempt, last error.
    List {
        /// Machine-readable output (one JSON array).
        #[arg(long)]
        json: bool,
    },
    /// One message: envelope, each recipient's state and last error, and its headers.
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Make one message's waiting recipients due now.
    Retry { id: i64 },
    /// Drop one message from the queue, without a bounce.
    Remove { id: i64 },
    /// Make every waiting recipient due now.
    Flush,
}

pub fn run(data: &Path, config: &Config, command: QueueCommand) -> anyhow::Result<ExitCode> {
    let ops = Ops::open(data, config.clone())?;
    match command {
        QueueCommand::List { json } => {
            let queue = ops.queue_list()?;
            if json {
                println!("{}", serde_json::to_value(queue.report())?);
            } else if queue.messages.is_empty() {
                println!("the queue is empty");
            } else {
                print_list(&queue.messages, queue.now);
            }
        }
        QueueCommand::Show { id, json } => {
            let entry = ops.queue_show(id)?;
            if json {
                println!("{}", serde_json::to_value(entry.report())?);
            } else {
                print_one(&entry.message, &entry.headers, entry.now);
            }
        }
        QueueCommand::Retry { id } => {
            let changed = ops.queue_retry(id)?;
            println!("message {id}: {changed} recipient(s) due now");
        }
        QueueCommand::Remove { id } => {
            ops.queue_remove(id)?;
            println!("message {id} removed from the queue (no bounce sent)");
        }
        QueueCommand::Flush => {
            let changed = ops.queue_flush()?;
            println!("{changed} recipient(s) due now");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_list(queue: &[QueuedMessage], now: i64) {
    println!(
        "{:>8}  {:>7}  {:>9}  {:<32}  {:>7}  {:>9}  LAST ERROR",
        "ID", "AGE", "SIZE", "SENDER", "WAITING", "NEXT IN"
    );
    for message in queue {
        let next = waiting(message).map(|r| r.next_attempt).min();
        let error = waiting(message)
            .filter_map(|r| r.last_error.as_deref())
            .next()
            .unwrap_or("-");
        println!(
            "{:>8}  {:>7}  {:>9}  {:<32}  {:>3}/{:<3}  {:>9}  {}",
            message.id.0,
            span(now - message.created),
            store::human_bytes(message.size),
            sender(&message.sender),
            waiting(message).count(),
            message.recipients.len(),
            next.map(|t| span(t - now)).unwrap_or_else(|| "-".into()),
            one_line(error, 60),
        );
    }
}

fn print_one(message: &QueuedMessage, headers: &str, now: i64) {
    println!("message  {}", message.id.0);
    println!("sender   {}", sender(&message.sender));
    println!(
        "queued   {} ({} ago)",
        date(message.created),
        span(now - message.created)
    );
    println!("size     {}", store::human_bytes(message.size));
    for r in &message.recipients {
        let state = match r.state {
            RecipientState::Queued => format!("waiting, next attempt {}", date(r.next_attempt)),
            RecipientState::Delivered => "delivered".into(),
            RecipientState::Failed => "failed".into(),
        };
        println!(
            "  <{}>  {state}  attempts {}{}",
            r.address,
            r.attempts,
            if r.delay_notified {
                "  (delay notice sent)"
            } else {
                ""
            }
        );
        if let Some(error) = &r.last_error {
            println!("      last error: {}", one_line(error, 200));
        }
    }
    if !headers.is_empty() {
        println!();
        print!("{headers}");
    }
}

fn sender(address: &str) -> String {
    if address.is_empty() {
        "<> (a bounce)".into()
    } else {
        address.to_string()
    }
}

/// A Unix time as the CLI prints it (UTC).
pub(crate) fn date(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| unix.to_string())
}

/// "45s", "12m", "3h05m", "2d04h": short enough for a column.
fn span(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

fn one_line(text: &str, max: usize) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= max {
        line
    } else {
        let cut: String = line.chars().take(max - 1).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_fit_a_column() {
        assert_eq!(span(-5), "0s");
        assert_eq!(span(59), "59s");
        assert_eq!(span(600), "10m");
        assert_eq!(span(3 * 3600 + 5 * 60), "3h05m");
        assert_eq!(span(2 * 86400 + 4 * 3600), "2d04h");
    }
}
