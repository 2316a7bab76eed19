//! The WebSocket transport (`GET /ws`): text frames both ways on one
//! socket, pings answered by the browser itself.

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket};
use futures::StreamExt;

use super::{Inbound, Sink};
use crate::admission::SocketGuard;
use crate::server::EdgeState;
use crate::session::{self, Connection};

/// Serves one upgraded WebSocket to the end.
pub async fn serve(socket: WebSocket, state: Arc<EdgeState>, slot: SocketGuard) {
    let (sink, stream) = socket.split();
    let connection = Connection {
        sink: Sink::WebSocket(sink),
        inbound: Box::pin(stream.map(classify)),
        drain_after_close: true,
        stop: state.shutdown.clone(),
    };
    session::serve(connection, state, slot, None).await;
}

/// What one read from the socket means to the session.
fn classify(read: Result<Message, axum::Error>) -> Inbound {
    match read {
        Ok(Message::Text(text)) => Inbound::Text(text.as_str().to_owned()),
        Ok(Message::Binary(bytes)) => Inbound::Binary(bytes.len()),
        Ok(Message::Ping(_) | Message::Pong(_)) => Inbound::Heard,
        Ok(Message::Close(_)) => Inbound::Close,
        Err(err) if is_too_large(&err) => Inbound::TooLarge,
        Err(err) if is_invalid_utf8(&err) => Inbound::InvalidUtf8,
        Err(err) => {
            tracing::debug!(error = %err, "websocket read failed");
            Inbound::Failed
        }
    }
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
