//! A conversation's log on the chat stream: one subject per conversation,
//! records (messages and lifecycle events) numbered 1, 2, 3, … by `seq`.
//!
//! Appending is optimistic concurrency on the stream itself: a record is
//! published with `Nats-Expected-Last-Subject-Sequence` set to the stream
//! sequence of the conversation's last record, so two writers can never give
//! out the same `seq`; the loser re-reads the tail and tries again. A
//! `Nats-Msg-Id` makes a retried send a no-op inside the stream's dedupe
//! window, answered with the original record.
//!
//! Reading uses direct gets: `seq` grows with the stream sequence, so the
//! record with a given `seq` is found by binary search over stream sequences.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_nats::jetstream::context::{Publish, PublishErrorKind};
use async_nats::jetstream::stream::{DirectGetErrorKind, Stream};
use async_nats::jetstream::Context;
use switchboard_protocol::ids::{ConversationId, MessageId};
use switchboard_protocol::payloads::{
    decode, encode, ArchivedConversationReply, ArchivedConversationRequest, ChatRecord,
    ConversationEvent, HistoryReply, HistoryRequest, Participant, RecordBody,
};
use switchboard_protocol::subjects;
use switchboard_protocol::time::now_ms;

use crate::retry::Backoff;
use crate::BusError;

/// Attempts before an append gives up on a conversation under contention.
const MAX_APPEND_ATTEMPTS: usize = 32;
/// Cached tails before the cache is emptied (it is only a hint).
const MAX_CACHED_TAILS: usize = 100_000;
/// How much earlier than the time it was owed a keyed record may carry
/// (the clocks of the processes that owe and write it may differ).
const KEYED_CLOCK_SLACK_MS: i64 = 30_000;
/// Records [`ConversationLog::find_keyed`] looks at, at most.
const MAX_KEYED_SCAN: usize = 2_000;

/// Where a conversation's log ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Tail {
    stream_seq: u64,
    seq: u64,
}

/// The outcome of [`ConversationLog::append`].
#[derive(Debug, Clone)]
pub struct Appended {
    pub record: ChatRecord,
    pub stream_seq: u64,
    /// The record had been appended before (a retry); `record` is the original.
    pub duplicate: bool,
}

/// A page read backwards from the log.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// Ascending `seq`.
    pub records: Vec<ChatRecord>,
    /// Older records exist (in the stream or only in the archive).
    pub has_more: bool,
    /// The stream no longer holds records below this `seq` that the page
    /// needed: they are in the archive.
    pub archived_below: Option<u64>,
}

/// Handle to the conversation logs; cheap to clone (one pointer: every
/// edge connection's writer holds one).
#[derive(Clone)]
pub struct ConversationLog {
    inner: Arc<LogInner>,
}

struct LogInner {
    client: async_nats::Client,
    js: Context,
    stream: Stream,
    tails: Mutex<HashMap<ConversationId, Tail>>,
}

impl ConversationLog {
    pub(crate) fn new(client: async_nats::Client, js: Context, stream: Stream) -> Self {
        Self {
            inner: Arc::new(LogInner {
                client,
                js,
                stream,
                tails: Mutex::default(),
            }),
        }
    }

    /// Appends a record with the next `seq`. With `dedupe_key`, a second
    /// append with the same key inside the dedupe window returns the first
    /// record instead of writing another.
    ///
    /// # Errors
    /// NATS unreachable or timing out ([`BusError::Nats`]); never reports
    /// success for a record that was not stored.
    pub async fn append(
        &self,
        conversation: &ConversationId,
        sender: Participant,
        body: RecordBody,
        dedupe_key: Option<&str>,
    ) -> Result<Appended, BusError> {
        let subject = subjects::conversation(conversation);
        // Only a conversation's first record may start from nothing; any
        // other record whose conversation the stream no longer holds
        // continues from the archive's last `seq`, never reusing one.
        let opening = matches!(
            body,
            RecordBody::Event {
                event: ConversationEvent::Opened { .. }
            }
        );
        let mut tail = match self.cached_tail(conversation) {
            Some(tail) => tail,
            None => self.fetch_tail(conversation, opening).await?,
        };
        // Every append carries a key, so that one retried after a lost
        // answer (it may have been stored) is recognised, not stored twice.
        let generated;
        let dedupe_key = match dedupe_key {
            Some(key) => key,
            None => {
                generated = format!("{conversation}.{}", MessageId::generate());
                &generated
            }
        };
        let mut backoff = Backoff::new();
        for _ in 0..MAX_APPEND_ATTEMPTS {
            let record = ChatRecord {
                id: MessageId::generate(),
                conversation_id: conversation.clone(),
                seq: tail.seq + 1,
                sender: sender.clone(),
                sent_at: now_ms(),
                body: body.clone(),
            };
            let payload = encode(&record).map_err(|e| BusError::decode("chat record", e))?;
            let mut publish = Publish::build()
                .payload(payload.into())
                .expected_last_subject_sequence(tail.stream_seq)
                .header(
                    subjects::PREVIOUS_HEADER,
                    tail.stream_seq.to_string().as_str(),
                );
            publish = publish.message_id(dedupe_key);
            let started = std::time::Instant::now();
            let ack = match self.inner.js.send_publish(subject.clone(), publish).await {
                Ok(future) => future.await,
                Err(e) => Err(e),
            };
            crate::metrics::published(started, &ack);
            match ack {
                Ok(ack) if ack.duplicate => {
                    let original = self.record_at(ack.sequence).await?;
                    return Ok(Appended {
                        record: original,
                        stream_seq: ack.sequence,
                        duplicate: true,
                    });
                }
                Ok(ack) => {
                    self.observe(&record, ack.sequence);
                    return Ok(Appended {
                        record,
                        stream_seq: ack.sequence,
                        duplicate: false,
                    });
                }
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                    tail = self.fetch_tail(conversation, opening).await?;
                }
                // The stream has no leader for a moment.
                Err(e) if retryable(e.kind()) => {
                    tracing::debug!(error = %e, %conversation, "append refused for now; retrying");
                    if !backoff.wait().await {
                        return Err(BusError::nats("append to conversation log", e));
                    }
                    tail = match self.fetch_tail(conversation, opening).await {
                        Ok(tail) => tail,
                        Err(_) => tail,
                    };
                }
                Err(e) => return Err(BusError::nats("append to conversation log", e)),
            }
        }
        Err(BusError::Contention("append to conversation log"))
    }

    /// Records that a record was seen at `stream_seq` (from the live feed,
    /// say), so the next append needs no lookup.
    pub fn observe(&self, record: &ChatRecord, stream_seq: u64) {
        let Ok(mut tails) = self.inner.tails.lock() else {
            return;
        };
        if tails.len() >= MAX_CACHED_TAILS {
            tails.clear();
        }
        let tail = tails.entry(record.conversation_id.clone()).or_default();
        if stream_seq > tail.stream_seq {
            *tail = Tail {
                stream_seq,
                seq: record.seq,
            };
        }
    }

    /// Forgets what is known of a conversation's tail (it was closed, say).
    pub fn forget(&self, conversation: &ConversationId) {
        if let Ok(mut tails) = self.inner.tails.lock() {
            tails.remove(conversation);
        }
    }

    fn cached_tail(&self, conversation: &ConversationId) -> Option<Tail> {
        self.inner.tails.lock().ok()?.get(conversation).copied()
    }

    async fn fetch_tail(
        &self,
        conversation: &ConversationId,
        opening: bool,
    ) -> Result<Tail, BusError> {
        let tail = match self.last(conversation).await? {
            Some((stream_seq, record)) => Tail {
                stream_seq,
                seq: record.seq,
            },
            None if opening => Tail::default(),
            None => Tail {
                stream_seq: 0,
                seq: self.archived_last_seq(conversation).await?,
            },
        };
        if let Ok(mut tails) = self.inner.tails.lock() {
            tails.insert(conversation.clone(), tail);
        }
        Ok(tail)
    }

    /// Records of a conversation the archive holds with `seq < before_seq`,
    /// the newest `limit`, ascending (asked of the archiver over NATS).
    ///
    /// # Errors
    /// When no archiver answers, or it reports a failure.
    pub async fn archived(
        &self,
        conversation: &ConversationId,
        before_seq: u64,
        limit: u32,
    ) -> Result<Vec<ChatRecord>, BusError> {
        let request = HistoryRequest {
            conversation_id: conversation.clone(),
            before_seq,
            limit,
        };
        let payload = encode(&request).map_err(|e| BusError::decode("history request", e))?;
        let reply = self
            .inner
            .client
            .request(subjects::ARCHIVE_HISTORY, payload.into())
            .await
            .map_err(|e| BusError::nats("ask the archive", e))?;
        let reply: HistoryReply =
            decode(&reply.payload).map_err(|e| BusError::decode("history reply", e))?;
        match reply.error {
            Some(error) => Err(BusError::nats("ask the archive", error)),
            None => Ok(reply.records),
        }
    }

    /// The visitor and last agent of a conversation that has left KV, as
    /// the archive knows them; `None` when the archive has no such
    /// conversation.
    ///
    /// # Errors
    /// When no archiver answers, or the archive cannot.
    pub async fn archived_participants(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<(Option<String>, Option<String>)>, BusError> {
        let request = ArchivedConversationRequest {
            conversation_id: conversation.clone(),
        };
        let payload =
            encode(&request).map_err(|e| BusError::decode("archived conversation request", e))?;
        let reply = self
            .inner
            .client
            .request(subjects::ARCHIVE_CONVERSATION, payload.into())
            .await
            .map_err(|e| BusError::nats("ask the archive", e))?;
        let reply: ArchivedConversationReply = decode(&reply.payload)
            .map_err(|e| BusError::decode("archived conversation reply", e))?;
        match reply.error {
            Some(error) => Err(BusError::nats("ask the archive", error)),
            None if reply.found => Ok(Some((reply.visitor_id, reply.agent_id))),
            None => Ok(None),
        }
    }

    /// The last `seq` the archive holds for a conversation the stream no
    /// longer holds (retention expired it). Fails when the archive cannot
    /// answer: appending then could reuse a `seq`.
    async fn archived_last_seq(&self, conversation: &ConversationId) -> Result<u64, BusError> {
        let records = self.archived(conversation, u64::MAX, 1).await?;
        Ok(records.last().map_or(0, |r| r.seq))
    }

    /// The last record of a conversation and its stream sequence.
    ///
    /// # Errors
    /// NATS errors or an undecodable record.
    pub async fn last(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<(u64, ChatRecord)>, BusError> {
        match self
            .inner
            .stream
            .direct_get_last_for_subject(subjects::conversation(conversation))
            .await
        {
            Ok(message) => Ok(Some((message.sequence, decode_record(&message.payload)?))),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(BusError::nats("read conversation tail", e)),
        }
    }

    /// The last `seq` of a conversation, 0 when it has no record.
    ///
    /// # Errors
    /// As [`ConversationLog::last`].
    pub async fn last_seq(&self, conversation: &ConversationId) -> Result<u64, BusError> {
        match self.last(conversation).await? {
            Some((_, record)) => Ok(record.seq),
            // Expired from the stream: the archive knows (0 if it cannot say).
            None => Ok(self.archived_last_seq(conversation).await.unwrap_or(0)),
        }
    }

    /// How long the stream itself recognises a repeated `Nats-Msg-Id`.
    pub fn duplicate_window(&self) -> std::time::Duration {
        self.inner.stream.cached_info().config.duplicate_window
    }

    /// The record appended under `key` (its `Nats-Msg-Id`), looked for
    /// among the conversation's records stored since `since_ms` (a few
    /// seconds earlier, for the clocks of other processes): for a write
    /// retried after the stream's duplicate window, which JetStream would
    /// store a second time. Reads one record per step back from the tail.
    ///
    /// # Errors
    /// NATS errors or undecodable records.
    pub async fn find_keyed(
        &self,
        conversation: &ConversationId,
        key: &str,
        since_ms: i64,
    ) -> Result<Option<ChatRecord>, BusError> {
        let Some((mut at, _)) = self.last(conversation).await? else {
            return Ok(None);
        };
        let oldest = since_ms.saturating_sub(KEYED_CLOCK_SLACK_MS);
        for _ in 0..MAX_KEYED_SCAN {
            let message = match self.inner.stream.direct_get(at).await {
                Ok(message) => message,
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(BusError::nats("read record", e)),
            };
            let record = decode_record(&message.payload)?;
            let id = message.headers.get(async_nats::header::NATS_MESSAGE_ID);
            if id.map(|v| v.as_str()) == Some(key) {
                return Ok(Some(record));
            }
            if record.sent_at < oldest {
                return Ok(None);
            }
            let previous = message
                .headers
                .get(subjects::PREVIOUS_HEADER)
                .and_then(|v| v.as_str().parse::<u64>().ok());
            match previous {
                Some(previous) if previous > 0 && previous < at => at = previous,
                _ => return Ok(None),
            }
        }
        Ok(None)
    }

    async fn record_at(&self, stream_seq: u64) -> Result<ChatRecord, BusError> {
        let message = self
            .inner
            .stream
            .direct_get(stream_seq)
            .await
            .map_err(|e| BusError::nats("read record", e))?;
        decode_record(&message.payload)
    }

    /// The first record of the conversation at or after `stream_seq`.
    async fn next_from(
        &self,
        subject: &str,
        stream_seq: u64,
    ) -> Result<Option<(u64, ChatRecord)>, BusError> {
        match self
            .inner
            .stream
            .direct_get_next_for_subject(subject, Some(stream_seq.max(1)))
            .await
        {
            Ok(message) => {
                let sequence = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(async_nats::header::NATS_SEQUENCE))
                    .and_then(|v| v.as_str().parse::<u64>().ok())
                    .ok_or_else(|| {
                        BusError::nats("read record", "direct get reply without Nats-Sequence")
                    })?;
                Ok(Some((sequence, decode_record(&message.payload)?)))
            }
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(BusError::nats("read record", e)),
        }
    }

    /// The records from the one at `stream_seq` back to `from_seq`,
    /// ascending, following each record's [`subjects::PREVIOUS_HEADER`].
    /// `None` when the chain breaks (records stored without the header, or
    /// removed from the stream): the caller searches instead.
    async fn walk_back(
        &self,
        stream_seq: u64,
        from_seq: u64,
    ) -> Result<Option<Vec<ChatRecord>>, BusError> {
        let mut records = Vec::new();
        let mut at = stream_seq;
        loop {
            let message = match self.inner.stream.direct_get(at).await {
                Ok(message) => message,
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(BusError::nats("read record", e)),
            };
            let record = decode_record(&message.payload)?;
            let previous = message
                .headers
                .get(subjects::PREVIOUS_HEADER)
                .and_then(|v| v.as_str().parse::<u64>().ok());
            let seq = record.seq;
            if records
                .last()
                .is_some_and(|next: &ChatRecord| next.seq != seq + 1)
            {
                return Ok(None);
            }
            records.push(record);
            if seq <= from_seq {
                break;
            }
            match previous {
                Some(previous) if previous > 0 && previous < at => at = previous,
                // Nothing before it in the stream: all it holds is here.
                Some(0) => break,
                _ => return Ok(None),
            }
        }
        records.reverse();
        Ok(Some(records))
    }

    /// The stream sequence of the first record with `seq >= target`, found
    /// by binary search over stream sequences (records of one conversation
    /// have growing `seq` in growing stream sequence).
    async fn locate(
        &self,
        subject: &str,
        target: u64,
        last_stream_seq: u64,
    ) -> Result<Option<(u64, ChatRecord)>, BusError> {
        let (mut lo, mut hi) = (1u64, last_stream_seq);
        let mut found = None;
        while lo <= hi {
            let mid = lo + (hi - lo) / 2;
            match self.next_from(subject, mid).await? {
                Some((stream_seq, record)) if record.seq >= target => {
                    let exact = record.seq == target;
                    found = Some((stream_seq, record));
                    if exact {
                        break;
                    }
                    // `mid >= lo >= 1`, so this cannot underflow.
                    hi = mid - 1;
                }
                Some((stream_seq, _)) => lo = stream_seq + 1,
                None => break,
            }
        }
        Ok(found)
    }

    /// Up to `limit` records with `seq >= from_seq`, ascending.
    ///
    /// # Errors
    /// NATS errors or undecodable records.
    pub async fn read_from(
        &self,
        conversation: &ConversationId,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<ChatRecord>, BusError> {
        match self.last(conversation).await? {
            Some(tail) => {
                self.read_from_tail(conversation, tail, from_seq, limit)
                    .await
            }
            None => Ok(Vec::new()),
        }
    }

    async fn read_from_tail(
        &self,
        conversation: &ConversationId,
        (last_stream_seq, last): (u64, ChatRecord),
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<ChatRecord>, BusError> {
        if last.seq < from_seq || limit == 0 {
            return Ok(Vec::new());
        }
        // The usual read (a resume, unread messages, a history page) wants
        // the conversation's newest records: walk back from the last one,
        // one direct get each, instead of a binary search of the stream.
        let span = last.seq - from_seq + 1;
        if span <= limit as u64 {
            if let Some(records) = self.walk_back(last_stream_seq, from_seq).await? {
                return Ok(records);
            }
        }
        let subject = subjects::conversation(conversation);
        let mut records = Vec::new();
        let mut next = self.locate(&subject, from_seq, last_stream_seq).await?;
        while let Some((stream_seq, record)) = next {
            records.push(record);
            if records.len() >= limit || stream_seq >= last_stream_seq {
                break;
            }
            next = self.next_from(&subject, stream_seq + 1).await?;
        }
        Ok(records)
    }

    /// Up to `limit` records with `seq < before_seq` (the newest ones when
    /// `before_seq` is past the end), ascending: a history page.
    ///
    /// # Errors
    /// NATS errors or undecodable records.
    pub async fn read_before(
        &self,
        conversation: &ConversationId,
        before_seq: u64,
        limit: usize,
    ) -> Result<Page, BusError> {
        let Some(tail) = self.last(conversation).await? else {
            // The stream holds nothing of it (new, or expired): all of it
            // that exists is in the archive.
            return Ok(Page {
                records: Vec::new(),
                has_more: before_seq > 1,
                archived_below: (before_seq > 1).then_some(before_seq),
            });
        };
        let before_seq = before_seq.min(tail.1.seq + 1);
        if before_seq <= 1 || limit == 0 {
            return Ok(Page::default());
        }
        let from = before_seq.saturating_sub(limit as u64).max(1);
        let wanted = usize::try_from(before_seq - from).unwrap_or(limit);
        let mut records = self
            .read_from_tail(conversation, tail, from, wanted)
            .await?;
        records.retain(|r| r.seq < before_seq);
        let archived_below = match records.first() {
            Some(first) if first.seq > from => Some(first.seq),
            None => Some(before_seq),
            _ => None,
        };
        Ok(Page {
            has_more: from > 1 || archived_below.is_some(),
            records,
            archived_below,
        })
    }
}

/// Whether a publish refused at once may succeed if tried again shortly:
/// the stream is between leaders (it looks missing, or the request fails),
/// or the connection broke. A publish that timed out is not retried here:
/// the server did not answer for the whole request timeout, and the sender
/// is told (`unavailable`) rather than kept waiting; its retry carries the
/// same key, so a record stored meanwhile is recognised.
fn retryable(kind: PublishErrorKind) -> bool {
    matches!(
        kind,
        PublishErrorKind::StreamNotFound | PublishErrorKind::BrokenPipe | PublishErrorKind::Other
    )
}

fn decode_record(payload: &[u8]) -> Result<ChatRecord, BusError> {
    decode(payload).map_err(|e| BusError::decode("chat record", e))
}
