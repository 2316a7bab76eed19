//! Nobody online: a visitor leaves a message, the conversation waits as
//! `missed` (listed in the `missed` bucket, invisible to the router), and
//! any agent picks it up later, which puts it in the queue for them.

use futures::TryStreamExt;
use switchboard_bus::kv::{self, Decision};
use switchboard_bus::{outbox, BusError};
use switchboard_protocol::frames::{ErrorCode, ServerFrame};
use switchboard_protocol::ids::ConversationId;
use switchboard_protocol::payloads::{
    ConversationEvent, ConversationState, ConversationStatus, MissedEntry,
};
use switchboard_protocol::time::now_ms;

use crate::auth::Identity;
use crate::handlers::{
    ack, append_message, claim_conversation, find_sent, follow, open_conversations, text_allowed,
    CatchUp, Claim, Handled, Opening, Refusal,
};
use crate::limits::valid_client_id;
use crate::session::Session;

/// Characters of a missed message shown in the agents' list.
const PREVIEW_CHARS: usize = 140;
/// Priority of a picked-up conversation: ahead of the ordinary queue.
const PICKED_UP_PRIORITY: i32 = 100;

/// `leave_message`: the visitor's waiting conversation (or a new one)
/// becomes a missed one holding their message.
///
/// Safe to retry: the conversation turns `missed` and owes its
/// `left_message` event in one compare-and-set (a retry finds it missed
/// and owes nothing more); the agents' list entry is written before that
/// (a conversation is never missed without being listed; an entry whose
/// conversation did not turn missed is refused at pick-up); the message is
/// stored under the same `client_id` (`left-<conversation>` unless the
/// client names one), found again on a retry.
pub async fn leave_message(
    session: &mut Session,
    text: String,
    name: Option<String>,
    email: Option<String>,
    client_id: Option<String>,
) -> Handled {
    let Identity::Visitor { id: visitor, .. } = session.identity.clone() else {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "only visitors leave messages",
        ));
    };
    text_allowed(session, &text)?;
    let name = name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
    let email = email.map(|e| e.trim().to_owned()).filter(|e| !e.is_empty());
    if name.as_deref().is_some_and(|n| n.chars().count() > 80)
        || email
            .as_deref()
            .is_some_and(|e| e.len() > 254 || !e.contains('@'))
    {
        return Err(Refusal::new(ErrorCode::BadRequest, "invalid name or email"));
    }
    if client_id.as_deref().is_some_and(|c| !valid_client_id(c)) {
        return Err(Refusal::new(ErrorCode::BadRequest, "invalid client_id"));
    }
    let backbone = session.state.backbone.clone();
    let sender = session.identity.participant();
    let mut listed = sender.clone();
    if let Some(name) = &name {
        listed.name = name.clone();
    }
    let left = ConversationEvent::LeftMessage {
        name: name.clone(),
        email: email.clone(),
    };
    let entry = |conversation: &ConversationId| MissedEntry {
        conversation_id: conversation.clone(),
        visitor: listed.clone(),
        email: email.clone(),
        preview: text.chars().take(PREVIEW_CHARS).collect(),
        left_at: now_ms(),
    };
    let (conversation, created) = match open_conversations(session).await?.pop() {
        Some(state) => {
            // With an agent: refused before it is listed (every agent's
            // missed list would show it for a moment). The compare-and-set
            // below decides on what is current.
            if !matches!(
                state.status,
                ConversationStatus::Queued | ConversationStatus::Missed
            ) {
                return Err(with_an_agent());
            }
            kv::put(&backbone.missed, state.id.as_str(), &entry(&state.id)).await?;
            let (turned, written) = kv::cas_versioned(
                &backbone.conversations,
                state.id.as_str(),
                |current: Option<&ConversationState>| match current {
                    Some(current) if current.status == ConversationStatus::Queued => {
                        let mut missed = current.clone();
                        missed.status = ConversationStatus::Missed;
                        missed.announced_position = None;
                        missed.owe(sender.clone(), left.clone(), None);
                        Decision::Write(missed, Ok(()))
                    }
                    // Already missed: a retry, nothing more is owed.
                    Some(current) if current.status == ConversationStatus::Missed => {
                        Decision::Keep(Ok(()))
                    }
                    _ => Decision::Keep(Err(())),
                },
            )
            .await?;
            if turned.is_err() {
                // Listed for nothing: an agent is with the visitor now.
                if let Err(err) = backbone.missed.delete(state.id.as_str()).await {
                    tracing::warn!(error = %err, conversation = %state.id, "remove missed entry");
                }
                return Err(with_an_agent());
            }
            if let Some(written) = written {
                outbox::flush_from(&backbone, &state.id, written).await?;
            }
            (state.id, false)
        }
        None => {
            let opening = Opening {
                status: ConversationStatus::Missed,
                owed: Some((sender.clone(), left.clone())),
            };
            let (conversation, claim) =
                claim_conversation(session, &visitor, None, opening).await?;
            if claim == Claim::Joined {
                // Another tab is opening a conversation at this very
                // moment: the message goes there, on the client's retry.
                return Err(Refusal::new(
                    ErrorCode::Unavailable,
                    "your conversation is being opened in another tab, try again",
                ));
            }
            kv::put(
                &backbone.missed,
                conversation.as_str(),
                &entry(&conversation),
            )
            .await?;
            (conversation, true)
        }
    };
    let last_seq = backbone.log.last_seq(&conversation).await?;
    session
        .outbox
        .frame(&ServerFrame::Started {
            conversation_id: conversation.clone(),
            state: ConversationStatus::Missed.as_str().to_owned(),
            last_seq,
            created,
        })
        .await;
    // From what `started` said it held: nothing stored meanwhile skipped.
    let mode = if created {
        CatchUp::All
    } else {
        CatchUp::Listed(last_seq)
    };
    follow(session, &conversation, mode).await?;
    // Each message left is its own unless the client names it: a second
    // one must not be taken for a retry of the first.
    let client_id = client_id.unwrap_or_else(|| format!("left-{conversation}-{last_seq}"));
    if let Some(original) = find_sent(session, &conversation, &client_id).await? {
        return ack(session, &client_id, &original).await;
    }
    append_message(session, &conversation, &client_id, text).await?;
    tracing::info!(%conversation, "message left while nobody was online");
    Ok(())
}

/// Missed conversations listed per page by default, and at most.
const DEFAULT_MISSED_PAGE: u32 = 50;
const MAX_MISSED_PAGE: u32 = 100;

/// `list_missed`: a page of the missed conversations, oldest first (by
/// conversation id, which sorts by creation), after `after`.
pub async fn list(
    session: &mut Session,
    after: Option<ConversationId>,
    limit: Option<u32>,
) -> Handled {
    if !matches!(session.identity, Identity::Agent { .. }) {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "only agents see missed conversations",
        ));
    }
    let limit = limit.unwrap_or(DEFAULT_MISSED_PAGE);
    if limit == 0 || limit > MAX_MISSED_PAGE {
        return Err(Refusal::new(
            ErrorCode::BadRequest,
            format!("limit must be between 1 and {MAX_MISSED_PAGE}"),
        ));
    }
    let store = &session.state.backbone.missed;
    let mut keys: Vec<String> = match store.keys().await {
        Ok(keys) => keys
            .try_collect()
            .await
            .map_err(|e| BusError::nats("list missed conversations", e))?,
        Err(e) => return Err(BusError::nats("list missed conversations", e).into()),
    };
    keys.sort_unstable();
    if let Some(after) = &after {
        keys.retain(|k| k.as_str() > after.as_str());
    }
    let page = usize::try_from(limit).unwrap_or(usize::MAX);
    let has_more = keys.len() > page;
    let mut entries = Vec::with_capacity(page.min(keys.len()));
    for key in keys.iter().take(page) {
        if let Some(entry) = kv::get::<MissedEntry>(store, key).await? {
            entries.push(entry.value);
        }
    }
    session
        .outbox
        .frame(&ServerFrame::Missed {
            entries,
            has_more,
            asked: true,
        })
        .await;
    Ok(())
}

/// `pick_up`: an agent takes a missed conversation; it joins the queue
/// ahead of everything, for that agent.
pub async fn pick_up(session: &mut Session, conversation: &ConversationId) -> Handled {
    let Identity::Agent { id: agent, .. } = session.identity.clone() else {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "only agents pick up conversations",
        ));
    };
    let backbone = session.state.backbone.clone();
    let sender = session.identity.participant();
    let picked = kv::cas(
        &backbone.conversations,
        conversation.as_str(),
        |current: Option<&ConversationState>| match current {
            Some(state) if state.status == ConversationStatus::Missed => {
                let mut state = state.clone();
                state.status = ConversationStatus::Queued;
                state.queued_at = now_ms();
                state.priority = PICKED_UP_PRIORITY;
                state.target_agent = Some(agent.clone());
                state.target_only = true;
                state.owe(
                    sender.clone(),
                    ConversationEvent::PickedUp {
                        agent: sender.clone(),
                    },
                    None,
                );
                Decision::Write(state, true)
            }
            _ => Decision::Keep(false),
        },
    )
    .await?;
    if !picked {
        return Err(Refusal::new(
            ErrorCode::NotFound,
            "no such missed conversation (someone may have picked it up)",
        ));
    }
    if let Err(err) = backbone.missed.delete(conversation.as_str()).await {
        // A stale entry stays listed; picking it up answers `not_found`.
        tracing::warn!(error = %err, %conversation, "remove missed entry");
    }
    outbox::flush(&backbone, conversation).await?;
    tracing::info!(%conversation, agent_id = %agent, "missed conversation picked up");
    Ok(())
}

/// `leave_message` in a conversation an agent has.
fn with_an_agent() -> Refusal {
    Refusal::new(
        ErrorCode::Forbidden,
        "an agent is with you: send your message in the conversation",
    )
}
