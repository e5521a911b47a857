//! What the web console's newsletter screens read, and the console's forms in memory, on
//! top of the rules of `newsletter::admin` (the ones the CLI and the JSON API use): a page
//! of a list's subscribers with search (never the whole of a 10,000-subscriber list for one
//! page), a campaign with its delivery history by day for the graph, and the CSV upload
//! and templates typed in a form where the CLI reads files.
//! The CLI's `campaign create` and `sequence step` read their template files and come
//! through the same `campaign_compose` and `step_compose`.

use newsletter::admin::{self, AdminError, CampaignRequest, ImportReport, ListView};
use store::{CampaignId, ListId, NewStep, SequenceId, StepId, Subscriber, SubscriberId};

use crate::newsletter::CampaignDetail;
use crate::{Error, Ops, Result};

/// The rules' own types the console fills in and shows, so that it needs no dependency on
/// the newsletter crate for them.
pub use newsletter::admin::{NewList, SequenceRequest, SubscriberView};

/// Subscribers on one page of the console.
pub const PER_PAGE: usize = 100;

/// Subscribers read per query while a search walks a list: big enough that 10,000
/// subscribers are ten queries, small enough that a page never holds a whole list.
const SCAN_CHUNK: usize = 1000;

/// The longest search text taken (an address is at most 254 bytes).
pub const MAX_SEARCH: usize = 256;

/// Which subscribers of a list to show.
#[derive(Debug, Clone, Default)]
pub struct SubscriberQuery {
    /// Part of the address or the name, any case; empty for all.
    pub search: String,
    /// 1-based.
    pub page: u32,
    /// The id of the last subscriber of the page before, when known: the page then starts
    /// right after it instead of counting its way there from the first subscriber.
    pub after: Option<i64>,
}

/// One page of a list's subscribers.
#[derive(Debug, Clone)]
pub struct SubscriberPage {
    pub list: ListView,
    pub rows: Vec<admin::SubscriberView>,
    pub page: u32,
    /// Subscribers of the list, every status.
    pub total: u64,
    /// There is a page after this one.
    pub more: bool,
}

/// Outcomes of a campaign on one day (or up to it), as the graph groups them: bounces hard
/// and soft together; clicks and opens count every one (the daily totals' way), so a reader
/// who clicks twice counts twice here and once in the campaign's totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivery {
    pub sent: u64,
    pub bounced: u64,
    pub opened: u64,
    pub clicked: u64,
    pub unsubscribed: u64,
}

impl Delivery {
    /// Adds the count of one outcome, by its stored name (outcomes the graph does not
    /// draw are left out, so a new kind of outcome changes nothing here).
    fn add(&mut self, outcome: &str, count: u64) {
        let slot = match outcome {
            "sent" => &mut self.sent,
            "hard_bounce" | "soft_bounce" => &mut self.bounced,
            "open" => &mut self.opened,
            "click" => &mut self.clicked,
            "unsubscribe" => &mut self.unsubscribed,
            _ => return,
        };
        *slot += count;
    }

    fn plus(self, o: Delivery) -> Delivery {
        Delivery {
            sent: self.sent + o.sent,
            bounced: self.bounced + o.bounced,
            opened: self.opened + o.opened,
            clicked: self.clicked + o.clicked,
            unsubscribed: self.unsubscribed + o.unsubscribed,
        }
    }
}

/// One day of a campaign's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryDay {
    /// Days since the Unix epoch (UTC), as the store keeps its daily totals.
    pub day: i64,
    /// The day as YYYY-MM-DD (UTC).
    pub date: String,
    /// The moment `by_then` describes (Unix seconds): the day's end, or now for today.
    pub at: i64,
    /// What happened that day.
    pub on_the_day: Delivery,
    /// What had happened by the end of that day.
    pub by_then: Delivery,
}

/// A campaign as its console page shows it.
#[derive(Debug, Clone)]
pub struct CampaignView {
    pub detail: CampaignDetail,
    pub rate_per_domain: u32,
    pub text: String,
    pub html: Option<String>,
    /// Days with something recorded, oldest first.
    pub history: Vec<DeliveryDay>,
    /// When sending began (or begins): where the graph starts, at zero.
    pub start: i64,
    /// The operator's actions the campaign's state allows now ("pause", "resume",
    /// "cancel"), by the store's state machine.
    pub actions: Vec<&'static str>,
    /// It has not started sending, so it may still be edited.
    pub editable: bool,
    /// Its lists, segment, and how many different addresses they select now.
    pub audience: newsletter::admin::Audience,
}

/// The operator's actions on a campaign, by the names `newsletter::admin` knows them by.
const OPERATOR_ACTIONS: [&str; 3] = ["pause", "resume", "cancel"];

/// A step with what it has sent so far (each subscriber once).
#[derive(Debug, Clone)]
pub struct StepView {
    pub step: store::Step,
    pub sent: u64,
    /// Hard and soft.
    pub bounced: u64,
    pub unsubscribed: u64,
}

/// A campaign written in the console's form.
#[derive(Debug, Clone, Default)]
pub struct CampaignCompose {
    /// The list's name.
    pub list: String,
    /// More lists by name; an address on several gets one mail.
    pub also: Vec<String>,
    /// Segment terms (`store::segment`); none: every active subscriber.
    pub segment: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    /// "YYYY-MM-DD HH:MM" (or the browser's "YYYY-MM-DDTHH:MM") in the server's time
    /// zone; default now.
    pub at: Option<String>,
    pub rate: Option<u32>,
    pub rate_per_domain: Option<u32>,
}

/// Changes to a campaign that has not started, as written in a form or read from the
/// command line's files; `None` (or an empty start) keeps what it has.
#[derive(Debug, Clone, Default)]
pub struct CampaignRevision {
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    /// "YYYY-MM-DD HH:MM" (or the browser's "YYYY-MM-DDTHH:MM") in the server's time zone.
    pub at: Option<String>,
    pub rate: Option<u32>,
    pub rate_per_domain: Option<u32>,
    /// Its lists anew, by name, the first first.
    pub lists: Option<Vec<String>>,
    /// Its segment terms anew; empty for every active subscriber.
    pub segment: Option<Vec<String>>,
}

/// A step written in the console's form.
#[derive(Debug, Clone, Default)]
pub struct StepCompose {
    pub sequence: i64,
    pub days: u32,
    /// HH:MM in the sequence's time zone.
    pub at: String,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    /// `clicked:STEP`, `not-opened:STEP`, ...; none or empty: always sent.
    pub condition: Option<String>,
    /// "skip" or "wait"; none: skip.
    pub otherwise: Option<String>,
}

/// A rule's refusal in the console's words: the field is named by its key, which is also
/// the name of the form's field (the CLI's conversion names command-line flags instead).
fn refused(e: AdminError) -> Error {
    match e {
        AdminError::Invalid { field, problem } => {
            Error::Invalid(format!("{} {problem}", field.key()))
        }
        other => Error::from(other),
    }
}

impl Ops {
    /// One list with its subscribers by status.
    pub fn newsletter_list(&self, id: i64) -> Result<ListView> {
        let store = self.newsletters();
        let list = store.list_by_id(ListId(id))?;
        let subscribers = store.subscriber_counts(list.id)?;
        Ok(ListView {
            id: list.id.0,
            name: list.name,
            from_address: list.from_address,
            from_name: list.from_name,
            double_opt_in: list.double_opt_in,
            created: list.created,
            subscribers,
        })
    }

    /// Makes a list (`newsletter::admin::list_add`).
    pub fn newsletter_list_add(&self, list: &NewList) -> Result<ListId> {
        admin::list_add(self.newsletters(), list, self.clock().unix()).map_err(refused)
    }

    /// One page of a list's subscribers, in id order, those whose address or name holds
    /// `query.search` (any case). Reads the list in chunks and stops as soon as the page
    /// is full and one more match is seen, so the first pages of a big list cost a query
    /// or two; a page reached through `after` starts there directly.
    pub fn subscriber_page(&self, list: i64, query: &SubscriberQuery) -> Result<SubscriberPage> {
        if query.search.len() > MAX_SEARCH {
            return Err(Error::invalid(format!(
                "the search text is longer than {MAX_SEARCH} bytes"
            )));
        }
        let store = self.newsletters();
        let view = self.newsletter_list(list)?;
        let id = ListId(view.id);
        let needle = query.search.trim().to_lowercase();
        let page = query.page.max(1);
        let skip = match query.after {
            Some(_) => 0,
            None => (page as usize - 1).saturating_mul(PER_PAGE),
        };
        let mut after = query.after.map(SubscriberId);
        let (mut skipped, mut rows, mut more) = (0usize, Vec::new(), false);
        'scan: loop {
            // Without a search every subscriber matches: ask for no more than the page needs.
            let want = if needle.is_empty() {
                (skip - skipped + PER_PAGE + 1).min(SCAN_CHUNK)
            } else {
                SCAN_CHUNK
            };
            let chunk = store.subscribers(id, after, want)?;
            let full = chunk.len() == want;
            after = chunk.last().map(|s| s.id);
            for s in chunk {
                if !matches(&s, &needle) {
                    continue;
                }
                if skipped < skip {
                    skipped += 1;
                } else if rows.len() == PER_PAGE {
                    more = true;
                    break 'scan;
                } else {
                    rows.push(admin::SubscriberView::from(s));
                }
            }
            if !full {
                break;
            }
        }
        Ok(SubscriberPage {
            total: view.subscribers.values().sum(),
            list: view,
            rows,
            page,
            more,
        })
    }

    /// Imports an uploaded CSV file into a list (`newsletter::admin::import_csv`, as
    /// `subscriber import` does with a file); returns the list's name and the report.
    pub fn subscriber_import_bytes(&self, list: i64, csv: &[u8]) -> Result<(String, ImportReport)> {
        let store = self.newsletters();
        let name = store.list_by_id(ListId(list))?.name;
        let report = admin::import_csv(store, &name, csv, self.clock().unix()).map_err(refused)?;
        Ok((name, report))
    }

    /// A list's subscribers as the CSV `subscriber export` writes; returns the list's name,
    /// the bytes and how many subscribers they hold.
    pub fn subscriber_export_bytes(&self, list: i64) -> Result<(String, Vec<u8>, usize)> {
        let store = self.newsletters();
        let name = store.list_by_id(ListId(list))?.name;
        let (bytes, count) = admin::export_csv(store, &name).map_err(refused)?;
        Ok((name, bytes, count))
    }

    /// Schedules a campaign written in a form (`newsletter::admin::campaign_add`).
    pub fn campaign_compose(&self, request: CampaignCompose) -> Result<CampaignId> {
        let send_at = match request.at.as_deref().map(str::trim) {
            Some(at) if !at.is_empty() => Some(crate::newsletter::local_time(self.clock(), at)?),
            _ => None,
        };
        let request = CampaignRequest {
            list: request.list,
            also: request.also,
            segment: request.segment,
            subject: request.subject,
            text: request.text,
            html: request.html.filter(|h| !h.trim().is_empty()),
            send_at,
            rate_per_second: request.rate,
            rate_per_domain: request.rate_per_domain,
        };
        admin::campaign_add(
            self.newsletters(),
            request,
            self.config().newsletter.rate_per_second,
            self.clock().unix(),
        )
        .map_err(refused)
    }

    /// Changes a campaign written in the console's edit form
    /// (`newsletter::admin::campaign_edit`).
    pub fn campaign_revise(&self, id: i64, revision: CampaignRevision) -> Result<()> {
        self.campaign_revise_with(id, revision, refused)
    }

    /// The one path of an edit from either face, which differ only in how a broken rule
    /// names its field (`word`: the flag or the form's key).
    pub(crate) fn campaign_revise_with(
        &self,
        id: i64,
        revision: CampaignRevision,
        word: fn(AdminError) -> Error,
    ) -> Result<()> {
        let send_at = match revision.at.as_deref().map(str::trim) {
            Some(at) if !at.is_empty() => Some(crate::newsletter::local_time(self.clock(), at)?),
            _ => None,
        };
        let edit = store::CampaignEdit {
            subject: revision.subject.map(|s| s.trim().to_string()),
            text: revision.text,
            html: revision.html,
            send_at,
            rate_per_second: revision.rate,
            rate_per_domain: revision.rate_per_domain,
            ..store::CampaignEdit::default()
        };
        let store = self.newsletters();
        let edit = admin::with_audience(
            store,
            edit,
            revision.lists.as_deref(),
            revision.segment.as_deref(),
        )
        .map_err(word)?;
        admin::campaign_edit(store, CampaignId(id), edit, self.clock().unix()).map_err(word)
    }

    /// A campaign with its totals, its templates and its history by day.
    pub fn campaign_view(&self, id: i64) -> Result<CampaignView> {
        let store = self.newsletters();
        let campaign = store.campaign(CampaignId(id))?;
        let detail = self.campaign(id)?;
        let about = store::HistoryRef::Campaign(campaign.id);
        let first_day = campaign.created.min(campaign.send_at).div_euclid(86_400);
        let mut days: Vec<(i64, Delivery)> = Vec::new();
        for total in store.daily_totals(first_day)? {
            if total.about != about {
                continue;
            }
            if days.last().is_none_or(|(day, _)| *day != total.day) {
                days.push((total.day, Delivery::default()));
            }
            if let Some((_, d)) = days.last_mut() {
                d.add(total.outcome.as_str(), total.count);
            }
        }
        let mut by_then = Delivery::default();
        let now = self.clock().unix();
        let history = days
            .into_iter()
            .map(|(day, on_the_day)| {
                by_then = by_then.plus(on_the_day);
                DeliveryDay {
                    day,
                    date: utc_date(day),
                    at: (day.saturating_add(1).saturating_mul(86_400) - 1).min(now),
                    on_the_day,
                    by_then,
                }
            })
            .collect();
        let state = campaign.state;
        let actions = OPERATOR_ACTIONS
            .into_iter()
            .filter(|name| {
                admin::campaign_action(name).is_some_and(|a| a.allowed_from().contains(&state))
            })
            .collect();
        let audience = admin::campaign_audience(store, campaign.id)?;
        Ok(CampaignView {
            audience,
            start: campaign.send_at,
            actions,
            editable: store::CampaignState::EDITABLE.contains(&state),
            detail,
            rate_per_domain: campaign.rate_per_domain,
            text: campaign.text,
            html: campaign.html,
            history,
        })
    }

    /// Pause, resume or cancel a campaign, the action named as the operator names it
    /// (`newsletter::admin::campaign_action`); the state it is in now.
    pub fn campaign_act(&self, id: i64, action: &str) -> Result<store::CampaignState> {
        let Some(action) = admin::campaign_action(action) else {
            return Err(Error::invalid(format!(
                "{action:?} is not an action on a campaign (pause, resume, cancel)"
            )));
        };
        self.campaign_apply(id, action)
    }

    /// Every sequence with its steps in order, each step with its totals.
    pub fn sequence_views(&self) -> Result<Vec<(store::Sequence, Vec<StepView>)>> {
        let store = self.newsletters();
        let count = |step: &store::Step, outcome: store::Outcome| {
            store.count(store::HistoryRef::Step(step.id), outcome)
        };
        let mut out = Vec::new();
        for (sequence, steps) in store.sequences()? {
            let mut views = Vec::with_capacity(steps.len());
            for step in steps {
                views.push(StepView {
                    sent: count(&step, store::Outcome::Sent)?,
                    bounced: count(&step, store::Outcome::HardBounce)?
                        + count(&step, store::Outcome::SoftBounce)?,
                    unsubscribed: count(&step, store::Outcome::Unsubscribe)?,
                    step,
                });
            }
            out.push((sequence, views));
        }
        Ok(out)
    }

    /// Appends a step written in a form (`newsletter::admin::step_add`).
    pub fn step_compose(&self, request: StepCompose) -> Result<StepId> {
        let minute = gate::maint::parse_minutes(&request.at).ok_or_else(|| {
            Error::invalid(format!(
                "send_minute {:?} is not a time of day (HH:MM)",
                request.at
            ))
        })?;
        let (condition, otherwise) =
            admin::step_condition(request.condition.as_deref(), request.otherwise.as_deref())
                .map_err(refused)?;
        let step = NewStep {
            days_after: request.days,
            send_minute: minute,
            subject: request.subject,
            text: request.text,
            html: request.html.filter(|h| !h.trim().is_empty()),
            condition,
            otherwise,
        };
        admin::step_add(self.newsletters(), SequenceId(request.sequence), step).map_err(refused)
    }
}

fn matches(s: &Subscriber, needle: &str) -> bool {
    needle.is_empty()
        || s.email.to_lowercase().contains(needle)
        || s.name.to_lowercase().contains(needle)
}

fn utc_date(day: i64) -> String {
    jiff::Timestamp::from_second(day.saturating_mul(86_400))
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_else(|_| day.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::SubscriberStatus;

    fn open() -> (tempfile::TempDir, Ops) {
        let dir = tempfile::tempdir().unwrap();
        let ops = Ops::open(dir.path(), crate::Config::load(None).unwrap()).unwrap();
        (dir, ops)
    }

    fn list_with(ops: &Ops, n: usize) -> i64 {
        let id = ops
            .newsletter_list_add(&NewList {
                name: "news".into(),
                from_address: "news@example.com".into(),
                ..NewList::default()
            })
            .unwrap()
            .0;
        let mut csv = String::from("email,name\n");
        for i in 0..n {
            let name = if i % 10 == 3 { "Tanaka" } else { "Sato" };
            csv.push_str(&format!("user{i:05}@example.com,{name} {i}\n"));
        }
        let (_, report) = ops.subscriber_import_bytes(id, csv.as_bytes()).unwrap();
        assert_eq!(report.added, n as u64);
        id
    }

    fn emails(page: &SubscriberPage) -> Vec<String> {
        page.rows.iter().map(|s| s.email.clone()).collect()
    }

    #[test]
    fn pages_cover_a_list_once_whether_counted_or_continued() {
        let (_dir, ops) = open();
        let list = list_with(&ops, 2 * PER_PAGE + 7);
        let first = ops
            .subscriber_page(list, &SubscriberQuery::default())
            .unwrap();
        assert_eq!((first.rows.len(), first.more), (PER_PAGE, true));
        assert_eq!(first.total, (2 * PER_PAGE + 7) as u64);
        assert_eq!(first.rows[0].email, "user00000@example.com");
        let third = ops
            .subscriber_page(
                list,
                &SubscriberQuery {
                    page: 3,
                    ..SubscriberQuery::default()
                },
            )
            .unwrap();
        assert_eq!((third.rows.len(), third.more), (7, false));
        assert_eq!(
            third.rows[0].email,
            format!("user{:05}@example.com", 2 * PER_PAGE)
        );
        // The second page through the first page's last id is the second page counted.
        let counted = ops
            .subscriber_page(
                list,
                &SubscriberQuery {
                    page: 2,
                    ..SubscriberQuery::default()
                },
            )
            .unwrap();
        let continued = ops
            .subscriber_page(
                list,
                &SubscriberQuery {
                    page: 2,
                    after: Some(first.rows.last().unwrap().id),
                    ..SubscriberQuery::default()
                },
            )
            .unwrap();
        assert_eq!(emails(&counted), emails(&continued));
        assert!(counted.more);
        assert_eq!(
            counted.rows[0].email,
            format!("user{PER_PAGE:05}@example.com")
        );
    }

    #[test]
    fn a_search_matches_address_or_name_in_any_case_across_chunks() {
        let (_dir, ops) = open();
        let list = list_with(&ops, 2500);
        let tanaka = |page| {
            ops.subscriber_page(
                list,
                &SubscriberQuery {
                    search: " TANAKA ".into(),
                    page,
                    after: None,
                },
            )
            .unwrap()
        };
        // Every tenth subscriber is a Tanaka: 250 of them, spread over three chunks.
        let (one, three) = (tanaka(1), tanaka(3));
        assert_eq!((one.rows.len(), one.more), (PER_PAGE, true));
        assert_eq!((three.rows.len(), three.more), (50, false));
        assert!(three.rows.iter().all(|s| s.name.starts_with("Tanaka")));
        assert_eq!(three.rows.last().unwrap().email, "user02493@example.com");
        let by_address = ops
            .subscriber_page(
                list,
                &SubscriberQuery {
                    search: "USER0249".into(),
                    page: 1,
                    after: None,
                },
            )
            .unwrap();
        assert_eq!(by_address.rows.len(), 10);
        let long = "x".repeat(MAX_SEARCH + 1);
        let e = ops
            .subscriber_page(
                list,
                &SubscriberQuery {
                    search: long,
                    ..SubscriberQuery::default()
                },
            )
            .unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{e}");
    }

    #[test]
    fn an_upload_follows_the_import_rules_and_the_export_reads_back() {
        let (_dir, ops) = open();
        let list = list_with(&ops, 0);
        let (name, report) = ops
            .subscriber_import_bytes(list, b"email,name,city\na@example.com,A,Kyoto\n,B,\n")
            .unwrap();
        assert_eq!(name, "news");
        assert_eq!((report.added, report.bad.len()), (1, 1));
        assert_eq!(report.bad[0].0, 3);
        let (_, bytes, count) = ops.subscriber_export_bytes(list).unwrap();
        assert_eq!(count, 1);
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "email,name,status,city\na@example.com,A,active,Kyoto\n"
        );
        let e = ops
            .subscriber_import_bytes(list, b"mail\nx@y.z\n")
            .unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{e}");
        assert!(ops.subscriber_import_bytes(list + 1, b"email\n").is_err());
    }

    #[test]
    fn the_forms_rules_name_the_forms_fields() {
        let (_dir, ops) = open();
        let e = ops
            .newsletter_list_add(&NewList {
                name: "news".into(),
                from_address: "news".into(),
                ..NewList::default()
            })
            .unwrap_err();
        assert!(e.to_string().starts_with("from_address \"news\""), "{e}");
        let e = ops
            .step_compose(StepCompose {
                sequence: 1,
                at: "25:00".into(),
                ..StepCompose::default()
            })
            .unwrap_err();
        assert!(e.to_string().starts_with("send_minute"), "{e}");
        let e = ops
            .campaign_compose(CampaignCompose {
                list: "news".into(),
                at: Some("next week".into()),
                ..CampaignCompose::default()
            })
            .unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{e}");
    }

    #[test]
    fn a_campaigns_history_adds_up_by_day_and_leaves_other_campaigns_out() {
        let (_dir, ops) = open();
        let list = list_with(&ops, 3);
        let compose = |subject: &str| {
            ops.campaign_compose(CampaignCompose {
                list: "news".into(),
                subject: subject.into(),
                text: "Hi {{name}}".into(),
                at: Some("2099-01-01T09:00".into()),
                rate: Some(5),
                ..CampaignCompose::default()
            })
            .unwrap()
        };
        let (one, other) = (compose("One"), compose("Other"));
        let store = ops.newsletters();
        let subs: Vec<SubscriberId> = store
            .subscribers(ListId(list), None, 10)
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect();
        let day = 86_400;
        let now = ops.clock().unix();
        let (a, b) = (
            store::HistoryRef::Campaign(one),
            store::HistoryRef::Campaign(other),
        );
        store
            .record_many(a, store::Outcome::Sent, &subs, now)
            .unwrap();
        store
            .record_many(b, store::Outcome::Sent, &subs, now)
            .unwrap();
        store
            .record(a, subs[0], store::Outcome::Click, None, now)
            .unwrap();
        store
            .record(a, subs[0], store::Outcome::Click, None, now + day)
            .unwrap();
        store
            .bounce(
                a,
                subs[1],
                true,
                None,
                store::BouncePolicy {
                    hard_limit: 1,
                    ..Default::default()
                },
                now + day,
            )
            .unwrap();
        let view = ops.campaign_view(one.0).unwrap();
        // The view reads the clock itself, a second or so after `now` on a slow machine.
        let viewed = now..=ops.clock().unix();
        assert_eq!(view.detail.report.rate_per_second, 5);
        assert_eq!(view.actions, ["pause", "cancel"]);
        assert_eq!(
            ops.campaign_act(one.0, "pause").unwrap(),
            store::CampaignState::Paused
        );
        assert_eq!(
            ops.campaign_view(one.0).unwrap().actions,
            ["resume", "cancel"]
        );
        assert!(matches!(
            ops.campaign_act(one.0, "pause"),
            Err(Error::Conflict(_))
        ));
        assert!(matches!(
            ops.campaign_act(one.0, "start"),
            Err(Error::Invalid(_))
        ));
        assert_eq!(view.history.len(), 2);
        let (d1, d2) = (&view.history[0], &view.history[1]);
        assert_eq!(d2.day, d1.day + 1);
        // A day's point is at its last second, or at now for a day not over yet.
        let d1_end = d2.day * 86_400 - 1;
        assert!(
            d1.at == d1_end || (viewed.contains(&d1.at) && d1.at < d1_end),
            "{}",
            d1.at
        );
        assert!(viewed.contains(&d2.at), "{} not in {viewed:?}", d2.at);
        assert_eq!((d1.on_the_day.sent, d1.on_the_day.clicked), (3, 1));
        assert_eq!((d2.on_the_day.sent, d2.on_the_day.clicked), (0, 1));
        assert_eq!(d2.by_then.sent, 3);
        assert_eq!(d2.by_then.clicked, 2);
        assert_eq!(d2.by_then.bounced, 1);
        assert_eq!(d1.date.len(), 10);
        assert_eq!(
            ops.subscribers("news").unwrap()[1].status,
            SubscriberStatus::Bounced
        );
    }

    #[test]
    fn steps_show_what_they_sent() {
        let (_dir, ops) = open();
        let list = list_with(&ops, 2);
        let sequence = ops
            .sequence_add(&SequenceRequest {
                list: "news".into(),
                name: "welcome".into(),
                time_zone: Some("Asia/Tokyo".into()),
                join_existing: true,
            })
            .unwrap();
        let step = |days, at: &str| {
            ops.step_compose(StepCompose {
                sequence: sequence.0,
                days,
                at: at.into(),
                subject: format!("Day {days}"),
                text: "Hi".into(),
                html: Some(" ".into()),
                ..StepCompose::default()
            })
            .unwrap()
        };
        let (first, _second) = (step(0, "09:00"), step(3, "18:30"));
        let store = ops.newsletters();
        let subs: Vec<SubscriberId> = store
            .subscribers(ListId(list), None, 10)
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect();
        let now = ops.clock().unix();
        let about = store::HistoryRef::Step(first);
        store
            .record_many(about, store::Outcome::Sent, &subs, now)
            .unwrap();
        store
            .bounce(
                about,
                subs[0],
                false,
                None,
                store::BouncePolicy {
                    hard_limit: 1,
                    ..Default::default()
                },
                now,
            )
            .unwrap();
        let views = ops.sequence_views().unwrap();
        assert_eq!(views.len(), 1);
        let steps = &views[0].1;
        assert_eq!(steps.len(), 2);
        assert_eq!((steps[0].sent, steps[0].bounced), (2, 1));
        assert_eq!(
            (steps[1].sent, steps[1].step.send_minute),
            (0, 18 * 60 + 30)
        );
        assert_eq!(
            steps[0].step.html, None,
            "a blank HTML template is no HTML part"
        );
    }
}
