//! The MongoDB-wire server's own `insert_many` rate for the archiver's
//! documents: the baseline `archive` reports the archiver against.
//!
//! The same documents as the archiver writes into `messages`
//! (`switchboard_archiver::documents::MessageDoc` of chat messages), the
//! same unique index on (`conversation_id`, `seq`), the same write concern
//! (the URI's, else majority and journaled), the same unordered
//! `insert_many` of one archiver batch at a time, into a scratch
//! collection that is dropped afterwards. Only the inserts are timed: the
//! documents are built before.

use std::time::Instant;

use anyhow::{Context, Result};
use mongodb::bson::doc;
use mongodb::options::{Acknowledgment, CollectionOptions, WriteConcern};
use mongodb::Database;
use serde::Serialize;
use switchboard_archiver::documents::MessageDoc;
use switchboard_protocol::ids::{ConversationId, MessageId, VisitorId};
use switchboard_protocol::payloads::{ChatRecord, Participant, RecordBody};
use switchboard_protocol::time::now_ms;

use crate::{now_ns, secs};

#[derive(Debug, Clone)]
pub struct InsertManyConfig {
    /// Conversations the documents are spread over.
    pub conversations: usize,
    /// Documents per `insert_many` (the archiver's `batch_size`).
    pub batch_size: usize,
    /// Documents to insert at most.
    pub docs: u64,
    /// Seconds to insert for at most.
    pub max_secs: f64,
}

/// What the server took.
#[derive(Debug, Clone, Serialize)]
pub struct InsertManyRate {
    pub collection: String,
    pub batch_size: usize,
    pub docs: u64,
    pub secs: f64,
    pub docs_per_sec: f64,
}

/// `count` documents of chat messages, `seq` 1, 2, … in each conversation.
pub fn documents(conversations: usize, count: u64) -> Result<Vec<MessageDoc>> {
    let conversations: Vec<(ConversationId, Participant)> = (0..conversations.max(1))
        .map(|_| {
            (
                ConversationId::generate(),
                Participant::visitor(&VisitorId::generate(), "Bench visitor"),
            )
        })
        .collect();
    let mut seqs = vec![0u64; conversations.len()];
    (0..count)
        .map(|i| {
            let c = (i % conversations.len() as u64) as usize;
            seqs[c] += 1;
            let t = now_ns();
            let record = ChatRecord {
                id: MessageId::generate(),
                conversation_id: conversations[c].0.clone(),
                seq: seqs[c],
                sender: conversations[c].1.clone(),
                sent_at: now_ms(),
                body: RecordBody::Message {
                    text: format!("t{t}"),
                    client_id: format!("o{t}"),
                },
            };
            MessageDoc::from_record(&record).context("archive document")
        })
        .collect()
}

/// Inserts the documents into a fresh scratch collection of `db`, one
/// batch at a time, and drops it.
///
/// # Errors
/// MongoDB errors.
pub async fn measure(db: &Database, config: &InsertManyConfig) -> Result<InsertManyRate> {
    let name = format!("bench_insert_many_{}", crate::setup::run_id());
    let concern = db.write_concern().cloned().unwrap_or_else(|| {
        WriteConcern::builder()
            .w(Acknowledgment::Majority)
            .journal(true)
            .build()
    });
    let collection = db.collection_with_options::<MessageDoc>(
        &name,
        CollectionOptions::builder().write_concern(concern).build(),
    );
    collection
        .create_index(switchboard_archiver::store::messages_index())
        .await
        .context("create the scratch collection's index")?;
    let docs = documents(config.conversations, config.docs.max(1))?;
    let batch = config.batch_size.max(1);
    let limit = secs(config.max_secs);
    let started = Instant::now();
    let mut inserted = 0u64;
    let mut result = Ok(());
    for chunk in docs.chunks(batch) {
        if let Err(err) = collection.insert_many(chunk).ordered(false).await {
            result = Err(err).context("insert_many into the scratch collection");
            break;
        }
        inserted += chunk.len() as u64;
        if started.elapsed() >= limit {
            break;
        }
    }
    let took = started.elapsed().as_secs_f64();
    // The scratch collection goes, whatever happened.
    let dropped = collection.drop().await;
    result?;
    dropped.context("drop the scratch collection")?;
    Ok(InsertManyRate {
        collection: name,
        batch_size: batch,
        docs: inserted,
        secs: took,
        docs_per_sec: if took > 0.0 {
            inserted as f64 / took
        } else {
            0.0
        },
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_each_conversation_from_one() {
        let docs = super::documents(3, 7).unwrap();
        assert_eq!(docs.len(), 7);
        let first = &docs[0].conversation_id;
        let seqs: Vec<i64> = docs
            .iter()
            .filter(|d| &d.conversation_id == first)
            .map(|d| d.seq)
            .collect();
        assert_eq!(seqs, [1, 2, 3]);
        assert!(docs.iter().all(|d| d.kind == "message"));
    }
}
