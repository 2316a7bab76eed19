//! Repairs what a crash or a lost race can leave half done: slots held for
//! conversations that are closed, or that were claimed but never assigned
//! to the agent holding the claim.

use std::time::Duration;

use switchboard_bus::{Backbone, BusError};
use switchboard_protocol::ids::{AgentId, ConversationId};
use switchboard_protocol::payloads::ConversationStatus;

use crate::assign::release;
use crate::mirror::Mirror;

/// Claims to release: `(agent, conversation)`.
pub fn stale_claims(
    mirror: &Mirror,
    now_ms: i64,
    grace: Duration,
) -> Vec<(AgentId, ConversationId)> {
    let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    let mut stale = Vec::new();
    for (agent, load) in &mirror.loads {
        for entry in &load.conversations {
            let state = mirror.conversations.get(&entry.conversation_id);
            let holds = state.is_some_and(|s| s.is_assigned_to(agent));
            let finished = match state {
                None => true,
                Some(s) => s.status == ConversationStatus::Closed,
            };
            let old = now_ms - entry.claimed_at > grace_ms;
            // A closed conversation frees its slot at once; a claim that
            // never became an assignment only after the grace period (its
            // router may still be between the two steps).
            if !holds && (finished || old) {
                stale.push((agent.clone(), entry.conversation_id.clone()));
            }
        }
    }
    stale
}

/// Releases every stale claim.
///
/// # Errors
/// The first NATS error.
pub async fn run_once(
    backbone: &Backbone,
    mirror: &Mirror,
    now_ms: i64,
    grace: Duration,
) -> Result<usize, BusError> {
    let stale = stale_claims(mirror, now_ms, grace);
    for (agent, conversation) in &stale {
        release(backbone, agent, conversation).await?;
        tracing::info!(agent_id = %agent, conversation_id = %conversation, "slot released");
    }
    Ok(stale.len())
}
