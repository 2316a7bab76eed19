//! Documents of the archive. These are the archiver's own structs (not the
//! wire types), so the archive's shape changes only on purpose.
//!
//! - `messages`: one document per record (messages and lifecycle events),
//!   `_id` = message id, unique index on (`conversation_id`, `seq`).
//! - `conversations`: one summary per conversation, for analytics.

use mongodb::bson::{self, doc, DateTime, Document};
use serde::{Deserialize, Serialize};
use switchboard_protocol::ids::{ConversationId, MessageId};
use switchboard_protocol::payloads::{
    ChatRecord, ConversationEvent, Participant, RecordBody, Role,
};

/// Who wrote a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SenderDoc {
    pub role: String,
    pub id: String,
    pub name: String,
}

/// One document of `messages`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub conversation_id: String,
    pub seq: i64,
    pub sender: SenderDoc,
    /// `message` or `event`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The event's name (`opened`, `assigned`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// The event with its data, as stored on the stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Document>,
    pub sent_at: DateTime,
}

/// A document could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("bson: {0}")]
    Bson(String),
    #[error("invalid archived document {id}: {reason}")]
    Invalid { id: String, reason: String },
}

impl MessageDoc {
    /// The archived form of a record.
    ///
    /// # Errors
    /// When the event cannot be expressed in BSON (never for shipped events).
    pub fn from_record(record: &ChatRecord) -> Result<Self, ConvertError> {
        let (kind, text, client_id, event, data) = match &record.body {
            RecordBody::Message { text, client_id } => (
                "message",
                Some(text.clone()),
                Some(client_id.clone()),
                None,
                None,
            ),
            RecordBody::Event { event } => (
                "event",
                None,
                None,
                Some(event.name().to_owned()),
                Some(bson::to_document(event).map_err(|e| ConvertError::Bson(e.to_string()))?),
            ),
        };
        Ok(Self {
            id: record.id.to_string(),
            conversation_id: record.conversation_id.to_string(),
            seq: i64::try_from(record.seq).unwrap_or(i64::MAX),
            sender: SenderDoc {
                role: record.sender.role.as_str().to_owned(),
                id: record.sender.id.clone(),
                name: record.sender.name.clone(),
            },
            kind: kind.to_owned(),
            text,
            client_id,
            event,
            data,
            sent_at: DateTime::from_millis(record.sent_at),
        })
    }

    /// The record an archived document was made from.
    ///
    /// # Errors
    /// [`ConvertError::Invalid`] for a document this version cannot read.
    pub fn into_record(self) -> Result<ChatRecord, ConvertError> {
        let invalid = |reason: &str| ConvertError::Invalid {
            id: self.id.clone(),
            reason: reason.to_owned(),
        };
        let role = match self.sender.role.as_str() {
            "visitor" => Role::Visitor,
            "agent" => Role::Agent,
            "system" => Role::System,
            "bot" => Role::Bot,
            _ => return Err(invalid("unknown sender role")),
        };
        let body = match self.kind.as_str() {
            "message" => RecordBody::Message {
                text: self.text.clone().unwrap_or_default(),
                client_id: self.client_id.clone().unwrap_or_default(),
            },
            "event" => {
                let data = self
                    .data
                    .clone()
                    .ok_or_else(|| invalid("event without data"))?;
                let event: ConversationEvent =
                    bson::from_document(data).map_err(|e| invalid(&e.to_string()))?;
                RecordBody::Event { event }
            }
            _ => return Err(invalid("unknown kind")),
        };
        Ok(ChatRecord {
            id: MessageId::new(self.id.as_str()).map_err(|e| invalid(&e.to_string()))?,
            conversation_id: ConversationId::new(self.conversation_id.as_str())
                .map_err(|e| invalid(&e.to_string()))?,
            seq: u64::try_from(self.seq).map_err(|_| invalid("negative seq"))?,
            sender: Participant {
                role,
                id: self.sender.id,
                name: self.sender.name,
            },
            sent_at: self.sent_at.timestamp_millis(),
            body,
        })
    }
}

/// The summary update for records of one conversation not yet applied,
/// in ascending `seq`: `$set` (latest values), `$min` (first times) and
/// `$addToSet` (agents) parts. Counts are not here: fresh records add
/// theirs ([`count_records`]), and after a redelivery they are counted
/// again from the `messages` collection ([`count_fields`]), so a record is
/// never counted twice or missed.
pub fn summary_update(records: &[&ChatRecord]) -> Document {
    let mut set = Document::new();
    let mut min = Document::new();
    let mut agents = Vec::new();
    for record in records {
        let at = DateTime::from_millis(record.sent_at);
        set.insert("last_activity_at", at);
        match &record.body {
            RecordBody::Message { .. } => {
                if record.sender.role == Role::Agent {
                    min.insert("first_response_at", at);
                }
            }
            RecordBody::Event { event } => match event {
                ConversationEvent::Opened { visitor, team } => {
                    set.insert("visitor", doc! { "id": &visitor.id, "name": &visitor.name });
                    if let Some(team) = team {
                        set.insert("team", team.as_str());
                    }
                    min.insert("created_at", at);
                    set.insert("status", "queued");
                }
                ConversationEvent::Queued { .. } => {
                    min.insert("queued_at", at);
                }
                ConversationEvent::Assigned { agent, .. } => {
                    min.insert("assigned_at", at);
                    set.insert("agent", doc! { "id": &agent.id, "name": &agent.name });
                    agents.push(doc! { "id": &agent.id, "name": &agent.name });
                    set.insert("status", "assigned");
                }
                ConversationEvent::Closed {} => {
                    set.insert("closed_at", at);
                    set.insert(
                        "closed_by",
                        doc! { "role": record.sender.role.as_str(), "id": &record.sender.id },
                    );
                    set.insert("status", "closed");
                }
                ConversationEvent::AgentLeft { .. }
                | ConversationEvent::Transferred { .. }
                | ConversationEvent::HandedOff { .. } => {
                    set.insert("status", "queued");
                }
                ConversationEvent::Reopened {} => {
                    set.insert("reopened_at", at);
                    set.insert("status", "queued");
                }
                ConversationEvent::LeftMessage { name, email } => {
                    set.insert("status", "missed");
                    set.insert("missed_at", at);
                    if let Some(name) = name {
                        set.insert("contact_name", name.as_str());
                    }
                    if let Some(email) = email {
                        set.insert("contact_email", email.as_str());
                    }
                }
                ConversationEvent::PickedUp { agent } => {
                    set.insert("status", "queued");
                    set.insert(
                        "picked_up_by",
                        doc! { "id": &agent.id, "name": &agent.name },
                    );
                    set.insert("picked_up_at", at);
                }
                // Kept in `messages` with the rest of the log.
                ConversationEvent::Note { .. } => {}
                // The archive's list and search show the name it has now.
                ConversationEvent::Renamed { visitor, .. } => {
                    set.insert("visitor", doc! { "id": &visitor.id, "name": &visitor.name });
                }
                ConversationEvent::Rated { score, comment } => {
                    set.insert("rating", i32::from(*score));
                    if let Some(comment) = comment {
                        set.insert("rating_comment", comment.as_str());
                    }
                    set.insert("rated_at", at);
                }
            },
        }
    }
    // `created_at` may be unknown when the conversation's opening was not
    // archived (older than anything kept); analytics still see the rest.
    let mut update = doc! {};
    if !set.is_empty() {
        update.insert("$set", set);
    }
    if !min.is_empty() {
        update.insert("$min", min);
    }
    if !agents.is_empty() {
        update.insert("$addToSet", doc! { "agents": { "$each": agents } });
    }
    update
}

/// The counts fresh records add to the summary (`$inc`).
pub fn count_records(records: &[&ChatRecord]) -> Document {
    let groups: Vec<Document> = records
        .iter()
        .map(|r| {
            let (kind, event) = match &r.body {
                RecordBody::Message { .. } => ("message", None),
                RecordBody::Event { event } => ("event", Some(event.name())),
            };
            let mut key = doc! { "kind": kind, "role": r.sender.role.as_str() };
            if let Some(event) = event {
                key.insert("event", event);
            }
            doc! { "_id": key, "n": 1_i64 }
        })
        .collect();
    count_fields(&groups)
}

/// The summary's counts from a `$group` by kind, sender role and event
/// over the conversation's archived records (`_id` = {kind, role, event}).
pub fn count_fields(groups: &[Document]) -> Document {
    let mut counts = doc! {
        "message_count": 0_i64,
        "visitor_message_count": 0_i64,
        "agent_message_count": 0_i64,
        "requeue_count": 0_i64,
        "transfer_count": 0_i64,
        "reopen_count": 0_i64,
    };
    for group in groups {
        let Ok(key) = group.get_document("_id") else {
            continue;
        };
        let n = match group.get("n") {
            Some(bson::Bson::Int32(n)) => i64::from(*n),
            Some(bson::Bson::Int64(n)) => *n,
            Some(bson::Bson::Double(n)) => *n as i64,
            _ => 0,
        };
        let mut add = |field: &str| {
            let total = counts.get_i64(field).unwrap_or(0) + n;
            counts.insert(field, total);
        };
        match (
            key.get_str("kind"),
            key.get_str("role"),
            key.get_str("event"),
        ) {
            (Ok("message"), role, _) => {
                add("message_count");
                match role {
                    Ok("visitor") => add("visitor_message_count"),
                    Ok("agent") => add("agent_message_count"),
                    _ => {}
                }
            }
            (Ok("event"), _, Ok("agent_left")) => add("requeue_count"),
            (Ok("event"), _, Ok("transferred")) => add("transfer_count"),
            (Ok("event"), _, Ok("reopened")) => add("reopen_count"),
            _ => {}
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_protocol::ids::{AgentId, VisitorId};

    fn record(seq: u64, sender: Participant, body: RecordBody) -> ChatRecord {
        ChatRecord {
            id: MessageId::generate(),
            conversation_id: ConversationId::new("c_1").unwrap(),
            seq,
            sender,
            sent_at: 1_700_000_000_000 + seq as i64,
            body,
        }
    }

    #[test]
    fn documents_roundtrip() {
        let visitor = Participant::visitor(&VisitorId::new("v_1").unwrap(), "Ann");
        for r in [
            record(
                1,
                visitor.clone(),
                RecordBody::Event {
                    event: ConversationEvent::Opened {
                        visitor: visitor.clone(),
                        team: None,
                    },
                },
            ),
            record(
                2,
                visitor.clone(),
                RecordBody::Message {
                    text: "hi".into(),
                    client_id: "k".into(),
                },
            ),
            record(
                3,
                Participant::system("router"),
                RecordBody::Event {
                    event: ConversationEvent::Queued {
                        position: 2,
                        estimated_wait_secs: Some(12),
                        agents_online: Some(0),
                    },
                },
            ),
        ] {
            let doc = MessageDoc::from_record(&r).unwrap();
            let bson = bson::to_document(&doc).unwrap();
            let back: MessageDoc = bson::from_document(bson).unwrap();
            assert_eq!(back.into_record().unwrap(), r);
        }
    }

    #[test]
    fn summary_counts_and_times() {
        let visitor = Participant::visitor(&VisitorId::new("v_1").unwrap(), "Ann");
        let agent = Participant::agent(&AgentId::new("a_1").unwrap(), "Bo");
        let records = [
            record(
                1,
                visitor.clone(),
                RecordBody::Event {
                    event: ConversationEvent::Opened {
                        visitor: visitor.clone(),
                        team: None,
                    },
                },
            ),
            record(
                2,
                visitor.clone(),
                RecordBody::Message {
                    text: "q".into(),
                    client_id: "1".into(),
                },
            ),
            record(
                3,
                Participant::system("router"),
                RecordBody::Event {
                    event: ConversationEvent::Assigned {
                        agent: agent.clone(),
                        reason: None,
                        handed_off: None,
                    },
                },
            ),
            record(
                4,
                agent.clone(),
                RecordBody::Message {
                    text: "a".into(),
                    client_id: "2".into(),
                },
            ),
            record(
                5,
                agent.clone(),
                RecordBody::Event {
                    event: ConversationEvent::Closed {},
                },
            ),
        ];
        let refs: Vec<&ChatRecord> = records.iter().collect();
        let update = summary_update(&refs);
        assert!(update.get("$inc").is_none(), "counts come from the archive");
        let min = update.get_document("$min").unwrap();
        assert_eq!(
            min.get_datetime("first_response_at")
                .unwrap()
                .timestamp_millis(),
            1_700_000_000_004
        );
        let set = update.get_document("$set").unwrap();
        assert_eq!(set.get_str("status").unwrap(), "closed");
    }

    #[test]
    fn counts_come_from_groups() {
        let groups = [
            doc! { "_id": { "kind": "message", "role": "visitor" }, "n": 3_i32 },
            doc! { "_id": { "kind": "message", "role": "agent" }, "n": 2_i64 },
            doc! { "_id": { "kind": "event", "role": "system", "event": "agent_left" }, "n": 1_i32 },
            doc! { "_id": { "kind": "event", "role": "visitor", "event": "opened" }, "n": 1_i32 },
        ];
        let counts = count_fields(&groups);
        assert_eq!(counts.get_i64("message_count").unwrap(), 5);
        assert_eq!(counts.get_i64("visitor_message_count").unwrap(), 3);
        assert_eq!(counts.get_i64("agent_message_count").unwrap(), 2);
        assert_eq!(counts.get_i64("requeue_count").unwrap(), 1);
        assert_eq!(counts.get_i64("transfer_count").unwrap(), 0);
    }
}
