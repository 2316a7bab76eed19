//! `history` pages backwards with no gap, from the stream and, for what the
//! stream no longer holds, from the archive; a conversation whose records
//! expired from the stream continues its `seq`, never reusing one.

use serde_json::{json, Value};
use switchboard_tests::archive::until_archived;
use switchboard_tests::eventually;
use switchboard_tests::system::System;
use switchboard_tests::ws::Ws;

/// A visitor with an open conversation assigned to an agent.
/// `(visitor, agent, conversation id, visitor token)`.
async fn conversation(system: &mut System, edge: std::net::SocketAddr) -> (Ws, Ws, String, String) {
    system.add_agent("hana", 3, None).await;
    let token = System::agent_token(edge, "hana").await;
    let (agent, _) = Ws::hello(edge, &token, json!({})).await;
    let (_, token) = System::visitor(edge, "Ann").await;
    let (mut visitor, _) = Ws::hello(edge, &token, json!({})).await;
    visitor.send(json!({ "type": "start" })).await;
    let started = visitor.expect_type("started").await;
    let id = started["conversation_id"].as_str().unwrap().to_owned();
    visitor.expect_event(&id, "assigned").await;
    (visitor, agent, id, token)
}

async fn page(ws: &mut Ws, conversation: &str, before: Option<u64>, limit: u32) -> Value {
    let mut request = json!({ "type": "history", "conversation_id": conversation, "limit": limit });
    if let Some(before) = before {
        request["before_seq"] = json!(before);
    }
    ws.send(request).await;
    ws.expect_type("history").await
}

fn seqs(page: &Value) -> Vec<u64> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["seq"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_back_to_the_first_record() {
    let mut system = System::with_workers().await;
    let edge = system
        .edge_with(&[
            ("SWITCHBOARD_EDGE__RATE_PER_SEC", "1000"),
            ("SWITCHBOARD_EDGE__RATE_BURST", "1000"),
        ])
        .await;
    let (mut visitor, _agent, id, _) = conversation(&mut system, edge).await;
    let mut last = 0;
    for i in 0..130 {
        let ack = visitor
            .send_message(&id, &format!("m{i}"), &format!("message {i}"))
            .await;
        last = ack["seq"].as_u64().unwrap();
    }
    let mut collected = Vec::new();
    let mut before = None;
    loop {
        let page = page(&mut visitor, &id, before, 50).await;
        let mut seqs = seqs(&page);
        assert!(seqs.len() <= 50);
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "page not contiguous: {seqs:?}"
        );
        before = seqs.first().copied();
        seqs.extend(collected);
        collected = seqs;
        if page["has_more"] == false {
            break;
        }
    }
    assert_eq!(collected, (1..=last).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_older_than_the_stream_comes_from_the_archive() {
    // Records leave the stream two seconds after they are stored.
    let mut system = System::start_env(&[
        ("SWITCHBOARD_NATS__RETENTION", "2s"),
        ("SWITCHBOARD_NATS__DUPLICATE_WINDOW", "1s"),
    ])
    .await;
    system.router().await;
    system.archiver().await;
    let edge = system.edge().await;
    let (mut visitor, mut agent, id, visitor_token) = conversation(&mut system, edge).await;
    let mut last = 0;
    for i in 0..5 {
        visitor
            .send_message(&id, &format!("v{i}"), &format!("question {i}"))
            .await;
        let ack = agent
            .send_message(&id, &format!("a{i}"), &format!("answer {i}"))
            .await;
        last = ack["seq"].as_u64().unwrap();
    }
    visitor
        .expect("the last answer", |f| {
            f["type"] == "message" && f["seq"].as_u64() == Some(last)
        })
        .await;
    let live = visitor.records(&id);

    let db = system.archive().await;
    until_archived(&db, &id, last).await;
    let backbone = system.backbone().await;
    let conversation_id = id.parse().unwrap();
    eventually("stream dropped the conversation", || {
        let (backbone, conversation_id) = (backbone.clone(), &conversation_id);
        async move {
            backbone
                .log
                .last(conversation_id)
                .await
                .ok()?
                .is_none()
                .then_some(())
        }
    })
    .await;

    let whole = page(&mut visitor, &id, None, 100).await;
    assert_eq!(seqs(&whole), (1..=last).collect::<Vec<_>>());
    assert_eq!(whole["has_more"], false);
    // What the archive returns is what was delivered live.
    let live_messages: Vec<&Value> = live.iter().filter(|r| r["type"] == "message").collect();
    let archived_messages: Vec<&Value> = whole["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["type"] == "message")
        .collect();
    assert_eq!(live_messages, archived_messages);

    let older = page(&mut visitor, &id, Some(4), 2).await;
    assert_eq!(seqs(&older), vec![2, 3]);
    assert_eq!(older["has_more"], true);

    // The conversation goes on where it was, not at seq 1.
    let ack = visitor.send_message(&id, "after", "still there?").await;
    assert_eq!(ack["seq"].as_u64().unwrap(), last + 1);
    agent
        .expect("the new message", |f| {
            f["type"] == "message" && f["client_id"] == "after"
        })
        .await;

    // A client that was away resumes from what it saw, although the stream
    // keeps only the newest record: the rest is replayed from the archive.
    until_archived(&db, &id, last + 1).await;
    let (mut back, _) = Ws::hello(edge, &visitor_token, json!({ id.clone(): 2 })).await;
    let resumed = back.expect_type("resumed").await;
    assert_eq!(resumed["complete"], true, "{resumed}");
    back.expect("the last record", |f| f["seq"].as_u64() == Some(last + 1))
        .await;
    let replayed: Vec<u64> = back
        .records(&id)
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(replayed, (3..=last + 1).collect::<Vec<_>>());
}

/// Records a long conversation has, and how many of the newest the stream
/// keeps: enough pages on each side of the boundary, which falls inside a
/// page (not on a multiple of the page size), so one page joins both.
const LONG_CONVERSATION: usize = 1_200;
const KEPT_IN_STREAM: u64 = 421;
const PAGE: u32 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_conversation_pages_back_across_the_stream_archive_boundary() {
    let mut system = System::with_workers().await;
    let edge = system.edge().await;
    let (visitor, agent, id, token) = conversation(&mut system, edge).await;
    // Nobody reads while the records are written (a client that does not
    // read is dropped, rightly); the visitor comes back to page.
    visitor.close().await;
    agent.close().await;
    let backbone = system.backbone().await;
    let conversation_id: switchboard_protocol::ConversationId = id.parse().unwrap();
    let sender = switchboard_protocol::payloads::Participant::system("bulk-bot");
    let mut last = 0;
    for i in 0..LONG_CONVERSATION {
        let body = switchboard_protocol::payloads::RecordBody::Message {
            text: format!("bulk {i}"),
            client_id: format!("bulk-{i}"),
        };
        last = backbone
            .log
            .append(&conversation_id, sender.clone(), body, None)
            .await
            .unwrap()
            .record
            .seq;
    }
    until_archived(&system.archive().await, &id, last).await;
    // The stream keeps only the newest records of the conversation, as
    // retention would leave it.
    let stream = backbone
        .js
        .get_stream(switchboard_protocol::subjects::CHAT_STREAM)
        .await
        .unwrap();
    stream
        .purge()
        .filter(switchboard_protocol::subjects::conversation(
            &conversation_id,
        ))
        .keep(KEPT_IN_STREAM)
        .await
        .unwrap();

    let (mut visitor, _) = Ws::hello(edge, &token, json!({})).await;
    let mut collected: Vec<u64> = Vec::new();
    let mut before = None;
    let mut pages = 0;
    loop {
        let page = page(&mut visitor, &id, before, PAGE).await;
        pages += 1;
        let mut seqs = seqs(&page);
        assert!(!seqs.is_empty(), "empty page before the first record");
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "page {pages} not contiguous: {seqs:?}"
        );
        before = seqs.first().copied();
        seqs.extend(collected);
        collected = seqs;
        if page["has_more"] == false {
            break;
        }
    }
    assert_eq!(collected, (1..=last).collect::<Vec<_>>());
    // Every page full, the one across the boundary too.
    assert_eq!(pages, last.div_ceil(u64::from(PAGE)));
}
