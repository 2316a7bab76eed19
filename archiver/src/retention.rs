//! Finished conversations leave KV. A conversation's routing entry, the
//! visitor's pointer to it, its read marks and any missed-list entry would
//! otherwise stay in their buckets forever. Once a conversation is closed,
//! archived to its last record and past the reopen window (it can no longer
//! be reopened), the archivers remove them; the archive answers for it
//! afterwards (history, and who may read it: see [`crate::lookup`]).
//!
//! Every removal is a compare-and-set on what was checked (still closed, at
//! the same time, nothing owed to the log), so a conversation reopened or
//! written meanwhile stays. The delete markers are then purged from the
//! buckets' streams, so nothing of the conversation is left in KV.

use std::time::Duration;

use mongodb::bson::{doc, DateTime, Document};
use switchboard_bus::kv::{self, Decision};
use switchboard_bus::{Backbone, BusError};
use switchboard_protocol::ids::ConversationId;
use switchboard_protocol::payloads::{ConversationState, ConversationStatus, MissedEntry};
use switchboard_protocol::subjects::{self, buckets};
use switchboard_protocol::time::now_ms;
use tokio_util::sync::CancellationToken;

use crate::store::{Archive, StoreError};

/// Conversations examined per pass, oldest close first.
const PER_PASS: i64 = 200;
/// The summary field that records the removal.
pub const REMOVED_FIELD: &str = "kv_removed_at";
/// The summary field that records when a pass last kept it.
pub const KEPT_FIELD: &str = "kv_kept_at";
/// How long a conversation a pass kept is left alone.
const KEPT_PAUSE_MS: i64 = 10 * 60 * 1000;

/// When closed conversations leave KV.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// How often to look.
    pub interval: Duration,
    /// How long after its close a conversation stays (the reopen window
    /// and a margin).
    pub keep: Duration,
}

/// What became of one conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Removed from KV now, or found gone.
    Removed,
    /// Still needed: reopened, not archived to its end yet, or owing
    /// events to its log (the routers' reconciler writes them). Looked at
    /// again after a pause.
    Kept,
}

/// Removes finished conversations from KV every `retention.interval` until
/// `shutdown`. Several archivers may run it at once: every step is a
/// compare-and-set or idempotent.
pub async fn run(
    backbone: Backbone,
    archive: Archive,
    retention: Retention,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(retention.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        match pass(&backbone, &archive, retention.keep).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "finished conversations left kv"),
            Err(err) => tracing::warn!(error = %err, "retention pass failed; retrying later"),
        }
    }
}

/// A pass failed; the next one starts over.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One pass: returns how many conversations left KV.
async fn pass(
    backbone: &Backbone,
    archive: &Archive,
    keep: Duration,
) -> Result<usize, RetentionError> {
    let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
    let cutoff = now_ms().saturating_sub(keep_ms);
    let candidates = archive.closed_before(cutoff, PER_PASS).await?;
    let mut removed = 0;
    for candidate in candidates {
        let Ok(conversation) = ConversationId::new(candidate.id.clone()) else {
            tracing::warn!(id = %candidate.id, "summary with an invalid conversation id");
            continue;
        };
        match remove(backbone, &conversation, &candidate, cutoff).await? {
            Outcome::Removed => {
                archive.mark_removed(&candidate.id).await?;
                removed += 1;
            }
            // Looked at again after a while, so that conversations kept for
            // long never fill every pass.
            Outcome::Kept => archive.mark_kept(&candidate.id).await?,
        }
    }
    Ok(removed)
}

/// A closed conversation as its summary tells it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: String,
    pub archived_seq: i64,
    pub visitor_id: Option<String>,
}

async fn remove(
    backbone: &Backbone,
    conversation: &ConversationId,
    candidate: &Candidate,
    cutoff: i64,
) -> Result<Outcome, BusError> {
    // Everything in the log is in the archive first: afterwards only the
    // archive answers for it.
    let last = backbone.log.last_seq(conversation).await?;
    if i64::try_from(last).unwrap_or(i64::MAX) > candidate.archived_seq {
        return Ok(Outcome::Kept);
    }
    let outcome = kv::cas(
        &backbone.conversations,
        conversation.as_str(),
        |current: Option<&ConversationState>| match current {
            None => Decision::Keep(Outcome::Removed),
            Some(state)
                if state.status == ConversationStatus::Closed
                    && state.closed_at.is_some_and(|at| at < cutoff)
                    && state.pending.is_empty() =>
            {
                Decision::Delete(Outcome::Removed)
            }
            Some(_) => Decision::Keep(Outcome::Kept),
        },
    )
    .await?;
    if outcome == Outcome::Kept {
        return Ok(outcome);
    }
    purge_key(
        backbone,
        &backbone.conversations,
        buckets::CONVERSATIONS,
        conversation.as_str(),
    )
    .await?;
    purge(
        backbone,
        buckets::READS,
        &subjects::kv_subjects_under(buckets::READS, conversation.as_str()),
    )
    .await?;
    // The visitor's pointer, unless it names a newer conversation by now.
    if let Some(visitor) = &candidate.visitor_id {
        let pointed = kv::cas(
            &backbone.visitors,
            visitor,
            |current: Option<&ConversationId>| match current {
                Some(id) if id == conversation => Decision::Delete(true),
                _ => Decision::Keep(false),
            },
        )
        .await?;
        if pointed {
            purge_key(backbone, &backbone.visitors, buckets::VISITORS, visitor).await?;
        }
    }
    // A missed-list entry of a conversation that was closed is stale.
    let missed = kv::cas(
        &backbone.missed,
        conversation.as_str(),
        |current: Option<&MissedEntry>| match current {
            Some(_) => Decision::Delete(true),
            None => Decision::Keep(false),
        },
    )
    .await?;
    if missed {
        purge_key(
            backbone,
            &backbone.missed,
            buckets::MISSED,
            conversation.as_str(),
        )
        .await?;
    }
    tracing::debug!(%conversation, "conversation left kv");
    Ok(Outcome::Removed)
}

/// Purges a key's delete marker from its bucket's stream, so the key takes
/// no room at all; only up to the key's latest message when that is the
/// marker, below it when someone wrote the key again since (a visitor's
/// new pointer, say), which stays.
async fn purge_key(
    backbone: &Backbone,
    store: &async_nats::jetstream::kv::Store,
    bucket: &str,
    key: &str,
) -> Result<(), BusError> {
    let latest = store
        .entry(key)
        .await
        .map_err(|e| BusError::nats("read kv entry", e))?;
    let Some(latest) = latest else {
        return Ok(());
    };
    let below = match latest.operation {
        async_nats::jetstream::kv::Operation::Put => latest.revision,
        _ => latest.revision + 1,
    };
    bucket_stream(backbone, bucket)
        .await?
        .purge()
        .filter(subjects::kv_subject(bucket, key))
        .sequence(below)
        .await
        .map_err(|e| BusError::nats("purge kv key", e))?;
    Ok(())
}

/// Purges every message of a bucket's stream under `subject` (a
/// conversation's read marks, which nobody writes once it is finished).
async fn purge(backbone: &Backbone, bucket: &str, subject: &str) -> Result<(), BusError> {
    bucket_stream(backbone, bucket)
        .await?
        .purge()
        .filter(subject)
        .await
        .map_err(|e| BusError::nats("purge bucket keys", e))?;
    Ok(())
}

async fn bucket_stream(
    backbone: &Backbone,
    bucket: &str,
) -> Result<async_nats::jetstream::stream::Stream, BusError> {
    backbone
        .js
        .get_stream(format!("KV_{bucket}"))
        .await
        .map_err(|e| BusError::nats("find bucket stream", e))
}

/// The filter of summaries of conversations closed before `cutoff` that
/// are still in KV.
/// Those a pass kept (reopened since, not archived to the end yet) are left
/// alone for a while.
pub(crate) fn closed_before_filter(cutoff: i64) -> Document {
    let kept_before = DateTime::from_millis(now_ms().saturating_sub(KEPT_PAUSE_MS));
    doc! {
        "status": "closed",
        "closed_at": { "$lt": DateTime::from_millis(cutoff) },
        REMOVED_FIELD: { "$exists": false },
        "$or": [
            { KEPT_FIELD: { "$exists": false } },
            { KEPT_FIELD: { "$lt": kept_before } },
        ],
    }
}
