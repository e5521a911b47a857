//! Sessions and the extractors every handler starts with.
//!
//! A session is a random 256-bit token in an HttpOnly, SameSite=Strict cookie (Secure when
//! the console is served over TLS), held in memory with its own CSRF token; it ends when
//! unused for [`Settings::idle`](crate::Settings), at [`Settings::lifetime`](crate::Settings)
//! after sign-in, at sign-out, and when the server restarts. Every request re-reads the
//! account, so an administrator demoted or an account removed loses the console at once.
//!
//! Extractors: [`Visitor`] (anyone), [`User`] (signed in; during maintenance a user who is
//! not an administrator gets the maintenance screen), [`Admin`] (signed in and an
//! administrator, else 403), and [`Posted`] (a form whose CSRF token matches the session).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use serde::de::DeserializeOwned;
use store::AccountId;

use crate::i18n::Lang;
use crate::page::Ctx;
use crate::{BASE, Console};

/// The session cookie's name.
pub const COOKIE: &str = "tegami_session";
/// The language cookie's name (set by the switch on every page).
pub const LANG_COOKIE: &str = "tegami_lang";
/// Sessions held at most; the oldest goes first when a new one would pass it.
const MAX_SESSIONS: usize = 10_000;
/// The largest form body a page posts (a CSV of subscribers is uploaded as a form too).
pub const MAX_FORM_BYTES: usize = 16 * 1024 * 1024;

/// One signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    pub account: AccountId,
    pub address: String,
    pub admin: bool,
    pub csrf: String,
    pub created: Instant,
    pub last_seen: Instant,
    /// Signed in with the password but still owes the TOTP code.
    pub pending_totp: bool,
}

#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

/// 32 random bytes, URL-safe base64: a session token or a CSRF token.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a session for an account that just proved its password.
    pub fn start(
        &self,
        account: AccountId,
        address: &str,
        admin: bool,
        pending_totp: bool,
    ) -> Session {
        let now = Instant::now();
        let session = Session {
            token: random_token(),
            account,
            address: address.to_string(),
            admin,
            csrf: random_token(),
            created: now,
            last_seen: now,
            pending_totp,
        };
        let mut map = self.lock();
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .values()
                .min_by_key(|s| s.last_seen)
                .map(|s| s.token.clone())
        {
            map.remove(&oldest);
        }
        map.insert(session.token.clone(), session.clone());
        session
    }

    /// The live session behind `token`, touched; expired ones are dropped.
    pub fn get(&self, token: &str, settings: &crate::Settings) -> Option<Session> {
        let mut map = self.lock();
        let now = Instant::now();
        let session = map.get_mut(token)?;
        if now.duration_since(session.last_seen) > settings.idle
            || now.duration_since(session.created) > settings.lifetime
        {
            map.remove(token);
            return None;
        }
        session.last_seen = now;
        Some(session.clone())
    }

    /// The TOTP code was right: the session is complete.
    pub fn complete(&self, token: &str) {
        if let Some(s) = self.lock().get_mut(token) {
            s.pending_totp = false;
        }
    }

    pub fn end(&self, token: &str) {
        self.lock().remove(token);
    }

    /// Ends every session of an account but `keep` (after a password change).
    pub fn end_others(&self, account: AccountId, keep: &str) {
        self.lock().retain(|t, s| s.account != account || t == keep);
    }
}

/// The value of a cookie in the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The `Set-Cookie` value of the session cookie (empty value and Max-Age=0 to clear it).
pub fn session_cookie(token: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    let max_age = if token.is_empty() { "; Max-Age=0" } else { "" };
    format!("{COOKIE}={token}; Path={BASE}; HttpOnly; SameSite=Strict{secure}{max_age}")
}

fn lang_of(headers: &HeaderMap) -> Lang {
    cookie(headers, LANG_COOKIE)
        .and_then(Lang::from_code)
        .unwrap_or_else(|| {
            Lang::from_accept_language(
                headers
                    .get(header::ACCEPT_LANGUAGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(""),
            )
        })
}

fn peer_of(parts: &Parts) -> Option<SocketAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

/// Anyone: the console, the language, the session if there is a complete one.
pub struct Visitor(pub Ctx);

impl FromRequestParts<Arc<Console>> for Visitor {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Arc<Console>,
    ) -> Result<Self, Response> {
        let session = cookie(&parts.headers, COOKIE)
            .and_then(|token| console.sessions.get(token, &console.settings));
        // Re-read the account: removed, or no longer an administrator, counts now.
        let session = match session {
            Some(mut s) => {
                let ops = console.ops.clone();
                let id = s.account;
                let principal = tokio::task::spawn_blocking(move || ops.store().principal(id))
                    .await
                    .ok()
                    .and_then(|r| r.ok())
                    .flatten();
                match principal {
                    Some(p) => {
                        s.admin = p.admin;
                        Some(s)
                    }
                    None => {
                        console.sessions.end(&s.token);
                        None
                    }
                }
            }
            None => None,
        };
        Ok(Visitor(Ctx {
            console: console.clone(),
            lang: lang_of(&parts.headers),
            session,
            path: parts
                .uri
                .path_and_query()
                .map_or_else(|| parts.uri.path().to_string(), |p| p.as_str().to_string()),
            peer: peer_of(parts),
            https: parts.extensions.get::<crate::Https>().is_some(),
        }))
    }
}

/// A signed-in user (administrator or not). Not signed in: to the sign-in page. While
/// maintenance is in force, a user who is not an administrator gets the maintenance screen.
pub struct User(pub Ctx);

impl FromRequestParts<Arc<Console>> for User {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Arc<Console>,
    ) -> Result<Self, Response> {
        let Visitor(ctx) = Visitor::from_request_parts(parts, console).await?;
        match &ctx.session {
            Some(s) if !s.pending_totp => {}
            Some(_) => return Err(Redirect::to(&format!("{BASE}/login/totp")).into_response()),
            None => return Err(ctx.to_sign_in()),
        }
        if !ctx.is_admin()
            && let Some(screen) = ctx.maintenance_screen().await
        {
            return Err(screen);
        }
        Ok(User(ctx))
    }
}

/// A signed-in administrator; anyone else signed in gets 403.
pub struct Admin(pub Ctx);

impl FromRequestParts<Arc<Console>> for Admin {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Arc<Console>,
    ) -> Result<Self, Response> {
        let User(ctx) = User::from_request_parts(parts, console).await?;
        if !ctx.is_admin() {
            let text = ctx.t("common.forbidden");
            return Err(ctx.message(StatusCode::FORBIDDEN, text, text));
        }
        Ok(Admin(ctx))
    }
}

/// A posted form (application/x-www-form-urlencoded) whose `csrf` field is the session's
/// token; anything else is refused with 403 before the handler runs. Use it after
/// [`User`] or [`Admin`] in a handler's arguments.
pub struct Posted<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequest<Arc<Console>> for Posted<T> {
    type Rejection = Response;

    async fn from_request(request: Request, console: &Arc<Console>) -> Result<Self, Response> {
        let session = cookie(request.headers(), COOKIE)
            .and_then(|token| console.sessions.get(token, &console.settings));
        let body = axum::body::to_bytes(request.into_body(), MAX_FORM_BYTES)
            .await
            .map_err(|_| {
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the form is larger than the console accepts\n",
                )
                    .into_response()
            })?;
        let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
        let sent = fields
            .iter()
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.as_str());
        let valid = match (&session, sent) {
            (Some(s), Some(sent)) => constant_time_eq(s.csrf.as_bytes(), sent.as_bytes()),
            _ => false,
        };
        if !valid {
            return Err((
                StatusCode::FORBIDDEN,
                "the form's security token is missing or stale: reload the page and try again\n",
            )
                .into_response());
        }
        serde_urlencoded::from_bytes(&body)
            .map(Posted)
            .map_err(|e| {
                (
                    StatusCode::BAD_REQUEST,
                    format!("the form is not complete: {e}\n"),
                )
                    .into_response()
            })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "a=1; tegami_session=xyz; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&headers, COOKIE), Some("xyz"));
        assert_eq!(cookie(&headers, "c"), None);
    }

    #[test]
    fn the_session_cookie_is_strict_and_http_only_and_secure_under_tls() {
        let c = session_cookie("t", true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Secure"));
        assert!(!session_cookie("t", false).contains("Secure"));
        assert!(session_cookie("", false).contains("Max-Age=0"));
    }

    #[test]
    fn sessions_expire_when_idle_and_at_their_lifetime() {
        let sessions = Sessions::default();
        let s = sessions.start(AccountId(1), "a@example.com", false, false);
        let live = crate::Settings::default();
        assert!(sessions.get(&s.token, &live).is_some());
        let idle = crate::Settings {
            idle: Duration::ZERO,
            ..live.clone()
        };
        std::thread::sleep(Duration::from_millis(2));
        assert!(
            sessions.get(&s.token, &idle).is_none(),
            "idle past the limit"
        );
        assert!(sessions.get(&s.token, &live).is_none(), "and gone for good");
        let s = sessions.start(AccountId(1), "a@example.com", false, false);
        let short = crate::Settings {
            lifetime: Duration::ZERO,
            ..live.clone()
        };
        std::thread::sleep(Duration::from_millis(2));
        assert!(
            sessions.get(&s.token, &short).is_none(),
            "past its lifetime"
        );
    }

    #[test]
    fn a_password_change_ends_the_other_sessions_only() {
        let sessions = Sessions::default();
        let live = crate::Settings::default();
        let a = sessions.start(AccountId(1), "a@example.com", false, false);
        let b = sessions.start(AccountId(1), "a@example.com", false, false);
        let c = sessions.start(AccountId(2), "c@example.com", false, false);
        sessions.end_others(AccountId(1), &a.token);
        assert!(sessions.get(&a.token, &live).is_some());
        assert!(sessions.get(&b.token, &live).is_none());
        assert!(sessions.get(&c.token, &live).is_some());
    }

    #[test]
    fn tokens_differ_and_compare_in_constant_time() {
        assert_ne!(random_token(), random_token());
        assert_eq!(random_token().len(), 43);
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
