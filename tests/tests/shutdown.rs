//! SIGTERM stops every component gracefully: an edge first answers
//! `/readyz` with 503 while still serving (a load balancer stops sending it
//! clients), then closes its WebSockets with 1012 (clients reconnect
//! elsewhere at once) a few at a time, and exits cleanly; the router and
//! archiver exit cleanly too.

use std::time::Duration;

use serde_json::json;
use switchboard_tests::system::System;
use switchboard_tests::ws::Ws;
use switchboard_tests::{eventually, http};
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_clients_with_1012_and_exits_cleanly() {
    let mut system = System::with_workers().await;
    let edge = system.edge().await;
    let other_edge = system.edge().await;
    let (_, token) = System::visitor(edge, "Ann").await;
    let (mut visitor, _) = Ws::hello(edge, &token, json!({})).await;
    visitor
        .send(json!({ "type": "start", "text": "hi", "client_id": "k1" }))
        .await;
    let started = visitor.expect_type("started").await;
    let conversation = started["conversation_id"].as_str().unwrap().to_owned();
    visitor.expect_type("ack").await;

    let node = system.node(edge);
    let (closed, exited) = tokio::join!(visitor.expect_close(), node.terminate());
    assert_eq!(closed, 1012);
    assert!(exited, "edge did not exit cleanly on SIGTERM");

    // The client reconnects to another edge and finds its conversation.
    let (_, welcome) = Ws::hello(other_edge, &token, json!({ conversation.clone(): 1 })).await;
    assert_eq!(
        welcome["conversations"][0]["conversation_id"],
        conversation.as_str()
    );

    for node in system.nodes.iter_mut().filter(|n| n.kind != "edge") {
        assert!(node.terminate().await, "{} did not exit cleanly", node.kind);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_edge_says_so_then_closes_its_clients_a_few_at_a_time() {
    let mut system = System::with_workers().await;
    let edge = system
        .edge_with(&[
            ("SWITCHBOARD_EDGE__DRAIN_DELAY", "1s"),
            ("SWITCHBOARD_EDGE__DRAIN_GRACE", "2s"),
        ])
        .await;
    let mut clients = Vec::new();
    for n in 0..12 {
        let (_, token) = System::visitor(edge, &format!("V{n}")).await;
        let (mut ws, _) = Ws::hello(edge, &token, json!({})).await;
        ws.send(json!({ "type": "start" })).await;
        let id = ws.expect_type("started").await["conversation_id"]
            .as_str()
            .unwrap()
            .to_owned();
        clients.push((ws, id));
    }
    assert_eq!(http::get(edge, "/readyz").await.status, 200);

    let node = system.node(edge);
    let terminated = Instant::now();
    node.signal_terminate();
    // Not ready, yet still serving its clients.
    eventually("the draining edge says it is not ready", || async move {
        (http::get(edge, "/readyz").await.status == 503).then_some(())
    })
    .await;
    let (ws, id) = &mut clients[0];
    let ack = ws.send_message(id, "while-draining", "still there?").await;
    assert!(ack["seq"].as_u64().is_some());
    // Then every client is told to reconnect elsewhere, not all at once.
    // Each close is timed as it comes, all connections watched at once.
    let closes = futures::future::join_all(clients.iter_mut().map(|(ws, _)| async move {
        let code = ws.expect_close().await;
        (code, terminated.elapsed())
    }))
    .await;
    assert!(
        closes.iter().all(|(code, _)| *code == 1012),
        "not every client was told to reconnect elsewhere: {closes:?}"
    );
    let closed_at: Vec<Duration> = closes.iter().map(|(_, at)| *at).collect();
    let first = closed_at.iter().min().copied().unwrap();
    let last = closed_at.iter().max().copied().unwrap();
    assert!(
        first >= Duration::from_secs(1),
        "a close before the drain delay: {closed_at:?}"
    );
    assert!(
        last - first >= Duration::from_secs(1),
        "the closes came at once, not over the grace period: {closed_at:?}"
    );
    assert!(
        system.node(edge).wait_exit().await,
        "the edge did not exit cleanly"
    );
}
