//! A user's mail: their mailboxes (the archives' read-only ones too), a mailbox's messages
//! page by page with a search by header fields, words and dates, one message (headers, text,
//! HTML, attachments), and an attachment's download.
//!
//! A message's HTML is never part of a console page: it is its own document, served under a
//! Content-Security-Policy that sandboxes it (no script, no plugin, an opaque origin that
//! reaches no cookie) and lets it load nothing but inline styles and `data:` images, and the
//! page shows it in an `<iframe sandbox>` as a second wall. Attachments are served as
//! `application/octet-stream` with `Content-Disposition: attachment`, so no browser renders
//! one as a page of ours.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::{Markup, html};
use ops::mail_view::{At, Filter, Listing, MessageView, Next};
use serde::Deserialize;
use store::{AccountId, MailboxId};

use crate::page::encode;
use crate::session::User;
use crate::svg::human_bytes;
use crate::{BASE, Console, Ctx};

/// The policy of a message's HTML document: sandboxed (scripts, forms, plugins, popups and
/// the origin all taken away), nothing loaded but inline style and `data:` images, framed
/// only by the console's own pages.
pub const HTML_CSP: &str = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
     frame-ancestors 'self'; base-uri 'none'; form-action 'none'";

/// The policy of a download: should a browser ever show one, it is as inert as the HTML.
const DOWNLOAD_CSP: &str = "sandbox; default-src 'none'";

pub fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route(&format!("{BASE}/mail"), get(mailboxes))
        .route(&format!("{BASE}/mail/{{mailbox}}"), get(list))
        .route(&format!("{BASE}/mail/{{mailbox}}/export.csv"), get(export))
        .route(&format!("{BASE}/mail/{{mailbox}}/{{uid}}"), get(message))
        .route(
            &format!("{BASE}/mail/{{mailbox}}/{{uid}}/html"),
            get(message_html),
        )
        .route(
            &format!("{BASE}/mail/{{mailbox}}/{{uid}}/attachment/{{index}}"),
            get(attachment),
        )
}

/// The signed-in account and its address ([`User`] makes sure there is a session).
pub(crate) fn who(ctx: &Ctx) -> (AccountId, String) {
    ctx.session
        .as_ref()
        .map_or((AccountId(0), String::new()), |s| {
            (s.account, s.address.clone())
        })
}

async fn mailboxes(User(ctx): User) -> Response {
    let (account, address) = who(&ctx);
    let result = ctx
        .run(move |ops| Ok((ops.mail_mailboxes(account)?, ops.mail_archives(&address)?)))
        .await;
    let (boxes, archives) = match result {
        Ok(found) => found,
        Err(e) => return ctx.error(&e),
    };
    let body = html! {
        @if !archives.is_empty() {
            p { a #archive-viewer href={(BASE) "/archive"} { (ctx.t("mail.archive_viewer")) } }
        }
        @if boxes.is_empty() {
            p { (ctx.t("mail.no_mailboxes")) }
        } @else {
            table #mailboxes {
                thead { tr {
                    th { (ctx.t("mail.mailbox")) }
                    th.num { (ctx.t("mail.messages")) }
                    th.num { (ctx.t("mail.unseen")) }
                    th { (ctx.t("mail.kind")) }
                } }
                tbody {
                    @for b in &boxes {
                        tr data-mailbox=(b.name) {
                            td { a href={(BASE) "/mail/" (b.id.0)} { (b.name) } }
                            td.num { (b.messages) }
                            td.num { (b.unseen) }
                            td { @if b.archive { (ctx.t("mail.archived")) } @else { (ctx.t("mail.live")) } }
                        }
                    }
                }
            }
        }
    };
    ctx.page(ctx.t("mail.mailboxes"), body)
}

/// The search form's fields and the place in the list.
#[derive(Deserialize, Default, Clone)]
pub(crate) struct SearchQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub page: Option<usize>,
    pub before: Option<u32>,
    /// The archive viewer's archive.
    pub id: Option<u32>,
}

impl SearchQuery {
    pub fn filter(&self) -> ops::Result<Filter> {
        Filter::new(
            self.from.clone(),
            self.to.clone(),
            self.subject.clone(),
            self.text.clone(),
            self.since.clone(),
            self.until.clone(),
        )
    }

    /// The filter as a query string (no page), for the pager's links and the CSV link.
    pub fn filter_query(&self) -> String {
        [
            ("from", &self.from),
            ("to", &self.to),
            ("subject", &self.subject),
            ("text", &self.text),
            ("since", &self.since),
            ("until", &self.until),
        ]
        .iter()
        .filter_map(|(k, v)| {
            v.as_deref()
                .filter(|v| !v.trim().is_empty())
                .map(|v| format!("{k}={}", encode(v)))
        })
        .collect::<Vec<_>>()
        .join("&")
    }

    /// The search form (GET, so a result is a link), `action` its own page.
    pub fn form(&self, ctx: &Ctx, action: &str, extra: Markup, always_open: bool) -> Markup {
        let value = |v: &Option<String>| v.clone().unwrap_or_default();
        // Folded away until a search is on, so the messages come first on the page.
        let searching = always_open || !self.filter_query().is_empty();
        html! {
            details.search open[searching] {
            summary { (ctx.t("common.search")) }
            form #search method="get" action=(action) {
                (extra)
                label { (ctx.t("mail.from")) input type="text" name="from" value=(value(&self.from)) maxlength="512"; }
                label { (ctx.t("mail.to")) input type="text" name="to" value=(value(&self.to)) maxlength="512"; }
                label { (ctx.t("mail.subject")) input type="text" name="subject" value=(value(&self.subject)) maxlength="512"; }
                label { (ctx.t("mail.words")) input type="text" name="text" value=(value(&self.text)) maxlength="512"; }
                label { (ctx.t("mail.since")) input type="date" name="since" value=(value(&self.since)); }
                label { (ctx.t("mail.until")) input type="date" name="until" value=(value(&self.until)); }
                button type="submit" { (ctx.t("common.search")) }
                " "
                a.clear href=(action) { (ctx.t("mail.clear")) }
            }
            }
        }
    }
}

async fn list(User(ctx): User, Path(mailbox): Path<i64>, Query(q): Query<SearchQuery>) -> Response {
    let (account, address) = who(&ctx);
    let filter = match q.filter() {
        Ok(f) => f,
        Err(e) => return ctx.error(&e),
    };
    let at = At {
        page: q.page.unwrap_or(1),
        before: q.before,
    };
    let searching = !filter.is_empty();
    let listing = match ctx
        .run(move |ops| ops.mail_list(account, &address, MailboxId(mailbox), &filter, at))
        .await
    {
        Ok(l) => l,
        Err(e) => return ctx.error(&e),
    };
    let here = format!("{BASE}/mail/{mailbox}");
    let body = html! {
        p { a href={(BASE) "/mail"} { (ctx.t("mail.back_to_mailboxes")) } }
        (q.form(&ctx, &here, html! {}, false))
        @if searching {
            p { a #export href={(here) "/export.csv?" (q.filter_query())} { (ctx.t("mail.export_csv")) } }
        }
        (listing_table(&ctx, &listing, searching))
        (pager(&ctx, &listing, &here, &q.filter_query()))
    };
    ctx.page(&listing.mailbox.name, body)
}

/// A search's hits in the mailbox as CSV, in the columns of `tegami archive export --csv`.
async fn export(
    User(ctx): User,
    Path(mailbox): Path<i64>,
    Query(q): Query<SearchQuery>,
) -> Response {
    let (account, address) = who(&ctx);
    let filter = match q.filter() {
        Ok(f) => f,
        Err(e) => return ctx.error(&e),
    };
    match ctx
        .run(move |ops| ops.mail_csv(account, &address, MailboxId(mailbox), &filter))
        .await
    {
        // A bounded export is still the file asked for; its limits are in the README.
        Ok((csv, _stopped)) => download(
            &format!("mailbox-{mailbox}.csv"),
            "text/csv; charset=utf-8",
            csv,
        ),
        Err(e) => ctx.error(&e),
    }
}

fn listing_table(ctx: &Ctx, listing: &Listing, searching: bool) -> Markup {
    let mailbox = listing.mailbox.id.0;
    html! {
        @if let Some(total) = listing.total {
            p.count { (ctx.tf("mail.count", &[("count", &total)])) }
        } @else {
            p.count { (ctx.tf("mail.found_on_page", &[("count", &listing.rows.len())])) }
        }
        @if let Some(read) = listing.scanned {
            p.notice { (ctx.tf("mail.scanned", &[("count", &read)])) }
        }
        @if listing.rows.is_empty() {
            p.empty { (if searching { ctx.t("mail.nothing_found") } else { ctx.t("mail.empty_mailbox") }) }
        } @else {
            table #messages {
                thead { tr {
                    th { (ctx.t("mail.received")) }
                    th { (ctx.t("mail.from")) }
                    th { (ctx.t("mail.subject")) }
                    th.num { (ctx.t("mail.size")) }
                } }
                tbody {
                    @for r in &listing.rows {
                        tr data-uid=(r.uid) class=(if r.seen { "seen" } else { "unseen" }) {
                            td { (ctx.time(r.date)) }
                            td.from { (r.from) }
                            td.subject {
                                a href={(BASE) "/mail/" (mailbox) "/" (r.uid)} {
                                    @if r.subject.trim().is_empty() { (ctx.t("mail.no_subject")) } @else { (r.subject) }
                                }
                                @if !r.seen { " " span.warn { (ctx.t("mail.unread_mark")) } }
                            }
                            td.num { (human_bytes(r.size)) }
                        }
                    }
                }
            }
        }
    }
}

/// Previous and next links that keep the search.
fn pager(ctx: &Ctx, listing: &Listing, here: &str, filter: &str) -> Markup {
    let link = |rest: String| {
        let mut query = filter.to_string();
        if !rest.is_empty() {
            if !query.is_empty() {
                query.push('&');
            }
            query.push_str(&rest);
        }
        if query.is_empty() {
            here.to_string()
        } else {
            format!("{here}?{query}")
        }
    };
    let pages = listing
        .total
        .map(|t| t.div_ceil(ops::mail_view::PAGE).max(1));
    html! {
        nav.pager {
            @if listing.page > 1 {
                a.previous href=(link(format!("page={}", listing.page - 1))) { (ctx.t("common.previous")) }
            }
            @if let Some(pages) = pages {
                span { (ctx.tf("mail.page_of", &[("page", &listing.page), ("pages", &pages)])) }
            }
            @match listing.next {
                Next::Page(n) => { a.next href=(link(format!("page={n}"))) { (ctx.t("common.next")) } }
                Next::Before(uid) => {
                    a.next href=(link(format!("page={}&before={uid}", listing.page + 1))) { (ctx.t("mail.search_older")) }
                }
                Next::End => {}
            }
        }
    }
}

async fn message(User(ctx): User, Path((mailbox, uid)): Path<(i64, u32)>) -> Response {
    let (account, _) = who(&ctx);
    let view = match ctx
        .run(move |ops| ops.mail_message(account, MailboxId(mailbox), uid))
        .await
    {
        Ok(v) => v,
        Err(e) => return ctx.error(&e),
    };
    let title = if view.subject.trim().is_empty() {
        ctx.t("mail.no_subject").to_string()
    } else {
        view.subject.clone()
    };
    ctx.page(&title, message_body(&ctx, &view))
}

fn message_body(ctx: &Ctx, view: &MessageView) -> Markup {
    let base = format!("{BASE}/mail/{}/{}", view.mailbox.id.0, view.uid);
    let header = |key: &'static str, value: &str| {
        html! {
            @if !value.is_empty() { tr { th { (ctx.t(key)) } td { (value) } } }
        }
    };
    html! {
        p { a href={(BASE) "/mail/" (view.mailbox.id.0)} { (ctx.tf("mail.back_to_mailbox", &[("mailbox", &view.mailbox.name)])) } }
        table #headers {
            (header("mail.from", &view.from))
            (header("mail.to", &view.to))
            (header("mail.cc", &view.cc))
            (header("mail.subject", &view.subject))
            (header("mail.sent_date", &view.date))
            tr { th { (ctx.t("mail.received")) } td { (ctx.time(view.internal_date)) } }
            tr { th { (ctx.t("mail.size")) } td { (human_bytes(view.size)) } }
            (header("mail.message_id", &view.message_id))
        }
        @if !view.attachments.is_empty() {
            h2 { (ctx.t("mail.attachments")) }
            ul #attachments {
                @for a in &view.attachments {
                    li {
                        a.attachment href={(base) "/attachment/" (a.index)} download=(a.name) { (a.name) }
                        " (" (a.content_type) ", " (human_bytes(a.size)) ")"
                    }
                }
            }
        }
        @if view.has_html {
            h2 { (ctx.t("mail.html_part")) }
            // Empty `sandbox`: no scripts, no forms, no popups, an opaque origin.
            iframe #html .message-html sandbox="" referrerpolicy="no-referrer" src={(base) "/html"} title=(ctx.t("mail.html_title")) {}
            @if let Some(text) = &view.text {
                details { summary { (ctx.t("mail.text_part")) } pre #text { (text) } }
            }
        } @else if let Some(text) = &view.text {
            h2 { (ctx.t("mail.text_part")) }
            pre #text { (text) }
        } @else {
            p { (ctx.t("mail.no_text")) }
        }
    }
}

async fn message_html(User(ctx): User, Path((mailbox, uid)): Path<(i64, u32)>) -> Response {
    let (account, _) = who(&ctx);
    match ctx
        .run(move |ops| ops.mail_html(account, MailboxId(mailbox), uid))
        .await
    {
        Ok(html) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CONTENT_SECURITY_POLICY, HTML_CSP),
            ],
            html,
        )
            .into_response(),
        Err(e) => sandboxed(ctx.error(&e)),
    }
}

async fn attachment(
    User(ctx): User,
    Path((mailbox, uid, index)): Path<(i64, u32, usize)>,
) -> Response {
    let (account, _) = who(&ctx);
    match ctx
        .run(move |ops| ops.mail_attachment(account, MailboxId(mailbox), uid, index))
        .await
    {
        Ok(file) => download(&file.name, "application/octet-stream", file.bytes),
        Err(e) => ctx.error(&e),
    }
}

/// A file to save, never to show: `attachment` with the name twice (RFC 6266: an ASCII
/// fallback and the UTF-8 name), no sniffing (the frame adds `nosniff`), and a sandbox.
pub(crate) fn download(name: &str, content_type: &'static str, bytes: Vec<u8>) -> Response {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let disposition = format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{}",
        encode(name)
    );
    let mut response = ([(header::CONTENT_TYPE, content_type)], bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition)
            .unwrap_or_else(|_| HeaderValue::from_static("attachment")),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(DOWNLOAD_CSP),
    );
    response
}

/// An error page shown inside the message's frame gets the frame's policy too.
fn sandboxed(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(HTML_CSP),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_download_is_an_attachment_with_both_names() {
        let r = download("受領書 \"x\".pdf", "application/octet-stream", vec![1, 2]);
        let d = r.headers()[header::CONTENT_DISPOSITION].to_str().unwrap();
        assert_eq!(
            d,
            "attachment; filename=\"___ _x_.pdf\"; filename*=UTF-8''%E5%8F%97%E9%A0%98%E6%9B%B8%20%22x%22%2Epdf"
        );
        assert!(
            r.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .starts_with("sandbox")
        );
    }

    #[test]
    fn the_filter_query_keeps_only_given_fields_encoded() {
        let q = SearchQuery {
            from: Some("a&b".into()),
            subject: Some(" ".into()),
            since: Some("2020-01-01".into()),
            ..SearchQuery::default()
        };
        assert_eq!(q.filter_query(), "from=a%26b&since=2020%2D01%2D01");
    }

    #[test]
    fn the_html_policy_sandboxes_and_loads_nothing_remote() {
        assert!(HTML_CSP.starts_with("sandbox;"));
        assert!(HTML_CSP.contains("default-src 'none'"));
        assert!(HTML_CSP.contains("img-src data:;"));
        assert!(!HTML_CSP.contains("script-src"));
    }
}
