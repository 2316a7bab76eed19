//! `assign`: visitors keep starting conversations while agents free their
//! slots by closing each conversation as soon as it is assigned. More
//! visitors than slots keep a queue waiting, so every freed slot is taken
//! by the next visitor in line.
//!
//! Reported: conversations started per second, assignments per second, and
//! the time from a slot being freed (the agent receives the `closed` event
//! of the conversation it closed) to the next assignment (an `assigned`
//! frame at any agent), matched first-freed, first-filled.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::watch;

use crate::net::{self, Frame, Incoming, Socket};
use crate::now_ns;
use crate::report::{num, row, Report};
use crate::setup;
use crate::stats::{Errors, Hist, Latency};
use switchboard_protocol::ids::TeamId;

#[derive(Debug, Clone)]
pub struct AssignConfig {
    pub visitor_edges: Vec<SocketAddr>,
    pub agent_edges: Vec<SocketAddr>,
    pub nats_url: String,
    pub agents: usize,
    pub capacity: u32,
    /// Visitors beyond the total capacity: the queue kept waiting.
    pub waiting: usize,
    pub secs: f64,
    pub warmup: f64,
    /// How long an agent keeps a conversation before closing it.
    pub hold: Duration,
    /// Free-form label for the report (e.g. "3 routers").
    pub label: String,
    /// Teams the agents and visitors are spread over (0: no team). Agent
    /// `i` and visitor `i` are in team `i % teams`.
    pub teams: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct AssignReport {
    pub scenario: &'static str,
    pub label: String,
    pub agents: usize,
    pub capacity: u32,
    pub teams: usize,
    pub visitors: usize,
    pub secs: f64,
    pub started: u64,
    pub started_per_sec: f64,
    pub assignments: u64,
    pub assignments_per_sec: f64,
    pub closed: u64,
    /// Slot freed → next conversation assigned.
    pub slot_to_assigned: Latency,
    /// Visitor `start` → its conversation assigned (includes queueing).
    pub start_to_assigned: Latency,
    pub errors: Errors,
}

impl Report for AssignReport {
    fn title(&self) -> String {
        format!("assign ({})", self.label)
    }

    fn rows(&self) -> Vec<(String, String)> {
        vec![
            row(
                "agents × capacity",
                format!("{} × {}", self.agents, self.capacity),
            ),
            row("visitors", self.visitors),
            row("teams", self.teams),
            row("measured", format!("{:.1} s", self.secs)),
            row("conversations started/s", num(self.started_per_sec, 0)),
            row("assignments/s", num(self.assignments_per_sec, 0)),
            row(
                "slot free→assigned p50/p99/p99.9/max",
                self.slot_to_assigned.line(),
            ),
            row(
                "start→assigned p50/p99/p99.9/max",
                self.start_to_assigned.line(),
            ),
            row("errors", self.errors.line()),
        ]
    }
}

#[derive(Default)]
struct Shared {
    window_start: AtomicU64,
    window_end: AtomicU64,
    freed: Mutex<VecDeque<u64>>,
    assigned_total: AtomicU64,
}

impl Shared {
    fn in_window(&self, t: u64) -> bool {
        let start = self.window_start.load(Ordering::Relaxed);
        start != 0 && t >= start && t < self.window_end.load(Ordering::Relaxed)
    }

    fn freed(&self) -> std::sync::MutexGuard<'_, VecDeque<u64>> {
        self.freed.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Default)]
struct Tally {
    assignments: u64,
    started: u64,
    closed: u64,
    slot: Hist,
    start: Hist,
    errors: Errors,
}

async fn agent(
    mut socket: Socket,
    shared: Arc<Shared>,
    hold: Duration,
    mut done: watch::Receiver<bool>,
) -> Tally {
    let mut tally = Tally::default();
    let mut to_close: VecDeque<(tokio::time::Instant, String)> = VecDeque::new();
    let mut mine: std::collections::HashSet<String> = std::collections::HashSet::new();
    loop {
        let next_close = to_close.front().map(|(at, _)| *at);
        let message = tokio::select! {
            _ = done.changed() => break,
            () = async {
                match next_close {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                if let Some((_, conversation)) = to_close.pop_front() {
                    let frame = format!(r#"{{"type":"close","conversation_id":"{conversation}"}}"#);
                    if net::send_text(&mut socket, frame).await.is_err() {
                        tally.errors.add("agent send failed");
                        break;
                    }
                }
                continue;
            }
            message = socket.next() => message,
        };
        let text = match net::incoming(message) {
            Incoming::Text(text) => text,
            Incoming::Skip => continue,
            Incoming::Ended(error) => {
                tally.errors.add(error);
                break;
            }
        };
        let now = now_ns();
        let Ok(frame) = Frame::parse(text.as_str()) else {
            continue;
        };
        match frame.kind.as_ref() {
            "assigned" => {
                shared.assigned_total.fetch_add(1, Ordering::Relaxed);
                if shared.in_window(now) {
                    tally.assignments += 1;
                }
                let freed_at = shared.freed().pop_front();
                if let Some(freed_at) = freed_at {
                    if shared.in_window(freed_at) {
                        tally.slot.record_ns(now.saturating_sub(freed_at));
                    }
                }
                let conversation = frame.conversation().to_owned();
                mine.insert(conversation.clone());
                to_close.push_back((tokio::time::Instant::now() + hold, conversation));
            }
            "event"
                if frame.event.as_deref() == Some("closed")
                    && mine.remove(frame.conversation()) =>
            {
                tally.closed += 1;
                shared.freed().push_back(now);
            }
            "error" => tally.errors.add(format!(
                "agent error {}",
                frame.code.as_deref().unwrap_or("?")
            )),
            _ => {}
        }
    }
    tally
}

/// One visitor: start, wait to be assigned, wait for the close, again.
async fn visitor(mut socket: Socket, shared: Arc<Shared>, start: String) -> Tally {
    let mut tally = Tally::default();
    let end = shared.window_end.load(Ordering::Relaxed);
    'conversations: while now_ns() < end {
        let started_at = now_ns();
        if net::send_text(&mut socket, start.clone()).await.is_err() {
            tally.errors.add("visitor send failed");
            break;
        }
        let mut conversation: Option<String> = None;
        let mut assigned = false;
        loop {
            let left = Duration::from_nanos((end + 5_000_000_000).saturating_sub(now_ns()));
            let text = match net::next_text(&mut socket, left).await {
                Ok(text) => text,
                Err(_) if now_ns() >= end => break 'conversations,
                Err(err) => {
                    tally.errors.add(setup::short_error(&err));
                    break 'conversations;
                }
            };
            let now = now_ns();
            let Ok(frame) = Frame::parse(&text) else {
                continue;
            };
            match (frame.kind.as_ref(), frame.event.as_deref()) {
                ("started", _) => {
                    if frame.created == Some(true) && shared.in_window(now) {
                        tally.started += 1;
                    }
                    conversation = frame.conversation_id.as_deref().map(str::to_owned);
                }
                ("event", Some("assigned"))
                    if conversation.as_deref() == Some(frame.conversation()) && !assigned =>
                {
                    assigned = true;
                    if shared.in_window(started_at) {
                        tally.start.record_ns(now.saturating_sub(started_at));
                    }
                }
                ("event", Some("closed"))
                    if conversation.as_deref() == Some(frame.conversation()) =>
                {
                    continue 'conversations;
                }
                ("error", _) => {
                    tally.errors.add(format!(
                        "visitor error {}",
                        frame.code.as_deref().unwrap_or("?")
                    ));
                    continue 'conversations;
                }
                _ => {}
            }
        }
    }
    tally
}

/// Runs `assign`.
pub async fn run(config: &AssignConfig) -> Result<AssignReport> {
    if config.agents == 0 || config.capacity == 0 {
        bail!("assign needs agents with capacity");
    }
    if config.visitor_edges.is_empty() || config.agent_edges.is_empty() {
        bail!("assign needs a visitor edge and an agent edge");
    }
    let backbone = setup::backbone(&config.nats_url).await?;
    let run_id = setup::run_id();
    let teams: Vec<TeamId> = (0..config.teams)
        .map(|t| TeamId::new(format!("bench-{run_id}-t{t}")))
        .collect::<Result<_, _>>()
        .context("team id")?;
    let logins =
        setup::create_team_agents(&backbone, &run_id, config.agents, config.capacity, &teams)
            .await?;
    let tokens = setup::agent_tokens(config.agent_edges[0], &logins).await?;
    let agent_sockets = setup::connect_agents(&config.agent_edges, &tokens).await?;
    let visitors_count = config.agents * config.capacity as usize + config.waiting;
    let tokens = net::sign_up(config.visitor_edges[0], visitors_count, 8).await?;
    let edges = &config.visitor_edges;
    let visitor_sockets: Vec<Socket> = futures::stream::iter(tokens.iter().enumerate())
        .map(|(i, token)| async move {
            net::hello(edges[i % edges.len()], token, None, setup::STEP_TIMEOUT)
                .await
                .map(|(socket, _)| socket)
        })
        .buffered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;

    let shared = Arc::new(Shared::default());
    let begin = now_ns();
    let window_start = begin + (config.warmup * 1e9) as u64;
    let window_end = window_start + (config.secs * 1e9) as u64;
    shared.window_start.store(window_start, Ordering::Relaxed);
    shared.window_end.store(window_end, Ordering::Relaxed);
    let (done_tx, done_rx) = watch::channel(false);
    let agents: Vec<_> = agent_sockets
        .into_iter()
        .map(|socket| tokio::spawn(agent(socket, shared.clone(), config.hold, done_rx.clone())))
        .collect();
    let visitors: Vec<_> = visitor_sockets
        .into_iter()
        .enumerate()
        .map(|(i, socket)| {
            let start = match teams.get(i % teams.len().max(1)) {
                Some(team) => format!(r#"{{"type":"start","team":"{}"}}"#, team.as_str()),
                None => r#"{"type":"start"}"#.to_owned(),
            };
            tokio::spawn(visitor(socket, shared.clone(), start))
        })
        .collect();
    let mut tally = Tally::default();
    let started = Instant::now();
    for task in visitors {
        let t = task.await.context("visitor task")?;
        tally.started += t.started;
        tally.start.merge(&t.start);
        tally.errors.merge(&t.errors);
    }
    let _ = done_tx.send(true);
    for task in agents {
        let t = task.await.context("agent task")?;
        tally.assignments += t.assignments;
        tally.closed += t.closed;
        tally.slot.merge(&t.slot);
        tally.errors.merge(&t.errors);
    }
    let _ = started;
    Ok(AssignReport {
        scenario: "assign",
        label: config.label.clone(),
        agents: config.agents,
        capacity: config.capacity,
        teams: config.teams,
        visitors: visitors_count,
        secs: config.secs,
        started: tally.started,
        started_per_sec: tally.started as f64 / config.secs,
        assignments: tally.assignments,
        assignments_per_sec: tally.assignments as f64 / config.secs,
        closed: tally.closed,
        slot_to_assigned: tally.slot.summary(),
        start_to_assigned: tally.start.summary(),
        errors: tally.errors,
    })
}
