//! Visitors' details: what a visitor tells (a name, an email: the widget's
//! pre-chat form) and where they are (the page, the browser), kept in the
//! `profiles` bucket; and what agents see of a visitor: that profile and
//! their past conversations from the archive.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use switchboard_bus::kv::{self, Decision};
use switchboard_bus::{outbox, Backbone, BusError};
use switchboard_protocol::ids::{ConversationId, VisitorId};
use switchboard_protocol::payloads::{
    ArchiveSearch, ConversationEvent, ConversationState, ConversationStatus, Participant,
    VisitorProfile,
};
use switchboard_protocol::time::now_ms;

use super::caller::{bearer, unauthorized, AgentCaller};
use super::support::{bad_request, not_found, parse, unavailable};
use crate::auth::Identity;
use crate::http::{error, too_many};
use crate::server::EdgeState;

/// Longest name, email, page address and browser kept.
const MAX_NAME: usize = 80;
const MAX_EMAIL: usize = 254;
const MAX_URL: usize = 2048;
const MAX_USER_AGENT: usize = 512;

pub fn routes() -> Router<Arc<EdgeState>> {
    Router::new()
        .route("/api/v1/visitors/profile", post(update))
        .route("/api/v1/visitors/{id}", get(details))
}

/// The browser of a request, shortened.
pub fn user_agent(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(MAX_USER_AGENT).collect())
}

/// Writes (or merges into) a visitor's profile.
///
/// # Errors
/// NATS errors.
pub async fn remember(
    backbone: &Backbone,
    visitor: &VisitorId,
    name: Option<&str>,
    email: Option<&str>,
    page_url: Option<&str>,
    user_agent: Option<&str>,
) -> Result<VisitorProfile, BusError> {
    let now = now_ms();
    kv::cas(
        &backbone.profiles,
        visitor.as_str(),
        |current: Option<&VisitorProfile>| {
            let mut profile = current.cloned().unwrap_or_else(|| VisitorProfile {
                visitor_id: visitor.clone(),
                name: String::new(),
                email: None,
                page_url: None,
                user_agent: None,
                created_at: now,
                updated_at: now,
            });
            if let Some(name) = name {
                profile.name = name.to_owned();
            }
            if let Some(email) = email {
                profile.email = Some(email.to_owned());
            }
            if let Some(page_url) = page_url {
                profile.page_url = Some(page_url.to_owned());
            }
            if let Some(user_agent) = user_agent {
                profile.user_agent = Some(user_agent.to_owned());
            }
            profile.updated_at = now;
            Decision::Write(profile.clone(), profile)
        },
    )
    .await
}

/// Whether an email looks like one (the widget checks it too).
pub fn plausible_email(email: &str) -> bool {
    email.len() <= MAX_EMAIL
        && email
            .split_once('@')
            .is_some_and(|(user, host)| !user.is_empty() && host.contains('.'))
        && !email.chars().any(char::is_whitespace)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Update {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    page_url: Option<String>,
}

/// `POST /api/v1/visitors/profile` (the visitor's own token): the name and
/// email of the pre-chat form, the page the widget is on. A new name
/// comes back in a new token (messages carry the token's name).
async fn update(
    State(state): State<Arc<EdgeState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(token) = bearer(&headers) else {
        return unauthorized("a visitor's token is required (Authorization: Bearer …)");
    };
    let Ok(verified) = state.tokens.verify_full(token) else {
        return unauthorized("invalid or expired token");
    };
    let Identity::Visitor { id, name: old_name } = &verified.identity else {
        return error(StatusCode::FORBIDDEN, "forbidden", "for visitors only");
    };
    if let Err(limited) = state.admission.profile_update(id.as_str()) {
        tracing::info!(visitor_id = %id, "profile changes limited");
        return too_many(limited, "profile changes");
    }
    let request: Update = match parse(body) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    let name = request
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    let email = request
        .email
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty());
    if name.is_some_and(|n| n.chars().count() > MAX_NAME) {
        return bad_request("the name is longer than 80 characters");
    }
    if email.is_some_and(|e| !plausible_email(e)) {
        return bad_request("the email address is not valid");
    }
    if request
        .page_url
        .as_deref()
        .is_some_and(|u| u.len() > MAX_URL)
    {
        return bad_request("the page address is longer than 2048 bytes");
    }
    let profile = match remember(
        &state.backbone,
        id,
        Some(name.unwrap_or(old_name)),
        email,
        request.page_url.as_deref(),
        user_agent(&headers).as_deref(),
    )
    .await
    {
        Ok(profile) => profile,
        Err(err) => return unavailable("save a visitor's profile", &err),
    };
    let renamed = name.is_some_and(|n| n != old_name);
    if renamed {
        if let Err(err) = rename_in_conversation(&state.backbone, id, &profile.name).await {
            return unavailable("tell the visitor's conversation their new name", &err);
        }
    }
    let token = if renamed {
        let identity = Identity::Visitor {
            id: id.clone(),
            name: profile.name.clone(),
        };
        match state
            .tokens
            .issue(&identity, state.config.auth.visitor_token_ttl.get())
        {
            Ok(token) => Some(token),
            Err(err) => {
                tracing::error!(error = %err, "sign visitor token");
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "could not sign a token",
                );
            }
        }
    } else {
        None
    };
    Json(json!({ "name": profile.name, "email": profile.email, "token": token })).into_response()
}

/// Gives the visitor's open conversation their new name: in its state
/// (what `welcome` and `assigned` say of the visitor) and as a `renamed`
/// event, which every client following it, the agent's console among
/// them, receives at once. Safe to retry: a conversation that has the name
/// already is left alone.
async fn rename_in_conversation(
    backbone: &Backbone,
    visitor: &VisitorId,
    name: &str,
) -> Result<(), BusError> {
    let Some(pointer) = kv::get::<ConversationId>(&backbone.visitors, visitor.as_str()).await?
    else {
        return Ok(());
    };
    let conversation = pointer.value;
    let ((), written) = kv::cas_versioned(
        &backbone.conversations,
        conversation.as_str(),
        |current: Option<&ConversationState>| match current {
            Some(current)
                if current.visitor.id == visitor.as_str()
                    && current.status != ConversationStatus::Closed
                    && current.visitor.name != name =>
            {
                let mut renamed = current.clone();
                let previous = std::mem::replace(&mut renamed.visitor.name, name.to_owned());
                let now = Participant::visitor(visitor, name);
                renamed.owe(
                    now.clone(),
                    ConversationEvent::Renamed {
                        visitor: now,
                        previous: Some(previous),
                    },
                    None,
                );
                Decision::Write(renamed, ())
            }
            _ => Decision::Keep(()),
        },
    )
    .await?;
    if let Some(written) = written {
        outbox::flush_from(backbone, &conversation, written).await?;
    }
    Ok(())
}

/// `GET /api/v1/visitors/{id}` (agents): the visitor's profile and their
/// conversations in the archive, newest first.
async fn details(
    State(state): State<Arc<EdgeState>>,
    _caller: AgentCaller,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = VisitorId::new(id) else {
        return not_found("no such visitor");
    };
    let profile = match kv::get::<VisitorProfile>(&state.backbone.profiles, id.as_str()).await {
        Ok(profile) => profile.map(|p| p.value),
        Err(err) => return unavailable("read a visitor's profile", &err),
    };
    let search = ArchiveSearch {
        visitor_id: Some(id.to_string()),
        limit: 20,
        ..ArchiveSearch::default()
    };
    // The archive may be down: the profile is still worth showing.
    let (conversations, archive) = match super::archive::search(&state, &search).await {
        Ok(found) => (found, "ok"),
        Err(err) => {
            tracing::info!(error = %err, "visitor's conversations unavailable");
            (Vec::new(), "unavailable")
        }
    };
    Json(json!({
        "visitor_id": id,
        "profile": profile,
        "conversations": conversations,
        "archive": archive,
    }))
    .into_response()
}
