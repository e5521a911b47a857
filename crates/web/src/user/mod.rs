//! Each user's own screens: their mailboxes (archive mailboxes too), messages, search and
//! CSV export, and their password. Every handler takes [`crate::User`].

use std::sync::Arc;

use axum::Router;

use crate::Console;

mod archive;
mod mail;
mod password;

/// The navigation of every signed-in user: (path under `/console`, catalogue key).
pub const MENU: &[(&str, &str)] = &[
    ("/mail", "user.menu_mail"),
    ("/password", "user.menu_password"),
];

pub fn routes() -> Router<Arc<Console>> {
    Router::new()
        .merge(mail::routes())
        .merge(archive::routes())
        .merge(password::routes())
}
