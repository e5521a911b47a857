//! Diagnostics: the doctor's findings with their hints (`tegami doctor`), "check the data
//! now" as a job with progress whose result log downloads (`tegami check`), and the daily
//! check and optimisation: their schedule, their latest results and their logs.

use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::html;
use ops::check::{CheckRequest, ResultLog, Trigger};
use ops::doctor::{Doctor, Severity};

use crate::session::{Admin, Posted};
use crate::{BASE, Console, jobs};

/// The logs of `log/` this screen offers: the latest results, and the histories of the
/// check and the optimisation.
const LOGS: &[&str] = &[
    "maintenance_result.log",
    "optimize_result.log",
    "backup_result.log",
    "maintenance.log",
    "optimize.log",
];

pub fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route(&format!("{BASE}/admin/diagnostics"), get(show))
        .route(&format!("{BASE}/admin/diagnostics/check"), post(check_now))
        .route(
            &format!("{BASE}/admin/diagnostics/doctor"),
            post(doctor_again),
        )
        .route(&format!("{BASE}/admin/diagnostics/log/{{name}}"), get(log))
}

/// How long a doctor's report is shown before the screen runs the doctor again by itself.
const DOCTOR_FRESH_SECONDS: i64 = 300;

async fn show(Admin(ctx): Admin) -> Response {
    let console = ctx.console.clone();
    let gathered = ctx
        .run(move |ops| {
            let now = ops.clock().unix();
            let kept = console
                .doctor
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let (ran, report) = match kept {
                Some((ran, report)) if (0..DOCTOR_FRESH_SECONDS).contains(&(now - ran)) => {
                    (ran, report)
                }
                _ => {
                    let report = Arc::new(Doctor::new(ops.data()).run(ops.config()));
                    *console.doctor.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some((now, report.clone()));
                    (now, report)
                }
            };
            let results = [ResultLog::Check, ResultLog::Optimize]
                .into_iter()
                .map(|log| Ok((log, ops::check::last_result(ops.data(), log)?)))
                .collect::<ops::Result<Vec<_>>>()?;
            let schedule = &ops.config().schedule;
            Ok((
                (ran, report),
                results,
                schedule.check_at,
                schedule.maintenance_during_check,
            ))
        })
        .await;
    let ((ran, report), results, check_at, in_maintenance) = match gathered {
        Ok(all) => all,
        Err(e) => return ctx.error(&e),
    };
    let (fails, warns) = (report.count(Severity::Fail), report.count(Severity::Warn));
    let body = html! {
        section #check {
            h2 { (ctx.t("ops.check_now")) }
            p { (ctx.t("ops.check_now_help")) }
            form #check-now method="post" action={(BASE) "/admin/diagnostics/check"} {
                (ctx.csrf_field())
                button type="submit" { (ctx.t("ops.check_now_button")) }
            }
        }
        section #scheduled {
            h2 { (ctx.t("ops.scheduled")) }
            p #schedule {
                @match check_at {
                    Some(at) => (ctx.tf(
                        if in_maintenance { "ops.schedule_daily_maint" } else { "ops.schedule_daily" },
                        &[("at", &gate::maint::hhmm(at))],
                    )),
                    None => span.warn { (ctx.t("ops.schedule_none")) },
                }
            }
            (super::dashboard::runs_table(&ctx, &results))
            p {
                (ctx.t("ops.history_logs")) " "
                a.download href={(BASE) "/admin/diagnostics/log/maintenance.log"} { "maintenance.log" }
                " · "
                a.download href={(BASE) "/admin/diagnostics/log/optimize.log"} { "optimize.log" }
            }
        }
        section #doctor {
            h2 { (ctx.t("ops.doctor")) }
            p.summary class=(if fails > 0 { "error" } else if warns > 0 { "warn" } else { "ok" }) {
                (ctx.tf("ops.doctor_summary", &[("fail", &fails), ("warn", &warns)]))
            }
            form #doctor-again method="post" action={(BASE) "/admin/diagnostics/doctor"} {
                (ctx.csrf_field())
                span #doctor-ran { (ctx.tf("ops.doctor_ran", &[("at", &ctx.time(ran))])) } " "
                button type="submit" { (ctx.t("ops.doctor_again")) }
            }
            table #findings {
                thead { tr {
                    th { (ctx.t("ops.doctor_area")) } th { (ctx.t("ops.doctor_item")) }
                    th { (ctx.t("ops.doctor_status")) } th { (ctx.t("ops.doctor_found")) }
                } }
                tbody {
                    // Failures first, as the CLI's report puts them: who reads only the top
                    // must not miss them.
                    @for f in report.findings.iter().filter(|f| f.status == Severity::Fail)
                        .chain(report.findings.iter().filter(|f| f.status != Severity::Fail)) {
                        tr data-status=(f.status.label()) {
                            td { (f.group) }
                            td { (f.item) }
                            td class=(super::dashboard::status_class(f.status)) { (f.status.label()) }
                            td {
                                (f.value)
                                @if let Some(hint) = &f.hint { br; span.hint { (ctx.t("ops.doctor_hint")) " " (hint) } }
                            }
                        }
                    }
                }
            }
        }
    };
    ctx.page(ctx.t("admin.menu_diagnostics"), body)
}

#[derive(serde::Deserialize)]
struct Empty {}

/// Forgets the kept report, so the screen runs the doctor afresh.
async fn doctor_again(Admin(ctx): Admin, Posted(_): Posted<Empty>) -> Response {
    *ctx.console.doctor.lock().unwrap_or_else(|p| p.into_inner()) = None;
    axum::response::Redirect::to(&format!("{BASE}/admin/diagnostics#doctor")).into_response()
}

/// `tegami check` as a job: its page shows the progress, then the verdict and the log.
async fn check_now(Admin(ctx): Admin, Posted(_): Posted<Empty>) -> Response {
    let who = ctx
        .session
        .as_ref()
        .map_or_else(String::new, |s| s.address.clone());
    let id = ctx.console.jobs.start(
        ctx.ops().clone(),
        ctx.t("ops.check_job").to_string(),
        who,
        |ops, reporter| {
            let request = CheckRequest {
                repair: false,
                trigger: Trigger::Manual,
            };
            let outcome = ops.check(&request, &reporter)?;
            let summary = match &outcome.hint {
                Some(hint) => format!("{} — {hint}", outcome.verdict),
                None => outcome.verdict.clone(),
            };
            Ok(jobs::Outcome {
                summary,
                log: Some(ResultLog::Check.path()),
            })
        },
    );
    jobs::redirect_to(id)
}

/// One of [`LOGS`] as a download.
async fn log(Admin(ctx): Admin, Path(name): Path<String>) -> Response {
    if !LOGS.contains(&name.as_str()) {
        return ctx.message(
            StatusCode::NOT_FOUND,
            ctx.t("admin.menu_diagnostics"),
            ctx.t("ops.no_such_log"),
        );
    }
    jobs::download_log(&ctx, &format!("log/{name}")).await
}
