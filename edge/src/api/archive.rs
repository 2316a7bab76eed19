//! Past conversations, for agents: a search of the archive (by visitor,
//! agent or words, answered by the archivers on `archive.search`) and a
//! conversation's transcript (from the stream, and the archive for what
//! the stream no longer holds). Private notes are shown: agents only.

use std::sync::Arc;
use std::time::Duration;

use async_nats::RequestErrorKind;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use switchboard_bus::kv;
use switchboard_protocol::frames::HistoryItem;
use switchboard_protocol::ids::ConversationId;
use switchboard_protocol::payloads::{
    decode, encode, ArchiveSearch, ArchiveSearchReply, ArchivedConversation, ConversationState,
    ConversationStatus, Role,
};
use switchboard_protocol::subjects;

use super::caller::AgentCaller;
use super::support::{bad_request, not_found, unavailable};
use crate::http::error;
use crate::server::EdgeState;

/// How long the archivers may take to search.
const SEARCH_TIMEOUT: Duration = Duration::from_secs(20);
/// Conversations per search page, at most.
const MAX_RESULTS: u32 = 50;
/// Records per transcript page, at most.
const MAX_PAGE: u32 = 100;

pub fn routes() -> Router<Arc<EdgeState>> {
    Router::new()
        .route("/api/v1/archive", get(find))
        .route("/api/v1/archive/{conversation}", get(transcript))
}

/// Why a search failed.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("no archiver answered: {0}")]
    Unavailable(String),
    #[error("the archiver refused: {0}")]
    Refused(String),
}

/// Asks the archivers.
///
/// # Errors
/// [`SearchError`] when no archiver answers, or one refuses.
pub async fn search(
    state: &EdgeState,
    request: &ArchiveSearch,
) -> Result<Vec<ArchivedConversation>, SearchError> {
    let payload = encode(request).map_err(|e| SearchError::Unavailable(e.to_string()))?;
    let message = state
        .backbone
        .client
        .send_request(
            subjects::ARCHIVE_SEARCH,
            async_nats::Request::new()
                .payload(payload.into())
                .timeout(Some(SEARCH_TIMEOUT)),
        )
        .await
        .map_err(|err| {
            SearchError::Unavailable(match err.kind() {
                RequestErrorKind::NoResponders => "no archiver is running".to_owned(),
                RequestErrorKind::TimedOut => "the archivers did not answer in time".to_owned(),
                RequestErrorKind::Other => err.to_string(),
            })
        })?;
    let reply: ArchiveSearchReply =
        decode(&message.payload).map_err(|e| SearchError::Unavailable(e.to_string()))?;
    match reply.error {
        Some(error) if reply.unavailable => Err(SearchError::Unavailable(error)),
        Some(error) => Err(SearchError::Refused(error)),
        None => Ok(reply.conversations),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Find {
    visitor: Option<String>,
    agent: Option<String>,
    q: Option<String>,
    before: Option<i64>,
    limit: Option<u32>,
    status: Option<String>,
}

/// The states a search may ask for.
const STATUSES: [ConversationStatus; 4] = [
    ConversationStatus::Queued,
    ConversationStatus::Assigned,
    ConversationStatus::Closed,
    ConversationStatus::Missed,
];

/// `GET /api/v1/archive?visitor=&agent=&status=&q=&before=&limit=`
/// (agents): past conversations, newest activity first; `before` pages
/// on. `agent=me` is the caller: `?agent=me&status=closed` lists the
/// conversations an agent has closed, after logging in again too.
async fn find(
    State(state): State<Arc<EdgeState>>,
    caller: AgentCaller,
    query: Result<Query<Find>, QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return bad_request("parameters: visitor, agent, status, q, before, limit");
    };
    let status = query.status.filter(|s| !s.is_empty());
    if status
        .as_deref()
        .is_some_and(|s| !STATUSES.iter().any(|known| known.as_str() == s))
    {
        return bad_request("status is one of queued, assigned, closed, missed");
    }
    let agent = query.agent.filter(|a| !a.is_empty()).map(|a| {
        if a == "me" {
            caller.id().to_owned()
        } else {
            a
        }
    });
    let limit = query.limit.unwrap_or(20);
    if limit == 0 || limit > MAX_RESULTS {
        return bad_request("limit is 1 to 50");
    }
    let text = query
        .q
        .as_deref()
        .map(str::trim)
        .filter(|q| !q.is_empty())
        .map(str::to_owned);
    if text.as_deref().is_some_and(|q| q.chars().count() > 200) {
        return bad_request("the search is longer than 200 characters");
    }
    let request = ArchiveSearch {
        visitor_id: query.visitor.filter(|v| !v.is_empty()),
        agent_id: agent,
        text,
        before: query.before,
        limit,
        status,
    };
    match search(&state, &request).await {
        Ok(conversations) => Json(json!({ "conversations": conversations })).into_response(),
        Err(SearchError::Refused(reason)) => bad_request(&reason),
        Err(err) => {
            tracing::warn!(error = %err, "archive search failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                &err.to_string(),
            )
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    before_seq: Option<u64>,
    limit: Option<u32>,
}

/// `GET /api/v1/archive/{conversation}?before_seq=&limit=` (agents): a page
/// of a conversation's records, as agents see them. Any agent may read a
/// closed conversation; an open one only its agent (and admins).
async fn transcript(
    State(state): State<Arc<EdgeState>>,
    caller: AgentCaller,
    Path(conversation): Path<String>,
    query: Result<Query<Page>, QueryRejection>,
) -> Response {
    let Ok(Query(page)) = query else {
        return bad_request("parameters: before_seq, limit");
    };
    let limit = page.limit.unwrap_or(50);
    if limit == 0 || limit > MAX_PAGE {
        return bad_request("limit is 1 to 100");
    }
    let Ok(conversation) = ConversationId::new(conversation) else {
        return not_found("no such conversation");
    };
    let backbone = &state.backbone;
    let routing =
        match kv::get::<ConversationState>(&backbone.conversations, conversation.as_str()).await {
            Ok(state) => state.map(|s| s.value),
            Err(err) => return unavailable("read a conversation", &err),
        };
    if let Some(routing) = &routing {
        let mine = routing.agent.as_ref().is_some_and(|a| a.id == caller.id());
        if routing.status != ConversationStatus::Closed && !mine && !caller.is_admin() {
            return error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "an open conversation is read by its agent only",
            );
        }
    }
    let before = page.before_seq.unwrap_or(u64::MAX);
    let mut found = match backbone
        .log
        .read_before(&conversation, before, limit as usize)
        .await
    {
        Ok(found) => found,
        Err(err) => return unavailable("read a conversation", &err),
    };
    if let Some(below) = found.archived_below {
        let wanted = limit.saturating_sub(u32::try_from(found.records.len()).unwrap_or(limit));
        if wanted > 0 && below > 1 {
            match backbone.log.archived(&conversation, below, wanted).await {
                Ok(mut older) => {
                    older.retain(|r| r.seq < below);
                    older.append(&mut found.records);
                    found.records = older;
                    found.has_more = found.records.first().is_some_and(|r| r.seq > 1);
                }
                Err(err) => tracing::info!(error = %err, %conversation, "archive unavailable"),
            }
        }
    }
    if routing.is_none() && found.records.is_empty() {
        return not_found("no such conversation");
    }
    let items: Vec<HistoryItem> = found
        .records
        .iter()
        .map(|r| HistoryItem::for_viewer(r, &Role::Agent))
        .collect();
    Json(json!({
        "conversation_id": conversation,
        "state": routing.as_ref().map(|r| r.status.as_str()),
        "visitor": routing.as_ref().map(|r| &r.visitor),
        "agent": routing.as_ref().and_then(|r| r.agent.as_ref()),
        "team": routing.as_ref().and_then(|r| r.team.as_ref()),
        "items": items,
        "has_more": found.has_more,
    }))
    .into_response()
}
