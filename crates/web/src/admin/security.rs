//! The administrator's own second factor: turn TOTP on (a new secret to put in an
//! authenticator app, confirmed by one code from it) or off.

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::html;
use serde::Deserialize;

use crate::session::{Admin, Posted};
use crate::{BASE, Console, totp};

pub fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route(&format!("{BASE}/admin/security"), get(show))
        .route(&format!("{BASE}/admin/security/totp"), post(start))
        .route(
            &format!("{BASE}/admin/security/totp/confirm"),
            post(confirm),
        )
        .route(&format!("{BASE}/admin/security/totp/off"), post(off))
}

async fn show(Admin(ctx): Admin) -> Response {
    let id = ctx.session.as_ref().map(|s| s.account);
    let on = ctx
        .run(move |ops| Ok(id.and_then(|id| ops.store().principal(id).ok().flatten())))
        .await
        .ok()
        .flatten()
        .is_some_and(|p| p.totp_secret.is_some());
    let body = html! {
        p.state { (if on { ctx.t("admin.totp_on") } else { ctx.t("admin.totp_off") }) }
        @if on {
            form method="post" action={(BASE) "/admin/security/totp/off"} {
                (ctx.csrf_field())
                button type="submit" { (ctx.t("admin.totp_turn_off")) }
            }
        } @else {
            form method="post" action={(BASE) "/admin/security/totp"} {
                (ctx.csrf_field())
                button type="submit" { (ctx.t("admin.totp_turn_on")) }
            }
        }
    };
    ctx.page(ctx.t("admin.menu_security"), body)
}

#[derive(Deserialize)]
struct Empty {}

/// A new secret to enter in the app; nothing is stored until a code from it is confirmed.
async fn start(Admin(ctx): Admin, Posted(_): Posted<Empty>) -> Response {
    let secret = totp::new_secret();
    let address = ctx
        .session
        .as_ref()
        .map_or(String::new(), |s| s.address.clone());
    let body = html! {
        p { (ctx.t("admin.totp_enter_secret")) }
        p { code.secret { (secret) } }
        p { code.uri { (totp::uri(&secret, &address, "tegami")) } }
        form method="post" action={(BASE) "/admin/security/totp/confirm"} {
            (ctx.csrf_field())
            input type="hidden" name="secret" value=(secret);
            label { (ctx.t("common.totp_code")) input type="text" name="code" inputmode="numeric" required autocomplete="one-time-code"; }
            button type="submit" { (ctx.t("common.confirm")) }
        }
    };
    ctx.page(ctx.t("admin.menu_security"), body)
}

#[derive(Deserialize)]
struct Confirm {
    secret: String,
    code: String,
}

async fn confirm(Admin(ctx): Admin, Posted(form): Posted<Confirm>) -> Response {
    let now = ctx.ops().clock().unix();
    if !totp::verify(&form.secret, &form.code, now) {
        return ctx.message(
            StatusCode::BAD_REQUEST,
            ctx.t("admin.menu_security"),
            ctx.t("common.totp_wrong"),
        );
    }
    let address = ctx
        .session
        .as_ref()
        .map_or(String::new(), |s| s.address.clone());
    let secret = form.secret;
    match ctx
        .run(move |ops| ops.account_totp(&address, Some(&secret)))
        .await
    {
        Ok(()) => Redirect::to(&format!("{BASE}/admin/security")).into_response(),
        Err(e) => ctx.error(&e),
    }
}

async fn off(Admin(ctx): Admin, Posted(_): Posted<Empty>) -> Response {
    let address = ctx
        .session
        .as_ref()
        .map_or(String::new(), |s| s.address.clone());
    match ctx.run(move |ops| ops.account_totp(&address, None)).await {
        Ok(()) => Redirect::to(&format!("{BASE}/admin/security")).into_response(),
        Err(e) => ctx.error(&e),
    }
}
