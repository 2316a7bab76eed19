//! The archiver's entry point: consume the chat stream through a durable
//! consumer, write each batch to MongoDB, ack only after MongoDB confirmed
//! its messages (and its conversations' summaries, or a note that they are
//! behind: see [`crate::behind`]); answer `archive.history`, `archive.conversation`, `archive.search`
//! and `archive.stats` requests; and remove finished conversations from KV.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, AckPolicy};
use async_nats::jetstream::AckKind;
use futures::StreamExt;
use switchboard_bus::{Backbone, BusError};
use switchboard_config::{ArchiverSettings, MongoSettings};
use switchboard_protocol::ids::ConversationId;
use switchboard_protocol::payloads::{decode, ChatRecord, HistoryReply, HistoryRequest};
use switchboard_protocol::subjects;
use tokio_util::sync::CancellationToken;

use crate::held::Held;
use crate::retention::Retention;
use crate::service;
use crate::store::{Archive, StoreError};

/// What an archiver needs to know.
#[derive(Debug, Clone)]
pub struct ArchiverConfig {
    pub archiver: ArchiverSettings,
    pub mongo: MongoSettings,
    /// When closed conversations leave KV (from `edge.reopen_window` and
    /// the archiver's settings: see [`ArchiverConfig::new`]).
    pub retention: Retention,
}

impl ArchiverConfig {
    /// The archiver's part of the settings.
    pub fn new(settings: &switchboard_config::Settings) -> Self {
        Self {
            archiver: settings.archiver.clone(),
            mongo: settings.mongo.clone(),
            retention: Retention {
                interval: settings.archiver.sweep_interval.get(),
                keep: settings.edge.reopen_window.get() + settings.archiver.keep_closed.get(),
            },
        }
    }
}

/// The archiver stopped for a reason other than shutdown.
#[derive(Debug, thiserror::Error)]
pub enum ArchiverError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Redelivery wait of an unacked record; progress acks keep a batch that is
/// being retried from being redelivered meanwhile.
const ACK_WAIT: Duration = Duration::from_secs(30);
const RETRY_DELAY: Duration = Duration::from_secs(1);
const MAX_ACK_PENDING: i64 = 20_000;
/// How long a stopping archiver tries to write the summaries it holds.
const SHUTDOWN_WRITE: Duration = Duration::from_secs(5);

/// Runs the archiver until `shutdown`, surviving NATS and MongoDB outages.
///
/// # Errors
/// None in practice; failures are logged and retried.
pub async fn run(
    config: ArchiverConfig,
    backbone: Backbone,
    shutdown: CancellationToken,
) -> Result<(), ArchiverError> {
    let archive = loop {
        match Archive::open(&config.mongo.uri, &config.mongo.database).await {
            Ok(archive) => break archive,
            Err(err) => {
                tracing::warn!(error = %err, "archive unavailable; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(RETRY_DELAY) => {}
                }
            }
        }
    };
    tracing::info!(database = %config.mongo.database, "archiver started");
    switchboard_metrics::archiver::init();
    switchboard_metrics::bus::init();
    let history = {
        let archive = archive.clone();
        tokio::spawn(service::serve(
            backbone.client.clone(),
            subjects::ARCHIVE_HISTORY,
            shutdown.clone(),
            move |payload| {
                let archive = archive.clone();
                async move { history(&archive, &payload).await }
            },
        ))
    };
    let lookup = {
        let archive = archive.clone();
        tokio::spawn(service::serve(
            backbone.client.clone(),
            subjects::ARCHIVE_CONVERSATION,
            shutdown.clone(),
            move |payload| {
                let archive = archive.clone();
                async move { crate::lookup::answer(&archive, &payload).await }
            },
        ))
    };
    let retention = tokio::spawn(crate::retention::run(
        backbone.clone(),
        archive.clone(),
        config.retention,
        shutdown.clone(),
    ));
    let search = {
        let archive = archive.clone();
        tokio::spawn(service::serve(
            backbone.client.clone(),
            subjects::ARCHIVE_SEARCH,
            shutdown.clone(),
            move |payload| {
                let archive = archive.clone();
                async move { crate::search::answer(&archive, &payload).await }
            },
        ))
    };
    let stats = tokio::spawn(crate::stats::serve(
        backbone.client.clone(),
        archive.clone(),
        backbone.clone(),
        shutdown.clone(),
    ));
    let behind = tokio::spawn(crate::behind::run(
        archive.clone(),
        config.archiver.summary_delay.get(),
        shutdown.clone(),
    ));
    let mut held = Held::default();
    while !shutdown.is_cancelled() {
        if let Err(err) = consume(&config, &backbone, &archive, &mut held, &shutdown).await {
            tracing::warn!(error = %err, "archiver consumer broke; restarting it");
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(RETRY_DELAY) => {}
            }
        }
    }
    if !held.is_empty() {
        // Written now if MongoDB takes them soon; otherwise their notes
        // stay and another archiver's sweep catches them up.
        match tokio::time::timeout(SHUTDOWN_WRITE, write_held(&archive, &held)).await {
            Ok(Ok(())) => tracing::info!(
                conversations = held.conversations(),
                "held summaries written"
            ),
            Ok(Err(err)) => tracing::warn!(error = %err, "held summaries left to the notes"),
            Err(_) => tracing::warn!("held summaries left to the notes (mongodb too slow)"),
        }
    }
    history.abort();
    behind.abort();
    lookup.abort();
    retention.abort();
    stats.abort();
    search.abort();
    tracing::info!("archiver stopped");
    Ok(())
}

async fn consume(
    config: &ArchiverConfig,
    backbone: &Backbone,
    archive: &Archive,
    held: &mut Held,
    shutdown: &CancellationToken,
) -> Result<(), BusError> {
    let stream = backbone
        .js
        .get_stream(subjects::CHAT_STREAM)
        .await
        .map_err(|e| BusError::nats("get chat stream", e))?;
    let consumer: async_nats::jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            subjects::ARCHIVER_CONSUMER,
            pull::Config {
                durable_name: Some(subjects::ARCHIVER_CONSUMER.to_owned()),
                description: Some("switchboard archiver".to_owned()),
                ack_policy: AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                max_ack_pending: MAX_ACK_PENDING,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| BusError::nats("create archiver consumer", e))?;
    // Pulled two batches at a time, so that a whole batch is waiting when
    // the previous one is written: the client's default pull (200 records)
    // left batches of ~130 records while backlogged, each touching ~105
    // conversations, that is a summary statement per record or so.
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(config.archiver.batch_size.saturating_mul(2))
        .messages()
        .await
        .map_err(|e| BusError::nats("consume chat stream", e))?
        .fuse();
    let delay = config.archiver.summary_delay.get();
    loop {
        // Held summaries are written when due even if no batch comes (the
        // rest of the backlog went to another archiver, say).
        let due = held.due_at(delay);
        let first = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = until(due) => {
                if until_stored(&[], shutdown, "summaries", || write_held(archive, held)).await.is_some() {
                    held.clear();
                    switchboard_metrics::archiver::archiver().held(0);
                }
                continue;
            }
            first = messages.next() => first,
        };
        let Some(first) = first else {
            return Err(BusError::nats("consume chat stream", "stream ended"));
        };
        let batch = gather(&mut messages, first, config.archiver.batch_size).await;
        let mut messages = Vec::with_capacity(batch.len());
        let mut records = Vec::with_capacity(batch.len());
        for item in batch {
            match item {
                Ok(message) => match decode::<ChatRecord>(&message.payload) {
                    Ok(record) => {
                        records.push(record);
                        messages.push(message);
                    }
                    Err(err) => {
                        // Nothing can ever archive it; keep it in the stream,
                        // stop redelivering it, and say so loudly.
                        tracing::error!(error = %err, subject = %message.subject, "undecodable record");
                        if let Err(err) = message.ack_with(AckKind::Term).await {
                            tracing::warn!(error = %err, "terminate undecodable record");
                        }
                    }
                },
                Err(err) => tracing::warn!(error = %err, "consumer error"),
            }
        }
        let started = Instant::now();
        let Some(repeated) =
            until_stored(&messages, shutdown, "insert", || archive.insert(&records)).await
        else {
            // Not stored: left unacked, redelivered to the next archiver.
            return Ok(());
        };
        // What the consumer still holds for the archivers after it.
        let pending = messages
            .last()
            .and_then(|last| last.info().ok())
            .map_or(0, |info| info.pending);
        let count = records.len();
        let conversations: BTreeSet<ConversationId> =
            records.iter().map(|r| r.conversation_id.clone()).collect();
        held.add(records, &repeated, Instant::now());
        // Caught up, or held long enough: the summaries now, before the
        // acks. Otherwise a note of the batch's conversations, then the
        // acks, and the summaries later with the next batches'.
        if pending == 0 || held.due(Instant::now(), delay) {
            if until_stored(&messages, shutdown, "summaries", || {
                write_held(archive, held)
            })
            .await
            .is_none()
            {
                return Ok(());
            }
            held.clear();
        } else if !conversations.is_empty() {
            let note = until_stored(&messages, shutdown, "note", || {
                archive.note_behind(&conversations)
            })
            .await;
            let Some(note) = note else {
                return Ok(());
            };
            held.noted(note);
        }
        for message in &messages {
            if let Err(err) = message.ack().await {
                // Redelivered later; the archive absorbs the repeat.
                tracing::warn!(error = %err, "ack archived record");
            }
        }
        let metrics = switchboard_metrics::archiver::archiver();
        metrics.stored(started, count, pending);
        metrics.held(held.conversations());
    }
}

/// How long a batch waits for the rest of a backlog to arrive.
const GATHER: Duration = Duration::from_millis(50);

/// A batch from its first record: what has arrived already and, while the
/// consumer says more records are waiting (the archiver is behind), up to
/// [`GATHER`] for them, until `size`. A backlog is then written `size`
/// records at a time rather than in the pieces that each socket read
/// delivers (~130 records: batches of that size with a note each archived
/// at 0.64× the server's `insert_many`, measured).
async fn gather<S, T, E>(messages: &mut S, first: Result<T, E>, size: usize) -> Vec<Result<T, E>>
where
    S: futures::stream::FusedStream<Item = Result<T, E>> + Unpin,
    T: Pending,
{
    let deadline = tokio::time::Instant::now() + GATHER;
    let mut batch = Vec::with_capacity(size);
    batch.push(first);
    while batch.len() < size && !messages.is_terminated() {
        let behind = batch
            .last()
            .and_then(|item| item.as_ref().ok())
            .is_some_and(|message| message.pending() > 0);
        let next = if behind {
            tokio::time::timeout_at(deadline, messages.next())
                .await
                .ok()
                .flatten()
        } else {
            futures::FutureExt::now_or_never(messages.next()).flatten()
        };
        match next {
            Some(item) => batch.push(item),
            None => break,
        }
    }
    batch
}

/// Records the consumer still holds after this one.
trait Pending {
    fn pending(&self) -> u64;
}

impl Pending for async_nats::jetstream::Message {
    fn pending(&self) -> u64 {
        self.info().map_or(0, |info| info.pending)
    }
}

/// Waits until `at`, or forever without one.
async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Writes the held summaries, then deletes their notes (a note left by a
/// failure here only makes a sweep count those conversations again).
async fn write_held(archive: &Archive, held: &Held) -> Result<(), StoreError> {
    archive.summarize_records(&held.groups()).await?;
    if let Err(err) = archive.clear_notes(held.notes()).await {
        tracing::warn!(error = %err, "notes of written summaries left for the sweep");
    }
    Ok(())
}

/// Retries a step of a batch in place (keeping the stream's order) until
/// MongoDB takes it, or `None` once the archiver shuts down; progress acks
/// keep the batch from being redelivered meanwhile.
#[tracing::instrument(name = "archiver.write_batch", skip_all, fields(step = step, records = messages.len()))]
async fn until_stored<T, F, Fut>(
    messages: &[async_nats::jetstream::Message],
    shutdown: &CancellationToken,
    step: &'static str,
    mut op: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    loop {
        match op().await {
            Ok(done) => return Some(done),
            Err(err) => {
                switchboard_metrics::archiver::archiver().write_failed();
                tracing::warn!(error = %err, step, "archive write failed; retrying");
                for message in messages {
                    let _ = message.ack_with(AckKind::Progress).await;
                }
                tokio::select! {
                    () = shutdown.cancelled() => return None,
                    () = tokio::time::sleep(RETRY_DELAY) => {}
                }
            }
        }
    }
}

/// The answer to one `archive.history` request.
async fn history(archive: &Archive, payload: &[u8]) -> HistoryReply {
    match decode::<HistoryRequest>(payload) {
        Ok(req) => match archive
            .history(&req.conversation_id, req.before_seq, req.limit.min(100))
            .await
        {
            Ok(records) => HistoryReply {
                records,
                error: None,
            },
            Err(err) => {
                tracing::warn!(error = %err, "archived history");
                HistoryReply {
                    records: Vec::new(),
                    error: Some("archive unavailable".to_owned()),
                }
            }
        },
        Err(err) => HistoryReply {
            records: Vec::new(),
            error: Some(format!("bad request: {err}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::channel::mpsc;

    /// A record with how many the consumer holds after it.
    #[derive(Debug)]
    struct Fake(u64);

    impl Pending for Fake {
        fn pending(&self) -> u64 {
            self.0
        }
    }

    type Item = Result<Fake, ()>;

    fn pendings(batch: &[Item]) -> Vec<u64> {
        batch
            .iter()
            .map(|item| item.as_ref().map_or(u64::MAX, |f| f.0))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_behind_waits_for_the_records_the_consumer_still_holds() {
        let (tx, mut rx) = mpsc::unbounded::<Item>();
        tx.unbounded_send(Ok(Fake(2))).unwrap();
        let later = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            tx.unbounded_send(Ok(Fake(1))).unwrap();
            tx.unbounded_send(Ok(Fake(0))).unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
            tx.unbounded_send(Ok(Fake(0))).unwrap();
        });
        let started = tokio::time::Instant::now();
        let batch = gather(&mut rx, Ok(Fake(3)), 500).await;
        assert_eq!(pendings(&batch), [3, 2, 1, 0]);
        // The last said nothing more was waiting: no wait for the deadline.
        assert_eq!(started.elapsed(), Duration::from_millis(10));
        later.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_behind_waits_no_longer_than_the_gather_time() {
        let (tx, mut rx) = mpsc::unbounded::<Item>();
        let started = tokio::time::Instant::now();
        let batch = gather(&mut rx, Ok(Fake(100)), 500).await;
        assert_eq!(pendings(&batch), [100]);
        assert_eq!(started.elapsed(), GATHER);
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_caught_up_takes_what_has_arrived_and_does_not_wait() {
        let (tx, mut rx) = mpsc::unbounded::<Item>();
        tx.unbounded_send(Ok(Fake(0))).unwrap();
        tx.unbounded_send(Err(())).unwrap();
        let started = tokio::time::Instant::now();
        let batch = gather(&mut rx, Ok(Fake(0)), 500).await;
        assert_eq!(pendings(&batch), [0, 0, u64::MAX]);
        assert_eq!(started.elapsed(), Duration::ZERO);
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_stops_at_its_size() {
        let (tx, mut rx) = mpsc::unbounded::<Item>();
        for pending in (0..10).rev() {
            tx.unbounded_send(Ok(Fake(pending))).unwrap();
        }
        let batch = gather(&mut rx, Ok(Fake(10)), 4).await;
        assert_eq!(pendings(&batch), [10, 9, 8, 7]);
        drop(tx);
    }
}
