//! The capacity planner (`tegami plan`): one form for both models, its figures filled in
//! with what this server measures (mailboxes, messages per mailbox per day, average message
//! size) and the rest with the planner's defaults; submitting it shows every step of the
//! plan. Planning changes nothing, so the form is a GET and its result can be bookmarked.

use std::sync::Arc;

use axum::Router;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use maud::{Markup, html};
use ops::plan::{Model, Plan, PlanInputs, PlanRequest};
use serde::Deserialize;

use crate::session::Admin;
use crate::{BASE, Console, Ctx};

pub fn routes() -> Router<Arc<Console>> {
    Router::new().route(&format!("{BASE}/admin/planner"), get(show))
}

/// The form as sent: every field text, empty when left blank.
#[derive(Deserialize, Default, Clone)]
struct PlanForm {
    model: Option<String>,
    mailboxes: Option<String>,
    messages_per_day: Option<String>,
    avg_message_kb: Option<String>,
    moves_per_day_percent: Option<String>,
    avg_mailbox_gb: Option<String>,
    truncation_failure_days: Option<String>,
    move_days: Option<String>,
    days: Option<String>,
    overhead: Option<String>,
    free_percent: Option<String>,
}

/// The fields: (name, catalogue key, used by the tegami model, used by exchange2010).
const FIELDS: [(&str, &str, bool, bool); 10] = [
    ("mailboxes", "planner.mailboxes", true, true),
    ("messages_per_day", "planner.messages_per_day", true, true),
    ("avg_message_kb", "planner.avg_message_kb", true, true),
    ("days", "planner.days", true, false),
    (
        "moves_per_day_percent",
        "planner.moves_per_day_percent",
        false,
        true,
    ),
    ("avg_mailbox_gb", "planner.avg_mailbox_gb", false, true),
    (
        "truncation_failure_days",
        "planner.truncation_failure_days",
        false,
        true,
    ),
    ("move_days", "planner.move_days", false, true),
    ("overhead", "planner.overhead", true, true),
    ("free_percent", "planner.free_percent", true, true),
];

impl PlanForm {
    fn field(&self, name: &str) -> Option<&str> {
        match name {
            "mailboxes" => self.mailboxes.as_deref(),
            "messages_per_day" => self.messages_per_day.as_deref(),
            "avg_message_kb" => self.avg_message_kb.as_deref(),
            "moves_per_day_percent" => self.moves_per_day_percent.as_deref(),
            "avg_mailbox_gb" => self.avg_mailbox_gb.as_deref(),
            "truncation_failure_days" => self.truncation_failure_days.as_deref(),
            "move_days" => self.move_days.as_deref(),
            "days" => self.days.as_deref(),
            "overhead" => self.overhead.as_deref(),
            "free_percent" => self.free_percent.as_deref(),
            _ => None,
        }
    }

    /// The form a visitor first sees: the measured figures, the defaults for the rest.
    fn filled(inputs: &PlanInputs) -> PlanForm {
        let d = PlanRequest::default();
        let n = |v: f64| Some(figure(v));
        PlanForm {
            model: Some("tegami".into()),
            mailboxes: inputs.mailboxes.map(|m| m.to_string()),
            messages_per_day: inputs.messages_per_day.map(figure),
            avg_message_kb: inputs.avg_message_kb.map(figure),
            moves_per_day_percent: n(d.moves_per_day_percent),
            avg_mailbox_gb: n(d.avg_mailbox_gb),
            truncation_failure_days: n(d.truncation_failure_days),
            move_days: n(d.move_days),
            days: n(d.days),
            overhead: n(d.overhead),
            free_percent: n(d.free_percent),
        }
    }

    /// The request the form asks for; a blank figure is the default (or "not given").
    /// Err names the field whose text is not a number.
    fn request(&self) -> Result<PlanRequest, &'static str> {
        let d = PlanRequest::default();
        let model = match self.model.as_deref() {
            Some("exchange2010") => Model::Exchange2010,
            _ => Model::Tegami,
        };
        let get = |name: &'static str| -> Result<Option<f64>, &'static str> {
            match self.field(name).map(str::trim) {
                None | Some("") => Ok(None),
                Some(text) => text.parse::<f64>().map(Some).map_err(|_| name),
            }
        };
        Ok(PlanRequest {
            model,
            mailboxes: get("mailboxes")?,
            messages_per_day: get("messages_per_day")?,
            avg_message_kb: get("avg_message_kb")?,
            moves_per_day_percent: get("moves_per_day_percent")?.unwrap_or(d.moves_per_day_percent),
            avg_mailbox_gb: get("avg_mailbox_gb")?.unwrap_or(d.avg_mailbox_gb),
            truncation_failure_days: get("truncation_failure_days")?
                .unwrap_or(d.truncation_failure_days),
            move_days: get("move_days")?.unwrap_or(d.move_days),
            days: get("days")?.unwrap_or(d.days),
            overhead: get("overhead")?.unwrap_or(d.overhead),
            free_percent: get("free_percent")?.unwrap_or(d.free_percent),
        })
    }
}

/// A figure for a form field: at most two decimals, no trailing zeros, no grouping.
fn figure(v: f64) -> String {
    let text = format!("{v:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

async fn show(Admin(ctx): Admin, Query(form): Query<PlanForm>) -> Response {
    let submitted = form.model.is_some();
    let inputs = match ctx.run(|ops| ops.plan_inputs()).await {
        Ok(inputs) => inputs,
        Err(e) => return ctx.error(&e),
    };
    if !submitted {
        let body = html! {
            (measured(&ctx, &inputs))
            (form_of(&ctx, &PlanForm::filled(&inputs)))
        };
        return ctx.page(ctx.t("admin.menu_planner"), body);
    }
    let outcome = match form.request() {
        Ok(request) => ctx
            .run(move |ops| ops.plan(&request))
            .await
            .map_err(|e| e.one_line()),
        Err(field) => Err(ctx.tf("planner.not_a_number", &[("field", &field)])),
    };
    let status = if outcome.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let body = html! {
        (measured(&ctx, &inputs))
        @match &outcome {
            Ok(plan) => (result(&ctx, plan)),
            Err(message) => p #plan-error.error { (message) },
        }
        (form_of(&ctx, &form))
    };
    ctx.page_with(status, ctx.t("admin.menu_planner"), body)
}

/// What was measured here, so the reader knows where the filled-in figures come from.
fn measured(ctx: &Ctx, inputs: &PlanInputs) -> Markup {
    let none = ctx.t("planner.not_measured");
    html! {
        table #measured {
            caption { (ctx.t("planner.measured_title")) }
            tr { th { (ctx.t("planner.mailboxes")) } td.mailboxes { (inputs.mailboxes.map(|m| m.to_string()).unwrap_or_else(|| none.into())) } }
            tr { th { (ctx.t("planner.messages_per_day")) } td.messages-per-day { (inputs.messages_per_day.map(figure).unwrap_or_else(|| none.into())) } }
            tr { th { (ctx.t("planner.avg_message_kb")) } td.avg-message-kb { (inputs.avg_message_kb.map(figure).unwrap_or_else(|| none.into())) } }
        }
    }
}

fn form_of(ctx: &Ctx, form: &PlanForm) -> Markup {
    let model = form.model.as_deref().unwrap_or("tegami");
    html! {
        form #plan method="get" action={(BASE) "/admin/planner"} {
            fieldset {
                legend { (ctx.t("planner.model")) }
                // Labels are grids (console.css): one span keeps each button beside its text.
                label.check { span {
                    input type="radio" name="model" value="tegami" checked[model != "exchange2010"];
                    " " (ctx.t("planner.model_tegami"))
                } }
                label.check { span {
                    input type="radio" name="model" value="exchange2010" checked[model == "exchange2010"];
                    " " (ctx.t("planner.model_exchange2010"))
                } }
            }
            @for (name, key, tegami, exchange) in FIELDS {
                label {
                    (ctx.t(key))
                    @if tegami && !exchange { " " small { (ctx.t("planner.only_tegami")) } }
                    @if exchange && !tegami { " " small { (ctx.t("planner.only_exchange2010")) } }
                    input type="text" inputmode="decimal" name=(name) maxlength="32" value=(form.field(name).unwrap_or(""));
                }
            }
            p.hint { (ctx.t("planner.blank_hint")) }
            button type="submit" { (ctx.t("planner.run")) }
        }
    }
}

fn result(ctx: &Ctx, plan: &Plan) -> Markup {
    html! {
        section #plan-result {
            h2 { (ctx.t("planner.result")) }
            p.title { (plan.title) }
            table #plan-steps {
                thead { tr {
                    th.num { "#" }
                    th { (ctx.t("planner.step")) }
                    th { (ctx.t("planner.how")) }
                    th { (ctx.t("planner.value")) }
                } }
                tbody {
                    @for (n, step) in plan.steps.iter().enumerate() {
                        tr data-label=(step.label) {
                            td.num { (n + 1) }
                            td.label { (step.label) }
                            td.how { (step.how) }
                            td.value { strong { (step.shown) } }
                        }
                    }
                }
            }
            @for note in &plan.notes {
                p.note { (note) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_figures_take_the_defaults_and_text_is_refused_by_name() {
        let form = PlanForm {
            model: Some("exchange2010".into()),
            mailboxes: Some(" 250 ".into()),
            days: Some(String::new()),
            ..PlanForm::default()
        };
        let request = form.request().unwrap();
        assert_eq!(request.model, Model::Exchange2010);
        assert_eq!(request.mailboxes, Some(250.0));
        assert_eq!(request.messages_per_day, None);
        assert_eq!(request.days, PlanRequest::default().days);
        let bad = PlanForm {
            overhead: Some("1,2".into()),
            ..form
        };
        assert_eq!(bad.request().unwrap_err(), "overhead");
    }

    #[test]
    fn the_filled_form_holds_the_measured_figures() {
        let form = PlanForm::filled(&PlanInputs {
            mailboxes: Some(3),
            messages_per_day: Some(6.666),
            avg_message_kb: None,
        });
        assert_eq!(form.mailboxes.as_deref(), Some("3"));
        assert_eq!(form.messages_per_day.as_deref(), Some("6.67"));
        assert_eq!(form.avg_message_kb, None);
        assert_eq!(form.free_percent.as_deref(), Some("20"));
        assert_eq!(form.overhead.as_deref(), Some("1.2"));
        let request = form.request().unwrap();
        assert_eq!(request.model, Model::Tegami);
        assert_eq!(request.messages_per_day, Some(6.67));
    }
}
