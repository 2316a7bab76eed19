//! HAProxy in front of two edges, run with the shipped `deploy/haproxy.cfg`
//! as it is: the file reads its addresses from the environment, so the
//! test gives it loopback ports. Debian's `haproxy` (installed by
//! `scripts/setup`) is found on PATH or in `/usr/sbin`; a missing
//! one fails the test loudly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::{eventually, free_port};

/// The shipped configuration.
pub fn shipped_config() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/haproxy.cfg")
}

/// The `haproxy` binary: `$SWITCHBOARD_TEST_HAPROXY`, PATH, `/usr/sbin`.
pub fn haproxy_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SWITCHBOARD_TEST_HAPROXY") {
        return path.into();
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("haproxy"))
            .find(|p| p.is_file())
    });
    let binary = on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/haproxy"));
    assert!(
        binary.is_file(),
        "haproxy not found on PATH or in /usr/sbin; run scripts/setup (or set SWITCHBOARD_TEST_HAPROXY)"
    );
    binary
}

/// A running HAProxy; killed on drop.
pub struct Haproxy {
    _child: Child,
    /// Where browsers connect.
    pub addr: SocketAddr,
    /// HAProxy's own `/metrics` and `/stats`.
    pub stats: SocketAddr,
}

impl Haproxy {
    /// Starts HAProxy in front of `edges` and waits until it sends requests
    /// through to them (both pass their health check).
    pub async fn start(edges: [SocketAddr; 2]) -> Self {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let stats = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let child = Command::new(haproxy_binary())
            .arg("-db")
            .arg("-f")
            .arg(shipped_config())
            .env("SB_LISTEN", addr.to_string())
            .env("SB_STATS_LISTEN", stats.to_string())
            .env("SB_EDGE_1", edges[0].to_string())
            .env("SB_EDGE_2", edges[1].to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start haproxy: {e}"));
        let haproxy = Self {
            _child: child,
            addr,
            stats,
        };
        eventually("haproxy sends requests to both edges", || async {
            (haproxy.servers_up().await == Some(2)).then_some(())
        })
        .await;
        haproxy
    }

    /// HAProxy's metrics (Prometheus text), `None` while it does not answer.
    /// Asked in HTTP/1.0, so that the answer is not chunked.
    pub async fn metrics(&self) -> Option<String> {
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect(self.stats).await.ok()?;
            stream
                .write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
                .await
                .ok()?;
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).await.ok()?;
            let text = String::from_utf8(raw).ok()?;
            let (head, body) = text.split_once("\r\n\r\n")?;
            head.starts_with("HTTP/1.0 200")
                .then(|| body.to_owned())
                .or_else(|| head.starts_with("HTTP/1.1 200").then(|| body.to_owned()))
        };
        tokio::time::timeout(crate::deadline(), exchange)
            .await
            .ok()
            .flatten()
    }

    /// How many edges HAProxy sends new connections to.
    pub async fn servers_up(&self) -> Option<u64> {
        let metrics = self.metrics().await?;
        metrics.lines().find_map(|line| {
            line.strip_prefix("haproxy_backend_active_servers{proxy=\"edges\"} ")
                .and_then(|value| value.trim().parse().ok())
        })
    }
}
