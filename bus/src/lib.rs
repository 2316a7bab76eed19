//! The backbone as the components use it: everything that talks to NATS
//! JetStream on behalf of more than one component.
//!
//! - [`backbone`]: creates (idempotently) the chat stream and the KV buckets,
//!   and hands out handles to them.
//! - [`log`]: a conversation's log — appending with a dense per-conversation
//!   `seq` and dedupe, reading ranges back for resume and history.
//! - [`kv`]: typed MessagePack values in KV buckets and the compare-and-set
//!   loop every routing decision goes through.
//! - [`outbox`]: events a conversation's state owes to its log, written
//!   after the state change by whoever comes next.
//! - [`slots`]: giving back an agent's capacity slot.
//! - [`accounts`]: agent accounts and password checks.
//! - [`admin`]: the queue as admins see and change it, and broadcasts
//!   (shared by the command line and the edge's admin API).
//! - [`error`]: the error type, [`BusError`].

pub mod accounts;
pub mod admin;
pub mod backbone;
pub mod error;
pub mod kv;
pub mod log;
pub mod outbox;
pub mod slots;

pub use backbone::Backbone;
pub use error::BusError;
pub use log::{Appended, ConversationLog};

/// How often an idle connection pings nats-server.
const PING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Connects to NATS with the settings' name and timeouts. The client
/// reconnects by itself forever; callers never need to reconnect. The
/// counter goes up at every (re)connection and every slow-consumer drop:
/// moments after which live messages may have been missed.
///
/// # Errors
/// When the first connection cannot be made.
pub async fn connect(
    settings: &switchboard_config::NatsSettings,
    component: &str,
) -> Result<(async_nats::Client, tokio::sync::watch::Receiver<u64>), BusError> {
    let (disruptions, watcher) = tokio::sync::watch::channel(0u64);
    let disruptions = std::sync::Arc::new(disruptions);
    let client = async_nats::ConnectOptions::new()
        .name(format!("{}-{component}", settings.connection_name))
        .request_timeout(Some(settings.request_timeout.get()))
        .retry_on_initial_connect()
        .connection_timeout(settings.request_timeout.get())
        // Notice a server that stopped answering within seconds, not the
        // default minutes, and reconnect.
        .ping_interval(PING_INTERVAL)
        .event_callback(move |event| {
            let disruptions = std::sync::Arc::clone(&disruptions);
            async move {
                match &event {
                    async_nats::Event::Connected | async_nats::Event::SlowConsumer(_) => {
                        disruptions.send_modify(|n| *n += 1);
                        tracing::info!(event = %event, "nats connection event");
                    }
                    async_nats::Event::Disconnected | async_nats::Event::ClientError(_) => {
                        tracing::warn!(event = %event, "nats connection event");
                    }
                    _ => tracing::info!(event = %event, "nats connection event"),
                }
            }
        })
        .connect(settings.url.as_str())
        .await
        .map_err(|e| BusError::nats("connect to nats", e))?;
    Ok((client, watcher))
}
