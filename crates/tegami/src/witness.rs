//! The witness inside `serve` (heartbeats sent to another server, and the endpoint that
//! records other servers' heartbeats), and the `witness log` command that shows them.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use ::ddns::HttpClient;
use ::ddns::witness::{Heartbeat, WitnessBook, WitnessLog};
use clap::Subcommand;
use net::Shutdown;
use tracing::{error, info, warn};

use crate::queue::date;
use crate::services::Services;
use ops::config::Config;

#[derive(Subcommand)]
pub enum WitnessCommand {
    /// The address history of every server that sends heartbeats here, and its last one.
    Log,
}

/// The witness record's file in the data directory.
pub fn path(data: &Path) -> std::path::PathBuf {
    data.join("witness.json")
}

/// The receiving side, when senders are configured.
pub fn book(data: &Path, config: &Config) -> anyhow::Result<Option<Arc<WitnessBook>>> {
    let w = &config.witness;
    if w.senders.is_empty() {
        return Ok(None);
    }
    let senders: Vec<(String, String)> = w
        .senders
        .iter()
        .map(|s| (s.name.clone(), s.token.clone()))
        .collect();
    let open = || WitnessBook::open(path(data), &senders, w.trusted_proxies.clone(), w.limits);
    let book = match open() {
        // A damaged record must not keep the mail server from starting: it is kept aside
        // for a person to read, and a new one begins.
        Err(e @ ::ddns::witness::WitnessError::Damaged { .. }) => {
            let aside = data.join(format!("witness.json.damaged-{}", ::ddns::unix_now()));
            std::fs::rename(path(data), &aside)?;
            error!(error = %e, aside = %aside.display(), "witness: the record was damaged; kept aside, starting a new one");
            open()?
        }
        other => other?,
    };
    info!(
        senders = senders.len(),
        "witness: recording heartbeats at {}",
        ::ddns::witness::PATH
    );
    Ok(Some(Arc::new(book)))
}

/// Starts sending heartbeats when `[witness] url` is configured.
pub fn start_heartbeats(config: &Config, services: &mut Services) {
    if let Some((heartbeat, interval)) = config.witness.send.clone() {
        services.start("witness heartbeats", |stop| {
            heartbeats(heartbeat, interval, stop)
        });
    }
}

/// Sends a heartbeat every `interval`; each failure is one log line with the reason.
async fn heartbeats(heartbeat: Heartbeat, interval: Duration, mut stop: Shutdown) {
    let client = match HttpClient::new(&[], Duration::from_secs(15), 4096) {
        Ok(client) => client,
        Err(e) => {
            warn!(error = %e, "witness: cannot start sending heartbeats");
            return;
        }
    };
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    while stop.pause(ticker.tick()).await {
        match heartbeat.send(&client).await {
            Ok(answer) => {
                if failing {
                    info!(url = %heartbeat.url, "witness: heartbeats reach the witness again ({answer})");
                } else {
                    tracing::debug!(url = %heartbeat.url, answer, "witness: heartbeat sent");
                }
                failing = false;
            }
            Err(e) => {
                warn!(
                    "witness: heartbeat to {} failed: {e}; next try in {} s",
                    heartbeat.url,
                    interval.as_secs()
                );
                failing = true;
            }
        }
    }
}

pub fn run(data: &Path, command: WitnessCommand) -> anyhow::Result<ExitCode> {
    match command {
        WitnessCommand::Log => {
            let log = WitnessLog::load(&path(data))?;
            print!("{}", render(&log, ::ddns::unix_now()));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn render(log: &WitnessLog, now: u64) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if log.senders.is_empty() {
        out.push_str("no heartbeats received (senders are listed under [[witness.sender]])\n");
        return out;
    }
    for (name, sender) in &log.senders {
        match sender.last() {
            Some(beat) => {
                let _ = writeln!(
                    out,
                    "{name}: last heartbeat {} from {} ({} s ago), {} received",
                    date(beat.time as i64),
                    beat.address,
                    now.saturating_sub(beat.time),
                    sender.total
                );
            }
            None => {
                let _ = writeln!(out, "{name}: no heartbeat yet");
            }
        }
        let _ = writeln!(
            out,
            "  {:<39}  {:<23}  {:<23}  {:>10}",
            "address", "first seen", "last seen", "heartbeats"
        );
        for run in &sender.addresses {
            let _ = writeln!(
                out,
                "  {:<39}  {:<23}  {:<23}  {:>10}",
                run.address.to_string(),
                date(run.first as i64),
                date(run.last as i64),
                run.heartbeats
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_shows_each_address_with_its_first_and_last_heartbeat() {
        let mut log = WitnessLog::default();
        let limits = ::ddns::WitnessLimits {
            keep_heartbeats: 10,
            keep_addresses: 10,
        };
        let sender = log.senders.entry("home".into()).or_default();
        sender.record("192.0.2.1".parse().unwrap(), 1_800_000_000, limits);
        sender.record("192.0.2.1".parse().unwrap(), 1_800_000_600, limits);
        sender.record("198.51.100.2".parse().unwrap(), 1_800_001_200, limits);
        let text = render(&log, 1_800_001_260);
        assert!(text.contains("home: last heartbeat 2027-01-15 08:20:00 UTC from 198.51.100.2 (60 s ago), 3 received"), "{text}");
        assert!(
            text.contains("192.0.2.1") && text.contains("2027-01-15 08:10:00 UTC"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 4, "{text}");
    }
}
