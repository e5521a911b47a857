//! Finding this server's public address: from a URL that echoes the caller's address as
//! plain text, or from the addresses of a network interface.

use std::net::IpAddr;

use crate::http::{Call, HttpClient, HttpError};

/// Which record is kept: A for IPv4, AAAA for IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn matches(self, ip: IpAddr) -> bool {
        matches!(
            (self, ip),
            (Family::V4, IpAddr::V4(_)) | (Family::V6, IpAddr::V6(_))
        )
    }

    pub fn label(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressSource {
    /// A URL whose body is the caller's address.
    Url(String),
    /// A network interface by name ("eth0", "ppp0").
    Interface(String),
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DetectError {
    #[error("cannot ask {url} for the public address: {source}")]
    Http { url: String, source: HttpError },
    #[error("{url} answered HTTP {status} ({snippet:?}) instead of an address")]
    Status {
        url: String,
        status: u16,
        snippet: String,
    },
    #[error(
        "{url} answered {snippet:?}, which is not an address (the URL must answer the caller's address as plain text)"
    )]
    NotAnAddress { url: String, snippet: String },
    #[error("{from} gave {ip}, an {got} address, but ddns.family is {want}")]
    WrongFamily {
        from: String,
        ip: IpAddr,
        got: &'static str,
        want: &'static str,
    },
    #[error("cannot list the network interfaces: {0}")]
    Interfaces(std::io::Error),
    #[error(
        "interface {name} has no usable {family} address (is it up? `ip addr show {name}` lists its addresses)"
    )]
    NoAddress { name: String, family: &'static str },
}

/// Asks the configured source for the current address.
pub async fn detect(
    source: &AddressSource,
    family: Family,
    client: &HttpClient,
) -> Result<IpAddr, DetectError> {
    match source {
        AddressSource::Url(url) => {
            let response =
                client
                    .send(Call::get(url))
                    .await
                    .map_err(|source| DetectError::Http {
                        url: url.clone(),
                        source,
                    })?;
            if !(200..300).contains(&response.status) {
                return Err(DetectError::Status {
                    url: url.clone(),
                    status: response.status,
                    snippet: response.snippet(),
                });
            }
            parse_echo(url, &response.body, family)
        }
        AddressSource::Interface(name) => {
            let all = if_addrs::get_if_addrs().map_err(DetectError::Interfaces)?;
            let addrs: Vec<(String, IpAddr)> =
                all.into_iter().map(|i| (i.name.clone(), i.ip())).collect();
            pick_interface_address(&addrs, name, family).ok_or_else(|| DetectError::NoAddress {
                name: name.clone(),
                family: family.label(),
            })
        }
    }
}

/// The echo service's answer: one address, surrounding white space allowed.
pub fn parse_echo(url: &str, body: &[u8], family: Family) -> Result<IpAddr, DetectError> {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let ip: IpAddr = text.parse().map_err(|_| DetectError::NotAnAddress {
        url: url.to_string(),
        snippet: text.chars().take(80).collect(),
    })?;
    if !family.matches(ip) {
        return Err(DetectError::WrongFamily {
            from: url.to_string(),
            ip,
            got: if ip.is_ipv4() { "ipv4" } else { "ipv6" },
            want: family.label(),
        });
    }
    Ok(ip)
}

/// The first address of the family on the named interface. IPv6 link-local addresses
/// (fe80::/10) are skipped: they are never what a DNS record should hold.
pub fn pick_interface_address(
    addrs: &[(String, IpAddr)],
    name: &str,
    family: Family,
) -> Option<IpAddr> {
    addrs
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, ip)| *ip)
        .filter(|ip| family.matches(*ip))
        .find(|ip| match ip {
            IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
            IpAddr::V4(_) => true,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_echo_is_one_address_of_the_right_family() {
        let url = "http://echo.test/";
        let ok = |body: &str, family| {
            parse_echo(url, body.as_bytes(), family).map_err(|e| e.to_string())
        };
        assert_eq!(
            ok("203.0.113.7\n", Family::V4).unwrap(),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            ok("  2001:db8::7 \r\n", Family::V6).unwrap(),
            "2001:db8::7".parse::<IpAddr>().unwrap()
        );
        assert!(
            ok("<html>203.0.113.7</html>", Family::V4)
                .unwrap_err()
                .contains("not an address")
        );
        assert!(
            ok("2001:db8::7", Family::V4)
                .unwrap_err()
                .contains("ddns.family is ipv4")
        );
        assert!(ok("", Family::V4).is_err());
    }

    #[test]
    fn an_interface_gives_its_first_usable_address() {
        let addrs: Vec<(String, IpAddr)> = [
            ("lo", "127.0.0.1"),
            ("eth0", "fe80::1"),
            ("eth0", "198.51.100.4"),
            ("eth0", "2001:db8::4"),
        ]
        .iter()
        .map(|(n, ip)| (n.to_string(), ip.parse().unwrap()))
        .collect();
        assert_eq!(
            pick_interface_address(&addrs, "eth0", Family::V4),
            Some("198.51.100.4".parse().unwrap())
        );
        assert_eq!(
            pick_interface_address(&addrs, "eth0", Family::V6),
            Some("2001:db8::4".parse().unwrap())
        );
        assert_eq!(pick_interface_address(&addrs, "lo", Family::V6), None);
        assert_eq!(pick_interface_address(&addrs, "ppp0", Family::V4), None);
    }
}
