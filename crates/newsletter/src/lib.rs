//! Newsletters and step mail (issue 10): templates, message building, signed tokens and
//! VERP addresses, bounce and feedback-report (ARF) parsing, and (with the store's `Newsletters` trait) the sender,
//! the step scheduler, the bounce sink and the HTTP routes.

mod bounce;
mod feedback;
mod message;
mod template;
mod token;

pub use bounce::{Bounce, parse_bounce};
pub use feedback::{FeedbackReport, parse_feedback_report};
pub use message::{Letter, build_message, quoted_printable, rfc5322_date};
pub use template::{
    Rendered, Tracked, Vars, add_open_pixel, escape_html, render, render_parts, track_links,
};
pub use token::{Keys, Origin, Token};

pub mod admin;
mod engine;
mod http;
pub mod report;

pub use engine::{
    BATCH, BatchOutcome, Engine, Network, NewsletterConfig, NewsletterError, PRUNE_BATCH,
};
pub use http::{form_pairs, router};
