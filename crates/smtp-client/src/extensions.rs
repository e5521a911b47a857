//! The service extensions a server announces in its EHLO reply (RFC 5321 section 4.1.1.1).

use smtp_proto::Reply;

/// What the server offers. A server greeted with HELO offers nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extensions {
    pipelining: bool,
    size: Option<Option<u64>>,
    eight_bit_mime: bool,
    smtputf8: bool,
    starttls: bool,
    enhanced_status_codes: bool,
    auth: Vec<String>,
    /// Every keyword, in upper case, with its parameters as sent.
    keywords: Vec<(String, String)>,
}

impl Extensions {
    /// Reads the lines of a 250 EHLO reply after the first, which is the server's name.
    /// Unknown keywords are kept for [`Extensions::has`]; malformed parameters are read
    /// as if absent, since a client gains nothing by refusing to talk.
    pub fn from_ehlo(reply: &Reply) -> Self {
        let mut ext = Extensions::default();
        for line in reply.lines.iter().skip(1) {
            let line = line.trim();
            let (keyword, params) = line.split_once(' ').unwrap_or((line, ""));
            let keyword = keyword.to_ascii_uppercase();
            let params = params.trim();
            match keyword.as_str() {
                "PIPELINING" => ext.pipelining = true,
                // RFC 1870: SIZE without a number, or 0, announces no fixed limit.
                "SIZE" => {
                    ext.size = Some(params.parse::<u64>().ok().filter(|&n| n > 0));
                }
                "8BITMIME" => ext.eight_bit_mime = true,
                "SMTPUTF8" => ext.smtputf8 = true,
                "STARTTLS" => ext.starttls = true,
                "ENHANCEDSTATUSCODES" => ext.enhanced_status_codes = true,
                "AUTH" => {
                    for mechanism in params.split_ascii_whitespace() {
                        let mechanism = mechanism.to_ascii_uppercase();
                        if !ext.auth.contains(&mechanism) {
                            ext.auth.push(mechanism);
                        }
                    }
                }
                _ => {}
            }
            if !keyword.is_empty() {
                ext.keywords.push((keyword, params.to_owned()));
            }
        }
        ext
    }

    pub fn pipelining(&self) -> bool {
        self.pipelining
    }

    /// True when the server takes the SIZE parameter on MAIL.
    pub fn size_offered(&self) -> bool {
        self.size.is_some()
    }

    /// The largest message the server announced, if it announced a limit.
    pub fn size_limit(&self) -> Option<u64> {
        self.size.flatten()
    }

    pub fn eight_bit_mime(&self) -> bool {
        self.eight_bit_mime
    }

    pub fn smtputf8(&self) -> bool {
        self.smtputf8
    }

    pub fn starttls(&self) -> bool {
        self.starttls
    }

    pub fn enhanced_status_codes(&self) -> bool {
        self.enhanced_status_codes
    }

    /// The SASL mechanisms offered, in upper case.
    pub fn auth_mechanisms(&self) -> &[String] {
        &self.auth
    }

    /// True when the server announced `keyword` (any case).
    pub fn has(&self, keyword: &str) -> bool {
        self.keywords
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(keyword))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(lines: &[&str], expect: &str) {
        let mut all = vec!["mx.example greets you"];
        all.extend_from_slice(lines);
        let ext = Extensions::from_ehlo(&Reply::multiline(250, None, all));
        let got = format!(
            "pipelining={} size={:?} limit={:?} 8bit={} utf8={} tls={} esc={} auth={:?}",
            ext.pipelining(),
            ext.size_offered(),
            ext.size_limit(),
            ext.eight_bit_mime(),
            ext.smtputf8(),
            ext.starttls(),
            ext.enhanced_status_codes(),
            ext.auth_mechanisms(),
        );
        assert_eq!(got, expect, "{lines:?}");
    }

    #[test]
    fn parsing() {
        check(
            &[],
            "pipelining=false size=false limit=None 8bit=false utf8=false tls=false esc=false auth=[]",
        );
        check(
            &[
                "PIPELINING",
                "SIZE 10240000",
                "8BITMIME",
                "SMTPUTF8",
                "STARTTLS",
                "ENHANCEDSTATUSCODES",
                "AUTH PLAIN LOGIN",
            ],
            "pipelining=true size=true limit=Some(10240000) 8bit=true utf8=true tls=true esc=true auth=[\"PLAIN\", \"LOGIN\"]",
        );
        check(
            &["pipelining", "size", "auth login  cram-md5", "AUTH=LOGIN"],
            "pipelining=true size=true limit=None 8bit=false utf8=false tls=false esc=false auth=[\"LOGIN\", \"CRAM-MD5\"]",
        );
        check(
            &["SIZE 0"],
            "pipelining=false size=true limit=None 8bit=false utf8=false tls=false esc=false auth=[]",
        );
        check(
            &["SIZE lots"],
            "pipelining=false size=true limit=None 8bit=false utf8=false tls=false esc=false auth=[]",
        );
        let ext = Extensions::from_ehlo(&Reply::multiline(250, None, ["mx", "DSN", "X-FOO bar"]));
        assert!(ext.has("dsn") && ext.has("X-FOO") && !ext.has("mx"));
    }
}
