//! Races that a blind write would lose, each shown against the real
//! processes (or, where the interleaving cannot be forced from outside, the
//! library's own compare-and-set against a real nats-server):
//! - two tabs of one visitor that `start` at once get one conversation;
//! - `close` re-checks who may close in its compare-and-set;
//! - `leave_message` retried neither loses the conversation nor doubles
//!   anything, and two left without a `client_id` are both stored;
//! - a first-reply requeue never takes a conversation from an agent who
//!   answered in time;
//! - events owed by a state change are written once, even when flushed
//!   again after the stream's duplicate window;
//! - a router that has not seen a conversation never frees the slot held
//!   for it, nor one whose view is behind a newer claim;
//! - a compare-and-set that starts from what a watch showed (the router's
//!   assignments do) decides again on a read when the key moved on, both
//!   ways: no slot taken over capacity, and no free slot left unused.

use std::collections::BTreeSet;

use serde_json::json;
use switchboard_bus::kv;
use switchboard_bus::outbox;
use switchboard_bus::Backbone;
use switchboard_protocol::ids::{AgentId, ConversationId};
use switchboard_protocol::payloads::{
    AgentLoad, ConversationEvent, ConversationState, ConversationStatus, LoadEntry, Participant,
    RecordBody,
};
use switchboard_protocol::time::now_ms;
use switchboard_router::assign::{self, Requeue};
use switchboard_router::mirror::Mirror;
use switchboard_router::reconcile;
use switchboard_tests::system::System;
use switchboard_tests::ws::Ws;

/// Rounds of each race: enough that the losing interleaving happens.
const ROUNDS: usize = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tabs_starting_at_once_get_one_conversation() {
    let mut system = System::with_workers().await;
    let edge = system.edge().await;
    for round in 0..ROUNDS {
        let (_, token) = System::visitor(edge, &format!("Tabs {round}")).await;
        let (mut one, _) = Ws::hello(edge, &token, json!({})).await;
        let (mut two, _) = Ws::hello(edge, &token, json!({})).await;
        let start = json!({ "type": "start" });
        tokio::join!(one.send(start.clone()), two.send(start));
        let (a, b) = tokio::join!(one.expect_type("started"), two.expect_type("started"));
        assert_eq!(
            a["conversation_id"], b["conversation_id"],
            "round {round}: two tabs, two conversations"
        );
        // And the visitor's pointer names that one.
        let (mut third, welcome) = Ws::hello(edge, &token, json!({})).await;
        assert_eq!(
            welcome["conversations"][0]["conversation_id"],
            a["conversation_id"]
        );
        third.send(json!({ "type": "start" })).await;
        assert_eq!(
            third.expect_type("started").await["conversation_id"],
            a["conversation_id"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_and_transfer_at_once_never_both_happen() {
    let mut system = System::with_workers().await;
    let edge = system.edge().await;
    system.add_agent("ann", ROUNDS as u32 + 1, None).await;
    let other = system.add_agent("bob", ROUNDS as u32 + 1, None).await;
    let token = System::agent_token(edge, "ann").await;
    let (mut ann, _) = Ws::hello(edge, &token, json!({})).await;
    let (mut ann_tab, _) = Ws::hello(edge, &token, json!({})).await;
    let bob_token = System::agent_token(edge, "bob").await;
    // Bob is away: a transfer to him waits in the queue, for him only.
    let (mut bob, _) = Ws::hello(edge, &bob_token, json!({})).await;
    bob.send(json!({ "type": "status", "status": "away" }))
        .await;
    let mut both = 0;
    for round in 0..ROUNDS {
        let (_, visitor_token) = System::visitor(edge, &format!("V{round}")).await;
        let (mut vic, _) = Ws::hello(edge, &visitor_token, json!({})).await;
        vic.send(json!({ "type": "start" })).await;
        let id = vic.expect_type("started").await["conversation_id"]
            .as_str()
            .unwrap()
            .to_owned();
        vic.expect("assigned to ann", |f| {
            f["event"] == "assigned" && f["agent"]["name"] == "Agent ann"
        })
        .await;
        // One tab transfers while the other closes.
        let transfer =
            json!({ "type": "transfer", "conversation_id": id, "to_agent": other.id.to_string() });
        let close = json!({ "type": "close", "conversation_id": id });
        tokio::join!(ann.send(transfer), ann_tab.send(close));
        // Whichever came first, the other must be refused.
        let first = vic
            .expect("transferred or closed", |f| {
                f["event"] == "transferred" || f["event"] == "closed"
            })
            .await;
        let (loser, refused) = if first["event"] == "transferred" {
            (&mut ann_tab, "close")
        } else {
            (&mut ann, "transfer")
        };
        // The loser is told no, or the visitor sees the second event too.
        let first_seq = first["seq"].clone();
        tokio::select! {
            _ = loser.expect("the refusal", |f| f["type"] == "error") => {}
            second = vic.expect("a second event", |f| {
                (f["event"] == "closed" || f["event"] == "transferred") && f["seq"] != first_seq
            }) => {
                both += 1;
                eprintln!("round {round}: {refused} after {}: {second}", first["event"]);
            }
        }
    }
    assert_eq!(
        both, 0,
        "a conversation was both transferred and closed by its former agent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_a_message_twice_stores_it_once() {
    let mut system = System::with_workers().await;
    let edge = system.edge().await;
    let (_, token) = System::visitor(edge, "Nobody-home").await;
    let (mut vic, welcome) = Ws::hello(edge, &token, json!({})).await;
    assert!(welcome["conversations"].as_array().unwrap().is_empty());
    vic.send(json!({ "type": "start" })).await;
    let id = vic.expect_type("started").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    vic.expect_event(&id, "queued").await;
    let leave = json!({
        "type": "leave_message", "text": "call me back", "name": "Nina",
        "email": "nina@example.com", "client_id": "leave-1",
    });
    vic.send(leave.clone()).await;
    let first = vic.expect_type("ack").await;
    // The client did not see the ack (say), and sends the same again.
    let (mut again, _) = Ws::hello(edge, &token, json!({ id.clone(): 0 })).await;
    again.send(leave).await;
    let second = again.expect_type("ack").await;
    assert_eq!(first["id"], second["id"]);
    let last = again
        .expect("a record after the retry", |f| {
            f["type"] == "message" && f["id"] == second["id"]
        })
        .await;
    let records = again.records(&id);
    let left: Vec<_> = records
        .iter()
        .filter(|f| f["event"] == "left_message")
        .collect();
    assert_eq!(left.len(), 1, "{records:#?}");
    let messages: Vec<_> = records.iter().filter(|f| f["type"] == "message").collect();
    assert_eq!(messages.len(), 1, "{records:#?}");
    assert_eq!(last["seq"], records.last().unwrap()["seq"]);

    // An agent sees it listed once.
    system.add_agent("amy", 2, None).await;
    let amy_token = System::agent_token(edge, "amy").await;
    let (mut amy, _) = Ws::hello(edge, &amy_token, json!({})).await;
    amy.send(json!({ "type": "list_missed" })).await;
    let missed = amy.expect_type("missed").await;
    let listed: Vec<_> = missed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["conversation_id"] == id.as_str())
        .collect();
    assert_eq!(listed.len(), 1, "{missed}");
    assert_eq!(listed[0]["visitor"]["name"], "Nina");
}

/// Two different messages left without a `client_id` are two messages:
/// the second is neither taken for a retry of the first nor dropped by
/// the stream's duplicate window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_left_without_a_client_id_are_each_stored() {
    let mut system = System::with_workers().await;
    let edge = system.edge().await;
    let (_, token) = System::visitor(edge, "Nobody-home").await;
    let (mut vic, _) = Ws::hello(edge, &token, json!({})).await;
    vic.send(json!({ "type": "leave_message", "text": "call me back" }))
        .await;
    let id = vic.expect_type("started").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let first = vic.expect_type("ack").await;
    vic.send(json!({ "type": "leave_message", "text": "or e-mail me" }))
        .await;
    let second = vic.expect_type("ack").await;
    assert_ne!(first["id"], second["id"], "{first} {second}");
    let last = vic
        .expect("the second message", |f| {
            f["type"] == "message" && f["id"] == second["id"]
        })
        .await;
    assert_eq!(last["text"], "or e-mail me");
    let texts: Vec<_> = vic
        .records(&id)
        .iter()
        .filter(|f| f["type"] == "message")
        .map(|f| f["text"].clone())
        .collect();
    assert_eq!(texts, vec![json!("call me back"), json!("or e-mail me")]);
}

/// The router decides from its view, which may lag behind the agent's
/// reply: the compare-and-set of the requeue itself must refuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_view_never_requeues_an_answered_conversation() {
    let system = System::start().await;
    let backbone = system.backbone().await;
    let agent = AgentId::generate();
    let conversation = ConversationId::generate();
    let mut state = ConversationState::opened(
        conversation.clone(),
        Participant::system("visitor"),
        None,
        now_ms(),
    );
    // Its log has begun (a requeue appends to it).
    backbone
        .log
        .append(
            &conversation,
            state.visitor.clone(),
            RecordBody::Event {
                event: ConversationEvent::Opened {
                    visitor: state.visitor.clone(),
                    team: None,
                },
            },
            None,
        )
        .await
        .unwrap();
    let assigned_at = now_ms() - 60_000;
    state.status = ConversationStatus::Assigned;
    state.agent = Some(Participant::agent(&agent, "Agent"));
    state.assigned_at = Some(assigned_at);
    kv::put(&backbone.conversations, conversation.as_str(), &state)
        .await
        .unwrap();
    // The agent answered; the router's view still says silent.
    let mut answered = state.clone();
    answered.first_response_at = Some(now_ms());
    kv::put(&backbone.conversations, conversation.as_str(), &answered)
        .await
        .unwrap();
    let requeued = assign::requeue(
        &backbone,
        &conversation,
        &agent,
        Requeue::NoReply { assigned_at },
    )
    .await
    .unwrap();
    assert!(!requeued, "an answered conversation was taken away");
    let now = kv::get::<ConversationState>(&backbone.conversations, conversation.as_str())
        .await
        .unwrap()
        .unwrap()
        .value;
    assert!(now.is_assigned_to(&agent));
    // An assignment made since (another one) is not the silent one either.
    let mut reassigned = answered.clone();
    reassigned.first_response_at = None;
    reassigned.assigned_at = Some(now_ms());
    kv::put(&backbone.conversations, conversation.as_str(), &reassigned)
        .await
        .unwrap();
    let requeued = assign::requeue(
        &backbone,
        &conversation,
        &agent,
        Requeue::NoReply { assigned_at },
    )
    .await
    .unwrap();
    assert!(
        !requeued,
        "a newer assignment was taken for an older silence"
    );
    // A silence that still holds is requeued.
    let requeued = assign::requeue(
        &backbone,
        &conversation,
        &agent,
        Requeue::NoReply {
            assigned_at: reassigned.assigned_at.unwrap(),
        },
    )
    .await
    .unwrap();
    assert!(requeued);
}

/// A writer that died between appending an owed event and clearing it
/// leaves the debt; flushed again after the duplicate window, the event
/// must not be stored a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owed_event_flushed_after_the_duplicate_window_is_stored_once() {
    let mut system = System::start_env(&[("SWITCHBOARD_NATS__DUPLICATE_WINDOW", "1s")]).await;
    // The first node creates the stream with the short window.
    let _edge = system.edge().await;
    let backbone = system.backbone().await;
    assert_eq!(
        backbone.log.duplicate_window(),
        std::time::Duration::from_secs(1)
    );
    let conversation = ConversationId::generate();
    let visitor = Participant::system("visitor");
    backbone
        .log
        .append(
            &conversation,
            visitor.clone(),
            RecordBody::Event {
                event: ConversationEvent::Opened {
                    visitor: visitor.clone(),
                    team: None,
                },
            },
            None,
        )
        .await
        .unwrap();
    let mut state =
        ConversationState::opened(conversation.clone(), visitor.clone(), None, now_ms());
    state.status = ConversationStatus::Closed;
    state.owe(visitor.clone(), ConversationEvent::Closed {}, None);
    kv::put(&backbone.conversations, conversation.as_str(), &state)
        .await
        .unwrap();
    // The writer appends the owed event, then dies before clearing it.
    let pending = state.pending[0].clone();
    backbone
        .log
        .append(
            &conversation,
            pending.sender.clone(),
            RecordBody::Event {
                event: pending.event.clone(),
            },
            Some(&pending.key),
        )
        .await
        .unwrap();
    // JetStream's own dedupe forgets the key after its window: the window
    // is real time on the server, so it has to pass.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    outbox::flush(&backbone, &conversation).await.unwrap();
    let records = backbone.log.read_from(&conversation, 1, 100).await.unwrap();
    let closed = records
        .iter()
        .filter(|r| {
            matches!(
                r.body,
                RecordBody::Event {
                    event: ConversationEvent::Closed {}
                }
            )
        })
        .count();
    assert_eq!(closed, 1, "{records:#?}");
    let after = kv::get::<ConversationState>(&backbone.conversations, conversation.as_str())
        .await
        .unwrap()
        .unwrap()
        .value;
    assert!(after.pending.is_empty(), "the debt is cleared");
}

/// A router whose view is behind the bucket — it saw the conversation
/// closed, and not that it was reopened and claimed again for the same
/// agent — releases only the claim it saw, never the newer one: the agent
/// keeps the slot the new assignment holds and is not given more than
/// their capacity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_behind_the_bucket_never_frees_a_newer_claim() {
    let system = System::start().await;
    let backbone = system.backbone().await;
    let agent = AgentId::generate();
    let reopened = ConversationId::generate();
    let closed = ConversationId::generate();
    let first_claim = now_ms() - 60_000;
    let entry = |conversation: &ConversationId, claimed_at: i64| LoadEntry {
        conversation_id: conversation.clone(),
        claimed_at,
    };
    // The view: both conversations closed, both claims from a minute ago.
    let mut mirror = Mirror::default();
    for conversation in [&reopened, &closed] {
        let state = agents_state(conversation, &agent, ConversationStatus::Closed);
        mirror.keep(conversation.clone(), state);
    }
    mirror.loads.insert(
        agent.clone(),
        AgentLoad {
            conversations: vec![entry(&reopened, first_claim), entry(&closed, first_claim)],
            ..Default::default()
        },
    );
    // The bucket: one of them reopened and claimed for the agent again.
    let state = agents_state(&reopened, &agent, ConversationStatus::Assigned);
    kv::put(&backbone.conversations, reopened.as_str(), &state)
        .await
        .unwrap();
    let load = AgentLoad {
        conversations: vec![entry(&reopened, now_ms()), entry(&closed, first_claim)],
        ..Default::default()
    };
    kv::put(&backbone.load, agent.as_str(), &load)
        .await
        .unwrap();

    assert_eq!(
        claims_after_reconciling(&backbone, &mirror, &agent).await,
        BTreeSet::from([reopened.to_string()])
    );
}

/// A router whose view lacks a conversation (its history not loaded yet)
/// must not free the slot an old claim holds for it while the bucket says
/// the conversation is assigned to that agent; one the bucket shows is not
/// theirs is freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_view_never_frees_a_slot_under_an_assignment() {
    let system = System::start().await;
    let backbone = system.backbone().await;
    let agent = AgentId::generate();
    let held = ConversationId::generate();
    let orphan = ConversationId::generate();
    let state = agents_state(&held, &agent, ConversationStatus::Assigned);
    kv::put(&backbone.conversations, held.as_str(), &state)
        .await
        .unwrap();
    let load = AgentLoad {
        conversations: [&held, &orphan]
            .into_iter()
            .map(|c| LoadEntry {
                conversation_id: c.clone(),
                claimed_at: 0,
            })
            .collect(),
        ..Default::default()
    };
    kv::put(&backbone.load, agent.as_str(), &load)
        .await
        .unwrap();
    // The view has the agent's load but none of the conversations.
    let mut mirror = Mirror::default();
    mirror.loads.insert(agent.clone(), load.clone());
    assert_eq!(
        claims_after_reconciling(&backbone, &mirror, &agent).await,
        BTreeSet::from([held.to_string()])
    );
}

/// A conversation that is (or was, closed) `agent`'s, as the state says.
fn agents_state(
    conversation: &ConversationId,
    agent: &AgentId,
    status: ConversationStatus,
) -> ConversationState {
    let mut state = ConversationState::opened(
        conversation.clone(),
        Participant::system("visitor"),
        None,
        now_ms(),
    );
    state.status = status;
    state.agent = Some(Participant::agent(agent, "Agent"));
    state.assigned_at = Some(now_ms());
    state
}

/// One reconciliation from `mirror`'s view (10 s grace), then the
/// conversations `agent`'s load still claims.
async fn claims_after_reconciling(
    backbone: &Backbone,
    mirror: &Mirror,
    agent: &AgentId,
) -> BTreeSet<String> {
    reconcile::run_once(
        backbone,
        mirror,
        now_ms(),
        std::time::Duration::from_secs(10),
    )
    .await
    .unwrap();
    kv::get::<AgentLoad>(&backbone.load, agent.as_str())
        .await
        .unwrap()
        .unwrap()
        .value
        .conversations
        .iter()
        .map(|e| e.conversation_id.to_string())
        .collect()
}

/// A load entry holding `conversations`.
fn load_of(conversations: &[&ConversationId]) -> AgentLoad {
    AgentLoad {
        conversations: conversations
            .iter()
            .map(|c| LoadEntry {
                conversation_id: (*c).clone(),
                claimed_at: now_ms(),
            })
            .collect(),
        ..Default::default()
    }
}

/// What a watch would have shown of `key` now.
async fn seen_now(store: &async_nats::jetstream::kv::Store, key: &str) -> kv::Seen {
    let entry = store.entry(key).await.unwrap().unwrap();
    kv::Seen::of(&entry).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compare_and_set_from_a_stale_watch_decides_again_on_a_read() {
    let system = System::start().await;
    let backbone = system.backbone().await;
    let agent = AgentId::generate();
    let (mine, theirs) = (ConversationId::generate(), ConversationId::generate());
    // Capacity 1, the same decision as an assignment's claim.
    let claim = |current: Option<&AgentLoad>| {
        let mut load = current.cloned().unwrap_or_default();
        if !load.conversations.is_empty() {
            return kv::Decision::Keep(false);
        }
        load.conversations.push(LoadEntry {
            conversation_id: mine.clone(),
            claimed_at: now_ms(),
        });
        kv::Decision::Write(load, true)
    };

    // The watch showed a free slot; another router took it since.
    kv::put(&backbone.load, agent.as_str(), &load_of(&[]))
        .await
        .unwrap();
    let stale = seen_now(&backbone.load, agent.as_str()).await;
    kv::put(&backbone.load, agent.as_str(), &load_of(&[&theirs]))
        .await
        .unwrap();
    let (claimed, _) = kv::cas_versioned_seen(&backbone.load, agent.as_str(), Some(stale), claim)
        .await
        .unwrap();
    assert!(!claimed, "a slot taken since the watch was claimed again");
    let stored: AgentLoad = kv::get(&backbone.load, agent.as_str())
        .await
        .unwrap()
        .unwrap()
        .value;
    assert_eq!(stored.conversations.len(), 1);
    assert_eq!(stored.conversations[0].conversation_id, theirs);

    // The watch showed the slot taken; it was freed since.
    let stale = seen_now(&backbone.load, agent.as_str()).await;
    kv::put(&backbone.load, agent.as_str(), &load_of(&[]))
        .await
        .unwrap();
    let (claimed, written) =
        kv::cas_versioned_seen(&backbone.load, agent.as_str(), Some(stale), claim)
            .await
            .unwrap();
    assert!(claimed, "a slot freed since the watch was left unused");
    let written = written.unwrap();
    let stored = kv::get::<AgentLoad>(&backbone.load, agent.as_str())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.revision, written.revision);
    assert_eq!(stored.value.conversations.len(), 1);
    assert_eq!(stored.value.conversations[0].conversation_id, mine);

    // A current watch: written at once, at the revision it showed.
    let current = seen_now(&backbone.load, agent.as_str()).await;
    let shown = current.revision;
    let (_, written) = kv::cas_versioned_seen(
        &backbone.load,
        agent.as_str(),
        Some(current),
        |current: Option<&AgentLoad>| {
            let mut load = current.cloned().unwrap_or_default();
            load.conversations.clear();
            kv::Decision::Write(load, ())
        },
    )
    .await
    .unwrap();
    let written = written.unwrap();
    assert!(written.revision > shown);
    let stored = kv::get::<AgentLoad>(&backbone.load, agent.as_str())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.revision, written.revision);
    assert!(stored.value.conversations.is_empty());
}
