//! Logs and alerts: the server's recent log lines at or above a level (`ops::logs`), the
//! alerts that hold now and the history of the alerts sent (`ops::alerts`).

use std::sync::Arc;

use axum::Router;
use axum::extract::Query;
use axum::response::Response;
use axum::routing::get;
use maud::html;
use ops::logs::Level;

use crate::session::Admin;
use crate::{BASE, Console};

/// The choices of how many lines to show.
const LINE_CHOICES: [usize; 4] = [100, 200, 500, ops::logs::LINES_MAX];

/// Alerts of the history shown.
const HISTORY_SHOWN: usize = 200;

pub fn routes() -> Router<Arc<Console>> {
    Router::new().route(&format!("{BASE}/admin/logs"), get(show))
}

#[derive(serde::Deserialize)]
struct Filter {
    level: Option<String>,
    lines: Option<usize>,
}

async fn show(Admin(ctx): Admin, Query(filter): Query<Filter>) -> Response {
    let level = match filter.level.as_deref().filter(|l| !l.is_empty()) {
        None => Level::Info,
        Some(text) => match Level::parse(text) {
            Ok(level) => level,
            Err(e) => return ctx.error(&e),
        },
    };
    let lines = filter
        .lines
        .unwrap_or(LINE_CHOICES[1])
        .clamp(1, ops::logs::LINES_MAX);
    let gathered = ctx
        .run(move |ops| {
            Ok((
                ops::logs::recent(ops.data(), level, lines)?,
                ops::alerts::active_now(ops),
                ops::alerts::history(ops.data(), HISTORY_SHOWN)?,
            ))
        })
        .await;
    let (recent, active, history) = match gathered {
        Ok(all) => all,
        Err(e) => return ctx.error(&e),
    };
    let body = html! {
        section #alerts-now {
            h2 { (ctx.t("ops.alerts_active")) }
            @if active.is_empty() {
                p.ok { (ctx.t("ops.alerts_none")) }
            } @else {
                ul.alerts { @for a in &active { li.error { code { (a.key) } " " (a.message) } } }
            }
        }
        section #history {
            h2 { (ctx.t("ops.alert_history")) }
            @if history.is_empty() {
                p { (ctx.t("ops.alert_history_none")) }
            } @else {
                table #alert-history {
                    thead { tr { th { (ctx.t("ops.alert_sent")) } th { (ctx.t("ops.alert_key")) } th { (ctx.t("ops.alert_message")) } } }
                    tbody { @for a in &history { tr { td { (a.at) } td { code { (a.key) } } td { (a.message) } } } }
                }
            }
        }
        section #log {
            h2 { (ctx.t("ops.log_recent")) }
            form #filter.inline method="get" action={(BASE) "/admin/logs"} {
                label { (ctx.t("ops.log_level"))
                    select name="level" {
                        @for l in Level::ALL.iter().rev() {
                            option value=(l.label().to_ascii_lowercase()) selected[*l == level] { (l.label()) }
                        }
                    }
                }
                " "
                label { (ctx.t("ops.log_lines"))
                    select name="lines" {
                        @for n in LINE_CHOICES {
                            option value=(n) selected[n == lines] { (n) }
                        }
                    }
                }
                " "
                button type="submit" { (ctx.t("ops.log_show")) }
            }
            @if recent.is_empty() {
                p { (ctx.t("ops.log_none")) }
            } @else {
                table #log-lines {
                    thead { tr { th { (ctx.t("ops.log_time")) } th { (ctx.t("ops.log_level")) } th { (ctx.t("ops.log_text")) } } }
                    tbody {
                        @for l in &recent {
                            tr data-level=(l.level.label()) {
                                td { (l.at) }
                                td class=(match l.level { Level::Error => "error", Level::Warn => "warn", _ => "" }) { (l.level.label()) }
                                td { code { (l.text) } }
                            }
                        }
                    }
                }
            }
        }
    };
    ctx.page(ctx.t("admin.menu_logs"), body)
}
