//! Delivery and read state, resume outcomes, and retried sends beyond the
//! stream's dedupe window.

use std::time::Duration;

use mongodb::bson::{doc, Document};
use serde_json::json;
use switchboard_tests::archive::until_archived;
use switchboard_tests::system::System;
use switchboard_tests::ws::Ws;

/// A visitor and an agent in one assigned conversation.
async fn pair(system: &mut System, edge: std::net::SocketAddr) -> (Ws, Ws, String, String) {
    system.add_agent("rio", 3, None).await;
    let agent_token = System::agent_token(edge, "rio").await;
    let (agent, _) = Ws::hello(edge, &agent_token, json!({})).await;
    let (_, token) = System::visitor(edge, "Ann").await;
    let (mut visitor, _) = Ws::hello(edge, &token, json!({})).await;
    visitor.send(json!({ "type": "start" })).await;
    let id = visitor.expect_type("started").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    visitor.expect_event(&id, "assigned").await;
    (visitor, agent, id, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senders_see_delivered_and_read_and_read_state_survives_reconnects() {
    let mut system = System::with_workers().await;
    let edge = system.edge().await;
    let other_edge = system.edge().await;
    let (mut visitor, mut agent, id, visitor_token) = pair(&mut system, edge).await;

    let first = visitor.send_message(&id, "q1", "first question").await;
    let second = visitor.send_message(&id, "q2", "second question").await;
    let second_seq = second["seq"].as_u64().unwrap();
    // Delivered: the agent's client received it.
    let delivered = visitor
        .expect("delivered to the agent", |f| {
            f["type"] == "delivered"
                && f["recipient"]["role"] == "agent"
                && f["seq"].as_u64() >= Some(second_seq)
        })
        .await;
    assert_eq!(delivered["conversation_id"], id.as_str());

    // Read: the agent read the first one only.
    agent
        .send(json!({ "type": "read", "conversation_id": id, "seq": first["seq"] }))
        .await;
    let read = visitor
        .expect("read by the agent", |f| f["type"] == "read")
        .await;
    assert_eq!(read["seq"], first["seq"]);
    assert_eq!(read["reader"]["role"], "agent");
    // Marks only move forward, and never past the end.
    agent
        .send(json!({ "type": "read", "conversation_id": id, "seq": 999 }))
        .await;
    agent.expect_error("bad_request").await;

    // After reconnecting (to another edge) both sides still know.
    let agent_token = System::agent_token(other_edge, "rio").await;
    let (_, welcome) = Ws::hello(other_edge, &agent_token, json!({})).await;
    let summary = &welcome["conversations"][0];
    assert_eq!(summary["read_seq"], first["seq"]);
    assert_eq!(
        summary["unread"], 1,
        "one visitor message after the read mark"
    );
    let (_, welcome) = Ws::hello(other_edge, &visitor_token, json!({})).await;
    assert_eq!(welcome["conversations"][0]["peer_read_seq"], first["seq"]);
    assert_eq!(welcome["conversations"][0]["read_seq"], 0);
}

/// Receipts are gathered for `edge.receipt_delay` (250 ms): a burst of
/// messages is covered by a few, never one per message; and a client never
/// reports records its own participant sent, which tell the others nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_cover_bursts_and_never_report_ones_own_messages() {
    let mut system = System::with_workers().await;
    let edge = system.edge().await;
    let (mut visitor, mut agent, id, _) = pair(&mut system, edge).await;

    let began = std::time::Instant::now();
    let mut first = None;
    let mut last = 0;
    for i in 0..20 {
        last = visitor.send_message(&id, &format!("b{i}"), "burst").await["seq"]
            .as_u64()
            .unwrap();
        first.get_or_insert(last);
    }
    let first = first.unwrap();
    let sending = began.elapsed();
    agent
        .expect("the burst's last message", |f| {
            f["seq"].as_u64() == Some(last)
        })
        .await;
    visitor
        .expect("a receipt covering the burst", |f| {
            f["type"] == "delivered" && f["seq"].as_u64() >= Some(last)
        })
        .await;
    let receipts = |ws: &Ws| -> Vec<serde_json::Value> {
        ws.seen()
            .iter()
            .filter(|f| f["type"] == "delivered")
            .cloned()
            .collect()
    };
    let gathered = receipts(&visitor);
    // At most one per delay while the burst was arriving, and the one after.
    let allowed = usize::try_from(sending.as_millis() / 250).unwrap() + 2;
    assert!(
        gathered.len() <= allowed,
        "{} receipts for 20 messages sent in {sending:?}: {gathered:#?}",
        gathered.len()
    );
    assert!(gathered.iter().all(|r| r["recipient"]["role"] == "agent"));

    // During the burst the visitor received only its own messages: nothing
    // to tell the agent about them (its receipts of earlier events stand).
    let answer = agent.send_message(&id, "a1", "hello").await["seq"]
        .as_u64()
        .unwrap();
    agent
        .expect("the visitor's receipt of the answer", |f| {
            f["type"] == "delivered" && f["seq"].as_u64() >= Some(answer)
        })
        .await;
    let reported = receipts(&agent);
    assert!(
        reported.iter().all(|r| r["recipient"]["role"] == "visitor"
            && !(first..answer).contains(&r["seq"].as_u64().unwrap())),
        "receipts of the visitor's own messages reached the agent: {reported:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_says_whether_it_was_complete() {
    let mut system = System::with_workers().await;
    let edge = system
        .edge_with(&[
            ("SWITCHBOARD_EDGE__RATE_PER_SEC", "1000"),
            ("SWITCHBOARD_EDGE__RATE_BURST", "1000"),
        ])
        .await;
    let (visitor, mut agent, id, token) = pair(&mut system, edge).await;
    let seen = visitor.records(&id);
    let last_seen = seen.last().unwrap()["seq"].as_u64().unwrap();
    visitor.close().await;
    let mut last = 0;
    for i in 0..600 {
        last = agent
            .send_message(&id, &format!("a{i}"), "while you were away")
            .await["seq"]
            .as_u64()
            .unwrap();
    }

    // Within reach: everything after the resume point, then live.
    let (mut back, _) = Ws::hello(edge, &token, json!({ id.clone(): last - 10 })).await;
    let resumed = back.expect_type("resumed").await;
    assert_eq!(resumed["complete"], true);
    assert_eq!(resumed["replayed"], 10);
    back.expect("the last message", |f| f["seq"].as_u64() == Some(last))
        .await;
    let seqs: Vec<u64> = back
        .records(&id)
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (last - 9..=last).collect::<Vec<_>>());

    // Away for longer than a catch-up replays: told so, and where to page from.
    let (mut back, _) = Ws::hello(edge, &token, json!({ id.clone(): last_seen })).await;
    let resumed = back.expect_type("resumed").await;
    assert_eq!(resumed["complete"], false);
    let first = resumed["first_seq"].as_u64().unwrap();
    assert!(first > last_seen + 1);
    back.expect("the last message", |f| f["seq"].as_u64() == Some(last))
        .await;
    let seqs: Vec<u64> = back
        .records(&id)
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (first..=last).collect::<Vec<_>>());
    back.send(
        json!({ "type": "history", "conversation_id": id, "before_seq": first, "limit": 100 }),
    )
    .await;
    let page = back.expect_type("history").await;
    assert_eq!(
        page["items"].as_array().unwrap().last().unwrap()["seq"],
        first - 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_the_dedupe_window_returns_the_original() {
    let mut system = System::start_env(&[("SWITCHBOARD_NATS__DUPLICATE_WINDOW", "1s")]).await;
    system.router().await;
    system.archiver().await;
    let edge = system.edge().await;
    let (mut visitor, mut agent, id, _) = pair(&mut system, edge).await;

    let original = visitor.send_message(&id, "once", "only once please").await;
    // Inside the window, a plain resend is recognised by JetStream itself.
    let again = visitor.send_message(&id, "once", "only once please").await;
    assert_eq!(again["id"], original["id"]);
    assert_eq!(again["seq"], original["seq"]);

    // The window is a matter of time: let it pass.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    visitor
        .send(json!({
            "type": "send", "conversation_id": id, "client_id": "once",
            "text": "only once please", "retry": true,
        }))
        .await;
    let late = visitor
        .expect("ack of the late retry", |f| {
            f["type"] == "ack" && f["client_id"] == "once"
        })
        .await;
    assert_eq!(late["id"], original["id"]);
    assert_eq!(late["seq"], original["seq"]);

    // The agent saw it once, and the archive holds it once.
    let marker = agent.send_message(&id, "after", "got it").await;
    agent
        .expect("own marker", |f| {
            f["type"] == "message" && f["seq"] == marker["seq"]
        })
        .await;
    let copies = agent
        .records(&id)
        .iter()
        .filter(|r| r["client_id"] == "once")
        .count();
    assert_eq!(copies, 1);
    // Every record up to the marker archived (seqs are dense), the retried
    // message among them once.
    let db = system.archive().await;
    until_archived(&db, &id, marker["seq"].as_u64().unwrap()).await;
    let filter = doc! { "conversation_id": &id, "client_id": "once" };
    let messages = db.collection::<Document>("messages");
    assert_eq!(messages.count_documents(filter).await.unwrap(), 1);
}

/// A client that says `hello` without `resume` is told each open
/// conversation's `last_seq` in `welcome` and gets, live, every record
/// after it: one stored while `welcome` was being written (here the agent
/// has many unread messages to count, and the visitor keeps writing) is
/// not skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_stored_while_welcome_is_written_are_delivered() {
    // The visitor writes as fast as it is acknowledged.
    let mut system = System::start_env(&[
        ("SWITCHBOARD_EDGE__RATE_PER_SEC", "100000"),
        ("SWITCHBOARD_EDGE__RATE_BURST", "100000"),
    ])
    .await;
    system.router().await;
    let edge = system.edge().await;
    let (mut visitor, agent, id, _) = pair(&mut system, edge).await;
    agent.close().await;
    for i in 0..100 {
        visitor
            .send_message(&id, &format!("unread-{i}"), "are you there?")
            .await;
    }
    let writing = tokio::sync::watch::channel(true);
    let (keep_writing, writing_rx) = writing;
    let writer = {
        let id = id.clone();
        tokio::spawn(async move {
            let mut n = 0;
            while *writing_rx.borrow() {
                visitor
                    .send_message(&id, &format!("live-{n}"), "hello?")
                    .await;
                n += 1;
            }
            n
        })
    };
    let agent_token = System::agent_token(edge, "rio").await;
    for attempt in 0..12 {
        let (mut agent, welcome) = Ws::hello(edge, &agent_token, json!({})).await;
        let listed = welcome["conversations"]
            .as_array()
            .and_then(|all| all.iter().find(|c| c["conversation_id"] == id.as_str()))
            .and_then(|c| c["last_seq"].as_u64())
            .unwrap_or_else(|| panic!("{id} not in {welcome}"));
        agent
            .expect("ten more records", |f| {
                f["conversation_id"] == id.as_str() && f["seq"].as_u64() >= Some(listed + 10)
            })
            .await;
        let seqs: Vec<u64> = agent
            .records(&id)
            .iter()
            .filter_map(|r| r["seq"].as_u64())
            .collect();
        let want: Vec<u64> = (listed + 1..=listed + seqs.len() as u64).collect();
        assert_eq!(
            seqs, want,
            "attempt {attempt}: records after welcome's last_seq {listed}"
        );
        agent.close().await;
    }
    keep_writing.send_replace(false);
    assert!(writer.await.unwrap() > 0);
}
