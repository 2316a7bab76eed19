//! Fault injection: real processes are killed, stopped and restarted while
//! simulated widgets and consoles (`switchboard_tests::sim`) chat, and the
//! delivery guarantees are checked at the end:
//!
//! 1. nothing acknowledged is lost: every `ack` names a record that every
//!    participant of the conversation received;
//! 2. nothing is shown twice: a retried `client_id` gets the original ack
//!    and is stored once;
//! 3. every participant sees the same dense `seq` order;
//! 4. a client resuming on any edge receives exactly what it missed;
//! 5. nothing unacknowledged counts as sent, and the MongoDB archive equals
//!    the stream.
//!
//! `the_fault_suite` is the main run: 20 simulated visitors and 4 agents
//! on 3 edges, 1 router and 1 archiver, while these faults are injected in
//! turn: kill -9 of an edge (a new one replaces it), kill -9 of the
//! archiver (a new one starts), a network cut between one edge and
//! nats-server, kill -9 and restart of nats-server, MongoDB stopped and
//! started again, nats-server SIGSTOPped then SIGCONTed, and SIGTERM of an
//! edge (its clients get close 1012). Each fault waits for recovery (every
//! client has a message created after it acknowledged); at the end the
//! clients stop sending, every pending send is acknowledged, every
//! participant has every record, and guarantees 1–5 are checked against
//! the stream and the archive. Its length comes from the environment
//! (defaults in brackets):
//!
//! - `SWITCHBOARD_FAULT_SECS` (45): how long faults go on. The faults are
//!   injected in turn, at least once each, and again in turn while time
//!   remains. A soak: `SWITCHBOARD_FAULT_SECS=600 cargo test -p
//!   switchboard-tests --test faults -- the_fault_suite --nocapture`.
//! - `SWITCHBOARD_FAULT_GAP_SECS` (3): traffic between two faults.
//! - `SWITCHBOARD_FAULT_PAUSE_SECS` (7): how long nats-server stays
//!   SIGSTOPped (more than the 5 s request timeout, so sends fail with
//!   `unavailable`).
//! - `SWITCHBOARD_FAULT_MONGO_DOWN_SECS` (4): how long MongoDB stays down.
//! - `SWITCHBOARD_FAULT_MONGO_KILL` (unset): set to 1 to kill -9 MongoDB
//!   instead of stopping it with SIGTERM.
//! - `SWITCHBOARD_FAULT_PARTITION_SECS` (3): how long one edge is cut off
//!   from nats-server (each edge reaches it through its own TCP proxy).
//! - `SWITCHBOARD_FAULT_VISITORS` (20): simulated visitors (4 agents).
//!
//! The smaller tests each check one recovery path with their own servers.

use std::collections::BTreeMap;
use std::future::ready;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::{doc, Document};
use serde_json::{json, Value};
use switchboard_protocol::payloads::{ChatRecord, RecordBody};
use switchboard_tests::eventually;
use switchboard_tests::guarantees::{
    acked_after, archive_catches_up, archived, cast, check_guarantees, ids_by_seq, is_archived,
    settle, stream_records, stream_total,
};
use switchboard_tests::http;
use switchboard_tests::services::TcpProxy;
use switchboard_tests::sim::{within, ClientState, EdgePool, Sim, SimConfig};
use switchboard_tests::system::System;
use switchboard_tests::ws::Ws;
use tokio::time::Instant;

/// How long recovery from one fault may take (scaled by `within`).
const RECOVERY: Duration = Duration::from_secs(60);
/// How long one record may take to reach the archive (scaled by `within`):
/// a record delivered to a killed archiver is redelivered after the
/// consumer's 30 s ack wait.
const ARCHIVE_CATCH_UP: Duration = Duration::from_secs(120);
fn secs_from_env(name: &str, default: u64) -> Duration {
    Duration::from_secs(number_from_env(name, default))
}

fn number_from_env(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|e| panic!("{name}={value:?} is not a number: {e}")),
        Err(_) => default,
    }
}

async fn readyz(addr: SocketAddr) -> u16 {
    http::get(addr, "/readyz").await.status
}

/// The faults of the main suite, injected in this order.
#[derive(Debug, Clone, Copy)]
enum Fault {
    KillEdge,
    KillArchiver,
    PartitionEdge,
    KillNats,
    StopMongo,
    PauseNats,
    TerminateEdge,
}

const FAULTS: [Fault; 7] = [
    Fault::KillEdge,
    Fault::KillArchiver,
    Fault::PartitionEdge,
    Fault::KillNats,
    Fault::StopMongo,
    Fault::PauseNats,
    Fault::TerminateEdge,
];

/// The edge with the most clients on it.
fn busiest_edge(sim: &Sim) -> SocketAddr {
    let live = sim.edges.list();
    let mut counts: BTreeMap<SocketAddr, usize> = live.iter().map(|a| (*a, 0)).collect();
    for state in sim.snapshot() {
        if let Some(count) = state.edge.and_then(|e| counts.get_mut(&e)) {
            *count += 1;
        }
    }
    counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(addr, _)| addr)
        .unwrap_or_else(|| panic!("no live edge"))
}

/// Starts an edge that reaches nats-server through its own proxy (so it
/// can be partitioned alone); returns its address.
async fn proxied_edge(
    system: &mut System,
    proxies: &mut BTreeMap<SocketAddr, TcpProxy>,
) -> SocketAddr {
    let proxy = TcpProxy::start(system.nats.port).await;
    let url = proxy.url();
    let addr = system
        .edge_with(&[("SWITCHBOARD_NATS__URL", url.as_str())])
        .await;
    proxies.insert(addr, proxy);
    addr
}

/// Awaits `/readyz` answering `status`; a problem when it does not in time.
async fn readyz_becomes(
    edge: SocketAddr,
    status: u16,
    deadline: Duration,
    problems: &mut Vec<String>,
    when: &str,
) {
    let until = Instant::now() + deadline;
    loop {
        let now = readyz(edge).await;
        if now == status {
            return;
        }
        if Instant::now() >= until {
            problems.push(format!(
                "/readyz of {edge} still {now} (not {status}) {deadline:?} {when}"
            ));
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fault_suite() {
    let began = Instant::now();
    let run_for = secs_from_env("SWITCHBOARD_FAULT_SECS", 45);
    let gap = secs_from_env("SWITCHBOARD_FAULT_GAP_SECS", 3);
    let pause_for = secs_from_env("SWITCHBOARD_FAULT_PAUSE_SECS", 7);
    let mongo_down = secs_from_env("SWITCHBOARD_FAULT_MONGO_DOWN_SECS", 4);
    let partition_for = secs_from_env("SWITCHBOARD_FAULT_PARTITION_SECS", 3);
    let mongo_kill = number_from_env("SWITCHBOARD_FAULT_MONGO_KILL", 0) != 0;
    let visitors = number_from_env("SWITCHBOARD_FAULT_VISITORS", 20) as usize;
    let agents = 4usize;
    let capacity = u32::try_from(visitors.div_ceil(agents) + 1)
        .unwrap_or(u32::MAX)
        .max(5);

    let mut system = System::start().await;
    system.router().await;
    system.archiver().await;
    let mut proxies = BTreeMap::new();
    for _ in 0..3 {
        proxied_edge(&mut system, &mut proxies).await;
    }
    let edges = system.edges();
    let pool = EdgePool::new(&edges);
    let mut sim = Sim::new(Arc::clone(&pool), SimConfig::default());
    for k in 0..agents {
        let login = format!("agent{k}");
        system.add_agent(&login, capacity, None).await;
        let token = System::agent_token(edges[k % edges.len()], &login).await;
        sim.agent(&login, &token);
    }
    within("every agent connected", RECOVERY, || {
        ready(
            match sim.snapshot().iter().filter(|c| !c.connected).count() {
                0 => Ok(()),
                n => Err(format!("{n} agents not connected")),
            },
        )
    })
    .await;
    for n in 0..visitors {
        let name = format!("v{n}");
        let (_, token) = System::visitor(edges[n % edges.len()], &name).await;
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
    let warmed_up = began.elapsed();

    // Faults, in turn, with traffic flowing. What goes wrong during a
    // fault is collected and reported with everything else at the end.
    let mut problems: Vec<String> = Vec::new();
    let faults_began = Instant::now();
    let mut injected: Vec<String> = Vec::new();
    let mut round = 0usize;
    loop {
        tokio::time::sleep(gap).await;
        let fault = FAULTS[round % FAULTS.len()];
        round += 1;
        let at = faults_began.elapsed();
        let t = Instant::now();
        let note = match fault {
            Fault::KillEdge => {
                let victim = busiest_edge(&sim);
                pool.remove(victim);
                system.kill_edge(victim).await;
                proxies.remove(&victim);
                let fresh = proxied_edge(&mut system, &mut proxies).await;
                pool.add(fresh);
                within("clients recover from kill -9 of an edge", RECOVERY, || {
                    ready(sim.all_acked_since(t))
                })
                .await;
                format!("kill -9 edge {victim}, new edge {fresh}")
            }
            Fault::TerminateEdge => {
                let victim = busiest_edge(&sim);
                let closes_before = sim.total(|c| c.stats.closes.get(&1012).copied().unwrap_or(0));
                pool.remove(victim);
                if !system.node(victim).terminate().await {
                    problems.push(format!("edge {victim} did not exit cleanly on SIGTERM"));
                }
                system.kill_edge(victim).await;
                proxies.remove(&victim);
                let fresh = proxied_edge(&mut system, &mut proxies).await;
                pool.add(fresh);
                within("clients recover from SIGTERM of an edge", RECOVERY, || {
                    ready(sim.all_acked_since(t))
                })
                .await;
                let closes =
                    sim.total(|c| c.stats.closes.get(&1012).copied().unwrap_or(0)) - closes_before;
                if closes == 0 {
                    problems.push(format!(
                        "no client got close 1012 from edge {victim} stopped with SIGTERM"
                    ));
                }
                format!("SIGTERM edge {victim} ({closes} closes 1012), new edge {fresh}")
            }
            Fault::PartitionEdge => {
                let victim = busiest_edge(&sim);
                let on_victim = sim
                    .snapshot()
                    .iter()
                    .filter(|c| c.edge == Some(victim))
                    .count();
                proxies[&victim].cut();
                readyz_becomes(
                    victim,
                    503,
                    Duration::from_secs(10),
                    &mut problems,
                    "after its link to nats-server was cut",
                )
                .await;
                tokio::time::sleep(partition_for).await;
                proxies[&victim].heal();
                let healed = Instant::now();
                within("clients recover from a partitioned edge", RECOVERY, || {
                    ready(sim.all_acked_since(healed))
                })
                .await;
                readyz_becomes(
                    victim,
                    200,
                    Duration::from_secs(30),
                    &mut problems,
                    "after its link to nats-server was restored",
                )
                .await;
                format!(
                    "cut edge {victim} (serving {on_victim} clients) from nats-server for {partition_for:?}"
                )
            }
            Fault::KillArchiver => {
                system.restart_archiver().await;
                let db = system.archive().await;
                within("a new archiver archives new records", RECOVERY, || {
                    let id = acked_after(&sim, t);
                    let db = db.clone();
                    async move { is_archived(&db, &id?).await }
                })
                .await;
                "kill -9 archiver, new archiver".to_owned()
            }
            Fault::KillNats => {
                system.nats.kill().await;
                // Traffic meets a dead NATS for a moment.
                tokio::time::sleep(Duration::from_millis(1500)).await;
                system.nats.start_again().await;
                let up = Instant::now();
                within(
                    "clients recover from kill -9 of nats-server",
                    RECOVERY,
                    || ready(sim.all_acked_since(up)),
                )
                .await;
                "kill -9 nats-server, restart (same port and data)".to_owned()
            }
            Fault::StopMongo => {
                if mongo_kill {
                    system.mongo.kill().await;
                } else {
                    system.mongo.stop().await;
                }
                tokio::time::sleep(mongo_down).await;
                system.mongo.start_again().await;
                let up = Instant::now();
                let db = system.archive().await;
                within(
                    "the archiver writes again after MongoDB is back",
                    ARCHIVE_CATCH_UP,
                    || {
                        let id = acked_after(&sim, up);
                        let db = db.clone();
                        async move { is_archived(&db, &id?).await }
                    },
                )
                .await;
                let how = if mongo_kill { "kill -9" } else { "stop" };
                format!("{how} MongoDB for {mongo_down:?}, start again")
            }
            Fault::PauseNats => {
                let unavailable_before = sim.total(|c| c.stats.unavailable);
                system.nats.pause();
                // Acks already on their way may still arrive; after that,
                // nothing can be stored, so no ack may come.
                let settle = Duration::from_millis(1500);
                tokio::time::sleep(settle).await;
                let acks_paused = sim.total(|c| c.stats.ack_frames);
                tokio::time::sleep(pause_for.saturating_sub(settle)).await;
                let acks_at_end = sim.total(|c| c.stats.ack_frames);
                system.nats.resume();
                let up = Instant::now();
                if acks_at_end != acks_paused {
                    problems.push(format!(
                        "{} acks arrived while nats-server was stopped: nothing can have been stored",
                        acks_at_end - acks_paused
                    ));
                }
                within(
                    "clients recover from SIGSTOP of nats-server",
                    RECOVERY,
                    || ready(sim.all_acked_since(up)),
                )
                .await;
                let unavailable = sim.total(|c| c.stats.unavailable) - unavailable_before;
                if pause_for >= Duration::from_secs(6) && unavailable == 0 {
                    problems.push(format!(
                        "no send failed with `unavailable` while nats-server was stopped for {pause_for:?}"
                    ));
                }
                format!(
                    "SIGSTOP nats-server for {pause_for:?} ({unavailable} sends refused as unavailable), SIGCONT"
                )
            }
        };
        let took = t.elapsed();
        println!("fault at {at:>6.1?}: {note} (recovered in {took:.1?})");
        injected.push(format!("{note} (recovered in {took:.1?})"));
        if round >= FAULTS.len() && faults_began.elapsed() >= run_for {
            break;
        }
    }
    let faults_took = faults_began.elapsed();

    // Drain: no new messages; every pending send acknowledged, every
    // participant has every record up to the conversation's end.
    sim.stop_sending();
    let drain_began = Instant::now();
    let backbone = system.backbone().await;
    settle(&sim, &backbone, RECOVERY).await;
    let states = sim.shutdown().await;
    let db = system.archive().await;
    let checked = check_guarantees(&states, &backbone, &db).await;
    problems.extend(checked.failures);
    let recognised_retries = checked.recognised_retries;
    let drained = drain_began.elapsed();

    for edge in pool.list() {
        let status = readyz(edge).await;
        if status != 200 {
            problems.push(format!("at the end, /readyz of {edge} is {status}"));
        }
    }

    let sum = |f: &dyn Fn(&ClientState) -> u64| states.iter().map(f).sum::<u64>();
    let acked = sum(&|c| c.acks.len() as u64);
    let retried_acks = sum(&|c| c.acks.values().filter(|a| a.acks > 1).count() as u64);
    let acked_on_resend = sum(&|c| c.acks.values().filter(|a| a.attempts > 1).count() as u64);
    println!(
        "fault suite: {visitors} visitors, {agents} agents, 3 edges; {} faults in {faults_took:.1?} after {warmed_up:.1?} of warm-up, drained and checked in {drained:.1?}; total {:.1?}",
        injected.len(),
        began.elapsed()
    );
    println!(
        "  messages acknowledged {acked} ({acked_on_resend} on a re-send, of which {recognised_retries} had been stored by an earlier attempt; {retried_acks} acknowledged more than once); resends {}, reconnects {}, resumes {}, resyncs {}, refused edge connections {}",
        sum(&|c| c.stats.resends),
        sum(&|c| c.stats.reconnects),
        sum(&|c| c.stats.resumes),
        sum(&|c| c.stats.resyncs),
        sum(&|c| c.stats.connect_failures),
    );
    println!(
        "  errors: unavailable {}, rate_limited {}, other {:?}; gap fills {}; incomplete resumes {}; problems {}",
        sum(&|c| c.stats.unavailable),
        sum(&|c| c.stats.rate_limited),
        states.iter().fold(BTreeMap::<String, u64>::new(), |mut all, c| {
            for (code, n) in &c.stats.other_errors {
                *all.entry(code.clone()).or_default() += n;
            }
            all
        }),
        sum(&|c| c.stats.gap_fills),
        sum(&|c| c.stats.incomplete_resumes),
        problems.len(),
    );
    for fault in &injected {
        println!("  - {fault}");
    }

    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert!(
        sum(&|c| c.stats.resumes) > 0 && sum(&|c| c.stats.reconnects) > 0,
        "no client ever reconnected with resume: the faults did not reach the clients"
    );
    assert!(acked > 0, "nothing was acknowledged");
}

// ---------------------------------------------------------------- focused

/// Settings that let one connection send hundreds of frames quickly.
const FAST: [(&str, &str); 2] = [
    ("SWITCHBOARD_EDGE__RATE_PER_SEC", "2000"),
    ("SWITCHBOARD_EDGE__RATE_BURST", "4000"),
];

/// A visitor (on `visitor_edge`) and an agent (on `agent_edge`) in one
/// assigned conversation; returns them with the conversation id.
async fn chatting(
    system: &System,
    visitor_edge: SocketAddr,
    agent_edge: SocketAddr,
) -> (Ws, String, Ws, String) {
    system.add_agent("ada", 3, None).await;
    let agent_token = System::agent_token(agent_edge, "ada").await;
    let (agent, _) = Ws::hello(agent_edge, &agent_token, json!({})).await;
    let (_, visitor_token) = System::visitor(visitor_edge, "Vic").await;
    let (mut visitor, _) = Ws::hello(visitor_edge, &visitor_token, json!({})).await;
    visitor.send(json!({ "type": "start" })).await;
    let started = visitor.expect_type("started").await;
    let conversation = started["conversation_id"].as_str().unwrap().to_owned();
    let mut agent = agent;
    let assigned = agent.expect_type("assigned").await;
    assert_eq!(assigned["conversation_id"], conversation.as_str());
    visitor.expect_event(&conversation, "assigned").await;
    (visitor, visitor_token, agent, conversation)
}

fn seqs(records: &[Value]) -> Vec<u64> {
    records.iter().map(|r| r["seq"].as_u64().unwrap()).collect()
}

/// Sends `count` messages without waiting between them, then awaits every
/// ack; returns the highest acknowledged seq.
async fn burst(ws: &mut Ws, conversation: &str, prefix: &str, count: usize) -> u64 {
    for i in 0..count {
        ws.send(json!({
            "type": "send",
            "conversation_id": conversation,
            "client_id": format!("{prefix}-{i}"),
            "text": format!("{prefix} {i}"),
        }))
        .await;
    }
    let mut last = 0;
    for i in 0..count {
        let id = format!("{prefix}-{i}");
        let ack = ws
            .expect(&format!("ack of {id}"), |f| {
                f["type"] == "ack" && f["client_id"] == id.as_str()
            })
            .await;
        last = last.max(ack["seq"].as_u64().unwrap());
    }
    last
}

/// Awaits the record at `seq` on `ws`.
async fn until_seq(ws: &mut Ws, conversation: &str, seq: u64) {
    ws.expect(&format!("seq {seq} of {conversation}"), |f| {
        (f["type"] == "message" || f["type"] == "event")
            && f["conversation_id"] == conversation
            && f["seq"].as_u64() == Some(seq)
    })
    .await;
}

/// (a) A visitor away while 200 messages arrive resumes on other edges
/// while the agent keeps sending during the catch-up: it receives every
/// seq after the one it named exactly once, in order, and the same
/// records as the agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_on_another_edge_while_messages_arrive_during_catch_up() {
    let mut system = System::start_env(&FAST).await;
    system.router().await;
    let edge_a = system.edge().await;
    let edge_b = system.edge().await;
    let edge_c = system.edge().await;
    let (mut visitor, token, mut agent, conversation) = chatting(&system, edge_a, edge_b).await;
    let first = visitor
        .send_message(&conversation, "hello-1", "hello")
        .await["seq"]
        .as_u64()
        .unwrap();
    until_seq(&mut agent, &conversation, first).await;

    // Twice: resuming on an edge that follows nothing (c), then on the
    // agent's edge (b), which follows the conversation live already.
    until_seq(&mut visitor, &conversation, first).await;
    let mut seen_up_to = first;
    for (round, edge) in [(1, edge_c), (2, edge_b)] {
        visitor.close().await;
        let away = burst(&mut agent, &conversation, &format!("away{round}"), 200).await;
        assert!(away >= seen_up_to + 200);

        // The agent keeps sending while the visitor catches up.
        let sender = {
            let conversation = conversation.clone();
            tokio::spawn(async move {
                let mut last = 0;
                for chunk in 0..20 {
                    let prefix = format!("during{round}-{chunk}");
                    last = burst(&mut agent, &conversation, &prefix, 5).await;
                }
                (agent, last)
            })
        };
        let (resumed, welcome) =
            Ws::hello(edge, &token, json!({ conversation.clone(): seen_up_to })).await;
        visitor = resumed;
        assert_eq!(
            welcome["conversations"][0]["conversation_id"],
            conversation.as_str()
        );
        let (returned, last) = sender.await.unwrap();
        agent = returned;
        until_seq(&mut visitor, &conversation, last).await;
        until_seq(&mut agent, &conversation, last).await;

        let got = visitor.records(&conversation);
        assert_eq!(
            seqs(&got),
            (seen_up_to + 1..=last).collect::<Vec<_>>(),
            "round {round}: the visitor resumed from {seen_up_to} on {edge} and did not get each later seq exactly once, in order"
        );
        let agents_view: BTreeMap<u64, Value> = agent
            .records(&conversation)
            .into_iter()
            .map(|r| (r["seq"].as_u64().unwrap(), r["id"].clone()))
            .collect();
        for record in &got {
            let seq = record["seq"].as_u64().unwrap();
            assert_eq!(
                Some(&record["id"]),
                agents_view.get(&seq),
                "round {round}: visitor and agent disagree at seq {seq}"
            );
        }
        seen_up_to = last;
    }
}

/// (b) A send whose connection dropped before the ack, retried with the
/// same `client_id` on another edge (and from two tabs at once), gets the
/// original `id` and `seq`, and is stored and delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_send_gets_the_original_ack_and_is_stored_once() {
    let mut system = System::start().await;
    system.router().await;
    let edge_a = system.edge().await;
    let edge_b = system.edge().await;
    let (mut visitor, token, mut agent, conversation) = chatting(&system, edge_a, edge_b).await;
    let before = visitor.send_message(&conversation, "k0", "first").await["seq"]
        .as_u64()
        .unwrap();
    until_seq(&mut visitor, &conversation, before).await;

    // Send, then drop the connection without reading the answer.
    visitor
        .send(json!({
            "type": "send", "conversation_id": conversation, "client_id": "k1", "text": "lost ack",
        }))
        .await;
    drop(visitor);
    let delivered = agent
        .expect("k1 delivered to the agent", |f| {
            f["type"] == "message" && f["client_id"] == "k1"
        })
        .await;

    // Retry from another edge, resuming from before the send.
    let (mut retry, _) = Ws::hello(edge_b, &token, json!({ conversation.clone(): before })).await;
    let ack = retry.send_message(&conversation, "k1", "lost ack").await;
    assert_eq!(
        ack["id"], delivered["id"],
        "the retry was acked as another message"
    );
    assert_eq!(
        ack["seq"], delivered["seq"],
        "the retry was acked at another seq"
    );
    // Once more, marked as a re-send as the widget and the console do.
    retry
        .send(json!({
            "type": "send", "conversation_id": conversation, "client_id": "k1",
            "text": "lost ack", "retry": true,
        }))
        .await;
    let again = retry
        .expect("second ack of k1", |f| {
            f["type"] == "ack" && f["client_id"] == "k1"
        })
        .await;
    assert_eq!(
        (&again["id"], &again["seq"]),
        (&ack["id"], &ack["seq"]),
        "the re-send marked `retry` was acked as another message"
    );

    // Two tabs retrying the same send at once.
    let (mut tab, _) = Ws::hello(edge_a, &token, json!({ conversation.clone(): before })).await;
    let frame = json!({
        "type": "send", "conversation_id": conversation, "client_id": "k2", "text": "two tabs",
    });
    retry.send(frame.clone()).await;
    tab.send(frame).await;
    let is_k2_ack = |f: &Value| f["type"] == "ack" && f["client_id"] == "k2";
    let (one, two) = tokio::join!(
        retry.expect("k2 ack", is_k2_ack),
        tab.expect("k2 ack", is_k2_ack)
    );
    assert_eq!(
        (&one["id"], &one["seq"]),
        (&two["id"], &two["seq"]),
        "two tabs, two messages"
    );

    let last = retry.send_message(&conversation, "k3", "after").await["seq"]
        .as_u64()
        .unwrap();
    for ws in [&mut retry, &mut tab, &mut agent] {
        until_seq(ws, &conversation, last).await;
    }
    let count = |ws: &Ws, client_id: &str| {
        ws.records(&conversation)
            .iter()
            .filter(|r| r["client_id"] == client_id)
            .count()
    };
    for client_id in ["k1", "k2"] {
        assert_eq!(
            count(&agent, client_id),
            1,
            "the agent saw {client_id} {} times",
            count(&agent, client_id)
        );
    }
    assert_eq!(
        count(&retry, "k1"),
        1,
        "the retrying visitor saw k1 {} times",
        count(&retry, "k1")
    );
    assert_eq!(count(&retry, "k2"), 1);
    assert_eq!(count(&tab, "k2"), 1);
    let agent_seqs = seqs(&agent.records(&conversation));
    assert_eq!(
        agent_seqs,
        (1..=last).collect::<Vec<_>>(),
        "the agent saw a gap or a repeat"
    );

    let backbone = system.backbone().await;
    let stored = stream_records(&backbone, &conversation).await;
    for client_id in ["k1", "k2"] {
        let n = stored
            .iter()
            .filter(
                |r| matches!(&r.body, RecordBody::Message { client_id: c, .. } if c == client_id),
            )
            .count();
        assert_eq!(n, 1, "{client_id} stored {n} times");
    }
}

/// (a) A visitor that missed more than the 500 records a resume replays
/// gets `resumed` with `complete: false`, the newest 500 exactly once and
/// in order, and pages the rest with `history` from `first_seq` down:
/// together exactly what it missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_more_than_500_missed_pages_the_rest_with_history() {
    let mut system = System::start_env(&FAST).await;
    system.router().await;
    let edge_a = system.edge().await;
    let edge_b = system.edge().await;
    let edge_c = system.edge().await;
    let (mut visitor, token, mut agent, conversation) = chatting(&system, edge_a, edge_b).await;
    let seen = visitor
        .send_message(&conversation, "hello-1", "hello")
        .await["seq"]
        .as_u64()
        .unwrap();
    until_seq(&mut visitor, &conversation, seen).await;
    visitor.close().await;
    let last = burst(&mut agent, &conversation, "away", 620).await;
    until_seq(&mut agent, &conversation, last).await;

    let (mut visitor, _) = Ws::hello(edge_c, &token, json!({ conversation.clone(): seen })).await;
    let resumed = visitor.expect_type("resumed").await;
    assert_eq!(resumed["conversation_id"], conversation.as_str());
    assert_eq!(resumed["after"], seen);
    assert_eq!(resumed["complete"], false, "{resumed}");
    let first = resumed["first_seq"].as_u64().unwrap();
    assert_eq!(first, last - 499, "{resumed}");
    assert_eq!(resumed["replayed"], 500, "{resumed}");
    until_seq(&mut visitor, &conversation, last).await;
    let replayed = visitor.records(&conversation);
    assert_eq!(
        seqs(&replayed),
        (first..=last).collect::<Vec<_>>(),
        "the replay is not the newest 500 records exactly once, in order"
    );

    // The rest, page by page, down to what the visitor had.
    let mut paged: Vec<Value> = Vec::new();
    let mut before = first;
    while before > seen + 1 {
        visitor
            .send(json!({
                "type": "history", "conversation_id": conversation,
                "before_seq": before, "limit": 100,
            }))
            .await;
        let page = visitor.expect_type("history").await;
        let items = page["items"].as_array().unwrap().clone();
        assert!(!items.is_empty(), "empty history page before {before}");
        before = items[0]["seq"].as_u64().unwrap();
        paged.splice(0..0, items);
    }
    paged.retain(|r| r["seq"].as_u64().unwrap() > seen);
    let mut all = paged;
    all.extend(replayed);
    assert_eq!(
        seqs(&all),
        (seen + 1..=last).collect::<Vec<_>>(),
        "replay and history together are not exactly what was missed"
    );
    let agents_view: BTreeMap<u64, Value> = agent
        .records(&conversation)
        .into_iter()
        .map(|r| (r["seq"].as_u64().unwrap(), r["id"].clone()))
        .collect();
    for record in &all {
        let seq = record["seq"].as_u64().unwrap();
        assert_eq!(
            Some(&record["id"]),
            agents_view.get(&seq),
            "visitor and agent disagree at seq {seq}"
        );
    }
}

/// (b) After the dedupe window (1 s here), a re-send marked `retry` (the
/// widget and the console mark every re-send) is still answered with the
/// original `id` and `seq`, and nothing is stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marked_retry_after_the_dedupe_window_gets_the_original_ack() {
    let mut system = System::start_env(&[("SWITCHBOARD_NATS__DUPLICATE_WINDOW", "1s")]).await;
    system.router().await;
    let edge_a = system.edge().await;
    let edge_b = system.edge().await;
    let (mut visitor, token, mut agent, conversation) = chatting(&system, edge_a, edge_b).await;
    let before = visitor.send_message(&conversation, "k0", "first").await["seq"]
        .as_u64()
        .unwrap();
    visitor
        .send(json!({
            "type": "send", "conversation_id": conversation, "client_id": "k1", "text": "late retry",
        }))
        .await;
    drop(visitor);
    let delivered = agent
        .expect("k1 delivered to the agent", |f| {
            f["type"] == "message" && f["client_id"] == "k1"
        })
        .await;
    // Only time can end the window.
    let backbone = system.backbone().await;
    let window = backbone
        .js
        .get_stream("CHAT")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .config
        .duplicate_window;
    assert_eq!(window, Duration::from_secs(1), "the stream's dedupe window");
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let (mut retry, _) = Ws::hello(edge_b, &token, json!({ conversation.clone(): before })).await;
    retry
        .send(json!({
            "type": "send", "conversation_id": conversation, "client_id": "k1",
            "text": "late retry", "retry": true,
        }))
        .await;
    let ack = retry
        .expect("ack of k1", |f| {
            f["type"] == "ack" && f["client_id"] == "k1"
        })
        .await;
    assert_eq!(
        (&ack["id"], &ack["seq"]),
        (&delivered["id"], &delivered["seq"]),
        "a marked retry after the dedupe window was stored as a new message"
    );
    let last = retry.send_message(&conversation, "k2", "after").await["seq"]
        .as_u64()
        .unwrap();
    until_seq(&mut agent, &conversation, last).await;
    let k1_seen = agent
        .records(&conversation)
        .iter()
        .filter(|r| r["client_id"] == "k1")
        .count();
    assert_eq!(k1_seen, 1, "the agent saw k1 {k1_seen} times");
    let stored = stream_records(&backbone, &conversation)
        .await
        .iter()
        .filter(|r| matches!(&r.body, RecordBody::Message { client_id, .. } if client_id == "k1"))
        .count();
    assert_eq!(stored, 1, "k1 stored {stored} times");
}

/// (c) `/readyz` is 503 while nats-server is dead, and 200 once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_nats_is_killed() {
    let mut system = System::start().await;
    let edge = system.edge().await;
    assert_eq!(readyz(edge).await, 200);
    system.nats.kill().await;
    within(
        "/readyz 503 while nats-server is dead",
        Duration::from_secs(20),
        || async {
            match readyz(edge).await {
                503 => Ok(()),
                other => Err(format!("/readyz {other}")),
            }
        },
    )
    .await;
    system.nats.start_again().await;
    within(
        "/readyz 200 once nats-server is back",
        Duration::from_secs(30),
        || async {
            match readyz(edge).await {
                200 => Ok(()),
                other => Err(format!("/readyz {other}")),
            }
        },
    )
    .await;
}

/// (c) `/readyz` is 503 while nats-server is stopped (SIGSTOP: its sockets
/// stay open but nothing answers, so the edge can serve nobody), and 200
/// after SIGCONT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_nats_is_paused() {
    let mut system = System::start().await;
    let edge = system.edge().await;
    assert_eq!(readyz(edge).await, 200);
    system.nats.pause();
    let paused = within(
        "/readyz 503 while nats-server is stopped",
        Duration::from_secs(15),
        || async {
            match readyz(edge).await {
                503 => Ok(()),
                other => Err(format!("/readyz {other}")),
            }
        },
    );
    // Resume even when the check fails, so the server is not left stopped.
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(paused)).await;
    system.nats.resume();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    within(
        "/readyz 200 after SIGCONT",
        Duration::from_secs(30),
        || async {
            match readyz(edge).await {
                200 => Ok(()),
                other => Err(format!("/readyz {other}")),
            }
        },
    )
    .await;
}

/// The scenario of (d): records flow while an archiver is killed with
/// MongoDB down (its batch unacknowledged, redelivered 30 s later to the
/// next archiver), MongoDB comes back, and another archiver is killed
/// mid-traffic. Returns the system, the conversation and its records in
/// the stream.
async fn archiver_kills_and_mongo_restart() -> (System, String, Vec<ChatRecord>) {
    let mut system = System::start_env(&FAST).await;
    system.router().await;
    system.archiver().await;
    let edge = system.edge().await;
    let (mut visitor, _, mut agent, conversation) = chatting(&system, edge, edge).await;
    let db = system.archive().await;

    burst(&mut visitor, &conversation, "before", 30).await;
    let last = burst(&mut agent, &conversation, "answer", 10).await;
    until_seq(&mut agent, &conversation, last).await;
    let id = agent
        .records(&conversation)
        .iter()
        .find(|r| r["seq"].as_u64() == Some(last))
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .unwrap();
    within("archived before the faults", ARCHIVE_CATCH_UP, || {
        is_archived(&db, &id)
    })
    .await;

    // MongoDB down: the archiver holds a batch it cannot store; kill it.
    system.mongo.stop().await;
    burst(&mut visitor, &conversation, "mongo-down", 30).await;
    system.restart_archiver().await;
    burst(&mut agent, &conversation, "mongo-down-answer", 10).await;
    system.mongo.start_again().await;
    burst(&mut visitor, &conversation, "mongo-back", 30).await;
    // Another archiver killed while records flow.
    let sender = {
        let conversation = conversation.clone();
        tokio::spawn(async move {
            burst(&mut visitor, &conversation, "flowing", 60).await;
            visitor
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    system.restart_archiver().await;
    sender.await.unwrap();
    let last = burst(&mut agent, &conversation, "end", 10).await;
    until_seq(&mut agent, &conversation, last).await;

    let backbone = system.backbone().await;
    let stream = stream_records(&backbone, &conversation).await;
    assert_eq!(stream.last().map(|r| r.seq), Some(last));
    (system, conversation, stream)
}

/// (d) After archiver kills and a MongoDB restart, the archive holds
/// exactly one document per record: the stream's ids at the stream's seqs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_is_exact_after_archiver_kills_and_mongo_restart() {
    let (system, conversation, stream) = archiver_kills_and_mongo_restart().await;
    let db = system.archive().await;
    let expected = ids_by_seq(&stream);
    let got = archive_catches_up("the archive holds every record", || async {
        let all = archived(&db).await?;
        let got = all.get(&conversation).cloned().unwrap_or_default();
        if got.len() >= expected.len() {
            Ok(got)
        } else {
            Err(format!("{} of {} archived", got.len(), expected.len()))
        }
    })
    .await;
    assert_eq!(got, expected, "the archive differs from the stream");
    let total = db
        .collection::<Document>("messages")
        .count_documents(doc! {})
        .await
        .unwrap();
    let backbone = system.backbone().await;
    assert_eq!(
        total,
        stream_total(&backbone).await,
        "extra documents in the archive"
    );
}

/// (d) The conversation summary counts each message once after the same
/// faults, including the batch redelivered after a newer one was applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_counts_every_message_once_after_archiver_kills_and_mongo_restart() {
    let (system, conversation, stream) = archiver_kills_and_mongo_restart().await;
    let db = system.archive().await;
    let last = stream.last().map_or(0, |r| r.seq);
    let messages = stream
        .iter()
        .filter(|r| matches!(r.body, RecordBody::Message { .. }))
        .count() as i64;
    // Every record archived first (the redelivered batch included).
    archive_catches_up("the archive holds every record", || async {
        let all = archived(&db).await?;
        let n = all.get(&conversation).map_or(0, Vec::len);
        if n == stream.len() {
            Ok(())
        } else {
            Err(format!("{n} of {} archived", stream.len()))
        }
    })
    .await;
    let summaries = db.collection::<Document>("conversations");
    let summary = archive_catches_up("the summary applied every record", || {
        let summaries = summaries.clone();
        let conversation = conversation.clone();
        async move {
            let summary = summaries
                .find_one(doc! { "_id": &conversation })
                .await
                .map_err(|e| e.to_string())?
                .ok_or("no summary yet")?;
            // A redelivered batch is recounted just after it is archived:
            // wait for the count too (a record counted twice or never
            // leaves it stuck at another value, and the wait fails).
            match (
                summary.get_i64("archived_seq"),
                summary.get_i64("message_count"),
            ) {
                (Ok(seq), Ok(count)) if seq as u64 == last && count == messages => Ok(summary),
                (seq, count) => Err(format!("archived_seq {seq:?}, message_count {count:?}")),
            }
        }
    })
    .await;
    assert_eq!(
        summary.get_i64("message_count").ok(),
        Some(messages),
        "the summary counted a redelivered record twice or never: {summary}"
    );
    // The analytics fold is the fold of the stream: each record applied
    // once, whatever was redelivered (refolded from the archive then).
    let expected = switchboard_analytics::fold(&stream);
    archive_catches_up("the summary's analytics equal the stream's", || {
        let summaries = summaries.clone();
        let conversation = conversation.clone();
        let expected = expected.clone();
        async move {
            let summary = summaries
                .find_one(doc! { "_id": &conversation })
                .await
                .map_err(|e| e.to_string())?
                .ok_or("no summary")?;
            match switchboard_archiver::stats::facts_of(&summary) {
                Some(facts) if facts == expected => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    assert_eq!(expected.messages.total(), messages);
}

/// The conversations' summaries as (`archived_seq`, `message_count`), by id.
async fn summaries(db: &mongodb::Database) -> Result<BTreeMap<String, (i64, i64)>, String> {
    use futures::TryStreamExt;
    let docs: Vec<Document> = db
        .collection::<Document>("conversations")
        .find(doc! {})
        .await
        .map_err(|e| e.to_string())?
        .try_collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(docs
        .iter()
        .filter_map(|d| {
            let id = d.get_str("_id").ok()?.to_owned();
            let seq = d.get_i64("archived_seq").unwrap_or(0);
            let count = d.get_i64("message_count").unwrap_or(0);
            Some((id, (seq, count)))
        })
        .collect())
}

/// Notes of summaries held back (`archiver.summary_delay`).
async fn notes(db: &mongodb::Database) -> u64 {
    db.collection::<Document>("summaries_behind")
        .count_documents(doc! {})
        .await
        .unwrap_or(0)
}

/// An archiver behind the stream acks records once their messages are
/// stored and holds their conversations' summaries (noted in
/// `summaries_behind`). Killed with summaries held, the next archiver
/// catches those conversations up from the archive: every summary applies
/// its conversation's last record, counts each message once and folds the
/// stream's analytics, and no note is left. The next archiver applies
/// newer records (a message sent meanwhile) before its sweep finds the
/// notes, and the summary still says who the visitor and the agent were:
/// what the records applied late set is folded from the archive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summaries_held_by_a_killed_archiver_are_caught_up_by_the_next() {
    let mut system = System::start_env(&FAST).await;
    system.router().await;
    let edge = system.edge().await;
    let ada = system.add_agent("ada", 4, None).await;
    let agent_token = System::agent_token(edge, "ada").await;
    let (mut agent, _) = Ws::hello(edge, &agent_token, json!({})).await;
    let mut visitors = Vec::new();
    let mut visitor_ids = BTreeMap::new();
    for i in 0..4 {
        let (visitor_id, token) = System::visitor(edge, &format!("Vic {i}")).await;
        let (mut visitor, _) = Ws::hello(edge, &token, json!({})).await;
        visitor.send(json!({ "type": "start" })).await;
        let started = visitor.expect_type("started").await;
        let conversation = started["conversation_id"].as_str().unwrap().to_owned();
        visitor.expect_event(&conversation, "assigned").await;
        visitor_ids.insert(conversation.clone(), visitor_id);
        visitors.push((visitor, conversation));
    }
    for _ in 0..4 {
        agent.expect_type("assigned").await;
    }
    // A backlog for the archiver: none runs yet.
    for (visitor, conversation) in &mut visitors {
        burst(visitor, conversation, "backlog", 150).await;
    }
    let db = system.archive().await;
    system
        .archiver_with(&[
            ("SWITCHBOARD_ARCHIVER__BATCH_SIZE", "10"),
            ("SWITCHBOARD_ARCHIVER__SUMMARY_DELAY", "1h"),
        ])
        .await;
    eventually("batches acked with their summaries held", || async {
        (notes(&db).await >= 3).then_some(())
    })
    .await;
    system.kill_all("archiver").await;
    assert!(
        notes(&db).await > 0,
        "the killed archiver left notes of the summaries it held"
    );

    let backbone = system.backbone().await;
    // The last seq of each conversation when the archiver was killed.
    let mut expected = BTreeMap::new();
    for (_, conversation) in &visitors {
        let stream = stream_records(&backbone, conversation).await;
        expected.insert(
            conversation.clone(),
            stream.last().map_or(0, |r| r.seq) as i64,
        );
    }
    let behind = summaries(&db).await.unwrap();
    assert!(
        expected
            .iter()
            .any(|(id, last)| behind.get(id).is_none_or(|s| s.0 < *last)),
        "a summary was behind when the archiver was killed: {behind:?}"
    );

    // Newer records, which the next archiver reads before its sweep takes
    // the notes as left behind (twice the delay after they were written).
    for (visitor, conversation) in &mut visitors {
        burst(visitor, conversation, "after", 1).await;
    }
    system
        .archiver_with(&[("SWITCHBOARD_ARCHIVER__SUMMARY_DELAY", "5s")])
        .await;
    // (The stream is read again each time: the unread agent connection
    // may time out meanwhile, which adds events.)
    archive_catches_up("every summary caught up", || async {
        let got = summaries(&db).await?;
        let mut want = BTreeMap::new();
        for conversation in expected.keys() {
            let stream = stream_records(&backbone, conversation).await;
            let messages = stream
                .iter()
                .filter(|r| matches!(r.body, RecordBody::Message { .. }))
                .count() as i64;
            let last = stream.last().map_or(0, |r| r.seq) as i64;
            want.insert(conversation.clone(), (last, messages));
        }
        match notes(&db).await {
            0 if got == want => Ok(()),
            notes => Err(format!("{notes} notes; summaries {got:?}, want {want:?}")),
        }
    })
    .await;
    for conversation in expected.keys() {
        let stream = stream_records(&backbone, conversation).await;
        let summary = db
            .collection::<Document>("conversations")
            .find_one(doc! { "_id": conversation })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            switchboard_archiver::stats::facts_of(&summary),
            Some(switchboard_analytics::fold(&stream)),
            "the analytics of {conversation} are the stream's"
        );
        let visitor = summary.get_document("visitor").ok();
        assert_eq!(
            visitor.and_then(|v| v.get_str("id").ok()),
            visitor_ids.get(conversation).map(String::as_str),
            "the visitor of {conversation}: {summary}"
        );
        let agents = summary.get_array("agents").cloned().unwrap_or_default();
        assert!(
            agents.iter().any(
                |a| a.as_document().and_then(|a| a.get_str("id").ok()) == Some(ada.id.as_str())
            ),
            "ada among the agents of {conversation}: {summary}"
        );
    }
}
