//! The agent's inbox on the server side: taking a waiting conversation
//! from the queue, and conversations closing by themselves when nobody
//! writes (`router.idle_close`), which frees the agent's slot.

use serde_json::json;
use switchboard_tests::system::System;
use switchboard_tests::ws::Ws;

/// Ann is busy (her one slot taken) when Vic's conversation waits; Bob
/// takes it from the queue although the strategy would wait for Ann or
/// anyone; a conversation that is not waiting cannot be taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_takes_a_waiting_conversation_from_the_queue() {
    let mut system = System::with_workers().await;
    let edge = system.edge().await;
    system.add_agent("bob", 2, Some("billing")).await;
    let bob_token = System::agent_token(edge, "bob").await;
    let (mut bob, _) = Ws::hello(edge, &bob_token, json!({})).await;
    bob.send(json!({ "type": "status", "status": "away" }))
        .await;
    let (_, vic_token) = System::visitor(edge, "Vic").await;
    let (mut vic, _) = Ws::hello(edge, &vic_token, json!({})).await;
    vic.send(json!({ "type": "start", "text": "anyone?", "client_id": "s1" }))
        .await;
    let id = vic.expect_type("started").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Bob is away: it waits, and he sees it in the queue.
    bob.expect("the queue with vic", |f| {
        f["type"] == "queue"
            && f["entries"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["conversation_id"] == id.as_str()))
    })
    .await;
    bob.send(json!({ "type": "take", "conversation_id": id }))
        .await;
    bob.send(json!({ "type": "status", "status": "online" }))
        .await;
    let assigned = bob.expect_type("assigned").await;
    assert_eq!(assigned["conversation_id"], id.as_str());
    let event = vic.expect_event(&id, "assigned").await;
    assert_eq!(event["agent"]["name"], "Agent bob");
    bob.send(json!({ "type": "take", "conversation_id": id }))
        .await;
    let refused = bob.expect_error("not_found").await;
    assert_eq!(refused["ref"], "take");
    vic.send(json!({ "type": "take", "conversation_id": id }))
        .await;
    vic.expect_error("forbidden").await;
}

/// With `router.idle_close`, a conversation nobody writes in closes by
/// itself (`closed` by `idle_close`) and frees the agent's slot for the
/// next visitor; one that keeps being written in does not close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_conversations_close_by_themselves_and_free_the_slot() {
    let mut system = System::start_env(&[("SWITCHBOARD_ROUTER__IDLE_CLOSE", "3s")]).await;
    system.router().await;
    let edge = system.edge().await;
    system.add_agent("ann", 1, None).await;
    let token = System::agent_token(edge, "ann").await;
    let (mut ann, _) = Ws::hello(edge, &token, json!({})).await;
    let (_, vic_token) = System::visitor(edge, "Vic").await;
    let (mut vic, _) = Ws::hello(edge, &vic_token, json!({})).await;
    vic.send(json!({ "type": "start", "text": "hello", "client_id": "s1" }))
        .await;
    let id = vic.expect_type("started").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    ann.expect_type("assigned").await;
    // Talk for longer than the idle time, never pausing that long.
    let began = std::time::Instant::now();
    let mut n = 0;
    while began.elapsed() < std::time::Duration::from_secs(5) {
        ann.send_message(&id, &format!("a{n}"), "still here").await;
        n += 1;
        // Paced by the acks' round trips and a short pause, well below 3 s.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert!(
        !vic.seen.iter().any(|f| f["event"] == "closed"),
        "closed while the conversation was active"
    );
    // Then silence: it closes by itself.
    let closed = vic.expect_event(&id, "closed").await;
    assert_eq!(closed["by"]["role"], "system");
    assert_eq!(closed["by"]["id"], "idle_close");
    ann.expect_event(&id, "closed").await;
    // Ann's one slot is free: the next visitor gets her.
    let (_, olga_token) = System::visitor(edge, "Olga").await;
    let (mut olga, _) = Ws::hello(edge, &olga_token, json!({})).await;
    olga.send(json!({ "type": "start", "text": "hi", "client_id": "o1" }))
        .await;
    let other = olga.expect_type("started").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let given = olga.expect_event(&other, "assigned").await;
    assert_eq!(given["agent"]["name"], "Agent ann");
}
