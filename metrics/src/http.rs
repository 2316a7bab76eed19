//! Serving the metrics: the `GET /metrics` handler (the edge mounts it on
//! its listener when `edge.metrics` is on) and the `metrics.listen` server
//! of any component, with `GET /metrics` and `GET /healthz`.
//!
//! Prometheus is not a browser: a request that carries `Origin` comes from
//! a web page's script and is refused (403), so no page, of any site, can
//! read the metrics through a visitor's browser. Who else can reach them is
//! the network's business: block `/metrics` at the load balancer
//! (deploy/haproxy.cfg does) or serve them on `metrics.listen` only.

use std::net::SocketAddr;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The metrics server could not start, or failed while serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeMetricsError {
    #[error("bind metrics.listen {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("serve metrics: {0}")]
    Serve(#[source] std::io::Error),
}

/// `GET /metrics`: the process's metrics in the Prometheus text format.
pub async fn scrape(headers: HeaderMap) -> Response {
    if headers.contains_key(header::ORIGIN) {
        tracing::info!("metrics request from a web page refused");
        return (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "metrics are not served to web pages\n",
        )
            .into_response();
    }
    (
        [
            (header::CONTENT_TYPE, crate::CONTENT_TYPE),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        crate::render(),
    )
        .into_response()
}

/// `/metrics` as a route of any router.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/metrics", get(scrape))
}

async fn healthz() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        "{\"status\":\"ok\"}",
    )
        .into_response()
}

/// The `metrics.listen` server: bound, not yet serving.
pub struct MetricsServer {
    listener: TcpListener,
}

impl MetricsServer {
    /// Binds `addr` (port 0 picks a free port).
    ///
    /// # Errors
    /// [`ServeMetricsError::Bind`].
    pub async fn bind(addr: SocketAddr) -> Result<Self, ServeMetricsError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeMetricsError::Bind { addr, source })?;
        Ok(Self { listener })
    }

    /// The address actually bound.
    ///
    /// # Errors
    /// When the socket has no local address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `/metrics` and `/healthz` until `shutdown`.
    ///
    /// # Errors
    /// [`ServeMetricsError::Serve`] when the listener fails.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ServeMetricsError> {
        let addr = self.listener.local_addr().ok();
        tracing::info!(?addr, "metrics listening");
        let app = routes::<()>().route("/healthz", get(healthz));
        axum::serve(self.listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .map_err(ServeMetricsError::Serve)
    }
}
