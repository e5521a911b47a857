//! The capacity planner: sizes the volumes a deployment needs, step by step, keeping every
//! intermediate figure so an operator can follow (and argue with) the arithmetic.
//!
//! Two models. `exchange2010` reproduces the transaction-log sizing of the seed article
//! (Exchange 2010: 1 MB logs, a base table at 75 KB per message, ×1.9 per doubling of the
//! message size), with the article's roundings, so its example gives the article's figures.
//! `tegami` (the default) sizes a tegami deployment from tegami's own costs per delivered
//! message: blob bytes and metadata bytes, measured from the store in the data directory
//! when it holds mail, and estimated from the flags when it does not.
//!
//! The arithmetic is pure (`Step`s in, a [`Plan`] out), so the unit tests check the numbers
//! without a store.

use std::path::Path;

use store::{StoreTotals, human_bytes};

use crate::config::Config;
use crate::{Error, Ops, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Model {
    /// tegami's own costs, measured from the store when it holds mail.
    #[default]
    Tegami,
    /// The Exchange 2010 transaction-log arithmetic of the seed article.
    Exchange2010,
}

/// What to plan for. The figures a model does not use are ignored; those it needs and
/// cannot measure must be given.
#[derive(Debug, Clone)]
pub struct PlanRequest {
    pub model: Model,
    /// Mailboxes (accounts) on the server or in the database.
    pub mailboxes: Option<f64>,
    /// Messages each mailbox receives (and sends) per day.
    pub messages_per_day: Option<f64>,
    /// Average message size in KB (1 KB = 1024 bytes).
    pub avg_message_kb: Option<f64>,
    /// exchange2010: share of the mailboxes moved into the database per day, in percent.
    pub moves_per_day_percent: f64,
    /// exchange2010: average mailbox size in GB.
    pub avg_mailbox_gb: f64,
    /// exchange2010: days of logs to hold while truncation (backup) keeps failing.
    pub truncation_failure_days: f64,
    /// exchange2010: days of move logs to hold.
    pub move_days: f64,
    /// tegami: days of mail to size the data volume for.
    pub days: f64,
    /// Factor for what the arithmetic does not foresee.
    pub overhead: f64,
    /// Share of each volume to keep free, in percent.
    pub free_percent: f64,
}

impl Default for PlanRequest {
    /// The defaults of `tegami plan` and of the console's planner form.
    fn default() -> Self {
        PlanRequest {
            model: Model::Tegami,
            mailboxes: None,
            messages_per_day: None,
            avg_message_kb: None,
            moves_per_day_percent: 0.0,
            avg_mailbox_gb: 0.0,
            truncation_failure_days: 3.0,
            move_days: 7.0,
            days: 365.0,
            overhead: 1.2,
            free_percent: 20.0,
        }
    }
}

/// Plans with the request's model. The tegami model measures the store in `data` when
/// there is one; a missing store is not created (planning must not leave a data directory
/// behind).
pub fn plan(data: &Path, config: &Config, request: &PlanRequest) -> Result<Plan> {
    check(request)?;
    let measured = match request.model {
        Model::Tegami if data.join("tegami.db").exists() => {
            Ops::open(data, config.clone())?.measure()?
        }
        _ => Measured::default(),
    };
    plan_with(config, request, &measured)
}

impl Ops {
    /// [`plan`] on this open store (the console's planner, beside the running server).
    pub fn plan(&self, request: &PlanRequest) -> Result<Plan> {
        check(request)?;
        let measured = match request.model {
            Model::Tegami => self.measure()?,
            Model::Exchange2010 => Measured::default(),
        };
        plan_with(self.config(), request, &measured)
    }

    /// What this server measures for the planner's inputs: its mailboxes, the messages one
    /// mailbox received per day over the last 30 days of usage statistics (days with any
    /// activity), and the average size of a stored message. A figure there is nothing to
    /// measure from is `None`.
    pub fn plan_inputs(&self) -> Result<PlanInputs> {
        let totals = self.store().totals()?;
        let measured = self.measure_with(totals)?;
        Ok(PlanInputs {
            mailboxes: (totals.accounts > 0).then_some(totals.accounts),
            messages_per_day: measured.daily,
            avg_message_kb: (totals.messages > 0)
                .then(|| totals.message_bytes as f64 / totals.messages as f64 / 1024.0),
        })
    }

    /// The store's totals when it holds mail, and the messages one mailbox received per day
    /// over the last 30 days of usage statistics (days with any activity).
    fn measure(&self) -> Result<Measured> {
        self.measure_with(self.store().totals()?)
    }

    /// [`Ops::measure`] with the store's totals already read (they cost a snapshot's count).
    fn measure_with(&self, totals: StoreTotals) -> Result<Measured> {
        let store = self.store();
        let now = self.clock().now().timestamp().as_second();
        let days = store.usage_daily(now - 30 * 86_400)?;
        let distinct: std::collections::BTreeSet<i64> = days.iter().map(|r| r.start).collect();
        let received: u64 = days.iter().map(|r| r.usage.messages_in).sum();
        let daily = (!distinct.is_empty() && totals.accounts > 0 && received > 0)
            .then(|| received as f64 / distinct.len() as f64 / totals.accounts as f64);
        Ok(Measured {
            totals: (totals.messages > 0).then_some(totals),
            daily,
        })
    }
}

/// The planner's inputs as this server measures them, to fill in a form.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PlanInputs {
    pub mailboxes: Option<u64>,
    pub messages_per_day: Option<f64>,
    pub avg_message_kb: Option<f64>,
}

#[derive(Debug, Default)]
struct Measured {
    totals: Option<StoreTotals>,
    daily: Option<f64>,
}

fn check(request: &PlanRequest) -> Result<()> {
    let figures = [
        ("--mailboxes", request.mailboxes),
        ("--messages-per-day", request.messages_per_day),
        ("--avg-message-kb", request.avg_message_kb),
        (
            "--moves-per-day-percent",
            Some(request.moves_per_day_percent),
        ),
        ("--avg-mailbox-gb", Some(request.avg_mailbox_gb)),
        (
            "--truncation-failure-days",
            Some(request.truncation_failure_days),
        ),
        ("--move-days", Some(request.move_days)),
        ("--days", Some(request.days)),
        ("--overhead", Some(request.overhead)),
        ("--free-percent", Some(request.free_percent)),
    ];
    for (name, value) in figures {
        if let Some(v) = value
            && !(v.is_finite() && v >= 0.0)
        {
            return Err(Error::invalid(format!(
                "{name} must be a number of at least 0, not {v}"
            )));
        }
    }
    if !(0.0..100.0).contains(&request.free_percent) {
        return Err(Error::invalid(
            "--free-percent must be at least 0 and below 100",
        ));
    }
    if request.overhead < 1.0 {
        return Err(Error::invalid(
            "--overhead must be at least 1 (1.2 adds 20 %)",
        ));
    }
    Ok(())
}

fn plan_with(config: &Config, request: &PlanRequest, measured: &Measured) -> Result<Plan> {
    match request.model {
        Model::Exchange2010 => {
            let (Some(mailboxes), Some(messages), Some(kb)) = (
                request.mailboxes,
                request.messages_per_day,
                request.avg_message_kb,
            ) else {
                return Err(Error::invalid(
                    "the exchange2010 model needs --mailboxes, --messages-per-day and --avg-message-kb",
                ));
            };
            Ok(exchange2010(&Exchange2010 {
                mailboxes,
                messages_per_day: messages,
                avg_message_kb: kb,
                moves_per_day_percent: request.moves_per_day_percent,
                avg_mailbox_gb: request.avg_mailbox_gb,
                truncation_failure_days: request.truncation_failure_days,
                move_days: request.move_days,
                overhead: request.overhead,
                free_percent: request.free_percent,
            }))
        }
        Model::Tegami => {
            let mut request = request.clone();
            let rate_measured = request.messages_per_day.is_none() && measured.daily.is_some();
            if request.messages_per_day.is_none() {
                request.messages_per_day = measured.daily;
            }
            let profile = Profile::from_request_and_store(&request, measured.totals.as_ref())?;
            let mut plan = tegami(&profile, config);
            if rate_measured {
                plan.notes.insert(
                    0,
                    format!(
                        "messages per mailbox per day measured from the usage statistics: {}",
                        num(profile.messages_per_day)
                    ),
                );
            }
            Ok(plan)
        }
    }
}

/// One line of the plan: what was computed, how, and the result.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub label: &'static str,
    pub how: String,
    pub value: f64,
    pub shown: String,
}

#[derive(Debug, Default)]
pub struct Plan {
    pub title: String,
    pub steps: Vec<Step>,
    pub notes: Vec<String>,
}

impl Plan {
    fn step(&mut self, label: &'static str, how: String, value: f64, shown: String) -> f64 {
        self.steps.push(Step {
            label,
            how,
            value,
            shown,
        });
        value
    }

    /// A step's value by label.
    pub fn value(&self, label: &str) -> Option<f64> {
        self.steps
            .iter()
            .find(|s| s.label == label)
            .map(|s| s.value)
    }
}

/// The inputs of the Exchange 2010 transaction-log arithmetic.
#[derive(Debug, Clone)]
pub struct Exchange2010 {
    pub mailboxes: f64,
    pub messages_per_day: f64,
    pub avg_message_kb: f64,
    pub moves_per_day_percent: f64,
    pub avg_mailbox_gb: f64,
    pub truncation_failure_days: f64,
    pub move_days: f64,
    pub overhead: f64,
    pub free_percent: f64,
}

/// The message size of the article's base table, and the growth of the logs when the size
/// doubles.
const BASE_KB: f64 = 75.0;
const DOUBLING_FACTOR: f64 = 1.9;
/// Logs of 1 MB per GB.
const LOGS_PER_GB: f64 = 1024.0;

pub fn exchange2010(input: &Exchange2010) -> Plan {
    let mut plan = Plan {
        title: "model exchange2010: transaction logs of 1 MB, sized as in the Exchange 2010 \
                guidance"
            .into(),
        ..Plan::default()
    };
    // The table of the guidance: 10 logs per mailbox per day for every 50 messages at 75 KB.
    let base = plan.step(
        "logs/mailbox/day at 75 KB",
        format!("{} messages / 5 (table)", num(input.messages_per_day)),
        input.messages_per_day / 5.0,
        num(input.messages_per_day / 5.0),
    );
    // The article: 150 KB / 1.9 = size / x, so x = size × 1.9 / 150, rounded to 1.27. The
    // table already holds messages up to 75 KB, so smaller ones do not shrink it.
    let raw_factor = input.avg_message_kb * DOUBLING_FACTOR / (2.0 * BASE_KB);
    let factor = (raw_factor * 100.0).round() / 100.0;
    let factor = plan.step(
        "message size factor",
        format!(
            "{} KB × {DOUBLING_FACTOR} / {} KB = {raw_factor:.4}, to two decimals",
            num(input.avg_message_kb),
            num(2.0 * BASE_KB)
        ),
        factor.max(1.0),
        format!("{:.2}", factor.max(1.0)),
    );
    let per_mailbox_exact = base * factor;
    let per_mailbox = plan.step(
        "logs/mailbox/day",
        format!(
            "{} × {factor:.2} = {}, up to whole logs",
            num(base),
            dec(per_mailbox_exact, 2)
        ),
        (per_mailbox_exact - 1e-9).ceil(),
        num((per_mailbox_exact - 1e-9).ceil()),
    );
    let per_database = plan.step(
        "logs/database/day",
        format!("{} × {} mailboxes", num(per_mailbox), num(input.mailboxes)),
        per_mailbox * input.mailboxes,
        num(per_mailbox * input.mailboxes),
    );
    let truncation = plan.step(
        "truncation failure",
        format!(
            "{} logs × {} days / {}",
            num(per_database),
            num(input.truncation_failure_days),
            num(LOGS_PER_GB)
        ),
        per_database * input.truncation_failure_days / LOGS_PER_GB,
        gb(per_database * input.truncation_failure_days / LOGS_PER_GB),
    );
    let moved = plan.step(
        "mailboxes moved/day",
        format!(
            "{} × {} %",
            num(input.mailboxes),
            num(input.moves_per_day_percent)
        ),
        input.mailboxes * input.moves_per_day_percent / 100.0,
        num(input.mailboxes * input.moves_per_day_percent / 100.0),
    );
    let move_logs = plan.step(
        "move logs/day",
        format!(
            "{} × {} GB × {}",
            num(moved),
            num(input.avg_mailbox_gb),
            num(LOGS_PER_GB)
        ),
        moved * input.avg_mailbox_gb * LOGS_PER_GB,
        num(moved * input.avg_mailbox_gb * LOGS_PER_GB),
    );
    let moves = plan.step(
        "moves",
        format!(
            "{} logs × {} days / {}",
            num(move_logs),
            num(input.move_days),
            num(LOGS_PER_GB)
        ),
        move_logs * input.move_days / LOGS_PER_GB,
        gb(move_logs * input.move_days / LOGS_PER_GB),
    );
    let total = plan.step(
        "log space",
        format!("{} + {}", gb(truncation), gb(moves)),
        truncation + moves,
        whole_gb(truncation + moves),
    );
    let with_overhead = plan.step(
        "with overhead",
        format!("{} × {}", gb(total), num(input.overhead)),
        total * input.overhead,
        whole_gb(total * input.overhead),
    );
    let free = input.free_percent / 100.0;
    plan.step(
        "log volume (LUN)",
        format!("{} / (1 − {})", gb(with_overhead), num(free)),
        with_overhead / (1.0 - free),
        whole_gb(with_overhead / (1.0 - free)),
    );
    plan.notes.push(
        "the article prints 13,888 move logs and 94.9 GB; 2.5 × 5.4 GB × 1024 is 13,824 logs, \
         and 7 days of them 94.5 GB (the totals round to the same figures)"
            .into(),
    );
    plan
}

/// What one delivered message costs a tegami store, and the traffic to size for.
#[derive(Debug, Clone)]
pub struct Profile {
    pub mailboxes: f64,
    pub messages_per_day: f64,
    /// Blob bytes per delivered copy (trace headers included; bodies shared between
    /// recipients counted once, so a measured value shows the saving).
    pub blob_bytes_per_message: f64,
    /// Database bytes per delivered copy (message row, indexes, and the fixed tables spread
    /// over the messages).
    pub metadata_bytes_per_message: f64,
    /// Where the costs came from, for the reader.
    pub source: String,
    /// Bytes already stored (measured), which the data volume must hold too.
    pub stored_bytes: f64,
    pub days: f64,
    pub overhead: f64,
    pub free_percent: f64,
}

/// What tegami adds to each message it stores: the Received and Return-Path trace headers.
const TRACE_BYTES: f64 = 300.0;
/// Database bytes per message row with its index entries, measured on tegami's schema (a
/// row of about 80 bytes in the table, the UID index and the blob index, at page fill).
const METADATA_BYTES: f64 = 260.0;

impl Profile {
    fn from_request_and_store(
        args: &PlanRequest,
        measured: Option<&StoreTotals>,
    ) -> Result<Profile> {
        let mailboxes = match (args.mailboxes, measured) {
            (Some(n), _) => n,
            (None, Some(t)) => t.accounts as f64,
            (None, None) => {
                return Err(Error::invalid(
                    "no mail is stored in this data directory yet: give --mailboxes, \
                     --messages-per-day and --avg-message-kb",
                ));
            }
        };
        let Some(messages_per_day) = args.messages_per_day else {
            return Err(Error::invalid(
                "give --messages-per-day (the messages one mailbox receives per day): this \
                 store has no usage statistics yet to measure it from",
            ));
        };
        let (blob, meta, source, stored) = match (measured, args.avg_message_kb) {
            (Some(t), _) => (
                t.blob_bytes as f64 / t.messages as f64,
                t.database_bytes as f64 / t.messages as f64,
                format!(
                    "measured on this store: {} messages, {} of blobs, {} of metadata",
                    t.messages,
                    human_bytes(t.blob_bytes),
                    human_bytes(t.database_bytes)
                ),
                (t.blob_bytes + t.database_bytes) as f64,
            ),
            (None, Some(kb)) => (
                kb * 1024.0 + TRACE_BYTES,
                METADATA_BYTES,
                "estimated from the flags (no mail stored yet)".into(),
                0.0,
            ),
            (None, None) => {
                return Err(Error::invalid(
                    "no mail is stored yet: give --avg-message-kb",
                ));
            }
        };
        Ok(Profile {
            mailboxes,
            messages_per_day,
            blob_bytes_per_message: blob,
            metadata_bytes_per_message: meta,
            source,
            stored_bytes: stored,
            days: args.days,
            overhead: args.overhead,
            free_percent: args.free_percent,
        })
    }
}

pub fn tegami(profile: &Profile, config: &Config) -> Plan {
    let mut plan = Plan {
        title: format!("model tegami: costs {}", profile.source),
        ..Plan::default()
    };
    let blob = plan.step(
        "blob bytes/message",
        "message + trace headers".into(),
        profile.blob_bytes_per_message,
        bytes(profile.blob_bytes_per_message),
    );
    let meta = plan.step(
        "metadata bytes/message",
        "row and indexes".into(),
        profile.metadata_bytes_per_message,
        bytes(profile.metadata_bytes_per_message),
    );
    let per_day = plan.step(
        "mail/day",
        format!(
            "{} mailboxes × {} messages × ({} + {})",
            num(profile.mailboxes),
            num(profile.messages_per_day),
            bytes(blob),
            bytes(meta)
        ),
        profile.mailboxes * profile.messages_per_day * (blob + meta),
        bytes(profile.mailboxes * profile.messages_per_day * (blob + meta)),
    );
    let wal = plan.step(
        "WAL bound",
        "[wal] cap_bytes".into(),
        config.wal.cap_bytes as f64,
        bytes(config.wal.cap_bytes as f64),
    );
    let data = plan.step(
        "data",
        format!(
            "{} stored + {} × {} days + {}",
            bytes(profile.stored_bytes),
            bytes(per_day),
            num(profile.days),
            bytes(wal)
        ),
        profile.stored_bytes + per_day * profile.days + wal,
        bytes(profile.stored_bytes + per_day * profile.days + wal),
    );
    let free = profile.free_percent / 100.0;
    plan.step(
        "data volume",
        format!(
            "{} × {} / (1 − {})",
            bytes(data),
            num(profile.overhead),
            num(free)
        ),
        data * profile.overhead / (1.0 - free),
        bytes(data * profile.overhead / (1.0 - free)),
    );
    // Backups hard-link blobs on the same file system and copy them elsewhere; each keeps
    // its own copy of the metadata.
    let copies = (config.schedule.backup.keep_daily + config.schedule.backup.keep_weekly) as f64;
    let metadata = profile.stored_bytes * meta / (blob + meta)
        + profile.mailboxes * profile.messages_per_day * meta * profile.days;
    let blobs = data - wal - metadata;
    let backup = plan.step(
        "backups",
        format!(
            "{} blobs once + {} metadata × {} kept",
            bytes(blobs),
            bytes(metadata),
            num(copies)
        ),
        blobs + metadata * copies,
        bytes(blobs + metadata * copies),
    );
    plan.step(
        "backup volume",
        format!(
            "{} × {} / (1 − {})",
            bytes(backup),
            num(profile.overhead),
            num(free)
        ),
        backup * profile.overhead / (1.0 - free),
        bytes(backup * profile.overhead / (1.0 - free)),
    );
    let logs = plan.step(
        "logs",
        format!(
            "{} files × {} (rotated by size)",
            config.log.max_files,
            bytes(config.log.max_file_bytes as f64)
        ),
        (config.log.max_files as u64 * config.log.max_file_bytes) as f64,
        bytes((config.log.max_files as u64 * config.log.max_file_bytes) as f64),
    );
    plan.step(
        "log volume",
        format!("{} / (1 − {})", bytes(logs), num(free)),
        logs / (1.0 - free),
        bytes(logs / (1.0 - free)),
    );
    plan.notes.push(
        "backups on the data volume's file system share blob files by hard links and need \
         only the metadata copies"
            .into(),
    );
    plan
}

/// A number with thousands separators and at most two decimals, trailing zeros dropped.
fn num(value: f64) -> String {
    let text = format!("{value:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    let (int, frac) = text.split_once('.').map_or((text, ""), |(i, f)| (i, f));
    let (sign, digits) = int.strip_prefix('-').map_or(("", int), |d| ("-", d));
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    if frac.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{frac}")
    }
}

fn dec(value: f64, places: usize) -> String {
    format!("{value:.places$}")
}

fn gb(value: f64) -> String {
    format!("{value:.2} GB")
}

fn whole_gb(value: f64) -> String {
    format!("{value:.2} GB, about {} GB", value.round())
}

/// Bytes for a person and, exactly, for a script comparing figures.
fn bytes(value: f64) -> String {
    let exact = value.max(0.0).round();
    format!("{} ({} bytes)", human_bytes(exact as u64), num(exact))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn article() -> Exchange2010 {
        Exchange2010 {
            mailboxes: 250.0,
            messages_per_day: 150.0,
            avg_message_kb: 100.0,
            moves_per_day_percent: 1.0,
            avg_mailbox_gb: 5.4,
            truncation_failure_days: 3.0,
            move_days: 7.0,
            overhead: 1.2,
            free_percent: 20.0,
        }
    }

    #[test]
    fn the_article_example_gives_the_article_figures() {
        let plan = exchange2010(&article());
        let v = |label| plan.value(label).unwrap();
        assert_eq!(v("logs/mailbox/day at 75 KB"), 30.0);
        assert_eq!(v("message size factor"), 1.27);
        assert_eq!(v("logs/mailbox/day"), 39.0);
        assert_eq!(v("logs/database/day"), 9750.0);
        assert!((v("truncation failure") - 28.56).abs() < 0.01);
        assert_eq!(v("mailboxes moved/day"), 2.5);
        assert!((v("move logs/day") - 13824.0).abs() < 1e-6);
        assert!((v("moves") - 94.5).abs() < 1e-9);
        assert_eq!(v("log space").round(), 123.0);
        assert_eq!(v("with overhead").round(), 148.0);
        assert_eq!(v("log volume (LUN)").round(), 185.0);
        let shown = |label| {
            plan.steps
                .iter()
                .find(|s| s.label == label)
                .map(|s| s.shown.as_str())
                .unwrap()
        };
        assert_eq!(shown("logs/mailbox/day"), "39");
        assert_eq!(shown("logs/database/day"), "9,750");
        assert_eq!(shown("move logs/day"), "13,824");
        assert!(shown("log volume (LUN)").ends_with(", about 185 GB"));
    }

    #[test]
    fn doubling_the_message_size_multiplies_the_logs_by_1_9() {
        let plan = exchange2010(&Exchange2010 {
            avg_message_kb: 150.0,
            ..article()
        });
        assert_eq!(plan.value("message size factor"), Some(1.9));
        assert_eq!(plan.value("logs/mailbox/day"), Some(57.0));
        // Messages below the table's size do not shrink it.
        let small = exchange2010(&Exchange2010 {
            avg_message_kb: 30.0,
            ..article()
        });
        assert_eq!(small.value("logs/mailbox/day"), Some(30.0));
    }

    #[test]
    fn figures_must_be_finite_and_not_negative() {
        let config = Config::load(None).unwrap();
        let dir = tempfile::tempdir().unwrap();
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            let request = PlanRequest {
                model: Model::Exchange2010,
                mailboxes: Some(bad),
                messages_per_day: Some(1.0),
                avg_message_kb: Some(1.0),
                ..PlanRequest::default()
            };
            let e = plan(dir.path(), &config, &request).unwrap_err();
            assert!(e.to_string().contains("--mailboxes"), "{e}");
        }
        assert!(!dir.path().join("tegami.db").exists());
    }

    #[test]
    fn an_open_store_plans_from_its_own_figures() {
        let dir = tempfile::tempdir().unwrap();
        let ops = Ops::open(dir.path(), Config::load(None).unwrap()).unwrap();
        assert_eq!(ops.plan_inputs().unwrap(), PlanInputs::default());
        ops.domain_add("example.com").unwrap();
        ops.account_add("a@example.com", "pw", false).unwrap();
        ops.account_add("b@example.com", "pw", false).unwrap();
        let body = format!("Subject: x\r\n\r\n{}\r\n", "y".repeat(2046));
        let store = ops.store();
        let a = store.resolve("a@example.com").unwrap();
        let store::Resolution::Local(ids) = a else {
            panic!("{a:?}")
        };
        store.deliver(body.as_bytes(), &ids).unwrap();
        let inputs = ops.plan_inputs().unwrap();
        assert_eq!(inputs.mailboxes, Some(2));
        let kb = inputs.avg_message_kb.unwrap();
        assert!((kb - 2.0).abs() < 0.1, "{kb}");
        let plan = ops
            .plan(&PlanRequest {
                messages_per_day: Some(10.0),
                ..PlanRequest::default()
            })
            .unwrap();
        assert!(
            plan.title.contains("measured on this store: 1 messages"),
            "{}",
            plan.title
        );
        assert!(plan.value("data volume").unwrap() > 0.0);
    }

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(num(9750.0), "9,750");
        assert_eq!(num(2.5), "2.5");
        assert_eq!(num(1_234_567.0), "1,234,567");
        assert_eq!(num(0.2), "0.2");
    }

    #[test]
    fn the_tegami_model_adds_up() {
        let config = Config::load(None).unwrap();
        let profile = Profile {
            mailboxes: 10.0,
            messages_per_day: 100.0,
            blob_bytes_per_message: 10_000.0,
            metadata_bytes_per_message: 240.0,
            source: "test".into(),
            stored_bytes: 0.0,
            days: 30.0,
            overhead: 1.0,
            free_percent: 0.0,
        };
        let plan = tegami(&profile, &config);
        assert_eq!(plan.value("mail/day"), Some(1000.0 * 10_240.0));
        let wal = config.wal.cap_bytes as f64;
        assert_eq!(plan.value("data"), Some(30.0 * 1000.0 * 10_240.0 + wal));
        assert_eq!(plan.value("data volume"), plan.value("data"));
        let copies =
            (config.schedule.backup.keep_daily + config.schedule.backup.keep_weekly) as f64;
        let backups = 30.0 * 1000.0 * (10_000.0 + 240.0 * copies);
        assert!((plan.value("backups").unwrap() - backups).abs() < 1e-3);
    }
}
