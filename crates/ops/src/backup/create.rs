//! Taking a backup: the store's snapshot with progress, an optional verification, the
//! verdict (a backup that left damaged mail out or does not verify is a failed one), and
//! the history and result logs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use gate::Clock;
use store::backup::{self as stored, CreateOptions, CreateReport, Manifest, VerifyReport};
use store::human_bytes;

use super::{
    Trigger, abbreviated, counts, first_problems, from_backup_in, log_line, replace_result,
    verdict, verify_path,
};
use crate::config::BackupConfig;
use crate::error::Result;
use crate::progress::{Reporter, Unit, for_store};

/// A backup to take now.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    /// The backup directory; None: the configured one (`[backup] dir`, else DATA/backups).
    pub dir: Option<PathBuf>,
    /// Copy every blob even where a hard link to the live store would do.
    pub copy_blobs: bool,
    /// Verify the new backup completely before saying it is done.
    pub verify: bool,
    pub trigger: Trigger,
}

/// A backup that was taken. It may still have failed its purpose: see [`Created::damage`].
#[derive(Debug, Clone)]
pub struct Created {
    pub trigger: Trigger,
    pub backup: CreateReport,
    /// How long taking it took, before any verification.
    pub taken_seconds: f64,
    /// The verification's report, when one was asked for.
    pub verified: Option<VerifyReport>,
}

impl Created {
    pub fn id(&self) -> &str {
        &self.backup.manifest.id
    }

    /// What is wrong, in one line, when the backup left damaged blobs out or does not
    /// verify: such a backup must not look like a good one to a script or a cron job.
    pub fn damage(&self) -> Option<String> {
        let id = self.id();
        match (&self.verified, self.backup.damaged.len()) {
            (Some(v), _) if !v.is_ok() => Some(format!(
                "DAMAGED: backup {id} does not verify: {}; do not rely on it",
                first_problems(v)
            )),
            (_, 0) => None,
            (_, n) => Some(format!(
                "DAMAGED: {n} blobs of the live store are damaged or missing and were left out \
                 of backup {id} (listed below and in its damaged.txt); their messages cannot \
                 be restored from it: run `tegami check`",
            )),
        }
    }

    /// The report in lines, damage first: what `backup create` prints and
    /// `log/backup_result.log` holds below its result line.
    pub fn summary(&self) -> String {
        let report = &self.backup;
        let m = &report.manifest;
        let mut summary = String::new();
        if let Some(headline) = self.damage() {
            summary.push_str(&format!("{headline}\n"));
        }
        summary.push_str(&format!(
            "backup {} taken in {:.1} s: {}\n",
            m.id,
            self.taken_seconds,
            counts(m)
        ));
        summary.push_str(&format!("  path: {}\n", report.path.display()));
        summary.push_str(&format!(
            "  blobs: {} hard-linked ({} from the previous backup{}), {} copied ({}); database {}\n",
            m.blobs_linked,
            report.linked_from_previous,
            report
                .previous
                .as_ref()
                .map_or(String::new(), |p| format!(" {p}")),
            m.blobs_copied,
            human_bytes(m.bytes_copied),
            human_bytes(m.database_bytes)
        ));
        if let Some(checked) = &m.checked {
            summary.push_str(&format!(
                "  checked: {} blobs read and hashed, {} trusted from the previous backup's check\n",
                checked.hashed, checked.trusted
            ));
        }
        summary.push_str(&format!("  secrets: {}\n", secrets_line(m)));
        for skipped in &report.secrets_skipped {
            summary.push_str(&format!("  not backed up: {skipped}\n"));
        }
        if m.snapshots > 1 {
            summary.push_str(&format!(
                "  {} snapshots: mail was deleted while the backup ran\n",
                m.snapshots
            ));
        }
        for (id, why) in &report.damaged {
            summary.push_str(&format!(
                "  damaged in the live store, left out: blob {id}: {why} (run `tegami check`)\n"
            ));
        }
        for leftover in &report.leftovers_removed {
            summary.push_str(&format!("  removed an interrupted backup: {leftover}\n"));
        }
        if let Some(verification) = &self.verified {
            summary.push_str(&format!("  verified: {}\n", verdict(verification)));
            for problem in verification.problems.iter().take(20) {
                summary.push_str(&format!("  problem: {problem}\n"));
            }
        }
        summary
    }

    /// The first line of `log/backup_result.log`, after "result: ".
    fn result(&self) -> String {
        let id = self.id();
        match &self.verified {
            Some(v) if !v.is_ok() => format!("failed: backup {id} does not verify"),
            _ if !self.backup.damaged.is_empty() => format!(
                "failed: backup {id} left out {} damaged blobs of the live store",
                self.backup.damaged.len()
            ),
            _ => format!("ok: backup {id}"),
        }
    }
}

/// Takes a backup online, verifies it if asked, and logs the run: a line when it starts
/// and when it ends in `log/backup.log`, the result and summary in
/// `log/backup_result.log`. A backup that could not be taken leaves nothing behind but
/// those logs and is an error; one that was taken but is damaged is a report whose
/// `damage()` says so.
pub fn create(
    data: &Path,
    settings: &BackupConfig,
    clock: &Clock,
    request: &CreateRequest,
    progress: &Reporter,
) -> Result<Created> {
    let root = request.dir.clone().unwrap_or_else(|| settings.root(data));
    let log_dir = data.join("log");
    let started_at = clock.now();
    let started = Instant::now();
    let trigger = request.trigger;
    let label = trigger.label();
    log_line(
        &log_dir,
        clock,
        &format!("backup started ({label}) into {}", root.display()),
    );
    let now = started_at.timestamp().as_second();
    let mut options = CreateOptions::new(
        root.clone(),
        stored::compact_utc(now),
        super::stored(trigger),
        now,
    );
    options.copy_blobs = request.copy_blobs;
    options.config_file = settings.config_file.clone();
    options.progress = Some(for_store(progress));
    progress.phase("backing up", Unit::Bytes, None);
    let result = stored::create(data, &options);
    progress.finish();
    let backup = match result {
        Ok(backup) => backup,
        Err(e) => {
            let seconds = started.elapsed().as_secs_f64();
            log_line(
                &log_dir,
                clock,
                &format!("backup failed after {seconds:.1} s: {e}"),
            );
            replace_result(
                &log_dir,
                &format!(
                    "result: failed: {e}\n{}\n",
                    trigger.run_times(&started_at, &clock.now(), seconds)
                ),
            );
            return Err(from_backup_in(
                format_args!(
                    "the backup into {} could not be taken (nothing was left behind)",
                    root.display()
                ),
                e,
            ));
        }
    };
    let taken_seconds = started.elapsed().as_secs_f64();
    let verified = if request.verify {
        Some(verify_path(&backup.path, progress)?)
    } else {
        None
    };
    let created = Created {
        trigger,
        backup,
        taken_seconds,
        verified,
    };
    let seconds = started.elapsed().as_secs_f64();
    let m = &created.backup.manifest;
    log_line(
        &log_dir,
        clock,
        &format!(
            "backup {} finished ({label}) in {seconds:.1} s: {}; {} linked, {} copied ({}){}",
            m.id,
            counts(m),
            m.blobs_linked,
            m.blobs_copied,
            human_bytes(m.bytes_copied),
            match created.verified.as_ref().map(VerifyReport::is_ok) {
                Some(true) => ", verified",
                Some(false) => ", VERIFY FAILED",
                None => "",
            }
        ),
    );
    replace_result(
        &log_dir,
        &format!(
            "result: {}\n{}\n{}",
            created.result(),
            trigger.run_times(&started_at, &clock.now(), seconds),
            created.summary()
        ),
    );
    Ok(created)
}

/// What a backup holds besides the store, in one line.
fn secrets_line(m: &Manifest) -> String {
    let Some(secrets) = &m.secrets else {
        return "none (taken before backups held secrets)".into();
    };
    let files: Vec<&str> = secrets
        .iter()
        .filter(|s| s.file.is_some() && s.origin.is_none())
        .map(|s| s.path.as_str())
        .collect();
    let mut line = if files.is_empty() {
        "no DKIM key, newsletter.key or ACME state in the data directory".to_string()
    } else {
        format!("{} files ({})", files.len(), abbreviated(&files, 4))
    };
    match secrets.iter().find(|s| s.origin.is_some()) {
        Some(config) => line.push_str(&format!(
            "; config file {}",
            config.origin.as_deref().unwrap_or_default()
        )),
        None => line.push_str("; no config file (none was given with --config)"),
    }
    line
}
