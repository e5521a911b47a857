//! Campaigns: every campaign with its state and what it sent, the compose form (list,
//! subject, text and HTML templates, start time, rates), and one campaign's page with its
//! totals, the delivery graph over time, pause, resume and cancel where its state allows
//! them, the clicks per link and the per-recipient report as a CSV download, a preview with
//! a chosen subscriber's data, a test mail to the signed-in administrator, the edit form
//! while it has not started, and a copy of any campaign.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use ops::newsletter_views::{CampaignCompose, CampaignRevision, CampaignView, Delivery};
use serde::Deserialize;

use super::{Empty, HOME, csv_download, number, tabs, url};
use crate::session::{Admin, Posted};
use crate::svg::{self, Series};
use crate::{BASE, Console, Ctx};

pub fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route(
            &format!("{BASE}{HOME}/campaigns"),
            get(show_campaigns).post(compose),
        )
        .route(
            &format!("{BASE}{HOME}/campaigns/{{id}}"),
            get(show_campaign),
        )
        .route(
            &format!("{BASE}{HOME}/campaigns/{{id}}/preview"),
            get(preview),
        )
        .route(
            &format!("{BASE}{HOME}/campaigns/{{id}}/report.csv"),
            get(report_csv),
        )
        .route(
            &format!("{BASE}{HOME}/campaigns/{{id}}/test"),
            post(send_test),
        )
        .route(&format!("{BASE}{HOME}/campaigns/{{id}}/edit"), post(edit))
        .route(&format!("{BASE}{HOME}/campaigns/{{id}}/copy"), post(copy))
        .route(
            &format!("{BASE}{HOME}/campaigns/{{id}}/{{action}}"),
            post(act),
        )
}

/// A campaign state in the page's language.
fn state_label(ctx: &Ctx, state: &str) -> String {
    match state {
        "draft" => ctx.t("newsletters.state_draft").into(),
        "scheduled" => ctx.t("newsletters.state_scheduled").into(),
        "sending" => ctx.t("newsletters.state_sending").into(),
        "paused" => ctx.t("newsletters.state_paused").into(),
        "cancelled" => ctx.t("newsletters.state_cancelled").into(),
        "done" => ctx.t("newsletters.state_done").into(),
        other => other.into(),
    }
}

/// An outcome of the campaign's totals in the page's language (one the catalogue does not
/// know yet shows by its stored name).
fn outcome_label(ctx: &Ctx, outcome: &str) -> String {
    match outcome {
        "sent" => ctx.t("newsletters.outcome_sent").into(),
        "hard_bounce" => ctx.t("newsletters.outcome_hard_bounce").into(),
        "soft_bounce" => ctx.t("newsletters.outcome_soft_bounce").into(),
        "open" => ctx.t("newsletters.outcome_open").into(),
        "click" => ctx.t("newsletters.outcome_click").into(),
        "unsubscribe" => ctx.t("newsletters.outcome_unsubscribe").into(),
        other => other.into(),
    }
}

/// The totals in the order a reader follows a mail (sent, bounced, opened, clicked,
/// unsubscribed), any outcome this page does not know of after them.
fn in_order(totals: &std::collections::BTreeMap<&'static str, u64>) -> Vec<(&'static str, u64)> {
    const ORDER: [&str; 6] = [
        "sent",
        "hard_bounce",
        "soft_bounce",
        "open",
        "click",
        "unsubscribe",
    ];
    let mut out: Vec<(&'static str, u64)> = ORDER
        .iter()
        .filter_map(|o| totals.get_key_value(o).map(|(k, v)| (*k, *v)))
        .collect();
    out.extend(
        totals
            .iter()
            .filter(|(k, _)| !ORDER.contains(k))
            .map(|(k, v)| (*k, *v)),
    );
    out
}

fn action_label(ctx: &Ctx, action: &str) -> String {
    match action {
        "pause" => ctx.t("newsletters.pause").into(),
        "resume" => ctx.t("newsletters.resume").into(),
        "cancel" => ctx.t("newsletters.cancel").into(),
        other => other.into(),
    }
}

async fn show_campaigns(Admin(ctx): Admin) -> Response {
    let loaded = ctx.run(|ops| Ok((ops.campaigns()?, ops.lists()?))).await;
    let (campaigns, lists) = match loaded {
        Ok(both) => both,
        Err(e) => return ctx.error(&e),
    };
    let list_name = |id: i64| {
        lists
            .iter()
            .find(|l| l.id == id)
            .map_or(String::new(), |l| l.name.clone())
    };
    let body = html! {
        (tabs(&ctx))
        @if campaigns.is_empty() {
            p.empty { (ctx.t("newsletters.no_campaigns")) }
        } @else {
            table #campaigns {
                thead { tr {
                    th.num { "#" }
                    th { (ctx.t("newsletters.subject")) }
                    th { (ctx.t("newsletters.list")) }
                    th { (ctx.t("newsletters.state")) }
                    th { (ctx.t("newsletters.send_at")) }
                    th.num { (ctx.t("newsletters.rate")) }
                    th.num { (ctx.t("newsletters.outcome_sent")) }
                } }
                tbody {
                    @for c in &campaigns {
                        tr id={"campaign-" (c.id)} {
                            td.num { (c.id) }
                            td.subject { a href=(url(&format!("/campaigns/{}", c.id))) { (c.subject) } }
                            td { (list_name(c.list)) }
                            td.state class=(c.state) { (state_label(&ctx, c.state)) }
                            td { (ctx.time(c.send_at)) }
                            td.num { (c.rate_per_second) }
                            td.num.sent { (c.totals.get("sent").copied().unwrap_or(0)) }
                        }
                    }
                }
            }
        }
        h2 { (ctx.t("newsletters.compose")) }
        @if lists.is_empty() {
            p.notice { (ctx.t("newsletters.make_a_list_first")) }
        } @else {
            form #compose method="post" action=(url("/campaigns")) {
                (ctx.csrf_field())
                label { (ctx.t("newsletters.list"))
                    select name="list" required {
                        @for l in &lists { option value=(l.name) { (l.name) } }
                    }
                }
                label { (ctx.t("newsletters.also_lists")) input type="text" name="also" maxlength="2000"; }
                label { (ctx.t("newsletters.segment")) textarea name="segment" rows="3" {} }
                p.hint { (ctx.t("newsletters.segment_hint")) }
                label { (ctx.t("newsletters.subject")) input type="text" name="subject" required maxlength="998"; }
                p.hint { (ctx.t("newsletters.template_hint")) }
                label { (ctx.t("newsletters.text_template")) textarea name="text" rows="10" required {} }
                label { (ctx.t("newsletters.html_template")) textarea name="html" rows="8" {} }
                label { (ctx.t("newsletters.send_at_hint")) input type="datetime-local" name="at"; }
                label { (ctx.t("newsletters.rate_hint")) input type="number" name="rate" min="1"; }
                label { (ctx.t("newsletters.rate_per_domain_hint")) input type="number" name="rate_per_domain" min="0"; }
                button type="submit" { (ctx.t("newsletters.schedule")) }
            }
        }
    };
    ctx.page(ctx.t("newsletters.campaigns"), body)
}

#[derive(Deserialize)]
struct ComposeForm {
    list: String,
    /// More lists by name, separated by commas.
    #[serde(default)]
    also: String,
    /// Segment terms, one per line.
    #[serde(default)]
    segment: String,
    subject: String,
    text: String,
    #[serde(default)]
    html: String,
    #[serde(default)]
    at: String,
    #[serde(default)]
    rate: String,
    #[serde(default)]
    rate_per_domain: String,
}

async fn compose(Admin(ctx): Admin, Posted(form): Posted<ComposeForm>) -> Response {
    let request = (|| {
        Ok::<_, ops::Error>(CampaignCompose {
            list: form.list,
            also: names(&form.also),
            segment: terms(&form.segment),
            subject: form.subject.trim().to_string(),
            // Browsers send CRLF line ends from a textarea; a template keeps the author's
            // lines, and the message builder writes the wire's line ends itself.
            text: form.text.replace("\r\n", "\n"),
            html: Some(form.html.replace("\r\n", "\n")),
            at: Some(form.at),
            rate: number("rate", &form.rate)?,
            rate_per_domain: number("rate_per_domain", &form.rate_per_domain)?,
        })
    })();
    let request = match request {
        Ok(request) => request,
        Err(e) => return ctx.error(&e),
    };
    match ctx.run(move |ops| ops.campaign_compose(request)).await {
        Ok(id) => Redirect::to(&url(&format!("/campaigns/{}", id.0))).into_response(),
        Err(e) => ctx.error(&e),
    }
}

async fn show_campaign(Admin(ctx): Admin, Path(id): Path<i64>) -> Response {
    let view = match ctx.run(move |ops| ops.campaign_view(id)).await {
        Ok(view) => view,
        Err(e) => return ctx.error(&e),
    };
    let c = &view.detail.report;
    let here = url(&format!("/campaigns/{id}"));
    let body = html! {
        (tabs(&ctx))
        table #campaign {
            tbody {
                tr { th { (ctx.t("newsletters.list")) } td.list { (view.audience.lists.join(", ")) } }
                tr { th { (ctx.t("newsletters.segment")) } td #segment {
                    @if view.audience.segment.is_empty() {
                        (ctx.t("newsletters.segment_everyone"))
                    } @else {
                        @for term in &view.audience.segment { code.term { (term) } " " }
                    }
                } }
                tr { th { (ctx.t("newsletters.audience")) } td.num #audience { (view.audience.count) } }
                tr { th { (ctx.t("newsletters.state")) } td #state class=(c.state) { (state_label(&ctx, c.state)) } }
                tr { th { (ctx.t("newsletters.send_at")) } td { (ctx.time(c.send_at)) } }
                tr { th { (ctx.t("newsletters.rate")) } td #rate { (c.rate_per_second) } }
                tr { th { (ctx.t("newsletters.rate_per_domain")) } td #rate-per-domain {
                    @if view.rate_per_domain == 0 { (ctx.t("newsletters.no_limit")) } @else { (view.rate_per_domain) }
                } }
                tr { th { (ctx.t("newsletters.created")) } td { (ctx.time(c.created)) } }
            }
        }
        @if !view.actions.is_empty() {
            p.actions {
                @for action in &view.actions {
                    @if *action == "cancel" {
                        form.inline method="post" action={(here) "/" (action)} data-confirm=(ctx.t("newsletters.confirm_cancel")) {
                            (ctx.csrf_field())
                            button.danger id={"action-" (action)} type="submit" { (action_label(&ctx, action)) }
                        }
                    } @else {
                        form.inline method="post" action={(here) "/" (action)} {
                            (ctx.csrf_field())
                            button id={"action-" (action)} type="submit" { (action_label(&ctx, action)) }
                        }
                    }
                    " "
                }
            }
        }
        h2 { (ctx.t("newsletters.totals")) }
        table #totals {
            tbody {
                @for (outcome, count) in in_order(&c.totals) {
                    tr { th { (outcome_label(&ctx, outcome)) } td.num id={"total-" (outcome)} { (count) } }
                }
            }
        }
        p { a #report href={(here) "/report.csv"} download { (ctx.t("newsletters.report_link")) } }
        h2 { (ctx.t("newsletters.link_clicks")) }
        @if view.detail.links.is_empty() {
            p.empty #no-links { (ctx.t("newsletters.no_links")) }
        } @else {
            table #link-clicks {
                thead { tr {
                    th { (ctx.t("newsletters.link")) }
                    th.num { (ctx.t("newsletters.clickers")) }
                    th.num { (ctx.t("newsletters.clicks")) }
                } }
                tbody {
                    @for link in &view.detail.links {
                        tr {
                            td.url { (link.url) }
                            td.num.clickers { (link.clickers) }
                            td.num.clicks { (link.clicks) }
                        }
                    }
                }
            }
            p.hint { (ctx.t("newsletters.link_clicks_hint")) }
        }
        h2 { (ctx.t("newsletters.delivery_graph")) }
        (delivery(&ctx, &view))
        h2 { (ctx.t("newsletters.templates")) }
        p { strong { (ctx.t("newsletters.subject")) ": " } span #subject { (c.subject) } }
        pre.template #text-template { (view.text) }
        @if let Some(html_template) = &view.html {
            pre.template #html-template { (html_template) }
        }
        form #preview-form method="get" action={(here) "/preview"} {
            label { (ctx.t("newsletters.preview_subscriber")) input type="email" name="subscriber" maxlength="320"; }
            button type="submit" { (ctx.t("newsletters.preview")) }
        }
        form #test-form method="post" action={(here) "/test"} {
            (ctx.csrf_field())
            button #send-test type="submit" { (ctx.t("newsletters.send_test")) }
        }
        @if view.editable {
            h2 { (ctx.t("newsletters.edit")) }
            form #edit method="post" action={(here) "/edit"} {
                (ctx.csrf_field())
                label { (ctx.t("newsletters.subject")) input type="text" name="subject" required maxlength="998" value=(c.subject); }
                p.hint { (ctx.t("newsletters.template_hint")) }
                label { (ctx.t("newsletters.text_template")) textarea name="text" rows="10" required { (view.text) } }
                label { (ctx.t("newsletters.html_template")) textarea name="html" rows="8" { (view.html.as_deref().unwrap_or("")) } }
                label { (ctx.t("newsletters.edit_at_hint")) input type="datetime-local" name="at"; }
                label { (ctx.t("newsletters.edit_rate_hint")) input type="number" name="rate" min="0"; }
                label { (ctx.t("newsletters.edit_rate_per_domain_hint")) input type="number" name="rate_per_domain" min="0"; }
                label { (ctx.t("newsletters.edit_lists")) input type="text" name="lists" required maxlength="2000" value=(view.audience.lists.join(", ")); }
                label { (ctx.t("newsletters.segment")) textarea name="segment" rows="3" { (view.audience.segment.join("\n")) } }
                p.hint { (ctx.t("newsletters.segment_hint")) }
                button #save-edit type="submit" { (ctx.t("newsletters.save")) }
            }
        }
        h2 { (ctx.t("newsletters.copy")) }
        form #copy method="post" action={(here) "/copy"} {
            (ctx.csrf_field())
            label { (ctx.t("newsletters.copy_at_hint")) input type="datetime-local" name="at"; }
            button #make-copy type="submit" { (ctx.t("newsletters.copy")) }
        }
    };
    ctx.page(&ctx.tf("newsletters.campaign_title", &[("id", &id)]), body)
}

/// The graph of what had happened by each day (server-drawn SVG), and the same by day as a
/// table under it.
fn delivery(ctx: &Ctx, view: &CampaignView) -> Markup {
    let days = &view.history;
    let (Some(first), Some(last)) = (days.first(), days.last()) else {
        return html! { p.empty #no-deliveries { (ctx.t("newsletters.nothing_yet")) } };
    };
    // Everything starts at zero when sending begins; each day then adds what it brought.
    let start = view.start.min(first.at);
    let line = |name: &'static str, class: &'static str, pick: fn(&Delivery) -> u64| Series {
        name,
        class,
        points: std::iter::once((start as f64, 0.0))
            .chain(days.iter().map(|d| (d.at as f64, pick(&d.by_then) as f64)))
            .collect(),
    };
    let series = [
        line(ctx.t("newsletters.graph_sent"), "s1", |d| d.sent),
        line(ctx.t("newsletters.graph_bounced"), "s2", |d| d.bounced),
        line(ctx.t("newsletters.graph_opened"), "s3", |d| d.opened),
        line(ctx.t("newsletters.graph_clicked"), "s4", |d| d.clicked),
        line(ctx.t("newsletters.graph_unsubscribed"), "s5", |d| {
            d.unsubscribed
        }),
    ];
    html! {
        div #delivery-graph {
            (svg::line_chart(ctx.t("newsletters.graph_title"), &series, (&ctx.time(start), &ctx.time(last.at))))
        }
        p.hint { (ctx.t("newsletters.graph_hint")) }
        table #delivery {
            thead { tr {
                th { (ctx.t("newsletters.day")) }
                th.num { (ctx.t("newsletters.graph_sent")) }
                th.num { (ctx.t("newsletters.graph_bounced")) }
                th.num { (ctx.t("newsletters.graph_opened")) }
                th.num { (ctx.t("newsletters.graph_clicked")) }
                th.num { (ctx.t("newsletters.graph_unsubscribed")) }
            } }
            tbody {
                @for d in days {
                    tr {
                        td.day { (d.date) }
                        td.num.sent { (d.on_the_day.sent) }
                        td.num.bounced { (d.on_the_day.bounced) }
                        td.num.opened { (d.on_the_day.opened) }
                        td.num.clicked { (d.on_the_day.clicked) }
                        td.num.unsubscribed { (d.on_the_day.unsubscribed) }
                    }
                }
            }
        }
    }
}

/// The campaign's per-recipient report as the CSV `campaign report` writes, as a download.
async fn report_csv(Admin(ctx): Admin, Path(id): Path<i64>) -> Response {
    match ctx.run(move |ops| ops.campaign_report_csv(id)).await {
        // The id is a number, so the name needs no care.
        Ok((bytes, _)) => csv_download(bytes, &format!("campaign-{id}-report.csv")),
        Err(e) => ctx.error(&e),
    }
}

#[derive(Deserialize)]
struct PreviewQuery {
    #[serde(default)]
    subscriber: String,
}

/// The campaign rendered for the chosen subscriber (or a sample reader), the HTML part as
/// its source: shown as a page it would run in the console's origin.
async fn preview(
    Admin(ctx): Admin,
    Path(id): Path<i64>,
    Query(query): Query<PreviewQuery>,
) -> Response {
    let subscriber = Some(query.subscriber.trim().to_string()).filter(|s| !s.is_empty());
    let preview = match ctx
        .run(move |ops| ops.campaign_preview(id, subscriber.as_deref()))
        .await
    {
        Ok(preview) => preview,
        Err(e) => return ctx.error(&e),
    };
    let body = html! {
        (tabs(&ctx))
        p.hint { (ctx.t("newsletters.preview_hint")) }
        p { strong { (ctx.t("newsletters.preview_for")) ": " }
            span #preview-subscriber { (preview.subscriber.as_deref().unwrap_or(ctx.t("newsletters.sample_reader"))) } }
        p { strong { (ctx.t("newsletters.subject")) ": " } span #preview-subject { (preview.rendered.subject) } }
        pre.template #preview-text { (preview.rendered.text) }
        @if let Some(html_part) = &preview.rendered.html {
            pre.template #preview-html { (html_part) }
        }
        p { a href=(url(&format!("/campaigns/{id}"))) { (ctx.tf("newsletters.campaign_title", &[("id", &id)])) } }
    };
    ctx.page(ctx.t("newsletters.preview"), body)
}

/// Sends a test of the campaign to the signed-in administrator's own address.
async fn send_test(Admin(ctx): Admin, Path(id): Path<i64>, Posted(_): Posted<Empty>) -> Response {
    let to = ctx
        .session
        .as_ref()
        .map_or(String::new(), |s| s.address.clone());
    let sent_to = to.clone();
    match ctx.run(move |ops| ops.campaign_test(id, &to, None)).await {
        Ok(preview) => {
            let body = html! {
                (tabs(&ctx))
                p.notice #test-sent { (ctx.tf("newsletters.test_sent", &[("to", &sent_to)])) }
                p { strong { (ctx.t("newsletters.subject")) ": " } (preview.rendered.subject) }
                p { a href=(url(&format!("/campaigns/{id}"))) { (ctx.tf("newsletters.campaign_title", &[("id", &id)])) } }
            };
            ctx.page(ctx.t("newsletters.send_test"), body)
        }
        Err(e) => ctx.error(&e),
    }
}

#[derive(Deserialize)]
struct EditForm {
    subject: String,
    text: String,
    #[serde(default)]
    html: String,
    #[serde(default)]
    at: String,
    #[serde(default)]
    rate: String,
    #[serde(default)]
    rate_per_domain: String,
    /// The lists by name, separated by commas, the first first.
    #[serde(default)]
    lists: String,
    /// Segment terms, one per line; none for every active subscriber.
    #[serde(default)]
    segment: String,
}

/// The names in a comma-separated field.
fn names(field: &str) -> Vec<String> {
    field
        .split(',')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// The terms of a one-per-line field.
fn terms(field: &str) -> Vec<String> {
    field
        .lines()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

async fn edit(Admin(ctx): Admin, Path(id): Path<i64>, Posted(form): Posted<EditForm>) -> Response {
    let revision = (|| {
        Ok::<_, ops::Error>(CampaignRevision {
            subject: Some(form.subject),
            // CRLF from the textarea, as in the compose form.
            text: Some(form.text.replace("\r\n", "\n")),
            // An empty HTML box keeps the part: the form cannot tell "none" from "unchanged".
            html: Some(form.html.replace("\r\n", "\n")).filter(|h| !h.trim().is_empty()),
            at: Some(form.at),
            rate: number("rate", &form.rate)?,
            rate_per_domain: number("rate_per_domain", &form.rate_per_domain)?,
            // The form shows the lists and the segment it has, so what comes back is the
            // whole audience; a form without the lists field (an older page) keeps it.
            lists: Some(names(&form.lists)).filter(|l| !l.is_empty()),
            segment: Some(terms(&form.segment)),
        })
    })();
    let revision = match revision {
        Ok(revision) => revision,
        Err(e) => return ctx.error(&e),
    };
    match ctx.run(move |ops| ops.campaign_revise(id, revision)).await {
        Ok(()) => Redirect::to(&url(&format!("/campaigns/{id}"))).into_response(),
        Err(e) => ctx.error(&e),
    }
}

#[derive(Deserialize)]
struct CopyForm {
    #[serde(default)]
    at: String,
}

async fn copy(Admin(ctx): Admin, Path(id): Path<i64>, Posted(form): Posted<CopyForm>) -> Response {
    match ctx
        .run(move |ops| ops.campaign_copy(id, Some(&form.at)))
        .await
    {
        Ok(copy) => Redirect::to(&url(&format!("/campaigns/{}", copy.0))).into_response(),
        Err(e) => ctx.error(&e),
    }
}

async fn act(
    Admin(ctx): Admin,
    Path((id, action)): Path<(i64, String)>,
    Posted(_): Posted<Empty>,
) -> Response {
    match ctx.run(move |ops| ops.campaign_act(id, &action)).await {
        Ok(_) => Redirect::to(&url(&format!("/campaigns/{id}"))).into_response(),
        Err(e) => ctx.error(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_follow_the_mails_path_and_keep_outcomes_this_page_does_not_know() {
        let totals: std::collections::BTreeMap<&'static str, u64> = [
            ("click", 3),
            ("complaint", 1),
            ("hard_bounce", 2),
            ("open", 4),
            ("sent", 9),
            ("unsubscribe", 1),
        ]
        .into_iter()
        .collect();
        let names: Vec<&str> = in_order(&totals).iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            [
                "sent",
                "hard_bounce",
                "open",
                "click",
                "unsubscribe",
                "complaint"
            ]
        );
        assert_eq!(in_order(&totals)[0], ("sent", 9));
    }
}
