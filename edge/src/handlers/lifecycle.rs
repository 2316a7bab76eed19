//! Handlers that change a conversation's life: opening (or reopening) it,
//! closing, transferring, rating, and the agent's status.

use super::*;

/// `start`: the visitor's open conversation, or a new one.
pub(super) async fn start(
    session: &mut Session,
    team: Option<TeamId>,
    text: Option<String>,
    client_id: Option<String>,
) -> Handled {
    let Identity::Visitor { id: visitor, .. } = session.identity.clone() else {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "only visitors start conversations",
        ));
    };
    if let Some(text) = &text {
        text_allowed(session, text)?;
    }
    if client_id.as_deref().is_some_and(|c| !valid_client_id(c)) {
        return Err(Refusal::new(ErrorCode::BadRequest, "invalid client_id"));
    }
    let backbone = session.state.backbone.clone();
    let (conversation, status, mode) = match open_conversations(session).await?.pop() {
        Some(state) => (state.id, state.status, CatchUp::Live),
        None => match reopen_recent(session, &visitor).await? {
            // The client sees the conversation come back to life.
            Some((conversation, before)) => (
                conversation,
                ConversationStatus::Queued,
                CatchUp::After(before),
            ),
            None => {
                let (conversation, created) =
                    claim_conversation(session, &visitor, team, ConversationStatus::Queued).await?;
                let mode = if created { CatchUp::All } else { CatchUp::Live };
                (conversation, ConversationStatus::Queued, mode)
            }
        },
    };
    let created = mode == CatchUp::All;
    let last_seq = backbone.log.last_seq(&conversation).await?;
    session
        .outbox
        .frame(&ServerFrame::Started {
            conversation_id: conversation.clone(),
            state: status.as_str().to_owned(),
            last_seq,
            created,
        })
        .await;
    // A new conversation is delivered from its first record.
    follow(session, &conversation, mode).await?;
    if let Some(text) = text {
        let client_id = client_id.unwrap_or_else(|| format!("start-{conversation}"));
        append_message(session, &conversation, &client_id, text).await?;
    }
    Ok(())
}

/// Reopens the visitor's last conversation if it was closed within
/// `edge.reopen_window`: back in the queue, for the same agent if they are
/// online.
/// Returns the conversation and its last `seq` before it was reopened.
pub(super) async fn reopen_recent(
    session: &Session,
    visitor: &VisitorId,
) -> Result<Option<(ConversationId, u64)>, Refusal> {
    let backbone = &session.state.backbone;
    let Some(last) = kv::get::<ConversationId>(&backbone.visitors, visitor.as_str()).await? else {
        return Ok(None);
    };
    let window = i64::try_from(session.state.config.edge.reopen_window.get().as_millis())
        .unwrap_or(i64::MAX);
    let now = now_ms();
    let sender = session.identity.participant();
    let before = backbone.log.last_seq(&last.value).await?;
    let (reopened, written) = kv::cas_versioned(
        &backbone.conversations,
        last.value.as_str(),
        |current: Option<&ConversationState>| match current {
            Some(state)
                if state.status == ConversationStatus::Closed
                    && state.visitor.id == visitor.as_str()
                    && state.closed_at.is_some_and(|at| now - at <= window) =>
            {
                let mut state = state.clone();
                state.status = ConversationStatus::Queued;
                state.queued_at = now;
                state.closed_at = None;
                state.announced_position = None;
                state.target_agent = state.agent.take().and_then(|a| AgentId::new(a.id).ok());
                state.target_only = false;
                state.exclude_agent = None;
                state.assigned_at = None;
                state.first_response_at = None;
                state.owe(sender.clone(), ConversationEvent::Reopened {}, None);
                Decision::Write(state, true)
            }
            _ => Decision::Keep(false),
        },
    )
    .await?;
    let Some(written) = written.filter(|_| reopened) else {
        return Ok(None);
    };
    outbox::flush_from(backbone, &last.value, written).await?;
    tracing::info!(conversation = %last.value, "conversation reopened");
    Ok(Some((last.value, before)))
}

/// Makes a new conversation the visitor's open one, unless another tab of
/// the same visitor did so a moment ago (then that one is used).
pub(crate) async fn claim_conversation(
    session: &Session,
    visitor: &VisitorId,
    team: Option<TeamId>,
    status: ConversationStatus,
) -> Result<(ConversationId, bool), Refusal> {
    let backbone = &session.state.backbone;
    let fresh = ConversationId::generate();
    let other = kv::cas(
        &backbone.visitors,
        visitor.as_str(),
        |current: Option<&ConversationId>| match current {
            Some(other) => Decision::Keep(Some(other.clone())),
            None => Decision::Write(fresh.clone(), None),
        },
    )
    .await?;
    if let Some(other) = other {
        let other_open = kv::get::<ConversationState>(&backbone.conversations, other.as_str())
            .await?
            .is_some_and(|s| s.value.status != ConversationStatus::Closed);
        if other_open {
            return Ok((other, false));
        }
        // A pointer to a closed conversation (its close did not clear it).
        kv::put(&backbone.visitors, visitor.as_str(), &fresh).await?;
    }
    open_new(session, &fresh, team, status).await?;
    Ok((fresh, true))
}

/// Writes the `opened` event and the routing entry of a new conversation.
pub(crate) async fn open_new(
    session: &Session,
    conversation: &ConversationId,
    team: Option<TeamId>,
    status: ConversationStatus,
) -> Handled {
    let backbone = &session.state.backbone;
    let visitor = session.identity.participant();
    backbone
        .log
        .append(
            conversation,
            visitor.clone(),
            RecordBody::Event {
                event: ConversationEvent::Opened {
                    visitor: visitor.clone(),
                    team: team.clone(),
                },
            },
            None,
        )
        .await?;
    let mut state = ConversationState::opened(conversation.clone(), visitor, team, now_ms());
    state.status = status;
    // Written after the `opened` event, so the router's events follow it.
    kv::put(&backbone.conversations, conversation.as_str(), &state).await?;
    tracing::info!(%conversation, "conversation opened");
    Ok(())
}

/// Longest transfer note or rating comment, in characters.
const MAX_NOTE_CHARS: usize = 1000;

/// `transfer`: the assigned agent hands the conversation to another agent
/// or team. It goes back to the queue ahead of ordinary conversations;
/// the router gives it to the named agent when they are online with a
/// free slot (anyone of the team otherwise), never back to the sender.
pub(super) async fn transfer(
    session: &mut Session,
    conversation: &ConversationId,
    to_agent: Option<AgentId>,
    to_team: Option<TeamId>,
    note: Option<String>,
) -> Handled {
    let Identity::Agent { id: me, .. } = session.identity.clone() else {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "only agents transfer conversations",
        ));
    };
    if to_agent.is_none() && to_team.is_none() {
        return Err(Refusal::new(
            ErrorCode::BadRequest,
            "name to_agent or to_team",
        ));
    }
    if to_agent.as_ref() == Some(&me) {
        return Err(Refusal::new(
            ErrorCode::BadRequest,
            "the conversation is already yours",
        ));
    }
    if note
        .as_deref()
        .is_some_and(|n| n.chars().count() > MAX_NOTE_CHARS)
    {
        return Err(Refusal::new(
            ErrorCode::TooLarge,
            format!("note is longer than {MAX_NOTE_CHARS} characters"),
        ));
    }
    authorize(session, conversation, true).await?;
    let backbone = &session.state.backbone;
    let target = match &to_agent {
        Some(agent) => Some(
            switchboard_bus::accounts::find(backbone, agent)
                .await?
                .ok_or_else(|| Refusal::new(ErrorCode::NotFound, "no such agent"))?,
        ),
        None => None,
    };
    let sender = session.identity.participant();
    let event = ConversationEvent::Transferred {
        from: sender.clone(),
        to_agent: target.map(|a| Participant::agent(&a.id, a.name)),
        to_team: to_team.clone(),
        note,
    };
    let (moved, written) = kv::cas_versioned(
        &backbone.conversations,
        conversation.as_str(),
        |current: Option<&ConversationState>| match current {
            Some(state) if state.is_assigned_to(&me) => {
                let mut state = state.clone();
                state.status = ConversationStatus::Queued;
                state.agent = None;
                state.assigned_at = None;
                state.first_response_at = None;
                state.announced_position = None;
                state.priority = state.priority.max(0) + 1;
                state.target_agent = to_agent.clone();
                state.target_only = to_agent.is_some();
                state.exclude_agent = Some(me.clone());
                if let Some(team) = &to_team {
                    state.team = Some(team.clone());
                }
                state.owe(sender.clone(), event.clone(), None);
                Decision::Write(state, true)
            }
            _ => Decision::Keep(false),
        },
    )
    .await?;
    let Some(written) = written.filter(|_| moved) else {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "this conversation is not yours",
        ));
    };
    outbox::flush_from(backbone, conversation, written).await?;
    tracing::info!(%conversation, "conversation transferred");
    Ok(())
}

/// `rate`: the visitor's satisfaction score after the conversation closed.
pub(super) async fn rate(
    session: &mut Session,
    conversation: &ConversationId,
    score: u8,
    comment: Option<String>,
) -> Handled {
    if !matches!(session.identity, Identity::Visitor { .. }) {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "only visitors rate conversations",
        ));
    }
    if !(1..=5).contains(&score) {
        return Err(Refusal::new(ErrorCode::BadRequest, "score must be 1 to 5"));
    }
    if comment
        .as_deref()
        .is_some_and(|c| c.chars().count() > MAX_NOTE_CHARS)
    {
        return Err(Refusal::new(
            ErrorCode::TooLarge,
            format!("comment is longer than {MAX_NOTE_CHARS} characters"),
        ));
    }
    authorize(session, conversation, false).await?;
    let backbone = &session.state.backbone;
    let sender = session.identity.participant();
    let event = ConversationEvent::Rated { score, comment };
    let rated = kv::cas(
        &backbone.conversations,
        conversation.as_str(),
        |current: Option<&ConversationState>| match current {
            Some(state) if state.status == ConversationStatus::Closed && state.rating.is_none() => {
                let mut state = state.clone();
                state.rating = Some(score);
                state.owe(sender.clone(), event.clone(), None);
                Decision::Write(state, Ok(()))
            }
            Some(state) if state.status != ConversationStatus::Closed => {
                Decision::Keep(Err("a conversation is rated after it is closed"))
            }
            _ => Decision::Keep(Err("this conversation was rated already")),
        },
    )
    .await?;
    if let Err(why) = rated {
        return Err(Refusal::new(ErrorCode::Forbidden, why));
    }
    outbox::flush(backbone, conversation).await?;
    Ok(())
}

/// `status`: the agent's availability.
pub(super) async fn set_status(session: &mut Session, status: AgentStatus) -> Handled {
    let Identity::Agent { id, .. } = &session.identity else {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "only agents have a status",
        ));
    };
    session
        .state
        .presences
        .set(id, session.connection, status)
        .await?;
    tracing::info!(agent_id = %id, ?status, "agent status");
    Ok(())
}

/// `close`: end a conversation (its agent, or its visitor). The visitor's
/// pointer to it stays: coming back within `edge.reopen_window` reopens it.
pub(super) async fn close(session: &mut Session, conversation: &ConversationId) -> Handled {
    let state = authorize(session, conversation, true).await?;
    let backbone = &session.state.backbone;
    let sender = session.identity.participant();
    let (closed_now, written) = kv::cas_versioned(
        &backbone.conversations,
        conversation.as_str(),
        |current: Option<&ConversationState>| match current {
            Some(current) if current.status != ConversationStatus::Closed => {
                let mut closed = current.clone();
                closed.status = ConversationStatus::Closed;
                closed.closed_at = Some(now_ms());
                closed.owe(sender.clone(), ConversationEvent::Closed {}, None);
                Decision::Write(closed, true)
            }
            _ => Decision::Keep(false),
        },
    )
    .await?;
    let Some(written) = written.filter(|_| closed_now) else {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "this conversation is closed",
        ));
    };
    outbox::flush_from(backbone, conversation, written).await?;
    // Give the agent's slot back now: a reopen right after must not find
    // it still taken (routers release it too, when they see the close).
    if let Some(agent) = state
        .agent
        .as_ref()
        .and_then(|a| AgentId::new(a.id.as_str()).ok())
    {
        switchboard_bus::slots::release(backbone, &agent, conversation).await?;
    }
    tracing::info!(%conversation, "conversation closed");
    Ok(())
}
