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
use std::fmt;

use crate::{Outbound, Result, Segment};

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

/// The longest local part RFC 5321 allows (section 4.5.3.1.1), in octets.
const MAX_LOCAL_PART: usize = 64;
/// The longest forward-path less its angle brackets (RFC 5321 section 4.5.3.1.3).
const MAX_ADDRESS: usize = 254;
/// The longest domain name and label (RFC 1035 section 2.3.4), in octets.
const MAX_DOMAIN: usize = 253;
const MAX_LABEL: usize = 63;

/// A subscriber's address as the lists keep it (trimmed, the domain in lower case), or why
/// it is not one. The syntax is RFC 5321's Mailbox, with RFC 6531's UTF-8 in the local part
/// and in domain labels (IDN), less what no subscriber can be reached at: the domain must
/// be a name of two labels or more whose top label is not all digits; address literals
/// (`[192.0.2.1]`) are refused. Lists, imports, `subscriber add` and the public
/// `/subscribe` form all pass through here.
pub fn check_address(email: &str) -> std::result::Result<String, String> {
    let email = email.trim();
    let bad = |why: &str| Err(format!("'{email}' is not an address: {why}"));
    if email.is_empty() {
        return bad("it is empty");
    }
    if email.len() > MAX_ADDRESS {
        return bad("longer than 254 bytes");
    }
    // The domain starts after the last @: a quoted local part may hold one.
    let Some((local, domain)) = email.rsplit_once('@') else {
        return bad("no @ (expected user@domain)");
    };
    if let Err(why) = check_local_part(local) {
        return bad(&why);
    }
    if let Err(why) = check_domain(domain) {
        return bad(&why);
    }
    Ok(format!("{local}@{}", domain.to_lowercase()))
}

fn check_local_part(local: &str) -> std::result::Result<(), String> {
    if local.is_empty() {
        return Err("the part before @ is empty".into());
    }
    if local.len() > MAX_LOCAL_PART {
        return Err("the part before @ is longer than 64 bytes".into());
    }
    if let Some(inner) = local.strip_prefix('"') {
        // Quoted-string: printable ASCII but `"` and `\`, which come as a quoted pair.
        let Some(inner) = inner.strip_suffix('"') else {
            return Err("an unclosed quote before @".into());
        };
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            let ok = match c {
                '\\' => chars.next().is_some_and(|q| (' '..='~').contains(&q)),
                '"' => false,
                c => (' '..='~').contains(&c) || !c.is_ascii() && !c.is_control(),
            };
            if !ok {
                return Err("a character a quoted local part cannot hold".into());
            }
        }
        return Ok(());
    }
    // Dot-string: atoms of atext joined by single dots.
    for atom in local.split('.') {
        if atom.is_empty() {
            return Err(
                "an empty part between dots before @ (a leading, trailing or double dot)".into(),
            );
        }
        if let Some(c) = atom.chars().find(|&c| !is_atext(c)) {
            return Err(format!("{c:?} may not appear before @ unquoted"));
        }
    }
    Ok(())
}

/// RFC 5322 atext, and any non-ASCII character but controls and spaces (RFC 6531).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || "!#$%&'*+-/=?^_`{|}~".contains(c)
        || !c.is_ascii() && !c.is_control() && !c.is_whitespace()
}

fn check_domain(domain: &str) -> std::result::Result<(), String> {
    if domain.is_empty() {
        return Err("nothing after @".into());
    }
    if domain.starts_with('[') {
        return Err("an address literal cannot be subscribed; give a domain name".into());
    }
    if domain.len() > MAX_DOMAIN {
        return Err("the domain is longer than 253 bytes".into());
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err(format!(
            "'{domain}' is not a domain name of two labels or more"
        ));
    }
    for label in &labels {
        if label.is_empty() {
            return Err("an empty label in the domain (a leading, trailing or double dot)".into());
        }
        if label.len() > MAX_LABEL {
            return Err("a domain label longer than 63 bytes".into());
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("the domain label '{label}' starts or ends with -"));
        }
        // Letters, digits and hyphens; letters of any script (IDN, RFC 5890).
        if let Some(c) = label.chars().find(|&c| {
            !(c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii() && c.is_alphanumeric())
        }) {
            return Err(format!("{c:?} cannot appear in a domain name"));
        }
    }
    if labels
        .last()
        .is_some_and(|top| top.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(format!(
            "'{domain}' ends in a number, which no top-level domain is"
        ));
    }
    Ok(())
}

/// Why an address is on the global suppression list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SuppressionReason {
    /// A bounce disabled a subscriber at this address (see [`BouncePolicy`]).
    Bounced,
    /// The reader reported our mail as spam (an ARF feedback-loop report).
    Complained,
    /// The reader asked to hear nothing more from this server, on any list.
    Unsubscribed,
    /// The operator put it there.
    Manual,
}

impl SuppressionReason {
    pub const ALL: [SuppressionReason; 4] = [
        SuppressionReason::Bounced,
        SuppressionReason::Complained,
        SuppressionReason::Unsubscribed,
        SuppressionReason::Manual,
    ];

    /// The name stored in the database, shown by the CLI and read by imports.
    pub fn as_str(self) -> &'static str {
        match self {
            SuppressionReason::Bounced => "bounced",
            SuppressionReason::Complained => "complained",
            SuppressionReason::Unsubscribed => "unsubscribed",
            SuppressionReason::Manual => "manual",
        }
    }

    pub fn parse(name: &str) -> Option<SuppressionReason> {
        let name = name.trim().to_ascii_lowercase();
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

/// An address that no campaign or step mail goes to, whatever list it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    /// As [`suppression_key`] makes it: trimmed, all in lower case.
    pub address: String,
    pub reason: SuppressionReason,
    /// Unix seconds: when it was first suppressed.
    pub at: i64,
    /// What caused it ("campaign 3: 5.1.1 user unknown"), at most [`MAX_SUPPRESSION_NOTE`]
    /// bytes.
    pub note: Option<String>,
}

/// The longest note kept with a suppression, in bytes.
pub const MAX_SUPPRESSION_NOTE: usize = 300;

/// How the suppression list spells an address: trimmed and entirely in lower case. The
/// local part is case-sensitive in RFC 5321, but no real mailbox relies on it, and the
/// list errs towards not mailing: a reader who complained as `Ann@` must not get the next
/// campaign as `ann@`. Not a check: a lookup of anything finds what it can.
pub fn suppression_key(address: &str) -> String {
    address.trim().to_lowercase()
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
    /// The states in which a campaign has not started sending, so what it sends, when and
    /// how fast may still change ([`Newsletters::campaign_edit`]).
    pub const EDITABLE: [CampaignState; 2] = [CampaignState::Draft, CampaignState::Scheduled];

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

/// Changes to a campaign that has not started; `None` keeps the field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CampaignEdit {
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    pub send_at: Option<i64>,
    pub rate_per_second: Option<u32>,
    pub rate_per_domain: Option<u32>,
    /// Its lists anew: the first (whose sender and unsubscribe page the mail carries) and
    /// the others; an address on several gets one mail.
    pub lists: Option<(ListId, Vec<ListId>)>,
    /// Its segment anew; an empty one selects every active subscriber.
    pub segment: Option<Segment>,
}

/// What [`Newsletters::campaign_edit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edited {
    Changed,
    /// Not changed: the campaign is in `current`, not one of [`CampaignState::EDITABLE`].
    Refused {
        current: CampaignState,
    },
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
    /// Messages per second overall and per destination domain; 0 means no limit. A
    /// campaign made without a rate gets the configured one when it is made.
    pub rate_per_second: u32,
    pub rate_per_domain: u32,
    pub created: i64,
    /// Lists the campaign goes to besides `list`, in the order given. An address on
    /// several of them (in any case) gets one mail, as the subscriber of the first of
    /// `list`, then `also` in order, on which it is active and matches the segment; that
    /// subscriber's id is the one in the campaign's history and report.
    pub also: Vec<ListId>,
    /// Which of the lists' active subscribers it goes to (no terms: all of them).
    pub segment: crate::Segment,
}

impl Campaign {
    /// Every list the campaign goes to, `list` first.
    pub fn lists(&self) -> Vec<ListId> {
        std::iter::once(self.list)
            .chain(self.also.iter().copied())
            .collect()
    }
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
    /// Distinct from `list` and from each other.
    pub also: Vec<ListId>,
    pub segment: crate::Segment,
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
    /// Sent only to readers for whom this holds; `None`: to everyone.
    pub condition: Option<StepCondition>,
    /// What a reader for whom the condition does not hold (at the step's time) gets.
    pub otherwise: Otherwise,
}

/// A step to append to a sequence (it becomes the last one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStep {
    pub days_after: u32,
    pub send_minute: u16,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    /// An event of an earlier step of the same sequence; `None`: always sent.
    pub condition: Option<StepCondition>,
    pub otherwise: Otherwise,
}

/// A step's condition: the reader is (or, negated, is not) in an earlier step's set of
/// `outcome` (sent, opened, clicked), written as segments write it: `clicked:ID`,
/// `not-opened:ID`, `received:ID`, where ID is the step's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepCondition {
    pub step: StepId,
    pub outcome: Outcome,
    pub negated: bool,
}

impl StepCondition {
    /// One condition, or why it is not one (the message names it).
    pub fn parse(text: &str) -> Result<StepCondition, String> {
        let text = text.trim();
        let bad = |why: &str| Err(format!("step condition '{text}': {why}"));
        let Some((word, id)) = text.split_once(':') else {
            return bad("expected clicked:STEP, opened:STEP or received:STEP, or not- before one");
        };
        let (negated, word) = match word.strip_prefix("not-") {
            Some(word) => (true, word),
            None => (false, word),
        };
        let outcome = match word {
            "received" => Outcome::Sent,
            "opened" => Outcome::Open,
            "clicked" => Outcome::Click,
            _ => return bad("the event is received, opened or clicked"),
        };
        match id.trim().parse::<i64>() {
            Ok(id) if id > 0 => Ok(StepCondition {
                step: StepId(id),
                outcome,
                negated,
            }),
            _ => bad("expected a step id after the colon (clicked:3)"),
        }
    }

    /// Whether it holds for a reader, given whether they are in the step's set.
    pub fn holds(&self, in_set: bool) -> bool {
        in_set != self.negated
    }
}

impl fmt::Display for StepCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = match self.outcome {
            Outcome::Open => "opened",
            Outcome::Click => "clicked",
            _ => "received",
        };
        let not = if self.negated { "not-" } else { "" };
        write!(f, "{not}{word}:{}", self.step.0)
    }
}

/// What a step does for a reader its condition does not hold for, when the step is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Otherwise {
    /// Passed over for good: the reader goes on to the next step (a branch).
    #[default]
    Skip,
    /// The reader stays at this step, and gets it once the condition holds (a wait).
    Wait,
}

impl Otherwise {
    pub fn as_str(self) -> &'static str {
        match self {
            Otherwise::Skip => "skip",
            Otherwise::Wait => "wait",
        }
    }

    pub fn parse(text: &str) -> Option<Otherwise> {
        match text.trim() {
            "skip" => Some(Otherwise::Skip),
            "wait" => Some(Otherwise::Wait),
            _ => None,
        }
    }
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
    /// The outbound queue handed the mail to the recipient's server (its 250 after DATA),
    /// or delivered it into a local mailbox.
    Delivered,
    /// The outbound queue was told "try later" at least once for this mail.
    Deferred,
    /// The outbound queue gave the mail up: a 5xx, or its retry period ran out.
    Failed,
    /// The reader reported the mail as spam (an ARF feedback-loop report, RFC 5965).
    Complaint,
    /// Not sent: the address was on the suppression list when the mail was to be queued.
    /// Counted apart from `Sent`, so "sent" stays what the queue really got.
    Suppressed,
    /// Not sent: the step's condition did not hold for the reader when it was due, and the
    /// step says to pass it over (a branch not taken).
    Skipped,
}

impl Outcome {
    pub const ALL: [Outcome; 12] = [
        Outcome::Sent,
        Outcome::HardBounce,
        Outcome::SoftBounce,
        Outcome::Click,
        Outcome::Unsubscribe,
        Outcome::Open,
        Outcome::Delivered,
        Outcome::Deferred,
        Outcome::Failed,
        Outcome::Complaint,
        Outcome::Suppressed,
        Outcome::Skipped,
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
            Outcome::Delivered => "delivered",
            Outcome::Deferred => "deferred",
            Outcome::Failed => "failed",
            Outcome::Complaint => "complaint",
            Outcome::Suppressed => "suppressed",
            Outcome::Skipped => "skipped",
        }
    }

    pub fn parse(name: &str) -> Option<Outcome> {
        Self::ALL.into_iter().find(|o| o.as_str() == name)
    }
}

/// How bounces are judged: what disables a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BouncePolicy {
    /// Hard bounces that disable a subscriber (0: never).
    pub hard_limit: u32,
    /// Different mails (campaigns or steps) that soft-bounced within `soft_days` days and
    /// disable a subscriber as a hard bounce would (0: never). Mails, not bounces: one mail
    /// deferred for days by a full mailbox is one soft bounce, not one per retry.
    pub soft_limit: u32,
    pub soft_days: u32,
}

impl Default for BouncePolicy {
    fn default() -> Self {
        BouncePolicy {
            hard_limit: 1,
            soft_limit: 5,
            soft_days: 30,
        }
    }
}

/// Reads the envelope senders of queued mail for the outbound queue's settlement (see
/// [`crate::Queue::queue_settle`]): when a sender is the VERP address of a campaign or
/// step mail, what the queue learns about that mail (delivered, deferred, failed) is
/// recorded in the newsletter's history and bounce counts in the settlement's own
/// transaction, so a refusal at RCPT or a give-up counts exactly once, and no DSN is
/// queued to an address that only the SMTP listener would have understood.
///
/// The newsletter engine registers one (it holds the key that signs VERP addresses); the
/// store only asks it.
pub trait BounceRouter: Send + Sync {
    /// The campaign or step and the subscriber `sender` stands for, when it is one of our
    /// VERP addresses with a valid signature; `None` for every other sender.
    fn route(&self, sender: &str) -> Option<(HistoryRef, SubscriberId)>;
    /// The limits the bounces learned this way are judged by.
    fn policy(&self) -> BouncePolicy;
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
    /// When the sender next has work: `Some(i64::MIN)` while a campaign is sending, else the
    /// earliest start of a scheduled one; `None` when neither. One small query, so the
    /// sender can ask often and start a campaign made by another process (the CLI) at once.
    fn campaign_work_at(&self) -> Result<Option<i64>>;
    fn campaign(&self, id: CampaignId) -> Result<Campaign>;
    /// Applies `action` if the campaign's state at that moment allows it (see
    /// [`CampaignAction::allowed_from`]), in one write that also appends the move to the
    /// action log (at `now`); NotFound for an unknown campaign.
    fn campaign_apply(
        &self,
        id: CampaignId,
        action: CampaignAction,
        now: i64,
    ) -> Result<Transition>;
    /// Applies `edit` if the campaign is in one of [`CampaignState::EDITABLE`] at that
    /// moment, in one conditional write that also appends it to the action log (at `now`),
    /// so an edit racing the sender's start either lands before it or is refused. A draft
    /// given a `send_at` becomes scheduled. NotFound for an unknown campaign.
    fn campaign_edit(&self, id: CampaignId, edit: CampaignEdit, now: i64) -> Result<Edited>;
    /// Active subscribers of the campaign's lists who match its segment and are in neither
    /// its `sent` nor its `suppressed` set, in id order, those after `after`, at most
    /// `limit`. An address on several of the lists (in any case) is pending once, as the
    /// subscriber of the first list on which it is active and matches, and not at all once
    /// any of its subscribers on those lists is in either set (so a reader who left the
    /// first list after being mailed does not get a second copy through the next).
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
    ///
    /// A mail to a suppressed address is not queued: its subscriber joins the
    /// `suppressed` set of `about` instead, which [`Newsletters::campaign_pending`] and
    /// [`Newsletters::steps_due`] count as done. Both senders come through here, and the
    /// check is in the transaction that queues, so an address suppressed a moment before
    /// (a complaint arriving mid-campaign) is never mailed.
    fn enqueue_mails(&self, about: HistoryRef, mails: &[Mail], now: i64) -> Result<usize>;
    /// How many different addresses (in any case) among the active subscribers of `lists`
    /// match `segment` now: whom a campaign to them would be sent to, before suppression.
    fn segment_count(&self, lists: &[ListId], segment: &crate::Segment) -> Result<u64>;

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
    /// takes part in the sequence, got the step before (if any) and not this one (a step
    /// it was suppressed for or skipped counts as got), its start + `days_after` days at
    /// `send_minute` in the sequence's zone is not after `now`, and the step's condition,
    /// if any, holds for it.
    fn steps_due(&self, now: i64, limit: usize) -> Result<Vec<(Step, Subscriber)>>;
    /// Passes over, for up to `limit` subscribers, the due step whose condition does not
    /// hold for them and that says skip: each is marked [`Outcome::Skipped`] for it and goes
    /// on to the next step. Returns how many were marked; call until 0 (a skip may make the
    /// next step due, and it may be skipped too).
    fn steps_skip_due(&self, now: i64, limit: usize) -> Result<u64>;

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
    /// (`Bounced`) once its hard bounces reach `policy.hard_limit`, or once it soft-bounced
    /// on `policy.soft_limit` different mails within `policy.soft_days` (0: never), in one
    /// transaction. An unsubscribed subscriber stays unsubscribed. Whenever the policy's
    /// limit is reached, the address also goes on the suppression list as `Bounced` (it
    /// cannot take mail, whichever list it is on). Returns the subscriber afterwards.
    fn bounce(
        &self,
        about: HistoryRef,
        subscriber: SubscriberId,
        hard: bool,
        detail: Option<&str>,
        policy: BouncePolicy,
        now: i64,
    ) -> Result<Subscriber>;
    /// Records a complaint (an ARF report about the mail `about` sent to `subscriber`):
    /// [`Outcome::Complaint`] with `detail`, and the subscriber's address on the
    /// suppression list as `Complained`, in one transaction. The subscriber's status is
    /// left alone: the suppression list is what stops the mail, and removing the address
    /// from it (the reader complained by mistake) resumes it. Returns the subscriber.
    fn complaint(
        &self,
        about: HistoryRef,
        subscriber: SubscriberId,
        detail: Option<&str>,
        now: i64,
    ) -> Result<Subscriber>;

    // The global suppression list: addresses no campaign or step mail goes to, on any list.
    // [`Newsletters::enqueue_mails`] consults it, so both senders do; hard bounces
    // ([`Newsletters::bounce`] once the policy disables a subscriber) and complaints
    // ([`Newsletters::complaint`]) add to it by themselves.
    /// Puts an address on the list; `Invalid` if it is not an address. Returns whether it
    /// was added: an address already there keeps its first reason, time and note.
    fn suppress(
        &self,
        address: &str,
        reason: SuppressionReason,
        note: Option<&str>,
        now: i64,
    ) -> Result<bool>;
    /// Adds many entries (an import), one transaction per thousand; `present` counts the
    /// addresses already there, `invalid` the rows (by index) that are not addresses.
    fn suppress_many(&self, rows: Vec<Suppression>) -> Result<ImportCounts>;
    /// Takes an address off the list; `NotFound` if it is not on it.
    fn unsuppress(&self, address: &str) -> Result<()>;
    /// The entry for an address, if it is suppressed.
    fn suppression(&self, address: &str) -> Result<Option<Suppression>>;
    /// Which of `addresses` are suppressed, as [`suppression_key`]s: one query per few
    /// hundred addresses, not one per address.
    fn suppressed_among(&self, addresses: &[String]) -> Result<std::collections::BTreeSet<String>>;
    /// Entries in address order, those after `after`, at most `limit` (paging).
    fn suppressions(&self, after: Option<&str>, limit: usize) -> Result<Vec<Suppression>>;
    /// How many addresses are suppressed.
    fn suppression_count(&self) -> Result<u64>;

    /// Registers who reads the VERP senders of queued mail (one; a second call replaces the
    /// first). Until one is registered, the queue's settlements touch no history.
    fn set_bounce_router(&self, router: std::sync::Arc<dyn BounceRouter>);
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
    /// Clicks by URL: (url, readers, clicks), from totals kept per link and reader, so they
    /// stay when the raw events are pruned. Counted by the database, so a campaign page
    /// does not read every event it has.
    fn click_tally(&self, about: HistoryRef) -> Result<Vec<(String, u64, u64)>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(address: &str, expect: Option<&str>) {
        match (check_address(address), expect) {
            (Ok(got), Some(want)) => assert_eq!(got, want, "{address:?}"),
            (Err(_), None) => {}
            (got, want) => panic!("{address:?}: got {got:?}, wanted {want:?}"),
        }
    }

    #[test]
    fn addresses_are_rfc_5321_mailboxes_with_a_real_domain() {
        for (good, stored) in [
            ("ann@example.org", "ann@example.org"),
            ("  Ann.Lee+news@Example.ORG ", "Ann.Lee+news@example.org"),
            ("o'brien@sub.example.co.uk", "o'brien@sub.example.co.uk"),
            (
                "x!#$%&*/=?^_`{|}~-y@example.org",
                "x!#$%&*/=?^_`{|}~-y@example.org",
            ),
            ("\"john doe\"@example.org", "\"john doe\"@example.org"),
            ("\"a@b\"@example.org", "\"a@b\"@example.org"),
            ("\"q\\\"uote\"@example.org", "\"q\\\"uote\"@example.org"),
            ("user@xn--bcher-kva.example", "user@xn--bcher-kva.example"),
            ("user@Bücher.Example", "user@bücher.example"),
            ("用户@例子.广告", "用户@例子.广告"),
            ("a@b-c.d1", "a@b-c.d1"),
        ] {
            check(good, Some(stored));
        }
        let long_label = format!("a@{}.example", "x".repeat(64));
        let long_local = format!("{}@example.org", "x".repeat(65));
        let long_all = format!("a@{}example.org", "abcdefghi.".repeat(25));
        for bad in [
            "",
            "two@@remote.test",
            "x@y@remote.test",
            "@remote.test",
            "user@",
            "user",
            "user@localhost",
            "a b@example.org",
            "a..b@example.org",
            ".a@example.org",
            "a.@example.org",
            "a(b)@example.org",
            "a,b@example.org",
            "<a@example.org>",
            "\"open@example.org",
            "\"a\"b\"@example.org",
            "a@-example.org",
            "a@example-.org",
            "a@exa_mple.org",
            "a@example..org",
            "a@.example.org",
            "a@example.org.",
            "a@[192.0.2.1]",
            "a@192.0.2.1",
            "a@exa mple.org",
            "a\u{7}@example.org",
            &long_label,
            &long_local,
            &long_all,
        ] {
            check(bad, None);
        }
        let why = check_address("x@y@remote.test").unwrap_err();
        assert!(
            why.contains("x@y@remote.test") && why.contains("@"),
            "{why}"
        );
    }

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
