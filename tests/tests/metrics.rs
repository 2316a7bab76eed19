//! Every component serves Prometheus metrics, and they count what happened:
//! the edge on its own listener (refused to web pages, and off with
//! `edge.metrics = false`), routers and archivers on `metrics.listen` with
//! `/healthz` beside it. A visitor waits in the queue, an agent comes and
//! is assigned, they chat, a bad frame is refused, the visitor resumes on a
//! second connection, the agent's browser dies and the conversation is
//! requeued; each scrape shows it. Every metric the shipped
//! Grafana dashboard and Prometheus alerts use is one that is served.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde_json::{json, Value};
use switchboard_tests::metrics::{names, scrape, sum, value};
use switchboard_tests::system::System;
use switchboard_tests::ws::Ws;
use switchboard_tests::{eventually, free_port, http};

/// What an operator watches, by component (histograms by their buckets).
const EDGE: [&str; 11] = [
    "switchboard_edge_connections",
    "switchboard_edge_connections_opened_total",
    "switchboard_edge_frames_received_total",
    "switchboard_edge_frames_sent_total",
    "switchboard_edge_errors_total",
    "switchboard_edge_closes_total",
    "switchboard_edge_resumes_total",
    "switchboard_edge_replayed_records_total",
    "switchboard_nats_publish_ack_seconds_bucket",
    "switchboard_nats_publish_failures_total",
    "switchboard_kv_cas_conflicts_total",
];
const ROUTER: [&str; 8] = [
    "switchboard_router_queue_length",
    "switchboard_router_assignments_total",
    "switchboard_router_partitions_held",
    "switchboard_router_assignment_wait_seconds_bucket",
    "switchboard_router_assign_seconds_bucket",
    "switchboard_router_requeues_total",
    "switchboard_nats_publish_ack_seconds_bucket",
    "switchboard_kv_cas_conflicts_total",
];
const ARCHIVER: [&str; 6] = [
    "switchboard_archiver_lag_records",
    "switchboard_archiver_batch_seconds_bucket",
    "switchboard_archiver_records_total",
    "switchboard_archiver_write_failures_total",
    "switchboard_archiver_summaries_held",
    "switchboard_build_info",
];

fn missing(text: &str, expected: &[&str]) -> Vec<String> {
    let shown = names(text);
    expected
        .iter()
        .filter(|name| !shown.contains(**name))
        .map(|name| (*name).to_owned())
        .collect()
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

async fn healthy(addr: SocketAddr) {
    eventually(&format!("/healthz of {addr}"), || async move {
        tokio::net::TcpStream::connect(addr).await.ok()?;
        (http::get(addr, "/healthz").await.status == 200).then_some(())
    })
    .await;
}

/// Every `switchboard_…` name in `text`.
fn metric_names_in(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("switchboard_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        found.insert(name);
    }
    found
}

/// The PromQL expressions of a Grafana dashboard.
fn exprs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", Value::String(expr)) => out.push(expr.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

fn deploy_file(path: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_component_serves_the_metrics_an_operator_watches() {
    let mut system = System::start().await;
    let router_metrics = local(free_port());
    let archiver_metrics = local(free_port());
    system
        .router_with(&[
            ("SWITCHBOARD_METRICS__LISTEN", &router_metrics.to_string()),
            ("SWITCHBOARD_ROUTER__AGENT_GRACE", "1s"),
        ])
        .await;
    system
        .archiver_with(&[("SWITCHBOARD_METRICS__LISTEN", &archiver_metrics.to_string())])
        .await;
    let edge = system.edge().await;
    healthy(router_metrics).await;
    healthy(archiver_metrics).await;

    // A visitor waits: the router shows the queue.
    let (_, visitor_token) = System::visitor(edge, "Ann").await;
    let (mut visitor, _) = Ws::hello(edge, &visitor_token, json!({})).await;
    visitor
        .send(json!({ "type": "start", "text": "hello", "client_id": "v-0" }))
        .await;
    let conversation = visitor.expect_type("started").await["conversation_id"]
        .as_str()
        .unwrap_or_else(|| panic!("started without a conversation"))
        .to_owned();
    let queued = r#"switchboard_router_queue_length{team="(none)"}"#;
    eventually("the router shows one visitor waiting", || async {
        (value(&scrape(router_metrics).await, queued) == Some(1.0)).then_some(())
    })
    .await;

    // An agent comes and is assigned; they chat.
    system.add_agent("dana", 3, None).await;
    let agent_token = System::agent_token(edge, "dana").await;
    let (mut agent, _) = Ws::hello(edge, &agent_token, json!({})).await;
    agent.expect_type("assigned").await;
    let router = eventually("the router counts the assignment", || async {
        let text = scrape(router_metrics).await;
        (value(&text, queued) == Some(0.0)
            && value(&text, "switchboard_router_assignments_total") == Some(1.0)
            && value(&text, "switchboard_router_assignment_wait_seconds_count") == Some(1.0)
            // The one router holds the one partition (`part.none`).
            && value(&text, "switchboard_router_partitions_held") == Some(1.0))
        .then_some(text)
    })
    .await;
    agent.send_message(&conversation, "a-1", "hi Ann").await;
    let last = visitor.send_message(&conversation, "v-1", "thanks").await["seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("ack without seq"));

    // A frame that does not parse is refused; the visitor resumes on a
    // second connection, from the first record.
    visitor.send_raw("{not json".to_owned()).await;
    visitor.expect_error("bad_request").await;
    let (mut again, _) = Ws::hello(edge, &visitor_token, json!({ conversation.clone(): 1 })).await;
    again.expect_type("resumed").await;

    let text = scrape(edge).await;
    let expect = |series: &str, at_least: f64| {
        let got = value(&text, series).unwrap_or(0.0);
        assert!(
            got >= at_least,
            "{series} is {got}, expected at least {at_least}:\n{text}"
        );
    };
    assert_eq!(
        value(&text, r#"switchboard_edge_connections{role="visitor"}"#),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(&text, r#"switchboard_edge_connections{role="agent"}"#),
        Some(1.0),
        "{text}"
    );
    expect(
        r#"switchboard_edge_frames_received_total{type="hello"}"#,
        3.0,
    );
    expect(
        r#"switchboard_edge_frames_received_total{type="send"}"#,
        2.0,
    );
    expect(
        r#"switchboard_edge_frames_received_total{type="invalid"}"#,
        1.0,
    );
    expect(r#"switchboard_edge_frames_sent_total{type="welcome"}"#, 3.0);
    expect(r#"switchboard_edge_frames_sent_total{type="ack"}"#, 3.0);
    expect(r#"switchboard_edge_frames_sent_total{type="message"}"#, 2.0);
    expect(r#"switchboard_edge_errors_total{code="bad_request"}"#, 1.0);
    expect("switchboard_edge_resumes_total", 1.0);
    // Resumed after seq 1: everything after it is replayed.
    expect("switchboard_edge_replayed_records_total", (last - 1) as f64);
    expect("switchboard_nats_publish_ack_seconds_count", 3.0);
    assert!(
        missing(&text, &EDGE).is_empty(),
        "edge lacks {:?}",
        missing(&text, &EDGE)
    );
    assert!(
        missing(&router, &ROUTER).is_empty(),
        "router lacks {:?}",
        missing(&router, &ROUTER)
    );

    // The archiver stores every record and says so.
    let archiver = eventually("the archiver counts what it stored", || async {
        let text = scrape(archiver_metrics).await;
        (sum(&text, "switchboard_archiver_records_total") >= last as f64
            && value(&text, "switchboard_archiver_lag_records").is_some())
        .then_some(text)
    })
    .await;
    assert!(
        missing(&archiver, &ARCHIVER).is_empty(),
        "archiver lacks {:?}",
        missing(&archiver, &ARCHIVER)
    );

    // No web page reads the metrics through a visitor's browser.
    for addr in [edge, router_metrics] {
        let response = http::request_with(
            addr,
            "GET",
            "/metrics",
            &[("Origin", "https://evil.example")],
            None,
        )
        .await;
        assert_eq!(response.status, 403, "{addr}: {}", response.body);
    }

    // Every metric the shipped dashboard and alerts use is served.
    let served: BTreeSet<String> = [&text, &router, &archiver]
        .iter()
        .flat_map(|t| names(t))
        .collect();
    let dashboard: Value =
        serde_json::from_str(&deploy_file("grafana/dashboards/switchboard.json"))
            .unwrap_or_else(|e| panic!("dashboard JSON: {e}"));
    let mut queries = Vec::new();
    exprs(&dashboard, &mut queries);
    assert!(
        queries.len() >= 20,
        "the dashboard has {} queries",
        queries.len()
    );
    queries.push(deploy_file("prometheus/alerts.yml"));
    let used: BTreeSet<String> = queries.iter().flat_map(|q| metric_names_in(q)).collect();
    let unknown: Vec<&String> = used.difference(&served).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard or alerts use metrics nobody serves: {unknown:?}"
    );
    let components = [
        "switchboard_edge_",
        "switchboard_router_",
        "switchboard_archiver_",
    ];
    for prefix in components {
        assert!(
            used.iter().any(|name| name.starts_with(prefix)),
            "the dashboard shows nothing of {prefix}*"
        );
    }

    // The agent's browser dies: the edge stops counting the connection,
    // and past router.agent_grace the conversation goes back to the queue,
    // counted as a requeue of an offline agent.
    agent.close().await;
    let agents = r#"switchboard_edge_connections{role="agent"}"#;
    eventually("the edge no longer counts the agent", || async {
        (value(&scrape(edge).await, agents) == Some(0.0)).then_some(())
    })
    .await;
    let offline = r#"switchboard_router_requeues_total{reason="offline"}"#;
    eventually("the router counts the requeue", || async {
        let text = scrape(router_metrics).await;
        (value(&text, offline) == Some(1.0) && value(&text, queued) == Some(1.0)).then_some(())
    })
    .await;
    let text = scrape(router_metrics).await;
    assert_eq!(
        value(
            &text,
            r#"switchboard_router_requeues_total{reason="no_reply"}"#
        ),
        Some(0.0),
        "{text}"
    );

    // An edge may keep its metrics off its public listener and serve them
    // on metrics.listen instead.
    let private = local(free_port());
    let quiet = system
        .edge_with(&[
            ("SWITCHBOARD_EDGE__METRICS", "false"),
            ("SWITCHBOARD_METRICS__LISTEN", &private.to_string()),
        ])
        .await;
    assert_eq!(http::get(quiet, "/metrics").await.status, 404);
    healthy(private).await;
    assert!(missing(&scrape(private).await, &EDGE).is_empty());
}
