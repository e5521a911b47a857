//! The dashboard: the installation at a glance (`Ops::overview`): maintenance, the data
//! volume with its forecast, the WAL against its cap, the queue, the alerts that hold now,
//! the latest check, optimisation and backup with their results, and the listeners.

use std::sync::Arc;

use axum::Router;
use axum::response::Response;
use axum::routing::get;
use maud::{Markup, html};
use ops::check::{LastResult, ResultLog};
use ops::doctor::Severity;
use ops::overview::Overview;

use crate::session::Admin;
use crate::svg::{gauge, human_bytes};
use crate::{BASE, Console, Ctx};

pub fn routes() -> Router<Arc<Console>> {
    Router::new().route(&format!("{BASE}/admin"), get(show))
}

async fn show(Admin(ctx): Admin) -> Response {
    let overview = match ctx.run(|ops| ops.overview()).await {
        Ok(overview) => overview,
        Err(e) => return ctx.error(&e),
    };
    let body = html! {
        div.cards {
            section.card #maintenance-state {
                h2 { a href={(BASE) "/admin/maintenance"} { (ctx.t("admin.menu_maintenance")) } }
                (super::maintenance::state_summary(&ctx, &overview.maintenance))
            }
            section.card #disk { h2 { (ctx.t("ops.disk")) } (disk(&ctx, &overview)) }
            section.card #wal {
                h2 { (ctx.t("ops.wal")) }
                (gauge(overview.wal_bytes, overview.wal_cap_bytes, 0.5, &used_share(&ctx, overview.wal_bytes, overview.wal_cap_bytes)))
                p.figures { (ctx.tf("ops.wal_label", &[
                    ("size", &human_bytes(overview.wal_bytes)),
                    ("cap", &human_bytes(overview.wal_cap_bytes)),
                ])) }
                @if overview.wal_bytes > overview.wal_cap_bytes {
                    p.error { (ctx.t("ops.wal_above_cap")) }
                }
            }
            section.card #queue {
                h2 { a href={(BASE) "/admin/queue"} { (ctx.t("admin.menu_queue")) } }
                @let q = &overview.queue;
                p { (ctx.tf("ops.queue_counts", &[("messages", &q.messages), ("recipients", &q.recipients), ("size", &human_bytes(q.bytes))])) }
                @if let Some(oldest) = q.oldest {
                    p { (ctx.tf("ops.queue_oldest", &[("at", &ctx.time(oldest))])) }
                }
            }
        }
        h2 { (ctx.t("ops.alerts_active")) }
        @if overview.alerts.is_empty() {
            p #alerts.ok { (ctx.t("ops.alerts_none")) }
        } @else {
            table #alerts {
                thead { tr { th { (ctx.t("ops.alert_key")) } th { (ctx.t("ops.alert_message")) } } }
                tbody { @for a in &overview.alerts { tr.error { td { code { (a.key) } } td { (a.message) } } } }
            }
        }
        h2 { (ctx.t("ops.last_runs")) }
        (runs_table(&ctx, &overview.results))
        h2 { (ctx.t("ops.listeners")) }
        table #listeners {
            tbody {
                @for f in &overview.listeners {
                    tr {
                        th { (f.item) }
                        td class=(status_class(f.status)) { (f.status.label()) }
                        td { (f.value) @if let Some(h) = &f.hint { br; small { (h) } } }
                    }
                }
            }
        }
    };
    ctx.page(ctx.t("admin.menu_dashboard"), body)
}

fn disk(ctx: &Ctx, overview: &Overview) -> Markup {
    let Some((free, total)) = overview.volume else {
        return html! { p.warn { (ctx.t("ops.disk_unknown")) } };
    };
    let used = total.saturating_sub(free);
    let label = ctx.tf(
        "ops.disk_label",
        &[
            ("used", &human_bytes(used)),
            ("total", &human_bytes(total)),
            ("free", &human_bytes(free)),
        ],
    );
    let full_on = overview
        .forecast
        .as_ref()
        .and_then(|f| f.crossings.last())
        .and_then(|c| c.on)
        .map(|t| ctx.time(t.as_second()));
    html! {
        (gauge(used, total, 0.8, &used_share(ctx, used, total)))
        p.figures { (label) }
        p.forecast {
            @match overview.days_until_full() {
                Some(d) if d <= 0.0 => span.error { (ctx.t("ops.disk_full_now")) },
                Some(d) => {
                    span.days { (ctx.tf("ops.days_until_full", &[("days", &format!("{d:.0}"))])) }
                    @if let Some(on) = &full_on { " (" (on) ")" }
                },
                None => (ctx.t("ops.disk_not_growing")),
            }
        }
    }
}

/// "83 % used": the gauge's own label, short enough for a card.
fn used_share(ctx: &Ctx, used: u64, total: u64) -> String {
    let pct = if total == 0 {
        0.0
    } else {
        used as f64 * 100.0 / total as f64
    };
    ctx.tf("ops.gauge_used", &[("pct", &format!("{pct:.0}"))])
}

/// The latest check, optimisation and backup, each with its result and its log.
pub(crate) fn runs_table(ctx: &Ctx, results: &[(ResultLog, Option<LastResult>)]) -> Markup {
    html! {
        table #runs {
            thead { tr {
                th { (ctx.t("ops.run_what")) } th { (ctx.t("ops.run_when")) }
                th { (ctx.t("ops.run_result")) } th { (ctx.t("ops.run_log")) }
            } }
            tbody {
                @for (log, last) in results {
                    tr data-log=(log.file()) {
                        th { (run_name(ctx, *log)) }
                        @match last {
                            Some(r) => {
                                td { (ctx.time(r.written)) br; small { (r.run) } }
                                td class=(if r.good { "ok" } else { "error" }) { (r.result) }
                                td { a.download href={(BASE) "/admin/diagnostics/log/" (log.file())} { (log.file()) } }
                            },
                            None => { td colspan="3" { (ctx.t("ops.run_never")) } },
                        }
                    }
                }
            }
        }
    }
}

fn run_name(ctx: &Ctx, log: ResultLog) -> &'static str {
    match log {
        ResultLog::Check => ctx.t("ops.run_check"),
        ResultLog::Optimize => ctx.t("ops.run_optimize"),
        ResultLog::Backup => ctx.t("ops.run_backup"),
    }
}

pub(crate) fn status_class(status: Severity) -> &'static str {
    match status {
        Severity::Ok => "status-ok",
        Severity::Warn => "status-warn",
        Severity::Fail => "status-fail",
    }
}
