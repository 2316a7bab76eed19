//! `ws-relay-server`: the `ws-relay` baseline's server, what the WebSocket
//! side alone allows. A minimal axum WebSocket relay with no NATS and no
//! storage: it pairs a visitor's and an agent's sockets by conversation id
//! and forwards in memory.
//!
//! It does the per-message work a chat server cannot skip, in the shape of
//! Switchboard's frames: it parses each `send` frame (JSON), numbers the
//! message in its conversation, and writes an `ack` to the sender and one
//! `message` frame (encoded once) to both participants, as an edge does.
//! Each socket has one writer task that writes what is queued and flushes
//! once per burst.
//!
//! Its own small handshake (not Switchboard's): the first frame is
//! `{"type":"hello","role":"visitor"|"agent","conversations":["…",…]}`,
//! answered with `{"type":"welcome"}` once the socket is registered.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Frames queued for one socket before the relay gives up on it.
const QUEUE: usize = 1024;

type Outbox = mpsc::Sender<Utf8Bytes>;

/// Both sides of one conversation and its message count.
#[derive(Default)]
struct Room {
    seq: u64,
    visitor: Option<Outbox>,
    agent: Option<Outbox>,
}

#[derive(Default)]
struct Relay {
    rooms: Mutex<HashMap<String, Room>>,
    connections: AtomicU64,
}

#[derive(Deserialize)]
struct Hello {
    role: String,
    #[serde(default)]
    conversations: Vec<String>,
}

#[derive(Deserialize)]
struct Send<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    conversation_id: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    client_id: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    text: std::borrow::Cow<'a, str>,
}

#[derive(Serialize)]
struct Sender<'a> {
    role: &'a str,
    id: &'a str,
    name: &'a str,
}

#[derive(Serialize)]
struct MessageFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    conversation_id: &'a str,
    seq: u64,
    id: &'a str,
    client_id: &'a str,
    sender: Sender<'a>,
    text: &'a str,
    sent_at: &'a str,
}

#[derive(Serialize)]
struct AckFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    client_id: &'a str,
    conversation_id: &'a str,
    id: &'a str,
    seq: u64,
    sent_at: &'a str,
}

/// Serves the relay on `listener` (`/ws`) until the process ends. Its
/// sockets send at once (`TCP_NODELAY`), as a chat server's should: with
/// Nagle's algorithm, a frame written while an earlier one is unacknowledged
/// waits for the client's delayed ACK (40 ms on Linux).
///
/// # Errors
/// When the listener fails.
pub async fn serve(listener: TcpListener) -> Result<()> {
    let app = Router::new()
        .route("/ws", get(upgrade))
        .with_state(Arc::new(Relay::default()));
    let listener = listener.tap_io(|tcp| {
        // A socket that refuses the option is served with Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await.context("serve the relay")
}

async fn upgrade(ws: WebSocketUpgrade, State(relay): State<Arc<Relay>>) -> Response {
    ws.on_upgrade(move |socket| connection(socket, relay))
}

/// One socket: its hello, then its frames until it closes.
async fn connection(socket: WebSocket, relay: Arc<Relay>) {
    let number = relay.connections.fetch_add(1, Ordering::Relaxed);
    let (mut sink, mut stream) = socket.split();
    let hello = loop {
        match stream.next().await {
            Some(Ok(Message::Text(text))) => match serde_json::from_str::<Hello>(text.as_str()) {
                Ok(hello) => break hello,
                Err(_) => return,
            },
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return,
        }
    };
    let role = if hello.role == "agent" {
        "agent"
    } else {
        "visitor"
    };
    let id = format!("{}_{number}", &role[..1]);
    let (tx, mut rx) = mpsc::channel::<Utf8Bytes>(QUEUE);
    {
        let mut rooms = relay.rooms.lock().unwrap_or_else(|e| e.into_inner());
        for conversation in &hello.conversations {
            let room = rooms.entry(conversation.clone()).or_default();
            match role {
                "agent" => room.agent = Some(tx.clone()),
                _ => room.visitor = Some(tx.clone()),
            }
        }
    }
    if sink
        .send(Message::Text(r#"{"type":"welcome"}"#.into()))
        .await
        .is_err()
    {
        unregister(&relay, &hello.conversations, &tx);
        return;
    }
    // The writer: what is queued, then one flush per burst.
    let writer = tokio::spawn(async move {
        while let Some(text) = rx.recv().await {
            if sink.feed(Message::Text(text)).await.is_err() {
                return;
            }
            while let Ok(text) = rx.try_recv() {
                if sink.feed(Message::Text(text)).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    while let Some(Ok(message)) = stream.next().await {
        let Message::Text(text) = message else {
            if matches!(message, Message::Close(_)) {
                break;
            }
            continue;
        };
        let Ok(send) = serde_json::from_str::<Send<'_>>(text.as_str()) else {
            continue;
        };
        if send.kind != "send" {
            continue;
        }
        forward(&relay, &send, role, &id, &tx);
    }
    unregister(&relay, &hello.conversations, &tx);
    drop(tx);
    writer.abort();
}

/// Numbers one message and queues its `ack` (to the sender) and `message`
/// (to both sides). A full queue drops the frame: the benchmark counts it
/// as lost.
fn forward(relay: &Relay, send: &Send<'_>, role: &str, id: &str, own: &Outbox) {
    let (seq, peer) = {
        let mut rooms = relay.rooms.lock().unwrap_or_else(|e| e.into_inner());
        let Some(room) = rooms.get_mut(send.conversation_id.as_ref()) else {
            return;
        };
        room.seq += 1;
        let peer = if role == "agent" {
            room.visitor.clone()
        } else {
            room.agent.clone()
        };
        (room.seq, peer)
    };
    let sent_at = switchboard_protocol::time::rfc3339(switchboard_protocol::time::now_ms());
    let message_id = format!("m_{}_{seq}", send.conversation_id);
    let message = MessageFrame {
        kind: "message",
        conversation_id: &send.conversation_id,
        seq,
        id: &message_id,
        client_id: &send.client_id,
        sender: Sender {
            role,
            id,
            name: if role == "agent" {
                "Bench agent"
            } else {
                "Bench visitor"
            },
        },
        text: &send.text,
        sent_at: &sent_at,
    };
    let ack = AckFrame {
        kind: "ack",
        client_id: &send.client_id,
        conversation_id: &send.conversation_id,
        id: &message_id,
        seq,
        sent_at: &sent_at,
    };
    let (Ok(message), Ok(ack)) = (serde_json::to_string(&message), serde_json::to_string(&ack))
    else {
        return;
    };
    let message = Utf8Bytes::from(message);
    let _ = own.try_send(Utf8Bytes::from(ack));
    let _ = own.try_send(message.clone());
    if let Some(peer) = peer {
        let _ = peer.try_send(message);
    }
}

fn unregister(relay: &Relay, conversations: &[String], tx: &Outbox) {
    let mut rooms = relay.rooms.lock().unwrap_or_else(|e| e.into_inner());
    for conversation in conversations {
        let Some(room) = rooms.get_mut(conversation) else {
            continue;
        };
        for side in [&mut room.visitor, &mut room.agent] {
            if side.as_ref().is_some_and(|s| s.same_channel(tx)) {
                *side = None;
            }
        }
        if room.visitor.is_none() && room.agent.is_none() {
            rooms.remove(conversation);
        }
    }
}
