//! A minimal HTTP/1.1 client (one request per connection), enough for the
//! JSON API in tests without pulling an HTTP client crate into the build.

use std::net::SocketAddr;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Status and body of a response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", self.body))
    }
}

pub async fn request(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Response {
    request_with(addr, method, path, &[], body).await
}

/// A request with extra headers (`Authorization`, say).
pub async fn request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Response {
    let limit = crate::deadline();
    tokio::time::timeout(limit, exchange(addr, None, method, path, headers, body))
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no answer within {limit:?}"))
}

/// A request from a given loopback address (the server sees it as the
/// client's).
pub async fn request_from(
    addr: SocketAddr,
    source: std::net::IpAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Response {
    let limit = crate::deadline();
    tokio::time::timeout(limit, exchange(addr, Some(source), method, path, &[], body))
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no answer within {limit:?}"))
}

async fn exchange(
    addr: SocketAddr,
    source: Option<std::net::IpAddr>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Response {
    let mut stream = match source {
        None => TcpStream::connect(addr).await,
        Some(source) => {
            let socket = tokio::net::TcpSocket::new_v4()
                .and_then(|socket| socket.bind(SocketAddr::new(source, 0)).map(|()| socket))
                .unwrap_or_else(|e| panic!("bind {source}: {e}"));
            socket.connect(addr).await
        }
    }
    .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let body = body.unwrap_or("");
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .await
        .and(stream.write_all(body.as_bytes()).await)
        .unwrap_or_else(|e| panic!("write request: {e}"));
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .await
        .unwrap_or_else(|e| panic!("read response: {e}"));
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("malformed response: {text}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head}"));
    Response {
        status,
        body: body.to_owned(),
    }
}

pub async fn post(addr: SocketAddr, path: &str, body: &str) -> Response {
    request(addr, "POST", path, Some(body)).await
}

pub async fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path, None).await
}

/// A request carrying `Authorization: Bearer <token>` when a token is given.
pub async fn bearer(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Response {
    let authorization = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = authorization
        .as_deref()
        .map(|value| vec![("Authorization", value)])
        .unwrap_or_default();
    request_with(addr, method, path, &headers, body).await
}
