//! Agent presence: one entry per agent connection in the `presence`
//! bucket, refreshed by this edge every third of the bucket's TTL. An edge
//! that dies stops refreshing, so its agents go offline by themselves.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::kv;
use switchboard_bus::{kv as typed, BusError};
use switchboard_protocol::ids::AgentId;
use switchboard_protocol::payloads::{AgentStatus, Presence};
use switchboard_protocol::subjects::presence_key;
use switchboard_protocol::time::now_ms;
use tokio_util::sync::CancellationToken;

/// This edge's agent connections and their statuses.
pub struct Presences {
    store: kv::Store,
    edge_id: String,
    entries: Mutex<HashMap<String, Presence>>,
}

impl Presences {
    pub fn new(store: kv::Store, edge_id: String) -> Self {
        Self {
            store,
            edge_id,
            entries: Mutex::default(),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Presence>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a connection's status.
    ///
    /// # Errors
    /// NATS errors.
    pub async fn set(
        &self,
        agent: &AgentId,
        connection: u64,
        status: AgentStatus,
    ) -> Result<(), BusError> {
        let key = presence_key(agent, &format!("{}-{connection}", self.edge_id));
        let presence = Presence {
            agent_id: agent.clone(),
            status,
            edge_id: self.edge_id.clone(),
            updated_at: now_ms(),
        };
        typed::put(&self.store, &key, &presence).await?;
        self.entries().insert(key, presence);
        Ok(())
    }

    /// Removes a closed connection's entry.
    pub async fn remove(&self, agent: &AgentId, connection: u64) {
        let key = presence_key(agent, &format!("{}-{connection}", self.edge_id));
        self.entries().remove(&key);
        if let Err(err) = self.store.delete(&key).await {
            // The entry expires by itself after the TTL.
            tracing::warn!(error = %err, agent_id = %agent, "remove presence failed");
        }
    }

    /// Refreshes every entry of this edge each `every` until `shutdown`.
    pub async fn heartbeat(&self, every: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let entries: Vec<(String, Presence)> = self
                .entries()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (key, mut presence) in entries {
                presence.updated_at = now_ms();
                if let Err(err) = typed::put(&self.store, &key, &presence).await {
                    tracing::warn!(error = %err, "presence heartbeat failed");
                }
            }
        }
    }
}
