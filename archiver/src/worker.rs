//! The archiver's entry point: consume the chat stream through a durable
//! consumer, write each batch to MongoDB, ack only after MongoDB confirmed
//! it; answer `archive.history`, `archive.conversation`, `archive.search`
//! and `archive.stats` requests; and remove finished conversations from KV.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy};
use async_nats::jetstream::AckKind;
use futures::StreamExt;
use switchboard_bus::{Backbone, BusError};
use switchboard_config::{ArchiverSettings, MongoSettings};
use switchboard_protocol::payloads::{decode, ChatRecord, HistoryReply, HistoryRequest};
use switchboard_protocol::subjects;
use tokio_util::sync::CancellationToken;

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
    while !shutdown.is_cancelled() {
        if let Err(err) = consume(&config, &backbone, &archive, &shutdown).await {
            tracing::warn!(error = %err, "archiver consumer broke; restarting it");
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(RETRY_DELAY) => {}
            }
        }
    }
    history.abort();
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
    let messages = consumer
        .stream()
        .max_messages_per_batch(config.archiver.batch_size.saturating_mul(2))
        .messages()
        .await
        .map_err(|e| BusError::nats("consume chat stream", e))?;
    let mut batches = messages.ready_chunks(config.archiver.batch_size);
    loop {
        let batch = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            batch = batches.next() => batch,
        };
        let Some(batch) = batch else {
            return Err(BusError::nats("consume chat stream", "stream ended"));
        };
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
        let started = std::time::Instant::now();
        write_until_stored(archive, &messages, &records, shutdown).await;
        if shutdown.is_cancelled() {
            // Not stored: left unacked, redelivered to the next archiver.
            return Ok(());
        }
        for message in &messages {
            if let Err(err) = message.ack().await {
                // Redelivered later; the archive absorbs the repeat.
                tracing::warn!(error = %err, "ack archived record");
            }
        }
        if let Some(last) = messages.last() {
            // What the consumer still holds for the archivers after it.
            let pending = last.info().map_or(0, |info| info.pending);
            switchboard_metrics::archiver::archiver().stored(started, messages.len(), pending);
        }
    }
}

/// Retries a batch in place (keeping the stream's order) until MongoDB
/// takes it or the archiver shuts down.
#[tracing::instrument(name = "archiver.write_batch", skip_all, fields(records = records.len()))]
async fn write_until_stored(
    archive: &Archive,
    messages: &[async_nats::jetstream::Message],
    records: &[ChatRecord],
    shutdown: &CancellationToken,
) {
    loop {
        match archive.write(records).await {
            Ok(()) => return,
            Err(err) => {
                switchboard_metrics::archiver::archiver().write_failed();
                tracing::warn!(error = %err, "archive write failed; retrying");
                for message in messages {
                    let _ = message.ack_with(AckKind::Progress).await;
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
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
