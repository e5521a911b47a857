//! What every page shares: the request's context ([`Ctx`]), the layout with its navigation
//! and language switch, the security headers, the embedded assets, and the maintenance
//! screen users see.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, html};
use ops::Ops;
use serde::Deserialize;

use crate::i18n::Lang;
use crate::session::{LANG_COOKIE, Session};
use crate::{BASE, Console};

const CSS: &str = include_str!("../assets/console.css");
const JS: &str = include_str!("../assets/console.js");

/// Content-Security-Policy of every console page: our own script and style only, no
/// plugins, no framing by anyone (clickjacking), forms post only to us. A message's HTML is
/// shown under a stricter policy of its own (the user's message view).
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; frame-src 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route(&format!("{BASE}/static/console.css"), get(css))
        .route(&format!("{BASE}/static/console.js"), get(js))
        .route(&format!("{BASE}/lang"), get(switch_language))
}

/// One request as a page sees it.
pub struct Ctx {
    pub console: Arc<Console>,
    pub lang: Lang,
    /// The complete session, when signed in (with a pending TOTP code it is still here).
    pub session: Option<Session>,
    /// The requested path and query, for links back here.
    pub path: String,
    pub peer: Option<SocketAddr>,
    /// The request came over HTTPS.
    pub https: bool,
}

impl Ctx {
    pub fn t(&self, key: &'static str) -> &'static str {
        self.lang.t(key)
    }

    pub fn tf(&self, key: &'static str, values: &[(&str, &dyn std::fmt::Display)]) -> String {
        self.lang.tf(key, values)
    }

    pub fn ops(&self) -> &Arc<Ops> {
        &self.console.ops
    }

    /// Cookies get `Secure`: over HTTPS, or behind a TLS proxy the config names.
    pub fn secure_cookies(&self) -> bool {
        self.https || self.console.settings.secure_cookies
    }

    pub fn is_admin(&self) -> bool {
        self.session
            .as_ref()
            .is_some_and(|s| s.admin && !s.pending_totp)
    }

    /// The hidden field every form carries.
    pub fn csrf_field(&self) -> Markup {
        let token = self.session.as_ref().map_or("", |s| s.csrf.as_str());
        html! { input type="hidden" name="csrf" value=(token); }
    }

    /// Runs an operation on the blocking pool (operations read files and the store).
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Ops) -> ops::Result<T> + Send + 'static,
    ) -> ops::Result<T> {
        let ops = self.console.ops.clone();
        tokio::task::spawn_blocking(move || work(&ops))
            .await
            .unwrap_or_else(|e| Err(ops::Error::failed(format!("the operation stopped: {e}"))))
    }

    /// A timestamp (Unix seconds) in the server's time zone, "YYYY-MM-DD HH:MM".
    pub fn time(&self, unix: i64) -> String {
        jiff::Timestamp::from_second(unix)
            .map(|t| {
                t.to_zoned(self.console.ops.clock().time_zone().clone())
                    .strftime("%Y-%m-%d %H:%M")
                    .to_string()
            })
            .unwrap_or_else(|_| unix.to_string())
    }

    /// The page: layout, navigation for who is signed in, and `body`.
    pub fn page(&self, title: &str, body: Markup) -> Response {
        self.page_with(StatusCode::OK, title, body)
    }

    pub fn page_with(&self, status: StatusCode, title: &str, body: Markup) -> Response {
        let markup = html! {
            (DOCTYPE)
            html lang=(self.lang.code()) {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · tegami" }
                    link rel="stylesheet" href={(BASE) "/static/console.css"};
                    script src={(BASE) "/static/console.js"} defer {}
                }
                body {
                    header.top {
                        a.brand href={(BASE) "/"} { "tegami" }
                        (self.navigation())
                        div.side {
                            (self.language_switch())
                            @if let Some(s) = &self.session {
                                span.who { (self.tf("common.signed_in_as", &[("address", &s.address)])) }
                                form.inline method="post" action={(BASE) "/logout"} {
                                    (self.csrf_field())
                                    button type="submit" { (self.t("common.sign_out")) }
                                }
                            }
                        }
                    }
                    main {
                        h1 { (title) }
                        (body)
                    }
                }
            }
        };
        (status, markup).into_response()
    }

    fn navigation(&self) -> Markup {
        let Some(session) = &self.session else {
            return html! {};
        };
        if session.pending_totp {
            return html! {};
        }
        html! {
            nav {
                @if self.is_admin() {
                    @for (href, key) in crate::admin::MENU {
                        a href={(BASE) (href)} { (self.t(key)) }
                    }
                }
                @for (href, key) in crate::user::MENU {
                    a href={(BASE) (href)} { (self.t(key)) }
                }
            }
        }
    }

    fn language_switch(&self) -> Markup {
        html! {
            span.lang {
                @for lang in Lang::ALL {
                    @if lang == self.lang {
                        strong { (lang.own_name()) }
                    } @else {
                        a href={(BASE) "/lang?to=" (lang.code()) "&back=" (encode(&self.path))} hreflang=(lang.code()) { (lang.own_name()) }
                    }
                    " "
                }
            }
        }
    }

    /// A page holding one message (an error, a refusal, a confirmation).
    pub fn message(&self, status: StatusCode, title: &str, text: &str) -> Response {
        self.page_with(status, title, html! { p.message { (text) } })
    }

    /// An operation's error as a page, with the status its kind calls for.
    pub fn error(&self, error: &ops::Error) -> Response {
        let status = match error {
            ops::Error::Invalid(_) => StatusCode::BAD_REQUEST,
            ops::Error::NotFound(_) => StatusCode::NOT_FOUND,
            ops::Error::Conflict(_) => StatusCode::CONFLICT,
            ops::Error::Store(store::StoreError::NotFound { .. }) => StatusCode::NOT_FOUND,
            ops::Error::Store(store::StoreError::AlreadyExists { .. }) => StatusCode::CONFLICT,
            ops::Error::Store(store::StoreError::Invalid(_)) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        self.page_with(
            status,
            self.t("common.error"),
            html! { p.error { (error.one_line()) } p { a href="javascript:history.back()" { (self.t("common.back")) } } },
        )
    }

    /// To the sign-in page, coming back here after.
    pub fn to_sign_in(&self) -> Response {
        Redirect::to(&format!("{BASE}/login?next={}", encode(&self.path))).into_response()
    }

    /// The maintenance screen, when maintenance is in force now (for users who are not
    /// administrators): the operator's message, since when and until when.
    pub async fn maintenance_screen(&self) -> Option<Response> {
        let state = self
            .run(|ops| ops::maint::status(ops.data(), ops.clock()))
            .await
            .ok()?;
        let gate::Status::Active {
            message,
            since,
            until,
        } = state.status()
        else {
            return None;
        };
        let at = |z: &jiff::Zoned| z.strftime("%Y-%m-%d %H:%M").to_string();
        let body = html! {
            div.maintenance {
                p.message { (message) }
                p { (self.t("common.maintenance_since")) " " span.start { (since.as_ref().map(at).unwrap_or_else(|| "—".into())) } }
                p { (self.t("common.maintenance_until")) " "
                    span.end { (until.as_ref().map(at).unwrap_or_else(|| self.t("common.maintenance_until_lifted").into())) } }
            }
        };
        let mut response = self.page_with(
            StatusCode::SERVICE_UNAVAILABLE,
            self.t("common.maintenance"),
            body,
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("600"));
        Some(response)
    }
}

/// Percent-encodes a value for a query string.
pub fn encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Security headers on every console answer: CSP with frame-ancestors, no sniffing, no
/// referrer leaving the site, and no caching of pages that show mail or settings.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

#[derive(Deserialize)]
struct Switch {
    to: String,
    back: Option<String>,
}

/// The language switch: remembers the choice in a cookie and goes back to the page. Only a
/// path of the console is a place to go back to (no open redirect).
async fn switch_language(Query(q): Query<Switch>) -> Response {
    let lang = Lang::from_code(&q.to).unwrap_or(Lang::En);
    let back = q
        .back
        .filter(|b| b.starts_with(BASE) && !b.starts_with("//") && !b.contains('\\'))
        .unwrap_or_else(|| format!("{BASE}/"));
    let mut response = Redirect::to(&back).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!(
        "{LANG_COOKIE}={}; Path={BASE}; Max-Age=31536000; SameSite=Lax",
        lang.code()
    )) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}
