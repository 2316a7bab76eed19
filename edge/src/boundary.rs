//! The browser boundary of the API and the WebSocket: which web pages may
//! call them. A request from a page (it carries `Origin`) is served when
//! that page is on the edge's own origin or one of `edge.allowed_origins`
//! (`*`: any site), with CORS headers for the others; any other origin is
//! refused with 403 before anything runs. Clients without `Origin` (bots,
//! servers, command-line tools) are not browsers and are served.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{self, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::http::error;
use crate::server::EdgeState;

/// How long a browser may keep a preflight's answer.
const PREFLIGHT_MAX_AGE: &str = "600";

/// Every method the API's routes take (the admin API changes agents with
/// `PATCH`, teams and canned responses with `PUT` and `DELETE`).
pub const ALLOWED_METHODS: &str = "GET, POST, PUT, PATCH, DELETE, OPTIONS";

/// Checks the origin of API and WebSocket requests (see the module).
pub async fn guard(State(state): State<Arc<EdgeState>>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let guarded = path == "/ws" || path.starts_with("/api/");
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (Some(origin), true) = (origin, guarded) else {
        return next.run(request).await;
    };
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let same_origin = authority(&origin) == Some(host);
    let allowed = same_origin || allows(&state.config.edge.allowed_origins, &origin);
    if !allowed {
        tracing::info!(%origin, path, "request from a page of another site refused");
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this site may not use this chat server (edge.allowed_origins)",
        );
    }
    if request.method() == Method::OPTIONS {
        return preflight(&origin);
    }
    let mut response = next.run(request).await;
    if !same_origin {
        cors(&mut response, &origin);
    }
    response
}

/// Whether `origin` is one of the configured ones (or any is allowed).
fn allows(allowed: &[String], origin: &str) -> bool {
    allowed
        .iter()
        .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

/// `host[:port]` of an origin (`scheme://host[:port]`).
fn authority(origin: &str) -> Option<&str> {
    origin.split_once("://").map(|(_, authority)| authority)
}

fn cors(response: &mut Response, origin: &str) {
    if let Ok(origin) = HeaderValue::from_str(origin) {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// The answer to a CORS preflight of an allowed origin.
fn preflight(origin: &str) -> Response {
    let mut response = (
        StatusCode::NO_CONTENT,
        [
            (header::ACCESS_CONTROL_ALLOW_METHODS, ALLOWED_METHODS),
            (
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "authorization, content-type",
            ),
            (header::ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE),
        ],
    )
        .into_response();
    cors(&mut response, origin);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_exactly_or_by_wildcard() {
        let allowed = vec!["https://shop.example".to_owned()];
        assert!(allows(&allowed, "https://shop.example"));
        assert!(!allows(&allowed, "http://shop.example"));
        assert!(!allows(&allowed, "https://shop.example.evil"));
        assert!(!allows(&allowed, "https://evil.example"));
        assert!(allows(&["*".to_owned()], "https://anyone.example"));
        assert_eq!(authority("http://127.0.0.1:8080"), Some("127.0.0.1:8080"));
        assert_eq!(authority("null"), None);
    }
}
