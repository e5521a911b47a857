//! The DDNS updater inside `serve`: runs `::ddns::Ddns::check` on its schedule, logs every
//! outcome worth a line (a change, a failure, a recovery), and keeps the status the alert
//! conditions read (`ddns_address_changed`, `ddns_update_failed`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ::ddns::{Ddns, HttpClient, Outcome};
use net::Shutdown;
use tracing::{debug, error, info, warn};

use crate::services::Services;

/// The largest echo answer read; an address is a few dozen bytes.
const MAX_ANSWER: usize = 4096;

/// What the alerts learn from the updater.
#[derive(Debug, Default)]
pub struct Status {
    /// The current failure (detecting the address or updating the record), if any.
    failing: Mutex<Option<String>>,
    /// Changes not yet seen by the alerts task.
    changes: Mutex<Vec<String>>,
}

impl Status {
    pub fn failing(&self) -> Option<String> {
        self.failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The changes since the last call, joined in one message (the alerts task calls this
    /// once per evaluation, so each change is alerted once).
    pub fn take_changes(&self) -> Option<String> {
        let mut changes = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        if changes.is_empty() {
            return None;
        }
        Some(std::mem::take(&mut *changes).join("; then "))
    }

    fn set_failing(&self, failing: Option<String>) {
        *self.failing.lock().unwrap_or_else(|p| p.into_inner()) = failing;
    }

    fn changed(&self, message: String) {
        let mut changes = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: an address that flaps every minute while nobody reads still costs little.
        if changes.len() >= 20 {
            changes.remove(0);
        }
        changes.push(message);
    }
}

/// Starts the updater when `[ddns]` is configured; its status is what the alerts read.
pub fn start(
    config: &ops::config::Config,
    data: &Path,
    services: &mut Services,
) -> Option<Arc<Status>> {
    let ddns = config.ddns.clone()?;
    let status = Arc::new(Status::default());
    let (data, reported) = (data.to_path_buf(), status.clone());
    services.start("ddns", |stop| run(ddns, data, reported, stop));
    Some(status)
}

async fn run(config: ::ddns::Config, data: PathBuf, status: Arc<Status>, mut stop: Shutdown) {
    let client = match HttpClient::new(&[], config.timeout, MAX_ANSWER) {
        Ok(client) => client,
        Err(e) => {
            error!(error = %e, "ddns: cannot start the updater");
            status.set_failing(Some(format!("the DDNS updater cannot start: {e}")));
            return;
        }
    };
    let record = config.updater.describe();
    let (mut ddns, damaged) = Ddns::new(config, client, data.join("ddns.json"));
    if let Some(e) = damaged {
        warn!(error = %e, "ddns: the saved state is unusable; the address will be published again");
    }
    info!(record = %record, "ddns: keeping the DNS record at this server's public address");
    loop {
        let report = ddns.check().await;
        let wait = ddns.next_wait(&report.outcome);
        if let Some(e) = report.state_error {
            error!(error = %e, "ddns: cannot save what was published; a restart will publish again");
        }
        match report.outcome {
            Outcome::Unchanged(ip) => {
                debug!(address = %ip, "ddns: address unchanged");
                recovered(&status);
            }
            Outcome::Updated { from, to, changed } => {
                match (from, changed) {
                    (Some(from), true) => {
                        info!(
                            "ddns: the public address changed from {from} to {to}; DNS record {record} updated"
                        );
                        status.changed(format!(
                            "the public address changed from {from} to {to}; the DNS record {record} was updated"
                        ));
                    }
                    (None, _) => info!("ddns: the public address is {to}; DNS record {record} set"),
                    (Some(_), false) => {
                        info!(
                            "ddns: DNS record {record} now holds {to} (an earlier update had failed)"
                        )
                    }
                }
                recovered(&status);
            }
            Outcome::UpdateFailed {
                from,
                to,
                changed,
                error,
            } => {
                let retry = wait.as_secs();
                error!(
                    "ddns: cannot update the DNS record {record} to {to}: {error}; retrying in {retry} s"
                );
                if let (Some(from), true) = (from, changed) {
                    status.changed(format!(
                        "the public address changed from {from} to {to}; updating the DNS record {record} failed: {error}"
                    ));
                }
                status.set_failing(Some(format!(
                    "the DNS record {record} could not be set to {to}: {error}"
                )));
            }
            Outcome::DetectFailed(error) => {
                let retry = wait.as_secs();
                warn!("ddns: cannot learn the public address: {error}; retrying in {retry} s");
                status.set_failing(Some(format!(
                    "the public address cannot be learned, so the DNS record {record} is not kept up to date: {error}"
                )));
            }
        }
        if !stop.pause(tokio::time::sleep(wait)).await {
            return;
        }
    }
}

fn recovered(status: &Status) {
    if status.failing().is_some() {
        info!("ddns: working again");
        status.set_failing(None);
    }
}
