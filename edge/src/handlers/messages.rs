//! Handlers of what is said in a conversation: messages (with idempotent
//! retries), read marks, typing, and history pages.

use super::*;

/// Default and largest `history` page.
const DEFAULT_PAGE: u32 = 50;

const MAX_PAGE: u32 = 100;

pub(crate) fn text_allowed(session: &Session, text: &str) -> Handled {
    match check_text(text, session.state.config.edge.max_text_chars) {
        Ok(()) => Ok(()),
        Err(TextProblem::Empty) => Err(Refusal::new(ErrorCode::BadRequest, "text is empty")),
        Err(TextProblem::TooLong { max }) => Err(Refusal::new(
            ErrorCode::TooLarge,
            format!("text is longer than {max} characters"),
        )),
    }
}

/// `send`: store a message, acknowledge it to the sender.
pub(super) async fn send(
    session: &mut Session,
    conversation: &ConversationId,
    client_id: &str,
    text: String,
    retry: bool,
) -> Handled {
    if !valid_client_id(client_id) {
        return Err(Refusal::new(
            ErrorCode::BadRequest,
            "client_id must be 1-64 visible ASCII characters",
        ));
    }
    text_allowed(session, &text)?;
    let permit = may_write(session, conversation).await?;
    if retry {
        // JetStream recognises a repeat only inside its dedupe window; a
        // retry may come later (a client offline for long), so look for it.
        if let Some(original) = find_sent(session, conversation, client_id).await? {
            tracing::info!(%conversation, client_id, "retried send answered with the original");
            return ack(session, client_id, &original).await;
        }
    }
    if let Identity::Agent { id, .. } = &session.identity {
        if !permit.answered {
            // Before the message is stored: once the state says the agent
            // answered, no first-reply requeue can take the conversation
            // away from under a reply the visitor already sees.
            note_first_response(session, conversation, id).await?;
            if let Some(check) = session.may_send.get_mut(conversation) {
                check.answered = true;
            }
        }
    }
    let record = append_message(session, conversation, client_id, text).await?;
    if permit.bot_watch && matches!(session.identity, Identity::Visitor { .. }) {
        note_for_bot(session, &record).await;
    }
    Ok(())
}

/// A visitor wrote into a conversation that was waiting or held by a bot:
/// if a bot holds it now, its answer deadline runs from this message. Read
/// after the message is stored, so a bot assigned meanwhile either finds
/// the message in the log or is found here. A failure is logged: the
/// message is stored, and the bot still reads it.
pub(crate) async fn note_for_bot(session: &Session, record: &ChatRecord) {
    if let Err(err) = switchboard_bus::bots::note_visitor_message(
        &session.state.backbone,
        &record.conversation_id,
        record.seq,
        record.sent_at,
    )
    .await
    {
        tracing::warn!(error = %err, conversation = %record.conversation_id, "note a message for the bot");
    }
}

/// What [`may_write`] found.
#[derive(Debug, Clone, Copy)]
pub(super) struct Permit {
    /// The assigned agent had already answered.
    pub answered: bool,
    /// The conversation was waiting or held by a bot.
    pub bot_watch: bool,
}

/// Checks that this connection may write into `conversation` (a visitor:
/// their own open conversation; an agent: an open one assigned to them),
/// and follows it if it does not yet.
///
/// The conversation's state is read once, not for every message: the
/// check holds while the hub has seen no event of the conversation since
/// (assignments, transfers, closes are all events, and the hub stops
/// delivering to an agent who lost it).
pub(super) async fn may_write(
    session: &mut Session,
    conversation: &ConversationId,
) -> Result<Permit, Refusal> {
    let hub = &session.state.hub;
    let epoch = hub.epoch(conversation, session.connection);
    if let Some(check) = session
        .may_send
        .get(conversation)
        .filter(|check| Some(check.epoch) == epoch)
    {
        return Ok(Permit {
            answered: check.answered,
            bot_watch: check.bot_watch,
        });
    }
    let state = authorize(session, conversation, true).await?;
    let answered = state.first_response_at.is_some();
    let bot_watch = state.status == ConversationStatus::Queued || state.bot_owner().is_some();
    match epoch {
        Some(epoch) => {
            // An agent's connection may write into many conversations over
            // a day: forget the checks that no longer hold.
            if session.may_send.len() >= MAX_SEND_CHECKS {
                let connection = session.connection;
                session
                    .may_send
                    .retain(|c, check| hub.epoch(c, connection) == Some(check.epoch));
            }
            session.may_send.insert(
                conversation.clone(),
                SendCheck {
                    epoch,
                    answered,
                    bot_watch,
                },
            );
        }
        None => {
            follow(session, conversation, CatchUp::Live).await?;
        }
    }
    Ok(Permit {
        answered,
        bot_watch,
    })
}

/// Marks that the assigned agent has answered (once per assignment), so
/// the router's first-reply deadline stops counting; refused when the
/// conversation is no longer theirs (requeued for not answering in time).
pub(super) async fn note_first_response(
    session: &Session,
    conversation: &ConversationId,
    agent: &AgentId,
) -> Handled {
    let still_mine = kv::cas(
        &session.state.backbone.conversations,
        conversation.as_str(),
        |current: Option<&ConversationState>| match current {
            Some(state) if state.is_assigned_to(agent) && state.first_response_at.is_none() => {
                let mut state = state.clone();
                state.first_response_at = Some(now_ms());
                Decision::Write(state, true)
            }
            Some(state) => Decision::Keep(state.is_assigned_to(agent)),
            None => Decision::Keep(false),
        },
    )
    .await?;
    if still_mine {
        Ok(())
    } else {
        Err(Refusal::new(
            ErrorCode::Forbidden,
            "this conversation is not yours",
        ))
    }
}

/// Send checks a connection keeps before forgetting stale ones.
const MAX_SEND_CHECKS: usize = 64;

/// Records looked at, at most, for a retried send.
const RETRY_LOOKBACK: u64 = 100;
/// Records looked at when the connection said nothing of where the client
/// is in the conversation.
const RETRY_LOOKBACK_BLIND: u64 = 20;
/// Retried sends a connection may have looked up per minute; past it, a
/// retry counts on the stream's own dedupe only.
const RETRY_LOOKUPS_PER_MINUTE: u32 = 30;

/// A message this identity sent with `client_id`, among the records after
/// those the client had seen (its `resume` cursor: a message it had seen
/// come back it would not retry), at most [`RETRY_LOOKBACK`] of them.
pub(crate) async fn find_sent(
    session: &mut Session,
    conversation: &ConversationId,
    client_id: &str,
) -> Result<Option<ChatRecord>, BusError> {
    if !session.retry_lookups.allow(RETRY_LOOKUPS_PER_MINUTE) {
        tracing::info!(%conversation, "retried sends looked up too often; not this one");
        return Ok(None);
    }
    let log = &session.state.backbone.log;
    let last = log.last_seq(conversation).await?;
    let lookback = match session.resume.get(conversation) {
        Some(seen) => last.saturating_sub(*seen).min(RETRY_LOOKBACK),
        None => RETRY_LOOKBACK_BLIND,
    };
    if lookback == 0 {
        return Ok(None);
    }
    let from = last.saturating_sub(lookback) + 1;
    let me = session.identity.id();
    Ok(log
        .read_from(
            conversation,
            from,
            usize::try_from(lookback).unwrap_or(usize::MAX),
        )
        .await?
        .into_iter()
        .find(|r| {
            r.sender.id == me
                && matches!(&r.body, RecordBody::Message { client_id: c, .. } if c == client_id)
        }))
}

pub(crate) async fn ack(session: &Session, client_id: &str, record: &ChatRecord) -> Handled {
    session
        .outbox
        .frame(&ServerFrame::Ack {
            client_id: client_id.to_owned(),
            conversation_id: record.conversation_id.clone(),
            id: record.id.clone(),
            seq: record.seq,
            sent_at: rfc3339(record.sent_at),
        })
        .await;
    Ok(())
}

/// Stores a message of the connection's identity and acknowledges it;
/// returns the stored record.
pub(crate) async fn append_message(
    session: &Session,
    conversation: &ConversationId,
    client_id: &str,
    text: String,
) -> Result<ChatRecord, Refusal> {
    let sender = session.identity.participant();
    // The dedupe key names the sender, so one client cannot collide with
    // another's client ids.
    let dedupe = format!(
        "{conversation}.{}.{}.{client_id}",
        sender.role.as_str(),
        sender.id
    );
    let appended = session
        .state
        .backbone
        .log
        .append(
            conversation,
            sender,
            RecordBody::Message {
                text,
                client_id: client_id.to_owned(),
            },
            Some(&dedupe),
        )
        .await?;
    ack(session, client_id, &appended.record).await?;
    Ok(appended.record)
}

/// `read`: remember how far this identity has read (only ever forward),
/// and tell the other participants.
pub(super) async fn read(
    session: &mut Session,
    conversation: &ConversationId,
    seq: u64,
) -> Handled {
    match authorize(session, conversation, false).await {
        Ok(_) => {}
        // Finished and out of KV: readable, and nobody follows it any more
        // to be told, so nothing is stored.
        Err(refusal) if refusal.code == ErrorCode::NotFound => {
            return authorize_read(session, conversation).await;
        }
        Err(refusal) => return Err(refusal),
    }
    let backbone = &session.state.backbone;
    let last = backbone.log.last_seq(conversation).await?;
    if seq > last {
        return Err(Refusal::new(
            ErrorCode::BadRequest,
            format!("seq {seq} is past the end of the conversation ({last})"),
        ));
    }
    let reader = session.identity.participant();
    let key = subjects::read_key(conversation, &reader.id);
    let advanced = kv::cas(
        &backbone.reads,
        &key,
        |current: Option<&ReadMark>| match current {
            Some(mark) if mark.seq >= seq => Decision::Keep(false),
            _ => Decision::Write(ReadMark { seq, at: now_ms() }, true),
        },
    )
    .await?;
    if advanced {
        if !session
            .state
            .hub
            .is_following(conversation, session.connection)
        {
            follow(session, conversation, CatchUp::Live).await?;
        }
        publish_signal(session, conversation, &Signal::Read { reader, seq }).await?;
    }
    Ok(())
}

/// `typing`: an ephemeral signal to the other participants, allowed to
/// whoever may write into the conversation (as `send`).
pub(super) async fn typing(
    session: &mut Session,
    conversation: &ConversationId,
    state: bool,
) -> Handled {
    may_write(session, conversation).await?;
    let sender = session.identity.participant();
    publish_signal(session, conversation, &Signal::Typing { sender, state }).await
}

/// Publishes a signal (`typing`, `read`) to the conversation's followers.
async fn publish_signal(
    session: &Session,
    conversation: &ConversationId,
    signal: &Signal,
) -> Handled {
    let payload = encode(signal).map_err(|e| BusError::decode("signal", e))?;
    session
        .state
        .backbone
        .client
        .publish(subjects::signal(conversation), payload.into())
        .await
        .map_err(|e| BusError::nats("publish signal", e))?;
    Ok(())
}

/// `history`: a page of records before `before_seq`, from the stream and,
/// for what it no longer holds, the archive.
pub(super) async fn history(
    session: &mut Session,
    conversation: &ConversationId,
    before_seq: Option<u64>,
    limit: Option<u32>,
) -> Handled {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(Refusal::new(
            ErrorCode::BadRequest,
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    authorize_read(session, conversation).await?;
    let log = &session.state.backbone.log;
    let before = before_seq.unwrap_or(u64::MAX);
    let mut page = log
        .read_before(conversation, before, limit as usize)
        .await?;
    if let Some(below) = page.archived_below {
        let wanted = limit.saturating_sub(u32::try_from(page.records.len()).unwrap_or(limit));
        match archived(session, conversation, below, wanted).await {
            Ok(mut older) => {
                older.retain(|r| r.seq < below);
                older.append(&mut page.records);
                page.records = older;
                page.has_more = page.records.first().is_some_and(|r| r.seq > 1);
            }
            Err(err) => {
                // The client gets what the stream has and `has_more`.
                tracing::warn!(error = %err, %conversation, "archive history unavailable");
            }
        }
    }
    session
        .outbox
        .frame(&ServerFrame::History {
            conversation_id: conversation.clone(),
            items: page
                .records
                .iter()
                .map(|r| HistoryItem::for_viewer(r, &session.identity.role()))
                .collect(),
            has_more: page.has_more,
        })
        .await;
    Ok(())
}

/// Asks the archiver for records older than the stream holds.
pub(super) async fn archived(
    session: &Session,
    conversation: &ConversationId,
    before_seq: u64,
    limit: u32,
) -> Result<Vec<ChatRecord>, BusError> {
    if limit == 0 || before_seq <= 1 {
        return Ok(Vec::new());
    }
    session
        .state
        .backbone
        .log
        .archived(conversation, before_seq, limit)
        .await
}
