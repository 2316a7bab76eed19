//! A bot among many routers, under churn (the sibling of many_routers.rs):
//! three routers killed with SIGKILL and restarted at random, agents of a
//! bot-first team coming and going, the Rust FAQ bot killed and restarted
//! at random, visitors asking it questions, asking for a human in words or
//! with the `handoff` frame. Checked continuously from the KV state, and at
//! the end from what the visitors received:
//! - a bot never holds a conversation a human has had, or that a bot handed
//!   off (from the routing state: once a human or a handoff is seen, no bot
//!   ever holds it again, whatever revisions the watch skipped);
//! - no conversation is ever given to someone while another holds it (the
//!   `assigned` events each visitor saw), and a bot only before any human;
//! - every conversation is eventually served by a human and closed (the
//!   bot is stopped for good for the drain: its conversations go to the
//!   humans as `bot_absent`).
//!
//! `SWITCHBOARD_BOT_CHURN_SECS` sets the churn phase (default 12 s).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use switchboard_protocol::ids::ConversationId;
use switchboard_protocol::payloads::{decode, ConversationState, ConversationStatus, Role};
use switchboard_tests::bots::{add_bot, BotKind, BotProcess};
use switchboard_tests::progressing;
use switchboard_tests::system::System;
use switchboard_tests::ws::{Incoming, Ws};
use tokio::time::{timeout, Instant};

const VISITORS: usize = 120;
const AGENTS: usize = 8;

/// A tiny deterministic generator.
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

#[derive(Default)]
struct Checks {
    violations: Vec<String>,
    /// Conversations a human has held or a bot handed off, as seen.
    humans: HashMap<ConversationId, String>,
    closed: HashMap<ConversationId, bool>,
    /// Conversations seen held by the bot.
    bot_held: usize,
}

/// Watches the routing state: a bot never holds a conversation that a
/// human had or that a bot handed off.
async fn watch_invariants(backbone: switchboard_bus::Backbone, checks: Arc<Mutex<Checks>>) {
    let Ok(mut watch) = backbone.conversations.watch_with_history(">").await else {
        checks
            .lock()
            .unwrap()
            .violations
            .push("cannot watch conversations".into());
        return;
    };
    while let Some(Ok(entry)) = watch.next().await {
        let Ok(state) = decode::<ConversationState>(&entry.value) else {
            continue;
        };
        let mut checks = checks.lock().unwrap();
        let owner = state
            .agent
            .as_ref()
            .filter(|_| state.status == ConversationStatus::Assigned);
        match owner {
            Some(bot) if bot.role == Role::Bot => {
                checks.bot_held += 1;
                if state.humans_only
                    || state
                        .exclude_bot
                        .as_ref()
                        .is_some_and(|b| b.as_str() == bot.id)
                {
                    checks.violations.push(format!(
                        "{} held by bot {} while for humans only (revision {})",
                        state.id, bot.id, entry.revision
                    ));
                }
                if let Some(why) = checks.humans.get(&state.id) {
                    let what = format!(
                        "{} held by bot {} after {why} (revision {})",
                        state.id, bot.id, entry.revision
                    );
                    checks.violations.push(what);
                }
            }
            Some(agent) => {
                let why = format!("human {}", agent.id);
                checks.humans.entry(state.id.clone()).or_insert(why);
            }
            None if state.humans_only => {
                checks
                    .humans
                    .entry(state.id.clone())
                    .or_insert_with(|| "a handoff".to_owned());
            }
            None => {}
        }
        if state.status == ConversationStatus::Closed {
            checks.closed.insert(state.id.clone(), true);
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

const SAYINGS: [&str; 4] = [
    "How long does shipping take?",
    "hello",
    "I want a human",
    "Do you take card payment?",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bot_never_holds_what_a_human_holds_under_churn() {
    let secs: u64 = std::env::var("SWITCHBOARD_BOT_CHURN_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let mut system = System::start_env(&[
        ("SWITCHBOARD_ROUTER__AGENT_GRACE", "2s"),
        ("SWITCHBOARD_ROUTER__BOT_REPLY_DEADLINE", "2s"),
        ("SWITCHBOARD_NATS__PRESENCE_TTL", "3s"),
        ("SWITCHBOARD_EDGE__RATE_PER_SEC", "1000"),
        ("SWITCHBOARD_EDGE__RATE_BURST", "1000"),
    ])
    .await;
    for _ in 0..3 {
        system.router().await;
    }
    let edges = vec![system.edge().await, system.edge().await];
    let backbone = system.backbone().await;
    let mut logins = Vec::new();
    for i in 0..AGENTS {
        let login = format!("agent{i}");
        system
            .add_agent(&login, 1 + (i % 3) as u32, Some("sales"))
            .await;
        logins.push(login);
    }
    add_bot(&backbone, "faq", "FAQ bot", "sales").await;
    let checks = Arc::new(Mutex::new(Checks::default()));
    let watcher = tokio::spawn(watch_invariants(backbone.clone(), Arc::clone(&checks)));
    let mut bot = Some(BotProcess::start(&system, BotKind::Rust, "faq"));

    let until = Instant::now() + Duration::from_secs(secs);
    let churners: Vec<_> = logins
        .iter()
        .enumerate()
        .map(|(i, login)| {
            tokio::spawn(churn_agent(
                edges.clone(),
                login.clone(),
                11 + i as u64,
                until,
            ))
        })
        .collect();
    let mut visitors: Vec<(Ws, String)> = Vec::with_capacity(VISITORS);
    let mut rng = Lcg(99);
    let mut next_router_kill = Instant::now() + Duration::from_secs(2);
    let mut next_bot_flip = Instant::now() + Duration::from_millis(1500);
    let (mut router_kills, mut bot_kills) = (0, 0);
    let pace = Duration::from_millis(secs * 1000 / VISITORS as u64);
    while visitors.len() < VISITORS || Instant::now() < until {
        if visitors.len() < VISITORS {
            let edge = edges[visitors.len() % edges.len()];
            let n = visitors.len();
            let (_, token) = System::visitor(edge, &format!("Visitor {n}")).await;
            let (mut ws, _) = Ws::hello(edge, &token, json!({})).await;
            ws.send(
                json!({ "type": "start", "team": "sales", "text": SAYINGS[n % SAYINGS.len()] }),
            )
            .await;
            let id = ws.expect_type("started").await["conversation_id"]
                .as_str()
                .unwrap()
                .to_owned();
            if n % 5 == 0 {
                // "Talk to a person" at once (a no-op unless a bot has it).
                ws.send(json!({ "type": "handoff", "conversation_id": id }))
                    .await;
            }
            visitors.push((ws, id));
            tokio::time::sleep(pace).await;
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if Instant::now() >= next_router_kill {
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
            router_kills += 1;
            next_router_kill = Instant::now() + Duration::from_millis(1500 + rng.below(2500));
        }
        if Instant::now() >= next_bot_flip {
            match bot.take() {
                Some(mut running) => {
                    running.kill().await;
                    bot_kills += 1;
                }
                None => bot = Some(BotProcess::start(&system, BotKind::Rust, "faq")),
            }
            next_bot_flip = Instant::now() + Duration::from_millis(1000 + rng.below(3000));
        }
    }
    for churner in churners {
        churner.await.unwrap();
    }
    // The drain: the bot gone for good, every agent online closing what it
    // gets, until every conversation is closed.
    if let Some(mut running) = bot.take() {
        running.kill().await;
    }
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

    // What the visitors saw: one holder at a time; a bot only before any
    // human and any handoff; the end with a human.
    let (mut to_bots, mut handoffs) = (0, 0);
    for (ws, id) in &mut visitors {
        ws.expect_event(id, "closed").await;
        // (role, id) of who holds it.
        let mut holder: Option<(String, String)> = None;
        let mut humans_only = false;
        let mut human_served = false;
        for record in ws.records(id) {
            match record["event"].as_str() {
                Some("assigned") => {
                    let role = record["agent"]["role"].as_str().unwrap_or_default();
                    let who = (role.to_owned(), record["agent"]["id"].to_string());
                    assert!(
                        holder.is_none(),
                        "{id}: {who:?} assigned while {holder:?} held it"
                    );
                    if role == "bot" {
                        assert!(
                            !humans_only,
                            "{id}: the bot got it after a human or a handoff"
                        );
                        to_bots += 1;
                    } else {
                        humans_only = true;
                        human_served = true;
                    }
                    holder = Some(who);
                }
                Some("handed_off") => {
                    assert!(
                        holder.as_ref().is_some_and(|(role, _)| role == "bot"),
                        "{id}: handed off while {holder:?} held it"
                    );
                    handoffs += 1;
                    humans_only = true;
                    holder = None;
                }
                Some("agent_left" | "transferred" | "closed") => holder = None,
                _ => {}
            }
        }
        assert!(
            human_served,
            "{id} was closed without a human: {:#?}",
            ws.records(id)
        );
    }
    watcher.abort();
    let checks = checks.lock().unwrap();
    assert!(checks.violations.is_empty(), "{:#?}", checks.violations);
    println!(
        "bot churn: {VISITORS} conversations, {to_bots} given to the bot, {handoffs} handoffs, {router_kills} router kills, {bot_kills} bot kills, {secs} s of churn"
    );
    assert!(
        router_kills >= 1 && bot_kills >= 1,
        "the churn killed nothing"
    );
    assert!(to_bots > 0 && handoffs > 0, "the bot took no part");
}
