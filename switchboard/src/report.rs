//! `switchboard report`: the statistics of a window of conversations,
//! read from the archive (MongoDB) by the same code the archivers answer
//! `GET /api/v1/stats` with, so `--format json` prints the same JSON.

use anyhow::Context;
use switchboard_analytics::render;
use switchboard_archiver::store::Archive;
use switchboard_config::Settings;
use switchboard_protocol::stats::StatsRequest;

use crate::cli::{ReportArgs, ReportFormat};
use crate::components::open_backbone;

pub async fn run(settings: Settings, args: ReportArgs) -> anyhow::Result<()> {
    let request = StatsRequest {
        since: args.since,
        until: args.until,
        team: args.team,
        agent: args.agent,
        tz: args.tz,
    };
    let archive = Archive::open(&settings.mongo.uri, &settings.mongo.database)
        .await
        .context("open the archive")?;
    // Agent logins live in the accounts, on NATS.
    let backbone = open_backbone(&settings, "report").await?;
    let report = switchboard_archiver::stats::report(&archive, &backbone, &request).await?;
    match args.format {
        ReportFormat::Table => print!("{}", render::table(&report)),
        ReportFormat::Json => println!("{}", serde_json::to_string(&report)?),
        ReportFormat::Csv => print!("{}", render::csv(&report)),
    }
    Ok(())
}
