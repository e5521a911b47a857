//! The trace headers prepended to every received message (RFC 5321 section 4.4).

use std::net::IpAddr;

pub struct Trace<'a> {
    pub return_path: &'a str,
    /// The `Authentication-Results` header of the inbound checks, CRLF-terminated. It goes
    /// above this hop's Received header, as RFC 8601 section 5 asks.
    pub auth_results: Option<&'a str>,
    pub helo: &'a str,
    pub peer: IpAddr,
    pub hostname: &'a str,
    /// "SMTP", "ESMTP", "ESMTPS", "UTF8SMTPS"... as registered for the Received header's WITH.
    pub protocol: &'a str,
    pub id: &'a str,
    /// Named only when there is exactly one: naming several would leak the others' addresses
    /// to each recipient and would keep one body from being shared by all of them.
    pub single_recipient: Option<&'a str>,
    /// When the message arrived, in the zone the Received line shows.
    pub date: jiff::Zoned,
}

impl Trace<'_> {
    pub fn write(&self, out: &mut Vec<u8>) {
        let date = jiff::fmt::rfc2822::to_string(&self.date)
            .unwrap_or_else(|_| "Thu, 01 Jan 1970 00:00:00 +0000".into());
        let helo = sanitize(self.helo);
        out.extend_from_slice(
            format!("Return-Path: <{}>\r\n", sanitize(self.return_path)).as_bytes(),
        );
        if let Some(results) = self.auth_results {
            out.extend_from_slice(results.as_bytes());
        }
        out.extend_from_slice(
            format!(
                "Received: from {helo} ([{}])\r\n\tby {} (tegami) with {} id {}",
                self.peer, self.hostname, self.protocol, self.id
            )
            .as_bytes(),
        );
        if let Some(rcpt) = self.single_recipient {
            out.extend_from_slice(format!("\r\n\tfor <{}>", sanitize(rcpt)).as_bytes());
        }
        out.extend_from_slice(format!(";\r\n\t{date}\r\n").as_bytes());
    }
}

/// Keeps client-supplied text from breaking the header: no control characters, no line breaks.
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_headers_are_folded_header_lines() {
        let mut out = Vec::new();
        Trace {
            return_path: "a@b.example",
            auth_results: None,
            helo: "client\r\nInjected: yes",
            peer: "127.0.0.1".parse().unwrap(),
            hostname: "mx.test",
            protocol: "ESMTP",
            id: "abc",
            single_recipient: Some("bob@mx.test"),
            date: "2026-11-23T12:00:00+00:00[UTC]".parse().unwrap(),
        }
        .write(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "Return-Path: <a@b.example>\r\nReceived: from client??Injected: yes ([127.0.0.1])\r\n\tby mx.test (tegami) with ESMTP id abc\r\n\tfor <bob@mx.test>;\r\n\tMon, 23 Nov 2026 12:00:00 +0000\r\n"
        );
    }
}
