//! Domains, accounts and aliases (`ops::directory`, the same calls as `tegami domain`,
//! `account` and `alias`), and each domain's DKIM key and the DNS records to publish.
//!
//! Lists are paged ([`PAGE_ROWS`] rows); after a change the list shows what was done (a
//! `done` word in the query names a catalogue text, the address shown beside it is only
//! ever escaped text).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use serde::Deserialize;

use crate::page::encode;
use crate::session::{Admin, Posted};
use crate::{BASE, Console, Ctx, svg};

/// A domain name as one segment of a link's path: dots and hyphens stay readable, anything
/// else a name should not hold is escaped.
fn segment(name: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'.')
        .remove(b'-')
        .remove(b'_');
    percent_encoding::utf8_percent_encode(name, KEEP).to_string()
}

/// Rows on one page of a list.
pub(super) const PAGE_ROWS: usize = 100;

pub fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route(&format!("{BASE}/admin/domains"), get(domains))
        .route(&format!("{BASE}/admin/domains/add"), post(domain_add))
        .route(&format!("{BASE}/admin/domains/remove"), post(domain_remove))
        .route(&format!("{BASE}/admin/domains/{{name}}"), get(records))
        .route(&format!("{BASE}/admin/domains/{{name}}/dkim"), post(dkim))
        .route(&format!("{BASE}/admin/accounts"), get(accounts))
        .route(&format!("{BASE}/admin/accounts/add"), post(account_add))
        .route(
            &format!("{BASE}/admin/accounts/remove"),
            post(account_remove),
        )
        .route(
            &format!("{BASE}/admin/accounts/password"),
            post(account_password),
        )
        .route(&format!("{BASE}/admin/accounts/admin"), post(account_admin))
        .route(&format!("{BASE}/admin/aliases"), get(aliases))
        .route(&format!("{BASE}/admin/aliases/add"), post(alias_add))
        .route(&format!("{BASE}/admin/aliases/remove"), post(alias_remove))
}

/// `?page=N` (from 1) and what the last change did.
#[derive(Deserialize, Default)]
pub(super) struct ListQuery {
    page: Option<usize>,
    done: Option<String>,
    what: Option<String>,
}

impl ListQuery {
    pub(super) fn page(&self) -> usize {
        self.page.unwrap_or(1).max(1)
    }
}

/// The rows of page `page` (from 1) and the number of pages.
pub(super) fn page_of<T>(rows: &[T], page: usize) -> (&[T], usize) {
    let pages = rows.len().div_ceil(PAGE_ROWS).max(1);
    let start = (page.min(pages) - 1) * PAGE_ROWS;
    (&rows[start..rows.len().min(start + PAGE_ROWS)], pages)
}

/// Previous and next links under a list of several pages.
pub(super) fn pager(ctx: &Ctx, path: &str, page: usize, pages: usize) -> Markup {
    let page = page.min(pages);
    html! {
        @if pages > 1 {
            nav.pager {
                @if page > 1 {
                    a rel="prev" href={(BASE) (path) "?page=" (page - 1)} { (ctx.t("common.previous")) }
                }
                span { (page) " / " (pages) }
                @if page < pages {
                    a rel="next" href={(BASE) (path) "?page=" (page + 1)} { (ctx.t("common.next")) }
                }
            }
        }
    }
}

/// Back to a list, saying what was done to whom.
pub(super) fn done(path: &str, what: &str, whom: &str) -> Response {
    Redirect::to(&format!("{BASE}{path}?done={what}&what={}", encode(whom))).into_response()
}

/// The notice of the last change, from the catalogue (unknown words show nothing).
fn notice(ctx: &Ctx, q: &ListQuery) -> Markup {
    let key = match q.done.as_deref() {
        Some("domain_added") => "directory.done_domain_added",
        Some("domain_removed") => "directory.done_domain_removed",
        Some("account_added") => "directory.done_account_added",
        Some("account_removed") => "directory.done_account_removed",
        Some("password") => "directory.done_password",
        Some("admin_on") => "directory.done_admin_on",
        Some("admin_off") => "directory.done_admin_off",
        Some("alias_added") => "directory.done_alias_added",
        Some("alias_removed") => "directory.done_alias_removed",
        _ => return html! {},
    };
    let what = q.what.as_deref().unwrap_or("");
    html! { p.notice.ok { (ctx.tf(key, &[("what", &what)])) } }
}

/// The links between the three lists.
fn tabs(ctx: &Ctx) -> Markup {
    html! {
        p.tabs {
            a href={(BASE) "/admin/domains"} { (ctx.t("directory.domains")) } " · "
            a href={(BASE) "/admin/accounts"} { (ctx.t("directory.accounts")) } " · "
            a href={(BASE) "/admin/aliases"} { (ctx.t("directory.aliases")) }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Domains.

async fn domains(Admin(ctx): Admin, Query(q): Query<ListQuery>) -> Response {
    let list = match ctx.run(|ops| ops.domains()).await {
        Ok(list) => list,
        Err(e) => return ctx.error(&e),
    };
    let (rows, pages) = page_of(&list, q.page());
    let body = html! {
        (tabs(&ctx))
        (notice(&ctx, &q))
        form #domain-add method="post" action={(BASE) "/admin/domains/add"} {
            (ctx.csrf_field())
            label { (ctx.t("directory.domain_name")) input type="text" name="name" required maxlength="253" placeholder="example.com"; }
            button type="submit" { (ctx.t("directory.domain_add")) }
        }
        @if list.is_empty() {
            p { (ctx.t("common.none")) }
        } @else {
            table #domains {
                thead { tr { th { (ctx.t("directory.domain_name")) } th { (ctx.t("directory.dns")) } th {} } }
                tbody {
                    @for name in rows {
                        tr {
                            td.name { (name) }
                            td { a href={(BASE) "/admin/domains/" (segment(name))} { (ctx.t("directory.dkim_and_records")) } }
                            td {
                                form.inline method="post" action={(BASE) "/admin/domains/remove"} data-confirm=(ctx.tf("directory.confirm_remove_domain", &[("what", name)])) {
                                    (ctx.csrf_field())
                                    input type="hidden" name="name" value=(name);
                                    button.danger type="submit" { (ctx.t("common.delete")) }
                                }
                            }
                        }
                    }
                }
            }
            (pager(&ctx, "/admin/domains", q.page(), pages))
        }
    };
    ctx.page(ctx.t("admin.menu_directory"), body)
}

#[derive(Deserialize)]
struct DomainForm {
    name: String,
}

async fn domain_add(Admin(ctx): Admin, Posted(form): Posted<DomainForm>) -> Response {
    let name = form.name.trim().to_string();
    match ctx.run(move |ops| ops.domain_add(&name)).await {
        Ok(name) => done("/admin/domains", "domain_added", &name),
        Err(e) => ctx.error(&e),
    }
}

async fn domain_remove(Admin(ctx): Admin, Posted(form): Posted<DomainForm>) -> Response {
    let name = form.name;
    let shown = name.clone();
    match ctx.run(move |ops| ops.domain_remove(&name)).await {
        Ok(()) => done("/admin/domains", "domain_removed", &shown),
        Err(e) => ctx.error(&e),
    }
}

/// A domain's DKIM key and every record it needs, as a table and as a zone fragment.
#[derive(Deserialize)]
struct RecordsQuery {
    made: Option<String>,
}

async fn records(
    Admin(ctx): Admin,
    Path(name): Path<String>,
    Query(q): Query<RecordsQuery>,
) -> Response {
    let made = q.made.is_some();
    let domain = name.clone();
    let needed = match ctx.run(move |ops| ops.domain_records(&domain)).await {
        Ok(needed) => needed,
        Err(e) => return ctx.error(&e),
    };
    let action = format!(
        "{BASE}/admin/domains/{}/dkim",
        segment(&needed.setup.domain)
    );
    let body = html! {
        (tabs(&ctx))
        h2 { (ctx.t("directory.dkim")) }
        @if made {
            p.notice.ok { (ctx.t("directory.dkim_made")) }
        }
        @match needed.dkim_record() {
            Some(record) => {
                p { (ctx.t("directory.dkim_publish")) }
                pre #dkim { (record.zone_line()) }
                form #dkim-rotate method="post" action=(action) data-confirm=(ctx.t("directory.confirm_rotate")) {
                    (ctx.csrf_field())
                    input type="hidden" name="new" value="on";
                    label { (ctx.t("directory.dkim_selector")) input type="text" name="selector" maxlength="63"; }
                    button.secondary type="submit" { (ctx.t("directory.dkim_rotate")) }
                }
            }
            None => {
                p.warn { (ctx.t("directory.dkim_none")) }
                form #dkim-make method="post" action=(action) {
                    (ctx.csrf_field())
                    label { (ctx.t("directory.dkim_selector")) input type="text" name="selector" maxlength="63"; }
                    button type="submit" { (ctx.t("directory.dkim_make")) }
                }
            }
        }
        h2 { (ctx.t("directory.records")) }
        p { (ctx.tf("directory.records_intro", &[("host", &needed.setup.mx_host)])) }
        table #records {
            thead { tr {
                th { (ctx.t("directory.record_type")) }
                th { (ctx.t("directory.record_name")) }
                th { (ctx.t("directory.record_value")) }
                th { (ctx.t("directory.record_why")) }
            } }
            tbody {
                @for r in &needed.records {
                    tr class={ "rtype-" (r.rtype.as_str().to_ascii_lowercase()) } {
                        td { (r.rtype.as_str()) }
                        td { code { (r.name) } }
                        td {
                            @match &r.expected {
                                // A pre, which the stylesheet wraps anywhere: a DKIM key is one long word.
                                Some(v) => pre.value { (v.zone_data()) },
                                None => span.warn { (r.hint.as_deref().unwrap_or("?")) },
                            }
                        }
                        td { (r.why) @if r.optional { " " em { (ctx.t("directory.optional")) } } }
                    }
                }
            }
        }
        h2 { (ctx.t("directory.zone")) }
        pre #zone { (needed.zone()) }
    };
    let title = ctx.tf(
        "directory.records_title",
        &[("domain", &needed.setup.domain)],
    );
    ctx.page(&title, body)
}

#[derive(Deserialize)]
struct DkimForm {
    #[serde(default)]
    selector: String,
    new: Option<String>,
}

async fn dkim(
    Admin(ctx): Admin,
    Path(name): Path<String>,
    Posted(form): Posted<DkimForm>,
) -> Response {
    let selector = form.selector.trim();
    let request = ops::directory::DkimRequest {
        domain: name,
        selector: (!selector.is_empty()).then(|| selector.to_string()),
        new: form.new.is_some(),
    };
    match ctx.run(move |ops| ops.domain_dkim(&request)).await {
        Ok(key) => Redirect::to(&format!(
            "{BASE}/admin/domains/{}{}",
            segment(&key.domain),
            if key.made.is_some() { "?made=1" } else { "" }
        ))
        .into_response(),
        Err(e) => ctx.error(&e),
    }
}

// ---------------------------------------------------------------------------------------
// Accounts.

async fn accounts(Admin(ctx): Admin, Query(q): Query<ListQuery>) -> Response {
    let list = match ctx.run(|ops| ops.accounts()).await {
        Ok(list) => list,
        Err(e) => return ctx.error(&e),
    };
    let (rows, pages) = page_of(&list, q.page());
    let body = html! {
        (tabs(&ctx))
        (notice(&ctx, &q))
        form #account-add method="post" action={(BASE) "/admin/accounts/add"} {
            (ctx.csrf_field())
            label { (ctx.t("common.address")) input type="email" name="address" required maxlength="320" autocomplete="off"; }
            label { (ctx.t("common.password")) input type="password" name="password" required autocomplete="new-password"; }
            // The label is a grid (console.css): one span keeps the box beside its text.
            label.check { span { input type="checkbox" name="admin" value="on"; " " (ctx.t("directory.administrator")) } }
            button type="submit" { (ctx.t("directory.account_add")) }
        }
        @if list.is_empty() {
            p { (ctx.t("common.none")) }
        } @else {
            table #accounts {
                thead { tr {
                    th { (ctx.t("common.address")) }
                    th.num { (ctx.t("directory.messages")) }
                    th.num { (ctx.t("directory.size")) }
                    th.num { (ctx.t("directory.quota")) }
                    th { (ctx.t("directory.administrator")) }
                    th {}
                } }
                tbody {
                    @for a in rows {
                        tr data-address=(a.address) {
                            td.address { (a.address) }
                            td.num { (a.messages) }
                            td.num { (svg::human_bytes(a.bytes)) }
                            td.num.quota {
                                @match a.quota {
                                    Some(limit) => {
                                        (svg::human_bytes(limit))
                                        " (" (store::Quota { used: a.bytes, limit: Some(limit) }.percent().unwrap_or(0)) " %)"
                                    }
                                    None => { "—" }
                                }
                            }
                            td.admin {
                                form.inline method="post" action={(BASE) "/admin/accounts/admin"} {
                                    (ctx.csrf_field())
                                    input type="hidden" name="address" value=(a.address);
                                    @if a.admin {
                                        strong { (ctx.t("directory.admin_yes")) } " "
                                        input type="hidden" name="state" value="off";
                                        button.secondary type="submit" { (ctx.t("directory.admin_turn_off")) }
                                    } @else {
                                        input type="hidden" name="state" value="on";
                                        button.secondary type="submit" { (ctx.t("directory.admin_turn_on")) }
                                    }
                                }
                            }
                            td {
                                form.inline method="post" action={(BASE) "/admin/accounts/remove"} data-confirm=(ctx.tf("directory.confirm_remove_account", &[("what", &a.address)])) {
                                    (ctx.csrf_field())
                                    input type="hidden" name="address" value=(a.address);
                                    button.danger type="submit" { (ctx.t("common.delete")) }
                                }
                            }
                        }
                    }
                }
            }
            (pager(&ctx, "/admin/accounts", q.page(), pages))
        }
        h2 { (ctx.t("directory.password_title")) }
        form #account-password method="post" action={(BASE) "/admin/accounts/password"} {
            (ctx.csrf_field())
            label { (ctx.t("common.address")) input type="email" name="address" required maxlength="320" autocomplete="off"; }
            label { (ctx.t("directory.new_password")) input type="password" name="password" required autocomplete="new-password"; }
            button type="submit" { (ctx.t("common.save")) }
        }
    };
    ctx.page(ctx.t("directory.accounts"), body)
}

#[derive(Deserialize)]
struct AccountForm {
    address: String,
    password: String,
    admin: Option<String>,
}

async fn account_add(Admin(ctx): Admin, Posted(form): Posted<AccountForm>) -> Response {
    let admin = form.admin.is_some();
    let address = form.address.trim().to_string();
    let password = form.password;
    match ctx
        .run(move |ops| ops.account_add(&address, &password, admin))
        .await
    {
        Ok(address) => done("/admin/accounts", "account_added", &address),
        Err(e) => ctx.error(&e),
    }
}

#[derive(Deserialize)]
struct AddressForm {
    address: String,
}

async fn account_remove(Admin(ctx): Admin, Posted(form): Posted<AddressForm>) -> Response {
    let address = form.address;
    let shown = address.clone();
    match ctx.run(move |ops| ops.account_remove(&address)).await {
        Ok(()) => done("/admin/accounts", "account_removed", &shown),
        Err(e) => ctx.error(&e),
    }
}

#[derive(Deserialize)]
struct PasswordForm {
    address: String,
    password: String,
}

async fn account_password(Admin(ctx): Admin, Posted(form): Posted<PasswordForm>) -> Response {
    let address = form.address.trim().to_string();
    let shown = address.clone();
    let password = form.password;
    match ctx
        .run(move |ops| ops.account_password(&address, &password))
        .await
    {
        Ok(()) => done("/admin/accounts", "password", &shown),
        Err(e) => ctx.error(&e),
    }
}

#[derive(Deserialize)]
struct AdminForm {
    address: String,
    state: String,
}

async fn account_admin(Admin(ctx): Admin, Posted(form): Posted<AdminForm>) -> Response {
    let admin = match form.state.as_str() {
        "on" => true,
        "off" => false,
        _ => {
            return ctx.error(&ops::Error::invalid(
                "the administrator state is \"on\" or \"off\"",
            ));
        }
    };
    let address = form.address;
    let shown = address.clone();
    match ctx.run(move |ops| ops.account_admin(&address, admin)).await {
        Ok(()) => done(
            "/admin/accounts",
            if admin { "admin_on" } else { "admin_off" },
            &shown,
        ),
        Err(e) => ctx.error(&e),
    }
}

// ---------------------------------------------------------------------------------------
// Aliases.

async fn aliases(Admin(ctx): Admin, Query(q): Query<ListQuery>) -> Response {
    let list = match ctx.run(|ops| ops.aliases()).await {
        Ok(list) => list,
        Err(e) => return ctx.error(&e),
    };
    let (rows, pages) = page_of(&list, q.page());
    let body = html! {
        (tabs(&ctx))
        (notice(&ctx, &q))
        form #alias-add method="post" action={(BASE) "/admin/aliases/add"} {
            (ctx.csrf_field())
            label { (ctx.t("common.address")) input type="email" name="address" required maxlength="320" autocomplete="off"; }
            label { (ctx.t("directory.targets")) input type="text" name="targets" required maxlength="16384" placeholder="ann@example.com, ben@example.com"; }
            button type="submit" { (ctx.t("directory.alias_add")) }
        }
        @if list.is_empty() {
            p { (ctx.t("common.none")) }
        } @else {
            table #aliases {
                thead { tr { th { (ctx.t("common.address")) } th { (ctx.t("directory.targets")) } th {} } }
                tbody {
                    @for a in rows {
                        tr data-address=(a.address) {
                            td.address { (a.address) }
                            td.targets { (a.targets.join(", ")) }
                            td {
                                form.inline method="post" action={(BASE) "/admin/aliases/remove"} data-confirm=(ctx.tf("directory.confirm_remove_alias", &[("what", &a.address)])) {
                                    (ctx.csrf_field())
                                    input type="hidden" name="address" value=(a.address);
                                    button.danger type="submit" { (ctx.t("common.delete")) }
                                }
                            }
                        }
                    }
                }
            }
            (pager(&ctx, "/admin/aliases", q.page(), pages))
        }
    };
    ctx.page(ctx.t("directory.aliases"), body)
}

#[derive(Deserialize)]
struct AliasForm {
    address: String,
    targets: String,
}

/// The targets as typed: separated by commas, spaces or new lines (as the command line
/// takes them one per argument).
fn split_targets(text: &str) -> Vec<String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

async fn alias_add(Admin(ctx): Admin, Posted(form): Posted<AliasForm>) -> Response {
    let address = form.address.trim().to_string();
    let targets = split_targets(&form.targets);
    match ctx.run(move |ops| ops.alias_add(&address, &targets)).await {
        Ok(address) => done("/admin/aliases", "alias_added", &address),
        Err(e) => ctx.error(&e),
    }
}

async fn alias_remove(Admin(ctx): Admin, Posted(form): Posted<AddressForm>) -> Response {
    let address = form.address;
    let shown = address.clone();
    match ctx.run(move |ops| ops.alias_remove(&address)).await {
        Ok(()) => done("/admin/aliases", "alias_removed", &shown),
        Err(e) => ctx.error(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_links_keep_dots_and_escape_the_rest() {
        assert_eq!(segment("shop.example"), "shop.example");
        assert_eq!(segment("a/b?c"), "a%2Fb%3Fc");
    }

    #[test]
    fn targets_split_on_commas_spaces_and_lines() {
        assert_eq!(
            split_targets(" a@x.org, b@x.org\nc@y.org,,d@z.org "),
            ["a@x.org", "b@x.org", "c@y.org", "d@z.org"]
        );
        assert!(split_targets(" , \n").is_empty());
    }

    #[test]
    fn pages_hold_at_most_page_rows_and_a_page_past_the_end_is_the_last() {
        let rows: Vec<usize> = (0..250).collect();
        let (first, pages) = page_of(&rows, 1);
        assert_eq!((first.len(), first[0], pages), (PAGE_ROWS, 0, 3));
        let (last, _) = page_of(&rows, 3);
        assert_eq!((last.len(), last[0]), (50, 200));
        assert_eq!(page_of(&rows, 99).0, last);
        let empty: Vec<usize> = Vec::new();
        assert_eq!(page_of(&empty, 1), (&empty[..], 1));
    }
}
