//! `tegami queue`: the operator's view of the outbound queue, and its levers.
//!
//! The commands change only the database, so they work with the server up or down; a
//! running server sees a retried or flushed message at its next look at the queue (within
//! a second).

use std::path::Path;
use std::process::ExitCode;
use store::prelude::*;

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;
use store::{QueueId, QueuedMessage, RecipientState, SqliteStore};

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

pub fn run(data: &Path, command: QueueCommand) -> anyhow::Result<ExitCode> {
    let store = SqliteStore::open(data)
        .with_context(|| format!("cannot open the store in {}", data.display()))?;
    let now = gate::Clock::system().map_err(anyhow::Error::msg)?.unix();
    match command {
        QueueCommand::List { json } => {
            let queue = store.queue_list()?;
            if json {
                let list: Vec<_> = queue.iter().map(|m| to_json(m, now)).collect();
                println!("{}", serde_json::Value::Array(list));
            } else if queue.is_empty() {
                println!("the queue is empty");
            } else {
                print_list(&queue, now);
            }
        }
        QueueCommand::Show { id, json } => {
            let message = store.queue_get(QueueId(id))?;
            let headers = store
                .queue_body(QueueId(id))
                .map(|body| header_block(&body))
                .unwrap_or_default();
            if json {
                let mut value = to_json(&message, now);
                value["headers"] = json!(headers);
                println!("{value}");
            } else {
                print_one(&message, &headers, now);
            }
        }
        QueueCommand::Retry { id } => {
            let changed = store.queue_retry(Some(QueueId(id)), now)?;
            if changed == 0 {
                // Present but with nobody waiting cannot happen (settled messages leave the
                // queue), so zero means the id is unknown.
                store.queue_get(QueueId(id))?;
            }
            println!("message {id}: {changed} recipient(s) due now");
        }
        QueueCommand::Remove { id } => {
            store.queue_remove(QueueId(id))?;
            println!("message {id} removed from the queue (no bounce sent)");
        }
        QueueCommand::Flush => {
            let changed = store.queue_retry(None, now)?;
            println!("{changed} recipient(s) due now");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn waiting(message: &QueuedMessage) -> impl Iterator<Item = &store::QueuedRecipient> {
    message
        .recipients
        .iter()
        .filter(|r| r.state == RecipientState::Queued)
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

fn to_json(message: &QueuedMessage, now: i64) -> serde_json::Value {
    let recipients: Vec<_> = message
        .recipients
        .iter()
        .map(|r| {
            json!({
                "id": r.id.0,
                "address": r.address,
                "state": match r.state {
                    RecipientState::Queued => "queued",
                    RecipientState::Delivered => "delivered",
                    RecipientState::Failed => "failed",
                },
                "attempts": r.attempts,
                "next_attempt": r.next_attempt,
                "last_reason": r.last_reason,
                "last_error": r.last_error,
                "delay_notified": r.delay_notified,
            })
        })
        .collect();
    json!({
        "id": message.id.0,
        "sender": message.sender,
        "size": message.size,
        "created": message.created,
        "age_seconds": now - message.created,
        "recipients": recipients,
    })
}

/// The header block of a message (up to the first empty line), as text.
fn header_block(body: &[u8]) -> String {
    let end = body
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 2)
        .unwrap_or(body.len().min(64 * 1024));
    String::from_utf8_lossy(&body[..end]).replace("\r\n", "\n")
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

    #[test]
    fn the_header_block_ends_at_the_empty_line() {
        let body = b"From: a@b\r\nSubject: hi\r\n\r\nbody\r\n";
        assert_eq!(header_block(body), "From: a@b\nSubject: hi\n");
    }
}
