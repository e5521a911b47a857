//! Maintenance mode: its state now, the form that sets it (a message and daily windows in
//! ten-minute steps, or none: in force until lifted), the button that lifts it, and a
//! preview of the screen users see. Every decision is `ops::maint`'s, the same as
//! `tegami maint on|off|status`; the `maint` file stays the truth, so deleting it by hand
//! lifts maintenance too and this page shows that at the next look.

use std::sync::Arc;

use axum::Router;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use gate::Status;
use gate::maint::hhmm;
use maud::{Markup, html};
use ops::maint::{MESSAGE_MAX_CHARS, MaintOn, MaintState};

use crate::session::{Admin, Posted};
use crate::{BASE, Console, Ctx};

/// Empty window rows the form offers beyond the windows already set.
const SPARE_ROWS: usize = 2;

pub fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route(
            &format!("{BASE}/admin/maintenance"),
            get(show).post(turn_on),
        )
        .route(&format!("{BASE}/admin/maintenance/preview"), post(preview))
        .route(&format!("{BASE}/admin/maintenance/off"), post(turn_off))
}

/// The form as posted: the message and each row's start and end (`start`/`end` repeat,
/// one pair per row; a row left empty is no window).
struct Request {
    message: String,
    windows: Vec<String>,
}

impl Request {
    fn from_fields(fields: &[(String, String)]) -> Request {
        let values = |name: &str| {
            fields
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.trim().to_string())
                .collect::<Vec<_>>()
        };
        let (starts, ends) = (values("start"), values("end"));
        let windows = starts
            .iter()
            .zip(ends.iter())
            .filter(|(s, e)| !s.is_empty() || !e.is_empty())
            // A half-filled row goes to ops as it is, which says what is wrong with it.
            .map(|(s, e)| format!("{s}-{e}"))
            .collect();
        Request {
            message: values("message").into_iter().next().unwrap_or_default(),
            windows,
        }
    }

    fn to_ops(&self, ctx: &Ctx) -> MaintOn {
        let who = format!("{} in the web console", who(ctx));
        MaintOn {
            message: Some(self.message.clone()),
            windows: self.windows.clone(),
            set_by: who.clone(),
            operator: who,
        }
    }
}

fn who(ctx: &Ctx) -> String {
    ctx.session
        .as_ref()
        .map_or_else(String::new, |s| s.address.clone())
}

async fn show(Admin(ctx): Admin) -> Response {
    let state = match ctx
        .run(|ops| ops::maint::status(ops.data(), ops.clock()))
        .await
    {
        Ok(state) => state,
        Err(e) => return ctx.error(&e),
    };
    let (message, windows): (String, Vec<(u16, u16)>) = match &state.maintenance {
        Some(m) => (
            m.message.clone().unwrap_or_default(),
            m.windows.iter().map(|w| (w.start, w.end)).collect(),
        ),
        None => (String::new(), Vec::new()),
    };
    render(&ctx, &state, &message, &windows, None)
}

/// What the posted settings would do, shown without saving them.
async fn preview(Admin(ctx): Admin, Posted(fields): Posted<Vec<(String, String)>>) -> Response {
    let request = Request::from_fields(&fields);
    let settings = request.to_ops(&ctx);
    let (current, previewed) = match ctx
        .run(move |ops| {
            let current = ops::maint::status(ops.data(), ops.clock())?;
            Ok((current, ops::maint::preview(ops.clock(), &settings)?))
        })
        .await
    {
        Ok(both) => both,
        Err(e) => return ctx.error(&e),
    };
    let windows: Vec<(u16, u16)> = previewed
        .maintenance
        .as_ref()
        .map(|m| m.windows.iter().map(|w| (w.start, w.end)).collect())
        .unwrap_or_default();
    render(&ctx, &current, &request.message, &windows, Some(&previewed))
}

async fn turn_on(Admin(ctx): Admin, Posted(fields): Posted<Vec<(String, String)>>) -> Response {
    let settings = Request::from_fields(&fields).to_ops(&ctx);
    match ctx
        .run(move |ops| ops::maint::on(ops.data(), ops.clock(), settings))
        .await
    {
        Ok(_) => Redirect::to(&format!("{BASE}/admin/maintenance")).into_response(),
        Err(e) => ctx.error(&e),
    }
}

#[derive(serde::Deserialize)]
struct Empty {}

async fn turn_off(Admin(ctx): Admin, Posted(_): Posted<Empty>) -> Response {
    let operator = format!("{} in the web console", who(&ctx));
    match ctx
        .run(move |ops| ops::maint::off(ops.data(), ops.clock(), &operator))
        .await
    {
        Ok(_) => Redirect::to(&format!("{BASE}/admin/maintenance")).into_response(),
        Err(e) => ctx.error(&e),
    }
}

fn render(
    ctx: &Ctx,
    state: &MaintState,
    message: &str,
    windows: &[(u16, u16)],
    previewed: Option<&MaintState>,
) -> Response {
    let rows: Vec<Option<(u16, u16)>> = windows
        .iter()
        .copied()
        .map(Some)
        .chain(std::iter::repeat_n(None, SPARE_ROWS))
        .collect();
    let body = html! {
        section #state {
            h2 { (ctx.t("ops.maint_now")) }
            (state_summary(ctx, state))
            @if let Some(m) = &state.maintenance {
                @if !m.windows.is_empty() {
                    p.windows { (ctx.t("ops.maint_daily_windows")) " "
                        @for (i, w) in m.windows.iter().enumerate() {
                            @if i > 0 { ", " }
                            span.window { (w.to_string()) }
                        }
                    }
                }
                @if let Some(by) = &m.set_by {
                    p.set-by { (ctx.tf("ops.maint_set_by", &[("who", by)])) }
                }
                form #off method="post" action={(BASE) "/admin/maintenance/off"} data-confirm=(ctx.t("ops.maint_off_confirm")) {
                    (ctx.csrf_field())
                    button.danger type="submit" { (ctx.t("ops.maint_turn_off")) }
                }
            }
            p.hint { (ctx.t("ops.maint_file_hint")) }
        }
        section {
            h2 { (ctx.t("ops.maint_set")) }
            form #maint method="post" action={(BASE) "/admin/maintenance"} {
                (ctx.csrf_field())
                label {
                    (ctx.tf("ops.maint_message", &[("max", &MESSAGE_MAX_CHARS)]))
                    input type="text" name="message" value=(message) maxlength=(MESSAGE_MAX_CHARS)
                        placeholder=(gate::maint::DEFAULT_MESSAGE);
                }
                p { (ctx.t("ops.maint_windows_help")) }
                table #windows {
                    thead { tr { th { (ctx.t("ops.maint_start")) } th { (ctx.t("ops.maint_end")) } } }
                    tbody {
                        @for row in &rows {
                            tr {
                                td { (time_select("start", row.map(|w| w.0), false, ctx)) }
                                td { (time_select("end", row.map(|w| w.1), true, ctx)) }
                            }
                        }
                    }
                }
                p {
                    button.secondary type="submit" formaction={(BASE) "/admin/maintenance/preview"} name="preview" value="1" { (ctx.t("ops.maint_preview_button")) }
                    " "
                    button type="submit" { (ctx.t("ops.maint_turn_on")) }
                }
            }
        }
        @if let Some(previewed) = previewed {
            section #preview {
                h2 { (ctx.t("ops.maint_preview")) }
                (preview_screen(ctx, previewed))
            }
        }
    };
    ctx.page(ctx.t("admin.menu_maintenance"), body)
}

/// A select of the times of day in ten-minute steps; an end may be 24:00 (midnight).
fn time_select(name: &str, selected: Option<u16>, end: bool, ctx: &Ctx) -> Markup {
    let minutes: Vec<u16> = if end {
        (1..=144).map(|i| i * 10).collect()
    } else {
        (0..144).map(|i| i * 10).collect()
    };
    // A window's end at midnight is stored as 00:00 and offered as 24:00.
    let selected = selected.map(|m| if end && m == 0 { 1440 } else { m });
    html! {
        select name=(name) {
            option value="" selected[selected.is_none()] { (ctx.t("ops.maint_no_window")) }
            @for m in minutes {
                @let text = if m == 1440 { "24:00".to_string() } else { hhmm(m) };
                option value=(text) selected[selected == Some(m)] { (text) }
            }
        }
    }
}

/// One line on maintenance as it stands: off, in force (since, until) or waiting for its
/// next window. The dashboard shows it too.
pub(crate) fn state_summary(ctx: &Ctx, state: &MaintState) -> Markup {
    let at = |z: &jiff::Zoned| z.strftime("%Y-%m-%d %H:%M").to_string();
    match state.status() {
        Status::Off => html! { p.maint-state.ok { (ctx.t("ops.maint_off")) } },
        Status::Active {
            message,
            since,
            until,
        } => {
            let since = since.as_ref().map(at).unwrap_or_else(|| "—".into());
            let until = until
                .as_ref()
                .map(at)
                .unwrap_or_else(|| ctx.t("common.maintenance_until_lifted").into());
            html! {
                p.maint-state.warn { (ctx.tf("ops.maint_active", &[("since", &since), ("until", &until)])) }
                p.maint-message { (message) }
            }
        }
        Status::Waiting {
            next_start,
            next_end,
        } => html! {
            p.maint-state { (ctx.tf("ops.maint_waiting", &[("start", &at(&next_start)), ("end", &at(&next_end))])) }
        },
    }
}

/// The screen users would see: the message with the start and end of the window in force
/// now, or of the next one.
fn preview_screen(ctx: &Ctx, state: &MaintState) -> Markup {
    let at = |z: &jiff::Zoned| z.strftime("%Y-%m-%d %H:%M").to_string();
    let message = state
        .maintenance
        .as_ref()
        .map_or(gate::maint::DEFAULT_MESSAGE, |m| m.message());
    let (note, since, until) = match state.status() {
        Status::Active { since, until, .. } => (
            ctx.t("ops.maint_preview_now"),
            since.as_ref().map(at).unwrap_or_else(|| "—".into()),
            until
                .as_ref()
                .map(at)
                .unwrap_or_else(|| ctx.t("common.maintenance_until_lifted").into()),
        ),
        Status::Waiting {
            next_start,
            next_end,
        } => (
            ctx.t("ops.maint_preview_next"),
            at(&next_start),
            at(&next_end),
        ),
        Status::Off => (ctx.t("ops.maint_off"), String::new(), String::new()),
    };
    html! {
        p.notice { (note) }
        div.maintenance.preview {
            h3 { (ctx.t("common.maintenance")) }
            p.message { (message) }
            p { (ctx.t("common.maintenance_since")) " " span.start { (since) } }
            p { (ctx.t("common.maintenance_until")) " " span.end { (until) } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn rows_become_windows_and_empty_rows_are_left_out() {
        let r = Request::from_fields(&fields(&[
            ("csrf", "x"),
            ("message", " Disk swap "),
            ("start", "22:00"),
            ("end", "02:00"),
            ("start", ""),
            ("end", ""),
            ("start", "09:00"),
            ("end", ""),
        ]));
        assert_eq!(r.message, "Disk swap");
        // The half-filled row is passed on for ops to refuse with its reason.
        assert_eq!(r.windows, ["22:00-02:00", "09:00-"]);
        assert!(
            Request::from_fields(&fields(&[("csrf", "x")]))
                .windows
                .is_empty()
        );
    }
}
