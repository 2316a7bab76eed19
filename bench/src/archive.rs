//! `archive`: the archiver's throughput and lag at an offered message rate.
//! Visitors send at a fixed total rate (open loop) for a while; meanwhile
//! the `CHAT` stream's record count and the count of records archived (acked
//! by the archiver's durable consumer after MongoDB stored them, read from
//! NATS so the sampling does not load the server measured) are sampled. The
//! lag is their difference (records stored but not yet archived); at the
//! end, MongoDB's own `messages` count is read once. After the load stops, sampling goes on until the archive has
//! caught up (or the drain time limit passes).
//!
//! Before the load, in the same run, the MongoDB-wire server's own
//! `insert_many` rate for the same documents ([`crate::insert_many`]) is
//! measured on the idle server, and the
//! archiver's rate is reported as a ratio of it. The archiver's figure is
//! its rate while it had a backlog of at least one batch (working flat
//! out); when it never had one, the offered rate was below its capacity
//! and the ratio is of its rate during the load, a lower bound.
//!
//! With `--start-archiver`, no archiver runs during the load: the bench
//! starts one when the load ends and measures it draining the whole
//! backlog, from its first acknowledgement until caught up (the held
//! summaries' write included), with the load's processes idle — the
//! conditions the baseline is measured in.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mongodb::bson::Document;
use serde::Serialize;
use switchboard_protocol::subjects;

use crate::chat::{self, Mode, Shared, Tally};
use crate::insert_many::{self, InsertManyConfig, InsertManyRate};
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
    /// Also measure the server's own `insert_many` rate (the baseline).
    pub insert_many: bool,
    /// An archiver to start when the load ends (none runs during it).
    pub start_archiver: Option<LateStart>,
}

/// How to start the archiver of `--start-archiver`: `binary archiver`
/// with this environment added to the bench's own.
#[derive(Debug, Clone)]
pub struct LateStart {
    pub binary: std::path::PathBuf,
    pub env: Vec<(String, String)>,
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
    /// MongoDB's own count of `messages` once sampling ended.
    pub archived_in_mongo: u64,
    pub batch_size: Option<u64>,
    /// Growth of `messages` between consecutive samples that saw growth.
    pub docs_per_sample_p50: u64,
    pub docs_per_sample_max: u64,
    pub sample_ms: u64,
    /// Documents per second while at least one batch was waiting (`null`
    /// if that lasted under a second).
    pub archived_per_sec_backlogged: Option<f64>,
    /// With `--start-archiver`: seconds from starting the archiver to its
    /// first acknowledgement (connecting, creating its consumer).
    pub archiver_startup_secs: Option<f64>,
    /// With `--start-archiver`: documents per second from the archiver's
    /// first acknowledgement until it had caught up with the whole backlog.
    pub archived_per_sec_drained: Option<f64>,
    /// The server's own `insert_many` rate for the same documents.
    pub insert_many: Option<InsertManyRate>,
    /// The archiver's rate compared: `backlogged` or `during load`.
    pub archiver_rate_basis: &'static str,
    /// The archiver's rate over the `insert_many` rate.
    pub archiver_vs_insert_many: Option<f64>,
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
                "in MongoDB's messages at the end",
                num(self.archived_in_mongo as f64, 0),
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
            row(
                "archived docs/s while backlogged",
                self.archived_per_sec_backlogged
                    .map_or("never backlogged".into(), |r| num(r, 0)),
            ),
            row(
                "archiver started after the load: start → first ack",
                self.archiver_startup_secs
                    .map_or("-".into(), |s| format!("{s:.1} s")),
            ),
            row(
                "archived docs/s draining the backlog",
                self.archived_per_sec_drained
                    .map_or("-".into(), |r| num(r, 0)),
            ),
            row(
                "insert_many docs/s (same documents)",
                self.insert_many.as_ref().map_or("-".into(), |m| {
                    format!(
                        "{} ({} docs in batches of {})",
                        num(m.docs_per_sec, 0),
                        num(m.docs as f64, 0),
                        m.batch_size
                    )
                }),
            ),
            row(
                &format!("archiver / insert_many ({})", self.archiver_rate_basis),
                self.archiver_vs_insert_many
                    .map_or("-".into(), |r| format!("{r:.2}")),
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
    /// Records in the stream, and records archived: those the archiver's
    /// durable consumer has acked, each only after MongoDB stored it (the
    /// consumer's delivered stream sequence less its outstanding acks, on
    /// a fresh stream numbered from 1). Read from NATS, so sampling puts no
    /// load on the MongoDB-wire server being measured: its `count` walks
    /// the whole collection, and ten of them a second took about 30 % of
    /// its CPU during the load (measured with `py-spy`). Until the
    /// archiver's consumer exists, MongoDB's own count.
    async fn read(&mut self) -> Result<(u64, u64)> {
        let stream = self
            .stream
            .info()
            .await
            .context("read CHAT stream info")?
            .state
            .messages;
        let archived = match self.stream.consumer_info(subjects::ARCHIVER_CONSUMER).await {
            Ok(info) => info
                .delivered
                .stream_sequence
                .saturating_sub(u64::try_from(info.num_ack_pending).unwrap_or(0)),
            Err(_) => self.mongo_count().await?,
        };
        Ok((stream, archived))
    }

    /// MongoDB's count of `messages` (a walk of the collection on the
    /// MongoDB-wire dev server).
    async fn mongo_count(&self) -> Result<u64> {
        self.messages
            .estimated_document_count()
            .await
            .context("count archived messages")
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
    let database = mongo.database(&config.database);
    let mut counts = Counts {
        stream,
        messages: database.collection("messages"),
    };
    counts.read().await?;
    // The baseline first, on an idle server (the archiver has nothing to
    // do yet): as many documents as the load offers, for at most as long
    // as it lasts.
    let batch = config.batch_size.unwrap_or(500);
    let insert_many = if config.insert_many {
        Some(
            insert_many::measure(
                &database,
                &InsertManyConfig {
                    conversations: config.conversations,
                    batch_size: usize::try_from(batch).unwrap_or(500),
                    docs: ((config.rate * config.secs) as u64).max(batch),
                    max_secs: config.secs,
                },
            )
            .await?,
        )
    } else {
        None
    };
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
    let mut late = LateArchiver::default();
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
            if let Some(start) = &config.start_archiver {
                late.start(start, t, archived)?;
            }
        }
        late.observe(t, archived);
        if let Some((t_end, _)) = end_of_load {
            if lag == 0 && t > t_end {
                drain_secs = Some(t - t_end);
                late.caught_up(t, archived);
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
    let archived_in_mongo = counts.mongo_count().await?;

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
    let backlogged = backlogged_rate(&samples, batch);
    let archived_per_sec = rate_between(|s| s.archived, 0.0, config.secs);
    let (archiver_rate_basis, archiver_rate) = match (late.drained, backlogged) {
        (Some(rate), _) => ("draining the backlog after the load", rate),
        (None, Some(rate)) => ("backlogged", rate),
        (None, None) => ("during load", archived_per_sec),
    };
    let archiver_vs_insert_many = insert_many
        .as_ref()
        .map(|m| ratio(archiver_rate, m.docs_per_sec));
    Ok(ArchiveReport {
        scenario: "archive",
        conversations: ready,
        offered_rate: config.rate,
        secs: config.secs,
        acked_per_sec: shared.visitor_acked.load(Ordering::Relaxed) as f64 / config.secs,
        ack: tally.ack.summary(),
        stored_per_sec: rate_between(|s| s.stream, 0.0, config.secs),
        archived_per_sec,
        archived_per_sec_overall: rate_between(|s| s.archived, 0.0, last_t),
        max_lag: samples
            .iter()
            .map(|s| s.stream.saturating_sub(s.archived))
            .max()
            .unwrap_or(0),
        lag_at_end_of_load: end_of_load.map_or(0, |(_, lag)| lag),
        drain_secs,
        archived_in_mongo,
        batch_size: config.batch_size,
        docs_per_sample_p50: steps.get(steps.len() / 2).copied().unwrap_or(0),
        docs_per_sample_max: steps.last().copied().unwrap_or(0),
        sample_ms: u64::try_from(config.sample.as_millis()).unwrap_or(u64::MAX),
        archived_per_sec_backlogged: backlogged,
        archiver_startup_secs: late
            .first_ack
            .zip(late.started)
            .map(|((t, _), (s, _))| t - s),
        archived_per_sec_drained: late.drained,
        insert_many,
        archiver_rate_basis,
        archiver_vs_insert_many,
        errors,
        samples,
    })
}

/// The archiver the bench starts when the load ends (`--start-archiver`),
/// and what was seen of it: started at (t, archived), first ack seen at,
/// its rate once caught up. Killed when dropped.
#[derive(Default)]
struct LateArchiver {
    /// Held only so that the process ends with the run.
    child: Option<tokio::process::Child>,
    started: Option<(f64, u64)>,
    /// The last sample before its first acknowledgement was seen.
    before_first: Option<(f64, u64)>,
    first_ack: Option<(f64, u64)>,
    drained: Option<f64>,
}

impl LateArchiver {
    fn start(&mut self, start: &LateStart, t: f64, archived: u64) -> Result<()> {
        let child = tokio::process::Command::new(&start.binary)
            .arg("archiver")
            .envs(start.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {} archiver", start.binary.display()))?;
        self.child = Some(child);
        self.started = Some((t, archived));
        self.before_first = Some((t, archived));
        Ok(())
    }

    fn observe(&mut self, t: f64, archived: u64) {
        let Some((_, at_start)) = self.started else {
            return;
        };
        if self.first_ack.is_none() {
            if archived > at_start {
                self.first_ack = Some((t, archived));
            } else {
                self.before_first = Some((t, archived));
            }
        }
    }

    /// Its rate from the sample before its first acknowledgement until
    /// caught up (a sampling interval's worth conservative).
    fn caught_up(&mut self, t: f64, archived: u64) {
        if let Some((t0, a0)) = self.before_first.filter(|_| self.first_ack.is_some()) {
            if t > t0 {
                self.drained = Some(archived.saturating_sub(a0) as f64 / (t - t0));
            }
        }
    }
}

/// `a / b`, or 0 when `b` is not positive.
pub fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

/// The archive's growth over the sampling intervals that began with at
/// least `batch` records waiting, per second (`None` under one second of
/// such intervals).
pub fn backlogged_rate(samples: &[Sample], batch: u64) -> Option<f64> {
    let (docs, secs) = samples
        .windows(2)
        .filter(|w| w[0].stream.saturating_sub(w[0].archived) >= batch.max(1))
        .fold((0u64, 0.0f64), |(docs, secs), w| {
            (
                docs + w[1].archived.saturating_sub(w[0].archived),
                secs + (w[1].t - w[0].t),
            )
        });
    (secs >= 1.0).then(|| docs as f64 / secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backlogged_rate_counts_only_intervals_with_a_batch_waiting() {
        let s = |t: f64, stream: u64, archived: u64| Sample {
            t,
            stream,
            archived,
        };
        let samples = [
            s(0.0, 100, 100),
            s(1.0, 2000, 400),
            s(2.0, 3000, 1400),
            s(3.0, 3000, 2400),
            s(4.0, 3000, 3000),
            s(5.0, 3000, 3000),
        ];
        // Intervals 1-2, 2-3 and 3-4 began with 500 or more waiting.
        let rate = backlogged_rate(&samples, 500).unwrap();
        assert!((rate - 2600.0 / 3.0).abs() < 1e-9, "{rate}");
        assert_eq!(backlogged_rate(&samples[..2], 500), None);
        assert_eq!(ratio(3.0, 4.0), 0.75);
        assert_eq!(ratio(3.0, 0.0), 0.0);
    }
}
