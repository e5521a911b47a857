//! tegami's HTTP face: `/metrics` in the Prometheus text format, `/health`, and the
//! maintenance page every other path shows while maintenance is in force (503 with
//! Retry-After, as every protocol of tegami refuses politely during maintenance).
//!
//! The crate knows nothing of the store or the gate: the binary hands it a [`Source`] that
//! answers three questions, so this crate holds only HTTP and the text formats.
//! [`autoconfig`] holds the routes mail clients configure themselves from.

use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

pub mod autoconfig;

/// What the HTTP face asks of the server.
pub trait Source: Send + Sync + 'static {
    /// Maintenance in force now, if any. Called on every request: must be cheap.
    fn maintenance(&self) -> Option<Maintenance>;
    /// What is wrong now; empty when healthy. May block briefly (runs on a blocking thread).
    fn problems(&self) -> Vec<String>;
    /// The metrics. May block (file system and store queries; runs on a blocking thread).
    fn metrics(&self) -> Vec<Family>;
}

#[derive(Debug, Clone, Default)]
pub struct Maintenance {
    pub message: String,
    /// Local times, "YYYY-MM-DD HH:MM", when known.
    pub since: Option<String>,
    pub until: Option<String>,
    pub retry_after_secs: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// One metric family: a name, its help text, and its samples by label set.
#[derive(Debug, Clone)]
pub struct Family {
    pub name: String,
    pub help: String,
    pub kind: Kind,
    pub samples: Vec<Sample>,
}

#[derive(Debug, Clone)]
pub struct Sample {
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Family {
    pub fn gauge(name: &str, help: &str, value: f64) -> Family {
        Family::new(name, help, Kind::Gauge).with(&[], value)
    }

    pub fn counter(name: &str, help: &str, value: f64) -> Family {
        Family::new(name, help, Kind::Counter).with(&[], value)
    }

    pub fn new(name: &str, help: &str, kind: Kind) -> Family {
        Family {
            name: name.into(),
            help: help.into(),
            kind,
            samples: Vec::new(),
        }
    }

    pub fn with(mut self, labels: &[(&str, &str)], value: f64) -> Family {
        self.samples.push(Sample {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
        });
        self
    }
}

/// Renders families in the Prometheus text exposition format (version 0.0.4). Counters
/// carry the `_total` suffix on their samples, as OpenMetrics-aware parsers expect.
pub fn render(families: &[Family]) -> String {
    let mut out = String::new();
    for family in families {
        let (kind, suffix) = match family.kind {
            Kind::Counter => ("counter", "_total"),
            Kind::Gauge => ("gauge", ""),
        };
        let _ = writeln!(out, "# HELP {} {}", family.name, escape_help(&family.help));
        let _ = writeln!(out, "# TYPE {} {kind}", family.name);
        for sample in &family.samples {
            out.push_str(&family.name);
            out.push_str(suffix);
            if !sample.labels.is_empty() {
                out.push('{');
                for (i, (key, value)) in sample.labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{key}=\"{}\"", escape_label(value));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {}", number(sample.value));
        }
    }
    out
}

fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('"', "\\\"")
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The maintenance page: the operator's message, when it began and when it ends.
pub fn maintenance_page(m: &Maintenance) -> String {
    let mut page = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Maintenance</title></head>\n<body>\n<h1>Under maintenance</h1>\n",
    );
    let _ = writeln!(page, "<p class=\"message\">{}</p>", escape_html(&m.message));
    if let Some(since) = &m.since {
        let _ = writeln!(
            page,
            "<p>Since: <span class=\"start\">{}</span></p>",
            escape_html(since)
        );
    }
    match &m.until {
        Some(until) => {
            let _ = writeln!(
                page,
                "<p>Until: <span class=\"end\">{}</span></p>",
                escape_html(until)
            );
        }
        None => page.push_str("<p>Until: the operator lifts it.</p>\n"),
    }
    page.push_str("</body></html>\n");
    page
}

/// How long a client is asked to wait when maintenance has no known end.
const DEFAULT_RETRY_AFTER: u64 = 600;

/// `/metrics`, `/health`, the maintenance fallback, and `extra`: routes of other parts of
/// the server (the newsletter's subscribe, unsubscribe and click pages, its `/api`).
pub fn router(source: Arc<dyn Source>, extra: Router) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .fallback(other)
        .with_state(source)
        .merge(extra)
        .layer(axum::middleware::from_fn(api_from_loopback_only))
}

/// Serves `app` (made by [`router`]) on plain HTTP until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Serves one connection that is already TLS (the HTTPS listener's, accepted with its
/// limits by `net::serve`) with `app`: HTTP/1.1 with keep-alive, a deadline on each
/// request's header, and a graceful end (the request under way is answered, then the
/// connection closes) once `shutdown` completes.
pub async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    app: Router,
    shutdown: impl Future<Output = ()>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let app = app.layer(axum::Extension(axum::extract::ConnectInfo(peer)));
    let service = hyper_util::service::TowerToHyperService::new(app);
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::pin!(shutdown);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "HTTPS connection ended with an error");
            }
        }
        () = &mut shutdown => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// How long a client may take to send a request's header (slowloris).
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// `/api/...` answers administrators' tools and lists subscribers' addresses: only peers
/// on loopback may use it, even when the listener is public for unsubscribe and click
/// links. (A reverse proxy on the same host must keep its own access rules for it.)
async fn api_from_loopback_only(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let api = request.uri().path().starts_with("/api/");
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if api && !peer.is_some_and(|ip| ip.is_loopback()) {
        return (
            StatusCode::FORBIDDEN,
            "the /api endpoints answer only clients on this host\n",
        )
            .into_response();
    }
    next.run(request).await
}

async fn blocking<T: Send + 'static>(
    source: &Arc<dyn Source>,
    work: impl FnOnce(&dyn Source) -> T + Send + 'static,
) -> Option<T> {
    let source = source.clone();
    tokio::task::spawn_blocking(move || work(source.as_ref()))
        .await
        .ok()
}

async fn metrics(State(source): State<Arc<dyn Source>>) -> Response {
    match blocking(&source, |s| render(&s.metrics())).await {
        Some(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        None => (StatusCode::INTERNAL_SERVER_ERROR, "metrics failed\n").into_response(),
    }
}

async fn health(State(source): State<Arc<dyn Source>>) -> Response {
    let mut problems = blocking(&source, |s| s.problems())
        .await
        .unwrap_or_else(|| vec!["the health check itself failed".into()]);
    if let Some(m) = source.maintenance() {
        problems.insert(
            0,
            format!(
                "maintenance: {}{}",
                m.message,
                m.until.map(|u| format!(" (until {u})")).unwrap_or_default()
            ),
        );
    }
    let text_plain = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    if problems.is_empty() {
        (StatusCode::OK, text_plain, "ok\n").into_response()
    } else {
        let body: String = problems.iter().map(|p| format!("{p}\n")).collect();
        (StatusCode::SERVICE_UNAVAILABLE, text_plain, body).into_response()
    }
}

async fn other(State(source): State<Arc<dyn Source>>, uri: Uri) -> Response {
    if let Some(m) = source.maintenance() {
        let retry = m.retry_after_secs.unwrap_or(DEFAULT_RETRY_AFTER).max(1);
        let mut response = (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            maintenance_page(&m),
        )
            .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry));
        return response;
    }
    if uri.path() == "/" {
        return (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>tegami</title></head>\n<body><h1>tegami</h1><p>Running. See <a href=\"/metrics\">/metrics</a> and <a href=\"/health\">/health</a>.</p></body></html>\n",
        )
            .into_response();
    }
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_text_format() {
        let families = [
            Family::counter("tegami_deliveries", "Messages stored.", 3.0),
            Family::new(
                "tegami_volume_free_bytes",
                "Free \"space\".\nPer volume.",
                Kind::Gauge,
            )
            .with(&[("volume", "da\"ta\\")], 1.5),
        ];
        assert_eq!(
            render(&families),
            "# HELP tegami_deliveries Messages stored.\n\
             # TYPE tegami_deliveries counter\n\
             tegami_deliveries_total 3\n\
             # HELP tegami_volume_free_bytes Free \"space\".\\nPer volume.\n\
             # TYPE tegami_volume_free_bytes gauge\n\
             tegami_volume_free_bytes{volume=\"da\\\"ta\\\\\"} 1.5\n"
        );
    }

    #[test]
    fn the_maintenance_page_escapes_the_message() {
        let page = maintenance_page(&Maintenance {
            message: "<b>disk swap</b> & more".into(),
            since: Some("2026-11-23 03:00".into()),
            until: Some("2026-11-23 04:00".into()),
            retry_after_secs: Some(60),
        });
        assert!(page.contains("&lt;b&gt;disk swap&lt;/b&gt; &amp; more"));
        assert!(page.contains("2026-11-23 03:00") && page.contains("2026-11-23 04:00"));
    }
}
