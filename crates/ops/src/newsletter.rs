//! Newsletters and step mail for the operator: lists, subscribers, campaigns, sequences,
//! the global suppression list.
//! The rules (validation, the CSV format, a new subscriber's status, a campaign's defaults
//! and actions) are the newsletter crate's (`newsletter::admin`), which the JSON API calls
//! too; here they meet the operator's inputs (files, local times, `KEY=VALUE` pairs). The
//! server's engine picks up what changes at its next look, so the server may run or not.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use newsletter::admin::{
    self, AdminError, ImportReport, ListView, NewList, Preview, SequenceRequest, SubscriberRequest,
    SuppressionView,
};
use newsletter::report::{self, LinkClicks};
use serde::Serialize;
use store::{
    Campaign, CampaignAction, CampaignId, CampaignState, HistoryRef, List, ListId, Newsletters,
    Outcome, Sequence, SequenceId, Step, StepId, Subscriber, SubscriberId, SubscriberStatus,
};

use crate::error::IoContext;
use crate::{Error, Ops, Result};

impl From<AdminError> for Error {
    fn from(e: AdminError) -> Error {
        match e {
            // The operator typed the request on the command line: name the flag.
            AdminError::Invalid { field, problem } => {
                Error::Invalid(format!("{} {problem}", field.flag()))
            }
            AdminError::Unreadable(message) => Error::Invalid(message),
            AdminError::Refused(message) => Error::Conflict(message),
            AdminError::Store(e) => Error::Store(e),
            other => Error::failed(other),
        }
    }
}

/// `subscriber add`: one subscriber, its attributes as `KEY=VALUE` pairs.
#[derive(Debug, Clone, Default)]
pub struct SubscriberAdd {
    pub list: String,
    pub email: String,
    pub name: Option<String>,
    pub attributes: Vec<String>,
    pub confirmed: bool,
}

/// `campaign create`: templates from files, the start as a local time.
#[derive(Debug, Clone, Default)]
pub struct CampaignCreate {
    pub list: String,
    /// More lists by name (`--list` after the first); an address on several gets one mail.
    pub also: Vec<String>,
    /// Segment terms (`--where`), each one term of `store::segment`.
    pub segment: Vec<String>,
    pub subject: String,
    pub text: PathBuf,
    pub html: Option<PathBuf>,
    /// "YYYY-MM-DD HH:MM" in the server's time zone; default now.
    pub at: Option<String>,
    pub rate: Option<u32>,
    pub rate_per_domain: Option<u32>,
}

/// `campaign edit`: what to change (the rest stays); templates from files, the start as
/// a local time.
#[derive(Debug, Clone, Default)]
pub struct CampaignChange {
    pub subject: Option<String>,
    pub text: Option<PathBuf>,
    pub html: Option<PathBuf>,
    /// "YYYY-MM-DD HH:MM" in the server's time zone.
    pub at: Option<String>,
    pub rate: Option<u32>,
    pub rate_per_domain: Option<u32>,
    /// `--list`, repeated: its lists anew, the first first.
    pub lists: Option<Vec<String>>,
    /// `--where`, repeated, or `--everyone` (empty): its segment anew.
    pub segment: Option<Vec<String>>,
}

/// `sequence step`: templates from files, the time of day as `HH:MM`.
#[derive(Debug, Clone, Default)]
pub struct StepCreate {
    pub sequence: i64,
    pub days: u32,
    /// HH:MM in the sequence's time zone.
    pub at: String,
    pub subject: String,
    pub text: PathBuf,
    pub html: Option<PathBuf>,
    /// `--if`: sent only to readers for whom this event term holds.
    pub condition: Option<String>,
    /// `--otherwise skip|wait`.
    pub otherwise: Option<String>,
}

/// A campaign with its totals (`newsletter::admin::campaign_totals`).
#[derive(Debug, Clone, Serialize)]
pub struct CampaignReport {
    pub id: i64,
    pub list: i64,
    pub subject: String,
    pub state: &'static str,
    pub send_at: i64,
    /// 0: no limit.
    pub rate_per_second: u32,
    pub created: i64,
    /// The other lists' ids, after `list`.
    pub also: Vec<i64>,
    /// The segment's terms; empty: every active subscriber.
    pub segment: Vec<String>,
    /// The size of each outcome's set. "sent" counts the mails handed to the outbound
    /// queue; "delivered" and "failed" what the queue made of them, "deferred" the mails
    /// retried at least once.
    pub totals: BTreeMap<&'static str, u64>,
    /// Mails still in the queue: handed to it and neither delivered nor failed yet.
    pub waiting: u64,
}

/// One campaign with the name of its list and the clicks per link, for `campaign show`.
#[derive(Debug, Clone)]
pub struct CampaignDetail {
    pub report: CampaignReport,
    pub list_name: String,
    /// Every list it goes to by name, `list_name` first.
    pub list_names: Vec<String>,
    /// The mail's links in order with their readers and clicks
    /// (`newsletter::report::link_clicks`), kept per link and reader, so pruning the raw
    /// events takes none away.
    pub links: Vec<LinkClicks>,
}

/// One thing a subscriber received, and what came of it.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    pub kind: &'static str,
    pub id: i64,
    pub outcome: &'static str,
}

/// A sequence and its steps, as `sequence list --json` gives them.
#[derive(Debug, Clone, Serialize)]
pub struct SequenceReport {
    pub id: i64,
    pub list: i64,
    pub name: String,
    pub time_zone: String,
    pub join_existing: bool,
    pub created: i64,
    pub steps: Vec<StepReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub id: i64,
    pub position: u32,
    pub days_after: u32,
    pub send_minute: u16,
    pub subject: String,
    /// `clicked:STEP` and the like; absent when the step goes to everyone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// "skip" or "wait": what a reader the condition does not hold for gets.
    pub otherwise: &'static str,
    /// Each link of the step's mail with its readers and clicks (kept after pruning).
    pub links: Vec<LinkClicks>,
}

impl SequenceReport {
    fn new(sequence: &Sequence, steps: Vec<(&Step, Vec<LinkClicks>)>) -> SequenceReport {
        SequenceReport {
            id: sequence.id.0,
            list: sequence.list.0,
            name: sequence.name.clone(),
            time_zone: sequence.time_zone.clone(),
            join_existing: sequence.join_existing,
            created: sequence.created,
            steps: steps
                .into_iter()
                .map(|(st, links)| StepReport {
                    id: st.id.0,
                    position: st.position,
                    days_after: st.days_after,
                    send_minute: st.send_minute,
                    subject: st.subject.clone(),
                    condition: st.condition.map(|c| c.to_string()),
                    otherwise: st.otherwise.as_str(),
                    links,
                })
                .collect(),
        }
    }
}

impl Ops {
    pub(crate) fn newsletters(&self) -> &dyn Newsletters {
        self.sqlite().as_ref()
    }

    fn now(&self) -> i64 {
        self.clock().unix()
    }

    // Lists.

    pub fn list_add(&self, list: &NewList) -> Result<ListId> {
        Ok(admin::list_add(self.newsletters(), list, self.now())?)
    }

    /// Every list with its subscribers by status.
    pub fn lists(&self) -> Result<Vec<ListView>> {
        Ok(admin::lists(self.newsletters())?)
    }

    /// Removes a list with its subscribers, campaigns, sequences and their history.
    pub fn list_remove(&self, name: &str) -> Result<()> {
        Ok(self.newsletters().list_remove(name)?)
    }

    // Subscribers.

    pub fn subscriber_add(
        &self,
        request: SubscriberAdd,
    ) -> Result<(SubscriberId, SubscriberStatus)> {
        let attributes = parse_attributes(&request.attributes)?;
        Ok(admin::subscriber_add(
            self.newsletters(),
            &request.list,
            SubscriberRequest {
                email: request.email,
                name: request.name.unwrap_or_default(),
                attributes,
                confirmed: request.confirmed,
            },
            self.now(),
        )?)
    }

    /// Imports a CSV file (see `newsletter::admin::import_csv`).
    pub fn subscriber_import(&self, list: &str, file: &Path) -> Result<ImportReport> {
        // An unknown list is the first thing to say, before the file is read.
        self.newsletters().list(list)?;
        let text = std::fs::read(file).io_context(|| format!("cannot read {}", file.display()))?;
        Ok(admin::import_csv(
            self.newsletters(),
            list,
            &text,
            self.now(),
        )?)
    }

    /// Writes the list's subscribers to `file` as CSV, whole or not at all; returns how many.
    pub fn subscriber_export(&self, list: &str, file: &Path) -> Result<usize> {
        let (bytes, count) = admin::export_csv(self.newsletters(), list)?;
        crate::files::replace_file(file, |out| {
            out.write_all(&bytes)
                .io_context(|| format!("cannot write {}", file.display()))
        })?;
        Ok(count)
    }

    /// The list's subscribers, in id order.
    pub fn subscribers(&self, list: &str) -> Result<Vec<Subscriber>> {
        let list = self.newsletters().list(list)?;
        Ok(admin::all_subscribers(self.newsletters(), list.id)?)
    }

    pub fn subscriber_remove(&self, list: &str, email: &str) -> Result<List> {
        Ok(admin::subscriber_remove(self.newsletters(), list, email)?.0)
    }

    pub fn subscriber_unsubscribe(&self, list: &str, email: &str) -> Result<List> {
        Ok(admin::subscriber_unsubscribe(self.newsletters(), list, email, self.now())?.0)
    }

    /// What one subscriber received: campaigns and steps, with outcomes.
    pub fn subscriber_history(&self, list: &str, email: &str) -> Result<Vec<HistoryEntry>> {
        let (_, subscriber) = admin::subscriber_of(self.newsletters(), list, email)?;
        Ok(self
            .newsletters()
            .history_of(subscriber.id)?
            .into_iter()
            .map(|(about, outcome)| HistoryEntry {
                kind: about.kind(),
                id: about.id(),
                outcome: outcome.as_str(),
            })
            .collect())
    }

    // Campaigns.

    pub fn campaign_add(&self, request: CampaignCreate) -> Result<CampaignId> {
        self.campaign_compose(crate::newsletter_views::CampaignCompose {
            list: request.list,
            also: request.also,
            segment: request.segment,
            subject: request.subject,
            text: read_template(&request.text)?,
            html: request.html.as_deref().map(read_template).transpose()?,
            at: request.at,
            rate: request.rate,
            rate_per_domain: request.rate_per_domain,
        })
    }

    /// Every campaign, newest first, with its totals.
    pub fn campaigns(&self) -> Result<Vec<CampaignReport>> {
        self.newsletters()
            .campaigns()?
            .iter()
            .map(|c| self.campaign_report(c))
            .collect()
    }

    pub fn campaign(&self, id: i64) -> Result<CampaignDetail> {
        let store = self.newsletters();
        let campaign = store.campaign(CampaignId(id))?;
        Ok(CampaignDetail {
            report: self.campaign_report(&campaign)?,
            list_name: store.list_by_id(campaign.list)?.name,
            list_names: campaign
                .lists()
                .into_iter()
                .map(|l| Ok(store.list_by_id(l)?.name))
                .collect::<Result<_>>()?,
            links: report::link_clicks(store, HistoryRef::Campaign(campaign.id))?,
        })
    }

    /// The campaign's per-recipient report as CSV (`newsletter::report::report_csv`) and
    /// how many rows it has.
    pub fn campaign_report_csv(&self, id: i64) -> Result<(Vec<u8>, usize)> {
        let store = self.newsletters();
        let campaign = store.campaign(CampaignId(id))?;
        Ok(report::report_csv(
            store,
            HistoryRef::Campaign(campaign.id),
        )?)
    }

    /// Writes the campaign's report to `file` as CSV, whole or not at all; returns how many
    /// rows.
    pub fn campaign_report_export(&self, id: i64, file: &Path) -> Result<usize> {
        let (bytes, count) = self.campaign_report_csv(id)?;
        write_whole(file, &bytes)?;
        Ok(count)
    }

    fn campaign_report(&self, c: &Campaign) -> Result<CampaignReport> {
        let totals = admin::campaign_totals(self.newsletters(), c.id)?;
        let count = |o: Outcome| totals.get(o.as_str()).copied().unwrap_or(0);
        let waiting = count(Outcome::Sent)
            .saturating_sub(count(Outcome::Delivered))
            .saturating_sub(count(Outcome::Failed));
        Ok(CampaignReport {
            id: c.id.0,
            list: c.list.0,
            subject: c.subject.clone(),
            state: c.state.as_str(),
            send_at: c.send_at,
            rate_per_second: c.rate_per_second,
            created: c.created,
            also: c.also.iter().map(|l| l.0).collect(),
            segment: c.segment.texts(),
            totals,
            waiting,
        })
    }

    /// Pause, resume or cancel, where the campaign's state allows it; the state it is in now.
    pub fn campaign_apply(&self, id: i64, action: CampaignAction) -> Result<CampaignState> {
        Ok(admin::campaign_apply(
            self.newsletters(),
            CampaignId(id),
            action,
            self.now(),
        )?)
    }

    /// Changes a campaign that has not started (`newsletter::admin::campaign_edit`).
    pub fn campaign_edit(&self, id: i64, change: CampaignChange) -> Result<()> {
        let revision = crate::newsletter_views::CampaignRevision {
            subject: change.subject,
            text: change.text.as_deref().map(read_template).transpose()?,
            html: change.html.as_deref().map(read_template).transpose()?,
            at: change.at,
            rate: change.rate,
            rate_per_domain: change.rate_per_domain,
            lists: change.lists,
            segment: change.segment,
        };
        self.campaign_revise_with(id, revision, Error::from)
    }

    /// A new campaign from campaign `id`: scheduled at `at` (a local time), or a draft
    /// (`newsletter::admin::campaign_copy`).
    pub fn campaign_copy(&self, id: i64, at: Option<&str>) -> Result<CampaignId> {
        let send_at = match at.map(str::trim) {
            Some(at) if !at.is_empty() => Some(local_time(self.clock(), at)?),
            _ => None,
        };
        Ok(admin::campaign_copy(
            self.newsletters(),
            CampaignId(id),
            send_at,
            self.now(),
        )?)
    }

    /// Campaign `id` rendered for the subscriber of its list at `subscriber`, or for a
    /// sample reader (see `newsletter::admin::campaign_preview`).
    pub fn campaign_preview(&self, id: i64, subscriber: Option<&str>) -> Result<Preview> {
        Ok(admin::campaign_preview(
            self.newsletters(),
            &self.config.newsletter,
            CampaignId(id),
            subscriber,
            admin::SAMPLE_ADDRESS,
        )?)
    }

    /// Queues one test mail of campaign `id` to `to`, outside the campaign's totals (see
    /// `newsletter::admin::campaign_test`); what it says.
    pub fn campaign_test(&self, id: i64, to: &str, subscriber: Option<&str>) -> Result<Preview> {
        Ok(admin::campaign_test(
            self.sqlite().as_ref(),
            &self.config.newsletter,
            CampaignId(id),
            to,
            subscriber,
            self.now(),
        )?)
    }

    /// The addresses of the subscribers with `outcome` ("sent", "click", ...) for the
    /// campaign, in id order; subscribers removed since drop out.
    pub fn campaign_recipients(&self, id: i64, outcome: &str) -> Result<Vec<String>> {
        let Some(outcome) = Outcome::parse(outcome) else {
            let names: Vec<&str> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
            return Err(Error::invalid(format!(
                "--outcome {outcome:?} is not one of {}",
                names.join(", ")
            )));
        };
        let store = self.newsletters();
        let campaign = store.campaign(CampaignId(id))?;
        let ids: HashSet<_> = store
            .received_by(HistoryRef::Campaign(campaign.id), outcome)?
            .into_iter()
            .collect();
        // Each list's subscribers page by page (a few queries, not one per id), then in id
        // order as the set is, across the campaign's lists.
        let mut found: Vec<Subscriber> = Vec::new();
        for list in campaign.lists() {
            found.extend(
                admin::all_subscribers(store, list)?
                    .into_iter()
                    .filter(|s| ids.contains(&s.id)),
            );
        }
        found.sort_by_key(|s| s.id);
        Ok(found.into_iter().map(|s| s.email).collect())
    }

    // The suppression list.

    /// Every suppressed address, in address order.
    pub fn suppressions(&self) -> Result<Vec<SuppressionView>> {
        Ok(admin::all_suppressions(self.newsletters())?
            .into_iter()
            .map(SuppressionView::from)
            .collect())
    }

    /// Suppresses an address by hand (`reason` defaults to "manual"); `false` when it was
    /// suppressed already, whose first entry then stays.
    pub fn suppression_add(
        &self,
        address: &str,
        reason: Option<&str>,
        note: Option<&str>,
    ) -> Result<bool> {
        let reason = admin::suppression_reason(reason.unwrap_or("manual"))?;
        Ok(admin::suppress(
            self.newsletters(),
            address,
            reason,
            note,
            self.now(),
        )?)
    }

    pub fn suppression_remove(&self, address: &str) -> Result<()> {
        Ok(self.newsletters().unsuppress(address)?)
    }

    /// Imports a CSV file (see `newsletter::admin::import_suppressions_csv`); rows without
    /// a reason take `reason` (default "manual").
    pub fn suppression_import(&self, file: &Path, reason: Option<&str>) -> Result<ImportReport> {
        let reason = admin::suppression_reason(reason.unwrap_or("manual"))?;
        let text = std::fs::read(file).io_context(|| format!("cannot read {}", file.display()))?;
        Ok(admin::import_suppressions_csv(
            self.newsletters(),
            &text,
            reason,
            self.now(),
        )?)
    }

    /// The suppression list as CSV (address,reason,at,note) and how many rows it has.
    pub fn suppression_csv(&self) -> Result<(Vec<u8>, usize)> {
        Ok(admin::export_suppressions_csv(self.newsletters())?)
    }

    /// Writes the suppression list to `file` as CSV, whole or not at all; returns how many.
    pub fn suppression_export(&self, file: &Path) -> Result<usize> {
        let (bytes, count) = self.suppression_csv()?;
        write_whole(file, &bytes)?;
        Ok(count)
    }

    // Sequences.

    pub fn sequence_add(&self, request: &SequenceRequest) -> Result<SequenceId> {
        Ok(admin::sequence_add(
            self.newsletters(),
            request,
            self.now(),
        )?)
    }

    pub fn step_add(&self, request: StepCreate) -> Result<StepId> {
        self.step_compose(crate::newsletter_views::StepCompose {
            sequence: request.sequence,
            days: request.days,
            at: request.at,
            subject: request.subject,
            text: read_template(&request.text)?,
            html: request.html.as_deref().map(read_template).transpose()?,
            condition: request.condition,
            otherwise: request.otherwise,
        })
    }

    /// Every sequence with its steps.
    pub fn sequences(&self) -> Result<Vec<(Sequence, Vec<Step>)>> {
        Ok(self.newsletters().sequences()?)
    }

    /// Every sequence with its steps and each step's clicks per link, as `sequence list
    /// --json` gives them.
    pub fn sequence_reports(&self) -> Result<Vec<SequenceReport>> {
        let store = self.newsletters();
        self.sequences()?
            .iter()
            .map(|(sequence, steps)| {
                let steps = steps
                    .iter()
                    .map(|st| Ok((st, report::link_clicks(store, HistoryRef::Step(st.id))?)))
                    .collect::<Result<_>>()?;
                Ok(SequenceReport::new(sequence, steps))
            })
            .collect()
    }

    /// Removes a sequence with its steps and their history.
    /// A step's per-recipient report as CSV, as for a campaign
    /// (`newsletter::report::report_csv`), and how many rows it has.
    pub fn step_report_csv(&self, id: i64) -> Result<(Vec<u8>, usize)> {
        let store = self.newsletters();
        let step = store.step(StepId(id))?;
        Ok(report::report_csv(store, HistoryRef::Step(step.id))?)
    }

    /// Writes a step's report to `file` as CSV, whole or not at all; returns how many rows.
    pub fn step_report_export(&self, id: i64, file: &Path) -> Result<usize> {
        let (bytes, count) = self.step_report_csv(id)?;
        write_whole(file, &bytes)?;
        Ok(count)
    }

    pub fn sequence_remove(&self, id: i64) -> Result<()> {
        Ok(self.newsletters().sequence_remove(SequenceId(id))?)
    }
}

/// `--attr KEY=VALUE` pairs as template attributes (the key trimmed).
pub fn parse_attributes(pairs: &[String]) -> Result<BTreeMap<String, String>> {
    let mut attributes = BTreeMap::new();
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(Error::invalid(format!("--attr {pair:?} is not KEY=VALUE")));
        };
        attributes.insert(key.trim().to_string(), value.to_string());
    }
    Ok(attributes)
}

/// "YYYY-MM-DD HH:MM" in the server's time zone, as Unix seconds.
pub(crate) fn local_time(clock: &gate::Clock, at: &str) -> Result<i64> {
    let civil: jiff::civil::DateTime = at.trim().replace(' ', "T").parse().map_err(|e| {
        Error::invalid(format!(
            "send_at {at:?} is not a date and time (YYYY-MM-DD HH:MM): {e}"
        ))
    })?;
    let zoned = civil.to_zoned(clock.time_zone().clone()).map_err(|e| {
        Error::invalid(format!(
            "that time does not exist in the server's time zone: {e}"
        ))
    })?;
    Ok(zoned.timestamp().as_second())
}

/// `bytes` as the whole of `file`, or nothing at all.
fn write_whole(file: &Path, bytes: &[u8]) -> Result<()> {
    crate::files::replace_file(file, |out| {
        out.write_all(bytes)
            .io_context(|| format!("cannot write {}", file.display()))
    })
}

fn read_template(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .io_context(|| format!("cannot read the template {} (UTF-8 text)", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, Ops) {
        let dir = tempfile::tempdir().unwrap();
        let ops = Ops::open(dir.path(), crate::Config::load(None).unwrap()).unwrap();
        (dir, ops)
    }

    fn news(ops: &Ops, double_opt_in: bool) {
        ops.list_add(&NewList {
            name: "news".into(),
            from_address: "news@example.com".into(),
            from_name: String::new(),
            double_opt_in,
        })
        .unwrap();
    }

    #[test]
    fn a_list_needs_a_name_and_a_from_address() {
        let (_dir, ops) = open();
        let e = ops
            .list_add(&NewList {
                name: "news".into(),
                from_address: "news".into(),
                ..NewList::default()
            })
            .unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{e}");
        assert!(e.to_string().starts_with("--from \"news\""), "{e}");
        let e = ops
            .list_add(&NewList {
                name: " ".into(),
                from_address: "news@example.com".into(),
                ..NewList::default()
            })
            .unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{e}");
        assert!(ops.lists().unwrap().is_empty());
    }

    #[test]
    fn an_import_reports_bad_rows_by_line_and_follows_the_lists_opt_in() {
        let (dir, ops) = open();
        news(&ops, false);
        let file = dir.path().join("in.csv");
        std::fs::write(
            &file,
            "email,name,city\n\
             a@example.com,A,Kyoto\n\
             ,Nobody,\n\
             not-an-address,X,\n\
             a@example.com,Again,\n",
        )
        .unwrap();
        let report = ops.subscriber_import("news", &file).unwrap();
        assert_eq!((report.added, report.present), (1, 1));
        let lines: Vec<u64> = report.bad.iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, [3, 4]);
        let all = ops.subscribers("news").unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].status, SubscriberStatus::Active);
        assert_eq!(all[0].attributes["city"], "Kyoto");

        // What an export writes, an import reads back.
        let out = dir.path().join("out.csv");
        assert_eq!(ops.subscriber_export("news", &out).unwrap(), 1);
        let text = std::fs::read_to_string(&out).unwrap();
        assert_eq!(
            text,
            "email,name,status,city\na@example.com,A,active,Kyoto\n"
        );
    }

    #[test]
    fn campaign_actions_follow_the_state_machine() {
        let (dir, ops) = open();
        news(&ops, true);
        let text = dir.path().join("t.txt");
        std::fs::write(&text, "Hi {{name}}").unwrap();
        let id = ops
            .campaign_add(CampaignCreate {
                list: "news".into(),
                subject: "Hello".into(),
                text,
                at: Some("2099-01-01 09:00".into()),
                ..CampaignCreate::default()
            })
            .unwrap()
            .0;
        let report = ops.campaign(id).unwrap().report;
        assert_eq!(report.state, "scheduled");
        assert_eq!(
            report.rate_per_second,
            ops.config().newsletter.rate_per_second
        );
        assert!(matches!(
            ops.campaign_apply(id, CampaignAction::Resume),
            Err(Error::Conflict(_))
        ));
        assert_eq!(
            ops.campaign_apply(id, CampaignAction::Pause).unwrap(),
            CampaignState::Paused
        );
        assert_eq!(
            ops.campaign_apply(id, CampaignAction::Cancel).unwrap(),
            CampaignState::Cancelled
        );
        let e = ops.campaign_apply(id, CampaignAction::Cancel).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("campaign {id} is cancelled; it cannot become cancelled")
        );
        assert!(matches!(
            ops.campaign_apply(id + 1, CampaignAction::Pause),
            Err(Error::Store(store::StoreError::NotFound { .. }))
        ));
        // Regression (issue 21.7): pause, resume and cancel were missing from the action
        // log. Each move is there, the refused ones are not.
        let about = store::HistoryRef::Campaign(CampaignId(id));
        let log: Vec<String> = ops
            .newsletters()
            .events(Some(about), 0, 100)
            .unwrap()
            .into_iter()
            .filter(|e| e.event == "action")
            .filter_map(|e| e.detail)
            .collect();
        assert_eq!(
            log,
            ["pause: scheduled -> paused", "cancel: paused -> cancelled"]
        );
    }

    #[test]
    fn the_suppression_list_is_added_to_by_hand_and_exported_and_imported_back() {
        let (dir, ops) = open();
        assert!(ops.suppression_add("Ann@Example.org", None, None).unwrap());
        assert!(
            !ops.suppression_add("ann@example.org", Some("bounced"), None)
                .unwrap()
        );
        assert!(
            ops.suppression_add("bob@example.org", Some("complained"), Some("campaign 3"))
                .unwrap()
        );
        let e = ops
            .suppression_add("carl@example.org", Some("annoyed"), None)
            .unwrap_err();
        assert!(e.to_string().starts_with("--reason \"annoyed\""), "{e}");
        assert!(matches!(
            ops.suppression_add("x@y@remote.test", None, None),
            Err(Error::Store(store::StoreError::Invalid(_)))
        ));
        let all = ops.suppressions().unwrap();
        let got: Vec<(&str, &str)> = all.iter().map(|s| (s.address.as_str(), s.reason)).collect();
        assert_eq!(
            got,
            [
                ("ann@example.org", "manual"),
                ("bob@example.org", "complained")
            ]
        );

        // What an export writes, an import reads back into another store.
        let out = dir.path().join("suppressed.csv");
        assert_eq!(ops.suppression_export(&out).unwrap(), 2);
        let text = std::fs::read_to_string(&out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "address,reason,at,note");
        assert!(
            lines[2].starts_with("bob@example.org,complained,20"),
            "{text}"
        );
        assert!(lines[2].ends_with(",campaign 3"), "{text}");
        let (_other_dir, other) = open();
        let report = other.suppression_import(&out, None).unwrap();
        assert_eq!((report.added, report.present), (2, 0));
        let again = other.suppressions().unwrap();
        assert_eq!(again.len(), 2);
        assert_eq!((again[1].reason, again[1].at), ("complained", all[1].at));
        assert_eq!(again[1].note.as_deref(), Some("campaign 3"));

        // One address a line under an "email" header (a subscriber export) works too, and
        // bad rows are named by line.
        let plain = dir.path().join("plain.csv");
        std::fs::write(
            &plain,
            "email,name\ncarl@example.org,Carl\nnot-an-address,X\nbob@example.org,Bob\n",
        )
        .unwrap();
        let report = ops
            .suppression_import(&plain, Some("unsubscribed"))
            .unwrap();
        assert_eq!((report.added, report.present), (1, 1));
        assert_eq!(report.bad.len(), 1);
        assert_eq!(report.bad[0].0, 3);
        let carl = ops
            .suppressions()
            .unwrap()
            .into_iter()
            .find(|s| s.address == "carl@example.org")
            .unwrap();
        assert_eq!(carl.reason, "unsubscribed");

        ops.suppression_remove("CARL@example.org").unwrap();
        assert!(matches!(
            ops.suppression_remove("carl@example.org"),
            Err(Error::Store(store::StoreError::NotFound { .. }))
        ));
    }

    #[test]
    fn the_report_keeps_who_did_what_after_the_raw_events_are_pruned() {
        let (dir, ops) = open();
        news(&ops, false);
        for (email, name) in [
            ("ann@example.com", "Ann"),
            ("bob@example.com", "=1+1"),
            ("cy@example.com", "Cy"),
        ] {
            ops.subscriber_add(SubscriberAdd {
                list: "news".into(),
                email: email.into(),
                name: Some(name.into()),
                ..SubscriberAdd::default()
            })
            .unwrap();
        }
        let text = dir.path().join("t.txt");
        std::fs::write(&text, "Hi {{name}}").unwrap();
        let id = ops
            .campaign_add(CampaignCreate {
                list: "news".into(),
                subject: "Hello".into(),
                text,
                at: Some("2099-01-01 09:00".into()),
                ..CampaignCreate::default()
            })
            .unwrap();
        let store = ops.newsletters();
        let about = HistoryRef::Campaign(id);
        let subs: Vec<SubscriberId> = ops
            .subscribers("news")
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect();
        let now = ops.clock().unix();
        let links = [
            "https://a.example/".to_string(),
            "https://b.example/".into(),
        ];
        store.set_links(about, &links).unwrap();
        store.record_many(about, Outcome::Sent, &subs, now).unwrap();
        store
            .record_many(about, Outcome::Delivered, &[subs[0], subs[2]], now)
            .unwrap();
        store
            .record_many(about, Outcome::Failed, &[subs[1]], now)
            .unwrap();
        store
            .bounce(
                about,
                subs[1],
                true,
                Some("550 5.1.1 unknown"),
                store::BouncePolicy::default(),
                now,
            )
            .unwrap();
        for _ in 0..2 {
            store
                .record(about, subs[0], Outcome::Click, Some(&links[0]), now)
                .unwrap();
        }
        // Cy is removed after the campaign: the row stays, under the id.
        ops.subscriber_remove("news", "cy@example.com").unwrap();

        let (csv, rows) = ops.campaign_report_csv(id.0).unwrap();
        assert_eq!(rows, 3);
        let text = String::from_utf8(csv).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        let at = jiff::Timestamp::from_second(now).unwrap().to_string();
        assert_eq!(
            lines[1],
            format!(
                "{},ann@example.com,Ann,active,1,1,0,0,0,0,0,1,0,0,0,0,2,,{at},,,,",
                subs[0].0
            )
        );
        assert_eq!(
            lines[2],
            format!(
                "{},bob@example.com,'=1+1,bounced,1,0,0,1,1,0,0,0,0,0,0,0,0,,,,,{at},550 5.1.1 unknown",
                subs[1].0
            )
        );
        assert!(
            lines[3].starts_with(&format!("{},,,removed,1,1,", subs[2].0)),
            "{}",
            lines[3]
        );
        let detail = ops.campaign(id.0).unwrap();
        let clicks: Vec<(&str, u64, u64)> = detail
            .links
            .iter()
            .map(|l| (l.url.as_str(), l.clickers, l.clicks))
            .collect();
        assert_eq!(
            clicks,
            [("https://a.example/", 1, 2), ("https://b.example/", 0, 0)]
        );

        // Once the raw events are gone, the sets still say who did what, and the clicks
        // per link stay; only the times, each reader's click count and the bounce's text
        // go with them.
        let totals = detail.report.totals;
        let links = detail.links;
        while store.prune_events(now + 1, 1000).unwrap() > 0 {}
        let after = ops.campaign(id.0).unwrap();
        assert_eq!(after.report.totals, totals);
        assert_eq!(after.links, links);
        let (csv, rows) = ops.campaign_report_csv(id.0).unwrap();
        assert_eq!(rows, 3);
        let text = String::from_utf8(csv).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[1],
            format!(
                "{},ann@example.com,Ann,active,1,1,0,0,0,0,0,1,0,0,0,0,0,,,,,,",
                subs[0].0
            )
        );
        assert_eq!(
            lines[2],
            format!(
                "{},bob@example.com,'=1+1,bounced,1,0,0,1,1,0,0,0,0,0,0,0,0,,,,,,",
                subs[1].0
            )
        );
        let out = dir.path().join("report.csv");
        assert_eq!(ops.campaign_report_export(id.0, &out).unwrap(), 3);
        assert_eq!(std::fs::read_to_string(&out).unwrap(), text);
        assert!(matches!(
            ops.campaign_report_csv(id.0 + 1),
            Err(Error::Store(store::StoreError::NotFound { .. }))
        ));
    }

    #[test]
    fn a_steps_report_reads_the_steps_own_history() {
        let (dir, ops) = open();
        news(&ops, false);
        for email in ["ann@example.com", "bob@example.com"] {
            ops.subscriber_add(SubscriberAdd {
                list: "news".into(),
                email: email.into(),
                ..SubscriberAdd::default()
            })
            .unwrap();
        }
        let sequence = ops
            .sequence_add(&SequenceRequest {
                list: "news".into(),
                name: "welcome".into(),
                time_zone: None,
                join_existing: false,
            })
            .unwrap();
        let text = dir.path().join("t.txt");
        std::fs::write(&text, "Hi").unwrap();
        let step = |days| StepCreate {
            sequence: sequence.0,
            days,
            at: "09:00".into(),
            subject: "Step".into(),
            text: text.clone(),
            html: None,
            condition: None,
            otherwise: None,
        };
        let (first, second) = (
            ops.step_add(step(0)).unwrap(),
            ops.step_add(step(1)).unwrap(),
        );
        let subs: Vec<SubscriberId> = ops
            .subscribers("news")
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect();
        let now = ops.clock().unix();
        let store = ops.newsletters();
        store
            .record_many(HistoryRef::Step(first), Outcome::Sent, &subs, now)
            .unwrap();
        store
            .record_many(HistoryRef::Step(second), Outcome::Sent, &subs[..1], now)
            .unwrap();
        let emails = |id: StepId| -> Vec<String> {
            let (csv, _) = ops.step_report_csv(id.0).unwrap();
            String::from_utf8(csv)
                .unwrap()
                .lines()
                .skip(1)
                .map(|l| l.split(',').nth(1).unwrap().to_string())
                .collect()
        };
        assert_eq!(emails(first), ["ann@example.com", "bob@example.com"]);
        assert_eq!(emails(second), ["ann@example.com"]);
        assert!(matches!(
            ops.step_report_csv(second.0 + 10),
            Err(Error::Store(store::StoreError::NotFound { .. }))
        ));

        // `sequence list --json`: each step with its clicks per link.
        let url = "https://example.net/welcome".to_string();
        store
            .set_links(HistoryRef::Step(first), std::slice::from_ref(&url))
            .unwrap();
        for _ in 0..2 {
            store
                .record(
                    HistoryRef::Step(first),
                    subs[1],
                    Outcome::Click,
                    Some(&url),
                    now,
                )
                .unwrap();
        }
        let reports = ops.sequence_reports().unwrap();
        let steps = &reports[0].steps;
        let clicks: Vec<(&str, u64, u64)> = steps[0]
            .links
            .iter()
            .map(|l| (l.url.as_str(), l.clickers, l.clicks))
            .collect();
        assert_eq!(clicks, [(url.as_str(), 1, 2)]);
        assert!(steps[1].links.is_empty());
    }

    #[test]
    fn attributes_are_key_value_pairs() {
        let pairs = vec!["plan = gold".to_string(), "city=Kyoto=East".to_string()];
        let attributes = parse_attributes(&pairs).unwrap();
        assert_eq!(attributes["plan"], " gold");
        assert_eq!(attributes["city"], "Kyoto=East");
        let e = parse_attributes(&["plan".to_string()]).unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{e}");
    }

    #[test]
    fn a_local_time_is_read_in_the_servers_zone_with_or_without_the_t() {
        let tokyo = gate::Clock::with_zone(jiff::tz::TimeZone::get("Asia/Tokyo").unwrap());
        assert_eq!(local_time(&tokyo, "2030-01-01 09:00").unwrap(), 1893456000);
        assert_eq!(local_time(&tokyo, " 2030-01-01T09:00").unwrap(), 1893456000);
        assert!(matches!(
            local_time(&tokyo, "tomorrow"),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn the_rules_words_name_the_command_lines_flags() {
        let e = Error::from(AdminError::Invalid {
            field: newsletter::admin::Field::FromAddress,
            problem: "\"news\" is not an address (like news@example.com)".into(),
        });
        assert_eq!(
            e.to_string(),
            "--from \"news\" is not an address (like news@example.com)"
        );
        let e = Error::from(AdminError::Refused("campaign 3 is done".into()));
        assert!(matches!(e, Error::Conflict(_)));
    }
}
