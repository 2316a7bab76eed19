//! What each client frame does. Every handler checks that the connection's
//! identity may touch the conversation (a visitor only their own, an agent
//! only those assigned to them), stamps the sender from the token, and
//! answers with a frame: the result, or an `error` naming what was wrong.

//!
//! - this module: dispatch, authorization, following a conversation and
//!   catching a client up, `welcome`, agents' notices;
//! - [`messages`]: `send`, `read`, `typing`, `history`;
//! - [`lifecycle`]: `start`, `close`, `transfer`, `rate`, reopening, `status`;
//! - [`handoff`]: `handoff`, a visitor asking the bot for a person;
//! - [`inbox`]: agents' private notes, and taking from the queue.

mod handoff;
mod inbox;
mod lifecycle;
mod messages;

use std::collections::HashMap;

use switchboard_bus::kv::{self, Decision};
use switchboard_bus::{outbox, BusError};
use switchboard_protocol::frames::{
    ClientFrame, ConversationSummary, ErrorCode, HistoryItem, ServerFrame, MAX_UNREAD,
};
use switchboard_protocol::ids::{AgentId, ConversationId, TeamId, VisitorId};
use switchboard_protocol::payloads::{
    encode, AgentLoad, AgentNotice, AgentStatus, ChatRecord, ConversationEvent, ConversationState,
    ConversationStatus, Participant, ReadMark, RecordBody, Role, Signal,
};
use switchboard_protocol::subjects;
use switchboard_protocol::time::{now_ms, rfc3339};

use crate::auth::Identity;
use crate::hub::Follower;
use crate::limits::{check_text, valid_client_id, TextProblem};
use crate::outbox::Outbound;
use crate::session::{SendCheck, Session};

pub(crate) use lifecycle::{claim_conversation, Claim, Opening};
use lifecycle::{close, rate, set_status, start, transfer};
use messages::archived;
pub(crate) use messages::{ack, append_message, find_sent, text_allowed};
use messages::{history, note_for_bot, read, send, typing};

/// Records replayed at most when a connection catches a conversation up;
/// anything older is paged with `history`.
const MAX_REPLAY: usize = 500;

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
///
/// The handlers of rarer frames are boxed: a frame's future is allocated
/// for each frame the client sends (see `session::active`), and it is as
/// large as the largest handler inlined here (`start` alone was 29 KB,
/// which every `send` paid for; a `send` is ~4 KB).
pub async fn dispatch(session: &mut Session, frame: ClientFrame) {
    let reference = match &frame {
        ClientFrame::Send { client_id, .. } | ClientFrame::Note { client_id, .. } => {
            Some(client_id.clone())
        }
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
        } => Box::pin(start(session, team, text, client_id)).await,
        ClientFrame::Send {
            conversation_id,
            client_id,
            text,
            retry,
        } => send(session, &conversation_id, &client_id, text, retry).await,
        ClientFrame::Typing {
            conversation_id,
            state,
        } => typing(session, &conversation_id, state).await,
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
        ClientFrame::Close { conversation_id } => Box::pin(close(session, &conversation_id)).await,
        ClientFrame::Transfer {
            conversation_id,
            to_agent,
            to_team,
            note,
        } => Box::pin(transfer(session, &conversation_id, to_agent, to_team, note)).await,
        ClientFrame::Rate {
            conversation_id,
            score,
            comment,
        } => Box::pin(rate(session, &conversation_id, score, comment)).await,
        ClientFrame::LeaveMessage {
            text,
            name,
            email,
            client_id,
        } => {
            Box::pin(crate::missed::leave_message(
                session, text, name, email, client_id,
            ))
            .await
        }
        ClientFrame::ListMissed { after, limit } => {
            Box::pin(crate::missed::list(session, after, limit)).await
        }
        ClientFrame::PickUp { conversation_id } => {
            Box::pin(crate::missed::pick_up(session, &conversation_id)).await
        }
        ClientFrame::Handoff { conversation_id } => {
            Box::pin(handoff::handoff(session, &conversation_id)).await
        }
        ClientFrame::Refresh { token } => crate::access::refresh(session, &token).await,
        ClientFrame::Note {
            conversation_id,
            client_id,
            text,
        } => inbox::note(session, &conversation_id, &client_id, text).await,
        ClientFrame::Take { conversation_id } => inbox::take(session, &conversation_id).await,
        ClientFrame::Ping {} => Ok(()),
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

/// Checks that the identity may read a conversation, closed ones included
/// (the visitor's own; an agent: the last one who had it). A conversation
/// that has left KV (finished, archived and past the reopen window) is
/// asked of the archive.
pub(crate) async fn authorize_read(
    session: &Session,
    conversation: &ConversationId,
) -> Result<(), Refusal> {
    match authorize(session, conversation, false).await {
        Err(refusal) if refusal.code == ErrorCode::NotFound => {}
        other => return other.map(|_| ()),
    }
    let participants = session
        .state
        .backbone
        .log
        .archived_participants(conversation)
        .await
        .map_err(|err| {
            tracing::warn!(error = %err, %conversation, "archived conversation lookup");
            Refusal::new(
                ErrorCode::Unavailable,
                "the archive is unavailable, try again",
            )
        })?;
    let Some((visitor, agent)) = participants else {
        return Err(Refusal::new(ErrorCode::NotFound, "no such conversation"));
    };
    let id = session.identity.id();
    let allowed = match &session.identity {
        Identity::Visitor { .. } => visitor.as_deref() == Some(id),
        Identity::Agent { .. } => agent.as_deref() == Some(id),
    };
    if allowed {
        Ok(())
    } else {
        Err(Refusal::new(
            ErrorCode::Forbidden,
            "this conversation is not yours",
        ))
    }
}

/// How a conversation a connection starts to follow is caught up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CatchUp {
    /// From the current end: earlier records come with `history`.
    Live,
    /// From after the `last_seq` the client was just given (`welcome`,
    /// `started`): what was stored since is delivered, earlier records
    /// come with `history`. Already followed, it simply goes on live.
    Listed(u64),
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
    if !first_time && matches!(mode, CatchUp::Live | CatchUp::Listed(_)) {
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
    let (last, start, mut records) = match replay(session, conversation, mode).await {
        Ok(read) => read,
        Err(err) => {
            // Release the held records from where the client is known to
            // be (or, following live, from the first one): nothing it has
            // is sent again, and it sees any gap and asks.
            let release = match mode {
                CatchUp::Live => Outbound::AbortCatchUp(conversation.clone()),
                CatchUp::All => Outbound::CatchUp {
                    conversation: conversation.clone(),
                    after: 0,
                    records: Vec::new(),
                    until: None,
                },
                CatchUp::After(after) | CatchUp::Listed(after) | CatchUp::Resume(after) => {
                    Outbound::CatchUp {
                        conversation: conversation.clone(),
                        after,
                        records: Vec::new(),
                        until: None,
                    }
                }
            };
            session.outbox.send(release).await;
            return Err(err.into());
        }
    };
    // Access was checked before the replay was read. If the conversation
    // left this agent meanwhile (transferred, requeued, given to someone
    // else), the replay ends with the event that says so, and the live
    // feed stops, as the hub does when it sees such an event live.
    let until = lost_in(&session.identity, &records).map(|at| {
        records.truncate(at + 1);
        session.state.hub.unfollow(conversation, session.connection);
        session.followed.remove(conversation);
        records.last().map_or(start, |r| r.seq)
    });
    if let CatchUp::Resume(after) = mode {
        switchboard_metrics::edge::edge().resumed(records.len());
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
            until,
        })
        .await;
    outcome.map(|()| last)
}

/// Where a replay shows the conversation leaving this agent: the index of
/// the first event after its last assignment to them (or from the start,
/// if the replay does not hold one) that takes it from them — a requeue,
/// a transfer, an assignment to someone else. What came before that
/// assignment does not count (a conversation given to this agent after
/// others replays from its start). Visitors never lose their conversation.
fn lost_in(identity: &Identity, records: &[ChatRecord]) -> Option<usize> {
    let Identity::Agent { id, .. } = identity else {
        return None;
    };
    let me = id.as_str();
    fn event(record: &ChatRecord) -> Option<&ConversationEvent> {
        match &record.body {
            RecordBody::Event { event } => Some(event),
            RecordBody::Message { .. } => None,
        }
    }
    let given = records
        .iter()
        .rposition(|r| matches!(event(r), Some(ConversationEvent::Assigned { agent, .. }) if agent.id == me))
        .map_or(0, |i| i + 1);
    records[given..]
        .iter()
        .position(|record| match event(record) {
            Some(ConversationEvent::Assigned { agent, .. }) => agent.id != me,
            Some(ConversationEvent::Transferred { from, to_agent, .. }) => {
                from.id == me && to_agent.as_ref().is_none_or(|to| to.id != me)
            }
            Some(ConversationEvent::AgentLeft { agent, .. }) => agent.id == me,
            _ => false,
        })
        .map(|i| given + i)
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
        CatchUp::After(after) | CatchUp::Listed(after) | CatchUp::Resume(after) => after,
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
    // The `last_seq` each conversation is listed with: it is followed from
    // there, so a record stored while `welcome` was written is delivered
    // (following "from now on" would start after it).
    let mut listed = HashMap::with_capacity(open.len());
    for state in &open {
        match summarize(session, state).await {
            Ok(summary) => {
                listed.insert(state.id.clone(), summary.last_seq);
                summaries.push(summary);
            }
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
            token_expires_at: Some(rfc3339(
                i64::try_from(session.token_expires_at.saturating_mul(1000)).unwrap_or(i64::MAX),
            )),
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
        let mode = match (resume.get(&state.id), listed.get(&state.id)) {
            (Some(after), _) => CatchUp::Resume(*after),
            (None, Some(last_seq)) => CatchUp::Listed(*last_seq),
            (None, None) => CatchUp::Live,
        };
        if let Err(refusal) = follow(session, &state.id, mode).await {
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

/// A notice from the agent's inbox.
pub async fn on_notice(session: &mut Session, notice: AgentNotice) {
    match notice {
        AgentNotice::Assigned {
            conversation_id,
            visitor,
            handed_off,
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
                    handed_off,
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

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_protocol::ids::MessageId;

    fn event(seq: u64, event: ConversationEvent) -> ChatRecord {
        ChatRecord {
            id: MessageId::generate(),
            conversation_id: ConversationId::new("c_1").unwrap(),
            seq,
            sender: Participant::system("router"),
            sent_at: 0,
            body: RecordBody::Event { event },
        }
    }

    fn assigned(seq: u64, agent: &Participant) -> ChatRecord {
        event(
            seq,
            ConversationEvent::Assigned {
                agent: agent.clone(),
                reason: None,
                handed_off: None,
            },
        )
    }

    #[test]
    fn a_replay_is_cut_where_the_conversation_last_left_the_agent() {
        let ada_id = AgentId::new("a_ada").unwrap();
        let ada = Participant::agent(&ada_id, "Ada");
        let bob = Participant::agent(&AgentId::new("a_bob").unwrap(), "Bob");
        let me = Identity::Agent {
            id: ada_id,
            name: "Ada".into(),
        };
        let message = |seq| ChatRecord {
            body: RecordBody::Message {
                text: "hi".into(),
                client_id: format!("k{seq}"),
            },
            ..event(seq, ConversationEvent::Closed {})
        };
        // Bob had it before Ada: the whole history is Ada's to read.
        let given = [
            assigned(1, &bob),
            event(
                2,
                ConversationEvent::AgentLeft {
                    agent: bob.clone(),
                    reason: "offline".into(),
                },
            ),
            assigned(3, &ada),
            message(4),
        ];
        assert_eq!(lost_in(&me, &given), None);
        // Requeued away from Ada, then given to Bob: cut at her leaving.
        let lost = [
            assigned(1, &ada),
            message(2),
            event(
                3,
                ConversationEvent::AgentLeft {
                    agent: ada.clone(),
                    reason: "offline".into(),
                },
            ),
            message(4),
            assigned(5, &bob),
        ];
        assert_eq!(lost_in(&me, &lost), Some(2));
        // Resumed after the assignment: the first move away decides.
        assert_eq!(lost_in(&me, &lost[1..]), Some(1));
        assert_eq!(lost_in(&me, &lost[..2]), None);
        // Visitors never lose their conversation.
        let visitor = Identity::Visitor {
            id: VisitorId::new("v_1").unwrap(),
            name: "Vi".into(),
        };
        assert_eq!(lost_in(&visitor, &lost), None);
    }
}
