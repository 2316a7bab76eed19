//! Agents' capacity slots (the `load` bucket), shared by the router, which
//! claims them, and whoever ends an assignment, which gives them back.

use switchboard_protocol::ids::{AgentId, ConversationId};
use switchboard_protocol::payloads::AgentLoad;

use crate::kv::{self, Decision};
use crate::{Backbone, BusError};

/// Removes a conversation from an agent's load (idempotent). Only for a
/// conversation that is no longer the agent's (closed, requeued, lost).
///
/// # Errors
/// NATS errors.
pub async fn release(
    backbone: &Backbone,
    agent: &AgentId,
    conversation: &ConversationId,
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
                .any(|e| &e.conversation_id == conversation)
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
