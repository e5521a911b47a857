//! Signing in and out: the password (the same argon2 hashes and the same login throttle as
//! IMAP and POP3), the TOTP code of an administrator who turned it on, and the refusal to
//! take a password over plain HTTP from another host.
//!
//! The sign-in form is protected against login CSRF by a double-submit token: the form's
//! GET sets a random cookie and puts the same value in the form.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::html;
use serde::Deserialize;

use crate::session::{COOKIE, Posted, Visitor, cookie, random_token, session_cookie};
use crate::{BASE, Console, Ctx, totp};

const LOGIN_COOKIE: &str = "tegami_login";
/// The longest address or password the form takes (RFC 5321's address limit, and more than
/// any password manager makes).
const MAX_FIELD: usize = 1024;

pub fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route(&format!("{BASE}/login"), get(login_form).post(login))
        .route(
            &format!("{BASE}/login/totp"),
            get(totp_form).post(totp_check),
        )
        .route(&format!("{BASE}/logout"), post(logout))
        .route(&format!("{BASE}/"), get(home))
        .route(BASE, get(|| async { Redirect::to(&format!("{BASE}/")) }))
}

/// Where a signed-in visitor starts: the dashboard for administrators, the mail otherwise.
async fn home(Visitor(ctx): Visitor) -> Response {
    match &ctx.session {
        None => ctx.to_sign_in(),
        Some(s) if s.pending_totp => Redirect::to(&format!("{BASE}/login/totp")).into_response(),
        Some(s) if s.admin => Redirect::to(&format!("{BASE}/admin")).into_response(),
        Some(_) => Redirect::to(&format!("{BASE}/mail")).into_response(),
    }
}

#[derive(Deserialize)]
struct Next {
    next: Option<String>,
}

/// Only a path of the console is a place to go after signing in (no open redirect).
fn safe_next(next: Option<&str>) -> String {
    next.filter(|n| n.starts_with(BASE) && !n.starts_with("//") && !n.contains('\\'))
        .unwrap_or(&format!("{BASE}/"))
        .to_string()
}

/// Plain HTTP from another host: a password would cross the network in clear.
fn sign_in_refused(ctx: &Ctx) -> bool {
    !ctx.secure_cookies()
        && !ctx.console.settings.allow_plain_sign_in
        && !ctx.peer.is_some_and(|p| p.ip().is_loopback())
}

async fn login_form(Visitor(ctx): Visitor, Query(q): Query<Next>) -> Response {
    if sign_in_refused(&ctx) {
        return ctx.message(
            StatusCode::FORBIDDEN,
            ctx.t("common.sign_in"),
            ctx.t("common.plain_http_refused"),
        );
    }
    let token = random_token();
    let notice = ctx.maintenance_screen().await.is_some();
    let body = html! {
        @if notice { p.notice { (ctx.t("common.maintenance_admins_only")) } }
        form.signin method="post" action={(BASE) "/login"} {
            input type="hidden" name="login_token" value=(token);
            input type="hidden" name="next" value=(safe_next(q.next.as_deref()));
            label { (ctx.t("common.address")) input type="email" name="address" required autocomplete="username" autofocus; }
            label { (ctx.t("common.password")) input type="password" name="password" required autocomplete="current-password"; }
            button type="submit" { (ctx.t("common.sign_in")) }
        }
    };
    let mut response = ctx.page(ctx.t("common.sign_in"), body);
    set_cookie(
        &mut response,
        &format!("{LOGIN_COOKIE}={token}; Path={BASE}/login; HttpOnly; SameSite=Strict"),
    );
    response
}

#[derive(Deserialize)]
struct LoginForm {
    login_token: String,
    address: String,
    password: String,
    next: Option<String>,
}

async fn login(
    State(console): State<Arc<Console>>,
    Visitor(ctx): Visitor,
    headers: axum::http::HeaderMap,
    form: axum::Form<LoginForm>,
) -> Response {
    let form = form.0;
    if sign_in_refused(&ctx) {
        return ctx.message(
            StatusCode::FORBIDDEN,
            ctx.t("common.sign_in"),
            ctx.t("common.plain_http_refused"),
        );
    }
    let cookie_token = cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if cookie_token.is_empty() || cookie_token != form.login_token {
        return ctx.message(
            StatusCode::FORBIDDEN,
            ctx.t("common.sign_in"),
            ctx.t("common.stale_form"),
        );
    }
    if form.address.len() > MAX_FIELD || form.password.len() > MAX_FIELD {
        return ctx.message(
            StatusCode::BAD_REQUEST,
            ctx.t("common.sign_in"),
            ctx.t("common.sign_in_failed"),
        );
    }
    let Some(peer) = ctx.peer else {
        return ctx.message(
            StatusCode::FORBIDDEN,
            ctx.t("common.sign_in"),
            ctx.t("common.sign_in_failed"),
        );
    };
    let Ok(attempt) = console.throttle.attempt(peer.ip(), &form.address).await else {
        return ctx.message(
            StatusCode::TOO_MANY_REQUESTS,
            ctx.t("common.sign_in"),
            ctx.t("common.sign_in_busy"),
        );
    };
    let (address, password) = (form.address.clone(), form.password);
    let principal = ctx
        .run(move |ops| {
            let Some(id) = ops.store().authenticate(&address, &password)? else {
                return Ok(None);
            };
            Ok(ops.store().principal(id)?)
        })
        .await;
    let principal = match principal {
        Ok(Some(p)) => p,
        Ok(None) => {
            attempt.failed().await;
            tracing::info!(peer = %peer.ip(), account = %form.address, "web console sign-in failed");
            return ctx.message(
                StatusCode::UNAUTHORIZED,
                ctx.t("common.sign_in"),
                ctx.t("common.sign_in_failed"),
            );
        }
        Err(e) => return ctx.error(&e),
    };
    attempt.succeeded();
    let pending_totp = principal.totp_secret.is_some();
    let session = console.sessions.start(
        principal.id,
        &principal.address,
        principal.admin,
        pending_totp,
    );
    tracing::info!(peer = %peer.ip(), account = %principal.address, admin = principal.admin, "web console sign-in");
    let to = if pending_totp {
        format!(
            "{BASE}/login/totp?next={}",
            crate::page::encode(&safe_next(form.next.as_deref()))
        )
    } else {
        safe_next(form.next.as_deref())
    };
    let mut response = Redirect::to(&to).into_response();
    set_cookie(
        &mut response,
        &session_cookie(&session.token, ctx.secure_cookies()),
    );
    set_cookie(
        &mut response,
        &format!("{LOGIN_COOKIE}=; Path={BASE}/login; Max-Age=0"),
    );
    response
}

async fn totp_form(Visitor(ctx): Visitor, Query(q): Query<Next>) -> Response {
    if !ctx.session.as_ref().is_some_and(|s| s.pending_totp) {
        return Redirect::to(&safe_next(q.next.as_deref())).into_response();
    }
    let body = html! {
        form.signin method="post" action={(BASE) "/login/totp"} {
            (ctx.csrf_field())
            input type="hidden" name="next" value=(safe_next(q.next.as_deref()));
            label { (ctx.t("common.totp_code")) input type="text" name="code" inputmode="numeric" pattern="[0-9 ]{6,7}" autocomplete="one-time-code" required autofocus; }
            button type="submit" { (ctx.t("common.confirm")) }
        }
    };
    ctx.page(ctx.t("common.totp_title"), body)
}

#[derive(Deserialize)]
struct TotpForm {
    code: String,
    next: Option<String>,
}

async fn totp_check(
    State(console): State<Arc<Console>>,
    Visitor(ctx): Visitor,
    Posted(form): Posted<TotpForm>,
) -> Response {
    let Some(session) = ctx.session.clone().filter(|s| s.pending_totp) else {
        return ctx.to_sign_in();
    };
    let peer = ctx
        .peer
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |p| p.ip());
    let Ok(attempt) = console.throttle.attempt(peer, &session.address).await else {
        return ctx.message(
            StatusCode::TOO_MANY_REQUESTS,
            ctx.t("common.sign_in"),
            ctx.t("common.sign_in_busy"),
        );
    };
    let id = session.account;
    let secret = ctx
        .run(move |ops| Ok(ops.store().principal(id)?.and_then(|p| p.totp_secret)))
        .await;
    let now = ctx.ops().clock().unix();
    match secret {
        Ok(Some(secret)) if totp::verify(&secret, &form.code, now) => {
            attempt.succeeded();
            console.sessions.complete(&session.token);
            Redirect::to(&safe_next(form.next.as_deref())).into_response()
        }
        Ok(_) => {
            attempt.failed().await;
            ctx.message(
                StatusCode::UNAUTHORIZED,
                ctx.t("common.totp_title"),
                ctx.t("common.totp_wrong"),
            )
        }
        Err(e) => ctx.error(&e),
    }
}

#[derive(Deserialize)]
struct Empty {}

async fn logout(
    State(console): State<Arc<Console>>,
    Visitor(ctx): Visitor,
    headers: axum::http::HeaderMap,
    Posted(_): Posted<Empty>,
) -> Response {
    if let Some(token) = cookie(&headers, COOKIE) {
        console.sessions.end(token);
    }
    let mut response = Redirect::to(&format!("{BASE}/login")).into_response();
    set_cookie(&mut response, &session_cookie("", ctx.secure_cookies()));
    response
}

pub fn set_cookie(response: &mut Response, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_console_paths_are_places_to_go_next() {
        assert_eq!(
            safe_next(Some("/console/admin/backups")),
            "/console/admin/backups"
        );
        assert_eq!(safe_next(Some("https://evil.example/")), "/console/");
        assert_eq!(safe_next(Some("//evil.example/console")), "/console/");
        assert_eq!(safe_next(Some("/console\\@evil")), "/console/");
        assert_eq!(safe_next(None), "/console/");
    }
}
