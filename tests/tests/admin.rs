//! The admin role: accounts made admins from the command line log in like
//! agents and get an admin token; with it, the admin HTTP API does what
//! `switchboard queue …` and `switchboard broadcast` do. Everyone else is
//! refused: 401 without a valid token, 403 with anyone else's.

use std::net::SocketAddr;

use serde_json::{json, Value};
use switchboard_tests::http::{self, bearer};
use switchboard_tests::system::{node_binary, System, PASSWORD};
use switchboard_tests::ws::Ws;

/// Every admin call: method, path, a body that would succeed.
fn endpoints(conversation: &str) -> Vec<(&'static str, &'static str, Option<String>)> {
    vec![
        ("GET", "/api/v1/admin/queue", None),
        (
            "POST",
            "/api/v1/admin/queue/prioritize",
            Some(json!({ "conversation_id": conversation, "priority": 5 }).to_string()),
        ),
        (
            "POST",
            "/api/v1/admin/queue/assign",
            Some(json!({ "conversation_id": conversation, "agent": "kai" }).to_string()),
        ),
        (
            "POST",
            "/api/v1/admin/broadcast",
            Some(json!({ "to": "agents", "text": "Hello" }).to_string()),
        ),
        ("GET", "/api/v1/stats", None),
        (
            "GET",
            "/api/v1/stats?tz=Europe/Paris&since=2026-01-01",
            None,
        ),
    ]
}

async fn login(edge: SocketAddr, login: &str) -> Value {
    let response = http::post(
        edge,
        "/api/v1/agents/login",
        &json!({ "login": login, "password": PASSWORD }).to_string(),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    response.json()
}

/// A visitor waiting in the queue (nobody online): `(client, conversation)`.
async fn waiting_visitor(edge: SocketAddr, name: &str) -> (Ws, String) {
    let (_, token) = System::visitor(edge, name).await;
    let (mut ws, _) = Ws::hello(edge, &token, json!({})).await;
    ws.send(json!({ "type": "start" })).await;
    let id = ws.expect_type("started").await["conversation_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    ws.expect_event(&id, "queued").await;
    (ws, id)
}

fn assert_error(response: &http::Response, status: u16, code: &str, what: &str) {
    assert_eq!(response.status, status, "{what}: {}", response.body);
    let body = response.json();
    assert_eq!(body["error"], code, "{what}: {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_call_wants_an_admin_token() {
    let mut system = System::with_workers().await;
    let edge = system.edge().await;
    system.add_agent("kai", 1, None).await;
    system.add_admin("root").await;
    let (_visitor, conversation) = waiting_visitor(edge, "Ann").await;
    let (_, visitor_token) = System::visitor(edge, "Bea").await;

    let agent = login(edge, "kai").await;
    assert_eq!(agent["role"], "agent");
    let admin = login(edge, "root").await;
    assert_eq!(admin["role"], "admin");
    let agent_token = agent["token"].as_str().unwrap_or_default().to_owned();
    let admin_token = admin["token"].as_str().unwrap_or_default().to_owned();
    // The admin's token signed with another secret is not a token.
    let forged = {
        let mut parts: Vec<&str> = admin_token.split('.').collect();
        parts[2] = "c2lnbmF0dXJl";
        parts.join(".")
    };

    for (method, path, body) in endpoints(&conversation) {
        let body = body.as_deref();
        let what = format!("{method} {path}");
        let none = bearer(edge, method, path, None, body).await;
        assert_error(
            &none,
            401,
            "unauthorized",
            &format!("{what} without a token"),
        );
        let bad = bearer(edge, method, path, Some("not-a-token"), body).await;
        assert_error(&bad, 401, "unauthorized", &format!("{what} with garbage"));
        let bad = bearer(edge, method, path, Some(&forged), body).await;
        assert_error(&bad, 401, "unauthorized", &format!("{what} forged"));
        let agent = bearer(edge, method, path, Some(&agent_token), body).await;
        assert_error(&agent, 403, "forbidden", &format!("{what} as an agent"));
        let visitor = bearer(edge, method, path, Some(&visitor_token), body).await;
        assert_error(&visitor, 403, "forbidden", &format!("{what} as a visitor"));
        let ok = bearer(edge, method, path, Some(&admin_token), body).await;
        assert_eq!(ok.status, 200, "{what} as an admin: {}", ok.body);
        ok.json();
    }

    // Bad input is a 4xx with a JSON body, after the token check.
    let cases = [
        (
            "/api/v1/admin/queue/prioritize",
            json!({ "conversation_id": "no spaces" }),
            400,
            "bad_request",
        ),
        (
            "/api/v1/admin/queue/prioritize",
            json!({ "conversation_id": "c_unknown" }),
            409,
            "not_waiting",
        ),
        (
            "/api/v1/admin/queue/assign",
            json!({ "conversation_id": conversation, "agent": "nobody" }),
            404,
            "not_found",
        ),
        (
            "/api/v1/admin/broadcast",
            json!({ "to": "agents", "text": "   " }),
            400,
            "bad_request",
        ),
        (
            "/api/v1/admin/broadcast",
            json!({ "to": "everyone", "text": "hi" }),
            400,
            "bad_request",
        ),
    ];
    for (path, body, status, code) in cases {
        let response = bearer(
            edge,
            "POST",
            path,
            Some(&admin_token),
            Some(&body.to_string()),
        )
        .await;
        assert_error(&response, status, code, &format!("POST {path} {body}"));
    }
    let response = bearer(
        edge,
        "POST",
        "/api/v1/admin/broadcast",
        Some(&admin_token),
        Some("{"),
    )
    .await;
    assert_error(&response, 400, "bad_request", "broken JSON");
    for query in [
        "tz=Mars/Base",
        "since=yesterday",
        "since=2026-02-01&until=2026-01-01",
        "colour=red",
    ] {
        let path = format!("/api/v1/stats?{query}");
        let response = bearer(edge, "GET", &path, Some(&admin_token), None).await;
        assert_error(&response, 400, "bad_request", &path);
    }
    let response = bearer(
        edge,
        "GET",
        "/api/v1/stats?agent=nobody",
        Some(&admin_token),
        None,
    )
    .await;
    assert_error(&response, 404, "not_found", "stats of an unknown agent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_reorders_assigns_and_broadcasts_like_the_cli() {
    let mut system = System::with_workers().await;
    let edge = system.edge().await;
    system.add_agent("max", 1, None).await;
    system.add_admin("root").await;
    let admin = login(edge, "root").await["token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let max_token = System::agent_token(edge, "max").await;
    let (mut max, _) = Ws::hello(edge, &max_token, json!({})).await;

    let (mut a, a_id) = {
        let (_, token) = System::visitor(edge, "A").await;
        let (mut ws, _) = Ws::hello(edge, &token, json!({})).await;
        ws.send(json!({ "type": "start" })).await;
        let id = ws.expect_type("started").await["conversation_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        ws.expect_event(&id, "assigned").await;
        (ws, id)
    };
    let (_b, b_id) = waiting_visitor(edge, "B").await;
    let (mut c, c_id) = waiting_visitor(edge, "C").await;

    let order = |body: &Value| -> Vec<String> {
        body["entries"]
            .as_array()
            .map(|e| {
                e.iter()
                    .map(|e| e["conversation_id"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let queue = bearer(edge, "GET", "/api/v1/admin/queue", Some(&admin), None).await;
    assert_eq!(order(&queue.json()), vec![b_id.clone(), c_id.clone()]);

    // Prioritize C: the listing, the routers' snapshot and C's place agree.
    let body = json!({ "conversation_id": c_id }).to_string();
    let response = bearer(
        edge,
        "POST",
        "/api/v1/admin/queue/prioritize",
        Some(&admin),
        Some(&body),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(
        response.json()["priority"],
        10,
        "the CLI's default priority"
    );
    let queue = bearer(edge, "GET", "/api/v1/admin/queue", Some(&admin), None)
        .await
        .json();
    assert_eq!(order(&queue), vec![c_id.clone(), b_id.clone()]);
    assert_eq!(queue["entries"][0]["position"], 1);
    assert_eq!(queue["entries"][0]["priority"], 10);
    let expected = vec![c_id.clone(), b_id.clone()];
    max.expect("the routers' queue with C first", |f| {
        f["type"] == "queue" && order(f) == expected
    })
    .await;
    c.expect("C moves to place 1", |f| {
        f["event"] == "queued" && f["position"] == 1
    })
    .await;

    // Give B to Max: when his slot frees, B goes first despite C's priority.
    let body = json!({ "conversation_id": b_id, "agent": "MAX" }).to_string();
    let response = bearer(
        edge,
        "POST",
        "/api/v1/admin/queue/assign",
        Some(&admin),
        Some(&body),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.json()["login"], "max");
    max.send(json!({ "type": "close", "conversation_id": a_id }))
        .await;
    a.expect_event(&a_id, "closed").await;
    let next = max
        .expect("the next assignment", |f| {
            f["type"] == "assigned" && f["conversation_id"] != a_id.as_str()
        })
        .await;
    assert_eq!(next["conversation_id"], b_id.as_str());

    // A broadcast reaches the connected agent, and only agents.
    let body = json!({ "to": "agents", "text": "  Team meeting at 3 " }).to_string();
    let response = bearer(
        edge,
        "POST",
        "/api/v1/admin/broadcast",
        Some(&admin),
        Some(&body),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let notice = max.expect_type("notice").await;
    assert_eq!(notice["text"], "Team meeting at 3");
    assert_eq!(notice["sender"]["id"], "admin");
    let body = json!({ "to": "visitors", "text": "We close at 6" }).to_string();
    bearer(
        edge,
        "POST",
        "/api/v1/admin/broadcast",
        Some(&admin),
        Some(&body),
    )
    .await;
    let notice = c.expect_type("notice").await;
    assert_eq!(notice["text"], "We close at 6");
    assert!(
        !c.seen.iter().any(|f| f["text"] == "Team meeting at 3"),
        "visitors get only visitor notices"
    );
}

async fn cli(system: &System, args: &[&str]) -> String {
    let output = tokio::process::Command::new(node_binary())
        .args(args)
        .env_remove("SWITCHBOARD_CONFIG")
        .env("SWITCHBOARD_NATS__URL", system.nats.url())
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("run switchboard {args:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "switchboard {args:?}: {text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_are_set_from_the_cli() {
    let mut system = System::start().await;
    let edge = system.edge().await;
    let add = |login: &'static str, role: Option<&'static str>| {
        let mut args = vec![
            "agent",
            "add",
            "--login",
            login,
            "--name",
            login,
            "--password",
            PASSWORD,
        ];
        if let Some(role) = role {
            args.extend(["--role", role]);
        }
        args
    };
    cli(&system, &add("boss", Some("admin"))).await;
    cli(&system, &add("pat", None)).await;
    let listing = cli(&system, &["agent", "list"]).await;
    let line = |login: &str| {
        listing
            .lines()
            .find(|l| l.starts_with(login))
            .unwrap_or_else(|| panic!("{login} not listed: {listing}"))
            .to_owned()
    };
    assert!(
        listing.lines().next().is_some_and(|h| h.contains("role")),
        "{listing}"
    );
    assert!(line("boss").contains("admin"), "{listing}");
    assert!(
        line("pat").contains("agent") && !line("pat").contains("admin"),
        "{listing}"
    );

    let boss = login(edge, "boss").await;
    assert_eq!(boss["role"], "admin");
    let token = boss["token"].as_str().unwrap_or_default().to_owned();
    let queue = bearer(edge, "GET", "/api/v1/admin/queue", Some(&token), None).await;
    assert_eq!(queue.status, 200, "{}", queue.body);
    // An admin is an agent too: the same token opens the console.
    let (_ws, welcome) = Ws::hello(edge, &token, json!({})).await;
    assert_eq!(welcome["role"], "agent");

    let out = cli(
        &system,
        &["agent", "set", "--login", "boss", "--role", "agent"],
    )
    .await;
    assert!(out.contains("role agent"), "{out}");
    let demoted = login(edge, "boss").await;
    assert_eq!(demoted["role"], "agent");
    let token = demoted["token"].as_str().unwrap_or_default().to_owned();
    let queue = bearer(edge, "GET", "/api/v1/admin/queue", Some(&token), None).await;
    assert_eq!(queue.status, 403, "{}", queue.body);
    let out = cli(
        &system,
        &["agent", "set", "--login", "pat", "--role", "admin"],
    )
    .await;
    assert!(out.contains("role admin"), "{out}");
    assert_eq!(login(edge, "pat").await["role"], "admin");
}
