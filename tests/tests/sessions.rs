//! Tokens end on open connections too: at expiry (unless refreshed), at
//! logout, when an agent is disabled or removed — on every edge at once;
//! and signing keys rotate without refusing a valid token.

use std::net::SocketAddr;

use serde_json::json;
use switchboard_tests::system::{node_binary, System, PASSWORD};
use switchboard_tests::ws::Ws;
use switchboard_tests::{eventually, http};

async fn login(edge: SocketAddr, login: &str) -> String {
    System::agent_token(edge, login).await
}

/// A request on an open connection is still answered.
async fn still_served(ws: &mut Ws) {
    ws.send(json!({ "type": "status", "status": "online" }))
        .await;
    ws.send(json!({ "type": "list_missed" })).await;
    ws.expect_type("missed").await;
}

async fn post_bearer(edge: SocketAddr, path: &str, token: &str) -> http::Response {
    http::bearer(edge, "POST", path, Some(token), None).await
}

/// A hello with this token is refused with 4401.
async fn refused_at_hello(edge: SocketAddr, token: &str) {
    let mut ws = Ws::connect(edge).await;
    ws.send(json!({ "type": "hello", "token": token })).await;
    assert_eq!(ws.expect_close().await, 4401);
}

async fn cli(system: &System, args: &[&str]) {
    let output = tokio::process::Command::new(node_binary())
        .args(args)
        .env("SWITCHBOARD_NATS__URL", system.nats.url())
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "switchboard {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_ends_when_its_token_expires_unless_refreshed() {
    let mut system = System::with_workers().await;
    // Tokens from this edge live 3 s; from the other, an hour.
    let short = system
        .edge_with(&[("SWITCHBOARD_AUTH__AGENT_TOKEN_TTL", "3s")])
        .await;
    let long = system.edge().await;
    system.add_agent("ann", 2, None).await;
    let token = login(short, "ann").await;
    let (mut expiring, welcome) = Ws::hello(short, &token, json!({})).await;
    assert!(welcome["token_expires_at"].is_string(), "{welcome}");
    let (mut refreshed, _) = Ws::hello(short, &token, json!({})).await;

    // The console refreshes before expiry: a new token over HTTP, then
    // the connection takes it.
    let response = post_bearer(long, "/api/v1/token/refresh", &token).await;
    assert_eq!(response.status, 200, "{}", response.body);
    let fresh = response.json()["token"].as_str().unwrap().to_owned();
    refreshed
        .send(json!({ "type": "refresh", "token": fresh }))
        .await;
    let answer = refreshed.expect_type("refreshed").await;
    assert!(
        answer["token_expires_at"].as_str().unwrap()
            > welcome["token_expires_at"].as_str().unwrap()
    );

    assert_eq!(expiring.expect_close().await, 4401);
    // Past the first token's expiry, the refreshed connection goes on.
    still_served(&mut refreshed).await;
    // A refresh must be of the connection's own identity.
    let (_, visitor_token) = System::visitor(long, "Vic").await;
    refreshed
        .send(json!({ "type": "refresh", "token": visitor_token }))
        .await;
    refreshed.expect_error("forbidden").await;
    // An expired token gets no new one (once past the few seconds allowed
    // for the clocks of different edges).
    eventually("the expired token refused a refresh", || {
        let token = token.clone();
        async move {
            let response = post_bearer(long, "/api/v1/token/refresh", &token).await;
            (response.status == 401).then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_closes_that_tokens_connections_on_every_edge() {
    let mut system = System::with_workers().await;
    let one = system.edge().await;
    let two = system.edge().await;
    system.add_agent("bea", 3, None).await;
    let token = login(one, "bea").await;
    let other_token = login(one, "bea").await;
    let (mut here, _) = Ws::hello(one, &token, json!({})).await;
    let (mut there, _) = Ws::hello(two, &token, json!({})).await;
    let (mut other_tab, _) = Ws::hello(one, &other_token, json!({})).await;

    let response = post_bearer(two, "/api/v1/agents/logout", &token).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(here.expect_close().await, 4401);
    assert_eq!(there.expect_close().await, 4401);
    // The other login's connection is not touched.
    still_served(&mut other_tab).await;
    // The logged-out token opens nothing any more, anywhere.
    refused_at_hello(one, &token).await;
    refused_at_hello(two, &token).await;
    assert_eq!(
        post_bearer(one, "/api/v1/token/refresh", &token)
            .await
            .status,
        401
    );
    assert_eq!(
        post_bearer(one, "/api/v1/agents/logout", &token)
            .await
            .status,
        401
    );
    // Without a token: 401; visitors do not log out.
    assert_eq!(
        http::post(one, "/api/v1/agents/logout", "").await.status,
        401
    );
    let (_, visitor_token) = System::visitor(one, "Vic").await;
    assert_eq!(
        post_bearer(one, "/api/v1/agents/logout", &visitor_token)
            .await
            .status,
        403
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_or_removed_agent_is_disconnected_everywhere_at_once() {
    let mut system = System::with_workers().await;
    let one = system.edge().await;
    let two = system.edge().await;
    system.add_agent("cal", 3, None).await;
    let token = login(one, "cal").await;
    let (mut here, _) = Ws::hello(one, &token, json!({})).await;
    let (mut there, _) = Ws::hello(two, &token, json!({})).await;

    cli(&system, &["agent", "disable", "--login", "cal"]).await;
    assert_eq!(here.expect_close().await, 4401);
    assert_eq!(there.expect_close().await, 4401);
    refused_at_hello(one, &token).await;
    let refused = http::post(
        one,
        "/api/v1/agents/login",
        &json!({ "login": "cal", "password": PASSWORD }).to_string(),
    )
    .await;
    assert_eq!(refused.status, 401, "{}", refused.body);

    cli(&system, &["agent", "enable", "--login", "cal"]).await;
    // Enabled again, the tokens of before stay revoked: a new login.
    refused_at_hello(two, &token).await;
    let token = login(two, "cal").await;
    let (mut back, _) = Ws::hello(two, &token, json!({})).await;
    still_served(&mut back).await;

    cli(&system, &["agent", "remove", "--login", "cal"]).await;
    assert_eq!(back.expect_close().await, 4401);
    refused_at_hello(one, &token).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_keys_rotate_without_refusing_a_valid_token() {
    const OLD: &str = "the-old-signing-key-of-32-bytes-or-more";
    const NEW: &str = "the-new-signing-key-of-32-bytes-or-more";
    let mut system = System::with_workers().await;
    system.add_agent("dee", 3, None).await;
    // Before: every edge signs with the old key.
    let before = system
        .edge_with(&[
            ("SWITCHBOARD_AUTH__SECRET", OLD),
            ("SWITCHBOARD_AUTH__KEY_ID", "old"),
        ])
        .await;
    let old_token = login(before, "dee").await;
    // Step one, on every edge: learn the new key, still sign with the old.
    let learning = system
        .edge_with(&[
            ("SWITCHBOARD_AUTH__SECRET", OLD),
            ("SWITCHBOARD_AUTH__KEY_ID", "old"),
            ("SWITCHBOARD_AUTH__ACCEPTED_KEYS__NEW", NEW),
        ])
        .await;
    // Step two: sign with the new key, accept the old until its tokens
    // have expired.
    let rotated = system
        .edge_with(&[
            ("SWITCHBOARD_AUTH__SECRET", NEW),
            ("SWITCHBOARD_AUTH__KEY_ID", "new"),
            ("SWITCHBOARD_AUTH__ACCEPTED_KEYS__OLD", OLD),
        ])
        .await;
    let new_token = login(rotated, "dee").await;
    for edge in [learning, rotated] {
        for token in [&old_token, &new_token] {
            let (mut ws, _) = Ws::hello(edge, token, json!({})).await;
            still_served(&mut ws).await;
        }
    }
    // Skipping step one would refuse the new tokens on the old edges...
    refused_at_hello(before, &new_token).await;
    // ...and once the old key is dropped, its tokens are refused.
    let after = system
        .edge_with(&[
            ("SWITCHBOARD_AUTH__SECRET", NEW),
            ("SWITCHBOARD_AUTH__KEY_ID", "new"),
        ])
        .await;
    refused_at_hello(after, &old_token).await;
    let (mut ws, _) = Ws::hello(after, &new_token, json!({})).await;
    still_served(&mut ws).await;
}
