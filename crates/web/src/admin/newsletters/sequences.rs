//! Step-mail sequences: each with its list, time zone and steps in order (each with its
//! per-recipient report as a CSV download), a form to append a step, a form to make a
//! sequence, and removing one.

use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::html;
use ops::newsletter_views::{SequenceRequest, StepCompose};
use serde::Deserialize;

use super::{Empty, HOME, csv_download, number, tabs, ticked, url};
use crate::session::{Admin, Posted};
use crate::{BASE, Console};

pub fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route(&format!("{BASE}{HOME}/sequences"), get(show).post(create))
        .route(
            &format!("{BASE}{HOME}/sequences/{{id}}/steps"),
            post(add_step),
        )
        .route(
            &format!("{BASE}{HOME}/sequences/{{id}}/delete"),
            post(delete),
        )
        .route(
            &format!("{BASE}{HOME}/steps/{{id}}/report.csv"),
            get(report_csv),
        )
}

async fn show(Admin(ctx): Admin) -> Response {
    let loaded = ctx
        .run(|ops| Ok((ops.sequence_views()?, ops.lists()?)))
        .await;
    let (sequences, lists) = match loaded {
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
        @if sequences.is_empty() {
            p.empty { (ctx.t("newsletters.no_sequences")) }
        }
        @for (sequence, steps) in &sequences {
            section.sequence id={"sequence-" (sequence.id.0)} {
                h2 { (sequence.name) }
                p {
                    (ctx.t("newsletters.list")) ": " (list_name(sequence.list.0)) " · "
                    (ctx.t("newsletters.time_zone")) ": " (sequence.time_zone) " · "
                    (ctx.t("newsletters.join_existing")) ": "
                    (if sequence.join_existing { ctx.t("newsletters.yes") } else { ctx.t("newsletters.no") })
                }
                @if steps.is_empty() {
                    p.empty { (ctx.t("newsletters.no_steps")) }
                } @else {
                    table.steps {
                        thead { tr {
                            th.num { (ctx.t("newsletters.step")) }
                            th.num { "ID" }
                            th.num { (ctx.t("newsletters.days_after")) }
                            th { (ctx.t("newsletters.time_of_day")) }
                            th { (ctx.t("newsletters.subject")) }
                            th { (ctx.t("newsletters.step_condition")) }
                            th.num { (ctx.t("newsletters.outcome_sent")) }
                            th.num { (ctx.t("newsletters.graph_bounced")) }
                            th.num { (ctx.t("newsletters.outcome_unsubscribe")) }
                            th { (ctx.t("newsletters.report")) }
                        } }
                        tbody {
                            @for view in steps {
                                @let step = &view.step;
                                tr {
                                    td.num { (step.position) }
                                    td.num.step-id { (step.id.0) }
                                    td.num { (step.days_after) }
                                    td { (format!("{:02}:{:02}", step.send_minute / 60, step.send_minute % 60)) }
                                    td.subject { (step.subject) }
                                    td.condition {
                                        @if let Some(condition) = step.condition {
                                            code { (condition.to_string()) } " "
                                            (if step.otherwise == store::Otherwise::Wait { ctx.t("newsletters.otherwise_wait") } else { ctx.t("newsletters.otherwise_skip") })
                                        }
                                    }
                                    td.num.sent { (view.sent) }
                                    td.num.bounced { (view.bounced) }
                                    td.num.unsubscribed { (view.unsubscribed) }
                                    td { a.report href=(url(&format!("/steps/{}/report.csv", step.id.0))) download { "CSV" } }
                                }
                            }
                        }
                    }
                }
                details {
                    summary { (ctx.t("newsletters.add_step")) }
                    form.add-step method="post" action=(url(&format!("/sequences/{}/steps", sequence.id.0))) {
                        (ctx.csrf_field())
                        label { (ctx.t("newsletters.days_after_hint")) input type="number" name="days" min="0" value="0" required; }
                        label { (ctx.t("newsletters.time_of_day_hint")) input type="time" name="at" value="09:00" required; }
                        label { (ctx.t("newsletters.subject")) input type="text" name="subject" required maxlength="998"; }
                        p.hint { (ctx.t("newsletters.template_hint")) }
                        label { (ctx.t("newsletters.text_template")) textarea name="text" rows="8" required {} }
                        label { (ctx.t("newsletters.html_template")) textarea name="html" rows="6" {} }
                        label { (ctx.t("newsletters.step_condition_hint")) input type="text" name="condition" maxlength="64" placeholder="clicked:12"; }
                        label { (ctx.t("newsletters.otherwise"))
                            select name="otherwise" {
                                option value="skip" { (ctx.t("newsletters.otherwise_skip")) }
                                option value="wait" { (ctx.t("newsletters.otherwise_wait")) }
                            }
                        }
                        button type="submit" { (ctx.t("newsletters.add_step")) }
                    }
                }
                form.delete-sequence method="post" action=(url(&format!("/sequences/{}/delete", sequence.id.0)))
                    data-confirm=(ctx.tf("newsletters.confirm_remove_sequence", &[("name", &sequence.name)])) {
                    (ctx.csrf_field())
                    button.danger type="submit" { (ctx.t("newsletters.remove_sequence")) }
                }
            }
        }
        h2 { (ctx.t("newsletters.new_sequence")) }
        @if lists.is_empty() {
            p.notice { (ctx.t("newsletters.make_a_list_first")) }
        } @else {
            form #sequence-create method="post" action=(url("/sequences")) {
                (ctx.csrf_field())
                label { (ctx.t("newsletters.list"))
                    select name="list" required {
                        @for l in &lists { option value=(l.name) { (l.name) } }
                    }
                }
                label { (ctx.t("newsletters.sequence_name")) input type="text" name="name" required maxlength="200"; }
                label { (ctx.t("newsletters.time_zone_hint")) input type="text" name="time_zone" value="UTC" maxlength="64"; }
                label { span { input type="checkbox" name="join_existing" value="on"; " " (ctx.t("newsletters.join_existing_explained")) } }
                button type="submit" { (ctx.t("newsletters.create_sequence")) }
            }
        }
    };
    ctx.page(ctx.t("newsletters.sequences"), body)
}

/// A step's per-recipient report as the CSV `sequence report` writes, as a download.
async fn report_csv(Admin(ctx): Admin, Path(id): Path<i64>) -> Response {
    match ctx.run(move |ops| ops.step_report_csv(id)).await {
        Ok((bytes, _)) => csv_download(bytes, &format!("step-{id}-report.csv")),
        Err(e) => ctx.error(&e),
    }
}

#[derive(Deserialize)]
struct SequenceForm {
    list: String,
    name: String,
    #[serde(default)]
    time_zone: String,
    join_existing: Option<String>,
}

async fn create(Admin(ctx): Admin, Posted(form): Posted<SequenceForm>) -> Response {
    let zone = form.time_zone.trim();
    let request = SequenceRequest {
        list: form.list,
        name: form.name.trim().to_string(),
        time_zone: (!zone.is_empty()).then(|| zone.to_string()),
        join_existing: ticked(&form.join_existing),
    };
    match ctx.run(move |ops| ops.sequence_add(&request)).await {
        Ok(id) => Redirect::to(&url(&format!("/sequences#sequence-{}", id.0))).into_response(),
        Err(e) => ctx.error(&e),
    }
}

#[derive(Deserialize)]
struct StepForm {
    days: String,
    at: String,
    subject: String,
    text: String,
    #[serde(default)]
    html: String,
    #[serde(default)]
    condition: String,
    #[serde(default)]
    otherwise: String,
}

async fn add_step(
    Admin(ctx): Admin,
    Path(id): Path<i64>,
    Posted(form): Posted<StepForm>,
) -> Response {
    let days = match number::<u32>("days_after", &form.days) {
        Ok(days) => days.unwrap_or(0),
        Err(e) => return ctx.error(&e),
    };
    let request = StepCompose {
        sequence: id,
        days,
        at: form.at,
        subject: form.subject.trim().to_string(),
        text: form.text.replace("\r\n", "\n"),
        html: Some(form.html.replace("\r\n", "\n")),
        condition: Some(form.condition),
        otherwise: Some(form.otherwise),
    };
    match ctx.run(move |ops| ops.step_compose(request)).await {
        Ok(_) => Redirect::to(&url(&format!("/sequences#sequence-{id}"))).into_response(),
        Err(e) => ctx.error(&e),
    }
}

async fn delete(Admin(ctx): Admin, Path(id): Path<i64>, Posted(_): Posted<Empty>) -> Response {
    match ctx.run(move |ops| ops.sequence_remove(id)).await {
        Ok(()) => Redirect::to(&url("/sequences")).into_response(),
        Err(e) => ctx.error(&e),
    }
}
