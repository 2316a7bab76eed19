//! Tokens over HTTP: a fresh token before the one in hand expires (the
//! widget and console refresh by themselves), and an agent's logout,
//! which revokes the token on every edge at once.

use std::sync::Arc;

use axum::extract::State;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;
use switchboard_bus::{accounts, revocation};
use switchboard_config::EdgeRole;
use switchboard_protocol::time::rfc3339;

use super::caller::{unauthorized, verified};
use crate::auth::{Identity, Verified};
use crate::http::error;
use crate::server::EdgeState;

pub fn routes() -> Router<Arc<EdgeState>> {
    Router::new()
        .route("/api/v1/token/refresh", post(refresh))
        .route("/api/v1/agents/logout", post(logout))
}

/// The caller's token, verified and still valid; or the answer refusing it.
async fn caller(state: &EdgeState, parts: &Parts) -> Result<Verified, Response> {
    verified(state, &parts.headers, parts.uri.path(), "a token").await
}

fn served(state: &EdgeState, identity: &Identity) -> bool {
    let role = match identity {
        Identity::Visitor { .. } => EdgeRole::Visitor,
        Identity::Agent { .. } => EdgeRole::Agent,
    };
    state.config.edge.roles.contains(&role)
}

/// `POST /api/v1/token/refresh`: a new token for the same identity, with a
/// full lifetime (an agent's carries their account's current role).
async fn refresh(State(state): State<Arc<EdgeState>>, request: axum::extract::Request) -> Response {
    let (parts, _) = request.into_parts();
    let verified = match caller(&state, &parts).await {
        Ok(verified) => verified,
        Err(refused) => return refused,
    };
    if !served(&state, &verified.identity) {
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this edge does not serve this role",
        );
    }
    let issued = match &verified.identity {
        Identity::Visitor { .. } => state.tokens.issue(
            &verified.identity,
            state.config.auth.visitor_token_ttl.get(),
        ),
        Identity::Agent { id, .. } => {
            let account = match accounts::find(&state.backbone, id).await {
                Ok(Some(account)) => account,
                Ok(None) => return unauthorized("this token was revoked"),
                Err(err) => {
                    tracing::warn!(error = %err, "refresh: account lookup");
                    return error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "try again");
                }
            };
            state.tokens.issue_agent_after(
                &verified.identity,
                account.role,
                state.config.auth.agent_token_ttl.get(),
                account.tokens_valid_after,
            )
        }
    };
    let token = match issued {
        Ok(token) => token,
        Err(err) => {
            tracing::error!(error = %err, "sign refreshed token");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "could not sign a token",
            );
        }
    };
    let expires_at = state
        .tokens
        .verify_full(&token)
        .map(|v| rfc3339(i64::try_from(v.expires_at.saturating_mul(1000)).unwrap_or(i64::MAX)))
        .unwrap_or_default();
    Json(json!({ "token": token, "expires_at": expires_at })).into_response()
}

/// `POST /api/v1/agents/logout`: the token stops working everywhere, and
/// the connections that said hello with it are closed (4401).
async fn logout(State(state): State<Arc<EdgeState>>, request: axum::extract::Request) -> Response {
    let (parts, _) = request.into_parts();
    let verified = match caller(&state, &parts).await {
        Ok(verified) => verified,
        Err(refused) => return refused,
    };
    let Identity::Agent { id, .. } = &verified.identity else {
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only agents log out (a visitor's token ends by expiring)",
        );
    };
    let Some(token_id) = &verified.token_id else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "this token has no id (an older release issued it); it ends by expiring",
        );
    };
    match revocation::revoke_token(&state.backbone, token_id, id).await {
        Ok(()) => {
            tracing::info!(agent_id = %id, "agent logged out");
            Json(json!({ "status": "logged_out" })).into_response()
        }
        Err(err) => {
            tracing::warn!(error = %err, "logout");
            error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "try again")
        }
    }
}
