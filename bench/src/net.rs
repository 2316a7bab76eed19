//! Sockets, the WebSocket client, a keep-alive HTTP client and the frame
//! parser.
//!
//! Every client socket is bound to its own loopback source address before
//! it connects (`127.B.x.y`, with `B` the process's block, 100 by default),
//! so the 4-tuples of many connections to one edge port never run out of
//! ephemeral ports.

use std::borrow::Cow;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A client WebSocket.
pub type Socket = WebSocketStream<TcpStream>;

/// Source addresses per block: 250 × 250.
const SOURCES_PER_BLOCK: u32 = 250 * 250;
static SOURCE_BLOCK: AtomicU8 = AtomicU8::new(100);
static NEXT_SOURCE: AtomicU32 = AtomicU32::new(0);

/// Chooses the second octet of this process's source addresses
/// (`127.block.x.y`); give each load-generator process its own.
pub fn set_source_block(block: u8) {
    SOURCE_BLOCK.store(block, Ordering::Relaxed);
}

/// The next loopback source address, round the block.
pub fn next_source() -> Ipv4Addr {
    let n = NEXT_SOURCE.fetch_add(1, Ordering::Relaxed) % SOURCES_PER_BLOCK;
    let block = SOURCE_BLOCK.load(Ordering::Relaxed);
    Ipv4Addr::new(127, block, (n / 250) as u8 + 1, (n % 250) as u8 + 1)
}

/// A TCP connection from the next source address.
pub async fn tcp_connect(addr: SocketAddr) -> Result<TcpStream> {
    let source = next_source();
    let socket = TcpSocket::new_v4().context("create socket")?;
    socket
        .bind(SocketAddr::V4(SocketAddrV4::new(source, 0)))
        .with_context(|| format!("bind {source}"))?;
    let stream = socket
        .connect(addr)
        .await
        .with_context(|| format!("connect {addr} from {source}"))?;
    stream.set_nodelay(true).context("set TCP_NODELAY")?;
    Ok(stream)
}

/// Opens `/ws` on an edge, with small buffers (the generator holds many).
pub async fn ws_connect(edge: SocketAddr) -> Result<Socket> {
    let tcp = tcp_connect(edge).await?;
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (socket, _) =
        tokio_tungstenite::client_async_with_config(format!("ws://{edge}/ws"), tcp, Some(config))
            .await
            .with_context(|| format!("websocket handshake with {edge}"))?;
    Ok(socket)
}

/// Sends one JSON text frame.
pub async fn send_text<S>(sink: &mut S, text: String) -> Result<()>
where
    S: futures::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
{
    sink.send(Message::Text(text.into()))
        .await
        .context("websocket send")
}

/// The next text frame, skipping control frames; an error on close, end or
/// timeout.
pub async fn next_text(socket: &mut Socket, timeout: Duration) -> Result<String> {
    loop {
        let message = tokio::time::timeout(timeout, socket.next())
            .await
            .map_err(|_| anyhow!("no frame within {timeout:?}"))?;
        match message {
            Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_owned()),
            Some(Ok(Message::Close(frame))) => {
                bail!(
                    "closed by the edge ({})",
                    frame.map_or(1005, |f| u16::from(f.code))
                )
            }
            Some(Ok(_)) => continue,
            Some(Err(err)) => return Err(err).context("websocket read"),
            None => bail!("connection ended"),
        }
    }
}

/// Reads frames until one of type `kind` (optionally of one conversation),
/// failing on an `error` frame that answers `refers_to`.
pub async fn expect(
    socket: &mut Socket,
    kind: &str,
    timeout: Duration,
    mut on_other: impl FnMut(&Frame<'_>),
) -> Result<String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let text = next_text(socket, left).await?;
        let frame = Frame::parse(&text)?;
        if frame.kind == kind {
            return Ok(text);
        }
        if frame.kind == "error" {
            bail!("error frame while waiting for {kind}: {text}");
        }
        on_other(&frame);
    }
}

/// Who sent a record.
#[derive(Debug, Deserialize)]
pub struct Who<'a> {
    #[serde(borrow)]
    pub role: Cow<'a, str>,
}

/// The fields of server frames that the scenarios look at; the rest are
/// ignored.
#[derive(Debug, Deserialize)]
pub struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(default, borrow)]
    pub conversation_id: Option<Cow<'a, str>>,
    #[serde(default)]
    pub seq: Option<u64>,
    #[serde(default)]
    pub last_seq: Option<u64>,
    #[serde(default, borrow)]
    pub client_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub event: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub code: Option<Cow<'a, str>>,
    /// What an `error` frame answers.
    #[serde(default, borrow, rename = "ref")]
    pub reference: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub sender: Option<Who<'a>>,
    #[serde(default)]
    pub created: Option<bool>,
}

impl<'a> Frame<'a> {
    pub fn parse(text: &'a str) -> Result<Self> {
        serde_json::from_str(text).with_context(|| format!("unreadable frame {text}"))
    }

    pub fn conversation(&self) -> &str {
        self.conversation_id.as_deref().unwrap_or("")
    }

    pub fn sender_role(&self) -> &str {
        self.sender.as_ref().map_or("", |s| s.role.as_ref())
    }
}

/// The benchmark clock reading carried by a `client_id` or `text` written
/// by this tool: the digits after its one-letter prefix.
pub fn stamp(value: &str) -> Option<u64> {
    value.get(1..).and_then(|digits| digits.parse().ok())
}

/// A `send` frame.
/// What one read from an agent's socket gave.
pub enum Incoming {
    /// A text frame.
    Text(tokio_tungstenite::tungstenite::Utf8Bytes),
    /// Something else (ping, pong, binary): read on.
    Skip,
    /// The connection ended: the error to count.
    Ended(&'static str),
}

/// Classifies what `socket.next()` returned for an agent's socket.
pub fn incoming(
    message: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
) -> Incoming {
    match message {
        Some(Ok(Message::Text(text))) => Incoming::Text(text),
        Some(Ok(Message::Close(_))) | None => Incoming::Ended("agent connection closed"),
        Some(Ok(_)) => Incoming::Skip,
        Some(Err(_)) => Incoming::Ended("agent connection failed"),
    }
}

pub fn send_frame(conversation: &str, client_id: &str, text: &str) -> String {
    format!(
        r#"{{"type":"send","conversation_id":"{conversation}","client_id":"{client_id}","text":"{text}"}}"#
    )
}

/// Says hello; returns the socket after its `welcome` (other frames that
/// came first are passed to `on_other`).
pub async fn hello(
    edge: SocketAddr,
    token: &str,
    resume: Option<(&str, u64)>,
    timeout: Duration,
) -> Result<(Socket, String)> {
    let mut socket = ws_connect(edge).await?;
    let mut frame = json!({ "type": "hello", "token": token });
    if let Some((conversation, seq)) = resume {
        frame["resume"] = json!({ conversation: seq });
    }
    send_text(&mut socket, frame.to_string()).await?;
    let welcome = expect(&mut socket, "welcome", timeout, |_| {}).await?;
    Ok((socket, welcome))
}

/// One keep-alive HTTP/1.1 connection for the JSON API.
pub struct Http {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Http {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            stream: None,
            buf: Vec::with_capacity(4096),
        }
    }

    /// POSTs JSON; returns the status and the body as JSON. Reconnects once
    /// if the kept-alive connection was closed.
    pub async fn post(&mut self, path: &str, body: &Value) -> Result<(u16, Value)> {
        let body = body.to_string();
        match self.try_post(path, &body).await {
            Ok(answer) => Ok(answer),
            Err(_) => {
                self.stream = None;
                self.try_post(path, &body).await
            }
        }
    }

    async fn try_post(&mut self, path: &str, body: &str) -> Result<(u16, Value)> {
        if self.stream.is_none() {
            self.stream = Some(tcp_connect(self.addr).await?);
            self.buf.clear();
        }
        let addr = self.addr;
        let stream = self
            .stream
            .as_mut()
            .ok_or_else(|| anyhow!("no connection"))?;
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .await
            .with_context(|| format!("write POST {path}"))?;
        let (status, length, head) = loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                let status = head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse::<u16>().ok())
                    .ok_or_else(|| anyhow!("no status in {head:?}"))?;
                let length = head
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                    .ok_or_else(|| anyhow!("no content-length in {head:?}"))?;
                break (status, length, end + 4);
            }
            read_more(stream, &mut self.buf).await?;
        };
        while self.buf.len() < head + length {
            read_more(stream, &mut self.buf).await?;
        }
        let body: Value = serde_json::from_slice(&self.buf[head..head + length])
            .with_context(|| format!("POST {path} answered non-JSON"))?;
        self.buf.drain(..head + length);
        Ok((status, body))
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<()> {
    let mut chunk = [0u8; 4096];
    let n = stream.read(&mut chunk).await.context("read response")?;
    if n == 0 {
        bail!("connection closed by the edge");
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Signs up `count` visitors on `edge` (`POST /api/v1/visitors`) over
/// `workers` keep-alive connections; returns their tokens.
pub async fn sign_up(edge: SocketAddr, count: usize, workers: usize) -> Result<Vec<String>> {
    let next = std::sync::Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for _ in 0..workers.clamp(1, count.max(1)) {
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut http = Http::new(edge);
            let mut tokens = Vec::new();
            while (next.fetch_add(1, Ordering::Relaxed) as usize) < count {
                let (status, body) = http
                    .post("/api/v1/visitors", &json!({ "name": "Bench visitor" }))
                    .await?;
                if status != 201 {
                    bail!("visitor sign-up answered {status}: {body}");
                }
                let token = body["token"]
                    .as_str()
                    .ok_or_else(|| anyhow!("sign-up answer without token: {body}"))?;
                tokens.push(token.to_owned());
            }
            Ok(tokens)
        }));
    }
    let mut tokens = Vec::with_capacity(count);
    for task in tasks {
        tokens.extend(task.await.context("sign-up task")??);
    }
    Ok(tokens)
}

/// Logs an agent in (`POST /api/v1/agents/login`); returns the token.
pub async fn log_in(http: &mut Http, login: &str, password: &str) -> Result<String> {
    let (status, body) = http
        .post(
            "/api/v1/agents/login",
            &json!({ "login": login, "password": password }),
        )
        .await?;
    if status != 200 {
        bail!("login of {login} answered {status}: {body}");
    }
    body["token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("login answer without token: {body}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_fields_it_needs() {
        let text = r#"{"type":"message","conversation_id":"c_1","seq":2,"id":"m_1","client_id":"c42","sender":{"role":"visitor","id":"v_1","name":"A"},"text":"t42","sent_at":"x"}"#;
        let frame = Frame::parse(text).unwrap();
        assert_eq!(frame.kind, "message");
        assert_eq!(frame.conversation(), "c_1");
        assert_eq!(frame.seq, Some(2));
        assert_eq!(frame.sender_role(), "visitor");
        assert_eq!(stamp(frame.text.as_deref().unwrap()), Some(42));
    }

    #[test]
    fn sources_stay_in_loopback() {
        for _ in 0..70_000 {
            let ip = next_source();
            assert_eq!(ip.octets()[0], 127);
            assert_ne!(ip.octets()[3], 0);
        }
    }
}
