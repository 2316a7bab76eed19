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

use crate::admission::SocketGuard;
use crate::auth::{Identity, Verified};
use crate::handlers;
use crate::limits::{RateLimiter, Verdict};
use crate::outbox::{self, Outbound, OutboxHandle, WriterTiming};
use crate::server::EdgeState;

/// How long a closed connection is read for its close answer.
const CLOSE_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);
/// Notices queued for one agent session.
const NOTICE_QUEUE: usize = 256;

/// A connection after a valid `hello`.
pub struct Session {
    pub state: Arc<EdgeState>,
    pub identity: Identity,
    pub connection: u64,
    pub outbox: OutboxHandle,
    /// Conversations this connection has followed (the hub knows which it
    /// still does); left on close.
    pub followed: HashSet<ConversationId>,
    /// Conversations this connection was found allowed to send into, at
    /// which hub epoch (see `handlers::messages::send`).
    pub may_send: HashMap<ConversationId, SendCheck>,
    /// The id of the token the connection holds (said hello or refreshed
    /// with), by which a logout closes it.
    pub token_id: Option<String>,
    /// When that token was issued (unix seconds).
    pub token_issued_at: u64,
    /// When that token expires (unix seconds): the connection is closed
    /// with 4401 then, unless a `refresh` brought a newer one.
    pub token_expires_at: u64,
    /// Where the client said it was in each conversation (`hello`'s
    /// `resume`): a retried send is looked for after it.
    pub resume: HashMap<ConversationId, u64>,
    /// Retried sends looked up lately.
    pub retry_lookups: Budget,
}

/// A count of something allowed per minute (a fixed window).
#[derive(Debug, Default)]
pub struct Budget {
    window: Option<std::time::Instant>,
    used: u32,
}

impl Budget {
    /// Whether one more is allowed this minute (and counts it).
    pub fn allow(&mut self, per_minute: u32) -> bool {
        let now = std::time::Instant::now();
        let fresh = self
            .window
            .is_none_or(|start| now.duration_since(start) >= std::time::Duration::from_secs(60));
        if fresh {
            self.window = Some(now);
            self.used = 0;
        }
        if self.used >= per_minute {
            return false;
        }
        self.used += 1;
        true
    }
}

/// A send permission checked against the conversation's state.
#[derive(Debug, Clone, Copy)]
pub struct SendCheck {
    /// The conversation's hub epoch before the state was read.
    pub epoch: u64,
    /// Whether its agent had already answered (no first reply to note).
    pub answered: bool,
    /// Whether it was waiting or held by a bot: a visitor's message may
    /// start the bot's answer deadline.
    pub bot_watch: bool,
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

/// What identifies a frame that failed to parse, for the error's `ref`.
#[derive(Deserialize)]
struct FrameFields {
    #[serde(rename = "type")]
    kind: Option<String>,
    client_id: Option<String>,
}

/// Serves one upgraded connection to the end.
pub async fn serve(socket: WebSocket, state: Arc<EdgeState>, mut slot: SocketGuard) {
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
        WriterTiming {
            ping_interval: state.config.edge.ping_interval.get(),
            write_timeout: state.config.edge.write_timeout.get(),
        },
    ));

    // The handshake is boxed (freed once done), and so is the session
    // below: a task's future is as large as the largest state it can be
    // in, and it is held for the whole life of an idle connection.
    let Some((verified, resume)) = Box::pin(admit(&state, connection, &outbox, &mut stream)).await
    else {
        return finish(outbox, writer, stream).await;
    };
    let identity = verified.identity;
    if slot
        .identify(format!("{}:{}", identity.role().as_str(), identity.id()))
        .is_err()
    {
        tracing::info!(
            connection,
            id = identity.id(),
            "too many connections of one identity"
        );
        close_with(
            &outbox,
            close_code::TOO_MANY_REQUESTS,
            "too many connections",
        )
        .await;
        return finish(outbox, writer, stream).await;
    }
    let role = edge_role(&identity);
    let _connected = crate::metrics::connected(role);
    let span = tracing::info_span!("edge.session", connection, role = ?role, id = identity.id());
    let session = Session {
        state,
        identity,
        connection,
        outbox,
        followed: HashSet::new(),
        may_send: HashMap::new(),
        token_id: verified.token_id,
        token_issued_at: verified.issued_at,
        token_expires_at: verified.expires_at,
        resume: resume.clone(),
        retry_lookups: Budget::default(),
    };
    // Boxed, like every handler below: a task's future is as large as the
    // largest state it can be in, and it is held for the whole life of an
    // idle connection. Boxing keeps the rarely-used states off that bill.
    let stream = Box::pin(active(session, stream, resume))
        .instrument(span)
        .await;
    let _ = writer.await;
    drain(stream).await;
}

/// Reads and checks the `hello`: the caller closes the connection on
/// `None` (the reason was already queued for the client).
async fn admit(
    state: &EdgeState,
    connection: u64,
    outbox: &OutboxHandle,
    stream: &mut SplitStream<WebSocket>,
) -> Option<(Verified, HashMap<ConversationId, u64>)> {
    let first = tokio::time::timeout(state.config.edge.hello_timeout.get(), stream.next()).await;
    let hello = match first {
        Err(_) => {
            tracing::info!(connection, "no hello in time");
            close_with(outbox, close_code::HELLO_TIMEOUT, "no hello in time").await;
            return None;
        }
        Ok(Some(Ok(Message::Text(text)))) if text.len() > state.config.edge.max_frame_bytes => {
            tracing::info!(connection, bytes = text.len(), "frame too large");
            close_with(outbox, close_code::TOO_LARGE, "frame too large").await;
            return None;
        }
        Ok(Some(Ok(Message::Text(text)))) => serde_json::from_str::<ClientFrame>(&text),
        Ok(Some(Ok(Message::Close(_)))) | Ok(None) => return None,
        Ok(Some(Ok(_))) => {
            tracing::info!(connection, "frame before hello");
            refuse(outbox, "the first frame must be a hello text frame", None).await;
            return None;
        }
        Ok(Some(Err(err))) => {
            if is_too_large(&err) {
                tracing::info!(connection, "frame too large");
                close_with(outbox, close_code::TOO_LARGE, "frame too large").await;
            } else if is_invalid_utf8(&err) {
                tracing::info!(connection, "text frame that is not UTF-8");
                close_with(outbox, close_code::INVALID_DATA, "text is not utf-8").await;
            } else {
                tracing::debug!(connection, error = %err, "websocket read failed");
            }
            return None;
        }
    };
    crate::metrics::received(&hello);
    let (token, resume) = match hello {
        Ok(ClientFrame::Hello { token, resume }) => (token, resume),
        Ok(other) => {
            tracing::info!(connection, kind = other.kind(), "frame before hello");
            refuse(outbox, "the first frame must be hello", Some(other.kind())).await;
            return None;
        }
        Err(err) => {
            tracing::info!(connection, error = %err, "unreadable hello");
            refuse(outbox, &format!("invalid hello: {err}"), Some("hello")).await;
            return None;
        }
    };
    let verified = match state.tokens.verify_full(&token) {
        Ok(verified) => verified,
        Err(err) => {
            tracing::info!(connection, error = %err, "token refused");
            refuse(outbox, "invalid or expired token", Some("hello")).await;
            return None;
        }
    };
    match Box::pin(crate::access::still_valid(&state.backbone, &verified)).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(connection, "revoked token or disabled account refused");
            refuse(outbox, "this token was revoked", Some("hello")).await;
            return None;
        }
        Err(err) => {
            tracing::warn!(connection, error = %err, "cannot check the token's revocation");
            close_with(outbox, close_code::TRY_AGAIN_LATER, "try again later").await;
            return None;
        }
    }
    let role = edge_role(&verified.identity);
    if !state.config.edge.roles.contains(&role) {
        close_with(
            outbox,
            close_code::FORBIDDEN,
            "this edge does not serve this role",
        )
        .await;
        return None;
    }

    Some((verified, resume))
}

fn edge_role(identity: &Identity) -> EdgeRole {
    match identity {
        Identity::Visitor { .. } => EdgeRole::Visitor,
        Identity::Agent { .. } => EdgeRole::Agent,
    }
}

/// After our close frame, keep reading until the client answers it (or a
/// moment passes): closing a socket with unread input resets it, and the
/// client would lose the close frame and see 1006 instead of our code.
async fn drain(mut stream: SplitStream<WebSocket>) {
    let _ = tokio::time::timeout(CLOSE_DRAIN, async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
}

/// The life of an authenticated connection.
async fn active(
    mut session: Session,
    mut stream: SplitStream<WebSocket>,
    resume: HashMap<ConversationId, u64>,
) -> SplitStream<WebSocket> {
    let state = Arc::clone(&session.state);
    let connection = session.connection;
    session
        .outbox
        .send(Outbound::Receipts(Box::new((
            session.identity.participant(),
            state.backbone.client.clone(),
        ))))
        .await;
    let (notice_tx, mut notices) = mpsc::channel::<AgentNotice>(NOTICE_QUEUE);
    if let Identity::Agent { id, .. } = &session.identity {
        // An agent who would not hear of assignments, or whom routers
        // would not see, is not shown online: the console reconnects.
        let reachable = match Box::pin(state.hub.join_inbox(id, connection, notice_tx)).await {
            Ok(()) => Box::pin(state.presences.set(id, connection, AgentStatus::Online))
                .await
                .map_err(|err| err.to_string()),
            Err(err) => Err(err.to_string()),
        };
        if let Err(err) = reachable {
            tracing::error!(error = %err, "agent cannot be reached; not shown online");
            session
                .error(ErrorCode::Unavailable, "cannot reach the message bus", None)
                .await;
            session
                .close(close_code::TRY_AGAIN_LATER, "try again later")
                .await;
            Box::pin(cleanup(&session)).await;
            return stream;
        }
    } else {
        drop(notice_tx);
    }
    Box::pin(handlers::welcome(&mut session, resume)).await;
    if let Identity::Agent { .. } = session.identity {
        if let Some(queue) = state.hub.queue() {
            session.outbox.send(Outbound::Frame(queue)).await;
        }
    }

    let mut limiter =
        RateLimiter::new(state.config.edge.rate_per_sec, state.config.edge.rate_burst);
    let kick = session.outbox.kick.clone();
    let mut broadcasts = state.hub.notices();
    let mut broadcasts_open = true;
    let role = session.identity.role();
    // A live client answers the writer's pings; one that sends nothing at
    // all for `idle_timeout` is gone. The timer is moved on only when it
    // fires, not for every frame.
    let idle_timeout = state.config.edge.idle_timeout.get();
    let mut last_heard = tokio::time::Instant::now();
    let idle = tokio::time::sleep(idle_timeout);
    tokio::pin!(idle);
    // Likewise the token's expiry, which a `refresh` moves on.
    let expiry = tokio::time::sleep_until(crate::access::instant_of(session.token_expires_at));
    tokio::pin!(expiry);
    let mut revocations = state.hub.revocations();
    // When the edge drains, each connection closes at its own moment within
    // the grace period: clients reconnect elsewhere a few at a time.
    let drained = drained_at(&state, connection);
    tokio::pin!(drained);
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => break,
            () = &mut drained => {
                session.close(close_code::RESTARTING, "server restarting").await;
                break;
            }
            () = kick.cancelled() => break,
            () = &mut expiry => {
                let until = crate::access::instant_of(session.token_expires_at);
                if tokio::time::Instant::now() >= until {
                    tracing::info!("token expired; connection closed");
                    session.close(close_code::UNAUTHORIZED, "token expired").await;
                    break;
                }
                expiry.as_mut().reset(until);
            }
            revocation = revocations.recv() => {
                if let Some(reason) = Box::pin(crate::access::revoked(&session, revocation)).await {
                    tracing::info!(reason, "access revoked; connection closed");
                    session.close(close_code::UNAUTHORIZED, reason).await;
                    break;
                }
            }
            () = &mut idle => {
                let silent_until = last_heard + idle_timeout;
                if tokio::time::Instant::now() >= silent_until {
                    tracing::info!(idle = ?idle_timeout, "connection silent; closed as dead");
                    session.close(close_code::IDLE_TIMEOUT, "idle timeout").await;
                    break;
                }
                idle.as_mut().reset(silent_until);
            }
            Some(notice) = notices.recv() => Box::pin(handlers::on_notice(&mut session, notice)).await,
            broadcast = broadcasts.recv(), if broadcasts_open => match broadcast {
                Ok((audience, frame)) if audience == role => {
                    session.outbox.offer(Outbound::Frame(frame));
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "session missed broadcasts");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => broadcasts_open = false,
            },
            message = stream.next() => match message {
                Some(Ok(message)) => {
                    last_heard = tokio::time::Instant::now();
                    if !Box::pin(on_message(&mut session, &mut limiter, message)).await {
                        break;
                    }
                }
                Some(Err(err)) => {
                    if is_too_large(&err) {
                        tracing::info!("frame too large");
                        session.close(close_code::TOO_LARGE, "frame too large").await;
                    } else if is_invalid_utf8(&err) {
                        tracing::info!("text frame that is not UTF-8");
                        session.close(close_code::INVALID_DATA, "text is not utf-8").await;
                    } else {
                        tracing::debug!(error = %err, "websocket read failed");
                    }
                    break;
                }
                None => break,
            }
        }
    }
    Box::pin(cleanup(&session)).await;
    stream
}

/// Resolves when this connection's turn to close comes in a drain: its
/// moment within `edge.drain_grace`, spread evenly over the connections.
async fn drained_at(state: &EdgeState, connection: u64) {
    state.closing.cancelled().await;
    // The golden ratio's fraction spreads consecutive numbers evenly.
    let share = (connection as f64 * 0.618_033_988_75).fract();
    tokio::time::sleep(state.config.edge.drain_grace.get().mul_f64(share)).await;
}

/// Handles one incoming WebSocket message; false ends the connection.
async fn on_message(session: &mut Session, limiter: &mut RateLimiter, message: Message) -> bool {
    let size = match &message {
        Message::Text(text) => text.len(),
        Message::Binary(bytes) => bytes.len(),
        Message::Close(_) => return false,
        Message::Ping(_) | Message::Pong(_) => return true,
    };
    if size > session.state.config.edge.max_frame_bytes {
        tracing::info!(bytes = size, "frame too large");
        session
            .close(close_code::TOO_LARGE, "frame too large")
            .await;
        return false;
    }
    // Every data frame counts against the limit, whatever it holds.
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
    let Message::Text(text) = message else {
        switchboard_metrics::edge::edge().received_binary();
        tracing::info!("binary frame refused");
        session
            .error(ErrorCode::BadRequest, "only text frames are accepted", None)
            .await;
        return true;
    };
    let frame = serde_json::from_str::<ClientFrame>(&text);
    crate::metrics::received(&frame);
    match frame {
        Ok(frame) => handlers::dispatch(session, frame).await,
        Err(err) => {
            let reference = unparsed_reference(&text);
            tracing::info!(error = %err, reference = ?reference, "bad frame");
            session
                .error(
                    ErrorCode::BadRequest,
                    format!("invalid frame: {err}"),
                    reference,
                )
                .await;
        }
    }
    true
}

/// The `ref` for a frame that did not parse: its `client_id` when it has
/// one (so a client with several sends in flight knows which failed), else
/// its `type`.
fn unparsed_reference(text: &str) -> Option<String> {
    let fields = serde_json::from_str::<FrameFields>(text).ok()?;
    fields.client_id.or(fields.kind)
}

/// Whether a read error is a frame over the size cap.
fn is_too_large(err: &axum::Error) -> bool {
    websocket_error(err, |e| matches!(e, tungstenite::Error::Capacity(_)))
}

/// Whether a read error is a text frame that is not UTF-8.
fn is_invalid_utf8(err: &axum::Error) -> bool {
    websocket_error(err, |e| matches!(e, tungstenite::Error::Utf8(_)))
}

/// Whether the WebSocket library's error under `err` is one `is` names.
fn websocket_error(err: &axum::Error, is: impl Fn(&tungstenite::Error) -> bool) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(current) = source {
        if current
            .downcast_ref::<tungstenite::Error>()
            .is_some_and(&is)
        {
            return true;
        }
        source = current.source();
    }
    false
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

/// Lets the writer send what is queued (a close, say), waits for it, and
/// reads the client's answer.
async fn finish(
    outbox: OutboxHandle,
    writer: tokio::task::JoinHandle<()>,
    stream: SplitStream<WebSocket>,
) {
    drop(outbox);
    let _ = writer.await;
    drain(stream).await;
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
