//! The edge's entry point: bind, serve HTTP and WebSocket, shut down
//! gracefully (every WebSocket gets close 1012 so clients move at once).

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::Router;
use switchboard_bus::Backbone;
use switchboard_config::{AuthSettings, EdgeRole, EdgeSettings};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::trace::TraceLayer;

use crate::admission::Admission;
use crate::auth::Tokens;
use crate::hub::Hub;
use crate::presence::Presences;
use crate::teams::{Accounts, Teams};

/// A second audit of the live feeds follows a disruption after this long.
const AUDIT_AGAIN_AFTER: Duration = Duration::from_secs(2);

/// How often the admission limits forget addresses not seen lately.
const ADMISSION_PRUNE_EVERY: Duration = Duration::from_secs(60);

/// How long shutdown waits for connections to finish closing.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What an edge needs to know.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    pub edge: EdgeSettings,
    pub auth: AuthSettings,
    /// TTL of presence entries (heartbeats go every third of it).
    pub presence_ttl: Duration,
    /// Teams with rules in the configuration (`router.teams`); the teams
    /// of agent accounts are known too.
    pub teams: Vec<String>,
}

/// The edge could not start or failed while serving.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("serve http: {0}")]
    Serve(#[source] std::io::Error),
}

/// Shared by every request and connection of one edge.
pub struct EdgeState {
    pub config: EdgeConfig,
    pub edge_id: String,
    pub backbone: Backbone,
    pub hub: Arc<Hub>,
    pub tokens: Tokens,
    pub presences: Presences,
    pub admission: Arc<Admission>,
    pub teams: Arc<Teams>,
    pub next_connection: AtomicU64,
    pub sessions: TaskTracker,
    /// Stopping was asked for: `/readyz` answers 503 (`edge.drain_delay`).
    pub draining: CancellationToken,
    /// The connections close now, each at its own moment within
    /// `edge.drain_grace`.
    pub closing: CancellationToken,
    /// The last step: whatever is still open is closed at once.
    pub shutdown: CancellationToken,
    /// The event streams (SSE) this edge holds.
    pub streams: Arc<crate::transport::sse::Streams>,
    /// Agents, teams and the missed list, from the buckets.
    pub directory: Arc<crate::directory::Directory>,
}

/// A bound, not yet serving edge.
pub struct Edge {
    listener: TcpListener,
    state: Arc<EdgeState>,
}

impl Edge {
    /// Binds the listen address (port 0 picks a free port).
    ///
    /// # Errors
    /// [`EdgeError::Bind`].
    pub async fn bind(config: EdgeConfig, backbone: Backbone) -> Result<Self, EdgeError> {
        let addr = config.edge.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| EdgeError::Bind { addr, source })?;
        crate::metrics::init();
        let edge_id = if config.edge.edge_id.is_empty() {
            format!("edge-{}", ulid::Ulid::new().to_string().to_lowercase())
        } else {
            config.edge.edge_id.clone()
        };
        let shutdown = CancellationToken::new();
        let state = Arc::new(EdgeState {
            streams: crate::transport::sse::Streams::new(&shutdown),
            directory: crate::directory::Directory::new(
                config.presence_ttl,
                config.teams.iter().cloned(),
            ),
            tokens: Tokens::from_settings(&config.auth),
            hub: Hub::new(
                backbone.client.clone(),
                backbone.log.clone(),
                backbone.conversations.clone(),
                backbone.refusals.clone(),
            ),
            presences: Presences::new(backbone.presence.clone(), edge_id.clone()),
            admission: Arc::new(Admission::new(&config.edge)),
            teams: Teams::new(config.teams.iter().cloned()),
            edge_id,
            backbone,
            config,
            next_connection: AtomicU64::new(1),
            sessions: TaskTracker::new(),
            draining: CancellationToken::new(),
            closing: CancellationToken::new(),
            shutdown,
        });
        Ok(Self { listener, state })
    }

    /// The address actually bound.
    ///
    /// # Errors
    /// When the socket has no local address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn edge_id(&self) -> &str {
        &self.state.edge_id
    }

    /// Serves until `shutdown`, then closes every WebSocket with 1012 and
    /// waits (up to a grace period) for them to finish.
    ///
    /// # Errors
    /// [`EdgeError::Serve`] when the listener fails.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), EdgeError> {
        let state = self.state;
        let addr = self.listener.local_addr().ok();
        tracing::info!(edge_id = %state.edge_id, ?addr, "edge listening");
        let heartbeat = {
            let state = Arc::clone(&state);
            let every = state.config.presence_ttl / 3;
            tokio::spawn(async move {
                state
                    .presences
                    .heartbeat(every, state.shutdown.clone())
                    .await;
            })
        };
        let audit = {
            let state = Arc::clone(&state);
            let mut disruptions = state.backbone.disruptions.clone();
            tokio::spawn(async move {
                while disruptions.changed().await.is_ok() {
                    // Once at once, and once more when resubscriptions have
                    // surely reached the server.
                    state.hub.audit().await;
                    tokio::time::sleep(AUDIT_AGAIN_AFTER).await;
                    state.hub.audit().await;
                }
            })
        };
        let notices = tokio::spawn(Arc::clone(&state.hub).relay_notices());
        let directory = tokio::spawn(
            Arc::clone(&state.directory).watch(state.backbone.clone(), Arc::clone(&state.hub)),
        );
        let posts = tokio::spawn(crate::transport::sse::serve_posts(
            Arc::clone(&state),
            state.shutdown.clone(),
        ));
        let agent_teams = tokio::spawn(
            Arc::clone(&state.teams).watch(Accounts::Agents, state.backbone.agents.clone()),
        );
        let bot_teams = tokio::spawn(
            Arc::clone(&state.teams).watch(Accounts::Bots, state.backbone.bots.clone()),
        );
        let prune = {
            let admission = Arc::clone(&state.admission);
            tokio::spawn(async move {
                let mut every = tokio::time::interval(ADMISSION_PRUNE_EVERY);
                loop {
                    every.tick().await;
                    admission.prune();
                }
            })
        };
        let mut app = Router::new()
            .merge(crate::http::routes())
            .merge(crate::api::routes())
            .merge(crate::transport::sse::routes());
        if state.config.edge.metrics {
            app = app.merge(switchboard_metrics::http::routes());
        }
        if state.config.edge.serve_web {
            // Each kind of edge serves its own pages only: a visitor-only
            // edge has no console.
            if state.config.edge.roles.contains(&EdgeRole::Visitor) {
                app = app.merge(crate::web::visitor_routes());
            }
            if state.config.edge.roles.contains(&EdgeRole::Agent) {
                app = app.merge(crate::web::agent_routes());
            }
            app = app.merge(crate::web::shared_routes());
        }
        // Unknown paths and methods answer in the API's error shape too.
        let app = app
            .fallback(|| async {
                crate::http::error(StatusCode::NOT_FOUND, "not_found", "no such path")
            })
            .method_not_allowed_fallback(|| async {
                crate::http::error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    "this path does not take that method",
                )
            })
            .layer(axum::middleware::from_fn_with_state(
                Arc::clone(&state),
                crate::boundary::guard,
            ))
            .layer(DefaultBodyLimit::max(16 * 1024))
            .layer(TraceLayer::new_for_http())
            .with_state(Arc::clone(&state));
        // Draining: first `/readyz` says 503 while everything is served
        // (the load balancer stops sending new clients), then the listener
        // stops and the connections close over the grace period.
        let drain = {
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                shutdown.cancelled().await;
                let edge = &state.config.edge;
                tracing::info!(delay = ?edge.drain_delay.get(), grace = ?edge.drain_grace.get(), "draining");
                state.draining.cancel();
                tokio::time::sleep(edge.drain_delay.get()).await;
                state.closing.cancel();
                // Event streams are responses the server waits for: those
                // still open after the grace period end here.
                tokio::time::sleep(edge.drain_grace.get() + SHUTDOWN_GRACE).await;
                state.streams.stop_all();
            })
        };
        let closing = state.closing.clone();
        let serve = axum::serve(
            self.listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { closing.cancelled().await })
        .into_future();
        // The graceful shutdown waits for every HTTP connection, and one
        // whose client stopped reading (an event stream with bytes it will
        // never take) would hold it forever: after the grace period, and
        // once the event streams were told to stop, it is not waited for.
        let given_up = {
            let closing = state.closing.clone();
            let after = state.config.edge.drain_grace.get() + 2 * SHUTDOWN_GRACE;
            async move {
                closing.cancelled().await;
                tokio::time::sleep(after).await;
            }
        };
        let served = tokio::select! {
            served = serve => served.map_err(EdgeError::Serve),
            () = given_up => {
                tracing::warn!("HTTP connections still open after the grace period: not waited for");
                Ok(())
            }
        };
        // Upgraded WebSockets are not awaited by axum: they close by
        // themselves within the grace period (see `session`); whatever is
        // still open after it is closed at once.
        state.closing.cancel();
        state.sessions.close();
        let spread = state.config.edge.drain_grace.get() + SHUTDOWN_GRACE;
        if tokio::time::timeout(spread, state.sessions.wait())
            .await
            .is_err()
        {
            state.shutdown.cancel();
            if tokio::time::timeout(SHUTDOWN_GRACE, state.sessions.wait())
                .await
                .is_err()
            {
                tracing::warn!("connections still open after the shutdown grace period");
            }
        }
        state.shutdown.cancel();
        drain.abort();
        heartbeat.abort();
        audit.abort();
        notices.abort();
        posts.abort();
        directory.abort();
        prune.abort();
        agent_teams.abort();
        bot_teams.abort();
        tracing::info!(edge_id = %state.edge_id, "edge stopped");
        served
    }
}
