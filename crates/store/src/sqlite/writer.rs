//! The single writer: one thread owns the write connection and commits whatever requests
//! have queued up in one transaction (group commit).
//!
//! Throughput comes from sharing one fsync among many deliveries, never from skipping it:
//! every request is answered only after the transaction that holds it has committed with
//! `synchronous=FULL`. Each request runs inside its own savepoint, so one that fails is
//! rolled back alone and the rest of its batch still commits.
//!
//! Some maintenance statements cannot run inside a transaction (a WAL checkpoint, VACUUM)
//! or should not hold one open for long (incremental vacuum in steps). They are queued as
//! jobs that run alone, between batches, on the same connection, so the rule "only the
//! writer thread writes" holds for them too and deliveries simply queue behind them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension};

use crate::{BlobId, BlobStore, Result, StoreError};

/// The most requests one transaction takes; bounds the latency of a batch.
const MAX_BATCH: usize = 512;

/// What a request may touch while it runs inside the batch transaction.
pub(crate) struct WriteCtx<'a> {
    pub conn: &'a Connection,
    pub blobs: &'a BlobStore,
    /// Blobs whose last reference this request removed; their files go after the commit.
    pub unreferenced: &'a mut Vec<BlobId>,
}

trait Job: Send {
    /// True for a job that runs by itself in autocommit mode, outside any batch.
    fn alone(&self) -> bool;
    /// Runs the request; false when it failed and its savepoint must be rolled back.
    fn apply(&mut self, ctx: &mut WriteCtx<'_>) -> bool;
    /// Answers the caller once the batch's fate is known.
    fn finish(self: Box<Self>, commit: &Result<(), String>);
}

struct Request<T, F> {
    alone: bool,
    work: Option<F>,
    result: Option<Result<T>>,
    reply: mpsc::SyncSender<Result<T>>,
}

impl<T, F> Job for Request<T, F>
where
    T: Send,
    F: FnOnce(&mut WriteCtx<'_>) -> Result<T> + Send,
{
    fn alone(&self) -> bool {
        self.alone
    }

    fn apply(&mut self, ctx: &mut WriteCtx<'_>) -> bool {
        let work = self.work.take().expect("a request runs once");
        let result = work(ctx);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, commit: &Result<(), String>) {
        let result = match (self.result, commit) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (_, Err(e)) => Err(StoreError::CommitFailed(e.clone())),
            (None, Ok(())) => Err(StoreError::CommitFailed("request never ran".into())),
        };
        // The caller may have given up waiting; that is not the writer's problem.
        let _ = self.reply.send(result);
    }
}

pub(crate) struct Writer {
    queue: Option<mpsc::Sender<Box<dyn Job>>>,
    thread: Option<thread::JoinHandle<()>>,
    /// When the last request came, in milliseconds after `started`: background work that
    /// competes with the writer for the disk (the full-text indexer) waits for a lull.
    last_request: AtomicU64,
    started: Instant,
}

impl Writer {
    pub fn start(conn: Connection, blobs: Arc<BlobStore>) -> Writer {
        let (queue, requests) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run(conn, &blobs, requests))
            .expect("spawning the store writer thread");
        Writer {
            queue: Some(queue),
            thread: Some(thread),
            last_request: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    /// How long no write has been asked for.
    pub fn quiet_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_request.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    /// Runs `work` in the next batch and waits until that batch is durable.
    pub fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteCtx<'_>) -> Result<T> + Send + 'static,
    {
        self.submit(false, work)
    }

    /// Runs `work` by itself between batches, with the connection in autocommit mode: for
    /// statements that cannot run inside a transaction. Each statement it runs commits on
    /// its own, so `work` must leave the database consistent after every one of them.
    pub fn write_alone<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteCtx<'_>) -> Result<T> + Send + 'static,
    {
        self.submit(true, work)
    }

    fn submit<T, F>(&self, alone: bool, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteCtx<'_>) -> Result<T> + Send + 'static,
    {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_request.store(now, Ordering::Relaxed);
        let (reply, answer) = mpsc::sync_channel(1);
        let job = Box::new(Request {
            alone,
            work: Some(work),
            result: None,
            reply,
        });
        self.queue
            .as_ref()
            .ok_or(StoreError::WriterGone)?
            .send(job)
            .map_err(|_| StoreError::WriterGone)?;
        answer.recv().map_err(|_| StoreError::WriterGone)?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue lets the thread finish the requests already sent, then exit.
        self.queue.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(conn: Connection, blobs: &BlobStore, requests: mpsc::Receiver<Box<dyn Job>>) {
    // A job that must run alone and ended the previous batch's gathering.
    let mut next: Option<Box<dyn Job>> = None;
    loop {
        let first = match next.take() {
            Some(job) => job,
            None => match requests.recv() {
                Ok(job) => job,
                Err(_) => break,
            },
        };
        if first.alone() {
            run_alone(&conn, blobs, first);
            continue;
        }
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(job) if job.alone() => {
                    next = Some(job);
                    break;
                }
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut unreferenced = Vec::new();
        let commit = commit_batch(&conn, blobs, &mut batch, &mut unreferenced).map_err(|e| {
            tracing::error!(error = %e, requests = batch.len(), "store batch failed to commit");
            let _ = conn.execute_batch("ROLLBACK");
            e.to_string()
        });
        // Files go before the replies, so a caller that removed mail sees the space freed.
        if commit.is_ok()
            && !unreferenced.is_empty()
            && let Err(e) = remove_unreferenced(&conn, blobs, &unreferenced)
        {
            // The files stay behind as orphans, unproven: the repair quarantines them.
            tracing::warn!(error = %e, "could not remove unreferenced blobs");
        }
        if !unreferenced.is_empty() {
            super::orphans::releasing_done(blobs.root());
        }
        for job in batch {
            job.finish(&commit);
        }
    }
}

fn run_alone(conn: &Connection, blobs: &BlobStore, mut job: Box<dyn Job>) {
    let mut unreferenced = Vec::new();
    let mut ctx = WriteCtx {
        conn,
        blobs,
        unreferenced: &mut unreferenced,
    };
    job.apply(&mut ctx);
    if !conn.is_autocommit() {
        // A failed statement may leave a transaction open; never let it swallow the next batch.
        let _ = conn.execute_batch("ROLLBACK");
    }
    if !unreferenced.is_empty()
        && let Err(e) = remove_unreferenced(conn, blobs, &unreferenced)
    {
        tracing::warn!(error = %e, "could not remove unreferenced blobs");
    }
    // Whatever the job committed is committed; its own result says how it went.
    job.finish(&Ok(()));
}

fn commit_batch(
    conn: &Connection,
    blobs: &BlobStore,
    batch: &mut [Box<dyn Job>],
    unreferenced: &mut Vec<BlobId>,
) -> Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    for job in batch.iter_mut() {
        conn.execute_batch("SAVEPOINT request")?;
        let before = unreferenced.len();
        let mut ctx = WriteCtx {
            conn,
            blobs,
            unreferenced,
        };
        if job.apply(&mut ctx) {
            conn.execute_batch("RELEASE request")?;
        } else {
            unreferenced.truncate(before);
            conn.execute_batch("ROLLBACK TO request; RELEASE request")?;
        }
    }
    // Between this commit and the deletes after it, another process's check could take the
    // released files for orphans: it reads their names here (`orphans::RELEASING`).
    if !unreferenced.is_empty()
        && let Err(e) = super::orphans::record_releasing(blobs.root(), unreferenced)
    {
        tracing::warn!(error = %e, "could not record the blobs a commit releases");
    }
    conn.execute_batch("COMMIT")?;
    Ok(())
}

/// Deletes the files of blobs that lost their last reference, unless a backup holds them:
/// then the hashes are recorded as released (`orphans.rs`), so the optimisation deletes the
/// files later as proven garbage rather than taking them for lost mail.
///
/// This holds the database's write lock while it looks and deletes: another process that
/// wants to share one of these blobs must take the same lock and then finds the file
/// either still referenced or already gone (and writes it again), never half-way.
fn remove_unreferenced(conn: &Connection, blobs: &BlobStore, ids: &[BlobId]) -> Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        let mut still_used = conn.prepare_cached("SELECT 1 FROM blobs WHERE hash = ?1")?;
        let mut unused = Vec::new();
        for id in ids {
            if still_used
                .query_row([&id.0[..]], |_| Ok(()))
                .optional()?
                .is_none()
            {
                unused.push(*id);
            }
        }
        match crate::blob::BlobHold::for_deletion(blobs.root())? {
            Some(_deleting) => {
                for id in &unused {
                    blobs.remove(id)?;
                }
                Ok(())
            }
            // A backup is copying: leave the files, recorded as released.
            None => {
                tracing::debug!(
                    files = unused.len(),
                    "a backup holds the blobs; unreferenced files kept"
                );
                super::orphans::record_released(blobs.root(), &unused)
            }
        }
    })();
    conn.execute_batch("COMMIT")?;
    result
}
