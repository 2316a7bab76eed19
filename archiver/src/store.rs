//! MongoDB writes and reads of the archive.
//!
//! Writes are idempotent, so a record redelivered after a crash (written,
//! not yet acked) changes nothing: messages are inserted by `_id` with
//! duplicates ignored, and each conversation summary remembers the highest
//! `seq` it has applied (`archived_seq`), updated by compare-and-set.
//! The summary's analytics fold (`analytics`, see [`crate::facts`]) is
//! applied with the same compare-and-set, record by record, and folded
//! again from the archive whenever the counts are recounted.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{doc, Bson, DateTime, Document};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{Acknowledgment, ClientOptions, IndexOptions, WriteConcern};
use mongodb::{Client, Collection, IndexModel};
use switchboard_analytics::{fold, Facts};
use switchboard_protocol::ids::ConversationId;
use switchboard_protocol::payloads::ChatRecord;

use crate::documents::{count_fields, count_records, summary_update, ConvertError, MessageDoc};
use crate::facts;

/// MongoDB's duplicate key error.
const DUPLICATE_KEY: i32 = 11000;
/// Attempts of one summary compare-and-set.
const SUMMARY_ATTEMPTS: usize = 16;
/// Summary statements per `update` command (each well under 4 KB).
const STATEMENTS_PER_COMMAND: usize = 1_000;
/// Conversation summaries of one batch written at once.
const SUMMARY_CONCURRENCY: usize = 32;

/// An archive operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("mongodb {op}: {source}")]
    Mongo {
        op: &'static str,
        #[source]
        source: mongodb::error::Error,
    },
    #[error(transparent)]
    Convert(#[from] ConvertError),
    #[error("summary of {0} kept changing under us")]
    Contention(String),
    #[error("mongodb refused {0}")]
    Reply(String),
    /// `mongo.uri` could not be read; the message quotes no credential.
    #[error("invalid mongo.uri {uri}: {reason}")]
    InvalidUri { uri: String, reason: String },
}

pub(crate) fn mongo(op: &'static str) -> impl FnOnce(mongodb::error::Error) -> StoreError {
    move |source| StoreError::Mongo { op, source }
}

/// The archive's collections.
#[derive(Clone)]
pub struct Archive {
    messages: Collection<MessageDoc>,
    conversations: Collection<Document>,
    /// Notes of conversations whose summaries are behind their messages
    /// (see [`crate::behind`]).
    behind: Collection<Document>,
    /// Given to commands run by hand (the driver adds it to its own).
    write_concern: Option<Document>,
    /// The analytics folds written last (a hint, checked by every write).
    folds: Arc<facts::FoldCache>,
}

impl Archive {
    /// Connects and makes sure the indexes exist.
    ///
    /// # Errors
    /// When MongoDB is unreachable or refuses the indexes.
    pub async fn open(uri: &str, database: &str) -> Result<Self, StoreError> {
        let mut options = ClientOptions::parse(uri).await.map_err(|err| {
            let secrets = switchboard_config::redact::uri_secrets(uri);
            StoreError::InvalidUri {
                uri: switchboard_config::redact::redact_uri(uri),
                reason: switchboard_config::redact::scrub(&err.to_string(), &secrets),
            }
        })?;
        // Acked records are only acked to NATS once the archive has them on
        // disk on a majority, unless the URI says otherwise (`w=`, `journal=`).
        if options.write_concern.is_none() {
            options.write_concern = Some(
                WriteConcern::builder()
                    .w(Acknowledgment::Majority)
                    .journal(true)
                    .build(),
            );
        }
        options
            .app_name
            .get_or_insert_with(|| "switchboard-archiver".to_owned());
        let write_concern = options
            .write_concern
            .as_ref()
            .and_then(|concern| mongodb::bson::to_document(concern).ok());
        let client = Client::with_options(options).map_err(mongo("connect"))?;
        let db = client.database(database);
        let archive = Self {
            messages: db.collection("messages"),
            conversations: db.collection("conversations"),
            behind: db.collection(crate::behind::COLLECTION),
            write_concern,
            folds: Arc::default(),
        };
        archive
            .messages
            .create_index(messages_index())
            .await
            .map_err(mongo("create messages index"))?;
        archive
            .conversations
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "agent.id": 1, "created_at": 1 })
                    .build(),
            )
            .await
            .map_err(mongo("create conversations index"))?;
        // Closed conversations by when they closed (leaving KV).
        archive
            .conversations
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "status": 1, "closed_at": 1 })
                    .build(),
            )
            .await
            .map_err(mongo("create retention index"))?;
        // Notes left behind, oldest first.
        archive
            .behind
            .create_index(IndexModel::builder().keys(doc! { "at": 1 }).build())
            .await
            .map_err(mongo("create summaries behind index"))?;
        // The report's window, alone or with a team or an agent.
        for keys in [
            doc! { "analytics.started_at": 1 },
            doc! { "analytics.team": 1, "analytics.started_at": 1 },
            doc! { "analytics.agents.id": 1, "analytics.started_at": 1 },
        ] {
            archive
                .conversations
                .create_index(IndexModel::builder().keys(keys).build())
                .await
                .map_err(mongo("create analytics index"))?;
        }
        Ok(archive)
    }

    /// Closed conversations still in KV, closed before `cutoff` (ms),
    /// oldest close first, at most `limit`.
    ///
    /// # Errors
    /// MongoDB errors.
    pub(crate) async fn closed_before(
        &self,
        cutoff: i64,
        limit: i64,
    ) -> Result<Vec<crate::retention::Candidate>, StoreError> {
        let mut cursor = self
            .conversations
            .find(crate::retention::closed_before_filter(cutoff))
            .projection(doc! { "_id": 1, "archived_seq": 1, "visitor.id": 1 })
            .sort(doc! { "status": 1, "closed_at": 1 })
            .limit(limit)
            .await
            .map_err(mongo("find closed conversations"))?;
        let mut found = Vec::new();
        while let Some(summary) = cursor
            .try_next()
            .await
            .map_err(mongo("read closed conversations"))?
        {
            let Ok(id) = summary.get_str("_id") else {
                continue;
            };
            found.push(crate::retention::Candidate {
                id: id.to_owned(),
                archived_seq: summary.get_i64("archived_seq").unwrap_or(0),
                visitor_id: summary
                    .get_document("visitor")
                    .ok()
                    .and_then(|v| v.get_str("id").ok())
                    .map(str::to_owned),
            });
        }
        Ok(found)
    }

    /// Records that a conversation has left KV.
    ///
    /// # Errors
    /// MongoDB errors.
    pub(crate) async fn mark_removed(&self, conversation: &str) -> Result<(), StoreError> {
        self.conversations
            .update_one(
                doc! { "_id": conversation },
                doc! { "$set": { crate::retention::REMOVED_FIELD: DateTime::now() } },
            )
            .await
            .map_err(mongo("mark conversation removed from kv"))?;
        Ok(())
    }

    /// Records that a retention pass kept a conversation in KV.
    ///
    /// # Errors
    /// MongoDB errors.
    pub(crate) async fn mark_kept(&self, conversation: &str) -> Result<(), StoreError> {
        self.conversations
            .update_one(
                doc! { "_id": conversation },
                doc! { "$set": { crate::retention::KEPT_FIELD: DateTime::now() } },
            )
            .await
            .map_err(mongo("mark conversation kept in kv"))?;
        Ok(())
    }

    /// The visitor and last agent of an archived conversation, if the
    /// archive has it.
    ///
    /// # Errors
    /// MongoDB errors.
    pub async fn participants(
        &self,
        conversation: &str,
    ) -> Result<Option<(Option<String>, Option<String>)>, StoreError> {
        let summary = self
            .conversations
            .find_one(doc! { "_id": conversation })
            .projection(doc! { "visitor.id": 1, "agent.id": 1 })
            .await
            .map_err(mongo("read conversation participants"))?;
        let id_of = |summary: &Document, field: &str| {
            summary
                .get_document(field)
                .ok()
                .and_then(|d| d.get_str("id").ok())
                .map(str::to_owned)
        };
        Ok(summary.map(|s| (id_of(&s, "visitor"), id_of(&s, "agent"))))
    }

    /// The notes of summaries behind (see [`crate::behind`]).
    pub(crate) fn behind(&self) -> &Collection<Document> {
        &self.behind
    }

    /// The conversation summaries (for the reports' reads).
    pub(crate) fn summaries(&self) -> &Collection<Document> {
        &self.conversations
    }

    /// The messages as plain documents (for searches' projections).
    pub(crate) fn messages_raw(&self) -> Collection<Document> {
        self.messages.clone_with_type()
    }

    /// Inserts the messages of records (any order, repeats allowed);
    /// returns the positions of those archived before (redelivered after a
    /// crash), whose summaries must be counted again from the archive.
    ///
    /// # Errors
    /// MongoDB errors (a retry completes what was half done).
    pub async fn insert(&self, records: &[ChatRecord]) -> Result<Vec<usize>, StoreError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let docs = records
            .iter()
            .map(MessageDoc::from_record)
            .collect::<Result<Vec<_>, _>>()?;
        match self.messages.insert_many(&docs).ordered(false).await {
            Ok(_) => Ok(Vec::new()),
            Err(err) => match duplicates(&err) {
                Some(indexes) => {
                    tracing::debug!(records = indexes.len(), "some records were archived before");
                    Ok(indexes)
                }
                None => Err(mongo("insert messages")(err)),
            },
        }
    }

    /// Brings the summaries of conversations up to date with their records
    /// (inserted already), given by conversation with whether any of them
    /// was archived before.
    ///
    /// # Errors
    /// MongoDB errors; a retry completes what was half done.
    pub async fn summarize_records(&self, groups: &Groups<'_>) -> Result<(), StoreError> {
        if groups.is_empty() {
            return Ok(());
        }
        self.summarize_batch(groups.clone()).await
    }

    /// A conversation's archived records whose `seq` matches `seq`, in
    /// order (`projection` leaves fields out).
    async fn records_of(
        &self,
        conversation: &ConversationId,
        seq: Document,
        projection: Option<Document>,
        what: &'static str,
    ) -> Result<Vec<ChatRecord>, StoreError> {
        let mut find = self
            .messages
            .find(doc! { "conversation_id": conversation.as_str(), "seq": seq })
            .sort(doc! { "seq": 1 });
        if let Some(projection) = projection {
            find = find.projection(projection);
        }
        let docs: Vec<MessageDoc> = find
            .await
            .map_err(mongo(what))?
            .try_collect()
            .await
            .map_err(mongo(what))?;
        Ok(docs
            .into_iter()
            .map(MessageDoc::into_record)
            .collect::<Result<Vec<_>, _>>()?)
    }

    /// Brings a conversation's summary up to date with everything the
    /// archive holds for it, counted again from the archive: for a
    /// conversation whose summary was left behind by an archiver that
    /// stopped before writing it (see [`crate::behind`]).
    ///
    /// # Errors
    /// MongoDB errors or unreadable documents.
    pub async fn catch_up(&self, conversation: &ConversationId) -> Result<(), StoreError> {
        let applied = self
            .conversations
            .find_one(doc! { "_id": conversation.as_str() })
            .projection(doc! { "archived_seq": 1 })
            .await
            .map_err(mongo("read conversation summary"))?
            .and_then(|summary| summary.get_i64("archived_seq").ok())
            .unwrap_or(0);
        let records = self
            .records_of(
                conversation,
                doc! { "$gt": applied },
                None,
                "read records behind the summary",
            )
            .await?;
        let records: Vec<&ChatRecord> = records.iter().collect();
        self.folds.forget(conversation.as_str());
        self.summarize(conversation, &records, true).await
    }

    /// Brings the summaries of a batch's conversations up to date. The
    /// usual case — fresh records that follow exactly what a summary has
    /// applied (`archived_seq` = the first `seq` − 1, or no summary yet for
    /// a conversation's first records) — is one compare-and-set per
    /// conversation, all sent in one `update` command. The others (records
    /// seen before, a summary behind or missing) take
    /// [`Archive::summarize`], which reads the summary first; they run
    /// concurrently, conversations being independent.
    async fn summarize_batch(&self, groups: Groups<'_>) -> Result<(), StoreError> {
        let mut slow = Vec::new();
        let mut fast = Vec::new();
        let mut folded = Vec::new();
        let mut statements = Vec::new();
        // Summaries created whole (an insert costs a fraction of an upsert).
        let mut created = Vec::new();
        let mut creating = Vec::new();
        // The folds to continue: this archiver's own last writes, else read
        // — except for conversations whose first records these are, taken
        // to have no summary yet (if one exists, creating it fails and
        // they take the path that reads).
        let ids: Vec<&str> = groups.keys().map(|c| c.as_str()).collect();
        let mut current = self.folds.get_many(&ids);
        let unknown: Vec<&str> = groups
            .iter()
            .filter(|(id, (records, _))| {
                !current.contains_key(id.as_str()) && !records.iter().any(|r| r.seq == 1)
            })
            .map(|(id, _)| id.as_str())
            .collect();
        if !unknown.is_empty() {
            current.extend(self.read_summaries(&unknown).await?);
        }
        for (conversation, (mut records, redelivered)) in groups {
            records.sort_by_key(|r| r.seq);
            records.dedup_by_key(|r| r.seq);
            let summary = current.get(conversation.as_str());
            // Records the summary applied already are counted again from
            // the archive, never added twice.
            let seen_before = summary.is_some_and(|(applied, _)| {
                records
                    .first()
                    .is_some_and(|r| i64::try_from(r.seq).unwrap_or(i64::MAX) <= *applied)
            });
            let statement = if redelivered || seen_before {
                None
            } else {
                following_statement(conversation, &records, summary)?
            };
            match statement {
                Some(following) => match following.created {
                    Some(document) => {
                        created.push(document);
                        creating.push((
                            conversation,
                            records,
                            following.last,
                            (following.facts, following.rev),
                        ));
                    }
                    None => {
                        statements.push(following.statement);
                        fast.push((conversation, records, following.last));
                        folded.push((following.facts, following.rev));
                    }
                },
                None => {
                    self.folds.forget(conversation.as_str());
                    slow.push((conversation, records, redelivered || seen_before));
                }
            }
        }
        if !created.is_empty() {
            let existing = self.create_summaries(&created).await?;
            for (i, (conversation, records, last, (facts, rev))) in creating.into_iter().enumerate()
            {
                if existing.contains(&i) {
                    // Created meanwhile (another archiver, a catch-up):
                    // brought up to date and counted from the archive.
                    self.folds.forget(conversation.as_str());
                    slow.push((conversation, records, true));
                } else {
                    self.folds.remember(conversation.as_str(), last, facts, rev);
                }
            }
        }
        if !statements.is_empty() {
            let applied = self.update_statements(statements).await?;
            if applied == fast.len() {
                for ((conversation, _, last), (facts, rev)) in fast.iter().zip(folded) {
                    self.folds
                        .remember(conversation.as_str(), *last, facts, rev);
                }
            } else {
                for (conversation, _, _) in &fast {
                    self.folds.forget(conversation.as_str());
                }
                // Which ones missed? The reply only says how many. Fresh
                // records are held by nobody else, so a summary exactly at
                // their last `seq` has them (ours, or another archiver's
                // recount after a redelivery). Any other summary may or may
                // not have counted them (it moved past them after a gap,
                // say): those are brought up to date and counted again
                // from the archive.
                let ids: Vec<&str> = fast.iter().map(|(c, _, _)| c.as_str()).collect();
                let mut at: HashMap<String, i64> = HashMap::new();
                let mut cursor = self
                    .conversations
                    .find(doc! { "_id": { "$in": ids } })
                    .projection(doc! { "archived_seq": 1 })
                    .await
                    .map_err(mongo("read conversation summaries"))?;
                while let Some(summary) = cursor
                    .try_next()
                    .await
                    .map_err(mongo("read conversation summaries"))?
                {
                    if let (Ok(id), Ok(seq)) =
                        (summary.get_str("_id"), summary.get_i64("archived_seq"))
                    {
                        at.insert(id.to_owned(), seq);
                    }
                }
                for (conversation, records, last) in fast {
                    if at.get(conversation.as_str()) != Some(&last) {
                        slow.push((conversation, records, true));
                    }
                }
            }
        }
        // (Collected first: a lazy map here makes the future not `Send`.)
        let mut summaries = Vec::with_capacity(slow.len());
        for (conversation, records, redelivered) in &slow {
            summaries.push(self.summarize(conversation, records, *redelivered));
        }
        futures::stream::iter(summaries)
            .buffer_unordered(SUMMARY_CONCURRENCY)
            .try_collect::<()>()
            .await
    }

    /// The applied `seq` and the analytics fold of these conversations'
    /// summaries (absent ones are missing).
    async fn read_summaries(
        &self,
        ids: &[&str],
    ) -> Result<HashMap<String, (i64, facts::Stored)>, StoreError> {
        let mut summaries = HashMap::with_capacity(ids.len());
        let mut cursor = self
            .conversations
            .find(doc! { "_id": { "$in": ids } })
            .projection(doc! { "archived_seq": 1, facts::FIELD: 1, facts::REV: 1 })
            .await
            .map_err(mongo("read conversation summaries"))?;
        while let Some(summary) = cursor
            .try_next()
            .await
            .map_err(mongo("read conversation summaries"))?
        {
            if let Ok(id) = summary.get_str("_id") {
                let applied = summary.get_i64("archived_seq").unwrap_or(0);
                summaries.insert(id.to_owned(), (applied, facts::stored(&summary)));
            }
        }
        Ok(summaries)
    }

    /// Inserts whole summaries of conversations that had none; returns the
    /// positions of those that exist already.
    async fn create_summaries(&self, documents: &[Document]) -> Result<Vec<usize>, StoreError> {
        match self
            .conversations
            .insert_many(documents)
            .ordered(false)
            .await
        {
            Ok(_) => Ok(Vec::new()),
            Err(err) => duplicates(&err).ok_or_else(|| mongo("create conversation summaries")(err)),
        }
    }

    /// Runs update statements in unordered `update` commands of at most
    /// [`STATEMENTS_PER_COMMAND`] (a command is one BSON document, at most
    /// 16 MB); returns how many matched or upserted. A statement that lost
    /// a race (its upsert found the summary created meanwhile) simply does
    /// not count.
    async fn update_statements(&self, mut statements: Vec<Document>) -> Result<usize, StoreError> {
        let mut applied = 0;
        while !statements.is_empty() {
            let rest = statements.split_off(statements.len().min(STATEMENTS_PER_COMMAND));
            applied += self.update_command(statements).await?;
            statements = rest;
        }
        Ok(applied)
    }

    /// Runs update statements in one unordered `update` command.
    async fn update_command(&self, statements: Vec<Document>) -> Result<usize, StoreError> {
        let mut command = doc! {
            "update": self.conversations.name(),
            "updates": statements,
            "ordered": false,
        };
        if let Some(concern) = self.write_concern.clone() {
            command.insert("writeConcern", concern);
        }
        let reply = self
            .conversations
            .client()
            .database(self.conversations.namespace().db.as_str())
            .run_command(command)
            .await
            .map_err(mongo("update conversation summaries"))?;
        if let Ok(errors) = reply.get_array("writeErrors") {
            for error in errors {
                let code = error
                    .as_document()
                    .and_then(|e| e.get_i32("code").ok())
                    .unwrap_or_default();
                if code != DUPLICATE_KEY {
                    return Err(StoreError::Reply(format!(
                        "update conversation summaries: {error}"
                    )));
                }
            }
        }
        if let Ok(error) = reply.get_document("writeConcernError") {
            return Err(StoreError::Reply(format!(
                "update conversation summaries: {error}"
            )));
        }
        let n = match reply.get("n") {
            Some(Bson::Int32(n)) => i64::from(*n),
            Some(Bson::Int64(n)) => *n,
            _ => 0,
        };
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Applies the records the summary has not seen yet, once. With
    /// `recount` (some records were archived before, or may have been
    /// counted already), the counts are taken from the archive itself.
    async fn summarize(
        &self,
        conversation: &ConversationId,
        records: &[&ChatRecord],
        recount: bool,
    ) -> Result<(), StoreError> {
        let mut attempts = 0;
        let mut applied_before: i64;
        // The stored fold could not be continued: fold it from the archive.
        let mut refold = false;
        loop {
            attempts += 1;
            if attempts > SUMMARY_ATTEMPTS {
                return Err(StoreError::Contention(conversation.to_string()));
            }
            let current = self
                .conversations
                .find_one(doc! { "_id": conversation.as_str() })
                .projection(doc! { "archived_seq": 1, facts::FIELD: 1, facts::REV: 1 })
                .await
                .map_err(mongo("read conversation summary"))?;
            let applied = current
                .as_ref()
                .and_then(|d| d.get_i64("archived_seq").ok())
                .unwrap_or(0);
            applied_before = applied;
            let pending: Vec<&ChatRecord> = records
                .iter()
                .copied()
                .filter(|r| i64::try_from(r.seq).unwrap_or(i64::MAX) > applied)
                .collect();
            let Some(last) = pending.last() else {
                break;
            };
            let mut update = summary_update(&pending);
            let last_seq = i64::try_from(last.seq).unwrap_or(i64::MAX);
            set_archived_seq(&mut update, last_seq);
            // Counted in the same write that moves `archived_seq` past
            // them: each record is counted once, by whoever applies it.
            update.insert("$inc", count_records(&pending));
            let stored = current.as_ref().map(facts::stored).unwrap_or_default();
            let base = match (&current, stored.facts) {
                (None, _) => Some(Facts::default()),
                (Some(_), facts) => facts,
            };
            refold = base.is_none();
            if let Some(mut base) = base {
                for record in &pending {
                    base.apply(record);
                }
                facts::set(&mut update, &base, stored.rev)?;
            }
            let filter = doc! {
                "_id": conversation.as_str(),
                "archived_seq": applied,
                facts::REV: facts::rev_filter(stored.rev),
            };
            match self
                .conversations
                .update_one(filter, update)
                .upsert(true)
                .await
            {
                Ok(result) if result.matched_count == 1 || result.upserted_id.is_some() => break,
                // Someone else moved `archived_seq`: read again.
                Ok(_) => continue,
                Err(err) if is_duplicate(&err) => continue,
                Err(err) => return Err(mongo("update conversation summary")(err)),
            }
        }
        // Records older than what the summary applied (redelivered after a
        // crash) still count for the first times, which do not depend on
        // order; the counts come from the archive itself.
        let first_times = summary_update(records);
        if let Ok(min) = first_times.get_document("$min") {
            self.conversations
                .update_one(
                    doc! { "_id": conversation.as_str() },
                    doc! { "$min": min.clone() },
                )
                .await
                .map_err(mongo("update conversation first times"))?;
        }
        // Counts: added above for the fresh records that follow what the
        // summary applied; counted again from the archive when some were
        // archived before (a crash between the insert and the summary may
        // have left them uncounted) or when records before these are
        // missing from the summary (still held by an archiver that died, or
        // inserted by it and never counted).
        let first = records
            .first()
            .map_or(0, |r| i64::try_from(r.seq).unwrap_or(i64::MAX));
        if recount || first > applied_before + 1 {
            self.recount(conversation).await
        } else if refold {
            self.refold(conversation).await
        } else {
            Ok(())
        }
    }

    /// Sets the summary's counts from the archived records it applied
    /// (`seq` up to `archived_seq`: records past it are counted by
    /// whoever applies them, in the same write). A compare-and-set on
    /// `archived_seq`: if another archiver applied more meanwhile, count
    /// again, so that its counts are neither lost nor doubled.
    async fn recount(&self, conversation: &ConversationId) -> Result<(), StoreError> {
        for _ in 0..SUMMARY_ATTEMPTS {
            let Some(current) = self
                .conversations
                .find_one(doc! { "_id": conversation.as_str() })
                .projection(doc! { "archived_seq": 1 })
                .await
                .map_err(mongo("read conversation summary"))?
            else {
                return Ok(());
            };
            let applied = current.get_i64("archived_seq").unwrap_or(0);
            let pipeline = vec![
                doc! { "$match": {
                    "conversation_id": conversation.as_str(),
                    "seq": { "$lte": applied },
                } },
                doc! { "$group": {
                    "_id": { "kind": "$kind", "role": "$sender.role", "event": "$event" },
                    "n": { "$sum": 1 },
                } },
            ];
            let groups: Vec<Document> = self
                .messages
                .clone_with_type::<Document>()
                .aggregate(pipeline)
                .await
                .map_err(mongo("count archived records"))?
                .try_collect()
                .await
                .map_err(mongo("count archived records"))?;
            let result = self
                .conversations
                .update_one(
                    doc! { "_id": conversation.as_str(), "archived_seq": applied },
                    doc! { "$set": count_fields(&groups) },
                )
                .await
                .map_err(mongo("update conversation counts"))?;
            if result.matched_count == 1 {
                return self.refold(conversation).await;
            }
        }
        Err(StoreError::Contention(conversation.to_string()))
    }

    /// Folds the records the summary applied again from the archive (after
    /// a redelivery, a gap, or for a summary written before analytics
    /// existed): the analytics, and the summary's own fields (visitor,
    /// team, agents, status, times, rating, …). Records can reach the
    /// archive after later ones were applied — an archiver that died
    /// holding summaries, another archiver's batch, a redelivery — and the
    /// incremental write only applies what follows `archived_seq`; folding
    /// all of them in `seq` order gives each field the value the last
    /// record that sets it gave, as if they had come in order. The write
    /// is a compare-and-set on what was read, so a concurrent incremental
    /// fold is never overwritten: on a lost race, read and fold again.
    async fn refold(&self, conversation: &ConversationId) -> Result<(), StoreError> {
        for _ in 0..SUMMARY_ATTEMPTS {
            let Some(current) = self
                .conversations
                .find_one(doc! { "_id": conversation.as_str() })
                .projection(doc! { "archived_seq": 1, facts::REV: 1 })
                .await
                .map_err(mongo("read conversation summary"))?
            else {
                return Ok(());
            };
            let applied = current.get_i64("archived_seq").unwrap_or(0);
            let rev = current.get_i64(facts::REV).ok();
            let records = self
                .records_of(
                    conversation,
                    doc! { "$lte": applied },
                    Some(doc! { "text": 0, "client_id": 0 }),
                    "read archived records",
                )
                .await?;
            let all: Vec<&ChatRecord> = records.iter().collect();
            let mut update = summary_update(&all);
            facts::set(&mut update, &fold(&records), rev)?;
            let result = self
                .conversations
                .update_one(
                    doc! {
                        "_id": conversation.as_str(),
                        "archived_seq": applied,
                        facts::REV: facts::rev_filter(rev),
                    },
                    update,
                )
                .await
                .map_err(mongo("update conversation analytics"))?;
            if result.matched_count == 1 {
                return Ok(());
            }
        }
        Err(StoreError::Contention(conversation.to_string()))
    }

    /// Archived records with `seq < before_seq`, newest `limit`, ascending.
    ///
    /// # Errors
    /// MongoDB errors or unreadable documents.
    pub async fn history(
        &self,
        conversation: &ConversationId,
        before_seq: u64,
        limit: u32,
    ) -> Result<Vec<ChatRecord>, StoreError> {
        // MongoDB reads a limit of 0 as none at all.
        if limit == 0 {
            return Ok(Vec::new());
        }
        let before = i64::try_from(before_seq).unwrap_or(i64::MAX);
        let docs: Vec<MessageDoc> = self
            .messages
            .find(doc! { "conversation_id": conversation.as_str(), "seq": { "$lt": before } })
            .sort(doc! { "seq": -1 })
            .limit(i64::from(limit))
            .await
            .map_err(mongo("find history"))?
            .try_collect()
            .await
            .map_err(mongo("read history"))?;
        let mut records = docs
            .into_iter()
            .map(MessageDoc::into_record)
            .collect::<Result<Vec<_>, _>>()?;
        records.reverse();
        Ok(records)
    }
}

/// The `messages` collection's unique index: one document per `seq` of a
/// conversation.
pub fn messages_index() -> IndexModel {
    IndexModel::builder()
        .keys(doc! { "conversation_id": 1, "seq": 1 })
        .options(IndexOptions::builder().unique(true).build())
        .build()
}

/// Records by conversation, with whether any of them was archived before.
pub type Groups<'a> = BTreeMap<&'a ConversationId, (Vec<&'a ChatRecord>, bool)>;

/// A statement of [`following_statement`]: what it writes and leaves.
struct Following {
    statement: Document,
    /// The last `seq` it applies.
    last: i64,
    /// The fold and its revision once applied.
    facts: Facts,
    rev: i64,
    /// For a conversation without a summary, the summary the statement's
    /// upsert would create, to be inserted instead.
    created: Option<Document>,
}

/// The compare-and-set statement applying records that follow exactly
/// what their conversation's summary (as read: applied `seq` and fold) has
/// applied, with their last `seq`; `None` when they are not one contiguous
/// run right after it, or when the summary's fold must be recomputed.
///
/// # Errors
/// When the fold cannot be expressed in BSON (it always can).
fn following_statement(
    conversation: &ConversationId,
    records: &[&ChatRecord],
    summary: Option<&(i64, facts::Stored)>,
) -> Result<Option<Following>, StoreError> {
    let (Some(first), Some(last)) = (records.first(), records.last()) else {
        return Ok(None);
    };
    let (Ok(first_seq), Ok(last_seq)) = (i64::try_from(first.seq), i64::try_from(last.seq)) else {
        return Ok(None);
    };
    let contiguous = records.windows(2).all(|w| w[1].seq == w[0].seq + 1);
    if !contiguous || first_seq < 1 {
        return Ok(None);
    }
    let (before, rev) = match summary {
        // Only a conversation's first records may create its summary.
        None if first_seq == 1 => (None, None),
        Some((applied, stored)) if *applied == first_seq - 1 => match &stored.facts {
            Some(facts) => (Some(facts), stored.rev),
            None => return Ok(None),
        },
        _ => return Ok(None),
    };
    let mut base = before.cloned().unwrap_or_default();
    for record in records {
        base.apply(record);
    }
    let mut update = summary_update(records);
    set_archived_seq(&mut update, last_seq);
    match before {
        // Only what changed: the compare-and-set holds `before` in place.
        Some(before) => facts::set_changes(&mut update, before, &base, rev)?,
        None => facts::set(&mut update, &base, rev)?,
    }
    update.insert("$inc", count_records(records));
    let next_rev = rev.unwrap_or(0) + 1;
    let created = summary
        .is_none()
        .then(|| created_by(conversation.as_str(), &update))
        .flatten();
    let statement = doc! {
        "q": {
            "_id": conversation.as_str(),
            "archived_seq": first_seq - 1,
            facts::REV: facts::rev_filter(rev),
        },
        "u": update,
        "upsert": first_seq == 1,
    };
    Ok(Some(Following {
        statement,
        last: last_seq,
        facts: base,
        rev: next_rev,
        created,
    }))
}

/// The document an upsert of `update` creates where nothing matched: the
/// `_id` and the update's operators applied to nothing. `None` for an
/// operator or a path this does not apply (the upsert is sent instead).
fn created_by(id: &str, update: &Document) -> Option<Document> {
    let mut created = doc! { "_id": id };
    for (operator, fields) in update {
        for (field, value) in fields.as_document()? {
            if field.contains('.') || created.contains_key(field) {
                return None;
            }
            let value = match operator.as_str() {
                "$set" | "$min" | "$max" | "$inc" => value.clone(),
                "$addToSet" => {
                    let mut set: Vec<Bson> = Vec::new();
                    for item in value.as_document()?.get_array("$each").ok()? {
                        if !set.contains(item) {
                            set.push(item.clone());
                        }
                    }
                    Bson::Array(set)
                }
                _ => return None,
            };
            created.insert(field, value);
        }
    }
    Some(created)
}

/// Adds `archived_seq` to a summary update's `$set`.
fn set_archived_seq(update: &mut Document, seq: i64) {
    match update.get_document_mut("$set") {
        Ok(set) => {
            set.insert("archived_seq", seq);
        }
        Err(_) => {
            update.insert("$set", doc! { "archived_seq": seq });
        }
    }
}

fn is_duplicate(err: &mongodb::error::Error) -> bool {
    match err.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(e)) => e.code == DUPLICATE_KEY,
        ErrorKind::Command(e) => e.code == DUPLICATE_KEY,
        _ => false,
    }
}

/// The positions of the records an unordered insert found archived
/// already, when those were its only failures.
fn duplicates(err: &mongodb::error::Error) -> Option<Vec<usize>> {
    match err.kind.as_ref() {
        ErrorKind::InsertMany(e) if e.write_concern_error.is_none() => {
            let errors = e.write_errors.as_ref()?;
            errors
                .iter()
                .all(|w| w.code == DUPLICATE_KEY)
                .then(|| errors.iter().map(|w| w.index).collect())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_protocol::ids::{AgentId, MessageId, VisitorId};
    use switchboard_protocol::payloads::{ConversationEvent, Participant, RecordBody};

    fn record(seq: u64, sender: &Participant, body: RecordBody) -> ChatRecord {
        ChatRecord {
            id: MessageId::generate(),
            conversation_id: ConversationId::new("c_1").unwrap(),
            seq,
            sender: sender.clone(),
            sent_at: 1_700_000_000_000 + seq as i64,
            body,
        }
    }

    #[test]
    fn a_new_summary_is_inserted_as_its_upsert_would_create_it() {
        let visitor = Participant::visitor(&VisitorId::new("v_1").unwrap(), "Ann");
        let agent = Participant::agent(&AgentId::new("a_1").unwrap(), "Ada");
        let message = |text: &str| RecordBody::Message {
            text: text.to_owned(),
            client_id: text.to_owned(),
        };
        let assigned = RecordBody::Event {
            event: ConversationEvent::Assigned {
                agent: agent.clone(),
                reason: None,
                handed_off: None,
            },
        };
        let records = [
            record(
                1,
                &visitor,
                RecordBody::Event {
                    event: ConversationEvent::Opened {
                        visitor: visitor.clone(),
                        team: None,
                    },
                },
            ),
            record(2, &agent, assigned.clone()),
            record(3, &visitor, message("hello")),
            record(4, &agent, message("hi")),
            record(5, &agent, assigned),
        ];
        let refs: Vec<&ChatRecord> = records.iter().collect();
        let id = ConversationId::new("c_1").unwrap();
        let following = following_statement(&id, &refs, None).unwrap().unwrap();
        let created = following.created.expect("a new summary is inserted");
        assert_eq!(created.get_str("_id").unwrap(), "c_1");
        assert_eq!(created.get_i64("archived_seq").unwrap(), 5);
        assert_eq!(created.get_str("status").unwrap(), "assigned");
        assert_eq!(created.get_i64("message_count").unwrap(), 2);
        assert_eq!(created.get_i64("agent_message_count").unwrap(), 1);
        assert_eq!(
            created.get_datetime("first_response_at").unwrap(),
            &DateTime::from_millis(1_700_000_000_004)
        );
        // `$addToSet`: the agent assigned twice is there once.
        assert_eq!(created.get_array("agents").unwrap().len(), 1);
        assert_eq!(created.get_i64(facts::REV).unwrap(), 1);
        assert_eq!(facts::stored(&created).facts, Some(following.facts));
        // Every field the upsert sets is in the created document.
        for fields in following
            .statement
            .get_document("u")
            .unwrap()
            .values()
            .filter_map(Bson::as_document)
        {
            for field in fields.keys() {
                assert!(created.contains_key(field), "{field} missing");
            }
        }
    }

    #[test]
    fn an_update_it_cannot_apply_is_sent_as_an_upsert() {
        assert!(created_by("c_1", &doc! { "$set": { "a.b": 1 } }).is_none());
        assert!(created_by("c_1", &doc! { "$push": { "a": 1 } }).is_none());
        assert!(created_by("c_1", &doc! { "$set": { "a": 1 }, "$inc": { "a": 1 } }).is_none());
    }
}
