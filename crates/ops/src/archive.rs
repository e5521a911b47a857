//! Archives of old mail: create (and its dry run), the automatic rules, list, search, export
//! as CSV or mboxrd, check, and the server's daily housekeeping that runs the automatic rules
//! and retention. The store does the moving and indexing (`store::archive`,
//! `sqlite/archive.rs`); this module parses days in the server's time zone, turns a message
//! into an index document with `imap-mime`, writes `log/archive.log` and
//! `log/archive_result.log`, and writes exports whole or not at all.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use gate::{Clock, oplog};
use serde::Serialize;
use store::archive::{Archive, ArchiveInfo, Document, SearchQuery};
use store::{ArchiveOutcome, ArchiveReport, ArchiveRequest, Phase, SqliteStore, human_bytes};

use crate::config::{AutoArchive, Config};
use crate::error::{Error, Result};
use crate::progress::{Reporter, Unit};
use crate::{Ops, files};

impl PlanReport {
    /// Whether the run has room: what it writes plus the reserve the disk guard keeps must
    /// be free (`archive create` refuses otherwise, with these figures).
    pub fn fits(&self) -> bool {
        self.needed_bytes.saturating_add(self.reserve_bytes) <= self.free_bytes
    }
}

/// `archive create`: what goes (mail before a day, of one account or all) and its name.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    /// `YYYY-MM-DD`: mail whose internal date is before this day's local midnight.
    pub before: String,
    pub account: Option<String>,
    pub label: Option<String>,
}

/// What `archive create --dry-run` measured: nothing was changed.
#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    pub before: String,
    pub messages: u64,
    pub bytes: u64,
    pub accounts: Vec<String>,
    /// What the run writes, what must stay free besides (the disk guard's hard floor), and
    /// what is free now.
    pub needed_bytes: u64,
    pub reserve_bytes: u64,
    pub free_bytes: u64,
    /// The archive is on another file system than the blobs, so bodies are copied.
    pub copies_bodies: bool,
}

/// What `archive create` did. The serialised fields (in alphabetical order, as the CLI's
/// JSON has always had them) describe the new archive, if one was made; `lines` is the text
/// the CLI shows and the log keeps.
#[derive(Debug, Clone, Serialize)]
pub struct CreateReport {
    pub bytes: u64,
    pub dir: Option<String>,
    pub first: Option<String>,
    pub id: Option<String>,
    pub label: Option<String>,
    pub last: Option<String>,
    pub messages: u64,
    /// Ids of the archives an interrupted run had left, finished first.
    pub resumed: Vec<String>,
    /// Messages left live because their body could not be read, each with the reason.
    pub skipped: Vec<String>,
    pub withdrawn: u64,
    /// One line per resumed archive ("resumed archive 2: ...").
    #[serde(skip)]
    pub resumed_lines: Vec<String>,
    /// "archive N created: ..." or "nothing to archive before ...".
    #[serde(skip)]
    pub line: String,
}

/// One archive as `archive list` shows it (JSON fields in alphabetical order, as always).
#[derive(Debug, Clone, Serialize)]
pub struct ListEntry {
    pub accounts: Vec<String>,
    /// The day every message was before, in the server's time zone.
    pub before: String,
    pub bytes: u64,
    /// RFC 3339 in the server's time zone.
    pub created: String,
    pub dir: String,
    pub disk_bytes: u64,
    /// Days of the oldest and newest message, "-" when there is none.
    pub first: String,
    pub id: String,
    pub label: String,
    pub last: String,
    pub messages: u64,
    pub state: String,
}

/// `archive search`: every condition given must hold.
#[derive(Debug, Clone, Default)]
pub struct SearchRequest {
    pub id: u32,
    /// Words that must all occur; none means any message.
    pub words: Vec<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub subject: Option<String>,
    /// `YYYY-MM-DD`: internal date on or after, and before, in the server's time zone.
    pub since: Option<String>,
    pub until: Option<String>,
    pub account: Option<String>,
    pub limit: Option<usize>,
}

/// One message found (JSON fields in alphabetical order, as always).
#[derive(Debug, Clone, Serialize)]
pub struct SearchHit {
    pub account: String,
    /// The internal date, RFC 3339 in the server's time zone.
    pub date: String,
    pub from: String,
    pub mailbox: String,
    pub message_id: String,
    pub size: u64,
    pub subject: String,
    pub to: String,
    pub uid: u32,
    /// The internal date's day, for listings.
    #[serde(skip)]
    pub day: String,
}

/// `archive export`: which archive, what to write where, and of whom.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    pub id: u32,
    pub format: ExportFormat,
    pub account: Option<String>,
    /// Only this mailbox (mbox only: the CSV lists every mailbox).
    pub mailbox: Option<String>,
}

#[derive(Debug, Clone)]
pub enum ExportFormat {
    /// The message list, one row a message.
    Csv(PathBuf),
    /// The messages themselves, as mboxrd.
    Mbox(PathBuf),
}

#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    pub id: u32,
    pub file: PathBuf,
    pub messages: u64,
    /// The bodies' bytes written (mbox only; zero for the CSV).
    pub bytes: u64,
}

/// What `archive check` found, archive by archive.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub archives: Vec<CheckedArchive>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckedArchive {
    pub id: u32,
    pub dir: PathBuf,
    pub messages: u64,
    pub blobs: u64,
    pub bytes: u64,
    /// One line each, naming the file or the message; none when healthy.
    pub problems: Vec<String>,
}

impl CheckedArchive {
    pub fn is_healthy(&self) -> bool {
        self.problems.is_empty()
    }

    /// The verdict in one line, as `archive check` prints it (the problems follow it).
    pub fn line(&self) -> String {
        if self.is_healthy() {
            format!(
                "archive {}: healthy: {} messages, {} bodies ({}) verified",
                self.id,
                self.messages,
                self.blobs,
                human_bytes(self.bytes)
            )
        } else {
            format!(
                "archive {}: {} problems in {}",
                self.id,
                self.problems.len(),
                self.dir.display()
            )
        }
    }
}

impl CheckReport {
    pub fn is_healthy(&self) -> bool {
        self.archives.iter().all(CheckedArchive::is_healthy)
    }
}

/// What the retention rules did (or, in a dry run, would do), one entry per rule.
#[derive(Debug, Clone, Serialize)]
pub struct RetentionReport {
    pub dry_run: bool,
    pub rules: Vec<Expiry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Expiry {
    pub mailbox: String,
    pub days: u32,
    pub messages: u64,
    pub bytes: u64,
    /// "retention: Trash: 3 messages removed (1.2 KiB), older than 30 days", as logged.
    pub line: String,
}

impl Ops {
    /// Measures what `archive create` would move and the space it needs; changes nothing.
    pub fn archive_plan(&self, request: &CreateRequest) -> Result<PlanReport> {
        let store_request = store_request(request, self.config(), self.clock())?;
        let plan = self.sqlite().archive_plan(&store_request)?;
        Ok(PlanReport {
            before: request.before.clone(),
            messages: plan.messages,
            bytes: plan.bytes,
            accounts: plan.accounts,
            needed_bytes: plan.needed_bytes,
            reserve_bytes: store_request.reserve_bytes,
            free_bytes: plan.free_bytes,
            copies_bodies: plan.copies_bodies,
        })
    }

    /// Moves the mail before a day into a new archive, online, finishing first any archive
    /// an interrupted run left. Logs to `log/archive.log` and replaces
    /// `log/archive_result.log`, also when it fails.
    pub fn archive_create(
        &self,
        request: &CreateRequest,
        progress: &Reporter,
    ) -> Result<CreateReport> {
        let (data, clock) = (self.data(), self.clock());
        let store_request = store_request(request, self.config(), clock)?;
        let before = &request.before;
        let started = clock.now();
        let phases = Phases::new(progress);
        let result = self
            .sqlite()
            .archive_create(&store_request, &document, &|p, d, t| phases.show(p, d, t));
        progress.finish();
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(e) => {
                let line = format!("archive before {before} failed: {e}");
                log(data, "archive.log", clock, &line);
                replace_log(
                    data,
                    "archive_result.log",
                    &format!("result: failed\n{line}\n"),
                );
                return Err(e.into());
            }
        };
        let mut resumed_lines = Vec::new();
        for report in &outcome.resumed {
            log_report(data, clock, report, "resumed");
            resumed_lines.push(format!(
                "resumed archive {}: {}",
                report.id,
                summary(report, clock)
            ));
        }
        let resumed_log: String = resumed_lines.iter().map(|l| format!("{l}\n")).collect();
        let (line, result_log) = match &outcome.created {
            Some(report) => {
                log_report(data, clock, report, "created");
                let timings: Vec<String> = report
                    .timings
                    .iter()
                    .map(|(phase, took)| format!("{} {:.1} s", phase.as_str(), took.as_secs_f64()))
                    .collect();
                let line = created_line(report, clock);
                let result_log = format!(
                    "result: ok\nstarted {}\n{line}\nphases: {}\n{}{resumed_log}",
                    started.strftime("%Y-%m-%d %H:%M:%S %z"),
                    timings.join(", "),
                    report
                        .skipped
                        .iter()
                        .map(|s| format!("skipped {s}\n"))
                        .collect::<String>()
                );
                (line, result_log)
            }
            None => {
                let line = format!("nothing to archive before {before}");
                log(data, "archive.log", clock, &line);
                let result_log = format!("result: ok\n{line}\n{resumed_log}");
                (line, result_log)
            }
        };
        replace_log(data, "archive_result.log", &result_log);
        Ok(create_report(&outcome, clock, resumed_lines, line))
    }

    /// Runs the automatic archiving rules that are due now (see [`auto`]).
    pub fn archive_auto(&self) -> Result<Vec<String>> {
        auto(self.sqlite(), self.data(), self.config(), self.clock())
    }

    /// Every archive, oldest first.
    pub fn archive_list(&self) -> Result<Vec<ListEntry>> {
        let clock = self.clock();
        let mut entries = Vec::new();
        for archive in self.sqlite().archives().list() {
            let a = archive.info()?;
            entries.push(ListEntry {
                accounts: a.accounts,
                before: date_text(Some(a.before), clock),
                bytes: a.bytes,
                created: rfc3339(a.created, clock),
                dir: a.dir.display().to_string(),
                disk_bytes: a.disk_bytes,
                first: date_text(a.first, clock),
                id: a.id.to_string(),
                label: a.label,
                last: date_text(a.last, clock),
                messages: a.messages,
                state: a.state.as_str().to_string(),
            });
        }
        Ok(entries)
    }

    /// Full-text and header search in one archive.
    pub fn archive_search(&self, request: &SearchRequest) -> Result<Vec<SearchHit>> {
        let clock = self.clock();
        let day = |d: &Option<String>| d.as_deref().map(|d| day_start(d, clock)).transpose();
        let query = SearchQuery {
            text: (!request.words.is_empty()).then(|| request.words.join(" ")),
            from: request.from.clone(),
            to: request.to.clone(),
            subject: request.subject.clone(),
            since: day(&request.since)?,
            until: day(&request.until)?,
            account: request.account.clone(),
            limit: request.limit,
        };
        let archive = self.sqlite().archives().get(request.id)?;
        Ok(archive
            .search(&query)?
            .into_iter()
            .map(|m| SearchHit {
                date: rfc3339(m.internal_date, clock),
                day: date_text(Some(m.internal_date), clock),
                account: m.account,
                from: m.from,
                mailbox: m.mailbox,
                message_id: m.message_id,
                size: m.size,
                subject: m.subject,
                to: m.to,
                uid: m.uid,
            })
            .collect())
    }

    /// Writes an archive's message list as CSV or its messages as mboxrd, replacing the file
    /// whole (a failure leaves the old file, or none).
    pub fn archive_export(
        &self,
        request: &ExportRequest,
        progress: &Reporter,
    ) -> Result<ExportReport> {
        let archive = self.sqlite().archives().get(request.id)?;
        let account = request.account.as_deref();
        let (file, (messages, bytes)) = match &request.format {
            ExportFormat::Csv(file) => (
                file,
                export_csv(&archive, file, account, self.clock(), progress)?,
            ),
            ExportFormat::Mbox(file) => (
                file,
                export_mbox(
                    &archive,
                    file,
                    account,
                    request.mailbox.as_deref(),
                    progress,
                )?,
            ),
        };
        Ok(ExportReport {
            id: request.id,
            file: file.clone(),
            messages,
            bytes,
        })
    }

    /// An archive's message list as CSV (the rows `archive export --csv` writes) into `out`,
    /// as it is read: for a face that streams it. Returns the rows written.
    pub fn archive_csv(
        &self,
        id: u32,
        account: Option<&str>,
        out: &mut dyn std::io::Write,
    ) -> Result<u64> {
        let archive = self.sqlite().archives().get(id)?;
        write_csv(&archive, out, account, self.clock())
            .map_err(|e| Error::failed(format!("the CSV of archive {id} was cut off: {e}")))
    }

    /// Verifies one archive (or all): database, full-text index, every body against its hash.
    pub fn archive_check(&self, id: Option<u32>, progress: &Reporter) -> Result<CheckReport> {
        let archives = match id {
            Some(id) => vec![self.sqlite().archives().get(id)?],
            None => self.sqlite().archives().list(),
        };
        let mut checked = Vec::new();
        for archive in archives {
            progress.phase(
                &format!("checking archive {}", archive.id()),
                Unit::Items,
                None,
            );
            let result = archive.check(&|done, total| {
                progress.total(total);
                progress.advance(done);
            });
            progress.finish();
            let report = result?;
            checked.push(CheckedArchive {
                id: report.id,
                dir: archive.dir().to_path_buf(),
                messages: report.messages,
                blobs: report.blobs,
                bytes: report.bytes,
                problems: report.problems,
            });
        }
        Ok(CheckReport { archives: checked })
    }

    /// Applies every retention rule now (see [`retention`]).
    pub fn retention_run(&self, dry_run: bool) -> Result<RetentionReport> {
        retention(
            self.sqlite(),
            self.data(),
            self.config(),
            self.clock(),
            dry_run,
        )
    }
}

/// Applies every retention rule: mail older than the rule's days leaves that mailbox in every
/// account. Each rule's line is appended to `log/retention.log` unless it is a dry run.
fn retention(
    store: &SqliteStore,
    data: &Path,
    config: &Config,
    clock: &Clock,
    dry_run: bool,
) -> Result<RetentionReport> {
    let now = clock.now().timestamp().as_second();
    let mut rules = Vec::new();
    for (mailbox, days) in &config.retention {
        let before = now - i64::from(*days) * 86_400;
        let expired = store.expire(mailbox, before, dry_run)?;
        let line = format!(
            "retention: {mailbox}: {} messages {} ({}), older than {days} days{}",
            expired.messages,
            if dry_run {
                "would be removed"
            } else {
                "removed"
            },
            human_bytes(expired.bytes),
            if dry_run { " (dry run)" } else { "" }
        );
        if !dry_run {
            log(data, "retention.log", clock, &line);
        }
        rules.push(Expiry {
            mailbox: mailbox.clone(),
            days: *days,
            messages: expired.messages,
            bytes: expired.bytes,
            line,
        });
    }
    Ok(RetentionReport { dry_run, rules })
}

/// Runs the automatic archiving rules that are due (a rule is due when no archive it made
/// is younger than its `every_days`); returns what each did, one line each, as logged.
fn auto(store: &SqliteStore, data: &Path, config: &Config, clock: &Clock) -> Result<Vec<String>> {
    let now = clock.now();
    let mut lines = Vec::new();
    let archives: Vec<ArchiveInfo> = store
        .archives()
        .list()
        .iter()
        .filter_map(|a| a.info().ok())
        .collect();
    for rule in &config.archive.auto {
        let prefix = format!("{} ", rule.label);
        let last = archives
            .iter()
            .filter(|a| a.label.starts_with(&prefix))
            .map(|a| a.created)
            .max();
        let due = last.is_none_or(|created| {
            now.timestamp().as_second() - created >= i64::from(rule.every_days) * 86_400
        });
        if !due {
            continue;
        }
        let before_day = now
            .date()
            .checked_sub(jiff::Span::new().days(i64::from(rule.older_than_days)))
            .map_err(|e| {
                Error::invalid(format!("older_than_days reaches before year -9999: {e}"))
            })?;
        let before = before_day
            .to_zoned(now.time_zone().clone())
            .map_err(|e| {
                Error::failed(format!(
                    "cannot place the day in the server's time zone: {e}"
                ))
            })?
            .timestamp()
            .as_second();
        let request = ArchiveRequest {
            before,
            account: rule.account.clone(),
            label: Some(auto_label(rule, now.date())),
            batch: store::archive_batch_size(),
            reserve_bytes: config.disk.hard_floor,
        };
        let before_text = before_day.to_string();
        let outcome = store
            .archive_create(&request, &document, &|_, _, _| {})
            .map_err(|e| {
                Error::failed(format!(
                    "automatic archiving of mail before {before_text}: {}",
                    chain_text(&e)
                ))
            })?;
        for report in outcome.resumed {
            log_report(data, clock, &report, "resumed");
            lines.push(format!(
                "resumed archive {}: {}",
                report.id,
                summary(&report, clock)
            ));
        }
        match outcome.created {
            Some(report) => {
                log_report(data, clock, &report, "created (automatic)");
                lines.push(created_line(&report, clock));
            }
            None => {
                let line = format!("automatic archiving: nothing before {before_text}");
                log(data, "archive.log", clock, &line);
                lines.push(line);
            }
        }
    }
    Ok(lines)
}

/// The server's share: finish any archive an interrupted run left (at start), then once a
/// day (at start, and early each day) the retention rules and the automatic archiving
/// rules that are due. Each runs on a blocking thread; failures are logged and tried again
/// at the next turn.
pub async fn housekeeping(ops: Arc<Ops>, mut stop: net::Shutdown) {
    let blocking = |f: Box<dyn FnOnce() -> Result<()> + Send>| async move {
        match tokio::task::spawn_blocking(f).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = e.one_line(), "housekeeping failed"),
            Err(e) => tracing::error!(error = %e, "housekeeping task failed"),
        }
    };
    {
        let ops = ops.clone();
        blocking(Box::new(move || {
            for report in ops.sqlite().archive_resume(&|_, _, _| {})? {
                log_report(ops.data(), ops.clock(), &report, "resumed at start");
            }
            Ok(())
        }))
        .await;
    }
    let config = ops.config();
    if config.retention.is_empty() && config.archive.auto.is_empty() {
        return;
    }
    let mut done_on = None;
    loop {
        let today = ops.clock().now().date();
        if done_on == Some(today) {
            if !stop
                .pause(tokio::time::sleep(std::time::Duration::from_secs(600)))
                .await
            {
                return;
            }
            continue;
        }
        done_on = Some(today);
        if !config.retention.is_empty() {
            let ops = ops.clone();
            blocking(Box::new(move || {
                for rule in ops.retention_run(false)?.rules {
                    tracing::info!("{}", rule.line);
                }
                Ok(())
            }))
            .await;
        }
        if stop.is_shutting_down() {
            return;
        }
        if !config.archive.auto.is_empty() {
            let ops = ops.clone();
            blocking(Box::new(move || {
                for line in ops.archive_auto()? {
                    tracing::info!("{line}");
                }
                Ok(())
            }))
            .await;
        }
    }
}

/// What the index keeps of a message: header fields for listings and the decoded text.
pub fn document(raw: &[u8]) -> Document {
    let message = imap_mime::Message::parse(raw);
    let field = |name: &str| message.header_text(name).unwrap_or_default();
    let mut to = field("To");
    let cc = field("Cc");
    if !cc.is_empty() {
        if !to.is_empty() {
            to.push_str(", ");
        }
        to.push_str(&cc);
    }
    // The store cuts the text at `MAX_INDEXED_TEXT` for every indexer.
    let text = message.plain_text();
    Document {
        sent_date: message.sent_date(),
        from: field("From"),
        to,
        subject: field("Subject"),
        message_id: field("Message-ID"),
        text,
    }
}

/// An error and its causes, outermost first, joined as anyhow's `{:#}` joins them.
pub(crate) fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cause = e.source();
    while let Some(c) = cause {
        parts.push(c.to_string());
        cause = c.source();
    }
    parts.join(": ")
}

fn store_request(
    request: &CreateRequest,
    config: &Config,
    clock: &Clock,
) -> Result<ArchiveRequest> {
    Ok(ArchiveRequest {
        before: day_start(&request.before, clock)?,
        account: request.account.clone(),
        label: request.label.clone(),
        batch: store::archive_batch_size(),
        reserve_bytes: config.disk.hard_floor,
    })
}

fn create_report(
    outcome: &ArchiveOutcome,
    clock: &Clock,
    resumed_lines: Vec<String>,
    line: String,
) -> CreateReport {
    let created = outcome.created.as_ref();
    CreateReport {
        bytes: created.map_or(0, |r| r.bytes),
        dir: created.map(|r| r.dir.display().to_string()),
        first: created.map(|r| date_text(r.first, clock)),
        id: created.map(|r| r.id.to_string()),
        label: created.map(|r| r.label.clone()),
        last: created.map(|r| date_text(r.last, clock)),
        messages: created.map_or(0, |r| r.messages),
        resumed: outcome.resumed.iter().map(|r| r.id.to_string()).collect(),
        skipped: created.map_or(Vec::new(), |r| r.skipped.clone()),
        withdrawn: created.map_or(0, |r| r.withdrawn),
        resumed_lines,
        line,
    }
}

/// The store's `(phase, done, total)` callback, one reporter phase per archive phase.
struct Phases<'a> {
    progress: &'a Reporter,
    current: Mutex<Option<Phase>>,
}

impl<'a> Phases<'a> {
    fn new(progress: &'a Reporter) -> Phases<'a> {
        Phases {
            progress,
            current: Mutex::new(None),
        }
    }

    fn show(&self, phase: Phase, done: u64, total: u64) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if *current != Some(phase) {
            self.progress
                .phase(&format!("{:<8}", phase.as_str()), Unit::Items, Some(total));
            *current = Some(phase);
        }
        self.progress.total(total);
        self.progress.advance(done);
    }
}

fn export_csv(
    archive: &Archive,
    file: &Path,
    account: Option<&str>,
    clock: &Clock,
    progress: &Reporter,
) -> Result<(u64, u64)> {
    progress.phase("exporting", Unit::Items, None);
    let result = files::replace_file(file, |out| {
        write_csv(archive, out, account, clock)
            .map_err(|e| Error::failed(format!("cannot write {}: {e}", file.display())))
    });
    progress.finish();
    Ok((result?, 0))
}

/// The message list as CSV into `out`, one row a message: what `archive export --csv`
/// writes and the console sends. Returns the rows written; the error is the cause alone,
/// for the caller to say where it was writing.
/// The columns of `archive export --csv`, and of every CSV of archived mail the faces offer.
pub(crate) const CSV_COLUMNS: [&str; 8] = [
    "date",
    "account",
    "mailbox",
    "from",
    "to",
    "subject",
    "size",
    "message_id",
];

fn write_csv(
    archive: &Archive,
    out: &mut dyn std::io::Write,
    account: Option<&str>,
    clock: &Clock,
) -> std::result::Result<u64, String> {
    let mut csv = csv::Writer::from_writer(out);
    csv.write_record(CSV_COLUMNS).map_err(|e| e.to_string())?;
    let mut failed = None;
    let count = archive
        .for_each(account, None, |m| {
            if failed.is_none()
                && let Err(e) = csv.write_record([
                    rfc3339(m.internal_date, clock),
                    m.account,
                    m.mailbox,
                    m.from,
                    m.to,
                    m.subject,
                    m.size.to_string(),
                    m.message_id,
                ])
            {
                failed = Some(e);
            }
            Ok(())
        })
        .map_err(|e| chain_text(&e))?;
    if let Some(e) = failed {
        return Err(e.to_string());
    }
    csv.flush().map_err(|e| e.to_string())?;
    Ok(count)
}

fn export_mbox(
    archive: &Archive,
    file: &Path,
    account: Option<&str>,
    mailbox: Option<&str>,
    progress: &Reporter,
) -> Result<(u64, u64)> {
    progress.phase("exporting", Unit::Bytes, None);
    let cannot_write =
        |e: &dyn std::fmt::Display| Error::failed(format!("cannot write {}: {e}", file.display()));
    let mut bytes = 0u64;
    let result = files::replace_file(file, |out| {
        let mut failed = None;
        let count = archive
            .for_each(account, mailbox, |m| {
                let body = archive.read_blob(&m.blob)?;
                bytes += body.len() as u64;
                progress.advance(bytes);
                if let Err(e) = mailfile::mbox::write_message(out, &body, m.internal_date) {
                    failed = Some(e);
                }
                Ok(())
            })
            .map_err(|e| cannot_write(&chain_text(&e)))?;
        if let Some(e) = failed {
            return Err(cannot_write(&e));
        }
        Ok(count)
    });
    progress.finish();
    Ok((result?, bytes))
}

fn auto_label(rule: &AutoArchive, today: jiff::civil::Date) -> String {
    format!("{} {today}", rule.label)
}

/// Local midnight starting `day` in the server's time zone, as Unix seconds.
pub(crate) fn day_start(day: &str, clock: &Clock) -> Result<i64> {
    let date: jiff::civil::Date = day
        .parse()
        .map_err(|e| Error::invalid(format!("{day:?} is not a date; write YYYY-MM-DD: {e}")))?;
    Ok(date
        .to_zoned(clock.now().time_zone().clone())
        .map_err(|e| {
            Error::invalid(format!(
                "{day} does not exist in the server's time zone: {e}"
            ))
        })?
        .timestamp()
        .as_second())
}

fn date_text(seconds: Option<i64>, clock: &Clock) -> String {
    seconds
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map(|t| {
            t.to_zoned(clock.now().time_zone().clone())
                .date()
                .to_string()
        })
        .unwrap_or_else(|| "-".into())
}

pub(crate) fn rfc3339(seconds: i64, clock: &Clock) -> String {
    jiff::Timestamp::from_second(seconds)
        .map(|t| {
            t.to_zoned(clock.now().time_zone().clone())
                .strftime("%Y-%m-%dT%H:%M:%S%:z")
                .to_string()
        })
        .unwrap_or_default()
}

fn created_line(report: &ArchiveReport, clock: &Clock) -> String {
    format!("archive {} created: {}", report.id, summary(report, clock))
}

fn summary(report: &ArchiveReport, clock: &Clock) -> String {
    let mut text = format!(
        "{} messages, {}, {} .. {}, label {:?}, in {}",
        report.messages,
        human_bytes(report.bytes),
        date_text(report.first, clock),
        date_text(report.last, clock),
        report.label,
        report.dir.display()
    );
    if report.withdrawn > 0 {
        text.push_str(&format!(
            "; {} expunged by their owners meanwhile, not archived",
            report.withdrawn
        ));
    }
    if !report.skipped.is_empty() {
        text.push_str(&format!(
            "; {} left live (body unreadable)",
            report.skipped.len()
        ));
    }
    text
}

fn log_report(data: &Path, clock: &Clock, report: &ArchiveReport, what: &str) {
    log(
        data,
        "archive.log",
        clock,
        &format!("archive {} {what}: {}", report.id, summary(report, clock)),
    );
}

/// A log line that cannot be written must not hide the result itself.
fn log(data: &Path, name: &str, clock: &Clock, line: &str) {
    let dir = data.join("log");
    if let Err(e) = oplog::append(&dir, name, &clock.now(), line) {
        tracing::warn!(error = %e, log = name, "cannot append to the operations log");
    }
}

fn replace_log(data: &Path, name: &str, content: &str) {
    if let Err(e) = oplog::replace(&data.join("log"), name, content) {
        tracing::warn!(error = %e, log = name, "cannot replace the result log");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_keeps_decoded_fields_and_text() {
        let raw = "From: =?UTF-8?B?5bGx55Sw?= <yamada@example.jp>\r\nTo: a@example.com\r\n\
            Cc: b@example.com\r\nSubject: =?UTF-8?B?6KuL5rGC5pu4?=\r\n\
            Message-ID: <1@example.jp>\r\nDate: Tue, 1 Dec 2020 10:00:00 +0900\r\n\
            Content-Type: text/plain; charset=utf-8\r\n\r\nお支払いをお願いします\r\n";
        let doc = document(raw.as_bytes());
        assert_eq!(doc.from, "山田 <yamada@example.jp>");
        assert_eq!(doc.to, "<a@example.com>, <b@example.com>");
        assert_eq!(doc.subject, "請求書");
        assert_eq!(doc.message_id, "<1@example.jp>");
        assert_eq!(doc.sent_date, Some(1_606_784_400));
        assert!(doc.text.contains("お支払い"), "{:?}", doc.text);
    }

    fn utc() -> Clock {
        Clock::with_zone(jiff::tz::TimeZone::UTC)
    }

    #[test]
    fn a_day_is_its_local_midnight_and_a_bad_one_says_how_to_write_it() {
        assert_eq!(day_start("2021-01-01", &utc()).unwrap(), 1_609_459_200);
        let e = day_start("2021-13-01", &utc()).unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{e:?}");
        assert!(
            e.to_string()
                .starts_with("\"2021-13-01\" is not a date; write YYYY-MM-DD: "),
            "{e}"
        );
    }

    #[test]
    fn dates_show_in_the_clock_zone_and_none_as_a_dash() {
        let clock = utc();
        assert_eq!(date_text(Some(1_609_459_199), &clock), "2020-12-31");
        assert_eq!(date_text(None, &clock), "-");
        assert_eq!(rfc3339(1_609_459_200, &clock), "2021-01-01T00:00:00+00:00");
    }

    #[test]
    fn the_summary_mentions_withdrawn_and_skipped_messages() {
        let report = ArchiveReport {
            id: 3,
            label: "2020".into(),
            messages: 2,
            bytes: 2048,
            first: Some(1_577_836_800),
            last: Some(1_609_459_199),
            withdrawn: 1,
            skipped: vec!["x".into()],
            dir: PathBuf::from("/d/archive/3"),
            ..ArchiveReport::default()
        };
        assert_eq!(
            created_line(&report, &utc()),
            format!(
                "archive 3 created: 2 messages, {}, 2020-01-01 .. 2020-12-31, label \"2020\", \
                 in /d/archive/3; 1 expunged by their owners meanwhile, not archived; \
                 1 left live (body unreadable)",
                human_bytes(2048)
            )
        );
    }
}
