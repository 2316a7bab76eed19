//! The router's entry point: watch the buckets, keep the mirror, and run an
//! assignment pass whenever something changed (and every second, for
//! presence that expired without a write). Each pass first lets the
//! reconciler release stale slots.

use std::time::Duration;

use futures::{stream::select_all, FutureExt, StreamExt};
use switchboard_bus::{Backbone, BusError};
use switchboard_config::RouterSettings;
use switchboard_protocol::time::now_ms;
use tokio_util::sync::CancellationToken;

use crate::assign::{self, Outcome};
use crate::mirror::Mirror;
use crate::{policy, reconcile};

/// What a router needs to know.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    pub router: RouterSettings,
    pub presence_ttl: Duration,
}

/// The router stopped for a reason other than shutdown.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// How long to wait before watching again after the watches broke.
const REWATCH_DELAY: Duration = Duration::from_secs(1);

/// Runs the router until `shutdown`. It survives NATS restarts: broken
/// watches are re-established and the mirror rebuilt.
///
/// # Errors
/// None in practice; failures are logged and retried.
pub async fn run(
    config: RouterConfig,
    backbone: Backbone,
    shutdown: CancellationToken,
) -> Result<(), RouterError> {
    tracing::info!("router started");
    while !shutdown.is_cancelled() {
        match watch_and_route(&config, &backbone, &shutdown).await {
            Ok(()) => break,
            Err(err) => {
                tracing::warn!(error = %err, "router watches broke; rebuilding");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(REWATCH_DELAY) => {}
                }
            }
        }
    }
    tracing::info!("router stopped");
    Ok(())
}

async fn watch_and_route(
    config: &RouterConfig,
    backbone: &Backbone,
    shutdown: &CancellationToken,
) -> Result<(), BusError> {
    let mut watches = Vec::new();
    for store in [
        &backbone.agents,
        &backbone.presence,
        &backbone.load,
        &backbone.conversations,
    ] {
        watches.push(
            store
                .watch_with_history(">")
                .await
                .map_err(|e| BusError::nats("watch kv bucket", e))?,
        );
    }
    let mut events = select_all(watches);
    let mut mirror = Mirror::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            entry = events.next() => {
                match entry {
                    Some(Ok(entry)) => mirror.apply(&entry),
                    Some(Err(err)) => return Err(BusError::nats("kv watch", err)),
                    None => return Err(BusError::nats("kv watch", "watch ended")),
                }
                // Take everything already waiting before deciding.
                while let Some(Some(next)) = events.next().now_or_never() {
                    match next {
                        Ok(entry) => mirror.apply(&entry),
                        Err(err) => return Err(BusError::nats("kv watch", err)),
                    }
                }
            }
            _ = tick.tick() => {}
        }
        // Cheap when nothing is stale: the mirror is in memory.
        if let Err(err) =
            reconcile::run_once(backbone, &mirror, now_ms(), config.router.claim_grace.get()).await
        {
            tracing::warn!(error = %err, "reconcile failed");
        }
        if let Err(err) = pass(config, backbone, &mut mirror).await {
            tracing::warn!(error = %err, "assignment pass failed");
        }
    }
}

/// Assigns what can be assigned, oldest first, and tells the rest their
/// place in the queue.
#[tracing::instrument(name = "router.pass", skip_all)]
async fn pass(
    config: &RouterConfig,
    backbone: &Backbone,
    mirror: &mut Mirror,
) -> Result<(), BusError> {
    let now = now_ms();
    let queue: Vec<_> = policy::queue(mirror).into_iter().cloned().collect();
    let mut waiting = Vec::new();
    for conversation in queue {
        let Some(agent_id) = policy::choose_agent(
            mirror,
            &conversation,
            now,
            config.presence_ttl,
            config.router.default_capacity,
        ) else {
            waiting.push(conversation);
            continue;
        };
        let Some(account) = mirror.agents.get(&agent_id).cloned() else {
            continue;
        };
        let capacity = if account.capacity == 0 {
            config.router.default_capacity
        } else {
            account.capacity
        };
        match assign::assign(backbone, &conversation.id, &account, capacity).await? {
            Outcome::Assigned => {
                // Reflect our own writes at once; the watches confirm them.
                let load = mirror.loads.entry(agent_id.clone()).or_default();
                load.conversations
                    .push(switchboard_protocol::payloads::LoadEntry {
                        conversation_id: conversation.id.clone(),
                        claimed_at: now,
                    });
                load.last_assigned_at = now;
                if let Some(state) = mirror.conversations.get_mut(&conversation.id) {
                    state.status = switchboard_protocol::payloads::ConversationStatus::Assigned;
                }
            }
            Outcome::AgentFull | Outcome::NotQueued => waiting.push(conversation),
        }
    }
    let waiting: Vec<_> = waiting.iter().collect();
    for (conversation, position) in policy::positions(&waiting) {
        if conversation.announced_position != Some(position) {
            assign::announce_position(backbone, &conversation.id, position).await?;
            if let Some(state) = mirror.conversations.get_mut(&conversation.id) {
                state.announced_position = Some(position);
            }
        }
    }
    Ok(())
}
