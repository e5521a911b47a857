//! The integrity check, the recovery of unreferenced message bodies and the optimisation as
//! operations: progress on a terminal, and the result logs in `log/` (`maintenance.log`,
//! `maintenance_result.log`, `optimize.log`, `optimize_result.log`). Used by the CLI and by
//! the server's daily schedule alike.
//!
//! A manual run prints its report on standard output (and a progress bar on standard error
//! when that is a terminal); a scheduled run, inside the server, prints nothing and leaves
//! its report in the result logs and one line in the server's log. Neither sets maintenance
//! mode: both run online beside a live server.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use gate::oplog;
use store::{
    CheckOptions, CheckReport, ORPHANS_DIR, OptimizeReport, OrphanRecovery, SqliteStore, Store,
    human_bytes,
};

/// Below this much free space on the data volume the disk guard refuses every write (the
/// default hard floor, as in the manual), so the check counts it as a problem.
const DISK_FLOOR: u64 = 10 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Manual,
    Scheduled,
}

impl Trigger {
    fn label(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Scheduled => "scheduled",
        }
    }
}

pub struct CheckOutcome {
    /// False when the check found problems (after a repair: problems it could not fix).
    pub healthy: bool,
    /// The whole report, as written to `log/maintenance_result.log`.
    #[allow(
        dead_code,
        reason = "the CLI prints the report itself and the schedule logs a line; kept for callers that show it elsewhere"
    )]
    pub summary: String,
}

pub fn check(
    store: &dyn Store,
    data_dir: &Path,
    clock: &gate::Clock,
    repair: bool,
    trigger: Trigger,
) -> anyhow::Result<CheckOutcome> {
    let log_dir = data_dir.join("log");
    let what = if repair { "check --repair" } else { "check" };
    let started_at = clock.now();
    let started = Instant::now();
    log_line(
        &log_dir,
        "maintenance.log",
        clock,
        &format!("{what} started ({})", trigger.label()),
    );

    let bar = (trigger == Trigger::Manual && std::io::stderr().is_terminal()).then(progress_bar);
    let options = CheckOptions {
        repair,
        progress: bar.clone().map(|bar| -> store::Progress {
            Arc::new(move |done, total| {
                bar.set_length(total);
                // Verifiers finish out of order; never let the bar step back.
                bar.set_position(done.max(bar.position()));
            })
        }),
    };
    let result = store.check(&options);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let seconds = started.elapsed().as_secs_f64();
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            let line = format!("{what} failed after {seconds:.1} s: {e}");
            log_line(&log_dir, "maintenance.log", clock, &line);
            replace_log(
                &log_dir,
                "maintenance_result.log",
                &format!(
                    "result: {line}\n{}\n",
                    times(&started_at, &clock.now(), seconds, trigger)
                ),
            );
            return Err(anyhow::Error::new(e).context(format!("the {what} could not finish")));
        }
    };

    let disk = disk_line(data_dir);
    let outstanding = report.outstanding() + usize::from(disk.low);
    let healthy = outstanding == 0;
    let verdict = verdict(&report, disk.low, outstanding);
    let summary = format!(
        "result: {verdict}\n{}\n{}\n{report:#}",
        times(&started_at, &clock.now(), seconds, trigger),
        disk.text
    );
    log_line(
        &log_dir,
        "maintenance.log",
        clock,
        &format!("{what} finished: {verdict} in {seconds:.1} s"),
    );
    replace_log(&log_dir, "maintenance_result.log", &summary);

    match trigger {
        Trigger::Manual => {
            print!("{summary}");
            if !healthy {
                eprintln!("tegami: {}", hint(&report, disk.low));
            }
        }
        // The schedule itself says loudly when the result is bad.
        Trigger::Scheduled => {
            tracing::info!(result = %verdict, seconds, "scheduled check finished")
        }
    }
    Ok(CheckOutcome { healthy, summary })
}

pub fn optimize(
    store: &dyn Store,
    data_dir: &Path,
    clock: &gate::Clock,
    trigger: Trigger,
) -> anyhow::Result<String> {
    let log_dir = data_dir.join("log");
    let started_at = clock.now();
    let started = Instant::now();
    log_line(
        &log_dir,
        "optimize.log",
        clock,
        &format!("optimize started ({})", trigger.label()),
    );
    let result = store.optimize();
    let seconds = started.elapsed().as_secs_f64();
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            let line = format!("optimize failed after {seconds:.1} s: {e}");
            log_line(&log_dir, "optimize.log", clock, &line);
            replace_log(
                &log_dir,
                "optimize_result.log",
                &format!(
                    "result: {line}\n{}\n",
                    times(&started_at, &clock.now(), seconds, trigger)
                ),
            );
            return Err(anyhow::Error::new(e).context("the optimisation could not finish"));
        }
    };
    let done = what_was_done(&report);
    let summary = format!(
        "result: {done}\n{}\n{report}",
        times(&started_at, &clock.now(), seconds, trigger)
    );
    log_line(
        &log_dir,
        "optimize.log",
        clock,
        &format!("optimize finished in {seconds:.1} s: {done}"),
    );
    replace_log(&log_dir, "optimize_result.log", &summary);
    match trigger {
        Trigger::Manual => print!("{summary}"),
        Trigger::Scheduled => {
            tracing::info!(result = %done, seconds, "scheduled optimisation finished")
        }
    }
    Ok(summary)
}

/// Appends every unreferenced message body to `mailbox` of `account`, unread (the logic is
/// the store's, `SqliteStore::recover_orphans`); prints what it did and logs one line in
/// `maintenance.log`. False when some files could not be taken back and are still waiting.
pub fn recover_orphans(
    store: &SqliteStore,
    data_dir: &Path,
    clock: &gate::Clock,
    account: &str,
    mailbox: &str,
) -> anyhow::Result<bool> {
    let log_dir = data_dir.join("log");
    let result = store.recover_orphans(account, mailbox);
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            log_line(
                &log_dir,
                "maintenance.log",
                clock,
                &format!("recover-orphans failed: {e}"),
            );
            return Err(anyhow::Error::new(e).context("the recovery of orphans could not finish"));
        }
    };
    let line = recovery_line(&report);
    log_line(&log_dir, "maintenance.log", clock, &line);
    println!("{line}");
    for left in &report.left {
        println!("  left in quarantine: {left}");
    }
    if report.young > 0 {
        println!(
            "  {} unreferenced blob files younger than five minutes were left alone (perhaps \
             deliveries in flight); run again later if they stay",
            report.young
        );
    }
    if !report.left.is_empty() {
        eprintln!(
            "tegami: {} files in {} are not message bodies this store can take back (listed \
             above); look at them and delete them when you are done",
            report.left.len(),
            data_dir.join(ORPHANS_DIR).display()
        );
    }
    Ok(report.left.is_empty())
}

fn recovery_line(report: &OrphanRecovery) -> String {
    format!(
        "recovered {} unreferenced message bodies ({}) into {} mailbox {} as unread mail; \
         {} were there already, {} moved from blobs/ to quarantine first",
        report.recovered,
        human_bytes(report.bytes),
        report.account,
        report.mailbox,
        report.already_present,
        report.quarantined
    )
}

/// The one-line outcome of a check, as `maintenance.log` and the result log's first line
/// say it. A healthy store gets just "healthy": the doctor reads these lines.
fn verdict(report: &CheckReport, disk_low: bool, outstanding: usize) -> String {
    let checked = format!(
        "{} messages, {} blobs checked",
        report.messages, report.blobs
    );
    let disk = if disk_low {
        ", data volume nearly full"
    } else {
        ""
    };
    let bodies = match report.unreferenced_bodies() {
        0 => String::new(),
        n => format!(", {n} unreferenced message bodies"),
    };
    let others = if report.repair {
        report.not_fixed.len()
    } else {
        report.problems()
    };
    if outstanding == 0 {
        let repaired = report.repaired.len() + report.quarantined.len();
        if report.repair && repaired > 0 {
            format!("healthy after {repaired} repairs ({checked})")
        } else {
            format!("healthy ({checked})")
        }
    } else if others == 0 && !disk_low {
        // Nothing is damaged; what is left is the operator's decision about these bodies.
        let where_ = if report.repair {
            " waiting in quarantine/orphans/"
        } else {
            ""
        };
        format!(
            "{} unreferenced message bodies{where_}, possibly lost mail ({checked})",
            report.unreferenced_bodies()
        )
    } else if report.repair {
        format!(
            "{outstanding} problems not fixed, {} repaired, {} damaged blobs quarantined, \
             {} messages affected{bodies}{disk} ({checked})",
            report.repaired.len(),
            report.quarantined.len(),
            report.affected_messages.len()
        )
    } else {
        format!(
            "{outstanding} problems: {} database, {} damaged blobs ({} messages affected), \
             {} reference counts{bodies}{disk} ({checked})",
            report.database.len(),
            report.damaged_blobs.len(),
            report.affected_messages.len(),
            report.refcount_mismatches.len()
        )
    }
}

/// What the operator should do about an unhealthy result.
fn hint(report: &CheckReport, disk_low: bool) -> String {
    let mut hints = Vec::new();
    if report.repair {
        if !report.not_fixed.is_empty() {
            hints.push(
                "the repair could not fix everything (see \"not fixed\" above): damaged mail \
                 must be restored from a backup"
                    .to_string(),
            );
        }
    } else if report.problems() > 0 {
        let mut line = "the store has problems (listed above); `tegami check --repair` fixes \
                        what can be fixed without loss"
            .to_string();
        if !report.damaged_blobs.is_empty() {
            line.push_str(
                " and quarantines damaged blobs; the affected messages then need a restore \
                 from a backup",
            );
        }
        hints.push(line);
    }
    let bodies = report.unreferenced_bodies();
    if bodies > 0 {
        let mut line = format!(
            "{bodies} message bodies are named by no message: they may be mail whose index \
             entry a crash lost. "
        );
        if !report.repair && !report.orphan_files.is_empty() {
            line.push_str(
                "`tegami check --repair` moves those in blobs/ to quarantine/orphans/ (it \
                 deletes none); ",
            );
        }
        line.push_str(&format!(
            "`tegami check --recover-orphans --account ADDRESS` puts every one into that \
             account's Recovered mailbox as unread mail; if you know they are not needed, \
             delete {ORPHANS_DIR}/ in the data directory instead"
        ));
        hints.push(line);
    }
    if disk_low {
        hints.push(format!(
            "the data volume has less than {} free: tegami refuses every write below that; \
             free some space",
            human_bytes(DISK_FLOOR)
        ));
    }
    hints.join("; ")
}

/// What the optimisation did, in one line.
fn what_was_done(report: &OptimizeReport) -> String {
    let mut done = format!(
        "{} pages freed, {} orphan blob files removed, {} quarantined, {} reclaimed; \
         WAL {} -> {}; database {} -> {}",
        report.pages_freed,
        report.orphans_removed,
        report.orphans_quarantined,
        human_bytes(report.bytes_reclaimed()),
        human_bytes(report.wal_bytes_before),
        human_bytes(report.wal_bytes_after),
        human_bytes(report.database_bytes_before),
        human_bytes(report.database_bytes_after),
    );
    if !report.not_done.is_empty() {
        done.push_str(&format!(
            "; {} steps not done (see the report)",
            report.not_done.len()
        ));
    }
    done
}

struct Disk {
    text: String,
    low: bool,
}

/// Free space and inodes of the data volume, for the report.
fn disk_line(data_dir: &Path) -> Disk {
    match gate::disk::free_space(data_dir) {
        Ok((free, inodes)) => Disk {
            text: format!(
                "data volume: {} free, {inodes} inodes free{}",
                human_bytes(free),
                if free < DISK_FLOOR {
                    format!(" -- below {}: writes are refused", human_bytes(DISK_FLOOR))
                } else {
                    String::new()
                }
            ),
            low: free < DISK_FLOOR,
        },
        Err(e) => Disk {
            text: format!(
                "data volume: free space not measured ({e}) in {}",
                data_dir.display()
            ),
            low: false,
        },
    }
}

fn times(started: &jiff::Zoned, finished: &jiff::Zoned, seconds: f64, trigger: Trigger) -> String {
    const FORMAT: &str = "%Y-%m-%d %H:%M:%S %z";
    format!(
        "{} run, started {}, finished {} ({seconds:.1} s)",
        trigger.label(),
        started.strftime(FORMAT),
        finished.strftime(FORMAT)
    )
}

fn progress_bar() -> indicatif::ProgressBar {
    let bar =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "verifying blobs {wide_bar} {pos}/{len} ({per_sec}, {eta} left)",
    ) {
        bar.set_style(style);
    }
    bar
}

/// A log line that cannot be written must not hide the report itself (a full disk is one
/// reason to run the check), so the failure is only told, not returned.
fn log_line(log_dir: &Path, name: &str, clock: &gate::Clock, line: &str) {
    if let Err(e) = oplog::append(log_dir, name, &clock.now(), line) {
        tracing::warn!(error = %e, log = name, "cannot append to the operations log");
        eprintln!("tegami: cannot write {}: {e}", log_dir.join(name).display());
    }
}

fn replace_log(log_dir: &Path, name: &str, content: &str) {
    if let Err(e) = oplog::replace(log_dir, name, content) {
        tracing::warn!(error = %e, log = name, "cannot replace the result log");
        eprintln!("tegami: cannot write {}: {e}", log_dir.join(name).display());
    }
}
