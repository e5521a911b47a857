//! Where mail for a domain goes: a static route, the smart host, or the domain's MX
//! hosts. Pure: DNS answers come in, an ordered plan comes out.

use smtp_client::{Credentials, TlsPolicy};

use crate::config::Routes;

/// The place one recipient's mail is handed to. Connections are reused, limited and
/// rate-limited per destination ([`Destination::key`]), so a smart host shared by many
/// domains counts once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Destination {
    /// A configured host: a static route or the smart host.
    Host {
        host: String,
        port: u16,
        tls: TlsPolicy,
        auth: Option<Credentials>,
    },
    /// The domain's MX hosts (or its implicit MX) on the queue's `mx_port`.
    Mx { domain: String },
}

impl Destination {
    pub(crate) fn key(&self) -> String {
        match self {
            Destination::Host { host, port, .. } => format!("{}:{port}", host.to_lowercase()),
            Destination::Mx { domain } => format!("mx:{domain}"),
        }
    }
}

/// A static route for the domain, else the smart host, else the domain's MX. `domain`
/// is lower case (as the store keeps it); route domains match without regard to case.
pub(crate) fn choose(domain: &str, routes: &Routes) -> Destination {
    if let Some(route) = routes
        .static_routes
        .iter()
        .find(|r| r.domain.trim_end_matches('.').eq_ignore_ascii_case(domain))
    {
        return Destination::Host {
            host: route.host.clone(),
            port: route.port,
            tls: route.tls,
            auth: None,
        };
    }
    if let Some(smart) = &routes.smart_host {
        return Destination::Host {
            host: smart.host.clone(),
            port: smart.port,
            tls: smart.tls,
            auth: smart.auth.clone(),
        };
    }
    Destination::Mx {
        domain: domain.to_owned(),
    }
}

/// What a domain's MX records say to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MxPlan {
    /// Try these hosts in this order.
    Hosts(Vec<String>),
    /// RFC 7505 null MX: the domain takes no mail.
    Null,
    /// No MX records: the domain itself is the host (RFC 5321 section 5.1).
    Implicit,
}

/// Orders MX hosts by preference; hosts of equal preference are shuffled so that load
/// spreads as RFC 5321 section 5.1 asks. A lone MX of "." is a null MX.
pub(crate) fn mx_plan(records: &[mail_auth::MX]) -> MxPlan {
    let mut records: Vec<&mail_auth::MX> = records.iter().collect();
    records.sort_by_key(|r| r.preference);
    let all: Vec<&str> = records
        .iter()
        .flat_map(|r| r.exchanges.iter().map(String::as_str))
        .collect();
    if all.is_empty() {
        return MxPlan::Implicit;
    }
    if all.iter().all(|h| h.trim_end_matches('.').is_empty()) {
        return MxPlan::Null;
    }
    let mut hosts = Vec::new();
    for record in records {
        let mut group: Vec<String> = record
            .exchanges
            .iter()
            .map(|h| h.trim_end_matches('.').to_lowercase())
            // A "." beside real hosts is nonsense; the real hosts still take mail.
            .filter(|h| !h.is_empty())
            .collect();
        rand::seq::SliceRandom::shuffle(group.as_mut_slice(), &mut rand::rng());
        for host in group {
            if !hosts.contains(&host) {
                hosts.push(host);
            }
        }
    }
    MxPlan::Hosts(hosts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SmartHost, StaticRoute};

    fn mx(preference: u16, hosts: &[&str]) -> mail_auth::MX {
        mail_auth::MX {
            exchanges: hosts.iter().map(|h| h.to_string()).collect(),
            preference,
        }
    }

    fn routes(smart: bool) -> Routes {
        Routes {
            static_routes: vec![StaticRoute {
                domain: "Example.ORG".into(),
                host: "127.0.0.1".into(),
                port: 2525,
                tls: TlsPolicy::Disabled,
            }],
            smart_host: smart.then(|| SmartHost {
                host: "relay.isp.test".into(),
                port: 587,
                tls: TlsPolicy::Required,
                auth: Some(Credentials {
                    username: "u".into(),
                    password: "p".into(),
                }),
            }),
        }
    }

    #[test]
    fn static_route_beats_smart_host_beats_mx() {
        let check = |domain: &str, smart: bool, expect: &str| {
            assert_eq!(
                choose(domain, &routes(smart)).key(),
                expect,
                "{domain} {smart}"
            );
        };
        check("example.org", true, "127.0.0.1:2525");
        check("example.org", false, "127.0.0.1:2525");
        check("other.test", true, "relay.isp.test:587");
        check("other.test", false, "mx:other.test");
    }

    #[test]
    fn smart_host_carries_its_credentials_and_tls() {
        match choose("x.test", &routes(true)) {
            Destination::Host { tls, auth, .. } => {
                assert_eq!(tls, TlsPolicy::Required);
                assert_eq!(auth.unwrap().username, "u");
            }
            other => panic!("{other:?}"),
        }
        match choose("example.org", &routes(true)) {
            Destination::Host { auth, .. } => assert!(auth.is_none()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn mx_hosts_in_preference_order() {
        let plan = mx_plan(&[
            mx(20, &["b.example."]),
            mx(10, &["A.example."]),
            mx(30, &["c.example", "a.example."]),
        ]);
        assert_eq!(
            plan,
            MxPlan::Hosts(vec![
                "a.example".into(),
                "b.example".into(),
                "c.example".into()
            ])
        );
    }

    #[test]
    fn equal_preference_hosts_all_present() {
        match mx_plan(&[mx(10, &["x.", "y.", "z."])]) {
            MxPlan::Hosts(mut hosts) => {
                hosts.sort();
                assert_eq!(hosts, ["x", "y", "z"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn null_and_implicit_mx() {
        assert_eq!(mx_plan(&[mx(0, &["."])]), MxPlan::Null);
        assert_eq!(mx_plan(&[]), MxPlan::Implicit);
        assert_eq!(mx_plan(&[mx(0, &[])]), MxPlan::Implicit);
        assert_eq!(
            mx_plan(&[mx(0, &["."]), mx(10, &["real."])]),
            MxPlan::Hosts(vec!["real".into()])
        );
    }
}
