//! Who may call the admin API: the bearer of a valid token of an agent
//! account whose role is `admin`.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use switchboard_config::EdgeRole;
use switchboard_protocol::payloads::AgentRole;

use crate::auth::Identity;
use crate::http::error;
use crate::server::EdgeState;

/// An admin, from the request's bearer token.
#[derive(Debug, Clone)]
pub struct AdminCaller {
    pub identity: Identity,
}

impl FromRequestParts<Arc<EdgeState>> for AdminCaller {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<EdgeState>,
    ) -> Result<Self, Self::Rejection> {
        let path = parts.uri.path().to_owned();
        let Some(token) = bearer(parts) else {
            tracing::info!(%path, "admin call without a token");
            return Err(unauthorized(
                "an admin token is required (Authorization: Bearer …)",
            ));
        };
        let (identity, role) = match state.tokens.verify_with_role(token) {
            Ok(verified) => verified,
            Err(err) => {
                tracing::info!(%path, error = %err, "admin call with a bad token");
                return Err(unauthorized("invalid or expired token"));
            }
        };
        if !state.config.edge.roles.contains(&EdgeRole::Agent) {
            return Err(error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this edge does not serve agents",
            ));
        }
        match (&identity, role) {
            (Identity::Agent { .. }, AgentRole::Admin) => Ok(Self { identity }),
            _ => {
                tracing::info!(%path, caller = %identity.id(), "admin call by a non-admin");
                Err(error(StatusCode::FORBIDDEN, "forbidden", "for admins only"))
            }
        }
    }
}

/// The token of `Authorization: Bearer <token>`.
fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn unauthorized(message: &str) -> Response {
    let mut response = error(StatusCode::UNAUTHORIZED, "unauthorized", message);
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}
