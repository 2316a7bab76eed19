//! Checking Switchboard's delivery guarantees after faults, against what
//! simulated clients received ([`crate::sim`]), the stream and the archive:
//! every acknowledged message delivered once and in order to every
//! participant, one record per client id, every stored message
//! acknowledged, the archive equal to the stream.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use mongodb::bson::{doc, Document};
use switchboard_bus::Backbone;
use switchboard_protocol::ids::ConversationId;
use switchboard_protocol::payloads::{ChatRecord, RecordBody};
use tokio::time::Instant;

use crate::sim::{within, ClientState, Role, Sim};
use crate::{deadline, progressing_for};

/// The archiver consumer's ack wait: the archive may stand still this long
/// (and a deadline more) while it catches up.
pub const ARCHIVER_ACK_WAIT: Duration = Duration::from_secs(30);

/// Awaits the archive catching up: fails only when `check`'s account of
/// where it stands has not changed for the ack wait and a deadline.
pub async fn archive_catches_up<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    progressing_for(what, ARCHIVER_ACK_WAIT + deadline(), check).await
}

/// Every record of a conversation in the `CHAT` stream, ascending.
pub async fn stream_records(backbone: &Backbone, conversation: &str) -> Vec<ChatRecord> {
    let id = ConversationId::new(conversation).unwrap_or_else(|e| panic!("{conversation}: {e}"));
    backbone
        .log
        .read_from(&id, 1, 1_000_000)
        .await
        .unwrap_or_else(|e| panic!("read {conversation} from the stream: {e}"))
}

pub async fn stream_last_seq(backbone: &Backbone, conversation: &str) -> Result<u64, String> {
    let id = ConversationId::new(conversation).map_err(|e| e.to_string())?;
    backbone
        .log
        .last_seq(&id)
        .await
        .map_err(|e| format!("last seq of {conversation}: {e}"))
}

/// Messages stored in the `CHAT` stream, all conversations together.
pub async fn stream_total(backbone: &Backbone) -> u64 {
    let mut stream = backbone
        .js
        .get_stream("CHAT")
        .await
        .unwrap_or_else(|e| panic!("get the CHAT stream: {e}"));
    stream
        .info()
        .await
        .unwrap_or_else(|e| panic!("CHAT stream info: {e}"))
        .state
        .messages
}

/// `(id, seq)` of a conversation's records, ascending, from the stream.
pub fn ids_by_seq(records: &[ChatRecord]) -> Vec<(String, u64)> {
    records.iter().map(|r| (r.id.to_string(), r.seq)).collect()
}

/// Every archived record as `conversation → [(id, seq)]`, ascending.
pub async fn archived(
    db: &mongodb::Database,
) -> Result<BTreeMap<String, Vec<(String, u64)>>, String> {
    let mut cursor = db
        .collection::<Document>("messages")
        .find(doc! {})
        .sort(doc! { "conversation_id": 1, "seq": 1 })
        .await
        .map_err(|e| format!("find archived messages: {e}"))?;
    let mut all: BTreeMap<String, Vec<(String, u64)>> = BTreeMap::new();
    while cursor
        .advance()
        .await
        .map_err(|e| format!("read archived messages: {e}"))?
    {
        let doc: Document = cursor
            .deserialize_current()
            .map_err(|e| format!("archived message: {e}"))?;
        let id = doc.get_str("_id").map_err(|e| format!("{doc}: {e}"))?;
        let conversation = doc
            .get_str("conversation_id")
            .map_err(|e| format!("{doc}: {e}"))?;
        let seq = doc.get_i64("seq").map_err(|e| format!("{doc}: {e}"))?;
        all.entry(conversation.to_owned())
            .or_default()
            .push((id.to_owned(), seq as u64));
    }
    Ok(all)
}

/// Whether the archive holds the record `id`.
pub async fn is_archived(db: &mongodb::Database, id: &str) -> Result<(), String> {
    match db
        .collection::<Document>("messages")
        .find_one(doc! { "_id": id })
        .await
    {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(format!("{id} not archived yet")),
        Err(e) => Err(format!("archive unreachable: {e}")),
    }
}

/// An acknowledged message created after `t`, if any client has one.
pub fn acked_after(sim: &Sim, t: Instant) -> Result<String, String> {
    sim.snapshot()
        .iter()
        .flat_map(|c| c.acks.values())
        .find(|a| a.created > t)
        .map(|a| a.id.clone())
        .ok_or_else(|| "no message created after the mark acknowledged yet".to_owned())
}

/// Once the simulated clients stopped sending: waits (up to `limit`,
/// scaled) until every pending send is acknowledged, then until every
/// participant of every conversation has every record up to its end.
pub async fn settle(sim: &Sim, backbone: &Backbone, limit: Duration) {
    within("every pending send acknowledged", limit, || {
        std::future::ready({
            let pending: usize = sim.snapshot().iter().map(|c| c.pending.len()).sum();
            if pending == 0 {
                Ok(())
            } else {
                Err(format!("{pending} sends pending"))
            }
        })
    })
    .await;
    within("every participant received every record", limit, || async {
        let states = sim.snapshot();
        let cast = cast(&states)?;
        for (conversation, (visitor, agents)) in &cast.conversations {
            let last = stream_last_seq(backbone, conversation).await?;
            for &i in std::iter::once(visitor).chain(agents) {
                let missing = states[i].conversations[conversation].missing_up_to(last);
                if !missing.is_empty() {
                    return Err(format!(
                        "{} lacks {missing:?} of {conversation}",
                        states[i].name
                    ));
                }
            }
        }
        Ok(())
    })
    .await;
}

/// The visitor and the agents of each conversation, by client index.
pub struct Cast {
    /// conversation → (visitor, agents holding it)
    pub conversations: BTreeMap<String, (usize, Vec<usize>)>,
}

pub fn cast(states: &[ClientState]) -> Result<Cast, String> {
    let mut conversations: BTreeMap<String, (usize, Vec<usize>)> = BTreeMap::new();
    for (i, state) in states.iter().enumerate() {
        if state.role != Role::Visitor {
            continue;
        }
        if state.conversations.len() != 1 {
            return Err(format!(
                "{} has {} conversations",
                state.name,
                state.conversations.len()
            ));
        }
        for conversation in state.conversations.keys() {
            conversations.insert(conversation.clone(), (i, Vec::new()));
        }
    }
    for (i, state) in states.iter().enumerate() {
        if state.role != Role::Agent {
            continue;
        }
        for conversation in state.conversations.keys() {
            match conversations.get_mut(conversation) {
                Some((_, agents)) => agents.push(i),
                None => return Err(format!("{} holds unknown {conversation}", state.name)),
            }
        }
    }
    for (conversation, (visitor, agents)) in &conversations {
        if agents.len() != 1 {
            return Err(format!(
                "{conversation} of {} is held by {} agents",
                states[*visitor].name,
                agents.len()
            ));
        }
    }
    Ok(Cast { conversations })
}

/// What [`check_guarantees`] found.
pub struct Checked {
    /// Every breach.
    pub failures: Vec<String>,
    /// Acknowledged re-sends whose message an earlier attempt had stored:
    /// retries the server recognised (guarantee 2 at work).
    pub recognised_retries: u64,
}

/// Checks guarantees 1–5 against the stream and the archive.
pub async fn check_guarantees(
    states: &[ClientState],
    backbone: &Backbone,
    db: &mongodb::Database,
) -> Checked {
    check_guarantees_besides(states, backbone, db, &[]).await
}

/// [`check_guarantees`] where the stream also holds `others`, conversations
/// of clients outside the simulation: they count in the comparison of the
/// stream with the archive, not in what the simulated clients received.
pub async fn check_guarantees_besides(
    states: &[ClientState],
    backbone: &Backbone,
    db: &mongodb::Database,
    others: &[String],
) -> Checked {
    let mut failures = Vec::new();
    let mut recognised_retries = 0;
    for state in states {
        for violation in &state.violations {
            failures.push(format!("{}: {violation}", state.name));
        }
        if !state.pending.is_empty() {
            failures.push(format!(
                "{}: {} sends never acknowledged: {:?}",
                state.name,
                state.pending.len(),
                state
                    .pending
                    .iter()
                    .map(|p| &p.client_id)
                    .collect::<Vec<_>>()
            ));
        }
    }
    let cast = match cast(states) {
        Ok(cast) => cast,
        Err(why) => {
            failures.push(why);
            return Checked {
                failures,
                recognised_retries,
            };
        }
    };
    let mut stream: BTreeMap<String, Vec<ChatRecord>> = BTreeMap::new();
    for conversation in cast.conversations.keys() {
        stream.insert(
            conversation.clone(),
            stream_records(backbone, conversation).await,
        );
    }
    let mut outside = BTreeMap::new();
    for conversation in others {
        outside.insert(
            conversation.clone(),
            stream_records(backbone, conversation).await,
        );
    }

    for (conversation, (visitor, agents)) in &cast.conversations {
        let records = &stream[conversation];
        let last = records.last().map_or(0, |r| r.seq);
        // 3. A dense order, the same for everyone, equal to the stream.
        let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
        if seqs != (1..=last).collect::<Vec<_>>() {
            failures.push(format!("{conversation}: stream seqs not dense: {seqs:?}"));
        }
        let truth: BTreeMap<u64, &ChatRecord> = records.iter().map(|r| (r.seq, r)).collect();
        for &participant in std::iter::once(visitor).chain(agents) {
            let state = &states[participant];
            let view = &state.conversations[conversation];
            let missing = view.missing_up_to(last);
            if !missing.is_empty() {
                failures.push(format!(
                    "{} never received seqs {missing:?} of {conversation}",
                    state.name
                ));
            }
            for (seq, seen) in &view.records {
                match truth.get(seq) {
                    None => failures.push(format!(
                        "{} received seq {seq} of {conversation}, which the stream lacks",
                        state.name
                    )),
                    Some(record) if record.id.as_str() != seen.id => failures.push(format!(
                        "{} received {} at seq {seq} of {conversation}; the stream has {}",
                        state.name, seen.id, record.id
                    )),
                    Some(_) => {}
                }
            }
        }
        // 2. One record per (sender, client_id).
        let mut keys = BTreeSet::new();
        for record in records {
            if let RecordBody::Message { client_id, .. } = &record.body {
                if !keys.insert((record.sender.id.clone(), client_id.clone())) {
                    failures.push(format!(
                        "{conversation}: {client_id} of {} stored twice",
                        record.sender.id
                    ));
                }
            }
        }
    }

    // 1. Every ack names the record stored (and delivered) at its seq;
    // 5. every stored message of a client was acknowledged to it.
    for state in states {
        let me = state.participant_id.clone().unwrap_or_default();
        for (client_id, ack) in &state.acks {
            let record = stream
                .get(&ack.conversation_id)
                .and_then(|records| records.iter().find(|r| r.seq == ack.seq));
            if let Some(record) = record {
                // Stored before its last attempt went out: a retry that was
                // answered with the original.
                if ack.attempts > 1 && record.sent_at < ack.last_attempt_ms {
                    recognised_retries += 1;
                }
            }
            match record {
                Some(record)
                    if record.id.as_str() == ack.id
                        && record.sender.id == me
                        && matches!(&record.body, RecordBody::Message { client_id: c, .. } if c == client_id) =>
                    {}
                other => failures.push(format!(
                    "{}: ack of {client_id} ({}@{}) does not match the stored record {other:?}",
                    state.name, ack.id, ack.seq
                )),
            }
        }
        for records in stream.values() {
            for record in records.iter().filter(|r| r.sender.id == me) {
                if let RecordBody::Message { client_id, .. } = &record.body {
                    if state
                        .acks
                        .get(client_id)
                        .is_none_or(|a| a.id != record.id.as_str())
                    {
                        failures.push(format!(
                            "{}: {client_id} is stored ({}) but was never acknowledged",
                            state.name, record.id
                        ));
                    }
                }
            }
        }
    }

    // 5. The archive equals the stream: same ids at the same seqs, no extra.
    let total = stream_total(backbone).await;
    let archive = archive_catches_up("the archive holds every record of the stream", || async {
        let all = archived(db).await?;
        let count: usize = all.values().map(Vec::len).sum();
        if count as u64 == total {
            Ok(all)
        } else {
            Err(format!("{count} archived of {total}"))
        }
    })
    .await;
    stream.extend(outside);
    let known: usize = stream.values().map(Vec::len).sum();
    if known as u64 != total {
        failures.push(format!(
            "the stream holds {total} records but the clients' conversations only {known}"
        ));
    }
    for (conversation, records) in &stream {
        let expected = ids_by_seq(records);
        let got = archive.get(conversation).cloned().unwrap_or_default();
        if got != expected {
            failures.push(format!(
                "archive of {conversation} differs from the stream:\n  archive {got:?}\n  stream  {expected:?}"
            ));
        }
    }
    for conversation in archive.keys() {
        if !stream.contains_key(conversation) {
            let records: Vec<String> = stream_records(backbone, conversation)
                .await
                .iter()
                .map(|r| format!("{} {:?} {:?}", r.seq, r.sender, r.body))
                .collect();
            failures.push(format!(
                "the archive has unknown conversation {conversation}: {records:#?}"
            ));
        }
    }
    Checked {
        failures,
        recognised_retries,
    }
}
