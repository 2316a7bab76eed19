//! `switchboard agent …` and the demo agents.

use anyhow::Context;
use switchboard_bus::accounts::{self, NewAgent};
use switchboard_bus::{Backbone, BusError};
use switchboard_config::Settings;
use switchboard_protocol::ids::TeamId;

use switchboard_protocol::payloads::{encode, Notice, Participant};
use switchboard_protocol::subjects;

use crate::cli::{AgentCommand, Audience};
use crate::components::open_backbone;

/// Demo agents: login, name, password, team, capacity.
pub const DEMO_AGENTS: [(&str, &str, &str, Option<&str>, u32); 2] = [
    ("alice@demo", "Alice", "switchboard-demo", None, 3),
    ("bob@demo", "Bob", "switchboard-demo", None, 2),
];

pub async fn run(settings: Settings, command: AgentCommand) -> anyhow::Result<()> {
    let backbone = open_backbone(&settings, "admin").await?;
    match command {
        AgentCommand::Add {
            login,
            name,
            password,
            team,
            capacity,
        } => {
            let team = team
                .map(TeamId::new)
                .transpose()
                .context("invalid --team")?;
            let account = accounts::add(
                &backbone,
                NewAgent {
                    login,
                    name,
                    password,
                    team,
                    capacity,
                },
            )
            .await?;
            println!(
                "added agent {} ({}) id {}",
                account.login, account.name, account.id
            );
        }
        AgentCommand::List => {
            let accounts = accounts::list(&backbone).await?;
            println!(
                "{:<28} {:<20} {:<12} {:>8}  id",
                "login", "name", "team", "capacity"
            );
            for a in accounts {
                let team = a.team.as_ref().map_or("-", TeamId::as_str);
                println!(
                    "{:<28} {:<20} {:<12} {:>8}  {}",
                    a.login, a.name, team, a.capacity, a.id
                );
            }
        }
        AgentCommand::Set {
            login,
            capacity,
            team,
        } => {
            let team = match team.as_deref() {
                None => None,
                Some("none") => Some(None),
                Some(team) => Some(Some(TeamId::new(team).context("invalid --team")?)),
            };
            let account = accounts::update(&backbone, &login, capacity, team).await?;
            let team = account.team.as_ref().map_or("-", TeamId::as_str);
            println!(
                "agent {} now has capacity {} and team {team}",
                account.login, account.capacity
            );
        }
        AgentCommand::Remove { login } => {
            if accounts::remove(&backbone, &login).await? {
                println!("removed agent {login}");
            } else {
                anyhow::bail!("no agent with login {login:?}");
            }
        }
    }
    Ok(())
}

/// `switchboard broadcast`: one notice to every online agent or visitor.
pub async fn broadcast(settings: Settings, to: Audience, text: String) -> anyhow::Result<()> {
    let text = text.trim().to_owned();
    anyhow::ensure!(!text.is_empty(), "the notice is empty");
    let backbone = open_backbone(&settings, "admin").await?;
    let subject = match to {
        Audience::Agents => subjects::NOTICE_AGENTS,
        Audience::Visitors => subjects::NOTICE_VISITORS,
    };
    let notice = Notice {
        text,
        sender: Participant::system("admin"),
    };
    backbone
        .client
        .publish(subject, encode(&notice)?.into())
        .await?;
    backbone.client.flush().await?;
    println!(
        "notice sent to online {}",
        subject.trim_start_matches("notice.")
    );
    Ok(())
}

/// Creates the demo agents that do not exist yet.
pub async fn ensure_demo_agents(backbone: &Backbone) -> Result<(), BusError> {
    for (login, name, password, team, capacity) in DEMO_AGENTS {
        if accounts::find_by_login(backbone, login).await?.is_some() {
            continue;
        }
        let team = team.and_then(|t| TeamId::new(t).ok());
        accounts::add(
            backbone,
            NewAgent {
                login: login.into(),
                name: name.into(),
                password: password.into(),
                team,
                capacity,
            },
        )
        .await?;
    }
    Ok(())
}
