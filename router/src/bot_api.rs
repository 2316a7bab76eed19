//! The bot API: the only way a bot acts on Switchboard. A bot sends a
//! request on `bot.api.<bot_id>.<call>`; every router subscribes in the
//! queue group `router`, so exactly one answers it. The router checks the
//! bot (its account), the conversation (the bot holds it, in the routing
//! state itself) and the input, then does the work with the same
//! compare-and-sets and appends as everything else, and answers with the
//! result or an error with a code. See docs/bots.md.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use switchboard_bus::bots::{self, HandoffReason, ReplyCheck};
use switchboard_bus::{kv, Backbone, BusError};
use switchboard_protocol::bots::{
    BotCall, BotError, BotErrorCode, ConversationsReply, ConversationsRequest, HandoffReply,
    HandoffRequest, HeldConversation, PresenceReply, PresenceRequest, SendReply, SendRequest, Sent,
};
use switchboard_protocol::ids::{BotId, ConversationId};
use switchboard_protocol::payloads::{
    decode, encode, BotAccount, ConversationState, Participant, RecordBody,
};
use switchboard_protocol::subjects;
use switchboard_protocol::time::now_ms;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::worker::HeldByBots;

/// What the bot API needs.
pub struct BotApi {
    pub backbone: Backbone,
    /// What each bot holds, as the routing loop last saw it.
    pub held: tokio::sync::watch::Receiver<HeldByBots>,
    /// A bot that has not announced itself for this long is absent.
    pub presence_ttl: Duration,
    pub reply_deadline: Duration,
    /// Longest text a bot may post.
    pub max_text_chars: usize,
}

/// Requests answered at once by one router; more wait in the subscription.
const CONCURRENCY: usize = 256;
/// How long to wait before subscribing again after the subscription broke.
const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);
/// Longest `instance` name of a presence request.
const MAX_INSTANCE_CHARS: usize = 100;
/// Conversations read at once for a `conversations` listing.
const LISTING_CONCURRENCY: usize = 16;

/// Serves the bot API until `shutdown`, subscribing again whenever the
/// subscription breaks.
pub async fn run(api: BotApi, shutdown: CancellationToken) {
    let api = Arc::new(api);
    while !shutdown.is_cancelled() {
        match serve(&api, &shutdown).await {
            Ok(()) => break,
            Err(err) => {
                tracing::warn!(error = %err, "bot api subscription broke; subscribing again");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(RESUBSCRIBE_DELAY) => {}
                }
            }
        }
    }
}

async fn serve(api: &Arc<BotApi>, shutdown: &CancellationToken) -> Result<(), BusError> {
    let mut requests = api
        .backbone
        .client
        .queue_subscribe(subjects::ALL_BOT_API, subjects::ROUTER_GROUP.to_owned())
        .await
        .map_err(|e| BusError::nats("subscribe to the bot api", e))?;
    let permits = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let tracker = TaskTracker::new();
    let result = loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => break Ok(()),
            message = requests.next() => message,
        };
        let Some(message) = message else {
            break Err(BusError::nats("bot api", "subscription ended"));
        };
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break Ok(());
        };
        let api = Arc::clone(api);
        tracker.spawn(async move {
            api.answer(message).await;
            drop(permit);
        });
    };
    tracker.close();
    tracker.wait().await;
    result
}

/// The answer to a request that could not be served: `{"error": …}`, which
/// every reply type of the bot API decodes (their other fields default).
#[derive(serde::Serialize)]
struct Refused<'a> {
    error: &'a BotError,
}

impl BotApi {
    /// Answers one request (or logs why it cannot be answered at all).
    async fn answer(&self, message: async_nats::Message) {
        let Some(reply_to) = message.reply.clone() else {
            tracing::info!(subject = %message.subject, "bot api message without a reply subject ignored");
            return;
        };
        let parsed = subjects::parse_bot_api(&message.subject);
        if !subjects::is_bot_reply(parsed.as_ref().map(|(bot, _)| bot), &reply_to) {
            // Answering would publish under the router's user to a subject
            // the bot chose: a bucket, the stream.
            tracing::warn!(subject = %message.subject, reply = %reply_to, "bot api reply subject refused: not an inbox");
            return;
        }
        let answer = match parsed {
            Some((bot, call)) => self.call(&bot, call, &message.payload).await,
            None => Err(BotError::new(
                BotErrorCode::BadRequest,
                "the subject is not bot.api.<bot_id>.<call> with a valid bot id and call",
            )),
        };
        let payload = match answer {
            Ok(payload) => payload,
            Err(error) => {
                if error.code == BotErrorCode::Unavailable {
                    tracing::warn!(subject = %message.subject, code = error.code.as_str(), reason = %error.message, "bot call failed");
                } else {
                    tracing::info!(subject = %message.subject, code = error.code.as_str(), reason = %error.message, "bot call refused");
                }
                match encode(&Refused { error: &error }) {
                    Ok(payload) => payload,
                    Err(err) => {
                        tracing::error!(error = %err, "encode bot api refusal");
                        return;
                    }
                }
            }
        };
        if let Err(err) = self.backbone.client.publish(reply_to, payload.into()).await {
            tracing::warn!(error = %err, subject = %message.subject, "answer a bot call");
        }
    }

    /// Runs one call; the encoded reply, or why it was refused.
    #[tracing::instrument(name = "router.bot_call", skip_all, fields(bot_id = %bot, call = call.as_str()))]
    async fn call(&self, bot: &BotId, call: BotCall, payload: &[u8]) -> Result<Vec<u8>, BotError> {
        let account = bots::find(&self.backbone, bot)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| {
                BotError::new(
                    BotErrorCode::UnknownBot,
                    format!("no bot account {bot} (switchboard bot add)"),
                )
            })?;
        let encoded = match call {
            BotCall::Send => encode(&self.send(&account, request(call, payload)?).await?),
            BotCall::Handoff => encode(&self.handoff(&account, request(call, payload)?).await?),
            BotCall::Presence => encode(&self.presence(&account, request(call, payload)?).await?),
            BotCall::Conversations => encode(
                &self
                    .conversations(&account, request(call, payload)?)
                    .await?,
            ),
        };
        encoded.map_err(|e| BotError::new(BotErrorCode::Unavailable, format!("encode reply: {e}")))
    }

    /// `send`: the bot holds the conversation (checked, and its answer
    /// deadline stopped, in one compare-and-set), then the message is
    /// appended under the bot's key, at most once per key.
    async fn send(&self, bot: &BotAccount, request: SendRequest) -> Result<SendReply, BotError> {
        if !valid_key(&request.key) {
            return Err(BotError::new(
                BotErrorCode::BadRequest,
                "key must be 1-64 visible ASCII characters",
            ));
        }
        if request.text.trim().is_empty() {
            return Err(BotError::new(BotErrorCode::BadRequest, "text is empty"));
        }
        if request.text.chars().count() > self.max_text_chars {
            return Err(BotError::new(
                BotErrorCode::TooLarge,
                format!("text is longer than {} characters", self.max_text_chars),
            ));
        }
        let conversation = &request.conversation_id;
        let check = bots::claim_reply(&self.backbone, conversation, &bot.id)
            .await
            .map_err(unavailable)?;
        let state = match check {
            ReplyCheck::Held(state) => state,
            ReplyCheck::NotFound => return Err(not_found(conversation)),
            ReplyCheck::NotOwner(status) => {
                return Err(BotError::new(
                    BotErrorCode::NotOwner,
                    format!(
                        "conversation {conversation} is not this bot's (it is {})",
                        status.as_str()
                    ),
                ))
            }
        };
        let log = &self.backbone.log;
        let dedupe = format!("{conversation}.bot.{}.{}", bot.id, request.key);
        // JetStream recognises a key only within its duplicate window; a
        // bot restarted later answers with the same key, so look for it.
        let since = state.assigned_at.unwrap_or(0);
        let window = i64::try_from(log.duplicate_window().as_millis()).unwrap_or(i64::MAX);
        if now_ms() - since > window / 2 {
            if let Some(original) = log
                .find_keyed(conversation, &dedupe, since)
                .await
                .map_err(unavailable)?
            {
                return Ok(sent(&original, true));
            }
        }
        let appended = log
            .append(
                conversation,
                Participant::bot(&bot.id, bot.name.clone()),
                RecordBody::Message {
                    text: request.text,
                    client_id: request.key,
                },
                Some(&dedupe),
            )
            .await
            .map_err(unavailable)?;
        tracing::info!(conversation_id = %conversation, seq = appended.record.seq, duplicate = appended.duplicate, "bot message stored");
        Ok(sent(&appended.record, appended.duplicate))
    }

    /// `handoff`: the conversation goes to the humans (reason `bot_asked`).
    async fn handoff(
        &self,
        bot: &BotAccount,
        request: HandoffRequest,
    ) -> Result<HandoffReply, BotError> {
        let conversation = &request.conversation_id;
        let moved = bots::hand_off(
            &self.backbone,
            conversation,
            &bot.id,
            HandoffReason::BotAsked,
            Participant::bot(&bot.id, bot.name.clone()),
        )
        .await
        .map_err(unavailable)?;
        if moved {
            return Ok(HandoffReply { error: None });
        }
        match self.state(conversation).await? {
            None => Err(not_found(conversation)),
            Some(state) => Err(BotError::new(
                BotErrorCode::NotOwner,
                format!(
                    "conversation {conversation} is not this bot's (it is {})",
                    state.status.as_str()
                ),
            )),
        }
    }

    /// `presence`: the bot is present for `nats.presence_ttl` from now.
    async fn presence(
        &self,
        bot: &BotAccount,
        request: PresenceRequest,
    ) -> Result<PresenceReply, BotError> {
        if request
            .instance
            .as_deref()
            .is_some_and(|i| i.chars().count() > MAX_INSTANCE_CHARS)
        {
            return Err(BotError::new(
                BotErrorCode::BadRequest,
                format!("instance is longer than {MAX_INSTANCE_CHARS} characters"),
            ));
        }
        bots::note_presence(&self.backbone, &bot.id, request.instance)
            .await
            .map_err(unavailable)?;
        Ok(PresenceReply {
            every_ms: millis(self.presence_ttl / 3),
            reply_deadline_ms: millis(self.reply_deadline),
            error: None,
        })
    }

    /// `conversations`: what the bot holds and what waits in each.
    async fn conversations(
        &self,
        bot: &BotAccount,
        request: ConversationsRequest,
    ) -> Result<ConversationsReply, BotError> {
        let ids: Vec<ConversationId> = match request.conversation_id {
            Some(one) => vec![one],
            None => {
                let held = self.held.borrow().clone();
                let Some(held) = held else {
                    return Err(BotError::new(
                        BotErrorCode::Unavailable,
                        "this router is still loading the routing state, try again",
                    ));
                };
                held.get(&bot.id).cloned().unwrap_or_default()
            }
        };
        let found: Vec<Result<Option<HeldConversation>, BotError>> = futures::stream::iter(ids)
            .map(|id| async move { self.held_conversation(&bot.id, &id).await })
            .buffered(LISTING_CONCURRENCY)
            .collect()
            .await;
        let mut conversations = Vec::new();
        for held in found {
            conversations.extend(held?);
        }
        Ok(ConversationsReply {
            conversations,
            error: None,
        })
    }

    /// A conversation as the bot API lists it, if the bot holds it (read
    /// from the routing state itself).
    async fn held_conversation(
        &self,
        bot: &BotId,
        conversation: &ConversationId,
    ) -> Result<Option<HeldConversation>, BotError> {
        let Some(state) = self.state(conversation).await? else {
            return Ok(None);
        };
        if !state.is_held_by_bot(bot) {
            return Ok(None);
        }
        let waiting = bots::waiting(&self.backbone, conversation, bot)
            .await
            .map_err(unavailable)?;
        Ok(Some(HeldConversation {
            conversation_id: state.id,
            visitor: state.visitor,
            team: state.team,
            assigned_at: state.assigned_at.unwrap_or(0),
            waiting,
        }))
    }

    async fn state(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<ConversationState>, BotError> {
        Ok(
            kv::get::<ConversationState>(&self.backbone.conversations, conversation.as_str())
                .await
                .map_err(unavailable)?
                .map(|v| v.value),
        )
    }
}

/// Decodes a call's request.
fn request<T: serde::de::DeserializeOwned>(call: BotCall, payload: &[u8]) -> Result<T, BotError> {
    decode(payload).map_err(|err| {
        BotError::new(
            BotErrorCode::BadRequest,
            format!(
                "not a {} request (a MessagePack map with the fields of docs/bots.md): {}",
                call.as_str(),
                std::error::Error::source(&err).map_or_else(|| err.to_string(), |s| s.to_string())
            ),
        )
    })
}

fn sent(record: &switchboard_protocol::payloads::ChatRecord, duplicate: bool) -> SendReply {
    SendReply {
        sent: Some(Sent {
            id: record.id.clone(),
            seq: record.seq,
            sent_at: record.sent_at,
            duplicate,
        }),
        error: None,
    }
}

/// A key a bot may give a message: what an edge accepts as a `client_id`.
fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= 64 && key.bytes().all(|b| b.is_ascii_graphic())
}

fn not_found(conversation: &ConversationId) -> BotError {
    BotError::new(
        BotErrorCode::NotFound,
        format!("no conversation {conversation}"),
    )
}

fn unavailable(err: BusError) -> BotError {
    BotError::new(
        BotErrorCode::Unavailable,
        format!("the backbone did not answer ({err}), try again"),
    )
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_protocol::bots::{HandoffReply, PresenceReply};

    #[test]
    fn keys_are_visible_ascii_up_to_64() {
        assert!(valid_key("re-42"));
        assert!(valid_key(&"k".repeat(64)));
        for bad in ["", "a b", "é", &"k".repeat(65)] {
            assert!(!valid_key(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_refusal_decodes_as_every_reply() {
        let error = BotError::new(BotErrorCode::UnknownBot, "no such bot");
        let bytes = encode(&Refused { error: &error }).unwrap();
        assert_eq!(
            decode::<SendReply>(&bytes).unwrap().error,
            Some(error.clone())
        );
        assert_eq!(
            decode::<HandoffReply>(&bytes).unwrap().error,
            Some(error.clone())
        );
        assert_eq!(
            decode::<PresenceReply>(&bytes).unwrap().error,
            Some(error.clone())
        );
        let listing = decode::<ConversationsReply>(&bytes).unwrap();
        assert!(listing.conversations.is_empty());
        assert_eq!(listing.error, Some(error));
        // A request that is not the call's payload is refused with a reason.
        let err = request::<SendRequest>(BotCall::Send, b"\x01").unwrap_err();
        assert_eq!(err.code, BotErrorCode::BadRequest);
        assert!(
            err.message.contains("not a send request"),
            "{}",
            err.message
        );
    }
}
