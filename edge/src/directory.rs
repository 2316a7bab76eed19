//! What the edge knows of the people and teams behind the chat, kept
//! current from the buckets' watches: agent accounts, their presence and
//! load, teams' settings, bots, and the missed conversations. It answers
//! the agent directory (transfers by name, the admin dashboard), the
//! widget's availability ("online", "queue", "nobody"), and pushes the
//! missed list to agents whenever it changes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::kv::{Entry, Operation};
use futures::stream::select_all;
use futures::StreamExt;
use serde::Serialize;
use switchboard_bus::{Backbone, BusError};
use switchboard_protocol::frames::ServerFrame;
use switchboard_protocol::ids::{AgentId, TeamId};
use switchboard_protocol::payloads::{
    decode, AgentAccount, AgentLoad, AgentStatus, BotAccount, MissedEntry, Presence, TeamSettings,
};
use switchboard_protocol::subjects::{buckets, parse_presence_key};
use switchboard_protocol::time::now_ms;

use crate::hub::Hub;

/// Wait before watching again after a watch broke.
const REWATCH_DELAY: Duration = Duration::from_secs(1);
/// Missed conversations pushed to agents at once (the oldest first); the
/// rest are paged with `list_missed`.
const MISSED_PUSHED: usize = 50;

/// The buckets' current content.
#[derive(Default)]
struct View {
    agents: HashMap<String, AgentAccount>,
    /// Presence key → one connection's presence.
    presence: HashMap<String, Presence>,
    loads: HashMap<String, AgentLoad>,
    teams: BTreeMap<String, TeamSettings>,
    bots: HashMap<String, BotAccount>,
    missed: BTreeMap<String, MissedEntry>,
}

/// One agent as the directory lists them.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub id: String,
    pub name: String,
    pub team: Option<String>,
    /// `online`, `away` or `offline`.
    pub status: &'static str,
    /// Conversations they hold now.
    pub load: usize,
    /// Their account's capacity (0: the routers' default).
    pub capacity: u32,
    /// For admins only (left out of agents' answers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
}

/// Who can answer a team's visitors now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Availability {
    pub online: usize,
    pub away: usize,
    /// A bot of the team runs (it answers first).
    pub bot: bool,
}

/// The edge's view of agents and teams.
pub struct Directory {
    presence_ttl: Duration,
    view: Mutex<View>,
    /// Teams of the configuration (`router.teams`).
    configured: BTreeSet<String>,
}

impl Directory {
    pub fn new(presence_ttl: Duration, configured: impl IntoIterator<Item = String>) -> Arc<Self> {
        Arc::new(Self {
            presence_ttl,
            view: Mutex::default(),
            configured: configured.into_iter().collect(),
        })
    }

    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Follows the buckets for as long as the edge runs; pushes the missed
    /// list to the hub's agents when it changes.
    pub async fn watch(self: Arc<Self>, backbone: Backbone, hub: Arc<Hub>) {
        loop {
            if let Err(err) = self.watch_once(&backbone, &hub).await {
                tracing::warn!(error = %err, "directory watches broke; watching again");
            }
            tokio::time::sleep(REWATCH_DELAY).await;
        }
    }

    async fn watch_once(&self, backbone: &Backbone, hub: &Hub) -> Result<(), BusError> {
        let mut watches = Vec::new();
        for store in [
            &backbone.agents,
            &backbone.presence,
            &backbone.load,
            &backbone.teams,
            &backbone.bots,
            &backbone.missed,
        ] {
            watches.push(
                store
                    .watch_with_history(">")
                    .await
                    .map_err(|e| BusError::nats("watch kv bucket", e))?,
            );
        }
        // A fresh view: what was deleted while the watches were down is
        // not in the history.
        *self.view() = View::default();
        let mut entries = select_all(watches);
        while let Some(entry) = entries.next().await {
            let entry = entry.map_err(|e| BusError::nats("kv watch", e))?;
            let missed_changed = self.apply(&entry);
            if missed_changed && entry.delta == 0 {
                hub.set_missed(self.missed_frame());
            }
        }
        Err(BusError::nats("kv watch", "watch ended"))
    }

    /// Applies one change; true when it changed the missed list.
    fn apply(&self, entry: &Entry) -> bool {
        let put = entry.operation == Operation::Put;
        let key = entry.key.clone();
        let mut view = self.view();
        fn set<T: serde::de::DeserializeOwned>(
            map: &mut impl Extend<(String, T)>,
            key: String,
            bytes: &[u8],
        ) -> bool {
            match decode::<T>(bytes) {
                Ok(value) => {
                    map.extend([(key, value)]);
                    true
                }
                Err(err) => {
                    tracing::warn!(error = %err, "undecodable bucket entry in the directory");
                    false
                }
            }
        }
        match entry.bucket.as_str() {
            buckets::AGENTS if put => {
                set(&mut view.agents, key, &entry.value);
            }
            buckets::AGENTS => {
                view.agents.remove(&key);
            }
            buckets::PRESENCE if put => {
                set(&mut view.presence, key, &entry.value);
            }
            buckets::PRESENCE => {
                view.presence.remove(&key);
            }
            buckets::LOAD if put => {
                set(&mut view.loads, key, &entry.value);
            }
            buckets::LOAD => {
                view.loads.remove(&key);
            }
            buckets::TEAMS if put => {
                set(&mut view.teams, key, &entry.value);
            }
            buckets::TEAMS => {
                view.teams.remove(&key);
            }
            buckets::BOTS if put => {
                set(&mut view.bots, key, &entry.value);
            }
            buckets::BOTS => {
                view.bots.remove(&key);
            }
            buckets::MISSED if put => return set(&mut view.missed, key, &entry.value),
            buckets::MISSED => return view.missed.remove(&key).is_some(),
            _ => {}
        }
        false
    }

    /// The `missed` frame agents are pushed: the oldest first.
    fn missed_frame(&self) -> Arc<str> {
        let view = self.view();
        let mut entries: Vec<MissedEntry> = view.missed.values().cloned().collect();
        entries.sort_by(|a, b| {
            a.left_at
                .cmp(&b.left_at)
                .then_with(|| a.conversation_id.cmp(&b.conversation_id))
        });
        let has_more = entries.len() > MISSED_PUSHED;
        entries.truncate(MISSED_PUSHED);
        ServerFrame::Missed {
            entries,
            has_more,
            asked: false,
        }
        .to_json()
        .into()
    }

    /// Every agent's status: the best of their connections' that are
    /// fresh (absent: offline). One pass over the presences, whatever the
    /// number of agents asked about (the widget's unauthenticated
    /// availability asks about all of them).
    fn statuses(view: &View, now: i64, ttl_ms: i64) -> HashMap<AgentId, AgentStatus> {
        let mut statuses: HashMap<AgentId, AgentStatus> = HashMap::new();
        for (key, presence) in &view.presence {
            if now - presence.updated_at > ttl_ms {
                continue;
            }
            let Some(agent) = parse_presence_key(key) else {
                continue;
            };
            let status = statuses.entry(agent).or_insert(presence.status);
            *status = (*status).max(presence.status);
        }
        statuses
    }

    fn ttl_ms(&self) -> i64 {
        i64::try_from(self.presence_ttl.as_millis()).unwrap_or(i64::MAX)
    }

    /// Every agent account with their status and load (`full`: with the
    /// admin's fields: login, role, disabled), by name.
    pub fn agents(&self, full: bool) -> Vec<Listed> {
        let now = now_ms();
        let ttl = self.ttl_ms();
        let view = self.view();
        let statuses = Self::statuses(&view, now, ttl);
        let status_of =
            |agent: &AgentId| statuses.get(agent).copied().unwrap_or(AgentStatus::Offline);
        let mut listed: Vec<Listed> = view
            .agents
            .values()
            .map(|account| Listed {
                id: account.id.to_string(),
                name: account.name.clone(),
                team: account.team.as_ref().map(ToString::to_string),
                status: status_name(status_of(&account.id)),
                load: view
                    .loads
                    .get(account.id.as_str())
                    .map_or(0, |l| l.conversations.len()),
                capacity: account.capacity,
                login: full.then(|| account.login.clone()),
                role: full.then(|| account.role.as_str()),
                disabled: full.then_some(account.disabled),
            })
            .filter(|a| full || a.disabled != Some(true))
            .collect();
        listed.sort_by_key(|a| a.name.to_lowercase());
        listed
    }

    /// Every team anyone knows of: configured, edited by admins, of an
    /// agent account or of a bot.
    pub fn teams(&self) -> Vec<String> {
        let view = self.view();
        let mut teams = self.configured.clone();
        teams.extend(view.teams.keys().cloned());
        teams.extend(
            view.agents
                .values()
                .filter_map(|a| a.team.as_ref().map(ToString::to_string)),
        );
        teams.extend(view.bots.values().map(|b| b.team.to_string()));
        teams.into_iter().collect()
    }

    /// A team's settings as admins last saved them.
    pub fn team_settings(&self, team: &str) -> Option<TeamSettings> {
        self.view().teams.get(team).cloned()
    }

    /// Whether a conversation may be started for `team`: a team anyone
    /// knows of (see [`Directory::teams`]).
    pub fn knows(&self, team: &TeamId) -> bool {
        self.view().teams.contains_key(team.as_str())
    }

    /// Who can answer a conversation of `team` now: its agents (any agent
    /// for a conversation without a team), and whether its bot runs.
    pub fn availability(&self, team: Option<&str>) -> Availability {
        let now = now_ms();
        let ttl = self.ttl_ms();
        let view = self.view();
        let mut availability = Availability {
            bot: team.is_some_and(|t| view.bots.values().any(|b| b.team.as_str() == t)),
            ..Availability::default()
        };
        let statuses = Self::statuses(&view, now, ttl);
        for account in view.agents.values().filter(|a| !a.disabled) {
            if team.is_some_and(|t| account.team.as_ref().map(TeamId::as_str) != Some(t)) {
                continue;
            }
            match statuses
                .get(&account.id)
                .copied()
                .unwrap_or(AgentStatus::Offline)
            {
                AgentStatus::Online => availability.online += 1,
                AgentStatus::Away => availability.away += 1,
                AgentStatus::Offline => {}
            }
        }
        availability
    }

    /// Conversations held by agents now, and missed ones waiting.
    pub fn open_counts(&self) -> (usize, usize) {
        let view = self.view();
        let held = view.loads.values().map(|l| l.conversations.len()).sum();
        (held, view.missed.len())
    }
}

fn status_name(status: AgentStatus) -> &'static str {
    match status {
        AgentStatus::Online => "online",
        AgentStatus::Away => "away",
        AgentStatus::Offline => "offline",
    }
}
