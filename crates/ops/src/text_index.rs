//! The full-text index of live and archived mail (`index.db`): the server's indexer
//! service, `index rebuild` and `index check`. What the index holds of a message is made here with
//! `imap-mime`, the code IMAP SEARCH scans with, so the index finds what the scan finds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gate::oplog;
use store::text_index::{IndexCheck, IndexText};

use crate::progress::{Reporter, Unit};
use crate::{Error, Ops, Result};

/// Messages one step of the indexer takes: a short write transaction, often enough.
const STEP: usize = 500;
/// Bodies one sweep for expunged mail looks at.
const SWEEP: usize = 5000;
/// How long the indexer rests when it has caught up.
const IDLE: Duration = Duration::from_secs(1);
/// The lull in writes the indexer waits for before a step: deliveries come first, and the
/// index catches up between them (SEARCH scans what it has not reached meanwhile).
const LULL: Duration = Duration::from_millis(250);
/// The longest the indexer defers a step for deliveries, and the backlog past which it does
/// not wait: under a load that never pauses the index still keeps up, a step at a time.
const MAX_DEFER: Duration = Duration::from_secs(10);
const BACKLOG: u64 = 20_000;

/// What the index holds of a message: the lower-cased text SEARCH scans.
pub fn text_of(raw: &[u8]) -> Option<IndexText> {
    let (headers, body) = imap_mime::Message::parse(raw).search_text();
    Some(IndexText { headers, body })
}

/// `index rebuild`: what was done.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RebuildReport {
    pub account: Option<String>,
    /// Messages indexed (their bodies read, or found already indexed when shared).
    pub messages: u64,
    /// Distinct bodies written to the index.
    pub bodies: u64,
    pub seconds: f64,
}

/// `index check`: the findings, and whether the index is sound.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckReport {
    pub documents: u64,
    pub covered: u64,
    pub pending: u64,
    pub missing: u64,
    pub expunged: u64,
    pub healthy: bool,
}

impl From<IndexCheck> for CheckReport {
    fn from(c: IndexCheck) -> CheckReport {
        CheckReport {
            healthy: c.is_healthy(),
            documents: c.documents,
            covered: c.covered,
            pending: c.pending,
            missing: c.missing,
            expunged: c.expunged,
        }
    }
}

impl CheckReport {
    /// One line for the log and the terminal.
    pub fn line(&self) -> String {
        format!(
            "index check: {} bodies indexed, {} messages covered, {} waiting for the indexer, \
             {} covered but missing, {} bodies of expunged mail; {}",
            self.documents,
            self.covered,
            self.pending,
            self.missing,
            self.expunged,
            if self.healthy {
                "healthy"
            } else {
                "run `tegami index rebuild`"
            }
        )
    }
}

impl Ops {
    /// `index rebuild [--account A]`: forgets what the index holds (of everything, or of
    /// one account's mailboxes) and indexes it again, with progress; one line in
    /// `log/index.log`. SEARCH stays exact meanwhile: what is not indexed again yet is
    /// scanned. Safe beside a running server, whose indexer may do part of the work.
    pub fn index_rebuild(
        &self,
        account: Option<&str>,
        progress: &Reporter,
    ) -> Result<RebuildReport> {
        let started = Instant::now();
        let store = self.sqlite();
        let id = match account {
            Some(address) => Some(
                self.store()
                    .accounts()?
                    .into_iter()
                    .find(|a| a.address.eq_ignore_ascii_case(address))
                    .ok_or_else(|| Error::not_found(format!("no account {address}")))?
                    .id,
            ),
            None => None,
        };
        store.index_reset(id)?;
        progress.phase("indexing messages", Unit::Items, None);
        let mut report = RebuildReport {
            account: account.map(str::to_string),
            messages: 0,
            bodies: 0,
            seconds: 0.0,
        };
        loop {
            let step = store.index_step(&text_of, id, id.is_some(), STEP)?;
            report.messages += step.messages;
            report.bodies += step.added;
            progress.total(report.messages + step.pending);
            progress.advance(report.messages);
            if step.pending == 0 {
                break;
            }
        }
        // A full rebuild starts empty; one account's leaves the index as it was otherwise,
        // so a round of the sweep takes out what expunged mail left there.
        if id.is_some() {
            while !store.index_sweep(SWEEP)?.1 {}
        }
        progress.finish();
        report.seconds = started.elapsed().as_secs_f64();
        let line = format!(
            "index rebuild{}: {} messages, {} bodies indexed in {:.1} s",
            account
                .map(|a| format!(" --account {a}"))
                .unwrap_or_default(),
            report.messages,
            report.bodies,
            report.seconds
        );
        self.index_log(&line, progress);
        Ok(report)
    }

    /// `index check`: compares the index with the live messages; one line in
    /// `log/index.log`. An index that would miss a message, or holds expunged mail, is
    /// unhealthy (and `Error::Failed`, so the command exits non-zero).
    pub fn index_check(&self, progress: &Reporter) -> Result<CheckReport> {
        let report = CheckReport::from(self.sqlite().index_check()?);
        self.index_log(&report.line(), progress);
        Ok(report)
    }

    fn index_log(&self, line: &str, progress: &Reporter) {
        let dir = self.data().join("log");
        if let Err(e) = oplog::append(&dir, "index.log", &self.clock().now(), line) {
            tracing::warn!(error = %e, "cannot append to log/index.log");
            progress.note(&format!("cannot write log/index.log: {e}"));
        }
    }
}

/// The server's indexer: indexes new mail a step at a time, and removes expunged mail a
/// slice at a time, off the path that acknowledges deliveries; rests when caught up.
///
/// The steps run on a thread of their own at the lowest CPU priority, so that on a busy
/// machine deliveries and sessions go first and the index catches up when they leave room
/// (a thread of tokio's blocking pool would keep the priority for whatever runs on it next).
pub async fn run(ops: Arc<Ops>, mut stop: net::Shutdown) {
    type Reply = tokio::sync::oneshot::Sender<Result<u64>>;
    let store = ops.sqlite().clone();
    let (steps, asked) = std::sync::mpsc::channel::<Reply>();
    let spawned = std::thread::Builder::new()
        .name("indexer".into())
        .spawn(move || {
            lowest_priority();
            while let Ok(reply) = asked.recv() {
                let _ = reply.send(step(&ops));
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the full-text indexer");
        return;
    }
    let mut pending = 0;
    loop {
        // Wait for a lull in writes, unless the backlog is large or the wait long.
        let deferred = tokio::time::Instant::now();
        while pending < BACKLOG && deferred.elapsed() < MAX_DEFER {
            let quiet = store.writes_quiet_for();
            if quiet >= LULL {
                break;
            }
            if !stop.pause(tokio::time::sleep(LULL - quiet)).await {
                return;
            }
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        if steps.send(reply).is_err() {
            return;
        }
        pending = match answer.await {
            Ok(Ok(pending)) => pending,
            Ok(Err(e)) => {
                tracing::warn!(error = e.one_line(), "full-text indexing failed");
                0
            }
            Err(_) => {
                tracing::warn!("the full-text indexer stopped");
                return;
            }
        };
        let rest = if pending > 0 { Duration::ZERO } else { IDLE };
        if !stop.pause(tokio::time::sleep(rest)).await {
            return;
        }
    }
}

/// One step of the service: how many messages are still waiting.
fn step(ops: &Ops) -> Result<u64> {
    let store = ops.sqlite();
    let step = store.index_step(&text_of, None, false, STEP)?;
    let (removed, _) = store.index_sweep(SWEEP)?;
    if step.added > 0 || removed > 0 {
        tracing::debug!(
            indexed = step.messages,
            bodies = step.added,
            removed,
            pending = step.pending,
            "full-text index step"
        );
    }
    Ok(step.pending)
}

/// Gives the calling thread (only) the lowest CPU priority, nice 19; Linux applies
/// `PRIO_PROCESS` with a thread id to that thread. Failing is harmless: it only runs sooner.
fn lowest_priority() {
    // SAFETY: setpriority reads no memory of ours; gettid cannot fail.
    let failed = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 19) };
    if failed != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "indexer priority unchanged");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text held is what the scan searches, lower-cased, with every charset decoded.
    #[test]
    fn the_indexed_text_is_decoded_and_lower_cased() {
        let raw = b"Subject: =?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=\r\nFrom: Ann <Ann@Example.COM>\r\n\
                    Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n\
                    SGVsbG8gV09STEQg5p2x5Lqs\r\n";
        let text = text_of(raw).unwrap();
        assert!(text.headers.contains("subject: テスト"), "{text:?}");
        assert!(text.headers.contains("ann@example.com"), "{text:?}");
        assert_eq!(text.body.trim(), "hello world 東京");
    }
}
