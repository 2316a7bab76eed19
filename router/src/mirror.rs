//! The router's view of the KV buckets. It is only ever derived from the
//! buckets (via their watches) and from this router's own successful
//! writes, so it can be thrown away and rebuilt at any time.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_nats::jetstream::kv::{Entry, Operation};
use switchboard_bus::kv::Seen;
use switchboard_protocol::ids::{AgentId, BotId, ConversationId, TeamId};
use switchboard_protocol::payloads::{
    decode, AgentAccount, AgentLoad, AgentStatus, BotAccount, BotPresence, ConversationState,
    ConversationStatus, Presence,
};
use switchboard_protocol::subjects::{buckets, parse_presence_key};

/// How long assignments are remembered for the queue's wait estimates.
pub const RATE_WINDOW_MS: i64 = 10 * 60 * 1000;

/// What the router knows of the routing state.
///
/// Finished conversations (closed, or left as a message) are not kept:
/// the bucket holds every conversation ever had, and a router's memory and
/// each pass would grow with that history. What the router still needs of
/// them is kept small: which ones a slot may still be claimed for
/// (`finished`, pruned by [`Mirror::prune_finished`]), and when recent
/// ones were assigned (`assignments`, for wait estimates).
#[derive(Debug, Default)]
pub struct Mirror {
    /// Conversations not finished, or finished with events still owed.
    pub conversations: HashMap<ConversationId, ConversationState>,
    pub presence: HashMap<String, Presence>,
    pub agents: HashMap<AgentId, AgentAccount>,
    pub loads: HashMap<AgentId, AgentLoad>,
    pub bots: HashMap<BotId, BotAccount>,
    /// Each bot's last presence announcement.
    pub bot_presence: HashMap<BotId, BotPresence>,
    /// Finished conversations that may still hold a slot.
    pub finished: HashSet<ConversationId>,
    /// When each conversation was last assigned, within the last
    /// [`RATE_WINDOW_MS`].
    pub assignments: HashMap<ConversationId, (Option<TeamId>, i64)>,
    /// Assignments noted, for pruning `assignments` now and then.
    noted: u64,
    /// Each agent's `load` entry as its watch delivered it (bytes and
    /// revision): an assignment's first compare-and-set starts from it
    /// instead of reading the key (`kv::cas_versioned_seen`).
    pub seen_loads: HashMap<AgentId, Seen>,
    /// The same for the conversations in `conversations`.
    pub seen_conversations: HashMap<ConversationId, Seen>,
}

impl Mirror {
    /// Applies one watched KV entry.
    pub fn apply(&mut self, entry: &Entry) {
        let deleted = entry.operation != Operation::Put;
        match entry.bucket.as_str() {
            buckets::CONVERSATIONS => {
                let Ok(id) = ConversationId::new(entry.key.as_str()) else {
                    return;
                };
                if deleted {
                    self.conversations.remove(&id);
                    self.finished.remove(&id);
                    self.seen_conversations.remove(&id);
                } else if let Some(state) = decode_logged::<ConversationState>(entry) {
                    self.keep(id.clone(), state);
                    if let Some(seen) = Seen::of(entry) {
                        self.see_conversation(&id, seen);
                    }
                }
            }
            buckets::PRESENCE => {
                if deleted || parse_presence_key(&entry.key).is_none() {
                    self.presence.remove(&entry.key);
                } else if let Some(presence) = decode_logged::<Presence>(entry) {
                    self.presence.insert(entry.key.clone(), presence);
                }
            }
            buckets::AGENTS => {
                let Ok(id) = AgentId::new(entry.key.as_str()) else {
                    return;
                };
                if deleted {
                    self.agents.remove(&id);
                } else if let Some(account) = decode_logged::<AgentAccount>(entry) {
                    self.agents.insert(id, account);
                }
            }
            buckets::LOAD => {
                let Ok(id) = AgentId::new(entry.key.as_str()) else {
                    return;
                };
                if deleted {
                    self.loads.remove(&id);
                    self.seen_loads.remove(&id);
                } else if let Some(load) = decode_logged::<AgentLoad>(entry) {
                    self.loads.insert(id.clone(), load);
                    if let Some(seen) = Seen::of(entry) {
                        self.see_load(id, seen);
                    }
                }
            }
            buckets::BOTS => {
                let Ok(id) = BotId::new(entry.key.as_str()) else {
                    return;
                };
                if deleted {
                    self.bots.remove(&id);
                } else if let Some(bot) = decode_logged::<BotAccount>(entry) {
                    self.bots.insert(id, bot);
                }
            }
            buckets::BOT_PRESENCE => {
                let Ok(id) = BotId::new(entry.key.as_str()) else {
                    return;
                };
                if deleted {
                    self.bot_presence.remove(&id);
                } else if let Some(presence) = decode_logged::<BotPresence>(entry) {
                    self.bot_presence.insert(id, presence);
                }
            }
            other => tracing::warn!(bucket = other, "entry of an unexpected bucket"),
        }
    }

    /// Notes what an agent's `load` entry holds at a revision (from its
    /// watch, or this router's own write), unless a later one is known.
    pub fn see_load(&mut self, agent: AgentId, seen: Seen) {
        match self.seen_loads.get(&agent) {
            Some(known) if known.revision >= seen.revision => {}
            _ => {
                self.seen_loads.insert(agent, seen);
            }
        }
    }

    /// The same for a conversation kept in `conversations` (a finished
    /// one is not written again by the router's passes).
    pub fn see_conversation(&mut self, id: &ConversationId, seen: Seen) {
        if !self.conversations.contains_key(id) {
            self.seen_conversations.remove(id);
            return;
        }
        match self.seen_conversations.get(id) {
            Some(known) if known.revision >= seen.revision => {}
            _ => {
                self.seen_conversations.insert(id.clone(), seen);
            }
        }
    }

    /// Takes a conversation's new state.
    pub fn keep(&mut self, id: ConversationId, state: ConversationState) {
        if let Some(at) = state.assigned_at {
            self.note_assignment(&id, state.team.clone(), at);
        }
        let finished = matches!(
            state.status,
            ConversationStatus::Closed | ConversationStatus::Missed
        );
        if finished && state.pending.is_empty() {
            self.conversations.remove(&id);
            self.seen_conversations.remove(&id);
            self.finished.insert(id);
        } else {
            self.finished.remove(&id);
            self.conversations.insert(id, state);
        }
    }

    fn note_assignment(&mut self, id: &ConversationId, team: Option<TeamId>, at: i64) {
        self.assignments.insert(id.clone(), (team, at));
        // Forget the old ones now and then.
        self.noted = self.noted.wrapping_add(1);
        if self.noted % 1024 == 0 {
            let newest = self
                .assignments
                .values()
                .map(|(_, at)| *at)
                .max()
                .unwrap_or(at);
            self.assignments
                .retain(|_, (_, at)| newest - *at <= RATE_WINDOW_MS);
        }
    }

    /// Forgets what no longer counts: finished conversations no slot is
    /// claimed for, and presences older than `presence_ttl`. The presence
    /// bucket drops an entry at its age limit without a delete marker, so
    /// the watch never tells of it: a connection whose edge died would
    /// otherwise stay in the mirror (and in every status look-up) for the
    /// router's life.
    pub fn prune(&mut self, now_ms: i64, presence_ttl: Duration) {
        self.prune_finished();
        let ttl_ms = millis(presence_ttl);
        self.presence
            .retain(|_, p| now_ms.saturating_sub(p.updated_at) <= ttl_ms);
    }

    /// Forgets the finished conversations no slot is claimed for any more.
    pub fn prune_finished(&mut self) {
        if self.finished.is_empty() {
            return;
        }
        let claimed: HashSet<&ConversationId> = self
            .loads
            .values()
            .flat_map(|l| l.conversations.iter().map(|e| &e.conversation_id))
            .collect();
        self.finished.retain(|id| claimed.contains(id));
    }

    /// An agent's status: the best of their connections that refreshed
    /// their presence within `ttl`.
    pub fn status(&self, agent: &AgentId, now_ms: i64, ttl: Duration) -> AgentStatus {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        self.presence
            .values()
            .filter(|p| &p.agent_id == agent && now_ms - p.updated_at <= ttl_ms)
            .map(|p| p.status)
            .max()
            .unwrap_or(AgentStatus::Offline)
    }

    /// Whether a bot announced itself within `ttl`.
    pub fn bot_present(&self, bot: &BotId, now_ms: i64, ttl: Duration) -> bool {
        self.bot_presence
            .get(bot)
            .is_some_and(|p| now_ms - p.updated_at <= millis(ttl))
    }

    /// Since when a bot has been absent: `ttl` after its last announcement
    /// (`None` when it never announced itself, or was removed).
    pub fn bot_absent_since(&self, bot: &BotId, ttl: Duration) -> Option<i64> {
        self.bot_presence
            .get(bot)
            .map(|p| p.updated_at.saturating_add(millis(ttl)))
    }

    /// The bot of a team (the lowest id, should there be several).
    pub fn bot_of_team(&self, team: &TeamId) -> Option<&BotAccount> {
        self.bots
            .values()
            .filter(|b| &b.team == team)
            .min_by(|a, b| a.id.cmp(&b.id))
    }

    /// Conversations counted against an agent.
    pub fn load_of(&self, agent: &AgentId) -> usize {
        self.loads.get(agent).map_or(0, |l| l.conversations.len())
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn decode_logged<T: serde::de::DeserializeOwned>(entry: &Entry) -> Option<T> {
    match decode(&entry.value) {
        Ok(value) => Some(value),
        Err(err) => {
            tracing::warn!(error = %err, bucket = %entry.bucket, key = %entry.key, "undecodable kv entry");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_protocol::payloads::{LoadEntry, Participant};

    fn state(id: &str, status: ConversationStatus, assigned_at: Option<i64>) -> ConversationState {
        let mut state = ConversationState::opened(
            ConversationId::new(id).unwrap(),
            Participant::system("v"),
            None,
            0,
        );
        state.status = status;
        state.assigned_at = assigned_at;
        state
    }

    #[test]
    fn finished_conversations_leave_the_mirror_but_not_their_slot_or_rate() {
        let mut mirror = Mirror::default();
        let id = ConversationId::new("c_1").unwrap();
        let agent = AgentId::new("a_1").unwrap();
        mirror.keep(
            id.clone(),
            state("c_1", ConversationStatus::Assigned, Some(5)),
        );
        mirror
            .loads
            .entry(agent.clone())
            .or_default()
            .conversations
            .push(LoadEntry {
                conversation_id: id.clone(),
                claimed_at: 5,
            });
        mirror.keep(
            id.clone(),
            state("c_1", ConversationStatus::Closed, Some(5)),
        );
        assert!(!mirror.conversations.contains_key(&id));
        // Its slot is still claimed: remembered as finished.
        mirror.prune_finished();
        assert!(mirror.finished.contains(&id));
        // The slot given back: forgotten.
        mirror.loads.clear();
        mirror.prune_finished();
        assert!(mirror.finished.is_empty());
        // The assignment still counts for wait estimates.
        assert_eq!(mirror.assignments.get(&id), Some(&(None, 5)));

        // A closed conversation that still owes events stays until written.
        let mut owing = state("c_2", ConversationStatus::Closed, None);
        owing.owe(
            Participant::system("edge"),
            switchboard_protocol::payloads::ConversationEvent::Closed {},
            None,
        );
        mirror.keep(owing.id.clone(), owing);
        assert!(mirror
            .conversations
            .contains_key(&ConversationId::new("c_2").unwrap()));
    }

    #[test]
    fn presences_past_their_time_are_forgotten() {
        let mut mirror = Mirror::default();
        let ttl = Duration::from_secs(30);
        let agent = AgentId::new("a_1").unwrap();
        for (key, updated_at) in [("a_1.live", 90_000), ("a_1.gone", 50_000)] {
            mirror.presence.insert(
                key.to_owned(),
                Presence {
                    agent_id: agent.clone(),
                    status: AgentStatus::Online,
                    edge_id: "e".into(),
                    updated_at,
                },
            );
        }
        mirror.prune(100_000, ttl);
        let left: Vec<&String> = mirror.presence.keys().collect();
        assert_eq!(left, ["a_1.live"]);
        assert_eq!(mirror.status(&agent, 100_000, ttl), AgentStatus::Online);
    }
}
