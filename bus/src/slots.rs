//! Agents' capacity slots (the `load` bucket), shared by the router, which
//! claims them, and whoever ends an assignment, which gives them back.

use switchboard_protocol::ids::{AgentId, ConversationId};
use switchboard_protocol::payloads::AgentLoad;

use crate::kv::{self, Decision};
use crate::{Backbone, BusError};

/// Removes a conversation from an agent's load (idempotent), if the agent's
/// claim on it was made at or before `claimed_by` (ms since the epoch):
/// the claim the caller knows of, or one older. Only for a conversation
/// that is no longer the agent's (closed, requeued, lost). A newer claim —
/// the conversation reopened and given to the same agent again while the
/// caller was on its way — is left alone: releasing it would let the agent
/// take one conversation more than their capacity.
///
/// # Errors
/// NATS errors.
pub async fn release(
    backbone: &Backbone,
    agent: &AgentId,
    conversation: &ConversationId,
    claimed_by: i64,
) -> Result<(), BusError> {
    kv::cas(
        &backbone.load,
        agent.as_str(),
        |current: Option<&AgentLoad>| {
            let Some(load) = current else {
                return Decision::Keep(());
            };
            if !load
                .conversations
                .iter()
                .any(|e| &e.conversation_id == conversation && e.claimed_at <= claimed_by)
            {
                return Decision::Keep(());
            }
            let mut load = load.clone();
            load.conversations
                .retain(|e| &e.conversation_id != conversation);
            Decision::Write(load, ())
        },
    )
    .await
}
