//! `tegami list | subscriber | campaign | sequence`: the face of `ops::newsletter`, the
//! operator's side of newsletters and step mail (whose rules the JSON API shares, in
//! `newsletter::admin`). The commands only change the database, so they work with the
//! server up or down; the server's newsletter engine picks up what they change.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use newsletter::admin::{NewList, SequenceRequest, SubscriberView};
use ops::Ops;
use ops::newsletter::{CampaignCreate, SequenceReport, StepCreate, SubscriberAdd};
use store::{CampaignAction, Outcome};

#[derive(Subcommand)]
pub enum ListCommand {
    /// Make a list that campaigns and sequences send to.
    Add {
        name: String,
        /// The From address of its mail (one of this server's domains, to be DKIM-signed).
        #[arg(long = "from")]
        from_address: String,
        #[arg(long)]
        from_name: Option<String>,
        /// Subscribers from the public form confirm by mail before they get anything.
        #[arg(long)]
        double_opt_in: bool,
    },
    /// Every list with its subscribers by status.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a list with its subscribers, campaigns, sequences and their history.
    Remove { name: String },
}

#[derive(Subcommand)]
pub enum SubscriberCommand {
    /// Add one subscriber (active at once with --confirmed or on a list without double opt-in).
    Add {
        list: String,
        email: String,
        #[arg(long)]
        name: Option<String>,
        /// A template attribute, KEY=VALUE (repeat for more).
        #[arg(long = "attr")]
        attributes: Vec<String>,
        #[arg(long)]
        confirmed: bool,
    },
    /// Import a CSV file: a header row "email,name,..." (further columns are attributes),
    /// then one subscriber a line; bad rows are reported with their line numbers.
    Import { list: String, file: PathBuf },
    /// Write the list's subscribers as CSV (email, name, status, then attributes).
    Export { list: String, file: PathBuf },
    /// The list's subscribers.
    List {
        list: String,
        #[arg(long)]
        json: bool,
    },
    /// Forget one subscriber.
    Remove { list: String, email: String },
    /// Unsubscribe one subscriber (kept, marked unsubscribed).
    Unsubscribe { list: String, email: String },
    /// What one subscriber received: campaigns and steps, with outcomes.
    History {
        list: String,
        email: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum CampaignCommand {
    /// Schedule a campaign to every active subscriber of a list.
    Create {
        list: String,
        #[arg(long)]
        subject: String,
        /// The plain-text template ({{name}}, {{email}}, {{attr.KEY}}, {{unsubscribe_url}}).
        #[arg(long)]
        text: PathBuf,
        /// An HTML template, sent beside the text.
        #[arg(long)]
        html: Option<PathBuf>,
        /// When to start ("YYYY-MM-DD HH:MM" in the server's time zone); default now.
        #[arg(long)]
        at: Option<String>,
        /// Messages per second (default: [newsletter] rate_per_second).
        #[arg(long)]
        rate: Option<u32>,
        /// Messages per second to any one recipient domain (default: no limit of its own;
        /// the queue's per-destination limits still hold).
        #[arg(long)]
        rate_per_domain: Option<u32>,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    /// State and totals (sent, bounces, clicks, unsubscribes).
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    Pause {
        id: i64,
    },
    Resume {
        id: i64,
    },
    Cancel {
        id: i64,
    },
    /// The subscribers with an outcome (default: who was sent it), one address a line.
    Recipients {
        id: i64,
        #[arg(long, default_value = "sent")]
        outcome: String,
    },
}

#[derive(Subcommand)]
pub enum SequenceCommand {
    /// A step-mail sequence for a list; steps are added with `sequence step`.
    Create {
        list: String,
        name: String,
        /// The zone whose clock the steps' times of day follow.
        #[arg(long, default_value = "UTC")]
        time_zone: String,
        /// Subscribers who joined before now take part too (from now on).
        #[arg(long)]
        join_existing: bool,
    },
    /// Append a step: sent N days after the subscriber's start, at a time of day.
    Step {
        id: i64,
        #[arg(long)]
        days: u32,
        /// HH:MM in the sequence's time zone.
        #[arg(long)]
        at: String,
        #[arg(long)]
        subject: String,
        #[arg(long)]
        text: PathBuf,
        #[arg(long)]
        html: Option<PathBuf>,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a sequence with its steps and their history.
    Remove { id: i64 },
}

pub enum Command {
    List(ListCommand),
    Subscriber(SubscriberCommand),
    Campaign(CampaignCommand),
    Sequence(SequenceCommand),
}

pub fn run(
    data: &Path,
    config: &ops::config::Config,
    command: Command,
) -> anyhow::Result<ExitCode> {
    let ops = Ops::open(data, config.clone())?;
    match command {
        Command::List(c) => lists(&ops, c),
        Command::Subscriber(c) => subscribers(&ops, c),
        Command::Campaign(c) => campaigns(&ops, c),
        Command::Sequence(c) => sequences(&ops, c),
    }?;
    Ok(ExitCode::SUCCESS)
}

/// A report as one line of JSON, its keys in alphabetical order as they have always been.
fn json_line(report: &impl serde::Serialize) -> anyhow::Result<String> {
    Ok(serde_json::to_value(report)?.to_string())
}

fn lists(ops: &Ops, command: ListCommand) -> anyhow::Result<()> {
    match command {
        ListCommand::Add {
            name,
            from_address,
            from_name,
            double_opt_in,
        } => {
            let list = NewList {
                name,
                from_address,
                from_name: from_name.unwrap_or_default(),
                double_opt_in,
            };
            let id = ops.list_add(&list)?;
            println!("list {} ({})", id.0, list.name);
        }
        ListCommand::List { json } => {
            let all = ops.lists()?;
            if json {
                println!("{}", json_line(&all)?);
            } else if all.is_empty() {
                println!("no lists yet: `tegami list add NAME --from news@example.com`");
            } else {
                for list in all {
                    let counts: Vec<String> = list
                        .subscribers
                        .iter()
                        .map(|(k, v)| format!("{v} {k}"))
                        .collect();
                    println!(
                        "{}\t{}\t{}\t{}{}",
                        list.id,
                        list.name,
                        list.from_address,
                        counts.join(", "),
                        if list.double_opt_in {
                            "\tdouble opt-in"
                        } else {
                            ""
                        }
                    );
                }
            }
        }
        ListCommand::Remove { name } => {
            ops.list_remove(&name)?;
            println!("removed list {name} with its subscribers, campaigns and sequences");
        }
    }
    Ok(())
}

fn subscribers(ops: &Ops, command: SubscriberCommand) -> anyhow::Result<()> {
    match command {
        SubscriberCommand::Add {
            list,
            email,
            name,
            attributes,
            confirmed,
        } => {
            let (id, status) = ops.subscriber_add(SubscriberAdd {
                list,
                email: email.clone(),
                name,
                attributes,
                confirmed,
            })?;
            println!("subscriber {} ({email}, {})", id.0, status.as_str());
        }
        SubscriberCommand::Import { list, file } => {
            let report = ops.subscriber_import(&list, &file)?;
            println!(
                "added {}, already present {}, invalid {}",
                report.added,
                report.present,
                report.bad.len()
            );
            for (line, reason) in report.bad {
                println!("line {line}: {reason}");
            }
        }
        SubscriberCommand::Export { list, file } => {
            let count = ops.subscriber_export(&list, &file)?;
            println!("wrote {count} subscribers to {}", file.display());
        }
        SubscriberCommand::List { list, json } => {
            let all = ops.subscribers(&list)?;
            if json {
                let views: Vec<SubscriberView> =
                    all.into_iter().map(SubscriberView::from).collect();
                println!("{}", json_line(&views)?);
            } else {
                let mut out = std::io::stdout().lock();
                for s in all {
                    let _ = writeln!(
                        out,
                        "{}\t{}\t{}\t{}",
                        s.id.0,
                        s.email,
                        s.status.as_str(),
                        s.name
                    );
                }
            }
        }
        SubscriberCommand::Remove { list, email } => {
            let list = ops.subscriber_remove(&list, &email)?;
            println!("removed {email} from {}", list.name);
        }
        SubscriberCommand::Unsubscribe { list, email } => {
            let list = ops.subscriber_unsubscribe(&list, &email)?;
            println!("unsubscribed {email} from {}", list.name);
        }
        SubscriberCommand::History { list, email, json } => {
            let history = ops.subscriber_history(&list, &email)?;
            if json {
                println!("{}", json_line(&history)?);
            } else if history.is_empty() {
                println!("{email} has received nothing yet");
            } else {
                for entry in history {
                    println!("{} {}\t{}", entry.kind, entry.id, entry.outcome);
                }
            }
        }
    }
    Ok(())
}

fn campaigns(ops: &Ops, command: CampaignCommand) -> anyhow::Result<()> {
    match command {
        CampaignCommand::Create {
            list,
            subject,
            text,
            html,
            at,
            rate,
            rate_per_domain,
        } => {
            let id = ops.campaign_add(CampaignCreate {
                list,
                subject,
                text,
                html,
                at,
                rate,
                rate_per_domain,
            })?;
            println!("campaign {}", id.0);
        }
        CampaignCommand::List { json } => {
            let all = ops.campaigns()?;
            if json {
                println!("{}", json_line(&all)?);
            } else {
                for c in all {
                    println!(
                        "{}\t{}\tlist {}\t{} sent\t{}",
                        c.id,
                        c.state,
                        c.list,
                        c.totals.get(Outcome::Sent.as_str()).unwrap_or(&0),
                        c.subject
                    );
                }
            }
        }
        CampaignCommand::Show { id, json } => {
            let detail = ops.campaign(id)?;
            let c = &detail.report;
            if json {
                println!("{}", json_line(c)?);
            } else {
                println!("campaign {} ({})", c.id, c.state);
                println!("subject  {}", c.subject);
                println!("list     {}", detail.list_name);
                println!("send at  {}", crate::queue::date(c.send_at));
                for outcome in Outcome::ALL {
                    println!(
                        "{:<12} {}",
                        outcome.as_str(),
                        c.totals.get(outcome.as_str()).unwrap_or(&0)
                    );
                }
            }
        }
        CampaignCommand::Pause { id } => apply(ops, id, CampaignAction::Pause)?,
        CampaignCommand::Resume { id } => apply(ops, id, CampaignAction::Resume)?,
        CampaignCommand::Cancel { id } => apply(ops, id, CampaignAction::Cancel)?,
        CampaignCommand::Recipients { id, outcome } => {
            let mut out = std::io::stdout().lock();
            for email in ops.campaign_recipients(id, &outcome)? {
                let _ = writeln!(out, "{email}");
            }
        }
    }
    Ok(())
}

fn apply(ops: &Ops, id: i64, action: CampaignAction) -> anyhow::Result<()> {
    let state = ops.campaign_apply(id, action)?;
    println!("campaign {id}: {}", state.as_str());
    Ok(())
}

fn sequences(ops: &Ops, command: SequenceCommand) -> anyhow::Result<()> {
    match command {
        SequenceCommand::Create {
            list,
            name,
            time_zone,
            join_existing,
        } => {
            let id = ops.sequence_add(&SequenceRequest {
                list,
                name,
                time_zone: Some(time_zone),
                join_existing,
            })?;
            println!("sequence {}", id.0);
        }
        SequenceCommand::Step {
            id,
            days,
            at,
            subject,
            text,
            html,
        } => {
            let step = ops.step_add(StepCreate {
                sequence: id,
                days,
                at,
                subject,
                text,
                html,
            })?;
            println!("step {} of sequence {id}", step.0);
        }
        SequenceCommand::List { json } => {
            let all = ops.sequences()?;
            if json {
                let reports: Vec<SequenceReport> = all
                    .iter()
                    .map(|(s, steps)| SequenceReport::new(s, steps))
                    .collect();
                println!("{}", json_line(&reports)?);
            } else {
                for (s, steps) in all {
                    println!(
                        "{}\t{}\tlist {}\t{}\t{} steps",
                        s.id.0,
                        s.name,
                        s.list.0,
                        s.time_zone,
                        steps.len()
                    );
                    for step in steps {
                        println!(
                            "  step {} (#{}): day {} at {:02}:{:02}\t{}",
                            step.id.0,
                            step.position,
                            step.days_after,
                            step.send_minute / 60,
                            step.send_minute % 60,
                            step.subject
                        );
                    }
                }
            }
        }
        SequenceCommand::Remove { id } => {
            ops.sequence_remove(id)?;
            println!("removed sequence {id}");
        }
    }
    Ok(())
}
