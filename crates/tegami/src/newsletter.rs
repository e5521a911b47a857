//! `tegami list | subscriber | campaign | sequence`: the operator's side of newsletters
//! and step mail. The commands only change the database, so they work with the server up
//! or down; the server's newsletter engine picks up what they change at its next look.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::json;
use store::{
    Campaign, CampaignAction, CampaignId, CampaignState, HistoryRef, List, NewCampaign, NewStep,
    NewSubscriber, Newsletters, Outcome, SequenceId, SqliteStore, StoreError, Subscriber,
    SubscriberStatus,
};

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
    let store = SqliteStore::open(data)
        .with_context(|| format!("cannot open the store in {}", data.display()))?;
    let clock = gate::Clock::system().map_err(anyhow::Error::msg)?;
    let now = clock.unix();
    match command {
        Command::List(c) => lists(&store, c, now),
        Command::Subscriber(c) => subscribers(&store, c, now),
        Command::Campaign(c) => campaigns(&store, c, &clock, config.newsletter.rate_per_second),
        Command::Sequence(c) => sequences(&store, c, now),
    }?;
    Ok(ExitCode::SUCCESS)
}

fn lists(store: &SqliteStore, command: ListCommand, now: i64) -> anyhow::Result<()> {
    match command {
        ListCommand::Add {
            name,
            from_address,
            from_name,
            double_opt_in,
        } => {
            if !from_address.contains('@') {
                bail!("--from {from_address:?} is not an address (like news@example.com)");
            }
            let id = store.list_add(
                &name,
                &from_address,
                from_name.as_deref().unwrap_or(""),
                double_opt_in,
                now,
            )?;
            println!("list {} ({name})", id.0);
        }
        ListCommand::List { json } => {
            let mut out = Vec::new();
            for list in store.lists()? {
                let counts = store.subscriber_counts(list.id)?;
                out.push((list, counts));
            }
            if json {
                let value: Vec<_> = out.iter().map(|(l, c)| list_json(l, c)).collect();
                println!("{}", serde_json::Value::Array(value));
            } else if out.is_empty() {
                println!("no lists yet: `tegami list add NAME --from news@example.com`");
            } else {
                for (list, counts) in out {
                    let counts: Vec<String> =
                        counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
                    println!(
                        "{}\t{}\t{}\t{}{}",
                        list.id.0,
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
            store.list_remove(&name)?;
            println!("removed list {name} with its subscribers, campaigns and sequences");
        }
    }
    Ok(())
}

pub fn list_json(list: &List, counts: &BTreeMap<&'static str, u64>) -> serde_json::Value {
    json!({
        "id": list.id.0,
        "name": list.name,
        "from_address": list.from_address,
        "from_name": list.from_name,
        "double_opt_in": list.double_opt_in,
        "created": list.created,
        "subscribers": counts,
    })
}

pub fn subscriber_json(s: &Subscriber) -> serde_json::Value {
    json!({
        "id": s.id.0,
        "email": s.email,
        "name": s.name,
        "status": s.status.as_str(),
        "attributes": s.attributes,
        "created": s.created,
        "confirmed": s.confirmed,
        "hard_bounces": s.hard_bounces,
        "soft_bounces": s.soft_bounces,
    })
}

fn subscribers(store: &SqliteStore, command: SubscriberCommand, now: i64) -> anyhow::Result<()> {
    match command {
        SubscriberCommand::Add {
            list,
            email,
            name,
            attributes,
            confirmed,
        } => {
            let list = store.list(&list)?;
            let mut attrs = BTreeMap::new();
            for pair in attributes {
                let Some((key, value)) = pair.split_once('=') else {
                    bail!("--attr {pair:?} is not KEY=VALUE");
                };
                attrs.insert(key.trim().to_string(), value.to_string());
            }
            let status = if confirmed || !list.double_opt_in {
                SubscriberStatus::Active
            } else {
                SubscriberStatus::Unconfirmed
            };
            let id = store.subscriber_add(
                list.id,
                NewSubscriber {
                    email: email.clone(),
                    name: name.unwrap_or_default(),
                    attributes: attrs,
                    status,
                },
                now,
            )?;
            println!("subscriber {} ({email}, {})", id.0, status.as_str());
        }
        SubscriberCommand::Import { list, file } => {
            let list = store.list(&list)?;
            let text =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let parsed = parse_csv(&text)?;
            let lines: Vec<u64> = parsed.rows.iter().map(|(line, _)| *line).collect();
            let rows: Vec<NewSubscriber> = parsed
                .rows
                .into_iter()
                .map(|(_, mut s)| {
                    if !list.double_opt_in {
                        s.status = SubscriberStatus::Active;
                    }
                    s
                })
                .collect();
            let counts = store.subscriber_import(list.id, rows, now)?;
            let mut bad: Vec<(u64, String)> = parsed.bad;
            bad.extend(
                counts
                    .invalid
                    .iter()
                    .map(|(index, reason)| (lines[*index], reason.clone())),
            );
            bad.sort();
            println!(
                "added {}, already present {}, invalid {}",
                counts.added,
                counts.present,
                bad.len()
            );
            for (line, reason) in bad {
                println!("line {line}: {reason}");
            }
        }
        SubscriberCommand::Export { list, file } => {
            let list = store.list(&list)?;
            let all = all_subscribers(store, &list)?;
            let mut keys: Vec<&String> = all.iter().flat_map(|s| s.attributes.keys()).collect();
            keys.sort();
            keys.dedup();
            let mut out = csv::Writer::from_writer(Vec::new());
            let mut header = vec!["email", "name", "status"];
            header.extend(keys.iter().map(|k| k.as_str()));
            out.write_record(&header)?;
            for s in &all {
                let mut row = vec![s.email.as_str(), s.name.as_str(), s.status.as_str()];
                row.extend(
                    keys.iter()
                        .map(|k| s.attributes.get(*k).map(String::as_str).unwrap_or("")),
                );
                out.write_record(&row)?;
            }
            let bytes = out.into_inner().context("cannot write the CSV")?;
            crate::import::replace_file(&file, |out| Ok(out.write_all(&bytes)?))?;
            println!("wrote {} subscribers to {}", all.len(), file.display());
        }
        SubscriberCommand::List { list, json } => {
            let list = store.list(&list)?;
            let all = all_subscribers(store, &list)?;
            if json {
                let value: Vec<_> = all.iter().map(subscriber_json).collect();
                println!("{}", serde_json::Value::Array(value));
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
            let list = store.list(&list)?;
            let s = store.subscriber_by_email(list.id, &email)?;
            store.subscriber_remove(s.id)?;
            println!("removed {email} from {}", list.name);
        }
        SubscriberCommand::Unsubscribe { list, email } => {
            let list = store.list(&list)?;
            let s = store.subscriber_by_email(list.id, &email)?;
            store.subscriber_set_status(s.id, SubscriberStatus::Unsubscribed, None, now)?;
            println!("unsubscribed {email} from {}", list.name);
        }
        SubscriberCommand::History { list, email, json } => {
            let list = store.list(&list)?;
            let s = store.subscriber_by_email(list.id, &email)?;
            let history = store.history_of(s.id)?;
            if json {
                let value: Vec<_> = history
                    .iter()
                    .map(|(about, outcome)| {
                        json!({"kind": about.kind(), "id": about.id(), "outcome": outcome.as_str()})
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(value));
            } else if history.is_empty() {
                println!("{email} has received nothing yet");
            } else {
                for (about, outcome) in history {
                    println!("{} {}\t{}", about.kind(), about.id(), outcome.as_str());
                }
            }
        }
    }
    Ok(())
}

fn all_subscribers(store: &SqliteStore, list: &List) -> anyhow::Result<Vec<Subscriber>> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = store.subscribers(list.id, after, 5000)?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some(last.id);
        all.extend(page);
    }
    Ok(all)
}

/// A CSV import: the good rows with their line numbers, and the lines refused here.
struct ParsedCsv {
    rows: Vec<(u64, NewSubscriber)>,
    bad: Vec<(u64, String)>,
}

/// Reads "email,name,attr..." CSV (a header row first). Rows the CSV reader cannot make
/// sense of, or without an address, are reported by line number; the store judges the
/// addresses themselves.
fn parse_csv(text: &[u8]) -> anyhow::Result<ParsedCsv> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text);
    let header: Vec<String> = reader
        .headers()
        .context("the CSV file has no header row (email,name,...)")?
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    let Some(email_at) = header.iter().position(|h| h == "email") else {
        bail!(
            "the CSV header has no \"email\" column (found: {})",
            header.join(",")
        );
    };
    let name_at = header.iter().position(|h| h == "name");
    let mut parsed = ParsedCsv {
        rows: Vec::new(),
        bad: Vec::new(),
    };
    // Line numbers come from byte offsets: the reader's own line count skips blank lines.
    let mut lines = LineCounter::new(text);
    let mut record = csv::StringRecord::new();
    loop {
        let at = reader.position().byte();
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = lines.line_at(e.position().map_or(at, |p| p.byte()));
                parsed.bad.push((line, format!("unreadable: {e}")));
                continue;
            }
        }
        let line = lines.line_at(record.position().map_or(at, |p| p.byte()));
        if record.iter().all(|f| f.is_empty()) {
            continue;
        }
        let email = record.get(email_at).unwrap_or("").to_string();
        if email.is_empty() {
            parsed.bad.push((line, "no email address".into()));
            continue;
        }
        let mut attributes = BTreeMap::new();
        for (i, value) in record.iter().enumerate() {
            if i != email_at
                && Some(i) != name_at
                && !value.is_empty()
                && let Some(key) = header.get(i)
            {
                attributes.insert(key.clone(), value.to_string());
            }
        }
        parsed.rows.push((
            line,
            NewSubscriber {
                email,
                name: name_at
                    .and_then(|i| record.get(i))
                    .unwrap_or("")
                    .to_string(),
                attributes,
                status: SubscriberStatus::Unconfirmed,
            },
        ));
    }
    Ok(parsed)
}

/// Turns byte offsets, met in ascending order, into 1-based line numbers.
struct LineCounter<'a> {
    text: &'a [u8],
    offset: usize,
    line: u64,
}

impl<'a> LineCounter<'a> {
    fn new(text: &'a [u8]) -> Self {
        LineCounter {
            text,
            offset: 0,
            line: 1,
        }
    }

    /// The line of the first byte at or after `byte` that is not a line end: a record's
    /// position is where the reader began, before the blank lines it skipped.
    fn line_at(&mut self, byte: u64) -> u64 {
        let mut byte = (byte as usize).min(self.text.len());
        while byte < self.text.len() && matches!(self.text[byte], b'\r' | b'\n') {
            byte += 1;
        }
        if byte > self.offset {
            self.line += self.text[self.offset..byte]
                .iter()
                .filter(|&&b| b == b'\n')
                .count() as u64;
            self.offset = byte;
        }
        self.line
    }
}

fn campaigns(
    store: &SqliteStore,
    command: CampaignCommand,
    clock: &gate::Clock,
    default_rate: u32,
) -> anyhow::Result<()> {
    let now = clock.unix();
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
            let list = store.list(&list)?;
            let send_at = match at {
                None => now,
                Some(at) => {
                    let civil: jiff::civil::DateTime =
                        at.replace(' ', "T").parse().with_context(|| {
                            format!("--at {at:?} is not a date and time (YYYY-MM-DD HH:MM)")
                        })?;
                    civil
                        .to_zoned(clock.time_zone().clone())
                        .context("that time does not exist in the server's time zone")?
                        .timestamp()
                        .as_second()
                }
            };
            let id = store.campaign_add(NewCampaign {
                list: list.id,
                subject,
                text: read_template(&text)?,
                html: html.as_deref().map(read_template).transpose()?,
                send_at,
                state: CampaignState::Scheduled,
                rate_per_second: rate.unwrap_or(default_rate),
                rate_per_domain: rate_per_domain.unwrap_or(0),
                created: now,
            })?;
            println!("campaign {}", id.0);
        }
        CampaignCommand::List { json } => {
            let all = store.campaigns()?;
            if json {
                let value: Vec<_> = all
                    .iter()
                    .map(|c| campaign_json(store, c))
                    .collect::<Result<_, _>>()?;
                println!("{}", serde_json::Value::Array(value));
            } else {
                for c in all {
                    println!(
                        "{}\t{}\tlist {}\t{} sent\t{}",
                        c.id.0,
                        c.state.as_str(),
                        c.list.0,
                        store.count(HistoryRef::Campaign(c.id), Outcome::Sent)?,
                        c.subject
                    );
                }
            }
        }
        CampaignCommand::Show { id, json } => {
            let c = store.campaign(CampaignId(id))?;
            let value = campaign_json(store, &c)?;
            if json {
                println!("{value}");
            } else {
                println!("campaign {} ({})", c.id.0, c.state.as_str());
                println!("subject  {}", c.subject);
                println!("list     {}", store.list_by_id(c.list)?.name);
                println!("send at  {}", crate::queue::date(c.send_at));
                for outcome in Outcome::ALL {
                    println!(
                        "{:<12} {}",
                        outcome.as_str(),
                        value["totals"][outcome.as_str()]
                    );
                }
            }
        }
        CampaignCommand::Pause { id } => apply(store, id, CampaignAction::Pause)?,
        CampaignCommand::Resume { id } => apply(store, id, CampaignAction::Resume)?,
        CampaignCommand::Cancel { id } => apply(store, id, CampaignAction::Cancel)?,
        CampaignCommand::Recipients { id, outcome } => {
            let Some(outcome) = Outcome::parse(&outcome) else {
                bail!(
                    "--outcome {outcome:?} is not one of sent, hard_bounce, soft_bounce, click, unsubscribe, open"
                );
            };
            let campaign = store.campaign(CampaignId(id))?;
            let ids: std::collections::HashSet<_> = store
                .received_by(HistoryRef::Campaign(campaign.id), outcome)?
                .into_iter()
                .collect();
            // The list's subscribers page by page (a few queries, not one per id), in id
            // order as the set is; ids of subscribers removed since name nobody and drop out.
            let list = store.list_by_id(campaign.list)?;
            let mut out = std::io::stdout().lock();
            for s in all_subscribers(store, &list)? {
                if ids.contains(&s.id) {
                    let _ = writeln!(out, "{}", s.email);
                }
            }
        }
    }
    Ok(())
}

/// A campaign with its totals: the size of each outcome's set (who), so a click counted
/// twice by one reader is one here; the daily totals keep every click.
pub fn campaign_json(store: &SqliteStore, c: &Campaign) -> Result<serde_json::Value, StoreError> {
    let about = HistoryRef::Campaign(c.id);
    let mut totals = serde_json::Map::new();
    for outcome in Outcome::ALL {
        totals.insert(outcome.as_str().into(), store.count(about, outcome)?.into());
    }
    Ok(json!({
        "id": c.id.0,
        "list": c.list.0,
        "subject": c.subject,
        "state": c.state.as_str(),
        "send_at": c.send_at,
        "rate_per_second": c.rate_per_second,
        "created": c.created,
        "totals": totals,
    }))
}

fn apply(store: &SqliteStore, id: i64, action: CampaignAction) -> anyhow::Result<()> {
    let id = CampaignId(id);
    let transition = store.campaign_apply(id, action)?;
    if let Some(refused) = transition.refusal(id, action) {
        bail!("{refused}");
    }
    println!("campaign {}: {}", id.0, action.target().as_str());
    Ok(())
}

fn sequences(store: &SqliteStore, command: SequenceCommand, now: i64) -> anyhow::Result<()> {
    match command {
        SequenceCommand::Create {
            list,
            name,
            time_zone,
            join_existing,
        } => {
            let list = store.list(&list)?;
            let id = store.sequence_add(list.id, &name, &time_zone, join_existing, now)?;
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
            let minute = gate::maint::parse_minutes(&at)
                .with_context(|| format!("--at {at:?} is not a time of day (HH:MM)"))?;
            let step = store.step_add(
                SequenceId(id),
                NewStep {
                    days_after: days,
                    send_minute: minute,
                    subject,
                    text: read_template(&text)?,
                    html: html.as_deref().map(read_template).transpose()?,
                },
            )?;
            println!("step {} of sequence {id}", step.0);
        }
        SequenceCommand::List { json } => {
            let all = store.sequences()?;
            if json {
                let value: Vec<_> = all
                    .iter()
                    .map(|(s, steps)| sequence_json(s, steps))
                    .collect();
                println!("{}", serde_json::Value::Array(value));
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
            store.sequence_remove(SequenceId(id))?;
            println!("removed sequence {id}");
        }
    }
    Ok(())
}

pub fn sequence_json(s: &store::Sequence, steps: &[store::Step]) -> serde_json::Value {
    json!({
        "id": s.id.0,
        "list": s.list.0,
        "name": s.name,
        "time_zone": s.time_zone,
        "join_existing": s.join_existing,
        "created": s.created,
        "steps": steps.iter().map(|st| json!({
            "id": st.id.0,
            "position": st.position,
            "days_after": st.days_after,
            "send_minute": st.send_minute,
            "subject": st.subject,
        })).collect::<Vec<_>>(),
    })
}

fn read_template(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the template {} (UTF-8 text)", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_keep_their_line_numbers_and_bad_rows_are_named() {
        let text = b"email,name,plan\n\
            a@example.com,Alice,gold\n\
            ,Nobody,\n\
            \n\
            \"b@example.com\",\"Bob, Jr.\",\n";
        let parsed = parse_csv(text).unwrap();
        let rows: Vec<(u64, &str, &str)> = parsed
            .rows
            .iter()
            .map(|(l, s)| (*l, s.email.as_str(), s.name.as_str()))
            .collect();
        assert_eq!(
            rows,
            [
                (2, "a@example.com", "Alice"),
                (5, "b@example.com", "Bob, Jr.")
            ]
        );
        assert_eq!(parsed.rows[0].1.attributes["plan"], "gold");
        assert!(parsed.rows[1].1.attributes.is_empty());
        assert_eq!(parsed.bad, [(3, "no email address".to_string())]);
    }

    #[test]
    fn a_csv_without_an_email_column_is_refused() {
        let e = parse_csv(b"mail,name\na@b.c,A\n")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("email"), "{e}");
    }
}
