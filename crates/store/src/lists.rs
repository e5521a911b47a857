//! Newsletters and step mail: lists, subscribers, campaigns, sequences, and the bounded
//! history of what was sent to whom (issue 10).
//!
//! The history is what grew without bound in older tools (one row per recipient per
//! mailing), so here it has three parts of known size: one roaring bitmap of subscriber
//! ids per (campaign or step, outcome), daily totals (a few rows a day, kept forever), and
//! raw events (click URLs, bounce texts, the action log) that are pruned after a number of
//! days in small batches. Nothing here is a protocol: rendering, VERP and bounce parsing
//! live in the `newsletter` crate.

use std::collections::BTreeMap;

use crate::{Outbound, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListId(pub i64);

/// A subscriber of one list. Ids are global (not per list) and below 2^32, because they
/// are the members of the history bitmaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriberId(pub i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CampaignId(pub i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SequenceId(pub i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StepId(pub i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubscriberStatus {
    /// Waiting for the confirmation of a double opt-in; receives nothing else.
    Unconfirmed,
    /// Receives campaigns and step mail.
    Active,
    Unsubscribed,
    /// Disabled after too many hard bounces.
    Bounced,
}

impl SubscriberStatus {
    pub const ALL: [SubscriberStatus; 4] = [
        SubscriberStatus::Unconfirmed,
        SubscriberStatus::Active,
        SubscriberStatus::Unsubscribed,
        SubscriberStatus::Bounced,
    ];

    /// The name stored in the database and shown by the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriberStatus::Unconfirmed => "unconfirmed",
            SubscriberStatus::Active => "active",
            SubscriberStatus::Unsubscribed => "unsubscribed",
            SubscriberStatus::Bounced => "bounced",
        }
    }

    pub fn parse(name: &str) -> Option<SubscriberStatus> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct List {
    pub id: ListId,
    /// Unique among lists.
    pub name: String,
    pub from_address: String,
    pub from_name: String,
    /// New subscribers from the public form start `Unconfirmed` and get a confirmation mail.
    pub double_opt_in: bool,
    /// Unix seconds.
    pub created: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    pub id: SubscriberId,
    pub list: ListId,
    /// As given, with the domain in lower case; unique per list regardless of case.
    pub email: String,
    pub name: String,
    /// Free-form values for templates (`{{attr.KEY}}`).
    pub attributes: BTreeMap<String, String>,
    pub status: SubscriberStatus,
    /// Unix seconds.
    pub created: i64,
    /// When the subscriber became `Active` for the first time (a double opt-in's
    /// confirmation, or the creation for anyone added as active).
    pub confirmed: Option<i64>,
    pub hard_bounces: u32,
    pub soft_bounces: u32,
}

impl Subscriber {
    /// Where step mail counts its days from: the confirmation, else the creation.
    pub fn start(&self) -> i64 {
        self.confirmed.unwrap_or(self.created)
    }
}

/// A subscriber to add, one row of an import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSubscriber {
    pub email: String,
    pub name: String,
    pub attributes: BTreeMap<String, String>,
    pub status: SubscriberStatus,
}

/// What [`Newsletters::subscriber_import`] did with its rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportCounts {
    pub added: u64,
    /// Rows whose address was already on the list (or twice among the rows); left as they were.
    pub present: u64,
    /// Indexes (0-based, into the rows given) of the rows refused because their address is
    /// not one, with the reason; the caller maps them to its own line numbers.
    pub invalid: Vec<(usize, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CampaignState {
    /// Being written; the sender ignores it.
    Draft,
    /// Waits for `send_at`.
    Scheduled,
    Sending,
    Paused,
    Cancelled,
    Done,
}

impl CampaignState {
    pub const ALL: [CampaignState; 6] = [
        CampaignState::Draft,
        CampaignState::Scheduled,
        CampaignState::Sending,
        CampaignState::Paused,
        CampaignState::Cancelled,
        CampaignState::Done,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CampaignState::Draft => "draft",
            CampaignState::Scheduled => "scheduled",
            CampaignState::Sending => "sending",
            CampaignState::Paused => "paused",
            CampaignState::Cancelled => "cancelled",
            CampaignState::Done => "done",
        }
    }

    pub fn parse(name: &str) -> Option<CampaignState> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// What may happen to a campaign: the operator's three actions and the sender's two steps.
/// Each names the states it may start from; the store applies one only from such a state,
/// in one conditional write, so two callers and the sender can never race a campaign
/// into a state the rules forbid (a cancelled campaign resumed, a paused one marked done).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CampaignAction {
    Pause,
    Resume,
    Cancel,
    /// The sender: a scheduled campaign whose `send_at` has come.
    Start,
    /// The sender: every subscriber has been sent to.
    Finish,
}

impl CampaignAction {
    pub fn target(self) -> CampaignState {
        match self {
            CampaignAction::Pause => CampaignState::Paused,
            CampaignAction::Resume | CampaignAction::Start => CampaignState::Sending,
            CampaignAction::Cancel => CampaignState::Cancelled,
            CampaignAction::Finish => CampaignState::Done,
        }
    }

    /// The states this action may be applied in.
    pub fn allowed_from(self) -> &'static [CampaignState] {
        use CampaignState::*;
        match self {
            CampaignAction::Pause => &[Scheduled, Sending],
            CampaignAction::Resume => &[Paused],
            CampaignAction::Cancel => &[Draft, Scheduled, Sending, Paused],
            CampaignAction::Start => &[Scheduled],
            CampaignAction::Finish => &[Sending],
        }
    }

    /// The operator's word for it (CLI subcommand, API path).
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignAction::Pause => "pause",
            CampaignAction::Resume => "resume",
            CampaignAction::Cancel => "cancel",
            CampaignAction::Start => "start",
            CampaignAction::Finish => "finish",
        }
    }
}

/// What [`Newsletters::campaign_apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Applied; the campaign was in `from`.
    Moved {
        from: CampaignState,
        to: CampaignState,
    },
    /// Not applied: the campaign is in `current`, which the action may not start from.
    Refused { current: CampaignState },
}

impl Transition {
    /// The operator's sentence for a refusal: "campaign 3 is done; it cannot become paused".
    pub fn refusal(&self, id: CampaignId, action: CampaignAction) -> Option<String> {
        match self {
            Transition::Moved { .. } => None,
            Transition::Refused { current } => Some(format!(
                "campaign {} is {}; it cannot become {}",
                id.0,
                current.as_str(),
                action.target().as_str()
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Campaign {
    pub id: CampaignId,
    pub list: ListId,
    pub subject: String,
    /// The plain-text template.
    pub text: String,
    /// The HTML template, when the mail has an HTML part.
    pub html: Option<String>,
    /// Unix seconds; the sender starts a `Scheduled` campaign at or after it.
    pub send_at: i64,
    pub state: CampaignState,
    /// Messages per second overall and per destination domain; 0 means no limit of its own.
    pub rate_per_second: u32,
    pub rate_per_domain: u32,
    pub created: i64,
}

/// A campaign to add; see [`Campaign`] for the fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCampaign {
    pub list: ListId,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    pub send_at: i64,
    pub state: CampaignState,
    pub rate_per_second: u32,
    pub rate_per_domain: u32,
    pub created: i64,
}

/// A series of mails sent to each subscriber of a list a number of days after they joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequence {
    pub id: SequenceId,
    pub list: ListId,
    /// Unique per list.
    pub name: String,
    /// An IANA time zone name ("Asia/Tokyo"): steps go out at their minute of the day there.
    pub time_zone: String,
    /// Whether subscribers who started before the sequence was created take part (from the
    /// sequence's creation on, as if they had joined then) or not at all.
    pub join_existing: bool,
    /// Unix seconds.
    pub created: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub id: StepId,
    pub sequence: SequenceId,
    /// 1 for the first step; steps go out in this order.
    pub position: u32,
    /// Days after the subscriber's start (0: the day they start).
    pub days_after: u32,
    /// Minute of the day (0..1440) in the sequence's time zone.
    pub send_minute: u16,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

/// A step to append to a sequence (it becomes the last one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStep {
    pub days_after: u32,
    pub send_minute: u16,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

/// What a history entry is about: a campaign or one step of a sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HistoryRef {
    Campaign(CampaignId),
    Step(StepId),
}

impl HistoryRef {
    /// The `kind` column: "campaign" or "step".
    pub fn kind(self) -> &'static str {
        match self {
            HistoryRef::Campaign(_) => "campaign",
            HistoryRef::Step(_) => "step",
        }
    }

    /// The `ref` column: the campaign's or the step's id.
    pub fn id(self) -> i64 {
        match self {
            HistoryRef::Campaign(c) => c.0,
            HistoryRef::Step(s) => s.0,
        }
    }

    /// The inverse of [`HistoryRef::kind`] and [`HistoryRef::id`].
    pub fn from_parts(kind: &str, id: i64) -> Option<HistoryRef> {
        match kind {
            "campaign" => Some(HistoryRef::Campaign(CampaignId(id))),
            "step" => Some(HistoryRef::Step(StepId(id))),
            _ => None,
        }
    }
}

/// What happened to a mail for one subscriber; each has a bitmap per campaign or step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// Queued for sending (the exactly-once ledger).
    Sent,
    HardBounce,
    SoftBounce,
    Click,
    Unsubscribe,
    /// The mail's open-tracking pixel was fetched (only with open tracking on).
    Open,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Sent,
        Outcome::HardBounce,
        Outcome::SoftBounce,
        Outcome::Click,
        Outcome::Unsubscribe,
        Outcome::Open,
    ];

    /// The `outcome` column and the `event` of its raw events.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::HardBounce => "hard_bounce",
            Outcome::SoftBounce => "soft_bounce",
            Outcome::Click => "click",
            Outcome::Unsubscribe => "unsubscribe",
            Outcome::Open => "open",
        }
    }

    pub fn parse(name: &str) -> Option<Outcome> {
        Self::ALL.into_iter().find(|o| o.as_str() == name)
    }
}

/// One rendered mail for one subscriber, ready for the outbound queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub subscriber: SubscriberId,
    pub message: Vec<u8>,
    /// Sender = the VERP address, recipients = the subscriber; `account` is `None`.
    pub envelope: Outbound,
}

/// How many times something happened on one day (UTC) for one campaign or step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyTotal {
    /// Days since the Unix epoch (UTC).
    pub day: i64,
    pub about: HistoryRef,
    pub outcome: Outcome,
    pub count: u64,
}

/// One raw event: a click with its URL, a bounce with its text, an action log line.
/// Kept for a limited time (see [`Newsletters::prune_events`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEvent {
    pub id: i64,
    /// Unix seconds.
    pub at: i64,
    pub about: Option<HistoryRef>,
    pub subscriber: Option<SubscriberId>,
    /// An [`Outcome::as_str`] name, or "action" for the action log.
    pub event: String,
    pub detail: Option<String>,
}

/// The longest event detail kept, in bytes (a bounce's text is cut there).
pub const MAX_EVENT_DETAIL: usize = 1024;

/// Lists, subscribers, campaigns, sequences and their history. Separate from [`crate::Store`]
/// (the mail store); `SqliteStore` implements both on the same database, so backups, check
/// and restore carry this too.
///
/// Methods block like those of [`crate::Store`]; every change is durable on return. Times
/// are Unix seconds and passed in (`now`) wherever they matter, so tests control the clock.
pub trait Newsletters: Send + Sync {
    // Lists.
    /// `AlreadyExists` if the name is taken.
    fn list_add(
        &self,
        name: &str,
        from_address: &str,
        from_name: &str,
        double_opt_in: bool,
        now: i64,
    ) -> Result<ListId>;
    /// Every list, by name.
    fn lists(&self) -> Result<Vec<List>>;
    /// `NotFound` for an unknown name.
    fn list(&self, name: &str) -> Result<List>;
    fn list_by_id(&self, id: ListId) -> Result<List>;
    /// Removes a list with its subscribers, campaigns, sequences and their history.
    fn list_remove(&self, name: &str) -> Result<()>;

    // Subscribers.
    /// `AlreadyExists` if the address is on the list (in any case); `Invalid` if it is not
    /// an address. A subscriber added `Active` is confirmed at `now`.
    fn subscriber_add(
        &self,
        list: ListId,
        subscriber: NewSubscriber,
        now: i64,
    ) -> Result<SubscriberId>;
    /// Adds many subscribers, one transaction per batch of a thousand; addresses already on
    /// the list are left as they are and counted as present.
    fn subscriber_import(
        &self,
        list: ListId,
        rows: Vec<NewSubscriber>,
        now: i64,
    ) -> Result<ImportCounts>;
    /// Subscribers of a list in id order, those after `after`, at most `limit` (paging).
    fn subscribers(
        &self,
        list: ListId,
        after: Option<SubscriberId>,
        limit: usize,
    ) -> Result<Vec<Subscriber>>;
    fn subscriber(&self, id: SubscriberId) -> Result<Subscriber>;
    /// Case-insensitive on the address.
    fn subscriber_by_email(&self, list: ListId, email: &str) -> Result<Subscriber>;
    /// Changes a subscriber's status. Becoming `Active` for the first time sets `confirmed`
    /// to `now` (the start of its step mail). Becoming `Unsubscribed` with `from` given
    /// (the campaign or step whose link was used) records [`Outcome::Unsubscribe`] against
    /// it in the same transaction; without `from`, an "unsubscribe" event without a
    /// reference goes to the raw events.
    fn subscriber_set_status(
        &self,
        id: SubscriberId,
        status: SubscriberStatus,
        from: Option<HistoryRef>,
        now: i64,
    ) -> Result<()>;
    /// Forgets a subscriber (its ids in the history bitmaps stay, meaning nobody).
    fn subscriber_remove(&self, id: SubscriberId) -> Result<()>;
    /// Subscribers of a list by status, for `list show` and metrics.
    fn subscriber_counts(&self, list: ListId) -> Result<BTreeMap<&'static str, u64>>;

    // Campaigns.
    fn campaign_add(&self, campaign: NewCampaign) -> Result<CampaignId>;
    /// Every campaign, newest first.
    fn campaigns(&self) -> Result<Vec<Campaign>>;
    fn campaign(&self, id: CampaignId) -> Result<Campaign>;
    /// Applies `action` if the campaign's state at that moment allows it (see
    /// [`CampaignAction::allowed_from`]), in one write; NotFound for an unknown campaign.
    fn campaign_apply(&self, id: CampaignId, action: CampaignAction) -> Result<Transition>;
    /// Active subscribers of the campaign's list not yet in its `sent` set, in id order,
    /// those after `after`, at most `limit`.
    fn campaign_pending(
        &self,
        id: CampaignId,
        after: Option<SubscriberId>,
        limit: usize,
    ) -> Result<Vec<Subscriber>>;
    /// The exactly-once step. In ONE transaction: queues every mail (the outbound queue's
    /// own insert, due at once) and adds its subscriber to the `sent` set of `about`,
    /// skipping mails whose subscriber is already in it; adds to the day's `sent` total.
    /// After a crash the queue and the set agree, so nobody is ever queued twice. Returns
    /// how many mails were queued.
    fn enqueue_mails(&self, about: HistoryRef, mails: &[Mail], now: i64) -> Result<usize>;

    // Sequences.
    /// `join_existing`: whether subscribers who started before `now` take part (counting
    /// their days from `now`) or never receive this sequence.
    fn sequence_add(
        &self,
        list: ListId,
        name: &str,
        time_zone: &str,
        join_existing: bool,
        now: i64,
    ) -> Result<SequenceId>;
    /// Appends a step to a sequence.
    fn step_add(&self, sequence: SequenceId, step: NewStep) -> Result<StepId>;
    fn step(&self, id: StepId) -> Result<Step>;
    /// Every sequence with its steps in order.
    fn sequences(&self) -> Result<Vec<(Sequence, Vec<Step>)>>;
    /// Removes a sequence, its steps and their history.
    fn sequence_remove(&self, id: SequenceId) -> Result<()>;
    /// (step, subscriber) pairs due at `now`, at most `limit`: the subscriber is active,
    /// takes part in the sequence, got the step before (if any) and not this one, and its
    /// start + `days_after` days at `send_minute` in the sequence's zone is not after `now`.
    fn steps_due(&self, now: i64, limit: usize) -> Result<Vec<(Step, Subscriber)>>;

    // History.
    /// Records an outcome: the subscriber joins the (about, outcome) set; the day's total
    /// grows when it joined anew, and for every click and every open; a raw event keeps `detail` (cut to
    /// [`MAX_EVENT_DETAIL`] bytes).
    fn record(
        &self,
        about: HistoryRef,
        subscriber: SubscriberId,
        outcome: Outcome,
        detail: Option<&str>,
        now: i64,
    ) -> Result<()>;
    /// Adds many subscribers to one set in one transaction and the number that joined
    /// anew to the day's total, without raw events: for benchmarks and migrations from
    /// other tools. Returns how many joined anew.
    fn record_many(
        &self,
        about: HistoryRef,
        outcome: Outcome,
        subscribers: &[SubscriberId],
        now: i64,
    ) -> Result<u64>;
    /// Records a bounce and counts it on the subscriber, and disables the subscriber
    /// (`Bounced`) once its hard bounces reach `hard_limit` (0: never), in one transaction.
    /// An unsubscribed subscriber stays unsubscribed. Returns the subscriber afterwards.
    fn bounce(
        &self,
        about: HistoryRef,
        subscriber: SubscriberId,
        hard: bool,
        detail: Option<&str>,
        hard_limit: u32,
        now: i64,
    ) -> Result<Subscriber>;
    /// Appends a line to the action log (a raw event "action", pruned like the others).
    fn log_action(&self, about: Option<HistoryRef>, detail: &str, now: i64) -> Result<()>;
    /// The members of one set, ascending: "who received campaign X" is one bitmap read.
    fn received_by(&self, about: HistoryRef, outcome: Outcome) -> Result<Vec<SubscriberId>>;
    /// How many members one set has, without listing them.
    fn count(&self, about: HistoryRef, outcome: Outcome) -> Result<u64>;
    /// Every (about, outcome) set the subscriber is in: a contains test per set.
    fn history_of(&self, subscriber: SubscriberId) -> Result<Vec<(HistoryRef, Outcome)>>;
    /// Daily totals of days since `since_day` (days since the epoch), oldest first.
    fn daily_totals(&self, since_day: i64) -> Result<Vec<DailyTotal>>;
    /// Raw events of one campaign or step (or all, for `None`) at or after `since`, oldest
    /// first, at most `limit`.
    fn events(
        &self,
        about: Option<HistoryRef>,
        since: i64,
        limit: usize,
    ) -> Result<Vec<HistoryEvent>>;
    /// Deletes up to `batch` of the oldest raw events older than `before`, in one
    /// transaction; returns how many went. Call until it returns 0.
    fn prune_events(&self, before: i64, batch: usize) -> Result<u64>;
    /// Bytes of the database pages the history tables and their indexes use (`dbstat`).
    fn history_bytes(&self) -> Result<u64>;
    /// The original URLs of a campaign's or step's mail, by link index (click redirects).
    fn links(&self, about: HistoryRef) -> Result<Vec<String>>;
    /// Replaces the stored URLs of a campaign or step.
    fn set_links(&self, about: HistoryRef, urls: &[String]) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_names_round_trip_and_are_distinct() {
        for o in Outcome::ALL {
            assert_eq!(Outcome::parse(o.as_str()), Some(o));
        }
        let names: std::collections::BTreeSet<_> =
            Outcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(names.len(), Outcome::ALL.len());
        assert_eq!(Outcome::parse("open"), Some(Outcome::Open));
        assert_eq!(Outcome::parse("opened"), None);
    }
}
