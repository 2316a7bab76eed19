//! Bots: their accounts (the `bots` bucket), their presence (the
//! `bot_presence` bucket, written by the routers on the bots' behalf), and
//! the changes of routing state that concern a bot — its answer deadline,
//! and handing a conversation to the humans. Shared by the routers (which
//! serve the bot API and enforce the deadlines), the edges (a visitor's
//! `handoff`, a visitor's message to a bot) and the command line.
//!
//! A bot holds a conversation the way an agent does: `status` `assigned`
//! with the bot as `agent` (role `bot`), written by compare-and-set, so a
//! bot and a human never hold one conversation at once. Bots have no
//! capacity and no `load` entry.

use async_nats::jetstream::kv::CreateErrorKind;
use futures::TryStreamExt;
use switchboard_protocol::ids::{BotId, ConversationId, TeamId};
use switchboard_protocol::payloads::{
    BotAccount, BotPresence, BotWait, ChatRecord, ConversationEvent, ConversationState,
    ConversationStatus, Handoff, Participant, RecordBody, Role,
};
use switchboard_protocol::subjects;
use switchboard_protocol::time::now_ms;

use crate::kv::{self, Decision};
use crate::{outbox, Backbone, BusError};

/// Longest bot name, in characters.
pub const MAX_NAME_CHARS: usize = 80;

/// Prefixes of generated ids of other kinds: a bot id never starts with
/// one, so a bot is never mistaken for an agent or a visitor.
const RESERVED_PREFIXES: [&str; 5] = ["a_", "v_", "c_", "m_", "k_"];

/// What `bot add` asks for.
#[derive(Debug, Clone)]
pub struct NewBot {
    pub id: BotId,
    pub name: String,
    pub team: TeamId,
}

/// Creates a bot account: its team becomes bot-first. One bot per team.
///
/// # Errors
/// [`BusError::Invalid`] for a blank or long name, a reserved id prefix, a
/// taken id, or a team that has a bot already; NATS errors.
pub async fn add(backbone: &Backbone, bot: NewBot) -> Result<BotAccount, BusError> {
    let name = bot.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(BusError::Invalid(format!(
            "name must be 1-{MAX_NAME_CHARS} characters"
        )));
    }
    if let Some(prefix) = RESERVED_PREFIXES
        .iter()
        .find(|p| bot.id.as_str().starts_with(*p))
    {
        return Err(BusError::Invalid(format!(
            "bot ids may not start with {prefix:?} (the prefix of other generated ids)"
        )));
    }
    if let Some(other) = list(backbone)
        .await?
        .into_iter()
        .find(|b| b.team == bot.team)
    {
        return Err(BusError::Invalid(format!(
            "team {} already has bot {}",
            bot.team, other.id
        )));
    }
    let account = BotAccount {
        id: bot.id,
        name,
        team: bot.team,
        created_at: now_ms(),
    };
    let bytes = switchboard_protocol::payloads::encode(&account)
        .map_err(|e| BusError::decode("bot account", e))?;
    match backbone
        .bots
        .create(account.id.as_str(), bytes.into())
        .await
    {
        Ok(_) => Ok(account),
        Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {
            Err(BusError::Invalid(format!("bot id {} is taken", account.id)))
        }
        Err(e) => Err(BusError::nats("add bot", e)),
    }
}

/// Every bot account, by id.
///
/// # Errors
/// NATS errors.
pub async fn list(backbone: &Backbone) -> Result<Vec<BotAccount>, BusError> {
    let keys: Vec<String> = match backbone.bots.keys().await {
        Ok(keys) => keys
            .try_collect()
            .await
            .map_err(|e| BusError::nats("list bots", e))?,
        Err(e) => return Err(BusError::nats("list bots", e)),
    };
    let mut bots = Vec::with_capacity(keys.len());
    for key in keys {
        if let Some(entry) = kv::get::<BotAccount>(&backbone.bots, &key).await? {
            bots.push(entry.value);
        }
    }
    bots.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(bots)
}

/// The bot account with this id.
///
/// # Errors
/// NATS errors.
pub async fn find(backbone: &Backbone, id: &BotId) -> Result<Option<BotAccount>, BusError> {
    Ok(kv::get::<BotAccount>(&backbone.bots, id.as_str())
        .await?
        .map(|e| e.value))
}

/// Removes a bot: its account, its presence and its durable consumer. The
/// routers hand the conversations it holds to the humans (`bot_absent`).
/// False when there was no such bot.
///
/// # Errors
/// NATS errors.
pub async fn remove(backbone: &Backbone, id: &BotId) -> Result<bool, BusError> {
    if find(backbone, id).await?.is_none() {
        return Ok(false);
    }
    backbone
        .bots
        .delete(id.as_str())
        .await
        .map_err(|e| BusError::nats("remove bot", e))?;
    backbone
        .bot_presence
        .delete(id.as_str())
        .await
        .map_err(|e| BusError::nats("remove bot presence", e))?;
    // The consumer may not exist (the bot never ran): nothing to remove.
    if let Err(err) = backbone
        .js
        .delete_consumer_from_stream(subjects::bot_consumer(id), subjects::CHAT_STREAM)
        .await
    {
        tracing::info!(bot_id = %id, error = %err, "no bot consumer removed");
    }
    Ok(true)
}

/// Notes that `bot` is running (its presence request): the routers see it
/// present for `nats.presence_ttl`.
///
/// # Errors
/// NATS errors.
pub async fn note_presence(
    backbone: &Backbone,
    bot: &BotId,
    instance: Option<String>,
) -> Result<(), BusError> {
    kv::put(
        &backbone.bot_presence,
        bot.as_str(),
        &BotPresence {
            bot_id: bot.clone(),
            updated_at: now_ms(),
            instance,
        },
    )
    .await
    .map(|_| ())
}

/// Why a bot's conversation goes to the humans: the `reason` of its
/// `handed_off` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoffReason {
    /// The visitor asked for a person (the `handoff` frame).
    VisitorAsked,
    /// The bot asked (its `handoff` call).
    BotAsked,
    /// The bot did not answer this wait within the deadline: handed off
    /// only if, in the state itself, the same wait is still unanswered.
    NoAnswer(BotWait),
    /// The bot has been absent past the deadline, or was removed.
    BotAbsent,
}

impl HandoffReason {
    pub fn as_str(self) -> &'static str {
        match self {
            HandoffReason::VisitorAsked => "visitor_asked",
            HandoffReason::BotAsked => "bot_asked",
            HandoffReason::NoAnswer(_) => "no_answer",
            HandoffReason::BotAbsent => "bot_absent",
        }
    }

    /// Whether the current state still calls for it.
    fn holds(self, state: &ConversationState, bot: &BotId) -> bool {
        state.is_held_by_bot(bot)
            && match self {
                HandoffReason::NoAnswer(wait) => state.bot_wait == Some(wait),
                _ => true,
            }
    }
}

/// Gives a conversation `bot` holds to the humans: back in the queue at its
/// original place (`queued_at` and priority kept), for humans only, owing
/// the `handed_off` event (with `sender` as its author) and the bot's
/// `released` notice. The routers then assign a human by the usual policy,
/// who is told of the handoff. False when the bot does not hold it (any
/// more), or the reason no longer holds.
///
/// # Errors
/// NATS errors; the state stays consistent (an owed event is written by
/// the next flush).
#[tracing::instrument(name = "bots.hand_off", skip_all, fields(conversation_id = %conversation, bot_id = %bot, reason = reason.as_str()))]
pub async fn hand_off(
    backbone: &Backbone,
    conversation: &ConversationId,
    bot: &BotId,
    reason: HandoffReason,
    sender: Participant,
) -> Result<bool, BusError> {
    let (moved, written) = kv::cas_versioned(
        &backbone.conversations,
        conversation.as_str(),
        |current: Option<&ConversationState>| match current {
            Some(state) if reason.holds(state, bot) => {
                let mut state = state.clone();
                let Some(from) = state.agent.take() else {
                    return Decision::Keep(false);
                };
                state.status = ConversationStatus::Queued;
                state.assigned_at = None;
                state.first_response_at = None;
                state.announced_position = None;
                state.bot_wait = None;
                state.exclude_bot = Some(bot.clone());
                state.humans_only = true;
                state.handoff = Some(Handoff {
                    from: from.clone(),
                    reason: reason.as_str().to_owned(),
                });
                state.owe_to_bot(
                    sender.clone(),
                    ConversationEvent::HandedOff {
                        from,
                        reason: reason.as_str().to_owned(),
                    },
                    bot.clone(),
                );
                Decision::Write(state, true)
            }
            _ => Decision::Keep(false),
        },
    )
    .await?;
    let Some(written) = written.filter(|_| moved) else {
        return Ok(false);
    };
    outbox::flush_from(backbone, conversation, written).await?;
    tracing::info!("conversation handed off to the humans");
    Ok(true)
}

/// Starts (or moves forward) the bot's answer deadline of a conversation a
/// bot holds: the visitor's message `seq` at `since`. Nothing when no bot
/// holds it, or a later message already counts.
///
/// # Errors
/// NATS errors.
pub async fn note_visitor_message(
    backbone: &Backbone,
    conversation: &ConversationId,
    seq: u64,
    since: i64,
) -> Result<(), BusError> {
    kv::cas(
        &backbone.conversations,
        conversation.as_str(),
        |current: Option<&ConversationState>| match current {
            Some(state)
                if state.bot_owner().is_some()
                    && seq > state.bot_answered_seq
                    && state.bot_wait.is_none_or(|wait| seq > wait.seq) =>
            {
                let mut state = state.clone();
                state.bot_wait = Some(BotWait { seq, since });
                Decision::Write(state, ())
            }
            _ => Decision::Keep(()),
        },
    )
    .await
}

/// Whether a bot may post into a conversation, checked in the state itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyCheck {
    /// The bot holds it; its answer deadline is stopped (before the message
    /// is stored, so no `no_answer` handoff can come after an answer the
    /// visitor sees).
    Held(Box<ConversationState>),
    NotFound,
    /// Someone else holds it, it waits in the queue, or it is closed.
    NotOwner(ConversationStatus),
}

/// Checks that `bot` holds the conversation and stops its answer deadline,
/// in one compare-and-set.
///
/// # Errors
/// NATS errors.
pub async fn claim_reply(
    backbone: &Backbone,
    conversation: &ConversationId,
    bot: &BotId,
) -> Result<ReplyCheck, BusError> {
    // The bot answers what it has seen: at most the log as it is now. A
    // visitor's message up to here, noted late, never restarts its clock.
    let answered = backbone.log.last_seq(conversation).await?;
    kv::cas(
        &backbone.conversations,
        conversation.as_str(),
        |current: Option<&ConversationState>| match current {
            None => Decision::Keep(ReplyCheck::NotFound),
            Some(state) if !state.is_held_by_bot(bot) => {
                Decision::Keep(ReplyCheck::NotOwner(state.status))
            }
            Some(state) if state.bot_wait.is_some() || state.bot_answered_seq < answered => {
                let mut state = state.clone();
                if state.bot_wait.is_some_and(|wait| wait.seq <= answered) {
                    state.bot_wait = None;
                }
                state.bot_answered_seq = state.bot_answered_seq.max(answered);
                Decision::Write(state.clone(), ReplyCheck::Held(Box::new(state)))
            }
            Some(state) => Decision::Keep(ReplyCheck::Held(Box::new(state.clone()))),
        },
    )
    .await
}

/// Records read back from a conversation's end to find what waits for its
/// bot.
pub const WAITING_LOOKBACK: usize = 50;

/// The visitor's messages waiting for `bot`'s answer in a conversation it
/// holds (see [`waiting_in`]), read from the end of its log.
///
/// # Errors
/// NATS errors.
pub async fn waiting(
    backbone: &Backbone,
    conversation: &ConversationId,
    bot: &BotId,
) -> Result<Vec<ChatRecord>, BusError> {
    let page = backbone
        .log
        .read_before(conversation, u64::MAX, WAITING_LOOKBACK)
        .await?;
    Ok(waiting_in(&page.records, bot))
}

/// The visitor's messages that no message has followed yet, in `seq`
/// order, among `records` (ascending): walking back from the last record,
/// every visitor message is collected, `queued` events and the bot's own
/// `assigned` are passed, and anything else ends the walk — a message from
/// anyone but the visitor (the bot's last answer, say) or any other event
/// (`opened`, `reopened`, a previous owner's events).
pub fn waiting_in(records: &[ChatRecord], bot: &BotId) -> Vec<ChatRecord> {
    let mut waiting = Vec::new();
    for record in records.iter().rev() {
        match &record.body {
            RecordBody::Message { .. } if record.sender.role == Role::Visitor => {
                waiting.push(record.clone());
            }
            RecordBody::Message { .. } => break,
            RecordBody::Event { event } => match event {
                ConversationEvent::Queued { .. } => {}
                ConversationEvent::Assigned { agent, .. }
                    if agent.role == Role::Bot && agent.id == bot.as_str() => {}
                _ => break,
            },
        }
    }
    waiting.reverse();
    waiting
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_protocol::ids::{MessageId, VisitorId};

    fn record(seq: u64, sender: Participant, body: RecordBody) -> ChatRecord {
        ChatRecord {
            id: MessageId::generate(),
            conversation_id: ConversationId::new("c_1").unwrap(),
            seq,
            sender,
            sent_at: seq as i64,
            body,
        }
    }

    fn says(seq: u64, who: &Participant) -> ChatRecord {
        record(
            seq,
            who.clone(),
            RecordBody::Message {
                text: format!("m{seq}"),
                client_id: format!("k{seq}"),
            },
        )
    }

    fn event(seq: u64, event: ConversationEvent) -> ChatRecord {
        record(
            seq,
            Participant::system("router"),
            RecordBody::Event { event },
        )
    }

    fn seqs(records: &[ChatRecord]) -> Vec<u64> {
        records.iter().map(|r| r.seq).collect()
    }

    #[test]
    fn waiting_is_what_the_visitor_said_since_anyone_else_spoke() {
        let bot_id = BotId::new("faq").unwrap();
        let bot = Participant::bot(&bot_id, "FAQ");
        let other = Participant::bot(&BotId::new("other").unwrap(), "Other");
        let visitor = Participant::visitor(&VisitorId::new("v_1").unwrap(), "Ann");
        let opened = event(
            1,
            ConversationEvent::Opened {
                visitor: visitor.clone(),
                team: None,
            },
        );
        let queued = |seq| {
            event(
                seq,
                ConversationEvent::Queued {
                    position: 1,
                    estimated_wait_secs: None,
                    agents_online: None,
                },
            )
        };
        let assigned = |seq, agent: &Participant| {
            event(
                seq,
                ConversationEvent::Assigned {
                    agent: agent.clone(),
                    reason: None,
                    handed_off: None,
                },
            )
        };
        // The question asked with `start`, before the bot had it.
        let log = vec![
            opened.clone(),
            says(2, &visitor),
            queued(3),
            assigned(4, &bot),
            says(5, &visitor),
        ];
        assert_eq!(seqs(&waiting_in(&log, &bot_id)), [2, 5]);
        // Answered: nothing waits until the visitor writes again.
        let mut answered = log.clone();
        answered.push(says(6, &bot));
        assert!(waiting_in(&answered, &bot_id).is_empty());
        answered.push(says(7, &visitor));
        assert_eq!(seqs(&waiting_in(&answered, &bot_id)), [7]);
        // Another owner's assignment, or a reopening, ends the walk.
        let reopened = vec![
            opened,
            says(2, &visitor),
            assigned(3, &other),
            event(4, ConversationEvent::Reopened {}),
            says(5, &visitor),
            assigned(6, &bot),
        ];
        assert_eq!(seqs(&waiting_in(&reopened, &bot_id)), [5]);
        assert!(waiting_in(&reopened, &BotId::new("x").unwrap()).is_empty());
    }

    #[test]
    fn handoff_reasons_are_the_analytics_names() {
        let names: Vec<_> = [
            HandoffReason::VisitorAsked,
            HandoffReason::BotAsked,
            HandoffReason::NoAnswer(BotWait { seq: 1, since: 0 }),
            HandoffReason::BotAbsent,
        ]
        .into_iter()
        .map(HandoffReason::as_str)
        .collect();
        assert_eq!(
            names,
            ["visitor_asked", "bot_asked", "no_answer", "bot_absent"]
        );
    }
}
