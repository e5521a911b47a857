//! The sending side of `serve`: the outbound queue's settings from the config, and the
//! `domain dkim` command.

use std::process::ExitCode;

use ops::config::{Config, TlsChoice};
use ops::directory::DkimRequest;

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

/// `tegami domain dkim DOMAIN`: prints the TXT record of the domain's signing key, made
/// first when there is none (or when a rotation is asked for).
pub fn dkim(ops: &ops::Ops, request: &DkimRequest) -> anyhow::Result<ExitCode> {
    let key = ops.domain_dkim(request)?;
    if let Some(dir) = &key.made {
        println!(
            "made a DKIM key for {} in {}; mail from {} is signed with it once the server restarts",
            key.domain,
            dir.display(),
            key.domain
        );
    }
    println!("publish this TXT record in DNS:");
    println!(
        "{}. IN TXT {}",
        key.name,
        dns_records::quoted_strings(&key.value)
    );
    Ok(ExitCode::SUCCESS)
}
