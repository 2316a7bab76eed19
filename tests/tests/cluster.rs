//! Switchboard on a 3-node JetStream cluster (stream and buckets R3), with
//! traffic from simulated visitors and agents through two edges, two
//! routers and an archiver: the `CHAT` stream's leader is killed
//! (`kill -9`), then the `conversations` bucket's leader, then every server
//! is restarted in turn. Writes refused while a leader is elected are
//! retried; afterwards every guarantee holds: every acknowledged message
//! was delivered to every participant once and in order, every stored
//! message was acknowledged, the archive equals the stream, every
//! conversation has one agent.

use std::future::ready;
use std::sync::Arc;
use std::time::Duration;

use switchboard_bus::Backbone;
use switchboard_config::NatsSettings;
use switchboard_tests::guarantees::{cast, check_guarantees_besides, settle};
use switchboard_tests::services::NatsCluster;
use switchboard_tests::sim::{within, EdgePool, Sim, SimConfig};
use switchboard_tests::system::System;
use switchboard_tests::ws::Ws;
use tokio::time::Instant;

/// How long recovery from one fault may take (scaled by `within`).
const RECOVERY: Duration = Duration::from_secs(60);

/// The server leading a stream (`CHAT`, `KV_conversations`, …), asked
/// again while the cluster cannot say (a server just restarted: the
/// request times out, or no leader is elected yet).
async fn leader(backbone: &Backbone, stream: &str) -> String {
    within(&format!("a leader of {stream}"), RECOVERY, || async {
        let mut found = backbone
            .js
            .get_stream(stream)
            .await
            .map_err(|e| format!("get {stream}: {e}"))?;
        let info = found
            .info()
            .await
            .map_err(|e| format!("stream info: {e}"))?;
        info.cluster
            .as_ref()
            .and_then(|c| c.leader.clone())
            .ok_or_else(|| format!("no leader in {:?}", info.config.name))
    })
    .await
}

/// Sends `frame` and returns the first answer of `answer` type or an
/// `error`: while a leader is elected, the edge retries rather than
/// refusing, so the answer is the success.
async fn answer(ws: &mut Ws, frame: serde_json::Value, answer: &str) -> serde_json::Value {
    let kind = frame["type"].clone();
    ws.send(frame).await;
    ws.expect(&format!("{answer} or error"), |f| {
        f["type"] == answer || (f["type"] == "error" && f["ref"] == kind)
    })
    .await
}

/// Waits until every client has had a message acknowledged since `t`.
async fn recovered(sim: &Sim, what: &str, t: Instant) {
    within(what, RECOVERY, || ready(sim.all_acked_since(t))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaders_lost_and_a_rolling_restart_lose_nothing() {
    let began = Instant::now();
    let mut cluster = NatsCluster::start().await;
    let url = cluster.url();
    let mut system = System::start_env(&[
        ("SWITCHBOARD_NATS__URL", url.as_str()),
        ("SWITCHBOARD_NATS__REPLICAS", "3"),
    ])
    .await;
    let one = system.edge().await;
    let two = system.edge().await;
    system.router().await;
    system.router().await;
    system.archiver().await;
    let settings = NatsSettings {
        url: url.clone(),
        replicas: 3,
        ..Default::default()
    };
    let backbone = Backbone::connect(&settings, "test")
        .await
        .unwrap_or_else(|e| panic!("backbone on the cluster: {e}"));
    assert_eq!(
        backbone
            .js
            .get_stream("CHAT")
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .config
            .num_replicas,
        3,
        "the stream is R3"
    );

    let edges = [one, two];
    let pool = EdgePool::new(&edges);
    let mut sim = Sim::new(Arc::clone(&pool), SimConfig::default());
    // The probes below wait in a team of their own, whose one agent never
    // comes online: the simulated agents never see them.
    switchboard_bus::accounts::add(
        &backbone,
        switchboard_bus::accounts::NewAgent {
            login: "prober".into(),
            name: "Prober".into(),
            password: switchboard_tests::system::PASSWORD.into(),
            team: Some(switchboard_protocol::ids::TeamId::new("probes").unwrap()),
            capacity: 1,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("add prober: {e}"));
    let agents = 3;
    for k in 0..agents {
        let login = format!("agent{k}");
        switchboard_bus::accounts::add(
            &backbone,
            switchboard_bus::accounts::NewAgent {
                login: login.clone(),
                name: format!("Agent {k}"),
                password: switchboard_tests::system::PASSWORD.into(),
                team: None,
                capacity: 6,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("add {login}: {e}"));
        let token = System::agent_token(edges[k % 2], &login).await;
        sim.agent(&login, &token);
    }
    for n in 0..12 {
        let name = format!("v{n}");
        let (_, token) = System::visitor(edges[n % 2], &name).await;
        sim.visitor(&name, &token);
    }
    within(
        "every visitor assigned, every client acknowledged",
        RECOVERY,
        || {
            ready(
                cast(&sim.snapshot())
                    .map(|_| ())
                    .and_then(|()| sim.all_acked_since(began)),
            )
        },
    )
    .await;

    // The stream's leader dies: appends are refused until another is
    // elected, and retried meanwhile.
    let (_, token) = System::visitor(one, "probe").await;
    let (mut probe, _) = Ws::hello(one, &token, serde_json::json!({})).await;
    let started = answer(
        &mut probe,
        serde_json::json!({ "type": "start", "team": "probes" }),
        "started",
    )
    .await;
    let probed = started["conversation_id"].as_str().unwrap().to_owned();
    let mut probes = vec![probed.clone()];
    let name = leader(&backbone, "CHAT").await;
    let i = cluster.index_of(&name).unwrap();
    cluster.kill(i).await;
    let t = Instant::now();
    // A message sent at once, while no server leads the stream, is stored
    // once one does: not refused.
    let sent = answer(
        &mut probe,
        serde_json::json!({
            "type": "send", "conversation_id": probed,
            "client_id": "during-election", "text": "anyone there?",
        }),
        "ack",
    )
    .await;
    assert_eq!(sent["type"], "ack", "a send during the election: {sent}");
    recovered(
        &sim,
        "traffic flows again after the stream's leader died",
        t,
    )
    .await;
    cluster.start_again(i).await;

    // A bucket's leader dies: routing and presence writes are retried.
    let name = leader(&backbone, "KV_conversations").await;
    let i = cluster.index_of(&name).unwrap();
    cluster.kill(i).await;
    let t = Instant::now();
    // A conversation started at once, while no server leads the bucket,
    // is created once one does: not refused.
    let (_, token) = System::visitor(two, "probe-2").await;
    let (mut probe, _) = Ws::hello(two, &token, serde_json::json!({})).await;
    let started = answer(
        &mut probe,
        serde_json::json!({ "type": "start", "team": "probes" }),
        "started",
    )
    .await;
    assert_eq!(
        started["type"], "started",
        "a start during the election: {started}"
    );
    probes.push(started["conversation_id"].as_str().unwrap().to_owned());
    recovered(
        &sim,
        "traffic flows again after the bucket's leader died",
        t,
    )
    .await;
    cluster.start_again(i).await;

    // Every server restarted in turn (stopped gracefully: it hands its
    // leaderships over first).
    for i in 0..3 {
        cluster.stop(i).await;
        let t = Instant::now();
        recovered(
            &sim,
            &format!("traffic flows while {} is down", cluster.name(i)),
            t,
        )
        .await;
        cluster.start_again(i).await;
    }
    let t = Instant::now();
    recovered(&sim, "traffic flows after the rolling restart", t).await;

    // Drain and check.
    sim.stop_sending();
    settle(&sim, &backbone, RECOVERY).await;
    let states = sim.shutdown().await;
    let db = system.archive().await;
    let checked = check_guarantees_besides(&states, &backbone, &db, &probes).await;
    let acked: usize = states.iter().map(|c| c.acks.len()).sum();
    println!(
        "cluster: {acked} messages acknowledged across 2 leader losses and a rolling restart in {:.1?}",
        began.elapsed()
    );
    assert!(acked > 0);
    assert!(
        checked.failures.is_empty(),
        "guarantees broken on the cluster:\n{}",
        checked.failures.join("\n")
    );
}
