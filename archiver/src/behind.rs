//! Summaries behind their messages. While the archiver is behind the
//! stream, it acks a batch once its messages are stored and writes the
//! conversations' summaries later, several batches together (a summary
//! statement costs as much as inserting many messages): see
//! [`crate::held`]. Before those acks, a note naming the batch's
//! conversations goes into the `summaries_behind` collection; the notes
//! are deleted once the summaries are written. An archiver that stops
//! without writing them leaves its notes, and any archiver's sweep catches
//! those conversations up from the archive itself
//! ([`Archive::catch_up`]: records past the summary's `archived_seq`
//! applied, counts and analytics counted again), then deletes the notes.
//!
//! A note counts as left behind once it is older than twice
//! `archiver.summary_delay` (a running archiver writes its summaries
//! within one). Catching up a conversation another archiver is about to
//! write is harmless: every summary write is a compare-and-set on what it
//! applied, and records it finds applied already are counted again.

use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::{doc, oid::ObjectId, Bson, DateTime, Document};
use switchboard_protocol::ids::ConversationId;
use tokio_util::sync::CancellationToken;

use crate::store::{mongo, Archive, StoreError};

/// The collection of notes.
pub const COLLECTION: &str = "summaries_behind";
/// Notes caught up per sweep.
const PER_SWEEP: i64 = 100;
/// The least time between sweeps.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

impl Archive {
    /// Notes that the summaries of `conversations` are behind their
    /// archived messages; returns the note's id.
    ///
    /// # Errors
    /// MongoDB errors.
    pub async fn note_behind(
        &self,
        conversations: impl IntoIterator<Item = &ConversationId>,
    ) -> Result<Bson, StoreError> {
        let id = Bson::ObjectId(ObjectId::new());
        let ids: Vec<&str> = conversations
            .into_iter()
            .map(ConversationId::as_str)
            .collect();
        self.behind()
            .insert_one(doc! { "_id": id.clone(), "at": DateTime::now(), "conversations": ids })
            .await
            .map_err(mongo("note summaries behind"))?;
        Ok(id)
    }

    /// Deletes notes whose summaries were written.
    ///
    /// # Errors
    /// MongoDB errors.
    pub async fn clear_notes(&self, notes: &[Bson]) -> Result<(), StoreError> {
        if notes.is_empty() {
            return Ok(());
        }
        self.behind()
            .delete_many(doc! { "_id": { "$in": notes } })
            .await
            .map_err(mongo("delete notes of summaries behind"))?;
        Ok(())
    }

    /// Notes written before `cutoff`, oldest first, at most `limit`.
    async fn notes_before(
        &self,
        cutoff: DateTime,
        limit: i64,
    ) -> Result<Vec<Document>, StoreError> {
        self.behind()
            .find(doc! { "at": { "$lt": cutoff } })
            .sort(doc! { "at": 1 })
            .limit(limit)
            .await
            .map_err(mongo("find notes of summaries behind"))?
            .try_collect()
            .await
            .map_err(mongo("read notes of summaries behind"))
    }
}

/// Catches up the conversations of notes left behind, every `delay`
/// (at least a second) until `shutdown`. Several archivers may run it at
/// once.
pub async fn run(archive: Archive, delay: Duration, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(delay.max(MIN_INTERVAL));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        match sweep(&archive, delay.saturating_mul(2)).await {
            Ok(0) => {}
            Ok(caught_up) => tracing::info!(caught_up, "summaries left behind caught up"),
            Err(err) => {
                tracing::warn!(error = %err, "catching up summaries failed; retrying later")
            }
        }
    }
}

/// One sweep over notes older than `stale`; returns how many conversations
/// were caught up.
///
/// # Errors
/// MongoDB errors; the notes not done stay for the next sweep.
pub async fn sweep(archive: &Archive, stale: Duration) -> Result<usize, StoreError> {
    let stale_ms = i64::try_from(stale.as_millis()).unwrap_or(i64::MAX);
    let cutoff = DateTime::from_millis(DateTime::now().timestamp_millis().saturating_sub(stale_ms));
    let mut caught_up = 0;
    for note in archive.notes_before(cutoff, PER_SWEEP).await? {
        let Some(id) = note.get("_id").cloned() else {
            continue;
        };
        for conversation in note
            .get_array("conversations")
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            match conversation
                .as_str()
                .map(|c| ConversationId::new(c.to_owned()))
            {
                Some(Ok(conversation)) => {
                    archive.catch_up(&conversation).await?;
                    caught_up += 1;
                }
                _ => tracing::warn!(?conversation, "note names an invalid conversation id"),
            }
        }
        archive.clear_notes(&[id]).await?;
    }
    Ok(caught_up)
}
