//! A client that stops reading does not stall its partner, other
//! conversations or the edge: its outbound queue is bounded and, once over
//! it, the client is closed with 1008.

use serde_json::json;
use switchboard_tests::system::System;
use switchboard_tests::ws::Ws;

/// Messages the agent sends before reading the answers.
const BURST: usize = 20;
/// Bursts: 1,500 messages of 3,000 bytes in all, far more than the stuck
/// client's socket buffers and queue hold.
const BATCHES: usize = 75;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_and_nobody_else_waits() {
    let mut system = System::with_workers().await;
    let edge = system
        .edge_with(&[
            ("SWITCHBOARD_EDGE__OUTBOUND_QUEUE", "64"),
            ("SWITCHBOARD_EDGE__RATE_PER_SEC", "100000"),
            ("SWITCHBOARD_EDGE__RATE_BURST", "100000"),
        ])
        .await;
    system.add_agent("flo", 5, None).await;
    let agent_token = System::agent_token(edge, "flo").await;
    let (mut agent, _) = Ws::hello(edge, &agent_token, json!({})).await;

    let start = |name: &'static str| async move {
        let (_, token) = System::visitor(edge, name).await;
        let (mut ws, _) = Ws::hello(edge, &token, json!({})).await;
        ws.send(json!({ "type": "start" })).await;
        let id = ws.expect_type("started").await["conversation_id"]
            .as_str()
            .unwrap()
            .to_owned();
        ws.expect_event(&id, "assigned").await;
        (ws, id)
    };
    let (mut control, control_id) = start("Control").await;
    // The stuck visitor has a tiny socket buffer, like a phone on a bad link.
    let (_, token) = System::visitor(edge, "Stuck").await;
    let mut stuck = Ws::connect_small_buffer(edge).await;
    stuck.send(json!({ "type": "hello", "token": token })).await;
    stuck.expect_type("welcome").await;
    stuck.send(json!({ "type": "start" })).await;
    let stuck_id = stuck.expect_type("started").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    stuck.expect_event(&stuck_id, "assigned").await;

    // The stuck visitor stops reading; the agent floods its conversation
    // while the control conversation goes on, round trip after round trip.
    // (The agent reads its answers only after each burst: a burst must fit
    // its own queue of 64 — an ack and an echo per message, and receipts.)
    let text = "x".repeat(3000);
    let mut round_trips = 0;
    for batch in 0..BATCHES {
        for i in 0..BURST {
            agent
                .send(json!({
                    "type": "send", "conversation_id": stuck_id,
                    "client_id": format!("flood-{batch}-{i}"), "text": text,
                }))
                .await;
        }
        for i in 0..BURST {
            let client_id = format!("flood-{batch}-{i}");
            agent
                .expect(&client_id, |f| {
                    f["type"] == "ack" && f["client_id"] == client_id.as_str()
                })
                .await;
        }
        let ack = control
            .send_message(&control_id, &format!("c-{batch}"), "still here?")
            .await;
        agent
            .expect("the control message", |f| {
                f["type"] == "message" && f["id"] == ack["id"]
            })
            .await;
        round_trips += 1;
    }
    assert_eq!(round_trips, BATCHES);

    // When the stuck client reads again (within the edge's grace period),
    // it finds it was dropped.
    let code = stuck.expect_close().await;
    assert_eq!(code, 1008, "slow consumer close code");
    // The edge is healthy and the control conversation still works.
    let ack = control.send_message(&control_id, "after", "all good").await;
    assert!(ack["seq"].as_u64().unwrap() > 0);
}
