//! One client connection, whatever its transport (`crate::transport`):
//! `hello` within the time limit, then frames until the client leaves, is
//! dropped, or the edge shuts down. Every refusal is an `error` frame or a
//! close code, and is logged.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::StreamExt;
use serde::Deserialize;
use switchboard_config::EdgeRole;
use switchboard_protocol::frames::{close_code, ClientFrame, ErrorCode, ServerFrame};
use switchboard_protocol::ids::ConversationId;
use switchboard_protocol::payloads::{AgentNotice, AgentStatus, Revocation};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::admission::SocketGuard;
use crate::auth::{Identity, Verified};
use crate::handlers;
use crate::limits::{RateLimiter, Verdict};
use crate::outbox::{self, Outbound, OutboxHandle, WriterTiming};
use crate::server::EdgeState;
use crate::transport::{Inbound, InboundStream, PostOutcome, Posted, Sink};

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

/// A client connection, from its transport: where frames go and where
/// they come from.
pub struct Connection {
    pub sink: Sink,
    pub inbound: InboundStream,
    /// Read the client's answer to our close (a WebSocket: closing with
    /// unread input resets the socket, and the client would see 1006).
    pub drain_after_close: bool,
    /// Cancelled when the edge shuts down: the client gets close 1012.
    pub stop: CancellationToken,
}

/// Serves one connection to the end, whatever its transport.
pub async fn serve(
    connection: Connection,
    state: Arc<EdgeState>,
    slot: SocketGuard,
    number: Option<u64>,
) {
    let number = number.unwrap_or_else(|| state.next_connection.fetch_add(1, Ordering::Relaxed));
    let Connection {
        sink,
        mut inbound,
        drain_after_close,
        stop,
    } = connection;
    let (tx, rx) = mpsc::channel(state.config.edge.outbound_queue);
    let outbox = OutboxHandle {
        tx,
        kick: CancellationToken::new(),
        gone: CancellationToken::new(),
    };
    let writer = tokio::spawn(outbox::run(
        sink,
        rx,
        state.backbone.log.clone(),
        outbox.clone(),
        stop.clone(),
        WriterTiming {
            ping_interval: state.config.edge.ping_interval.get(),
            write_timeout: state.config.edge.write_timeout.get(),
            receipt_delay: state.config.edge.receipt_delay.get(),
        },
    ));
    Box::pin(run_connection(
        &state,
        number,
        slot,
        outbox,
        &mut inbound,
        stop,
    ))
    .await;
    let _ = writer.await;
    if drain_after_close {
        drain(inbound).await;
    }
}

async fn run_connection(
    state: &Arc<EdgeState>,
    connection: u64,
    mut slot: SocketGuard,
    outbox: OutboxHandle,
    inbound: &mut InboundStream,
    stop: CancellationToken,
) {
    // Revocations are heard from before the token is checked against the
    // `revoked` bucket: one published after that check, while the hello
    // is still being answered, is not missed.
    let revocations = state.hub.revocations();
    // The handshake is boxed (freed once done), and so is the session
    // below: a task's future is as large as the largest state it can be
    // in, and it is held for the whole life of an idle connection.
    let Some((verified, resume, leftover)) =
        Box::pin(admit(state, connection, &outbox, inbound)).await
    else {
        return;
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
        if let Some(posted) = leftover {
            let _ = posted.done.send(PostOutcome::Refused(
                429,
                "rate_limited",
                "too many connections".into(),
            ));
        }
        close_with(
            &outbox,
            close_code::TOO_MANY_REQUESTS,
            "too many connections",
        )
        .await;
        return;
    }
    let role = edge_role(&identity);
    let _connected = crate::metrics::connected(role);
    let span = tracing::info_span!("edge.session", connection, role = ?role, id = identity.id());
    let session = Session {
        state: Arc::clone(state),
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
    Box::pin(active(
        session,
        inbound,
        resume,
        leftover,
        revocations,
        stop,
    ))
    .instrument(span)
    .await;
    drop(slot);
}

/// Reads and checks the `hello`: the caller closes the connection on
/// `None` (the reason was already queued for the client). Frames POSTed
/// with the `hello` come back to be handled after the `welcome`.
async fn admit(
    state: &EdgeState,
    connection: u64,
    outbox: &OutboxHandle,
    inbound: &mut InboundStream,
) -> Option<(Verified, HashMap<ConversationId, u64>, Option<Posted>)> {
    // A ping or pong (a client answering the server's ping, or a library
    // that pings on open) is not a frame: the `hello` may still follow,
    // within the same time.
    let deadline = tokio::time::Instant::now() + state.config.edge.hello_timeout.get();
    let first = loop {
        match tokio::time::timeout_at(deadline, inbound.next()).await {
            Ok(Some(Inbound::Heard)) => continue,
            other => break other,
        }
    };
    let mut posted = None;
    let text = match first {
        Err(_) => {
            tracing::info!(connection, "no hello in time");
            close_with(outbox, close_code::HELLO_TIMEOUT, "no hello in time").await;
            return None;
        }
        Ok(Some(Inbound::Text(text))) => text,
        Ok(Some(Inbound::Posted(mut post))) => {
            if post.frames.is_empty() {
                let _ = post.done.send(PostOutcome::Refused(
                    400,
                    "bad_request",
                    "the first POST must hold a hello".into(),
                ));
                refuse(outbox, "the first frame must be hello", None).await;
                return None;
            }
            let text = post.frames.remove(0);
            post.handled += 1;
            posted = Some(post);
            text
        }
        Ok(Some(Inbound::TooLarge)) => {
            tracing::info!(connection, "frame too large");
            close_with(outbox, close_code::TOO_LARGE, "frame too large").await;
            return None;
        }
        Ok(Some(Inbound::InvalidUtf8)) => {
            tracing::info!(connection, "text frame that is not UTF-8");
            close_with(outbox, close_code::INVALID_DATA, "text is not utf-8").await;
            return None;
        }
        Ok(Some(Inbound::Close | Inbound::Failed)) | Ok(None) => return None,
        // (A ping or pong was skipped above.)
        Ok(Some(Inbound::Binary(_) | Inbound::Heard)) => {
            tracing::info!(connection, "frame before hello");
            refuse(outbox, "the first frame must be a hello text frame", None).await;
            return None;
        }
    };
    let refused = |posted: Option<Posted>, message: &str| {
        if let Some(post) = posted {
            let _ = post.done.send(PostOutcome::Refused(
                401,
                "unauthorized",
                message.to_owned(),
            ));
        }
    };
    if text.len() > state.config.edge.max_frame_bytes {
        tracing::info!(connection, bytes = text.len(), "frame too large");
        refused(posted, "frame too large");
        close_with(outbox, close_code::TOO_LARGE, "frame too large").await;
        return None;
    }
    let hello = serde_json::from_str::<ClientFrame>(&text);
    crate::metrics::received(&hello);
    let (token, resume) = match hello {
        Ok(ClientFrame::Hello { token, resume }) => (token, resume),
        Ok(other) => {
            tracing::info!(connection, kind = other.kind(), "frame before hello");
            refused(posted, "the first frame must be hello");
            refuse(outbox, "the first frame must be hello", Some(other.kind())).await;
            return None;
        }
        Err(err) => {
            tracing::info!(connection, error = %err, "unreadable hello");
            refused(posted, "invalid hello");
            refuse(outbox, &format!("invalid hello: {err}"), Some("hello")).await;
            return None;
        }
    };
    let verified = match state.tokens.verify_full(&token) {
        Ok(verified) => verified,
        Err(err) => {
            tracing::info!(connection, error = %err, "token refused");
            refused(posted, "invalid or expired token");
            refuse(outbox, "invalid or expired token", Some("hello")).await;
            return None;
        }
    };
    // Frames POSTed to an event stream come with the poster's token: the
    // same identity as the hello's.
    if let Some(post) = &posted {
        let same = state
            .tokens
            .verify_full(&post.token)
            .is_ok_and(|poster| same_identity(&poster.identity, &verified.identity));
        if !same {
            tracing::info!(connection, "hello posted with another identity's token");
            refused(posted, "the bearer token is not the hello's");
            refuse(outbox, "the bearer token is not the hello's", Some("hello")).await;
            return None;
        }
    }
    match Box::pin(crate::access::still_valid(&state.backbone, &verified)).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(connection, "revoked token or disabled account refused");
            refused(posted, "this token was revoked");
            refuse(outbox, "this token was revoked", Some("hello")).await;
            return None;
        }
        Err(err) => {
            tracing::warn!(connection, error = %err, "cannot check the token's revocation");
            if let Some(post) = posted {
                let _ = post.done.send(PostOutcome::Refused(
                    503,
                    "unavailable",
                    "try again later".into(),
                ));
            }
            close_with(outbox, close_code::TRY_AGAIN_LATER, "try again later").await;
            return None;
        }
    }
    let role = edge_role(&verified.identity);
    if !state.config.edge.roles.contains(&role) {
        if let Some(post) = posted {
            let _ = post.done.send(PostOutcome::Refused(
                403,
                "forbidden",
                "this edge does not serve this role".into(),
            ));
        }
        close_with(
            outbox,
            close_code::FORBIDDEN,
            "this edge does not serve this role",
        )
        .await;
        return None;
    }

    Some((verified, resume, posted))
}

/// Whether two identities are the same visitor or agent.
fn same_identity(a: &Identity, b: &Identity) -> bool {
    a.role() == b.role() && a.id() == b.id()
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
async fn drain(mut inbound: InboundStream) {
    let _ = tokio::time::timeout(CLOSE_DRAIN, async {
        while let Some(item) = inbound.next().await {
            if matches!(item, Inbound::Close | Inbound::Failed) {
                break;
            }
        }
    })
    .await;
}

/// The life of an authenticated connection.
async fn active(
    mut session: Session,
    inbound: &mut InboundStream,
    resume: HashMap<ConversationId, u64>,
    leftover: Option<Posted>,
    mut revocations: broadcast::Receiver<Arc<Revocation>>,
    stop: CancellationToken,
) {
    let state = Arc::clone(&session.state);
    let connection = session.connection;
    session
        .outbox
        .send(Outbound::Receipts(Box::new((
            session.identity.participant(),
            state.backbone.client.clone(),
        ))))
        .await;
    // Only agents hear notices: a visitor's connection does not pay for
    // the queue (its first block, ~5 KB, is allocated with the channel).
    let mut notices = None;
    if let Identity::Agent { id, .. } = &session.identity {
        let (notice_tx, queue) = mpsc::channel::<AgentNotice>(NOTICE_QUEUE);
        notices = Some(queue);
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
            return;
        }
    }
    Box::pin(handlers::welcome(&mut session, resume)).await;
    if let Identity::Agent { .. } = session.identity {
        if let Some(queue) = state.hub.queue() {
            session.outbox.send(Outbound::Frame(queue)).await;
        }
        if let Some(missed) = state.hub.missed() {
            session.outbox.send(Outbound::Frame(missed)).await;
        }
    }

    let mut limiter =
        RateLimiter::new(state.config.edge.rate_per_sec, state.config.edge.rate_burst);
    let mut open = true;
    if let Some(posted) = leftover {
        open = Box::pin(on_posted(&mut session, &mut limiter, posted, false)).await;
    }
    let kick = session.outbox.kick.clone();
    let gone = session.outbox.gone.clone();
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
    // When the edge drains, each connection closes at its own moment within
    // the grace period: clients reconnect elsewhere a few at a time.
    let drained = drained_at(&state, connection);
    tokio::pin!(drained);
    while open {
        tokio::select! {
            () = stop.cancelled() => break,
            () = &mut drained => {
                session.close(close_code::RESTARTING, "server restarting").await;
                break;
            }
            () = kick.cancelled() => break,
            () = gone.cancelled() => break,
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
            Some(notice) = next_notice(&mut notices) => Box::pin(handlers::on_notice(&mut session, notice)).await,
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
            message = inbound.next() => match message {
                // A pong (or another control frame): nothing to handle.
                Some(Inbound::Heard) => last_heard = tokio::time::Instant::now(),
                Some(message) => {
                    last_heard = tokio::time::Instant::now();
                    open = Box::pin(on_inbound(&mut session, &mut limiter, message)).await;
                }
                None => break,
            }
        }
    }
    Box::pin(cleanup(&session)).await;
}

/// The next notice for an agent's connection; never, for a visitor's.
async fn next_notice(notices: &mut Option<mpsc::Receiver<AgentNotice>>) -> Option<AgentNotice> {
    match notices {
        Some(queue) => queue.recv().await,
        None => std::future::pending().await,
    }
}

/// Resolves when this connection's turn to close comes in a drain: its
/// moment within `edge.drain_grace`, spread evenly over the connections.
async fn drained_at(state: &EdgeState, connection: u64) {
    state.closing.cancelled().await;
    // The golden ratio's fraction spreads consecutive numbers evenly.
    let share = (connection as f64 * 0.618_033_988_75).fract();
    tokio::time::sleep(state.config.edge.drain_grace.get().mul_f64(share)).await;
}

/// Handles one thing the client sent; false ends the connection.
async fn on_inbound(session: &mut Session, limiter: &mut RateLimiter, message: Inbound) -> bool {
    match message {
        Inbound::Text(text) => on_text(session, limiter, &text).await,
        Inbound::Posted(posted) => on_posted(session, limiter, posted, true).await,
        Inbound::Binary(size) => {
            match within_limits(session, limiter, size).await {
                Limits::Within => {}
                Limits::Dropped => return true,
                Limits::Ended => return false,
            }
            switchboard_metrics::edge::edge().received_binary();
            tracing::info!("binary frame refused");
            session
                .error(ErrorCode::BadRequest, "only text frames are accepted", None)
                .await;
            true
        }
        Inbound::Heard => true,
        Inbound::Close => false,
        Inbound::TooLarge => {
            tracing::info!("frame too large");
            session
                .close(close_code::TOO_LARGE, "frame too large")
                .await;
            false
        }
        Inbound::InvalidUtf8 => {
            tracing::info!("text frame that is not UTF-8");
            session
                .close(close_code::INVALID_DATA, "text is not utf-8")
                .await;
            false
        }
        Inbound::Failed => false,
    }
}

/// Frames POSTed to this connection's event stream, from a poster whose
/// token must be of this connection's identity (`check`: not yet checked).
async fn on_posted(
    session: &mut Session,
    limiter: &mut RateLimiter,
    posted: Posted,
    check: bool,
) -> bool {
    if check {
        let same = session
            .state
            .tokens
            .verify_full(&posted.token)
            .is_ok_and(|poster| same_identity(&poster.identity, &session.identity));
        if !same {
            tracing::info!("frames posted with another identity's token refused");
            let _ = posted.done.send(PostOutcome::Refused(
                403,
                "forbidden",
                "this event stream is another identity's".into(),
            ));
            return true;
        }
    }
    // Counted as accepted: the frames handled before one that ended the
    // connection (too large, over the rate limit too long), not after.
    let mut count = posted.handled;
    let mut open = true;
    for text in &posted.frames {
        open = Box::pin(on_text(session, limiter, text)).await;
        if !open {
            break;
        }
        count = count.saturating_add(1);
    }
    let _ = posted.done.send(PostOutcome::Accepted(count));
    open
}

/// What the limits say of one data frame.
enum Limits {
    Within,
    /// Dropped, answered `rate_limited`.
    Dropped,
    /// The connection ends (its close is queued).
    Ended,
}

/// Checks a data frame's size and the rate limit.
async fn within_limits(session: &Session, limiter: &mut RateLimiter, size: usize) -> Limits {
    if size > session.state.config.edge.max_frame_bytes {
        tracing::info!(bytes = size, "frame too large");
        session
            .close(close_code::TOO_LARGE, "frame too large")
            .await;
        return Limits::Ended;
    }
    // Every data frame counts against the limit, whatever it holds.
    match limiter.check() {
        Verdict::Allow => Limits::Within,
        Verdict::Refuse => {
            session
                .error(ErrorCode::RateLimited, "too many frames, slow down", None)
                .await;
            Limits::Dropped
        }
        Verdict::Disconnect => {
            tracing::info!("rate limit exceeded repeatedly");
            session
                .close(close_code::TOO_MANY_REQUESTS, "too many requests")
                .await;
            Limits::Ended
        }
    }
}

/// Handles one text frame; false ends the connection.
async fn on_text(session: &mut Session, limiter: &mut RateLimiter, text: &str) -> bool {
    match within_limits(session, limiter, text.len()).await {
        Limits::Within => {}
        Limits::Dropped => return true,
        Limits::Ended => return false,
    }
    let frame = serde_json::from_str::<ClientFrame>(text);
    crate::metrics::received(&frame);
    match frame {
        Ok(frame) => handlers::dispatch(session, frame).await,
        Err(err) => {
            let reference = unparsed_reference(text);
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
