//! Repairs what a crash or a lost race can leave half done: slots held for
//! conversations that are closed, or that were claimed but never assigned
//! to the agent holding the claim.

use std::time::Duration;

use switchboard_bus::{kv, Backbone, BusError};
use switchboard_protocol::ids::{AgentId, ConversationId};
use switchboard_protocol::payloads::{ConversationState, ConversationStatus};

use crate::assign::release;
use crate::mirror::Mirror;

/// A claim as the view saw it: released only if the bucket still has this
/// claim (or an older one), never a claim made since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub agent: AgentId,
    pub conversation: ConversationId,
    pub claimed_at: i64,
}

/// Claims a reconciliation may release, as this router's view sees them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct StaleClaims {
    /// Known not to hold: their conversation is finished, or was seen
    /// given to someone else (or to nobody) past the grace period.
    pub release: Vec<Claim>,
    /// Past the grace period, for conversations this view has not seen:
    /// released only if the bucket itself says the claim does not hold (a
    /// router whose view is partial never frees a slot under an
    /// assignment it has not loaded).
    pub unseen: Vec<Claim>,
}

/// The claims that may be stale.
pub fn stale_claims(mirror: &Mirror, now_ms: i64, grace: Duration) -> StaleClaims {
    let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    let mut stale = StaleClaims::default();
    for (agent, load) in &mirror.loads {
        for entry in &load.conversations {
            let state = mirror.conversations.get(&entry.conversation_id);
            let holds = state.is_some_and(|s| s.is_assigned_to(agent));
            let finished = mirror.finished.contains(&entry.conversation_id)
                || state.is_some_and(|s| {
                    matches!(
                        s.status,
                        ConversationStatus::Closed | ConversationStatus::Missed
                    )
                });
            let old = now_ms - entry.claimed_at > grace_ms;
            let claim = Claim {
                agent: agent.clone(),
                conversation: entry.conversation_id.clone(),
                claimed_at: entry.claimed_at,
            };
            // A closed conversation frees its slot at once; a claim that
            // never became an assignment only after the grace period (its
            // router may still be between the two steps).
            if holds {
                continue;
            } else if finished || (old && state.is_some()) {
                stale.release.push(claim);
            } else if old {
                stale.unseen.push(claim);
            }
        }
    }
    stale
}

/// Owed events older than this are written by the reconciler (younger ones
/// are being written by whoever made the change).
const OWED_GRACE_MS: i64 = 3_000;

/// Writes the events that state changes owe to the log, when whoever made
/// the change did not (it died, or lost NATS in between). A conversation
/// that cannot be flushed now is logged and left for the next pass: it
/// never holds up the others.
pub async fn flush_owed(backbone: &Backbone, mirror: &Mirror, now_ms: i64) -> usize {
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
    let mut written = 0;
    for conversation in &owing {
        match switchboard_bus::outbox::flush(backbone, conversation).await {
            Ok(()) => {
                written += 1;
                tracing::info!(conversation_id = %conversation, "owed events written");
            }
            Err(err) => {
                tracing::warn!(error = %err, conversation_id = %conversation, "writing owed events failed");
            }
        }
    }
    written
}

/// Releases every stale claim; a claim on a conversation this view has not
/// seen only once the bucket confirms it does not hold.
///
/// # Errors
/// The first NATS error.
pub async fn run_once(
    backbone: &Backbone,
    mirror: &Mirror,
    now_ms: i64,
    grace: Duration,
) -> Result<usize, BusError> {
    let StaleClaims {
        release: known,
        unseen,
    } = stale_claims(mirror, now_ms, grace);
    let mut released = 0;
    // A view may be behind the bucket: a claim renewed since (the
    // conversation reopened and claimed again) is newer than the one seen,
    // and stays.
    for claim in &known {
        let Claim {
            agent,
            conversation,
            claimed_at,
        } = claim;
        release(backbone, agent, conversation, *claimed_at).await?;
        released += 1;
        tracing::info!(agent_id = %agent, conversation_id = %conversation, "slot released");
    }
    for claim in &unseen {
        let Claim {
            agent,
            conversation,
            claimed_at,
        } = claim;
        let state =
            kv::get::<ConversationState>(&backbone.conversations, conversation.as_str()).await?;
        if state.is_some_and(|s| s.value.is_assigned_to(agent)) {
            continue;
        }
        release(backbone, agent, conversation, *claimed_at).await?;
        released += 1;
        tracing::info!(agent_id = %agent, conversation_id = %conversation, "slot of an unseen conversation released");
    }
    Ok(released)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_protocol::payloads::{LoadEntry, Participant};

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
        claim(&mut mirror, "a_1", "c_old_unseen", 0);
        let stale = stale_claims(&mirror, 100_000, grace);
        let names = |claims: &[Claim]| {
            let mut names: Vec<String> =
                claims.iter().map(|c| c.conversation.to_string()).collect();
            names.sort();
            names
        };
        assert_eq!(names(&stale.release), ["c_closed", "c_orphan"]);
        // An old claim on a conversation this view has not loaded is only
        // a candidate, checked against the bucket before it is released.
        assert_eq!(names(&stale.unseen), ["c_old_unseen"]);
    }
}
