//! `switchboard queue …`: the admin's view of the queue and the two ways to
//! change it. Changes are compare-and-set writes on the routing state that
//! every router picks up at once.

use anyhow::Context;
use futures::TryStreamExt;
use switchboard_bus::accounts;
use switchboard_bus::kv::{self, Decision};
use switchboard_config::Settings;
use switchboard_protocol::ids::ConversationId;
use switchboard_protocol::payloads::{ConversationState, ConversationStatus};
use switchboard_protocol::time::{now_ms, rfc3339};

use crate::cli::QueueCommand;
use crate::components::open_backbone;

/// Priority of a force-assigned conversation.
const FORCED_PRIORITY: i32 = 1_000;

pub async fn run(settings: Settings, command: QueueCommand) -> anyhow::Result<()> {
    let backbone = open_backbone(&settings, "admin").await?;
    match command {
        QueueCommand::List => {
            let keys: Vec<String> = backbone.conversations.keys().await?.try_collect().await?;
            let mut queued = Vec::new();
            for key in keys {
                if let Some(state) =
                    kv::get::<ConversationState>(&backbone.conversations, &key).await?
                {
                    if state.value.status == ConversationStatus::Queued {
                        queued.push(state.value);
                    }
                }
            }
            queued.sort_by(|a, b| a.queue_order(b));
            println!(
                "{:<30} {:<20} {:<10} {:>8}  {:<24} waiting",
                "conversation", "visitor", "team", "priority", "queued at"
            );
            let now = now_ms();
            for c in queued {
                let team = c.team.as_ref().map_or("-", |t| t.as_str());
                println!(
                    "{:<30} {:<20} {:<10} {:>8}  {:<24} {}s",
                    c.id,
                    c.visitor.name,
                    team,
                    c.priority,
                    rfc3339(c.queued_at),
                    (now - c.queued_at) / 1000
                );
            }
        }
        QueueCommand::Prioritize {
            conversation,
            priority,
        } => {
            let id = ConversationId::new(conversation).context("invalid --conversation")?;
            change(&backbone, &id, |state| state.priority = priority).await?;
            println!("conversation {id} now has priority {priority}");
        }
        QueueCommand::Assign {
            conversation,
            agent,
        } => {
            let id = ConversationId::new(conversation).context("invalid --conversation")?;
            let account = accounts::find_by_login(&backbone, &agent)
                .await?
                .with_context(|| format!("no agent with login {agent:?}"))?;
            change(&backbone, &id, |state| {
                state.target_agent = Some(account.id.clone());
                state.target_only = true;
                state.exclude_agent = None;
                state.priority = FORCED_PRIORITY;
            })
            .await?;
            println!(
                "conversation {id} goes to {} as soon as they have a free slot",
                account.login
            );
        }
    }
    Ok(())
}

/// Changes a waiting conversation; refuses one that is not waiting.
async fn change(
    backbone: &switchboard_bus::Backbone,
    id: &ConversationId,
    edit: impl Fn(&mut ConversationState),
) -> anyhow::Result<()> {
    let changed = kv::cas(
        &backbone.conversations,
        id.as_str(),
        |current: Option<&ConversationState>| match current {
            Some(state) if state.status == ConversationStatus::Queued => {
                let mut state = state.clone();
                edit(&mut state);
                Decision::Write(state, true)
            }
            _ => Decision::Keep(false),
        },
    )
    .await?;
    anyhow::ensure!(changed, "conversation {id} is not waiting in the queue");
    Ok(())
}
