//! Newsletters and step mail for the operator: lists, subscribers, campaigns, sequences.
//! The rules (validation, the CSV format, a new subscriber's status, a campaign's defaults
//! and actions) are the newsletter crate's (`newsletter::admin`), which the JSON API calls
//! too; here they meet the operator's inputs (files, local times, `KEY=VALUE` pairs). The
//! server's engine picks up what changes at its next look, so the server may run or not.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use newsletter::admin::{
    self, AdminError, CampaignRequest, ImportReport, ListView, NewList, SequenceRequest,
    SubscriberRequest,
};
use serde::Serialize;
use store::{
    Campaign, CampaignAction, CampaignId, CampaignState, HistoryRef, List, ListId, NewStep,
    Newsletters, Outcome, Sequence, SequenceId, Step, StepId, Subscriber, SubscriberId,
    SubscriberStatus,
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
    pub subject: String,
    pub text: PathBuf,
    pub html: Option<PathBuf>,
    /// "YYYY-MM-DD HH:MM" in the server's time zone; default now.
    pub at: Option<String>,
    pub rate: Option<u32>,
    pub rate_per_domain: Option<u32>,
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
}

/// A campaign with its totals (`newsletter::admin::campaign_totals`).
#[derive(Debug, Clone, Serialize)]
pub struct CampaignReport {
    pub id: i64,
    pub list: i64,
    pub subject: String,
    pub state: &'static str,
    pub send_at: i64,
    pub rate_per_second: u32,
    pub created: i64,
    pub totals: BTreeMap<&'static str, u64>,
}

/// One campaign with the name of its list, for `campaign show`.
#[derive(Debug, Clone)]
pub struct CampaignDetail {
    pub report: CampaignReport,
    pub list_name: String,
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
}

impl SequenceReport {
    pub fn new(sequence: &Sequence, steps: &[Step]) -> SequenceReport {
        SequenceReport {
            id: sequence.id.0,
            list: sequence.list.0,
            name: sequence.name.clone(),
            time_zone: sequence.time_zone.clone(),
            join_existing: sequence.join_existing,
            created: sequence.created,
            steps: steps
                .iter()
                .map(|st| StepReport {
                    id: st.id.0,
                    position: st.position,
                    days_after: st.days_after,
                    send_minute: st.send_minute,
                    subject: st.subject.clone(),
                })
                .collect(),
        }
    }
}

impl Ops {
    fn newsletters(&self) -> &dyn Newsletters {
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
        let send_at = request
            .at
            .as_deref()
            .map(|at| local_time(self.clock(), at))
            .transpose()?;
        let request = CampaignRequest {
            list: request.list,
            subject: request.subject,
            text: read_template(&request.text)?,
            html: request.html.as_deref().map(read_template).transpose()?,
            send_at,
            rate_per_second: request.rate,
            rate_per_domain: request.rate_per_domain,
        };
        let default_rate = self.config().newsletter.rate_per_second;
        Ok(admin::campaign_add(
            self.newsletters(),
            request,
            default_rate,
            self.now(),
        )?)
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
        })
    }

    fn campaign_report(&self, c: &Campaign) -> Result<CampaignReport> {
        let totals = admin::campaign_totals(self.newsletters(), c.id)?;
        Ok(CampaignReport {
            id: c.id.0,
            list: c.list.0,
            subject: c.subject.clone(),
            state: c.state.as_str(),
            send_at: c.send_at,
            rate_per_second: c.rate_per_second,
            created: c.created,
            totals,
        })
    }

    /// Pause, resume or cancel, where the campaign's state allows it; the state it is in now.
    pub fn campaign_apply(&self, id: i64, action: CampaignAction) -> Result<CampaignState> {
        Ok(admin::campaign_apply(
            self.newsletters(),
            CampaignId(id),
            action,
        )?)
    }

    /// The addresses of the subscribers with `outcome` ("sent", "click", ...) for the
    /// campaign, in id order; subscribers removed since drop out.
    pub fn campaign_recipients(&self, id: i64, outcome: &str) -> Result<Vec<String>> {
        let Some(outcome) = Outcome::parse(outcome) else {
            return Err(Error::invalid(format!(
                "--outcome {outcome:?} is not one of sent, hard_bounce, soft_bounce, click, unsubscribe, open"
            )));
        };
        let store = self.newsletters();
        let campaign = store.campaign(CampaignId(id))?;
        let ids: HashSet<_> = store
            .received_by(HistoryRef::Campaign(campaign.id), outcome)?
            .into_iter()
            .collect();
        // The list's subscribers page by page (a few queries, not one per id), in id order
        // as the set is.
        Ok(admin::all_subscribers(store, campaign.list)?
            .into_iter()
            .filter(|s| ids.contains(&s.id))
            .map(|s| s.email)
            .collect())
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
        let minute = gate::maint::parse_minutes(&request.at).ok_or_else(|| {
            Error::invalid(format!(
                "--at {:?} is not a time of day (HH:MM)",
                request.at
            ))
        })?;
        let step = NewStep {
            days_after: request.days,
            send_minute: minute,
            subject: request.subject,
            text: read_template(&request.text)?,
            html: request.html.as_deref().map(read_template).transpose()?,
        };
        Ok(admin::step_add(
            self.newsletters(),
            SequenceId(request.sequence),
            step,
        )?)
    }

    /// Every sequence with its steps.
    pub fn sequences(&self) -> Result<Vec<(Sequence, Vec<Step>)>> {
        Ok(self.newsletters().sequences()?)
    }

    /// Removes a sequence with its steps and their history.
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
fn local_time(clock: &gate::Clock, at: &str) -> Result<i64> {
    let civil: jiff::civil::DateTime = at.replace(' ', "T").parse().map_err(|e| {
        Error::invalid(format!(
            "--at {at:?} is not a date and time (YYYY-MM-DD HH:MM): {e}"
        ))
    })?;
    let zoned = civil.to_zoned(clock.time_zone().clone()).map_err(|e| {
        Error::invalid(format!(
            "that time does not exist in the server's time zone: {e}"
        ))
    })?;
    Ok(zoned.timestamp().as_second())
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
    fn a_local_time_is_read_in_the_servers_zone() {
        let tokyo = gate::Clock::with_zone(jiff::tz::TimeZone::get("Asia/Tokyo").unwrap());
        assert_eq!(local_time(&tokyo, "2030-01-01 09:00").unwrap(), 1893456000);
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
