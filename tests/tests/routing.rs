//! Routing like a contact center: agents who vanish lose their
//! conversations (at their place in the queue) after a grace period, silent
//! agents lose them at the team's first-reply deadline, transfers, reopen,
//! ratings, admin changes and broadcasts — each end to end over WebSocket
//! against real router and edge processes.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use switchboard_tests::system::{node_binary, System};
use switchboard_tests::ws::Ws;

async fn agent(_system: &System, edge: SocketAddr, login: &str) -> Ws {
    let token = System::agent_token(edge, login).await;
    Ws::hello(edge, &token, json!({})).await.0
}

/// A visitor who started a conversation: `(client, conversation, token)`.
async fn visitor(edge: SocketAddr, name: &str, team: Option<&str>) -> (Ws, String, String) {
    let (_, token) = System::visitor(edge, name).await;
    let (mut ws, _) = Ws::hello(edge, &token, json!({})).await;
    ws.send(json!({ "type": "start", "team": team })).await;
    let id = ws.expect_type("started").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    (ws, id, token)
}

async fn cli(system: &System, args: &[&str]) -> String {
    let output = tokio::process::Command::new(node_binary())
        .args(args)
        .env("SWITCHBOARD_NATS__URL", system.nats.url())
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "switchboard {args:?}: {text}");
    text
}

fn event_of<'a>(ws: &'a Ws, conversation: &str, name: &str) -> Vec<&'a Value> {
    ws.seen
        .iter()
        .filter(|f| {
            f["type"] == "event" && f["conversation_id"] == conversation && f["event"] == name
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_agent_loses_conversations_to_the_queue_at_their_place() {
    let mut system = System::start_env(&[("SWITCHBOARD_ROUTER__AGENT_GRACE", "2s")]).await;
    system.router().await;
    system.archiver().await;
    let edge = system.edge().await;
    system.add_agent("ada", 1, None).await;
    system.add_agent("ben", 2, None).await;

    let mut ada = agent(&system, edge, "ada").await;
    let (mut first, first_id, _) = visitor(edge, "First", None).await;
    let assigned = first.expect_event(&first_id, "assigned").await;
    assert_eq!(assigned["agent"]["name"], "Agent ada");
    // The audit trail says why, to agents (never to the visitor).
    assert!(assigned["reason"].is_null(), "{assigned}");
    let audit = ada.expect_event(&first_id, "assigned").await;
    assert_eq!(audit["reason"]["strategy"], "least_busy");
    assert_eq!(audit["reason"]["candidates"][0]["capacity"], 1);
    let (mut second, second_id, _) = visitor(edge, "Second", None).await;
    let queued = second.expect_event(&second_id, "queued").await;
    assert_eq!(queued["position"], 1);
    assert_eq!(queued["agents_online"], 1);

    // Ada's browser dies; past the grace period her conversation goes back
    // to the queue ahead of the one that came later.
    ada.close().await;
    let left = first.expect_event(&first_id, "agent_left").await;
    assert_eq!(left["reason"], "offline");
    let requeued = first.expect_event(&first_id, "queued").await;
    assert_eq!(requeued["position"], 1, "back at its original place");
    second
        .expect("second moves behind", |f| {
            f["event"] == "queued" && f["position"] == 2
        })
        .await;

    let mut ben = agent(&system, edge, "ben").await;
    let one = ben.expect_type("assigned").await;
    let two = ben.expect_type("assigned").await;
    assert_eq!(one["conversation_id"], first_id.as_str());
    assert_eq!(two["conversation_id"], second_id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_back_within_the_grace_period_keeps_conversations() {
    let mut system = System::start_env(&[("SWITCHBOARD_ROUTER__AGENT_GRACE", "3s")]).await;
    system.router().await;
    let edge = system.edge().await;
    system.add_agent("cy", 2, None).await;
    let cy = agent(&system, edge, "cy").await;
    let (mut ann, id, _) = visitor(edge, "Ann", None).await;
    ann.expect_event(&id, "assigned").await;
    cy.close().await;
    let token = System::agent_token(edge, "cy").await;
    let (mut cy, welcome) = Ws::hello(edge, &token, json!({})).await;
    assert_eq!(welcome["conversations"][0]["conversation_id"], id.as_str());
    // Whether the router acts is a matter of time: wait past the grace.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let ack = cy.send_message(&id, "still-mine", "still with you").await;
    ann.expect("the agent's message", |f| f["id"] == ack["id"])
        .await;
    assert!(
        event_of(&ann, &id, "agent_left").is_empty(),
        "{:#?}",
        ann.seen
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_go_to_the_named_agent_or_team_with_the_note() {
    let mut system = System::with_workers().await;
    let edge = system.edge().await;
    system.add_agent("dee", 3, Some("sales")).await;
    system.add_agent("eli", 3, Some("sales")).await;
    system.add_agent("fay", 3, Some("billing")).await;
    let mut dee = agent(&system, edge, "dee").await;
    let (mut ann, id, _) = visitor(edge, "Ann", Some("sales")).await;
    let assigned = ann.expect_event(&id, "assigned").await;
    // Dee and Eli are both free; make sure Dee has it (Eli connects later).
    assert_eq!(assigned["agent"]["name"], "Agent dee");
    dee.expect_type("assigned").await;
    let mut eli = agent(&system, edge, "eli").await;
    let eli_account = eli.seen[0]["id"].as_str().unwrap().to_owned();
    // Dee has written in it (the edge remembers Dee may)...
    for n in 0..2 {
        let said = dee
            .send_message(&id, &format!("before-{n}"), "one moment")
            .await;
        ann.expect("dee's message", |f| f["id"] == said["id"]).await;
    }

    dee.send(json!({
        "type": "transfer", "conversation_id": id, "to_agent": eli_account,
        "note": "wants a discount",
    }))
    .await;
    let transferred = ann.expect_event(&id, "transferred").await;
    assert!(
        transferred["note"].is_null(),
        "the visitor must not see the note for agents: {transferred}"
    );
    assert_eq!(transferred["from"]["name"], "Agent dee");
    assert_eq!(transferred["to_agent"]["name"], "Agent eli");
    let taken = eli.expect_type("assigned").await;
    assert_eq!(taken["conversation_id"], id.as_str());
    let briefing = eli.expect_event(&id, "transferred").await;
    assert_eq!(briefing["note"], "wants a discount");
    ann.expect("assigned to eli", |f| {
        f["event"] == "assigned" && f["agent"]["name"] == "Agent eli"
    })
    .await;
    let audit = eli
        .expect("eli's assignment", |f| {
            f["event"] == "assigned" && f["agent"]["name"] == "Agent eli"
        })
        .await;
    assert_eq!(audit["reason"]["strategy"], "requested");
    // ...and may no longer write in it, nor read what follows.
    let after = ann
        .send_message(&id, "after-transfer", "are you there?")
        .await;
    eli.expect("the visitor's message", |f| f["id"] == after["id"])
        .await;
    dee.send(json!({ "type": "send", "conversation_id": id, "client_id": "late", "text": "x" }))
        .await;
    dee.expect_error("forbidden").await;
    assert!(
        !dee.seen.iter().any(|f| f["id"] == after["id"]),
        "the transferring agent still received the conversation"
    );

    // To another team: only that team's agents may take it.
    let mut fay = agent(&system, edge, "fay").await;
    eli.send(json!({ "type": "transfer", "conversation_id": id, "to_team": "billing" }))
        .await;
    ann.expect("transferred to billing", |f| {
        f["event"] == "transferred" && f["to_team"] == "billing"
    })
    .await;
    let taken = fay.expect_type("assigned").await;
    assert_eq!(taken["conversation_id"], id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_agent_loses_the_conversation_at_the_first_reply_deadline() {
    let mut system =
        System::start_env(&[("SWITCHBOARD_ROUTER__TEAMS__FAST__FIRST_REPLY", "1s")]).await;
    system.router().await;
    let edge = system.edge().await;
    system.add_agent("gil", 2, Some("fast")).await;
    let _gil = agent(&system, edge, "gil").await;
    let (mut ann, id, _) = visitor(edge, "Ann", Some("fast")).await;
    ann.expect_event(&id, "assigned").await;
    system.add_agent("hal", 2, Some("fast")).await;
    let mut hal = agent(&system, edge, "hal").await;
    let left = ann.expect_event(&id, "agent_left").await;
    assert_eq!(left["reason"], "no_reply");
    assert_eq!(left["agent"]["name"], "Agent gil");
    let taken = hal.expect_type("assigned").await;
    assert_eq!(taken["conversation_id"], id.as_str());
    // Hal answers in time and keeps it.
    let ack = hal.send_message(&id, "hi", "hello, I'm here").await;
    ann.expect("hal's answer", |f| f["id"] == ack["id"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_conversation_is_rated_and_reopened_with_the_same_agent() {
    let mut system = System::with_workers().await;
    let edge = system.edge().await;
    system.add_agent("ivy", 2, None).await;
    system.add_agent("jon", 2, None).await;
    let mut ivy = agent(&system, edge, "ivy").await;
    let (mut ann, id, token) = visitor(edge, "Ann", None).await;
    ann.expect_event(&id, "assigned").await;
    let _jon = agent(&system, edge, "jon").await;

    ann.send(json!({ "type": "rate", "conversation_id": id, "score": 5 }))
        .await;
    ann.expect_error("forbidden").await;
    for n in 0..2 {
        let said = ann
            .send_message(&id, &format!("before-close-{n}"), "thanks")
            .await;
        ivy.expect("ann's message", |f| f["id"] == said["id"]).await;
    }
    ivy.send(json!({ "type": "close", "conversation_id": id }))
        .await;
    ann.expect_event(&id, "closed").await;
    // Closed: nobody writes in it any more.
    ann.send(json!({ "type": "send", "conversation_id": id, "client_id": "late", "text": "x" }))
        .await;
    ann.expect_error("forbidden").await;
    ann.send(json!({ "type": "rate", "conversation_id": id, "score": 6 }))
        .await;
    ann.expect_error("bad_request").await;
    ann.send(json!({ "type": "rate", "conversation_id": id, "score": 4, "comment": "quick" }))
        .await;
    let rated = ann.expect_event(&id, "rated").await;
    assert_eq!(
        (rated["score"].as_u64(), rated["comment"].as_str()),
        (Some(4), Some("quick"))
    );
    ann.send(json!({ "type": "rate", "conversation_id": id, "score": 1 }))
        .await;
    ann.expect_error("forbidden").await;

    // Back within the window: the same conversation, the same agent.
    let (mut again, _) = Ws::hello(edge, &token, json!({})).await;
    again.send(json!({ "type": "start" })).await;
    let started = again.expect_type("started").await;
    assert_eq!(started["conversation_id"], id.as_str());
    assert_eq!(started["created"], false);
    again.expect_event(&id, "reopened").await;
    let assigned = again.expect_event(&id, "assigned").await;
    assert_eq!(assigned["agent"]["name"], "Agent ivy");
    let audit = ivy
        .expect("ivy's new assignment", |f| {
            f["event"] == "assigned"
                && f["conversation_id"] == id.as_str()
                && f["seq"] == assigned["seq"]
        })
        .await;
    assert_eq!(audit["reason"]["strategy"], "requested");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_change_capacity_live_and_broadcast_notices() {
    let mut system = System::with_workers().await;
    let edge = system.edge().await;
    system.add_agent("kai", 1, None).await;
    let mut kai = agent(&system, edge, "kai").await;
    let (mut ann, ann_id, _) = visitor(edge, "Ann", None).await;
    ann.expect_event(&ann_id, "assigned").await;
    let (mut bo, bo_id, _) = visitor(edge, "Bo", None).await;
    let queued = bo.expect_event(&bo_id, "queued").await;
    assert_eq!(queued["position"], 1);
    kai.expect_type("assigned").await;

    let out = cli(
        &system,
        &["agent", "set", "--login", "kai", "--capacity", "2"],
    )
    .await;
    assert!(out.contains("capacity 2"), "{out}");
    let second = kai.expect_type("assigned").await;
    assert_eq!(second["conversation_id"], bo_id.as_str());

    cli(
        &system,
        &["broadcast", "--to", "agents", "--text", "Team meeting at 3"],
    )
    .await;
    let notice = kai.expect_type("notice").await;
    assert_eq!(notice["text"], "Team meeting at 3");
    assert_eq!(notice["sender"]["role"], "system");
    cli(
        &system,
        &["broadcast", "--to", "visitors", "--text", "We close at 6"],
    )
    .await;
    let notice = ann.expect_type("notice").await;
    assert_eq!(notice["text"], "We close at 6");
    let notices: Vec<_> = ann.seen.iter().filter(|f| f["type"] == "notice").collect();
    assert_eq!(notices.len(), 1, "visitors get only visitor notices");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nobody_online_a_visitor_leaves_a_message_an_agent_picks_up() {
    let mut system = System::with_workers().await;
    let edge = system.edge().await;
    system.add_agent("lee", 2, None).await;
    let (mut ann, id, _) = visitor(edge, "Ann", None).await;
    let queued = ann.expect_event(&id, "queued").await;
    assert_eq!(
        queued["agents_online"], 0,
        "the visitor is told nobody is online"
    );

    ann.send(json!({
        "type": "leave_message", "text": "Please call me back about my order",
        "name": "Ann Lee", "email": "ann@example.com", "client_id": "left-1",
    }))
    .await;
    let started = ann.expect_type("started").await;
    assert_eq!(
        (
            started["conversation_id"].as_str(),
            started["state"].as_str()
        ),
        (Some(id.as_str()), Some("missed"))
    );
    ann.expect("ack of the left message", |f| {
        f["type"] == "ack" && f["client_id"] == "left-1"
    })
    .await;
    let left = ann.expect_event(&id, "left_message").await;
    assert_eq!(left["email"], "ann@example.com");

    // An agent comes online later: the missed conversation is not assigned
    // by itself, it is listed, and picked up.
    let mut lee = agent(&system, edge, "lee").await;
    lee.send(json!({ "type": "list_missed" })).await;
    let missed = lee.expect_type("missed").await;
    assert_eq!(missed["entries"][0]["conversation_id"], id.as_str());
    assert_eq!(
        missed["entries"][0]["preview"],
        "Please call me back about my order"
    );
    assert_eq!(missed["entries"][0]["visitor"]["name"], "Ann Lee");
    assert!(!lee.seen.iter().any(|f| f["type"] == "assigned"));

    lee.send(json!({ "type": "pick_up", "conversation_id": id }))
        .await;
    let assigned = lee.expect_type("assigned").await;
    assert_eq!(assigned["conversation_id"], id.as_str());
    lee.expect("the left message, replayed", |f| {
        f["type"] == "message" && f["client_id"] == "left-1"
    })
    .await;
    ann.expect_event(&id, "picked_up").await;
    ann.expect_event(&id, "assigned").await;
    // Picked once: a second pick-up finds nothing.
    lee.send(json!({ "type": "pick_up", "conversation_id": id }))
        .await;
    lee.expect_error("not_found").await;
    lee.send(json!({ "type": "list_missed" })).await;
    let missed = lee
        .expect("an empty list", |f| {
            f["type"] == "missed" && f["entries"] == json!([])
        })
        .await;
    assert_eq!(missed["entries"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_see_the_queue_live_and_admins_reorder_and_force_assign() {
    let mut system = System::with_workers().await;
    let edge = system.edge().await;
    system.add_agent("max", 1, None).await;
    let mut max = agent(&system, edge, "max").await;
    let (mut a, a_id, _) = visitor(edge, "A", None).await;
    a.expect_event(&a_id, "assigned").await;
    let (_b, b_id, _) = visitor(edge, "B", None).await;
    let (mut c, c_id, _) = visitor(edge, "C", None).await;
    c.expect_event(&c_id, "queued").await;

    let order = |f: &Value| -> Vec<String> {
        f["entries"]
            .as_array()
            .map(|e| {
                e.iter()
                    .map(|e| e["conversation_id"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let expected = vec![b_id.clone(), c_id.clone()];
    max.expect("the queue with B then C", |f| {
        f["type"] == "queue" && order(f) == expected
    })
    .await;

    cli(&system, &["queue", "prioritize", "--conversation", &c_id]).await;
    let expected = vec![c_id.clone(), b_id.clone()];
    max.expect("the queue with C first", |f| {
        f["type"] == "queue" && order(f) == expected
    })
    .await;
    c.expect("C moves to place 1", |f| {
        f["event"] == "queued" && f["position"] == 1
    })
    .await;
    let listing = cli(&system, &["queue", "list"]).await;
    let (c_at, b_at) = (listing.find(&c_id).unwrap(), listing.find(&b_id).unwrap());
    assert!(c_at < b_at, "{listing}");

    // Force B to Max: when his slot frees, B goes first despite C's priority.
    cli(
        &system,
        &["queue", "assign", "--conversation", &b_id, "--agent", "max"],
    )
    .await;
    max.send(json!({ "type": "close", "conversation_id": a_id }))
        .await;
    let next = max
        .expect("the next assignment", |f| {
            f["type"] == "assigned" && f["conversation_id"] != a_id.as_str()
        })
        .await;
    assert_eq!(next["conversation_id"], b_id.as_str());
}
