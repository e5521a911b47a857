//! Mail client autoconfiguration on the HTTP listener: Thunderbird's autoconfig XML,
//! Outlook's autodiscover (POX), an Apple `.mobileconfig` profile, and the MTA-STS policy
//! file. Built from a plain [`ClientSettings`]: the settings are the same for every domain
//! the server hosts, so nothing here needs the store.
//!
//! Everything taken from a request (addresses, host names) is checked and bounded, and
//! escaped where it is written into XML.

use std::fmt::Write as _;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sha2::{Digest, Sha256};

/// What clients are told. A port of 0 leaves that protocol out.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// The host name clients connect to.
    pub host: String,
    pub imaps: u16,
    pub imap: u16,
    pub pop3s: u16,
    pub pop3: u16,
    pub submissions: u16,
    pub submission: u16,
    /// The MTA-STS policy text served at `/.well-known/mta-sts.txt`; `None` serves nothing.
    pub mta_sts_policy: Option<String>,
}

/// Largest autodiscover request body: the real ones are a few hundred bytes.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;

/// The routes, to merge into the HTTP listener's router.
pub fn router(settings: ClientSettings) -> Router {
    let settings = std::sync::Arc::new(settings);
    Router::new()
        .route(
            "/.well-known/autoconfig/mail/config-v1.1.xml",
            get(thunderbird),
        )
        .route("/mail/config-v1.1.xml", get(thunderbird))
        .route("/autodiscover/autodiscover.xml", post(autodiscover))
        .route("/Autodiscover/Autodiscover.xml", post(autodiscover))
        .route("/apple/mobileconfig", get(mobileconfig))
        .route("/.well-known/mta-sts.txt", get(mta_sts))
        // Bodies over the limit are refused (413) before they are read whole.
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(settings)
}

type Settings = State<std::sync::Arc<ClientSettings>>;

fn bad_request(what: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{what}\n"),
    )
        .into_response()
}

fn xml(body: String) -> Response {
    (
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

/// `user@domain` with the domain lower-cased, or `None` when it is not a plausible address
/// (RFC 5321 lengths; no spaces, quotes, brackets or controls, which no autoconfigured
/// account needs).
pub fn check_address(address: &str) -> Option<(String, String)> {
    let address = address.trim();
    if address.len() > 254 {
        return None;
    }
    let (local, domain) = address.rsplit_once('@')?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"\"(),:;<>@[\\]".contains(&b));
    let domain = check_domain(domain)?;
    local_ok.then(|| (format!("{local}@{domain}"), domain))
}

/// A host name: letters, digits, hyphens and dots, lower-cased, no final dot.
fn check_domain(domain: &str) -> Option<String> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let ok = !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    ok.then_some(domain)
}

/// Longest query string read; an address fits many times over.
const MAX_QUERY_BYTES: usize = 2048;

/// The first value of `name` in the query string, percent-decoded (`None` when absent, when
/// the query is over [`MAX_QUERY_BYTES`], or when the value is not UTF-8).
pub fn query_param(uri: &Uri, name: &str) -> Option<String> {
    let query = uri.query()?;
    if query.len() > MAX_QUERY_BYTES {
        return None;
    }
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key)? == name).then(|| percent_decode(value))?
    })
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Escapes text for XML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Thunderbird asks `autoconfig.<domain>/mail/config-v1.1.xml?emailaddress=...` or
/// `<domain>/.well-known/autoconfig/mail/config-v1.1.xml`. The domain comes from the
/// address when given, else from the Host header.
async fn thunderbird(State(settings): Settings, headers: HeaderMap, uri: Uri) -> Response {
    let domain = match query_param(&uri, "emailaddress").as_deref() {
        Some(address) => match check_address(address) {
            Some((_, domain)) => domain,
            None => return bad_request("emailaddress is not a valid address"),
        },
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            // Without the port, and without the autoconfig. label Thunderbird adds.
            let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
            let host = host.strip_prefix("autoconfig.").unwrap_or(host);
            match check_domain(host) {
                Some(domain) => domain,
                None => return bad_request("give ?emailaddress=user@domain"),
            }
        }
    };
    xml(thunderbird_xml(&settings, &domain))
}

/// The `clientConfig` document (Mozilla's autoconfig format, version 1.1).
pub fn thunderbird_xml(s: &ClientSettings, domain: &str) -> String {
    let host = escape(&s.host);
    let domain = escape(domain);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str("<clientConfig version=\"1.1\">\n");
    let _ = writeln!(out, "  <emailProvider id=\"{domain}\">");
    let _ = writeln!(out, "    <domain>{domain}</domain>");
    let _ = writeln!(out, "    <displayName>{domain} mail</displayName>");
    let _ = writeln!(out, "    <displayShortName>{domain}</displayShortName>");
    let servers = [
        ("incomingServer", "imap", s.imaps, "SSL"),
        ("incomingServer", "imap", s.imap, "STARTTLS"),
        ("incomingServer", "pop3", s.pop3s, "SSL"),
        ("incomingServer", "pop3", s.pop3, "STARTTLS"),
        ("outgoingServer", "smtp", s.submissions, "SSL"),
        ("outgoingServer", "smtp", s.submission, "STARTTLS"),
    ];
    for (element, kind, port, socket) in servers {
        if port == 0 {
            continue;
        }
        let _ = write!(
            out,
            "    <{element} type=\"{kind}\">\n      <hostname>{host}</hostname>\n      <port>{port}</port>\n      <socketType>{socket}</socketType>\n      <authentication>password-cleartext</authentication>\n      <username>%EMAILADDRESS%</username>\n    </{element}>\n"
        );
    }
    out.push_str("  </emailProvider>\n</clientConfig>\n");
    out
}

/// The `<EMailAddress>` of an Outlook autodiscover request. A plain search, not an XML
/// parser: the request is small and bounded, and nothing else in it is used.
pub fn autodiscover_address(body: &str) -> Option<&str> {
    let start = body.find("<EMailAddress>")? + "<EMailAddress>".len();
    let end = body[start..].find("</EMailAddress>")?;
    Some(body[start..start + end].trim())
}

async fn autodiscover(State(settings): Settings, body: Bytes) -> Response {
    if body.len() > MAX_REQUEST_BYTES {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request is larger than {MAX_REQUEST_BYTES} bytes\n"),
        )
            .into_response();
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return bad_request("the request is not UTF-8");
    };
    let Some(address) = autodiscover_address(text) else {
        return bad_request("the request has no <EMailAddress>");
    };
    let Some((address, _)) = check_address(address) else {
        return bad_request("<EMailAddress> is not a valid address");
    };
    xml(autodiscover_xml(&settings, &address))
}

/// Outlook's "POX" autodiscover answer (responseschema/2006a): IMAP, POP3 and SMTP.
pub fn autodiscover_xml(s: &ClientSettings, address: &str) -> String {
    let host = escape(&s.host);
    let login = escape(address);
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006\">\n\
         \x20 <Response xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a\">\n\
         \x20   <Account>\n\
         \x20     <AccountType>email</AccountType>\n\
         \x20     <Action>settings</Action>\n",
    );
    // Implicit TLS when offered (RFC 8314 prefers it), else STARTTLS.
    let pick = |tls: u16, starttls: u16| match (tls, starttls) {
        (0, 0) => None,
        (0, port) => Some((port, "<Encryption>TLS</Encryption>")),
        (port, _) => Some((port, "<SSL>on</SSL>")),
    };
    for (kind, choice) in [
        ("IMAP", pick(s.imaps, s.imap)),
        ("POP3", pick(s.pop3s, s.pop3)),
        ("SMTP", pick(s.submissions, s.submission)),
    ] {
        let Some((port, encryption)) = choice else {
            continue;
        };
        let _ = write!(
            out,
            "      <Protocol>\n        <Type>{kind}</Type>\n        <Server>{host}</Server>\n        <Port>{port}</Port>\n        <LoginName>{login}</LoginName>\n        <DomainRequired>off</DomainRequired>\n        <SPA>off</SPA>\n        {encryption}\n        <AuthRequired>on</AuthRequired>\n      </Protocol>\n"
        );
    }
    out.push_str("    </Account>\n  </Response>\n</Autodiscover>\n");
    out
}

async fn mobileconfig(State(settings): Settings, uri: Uri) -> Response {
    let Some(email) = query_param(&uri, "email") else {
        return bad_request("give ?email=user@domain");
    };
    let Some((address, domain)) = check_address(&email) else {
        return bad_request("email is not a valid address");
    };
    if settings.imaps == 0 && settings.imap == 0 {
        return (StatusCode::NOT_FOUND, "this server offers no IMAP\n").into_response();
    }
    let filename = format!("{domain}.mobileconfig");
    (
        [
            (
                header::CONTENT_TYPE,
                "application/x-apple-aspen-config; charset=utf-8".to_string(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        mobileconfig_plist(&settings, &address),
    )
        .into_response()
}

/// A UUID (version 4 layout) derived from `seed`, so the same account always gets the same
/// profile identifiers and installing it again replaces it instead of adding a copy.
fn uuid(seed: &str) -> String {
    let mut b: [u8; 16] = Sha256::digest(seed.as_bytes())[..16]
        .try_into()
        .expect("16 bytes");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02X}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// An unsigned configuration profile with one `com.apple.mail.managed` payload: IMAP in,
/// SMTP out, both with the address as the user name and TLS when the port offers it.
pub fn mobileconfig_plist(s: &ClientSettings, address: &str) -> String {
    let (in_port, in_ssl) = if s.imaps != 0 {
        (s.imaps, true)
    } else {
        (s.imap, false)
    };
    let (out_port, out_ssl) = if s.submissions != 0 {
        (s.submissions, true)
    } else {
        (s.submission, false)
    };
    let host = escape(&s.host);
    let addr = escape(address);
    // Reverse-DNS identifiers from the host name, as Apple's tools make them.
    let reversed: Vec<&str> = s.host.rsplit('.').collect();
    let base = escape(&format!("{}.tegami", reversed.join(".")));
    let tf = |b: bool| if b { "<true/>" } else { "<false/>" };
    let account_uuid = uuid(&format!("mail {address} {}", s.host));
    let profile_uuid = uuid(&format!("profile {address} {}", s.host));
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>PayloadContent</key>
  <array>
    <dict>
      <key>EmailAccountDescription</key>
      <string>{addr}</string>
      <key>EmailAccountName</key>
      <string>{addr}</string>
      <key>EmailAccountType</key>
      <string>EmailTypeIMAP</string>
      <key>EmailAddress</key>
      <string>{addr}</string>
      <key>IncomingMailServerAuthentication</key>
      <string>EmailAuthPassword</string>
      <key>IncomingMailServerHostName</key>
      <string>{host}</string>
      <key>IncomingMailServerPortNumber</key>
      <integer>{in_port}</integer>
      <key>IncomingMailServerUseSSL</key>
      {in_ssl}
      <key>IncomingMailServerUsername</key>
      <string>{addr}</string>
      <key>OutgoingMailServerAuthentication</key>
      <string>EmailAuthPassword</string>
      <key>OutgoingMailServerHostName</key>
      <string>{host}</string>
      <key>OutgoingMailServerPortNumber</key>
      <integer>{out_port}</integer>
      <key>OutgoingMailServerUseSSL</key>
      {out_ssl}
      <key>OutgoingMailServerUsername</key>
      <string>{addr}</string>
      <key>OutgoingPasswordSameAsIncomingPassword</key>
      <true/>
      <key>PayloadDescription</key>
      <string>Mail account {addr}</string>
      <key>PayloadDisplayName</key>
      <string>{addr}</string>
      <key>PayloadIdentifier</key>
      <string>{base}.mail.{account_uuid}</string>
      <key>PayloadType</key>
      <string>com.apple.mail.managed</string>
      <key>PayloadUUID</key>
      <string>{account_uuid}</string>
      <key>PayloadVersion</key>
      <integer>1</integer>
    </dict>
  </array>
  <key>PayloadDescription</key>
  <string>Mail settings for {addr} on {host}</string>
  <key>PayloadDisplayName</key>
  <string>Mail: {addr}</string>
  <key>PayloadIdentifier</key>
  <string>{base}.{profile_uuid}</string>
  <key>PayloadRemovalDisallowed</key>
  <false/>
  <key>PayloadType</key>
  <string>Configuration</string>
  <key>PayloadUUID</key>
  <string>{profile_uuid}</string>
  <key>PayloadVersion</key>
  <integer>1</integer>
</dict>
</plist>
"#,
        in_ssl = tf(in_ssl),
        out_ssl = tf(out_ssl),
    )
}

async fn mta_sts(State(settings): Settings) -> Response {
    match &settings.mta_sts_policy {
        Some(policy) => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            policy.clone(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no MTA-STS policy\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ClientSettings {
        ClientSettings {
            host: "mail.example.com".into(),
            imaps: 993,
            imap: 143,
            pop3s: 995,
            pop3: 0,
            submissions: 465,
            submission: 587,
            mta_sts_policy: None,
        }
    }

    #[test]
    fn addresses_are_checked() {
        for (input, expect) in [
            ("Alice@Example.COM", Some("Alice@example.com")),
            ("a+tag@mail.example.com.", Some("a+tag@mail.example.com")),
            ("", None),
            ("alice", None),
            ("@example.com", None),
            ("alice@", None),
            ("a<b>@example.com", None),
            ("a b@example.com", None),
            ("alice@exa_mple.com", None),
            ("alice@-x.com", None),
        ] {
            assert_eq!(
                check_address(input).map(|(a, _)| a).as_deref(),
                expect,
                "{input:?}"
            );
        }
        let long = format!("{}@example.com", "a".repeat(65));
        assert_eq!(check_address(&long), None);
    }

    #[test]
    fn thunderbird_lists_each_offered_server() {
        let doc = thunderbird_xml(&settings(), "example.com");
        assert!(doc.contains("<emailProvider id=\"example.com\">"));
        assert_eq!(doc.matches("<incomingServer type=\"imap\">").count(), 2);
        // pop3 = 0: only POP3S.
        assert_eq!(doc.matches("<incomingServer type=\"pop3\">").count(), 1);
        assert!(doc.contains("<port>995</port>\n      <socketType>SSL</socketType>"));
        assert!(doc.contains("<port>587</port>\n      <socketType>STARTTLS</socketType>"));
        assert!(!doc.contains("<port>110</port>"));
    }

    #[test]
    fn request_text_is_escaped() {
        let doc = autodiscover_xml(&settings(), "a&b'c@example.com");
        assert!(doc.contains("<LoginName>a&amp;b&apos;c@example.com</LoginName>"));
        let plist = mobileconfig_plist(&settings(), "a&b@example.com");
        assert!(plist.contains("<string>a&amp;b@example.com</string>"));
        assert!(!plist.contains("a&b"));
    }

    #[test]
    fn autodiscover_finds_the_address() {
        let body = "<?xml version=\"1.0\"?><Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006\"><Request><EMailAddress> bob@example.com </EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>";
        assert_eq!(autodiscover_address(body), Some("bob@example.com"));
        assert_eq!(autodiscover_address("<Request></Request>"), None);
        let doc = autodiscover_xml(&settings(), "bob@example.com");
        assert!(doc.contains(
            "<Type>IMAP</Type>\n        <Server>mail.example.com</Server>\n        <Port>993</Port>"
        ));
        assert!(doc.contains(
            "<Type>SMTP</Type>\n        <Server>mail.example.com</Server>\n        <Port>465</Port>"
        ));
    }

    #[test]
    fn query_values_are_decoded() {
        let uri: Uri = "/x?a=1&email=bob%2Btag%40example.com&b".parse().unwrap();
        assert_eq!(
            query_param(&uri, "email").as_deref(),
            Some("bob+tag@example.com")
        );
        assert_eq!(query_param(&uri, "b").as_deref(), Some(""));
        assert_eq!(query_param(&uri, "c"), None);
        let bad: Uri = "/x?email=%zz".parse().unwrap();
        assert_eq!(query_param(&bad, "email"), None);
    }

    #[test]
    fn profile_identifiers_are_stable_uuids() {
        let a = uuid("x");
        assert_eq!(a, uuid("x"));
        assert_ne!(a, uuid("y"));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }
}
