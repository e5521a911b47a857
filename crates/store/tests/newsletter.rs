//! Newsletters in the embedded store, through the `Newsletters` trait: lists and
//! subscribers, exactly-once enqueueing into the outbound queue, the step-mail schedule
//! over simulated days, bounces, and the bounded history (bitmaps, daily totals, pruning).

use std::collections::BTreeMap;
use store::prelude::*;

use store::{
    CampaignId, CampaignState, HistoryRef, Mail, NewCampaign, NewStep, NewSubscriber, Newsletters,
    Outbound, Outcome, SqliteStore, StoreError, SubscriberId, SubscriberStatus,
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

fn campaign(store: &SqliteStore, list: store::ListId) -> CampaignId {
    store
        .campaign_add(NewCampaign {
            list,
            subject: "News".into(),
            text: "Hello {{name}}".into(),
            html: None,
            send_at: T0,
            state: CampaignState::Scheduled,
            rate_per_second: 0,
            rate_per_domain: 0,
            created: T0,
        })
        .unwrap()
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
        .bounce(c1, ann, false, Some("mailbox full"), 2, T0)
        .unwrap();
    assert_eq!((s.soft_bounces, s.status), (1, SubscriberStatus::Active));
    let s = store
        .bounce(c1, ann, true, Some("user unknown"), 2, T0)
        .unwrap();
    assert_eq!((s.hard_bounces, s.status), (1, SubscriberStatus::Active));
    let long = "x".repeat(5000);
    let s = store.bounce(c2, ann, true, Some(&long), 2, T0).unwrap();
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
