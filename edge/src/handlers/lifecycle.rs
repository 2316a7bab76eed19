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
    let known = |t: &TeamId| session.state.teams.knows(t) || session.state.directory.knows(t);
    if team.as_ref().is_some_and(|t| !known(t)) {
        return Err(Refusal::new(ErrorCode::BadRequest, "no such team"));
    }
    let backbone = session.state.backbone.clone();
    let mut created = false;
    // `None`: followed from the `last_seq` that `started` gives.
    let (conversation, status, mode) = match open_conversations(session).await?.pop() {
        Some(state) => (state.id, state.status, None),
        None => match reopen_recent(session, &visitor).await? {
            // The client sees the conversation come back to life.
            Some((conversation, before)) => (
                conversation,
                ConversationStatus::Queued,
                Some(CatchUp::After(before)),
            ),
            None => {
                let opening = Opening {
                    status: ConversationStatus::Queued,
                    owed: None,
                };
                let (conversation, claim) =
                    claim_conversation(session, &visitor, team, opening).await?;
                created = claim == Claim::Created;
                // Whoever opened it, this tab sees it from its first record.
                (conversation, ConversationStatus::Queued, Some(CatchUp::All))
            }
        },
    };
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
    // A new conversation is delivered from its first record; an open one
    // from what `started` said it held, so that nothing stored meanwhile
    // is skipped.
    let mode = mode.unwrap_or(CatchUp::Listed(last_seq));
    follow(session, &conversation, mode).await?;
    if let Some(text) = text {
        let client_id = client_id.unwrap_or_else(|| format!("start-{conversation}"));
        let record = append_message(session, &conversation, &client_id, text).await?;
        note_for_bot(session, &record).await;
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
                // Back to the human who had it; a bot's conversation goes
                // back to its team (and its bot, if present).
                state.target_agent = state
                    .agent
                    .take()
                    .filter(|a| a.role == Role::Agent)
                    .and_then(|a| AgentId::new(a.id).ok());
                state.bot_wait = None;
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

/// How long a visitor's pointer may name a conversation whose routing
/// entry is not written yet before it counts as abandoned (its opener died
/// between the two writes) rather than being opened by another tab.
const OPENING_GRACE_MS: u64 = 30_000;

/// Lost races a claim tolerates (each means another tab moved the pointer).
const MAX_CLAIM_ATTEMPTS: usize = 8;

/// How [`claim_conversation`] came by the visitor's conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// This call opened it.
    Created,
    /// Another tab of the same visitor opened it a moment ago, or has it
    /// open: this one joins it (and catches up from its first record).
    Joined,
}

/// What a new conversation owes its log besides `opened` (a missed one:
/// the visitor's `left_message`).
pub(crate) struct Opening {
    pub status: ConversationStatus,
    pub owed: Option<(Participant, ConversationEvent)>,
}

/// Makes a new conversation the visitor's open one, unless another tab of
/// the same visitor did so at the same time (then that one is used): the
/// visitor's pointer only ever moves by compare-and-set, so two tabs that
/// `start` at once get one conversation.
pub(crate) async fn claim_conversation(
    session: &Session,
    visitor: &VisitorId,
    team: Option<TeamId>,
    opening: Opening,
) -> Result<(ConversationId, Claim), Refusal> {
    let backbone = &session.state.backbone;
    let fresh = ConversationId::generate();
    for _ in 0..MAX_CLAIM_ATTEMPTS {
        let pointer = kv::get::<ConversationId>(&backbone.visitors, visitor.as_str()).await?;
        let won = match pointer {
            None => kv::create(
                &backbone.visitors,
                visitor.as_str(),
                encode_id(&fresh)?.into(),
            )
            .await?
            .is_some(),
            // Our own write, whose answer was lost and whose retry found it.
            Some(other) if other.value == fresh => true,
            Some(other) => {
                let state =
                    kv::get::<ConversationState>(&backbone.conversations, other.value.as_str())
                        .await?;
                let being_opened = state.is_none()
                    && other
                        .value
                        .generated_at()
                        .is_some_and(|at| now_ms_u64().saturating_sub(at) < OPENING_GRACE_MS);
                let open = state.is_some_and(|s| s.value.status != ConversationStatus::Closed);
                if open || being_opened {
                    return Ok((other.value, Claim::Joined));
                }
                // A closed (or abandoned) conversation: replace the pointer
                // only if nobody moved it meanwhile.
                kv::update(
                    &backbone.visitors,
                    visitor.as_str(),
                    encode_id(&fresh)?.into(),
                    other.revision,
                )
                .await?
                .is_some()
            }
        };
        if won {
            open_new(session, &fresh, team, opening).await?;
            return Ok((fresh, Claim::Created));
        }
    }
    Err(BusError::Contention("visitor's conversation pointer").into())
}

fn encode_id(id: &ConversationId) -> Result<Vec<u8>, BusError> {
    encode(id).map_err(|e| BusError::decode("conversation id", e))
}

fn now_ms_u64() -> u64 {
    u64::try_from(now_ms()).unwrap_or(0)
}

/// Writes the `opened` event and the routing entry of a new conversation
/// (with whatever else its opening owes the log).
pub(crate) async fn open_new(
    session: &Session,
    conversation: &ConversationId,
    team: Option<TeamId>,
    opening: Opening,
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
    state.status = opening.status;
    if let Some((sender, event)) = opening.owed {
        state.owe(sender, event, None);
    }
    // Written after the `opened` event, so the router's events follow it.
    let revision = kv::put(&backbone.conversations, conversation.as_str(), &state).await?;
    outbox::flush_from(
        backbone,
        conversation,
        kv::Versioned {
            value: state,
            revision,
        },
    )
    .await?;
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
/// Who may close is checked again in the compare-and-set itself: a
/// conversation requeued or transferred away since the first check is not
/// closed by its former agent.
pub(super) async fn close(session: &mut Session, conversation: &ConversationId) -> Handled {
    authorize(session, conversation, true).await?;
    let backbone = &session.state.backbone;
    let sender = session.identity.participant();
    let identity = session.identity.clone();
    let closed_at = now_ms();
    let (closed, written) = kv::cas_versioned(
        &backbone.conversations,
        conversation.as_str(),
        |current: Option<&ConversationState>| match current {
            Some(current) if current.status == ConversationStatus::Closed => {
                Decision::Keep(Err("this conversation is closed"))
            }
            Some(current) if may_close(&identity, current) => {
                let mut closed = current.clone();
                closed.status = ConversationStatus::Closed;
                closed.closed_at = Some(closed_at);
                closed.owe(sender.clone(), ConversationEvent::Closed {}, None);
                // The slot of the agent it had when it was closed, and
                // whether it was listed as missed.
                let was_missed = current.status == ConversationStatus::Missed;
                Decision::Write(closed, Ok((current.agent.clone(), was_missed)))
            }
            _ => Decision::Keep(Err("this conversation is not yours")),
        },
    )
    .await?;
    let (agent, was_missed) = closed.map_err(|why| Refusal::new(ErrorCode::Forbidden, why))?;
    let Some(written) = written else {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "this conversation is closed",
        ));
    };
    if was_missed {
        // Nobody is to pick it up any more.
        if let Err(err) = backbone.missed.delete(conversation.as_str()).await {
            tracing::warn!(error = %err, %conversation, "remove missed entry");
        }
    }
    outbox::flush_from(backbone, conversation, written).await?;
    // Give the agent's slot back now: a reopen right after must not find
    // it still taken (routers release it too, when they see the close).
    if let Some(agent) = agent
        .filter(|a| a.role == Role::Agent)
        .and_then(|a| AgentId::new(a.id.as_str()).ok())
    {
        // The claim made for it before the close, not a newer one.
        switchboard_bus::slots::release(backbone, &agent, conversation, closed_at).await?;
    }
    tracing::info!(%conversation, "conversation closed");
    Ok(())
}

/// Whether `identity` may close a conversation in this state: its visitor,
/// or the agent it is assigned to.
fn may_close(identity: &Identity, state: &ConversationState) -> bool {
    match identity {
        Identity::Visitor { id, .. } => state.visitor.id == id.as_str(),
        Identity::Agent { id, .. } => state.is_assigned_to(id),
    }
}
