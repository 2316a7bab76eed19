//! Agent presence: one entry per agent connection in the `presence`
//! bucket, refreshed by this edge every third of the bucket's TTL. An edge
//! that dies stops refreshing, so its agents go offline by themselves.
//!
//! A refresh never brings back an entry that was removed: it writes only
//! at the revision this edge last wrote (a removal moves the revision on),
//! and an entry that has to be written anew (it expired while this edge
//! could not reach NATS) is written under the same lock as removals.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::kv::{self, UpdateErrorKind};
use switchboard_bus::{kv as typed, BusError};
use switchboard_protocol::ids::AgentId;
use switchboard_protocol::payloads::{encode, AgentStatus, Presence};
use switchboard_protocol::subjects::presence_key;
use switchboard_protocol::time::now_ms;
use tokio_util::sync::CancellationToken;

/// One connection's entry and the revision this edge last wrote it at.
#[derive(Debug, Clone)]
struct Entry {
    presence: Presence,
    revision: u64,
}

/// This edge's agent connections and their statuses.
pub struct Presences {
    store: kv::Store,
    edge_id: String,
    entries: Mutex<HashMap<String, Entry>>,
    /// Held by status changes, removals and refreshes that write an entry
    /// anew, so a removal is never undone and a newer status never
    /// overwritten by an older one.
    rewrite: tokio::sync::Mutex<()>,
}

impl Presences {
    pub fn new(store: kv::Store, edge_id: String) -> Self {
        Self {
            store,
            edge_id,
            entries: Mutex::default(),
            rewrite: tokio::sync::Mutex::new(()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn key(&self, agent: &AgentId, connection: u64) -> String {
        presence_key(agent, &format!("{}-{connection}", self.edge_id))
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
        let key = self.key(agent, connection);
        let presence = Presence {
            agent_id: agent.clone(),
            status,
            edge_id: self.edge_id.clone(),
            updated_at: now_ms(),
        };
        // Under the lock, so a refresh that lost its revision to this write
        // sees the new revision and never writes the old status back.
        let _rewrite = self.rewrite.lock().await;
        let revision = typed::put(&self.store, &key, &presence).await?;
        self.entries().insert(key, Entry { presence, revision });
        Ok(())
    }

    /// Removes a closed connection's entry.
    pub async fn remove(&self, agent: &AgentId, connection: u64) {
        let key = self.key(agent, connection);
        let _rewrite = self.rewrite.lock().await;
        self.entries().remove(&key);
        if let Err(err) = self.store.delete(&key).await {
            // The entry expires by itself after the TTL.
            tracing::warn!(error = %err, agent_id = %agent, "remove presence failed");
        }
    }

    /// Whether a connection has a presence entry (for tests and metrics).
    pub fn has(&self, agent: &AgentId, connection: u64) -> bool {
        self.entries().contains_key(&self.key(agent, connection))
    }

    /// Refreshes every entry of this edge each `every` until `shutdown`.
    pub async fn heartbeat(&self, every: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let entries: Vec<(String, Entry)> = self
                .entries()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (key, entry) in entries {
                if let Err(err) = self.refresh(&key, entry).await {
                    tracing::warn!(error = %err, "presence heartbeat failed");
                }
            }
        }
    }

    /// Refreshes one entry at the revision this edge wrote it at.
    async fn refresh(&self, key: &str, mut entry: Entry) -> Result<(), BusError> {
        entry.presence.updated_at = now_ms();
        let bytes = encode(&entry.presence).map_err(|e| BusError::decode("presence", e))?;
        match self
            .store
            .update(key, bytes.clone().into(), entry.revision)
            .await
        {
            Ok(revision) => {
                self.note_revision(key, entry.revision, revision);
                Ok(())
            }
            Err(err) if err.kind() == UpdateErrorKind::WrongLastRevision => {
                switchboard_metrics::bus::bus().cas_conflict(&self.store.name);
                // Removed (leave it so), rewritten by a status change (it
                // is fresh), or expired while NATS was out of reach: only
                // the last is written anew, under the removals' lock.
                let _rewrite = self.rewrite.lock().await;
                let still_ours = self
                    .entries()
                    .get(key)
                    .is_some_and(|e| e.revision == entry.revision);
                if still_ours {
                    let revision = self
                        .store
                        .put(key, bytes.into())
                        .await
                        .map_err(|e| BusError::nats("rewrite presence", e))?;
                    self.note_revision(key, entry.revision, revision);
                }
                Ok(())
            }
            Err(err) => Err(BusError::nats("refresh presence", err)),
        }
    }

    /// Remembers a refresh's revision unless the entry changed meanwhile.
    fn note_revision(&self, key: &str, was: u64, now: u64) {
        if let Some(entry) = self.entries().get_mut(key) {
            if entry.revision == was {
                entry.revision = now;
            }
        }
    }
}
