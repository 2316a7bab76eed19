//! Closing conversations nobody writes in any more (`router.idle_close`,
//! off by default): an assigned conversation whose last record is older
//! than the setting is closed by the router, with a `closed` event whose
//! `by` is `{"role": "system", "id": "idle_close"}`, and its agent's slot
//! is given back.
//!
//! The log is read only when a conversation may have become idle: after a
//! look at its last record, the next look is when that record will be
//! `idle_close` old.

use std::collections::HashMap;
use std::time::Duration;

use switchboard_bus::kv::{self, Decision};
use switchboard_bus::{outbox, slots, Backbone, BusError};
use switchboard_protocol::ids::{AgentId, ConversationId};
use switchboard_protocol::payloads::{
    ConversationEvent, ConversationState, ConversationStatus, Participant, Role,
};

use crate::mirror::Mirror;

/// The `by` of a `closed` event of an idle conversation.
pub const IDLE_CLOSER: &str = "idle_close";

/// Conversations at most looked at (in the log) per pass.
const LOOKS_PER_PASS: usize = 64;

/// When each assigned conversation is next worth a look (unix ms).
#[derive(Debug, Default)]
pub struct IdleWatch {
    next_look: HashMap<ConversationId, i64>,
}

/// Closes the assigned conversations idle for longer than `idle`.
///
/// # Errors
/// NATS errors (the rest of the pass goes on; the next pass retries).
pub async fn close_idle(
    backbone: &Backbone,
    mirror: &Mirror,
    watch: &mut IdleWatch,
    now: i64,
    idle: Duration,
) -> Result<(), BusError> {
    let idle_ms = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX);
    watch.next_look.retain(|id, _| {
        mirror
            .conversations
            .get(id)
            .is_some_and(|c| c.status == ConversationStatus::Assigned)
    });
    let due: Vec<&ConversationState> = mirror
        .conversations
        .values()
        .filter(|c| c.status == ConversationStatus::Assigned)
        // Nothing can be older than the assignment itself.
        .filter(|c| c.assigned_at.is_none_or(|at| now - at > idle_ms))
        .filter(|c| watch.next_look.get(&c.id).is_none_or(|at| *at <= now))
        .take(LOOKS_PER_PASS)
        .collect();
    for state in due {
        let last_at = match backbone.log.last(&state.id).await? {
            Some((_, record)) => record.sent_at,
            None => state.assigned_at.unwrap_or(state.created_at),
        };
        if now - last_at <= idle_ms {
            watch
                .next_look
                .insert(state.id.clone(), last_at + idle_ms + 1);
            continue;
        }
        watch.next_look.remove(&state.id);
        close(backbone, &state.id).await?;
    }
    Ok(())
}

/// Closes one conversation if it is still assigned, owing its `closed`
/// event, and frees its agent's slot.
async fn close(backbone: &Backbone, conversation: &ConversationId) -> Result<(), BusError> {
    let closer = Participant::system(IDLE_CLOSER);
    let closed_at = switchboard_protocol::time::now_ms();
    let (agent, written) = kv::cas_versioned(
        &backbone.conversations,
        conversation.as_str(),
        |current: Option<&ConversationState>| match current {
            Some(state) if state.status == ConversationStatus::Assigned => {
                let mut closed = state.clone();
                closed.status = ConversationStatus::Closed;
                closed.closed_at = Some(closed_at);
                closed.bot_wait = None;
                closed.owe(closer.clone(), ConversationEvent::Closed {}, None);
                Decision::Write(closed, state.agent.clone())
            }
            _ => Decision::Keep(None),
        },
    )
    .await?;
    let Some(written) = written else {
        return Ok(());
    };
    outbox::flush_from(backbone, conversation, written).await?;
    if let Some(agent) = agent
        .filter(|a| a.role == Role::Agent)
        .and_then(|a| AgentId::new(a.id).ok())
    {
        slots::release(backbone, &agent, conversation, closed_at).await?;
    }
    tracing::info!(%conversation, "idle conversation closed");
    Ok(())
}
