//! `storm`: N visitors on edge A, each with an open conversation and
//! sending a message now and then (waiting for each `ack`, re-sending with
//! the same `client_id` and `"retry": true` after a reconnect, as the
//! widget does). Edge A is killed with SIGKILL; every client reconnects to
//! the other edge(s) with `resume` from the highest `seq` it saw.
//!
//! Reported: the time from the kill until every client had its `resumed`
//! frame, and what was lost, checked against the stream: every record of
//! each conversation (`seq` 1 to its last, read from NATS) must have
//! reached the client, and every acknowledged message must have come back
//! to it as a record.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use serde::Serialize;
use switchboard_protocol::ids::ConversationId;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::net::{self, Frame, Socket};
use crate::now_ns;
use crate::report::{num, row, Report};
use crate::setup::{self, Visitor};
use crate::stats::{Errors, Hist, Latency};

/// How long, by default, a client waits for its last `ack` and records
/// after the stop.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
pub struct StormConfig {
    pub edge_a: SocketAddr,
    /// The process to `kill -9`.
    pub edge_a_pid: u32,
    pub edges_b: Vec<SocketAddr>,
    pub nats_url: String,
    pub clients: usize,
    /// Time between a client's messages.
    pub interval: Duration,
    /// Traffic before the kill, and after everyone resumed.
    pub before: Duration,
    pub after: Duration,
    /// Longest wait for every client to resume.
    pub resume_deadline: Duration,
    pub concurrency: usize,
    /// How long a client waits for its last `ack` and records after the
    /// stop ([`DEFAULT_DRAIN`]).
    pub drain: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct StormReport {
    pub scenario: &'static str,
    pub clients: usize,
    pub connected: usize,
    pub resumed: usize,
    /// Kill → the last client's `resumed` frame.
    pub all_resumed_secs: Option<f64>,
    /// Kill → each client's `resumed` frame.
    pub resume: Latency,
    pub reconnect_attempts: u64,
    /// Resumes refused (`error` for the conversation) and tried again.
    pub resume_retries: u64,
    pub messages_acked: u64,
    /// Records of all conversations (their last `seq`, from the stream).
    pub records_checked: u64,
    /// Records missing at a client, plus acked messages never received.
    pub lost: u64,
    pub duplicates: u64,
    /// Sends still without `ack` at the end.
    pub unacked: u64,
    pub errors: Errors,
}

impl Report for StormReport {
    fn title(&self) -> String {
        format!(
            "storm: {} clients, edge A killed",
            num(self.clients as f64, 0)
        )
    }

    fn rows(&self) -> Vec<(String, String)> {
        vec![
            row("connected to A", num(self.connected as f64, 0)),
            row("resumed on B", num(self.resumed as f64, 0)),
            row(
                "kill → all resumed",
                self.all_resumed_secs
                    .map_or("not all resumed".into(), |s| format!("{s:.2} s")),
            ),
            row("kill → resumed p50/p99/p99.9/max", self.resume.line()),
            row("reconnect attempts", num(self.reconnect_attempts as f64, 0)),
            row(
                "resumes refused, retried",
                num(self.resume_retries as f64, 0),
            ),
            row("messages acked", num(self.messages_acked as f64, 0)),
            row("records checked", num(self.records_checked as f64, 0)),
            row("lost", self.lost),
            row("duplicates", self.duplicates),
            row("unacked at end", self.unacked),
            row("errors", self.errors.line()),
        ]
    }
}

#[derive(Default)]
struct Shared {
    kill_at: AtomicU64,
    resumed: AtomicUsize,
}

struct Outcome {
    conversation: String,
    seqs: Vec<u64>,
    echoed: HashSet<String>,
    acked: Vec<String>,
    pending: Option<String>,
    resumed_at: Option<u64>,
    attempts: u64,
    /// Resumes the edge answered with an error, tried again.
    retries: u64,
    errors: Errors,
}

struct Client {
    index: usize,
    token: String,
    out: Outcome,
    max_seq: u64,
    sent: u64,
    /// The last frame refused the pending send.
    resend: bool,
}

impl Client {
    /// Handles one frame: whether it acknowledged the pending send, and
    /// whether the connection must be dropped and resumed again (its
    /// resume failed).
    fn on_frame(&mut self, text: &str, shared: &Shared) -> (bool, bool) {
        let Ok(frame) = Frame::parse(text) else {
            self.out.errors.add("unreadable frame");
            return (false, false);
        };
        self.resend = false;
        let mut acked = false;
        let mut resume_again = false;
        match frame.kind.as_ref() {
            "message" | "event" if frame.conversation() == self.out.conversation => {
                if let Some(seq) = frame.seq {
                    self.out.seqs.push(seq);
                    self.max_seq = self.max_seq.max(seq);
                }
                if frame.kind == "message" && frame.sender_role() == "visitor" {
                    if let Some(id) = frame.client_id.as_deref() {
                        self.out.echoed.insert(id.to_owned());
                    }
                }
            }
            "ack" => {
                let id = frame.client_id.as_deref().unwrap_or("");
                if self.out.pending.as_deref() == Some(id) {
                    self.out.acked.push(id.to_owned());
                    self.out.pending = None;
                    acked = true;
                }
            }
            "resumed"
                if self.out.resumed_at.is_none() && shared.kill_at.load(Ordering::Relaxed) != 0 =>
            {
                self.out.resumed_at = Some(now_ns());
                shared.resumed.fetch_add(1, Ordering::Relaxed);
            }
            "error" => {
                self.out
                    .errors
                    .add(format!("error {}", frame.code.as_deref().unwrap_or("?")));
                // The resume of our conversation failed (the edge could not
                // reach NATS in time): connect and resume again, as a
                // client must to get what it missed.
                resume_again = frame.reference.as_deref() == Some(self.out.conversation.as_str())
                    && self.out.resumed_at.is_none()
                    && shared.kill_at.load(Ordering::Relaxed) != 0;
                // A refused send is sent again with the same client_id.
                self.resend = frame.reference.is_some()
                    && frame.reference.as_deref() == self.out.pending.as_deref();
            }
            _ => {}
        }
        (acked, resume_again)
    }

    fn send_frame(&self, retry: bool) -> Option<String> {
        let id = self.out.pending.as_deref()?;
        Some(format!(
            r#"{{"type":"send","conversation_id":"{}","client_id":"{id}","text":"storm message {id}","retry":{retry}}}"#,
            self.out.conversation
        ))
    }

    /// Reconnects round the B edges with `resume`, backing off, until it
    /// works or `deadline`.
    async fn reconnect(&mut self, config: &StormConfig, deadline: Instant) -> Option<Socket> {
        let mut backoff = Duration::from_millis(100);
        loop {
            let edge =
                config.edges_b[(self.index + self.out.attempts as usize) % config.edges_b.len()];
            self.out.attempts += 1;
            match net::hello(
                edge,
                &self.token,
                Some((&self.out.conversation, self.max_seq)),
                setup::STEP_TIMEOUT,
            )
            .await
            {
                Ok((mut socket, _)) => {
                    if let Some(frame) = self.send_frame(true) {
                        if net::send_text(&mut socket, frame).await.is_err() {
                            continue;
                        }
                    }
                    return Some(socket);
                }
                Err(err) => self.out.errors.add(setup::short_error(&err)),
            }
            if Instant::now() + backoff > deadline {
                return None;
            }
            // Spread retries: a little of the client's index in the pause.
            let jitter = Duration::from_millis((self.index % 97) as u64);
            tokio::time::sleep(backoff + jitter).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
}

enum Event {
    Stop,
    Send,
    DrainOver,
    Frame(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
}

async fn client(
    visitor: Visitor,
    index: usize,
    config: Arc<StormConfig>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Outcome {
    let mut c = Client {
        index,
        token: visitor.token,
        out: Outcome {
            conversation: visitor.conversation,
            seqs: Vec::new(),
            echoed: HashSet::new(),
            acked: Vec::new(),
            pending: None,
            resumed_at: None,
            attempts: 0,
            retries: 0,
            errors: Errors::default(),
        },
        max_seq: visitor.last_seq,
        sent: 0,
        resend: false,
    };
    let interval_ms = u64::try_from(config.interval.as_millis())
        .unwrap_or(1)
        .max(1);
    let mut next_send = Instant::now() + Duration::from_millis((index as u64 * 7919) % interval_ms);
    let mut socket = Some(visitor.socket);
    let mut stopping = false;
    let mut drain_until = Instant::now() + Duration::from_secs(3600);
    loop {
        let Some(ws) = socket.as_mut() else {
            let deadline = Instant::now() + config.resume_deadline;
            socket = c.reconnect(&config, deadline).await;
            if socket.is_none() {
                c.out.errors.add("gave up reconnecting");
                break;
            }
            continue;
        };
        if stopping && c.out.pending.is_none() {
            // Wait for the echo of the last acked message, briefly.
            let all_echoed = c.out.acked.iter().all(|id| c.out.echoed.contains(id));
            if all_echoed || Instant::now() > drain_until {
                break;
            }
        }
        let can_send = !stopping && c.out.pending.is_none();
        let event = tokio::select! {
            _ = stop.changed(), if !stopping => Event::Stop,
            () = tokio::time::sleep_until(next_send), if can_send => Event::Send,
            () = tokio::time::sleep_until(drain_until), if stopping => Event::DrainOver,
            message = ws.next() => Event::Frame(message),
        };
        match event {
            Event::Stop => {
                stopping = true;
                drain_until = Instant::now() + config.drain;
            }
            Event::DrainOver => break,
            Event::Send => {
                c.sent += 1;
                c.out.pending = Some(format!("s{index}-{}", c.sent));
                if let Some(frame) = c.send_frame(false) {
                    if net::send_text(ws, frame).await.is_err() {
                        socket = None;
                    }
                }
            }
            Event::Frame(Some(Ok(Message::Text(text)))) => {
                let (acked, resume_again) = c.on_frame(text.as_str(), &shared);
                if acked {
                    next_send = Instant::now() + config.interval;
                }
                if c.resend {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    if let Some(frame) = c.send_frame(true) {
                        if net::send_text(ws, frame).await.is_err() {
                            socket = None;
                        }
                    }
                }
                if resume_again {
                    c.out.retries += 1;
                    socket = None;
                    tokio::time::sleep(Duration::from_millis(200 + (index % 300) as u64)).await;
                }
            }
            Event::Frame(Some(Ok(_))) => {}
            Event::Frame(Some(Err(_)) | None) => socket = None,
        }
    }
    c.out
}

/// Runs `storm`.
pub async fn run(config: &StormConfig) -> Result<StormReport> {
    if config.edges_b.is_empty() {
        bail!("storm needs at least one edge to move to");
    }
    let backbone = setup::backbone(&config.nats_url).await?;
    let opened =
        setup::open_visitors(&[config.edge_a], config.clients, config.concurrency, 0).await?;
    let mut errors = opened.errors.clone();
    let connected = opened.visitors.len();
    let shared = Arc::new(Shared::default());
    let config_arc = Arc::new(config.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let tasks: Vec<_> = opened
        .visitors
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            tokio::spawn(client(
                v,
                i,
                config_arc.clone(),
                shared.clone(),
                stop_rx.clone(),
            ))
        })
        .collect();

    tokio::time::sleep(config.before).await;
    let kill_at = now_ns();
    shared.kill_at.store(kill_at, Ordering::Relaxed);
    setup::kill_9(config.edge_a_pid)?;
    let deadline = Instant::now() + config.resume_deadline;
    while shared.resumed.load(Ordering::Relaxed) < connected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(config.after).await;
    let _ = stop_tx.send(true);

    let mut outcomes = Vec::with_capacity(connected);
    for task in tasks {
        outcomes.push(task.await.context("client task")?);
    }

    // Check against the stream.
    let lasts: Vec<Result<u64>> =
        futures::stream::iter(outcomes.iter().map(|o| o.conversation.clone()))
            .map(|conversation| {
                let log = backbone.log.clone();
                async move {
                    let id = ConversationId::new(conversation.clone())
                        .with_context(|| format!("conversation id {conversation}"))?;
                    log.last_seq(&id)
                        .await
                        .with_context(|| format!("last seq of {conversation}"))
                }
            })
            .buffered(64)
            .collect()
            .await;
    let mut resume = Hist::new();
    let mut report = StormReport {
        scenario: "storm",
        clients: config.clients,
        connected,
        resumed: 0,
        all_resumed_secs: None,
        resume: Latency::default(),
        reconnect_attempts: 0,
        resume_retries: 0,
        messages_acked: 0,
        records_checked: 0,
        lost: 0,
        duplicates: 0,
        unacked: 0,
        errors: Errors::default(),
    };
    let mut last_resumed = 0u64;
    for (outcome, last) in outcomes.iter().zip(lasts) {
        let last = last?;
        report.records_checked += last;
        let mut seqs = outcome.seqs.clone();
        seqs.sort_unstable();
        let before = seqs.len();
        seqs.dedup();
        report.duplicates += (before - seqs.len()) as u64;
        let have: HashSet<u64> = seqs.into_iter().collect();
        report.lost += (1..=last).filter(|s| !have.contains(s)).count() as u64;
        report.lost += outcome
            .acked
            .iter()
            .filter(|id| !outcome.echoed.contains(*id))
            .count() as u64;
        report.messages_acked += outcome.acked.len() as u64;
        report.unacked += u64::from(outcome.pending.is_some());
        report.reconnect_attempts += outcome.attempts;
        report.resume_retries += outcome.retries;
        if let Some(at) = outcome.resumed_at {
            report.resumed += 1;
            resume.record_ns(at.saturating_sub(kill_at));
            last_resumed = last_resumed.max(at);
        }
        errors.merge(&outcome.errors);
    }
    if report.resumed == connected && connected > 0 {
        report.all_resumed_secs = Some(last_resumed.saturating_sub(kill_at) as f64 / 1e9);
    }
    report.resume = resume.summary();
    report.errors = errors;
    Ok(report)
}
