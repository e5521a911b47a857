//! The alerts service as `serve` runs it: every `alerts.check_interval` it reads what the
//! conditions need, including the figures of other areas (the newest backup, the DDNS
//! updater), and hands them to `ops::alerts`, which decides what is due and sends it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use gate::{Clock, Gate};
use store::Store;

pub use ops::alerts::Alerts;
use ops::alerts::{Inputs, Sources};
use ops::config::Config;

use crate::stats::Monitor;

/// Everything the task needs.
pub struct Context {
    pub data: PathBuf,
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub gate: Arc<Gate>,
    pub clock: Clock,
    pub monitor: Arc<Monitor>,
    pub alerts: Arc<Alerts>,
    pub ddns: Option<Arc<crate::ddns::Status>>,
    pub witness: Option<Arc<::ddns::WitnessBook>>,
    /// When the server started (seconds since the epoch): a sender never heard from is
    /// overdue from then.
    pub started: u64,
}

impl Context {
    /// Gathers the inputs (file system and store reads: call it on a blocking thread).
    pub fn inputs(&self) -> Inputs {
        let root = self.config.schedule.backup.root(&self.data);
        ops::alerts::gather(&Sources {
            data: &self.data,
            config: &self.config,
            store: &*self.store,
            gate: &self.gate,
            clock: &self.clock,
            monitor: &self.monitor,
            witness: self.witness.as_deref(),
            started: self.started,
            newest_backup: ops::backup::newest(&root).map(|e| e.created()),
            ddns_failing: self.ddns.as_ref().and_then(|d| d.failing()),
        })
    }
}

pub async fn run(ctx: Arc<Context>, mut stop: net::Shutdown) {
    let mut ticker = tokio::time::interval(ctx.config.alerts.check_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while stop.pause(ticker.tick()).await {
        let gathered = {
            let ctx = ctx.clone();
            tokio::task::spawn_blocking(move || ctx.inputs()).await
        };
        let Ok(mut inputs) = gathered else { continue };
        // Taken here only, so that reading the metrics never swallows a change.
        inputs.ddns_change = ctx.ddns.as_ref().and_then(|d| d.take_changes());
        for alert in ctx.alerts.evaluate(&inputs, &ctx.config, Instant::now()) {
            ops::alerts::send(
                ctx.store.clone(),
                ctx.gate.clone(),
                &ctx.config,
                &ctx.clock,
                &ctx.data,
                &alert,
            )
            .await;
        }
    }
}
