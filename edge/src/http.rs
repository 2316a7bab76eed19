//! The JSON API: visitor sign-up, agent login, health and readiness, and
//! the WebSocket upgrade. Errors are JSON bodies with an `error` code.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use switchboard_bus::accounts;
use switchboard_config::EdgeRole;
use switchboard_protocol::ids::VisitorId;

use crate::admission::Limited;
use crate::auth::Identity;
use crate::server::EdgeState;

pub fn routes() -> Router<Arc<EdgeState>> {
    Router::new()
        .route("/api/v1/visitors", post(create_visitor))
        .route("/api/v1/agents/login", post(login_agent))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/ws", get(upgrade))
}

/// An error answer: status and `{"error": code, "message": …}`.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({ "error": code, "message": message }))).into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct VisitorSignup {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    page_url: Option<String>,
}

/// The JSON error answering a body that could not be read (too large, say).
fn body_refused(rejection: BytesRejection) -> Response {
    let status = rejection.status();
    let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "too_large"
    } else {
        "bad_request"
    };
    tracing::info!(%status, "request body refused");
    error(status, code, &rejection.body_text())
}

/// `429 Too Many Requests` with `Retry-After` (whole seconds, at least 1).
pub fn too_many(limited: Limited, what: &str) -> Response {
    let seconds = limited.retry_after.as_secs_f64().ceil().max(1.0) as u64;
    let mut response = error(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        &format!("too many {what}; try again in {seconds} s"),
    );
    if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

async fn create_visitor(
    State(state): State<Arc<EdgeState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let address = state.admission.client_address(peer, &headers);
    if let Err(limited) = state.admission.signup(address) {
        tracing::info!(%address, "sign-ups from one address limited");
        return too_many(limited, "sign-ups from your address");
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return body_refused(rejection),
    };
    if !state.config.edge.roles.contains(&EdgeRole::Visitor) {
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this edge does not serve visitors",
        );
    }
    let signup: VisitorSignup = if body.iter().all(u8::is_ascii_whitespace) {
        VisitorSignup::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(signup) => signup,
            Err(err) => {
                tracing::info!(error = %err, "bad visitor sign-up");
                return error(StatusCode::BAD_REQUEST, "bad_request", &err.to_string());
            }
        }
    };
    let name = signup.name.as_deref().map(str::trim).unwrap_or_default();
    if name.chars().count() > 80
        || signup.email.as_deref().is_some_and(|e| e.len() > 254)
        || signup.page_url.as_deref().is_some_and(|u| u.len() > 2048)
    {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "a field is too long",
        );
    }
    let id = VisitorId::generate();
    let name = if name.is_empty() {
        // "Visitor 7K3Q": the end of the id tells anonymous visitors apart.
        let tail = &id.as_str()[id.as_str().len().saturating_sub(4)..];
        format!("Visitor {tail}")
    } else {
        name.to_owned()
    };
    let email = signup
        .email
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty());
    if email.is_some_and(|e| !crate::api::visitors::plausible_email(e)) {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the email address is not valid",
        );
    }
    // Shown to agents; the chat works without it.
    if let Err(err) = crate::api::visitors::remember(
        &state.backbone,
        &id,
        Some(&name),
        email,
        signup.page_url.as_deref(),
        crate::api::visitors::user_agent(&headers).as_deref(),
    )
    .await
    {
        tracing::warn!(error = %err, "save a visitor's profile");
    }
    let identity = Identity::Visitor {
        id: id.clone(),
        name,
    };
    match state
        .tokens
        .issue(&identity, state.config.auth.visitor_token_ttl.get())
    {
        Ok(token) => (
            StatusCode::CREATED,
            Json(json!({ "visitor_id": id, "token": token })),
        )
            .into_response(),
        Err(err) => {
            tracing::error!(error = %err, "sign visitor token");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "could not sign a token",
            )
        }
    }
}

#[derive(Debug, Deserialize)]
struct Login {
    login: String,
    password: String,
}

async fn login_agent(
    State(state): State<Arc<EdgeState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return body_refused(rejection),
    };
    if !state.config.edge.roles.contains(&EdgeRole::Agent) {
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this edge does not serve agents",
        );
    }
    let login: Login = match serde_json::from_slice(&body) {
        Ok(login) => login,
        Err(err) => return error(StatusCode::BAD_REQUEST, "bad_request", &err.to_string()),
    };
    let address = state.admission.client_address(peer, &headers);
    if let Err(limited) = state.admission.login(address, &login.login) {
        tracing::info!(%address, "login attempts limited");
        return too_many(limited, "login attempts");
    }
    let Some(_turn) = state.admission.password_check().await else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the edge is shutting down",
        );
    };
    let account = match accounts::authenticate(&state.backbone, &login.login, &login.password).await
    {
        Ok(Some(account)) => account,
        Ok(None) => {
            // What was typed is not logged: people type passwords into
            // the login field.
            tracing::info!("agent login refused");
            return error(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "wrong login or password",
            );
        }
        Err(err) => {
            tracing::error!(error = %err, "agent login");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the account store is unreachable",
            );
        }
    };
    let identity = Identity::Agent {
        id: account.id.clone(),
        name: account.name.clone(),
    };
    match state.tokens.issue_agent_after(
        &identity,
        account.role,
        state.config.auth.agent_token_ttl.get(),
        account.tokens_valid_after,
    ) {
        Ok(token) => Json(json!({
            "agent_id": account.id,
            "name": account.name,
            "role": account.role.as_str(),
            "token": token,
        }))
        .into_response(),
        Err(err) => {
            tracing::error!(error = %err, "sign agent token");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "could not sign a token",
            )
        }
    }
}

async fn healthz() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

async fn readyz(State(state): State<Arc<EdgeState>>) -> Response {
    if state.draining.is_cancelled() {
        // Stopping: the load balancer sends new clients elsewhere.
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "this edge is stopping",
        );
    }
    if !state.hub.relaying() {
        // Admin notices, the queue and revocations would not reach this
        // edge's connections.
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "broadcast relay not subscribed",
        );
    }
    let client = &state.backbone.client;
    if client.connection_state() != async_nats::connection::State::Connected {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            &format!("nats is {}", client.connection_state()),
        );
    }
    // Connected is not enough: a server that stopped answering (paused,
    // partitioned) still looks connected until pings time out. A round
    // trip to JetStream tells, and that JetStream itself answers.
    match tokio::time::timeout(READY_ROUND_TRIP, state.backbone.js.query_account()).await {
        Ok(Ok(_)) => Json(json!({ "status": "ready" })).into_response(),
        Ok(Err(err)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            &format!("jetstream does not answer: {err}"),
        ),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "nats does not answer",
        ),
    }
}

/// Per-connection WebSocket buffers.
const WS_READ_BUFFER: usize = 1024;
const WS_WRITE_BUFFER: usize = 8 * 1024;
/// The smallest frame size the WebSocket library itself refuses.
const WS_HARD_CAP_FLOOR: usize = 64 * 1024;

/// How long `/readyz` waits for NATS to answer a ping.
const READY_ROUND_TRIP: std::time::Duration = std::time::Duration::from_secs(2);

async fn upgrade(
    State(state): State<Arc<EdgeState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let address = state.admission.client_address(peer, &headers);
    let Ok(slot) = state.admission.open_socket(address) else {
        tracing::info!(%address, "too many connections from one address");
        return too_many(
            Limited {
                retry_after: std::time::Duration::from_secs(10),
            },
            "connections from your address",
        );
    };
    // The hard cap is well above the configured limit so that a frame over
    // it is read whole and answered with close 1009 by the session. (Past
    // the cap the library stops reading mid-frame; closing a socket with
    // unread input resets it, and the client may see 1006 instead.)
    let cap = state
        .config
        .edge
        .max_frame_bytes
        .saturating_mul(4)
        .max(WS_HARD_CAP_FLOOR);
    ws.max_message_size(cap)
        .max_frame_size(cap)
        // The library's defaults (128 KiB each, the read buffer zeroed and
        // resident) would cost far more per idle connection than the rest
        // of the connection; frames here are small.
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(WS_WRITE_BUFFER)
        .on_upgrade(move |socket| {
            let tracker = state.sessions.clone();
            tracker.track_future(crate::transport::ws::serve(socket, state, slot))
        })
}
