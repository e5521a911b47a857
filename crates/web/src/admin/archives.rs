//! Archives: moving old mail into an archive before a day (the dry run's figures first:
//! what moves and the space it needs against what is free), the list, search in one
//! archive, its message list as CSV (the rows `tegami archive export --csv` writes,
//! streamed), and the check, as a job.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::html;
use ops::archive::{CreateRequest, SearchRequest};
use serde::Deserialize;

use crate::session::{Admin, Posted};
use crate::svg::{gauge, human_bytes};
use crate::{BASE, Console, Ctx, jobs};

/// Hits shown for one search; a search that finds more says so.
const HITS: usize = 100;

pub fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route(&format!("{BASE}/admin/archives"), get(show))
        .route(&format!("{BASE}/admin/archives/plan"), get(plan))
        .route(&format!("{BASE}/admin/archives/create"), post(create))
        .route(&format!("{BASE}/admin/archives/check"), post(check_all))
        .route(&format!("{BASE}/admin/archives/{{id}}"), get(search))
        .route(
            &format!("{BASE}/admin/archives/{{id}}/export.csv"),
            get(csv),
        )
        .route(
            &format!("{BASE}/admin/archives/{{id}}/check"),
            post(check_one),
        )
}

fn who(ctx: &Ctx) -> String {
    ctx.session
        .as_ref()
        .map_or_else(String::new, |s| s.address.clone())
}

/// The create form's fields; empty ones mean "not given".
#[derive(Deserialize, Default, Clone)]
struct CreateForm {
    before: String,
    #[serde(default)]
    account: String,
    #[serde(default)]
    label: String,
}

impl CreateForm {
    fn request(&self) -> CreateRequest {
        let given = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        CreateRequest {
            before: self.before.trim().to_string(),
            account: given(&self.account),
            label: given(&self.label),
        }
    }
}

fn create_fields(ctx: &Ctx, form: &CreateForm) -> maud::Markup {
    html! {
        label { (ctx.t("archive.before")) input type="date" name="before" required value=(form.before); }
        label { (ctx.t("archive.account")) input type="text" name="account" value=(form.account) placeholder=(ctx.t("archive.account_all")); }
        label { (ctx.t("archive.label")) input type="text" name="label" value=(form.label); }
    }
}

async fn show(Admin(ctx): Admin) -> Response {
    let list = match ctx.run(|ops| ops.archive_list()).await {
        Ok(list) => list,
        Err(e) => return ctx.error(&e),
    };
    let body = html! {
        section #make {
            h2 { (ctx.t("archive.create_title")) }
            p { (ctx.t("archive.create_intro")) }
            form #plan method="get" action={(BASE) "/admin/archives/plan"} {
                (create_fields(&ctx, &CreateForm::default()))
                button type="submit" { (ctx.t("archive.dry_run")) }
            }
        }
        section #list {
            h2 { (ctx.t("archive.list_title")) }
            @if list.is_empty() {
                p.empty { (ctx.t("archive.none")) }
            } @else {
                table #archives {
                    thead { tr {
                        th { (ctx.t("archive.col_id")) }
                        th { (ctx.t("archive.col_label")) }
                        th { (ctx.t("archive.col_accounts")) }
                        th { (ctx.t("archive.col_period")) }
                        th.num { (ctx.t("archive.col_messages")) }
                        th.num { (ctx.t("archive.col_size")) }
                        th.num { (ctx.t("archive.col_disk")) }
                        th { (ctx.t("archive.col_state")) }
                        th { (ctx.t("archive.col_created")) }
                        th { (ctx.t("archive.col_actions")) }
                    } }
                    tbody {
                        @for a in &list {
                            tr data-id=(a.id) {
                                td.id { (a.id) }
                                td.label { (a.label) }
                                td.accounts { (a.accounts.join(", ")) }
                                td.period { (a.first) " .. " (a.last) br; small { (ctx.tf("archive.before_day", &[("day", &a.before)])) } }
                                td.num.messages { (a.messages) }
                                td.num { (human_bytes(a.bytes)) }
                                td.num { (human_bytes(a.disk_bytes)) }
                                td.state { (a.state) }
                                td { (a.created) }
                                td.actions {
                                    a.search href={(BASE) "/admin/archives/" (a.id)} { (ctx.t("archive.search")) }
                                    " "
                                    a.csv href={(BASE) "/admin/archives/" (a.id) "/export.csv"} download { "CSV" }
                                    " "
                                    form.inline.check method="post" action={(BASE) "/admin/archives/" (a.id) "/check"} {
                                        (ctx.csrf_field())
                                        button.secondary type="submit" { (ctx.t("archive.check")) }
                                    }
                                }
                            }
                        }
                    }
                }
                form #check-all method="post" action={(BASE) "/admin/archives/check"} {
                    (ctx.csrf_field())
                    button.secondary type="submit" { (ctx.t("archive.check_all")) }
                }
            }
        }
    };
    ctx.page(ctx.t("admin.menu_archives"), body)
}

/// The dry run: what would move and the space it needs against what is free, then the
/// form that moves it.
async fn plan(Admin(ctx): Admin, Query(form): Query<CreateForm>) -> Response {
    let request = form.request();
    let plan = match ctx.run(move |ops| ops.archive_plan(&request)).await {
        Ok(plan) => plan,
        Err(e) => return ctx.error(&e),
    };
    let needed = plan.needed_bytes.saturating_add(plan.reserve_bytes);
    let body = html! {
        table #plan-figures {
            tbody {
                tr { th { (ctx.t("archive.plan_messages")) } td.num #plan-messages { (plan.messages) } }
                tr { th { (ctx.t("archive.plan_bytes")) } td.num { (human_bytes(plan.bytes)) } }
                tr { th { (ctx.t("archive.plan_accounts")) } td { (plan.accounts.join(", ")) } }
                tr { th { (ctx.t("archive.plan_needed")) } td.num #plan-needed { (human_bytes(plan.needed_bytes)) } }
                tr { th { (ctx.t("archive.plan_reserve")) } td.num { (human_bytes(plan.reserve_bytes)) } }
                tr { th { (ctx.t("archive.plan_free")) } td.num #plan-free { (human_bytes(plan.free_bytes)) } }
                tr { th { (ctx.t("archive.plan_bodies")) } td { (if plan.copies_bodies { ctx.t("archive.bodies_copied") } else { ctx.t("archive.bodies_linked") }) } }
            }
        }
        figure.chart { (gauge(needed, plan.free_bytes, 0.9, &ctx.tf("archive.gauge", &[("needed", &human_bytes(needed)), ("free", &human_bytes(plan.free_bytes))]))) }
        @if plan.messages == 0 {
            p.warn #plan-verdict { (ctx.tf("archive.nothing", &[("day", &plan.before)])) }
        } @else if plan.fits() {
            p.ok #plan-verdict { (ctx.t("archive.fits")) }
            form #create method="post" action={(BASE) "/admin/archives/create"} data-confirm=(ctx.t("archive.create_confirm")) {
                (ctx.csrf_field())
                input type="hidden" name="before" value=(form.before);
                input type="hidden" name="account" value=(form.account);
                input type="hidden" name="label" value=(form.label);
                button type="submit" { (ctx.tf("archive.create_now", &[("count", &plan.messages)])) }
            }
        } @else {
            p.error #plan-verdict { (ctx.t("archive.does_not_fit")) }
        }
        p { a href={(BASE) "/admin/archives"} { (ctx.t("common.back")) } }
    };
    ctx.page(
        &ctx.tf("archive.plan_title", &[("day", &plan.before)]),
        body,
    )
}

async fn create(Admin(ctx): Admin, Posted(form): Posted<CreateForm>) -> Response {
    let request = form.request();
    let id = ctx.console.jobs.start(
        ctx.ops().clone(),
        ctx.tf("archive.job_create", &[("day", &request.before)]),
        who(&ctx),
        move |ops, reporter| {
            let report = ops.archive_create(&request, &reporter)?;
            for line in &report.resumed_lines {
                reporter.note(line);
            }
            for skipped in &report.skipped {
                reporter.note(&format!("skipped {skipped}"));
            }
            Ok(jobs::Outcome {
                summary: report.line,
                log: Some("log/archive_result.log".into()),
            })
        },
    );
    jobs::redirect_to(id)
}

#[derive(Deserialize)]
struct Empty {}

async fn check_all(Admin(ctx): Admin, Posted(_): Posted<Empty>) -> Response {
    start_check(&ctx, None)
}

async fn check_one(Admin(ctx): Admin, Path(id): Path<u32>, Posted(_): Posted<Empty>) -> Response {
    start_check(&ctx, Some(id))
}

fn start_check(ctx: &Ctx, id: Option<u32>) -> Response {
    let title = match id {
        Some(id) => ctx.tf("archive.job_check", &[("id", &id)]),
        None => ctx.t("archive.job_check_all").to_string(),
    };
    let job = ctx
        .console
        .jobs
        .start(ctx.ops().clone(), title, who(ctx), move |ops, reporter| {
            let report = ops.archive_check(id, &reporter)?;
            let mut lines = Vec::new();
            for a in &report.archives {
                lines.push(a.line());
                for problem in a.problems.iter().take(50) {
                    reporter.note(&format!("archive {}: {problem}", a.id));
                }
            }
            if report.archives.is_empty() {
                lines.push("no archives to check".into());
            }
            let summary = lines.join("; ");
            if report.is_healthy() {
                Ok(jobs::Outcome { summary, log: None })
            } else {
                Err(ops::Error::failed(summary))
            }
        });
    jobs::redirect_to(job)
}

#[derive(Deserialize, Default)]
struct SearchForm {
    #[serde(default)]
    q: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    account: String,
}

/// One archive: its search form and what it finds (the first [`HITS`]).
async fn search(
    Admin(ctx): Admin,
    Path(id): Path<u32>,
    Query(form): Query<SearchForm>,
) -> Response {
    let given = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    let searched = [
        &form.q,
        &form.from,
        &form.to,
        &form.subject,
        &form.since,
        &form.until,
        &form.account,
    ]
    .iter()
    .any(|f| !f.trim().is_empty());
    let request = SearchRequest {
        id,
        words: form.q.split_whitespace().map(str::to_string).collect(),
        from: given(&form.from),
        to: given(&form.to),
        subject: given(&form.subject),
        since: given(&form.since),
        until: given(&form.until),
        account: given(&form.account),
        limit: Some(HITS + 1),
    };
    let hits = if searched {
        match ctx.run(move |ops| ops.archive_search(&request)).await {
            Ok(hits) => Some(hits),
            Err(e) => return ctx.error(&e),
        }
    } else {
        // The archive must exist even before anything is searched.
        match ctx.run(|ops| ops.archive_list()).await {
            Ok(list) if list.iter().any(|a| a.id == id.to_string()) => None,
            Ok(_) => {
                return ctx.message(
                    StatusCode::NOT_FOUND,
                    ctx.t("admin.menu_archives"),
                    ctx.t("archive.unknown"),
                );
            }
            Err(e) => return ctx.error(&e),
        }
    };
    let body = html! {
        form #search method="get" action={(BASE) "/admin/archives/" (id)} {
            label { (ctx.t("archive.words")) input type="search" name="q" value=(form.q); }
            label { (ctx.t("archive.from")) input type="text" name="from" value=(form.from); }
            label { (ctx.t("archive.to")) input type="text" name="to" value=(form.to); }
            label { (ctx.t("archive.subject")) input type="text" name="subject" value=(form.subject); }
            label { (ctx.t("archive.since")) input type="date" name="since" value=(form.since); }
            label { (ctx.t("archive.until")) input type="date" name="until" value=(form.until); }
            label { (ctx.t("archive.account")) input type="text" name="account" value=(form.account); }
            button type="submit" { (ctx.t("common.search")) }
        }
        p {
            a.csv href={(BASE) "/admin/archives/" (id) "/export.csv"} download { (ctx.t("archive.export_csv")) }
        }
        @if let Some(hits) = &hits {
            p.count { (ctx.tf("archive.found", &[("count", &hits.len().min(HITS))])) @if hits.len() > HITS { " " (ctx.t("archive.more")) } }
            @if !hits.is_empty() {
                table #hits {
                    thead { tr {
                        th { (ctx.t("archive.col_date")) }
                        th { (ctx.t("archive.account")) }
                        th { (ctx.t("archive.col_mailbox")) }
                        th { (ctx.t("archive.from")) }
                        th { (ctx.t("archive.subject")) }
                        th.num { (ctx.t("archive.col_size")) }
                    } }
                    tbody {
                        @for m in hits.iter().take(HITS) {
                            tr {
                                td { (m.day) }
                                td { (m.account) }
                                td { (m.mailbox) }
                                td { (m.from) }
                                td.subject { (m.subject) }
                                td.num { (human_bytes(m.size)) }
                            }
                        }
                    }
                }
            }
        }
        p { a href={(BASE) "/admin/archives"} { (ctx.t("common.back")) } }
    };
    ctx.page(&ctx.tf("archive.title_one", &[("id", &id)]), body)
}

#[derive(Deserialize, Default)]
struct CsvQuery {
    account: Option<String>,
}

/// The archive's message list as CSV, written row by row into the response as it is read.
async fn csv(Admin(ctx): Admin, Path(id): Path<u32>, Query(q): Query<CsvQuery>) -> Response {
    // Said before the first byte: once the body streams, a missing archive could only cut
    // it off.
    match ctx.run(|ops| ops.archive_list()).await {
        Ok(list) if list.iter().any(|a| a.id == id.to_string()) => {}
        Ok(_) => {
            return ctx.message(
                StatusCode::NOT_FOUND,
                ctx.t("admin.menu_archives"),
                ctx.t("archive.unknown"),
            );
        }
        Err(e) => return ctx.error(&e),
    }
    let ops = ctx.ops().clone();
    let account = q.account.filter(|a| !a.trim().is_empty());
    let body = super::backups::streamed(move |out| {
        let mut writer = Sink(out);
        ops.archive_csv(id, account.as_deref(), &mut writer)
            .map(|_| ())
    });
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"archive-{id}.csv\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

/// `io::Write` over the piece-by-piece sender of a streamed body.
struct Sink<'a>(&'a mut dyn FnMut(&[u8]) -> std::io::Result<()>);

impl std::io::Write for Sink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        (self.0)(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
