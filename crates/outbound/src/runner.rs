//! The delivery loop: looks at the queue on a wake-up or every `poll`, hands due
//! recipients to per-destination connection workers (or delivers local ones straight
//! into the store), and settles every transaction as soon as it ends.
//!
//! A recipient is claimed in memory from the moment it is handed to a task until its
//! settlement is committed, so that the next look at the queue never sends it twice at
//! once. Nothing about the queue lives only in memory: after a crash the claims are
//! gone and the store's rows say what is still to do.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mail_auth::MessageAuthenticator;
use net::Shutdown;
use smtp_client::{ClientConfig, ClientError, Connection, RcptOutcome, Reply};
use store::{
    AccountId, Notice, Outbound, QueuedMessage, QueuedRecipient, RecipientId, Resolution, Room,
    Settlement, Store, StoreError,
};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::config::{QueueConfig, Routes};
use crate::dkim::DkimKeys;
use crate::dns::{Target, targets};
use crate::dsn::{Dsn, DsnAction, DsnRecipient, build_dsn};
use crate::limits::TokenBucket;
use crate::metrics::{METRICS, Metrics};
use crate::route::{Destination, choose};
use crate::schedule::{Attempt, Before, Failure, Verdict, decide, secs};

/// The delivery engine of the outbound queue. Build it with [`Queue::new`], give
/// [`Queue::waker`] to whatever enqueues, then [`Queue::run`] it.
pub struct Queue {
    shared: Arc<Shared>,
}

struct Shared {
    store: Arc<dyn Store>,
    config: QueueConfig,
    routes: Routes,
    dns: Arc<MessageAuthenticator>,
    dkim: Arc<DkimKeys>,
    clock: gate::Clock,
    waker: Arc<Notify>,
    /// One permit per open connection (well, per connection worker), all destinations.
    connections: Arc<Semaphore>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Recipients handed to a task and not yet settled.
    claimed: HashSet<RecipientId>,
    /// Recipients settled since the current look at the queue began. That look may have
    /// read them as due before their settlement committed, so it must not hand them out
    /// again (that would send a delivered recipient twice). Cleared as each look begins:
    /// what settled before a read is in what it reads.
    cooling: HashSet<RecipientId>,
    destinations: HashMap<String, Dest>,
}

struct Dest {
    destination: Destination,
    jobs: VecDeque<QueuedMessage>,
    workers: usize,
    bucket: TokenBucket,
}

impl Queue {
    pub fn new(
        store: Arc<dyn Store>,
        config: QueueConfig,
        routes: Routes,
        dns: Arc<MessageAuthenticator>,
        dkim: Arc<DkimKeys>,
        clock: gate::Clock,
    ) -> Queue {
        let connections = Arc::new(Semaphore::new(config.concurrency.max(1)));
        Queue {
            shared: Arc::new(Shared {
                store,
                config,
                routes,
                dns,
                dkim,
                clock,
                waker: Arc::new(Notify::new()),
                connections,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Call `notify_one` on it after queueing something, so that delivery starts at
    /// once rather than at the next poll.
    pub fn waker(&self) -> Arc<Notify> {
        self.shared.waker.clone()
    }

    /// Delivers until shutdown is requested. Workers stop between messages; a transaction
    /// under way at shutdown is abandoned unsettled (so it is tried again after a
    /// restart: the documented duplicate window).
    pub async fn run(self, mut shutdown: Shutdown) {
        let shared = self.shared;
        tracing::info!(
            helo = shared.config.helo_name,
            concurrency = shared.config.concurrency,
            per_destination = shared.config.per_destination,
            "outbound queue running"
        );
        // Campaign and step mail whose transaction a crash interrupted: counted as sent
        // before anything is sent, so nobody gets it twice.
        let now = shared.now();
        match shared
            .blocking(move |store| store.queue_unfinished(now))
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                recipients = n,
                "outbound queue: campaign or step mail whose outcome a stop left unknown is counted as sent, not sent again"
            ),
            Err(e) => {
                tracing::error!(error = %e, "outbound queue: cannot settle unfinished transactions")
            }
        }
        loop {
            if shutdown.is_shutting_down() {
                break;
            }
            if let Err(e) = dispatch(&shared, &shutdown).await {
                tracing::error!(error = %e, "outbound queue: cannot read the queue");
            }
            tokio::select! {
                _ = shutdown.requested() => break,
                _ = shared.waker.notified() => {}
                _ = tokio::time::sleep(shared.config.poll) => {}
            }
        }
        tracing::info!("outbound queue stopped");
    }
}

impl Shared {
    fn now(&self) -> i64 {
        self.clock.now().timestamp().as_second()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain sets and counters, still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn release(&self, recipients: &[QueuedRecipient]) {
        let mut state = self.lock();
        for r in recipients {
            state.claimed.remove(&r.id);
            state.cooling.insert(r.id);
        }
    }

    async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let this = self.clone();
        match tokio::task::spawn_blocking(move || f(this.store.as_ref())).await {
            Ok(result) => result,
            Err(e) => Err(StoreError::CommitFailed(format!("store task failed: {e}"))),
        }
    }
}

/// One look at the queue: claims what is due and not claimed, and starts the tasks.
async fn dispatch(shared: &Arc<Shared>, shutdown: &Shutdown) -> Result<(), StoreError> {
    shared.lock().cooling.clear();
    let now = shared.now();
    let batch = shared.config.batch.max(1);
    let (due, domains) = shared
        .blocking(move |store| {
            let due = store.queue_due(now, batch)?;
            let domains: HashSet<String> = if due.is_empty() {
                HashSet::new()
            } else {
                store
                    .domains()?
                    .into_iter()
                    .map(|d| d.to_lowercase())
                    .collect()
            };
            Ok((due, domains))
        })
        .await?;
    let mut local_jobs = Vec::new();
    {
        let mut state = shared.lock();
        let instant = Instant::now();
        for message in due {
            let mut local = Vec::new();
            let mut remote: HashMap<String, (Destination, Vec<QueuedRecipient>)> = HashMap::new();
            for r in &message.recipients {
                if state.claimed.contains(&r.id) || state.cooling.contains(&r.id) {
                    continue;
                }
                if domains.contains(&r.domain) {
                    local.push(r.clone());
                } else {
                    let destination = choose(&r.domain, &shared.routes);
                    remote
                        .entry(destination.key())
                        .or_insert_with(|| (destination, Vec::new()))
                        .1
                        .push(r.clone());
                }
            }
            if !local.is_empty() {
                state.claimed.extend(local.iter().map(|r| r.id));
                local_jobs.push(QueuedMessage {
                    recipients: local,
                    ..message.clone()
                });
            }
            for (key, (destination, recipients)) in remote {
                let dest = state
                    .destinations
                    .entry(key.clone())
                    .or_insert_with(|| Dest {
                        destination,
                        jobs: VecDeque::new(),
                        workers: 0,
                        bucket: TokenBucket::new(shared.config.rate_per_minute, instant),
                    });
                // Held back by the rate limit: not an attempt, it stays due and the next
                // look at the queue offers it again.
                if !dest.bucket.try_take(instant) {
                    Metrics::add(&METRICS.rate_limited);
                    tracing::debug!(destination = key, wait = ?dest.bucket.wait(), "rate limited");
                    continue;
                }
                dest.jobs.push_back(QueuedMessage {
                    recipients: recipients.clone(),
                    ..message.clone()
                });
                state.claimed.extend(recipients.iter().map(|r| r.id));
            }
        }
    }
    for job in local_jobs {
        let shared = shared.clone();
        tokio::spawn(async move {
            let recipients = job.recipients.clone();
            deliver_local(&shared, job).await;
            shared.release(&recipients);
        });
    }
    start_workers(shared, shutdown);
    Ok(())
}

/// Starts connection workers where jobs wait, within both limits.
fn start_workers(shared: &Arc<Shared>, shutdown: &Shutdown) {
    let mut state = shared.lock();
    let per_destination = shared.config.per_destination.max(1);
    let mut start = Vec::new();
    for (key, dest) in state.destinations.iter_mut() {
        while dest.workers < per_destination && dest.jobs.len() > dest.workers {
            let Ok(permit) = shared.connections.clone().try_acquire_owned() else {
                break;
            };
            dest.workers += 1;
            start.push((key.clone(), dest.destination.clone(), permit));
        }
    }
    // Idle destinations without a rate limit hold nothing worth keeping.
    if shared.config.rate_per_minute == 0 {
        state
            .destinations
            .retain(|_, d| d.workers > 0 || !d.jobs.is_empty());
    }
    drop(state);
    for (key, destination, permit) in start {
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(worker(shared, key, destination, permit, shutdown));
    }
}

/// One connection's life: takes the destination's jobs one after the other on the same
/// connection, up to `messages_per_connection`, then reconnects.
async fn worker(
    shared: Arc<Shared>,
    key: String,
    destination: Destination,
    _permit: OwnedSemaphorePermit,
    mut shutdown: Shutdown,
) {
    let mut conn: Option<Open> = None;
    // Whether this worker still counts in its destination's `workers`.
    let mut counted = true;
    loop {
        if shutdown.is_shutting_down() {
            break;
        }
        let job = {
            let mut state = shared.lock();
            let dest = state.destinations.get_mut(&key);
            match dest.and_then(|d| d.jobs.pop_front()) {
                Some(job) => job,
                None => {
                    if let Some(d) = state.destinations.get_mut(&key) {
                        d.workers -= 1;
                    }
                    counted = false;
                    break;
                }
            }
        };
        let recipients = job.recipients.clone();
        tokio::select! {
            _ = deliver_remote(&shared, &destination, &mut conn, job) => {}
            _ = shutdown.requested() => {
                tracing::info!(destination = key, "shutdown: transaction abandoned unsettled");
                shared.release(&recipients);
                break;
            }
        }
        shared.release(&recipients);
        let limit = shared.config.messages_per_connection.max(1);
        if conn.as_ref().is_some_and(|o| o.used >= limit)
            && let Some(open) = conn.take()
        {
            open.conn.quit().await;
        }
    }
    if counted {
        let mut state = shared.lock();
        if let Some(d) = state.destinations.get_mut(&key) {
            d.workers -= 1;
            // What waits here is given back; a restart finds it due in the store.
            for job in d.jobs.drain(..).collect::<Vec<_>>() {
                for r in &job.recipients {
                    state.claimed.remove(&r.id);
                }
            }
        }
    }
    if let Some(open) = conn.take() {
        open.conn.quit().await;
    }
    // Others may be waiting for a connection permit, or this destination got more work.
    shared.waker.notify_one();
}

/// An open connection and what it has carried.
struct Open {
    conn: Connection,
    host: String,
    used: usize,
}

async fn deliver_remote(
    shared: &Arc<Shared>,
    destination: &Destination,
    conn: &mut Option<Open>,
    job: QueuedMessage,
) {
    Metrics::add(&METRICS.attempts);
    let id = job.id;
    let body = match shared.blocking(move |store| store.queue_body(id)).await {
        Ok(body) => body,
        Err(StoreError::NotFound { .. }) => return, // removed by an operator meanwhile
        Err(e) => {
            let failure = local_failure(&format!("cannot read the queued message: {e}"));
            let results = all(&job.recipients, Attempt::Temporary(failure));
            settle(shared, &job, results, &[]).await;
            return;
        }
    };
    let body = without_return_path(body);
    let message = match shared.dkim.sign(&body) {
        Some(mut signed) => {
            signed.extend_from_slice(&body);
            signed
        }
        None => body.clone(),
    };
    let addresses: Vec<String> = job.recipients.iter().map(|r| r.address.clone()).collect();
    let mut fresh_tries = 0;
    let mut begun = false;
    let results = loop {
        if conn.is_none() {
            fresh_tries += 1;
            match connect(shared, destination).await {
                Ok(open) => *conn = Some(open),
                Err((permanent, failure)) => {
                    let attempt = if permanent {
                        Attempt::Permanent(failure)
                    } else {
                        Attempt::Temporary(failure)
                    };
                    break all(&job.recipients, attempt);
                }
            }
        }
        let Some(open) = conn.as_mut() else {
            unreachable!("connected above");
        };
        let reused = open.used > 0;
        open.used += 1;
        if !begun {
            // Campaign and step mail: recorded before the transaction, so that a crash
            // between the remote's 250 and our settlement cannot send it twice.
            if let Err(e) = begin(shared, &job).await {
                break all(&job.recipients, Attempt::Temporary(local_failure(&e)));
            }
            begun = true;
        }
        match open.conn.send(&job.sender, &addresses, &message).await {
            Ok(outcomes) => {
                let host = open.host.clone();
                break job
                    .recipients
                    .iter()
                    .cloned()
                    .zip(outcomes)
                    .map(|(r, o)| (r, rcpt_attempt(&o, &host)))
                    .collect();
            }
            // A connection kept open between messages may have been closed by the server
            // meanwhile; that is no reason to defer, so one fresh connection is tried.
            Err(e) if reused && fresh_tries == 0 && stale(&e) => {
                tracing::debug!(error = %e, "reused connection failed; reconnecting");
                if let Some(open) = conn.take() {
                    open.conn.quit().await;
                }
            }
            Err(e) => {
                let host = open.host.clone();
                let permanent = e.is_permanent();
                if !permanent && let Some(open) = conn.take() {
                    open.conn.quit().await;
                }
                let failure = client_failure(&e, Some(&host));
                let attempt = if permanent {
                    Attempt::Permanent(failure)
                } else {
                    Attempt::Temporary(failure)
                };
                break all(&job.recipients, attempt);
            }
        }
    };
    settle(shared, &job, results, &body).await;
}

/// Records that a transaction for the job's at-most-once recipients begins; a no-op
/// without any. An error means the transaction must not start.
async fn begin(shared: &Arc<Shared>, job: &QueuedMessage) -> Result<(), String> {
    let ids: Vec<RecipientId> = job
        .recipients
        .iter()
        .filter(|r| r.at_most_once)
        .map(|r| r.id)
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let (id, now) = (job.id, shared.now());
    shared
        .blocking(move |store| store.queue_begin(id, &ids, now))
        .await
        .map_err(|e| format!("cannot record the attempt before sending: {e}"))
}

/// Errors that say the connection had died before this message was sent.
fn stale(e: &ClientError) -> bool {
    use smtp_client::Stage;
    matches!(
        e,
        ClientError::Broken
            | ClientError::Io {
                stage: Stage::Mail,
                ..
            }
            | ClientError::Protocol {
                stage: Stage::Mail,
                ..
            }
    ) || matches!(e, ClientError::Rejected { reply, .. } if reply.code == 421)
}

async fn connect(shared: &Arc<Shared>, destination: &Destination) -> Result<Open, (bool, Failure)> {
    let hosts: Vec<Target> = targets(&shared.dns, destination, shared.config.mx_port).await?;
    let mut client = ClientConfig::new(shared.config.helo_name.clone());
    client.timeouts = shared.config.timeouts;
    client.tls = shared.config.tls;
    if let Destination::Host { tls, auth, .. } = destination {
        client.tls = *tls;
        client.auth = auth.clone();
    }
    let mut last: Option<(ClientError, String)> = None;
    for target in &hosts {
        for addr in &target.addrs {
            match Connection::connect(*addr, &target.name, &client).await {
                Ok(conn) => {
                    Metrics::add(&METRICS.connections);
                    tracing::debug!(host = target.name, peer = %addr, tls = conn.is_tls(), "connected");
                    return Ok(Open {
                        conn,
                        host: target.name.clone(),
                        used: 0,
                    });
                }
                Err(e) => {
                    tracing::debug!(host = target.name, peer = %addr, error = %e, "cannot connect");
                    last = Some((e, target.name.clone()));
                }
            }
        }
    }
    match last {
        Some((e, host)) => Err((e.is_permanent(), client_failure(&e, Some(&host)))),
        None => Err((false, local_failure("no address to connect to"))),
    }
}

fn all(recipients: &[QueuedRecipient], attempt: Attempt) -> Vec<(QueuedRecipient, Attempt)> {
    recipients
        .iter()
        .map(|r| (r.clone(), attempt.clone()))
        .collect()
}

fn reply_line(reply: &Reply) -> String {
    let text = reply.text().replace(['\r', '\n'], " ");
    match reply.enhanced {
        Some(e) => format!("{} {} {}", reply.code, e, text),
        None => format!("{} {}", reply.code, text),
    }
}

fn reply_status(reply: &Reply) -> String {
    match reply.enhanced {
        Some(e) if u16::from(e.0) == reply.class() => e.to_string(),
        _ => format!("{}.0.0", reply.class()),
    }
}

fn reply_failure(reply: &Reply, host: Option<&str>) -> Failure {
    Failure {
        reason: if reply.is_permanent() { "5xx" } else { "4xx" },
        status: reply_status(reply),
        diagnostic: Some(format!("smtp; {}", reply_line(reply))),
        remote_mta: host.map(str::to_owned),
        text: reply_line(reply),
    }
}

fn rcpt_attempt(outcome: &RcptOutcome, host: &str) -> Attempt {
    match outcome {
        RcptOutcome::Accepted(_) => Attempt::Delivered,
        RcptOutcome::TempFailed(reply) => Attempt::Temporary(reply_failure(reply, Some(host))),
        RcptOutcome::PermFailed(reply) => Attempt::Permanent(reply_failure(reply, Some(host))),
    }
}

fn client_failure(e: &ClientError, host: Option<&str>) -> Failure {
    if let ClientError::Rejected { reply, .. } = e {
        return reply_failure(reply, host);
    }
    let (reason, status) = match e {
        ClientError::Connect(_) => ("connect", "4.4.1"),
        ClientError::Timeout(_) => ("timeout", "4.4.2"),
        ClientError::Tls(_) | ClientError::TlsUnavailable(_) => ("tls", "4.7.5"),
        ClientError::Auth(_) => ("auth", "4.7.8"),
        ClientError::Config(_) => ("local", "4.3.5"),
        ClientError::TooLarge { .. } => ("5xx", "5.3.4"),
        ClientError::EightBitUnsupported => ("5xx", "5.6.3"),
        ClientError::Utf8Unsupported => ("5xx", "5.6.7"),
        ClientError::InvalidSender(_) => ("5xx", "5.1.7"),
        _ => ("protocol", "4.4.2"),
    };
    Failure {
        reason,
        status: status.to_owned(),
        diagnostic: e.reply().map(|r| format!("smtp; {}", reply_line(r))),
        remote_mta: host.map(str::to_owned),
        text: e.to_string(),
    }
}

fn local_failure(text: &str) -> Failure {
    Failure {
        reason: "local",
        status: "4.3.0".to_owned(),
        diagnostic: None,
        remote_mta: None,
        text: text.to_owned(),
    }
}

/// A local recipient without room for the message: it waits while its owner may free
/// space, and fails when the message alone is bigger than the limit (RFC 3463's 4.2.2
/// and 5.2.2).
fn quota_failure(room: Room) -> Attempt {
    let failure = |reason, status: &str, text: &str| Failure {
        reason,
        status: status.to_owned(),
        diagnostic: None,
        remote_mta: None,
        text: text.to_owned(),
    };
    match room {
        Room::TooLarge => Attempt::Permanent(failure(
            "5xx",
            "5.2.2",
            "the message is larger than the mailbox's storage quota",
        )),
        _ => Attempt::Temporary(failure("local", "4.2.2", "the mailbox is full")),
    }
}

/// Local recipients: resolved now (aliases may have changed since queueing), delivered
/// to their INBOXes and remote alias targets queued again, in one store transaction.
async fn deliver_local(shared: &Arc<Shared>, job: QueuedMessage) {
    Metrics::add(&METRICS.attempts);
    // Local delivery and its settlement are two transactions too.
    if let Err(e) = begin(shared, &job).await {
        let results = all(&job.recipients, Attempt::Temporary(local_failure(&e)));
        settle(shared, &job, results, &[]).await;
        return;
    }
    let id = job.id;
    let sender = job.sender.clone();
    let recipients = job.recipients.clone();
    let outcome = shared
        .blocking(move |store| {
            // Final delivery: the Return-Path field says where bounces go (`<>` for a
            // notice), as the SMTP listener writes it for the mail it receives.
            let mut body = format!("Return-Path: <{sender}>\r\n").into_bytes();
            body.extend(without_return_path(store.queue_body(id)?));
            let mut accounts: Vec<AccountId> = Vec::new();
            let mut forward: Vec<String> = Vec::new();
            let mut results = Vec::new();
            let mut delivering = Vec::new();
            let size = body.len() as u64;
            for r in &recipients {
                let resolved = store.resolve(&r.address);
                // A recipient without room waits (or fails, if it can never fit); the
                // others are delivered now. The store checks again as it writes.
                if let Ok(Resolution::Local(ids) | Resolution::Forward { accounts: ids, .. }) =
                    &resolved
                    && let Ok(Some((_, room))) = store.quota_room(ids, size)
                {
                    results.push((r.clone(), quota_failure(room)));
                    continue;
                }
                match resolved {
                    Ok(Resolution::Local(ids)) => {
                        accounts.extend(ids);
                        delivering.push(r.clone());
                    }
                    Ok(Resolution::Forward {
                        accounts: ids,
                        remote,
                    }) => {
                        accounts.extend(ids);
                        forward.extend(remote);
                        delivering.push(r.clone());
                    }
                    Ok(Resolution::UnknownUser) => results.push((
                        r.clone(),
                        Attempt::Permanent(Failure {
                            reason: "5xx",
                            status: "5.1.1".into(),
                            diagnostic: None,
                            remote_mta: None,
                            text: "no such user here".into(),
                        }),
                    )),
                    // No longer one of our domains: the next look routes it out.
                    Ok(Resolution::NotLocal) => results.push((
                        r.clone(),
                        Attempt::Temporary(local_failure("the domain is no longer local")),
                    )),
                    Err(e) => {
                        results.push((r.clone(), Attempt::Temporary(local_failure(&e.to_string()))))
                    }
                }
            }
            accounts.sort();
            accounts.dedup();
            forward.sort();
            forward.dedup();
            if !delivering.is_empty() {
                let outbound = Outbound {
                    sender: sender.clone(),
                    recipients: forward.clone(),
                    account: None,
                };
                let queued = (!forward.is_empty()).then_some(&outbound);
                let attempt = match store.accept(&body, &accounts, queued) {
                    Ok(_) => Attempt::Delivered,
                    Err(StoreError::OverQuota { .. }) => quota_failure(Room::Full),
                    Err(e) => Attempt::Temporary(local_failure(&format!("local delivery: {e}"))),
                };
                results.extend(delivering.into_iter().map(|r| (r, attempt.clone())));
            }
            Ok((results, body, !forward.is_empty()))
        })
        .await;
    match outcome {
        Ok((results, body, forwarded)) => {
            settle(shared, &job, results, &body).await;
            if forwarded {
                shared.waker.notify_one();
            }
        }
        Err(StoreError::NotFound { .. }) => {}
        Err(e) => {
            let results = all(
                &job.recipients,
                Attempt::Temporary(local_failure(&e.to_string())),
            );
            settle(shared, &job, results, &[]).await;
        }
    }
}

/// Records what an attempt did, with the notices it causes, in one store transaction.
async fn settle(
    shared: &Arc<Shared>,
    job: &QueuedMessage,
    results: Vec<(QueuedRecipient, Attempt)>,
    body: &[u8],
) {
    let config = &shared.config;
    let now = shared.now();
    let null_sender = job.sender.is_empty();
    let mut settled = Vec::with_capacity(results.len());
    let mut failed = Vec::new();
    let mut delayed = Vec::new();
    for (r, attempt) in &results {
        let before = Before {
            attempts: r.attempts,
            delay_notified: r.delay_notified,
            created: job.created,
            null_sender,
        };
        let verdict = decide(attempt, before, now, config);
        let failure = match attempt {
            Attempt::Delivered => None,
            Attempt::Temporary(f) | Attempt::Permanent(f) => Some(f),
        };
        log_attempt(job, r, attempt, &verdict);
        match (verdict, failure) {
            (Verdict::Delivered, _) | (_, None) => {
                Metrics::add(&METRICS.delivered);
                settled.push(Settlement::Delivered { recipient: r.id });
            }
            (
                Verdict::Deferred {
                    next_attempt,
                    notify_delay,
                },
                Some(f),
            ) => {
                METRICS.deferred(f.reason);
                settled.push(Settlement::Deferred {
                    recipient: r.id,
                    next_attempt,
                    reason: f.reason.to_owned(),
                    error: f.text.clone(),
                    delay_notified: notify_delay,
                });
                if notify_delay {
                    delayed.push(dsn_recipient(
                        r,
                        f,
                        DsnAction::Delayed,
                        now,
                        Some(job.created + secs(config.give_up_after)),
                    ));
                }
            }
            (Verdict::Failed { expired }, Some(f)) => {
                Metrics::add(&METRICS.failed);
                let mut f = f.clone();
                if expired {
                    f.status = "5.4.7".into();
                    f.text = format!("gave up after {} s: {}", now - job.created, f.text);
                }
                settled.push(Settlement::Failed {
                    recipient: r.id,
                    error: f.text.clone(),
                });
                if !null_sender {
                    failed.push(dsn_recipient(r, &f, DsnAction::Failed, now, None));
                }
            }
        }
    }
    let mut notices = Vec::new();
    for recipients in [failed, delayed] {
        if recipients.is_empty() {
            continue;
        }
        let message = build_dsn(&Dsn {
            reporting_mta: &config.helo_name,
            to: &job.sender,
            arrival: job.created,
            now,
            recipients: &recipients,
            original: body,
        });
        Metrics::add(&METRICS.notices);
        notices.push(Notice {
            envelope: Outbound {
                sender: String::new(),
                recipients: vec![job.sender.clone()],
                account: None,
            },
            message,
        });
    }
    let id = job.id;
    let has_notices = !notices.is_empty();
    if let Err(e) = shared
        .blocking(move |store| store.queue_settle(id, &settled, &notices))
        .await
    {
        // The recipients stay due in the store and are tried again: a possible duplicate,
        // never a loss.
        tracing::error!(queue = id.0, error = %e, "cannot settle a delivery attempt");
    }
    if has_notices {
        shared.waker.notify_one();
    }
}

fn dsn_recipient(
    r: &QueuedRecipient,
    f: &Failure,
    action: DsnAction,
    now: i64,
    will_retry_until: Option<i64>,
) -> DsnRecipient {
    DsnRecipient {
        address: r.address.clone(),
        action,
        status: f.status.clone(),
        remote_mta: f.remote_mta.clone(),
        diagnostic: f.diagnostic.clone(),
        text: f.text.clone(),
        last_attempt: now,
        will_retry_until,
    }
}

fn log_attempt(job: &QueuedMessage, r: &QueuedRecipient, attempt: &Attempt, verdict: &Verdict) {
    let outcome = match verdict {
        Verdict::Delivered => "delivered",
        Verdict::Deferred { .. } => "deferred",
        Verdict::Failed { .. } => "failed",
    };
    match attempt {
        Attempt::Delivered => tracing::info!(
            queue = job.id.0,
            recipient = r.address,
            outcome,
            "delivery attempt"
        ),
        Attempt::Temporary(f) | Attempt::Permanent(f) => tracing::info!(
            queue = job.id.0,
            recipient = r.address,
            remote = f.remote_mta.as_deref().unwrap_or("-"),
            reason = f.reason,
            reply = f.text,
            outcome,
            "delivery attempt"
        ),
    }
}

/// The queued bytes without the Return-Path field that reception put on top for the local
/// copies: RFC 5321 section 4.4 leaves it to the final delivery, and a relay should not
/// send one.
fn without_return_path(mut body: Vec<u8>) -> Vec<u8> {
    let mut end = 0;
    while body.len() >= end + 12 && body[end..end + 12].eq_ignore_ascii_case(b"return-path:") {
        // The field and its folded continuation lines.
        let mut next = match body[end..].iter().position(|&b| b == b'\n') {
            Some(i) => end + i + 1,
            None => body.len(),
        };
        while next < body.len() && matches!(body[next], b' ' | b'\t') {
            next = match body[next..].iter().position(|&b| b == b'\n') {
                Some(i) => next + i + 1,
                None => body.len(),
            };
        }
        end = next;
    }
    body.drain(..end);
    body
}

#[cfg(test)]
mod return_path_tests {
    use super::without_return_path;

    #[test]
    fn only_leading_return_path_fields_go() {
        let body = b"Return-Path: <a@b>\r\nReceived: x\r\n\r\nReturn-Path: kept\r\n".to_vec();
        assert_eq!(
            without_return_path(body),
            b"Received: x\r\n\r\nReturn-Path: kept\r\n"
        );
        let folded = b"return-path:\r\n <a@b>\r\nFrom: a\r\n".to_vec();
        assert_eq!(without_return_path(folded), b"From: a\r\n");
        let none = b"From: a\r\n\r\nbody".to_vec();
        assert_eq!(without_return_path(none.clone()), none);
    }
}
