//! The public subscribe form over a real socket: it must not become a way to flood a
//! stranger's mailbox with confirmation mail (issue 16, finding 5).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use store::prelude::*;

use newsletter::{Engine, NewsletterConfig};
use store::{Newsletters, SqliteStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Server {
    _dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    addr: SocketAddr,
}

async fn server(config: NewsletterConfig) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let now = jiff::Timestamp::now().as_second();
    store
        .list_add("weekly", "news@example.com", "Example News", true, now)
        .unwrap();
    store
        .list_add("open", "news@example.com", "Example News", false, now)
        .unwrap();
    let engine = Engine::new(
        store.clone(),
        store.db_path().parent().unwrap(),
        NewsletterConfig {
            base_url: "http://news.example.com".into(),
            bounce_domain: "example.com".into(),
            ..config
        },
        Arc::new(tokio::sync::Notify::new()),
        gate::Clock::with_zone(jiff::tz::TimeZone::UTC),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = engine
        .router()
        .into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Server {
        _dir: dir,
        store,
        addr,
    }
}

/// POSTs the form from `source` (a loopback address) and returns the status and the body.
async fn post(server: &Server, source: &str, form: &str) -> (u16, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let mut tcp = socket.connect(server.addr).await.unwrap();
    let request = format!(
        "POST /subscribe HTTP/1.1\r\nHost: news.example.com\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut response))
        .await
        .expect("the server answers within 10 s")
        .unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    (status, text)
}

fn confirmations_to(store: &SqliteStore, address: &str) -> usize {
    store
        .queue_list()
        .unwrap()
        .iter()
        .filter(|m| m.recipients.iter().any(|r| r.address == address))
        .count()
}

#[tokio::test]
async fn ten_subscribe_posts_send_one_confirmation_mail() {
    let server = server(NewsletterConfig::default()).await;
    let mut statuses = Vec::new();
    for i in 0..10 {
        // From several callers, so the per-caller limit is not what stops them.
        let source = format!("127.0.0.{}", 2 + i % 5);
        let (status, body) = post(&server, &source, "list=weekly&email=victim%40example.org").await;
        if status == 429 {
            assert!(
                body.contains("confirmation mail was sent to this address recently")
                    && body.to_ascii_lowercase().contains("retry-after:"),
                "a refusal says why and when to retry: {body}"
            );
        }
        statuses.push(status);
    }
    assert_eq!(statuses[0], 200);
    assert!(statuses[1..].iter().all(|s| *s == 429), "{statuses:?}");
    assert_eq!(confirmations_to(&server.store, "victim@example.org"), 1);
}

#[tokio::test]
async fn one_caller_is_limited_per_hour() {
    let server = server(NewsletterConfig {
        subscribe_per_hour: 3,
        ..NewsletterConfig::default()
    })
    .await;
    for i in 0..3 {
        let form = format!("list=weekly&email=reader{i}%40example.org");
        assert_eq!(post(&server, "127.0.0.9", &form).await.0, 200);
    }
    let (status, body) = post(
        &server,
        "127.0.0.9",
        "list=weekly&email=other%40example.org",
    )
    .await;
    assert_eq!(status, 429, "{body}");
    assert!(
        body.contains("Too many subscription requests from your address"),
        "{body}"
    );
    assert_eq!(confirmations_to(&server.store, "other@example.org"), 0);
    // Another caller is not affected.
    let (status, _) = post(
        &server,
        "127.0.0.10",
        "list=weekly&email=other%40example.org",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(confirmations_to(&server.store, "other@example.org"), 1);
}

#[tokio::test]
async fn a_confirmation_may_be_sent_again_after_the_interval() {
    let server = server(NewsletterConfig {
        // Counted in whole seconds: at 2, a second boundary between the two posts still
        // leaves the second one inside the interval.
        confirm_interval: Duration::from_secs(2),
        ..NewsletterConfig::default()
    })
    .await;
    let form = "list=weekly&email=slow%40example.org";
    assert_eq!(post(&server, "127.0.0.2", form).await.0, 200);
    assert_eq!(post(&server, "127.0.0.2", form).await.0, 429);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(post(&server, "127.0.0.2", form).await.0, 200);
    assert_eq!(confirmations_to(&server.store, "slow@example.org"), 2);
}

/// Regression (issue 21.4): on a list without double opt-in, anyone could subscribe a
/// stranger's address through the public form. Only a caller the operator trusts skips the
/// confirmation now, and only on such a list.
#[tokio::test]
async fn only_trusted_callers_subscribe_without_a_confirmation() {
    use store::SubscriberStatus;
    let server = server(NewsletterConfig {
        subscribe_trusted: vec![newsletter::Network::parse("127.0.0.2/32").unwrap()],
        ..NewsletterConfig::default()
    })
    .await;
    let status = |list: &str, email: &str| {
        let list = server.store.list(list).unwrap();
        server
            .store
            .subscriber_by_email(list.id, email)
            .unwrap()
            .status
    };
    let (code, _) = post(&server, "127.0.0.2", "list=open&email=signup%40example.org").await;
    assert_eq!(code, 200);
    assert_eq!(
        status("open", "signup@example.org"),
        SubscriberStatus::Active
    );
    assert_eq!(confirmations_to(&server.store, "signup@example.org"), 0);

    let (code, body) = post(
        &server,
        "127.0.0.3",
        "list=open&email=stranger%40example.org",
    )
    .await;
    assert_eq!(code, 200);
    assert!(body.contains("confirm"), "{body}");
    assert_eq!(
        status("open", "stranger@example.org"),
        SubscriberStatus::Unconfirmed
    );
    assert_eq!(confirmations_to(&server.store, "stranger@example.org"), 1);

    // A trusted caller does not override a list that wants double opt-in.
    let (code, _) = post(&server, "127.0.0.2", "list=weekly&email=both%40example.org").await;
    assert_eq!(code, 200);
    assert_eq!(
        status("weekly", "both@example.org"),
        SubscriberStatus::Unconfirmed
    );

    // Addresses that are not ones are refused with the reason (issue 21.2).
    let (code, body) = post(&server, "127.0.0.2", "list=open&email=two%40%40remote.test").await;
    assert_eq!(code, 400);
    assert!(
        body.contains("two@@remote.test") && body.contains("not an address"),
        "{body}"
    );
}
