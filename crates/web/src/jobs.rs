//! Long operations started from a page (the data check, a backup, an archive): each runs
//! on a blocking thread with an [`ops::Progress`] that records where it is, and its page
//! (`/console/jobs/<id>`) shows the phase and a progress bar, refreshing itself every two
//! seconds (a meta refresh, so it works without JavaScript) until the result is there.
//!
//! Jobs live in memory: the last [`KEPT`] are listed, and a job's result log stays in
//! `log/` where the operation wrote it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use maud::html;

use crate::session::Admin;
use crate::{BASE, Console};

/// Finished and running jobs remembered for their pages.
const KEPT: usize = 50;

/// Where a job is, as its page shows it.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub phase: String,
    pub bytes: bool,
    pub done: u64,
    pub total: Option<u64>,
    pub notes: Vec<String>,
    /// `Some(Ok(summary))` or `Some(Err(message))` once it ended.
    pub result: Option<Result<String, String>>,
    /// A file the result offers for download (the result log), relative to the data dir.
    pub log: Option<String>,
}

pub struct Job {
    pub id: u64,
    pub title: String,
    pub started_by: String,
    pub status: Mutex<Status>,
}

impl Job {
    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn update(&self, f: impl FnOnce(&mut Status)) {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// The job as an operation sees it.
struct Recorder(Arc<Job>);

impl ops::Progress for Recorder {
    fn phase(&self, name: &str, unit: ops::progress::Unit, total: Option<u64>) {
        self.0.update(|s| {
            s.phase = name.to_string();
            s.bytes = unit == ops::progress::Unit::Bytes;
            s.done = 0;
            s.total = total;
        });
    }

    fn total(&self, total: u64) {
        self.0.update(|s| s.total = Some(total));
    }

    fn advance(&self, done: u64) {
        // Parallel workers report out of order: never step back.
        self.0.update(|s| s.done = s.done.max(done));
    }

    fn note(&self, line: &str) {
        self.0.update(|s| {
            if s.notes.len() < 100 {
                s.notes.push(line.to_string());
            }
        });
    }
}

/// What a finished job hands back: a one-line summary and, when there is one, the result
/// log to offer (a path relative to the data directory).
pub struct Outcome {
    pub summary: String,
    pub log: Option<String>,
}

#[derive(Default)]
pub struct Jobs {
    next: AtomicU64,
    list: Mutex<VecDeque<Arc<Job>>>,
}

impl Jobs {
    /// Starts `work` on a blocking thread; returns the job's id for its page.
    pub fn start(
        &self,
        ops: Arc<ops::Ops>,
        title: String,
        started_by: String,
        work: impl FnOnce(&ops::Ops, ops::Reporter) -> ops::Result<Outcome> + Send + 'static,
    ) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let job = Arc::new(Job {
            id,
            title,
            started_by,
            status: Mutex::default(),
        });
        {
            let mut list = self.list.lock().unwrap_or_else(|p| p.into_inner());
            if list.len() >= KEPT {
                list.pop_front();
            }
            list.push_back(job.clone());
        }
        let reporter: ops::Reporter = Arc::new(Recorder(job.clone()));
        tokio::task::spawn_blocking(move || {
            let result = work(&ops, reporter);
            job.update(|s| match result {
                Ok(outcome) => {
                    s.result = Some(Ok(outcome.summary));
                    s.log = outcome.log;
                }
                Err(e) => s.result = Some(Err(e.one_line())),
            });
        });
        id
    }

    pub fn get(&self, id: u64) -> Option<Arc<Job>> {
        let list = self.list.lock().unwrap_or_else(|p| p.into_inner());
        list.iter().find(|j| j.id == id).cloned()
    }

    /// The newest first.
    pub fn recent(&self) -> Vec<Arc<Job>> {
        let list = self.list.lock().unwrap_or_else(|p| p.into_inner());
        list.iter().rev().cloned().collect()
    }
}

pub fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route(&format!("{BASE}/jobs/{{id}}"), get(job_page))
        .route(&format!("{BASE}/jobs/{{id}}/log"), get(job_log))
}

/// The URL of a job's page, where a form that started one redirects.
pub fn page_url(id: u64) -> String {
    format!("{BASE}/jobs/{id}")
}

pub fn redirect_to(id: u64) -> Response {
    Redirect::to(&page_url(id)).into_response()
}

fn amount(n: u64, bytes: bool) -> String {
    if bytes {
        crate::svg::human_bytes(n)
    } else {
        n.to_string()
    }
}

async fn job_page(
    Admin(ctx): Admin,
    State(console): State<Arc<Console>>,
    Path(id): Path<u64>,
) -> Response {
    let Some(job) = console.jobs.get(id) else {
        return ctx.message(
            StatusCode::NOT_FOUND,
            ctx.t("common.job"),
            ctx.t("common.job_unknown"),
        );
    };
    let s = job.status();
    let running = s.result.is_none();
    let body = html! {
        div.job data-running=(running) {
            p { (ctx.t("common.job_started_by")) " " (job.started_by) }
            @if running {
                p.phase { (s.phase) }
                @if let Some(total) = s.total {
                    progress value=(s.done) max=(total.max(1)) {}
                    " " span.count { (amount(s.done, s.bytes)) " / " (amount(total, s.bytes)) }
                } @else {
                    progress {}
                    " " span.count { (amount(s.done, s.bytes)) }
                }
            }
            @match &s.result {
                Some(Ok(summary)) => { p.result.ok { (summary) } }
                Some(Err(message)) => { p.result.error { (message) } }
                None => {}
            }
            @if s.log.is_some() {
                p { a.download href={(page_url(id)) "/log"} { (ctx.t("common.download_log")) } }
            }
            @if !s.notes.is_empty() {
                ul.notes { @for n in &s.notes { li { (n) } } }
            }
        }
    };
    let mut response = ctx.page(&job.title, body);
    if running {
        // Refreshes itself until the job ends (without JavaScript too).
        response.headers_mut().insert(
            axum::http::header::REFRESH,
            axum::http::HeaderValue::from_static("2"),
        );
    }
    response
}

/// The job's result log, as a download.
async fn job_log(
    Admin(ctx): Admin,
    State(console): State<Arc<Console>>,
    Path(id): Path<u64>,
) -> Response {
    let Some(log) = console.jobs.get(id).and_then(|j| j.status().log) else {
        return ctx.message(
            StatusCode::NOT_FOUND,
            ctx.t("common.job"),
            ctx.t("common.job_unknown"),
        );
    };
    download_log(&ctx, &log).await
}

/// A file of `log/` as a download. `name` is relative to the data directory and must stay
/// inside `log/`.
pub async fn download_log(ctx: &crate::Ctx, name: &str) -> Response {
    let file_name = name.rsplit('/').next().unwrap_or(name).to_string();
    if !name.starts_with("log/") || name.contains("..") || file_name.is_empty() {
        return ctx.message(
            StatusCode::NOT_FOUND,
            ctx.t("common.job"),
            ctx.t("common.job_unknown"),
        );
    }
    let path = ctx.ops().data().join(name);
    match tokio::fs::read(&path).await {
        Ok(bytes) => (
            [
                (
                    axum::http::header::CONTENT_TYPE,
                    "text/plain; charset=utf-8".to_string(),
                ),
                (
                    axum::http::header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{file_name}\""),
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(_) => ctx.message(
            StatusCode::NOT_FOUND,
            ctx.t("common.job"),
            ctx.t("common.job_unknown"),
        ),
    }
}
