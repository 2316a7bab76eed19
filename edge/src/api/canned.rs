//! Canned responses: text agents insert by typing `/<shortcut>`. Admins
//! manage them; agents read those of their team and those for everyone.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use futures::TryStreamExt;
use serde::Deserialize;
use serde_json::json;
use switchboard_bus::{accounts, kv, Backbone, BusError};
use switchboard_protocol::ids::{AgentId, TeamId};
use switchboard_protocol::payloads::CannedResponse;
use switchboard_protocol::time::now_ms;

use super::caller::{AdminCaller, AgentCaller};
use super::support::{bad_request, not_found, parse, unavailable};
use crate::server::EdgeState;

/// Longest canned text, in characters (a message's limit).
const MAX_TEXT: usize = 4000;
/// Canned responses at most.
const MAX_CANNED: usize = 500;

pub fn routes() -> Router<Arc<EdgeState>> {
    Router::new()
        .route("/api/v1/canned", get(list))
        .route("/api/v1/admin/canned/{shortcut}", put(save).delete(remove))
}

/// Whether a shortcut is 1–32 of `a-z 0-9 - _`.
pub fn valid_shortcut(shortcut: &str) -> bool {
    (1..=32).contains(&shortcut.len())
        && shortcut
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Every canned response, by shortcut.
async fn all(backbone: &Backbone) -> Result<Vec<CannedResponse>, BusError> {
    let keys: Vec<String> = match backbone.canned.keys().await {
        Ok(keys) => keys
            .try_collect()
            .await
            .map_err(|e| BusError::nats("list canned responses", e))?,
        Err(e) => return Err(BusError::nats("list canned responses", e)),
    };
    let mut canned = Vec::with_capacity(keys.len());
    for key in keys.into_iter().take(MAX_CANNED) {
        if let Some(entry) = kv::get::<CannedResponse>(&backbone.canned, &key).await? {
            canned.push(entry.value);
        }
    }
    canned.sort_by(|a, b| a.shortcut.cmp(&b.shortcut));
    Ok(canned)
}

/// `GET /api/v1/canned` (agents): those for everyone and for the agent's
/// team (admins: all).
async fn list(State(state): State<Arc<EdgeState>>, caller: AgentCaller) -> Response {
    let canned = match all(&state.backbone).await {
        Ok(canned) => canned,
        Err(err) => return unavailable("list canned responses", &err),
    };
    let team = match AgentId::new(caller.id()) {
        Ok(id) => match accounts::find(&state.backbone, &id).await {
            Ok(account) => account.and_then(|a| a.team),
            Err(err) => return unavailable("read the agent's account", &err),
        },
        Err(_) => None,
    };
    let visible: Vec<CannedResponse> = canned
        .into_iter()
        .filter(|c| caller.is_admin() || c.team.is_none() || c.team == team)
        .collect();
    Json(json!({ "canned": visible })).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Save {
    text: String,
    #[serde(default)]
    team: Option<TeamId>,
}

/// `PUT /api/v1/admin/canned/{shortcut}` (admins): creates or replaces.
async fn save(
    State(state): State<Arc<EdgeState>>,
    caller: AdminCaller,
    Path(shortcut): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if !valid_shortcut(&shortcut) {
        return bad_request("a shortcut is 1-32 of a-z, 0-9, - and _");
    }
    let request: Save = match parse(body) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    let text = request.text.trim();
    if text.is_empty() || text.chars().count() > MAX_TEXT {
        return bad_request("the text must be 1-4000 characters");
    }
    let canned = CannedResponse {
        shortcut: shortcut.clone(),
        text: text.to_owned(),
        team: request.team,
        updated_at: now_ms(),
    };
    if let Err(err) = kv::put(&state.backbone.canned, &shortcut, &canned).await {
        return unavailable("save a canned response", &err);
    }
    tracing::info!(admin = %caller.identity.id(), shortcut, "canned response saved");
    (StatusCode::OK, Json(canned)).into_response()
}

/// `DELETE /api/v1/admin/canned/{shortcut}` (admins).
async fn remove(
    State(state): State<Arc<EdgeState>>,
    caller: AdminCaller,
    Path(shortcut): Path<String>,
) -> Response {
    if !valid_shortcut(&shortcut) {
        return not_found("no such canned response");
    }
    match kv::get::<CannedResponse>(&state.backbone.canned, &shortcut).await {
        Ok(Some(_)) => {}
        Ok(None) => return not_found("no such canned response"),
        Err(err) => return unavailable("read a canned response", &err),
    }
    if let Err(err) = state.backbone.canned.delete(&shortcut).await {
        return unavailable("remove a canned response", &err);
    }
    tracing::info!(admin = %caller.identity.id(), shortcut, "canned response removed");
    Json(json!({ "removed": shortcut })).into_response()
}
