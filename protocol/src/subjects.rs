//! Every NATS subject, stream and KV bucket name of Switchboard. No other
//! crate writes one of these strings; they call the functions here with
//! validated ids, so no subject is ever built from unchecked input.

use crate::bots::BotCall;
use crate::ids::{AgentId, BotId, ConversationId, StreamId};

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
/// Request/reply service of the archivers: conversations of the archive
/// by visitor, agent or words (`ArchiveSearch` → `ArchiveSearchReply`).
pub const ARCHIVE_SEARCH: &str = "archive.search";
/// Request/reply service of the archivers: who may read a conversation
/// that has left KV (`ArchivedConversationRequest` →
/// `ArchivedConversationReply`).
pub const ARCHIVE_CONVERSATION: &str = "archive.conversation";
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
    /// Bot accounts, key = bot id.
    pub const BOTS: &str = "bots";
    /// Bots' last presence announcement, key = bot id.
    pub const BOT_PRESENCE: &str = "bot_presence";
    /// Teams' settings edited by admins, key = team id.
    pub const TEAMS: &str = "teams";
    /// Canned responses, key = shortcut.
    pub const CANNED: &str = "canned";
    /// Visitors' profiles, key = visitor id.
    pub const PROFILES: &str = "profiles";
    /// Routers' leases on partitions of the routing work and their
    /// membership, keys from [`super::lease_keys`].
    pub const LEASES: &str = "leases";
}

/// Keys of the [`buckets::LEASES`] bucket.
pub mod lease_keys {
    use crate::ids::TeamId;

    /// Prefix of the partitions' keys.
    pub const PARTITION_PREFIX: &str = "part.";
    /// Prefix of the routers' membership keys.
    pub const MEMBER_PREFIX: &str = "member.";
    /// The singleton duties (reconcile, requeue, idle close, bots'
    /// deadlines, queue snapshot): one router at a time does them.
    pub const DUTIES: &str = "duties";

    /// The partition of a team's queue (`part.team.<id>`, or `part.none`
    /// for conversations without a team).
    pub fn partition(team: Option<&TeamId>) -> String {
        match team {
            Some(team) => format!("{PARTITION_PREFIX}team.{}", team.as_str()),
            None => format!("{PARTITION_PREFIX}none"),
        }
    }

    /// A router's membership key.
    pub fn member(router_id: &str) -> String {
        format!("{MEMBER_PREFIX}{router_id}")
    }
}

/// Every call of the bot API, for the routers' one subscription:
/// `bot.api.<bot_id>.<call>`.
pub const ALL_BOT_API: &str = "bot.api.*.*";
/// Queue group of the routers' services: one router answers each request.
pub const ROUTER_GROUP: &str = "router";

/// A call of the bot API for one bot: `bot.api.<bot_id>.<call>`.
pub fn bot_api(bot: &BotId, call: BotCall) -> String {
    format!("bot.api.{bot}.{}", call.as_str())
}

/// The bot and the call of a [`bot_api`] subject; `None` for anything
/// else (an invalid bot id, an unknown call).
pub fn parse_bot_api(subject: &str) -> Option<(BotId, BotCall)> {
    let rest = subject.strip_prefix("bot.api.")?;
    let (bot, call) = rest.split_once('.')?;
    Some((BotId::new(bot).ok()?, BotCall::parse(call)?))
}

/// Whether a request of the bot API may be answered on `reply`: only an
/// inbox — the bot's own (`_INBOX_bot_<id>.…`, what a permissioned bot
/// user may subscribe to) or a client library's default (`_INBOX.…`). The
/// answerer publishes under its own user, which may write the buckets and
/// the stream: a reply subject a bot chose freely (`$KV.agents.<id>`, say)
/// would be a write on the bot's behalf.
pub fn is_bot_reply(bot: Option<&BotId>, reply: &str) -> bool {
    let own = bot.is_some_and(|bot| {
        reply
            .strip_prefix("_INBOX_bot_")
            .and_then(|rest| rest.strip_prefix(bot.as_str()))
            .is_some_and(|rest| rest.len() > 1 && rest.starts_with('.'))
    });
    let default = reply
        .strip_prefix("_INBOX.")
        .is_some_and(|rest| !rest.is_empty());
    (own || default) && !reply.contains(['*', '>', ' ', '\t', '\r', '\n'])
}

/// Notices for a bot (`BotNotice`): `inbox.bot.<id>`.
pub fn bot_inbox(bot: &BotId) -> String {
    format!("inbox.bot.{bot}")
}

/// The name of a bot's own durable consumer on [`CHAT_STREAM`]:
/// `bot-<id>`. Bot ids are validated ids, so this is a valid consumer name.
pub fn bot_consumer(bot: &BotId) -> String {
    format!("bot-{bot}")
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

/// Frames POSTed to an event-stream connection, routed to the edge
/// holding it (request/reply): `sse.<route>.<connection>`.
pub fn stream_post(route: &StreamId, connection: &StreamId) -> String {
    format!("sse.{route}.{connection}")
}

/// What one edge process subscribes to for the POSTs of its event
/// streams: `sse.<route>.*`.
pub fn stream_posts(route: &StreamId) -> String {
    format!("sse.{route}.*")
}

/// The connection a [`stream_post`] subject names.
pub fn parse_stream_post(subject: &str) -> Option<(StreamId, StreamId)> {
    let rest = subject.strip_prefix("sse.")?;
    let (route, connection) = rest.split_once('.')?;
    Some((StreamId::new(route).ok()?, StreamId::new(connection).ok()?))
}

/// Read-mark key of one participant in one conversation. Participant ids
/// are validated ids, unique across roles by their prefix.
pub fn read_key(conversation: &ConversationId, participant_id: &str) -> String {
    format!("{conversation}.{participant_id}")
}

/// The subjects under which a KV bucket stores its keys starting with
/// `prefix.` (for purging a conversation's read marks at once).
pub fn kv_subjects_under(bucket: &str, prefix: &str) -> String {
    format!("$KV.{bucket}.{prefix}.>")
}

/// The subject under which a KV bucket stores `key`.
pub fn kv_subject(bucket: &str, key: &str) -> String {
    format!("$KV.{bucket}.{key}")
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

/// The longest login, in bytes (trimmed, lowercased): an e-mail address's
/// limit.
pub const MAX_LOGIN_BYTES: usize = 254;

/// KV key for a login name: lowercase hex of its UTF-8 bytes, so any login
/// (an e-mail address, say) is a valid key. `None` for a login longer than
/// [`MAX_LOGIN_BYTES`]: no account has one, and its key would make a NATS
/// subject longer than the server accepts on one line (it closes the
/// client's connection for it).
pub fn login_key(login: &str) -> Option<String> {
    use std::fmt::Write;
    let login = login.trim().to_lowercase();
    if login.len() > MAX_LOGIN_BYTES {
        return None;
    }
    Some(login.bytes().fold(String::from("l"), |mut key, b| {
        let _ = write!(key, "{b:02x}");
        key
    }))
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
    fn bot_subjects_roundtrip() {
        let bot = BotId::new("faq-bot").unwrap();
        for call in BotCall::ALL {
            let subject = bot_api(&bot, call);
            assert_eq!(parse_bot_api(&subject), Some((bot.clone(), call)));
        }
        assert_eq!(bot_api(&bot, BotCall::Send), "bot.api.faq-bot.send");
        assert_eq!(parse_bot_api("bot.api.faq-bot.close"), None);
        assert_eq!(parse_bot_api("bot.api.a.b.send"), None);
        assert_eq!(parse_bot_api("bot.api.*.send"), None);
        assert_eq!(bot_inbox(&bot), "inbox.bot.faq-bot");
        assert_eq!(bot_consumer(&bot), "bot-faq-bot");
    }

    #[test]
    fn stream_post_subjects_roundtrip() {
        let route = StreamId::generate();
        let connection = StreamId::unguessable();
        assert!(connection.as_str().len() <= crate::ids::MAX_ID_LEN);
        let subject = stream_post(&route, &connection);
        assert_eq!(
            parse_stream_post(&subject),
            Some((route.clone(), connection))
        );
        assert_eq!(stream_posts(&route), format!("sse.{route}.*"));
        assert_eq!(parse_stream_post("sse.a.b.c"), None);
        assert_eq!(parse_stream_post("sse.a"), None);
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
            .unwrap()
            .bytes()
            .all(|b| b.is_ascii_alphanumeric()));
    }

    #[test]
    fn bots_are_answered_on_inboxes_only() {
        let faq = BotId::new("faq").unwrap();
        assert!(is_bot_reply(Some(&faq), "_INBOX_bot_faq.abc.1"));
        assert!(is_bot_reply(Some(&faq), "_INBOX.abc.1"));
        assert!(is_bot_reply(None, "_INBOX.abc"));
        for refused in [
            "$KV.agents.a_1",
            "chat.conv.c_1",
            "_INBOX_bot_faqx.abc",
            "_INBOX_bot_other.abc",
            "_INBOX_bot_faq.",
            "_INBOX.",
            "_INBOX.>",
            "_INBOX_edge.abc",
        ] {
            assert!(!is_bot_reply(Some(&faq), refused), "{refused}");
        }
        assert!(!is_bot_reply(None, "_INBOX_bot_faq.abc"));
    }

    #[test]
    fn an_over_long_login_has_no_key() {
        let longest = "a".repeat(MAX_LOGIN_BYTES);
        assert_eq!(
            login_key(&longest).map(|k| k.len()),
            Some(1 + 2 * MAX_LOGIN_BYTES)
        );
        assert_eq!(
            login_key(&format!(" {longest} ")).map(|k| k.len()),
            Some(509)
        );
        assert_eq!(login_key(&format!("{longest}a")), None);
        // Lowercasing may lengthen a login: the limit is on what is keyed.
        assert_eq!(login_key(&"\u{0130}".repeat(100)), None);
    }
}
