//! Summaries held back while the archiver is behind the stream: the
//! records of the batches whose messages are stored and acked but whose
//! conversations' summaries are not written yet (a durable note names
//! them meanwhile: see [`crate::behind`]). Written together, a
//! conversation's records of many batches take one summary statement.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mongodb::bson::Bson;
use switchboard_protocol::ids::ConversationId;
use switchboard_protocol::payloads::ChatRecord;

use crate::store::Groups;

/// Records held before the summaries are written whatever the delay.
pub const MAX_RECORDS: usize = 50_000;

/// Summaries not written yet.
#[derive(Default)]
pub struct Held {
    /// By conversation: its records, and whether any was archived before.
    conversations: BTreeMap<ConversationId, (Vec<ChatRecord>, bool)>,
    records: usize,
    /// When the oldest held records were stored.
    since: Option<Instant>,
    /// The notes naming them.
    notes: Vec<Bson>,
}

impl Held {
    /// Holds a batch's records (stored at `now`); `repeated` are the
    /// positions of those archived before.
    pub fn add(&mut self, records: Vec<ChatRecord>, repeated: &[usize], now: Instant) {
        self.records += records.len();
        if !records.is_empty() {
            self.since.get_or_insert(now);
        }
        for (i, record) in records.into_iter().enumerate() {
            let entry = self
                .conversations
                .entry(record.conversation_id.clone())
                .or_default();
            entry.0.push(record);
            entry.1 |= repeated.contains(&i);
        }
    }

    /// Whether the summaries must be written now: the oldest held for
    /// `delay`, or too many records held.
    pub fn due(&self, now: Instant, delay: Duration) -> bool {
        self.records >= MAX_RECORDS || self.due_at(delay).is_some_and(|at| now >= at)
    }

    /// When the held summaries must be written at the latest, if any are.
    pub fn due_at(&self, delay: Duration) -> Option<Instant> {
        self.since.map(|since| since + delay)
    }

    /// The held records by conversation, as the archive summarizes them.
    pub fn groups(&self) -> Groups<'_> {
        self.conversations
            .iter()
            .map(|(conversation, (records, repeated))| {
                (conversation, (records.iter().collect(), *repeated))
            })
            .collect()
    }

    /// A note naming some of the held conversations was written.
    pub fn noted(&mut self, note: Bson) {
        self.notes.push(note);
    }

    /// The notes naming the held conversations.
    pub fn notes(&self) -> &[Bson] {
        &self.notes
    }

    /// Conversations held.
    pub fn conversations(&self) -> usize {
        self.conversations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0 && self.notes.is_empty()
    }

    /// The summaries were written (and their notes deleted).
    pub fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_protocol::ids::{MessageId, VisitorId};
    use switchboard_protocol::payloads::{Participant, RecordBody};

    fn record(conversation: &str, seq: u64) -> ChatRecord {
        ChatRecord {
            id: MessageId::generate(),
            conversation_id: ConversationId::new(conversation).unwrap(),
            seq,
            sender: Participant::visitor(&VisitorId::new("v_1").unwrap(), "Ann"),
            sent_at: 1_700_000_000_000,
            body: RecordBody::Message {
                text: "hi".to_owned(),
                client_id: format!("k{seq}"),
            },
        }
    }

    #[test]
    fn batches_of_a_conversation_are_summarized_together_in_order() {
        let start = Instant::now();
        let mut held = Held::default();
        held.add(vec![record("c_1", 1), record("c_2", 1)], &[], start);
        held.add(vec![record("c_1", 2), record("c_1", 3)], &[1], start);
        assert_eq!(held.conversations(), 2);
        let groups = held.groups();
        let c1 = &groups[&ConversationId::new("c_1").unwrap()];
        assert_eq!(c1.0.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert!(c1.1, "a record of c_1 was archived before");
        assert!(!groups[&ConversationId::new("c_2").unwrap()].1);
    }

    #[test]
    fn due_after_the_delay_from_the_oldest_or_when_full() {
        let start = Instant::now();
        let delay = Duration::from_secs(10);
        let mut held = Held::default();
        assert!(!held.due(start + delay, delay), "nothing held");
        held.add(vec![record("c_1", 1)], &[], start);
        held.add(vec![record("c_1", 2)], &[], start + Duration::from_secs(9));
        assert!(!held.due(start + Duration::from_secs(9), delay));
        assert!(
            held.due(start + delay, delay),
            "the oldest waited the delay"
        );
        held.clear();
        assert!(held.is_empty());
        let many = (1..=MAX_RECORDS as u64)
            .map(|seq| record("c_1", seq))
            .collect();
        held.add(many, &[], start);
        assert!(held.due(start, delay), "too many records held");
    }
}
