//! One WebSocket connection: `hello` within the time limit, then frames
//! until the client leaves, is dropped, or the edge shuts down. Every
//! refusal is an `error` frame or a close code, and is logged.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket};
use futures::stream::SplitStream;
use futures::StreamExt;
use serde::Deserialize;
use switchboard_config::EdgeRole;
use switchboard_protocol::frames::{close_code, ClientFrame, ErrorCode, ServerFrame};
use switchboard_protocol::ids::ConversationId;
use switchboard_protocol::payloads::{AgentNotice, AgentStatus};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::auth::Identity;
use crate::handlers;
use crate::limits::{RateLimiter, Verdict};
use crate::outbox::{self, Outbound, OutboxHandle};
use crate::server::EdgeState;

/// Notices queued for one agent session.
const NOTICE_QUEUE: usize = 256;

/// A connection after a valid `hello`.
pub struct Session {
    pub state: Arc<EdgeState>,
    pub identity: Identity,
    pub connection: u64,
    pub outbox: OutboxHandle,
    /// Conversations this connection follows (and was allowed to).
    pub followed: HashSet<ConversationId>,
}

impl Session {
    pub async fn error(
        &self,
        code: ErrorCode,
        message: impl Into<String>,
        reference: Option<String>,
    ) {
        self.outbox
            .frame(&ServerFrame::error(code, message, reference))
            .await;
    }

    pub async fn close(&self, code: u16, reason: &str) {
        self.outbox
            .send(Outbound::Close {
                code,
                reason: reason.to_owned(),
            })
            .await;
    }
}

/// Only the `type` of a frame that failed to parse, for the error's `ref`.
#[derive(Deserialize)]
struct FrameType {
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// Serves one upgraded connection to the end.
pub async fn serve(socket: WebSocket, state: Arc<EdgeState>) {
    let connection = state.next_connection.fetch_add(1, Ordering::Relaxed);
    let (sink, mut stream) = socket.split();
    let (tx, rx) = mpsc::channel(state.config.edge.outbound_queue);
    let outbox = OutboxHandle {
        tx,
        kick: CancellationToken::new(),
    };
    let writer = tokio::spawn(outbox::run(
        sink,
        rx,
        state.backbone.log.clone(),
        outbox.kick.clone(),
        state.shutdown.clone(),
    ));

    let hello = tokio::time::timeout(state.config.edge.hello_timeout.get(), stream.next()).await;
    let hello = match hello {
        Err(_) => {
            tracing::info!(connection, "no hello in time");
            close_with(&outbox, close_code::HELLO_TIMEOUT, "no hello in time").await;
            drop(outbox);
            let _ = writer.await;
            return;
        }
        Ok(Some(Ok(Message::Text(text)))) => serde_json::from_str::<ClientFrame>(&text),
        Ok(_) => {
            drop(outbox);
            let _ = writer.await;
            return;
        }
    };
    let (token, resume) = match hello {
        Ok(ClientFrame::Hello { token, resume }) => (token, resume),
        Ok(other) => {
            tracing::info!(connection, kind = other.kind(), "frame before hello");
            refuse(&outbox, "the first frame must be hello", Some(other.kind())).await;
            drop(outbox);
            let _ = writer.await;
            return;
        }
        Err(err) => {
            tracing::info!(connection, error = %err, "unreadable hello");
            refuse(&outbox, &format!("invalid hello: {err}"), Some("hello")).await;
            drop(outbox);
            let _ = writer.await;
            return;
        }
    };
    let identity = match state.tokens.verify(&token) {
        Ok(identity) => identity,
        Err(err) => {
            tracing::info!(connection, error = %err, "token refused");
            refuse(&outbox, "invalid or expired token", Some("hello")).await;
            drop(outbox);
            let _ = writer.await;
            return;
        }
    };
    let role = match identity {
        Identity::Visitor { .. } => EdgeRole::Visitor,
        Identity::Agent { .. } => EdgeRole::Agent,
    };
    if !state.config.edge.roles.contains(&role) {
        close_with(
            &outbox,
            close_code::FORBIDDEN,
            "this edge does not serve this role",
        )
        .await;
        drop(outbox);
        let _ = writer.await;
        return;
    }

    let span = tracing::info_span!("edge.session", connection, role = ?role, id = identity.id());
    let session = Session {
        state,
        identity,
        connection,
        outbox,
        followed: HashSet::new(),
    };
    active(session, stream, resume).instrument(span).await;
    let _ = writer.await;
}

/// The life of an authenticated connection.
async fn active(
    mut session: Session,
    mut stream: SplitStream<WebSocket>,
    resume: HashMap<ConversationId, u64>,
) {
    let state = Arc::clone(&session.state);
    let connection = session.connection;
    let (notice_tx, mut notices) = mpsc::channel::<AgentNotice>(NOTICE_QUEUE);
    if let Identity::Agent { id, .. } = &session.identity {
        if let Err(err) = state.hub.join_inbox(id, connection, notice_tx).await {
            tracing::error!(error = %err, "join agent inbox");
            session
                .error(ErrorCode::Unavailable, "cannot reach the message bus", None)
                .await;
        }
        if let Err(err) = state
            .presences
            .set(id, connection, AgentStatus::Online)
            .await
        {
            tracing::error!(error = %err, "set presence");
        }
    } else {
        drop(notice_tx);
    }
    handlers::welcome(&mut session, resume).await;

    let mut limiter =
        RateLimiter::new(state.config.edge.rate_per_sec, state.config.edge.rate_burst);
    let kick = session.outbox.kick.clone();
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => break,
            () = kick.cancelled() => break,
            Some(notice) = notices.recv() => handlers::on_notice(&mut session, notice).await,
            message = stream.next() => {
                let Some(Ok(message)) = message else { break };
                if !on_message(&mut session, &mut limiter, message).await {
                    break;
                }
            }
        }
    }
    cleanup(&session).await;
}

/// Handles one incoming WebSocket message; false ends the connection.
async fn on_message(session: &mut Session, limiter: &mut RateLimiter, message: Message) -> bool {
    let text = match message {
        Message::Text(text) => text,
        Message::Binary(_) => {
            session
                .error(ErrorCode::BadRequest, "only text frames are accepted", None)
                .await;
            return true;
        }
        Message::Close(_) => return false,
        Message::Ping(_) | Message::Pong(_) => return true,
    };
    if text.len() > session.state.config.edge.max_frame_bytes {
        tracing::info!(bytes = text.len(), "frame too large");
        session
            .close(close_code::TOO_LARGE, "frame too large")
            .await;
        return false;
    }
    match limiter.check() {
        Verdict::Allow => {}
        Verdict::Refuse => {
            session
                .error(ErrorCode::RateLimited, "too many frames, slow down", None)
                .await;
            return true;
        }
        Verdict::Disconnect => {
            tracing::info!("rate limit exceeded repeatedly");
            session
                .close(close_code::TOO_MANY_REQUESTS, "too many requests")
                .await;
            return false;
        }
    }
    match serde_json::from_str::<ClientFrame>(&text) {
        Ok(frame) => handlers::dispatch(session, frame).await,
        Err(err) => {
            let kind = serde_json::from_str::<FrameType>(&text)
                .ok()
                .and_then(|f| f.kind);
            tracing::info!(error = %err, kind = ?kind, "bad frame");
            session
                .error(ErrorCode::BadRequest, format!("invalid frame: {err}"), kind)
                .await;
        }
    }
    true
}

async fn cleanup(session: &Session) {
    let state = &session.state;
    for conversation in &session.followed {
        state.hub.unfollow(conversation, session.connection);
    }
    if let Identity::Agent { id, .. } = &session.identity {
        state.hub.leave_inbox(id, session.connection);
        state.presences.remove(id, session.connection).await;
    }
}

async fn refuse(outbox: &OutboxHandle, message: &str, reference: Option<&str>) {
    outbox
        .frame(&ServerFrame::error(
            ErrorCode::Unauthorized,
            message,
            reference.map(str::to_owned),
        ))
        .await;
    close_with(outbox, close_code::UNAUTHORIZED, "unauthorized").await;
}

async fn close_with(outbox: &OutboxHandle, code: u16, reason: &str) {
    outbox
        .send(Outbound::Close {
            code,
            reason: reason.to_owned(),
        })
        .await;
}
