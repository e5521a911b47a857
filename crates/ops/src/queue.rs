//! The operator's view of the outbound queue, and its levers: list, show, retry, remove,
//! flush. They change only the database, so they work with the server up or down; a
//! running server sees a retried or flushed message at its next look at the queue (within
//! a second).

use serde::Serialize;
use store::{QueueId, QueuedMessage, QueuedRecipient, RecipientState};

use crate::{Ops, Result};

/// The queue as it stands at `now`.
#[derive(Debug, Clone)]
pub struct QueueListing {
    /// Unix seconds: when the listing was taken, for ages and waits.
    pub now: i64,
    pub messages: Vec<QueuedMessage>,
}

impl QueueListing {
    /// `queue list --json`: one object per message.
    pub fn report(&self) -> Vec<MessageReport<'_>> {
        self.messages
            .iter()
            .map(|m| MessageReport::new(m, self.now, None))
            .collect()
    }
}

/// One queued message, with the header block of its body.
#[derive(Debug, Clone)]
pub struct QueueEntry {
    pub now: i64,
    pub message: QueuedMessage,
    /// The header block as text (empty when the body cannot be read).
    pub headers: String,
}

impl QueueEntry {
    /// `queue show --json`.
    pub fn report(&self) -> MessageReport<'_> {
        MessageReport::new(&self.message, self.now, Some(&self.headers))
    }
}

/// A queued message as the JSON of `queue list` and `queue show` gives it.
#[derive(Debug, Serialize)]
pub struct MessageReport<'a> {
    pub id: i64,
    pub sender: &'a str,
    pub size: u64,
    pub created: i64,
    pub age_seconds: i64,
    pub recipients: Vec<RecipientReport<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct RecipientReport<'a> {
    pub id: i64,
    pub address: &'a str,
    pub state: &'static str,
    pub attempts: u32,
    pub next_attempt: i64,
    pub last_reason: Option<&'a str>,
    pub last_error: Option<&'a str>,
    pub delay_notified: bool,
}

impl<'a> MessageReport<'a> {
    fn new(message: &'a QueuedMessage, now: i64, headers: Option<&'a str>) -> Self {
        MessageReport {
            id: message.id.0,
            sender: &message.sender,
            size: message.size,
            created: message.created,
            age_seconds: now - message.created,
            recipients: message
                .recipients
                .iter()
                .map(|r| RecipientReport {
                    id: r.id.0,
                    address: &r.address,
                    state: state_name(r.state),
                    attempts: r.attempts,
                    next_attempt: r.next_attempt,
                    last_reason: r.last_reason.as_deref(),
                    last_error: r.last_error.as_deref(),
                    delay_notified: r.delay_notified,
                })
                .collect(),
            headers,
        }
    }
}

/// The name of a recipient's state in the JSON.
pub fn state_name(state: RecipientState) -> &'static str {
    match state {
        RecipientState::Queued => "queued",
        RecipientState::Delivered => "delivered",
        RecipientState::Failed => "failed",
    }
}

/// The recipients of a message still waiting for delivery.
pub fn waiting(message: &QueuedMessage) -> impl Iterator<Item = &QueuedRecipient> {
    message
        .recipients
        .iter()
        .filter(|r| r.state == RecipientState::Queued)
}

impl Ops {
    pub fn queue_list(&self) -> Result<QueueListing> {
        Ok(QueueListing {
            now: self.clock().unix(),
            messages: self.store().queue_list()?,
        })
    }

    pub fn queue_show(&self, id: i64) -> Result<QueueEntry> {
        let store = self.store();
        let message = store.queue_get(QueueId(id))?;
        let headers = store
            .queue_body(QueueId(id))
            .map(|body| header_block(&body))
            .unwrap_or_default();
        Ok(QueueEntry {
            now: self.clock().unix(),
            message,
            headers,
        })
    }

    /// Makes one message's waiting recipients due now; returns how many.
    pub fn queue_retry(&self, id: i64) -> Result<u64> {
        let store = self.store();
        let changed = store.queue_retry(Some(QueueId(id)), self.clock().unix())?;
        if changed == 0 {
            // Present but with nobody waiting cannot happen (settled messages leave the
            // queue), so zero means the id is unknown: the store says so.
            store.queue_get(QueueId(id))?;
        }
        Ok(changed)
    }

    /// Drops one message from the queue, without a bounce.
    pub fn queue_remove(&self, id: i64) -> Result<()> {
        Ok(self.store().queue_remove(QueueId(id))?)
    }

    /// Makes every waiting recipient due now; returns how many.
    pub fn queue_flush(&self) -> Result<u64> {
        Ok(self.store().queue_retry(None, self.clock().unix())?)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_block_ends_at_the_empty_line() {
        let body = b"From: a@b\r\nSubject: hi\r\n\r\nbody\r\n";
        assert_eq!(header_block(body), "From: a@b\nSubject: hi\n");
    }
}
