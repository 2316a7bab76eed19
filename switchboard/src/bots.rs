//! `switchboard bot …`: bot accounts.

use anyhow::Context;
use switchboard_bus::bots::{self, NewBot};
use switchboard_config::Settings;
use switchboard_protocol::ids::{BotId, TeamId};
use switchboard_protocol::payloads::BotPresence;
use switchboard_protocol::time::now_ms;

use crate::cli::BotCommand;
use crate::components::open_backbone;

pub async fn run(settings: Settings, command: BotCommand) -> anyhow::Result<()> {
    let backbone = open_backbone(&settings, "admin").await?;
    match command {
        BotCommand::Add { id, name, team } => {
            let id = BotId::new(id).context("invalid --id")?;
            let team = TeamId::new(team).context("invalid --team")?;
            let bot = bots::add(&backbone, NewBot { id, name, team }).await?;
            println!(
                "added bot {} ({}): team {} is bot-first while it runs",
                bot.id, bot.name, bot.team
            );
        }
        BotCommand::List => {
            let ttl =
                i64::try_from(settings.nats.presence_ttl.get().as_millis()).unwrap_or(i64::MAX);
            println!("{:<24} {:<24} {:<16} state", "id", "name", "team");
            for bot in bots::list(&backbone).await? {
                let seen = switchboard_bus::kv::get::<BotPresence>(
                    &backbone.bot_presence,
                    bot.id.as_str(),
                )
                .await?;
                let state = match seen {
                    Some(p) if now_ms() - p.value.updated_at <= ttl => "running",
                    _ => "absent",
                };
                println!("{:<24} {:<24} {:<16} {state}", bot.id, bot.name, bot.team);
            }
        }
        BotCommand::Remove { id } => {
            let id = BotId::new(id).context("invalid --id")?;
            if bots::remove(&backbone, &id).await? {
                println!("removed bot {id}; its conversations go to the humans");
            } else {
                anyhow::bail!("no bot with id {id:?}");
            }
        }
    }
    Ok(())
}
