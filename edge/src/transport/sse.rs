//! The fallback transport, for browsers whose WebSocket cannot connect (a
//! proxy that refuses upgrades, say): Server-Sent Events carry the server's
//! frames, HTTP POSTs the client's. The session is the same as a
//! WebSocket's (`crate::session`), so every guarantee holds: `hello` with
//! `resume`, `client_id` dedupe, acks, ordering, gap repair.
//!
//! 1. `GET /api/v1/sse` opens the event stream. Its first event,
//!    `connection`, names the connection: `<route>.<id>`, where `route`
//!    names this edge process and `id` is unguessable.
//! 2. `POST /api/v1/sse/<route>.<id>` with `Authorization: Bearer <token>`
//!    and a JSON array of client frames: the first POST starts with
//!    `hello` (the token is never in a URL). **Any edge** takes the POST:
//!    it checks the token and asks the edge holding the stream over NATS
//!    (`sse.<route>.<id>`, request/reply). That edge checks that the token
//!    is the connection's identity, handles the frames in order, and
//!    answers once they are handled; their answers (`ack`, `error`, …)
//!    arrive on the stream. No sticky sessions are needed.
//! 3. Frames arrive as `data:` events; the end is a `close` event
//!    `{"code", "reason"}` with the WebSocket close code, after which the
//!    stream ends. Keep-alives are comments.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::RequestErrorKind;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use serde_json::{json, Value};
use switchboard_protocol::ids::StreamId;
use switchboard_protocol::payloads::{
    decode, encode, StreamPost, StreamPostRefusal, StreamPostReply,
};
use switchboard_protocol::subjects;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{Inbound, PostOutcome, Posted, Sink};
use crate::admission::Limited;
use crate::http::{error, too_many};
use crate::server::EdgeState;
use crate::session::{self, Connection};

/// Events buffered for a stream's response body (the writer's own queue
/// is in front of it).
const EVENT_BUFFER: usize = 16;
/// POSTs waiting for one connection's session.
const POSTS_IN_FLIGHT: usize = 16;
/// Frames one POST may carry.
const MAX_FRAMES_PER_POST: usize = 32;
/// Largest POST body (a frame is at most `edge.max_frame_bytes`).
const MAX_POST_BYTES: usize = 64 * 1024;
/// How long a POST waits for the holding edge to handle its frames.
const POST_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a browser waits before reconnecting a broken stream by itself
/// (the widget and console reconnect on their own, with `resume`).
const RETRY_MS: Duration = Duration::from_secs(2);
/// Wait before subscribing again after the subscription ended.
const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);

/// The event streams this edge process holds.
pub struct Streams {
    /// This process's route: the first part of its connections' ids.
    route: StreamId,
    connections: Mutex<HashMap<StreamId, mpsc::Sender<Inbound>>>,
    /// Cancelled when the edge begins to shut down: every stream gets its
    /// `close` (1012) event and ends, so the HTTP server's graceful
    /// shutdown is not held up by open responses.
    stopping: CancellationToken,
}

impl Streams {
    /// The streams of an edge whose sessions stop with `shutdown`.
    pub fn new(shutdown: &CancellationToken) -> Arc<Self> {
        Arc::new(Self {
            route: StreamId::generate(),
            connections: Mutex::default(),
            stopping: shutdown.child_token(),
        })
    }

    fn connections(&self) -> std::sync::MutexGuard<'_, HashMap<StreamId, mpsc::Sender<Inbound>>> {
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Ends every stream at once with its `close` (1012) event.
    pub fn stop_all(&self) {
        self.stopping.cancel();
    }

    /// Event streams open on this edge (for metrics and tests).
    pub fn open(&self) -> usize {
        self.connections().len()
    }
}

pub fn routes() -> Router<Arc<EdgeState>> {
    Router::new().route("/api/v1/sse", get(open)).route(
        "/api/v1/sse/{connection}",
        post(post_frames).layer(DefaultBodyLimit::max(MAX_POST_BYTES)),
    )
}

/// `GET /api/v1/sse`: a new event stream, its session waiting for `hello`.
async fn open(
    State(state): State<Arc<EdgeState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let address = state.admission.client_address(peer, &headers);
    let Ok(slot) = state.admission.open_socket(address) else {
        tracing::info!(%address, "too many connections from one address");
        return too_many(
            Limited {
                retry_after: Duration::from_secs(10),
            },
            "connections from your address",
        );
    };
    let streams = &state.streams;
    let id = StreamId::unguessable();
    let (events, body) = mpsc::channel::<Event>(EVENT_BUFFER);
    let (inbound, posts) = mpsc::channel::<Inbound>(POSTS_IN_FLIGHT);
    let named = Event::default()
        .event("connection")
        .retry(RETRY_MS)
        .data(json!({ "connection": format!("{}.{}", streams.route, id) }).to_string());
    if events.try_send(named).is_err() {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "could not open the event stream",
        );
    }
    streams.connections().insert(id.clone(), inbound);
    let connection = Connection {
        sink: Sink::EventStream(events),
        inbound: Box::pin(futures::stream::unfold(posts, |mut posts| async move {
            posts.recv().await.map(|item| (item, posts))
        })),
        drain_after_close: false,
        stop: streams.stopping.clone(),
    };
    let number = state
        .next_connection
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::debug!(connection = number, "event stream opened");
    let session = {
        let state = Arc::clone(&state);
        async move {
            session::serve(connection, Arc::clone(&state), slot, Some(number)).await;
            state.streams.connections().remove(&id);
        }
    };
    tokio::spawn(state.sessions.track_future(session));
    let body = futures::stream::unfold(body, |mut body| async move {
        body.recv()
            .await
            .map(|event| (Ok::<_, Infallible>(event), body))
    });
    let mut response = Sse::new(body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Proxies (nginx) must pass events on as they come.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// `POST /api/v1/sse/<route>.<id>`: client frames for an event stream
/// held by any edge.
async fn post_frames(
    State(state): State<Arc<EdgeState>>,
    Path(connection): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(token) = crate::api::caller::bearer(&headers) else {
        return crate::api::caller::unauthorized("a token is required (Authorization: Bearer …)");
    };
    if let Err(err) = state.tokens.verify_full(token) {
        tracing::info!(error = %err, "event stream post with a bad token");
        return crate::api::caller::unauthorized("invalid or expired token");
    }
    let Some((route, id)) = connection
        .split_once('.')
        .and_then(|(route, id)| Some((StreamId::new(route).ok()?, StreamId::new(id).ok()?)))
    else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such event stream; open a new one",
        );
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "too_large"
            } else {
                "bad_request"
            };
            return error(status, code, &rejection.body_text());
        }
    };
    let frames = match serde_json::from_slice::<Vec<Value>>(&body) {
        Ok(frames) if frames.is_empty() || frames.len() > MAX_FRAMES_PER_POST => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                &format!("post 1 to {MAX_FRAMES_PER_POST} frames"),
            );
        }
        Ok(frames) => frames,
        Err(err) => {
            tracing::info!(error = %err, "unreadable event stream post");
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the body must be a JSON array of frames",
            );
        }
    };
    let request = StreamPost {
        token: token.to_owned(),
        frames: frames.iter().map(Value::to_string).collect(),
    };
    let payload = match encode(&request) {
        Ok(payload) => payload,
        Err(err) => {
            tracing::error!(error = %err, "encode event stream post");
            return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "encode");
        }
    };
    let asked = state
        .backbone
        .client
        .send_request(
            subjects::stream_post(&route, &id),
            async_nats::Request::new()
                .payload(payload.into())
                .timeout(Some(POST_TIMEOUT)),
        )
        .await;
    let message = match asked {
        Ok(message) => message,
        Err(err) if err.kind() == RequestErrorKind::NoResponders => {
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such event stream; open a new one",
            );
        }
        Err(err) => {
            tracing::warn!(error = %err, "event stream post not answered");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the event stream's edge did not answer; retry",
            );
        }
    };
    match decode::<StreamPostReply>(&message.payload) {
        Ok(StreamPostReply {
            refused: Some(refusal),
            ..
        }) => {
            let status = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::BAD_REQUEST);
            error(status, &refusal.code, &refusal.message)
        }
        Ok(reply) => Json(json!({ "accepted": reply.accepted })).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "undecodable event stream post reply");
            error(
                StatusCode::BAD_GATEWAY,
                "unavailable",
                "the event stream's edge answered nonsense",
            )
        }
    }
}

/// Takes the POSTs routed to this edge's event streams, for as long as the
/// edge runs; `shutdown` (the edge's last step) ends every stream with 1012.
pub async fn serve_posts(state: Arc<EdgeState>, shutdown: CancellationToken) {
    let streams = Arc::clone(&state.streams);
    {
        let streams = Arc::clone(&streams);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            streams.stopping.cancel();
        });
    }
    let subject = subjects::stream_posts(&streams.route);
    loop {
        match state.backbone.client.subscribe(subject.clone()).await {
            Ok(mut requests) => loop {
                let message = tokio::select! {
                    () = shutdown.cancelled() => return,
                    message = requests.next() => message,
                };
                let Some(message) = message else {
                    tracing::warn!("event stream posts subscription ended; subscribing again");
                    break;
                };
                deliver(&state, message);
            },
            Err(err) => tracing::error!(error = %err, "subscribe to event stream posts"),
        }
        tokio::time::sleep(RESUBSCRIBE_DELAY).await;
    }
}

/// Hands one routed POST to its session (in arrival order) and answers it
/// once the session has handled its frames.
fn deliver(state: &Arc<EdgeState>, message: async_nats::Message) {
    let Some(reply_to) = message.reply.clone() else {
        return;
    };
    let client = state.backbone.client.clone();
    let answer = move |reply: StreamPostReply| {
        let client = client.clone();
        let reply_to = reply_to.clone();
        async move {
            match encode(&reply) {
                Ok(payload) => {
                    if let Err(err) = client.publish(reply_to, payload.into()).await {
                        tracing::debug!(error = %err, "event stream post reply not sent");
                    }
                }
                Err(err) => tracing::error!(error = %err, "encode event stream post reply"),
            }
        }
    };
    let refuse = |status: u16, code: &str, message: &str| StreamPostReply {
        accepted: 0,
        refused: Some(StreamPostRefusal {
            status,
            code: code.to_owned(),
            message: message.to_owned(),
        }),
    };
    let Some((_, id)) = subjects::parse_stream_post(&message.subject) else {
        return;
    };
    let post: StreamPost = match decode(&message.payload) {
        Ok(post) => post,
        Err(err) => {
            tracing::warn!(error = %err, "undecodable event stream post");
            tokio::spawn(answer(refuse(400, "bad_request", "undecodable post")));
            return;
        }
    };
    let sender = state.streams.connections().get(&id).cloned();
    let Some(sender) = sender else {
        tokio::spawn(answer(refuse(
            404,
            "not_found",
            "no such event stream; open a new one",
        )));
        return;
    };
    let (done, outcome) = oneshot::channel();
    let posted = Inbound::Posted(Posted {
        token: post.token,
        frames: post.frames,
        handled: 0,
        done,
    });
    // Queued here, in the order the POSTs arrived; answered when handled.
    if let Err(err) = sender.try_send(posted) {
        let reply = match err {
            mpsc::error::TrySendError::Full(_) => refuse(
                429,
                "rate_limited",
                "too many posts in flight on this event stream",
            ),
            mpsc::error::TrySendError::Closed(_) => {
                refuse(404, "not_found", "no such event stream; open a new one")
            }
        };
        tokio::spawn(answer(reply));
        return;
    }
    tokio::spawn(async move {
        let reply = match tokio::time::timeout(POST_TIMEOUT, outcome).await {
            Ok(Ok(PostOutcome::Accepted(accepted))) => StreamPostReply {
                accepted,
                refused: None,
            },
            Ok(Ok(PostOutcome::Refused(status, code, message))) => refuse(status, code, &message),
            // The session ended before handling it.
            Ok(Err(_)) => refuse(404, "not_found", "the event stream has ended"),
            Err(_) => refuse(503, "unavailable", "the session is busy; retry"),
        };
        answer(reply).await;
    });
}
