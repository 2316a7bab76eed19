//! The browser contract: JSON WebSocket frames, one object per text frame,
//! tagged by `"type"`. Ids are the validated newtypes, so a frame naming an
//! id with `.`, `*`, `>` or whitespace is rejected while it is parsed.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::ids::{AgentId, ConversationId, MessageId, TeamId};
use crate::payloads::{
    AgentStatus, ChatRecord, ConversationEvent, ConversationState, Handoff, MissedEntry,
    Participant, QueueEntry, RecordBody, Role, TeamQueue,
};
use crate::time::rfc3339;

/// Client → server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    Hello {
        token: String,
        /// Conversation → last `seq` the client saw.
        #[serde(default)]
        resume: HashMap<ConversationId, u64>,
    },
    Start {
        #[serde(default)]
        team: Option<TeamId>,
        #[serde(default)]
        text: Option<String>,
        /// Idempotency key of the first message, as in `send`.
        #[serde(default)]
        client_id: Option<String>,
    },
    Send {
        conversation_id: ConversationId,
        client_id: String,
        text: String,
        /// Set when re-sending a message that was never acknowledged: the
        /// edge then also looks for it beyond the stream's dedupe window.
        #[serde(default)]
        retry: bool,
    },
    Typing {
        conversation_id: ConversationId,
        state: bool,
    },
    Read {
        conversation_id: ConversationId,
        seq: u64,
    },
    History {
        conversation_id: ConversationId,
        #[serde(default)]
        before_seq: Option<u64>,
        #[serde(default)]
        limit: Option<u32>,
    },
    Status {
        status: AgentStatus,
    },
    Close {
        conversation_id: ConversationId,
    },
    Transfer {
        conversation_id: ConversationId,
        #[serde(default)]
        to_agent: Option<AgentId>,
        #[serde(default)]
        to_team: Option<TeamId>,
        /// For the next agent; shown in the conversation.
        #[serde(default)]
        note: Option<String>,
    },
    Rate {
        conversation_id: ConversationId,
        score: u8,
        #[serde(default)]
        comment: Option<String>,
    },
    /// Nobody is online: leave a message (the visitor's open waiting
    /// conversation, if any, becomes it).
    LeaveMessage {
        text: String,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        email: Option<String>,
        #[serde(default)]
        client_id: Option<String>,
    },
    /// Agents: the missed conversations waiting to be picked up, a page
    /// at a time (oldest first): `after` the last one of the page before.
    ListMissed {
        #[serde(default)]
        after: Option<ConversationId>,
        #[serde(default)]
        limit: Option<u32>,
    },
    /// Agents: take a missed conversation.
    PickUp {
        conversation_id: ConversationId,
    },
    /// Visitors: "talk to a person" — the bot holding the conversation
    /// gives it to the humans.
    Handoff {
        conversation_id: ConversationId,
    },
    /// A fresh token of the same identity (from `POST
    /// /api/v1/token/refresh`): the connection lives on past the expiry of
    /// the one it said hello with.
    Refresh {
        token: String,
    },
    /// Agents: a private note in a conversation, for agents only (a `note`
    /// event; visitors receive it without its text). Answered with `ack`.
    Note {
        conversation_id: ConversationId,
        client_id: String,
        text: String,
    },
    /// Agents: take a waiting conversation from the queue; the router
    /// gives it to this agent as soon as they have a free slot.
    Take {
        conversation_id: ConversationId,
    },
    /// A sign of life, answered with nothing: a client on the event-stream
    /// transport (which has no WebSocket pings) sends one every 20 s.
    Ping {},
}

impl ClientFrame {
    /// The frame's `type`, for logs and the `ref` of an error.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientFrame::Hello { .. } => "hello",
            ClientFrame::Start { .. } => "start",
            ClientFrame::Send { .. } => "send",
            ClientFrame::Typing { .. } => "typing",
            ClientFrame::Read { .. } => "read",
            ClientFrame::History { .. } => "history",
            ClientFrame::Status { .. } => "status",
            ClientFrame::Close { .. } => "close",
            ClientFrame::Transfer { .. } => "transfer",
            ClientFrame::Rate { .. } => "rate",
            ClientFrame::LeaveMessage { .. } => "leave_message",
            ClientFrame::ListMissed { .. } => "list_missed",
            ClientFrame::PickUp { .. } => "pick_up",
            ClientFrame::Handoff { .. } => "handoff",
            ClientFrame::Refresh { .. } => "refresh",
            ClientFrame::Note { .. } => "note",
            ClientFrame::Take { .. } => "take",
            ClientFrame::Ping {} => "ping",
        }
    }
}

/// Error codes of the `error` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    TooLarge,
    RateLimited,
    Unavailable,
}

/// WebSocket close codes.
pub mod close_code {
    pub const UNAUTHORIZED: u16 = 4401;
    pub const FORBIDDEN: u16 = 4403;
    pub const HELLO_TIMEOUT: u16 = 4408;
    /// Nothing heard from the client (not even a pong) for
    /// `edge.idle_timeout`: the same code as a missing `hello`.
    pub const IDLE_TIMEOUT: u16 = 4408;
    pub const TOO_MANY_REQUESTS: u16 = 4429;
    pub const TOO_LARGE: u16 = 1009;
    /// A text frame that is not UTF-8.
    pub const INVALID_DATA: u16 = 1007;
    /// The edge cannot serve the connection now (the backbone did not
    /// answer): reconnect after a moment.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    pub const RESTARTING: u16 = 1012;
}

/// A conversation as listed in `welcome`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationSummary {
    pub conversation_id: ConversationId,
    pub state: String,
    pub last_seq: u64,
    pub visitor: Participant,
    pub agent: Option<Participant>,
    pub team: Option<TeamId>,
    /// Everything up to this `seq` was read by this client's identity.
    #[serde(default)]
    pub read_seq: u64,
    /// The highest `seq` the other side has read.
    #[serde(default)]
    pub peer_read_seq: u64,
    /// Messages from others after `read_seq` (at most [`MAX_UNREAD`]).
    #[serde(default)]
    pub unread: u64,
}

/// Unread counts stop here ("99+").
pub const MAX_UNREAD: u64 = 99;

impl ConversationSummary {
    pub fn new(state: &ConversationState, last_seq: u64) -> Self {
        Self {
            conversation_id: state.id.clone(),
            state: state.status.as_str().to_owned(),
            last_seq,
            visitor: state.visitor.clone(),
            agent: state.agent.clone(),
            team: state.team.clone(),
            read_seq: 0,
            peer_read_seq: 0,
            unread: 0,
        }
    }
}

/// A stored message as the browser sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageFrame {
    pub conversation_id: ConversationId,
    pub seq: u64,
    pub id: MessageId,
    pub client_id: String,
    pub sender: Participant,
    pub text: String,
    pub sent_at: String,
}

/// A stored lifecycle event as the browser sees it: `event` names it and its
/// data (`position`, `agent`, …) sits beside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventFrame {
    pub conversation_id: ConversationId,
    pub seq: u64,
    pub id: MessageId,
    #[serde(flatten)]
    pub event: ConversationEvent,
    pub by: Participant,
    pub at: String,
}

/// An entry of a `history` page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HistoryItem {
    Message(MessageFrame),
    Event(EventFrame),
}

/// Server → client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    Welcome {
        role: String,
        id: String,
        name: String,
        conversations: Vec<ConversationSummary>,
        /// When the connection's token expires: refresh it before (a
        /// `refresh` frame), or the connection is closed with 4401.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_expires_at: Option<String>,
    },
    /// The answer to `refresh`: the connection's token now expires then.
    Refreshed {
        token_expires_at: String,
    },
    Started {
        conversation_id: ConversationId,
        state: String,
        last_seq: u64,
        created: bool,
    },
    Ack {
        client_id: String,
        conversation_id: ConversationId,
        id: MessageId,
        seq: u64,
        sent_at: String,
    },
    Message(MessageFrame),
    Event(EventFrame),
    Typing {
        conversation_id: ConversationId,
        sender: Participant,
        state: bool,
    },
    Read {
        conversation_id: ConversationId,
        reader: Participant,
        seq: u64,
    },
    /// `recipient`'s client has received everything up to `seq`.
    Delivered {
        conversation_id: ConversationId,
        recipient: Participant,
        seq: u64,
    },
    /// The outcome of a `resume` entry of `hello`: the records after
    /// `after` follow (`replayed` of them); when `complete` is false the
    /// client was away longer than can be replayed and pages the rest
    /// (from `first_seq` down) with `history`.
    Resumed {
        conversation_id: ConversationId,
        after: u64,
        replayed: u64,
        complete: bool,
        first_seq: u64,
    },
    History {
        conversation_id: ConversationId,
        items: Vec<HistoryItem>,
        has_more: bool,
    },
    Assigned {
        conversation_id: ConversationId,
        visitor: Participant,
        last_seq: u64,
        /// A bot had it before: which, and why it handed it off.
        #[serde(default)]
        handed_off: Option<Handoff>,
    },
    Notice {
        text: String,
        sender: Participant,
    },
    /// Agents: the queue, whenever it changes: its first entries in
    /// serving order, and every team's count.
    Queue {
        entries: Vec<QueueEntry>,
        #[serde(default)]
        teams: Vec<TeamQueue>,
        #[serde(default)]
        total: u32,
    },
    /// Agents: answer to `list_missed` (`asked`), or the first page sent
    /// unasked on connecting and whenever the list changes; oldest first;
    /// `has_more` when a next page follows (ask `after` the last entry's
    /// conversation).
    Missed {
        entries: Vec<MissedEntry>,
        #[serde(default)]
        has_more: bool,
        /// True in the answer to a `list_missed`, false when sent unasked:
        /// a client paging through the list tells its pages apart.
        #[serde(default)]
        asked: bool,
    },
    Error {
        code: ErrorCode,
        message: String,
        #[serde(rename = "ref")]
        reference: Option<String>,
    },
}

impl ServerFrame {
    pub fn error(code: ErrorCode, message: impl Into<String>, reference: Option<String>) -> Self {
        ServerFrame::Error {
            code,
            message: message.into(),
            reference,
        }
    }

    /// The frame a stored record is delivered as to a `viewer`.
    pub fn from_record(record: &ChatRecord, viewer: &Role) -> Self {
        match HistoryItem::for_viewer(record, viewer) {
            HistoryItem::Message(m) => ServerFrame::Message(m),
            HistoryItem::Event(e) => ServerFrame::Event(e),
        }
    }

    /// Serializes to the JSON text of a WebSocket frame.
    pub fn to_json(&self) -> String {
        // Serializing these types cannot fail: every key is a string and
        // every value plain data.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{\"type\":\"error\"}"))
    }
}

impl HistoryItem {
    /// A record as `viewer` may see it: what is internal to the support
    /// team (see [`for_visitor`]) never reaches a visitor.
    pub fn for_viewer(record: &ChatRecord, viewer: &Role) -> Self {
        match &record.body {
            RecordBody::Message { text, client_id } => HistoryItem::Message(MessageFrame {
                conversation_id: record.conversation_id.clone(),
                seq: record.seq,
                id: record.id.clone(),
                client_id: client_id.clone(),
                sender: record.sender.clone(),
                text: text.clone(),
                sent_at: rfc3339(record.sent_at),
            }),
            RecordBody::Event { event } => HistoryItem::Event(EventFrame {
                conversation_id: record.conversation_id.clone(),
                seq: record.seq,
                id: record.id.clone(),
                event: match viewer {
                    Role::Visitor => for_visitor(event),
                    _ => event.clone(),
                },
                by: record.sender.clone(),
                at: rfc3339(record.sent_at),
            }),
        }
    }
}

/// An event as a visitor sees it: the support team's internals are left
/// out — an assignment's audit trail (the other agents considered, their
/// loads and capacities), a transfer's note, and a private note's text (the
/// visitor gets the `note` event without it, so that `seq` stays dense). Everything else a visitor
/// is told as it is stored, a bot's handoff included: which bot, and why
/// (the visitor asked, the bot asked, it did not answer, it is gone) — the
/// visitor was there, and the reason explains the wait that follows.
pub fn for_visitor(event: &ConversationEvent) -> ConversationEvent {
    match event {
        ConversationEvent::Assigned {
            agent, handed_off, ..
        } => ConversationEvent::Assigned {
            agent: agent.clone(),
            reason: None,
            handed_off: handed_off.clone(),
        },
        ConversationEvent::Transferred {
            from,
            to_agent,
            to_team,
            ..
        } => ConversationEvent::Transferred {
            from: from.clone(),
            to_agent: to_agent.clone(),
            to_team: to_team.clone(),
            note: None,
        },
        ConversationEvent::Note { .. } => ConversationEvent::Note { text: None },
        ConversationEvent::Opened { .. }
        | ConversationEvent::Queued { .. }
        | ConversationEvent::AgentLeft { .. }
        | ConversationEvent::Closed {}
        | ConversationEvent::Reopened {}
        | ConversationEvent::Rated { .. }
        | ConversationEvent::LeftMessage { .. }
        | ConversationEvent::PickedUp { .. }
        | ConversationEvent::HandedOff { .. }
        | ConversationEvent::Renamed { .. } => event.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::VisitorId;

    #[test]
    fn parses_client_frames() {
        let hello: ClientFrame =
            serde_json::from_str(r#"{"type":"hello","token":"t","resume":{"c_1":4}}"#).unwrap();
        let ClientFrame::Hello { resume, .. } = hello else {
            panic!("not hello")
        };
        assert_eq!(resume[&ConversationId::new("c_1").unwrap()], 4);
        let send: ClientFrame = serde_json::from_str(
            r#"{"type":"send","conversation_id":"c_1","client_id":"x","text":"hi"}"#,
        )
        .unwrap();
        assert_eq!(send.kind(), "send");
    }

    #[test]
    fn rejects_bad_ids_and_unknown_types() {
        for bad in [
            r#"{"type":"send","conversation_id":"c.1","client_id":"x","text":"hi"}"#,
            r#"{"type":"send","conversation_id":"c*","client_id":"x","text":"hi"}"#,
            r#"{"type":"hello","token":"t","resume":{"a>b":1}}"#,
            r#"{"type":"launch"}"#,
            r#"{"type":"status","status":"asleep"}"#,
        ] {
            assert!(serde_json::from_str::<ClientFrame>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn event_frames_flatten_their_data() {
        let record = ChatRecord {
            id: MessageId::new("m_1").unwrap(),
            conversation_id: ConversationId::new("c_1").unwrap(),
            seq: 2,
            sender: Participant::system("router"),
            sent_at: 0,
            body: RecordBody::Event {
                event: ConversationEvent::Queued {
                    position: 3,
                    estimated_wait_secs: None,
                    agents_online: None,
                },
            },
        };
        let json: serde_json::Value =
            serde_json::from_str(&ServerFrame::from_record(&record, &Role::Agent).to_json())
                .unwrap();
        assert_eq!(json["type"], "event");
        assert_eq!(json["event"], "queued");
        assert_eq!(json["position"], 3);
        assert_eq!(json["seq"], 2);
        assert_eq!(json["by"]["role"], "system");
    }

    #[test]
    fn transfer_notes_are_for_agents_only() {
        let record = ChatRecord {
            id: MessageId::new("m_1").unwrap(),
            conversation_id: ConversationId::new("c_1").unwrap(),
            seq: 4,
            sender: Participant::system("a"),
            sent_at: 0,
            body: RecordBody::Event {
                event: ConversationEvent::Transferred {
                    from: Participant::system("a"),
                    to_agent: None,
                    to_team: Some(TeamId::new("billing").unwrap()),
                    note: Some("angry about the refund".into()),
                },
            },
        };
        let agent = ServerFrame::from_record(&record, &Role::Agent).to_json();
        let visitor = ServerFrame::from_record(&record, &Role::Visitor).to_json();
        assert!(agent.contains("angry about the refund"));
        assert!(!visitor.contains("angry"), "{visitor}");
        assert!(visitor.contains("billing"));
    }

    #[test]
    fn visitors_see_who_handed_off_and_why_but_no_audit_trail() {
        let handoff: ClientFrame =
            serde_json::from_str(r#"{"type":"handoff","conversation_id":"c_1"}"#).unwrap();
        assert_eq!(handoff.kind(), "handoff");
        let bot = Participant {
            role: Role::Bot,
            id: "faq".into(),
            name: "FAQ".into(),
        };
        let record = ChatRecord {
            id: MessageId::new("m_1").unwrap(),
            conversation_id: ConversationId::new("c_1").unwrap(),
            seq: 6,
            sender: Participant::system("router"),
            sent_at: 0,
            body: RecordBody::Event {
                event: ConversationEvent::Assigned {
                    agent: Participant::agent(&AgentId::new("a_1").unwrap(), "Al"),
                    reason: Some(crate::payloads::AssignmentReason {
                        strategy: "least_busy".into(),
                        candidates: Vec::new(),
                    }),
                    handed_off: Some(Handoff {
                        from: bot,
                        reason: "no_answer".into(),
                    }),
                },
            },
        };
        let visitor: serde_json::Value =
            serde_json::from_str(&ServerFrame::from_record(&record, &Role::Visitor).to_json())
                .unwrap();
        assert!(visitor["reason"].is_null());
        assert_eq!(visitor["handed_off"]["reason"], "no_answer");
        assert_eq!(visitor["handed_off"]["from"]["role"], "bot");
        let agent = ServerFrame::from_record(&record, &Role::Agent).to_json();
        assert!(agent.contains("least_busy") && agent.contains("no_answer"));
    }

    #[test]
    fn private_notes_reach_visitors_without_their_text() {
        let record = ChatRecord {
            id: MessageId::new("m_1").unwrap(),
            conversation_id: ConversationId::new("c_1").unwrap(),
            seq: 5,
            sender: Participant::agent(&AgentId::new("a_1").unwrap(), "Al"),
            sent_at: 0,
            body: RecordBody::Event {
                event: ConversationEvent::Note {
                    text: Some("VIP, refund approved".into()),
                },
            },
        };
        let agent = ServerFrame::from_record(&record, &Role::Agent).to_json();
        assert!(agent.contains("VIP, refund approved"), "{agent}");
        let visitor: serde_json::Value =
            serde_json::from_str(&ServerFrame::from_record(&record, &Role::Visitor).to_json())
                .unwrap();
        assert_eq!(visitor["event"], "note");
        assert_eq!(visitor["seq"], 5);
        assert!(visitor["text"].is_null(), "{visitor}");
        let note: ClientFrame = serde_json::from_str(
            r#"{"type":"note","conversation_id":"c_1","client_id":"n1","text":"hi"}"#,
        )
        .unwrap();
        assert_eq!(note.kind(), "note");
    }

    #[test]
    fn message_frames_carry_sender() {
        let record = ChatRecord {
            id: MessageId::new("m_1").unwrap(),
            conversation_id: ConversationId::new("c_1").unwrap(),
            seq: 1,
            sender: Participant::visitor(&VisitorId::new("v_1").unwrap(), "Ann"),
            sent_at: 0,
            body: RecordBody::Message {
                text: "<b>x</b>".into(),
                client_id: "k".into(),
            },
        };
        let json: serde_json::Value =
            serde_json::from_str(&ServerFrame::from_record(&record, &Role::Agent).to_json())
                .unwrap();
        assert_eq!(json["type"], "message");
        assert_eq!(json["text"], "<b>x</b>");
        assert_eq!(json["sender"]["id"], "v_1");
    }
}
