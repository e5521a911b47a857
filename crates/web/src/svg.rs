//! Charts drawn on the server as SVG (no chart library in the browser): a gauge for a share
//! of a whole, a line chart for series over time, and bars for a ranking.

use maud::{Markup, html};

/// "1.5 GiB".
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A horizontal gauge: `used` of `total`, with a warning colour past `warn` (a share, 0–1).
pub fn gauge(used: u64, total: u64, warn: f64, label: &str) -> Markup {
    let share = if total == 0 {
        0.0
    } else {
        (used as f64 / total as f64).clamp(0.0, 1.0)
    };
    let width = 300.0;
    let class = if share >= warn {
        "gauge-fill warn"
    } else {
        "gauge-fill"
    };
    html! {
        svg.gauge width="320" height="34" viewBox="0 0 320 34" role="img" aria-label=(label) {
            rect.gauge-track x="0" y="4" width=(width) height="18" rx="3" {}
            rect class=(class) x="0" y="4" width=(format!("{:.1}", width * share)) height="18" rx="3" {}
            text x="4" y="32" { (label) }
        }
    }
}

/// One line of a chart.
pub struct Series<'a> {
    pub name: &'a str,
    /// CSS class of the line (its colour comes from the stylesheet).
    pub class: &'a str,
    /// (x, y): x is any increasing number (a Unix time, a day), y the value.
    pub points: Vec<(f64, f64)>,
}

/// A line chart of several series on one scale, with a legend; `x_labels` are drawn under
/// the first and last points (dates, usually).
pub fn line_chart(title: &str, series: &[Series], x_labels: (&str, &str)) -> Markup {
    let (w, h, pad) = (640.0_f64, 220.0_f64, 36.0_f64);
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (x_min, x_max) = xs.fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let y_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let x_span = if x_max > x_min { x_max - x_min } else { 1.0 };
    let at = |(x, y): (f64, f64)| {
        (
            pad + (x - x_min) / x_span * (w - 2.0 * pad),
            h - pad - y / y_max * (h - 2.0 * pad),
        )
    };
    let path = |points: &[(f64, f64)]| {
        points
            .iter()
            .map(|p| {
                let (x, y) = at(*p);
                format!("{x:.1},{y:.1}")
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    html! {
        figure.chart {
            svg width="640" height="240" viewBox="0 0 640 240" role="img" aria-label=(title) {
                line.axis x1=(pad) y1=(h - pad) x2=(w - pad) y2=(h - pad) {}
                line.axis x1=(pad) y1=(pad) x2=(pad) y2=(h - pad) {}
                text x="2" y=(pad) { (format_count(y_max)) }
                text x="2" y=(h - pad) { "0" }
                text x=(pad) y=(h - 8.0) { (x_labels.0) }
                text x=(w - pad) y=(h - 8.0) text-anchor="end" { (x_labels.1) }
                @for s in series {
                    @if s.points.len() == 1 {
                        @let (x, y) = at(s.points[0]);
                        circle class=(s.class) cx=(format!("{x:.1}")) cy=(format!("{y:.1}")) r="3" {}
                    } @else {
                        polyline class=(s.class) fill="none" points=(path(&s.points)) {}
                    }
                }
            }
            figcaption {
                (title) ": "
                @for s in series {
                    span class={"legend " (s.class)} { (s.name) } " "
                }
            }
        }
    }
}

/// Horizontal bars of a ranking: (label, value), largest first as given.
pub fn bars(title: &str, rows: &[(String, u64)], bytes: bool) -> Markup {
    let max = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1);
    let height = 24 * rows.len().max(1) + 8;
    html! {
        figure.chart {
            svg width="640" height=(height) viewBox={"0 0 640 " (height)} role="img" aria-label=(title) {
                @for (i, (label, value)) in rows.iter().enumerate() {
                    @let y = 4 + 24 * i;
                    rect.bar x="220" y=(y) width=(format!("{:.1}", 300.0 * *value as f64 / max as f64)) height="18" {}
                    text x="0" y=(y + 14) { (label) }
                    text x="528" y=(y + 14) { (if bytes { human_bytes(*value) } else { value.to_string() }) }
                }
            }
            figcaption { (title) }
        }
    }
}

fn format_count(n: f64) -> String {
    if n >= 1e6 {
        format!("{:.1}M", n / 1e6)
    } else if n >= 1e4 {
        format!("{:.0}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_as_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }

    #[test]
    fn a_chart_escapes_its_labels_and_scales_to_the_largest_value() {
        let chart = line_chart(
            "<script>",
            &[Series {
                name: "sent",
                class: "s1",
                points: vec![(0.0, 0.0), (10.0, 5.0)],
            }],
            ("a", "b"),
        )
        .into_string();
        assert!(!chart.contains("<script>"), "{chart}");
        assert!(chart.contains("&lt;script&gt;"));
        // The last point is at the top of the plot area, the first at its bottom.
        assert!(
            chart.contains("points=\"36.0,184.0 604.0,36.0\""),
            "{chart}"
        );
    }

    #[test]
    fn a_gauge_never_passes_its_track() {
        let g = gauge(200, 100, 0.9, "disk").into_string();
        assert!(g.contains("width=\"300.0\"") && g.contains("warn"), "{g}");
    }
}
