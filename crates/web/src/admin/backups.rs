//! Backups: the list (time, size, verified, what retention does with each), taking one now
//! and verifying one as jobs with progress, the prune policy and the schedule, the restore
//! commands to run with the server stopped, and the download of any backup as one tar file
//! streamed with Content-Length and Range (`ops::backup::download` lays it out; this file
//! only moves its bytes into the response through a bounded channel).

use std::io;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::channel::Channel;
use maud::html;
use ops::backup::{self, CreateRequest, PruneRequest, Trigger, VerifyRequest, download};
use serde::Deserialize;
use store::backup::{Entry, EntryState};

use crate::session::{Admin, Posted};
use crate::svg::human_bytes;
use crate::{BASE, Console, Ctx, jobs};

/// Rows of the list on one page.
const PAGE: usize = 50;
/// Where the restore commands for a downloaded archive unpack it.
const UNPACK_DIR: &str = "/var/tmp/tegami-restore";

pub fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route(&format!("{BASE}/admin/backups"), get(show))
        .route(&format!("{BASE}/admin/backups/create"), post(create))
        .route(&format!("{BASE}/admin/backups/prune"), post(prune))
        .route(&format!("{BASE}/admin/backups/result"), get(result_log))
        .route(&format!("{BASE}/admin/backups/{{id}}/verify"), post(verify))
        .route(
            &format!("{BASE}/admin/backups/{{id}}/download"),
            get(download),
        )
}

#[derive(Deserialize, Default)]
struct ListQuery {
    page: Option<usize>,
    /// The backup whose restore commands are shown (default: the newest).
    restore: Option<String>,
}

/// What the list page needs, read on the blocking pool.
struct Listing {
    listing: backup::Listing,
    keep: Vec<Option<backup::Keep>>,
    missed: Option<String>,
    result: Option<String>,
}

async fn show(Admin(ctx): Admin, Query(q): Query<ListQuery>) -> Response {
    let read = ctx
        .run(|ops| {
            let settings = &ops.config().schedule.backup;
            let listing = backup::list(ops.data(), settings, None)?;
            let keep = backup::plan(
                &listing.entries,
                backup::Retention::configured(settings),
                ops.clock().time_zone(),
            );
            let missed = settings.at.and_then(|at| {
                ops::schedule::missed_backup(&listing.root, &ops.clock().now(), at)
                    .map(|m| m.to_string())
            });
            let result = std::fs::read_to_string(ops.data().join("log/backup_result.log"))
                .ok()
                .and_then(|text| text.lines().next().map(str::to_string));
            Ok(Listing {
                listing,
                keep,
                missed,
                result,
            })
        })
        .await;
    let Listing {
        listing,
        keep,
        missed,
        result,
    } = match read {
        Ok(read) => read,
        Err(e) => return ctx.error(&e),
    };
    let settings = ctx.ops().config().schedule.backup.clone();
    // Newest first, as an operator looks for them.
    let rows: Vec<(&Entry, &Option<backup::Keep>)> =
        listing.entries.iter().zip(&keep).rev().collect();
    let pages = rows.len().div_ceil(PAGE).max(1);
    let page = q.page.unwrap_or(1).clamp(1, pages);
    let restore_id = q
        .restore
        .filter(|id| listing.entries.iter().any(|e| &e.id == id))
        .or_else(|| {
            rows.iter()
                .find(|(e, _)| e.manifest().is_some())
                .map(|(e, _)| e.id.clone())
        });
    let body = html! {
        section #take {
            h2 { (ctx.t("backup.take_title")) }
            form #create method="post" action={(BASE) "/admin/backups/create"} {
                (ctx.csrf_field())
                // Not a <label>: the stylesheet stacks a label's content, and a checkbox
                // reads better beside its words.
                p {
                    input #verify type="checkbox" name="verify" value="on" checked[settings.verify] aria-labelledby="verify-text";
                    " " span #verify-text { (ctx.t("backup.verify_after")) }
                }
                button type="submit" { (ctx.t("backup.take_now")) }
            }
            p { (ctx.tf("backup.directory", &[("dir", &listing.root.display())])) }
        }
        section #list {
            h2 { (ctx.t("backup.list_title")) }
            @if rows.is_empty() {
                p.empty { (ctx.t("backup.none")) }
            } @else {
                table #backups {
                    thead { tr {
                        th { (ctx.t("backup.col_id")) }
                        th { (ctx.t("backup.col_taken")) }
                        th { (ctx.t("backup.col_kind")) }
                        th.num { (ctx.t("backup.col_messages")) }
                        th.num { (ctx.t("backup.col_size")) }
                        th.num { (ctx.t("backup.col_added")) }
                        th { (ctx.t("backup.col_verified")) }
                        th { (ctx.t("backup.col_state")) }
                        th { (ctx.t("backup.col_actions")) }
                    } }
                    tbody {
                        @for (entry, keep) in rows.iter().skip((page - 1) * PAGE).take(PAGE) {
                            (row(&ctx, entry, keep))
                        }
                    }
                }
                @if pages > 1 {
                    nav.pager {
                        @if page > 1 { a href={(BASE) "/admin/backups?page=" (page - 1)} { (ctx.t("common.previous")) } }
                        span { (page) " / " (pages) }
                        @if page < pages { a href={(BASE) "/admin/backups?page=" (page + 1)} { (ctx.t("common.next")) } }
                    }
                }
            }
        }
        section #policy {
            h2 { (ctx.t("backup.policy_title")) }
            p.schedule {
                @match settings.at {
                    Some(at) => {
                        (ctx.tf("backup.schedule_daily", &[("time", &format!("{:02}:{:02}", at / 60, at % 60))]))
                        " "
                        (if settings.verify { ctx.t("backup.schedule_verified") } else { ctx.t("backup.schedule_unverified") })
                    }
                    None => { (ctx.t("backup.schedule_none")) }
                }
            }
            @if let Some(missed) = &missed {
                p.error.missed { (missed) }
            }
            p.retention {
                (ctx.tf("backup.retention", &[("daily", &settings.keep_daily), ("weekly", &settings.keep_weekly)]))
            }
            @if let Some(result) = &result {
                p.last-result {
                    (ctx.t("backup.last_result")) " " code { (result) } " "
                    a href={(BASE) "/admin/backups/result"} { (ctx.t("common.download_log")) }
                }
            }
            form #prune method="post" action={(BASE) "/admin/backups/prune"} data-confirm=(ctx.t("backup.prune_confirm")) {
                (ctx.csrf_field())
                button.secondary type="submit" { (ctx.t("backup.prune_now")) }
            }
        }
        @if let Some(id) = &restore_id {
            section #restore {
                h2 { (ctx.t("backup.restore_title")) }
                p.warn { (ctx.tf("backup.restore_here", &[("id", id)])) }
                pre #restore-command { (backup::restore_commands(ctx.ops().data(), &settings, id, None).join("\n")) }
                button.secondary type="button" data-copy="restore-command" { (ctx.t("backup.copy")) }
                p { (ctx.tf("backup.restore_elsewhere", &[("id", id)])) }
                pre #restore-unpacked { (backup::restore_commands(ctx.ops().data(), &settings, id, Some(std::path::Path::new(UNPACK_DIR))).join("\n")) }
                button.secondary type="button" data-copy="restore-unpacked" { (ctx.t("backup.copy")) }
            }
        }
    };
    ctx.page(ctx.t("admin.menu_backups"), body)
}

fn row(ctx: &Ctx, entry: &Entry, keep: &Option<backup::Keep>) -> maud::Markup {
    let id = &entry.id;
    match &entry.state {
        EntryState::Complete { manifest, verified } => html! {
            tr data-id=(id) {
                td.id { code { (id) } }
                td.taken { (ctx.time(manifest.created_unix)) }
                td { (manifest.trigger.label()) }
                td.num { (manifest.messages) }
                td.num.size { (human_bytes(manifest.bytes)) }
                td.num { (human_bytes(backup::added_bytes(manifest))) }
                td.verified {
                    @match verified {
                        None => { (ctx.t("backup.not_verified")) }
                        Some(v) if v.ok => { span.ok { (ctx.t("backup.verified_ok")) } " " (ctx.time(v.at_unix)) }
                        Some(v) => {
                            span.error { (ctx.t("backup.verified_failed")) } " " (ctx.time(v.at_unix))
                            @if let Some(problem) = &v.problem { br; small { (problem) } }
                        }
                    }
                }
                td.state {
                    span.ok { (ctx.t("backup.state_complete")) }
                    br;
                    small {
                        @match keep {
                            Some(why) => { (ctx.t("backup.kept")) ": " (why) }
                            None => { (ctx.t("backup.goes_at_prune")) }
                        }
                    }
                }
                td.actions {
                    a.download href={(BASE) "/admin/backups/" (crate::page::encode(id)) "/download"} download { (ctx.t("backup.download")) }
                    " "
                    form.inline.verify method="post" action={(BASE) "/admin/backups/" (crate::page::encode(id)) "/verify"} {
                        (ctx.csrf_field())
                        button.secondary type="submit" { (ctx.t("backup.verify")) }
                    }
                    " "
                    a.restore href={(BASE) "/admin/backups?restore=" (crate::page::encode(id)) "#restore"} { (ctx.t("backup.restore_link")) }
                }
            }
        },
        EntryState::Incomplete => html! {
            tr data-id=(id) {
                td.id { code { (id) } }
                td { "—" } td { "—" } td {} td {} td {} td {}
                td.state.warn { (ctx.t("backup.state_interrupted")) }
                td {}
            }
        },
        EntryState::Unreadable(why) => html! {
            tr data-id=(id) {
                td.id { code { (id) } }
                td { "—" } td { "—" } td {} td {} td {} td {}
                td.state.error { (ctx.t("backup.state_unreadable")) br; small { (why) } }
                td {}
            }
        },
    }
}

fn who(ctx: &Ctx) -> String {
    ctx.session
        .as_ref()
        .map_or_else(String::new, |s| s.address.clone())
}

#[derive(Deserialize)]
struct CreateForm {
    verify: Option<String>,
}

/// Takes a backup as a job: the job's page shows its progress and offers the result log.
async fn create(Admin(ctx): Admin, Posted(form): Posted<CreateForm>) -> Response {
    let verify = form.verify.is_some();
    let id = ctx.console.jobs.start(
        ctx.ops().clone(),
        ctx.t("backup.job_create").to_string(),
        who(&ctx),
        move |ops, reporter| {
            let request = CreateRequest {
                dir: None,
                copy_blobs: false,
                verify,
                trigger: Trigger::Manual,
            };
            let created = backup::create(
                ops.data(),
                &ops.config().schedule.backup,
                ops.clock(),
                &request,
                &reporter,
            )?;
            // A backup that left mail out or does not verify must not look like a good one.
            if let Some(damage) = created.damage() {
                return Err(ops::Error::failed(damage));
            }
            let summary = created.summary();
            let mut lines = summary.lines();
            let first = lines.next().unwrap_or_default().to_string();
            for line in lines {
                reporter.note(line.trim());
            }
            Ok(jobs::Outcome {
                summary: first,
                log: Some("log/backup_result.log".into()),
            })
        },
    );
    jobs::redirect_to(id)
}

#[derive(Deserialize)]
struct Empty {}

async fn verify(Admin(ctx): Admin, Path(id): Path<String>, Posted(_): Posted<Empty>) -> Response {
    if let Err(e) = backup::check_id(&id) {
        return ctx.error(&e);
    }
    let job = ctx.console.jobs.start(
        ctx.ops().clone(),
        ctx.tf("backup.job_verify", &[("id", &id)]),
        who(&ctx),
        move |ops, reporter| {
            let request = VerifyRequest {
                backup: id,
                dir: None,
            };
            let report = backup::verify(
                ops.data(),
                &ops.config().schedule.backup,
                ops.clock(),
                &request,
                &reporter,
            )?;
            for problem in report.problems.iter().take(50) {
                reporter.note(&problem.to_string());
            }
            for note in &report.notes {
                reporter.note(note);
            }
            let line = format!("backup {}: {}", report.id(), backup::verdict(&report));
            if report.is_ok() {
                Ok(jobs::Outcome {
                    summary: line,
                    log: Some("log/backup.log".into()),
                })
            } else {
                Err(ops::Error::failed(line))
            }
        },
    );
    jobs::redirect_to(job)
}

/// Applies the configured retention now and shows what it kept and removed.
async fn prune(Admin(ctx): Admin, Posted(_): Posted<Empty>) -> Response {
    let pruned = ctx
        .run(|ops| {
            backup::prune(
                ops.data(),
                &ops.config().schedule.backup,
                ops.clock(),
                &PruneRequest::default(),
            )
        })
        .await;
    let pruned = match pruned {
        Ok(p) => p,
        Err(e) => return ctx.error(&e),
    };
    let body = html! {
        p { (ctx.tf("backup.retention", &[("daily", &pruned.retention.daily), ("weekly", &pruned.retention.weekly)])) }
        table #pruned {
            thead { tr { th { (ctx.t("backup.col_id")) } th { (ctx.t("backup.col_state")) } } }
            tbody {
                @for d in &pruned.decisions {
                    tr {
                        td { code { (d.id) } }
                        td {
                            @match &d.keep {
                                Some(why) => { span.ok { (ctx.t("backup.kept")) } ": " (why) }
                                None => { span.warn { (ctx.t("backup.removed")) } }
                            }
                        }
                    }
                }
                @for leftover in &pruned.leftovers {
                    tr { td { code { (leftover) } } td { span.warn { (ctx.t("backup.removed_leftover")) } } }
                }
            }
        }
        p { a href={(BASE) "/admin/backups"} { (ctx.t("common.back")) } }
    };
    ctx.page(ctx.t("backup.prune_title"), body)
}

async fn result_log(Admin(ctx): Admin) -> Response {
    jobs::download_log(&ctx, "log/backup_result.log").await
}

/// One backup as a tar file: the whole (200) or the range asked for (206), with the length
/// and an ETag, so a browser shows the progress and resumes where it stopped.
async fn download(
    Admin(ctx): Admin,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let opened = ctx
        .run(move |ops| download::open(ops.data(), &ops.config().schedule.backup, &id))
        .await;
    let archive = match opened {
        Ok(d) => d,
        Err(e) => return ctx.error(&e),
    };
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let asked = download::requested(
        text(header::RANGE),
        text(header::IF_RANGE),
        &archive.etag,
        archive.total,
    );
    let (status, range) = match asked {
        download::Requested::Whole => (StatusCode::OK, 0..archive.total),
        download::Requested::Part(range) => (StatusCode::PARTIAL_CONTENT, range),
        download::Requested::Unsatisfiable => {
            let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", archive.total)) {
                response.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return response;
        }
    };
    let mut response_headers = HeaderMap::new();
    let mut put = |name, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            response_headers.insert(name, v);
        }
    };
    put(header::CONTENT_TYPE, "application/x-tar".into());
    put(
        header::CONTENT_LENGTH,
        (range.end - range.start).to_string(),
    );
    put(header::ACCEPT_RANGES, "bytes".into());
    put(header::ETAG, archive.etag.clone());
    put(
        header::CONTENT_DISPOSITION,
        format!("attachment; filename=\"{}\"", archive.file_name()),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        put(
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{}", range.start, range.end - 1, archive.total),
        );
    }
    if method == Method::HEAD || range.start == range.end {
        return (status, response_headers, Body::empty()).into_response();
    }
    let body = streamed(move |out| archive.write_range(range, out));
    (status, response_headers, body).into_response()
}

/// How many pieces may wait between the reading thread and the connection: the memory a
/// download holds is this many pieces of at most 64 KiB, whatever its size.
const IN_FLIGHT: usize = 4;

/// A response body written by `work` on a blocking thread, piece by piece, through a
/// bounded channel: the thread waits while the client is slower than the disk. When `work`
/// fails half way the body ends in an error, so the client sees a cut-off download, never
/// a short one that looks whole.
pub(super) fn streamed(
    work: impl FnOnce(&mut dyn FnMut(&[u8]) -> io::Result<()>) -> ops::Result<()> + Send + 'static,
) -> Body {
    let (mut sender, body) = Channel::<Bytes, io::Error>::new(IN_FLIGHT);
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let result = {
            let mut send = |piece: &[u8]| {
                runtime
                    .block_on(sender.send_data(Bytes::copy_from_slice(piece)))
                    .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
            };
            work(&mut send)
        };
        if let Err(e) = result {
            // A client that goes away (a paused or cancelled download) is no fault.
            let gone = matches!(&e, ops::Error::Io { source, .. } if source.kind() == io::ErrorKind::BrokenPipe);
            if gone {
                tracing::debug!(error = e.one_line(), "a console download ended early");
            } else {
                tracing::warn!(error = e.one_line(), "a console download stopped");
            }
            sender.abort(io::Error::other(e.one_line()));
        }
    });
    Body::new(body)
}
