//! The user's archive viewer: their own archived mail, one archive at a time, searched in
//! the archive's full-text index (words, sender, recipient, subject, dates), a page at a
//! time, and the result exported as CSV with the columns and rows of `tegami archive export`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use maud::html;
use serde::Deserialize;
use store::MailboxId;

use crate::page::encode;
use crate::session::User;
use crate::svg::human_bytes;
use crate::user::mail::{SearchQuery, download, who};
use crate::{BASE, Console};

pub fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route(&format!("{BASE}/archive"), get(show))
        .route(&format!("{BASE}/archive/export.csv"), get(export))
        .route(&format!("{BASE}/archive/{{id}}/open"), get(open))
}

async fn show(User(ctx): User, Query(search): Query<SearchQuery>) -> Response {
    let (_, address) = who(&ctx);
    let filter = match search.filter() {
        Ok(f) => f,
        Err(e) => return ctx.error(&e),
    };
    let page = search.page.unwrap_or(1);
    let wanted = search.id;
    let result = ctx
        .run(move |ops| {
            let archives = ops.mail_archives(&address)?;
            // The newest archive unless one is asked for.
            let Some(id) = wanted.or_else(|| archives.last().map(|a| a.id)) else {
                return Ok((archives, None));
            };
            let found = ops.mail_archive_search(&address, id, &filter, page)?;
            Ok((archives, Some((id, found))))
        })
        .await;
    let (archives, found) = match result {
        Ok(r) => r,
        Err(e) => return ctx.error(&e),
    };
    let Some((id, found)) = found else {
        return ctx.page(
            ctx.t("mail.archive_title"),
            html! { p.empty { (ctx.t("mail.no_archives")) } },
        );
    };
    let here = format!("{BASE}/archive");
    let filter_query = search.filter_query();
    let with = |rest: &str| {
        let mut query = format!("id={id}");
        for part in [filter_query.as_str(), rest] {
            if !part.is_empty() {
                query.push('&');
                query.push_str(part);
            }
        }
        query
    };
    let choose = html! {
        label { (ctx.t("mail.archive"))
            select name="id" {
                @for a in &archives {
                    option value=(a.id) selected[a.id == id] { (a.label) " (#" (a.id) ")" }
                }
            }
        }
    };
    let body = html! {
        p { a href={(BASE) "/mail"} { (ctx.t("mail.back_to_mailboxes")) } }
        p.hint { (ctx.t("mail.archive_hint")) }
        (search.form(&ctx, &here, choose, true))
        p { a #export href={(BASE) "/archive/export.csv?" (with(""))} { (ctx.t("mail.export_csv")) } }
        @if found.hits.is_empty() {
            p.empty { (ctx.t("mail.nothing_found")) }
        } @else {
            table #hits {
                thead { tr {
                    th { (ctx.t("mail.date")) }
                    th { (ctx.t("mail.mailbox")) }
                    th { (ctx.t("mail.from")) }
                    th { (ctx.t("mail.to")) }
                    th { (ctx.t("mail.subject")) }
                    th.num { (ctx.t("mail.size")) }
                } }
                tbody {
                    @for h in &found.hits {
                        tr data-message-id=(h.message_id) {
                            td { (h.date) }
                            td { (h.mailbox) }
                            td.from { (h.from) }
                            td { (h.to) }
                            td.subject {
                                a href={(BASE) "/archive/" (id) "/open?mailbox=" (encode(&h.mailbox)) "&uid=" (h.uid)} {
                                    @if h.subject.trim().is_empty() { (ctx.t("mail.no_subject")) } @else { (h.subject) }
                                }
                            }
                            td.num { (human_bytes(h.size)) }
                        }
                    }
                }
            }
        }
        nav.pager {
            @if found.page > 1 {
                a.previous href={(here) "?" (with(&format!("page={}", found.page - 1)))} { (ctx.t("common.previous")) }
            }
            @if found.more {
                a.next href={(here) "?" (with(&format!("page={}", found.page + 1)))} { (ctx.t("common.next")) }
            }
        }
    };
    ctx.page(ctx.t("mail.archive_title"), body)
}

async fn export(User(ctx): User, Query(search): Query<SearchQuery>) -> Response {
    let (_, address) = who(&ctx);
    let filter = match search.filter() {
        Ok(f) => f,
        Err(e) => return ctx.error(&e),
    };
    let wanted = search.id;
    let result = ctx
        .run(move |ops| {
            let id = match wanted {
                Some(id) => id,
                None => ops
                    .mail_archives(&address)?
                    .last()
                    .map(|a| a.id)
                    .ok_or_else(|| ops::Error::not_found("you have no archived mail"))?,
            };
            Ok((id, ops.mail_archive_csv(&address, id, &filter)?))
        })
        .await;
    match result {
        Ok((id, csv)) => download(&format!("archive-{id}.csv"), "text/csv; charset=utf-8", csv),
        Err(e) => ctx.error(&e),
    }
}

#[derive(Deserialize)]
struct Open {
    mailbox: String,
    uid: u32,
}

/// A hit of the viewer opened in the reader, through the archive mailbox that shows it.
async fn open(User(ctx): User, Path(id): Path<u32>, Query(q): Query<Open>) -> Response {
    let (account, _) = who(&ctx);
    let uid = q.uid;
    match ctx
        .run(move |ops| ops.mail_archive_locate(account, id, &q.mailbox, uid))
        .await
    {
        Ok(MailboxId(mailbox)) => {
            Redirect::to(&format!("{BASE}/mail/{mailbox}/{uid}")).into_response()
        }
        Err(e) => ctx.error(&e),
    }
}
