//! The browser boundary and the kinds of edges: pages of other sites may
//! use the API and the WebSocket only when allowed (`edge.allowed_origins`,
//! with CORS); every page has a strict Content-Security-Policy and may not
//! be framed; text that is not UTF-8 closes with 1007; a visitor-only edge
//! refuses agents and serves no console (and an agent-only edge no
//! visitors).

use std::net::SocketAddr;

use futures::{SinkExt, StreamExt};
use serde_json::json;
use switchboard_tests::http;
use switchboard_tests::system::{System, PASSWORD};
use switchboard_tests::ws::Ws;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

/// The raw response head (lowercase) and status of a request.
async fn raw(edge: SocketAddr, request: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(edge).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let head = text
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    (status, head)
}

fn request(method: &str, path: &str, edge: SocketAddr, origin: Option<&str>, body: &str) -> String {
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {edge}\r\n{origin}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Opens a WebSocket with this `Origin`; the HTTP status of the refusal.
async fn websocket_from(edge: SocketAddr, origin: Option<&str>) -> Result<(), u16> {
    let mut request = format!("ws://{edge}/ws").into_client_request().unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("Origin", origin.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => Ok(()),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(other) => panic!("websocket: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_sites_use_the_api_and_the_websocket() {
    let mut system = System::start().await;
    let edge = system
        .edge_with(&[(
            "SWITCHBOARD_EDGE__ALLOWED_ORIGINS",
            r#"["https://shop.example"]"#,
        )])
        .await;
    let own = format!("http://{edge}");
    let signup = json!({ "name": "Vic" }).to_string();

    // A page of an allowed site: served, with CORS for it.
    let (status, head) = raw(
        edge,
        &request(
            "POST",
            "/api/v1/visitors",
            edge,
            Some("https://shop.example"),
            &signup,
        ),
    )
    .await;
    assert_eq!(status, 201, "{head}");
    assert!(
        head.contains("access-control-allow-origin: https://shop.example"),
        "{head}"
    );
    // Its preflight is answered.
    let (status, head) = raw(
        edge,
        &request(
            "OPTIONS",
            "/api/v1/visitors",
            edge,
            Some("https://shop.example"),
            "",
        ),
    )
    .await;
    assert_eq!(status, 204, "{head}");
    assert!(
        head.contains("access-control-allow-methods: get, post, put, patch, delete, options"),
        "every method the API takes (the admin API's PUT, PATCH, DELETE too): {head}"
    );
    assert!(head.contains("authorization"), "{head}");
    // Another site: refused with a JSON error, and no CORS.
    for method in ["POST", "OPTIONS"] {
        let (status, head) = raw(
            edge,
            &request(
                method,
                "/api/v1/visitors",
                edge,
                Some("https://evil.example"),
                &signup,
            ),
        )
        .await;
        assert_eq!(status, 403, "{method}: {head}");
        assert!(!head.contains("access-control-allow-origin"), "{head}");
    }
    // The edge's own pages, and clients that are not browsers.
    assert_eq!(
        raw(
            edge,
            &request("POST", "/api/v1/visitors", edge, Some(&own), &signup)
        )
        .await
        .0,
        201
    );
    assert_eq!(
        raw(
            edge,
            &request("POST", "/api/v1/visitors", edge, None, &signup)
        )
        .await
        .0,
        201
    );

    // The same for the WebSocket.
    assert_eq!(
        websocket_from(edge, Some("https://shop.example")).await,
        Ok(())
    );
    assert_eq!(websocket_from(edge, Some(&own)).await, Ok(()));
    assert_eq!(websocket_from(edge, None).await, Ok(()));
    assert_eq!(
        websocket_from(edge, Some("https://evil.example")).await,
        Err(403)
    );

    // The widget's files may be loaded by any page (as a module too).
    let (status, head) = raw(
        edge,
        &request(
            "GET",
            "/widget.js",
            edge,
            Some("https://elsewhere.example"),
            "",
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert!(head.contains("access-control-allow-origin: *"), "{head}");
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_have_a_strict_policy_and_are_never_framed() {
    let mut system = System::start().await;
    let edge = system.edge().await;
    for page in ["/", "/console"] {
        let (status, head) = raw(edge, &request("GET", page, edge, None, "")).await;
        assert_eq!(status, 200, "{page}");
        let csp = head
            .lines()
            .find_map(|l| l.strip_prefix("content-security-policy: "))
            .unwrap_or_else(|| panic!("{page} has no policy: {head}"));
        assert!(csp.contains("frame-ancestors 'none'"), "{page}: {csp}");
        assert!(csp.contains("script-src 'self'"), "{page}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{page}: {csp}");
        assert!(head.contains("x-frame-options: deny"), "{page}: {head}");
        assert!(head.contains("referrer-policy: "), "{page}: {head}");
        assert!(
            head.contains("x-content-type-options: nosniff"),
            "{page}: {head}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_that_is_not_utf8_closes_with_1007() {
    let mut system = System::start().await;
    let edge = system.edge().await;
    let (_, token) = System::visitor(edge, "Vic").await;
    for before_hello in [true, false] {
        let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{edge}/ws"))
            .await
            .unwrap();
        if !before_hello {
            socket
                .send(Message::Text(
                    json!({ "type": "hello", "token": token })
                        .to_string()
                        .into(),
                ))
                .await
                .unwrap();
        }
        let bad = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
        socket.send(Message::Frame(bad)).await.unwrap();
        let code = loop {
            match socket.next().await {
                Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                other => panic!("no close frame: {other:?}"),
            }
        };
        assert_eq!(code, Some(1007), "before hello: {before_hello}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_edge_refuses_agents_and_an_agent_edge_refuses_visitors() {
    let mut system = System::start().await;
    let visitors = system
        .edge_with(&[("SWITCHBOARD_EDGE__ROLES", r#"["visitor"]"#)])
        .await;
    let agents = system
        .edge_with(&[("SWITCHBOARD_EDGE__ROLES", r#"["agent"]"#)])
        .await;
    system.add_agent("ann", 2, None).await;

    // Agents: no login, no agent token, no console on the visitors' edge.
    let login = json!({ "login": "ann", "password": PASSWORD }).to_string();
    assert_eq!(
        http::post(visitors, "/api/v1/agents/login", &login)
            .await
            .status,
        403
    );
    let agent_token = System::agent_token(agents, "ann").await;
    let mut ws = Ws::connect(visitors).await;
    ws.send(json!({ "type": "hello", "token": agent_token }))
        .await;
    assert_eq!(ws.expect_close().await, 4403);
    assert_eq!(http::get(visitors, "/console").await.status, 404);
    assert_eq!(http::get(visitors, "/console.js").await.status, 404);
    // Visitors are served there.
    let (_, visitor_token) = System::visitor(visitors, "Vic").await;
    let (mut vic, _) = Ws::hello(visitors, &visitor_token, json!({})).await;
    vic.send(json!({ "type": "start" })).await;
    vic.expect_type("started").await;
    assert_eq!(http::get(visitors, "/widget.js").await.status, 200);

    // And the other way round.
    assert_eq!(
        http::post(agents, "/api/v1/visitors", "{}").await.status,
        403
    );
    let mut ws = Ws::connect(agents).await;
    ws.send(json!({ "type": "hello", "token": visitor_token }))
        .await;
    assert_eq!(ws.expect_close().await, 4403);
    assert_eq!(http::get(agents, "/widget.js").await.status, 404);
    let (mut ann, _) = Ws::hello(agents, &agent_token, json!({})).await;
    ann.send(json!({ "type": "list_missed" })).await;
    ann.expect_type("missed").await;
}
