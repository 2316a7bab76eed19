//! A client of the event-stream transport (Server-Sent Events and POSTs):
//! the stream is read from one edge, frames may be POSTed to any edge.
//! It records every frame like [`crate::ws::Ws`] does.

use std::net::SocketAddr;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::{deadline, http};

/// What the stream delivered.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivered {
    /// A frame (a `data:` event).
    Frame(Value),
    /// The `close` event's code.
    Closed(u16),
    /// The stream ended without a `close` event (the edge died).
    Ended,
}

pub struct Sse {
    events: mpsc::Receiver<Delivered>,
    /// `<route>.<id>`, as the first event named it.
    pub connection: String,
    /// The edge POSTs go to (any edge will do).
    pub post_to: SocketAddr,
    pub token: String,
    /// Every frame received, in order.
    pub seen: Vec<Value>,
    matched: Vec<bool>,
}

impl Sse {
    /// Opens an event stream on `addr`, reading until its `connection`
    /// event; frames will be POSTed to `post_to`.
    pub async fn open(addr: SocketAddr, post_to: SocketAddr, token: &str) -> Self {
        let (tx, mut events) = mpsc::channel(1024);
        let (named_tx, named) = tokio::sync::oneshot::channel();
        let limit = deadline();
        let stream = tokio::time::timeout(limit, TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| panic!("connect {addr}: timed out"))
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        tokio::spawn(read_stream(stream, addr, tx, named_tx));
        let connection = tokio::time::timeout(limit, named)
            .await
            .unwrap_or_else(|_| panic!("no connection event from {addr} within {limit:?}"))
            .unwrap_or_else(|_| {
                let first = events.try_recv();
                panic!("event stream of {addr} ended before naming its connection: {first:?}")
            });
        Self {
            events,
            connection,
            post_to,
            token: token.to_owned(),
            seen: Vec::new(),
            matched: Vec::new(),
        }
    }

    /// Opens a stream on `addr`, POSTs `hello` to `post_to` and returns the
    /// client with its `welcome`.
    pub async fn hello(
        addr: SocketAddr,
        post_to: SocketAddr,
        token: &str,
        resume: Value,
    ) -> (Self, Value) {
        let mut sse = Self::open(addr, post_to, token).await;
        sse.send(json!({ "type": "hello", "token": token, "resume": resume }))
            .await;
        let welcome = sse.expect_type("welcome").await;
        (sse, welcome)
    }

    /// POSTs frames to this stream through `edge` with `token`; returns the
    /// HTTP answer.
    pub async fn post_via(
        &self,
        edge: SocketAddr,
        token: &str,
        frames: &[Value],
    ) -> http::Response {
        http::bearer(
            edge,
            "POST",
            &format!("/api/v1/sse/{}", self.connection),
            Some(token),
            Some(&Value::Array(frames.to_vec()).to_string()),
        )
        .await
    }

    /// POSTs one frame through [`Sse::post_to`], which must accept it.
    pub async fn send(&mut self, frame: Value) {
        let response = self
            .post_via(self.post_to, &self.token.clone(), &[frame])
            .await;
        assert_eq!(response.status, 200, "post refused: {}", response.body);
        assert_eq!(response.json()["accepted"], 1, "{}", response.body);
    }

    /// The next frame, close or end, failing the test after the deadline.
    pub async fn next(&mut self) -> Delivered {
        let limit = deadline();
        let delivered = tokio::time::timeout(limit, self.events.recv())
            .await
            .unwrap_or_else(|_| panic!("no event within {limit:?}; seen: {:#?}", self.seen))
            .unwrap_or(Delivered::Ended);
        if let Delivered::Frame(frame) = &delivered {
            self.seen.push(frame.clone());
            self.matched.push(false);
        }
        delivered
    }

    /// The first frame satisfying `matches` that no earlier `expect`
    /// returned (see [`crate::ws::Ws::expect`]).
    pub async fn expect(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = (0..self.seen.len()).find(|&i| !self.matched[i] && matches(&self.seen[i]))
        {
            self.matched[i] = true;
            return self.seen[i].clone();
        }
        loop {
            match self.next().await {
                Delivered::Frame(frame) if matches(&frame) => {
                    if let Some(last) = self.matched.last_mut() {
                        *last = true;
                    }
                    return frame;
                }
                Delivered::Frame(_) => continue,
                other => panic!(
                    "stream {other:?} while waiting for {what}; seen: {:#?}",
                    self.seen
                ),
            }
        }
    }

    pub async fn expect_type(&mut self, kind: &str) -> Value {
        self.expect(kind, |f| f["type"] == kind).await
    }

    /// Waits for the stream to close or end.
    pub async fn expect_end(&mut self) -> Delivered {
        loop {
            match self.next().await {
                Delivered::Frame(_) => continue,
                other => return other,
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

    /// Messages and events of a conversation seen so far, repeats kept.
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
}

/// Reads the HTTP response (chunked) and its events into `tx`.
async fn read_stream(
    mut stream: TcpStream,
    addr: SocketAddr,
    tx: mpsc::Sender<Delivered>,
    named: tokio::sync::oneshot::Sender<String>,
) {
    let request =
        format!("GET /api/v1/sse HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        let _ = tx.send(Delivered::Ended).await;
        return;
    }
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    // Status line and headers.
    let mut chunked = false;
    let mut first = true;
    loop {
        line.clear();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => {
                let _ = tx.send(Delivered::Ended).await;
                return;
            }
            Ok(_) => {}
        }
        if first {
            assert!(
                line.contains(" 200 "),
                "event stream refused: {}",
                line.trim()
            );
            first = false;
        }
        if line
            .to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
        {
            chunked = true;
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut named = Some(named);
    let mut pending = String::new();
    loop {
        let bytes = if chunked {
            line.clear();
            match reader.read_line(&mut line).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let Ok(size) = usize::from_str_radix(line.trim(), 16) else {
                break;
            };
            if size == 0 {
                break;
            }
            let mut chunk = vec![0; size + 2];
            if reader.read_exact(&mut chunk).await.is_err() {
                break;
            }
            chunk.truncate(size);
            chunk
        } else {
            let mut chunk = vec![0; 4096];
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    chunk.truncate(n);
                    chunk
                }
            }
        };
        pending.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(end) = pending.find("\n\n") {
            let event: String = pending.drain(..end + 2).collect();
            let mut name = "message".to_owned();
            let mut data = String::new();
            for field in event.lines() {
                if let Some(value) = field.strip_prefix("event:") {
                    name = value.trim().to_owned();
                } else if let Some(value) = field.strip_prefix("data:") {
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(value.strip_prefix(' ').unwrap_or(value));
                }
            }
            if data.is_empty() {
                continue; // a comment (keep-alive) or a retry hint
            }
            let value: Value = serde_json::from_str(&data)
                .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {data}"));
            match name.as_str() {
                "connection" => {
                    if let (Some(named), Some(id)) = (named.take(), value["connection"].as_str()) {
                        let _ = named.send(id.to_owned());
                    }
                }
                "close" => {
                    let code = value["code"].as_u64().unwrap_or(0) as u16;
                    let _ = tx.send(Delivered::Closed(code)).await;
                }
                _ => {
                    if tx.send(Delivered::Frame(value)).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
    let _ = tx.send(Delivered::Ended).await;
}
