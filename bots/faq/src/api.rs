//! The bot's side of the bot API (docs/bots.md): one request per call on
//! `bot.api.<bot_id>.<call>`, answered by a router.

use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};
use switchboard_protocol::bots::{
    BotCall, BotError, BotErrorCode, ConversationsReply, ConversationsRequest, HandoffReply,
    HandoffRequest, HeldConversation, PresenceReply, PresenceRequest, SendReply, SendRequest, Sent,
};
use switchboard_protocol::ids::{BotId, ConversationId};
use switchboard_protocol::payloads::{decode, encode};
use switchboard_protocol::subjects;

/// A call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The router refused it (or no router could do it now).
    #[error("{call} refused: {error}")]
    Refused { call: &'static str, error: BotError },
    /// No router answered, or the answer was not the call's reply.
    #[error("{call}: {reason}")]
    Transport { call: &'static str, reason: String },
}

impl CallError {
    /// Whether trying again later may succeed (no router, the backbone
    /// unavailable), as opposed to a refusal that will not change.
    pub fn is_temporary(&self) -> bool {
        match self {
            CallError::Transport { .. } => true,
            CallError::Refused { error, .. } => error.code == BotErrorCode::Unavailable,
        }
    }

    /// The refusal's code, if the router refused.
    pub fn code(&self) -> Option<BotErrorCode> {
        match self {
            CallError::Refused { error, .. } => Some(error.code),
            CallError::Transport { .. } => None,
        }
    }
}

/// How long a call may take before it counts as unanswered.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The bot API of one bot.
#[derive(Clone)]
pub struct Api {
    client: async_nats::Client,
    bot: BotId,
}

impl Api {
    pub fn new(client: async_nats::Client, bot: BotId) -> Self {
        Self { client, bot }
    }

    /// Posts `text`, keyed by `key` (stored at most once).
    pub async fn send(
        &self,
        conversation: &ConversationId,
        text: &str,
        key: &str,
    ) -> Result<Sent, CallError> {
        let request = SendRequest {
            conversation_id: conversation.clone(),
            text: text.to_owned(),
            key: key.to_owned(),
        };
        let reply: SendReply = self.call(BotCall::Send, &request).await?;
        refused(BotCall::Send, reply.error)?;
        reply.sent.ok_or_else(|| CallError::Transport {
            call: "send",
            reason: "a reply without the stored message".into(),
        })
    }

    /// Gives the conversation to the humans.
    pub async fn hand_off(&self, conversation: &ConversationId) -> Result<(), CallError> {
        let request = HandoffRequest {
            conversation_id: conversation.clone(),
        };
        let reply: HandoffReply = self.call(BotCall::Handoff, &request).await?;
        refused(BotCall::Handoff, reply.error)
    }

    /// Says the bot runs; returns how often to say it again.
    pub async fn presence(&self, instance: Option<String>) -> Result<Duration, CallError> {
        let reply: PresenceReply = self
            .call(BotCall::Presence, &PresenceRequest { instance })
            .await?;
        refused(BotCall::Presence, reply.error)?;
        Ok(Duration::from_millis(reply.every_ms.max(1_000)))
    }

    /// What the bot holds (or only `one`), with what waits in each.
    pub async fn conversations(
        &self,
        one: Option<&ConversationId>,
    ) -> Result<Vec<HeldConversation>, CallError> {
        let request = ConversationsRequest {
            conversation_id: one.cloned(),
        };
        let reply: ConversationsReply = self.call(BotCall::Conversations, &request).await?;
        refused(BotCall::Conversations, reply.error)?;
        Ok(reply.conversations)
    }

    async fn call<T: Serialize, R: DeserializeOwned>(
        &self,
        call: BotCall,
        request: &T,
    ) -> Result<R, CallError> {
        let transport = |reason: String| CallError::Transport {
            call: call.as_str(),
            reason,
        };
        let payload = encode(request).map_err(|e| transport(e.to_string()))?;
        let subject = subjects::bot_api(&self.bot, call);
        let answer =
            tokio::time::timeout(CALL_TIMEOUT, self.client.request(subject, payload.into()))
                .await
                .map_err(|_| transport("no router answered in time".into()))?
                .map_err(|e| transport(e.to_string()))?;
        decode(&answer.payload).map_err(|e| transport(format!("undecodable reply: {e}")))
    }
}

fn refused(call: BotCall, error: Option<BotError>) -> Result<(), CallError> {
    match error {
        None => Ok(()),
        Some(error) => Err(CallError::Refused {
            call: call.as_str(),
            error,
        }),
    }
}
