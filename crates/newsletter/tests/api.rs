//! The admin's JSON write endpoints, through the router with no socket.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use newsletter::{Engine, NewsletterConfig};
use serde_json::{Value, json};
use store::prelude::*;
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

#[tokio::test]
async fn the_suppression_list_over_json() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let router = newsletter::router(engine(&store));

    let (status, v) = call(
        &router,
        "POST",
        "/api/suppressions",
        r#"{"address": "Ann@Example.org", "reason": "complained", "note": "by phone"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v, json!({"address": "ann@example.org", "added": true}));
    let (_, v) = call(
        &router,
        "POST",
        "/api/suppressions",
        r#"{"address": "ann@example.org"}"#,
    )
    .await;
    assert_eq!(v["added"], false);
    for bad in [
        r#"{"address": "ann@example.org", "reason": "annoyed"}"#,
        r#"{"address": "x@y@remote.test"}"#,
        r#"{"reason": "manual"}"#,
    ] {
        let (status, v) = call(&router, "POST", "/api/suppressions", bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {v}");
    }
    for i in 0..3 {
        let body = json!({"address": format!("r{i}@example.org")}).to_string();
        call(&router, "POST", "/api/suppressions", &body).await;
    }

    // Pages in address order.
    let (status, v) = call(&router, "GET", "/api/suppressions?limit=2", "").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["total"], 4);
    assert_eq!(v["suppressions"][0]["address"], "ann@example.org");
    assert_eq!(v["suppressions"][0]["reason"], "complained");
    assert_eq!(v["suppressions"][0]["note"], "by phone");
    assert_eq!(v["next_after"], "r0@example.org");
    let (_, v) = call(
        &router,
        "GET",
        "/api/suppressions?limit=2&after=r0@example.org",
        "",
    )
    .await;
    let page: Vec<&str> = v["suppressions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["address"].as_str().unwrap())
        .collect();
    assert_eq!(page, ["r1@example.org", "r2@example.org"]);

    let (status, v) = call(&router, "DELETE", "/api/suppressions/ANN@example.org", "").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["removed"], "ann@example.org");
    let (status, _) = call(&router, "DELETE", "/api/suppressions/ann@example.org", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(store.suppression_count().unwrap(), 3);
}

#[tokio::test]
async fn campaign_preview_and_test_over_json() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let router = newsletter::router(engine(&store));
    let body = json!({"name": "weekly", "from_address": "news@example.com"});
    assert_eq!(
        call(&router, "POST", "/api/lists", &body.to_string())
            .await
            .0,
        StatusCode::CREATED
    );
    let body = json!({"email": "anna@example.org", "name": "Anna"});
    let (status, _) = call(
        &router,
        "POST",
        "/api/lists/weekly/subscribers",
        &body.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let body = json!({"list": "weekly", "subject": "Hi {{name|there}}", "text": "x", "send_at": 4_000_000_000i64});
    let (_, v) = call(&router, "POST", "/api/campaigns", &body.to_string()).await;
    let id = v["id"].as_i64().unwrap();

    let (status, v) = call(
        &router,
        "GET",
        &format!("/api/campaigns/{id}/preview?subscriber=anna%40example.org"),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["subject"], "Hi Anna");
    assert_eq!(v["subscriber"], "anna@example.org");
    let (_, v) = call(&router, "GET", &format!("/api/campaigns/{id}/preview"), "").await;
    assert_eq!(v["subject"], "Hi there");
    let (status, _) = call(
        &router,
        "GET",
        &format!("/api/campaigns/{id}/preview?subscriber=nobody%40example.org"),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, v) = call(
        &router,
        "POST",
        &format!("/api/campaigns/{id}/test"),
        r#"{"to": "me@example.net"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["subject"], "[TEST] Hi there");
    let (status, _) = call(
        &router,
        "POST",
        &format!("/api/campaigns/{id}/test"),
        r#"{"to": "x@@y"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(store.queue_list().unwrap().len(), 1);
    assert_eq!(
        store.campaign(CampaignId(id)).unwrap().state,
        CampaignState::Scheduled
    );

    // Edit while scheduled, then copy: a draft, or scheduled with send_at.
    let (status, v) = call(
        &router,
        "PATCH",
        &format!("/api/campaigns/{id}"),
        r#"{"subject": "Hello {{name|you}}", "rate_per_second": 3}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["subject"], "Hello {{name|you}}");
    assert_eq!(v["rate_per_second"], 3);
    let (status, _) = call(&router, "PATCH", &format!("/api/campaigns/{id}"), "{}").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, v) = call(&router, "POST", &format!("/api/campaigns/{id}/copy"), "").await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["state"], "draft");
    assert_eq!(v["subject"], "Hello {{name|you}}");
    let (status, v) = call(
        &router,
        "POST",
        &format!("/api/campaigns/{id}/copy"),
        r#"{"send_at": 4000000100}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["state"], "scheduled");
    // Once cancelled (or sending), an edit is refused.
    let (status, _) = call(&router, "POST", &format!("/api/campaigns/{id}/cancel"), "").await;
    assert_eq!(status, StatusCode::OK);
    let (status, v) = call(
        &router,
        "PATCH",
        &format!("/api/campaigns/{id}"),
        r#"{"subject": "late"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
}
