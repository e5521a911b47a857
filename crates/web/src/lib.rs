//! The web console: the operator's screens and each user's mail and archive viewer, served
//! under `/console` on tegami's HTTP listener. Pages are rendered on the server (maud, every
//! value escaped); the little JavaScript there is only improves what a form already does,
//! and every asset is compiled into the binary, so the console works on a server with no
//! network.
//!
//! The console is a face: each screen parses a form, calls the same `ops` function the CLI
//! calls, and renders the result. No rule of the mail server lives here; what does live
//! here is the web's own business: sign-in and sessions ([`session`]), CSRF tokens, the
//! message catalogues ([`i18n`]), security headers ([`page`]), background jobs with progress
//! ([`jobs`]) and SVG charts ([`svg`]).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use net::LoginThrottle;
use ops::Ops;

pub mod admin;
pub mod auth;
pub mod i18n;
pub mod jobs;
pub mod page;
pub mod session;
pub mod svg;
pub mod totp;
pub mod user;

pub use page::Ctx;
pub use session::{Admin, Posted, User, Visitor};

/// Marks a request that came over HTTPS (the listener adds it): cookies get `Secure`, and
/// signing in from another host is allowed.
#[derive(Debug, Clone, Copy)]
pub struct Https;

/// Where the console lives on the HTTP listener.
pub const BASE: &str = "/console";

/// How the console treats its visitors.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Allow signing in over plain HTTP from a client that is not on loopback (behind a
    /// TLS-terminating proxy on another host). Off by default: a password sent in clear
    /// over a network is a password given away.
    pub allow_plain_sign_in: bool,
    /// A session unused this long ends.
    pub idle: Duration,
    /// A session ends this long after sign-in, however busy.
    pub lifetime: Duration,
    /// Cookies get `Secure` (the listener speaks TLS, or a proxy in front does).
    pub secure_cookies: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            allow_plain_sign_in: false,
            idle: Duration::from_secs(30 * 60),
            lifetime: Duration::from_secs(12 * 3600),
            secure_cookies: false,
        }
    }
}

/// The console's state, shared by every request.
pub struct Console {
    pub ops: Arc<Ops>,
    pub throttle: Arc<LoginThrottle>,
    pub sessions: session::Sessions,
    pub jobs: jobs::Jobs,
    pub settings: Settings,
    /// The doctor's latest report and when it ran (Unix seconds): it walks every blob file,
    /// which on a big store takes longer than a page should, so the diagnostics screen
    /// shows a recent run and offers to run it again.
    pub doctor: std::sync::Mutex<Option<(i64, Arc<ops::doctor::Report>)>>,
}

impl Console {
    /// `throttle` is the server's one login throttle, so that a guesser cannot move from
    /// IMAP to the console to start counting afresh.
    pub fn new(ops: Arc<Ops>, throttle: Arc<LoginThrottle>, settings: Settings) -> Arc<Console> {
        Arc::new(Console {
            ops,
            throttle,
            sessions: session::Sessions::default(),
            jobs: jobs::Jobs::default(),
            settings,
            doctor: std::sync::Mutex::new(None),
        })
    }
}

/// `app` as the HTTPS listener serves it: each request marked [`Https`].
pub fn over_https(app: Router) -> Router {
    app.layer(axum::Extension(Https))
}

/// Every console route, with the security headers on each answer.
pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .merge(auth::routes())
        .merge(page::routes())
        .merge(jobs::routes())
        .merge(admin::routes())
        .merge(user::routes())
        .with_state(console)
        .layer(axum::middleware::from_fn(page::security_headers))
}
