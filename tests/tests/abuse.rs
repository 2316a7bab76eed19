//! One client cannot crowd out the others: sign-ups, login attempts and
//! connections are limited per address (and per login, per identity) with
//! 429 and `Retry-After`, and profile changes per visitor; a flood of
//! logins does not stall chat on the same edge; an over-long login never
//! reaches NATS; `start` names a real team; a retried send costs a bounded
//! number of reads; the queue snapshot stays small however long the queue;
//! the missed list comes in pages.

use std::net::{IpAddr, SocketAddr};

use serde_json::{json, Value};
use switchboard_protocol::ids::ConversationId;
use switchboard_protocol::payloads::{Participant, RecordBody};
use switchboard_tests::system::{System, PASSWORD};
use switchboard_tests::ws::Ws;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A POST from a given loopback address: `(status, lowercase head, body)`.
async fn post_from(from: IpAddr, edge: SocketAddr, path: &str, body: &str) -> (u16, String, Value) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    let mut stream = socket.connect(edge).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {edge}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (
        status,
        head.to_lowercase(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

fn loopback(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ups_logins_and_connections_are_limited_per_address_and_identity() {
    let mut system = System::start_env(&[
        ("SWITCHBOARD_EDGE__SIGNUPS_PER_ADDRESS_PER_MINUTE", "3"),
        ("SWITCHBOARD_EDGE__LOGINS_PER_ADDRESS_PER_MINUTE", "4"),
        ("SWITCHBOARD_EDGE__LOGINS_PER_ACCOUNT_PER_MINUTE", "2"),
        ("SWITCHBOARD_EDGE__SOCKETS_PER_ADDRESS", "3"),
        ("SWITCHBOARD_EDGE__SOCKETS_PER_IDENTITY", "2"),
    ])
    .await;
    // Clients come from several loopback addresses (127.0.0.x).
    let edge = system.edge().await;
    system.add_agent("ann", 2, None).await;

    // Sign-ups: three from one address, then 429 with Retry-After.
    let mut token = String::new();
    for _ in 0..3 {
        let (status, _, body) = post_from(loopback(1), edge, "/api/v1/visitors", "{}").await;
        assert_eq!(status, 201, "{body}");
        token = body["token"].as_str().unwrap().to_owned();
    }
    let (status, head, body) = post_from(loopback(1), edge, "/api/v1/visitors", "{}").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"], "rate_limited");
    let retry_after: u64 = head
        .lines()
        .find_map(|l| l.strip_prefix("retry-after: "))
        .unwrap_or_else(|| panic!("no retry-after: {head}"))
        .trim()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    // Another address is not held up.
    assert_eq!(
        post_from(loopback(2), edge, "/api/v1/visitors", "{}")
            .await
            .0,
        201
    );

    // Logins: two attempts per login, then 429 even with the password...
    let wrong = json!({ "login": "ann", "password": "not-it" }).to_string();
    let right = json!({ "login": "ann", "password": PASSWORD }).to_string();
    for _ in 0..2 {
        assert_eq!(
            post_from(loopback(3), edge, "/api/v1/agents/login", &wrong)
                .await
                .0,
            401
        );
    }
    let (status, _, body) = post_from(loopback(4), edge, "/api/v1/agents/login", &right).await;
    assert_eq!(status, 429, "{body}");
    // ...and four per address, whatever the login.
    let other = json!({ "login": "bob", "password": "x-x-x-x-x" }).to_string();
    for _ in 0..2 {
        assert_eq!(
            post_from(loopback(3), edge, "/api/v1/agents/login", &other)
                .await
                .0,
            401
        );
    }
    assert_eq!(
        post_from(loopback(3), edge, "/api/v1/agents/login", &other)
            .await
            .0,
        429
    );

    // Connections: two per identity (tabs), wherever they come from...
    let hello = |token: String| json!({ "type": "hello", "token": token });
    // (One after the other: tabs opened at once are admitted in whichever
    // order their hellos are handled.)
    let mut tabs = Vec::new();
    for n in [5, 6] {
        let mut ws = Ws::connect_from(edge, loopback(n)).await.unwrap();
        ws.send(hello(token.clone())).await;
        ws.expect_type("welcome").await;
        tabs.push(ws);
    }
    let mut third = Ws::connect_from(edge, loopback(7)).await.unwrap();
    third.send(hello(token.clone())).await;
    assert_eq!(third.expect_close().await, 4429);
    // ...and three per address, whoever they are.
    let mut held = Vec::new();
    for _ in 0..3 {
        let (status, _, body) = post_from(loopback(8), edge, "/api/v1/visitors", "{}").await;
        assert_eq!(status, 201, "{body}");
        let mut ws = Ws::connect_from(edge, loopback(9)).await.unwrap();
        ws.send(hello(body["token"].as_str().unwrap().to_owned()))
            .await;
        ws.expect_type("welcome").await;
        held.push(ws);
    }
    assert_eq!(Ws::connect_from(edge, loopback(9)).await.err(), Some(429));
    assert!(Ws::connect_from(edge, loopback(10)).await.is_ok());
}

/// Logins at once in the flood (each check takes a good fraction of a
/// second of CPU).
const FLOOD: usize = 40;

/// A visitor changing their profile in a loop is limited per visitor
/// (`edge.profile_updates_per_minute`): each new name is an event that
/// every follower of their conversation receives, and past the limit no
/// more are written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_changes_are_limited_per_visitor() {
    let mut system =
        System::start_env(&[("SWITCHBOARD_EDGE__PROFILE_UPDATES_PER_MINUTE", "3")]).await;
    let edge = system.edge().await;
    let (_, token) = System::visitor(edge, "Ann").await;
    let (mut ann, _) = Ws::hello(edge, &token, json!({})).await;
    ann.send(json!({ "type": "start" })).await;
    let id = ann.expect_type("started").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let rename = |token: String, name: &'static str| async move {
        switchboard_tests::http::bearer(
            edge,
            "POST",
            "/api/v1/visitors/profile",
            Some(&token),
            Some(&json!({ "name": name }).to_string()),
        )
        .await
    };
    for name in ["Anna", "Annie", "Annabel"] {
        let response = rename(token.clone(), name).await;
        assert_eq!(response.status, 200, "{}", response.body);
    }
    let response = rename(token.clone(), "Annette").await;
    assert_eq!(response.status, 429, "{}", response.body);
    assert_eq!(
        response.json()["error"],
        "rate_limited",
        "{}",
        response.body
    );
    // Another visitor is not held up.
    let (_, other) = System::visitor(edge, "Bo").await;
    let response = rename(other, "Bob").await;
    assert_eq!(response.status, 200, "{}", response.body);
    // A message after them all: whatever was written is before it.
    let ack = ann.send_message(&id, "after", "done").await;
    ann.expect("the message", |f| {
        f["type"] == "message" && f["id"] == ack["id"]
    })
    .await;
    let renamed = ann
        .records(&id)
        .iter()
        .filter(|f| f["event"] == "renamed")
        .count();
    assert_eq!(renamed, 3, "{:#?}", ann.records(&id));
}

/// A login is at most 254 bytes, an e-mail address's limit. A longer one
/// is refused like a wrong one without asking NATS: its key would make a
/// subject longer than nats-server takes on one line, and the server
/// closes the connection of the client that sends it — the edge's, with
/// every conversation it follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_long_login_is_refused_and_never_reaches_the_backbone() {
    let mut system = System::start().await;
    let edge = system.edge().await;
    let longest = "b".repeat(254);
    system.add_agent(&longest, 2, None).await;

    let login = |login: &str| json!({ "login": login, "password": PASSWORD }).to_string();
    let (status, _, reply) = post_from(
        loopback(5),
        edge,
        "/api/v1/agents/login",
        &login(&"a".repeat(3000)),
    )
    .await;
    assert_eq!(status, 401, "{reply}");
    assert_eq!(reply["error"], "invalid_credentials", "{reply}");
    let (status, _, reply) =
        post_from(loopback(6), edge, "/api/v1/agents/login", &login(&longest)).await;
    assert_eq!(status, 200, "the longest login logs in: {reply}");

    let dropped: Vec<_> = system
        .nats
        .closed_connections()
        .await
        .into_iter()
        .filter(|(name, _)| name.contains("edge"))
        .collect();
    assert_eq!(dropped, Vec::new(), "the edge's NATS connection was closed");
}

/// Logins check passwords a few at a time, off the async workers: while a
/// flood of them is being checked, chat on the same edge goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_logins_does_not_stall_chat() {
    let mut system = System::with_workers().await;
    let edge = system
        .edge_with(&[
            ("SWITCHBOARD_EDGE__PASSWORD_CHECKS", "1"),
            // Round trips as fast as they go, past the per-connection rate.
            ("SWITCHBOARD_EDGE__RATE_PER_SEC", "100000"),
            ("SWITCHBOARD_EDGE__RATE_BURST", "100000"),
        ])
        .await;
    system.add_agent("ann", 2, None).await;
    let token = System::agent_token(edge, "ann").await;
    let (mut ann, _) = Ws::hello(edge, &token, json!({})).await;
    let (_, visitor_token) = System::visitor(edge, "Vic").await;
    let (mut vic, _) = Ws::hello(edge, &visitor_token, json!({})).await;
    vic.send(json!({ "type": "start" })).await;
    let id = vic.expect_type("started").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    vic.expect_event(&id, "assigned").await;

    let flood = tokio::spawn(async move {
        let wrong = json!({ "login": "ann", "password": "wrong-password" }).to_string();
        let logins: Vec<_> = (0..FLOOD)
            .map(|_| {
                let wrong = wrong.clone();
                tokio::spawn(async move {
                    switchboard_tests::http::post(edge, "/api/v1/agents/login", &wrong).await
                })
            })
            .collect();
        for login in logins {
            assert_eq!(login.await.unwrap().status, 401);
        }
    });
    // Round trips while the flood is being checked.
    let mut round_trips = 0;
    while !flood.is_finished() {
        let said = vic
            .send_message(&id, &format!("v{round_trips}"), "still there?")
            .await;
        ann.expect("vic's message", |f| f["id"] == said["id"]).await;
        round_trips += 1;
    }
    flood.await.unwrap();
    assert!(
        round_trips >= 20,
        "chat made {round_trips} round trips while {FLOOD} logins were checked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_names_a_real_team() {
    let mut system =
        System::start_env(&[("SWITCHBOARD_ROUTER__TEAMS__VIP__STRATEGY", "longest_idle")]).await;
    system.router().await;
    system.add_agent("ann", 2, Some("sales")).await;
    let edge = system.edge().await;
    let start = |team: &'static str| async move {
        let (_, token) = System::visitor(edge, "Vic").await;
        let (mut ws, _) = Ws::hello(edge, &token, json!({})).await;
        ws.send(json!({ "type": "start", "team": team })).await;
        ws.expect("started or refused", |f| {
            f["type"] == "started" || f["type"] == "error"
        })
        .await
    };
    // Once the edge has read the accounts, a made-up team is refused...
    switchboard_tests::eventually("a made-up team refused", || async {
        let answer = start("made-up").await;
        (answer["type"] == "error").then_some(answer)
    })
    .await;
    assert_eq!(start("made-up").await["code"], "bad_request");
    // ...an agent's team and a configured team are taken.
    assert_eq!(start("sales").await["type"], "started");
    assert_eq!(start("vip").await["type"], "started");
}

/// A retried send is looked for only among the records after those the
/// client said it had seen: a client that retries again and again costs
/// the backbone a handful of messages each time, not hundreds of reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_sends_cost_a_bounded_number_of_reads() {
    let mut system = System::with_workers().await;
    let edge = system.edge().await;
    let (_, token) = System::visitor(edge, "Vic").await;
    let (mut vic, _) = Ws::hello(edge, &token, json!({})).await;
    vic.send(json!({ "type": "start" })).await;
    let id = vic.expect_type("started").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let backbone = system.backbone().await;
    let conversation: ConversationId = id.parse().unwrap();
    let mut last = 0;
    for i in 0..600 {
        last = backbone
            .log
            .append(
                &conversation,
                Participant::system("filler"),
                RecordBody::Message {
                    text: format!("filler {i}"),
                    client_id: format!("f{i}"),
                },
                None,
            )
            .await
            .unwrap()
            .record
            .seq;
    }
    // A client that has seen everything so far retries 20 sends.
    let (mut back, _) = Ws::hello(edge, &token, json!({ id.clone(): last })).await;
    back.expect_type("resumed").await;
    let before = system.nats.messages_in().await;
    for n in 0..20 {
        back.send(json!({
            "type": "send", "conversation_id": id, "client_id": format!("r{n}"),
            "text": "again", "retry": true,
        }))
        .await;
        back.expect("its ack", |f| {
            f["type"] == "ack" && f["client_id"] == format!("r{n}")
        })
        .await;
    }
    let cost = system.nats.messages_in().await - before;
    // Each send: a few requests (tail, store, receipts); reading 500
    // records for each would be 10,000.
    assert!(cost < 1_000, "20 retried sends cost {cost} NATS messages");
}

/// However long the queue, agents get its head and every team's count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_snapshot_stays_small_however_long_the_queue() {
    let mut system = System::with_workers().await;
    // The teams exist (their agents are not online).
    system.add_agent("sam", 1, Some("sales")).await;
    system.add_agent("sue", 1, Some("support")).await;
    let edge = system.edge().await;
    let mut visitors = Vec::new();
    for n in 0..230 {
        let (_, token) = System::visitor(edge, &format!("V{n}")).await;
        let (mut ws, _) = Ws::hello(edge, &token, json!({})).await;
        let team = if n % 2 == 0 { "sales" } else { "support" };
        ws.send(json!({ "type": "start", "team": team })).await;
        ws.expect_type("started").await;
        visitors.push(ws);
    }
    system.add_agent("amy", 1, Some("billing")).await;
    let token = System::agent_token(edge, "amy").await;
    let (mut amy, _) = Ws::hello(edge, &token, json!({})).await;
    let queue = amy
        .expect("the whole queue counted", |f| {
            f["type"] == "queue" && f["total"] == 230
        })
        .await;
    let entries = queue["entries"].as_array().unwrap();
    assert_eq!(
        entries.len(),
        200,
        "the snapshot carries the head of the queue"
    );
    let teams = queue["teams"].as_array().unwrap();
    let waiting = |team: &str| {
        teams
            .iter()
            .find(|t| t["team"] == team)
            .map(|t| t["waiting"].as_u64().unwrap())
    };
    assert_eq!(
        (waiting("sales"), waiting("support")),
        (Some(115), Some(115))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_missed_list_comes_in_pages() {
    let mut system = System::with_workers().await;
    let edge = system.edge().await;
    let mut left = Vec::new();
    for n in 0..7 {
        let (_, token) = System::visitor(edge, &format!("V{n}")).await;
        let (mut ws, _) = Ws::hello(edge, &token, json!({})).await;
        ws.send(json!({ "type": "leave_message", "text": format!("call me {n}") }))
            .await;
        left.push(ws.expect_type("started").await["conversation_id"].clone());
    }
    system.add_agent("amy", 1, None).await;
    let token = System::agent_token(edge, "amy").await;
    let (mut amy, _) = Ws::hello(edge, &token, json!({})).await;
    let mut listed = Vec::new();
    let mut after = Value::Null;
    loop {
        amy.send(json!({ "type": "list_missed", "limit": 3, "after": after }))
            .await;
        // The page that answers, not the first page sent unasked.
        let page = amy
            .expect("a page of the missed list", |f| {
                f["type"] == "missed" && f["asked"] == true
            })
            .await;
        let entries = page["entries"].as_array().unwrap();
        assert!(entries.len() <= 3);
        listed.extend(entries.iter().map(|e| e["conversation_id"].clone()));
        if page["has_more"] != true {
            break;
        }
        after = entries.last().unwrap()["conversation_id"].clone();
    }
    let mut expected = left.clone();
    expected.sort_by_key(|v| v.as_str().unwrap().to_owned());
    assert_eq!(
        listed, expected,
        "every missed conversation once, oldest first"
    );
    amy.send(json!({ "type": "list_missed", "limit": 1000 }))
        .await;
    amy.expect_error("bad_request").await;
}
