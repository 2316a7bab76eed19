//! The queue and broadcasts over HTTP, for admins: the same operations as
//! `switchboard queue list|prioritize|assign` and `switchboard broadcast`
//! (`switchboard_bus::admin`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use switchboard_bus::admin::{self, AdminError, Audience};
use switchboard_protocol::ids::ConversationId;
use switchboard_protocol::payloads::QueueEntry;

use super::caller::AdminCaller;
use super::support::parse;
use crate::http::error;
use crate::server::EdgeState;

pub fn routes() -> Router<Arc<EdgeState>> {
    Router::new()
        .route("/api/v1/admin/queue", get(list))
        .route("/api/v1/admin/queue/prioritize", post(prioritize))
        .route("/api/v1/admin/queue/assign", post(assign))
        .route("/api/v1/admin/broadcast", post(broadcast))
}

/// `GET /api/v1/admin/queue`: every waiting conversation in the order the
/// routers serve them; `position` is within the conversation's team queue.
async fn list(State(state): State<Arc<EdgeState>>, caller: AdminCaller) -> Response {
    let waiting = match admin::waiting(&state.backbone).await {
        Ok(waiting) => waiting,
        Err(err) => return refused(&caller, "queue list", &err),
    };
    let mut positions = std::collections::HashMap::new();
    let entries: Vec<QueueEntry> = waiting
        .into_iter()
        .map(|c| {
            let position = positions.entry(c.team.clone()).or_insert(0u32);
            *position += 1;
            QueueEntry {
                conversation_id: c.id,
                visitor: c.visitor,
                team: c.team,
                position: *position,
                priority: c.priority,
                queued_at: c.queued_at,
            }
        })
        .collect();
    Json(json!({ "entries": entries })).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Prioritize {
    conversation_id: ConversationId,
    #[serde(default = "default_priority")]
    priority: i32,
}

fn default_priority() -> i32 {
    admin::DEFAULT_PRIORITY
}

/// `POST /api/v1/admin/queue/prioritize`.
async fn prioritize(
    State(state): State<Arc<EdgeState>>,
    caller: AdminCaller,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let request: Prioritize = match parse(body) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    match admin::prioritize(&state.backbone, &request.conversation_id, request.priority).await {
        Ok(written) => {
            tracing::info!(
                admin = %caller.identity.id(),
                conversation_id = %written.id,
                priority = written.priority,
                "conversation prioritized"
            );
            Json(json!({ "conversation_id": written.id, "priority": written.priority }))
                .into_response()
        }
        Err(err) => refused(&caller, "queue prioritize", &err),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Assign {
    conversation_id: ConversationId,
    /// The agent's login.
    agent: String,
}

/// `POST /api/v1/admin/queue/assign`.
async fn assign(
    State(state): State<Arc<EdgeState>>,
    caller: AdminCaller,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let request: Assign = match parse(body) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    match admin::assign(&state.backbone, &request.conversation_id, &request.agent).await {
        Ok((written, account)) => {
            tracing::info!(
                admin = %caller.identity.id(),
                conversation_id = %written.id,
                agent_id = %account.id,
                "conversation given to an agent"
            );
            Json(json!({
                "conversation_id": written.id,
                "agent_id": account.id,
                "login": account.login,
                "priority": written.priority,
            }))
            .into_response()
        }
        Err(err) => refused(&caller, "queue assign", &err),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum To {
    Agents,
    Visitors,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Broadcast {
    to: To,
    text: String,
}

/// `POST /api/v1/admin/broadcast`.
async fn broadcast(
    State(state): State<Arc<EdgeState>>,
    caller: AdminCaller,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let request: Broadcast = match parse(body) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    let to = match request.to {
        To::Agents => Audience::Agents,
        To::Visitors => Audience::Visitors,
    };
    match admin::broadcast(&state.backbone, to, &request.text).await {
        Ok(notice) => {
            tracing::info!(admin = %caller.identity.id(), to = to.as_str(), "notice broadcast");
            Json(json!({ "to": to.as_str(), "text": notice.text })).into_response()
        }
        Err(err) => refused(&caller, "broadcast", &err),
    }
}

/// The answer to a refused or failed admin action, logged once here.
fn refused(caller: &AdminCaller, action: &str, err: &AdminError) -> Response {
    let (status, code) = match err {
        AdminError::NotWaiting(_) => (StatusCode::CONFLICT, "not_waiting"),
        AdminError::UnknownAgent(_) => (StatusCode::NOT_FOUND, "not_found"),
        AdminError::EmptyNotice | AdminError::NoticeTooLong => {
            (StatusCode::BAD_REQUEST, "bad_request")
        }
        AdminError::Bus(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    };
    if status == StatusCode::SERVICE_UNAVAILABLE {
        tracing::warn!(admin = %caller.identity.id(), action, error = %err, "admin action failed");
        return error(status, code, "the backbone (NATS) is unreachable");
    }
    tracing::info!(admin = %caller.identity.id(), action, error = %err, "admin action refused");
    error(status, code, &err.to_string())
}
