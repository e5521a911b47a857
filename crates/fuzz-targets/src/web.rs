//! What arrives over HTTP: requests to the autoconfiguration routes (crates/http), the
//! newsletter's form and query decoding and its link tokens, and the bounces it reads
//! (crates/newsletter) next to the DSNs the queue writes (crates/outbound).

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use newsletter::{Keys, Origin, Token};
use tegami_http::autoconfig::{self, ClientSettings};
use tower::ServiceExt;

/// One request to the autoconfiguration routes, then the decoders behind every public
/// HTTP route on its parts. The input is a method byte, then the request target and a Host
/// header, each ending at a newline, then the body.
///
/// Asserts: no request gets a 5xx (bad input is the client's error, never the server's);
/// an answer is no larger than its bounded request allows; a checked address checks again
/// to itself; XML escaping leaves no markup; a form decodes to at most one pair per `&`;
/// a link token either is refused or came from the key, and every token the key signs
/// verifies to itself.
pub fn http_request(data: &[u8]) {
    let Some((&method, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.splitn(3, |&b| b == b'\n');
    let target = parts.next().unwrap_or_default();
    let host = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let method =
        [Method::GET, Method::POST, Method::HEAD, Method::PUT][usize::from(method & 3)].clone();

    let mut request = Request::builder().method(method).uri(target);
    if let Ok(host) = header::HeaderValue::from_bytes(host) {
        request = request.header(header::HOST, host);
    }
    if let Ok(request) = request.body(Body::from(body.to_vec())) {
        let uri = request.uri().clone();
        if let Some(value) = autoconfig::query_param(&uri, "emailaddress") {
            check_address(&value);
        }
        let (status, answer) = runtime().block_on(async {
            let response = router().clone().oneshot(request).await.expect("infallible");
            let status = response.status();
            let answer = axum::body::to_bytes(response.into_body(), 1 << 20).await;
            (status, answer.expect("a bounded answer"))
        });
        assert!(!status.is_server_error(), "{status} for {uri}");
        if status == StatusCode::OK {
            // The answers are templates around a checked address: a few KiB at most.
            assert!(answer.len() < 16 * 1024, "{} bytes for {uri}", answer.len());
        }
    }

    let text = String::from_utf8_lossy(body);
    check_address(&text);
    if let Some(address) = autoconfig::autodiscover_address(&text) {
        check_address(address);
    }
    let escaped = autoconfig::escape(&text);
    assert!(!escaped.contains(['<', '>', '"']), "{escaped}");

    let pairs = newsletter::form_pairs(&text);
    assert!(pairs.len() <= text.matches('&').count() + 1);

    let target = String::from_utf8_lossy(target);
    let token = target.rsplit('/').next().unwrap_or_default();
    if let Some(token) = keys().verify(token) {
        assert_eq!(
            keys().sign(&token),
            target.rsplit('/').next().unwrap_or_default()
        );
    }
    // A token built from the body's bytes verifies to itself.
    if body.len() >= 13 {
        let id = i64::from_le_bytes(body[1..9].try_into().expect("8 bytes"));
        let link = u32::from_le_bytes(body[9..13].try_into().expect("4 bytes"));
        let origin = if body[0] & 1 == 0 {
            Origin::Campaign(id)
        } else {
            Origin::Step(id)
        };
        let subscriber = id.rotate_left(17);
        let token = match body[0] >> 1 & 3 {
            0 => Token::Click {
                origin,
                subscriber,
                link,
            },
            1 => Token::Unsubscribe {
                origin: (link & 1 == 0).then_some(origin),
                subscriber,
            },
            2 => Token::Confirm { subscriber },
            _ => Token::Open { origin, subscriber },
        };
        assert_eq!(keys().verify(&keys().sign(&token)), Some(token));
    }
}

/// A checked address checks again to itself, within RFC 5321's lengths.
fn check_address(text: &str) {
    if let Some((address, domain)) = autoconfig::check_address(text) {
        assert!(address.len() <= 254 && address.ends_with(&format!("@{domain}")));
        assert_eq!(
            autoconfig::check_address(&address),
            Some((address.clone(), domain))
        );
    }
}

fn router() -> &'static axum::Router {
    static ROUTER: OnceLock<axum::Router> = OnceLock::new();
    ROUTER.get_or_init(|| {
        autoconfig::router(ClientSettings {
            host: "mail.example.org".into(),
            imaps: 993,
            imap: 143,
            pop3s: 995,
            pop3: 110,
            submissions: 465,
            submission: 587,
            mta_sts_policy: Some(
                "version: STSv1\nmode: enforce\nmx: mail.example.org\nmax_age: 86400\n".into(),
            ),
        })
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    })
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys::from_secret(b"fuzz target key, not a secret"))
}
