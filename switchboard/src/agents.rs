//! `switchboard agent …` and the demo agents.

use anyhow::Context;
use switchboard_bus::accounts::{self, NewAgent};
use switchboard_bus::{admin, Backbone, BusError};
use switchboard_config::Settings;
use switchboard_protocol::ids::TeamId;

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
            role,
        } => {
            let team = team
                .map(TeamId::new)
                .transpose()
                .context("invalid --team")?;
            let account = accounts::add_as(
                &backbone,
                NewAgent {
                    login,
                    name,
                    password,
                    team,
                    capacity,
                },
                role.into(),
            )
            .await?;
            println!(
                "added {} {} ({}) id {}",
                account.role.as_str(),
                account.login,
                account.name,
                account.id
            );
        }
        AgentCommand::List => {
            let accounts = accounts::list(&backbone).await?;
            println!(
                "{:<28} {:<20} {:<12} {:>8}  {:<6} {:<8} id",
                "login", "name", "team", "capacity", "role", "state"
            );
            for a in accounts {
                let team = a.team.as_ref().map_or("-", TeamId::as_str);
                println!(
                    "{:<28} {:<20} {:<12} {:>8}  {:<6} {:<8} {}",
                    a.login,
                    a.name,
                    team,
                    a.capacity,
                    a.role.as_str(),
                    if a.disabled { "disabled" } else { "enabled" },
                    a.id
                );
            }
        }
        AgentCommand::Set {
            login,
            capacity,
            team,
            role,
        } => {
            let team = match team.as_deref() {
                None => None,
                Some("none") => Some(None),
                Some(team) => Some(Some(TeamId::new(team).context("invalid --team")?)),
            };
            let mut account = accounts::update(&backbone, &login, capacity, team).await?;
            if let Some(role) = role {
                account = accounts::set_role(&backbone, &login, role.into()).await?;
            }
            let team = account.team.as_ref().map_or("-", TeamId::as_str);
            println!(
                "agent {} now has capacity {}, team {team} and role {}",
                account.login,
                account.capacity,
                account.role.as_str()
            );
        }
        AgentCommand::Disable { login } => {
            accounts::set_disabled(&backbone, &login, true).await?;
            println!("disabled agent {login}; their connections are closed");
        }
        AgentCommand::Enable { login } => {
            accounts::set_disabled(&backbone, &login, false).await?;
            println!("enabled agent {login}");
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
    let to = match to {
        Audience::Agents => admin::Audience::Agents,
        Audience::Visitors => admin::Audience::Visitors,
    };
    let backbone = open_backbone(&settings, "admin").await?;
    admin::broadcast(&backbone, to, &text).await?;
    println!("notice sent to online {}", to.as_str());
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
