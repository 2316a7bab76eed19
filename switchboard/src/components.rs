//! Starting the components with one shutdown token, cancelled by SIGINT
//! or SIGTERM.

use anyhow::Context;
use switchboard_archiver::ArchiverConfig;
use switchboard_bus::Backbone;
use switchboard_config::Settings;
use switchboard_edge::{Edge, EdgeConfig};
use switchboard_router::RouterConfig;
use tokio_util::sync::CancellationToken;

use crate::agents::{ensure_demo_agents, DEMO_AGENTS};

/// Connects to NATS and opens (creating if needed) the stream and buckets.
pub async fn open_backbone(settings: &Settings, component: &str) -> anyhow::Result<Backbone> {
    Backbone::connect(&settings.nats, component)
        .await
        .with_context(|| {
            format!(
                "open the backbone at {}",
                switchboard_config::redact::redact_uri(&settings.nats.url)
            )
        })
}

/// Serves `/metrics` and `/healthz` on `metrics.listen`, when it is set,
/// until `shutdown`.
///
/// # Errors
/// The address cannot be bound.
async fn serve_metrics(settings: &Settings, shutdown: &CancellationToken) -> anyhow::Result<()> {
    let Some(addr) = settings.metrics.listen else {
        return Ok(());
    };
    let server = switchboard_metrics::http::MetricsServer::bind(addr).await?;
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        if let Err(err) = server.run(shutdown).await {
            tracing::error!(error = %err, "metrics server failed");
        }
    });
    Ok(())
}

fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        cancel.cancel();
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(err) => {
            tracing::warn!(error = %err, "no SIGTERM handler; only Ctrl-C stops");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

fn edge_config(settings: &Settings, demo: bool) -> anyhow::Result<EdgeConfig> {
    if !demo {
        settings.require_production_secret()?;
    }
    Ok(EdgeConfig {
        edge: settings.edge.clone(),
        auth: settings.auth.clone(),
        presence_ttl: settings.nats.presence_ttl.get(),
        teams: settings.router.teams.keys().cloned().collect(),
    })
}

fn router_config(settings: &Settings) -> RouterConfig {
    RouterConfig {
        router: settings.router.clone(),
        presence_ttl: settings.nats.presence_ttl.get(),
        max_text_chars: settings.edge.max_text_chars,
    }
}

fn archiver_config(settings: &Settings) -> ArchiverConfig {
    ArchiverConfig::new(settings)
}

/// `switchboard up`: all three components in one process.
pub async fn up(settings: Settings, demo: bool) -> anyhow::Result<()> {
    let edge_config = edge_config(&settings, demo)?;
    let backbone = open_backbone(&settings, "up").await?;
    let edge = Edge::bind(edge_config, backbone.clone()).await?;
    let addr = edge.local_addr()?;
    if demo {
        ensure_demo_agents(&backbone)
            .await
            .context("create the demo agents")?;
        println!("Switchboard is running (demo mode).");
        println!("  Visitor demo site: http://{addr}/");
        println!("  Agent console:     http://{addr}/console");
        for (login, name, password, _, capacity) in DEMO_AGENTS {
            println!(
                "  Agent {name:<6} login {login:<12} password {password}  (capacity {capacity})"
            );
        }
        println!("Press Ctrl-C to stop.");
    }
    let shutdown = shutdown_on_signals();
    serve_metrics(&settings, &shutdown).await?;
    let router = tokio::spawn(switchboard_router::run(
        router_config(&settings),
        backbone.clone(),
        shutdown.clone(),
    ));
    let archiver = tokio::spawn(switchboard_archiver::run(
        archiver_config(&settings),
        backbone.clone(),
        shutdown.clone(),
    ));
    let edge_result = edge.run(shutdown.clone()).await;
    shutdown.cancel();
    let (router, archiver) = tokio::join!(router, archiver);
    router.context("router task")??;
    archiver.context("archiver task")??;
    edge_result?;
    Ok(())
}

pub async fn edge_only(settings: Settings, demo: bool) -> anyhow::Result<()> {
    let config = edge_config(&settings, demo)?;
    let backbone = open_backbone(&settings, "edge").await?;
    let edge = Edge::bind(config, backbone).await?;
    let shutdown = shutdown_on_signals();
    serve_metrics(&settings, &shutdown).await?;
    edge.run(shutdown).await?;
    Ok(())
}

pub async fn router_only(settings: Settings) -> anyhow::Result<()> {
    let backbone = open_backbone(&settings, "router").await?;
    let shutdown = shutdown_on_signals();
    serve_metrics(&settings, &shutdown).await?;
    switchboard_router::run(router_config(&settings), backbone, shutdown).await?;
    Ok(())
}

pub async fn archiver_only(settings: Settings) -> anyhow::Result<()> {
    let backbone = open_backbone(&settings, "archiver").await?;
    let shutdown = shutdown_on_signals();
    serve_metrics(&settings, &shutdown).await?;
    switchboard_archiver::run(archiver_config(&settings), backbone, shutdown).await?;
    Ok(())
}
