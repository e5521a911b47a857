//! The resolver shared by the queue and the inbound checks, and the turning of a
//! destination into addresses to connect to.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use mail_auth::hickory_resolver::config::{
    NameServerConfig, ProtocolConfig, ResolverConfig, ResolverOpts,
};
use mail_auth::hickory_resolver::proto::op::ResponseCode;
use mail_auth::{IpLookupStrategy, MessageAuthenticator};

use crate::route::{Destination, MxPlan, mx_plan};
use crate::schedule::Failure;

type NoCache<V> = mail_auth::common::cache::NoCache<String, V>;

/// The resolver could not be set up (an unreadable resolv.conf).
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the DNS resolver: {0}")]
pub struct DnsError(String);

/// A resolver for `servers` (UDP and TCP each), or the system's resolv.conf when empty.
/// Queries time out after 2 s and are tried twice: a queue run must not hang on a dead
/// server, and a temporary DNS failure only defers.
pub fn resolver(servers: &[SocketAddr]) -> Result<Arc<MessageAuthenticator>, DnsError> {
    let (config, mut opts) = if servers.is_empty() {
        mail_auth::hickory_resolver::system_conf::read_system_conf()
            .map_err(|e| DnsError(e.to_string()))?
    } else {
        let mut group = Vec::new();
        for &addr in servers {
            group.push(NameServerConfig::new(addr, ProtocolConfig::Udp));
            group.push(NameServerConfig::new(addr, ProtocolConfig::Tcp));
        }
        (
            ResolverConfig::from_parts(None, Vec::new(), group),
            ResolverOpts::default(),
        )
    };
    opts.timeout = Duration::from_secs(2);
    opts.attempts = 2;
    MessageAuthenticator::new(config, opts)
        .map(Arc::new)
        .map_err(|e| DnsError(e.to_string()))
}

/// One host to try, with its addresses in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// The host name: what a verified certificate must name, and the DSN's Remote-MTA.
    pub name: String,
    pub addrs: Vec<SocketAddr>,
}

/// Most addresses tried per host.
const MAX_ADDRS: usize = 4;

/// The hosts to try for a destination, in order. A `Failure` is what the recipients get
/// when there is nothing to try: permanent for a null MX or a domain that does not
/// exist, temporary for a DNS server that did not answer.
pub(crate) async fn targets(
    dns: &MessageAuthenticator,
    destination: &Destination,
    mx_port: u16,
) -> Result<Vec<Target>, (bool, Failure)> {
    match destination {
        Destination::Host { host, port, .. } => {
            let addrs = addresses(dns, host, *port).await.map_err(|e| {
                // A configured host that does not resolve is our mistake or a DNS outage,
                // never the recipient's: it only defers.
                (false, dns_failure(host, "4.4.3", &e))
            })?;
            Ok(vec![Target {
                name: host.clone(),
                addrs,
            }])
        }
        Destination::Mx { domain } => {
            let plan = match dns.mx_lookup(domain.as_str(), None::<&NoCache<_>>).await {
                Ok(records) => mx_plan(&records),
                Err(mail_auth::Error::DnsRecordNotFound(ResponseCode::NXDomain)) => {
                    return Err((
                        true,
                        dns_failure(domain, "5.1.2", "the domain does not exist"),
                    ));
                }
                Err(mail_auth::Error::DnsRecordNotFound(_)) => MxPlan::Implicit,
                Err(e) => return Err((false, dns_failure(domain, "4.4.3", &e.to_string()))),
            };
            let hosts = match plan {
                MxPlan::Null => {
                    return Err((
                        true,
                        dns_failure(domain, "5.1.10", "the domain accepts no mail (null MX)"),
                    ));
                }
                MxPlan::Implicit => {
                    return match addresses(dns, domain, mx_port).await {
                        Ok(addrs) => Ok(vec![Target {
                            name: domain.clone(),
                            addrs,
                        }]),
                        Err(e) => Err((
                            true,
                            dns_failure(domain, "5.4.4", &format!("no MX and no address: {e}")),
                        )),
                    };
                }
                MxPlan::Hosts(hosts) => hosts,
            };
            let mut targets = Vec::new();
            let mut last = String::new();
            for host in hosts {
                match addresses(dns, &host, mx_port).await {
                    Ok(addrs) => targets.push(Target { name: host, addrs }),
                    Err(e) => last = format!("{host}: {e}"),
                }
            }
            if targets.is_empty() {
                return Err((false, dns_failure(domain, "4.4.3", &last)));
            }
            Ok(targets)
        }
    }
}

async fn addresses(
    dns: &MessageAuthenticator,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let ips = dns
        .ip_lookup(
            host,
            IpLookupStrategy::Ipv4thenIpv6,
            MAX_ADDRS,
            None::<&NoCache<_>>,
            None::<&NoCache<_>>,
        )
        .await
        .map_err(|e| e.to_string())?;
    if ips.is_empty() {
        return Err("no address".to_owned());
    }
    Ok(ips
        .into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect())
}

fn dns_failure(name: &str, status: &str, text: &str) -> Failure {
    Failure {
        reason: "dns",
        status: status.to_owned(),
        diagnostic: None,
        remote_mta: None,
        text: format!("DNS for {name}: {text}"),
    }
}
