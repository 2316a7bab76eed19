//! Bot-first teams: a new conversation of a team with a bot goes to that
//! bot first, while the bot is present, by the same compare-and-set as an
//! agent's assignment; and a bot that is absent, or does not answer within
//! `router.bot_reply_deadline`, loses its conversations to the humans.
//!
//! Which conversations a bot may take, and which it has held too long, are
//! pure decisions over the mirror ([`bot_for`], [`overdue`]); the writes
//! are [`assign`] and [`enforce`].

use std::time::Duration;

use switchboard_bus::bots::{self, HandoffReason};
use switchboard_bus::kv::{self, Decision};
use switchboard_bus::{outbox, Backbone, BusError};
use switchboard_protocol::ids::{BotId, ConversationId};
use switchboard_protocol::payloads::{
    AssignmentReason, BotAccount, ConversationEvent, ConversationState, ConversationStatus,
    Participant,
};
use switchboard_protocol::time::now_ms;

use crate::assign::{Outcome, ROUTER};
use crate::mirror::Mirror;

/// The `strategy` of a bot's assignment in its audit trail.
pub const BOT_FIRST: &str = "bot_first";

/// Whether `bot` may take this conversation from the queue: it waits in
/// the bot's team, no human has had it and no bot handed it off, and it
/// names no agent (a transfer, a reopening of a human's conversation, a
/// pick-up and an admin's choice are for humans).
pub fn eligible(state: &ConversationState, bot: &BotAccount) -> bool {
    state.status == ConversationStatus::Queued
        && state.team.as_ref() == Some(&bot.team)
        && !state.humans_only
        && state.exclude_bot.as_ref() != Some(&bot.id)
        && state.target_agent.is_none()
}

/// The bot a waiting conversation goes to now: its team's bot, if present
/// and the conversation is [`eligible`].
pub fn bot_for<'a>(
    mirror: &'a Mirror,
    state: &ConversationState,
    now_ms: i64,
    presence_ttl: Duration,
) -> Option<&'a BotAccount> {
    let bot = mirror.bot_of_team(state.team.as_ref()?)?;
    (eligible(state, bot) && mirror.bot_present(&bot.id, now_ms, presence_ttl)).then_some(bot)
}

/// Conversations bots hold that go to the humans now, and why: the bot was
/// removed, has been absent longer than the deadline, or has not answered
/// the visitor's latest message within it.
pub fn overdue(
    mirror: &Mirror,
    now_ms: i64,
    deadline: Duration,
    presence_ttl: Duration,
) -> Vec<(ConversationId, BotId, HandoffReason)> {
    let deadline = millis(deadline);
    let mut overdue = Vec::new();
    for state in mirror.conversations.values() {
        let Some(bot) = state.bot_owner() else {
            continue;
        };
        let reason = if !mirror.bots.contains_key(&bot) {
            Some(HandoffReason::BotAbsent)
        } else if !mirror.bot_present(&bot, now_ms, presence_ttl) {
            let since = mirror
                .bot_absent_since(&bot, presence_ttl)
                .or(state.assigned_at)
                .unwrap_or(0);
            (now_ms - since > deadline).then_some(HandoffReason::BotAbsent)
        } else {
            state
                .bot_wait
                .filter(|wait| now_ms - wait.since > deadline)
                .map(HandoffReason::NoAnswer)
        };
        if let Some(reason) = reason {
            overdue.push((state.id.clone(), bot, reason));
        }
    }
    overdue.sort_by(|a, b| a.0.cmp(&b.0));
    overdue
}

/// Hands every [`overdue`] conversation to the humans. The handoff is a
/// compare-and-set that checks the reason again in the state itself, so a
/// router whose view lags behind an answer changes nothing.
///
/// # Errors
/// The first NATS error (the rest are tried on the next pass).
pub async fn enforce(
    backbone: &Backbone,
    mirror: &Mirror,
    now_ms: i64,
    deadline: Duration,
    presence_ttl: Duration,
) -> Result<(), BusError> {
    for (conversation, bot, reason) in overdue(mirror, now_ms, deadline, presence_ttl) {
        bots::hand_off(
            backbone,
            &conversation,
            &bot,
            reason,
            Participant::system(ROUTER),
        )
        .await?;
    }
    Ok(())
}

/// Gives a waiting conversation to its team's bot: one compare-and-set
/// from `queued` to `assigned` (if it is still [`eligible`]), owing the
/// `assigned` event and the bot's notice; then starts the bot's answer
/// deadline for what the visitor wrote before.
///
/// # Errors
/// NATS errors; the state stays consistent (an owed event is written by
/// the reconciler).
#[tracing::instrument(name = "router.assign_bot", skip_all, fields(conversation_id = %conversation, bot_id = %bot.id))]
pub async fn assign(
    backbone: &Backbone,
    conversation: &ConversationId,
    bot: &BotAccount,
) -> Result<Outcome, BusError> {
    let now = now_ms();
    let participant = Participant::bot(&bot.id, bot.name.clone());
    let (assigned, written) = kv::cas_versioned(
        &backbone.conversations,
        conversation.as_str(),
        |current: Option<&ConversationState>| match current {
            Some(state) if eligible(state, bot) => {
                let mut state = state.clone();
                state.status = ConversationStatus::Assigned;
                state.agent = Some(participant.clone());
                state.assigned_at = Some(now);
                state.first_response_at = None;
                state.bot_wait = None;
                state.owe_to_bot(
                    Participant::system(ROUTER),
                    ConversationEvent::Assigned {
                        agent: participant.clone(),
                        reason: Some(AssignmentReason {
                            strategy: BOT_FIRST.to_owned(),
                            candidates: Vec::new(),
                        }),
                        handed_off: None,
                    },
                    bot.id.clone(),
                );
                Decision::Write(state, true)
            }
            _ => Decision::Keep(false),
        },
    )
    .await?;
    let Some(written) = written.filter(|_| assigned) else {
        return Ok(Outcome::NotQueued);
    };
    outbox::flush_from(backbone, conversation, written).await?;
    tracing::info!("bot assigned");
    // Read after the assignment is written: a visitor's message stored
    // before this read is found here, and one stored after it finds the
    // bot holding the conversation (its edge starts the deadline then).
    let waiting = bots::waiting(backbone, conversation, &bot.id).await?;
    if let Some(last) = waiting.last() {
        bots::note_visitor_message(backbone, conversation, last.seq, last.sent_at.max(now)).await?;
    }
    Ok(Outcome::Assigned)
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_protocol::ids::{AgentId, TeamId};
    use switchboard_protocol::payloads::{BotPresence, BotWait};

    const TTL: Duration = Duration::from_secs(30);
    const DEADLINE: Duration = Duration::from_secs(20);

    fn bot(mirror: &mut Mirror, id: &str, team: &str, seen_at: Option<i64>) -> BotAccount {
        let account = BotAccount {
            id: BotId::new(id).unwrap(),
            name: id.into(),
            team: TeamId::new(team).unwrap(),
            created_at: 0,
        };
        mirror.bots.insert(account.id.clone(), account.clone());
        if let Some(at) = seen_at {
            mirror.bot_presence.insert(
                account.id.clone(),
                BotPresence {
                    bot_id: account.id.clone(),
                    updated_at: at,
                    instance: None,
                },
            );
        }
        account
    }

    fn waiting(id: &str, team: &str) -> ConversationState {
        ConversationState::opened(
            ConversationId::new(id).unwrap(),
            Participant::system("v"),
            Some(TeamId::new(team).unwrap()),
            0,
        )
    }

    fn held(mirror: &mut Mirror, id: &str, bot: &BotAccount, assigned_at: i64) {
        let mut state = waiting(id, bot.team.as_str());
        state.status = ConversationStatus::Assigned;
        state.agent = Some(Participant::bot(&bot.id, bot.name.clone()));
        state.assigned_at = Some(assigned_at);
        mirror.keep(state.id.clone(), state);
    }

    #[test]
    fn a_present_bot_takes_new_conversations_of_its_team_only() {
        let mut mirror = Mirror::default();
        bot(&mut mirror, "faq", "sales", Some(1_000));
        let new = waiting("c_1", "sales");
        let chosen = |m: &Mirror, c: &ConversationState, now| {
            bot_for(m, c, now, TTL).map(|b| b.id.to_string())
        };
        assert_eq!(chosen(&mirror, &new, 2_000).as_deref(), Some("faq"));
        // Absent: straight to the humans.
        assert_eq!(chosen(&mirror, &new, 1_000 + 31_000), None);
        // Another team, no team.
        assert_eq!(chosen(&mirror, &waiting("c_2", "support"), 2_000), None);
        let mut no_team = new.clone();
        no_team.team = None;
        assert_eq!(chosen(&mirror, &no_team, 2_000), None);
        // Handed off, or a human had it, or it names an agent.
        let mut handed = new.clone();
        handed.humans_only = true;
        assert_eq!(chosen(&mirror, &handed, 2_000), None);
        let mut excluded = new.clone();
        excluded.exclude_bot = Some(BotId::new("faq").unwrap());
        assert_eq!(chosen(&mirror, &excluded, 2_000), None);
        let mut targeted = new.clone();
        targeted.target_agent = Some(AgentId::new("a_1").unwrap());
        assert_eq!(chosen(&mirror, &targeted, 2_000), None);
        // Already held.
        let mut assigned = new;
        assigned.status = ConversationStatus::Assigned;
        assert_eq!(chosen(&mirror, &assigned, 2_000), None);
    }

    #[test]
    fn absent_silent_and_removed_bots_lose_their_conversations_after_the_deadline() {
        let mut mirror = Mirror::default();
        let faq = bot(&mut mirror, "faq", "sales", Some(100_000));
        let gone = bot(&mut mirror, "gone", "support", None);
        held(&mut mirror, "c_quiet", &faq, 100_000);
        held(&mut mirror, "c_asked", &faq, 100_000);
        held(&mut mirror, "c_gone", &gone, 100_000);
        let wait = BotWait {
            seq: 4,
            since: 101_000,
        };
        if let Some(state) = mirror
            .conversations
            .get_mut(&ConversationId::new("c_asked").unwrap())
        {
            state.bot_wait = Some(wait);
        }
        let names = |m: &Mirror, now| {
            overdue(m, now, DEADLINE, TTL)
                .into_iter()
                .map(|(c, _, r)| (c.to_string(), r))
                .collect::<Vec<_>>()
        };
        // Present and within the deadline: nothing.
        assert!(names(&mirror, 110_000).is_empty());
        // The bot that never announced itself: from its assignment; the
        // question waits past the deadline. The quiet conversation of a
        // present bot stays.
        assert_eq!(
            names(&mirror, 121_001),
            [
                ("c_asked".to_string(), HandoffReason::NoAnswer(wait)),
                ("c_gone".to_string(), HandoffReason::BotAbsent),
            ]
        );
        // Absent since its presence expired (100 s + 30 s): the deadline
        // runs from then, for every conversation it holds.
        let at = 100_000 + 30_000 + 20_000 + 1;
        let mut present_less = Mirror::default();
        let faq = bot(&mut present_less, "faq", "sales", Some(100_000));
        held(&mut present_less, "c_quiet", &faq, 100_000);
        assert!(names(&present_less, at - 2).is_empty());
        assert_eq!(
            names(&present_less, at),
            [("c_quiet".to_string(), HandoffReason::BotAbsent)]
        );
        // A removed bot's conversations go at once.
        present_less.bots.clear();
        assert_eq!(
            names(&present_less, 100_001),
            [("c_quiet".to_string(), HandoffReason::BotAbsent)]
        );
    }
}
