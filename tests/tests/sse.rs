//! The fallback transport: Server-Sent Events for server → client and
//! POSTs for client → server, with every guarantee of the WebSocket —
//! through any edge, with no sticky sessions. The stream is held by one
//! edge, the POSTs go to another, the stream's edge dies and the client
//! resumes on a third with no gap and no repeat, and a retried send is
//! stored once.

use std::collections::BTreeSet;

use serde_json::{json, Value};
use switchboard_tests::http;
use switchboard_tests::sse::{Delivered, Sse};
use switchboard_tests::system::System;
use switchboard_tests::ws::Ws;

/// The `seq`s of a conversation's records, in arrival order.
fn seqs(records: &[Value]) -> Vec<u64> {
    records.iter().filter_map(|r| r["seq"].as_u64()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_on_an_event_stream_chats_through_any_edge_and_resumes_elsewhere() {
    let mut system = System::with_workers().await;
    let a = system.edge().await;
    let b = system.edge().await;
    let c = system.edge().await;
    system.add_agent("ada", 3, None).await;
    let token = System::agent_token(c, "ada").await;
    let (mut agent, _) = Ws::hello(c, &token, json!({})).await;

    // The stream is on A, every POST goes to B.
    let (_, visitor_token) = System::visitor(a, "Vic").await;
    let (mut vic, welcome) = Sse::hello(a, b, &visitor_token, json!({})).await;
    assert_eq!(welcome["role"], "visitor");
    vic.send(json!({ "type": "start", "text": "hello over sse", "client_id": "s1" }))
        .await;
    let id = vic.expect_type("started").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    vic.expect("ack of s1", |f| {
        f["type"] == "ack" && f["client_id"] == "s1"
    })
    .await;
    agent.expect_type("assigned").await;
    vic.expect_event(&id, "assigned").await;

    // Both ways.
    agent.send_message(&id, "r1", "hi from the agent").await;
    let reply = vic
        .expect("the agent's reply", |f| {
            f["type"] == "message" && f["text"] == "hi from the agent"
        })
        .await;
    assert_eq!(reply["sender"]["role"], "agent");

    // A send posted twice, through two edges: one record, two acks with
    // the same seq.
    let send = json!({
        "type": "send", "conversation_id": id, "client_id": "dup-1", "text": "only once"
    });
    let first = vic
        .post_via(b, &visitor_token, std::slice::from_ref(&send))
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    let mut retried = send.clone();
    retried["retry"] = json!(true);
    let second = vic.post_via(c, &visitor_token, &[retried]).await;
    assert_eq!(second.status, 200, "{}", second.body);
    let ack1 = vic
        .expect("first ack of dup-1", |f| {
            f["type"] == "ack" && f["client_id"] == "dup-1"
        })
        .await;
    let ack2 = vic
        .expect("second ack of dup-1", |f| {
            f["type"] == "ack" && f["client_id"] == "dup-1"
        })
        .await;
    assert_eq!(ack1["seq"], ack2["seq"]);
    assert_eq!(ack1["id"], ack2["id"]);
    let stored = agent
        .expect("the message sent twice", |f| {
            f["type"] == "message" && f["client_id"] == "dup-1"
        })
        .await;
    assert_eq!(stored["seq"], ack1["seq"]);

    // Refusals: no token, another identity's token, an unknown stream.
    let anonymous = http::bearer(
        b,
        "POST",
        &format!("/api/v1/sse/{}", vic.connection),
        None,
        Some("[{\"type\":\"typing\"}]"),
    )
    .await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
    let (_, other_token) = System::visitor(a, "Eve").await;
    let hijack = vic
        .post_via(
            b,
            &other_token,
            &[json!({ "type": "send", "conversation_id": id, "client_id": "evil", "text": "x" })],
        )
        .await;
    assert_eq!(hijack.status, 403, "{}", hijack.body);
    assert_eq!(hijack.json()["error"], "forbidden");
    let (route, _) = vic.connection.split_once('.').unwrap();
    let unknown = http::bearer(
        b,
        "POST",
        &format!("/api/v1/sse/{route}.s_nosuchstream"),
        Some(&visitor_token),
        Some("[{\"type\":\"ping\"}]"),
    )
    .await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    let garbage = vic.post_via(b, &visitor_token, &[]).await;
    assert_eq!(garbage.status, 400, "{}", garbage.body);

    // The stream's edge dies; the agent writes meanwhile.
    let seen_before = seqs(&vic.records(&id));
    let last_seen = *seen_before.iter().max().unwrap();
    system.kill_edge(a).await;
    assert_eq!(vic.expect_end().await, Delivered::Ended);
    for n in 0..5 {
        agent
            .send_message(&id, &format!("m{n}"), &format!("while away {n}"))
            .await;
    }

    // A new stream on B, POSTs through C: resumed after what was seen.
    let (mut back, _) = Sse::hello(b, c, &visitor_token, json!({ id.clone(): last_seen })).await;
    let resumed = back.expect_type("resumed").await;
    assert_eq!(resumed["after"], last_seen);
    assert_eq!(resumed["complete"], true);
    for n in 0..5 {
        let text = format!("while away {n}");
        back.expect(&text.clone(), |f| {
            f["type"] == "message" && f["text"] == text
        })
        .await;
    }
    back.send(json!({ "type": "send", "conversation_id": id, "client_id": "after", "text": "back again" }))
        .await;
    let after = back
        .expect("ack of after", |f| {
            f["type"] == "ack" && f["client_id"] == "after"
        })
        .await;
    back.expect("the echo of after", |f| {
        f["type"] == "message" && f["client_id"] == "after"
    })
    .await;
    let caught_up = seqs(&back.records(&id));
    let mut all: Vec<u64> = seen_before.clone();
    all.extend(&caught_up);
    let unique: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "a record came twice: {all:?}");
    let last = after["seq"].as_u64().unwrap();
    assert_eq!(
        unique,
        (1..=last).collect::<BTreeSet<u64>>(),
        "a gap: {all:?}"
    );

    // A POST whose first frame is too large ends the connection (1009):
    // nothing of it was handled, and its answer says so.
    let oversized = json!({ "type": "send", "conversation_id": id, "client_id": "big", "text": "x".repeat(20_000) });
    let unread = json!({ "type": "send", "conversation_id": id, "client_id": "unread", "text": "never read" });
    let answer = back.post_via(c, &visitor_token, &[oversized, unread]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["accepted"], 0, "{}", answer.body);
    assert_eq!(back.expect_end().await, Delivered::Closed(1009));
}

/// A shutting-down edge ends its event streams with a `close` event
/// carrying 1012 within its drain (`edge.drain_delay`, then
/// `edge.drain_grace`), as it closes WebSockets: the HTTP server's
/// graceful shutdown is not held up by them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_shutting_down_closes_its_event_streams_with_1012() {
    let mut system = System::with_workers().await;
    let a = system
        .edge_with(&[
            ("SWITCHBOARD_EDGE__DRAIN_DELAY", "1s"),
            ("SWITCHBOARD_EDGE__DRAIN_GRACE", "2s"),
        ])
        .await;
    let b = system.edge().await;
    let (_, token) = System::visitor(a, "Vic").await;
    let (mut vic, _) = Sse::hello(a, b, &token, json!({})).await;
    // An idle ping keeps the session alive, and is answered with nothing.
    vic.send(json!({ "type": "ping" })).await;
    let began = std::time::Instant::now();
    assert!(
        system.node(a).terminate().await,
        "the edge did not exit cleanly"
    );
    assert_eq!(vic.expect_end().await, Delivered::Closed(1012));
    assert!(
        began.elapsed() < std::time::Duration::from_secs(8),
        "shutdown took {:?}",
        began.elapsed()
    );
}
