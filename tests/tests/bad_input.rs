//! Bad input over real sockets against a real edge process: every malformed,
//! unauthorized, oversized or too frequent frame is answered as the browser
//! contract (docs/protocol.md) says, is logged, never crashes the edge, and never
//! shows anyone another user's data. While it happens, a "control"
//! connection on the same edge keeps being served; each test ends by proving
//! it (its message is acknowledged and in its history) and that the edge
//! still answers `/readyz`.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use switchboard_edge::auth::{Identity, Tokens};
use switchboard_protocol::ids::VisitorId;
use switchboard_tests::system::{node_binary, System, DATABASE, PASSWORD, SECRET};
use switchboard_tests::ws::{Incoming, Ws};
use switchboard_tests::{eventually, free_port, http};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Ids a NATS subject must never see, and other ids the id rule refuses.
const BAD_IDS: [&str; 6] = [
    "c.1",
    "c*",
    ">",
    "c 1",
    "",
    "c_0123456789012345678901234567890123456789012345678901234567890123",
];

/// A visitor connected to `edge` with an open conversation.
async fn visitor_in_conversation(edge: SocketAddr, name: &str) -> (Ws, String) {
    let (_, token) = System::visitor(edge, name).await;
    let (mut ws, _welcome) = Ws::hello(edge, &token, json!({})).await;
    ws.send(json!({ "type": "start" })).await;
    let started = ws.expect_type("started").await;
    let conversation = started["conversation_id"].as_str().unwrap().to_owned();
    (ws, conversation)
}

/// The next `error` frame, which must carry `code` and `reference` as `ref`.
async fn expect_refusal(ws: &mut Ws, code: &str, reference: Value) -> Value {
    let error = ws.expect_error(code).await;
    assert_eq!(error["ref"], reference, "unexpected ref in {error}");
    error
}

/// The next `error` frame must be a `bad_request` for a frame that did not
/// parse (so no id in it went further), naming `reference`.
async fn expect_unparsed(ws: &mut Ws, reference: Value) {
    let error = expect_refusal(ws, "bad_request", reference).await;
    let message = error["message"].as_str().unwrap();
    assert!(message.starts_with("invalid frame"), "{error}");
}

/// The `client_id`s of the messages of a conversation, from a `history`
/// request (which must be answered, not refused).
async fn messages_in_history(ws: &mut Ws, conversation: &str) -> Vec<String> {
    ws.send(json!({ "type": "history", "conversation_id": conversation, "limit": 100 }))
        .await;
    let answer = ws
        .expect("history or error", |f| {
            f["type"] == "history" || f["type"] == "error"
        })
        .await;
    assert_eq!(answer["type"], "history", "history refused: {answer}");
    assert_eq!(answer["conversation_id"], conversation);
    client_ids(answer["items"].as_array().unwrap())
}

fn client_ids<'a>(items: impl IntoIterator<Item = &'a Value>) -> Vec<String> {
    items
        .into_iter()
        .filter(|item| item["type"] == "message")
        .map(|item| item["client_id"].as_str().unwrap().to_owned())
        .collect()
}

/// The edge still serves: the control's new message is acknowledged and in
/// its history, and `/readyz` answers 200.
async fn assert_still_serving(edge: SocketAddr, control: &mut Ws, conversation: &str) {
    let client_id = format!("control-{}", free_port());
    let ack = control
        .send_message(conversation, &client_id, "still served?")
        .await;
    assert_eq!(ack["conversation_id"], conversation);
    let history = messages_in_history(control, conversation).await;
    assert!(
        history.contains(&client_id),
        "{client_id} missing from {history:?}"
    );
    let ready = http::get(edge, "/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
}

/// Opens a connection whose first frame is `first`: it must be refused with
/// `unauthorized` and closed with 4401, without a `welcome`.
async fn refused_at_hello(edge: SocketAddr, first: String) -> Value {
    let mut ws = Ws::connect(edge).await;
    ws.send_raw(first.clone()).await;
    let error = ws.expect_error("unauthorized").await;
    assert_eq!(ws.expect_close().await, 4401, "after {first}");
    assert!(
        !ws.seen.iter().any(|f| f["type"] == "welcome"),
        "welcomed after {first}: {:?}",
        ws.seen
    );
    error
}

fn hello(token: &str) -> String {
    json!({ "type": "hello", "token": token }).to_string()
}

/// A `send` frame of exactly `len` bytes.
fn send_frame_of_len(conversation: &str, client_id: &str, len: usize) -> String {
    let frame = |text: &str| {
        json!({ "type": "send", "conversation_id": conversation, "client_id": client_id, "text": text })
            .to_string()
    };
    let text = "x".repeat(len - frame("").len());
    let framed = frame(&text);
    assert_eq!(framed.len(), len);
    framed
}

/// An HS256 token over any claims.
fn signed(secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The next answer to a request, in words: `frame <type>`, `error <code>`
/// or `close <code>`; records and signals arriving meanwhile are skipped.
async fn answer(ws: &mut Ws) -> String {
    loop {
        return match ws.next().await {
            Incoming::Frame(f)
                if ["message", "event", "typing", "read"]
                    .contains(&f["type"].as_str().unwrap_or_default()) =>
            {
                continue
            }
            Incoming::Frame(f) if f["type"] == "error" => {
                format!("error {}", f["code"].as_str().unwrap())
            }
            Incoming::Frame(f) => format!("frame {}", f["type"].as_str().unwrap()),
            Incoming::Closed(code) => format!("close {code}"),
        };
    }
}

#[tokio::test]
async fn malformed_frames_get_bad_request_and_the_connection_stays_open() {
    let mut system = System::start().await;
    // Some seventy frames in a row: the rate limit is another test's.
    let edge = system
        .edge_with(&[
            ("SWITCHBOARD_EDGE__RATE_PER_SEC", "1000"),
            ("SWITCHBOARD_EDGE__RATE_BURST", "1000"),
        ])
        .await;
    let (mut control, control_conversation) = visitor_in_conversation(edge, "Control").await;
    let (mut ws, conversation) = visitor_in_conversation(edge, "Ann").await;

    // Not JSON, or no object with a `type`: nothing to refer to.
    let deep = "[".repeat(10_000);
    for garbage in [
        r#"{"type":"send","#,
        "not json",
        "",
        "[]",
        "42",
        "null",
        r#""hello""#,
        &deep,
    ] {
        ws.send_raw(garbage.to_owned()).await;
        expect_unparsed(&mut ws, Value::Null).await;
    }
    // Deep nesting inside a frame with a type: no stack overflow, the type
    // is still named.
    let nested = format!(
        r#"{{"type":"send","text":{}{}}}"#,
        "[".repeat(7_000),
        "]".repeat(7_000)
    );
    ws.send_raw(nested).await;
    expect_unparsed(&mut ws, json!("send")).await;

    // An unknown type is named in `ref`.
    ws.send(json!({ "type": "launch" })).await;
    expect_unparsed(&mut ws, json!("launch")).await;

    // Known types with missing, mistyped or unknown fields.
    for (frame, kind) in [
        (json!({ "type": "send" }), "send"),
        // With a client id, `ref` names it: the client knows which send failed.
        (
            json!({ "type": "send", "conversation_id": conversation, "client_id": "k", "text": 7 }),
            "k",
        ),
        (
            json!({ "type": "send", "conversation_id": conversation, "client_id": "k", "text": "hi", "as": "agent" }),
            "k",
        ),
        (
            json!({ "type": "read", "conversation_id": conversation, "seq": -1 }),
            "read",
        ),
        (
            json!({ "type": "typing", "conversation_id": conversation, "state": "yes" }),
            "typing",
        ),
        (
            json!({ "type": "history", "conversation_id": conversation, "limit": -1 }),
            "history",
        ),
        (json!({ "type": "status", "status": "asleep" }), "status"),
    ] {
        ws.send(frame).await;
        expect_unparsed(&mut ws, json!(kind)).await;
    }

    // Ids with `.`, `*`, `>` (or otherwise outside the id rule) in every
    // frame that names a conversation, and in a team.
    for bad in BAD_IDS {
        for (frame, kind) in [
            (
                json!({ "type": "send", "conversation_id": bad, "client_id": "k", "text": "hi" }),
                "k",
            ),
            (
                json!({ "type": "history", "conversation_id": bad }),
                "history",
            ),
            (
                json!({ "type": "typing", "conversation_id": bad, "state": true }),
                "typing",
            ),
            (
                json!({ "type": "read", "conversation_id": bad, "seq": 1 }),
                "read",
            ),
            (json!({ "type": "close", "conversation_id": bad }), "close"),
            (json!({ "type": "start", "team": bad }), "start"),
        ] {
            ws.send(frame).await;
            expect_unparsed(&mut ws, json!(kind)).await;
        }
    }
    // …and in the resume keys of a (second) hello.
    for bad in ["c.1", "c*", ">"] {
        ws.send(json!({ "type": "hello", "token": "t", "resume": { bad: 1 } }))
            .await;
        expect_unparsed(&mut ws, json!("hello")).await;
    }
    ws.send(json!({ "type": "hello", "token": "t" })).await;
    let again = expect_refusal(&mut ws, "bad_request", json!("hello")).await;
    assert!(
        again["message"].as_str().unwrap().contains("already"),
        "{again}"
    );

    // Well-formed frames with bad values.
    ws.send(json!({ "type": "send", "conversation_id": conversation, "client_id": "blank", "text": " \n\t " }))
        .await;
    expect_refusal(&mut ws, "bad_request", json!("blank")).await;
    let long_id = "k".repeat(65);
    for client_id in ["has space", "line\nbreak", "", long_id.as_str()] {
        ws.send(json!({ "type": "send", "conversation_id": conversation, "client_id": client_id, "text": "hi" }))
            .await;
        expect_refusal(&mut ws, "bad_request", json!(client_id)).await;
    }
    for limit in [0, 101] {
        ws.send(json!({ "type": "history", "conversation_id": conversation, "limit": limit }))
            .await;
        expect_refusal(&mut ws, "bad_request", json!("history")).await;
    }

    // Binary frames are refused.
    ws.send_binary(b"{\"type\":\"start\"}".to_vec()).await;
    let binary = expect_refusal(&mut ws, "bad_request", Value::Null).await;
    assert!(
        binary["message"].as_str().unwrap().contains("text"),
        "{binary}"
    );

    // Still open, and none of the refused sends was stored.
    ws.send_message(&conversation, "after-garbage", "still talking")
        .await;
    assert_eq!(
        messages_in_history(&mut ws, &conversation).await,
        ["after-garbage"]
    );

    assert_still_serving(edge, &mut control, &control_conversation).await;
}

#[tokio::test]
async fn hello_must_come_first_in_time_with_a_valid_token() {
    let mut system = System::start().await;
    let edge = system
        .edge_with(&[("SWITCHBOARD_EDGE__HELLO_TIMEOUT", "1s")])
        .await;
    let (mut control, control_conversation) = visitor_in_conversation(edge, "Control").await;
    let (visitor_id, token) = System::visitor(edge, "Ann").await;

    // Any other frame first: unauthorized, naming it, then 4401.
    let send = json!({ "type": "send", "conversation_id": control_conversation, "client_id": "k", "text": "hi" });
    let error = refused_at_hello(edge, send.to_string()).await;
    assert_eq!(error["ref"], "send");
    let error = refused_at_hello(edge, json!({ "type": "start" }).to_string()).await;
    assert_eq!(error["ref"], "start");

    // Unreadable hellos.
    for first in [
        "{".to_owned(),
        json!({ "type": "hello" }).to_string(),
        json!({ "type": "hello", "token": 42 }).to_string(),
        json!({ "type": "hello", "token": token, "resume": { "c.1": 1 } }).to_string(),
        json!({ "type": "hello", "token": token, "resume": { "c*": 1 } }).to_string(),
        json!({ "type": "hello", "token": token, "resume": { ">": 1 } }).to_string(),
    ] {
        let error = refused_at_hello(edge, first).await;
        assert_eq!(error["ref"], "hello");
    }

    // Tokens that are not ours.
    let (head, signature) = token.rsplit_once('.').unwrap();
    let mut flipped: Vec<char> = signature.chars().collect();
    flipped[0] = if flipped[0] == 'A' { 'B' } else { 'A' };
    let flipped = format!("{head}.{}", flipped.into_iter().collect::<String>());
    let identity = Identity::Visitor {
        id: VisitorId::new(visitor_id.clone()).unwrap(),
        name: "Ann".into(),
    };
    let other_secret = Tokens::new("another-secret-of-at-least-32-bytes!")
        .issue(&identity, Duration::from_secs(3600))
        .unwrap();
    let header = head.split('.').next().unwrap();
    // {"sub":"a_mallory","role":"agent","name":"Mallory","iat":1700000000,"exp":4102444800}
    let elevated = format!(
        "{header}.eyJzdWIiOiJhX21hbGxvcnkiLCJyb2xlIjoiYWdlbnQiLCJuYW1lIjoiTWFsbG9yeSIsImlhdCI6MTcwMDAwMDAwMCwiZXhwIjo0MTAyNDQ0ODAwfQ.{signature}"
    );
    let payload = head.split('.').nth(1).unwrap();
    // {"alg":"none","typ":"JWT"}, no signature.
    let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
    let now = now_secs();
    let claims = |sub: &str, role: &str, exp: u64| json!({ "sub": sub, "role": role, "name": "Ann", "iat": now - 7200, "exp": exp });
    // An hour past expiry, far beyond the edge's 5 s leeway.
    let expired = signed(SECRET, &claims(&visitor_id, "visitor", now - 3600));
    let system_role = signed(SECRET, &claims("v_1", "system", now + 3600));
    let unknown_role = signed(SECRET, &claims("v_1", "admin", now + 3600));
    let dotted_subject = signed(SECRET, &claims("v.1", "visitor", now + 3600));
    for bad in [
        "garbage",
        "",
        "a.b.c",
        &flipped,
        &other_secret,
        &elevated,
        &unsigned,
        &expired,
        &system_role,
        &unknown_role,
        &dotted_subject,
    ] {
        let error = refused_at_hello(edge, hello(bad)).await;
        assert_eq!(error["ref"], "hello", "token {bad}");
    }
    // The crafted tokens differ from a good one only where intended: the
    // same claims, unexpired, are welcome.
    let fresh = signed(SECRET, &claims(&visitor_id, "visitor", now + 3600));
    let (_ws, welcome) = Ws::hello(edge, &fresh, json!({})).await;
    assert_eq!(welcome["id"], visitor_id.as_str());

    // A ping and a pong before the hello are not frames: welcome.
    let mut pinging = Ws::connect(edge).await;
    pinging.send_ping_and_pong().await;
    pinging.send_raw(hello(&token)).await;
    let welcome = pinging.expect_type("welcome").await;
    assert_eq!(welcome["id"], visitor_id.as_str());

    // No hello at all: 4408 after the (1 s) timeout, without an error frame.
    let mut silent = Ws::connect(edge).await;
    assert_eq!(silent.expect_close().await, 4408);
    assert!(silent.seen.is_empty(), "{:?}", silent.seen);

    // The control, connected all along (longer than the hello timeout).
    assert_still_serving(edge, &mut control, &control_conversation).await;
}

#[tokio::test]
async fn oversized_frames_close_and_long_texts_are_refused_unstored() {
    let mut system = System::start().await;
    system.router().await;
    let short_texts = system
        .edge_with(&[("SWITCHBOARD_EDGE__MAX_TEXT_CHARS", "50")])
        .await;
    let small_frames = system
        .edge_with(&[("SWITCHBOARD_EDGE__MAX_FRAME_BYTES", "2048")])
        .await;

    // Texts. The only agent (capacity 1) is online before Bob's conversation,
    // the first one, is opened: it is Alice's, and she must never see a
    // refused text.
    system.add_agent("alice", 1, None).await;
    let agent_token = System::agent_token(short_texts, "alice").await;
    let (mut alice, _) = Ws::hello(short_texts, &agent_token, json!({})).await;
    let (mut bob, conversation) = visitor_in_conversation(short_texts, "Bob").await;
    let assigned = alice.expect_type("assigned").await;
    assert_eq!(assigned["conversation_id"], conversation);
    let (mut text_control, text_control_conversation) =
        visitor_in_conversation(short_texts, "Control").await;

    // The limit counts characters, not bytes: 50 two-byte characters pass.
    bob.send_message(&conversation, "fifty", &"é".repeat(50))
        .await;
    let too_long = "a".repeat(51);
    bob.send(json!({ "type": "send", "conversation_id": conversation, "client_id": "too-long", "text": too_long }))
        .await;
    let error = expect_refusal(&mut bob, "too_large", json!("too-long")).await;
    assert!(error["message"].as_str().unwrap().contains("50"), "{error}");
    bob.send(json!({ "type": "start", "text": too_long, "client_id": "start-too-long" }))
        .await;
    expect_refusal(&mut bob, "too_large", json!("start")).await;
    bob.send_message(&conversation, "after", "short").await;

    // Alice gets "after"; had a refused text been stored, its lower seq
    // would have been delivered before it.
    alice
        .expect("message after", |f| {
            f["type"] == "message" && f["client_id"] == "after"
        })
        .await;
    assert_eq!(
        client_ids(&alice.records(&conversation)),
        ["fifty", "after"]
    );
    assert!(
        !alice.seen.iter().any(|f| f.to_string().contains(&too_long)),
        "{:?}",
        alice.seen
    );
    assert_eq!(
        messages_in_history(&mut bob, &conversation).await,
        ["fifty", "after"]
    );
    assert_eq!(
        messages_in_history(&mut alice, &conversation).await,
        ["fifty", "after"]
    );
    assert_still_serving(short_texts, &mut text_control, &text_control_conversation).await;

    // Frames: up to the limit is served, over it closes with 1009.
    let (mut frame_control, frame_control_conversation) =
        visitor_in_conversation(small_frames, "Control").await;
    let (_, ann_token) = System::visitor(small_frames, "Ann").await;
    let (mut ann, _) = Ws::hello(small_frames, &ann_token, json!({})).await;
    ann.send(json!({ "type": "start" })).await;
    let conversation = ann.expect_type("started").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    ann.send_raw(send_frame_of_len(&conversation, "at-limit", 2048))
        .await;
    assert_eq!(answer(&mut ann).await, "frame ack");
    ann.send_raw(send_frame_of_len(&conversation, "over-limit", 3000))
        .await;
    assert_eq!(answer(&mut ann).await, "close 1009");
    // Back again: the oversized frame was not stored.
    let (mut ann, welcome) = Ws::hello(small_frames, &ann_token, json!({})).await;
    assert_eq!(
        welcome["conversations"][0]["conversation_id"],
        conversation.as_str()
    );
    assert_eq!(
        messages_in_history(&mut ann, &conversation).await,
        ["at-limit"]
    );
    assert_still_serving(
        small_frames,
        &mut frame_control,
        &frame_control_conversation,
    )
    .await;
}

#[tokio::test]
async fn nobody_touches_a_conversation_that_is_not_theirs() {
    let mut system = System::start().await;
    system.router().await;
    let edge = system.edge().await;
    system.add_agent("alice", 1, None).await;
    system.add_agent("bruno", 1, None).await;

    // Alice (capacity 1) gets the victim's conversation, Bruno the control's.
    let alice_token = System::agent_token(edge, "alice").await;
    let (mut alice, _) = Ws::hello(edge, &alice_token, json!({})).await;
    let (mut victim, victim_conversation) = visitor_in_conversation(edge, "Victim").await;
    let assigned = alice.expect_type("assigned").await;
    assert_eq!(assigned["conversation_id"], victim_conversation);
    victim
        .send_message(&victim_conversation, "secret", "my card number is 4242")
        .await;
    alice
        .expect("the secret", |f| {
            f["type"] == "message" && f["client_id"] == "secret"
        })
        .await;
    let bruno_token = System::agent_token(edge, "bruno").await;
    let (mut bruno, welcome) = Ws::hello(edge, &bruno_token, json!({})).await;
    assert_eq!(welcome["conversations"], json!([]));
    let (mut control, control_conversation) = visitor_in_conversation(edge, "Control").await;
    let assigned = bruno.expect_type("assigned").await;
    assert_eq!(assigned["conversation_id"], control_conversation);

    // Another visitor: resuming the victim's conversation is refused and
    // replays nothing of it.
    let (_, mallory_token) = System::visitor(edge, "Mallory").await;
    let mut resume = Map::new();
    resume.insert(victim_conversation.clone(), json!(0));
    let (mut mallory, welcome) =
        Ws::hello(edge, &mallory_token, Value::Object(resume.clone())).await;
    assert_eq!(welcome["conversations"], json!([]));
    expect_refusal(&mut mallory, "forbidden", json!(victim_conversation)).await;
    mallory.send(json!({ "type": "start" })).await;
    let started = mallory.expect_type("started").await;
    let mallory_conversation = started["conversation_id"].as_str().unwrap().to_owned();
    assert_ne!(mallory_conversation, victim_conversation);

    // Every frame naming the victim's conversation is refused.
    let trespass = |client_id: &str| {
        [
            (
                json!({ "type": "send", "conversation_id": victim_conversation, "client_id": client_id, "text": "pay me" }),
                client_id.to_owned(),
            ),
            (
                json!({ "type": "history", "conversation_id": victim_conversation }),
                "history".into(),
            ),
            (
                json!({ "type": "history", "conversation_id": victim_conversation, "before_seq": 1000, "limit": 100 }),
                "history".into(),
            ),
            (
                json!({ "type": "typing", "conversation_id": victim_conversation, "state": true }),
                "typing".into(),
            ),
            (
                json!({ "type": "read", "conversation_id": victim_conversation, "seq": 1 }),
                "read".into(),
            ),
            (
                json!({ "type": "close", "conversation_id": victim_conversation }),
                "close".into(),
            ),
        ]
    };
    for (frame, reference) in trespass("m-send") {
        mallory.send(frame).await;
        expect_refusal(&mut mallory, "forbidden", json!(reference)).await;
    }
    // A conversation that does not exist is not found.
    mallory
        .send(json!({ "type": "send", "conversation_id": "c_nope", "client_id": "m-ghost", "text": "hi" }))
        .await;
    expect_refusal(&mut mallory, "not_found", json!("m-ghost")).await;
    assert!(
        !mallory
            .seen
            .iter()
            .any(|f| f["conversation_id"] == victim_conversation || f.to_string().contains("4242")),
        "mallory saw the victim's conversation: {:?}",
        mallory.seen
    );

    // An agent it is not assigned to: the same.
    for (frame, reference) in trespass("b-send") {
        bruno.send(frame).await;
        expect_refusal(&mut bruno, "forbidden", json!(reference)).await;
    }
    let (mut bruno_again, _) = Ws::hello(edge, &bruno_token, Value::Object(resume)).await;
    expect_refusal(&mut bruno_again, "forbidden", json!(victim_conversation)).await;
    for ws in [&bruno, &bruno_again] {
        assert!(
            !ws.seen
                .iter()
                .any(|f| f["conversation_id"] == victim_conversation
                    || f.to_string().contains("4242")),
            "bruno saw the victim's conversation: {:?}",
            ws.seen
        );
    }

    // Role checks: agents do not start conversations, visitors have no status.
    bruno.send(json!({ "type": "start" })).await;
    expect_refusal(&mut bruno, "forbidden", json!("start")).await;
    mallory
        .send(json!({ "type": "status", "status": "away" }))
        .await;
    expect_refusal(&mut mallory, "forbidden", json!("status")).await;

    // The trespassers still work in their own conversations.
    mallory
        .send_message(&mallory_conversation, "m-own", "hello?")
        .await;
    bruno
        .send_message(&control_conversation, "b-own", "how can I help?")
        .await;
    control
        .expect("bruno's answer", |f| {
            f["type"] == "message" && f["client_id"] == "b-own"
        })
        .await;

    // The victim's conversation is untouched and still open: Alice gets
    // the next message with nothing in between.
    victim
        .send_message(&victim_conversation, "after", "still there?")
        .await;
    alice
        .expect("message after", |f| {
            f["type"] == "message" && f["client_id"] == "after"
        })
        .await;
    assert_eq!(
        client_ids(&alice.records(&victim_conversation)),
        ["secret", "after"]
    );
    assert_eq!(
        messages_in_history(&mut victim, &victim_conversation).await,
        ["secret", "after"]
    );
    assert_eq!(
        messages_in_history(&mut alice, &victim_conversation).await,
        ["secret", "after"]
    );

    assert_still_serving(edge, &mut control, &control_conversation).await;
}

#[tokio::test]
async fn flooding_is_rate_limited_then_disconnected() {
    let mut system = System::start().await;
    let edge = system
        .edge_with(&[
            ("SWITCHBOARD_EDGE__RATE_PER_SEC", "1"),
            ("SWITCHBOARD_EDGE__RATE_BURST", "3"),
        ])
        .await;
    // The control sends three frames in all (start, send, history): its burst.
    let (mut control, control_conversation) = visitor_in_conversation(edge, "Control").await;
    let (mut flooder, conversation) = visitor_in_conversation(edge, "Flood").await;

    // One frame at a time, each answered: `start` used one of the burst of
    // three, two more are served, three refused, the next one closes.
    let mut answers: Vec<String> = Vec::new();
    while answers.last().is_none_or(|a| !a.starts_with("close")) {
        assert!(answers.len() < 20, "never disconnected: {answers:?}");
        flooder
            .send(json!({ "type": "history", "conversation_id": conversation, "limit": 1 }))
            .await;
        answers.push(answer(&mut flooder).await);
    }
    assert_eq!(
        answers,
        [
            "frame history",
            "frame history",
            "error rate_limited",
            "error rate_limited",
            "error rate_limited",
            "close 4429",
        ]
    );

    assert_still_serving(edge, &mut control, &control_conversation).await;
}

#[tokio::test]
async fn http_bad_input_gets_json_errors() {
    let mut system = System::start().await;
    let edge = system.edge().await;
    let (mut control, control_conversation) = visitor_in_conversation(edge, "Control").await;
    system.add_agent("alice", 1, None).await;

    for body in [
        "{",
        r#"{"name":"#,
        "[1]",
        r#"{"name":42}"#,
        r#"{"nickname":"Ann"}"#,
    ] {
        let response = http::post(edge, "/api/v1/visitors", body).await;
        assert_eq!(response.status, 400, "{body}: {}", response.body);
        assert_eq!(response.json()["error"], "bad_request", "{body}");
    }
    let long_name = json!({ "name": "n".repeat(81) }).to_string();
    let response = http::post(edge, "/api/v1/visitors", &long_name).await;
    assert_eq!(response.status, 400, "{}", response.body);
    assert_eq!(response.json()["error"], "bad_request");
    // Far over the body limit: refused before it is read.
    let huge = json!({ "name": "n".repeat(20_000) }).to_string();
    assert_eq!(
        http::post(edge, "/api/v1/visitors", &huge).await.status,
        413
    );

    let wrong_password = http::post(
        edge,
        "/api/v1/agents/login",
        &json!({ "login": "alice", "password": "not-the-password" }).to_string(),
    )
    .await;
    assert_eq!(wrong_password.status, 401, "{}", wrong_password.body);
    assert_eq!(wrong_password.json()["error"], "invalid_credentials");
    let unknown = http::post(
        edge,
        "/api/v1/agents/login",
        &json!({ "login": "nobody", "password": PASSWORD }).to_string(),
    )
    .await;
    assert_eq!(unknown.status, 401, "{}", unknown.body);
    // Indistinguishable: the answer does not tell which logins exist.
    assert_eq!(unknown.json(), wrong_password.json());
    for body in [
        "{",
        r#"{"login":"alice"}"#,
        r#"{"login":["alice"],"password":"x"}"#,
    ] {
        let response = http::post(edge, "/api/v1/agents/login", body).await;
        assert_eq!(response.status, 400, "{body}: {}", response.body);
        assert_eq!(response.json()["error"], "bad_request", "{body}");
    }
    // The account itself is fine.
    System::agent_token(edge, "alice").await;

    assert_still_serving(edge, &mut control, &control_conversation).await;
}

/// An edge process whose log (JSON lines on stderr) the test reads.
struct LoggedEdge {
    addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
    _child: Child,
}

impl LoggedEdge {
    /// Starts like [`System::edge_with`] does, at log level info.
    async fn start(system: &System, extra: &[(&str, &str)]) -> Self {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut child = Command::new(node_binary())
            .arg("edge")
            .env_remove("SWITCHBOARD_CONFIG")
            .env("RUST_LOG", "info")
            .env("SWITCHBOARD_LOG__FORMAT", "json")
            .env("SWITCHBOARD_NATS__URL", system.nats.url())
            .env("SWITCHBOARD_MONGO__URI", system.mongo.uri())
            .env("SWITCHBOARD_MONGO__DATABASE", DATABASE)
            .env("SWITCHBOARD_AUTH__SECRET", SECRET)
            .env("SWITCHBOARD_EDGE__LISTEN", addr.to_string())
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        let sink = Arc::clone(&lines);
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        eventually("logged edge ready", || async move {
            match tokio::net::TcpStream::connect(addr).await {
                Ok(_) => (http::get(addr, "/readyz").await.status == 200).then_some(()),
                Err(_) => None,
            }
        })
        .await;
        Self {
            addr,
            lines,
            _child: child,
        }
    }

    /// Waits for a log event with this message whose record satisfies
    /// `matches`. The message is found in the raw line: an event with its
    /// own `message` field has two (see `json_log_events_keep_their_message`).
    async fn expect_log(&self, message: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let needle = format!("\"message\":\"{message}\"");
        eventually(&format!("log {message:?}"), || {
            let found = self.lines.lock().unwrap().iter().find_map(|line| {
                line.contains(&needle)
                    .then(|| serde_json::from_str::<Value>(line).ok())
                    .flatten()
                    .filter(|event| matches(event))
            });
            async move { found }
        })
        .await
    }
}

#[tokio::test]
async fn refusals_are_logged() {
    let system = System::start().await;
    let logged = LoggedEdge::start(
        &system,
        &[
            ("SWITCHBOARD_EDGE__HELLO_TIMEOUT", "1s"),
            ("SWITCHBOARD_EDGE__MAX_FRAME_BYTES", "2048"),
        ],
    )
    .await;
    let edge = logged.addr;
    let (mut control, control_conversation) = visitor_in_conversation(edge, "Control").await;
    let (ann_id, ann_token) = System::visitor(edge, "Ann").await;
    let (mut ws, _) = Ws::hello(edge, &ann_token, json!({})).await;
    ws.send(json!({ "type": "start" })).await;
    let conversation = ws.expect_type("started").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();

    ws.send(json!({ "type": "launch" })).await;
    expect_refusal(&mut ws, "bad_request", json!("launch")).await;
    let event = logged
        .expect_log("bad frame", |e| {
            e["fields"]["reference"]
                .as_str()
                .is_some_and(|k| k.contains("launch"))
        })
        .await;
    // Logged in the connection's span, naming who sent it.
    assert_eq!(event["span"]["id"], ann_id.as_str(), "{event}");

    ws.send(json!({ "type": "status", "status": "away" })).await;
    expect_refusal(&mut ws, "forbidden", json!("status")).await;
    logged
        .expect_log("frame refused", |e| {
            e["fields"]["kind"] == "status" && e["span"]["id"] == ann_id.as_str()
        })
        .await;

    ws.send_raw(send_frame_of_len(&conversation, "big", 3000))
        .await;
    assert_eq!(ws.expect_close().await, 1009);
    logged
        .expect_log("frame too large", |e| e["fields"]["bytes"] == 3000)
        .await;

    refused_at_hello(edge, json!({ "type": "start" }).to_string()).await;
    logged
        .expect_log("frame before hello", |e| e["fields"]["kind"] == "start")
        .await;
    refused_at_hello(edge, hello("garbage")).await;
    logged.expect_log("token refused", |_| true).await;
    let mut silent = Ws::connect(edge).await;
    assert_eq!(silent.expect_close().await, 4408);
    logged.expect_log("no hello in time", |_| true).await;

    assert_still_serving(edge, &mut control, &control_conversation).await;
    let lines = logged.lines.lock().unwrap().clone();
    assert!(
        !lines.iter().any(|l| l.contains("panicked")),
        "the edge panicked: {lines:#?}"
    );
}

#[tokio::test]
async fn binary_frames_count_against_the_rate_limit() {
    let mut system = System::start().await;
    let edge = system
        .edge_with(&[
            ("SWITCHBOARD_EDGE__RATE_PER_SEC", "1"),
            ("SWITCHBOARD_EDGE__RATE_BURST", "3"),
        ])
        .await;
    let (mut control, control_conversation) = visitor_in_conversation(edge, "Control").await;
    let (_, token) = System::visitor(edge, "Flood").await;
    let (mut flooder, _) = Ws::hello(edge, &token, json!({})).await;

    let mut outcomes = Vec::new();
    for _ in 0..7 {
        flooder.send_binary(vec![0]).await;
        let next = answer(&mut flooder).await;
        let closed = next.starts_with("close");
        outcomes.push(next);
        if closed {
            break;
        }
    }
    assert_eq!(
        outcomes,
        [
            "error bad_request",
            "error bad_request",
            "error bad_request",
            "error rate_limited",
            "error rate_limited",
            "error rate_limited",
            "close 4429",
        ]
    );
    assert_still_serving(edge, &mut control, &control_conversation).await;
}

#[tokio::test]
async fn every_frame_over_the_limit_closes_with_1009() {
    let mut system = System::start().await;
    let edge = system
        .edge_with(&[("SWITCHBOARD_EDGE__MAX_FRAME_BYTES", "2048")])
        .await;
    let (mut control, control_conversation) = visitor_in_conversation(edge, "Control").await;
    let (_, token) = System::visitor(edge, "Big").await;

    let mut outcomes = Vec::new();
    let (mut ws, conversation) = visitor_in_conversation(edge, "Big").await;
    ws.send_raw(send_frame_of_len(&conversation, "huge", 10_000))
        .await;
    outcomes.push(("10000-byte text frame", answer(&mut ws).await));
    let (mut ws, _) = Ws::hello(edge, &token, json!({})).await;
    ws.send_binary(vec![b'x'; 3000]).await;
    outcomes.push(("3000-byte binary frame", answer(&mut ws).await));
    let mut ws = Ws::connect(edge).await;
    let padding: Map<String, Value> = (0..100).map(|i| (format!("c_{i:026}"), json!(0))).collect();
    let big_hello = json!({ "type": "hello", "token": token, "resume": padding }).to_string();
    assert!(big_hello.len() > 3000);
    ws.send_raw(big_hello).await;
    outcomes.push(("3000-byte hello", answer(&mut ws).await));

    assert_eq!(
        outcomes,
        [
            ("10000-byte text frame", "close 1009".to_owned()),
            ("3000-byte binary frame", "close 1009".to_owned()),
            ("3000-byte hello", "close 1009".to_owned()),
        ]
    );
    assert_still_serving(edge, &mut control, &control_conversation).await;
}

#[tokio::test]
async fn a_binary_first_frame_closes_with_4401() {
    let mut system = System::start().await;
    let edge = system.edge().await;
    let (mut control, control_conversation) = visitor_in_conversation(edge, "Control").await;

    let mut ws = Ws::connect(edge).await;
    ws.send_binary(hello("t").into_bytes()).await;
    assert_eq!(answer(&mut ws).await, "error unauthorized");
    assert_eq!(ws.expect_close().await, 4401);

    assert_still_serving(edge, &mut control, &control_conversation).await;
}

#[tokio::test]
async fn json_log_events_keep_their_message() {
    let system = System::start().await;
    let logged = LoggedEdge::start(&system, &[]).await;
    let (_, token) = System::visitor(logged.addr, "Ann").await;
    let (mut ws, _) = Ws::hello(logged.addr, &token, json!({})).await;
    ws.send(json!({ "type": "status", "status": "away" })).await;
    expect_refusal(&mut ws, "forbidden", json!("status")).await;
    let event = logged
        .expect_log("frame refused", |e| e["fields"]["kind"] == "status")
        .await;
    // Two `message` keys in one object: JSON readers keep one of them.
    assert_eq!(event["fields"]["message"], "frame refused", "{event}");
}
