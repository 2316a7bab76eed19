//! One assignment, in two compare-and-set steps:
//!
//! 1. claim a slot in the agent's `load` entry (only if under capacity),
//! 2. move the conversation from `queued` to `assigned` (only if still
//!    queued), owing the `assigned` event and the agent's notice to the log
//!    in the same write (see `switchboard_bus::outbox`).
//!
//! Both start from what the router's watches showed of the two keys
//! (`kv::cas_versioned_seen`): when the watches are current, neither key is
//! read first, and the writes at those revisions still refuse any state
//! that moved on since.
//!
//! If step 2 loses (another router assigned it, the visitor left), the
//! claim is released. If this router dies between the steps, the
//! reconciler releases the orphaned claim after a grace period; if it dies
//! after them, the reconciler writes the owed event.

use switchboard_bus::kv::{self, Decision, Seen};
use switchboard_bus::{outbox, Backbone, BusError};
use switchboard_protocol::ids::{AgentId, ConversationId};
use switchboard_protocol::payloads::{
    AgentAccount, AgentLoad, AssignmentReason, ConversationEvent, ConversationState,
    ConversationStatus, LoadEntry, Participant,
};
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

/// What the router's watches showed of the two keys an assignment writes;
/// after a successful claim, `load` is what this router wrote (the next
/// claim on the same agent starts from there, not from a watch that has
/// not shown it yet).
#[derive(Debug, Default)]
pub struct SeenKeys {
    pub load: Option<Seen>,
    pub conversation: Option<Seen>,
}

/// Tries to give `conversation` to `agent`.
///
/// # Errors
/// NATS errors; the KV state stays consistent (at worst a claim that the
/// reconciler releases, or an owed event it writes).
#[tracing::instrument(name = "router.assign", skip_all, fields(conversation_id = %conversation, agent_id = %agent.id))]
pub async fn assign(
    backbone: &Backbone,
    conversation: &ConversationId,
    agent: &AgentAccount,
    capacity: u32,
    reason: AssignmentReason,
    seen: &mut SeenKeys,
) -> Result<Outcome, BusError> {
    let now = now_ms();
    let started = std::time::Instant::now();
    let (claimed, claim) = kv::cas_versioned_seen(
        &backbone.load,
        agent.id.as_str(),
        seen.load.take(),
        |current: Option<&AgentLoad>| {
            let mut load = current.cloned().unwrap_or_default();
            if let Some(entry) = load
                .conversations
                .iter_mut()
                .find(|e| &e.conversation_id == conversation)
            {
                // Another router is giving it to this agent too: share the slot,
                // and renew it so the reconciler leaves it alone meanwhile.
                entry.claimed_at = now;
                return Decision::Write(load, true);
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
    if let Some(claim) = claim {
        // Encoding a value this process just encoded cannot fail.
        if let Ok(bytes) = switchboard_protocol::payloads::encode(&claim.value) {
            seen.load = Some(Seen {
                revision: claim.revision,
                bytes: bytes.into(),
            });
        }
    }
    let participant = Participant::agent(&agent.id, agent.name.clone());
    let mut queued_at = now;
    let (assigned, written) = kv::cas_versioned_seen(
        &backbone.conversations,
        conversation.as_str(),
        seen.conversation.take(),
        |current: Option<&ConversationState>| match current {
            Some(state) if state.status == ConversationStatus::Queued => {
                queued_at = state.queued_at;
                let mut state = state.clone();
                state.status = ConversationStatus::Assigned;
                state.agent = Some(participant.clone());
                state.assigned_at = Some(now);
                state.first_response_at = None;
                state.target_agent = None;
                state.target_only = false;
                // A human has it: no bot takes it from now on, and the
                // human is told of a bot's handoff before.
                state.humans_only = true;
                state.bot_wait = None;
                let handed_off = state.handoff.take();
                state.owe(
                    Participant::system(ROUTER),
                    ConversationEvent::Assigned {
                        agent: participant.clone(),
                        reason: Some(reason.clone()),
                        handed_off,
                    },
                    Some(agent.id.clone()),
                );
                Decision::Write(state, true)
            }
            _ => Decision::Keep(false),
        },
    )
    .await?;
    let Some(written) = written.filter(|_| assigned) else {
        release_unless_held(backbone, &agent.id, conversation, now).await?;
        return Ok(Outcome::NotQueued);
    };
    outbox::flush_from(backbone, conversation, written).await?;
    switchboard_metrics::router::router().assigned(started, now - queued_at);
    tracing::info!("agent assigned");
    Ok(Outcome::Assigned)
}

/// Gives back a slot claimed for a conversation that did not become this
/// agent's — unless it did anyway (another router sharing the claim gave it
/// to the same agent), or it is waiting again (someone may be claiming it
/// right now; the reconciler frees the slot after the grace period if not).
async fn release_unless_held(
    backbone: &Backbone,
    agent: &AgentId,
    conversation: &ConversationId,
    claimed_at: i64,
) -> Result<(), BusError> {
    let state =
        kv::get::<ConversationState>(&backbone.conversations, conversation.as_str()).await?;
    match state {
        Some(state)
            if state.value.is_assigned_to(agent)
                || state.value.status == ConversationStatus::Queued =>
        {
            Ok(())
        }
        _ => release(backbone, agent, conversation, claimed_at).await,
    }
}

pub use switchboard_bus::slots::release;

/// Why a conversation is taken back from its agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    /// The agent has been offline past the grace period.
    Offline,
    /// The agent did not answer within the team's first-reply deadline of
    /// the assignment made at `assigned_at`: taken back only if, in the
    /// state itself, that assignment still holds and has no answer (a
    /// router's view may lag behind a reply), and never given back to them.
    NoReply { assigned_at: i64 },
}

impl Requeue {
    /// The `reason` of the `agent_left` event.
    pub fn reason(self) -> &'static str {
        match self {
            Requeue::Offline => "offline",
            Requeue::NoReply { .. } => "no_reply",
        }
    }

    /// Its reason as counted.
    fn metric(self) -> switchboard_metrics::router::RequeueReason {
        match self {
            Requeue::Offline => switchboard_metrics::router::RequeueReason::Offline,
            Requeue::NoReply { .. } => switchboard_metrics::router::RequeueReason::NoReply,
        }
    }

    /// Whether the current state still calls for it.
    fn holds(self, state: &ConversationState, agent: &AgentId) -> bool {
        state.is_assigned_to(agent)
            && match self {
                Requeue::Offline => true,
                Requeue::NoReply { assigned_at } => {
                    state.first_response_at.is_none() && state.assigned_at == Some(assigned_at)
                }
            }
    }
}

/// Puts a conversation whose agent is gone back in the queue, at its
/// original place (`queued_at` is kept), and tells the visitor. After
/// [`Requeue::NoReply`], that agent is not given it again.
///
/// # Errors
/// NATS errors.
#[tracing::instrument(name = "router.requeue", skip_all, fields(conversation_id = %conversation, agent_id = %agent))]
pub async fn requeue(
    backbone: &Backbone,
    conversation: &ConversationId,
    agent: &AgentId,
    why: Requeue,
) -> Result<bool, BusError> {
    let requeued_at = now_ms();
    let (requeued, written) = kv::cas_versioned(
        &backbone.conversations,
        conversation.as_str(),
        |current: Option<&ConversationState>| match current {
            Some(state) if why.holds(state, agent) => {
                let mut state = state.clone();
                let left = state.agent.take();
                state.status = ConversationStatus::Queued;
                state.assigned_at = None;
                state.first_response_at = None;
                state.announced_position = None;
                state.exclude_agent = matches!(why, Requeue::NoReply { .. }).then(|| agent.clone());
                if let Some(left) = left {
                    state.owe(
                        Participant::system(ROUTER),
                        ConversationEvent::AgentLeft {
                            agent: left,
                            reason: why.reason().to_owned(),
                        },
                        None,
                    );
                }
                Decision::Write(state, true)
            }
            _ => Decision::Keep(false),
        },
    )
    .await?;
    let Some(written) = written.filter(|_| requeued) else {
        return Ok(false);
    };
    release(backbone, agent, conversation, requeued_at).await?;
    outbox::flush_from(backbone, conversation, written).await?;
    switchboard_metrics::router::router().requeued(why.metric());
    tracing::info!(reason = why.reason(), "conversation requeued");
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
    seen: Option<Seen>,
) -> Result<Option<Seen>, BusError> {
    let (changed, written) = kv::cas_versioned_seen(
        &backbone.conversations,
        conversation.as_str(),
        seen,
        |current: Option<&ConversationState>| match current {
            Some(state)
                if state.status == ConversationStatus::Queued
                    && state.announced_position != Some(position) =>
            {
                let mut state = state.clone();
                state.announced_position = Some(position);
                state.owe(
                    Participant::system(ROUTER),
                    ConversationEvent::Queued {
                        position,
                        estimated_wait_secs,
                        agents_online: Some(agents_online),
                    },
                    None,
                );
                Decision::Write(state, true)
            }
            _ => Decision::Keep(false),
        },
    )
    .await?;
    let Some(written) = written.filter(|_| changed) else {
        return Ok(None);
    };
    let left = outbox::flush_from_seen(backbone, conversation, written).await?;
    tracing::debug!(conversation_id = %conversation, position, "queue position announced");
    Ok(left)
}
