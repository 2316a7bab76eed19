//! `switchboard`: runs the components (`up` runs all of them in one
//! process) and the admin commands. The binary is `main.rs` calling
//! [`main`]; the integration tests build their node binary from it too.
//!
//! - `cli`: the command line.
//! - `components`: starting edge, router and archiver with a shared
//!   shutdown, and stopping them on SIGINT/SIGTERM.
//! - `agents`: `agent add|list|remove|set`, `broadcast`, and the demo agents.
//! - `bots`: `bot add|list|remove`.
//! - `queue`: `queue list|prioritize|assign`.
//! - `report`: `report`, the statistics over the archive.
//! - `telemetry`: tracing output.

mod agents;
mod bots;
mod cli;
mod components;
mod queue;
mod report;
mod telemetry;

use clap::Parser;

use crate::cli::{Cli, Command};

/// Runs the command line; what the binary's `main` does.
pub fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("switchboard: cannot start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(Cli::parse()))
}

async fn run(cli: Cli) -> std::process::ExitCode {
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
        Command::Broadcast { to, text } => agents::broadcast(settings, to, text).await,
        Command::Bot { command } => bots::run(settings, command).await,
        Command::Queue { command } => queue::run(settings, command).await,
        Command::Report(args) => report::run(settings, args).await,
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
