//! The outbound queue: messages waiting for remote recipients, durable in the database.
//!
//! A queued message is one `queue_messages` row, body inline (schema version 5 says why),
//! and one `queue_recipients` row per remote recipient. The delivery engine asks for what
//! is due, tries it, and settles each recipient it tried; a message leaves the queue in the
//! transaction that settles its last waiting recipient. Notices (DSNs) that an attempt
//! causes are queued in that same transaction, so a bounce is never lost nor sent twice
//! because of a crash between the two.

use std::collections::HashSet;
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};

use super::history::mark_in;
use super::lists::bounce_in;
use super::{SqliteStore, insert_message, now};
use crate::{
    Accepted, AccountId, BouncePolicy, HistoryRef, Notice, Outbound, Outcome, QueueId, QueueStats,
    QueuedMessage, QueuedRecipient, RecipientId, RecipientState, Result, Settlement, StoreError,
    SubscriberId,
};

/// An envelope checked and ready to be written: recipients deduplicated, domains found.
pub(super) struct Envelope {
    sender: String,
    account: Option<AccountId>,
    /// (address as given, lower-case domain), first spelling of each address kept.
    recipients: Vec<(String, String)>,
}

impl Envelope {
    /// `Ok(None)` for an envelope without recipients: there is nothing to queue.
    pub(super) fn new(outbound: &Outbound) -> Result<Option<Envelope>> {
        let mut seen = HashSet::new();
        let mut recipients = Vec::with_capacity(outbound.recipients.len());
        for address in &outbound.recipients {
            let address = address.trim();
            let domain = match address.rsplit_once('@') {
                Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {
                    domain.to_lowercase()
                }
                _ => {
                    return Err(StoreError::Invalid(format!(
                        "'{address}' is not an address a message can be sent to"
                    )));
                }
            };
            if seen.insert(address.to_lowercase()) {
                recipients.push((address.to_string(), domain));
            }
        }
        if recipients.is_empty() {
            return Ok(None);
        }
        Ok(Some(Envelope {
            sender: outbound.sender.trim().to_string(),
            account: outbound.account,
            recipients,
        }))
    }
}

/// Writes one message and its recipients, all due at `now`; `at_most_once` for campaign
/// and step mail (schema version 9).
pub(super) fn insert_queued(
    conn: &Connection,
    envelope: &Envelope,
    body: &[u8],
    now: i64,
    at_most_once: bool,
) -> Result<QueueId> {
    let id: i64 = conn
        .prepare_cached(
            "INSERT INTO queue_messages (sender, account_id, size, created, body)
             VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
        )?
        .query_row(
            params![
                envelope.sender,
                envelope.account.map(|a| a.0),
                body.len() as i64,
                now,
                body
            ],
            |r| r.get(0),
        )?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO queue_recipients (message_id, address, domain, next_attempt, at_most_once)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for (address, domain) in &envelope.recipients {
        insert.execute(params![id, address, domain, now, at_most_once])?;
    }
    Ok(QueueId(id))
}

const MESSAGE_COLUMNS: &str = "id, sender, account_id, size, created";
const RECIPIENT_COLUMNS: &str = "id, address, domain, state, attempts, next_attempt, \
     last_reason, last_error, delay_notified, message_id, at_most_once";

fn message_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<QueuedMessage> {
    Ok(QueuedMessage {
        id: QueueId(row.get(0)?),
        sender: row.get(1)?,
        account: row.get::<_, Option<i64>>(2)?.map(AccountId),
        size: row.get(3)?,
        created: row.get(4)?,
        recipients: Vec::new(),
    })
}

/// A recipient and the id of its message.
fn recipient_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(QueueId, QueuedRecipient)> {
    let state: String = row.get(3)?;
    let state = match state.as_str() {
        "queued" => RecipientState::Queued,
        "delivered" => RecipientState::Delivered,
        "failed" => RecipientState::Failed,
        other => {
            return Err(rusqlite::Error::FromSqlConversionFailure(
                3,
                rusqlite::types::Type::Text,
                format!("unknown recipient state '{other}'").into(),
            ));
        }
    };
    Ok((
        QueueId(row.get(9)?),
        QueuedRecipient {
            id: RecipientId(row.get(0)?),
            address: row.get(1)?,
            domain: row.get(2)?,
            state,
            attempts: row.get(4)?,
            next_attempt: row.get(5)?,
            last_reason: row.get(6)?,
            last_error: row.get(7)?,
            delay_notified: row.get(8)?,
            at_most_once: row.get(10)?,
        },
    ))
}

/// Runs `f` inside one read transaction, so that what it reads describes one moment.
pub(super) fn snapshot<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    conn.execute_batch("BEGIN")?;
    let result = f(conn);
    // A pooled connection must not go back with its transaction still open.
    conn.execute_batch("COMMIT")?;
    result
}

/// One message's envelope, or `None` once it left the queue.
fn message(conn: &Connection, id: QueueId) -> Result<Option<QueuedMessage>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM queue_messages WHERE id = ?1"
        ))?
        .query_row([id.0], message_row)
        .optional()?)
}

/// One message's recipients in the order they were given; only the due ones with `due`.
fn recipients(conn: &Connection, id: QueueId, due: Option<i64>) -> Result<Vec<QueuedRecipient>> {
    let rows = match due {
        Some(now) => conn
            .prepare_cached(&format!(
                "SELECT {RECIPIENT_COLUMNS} FROM queue_recipients
                 WHERE message_id = ?1 AND state = 'queued' AND next_attempt <= ?2
                   AND began IS NULL ORDER BY id"
            ))?
            .query_map(params![id.0, now], recipient_row)?
            .map(|r| r.map(|(_, recipient)| recipient))
            .collect::<rusqlite::Result<_>>()?,
        None => conn
            .prepare_cached(&format!(
                "SELECT {RECIPIENT_COLUMNS} FROM queue_recipients
                 WHERE message_id = ?1 ORDER BY id"
            ))?
            .query_map([id.0], recipient_row)?
            .map(|r| r.map(|(_, recipient)| recipient))
            .collect::<rusqlite::Result<_>>()?,
    };
    Ok(rows)
}

/// A queued message's envelope sender, `None` once it left the queue.
fn sender_of(conn: &Connection, id: QueueId) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT sender FROM queue_messages WHERE id = ?1")?
        .query_row([id.0], |r| r.get(0))
        .optional()?)
}

/// Records what one settlement says about a campaign's or step's mail, inside the
/// settlement's transaction. Only a recipient still waiting counts, so a settlement
/// repeated (or one for a recipient an operator removed) records nothing twice.
fn newsletter_outcome(
    conn: &Connection,
    id: QueueId,
    settlement: &Settlement,
    about: HistoryRef,
    subscriber: SubscriberId,
    policy: BouncePolicy,
    now: i64,
) -> Result<()> {
    let recipient = match settlement {
        Settlement::Delivered { recipient }
        | Settlement::Deferred { recipient, .. }
        | Settlement::Failed { recipient, .. } => *recipient,
    };
    let waiting: Option<i64> = conn
        .prepare_cached(
            "SELECT 1 FROM queue_recipients WHERE id = ?1 AND message_id = ?2 AND state = 'queued'",
        )?
        .query_row(params![recipient.0, id.0], |r| r.get(0))
        .optional()?;
    if waiting.is_none() {
        return Ok(());
    }
    let result = match settlement {
        Settlement::Delivered { .. } => {
            mark_in(conn, about, subscriber, Outcome::Delivered, now).map(drop)
        }
        Settlement::Deferred {
            error,
            delay_notified,
            ..
        } => {
            mark_in(conn, about, subscriber, Outcome::Deferred, now)?;
            // The moment the sender would have been told "delayed" is this mail's soft
            // bounce, as a delay DSN arriving over SMTP would be.
            if *delay_notified {
                bounce_in(conn, about, subscriber, false, Some(error), policy, now).map(drop)
            } else {
                Ok(())
            }
        }
        Settlement::Failed { error, .. } => {
            mark_in(conn, about, subscriber, Outcome::Failed, now)?;
            bounce_in(conn, about, subscriber, true, Some(error), policy, now).map(drop)
        }
    };
    match result {
        // The subscriber was removed since the mail was queued: nothing left to mark, and
        // the queue must still settle.
        Err(StoreError::NotFound { .. }) => Ok(()),
        other => other,
    }
}

fn not_queued(id: QueueId) -> StoreError {
    StoreError::NotFound {
        what: format!("queued message {}", id.0),
    }
}

impl SqliteStore {
    pub(super) fn queue_accept(
        &self,
        message: &[u8],
        local: &[AccountId],
        outbound: Option<&Outbound>,
    ) -> Result<Accepted> {
        let envelope = match outbound {
            Some(outbound) => Envelope::new(outbound)?,
            None => None,
        };
        if local.is_empty() && envelope.is_none() {
            return Err(StoreError::Invalid(
                "a message needs at least one local or remote recipient".into(),
            ));
        }
        // The body is copied once for the writer thread; the Arc keeps a retried write
        // (see `write_message`) from copying it again.
        let queued = envelope.map(|e| Arc::new((e, message.to_vec())));
        let accepted = if local.is_empty() {
            self.write(move |ctx| {
                let (envelope, body) = queued.as_deref().expect("checked above");
                Ok(Accepted {
                    delivered: Vec::new(),
                    queued: Some(insert_queued(ctx.conn, envelope, body, now(), false)?),
                })
            })?
        } else {
            // The local copies take the path of `deliver`: body in the blob store first,
            // then INBOX rows and queue rows in one transaction.
            let local = local.to_vec();
            self.write_message(message, move |ctx, blob, size| {
                let delivered = insert_message(ctx, blob, size, &local)?;
                let queued = match queued.as_deref() {
                    Some((envelope, body)) => {
                        Some(insert_queued(ctx.conn, envelope, body, now(), false)?)
                    }
                    None => None,
                };
                Ok(Accepted { delivered, queued })
            })?
        };
        self.meter
            .delivered(&accepted.delivered, message.len() as u64);
        let changed: Vec<_> = accepted
            .delivered
            .iter()
            .map(|d| (d.account, d.mailbox))
            .collect();
        self.notify(&changed);
        Ok(accepted)
    }

    pub(super) fn queue_due_impl(&self, now: i64, limit: usize) -> Result<Vec<QueuedMessage>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|conn| {
            snapshot(conn, |conn| {
                let due: Vec<i64> = conn
                    .prepare_cached(
                        "SELECT message_id, min(next_attempt) AS due FROM queue_recipients
                         WHERE state = 'queued' AND next_attempt <= ?1 AND began IS NULL
                         GROUP BY message_id ORDER BY due, message_id LIMIT ?2",
                    )?
                    .query_map(params![now, limit], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                let mut out = Vec::with_capacity(due.len());
                for id in due.into_iter().map(QueueId) {
                    if let Some(mut queued) = message(conn, id)? {
                        queued.recipients = recipients(conn, id, Some(now))?;
                        out.push(queued);
                    }
                }
                Ok(out)
            })
        })
    }

    pub(super) fn queue_body_impl(&self, id: QueueId) -> Result<Vec<u8>> {
        self.read(|conn| {
            conn.prepare_cached("SELECT body FROM queue_messages WHERE id = ?1")?
                .query_row([id.0], |r| r.get(0))
                .optional()?
                .ok_or_else(|| not_queued(id))
        })
    }

    pub(super) fn queue_settle_impl(
        &self,
        id: QueueId,
        settled: &[Settlement],
        notices: &[Notice],
    ) -> Result<()> {
        let settled = settled.to_vec();
        // A notice that cannot be queued is dropped with a warning rather than failing the
        // settlement: failing it would leave delivered recipients waiting, and they would
        // be sent the message again.
        let notices: Vec<(Envelope, Vec<u8>)> = notices
            .iter()
            .filter_map(|notice| {
                // Notices always go out with the null sender, so that a notice that cannot
                // be delivered never causes another (RFC 5321 section 6.1).
                let envelope = Outbound {
                    sender: String::new(),
                    ..notice.envelope.clone()
                };
                match Envelope::new(&envelope) {
                    Ok(Some(envelope)) => Some((envelope, notice.message.clone())),
                    Ok(None) => {
                        tracing::warn!(queue = id.0, "a notice without recipients was dropped");
                        None
                    }
                    Err(e) => {
                        tracing::warn!(queue = id.0, error = %e, "a notice was dropped");
                        None
                    }
                }
            })
            .collect();
        let router = self
            .bounce_router
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        self.write(move |ctx| {
            let conn = ctx.conn;
            // Newsletter mail: its outcomes go into the history with the settlement.
            let newsletter = match &router {
                Some(router) => match sender_of(conn, id)? {
                    Some(sender) => router
                        .route(&sender)
                        .map(|(about, subscriber)| (sender, about, subscriber, router.policy())),
                    None => None,
                },
                None => None,
            };
            if let Some((_, about, subscriber, policy)) = &newsletter {
                let now = now();
                for settlement in &settled {
                    newsletter_outcome(conn, id, settlement, *about, *subscriber, *policy, now)?;
                }
            }
            for settlement in &settled {
                // The `message_id` condition keeps a confused caller from settling another
                // message's recipient; a recipient that is gone changes nothing.
                match settlement {
                    Settlement::Delivered { recipient } => conn
                        .prepare_cached(
                            "UPDATE queue_recipients SET state = 'delivered', attempts = attempts + 1,
                                 began = NULL
                             WHERE id = ?1 AND message_id = ?2",
                        )?
                        .execute(params![recipient.0, id.0])?,
                    Settlement::Deferred {
                        recipient,
                        next_attempt,
                        reason,
                        error,
                        delay_notified,
                    } => conn
                        .prepare_cached(
                            "UPDATE queue_recipients SET state = 'queued', attempts = attempts + 1,
                                 next_attempt = ?3, last_reason = ?4, last_error = ?5,
                                 delay_notified = delay_notified OR ?6, began = NULL
                             WHERE id = ?1 AND message_id = ?2",
                        )?
                        .execute(params![
                            recipient.0,
                            id.0,
                            next_attempt,
                            reason,
                            error,
                            delay_notified
                        ])?,
                    Settlement::Failed { recipient, error } => conn
                        .prepare_cached(
                            "UPDATE queue_recipients SET state = 'failed', attempts = attempts + 1,
                                 last_error = ?3, began = NULL
                             WHERE id = ?1 AND message_id = ?2",
                        )?
                        .execute(params![recipient.0, id.0, error])?,
                };
            }
            conn.prepare_cached(
                "DELETE FROM queue_messages WHERE id = ?1 AND NOT EXISTS
                     (SELECT 1 FROM queue_recipients WHERE message_id = ?1 AND state = 'queued')",
            )?
            .execute([id.0])?;
            let now = now();
            for (envelope, body) in &notices {
                // The bounce this notice would carry to a VERP address is counted above;
                // only the SMTP listener reads those addresses, so queued it would fail.
                if let Some((sender, ..)) = &newsletter
                    && envelope
                        .recipients
                        .iter()
                        .all(|(address, _)| address.eq_ignore_ascii_case(sender))
                {
                    continue;
                }
                insert_queued(conn, envelope, body, now, false)?;
            }
            Ok(())
        })
    }

    pub(super) fn queue_begin_impl(
        &self,
        id: QueueId,
        recipients: &[RecipientId],
        now: i64,
    ) -> Result<()> {
        let recipients = recipients.to_vec();
        self.write(move |ctx| {
            let mut mark = ctx.conn.prepare_cached(
                "UPDATE queue_recipients SET began = ?3
                 WHERE id = ?1 AND message_id = ?2 AND state = 'queued' AND at_most_once",
            )?;
            for r in &recipients {
                mark.execute(params![r.0, id.0, now])?;
            }
            Ok(())
        })
    }

    pub(super) fn queue_unfinished_impl(&self, now: i64) -> Result<u64> {
        let router = self
            .bounce_router
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        self.write(move |ctx| {
            let conn = ctx.conn;
            let unfinished: Vec<(i64, i64, String)> = conn
                .prepare(
                    "SELECT r.id, r.message_id, m.sender
                     FROM queue_recipients r JOIN queue_messages m ON m.id = r.message_id
                     WHERE r.state = 'queued' AND r.began IS NOT NULL",
                )?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<_>>()?;
            for (recipient, message, sender) in &unfinished {
                let (recipient, message) = (RecipientId(*recipient), QueueId(*message));
                // Counted in the history as the delivery it most likely was.
                let settlement = Settlement::Delivered { recipient };
                if let Some(router) = &router
                    && let Some((about, subscriber)) = router.route(sender)
                {
                    newsletter_outcome(
                        conn,
                        message,
                        &settlement,
                        about,
                        subscriber,
                        router.policy(),
                        now,
                    )?;
                }
                conn.prepare_cached(
                    "UPDATE queue_recipients SET state = 'delivered', attempts = attempts + 1,
                         began = NULL, last_error = ?2
                     WHERE id = ?1",
                )?
                .execute(params![
                    recipient.0,
                    "outcome unknown: the server stopped during the SMTP transaction; \
                     counted as sent, not sent again (campaign and step mail go at most once)"
                ])?;
                conn.prepare_cached(
                    "DELETE FROM queue_messages WHERE id = ?1 AND NOT EXISTS
                         (SELECT 1 FROM queue_recipients WHERE message_id = ?1 AND state = 'queued')",
                )?
                .execute([message.0])?;
            }
            Ok(unfinished.len() as u64)
        })
    }

    pub(super) fn queue_list_impl(&self) -> Result<Vec<QueuedMessage>> {
        self.read(|conn| {
            snapshot(conn, |conn| {
                let mut messages: Vec<QueuedMessage> = conn
                    .prepare(&format!(
                        "SELECT {MESSAGE_COLUMNS} FROM queue_messages ORDER BY created, id"
                    ))?
                    .query_map([], message_row)?
                    .collect::<rusqlite::Result<_>>()?;
                let index: std::collections::HashMap<QueueId, usize> = messages
                    .iter()
                    .enumerate()
                    .map(|(i, m)| (m.id, i))
                    .collect();
                let mut stmt = conn.prepare(&format!(
                    "SELECT {RECIPIENT_COLUMNS} FROM queue_recipients ORDER BY id"
                ))?;
                for row in stmt.query_map([], recipient_row)? {
                    let (id, recipient) = row?;
                    if let Some(&i) = index.get(&id) {
                        messages[i].recipients.push(recipient);
                    }
                }
                Ok(messages)
            })
        })
    }

    pub(super) fn queue_get_impl(&self, id: QueueId) -> Result<QueuedMessage> {
        self.read(|conn| {
            snapshot(conn, |conn| {
                let mut queued = message(conn, id)?.ok_or_else(|| not_queued(id))?;
                queued.recipients = recipients(conn, id, None)?;
                Ok(queued)
            })
        })
    }

    pub(super) fn queue_retry_impl(&self, id: Option<QueueId>, now: i64) -> Result<u64> {
        self.write(move |ctx| {
            let changed = match id {
                Some(id) => {
                    if message(ctx.conn, id)?.is_none() {
                        return Err(not_queued(id));
                    }
                    ctx.conn
                        .prepare_cached(
                            "UPDATE queue_recipients SET next_attempt = ?2
                             WHERE message_id = ?1 AND state = 'queued' AND next_attempt > ?2",
                        )?
                        .execute(params![id.0, now])?
                }
                None => ctx
                    .conn
                    .prepare_cached(
                        "UPDATE queue_recipients SET next_attempt = ?1
                         WHERE state = 'queued' AND next_attempt > ?1",
                    )?
                    .execute([now])?,
            };
            Ok(changed as u64)
        })
    }

    pub(super) fn queue_remove_impl(&self, id: QueueId) -> Result<()> {
        self.write(move |ctx| {
            // Its recipients go by ON DELETE CASCADE (every connection enforces foreign keys).
            let removed = ctx
                .conn
                .prepare_cached("DELETE FROM queue_messages WHERE id = ?1")?
                .execute([id.0])?;
            if removed == 0 {
                return Err(not_queued(id));
            }
            Ok(())
        })
    }

    pub(super) fn queue_stats_impl(&self) -> Result<QueueStats> {
        self.read(|conn| {
            snapshot(conn, |conn| {
                let (messages, bytes, oldest) = conn.query_row(
                    "SELECT count(*), coalesce(sum(size), 0), min(created) FROM queue_messages",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?;
                let recipients = conn.query_row(
                    "SELECT count(*) FROM queue_recipients WHERE state = 'queued'",
                    [],
                    |r| r.get(0),
                )?;
                let deferred_by_reason = conn
                    .prepare(
                        "SELECT last_reason, count(*) FROM queue_recipients
                         WHERE state = 'queued' AND last_reason IS NOT NULL
                         GROUP BY last_reason ORDER BY last_reason",
                    )?
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()?;
                Ok(QueueStats {
                    messages,
                    recipients,
                    bytes,
                    oldest,
                    deferred_by_reason,
                })
            })
        })
    }

    pub(super) fn sender_addresses_impl(&self, account: AccountId) -> Result<Vec<String>> {
        self.read(|conn| {
            let address: String = conn
                .prepare_cached("SELECT address FROM accounts WHERE id = ?1")?
                .query_row([account.0], |r| r.get(0))
                .optional()?
                .ok_or_else(|| StoreError::NotFound {
                    what: format!("account {}", account.0),
                })?;
            let mut addresses = vec![address.to_lowercase()];
            let aliases: Vec<String> = conn
                .prepare_cached(
                    "SELECT a.address FROM aliases a JOIN alias_targets t ON t.alias_id = a.id
                     WHERE t.target = ?1 ORDER BY a.address",
                )?
                .query_map([&address], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            addresses.extend(aliases.into_iter().map(|a| a.to_lowercase()));
            addresses.dedup();
            Ok(addresses)
        })
    }
}
