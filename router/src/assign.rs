//! One assignment, in two compare-and-set steps:
//!
//! 1. claim a slot in the agent's `load` entry (only if under capacity),
//! 2. move the conversation from `queued` to `assigned` (only if still queued).
//!
//! If step 2 loses (another router assigned it, the visitor left), the
//! claim is released. If this router dies between the steps, the
//! reconciler releases the orphaned claim after a grace period. Only after
//! both steps are the `assigned` event stored and the agent's edges told.

use switchboard_bus::kv::{self, Decision};
use switchboard_bus::{Backbone, BusError};
use switchboard_protocol::ids::{AgentId, ConversationId};
use switchboard_protocol::payloads::{
    encode, AgentAccount, AgentLoad, AgentNotice, AssignmentReason, ConversationEvent,
    ConversationState, ConversationStatus, LoadEntry, Participant, RecordBody,
};
use switchboard_protocol::subjects;
use switchboard_protocol::time::now_ms;

/// The name the router signs its events with.
pub const ROUTER: &str = "router";

/// How an attempt ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Assigned,
    /// The agent had no free slot (by the time we wrote).
    AgentFull,
    /// The conversation was no longer waiting.
    NotQueued,
}

/// Tries to give `conversation` to `agent`.
///
/// # Errors
/// NATS errors; the KV state stays consistent (at worst a claim that the
/// reconciler releases).
#[tracing::instrument(name = "router.assign", skip_all, fields(conversation_id = %conversation, agent_id = %agent.id))]
pub async fn assign(
    backbone: &Backbone,
    conversation: &ConversationId,
    agent: &AgentAccount,
    capacity: u32,
    reason: AssignmentReason,
) -> Result<Outcome, BusError> {
    let now = now_ms();
    let claimed = kv::cas(
        &backbone.load,
        agent.id.as_str(),
        |current: Option<&AgentLoad>| {
            let mut load = current.cloned().unwrap_or_default();
            if load
                .conversations
                .iter()
                .any(|e| &e.conversation_id == conversation)
            {
                return Decision::Keep(true);
            }
            if load.conversations.len() >= capacity as usize {
                return Decision::Keep(false);
            }
            load.conversations.push(LoadEntry {
                conversation_id: conversation.clone(),
                claimed_at: now,
            });
            load.last_assigned_at = now;
            Decision::Write(load, true)
        },
    )
    .await?;
    if !claimed {
        return Ok(Outcome::AgentFull);
    }
    let participant = Participant::agent(&agent.id, agent.name.clone());
    let assigned = kv::cas(
        &backbone.conversations,
        conversation.as_str(),
        |current: Option<&ConversationState>| match current {
            Some(state) if state.status == ConversationStatus::Queued => {
                let mut state = state.clone();
                state.status = ConversationStatus::Assigned;
                state.agent = Some(participant.clone());
                state.assigned_at = Some(now);
                state.first_response_at = None;
                state.target_agent = None;
                Decision::Write(state.clone(), Some(state))
            }
            _ => Decision::Keep(None),
        },
    )
    .await?;
    let Some(state) = assigned else {
        release(backbone, &agent.id, conversation).await?;
        return Ok(Outcome::NotQueued);
    };
    backbone
        .log
        .append(
            conversation,
            Participant::system(ROUTER),
            RecordBody::Event {
                event: ConversationEvent::Assigned {
                    agent: participant,
                    reason: Some(reason),
                },
            },
            Some(&format!("{conversation}.assigned.{}.{now}", agent.id)),
        )
        .await?;
    let notice = AgentNotice::Assigned {
        conversation_id: conversation.clone(),
        visitor: state.visitor.clone(),
    };
    let payload = encode(&notice).map_err(|e| BusError::decode("agent notice", e))?;
    backbone
        .client
        .publish(subjects::agent_inbox(&agent.id), payload.into())
        .await
        .map_err(|e| BusError::nats("notify agent", e))?;
    tracing::info!("agent assigned");
    Ok(Outcome::Assigned)
}

/// Removes a conversation from an agent's load (idempotent).
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

/// Puts a conversation whose agent is gone back in the queue, at its
/// original place (`queued_at` is kept), and tells the visitor. With
/// `exclude`, that agent is not given it again.
///
/// # Errors
/// NATS errors.
#[tracing::instrument(name = "router.requeue", skip_all, fields(conversation_id = %conversation, agent_id = %agent))]
pub async fn requeue(
    backbone: &Backbone,
    conversation: &ConversationId,
    agent: &AgentId,
    reason: &str,
    exclude: bool,
) -> Result<bool, BusError> {
    let requeued = kv::cas(
        &backbone.conversations,
        conversation.as_str(),
        |current: Option<&ConversationState>| match current {
            Some(state) if state.is_assigned_to(agent) => {
                let mut state = state.clone();
                let left = state.agent.take();
                state.status = ConversationStatus::Queued;
                state.assigned_at = None;
                state.first_response_at = None;
                state.announced_position = None;
                state.exclude_agent = exclude.then(|| agent.clone());
                Decision::Write(state, left)
            }
            _ => Decision::Keep(None),
        },
    )
    .await?;
    let Some(left) = requeued else {
        return Ok(false);
    };
    backbone
        .log
        .append(
            conversation,
            Participant::system(ROUTER),
            RecordBody::Event {
                event: ConversationEvent::AgentLeft {
                    agent: left,
                    reason: reason.to_owned(),
                },
            },
            None,
        )
        .await?;
    release(backbone, agent, conversation).await?;
    tracing::info!(reason, "conversation requeued");
    Ok(true)
}

/// Tells a waiting visitor their place in the queue, once per change.
///
/// # Errors
/// NATS errors.
pub async fn announce_position(
    backbone: &Backbone,
    conversation: &ConversationId,
    position: u32,
    estimated_wait_secs: Option<u32>,
    agents_online: u32,
) -> Result<(), BusError> {
    let changed = kv::cas(
        &backbone.conversations,
        conversation.as_str(),
        |current: Option<&ConversationState>| match current {
            Some(state)
                if state.status == ConversationStatus::Queued
                    && state.announced_position != Some(position) =>
            {
                let mut state = state.clone();
                state.announced_position = Some(position);
                Decision::Write(state, true)
            }
            _ => Decision::Keep(false),
        },
    )
    .await?;
    if changed {
        backbone
            .log
            .append(
                conversation,
                Participant::system(ROUTER),
                RecordBody::Event {
                    event: ConversationEvent::Queued {
                        position,
                        estimated_wait_secs,
                        agents_online: Some(agents_online),
                    },
                },
                None,
            )
            .await?;
        tracing::info!(conversation_id = %conversation, position, "queue position announced");
    }
    Ok(())
}
