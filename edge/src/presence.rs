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

#[cfg(test)]
mod tests {
    use std::process::{Child, Command, Stdio};

    use super::*;

    /// A nats-server with JetStream on a free loopback port, killed and
    /// its store removed on drop. `scripts/setup` installs it.
    struct Server {
        child: Child,
        dir: std::path::PathBuf,
        port: u16,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn start_server() -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir().join(format!("sb-presence-{}-{port}", std::process::id()));
        let binary = std::env::var("SWITCHBOARD_TEST_NATS_SERVER")
            .unwrap_or_else(|_| "nats-server".to_owned());
        let child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server (scripts/setup installs it)");
        Server { child, dir, port }
    }

    async fn presence_store(server: &Server) -> kv::Store {
        let url = format!("nats://127.0.0.1:{}", server.port);
        let began = tokio::time::Instant::now();
        let client = loop {
            match async_nats::connect(&url).await {
                Ok(client) => break client,
                // The server is still starting: try again shortly.
                Err(_) if began.elapsed() < Duration::from_secs(30) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(err) => panic!("connect to nats-server: {err}"),
            }
        };
        async_nats::jetstream::new(client)
            .create_key_value(kv::Config {
                bucket: "presence".into(),
                history: 1,
                ..Default::default()
            })
            .await
            .expect("presence bucket")
    }

    /// The heartbeat took its snapshot of the entries, the connection closed
    /// and its entry was removed, then the refresh goes on with what it
    /// took: the entry stays removed. An entry that vanished while still
    /// this edge's (it expired while NATS was out of reach) is written anew.
    #[tokio::test]
    async fn a_refresh_in_flight_never_revives_a_removed_entry() {
        let server = start_server();
        let store = presence_store(&server).await;
        let presences = Presences::new(store.clone(), "edge-1".into());
        let agent = AgentId::generate();

        presences.set(&agent, 1, AgentStatus::Online).await.unwrap();
        let key = presences.key(&agent, 1);
        let snapshot = presences.entries().get(&key).cloned().unwrap();
        presences.remove(&agent, 1).await;
        presences.refresh(&key, snapshot).await.unwrap();
        assert!(
            store.get(&key).await.unwrap().is_none(),
            "a removed presence was written back by a refresh"
        );

        presences.set(&agent, 2, AgentStatus::Online).await.unwrap();
        let key = presences.key(&agent, 2);
        let snapshot = presences.entries().get(&key).cloned().unwrap();
        store.delete(&key).await.unwrap();
        presences.refresh(&key, snapshot).await.unwrap();
        assert!(
            store.get(&key).await.unwrap().is_some(),
            "a live connection's expired presence was not written anew"
        );
    }
}
