//! `chat`: P visitor–agent conversations, visitors on one edge and agents
//! on another.
//!
//! - **Closed loop**: one round trip in flight per pair. The visitor sends,
//!   the agent receives it (end-to-end latency) and replies at once, the
//!   visitor receives the reply (round-trip time) and sends the next one.
//!   A round trip is two messages.
//! - **Open loop**: the visitors send at a fixed total rate, each message
//!   due at its own intended time; latencies are measured from that time,
//!   not from when the generator got round to sending it, so a stall counts
//!   in full (no coordinated omission). Agents only receive.
//!
//! Every message carries its send (or intended) time in `client_id`
//! (`c…`, `o…`, `r…`) and `text` (`t…`). Only messages meant to be sent
//! inside the measured window count; a warm-up precedes it.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::stream::{SplitSink, Stream};
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::cpu::{self, ProcessCpu, Watched};
use crate::net::{self, Frame, Incoming, Socket};
use crate::report::{num, row, Report};
use crate::setup::{self, Visitor};
use crate::stats::{Errors, Hist, Latency};
use crate::{instant_at, now_ns};

/// How long, by default, a run waits after the window for what is still in
/// flight (round trips, acks, deliveries) before counting what never
/// arrived as lost.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Closed,
    /// Total offered messages per second.
    Open {
        rate: f64,
    },
}

#[derive(Debug, Clone)]
pub struct ChatConfig {
    pub visitor_edges: Vec<SocketAddr>,
    pub agent_edges: Vec<SocketAddr>,
    pub nats_url: String,
    pub pairs: usize,
    pub agents: usize,
    pub mode: Mode,
    pub secs: f64,
    pub warmup: f64,
    /// Visitors being set up at once.
    pub concurrency: usize,
    /// How long to wait after the window for what is in flight
    /// ([`DEFAULT_DRAIN`]; longer on a slow or loaded machine).
    pub drain: Duration,
    /// Processes whose CPU to report per message (edges, router,
    /// nats-server); the generator is always included.
    pub cpu: Vec<Watched>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChatReport {
    /// `chat`, or a baseline of the same loop: `raw-nats`, `ws-relay`.
    pub scenario: &'static str,
    pub mode: &'static str,
    pub pairs: usize,
    pub pairs_ready: usize,
    pub agents: usize,
    pub offered_rate: Option<f64>,
    pub secs: f64,
    pub setup_secs: f64,
    /// Closed loop: completed round trips in the window.
    pub round_trips: u64,
    pub round_trips_per_sec: f64,
    /// Messages meant to be sent in the window, received (both directions).
    pub messages: u64,
    pub messages_per_sec: f64,
    /// Messages that arrived during the window, per second: the rate the
    /// system actually sustained (below `messages_per_sec` when a backlog
    /// built up in open loop).
    pub delivered_per_sec: f64,
    /// Visitor send (or intended send) → agent receives it.
    pub e2e: Latency,
    /// Send (or intended send) → `ack`, every sender.
    pub ack: Latency,
    /// Closed loop: visitor send → agent's reply received.
    pub round_trip: Latency,
    pub errors: Errors,
    /// Acknowledged messages never received by the other side.
    pub lost: u64,
    /// CPU per process during the window.
    pub cpu: Vec<ProcessCpu>,
}

impl Report for ChatReport {
    fn title(&self) -> String {
        match self.offered_rate {
            Some(rate) => format!(
                "chat open loop: {} msg/s over {} conversations",
                num(rate, 0),
                num(self.pairs as f64, 0)
            ),
            None => format!(
                "{} closed loop: {} conversations",
                self.scenario,
                num(self.pairs as f64, 0)
            ),
        }
    }

    fn rows(&self) -> Vec<(String, String)> {
        let mut rows = vec![
            row(
                "conversations ready",
                format!("{} of {}", self.pairs_ready, self.pairs),
            ),
            row("agents", self.agents),
            row("setup", format!("{:.1} s", self.setup_secs)),
            row("measured", format!("{:.1} s", self.secs)),
        ];
        if self.mode == "closed" {
            rows.push(row("round trips/s", num(self.round_trips_per_sec, 0)));
        }
        rows.extend([
            row("messages/s", num(self.messages_per_sec, 0)),
            row(
                "delivered/s (arrived in window)",
                num(self.delivered_per_sec, 0),
            ),
            row("e2e p50/p99/p99.9/max", self.e2e.line()),
            row("ack p50/p99/p99.9/max", self.ack.line()),
        ]);
        if self.mode == "closed" {
            rows.push(row("round trip p50/p99/p99.9/max", self.round_trip.line()));
        }
        rows.push(row("errors", self.errors.line()));
        rows.push(row("lost", self.lost));
        rows.extend(cpu::rows(&self.cpu));
        rows
    }
}

/// Counters shared by every task of one run.
#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) assigned: AtomicUsize,
    pub(crate) window_start: AtomicU64,
    pub(crate) window_end: AtomicU64,
    pub(crate) visitor_acked: AtomicU64,
    pub(crate) agent_received: AtomicU64,
    pub(crate) agent_acked: AtomicU64,
    pub(crate) visitor_received: AtomicU64,
}

impl Shared {
    pub(crate) fn in_window(&self, stamp: u64) -> bool {
        let start = self.window_start.load(Ordering::Relaxed);
        start != 0 && stamp >= start && stamp < self.window_end.load(Ordering::Relaxed)
    }

    /// Whether every acknowledged message reached the other side.
    fn all_delivered(&self) -> bool {
        self.agent_received.load(Ordering::Relaxed) >= self.visitor_acked.load(Ordering::Relaxed)
            && self.visitor_received.load(Ordering::Relaxed)
                >= self.agent_acked.load(Ordering::Relaxed)
    }

    /// Lets the last deliveries land before the receivers stop: returns
    /// once every acknowledged message reached the other side, or after
    /// `limit` (what is missing then counts as lost).
    pub(crate) async fn drain(&self, limit: Duration) {
        let until = Instant::now() + limit;
        while !self.all_delivered() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) e2e: Hist,
    pub(crate) ack: Hist,
    pub(crate) round_trip: Hist,
    pub(crate) round_trips: u64,
    pub(crate) received: u64,
    /// Messages that arrived inside the window (whenever meant to be sent).
    pub(crate) arrived: u64,
    pub(crate) errors: Errors,
}

impl Tally {
    pub(crate) fn merge(&mut self, other: &Tally) {
        self.e2e.merge(&other.e2e);
        self.ack.merge(&other.ack);
        self.round_trip.merge(&other.round_trip);
        self.round_trips += other.round_trips;
        self.received += other.received;
        self.arrived += other.arrived;
        self.errors.merge(&other.errors);
    }

    /// The end of a loop: the visitors' tallies as their tasks finish,
    /// then, once the last messages have arrived (or `drain` passed), the
    /// agents are told the run is over and theirs are added. Returns all
    /// of it, and the agents' part alone.
    pub(crate) async fn collect(
        visitors: Vec<tokio::task::JoinHandle<Tally>>,
        agents: Vec<tokio::task::JoinHandle<Tally>>,
        shared: &Shared,
        drain: Duration,
        done: &watch::Sender<bool>,
    ) -> Result<(Tally, Tally)> {
        let mut tally = Tally::default();
        for task in visitors {
            tally.merge(&task.await.context("visitor task")?);
        }
        shared.drain(drain).await;
        let _ = done.send(true);
        let mut agent_tally = Tally::default();
        for task in agents {
            agent_tally.merge(&task.await.context("agent task")?);
        }
        tally.merge(&agent_tally);
        Ok((tally, agent_tally))
    }
}

fn record_ack(frame: &Frame<'_>, shared: &Shared, tally: &mut Tally, now: u64) {
    if let Some(t) = frame.client_id.as_deref().and_then(net::stamp) {
        if shared.in_window(t) {
            tally.ack.record_ns(now.saturating_sub(t));
        }
    }
}

/// One agent connection, serving all its conversations.
pub(crate) async fn agent(
    mut socket: Socket,
    shared: Arc<Shared>,
    reply: bool,
    mut done: watch::Receiver<bool>,
) -> Tally {
    let mut tally = Tally::default();
    loop {
        let message = tokio::select! {
            _ = done.changed() => break,
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
            tally.errors.add("unreadable frame");
            continue;
        };
        match frame.kind.as_ref() {
            "assigned" => {
                shared.assigned.fetch_add(1, Ordering::Relaxed);
            }
            "message" if frame.sender_role() == "visitor" => {
                shared.agent_received.fetch_add(1, Ordering::Relaxed);
                if shared.in_window(now) {
                    tally.arrived += 1;
                }
                let Some(text) = frame.text.as_deref() else {
                    continue;
                };
                if let Some(t) = net::stamp(text) {
                    if shared.in_window(t) {
                        tally.e2e.record_ns(now.saturating_sub(t));
                        tally.received += 1;
                    }
                }
                if reply {
                    let out =
                        net::send_frame(frame.conversation(), &format!("r{}", now_ns()), text);
                    if net::send_text(&mut socket, out).await.is_err() {
                        tally.errors.add("agent send failed");
                        break;
                    }
                }
            }
            "ack" => {
                shared.agent_acked.fetch_add(1, Ordering::Relaxed);
                record_ack(&frame, &shared, &mut tally, now);
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

type Sink = SplitSink<Socket, Message>;
type Tagged =
    Pin<Box<dyn Stream<Item = (usize, Option<Result<Message, tungstenite::Error>>)> + Send>>;

/// Splits a shard's sockets: their sinks, and one stream of everything
/// they receive tagged with the visitor's index (`None` once it ended).
fn split(visitors: Vec<Visitor>) -> (Vec<String>, Vec<Sink>, futures::stream::SelectAll<Tagged>) {
    let mut conversations = Vec::new();
    let mut sinks = Vec::new();
    let mut streams: Vec<Tagged> = Vec::new();
    for (i, visitor) in visitors.into_iter().enumerate() {
        conversations.push(visitor.conversation);
        let (sink, stream) = visitor.socket.split();
        sinks.push(sink);
        streams.push(Box::pin(
            stream
                .map(move |m| (i, Some(m)))
                .chain(futures::stream::once(async move { (i, None) })),
        ));
    }
    (conversations, sinks, futures::stream::select_all(streams))
}

/// Sends a visitor's next closed-loop message, stamped with the time it
/// leaves; false (and counted) when the send failed.
async fn send_closed(
    sink: &mut SplitSink<Socket, Message>,
    conversation: &str,
    tally: &mut Tally,
) -> bool {
    let t = now_ns();
    let frame = net::send_frame(conversation, &format!("c{t}"), &format!("t{t}"));
    let sent = net::send_text(sink, frame).await.is_ok();
    if !sent {
        tally.errors.add("visitor send failed");
    }
    sent
}

/// A shard of visitors driven by one task.
pub(crate) async fn visitors(
    visitors: Vec<Visitor>,
    shared: Arc<Shared>,
    mode: Mode,
    total: usize,
    drain: Duration,
) -> Tally {
    let mut tally = Tally::default();
    let count = visitors.len();
    let (conversations, mut sinks, mut incoming) = split(visitors);
    let mut alive = vec![true; count];
    let mut outstanding = vec![false; count];
    let mut in_flight = 0usize;
    let begin = now_ns();
    let end = shared.window_end.load(Ordering::Relaxed);
    // Open loop: this shard's share of the rate, its sends evenly spaced.
    let interval = match mode {
        Mode::Open { rate } if rate > 0.0 => {
            let shard_rate = rate * count as f64 / total.max(1) as f64;
            Some((1e9 / shard_rate.max(1e-9)) as u64)
        }
        _ => None,
    };
    let mut next_send = 0u64;
    if mode == Mode::Closed {
        for i in 0..count {
            if send_closed(&mut sinks[i], &conversations[i], &mut tally).await {
                outstanding[i] = true;
                in_flight += 1;
            } else {
                alive[i] = false;
            }
        }
    }
    let drain_until = end + u64::try_from(drain.as_nanos()).unwrap_or(u64::MAX);
    loop {
        let now = now_ns();
        if now >= drain_until || (now >= end && in_flight == 0 && interval.is_none()) {
            break;
        }
        if let Some(interval) = interval {
            // Everything due by now goes out, stamped with its due time.
            loop {
                let due = begin + next_send * interval;
                if due > now_ns() || due >= end {
                    break;
                }
                let i = (next_send as usize) % count;
                next_send += 1;
                if !alive[i] {
                    continue;
                }
                let frame =
                    net::send_frame(&conversations[i], &format!("o{due}"), &format!("t{due}"));
                if net::send_text(&mut sinks[i], frame).await.is_err() {
                    tally.errors.add("visitor send failed");
                    alive[i] = false;
                }
            }
        }
        let wake = match interval {
            Some(interval) => {
                let due = begin + next_send * interval;
                if due < end {
                    due
                } else {
                    drain_until.min(end + 3_000_000_000)
                }
            }
            None if now < end => end,
            None => drain_until,
        };
        let item = tokio::select! {
            item = incoming.next() => item,
            () = tokio::time::sleep_until(instant_at(wake).into()) => {
                if interval.is_some() && now_ns() >= end + 3_000_000_000 {
                    break;
                }
                continue;
            }
        };
        let Some((i, message)) = item else { break };
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                if alive[i] {
                    tally.errors.add("visitor connection closed");
                    alive[i] = false;
                    if outstanding[i] {
                        outstanding[i] = false;
                        in_flight -= 1;
                    }
                }
                continue;
            }
            Some(Ok(_)) => continue,
        };
        let now = now_ns();
        let Ok(frame) = Frame::parse(text.as_str()) else {
            tally.errors.add("unreadable frame");
            continue;
        };
        let mut send_next = false;
        match frame.kind.as_ref() {
            "ack" => {
                shared.visitor_acked.fetch_add(1, Ordering::Relaxed);
                record_ack(&frame, &shared, &mut tally, now);
            }
            "message" if frame.sender_role() == "agent" => {
                shared.visitor_received.fetch_add(1, Ordering::Relaxed);
                if shared.in_window(now) {
                    tally.arrived += 1;
                }
                if let Some(t) = frame.text.as_deref().and_then(net::stamp) {
                    if shared.in_window(t) {
                        tally.round_trip.record_ns(now.saturating_sub(t));
                        tally.round_trips += 1;
                        tally.received += 1;
                    }
                }
                if outstanding[i] {
                    outstanding[i] = false;
                    in_flight -= 1;
                    send_next = true;
                }
            }
            "error" => {
                tally.errors.add(format!(
                    "visitor error {}",
                    frame.code.as_deref().unwrap_or("?")
                ));
                // A refused send never completes its round trip: go on.
                if outstanding[i] && frame.code.as_deref() != Some("rate_limited") {
                    outstanding[i] = false;
                    in_flight -= 1;
                    send_next = true;
                }
            }
            _ => {}
        }
        if send_next && mode == Mode::Closed && now_ns() < end && alive[i] {
            if send_closed(&mut sinks[i], &conversations[i], &mut tally).await {
                outstanding[i] = true;
                in_flight += 1;
            } else {
                alive[i] = false;
            }
        }
    }
    tally
}

/// Visitors per shard task.
pub(crate) fn shard_size(pairs: usize) -> usize {
    (pairs / 32).clamp(16, 256)
}

/// Runs `chat`.
pub async fn run(config: &ChatConfig) -> Result<ChatReport> {
    if config.pairs == 0 || config.agents == 0 {
        bail!("chat needs at least one pair and one agent");
    }
    if config.visitor_edges.is_empty() || config.agent_edges.is_empty() {
        bail!("chat needs a visitor edge and an agent edge");
    }
    let setup_started = Instant::now();
    let backbone = setup::backbone(&config.nats_url).await?;
    let capacity =
        u32::try_from(config.pairs.div_ceil(config.agents) + 1).context("capacity per agent")?;
    let logins = setup::create_agents(&backbone, &setup::run_id(), config.agents, capacity).await?;
    let tokens = setup::agent_tokens(config.agent_edges[0], &logins).await?;
    let agent_sockets = setup::connect_agents(&config.agent_edges, &tokens).await?;
    let shared = Arc::new(Shared::default());
    let (done_tx, done_rx) = watch::channel(false);
    let reply = config.mode == Mode::Closed;
    let agents: Vec<_> = agent_sockets
        .into_iter()
        .map(|socket| tokio::spawn(agent(socket, shared.clone(), reply, done_rx.clone())))
        .collect();
    let opened =
        setup::open_visitors(&config.visitor_edges, config.pairs, config.concurrency, 0).await?;
    let errors = opened.errors.clone();
    let ready = opened.visitors.len();
    let deadline = Instant::now() + Duration::from_secs(60 + (config.pairs / 100) as u64);
    while shared.assigned.load(Ordering::Relaxed) < ready {
        if Instant::now() > deadline {
            bail!(
                "only {} of {ready} conversations were assigned to agents in time",
                shared.assigned.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let setup_secs = setup_started.elapsed().as_secs_f64();
    let run = Loop {
        scenario: "chat",
        mode: config.mode,
        pairs: config.pairs,
        agents: config.agents,
        secs: config.secs,
        warmup: config.warmup,
        drain: config.drain,
        setup_secs,
        cpu: config.cpu.clone(),
    };
    drive(&run, opened.visitors, agents, shared, done_tx, errors).await
}

/// A run over WebSockets once its clients are connected (the agents'
/// tasks already reading): what [`drive`] needs to know.
pub(crate) struct Loop {
    pub(crate) scenario: &'static str,
    pub(crate) mode: Mode,
    pub(crate) pairs: usize,
    pub(crate) agents: usize,
    pub(crate) secs: f64,
    pub(crate) warmup: f64,
    pub(crate) drain: Duration,
    pub(crate) setup_secs: f64,
    pub(crate) cpu: Vec<Watched>,
}

/// Opens the window after the warm-up, drives the visitors in shards,
/// waits for what is in flight, stops the agents and sums it all up.
pub(crate) async fn drive(
    run: &Loop,
    visitors_ready: Vec<Visitor>,
    agents: Vec<tokio::task::JoinHandle<Tally>>,
    shared: Arc<Shared>,
    done_tx: watch::Sender<bool>,
    mut errors: Errors,
) -> Result<ChatReport> {
    let ready = visitors_ready.len();
    let begin = now_ns();
    let window_start = begin + (run.warmup * 1e9) as u64;
    let window_end = window_start + (run.secs * 1e9) as u64;
    shared.window_start.store(window_start, Ordering::Relaxed);
    shared.window_end.store(window_end, Ordering::Relaxed);
    let cpu_window = cpu::spawn_window(&run.cpu, window_start, window_end);
    let size = shard_size(ready);
    let mut all = visitors_ready.into_iter().peekable();
    let mut shards = Vec::new();
    while all.peek().is_some() {
        let shard: Vec<Visitor> = all.by_ref().take(size).collect();
        shards.push(tokio::spawn(visitors(
            shard,
            shared.clone(),
            run.mode,
            ready,
            run.drain,
        )));
    }
    let (tally, agent_tally) = Tally::collect(shards, agents, &shared, run.drain, &done_tx).await?;
    errors.merge(&tally.errors);

    let visitor_acked = shared.visitor_acked.load(Ordering::Relaxed);
    let agent_received = shared.agent_received.load(Ordering::Relaxed);
    let agent_acked = shared.agent_acked.load(Ordering::Relaxed);
    let visitor_received = shared.visitor_received.load(Ordering::Relaxed);
    let lost =
        visitor_acked.saturating_sub(agent_received) + agent_acked.saturating_sub(visitor_received);
    let messages = match run.mode {
        Mode::Closed => agent_tally.received + tally.round_trips,
        Mode::Open { .. } => agent_tally.received,
    };
    let cpu = cpu::per_message(cpu_window.await.context("cpu sampler")?, messages);
    Ok(ChatReport {
        scenario: run.scenario,
        mode: match run.mode {
            Mode::Closed => "closed",
            Mode::Open { .. } => "open",
        },
        pairs: run.pairs,
        pairs_ready: ready,
        agents: run.agents,
        offered_rate: match run.mode {
            Mode::Closed => None,
            Mode::Open { rate } => Some(rate),
        },
        secs: run.secs,
        setup_secs: run.setup_secs,
        round_trips: tally.round_trips,
        round_trips_per_sec: tally.round_trips as f64 / run.secs,
        messages,
        messages_per_sec: messages as f64 / run.secs,
        delivered_per_sec: tally.arrived as f64 / run.secs,
        e2e: tally.e2e.summary(),
        ack: tally.ack.summary(),
        round_trip: tally.round_trip.summary(),
        errors,
        lost,
        cpu,
    })
}
