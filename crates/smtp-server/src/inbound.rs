//! SPF, DKIM and DMARC checks of mail arriving from other servers, recorded in an
//! `Authentication-Results` header (RFC 8601) and counted for `/metrics`.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mail_auth::common::headers::HeaderWriter;
use mail_auth::dmarc::Policy;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimResult, DmarcResult, MessageAuthenticator,
    SpfResult, dmarc::verify::DmarcParameters, spf::verify::SpfParameters,
};

/// The checks the MX listener runs, resolved from the config file.
#[derive(Clone)]
pub struct InboundChecks {
    /// The resolver (shared with outbound delivery).
    pub dns: Arc<MessageAuthenticator>,
    pub policy: DmarcPolicy,
    /// Loopback peers are local programs, not other servers: checked only when this is set
    /// (tests set it; a relaying local MTA might want it).
    pub check_loopback: bool,
}

/// What a failed check does to the message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DmarcPolicy {
    /// Only record the results in the header; never refuse.
    #[default]
    Record,
    /// Refuse a message that fails DMARC when the sender's domain publishes `p=reject`.
    Enforce,
}

/// What the checks concluded about one message.
pub struct Verdict {
    /// The `Authentication-Results` header line(s), CRLF-terminated.
    pub header: String,
    /// Set when the DMARC policy asks for refusal and the listener enforces it.
    pub reject: bool,
}

/// Runs the checks on a message as it arrived (before our trace headers).
pub async fn check(
    checks: &InboundChecks,
    hostname: &str,
    peer: IpAddr,
    helo: &str,
    mail_from: &str,
    content: &[u8],
) -> Verdict {
    let dns = &checks.dns;
    let helo_domain = if helo.is_empty() { "unknown" } else { helo };
    // RFC 7208 section 2.4: with a null sender the HELO identity is checked instead.
    let spf = if mail_from.is_empty() {
        dns.verify_spf(SpfParameters::verify_ehlo(peer, helo_domain, hostname))
            .await
    } else {
        dns.verify_spf(SpfParameters::verify_mail_from(
            peer,
            helo_domain,
            hostname,
            mail_from,
        ))
        .await
    };
    AUTH_RESULTS.count(Method::Spf, spf_name(spf.result()));
    let mut results = AuthenticationResults::new(hostname);
    results = if mail_from.is_empty() {
        results.with_spf_ehlo_result(&spf, peer, helo_domain)
    } else {
        results.with_spf_mailfrom_result(&spf, peer, mail_from, helo_domain)
    };

    let Some(message) = AuthenticatedMessage::parse(content) else {
        // No header to check: only SPF can say anything.
        let header = results.to_header();
        return Verdict {
            header,
            reject: false,
        };
    };
    let dkim = dns.verify_dkim(&message).await;
    if dkim.is_empty() {
        AUTH_RESULTS.count(Method::Dkim, "none");
    }
    for output in &dkim {
        AUTH_RESULTS.count(Method::Dkim, dkim_name(output.result()));
    }
    let header_from = message.from().to_string();
    let header_from_domain = header_from.rsplit_once('@').map_or("", |(_, d)| d);
    results = results.with_dkim_results(&dkim, header_from_domain);

    let mail_from_domain = mail_from
        .rsplit_once('@')
        .map_or(helo_domain, |(_, d)| d)
        .to_ascii_lowercase();
    let mut dmarc = dns
        .verify_dmarc(DmarcParameters::new(
            &message,
            &dkim,
            &mail_from_domain,
            &spf,
        ))
        .await;
    // mail-auth leaves both results at "none" when the domain publishes a record but
    // neither SPF nor DKIM passed; RFC 7489 section 6.6.2 calls that a failure.
    if dmarc.dmarc_record().is_some()
        && *dmarc.spf_result() == DmarcResult::None
        && *dmarc.dkim_result() == DmarcResult::None
    {
        dmarc = dmarc.with_spf_result(DmarcResult::Fail(mail_auth::Error::NotAligned));
    }
    let passed =
        *dmarc.spf_result() == DmarcResult::Pass || *dmarc.dkim_result() == DmarcResult::Pass;
    let failed = !passed
        && (matches!(dmarc.spf_result(), DmarcResult::Fail(_))
            || matches!(dmarc.dkim_result(), DmarcResult::Fail(_)));
    let dmarc_name = if passed {
        "pass"
    } else if failed {
        "fail"
    } else if [dmarc.spf_result(), dmarc.dkim_result()]
        .iter()
        .any(|r| matches!(r, DmarcResult::TempError(_)))
    {
        "temperror"
    } else if [dmarc.spf_result(), dmarc.dkim_result()]
        .iter()
        .any(|r| matches!(r, DmarcResult::PermError(_)))
    {
        "permerror"
    } else {
        "none"
    };
    AUTH_RESULTS.count(Method::Dmarc, dmarc_name);
    let reject =
        checks.policy == DmarcPolicy::Enforce && failed && dmarc.policy() == Policy::Reject;
    results = results.with_dmarc_result(&dmarc);
    let mut header = results.to_header();
    if dkim.is_empty() {
        // mail-auth writes nothing for an unsigned message; RFC 8601 has "dkim=none".
        header = header.replacen(";\r\n\tdmarc=", ";\r\n\tdkim=none;\r\n\tdmarc=", 1);
    }
    Verdict { header, reject }
}

fn spf_name(result: SpfResult) -> &'static str {
    match result {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

fn dkim_name(result: &DkimResult) -> &'static str {
    match result {
        DkimResult::Pass => "pass",
        DkimResult::Neutral(_) => "neutral",
        DkimResult::Fail(_) => "fail",
        DkimResult::PermError(_) => "permerror",
        DkimResult::TempError(_) => "temperror",
        DkimResult::None => "none",
    }
}

#[derive(Clone, Copy)]
enum Method {
    Spf = 0,
    Dkim = 1,
    Dmarc = 2,
}

const METHODS: [&str; 3] = ["spf", "dkim", "dmarc"];

/// The results, in the order [`AuthResults::counts`] gives them within each method.
const RESULTS: [&str; 7] = [
    "pass",
    "fail",
    "softfail",
    "neutral",
    "temperror",
    "permerror",
    "none",
];

/// Inbound check results since the server started, by method and result, for `/metrics`.
pub static AUTH_RESULTS: AuthResults = AuthResults::new();

pub struct AuthResults([[AtomicU64; 7]; 3]);

impl AuthResults {
    const fn new() -> AuthResults {
        AuthResults([const { [const { AtomicU64::new(0) }; 7] }; 3])
    }

    fn count(&self, method: Method, result: &str) {
        if let Some(i) = RESULTS.iter().position(|r| *r == result) {
            self.0[method as usize][i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `(method, result, count)` for every method ("spf", "dkim", "dmarc") and result
    /// ("pass", "fail", "softfail", "neutral", "temperror", "permerror", "none"). DKIM counts
    /// one per signature, and "none" for a message without one.
    pub fn counts(&self) -> Vec<(&'static str, &'static str, u64)> {
        let mut out = Vec::with_capacity(METHODS.len() * RESULTS.len());
        for (m, method) in METHODS.iter().enumerate() {
            for (r, result) in RESULTS.iter().enumerate() {
                out.push((*method, *result, self.0[m][r].load(Ordering::Relaxed)));
            }
        }
        out
    }
}
