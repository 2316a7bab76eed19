//! Who calls the HTTP API: the bearer of a valid, unrevoked token
//! ([`verified`]); an agent ([`AgentCaller`]) or an admin ([`AdminCaller`]),
//! extractors that run before the body is read.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use switchboard_bus::accounts;
use switchboard_config::EdgeRole;
use switchboard_protocol::payloads::AgentRole;

use crate::access::still_valid;
use crate::auth::{Identity, Verified};
use crate::http::error;
use crate::server::EdgeState;

/// The token of `Authorization: Bearer <token>` (the scheme in any case).
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
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

/// `503` when a token's revocation or account cannot be checked.
fn unavailable(path: &str, err: &switchboard_bus::BusError) -> Response {
    tracing::warn!(%path, error = %err, "caller check");
    error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "try again")
}

/// The request's token, verified and not revoked; or the `401` (`503`)
/// refusing it. `whose` names the token asked for in the answer to a
/// request without one ("an agent's token").
pub(crate) async fn verified(
    state: &EdgeState,
    headers: &HeaderMap,
    path: &str,
    whose: &str,
) -> Result<Verified, Response> {
    let Some(token) = bearer(headers) else {
        tracing::info!(%path, "call without a token");
        return Err(unauthorized(&format!(
            "{whose} is required (Authorization: Bearer …)"
        )));
    };
    let verified = state.tokens.verify_full(token).map_err(|err| {
        tracing::info!(%path, error = %err, "call with a bad token");
        unauthorized("invalid or expired token")
    })?;
    if still_valid(&state.backbone, &verified)
        .await
        .map_err(|err| unavailable(path, &err))?
    {
        Ok(verified)
    } else {
        Err(unauthorized("this token was revoked"))
    }
}

/// An agent (any role), from the request's bearer token: the token is
/// valid and not revoked, and the role is the account's as it is now.
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

    async fn from_parts(parts: &Parts, state: &EdgeState, whose: &str) -> Result<Self, Response> {
        let path = parts.uri.path();
        let verified = verified(state, &parts.headers, path, whose).await?;
        if !state.config.edge.roles.contains(&EdgeRole::Agent) {
            return Err(error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this edge does not serve agents",
            ));
        }
        let Identity::Agent { id, .. } = &verified.identity else {
            tracing::info!(%path, caller = %verified.identity.id(), "agent call by a visitor");
            return Err(error(StatusCode::FORBIDDEN, "forbidden", "for agents only"));
        };
        // The account as it is now, not as the token remembers it: a
        // demoted or removed admin is an agent at once.
        let role = accounts::find(&state.backbone, id)
            .await
            .map_err(|err| unavailable(path, &err))?
            .map_or(AgentRole::Agent, |a| a.role);
        Ok(Self {
            identity: verified.identity,
            role,
        })
    }
}

impl FromRequestParts<Arc<EdgeState>> for AgentCaller {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<EdgeState>,
    ) -> Result<Self, Self::Rejection> {
        Self::from_parts(parts, state, "an agent's token").await
    }
}

/// An admin: an [`AgentCaller`] whose account's role is `admin`. None or
/// an invalid token is `401`, anyone else (an agent, a visitor) `403`.
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
        let agent = AgentCaller::from_parts(parts, state, "an admin token").await?;
        if agent.is_admin() {
            Ok(Self {
                identity: agent.identity,
            })
        } else {
            tracing::info!(path = %parts.uri.path(), caller = %agent.id(), "admin call by a non-admin");
            Err(error(StatusCode::FORBIDDEN, "forbidden", "for admins only"))
        }
    }
}
