//! The engine against a real SQLite store in a temporary directory: exactly-once campaign
//! sending across a restart, step mail over simulated days, bounces, clicks, unsubscribe,
//! pruning.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use store::prelude::*;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use newsletter::{BatchOutcome, Engine, NewsletterConfig, admin};
use smtp_server::BounceSink;
use store::{
    CampaignAction, CampaignState, HistoryRef, ListId, NewCampaign, NewStep, NewSubscriber,
    Newsletters, Outcome, SqliteStore, StepId, StoreError, SubscriberId, SubscriberStatus,
    SuppressionReason, Transition,
};
use tower::ServiceExt;

const T0: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    Fixture { _dir: dir, store }
}

fn config() -> NewsletterConfig {
    NewsletterConfig {
        base_url: "http://news.example.com/".into(),
        bounce_domain: "example.com".into(),
        rate_per_second: 0,
        ..NewsletterConfig::default()
    }
}

fn engine(store: &Arc<SqliteStore>) -> Engine {
    Engine::new(
        store.clone(),
        store.db_path().parent().unwrap(),
        config(),
        Arc::new(tokio::sync::Notify::new()),
        gate::Clock::with_zone(jiff::tz::TimeZone::UTC),
    )
    .unwrap()
}

fn list(store: &SqliteStore, double_opt_in: bool) -> ListId {
    store
        .list_add(
            "weekly",
            "news@example.com",
            "Example News",
            double_opt_in,
            T0 - 86_400,
        )
        .unwrap()
}

fn add_subscribers(store: &SqliteStore, list: ListId, n: usize, now: i64) {
    let rows = (0..n)
        .map(|i| NewSubscriber {
            email: format!("reader{i}@d{}.example.org", i % 7),
            name: format!("Reader {i}"),
            attributes: BTreeMap::from([("city".to_string(), format!("City{i}"))]),
            status: SubscriberStatus::Active,
        })
        .collect();
    let counts = store.subscriber_import(list, rows, now).unwrap();
    assert_eq!(counts.added as usize, n);
}

fn campaign(store: &SqliteStore, list: ListId) -> store::CampaignId {
    store
        .campaign_add(NewCampaign {
            list,
            subject: "News for {{name}}".into(),
            text: "Hello {{name}} in {{attr.city}}.\nRead https://example.net/article?id=1\nLeave: {{unsubscribe_url}}\n".into(),
            html: Some("<p>Hello {{name}}</p><a href=\"https://example.net/article?id=1\">read</a> <a href=\"https://example.net/other\">other</a>".into()),
            send_at: T0,
            state: CampaignState::Scheduled,
            rate_per_second: 0,
            rate_per_domain: 0,
            created: T0 - 3600,
            also: Vec::new(),
            segment: store::Segment::default(),
        })
        .unwrap()
}

/// Queue rows per recipient address.
fn queued(store: &SqliteStore) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for m in store.queue_list().unwrap() {
        for r in m.recipients {
            *out.entry(r.address).or_default() += 1;
        }
    }
    out
}

/// Regression (issue 21.7): `--rate 0` sent at the configured rate while `campaign show`
/// said 0. The campaign's rate is what the sender uses, and 0 is no limit.
#[test]
fn a_campaign_rate_of_zero_is_no_limit() {
    let f = fixture();
    let l = list(&f.store, false);
    add_subscribers(&f.store, l, 60, T0 - 3600);
    let c = campaign(&f.store, l); // rate_per_second 0
    let e = Engine::new(
        f.store.clone(),
        f.store.db_path().parent().unwrap(),
        NewsletterConfig {
            rate_per_second: 5,
            ..config()
        },
        Arc::new(tokio::sync::Notify::new()),
        gate::Clock::with_zone(jiff::tz::TimeZone::UTC),
    )
    .unwrap();
    assert_eq!(f.store.campaign(c).unwrap().rate_per_second, 0);
    assert_eq!(
        e.campaign_batch(&f.store.campaign(c).unwrap(), T0).unwrap(),
        BatchOutcome::Sent(60)
    );
}

#[test]
fn campaign_is_queued_exactly_once_across_a_restart() {
    let f = fixture();
    let l = list(&f.store, false);
    add_subscribers(&f.store, l, 450, T0 - 3600);
    let c = campaign(&f.store, l);

    // First life: one batch, then the engine is gone (a restart).
    {
        let e = engine(&f.store);
        assert_eq!(
            e.campaign_batch(&f.store.campaign(c).unwrap(), T0).unwrap(),
            BatchOutcome::Sent(200)
        );
    }
    assert_eq!(queued(&f.store).len(), 200);

    // Second life: runs to the end.
    let e = engine(&f.store);
    let mut ticks = 0;
    while e.campaigns_tick(T0 + 1).unwrap().is_some() {
        ticks += 1;
        assert!(ticks < 20, "the campaign never finished");
    }
    assert_eq!(f.store.campaign(c).unwrap().state, CampaignState::Done);
    let q = queued(&f.store);
    assert_eq!(q.len(), 450);
    assert!(q.values().all(|&n| n == 1), "someone got two copies");
    assert_eq!(
        f.store
            .received_by(HistoryRef::Campaign(c), Outcome::Sent)
            .unwrap()
            .len(),
        450
    );
    // Nothing more on further ticks.
    assert_eq!(e.campaigns_tick(T0 + 2).unwrap(), None);
    assert_eq!(queued(&f.store).len(), 450);

    // One mail: personalised, with the list headers, sent from a VERP address.
    let m = f.store.queue_list().unwrap().into_iter().next().unwrap();
    let body = f.store.queue_body(m.id).unwrap();
    let parsed = mail_parser::MessageParser::default().parse(&body).unwrap();
    let sub = f
        .store
        .subscriber_by_email(l, &m.recipients[0].address)
        .unwrap();
    assert_eq!(parsed.subject().unwrap(), format!("News for {}", sub.name));
    let text = parsed.body_text(0).unwrap();
    assert!(
        text.contains(&format!("Hello {} in City", sub.name)),
        "{text}"
    );
    assert!(text.contains("http://news.example.com/c/"), "{text}");
    assert!(
        !text.contains("example.net"),
        "links must be rewritten: {text}"
    );
    assert!(
        parsed
            .header_raw("List-Unsubscribe")
            .unwrap()
            .contains("http://news.example.com/unsubscribe/")
    );
    assert_eq!(
        parsed.header_raw("List-Unsubscribe-Post").unwrap().trim(),
        "List-Unsubscribe=One-Click"
    );
    assert!(e.claims(&m.sender), "{}", m.sender);
    assert_eq!(
        f.store.links(HistoryRef::Campaign(c)).unwrap(),
        vec![
            "https://example.net/article?id=1".to_string(),
            "https://example.net/other".to_string()
        ]
    );
}

#[test]
fn pause_and_cancel_stop_between_batches() {
    let f = fixture();
    let l = list(&f.store, false);
    add_subscribers(&f.store, l, 450, T0 - 3600);
    let c = campaign(&f.store, l);
    let e = engine(&f.store);
    assert!(e.campaigns_tick(T0).unwrap().is_some());
    assert_eq!(queued(&f.store).len(), 200);
    assert!(matches!(
        f.store
            .campaign_apply(c, CampaignAction::Pause, T0)
            .unwrap(),
        Transition::Moved { .. }
    ));
    assert_eq!(e.campaigns_tick(T0).unwrap(), None);
    assert_eq!(queued(&f.store).len(), 200);
    assert!(matches!(
        f.store
            .campaign_apply(c, CampaignAction::Resume, T0)
            .unwrap(),
        Transition::Moved { .. }
    ));
    assert!(e.campaigns_tick(T0).unwrap().is_some());
    assert_eq!(queued(&f.store).len(), 400);
    assert!(matches!(
        f.store
            .campaign_apply(c, CampaignAction::Cancel, T0)
            .unwrap(),
        Transition::Moved { .. }
    ));
    assert_eq!(e.campaigns_tick(T0).unwrap(), None);
    assert_eq!(queued(&f.store).len(), 400);
    assert_eq!(f.store.campaign(c).unwrap().state, CampaignState::Cancelled);
}

/// Two operators (say the CLI and the JSON API) pause, resume and cancel a campaign while
/// the sender starts and finishes it. Reading the state and then writing it, as both faces
/// and the sender once did, lets a resume or a finish land after a cancel; applied as one
/// conditional write, a cancel that succeeded is final, and every subscriber gets the mail
/// at most once.
#[test]
fn campaign_actions_racing_the_sender_never_leave_a_forbidden_state() {
    for round in 0..6u64 {
        let f = fixture();
        let l = list(&f.store, false);
        add_subscribers(&f.store, l, 450, T0 - 3600);
        let c = campaign(&f.store, l);
        let e = engine(&f.store);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let operators: Vec<_> = (0..2u64)
            .map(|who| {
                let store = f.store.clone();
                std::thread::spawn(move || {
                    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ (round * 31 + who + 1);
                    let mut moved = Vec::new();
                    for _ in 0..60 {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        // Cancels are rare, so the campaign lives long enough to race.
                        let action = match seed % 20 {
                            0 => CampaignAction::Cancel,
                            1..=9 => CampaignAction::Pause,
                            _ => CampaignAction::Resume,
                        };
                        let t = store.campaign_apply(c, action, T0).unwrap();
                        if let Transition::Moved { from, to } = t {
                            assert!(
                                action.allowed_from().contains(&from),
                                "{action:?} from {from:?}"
                            );
                            assert_eq!(to, action.target());
                            moved.push(action);
                        }
                    }
                    moved
                })
            })
            .collect();
        let sender = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    e.campaigns_tick(T0).unwrap();
                }
            })
        };
        let moved: Vec<CampaignAction> = operators
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        sender.join().unwrap();
        let state = f.store.campaign(c).unwrap().state;
        if moved.contains(&CampaignAction::Cancel) {
            assert_eq!(state, CampaignState::Cancelled, "round {round}: {moved:?}");
        }
        let cancels = moved
            .iter()
            .filter(|a| **a == CampaignAction::Cancel)
            .count();
        assert!(cancels <= 1, "round {round}: cancelled {cancels} times");
        for (address, n) in queued(&f.store) {
            assert_eq!(n, 1, "round {round}: {address} queued {n} times");
        }
    }
}

#[test]
fn a_scheduled_campaign_waits_for_its_time() {
    let f = fixture();
    let l = list(&f.store, false);
    add_subscribers(&f.store, l, 3, T0 - 3600);
    let c = campaign(&f.store, l);
    let e = engine(&f.store);
    assert_eq!(e.campaigns_tick(T0 - 1).unwrap(), None);
    assert_eq!(f.store.campaign(c).unwrap().state, CampaignState::Scheduled);
    assert!(queued(&f.store).is_empty());
    e.campaigns_tick(T0).unwrap();
    e.campaigns_tick(T0).unwrap();
    assert_eq!(f.store.campaign(c).unwrap().state, CampaignState::Done);
    assert_eq!(queued(&f.store).len(), 3);
}

#[test]
fn step_mail_over_simulated_days() {
    let f = fixture();
    let l = list(&f.store, false);
    let seq = f
        .store
        .sequence_add(l, "welcome", "UTC", false, T0 - 7200)
        .unwrap();
    for (days, subject) in [(0, "one"), (1, "two"), (3, "three")] {
        f.store
            .step_add(
                seq,
                NewStep {
                    days_after: days,
                    send_minute: 9 * 60,
                    subject: format!("Step {subject} for {{{{name}}}}"),
                    text: "See https://example.net/step".into(),
                    html: None,
                    condition: None,
                    otherwise: store::Otherwise::Skip,
                },
            )
            .unwrap();
    }
    let steps: Vec<_> = f.store.sequences().unwrap()[0]
        .1
        .iter()
        .map(|s| s.id)
        .collect();
    // Two readers join at T0 (midnight UTC).
    let a = f
        .store
        .subscriber_add(
            l,
            NewSubscriber {
                email: "a@example.org".into(),
                name: "A".into(),
                attributes: BTreeMap::new(),
                status: SubscriberStatus::Active,
            },
            T0,
        )
        .unwrap();
    let b = f
        .store
        .subscriber_add(
            l,
            NewSubscriber {
                email: "b@example.org".into(),
                name: "B".into(),
                attributes: BTreeMap::new(),
                status: SubscriberStatus::Active,
            },
            T0,
        )
        .unwrap();
    let e = engine(&f.store);
    let sent = |step: usize| {
        f.store
            .received_by(HistoryRef::Step(steps[step]), Outcome::Sent)
            .unwrap()
    };
    let hour = 3600;
    let day = 86_400;
    // Day 0 before 09:00: nothing; at 09:00 step one to both.
    assert_eq!(e.send_due_steps(T0 + 8 * hour).unwrap(), 0);
    assert_eq!(e.send_due_steps(T0 + 9 * hour).unwrap(), 2);
    assert_eq!(e.send_due_steps(T0 + 9 * hour + 60).unwrap(), 0);
    assert_eq!(sent(0), vec![a, b]);
    assert!(sent(1).is_empty());
    // Day 1: step two.
    assert_eq!(e.send_due_steps(T0 + day + 9 * hour).unwrap(), 2);
    assert_eq!(sent(1), vec![a, b]);
    // B unsubscribes; day 3 brings step three to A only.
    f.store
        .subscriber_set_status(b, SubscriberStatus::Unsubscribed, None, T0 + 2 * day)
        .unwrap();
    assert_eq!(e.send_due_steps(T0 + 2 * day + 9 * hour).unwrap(), 0);
    assert_eq!(e.send_due_steps(T0 + 3 * day + 9 * hour).unwrap(), 1);
    assert_eq!(sent(2), vec![a]);
    assert_eq!(e.send_due_steps(T0 + 30 * day).unwrap(), 0);
    let q = queued(&f.store);
    assert_eq!(q["a@example.org"], 3);
    assert_eq!(q["b@example.org"], 2);
    // In order: the subjects of A's mails.
    let mut subjects: Vec<(i64, String)> = f
        .store
        .queue_list()
        .unwrap()
        .into_iter()
        .filter(|m| m.recipients[0].address == "a@example.org")
        .map(|m| {
            let body = f.store.queue_body(m.id).unwrap();
            let p = mail_parser::MessageParser::default().parse(&body).unwrap();
            (m.created, p.subject().unwrap().to_string())
        })
        .collect();
    subjects.sort();
    let subjects: Vec<String> = subjects.into_iter().map(|(_, s)| s).collect();
    assert_eq!(
        subjects,
        ["Step one for A", "Step two for A", "Step three for A"]
    );
}

fn dsn(to: &str, action: &str, status: &str) -> Vec<u8> {
    format!(
        "From: MAILER-DAEMON@mx.example.org\r\nTo: <{to}>\r\nSubject: Undelivered Mail\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nIt failed.\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\nFinal-Recipient: rfc822; x@example.org\r\nAction: {action}\r\nStatus: {status}\r\nDiagnostic-Code: smtp; 550 {status} no such user\r\n--b--\r\n"
    )
    .into_bytes()
}

#[test]
fn a_dsn_to_a_verp_address_marks_the_subscriber() {
    let f = fixture();
    let l = list(&f.store, false);
    add_subscribers(&f.store, l, 5, T0 - 3600);
    let c = campaign(&f.store, l);
    let e = engine(&f.store);
    e.campaigns_tick(T0).unwrap();
    let messages = f.store.queue_list().unwrap();
    let (soft, hard) = (&messages[0], &messages[1]);
    let sub = |m: &store::QueuedMessage| {
        f.store
            .subscriber_by_email(l, &m.recipients[0].address)
            .unwrap()
    };
    let sink = e.bounce_sink();
    assert!(sink.claims(&soft.sender));
    // The bare bounce address is the feedback-loop address (ARF reports), not a VERP one.
    assert!(sink.claims("bounces@example.com"));
    assert!(!sink.claims("other@example.com"));
    assert!(!sink.claims(&soft.sender.replace("@example.com", "@example.org")));
    let forged = {
        let s = sub(soft).id.0;
        soft.sender
            .replace(&format!("-{s}-"), &format!("-{}-", s + 1))
    };
    assert!(!sink.claims(&forged));

    sink.accept(&soft.sender, &dsn(&soft.sender, "delayed", "4.2.2"))
        .unwrap();
    let s = sub(soft);
    assert_eq!(
        (s.status, s.soft_bounces, s.hard_bounces),
        (SubscriberStatus::Active, 1, 0)
    );

    sink.accept(&hard.sender, &dsn(&hard.sender, "failed", "5.1.1"))
        .unwrap();
    let h = sub(hard);
    assert_eq!((h.status, h.hard_bounces), (SubscriberStatus::Bounced, 1));
    assert_eq!(
        f.store
            .received_by(HistoryRef::Campaign(c), Outcome::HardBounce)
            .unwrap(),
        vec![h.id]
    );
    // An autoreply at a VERP address is taken (250) but counts for nothing.
    sink.accept(
        &soft.sender,
        b"From: x@example.org\r\nSubject: Out of office\r\n\r\nAway until Monday.\r\n",
    )
    .unwrap();
    assert_eq!(sub(soft).soft_bounces, 1);
}

/// What the outbound queue does when a campaign mail fails: the settlement with the DSN it
/// would queue to the envelope sender. Regression: a 550 at RCPT (or a give-up) made a DSN
/// to the VERP address that local delivery refused as an unknown user, so the subscriber
/// stayed active with 0 bounces.
#[test]
fn failures_learned_by_the_queue_bounce_once_without_a_notice() {
    use store::{Notice, Outbound, Settlement};
    let f = fixture();
    let l = list(&f.store, false);
    add_subscribers(&f.store, l, 4, T0 - 3600);
    let c = campaign(&f.store, l);
    let about = HistoryRef::Campaign(c);
    let e = engine(&f.store);
    e.campaigns_tick(T0).unwrap();
    let messages = f.store.queue_list().unwrap();
    assert_eq!(messages.len(), 4);
    let sub = |m: &store::QueuedMessage| {
        f.store
            .subscriber_by_email(l, &m.recipients[0].address)
            .unwrap()
    };
    let notice = |m: &store::QueuedMessage| Notice {
        envelope: Outbound {
            sender: String::new(),
            recipients: vec![m.sender.clone()],
            account: None,
        },
        message: dsn(&m.sender, "failed", "5.1.1"),
    };
    let (refused, delayed, delivered, forwarded) =
        (&messages[0], &messages[1], &messages[2], &messages[3]);
    let failed = [Settlement::Failed {
        recipient: refused.recipients[0].id,
        error: "550 5.1.1 no such user".into(),
    }];
    f.store
        .queue_settle(refused.id, &failed, &[notice(refused)])
        .unwrap();
    let r = sub(refused);
    assert_eq!((r.status, r.hard_bounces), (SubscriberStatus::Bounced, 1));
    // The same settlement again (a confused caller, a replay) counts nothing twice.
    f.store
        .queue_settle(refused.id, &failed, &[notice(refused)])
        .unwrap();
    assert_eq!(sub(refused).hard_bounces, 1);
    assert_eq!(f.store.count(about, Outcome::HardBounce).unwrap(), 1);
    assert_eq!(f.store.count(about, Outcome::Failed).unwrap(), 1);

    // A deferral is counted as deferred; the one that would send a delay notice is a soft
    // bounce, and that notice is not queued either.
    let deferred = |notified| Settlement::Deferred {
        recipient: delayed.recipients[0].id,
        next_attempt: T0 + 600,
        reason: "4xx".into(),
        error: "451 4.2.2 mailbox full".into(),
        delay_notified: notified,
    };
    f.store
        .queue_settle(delayed.id, &[deferred(false)], &[])
        .unwrap();
    assert_eq!(sub(delayed).soft_bounces, 0);
    f.store
        .queue_settle(delayed.id, &[deferred(true)], &[notice(delayed)])
        .unwrap();
    let d = sub(delayed);
    assert_eq!(
        (d.status, d.soft_bounces, d.hard_bounces),
        (SubscriberStatus::Active, 1, 0)
    );
    assert_eq!(f.store.count(about, Outcome::Deferred).unwrap(), 1);

    f.store
        .queue_settle(
            delivered.id,
            &[Settlement::Delivered {
                recipient: delivered.recipients[0].id,
            }],
            &[],
        )
        .unwrap();
    assert_eq!(f.store.count(about, Outcome::Delivered).unwrap(), 1);

    // Mail whose sender is not one of our VERP addresses keeps its notice and touches no
    // history: a forwarded message that fails goes back to whoever sent it.
    let other = Outbound {
        sender: "someone@elsewhere.example".into(),
        recipients: vec!["gone@remote.example".into()],
        account: None,
    };
    let accepted = f
        .store
        .accept(b"Subject: hi\r\n\r\nhi\r\n", &[], Some(&other))
        .unwrap();
    let id = accepted.queued.unwrap();
    let rid = f.store.queue_get(id).unwrap().recipients[0].id;
    let before = f.store.queue_list().unwrap().len();
    f.store
        .queue_settle(
            id,
            &[Settlement::Failed {
                recipient: rid,
                error: "550 5.1.1".into(),
            }],
            &[Notice {
                envelope: Outbound {
                    sender: String::new(),
                    recipients: vec![other.sender.clone()],
                    account: None,
                },
                message: b"Subject: bounce\r\n\r\nx\r\n".to_vec(),
            }],
        )
        .unwrap();
    // The failed message left, its notice came in: the queue holds as many as before.
    let after = f.store.queue_list().unwrap();
    assert_eq!(after.len(), before);
    assert!(
        after
            .iter()
            .any(|m| m.recipients[0].address == "someone@elsewhere.example")
    );
    // Only the refused subscriber bounced.
    assert_eq!(sub(forwarded).status, SubscriberStatus::Active);
    assert_eq!(f.store.count(about, Outcome::HardBounce).unwrap(), 1);
}

/// Regression (issue 21.5): a kill -9 between the remote's 250 and the settlement sent a
/// campaign mail twice. The queue records the attempt first; after the restart an attempt
/// without an outcome counts as sent, once, and only for campaign and step mail.
#[test]
fn an_unfinished_campaign_attempt_counts_as_sent_after_a_restart() {
    use store::{Outbound, Settlement};
    let f = fixture();
    let l = list(&f.store, false);
    add_subscribers(&f.store, l, 3, T0 - 3600);
    let c = campaign(&f.store, l);
    let e = engine(&f.store);
    e.campaigns_tick(T0).unwrap();
    let other = Outbound {
        sender: "someone@example.com".into(),
        recipients: vec!["friend@remote.example".into()],
        account: None,
    };
    f.store
        .accept(b"Subject: hi\r\n\r\nhi\r\n", &[], Some(&other))
        .unwrap();
    let messages = f.store.queue_list().unwrap();
    assert_eq!(messages.len(), 4);
    let (campaign_mail, plain): (Vec<_>, Vec<_>) = messages
        .into_iter()
        .partition(|m| m.recipients[0].at_most_once);
    assert_eq!((campaign_mail.len(), plain.len()), (3, 1));
    // Every transaction begins; one campaign mail settles normally (deferred), the other
    // two and the plain message are cut off by the "crash".
    for m in campaign_mail.iter().chain(&plain) {
        let ids: Vec<_> = m.recipients.iter().map(|r| r.id).collect();
        f.store.queue_begin(m.id, &ids, T0).unwrap();
    }
    let deferred = &campaign_mail[0];
    f.store
        .queue_settle(
            deferred.id,
            &[Settlement::Deferred {
                recipient: deferred.recipients[0].id,
                next_attempt: T0 + 600,
                reason: "4xx".into(),
                error: "451 later".into(),
                delay_notified: false,
            }],
            &[],
        )
        .unwrap();
    drop(e);

    let e = engine(&f.store);
    assert_eq!(f.store.queue_unfinished(T0 + 5).unwrap(), 2);
    // Only the deferred campaign mail and the plain message are still queued.
    let left: Vec<_> = f
        .store
        .queue_list()
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(left, [deferred.id, plain[0].id]);
    assert_eq!(
        f.store
            .count(HistoryRef::Campaign(c), Outcome::Delivered)
            .unwrap(),
        2
    );
    // A second restart finds nothing more to settle.
    assert_eq!(f.store.queue_unfinished(T0 + 10).unwrap(), 0);
    drop(e);
}

async fn call(
    router: &axum::Router,
    method: &str,
    uri: &str,
    body: &str,
) -> (StatusCode, String, String) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let location = response
        .headers()
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        location,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

/// The tracking URL of link `n` in the text part of a queued mail.
fn links_in(body: &[u8]) -> Vec<String> {
    let p = mail_parser::MessageParser::default().parse(body).unwrap();
    let text = p.body_text(0).unwrap().into_owned();
    text.split_whitespace()
        .filter(|w| w.starts_with("http://news.example.com/"))
        .map(|w| w.trim_start_matches("http://news.example.com").to_string())
        .collect()
}

#[tokio::test]
async fn clicks_redirect_and_forged_tokens_are_refused() {
    let f = fixture();
    let l = list(&f.store, false);
    add_subscribers(&f.store, l, 2, T0 - 3600);
    let c = campaign(&f.store, l);
    let e = engine(&f.store);
    e.campaigns_tick(T0).unwrap();
    let m = &f.store.queue_list().unwrap()[0];
    let s = f
        .store
        .subscriber_by_email(l, &m.recipients[0].address)
        .unwrap();
    let urls = links_in(&f.store.queue_body(m.id).unwrap());
    let click = urls.iter().find(|u| u.starts_with("/c/")).unwrap().clone();
    let unsubscribe = urls
        .iter()
        .find(|u| u.starts_with("/unsubscribe/"))
        .unwrap()
        .clone();
    let router = e.router();

    let (status, location, _) = call(&router, "GET", &click, "").await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(location, "https://example.net/article?id=1");
    assert_eq!(
        f.store
            .received_by(HistoryRef::Campaign(c), Outcome::Click)
            .unwrap(),
        vec![s.id]
    );
    // Altered tokens, a token for a link that was not in the mail, other purposes.
    let mut altered = click.clone();
    let last = altered.pop().unwrap();
    altered.push(if last == 'A' { 'B' } else { 'A' });
    let not_in_mail = format!(
        "/c/{}",
        e.keys().sign(&newsletter::Token::Click {
            origin: newsletter::Origin::Campaign(c.0),
            subscriber: s.id.0,
            link: 7,
        })
    );
    let wrong_purpose = unsubscribe.replace("/unsubscribe/", "/c/");
    for bad in [
        altered.as_str(),
        not_in_mail.as_str(),
        wrong_purpose.as_str(),
        "/c/xyz",
    ] {
        let (status, location, _) = call(&router, "GET", bad, "").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{bad}");
        assert!(location.is_empty());
    }

    // Unsubscribe: the page does not unsubscribe, the one-click POST does.
    let (status, _, page) = call(&router, "GET", &unsubscribe, "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("method=\"post\""));
    assert_eq!(
        f.store.subscriber(s.id).unwrap().status,
        SubscriberStatus::Active
    );
    let (status, _, _) = call(&router, "POST", &unsubscribe, "List-Unsubscribe=One-Click").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        f.store.subscriber(s.id).unwrap().status,
        SubscriberStatus::Unsubscribed
    );
    assert_eq!(
        f.store
            .received_by(HistoryRef::Campaign(c), Outcome::Unsubscribe)
            .unwrap(),
        vec![s.id]
    );
    let (status, _, _) = call(
        &router,
        "POST",
        &altered.replace("/c/", "/unsubscribe/"),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // JSON.
    let (status, _, body) = call(&router, "GET", &format!("/api/campaigns/{}", c.0), "").await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["totals"]["sent"], 2);
    assert_eq!(v["totals"]["click"], 1);
    assert_eq!(v["state"], "sending");
    let (status, _, body) = call(&router, "GET", "/api/lists/weekly/subscribers?limit=1", "").await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["subscribers"].as_array().unwrap().len(), 1);
    assert!(v["next_after"].is_i64());
    for path in ["/api/lists", "/api/campaigns", "/api/sequences"] {
        let (status, _, body) = call(&router, "GET", path, "").await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(
            serde_json::from_str::<serde_json::Value>(&body)
                .unwrap()
                .is_array()
        );
    }
    let (status, _, _) = call(&router, "GET", "/api/campaigns/999", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

fn engine_with(store: &Arc<SqliteStore>, config: NewsletterConfig) -> Engine {
    Engine::new(
        store.clone(),
        store.db_path().parent().unwrap(),
        config,
        Arc::new(tokio::sync::Notify::new()),
        gate::Clock::with_zone(jiff::tz::TimeZone::UTC),
    )
    .unwrap()
}

/// The text and HTML parts of every queued mail.
fn parts(store: &SqliteStore) -> Vec<(String, Option<String>)> {
    store
        .queue_list()
        .unwrap()
        .iter()
        .map(|m| {
            let body = store.queue_body(m.id).unwrap();
            let p = mail_parser::MessageParser::default().parse(&body).unwrap();
            let text = p.body_text(0).unwrap().into_owned();
            // mail_parser makes an HTML body from a text-only mail: look for a real part.
            let has_html = body
                .windows(9)
                .any(|w| w.eq_ignore_ascii_case(b"text/html"));
            let html = has_html.then(|| p.body_html(0).unwrap().into_owned());
            (text, html)
        })
        .collect()
}

#[test]
fn open_pixel_only_with_track_opens_and_only_in_html() {
    // Off (the default): no pixel anywhere.
    let f = fixture();
    let l = list(&f.store, false);
    add_subscribers(&f.store, l, 3, T0 - 3600);
    campaign(&f.store, l);
    assert!(!config().track_opens);
    engine(&f.store).campaigns_tick(T0).unwrap();
    let mails = parts(&f.store);
    assert_eq!(mails.len(), 3);
    for (text, html) in &mails {
        assert!(!text.contains("/o/"), "{text}");
        let html = html.as_ref().unwrap();
        assert!(!html.contains("/o/") && !html.contains("<img"), "{html}");
    }

    // On: one pixel per HTML part, at its end (no </body> in this template), none in text.
    let f = fixture();
    let l = list(&f.store, false);
    add_subscribers(&f.store, l, 3, T0 - 3600);
    let c = campaign(&f.store, l);
    let e = engine_with(
        &f.store,
        NewsletterConfig {
            track_opens: true,
            ..config()
        },
    );
    e.campaigns_tick(T0).unwrap();
    let mails = parts(&f.store);
    assert_eq!(mails.len(), 3);
    let mut pixels = Vec::new();
    for (text, html) in &mails {
        assert!(!text.contains("/o/"), "{text}");
        let html = html.as_ref().unwrap();
        assert_eq!(html.matches("<img").count(), 1, "{html}");
        let start = html.find("<img src=\"http://news.example.com/o/").unwrap();
        let tail = &html[start..];
        assert!(tail.ends_with("\" width=\"1\" height=\"1\" alt=\"\" style=\"display:none\">"));
        let token = tail["<img src=\"http://news.example.com/o/".len()..]
            .split('"')
            .next()
            .unwrap();
        assert!(matches!(
            e.keys().verify(token),
            Some(newsletter::Token::Open { origin: newsletter::Origin::Campaign(id), .. }) if id == c.0
        ));
        pixels.push(token.to_string());
    }
    // Each subscriber has a pixel of its own.
    pixels.sort();
    pixels.dedup();
    assert_eq!(pixels.len(), 3);

    // A text-only campaign gets none even with tracking on.
    let f = fixture();
    let l = list(&f.store, false);
    add_subscribers(&f.store, l, 1, T0 - 3600);
    f.store
        .campaign_add(NewCampaign {
            list: l,
            subject: "Plain".into(),
            text: "Hello {{name}}\n".into(),
            html: None,
            send_at: T0,
            state: CampaignState::Scheduled,
            rate_per_second: 0,
            rate_per_domain: 0,
            created: T0 - 3600,
            also: Vec::new(),
            segment: store::Segment::default(),
        })
        .unwrap();
    engine_with(
        &f.store,
        NewsletterConfig {
            track_opens: true,
            ..config()
        },
    )
    .campaigns_tick(T0)
    .unwrap();
    let mails = parts(&f.store);
    assert_eq!(mails.len(), 1);
    assert!(mails[0].1.is_none());
    assert!(!mails[0].0.contains("/o/"));
}

#[tokio::test]
async fn opens_are_recorded_and_answered_with_a_gif() {
    let f = fixture();
    let l = list(&f.store, false);
    add_subscribers(&f.store, l, 2, T0 - 3600);
    let c = campaign(&f.store, l);
    let e = engine_with(
        &f.store,
        NewsletterConfig {
            track_opens: true,
            ..config()
        },
    );
    e.campaigns_tick(T0).unwrap();
    let m = &f.store.queue_list().unwrap()[0];
    let s = f
        .store
        .subscriber_by_email(l, &m.recipients[0].address)
        .unwrap();
    let body = f.store.queue_body(m.id).unwrap();
    let p = mail_parser::MessageParser::default().parse(&body).unwrap();
    let html = p.body_html(0).unwrap().into_owned();
    let prefix = "<img src=\"http://news.example.com";
    let start = html.find(prefix).unwrap() + prefix.len();
    let path = html[start..].split('"').next().unwrap().to_string();
    assert!(path.starts_with("/o/"), "{path}");
    let router = e.router();

    let get = |uri: String| {
        let router = router.clone();
        async move {
            let response = router
                .oneshot(Request::builder().uri(uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            let status = response.status();
            let headers = response.headers().clone();
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap();
            (status, headers, bytes)
        }
    };

    // Opened twice: one member of the set, two in the day's total.
    for _ in 0..2 {
        let (status, headers, bytes) = get(path.clone()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "image/gif");
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        assert!(bytes.starts_with(b"GIF89a"), "{bytes:?}");
        assert_eq!(&bytes[6..10], &[1, 0, 1, 0]);
    }
    let about = HistoryRef::Campaign(c);
    assert_eq!(
        f.store.received_by(about, Outcome::Open).unwrap(),
        vec![s.id]
    );
    let opens: u64 = f
        .store
        .daily_totals(0)
        .unwrap()
        .iter()
        .filter(|t| t.outcome == Outcome::Open && t.about == about)
        .map(|t| t.count)
        .sum();
    assert_eq!(opens, 2);
    // An open is not a click.
    assert!(
        f.store
            .received_by(about, Outcome::Click)
            .unwrap()
            .is_empty()
    );

    // Forged, altered, other purposes, other keys: 404 and nothing recorded.
    let mut altered = path.clone();
    let last = altered.pop().unwrap();
    altered.push(if last == 'A' { 'B' } else { 'A' });
    let other_keys = newsletter::Keys::from_secret(b"another key, another key, another");
    let foreign = format!(
        "/o/{}",
        other_keys.sign(&newsletter::Token::Open {
            origin: newsletter::Origin::Campaign(c.0),
            subscriber: s.id.0,
        })
    );
    let confirm = format!(
        "/o/{}",
        e.keys()
            .sign(&newsletter::Token::Confirm { subscriber: s.id.0 })
    );
    let click = format!(
        "/o/{}",
        e.keys().sign(&newsletter::Token::Click {
            origin: newsletter::Origin::Campaign(c.0),
            subscriber: s.id.0,
            link: 0,
        })
    );
    let other = f
        .store
        .subscriber_by_email(l, &f.store.queue_list().unwrap()[1].recipients[0].address)
        .unwrap();
    assert_ne!(other.id, s.id);
    for bad in [altered, foreign, confirm, click, "/o/xyz".to_string()] {
        let (status, headers, _) = get(bad.clone()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{bad}");
        assert_ne!(
            headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes()),
            Some(&b"image/gif"[..])
        );
    }
    assert_eq!(
        f.store.received_by(about, Outcome::Open).unwrap(),
        vec![s.id]
    );
    let events = f.store.events(Some(about), 0, 100).unwrap();
    assert_eq!(events.iter().filter(|e| e.event == "open").count(), 2);

    // The campaign's JSON totals count opens too.
    let (status, _, body) = call(&router, "GET", &format!("/api/campaigns/{}", c.0), "").await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["totals"]["open"], 1);
}

#[tokio::test]
async fn double_opt_in_subscription() {
    let f = fixture();
    list(&f.store, true);
    let e = engine(&f.store);
    let router = e.router();
    let (status, _, _) = call(
        &router,
        "POST",
        "/subscribe",
        "list=weekly&email=New.Reader%40Example.ORG&name=New+Reader",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let l = f.store.list("weekly").unwrap();
    let s = f
        .store
        .subscriber_by_email(l.id, "new.reader@example.org")
        .unwrap();
    assert_eq!(s.status, SubscriberStatus::Unconfirmed);
    assert_eq!(s.name, "New Reader");
    // The confirmation mail is in the queue; its link confirms.
    let m = &f.store.queue_list().unwrap()[0];
    assert_eq!(m.sender, "news@example.com");
    let urls = links_in(&f.store.queue_body(m.id).unwrap());
    let confirm = urls.iter().find(|u| u.starts_with("/confirm/")).unwrap();
    // A GET (a link scanner opening every URL of the mail) shows a button and confirms
    // nothing (issue 21.4); the button's POST confirms.
    let (status, _, page) = call(&router, "GET", confirm, "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("method=\"post\"")
            && page.contains(&format!("action=\"http://news.example.com{confirm}\"")),
        "{page}"
    );
    assert_eq!(
        f.store.subscriber(s.id).unwrap().status,
        SubscriberStatus::Unconfirmed
    );
    let (status, _, _) = call(&router, "POST", confirm, "").await;
    assert_eq!(status, StatusCode::OK);
    let s = f.store.subscriber(s.id).unwrap();
    assert_eq!(s.status, SubscriberStatus::Active);
    assert!(s.confirmed.is_some());
    for method in ["GET", "POST"] {
        let (status, _, _) = call(&router, method, &format!("{confirm}x"), "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    let (status, _, _) = call(
        &router,
        "POST",
        "/subscribe",
        "list=nope&email=a%40b.example",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = call(
        &router,
        "POST",
        "/subscribe",
        "list=weekly&email=not-an-address",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[test]
fn old_events_are_pruned_and_daily_totals_stay() {
    let f = fixture();
    let l = list(&f.store, false);
    add_subscribers(&f.store, l, 3, T0 - 3600);
    let c = campaign(&f.store, l);
    let about = HistoryRef::Campaign(c);
    let old = T0 - 100 * 86_400;
    for i in 0..2500 {
        f.store
            .record(
                about,
                SubscriberId(1 + i % 3),
                Outcome::Click,
                Some("https://x"),
                old,
            )
            .unwrap();
    }
    f.store
        .record(
            about,
            SubscriberId(1),
            Outcome::Click,
            Some("https://x"),
            T0,
        )
        .unwrap();
    let e = engine(&f.store);
    assert_eq!(e.prune_all(T0).unwrap(), 2500);
    assert_eq!(e.prune_all(T0).unwrap(), 0);
    assert_eq!(f.store.events(None, 0, 10_000).unwrap().len(), 1);
    let totals = f.store.daily_totals(0).unwrap();
    let clicks: u64 = totals
        .iter()
        .filter(|t| t.outcome == Outcome::Click)
        .map(|t| t.count)
        .sum();
    assert_eq!(clicks, 2501);
    // Clicks per link outlive the raw events: three readers, every click.
    assert_eq!(
        f.store.click_tally(about).unwrap(),
        vec![("https://x".to_string(), 3, 2501)]
    );
    let _ = (
        store::Queue::queue_stats(f.store.as_ref()).unwrap(),
        e.config().keep_days,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_sends_a_due_campaign_and_stops_on_shutdown() {
    let f = fixture();
    let l = list(&f.store, false);
    add_subscribers(&f.store, l, 250, T0 - 3600);
    // Due now by the real clock the engine runs on.
    let now = jiff::Timestamp::now().as_second();
    let c = f
        .store
        .campaign_add(NewCampaign {
            list: l,
            subject: "s".into(),
            text: "t".into(),
            html: None,
            send_at: now - 1,
            state: CampaignState::Scheduled,
            rate_per_second: 0,
            rate_per_domain: 0,
            created: now - 10,
            also: Vec::new(),
            segment: store::Segment::default(),
        })
        .unwrap();
    let waker = Arc::new(tokio::sync::Notify::new());
    let e = Engine::new(
        f.store.clone(),
        f.store.db_path().parent().unwrap(),
        NewsletterConfig {
            poll: std::time::Duration::from_millis(50),
            ..config()
        },
        waker.clone(),
        gate::Clock::with_zone(jiff::tz::TimeZone::UTC),
    )
    .unwrap();
    let trigger = net::ShutdownTrigger::new();
    let task = tokio::spawn(e.run(trigger.subscribe()));
    // The queue is woken once something is queued.
    // Deadlines for a loaded machine: 250 durable queue writes share the disk with the
    // other tests.
    tokio::time::timeout(std::time::Duration::from_secs(60), waker.notified())
        .await
        .expect("the queue was never woken");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while f.store.campaign(c).unwrap().state != CampaignState::Done {
        assert!(std::time::Instant::now() < deadline, "campaign not done");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(queued(&f.store).len(), 250);
    tokio::time::timeout(std::time::Duration::from_secs(60), trigger.shutdown())
        .await
        .expect("the engine did not stop");
    task.await.unwrap();
}

/// Runs a campaign to its end as the sender would; returns its state then.
fn send_all(e: &Engine, store: &SqliteStore, c: store::CampaignId) -> CampaignState {
    for _ in 0..100 {
        if e.campaigns_tick(T0).unwrap().is_none() {
            break;
        }
    }
    store.campaign(c).unwrap().state
}

#[test]
fn a_suppressed_address_gets_no_campaign_mail() {
    let f = fixture();
    let l = list(&f.store, false);
    add_subscribers(&f.store, l, 450, T0 - 3600);
    // Two addresses suppressed, one in other case than its subscriber's.
    f.store
        .suppress(
            "READER2@D2.example.org",
            SuppressionReason::Manual,
            None,
            T0,
        )
        .unwrap();
    f.store
        .suppress(
            "reader300@d6.example.org",
            SuppressionReason::Bounced,
            None,
            T0,
        )
        .unwrap();
    let c = campaign(&f.store, l);
    let e = engine(&f.store);
    assert_eq!(send_all(&e, &f.store, c), CampaignState::Done);
    let got = queued(&f.store);
    assert_eq!(got.len(), 448);
    assert!(!got.contains_key("reader2@d2.example.org"));
    assert!(!got.contains_key("reader300@d6.example.org"));
    assert!(got.values().all(|&n| n == 1));
    // The counts tell what happened: 448 queued, 2 suppressed, none forgotten.
    let about = HistoryRef::Campaign(c);
    assert_eq!(f.store.count(about, Outcome::Sent).unwrap(), 448);
    assert_eq!(f.store.count(about, Outcome::Suppressed).unwrap(), 2);
}

/// A feedback-loop report about `original` (a message as the reader's provider stored it),
/// sent to `to`; `fields` are the report's own lines after Feedback-Type.
fn arf(to: &str, fields: &str, original_type: &str, original: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "From: <fbl@isp.example.net>\r\nTo: <{to}>\r\nSubject: FW: complaint\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report;\r\n\tboundary=\"arf\"\r\n\r\n--arf\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n\r\n--arf\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: ISP-FBL/2.1\r\nVersion: 1\r\n{fields}\r\n--arf\r\nContent-Type: {original_type}\r\n\r\n"
    )
    .into_bytes();
    out.extend_from_slice(original);
    out.extend_from_slice(b"\r\n--arf--\r\n");
    out
}

#[test]
fn an_arf_report_suppresses_its_address_and_the_next_campaign_skips_it() {
    let f = fixture();
    let l = list(&f.store, false);
    add_subscribers(&f.store, l, 5, T0 - 3600);
    let first = campaign(&f.store, l);
    let e = engine(&f.store);
    assert_eq!(send_all(&e, &f.store, first), CampaignState::Done);
    let sink = e.bounce_sink();
    let mail_to = |address: &str| {
        let m = f
            .store
            .queue_list()
            .unwrap()
            .into_iter()
            .find(|m| m.recipients[0].address == address)
            .unwrap();
        let body = f.store.queue_body(m.id).unwrap();
        (m.sender, body)
    };

    // A whole report at the feedback-loop address: the original's Return-Path is the VERP
    // address the receiver recorded.
    let (verp, body) = mail_to("reader0@d0.example.org");
    let mut original = format!("Return-Path: <{verp}>\r\n").into_bytes();
    original.extend_from_slice(&body);
    let report = arf(
        "bounces@example.com",
        &format!("Original-Mail-From: <{verp}>\r\nOriginal-Rcpt-To: <reader0@d0.example.org>\r\n"),
        "message/rfc822",
        &original,
    );
    sink.accept("bounces@example.com", &report).unwrap();

    // A redacted one, only the header of the original and no envelope: its List-Unsubscribe
    // token still names the reader. It came to the VERP address of another reader's mail,
    // which the report's own contents overrule.
    let (_, body) = mail_to("reader1@d1.example.org");
    let (other_verp, _) = mail_to("reader4@d4.example.org");
    let head_end = body.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let report = arf(&other_verp, "", "text/rfc822-headers", &body[..head_end]);
    sink.accept(&other_verp, &report).unwrap();

    // A report that names an address only in clear could be anyone's forgery: logged only.
    let forged = arf(
        "bounces@example.com",
        "Original-Rcpt-To: <reader3@d3.example.org>\r\n",
        "text/rfc822-headers",
        b"From: news@example.com\r\nTo: reader3@d3.example.org\r\nSubject: x\r\n\r\n",
    );
    sink.accept("bounces@example.com", &forged).unwrap();
    // Other mail at the feedback-loop address is taken and noted, not a bounce.
    sink.accept(
        "bounces@example.com",
        b"From: someone@example.net\r\nSubject: hello\r\n\r\nhi\r\n",
    )
    .unwrap();

    let about = HistoryRef::Campaign(first);
    let sub = |email: &str| f.store.subscriber_by_email(l, email).unwrap();
    let mut complained = f.store.received_by(about, Outcome::Complaint).unwrap();
    complained.sort();
    assert_eq!(
        complained,
        vec![
            sub("reader0@d0.example.org").id,
            sub("reader1@d1.example.org").id
        ]
    );
    for email in ["reader0@d0.example.org", "reader1@d1.example.org"] {
        let s = f.store.suppression(email).unwrap().unwrap();
        assert_eq!(s.reason, SuppressionReason::Complained, "{email}");
    }
    assert_eq!(f.store.suppression_count().unwrap(), 2);
    assert_eq!(
        sub("reader3@d3.example.org").status,
        SubscriberStatus::Active
    );
    assert_eq!(sub("reader4@d4.example.org").hard_bounces, 0);

    // The next campaign goes to the three others only.
    let before = f.store.queue_list().unwrap().len();
    let second = campaign(&f.store, l);
    assert_eq!(send_all(&e, &f.store, second), CampaignState::Done);
    let mut got: Vec<String> = f.store.queue_list().unwrap()[before..]
        .iter()
        .map(|m| m.recipients[0].address.clone())
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            "reader2@d2.example.org",
            "reader3@d3.example.org",
            "reader4@d4.example.org"
        ]
    );
    assert_eq!(
        f.store
            .count(HistoryRef::Campaign(second), Outcome::Suppressed)
            .unwrap(),
        2
    );
}

/// A sequence on list `l` made two hours before T0 with one step, due at once.
fn welcome_step(store: &SqliteStore, l: ListId) -> StepId {
    let seq = store
        .sequence_add(l, "welcome", "UTC", false, T0 - 7200)
        .unwrap();
    store
        .step_add(
            seq,
            NewStep {
                days_after: 0,
                send_minute: 0,
                subject: "Welcome {{name}}".into(),
                text: "Hello".into(),
                html: None,
                condition: None,
                otherwise: store::Otherwise::Skip,
            },
        )
        .unwrap()
}

/// More suppressed readers due for a step than one page holds: one pass of the scheduler
/// still reaches every other reader (a page that queued nothing used to end the pass).
#[test]
fn a_page_of_suppressed_readers_does_not_hold_step_mail_back() {
    let f = fixture();
    let l = list(&f.store, false);
    let step = welcome_step(&f.store, l);
    add_subscribers(&f.store, l, 450, T0);
    // The first 250 (in id order, the order steps are offered in) are suppressed.
    let first: Vec<store::Suppression> = f
        .store
        .subscribers(l, None, 250)
        .unwrap()
        .into_iter()
        .map(|s| store::Suppression {
            address: s.email,
            reason: SuppressionReason::Manual,
            at: T0,
            note: None,
        })
        .collect();
    assert_eq!(f.store.suppress_many(first).unwrap().added, 250);
    let e = engine(&f.store);
    assert_eq!(e.send_due_steps(T0 + 60).unwrap(), 200);
    let about = HistoryRef::Step(step);
    assert_eq!(f.store.count(about, Outcome::Sent).unwrap(), 200);
    assert_eq!(f.store.count(about, Outcome::Suppressed).unwrap(), 250);
    assert_eq!(queued(&f.store).len(), 200);
    assert_eq!(e.send_due_steps(T0 + 120).unwrap(), 0);
}

/// A preview renders what the sender sends to the same subscriber, with the original links
/// and an unsubscribe link that does nothing; a missing value takes the template's default.
#[test]
fn a_preview_renders_a_chosen_subscriber_as_the_sender_does() {
    let f = fixture();
    let l = list(&f.store, false);
    add_subscribers(&f.store, l, 5, T0 - 3600);
    let c = campaign(&f.store, l);
    let who = "reader3@d3.example.org";
    let preview = admin::campaign_preview(
        f.store.as_ref(),
        &config(),
        c,
        Some("READER3@d3.example.org"),
        admin::SAMPLE_ADDRESS,
    )
    .unwrap();
    assert_eq!(preview.subscriber.as_deref(), Some(who));
    assert_eq!(preview.rendered.subject, "News for Reader 3");
    assert_eq!(
        preview.rendered.text,
        "Hello Reader 3 in City3.\nRead https://example.net/article?id=1\nLeave: http://news.example.com/unsubscribe/test\n"
    );
    assert!(
        preview
            .rendered
            .html
            .as_deref()
            .unwrap()
            .contains(r#"<a href="https://example.net/other">"#)
    );

    // The mail the sender queues for the same reader says the same, links apart.
    let e = engine(&f.store);
    assert_eq!(send_all(&e, &f.store, c), CampaignState::Done);
    let m = f
        .store
        .queue_list()
        .unwrap()
        .into_iter()
        .find(|m| m.recipients[0].address == who)
        .unwrap();
    let body = f.store.queue_body(m.id).unwrap();
    let parsed = mail_parser::MessageParser::default().parse(&body).unwrap();
    assert_eq!(parsed.subject().unwrap(), preview.rendered.subject);
    let sent = parsed.body_text(0).unwrap();
    assert_eq!(
        sent.lines().next(),
        preview.rendered.text.lines().next(),
        "{sent}"
    );

    // Without a subscriber: a sample reader, whose missing name takes the default.
    let d = f
        .store
        .campaign_add(NewCampaign {
            subject: "Hi {{name|there}}".into(),
            text: "{{attr.city|your town}} {{email}}".into(),
            html: None,
            list: l,
            send_at: T0,
            state: CampaignState::Draft,
            rate_per_second: 0,
            rate_per_domain: 0,
            created: T0,
            also: Vec::new(),
            segment: store::Segment::default(),
        })
        .unwrap();
    let sample =
        admin::campaign_preview(f.store.as_ref(), &config(), d, None, admin::SAMPLE_ADDRESS)
            .unwrap();
    assert_eq!(sample.subscriber, None);
    assert_eq!(sample.rendered.subject, "Hi there");
    assert_eq!(sample.rendered.text, "your town reader@example.com");
    assert!(sample.rendered.html.is_none());

    // Someone not on the list is not found.
    let err = admin::campaign_preview(
        f.store.as_ref(),
        &config(),
        c,
        Some("stranger@example.org"),
        admin::SAMPLE_ADDRESS,
    )
    .unwrap_err();
    assert!(
        matches!(err, admin::AdminError::Store(StoreError::NotFound { .. })),
        "{err}"
    );
}

/// A test mail goes through the queue to the address asked for, "[TEST] " before its
/// subject, from the list's own address; it counts in nothing of the campaign's, and its
/// reader still gets the real mail.
#[test]
fn a_test_mail_is_queued_outside_the_campaign() {
    let f = fixture();
    let l = list(&f.store, false);
    add_subscribers(&f.store, l, 5, T0 - 3600);
    let c = campaign(&f.store, l);
    let preview = admin::campaign_test(
        f.store.as_ref(),
        &config(),
        c,
        "Admin@Example.COM",
        Some("reader3@d3.example.org"),
        T0,
    )
    .unwrap();
    assert_eq!(preview.rendered.subject, "[TEST] News for Reader 3");
    let all = f.store.queue_list().unwrap();
    assert_eq!(all.len(), 1);
    let m = &all[0];
    assert_eq!(m.recipients[0].address, "Admin@example.com");
    assert_eq!(m.sender, "news@example.com");
    let body = f.store.queue_body(m.id).unwrap();
    let parsed = mail_parser::MessageParser::default().parse(&body).unwrap();
    assert_eq!(parsed.subject().unwrap(), "[TEST] News for Reader 3");
    assert!(
        parsed
            .body_text(0)
            .unwrap()
            .contains("Hello Reader 3 in City3.")
    );
    let totals = admin::campaign_totals(f.store.as_ref(), c).unwrap();
    assert!(totals.values().all(|&n| n == 0), "{totals:?}");

    // A bad address is refused, naming the field; nothing more is queued.
    let err = admin::campaign_test(f.store.as_ref(), &config(), c, "x@@y", None, T0).unwrap_err();
    assert!(err.to_string().starts_with("to "), "{err}");
    assert_eq!(f.store.queue_list().unwrap().len(), 1);

    let e = engine(&f.store);
    assert_eq!(send_all(&e, &f.store, c), CampaignState::Done);
    assert_eq!(
        f.store
            .received_by(HistoryRef::Campaign(c), Outcome::Sent)
            .unwrap()
            .len(),
        5
    );
}

/// A scheduled campaign takes changes until its sender starts; after that an edit is
/// refused, and a copy (of any campaign) is a new campaign with its own totals, a draft
/// until it is given a start.
#[test]
fn edit_until_sending_begins_and_copy_any_campaign() {
    let f = fixture();
    let l = list(&f.store, false);
    add_subscribers(&f.store, l, 250, T0 - 3600);
    let c = campaign(&f.store, l);
    let edit = |subject: Option<&str>, send_at: Option<i64>| store::CampaignEdit {
        subject: subject.map(str::to_string),
        send_at,
        ..store::CampaignEdit::default()
    };
    admin::campaign_edit(
        f.store.as_ref(),
        c,
        store::CampaignEdit {
            text: Some("Changed for {{name}}".into()),
            rate_per_second: Some(7),
            ..edit(Some("Edited {{name|reader}}"), Some(T0 + 60))
        },
        T0 - 10,
    )
    .unwrap();
    let edited = f.store.campaign(c).unwrap();
    assert_eq!(
        (
            edited.subject.as_str(),
            edited.text.as_str(),
            edited.send_at
        ),
        ("Edited {{name|reader}}", "Changed for {{name}}", T0 + 60)
    );
    assert_eq!(edited.rate_per_second, 7);
    assert_eq!(edited.state, CampaignState::Scheduled);
    assert!(edited.html.is_some(), "what the edit left out stays");
    // Nothing to change, or an empty subject, is refused before the store is asked.
    let err =
        admin::campaign_edit(f.store.as_ref(), c, store::CampaignEdit::default(), T0).unwrap_err();
    assert!(matches!(err, admin::AdminError::Unreadable(_)), "{err}");
    let err = admin::campaign_edit(f.store.as_ref(), c, edit(Some("  "), None), T0).unwrap_err();
    assert!(matches!(err, admin::AdminError::Invalid { .. }), "{err}");

    // One batch out: the campaign has started and takes no more changes.
    // (Back to no limit, so the test runs at full speed.)
    admin::campaign_edit(
        f.store.as_ref(),
        c,
        store::CampaignEdit {
            rate_per_second: Some(0),
            ..edit(None, Some(T0))
        },
        T0,
    )
    .unwrap();
    let e = engine(&f.store);
    e.campaigns_tick(T0).unwrap();
    assert_eq!(f.store.campaign(c).unwrap().state, CampaignState::Sending);
    let err =
        admin::campaign_edit(f.store.as_ref(), c, edit(Some("Too late"), None), T0).unwrap_err();
    match err {
        admin::AdminError::Refused(why) => assert!(why.contains("is sending"), "{why}"),
        other => panic!("{other}"),
    }
    assert_eq!(
        f.store.campaign(c).unwrap().subject,
        "Edited {{name|reader}}"
    );
    assert_eq!(send_all(&e, &f.store, c), CampaignState::Done);
    let m = f.store.queue_list().unwrap().into_iter().next().unwrap();
    let body = f.store.queue_body(m.id).unwrap();
    let parsed = mail_parser::MessageParser::default().parse(&body).unwrap();
    assert!(parsed.subject().unwrap().starts_with("Edited Reader "));

    // A copy without a start is a draft the sender leaves alone.
    let copy = admin::campaign_copy(f.store.as_ref(), c, None, T0 + 100).unwrap();
    let draft = f.store.campaign(copy).unwrap();
    assert_eq!(draft.state, CampaignState::Draft);
    assert_eq!(
        (
            draft.subject.as_str(),
            draft.text.as_str(),
            draft.html.clone()
        ),
        (
            edited.subject.as_str(),
            edited.text.as_str(),
            edited.html.clone()
        )
    );
    assert_eq!(draft.rate_per_second, 0);
    let before = f.store.queue_list().unwrap().len();
    for _ in 0..3 {
        e.campaigns_tick(T0 + 200).unwrap();
    }
    assert_eq!(f.store.queue_list().unwrap().len(), before);
    // Given a start, it is scheduled, and sends to everyone again under its own totals.
    admin::campaign_edit(f.store.as_ref(), copy, edit(None, Some(T0 + 300)), T0 + 200).unwrap();
    assert_eq!(
        f.store.campaign(copy).unwrap().state,
        CampaignState::Scheduled
    );
    for _ in 0..100 {
        if e.campaigns_tick(T0 + 300).unwrap().is_none() {
            break;
        }
    }
    assert_eq!(f.store.campaign(copy).unwrap().state, CampaignState::Done);
    let count = |id| {
        f.store
            .count(HistoryRef::Campaign(id), Outcome::Sent)
            .unwrap()
    };
    assert_eq!((count(c), count(copy)), (250, 250));

    // A copy with a start is scheduled at once.
    let again = admin::campaign_copy(f.store.as_ref(), copy, Some(T0 + 900), T0 + 400).unwrap();
    let again = f.store.campaign(again).unwrap();
    assert_eq!(
        (again.state, again.send_at),
        (CampaignState::Scheduled, T0 + 900)
    );
}

/// After an outage every subscriber's step is overdue at once: a look queues at most its
/// budget, and the next looks take the rest, each reader once.
#[test]
fn overdue_step_mail_goes_out_a_budget_at_a_time() {
    let f = fixture();
    let l = list(&f.store, false);
    let step = welcome_step(&f.store, l);
    add_subscribers(&f.store, l, 450, T0);
    let e = engine(&f.store);
    let later = T0 + 3 * 86_400;
    let looks: Vec<usize> = (0..6)
        .map(|i| e.send_due_steps_at_most(later + i, 100).unwrap())
        .collect();
    assert_eq!(looks, [100, 100, 100, 100, 50, 0]);
    let about = HistoryRef::Step(step);
    assert_eq!(f.store.count(about, Outcome::Sent).unwrap(), 450);
    let rcpts = queued(&f.store);
    assert_eq!(rcpts.len(), 450);
    assert!(rcpts.values().all(|&n| n == 1), "every reader once");
}

/// Issue 21 segments: a campaign goes only to the subscribers its terms select, by
/// attribute, join date and past behaviour, and the count the faces show agrees with what
/// was queued.
#[test]
fn a_segment_sends_only_to_the_subscribers_it_selects() {
    let f = fixture();
    let l = list(&f.store, false);
    // reader0..reader299, City0..City299; 0..149 joined a day before 150..299.
    add_subscribers(&f.store, l, 150, T0 - 86_400);
    let late: Vec<NewSubscriber> = (150..300)
        .map(|i| NewSubscriber {
            email: format!("reader{i}@d{}.example.org", i % 7),
            name: format!("Reader {i}"),
            attributes: BTreeMap::from([
                ("city".to_string(), format!("City{i}")),
                (
                    "plan".to_string(),
                    if i % 2 == 0 { "gold" } else { "free" }.to_string(),
                ),
            ]),
            status: SubscriberStatus::Active,
        })
        .collect();
    f.store.subscriber_import(l, late, T0 - 3600).unwrap();
    let e = engine(&f.store);
    // A first campaign to everyone, which readers 0..9 then click.
    let first = campaign(&f.store, l);
    assert_eq!(send_all(&e, &f.store, first), CampaignState::Done);
    let first_ids: Vec<SubscriberId> = f
        .store
        .received_by(HistoryRef::Campaign(first), Outcome::Sent)
        .unwrap();
    assert_eq!(first_ids.len(), 300);
    for id in &first_ids[..10] {
        f.store
            .record(HistoryRef::Campaign(first), *id, Outcome::Click, None, T0)
            .unwrap();
    }
    let before = queued(&f.store);

    let terms = [
        "plan=gold".to_string(),
        format!("not-clicked:{}", first.0),
        format!("received:{}", first.0),
        "joined-after:2025-12-31".to_string(),
    ];
    let id = admin::campaign_add(
        f.store.as_ref(),
        admin::CampaignRequest {
            list: "weekly".into(),
            subject: "Gold".into(),
            text: "Hi {{name}}\n".into(),
            send_at: Some(T0),
            rate_per_second: Some(0),
            segment: terms.to_vec(),
            ..Default::default()
        },
        0,
        T0,
    )
    .unwrap();
    let audience = admin::campaign_audience(f.store.as_ref(), id).unwrap();
    assert_eq!(audience.segment, terms.to_vec());
    assert_eq!(audience.lists, vec!["weekly".to_string()]);
    // Gold is every even reader of 150..299: 75, none of whom clicked.
    assert_eq!(audience.count, 75);
    assert_eq!(send_all(&e, &f.store, id), CampaignState::Done);
    let after = queued(&f.store);
    let mut got: Vec<String> = after
        .iter()
        .filter(|(a, n)| before.get(*a) != Some(n))
        .map(|(a, _)| a.clone())
        .collect();
    got.sort();
    let mut want: Vec<String> = (150..300)
        .filter(|i| i % 2 == 0)
        .map(|i| format!("reader{i}@d{}.example.org", i % 7))
        .collect();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(
        f.store
            .count(HistoryRef::Campaign(id), Outcome::Sent)
            .unwrap(),
        75
    );

    // A click takes a reader out of a `not-clicked` segment and puts it in a `clicked` one.
    let clicked = admin::campaign_add(
        f.store.as_ref(),
        admin::CampaignRequest {
            list: "weekly".into(),
            subject: "Clickers".into(),
            text: "Hi\n".into(),
            segment: vec![format!("clicked:{}", first.0), "city!=City3".into()],
            ..Default::default()
        },
        0,
        T0,
    )
    .unwrap();
    assert_eq!(
        admin::campaign_audience(f.store.as_ref(), clicked)
            .unwrap()
            .count,
        9
    );
    // A broken term is refused before anything is made.
    let refused = admin::campaign_add(
        f.store.as_ref(),
        admin::CampaignRequest {
            list: "weekly".into(),
            subject: "x".into(),
            text: "x".into(),
            segment: vec!["opened:first".into()],
            ..Default::default()
        },
        0,
        T0,
    );
    assert!(
        matches!(refused, Err(admin::AdminError::Unreadable(ref m)) if m.contains("campaign id"))
    );
}

/// Issue 21: a campaign to two lists mails an address on both once (in any case), as the
/// subscriber of the first list, and counts it there; an address unsubscribed from the
/// first list gets it through the second; suppression still applies.
#[test]
fn a_campaign_to_two_lists_mails_a_shared_address_once() {
    let f = fixture();
    let a = list(&f.store, false);
    let b = f
        .store
        .list_add(
            "monthly",
            "month@example.com",
            "Monthly",
            false,
            T0 - 86_400,
        )
        .unwrap();
    let add = |list: ListId, email: &str| {
        f.store
            .subscriber_add(
                list,
                NewSubscriber {
                    email: email.into(),
                    name: String::new(),
                    attributes: BTreeMap::new(),
                    status: SubscriberStatus::Active,
                },
                T0 - 3600,
            )
            .unwrap()
    };
    let a_both = add(a, "both@example.org");
    let _b_both = add(b, "BOTH@example.org");
    add(a, "only-a@example.org");
    add(b, "only-b@example.org");
    let a_left = add(a, "left-a@example.org");
    let b_left = add(b, "left-a@example.org");
    add(a, "barred@example.org");
    add(b, "barred@example.org");
    f.store
        .subscriber_set_status(a_left, SubscriberStatus::Unsubscribed, None, T0)
        .unwrap();
    f.store
        .suppress("barred@example.org", SuppressionReason::Manual, None, T0)
        .unwrap();
    let id = admin::campaign_add(
        f.store.as_ref(),
        admin::CampaignRequest {
            list: "weekly".into(),
            also: vec!["monthly".into()],
            subject: "Both".into(),
            text: "Hi\n".into(),
            send_at: Some(T0),
            ..Default::default()
        },
        0,
        T0,
    )
    .unwrap();
    let audience = admin::campaign_audience(f.store.as_ref(), id).unwrap();
    assert_eq!(
        audience.lists,
        vec!["weekly".to_string(), "monthly".to_string()]
    );
    // both, only-a, only-b, left-a (through monthly), barred: suppression comes later.
    assert_eq!(audience.count, 5);
    let e = engine(&f.store);
    assert_eq!(send_all(&e, &f.store, id), CampaignState::Done);
    let got = queued(&f.store);
    let mut addresses: Vec<(&str, usize)> = got.iter().map(|(a, n)| (a.as_str(), *n)).collect();
    addresses.sort();
    assert_eq!(
        addresses,
        vec![
            ("both@example.org", 1),
            ("left-a@example.org", 1),
            ("only-a@example.org", 1),
            ("only-b@example.org", 1),
        ]
    );
    let about = HistoryRef::Campaign(id);
    let sent = f.store.received_by(about, Outcome::Sent).unwrap();
    assert!(sent.contains(&a_both), "counted under the first list's row");
    assert!(
        sent.contains(&b_left),
        "the second list's row when the first left"
    );
    assert_eq!(f.store.count(about, Outcome::Suppressed).unwrap(), 1);
    // Naming a list twice is refused.
    let twice = admin::campaign_add(
        f.store.as_ref(),
        admin::CampaignRequest {
            list: "weekly".into(),
            also: vec!["weekly".into()],
            subject: "x".into(),
            text: "x".into(),
            ..Default::default()
        },
        0,
        T0,
    );
    assert!(matches!(twice, Err(admin::AdminError::Unreadable(_))));
}

/// Regression guard for the ledger across lists: a reader mailed as the first list's
/// subscriber who then leaves that list gets no second copy through the other list.
#[test]
fn leaving_the_first_list_after_being_mailed_brings_no_second_copy() {
    let f = fixture();
    let a = list(&f.store, false);
    let b = f
        .store
        .list_add(
            "monthly",
            "month@example.com",
            "Monthly",
            false,
            T0 - 86_400,
        )
        .unwrap();
    add_subscribers(&f.store, a, 450, T0 - 3600);
    add_subscribers(&f.store, b, 450, T0 - 3600);
    let id = admin::campaign_add(
        f.store.as_ref(),
        admin::CampaignRequest {
            list: "weekly".into(),
            also: vec!["monthly".into()],
            subject: "x".into(),
            text: "x\n".into(),
            send_at: Some(T0),
            ..Default::default()
        },
        0,
        T0,
    )
    .unwrap();
    let e = engine(&f.store);
    let c = f.store.campaign(id).unwrap();
    f.store
        .campaign_apply(id, CampaignAction::Start, T0)
        .unwrap();
    assert!(matches!(
        e.campaign_batch(&c, T0).unwrap(),
        BatchOutcome::Sent(_)
    ));
    // Everyone mailed so far leaves the first list.
    for s in f
        .store
        .received_by(HistoryRef::Campaign(id), Outcome::Sent)
        .unwrap()
    {
        f.store
            .subscriber_set_status(s, SubscriberStatus::Unsubscribed, None, T0)
            .unwrap();
    }
    assert_eq!(send_all(&e, &f.store, id), CampaignState::Done);
    let got = queued(&f.store);
    assert_eq!(got.len(), 450);
    assert!(got.values().all(|&n| n == 1), "nobody twice");
}

/// A campaign's audience can be changed like its content until it starts: its lists (the
/// first first) and its segment, checked as on creation; an empty segment is everyone.
#[test]
fn a_campaigns_lists_and_segment_change_until_it_starts() {
    let f = fixture();
    let a = list(&f.store, false);
    add_subscribers(&f.store, a, 10, T0 - 3600);
    let b = f
        .store
        .list_add(
            "monthly",
            "month@example.com",
            "Monthly",
            false,
            T0 - 86_400,
        )
        .unwrap();
    f.store
        .subscriber_add(
            b,
            NewSubscriber {
                email: "only-monthly@example.org".into(),
                name: String::new(),
                attributes: BTreeMap::from([("city".to_string(), "City3".to_string())]),
                status: SubscriberStatus::Active,
            },
            T0 - 3600,
        )
        .unwrap();
    let id = admin::campaign_add(
        f.store.as_ref(),
        admin::CampaignRequest {
            list: "weekly".into(),
            subject: "Audience".into(),
            text: "Hi\n".into(),
            send_at: Some(T0 + 3600),
            segment: vec!["city=City1".into()],
            ..Default::default()
        },
        0,
        T0,
    )
    .unwrap();
    let count = || admin::campaign_audience(f.store.as_ref(), id).unwrap();
    assert_eq!(count().count, 1);
    let edit = |lists: Option<&[&str]>, segment: Option<&[&str]>| {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (lists, segment) = (lists.map(names), segment.map(names));
        admin::with_audience(
            f.store.as_ref(),
            store::CampaignEdit::default(),
            lists.as_deref(),
            segment.as_deref(),
        )
        .and_then(|e| admin::campaign_edit(f.store.as_ref(), id, e, T0))
    };

    // Both lists, the other list first; a segment that one reader of each list matches.
    edit(Some(&["monthly", "weekly"]), Some(&["city=City3"])).unwrap();
    let audience = count();
    assert_eq!(
        audience.lists,
        vec!["monthly".to_string(), "weekly".to_string()]
    );
    assert_eq!(audience.segment, vec!["city=City3".to_string()]);
    assert_eq!(audience.count, 2);
    assert_eq!(
        f.store.campaign(id).unwrap().list,
        b,
        "the first list is the campaign's"
    );
    // An empty segment: everyone on both lists; the lists stay when not given.
    edit(None, Some(&[])).unwrap();
    assert_eq!((count().count, count().lists.len()), (11, 2));
    // Back to one list.
    edit(Some(&["weekly"]), None).unwrap();
    assert_eq!(
        (count().count, count().lists),
        (10, vec!["weekly".to_string()])
    );

    // Refused as on creation, and nothing changes.
    for (lists, segment) in [
        (Some(&["weekly", "weekly"][..]), None),
        (Some(&[][..]), None),
        (None, Some(&["city~x"][..])),
    ] {
        let err = edit(lists, segment).unwrap_err();
        assert!(matches!(err, admin::AdminError::Unreadable(_)), "{err}");
    }
    assert!(matches!(
        edit(Some(&["nosuch"]), None),
        Err(admin::AdminError::Store(_))
    ));
    assert_eq!(
        (count().count, count().lists),
        (10, vec!["weekly".to_string()])
    );
    let log: Vec<String> = f
        .store
        .events(Some(HistoryRef::Campaign(id)), 0, 100)
        .unwrap()
        .into_iter()
        .filter_map(|e| e.detail)
        .collect();
    assert!(
        log.iter().any(|d| d == "edit: lists, segment"),
        "the action log names what changed: {log:?}"
    );

    // Once sending began, the audience is fixed like the rest.
    edit(None, None).unwrap_err();
    admin::campaign_edit(
        f.store.as_ref(),
        id,
        store::CampaignEdit {
            send_at: Some(T0),
            ..Default::default()
        },
        T0,
    )
    .unwrap();
    let e = engine(&f.store);
    e.campaigns_tick(T0).unwrap();
    match edit(Some(&["monthly"]), None).unwrap_err() {
        admin::AdminError::Refused(why) => assert!(why.contains("is sending"), "{why}"),
        other => panic!("{other}"),
    }
}

/// Issue 21, step mail: a step can wait for an event of an earlier step, or branch on it.
/// Step 1 goes to everyone on day 0; step 2 (day 1) only to readers who clicked in step 1,
/// else passed over; step 3 (day 1) to those who did not, else passed over: one of the
/// two branches each. Step 4 (day 2) waits for a click in step 3: a reader who never
/// clicks stays there, and one who clicks later gets it at the next look.
#[test]
fn steps_wait_for_a_click_or_branch_on_it() {
    let f = fixture();
    let l = list(&f.store, false);
    let seq = f
        .store
        .sequence_add(l, "branching", "UTC", false, T0 - 7200)
        .unwrap();
    let add = |days: u32, subject: &str, condition: Option<String>, otherwise: &str| {
        let (condition, otherwise) =
            admin::step_condition(condition.as_deref(), Some(otherwise)).unwrap();
        admin::step_add(
            f.store.as_ref(),
            seq,
            NewStep {
                days_after: days,
                send_minute: 9 * 60,
                subject: subject.into(),
                text: "See https://example.net/step".into(),
                html: None,
                condition,
                otherwise,
            },
        )
        .unwrap()
    };
    let one = add(0, "one", None, "skip");
    let two = add(
        1,
        "two: you clicked",
        Some(format!("clicked:{}", one.0)),
        "skip",
    );
    let three = add(
        1,
        "three: you did not",
        Some(format!("not-clicked:{}", one.0)),
        "skip",
    );
    let four = add(
        2,
        "four: after a click",
        Some(format!("clicked:{}", three.0)),
        "wait",
    );
    let reader = |email: &str| {
        f.store
            .subscriber_add(
                l,
                NewSubscriber {
                    email: email.into(),
                    name: String::new(),
                    attributes: BTreeMap::new(),
                    status: SubscriberStatus::Active,
                },
                T0,
            )
            .unwrap()
    };
    let (clicker, quiet) = (reader("clicker@example.org"), reader("quiet@example.org"));
    let e = engine(&f.store);
    let set = |step: StepId, outcome: Outcome| {
        f.store
            .received_by(HistoryRef::Step(step), outcome)
            .unwrap()
    };
    let hour = 3600;
    let day = 86_400;
    assert_eq!(e.send_due_steps(T0 + 9 * hour).unwrap(), 2);
    f.store
        .record(
            HistoryRef::Step(one),
            clicker,
            Outcome::Click,
            Some("https://example.net/step"),
            T0 + 10 * hour,
        )
        .unwrap();

    // Day 1: each reader takes one branch, and is passed over the other.
    // (A step that becomes due by a send or a skip is taken at the next look, a minute on.)
    assert_eq!(e.send_due_steps(T0 + day + 9 * hour).unwrap(), 2);
    assert_eq!(e.send_due_steps(T0 + day + 9 * hour + 60).unwrap(), 0);
    assert_eq!(set(two, Outcome::Sent), vec![clicker]);
    assert_eq!(set(two, Outcome::Skipped), vec![quiet]);
    assert_eq!(set(three, Outcome::Sent), vec![quiet]);
    assert_eq!(set(three, Outcome::Skipped), vec![clicker]);

    // Day 2: step four waits for a click in step three. The clicker never got step three
    // (skipped), so never clicked it: both wait, nobody is passed over.
    assert_eq!(e.send_due_steps(T0 + 2 * day + 9 * hour).unwrap(), 0);
    assert!(set(four, Outcome::Sent).is_empty());
    assert!(set(four, Outcome::Skipped).is_empty());
    // The quiet reader clicks in step three on day 5: step four goes at the next look.
    f.store
        .record(
            HistoryRef::Step(three),
            quiet,
            Outcome::Click,
            Some("https://example.net/step"),
            T0 + 5 * day,
        )
        .unwrap();
    assert_eq!(e.send_due_steps(T0 + 5 * day + 60).unwrap(), 1);
    assert_eq!(set(four, Outcome::Sent), vec![quiet]);
    assert_eq!(e.send_due_steps(T0 + 30 * day).unwrap(), 0);
    let q = queued(&f.store);
    assert_eq!((q["clicker@example.org"], q["quiet@example.org"]), (2, 3));
    // The totals count the readers passed over.
    assert_eq!(
        f.store
            .count(HistoryRef::Step(two), Outcome::Skipped)
            .unwrap(),
        1
    );

    // A condition on a step of another sequence, or a wait without one, is refused.
    let other = f.store.sequence_add(l, "other", "UTC", false, T0).unwrap();
    let foreign = admin::step_add(
        f.store.as_ref(),
        other,
        NewStep {
            days_after: 0,
            send_minute: 0,
            subject: "x".into(),
            text: "x".into(),
            html: None,
            condition: Some(store::StepCondition::parse(&format!("clicked:{}", one.0)).unwrap()),
            otherwise: store::Otherwise::Skip,
        },
    );
    assert!(
        matches!(foreign, Err(admin::AdminError::Store(_))),
        "{foreign:?}"
    );
    assert!(admin::step_condition(None, Some("wait")).is_err());
    assert!(admin::step_condition(Some("clicked:x"), None).is_err());
    assert!(admin::step_condition(Some("bounced:3"), None).is_err());
    assert_eq!(
        store::StepCondition::parse("not-opened:7")
            .unwrap()
            .to_string(),
        "not-opened:7"
    );
}

/// The sender's cheap look for work: the earliest start of a scheduled campaign, any time
/// while one is sending, nothing once all are done (a paused one waits for its resume).
#[test]
fn the_sender_learns_when_it_next_has_campaign_work() {
    let f = fixture();
    let l = list(&f.store, false);
    add_subscribers(&f.store, l, 3, T0 - 3600);
    assert_eq!(f.store.campaign_work_at().unwrap(), None);
    let c = campaign(&f.store, l);
    assert_eq!(f.store.campaign_work_at().unwrap(), Some(T0));
    f.store
        .campaign_apply(c, CampaignAction::Start, T0)
        .unwrap();
    assert_eq!(f.store.campaign_work_at().unwrap(), Some(i64::MIN));
    f.store
        .campaign_apply(c, CampaignAction::Pause, T0)
        .unwrap();
    assert_eq!(f.store.campaign_work_at().unwrap(), None);
    f.store
        .campaign_apply(c, CampaignAction::Resume, T0)
        .unwrap();
    let e = engine(&f.store);
    assert_eq!(send_all(&e, &f.store, c), CampaignState::Done);
    assert_eq!(f.store.campaign_work_at().unwrap(), None);
}
