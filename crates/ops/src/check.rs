//! The integrity check, the optimisation and the recovery of unreferenced message bodies,
//! with their result logs in `log/` (`maintenance.log`, `maintenance_result.log`,
//! `optimize.log`, `optimize_result.log`). The CLI runs them by hand and the server's daily
//! schedule runs them alike; neither sets maintenance mode, both run beside a live server.
//!
//! The report is returned as data and as the text the result log holds; what a face shows
//! of it (the whole report, a hint, one line in the server's log) is the face's business.

use std::path::Path;
use std::time::Instant;

use gate::oplog;
use store::{
    CheckOptions, CheckReport, ORPHANS_DIR, OptimizeReport, OrphanRecovery, Store, human_bytes,
};

use crate::error::IoContext;
use crate::progress::{Reporter, Unit, for_store};
use crate::{Error, Ops, Result};

/// Below this much free space on the data volume the disk guard refuses every write (the
/// default hard floor, as in the manual), so the check counts it as a problem.
pub const DISK_FLOOR: u64 = 10 << 20;

pub use crate::progress::Trigger;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckRequest {
    /// Fix what can be fixed without loss, quarantine damaged blobs and unreferenced bodies.
    pub repair: bool,
    pub trigger: Trigger,
}

/// What a check found.
#[derive(Debug, Clone)]
pub struct CheckOutcome {
    /// False when the check found problems (after a repair: problems it could not fix), or
    /// the data volume is nearly full.
    pub healthy: bool,
    /// The one-line outcome, as `maintenance.log` and the result log's first line say it.
    pub verdict: String,
    /// The whole report, as written to `log/maintenance_result.log`.
    pub summary: String,
    /// What the operator should do, when the store is not healthy.
    pub hint: Option<String>,
    pub seconds: f64,
    pub report: CheckReport,
}

/// What an optimisation did.
#[derive(Debug, Clone)]
pub struct OptimizeOutcome {
    /// What was done, in one line.
    pub done: String,
    /// The whole report, as written to `log/optimize_result.log`.
    pub summary: String,
    pub seconds: f64,
    pub report: OptimizeReport,
}

/// What the recovery of orphans did, with the line it logged.
#[derive(Debug, Clone)]
pub struct RecoveryOutcome {
    /// The one line written to `maintenance.log`.
    pub line: String,
    /// Where the files that could not be taken back wait (`quarantine/orphans/`).
    pub orphans_dir: std::path::PathBuf,
    pub report: OrphanRecovery,
}

impl RecoveryOutcome {
    /// False when some files could not be taken back and are still waiting.
    pub fn complete(&self) -> bool {
        self.report.left.is_empty()
    }
}

impl Ops {
    pub fn check(&self, request: &CheckRequest, progress: &Reporter) -> Result<CheckOutcome> {
        check(
            self.store().as_ref(),
            self.data(),
            self.clock(),
            request,
            progress,
        )
    }

    pub fn optimize(&self, trigger: Trigger, progress: &Reporter) -> Result<OptimizeOutcome> {
        optimize(
            self.store().as_ref(),
            self.data(),
            self.clock(),
            trigger,
            progress,
        )
    }

    /// Appends every unreferenced message body to `mailbox` of `account`, unread (the logic
    /// is the store's, `SqliteStore::recover_orphans`), and logs one line in
    /// `maintenance.log`.
    pub fn recover_orphans(
        &self,
        account: &str,
        mailbox: &str,
        progress: &Reporter,
    ) -> Result<RecoveryOutcome> {
        let log_dir = self.data().join("log");
        let clock = self.clock();
        let report = match self.sqlite().recover_orphans(account, mailbox) {
            Ok(report) => report,
            Err(e) => {
                let line = format!("recover-orphans failed: {e}");
                log_line(&log_dir, "maintenance.log", clock, &line, progress);
                return Err(could_not_finish("the recovery of orphans", &e));
            }
        };
        let line = recovery_line(&report);
        log_line(&log_dir, "maintenance.log", clock, &line, progress);
        Ok(RecoveryOutcome {
            line,
            orphans_dir: self.data().join(ORPHANS_DIR),
            report,
        })
    }
}

/// The check on any store: for callers that hold a store but no [`Ops`] (the server's
/// schedule). The store's verification of blobs is reported as the phase "verifying blobs".
pub fn check(
    store: &dyn Store,
    data: &Path,
    clock: &gate::Clock,
    request: &CheckRequest,
    progress: &Reporter,
) -> Result<CheckOutcome> {
    let CheckRequest { repair, trigger } = *request;
    let log_dir = data.join("log");
    let what = if repair { "check --repair" } else { "check" };
    let started_at = clock.now();
    let started = Instant::now();
    log_line(
        &log_dir,
        "maintenance.log",
        clock,
        &format!("{what} started ({})", trigger.label()),
        progress,
    );

    progress.phase("verifying blobs", Unit::Items, None);
    let options = CheckOptions {
        repair,
        progress: Some(for_store(progress)),
    };
    let result = store.check(&options);
    progress.finish();
    let seconds = started.elapsed().as_secs_f64();
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            let line = format!("{what} failed after {seconds:.1} s: {e}");
            log_line(&log_dir, "maintenance.log", clock, &line, progress);
            replace_log(
                &log_dir,
                "maintenance_result.log",
                &format!(
                    "result: {line}\n{}\n",
                    trigger.run_times(&started_at, &clock.now(), seconds)
                ),
                progress,
            );
            return Err(could_not_finish(&format!("the {what}"), &e));
        }
    };

    let disk = disk_line(data);
    let outstanding = report.outstanding() + usize::from(disk.low);
    let healthy = outstanding == 0;
    let verdict = verdict(&report, disk.low, outstanding);
    let summary = format!(
        "result: {verdict}\n{}\n{}\n{report:#}",
        trigger.run_times(&started_at, &clock.now(), seconds),
        disk.text
    );
    log_line(
        &log_dir,
        "maintenance.log",
        clock,
        &format!("{what} finished: {verdict} in {seconds:.1} s"),
        progress,
    );
    replace_log(&log_dir, "maintenance_result.log", &summary, progress);
    let hint = (!healthy).then(|| hint(&report, disk.low));
    Ok(CheckOutcome {
        healthy,
        verdict,
        summary,
        hint,
        seconds,
        report,
    })
}

/// The optimisation on any store, like [`check`].
pub fn optimize(
    store: &dyn Store,
    data: &Path,
    clock: &gate::Clock,
    trigger: Trigger,
    progress: &Reporter,
) -> Result<OptimizeOutcome> {
    let log_dir = data.join("log");
    let started_at = clock.now();
    let started = Instant::now();
    log_line(
        &log_dir,
        "optimize.log",
        clock,
        &format!("optimize started ({})", trigger.label()),
        progress,
    );
    // The store's steps report no counts, so there is no phase to draw: the optimisation
    // of a large store takes seconds, not minutes.
    let result = store.optimize();
    progress.finish();
    let seconds = started.elapsed().as_secs_f64();
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            let line = format!("optimize failed after {seconds:.1} s: {e}");
            log_line(&log_dir, "optimize.log", clock, &line, progress);
            replace_log(
                &log_dir,
                "optimize_result.log",
                &format!(
                    "result: {line}\n{}\n",
                    trigger.run_times(&started_at, &clock.now(), seconds)
                ),
                progress,
            );
            return Err(could_not_finish("the optimisation", &e));
        }
    };
    let done = what_was_done(&report);
    let summary = format!(
        "result: {done}\n{}\n{report}",
        trigger.run_times(&started_at, &clock.now(), seconds)
    );
    log_line(
        &log_dir,
        "optimize.log",
        clock,
        &format!("optimize finished in {seconds:.1} s: {done}"),
        progress,
    );
    replace_log(&log_dir, "optimize_result.log", &summary, progress);
    Ok(OptimizeOutcome {
        done,
        summary,
        seconds,
        report,
    })
}

/// The result logs a face can offer, by what ran: the latest run's report, replaced by
/// each run. (The backup's is written by `ops::backup`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultLog {
    Check,
    Optimize,
    Backup,
}

impl ResultLog {
    pub const ALL: [ResultLog; 3] = [ResultLog::Check, ResultLog::Optimize, ResultLog::Backup];

    /// The file's name in `log/`.
    pub fn file(self) -> &'static str {
        match self {
            ResultLog::Check => "maintenance_result.log",
            ResultLog::Optimize => "optimize_result.log",
            ResultLog::Backup => "backup_result.log",
        }
    }

    /// The file, relative to the data directory.
    pub fn path(self) -> String {
        format!("log/{}", self.file())
    }

    /// Whether the result line (after `result: `) says the run went well: a check only
    /// when it says "healthy" (the doctor judges by the same rule), the others unless they
    /// failed.
    pub fn good(self, result: &str) -> bool {
        match self {
            ResultLog::Check => result.starts_with("healthy"),
            ResultLog::Optimize => !result.starts_with("optimize failed"),
            ResultLog::Backup => !result.starts_with("failed"),
        }
    }
}

/// The latest run's result as its result log says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastResult {
    pub log: ResultLog,
    /// When the log was written (Unix seconds).
    pub written: i64,
    /// The first line without its `result: `.
    pub result: String,
    /// Who ran it and when (the log's second line).
    pub run: String,
    pub good: bool,
}

/// The latest result of `log`, or `None` when it never ran. Reads only the file's head.
pub fn last_result(data: &Path, log: ResultLog) -> Result<Option<LastResult>> {
    use std::io::Read;
    let path = data.join("log").join(log.file());
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).io_context(|| format!("cannot read {}", path.display())),
    };
    let written = file
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| jiff::Timestamp::try_from(t).ok())
        .map_or(0, |t| t.as_second());
    let mut head = Vec::new();
    file.take(4096)
        .read_to_end(&mut head)
        .io_context(|| format!("cannot read {}", path.display()))?;
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.lines().map(str::trim);
    let first = lines.next().unwrap_or("");
    let result = first
        .strip_prefix("result:")
        .unwrap_or(first)
        .trim()
        .to_string();
    let run = lines.next().unwrap_or("").to_string();
    Ok(Some(LastResult {
        log,
        written,
        good: log.good(&result),
        result,
        run,
    }))
}

/// "the check could not finish: <the store's error and its causes>".
fn could_not_finish(what: &str, error: &dyn std::error::Error) -> Error {
    let mut line = format!("{what} could not finish: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        line.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    Error::failed(line)
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
    let index = match report.text_index.len() {
        0 => String::new(),
        n => format!(", {n} in the full-text index"),
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
             {} reference counts{index}{bodies}{disk} ({checked})",
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
fn disk_line(data: &Path) -> Disk {
    match gate::disk::free_space(data) {
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
                data.display()
            ),
            low: false,
        },
    }
}

/// A log line that cannot be written must not hide the report itself (a full disk is one
/// reason to run the check), so the failure is only told (as a note to the face), not
/// returned.
fn log_line(log_dir: &Path, name: &str, clock: &gate::Clock, line: &str, progress: &Reporter) {
    if let Err(e) = oplog::append(log_dir, name, &clock.now(), line) {
        tracing::warn!(error = %e, log = name, "cannot append to the operations log");
        progress.note(&format!(
            "cannot write {}: {e}",
            log_dir.join(name).display()
        ));
    }
}

fn replace_log(log_dir: &Path, name: &str, content: &str, progress: &Reporter) {
    if let Err(e) = oplog::replace(log_dir, name, content) {
        tracing::warn!(error = %e, log = name, "cannot replace the result log");
        progress.note(&format!(
            "cannot write {}: {e}",
            log_dir.join(name).display()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_healthy_report_says_just_healthy_with_its_counts() {
        let report = CheckReport {
            messages: 3,
            blobs: 2,
            ..CheckReport::default()
        };
        assert_eq!(
            verdict(&report, false, 0),
            "healthy (3 messages, 2 blobs checked)"
        );
    }

    #[test]
    fn a_nearly_full_volume_is_a_problem_with_a_hint() {
        let report = CheckReport::default();
        let line = verdict(&report, true, 1);
        assert!(line.starts_with("1 problems:"), "{line}");
        assert!(line.contains("data volume nearly full"), "{line}");
        assert!(hint(&report, true).contains("free some space"));
    }

    #[test]
    fn the_last_result_is_read_from_its_log_and_judged() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(last_result(dir.path(), ResultLog::Check).unwrap(), None);
        std::fs::create_dir(dir.path().join("log")).unwrap();
        let write = |log: ResultLog, text: &str| {
            std::fs::write(dir.path().join("log").join(log.file()), text).unwrap();
            last_result(dir.path(), log).unwrap().unwrap()
        };
        let healthy = write(
            ResultLog::Check,
            "result: healthy (3 messages, 2 blobs checked)\nmanual run, started x\nmore\n",
        );
        assert!(healthy.good);
        assert_eq!(healthy.result, "healthy (3 messages, 2 blobs checked)");
        assert_eq!(healthy.run, "manual run, started x");
        assert!(healthy.written > 0);
        assert!(!write(ResultLog::Check, "result: 2 problems: 1 database\n").good);
        assert!(
            !write(
                ResultLog::Optimize,
                "result: optimize failed after 0.1 s: x\n"
            )
            .good
        );
        assert!(write(ResultLog::Optimize, "result: 3 pages freed\n").good);
        assert!(!write(ResultLog::Backup, "result: failed: disk full\n").good);
        assert!(write(ResultLog::Backup, "result: ok: backup 20261207T0300Z\n").good);
    }

    #[test]
    fn the_causes_of_a_failure_follow_it() {
        let inner = std::io::Error::other("disk on fire");
        let e = could_not_finish(
            "the check",
            &store::StoreError::Io {
                path: "db".into(),
                source: inner,
            },
        );
        assert!(
            e.to_string().starts_with("the check could not finish: "),
            "{e}"
        );
        assert!(e.to_string().contains("disk on fire"), "{e}");
    }
}
