//! Newsletters and step mail (issue 10): templates, message building, signed tokens and
//! VERP addresses, bounce parsing, and (with the store's `Newsletters` trait) the sender,
//! the step scheduler, the bounce sink and the HTTP routes.

mod bounce;
mod message;
mod template;
mod token;

pub use bounce::{Bounce, parse_bounce};
pub use message::{Letter, build_message, quoted_printable, rfc5322_date};
pub use template::{Tracked, Vars, add_open_pixel, escape_html, render, track_links};
pub use token::{Keys, Origin, Token};

pub mod admin;
mod engine;
mod http;

pub use engine::{BATCH, BatchOutcome, Engine, NewsletterConfig, NewsletterError, PRUNE_BATCH};
pub use http::{form_pairs, router};
