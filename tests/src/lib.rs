//! Support for Switchboard's integration tests: real servers and real
//! processes on free loopback ports, and clients that speak the public
//! contract over real sockets.
//!
//! - [`services`]: `nats-server` and a MongoDB-wire server, one per test,
//!   with temporary data directories; killed and removed on drop.
//! - [`system`]: a test deployment — the services plus component processes
//!   (`switchboard-node edge|router|archiver`), agents, settings.
//! - [`ws`]: a WebSocket client of the browser contract.
//! - [`http`]: a minimal HTTP/1.1 client for the JSON API.

pub mod http;
pub mod services;
pub mod sim;
pub mod system;
pub mod ws;

use std::future::Future;
use std::time::Duration;

/// How long any awaited condition may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Awaits `check` returning `Some`, re-checking every 50 ms, failing the
/// test with `what` after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A free loopback TCP port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// Logs of the test process (RUST_LOG), once.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}
