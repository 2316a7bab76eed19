//! With no agent online, visitors are queued and told their place; an agent
//! coming online takes them oldest first up to capacity, and the next one
//! when a slot frees.

use serde_json::json;
use switchboard_bus::kv;
use switchboard_protocol::payloads::AgentLoad;
use switchboard_tests::system::System;
use switchboard_tests::ws::Ws;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_visitors_are_assigned_in_order_within_capacity() {
    let mut system = System::with_workers().await;
    let edge = system.edge().await;
    let agent_account = system.add_agent("sam", 2, None).await;

    let mut visitors = Vec::new();
    let mut conversations = Vec::new();
    for (i, name) in ["First", "Second", "Third"].iter().enumerate() {
        let (_, token) = System::visitor(edge, name).await;
        let (mut ws, _) = Ws::hello(edge, &token, json!({})).await;
        ws.send(json!({ "type": "start" })).await;
        let started = ws.expect_type("started").await;
        let conversation = started["conversation_id"].as_str().unwrap().to_owned();
        let queued = ws.expect_event(&conversation, "queued").await;
        assert_eq!(
            queued["position"],
            i as u64 + 1,
            "{name} got the wrong place"
        );
        visitors.push(ws);
        conversations.push(conversation);
    }

    let token = System::agent_token(edge, "sam").await;
    let (mut agent, _) = Ws::hello(edge, &token, json!({})).await;
    // The two oldest are taken in one routing pass, the third waits. A
    // pass plans oldest first and writes its assignments concurrently, so
    // the two `assigned` frames may arrive in either order.
    let first = agent.expect_type("assigned").await;
    let second = agent.expect_type("assigned").await;
    let mut taken = [
        first["conversation_id"].as_str().unwrap_or_default(),
        second["conversation_id"].as_str().unwrap_or_default(),
    ];
    taken.sort_unstable();
    let mut oldest = [conversations[0].as_str(), conversations[1].as_str()];
    oldest.sort_unstable();
    assert_eq!(taken, oldest, "the agent took other than the two oldest");
    visitors[0]
        .expect_event(&conversations[0], "assigned")
        .await;
    visitors[1]
        .expect_event(&conversations[1], "assigned")
        .await;
    // The third moves up to first place, and waits.
    let moved = visitors[2]
        .expect("third visitor moves to place 1", |f| {
            f["event"] == "queued" && f["position"] == 1
        })
        .await;
    assert_eq!(moved["conversation_id"], conversations[2].as_str());

    let backbone = system.backbone().await;
    let load = kv::get::<AgentLoad>(&backbone.load, agent_account.id.as_str())
        .await
        .unwrap()
        .unwrap()
        .value;
    assert_eq!(load.conversations.len(), 2, "agent over or under capacity");
    assert!(!agent
        .seen
        .iter()
        .any(|f| f["type"] == "assigned" && f["conversation_id"] == conversations[2].as_str()));

    agent
        .send(json!({ "type": "close", "conversation_id": conversations[0] }))
        .await;
    visitors[0].expect_event(&conversations[0], "closed").await;
    let third = agent.expect_type("assigned").await;
    assert_eq!(third["conversation_id"], conversations[2].as_str());
    let event = visitors[2]
        .expect_event(&conversations[2], "assigned")
        .await;
    assert_eq!(event["agent"]["id"], agent_account.id.as_str());

    let load = kv::get::<AgentLoad>(&backbone.load, agent_account.id.as_str())
        .await
        .unwrap()
        .unwrap()
        .value;
    let mut held: Vec<_> = load
        .conversations
        .iter()
        .map(|e| e.conversation_id.to_string())
        .collect();
    held.sort();
    let mut expected = vec![conversations[1].clone(), conversations[2].clone()];
    expected.sort();
    assert_eq!(held, expected);
}
