//! Who may call the admin API: the bearer of a valid token of an agent
//! account whose role is `admin`.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use switchboard_bus::accounts;
use switchboard_config::EdgeRole;
use switchboard_protocol::payloads::AgentRole;

use crate::access::still_valid;
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
        let verified = match state.tokens.verify_full(token) {
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
        let Identity::Agent { id, .. } = &verified.identity else {
            tracing::info!(%path, caller = %verified.identity.id(), "admin call by a visitor");
            return Err(error(StatusCode::FORBIDDEN, "forbidden", "for admins only"));
        };
        // The account as it is now, not as the token remembers it: a
        // demoted, disabled or removed admin, or a logged-out token, is
        // refused at once.
        let unavailable = |err: switchboard_bus::BusError| {
            tracing::warn!(%path, error = %err, "admin check");
            error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "try again")
        };
        if !still_valid(&state.backbone, &verified)
            .await
            .map_err(unavailable)?
        {
            return Err(unauthorized("this token was revoked"));
        }
        let account = accounts::find(&state.backbone, id)
            .await
            .map_err(unavailable)?;
        match account {
            Some(account) if account.role == AgentRole::Admin => Ok(Self {
                identity: verified.identity,
            }),
            _ => {
                tracing::info!(%path, caller = %id, "admin call by a non-admin");
                Err(error(StatusCode::FORBIDDEN, "forbidden", "for admins only"))
            }
        }
    }
}

/// The token of `Authorization: Bearer <token>`.
pub(crate) fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

pub(crate) fn unauthorized(message: &str) -> Response {
    let mut response = error(StatusCode::UNAUTHORIZED, "unauthorized", message);
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// An agent (any role), from the request's bearer token: the token is
/// valid and not revoked, and the account is enabled.
#[derive(Debug, Clone)]
pub struct AgentCaller {
    pub identity: Identity,
    pub role: AgentRole,
}

impl AgentCaller {
    /// The agent's id.
    pub fn id(&self) -> &str {
        self.identity.id()
    }

    pub fn is_admin(&self) -> bool {
        self.role == AgentRole::Admin
    }
}

impl FromRequestParts<Arc<EdgeState>> for AgentCaller {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<EdgeState>,
    ) -> Result<Self, Self::Rejection> {
        let path = parts.uri.path().to_owned();
        let Some(token) = bearer(parts) else {
            return Err(unauthorized(
                "an agent's token is required (Authorization: Bearer …)",
            ));
        };
        let verified = state.tokens.verify_full(token).map_err(|err| {
            tracing::info!(%path, error = %err, "agent call with a bad token");
            unauthorized("invalid or expired token")
        })?;
        if !state.config.edge.roles.contains(&EdgeRole::Agent) {
            return Err(error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this edge does not serve agents",
            ));
        }
        let Identity::Agent { id, .. } = &verified.identity else {
            return Err(error(StatusCode::FORBIDDEN, "forbidden", "for agents only"));
        };
        let unavailable = |err: switchboard_bus::BusError| {
            tracing::warn!(%path, error = %err, "agent check");
            error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "try again")
        };
        if !still_valid(&state.backbone, &verified)
            .await
            .map_err(unavailable)?
        {
            return Err(unauthorized("this token was revoked"));
        }
        let role = accounts::find(&state.backbone, id)
            .await
            .map_err(unavailable)?
            .map_or(AgentRole::Agent, |a| a.role);
        Ok(Self {
            identity: verified.identity,
            role,
        })
    }
}
