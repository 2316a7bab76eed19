//! `switchboard queue …`: the admin's view of the queue and the two ways to
//! change it (the logic is `switchboard_bus::admin`, shared with the edge's
//! admin API).

use anyhow::Context;
use switchboard_bus::admin;
use switchboard_config::Settings;
use switchboard_protocol::ids::ConversationId;
use switchboard_protocol::time::{now_ms, rfc3339};

use crate::cli::QueueCommand;
use crate::components::open_backbone;

pub async fn run(settings: Settings, command: QueueCommand) -> anyhow::Result<()> {
    let backbone = open_backbone(&settings, "admin").await?;
    match command {
        QueueCommand::List => {
            let queued = admin::waiting(&backbone).await?;
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
            admin::prioritize(&backbone, &id, priority).await?;
            println!("conversation {id} now has priority {priority}");
        }
        QueueCommand::Assign {
            conversation,
            agent,
        } => {
            let id = ConversationId::new(conversation).context("invalid --conversation")?;
            let (_, account) = admin::assign(&backbone, &id, &agent).await?;
            println!(
                "conversation {id} goes to {} as soon as they have a free slot",
                account.login
            );
        }
    }
    Ok(())
}
