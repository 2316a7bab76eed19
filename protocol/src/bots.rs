//! The bot API: what a bot asks the routers on `bot.api.<bot_id>.<call>`
//! (core NATS request/reply, answered by one router of the queue group
//! [`crate::subjects::ROUTER_GROUP`]), and what they answer. A bot never
//! writes the stream or a bucket itself: it acts only through these calls,
//! and the router checks each one (see docs/bots.md).
//!
//! Every reply carries `error`: `nil` on success, otherwise a [`BotError`]
//! with a stable [`BotErrorCode`]. MessagePack maps with named fields, like
//! every payload.

use serde::{Deserialize, Serialize};

use crate::ids::{ConversationId, MessageId, TeamId};
use crate::payloads::{ChatRecord, Participant};

/// The calls of the bot API, the last token of their subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BotCall {
    /// [`SendRequest`] → [`SendReply`]: post a message.
    Send,
    /// [`HandoffRequest`] → [`HandoffReply`]: give the conversation to
    /// the humans.
    Handoff,
    /// [`PresenceRequest`] → [`PresenceReply`]: "I am running".
    Presence,
    /// [`ConversationsRequest`] → [`ConversationsReply`]: what the bot
    /// holds, and what waits in it.
    Conversations,
}

impl BotCall {
    pub const ALL: [BotCall; 4] = [
        BotCall::Send,
        BotCall::Handoff,
        BotCall::Presence,
        BotCall::Conversations,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            BotCall::Send => "send",
            BotCall::Handoff => "handoff",
            BotCall::Presence => "presence",
            BotCall::Conversations => "conversations",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|call| call.as_str() == name)
    }
}

/// Why a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BotErrorCode {
    /// The request is not this call's payload, or a field breaks a rule
    /// (blank text, an invalid key).
    BadRequest,
    /// No bot account has the subject's bot id (`switchboard bot add`).
    UnknownBot,
    /// No such conversation.
    NotFound,
    /// The conversation is not (or no longer) this bot's: a human or the
    /// queue has it, or it is closed.
    NotOwner,
    /// `text` is longer than the edges accept (`edge.max_text_chars`).
    TooLarge,
    /// The backbone did not answer; retry the same request.
    Unavailable,
}

impl BotErrorCode {
    pub fn as_str(&self) -> &'static str {
        match self {
            BotErrorCode::BadRequest => "bad_request",
            BotErrorCode::UnknownBot => "unknown_bot",
            BotErrorCode::NotFound => "not_found",
            BotErrorCode::NotOwner => "not_owner",
            BotErrorCode::TooLarge => "too_large",
            BotErrorCode::Unavailable => "unavailable",
        }
    }
}

/// A refused call: a stable `code` and a message for humans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BotError {
    pub code: BotErrorCode,
    pub message: String,
}

impl BotError {
    pub fn new(code: BotErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for BotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for BotError {}

/// `send`: post `text` into a conversation the bot holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendRequest {
    pub conversation_id: ConversationId,
    pub text: String,
    /// The idempotency key, derived from the record answered (for example
    /// `re-<seq>`): 1–64 visible ASCII characters. Stored as the message's
    /// `client_id`; the same key is never stored twice in a conversation.
    pub key: String,
}

/// The answer to `send`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendReply {
    /// The stored message (the original one when the key was used before).
    #[serde(default)]
    pub sent: Option<Sent>,
    #[serde(default)]
    pub error: Option<BotError>,
}

/// A stored message of the bot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    pub id: MessageId,
    pub seq: u64,
    /// Unix milliseconds.
    pub sent_at: i64,
    /// The key had been used before: nothing new was stored, and this is
    /// the original message.
    pub duplicate: bool,
}

/// `handoff`: give a conversation the bot holds to the humans (reason
/// `bot_asked`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoffRequest {
    pub conversation_id: ConversationId,
}

/// The answer to `handoff`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoffReply {
    #[serde(default)]
    pub error: Option<BotError>,
}

/// `presence`: the bot is running. Sent every `every_ms` of the reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceRequest {
    /// What the bot calls this process (a host name, say); for operators.
    #[serde(default)]
    pub instance: Option<String>,
}

/// The answer to `presence`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceReply {
    /// Announce again within this many milliseconds to stay present.
    #[serde(default)]
    pub every_ms: u64,
    /// The bot's answer deadline (`router.bot_reply_deadline`), in ms.
    #[serde(default)]
    pub reply_deadline_ms: u64,
    #[serde(default)]
    pub error: Option<BotError>,
}

/// `conversations`: what the bot holds (all of it, or one conversation).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationsRequest {
    /// Only this one (read from the routing state itself, so it is exact
    /// right after its `assigned` notice).
    #[serde(default)]
    pub conversation_id: Option<ConversationId>,
}

/// The answer to `conversations`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationsReply {
    #[serde(default)]
    pub conversations: Vec<HeldConversation>,
    #[serde(default)]
    pub error: Option<BotError>,
}

/// A conversation the bot holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldConversation {
    pub conversation_id: ConversationId,
    pub visitor: Participant,
    #[serde(default)]
    pub team: Option<TeamId>,
    /// Unix milliseconds.
    pub assigned_at: i64,
    /// The visitor's messages no message of the bot has followed yet, in
    /// `seq` order (at most the newest 50): what the bot has to answer.
    pub waiting: Vec<ChatRecord>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payloads::{decode, encode};

    #[test]
    fn calls_parse_back() {
        for call in BotCall::ALL {
            assert_eq!(BotCall::parse(call.as_str()), Some(call));
        }
        assert_eq!(BotCall::parse("close"), None);
    }

    #[test]
    fn replies_are_maps_with_named_fields() {
        let reply = SendReply {
            sent: None,
            error: Some(BotError::new(BotErrorCode::NotOwner, "not yours")),
        };
        let bytes = encode(&reply).unwrap();
        let generic: serde_json::Value = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(generic["error"]["code"], "not_owner");
        assert!(generic["sent"].is_null());
        assert_eq!(decode::<SendReply>(&bytes).unwrap(), reply);
        // An empty map is a valid request where every field is optional.
        let empty = encode(&serde_json::json!({})).unwrap();
        assert_eq!(
            decode::<ConversationsRequest>(&empty).unwrap(),
            ConversationsRequest::default()
        );
        assert_eq!(
            decode::<PresenceRequest>(&empty).unwrap(),
            PresenceRequest::default()
        );
    }
}
