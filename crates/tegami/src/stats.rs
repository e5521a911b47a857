//! What the server measures about itself while it runs, and the task that keeps the
//! write-ahead log under its cap.
//!
//! `Monitor` holds the live figures (atomics, so any task may update them without a lock);
//! the WAL task writes its part every time it looks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use store::Store;
use tracing::{info, warn};

use crate::config::WalConfig;

/// The server's live figures.
#[derive(Debug, Default)]
pub struct Monitor {
    pub wal_bytes: AtomicU64,
    pub wal_checkpoints: AtomicU64,
    /// Checkpoints that readers kept from truncating the log.
    pub wal_checkpoints_incomplete: AtomicU64,
    /// True while the log is above its cap even after a checkpoint.
    pub wal_above_cap: AtomicBool,
}

/// Looks at the WAL's size every `check_interval` and checkpoints it (TRUNCATE) when it is
/// above half its cap, so that it stays under the cap between two looks. A checkpoint that
/// readers kept from finishing is retried at the next look; a log still above the cap
/// afterwards is logged at warn level once, and `monitor.wal_above_cap` says so.
pub async fn bound_wal(store: Arc<dyn Store>, config: WalConfig, monitor: Arc<Monitor>) {
    let trigger = config.cap_bytes / 2;
    let mut ticker = tokio::time::interval(config.check_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let size = store.wal_bytes();
        monitor.wal_bytes.store(size, Ordering::Relaxed);
        if size <= trigger {
            if monitor.wal_above_cap.swap(false, Ordering::Relaxed) {
                info!(
                    wal_bytes = size,
                    cap = config.cap_bytes,
                    "the write-ahead log is under its cap again"
                );
            }
            continue;
        }
        let checkpoint = {
            let store = store.clone();
            let patience = config.patience;
            tokio::task::spawn_blocking(move || store.checkpoint_wal(patience)).await
        };
        let result = match checkpoint {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => {
                warn!(error = %e, "write-ahead log checkpoint failed");
                continue;
            }
            Err(_) => continue,
        };
        monitor.wal_checkpoints.fetch_add(1, Ordering::Relaxed);
        monitor
            .wal_bytes
            .store(result.wal_bytes_after, Ordering::Relaxed);
        if result.complete {
            info!(
                before = result.wal_bytes_before,
                after = result.wal_bytes_after,
                frames = result.frames,
                "write-ahead log checkpointed and truncated"
            );
        } else {
            monitor
                .wal_checkpoints_incomplete
                .fetch_add(1, Ordering::Relaxed);
            info!(
                wal_bytes = result.wal_bytes_after,
                "write-ahead log checkpoint waited for readers in vain; retrying"
            );
        }
        let above = result.wal_bytes_after > config.cap_bytes;
        if above && !monitor.wal_above_cap.swap(true, Ordering::Relaxed) {
            warn!(
                wal_bytes = result.wal_bytes_after,
                cap = config.cap_bytes,
                "the write-ahead log is above its cap: a reader has held one transaction open \
                 too long (a stuck client or a tool on tegami.db); it cannot shrink until \
                 that reader finishes"
            );
        }
    }
}
