//! The DNS records a mail domain served by tegami needs (MX, addresses, SPF, DKIM, DMARC,
//! MTA-STS, TLS-RPT, client discovery), rendered for a zone file, and the comparison of each
//! with what a resolver answers. Everything here is pure except `lookup`, which asks DNS.
//!
//! The binary gathers the inputs (config, DKIM key) into a [`Setup`], asks [`records`] for
//! the list, and for `--check` feeds each record and its [`Answer`] to [`compare`].

mod lookup;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;
use sha2::{Digest, Sha256};

pub use lookup::lookup;

/// Ports clients are told to use. 0 means "not offered": RFC 6186 says so with an SRV
/// record whose target is ".", and autoconfiguration leaves the protocol out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ClientPorts {
    pub imaps: u16,
    pub imap: u16,
    pub pop3s: u16,
    pub pop3: u16,
    pub submissions: u16,
    pub submission: u16,
}

impl Default for ClientPorts {
    /// The standard ports (RFC 8314 for the implicit-TLS ones).
    fn default() -> ClientPorts {
        ClientPorts {
            imaps: 993,
            imap: 143,
            pop3s: 995,
            pop3: 110,
            submissions: 465,
            submission: 587,
        }
    }
}

/// MTA-STS mode (RFC 8461 section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MtaStsMode {
    /// Senders report failures (TLS-RPT) but deliver anyway: the safe first step.
    Testing,
    /// Senders refuse to deliver without valid TLS to a listed MX.
    Enforce,
}

impl MtaStsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            MtaStsMode::Testing => "testing",
            MtaStsMode::Enforce => "enforce",
        }
    }
}

/// What the records of one domain are made from.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The mail domain (lower case, no final dot).
    pub domain: String,
    /// The MX host: the server's host name.
    pub mx_host: String,
    /// The host mail clients connect to (usually the same as `mx_host`).
    pub client_host: String,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    /// The domain's DKIM TXT record (name, value), when it has a key.
    pub dkim: Option<(String, String)>,
    /// Where DMARC aggregate reports and TLS-RPT reports go.
    pub report_address: String,
    pub mta_sts_mode: MtaStsMode,
    pub ports: ClientPorts,
}

/// What a record is for; each kind has its own rule for "matches".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Mx,
    A,
    Aaaa,
    Spf,
    Dkim,
    Dmarc,
    MtaSts,
    TlsRpt,
    Srv,
    Cname,
}

/// A DNS record type, as queried and as written in a zone file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RType {
    MX,
    A,
    AAAA,
    TXT,
    SRV,
    CNAME,
}

impl RType {
    pub fn as_str(self) -> &'static str {
        match self {
            RType::MX => "MX",
            RType::A => "A",
            RType::AAAA => "AAAA",
            RType::TXT => "TXT",
            RType::SRV => "SRV",
            RType::CNAME => "CNAME",
        }
    }
}

impl Kind {
    pub fn rtype(self) -> RType {
        match self {
            Kind::Mx => RType::MX,
            Kind::A => RType::A,
            Kind::Aaaa => RType::AAAA,
            Kind::Spf | Kind::Dkim | Kind::Dmarc | Kind::MtaSts | Kind::TlsRpt => RType::TXT,
            Kind::Srv => RType::SRV,
            Kind::Cname => RType::CNAME,
        }
    }
}

/// The record groups, in the order they are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Group {
    Receiving,
    Authentication,
    TransportSecurity,
    ClientDiscovery,
}

impl Group {
    pub fn title(self) -> &'static str {
        match self {
            Group::Receiving => "Receiving mail",
            Group::Authentication => "Sender authentication (SPF, DKIM, DMARC)",
            Group::TransportSecurity => "Transport security (MTA-STS, TLS-RPT)",
            Group::ClientDiscovery => "Mail client discovery (RFC 6186, RFC 8314, autoconfig)",
        }
    }
}

/// One record's data. Host names carry no final dot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Value {
    Mx {
        preference: u16,
        host: String,
    },
    Ip {
        ip: IpAddr,
    },
    Txt {
        text: String,
    },
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
    Cname {
        target: String,
    },
}

impl Value {
    /// The data part of a zone-file line.
    pub fn zone_data(&self) -> String {
        match self {
            Value::Mx { preference, host } => format!("{preference} {}", absolute(host)),
            Value::Ip { ip } => ip.to_string(),
            Value::Txt { text } => quoted_strings(text),
            Value::Srv {
                priority,
                weight,
                port,
                target,
            } => format!("{priority} {weight} {port} {}", absolute(target)),
            Value::Cname { target } => absolute(target),
        }
    }
}

/// One record the domain needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    pub group: Group,
    pub kind: Kind,
    pub rtype: RType,
    /// The owner name, no final dot.
    pub name: String,
    /// What to publish; `None` when it cannot be known here (then `hint` says how to find it).
    pub expected: Option<Value>,
    /// One line: what the record is for.
    pub why: String,
    /// How to fill in a value that is not known here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// Not publishing it is fine (an IPv6 address the server may not have).
    pub optional: bool,
}

impl Record {
    fn new(group: Group, kind: Kind, name: String, expected: Value, why: String) -> Record {
        Record {
            group,
            kind,
            rtype: kind.rtype(),
            name,
            expected: Some(expected),
            why,
            hint: None,
            optional: false,
        }
    }

    fn unknown(group: Group, kind: Kind, name: String, why: String, hint: String) -> Record {
        Record {
            group,
            kind,
            rtype: kind.rtype(),
            name,
            expected: None,
            why,
            hint: Some(hint),
            optional: false,
        }
    }

    /// The zone-file line, or a comment saying what to fill in when the value is unknown.
    pub fn zone_line(&self) -> String {
        match &self.expected {
            Some(value) => format!(
                "{} IN {} {}",
                absolute(&self.name),
                self.rtype.as_str(),
                value.zone_data()
            ),
            None => format!(
                "; {} IN {} ?  ({})",
                absolute(&self.name),
                self.rtype.as_str(),
                self.hint.as_deref().unwrap_or("unknown")
            ),
        }
    }
}

/// How long senders may cache the MTA-STS policy: one week, the common choice (RFC 8461
/// allows up to a year; a week lets a mistake heal within days).
pub const MTA_STS_MAX_AGE: u32 = 604_800;

/// The MTA-STS policy file served at `https://mta-sts.<domain>/.well-known/mta-sts.txt`.
/// It names only the MX host, so every domain of the server shares it.
pub fn mta_sts_policy(mx_host: &str, mode: MtaStsMode) -> String {
    format!(
        "version: STSv1\r\nmode: {}\r\nmx: {}\r\nmax_age: {MTA_STS_MAX_AGE}\r\n",
        mode.as_str(),
        mx_host.trim_end_matches('.').to_ascii_lowercase()
    )
}

/// The policy id for the `_mta-sts` TXT record: derived from the policy text, so it changes
/// exactly when the policy does (senders fetch the policy again only when the id changes).
pub fn mta_sts_id(policy: &str) -> String {
    hex::encode(&Sha256::digest(policy.as_bytes())[..10])
}

/// Every record `setup.domain` needs, grouped and in print order.
pub fn records(setup: &Setup) -> Vec<Record> {
    let domain = setup.domain.trim_end_matches('.').to_ascii_lowercase();
    let mx_host = setup.mx_host.trim_end_matches('.').to_ascii_lowercase();
    let client_host = setup.client_host.trim_end_matches('.').to_ascii_lowercase();
    let mut out = Vec::new();

    // Receiving: MX and the addresses of the hosts it and the clients name.
    out.push(Record::new(
        Group::Receiving,
        Kind::Mx,
        domain.clone(),
        Value::Mx {
            preference: 10,
            host: mx_host.clone(),
        },
        format!("mail for {domain} is delivered to {mx_host}"),
    ));
    let mut hosts = vec![mx_host.clone()];
    if client_host != mx_host {
        hosts.push(client_host.clone());
    }
    for host in &hosts {
        out.push(match setup.ipv4 {
            Some(ip) => Record::new(
                Group::Receiving,
                Kind::A,
                host.clone(),
                Value::Ip { ip: ip.into() },
                format!("the IPv4 address of {host}"),
            ),
            None => Record::unknown(
                Group::Receiving,
                Kind::A,
                host.clone(),
                format!("the IPv4 address of {host}"),
                "the server's public IPv4 address: find it with `curl -4 https://ifconfig.me` on the server, then set [server] public_ipv4".into(),
            ),
        });
        out.push(match setup.ipv6 {
            Some(ip) => Record::new(
                Group::Receiving,
                Kind::Aaaa,
                host.clone(),
                Value::Ip { ip: ip.into() },
                format!("the IPv6 address of {host}"),
            ),
            None => Record {
                optional: true,
                ..Record::unknown(
                    Group::Receiving,
                    Kind::Aaaa,
                    host.clone(),
                    format!("the IPv6 address of {host}, if it has one"),
                    "the server's public IPv6 address, if any: `ip -6 addr show scope global` or `curl -6 https://ifconfig.me`, then set [server] public_ipv6".into(),
                )
            },
        });
    }

    // Sender authentication.
    out.push(Record::new(
        Group::Authentication,
        Kind::Spf,
        domain.clone(),
        Value::Txt {
            text: "v=spf1 mx -all".into(),
        },
        format!("SPF: only the hosts in {domain}'s MX may send its mail"),
    ));
    out.push(match &setup.dkim {
        Some((name, value)) => Record::new(
            Group::Authentication,
            Kind::Dkim,
            name.trim_end_matches('.').to_ascii_lowercase(),
            Value::Txt {
                text: value.clone(),
            },
            "DKIM: the public key receivers verify tegami's signatures with".into(),
        ),
        None => Record::unknown(
            Group::Authentication,
            Kind::Dkim,
            format!("<selector>._domainkey.{domain}"),
            "DKIM: the public key receivers verify tegami's signatures with".into(),
            format!("no DKIM key yet: `tegami domain dkim {domain}` makes one and prints it"),
        ),
    });
    let report = &setup.report_address;
    out.push(Record::new(
        Group::Authentication,
        Kind::Dmarc,
        format!("_dmarc.{domain}"),
        Value::Txt {
            text: format!("v=DMARC1; p=quarantine; rua=mailto:{report}"),
        },
        format!("DMARC: mail failing SPF and DKIM goes to spam; daily reports to {report}"),
    ));

    // Transport security.
    let policy = mta_sts_policy(&mx_host, setup.mta_sts_mode);
    out.push(Record::new(
        Group::TransportSecurity,
        Kind::MtaSts,
        format!("_mta-sts.{domain}"),
        Value::Txt {
            text: format!("v=STSv1; id={}", mta_sts_id(&policy)),
        },
        format!(
            "MTA-STS: senders must use TLS to {mx_host} (mode {}); the id changes with the policy",
            setup.mta_sts_mode.as_str()
        ),
    ));
    out.push(Record::new(
        Group::TransportSecurity,
        Kind::Cname,
        format!("mta-sts.{domain}"),
        Value::Cname {
            target: client_host.clone(),
        },
        "MTA-STS: the web host senders fetch the policy from (HTTPS on port 443)".into(),
    ));
    out.push(Record::new(
        Group::TransportSecurity,
        Kind::TlsRpt,
        format!("_smtp._tls.{domain}"),
        Value::Txt {
            text: format!("v=TLSRPTv1; rua=mailto:{report}"),
        },
        format!("TLS-RPT: senders report TLS failures towards {domain} to {report}"),
    ));

    // Client discovery: RFC 8314 section 5.1 asks for the implicit-TLS services to be
    // preferred, so they are listed first; a port of 0 publishes "not offered".
    let ports = setup.ports;
    let services = [
        (
            "_submissions._tcp",
            ports.submissions,
            "sending (submission over TLS)",
        ),
        (
            "_submission._tcp",
            ports.submission,
            "sending (submission with STARTTLS)",
        ),
        ("_imaps._tcp", ports.imaps, "reading (IMAP over TLS)"),
        ("_imap._tcp", ports.imap, "reading (IMAP with STARTTLS)"),
        ("_pop3s._tcp", ports.pop3s, "reading (POP3 over TLS)"),
        ("_pop3._tcp", ports.pop3, "reading (POP3 with STLS)"),
    ];
    for (service, port, what) in services {
        let (value, why) = if port == 0 {
            (
                Value::Srv {
                    priority: 0,
                    weight: 0,
                    port: 0,
                    target: String::new(),
                },
                format!("{what}: not offered"),
            )
        } else {
            (
                Value::Srv {
                    priority: 0,
                    weight: 1,
                    port,
                    target: client_host.clone(),
                },
                format!("{what}: {client_host} port {port}"),
            )
        };
        out.push(Record::new(
            Group::ClientDiscovery,
            Kind::Srv,
            format!("{service}.{domain}"),
            value,
            why,
        ));
    }
    for (label, who) in [
        ("autoconfig", "Thunderbird and other clients fetch"),
        ("autodiscover", "Outlook fetches"),
    ] {
        out.push(Record::new(
            Group::ClientDiscovery,
            Kind::Cname,
            format!("{label}.{domain}"),
            Value::Cname {
                target: client_host.clone(),
            },
            format!("{who} their settings from tegami's HTTP listener here"),
        ));
    }
    out
}

/// How a record compares with DNS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Missing,
    Wrong,
    /// Found, but there is nothing to compare it with (an address not configured).
    Present,
    /// DNS did not answer (timeout, SERVFAIL, REFUSED).
    Error,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Missing => "missing",
            Status::Wrong => "wrong",
            Status::Present => "present",
            Status::Error => "error",
        }
    }

    /// Whether this status means the domain is not set up right.
    pub fn is_problem(self) -> bool {
        matches!(self, Status::Missing | Status::Wrong | Status::Error)
    }
}

/// What DNS said about one name and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Records(Vec<Value>),
    /// NXDOMAIN, or the name exists without records of this type.
    NoRecords,
    /// No usable answer: the reason.
    Failed(String),
}

/// The outcome of comparing one record with DNS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub status: Status,
    /// The records found that bear on this one, as zone data.
    pub found: Vec<String>,
    /// Why it is wrong or missing, or what was not compared.
    pub detail: String,
}

/// Compares a record with the answer DNS gave for its name and type.
pub fn compare(record: &Record, answer: &Answer) -> Verdict {
    let values = match answer {
        Answer::Failed(reason) => {
            return Verdict {
                status: Status::Error,
                found: Vec::new(),
                detail: format!("DNS gave no answer: {reason}"),
            };
        }
        Answer::NoRecords => Vec::new(),
        Answer::Records(values) => values.clone(),
    };
    // Only the TXT records of the right protocol matter: a name may hold several.
    let relevant: Vec<Value> = values
        .into_iter()
        .filter(|v| relevant(record.kind, v))
        .collect();
    let found: Vec<String> = relevant.iter().map(Value::zone_data).collect();
    let verdict = |status: Status, detail: String| Verdict {
        status,
        found: found.clone(),
        detail,
    };
    let Some(expected) = &record.expected else {
        let hint = record.hint.clone().unwrap_or_default();
        return if relevant.is_empty() && record.optional {
            verdict(
                Status::Ok,
                format!("none published, which is fine ({hint})"),
            )
        } else if relevant.is_empty() {
            verdict(Status::Missing, hint)
        } else {
            verdict(Status::Present, format!("not compared: {hint}"))
        };
    };
    if relevant.is_empty() {
        return verdict(Status::Missing, "no such record".into());
    }
    match (record.kind, expected) {
        (Kind::Mx, Value::Mx { host, .. }) => {
            if relevant
                .iter()
                .any(|v| matches!(v, Value::Mx { host: h, .. } if same_name(h, host)))
            {
                verdict(Status::Ok, String::new())
            } else {
                verdict(Status::Wrong, format!("no MX names {host}"))
            }
        }
        (Kind::A | Kind::Aaaa, Value::Ip { ip }) => {
            if relevant
                .iter()
                .any(|v| matches!(v, Value::Ip { ip: found } if found == ip))
            {
                verdict(Status::Ok, String::new())
            } else {
                verdict(Status::Wrong, format!("{ip} is not among the addresses"))
            }
        }
        (Kind::Spf, Value::Txt { text }) => {
            if relevant.len() > 1 {
                return verdict(
                    Status::Wrong,
                    "several SPF records: receivers treat that as an error (RFC 7208 section 3.2)"
                        .into(),
                );
            }
            // Extra mechanisms (another sender's include:) are fine as long as ours and
            // the final -all are there.
            let have: Vec<String> = words(txt(&relevant[0]));
            if words(text).iter().all(|w| have.contains(w)) {
                verdict(Status::Ok, String::new())
            } else {
                verdict(Status::Wrong, format!("SPF should contain: {text}"))
            }
        }
        (Kind::Dkim, Value::Txt { text }) => {
            let want = tag(text, "p").map(|p| strip_spaces(&p));
            if relevant
                .iter()
                .any(|v| tag(txt(v), "p").map(|p| strip_spaces(&p)) == want)
            {
                verdict(Status::Ok, String::new())
            } else {
                verdict(
                    Status::Wrong,
                    "the published key is not tegami's key for this selector".into(),
                )
            }
        }
        (Kind::Dmarc, Value::Txt { .. }) => {
            if relevant.len() > 1 {
                return verdict(
                    Status::Wrong,
                    "several DMARC records: receivers ignore them all (RFC 7489 section 6.6.3)"
                        .into(),
                );
            }
            match tag(txt(&relevant[0]), "p").as_deref() {
                Some("quarantine") | Some("reject") => verdict(Status::Ok, String::new()),
                Some(p) => verdict(
                    Status::Wrong,
                    format!("p={p} protects nothing: use p=quarantine (or reject)"),
                ),
                None => verdict(Status::Wrong, "no p= policy".into()),
            }
        }
        (Kind::MtaSts, Value::Txt { text }) => {
            let want = tag(text, "id");
            if relevant.len() == 1 && tag(txt(&relevant[0]), "id") == want {
                verdict(Status::Ok, String::new())
            } else {
                verdict(
                    Status::Wrong,
                    format!(
                        "the id must be {}: senders fetch the policy again only when it changes",
                        want.unwrap_or_default()
                    ),
                )
            }
        }
        (Kind::TlsRpt, Value::Txt { .. }) => {
            if relevant.len() == 1 && tag(txt(&relevant[0]), "rua").is_some_and(|r| !r.is_empty()) {
                verdict(Status::Ok, String::new())
            } else {
                verdict(
                    Status::Wrong,
                    "one TLSRPTv1 record with a rua= is needed".into(),
                )
            }
        }
        (
            Kind::Srv,
            Value::Srv {
                port: want_port,
                target: want_target,
                ..
            },
        ) => {
            // "Not offered" is the target "." whatever the port says (RFC 6186 section 4).
            let matches = relevant.iter().any(|v| {
                matches!(v, Value::Srv { port, target, .. }
                    if same_name(target, want_target) && (port == want_port || *want_port == 0))
            });
            if matches {
                verdict(Status::Ok, String::new())
            } else if *want_port == 0 {
                verdict(
                    Status::Wrong,
                    "the service is not offered: publish target \".\"".into(),
                )
            } else {
                verdict(
                    Status::Wrong,
                    format!("should point at {want_target} port {want_port}"),
                )
            }
        }
        (Kind::Cname, Value::Cname { target }) => {
            if relevant
                .iter()
                .any(|v| matches!(v, Value::Cname { target: t } if same_name(t, target)))
            {
                verdict(Status::Ok, String::new())
            } else {
                verdict(Status::Wrong, format!("should be an alias of {target}"))
            }
        }
        _ => verdict(
            Status::Error,
            "internal: record kind and value disagree".into(),
        ),
    }
}

/// Whether a found value is of the record's protocol (TXT names are shared).
fn relevant(kind: Kind, value: &Value) -> bool {
    let prefix = match kind {
        Kind::Spf => "v=spf1",
        Kind::Dmarc => "v=dmarc1",
        Kind::MtaSts => "v=stsv1",
        Kind::TlsRpt => "v=tlsrptv1",
        // The selector's name holds only the key: every TXT there is its key.
        Kind::Dkim => return matches!(value, Value::Txt { .. }),
        Kind::Mx => return matches!(value, Value::Mx { .. }),
        Kind::A => return matches!(value, Value::Ip { ip: IpAddr::V4(_) }),
        Kind::Aaaa => return matches!(value, Value::Ip { ip: IpAddr::V6(_) }),
        Kind::Srv => return matches!(value, Value::Srv { .. }),
        Kind::Cname => return matches!(value, Value::Cname { .. }),
    };
    match value {
        Value::Txt { text } => {
            let start: String = text
                .trim_start()
                .chars()
                .take(prefix.len())
                .collect::<String>()
                .to_ascii_lowercase();
            // "v=spf1" must be the whole first word, not "v=spf10".
            start == prefix
                && text
                    .trim_start()
                    .get(prefix.len()..)
                    .is_none_or(|rest| rest.is_empty() || rest.starts_with([' ', ';', '\t']))
        }
        _ => false,
    }
}

fn txt(value: &Value) -> &str {
    match value {
        Value::Txt { text } => text,
        _ => "",
    }
}

fn words(text: &str) -> Vec<String> {
    text.split_ascii_whitespace()
        .map(|w| w.to_ascii_lowercase())
        .collect()
}

fn strip_spaces(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

/// The value of `name=` in a `tag=value; tag=value` record (DKIM, DMARC, MTA-STS, TLS-RPT).
fn tag(text: &str, name: &str) -> Option<String> {
    text.split(';').find_map(|part| {
        let (key, value) = part.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_string())
    })
}

fn same_name(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

/// A name with its final dot, as zone files want it ("." alone for the root).
fn absolute(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

/// A TXT value as zone files want it: quoted strings of at most 255 octets, in parentheses
/// when there are several (a 2048-bit DKIM key needs two).
pub fn quoted_strings(value: &str) -> String {
    let chunks: Vec<String> = value
        .as_bytes()
        .chunks(255)
        .map(|c| {
            format!(
                "\"{}\"",
                String::from_utf8_lossy(c)
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
            )
        })
        .collect();
    match chunks.len() {
        0 => "\"\"".into(),
        1 => chunks[0].clone(),
        _ => format!("( {} )", chunks.join(" ")),
    }
}

#[cfg(test)]
mod tests;
