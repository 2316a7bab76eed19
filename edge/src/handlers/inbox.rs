//! What agents do in their inbox besides answering: private notes in a
//! conversation, and taking a waiting conversation from the queue.

use super::*;

/// Priority of a conversation an agent took from the queue: ahead of the
/// ordinary queue (an admin's `queue assign` is 1000).
const TAKEN_PRIORITY: i32 = 500;

/// `note`: a private note in a conversation the agent has (or had), for
/// agents only: stored as a `note` event, which visitors receive without
/// its text. Answered with `ack`, and deduplicated by `client_id` like a
/// message.
pub(super) async fn note(
    session: &mut Session,
    conversation: &ConversationId,
    client_id: &str,
    text: String,
) -> Handled {
    let Identity::Agent { .. } = &session.identity else {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "only agents write notes",
        ));
    };
    if !valid_client_id(client_id) {
        return Err(Refusal::new(
            ErrorCode::BadRequest,
            "client_id must be 1-64 visible ASCII characters",
        ));
    }
    text_allowed(session, &text)?;
    authorize(session, conversation, false).await?;
    if !session
        .state
        .hub
        .is_following(conversation, session.connection)
    {
        follow(session, conversation, CatchUp::Live).await?;
    }
    let sender = session.identity.participant();
    let dedupe = format!("{conversation}.note.{}.{client_id}", sender.id);
    let appended = session
        .state
        .backbone
        .log
        .append(
            conversation,
            sender,
            RecordBody::Event {
                event: ConversationEvent::Note { text: Some(text) },
            },
            Some(&dedupe),
        )
        .await?;
    tracing::info!(%conversation, "private note written");
    ack(session, client_id, &appended.record).await
}

/// `take`: the agent takes a waiting conversation; the router gives it to
/// them as soon as they have a free slot (a bot never gets it).
pub(super) async fn take(session: &mut Session, conversation: &ConversationId) -> Handled {
    let Identity::Agent { id: me, .. } = session.identity.clone() else {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "only agents take conversations",
        ));
    };
    let taken = kv::cas(
        &session.state.backbone.conversations,
        conversation.as_str(),
        |current: Option<&ConversationState>| match current {
            Some(state) if state.status == ConversationStatus::Queued => {
                let mut state = state.clone();
                state.target_agent = Some(me.clone());
                state.target_only = true;
                state.humans_only = true;
                state.priority = state.priority.max(TAKEN_PRIORITY);
                if state.exclude_agent.as_ref() == Some(&me) {
                    state.exclude_agent = None;
                }
                Decision::Write(state, true)
            }
            _ => Decision::Keep(false),
        },
    )
    .await?;
    if !taken {
        return Err(Refusal::new(
            ErrorCode::NotFound,
            "this conversation is no longer waiting",
        ));
    }
    tracing::info!(%conversation, agent_id = %me, "conversation taken from the queue");
    Ok(())
}
