//! What each client frame does. Every handler checks that the connection's
//! identity may touch the conversation (a visitor only their own, an agent
//! only those assigned to them), stamps the sender from the token, and
//! answers with a frame: the result, or an `error` naming what was wrong.

use std::collections::HashMap;

use switchboard_bus::kv::{self, Decision};
use switchboard_bus::{outbox, BusError};
use switchboard_protocol::frames::{
    ClientFrame, ConversationSummary, ErrorCode, HistoryItem, ServerFrame, MAX_UNREAD,
};
use switchboard_protocol::ids::{AgentId, ConversationId, TeamId, VisitorId};
use switchboard_protocol::payloads::{
    decode, encode, AgentLoad, AgentNotice, AgentStatus, ChatRecord, ConversationEvent,
    ConversationState, ConversationStatus, HistoryReply, HistoryRequest, Participant, ReadMark,
    RecordBody, Signal,
};
use switchboard_protocol::subjects;
use switchboard_protocol::time::{now_ms, rfc3339};

use crate::auth::Identity;
use crate::hub::Follower;
use crate::limits::{check_text, valid_client_id, TextProblem};
use crate::outbox::Outbound;
use crate::session::Session;

/// Records replayed at most when a connection catches a conversation up;
/// anything older is paged with `history`.
const MAX_REPLAY: usize = 500;
/// Default and largest `history` page.
const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 100;

/// Why a frame was refused: becomes an `error` frame.
#[derive(Debug)]
pub struct Refusal {
    code: ErrorCode,
    message: String,
}

impl Refusal {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<BusError> for Refusal {
    fn from(err: BusError) -> Self {
        tracing::warn!(error = %err, "backbone operation failed");
        Refusal::new(
            ErrorCode::Unavailable,
            "the message bus is unavailable, try again",
        )
    }
}

pub(crate) type Handled = Result<(), Refusal>;

/// Runs one frame and answers a refusal with an `error` frame.
pub async fn dispatch(session: &mut Session, frame: ClientFrame) {
    let reference = match &frame {
        ClientFrame::Send { client_id, .. } => Some(client_id.clone()),
        other => Some(other.kind().to_owned()),
    };
    let kind = frame.kind();
    let result = match frame {
        ClientFrame::Hello { .. } => Err(Refusal::new(
            ErrorCode::BadRequest,
            "already said hello on this connection",
        )),
        ClientFrame::Start {
            team,
            text,
            client_id,
        } => start(session, team, text, client_id).await,
        ClientFrame::Send {
            conversation_id,
            client_id,
            text,
            retry,
        } => send(session, &conversation_id, &client_id, text, retry).await,
        ClientFrame::Typing {
            conversation_id,
            state,
        } => {
            let sender = session.identity.participant();
            signal(session, &conversation_id, Signal::Typing { sender, state }).await
        }
        ClientFrame::Read {
            conversation_id,
            seq,
        } => read(session, &conversation_id, seq).await,
        ClientFrame::History {
            conversation_id,
            before_seq,
            limit,
        } => history(session, &conversation_id, before_seq, limit).await,
        ClientFrame::Status { status } => set_status(session, status).await,
        ClientFrame::Close { conversation_id } => close(session, &conversation_id).await,
        ClientFrame::Transfer {
            conversation_id,
            to_agent,
            to_team,
            note,
        } => transfer(session, &conversation_id, to_agent, to_team, note).await,
        ClientFrame::Rate {
            conversation_id,
            score,
            comment,
        } => rate(session, &conversation_id, score, comment).await,
        ClientFrame::LeaveMessage {
            text,
            name,
            email,
            client_id,
        } => crate::missed::leave_message(session, text, name, email, client_id).await,
        ClientFrame::ListMissed {} => crate::missed::list(session).await,
        ClientFrame::PickUp { conversation_id } => {
            crate::missed::pick_up(session, &conversation_id).await
        }
    };
    if let Err(refusal) = result {
        tracing::info!(kind, code = ?refusal.code, reason = %refusal.message, "frame refused");
        session
            .error(refusal.code, refusal.message, reference)
            .await;
    }
}

/// The routing state of a conversation the identity may touch.
pub(crate) async fn authorize(
    session: &Session,
    conversation: &ConversationId,
    need_open: bool,
) -> Result<ConversationState, Refusal> {
    let state =
        kv::get::<ConversationState>(&session.state.backbone.conversations, conversation.as_str())
            .await?
            .ok_or_else(|| Refusal::new(ErrorCode::NotFound, "no such conversation"))?
            .value;
    let allowed = match &session.identity {
        Identity::Visitor { id, .. } => state.visitor.id == id.as_str(),
        Identity::Agent { id, .. } if need_open => state.is_assigned_to(id),
        // A closed conversation stays readable by the agent who had it.
        Identity::Agent { id, .. } => state
            .agent
            .as_ref()
            .is_some_and(|agent| agent.id == id.as_str()),
    };
    if !allowed {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "this conversation is not yours",
        ));
    }
    if need_open && state.status == ConversationStatus::Closed {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "this conversation is closed",
        ));
    }
    Ok(state)
}

/// How a conversation a connection starts to follow is caught up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CatchUp {
    /// From the current end: earlier records come with `history`.
    Live,
    /// From its first record (a new conversation, a new assignment).
    All,
    /// From after this `seq`, unasked (a reopened conversation).
    After(u64),
    /// From after this `seq`, as `hello`'s `resume` asked; answered with a
    /// `resumed` frame.
    Resume(u64),
}

/// Follows a conversation's live records, after catching the client up as
/// `mode` says (live records are merged behind the replay, by `seq`).
/// Following an already followed conversation again only replays.
pub(crate) async fn follow(
    session: &mut Session,
    conversation: &ConversationId,
    mode: CatchUp,
) -> Result<u64, Refusal> {
    let first_time = !session
        .state
        .hub
        .is_following(conversation, session.connection);
    if !first_time && mode == CatchUp::Live {
        return Ok(session.state.backbone.log.last_seq(conversation).await?);
    }
    session
        .outbox
        .send(Outbound::BeginCatchUp(conversation.clone()))
        .await;
    let mut outcome = Ok(());
    if first_time {
        let follower = Follower {
            outbox: session.outbox.clone(),
            participant_id: session.identity.id().to_owned(),
            role: session.identity.role(),
        };
        match session
            .state
            .hub
            .follow(conversation, session.connection, follower)
            .await
        {
            Ok(()) => {
                session.followed.insert(conversation.clone());
            }
            Err(err) => {
                tracing::warn!(error = %err, %conversation, "follow conversation");
                outcome = Err(Refusal::new(
                    ErrorCode::Unavailable,
                    "the message bus is unavailable, try again",
                ));
            }
        }
    }
    // Read after subscribing: whatever is stored later arrives live.
    let (last, start, records) = match replay(session, conversation, mode).await {
        Ok(read) => read,
        Err(err) => {
            // Release held records: the client sees any gap and asks.
            session
                .outbox
                .send(Outbound::CatchUp {
                    conversation: conversation.clone(),
                    after: 0,
                    records: Vec::new(),
                })
                .await;
            return Err(err.into());
        }
    };
    if let CatchUp::Resume(after) = mode {
        session
            .outbox
            .frame(&ServerFrame::Resumed {
                conversation_id: conversation.clone(),
                after,
                replayed: records.len() as u64,
                complete: start <= after,
                first_seq: start + 1,
            })
            .await;
    }
    session
        .outbox
        .send(Outbound::CatchUp {
            conversation: conversation.clone(),
            after: start,
            records,
        })
        .await;
    outcome.map(|()| last)
}

/// The records a catch-up replays: `(last seq, seq the replay starts
/// after, records)`. At most [`MAX_REPLAY`] records; what the stream no
/// longer holds comes from the archive.
async fn replay(
    session: &Session,
    conversation: &ConversationId,
    mode: CatchUp,
) -> Result<(u64, u64, Vec<ChatRecord>), BusError> {
    let log = &session.state.backbone.log;
    let last = log.last_seq(conversation).await?;
    let after = match mode {
        CatchUp::Live => return Ok((last, last, Vec::new())),
        CatchUp::All => 0,
        CatchUp::After(after) | CatchUp::Resume(after) => after,
    };
    if after >= last {
        return Ok((last, after.min(last), Vec::new()));
    }
    let from = (after + 1).max(last.saturating_sub(MAX_REPLAY as u64) + 1);
    let mut records = log.read_from(conversation, from, MAX_REPLAY).await?;
    let in_stream = records.first().map_or(last + 1, |r| r.seq);
    if in_stream > from {
        let missing = u32::try_from(in_stream - from).unwrap_or(u32::MAX);
        match archived(session, conversation, in_stream, missing).await {
            Ok(mut older) => {
                older.retain(|r| r.seq >= from);
                older.append(&mut records);
                records = older;
            }
            Err(err) => tracing::warn!(error = %err, %conversation, "archive replay unavailable"),
        }
    }
    let start = records.first().map_or(last, |r| r.seq - 1);
    Ok((last, start, records))
}

/// `welcome`: who the client is and its open conversations, then catch-up
/// of the conversations named in `resume`.
pub async fn welcome(session: &mut Session, resume: HashMap<ConversationId, u64>) {
    let mut open = match open_conversations(session).await {
        Ok(open) => open,
        Err(refusal) => {
            session
                .error(refusal.code, refusal.message, Some("hello".into()))
                .await;
            Vec::new()
        }
    };
    let mut summaries = Vec::with_capacity(open.len());
    for state in &open {
        match summarize(session, state).await {
            Ok(summary) => summaries.push(summary),
            Err(err) => {
                tracing::warn!(error = %err, conversation = %state.id, "summarize conversation");
                summaries.push(ConversationSummary::new(state, 0));
            }
        }
    }
    session
        .outbox
        .frame(&ServerFrame::Welcome {
            role: session.identity.role().as_str().to_owned(),
            id: session.identity.id().to_owned(),
            name: session.identity.name().to_owned(),
            conversations: summaries,
        })
        .await;
    // Conversations named in `resume` that are no longer open (closed while
    // the client was away) are caught up too, if they are the client's.
    for conversation in resume.keys() {
        if !open.iter().any(|s| &s.id == conversation) {
            match authorize(session, conversation, false).await {
                Ok(state) => open.push(state),
                Err(refusal) => {
                    session
                        .error(
                            refusal.code,
                            refusal.message,
                            Some(conversation.to_string()),
                        )
                        .await;
                }
            }
        }
    }
    for state in open {
        let after = resume.get(&state.id).copied();
        if let Err(refusal) = follow(
            session,
            &state.id,
            after.map_or(CatchUp::Live, CatchUp::Resume),
        )
        .await
        {
            session
                .error(refusal.code, refusal.message, Some(state.id.to_string()))
                .await;
        }
    }
}

/// A conversation as `welcome` lists it, with this identity's read state.
async fn summarize(
    session: &Session,
    state: &ConversationState,
) -> Result<ConversationSummary, BusError> {
    let backbone = &session.state.backbone;
    let me = session.identity.id();
    let peer = match &session.identity {
        Identity::Visitor { .. } => state.agent.as_ref().map(|a| a.id.as_str()),
        Identity::Agent { .. } => Some(state.visitor.id.as_str()),
    };
    let read_seq = |participant: &str| {
        let key = subjects::read_key(&state.id, participant);
        async move {
            Ok::<_, BusError>(
                kv::get::<ReadMark>(&backbone.reads, &key)
                    .await?
                    .map_or(0, |m| m.value.seq),
            )
        }
    };
    let mut summary = ConversationSummary::new(state, backbone.log.last_seq(&state.id).await?);
    summary.read_seq = read_seq(me).await?;
    if let Some(peer) = peer {
        summary.peer_read_seq = read_seq(peer).await?;
    }
    if summary.last_seq > summary.read_seq {
        let from = (summary.read_seq + 1).max(summary.last_seq.saturating_sub(MAX_UNREAD) + 1);
        summary.unread = backbone
            .log
            .read_from(&state.id, from, MAX_UNREAD as usize)
            .await?
            .iter()
            .filter(|r| matches!(r.body, RecordBody::Message { .. }) && r.sender.id != me)
            .count() as u64;
    }
    Ok(summary)
}

/// The open conversations of the connection's identity.
pub(crate) async fn open_conversations(
    session: &Session,
) -> Result<Vec<ConversationState>, Refusal> {
    let backbone = &session.state.backbone;
    let ids: Vec<ConversationId> = match &session.identity {
        Identity::Visitor { id, .. } => kv::get::<ConversationId>(&backbone.visitors, id.as_str())
            .await?
            .map(|v| vec![v.value])
            .unwrap_or_default(),
        Identity::Agent { id, .. } => kv::get::<AgentLoad>(&backbone.load, id.as_str())
            .await?
            .map(|v| {
                v.value
                    .conversations
                    .into_iter()
                    .map(|e| e.conversation_id)
                    .collect()
            })
            .unwrap_or_default(),
    };
    let mut open = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(state) =
            kv::get::<ConversationState>(&backbone.conversations, id.as_str()).await?
        {
            let state = state.value;
            let mine = match &session.identity {
                Identity::Visitor { id, .. } => state.visitor.id == id.as_str(),
                Identity::Agent { id, .. } => state.is_assigned_to(id),
            };
            if mine && state.status != ConversationStatus::Closed {
                open.push(state);
            }
        }
    }
    Ok(open)
}

/// `start`: the visitor's open conversation, or a new one.
async fn start(
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
async fn reopen_recent(
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
    let reopened = kv::cas(
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
    if !reopened {
        return Ok(None);
    }
    outbox::flush(backbone, &last.value).await?;
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

pub(crate) fn text_allowed(session: &Session, text: &str) -> Handled {
    match check_text(text, session.state.config.edge.max_text_chars) {
        Ok(()) => Ok(()),
        Err(TextProblem::Empty) => Err(Refusal::new(ErrorCode::BadRequest, "text is empty")),
        Err(TextProblem::TooLong { max }) => Err(Refusal::new(
            ErrorCode::TooLarge,
            format!("text is longer than {max} characters"),
        )),
    }
}

/// `send`: store a message, acknowledge it to the sender.
async fn send(
    session: &mut Session,
    conversation: &ConversationId,
    client_id: &str,
    text: String,
    retry: bool,
) -> Handled {
    if !valid_client_id(client_id) {
        return Err(Refusal::new(
            ErrorCode::BadRequest,
            "client_id must be 1-64 visible ASCII characters",
        ));
    }
    text_allowed(session, &text)?;
    let state = authorize(session, conversation, true).await?;
    if !session
        .state
        .hub
        .is_following(conversation, session.connection)
    {
        follow(session, conversation, CatchUp::Live).await?;
    }
    if retry {
        // JetStream recognises a repeat only inside its dedupe window; a
        // retry may come later (a client offline for long), so look for it.
        if let Some(original) = find_sent(session, conversation, client_id).await? {
            tracing::info!(%conversation, client_id, "retried send answered with the original");
            return ack(session, client_id, &original).await;
        }
    }
    append_message(session, conversation, client_id, text).await?;
    if let Identity::Agent { id, .. } = &session.identity {
        if state.first_response_at.is_none() {
            note_first_response(session, conversation, id).await?;
        }
    }
    Ok(())
}

/// Marks that the assigned agent has answered (once per assignment), so
/// the router's first-reply deadline stops counting.
async fn note_first_response(
    session: &Session,
    conversation: &ConversationId,
    agent: &AgentId,
) -> Handled {
    kv::cas(
        &session.state.backbone.conversations,
        conversation.as_str(),
        |current: Option<&ConversationState>| match current {
            Some(state) if state.is_assigned_to(agent) && state.first_response_at.is_none() => {
                let mut state = state.clone();
                state.first_response_at = Some(now_ms());
                Decision::Write(state, ())
            }
            _ => Decision::Keep(()),
        },
    )
    .await?;
    Ok(())
}

/// Longest transfer note or rating comment, in characters.
const MAX_NOTE_CHARS: usize = 1000;

/// `transfer`: the assigned agent hands the conversation to another agent
/// or team. It goes back to the queue ahead of ordinary conversations;
/// the router gives it to the named agent when they are online with a
/// free slot (anyone of the team otherwise), never back to the sender.
async fn transfer(
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
    let moved = kv::cas(
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
    if !moved {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "this conversation is not yours",
        ));
    }
    outbox::flush(backbone, conversation).await?;
    tracing::info!(%conversation, "conversation transferred");
    Ok(())
}

/// `rate`: the visitor's satisfaction score after the conversation closed.
async fn rate(
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

/// Records looked at for a retried send (the most recent ones).
const RETRY_LOOKBACK: u64 = 500;

/// A message this identity sent with `client_id`, among the recent records.
async fn find_sent(
    session: &Session,
    conversation: &ConversationId,
    client_id: &str,
) -> Result<Option<ChatRecord>, BusError> {
    let log = &session.state.backbone.log;
    let last = log.last_seq(conversation).await?;
    let from = last.saturating_sub(RETRY_LOOKBACK) + 1;
    let me = session.identity.id();
    Ok(log
        .read_from(conversation, from, RETRY_LOOKBACK as usize)
        .await?
        .into_iter()
        .find(|r| {
            r.sender.id == me
                && matches!(&r.body, RecordBody::Message { client_id: c, .. } if c == client_id)
        }))
}

async fn ack(session: &Session, client_id: &str, record: &ChatRecord) -> Handled {
    session
        .outbox
        .frame(&ServerFrame::Ack {
            client_id: client_id.to_owned(),
            conversation_id: record.conversation_id.clone(),
            id: record.id.clone(),
            seq: record.seq,
            sent_at: rfc3339(record.sent_at),
        })
        .await;
    Ok(())
}

pub(crate) async fn append_message(
    session: &Session,
    conversation: &ConversationId,
    client_id: &str,
    text: String,
) -> Handled {
    let sender = session.identity.participant();
    // The dedupe key names the sender, so one client cannot collide with
    // another's client ids.
    let dedupe = format!(
        "{conversation}.{}.{}.{client_id}",
        sender.role.as_str(),
        sender.id
    );
    let appended = session
        .state
        .backbone
        .log
        .append(
            conversation,
            sender,
            RecordBody::Message {
                text,
                client_id: client_id.to_owned(),
            },
            Some(&dedupe),
        )
        .await?;
    ack(session, client_id, &appended.record).await
}

/// `read`: remember how far this identity has read (only ever forward),
/// and tell the other participants.
async fn read(session: &mut Session, conversation: &ConversationId, seq: u64) -> Handled {
    authorize(session, conversation, false).await?;
    let backbone = &session.state.backbone;
    let last = backbone.log.last_seq(conversation).await?;
    if seq > last {
        return Err(Refusal::new(
            ErrorCode::BadRequest,
            format!("seq {seq} is past the end of the conversation ({last})"),
        ));
    }
    let reader = session.identity.participant();
    let key = subjects::read_key(conversation, &reader.id);
    let advanced = kv::cas(
        &backbone.reads,
        &key,
        |current: Option<&ReadMark>| match current {
            Some(mark) if mark.seq >= seq => Decision::Keep(false),
            _ => Decision::Write(ReadMark { seq, at: now_ms() }, true),
        },
    )
    .await?;
    if advanced {
        signal(session, conversation, Signal::Read { reader, seq }).await?;
    }
    Ok(())
}

/// `typing` and `read`: ephemeral signals to the other participants.
async fn signal(session: &mut Session, conversation: &ConversationId, signal: Signal) -> Handled {
    if !session
        .state
        .hub
        .is_following(conversation, session.connection)
    {
        authorize(session, conversation, false).await?;
        follow(session, conversation, CatchUp::Live).await?;
    }
    let payload = encode(&signal).map_err(|e| BusError::decode("signal", e))?;
    session
        .state
        .backbone
        .client
        .publish(subjects::signal(conversation), payload.into())
        .await
        .map_err(|e| BusError::nats("publish signal", e))?;
    Ok(())
}

/// `history`: a page of records before `before_seq`, from the stream and,
/// for what it no longer holds, the archive.
async fn history(
    session: &mut Session,
    conversation: &ConversationId,
    before_seq: Option<u64>,
    limit: Option<u32>,
) -> Handled {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(Refusal::new(
            ErrorCode::BadRequest,
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    authorize(session, conversation, false).await?;
    let log = &session.state.backbone.log;
    let before = before_seq.unwrap_or(u64::MAX);
    let mut page = log
        .read_before(conversation, before, limit as usize)
        .await?;
    if let Some(below) = page.archived_below {
        let wanted = limit.saturating_sub(u32::try_from(page.records.len()).unwrap_or(limit));
        match archived(session, conversation, below, wanted).await {
            Ok(mut older) => {
                older.retain(|r| r.seq < below);
                older.append(&mut page.records);
                page.records = older;
                page.has_more = page.records.first().is_some_and(|r| r.seq > 1);
            }
            Err(err) => {
                // The client gets what the stream has and `has_more`.
                tracing::warn!(error = %err, %conversation, "archive history unavailable");
            }
        }
    }
    session
        .outbox
        .frame(&ServerFrame::History {
            conversation_id: conversation.clone(),
            items: page
                .records
                .iter()
                .map(|r| HistoryItem::for_viewer(r, &session.identity.role()))
                .collect(),
            has_more: page.has_more,
        })
        .await;
    Ok(())
}

/// Asks the archiver for records older than the stream holds.
async fn archived(
    session: &Session,
    conversation: &ConversationId,
    before_seq: u64,
    limit: u32,
) -> Result<Vec<ChatRecord>, BusError> {
    if limit == 0 || before_seq <= 1 {
        return Ok(Vec::new());
    }
    let request = HistoryRequest {
        conversation_id: conversation.clone(),
        before_seq,
        limit,
    };
    let payload = encode(&request).map_err(|e| BusError::decode("history request", e))?;
    let reply = session
        .state
        .backbone
        .client
        .request(subjects::ARCHIVE_HISTORY, payload.into())
        .await
        .map_err(|e| BusError::nats("request archived history", e))?;
    let reply: HistoryReply =
        decode(&reply.payload).map_err(|e| BusError::decode("history reply", e))?;
    match reply.error {
        Some(error) => Err(BusError::nats("archived history", error)),
        None => Ok(reply.records),
    }
}

/// `status`: the agent's availability.
async fn set_status(session: &mut Session, status: AgentStatus) -> Handled {
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
async fn close(session: &mut Session, conversation: &ConversationId) -> Handled {
    authorize(session, conversation, true).await?;
    let backbone = &session.state.backbone;
    let sender = session.identity.participant();
    let closed_now = kv::cas(
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
    if !closed_now {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "this conversation is closed",
        ));
    }
    outbox::flush(backbone, conversation).await?;
    tracing::info!(%conversation, "conversation closed");
    Ok(())
}

/// A notice from the agent's inbox.
pub async fn on_notice(session: &mut Session, notice: AgentNotice) {
    match notice {
        AgentNotice::Assigned {
            conversation_id,
            visitor,
        } => {
            // Trust the routing state, not the notice.
            if authorize(session, &conversation_id, true).await.is_err() {
                return;
            }
            let last_seq = session
                .state
                .backbone
                .log
                .last_seq(&conversation_id)
                .await
                .unwrap_or(0);
            session
                .outbox
                .frame(&ServerFrame::Assigned {
                    conversation_id: conversation_id.clone(),
                    visitor,
                    last_seq,
                })
                .await;
            if let Err(refusal) = follow(session, &conversation_id, CatchUp::All).await {
                session
                    .error(
                        refusal.code,
                        refusal.message,
                        Some(conversation_id.to_string()),
                    )
                    .await;
            }
        }
    }
}
