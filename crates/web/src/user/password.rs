//! A user changes their own password: the current one (tried through the same login
//! throttle as a sign-in, since it is a password guess like any other) and the new one
//! twice. Afterwards every other console session of the account ends.

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use maud::html;
use ops::mail_view::PasswordChange;
use serde::Deserialize;

use crate::session::{Posted, User};
use crate::user::mail::who;
use crate::{BASE, Console, Ctx};

pub fn routes() -> Router<Arc<Console>> {
    Router::new().route(&format!("{BASE}/password"), get(show).post(change))
}

fn form(ctx: &Ctx) -> maud::Markup {
    html! {
        p.hint { (ctx.t("mail.password_hint")) }
        form #password .signin method="post" action={(BASE) "/password"} {
            (ctx.csrf_field())
            label { (ctx.t("mail.current_password")) input type="password" name="current" required autocomplete="current-password"; }
            label { (ctx.t("mail.new_password")) input type="password" name="new" required autocomplete="new-password"; }
            label { (ctx.t("mail.repeat_password")) input type="password" name="repeat" required autocomplete="new-password"; }
            button type="submit" { (ctx.t("mail.change")) }
        }
    }
}

async fn show(User(ctx): User) -> Response {
    ctx.page(ctx.t("mail.password_title"), form(&ctx))
}

#[derive(Deserialize)]
struct Change {
    current: String,
    new: String,
    repeat: String,
}

/// The page again with a problem above the form.
fn refused(ctx: &Ctx, status: StatusCode, text: &str) -> Response {
    let body = html! { p.error { (text) } (form(ctx)) };
    ctx.page_with(status, ctx.t("mail.password_title"), body)
}

async fn change(User(ctx): User, Posted(form): Posted<Change>) -> Response {
    let (account, address) = who(&ctx);
    if form.new != form.repeat {
        return refused(
            &ctx,
            StatusCode::BAD_REQUEST,
            ctx.t("mail.password_mismatch"),
        );
    }
    let Some(peer) = ctx.peer else {
        return refused(&ctx, StatusCode::FORBIDDEN, ctx.t("mail.password_wrong"));
    };
    let throttle = ctx.console.throttle.clone();
    let Ok(attempt) = throttle.attempt(peer.ip(), &address).await else {
        return refused(
            &ctx,
            StatusCode::TOO_MANY_REQUESTS,
            ctx.t("common.sign_in_busy"),
        );
    };
    let who_changes = address.clone();
    let result = ctx
        .run(move |ops| ops.mail_change_password(&who_changes, &form.current, &form.new))
        .await;
    match result {
        Ok(PasswordChange::Changed) => {
            attempt.succeeded();
            if let Some(session) = &ctx.session {
                ctx.console.sessions.end_others(account, &session.token);
            }
            tracing::info!(account = %address, "password changed in the web console");
            let body = html! { p.ok #changed { (ctx.t("mail.password_changed")) } };
            ctx.page(ctx.t("mail.password_title"), body)
        }
        Ok(PasswordChange::WrongCurrent) => {
            attempt.failed().await;
            tracing::info!(account = %address, "web console password change: wrong current password");
            refused(&ctx, StatusCode::FORBIDDEN, ctx.t("mail.password_wrong"))
        }
        Err(e) => ctx.error(&e),
    }
}
