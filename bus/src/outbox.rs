//! The events a conversation's state owes to its log.
//!
//! A state change (assigned, requeued, closed, …) and its event cannot be
//! written atomically: they live in a KV bucket and a stream. So the change
//! writes the event into the state itself (`ConversationState::pending`, by
//! compare-and-set with the change), then [`flush`] appends the owed events
//! in order, with their keys as `Nats-Msg-Id` (writing one twice stores it
//! once), and removes them. Whoever comes next — the same process, or a
//! router's reconciler after a crash in between — flushes what is left.

use switchboard_protocol::ids::ConversationId;
use switchboard_protocol::payloads::{
    encode, AgentNotice, BotNotice, ConversationEvent, ConversationState, PendingEvent, RecordBody,
};
use switchboard_protocol::subjects;
use switchboard_protocol::time::now_ms;

use crate::kv::{self, Decision};
use crate::{Backbone, BusError};

/// Writes every event the conversation owes to its log, oldest first, and
/// then removes them from its state. Safe to run concurrently and again.
///
/// # Errors
/// NATS errors; what was not written stays owed.
pub async fn flush(backbone: &Backbone, conversation: &ConversationId) -> Result<(), BusError> {
    let Some(state) =
        kv::get::<ConversationState>(&backbone.conversations, conversation.as_str()).await?
    else {
        return Ok(());
    };
    flush_from(backbone, conversation, state).await
}

/// [`flush`] from a state just written (and its revision, from
/// [`kv::cas_versioned`]): no read before the appends, and the owed events
/// are removed by a write at that revision when nobody wrote since.
///
/// # Errors
/// NATS errors; what was not written stays owed.
pub async fn flush_from(
    backbone: &Backbone,
    conversation: &ConversationId,
    state: kv::Versioned<ConversationState>,
) -> Result<(), BusError> {
    flush_from_seen(backbone, conversation, state)
        .await
        .map(|_| ())
}

/// [`flush_from`], also returning the state it left and that state's
/// bytes and revision when its own write removed the owed events (`None`
/// when someone wrote since, or nothing was owed), for a caller that
/// compares-and-sets the key again from there.
///
/// # Errors
/// As [`flush_from`].
pub async fn flush_from_seen(
    backbone: &Backbone,
    conversation: &ConversationId,
    state: kv::Versioned<ConversationState>,
) -> Result<Option<kv::Seen>, BusError> {
    let owed: Vec<PendingEvent> = state.value.pending.clone();
    if owed.is_empty() {
        return Ok(None);
    }
    // Inside the stream's duplicate window, the key alone keeps a second
    // write out; past (half of) it, the log is looked at first.
    let window = i64::try_from(backbone.log.duplicate_window().as_millis()).unwrap_or(i64::MAX);
    let now = now_ms();
    for pending in &owed {
        let written_before = now - pending.at > window / 2
            && backbone
                .log
                .find_keyed(conversation, &pending.key, pending.at)
                .await?
                .is_some();
        if written_before {
            tracing::info!(%conversation, key = %pending.key, "owed event was written already");
        } else {
            backbone
                .log
                .append(
                    conversation,
                    pending.sender.clone(),
                    RecordBody::Event {
                        event: pending.event.clone(),
                    },
                    Some(&pending.key),
                )
                .await?;
        }
        // Sent again when in doubt: the agent's edge checks the state, and
        // a notice twice is better than none.
        if let Some(agent) = &pending.notify_agent {
            let handed_off = match &pending.event {
                ConversationEvent::Assigned { handed_off, .. } => handed_off.clone(),
                _ => None,
            };
            let notice = AgentNotice::Assigned {
                conversation_id: conversation.clone(),
                visitor: state.value.visitor.clone(),
                handed_off,
            };
            let payload = encode(&notice).map_err(|e| BusError::decode("agent notice", e))?;
            backbone
                .client
                .publish(subjects::agent_inbox(agent), payload.into())
                .await
                .map_err(|e| BusError::nats("notify agent", e))?;
        }
        if let Some(bot) = &pending.notify_bot {
            let notice = match &pending.event {
                ConversationEvent::HandedOff { reason, .. } => BotNotice::Released {
                    conversation_id: conversation.clone(),
                    reason: reason.clone(),
                },
                _ => BotNotice::Assigned {
                    conversation_id: conversation.clone(),
                    visitor: state.value.visitor.clone(),
                    team: state.value.team.clone(),
                },
            };
            let payload = encode(&notice).map_err(|e| BusError::decode("bot notice", e))?;
            backbone
                .client
                .publish(subjects::bot_inbox(bot), payload.into())
                .await
                .map_err(|e| BusError::nats("notify bot", e))?;
        }
    }
    let written: Vec<&str> = owed.iter().map(|p| p.key.as_str()).collect();
    let mut unchanged = state.value;
    unchanged
        .pending
        .retain(|p| !written.contains(&p.key.as_str()));
    if let Ok(bytes) = encode(&unchanged) {
        let bytes: bytes::Bytes = bytes.into();
        let written = kv::update(
            &backbone.conversations,
            conversation.as_str(),
            bytes.clone(),
            state.revision,
        )
        .await?;
        if let Some(revision) = written {
            return Ok(Some(kv::Seen { revision, bytes }));
        }
        // Written since: remove them from whatever it is now.
    }
    kv::cas(
        &backbone.conversations,
        conversation.as_str(),
        |current: Option<&ConversationState>| match current {
            Some(current)
                if current
                    .pending
                    .iter()
                    .any(|p| written.contains(&p.key.as_str())) =>
            {
                let mut state = current.clone();
                state.pending.retain(|p| !written.contains(&p.key.as_str()));
                Decision::Write(state, ())
            }
            _ => Decision::Keep(()),
        },
    )
    .await?;
    Ok(None)
}
