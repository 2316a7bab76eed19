//! SIGTERM stops every component gracefully: an edge closes its WebSockets
//! with 1012 (clients reconnect elsewhere at once) and exits cleanly; the
//! router and archiver exit cleanly too.

use serde_json::json;
use switchboard_tests::system::System;
use switchboard_tests::ws::Ws;

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
