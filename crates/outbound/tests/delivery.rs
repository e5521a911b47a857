//! The delivery engine against a real SQLite store and a small SMTP sink on loopback:
//! static routes, bounces into a local INBOX, deferrals and retries, delay notices,
//! the null sender, connection reuse, forwarding, rate limits, DKIM on the wire.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use store::prelude::*;

use mail_parser::{MessageParser, MimeHeaders};
use net::ShutdownTrigger;
use outbound::{DkimKeys, Queue, QueueConfig, Routes, StaticRoute, Timeouts, TlsPolicy};
use store::{AccountId, Outbound, QueueId, RecipientState, SqliteStore};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

// ---- the sink ---------------------------------------------------------------------

/// One message as the sink received it.
#[derive(Debug, Clone)]
struct Received {
    connection: usize,
    from: String,
    to: Vec<String>,
    data: String,
}

#[derive(Default)]
struct SinkState {
    /// (substring of the recipient, reply line); first match wins, default 250.
    policy: Vec<(String, String)>,
    connections: usize,
    received: Vec<Received>,
}

#[derive(Clone)]
struct Sink {
    port: u16,
    state: Arc<Mutex<SinkState>>,
}

impl Sink {
    async fn start() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(SinkState::default()));
        let shared = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let n = {
                    let mut s = shared.lock().unwrap();
                    s.connections += 1;
                    s.connections
                };
                tokio::spawn(session(stream, n, shared.clone()));
            }
        });
        Sink { port, state }
    }

    fn answer(&self, rcpt_contains: &str, reply: &str) {
        let mut s = self.state.lock().unwrap();
        s.policy.retain(|(k, _)| k != rcpt_contains);
        s.policy
            .insert(0, (rcpt_contains.to_owned(), reply.to_owned()));
    }

    fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    fn connections(&self) -> usize {
        self.state.lock().unwrap().connections
    }
}

async fn session(stream: tokio::net::TcpStream, n: usize, state: Arc<Mutex<SinkState>>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let _ = write.write_all(b"220 sink.test ESMTP\r\n").await;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let upper = line.to_ascii_uppercase();
        let reply = if upper.starts_with("EHLO") {
            "250-sink.test\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES".to_owned()
        } else if upper.starts_with("MAIL FROM:") {
            from = path(&line[10..]);
            to.clear();
            "250 2.1.0 ok".to_owned()
        } else if upper.starts_with("RCPT TO:") {
            let rcpt = path(&line[8..]);
            let s = state.lock().unwrap();
            let reply = s
                .policy
                .iter()
                .find(|(k, _)| rcpt.contains(k.as_str()))
                .map_or("250 2.1.5 ok".to_owned(), |(_, r)| r.clone());
            if reply.starts_with('2') {
                to.push(rcpt);
            }
            reply
        } else if upper.starts_with("DATA") {
            let _ = write.write_all(b"354 go on\r\n").await;
            let mut data = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                if line == ".\r\n" {
                    break;
                }
                data.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            state.lock().unwrap().received.push(Received {
                connection: n,
                from: from.clone(),
                to: std::mem::take(&mut to),
                data,
            });
            "250 2.0.0 queued as sink".to_owned()
        } else if upper.starts_with("QUIT") {
            let _ = write.write_all(b"221 2.0.0 bye\r\n").await;
            return;
        } else {
            "250 2.0.0 ok".to_owned()
        };
        if write
            .write_all(format!("{reply}\r\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

fn path(arg: &str) -> String {
    let arg = arg.trim();
    let end = arg.find('>').unwrap_or(arg.len());
    arg.trim_start_matches('<')[..end.saturating_sub(1)].to_owned()
}

// ---- the server side ----------------------------------------------------------------

struct Harness {
    _dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    alice: AccountId,
    waker: Arc<tokio::sync::Notify>,
    trigger: Option<ShutdownTrigger>,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn config() -> QueueConfig {
    let mut c = QueueConfig::new("mail.example.com");
    // Generous: a loaded CI machine (fsync, two cores shared with the whole suite) must not
    // turn a slow reply into a deferral the test did not ask for.
    c.timeouts = Timeouts::uniform(Duration::from_secs(30));
    c.poll = Duration::from_millis(50);
    c.retry = vec![Duration::from_secs(100), Duration::from_secs(200)];
    c
}

fn route_to(port: u16) -> Routes {
    Routes {
        static_routes: vec![StaticRoute {
            domain: "remote.test".into(),
            host: "127.0.0.1".into(),
            port,
            tls: TlsPolicy::Disabled,
        }],
        smart_host: None,
    }
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
        store.add_domain("example.com").unwrap();
        let alice = store.add_account("alice@example.com", "pw").unwrap();
        Harness {
            _dir: dir,
            store,
            alice,
            waker: Arc::new(tokio::sync::Notify::new()),
            trigger: None,
        }
    }

    fn start(&mut self, config: QueueConfig, routes: Routes, dkim: DkimKeys) {
        let dns = outbound::resolver(&["127.0.0.1:9".parse().unwrap()]).unwrap();
        let queue = Queue::new(
            self.store.clone(),
            config,
            routes,
            dns,
            Arc::new(dkim),
            gate::Clock::with_zone(jiff::tz::TimeZone::UTC),
        );
        self.waker = queue.waker();
        let trigger = ShutdownTrigger::new();
        tokio::spawn(queue.run(trigger.subscribe()));
        self.trigger = Some(trigger);
    }

    fn queue(&self, sender: &str, recipients: &[&str], subject: &str) -> QueueId {
        let body = format!(
            "From: Alice <alice@example.com>\r\nTo: {}\r\nSubject: {subject}\r\nMessage-ID: <{subject}@example.com>\r\n\r\nHello {subject}.\r\n",
            recipients.join(", ")
        );
        let id = self
            .store
            .accept(
                body.as_bytes(),
                &[],
                Some(&Outbound {
                    sender: sender.into(),
                    recipients: recipients.iter().map(|r| r.to_string()).collect(),
                    account: None,
                }),
            )
            .unwrap()
            .queued
            .unwrap();
        self.waker.notify_one();
        id
    }

    fn inbox(&self) -> Vec<Vec<u8>> {
        let mailbox = self.store.mailbox(self.alice, "INBOX").unwrap();
        self.store
            .messages(mailbox.id)
            .unwrap()
            .iter()
            .map(|m| self.store.read_blob(&m.blob).unwrap())
            .collect()
    }

    fn queue_empty(&self) -> bool {
        self.store.queue_list().unwrap().is_empty()
    }

    async fn stop(mut self) {
        if let Some(t) = self.trigger.take() {
            tokio::time::timeout(Duration::from_secs(10), t.shutdown())
                .await
                .expect("the queue stops");
        }
    }
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    // Up to a minute: passing runs take well under a second; a loaded machine is slow.
    for _ in 0..3000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The per-recipient (and per-message) fields of a DSN's delivery-status part.
fn status_fields(dsn: &[u8]) -> Vec<(String, String)> {
    let message = MessageParser::new().parse(dsn).expect("the DSN parses");
    let ct = message.content_type().expect("content type");
    assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
    assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
    let part = message
        .parts
        .iter()
        .find(|p| {
            p.content_type()
                .is_some_and(|c| c.subtype() == Some("delivery-status"))
        })
        .expect("a delivery-status part");
    String::from_utf8_lossy(part.contents())
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn field(fields: &[(String, String)], name: &str) -> Vec<String> {
    fields
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .collect()
}

// ---- the tests --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_route_delivers_signed_mail_and_empties_the_queue() {
    let sink = Sink::start().await;
    let mut h = Harness::new();
    let keys_dir = tempfile::tempdir().unwrap();
    outbound::generate_dkim(keys_dir.path(), "example.com", "s1").unwrap();
    h.start(
        config(),
        route_to(sink.port),
        DkimKeys::load(keys_dir.path()).unwrap(),
    );
    h.queue(
        "alice@example.com",
        &["bob@remote.test", "carol@remote.test"],
        "one",
    );
    wait_for("delivery", || {
        !sink.received().is_empty() && h.queue_empty()
    })
    .await;
    let got = sink.received();
    assert_eq!(got.len(), 1, "one transaction for both recipients");
    assert_eq!(got[0].from, "alice@example.com");
    assert_eq!(got[0].to, ["bob@remote.test", "carol@remote.test"]);
    assert!(
        got[0]
            .data
            .starts_with("DKIM-Signature: v=1; a=rsa-sha256;"),
        "{}",
        got[0].data
    );
    assert!(got[0].data.contains("d=example.com"));
    assert!(got[0].data.contains("Subject: one\r\n"));
    assert!(h.inbox().is_empty(), "no notice for a delivery");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_refusal_bounces_into_the_local_senders_inbox() {
    let sink = Sink::start().await;
    sink.answer("bob@", "550 5.1.1 no such user bob");
    let mut h = Harness::new();
    h.start(config(), route_to(sink.port), DkimKeys::empty());
    h.queue(
        "alice@example.com",
        &["bob@remote.test", "carol@remote.test"],
        "bounce",
    );
    wait_for("the bounce", || h.inbox().len() == 1 && h.queue_empty()).await;
    assert_eq!(
        sink.received()[0].to,
        ["carol@remote.test"],
        "carol still got it"
    );

    let dsn = &h.inbox()[0];
    let parsed = MessageParser::new().parse(dsn).unwrap();
    assert_eq!(
        parsed.from().unwrap().first().unwrap().address(),
        Some("MAILER-DAEMON@mail.example.com")
    );
    assert_eq!(
        parsed.header_raw("Auto-Submitted").map(str::trim),
        Some("auto-replied")
    );
    let fields = status_fields(dsn);
    assert_eq!(field(&fields, "Reporting-MTA"), ["dns; mail.example.com"]);
    assert_eq!(
        field(&fields, "Final-Recipient"),
        ["rfc822; bob@remote.test"]
    );
    assert_eq!(field(&fields, "Action"), ["failed"]);
    assert_eq!(field(&fields, "Status"), ["5.1.1"]);
    assert_eq!(field(&fields, "Remote-MTA"), ["dns; 127.0.0.1"]);
    assert_eq!(
        field(&fields, "Diagnostic-Code"),
        ["smtp; 550 5.1.1 no such user bob"]
    );
    let headers = parsed
        .parts
        .iter()
        .find(|p| {
            p.content_type()
                .is_some_and(|c| c.subtype() == Some("rfc822-headers"))
        })
        .expect("the original headers");
    assert!(String::from_utf8_lossy(headers.contents()).contains("Subject: bounce"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_refusal_defers_on_schedule_notifies_once_and_succeeds_later() {
    let sink = Sink::start().await;
    sink.answer("bob@", "451 4.3.0 try again later");
    let mut h = Harness::new();
    let mut c = config();
    c.delay_notice_after = Duration::ZERO; // the first deferral already notifies
    h.start(c, route_to(sink.port), DkimKeys::empty());
    let before = now();
    let id = h.queue("alice@example.com", &["bob@remote.test"], "later");
    let attempts = |h: &Harness| h.store.queue_get(id).unwrap().recipients[0].attempts;
    wait_for("the first attempt", || attempts(&h) == 1).await;
    let r = h.store.queue_get(id).unwrap().recipients[0].clone();
    assert_eq!(r.state, RecipientState::Queued);
    assert_eq!(r.last_reason.as_deref(), Some("4xx"));
    assert!(r.last_error.unwrap().contains("451 4.3.0 try again later"));
    assert!(
        (before + 100..=now() + 100).contains(&r.next_attempt),
        "retry[0] = 100 s"
    );
    assert!(r.delay_notified);
    wait_for("the delay notice", || h.inbox().len() == 1).await;
    let fields = status_fields(&h.inbox()[0]);
    assert_eq!(field(&fields, "Action"), ["delayed"]);
    assert_eq!(field(&fields, "Status"), ["4.3.0"]);
    assert_eq!(field(&fields, "Will-Retry-Until").len(), 1);

    // Second attempt (the operator's flush): still refused, retry[1], no second notice.
    h.store.queue_retry(Some(id), now()).unwrap();
    h.waker.notify_one();
    wait_for("the second attempt", || attempts(&h) == 2).await;
    let r = h.store.queue_get(id).unwrap().recipients[0].clone();
    assert!(
        (now() + 195..=now() + 200).contains(&r.next_attempt),
        "retry[1] = 200 s"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.inbox().len(), 1, "one delay notice per recipient");

    sink.answer("bob@", "250 2.1.5 ok now");
    h.store.queue_retry(Some(id), now()).unwrap();
    h.waker.notify_one();
    wait_for("delivery", || h.queue_empty()).await;
    assert_eq!(sink.received().len(), 1);
    assert_eq!(h.inbox().len(), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_sender_is_never_bounced_nor_told_of_delays() {
    let sink = Sink::start().await;
    sink.answer("bob@", "550 5.1.1 gone");
    sink.answer("dave@", "451 4.4.1 later");
    let mut h = Harness::new();
    let mut c = config();
    c.delay_notice_after = Duration::ZERO;
    h.start(c, route_to(sink.port), DkimKeys::empty());
    let bounce = h.queue("", &["bob@remote.test"], "n1");
    let delayed = h.queue("", &["dave@remote.test"], "n2");
    wait_for("both attempts", || {
        h.store.queue_get(bounce).is_err()
            && h.store
                .queue_get(delayed)
                .is_ok_and(|m| m.recipients[0].attempts == 1)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let left = h.store.queue_list().unwrap();
    assert_eq!(left.len(), 1, "no notice was queued: {left:?}");
    assert!(!left[0].recipients[0].delay_notified);
    assert!(h.inbox().is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_fails_with_a_failure_notice() {
    let mut h = Harness::new();
    let mut c = config();
    c.give_up_after = Duration::ZERO;
    // Nothing listens on port 9 (discard) on a test host: connection refused.
    h.start(c, route_to(9), DkimKeys::empty());
    h.queue("alice@example.com", &["bob@remote.test"], "expired");
    wait_for("the failure notice", || {
        h.inbox().len() == 1 && h.queue_empty()
    })
    .await;
    let fields = status_fields(&h.inbox()[0]);
    assert_eq!(field(&fields, "Action"), ["failed"]);
    assert_eq!(field(&fields, "Status"), ["5.4.7"]);
    assert!(
        field(&fields, "Diagnostic-Code")[0].contains("cannot connect"),
        "{fields:?}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connection_defers_with_reason_connect() {
    let mut h = Harness::new();
    h.start(config(), route_to(9), DkimKeys::empty());
    let id = h.queue("alice@example.com", &["bob@remote.test"], "refused");
    wait_for("the attempt", || {
        h.store
            .queue_get(id)
            .is_ok_and(|m| m.recipients[0].attempts == 1)
    })
    .await;
    let r = h.store.queue_get(id).unwrap().recipients[0].clone();
    assert_eq!(r.last_reason.as_deref(), Some("connect"));
    assert_eq!(r.state, RecipientState::Queued);
    assert!(h.inbox().is_empty(), "no delay notice before 4 h");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_messages_share_one_connection() {
    let sink = Sink::start().await;
    let mut h = Harness::new();
    for i in 0..5 {
        h.queue("alice@example.com", &["bob@remote.test"], &format!("m{i}"));
    }
    let mut c = config();
    c.per_destination = 1;
    h.start(c, route_to(sink.port), DkimKeys::empty());
    wait_for("five deliveries", || {
        sink.received().len() == 5 && h.queue_empty()
    })
    .await;
    assert_eq!(sink.connections(), 1);
    assert!(sink.received().iter().all(|r| r.connection == 1));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_per_connection_caps_reuse() {
    let sink = Sink::start().await;
    let mut h = Harness::new();
    for i in 0..5 {
        h.queue("alice@example.com", &["bob@remote.test"], &format!("m{i}"));
    }
    let mut c = config();
    c.per_destination = 1;
    c.messages_per_connection = 2;
    h.start(c, route_to(sink.port), DkimKeys::empty());
    wait_for("five deliveries", || {
        sink.received().len() == 5 && h.queue_empty()
    })
    .await;
    assert_eq!(sink.connections(), 3);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_to_a_remote_target_is_forwarded_through_the_queue() {
    let sink = Sink::start().await;
    let mut h = Harness::new();
    h.store
        .add_alias(
            "team@example.com",
            &["alice@example.com".into(), "ext@remote.test".into()],
        )
        .unwrap();
    h.start(config(), route_to(sink.port), DkimKeys::empty());
    h.queue("someone@elsewhere.test", &["team@example.com"], "fwd");
    wait_for("forwarding", || {
        sink.received().len() == 1 && h.queue_empty()
    })
    .await;
    let got = &sink.received()[0];
    assert_eq!(got.to, ["ext@remote.test"]);
    assert_eq!(
        got.from, "someone@elsewhere.test",
        "the envelope sender is kept"
    );
    assert_eq!(h.inbox().len(), 1, "the local target got its copy");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_holds_messages_back_without_counting_attempts() {
    let sink = Sink::start().await;
    let mut h = Harness::new();
    for i in 0..3 {
        h.queue("alice@example.com", &["bob@remote.test"], &format!("r{i}"));
    }
    let mut c = config();
    // One every 3 s, burst one: the second must wait well past the first transaction,
    // however slow the machine.
    c.rate_per_minute = 20;
    h.start(c, route_to(sink.port), DkimKeys::empty());
    wait_for("the first delivery", || sink.received().len() == 1).await;
    wait_for("the first to leave the queue", || {
        h.store.queue_list().unwrap().len() == 2
    })
    .await;
    assert_eq!(sink.received().len(), 1);
    let left = h.store.queue_list().unwrap();
    assert_eq!(left.len(), 2);
    assert!(
        left.iter().all(|m| m.recipients[0].attempts == 0),
        "{left:?}"
    );
    wait_for("the rest, paced", || {
        sink.received().len() == 3 && h.queue_empty()
    })
    .await;
    h.stop().await;
}
