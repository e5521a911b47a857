//! The outbound queue: every queued message with its recipients' state, one message with
//! its headers, and the levers of `tegami queue` (retry, remove, flush), through the same
//! `ops::queue` calls. A running server sees a retried or flushed message within a second.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use ops::queue::waiting;
use serde::Deserialize;
use store::{QueuedMessage, RecipientState};

use super::directory::{page_of, pager};
use crate::session::{Admin, Posted};
use crate::{BASE, Console, Ctx, svg};

pub fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route(&format!("{BASE}/admin/queue"), get(list))
        .route(&format!("{BASE}/admin/queue/flush"), post(flush))
        .route(&format!("{BASE}/admin/queue/{{id}}"), get(show))
        .route(&format!("{BASE}/admin/queue/{{id}}/retry"), post(retry))
        .route(&format!("{BASE}/admin/queue/{{id}}/remove"), post(remove))
}

#[derive(Deserialize, Default)]
struct ListQuery {
    page: Option<usize>,
    done: Option<String>,
    id: Option<i64>,
    count: Option<u64>,
}

/// Errors of remote servers can be long and span lines: one line, cut for a table cell.
fn one_line(text: &str, max: usize) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= max {
        line
    } else {
        let cut: String = line.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

fn sender(ctx: &Ctx, address: &str) -> String {
    if address.is_empty() {
        ctx.t("queue.null_sender").to_string()
    } else {
        address.to_string()
    }
}

fn notice(ctx: &Ctx, q: &ListQuery) -> Markup {
    let id = q.id.unwrap_or(0);
    let count = q.count.unwrap_or(0);
    let text = match q.done.as_deref() {
        Some("removed") => ctx.tf("queue.done_removed", &[("id", &id)]),
        Some("retried") => ctx.tf("queue.done_retried", &[("id", &id), ("count", &count)]),
        Some("flushed") => ctx.tf("queue.done_flushed", &[("count", &count)]),
        _ => return html! {},
    };
    html! { p.notice.ok { (text) } }
}

fn actions(ctx: &Ctx, id: i64) -> Markup {
    html! {
        form.inline.retry method="post" action={(BASE) "/admin/queue/" (id) "/retry"} {
            (ctx.csrf_field())
            button.secondary type="submit" { (ctx.t("queue.retry")) }
        }
        " "
        form.inline.remove method="post" action={(BASE) "/admin/queue/" (id) "/remove"} data-confirm=(ctx.tf("queue.confirm_remove", &[("id", &id)])) {
            (ctx.csrf_field())
            button.danger type="submit" { (ctx.t("queue.remove")) }
        }
    }
}

async fn list(Admin(ctx): Admin, Query(q): Query<ListQuery>) -> Response {
    let queue = match ctx.run(|ops| ops.queue_list()).await {
        Ok(queue) => queue,
        Err(e) => return ctx.error(&e),
    };
    let page = q.page.unwrap_or(1).max(1);
    let (rows, pages) = page_of(&queue.messages, page);
    let body = html! {
        (notice(&ctx, &q))
        p.summary { (ctx.tf("queue.summary", &[("count", &queue.messages.len())])) }
        form #flush method="post" action={(BASE) "/admin/queue/flush"} {
            (ctx.csrf_field())
            button type="submit" { (ctx.t("queue.flush")) }
            " " span.hint { (ctx.t("queue.flush_hint")) }
        }
        @if queue.messages.is_empty() {
            p.empty { (ctx.t("queue.empty")) }
        } @else {
            table #queue {
                thead { tr {
                    th.num { (ctx.t("queue.id")) }
                    th { (ctx.t("queue.queued")) }
                    th.num { (ctx.t("queue.size")) }
                    th { (ctx.t("queue.sender")) }
                    th { (ctx.t("queue.recipients")) }
                    th { (ctx.t("queue.next_attempt")) }
                    th { (ctx.t("queue.last_error")) }
                    th {}
                } }
                tbody {
                    @for m in rows {
                        (row(&ctx, m))
                    }
                }
            }
            (pager(&ctx, "/admin/queue", page, pages))
        }
    };
    ctx.page(ctx.t("admin.menu_queue"), body)
}

fn row(ctx: &Ctx, m: &QueuedMessage) -> Markup {
    let next = waiting(m).map(|r| r.next_attempt).min();
    let error = waiting(m).find_map(|r| r.last_error.as_deref());
    let recipients: Vec<&str> = waiting(m).map(|r| r.address.as_str()).collect();
    html! {
        tr data-id=(m.id.0) {
            td.num { a href={(BASE) "/admin/queue/" (m.id.0)} { (m.id.0) } }
            td { (ctx.time(m.created)) }
            td.num { (svg::human_bytes(m.size)) }
            td.sender { (sender(ctx, &m.sender)) }
            td.recipients {
                (recipients.join(", "))
                " " span.count { "(" (recipients.len()) "/" (m.recipients.len()) ")" }
            }
            td { (next.map(|t| ctx.time(t)).unwrap_or_else(|| "—".into())) }
            td.error { (error.map(|e| one_line(e, 120)).unwrap_or_default()) }
            td { (actions(ctx, m.id.0)) }
        }
    }
}

async fn show(Admin(ctx): Admin, Path(id): Path<i64>) -> Response {
    let entry = match ctx.run(move |ops| ops.queue_show(id)).await {
        Ok(entry) => entry,
        Err(e) => return ctx.error(&e),
    };
    let m = &entry.message;
    let body = html! {
        p { a href={(BASE) "/admin/queue"} { (ctx.t("queue.back")) } }
        table #message.fields {
            tr { th { (ctx.t("queue.id")) } td { (m.id.0) } }
            tr { th { (ctx.t("queue.sender")) } td.sender { (sender(&ctx, &m.sender)) } }
            tr { th { (ctx.t("queue.queued")) } td { (ctx.time(m.created)) } }
            tr { th { (ctx.t("queue.size")) } td { (svg::human_bytes(m.size)) " (" (m.size) ")" } }
        }
        p { (actions(&ctx, m.id.0)) }
        h2 { (ctx.t("queue.recipients")) }
        table #recipients {
            thead { tr {
                th { (ctx.t("queue.recipient")) }
                th { (ctx.t("queue.state")) }
                th.num { (ctx.t("queue.attempts")) }
                th { (ctx.t("queue.next_attempt")) }
                th { (ctx.t("queue.last_error")) }
            } }
            tbody {
                @for r in &m.recipients {
                    tr {
                        td { (r.address) }
                        td class={ "state-" (ops::queue::state_name(r.state)) } {
                            (match r.state {
                                RecipientState::Queued => ctx.t("queue.state_queued"),
                                RecipientState::Delivered => ctx.t("queue.state_delivered"),
                                RecipientState::Failed => ctx.t("queue.state_failed"),
                            })
                            @if r.delay_notified { " " span.warn { (ctx.t("queue.delay_notified")) } }
                        }
                        td.num { (r.attempts) }
                        td { @if r.state == RecipientState::Queued { (ctx.time(r.next_attempt)) } }
                        td.error { (r.last_error.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
        @if !entry.headers.is_empty() {
            h2 { (ctx.t("queue.headers")) }
            pre #headers { (entry.headers) }
        }
    };
    ctx.page(&ctx.tf("queue.message_title", &[("id", &id)]), body)
}

#[derive(Deserialize)]
struct Empty {}

async fn retry(Admin(ctx): Admin, Path(id): Path<i64>, Posted(_): Posted<Empty>) -> Response {
    match ctx.run(move |ops| ops.queue_retry(id)).await {
        Ok(count) => Redirect::to(&format!(
            "{BASE}/admin/queue?done=retried&id={id}&count={count}"
        ))
        .into_response(),
        Err(e) => ctx.error(&e),
    }
}

async fn remove(Admin(ctx): Admin, Path(id): Path<i64>, Posted(_): Posted<Empty>) -> Response {
    match ctx.run(move |ops| ops.queue_remove(id)).await {
        Ok(()) => Redirect::to(&format!("{BASE}/admin/queue?done=removed&id={id}")).into_response(),
        Err(e) => ctx.error(&e),
    }
}

async fn flush(Admin(ctx): Admin, Posted(_): Posted<Empty>) -> Response {
    match ctx.run(|ops| ops.queue_flush()).await {
        Ok(count) => {
            Redirect::to(&format!("{BASE}/admin/queue?done=flushed&count={count}")).into_response()
        }
        Err(e) => ctx.error(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_become_one_cut_line() {
        assert_eq!(
            one_line("451 4.7.0\n  try   later", 80),
            "451 4.7.0 try later"
        );
        assert_eq!(one_line("abcdefgh", 5), "abcd…");
        assert_eq!(one_line("日本語のエラー", 4), "日本語…");
    }
}
