//! Many routers at once, under churn: three router processes (killed with
//! SIGKILL and restarted at random), twenty agents of mixed capacity and
//! teams connecting, disconnecting and changing status at random, three
//! hundred conversations. Checked continuously from the KV state and at the
//! end from what the visitors received:
//! - no agent ever holds more conversations than their capacity;
//! - a conversation never has two agents (no `assigned` without the
//!   previous agent leaving first);
//! - every conversation is eventually assigned and closed;
//! - within a team, the queue is served in order: nobody who waited longer
//!   is passed over for a later conversation.
//!
//! `SWITCHBOARD_CHURN_SECS` sets the churn phase (default 20 s).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use switchboard_protocol::ids::{AgentId, ConversationId};
use switchboard_protocol::payloads::{decode, ConversationState, ConversationStatus};
use switchboard_tests::system::System;
use switchboard_tests::ws::{Incoming, Ws};
use switchboard_tests::{progressing, scaled};
use tokio::time::{timeout, Instant};

const VISITORS: usize = 300;
const AGENTS: usize = 20;

/// A tiny deterministic generator (no dependency needed for test churn).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n.max(1)
    }
}

/// A violation the watcher thinks it saw: what, the conversations
/// involved, and for a capacity breach the agent and their capacity.
type Suspect = (String, Vec<ConversationId>, Option<(AgentId, u32)>);

#[derive(Default)]
struct Checks {
    violations: Vec<String>,
    /// Conversation → (team, priority, queued_at, queued since) while queued.
    queued: HashMap<ConversationId, (Option<String>, i32, i64, Instant)>,
    closed: HashMap<ConversationId, bool>,
}

/// Watches the routing state and records every invariant it sees broken.
async fn watch_invariants(
    backbone: switchboard_bus::Backbone,
    capacities: HashMap<AgentId, u32>,
    checks: Arc<Mutex<Checks>>,
) {
    let Ok(mut watch) = backbone.conversations.watch_with_history(">").await else {
        checks
            .lock()
            .unwrap()
            .violations
            .push("cannot watch conversations".into());
        return;
    };
    let mut state: HashMap<ConversationId, ConversationState> = HashMap::new();
    while let Some(Ok(entry)) = watch.next().await {
        let Ok(value) = decode::<ConversationState>(&entry.value) else {
            continue;
        };
        let now = Instant::now();
        // Candidate violations, verified against the bucket below: a
        // watcher that lags may skip superseded revisions (the bucket keeps
        // one per key), so its own view can be briefly stale.
        let suspects = {
            let mut suspects: Vec<Suspect> = Vec::new();
            let mut guard = checks.lock().unwrap();
            let before = state.insert(value.id.clone(), value.clone());
            match value.status {
                ConversationStatus::Queued => {
                    let since = match (&before, guard.queued.get(&value.id)) {
                        (Some(b), Some(q)) if b.status == ConversationStatus::Queued => q.3,
                        _ => now,
                    };
                    guard.queued.insert(
                        value.id.clone(),
                        (
                            value.team.as_ref().map(|t| t.to_string()),
                            value.priority,
                            value.queued_at,
                            since,
                        ),
                    );
                }
                ConversationStatus::Assigned => {
                    let was_queued = before
                        .as_ref()
                        .is_some_and(|b| b.status == ConversationStatus::Queued);
                    if was_queued {
                        // Order within the team: nobody older (same priority)
                        // who has been waiting for a while (longer than a
                        // router's view may lag here) was passed over.
                        let team = value.team.as_ref().map(|t| t.to_string());
                        let me = (value.priority, value.queued_at);
                        let skipped: Vec<ConversationId> = guard
                            .queued
                            .iter()
                            .filter(|(id, q)| {
                                **id != value.id
                                    && q.0 == team
                                    && q.1 == me.0
                                    && q.2 < me.1
                                    && now.duration_since(q.3) > scaled(Duration::from_secs(2))
                            })
                            .map(|(id, _)| id.clone())
                            .collect();
                        if !skipped.is_empty() {
                            suspects.push((
                                format!(
                                    "{} assigned while older {skipped:?} of its team waited",
                                    value.id
                                ),
                                skipped,
                                None,
                            ));
                        }
                    }
                    guard.queued.remove(&value.id);
                    // Capacity, from the assignments themselves.
                    if let Some(agent) = value
                        .agent
                        .as_ref()
                        .and_then(|a| AgentId::new(a.id.as_str()).ok())
                    {
                        let held: Vec<ConversationId> = state
                            .values()
                            .filter(|c| c.is_assigned_to(&agent))
                            .map(|c| c.id.clone())
                            .collect();
                        let capacity = capacities.get(&agent).copied().unwrap_or(0);
                        if held.len() as u32 > capacity {
                            suspects.push((
                                format!(
                                    "{agent} holds {} conversations, capacity {capacity}",
                                    held.len()
                                ),
                                held,
                                Some((agent, capacity)),
                            ));
                        }
                    }
                }
                ConversationStatus::Closed => {
                    guard.queued.remove(&value.id);
                    guard.closed.insert(value.id.clone(), true);
                }
                ConversationStatus::Missed => {
                    guard.queued.remove(&value.id);
                }
            }
            suspects
        };
        for (what, ids, capacity) in suspects {
            let mut current = Vec::new();
            for id in &ids {
                if let Ok(Some(entry)) = backbone.conversations.entry(id.as_str()).await {
                    if let Ok(state) = decode::<ConversationState>(&entry.value) {
                        current.push(state);
                    }
                }
            }
            let real = match capacity {
                // Still holding more than its capacity, per the bucket.
                Some((agent, capacity)) => {
                    current.iter().filter(|c| c.is_assigned_to(&agent)).count() as u32 > capacity
                }
                // Still waiting, per the bucket.
                None => current
                    .iter()
                    .any(|c| c.status == ConversationStatus::Queued),
            };
            if real {
                checks.lock().unwrap().violations.push(what);
            }
        }
    }
}

/// One agent's churn: connect to some edge, act at random, leave, repeat.
async fn churn_agent(edges: Vec<SocketAddr>, login: String, seed: u64, until: Instant) {
    let mut rng = Lcg(seed);
    while Instant::now() < until {
        let edge = edges[rng.below(edges.len() as u64) as usize];
        let token = System::agent_token(edge, &login).await;
        let (mut ws, welcome) = Ws::hello(edge, &token, json!({})).await;
        let mut mine: Vec<String> = welcome["conversations"]
            .as_array()
            .map(|c| {
                c.iter()
                    .filter_map(|c| c["conversation_id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let stay = Instant::now() + Duration::from_millis(300 + rng.below(2500));
        while Instant::now() < stay {
            if let Ok(Incoming::Frame(frame)) = timeout(Duration::from_millis(100), ws.next()).await
            {
                if frame["type"] == "assigned" {
                    mine.push(
                        frame["conversation_id"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    );
                }
            }
            match rng.below(20) {
                0 => ws.send(json!({ "type": "status", "status": "away" })).await,
                1 | 2 => {
                    ws.send(json!({ "type": "status", "status": "online" }))
                        .await
                }
                3..=5 if !mine.is_empty() => {
                    let i = rng.below(mine.len() as u64) as usize;
                    let conversation = mine.swap_remove(i);
                    ws.send(json!({ "type": "close", "conversation_id": conversation }))
                        .await;
                }
                _ => {}
            }
        }
        ws.close().await;
        // Offline for a moment; sometimes past the 2 s grace.
        tokio::time::sleep(Duration::from_millis(100 + rng.below(3000))).await;
    }
}

/// The drain: an agent stays online and closes whatever it is given.
async fn serve_until_done(edge: SocketAddr, login: String, done: Arc<tokio::sync::Notify>) {
    let token = System::agent_token(edge, &login).await;
    let (mut ws, welcome) = Ws::hello(edge, &token, json!({})).await;
    for c in welcome["conversations"].as_array().into_iter().flatten() {
        ws.send(json!({ "type": "close", "conversation_id": c["conversation_id"] }))
            .await;
    }
    loop {
        tokio::select! {
            () = done.notified() => return,
            frame = ws.next() => match frame {
                Incoming::Frame(f) if f["type"] == "assigned" => {
                    ws.send(json!({ "type": "close", "conversation_id": f["conversation_id"] })).await;
                }
                Incoming::Frame(_) => {}
                Incoming::Closed(_) => return,
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_routers_keep_the_routing_invariants_under_churn() {
    let secs: u64 = std::env::var("SWITCHBOARD_CHURN_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let mut system = System::start_env(&[
        ("SWITCHBOARD_ROUTER__AGENT_GRACE", "2s"),
        ("SWITCHBOARD_EDGE__RATE_PER_SEC", "1000"),
        ("SWITCHBOARD_EDGE__RATE_BURST", "1000"),
    ])
    .await;
    for _ in 0..3 {
        system.router().await;
    }
    let edges = vec![system.edge().await, system.edge().await];
    let mut capacities = HashMap::new();
    let mut logins = Vec::new();
    for i in 0..AGENTS {
        let login = format!("agent{i}");
        let team = if i % 2 == 0 { "red" } else { "blue" };
        let capacity = 1 + (i % 4) as u32;
        let account = system.add_agent(&login, capacity, Some(team)).await;
        capacities.insert(account.id, capacity);
        logins.push(login);
    }
    let checks = Arc::new(Mutex::new(Checks::default()));
    let watcher = tokio::spawn(watch_invariants(
        system.backbone().await,
        capacities,
        Arc::clone(&checks),
    ));

    // Churn: agents come and go while visitors arrive and routers die.
    let until = Instant::now() + Duration::from_secs(secs);
    let churners: Vec<_> = logins
        .iter()
        .enumerate()
        .map(|(i, login)| {
            tokio::spawn(churn_agent(
                edges.clone(),
                login.clone(),
                7 + i as u64,
                until,
            ))
        })
        .collect();
    let mut visitors: Vec<(Ws, String)> = Vec::with_capacity(VISITORS);
    let mut rng = Lcg(42);
    let mut next_kill = Instant::now() + Duration::from_secs(2);
    let mut kills = 0;
    while visitors.len() < VISITORS || Instant::now() < until {
        if visitors.len() < VISITORS {
            let edge = edges[visitors.len() % edges.len()];
            let (_, token) = System::visitor(edge, &format!("Visitor {}", visitors.len())).await;
            let (mut ws, _) = Ws::hello(edge, &token, json!({})).await;
            let team = if visitors.len() % 2 == 0 {
                "red"
            } else {
                "blue"
            };
            ws.send(json!({ "type": "start", "team": team })).await;
            let id = ws.expect_type("started").await["conversation_id"]
                .as_str()
                .unwrap()
                .to_owned();
            visitors.push((ws, id));
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if Instant::now() >= next_kill {
            let routers: Vec<usize> = system
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.kind == "router")
                .map(|(i, _)| i)
                .collect();
            let victim = routers[rng.below(routers.len() as u64) as usize];
            let mut node = system.nodes.remove(victim);
            node.kill().await;
            system.router().await;
            kills += 1;
            next_kill = Instant::now() + Duration::from_millis(1500 + rng.below(2500));
        }
    }
    for churner in churners {
        churner.await.unwrap();
    }

    // Drain: every agent online, closing what it gets, until every
    // conversation has been served.
    let done = Arc::new(tokio::sync::Notify::new());
    let servers: Vec<_> = logins
        .iter()
        .enumerate()
        .map(|(i, login)| {
            tokio::spawn(serve_until_done(
                edges[i % 2],
                login.clone(),
                Arc::clone(&done),
            ))
        })
        .collect();
    let ids: Vec<ConversationId> = visitors.iter().map(|(_, id)| id.parse().unwrap()).collect();
    // However long serving them all takes here, it must keep moving.
    progressing("every conversation served", || {
        let open = {
            let checks = checks.lock().unwrap();
            ids.iter()
                .filter(|id| !checks.closed.contains_key(*id))
                .count()
        };
        std::future::ready(match open {
            0 => Ok(()),
            open => Err(format!("{open} conversations not served yet")),
        })
    })
    .await;
    done.notify_waiters();
    for server in servers {
        server.abort();
    }

    // What the visitors saw: never a second agent without the first leaving.
    let mut assignments = 0;
    for (ws, id) in &mut visitors {
        ws.expect_event(id, "closed").await;
        let assigned = ws
            .records(id)
            .iter()
            .filter(|r| r["event"] == "assigned")
            .count();
        assert!(assigned > 0, "{id} was closed without ever being assigned");
        assignments += assigned;
        let mut holder: Option<String> = None;
        for record in ws.records(id) {
            match record["event"].as_str() {
                Some("assigned") => {
                    let agent = record["agent"]["id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    assert!(
                        holder.is_none(),
                        "{id}: {agent} assigned while {holder:?} still held it"
                    );
                    holder = Some(agent);
                }
                Some("agent_left" | "transferred" | "closed") => holder = None,
                _ => {}
            }
        }
    }
    watcher.abort();
    let checks = checks.lock().unwrap();
    assert!(checks.violations.is_empty(), "{:#?}", checks.violations);

    println!(
        "many routers: {VISITORS} conversations, {assignments} assignments, {kills} router kills, {secs} s of churn"
    );
    assert!(kills >= 1, "the churn phase killed no router");
}
