//! The newsletter screens under `/console/admin/newsletters`: lists and their subscribers
//! (search, pages, CSV import and export), campaigns (compose, schedule, rate, pause,
//! resume, cancel, and the delivery graph), and step-mail sequences with their steps.
//!
//! Every change goes through `ops`, which applies `newsletter::admin`'s rules, the same
//! the CLI and the JSON API use; these files parse forms and render what comes back.

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use crate::{BASE, Console, Ctx};

mod campaigns;
mod lists;
mod sequences;
mod upload;

pub fn routes() -> Router<Arc<Console>> {
    Router::new()
        .merge(lists::routes())
        .merge(campaigns::routes())
        .merge(sequences::routes())
}

/// Where the screens live.
const HOME: &str = "/admin/newsletters";

fn url(rest: &str) -> String {
    format!("{BASE}{HOME}{rest}")
}

/// The three screens' own navigation, at the top of each.
fn tabs(ctx: &Ctx) -> Markup {
    html! {
        p.tabs {
            a href=(url("")) { (ctx.t("newsletters.lists")) } " · "
            a href=(url("/campaigns")) { (ctx.t("newsletters.campaigns")) } " · "
            a href=(url("/sequences")) { (ctx.t("newsletters.sequences")) }
        }
    }
}

/// CSV bytes as a download named `file_name`, which the caller makes safe for the header.
fn csv_download(bytes: Vec<u8>, file_name: &str) -> Response {
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

/// A form without fields of its own (an action button).
#[derive(Deserialize)]
struct Empty {}

/// An optional whole number typed in a form: empty is `None`.
fn number<T: std::str::FromStr>(field: &str, value: &str) -> ops::Result<Option<T>> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    value
        .parse()
        .map(Some)
        .map_err(|_| ops::Error::invalid(format!("{field} {value:?} is not a whole number")))
}

/// A checkbox: present when ticked.
fn ticked(value: &Option<String>) -> bool {
    value.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_from_a_form_are_optional_and_whole() {
        assert_eq!(number::<u32>("rate", " ").unwrap(), None);
        assert_eq!(number::<u32>("rate", " 25 ").unwrap(), Some(25));
        let e = number::<u32>("rate", "2.5").unwrap_err();
        assert!(matches!(e, ops::Error::Invalid(_)), "{e}");
        assert!(e.to_string().starts_with("rate \"2.5\""), "{e}");
        assert!(number::<u32>("rate", "-1").is_err());
    }
}
