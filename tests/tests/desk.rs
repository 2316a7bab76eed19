//! What the inbox, the widget and the admin pages ask the edge over HTTP:
//! who is there (the directory, the widget's availability), canned
//! responses, admins managing agents and teams, the missed list pushed
//! live, visitors' details and past conversations from the archive.

use std::net::SocketAddr;

use serde_json::{json, Value};
use switchboard_tests::eventually;
use switchboard_tests::http::{self, bearer};
use switchboard_tests::system::{System, PASSWORD};
use switchboard_tests::ws::Ws;

/// A running system with an admin (`root`) and an agent (`bob`), and
/// their tokens.
struct Desk {
    system: System,
    edge: SocketAddr,
    admin: String,
    bob: String,
}

impl Desk {
    async fn start() -> Self {
        let mut system = System::with_workers().await;
        let edge = system.edge().await;
        system.add_admin("root").await;
        system.add_agent("bob", 1, None).await;
        let admin = System::agent_token(edge, "root").await;
        let bob = System::agent_token(edge, "bob").await;
        Self {
            system,
            edge,
            admin,
            bob,
        }
    }
}

async fn call(edge: SocketAddr, method: &str, path: &str, token: &str, body: Value) -> Value {
    let body = (!body.is_null()).then(|| body.to_string());
    let response = bearer(edge, method, path, Some(token), body.as_deref()).await;
    assert!(
        response.status < 300,
        "{method} {path}: {} {}",
        response.status,
        response.body
    );
    response.json()
}

/// Calls the API and checks that it refuses with `status` and a message.
async fn assert_call_refused(
    edge: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    status: u16,
    what: &str,
) {
    assert_refused(&bearer(edge, method, path, token, body).await, status, what);
}

fn assert_refused(response: &http::Response, status: u16, what: &str) {
    assert_eq!(response.status, status, "{what}: {}", response.body);
    assert!(
        response.json()["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: {}",
        response.body
    );
}

async fn availability(edge: SocketAddr, team: &str) -> Value {
    let response = http::get(edge, &format!("/api/v1/widget?team={team}")).await;
    assert_eq!(response.status, 200, "{}", response.body);
    response.json()
}

/// The directory entry of an agent, by name.
async fn listed(edge: SocketAddr, token: &str, name: &str) -> Value {
    let directory = call(edge, "GET", "/api/v1/directory", token, Value::Null).await;
    directory["agents"]
        .as_array()
        .and_then(|agents| agents.iter().find(|a| a["name"] == name))
        .cloned()
        .unwrap_or(Value::Null)
}

/// A new visitor `name` starts a conversation (for `team`, if given): their
/// connection, the conversation's id and their token.
async fn start(edge: SocketAddr, name: &str, team: Option<&str>) -> (Ws, String, String) {
    let (_, token) = System::visitor(edge, name).await;
    let (mut ws, _) = Ws::hello(edge, &token, json!({})).await;
    ws.send(json!({ "type": "start", "team": team, "text": "hello", "client_id": "s1" }))
        .await;
    let id = ws.expect_type("started").await["conversation_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (ws, id, token)
}

/// Nobody there: the widget says "nobody". Bob comes online: "online",
/// and the directory shows him online with no load. Vic's chat takes
/// Bob's one slot: his load is 1, and the next visitor would wait:
/// "queue". The directory is for agents only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_directory_and_the_widget_tell_who_can_answer() {
    let mut system = System::with_workers().await;
    let edge = system.edge().await;
    system.add_agent("bob", 1, Some("support")).await;
    assert_eq!(
        availability(edge, "support").await["availability"],
        "nobody"
    );

    let bob_token = System::agent_token(edge, "bob").await;
    let (mut bob, _) = Ws::hello(edge, &bob_token, json!({})).await;
    eventually("the widget saying someone is online", || async move {
        (availability(edge, "support").await["availability"] == "online").then_some(())
    })
    .await;
    let bob_ref = &bob_token;
    let entry = listed(edge, &bob_token, "Agent bob").await;
    assert_eq!(entry["status"], "online", "{entry}");
    assert_eq!(entry["team"], "support", "{entry}");
    assert_eq!(entry["load"], 0, "{entry}");
    assert!(
        entry.get("login").is_none(),
        "agents see no logins: {entry}"
    );

    let (_vic, id, _) = start(edge, "Vic", Some("support")).await;
    bob.expect("vic's conversation assigned", |f| {
        f["type"] == "assigned" && f["conversation_id"] == id.as_str()
    })
    .await;
    eventually("bob's load of one", || async move {
        (listed(edge, bob_ref, "Agent bob").await["load"] == 1).then_some(())
    })
    .await;
    let busy = eventually("the widget saying a visitor would wait", || async move {
        let answer = availability(edge, "support").await;
        (answer["availability"] == "queue").then_some(answer)
    })
    .await;
    assert_eq!(busy["agents_online"], 1, "{busy}");

    // Other teams have nobody.
    assert_eq!(availability(edge, "sales").await["availability"], "nobody");
    let response = http::get(edge, "/api/v1/widget?team=no%20spaces").await;
    assert_refused(&response, 400, "a bad team");
    let response = http::get(edge, "/api/v1/widget?colour=red").await;
    assert_refused(&response, 400, "an unknown parameter");
    let response = http::get(edge, "/api/v1/directory").await;
    assert_refused(&response, 401, "the directory without a token");
    let (_, visitor_token) = System::visitor(edge, "Eve").await;
    assert_call_refused(
        edge,
        "GET",
        "/api/v1/directory",
        Some(&visitor_token),
        None,
        403,
        "the directory for a visitor",
    )
    .await;
}

/// An admin adds Cara, who logs in; changes her capacity and team, makes
/// a team ask for a name first and take its visitors without the bot, and
/// disables Cara, who can no longer log in. Agents may do none of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_manage_agents_and_teams() {
    let Desk {
        system: _system,
        edge,
        admin,
        bob,
    } = Desk::start().await;

    let new_agent = json!({
        "login": "cara", "name": "Cara Diaz", "password": PASSWORD, "team": "sales",
    });
    assert_call_refused(
        edge,
        "POST",
        "/api/v1/admin/agents",
        Some(&bob),
        Some(&new_agent.to_string()),
        403,
        "an agent adding an agent",
    )
    .await;
    let cara = call(
        edge,
        "POST",
        "/api/v1/admin/agents",
        &admin,
        new_agent.clone(),
    )
    .await;
    assert_eq!(cara["role"], "agent", "{cara}");
    assert_eq!(cara["team"], "sales", "{cara}");
    let cara_id = cara["id"].as_str().unwrap_or_default().to_owned();
    assert_call_refused(
        edge,
        "POST",
        "/api/v1/admin/agents",
        Some(&admin),
        Some(&new_agent.to_string()),
        400,
        "a login taken",
    )
    .await;
    assert_call_refused(
        edge,
        "POST",
        "/api/v1/admin/agents",
        Some(&admin),
        Some(
            &json!({ "login": "dan", "name": "Dan", "password": PASSWORD, "role": "boss" })
                .to_string(),
        ),
        400,
        "an unknown role",
    )
    .await;
    System::agent_token(edge, "cara").await;

    let path = format!("/api/v1/admin/agents/{cara_id}");
    let changed = call(
        edge,
        "PATCH",
        &path,
        &admin,
        json!({ "capacity": 5, "team": "vip" }),
    )
    .await;
    assert_eq!(changed["capacity"], 5, "{changed}");
    assert_eq!(changed["team"], "vip", "{changed}");
    let admin_ref = &admin;
    let found = eventually("cara's change in the admin's list", || async move {
        let agents = call(edge, "GET", "/api/v1/admin/agents", admin_ref, Value::Null).await;
        agents["agents"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|a| a["login"] == "cara" && a["team"] == "vip")
            })
            .cloned()
    })
    .await;
    assert_eq!(found["capacity"], 5, "{found}");
    assert_eq!(found["role"], "agent", "{found}");
    // A change refused for one field changes none.
    assert_call_refused(
        edge,
        "PATCH",
        &path,
        Some(&admin),
        Some(&json!({ "capacity": 9, "role": "owner" }).to_string()),
        400,
        "an unknown role with a new capacity",
    )
    .await;
    let agents = call(edge, "GET", "/api/v1/admin/agents", admin_ref, Value::Null).await;
    let cara = agents["agents"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["login"] == "cara"))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(cara["capacity"], 5, "a refused change was written: {cara}");
    // Paths and methods the API does not have answer in its error shape.
    assert_call_refused(
        edge,
        "GET",
        "/api/v1/admin/nothing-here",
        Some(&admin),
        None,
        404,
        "an unknown path",
    )
    .await;
    assert_call_refused(
        edge,
        "DELETE",
        &path,
        Some(&admin),
        None,
        405,
        "a method the path does not take",
    )
    .await;

    // A new team, asking for a name first, without its bot first.
    assert_call_refused(
        edge,
        "PUT",
        "/api/v1/admin/teams/vip",
        Some(&admin),
        Some(&json!({ "strategy": "random" }).to_string()),
        400,
        "an unknown strategy",
    )
    .await;
    let saved = call(
        edge,
        "PUT",
        "/api/v1/admin/teams/vip",
        &admin,
        json!({ "strategy": "longest_idle", "prechat": true, "bot_first": false }),
    )
    .await;
    assert_eq!(saved["prechat"], true, "{saved}");
    eventually(
        "the widget asking vip's visitors for a name",
        || async move { (availability(edge, "vip").await["prechat"] == true).then_some(()) },
    )
    .await;
    let teams = call(edge, "GET", "/api/v1/admin/teams", &admin, Value::Null).await;
    let vip = teams["teams"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["team"] == "vip"))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(vip["settings"]["strategy"], "longest_idle", "{teams}");
    // A team made by an admin can be chatted with.
    let (mut vic, _, _) = start(edge, "Vic", Some("vip")).await;
    vic.expect_type("ack").await;

    let response = bearer(
        edge,
        "PATCH",
        &path,
        Some(&admin),
        Some(&json!({ "disabled": true }).to_string()),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let login = http::post(
        edge,
        "/api/v1/agents/login",
        &json!({ "login": "cara", "password": PASSWORD }).to_string(),
    )
    .await;
    assert!(
        login.status == 401 || login.status == 403,
        "a disabled agent logged in: {} {}",
        login.status,
        login.body
    );
    assert_call_refused(
        edge,
        "PATCH",
        "/api/v1/admin/agents/a_nobody",
        Some(&admin),
        Some(&json!({ "capacity": 2 }).to_string()),
        404,
        "changing nobody",
    )
    .await;
}

/// Canned responses: an admin saves two (one for everyone, one for the
/// sales team); Bob (no team) reads the first only; a bad shortcut or a
/// blank text is refused; a removed one is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_manage_canned_responses_agents_read_theirs() {
    let Desk {
        system: _system,
        edge,
        admin,
        bob,
    } = Desk::start().await;

    let body = json!({ "text": "Hello! How can I help?" }).to_string();
    assert_call_refused(
        edge,
        "PUT",
        "/api/v1/admin/canned/hi",
        Some(&bob),
        Some(&body),
        403,
        "an agent saving a canned response",
    )
    .await;
    call(
        edge,
        "PUT",
        "/api/v1/admin/canned/hi",
        &admin,
        json!({ "text": "Hello! How can I help?" }),
    )
    .await;
    call(
        edge,
        "PUT",
        "/api/v1/admin/canned/price",
        &admin,
        json!({ "text": "Our plans start at 10 €.", "team": "sales" }),
    )
    .await;
    let mine = call(edge, "GET", "/api/v1/canned", &bob, Value::Null).await;
    let shortcuts: Vec<&str> = mine["canned"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["shortcut"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(shortcuts, ["hi"], "{mine}");
    assert_eq!(mine["canned"][0]["text"], "Hello! How can I help?");
    let all = call(edge, "GET", "/api/v1/canned", &admin, Value::Null).await;
    assert_eq!(all["canned"].as_array().map(Vec::len), Some(2), "{all}");

    for (path, body) in [
        ("/api/v1/admin/canned/Not%20Ok", json!({ "text": "x" })),
        ("/api/v1/admin/canned/blank", json!({ "text": "   " })),
        (
            "/api/v1/admin/canned/extra",
            json!({ "text": "x", "colour": 1 }),
        ),
    ] {
        assert_call_refused(
            edge,
            "PUT",
            path,
            Some(&admin),
            Some(&body.to_string()),
            400,
            path,
        )
        .await;
    }
    call(
        edge,
        "DELETE",
        "/api/v1/admin/canned/hi",
        &admin,
        Value::Null,
    )
    .await;
    let mine = call(edge, "GET", "/api/v1/canned", &bob, Value::Null).await;
    assert_eq!(mine["canned"], json!([]), "{mine}");
    assert_call_refused(
        edge,
        "DELETE",
        "/api/v1/admin/canned/hi",
        Some(&admin),
        None,
        404,
        "removing it twice",
    )
    .await;
}

/// The missed list changes for agents without asking: Bob (away) gets
/// Ann's message as it is left, with the name she gave; an agent who
/// connects later gets the list on connecting; a pick-up takes it off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_missed_list_is_pushed_to_agents_as_it_changes() {
    let mut system = System::with_workers().await;
    let edge = system.edge().await;
    system.add_agent("bob", 1, None).await;
    system.add_agent("cy", 1, None).await;
    let bob_token = System::agent_token(edge, "bob").await;
    let (mut bob, _) = Ws::hello(edge, &bob_token, json!({})).await;
    bob.send(json!({ "type": "status", "status": "away" }))
        .await;

    let (_, ann_token) = System::visitor(edge, "Visitor 7").await;
    let (mut ann, _) = Ws::hello(edge, &ann_token, json!({})).await;
    ann.send(json!({
        "type": "leave_message", "text": "Call me back please", "name": "Ann Lee",
        "email": "ann@example.com", "client_id": "m1",
    }))
    .await;
    let id = ann.expect_type("started").await["conversation_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let has_ann = |f: &Value| {
        f["type"] == "missed"
            && f["entries"].as_array().is_some_and(|e| {
                e.iter().any(|e| {
                    e["conversation_id"] == id.as_str() && e["visitor"]["name"] == "Ann Lee"
                })
            })
    };
    let pushed = bob
        .expect("the missed list with ann's message", has_ann)
        .await;
    assert!(
        pushed["entries"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["preview"] == "Call me back please")),
        "{pushed}"
    );

    let cy_token = System::agent_token(edge, "cy").await;
    let (mut cy, _) = Ws::hello(edge, &cy_token, json!({})).await;
    cy.expect("the missed list on connecting", has_ann).await;

    cy.send(json!({ "type": "pick_up", "conversation_id": id }))
        .await;
    bob.expect("the missed list without ann's message", |f| {
        f["type"] == "missed" && !lists_missed(f, &id)
    })
    .await;
    let picked_up = bob.seen().len();

    // With Cy now, Ann cannot leave a message: refused, and never listed,
    // not even for a moment.
    ann.expect_event(&id, "assigned").await;
    ann.send(json!({ "type": "leave_message", "text": "Hello?", "client_id": "m2" }))
        .await;
    ann.expect_error("forbidden").await;
    let (_, dee_token) = System::visitor(edge, "Dee").await;
    let (mut dee, _) = Ws::hello(edge, &dee_token, json!({})).await;
    dee.send(json!({ "type": "leave_message", "text": "Call me", "client_id": "d1" }))
        .await;
    let dee_id = dee.expect_type("started").await["conversation_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    bob.expect("the missed list with dee's message", |f| {
        lists_missed(f, &dee_id)
    })
    .await;
    let listed_ann: Vec<&Value> = bob.seen()[picked_up..]
        .iter()
        .filter(|f| lists_missed(f, &id))
        .collect();
    assert!(
        listed_ann.is_empty(),
        "listed while with cy: {listed_ann:#?}"
    );
}

/// Whether `frame` is a missed list naming `conversation`.
fn lists_missed(frame: &Value, conversation: &str) -> bool {
    frame["type"] == "missed"
        && frame["entries"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["conversation_id"] == conversation))
}

/// A visitor who gave an email and the page they are on chats with Bob
/// about a refund; after it is closed and archived, Bob finds it by a word
/// of it, by the visitor and by himself, reads its transcript (his private
/// note included), and sees the visitor's details with their past
/// conversation. A visitor renames themselves through their profile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_find_past_conversations_and_see_visitors_details() {
    let mut system = System::with_workers().await;
    let edge = system.edge().await;
    let bob_account = system.add_agent("bob", 1, None).await;
    let bob_token = System::agent_token(edge, "bob").await;
    let (mut bob, _) = Ws::hello(edge, &bob_token, json!({})).await;

    let signup = http::request_with(
        edge,
        "POST",
        "/api/v1/visitors",
        &[("User-Agent", "TestBrowser/1.0")],
        Some(
            &json!({
                "name": "Vic", "email": "vic@example.com",
                "page_url": "https://shop.example/cart",
            })
            .to_string(),
        ),
    )
    .await;
    assert_eq!(signup.status, 201, "{}", signup.body);
    let signup = signup.json();
    let visitor_id = signup["visitor_id"].as_str().unwrap_or_default().to_owned();
    let token = signup["token"].as_str().unwrap_or_default().to_owned();
    let bad = http::post(
        edge,
        "/api/v1/visitors",
        &json!({ "name": "X", "email": "not an email" }).to_string(),
    )
    .await;
    assert_refused(&bad, 400, "a bad email");

    let (mut vic, _) = Ws::hello(edge, &token, json!({})).await;
    vic.send(json!({ "type": "start", "text": "I want a REFUND for order 7", "client_id": "s1" }))
        .await;
    let id = vic.expect_type("started").await["conversation_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    bob.expect("vic assigned", |f| {
        f["type"] == "assigned" && f["conversation_id"] == id.as_str()
    })
    .await;
    bob.send(
        json!({ "type": "note", "conversation_id": id, "text": "VIP customer", "client_id": "n1" }),
    )
    .await;
    bob.expect_event(&id, "note").await;
    bob.send_message(&id, "b1", "Done, refunded.").await;
    bob.send(json!({ "type": "close", "conversation_id": id }))
        .await;
    bob.expect_event(&id, "closed").await;

    let bob_ref = &bob_token;
    let id_ref = id.as_str();
    let found = eventually("the conversation found by a word of it", || async move {
        let response = bearer(edge, "GET", "/api/v1/archive?q=refund", Some(bob_ref), None).await;
        // 503 until the archiver answers searches (it may still be starting).
        if response.status == 503 {
            return None;
        }
        assert_eq!(response.status, 200, "search: {}", response.body);
        let found = response.json();
        found["conversations"]
            .as_array()
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c["conversation_id"] == id_ref && c["status"] == "closed")
            })
            .then_some(found)
    })
    .await;
    let conversation = &found["conversations"][0];
    assert_eq!(conversation["visitor"]["name"], "Vic", "{found}");
    assert_eq!(conversation["agent"]["name"], "Agent bob", "{found}");
    let none = call(
        edge,
        "GET",
        "/api/v1/archive?q=invoice",
        &bob_token,
        Value::Null,
    )
    .await;
    assert_eq!(none["conversations"], json!([]), "{none}");
    let by_agent = call(
        edge,
        "GET",
        &format!("/api/v1/archive?agent={}", bob_account.id),
        &bob_token,
        Value::Null,
    )
    .await;
    assert_eq!(by_agent["conversations"][0]["conversation_id"], id.as_str());
    // The console's Closed filter: the caller's own closed conversations.
    let closed = call(
        edge,
        "GET",
        "/api/v1/archive?agent=me&status=closed",
        &bob_token,
        Value::Null,
    )
    .await;
    assert_eq!(closed["conversations"][0]["conversation_id"], id.as_str());
    assert_eq!(closed["conversations"][0]["status"], "closed", "{closed}");
    let open = call(
        edge,
        "GET",
        "/api/v1/archive?agent=me&status=assigned",
        &bob_token,
        Value::Null,
    )
    .await;
    assert_eq!(open["conversations"], json!([]), "{open}");
    assert_call_refused(
        edge,
        "GET",
        "/api/v1/archive?status=gone",
        Some(&bob_token),
        None,
        400,
        "an unknown status",
    )
    .await;
    assert_call_refused(
        edge,
        "GET",
        "/api/v1/archive?agent=me",
        None,
        None,
        401,
        "no token",
    )
    .await;
    assert_call_refused(
        edge,
        "GET",
        "/api/v1/archive?agent=me",
        Some(&token),
        None,
        403,
        "a visitor listing closed conversations",
    )
    .await;
    assert_call_refused(
        edge,
        "GET",
        "/api/v1/archive?limit=500",
        Some(&bob_token),
        None,
        400,
        "a limit too large",
    )
    .await;

    let transcript = call(
        edge,
        "GET",
        &format!("/api/v1/archive/{id}"),
        &bob_token,
        Value::Null,
    )
    .await;
    assert_eq!(transcript["state"], "closed", "{transcript}");
    let items = transcript["items"].as_array().cloned().unwrap_or_default();
    assert!(
        items
            .iter()
            .any(|i| i["text"] == "I want a REFUND for order 7"),
        "{transcript}"
    );
    assert!(
        items
            .iter()
            .any(|i| i["event"] == "note" && i["text"] == "VIP customer"),
        "agents read their notes: {transcript}"
    );

    let details = call(
        edge,
        "GET",
        &format!("/api/v1/visitors/{visitor_id}"),
        &bob_token,
        Value::Null,
    )
    .await;
    assert_eq!(details["profile"]["email"], "vic@example.com", "{details}");
    assert_eq!(
        details["profile"]["page_url"], "https://shop.example/cart",
        "{details}"
    );
    assert_eq!(
        details["profile"]["user_agent"], "TestBrowser/1.0",
        "{details}"
    );
    assert_eq!(details["conversations"][0]["conversation_id"], id.as_str());
    assert_call_refused(
        edge,
        "GET",
        &format!("/api/v1/visitors/{visitor_id}"),
        Some(&token),
        None,
        403,
        "a visitor reading visitors' details",
    )
    .await;

    let renamed = call(
        edge,
        "POST",
        "/api/v1/visitors/profile",
        &token,
        json!({ "name": "Victor" }),
    )
    .await;
    assert_eq!(renamed["name"], "Victor", "{renamed}");
    let new_token = renamed["token"].as_str().unwrap_or_default().to_owned();
    assert!(!new_token.is_empty(), "a new name comes with a new token");
    assert_call_refused(
        edge,
        "POST",
        "/api/v1/visitors/profile",
        Some(&token),
        Some(&json!({ "email": "nope" }).to_string()),
        400,
        "a bad email in the profile",
    )
    .await;
    let details = call(
        edge,
        "GET",
        &format!("/api/v1/visitors/{visitor_id}"),
        &bob_token,
        Value::Null,
    )
    .await;
    assert_eq!(details["profile"]["name"], "Victor", "{details}");
}

/// A visitor gives a new name while chatting (`POST
/// /api/v1/visitors/profile`): the agent's open connection gets a
/// `renamed` event with it at once, and so does the visitor's own; a
/// connection opened later says the new name in `welcome`; once the
/// visitor's connection takes the new token (`refresh`), their messages
/// carry it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitors_new_name_reaches_the_agents_open_connection() {
    let desk = Desk::start().await;
    let edge = desk.edge;
    let (mut bob, _) = Ws::hello(edge, &desk.bob, json!({})).await;
    let (mut vic, id, token) = start(edge, "Vic", None).await;
    let assigned = bob
        .expect("vic assigned", |f| {
            f["type"] == "assigned" && f["conversation_id"] == id.as_str()
        })
        .await;
    assert_eq!(assigned["visitor"]["name"], "Vic", "{assigned}");

    let renamed = call(
        edge,
        "POST",
        "/api/v1/visitors/profile",
        &token,
        json!({ "name": "Victor Hugo" }),
    )
    .await;
    let new_token = renamed["token"].as_str().unwrap_or_default().to_owned();
    let event = bob.expect_event(&id, "renamed").await;
    assert_eq!(event["visitor"]["name"], "Victor Hugo", "{event}");
    assert_eq!(event["previous"], "Vic", "{event}");
    assert_eq!(event["by"]["name"], "Victor Hugo", "{event}");
    let seen = vic.expect_event(&id, "renamed").await;
    assert_eq!(seen["visitor"]["name"], "Victor Hugo", "{seen}");

    let (_, welcome) = Ws::hello(edge, &desk.bob, json!({})).await;
    let listed = welcome["conversations"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["conversation_id"] == id.as_str()))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(listed["visitor"]["name"], "Victor Hugo", "{welcome}");

    vic.send(json!({ "type": "refresh", "token": new_token }))
        .await;
    vic.expect_type("refreshed").await;
    vic.send_message(&id, "m2", "it is me").await;
    let message = bob
        .expect("the renamed visitor's message", |f| {
            f["type"] == "message" && f["text"] == "it is me"
        })
        .await;
    assert_eq!(message["sender"]["name"], "Victor Hugo", "{message}");
}

/// A search the archive cannot answer because MongoDB is down is the
/// archive's failure, not the request's: `503 unavailable` (ask again
/// later), never `400`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_while_mongodb_is_down_is_unavailable_not_refused() {
    let mut system = System::start().await;
    let edge = system.edge().await;
    // MongoDB's driver waits 30 s for a server by default, longer than the
    // edge waits for an answer: this archiver gives up on it at once.
    let uri = format!("{}/?serverSelectionTimeoutMS=300", system.mongo.uri());
    system
        .archiver_with(&[("SWITCHBOARD_MONGO__URI", uri.as_str())])
        .await;
    system.add_agent("bob", 1, None).await;
    let bob = System::agent_token(edge, "bob").await;
    let bob = &bob;
    eventually("the archiver answering searches", || async move {
        let response = bearer(edge, "GET", "/api/v1/archive?q=refund", Some(bob), None).await;
        (response.status == 200).then_some(())
    })
    .await;

    system.mongo.stop().await;
    let response = bearer(edge, "GET", "/api/v1/archive?q=refund", Some(bob), None).await;
    assert_refused(&response, 503, "a search with MongoDB down");
    assert_eq!(response.json()["error"], "unavailable", "{}", response.body);
}
