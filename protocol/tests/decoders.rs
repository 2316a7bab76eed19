//! Property tests of everything that decodes what another process or a
//! browser sends: arbitrary bytes never panic a decoder (they are refused
//! with an error), and every value encoded decodes to itself.

use proptest::prelude::*;
use switchboard_protocol::bots::{BotCall, HandoffRequest, PresenceRequest, SendRequest};
use switchboard_protocol::frames::{ClientFrame, ServerFrame};
use switchboard_protocol::ids::{AgentId, ConversationId, MessageId, TeamId, VisitorId};
use switchboard_protocol::payloads::{
    decode, encode, AgentAccount, AgentLoad, AgentNotice, ArchivedConversationReply,
    ArchivedConversationRequest, BotNotice, ChatRecord, ConversationEvent, ConversationState,
    ConversationStatus, HistoryReply, HistoryRequest, MissedEntry, Notice, Participant, Presence,
    QueueSnapshot, ReadMark, RecordBody, Revocation, RevokedToken, Role, Signal,
};
use switchboard_protocol::stats::{StatsReply, StatsRequest};

/// Decodes `bytes` as every payload type a process receives from NATS;
/// each may fail, none may panic.
fn decode_every_payload(bytes: &[u8]) {
    let _ = decode::<ChatRecord>(bytes);
    let _ = decode::<ConversationState>(bytes);
    let _ = decode::<Signal>(bytes);
    let _ = decode::<AgentNotice>(bytes);
    let _ = decode::<BotNotice>(bytes);
    let _ = decode::<Notice>(bytes);
    let _ = decode::<QueueSnapshot>(bytes);
    let _ = decode::<MissedEntry>(bytes);
    let _ = decode::<AgentAccount>(bytes);
    let _ = decode::<AgentLoad>(bytes);
    let _ = decode::<Presence>(bytes);
    let _ = decode::<ReadMark>(bytes);
    let _ = decode::<Revocation>(bytes);
    let _ = decode::<RevokedToken>(bytes);
    let _ = decode::<HistoryRequest>(bytes);
    let _ = decode::<HistoryReply>(bytes);
    let _ = decode::<ArchivedConversationRequest>(bytes);
    let _ = decode::<ArchivedConversationReply>(bytes);
    let _ = decode::<StatsRequest>(bytes);
    let _ = decode::<StatsReply>(bytes);
    let _ = decode::<BotCall>(bytes);
    let _ = decode::<SendRequest>(bytes);
    let _ = decode::<HandoffRequest>(bytes);
    let _ = decode::<PresenceRequest>(bytes);
    let _ = decode::<ConversationId>(bytes);
}

fn id_text() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,64}"
}

fn any_text() -> impl Strategy<Value = String> {
    any::<String>()
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![
        Just(Role::Visitor),
        Just(Role::Agent),
        Just(Role::System),
        Just(Role::Bot)
    ]
}

fn participant() -> impl Strategy<Value = Participant> {
    (role(), id_text(), any_text()).prop_map(|(role, id, name)| Participant { role, id, name })
}

fn event() -> impl Strategy<Value = ConversationEvent> {
    prop_oneof![
        (participant(), proptest::option::of(id_text())).prop_map(|(visitor, team)| {
            ConversationEvent::Opened {
                visitor,
                team: team.and_then(|t| TeamId::new(t).ok()),
            }
        }),
        (any::<u32>(), proptest::option::of(any::<u32>())).prop_map(|(position, wait)| {
            ConversationEvent::Queued {
                position,
                estimated_wait_secs: wait,
                agents_online: None,
            }
        }),
        (participant(), any_text())
            .prop_map(|(agent, reason)| ConversationEvent::AgentLeft { agent, reason }),
        (participant(), proptest::option::of(any_text())).prop_map(|(from, note)| {
            ConversationEvent::Transferred {
                from,
                to_agent: None,
                to_team: None,
                note,
            }
        }),
        Just(ConversationEvent::Closed {}),
        Just(ConversationEvent::Reopened {}),
        (1u8..=5, proptest::option::of(any_text()))
            .prop_map(|(score, comment)| ConversationEvent::Rated { score, comment }),
        (participant(), any_text())
            .prop_map(|(from, reason)| ConversationEvent::HandedOff { from, reason }),
    ]
}

fn record() -> impl Strategy<Value = ChatRecord> {
    let body = prop_oneof![
        (any_text(), any_text())
            .prop_map(|(text, client_id)| RecordBody::Message { text, client_id }),
        event().prop_map(|event| RecordBody::Event { event }),
    ];
    (any::<u64>(), participant(), any::<i64>(), body).prop_map(|(seq, sender, sent_at, body)| {
        ChatRecord {
            id: MessageId::generate(),
            conversation_id: ConversationId::generate(),
            seq,
            sender,
            sent_at,
            body,
        }
    })
}

fn signal() -> impl Strategy<Value = Signal> {
    prop_oneof![
        (participant(), any::<bool>()).prop_map(|(sender, state)| Signal::Typing { sender, state }),
        (participant(), any::<u64>()).prop_map(|(reader, seq)| Signal::Read { reader, seq }),
        (participant(), any::<u64>())
            .prop_map(|(recipient, seq)| Signal::Delivered { recipient, seq }),
    ]
}

fn state() -> impl Strategy<Value = ConversationState> {
    (
        participant(),
        prop_oneof![
            Just(ConversationStatus::Queued),
            Just(ConversationStatus::Assigned),
            Just(ConversationStatus::Closed),
            Just(ConversationStatus::Missed),
        ],
        proptest::option::of(participant()),
        any::<i64>(),
        any::<i32>(),
        proptest::option::of(1u8..=5),
        proptest::collection::vec((participant(), event()), 0..3),
    )
        .prop_map(|(visitor, status, agent, at, priority, rating, owed)| {
            let mut state =
                ConversationState::opened(ConversationId::generate(), visitor, None, at);
            state.status = status;
            state.agent = agent;
            state.priority = priority;
            state.rating = rating;
            state.first_response_at = Some(at);
            for (sender, event) in owed {
                state.owe(sender, event, Some(AgentId::generate()));
            }
            state
        })
}

fn conversation() -> impl Strategy<Value = ConversationId> {
    id_text().prop_map(|c| ConversationId::new(c).unwrap_or_else(|_| ConversationId::generate()))
}

fn client_frame() -> impl Strategy<Value = ClientFrame> {
    prop_oneof![
        (
            any_text(),
            proptest::collection::hash_map(conversation(), any::<u64>(), 0..3)
        )
            .prop_map(|(token, resume)| ClientFrame::Hello { token, resume }),
        (conversation(), any_text(), any_text(), any::<bool>()).prop_map(
            |(conversation_id, client_id, text, retry)| ClientFrame::Send {
                conversation_id,
                client_id,
                text,
                retry,
            }
        ),
        (conversation(), any::<bool>()).prop_map(|(conversation_id, state)| {
            ClientFrame::Typing {
                conversation_id,
                state,
            }
        }),
        (
            conversation(),
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<u32>())
        )
            .prop_map(
                |(conversation_id, before_seq, limit)| ClientFrame::History {
                    conversation_id,
                    before_seq,
                    limit,
                }
            ),
        (
            proptest::option::of(conversation()),
            proptest::option::of(any::<u32>())
        )
            .prop_map(|(after, limit)| ClientFrame::ListMissed { after, limit }),
        any_text().prop_map(|token| ClientFrame::Refresh { token }),
        conversation().prop_map(|conversation_id| ClientFrame::Close { conversation_id }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic_a_payload_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_every_payload(&bytes);
    }

    #[test]
    fn arbitrary_text_never_panics_the_frame_decoder(text in any::<String>()) {
        let _ = serde_json::from_str::<ClientFrame>(&text);
    }

    #[test]
    fn json_shaped_text_never_panics_the_frame_decoder(
        kind in "[a-z_]{0,14}",
        id in any::<String>(),
        number in any::<i64>(),
        nested in any::<bool>(),
    ) {
        let value = if nested { serde_json::json!({ "x": number }) } else { serde_json::json!(number) };
        for frame in [
            serde_json::json!({ "type": kind, "conversation_id": id, "seq": value }),
            serde_json::json!({ "type": kind, "token": id, "resume": { "c_1": value } }),
            serde_json::json!({ "type": kind, "limit": value, "after": id }),
        ] {
            let _ = serde_json::from_str::<ClientFrame>(&frame.to_string());
        }
    }

    #[test]
    fn chat_records_round_trip(record in record()) {
        let bytes = encode(&record).unwrap();
        prop_assert_eq!(decode::<ChatRecord>(&bytes).unwrap(), record.clone());
        // Truncated, never a panic.
        for cut in [0, bytes.len() / 2, bytes.len().saturating_sub(1)] {
            let _ = decode::<ChatRecord>(&bytes[..cut]);
        }
        // What the browsers are sent of it encodes without failing.
        for viewer in [Role::Visitor, Role::Agent] {
            let json = ServerFrame::from_record(&record, &viewer).to_json();
            prop_assert!(serde_json::from_str::<serde_json::Value>(&json).is_ok());
        }
    }

    #[test]
    fn signals_round_trip(signal in signal()) {
        let bytes = encode(&signal).unwrap();
        prop_assert_eq!(decode::<Signal>(&bytes).unwrap(), signal);
    }

    #[test]
    fn conversation_states_round_trip(state in state()) {
        let bytes = encode(&state).unwrap();
        prop_assert_eq!(decode::<ConversationState>(&bytes).unwrap(), state);
    }

    #[test]
    fn client_frames_round_trip(frame in client_frame()) {
        let json = serde_json::to_string(&frame).unwrap();
        prop_assert_eq!(serde_json::from_str::<ClientFrame>(&json).unwrap(), frame);
    }

    #[test]
    fn ids_are_validated_whatever_the_text(text in any::<String>()) {
        if let Ok(id) = ConversationId::new(text.clone()) {
            prop_assert!(id.as_str().bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        }
        let _ = VisitorId::new(text.clone());
        let _ = AgentId::new(text);
    }
}
