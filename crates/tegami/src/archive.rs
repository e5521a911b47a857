//! The `archive` and `retention` commands, and the daily automatic archiving and retention
//! the server runs. The store does the work (`store::archive`, `sqlite/archive.rs`); this
//! module parses dates in the server's time zone, turns messages into index documents with
//! `imap-mime`, shows progress, writes `log/archive.log`, `log/archive_result.log` and
//! `log/retention.log`, and writes exports durably (temporary file, fsync, rename).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use clap::Subcommand;
use gate::{Clock, oplog};
use store::archive::{ArchiveInfo, Document, SearchQuery};
use store::{ArchiveReport, ArchiveRequest, Phase, SqliteStore, human_bytes};

use ops::config::{AutoArchive, Config};

#[derive(Subcommand)]
pub enum ArchiveCommand {
    /// Move mail older than a date into a new read-only archive (online; resumes an
    /// interrupted run first).
    Create {
        /// Messages whose internal date is before this day (local midnight) are archived.
        #[arg(long, value_name = "YYYY-MM-DD")]
        before: String,
        /// Only this account's mail (default: every account).
        #[arg(long)]
        account: Option<String>,
        /// The archive's name in listings and in IMAP ("Archive/<label>/INBOX").
        #[arg(long)]
        label: Option<String>,
        /// Show what would be archived and the space needed; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// The archives: id, label, accounts, period, messages, size, state, directory.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Full-text and header search in one archive.
    Search {
        id: u32,
        /// Words that must all occur (subject, addresses or text); CJK runs match anywhere.
        query: Vec<String>,
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        subject: Option<String>,
        /// Internal date on or after this day.
        #[arg(long, value_name = "YYYY-MM-DD")]
        since: Option<String>,
        /// Internal date before this day.
        #[arg(long, value_name = "YYYY-MM-DD")]
        until: Option<String>,
        #[arg(long)]
        account: Option<String>,
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// Export an archive's message list as CSV, or its messages as mboxrd.
    Export {
        id: u32,
        /// date, account, mailbox, from, to, subject, size, message id: one row a message.
        #[arg(long, value_name = "FILE", required_unless_present = "mbox")]
        csv: Option<PathBuf>,
        /// The messages themselves, importable with `tegami import mbox`.
        #[arg(long, value_name = "FILE", conflicts_with = "csv")]
        mbox: Option<PathBuf>,
        #[arg(long)]
        account: Option<String>,
        /// Only this mailbox (with --mbox).
        #[arg(long)]
        mailbox: Option<String>,
    },
    /// Verify archives: database, full-text index, every body against its hash.
    Check { id: Option<u32> },
    /// Run the configured automatic archiving rules that are due now.
    Auto,
}

#[derive(Subcommand)]
pub enum RetentionCommand {
    /// Remove mail older than each configured mailbox's age, now.
    Run {
        #[arg(long)]
        dry_run: bool,
    },
}

pub fn run(data: &Path, config: &Config, command: ArchiveCommand) -> anyhow::Result<ExitCode> {
    let clock = Clock::system().map_err(anyhow::Error::msg)?;
    let store = open(data, config)?;
    match command {
        ArchiveCommand::Create {
            before,
            account,
            label,
            dry_run,
            json,
        } => {
            let request = ArchiveRequest {
                before: day_start(&before, &clock)?,
                account,
                label,
                batch: store::archive_batch_size(),
                reserve_bytes: config.disk.hard_floor,
            };
            if dry_run {
                return dry_run_report(&store, &request, &before);
            }
            create(&store, data, &clock, &request, &before, json)
        }
        ArchiveCommand::List { json } => list(&store, json),
        ArchiveCommand::Search {
            id,
            query,
            from,
            to,
            subject,
            since,
            until,
            account,
            limit,
            json,
        } => {
            let query = SearchQuery {
                text: (!query.is_empty()).then(|| query.join(" ")),
                from,
                to,
                subject,
                since: since.map(|d| day_start(&d, &clock)).transpose()?,
                until: until.map(|d| day_start(&d, &clock)).transpose()?,
                account,
                limit,
            };
            search(&store, id, &query, json, &clock)
        }
        ArchiveCommand::Export {
            id,
            csv,
            mbox,
            account,
            mailbox,
        } => match (csv, mbox) {
            (Some(file), _) => export_csv(&store, id, &file, account.as_deref(), &clock),
            (_, Some(file)) => {
                export_mbox(&store, id, &file, account.as_deref(), mailbox.as_deref())
            }
            _ => bail!("say where: --csv FILE or --mbox FILE"),
        },
        ArchiveCommand::Check { id } => check(&store, id),
        ArchiveCommand::Auto => {
            let lines = auto(&store, data, config, &clock)?;
            if lines.is_empty() {
                println!("no automatic archiving due");
            }
            for line in lines {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn run_retention(
    data: &Path,
    config: &Config,
    command: RetentionCommand,
) -> anyhow::Result<ExitCode> {
    let RetentionCommand::Run { dry_run } = command;
    let clock = Clock::system().map_err(anyhow::Error::msg)?;
    let store = open(data, config)?;
    if config.retention.is_empty() {
        println!("no retention configured (add a [retention] table, such as Trash = 30)");
        return Ok(ExitCode::SUCCESS);
    }
    for line in retention(&store, data, config, &clock, dry_run)? {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

fn open(data: &Path, config: &Config) -> anyhow::Result<SqliteStore> {
    let store = SqliteStore::open(data)
        .with_context(|| format!("cannot open the store in {}", data.display()))?;
    store.archives().set_prefix(&config.archive.imap_prefix);
    Ok(store)
}

/// Applies every retention rule; one line each, also appended to `log/retention.log`.
pub fn retention(
    store: &SqliteStore,
    data: &Path,
    config: &Config,
    clock: &Clock,
    dry_run: bool,
) -> anyhow::Result<Vec<String>> {
    let now = clock.now().timestamp().as_second();
    let mut lines = Vec::new();
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
        lines.push(line);
    }
    Ok(lines)
}

/// Runs the automatic archiving rules that are due (a rule is due when no archive it made
/// is younger than its `every_days`); returns what each did, one line each, as logged.
pub fn auto(
    store: &SqliteStore,
    data: &Path,
    config: &Config,
    clock: &Clock,
) -> anyhow::Result<Vec<String>> {
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
            .context("older_than_days reaches before year -9999")?;
        let before = before_day
            .to_zoned(now.time_zone().clone())
            .context("cannot place the day in the server's time zone")?
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
            .with_context(|| format!("automatic archiving of mail before {before_text}"))?;
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
                lines.push(created_line(&report));
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
/// rules that are due.
/// Each runs on a blocking thread; failures are logged and tried again at the next turn.
pub async fn housekeeping(
    store: Arc<SqliteStore>,
    data: PathBuf,
    config: Config,
    clock: Clock,
    mut stop: net::Shutdown,
) {
    let blocking = |f: Box<dyn FnOnce() -> anyhow::Result<()> + Send>| async move {
        match tokio::task::spawn_blocking(f).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = format!("{e:#}"), "housekeeping failed"),
            Err(e) => tracing::error!(error = %e, "housekeeping task failed"),
        }
    };
    {
        let (store, data, clock) = (store.clone(), data.clone(), clock.clone());
        blocking(Box::new(move || {
            for report in store.archive_resume(&|_, _, _| {})? {
                log_report(&data, &clock, &report, "resumed at start");
            }
            Ok(())
        }))
        .await;
    }
    if config.retention.is_empty() && config.archive.auto.is_empty() {
        return;
    }
    let mut done_on = None;
    loop {
        let today = clock.now().date();
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
            let (store, data, config, clock) =
                (store.clone(), data.clone(), config.clone(), clock.clone());
            blocking(Box::new(move || {
                for line in retention(&store, &data, &config, &clock, false)? {
                    tracing::info!("{line}");
                }
                Ok(())
            }))
            .await;
        }
        if stop.is_shutting_down() {
            return;
        }
        if !config.archive.auto.is_empty() {
            let (store, data, config, clock) =
                (store.clone(), data.clone(), config.clone(), clock.clone());
            blocking(Box::new(move || {
                for line in auto(&store, &data, &config, &clock)? {
                    tracing::info!("{line}");
                }
                Ok(())
            }))
            .await;
        }
    }
}

fn auto_label(rule: &AutoArchive, today: jiff::civil::Date) -> String {
    format!("{} {today}", rule.label)
}

/// Local midnight starting `day`, as Unix seconds.
fn day_start(day: &str, clock: &Clock) -> anyhow::Result<i64> {
    let date: jiff::civil::Date = day
        .parse()
        .with_context(|| format!("{day:?} is not a date; write YYYY-MM-DD"))?;
    Ok(date
        .to_zoned(clock.now().time_zone().clone())
        .with_context(|| format!("{day} does not exist in the server's time zone"))?
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

fn rfc3339(seconds: i64, clock: &Clock) -> String {
    jiff::Timestamp::from_second(seconds)
        .map(|t| {
            t.to_zoned(clock.now().time_zone().clone())
                .strftime("%Y-%m-%dT%H:%M:%S%:z")
                .to_string()
        })
        .unwrap_or_default()
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

fn dry_run_report(
    store: &SqliteStore,
    request: &ArchiveRequest,
    before: &str,
) -> anyhow::Result<ExitCode> {
    let plan = store.archive_plan(request)?;
    println!(
        "would archive {} messages ({}) of {} account(s) before {before}",
        plan.messages,
        human_bytes(plan.bytes),
        plan.accounts.len()
    );
    println!(
        "space needed: {} (+ {} kept free); free: {}{}",
        human_bytes(plan.needed_bytes),
        human_bytes(request.reserve_bytes),
        human_bytes(plan.free_bytes),
        if plan.copies_bodies {
            "; bodies are copied (the archive is on another file system)"
        } else {
            "; bodies are hard-linked, not copied"
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn create(
    store: &SqliteStore,
    data: &Path,
    clock: &Clock,
    request: &ArchiveRequest,
    before: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let bar = Progress::new();
    let started = clock.now();
    let result = store.archive_create(request, &document, &|phase, done, total| {
        bar.show(phase, done, total)
    });
    bar.finish();
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
    let mut result_log = String::new();
    for report in &outcome.resumed {
        let line = format!("resumed archive {}: {}", report.id, summary(report, clock));
        log_report(data, clock, report, "resumed");
        if !json {
            println!("{line}");
        }
        result_log.push_str(&line);
        result_log.push('\n');
    }
    match &outcome.created {
        Some(report) => {
            log_report(data, clock, report, "created");
            let timings: Vec<String> = report
                .timings
                .iter()
                .map(|(phase, took)| format!("{} {:.1} s", phase.as_str(), took.as_secs_f64()))
                .collect();
            for skipped in &report.skipped {
                eprintln!("tegami: skipped {skipped}");
            }
            let line = created_line(report);
            result_log = format!(
                "result: ok\nstarted {}\n{line}\nphases: {}\n{}{result_log}",
                started.strftime("%Y-%m-%d %H:%M:%S %z"),
                timings.join(", "),
                report
                    .skipped
                    .iter()
                    .map(|s| format!("skipped {s}\n"))
                    .collect::<String>()
            );
            if json {
                print_json(&outcome, clock);
            } else {
                println!("{line}");
            }
        }
        None => {
            let line = format!("nothing to archive before {before}");
            log(data, "archive.log", clock, &line);
            result_log = format!("result: ok\n{line}\n{result_log}");
            if json {
                print_json(&outcome, clock);
            } else {
                println!("{line}");
            }
        }
    }
    replace_log(data, "archive_result.log", &result_log);
    Ok(ExitCode::SUCCESS)
}

fn print_json(outcome: &store::ArchiveOutcome, clock: &Clock) {
    let created = outcome.created.as_ref();
    let value = serde_json::json!({
        "id": created.map(|r| r.id.to_string()),
        "label": created.map(|r| r.label.clone()),
        "messages": created.map_or(0, |r| r.messages),
        "bytes": created.map_or(0, |r| r.bytes),
        "withdrawn": created.map_or(0, |r| r.withdrawn),
        "skipped": created.map_or(Vec::new(), |r| r.skipped.clone()),
        "first": created.map(|r| date_text(r.first, clock)),
        "last": created.map(|r| date_text(r.last, clock)),
        "dir": created.map(|r| r.dir.display().to_string()),
        "resumed": outcome.resumed.iter().map(|r| r.id.to_string()).collect::<Vec<_>>(),
    });
    println!("{value}");
}

fn created_line(report: &ArchiveReport) -> String {
    let clock = Clock::system().unwrap_or_else(|_| Clock::with_zone(jiff::tz::TimeZone::UTC));
    format!("archive {} created: {}", report.id, summary(report, &clock))
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

fn list(store: &SqliteStore, json: bool) -> anyhow::Result<ExitCode> {
    let clock = Clock::system().map_err(anyhow::Error::msg)?;
    let mut infos = Vec::new();
    for archive in store.archives().list() {
        infos.push(archive.info()?);
    }
    if json {
        let list: Vec<serde_json::Value> = infos
            .iter()
            .map(|a| {
                serde_json::json!({
                    "id": a.id.to_string(),
                    "label": a.label,
                    "accounts": a.accounts,
                    "first": date_text(a.first, &clock),
                    "last": date_text(a.last, &clock),
                    "before": date_text(Some(a.before), &clock),
                    "messages": a.messages,
                    "bytes": a.bytes,
                    "disk_bytes": a.disk_bytes,
                    "state": a.state.as_str(),
                    "dir": a.dir.display().to_string(),
                    "created": rfc3339(a.created, &clock),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(ExitCode::SUCCESS);
    }
    if infos.is_empty() {
        println!("no archives (make one with `tegami archive create --before YYYY-MM-DD`)");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<4} {:<16} {:<28} {:<23} {:>9} {:>10} {:<9} DIRECTORY",
        "ID", "LABEL", "ACCOUNTS", "PERIOD", "MESSAGES", "SIZE", "STATE"
    );
    for a in &infos {
        let accounts = match a.accounts.as_slice() {
            [] => "-".to_string(),
            [one] => one.clone(),
            [first, rest @ ..] => format!("{first} +{}", rest.len()),
        };
        println!(
            "{:<4} {:<16} {:<28} {:<23} {:>9} {:>10} {:<9} {}",
            a.id,
            a.label,
            accounts,
            format!(
                "{} .. {}",
                date_text(a.first, &clock),
                date_text(a.last, &clock)
            ),
            a.messages,
            human_bytes(a.bytes),
            a.state.as_str(),
            a.dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn search(
    store: &SqliteStore,
    id: u32,
    query: &SearchQuery,
    json: bool,
    clock: &Clock,
) -> anyhow::Result<ExitCode> {
    let archive = store.archives().get(id)?;
    let hits = archive.search(query)?;
    if json {
        let list: Vec<serde_json::Value> = hits
            .iter()
            .map(|m| {
                serde_json::json!({
                    "account": m.account,
                    "mailbox": m.mailbox,
                    "uid": m.uid,
                    "date": rfc3339(m.internal_date, clock),
                    "from": m.from,
                    "to": m.to,
                    "subject": m.subject,
                    "size": m.size,
                    "message_id": m.message_id,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
    } else {
        for m in &hits {
            println!(
                "{}  {}  {}  ({} {} UID {})",
                date_text(Some(m.internal_date), clock),
                m.from,
                m.subject,
                m.account,
                m.mailbox,
                m.uid
            );
        }
        eprintln!("{} messages found", hits.len());
    }
    Ok(ExitCode::SUCCESS)
}

fn export_csv(
    store: &SqliteStore,
    id: u32,
    file: &Path,
    account: Option<&str>,
    clock: &Clock,
) -> anyhow::Result<ExitCode> {
    let archive = store.archives().get(id)?;
    let count = crate::import::replace_file(file, |out| {
        let mut csv = csv::Writer::from_writer(out);
        csv.write_record([
            "date",
            "account",
            "mailbox",
            "from",
            "to",
            "subject",
            "size",
            "message_id",
        ])?;
        let mut failed = None;
        let count = archive.for_each(account, None, |m| {
            if let Err(e) = csv.write_record([
                rfc3339(m.internal_date, clock),
                m.account,
                m.mailbox,
                m.from,
                m.to,
                m.subject,
                m.size.to_string(),
                m.message_id,
            ]) {
                failed = Some(e);
            }
            Ok(())
        })?;
        if let Some(e) = failed {
            return Err(e.into());
        }
        csv.flush()?;
        Ok(count)
    })?;
    println!(
        "archive {id}: {count} messages listed in {}",
        file.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn export_mbox(
    store: &SqliteStore,
    id: u32,
    file: &Path,
    account: Option<&str>,
    mailbox: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let archive = store.archives().get(id)?;
    let mut bytes = 0u64;
    let count = crate::import::replace_file(file, |out| {
        let mut failed = None;
        let count = archive.for_each(account, mailbox, |m| {
            let body = archive.read_blob(&m.blob)?;
            bytes += body.len() as u64;
            if let Err(e) = mailfile::mbox::write_message(out, &body, m.internal_date) {
                failed = Some(e);
            }
            Ok(())
        })?;
        if let Some(e) = failed {
            return Err(e.into());
        }
        Ok(count)
    })?;
    println!(
        "archive {id}: {count} messages ({}) exported to {}",
        human_bytes(bytes),
        file.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn check(store: &SqliteStore, id: Option<u32>) -> anyhow::Result<ExitCode> {
    let archives = match id {
        Some(id) => vec![store.archives().get(id)?],
        None => store.archives().list(),
    };
    if archives.is_empty() {
        println!("no archives to check");
        return Ok(ExitCode::SUCCESS);
    }
    let mut healthy = true;
    for archive in archives {
        let bar = Progress::new();
        let report = archive.check(&|done, total| bar.show(Phase::Index, done, total))?;
        bar.finish();
        if report.is_healthy() {
            println!(
                "archive {}: healthy: {} messages, {} bodies ({}) verified",
                report.id,
                report.messages,
                report.blobs,
                human_bytes(report.bytes)
            );
        } else {
            healthy = false;
            println!(
                "archive {}: {} problems in {}",
                report.id,
                report.problems.len(),
                archive.dir().display()
            );
            for problem in &report.problems {
                println!("  {problem}");
            }
        }
    }
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A progress bar on a terminal (one per phase), nothing otherwise.
struct Progress(Option<Mutex<(Option<Phase>, indicatif::ProgressBar)>>);

impl Progress {
    fn new() -> Progress {
        Progress(std::io::stderr().is_terminal().then(|| {
            Mutex::new((
                None,
                indicatif::ProgressBar::with_draw_target(
                    None,
                    indicatif::ProgressDrawTarget::stderr(),
                ),
            ))
        }))
    }

    fn show(&self, phase: Phase, done: u64, total: u64) {
        let Some(state) = &self.0 else { return };
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        if state.0 != Some(phase) {
            state.1.finish_and_clear();
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(total),
                indicatif::ProgressDrawTarget::stderr(),
            );
            if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
                "{:<8} {{wide_bar}} {{pos}}/{{len}} ({{per_sec}}, {{eta}} left)",
                phase.as_str()
            )) {
                bar.set_style(style);
            }
            *state = (Some(phase), bar);
        }
        state.1.set_length(total);
        state.1.set_position(done);
    }

    fn finish(&self) {
        if let Some(state) = &self.0 {
            state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .1
                .finish_and_clear();
        }
    }
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
}
