//! HTTP-01 (RFC 8555 section 8.3): the key authorizations the CA may ask for, shared
//! between the issuer and the HTTP listener's `/.well-known/acme-challenge/{token}` route.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Tokens are base64url of at least 128 bits (RFC 8555 section 8.3); anything longer than
/// this, or outside the alphabet, is not one.
const MAX_TOKEN: usize = 256;

/// The pending challenges: token -> key authorization.
#[derive(Debug, Default)]
pub struct Challenges {
    map: Mutex<HashMap<String, String>>,
}

impl Challenges {
    pub fn insert(&self, token: &str, key_authorization: &str) {
        self.lock()
            .insert(token.to_string(), key_authorization.to_string());
    }

    pub fn remove(&self, token: &str) {
        self.lock().remove(token);
    }

    pub fn get(&self, token: &str) -> Option<String> {
        self.lock().get(token).cloned()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The route to merge into the HTTP listener. Answers the key authorization as
/// `text/plain` for a pending token, 404 for anything else.
pub fn router(challenges: Arc<Challenges>) -> Router {
    Router::new()
        .route("/.well-known/acme-challenge/{token}", get(answer))
        .with_state(challenges)
}

async fn answer(State(challenges): State<Arc<Challenges>>, Path(token): Path<String>) -> Response {
    let well_formed = !token.is_empty()
        && token.len() <= MAX_TOKEN
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    match challenges.get(&token).filter(|_| well_formed) {
        Some(key_authorization) => {
            ([(header::CONTENT_TYPE, "text/plain")], key_authorization).into_response()
        }
        None => (StatusCode::NOT_FOUND, "no such ACME challenge\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(router: &Router, path: &str) -> (StatusCode, String) {
        let response = router
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn a_pending_token_is_answered_and_others_are_not() {
        let challenges = Arc::new(Challenges::default());
        let router = router(challenges.clone());
        let path = "/.well-known/acme-challenge/tok-EN_1";
        assert_eq!(get(&router, path).await.0, StatusCode::NOT_FOUND);
        challenges.insert("tok-EN_1", "tok-EN_1.thumb");
        assert_eq!(
            get(&router, path).await,
            (StatusCode::OK, "tok-EN_1.thumb".to_string())
        );
        challenges.insert("a.b", "x");
        assert_eq!(
            get(&router, "/.well-known/acme-challenge/a.b").await.0,
            StatusCode::NOT_FOUND
        );
        challenges.remove("tok-EN_1");
        assert_eq!(get(&router, path).await.0, StatusCode::NOT_FOUND);
    }
}
