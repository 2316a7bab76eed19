//! A visitor and an agent on two different edge processes chat both ways;
//! both see every record once, in the same `seq` order; the archive holds
//! each record exactly once and a correct conversation summary.

use mongodb::bson::{doc, Document};
use serde_json::{json, Value};
use switchboard_tests::archive::until_archived;
use switchboard_tests::eventually;
use switchboard_tests::system::System;
use switchboard_tests::ws::Ws;

fn seqs(records: &[Value]) -> Vec<u64> {
    records.iter().map(|r| r["seq"].as_u64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visitor_and_agent_on_two_edges_chat_both_ways() {
    let mut system = System::with_workers().await;
    let edge_a = system.edge().await;
    let edge_b = system.edge().await;
    system.add_agent("dana", 3, None).await;

    let agent_token = System::agent_token(edge_b, "dana").await;
    let (mut agent, welcome) = Ws::hello(edge_b, &agent_token, json!({})).await;
    assert_eq!(welcome["role"], "agent");
    assert_eq!(welcome["conversations"], json!([]));

    let (visitor_id, visitor_token) = System::visitor(edge_a, "Ann").await;
    let (mut visitor, welcome) = Ws::hello(edge_a, &visitor_token, json!({})).await;
    assert_eq!(welcome["role"], "visitor");
    assert_eq!(welcome["id"], visitor_id.as_str());

    visitor
        .send(json!({ "type": "start", "text": "Hello, my order is late", "client_id": "v-0" }))
        .await;
    let started = visitor.expect_type("started").await;
    assert_eq!(started["created"], true);
    let conversation = started["conversation_id"].as_str().unwrap().to_owned();
    let first_ack = visitor
        .expect("ack of v-0", |f| {
            f["type"] == "ack" && f["client_id"] == "v-0"
        })
        .await;

    let assigned = agent.expect_type("assigned").await;
    assert_eq!(assigned["conversation_id"], conversation.as_str());
    assert_eq!(assigned["visitor"]["id"], visitor_id.as_str());
    visitor.expect_event(&conversation, "assigned").await;

    // Both directions, interleaved, each acknowledged with its seq.
    let mut acks = vec![("v-0".to_owned(), first_ack)];
    for i in 1..=5 {
        let id = format!("v-{i}");
        let ack = visitor
            .send_message(&conversation, &id, &format!("visitor says {i}"))
            .await;
        acks.push((id, ack));
        let id = format!("a-{i}");
        let ack = agent
            .send_message(&conversation, &id, &format!("agent answers {i}"))
            .await;
        acks.push((id, ack));
    }
    let last_seq = acks
        .iter()
        .map(|(_, ack)| ack["seq"].as_u64().unwrap())
        .max()
        .unwrap();

    // Each side sees everything up to the last acknowledged message.
    for client in [&mut visitor, &mut agent] {
        client
            .expect("last message", |f| {
                f["type"] == "message" && f["seq"].as_u64() == Some(last_seq)
            })
            .await;
    }
    let seen_by_visitor = visitor.records(&conversation);
    let seen_by_agent = agent.records(&conversation);
    let expected: Vec<u64> = (1..=last_seq).collect();
    assert_eq!(
        seqs(&seen_by_visitor),
        expected,
        "visitor saw a gap or a repeat"
    );
    assert_eq!(
        seqs(&seen_by_agent),
        expected,
        "agent saw a gap or a repeat"
    );
    // The same records, but for the assignment's audit trail, which is
    // for agents only.
    let as_visitor_sees = |records: &[Value]| -> Vec<Value> {
        records
            .iter()
            .cloned()
            .map(|mut r| {
                if r["event"] == "assigned" {
                    r["reason"] = Value::Null;
                }
                r
            })
            .collect()
    };
    assert_eq!(
        seen_by_visitor,
        as_visitor_sees(&seen_by_agent),
        "the two sides disagree"
    );
    assert!(
        seen_by_agent
            .iter()
            .any(|r| r["event"] == "assigned" && r["reason"]["strategy"].is_string()),
        "the agent sees why it was assigned"
    );

    // Every ack names the message everyone received at that seq, and the
    // sender identity comes from the token.
    for (client_id, ack) in &acks {
        let message = seen_by_agent
            .iter()
            .find(|m| m["type"] == "message" && m["client_id"] == client_id.as_str())
            .unwrap_or_else(|| panic!("{client_id} never delivered"));
        assert_eq!(message["seq"], ack["seq"]);
        assert_eq!(message["id"], ack["id"]);
        let role = if client_id.starts_with('v') {
            "visitor"
        } else {
            "agent"
        };
        assert_eq!(message["sender"]["role"], role);
    }
    let texts: Vec<&str> = seen_by_agent
        .iter()
        .filter(|m| m["type"] == "message")
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts[0], "Hello, my order is late");
    assert_eq!(texts.len(), 11);

    agent
        .send(json!({ "type": "close", "conversation_id": conversation }))
        .await;
    let closed = visitor.expect_event(&conversation, "closed").await;
    assert_eq!(closed["by"]["role"], "agent");
    agent.expect_event(&conversation, "closed").await;
    let closed_seq = closed["seq"].as_u64().unwrap();

    // The archive: every record once, in order, and the summary.
    let archive = system.archive().await;
    let messages = archive.collection::<Document>("messages");
    let conversation_filter = doc! { "conversation_id": &conversation };
    until_archived(&archive, &conversation, closed_seq).await;
    let mut archived = Vec::new();
    let mut cursor = messages
        .find(conversation_filter.clone())
        .sort(doc! { "seq": 1 })
        .await
        .unwrap();
    while cursor.advance().await.unwrap() {
        archived.push(cursor.deserialize_current().unwrap());
    }
    let archived_seqs: Vec<u64> = archived
        .iter()
        .map(|d| d.get_i64("seq").unwrap() as u64)
        .collect();
    assert_eq!(archived_seqs, (1..=closed_seq).collect::<Vec<_>>());
    for record in seen_by_agent.iter().filter(|r| r["type"] == "message") {
        let doc = archived
            .iter()
            .find(|d| d.get_str("_id").ok() == record["id"].as_str())
            .unwrap_or_else(|| panic!("message {} not archived", record["id"]));
        assert_eq!(
            doc.get_str("text").unwrap(),
            record["text"].as_str().unwrap()
        );
    }

    let summaries = archive.collection::<Document>("conversations");
    let summary = eventually("conversation summary closed", || {
        let summaries = summaries.clone();
        let conversation = conversation.clone();
        async move {
            let summary = summaries
                .find_one(doc! { "_id": &conversation })
                .await
                .ok()??;
            (summary.get_str("status").ok() == Some("closed")).then_some(summary)
        }
    })
    .await;
    let time = |field: &str| {
        summary
            .get_datetime(field)
            .unwrap_or_else(|_| panic!("summary lacks {field}: {summary}"))
            .timestamp_millis()
    };
    let (created, assigned, first_response, closed) = (
        time("created_at"),
        time("assigned_at"),
        time("first_response_at"),
        time("closed_at"),
    );
    assert!(created <= assigned && assigned <= first_response && first_response <= closed);
    assert_eq!(summary.get_i64("message_count").unwrap(), 11);
    assert_eq!(summary.get_i64("visitor_message_count").unwrap(), 6);
    assert_eq!(summary.get_i64("agent_message_count").unwrap(), 5);
    assert_eq!(
        summary
            .get_document("visitor")
            .unwrap()
            .get_str("id")
            .unwrap(),
        visitor_id
    );
    assert_eq!(summary.get_i64("archived_seq").unwrap() as u64, closed_seq);
}
