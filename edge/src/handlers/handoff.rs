//! `handoff`: the visitor asks for a person while a bot holds their
//! conversation. The conversation goes back to its team's human queue at
//! its original place (see `switchboard_bus::bots::hand_off`).

use super::*;

use switchboard_bus::bots::{self, HandoffReason};

/// Hands the visitor's conversation from its bot to the humans. Nothing to
/// do when no bot holds it (already with the humans, or asked twice).
pub(super) async fn handoff(session: &mut Session, conversation: &ConversationId) -> Handled {
    if !matches!(session.identity, Identity::Visitor { .. }) {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "only visitors ask for a person",
        ));
    }
    let state = authorize(session, conversation, true).await?;
    let Some(bot) = state.bot_owner() else {
        tracing::info!(%conversation, "handoff asked of a conversation no bot holds");
        return Ok(());
    };
    let visitor = session.identity.participant();
    let moved = bots::hand_off(
        &session.state.backbone,
        conversation,
        &bot,
        HandoffReason::VisitorAsked,
        visitor,
    )
    .await?;
    tracing::info!(%conversation, bot_id = %bot, moved, "visitor asked for a person");
    Ok(())
}
