//! Lists and their subscribers: every list with its counts and a form to make one; a
//! list's subscribers page by page with search, a CSV file's import, the CSV export, adding,
//! unsubscribing and removing one subscriber, and removing the list.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, Request};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::html;
use ops::newsletter::SubscriberAdd;
use ops::newsletter_views::{NewList, PER_PAGE, SubscriberQuery};
use serde::Deserialize;
use store::SubscriberStatus;

use super::{Empty, HOME, csv_download, tabs, ticked, upload, url};
use crate::page::encode;
use crate::session::{Admin, Posted};
use crate::{BASE, Console, Ctx};

pub fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route(&format!("{BASE}{HOME}"), get(show_lists))
        .route(&format!("{BASE}{HOME}/lists"), post(create_list))
        .route(&format!("{BASE}{HOME}/lists/{{id}}"), get(show_list))
        .route(&format!("{BASE}{HOME}/lists/{{id}}/import"), post(import))
        .route(
            &format!("{BASE}{HOME}/lists/{{id}}/export.csv"),
            get(export),
        )
        .route(
            &format!("{BASE}{HOME}/lists/{{id}}/subscribers"),
            post(add_subscriber),
        )
        .route(
            &format!("{BASE}{HOME}/lists/{{id}}/subscriber"),
            post(change_subscriber),
        )
        .route(
            &format!("{BASE}{HOME}/lists/{{id}}/delete"),
            post(delete_list),
        )
}

/// A subscriber status in the page's language.
pub(super) fn status_label(ctx: &Ctx, status: &str) -> String {
    match status {
        "active" => ctx.t("newsletters.status_active").into(),
        "unconfirmed" => ctx.t("newsletters.status_unconfirmed").into(),
        "unsubscribed" => ctx.t("newsletters.status_unsubscribed").into(),
        "bounced" => ctx.t("newsletters.status_bounced").into(),
        other => other.into(),
    }
}

async fn show_lists(Admin(ctx): Admin) -> Response {
    let lists = match ctx.run(|ops| ops.lists()).await {
        Ok(lists) => lists,
        Err(e) => return ctx.error(&e),
    };
    let body = html! {
        (tabs(&ctx))
        @if lists.is_empty() {
            p.empty { (ctx.t("newsletters.no_lists")) }
        } @else {
            table #lists {
                thead { tr {
                    th { (ctx.t("newsletters.list_name")) }
                    th { (ctx.t("newsletters.from")) }
                    th { (ctx.t("newsletters.double_opt_in")) }
                    @for status in SubscriberStatus::ALL {
                        th.num { (status_label(&ctx, status.as_str())) }
                    }
                    th { (ctx.t("newsletters.created")) }
                } }
                tbody {
                    @for list in &lists {
                        tr {
                            td.name { a href=(url(&format!("/lists/{}", list.id))) { (list.name) } }
                            td { (list.from_name) " <" (list.from_address) ">" }
                            td { (if list.double_opt_in { ctx.t("newsletters.yes") } else { ctx.t("newsletters.no") }) }
                            @for status in SubscriberStatus::ALL {
                                td.num class=(status.as_str()) { (list.subscribers.get(status.as_str()).copied().unwrap_or(0)) }
                            }
                            td { (ctx.time(list.created)) }
                        }
                    }
                }
            }
        }
        h2 { (ctx.t("newsletters.new_list")) }
        form #list-create method="post" action=(url("/lists")) {
            (ctx.csrf_field())
            label { (ctx.t("newsletters.list_name")) input type="text" name="name" required maxlength="200"; }
            label { (ctx.t("newsletters.from_address")) input type="email" name="from_address" required placeholder="news@example.com"; }
            label { (ctx.t("newsletters.from_name")) input type="text" name="from_name" maxlength="200"; }
            label { span { input type="checkbox" name="double_opt_in" value="on"; " " (ctx.t("newsletters.double_opt_in_explained")) } }
            button type="submit" { (ctx.t("newsletters.create_list")) }
        }
    };
    ctx.page(ctx.t("newsletters.title"), body)
}

#[derive(Deserialize)]
struct ListForm {
    name: String,
    from_address: String,
    #[serde(default)]
    from_name: String,
    double_opt_in: Option<String>,
}

async fn create_list(Admin(ctx): Admin, Posted(form): Posted<ListForm>) -> Response {
    let list = NewList {
        name: form.name.trim().to_string(),
        from_address: form.from_address.trim().to_string(),
        from_name: form.from_name.trim().to_string(),
        double_opt_in: ticked(&form.double_opt_in),
    };
    match ctx.run(move |ops| ops.newsletter_list_add(&list)).await {
        Ok(id) => Redirect::to(&url(&format!("/lists/{}", id.0))).into_response(),
        Err(e) => ctx.error(&e),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    q: String,
    page: Option<u32>,
    after: Option<i64>,
}

async fn show_list(Admin(ctx): Admin, Path(id): Path<i64>, Query(q): Query<ListQuery>) -> Response {
    let query = SubscriberQuery {
        search: q.q.clone(),
        page: q.page.unwrap_or(1),
        after: q.after,
    };
    let page = match ctx.run(move |ops| ops.subscriber_page(id, &query)).await {
        Ok(page) => page,
        Err(e) => return ctx.error(&e),
    };
    let list = &page.list;
    let here = url(&format!("/lists/{id}"));
    let search = q.q.trim();
    let pages = page.total.div_ceil(PER_PAGE as u64).max(1);
    let search_part = if search.is_empty() {
        String::new()
    } else {
        format!("&q={}", encode(search))
    };
    let previous = (page.page > 1).then(|| format!("{here}?page={}{search_part}", page.page - 1));
    let next = page.rows.last().filter(|_| page.more).map(|last| {
        format!(
            "{here}?page={}&after={}{search_part}",
            page.page + 1,
            last.id
        )
    });
    let body = html! {
        (tabs(&ctx))
        p.list-summary {
            (ctx.t("newsletters.from")) ": " (list.from_name) " <" (list.from_address) "> · "
            (ctx.t("newsletters.double_opt_in")) ": "
            (if list.double_opt_in { ctx.t("newsletters.yes") } else { ctx.t("newsletters.no") })
        }
        div.cards {
            @for status in SubscriberStatus::ALL {
                div.card {
                    h2 { (status_label(&ctx, status.as_str())) }
                    p.num id={"count-" (status.as_str())} { (list.subscribers.get(status.as_str()).copied().unwrap_or(0)) }
                }
            }
        }
        h2 { (ctx.t("newsletters.subscribers")) }
        form #search method="get" action=(here) {
            label { (ctx.t("newsletters.search_hint")) input type="search" name="q" value=(search) maxlength="256"; }
            button type="submit" { (ctx.t("common.search")) }
        }
        @if page.rows.is_empty() {
            p.empty { (ctx.t("common.none")) }
        } @else {
            table #subscribers {
                thead { tr {
                    th { (ctx.t("newsletters.email")) }
                    th { (ctx.t("newsletters.name")) }
                    th { (ctx.t("newsletters.status")) }
                    th { (ctx.t("newsletters.attributes")) }
                    th { (ctx.t("newsletters.joined")) }
                    th.num { (ctx.t("newsletters.bounces")) }
                    th {}
                } }
                tbody {
                    @for s in &page.rows {
                        tr {
                            td.email { (s.email) }
                            td.name { (s.name) }
                            td.status class=(s.status) { (status_label(&ctx, s.status)) }
                            td.attributes {
                                @for (k, v) in &s.attributes { code { (k) "=" (v) } " " }
                            }
                            td { (ctx.time(s.created)) }
                            td.num { (s.hard_bounces) " / " (s.soft_bounces) }
                            td {
                                @if s.status != "unsubscribed" {
                                    form.inline method="post" action={(here) "/subscriber"} {
                                        (ctx.csrf_field())
                                        input type="hidden" name="email" value=(s.email);
                                        input type="hidden" name="action" value="unsubscribe";
                                        button.secondary type="submit" { (ctx.t("newsletters.unsubscribe")) }
                                    }
                                    " "
                                }
                                form.inline method="post" action={(here) "/subscriber"} data-confirm=(ctx.tf("newsletters.confirm_remove_subscriber", &[("email", &s.email)])) {
                                    (ctx.csrf_field())
                                    input type="hidden" name="email" value=(s.email);
                                    input type="hidden" name="action" value="remove";
                                    button.danger type="submit" { (ctx.t("common.delete")) }
                                }
                            }
                        }
                    }
                }
            }
        }
        div.pager {
            @if let Some(previous) = &previous { a.previous href=(previous) { (ctx.t("common.previous")) } }
            span.page {
                @if search.is_empty() {
                    (ctx.tf("newsletters.page_of", &[("page", &page.page), ("pages", &pages)]))
                } @else {
                    (ctx.tf("newsletters.page", &[("page", &page.page)]))
                }
            }
            @if let Some(next) = &next { a.next href=(next) { (ctx.t("common.next")) } }
        }
        h2 { (ctx.t("newsletters.import")) }
        p { (ctx.t("newsletters.import_hint")) }
        form #import method="post" action={(here) "/import"} enctype="multipart/form-data" {
            (ctx.csrf_field())
            label { (ctx.t("newsletters.csv_file")) input type="file" name="file" accept=".csv,text/csv" required; }
            button type="submit" { (ctx.t("newsletters.import_button")) }
        }
        h2 { (ctx.t("newsletters.export")) }
        p { a #export href={(here) "/export.csv"} download { (ctx.t("newsletters.export_link")) } }
        h2 { (ctx.t("newsletters.add_subscriber")) }
        form #add-subscriber method="post" action={(here) "/subscribers"} {
            (ctx.csrf_field())
            label { (ctx.t("newsletters.email")) input type="email" name="email" required; }
            label { (ctx.t("newsletters.name")) input type="text" name="name" maxlength="200"; }
            label { (ctx.t("newsletters.attributes_hint")) textarea name="attributes" rows="3" {} }
            label { span { input type="checkbox" name="confirmed" value="on"; " " (ctx.t("newsletters.confirmed_explained")) } }
            button type="submit" { (ctx.t("newsletters.add")) }
        }
        h2 { (ctx.t("newsletters.remove_list")) }
        form #delete-list method="post" action={(here) "/delete"} data-confirm=(ctx.tf("newsletters.confirm_remove_list", &[("name", &list.name)])) {
            (ctx.csrf_field())
            button.danger type="submit" { (ctx.t("newsletters.remove_list_button")) }
        }
    };
    ctx.page(
        &ctx.tf("newsletters.list_title", &[("name", &list.name)]),
        body,
    )
}

/// The CSV file posted from the list's page, imported with `subscriber import`'s rules.
async fn import(Admin(ctx): Admin, Path(id): Path<i64>, request: Request) -> Response {
    let parts = match upload::read(&ctx, request).await {
        Ok(parts) => parts,
        Err(refused) => return refused,
    };
    let Some(file) = parts.into_iter().find(|p| p.name == "file") else {
        return ctx.error(&ops::Error::invalid("the form has no file field"));
    };
    let csv = file.data;
    let (name, report) = match ctx
        .run(move |ops| ops.subscriber_import_bytes(id, &csv))
        .await
    {
        Ok(done) => done,
        Err(e) => return ctx.error(&e),
    };
    let body = html! {
        (tabs(&ctx))
        p #import-summary {
            (ctx.tf("newsletters.import_summary", &[
                ("added", &report.added),
                ("present", &report.present),
                ("invalid", &report.bad.len()),
            ]))
        }
        @if !report.bad.is_empty() {
            table #import-bad {
                thead { tr { th.num { (ctx.t("newsletters.line")) } th { (ctx.t("newsletters.problem")) } } }
                tbody {
                    @for (line, why) in &report.bad {
                        tr { td.num { (line) } td { (why) } }
                    }
                }
            }
        }
        p { a href=(url(&format!("/lists/{id}"))) { (ctx.tf("newsletters.back_to_list", &[("name", &name)])) } }
    };
    ctx.page(ctx.t("newsletters.import"), body)
}

/// The list's subscribers as the CSV `subscriber export` writes, as a download.
async fn export(Admin(ctx): Admin, Path(id): Path<i64>) -> Response {
    let (name, bytes, _) = match ctx.run(move |ops| ops.subscriber_export_bytes(id)).await {
        Ok(done) => done,
        Err(e) => return ctx.error(&e),
    };
    csv_download(bytes, &format!("{}-subscribers.csv", file_name(&name)))
}

/// A list's name as a file name: letters, digits, `-`, `_` and `.` as they are, anything
/// else (quotes, slashes, non-ASCII) as `_`, so the header can neither break nor point
/// elsewhere.
fn file_name(name: &str) -> String {
    let safe: String = name
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let safe = safe.trim_start_matches('.');
    if safe.is_empty() {
        "list".into()
    } else {
        safe.into()
    }
}

#[derive(Deserialize)]
struct SubscriberForm {
    email: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    attributes: String,
    confirmed: Option<String>,
}

async fn add_subscriber(
    Admin(ctx): Admin,
    Path(id): Path<i64>,
    Posted(form): Posted<SubscriberForm>,
) -> Response {
    let confirmed = ticked(&form.confirmed);
    let attributes: Vec<String> = form
        .attributes
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    let done = ctx
        .run(move |ops| {
            let list = ops.newsletter_list(id)?;
            ops.subscriber_add(SubscriberAdd {
                list: list.name,
                email: form.email.trim().to_string(),
                name: Some(form.name.trim().to_string()),
                attributes,
                confirmed,
            })
        })
        .await;
    match done {
        Ok(_) => Redirect::to(&url(&format!("/lists/{id}"))).into_response(),
        Err(e) => ctx.error(&e),
    }
}

#[derive(Deserialize)]
struct SubscriberAction {
    email: String,
    action: String,
}

async fn change_subscriber(
    Admin(ctx): Admin,
    Path(id): Path<i64>,
    Posted(form): Posted<SubscriberAction>,
) -> Response {
    let done = ctx
        .run(move |ops| {
            let list = ops.newsletter_list(id)?;
            match form.action.as_str() {
                "unsubscribe" => ops.subscriber_unsubscribe(&list.name, &form.email),
                "remove" => ops.subscriber_remove(&list.name, &form.email),
                other => Err(ops::Error::invalid(format!(
                    "{other:?} is not an action on a subscriber (unsubscribe, remove)"
                ))),
            }
        })
        .await;
    match done {
        Ok(_) => Redirect::to(&url(&format!("/lists/{id}"))).into_response(),
        Err(e) => ctx.error(&e),
    }
}

async fn delete_list(Admin(ctx): Admin, Path(id): Path<i64>, Posted(_): Posted<Empty>) -> Response {
    let done = ctx
        .run(move |ops| {
            let list = ops.newsletter_list(id)?;
            ops.list_remove(&list.name)
        })
        .await;
    match done {
        Ok(()) => Redirect::to(&url("")).into_response(),
        Err(e) => ctx.error(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_download_is_named_safely_after_its_list() {
        assert_eq!(file_name("news-2026_jp"), "news-2026_jp");
        assert_eq!(file_name("a\"b/../c"), "a_b_.._c");
        assert_eq!(file_name("お知らせ"), "____");
        assert_eq!(file_name("..."), "list");
        assert_eq!(file_name(&"x".repeat(100)).len(), 64);
    }
}
