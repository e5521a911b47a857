//! A file posted from a page (`multipart/form-data`, RFC 7578) with its CSRF token: the
//! subscribers' CSV import. The console's other forms are URL-encoded and go through
//! [`crate::Posted`]; a file cannot, and axum's multipart support is not built in, so this
//! reads the few parts a browser sends, within limits, and checks the token as `Posted`
//! does. (A shared `PostedFile` extractor in `session.rs` is the lead's to make.)

use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::Ctx;

/// The largest upload taken: a CSV of 100,000 subscribers with a few attributes is about
/// 10 MiB.
pub const MAX_UPLOAD_BYTES: usize = 32 * 1024 * 1024;
/// A browser sends one part per field; the import form has three.
const MAX_PARTS: usize = 16;
/// The headers of one part (Content-Disposition, Content-Type).
const MAX_PART_HEADER: usize = 8 * 1024;

/// One field of the form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub name: String,
    /// Set for a file field (possibly empty, when no file was chosen).
    pub filename: Option<String>,
    pub data: Vec<u8>,
}

/// The form's fields, once the body was read within [`MAX_UPLOAD_BYTES`] and its `csrf`
/// field is the session's token; else the answer to give (413, 400 or 403).
pub async fn read(ctx: &Ctx, request: Request) -> Result<Vec<Part>, Response> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let Some(boundary) = boundary(&content_type) else {
        return Err(plain(
            StatusCode::BAD_REQUEST,
            "the form must be sent as multipart/form-data\n",
        ));
    };
    let body: Body = request.into_body();
    let bytes = axum::body::to_bytes(body, MAX_UPLOAD_BYTES)
        .await
        .map_err(|_| {
            plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the file is larger than the console accepts (32 MiB)\n",
            )
        })?;
    let parts = parse(&bytes, &boundary).map_err(|e| {
        plain(
            StatusCode::BAD_REQUEST,
            format!("the form is unreadable: {e}\n"),
        )
    })?;
    let expected = ctx.session.as_ref().map(|s| s.csrf.as_bytes());
    let sent = parts.iter().find(|p| p.name == "csrf").map(|p| &p.data[..]);
    match (expected, sent) {
        (Some(expected), Some(sent)) if constant_time_eq(expected, sent) => Ok(parts),
        _ => Err(plain(
            StatusCode::FORBIDDEN,
            "the form's security token is missing or stale: reload the page and try again\n",
        )),
    }
}

fn plain(status: StatusCode, text: impl Into<String>) -> Response {
    (status, text.into()).into_response()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The boundary of a `multipart/form-data` Content-Type (RFC 2046: 1 to 70 characters).
pub fn boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    let kind = params.next()?.trim();
    if !kind.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
        .filter(|b| !b.is_empty() && b.len() <= 70)
}

/// The parts of a multipart body: each after a `--boundary` line, its headers, an empty
/// line and its content up to the CRLF before the next `--boundary`; the last boundary ends
/// with `--`.
pub fn parse(body: &[u8], boundary: &str) -> Result<Vec<Part>, &'static str> {
    let delimiter = format!("--{boundary}");
    let next_delimiter = format!("\r\n--{boundary}");
    let delimiter = delimiter.as_bytes();
    let mut at = find(body, delimiter, 0).ok_or("no boundary line")?;
    let mut parts = Vec::new();
    loop {
        at += delimiter.len();
        let rest = &body[at..];
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        if !rest.starts_with(b"\r\n") {
            return Err("a boundary line does not end where it should");
        }
        at += 2;
        if parts.len() == MAX_PARTS {
            return Err("too many fields");
        }
        let head_end = find(body, b"\r\n\r\n", at).ok_or("a field has no end of its headers")?;
        if head_end - at > MAX_PART_HEADER {
            return Err("a field's headers are too long");
        }
        let head = std::str::from_utf8(&body[at..head_end])
            .map_err(|_| "a field's headers are not text")?;
        let (name, filename) = disposition(head).ok_or("a field has no name")?;
        let start = head_end + 4;
        let end = find(body, next_delimiter.as_bytes(), start).ok_or("the form ends too early")?;
        parts.push(Part {
            name,
            filename,
            data: body[start..end].to_vec(),
        });
        at = end + 2;
    }
}

/// The `name` and `filename` of a part's Content-Disposition: form-data.
fn disposition(head: &str) -> Option<(String, Option<String>)> {
    let line = head.split("\r\n").find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-disposition")
            .then_some(v)
    })?;
    let mut params = line.split(';');
    if !params.next()?.trim().eq_ignore_ascii_case("form-data") {
        return None;
    }
    let (mut name, mut filename) = (None, None);
    for p in params {
        let Some((k, v)) = p.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v)
            .to_string();
        match k.trim().to_ascii_lowercase().as_str() {
            "name" => name = Some(v),
            "filename" => filename = Some(v),
            _ => {}
        }
    }
    Some((name?, filename))
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body as Chromium lays one out.
    fn body(boundary: &str, csv: &str) -> Vec<u8> {
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\ntok\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.csv\"\r\n\
             Content-Type: text/csv\r\n\r\n{csv}\r\n--{boundary}--\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn a_browsers_form_gives_its_fields_and_the_file_byte_for_byte() {
        let b = "----WebKitFormBoundaryx7Yq";
        let csv = "email,name\r\na@example.com,\"A; \r\n--x\"\r\n";
        let parts = parse(&body(b, csv), b).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            (parts[0].name.as_str(), &parts[0].data[..]),
            ("csrf", &b"tok"[..])
        );
        assert_eq!(parts[0].filename, None);
        assert_eq!(parts[1].name, "file");
        assert_eq!(parts[1].filename.as_deref(), Some("in.csv"));
        assert_eq!(parts[1].data, csv.as_bytes());
    }

    #[test]
    fn the_boundary_comes_from_the_content_type() {
        assert_eq!(
            boundary("multipart/form-data; boundary=----abc").as_deref(),
            Some("----abc")
        );
        assert_eq!(
            boundary("Multipart/Form-Data; charset=utf-8; boundary=\"q r\"").as_deref(),
            Some("q r")
        );
        assert_eq!(boundary("application/x-www-form-urlencoded"), None);
        assert_eq!(boundary("multipart/form-data"), None);
        assert_eq!(
            boundary(&format!("multipart/form-data; boundary={}", "x".repeat(71))),
            None
        );
    }

    #[test]
    fn broken_or_endless_forms_are_refused() {
        let good = body("b", "x");
        assert!(parse(&good[..good.len() - 12], "b").is_err(), "cut short");
        assert!(parse(b"no boundary here", "b").is_err());
        let nameless = b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--\r\n";
        assert!(parse(nameless, "b").is_err());
        let mut many = Vec::new();
        for _ in 0..=MAX_PARTS {
            many.extend_from_slice(
                b"--b\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nx\r\n",
            );
        }
        many.extend_from_slice(b"--b--\r\n");
        assert_eq!(parse(&many, "b"), Err("too many fields"));
        let long = format!(
            "--b\r\nContent-Disposition: form-data; name=\"f\"\r\nX: {}\r\n\r\nx\r\n--b--\r\n",
            "y".repeat(MAX_PART_HEADER)
        );
        assert!(parse(long.as_bytes(), "b").is_err());
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
