//! A real load balancer in front of the edges: HAProxy, run with the
//! shipped `deploy/haproxy.cfg`, in front of two edges that trust it for
//! `X-Forwarded-For`. Simulated widgets and consoles connect only to the
//! balancer; one edge is killed with `kill -9`; its clients reconnect
//! through the balancer to the other edge, resume, and nothing
//! acknowledged is lost. The balancer takes the dead edge out (its health
//! check on `/readyz`), and the edges count each client's own address.
//! Then a rolling restart: a new edge where the dead one was, and SIGTERM
//! of the other with the default drain: the balancer takes the draining
//! edge out before it closes a single socket, and its clients resume on
//! the new one, again losing nothing.

use std::collections::BTreeMap;
use std::future::ready;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use switchboard_protocol::ids::ConversationId;
use switchboard_tests::balancer::Haproxy;
use switchboard_tests::sim::{within, ClientState, EdgePool, Role, Sim, SimConfig};
use switchboard_tests::system::System;
use switchboard_tests::{eventually, http, metrics};
use tokio::time::Instant;

/// How long recovery may take (scaled by `within`).
const RECOVERY: Duration = Duration::from_secs(60);
const VISITORS: usize = 4;
const AGENTS: usize = 2;

/// WebSockets an edge holds now, by its metrics.
async fn connections(edge: SocketAddr) -> f64 {
    metrics::sum(&metrics::scrape(edge).await, "switchboard_edge_connections")
}

/// Every visitor has one conversation, held by one agent; every client had
/// a message created after `t` acknowledged.
fn settled(states: &[ClientState], sim: &Sim, t: Instant) -> Result<(), String> {
    let mut holders: BTreeMap<&String, usize> = BTreeMap::new();
    for state in states.iter().filter(|s| s.role == Role::Agent) {
        for conversation in state.conversations.keys() {
            *holders.entry(conversation).or_default() += 1;
        }
    }
    for state in states.iter().filter(|s| s.role == Role::Visitor) {
        let Some(conversation) = state.conversations.keys().next() else {
            return Err(format!("{} has no conversation yet", state.name));
        };
        if holders.get(conversation) != Some(&1) {
            return Err(format!("{conversation} of {} is not held", state.name));
        }
    }
    sim.all_acked_since(t)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_resume_through_the_balancer_after_a_kill_and_a_drain_losing_nothing() {
    let began = Instant::now();
    let mut system = System::start().await;
    system.router().await;
    // Two sign-ups per client address and minute on each edge; the
    // balancer (127.0.0.1) is trusted for X-Forwarded-For.
    let settings = [
        ("SWITCHBOARD_EDGE__TRUSTED_PROXIES", "[\"127.0.0.1\"]"),
        ("SWITCHBOARD_EDGE__SIGNUPS_PER_ADDRESS_PER_MINUTE", "2"),
    ];
    let edges = [
        system.edge_with(&settings).await,
        system.edge_with(&settings).await,
    ];
    let haproxy = Haproxy::start(edges).await;

    // The visitors sign up on the edges directly from 127.0.0.1, which
    // uses up that address's sign-ups on both edges.
    let mut visitors = Vec::new();
    for n in 0..VISITORS {
        let name = format!("v{n}");
        let (_, token) = System::visitor(edges[n % 2], &name).await;
        visitors.push((name, token));
    }
    // Through the balancer, the edges count the client's address, not the
    // balancer's: 127.0.0.1 is refused, another client is served.
    let signup = |source: Ipv4Addr| {
        http::request_from(
            haproxy.addr,
            IpAddr::V4(source),
            "POST",
            "/api/v1/visitors",
            Some("{}"),
        )
    };
    let refused = signup(Ipv4Addr::new(127, 0, 0, 1)).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    let served = signup(Ipv4Addr::new(127, 0, 0, 2)).await;
    assert_eq!(
        served.status, 201,
        "a client behind the balancer was counted as the balancer: {}",
        served.body
    );
    // The edges' metrics are not served to the outside.
    assert_eq!(http::get(haproxy.addr, "/metrics").await.status, 404);

    // Everyone connects through the balancer only.
    let pool = EdgePool::new(&[haproxy.addr]);
    let mut sim = Sim::new(Arc::clone(&pool), SimConfig::default());
    for k in 0..AGENTS {
        let login = format!("agent{k}");
        system.add_agent(&login, 4, None).await;
        let token = System::agent_token(haproxy.addr, &login).await;
        sim.agent(&login, &token);
    }
    for (name, token) in &visitors {
        sim.visitor(name, token);
    }
    within("every visitor assigned and acknowledged", RECOVERY, || {
        ready(settled(&sim.snapshot(), &sim, began))
    })
    .await;

    // kill -9 of the edge holding more of them (by the edges' metrics).
    let held = eventually("every client counted by the edges", || async {
        let held = [connections(edges[0]).await, connections(edges[1]).await];
        (held[0] + held[1] == (VISITORS + AGENTS) as f64).then_some(held)
    })
    .await;
    let (victim, survivor) = if held[0] >= held[1] {
        (edges[0], edges[1])
    } else {
        (edges[1], edges[0])
    };
    let resumes_before = sim.total(|c| c.stats.resumes);
    let killed = Instant::now();
    system.kill_edge(victim).await;

    within(
        "every client acknowledged again after the kill",
        RECOVERY,
        || ready(sim.all_acked_since(killed)),
    )
    .await;
    println!(
        "clients recovered through the balancer {:.1?} after kill -9 of {victim}",
        killed.elapsed()
    );
    eventually("the balancer takes the dead edge out", || async {
        (haproxy.servers_up().await == Some(1)).then_some(())
    })
    .await;
    eventually("every client is on the surviving edge", || async {
        (connections(survivor).await == (VISITORS + AGENTS) as f64).then_some(())
    })
    .await;
    let survivor_metrics = metrics::scrape(survivor).await;
    assert!(
        metrics::sum(&survivor_metrics, "switchboard_edge_resumes_total") > 0.0,
        "the surviving edge resumed no conversation:\n{survivor_metrics}"
    );
    assert!(
        sim.total(|c| c.stats.resumes) > resumes_before,
        "no client reconnected with resume"
    );

    // A rolling restart through the balancer: a new edge where the dead
    // one was, then SIGTERM of the survivor with the default drain
    // (edge.drain_delay 5 s; HAProxy checks every 2 s, down after 2).
    let replacement = system.edge_on(victim, &settings).await;
    eventually("the balancer sends to the replacement", || async {
        (haproxy.servers_up().await == Some(2)).then_some(())
    })
    .await;
    let draining = Instant::now();
    system.node(survivor).signal_terminate();
    eventually("the balancer takes the draining edge out", || async {
        (haproxy.servers_up().await == Some(1)).then_some(())
    })
    .await;
    let taken_out = draining.elapsed();
    let drained = metrics::scrape(survivor).await;
    assert_eq!(
        metrics::value(&drained, r#"switchboard_edge_closes_total{code="1012"}"#),
        Some(0.0),
        "the draining edge closed sockets before the balancer took it out ({taken_out:?}):\n{drained}"
    );
    assert_eq!(
        metrics::sum(&drained, "switchboard_edge_connections"),
        (VISITORS + AGENTS) as f64,
        "the draining edge lost clients before the balancer took it out"
    );
    within(
        "every client acknowledged again after the drain",
        RECOVERY,
        || ready(sim.all_acked_since(draining)),
    )
    .await;
    eventually("every client is on the replacement", || async {
        (connections(replacement).await == (VISITORS + AGENTS) as f64).then_some(())
    })
    .await;
    assert!(
        system.node(survivor).wait_exit().await,
        "the drained edge did not exit cleanly"
    );
    println!(
        "the balancer took the draining edge out {taken_out:.1?} after SIGTERM; clients resumed on the replacement {:.1?} after it",
        draining.elapsed()
    );

    // Drain, then check: nothing acknowledged lost, nothing shown twice,
    // everyone has every record of their conversation.
    sim.stop_sending();
    within("every pending send acknowledged", RECOVERY, || {
        ready(
            match sim
                .snapshot()
                .iter()
                .map(|c| c.pending.len())
                .sum::<usize>()
            {
                0 => Ok(()),
                n => Err(format!("{n} sends pending")),
            },
        )
    })
    .await;
    let backbone = system.backbone().await;
    within("every participant has every record", RECOVERY, || async {
        for state in sim.snapshot() {
            for (conversation, view) in &state.conversations {
                let id = ConversationId::new(conversation).map_err(|e| e.to_string())?;
                let last = backbone
                    .log
                    .last_seq(&id)
                    .await
                    .map_err(|e| e.to_string())?;
                let missing = view.missing_up_to(last);
                if !missing.is_empty() {
                    return Err(format!(
                        "{} lacks {missing:?} of {conversation}",
                        state.name
                    ));
                }
            }
        }
        Ok(())
    })
    .await;
    let states = sim.shutdown().await;
    let mut problems = Vec::new();
    for state in &states {
        problems.extend(
            state
                .violations
                .iter()
                .map(|v| format!("{}: {v}", state.name)),
        );
        for (client_id, ack) in &state.acks {
            let id = ConversationId::new(&ack.conversation_id)
                .unwrap_or_else(|e| panic!("{}: {e}", ack.conversation_id));
            let stored = backbone
                .log
                .read_from(&id, ack.seq, 1)
                .await
                .unwrap_or_else(|e| panic!("read {id}: {e}"));
            if stored.first().map(|r| (r.seq, r.id.as_str())) != Some((ack.seq, ack.id.as_str())) {
                problems.push(format!(
                    "{}: ack of {client_id} ({}@{}) is not what the stream holds: {stored:?}",
                    state.name, ack.id, ack.seq
                ));
            }
        }
    }
    let acked: usize = states.iter().map(|s| s.acks.len()).sum();
    println!(
        "{acked} messages acknowledged; {} reconnects, {} resumes; {} problems",
        states.iter().map(|s| s.stats.reconnects).sum::<u64>(),
        states.iter().map(|s| s.stats.resumes).sum::<u64>(),
        problems.len()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(acked > 0, "nothing was acknowledged");
}
