//! `switchboard`: runs the components (`up` runs all of them in one
//! process) and the admin commands.
//!
//! - `cli`: the command line.
//! - `components`: starting edge, router and archiver with a shared
//!   shutdown, and stopping them on SIGINT/SIGTERM.
//! - `agents`: `agent add|list|remove`, and the demo agents.
//! - `telemetry`: tracing output.

mod agents;
mod cli;
mod components;
mod telemetry;

use clap::Parser;

use crate::cli::{Cli, Command};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let settings = match switchboard_config::Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("switchboard: {err}");
            return std::process::ExitCode::from(2);
        }
    };
    telemetry::init(&settings.log);
    let result = match cli.command {
        Command::Up { demo } => components::up(settings, demo).await,
        Command::Edge { demo } => components::edge_only(settings, demo).await,
        Command::Router => components::router_only(settings).await,
        Command::Archiver => components::archiver_only(settings).await,
        Command::Agent { command } => agents::run(settings, command).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "switchboard failed");
            eprintln!("switchboard: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
