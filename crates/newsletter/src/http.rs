//! The newsletter's HTTP routes, merged by the binary into the HTTP listener: the public
//! subscribe form, confirmation, unsubscribe (RFC 8058 one-click), click redirects, the
//! open-tracking pixel, and read-only JSON for the admin.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use store::{
    CampaignId, HistoryRef, NewSubscriber, Newsletters, Outcome, StoreError, SubscriberId,
    SubscriberStatus,
};

use crate::engine::{Engine, about_of};
use crate::template::escape_html;
use crate::token::Token;

/// The routes; state is the engine.
pub fn router(engine: Engine) -> Router {
    Router::new()
        .route("/subscribe", post(subscribe))
        .route("/confirm/{token}", get(confirm))
        .route(
            "/unsubscribe/{token}",
            get(unsubscribe_page).post(unsubscribe),
        )
        .route("/c/{token}", get(click))
        .route("/o/{token}", get(open))
        .route("/api/lists", get(api_lists))
        .route("/api/lists/{name}/subscribers", get(api_subscribers))
        .route("/api/campaigns", get(api_campaigns))
        .route("/api/campaigns/{id}", get(api_campaign))
        .route("/api/sequences", get(api_sequences))
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

fn json_result(result: Option<Result<Value, StoreError>>) -> Response {
    match result {
        Some(Ok(v)) => json_response(StatusCode::OK, v),
        Some(Err(StoreError::NotFound { what })) => json_response(
            StatusCode::NOT_FOUND,
            json!({ "error": format!("{what} not found") }),
        ),
        Some(Err(e)) => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({ "error": e.to_string() }),
        ),
        None => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({ "error": "internal error" }),
        ),
    }
}

/// `application/x-www-form-urlencoded` pairs (axum's own form support is not built in).
pub(crate) fn form_pairs(body: &str) -> Vec<(String, String)> {
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
    BadAddress,
}

async fn subscribe(State(engine): State<Engine>, body: Bytes) -> Response {
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
        let list = match store.list(&list) {
            Ok(l) => l,
            Err(StoreError::NotFound { .. }) => return Ok(Subscribed::UnknownList),
            Err(e) => return Err(e),
        };
        let status = if list.double_opt_in {
            SubscriberStatus::Unconfirmed
        } else {
            SubscriberStatus::Active
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
            Err(StoreError::Invalid(_)) => return Ok(Subscribed::BadAddress),
            // Someone on the list already: a second confirmation mail when still
            // unconfirmed, otherwise the same answer, so the form does not tell strangers
            // who is subscribed.
            Err(StoreError::AlreadyExists { .. }) => {
                let existing = store.subscriber_by_email(list.id, &email)?;
                if existing.status == SubscriberStatus::Unconfirmed {
                    engine.send_confirmation(&list, &existing, now)?;
                }
                return Ok(if list.double_opt_in {
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
        if list.double_opt_in {
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
        Some(Ok(Subscribed::UnknownList)) => page(
            StatusCode::NOT_FOUND,
            "Subscription",
            "<p>There is no such list.</p>",
        ),
        Some(Ok(Subscribed::BadAddress)) => page(
            StatusCode::BAD_REQUEST,
            "Subscription",
            "<p>That is not an email address.</p>",
        ),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "newsletter: subscribe failed");
            failed()
        }
        None => failed(),
    }
}

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
    // A page with a button, not an unsubscribe: link scanners fetch every URL of a mail.
    page(
        StatusCode::OK,
        "Unsubscribe",
        &format!(
            "<form method=\"post\" action=\"{}/unsubscribe/{}\">\n<input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\n<button type=\"submit\">Unsubscribe</button>\n</form>",
            escape_html(&engine.config().base_url),
            escape_html(&token)
        ),
    )
}

/// RFC 8058 one-click (body `List-Unsubscribe=One-Click`) and the page's button alike.
async fn unsubscribe(State(engine): State<Engine>, Path(token): Path<String>) -> Response {
    let Some(Token::Unsubscribe { origin, subscriber }) = engine.keys().verify(&token) else {
        return not_found();
    };
    let result = blocking(&engine, move |engine| -> Result<(), StoreError> {
        let store = &engine.inner.store;
        let s = store.subscriber(SubscriberId(subscriber))?;
        if s.status != SubscriberStatus::Unsubscribed {
            store.subscriber_set_status(
                s.id,
                SubscriberStatus::Unsubscribed,
                origin.map(about_of),
                engine.now(),
            )?;
        }
        Ok(())
    })
    .await;
    match result {
        // A subscriber removed since is as unsubscribed as can be.
        Some(Ok(())) | Some(Err(StoreError::NotFound { .. })) => page(
            StatusCode::OK,
            "Unsubscribed",
            "<p>You will receive no more mail from this list.</p>",
        ),
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
            let store = &engine.inner.store;
            let mut out = Vec::new();
            for l in store.lists()? {
                let counts = store.subscriber_counts(l.id)?;
                out.push(json!({
                    "id": l.id.0,
                    "name": l.name,
                    "from_address": l.from_address,
                    "from_name": l.from_name,
                    "double_opt_in": l.double_opt_in,
                    "created": l.created,
                    "subscribers": counts,
                }));
            }
            Ok(Value::Array(out))
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
            let rows: Vec<Value> = rows
                .into_iter()
                .map(|s| {
                    json!({
                        "id": s.id.0,
                        "email": s.email,
                        "name": s.name,
                        "attributes": s.attributes,
                        "status": s.status.as_str(),
                        "created": s.created,
                        "confirmed": s.confirmed,
                        "hard_bounces": s.hard_bounces,
                        "soft_bounces": s.soft_bounces,
                    })
                })
                .collect();
            Ok(json!({ "subscribers": rows, "next_after": next }))
        })
        .await,
    )
}

fn campaign_json(c: &store::Campaign) -> Value {
    json!({
        "id": c.id.0,
        "list": c.list.0,
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
            let about = HistoryRef::Campaign(c.id);
            let mut totals = serde_json::Map::new();
            for outcome in Outcome::ALL {
                totals.insert(outcome.as_str().into(), store.count(about, outcome)?.into());
            }
            let mut v = campaign_json(&c);
            v["text"] = c.text.clone().into();
            v["html"] = c.html.clone().into();
            v["totals"] = Value::Object(totals);
            v["links"] = store.links(about)?.into();
            Ok(v)
        })
        .await,
    )
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
