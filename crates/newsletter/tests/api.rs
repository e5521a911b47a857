//! The admin's JSON write endpoints, through the router with no socket.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use newsletter::{Engine, NewsletterConfig};
use serde_json::{Value, json};
use store::{CampaignId, CampaignState, Newsletters, SqliteStore, SubscriberStatus};
use tower::ServiceExt;

fn engine(store: &Arc<SqliteStore>) -> Engine {
    Engine::new(
        store.clone(),
        store.db_path().parent().unwrap(),
        NewsletterConfig {
            base_url: "http://news.example.com/".into(),
            bounce_domain: "example.com".into(),
            rate_per_second: 0,
            ..NewsletterConfig::default()
        },
        Arc::new(tokio::sync::Notify::new()),
        gate::Clock::with_zone(jiff::tz::TimeZone::UTC),
    )
    .unwrap()
}

async fn call(router: &axum::Router, method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value)
}

#[tokio::test]
async fn lists_subscribers_campaigns_and_sequences_over_json() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let router = newsletter::router(engine(&store));

    // Lists.
    let body = json!({"name": "weekly", "from_address": "news@example.com", "double_opt_in": true});
    let (status, v) = call(&router, "POST", "/api/lists", &body.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert!(v["id"].as_i64().is_some());
    let (status, v) = call(&router, "POST", "/api/lists", &body.to_string()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert!(v["error"].is_string());
    let (status, _) = call(&router, "POST", "/api/lists", "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = call(&router, "POST", "/api/lists", r#"{"name": "x"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let list = store.list("weekly").unwrap();
    assert!(list.double_opt_in);

    // Subscribers: double opt-in leaves them unconfirmed unless the caller says confirmed.
    let (status, v) = call(
        &router,
        "POST",
        "/api/lists/weekly/subscribers",
        r#"{"email": "anna@example.org", "name": "Anna", "attributes": {"city": "Kyoto"}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["status"], "unconfirmed");
    let (status, v) = call(
        &router,
        "POST",
        "/api/lists/weekly/subscribers",
        r#"{"email": "ben@example.org", "confirmed": true}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["status"], "active");
    let anna = store
        .subscriber_by_email(list.id, "anna@example.org")
        .unwrap();
    assert_eq!(anna.attributes["city"], "Kyoto");
    let (status, _) = call(
        &router,
        "POST",
        "/api/lists/weekly/subscribers",
        r#"{"email": "anna@example.org"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = call(
        &router,
        "POST",
        "/api/lists/nosuch/subscribers",
        r#"{"email": "anna@example.org"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(
        &router,
        "POST",
        "/api/lists/weekly/subscribers",
        r#"{"email": "not an address"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, v) = call(
        &router,
        "POST",
        "/api/lists/weekly/subscribers/ben@example.org/unsubscribe",
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        store
            .subscriber_by_email(list.id, "ben@example.org")
            .unwrap()
            .status,
        SubscriberStatus::Unsubscribed
    );
    let (status, _) = call(
        &router,
        "DELETE",
        "/api/lists/weekly/subscribers/ben@example.org",
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(
        &router,
        "DELETE",
        "/api/lists/weekly/subscribers/ben@example.org",
        "",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Campaigns and their state changes.
    let (status, v) = call(
        &router,
        "POST",
        "/api/campaigns",
        r#"{"list": "weekly", "subject": "Hello", "text": "Hi {{name}}", "send_at": 4102444800, "rate_per_second": 5}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let id = v["id"].as_i64().unwrap();
    let c = store.campaign(CampaignId(id)).unwrap();
    assert_eq!(c.state, CampaignState::Scheduled);
    assert_eq!((c.send_at, c.rate_per_second), (4102444800, 5));
    let (status, _) = call(
        &router,
        "POST",
        "/api/campaigns",
        r#"{"list": "nosuch", "subject": "Hello", "text": "Hi"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(&router, "POST", "/api/campaigns", r#"{"list": "weekly"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let url = |action: &str| format!("/api/campaigns/{id}/{action}");
    let (status, v) = call(&router, "POST", &url("resume"), "").await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "resume of a scheduled campaign: {v}"
    );
    let (status, v) = call(&router, "POST", &url("pause"), "").await;
    assert_eq!(
        (status, v["state"].as_str()),
        (StatusCode::OK, Some("paused"))
    );
    let (status, v) = call(&router, "POST", &url("resume"), "").await;
    assert_eq!(
        (status, v["state"].as_str()),
        (StatusCode::OK, Some("sending"))
    );
    let (status, v) = call(&router, "POST", &url("cancel"), "").await;
    assert_eq!(
        (status, v["state"].as_str()),
        (StatusCode::OK, Some("cancelled"))
    );
    let (status, _) = call(&router, "POST", &url("cancel"), "").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        store.campaign(CampaignId(id)).unwrap().state,
        CampaignState::Cancelled
    );
    let (status, _) = call(&router, "POST", "/api/campaigns/99999/pause", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Sequences and steps.
    let (status, v) = call(
        &router,
        "POST",
        "/api/sequences",
        r#"{"list": "weekly", "name": "welcome", "time_zone": "Asia/Tokyo"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let seq = v["id"].as_i64().unwrap();
    let step = r#"{"days_after": 1, "send_minute": 540, "subject": "Day one", "text": "Welcome"}"#;
    let (status, v) = call(
        &router,
        "POST",
        &format!("/api/sequences/{seq}/steps"),
        step,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let (status, _) = call(
        &router,
        "POST",
        &format!("/api/sequences/{seq}/steps"),
        r#"{"days_after": 1, "send_minute": 1440, "subject": "Late", "text": "x"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = call(&router, "POST", "/api/sequences/99999/steps", step).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let all = store.sequences().unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].0.time_zone, "Asia/Tokyo");
    assert_eq!(all[0].1.len(), 1);
    assert_eq!(all[0].1[0].send_minute, 540);

    // Deletes.
    let (status, _) = call(&router, "DELETE", &format!("/api/sequences/{seq}"), "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(store.sequences().unwrap().is_empty());
    let (status, _) = call(&router, "DELETE", "/api/lists/weekly", "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(store.list("weekly").is_err());
    let (status, _) = call(&router, "DELETE", "/api/lists/weekly", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
