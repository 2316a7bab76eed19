//! `ws-relay`: the `chat` closed loop through the minimal WebSocket relay
//! of [`crate::relay`] (no NATS, nothing stored): what the WebSocket side
//! alone allows on this machine. The clients are `chat`'s own (the same
//! visitor shards, the same agent tasks, the same frames and counts); only
//! the handshake differs, and conversations are paired by id instead of
//! assigned by a router.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use futures::StreamExt;
use serde_json::json;
use tokio::sync::watch;

use crate::chat::{self, ChatReport, Loop, Mode, Shared};
use crate::cpu::Watched;
use crate::net::{self, Socket};
use crate::setup::{self, Visitor, STEP_TIMEOUT};
use crate::stats::Errors;

#[derive(Debug, Clone)]
pub struct WsRelayConfig {
    /// Where `ws-relay-server` listens.
    pub relay: SocketAddr,
    pub pairs: usize,
    /// Agent sockets sharing the conversations (as in `chat`).
    pub agents: usize,
    pub secs: f64,
    pub warmup: f64,
    pub concurrency: usize,
    pub drain: Duration,
    /// The relay's process and any other to report the CPU of.
    pub cpu: Vec<Watched>,
}

/// Opens a socket on the relay and registers it for `conversations`.
async fn join(relay: SocketAddr, role: &str, conversations: &[String]) -> Result<Socket> {
    let mut socket = net::ws_connect(relay).await?;
    let hello = json!({ "type": "hello", "role": role, "conversations": conversations });
    net::send_text(&mut socket, hello.to_string()).await?;
    net::expect(&mut socket, "welcome", STEP_TIMEOUT, |_| {}).await?;
    Ok(socket)
}

/// Runs `ws-relay`.
pub async fn run(config: &WsRelayConfig) -> Result<ChatReport> {
    if config.pairs == 0 || config.agents == 0 {
        bail!("ws-relay needs at least one pair and one agent");
    }
    let setup_started = Instant::now();
    let run_id = setup::run_id();
    let conversations: Vec<String> = (0..config.pairs)
        .map(|i| format!("r_{run_id}_{i}"))
        .collect();
    let agents = config.agents.min(config.pairs);
    let shared = Arc::new(Shared::default());
    let (done_tx, done_rx) = watch::channel(false);
    let mut agent_tasks = Vec::with_capacity(agents);
    for a in 0..agents {
        let own: Vec<String> = conversations
            .iter()
            .skip(a)
            .step_by(agents)
            .cloned()
            .collect();
        let socket = join(config.relay, "agent", &own).await?;
        agent_tasks.push(tokio::spawn(chat::agent(
            socket,
            shared.clone(),
            true,
            done_rx.clone(),
        )));
    }
    let relay = config.relay;
    let results: Vec<Result<Visitor>> = futures::stream::iter(conversations)
        .map(|conversation| async move {
            let socket = join(relay, "visitor", std::slice::from_ref(&conversation)).await?;
            Ok(Visitor {
                socket,
                conversation,
                token: String::new(),
                edge: 0,
                last_seq: 0,
            })
        })
        .buffer_unordered(config.concurrency.max(1))
        .collect()
        .await;
    let mut errors = Errors::default();
    let mut visitors = Vec::with_capacity(config.pairs);
    for result in results {
        match result {
            Ok(visitor) => visitors.push(visitor),
            Err(err) => errors.add(setup::short_error(&err)),
        }
    }
    let run = Loop {
        scenario: "ws-relay",
        mode: Mode::Closed,
        pairs: config.pairs,
        agents,
        secs: config.secs,
        warmup: config.warmup,
        drain: config.drain,
        setup_secs: setup_started.elapsed().as_secs_f64(),
        cpu: config.cpu.clone(),
    };
    chat::drive(&run, visitors, agent_tasks, shared, done_tx, errors).await
}
