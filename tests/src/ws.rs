//! A WebSocket client speaking the browser contract, recording every frame
//! it receives so tests can assert on the whole conversation.

use std::net::SocketAddr;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::deadline;

/// What arrived next.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Frame(Value),
    /// Closed by the server with this code (1006 when without a close frame).
    Closed(u16),
}

pub struct Ws {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Every JSON frame received, in order.
    pub seen: Vec<Value>,
    /// Which of `seen` an `expect` has already returned.
    matched: Vec<bool>,
}

impl Ws {
    pub async fn connect(addr: SocketAddr) -> Self {
        let (stream, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
            .await
            .unwrap_or_else(|e| panic!("websocket connect {addr}: {e}"));
        Self {
            stream,
            seen: Vec::new(),
            matched: Vec::new(),
        }
    }

    /// Connects from a given loopback address (the edge sees it as the
    /// client's), or returns the HTTP status the upgrade was refused with.
    pub async fn connect_from(addr: SocketAddr, source: std::net::IpAddr) -> Result<Self, u16> {
        let socket = tokio::net::TcpSocket::new_v4().unwrap_or_else(|e| panic!("socket: {e}"));
        socket
            .bind(SocketAddr::new(source, 0))
            .unwrap_or_else(|e| panic!("bind {source}: {e}"));
        let tcp = socket
            .connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        match tokio_tungstenite::client_async(format!("ws://{addr}/ws"), MaybeTlsStream::Plain(tcp))
            .await
        {
            Ok((stream, _)) => Ok(Self {
                stream,
                seen: Vec::new(),
                matched: Vec::new(),
            }),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                Err(response.status().as_u16())
            }
            Err(e) => panic!("websocket handshake {addr}: {e}"),
        }
    }

    /// Connects with a tiny socket receive buffer, so that a client that
    /// stops reading backs the server up quickly.
    pub async fn connect_small_buffer(addr: SocketAddr) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().unwrap_or_else(|e| panic!("socket: {e}"));
        socket
            .set_recv_buffer_size(4096)
            .unwrap_or_else(|e| panic!("set receive buffer: {e}"));
        let tcp = socket
            .connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        let (stream, _) =
            tokio_tungstenite::client_async(format!("ws://{addr}/ws"), MaybeTlsStream::Plain(tcp))
                .await
                .unwrap_or_else(|e| panic!("websocket handshake {addr}: {e}"));
        Self {
            stream,
            seen: Vec::new(),
            matched: Vec::new(),
        }
    }

    /// Connects, says hello and returns the client with its `welcome`.
    pub async fn hello(addr: SocketAddr, token: &str, resume: Value) -> (Self, Value) {
        let mut ws = Self::connect(addr).await;
        ws.send(json!({ "type": "hello", "token": token, "resume": resume }))
            .await;
        let welcome = ws.expect_type("welcome").await;
        (ws, welcome)
    }

    pub async fn send(&mut self, frame: Value) {
        self.send_raw(frame.to_string()).await;
    }

    pub async fn send_raw(&mut self, text: String) {
        let limit = deadline();
        tokio::time::timeout(limit, self.stream.send(Message::Text(text.into())))
            .await
            .unwrap_or_else(|_| panic!("websocket send: not taken within {limit:?}"))
            .unwrap_or_else(|e| panic!("websocket send: {e}"));
    }

    /// A ping and an unasked pong, as some client libraries send on open.
    pub async fn send_ping_and_pong(&mut self) {
        for message in [
            Message::Ping(b"hi".to_vec().into()),
            Message::Pong(Vec::new().into()),
        ] {
            self.stream
                .send(message)
                .await
                .unwrap_or_else(|e| panic!("websocket send: {e}"));
        }
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.stream
            .send(Message::Binary(bytes.into()))
            .await
            .unwrap_or_else(|e| panic!("websocket send: {e}"));
    }

    /// The next frame or close, failing the test after the deadline.
    pub async fn next(&mut self) -> Incoming {
        // One deadline for the frame, however many pings come meanwhile.
        let limit = deadline();
        let until = tokio::time::Instant::now() + limit;
        loop {
            let message = tokio::time::timeout_at(until, self.stream.next())
                .await
                .unwrap_or_else(|_| panic!("no frame within {limit:?}; seen: {:#?}", self.seen));
            match message {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(text.as_str())
                        .unwrap_or_else(|e| panic!("server sent non-JSON ({e}): {text}"));
                    self.seen.push(value.clone());
                    self.matched.push(false);
                    return Incoming::Frame(value);
                }
                Some(Ok(Message::Close(frame))) => {
                    return Incoming::Closed(frame.map_or(1005, |f| u16::from(f.code)));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Incoming::Closed(u16::from(CloseCode::Abnormal)),
            }
        }
    }

    /// The first frame satisfying `matches` that no earlier `expect`
    /// returned: one already received (frames arrive in any order relative
    /// to what a test waits for), or the next one to arrive.
    pub async fn expect(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = (0..self.seen.len()).find(|&i| !self.matched[i] && matches(&self.seen[i]))
        {
            self.matched[i] = true;
            return self.seen[i].clone();
        }
        loop {
            match self.next().await {
                Incoming::Frame(frame) if matches(&frame) => {
                    if let Some(last) = self.matched.last_mut() {
                        *last = true;
                    }
                    return frame;
                }
                Incoming::Frame(_) => continue,
                Incoming::Closed(code) => {
                    panic!(
                        "closed ({code}) while waiting for {what}; seen: {:#?}",
                        self.seen
                    )
                }
            }
        }
    }

    pub async fn expect_type(&mut self, kind: &str) -> Value {
        self.expect(kind, |f| f["type"] == kind).await
    }

    /// The next `error` frame, which must carry `code`.
    pub async fn expect_error(&mut self, code: &str) -> Value {
        let frame = self.expect_type("error").await;
        assert_eq!(frame["code"], code, "unexpected error frame {frame}");
        frame
    }

    /// Waits for the server to close, returning the code.
    pub async fn expect_close(&mut self) -> u16 {
        loop {
            if let Incoming::Closed(code) = self.next().await {
                return code;
            }
        }
    }

    /// The `event` frame of a conversation with this `event` name.
    pub async fn expect_event(&mut self, conversation: &str, event: &str) -> Value {
        self.expect(&format!("event {event} in {conversation}"), |f| {
            f["type"] == "event" && f["conversation_id"] == conversation && f["event"] == event
        })
        .await
    }

    /// Sends a message and returns its `ack`.
    pub async fn send_message(&mut self, conversation: &str, client_id: &str, text: &str) -> Value {
        self.send(json!({
            "type": "send",
            "conversation_id": conversation,
            "client_id": client_id,
            "text": text,
        }))
        .await;
        self.expect(&format!("ack of {client_id}"), |f| {
            f["type"] == "ack" && f["client_id"] == client_id
        })
        .await
    }

    /// Every frame received so far, in order.
    pub fn seen(&self) -> &[Value] {
        &self.seen
    }

    /// Messages and events of a conversation seen so far, by `seq`, with
    /// repeats kept (so tests can check there are none).
    pub fn records(&self, conversation: &str) -> Vec<Value> {
        self.seen
            .iter()
            .filter(|f| {
                (f["type"] == "message" || f["type"] == "event")
                    && f["conversation_id"] == conversation
            })
            .cloned()
            .collect()
    }

    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }
}
