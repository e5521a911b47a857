//! Asking DNS for one name and type, through the hickory resolver that `mail-auth` is built
//! on (the same one the outbound queue uses), and turning the answer into [`Answer`].

use std::net::IpAddr;

use mail_auth::hickory_resolver::TokioResolver;
use mail_auth::hickory_resolver::proto::ProtoErrorKind;
use mail_auth::hickory_resolver::proto::op::ResponseCode;
use mail_auth::hickory_resolver::proto::rr::{RData, RecordType};

use crate::{Answer, RType, Value};

/// The records of type `rtype` at `name`. NXDOMAIN and "no records of this type" are both
/// [`Answer::NoRecords`]; a server that refuses or fails is [`Answer::Failed`], so that a
/// broken resolver is never reported as a missing record.
pub async fn lookup(resolver: &TokioResolver, name: &str, rtype: RType) -> Answer {
    // The final dot keeps the resolver's search list out of it.
    let fqdn = format!("{}.", name.trim_end_matches('.'));
    let query = match rtype {
        RType::MX => RecordType::MX,
        RType::A => RecordType::A,
        RType::AAAA => RecordType::AAAA,
        RType::TXT => RecordType::TXT,
        RType::SRV => RecordType::SRV,
        RType::CNAME => RecordType::CNAME,
    };
    let lookup = match resolver.lookup(fqdn.as_str(), query).await {
        Ok(lookup) => lookup,
        Err(e) => {
            if let ProtoErrorKind::NoRecordsFound(no) = e.kind()
                && matches!(
                    no.response_code,
                    ResponseCode::NXDomain | ResponseCode::NoError
                )
            {
                return Answer::NoRecords;
            }
            return Answer::Failed(e.to_string());
        }
    };
    let values: Vec<Value> = lookup
        .record_iter()
        .filter(|r| r.record_type() == query)
        .filter_map(|r| value(r.data()))
        .collect();
    if values.is_empty() {
        Answer::NoRecords
    } else {
        Answer::Records(values)
    }
}

fn value(data: &RData) -> Option<Value> {
    Some(match data {
        RData::MX(mx) => Value::Mx {
            preference: mx.preference(),
            host: name(&mx.exchange().to_ascii()),
        },
        RData::A(a) => Value::Ip {
            ip: IpAddr::V4(a.0),
        },
        RData::AAAA(a) => Value::Ip {
            ip: IpAddr::V6(a.0),
        },
        // A TXT record of several strings is their concatenation (RFC 7208 section 3.3,
        // RFC 6376 section 3.6.2.2).
        RData::TXT(txt) => Value::Txt {
            text: txt
                .txt_data()
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect(),
        },
        RData::SRV(srv) => Value::Srv {
            priority: srv.priority(),
            weight: srv.weight(),
            port: srv.port(),
            target: name(&srv.target().to_ascii()),
        },
        RData::CNAME(cname) => Value::Cname {
            target: name(&cname.0.to_ascii()),
        },
        _ => return None,
    })
}

fn name(text: &str) -> String {
    text.trim_end_matches('.').to_ascii_lowercase()
}
