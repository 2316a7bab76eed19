//! Finished conversations leave KV. Once a conversation is closed, archived
//! and past the reopen window, its routing entry, the visitor's pointer to
//! it and its read marks are gone from the buckets (delete markers too),
//! and the archive answers for it: the visitor and the agent still read its
//! history and may mark it read, anyone else is refused, and the visitor's
//! next `start` opens a new conversation. A conversation reopened within the
//! window stays.

use futures::TryStreamExt;
use serde_json::{json, Value};
use switchboard_bus::Backbone;
use switchboard_tests::eventually;
use switchboard_tests::system::System;
use switchboard_tests::ws::Ws;

async fn agent(edge: std::net::SocketAddr, login: &str) -> Ws {
    let token = System::agent_token(edge, login).await;
    Ws::hello(edge, &token, json!({})).await.0
}

/// Messages a bucket's stream holds under `subject` (a key, or a wildcard).
async fn held(backbone: &Backbone, bucket: &str, subject: &str) -> u64 {
    let stream = backbone
        .js
        .get_stream(format!("KV_{bucket}"))
        .await
        .unwrap_or_else(|e| panic!("bucket {bucket}: {e}"));
    let subjects: Vec<(String, usize)> = stream
        .info_with_subjects(subject)
        .await
        .unwrap_or_else(|e| panic!("bucket subjects: {e}"))
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("bucket subjects: {e}"));
    subjects.iter().map(|(_, n)| *n as u64).sum()
}

/// Sends a frame and returns the answer of type `answer`, or the error.
async fn ask(ws: &mut Ws, frame: Value, answer: &str) -> Value {
    let kind = frame["type"].clone();
    ws.send(frame).await;
    ws.expect(&format!("{answer} or error"), |f| {
        f["type"] == answer || (f["type"] == "error" && f["ref"] == kind)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_conversation_leaves_kv_and_the_archive_answers_for_it() {
    let mut system = System::start_env(&[
        ("SWITCHBOARD_EDGE__REOPEN_WINDOW", "3s"),
        ("SWITCHBOARD_ARCHIVER__KEEP_CLOSED", "0s"),
        ("SWITCHBOARD_ARCHIVER__SWEEP_INTERVAL", "300ms"),
    ])
    .await;
    system.router().await;
    system.archiver().await;
    let edge = system.edge().await;
    let backbone = system.backbone().await;
    system.add_agent("ann", 2, None).await;
    let mut ann = agent(edge, "ann").await;

    // A conversation closed first, and reopened within the window: it
    // stays, though its close is older than that of the one that leaves.
    let (_, olga_token) = System::visitor(edge, "Olga").await;
    let (mut olga, _) = Ws::hello(edge, &olga_token, json!({})).await;
    olga.send(json!({ "type": "start" })).await;
    let kept = olga.expect_type("started").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    olga.expect_event(&kept, "assigned").await;
    olga.send(json!({ "type": "close", "conversation_id": kept }))
        .await;
    olga.expect_event(&kept, "closed").await;
    olga.send(json!({ "type": "start" })).await;
    olga.expect_event(&kept, "reopened").await;

    let (visitor_id, vic_token) = System::visitor(edge, "Vic").await;
    let (mut vic, _) = Ws::hello(edge, &vic_token, json!({})).await;
    vic.send(json!({ "type": "start" })).await;
    let id = vic.expect_type("started").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    vic.expect_event(&id, "assigned").await;
    ann.expect("vic's conversation assigned", |f| {
        f["type"] == "assigned" && f["conversation_id"] == id.as_str()
    })
    .await;
    let question = vic.send_message(&id, "q1", "where is my parcel?").await;
    let reply = ann.send_message(&id, "a1", "on its way").await;
    ann.send(json!({ "type": "read", "conversation_id": id, "seq": question["seq"] }))
        .await;
    ann.send(json!({ "type": "close", "conversation_id": id }))
        .await;
    vic.expect_event(&id, "closed").await;

    eventually("the finished conversation leaves kv", || async {
        let entry = backbone.conversations.entry(id.as_str()).await.ok()?;
        entry.is_none().then_some(())
    })
    .await;
    // Nothing of it is left in the buckets: no delete marker, no read
    // mark, no pointer to it.
    eventually("its delete markers and read marks are purged", || async {
        let left = held(
            &backbone,
            "conversations",
            &format!("$KV.conversations.{id}"),
        )
        .await
            + held(&backbone, "reads", &format!("$KV.reads.{id}.>")).await;
        (left == 0).then_some(())
    })
    .await;
    assert!(
        backbone
            .visitors
            .entry(visitor_id.as_str())
            .await
            .unwrap()
            .is_none(),
        "the visitor's pointer to a finished conversation is still there"
    );
    assert_eq!(
        held(&backbone, "visitors", &format!("$KV.visitors.{visitor_id}")).await,
        0,
        "the visitor's pointer left a delete marker"
    );
    assert!(
        backbone
            .conversations
            .entry(kept.as_str())
            .await
            .unwrap()
            .is_some(),
        "a conversation reopened within the window left kv"
    );

    // The archive answers for it: history for the visitor and the agent.
    for ws in [&mut vic, &mut ann] {
        let history = ask(
            ws,
            json!({ "type": "history", "conversation_id": id, "limit": 50 }),
            "history",
        )
        .await;
        assert_eq!(history["type"], "history", "history refused: {history}");
        let ids: Vec<&Value> = history["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| &i["id"])
            .collect();
        assert!(
            ids.contains(&&question["id"]) && ids.contains(&&reply["id"]),
            "{history}"
        );
    }
    let read = json!({ "type": "read", "conversation_id": id, "seq": reply["seq"] });
    vic.send(read.clone()).await;
    // Someone else is refused.
    system.add_agent("bob", 1, None).await;
    let mut bob = agent(edge, "bob").await;
    let refused = ask(
        &mut bob,
        json!({ "type": "history", "conversation_id": id }),
        "history",
    )
    .await;
    assert_eq!(refused["code"], "forbidden", "{refused}");
    let refused = ask(
        &mut olga,
        json!({ "type": "history", "conversation_id": id }),
        "history",
    )
    .await;
    assert_eq!(refused["code"], "forbidden", "{refused}");
    // Vic's read mark was accepted and stored nothing.
    let marker = ask(
        &mut vic,
        json!({ "type": "history", "conversation_id": id, "limit": 1 }),
        "history",
    )
    .await;
    assert_eq!(marker["type"], "history");
    assert!(
        !vic.seen
            .iter()
            .any(|f| f["type"] == "error" && f["ref"] == "read"),
        "a read mark on a finished conversation was refused"
    );
    assert_eq!(
        held(&backbone, "reads", &format!("$KV.reads.{id}.>")).await,
        0
    );

    // The visitor's next start opens a new conversation.
    vic.send(json!({ "type": "start" })).await;
    let next = vic
        .expect("a new conversation", |f| {
            f["type"] == "started" && f["conversation_id"] != id.as_str()
        })
        .await;
    assert_eq!(next["created"], true, "{next}");
}
