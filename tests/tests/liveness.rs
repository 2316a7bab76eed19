//! Dead connections are noticed: a client that stops answering (a laptop
//! lid closed) is closed after `edge.idle_timeout` and its agent goes
//! offline with it; a client that sends without reading what it is
//! answered is dropped like any slow client, and nobody else waits.

use futures::TryStreamExt;
use serde_json::json;
use switchboard_protocol::ids::ConversationId;
use switchboard_protocol::payloads::{Participant, RecordBody};
use switchboard_tests::system::System;
use switchboard_tests::ws::Ws;
use switchboard_tests::{deadline, eventually};

/// Presence entries of an agent in the bucket.
async fn presence_entries(system: &System, agent_id: &str) -> usize {
    let backbone = system.backbone().await;
    let keys: Vec<String> = backbone
        .presence
        .keys()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    keys.iter()
        .filter(|k| k.starts_with(&format!("{agent_id}.")))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_agent_connection_is_closed_and_the_agent_goes_offline() {
    let mut system = System::with_workers().await;
    let edge = system
        .edge_with(&[
            ("SWITCHBOARD_EDGE__PING_INTERVAL", "300ms"),
            ("SWITCHBOARD_EDGE__IDLE_TIMEOUT", "1500ms"),
        ])
        .await;
    let account = system.add_agent("sleepy", 2, None).await;
    let token = System::agent_token(edge, "sleepy").await;
    // The lid closes right after the welcome: nothing is read (so no pong
    // is ever sent) and nothing is sent.
    let (mut lid, _) = Ws::hello(edge, &token, json!({})).await;
    let agent_id = account.id.to_string();
    assert_eq!(presence_entries(&system, &agent_id).await, 1);
    eventually("the silent agent's presence gone", || {
        let system = &system;
        let agent_id = agent_id.clone();
        async move { (presence_entries(system, &agent_id).await == 0).then_some(()) }
    })
    .await;

    // A visitor now waits in the queue, told nobody is online, instead of
    // being given to the sleeping agent.
    let (_, visitor_token) = System::visitor(edge, "Vic").await;
    let (mut vic, _) = Ws::hello(edge, &visitor_token, json!({})).await;
    vic.send(json!({ "type": "start" })).await;
    let id = vic.expect_type("started").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let queued = vic.expect_event(&id, "queued").await;
    assert_eq!(queued["agents_online"], 0, "{queued}");

    // When the laptop wakes, it reads the close the edge sent.
    assert_eq!(lid.expect_close().await, 4408);

    // A client that answers pings stays, however quiet it is otherwise.
    let (mut awake, _) = Ws::hello(edge, &visitor_token, json!({})).await;
    let quiet = tokio::time::timeout(std::time::Duration::from_secs(3), awake.next()).await;
    assert!(quiet.is_err(), "a reading client was sent {quiet:?}");
    awake
        .send(json!({ "type": "history", "conversation_id": id }))
        .await;
    awake.expect_type("history").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_without_reading_is_dropped_and_nobody_waits() {
    let mut system = System::with_workers().await;
    let edge = system
        .edge_with(&[
            ("SWITCHBOARD_EDGE__OUTBOUND_QUEUE", "8"),
            ("SWITCHBOARD_EDGE__RATE_PER_SEC", "100000"),
            ("SWITCHBOARD_EDGE__RATE_BURST", "100000"),
        ])
        .await;
    // The agent has read what came (so the hub's deliveries are not what
    // fills its queue)...
    let (id, mut hog, account) = large_conversation_for_agent(&mut system, edge, "hog").await;
    // ...then asks for page after page and reads none of them.
    let asked = tokio::time::timeout(deadline(), async {
        for _ in 0..400 {
            hog.send(json!({ "type": "history", "conversation_id": id, "limit": 100 }))
                .await;
        }
    })
    .await;
    assert!(
        asked.is_ok(),
        "the edge stopped reading the client: its session waits on a client that does not read"
    );
    // Its session ends (the agent goes offline) without it reading...
    let agent_id = account.id.to_string();
    eventually("the hog's session ended", || {
        let system = &system;
        let agent_id = agent_id.clone();
        async move { (presence_entries(system, &agent_id).await == 0).then_some(()) }
    })
    .await;
    // ...while the edge serves everyone else as usual...
    let (_, token) = System::visitor(edge, "Control").await;
    let (mut control, _) = Ws::hello(edge, &token, json!({})).await;
    control.send(json!({ "type": "start" })).await;
    control.expect_type("started").await;
    // ...and it is told why behind what it did not read.
    assert_eq!(hog.expect_close().await, 1008);
}

/// A write that cannot complete (the peer stopped reading, its buffers are
/// full) is given up after `edge.write_timeout`, and the whole connection
/// with it: its agent goes offline then, not at the idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_cannot_complete_ends_the_connection() {
    let mut system = System::with_workers().await;
    let edge = system
        .edge_with(&[
            ("SWITCHBOARD_EDGE__WRITE_TIMEOUT", "1s"),
            ("SWITCHBOARD_EDGE__PING_INTERVAL", "5m"),
            ("SWITCHBOARD_EDGE__IDLE_TIMEOUT", "10m"),
            // Only the write timeout can end it: the queue never fills.
            ("SWITCHBOARD_EDGE__OUTBOUND_QUEUE", "100000"),
            ("SWITCHBOARD_EDGE__RATE_PER_SEC", "100000"),
            ("SWITCHBOARD_EDGE__RATE_BURST", "100000"),
        ])
        .await;
    let (id, mut stuck, account) = large_conversation_for_agent(&mut system, edge, "stuck").await;
    // Page after page, none of them read: the socket's buffers fill and the
    // writer's next write cannot complete.
    for _ in 0..100 {
        stuck
            .send(json!({ "type": "history", "conversation_id": id, "limit": 100 }))
            .await;
    }
    let agent_id = account.id.to_string();
    eventually("the stuck agent's connection ended", || {
        let system = &system;
        let agent_id = agent_id.clone();
        async move { (presence_entries(system, &agent_id).await == 0).then_some(()) }
    })
    .await;
}

/// A waiting conversation whose history pages are large, given to an agent
/// `login` connected with a tiny receive buffer, who has read its last
/// record:
/// `(conversation, the agent's connection, the agent)`.
async fn large_conversation_for_agent(
    system: &mut System,
    edge: std::net::SocketAddr,
    login: &str,
) -> (String, Ws, switchboard_protocol::payloads::AgentAccount) {
    let (_, visitor_token) = System::visitor(edge, "Vic").await;
    let (mut vic, _) = Ws::hello(edge, &visitor_token, json!({})).await;
    vic.send(json!({ "type": "start" })).await;
    let id = vic.expect_type("started").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    vic.close().await;
    let backbone = system.backbone().await;
    let conversation: ConversationId = id.parse().unwrap();
    for i in 0..100 {
        backbone
            .log
            .append(
                &conversation,
                Participant::system("filler"),
                RecordBody::Message {
                    text: "x".repeat(3000),
                    client_id: format!("fill-{i}"),
                },
                None,
            )
            .await
            .unwrap();
    }
    // The agent comes online and is given it (all of it arrives as one
    // catch-up), and reads it.
    let account = system.add_agent(login, 1, None).await;
    let token = System::agent_token(edge, login).await;
    let mut agent = Ws::connect_small_buffer(edge).await;
    agent
        .send(json!({ "type": "hello", "token": token, "resume": {} }))
        .await;
    agent.expect_type("welcome").await;
    agent.expect_type("assigned").await;
    // The records come as the assignment's catch-up or, when the router
    // was quicker than the `welcome` (which then lists the conversation,
    // followed from its end), through `history`: ask for it as a client
    // would, and take whichever brings the last record.
    agent
        .send(json!({ "type": "history", "conversation_id": id, "limit": 100 }))
        .await;
    agent
        .expect("the last record", |f| {
            f["client_id"] == "fill-99"
                || (f["type"] == "history"
                    && f["items"]
                        .as_array()
                        .is_some_and(|items| items.iter().any(|i| i["client_id"] == "fill-99")))
        })
        .await;
    (id, agent, account)
}
