//! The bot's loop, written the way docs/bots.md tells a bot to work:
//!
//! 1. say it runs (`presence`), and again as often as the reply says;
//! 2. listen to its notices (`inbox.bot.<id>`) before anything else;
//! 3. ask what it holds (`conversations`) and answer what waits there;
//! 4. read its own durable consumer (`bot-<id>` on `CHAT`): an `assigned`
//!    event naming it is a conversation to serve (and what waits in it is
//!    asked for), a visitor's message in one it holds is answered, then
//!    acknowledged. Each answer's key is `re-<seq>` of the message it
//!    answers, so nothing is ever answered twice, whichever path (or
//!    which run of the bot) sees the message again.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, AckKind};
use futures::StreamExt;
use switchboard_protocol::bots::BotErrorCode;
use switchboard_protocol::ids::{BotId, ConversationId};
use switchboard_protocol::payloads::{
    decode, BotNotice, ChatRecord, ConversationEvent, RecordBody, Role,
};
use switchboard_protocol::subjects;
use tokio_util::sync::CancellationToken;

use crate::api::{Api, CallError};
use crate::faq::{Decision, Faq, MISSES_BEFORE_HANDOFF};
use crate::RunError;

/// How long a message the bot could not handle now (no router answered)
/// waits before the consumer delivers it again.
const RETRY_DELAY: Duration = Duration::from_secs(2);
/// How long the consumer waits for an acknowledgement before delivering a
/// message again (a bot killed while handling it).
const ACK_WAIT: Duration = Duration::from_secs(30);

/// A conversation the bot holds.
#[derive(Debug, Default)]
struct Held {
    /// The visitor's messages it could not answer (by `seq`).
    missed: BTreeSet<u64>,
}

/// The running bot.
pub struct Bot {
    id: BotId,
    api: Api,
    faq: Faq,
    held: HashMap<ConversationId, Held>,
}

impl Bot {
    pub fn new(id: BotId, client: async_nats::Client, faq: Faq) -> Self {
        Self {
            api: Api::new(client, id.clone()),
            id,
            faq,
            held: HashMap::new(),
        }
    }

    /// Runs until `shutdown` is cancelled.
    ///
    /// # Errors
    /// When the notices or the consumer cannot be set up.
    pub async fn run(
        mut self,
        client: async_nats::Client,
        instance: Option<String>,
        shutdown: CancellationToken,
    ) -> Result<(), RunError> {
        let presence = tokio::spawn(announce(self.api.clone(), instance, shutdown.clone()));
        let mut notices = client
            .subscribe(subjects::bot_inbox(&self.id))
            .await
            .map_err(|e| RunError::Nats("subscribe to the bot's notices", e.to_string()))?;
        let js = jetstream::new(client);
        let consumer = js
            .create_consumer_on_stream(
                consumer::pull::Config {
                    durable_name: Some(subjects::bot_consumer(&self.id)),
                    filter_subject: subjects::CHAT_SUBJECTS.to_owned(),
                    deliver_policy: consumer::DeliverPolicy::New,
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    max_ack_pending: 1_000,
                    ..Default::default()
                },
                subjects::CHAT_STREAM,
            )
            .await
            .map_err(|e| RunError::Nats("create the bot's consumer", e.to_string()))?;
        // What it holds already (a restart): answer what waits there.
        self.catch_up(None).await;
        let mut records = consumer
            .messages()
            .await
            .map_err(|e| RunError::Nats("read the bot's consumer", e.to_string()))?;
        tracing::info!(bot_id = %self.id, held = self.held.len(), "bot running");
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                notice = notices.next() => match notice {
                    Some(message) => self.on_notice(&message.payload).await,
                    None => return Err(RunError::Nats("bot notices", "subscription ended".into())),
                },
                record = records.next() => match record {
                    Some(Ok(message)) => self.on_record(message).await,
                    Some(Err(err)) => {
                        // Heartbeats missed, a reconnection: the stream goes on.
                        tracing::warn!(error = %err, "bot consumer");
                    }
                    None => return Err(RunError::Nats("bot consumer", "stream ended".into())),
                },
            }
        }
        presence.abort();
        tracing::info!(bot_id = %self.id, "bot stopped");
        Ok(())
    }

    async fn on_notice(&mut self, payload: &[u8]) {
        match decode::<BotNotice>(payload) {
            Ok(BotNotice::Assigned {
                conversation_id, ..
            }) => {
                tracing::info!(conversation_id = %conversation_id, "conversation assigned");
                self.take(conversation_id).await;
            }
            Ok(BotNotice::Released {
                conversation_id,
                reason,
            }) => {
                tracing::info!(conversation_id = %conversation_id, reason, "conversation released");
                self.held.remove(&conversation_id);
            }
            Err(err) => tracing::warn!(error = %err, "undecodable bot notice"),
        }
    }

    /// A conversation is (or may be) the bot's: answer what waits in it.
    async fn take(&mut self, conversation: ConversationId) {
        if !self.held.contains_key(&conversation) {
            self.catch_up(Some(&conversation)).await;
        }
    }

    /// Answers what waits in the conversations the bot holds (all, or one).
    async fn catch_up(&mut self, one: Option<&ConversationId>) {
        let held = match self.api.conversations(one).await {
            Ok(held) => held,
            Err(err) => {
                tracing::warn!(error = %err, "list the bot's conversations");
                return;
            }
        };
        for conversation in held {
            self.held
                .entry(conversation.conversation_id.clone())
                .or_default();
            for record in &conversation.waiting {
                if let Err(err) = self.answer(record).await {
                    tracing::warn!(error = %err, conversation_id = %record.conversation_id, seq = record.seq, "answer a waiting message");
                }
            }
        }
    }

    /// One record of the consumer: follow who holds what, answer the
    /// visitor, acknowledge once handled.
    async fn on_record(&mut self, message: jetstream::Message) {
        let record = match decode::<ChatRecord>(&message.payload) {
            Ok(record) => record,
            Err(err) => {
                tracing::warn!(error = %err, subject = %message.subject, "undecodable record skipped");
                ack(&message, AckKind::Ack).await;
                return;
            }
        };
        let conversation = record.conversation_id.clone();
        let outcome = match &record.body {
            RecordBody::Event { event } => {
                match event {
                    ConversationEvent::Assigned { agent, .. }
                        if agent.role == Role::Bot && agent.id == self.id.as_str() =>
                    {
                        self.take(conversation.clone()).await;
                    }
                    ConversationEvent::Assigned { .. }
                    | ConversationEvent::HandedOff { .. }
                    | ConversationEvent::AgentLeft { .. }
                    | ConversationEvent::Transferred { .. }
                    | ConversationEvent::Closed {}
                    | ConversationEvent::Reopened {} => {
                        self.held.remove(&conversation);
                    }
                    _ => {}
                }
                Ok(())
            }
            RecordBody::Message { .. }
                if record.sender.role == Role::Visitor && self.held.contains_key(&conversation) =>
            {
                self.answer(&record).await
            }
            RecordBody::Message { .. } => Ok(()),
        };
        match outcome {
            Ok(()) => ack(&message, AckKind::Ack).await,
            Err(err) if err.is_temporary() => {
                tracing::warn!(error = %err, conversation_id = %conversation, seq = record.seq, "answer later");
                ack(&message, AckKind::Nak(Some(RETRY_DELAY))).await;
            }
            Err(err) => {
                tracing::info!(error = %err, conversation_id = %conversation, seq = record.seq, "not answered");
                if err.code() == Some(BotErrorCode::NotOwner) {
                    self.held.remove(&conversation);
                }
                ack(&message, AckKind::Ack).await;
            }
        }
    }

    /// Answers one visitor message, keyed by its `seq`: the FAQ's answer,
    /// or a handoff (asked for, or the second message it could not answer).
    async fn answer(&mut self, record: &ChatRecord) -> Result<(), CallError> {
        let RecordBody::Message { text, .. } = &record.body else {
            return Ok(());
        };
        let conversation = &record.conversation_id;
        let key = format!("re-{}", record.seq);
        let decision = match self.faq.decide(text) {
            Decision::Miss => {
                let held = self.held.entry(conversation.clone()).or_default();
                held.missed.insert(record.seq);
                if held.missed.len() >= MISSES_BEFORE_HANDOFF {
                    Decision::HandOff
                } else {
                    Decision::Miss
                }
            }
            other => other,
        };
        match decision {
            Decision::Answer(answer) => {
                let sent = self.api.send(conversation, &answer, &key).await?;
                tracing::info!(conversation_id = %conversation, seq = record.seq, answer_seq = sent.seq, duplicate = sent.duplicate, "answered");
            }
            Decision::Miss => {
                self.api
                    .send(conversation, &self.faq.fallback, &key)
                    .await?;
                tracing::info!(conversation_id = %conversation, seq = record.seq, "not understood");
            }
            Decision::HandOff => {
                self.api.send(conversation, &self.faq.handoff, &key).await?;
                match self.api.hand_off(conversation).await {
                    Ok(()) => {}
                    // Handed off already (by the visitor, say).
                    Err(err) if err.code() == Some(BotErrorCode::NotOwner) => {}
                    Err(err) => return Err(err),
                }
                self.held.remove(conversation);
                tracing::info!(conversation_id = %conversation, seq = record.seq, "handed off");
            }
        }
        Ok(())
    }
}

async fn ack(message: &jetstream::Message, kind: AckKind) {
    if let Err(err) = message.ack_with(kind).await {
        tracing::warn!(error = %err, "acknowledge a record");
    }
}

/// Says the bot runs, as often as the routers ask.
async fn announce(api: Api, instance: Option<String>, shutdown: CancellationToken) {
    let mut every = Duration::from_secs(5);
    loop {
        match api.presence(instance.clone()).await {
            Ok(asked) => every = asked,
            Err(err) => tracing::warn!(error = %err, "announce presence"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}
