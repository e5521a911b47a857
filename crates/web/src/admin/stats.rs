//! Statistics: the accounts generating the most activity over the last hour's ten-minute
//! samples (by bytes written, messages or commands, as `tegami stats usage --by`), every
//! account's daily totals over 30, 90 or 365 days, and the store's size per day with the
//! forecast of `tegami stats forecast`. The figures are `ops::stats`'; the charts are SVG
//! drawn here.

use std::sync::Arc;

use axum::Router;
use axum::extract::Query;
use axum::response::Response;
use axum::routing::get;
use maud::{Markup, html};
use ops::stats::{DailyTotals, Forecast, RankBy, Ranked, UsageRequest};
use serde::Deserialize;

use crate::session::Admin;
use crate::svg::{self, Series};
use crate::{BASE, Console, Ctx};

pub fn routes() -> Router<Arc<Console>> {
    Router::new().route(&format!("{BASE}/admin/stats"), get(show))
}

/// How many accounts the ranking lists.
const TOP: usize = 10;
/// The periods offered for the daily figures.
const PERIODS: [u32; 3] = [30, 90, 365];

#[derive(Deserialize, Default)]
struct StatsQuery {
    by: Option<String>,
    days: Option<u32>,
}

/// The ranking's names in the query, and their catalogue texts.
const RANKINGS: [(&str, RankBy, &str, &str); 3] = [
    (
        "write_bytes",
        RankBy::WriteBytes,
        "stats.by_write_bytes",
        "stats.write_bytes",
    ),
    (
        "messages",
        RankBy::Messages,
        "stats.by_messages",
        "stats.messages",
    ),
    (
        "commands",
        RankBy::Commands,
        "stats.by_commands",
        "stats.commands",
    ),
];

async fn show(Admin(ctx): Admin, Query(q): Query<StatsQuery>) -> Response {
    let (by_name, by, by_text, figure) = RANKINGS
        .iter()
        .copied()
        .find(|(name, ..)| Some(*name) == q.by.as_deref())
        .unwrap_or(RANKINGS[0]);
    let days = q.days.unwrap_or(PERIODS[0]);
    let figures = ctx
        .run(move |ops| {
            let usage = ops.stats_usage(UsageRequest { top: TOP, by })?;
            let starts = ops::stats::sample_starts(ops.clock().unix());
            let daily = ops.stats_daily(days)?;
            let growth = ops.stats_growth(days)?;
            // The forecast needs the data volume's free space; a volume that cannot be read
            // leaves the rest of the page standing.
            let forecast = ops.stats_forecast().map_err(|e| e.one_line());
            Ok((usage, starts, daily, growth, forecast))
        })
        .await;
    let (usage, starts, daily, growth, forecast) = match figures {
        Ok(figures) => figures,
        Err(e) => return ctx.error(&e),
    };
    let body = html! {
        h2 { (ctx.t("stats.top_title")) }
        p.choices {
            @for (name, _, text, _) in RANKINGS {
                @if name == by_name {
                    strong { (ctx.t(text)) }
                } @else {
                    a href={(BASE) "/admin/stats?by=" (name) "&days=" (days)} { (ctx.t(text)) }
                }
                " "
            }
        }
        (ranking(&ctx, &usage.accounts, &starts, by, (by_text, figure)))
        h2 { (ctx.tf("stats.daily_title", &[("days", &days)])) }
        p.choices {
            @for period in PERIODS {
                @if period == days {
                    strong { (ctx.tf("stats.days", &[("days", &period)])) }
                } @else {
                    a href={(BASE) "/admin/stats?by=" (by_name) "&days=" (period)} { (ctx.tf("stats.days", &[("days", &period)])) }
                }
                " "
            }
        }
        (daily_figures(&ctx, &daily))
        h2 { (ctx.t("stats.growth_title")) }
        (growth_chart(&ctx, &growth))
        h2 { (ctx.t("stats.forecast_title")) }
        @match &forecast {
            Ok(f) => (forecast_table(&ctx, f)),
            Err(e) => p.error { (e) },
        }
    };
    ctx.page(ctx.t("admin.menu_stats"), body)
}

/// The busiest accounts: bars of the ranked figure, and a table with every figure and the
/// ranked one sample by sample.
fn ranking(
    ctx: &Ctx,
    ranked: &[Ranked],
    starts: &[i64],
    by: RankBy,
    (by_text, figure): (&'static str, &'static str),
) -> Markup {
    if ranked.is_empty() {
        return html! { p.empty { (ctx.t("stats.no_activity")) } };
    }
    let bars: Vec<(String, u64)> = ranked
        .iter()
        .map(|r| (r.account.clone(), by.key(&r.total)))
        .collect();
    let bytes = by == RankBy::WriteBytes;
    let shown = |n: u64| {
        if bytes {
            svg::human_bytes(n)
        } else {
            n.to_string()
        }
    };
    html! {
        (svg::bars(ctx.t(by_text), &bars, bytes))
        table #ranking {
            thead { tr {
                th.num { "#" }
                th { (ctx.t("stats.account")) }
                th.num { (ctx.t("stats.write_bytes")) }
                th.num { (ctx.t("stats.messages")) }
                th.num { (ctx.t("stats.commands")) }
                @for start in starts {
                    th.num.sample { (clock_time(ctx, *start)) }
                }
            } }
            tbody {
                @for (n, r) in ranked.iter().enumerate() {
                    tr {
                        td.num { (n + 1) }
                        td.account { (r.account) }
                        td.num.write-bytes data-value=(r.total.write_bytes) { (svg::human_bytes(r.total.write_bytes)) }
                        td.num.messages { (RankBy::Messages.key(&r.total)) }
                        td.num.commands { (r.total.commands) }
                        @for start in starts {
                            td.num.sample {
                                (r.samples.iter().find(|s| s.start == *start).map(|s| shown(by.key(&s.usage))).unwrap_or_default())
                            }
                        }
                    }
                }
            }
        }
        p.hint { (ctx.tf("stats.samples_hint", &[("figure", &ctx.t(figure))])) }
    }
}

fn daily_figures(ctx: &Ctx, daily: &DailyTotals) -> Markup {
    let labels = (
        daily
            .days
            .first()
            .map(|d| date(d.start))
            .unwrap_or_default(),
        daily.days.last().map(|d| date(d.start)).unwrap_or_default(),
    );
    let labels = (labels.0.as_str(), labels.1.as_str());
    let series = |name, class, f: fn(&store::Usage) -> u64| Series {
        name,
        class,
        points: daily
            .days
            .iter()
            .map(|d| (d.start as f64, f(&d.usage) as f64))
            .collect(),
    };
    let t = &daily.total;
    html! {
        (svg::line_chart(ctx.t("stats.chart_messages"), &[
            series(ctx.t("stats.messages_in"), "s1", |u| u.messages_in),
            series(ctx.t("stats.messages_out"), "s3", |u| u.messages_out),
        ], labels))
        (svg::line_chart(ctx.t("stats.chart_bytes"), &[
            series(ctx.t("stats.write_bytes"), "s2", |u| u.write_bytes),
            series(ctx.t("stats.bytes_in"), "s1", |u| u.bytes_in),
            series(ctx.t("stats.bytes_out"), "s3", |u| u.bytes_out),
        ], labels))
        (svg::line_chart(ctx.t("stats.chart_commands"), &[
            series(ctx.t("stats.commands"), "s5", |u| u.commands),
        ], labels))
        table #daily-totals {
            thead { tr {
                th.num { (ctx.t("stats.messages_in")) }
                th.num { (ctx.t("stats.bytes_in")) }
                th.num { (ctx.t("stats.messages_out")) }
                th.num { (ctx.t("stats.bytes_out")) }
                th.num { (ctx.t("stats.write_bytes")) }
                th.num { (ctx.t("stats.commands")) }
            } }
            tbody { tr {
                td.num.messages-in { (t.messages_in) }
                td.num { (svg::human_bytes(t.bytes_in)) }
                td.num { (t.messages_out) }
                td.num { (svg::human_bytes(t.bytes_out)) }
                td.num { (svg::human_bytes(t.write_bytes)) }
                td.num.commands { (t.commands) }
            } }
        }
    }
}

fn growth_chart(ctx: &Ctx, growth: &[store::GrowthRow]) -> Markup {
    if growth.is_empty() {
        return html! { p.empty { (ctx.t("stats.no_growth")) } };
    }
    let day = |g: &store::GrowthRow| g.day * 86_400;
    let first = growth.first().map(|g| date(day(g))).unwrap_or_default();
    let last = growth.last().map(|g| date(day(g))).unwrap_or_default();
    let size = growth.last().map_or(0, |g| g.database_bytes + g.blob_bytes);
    html! {
        (svg::line_chart(ctx.t("stats.chart_growth"), &[
            Series {
                name: ctx.t("stats.store_size"),
                class: "s1",
                points: growth.iter().map(|g| (g.day as f64, (g.database_bytes + g.blob_bytes) as f64)).collect(),
            },
            Series {
                name: ctx.t("stats.blob_bytes"),
                class: "s4",
                points: growth.iter().map(|g| (g.day as f64, g.blob_bytes as f64)).collect(),
            },
        ], (&first, &last)))
        p #store-size { (ctx.tf("stats.store_size_now", &[("size", &svg::human_bytes(size))])) }
    }
}

fn forecast_table(ctx: &Ctx, f: &Forecast) -> Markup {
    html! {
        p { (ctx.tf("stats.free_now", &[("free", &svg::human_bytes(f.free))])) }
        @if f.rates.is_empty() {
            p.empty { (ctx.t("stats.no_rate")) }
        }
        @for (span, rate) in &f.rates {
            p.rate { (ctx.tf("stats.rate", &[("days", span), ("rate", &svg::human_bytes(rate.max(0.0) as u64))])) }
        }
        table #forecast {
            thead { tr {
                th { (ctx.t("stats.threshold")) }
                th.num { (ctx.t("stats.level")) }
                th { (ctx.t("stats.crossed")) }
            } }
            tbody {
                @for c in &f.crossings {
                    tr {
                        td { (c.name) }
                        td.num { (svg::human_bytes(c.level)) }
                        td {
                            @match c.days {
                                Some(d) if d <= 0.0 => span.error { (ctx.t("stats.already")) },
                                Some(d) => {
                                    (ctx.tf("stats.in_days", &[("days", &format!("{d:.1}"))]))
                                    @if let Some(on) = c.on { " (" (ctx.time(on.as_second())) ")" }
                                },
                                None => span.ok { (ctx.t("stats.never")) },
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A day's date (the days of the statistics are UTC days).
fn date(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// "HH:MM" of a sample's start, in the server's time zone.
fn clock_time(ctx: &Ctx, unix: i64) -> String {
    let full = ctx.time(unix);
    full.split_once(' ')
        .map_or(full.clone(), |(_, time)| time.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_utc_dates() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(20_000 * 86_400 + 86_399), "2024-10-04");
    }
}
