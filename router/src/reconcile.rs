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
            // Not seen (yet) is not finished: the conversation may be newer
            // than this router's view of it.
            let finished = mirror.finished.contains(&entry.conversation_id)
                || state.is_some_and(|s| {
                    matches!(
                        s.status,
                        ConversationStatus::Closed | ConversationStatus::Missed
                    )
                });
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

/// Owed events older than this are written by the reconciler (younger ones
/// are being written by whoever made the change).
const OWED_GRACE_MS: i64 = 3_000;

/// Writes the events that state changes owe to the log, when whoever made
/// the change did not (it died, or lost NATS in between).
///
/// # Errors
/// The first NATS error.
pub async fn flush_owed(
    backbone: &Backbone,
    mirror: &Mirror,
    now_ms: i64,
) -> Result<usize, BusError> {
    let owing: Vec<ConversationId> = mirror
        .conversations
        .values()
        .filter(|s| {
            s.pending
                .first()
                .is_some_and(|p| now_ms - p.at > OWED_GRACE_MS)
        })
        .map(|s| s.id.clone())
        .collect();
    for conversation in &owing {
        switchboard_bus::outbox::flush(backbone, conversation).await?;
        tracing::info!(conversation_id = %conversation, "owed events written");
    }
    Ok(owing.len())
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

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_protocol::payloads::{ConversationState, LoadEntry, Participant};

    fn claim(mirror: &mut Mirror, agent: &str, conversation: &str, at: i64) {
        mirror
            .loads
            .entry(AgentId::new(agent).unwrap())
            .or_default()
            .conversations
            .push(LoadEntry {
                conversation_id: ConversationId::new(conversation).unwrap(),
                claimed_at: at,
            });
    }

    fn conversation(
        mirror: &mut Mirror,
        id: &str,
        status: ConversationStatus,
        agent: Option<&str>,
    ) {
        let mut state = ConversationState::opened(
            ConversationId::new(id).unwrap(),
            Participant::system("v"),
            None,
            0,
        );
        state.status = status;
        state.agent = agent.map(|a| Participant::agent(&AgentId::new(a).unwrap(), a));
        mirror.keep(state.id.clone(), state);
    }

    #[test]
    fn releases_closed_at_once_orphans_after_grace_and_never_unknown_fresh_ones() {
        let grace = Duration::from_secs(10);
        let mut mirror = Mirror::default();
        conversation(
            &mut mirror,
            "c_held",
            ConversationStatus::Assigned,
            Some("a_1"),
        );
        conversation(
            &mut mirror,
            "c_closed",
            ConversationStatus::Closed,
            Some("a_1"),
        );
        conversation(&mut mirror, "c_orphan", ConversationStatus::Queued, None);
        claim(&mut mirror, "a_1", "c_held", 0);
        claim(&mut mirror, "a_1", "c_closed", 99_000);
        claim(&mut mirror, "a_1", "c_orphan", 0);
        claim(&mut mirror, "a_1", "c_fresh_orphan", 95_000);
        claim(&mut mirror, "a_1", "c_unseen", 99_000);
        let mut stale: Vec<String> = stale_claims(&mirror, 100_000, grace)
            .into_iter()
            .map(|(_, c)| c.to_string())
            .collect();
        stale.sort();
        assert_eq!(stale, ["c_closed", "c_orphan"]);
    }
}
