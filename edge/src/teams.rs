//! The teams a conversation may be started for: those with rules in the
//! configuration (`router.teams`) and those some agent or bot account
//! belongs to, kept current from the `agents` and `bots` buckets. A
//! `start` naming any other team is refused, so a client cannot make up
//! queues.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::kv::{Operation, Store};
use futures::StreamExt;
use switchboard_protocol::ids::TeamId;
use switchboard_protocol::payloads::{decode, AgentAccount, BotAccount};

/// Wait before watching the accounts again after the watch broke.
const REWATCH_DELAY: Duration = Duration::from_secs(1);

/// The known teams.
pub struct Teams {
    configured: BTreeSet<String>,
    /// Account (`agent:<key>`, `bot:<key>`) → its team.
    of_accounts: Mutex<HashMap<String, TeamId>>,
    /// Whether each bucket (agents, bots) has been read once.
    loaded: [AtomicBool; 2],
}

/// Which accounts a bucket holds.
#[derive(Debug, Clone, Copy)]
pub enum Accounts {
    Agents,
    Bots,
}

impl Accounts {
    fn index(self) -> usize {
        match self {
            Accounts::Agents => 0,
            Accounts::Bots => 1,
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Accounts::Agents => "agent:",
            Accounts::Bots => "bot:",
        }
    }

    /// The team of an account stored in this bucket.
    fn team_of(self, value: &[u8]) -> Option<TeamId> {
        match self {
            Accounts::Agents => decode::<AgentAccount>(value).ok()?.team,
            Accounts::Bots => decode::<BotAccount>(value).ok().map(|b| b.team),
        }
    }
}

impl Teams {
    /// Teams from the configuration; the accounts' are learnt by
    /// [`Teams::watch`].
    pub fn new(configured: impl IntoIterator<Item = String>) -> Arc<Self> {
        Arc::new(Self {
            configured: configured.into_iter().collect(),
            of_accounts: Mutex::default(),
            loaded: [AtomicBool::new(false), AtomicBool::new(false)],
        })
    }

    /// Whether a conversation may be started for `team`. While the
    /// accounts are still being read (the first moments of an edge), any
    /// team is taken rather than a real one refused.
    pub fn knows(&self, team: &TeamId) -> bool {
        self.configured.contains(team.as_str())
            || !self.loaded.iter().all(|l| l.load(Ordering::Relaxed))
            || self
                .of_accounts
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .values()
                .any(|t| t == team)
    }

    /// Follows a bucket of accounts for as long as the edge runs.
    pub async fn watch(self: Arc<Self>, accounts: Accounts, store: Store) {
        loop {
            // An empty bucket sends no history to mark the end of: it is
            // read as soon as it is known to be empty.
            match store.keys().await {
                Ok(mut keys) => {
                    if keys.next().await.is_none() {
                        self.loaded[accounts.index()].store(true, Ordering::Relaxed);
                    }
                }
                Err(err) => tracing::warn!(error = %err, "list accounts for teams"),
            }
            match store.watch_with_history(">").await {
                Ok(mut entries) => {
                    while let Some(Ok(entry)) = entries.next().await {
                        let key = format!("{}{}", accounts.prefix(), entry.key);
                        let team = match entry.operation {
                            Operation::Put => accounts.team_of(&entry.value),
                            _ => None,
                        };
                        let mut teams = self
                            .of_accounts
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner);
                        match team {
                            Some(team) => teams.insert(key, team),
                            None => teams.remove(&key),
                        };
                        drop(teams);
                        if entry.delta == 0 {
                            self.loaded[accounts.index()].store(true, Ordering::Relaxed);
                        }
                    }
                }
                Err(err) => tracing::warn!(error = %err, "watch accounts for teams"),
            }
            tokio::time::sleep(REWATCH_DELAY).await;
        }
    }
}
