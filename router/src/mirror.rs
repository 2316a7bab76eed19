//! The router's view of the KV buckets. It is only ever derived from the
//! buckets (via their watches) and from this router's own successful
//! writes, so it can be thrown away and rebuilt at any time.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::kv::{Entry, Operation};
use switchboard_protocol::ids::{AgentId, ConversationId};
use switchboard_protocol::payloads::{
    decode, AgentAccount, AgentLoad, AgentStatus, ConversationState, Presence,
};
use switchboard_protocol::subjects::{buckets, parse_presence_key};

/// What the router knows of the routing state.
#[derive(Debug, Default)]
pub struct Mirror {
    pub conversations: HashMap<ConversationId, ConversationState>,
    pub presence: HashMap<String, Presence>,
    pub agents: HashMap<AgentId, AgentAccount>,
    pub loads: HashMap<AgentId, AgentLoad>,
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
                } else if let Some(state) = decode_logged::<ConversationState>(entry) {
                    self.conversations.insert(id, state);
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
                } else if let Some(load) = decode_logged::<AgentLoad>(entry) {
                    self.loads.insert(id, load);
                }
            }
            other => tracing::warn!(bucket = other, "entry of an unexpected bucket"),
        }
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

    /// Conversations counted against an agent.
    pub fn load_of(&self, agent: &AgentId) -> usize {
        self.loads.get(agent).map_or(0, |l| l.conversations.len())
    }
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
