//! Scripted conversations with chosen times: records built with the
//! `sent_at` a test picks and published straight to the `CHAT` stream (as a
//! bot would), so the real archiver archives them exactly as if they had
//! happened then. No waiting for time to pass.

use switchboard_bus::Backbone;
use switchboard_protocol::ids::{AgentId, ConversationId, MessageId, TeamId};
use switchboard_protocol::payloads::{
    encode, ChatRecord, ConversationEvent, Participant, RecordBody, Role,
};
use switchboard_protocol::subjects;

/// One conversation's records, times in seconds after its start.
pub struct Script {
    pub id: ConversationId,
    start_ms: i64,
    visitor: Participant,
    pub records: Vec<ChatRecord>,
}

/// A human agent as a participant.
pub fn agent(id: &AgentId, name: &str) -> Participant {
    Participant::agent(id, name)
}

/// A bot as a participant.
pub fn bot(id: &str) -> Participant {
    Participant {
        role: Role::Bot,
        id: id.to_owned(),
        name: format!("Bot {id}"),
    }
}

fn router() -> Participant {
    Participant::system("router")
}

impl Script {
    /// A conversation opened at `start` (RFC 3339), with its team.
    pub fn opened(start: &str, team: Option<&str>) -> Self {
        let start_ms = humantime::parse_rfc3339(start)
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64)
            .unwrap_or_else(|| panic!("not an RFC 3339 time: {start}"));
        let id = ConversationId::generate();
        let visitor = Participant {
            role: Role::Visitor,
            id: format!("v_{}", &id.as_str()[2..]),
            name: "Visitor".into(),
        };
        let script = Self {
            id,
            start_ms,
            visitor: visitor.clone(),
            records: Vec::new(),
        };
        script.event(
            0,
            visitor.clone(),
            ConversationEvent::Opened {
                visitor,
                team: team.map(|t| TeamId::new(t).unwrap_or_else(|e| panic!("team: {e}"))),
            },
        )
    }

    fn push(mut self, secs: i64, sender: Participant, body: RecordBody) -> Self {
        self.records.push(ChatRecord {
            id: MessageId::generate(),
            conversation_id: self.id.clone(),
            seq: self.records.len() as u64 + 1,
            sender,
            sent_at: self.start_ms + secs * 1000,
            body,
        });
        self
    }

    pub fn event(self, secs: i64, sender: Participant, event: ConversationEvent) -> Self {
        self.push(secs, sender, RecordBody::Event { event })
    }

    /// A message from `sender`.
    pub fn says(self, secs: i64, sender: Participant) -> Self {
        let n = self.records.len();
        self.push(
            secs,
            sender,
            RecordBody::Message {
                text: format!("message {n}"),
                client_id: format!("k{n}"),
            },
        )
    }

    /// A message from the visitor.
    pub fn visitor_says(self, secs: i64) -> Self {
        let visitor = self.visitor.clone();
        self.says(secs, visitor)
    }

    pub fn assigned(self, secs: i64, agent: Participant) -> Self {
        self.event(
            secs,
            router(),
            ConversationEvent::Assigned {
                agent,
                reason: None,
                handed_off: None,
            },
        )
    }

    pub fn closed_by(self, secs: i64, by: Participant) -> Self {
        self.event(secs, by, ConversationEvent::Closed {})
    }

    pub fn closed_by_visitor(self, secs: i64) -> Self {
        let visitor = self.visitor.clone();
        self.closed_by(secs, visitor)
    }

    pub fn rated(self, secs: i64, score: u8) -> Self {
        let visitor = self.visitor.clone();
        self.event(
            secs,
            visitor,
            ConversationEvent::Rated {
                score,
                comment: None,
            },
        )
    }

    pub fn reopened(self, secs: i64) -> Self {
        let visitor = self.visitor.clone();
        self.event(secs, visitor, ConversationEvent::Reopened {})
    }

    pub fn left_message(self, secs: i64) -> Self {
        let visitor = self.visitor.clone();
        self.event(
            secs,
            visitor,
            ConversationEvent::LeftMessage {
                name: None,
                email: None,
            },
        )
        .visitor_says(secs)
    }

    pub fn handed_off(self, secs: i64, from: Participant, reason: &str) -> Self {
        self.event(
            secs,
            from.clone(),
            ConversationEvent::HandedOff {
                from,
                reason: reason.to_owned(),
            },
        )
    }

    pub fn transferred_to_team(self, secs: i64, from: Participant, team: &str) -> Self {
        self.event(
            secs,
            from.clone(),
            ConversationEvent::Transferred {
                from,
                to_agent: None,
                to_team: Some(TeamId::new(team).unwrap_or_else(|e| panic!("team: {e}"))),
                note: None,
            },
        )
    }

    /// The last `seq`.
    pub fn last_seq(&self) -> u64 {
        self.records.len() as u64
    }

    /// Publishes the records to the conversation's subject of the `CHAT`
    /// stream, in order, each acknowledged by JetStream.
    pub async fn publish(&self, backbone: &Backbone) {
        let subject = subjects::conversation(&self.id);
        for record in &self.records {
            let payload = encode(record).unwrap_or_else(|e| panic!("encode: {e}"));
            backbone
                .js
                .publish(subject.clone(), payload.into())
                .await
                .unwrap_or_else(|e| panic!("publish: {e}"))
                .await
                .unwrap_or_else(|e| panic!("stored: {e}"));
        }
    }
}
