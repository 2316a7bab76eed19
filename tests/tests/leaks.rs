//! Nobody sees what is not theirs: a visitor never receives the support
//! team's internals (other agents, their loads, transfer notes); an agent
//! who lost a conversation stops receiving it and may not signal in it.

use std::collections::BTreeSet;

use serde_json::{json, Value};
use switchboard_tests::system::System;
use switchboard_tests::ws::Ws;

async fn agent(edge: std::net::SocketAddr, login: &str) -> Ws {
    let token = System::agent_token(edge, login).await;
    Ws::hello(edge, &token, json!({})).await.0
}

/// Every string anywhere in a frame.
fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(fields) => {
            for (key, v) in fields {
                out.push(key.clone());
                strings(v, out);
            }
        }
        _ => {}
    }
}

/// An agent id as the system makes them (`a_` and a ULID).
fn is_agent_id(s: &str) -> bool {
    s.strip_prefix("a_")
        .is_some_and(|ulid| ulid.len() == 26 && ulid.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// A full routing day seen from the visitor's side: assignment among
/// several candidates, a transfer to a named agent with a note, a transfer
/// to a team with a note, the agent vanishing past the grace period and a
/// reassignment, history and a resumed connection. Every frame the visitor
/// received is walked: the only agent ids in it are those of agents the
/// conversation was given to, and no note reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_never_receives_other_agents_or_internal_notes() {
    let mut system = System::start_env(&[("SWITCHBOARD_ROUTER__AGENT_GRACE", "2s")]).await;
    system.router().await;
    let edge = system.edge().await;
    // Five sales agents: the conversation goes to three of them at most,
    // so some are candidates it never reaches.
    let logins = ["ada", "ben", "cyd", "eve", "fay"];
    let mut accounts = Vec::new();
    for login in logins {
        accounts.push(system.add_agent(login, 3, Some("sales")).await);
    }
    accounts.push(system.add_agent("dot", 3, Some("support")).await);
    let mut sales = Vec::new();
    for login in logins {
        sales.push((login, agent(edge, login).await));
    }
    let mut dot = agent(edge, "dot").await;
    let id_of = |login: &str| {
        accounts
            .iter()
            .find(|a| a.login == login)
            .map(|a| a.id.to_string())
            .unwrap()
    };

    let (_, token) = System::visitor(edge, "Vic").await;
    let (mut vic, _) = Ws::hello(edge, &token, json!({})).await;
    vic.send(json!({ "type": "start", "team": "sales", "text": "hello", "client_id": "s1" }))
        .await;
    let id = vic.expect_type("started").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let first = vic.expect_event(&id, "assigned").await;
    let first_agent = first["agent"]["id"].as_str().unwrap().to_owned();
    // The agent side does carry the audit trail (so it exists to leak).
    let (_, holder) = sales
        .iter_mut()
        .find(|(login, _)| id_of(login) == first_agent)
        .unwrap();
    let audit = holder.expect_event(&id, "assigned").await;
    assert!(
        audit["reason"]["candidates"].as_array().unwrap().len() >= 2,
        "{audit}"
    );

    // A named transfer with a note, from whoever has it to dot.
    holder
        .send(json!({
            "type": "transfer", "conversation_id": id, "to_agent": id_of("dot"),
            "note": "NOTE-ONE: vip, be nice",
        }))
        .await;
    vic.expect("assigned to dot", |f| {
        f["event"] == "assigned" && f["agent"]["id"] == id_of("dot").as_str()
    })
    .await;
    dot.expect_type("assigned").await;
    let said = dot.send_message(&id, "d1", "dot here").await;
    vic.expect("dot's message", |f| f["id"] == said["id"]).await;
    vic.send(json!({ "type": "typing", "conversation_id": id, "state": true }))
        .await;
    // A transfer to a team with a note; then its new agent vanishes.
    dot.send(json!({
        "type": "transfer", "conversation_id": id, "to_team": "sales",
        "note": "NOTE-TWO: second opinion",
    }))
    .await;
    let second = vic
        .expect("assigned in sales again", |f| {
            f["event"] == "assigned" && f["agent"]["id"] != id_of("dot").as_str()
        })
        .await;
    let second_agent = second["agent"]["id"].as_str().unwrap().to_owned();
    let gone = sales
        .iter()
        .position(|(login, _)| id_of(login) == second_agent)
        .unwrap();
    sales.remove(gone).1.close().await;
    vic.expect_event(&id, "agent_left").await;
    vic.expect("assigned a third time", |f| {
        f["event"] == "assigned" && f["agent"]["id"] != second_agent.as_str()
    })
    .await;

    // History and a resumed connection show the same records again.
    vic.send(json!({ "type": "history", "conversation_id": id, "limit": 100 }))
        .await;
    vic.expect_type("history").await;
    let (mut back, _) = Ws::hello(edge, &token, json!({ id.clone(): 0 })).await;
    back.expect_type("resumed").await;
    let last_seq = vic.records(&id).last().unwrap()["seq"].as_u64().unwrap();
    back.expect("the resumed records", |f| {
        f["seq"].as_u64() == Some(last_seq)
    })
    .await;

    let given_to: BTreeSet<String> = vic
        .records(&id)
        .iter()
        .filter(|f| f["event"] == "assigned")
        .map(|f| f["agent"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(given_to.len() >= 3, "{given_to:?}");
    for frame in vic.seen.iter().chain(back.seen.iter()) {
        let mut found = Vec::new();
        strings(frame, &mut found);
        for s in found {
            assert!(
                !is_agent_id(&s) || given_to.contains(&s),
                "the visitor received agent {s}, who never had the conversation, in {frame}"
            );
            assert!(!s.contains("NOTE-"), "the visitor received a note: {frame}");
        }
    }
}

/// Private notes are for agents: the agent's other connection, a resumed
/// one and history show their text; the visitor — live over a WebSocket
/// and over an event stream, resumed, and in history — gets each `note`
/// event (so `seq` has no hole) without its text. Every frame the visitor received
/// is walked for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_notes_never_reach_a_visitor() {
    let mut system = System::with_workers().await;
    let edge = system.edge().await;
    let other = system.edge().await;
    system.add_agent("ann", 3, None).await;
    let token = System::agent_token(edge, "ann").await;
    let (mut ann, _) = Ws::hello(edge, &token, json!({})).await;
    let (mut ann2, _) = Ws::hello(other, &token, json!({})).await;
    let (_, vic_token) = System::visitor(edge, "Vic").await;
    let (mut vic, _) = Ws::hello(edge, &vic_token, json!({})).await;
    vic.send(json!({ "type": "start", "text": "hello", "client_id": "s1" }))
        .await;
    let id = vic.expect_type("started").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    ann.expect_type("assigned").await;
    ann2.expect_type("assigned").await;
    // A second tab of the visitor, on an event stream: it follows the open
    // conversation from its welcome.
    let (mut vic_sse, welcome) =
        switchboard_tests::sse::Sse::hello(other, edge, &vic_token, json!({})).await;
    assert_eq!(welcome["conversations"][0]["conversation_id"], id.as_str());

    ann.send(json!({
        "type": "note", "conversation_id": id, "client_id": "n1",
        "text": "SECRET-NOTE-1: refund approved up to 50",
    }))
    .await;
    let ack = ann
        .expect("ack of the note", |f| {
            f["type"] == "ack" && f["client_id"] == "n1"
        })
        .await;
    // A retried note is stored once.
    ann.send(json!({
        "type": "note", "conversation_id": id, "client_id": "n1",
        "text": "SECRET-NOTE-1: refund approved up to 50",
    }))
    .await;
    let again = ann
        .expect("second ack of the note", |f| {
            f["type"] == "ack" && f["client_id"] == "n1"
        })
        .await;
    assert_eq!(ack["seq"], again["seq"]);
    let seen_by_agent = ann2
        .expect("the note on the agent's other tab", |f| {
            f["event"] == "note"
        })
        .await;
    assert_eq!(
        seen_by_agent["text"],
        "SECRET-NOTE-1: refund approved up to 50"
    );
    assert_eq!(seen_by_agent["by"]["name"], "Agent ann");
    let said = ann.send_message(&id, "a1", "Let me check").await;
    let note_seq = ack["seq"].as_u64().unwrap();
    vic.expect("the note without its text", |f| {
        f["event"] == "note" && f["seq"].as_u64() == Some(note_seq)
    })
    .await;
    vic.expect("the reply after it", |f| f["id"] == said["id"])
        .await;
    vic_sse
        .expect("the reply on the event stream", |f| f["id"] == said["id"])
        .await;
    // A visitor may not write notes.
    vic.send(json!({
        "type": "note", "conversation_id": id, "client_id": "v1", "text": "me too"
    }))
    .await;
    vic.expect_error("forbidden").await;
    ann.send(json!({
        "type": "note", "conversation_id": id, "client_id": "n2",
        "text": "SECRET-NOTE-2: second",
    }))
    .await;
    ann.expect("ack of the second note", |f| {
        f["type"] == "ack" && f["client_id"] == "n2"
    })
    .await;
    // History, a resumed connection, and the agent's own history.
    vic.send(json!({ "type": "history", "conversation_id": id, "limit": 100 }))
        .await;
    let history = vic.expect_type("history").await;
    let notes = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["event"] == "note")
        .count();
    assert_eq!(notes, 2, "{history}");
    let (mut back, _) = Ws::hello(edge, &vic_token, json!({ id.clone(): 0 })).await;
    back.expect_type("resumed").await;
    back.expect("the second note, resumed", |f| {
        f["event"] == "note" && f["seq"].as_u64() > Some(note_seq)
    })
    .await;
    ann.send(json!({ "type": "history", "conversation_id": id, "limit": 100 }))
        .await;
    let theirs = ann.expect_type("history").await;
    assert!(
        theirs.to_string().contains("SECRET-NOTE-2"),
        "the agent's history lacks the note: {theirs}"
    );
    for frame in vic
        .seen
        .iter()
        .chain(back.seen.iter())
        .chain(vic_sse.seen.iter())
    {
        let mut found = Vec::new();
        strings(frame, &mut found);
        for s in found {
            assert!(
                !s.contains("SECRET-NOTE"),
                "the visitor received a private note: {frame}"
            );
        }
    }
}

/// An agent who closed a conversation keeps reading it, until it is
/// reopened to someone else: then nothing more of it reaches them, and
/// they may neither type nor mark reads in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_previous_agent_stops_receiving_a_conversation_reopened_to_someone_else() {
    let mut system = System::with_workers().await;
    let edge = system.edge().await;
    system.add_agent("ann", 1, None).await;
    let mut ann = agent(edge, "ann").await;
    let (_, vic_token) = System::visitor(edge, "Vic").await;
    let (mut vic, _) = Ws::hello(edge, &vic_token, json!({})).await;
    vic.send(json!({ "type": "start" })).await;
    let id = vic.expect_type("started").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    vic.expect_event(&id, "assigned").await;
    ann.expect_type("assigned").await;
    ann.send(json!({ "type": "close", "conversation_id": id }))
        .await;
    ann.expect_event(&id, "closed").await;

    // Ann is busy with someone else (her one slot) when Vic comes back.
    let (_, other_token) = System::visitor(edge, "Olga").await;
    let (mut olga, _) = Ws::hello(edge, &other_token, json!({})).await;
    olga.send(json!({ "type": "start" })).await;
    let other = olga.expect_type("started").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    olga.expect_event(&other, "assigned").await;
    system.add_agent("bob", 1, None).await;
    let mut bob = agent(edge, "bob").await;
    vic.send(json!({ "type": "start" })).await;
    assert_eq!(
        vic.expect_type("started").await["conversation_id"],
        id.as_str()
    );
    vic.expect("assigned to bob", |f| {
        f["event"] == "assigned" && f["agent"]["name"] == "Agent bob"
    })
    .await;
    bob.expect_type("assigned").await;

    let said = vic.send_message(&id, "after-reopen", "for bob only").await;
    bob.expect("vic's message", |f| f["id"] == said["id"]).await;
    // A marker on Ann's own conversation: anything of Vic's sent before it
    // would have arrived before it.
    let marker = olga.send_message(&other, "marker", "still here").await;
    ann.expect("olga's marker", |f| f["id"] == marker["id"])
        .await;
    assert!(
        !ann.seen.iter().any(|f| f["id"] == said["id"]),
        "ann received a message of a conversation that is now bob's"
    );
    ann.send(json!({ "type": "typing", "conversation_id": id, "state": true }))
        .await;
    ann.expect_error("forbidden").await;
    ann.send(json!({ "type": "read", "conversation_id": id, "seq": said["seq"] }))
        .await;
    ann.expect_error("forbidden").await;
    // Vic never saw Ann type.
    let bob_types = bob.send_message(&id, "bob-1", "hi, bob here").await;
    vic.expect("bob's message", |f| f["id"] == bob_types["id"])
        .await;
    assert!(
        !vic.seen
            .iter()
            .any(|f| f["type"] == "typing" && f["sender"]["name"] == "Agent ann"),
        "{:#?}",
        vic.seen
    );
}

/// Credentials never reach a log: NATS URLs with user info, MongoDB URIs
/// with user info and secret query parameters, tokens, and what is typed
/// into the login form. Every component runs at `debug` with recognisable
/// secrets in its settings, is used (and refused), and its whole log is
/// searched for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_logs() {
    const NATS_PASSWORD: &str = "NatsPw-7f3a9c";
    const MONGO_PASSWORD: &str = "MongoPw-4b1c8e";
    const MONGO_AUTH_SOURCE: &str = "AuthDb-9d2e5a";
    const LOGIN: &str = "LoginProbe-5e6f21";
    const PASSWORD: &str = "PasswordProbe-0a9b";
    let mut system = System::start().await;
    let nats_url = system.nats.url().replacen(
        "nats://",
        &format!("nats://switchboard:{NATS_PASSWORD}@"),
        1,
    );
    let mongo_uri = format!(
        "{}/?authSource={MONGO_AUTH_SOURCE}&serverSelectionTimeoutMS=500",
        system.mongo.uri().replacen(
            "mongodb://",
            &format!("mongodb://archiver:{MONGO_PASSWORD}@"),
            1
        )
    );
    system.set_env("SWITCHBOARD_NATS__URL", &nats_url);
    system.set_env("SWITCHBOARD_MONGO__URI", &mongo_uri);
    system.capture_logs("debug");
    system.router().await;
    system.archiver().await;
    let edge = system.edge().await;
    system.add_agent("ann", 2, None).await;

    let (_, visitor_token) = System::visitor(edge, "Vic").await;
    let (mut vic, _) = Ws::hello(edge, &visitor_token, json!({})).await;
    vic.send(json!({ "type": "start", "text": "hello", "client_id": "s1" }))
        .await;
    vic.expect_type("started").await;
    let agent_token = System::agent_token(edge, "ann").await;
    let (_ann, _) = Ws::hello(edge, &agent_token, json!({})).await;
    let refused = switchboard_tests::http::post(
        edge,
        "/api/v1/agents/login",
        &json!({ "login": LOGIN, "password": PASSWORD }).to_string(),
    )
    .await;
    assert_eq!(refused.status, 401);
    // A forged token, refused.
    let mut forged = Ws::connect(edge).await;
    forged
        .send(json!({ "type": "hello", "token": format!("{visitor_token}x") }))
        .await;
    assert_eq!(forged.expect_close().await, 4401);

    // The archiver cannot log in to MongoDB with these credentials (the
    // dev server has no such user): it keeps retrying, and logging.
    let logs = system.logs();
    assert!(
        logs.len() > 20,
        "too little was logged to prove anything: {logs:#?}"
    );
    let secrets = [
        NATS_PASSWORD,
        MONGO_PASSWORD,
        MONGO_AUTH_SOURCE,
        LOGIN,
        PASSWORD,
        visitor_token.as_str(),
        agent_token.as_str(),
        switchboard_tests::system::SECRET,
    ];
    for line in &logs {
        for secret in secrets {
            assert!(
                !line.contains(secret),
                "a secret ({}…) is in a log line: {line}",
                &secret[..6]
            );
        }
    }
}
