//! How frames travel between a client and its session. The session
//! (`crate::session`) is written against two things only, whatever the
//! transport:
//!
//! - an [`Inbound`] stream: what the client sent (text frames, frames
//!   POSTed over HTTP, or signs that it is alive or gone);
//! - a [`Sink`]: where its writer (`crate::outbox`) puts frames, pings and
//!   the final close.
//!
//! - [`ws`]: a WebSocket (`GET /ws`): frames both ways on one socket.
//! - [`sse`]: Server-Sent Events for server → client and HTTP POSTs for
//!   client → server, the fallback when a WebSocket cannot connect. A POST
//!   may reach any edge: it is routed over NATS to the edge holding the
//!   event stream (`sse.<route>.<connection>`).

pub mod sse;
pub mod ws;

use std::pin::Pin;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::response::sse::Event;
use futures::stream::SplitSink;
use futures::{SinkExt, Stream};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

/// What a client sent, as the session sees it.
#[derive(Debug)]
pub enum Inbound {
    /// A text frame: one JSON client frame.
    Text(String),
    /// A binary frame of this many bytes (refused).
    Binary(usize),
    /// The client is alive (it answered a ping).
    Heard,
    /// The client closed the connection.
    Close,
    /// A frame larger than the transport reads whole.
    TooLarge,
    /// A text frame that is not UTF-8.
    InvalidUtf8,
    /// The connection failed.
    Failed,
    /// Frames POSTed over HTTP (the SSE transport): handled in order, then
    /// the POST is answered.
    Posted(Posted),
}

/// Frames of one POST to an event-stream connection.
#[derive(Debug)]
pub struct Posted {
    /// The poster's bearer token: it must be the connection's identity.
    pub token: String,
    /// JSON client frames, in order.
    pub frames: Vec<String>,
    /// Frames of this POST already handled (its `hello`).
    pub handled: u32,
    /// Told once every frame was handled (their answers are queued on the
    /// event stream by then).
    pub done: oneshot::Sender<PostOutcome>,
}

/// The answer to a POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostOutcome {
    /// Every frame was handled (refusals are `error` frames on the stream).
    Accepted(u32),
    /// The POST itself was refused: HTTP status, error code and message.
    Refused(u16, &'static str, String),
}

/// The inbound side of a connection.
pub type InboundStream = Pin<Box<dyn Stream<Item = Inbound> + Send>>;

/// The outbound side of a connection, written by its writer only.
pub enum Sink {
    WebSocket(SplitSink<WebSocket, Message>),
    EventStream(mpsc::Sender<Event>),
}

/// A write to the client failed: the connection is gone.
#[derive(Debug, thiserror::Error)]
#[error("client connection write failed: {0}")]
pub struct WriteError(String);

impl Sink {
    /// Buffers one text frame; [`Sink::flush`] sends what is buffered.
    ///
    /// # Errors
    /// [`WriteError`] when the client is gone.
    pub async fn feed_text(&mut self, json: &str) -> Result<(), WriteError> {
        match self {
            Sink::WebSocket(sink) => sink
                .feed(Message::Text(json.into()))
                .await
                .map_err(|e| WriteError(e.to_string())),
            Sink::EventStream(tx) => tx
                .send(Event::default().data(json))
                .await
                .map_err(|_| WriteError("event stream closed".into())),
        }
    }

    /// Sends what is buffered.
    ///
    /// # Errors
    /// [`WriteError`] when the client is gone.
    pub async fn flush(&mut self) -> Result<(), WriteError> {
        match self {
            Sink::WebSocket(sink) => sink.flush().await.map_err(|e| WriteError(e.to_string())),
            // Each event is its own chunk of the response body.
            Sink::EventStream(_) => Ok(()),
        }
    }

    /// A keep-alive: a WebSocket ping (the client's pong says it is alive)
    /// or an event-stream comment (keeps proxies from closing the stream).
    ///
    /// # Errors
    /// [`WriteError`] when the client is gone.
    pub async fn ping(&mut self) -> Result<(), WriteError> {
        match self {
            Sink::WebSocket(sink) => sink
                .feed(Message::Ping(Default::default()))
                .await
                .map_err(|e| WriteError(e.to_string())),
            Sink::EventStream(tx) => tx
                .send(Event::default().comment("ping"))
                .await
                .map_err(|_| WriteError("event stream closed".into())),
        }
    }

    /// The last thing the client gets: a close frame with its code, or on
    /// an event stream a `close` event `{"code", "reason"}`, after which the
    /// stream ends.
    ///
    /// # Errors
    /// [`WriteError`] when the client is gone.
    pub async fn close(&mut self, code: u16, reason: &str) -> Result<(), WriteError> {
        match self {
            Sink::WebSocket(sink) => {
                let frame = CloseFrame {
                    code,
                    reason: reason.into(),
                };
                let sent = sink
                    .send(Message::Close(Some(frame)))
                    .await
                    .map_err(|e| WriteError(e.to_string()));
                let _ = sink.close().await;
                sent
            }
            Sink::EventStream(tx) => {
                let event = Event::default()
                    .event("close")
                    .data(json!({ "code": code, "reason": reason }).to_string());
                tx.send(event)
                    .await
                    .map_err(|_| WriteError("event stream closed".into()))
            }
        }
    }

    /// Whether the client reads POSTed frames' answers on an event stream.
    pub fn is_event_stream(&self) -> bool {
        matches!(self, Sink::EventStream(_))
    }
}
