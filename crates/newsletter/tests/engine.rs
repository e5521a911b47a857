//! The engine against a real SQLite store in a temporary directory: exactly-once campaign
//! sending across a restart, step mail over simulated days, bounces, clicks, unsubscribe,
//! pruning.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use store::prelude::*;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use newsletter::{BatchOutcome, Engine, NewsletterConfig};
use smtp_server::BounceSink;
use store::{
    CampaignAction, CampaignState, HistoryRef, ListId, NewCampaign, NewStep, NewSubscriber,
    Newsletters, Outcome, SqliteStore, SubscriberId, SubscriberStatus, Transition,
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
        f.store.campaign_apply(c, CampaignAction::Pause).unwrap(),
        Transition::Moved { .. }
    ));
    assert_eq!(e.campaigns_tick(T0).unwrap(), None);
    assert_eq!(queued(&f.store).len(), 200);
    assert!(matches!(
        f.store.campaign_apply(c, CampaignAction::Resume).unwrap(),
        Transition::Moved { .. }
    ));
    assert!(e.campaigns_tick(T0).unwrap().is_some());
    assert_eq!(queued(&f.store).len(), 400);
    assert!(matches!(
        f.store.campaign_apply(c, CampaignAction::Cancel).unwrap(),
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
                        let t = store.campaign_apply(c, action).unwrap();
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
    assert!(!sink.claims("bounces@example.com"));
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
    let (status, _, _) = call(&router, "GET", confirm, "").await;
    assert_eq!(status, StatusCode::OK);
    let s = f.store.subscriber(s.id).unwrap();
    assert_eq!(s.status, SubscriberStatus::Active);
    assert!(s.confirmed.is_some());
    let (status, _, _) = call(&router, "GET", &format!("{confirm}x"), "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

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
    tokio::time::timeout(std::time::Duration::from_secs(10), waker.notified())
        .await
        .expect("the queue was never woken");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while f.store.campaign(c).unwrap().state != CampaignState::Done {
        assert!(std::time::Instant::now() < deadline, "campaign not done");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(queued(&f.store).len(), 250);
    tokio::time::timeout(std::time::Duration::from_secs(10), trigger.shutdown())
        .await
        .expect("the engine did not stop");
    task.await.unwrap();
}
