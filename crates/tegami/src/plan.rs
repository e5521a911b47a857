//! `tegami plan`: the capacity planner's command line. The arithmetic is `ops::plan`; this
//! file turns the flags into a request (its defaults are `PlanRequest`'s) and prints every
//! step of the plan it returns.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use ops::plan::{Plan, PlanRequest};

use ops::config::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Model {
    /// tegami's own costs, measured from the store when it holds mail.
    #[default]
    Tegami,
    /// The Exchange 2010 transaction-log arithmetic of the seed article.
    Exchange2010,
}

#[derive(Args, Debug, Clone)]
pub struct PlanArgs {
    #[arg(long, value_enum, default_value_t = Model::Tegami)]
    model: Model,
    /// Mailboxes (accounts) on the server or in the database.
    #[arg(long)]
    mailboxes: Option<f64>,
    /// Messages each mailbox receives (and sends) per day.
    #[arg(long)]
    messages_per_day: Option<f64>,
    /// Average message size in KB (1 KB = 1024 bytes).
    #[arg(long)]
    avg_message_kb: Option<f64>,
    /// exchange2010: share of the mailboxes moved into the database per day, in percent.
    #[arg(long, default_value_t = PlanRequest::default().moves_per_day_percent)]
    moves_per_day_percent: f64,
    /// exchange2010: average mailbox size in GB (a moved mailbox writes about that much log).
    #[arg(long, default_value_t = PlanRequest::default().avg_mailbox_gb)]
    avg_mailbox_gb: f64,
    /// exchange2010: days of logs to hold while truncation (backup) keeps failing.
    #[arg(long, default_value_t = PlanRequest::default().truncation_failure_days)]
    truncation_failure_days: f64,
    /// exchange2010: days of move logs to hold.
    #[arg(long, default_value_t = PlanRequest::default().move_days)]
    move_days: f64,
    /// tegami: days of mail to size the data volume for (mail is kept that long).
    #[arg(long, default_value_t = PlanRequest::default().days)]
    days: f64,
    /// Factor for what the arithmetic does not foresee.
    #[arg(long, default_value_t = PlanRequest::default().overhead)]
    overhead: f64,
    /// Share of each volume to keep free, in percent.
    #[arg(long, default_value_t = PlanRequest::default().free_percent)]
    free_percent: f64,
}

impl PlanArgs {
    fn request(&self) -> PlanRequest {
        PlanRequest {
            model: match self.model {
                Model::Tegami => ops::plan::Model::Tegami,
                Model::Exchange2010 => ops::plan::Model::Exchange2010,
            },
            mailboxes: self.mailboxes,
            messages_per_day: self.messages_per_day,
            avg_message_kb: self.avg_message_kb,
            moves_per_day_percent: self.moves_per_day_percent,
            avg_mailbox_gb: self.avg_mailbox_gb,
            truncation_failure_days: self.truncation_failure_days,
            move_days: self.move_days,
            days: self.days,
            overhead: self.overhead,
            free_percent: self.free_percent,
        }
    }
}

pub fn run(data: &Path, config: &Config, args: PlanArgs) -> anyhow::Result<ExitCode> {
    let plan = ops::plan::plan(data, config, &args.request())?;
    print!("{}", render(&plan));
    Ok(ExitCode::SUCCESS)
}

/// The title, the numbered steps with their labels aligned, then the notes.
fn render(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", plan.title);
    let width = plan.steps.iter().map(|s| s.label.len()).max().unwrap_or(0);
    for (n, step) in plan.steps.iter().enumerate() {
        let _ = writeln!(
            out,
            "{:>2}. {:<width$}  {} = {}",
            n + 1,
            step.label,
            step.how,
            step.shown
        );
    }
    for note in &plan.notes {
        let _ = writeln!(out, "note: {note}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_numbered_and_aligned_and_notes_follow() {
        let args = PlanArgs {
            model: Model::Exchange2010,
            mailboxes: Some(250.0),
            messages_per_day: Some(150.0),
            avg_message_kb: Some(100.0),
            moves_per_day_percent: 1.0,
            avg_mailbox_gb: 5.4,
            truncation_failure_days: 3.0,
            move_days: 7.0,
            days: 365.0,
            overhead: 1.2,
            free_percent: 20.0,
        };
        let config = Config::load(None).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let text = render(&ops::plan::plan(dir.path(), &config, &args.request()).unwrap());
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("model exchange2010:"), "{text}");
        assert_eq!(
            lines[3],
            " 3. logs/mailbox/day           30 × 1.27 = 38.10, up to whole logs = 39"
        );
        assert!(lines[4].starts_with(" 4. logs/database/day          39 × 250 mailboxes = 9,750"));
        assert!(
            lines
                .last()
                .unwrap()
                .starts_with("note: the article prints 13,888")
        );
    }
}
