//! The sending side of `serve`: the outbound queue's settings from the config, and the
//! `domain dkim` command.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use ops::config::{Config, TlsChoice};

pub fn tls_policy(choice: TlsChoice) -> outbound::TlsPolicy {
    match choice {
        TlsChoice::Opportunistic => outbound::TlsPolicy::Opportunistic,
        TlsChoice::Verified => outbound::TlsPolicy::OpportunisticVerified,
        TlsChoice::Required => outbound::TlsPolicy::Required,
        TlsChoice::None => outbound::TlsPolicy::Disabled,
    }
}

pub fn queue_config(config: &Config) -> outbound::QueueConfig {
    let q = &config.queue;
    let mut out = outbound::QueueConfig::new(config.hostname.clone());
    out.retry = q.retry.clone();
    out.give_up_after = q.give_up_after;
    out.delay_notice_after = q.delay_notice_after;
    out.concurrency = q.concurrency;
    out.per_destination = q.per_destination;
    out.rate_per_minute = q.rate_per_minute;
    out.messages_per_connection = q.messages_per_connection;
    out.mx_port = q.mx_port;
    out.tls = tls_policy(q.tls);
    if let Some(limit) = q.timeout {
        out.timeouts = outbound::Timeouts::uniform(limit);
    }
    out
}

pub fn routes(config: &Config) -> outbound::Routes {
    let q = &config.queue;
    outbound::Routes {
        static_routes: q
            .routes
            .iter()
            .map(|r| outbound::StaticRoute {
                domain: r.domain.clone(),
                host: r.host.clone(),
                port: r.port,
                tls: tls_policy(r.tls),
            })
            .collect(),
        smart_host: q.smart_host.as_ref().map(|h| outbound::SmartHost {
            host: h.host.clone(),
            port: h.port,
            tls: tls_policy(h.tls),
            auth: h
                .auth
                .as_ref()
                .map(|(username, password)| outbound::Credentials {
                    username: username.clone(),
                    password: password.clone(),
                }),
        }),
    }
}

/// `tegami domain dkim DOMAIN`: prints the TXT record of the domain's signing key, making
/// the key first when there is none (or when `new` asks for a rotation).
pub fn dkim(
    data: &Path,
    domain: &str,
    selector: Option<String>,
    new: bool,
) -> anyhow::Result<ExitCode> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let dir = data.join("dkim");
    let existing = outbound::dkim_record(&dir, &domain)
        .with_context(|| format!("cannot read the DKIM keys in {}", dir.display()))?;
    let (record, made) = match existing {
        Some(record) if !new && selector.is_none() => (record, false),
        _ => {
            // Selectors that sort by date, so the newest key is the one that signs.
            let selector =
                selector.unwrap_or_else(|| jiff::Zoned::now().strftime("tg%Y%m%d%H%M").to_string());
            let record = outbound::generate_dkim(&dir, &domain, &selector)
                .with_context(|| format!("cannot make a DKIM key for {domain}"))?;
            (record, true)
        }
    };
    if made {
        println!(
            "made a DKIM key for {domain} in {}; mail from {domain} is signed with it once the server restarts",
            dir.join(&domain).display()
        );
    }
    println!("publish this TXT record in DNS:");
    println!("{}. IN TXT {}", record.name, quoted_strings(&record.value));
    Ok(ExitCode::SUCCESS)
}

/// A TXT value as DNS zone files want it: quoted strings of at most 255 characters.
fn quoted_strings(value: &str) -> String {
    let chunks: Vec<String> = value
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    if chunks.len() == 1 {
        chunks[0].clone()
    } else {
        format!("( {} )", chunks.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_txt_values_are_split_into_strings_of_255() {
        assert_eq!(quoted_strings("v=DKIM1; p=abc"), "\"v=DKIM1; p=abc\"");
        let long = "x".repeat(300);
        let split = quoted_strings(&long);
        assert!(split.starts_with("( \"") && split.ends_with("\" )"));
        assert_eq!(split.matches('"').count(), 4);
    }
}
