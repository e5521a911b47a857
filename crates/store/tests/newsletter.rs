//! Newsletters in the embedded store, through the `Newsletters` trait: lists and
//! subscribers, exactly-once enqueueing into the outbound queue, the step-mail schedule
//! over simulated days, bounces, and the bounded history (bitmaps, daily totals, pruning).

use std::collections::BTreeMap;
use store::prelude::*;

use store::{
    BouncePolicy, CampaignId, CampaignState, HistoryRef, Mail, NewCampaign, NewStep, NewSubscriber,
    Newsletters, Outbound, Outcome, SqliteStore, StoreError, SubscriberId, SubscriberStatus,
    Suppression, SuppressionReason,
};

const DAY: i64 = 86_400;
/// 2024-01-01T00:00:00Z.
const T0: i64 = 1_704_067_200;

fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    (dir, store)
}

fn person(email: &str, status: SubscriberStatus) -> NewSubscriber {
    NewSubscriber {
        email: email.to_string(),
        name: email.split('@').next().unwrap().to_string(),
        attributes: BTreeMap::new(),
        status,
    }
}

fn active(email: &str) -> NewSubscriber {
    person(email, SubscriberStatus::Active)
}

fn new_campaign(list: store::ListId) -> NewCampaign {
    NewCampaign {
        list,
        subject: "News".into(),
        text: "Hello {{name}}".into(),
        html: None,
        send_at: T0,
        state: CampaignState::Scheduled,
        rate_per_second: 0,
        rate_per_domain: 0,
        created: T0,
        also: Vec::new(),
        segment: store::Segment::default(),
    }
}

fn campaign(store: &SqliteStore, list: store::ListId) -> CampaignId {
    store.campaign_add(new_campaign(list)).unwrap()
}

fn mail(store: &SqliteStore, id: SubscriberId, about: HistoryRef) -> Mail {
    let s = store.subscriber(id).unwrap();
    Mail {
        subscriber: id,
        message: format!("Subject: hi\r\n\r\nhello {}\r\n", s.email).into_bytes(),
        envelope: Outbound {
            sender: format!("bounces+x{}-{}@example.com", about.id(), id.0),
            recipients: vec![s.email],
            account: None,
        },
    }
}

/// Adds `n` active subscribers user0..user{n-1}@example.org, created at `at`.
fn populate(store: &SqliteStore, list: store::ListId, n: usize, at: i64) -> Vec<SubscriberId> {
    let rows = (0..n)
        .map(|i| active(&format!("user{i}@example.org")))
        .collect();
    let counts = store.subscriber_import(list, rows, at).unwrap();
    assert_eq!(counts.added, n as u64);
    store
        .subscribers(list, None, n + 10)
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect()
}

#[test]
fn lists_and_subscribers() {
    let (_dir, store) = store();
    let list = store
        .list_add("news", "News@Example.COM", "The News", true, T0)
        .unwrap();
    assert!(matches!(
        store.list_add("news", "a@example.com", "", false, T0),
        Err(StoreError::AlreadyExists { .. })
    ));
    let got = store.list("news").unwrap();
    assert_eq!(got.id, list);
    assert_eq!(got.from_address, "News@example.com");
    assert!(got.double_opt_in);
    assert_eq!(store.lists().unwrap().len(), 1);

    let mut ann = person("Ann@Example.ORG", SubscriberStatus::Unconfirmed);
    ann.attributes
        .insert("city".into(), "Tokyo\tnorth\nline".into());
    let id = store.subscriber_add(list, ann, T0).unwrap();
    let s = store.subscriber(id).unwrap();
    assert_eq!(s.email, "Ann@example.org");
    assert_eq!(s.attributes["city"], "Tokyo\tnorth\nline");
    assert_eq!(s.status, SubscriberStatus::Unconfirmed);
    assert_eq!(s.confirmed, None);
    assert!(matches!(
        store.subscriber_add(list, active("ann@EXAMPLE.org"), T0),
        Err(StoreError::AlreadyExists { .. })
    ));
    assert!(matches!(
        store.subscriber_add(list, active("not an address"), T0),
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(
        store
            .subscriber_by_email(list, "ANN@example.org")
            .unwrap()
            .id,
        id
    );

    // The same address may be on another list.
    let other = store
        .list_add("other", "o@example.com", "", false, T0)
        .unwrap();
    store
        .subscriber_add(other, active("ann@example.org"), T0)
        .unwrap();

    // Confirming sets the start of its step mail once.
    store
        .subscriber_set_status(id, SubscriberStatus::Active, None, T0 + 100)
        .unwrap();
    store
        .subscriber_set_status(id, SubscriberStatus::Active, None, T0 + 200)
        .unwrap();
    assert_eq!(store.subscriber(id).unwrap().confirmed, Some(T0 + 100));
    assert_eq!(store.subscriber_counts(list).unwrap()["active"], 1);

    store.subscriber_remove(id).unwrap();
    assert!(matches!(
        store.subscriber(id),
        Err(StoreError::NotFound { .. })
    ));
    store.list_remove("news").unwrap();
    assert!(matches!(
        store.list("news"),
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.lists().unwrap().len(), 1);
}

#[test]
fn import_counts_added_present_and_invalid() {
    let (_dir, store) = store();
    let list = store
        .list_add("news", "n@example.com", "", false, T0)
        .unwrap();
    store
        .subscriber_add(list, active("old@example.org"), T0)
        .unwrap();
    let mut rows: Vec<_> = (0..2500)
        .map(|i| active(&format!("u{i}@example.org")))
        .collect();
    rows.push(active("OLD@example.org"));
    rows.push(active("u7@EXAMPLE.org"));
    rows.push(active("broken"));
    rows.push(active("@example.org"));
    let counts = store.subscriber_import(list, rows, T0).unwrap();
    assert_eq!(counts.added, 2500);
    assert_eq!(counts.present, 2);
    let invalid: Vec<usize> = counts.invalid.iter().map(|(i, _)| *i).collect();
    assert_eq!(invalid, vec![2502, 2503]);
    assert_eq!(store.subscriber_counts(list).unwrap()["active"], 2501);
}

#[test]
fn subscribers_page_in_id_order() {
    let (_dir, store) = store();
    let list = store
        .list_add("news", "n@example.com", "", false, T0)
        .unwrap();
    let ids = populate(&store, list, 25, T0);
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.subscribers(list, after, 10).unwrap();
        if page.is_empty() {
            break;
        }
        after = Some(page.last().unwrap().id);
        seen.extend(page.into_iter().map(|s| s.id));
    }
    assert_eq!(seen, ids);
}

#[test]
fn campaign_sends_each_subscriber_exactly_once() {
    let (dir, store) = store();
    let list = store
        .list_add("news", "n@example.com", "", false, T0)
        .unwrap();
    let ids = populate(&store, list, 50, T0);
    let gone = store
        .subscriber_add(
            list,
            person("gone@example.org", SubscriberStatus::Unsubscribed),
            T0,
        )
        .unwrap();
    let c = campaign(&store, list);
    let about = HistoryRef::Campaign(c);

    let first = store.campaign_pending(c, None, 20).unwrap();
    assert_eq!(first.len(), 20);
    assert!(first.iter().all(|s| s.id != gone));
    let mails: Vec<Mail> = first.iter().map(|s| mail(&store, s.id, about)).collect();
    assert_eq!(store.enqueue_mails(about, &mails, T0).unwrap(), 20);
    // The same batch again (a crash between enqueueing and noting progress): nothing.
    assert_eq!(store.enqueue_mails(about, &mails, T0).unwrap(), 0);

    // Paging from the start skips those already sent.
    let next = store.campaign_pending(c, None, 100).unwrap();
    assert_eq!(next.len(), 30);
    assert_eq!(next[0].id, ids[20]);

    let queue = store.queue_list().unwrap();
    assert_eq!(queue.len(), 20);
    assert!(queue[0].sender.starts_with("bounces+x"));
    assert_eq!(queue[0].account, None);
    assert_eq!(queue[0].recipients.len(), 1);
    // Due at once, even though the clock given is the campaign's.
    assert_eq!(store.queue_due(store_now(), 100).unwrap().len(), 20);

    assert_eq!(
        store.received_by(about, Outcome::Sent).unwrap(),
        ids[..20].to_vec()
    );
    let totals = store.daily_totals(0).unwrap();
    assert_eq!(totals.len(), 1);
    assert_eq!(totals[0].count, 20);
    assert_eq!(totals[0].outcome, Outcome::Sent);

    // A mixed batch: only the new ones are queued.
    let mixed: Vec<Mail> = ids[15..25]
        .iter()
        .map(|&id| mail(&store, id, about))
        .collect();
    assert_eq!(store.enqueue_mails(about, &mixed, T0).unwrap(), 5);
    drop(store);

    // Reopened: the ledger and the queue agree.
    let store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(store.queue_list().unwrap().len(), 25);
    assert_eq!(store.count(about, Outcome::Sent).unwrap(), 25);
    assert_eq!(store.campaign_pending(c, None, 100).unwrap().len(), 25);
    assert_eq!(store.enqueue_mails(about, &mixed, T0).unwrap(), 0);
    let report = store.check(&store::CheckOptions::default()).unwrap();
    assert!(report.is_healthy(), "{report}");
}

fn store_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + 60
}

fn step(days_after: u32, send_minute: u16, subject: &str) -> NewStep {
    NewStep {
        days_after,
        send_minute,
        subject: subject.into(),
        text: "step".into(),
        html: None,
        condition: None,
        otherwise: store::Otherwise::Skip,
    }
}

/// Runs the scheduler as the engine would: everything due is sent at once.
fn send_due(store: &SqliteStore, now: i64) -> Vec<(String, String)> {
    let due = store.steps_due(now, 1000).unwrap();
    let mut sent = Vec::new();
    for (step, subscriber) in due {
        let about = HistoryRef::Step(step.id);
        let queued = store
            .enqueue_mails(about, &[mail(store, subscriber.id, about)], now)
            .unwrap();
        assert_eq!(queued, 1);
        sent.push((step.subject, subscriber.email));
    }
    sent.sort();
    sent
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn steps_arrive_on_their_day_in_order_in_the_zone() {
    let (_dir, store) = store();
    let list = store
        .list_add("news", "n@example.com", "", false, T0)
        .unwrap();
    // Existing before the sequence: left out.
    store
        .subscriber_add(list, active("early@example.org"), T0 - DAY)
        .unwrap();
    // Tokyo is UTC+9: 09:00 there is 00:00 UTC.
    let seq = store
        .sequence_add(list, "welcome", "Asia/Tokyo", false, T0)
        .unwrap();
    store.step_add(seq, step(0, 9 * 60, "s1")).unwrap();
    store.step_add(seq, step(1, 9 * 60, "s2")).unwrap();
    store.step_add(seq, step(3, 9 * 60, "s3")).unwrap();
    assert!(matches!(
        store.sequence_add(list, "bad", "Mars/Olympus", false, T0),
        Err(StoreError::Invalid(_))
    ));

    // Ann subscribes at 2024-01-01 01:00 UTC = 10:00 Tokyo: step 1 (09:00 that day) is due
    // at once; step 2 at 2024-01-02 00:00 UTC.
    store
        .subscriber_add(list, active("ann@example.org"), T0 + 3600)
        .unwrap();
    // Bob is unconfirmed until the next day: his days count from the confirmation.
    let bob = store
        .subscriber_add(
            list,
            person("bob@example.org", SubscriberStatus::Unconfirmed),
            T0 + 3600,
        )
        .unwrap();

    assert_eq!(
        send_due(&store, T0 + 3600),
        pairs(&[("s1", "ann@example.org")])
    );
    assert!(send_due(&store, T0 + 3600).is_empty(), "sent twice");
    store
        .subscriber_set_status(bob, SubscriberStatus::Active, None, T0 + DAY + 3600)
        .unwrap();
    // One minute before 09:00 Tokyo on day 1: nothing yet (Bob counts from his
    // confirmation, which the test clock has not reached).
    assert_eq!(
        send_due(&store, T0 + DAY - 60),
        Vec::<(String, String)>::new()
    );
    assert_eq!(
        send_due(&store, T0 + DAY + 3600),
        pairs(&[("s1", "bob@example.org"), ("s2", "ann@example.org")])
    );
    // A scheduler that was down for days sends Ann's step 3 but Bob gets step 2 first,
    // never two steps at once.
    assert_eq!(
        send_due(&store, T0 + 10 * DAY),
        pairs(&[("s2", "bob@example.org"), ("s3", "ann@example.org")])
    );
    // Bob unsubscribes: his step 3 never comes.
    store
        .subscriber_set_status(bob, SubscriberStatus::Unsubscribed, None, T0 + 10 * DAY)
        .unwrap();
    assert!(send_due(&store, T0 + 20 * DAY).is_empty());
    let sequences = store.sequences().unwrap();
    assert_eq!(sequences.len(), 1);
    assert_eq!(
        sequences[0]
            .1
            .iter()
            .map(|s| s.position)
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
}

#[test]
fn existing_subscribers_join_from_the_sequence_creation_when_asked() {
    let (_dir, store) = store();
    let list = store
        .list_add("news", "n@example.com", "", false, T0)
        .unwrap();
    store
        .subscriber_add(list, active("early@example.org"), T0 - 30 * DAY)
        .unwrap();
    let seq = store.sequence_add(list, "all", "UTC", true, T0).unwrap();
    store.step_add(seq, step(0, 12 * 60, "s1")).unwrap();
    store.step_add(seq, step(2, 12 * 60, "s2")).unwrap();
    // Counted from T0, not from 30 days ago: step 2 is not due on day 1.
    assert!(send_due(&store, T0 + 11 * 3600).is_empty());
    assert_eq!(
        send_due(&store, T0 + 12 * 3600),
        pairs(&[("s1", "early@example.org")])
    );
    assert!(send_due(&store, T0 + DAY + 12 * 3600).is_empty());
    assert_eq!(
        send_due(&store, T0 + 2 * DAY + 12 * 3600),
        pairs(&[("s2", "early@example.org")])
    );
}

#[test]
fn within_the_second_of_creation_the_subscriber_order_tells_existing_from_new() {
    let (_dir, store) = store();
    let list = store
        .list_add("news", "n@example.com", "", false, T0)
        .unwrap();
    // A script: one subscriber, the sequence, another subscriber, all in one second.
    store
        .subscriber_add(list, active("before@example.org"), T0)
        .unwrap();
    let seq = store.sequence_add(list, "new", "UTC", false, T0).unwrap();
    store.step_add(seq, step(0, 12 * 60, "s1")).unwrap();
    store
        .subscriber_add(list, active("after@example.org"), T0)
        .unwrap();
    assert_eq!(
        send_due(&store, T0 + 12 * 3600),
        pairs(&[("s1", "after@example.org")])
    );
}

#[test]
fn steps_due_honours_the_limit_and_scales() {
    let (_dir, store) = store();
    let list = store
        .list_add("news", "n@example.com", "", false, T0)
        .unwrap();
    let seq = store
        .sequence_add(list, "w", "Europe/Berlin", false, T0)
        .unwrap();
    store.step_add(seq, step(0, 0, "s1")).unwrap();
    store.step_add(seq, step(1, 0, "s2")).unwrap();
    populate(&store, list, 20_000, T0 + 10);
    let started = std::time::Instant::now();
    let due = store.steps_due(T0 + 2 * DAY, 500).unwrap();
    assert_eq!(due.len(), 500);
    assert!(due.iter().all(|(s, _)| s.position == 1));
    let all = store.steps_due(T0 + 2 * DAY, 100_000).unwrap();
    assert_eq!(all.len(), 20_000);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// Hard bounces disable at `limit`; soft ones never do.
fn hard(limit: u32) -> BouncePolicy {
    BouncePolicy {
        hard_limit: limit,
        soft_limit: 0,
        soft_days: 30,
    }
}

#[test]
fn soft_bounces_on_enough_mails_within_the_period_disable() {
    let (_dir, store) = store();
    let list = store
        .list_add("news", "n@example.com", "", false, T0)
        .unwrap();
    let ann = store
        .subscriber_add(list, active("ann@example.org"), T0)
        .unwrap();
    let bob = store
        .subscriber_add(list, active("bob@example.org"), T0)
        .unwrap();
    let policy = BouncePolicy {
        hard_limit: 1,
        soft_limit: 3,
        soft_days: 10,
    };
    let mails: Vec<HistoryRef> = (0..4)
        .map(|_| HistoryRef::Campaign(campaign(&store, list)))
        .collect();
    // Six soft bounces of one mail (a full mailbox retried for days) are one mail.
    for _ in 0..6 {
        let s = store
            .bounce(mails[0], ann, false, Some("mailbox full"), policy, T0)
            .unwrap();
        assert_eq!(s.status, SubscriberStatus::Active);
    }
    // Soft bounces spread wider than the period never add up.
    for (i, mail) in mails.iter().enumerate() {
        let at = T0 + 20 * DAY * i as i64;
        let s = store.bounce(*mail, bob, false, None, policy, at).unwrap();
        assert_eq!(s.status, SubscriberStatus::Active, "mail {i}");
    }
    // Three different mails within ten days disable, as a hard bounce would.
    let later = T0 + 200 * DAY;
    let s = store
        .bounce(mails[1], ann, false, None, policy, later)
        .unwrap();
    assert_eq!(s.status, SubscriberStatus::Active);
    let s = store
        .bounce(mails[2], ann, false, None, policy, later + 3 * DAY)
        .unwrap();
    assert_eq!(s.status, SubscriberStatus::Active);
    let s = store
        .bounce(mails[3], ann, false, None, policy, later + 9 * DAY)
        .unwrap();
    assert_eq!((s.soft_bounces, s.status), (9, SubscriberStatus::Bounced));
    // 0 means never.
    let never = BouncePolicy {
        soft_limit: 0,
        ..policy
    };
    let carl = store
        .subscriber_add(list, active("carl@example.org"), T0)
        .unwrap();
    for mail in &mails {
        let s = store
            .bounce(*mail, carl, false, None, never, later)
            .unwrap();
        assert_eq!(s.status, SubscriberStatus::Active);
    }
}

#[test]
fn hard_bounces_disable_at_the_limit_and_soft_ones_count() {
    let (_dir, store) = store();
    let list = store
        .list_add("news", "n@example.com", "", false, T0)
        .unwrap();
    let ann = store
        .subscriber_add(list, active("ann@example.org"), T0)
        .unwrap();
    let c1 = HistoryRef::Campaign(campaign(&store, list));
    let c2 = HistoryRef::Campaign(campaign(&store, list));
    let s = store
        .bounce(c1, ann, false, Some("mailbox full"), hard(2), T0)
        .unwrap();
    assert_eq!((s.soft_bounces, s.status), (1, SubscriberStatus::Active));
    let s = store
        .bounce(c1, ann, true, Some("user unknown"), hard(2), T0)
        .unwrap();
    assert_eq!((s.hard_bounces, s.status), (1, SubscriberStatus::Active));
    let long = "x".repeat(5000);
    let s = store
        .bounce(c2, ann, true, Some(&long), hard(2), T0)
        .unwrap();
    assert_eq!((s.hard_bounces, s.status), (2, SubscriberStatus::Bounced));
    assert_eq!(
        store.received_by(c1, Outcome::HardBounce).unwrap(),
        vec![ann]
    );
    assert_eq!(
        store.received_by(c1, Outcome::SoftBounce).unwrap(),
        vec![ann]
    );
    let events = store.events(Some(c2), 0, 10).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event, "hard_bounce");
    assert_eq!(events[0].detail.as_ref().unwrap().len(), 1024);
    // Bounced: no longer pending for campaigns.
    assert!(
        store
            .campaign_pending(CampaignId(c2.id()), None, 10)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn history_records_clicks_unsubscribes_and_answers_both_questions() {
    let (_dir, store) = store();
    let list = store
        .list_add("news", "n@example.com", "", false, T0)
        .unwrap();
    let ids = populate(&store, list, 3, T0);
    let c = HistoryRef::Campaign(campaign(&store, list));
    let mails: Vec<Mail> = ids.iter().map(|&id| mail(&store, id, c)).collect();
    store.enqueue_mails(c, &mails, T0).unwrap();
    store
        .record(
            c,
            ids[0],
            Outcome::Click,
            Some("https://example.net/a"),
            T0 + 10,
        )
        .unwrap();
    store
        .record(
            c,
            ids[0],
            Outcome::Click,
            Some("https://example.net/b"),
            T0 + 20,
        )
        .unwrap();
    store
        .subscriber_set_status(ids[1], SubscriberStatus::Unsubscribed, Some(c), T0 + 30)
        .unwrap();

    assert_eq!(store.received_by(c, Outcome::Click).unwrap(), vec![ids[0]]);
    assert_eq!(
        store.received_by(c, Outcome::Unsubscribe).unwrap(),
        vec![ids[1]]
    );
    assert_eq!(
        store.history_of(ids[0]).unwrap(),
        vec![(c, Outcome::Sent), (c, Outcome::Click)]
    );
    assert_eq!(
        store.history_of(ids[1]).unwrap(),
        vec![(c, Outcome::Sent), (c, Outcome::Unsubscribe)]
    );
    let totals: BTreeMap<Outcome, u64> = store
        .daily_totals(0)
        .unwrap()
        .into_iter()
        .map(|t| (t.outcome, t.count))
        .collect();
    // Every click counts in the totals; the set says who clicked.
    assert_eq!(totals[&Outcome::Click], 2);
    assert_eq!(totals[&Outcome::Sent], 3);
    assert_eq!(totals[&Outcome::Unsubscribe], 1);
    let clicks: Vec<_> = store
        .events(Some(c), 0, 10)
        .unwrap()
        .into_iter()
        .filter(|e| e.event == "click")
        .map(|e| e.detail.unwrap())
        .collect();
    assert_eq!(clicks, ["https://example.net/a", "https://example.net/b"]);

    let urls = vec![
        "https://example.net/a".to_string(),
        "https://example.net/b".into(),
    ];
    store.set_links(c, &urls).unwrap();
    assert_eq!(store.links(c).unwrap(), urls);
    store.set_links(c, &urls[1..]).unwrap();
    assert_eq!(store.links(c).unwrap(), urls[1..].to_vec());
}

#[test]
fn pruning_removes_old_events_in_batches_and_keeps_daily_totals() {
    let (_dir, store) = store();
    let list = store
        .list_add("news", "n@example.com", "", false, T0)
        .unwrap();
    let ids = populate(&store, list, 10, T0);
    let c = HistoryRef::Campaign(campaign(&store, list));
    for day in 0..10 {
        for &id in &ids {
            store
                .record(
                    c,
                    id,
                    Outcome::Click,
                    Some("https://example.net/"),
                    T0 + day * DAY,
                )
                .unwrap();
        }
    }
    store.log_action(None, "campaign started", T0).unwrap();
    assert_eq!(store.events(None, 0, 1000).unwrap().len(), 101);
    let before = T0 + 5 * DAY;
    let mut removed = Vec::new();
    loop {
        let n = store.prune_events(before, 7).unwrap();
        if n == 0 {
            break;
        }
        assert!(n <= 7);
        removed.push(n);
    }
    assert_eq!(removed.iter().sum::<u64>(), 51);
    let left = store.events(None, 0, 1000).unwrap();
    assert_eq!(left.len(), 50);
    assert!(left.iter().all(|e| e.at >= before));
    let totals = store.daily_totals(0).unwrap();
    assert_eq!(totals.len(), 10);
    assert!(totals.iter().all(|t| t.count == 10));
    assert_eq!(store.received_by(c, Outcome::Click).unwrap().len(), 10);
}

#[test]
fn history_stays_small_for_twenty_campaigns_to_twenty_thousand() {
    let (_dir, store) = store();
    let list = store
        .list_add("news", "n@example.com", "", false, T0)
        .unwrap();
    let ids = populate(&store, list, 20_000, T0);
    let empty = store.history_bytes().unwrap();
    assert!(empty < 64 * 1024, "{empty}");
    let mut last = empty;
    for i in 0..20 {
        let c = HistoryRef::Campaign(campaign(&store, list));
        // Straight into the ledger (as the benchmark does), without queue rows.
        let added = store
            .record_many(c, Outcome::Sent, &ids, T0 + i * DAY)
            .unwrap();
        assert_eq!(added, 20_000);
        let now = store.history_bytes().unwrap();
        assert!(now >= last, "{now} < {last}");
        last = now;
        assert_eq!(store.count(c, Outcome::Sent).unwrap(), 20_000);
    }
    eprintln!("history of 20 campaigns x 20,000: {last} bytes");
    assert!(last < 1024 * 1024, "history of 20 campaigns: {last} bytes");
}

fn entry(address: &str, reason: SuppressionReason) -> Suppression {
    Suppression {
        address: address.into(),
        reason,
        at: T0,
        note: None,
    }
}

#[test]
fn the_suppression_list_keeps_one_entry_per_address_in_lower_case() {
    let (_dir, store) = store();
    assert!(
        store
            .suppress(" Ann@Example.ORG ", SuppressionReason::Manual, None, T0)
            .unwrap()
    );
    // The first reason stands: it says why mail stopped.
    assert!(
        !store
            .suppress(
                "ann@example.org",
                SuppressionReason::Complained,
                None,
                T0 + 1
            )
            .unwrap()
    );
    let ann = store.suppression("ANN@example.org").unwrap().unwrap();
    assert_eq!(
        (ann.address.as_str(), ann.reason, ann.at),
        ("ann@example.org", SuppressionReason::Manual, T0)
    );
    assert!(store.suppression("bob@example.org").unwrap().is_none());
    assert!(matches!(
        store.suppress("x@y@remote.test", SuppressionReason::Manual, None, T0),
        Err(StoreError::Invalid(_))
    ));
    let long = "n".repeat(5000);
    store
        .suppress(
            "long@example.org",
            SuppressionReason::Manual,
            Some(&long),
            T0,
        )
        .unwrap();
    let note = store.suppression("long@example.org").unwrap().unwrap().note;
    assert_eq!(note.unwrap().len(), store::MAX_SUPPRESSION_NOTE);

    // An import: 1,200 rows (more than a transaction's batch), one bad, one present.
    let mut rows: Vec<Suppression> = (0..1200)
        .map(|i| {
            entry(
                &format!("User{i:04}@example.org"),
                SuppressionReason::Bounced,
            )
        })
        .collect();
    rows.push(entry("two@@remote.test", SuppressionReason::Manual));
    rows.push(entry("ann@example.org", SuppressionReason::Bounced));
    let counts = store.suppress_many(rows).unwrap();
    assert_eq!((counts.added, counts.present), (1200, 1));
    assert_eq!(counts.invalid.len(), 1);
    assert_eq!(counts.invalid[0].0, 1200);
    assert_eq!(store.suppression_count().unwrap(), 1202);

    // The batch filter crosses its lookup chunks and ignores case.
    let asked: Vec<String> = (0..1500)
        .map(|i| format!("USER{i:04}@example.org"))
        .collect();
    let found = store.suppressed_among(&asked).unwrap();
    assert_eq!(found.len(), 1200);
    assert!(found.contains("user0000@example.org"));
    assert!(!found.contains("user1200@example.org"));

    // Pages in address order.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.suppressions(after.as_deref(), 500).unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.address.clone());
        seen.extend(page.into_iter().map(|s| s.address));
    }
    assert_eq!(seen.len(), 1202);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));

    store.unsuppress("ANN@example.org").unwrap();
    assert!(matches!(
        store.unsuppress("ann@example.org"),
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.suppression_count().unwrap(), 1201);
}

#[test]
fn a_suppressed_address_gets_no_campaign_mail_and_is_counted_apart() {
    let (_dir, store) = store();
    let list = store
        .list_add("news", "n@example.com", "", false, T0)
        .unwrap();
    let ids = populate(&store, list, 10, T0);
    store
        .suppress("user3@example.org", SuppressionReason::Manual, None, T0)
        .unwrap();
    store
        .suppress("USER7@EXAMPLE.ORG", SuppressionReason::Complained, None, T0)
        .unwrap();
    let c = campaign(&store, list);
    let about = HistoryRef::Campaign(c);
    let pending = store.campaign_pending(c, None, 100).unwrap();
    assert_eq!(pending.len(), 10);
    let mails: Vec<Mail> = pending.iter().map(|s| mail(&store, s.id, about)).collect();
    assert_eq!(store.enqueue_mails(about, &mails, T0).unwrap(), 8);
    assert_eq!(store.queue_list().unwrap().len(), 8);
    assert_eq!(store.count(about, Outcome::Sent).unwrap(), 8);
    assert_eq!(
        store.received_by(about, Outcome::Suppressed).unwrap(),
        vec![ids[3], ids[7]]
    );
    let suppressed_today: u64 = store
        .daily_totals(0)
        .unwrap()
        .iter()
        .filter(|t| t.outcome == Outcome::Suppressed)
        .map(|t| t.count)
        .sum();
    assert_eq!(suppressed_today, 2);
    // Done for everyone: a campaign does not wait on its suppressed readers, and one taken
    // off the list later does not get a campaign that has gone by.
    assert!(store.campaign_pending(c, None, 100).unwrap().is_empty());
    store.unsuppress("user3@example.org").unwrap();
    assert!(store.campaign_pending(c, None, 100).unwrap().is_empty());
    assert_eq!(store.enqueue_mails(about, &mails, T0).unwrap(), 0);
    assert_eq!(store.count(about, Outcome::Suppressed).unwrap(), 2);
}

#[test]
fn a_suppressed_subscriber_is_skipped_by_a_step_and_not_offered_it_again() {
    let (_dir, store) = store();
    let list = store
        .list_add("news", "n@example.com", "", false, T0)
        .unwrap();
    let seq = store
        .sequence_add(list, "welcome", "UTC", false, T0)
        .unwrap();
    store.step_add(seq, step(0, 0, "s1")).unwrap();
    store.step_add(seq, step(1, 0, "s2")).unwrap();
    store
        .subscriber_add(list, active("ann@example.org"), T0 + 60)
        .unwrap();
    store
        .subscriber_add(list, active("bob@example.org"), T0 + 60)
        .unwrap();
    store
        .suppress("bob@example.org", SuppressionReason::Manual, None, T0)
        .unwrap();
    let due = store.steps_due(T0 + 120, 100).unwrap();
    assert_eq!(due.len(), 2);
    let mut queued = 0;
    for (step, subscriber) in &due {
        let about = HistoryRef::Step(step.id);
        queued += store
            .enqueue_mails(about, &[mail(&store, subscriber.id, about)], T0 + 120)
            .unwrap();
    }
    assert_eq!(queued, 1);
    // Bob's step 1 is done (suppressed), so he is not offered it at every look.
    assert!(store.steps_due(T0 + 180, 100).unwrap().is_empty());
    // Taken off the list, he goes on with the next step on its day.
    store.unsuppress("bob@example.org").unwrap();
    assert_eq!(
        send_due(&store, T0 + DAY + 60),
        pairs(&[("s2", "ann@example.org"), ("s2", "bob@example.org")])
    );
}

#[test]
fn a_disabling_bounce_and_a_complaint_put_the_address_on_the_suppression_list() {
    let (_dir, store) = store();
    let list = store
        .list_add("news", "n@example.com", "", false, T0)
        .unwrap();
    let ann = store
        .subscriber_add(list, active("Ann@example.org"), T0)
        .unwrap();
    let bob = store
        .subscriber_add(list, active("bob@example.org"), T0)
        .unwrap();
    let c = HistoryRef::Campaign(campaign(&store, list));
    // A bounce below the limit suppresses nothing.
    store
        .bounce(c, ann, true, Some("5.1.1 user unknown"), hard(2), T0)
        .unwrap();
    assert!(store.suppression("ann@example.org").unwrap().is_none());
    store
        .bounce(c, ann, true, Some("5.1.1 user unknown"), hard(2), T0)
        .unwrap();
    let s = store.suppression("ann@example.org").unwrap().unwrap();
    assert_eq!(s.reason, SuppressionReason::Bounced);
    assert_eq!(
        s.note.as_deref(),
        Some(format!("campaign {}: 5.1.1 user unknown", c.id()).as_str())
    );

    let got = store
        .complaint(c, bob, Some("abuse via fbl.example.net"), T0 + 5)
        .unwrap();
    assert_eq!(got.status, SubscriberStatus::Active);
    assert_eq!(store.received_by(c, Outcome::Complaint).unwrap(), vec![bob]);
    let s = store.suppression("bob@example.org").unwrap().unwrap();
    assert_eq!((s.reason, s.at), (SuppressionReason::Complained, T0 + 5));
    let events = store.events(Some(c), 0, 10).unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.event == "complaint" && e.subscriber == Some(bob))
    );
    assert!(matches!(
        store.complaint(c, SubscriberId(999), None, T0),
        Err(StoreError::NotFound { .. })
    ));
}

/// Schema 12: a campaign keeps its other lists in order and its segment, a list named twice
/// or unknown is refused, and removing one of its other lists leaves the campaign; the
/// count is of different addresses (in any case) that are active and match.
#[test]
fn a_campaign_keeps_its_lists_and_segment_and_counts_addresses_once() {
    let (_dir, store) = store();
    let a = store.list_add("a", "a@example.com", "", false, T0).unwrap();
    let b = store.list_add("b", "b@example.com", "", false, T0).unwrap();
    let c = store.list_add("c", "c@example.com", "", false, T0).unwrap();
    let kyoto = |email: &str| NewSubscriber {
        attributes: BTreeMap::from([("city".to_string(), "Kyoto".to_string())]),
        ..active(email)
    };
    store
        .subscriber_add(a, kyoto("one@example.org"), T0)
        .unwrap();
    store
        .subscriber_add(a, active("two@example.org"), T0)
        .unwrap();
    store
        .subscriber_add(b, kyoto("ONE@example.org"), T0)
        .unwrap();
    store
        .subscriber_add(b, kyoto("three@example.org"), T0)
        .unwrap();
    store
        .subscriber_add(
            c,
            person("four@example.org", SubscriberStatus::Unsubscribed),
            T0,
        )
        .unwrap();
    let segment = store::Segment::parse(&["city=Kyoto"]).unwrap();
    let new = |also: Vec<store::ListId>| NewCampaign {
        also,
        segment: segment.clone(),
        ..new_campaign(a)
    };
    let id = store.campaign_add(new(vec![c, b])).unwrap();
    let got = store.campaign(id).unwrap();
    assert_eq!(
        (got.also.clone(), got.segment.clone()),
        (vec![c, b], segment.clone())
    );
    assert_eq!(got.lists(), vec![a, c, b]);
    assert_eq!(store.campaigns().unwrap()[0].also, vec![c, b]);
    assert_eq!(store.segment_count(&got.lists(), &segment).unwrap(), 2);
    assert_eq!(
        store
            .segment_count(&got.lists(), &store::Segment::default())
            .unwrap(),
        3
    );
    assert_eq!(
        store
            .segment_count(&[a], &store::Segment::default())
            .unwrap(),
        2
    );
    assert!(matches!(
        store.campaign_add(new(vec![b, b])),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.campaign_add(new(vec![a])),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.campaign_add(new(vec![store::ListId(99)])),
        Err(StoreError::NotFound { .. })
    ));
    store.list_remove("c").unwrap();
    assert_eq!(store.campaign(id).unwrap().also, vec![b]);
}
