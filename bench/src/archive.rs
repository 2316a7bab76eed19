//! `archive`: the archiver's throughput and lag at an offered message rate.
//! Visitors send at a fixed total rate (open loop) for a while; meanwhile
//! the `CHAT` stream's record count and the MongoDB `messages` count are
//! sampled. The lag is their difference (records stored but not yet
//! archived). After the load stops, sampling goes on until the archive has
//! caught up (or the drain time limit passes).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mongodb::bson::Document;
use serde::Serialize;
use switchboard_protocol::subjects;

use crate::chat::{self, Mode, Shared, Tally};
use crate::now_ns;
use crate::report::{num, row, Report};
use crate::setup::{self, Visitor};
use crate::stats::{Errors, Latency};

#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    pub visitor_edges: Vec<SocketAddr>,
    pub nats_url: String,
    pub mongo_uri: String,
    pub database: String,
    pub conversations: usize,
    pub rate: f64,
    pub secs: f64,
    /// How long to wait for the archive to catch up after the load.
    pub drain: Duration,
    pub sample: Duration,
    /// The archiver's `archiver.batch_size`, for the report.
    pub batch_size: Option<u64>,
    pub concurrency: usize,
}

/// One sample: seconds since the load began, records in the stream,
/// documents in `messages`.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub t: f64,
    pub stream: u64,
    pub archived: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArchiveReport {
    pub scenario: &'static str,
    pub conversations: usize,
    pub offered_rate: f64,
    pub secs: f64,
    /// Messages acknowledged by the edges per second during the load.
    pub acked_per_sec: f64,
    pub ack: Latency,
    /// Records the stream took per second during the load (messages and
    /// events).
    pub stored_per_sec: f64,
    /// Documents MongoDB took per second during the load.
    pub archived_per_sec: f64,
    /// Documents per second from the start of the load until caught up.
    pub archived_per_sec_overall: f64,
    pub max_lag: u64,
    pub lag_at_end_of_load: u64,
    /// From the end of the load until the lag was 0 (`null` if it never was
    /// within the drain limit).
    pub drain_secs: Option<f64>,
    pub batch_size: Option<u64>,
    /// Growth of `messages` between consecutive samples that saw growth.
    pub docs_per_sample_p50: u64,
    pub docs_per_sample_max: u64,
    pub sample_ms: u64,
    pub errors: Errors,
    pub samples: Vec<Sample>,
}

impl Report for ArchiveReport {
    fn title(&self) -> String {
        format!(
            "archive: {} msg/s offered over {} conversations",
            num(self.offered_rate, 0),
            num(self.conversations as f64, 0)
        )
    }

    fn rows(&self) -> Vec<(String, String)> {
        vec![
            row("load", format!("{:.1} s", self.secs)),
            row("acked/s", num(self.acked_per_sec, 0)),
            row("ack p50/p99/p99.9/max", self.ack.line()),
            row("stored records/s", num(self.stored_per_sec, 0)),
            row("archived docs/s during load", num(self.archived_per_sec, 0)),
            row(
                "archived docs/s until caught up",
                num(self.archived_per_sec_overall, 0),
            ),
            row("max lag (records)", num(self.max_lag as f64, 0)),
            row("lag at end of load", num(self.lag_at_end_of_load as f64, 0)),
            row(
                "drain after load",
                self.drain_secs
                    .map_or("did not catch up".into(), |s| format!("{s:.1} s")),
            ),
            row(
                "archiver batch_size",
                self.batch_size.map_or("?".into(), |b| b.to_string()),
            ),
            row(
                &format!("docs per {} ms sample p50/max", self.sample_ms),
                format!(
                    "{} / {}",
                    self.docs_per_sample_p50, self.docs_per_sample_max
                ),
            ),
            row("errors", self.errors.line()),
        ]
    }
}

struct Counts {
    stream: async_nats::jetstream::stream::Stream,
    messages: mongodb::Collection<Document>,
}

impl Counts {
    async fn read(&mut self) -> Result<(u64, u64)> {
        let stream = self
            .stream
            .info()
            .await
            .context("read CHAT stream info")?
            .state
            .messages;
        let archived = self
            .messages
            .estimated_document_count()
            .await
            .context("count archived messages")?;
        Ok((stream, archived))
    }
}

/// Runs `archive`.
pub async fn run(config: &ArchiveConfig) -> Result<ArchiveReport> {
    let backbone = setup::backbone(&config.nats_url).await?;
    let stream = backbone
        .js
        .get_stream(subjects::CHAT_STREAM)
        .await
        .context("get the CHAT stream")?;
    let uri = if config.mongo_uri.contains('?') {
        config.mongo_uri.clone()
    } else {
        format!(
            "{}/?serverSelectionTimeoutMS=5000",
            config.mongo_uri.trim_end_matches('/')
        )
    };
    let mongo = mongodb::Client::with_uri_str(&uri)
        .await
        .with_context(|| format!("connect to MongoDB at {}", config.mongo_uri))?;
    let mut counts = Counts {
        stream,
        messages: mongo.database(&config.database).collection("messages"),
    };
    counts.read().await?;
    let opened = setup::open_visitors(
        &config.visitor_edges,
        config.conversations,
        config.concurrency,
        0,
    )
    .await?;
    let mut errors = opened.errors.clone();
    let ready = opened.visitors.len();

    let shared = Arc::new(Shared::default());
    let begin = now_ns();
    let end = begin + (config.secs * 1e9) as u64;
    shared.window_start.store(begin, Ordering::Relaxed);
    shared.window_end.store(end, Ordering::Relaxed);
    let mode = Mode::Open { rate: config.rate };
    let size = chat::shard_size(ready);
    let mut all = opened.visitors.into_iter().peekable();
    let mut shards = Vec::new();
    while all.peek().is_some() {
        let shard: Vec<Visitor> = all.by_ref().take(size).collect();
        shards.push(tokio::spawn(chat::visitors(
            shard,
            shared.clone(),
            mode,
            ready,
            chat::DEFAULT_DRAIN,
        )));
    }

    let started = Instant::now();
    let mut samples = Vec::new();
    let mut load_done = false;
    let senders = tokio::spawn(async move {
        let mut tally = Tally::default();
        for task in shards {
            if let Ok(t) = task.await {
                tally.merge(&t);
            }
        }
        tally
    });
    let mut end_of_load: Option<(f64, u64)> = None;
    let mut drain_secs = None;
    loop {
        let t = started.elapsed().as_secs_f64();
        let (stream, archived) = counts.read().await?;
        samples.push(Sample {
            t,
            stream,
            archived,
        });
        let lag = stream.saturating_sub(archived);
        if !load_done && t >= config.secs {
            load_done = true;
            end_of_load = Some((t, lag));
        }
        if let Some((t_end, _)) = end_of_load {
            if lag == 0 && t > t_end {
                drain_secs = Some(t - t_end);
                break;
            }
            if t - t_end > config.drain.as_secs_f64() {
                break;
            }
        }
        tokio::time::sleep(config.sample).await;
    }
    let tally = senders.await.context("visitor tasks")?;
    errors.merge(&tally.errors);

    let rate_between = |pick: fn(&Sample) -> u64, from: f64, to: f64| -> f64 {
        let first = samples.iter().find(|s| s.t >= from);
        let last = samples.iter().rev().find(|s| s.t <= to);
        match (first, last) {
            (Some(a), Some(b)) if b.t > a.t => (pick(b) as f64 - pick(a) as f64) / (b.t - a.t),
            _ => 0.0,
        }
    };
    let last_t = samples.last().map_or(0.0, |s| s.t);
    let mut steps: Vec<u64> = samples
        .windows(2)
        .map(|w| w[1].archived.saturating_sub(w[0].archived))
        .filter(|d| *d > 0)
        .collect();
    steps.sort_unstable();
    Ok(ArchiveReport {
        scenario: "archive",
        conversations: ready,
        offered_rate: config.rate,
        secs: config.secs,
        acked_per_sec: shared.visitor_acked.load(Ordering::Relaxed) as f64 / config.secs,
        ack: tally.ack.summary(),
        stored_per_sec: rate_between(|s| s.stream, 0.0, config.secs),
        archived_per_sec: rate_between(|s| s.archived, 0.0, config.secs),
        archived_per_sec_overall: rate_between(|s| s.archived, 0.0, last_t),
        max_lag: samples
            .iter()
            .map(|s| s.stream.saturating_sub(s.archived))
            .max()
            .unwrap_or(0),
        lag_at_end_of_load: end_of_load.map_or(0, |(_, lag)| lag),
        drain_secs,
        batch_size: config.batch_size,
        docs_per_sample_p50: steps.get(steps.len() / 2).copied().unwrap_or(0),
        docs_per_sample_max: steps.last().copied().unwrap_or(0),
        sample_ms: u64::try_from(config.sample.as_millis()).unwrap_or(u64::MAX),
        errors,
        samples,
    })
}
