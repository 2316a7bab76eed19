//! Every NATS subject, stream and KV bucket name of Switchboard. No other
//! crate writes one of these strings; they call the functions here with
//! validated ids, so no subject is ever built from unchecked input.

use crate::ids::{AgentId, ConversationId};

/// The stream holding every conversation's log (messages and events).
pub const CHAT_STREAM: &str = "CHAT";
/// Subjects stored by [`CHAT_STREAM`], one per conversation.
pub const CHAT_SUBJECTS: &str = "chat.conv.*";
/// RePublish source and destination for live fan-out.
pub const LIVE_REPUBLISH_SOURCE: &str = "chat.conv.*";
pub const LIVE_REPUBLISH_DEST: &str = "conv.{{wildcard(1)}}.live";
/// Header of every stored record: the stream sequence of the record
/// before it in the same conversation (`0` when the stream holds none), so
/// that a reader can walk a conversation backwards from its last record
/// one direct get per record.
pub const PREVIOUS_HEADER: &str = "Switchboard-Previous";
/// Every conversation's live records (for a bot that watches them all).
pub const ALL_LIVE: &str = "conv.*.live";
/// Broadcast notices for every online agent / visitor.
pub const NOTICE_AGENTS: &str = "notice.agents";
pub const NOTICE_VISITORS: &str = "notice.visitors";
/// Queue snapshots published by routers.
pub const QUEUE_SNAPSHOT: &str = "queue.snapshot";
/// Request/reply service of the archiver for history older than the stream.
pub const ARCHIVE_HISTORY: &str = "archive.history";
/// Request/reply service of the archivers: statistics over the archive
/// (`StatsRequest` → `StatsReply`).
pub const ARCHIVE_STATS: &str = "archive.stats";
/// Queue group of the archivers' services: one archiver answers each request.
pub const ARCHIVER_GROUP: &str = "archiver";
/// Durable consumer of the archiver on [`CHAT_STREAM`].
pub const ARCHIVER_CONSUMER: &str = "archiver";

/// KV bucket names.
pub mod buckets {
    /// Agent accounts, key = agent id.
    pub const AGENTS: &str = "agents";
    /// Login name (encoded with [`super::login_key`]) → agent id.
    pub const LOGINS: &str = "logins";
    /// Agent connections' presence, key = `<agent_id>.<connection>`.
    pub const PRESENCE: &str = "presence";
    /// Conversations held by each agent, key = agent id.
    pub const LOAD: &str = "load";
    /// Routing state of each conversation, key = conversation id.
    pub const CONVERSATIONS: &str = "conversations";
    /// A visitor's open conversation, key = visitor id.
    pub const VISITORS: &str = "visitors";
    /// How far each participant has read, key from [`super::read_key`].
    pub const READS: &str = "reads";
    /// Missed conversations waiting to be picked up, key = conversation id.
    pub const MISSED: &str = "missed";
    /// Revoked tokens (logged out), by token id, until they would have
    /// expired anyway.
    pub const REVOKED: &str = "revoked";
}

/// Revocations every edge obeys at once: a token logged out, an agent
/// disabled or removed ([`crate::payloads::Revocation`]).
pub const CONTROL_REVOKE: &str = "control.revoke";

/// Where a conversation's records are stored: `chat.conv.<id>`.
pub fn conversation(id: &ConversationId) -> String {
    format!("chat.conv.{id}")
}

/// Where stored records are republished for live delivery: `conv.<id>.live`.
pub fn live(id: &ConversationId) -> String {
    format!("conv.{id}.live")
}

/// Ephemeral typing indicators and read receipts: `conv.<id>.signal`.
pub fn signal(id: &ConversationId) -> String {
    format!("conv.{id}.signal")
}

/// Everything live of one conversation, [`live`] and [`signal`] both:
/// `conv.<id>.*`. An edge needs one subscription per conversation.
pub fn conversation_feed(id: &ConversationId) -> String {
    format!("conv.{id}.*")
}

/// Whether a subject of [`conversation_feed`] carries signals (else
/// records).
pub fn is_signal(subject: &str) -> bool {
    subject.ends_with(".signal")
}

/// Notices for one agent's edges: `inbox.agent.<id>`.
pub fn agent_inbox(id: &AgentId) -> String {
    format!("inbox.agent.{id}")
}

/// The conversation a `chat.conv.*`, `conv.*.live` or `conv.*.signal`
/// subject belongs to.
pub fn parse_conversation(subject: &str) -> Option<ConversationId> {
    let rest = subject.strip_prefix("chat.conv.").or_else(|| {
        subject
            .strip_prefix("conv.")?
            .strip_suffix(".live")
            .or_else(|| subject.strip_prefix("conv.")?.strip_suffix(".signal"))
    })?;
    ConversationId::new(rest).ok()
}

/// Read-mark key of one participant in one conversation. Participant ids
/// are validated ids, unique across roles by their prefix.
pub fn read_key(conversation: &ConversationId, participant_id: &str) -> String {
    format!("{conversation}.{participant_id}")
}

/// Presence key of one agent connection.
pub fn presence_key(agent: &AgentId, connection: &str) -> String {
    format!("{agent}.{connection}")
}

/// The agent a presence key belongs to.
pub fn parse_presence_key(key: &str) -> Option<AgentId> {
    let (agent, _) = key.split_once('.')?;
    AgentId::new(agent).ok()
}

/// KV key for a login name: lowercase hex of its UTF-8 bytes, so any login
/// (an e-mail address, say) is a valid key.
pub fn login_key(login: &str) -> String {
    use std::fmt::Write;
    login
        .trim()
        .to_lowercase()
        .bytes()
        .fold(String::from("l"), |mut key, b| {
            let _ = write!(key, "{b:02x}");
            key
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_subjects_roundtrip() {
        let id = ConversationId::new("c_42").unwrap();
        assert_eq!(conversation(&id), "chat.conv.c_42");
        for subject in [conversation(&id), live(&id), signal(&id)] {
            assert_eq!(parse_conversation(&subject), Some(id.clone()));
        }
        assert_eq!(parse_conversation("chat.conv.a.b"), None);
        assert_eq!(parse_conversation("other.c_42"), None);
        assert_eq!(parse_conversation("conv.c_42.other"), None);
        assert!(is_signal(&signal(&id)) && !is_signal(&live(&id)));
        // One subscription to the feed receives both.
        assert_eq!(conversation_feed(&id), "conv.c_42.*");
    }

    #[test]
    fn presence_keys_roundtrip() {
        let agent = AgentId::new("a_1").unwrap();
        let key = presence_key(&agent, "e1-77");
        assert_eq!(parse_presence_key(&key), Some(agent));
    }

    #[test]
    fn login_keys_are_case_insensitive_and_safe() {
        assert_eq!(login_key("Ann@Example.com"), login_key(" ann@example.com"));
        assert!(login_key("a.b*>")
            .bytes()
            .all(|b| b.is_ascii_alphanumeric()));
    }
}
