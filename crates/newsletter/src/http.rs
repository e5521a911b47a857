//! The newsletter's HTTP routes, merged by the binary into the HTTP listener: the public
//! subscribe form, confirmation, unsubscribe (RFC 8058 one-click), click redirects, the
//! open-tracking pixel, and JSON for the admin: reads, and the same changes the CLI makes,
//! through the same rules (`admin.rs`).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use store::{
    CampaignId, HistoryRef, NewStep, NewSubscriber, Newsletters, Outcome, SequenceId, StoreError,
    SubscriberId, SubscriberStatus,
};

use crate::admin::{
    self, AdminError, CampaignRequest, NewList, SequenceRequest, SubscriberRequest, SubscriberView,
    SuppressionView,
};
use crate::engine::{Engine, about_of};
use crate::report;
use crate::template::escape_html;
use crate::token::Token;

/// The routes; state is the engine.
pub fn router(engine: Engine) -> Router {
    Router::new()
        .route("/subscribe", post(subscribe))
        .route("/confirm/{token}", get(confirm_page).post(confirm))
        .route(
            "/unsubscribe/{token}",
            get(unsubscribe_page).post(unsubscribe),
        )
        .route("/c/{token}", get(click))
        .route("/o/{token}", get(open))
        .route("/api/lists", get(api_lists).post(api_list_add))
        .route("/api/lists/{name}", delete(api_list_remove))
        .route(
            "/api/lists/{name}/subscribers",
            get(api_subscribers).post(api_subscriber_add),
        )
        .route(
            "/api/lists/{name}/subscribers/{email}",
            delete(api_subscriber_remove),
        )
        .route(
            "/api/lists/{name}/subscribers/{email}/unsubscribe",
            post(api_subscriber_unsubscribe),
        )
        .route("/api/campaigns", get(api_campaigns).post(api_campaign_add))
        .route(
            "/api/campaigns/{id}",
            get(api_campaign).patch(api_campaign_edit),
        )
        .route("/api/campaigns/{id}/copy", post(api_campaign_copy))
        .route("/api/campaigns/{id}/report.csv", get(api_campaign_report))
        .route("/api/steps/{id}/report.csv", get(api_step_report))
        .route("/api/campaigns/{id}/preview", get(api_campaign_preview))
        .route("/api/campaigns/{id}/test", post(api_campaign_test))
        .route("/api/campaigns/{id}/{action}", post(api_campaign_state))
        .route("/api/sequences", get(api_sequences).post(api_sequence_add))
        .route("/api/sequences/{id}", delete(api_sequence_remove))
        .route("/api/sequences/{id}/steps", post(api_step_add))
        .route(
            "/api/suppressions",
            get(api_suppressions).post(api_suppression_add),
        )
        .route(
            "/api/suppressions/{address}",
            delete(api_suppression_remove),
        )
        .with_state(engine)
}

/// Runs store work on the blocking pool.
async fn blocking<T: Send + 'static>(
    engine: &Engine,
    work: impl FnOnce(&Engine) -> T + Send + 'static,
) -> Option<T> {
    let engine = engine.clone();
    tokio::task::spawn_blocking(move || work(&engine))
        .await
        .ok()
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title></head>\n<body>\n<h1>{t}</h1>\n{body}\n</body></html>\n",
            t = escape_html(title)
        ),
    )
        .into_response()
}

fn not_found() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Not found",
        "<p>This link is not valid.</p>",
    )
}

fn failed() -> Response {
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again later",
        "<p>Something went wrong on our side; please try again in a few minutes.</p>",
    )
}

fn json_response(status: StatusCode, value: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn json_result(result: Option<Result<Value, AdminError>>) -> Response {
    json_result_with(StatusCode::OK, result)
}

/// Like [`json_result`], answering `status` on success: 201 for what was created. A broken
/// rule is 400, an unknown name 404, a taken name or a refused state change 409.
fn json_result_with(status: StatusCode, result: Option<Result<Value, AdminError>>) -> Response {
    let error =
        |status: StatusCode, message: String| json_response(status, json!({ "error": message }));
    match result {
        Some(Ok(v)) => json_response(status, v),
        Some(Err(AdminError::Store(StoreError::NotFound { what }))) => {
            error(StatusCode::NOT_FOUND, format!("{what} not found"))
        }
        Some(Err(AdminError::Store(e @ StoreError::AlreadyExists { .. }))) => {
            error(StatusCode::CONFLICT, e.to_string())
        }
        Some(Err(e @ AdminError::Refused(_))) => error(StatusCode::CONFLICT, e.to_string()),
        Some(Err(AdminError::Store(StoreError::Invalid(e)))) => error(StatusCode::BAD_REQUEST, e),
        Some(Err(e @ (AdminError::Invalid { .. } | AdminError::Unreadable(_)))) => {
            error(StatusCode::BAD_REQUEST, e.to_string())
        }
        Some(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        None => error(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into()),
    }
}

/// `application/x-www-form-urlencoded` pairs (axum's own form support is not built in).
/// Public for the fuzz target of the HTTP inputs (crates/fuzz-targets).
pub fn form_pairs(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                match bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim())
}

enum Subscribed {
    Confirm,
    Active,
    UnknownList,
    /// Why the address is not one.
    BadAddress(String),
    /// A confirmation went to this address less than the interval ago (seconds left).
    TooSoon(i64),
}

/// Limits on confirmation mail, so the public form cannot be used to flood a stranger's
/// mailbox: one confirmation per address within `confirm_interval`, and at most
/// `subscribe_per_hour` requests per caller address (per /64 for IPv6). In memory, bounded.
#[derive(Default)]
pub(crate) struct SubscribeLimits {
    /// Address (lower case) -> when its last confirmation mail went out.
    confirmations: std::sync::Mutex<Bounded<String>>,
    /// Caller -> start of its hour and requests in it.
    callers: std::sync::Mutex<Bounded<std::net::IpAddr>>,
}

/// Entries remembered at most per map; the oldest go first.
const LIMIT_ENTRIES: usize = 10_000;

/// A map of (since, count) bounded to `LIMIT_ENTRIES`.
struct Bounded<K> {
    entries: std::collections::HashMap<K, (i64, u32)>,
}

impl<K> Default for Bounded<K> {
    fn default() -> Self {
        Bounded {
            entries: std::collections::HashMap::new(),
        }
    }
}

impl<K: Eq + std::hash::Hash + Clone> Bounded<K> {
    /// Counts one event for `key` in a window of `window` seconds starting at its first
    /// event; `Err(seconds left)` when `max` were already counted in the window.
    fn count(&mut self, key: &K, now: i64, window: i64, max: u32) -> Result<(), i64> {
        if let Some((since, n)) = self.entries.get_mut(key) {
            if now - *since < window {
                if *n >= max {
                    return Err(window - (now - *since));
                }
                *n += 1;
                return Ok(());
            }
            *since = now;
            *n = 1;
            return Ok(());
        }
        if self.entries.len() >= LIMIT_ENTRIES {
            self.entries.retain(|_, (since, _)| now - *since < window);
            if self.entries.len() >= LIMIT_ENTRIES
                && let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (since, _))| *since)
                    .map(|(k, _)| k.clone())
            {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(key.clone(), (now, 1));
        Ok(())
    }
}

impl SubscribeLimits {
    /// Counts a request from `caller`; `Err(seconds)` when it is over its hourly share.
    fn caller(&self, caller: std::net::IpAddr, per_hour: u32, now: i64) -> Result<(), i64> {
        let key = match caller.to_canonical() {
            std::net::IpAddr::V6(v6) => {
                std::net::IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into())
            }
            v4 => v4,
        };
        self.callers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .count(&key, now, 3600, per_hour)
    }

    /// Claims the one confirmation mail `email` may get per interval; `Err(seconds)` when
    /// one went out less than an interval ago.
    fn confirmation(&self, email: &str, interval: i64, now: i64) -> Result<(), i64> {
        self.confirmations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .count(&email.to_lowercase(), now, interval, 1)
    }
}

/// The answer to a subscribe request refused by the limits: 429 with the wait.
fn too_many(text: &str, retry_after: i64) -> Response {
    let mut response = page(
        StatusCode::TOO_MANY_REQUESTS,
        "Subscription",
        &format!("<p>{}</p>", escape_html(text)),
    );
    if let Ok(value) = header::HeaderValue::from_str(&retry_after.max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// Largest subscribe form read.
const FORM_LIMIT: usize = 64 * 1024;

async fn subscribe(State(engine): State<Engine>, request: axum::extract::Request) -> Response {
    // The caller's address, when the listener recorded it (it does; tests calling the
    // router directly may not).
    let caller = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let Ok(body) = axum::body::to_bytes(request.into_body(), FORM_LIMIT).await else {
        return page(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Subscription",
            "<p>The form is too large.</p>",
        );
    };
    let config = engine.config();
    if let Some(caller) = caller
        && let Err(wait) =
            engine
                .inner
                .subscribe_limits
                .caller(caller, config.subscribe_per_hour, engine.now())
    {
        tracing::info!(%caller, "newsletter: subscribe request refused: too many from this address");
        return too_many(
            &format!(
                "Too many subscription requests from your address; please try again in {} minutes.",
                (wait + 59) / 60
            ),
            wait,
        );
    }
    let pairs = form_pairs(&String::from_utf8_lossy(&body));
    let (Some(list), Some(email)) = (field(&pairs, "list"), field(&pairs, "email")) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Subscription",
            "<p>Please give a list and an email address.</p>",
        );
    };
    let (list, email) = (list.to_string(), email.to_string());
    let name = field(&pairs, "name").unwrap_or("").to_string();
    let result = blocking(&engine, move |engine| -> Result<Subscribed, StoreError> {
        let store = &engine.inner.store;
        let now = engine.now();
        let interval = engine.config().confirm_interval.as_secs() as i64;
        let may_confirm = |email: &str| {
            engine
                .inner
                .subscribe_limits
                .confirmation(email, interval, now)
        };
        let list = match store.list(&list) {
            Ok(l) => l,
            Err(StoreError::NotFound { .. }) => return Ok(Subscribed::UnknownList),
            Err(e) => return Err(e),
        };
        // The form's caller vouches for nothing: anyone can type a stranger's address, so
        // every list asks that address for a confirmation, unless the caller is one the
        // operator trusts to have checked it (a signup backend on a listed network) and
        // the list does not want double opt-in anyway.
        let trusted = caller.is_some_and(|c| engine.config().trusts_subscriber(c));
        let status = if trusted && !list.double_opt_in {
            SubscriberStatus::Active
        } else {
            SubscriberStatus::Unconfirmed
        };
        let added = store.subscriber_add(
            list.id,
            NewSubscriber {
                email: email.clone(),
                name,
                attributes: Default::default(),
                status,
            },
            now,
        );
        let subscriber = match added {
            Ok(id) => store.subscriber(id)?,
            Err(StoreError::Invalid(why)) => return Ok(Subscribed::BadAddress(why)),
            // Someone on the list already: a second confirmation mail when still
            // unconfirmed, otherwise the same answer, so the form does not tell strangers
            // who is subscribed.
            Err(StoreError::AlreadyExists { .. }) => {
                let existing = store.subscriber_by_email(list.id, &email)?;
                if existing.status == SubscriberStatus::Unconfirmed {
                    if let Err(wait) = may_confirm(&existing.email) {
                        return Ok(Subscribed::TooSoon(wait));
                    }
                    engine.send_confirmation(&list, &existing, now)?;
                }
                return Ok(if existing.status == SubscriberStatus::Unconfirmed {
                    Subscribed::Confirm
                } else {
                    Subscribed::Active
                });
            }
            Err(e) => return Err(e),
        };
        store.log_action(
            None,
            &format!("subscribed {} to {}", subscriber.email, list.name),
            now,
        )?;
        if subscriber.status == SubscriberStatus::Unconfirmed {
            // A new subscriber whose address had a confirmation for another list lately
            // waits too: the limit protects the mailbox, whichever list is named.
            if let Err(wait) = may_confirm(&subscriber.email) {
                return Ok(Subscribed::TooSoon(wait));
            }
            engine.send_confirmation(&list, &subscriber, now)?;
            Ok(Subscribed::Confirm)
        } else {
            Ok(Subscribed::Active)
        }
    })
    .await;
    match result {
        Some(Ok(Subscribed::Confirm)) => page(
            StatusCode::OK,
            "Almost there",
            "<p>We sent you a mail: open the link in it to confirm your subscription.</p>",
        ),
        Some(Ok(Subscribed::Active)) => page(
            StatusCode::OK,
            "Subscribed",
            "<p>You are subscribed. Thank you!</p>",
        ),
        Some(Ok(Subscribed::TooSoon(wait))) => too_many(
            &format!(
                "A confirmation mail was sent to this address recently: please look for it (and in the spam folder). Another can be sent in {} minutes.",
                (wait + 59) / 60
            ),
            wait,
        ),
        Some(Ok(Subscribed::UnknownList)) => page(
            StatusCode::NOT_FOUND,
            "Subscription",
            "<p>There is no such list.</p>",
        ),
        Some(Ok(Subscribed::BadAddress(why))) => page(
            StatusCode::BAD_REQUEST,
            "Subscription",
            &format!("<p>{}</p>", escape_html(&why)),
        ),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "newsletter: subscribe failed");
            failed()
        }
        None => failed(),
    }
}

async fn confirm_page(State(engine): State<Engine>, Path(token): Path<String>) -> Response {
    let Some(Token::Confirm { .. }) = engine.keys().verify(&token) else {
        return not_found();
    };
    // A page with a button, not a confirmation: link scanners fetch every URL of a mail,
    // and a scanned confirmation link would subscribe whoever's address was typed in.
    page(
        StatusCode::OK,
        "Confirm your subscription",
        &format!(
            "<form method=\"post\" action=\"{}/confirm/{}\">\n<button type=\"submit\">Confirm my subscription</button>\n</form>",
            escape_html(&engine.config().base_url),
            escape_html(&token)
        ),
    )
}

/// The confirmation page's button.
async fn confirm(State(engine): State<Engine>, Path(token): Path<String>) -> Response {
    let Some(Token::Confirm { subscriber }) = engine.keys().verify(&token) else {
        return not_found();
    };
    let result = blocking(&engine, move |engine| -> Result<bool, StoreError> {
        let store = &engine.inner.store;
        let s = store.subscriber(SubscriberId(subscriber))?;
        match s.status {
            SubscriberStatus::Unconfirmed => {
                store.subscriber_set_status(s.id, SubscriberStatus::Active, None, engine.now())?;
                Ok(true)
            }
            SubscriberStatus::Active => Ok(true),
            // Someone who left or bounced is not brought back by an old mail.
            SubscriberStatus::Unsubscribed | SubscriberStatus::Bounced => Ok(false),
        }
    })
    .await;
    match result {
        Some(Ok(true)) => page(
            StatusCode::OK,
            "Subscription confirmed",
            "<p>Thank you: your subscription is confirmed.</p>",
        ),
        Some(Ok(false)) => page(
            StatusCode::OK,
            "Not confirmed",
            "<p>This subscription has ended; subscribe again to receive mail.</p>",
        ),
        Some(Err(StoreError::NotFound { .. })) => not_found(),
        _ => failed(),
    }
}

async fn unsubscribe_page(State(engine): State<Engine>, Path(token): Path<String>) -> Response {
    let Some(Token::Unsubscribe { .. }) = engine.keys().verify(&token) else {
        return not_found();
    };
    // A page with buttons, not an unsubscribe: link scanners fetch every URL of a mail.
    let action = format!(
        "{}/unsubscribe/{}",
        escape_html(&engine.config().base_url),
        escape_html(&token)
    );
    page(
        StatusCode::OK,
        "Unsubscribe",
        &format!(
            "<form method=\"post\" action=\"{action}\">\n<input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\n<button type=\"submit\">Unsubscribe</button>\n</form>\n\
             <form method=\"post\" action=\"{action}\">\n<input type=\"hidden\" name=\"scope\" value=\"all\">\n<button type=\"submit\">Unsubscribe from every list of this sender</button>\n</form>"
        ),
    )
}

/// RFC 8058 one-click (body `List-Unsubscribe=One-Click`) and the page's buttons alike;
/// `scope=all` (the second button) leaves every list (`admin::reader_unsubscribe`).
async fn unsubscribe(
    State(engine): State<Engine>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    let Some(Token::Unsubscribe { origin, subscriber }) = engine.keys().verify(&token) else {
        return not_found();
    };
    let pairs = form_pairs(&String::from_utf8_lossy(
        &body[..body.len().min(FORM_LIMIT)],
    ));
    let scope = if field(&pairs, "scope") == Some("all") {
        admin::LeaveScope::Everywhere
    } else {
        admin::LeaveScope::ThisList
    };
    let result = blocking(&engine, move |engine| {
        admin::reader_unsubscribe(
            newsletters(engine),
            SubscriberId(subscriber),
            origin.map(about_of),
            scope,
            engine.now(),
        )
    })
    .await;
    let text = match scope {
        admin::LeaveScope::ThisList => "<p>You will receive no more mail from this list.</p>",
        admin::LeaveScope::Everywhere => {
            "<p>You will receive no more mail from any list of this sender.</p>"
        }
    };
    match result {
        Some(Ok(())) => page(StatusCode::OK, "Unsubscribed", text),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "newsletter: unsubscribe failed");
            failed()
        }
        None => failed(),
    }
}

async fn click(State(engine): State<Engine>, Path(token): Path<String>) -> Response {
    let Some(Token::Click {
        origin,
        subscriber,
        link,
    }) = engine.keys().verify(&token)
    else {
        return not_found();
    };
    let about = about_of(origin);
    let result = blocking(
        &engine,
        move |engine| -> Result<Option<String>, StoreError> {
            let store = &engine.inner.store;
            let Some(url) = store.links(about)?.into_iter().nth(link as usize) else {
                return Ok(None);
            };
            // The reader goes where the mail said even if the click cannot be recorded.
            if let Err(e) = store.record(
                about,
                SubscriberId(subscriber),
                Outcome::Click,
                Some(&url),
                engine.now(),
            ) {
                tracing::warn!(error = %e, "newsletter: click not recorded");
            }
            Ok(Some(url))
        },
    )
    .await;
    match result {
        Some(Ok(Some(url))) => match axum::http::HeaderValue::from_str(&url) {
            Ok(location) => {
                let mut r = StatusCode::FOUND.into_response();
                r.headers_mut().insert(header::LOCATION, location);
                r
            }
            Err(_) => not_found(),
        },
        Some(Ok(None)) | Some(Err(StoreError::NotFound { .. })) => not_found(),
        _ => failed(),
    }
}

/// A 1x1 transparent GIF, the open-tracking pixel's answer.
pub(crate) const PIXEL_GIF: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// The open-tracking pixel: records an open (the first joins the set, every one counts in
/// the day's total) and answers the image whether or not that could be recorded. The route
/// is served whatever `track_opens` says, so mail sent while it was on keeps working.
async fn open(State(engine): State<Engine>, Path(token): Path<String>) -> Response {
    let Some(Token::Open { origin, subscriber }) = engine.keys().verify(&token) else {
        return not_found();
    };
    let about = about_of(origin);
    let recorded = blocking(&engine, move |engine| {
        engine.inner.store.record(
            about,
            SubscriberId(subscriber),
            Outcome::Open,
            None,
            engine.now(),
        )
    })
    .await;
    match recorded {
        Some(Ok(())) => {}
        Some(Err(e)) => tracing::warn!(error = %e, "newsletter: open not recorded"),
        None => tracing::warn!("newsletter: open not recorded"),
    }
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "image/gif"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PIXEL_GIF,
    )
        .into_response()
}

async fn api_lists(State(engine): State<Engine>) -> Response {
    json_result(
        blocking(&engine, |engine| {
            Ok(serde_json::to_value(admin::lists(newsletters(engine))?).expect("lists serialise"))
        })
        .await,
    )
}

fn query_param(uri: &Uri, name: &str) -> Option<String> {
    form_pairs(uri.query()?)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

async fn api_subscribers(
    State(engine): State<Engine>,
    Path(name): Path<String>,
    uri: Uri,
) -> Response {
    let after = query_param(&uri, "after").and_then(|a| a.parse::<i64>().ok());
    let limit = query_param(&uri, "limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(100)
        .clamp(1, 1000);
    json_result(
        blocking(&engine, move |engine| {
            let store = &engine.inner.store;
            let list = store.list(&name)?;
            let rows = store.subscribers(list.id, after.map(SubscriberId), limit)?;
            let next = (rows.len() == limit)
                .then(|| rows.last().map(|s| s.id.0))
                .flatten();
            let rows: Vec<SubscriberView> = rows.into_iter().map(SubscriberView::from).collect();
            Ok(json!({ "subscribers": rows, "next_after": next }))
        })
        .await,
    )
}

fn campaign_json(c: &store::Campaign) -> Value {
    json!({
        "id": c.id.0,
        "list": c.list.0,
        "also": c.also.iter().map(|l| l.0).collect::<Vec<_>>(),
        "segment": c.segment.texts(),
        "subject": c.subject,
        "send_at": c.send_at,
        "state": c.state.as_str(),
        "rate_per_second": c.rate_per_second,
        "rate_per_domain": c.rate_per_domain,
        "created": c.created,
    })
}

async fn api_campaigns(State(engine): State<Engine>) -> Response {
    json_result(
        blocking(&engine, |engine| {
            Ok(Value::Array(
                engine
                    .inner
                    .store
                    .campaigns()?
                    .iter()
                    .map(campaign_json)
                    .collect(),
            ))
        })
        .await,
    )
}

async fn api_campaign(State(engine): State<Engine>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return json_response(
            StatusCode::NOT_FOUND,
            json!({ "error": "no such campaign" }),
        );
    };
    json_result(
        blocking(&engine, move |engine| {
            let store = &engine.inner.store;
            let c = store.campaign(CampaignId(id))?;
            let totals = admin::campaign_totals(newsletters(engine), c.id)?;
            let mut v = campaign_json(&c);
            v["text"] = c.text.clone().into();
            v["html"] = c.html.clone().into();
            v["totals"] = json!(totals);
            v["links"] = store.links(HistoryRef::Campaign(c.id))?.into();
            let clicks = report::link_clicks(newsletters(engine), HistoryRef::Campaign(c.id))?;
            v["link_clicks"] = serde_json::to_value(clicks).expect("link clicks serialise");
            Ok(v)
        })
        .await,
    )
}

/// `GET /api/campaigns/<id>/report.csv`: the per-recipient report (`report::report_csv`).
async fn api_campaign_report(State(engine): State<Engine>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id, "campaign") {
        Ok(id) => id,
        Err(r) => return *r,
    };
    csv_result(
        blocking(&engine, move |engine| {
            let store = newsletters(engine);
            let campaign = store.campaign(CampaignId(id))?;
            report::report_csv(store, HistoryRef::Campaign(campaign.id))
        })
        .await,
    )
}

/// `GET /api/steps/<id>/report.csv`: the same for one step of a sequence.
async fn api_step_report(State(engine): State<Engine>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id, "step") {
        Ok(id) => id,
        Err(r) => return *r,
    };
    csv_result(
        blocking(&engine, move |engine| {
            let store = newsletters(engine);
            let step = store.step(store::StepId(id))?;
            report::report_csv(store, HistoryRef::Step(step.id))
        })
        .await,
    )
}

/// A CSV answer (`text/csv`), or the JSON error [`json_result`] would give.
fn csv_result(result: Option<Result<(Vec<u8>, usize), AdminError>>) -> Response {
    match result {
        Some(Ok((bytes, _))) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            bytes,
        )
            .into_response(),
        Some(Err(e)) => json_result(Some(Err(e))),
        None => json_result(None),
    }
}

async fn api_sequences(State(engine): State<Engine>) -> Response {
    json_result(
        blocking(&engine, |engine| {
            let store = &engine.inner.store;
            let mut out = Vec::new();
            for (seq, steps) in store.sequences()? {
                let mut steps_json = Vec::new();
                for s in steps {
                    let about = HistoryRef::Step(s.id);
                    steps_json.push(json!({
                        "id": s.id.0,
                        "position": s.position,
                        "days_after": s.days_after,
                        "send_minute": s.send_minute,
                        "subject": s.subject,
                        "sent": store.count(about, Outcome::Sent)?,
                        "clicks": store.count(about, Outcome::Click)?,
                        "hard_bounces": store.count(about, Outcome::HardBounce)?,
                        "unsubscribes": store.count(about, Outcome::Unsubscribe)?,
                        "opens": store.count(about, Outcome::Open)?,
                        "skipped": store.count(about, Outcome::Skipped)?,
                        "condition": s.condition.map(|c| c.to_string()),
                        "otherwise": s.otherwise.as_str(),
                        "link_clicks": report::link_clicks(newsletters(engine), about)?,
                    }));
                }
                out.push(json!({
                    "id": seq.id.0,
                    "list": seq.list.0,
                    "name": seq.name,
                    "time_zone": seq.time_zone,
                    "join_existing": seq.join_existing,
                    "created": seq.created,
                    "steps": steps_json,
                }));
            }
            Ok(Value::Array(out))
        })
        .await,
    )
}

fn bad_request(message: impl Into<String>) -> Response {
    json_response(StatusCode::BAD_REQUEST, json!({ "error": message.into() }))
}

/// A JSON request body, or the 400 answer saying why it is not one.
fn parse_body<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, Box<Response>> {
    serde_json::from_slice(body)
        .map_err(|e| Box::new(bad_request(format!("bad request body: {e}"))))
}

/// A numeric id from the path; anything else names nothing (404).
fn parse_id(id: &str, what: &str) -> Result<i64, Box<Response>> {
    id.parse::<i64>().map_err(|_| {
        Box::new(json_response(
            StatusCode::NOT_FOUND,
            json!({ "error": format!("no such {what}") }),
        ))
    })
}

/// The store as the admin rules take it.
fn newsletters(engine: &Engine) -> &dyn Newsletters {
    engine.inner.store.as_ref()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListAdd {
    name: String,
    from_address: String,
    #[serde(default)]
    from_name: String,
    #[serde(default)]
    double_opt_in: bool,
}

async fn api_list_add(State(engine): State<Engine>, body: Bytes) -> Response {
    let req: ListAdd = match parse_body(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let list = NewList {
        name: req.name,
        from_address: req.from_address,
        from_name: req.from_name,
        double_opt_in: req.double_opt_in,
    };
    json_result_with(
        StatusCode::CREATED,
        blocking(&engine, move |engine| {
            let id = admin::list_add(newsletters(engine), &list, engine.now())?;
            Ok(json!({ "id": id.0 }))
        })
        .await,
    )
}

async fn api_list_remove(State(engine): State<Engine>, Path(name): Path<String>) -> Response {
    json_result(
        blocking(&engine, move |engine| {
            engine.inner.store.list_remove(&name)?;
            Ok(json!({ "removed": name }))
        })
        .await,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscriberAdd {
    email: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    attributes: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    confirmed: bool,
}

async fn api_subscriber_add(
    State(engine): State<Engine>,
    Path(list): Path<String>,
    body: Bytes,
) -> Response {
    let req: SubscriberAdd = match parse_body(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let request = SubscriberRequest {
        email: req.email,
        name: req.name,
        attributes: req.attributes,
        confirmed: req.confirmed,
    };
    json_result_with(
        StatusCode::CREATED,
        blocking(&engine, move |engine| {
            let (id, status) =
                admin::subscriber_add(newsletters(engine), &list, request, engine.now())?;
            Ok(json!({ "id": id.0, "status": status.as_str() }))
        })
        .await,
    )
}

async fn api_subscriber_remove(
    State(engine): State<Engine>,
    Path((list, email)): Path<(String, String)>,
) -> Response {
    json_result(
        blocking(&engine, move |engine| {
            let (_, s) = admin::subscriber_remove(newsletters(engine), &list, &email)?;
            Ok(json!({ "id": s.id.0, "removed": s.email }))
        })
        .await,
    )
}

async fn api_subscriber_unsubscribe(
    State(engine): State<Engine>,
    Path((list, email)): Path<(String, String)>,
) -> Response {
    json_result(
        blocking(&engine, move |engine| {
            let (_, s) =
                admin::subscriber_unsubscribe(newsletters(engine), &list, &email, engine.now())?;
            Ok(json!({ "id": s.id.0, "status": SubscriberStatus::Unsubscribed.as_str() }))
        })
        .await,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CampaignAdd {
    list: Option<String>,
    #[serde(default)]
    lists: Vec<String>,
    #[serde(default)]
    segment: Vec<String>,
    subject: String,
    text: String,
    html: Option<String>,
    send_at: Option<i64>,
    rate_per_second: Option<u32>,
    rate_per_domain: Option<u32>,
}

async fn api_campaign_add(State(engine): State<Engine>, body: Bytes) -> Response {
    let req: CampaignAdd = match parse_body(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    // `list` and `lists` together name the lists, `list` first; at least one.
    let mut lists = req.list.into_iter().chain(req.lists);
    let Some(list) = lists.next() else {
        return json_result(Some(Err(AdminError::Unreadable(
            "give the campaign's list: \"list\" or \"lists\"".into(),
        ))));
    };
    let request = CampaignRequest {
        list,
        also: lists.collect(),
        segment: req.segment,
        subject: req.subject,
        text: req.text,
        html: req.html,
        send_at: req.send_at,
        rate_per_second: req.rate_per_second,
        rate_per_domain: req.rate_per_domain,
    };
    json_result_with(
        StatusCode::CREATED,
        blocking(&engine, move |engine| {
            let default_rate = engine.config().rate_per_second;
            let id = admin::campaign_add(newsletters(engine), request, default_rate, engine.now())?;
            Ok(json!({ "id": id.0 }))
        })
        .await,
    )
}

async fn api_campaign_state(
    State(engine): State<Engine>,
    Path((id, action)): Path<(String, String)>,
) -> Response {
    let Some(action) = admin::campaign_action(&action) else {
        return json_response(
            StatusCode::NOT_FOUND,
            json!({ "error": format!("no such action {action:?}") }),
        );
    };
    let id = match parse_id(&id, "campaign") {
        Ok(id) => id,
        Err(r) => return *r,
    };
    json_result(
        blocking(&engine, move |engine| {
            let state =
                admin::campaign_apply(newsletters(engine), CampaignId(id), action, engine.now())?;
            Ok(json!({ "id": id, "state": state.as_str() }))
        })
        .await,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CampaignPatch {
    subject: Option<String>,
    text: Option<String>,
    html: Option<String>,
    send_at: Option<i64>,
    rate_per_second: Option<u32>,
    rate_per_domain: Option<u32>,
    /// Its lists anew, by name, the first first.
    lists: Option<Vec<String>>,
    /// Its segment terms anew; `[]` for every active subscriber.
    segment: Option<Vec<String>>,
}

/// `PATCH /api/campaigns/<id>`: changes a campaign that has not started; 409 once it has.
async fn api_campaign_edit(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let id = match parse_id(&id, "campaign") {
        Ok(id) => id,
        Err(r) => return *r,
    };
    let req: CampaignPatch = match parse_body(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let edit = store::CampaignEdit {
        subject: req.subject,
        text: req.text,
        html: req.html,
        send_at: req.send_at,
        rate_per_second: req.rate_per_second,
        rate_per_domain: req.rate_per_domain,
        ..store::CampaignEdit::default()
    };
    json_result(
        blocking(&engine, move |engine| {
            let store = newsletters(engine);
            let edit =
                admin::with_audience(store, edit, req.lists.as_deref(), req.segment.as_deref())?;
            admin::campaign_edit(store, CampaignId(id), edit, engine.now())?;
            Ok(campaign_json(
                &newsletters(engine).campaign(CampaignId(id))?,
            ))
        })
        .await,
    )
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CampaignCopy {
    send_at: Option<i64>,
}

/// `POST /api/campaigns/<id>/copy` `{"send_at"}`: a new campaign from this one, scheduled,
/// or a draft without `send_at`. An empty body is a draft.
async fn api_campaign_copy(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let id = match parse_id(&id, "campaign") {
        Ok(id) => id,
        Err(r) => return *r,
    };
    let req: CampaignCopy = if body.iter().all(u8::is_ascii_whitespace) {
        CampaignCopy::default()
    } else {
        match parse_body(&body) {
            Ok(r) => r,
            Err(r) => return *r,
        }
    };
    json_result_with(
        StatusCode::CREATED,
        blocking(&engine, move |engine| {
            let copy = admin::campaign_copy(
                newsletters(engine),
                CampaignId(id),
                req.send_at,
                engine.now(),
            )?;
            Ok(campaign_json(&newsletters(engine).campaign(copy)?))
        })
        .await,
    )
}

/// `GET /api/campaigns/<id>/preview?subscriber=ADDRESS`: the campaign rendered for one
/// subscriber of its list (or a sample reader without the parameter).
async fn api_campaign_preview(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    uri: Uri,
) -> Response {
    let id = match parse_id(&id, "campaign") {
        Ok(id) => id,
        Err(r) => return *r,
    };
    let subscriber = query_param(&uri, "subscriber");
    json_result(
        blocking(&engine, move |engine| {
            let preview = admin::campaign_preview(
                newsletters(engine),
                engine.config(),
                CampaignId(id),
                subscriber.as_deref(),
                admin::SAMPLE_ADDRESS,
            )?;
            Ok(serde_json::to_value(preview).expect("a preview serialises"))
        })
        .await,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CampaignTest {
    to: String,
    subscriber: Option<String>,
}

/// `POST /api/campaigns/<id>/test` `{"to", "subscriber"}`: queues one test mail.
async fn api_campaign_test(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let id = match parse_id(&id, "campaign") {
        Ok(id) => id,
        Err(r) => return *r,
    };
    let req: CampaignTest = match parse_body(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    json_result(
        blocking(&engine, move |engine| {
            let preview = admin::campaign_test(
                engine.inner.store.as_ref(),
                engine.config(),
                CampaignId(id),
                &req.to,
                req.subscriber.as_deref(),
                engine.now(),
            )?;
            engine.inner.waker.notify_one();
            Ok(serde_json::to_value(preview).expect("a preview serialises"))
        })
        .await,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SequenceAdd {
    list: String,
    name: String,
    time_zone: Option<String>,
    #[serde(default)]
    join_existing: bool,
}

async fn api_sequence_add(State(engine): State<Engine>, body: Bytes) -> Response {
    let req: SequenceAdd = match parse_body(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let request = SequenceRequest {
        list: req.list,
        name: req.name,
        time_zone: req.time_zone,
        join_existing: req.join_existing,
    };
    json_result_with(
        StatusCode::CREATED,
        blocking(&engine, move |engine| {
            let id = admin::sequence_add(newsletters(engine), &request, engine.now())?;
            Ok(json!({ "id": id.0 }))
        })
        .await,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepAdd {
    days_after: u32,
    send_minute: u16,
    subject: String,
    text: String,
    html: Option<String>,
    /// `clicked:STEP`, `not-opened:STEP`, ...: sent only when it holds.
    condition: Option<String>,
    /// "skip" (default) or "wait": what a reader it does not hold for gets.
    otherwise: Option<String>,
}

async fn api_step_add(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let id = match parse_id(&id, "sequence") {
        Ok(id) => id,
        Err(r) => return *r,
    };
    let req: StepAdd = match parse_body(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    json_result_with(
        StatusCode::CREATED,
        blocking(&engine, move |engine| {
            let (condition, otherwise) =
                admin::step_condition(req.condition.as_deref(), req.otherwise.as_deref())?;
            let step = NewStep {
                days_after: req.days_after,
                send_minute: req.send_minute,
                subject: req.subject,
                text: req.text,
                html: req.html,
                condition,
                otherwise,
            };
            let step = admin::step_add(newsletters(engine), SequenceId(id), step)?;
            Ok(json!({ "id": step.0 }))
        })
        .await,
    )
}

async fn api_sequence_remove(State(engine): State<Engine>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id, "sequence") {
        Ok(id) => id,
        Err(r) => return *r,
    };
    json_result(
        blocking(&engine, move |engine| {
            engine.inner.store.sequence_remove(SequenceId(id))?;
            Ok(json!({ "removed": id }))
        })
        .await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_is_a_1x1_gif() {
        assert!(PIXEL_GIF.starts_with(b"GIF89a"));
        assert_eq!(&PIXEL_GIF[6..10], &[1, 0, 1, 0]);
        assert_eq!(PIXEL_GIF.last(), Some(&0x3b));
    }

    #[test]
    fn forms() {
        assert_eq!(
            form_pairs("list=news&email=a%2Bb%40example.org&name=Anna+B%C3%A9&x"),
            vec![
                ("list".into(), "news".into()),
                ("email".into(), "a+b@example.org".into()),
                ("name".into(), "Anna Bé".into()),
                ("x".into(), "".into()),
            ]
        );
        assert_eq!(
            form_pairs("a=%zz&b=%4"),
            vec![("a".into(), "%zz".into()), ("b".into(), "%4".into())]
        );
        assert_eq!(
            form_pairs("List-Unsubscribe=One-Click"),
            vec![("List-Unsubscribe".into(), "One-Click".into())]
        );
    }
}

/// A page of the suppression list in address order: `?after=ADDRESS&limit=N` (100 by
/// default, at most 1000); `next_after` names the next page's start when there may be one.
async fn api_suppressions(State(engine): State<Engine>, uri: Uri) -> Response {
    let after = query_param(&uri, "after");
    let limit = query_param(&uri, "limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(100)
        .clamp(1, 1000);
    json_result(
        blocking(&engine, move |engine| {
            let store = &engine.inner.store;
            let rows = store.suppressions(after.as_deref(), limit)?;
            let next = (rows.len() == limit)
                .then(|| rows.last().map(|s| s.address.clone()))
                .flatten();
            let rows: Vec<SuppressionView> = rows.into_iter().map(SuppressionView::from).collect();
            Ok(json!({
                "suppressions": rows,
                "next_after": next,
                "total": store.suppression_count()?,
            }))
        })
        .await,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SuppressionAdd {
    address: String,
    /// bounced, complained, unsubscribed or manual (the default).
    reason: Option<String>,
    note: Option<String>,
}

async fn api_suppression_add(State(engine): State<Engine>, body: Bytes) -> Response {
    let req: SuppressionAdd = match parse_body(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    json_result_with(
        StatusCode::CREATED,
        blocking(&engine, move |engine| {
            let reason = admin::suppression_reason(req.reason.as_deref().unwrap_or("manual"))?;
            let added = admin::suppress(
                newsletters(engine),
                &req.address,
                reason,
                req.note.as_deref(),
                engine.now(),
            )?;
            Ok(json!({ "address": store::suppression_key(&req.address), "added": added }))
        })
        .await,
    )
}

async fn api_suppression_remove(
    State(engine): State<Engine>,
    Path(address): Path<String>,
) -> Response {
    json_result(
        blocking(&engine, move |engine| {
            engine.inner.store.unsuppress(&address)?;
            Ok(json!({ "removed": store::suppression_key(&address) }))
        })
        .await,
    )
}
