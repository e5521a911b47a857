//! `tegami list | subscriber | campaign | sequence | suppression`: the face of
//! `ops::newsletter`, the operator's side of newsletters and step mail (whose rules the JSON API shares, in
//! `newsletter::admin`). The commands only change the database, so they work with the
//! server up or down; the server's newsletter engine picks up what they change.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use newsletter::admin::{NewList, SequenceRequest, SubscriberView};
use ops::Ops;
use ops::newsletter::{CampaignChange, CampaignCreate, StepCreate, SubscriberAdd};
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
    /// Schedule a campaign to the active subscribers of one list or more, all of them or
    /// those a segment selects.
    Create {
        /// The list (or give the lists with --list).
        list: Option<String>,
        /// A list to send to, repeated for several (after LIST, if given); an address on
        /// several gets one mail, as the subscriber of the first list it is active on.
        #[arg(long = "list", value_name = "LIST")]
        lists: Vec<String>,
        /// A segment term, repeated: all must hold. KEY=VALUE, KEY!=VALUE, KEY=* (has it),
        /// KEY!=* (has not), joined-after:YYYY-MM-DD, joined-before:..,
        /// confirmed-after:.., confirmed-before:.., received:ID, opened:ID, clicked:ID,
        /// not-received:ID, not-opened:ID, not-clicked:ID.
        #[arg(long = "where", value_name = "TERM")]
        segment: Vec<String>,
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
        /// Messages per second, 0 for no limit (default: [newsletter] rate_per_second).
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
    /// State, totals (sent, bounces, clicks, unsubscribes) and the clicks per link.
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Write the campaign's report as CSV, one row per subscriber it reached with each
    /// outcome (sent, delivered, deferred, failed, bounces, opened, clicked, unsubscribed,
    /// complained) and the times still known, to FILE or to standard output.
    Report {
        id: i64,
        file: Option<PathBuf>,
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
    /// The campaign's mail rendered for one subscriber (or a sample reader without a name
    /// or attributes): links stay the originals and the unsubscribe link does nothing.
    Preview {
        id: i64,
        /// The subscriber of the campaign's list whose data fills the templates.
        #[arg(long)]
        subscriber: Option<String>,
        /// Print the HTML part instead of the text.
        #[arg(long)]
        html: bool,
        /// Print whom it goes to instead: its lists, its segment, and how many different
        /// addresses they select now.
        #[arg(long, conflicts_with = "html")]
        count: bool,
        #[arg(long)]
        json: bool,
    },
    /// Queue one test mail of the campaign, "[TEST] " before its subject; it counts in
    /// none of the campaign's totals.
    Test {
        id: i64,
        /// Where the test goes.
        #[arg(long)]
        to: String,
        /// The subscriber whose data fills the templates (default: a sample reader at --to).
        #[arg(long)]
        subscriber: Option<String>,
    },
    /// Change a campaign before it starts sending (a draft or scheduled one); a draft
    /// given --at is scheduled.
    Edit {
        id: i64,
        #[arg(long)]
        subject: Option<String>,
        /// A new plain-text template.
        #[arg(long)]
        text: Option<PathBuf>,
        /// A new HTML template.
        #[arg(long)]
        html: Option<PathBuf>,
        /// A new start ("YYYY-MM-DD HH:MM" in the server's time zone).
        #[arg(long)]
        at: Option<String>,
        /// Messages per second, 0 for no limit.
        #[arg(long)]
        rate: Option<u32>,
        #[arg(long)]
        rate_per_domain: Option<u32>,
        /// Its lists anew, repeated, the first first (an address on several gets one mail).
        #[arg(long = "list", value_name = "LIST")]
        lists: Vec<String>,
        /// Its segment anew: terms as `campaign create --where` takes them, repeated.
        #[arg(long = "where", value_name = "TERM", conflicts_with = "everyone")]
        segment: Vec<String>,
        /// Drop its segment: every active subscriber of its lists.
        #[arg(long)]
        everyone: bool,
    },
    /// Make a new campaign from any campaign (same list, subject, templates and rates):
    /// scheduled with --at, else a draft that `campaign edit ID --at` schedules.
    Copy {
        id: i64,
        #[arg(long)]
        at: Option<String>,
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
        /// Send only to readers for whom an event of an earlier step of this sequence
        /// happened: clicked:STEP, opened:STEP, received:STEP, or not- before one.
        #[arg(long = "if", value_name = "CONDITION")]
        condition: Option<String>,
        /// What a reader the condition does not hold for gets when the step is due: skip
        /// (passed over; the next step follows) or wait (gets it once it holds).
        #[arg(long, value_name = "skip|wait", requires = "condition")]
        otherwise: Option<String>,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a sequence with its steps and their history.
    Remove { id: i64 },
    /// Write a step's report as CSV (the columns of `campaign report`), to FILE or to
    /// standard output; STEP is the step's id (`sequence list --json`).
    Report { step: i64, file: Option<PathBuf> },
}

#[derive(Subcommand)]
pub enum SuppressionCommand {
    /// Every suppressed address with its reason and when.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Suppress an address: no campaign or step mail goes to it, on any list.
    Add {
        address: String,
        /// bounced, complained, unsubscribed or manual.
        #[arg(long, default_value = "manual")]
        reason: String,
        /// Why, for whoever reads the list later.
        #[arg(long)]
        note: Option<String>,
    },
    /// Take an address off the list: mail to it resumes with the next campaign or step.
    Remove { address: String },
    /// Import a CSV file with a header row naming an "address" (or "email") column and,
    /// optionally, "reason", "at" and "note" (what `export` writes); bad rows are reported
    /// with their line numbers.
    Import {
        file: PathBuf,
        /// The reason of rows that give none.
        #[arg(long, default_value = "manual")]
        reason: String,
    },
    /// Write the list as CSV (address,reason,at,note), to FILE or to standard output.
    Export { file: Option<PathBuf> },
}

pub enum Command {
    List(ListCommand),
    Subscriber(SubscriberCommand),
    Campaign(CampaignCommand),
    Sequence(SequenceCommand),
    Suppression(SuppressionCommand),
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
        Command::Suppression(c) => suppressions(&ops, c),
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
            lists,
            segment,
            subject,
            text,
            html,
            at,
            rate,
            rate_per_domain,
        } => {
            let mut lists = list.into_iter().chain(lists);
            let Some(list) = lists.next() else {
                anyhow::bail!("give the campaign's list (campaign create LIST, or --list LIST)");
            };
            let id = ops.campaign_add(CampaignCreate {
                list,
                also: lists.collect(),
                segment,
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
                    let count = |o: Outcome| c.totals.get(o.as_str()).copied().unwrap_or(0);
                    println!(
                        "{}\t{}\tlist {}\t{} queued, {} delivered, {} failed\t{}",
                        c.id,
                        c.state,
                        c.list,
                        count(Outcome::Sent),
                        count(Outcome::Delivered),
                        count(Outcome::Failed),
                        c.subject
                    );
                }
            }
        }
        CampaignCommand::Show { id, json } => {
            let detail = ops.campaign(id)?;
            let c = &detail.report;
            if json {
                let mut value = serde_json::to_value(c)?;
                value["links"] = serde_json::to_value(&detail.links)?;
                println!("{value}");
            } else {
                println!("campaign {} ({})", c.id, c.state);
                println!("subject  {}", c.subject);
                println!("list     {}", detail.list_names.join(", "));
                if c.segment.is_empty() {
                    println!("segment  every active subscriber");
                } else {
                    println!("segment  {}", c.segment.join(" and "));
                }
                println!("send at  {}", crate::queue::date(c.send_at));
                match c.rate_per_second {
                    0 => println!("rate     no limit"),
                    r => println!("rate     {r} a second"),
                }
                let count = |o: Outcome| c.totals.get(o.as_str()).copied().unwrap_or(0);
                // What the outbound queue did with the mails, then what readers did.
                println!("queued       {}", count(Outcome::Sent));
                println!("delivered    {}", count(Outcome::Delivered));
                println!(
                    "deferred     {}  (retried at least once)",
                    count(Outcome::Deferred)
                );
                println!("failed       {}", count(Outcome::Failed));
                println!("waiting      {}  (still in the queue)", c.waiting);
                for outcome in Outcome::ALL {
                    if !matches!(
                        outcome,
                        Outcome::Sent
                            | Outcome::Delivered
                            | Outcome::Deferred
                            | Outcome::Failed
                            | Outcome::Skipped
                    ) {
                        println!("{:<12} {}", outcome.as_str(), count(outcome));
                    }
                }
                print_links(&detail.links);
            }
        }
        CampaignCommand::Report {
            id,
            file: Some(file),
        } => {
            let count = ops.campaign_report_export(id, &file)?;
            println!("wrote {count} recipients to {}", file.display());
        }
        CampaignCommand::Report { id, file: None } => {
            let (bytes, _) = ops.campaign_report_csv(id)?;
            write_stdout(&bytes)?;
        }
        CampaignCommand::Pause { id } => apply(ops, id, CampaignAction::Pause)?,
        CampaignCommand::Resume { id } => apply(ops, id, CampaignAction::Resume)?,
        CampaignCommand::Cancel { id } => apply(ops, id, CampaignAction::Cancel)?,
        CampaignCommand::Preview {
            id,
            subscriber,
            html,
            count,
            json,
        } => {
            let preview = ops.campaign_preview(id, subscriber.as_deref())?;
            let mut out = std::io::stdout().lock();
            if count && json {
                let _ = writeln!(out, "{}", json_line(&preview.audience)?);
            } else if count {
                let a = &preview.audience;
                let _ = writeln!(out, "lists    {}", a.lists.join(", "));
                if a.segment.is_empty() {
                    let _ = writeln!(out, "segment  every active subscriber");
                } else {
                    let _ = writeln!(out, "segment  {}", a.segment.join(" and "));
                }
                let _ = writeln!(out, "selects  {} subscribers now", a.count);
            } else if json {
                let _ = writeln!(out, "{}", json_line(&preview)?);
            } else if html {
                let Some(body) = &preview.rendered.html else {
                    anyhow::bail!("campaign {id} has no HTML part");
                };
                let _ = writeln!(out, "{body}");
            } else {
                let _ = writeln!(out, "Subject: {}\n", preview.rendered.subject);
                let _ = write!(out, "{}", preview.rendered.text);
            }
        }
        CampaignCommand::Test { id, to, subscriber } => {
            let preview = ops.campaign_test(id, &to, subscriber.as_deref())?;
            println!(
                "queued a test of campaign {id} to {to}: {}",
                preview.rendered.subject
            );
        }
        CampaignCommand::Edit {
            id,
            subject,
            text,
            html,
            at,
            rate,
            rate_per_domain,
            lists,
            segment,
            everyone,
        } => {
            ops.campaign_edit(
                id,
                CampaignChange {
                    subject,
                    text,
                    html,
                    at,
                    rate,
                    rate_per_domain,
                    lists: (!lists.is_empty()).then_some(lists),
                    segment: (everyone || !segment.is_empty()).then_some(segment),
                },
            )?;
            let c = ops.campaign(id)?.report;
            println!("campaign {id} ({}): {}", c.state, c.subject);
        }
        CampaignCommand::Copy { id, at } => {
            let copy = ops.campaign_copy(id, at.as_deref())?;
            let c = ops.campaign(copy.0)?.report;
            println!("campaign {} ({})", copy.0, c.state);
        }
        CampaignCommand::Recipients { id, outcome } => {
            let mut out = std::io::stdout().lock();
            for email in ops.campaign_recipients(id, &outcome)? {
                let _ = writeln!(out, "{email}");
            }
        }
    }
    Ok(())
}

/// The clicks per link under `campaign show`'s totals: unique readers, then every click.
fn print_links(links: &[newsletter::report::LinkClicks]) {
    if links.is_empty() {
        return;
    }
    println!("clicks per link (readers, clicks; from events kept [newsletter] keep_days):");
    for l in links {
        println!("  {:>6} {:>6}  {}", l.clickers, l.clicks, l.url);
    }
}

/// A CSV export to standard output. Into a pipe, a reader that stops early has cut the
/// export short: an error.
fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()?;
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
            condition,
            otherwise,
        } => {
            let step = ops.step_add(StepCreate {
                sequence: id,
                days,
                at,
                subject,
                text,
                html,
                condition,
                otherwise,
            })?;
            println!("step {} of sequence {id}", step.0);
        }
        SequenceCommand::List { json } => {
            if json {
                println!("{}", json_line(&ops.sequence_reports()?)?);
            } else {
                let all = ops.sequences()?;
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
                            "  step {} (#{}): day {} at {:02}:{:02}\t{}{}",
                            step.id.0,
                            step.position,
                            step.days_after,
                            step.send_minute / 60,
                            step.send_minute % 60,
                            step.subject,
                            step.condition
                                .map(|c| format!("\tif {c}, else {}", step.otherwise.as_str()))
                                .unwrap_or_default()
                        );
                    }
                }
            }
        }
        SequenceCommand::Remove { id } => {
            ops.sequence_remove(id)?;
            println!("removed sequence {id}");
        }
        SequenceCommand::Report {
            step,
            file: Some(file),
        } => {
            let count = ops.step_report_export(step, &file)?;
            println!("wrote {count} recipients to {}", file.display());
        }
        SequenceCommand::Report { step, file: None } => {
            let (bytes, _) = ops.step_report_csv(step)?;
            write_stdout(&bytes)?;
        }
    }
    Ok(())
}

fn suppressions(ops: &Ops, command: SuppressionCommand) -> anyhow::Result<()> {
    match command {
        SuppressionCommand::List { json } => {
            let all = ops.suppressions()?;
            if json {
                println!("{}", json_line(&all)?);
            } else if all.is_empty() {
                println!("no address is suppressed");
            } else {
                let mut out = std::io::stdout().lock();
                for s in all {
                    let _ = writeln!(
                        out,
                        "{}\t{}\t{}\t{}",
                        s.address,
                        s.reason,
                        crate::queue::date(s.at),
                        s.note.unwrap_or_default()
                    );
                }
            }
        }
        SuppressionCommand::Add {
            address,
            reason,
            note,
        } => {
            let added = ops.suppression_add(&address, Some(&reason), note.as_deref())?;
            let address = store::suppression_key(&address);
            if added {
                println!("suppressed {address} ({reason})");
            } else {
                println!("{address} was already suppressed; its first entry stays");
            }
        }
        SuppressionCommand::Remove { address } => {
            ops.suppression_remove(&address)?;
            println!("{address} is no longer suppressed");
        }
        SuppressionCommand::Import { file, reason } => {
            let report = ops.suppression_import(&file, Some(&reason))?;
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
        SuppressionCommand::Export { file: Some(file) } => {
            let count = ops.suppression_export(&file)?;
            println!("wrote {count} suppressed addresses to {}", file.display());
        }
        SuppressionCommand::Export { file: None } => {
            let (bytes, _) = ops.suppression_csv()?;
            write_stdout(&bytes)?;
        }
    }
    Ok(())
}
