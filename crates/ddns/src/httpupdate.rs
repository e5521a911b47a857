//! Updating the record through a provider's HTTP update URL (the dyndns2 convention most
//! DDNS providers follow: `https://host/nic/update?hostname={name}&myip={ip}` with basic
//! auth, answering `good IP` or `nochg IP`, or a word such as `badauth` on failure).

use std::net::IpAddr;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::http::{Call, HttpClient, HttpError};

/// What a query value may hold unescaped (RFC 3986 unreserved characters).
const VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// dyndns2 answers that mean the update did not happen, with what to do about each.
const REFUSALS: &[(&str, &str)] = &[
    ("badauth", "the user name or password is wrong"),
    ("notfqdn", "the host name is not a fully qualified name"),
    ("nohost", "the host name does not exist in this account"),
    ("numhost", "too many host names in one update"),
    (
        "abuse",
        "the provider blocked the host name for too many updates",
    ),
    ("badagent", "the provider refuses this client"),
    ("dnserr", "the provider's DNS failed; it will work later"),
    ("911", "the provider has a problem; it will work later"),
    ("!donator", "the update needs a paid account feature"),
];

#[derive(Debug, Clone)]
pub struct HttpUpdate {
    /// The URL with `{name}` and `{ip}` where the record's name and address go.
    pub template: String,
    pub record: String,
    pub auth: Option<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpUpdateError {
    #[error("cannot reach the update URL: {0}")]
    Http(#[from] HttpError),
    #[error("the update URL answered HTTP {status} ({snippet:?}){hint}")]
    Status {
        status: u16,
        snippet: String,
        hint: &'static str,
    },
    #[error("the update URL refused: {answer:?} ({meaning})")]
    Refused {
        answer: String,
        meaning: &'static str,
    },
}

/// The template with the name and the address put in, each percent-encoded.
pub fn fill(template: &str, record: &str, ip: IpAddr) -> String {
    let ip = ip.to_string();
    template
        .replace("{name}", &utf8_percent_encode(record, VALUE).to_string())
        .replace("{ip}", &utf8_percent_encode(&ip, VALUE).to_string())
}

/// Whether the answer says the update happened (2xx and no dyndns2 refusal word).
pub fn verdict(status: u16, body: &[u8]) -> Result<(), HttpUpdateError> {
    let text = String::from_utf8_lossy(body);
    let first = text.split_whitespace().next().unwrap_or("").to_string();
    if !(200..300).contains(&status) {
        return Err(HttpUpdateError::Status {
            status,
            snippet: text.trim().chars().take(120).collect(),
            hint: match status {
                401 | 403 => "; check ddns.update_username and ddns.update_password",
                404 => "; check ddns.update_url",
                _ => "",
            },
        });
    }
    if let Some((_, meaning)) = REFUSALS.iter().find(|(word, _)| first == *word) {
        return Err(HttpUpdateError::Refused {
            answer: text.trim().chars().take(120).collect(),
            meaning,
        });
    }
    Ok(())
}

impl HttpUpdate {
    pub async fn update(&self, client: &HttpClient, ip: IpAddr) -> Result<(), HttpUpdateError> {
        let url = fill(&self.template, &self.record, ip);
        let mut call = Call::get(&url);
        call.basic_auth = self.auth.as_ref().map(|(u, p)| (u.as_str(), p.as_str()));
        let response = client.send(call).await?;
        verdict(response.status, &response.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_gets_the_name_and_the_address_encoded() {
        let url = fill(
            "https://dyn.example.net/nic/update?hostname={name}&myip={ip}",
            "home.example.com",
            "2001:db8::1".parse().unwrap(),
        );
        assert_eq!(
            url,
            "https://dyn.example.net/nic/update?hostname=home.example.com&myip=2001%3Adb8%3A%3A1"
        );
        let url = fill("http://x/u?h={name}", "a&b=c", "192.0.2.1".parse().unwrap());
        assert_eq!(url, "http://x/u?h=a%26b%3Dc");
    }

    #[test]
    fn dyndns2_answers_decide() {
        assert!(verdict(200, b"good 192.0.2.1").is_ok());
        assert!(verdict(200, b"nochg 192.0.2.1\n").is_ok());
        assert!(verdict(204, b"").is_ok());
        let e = verdict(200, b"badauth").unwrap_err().to_string();
        assert!(e.contains("user name or password"), "{e}");
        let e = verdict(401, b"Unauthorized").unwrap_err().to_string();
        assert!(
            e.contains("HTTP 401") && e.contains("update_password"),
            "{e}"
        );
        assert!(verdict(500, b"oops").is_err());
    }
}
