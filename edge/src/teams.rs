//! The teams a conversation may be started for: those with rules in the
//! configuration (`router.teams`) and those some agent account belongs
//! to, kept current from the `agents` bucket. A `start` naming any other
//! team is refused, so a client cannot make up queues.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::kv::{Operation, Store};
use futures::StreamExt;
use switchboard_protocol::ids::TeamId;
use switchboard_protocol::payloads::{decode, AgentAccount};

/// Wait before watching the accounts again after the watch broke.
const REWATCH_DELAY: Duration = Duration::from_secs(1);

/// The known teams.
pub struct Teams {
    configured: BTreeSet<String>,
    /// Account key → its team.
    of_accounts: Mutex<HashMap<String, TeamId>>,
    /// Whether the accounts have been read once.
    loaded: AtomicBool,
}

impl Teams {
    /// Teams from the configuration; the accounts' are learnt by
    /// [`Teams::watch`].
    pub fn new(configured: impl IntoIterator<Item = String>) -> Arc<Self> {
        Arc::new(Self {
            configured: configured.into_iter().collect(),
            of_accounts: Mutex::default(),
            loaded: AtomicBool::new(false),
        })
    }

    /// Whether a conversation may be started for `team`. While the
    /// accounts are still being read (the first moments of an edge), any
    /// team is taken rather than a real one refused.
    pub fn knows(&self, team: &TeamId) -> bool {
        self.configured.contains(team.as_str())
            || !self.loaded.load(Ordering::Relaxed)
            || self
                .of_accounts
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .values()
                .any(|t| t == team)
    }

    /// Follows the `agents` bucket for as long as the edge runs.
    pub async fn watch(self: Arc<Self>, agents: Store) {
        loop {
            match agents.watch_with_history(">").await {
                Ok(mut entries) => {
                    while let Some(Ok(entry)) = entries.next().await {
                        let mut teams = self
                            .of_accounts
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner);
                        match (&entry.operation, decode::<AgentAccount>(&entry.value)) {
                            (
                                Operation::Put,
                                Ok(AgentAccount {
                                    team: Some(team), ..
                                }),
                            ) => {
                                teams.insert(entry.key.clone(), team);
                            }
                            _ => {
                                teams.remove(&entry.key);
                            }
                        }
                        drop(teams);
                        if entry.delta == 0 {
                            self.loaded.store(true, Ordering::Relaxed);
                        }
                    }
                }
                Err(err) => tracing::warn!(error = %err, "watch agent accounts for teams"),
            }
            tokio::time::sleep(REWATCH_DELAY).await;
        }
    }
}
